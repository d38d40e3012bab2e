//! What the providers that speak plain HTTP share: a client built from the
//! [`ProviderConfig`](crate::ProviderConfig) (its headers, `insecureSkipVerify`, the timeout), the
//! address check, and one way of turning a failed exchange into a typed failure that says which
//! (unreachable, timed out, denied, rate limited, refused), never showing a credential.

use std::time::Duration;

use fledge_core::MetricOutcome;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use url::Url;

use crate::{ProviderConfig, shown};

/// The base URL of a provider: `address` when set, else the provider's documented default (when
/// it has one). `what` names the provider in messages, `example` is a usable address.
pub(crate) fn base_url(
    what: &str,
    address: &str,
    default: Option<&str>,
    example: &str,
) -> Result<Url, String> {
    let address = address.trim();
    let address = match (address.is_empty(), default) {
        (false, _) => address,
        (true, Some(d)) => d,
        (true, None) => {
            return Err(format!(
                "the {what} provider needs spec.provider.address; write e.g. {example}"
            ));
        }
    };
    let url = Url::parse(address)
        .map_err(|e| format!("the {what} address is not a URL ({e}); write e.g. {example}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "the {what} address {} must be an http:// or https:// URL with a host, e.g. {example}",
            shown(address)
        ));
    }
    Ok(url)
}

