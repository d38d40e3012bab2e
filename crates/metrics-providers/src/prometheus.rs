//! The Prometheus metrics provider, on `prometheus-http-query`: one instant query gives one
//! number, and anything else (no series, several series, a range, an error, silence) is said
//! plainly so the engine fails the check with that reason.

use std::time::Duration;

use fledge_core::MetricOutcome;
use prometheus_http_query::error::PrometheusError;
use prometheus_http_query::response::{Data, PromqlResult};
use prometheus_http_query::{Client, Error as PromError};
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

/// The envelope of every answer of Prometheus's query API.
#[derive(serde::Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Answer {
    Success { data: PromqlResult },
    Error(PrometheusError),
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
        let policy = crate::egress::policy();
        if let Some(reason) =
            crate::egress::refused(&policy, &url, fledge_core::egress::Purpose::Metrics)
        {
            return Err(format!(
                "the Prometheus address {shown} is not allowed: {reason}"
            ));
        }
        let mut builder = crate::egress::guard(
            reqwest::Client::builder(),
            policy,
            fledge_core::egress::Purpose::Metrics,
        )
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
        ctx: &crate::Context,
    ) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(Prometheus::new(cfg, ctx.timeout)?))
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
        self.instant(promql, None).await
    }

    /// Runs an instant query evaluated at `at` (seconds since the Unix epoch), or now.
    pub async fn instant(&self, promql: &str, at: Option<i64>) -> MetricOutcome {
        let mut q = self.client.query(promql);
        if let Some(t) = at {
            q = q.at(t);
        }
        let result = match self.answer(q.get_raw().await).await {
            Ok(r) => r,
            Err(failed) => return failed,
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

    /// Runs a range query over the `range` up to `end` (seconds since the Unix epoch, or now),
    /// a point every twentieth of it (at least every second): every value of every series.
    pub async fn range_values(
        &self,
        promql: &str,
        range: Duration,
        end: Option<i64>,
    ) -> Result<Vec<f64>, MetricOutcome> {
        let end = end.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
        let start = end - range.as_secs().max(1) as i64;
        let step = (range.as_secs_f64() / 20.0).max(1.0);
        let result = self
            .answer(
                self.client
                    .query_range(promql, start, end, step)
                    .get_raw()
                    .await,
            )
            .await?;
        Ok(match result.data() {
            Data::Matrix(series) => series
                .iter()
                .flat_map(|s| s.samples().iter().map(|v| v.value()))
                .collect(),
            Data::Vector(v) => v.iter().map(|s| s.sample().value()).collect(),
            Data::Scalar(s) => vec![s.value()],
        })
    }

    /// The result in the answer to a query, read up to [`crate::http::MAX_ANSWER_BYTES`] (a
    /// query that matched a million series fails instead of filling the controller's memory).
    /// An error answer is reported in the server's own words, also from a server that is
    /// Prometheus-compatible but not Prometheus (VictoriaMetrics gives an HTTP status as its
    /// `errorType`, which the query client's error type does not know).
    async fn answer(
        &self,
        sent: Result<reqwest::Response, PromError>,
    ) -> Result<PromqlResult, MetricOutcome> {
        let response = sent.map_err(|e| self.failure(&e))?;
        let status = response.status();
        let body = crate::http::capped_body(response)
            .await
            .map_err(|e| self.transport(&e))?
            .ok_or_else(|| crate::http::oversized("Prometheus", &self.shown))?;
        if let Ok(answer) = serde_json::from_slice::<Answer>(&body) {
            return match answer {
                Answer::Success { data } => Ok(data),
                Answer::Error(e) => Err(self.failure(&PromError::Prometheus(e))),
            };
        }
        let error = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| Some(v.get("error")?.as_str()?.to_string()));
        let at = &self.shown;
        Err(match error {
            Some(error) if status.is_client_error() => {
                MetricOutcome::Error(format!("Prometheus at {at} refused the query: {error}"))
            }
            Some(error) => {
                MetricOutcome::Error(format!("Prometheus at {at} failed the query: {error}"))
            }
            None if !status.is_success() => {
                let hint = match status.as_u16() {
                    401 | 403 => "; check the credentials in the provider's secretRef",
                    404 => "; check the address (it must be the server's base URL)",
                    _ => "",
                };
                MetricOutcome::ProviderUnreachable(format!(
                    "Prometheus at {at} answered HTTP {status}{hint}"
                ))
            }
            None => MetricOutcome::ProviderUnreachable(format!(
                "Prometheus at {at} gave an answer fledge cannot read (not the JSON of \
                 Prometheus's query API); is the address a Prometheus server?"
            )),
        })
    }

    /// A request that got no answer: it timed out, or the connection failed.
    fn transport(&self, inner: &reqwest::Error) -> MetricOutcome {
        let at = &self.shown;
        if inner.is_timeout() {
            return MetricOutcome::ProviderUnreachable(format!(
                "Prometheus at {at} did not answer within {}s",
                self.timeout.as_secs_f64()
            ));
        }
        // The innermost cause (e.g. "Connection refused (os error 111)"), without the request
        // URL reqwest's own message carries.
        let mut cause: &dyn std::error::Error = inner;
        while let Some(next) = cause.source() {
            cause = next;
        }
        MetricOutcome::ProviderUnreachable(format!("cannot reach Prometheus at {at}: {cause}"))
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
            PromError::Client(c) => match c.inner() {
                Some(inner) => self.transport(inner),
                None => MetricOutcome::ProviderUnreachable(format!(
                    "Prometheus at {at} gave an answer fledge cannot read: {c}"
                )),
            },
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

    async fn query_at(&self, query: &str, unix_seconds: i64) -> MetricOutcome {
        self.instant(query, Some(unix_seconds)).await
    }

    async fn samples(
        &self,
        query: &str,
        range: Duration,
        end: Option<i64>,
    ) -> Result<Vec<f64>, MetricOutcome> {
        self.range_values(query, range, end).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::testing;

    /// A query whose answer is bigger than any check needs (a query that matched a million
    /// series) fails with a reason; the answer is not read past the limit.
    #[tokio::test]
    async fn an_answer_over_the_limit_is_refused() {
        let addr = testing::oversized_server("application/json").await;
        let cfg = testing::config("prometheus", &format!("http://{addr}"), &[]);
        let prometheus = Prometheus::new(&cfg, Duration::from_secs(30)).unwrap();
        match prometheus.query("up").await {
            MetricOutcome::Error(m) => assert!(
                m.contains("sent an answer over 16 MiB; narrow the query"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
