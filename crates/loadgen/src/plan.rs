//! What to send: a load plan, checked before anything is sent.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Uri};

use crate::error::{Error, invalid};

/// The most workers (connections) one plan may use.
pub const MAX_CONCURRENCY: usize = 10_000;

/// One URL to load, with its share of the requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`.
    pub https: bool,
    /// Host name or IP literal (without brackets), as dialled.
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
    /// Path and query, `/` when the URL has none.
    pub path_and_query: String,
    /// The weight of this target among the plan's targets (at least 1).
    pub weight: u32,
}

impl Target {
    /// Parses an absolute `http` or `https` URL (no user info).
    pub fn parse(url: &str, weight: u32) -> Result<Target, Error> {
        if !url.contains("://") {
            return Err(invalid(format!("URL {url:?} is not absolute (http://…)")));
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| invalid(format!("invalid URL {url:?}: {e}")))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "URL {url:?}: scheme {other:?} is not supported (http or https)"
                )));
            }
            None => return Err(invalid(format!("URL {url:?} is not absolute (http://…)"))),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid(format!("URL {url:?} has no host")))?;
        if authority.as_str().contains('@') {
            return Err(invalid(format!(
                "URL {url:?}: user info in URLs is not supported (use a header)"
            )));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(invalid(format!("URL {url:?} has no host")));
        }
        if weight == 0 {
            return Err(invalid(format!("URL {url:?}: weight must be at least 1")));
        }
        Ok(Target {
            https,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            host,
            path_and_query: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
            weight,
        })
    }

    /// `host:port` with brackets around IPv6 literals, as in a `Host` header.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The URL without its query (which may carry keys): what logs and metrics show.
    pub fn label(&self) -> String {
        let path = self.path_and_query.split('?').next().unwrap_or("/");
        format!(
            "{}://{}{path}",
            if self.https { "https" } else { "http" },
            self.authority()
        )
    }

    /// The key of the connection this target is sent over.
    pub(crate) fn origin(&self) -> (bool, &str, u16) {
        (self.https, &self.host, self.port)
    }
}

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Model {
    /// Each worker sends its next request as soon as the previous answer is read (like wrk).
    ClosedLoop,
    /// Requests are due at a fixed total rate per second, spread evenly over the workers; the
    /// latency of each is measured from when it was due, so a stalled server shows in the
    /// figures instead of slowing the schedule (no coordinated omission).
    OpenLoop {
        /// Total requests per second.
        rate: f64,
    },
}

/// HTTP version spoken to the targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2: with prior knowledge (h2c) on `http`, negotiated by ALPN on `https`.
    Http2,
}

/// TLS options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Accept any certificate (self-signed test servers).
    pub insecure: bool,
    /// PEM file of extra CA certificates to trust, beside the system's.
    pub ca_file: Option<PathBuf>,
}

/// A checked load plan.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The URLs, picked per request by weight.
    pub targets: Vec<Target>,
    /// Request method.
    pub method: Method,
    /// Headers of every request (besides `Host`).
    pub headers: HeaderMap,
    /// `Host` header (HTTP/1.1) or `:authority` (HTTP/2) instead of the URL's; also the TLS
    /// server name.
    pub host: Option<String>,
    /// Request body.
    pub body: Bytes,
    /// Workers, each with its own connection per origin.
    pub concurrency: usize,
    /// Pacing.
    pub model: Model,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Time limit of one request; `None` waits forever.
    pub timeout: Option<Duration>,
    /// HTTP version.
    pub http: HttpVersion,
    /// Reuse connections (`false` opens one per request and asks the server to close it).
    pub keepalive: bool,
    /// TLS options.
    pub tls: TlsOptions,
}

impl Plan {
    /// A GET plan of one URL with defaults: 1 worker, closed loop, HTTP/1.1, 20 s timeout.
    /// The caller sets a bound; [`Plan::check`] refuses a plan without one.
    pub fn get(url: &str) -> Result<Plan, Error> {
        Ok(Plan {
            targets: vec![Target::parse(url, 1)?],
            method: Method::GET,
            headers: HeaderMap::new(),
            host: None,
            body: Bytes::new(),
            concurrency: 1,
            model: Model::ClosedLoop,
            requests: None,
            duration: None,
            timeout: Some(Duration::from_secs(20)),
            http: HttpVersion::Http1,
            keepalive: true,
            tls: TlsOptions::default(),
        })
    }