/// `base` joined with the API path `path` (which starts with `/`), keeping any path prefix of
/// `base` (a server behind a proxy at `https://proxy/graphite` serves `…/graphite/render`).
pub(crate) fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// A header value that is never printed (it carries a credential).
pub(crate) fn secret_header(value: &str, what: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::try_from(value).map_err(|_| {
        format!("{what} is not valid in an HTTP header (line breaks or control characters?)")
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// The largest answer a provider's query may send: a check needs one number, and a broken
/// query can match every series of the server.
pub(crate) const MAX_ANSWER_BYTES: usize = 16 << 20;

/// One provider's HTTP client, with what its messages say about it.
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    /// The provider's name in messages, e.g. `Datadog`.
    pub(crate) name: &'static str,
    /// The address as messages show it (scheme, host, port).
    pub(crate) shown: String,
    timeout: Duration,
    /// Which Secret keys hold the credentials, for the hint on 401 and 403.
    credentials: &'static str,
}

impl Http {
    /// A client for `cfg` (its extra headers, `insecureSkipVerify`) plus `headers` (the
    /// provider's credentials), giving up after `timeout`.
    pub(crate) fn new(
        name: &'static str,
        credentials: &'static str,
        cfg: &ProviderConfig,
        base: &Url,
        mut headers: HeaderMap,
        timeout: Duration,
    ) -> Result<Http, String> {
        for (k, v) in &cfg.headers {
            let key = HeaderName::try_from(k.as_str())
                .map_err(|_| format!("the header name {k:?} is not a valid HTTP header name"))?;
            let mut value = HeaderValue::try_from(v.as_str())
                .map_err(|_| format!("the value of header {k} is not a valid HTTP header value"))?;
            value.set_sensitive(true);
            headers.append(key, value);
        }
        let shown = shown(base.as_str());
        let client = crate::egress::metrics_client(base, &format!("the {name} address {shown}"))?
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .danger_accept_invalid_certs(cfg.insecure_skip_verify)
            .build()
            .map_err(|e| format!("cannot build an HTTP client for {shown}: {e}"))?;
        Ok(Http {
            client,
            name,
            shown,
            timeout,
            credentials,
        })
    }

    /// Sends `request` and reads the one number of a success answer with `value_of` (whose
    /// error says how the body differs from the documented one); anything else is a typed
    /// failure. `refusal` is as for [`Http::send`].
    pub(crate) async fn answer(
        &self,
        request: RequestBuilder,
        refusal: fn(&str) -> Option<String>,
        value_of: fn(&str) -> Result<MetricOutcome, String>,
    ) -> MetricOutcome {
        match self.send(request, refusal).await {
            Ok(body) => value_of(&body).unwrap_or_else(|e| self.unreadable(e)),
            Err(failure) => failure,
        }
    }

    /// Sends `request`; a success status gives the body, anything else a typed failure.
    /// `refusal` reads the provider's documented error body into its message, for the statuses
    /// that mean the query itself was refused (400, 404 and 422).
    pub(crate) async fn send(
        &self,
        request: RequestBuilder,
        refusal: fn(&str) -> Option<String>,
    ) -> Result<String, MetricOutcome> {
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        // Retry-After (RFC 9110), or the seconds until the limit resets where the provider
        // documents that instead (Datadog's X-RateLimit-Reset).
        let retry_after = [RETRY_AFTER.as_str(), "x-ratelimit-reset"]
            .iter()
            .find_map(|h| response.headers().get(*h))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = self.body(response).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(self.status_failure(status, retry_after.as_deref(), &body, refusal))
    }

    /// The answer's body, read up to [`MAX_ANSWER_BYTES`]: an answer over that (a query that
    /// matched a million series) is refused before it fills the controller's memory.
    async fn body(&self, response: reqwest::Response) -> Result<String, MetricOutcome> {
        match capped_body(response)
            .await
            .map_err(|e| self.transport(&e))?
        {
            Some(body) => Ok(String::from_utf8_lossy(&body).into_owned()),
            None => Err(oversized(self.name, &self.shown)),
        }
    }

    fn status_failure(
        &self,
        status: StatusCode,
        retry_after: Option<&str>,
        body: &str,
        refusal: fn(&str) -> Option<String>,
    ) -> MetricOutcome {
        let (name, at) = (self.name, &self.shown);
        match status.as_u16() {
            401 | 403 => MetricOutcome::ProviderUnreachable(format!(
                "{name} at {at} answered HTTP {status}; check the credentials in the provider's secretRef ({})",
                self.credentials
            )),
            429 => {
                let wait = match retry_after.map(str::trim).filter(|s| !s.is_empty()) {
                    Some(s) if s.bytes().all(|b| b.is_ascii_digit()) => {
                        format!("; it asks to wait {s}s before the next query")
                    }
                    Some(s) => format!("; it asks to wait until {}", clip(s, 64)),
                    None => String::new(),
                };
                MetricOutcome::ProviderUnreachable(format!(
                    "{name} at {at} answered HTTP {status}: too many requests{wait}"
                ))
            }
            400 | 404 | 422 => match refusal(body) {
                Some(message) => MetricOutcome::Error(format!(
                    "{name} at {at} refused the query (HTTP {status}): {}",
                    clip(&message, 500)
                )),
                None if status == StatusCode::NOT_FOUND => {
                    MetricOutcome::ProviderUnreachable(format!(
                        "{name} at {at} answered HTTP {status}; check the address (it must be the server's base URL)"
                    ))
                }
                None => MetricOutcome::Error(format!(
                    "{name} at {at} refused the query (HTTP {status}): {}",
                    clip(body.trim(), 500)
                )),
            },
            _ => MetricOutcome::ProviderUnreachable(format!(
                "{name} at {at} answered HTTP {status}{}",
                match refusal(body) {
                    Some(m) => format!(": {}", clip(&m, 500)),
                    None => String::new(),
                }
            )),
        }
    }

    fn transport(&self, e: &reqwest::Error) -> MetricOutcome {
        let (name, at) = (self.name, &self.shown);
        if e.is_timeout() {
            return MetricOutcome::ProviderUnreachable(format!(
                "{name} at {at} did not answer within {}s",
                self.timeout.as_secs_f64()
            ));
        }
        // The innermost cause (e.g. "Connection refused (os error 111)"), without the request
        // URL reqwest's own message carries (its query string holds the query, and for some
        // providers more).
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        if e.is_decode() || e.is_body() {
            return MetricOutcome::ProviderUnreachable(format!(
                "{name} at {at} sent an answer fledge cannot read: {cause}"
            ));
        }
        MetricOutcome::ProviderUnreachable(format!("cannot reach {name} at {at}: {cause}"))
    }

    /// A success answer whose body is not what the API documents.
    pub(crate) fn unreadable(&self, what: impl std::fmt::Display) -> MetricOutcome {
        MetricOutcome::Error(format!(
            "{} at {} gave an answer fledge cannot read: {what}",
            self.name, self.shown
        ))
    }
}

/// The text of the top-level field `key` of a JSON error body such as `{"message": "..."}`.
pub(crate) fn json_message(body: &str, key: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

/// The online check's verdict from the answer to its request.
pub(crate) fn online<T>(answer: Result<T, MetricOutcome>) -> Result<(), String> {
    match answer {
        Ok(_) => Ok(()),
        Err(MetricOutcome::ProviderUnreachable(m) | MetricOutcome::Error(m)) => Err(m),
        Err(other) => Err(format!("{other:?}")),
    }
}

/// At most `max` characters of `s` (a server's message can be long).
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The whole seconds of `d`, at least 1 (the window of a query over the last interval).
pub(crate) fn whole_seconds(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// The interval a provider whose API takes the time range apart from the query uses when it is
/// asked without one: Flagger's default metric interval.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// The body of `response`, or `None` when it grows over [`MAX_ANSWER_BYTES`] (it is not read
/// further).
pub(crate) async fn capped_body(
    mut response: reqwest::Response,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The failure of a query whose answer from `name` at `shown` is over [`MAX_ANSWER_BYTES`].
pub(crate) fn oversized(name: &str, shown: &str) -> MetricOutcome {
    MetricOutcome::Error(format!(
        "{name} at {shown} sent an answer over {} MiB; narrow the query to the one number the \
         check needs",
        MAX_ANSWER_BYTES >> 20
    ))
}

/// What the providers' unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use fledge_core::MetricOutcome;

    use crate::{ProviderConfig, SecretData};

    /// An outcome of a body reader as text: the outcome, or `unreadable: <why>`.
    pub(crate) fn shown(read: Result<MetricOutcome, String>) -> String {
        match read {
            Ok(o) => format!("{o:?}"),
            Err(e) => format!("unreadable: {e}"),
        }
    }

    /// A server on loopback that answers one request with 200 and a chunked body bigger
    /// than [`super::MAX_ANSWER_BYTES`] (chunks of 1 MiB, four more than the limit holds).
    pub(crate) async fn oversized_server(content_type: &'static str) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n\
                 transfer-encoding: chunked\r\n\r\n"
            );
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("100000\r\n{}\r\n", "[1,".repeat(0x100000 / 3) + "1");
            for _ in 0..(super::MAX_ANSWER_BYTES >> 20) + 4 {
                if conn.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = conn.write_all(b"0\r\n\r\n").await;
        });
        addr
    }

    /// A configuration of `kind` at `address` whose Secret `apps/<kind>` holds `pairs`.
    pub(crate) fn config(kind: &str, address: &str, pairs: &[(&str, &str)]) -> ProviderConfig {
        ProviderConfig {
            kind: kind.into(),
            address: address.into(),
            headers: Vec::new(),
            secret: Some(SecretData {
                name: format!("apps/{kind}"),
                data: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            }),
            insecure_skip_verify: false,
            region: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server answering 200 with a body bigger than any check needs (chunks of 1 MiB, more
    /// than [`MAX_ANSWER_BYTES`]): the query fails with a reason instead of holding it all.
    #[tokio::test]
    async fn an_answer_over_the_limit_is_refused() {
        let addr = testing::oversized_server("application/json").await;
        let base = Url::parse(&format!("http://{addr}")).unwrap();
        let cfg = testing::config("graphite", base.as_str(), &[]);
        let http = Http::new(
            "Graphite",
            "username, password",
            &cfg,
            &base,
            HeaderMap::new(),
            Duration::from_secs(30),
        )
        .unwrap();
        let request = http.client.get(endpoint(&base, "/render"));
        match http.send(request, |_| None).await {
            Err(MetricOutcome::Error(m)) => assert!(
                m.contains("sent an answer over 16 MiB; narrow the query"),
                "{m}"
            ),
            other => panic!("{:?}", other.map(|b| b.len())),
        }
    }

    #[test]
    fn the_endpoint_keeps_the_address_path_prefix() {
        let base = Url::parse("https://proxy.example/graphite/?x=1").unwrap();
        assert_eq!(
            endpoint(&base, "/render").as_str(),
            "https://proxy.example/graphite/render"
        );
        let bare = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            endpoint(&bare, "/api/v1/query").as_str(),
            "http://127.0.0.1:8080/api/v1/query"
        );
    }

    #[test]
    fn an_address_is_required_unless_the_provider_has_a_default() {
        let e = base_url("Dynatrace", "", None, "https://abc.live.dynatrace.com").unwrap_err();
        assert!(
            e.contains("spec.provider.address") && e.contains("abc.live"),
            "{e}"
        );
        let d = base_url("Datadog", " ", Some("https://api.datadoghq.com"), "x").unwrap();
        assert_eq!(d.as_str(), "https://api.datadoghq.com/");
        let e = base_url("Datadog", "ftp://x", None, "https://api.datadoghq.com").unwrap_err();
        assert!(e.contains("http://"), "{e}");
        let e = base_url("Datadog", "https://user:pw@", None, "x").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn long_messages_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("ééé", 2), "éé…");
        assert_eq!(clip("ab", 2), "ab");
    }
}
