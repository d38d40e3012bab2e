//! The Prometheus metrics provider, on `prometheus-http-query`: one instant query gives one
//! number, and anything else (no series, several series, a range, an error, silence) is said
//! plainly so the engine fails the check with that reason.

use std::time::Duration;

use fledge_core::MetricOutcome;
use prometheus_http_query::{Client, Error as PromError, response::Data};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::{MetricsProvider, ProviderConfig, SecretData, shown};

/// Credentials, as Flagger reads them from the provider's Secret: `token` (bearer), or
/// `username` and `password` (basic).
#[derive(Clone, Default, PartialEq, Eq)]
enum Auth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

/// The credentials in the provider's Secret, as Flagger names its keys: `token`, or `username`
/// and `password`.
fn auth_of(secret: Option<&SecretData>) -> Result<Auth, String> {
    let Some(s) = secret else {
        return Ok(Auth::None);
    };
    Ok(
        match (s.text("token"), s.text("username"), s.text("password")) {
            (Some(token), _, _) => Auth::Bearer(token),
            (None, Some(username), Some(password)) => Auth::Basic { username, password },
            (None, Some(_), None) => {
                return Err(format!("Secret {} has a username but no password", s.name));
            }
            (None, None, Some(_)) => {
                return Err(format!("Secret {} has a password but no username", s.name));
            }
            (None, None, None) => Auth::None,
        },
    )
}

/// A client of one Prometheus server.
pub struct Prometheus {
    client: Client,
    shown: String,
    timeout: Duration,
}

impl Prometheus {
    /// A client for `cfg`; every request gives up after `timeout`. The error is for people and
    /// holds no secret.
    /// The Secret may hold `address` (which overrides the configured one, as in Flagger),
    /// `token` or `username` and `password`, and `ca.crt`.
    pub fn new(cfg: &ProviderConfig, timeout: Duration) -> Result<Prometheus, String> {
        let secret = cfg.secret.as_ref();
        let address = secret
            .and_then(|s| s.text("address"))
            .unwrap_or_else(|| cfg.address.clone());
        let shown = shown(&address);
        let url = Url::parse(&address).map_err(|e| {
            format!("the Prometheus address is not a URL ({e}); write e.g. http://prometheus.monitoring:9090")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the Prometheus address {shown} must start with http:// or https://"
            ));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| format!("the header name {name:?} is not a valid HTTP header name"))?;
            let mut value = HeaderValue::try_from(value.as_str()).map_err(|_| {
                format!("the value of header {name} is not a valid HTTP header value")
            })?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        let mut auth = match &auth_of(secret)? {
            Auth::None => None,
            Auth::Bearer(token) => Some(format!("Bearer {}", token.trim())),
            Auth::Basic { username, password } => {
                use base64::Engine as _;
                let pair = format!("{username}:{password}");
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
        }
        .map(|v| {
            HeaderValue::try_from(v).map_err(|_| {
                "the credentials in the provider's Secret are not valid in an HTTP header"
                    .to_string()
            })
        })
        .transpose()?;
        if let Some(v) = auth.as_mut() {
            v.set_sensitive(true);
        }
        if let Some(v) = auth {
            headers.insert(AUTHORIZATION, v);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .danger_accept_invalid_certs(cfg.insecure_skip_verify);
        if let Some(pem) = secret.and_then(|s| s.bytes("ca.crt")) {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                format!("the ca.crt of the provider's Secret is not PEM certificates: {e}")
            })?;
            if certs.is_empty() {
                return Err(
                    "the ca.crt of the provider's Secret holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                );
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build an HTTP client for {shown}: {e}"))?;
        let client = Client::from(http, url.as_str())
            .map_err(|e| format!("the Prometheus address {shown} is not usable: {e}"))?;
        Ok(Prometheus {
            client,
            shown,
            timeout,
        })
    }

    /// [`Prometheus::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(
        cfg: &ProviderConfig,
        timeout: Duration,
    ) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(Prometheus::new(cfg, timeout)?))
    }

    /// Whether the server answers a trivial query (`vector(1)` must give 1).
    pub async fn online(&self) -> Result<(), String> {
        match self.query("vector(1)").await {
            MetricOutcome::Value(1.0) => Ok(()),
            MetricOutcome::ProviderUnreachable(m) | MetricOutcome::Error(m) => Err(m),
            other => Err(format!(
                "Prometheus at {} answered vector(1) with {other:?}; is it a Prometheus server?",
                self.shown
            )),
        }
    }

    /// Runs an instant query that must give one number.
    pub async fn query(&self, promql: &str) -> MetricOutcome {
        let result = match self.client.query(promql).get().await {
            Ok(r) => r,
            Err(e) => return self.failure(&e),
        };
        match result.data() {
            Data::Scalar(s) => MetricOutcome::Value(s.value()),
            Data::Vector(v) => match v.as_slice() {
                [] => MetricOutcome::NoData,
                [one] => MetricOutcome::Value(one.sample().value()),
                many => MetricOutcome::Error(format!(
                    "the query returned {} series where one number is expected; aggregate them, e.g. with sum(...)",
                    many.len()
                )),
            },
            Data::Matrix(_) => MetricOutcome::Error(
                "the query returned a range vector where one number is expected; apply rate(), sum() or another function to its [range]".into(),
            ),
        }
    }

    fn failure(&self, e: &PromError) -> MetricOutcome {
        let at = &self.shown;
        match e {
            PromError::Prometheus(p) if p.is_bad_data() => MetricOutcome::Error(format!(
                "Prometheus at {at} refused the query: {}",
                p.message()
            )),
            PromError::Prometheus(p) if p.is_timeout() || p.is_canceled() => {
                MetricOutcome::ProviderUnreachable(format!(
                    "Prometheus at {at} gave up on the query: {}",
                    p.message()
                ))
            }
            PromError::Prometheus(p) => MetricOutcome::Error(format!(
                "Prometheus at {at} failed the query: {}",
                p.message()
            )),
            PromError::Client(c) => {
                let Some(inner) = c.inner() else {
                    return MetricOutcome::ProviderUnreachable(format!(
                        "Prometheus at {at} gave an answer fledge cannot read: {c}"
                    ));
                };
                if inner.is_timeout() {
                    return MetricOutcome::ProviderUnreachable(format!(
                        "Prometheus at {at} did not answer within {}s",
                        self.timeout.as_secs_f64()
                    ));
                }
                if let Some(status) = inner.status() {
                    let hint = match status.as_u16() {
                        401 | 403 => "; check the credentials in the provider's secretRef",
                        404 => "; check the address (it must be the server's base URL)",
                        _ => "",
                    };
                    return MetricOutcome::ProviderUnreachable(format!(
                        "Prometheus at {at} answered HTTP {status}{hint}"
                    ));
                }
                // The innermost cause (e.g. "Connection refused (os error 111)"), without the
                // request URL reqwest's own message carries.
                let mut cause: &dyn std::error::Error = inner;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                MetricOutcome::ProviderUnreachable(format!(
                    "cannot reach Prometheus at {at}: {cause}"
                ))
            }
            other => MetricOutcome::Error(format!("Prometheus at {at}: {other}")),
        }
    }
}

