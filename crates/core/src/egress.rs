//! Where the controller may connect on behalf of a user: webhook URLs, metric provider
//! addresses and alert URLs come from objects that anyone who can write in a namespace can
//! write, so the controller must not become their way into what only it can reach.
//!
//! By default it refuses link-local addresses (`169.254.0.0/16`, where clouds serve instance
//! metadata and credentials, and `fe80::/10`), AWS's IPv6 metadata address `fd00:ec2::254`,
//! and, for webhooks, the API server's own address and port (a webhook is a plain POST; the
//! API server is reached through the controller's client, with its ServiceAccount's rights;
//! other ports of the same address stay open, since a local API server shares 127.0.0.1).
//! IPv4 addresses written as IPv6 (`::ffff:169.254.169.254`) are judged as the IPv4 address.
//! The operator opens what it wants with `--allow-destination CIDR` (repeatable): an allowed
//! network wins over every refusal.
//!
//! This module decides; the controller's HTTP clients apply it to every address a host name
//! resolves to, before connecting, and connect only to the addresses it allowed (so a name
//! that resolves differently a moment later cannot slip through).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// A network: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this network (an IPv4 network never holds an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDRESS/PREFIX` or a single `ADDRESS`.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || {
            format!(
                "{s:?} is not a network; write an address with a prefix length, e.g. \
                 10.0.0.0/8, 169.254.169.254/32 or fd00::/8"
            )
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What a destination is for: webhooks may not reach the API server; metric providers may
/// (the External Metrics and Keptn providers read it, with a token of the user's Secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `spec.analysis.webhooks[].url`, and `--event-webhook`.
    Webhook,
    /// A MetricTemplate's `spec.provider.address`, or `spec.metricsServer`.
    Metrics,
    /// An AlertProvider's address or proxy.
    Alert,
}

/// The networks refused by default.
pub const REFUSED_BY_DEFAULT: &[(&str, &str)] = &[
    (
        "169.254.0.0/16",
        "link-local, where clouds serve instance metadata and credentials",
    ),
    ("fe80::/10", "IPv6 link-local"),
    ("fd00:ec2::254/128", "AWS's IPv6 instance metadata address"),
];

/// The controller's rule for destinations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    /// `--allow-destination`: networks allowed even where a default refuses.
    pub allowed: Vec<Cidr>,
    /// The API server's addresses and ports (refused for webhooks).
    pub api_server: Vec<SocketAddr>,
}

impl DestinationPolicy {
    /// Whether the controller may connect to `ip` (on `port`, when known) for `purpose`; the
    /// error says why not and how to allow it. Without a port the API server rule is not
    /// applied (a resolver learns the port only later).
    pub fn check(&self, ip: IpAddr, port: Option<u16>, purpose: Purpose) -> Result<(), String> {
        let ip = unmap(ip);
        if self.allowed.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        for (net, what) in REFUSED_BY_DEFAULT {
            let net: Cidr = net.parse().expect("the default networks parse");
            if net.contains(ip) {
                return Err(format!(
                    "{ip} is refused ({what}, in {net}); the controller's \
                     --allow-destination {net} allows it"
                ));
            }
        }
        if purpose == Purpose::Webhook
            && self
                .api_server
                .iter()
                .any(|a| unmap(a.ip()) == ip && Some(a.port()) == port)
        {
            return Err(format!(
                "{ip} is the Kubernetes API server, which webhooks may not call; the \
                 controller's --allow-destination {ip}/{} allows it",
                if ip.is_ipv4() { 32 } else { 128 }
            ));
        }
        Ok(())
    }
}

impl DestinationPolicy {
    /// Why the controller may not connect to a URL's `host` (as a URL writes it: `10.0.0.1`,
    /// `[fd00:ec2::254]`) on `port` for `purpose`, when the host is an address. `None` when it
    /// is allowed or is a name (a name is checked when it is resolved).
    pub fn refuses_host(&self, host: &str, port: Option<u16>, purpose: Purpose) -> Option<String> {
        let ip = literal_ip(host)?;
        self.check(ip, port, purpose).err()
    }
}

