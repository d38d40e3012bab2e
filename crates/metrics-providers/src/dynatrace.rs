//! The Dynatrace metrics provider: the metrics API v2 (`GET /api/v2/metrics/query`,
//! <https://docs.dynatrace.com/docs/dynatrace-api/environment-api/metric-v2/get-data-points>)
//! with `Authorization: Api-Token <token>`, the token read from the Secret key `dynatrace_token`
//! as Flagger names it. As in Flagger, the template's query is the `metricSelector`, the
//! resolution is `Inf` (one value for the whole window), the window is ten metric intervals
//! back from now, and the online check lists one metric (`GET /api/v2/metrics?pageSize=1`).
//! The address is the environment's URL (`https://{id}.live.dynatrace.com`, or
//! `https://{domain}/e/{environment id}` for Managed); it has no default.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fledge_core::MetricOutcome;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::Deserialize;
use url::Url;

use crate::http::{
    DEFAULT_INTERVAL, Http, base_url, endpoint, online, secret_header, whole_seconds,
};
use crate::{MetricsProvider, ProviderConfig};

/// The Secret key of the API token, as Flagger names it.
pub const TOKEN: &str = "dynatrace_token";

/// How many metric intervals back the query starts, as in Flagger.
const WINDOW_INTERVALS: u64 = 10;

/// A client of one Dynatrace environment.
pub struct Dynatrace {
    http: Http,
    base: Url,
}

impl Dynatrace {
    /// A client for `cfg`; every request gives up after `timeout`. The error is for people and
    /// holds no secret.
    pub fn new(cfg: &ProviderConfig, timeout: Duration) -> Result<Dynatrace, String> {
        let base = base_url(
            "dynatrace",
            &cfg.address,
            None,
            "https://abc12345.live.dynatrace.com",
        )?;
        let token = cfg.credentials("dynatrace", &[TOKEN])?.remove(0);
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            secret_header(
                &format!("Api-Token {token}"),
                &format!("the {TOKEN} of the provider's Secret"),
            )?,
        );
        let http = Http::new("Dynatrace", TOKEN, cfg, &base, headers, timeout)?;
        Ok(Dynatrace { http, base })
    }

    /// [`Dynatrace::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(
        cfg: &ProviderConfig,
        ctx: &crate::Context,
    ) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(Dynatrace::new(cfg, ctx.timeout)?))
    }
}

/// The documented error body: `{"error": {"code": 400, "message": "..."}}`.
fn refusal(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Body {
        error: Error,
    }
    #[derive(Deserialize)]
    struct Error {
        message: String,
        #[serde(default, rename = "constraintViolations")]
        violations: Vec<Violation>,
    }
    #[derive(Deserialize)]
    struct Violation {
        message: String,
    }
    let e = serde_json::from_str::<Body>(body).ok()?.error;
    let mut parts = vec![e.message];
    parts.extend(e.violations.into_iter().map(|v| v.message));
    Some(parts.join("; "))
}

/// The one number of an answer of `/api/v2/metrics/query`.
///
/// Flagger takes the first value of the last series of the first metric. fledge differs where
/// that is wrong: several metrics or several series (dimension tuples, or a next page) are a
/// failure (Flagger would judge an arbitrary one), and a `null` value (no data points in the
/// window) is no data (Flagger's decoder fails on it).
fn value_of(body: &str) -> Result<MetricOutcome, String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default, rename = "nextPageKey")]
        next_page_key: Option<String>,
        #[serde(default)]
        result: Vec<Metric>,
    }
    #[derive(Deserialize)]
    struct Metric {
        #[serde(default)]
        data: Vec<Series>,
    }
    #[derive(Deserialize)]
    struct Series {
        #[serde(default)]
        values: Vec<Option<f64>>,
    }
    let a: Answer = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let series: Vec<&Series> = a.result.iter().flat_map(|m| &m.data).collect();
    if series.len() > 1 || (a.next_page_key.is_some() && !series.is_empty()) {
        return Ok(MetricOutcome::Error(format!(
            "the query returned {}{} series where one number is expected; aggregate them, e.g. with :splitBy():avg",
            series.len(),
            if a.next_page_key.is_some() {
                " or more"
            } else {
                ""
            }
        )));
    }
    Ok(series
        .first()
        .and_then(|s| s.values.iter().rev().find_map(|v| *v))
        .map_or(MetricOutcome::NoData, MetricOutcome::Value))
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() * 1000)
}

#[async_trait::async_trait]
impl MetricsProvider for Dynatrace {
    async fn online(&self) -> Result<(), String> {
        let request = self
            .http
            .client
            .get(endpoint(&self.base, "/api/v2/metrics"))
            .query(&[("pageSize", "1")]);
        online(self.http.send(request, refusal).await)
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        self.query_over(query, DEFAULT_INTERVAL).await
    }

    async fn query_over(&self, query: &str, interval: Duration) -> MetricOutcome {
        let to = now_millis();
        let from = to.saturating_sub(WINDOW_INTERVALS * whole_seconds(interval) * 1000);
        let request = self
            .http
            .client
            .get(endpoint(&self.base, "/api/v2/metrics/query"))
            .query(&[
                ("metricSelector", query.trim()),
                ("resolution", "Inf"),
                ("from", &from.to_string()),
                ("to", &to.to_string()),
            ]);
        self.http.answer(request, refusal, value_of).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(body: &str) -> String {
        crate::http::testing::shown(value_of(body))
    }

    #[test]
    fn the_one_series_gives_its_last_value() {
        assert_eq!(
            v(
                r#"{"totalCount":1,"nextPageKey":null,"resolution":"Inf","result":[{"metricId":"m","data":[{"dimensions":[],"timestamps":[1,2],"values":[1.5,null]}]}]}"#
            ),
            "Value(1.5)"
        );
    }

    #[test]
    fn no_metric_no_series_and_null_values_are_no_data() {
        for body in [
            r#"{"totalCount":0,"result":[]}"#,
            r#"{"result":[{"metricId":"m","data":[]}]}"#,
            r#"{"result":[{"metricId":"m","data":[{"timestamps":[1],"values":[null]}]}]}"#,
        ] {
            assert_eq!(v(body), "NoData", "{body}");
        }
    }

    #[test]
    fn several_series_metrics_or_pages_are_several_series() {
        let two = v(r#"{"result":[{"data":[{"values":[1]},{"values":[2]}]}]}"#);
        assert!(two.contains("2 series"), "{two}");
        let metrics = v(r#"{"result":[{"data":[{"values":[1]}]},{"data":[{"values":[2]}]}]}"#);
        assert!(metrics.contains("2 series"), "{metrics}");
        let paged = v(r#"{"nextPageKey":"abc","result":[{"data":[{"values":[1]}]}]}"#);
        assert!(paged.contains("1 or more series"), "{paged}");
    }

    #[test]
    fn the_documented_error_body_gives_its_messages() {
        assert_eq!(
            refusal(r#"{"error":{"code":400,"message":"Constraints violated.","constraintViolations":[{"path":"metricSelector","message":"Token 'x' unexpected","parameterLocation":"QUERY"}]}}"#).as_deref(),
            Some("Constraints violated.; Token 'x' unexpected")
        );
        assert!(v("<html>").starts_with("unreadable"));
    }
}