    /// Checks the plan: a bound, sane numbers, at least one target.
    pub fn check(&self) -> Result<(), Error> {
        if self.targets.is_empty() {
            return Err(invalid("no URL to load"));
        }
        if self.requests.is_none() && self.duration.is_none() {
            return Err(invalid(
                "the load is unbounded: give a duration (-z) or a number of requests (-n)",
            ));
        }
        if self.requests == Some(0) {
            return Err(invalid("the number of requests (-n) must be at least 1"));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(invalid("the duration (-z) must be more than 0"));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(invalid(format!(
                "concurrency (-c) must be between 1 and {MAX_CONCURRENCY}, not {}",
                self.concurrency
            )));
        }
        if let Model::OpenLoop { rate } = self.model
            && !(rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0)
        {
            return Err(invalid(format!(
                "the rate (-q) must be a positive number of requests per second, not {rate}"
            )));
        }
        if let Some(host) = &self.host {
            HeaderValue::from_str(host)
                .ok()
                .filter(|_| !host.is_empty())
                .ok_or_else(|| invalid(format!("invalid host {host:?}")))?;
        }
        Ok(())
    }

    /// Adds a header from `Name: value` text.
    pub fn add_header_line(&mut self, line: &str) -> Result<(), Error> {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("invalid header {line:?}: expected \"Name: value\"")))?;
        self.add_header(name.trim(), value.trim())
    }

    /// Adds a header; `Host` sets [`Plan::host`].
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), Error> {
        if name.eq_ignore_ascii_case("host") {
            self.host = Some(value.to_string());
            return Ok(());
        }
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {name:?}")))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("invalid value of header {name}")))?;
        self.headers.append(n, v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_host_port_and_path() {
        let t = Target::parse("http://podinfo-canary.test:9898/api/info?x=1", 1).unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.path_and_query.as_str()),
            (false, "podinfo-canary.test", 9898, "/api/info?x=1")
        );
        assert_eq!(t.label(), "http://podinfo-canary.test:9898/api/info");
        let t = Target::parse("https://[::1]/", 2).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 443));
        assert_eq!(t.authority(), "[::1]");
        assert_eq!(
            Target::parse("http://a", 1).unwrap().path_and_query,
            "/".to_string()
        );
    }

    #[test]
    fn bad_targets_say_why() {
        for (url, why) in [
            ("podinfo:9898/", "not absolute"),
            ("ftp://x/", "scheme"),
            ("http://user:pw@x/", "user info"),
            ("http:// x/", "invalid URL"),
        ] {
            let err = Target::parse(url, 1).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
        assert!(Target::parse("http://x/", 0).is_err());
    }

    #[test]
    fn plans_must_be_bounded() {
        let mut p = Plan::get("http://127.0.0.1:1/").unwrap();
        assert!(p.check().unwrap_err().to_string().contains("unbounded"));
        p.requests = Some(1);
        p.check().unwrap();
        p.concurrency = 0;
        assert!(p.check().is_err());
        p.concurrency = 2;
        p.model = Model::OpenLoop { rate: 0.0 };
        assert!(p.check().unwrap_err().to_string().contains("rate"));
    }

    #[test]
    fn header_lines() {
        let mut p = Plan::get("http://x/").unwrap();
        p.add_header_line("X-Canary: insider").unwrap();
        p.add_header_line("Cookie:canary=always; a=b").unwrap();
        p.add_header_line("Host: app.example.com").unwrap();
        assert_eq!(p.headers["x-canary"], "insider");
        assert_eq!(p.headers["cookie"], "canary=always; a=b");
        assert_eq!(p.host.as_deref(), Some("app.example.com"));
        assert!(p.add_header_line("no colon").is_err());
        assert!(p.add_header_line("bad name: x").is_err());
    }
}