/// The address a URL's host is written as, if it is one (`169.254.169.254`,
/// `[fd00:ec2::254]`).
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) as the IPv4 address.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The metadata address most clouds serve, for tests and documentation.
pub const CLOUD_METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// AWS's IPv6 metadata address.
pub const CLOUD_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_written_as_an_address_is_checked_and_a_name_is_left_to_the_resolver() {
        let p = DestinationPolicy::default();
        assert_eq!(
            literal_ip("[fd00:ec2::254]"),
            Some(IpAddr::V6(CLOUD_METADATA_V6))
        );
        assert_eq!(
            literal_ip("169.254.169.254"),
            Some(IpAddr::V4(CLOUD_METADATA_V4))
        );
        assert_eq!(literal_ip("metadata.google.internal"), None);
        assert!(
            p.refuses_host("169.254.169.254", Some(80), Purpose::Alert)
                .is_some()
        );
        assert!(
            p.refuses_host("[::ffff:169.254.169.254]", None, Purpose::Metrics)
                .is_some()
        );
        assert_eq!(p.refuses_host("127.0.0.1", Some(80), Purpose::Alert), None);
        assert_eq!(
            p.refuses_host("hooks.slack.com", Some(443), Purpose::Alert),
            None
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn link_local_and_metadata_addresses_are_refused_for_every_purpose() {
        let p = DestinationPolicy::default();
        for addr in [
            "169.254.169.254",
            "169.254.0.1",
            "169.254.255.255",
            "fe80::1",
            "febf:ffff::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            for purpose in [Purpose::Webhook, Purpose::Metrics, Purpose::Alert] {
                let err = p.check(ip(addr), Some(80), purpose).unwrap_err();
                assert!(err.contains("--allow-destination"), "{addr}: {err}");
            }
        }
        assert!(
            p.check(IpAddr::V4(CLOUD_METADATA_V4), None, Purpose::Metrics)
                .unwrap_err()
                .contains("instance metadata")
        );
        assert!(
            p.check(IpAddr::V6(CLOUD_METADATA_V6), None, Purpose::Alert)
                .unwrap_err()
                .contains("AWS")
        );
    }

    #[test]
    fn ordinary_addresses_are_allowed() {
        let p = DestinationPolicy::default();
        for addr in [
            "10.0.0.1",
            "127.0.0.1",
            "169.253.255.255",
            "169.255.0.0",
            "192.168.1.1",
            "fd00:ec2::253",
            "fec0::1",
            "::1",
            "8.8.8.8",
        ] {
            assert_eq!(
                p.check(ip(addr), Some(443), Purpose::Webhook),
                Ok(()),
                "{addr}"
            );
        }
    }

    #[test]
    fn the_api_server_is_refused_for_webhooks_only() {
        let p = DestinationPolicy {
            allowed: vec![],
            api_server: vec![
                "10.96.0.1:443".parse().unwrap(),
                "[fd00::1]:6443".parse().unwrap(),
            ],
        };
        let err = p
            .check(ip("10.96.0.1"), Some(443), Purpose::Webhook)
            .unwrap_err();
        assert!(err.contains("API server"), "{err}");
        assert!(err.contains("--allow-destination 10.96.0.1/32"), "{err}");
        assert!(
            p.check(ip("::ffff:10.96.0.1"), Some(443), Purpose::Webhook)
                .is_err()
        );
        assert!(
            p.check(ip("fd00::1"), Some(6443), Purpose::Webhook)
                .is_err()
        );
        assert_eq!(
            p.check(ip("10.96.0.1"), Some(443), Purpose::Metrics),
            Ok(())
        );
        assert_eq!(
            p.check(ip("10.96.0.2"), Some(443), Purpose::Webhook),
            Ok(())
        );
        // Another port of the same address (a local API server shares 127.0.0.1).
        assert_eq!(
            p.check(ip("10.96.0.1"), Some(8080), Purpose::Webhook),
            Ok(())
        );
        assert_eq!(p.check(ip("10.96.0.1"), None, Purpose::Webhook), Ok(()));
    }

    #[test]
    fn an_allowed_network_wins() {
        let p = DestinationPolicy {
            allowed: vec![
                "169.254.169.254/32".parse().unwrap(),
                "10.96.0.1".parse().unwrap(),
            ],
            api_server: vec!["10.96.0.1:443".parse().unwrap()],
        };
        assert_eq!(
            p.check(ip("169.254.169.254"), Some(80), Purpose::Webhook),
            Ok(())
        );
        assert!(
            p.check(ip("169.254.169.253"), Some(80), Purpose::Webhook)
                .is_err()
        );
        assert_eq!(
            p.check(ip("10.96.0.1"), Some(443), Purpose::Webhook),
            Ok(())
        );
    }

    #[test]
    fn networks_parse_or_say_what_to_write() {
        for (s, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("169.254.169.254", "169.254.169.254/32"),
            ("fd00::/8", "fd00::/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::/0", "::/0"),
        ] {
            assert_eq!(s.parse::<Cidr>().unwrap().to_string(), shown);
        }
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("169.254.169.254")));
        assert!(!all.contains(ip("fe80::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "host.example/8",
            "10.0.0.0/-1",
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains("e.g. 10.0.0.0/8"), "{bad}: {err}");
        }
    }
}