#[async_trait::async_trait]
impl MetricsProvider for Prometheus {
    async fn online(&self) -> Result<(), String> {
        Prometheus::online(self).await
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        Prometheus::query(self, query).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server on loopback that answers every request with `status` and `body` (JSON), and
    /// keeps each request's head.
    async fn server(status: u16, body: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = sock.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                    }
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).to_string());
                    let content_type = if body.starts_with('{') {
                        "application/json"
                    } else {
                        "text/plain"
                    };
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        (format!("http://127.0.0.1:{}", addr.port()), seen)
    }

    fn cfg(address: &str) -> ProviderConfig {
        ProviderConfig {
            kind: "prometheus".into(),
            address: address.into(),
            headers: Vec::new(),
            secret: None,
            insecure_skip_verify: false,
        }
    }

    fn secret(pairs: &[(&str, &str)]) -> Option<SecretData> {
        Some(SecretData {
            name: "test/prom".into(),
            data: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        })
    }

    fn prom(c: &ProviderConfig) -> Prometheus {
        Prometheus::new(c, Duration::from_secs(2)).unwrap()
    }

    const ONE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"99.5"]}]}}"#;
    const NONE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    const TWO: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1700000000,"1"]},{"metric":{"a":"2"},"value":[1700000000,"2"]}]}}"#;
    const SCALAR: &str =
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}"#;
    const NAN: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"NaN"]}]}}"#;
    const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"]]}]}}"#;
    const BAD: &str = r#"{"status":"error","errorType":"bad_data","error":"1:14: parse error: unclosed left parenthesis"}"#;

    #[tokio::test]
    async fn one_series_is_a_value_and_everything_else_says_what_it_was() {
        for (status, body, want) in [
            (200, ONE, "Value(99.5)"),
            (200, SCALAR, "Value(42.0)"),
            (200, NONE, "NoData"),
            (200, TWO, "2 series where one number is expected"),
            (200, MATRIX, "range vector"),
            (
                400,
                BAD,
                "refused the query: 1:14: parse error: unclosed left parenthesis",
            ),
            (
                401,
                "denied",
                "answered HTTP 401 Unauthorized; check the credentials",
            ),
            (502, "bad gateway", "answered HTTP 502"),
        ] {
            let (url, _) = server(status, body).await;
            let got = format!("{:?}", prom(&cfg(&url)).query("q").await);
            assert!(got.contains(want), "{status} {body}: {got}");
        }
        let (url, _) = server(200, NAN).await;
        assert!(matches!(
            prom(&cfg(&url)).query("q").await,
            MetricOutcome::Value(v) if v.is_nan()
        ));
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_unreachable_and_never_shows_credentials() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = cfg(&format!(
            "http://admin:hunter2@127.0.0.1:{port}/prom?key=s3cr3t"
        ));
        let p = prom(&c);
        let MetricOutcome::ProviderUnreachable(m) = p.query("up").await else {
            panic!("not unreachable");
        };
        assert!(m.contains(&format!("http://127.0.0.1:{port}")), "{m}");
        assert!(m.contains("Connection refused"), "{m}");
        let online = p.online().await.unwrap_err();
        for text in [&m, &online, &format!("{c:?}")] {
            for secret in ["hunter2", "admin", "s3cr3t", "prom?"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // Accepts and holds the connection without answering.
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let p = Prometheus::new(&cfg(&url), Duration::from_millis(300)).unwrap();
        let got = format!("{:?}", p.query("up").await);
        assert!(got.contains("did not answer within 0.3s"), "{got}");
        hold.abort();
    }

    #[tokio::test]
    async fn credentials_and_headers_go_with_every_request() {
        let (url, seen) = server(200, ONE).await;
        let mut c = cfg(&url);
        c.secret = secret(&[("token", "tok-123")]);
        c.headers = vec![("X-Scope-OrgID".into(), "team-a".into())];
        assert!(matches!(
            prom(&c).query("up").await,
            MetricOutcome::Value(_)
        ));
        c.secret = secret(&[("username", "fledge"), ("password", "pw")]);
        assert!(matches!(
            prom(&c).query("vector(1)").await,
            MetricOutcome::Value(_)
        ));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        let lower: Vec<String> = seen.iter().map(|h| h.to_ascii_lowercase()).collect();
        assert!(
            lower[0].contains("authorization: bearer tok-123"),
            "{}",
            seen[0]
        );
        assert!(lower[0].contains("x-scope-orgid: team-a"), "{}", seen[0]);
        assert!(
            lower[0].starts_with("get /api/v1/query?query=up"),
            "{}",
            seen[0]
        );
        // fledge:pw in base64.
        assert!(
            lower[1].contains("authorization: basic zmxlzgdlonb3"),
            "{}",
            seen[1]
        );
        assert!(lower[1].contains("query=vector%281%29"), "{}", seen[1]);
    }

    #[test]
    fn bad_addresses_and_headers_are_refused_with_what_to_do() {
        for (address, want) in [
            ("prometheus:9090", "must start with http:// or https://"),
            ("not a url", "is not a URL"),
            ("ftp://host", "must start with http:// or https://"),
        ] {
            let err = Prometheus::new(&cfg(address), Duration::from_secs(1))
                .err()
                .unwrap();
            assert!(err.contains(want), "{address}: {err}");
        }
        let mut c = cfg("http://127.0.0.1:1");
        c.headers = vec![("bad header".into(), "x".into())];
        let err = Prometheus::new(&c, Duration::from_secs(1)).err().unwrap();
        assert!(err.contains("not a valid HTTP header name"), "{err}");
        c.headers = Vec::new();
        c.secret = secret(&[("ca.crt", "not a certificate")]);
        let err = Prometheus::new(&c, Duration::from_secs(1)).err().unwrap();
        assert!(err.contains("ca.crt"), "{err}");
        c.secret = secret(&[("username", "u")]);
        let err = Prometheus::new(&c, Duration::from_secs(1)).err().unwrap();
        assert!(
            err.contains("Secret test/prom has a username but no password"),
            "{err}"
        );
        c.secret = secret(&[("password", "p")]);
        let err = Prometheus::new(&c, Duration::from_secs(1)).err().unwrap();
        assert!(err.contains("has a password but no username"), "{err}");
    }

    #[tokio::test]
    async fn an_address_in_the_secret_overrides_the_configured_one() {
        let (url, seen) = server(200, ONE).await;
        let mut c = cfg("http://127.0.0.1:1");
        c.secret = secret(&[("address", &url)]);
        assert!(matches!(
            prom(&c).query("up").await,
            MetricOutcome::Value(_)
        ));
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
