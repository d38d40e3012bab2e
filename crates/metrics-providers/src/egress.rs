//! Where the controller's HTTP clients may connect, applied to reqwest clients: the rule is
//! [`fledge_core::egress::DestinationPolicy`]. Addresses come from objects any namespace user
//! can write (webhook URLs, MetricTemplates, AlertProviders), so a client built with [`guard`]
//! resolves host names through the policy (a name with any refused address is refused whole,
//! and the connector gets only the addresses checked), and follows no redirect to a refused
//! address. An address written as an IP in the URL does not go through a resolver: check it
//! with [`refused`] before the call.
//!
//! The metrics providers and the alert clients take the process's policy ([`policy`]), which
//! `fledge run` sets once from its flags ([`set_policy`]); without it, the default policy
//! (link-local and cloud metadata addresses refused).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use fledge_core::egress::{DestinationPolicy, Purpose};

static POLICY: OnceLock<Arc<DestinationPolicy>> = OnceLock::new();

/// Sets the process's policy; only the first call counts (the flags are read once).
pub fn set_policy(policy: DestinationPolicy) {
    let _ = POLICY.set(Arc::new(policy));
}

/// The process's policy: the one [`set_policy`] set, or the default.
pub fn policy() -> Arc<DestinationPolicy> {
    POLICY
        .get_or_init(|| Arc::new(DestinationPolicy::default()))
        .clone()
}

/// `builder` with host names resolved through `policy` for `purpose`, and redirects to a
/// refused address (or more than 10) not followed.
pub fn guard(
    builder: reqwest::ClientBuilder,
    policy: Arc<DestinationPolicy>,
    purpose: Purpose,
) -> reqwest::ClientBuilder {
    let resolver = Arc::new(PolicyResolver {
        policy: policy.clone(),
        purpose,
    });
    builder
        .dns_resolver(resolver)
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            let port = attempt.url().port_or_known_default();
            match literal_ip(attempt.url()).map(|ip| policy.check(ip, port, purpose)) {
                Some(Err(reason)) => attempt.error(reason),
                _ if attempt.previous().len() >= 10 => attempt.stop(),
                _ => attempt.follow(),
            }
        }))
}

/// A client builder for a metrics provider at `base` (named `what` in the error, e.g. `the
/// Prometheus address http://…`): refused when the process's policy refuses the address
/// written there, guarded for the names it resolves.
pub(crate) fn metrics_client(
    base: &reqwest::Url,
    what: &str,
) -> Result<reqwest::ClientBuilder, String> {
    let policy = policy();
    if let Some(reason) = refused(&policy, base, Purpose::Metrics) {
        return Err(format!("{what} is not allowed: {reason}"));
    }
    Ok(guard(reqwest::Client::builder(), policy, Purpose::Metrics))
}

/// Why `policy` refuses the address written in `url` for `purpose` (`None` when it allows it,
/// or when the host is a name, which [`guard`]'s resolver checks).
pub fn refused(policy: &DestinationPolicy, url: &reqwest::Url, purpose: Purpose) -> Option<String> {
    policy.refuses_host(url.host_str()?, url.port_or_known_default(), purpose)
}

/// The host of `url` when it is written as an IP address.
pub fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    fledge_core::egress::literal_ip(url.host_str()?)
}

/// Resolves host names and hands the connector only addresses the policy allows: a name with
/// any refused address is refused whole. A resolver does not know the port, so the API server
/// rule (webhooks) is left to the check before the call.
struct PolicyResolver {
    policy: Arc<DestinationPolicy>,
    purpose: Purpose,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (policy, purpose) = (self.policy.clone(), self.purpose);
        Box::pin(async move {
            let addrs = resolve_allowed(&policy, purpose, name.as_str()).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The addresses of `name`, when `policy` allows every one of them for `purpose`.
async fn resolve_allowed(
    policy: &DestinationPolicy,
    purpose: Purpose,
    name: &str,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, 0)).await?.collect();
    match addrs
        .iter()
        .find_map(|a| policy.check(a.ip(), None, purpose).err())
    {
        Some(reason) => Err(reason.into()),
        None => Ok(addrs),
    }
}

/// The same resolver for the AWS SDK's HTTP client (the CloudWatch provider's endpoint).
#[derive(Clone, Debug)]
pub(crate) struct AwsPolicyResolver {
    policy: Arc<DestinationPolicy>,
    purpose: Purpose,
}

impl AwsPolicyResolver {
    /// A resolver of the process's policy for `purpose`.
    pub(crate) fn new(purpose: Purpose) -> Self {
        AwsPolicyResolver {
            policy: policy(),
            purpose,
        }
    }
}

impl aws_smithy_runtime_api::client::dns::ResolveDns for AwsPolicyResolver {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        aws_smithy_runtime_api::client::dns::DnsFuture::new(async move {
            resolve_allowed(&self.policy, self.purpose, name)
                .await
                .map(|addrs| addrs.into_iter().map(|a| a.ip()).collect())
                .map_err(aws_smithy_runtime_api::client::dns::ResolveDnsError::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fledge_core::MetricOutcome;

    use crate::{ProviderConfig, provider_for};

    fn config(kind: &str, address: &str) -> ProviderConfig {
        ProviderConfig {
            kind: kind.into(),
            address: address.into(),
            headers: Vec::new(),
            secret: None,
            insecure_skip_verify: false,
            region: Some("us-east-1".into()),
        }
    }

    #[test]
    fn a_provider_at_a_link_local_or_metadata_address_is_refused() {
        for (kind, address) in [
            ("prometheus", "http://169.254.169.254:9090"),
            ("graphite", "http://169.254.169.254/"),
            ("influxdb", "http://[fe80::1]:8086"),
            ("graphite", "https://[fd00:ec2::254]/"),
            ("prometheus", "http://[::ffff:169.254.169.254]/"),
            ("cloudwatch", "http://169.254.169.254/"),
        ] {
            match provider_for(&config(kind, address), Duration::from_secs(5)) {
                Err(MetricOutcome::Error(m)) => assert!(
                    m.contains("is not allowed") && m.contains("--allow-destination"),
                    "{kind} {address}: {m}"
                ),
                Err(other) => panic!("{kind} {address}: {other:?}"),
                Ok(_) => panic!("{kind} {address} was allowed"),
            }
        }
        assert!(
            provider_for(
                &config("prometheus", "http://127.0.0.1:9090"),
                Duration::from_secs(5)
            )
            .is_ok()
        );
    }
}
