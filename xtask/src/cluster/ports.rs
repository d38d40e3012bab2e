//! Loopback ports of the control plane: chosen free at the first `up`, remembered in
//! `target/cluster/ports` and reused while they stay free, so the kubeconfig survives a
//! `down`/`up` cycle.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Every component listens here and nowhere else.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
}

impl Ports {
    pub fn render(&self) -> String {
        format!(
            "etcd_client={}\netcd_peer={}\napiserver={}\n",
            self.etcd_client, self.etcd_peer, self.apiserver
        )
    }

    /// Parses what [`Ports::render`] wrote; `None` if anything is missing or malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let get = |key: &str| {
            text.lines()
                .filter_map(|l| l.trim().split_once('='))
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.parse::<u16>().ok())
                .filter(|p| *p != 0)
        };
        Some(Ports {
            etcd_client: get("etcd_client")?,
            etcd_peer: get("etcd_peer")?,
            apiserver: get("apiserver")?,
        })
    }

    fn all(&self) -> [u16; 3] {
        [self.etcd_client, self.etcd_peer, self.apiserver]
    }
}

/// Whether nothing listens on `127.0.0.1:port` (by binding it for a moment).
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((LOOPBACK, port)).is_ok()
}

/// A port the kernel hands out as free on loopback, not in `avoid`.
fn free_port(avoid: &BTreeSet<u16>) -> Result<u16> {
    // Hold every listener until done so the kernel cannot hand out the same port twice.
    let mut held = Vec::new();
    for _ in 0..32 {
        let listener = TcpListener::bind((LOOPBACK, 0)).context("binding 127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if !avoid.contains(&port) {
            return Ok(port);
        }
        held.push(listener);
    }
    bail!("could not find a free port on 127.0.0.1")
}

/// Chooses the ports: the `requested` API server port if given (an error if it is taken),
/// the `previous` ones where still free (`is_free` decides), new free ones otherwise.
pub fn choose(
    previous: Option<Ports>,
    requested_apiserver: Option<u16>,
    is_free: impl Fn(u16) -> bool,
) -> Result<Ports> {
    let mut taken = BTreeSet::new();
    let apiserver = match requested_apiserver {
        Some(0) => bail!("--apiserver-port must not be 0"),
        Some(p) if !is_free(p) => bail!(
            "port {p} on 127.0.0.1 is taken by another process; pick another --apiserver-port \
             or leave it out to get a free one (see who holds it: `ss -ltnp 'sport = :{p}'`)"
        ),
        Some(p) => p,
        None => 0,
    };
    if apiserver != 0 {
        taken.insert(apiserver);
    }
    let mut pick = |old: Option<u16>| -> Result<u16> {
        let port = match old {
            Some(p) if !taken.contains(&p) && is_free(p) => p,
            _ => free_port(&taken)?,
        };
        taken.insert(port);
        Ok(port)
    };
    let prev = previous.map(|p| p.all());
    let etcd_client = pick(prev.map(|p| p[0]))?;
    let etcd_peer = pick(prev.map(|p| p[1]))?;
    let apiserver = if apiserver != 0 {
        apiserver
    } else {
        pick(prev.map(|p| p[2]))?
    };
    Ok(Ports {
        etcd_client,
        etcd_peer,
        apiserver,
    })
}

/// A plain-HTTP GET on loopback (etcd's `/health`); returns the status code and body.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let addr = SocketAddr::from((LOOPBACK, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    parse_http_response(&response).context("malformed HTTP response")
}

fn parse_http_response(response: &str) -> Option<(u16, String)> {
    let status = response
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_round_trip_and_reject_garbage() {
        let p = Ports {
            etcd_client: 1,
            etcd_peer: 2,
            apiserver: 3,
        };
        assert_eq!(Ports::parse(&p.render()), Some(p));
        assert_eq!(Ports::parse("etcd_client=1\netcd_peer=2\n"), None);
        assert_eq!(
            Ports::parse("etcd_client=1\netcd_peer=x\napiserver=3"),
            None
        );
        assert_eq!(
            Ports::parse("etcd_client=0\netcd_peer=2\napiserver=3"),
            None
        );
    }

    #[test]
    fn keeps_free_previous_ports_and_replaces_taken_ones() {
        let prev = Ports {
            etcd_client: 40001,
            etcd_peer: 40002,
            apiserver: 40003,
        };
        let all_free = choose(Some(prev), None, |_| true).unwrap();
        assert_eq!(all_free, prev);
        let peer_taken = choose(Some(prev), None, |p| p != 40002).unwrap();
        assert_eq!(peer_taken.etcd_client, 40001);
        assert_ne!(peer_taken.etcd_peer, 40002);
        assert_eq!(peer_taken.apiserver, 40003);
    }

    #[test]
    fn fresh_ports_are_distinct() {
        let p = choose(None, None, is_free).unwrap();
        let set: BTreeSet<u16> = p.all().into_iter().collect();
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn a_requested_port_that_is_taken_is_an_error() {
        let held = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let err = choose(None, Some(port), is_free).unwrap_err().to_string();
        assert!(err.contains("is taken"), "{err}");
        drop(held);
        let p = choose(None, Some(port), |_| true).unwrap();
        assert_eq!(p.apiserver, port);
        assert!(p.etcd_client != port && p.etcd_peer != port);
    }

    #[test]
    fn parses_http_responses() {
        let r = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n{\"health\":\"true\"}";
        assert_eq!(
            parse_http_response(r),
            Some((200, "{\"health\":\"true\"}".to_string()))
        );
        assert_eq!(parse_http_response(""), None);
    }
}
