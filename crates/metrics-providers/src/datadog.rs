//! The Datadog metrics provider: the metrics query API v1 (`GET /api/v1/query`,
//! <https://docs.datadoghq.com/api/latest/metrics/#query-timeseries-points>) with the API and
//! application keys in the `DD-API-KEY` and `DD-APPLICATION-KEY` headers, read from the Secret
//! keys `datadog_api_key` and `datadog_application_key` as Flagger names them. The online check
//! is `GET /api/v1/validate` (<https://docs.datadoghq.com/api/latest/authentication/#validate-api-key>).
//!
//! As in Flagger, the query runs from ten metric intervals ago until now (Datadog's points of the
//! last minutes often arrive late, and its rollups need a window of several points) and gives the
//! last point of the series.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fledge_core::MetricOutcome;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use url::Url;

use crate::http::{
    DEFAULT_INTERVAL, Http, base_url, endpoint, online, secret_header, whole_seconds,
};
use crate::{MetricsProvider, ProviderConfig};

/// Datadog's API address when the MetricTemplate names none (as in Flagger).
pub const DEFAULT_ADDRESS: &str = "https://api.datadoghq.com";

/// The Secret keys, as Flagger names them.
pub const API_KEY: &str = "datadog_api_key";
/// The Secret key of the application key.
pub const APPLICATION_KEY: &str = "datadog_application_key";

/// How many metric intervals back the query starts, as in Flagger.
const WINDOW_INTERVALS: u64 = 10;

/// A client of the Datadog API.
pub struct Datadog {
    http: Http,
    base: Url,
}

impl Datadog {
    /// A client for `cfg`; every request gives up after `timeout`. The error is for people and
    /// holds no secret.
    pub fn new(cfg: &ProviderConfig, timeout: Duration) -> Result<Datadog, String> {
        let base = base_url(
            "datadog",
            &cfg.address,
            Some(DEFAULT_ADDRESS),
            "https://api.datadoghq.eu",
        )?;
        let keys = cfg.credentials("datadog", &[API_KEY, APPLICATION_KEY])?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "DD-API-KEY",
            secret_header(&keys[0], &format!("the {API_KEY} of the provider's Secret"))?,
        );
        headers.insert(
            "DD-APPLICATION-KEY",
            secret_header(
                &keys[1],
                &format!("the {APPLICATION_KEY} of the provider's Secret"),
            )?,
        );
        let http = Http::new(
            "Datadog",
            "datadog_api_key, datadog_application_key",
            cfg,
            &base,
            headers,
            timeout,
        )?;
        Ok(Datadog { http, base })
    }

    /// [`Datadog::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(
        cfg: &ProviderConfig,
        ctx: &crate::Context,
    ) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(Datadog::new(cfg, ctx.timeout)?))
    }
}

/// The documented answer of `/api/v1/query` (the fields fledge reads).
#[derive(Deserialize)]
struct QueryResponse {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    series: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    /// `[timestamp in ms, value or null]` pairs, oldest first.
    #[serde(default)]
    pointlist: Vec<Vec<Option<f64>>>,
}

/// The documented error body: `{"errors": ["..."]}`.
fn refusal(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    serde_json::from_str::<Errors>(body)
        .ok()
        .filter(|e| !e.errors.is_empty())
        .map(|e| e.errors.join("; "))
}

/// The one number of an answer of `/api/v1/query`.
///
/// Flagger takes the last point of the first series. fledge differs where that is wrong: several
/// series are a failure (Flagger would judge an arbitrary one of them), and a point without a
/// value (`null`, a bucket with no data yet) is skipped (Flagger reads it as 0, which passes an
/// error-rate check that has no data).
fn value_of(body: &str) -> Result<MetricOutcome, String> {
    let r: QueryResponse = serde_json::from_str(body).map_err(|e| e.to_string())?;
    if r.status.as_deref() == Some("error") {
        return Ok(MetricOutcome::Error(format!(
            "Datadog refused the query: {}",
            r.error.as_deref().unwrap_or("no reason given")
        )));
    }
    match r.series.as_slice() {
        [] => Ok(MetricOutcome::NoData),
        [one] => Ok(one
            .pointlist
            .iter()
            .rev()
            .find_map(|p| p.get(1).copied().flatten())
            .map_or(MetricOutcome::NoData, MetricOutcome::Value)),
        many => Ok(MetricOutcome::Error(format!(
            "the query returned {} series where one number is expected; aggregate them, e.g. sum:metric{{...}} without a 'by {{...}}'",
            many.len()
        ))),
    }
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[async_trait::async_trait]
impl MetricsProvider for Datadog {
    async fn online(&self) -> Result<(), String> {
        let request = self
            .http
            .client
            .get(endpoint(&self.base, "/api/v1/validate"));
        online(self.http.send(request, refusal).await)
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        self.query_over(query, DEFAULT_INTERVAL).await
    }

    async fn query_over(&self, query: &str, interval: Duration) -> MetricOutcome {
        let to = now_seconds();
        let from = to.saturating_sub(WINDOW_INTERVALS * whole_seconds(interval));
        let request = self
            .http
            .client
            .get(endpoint(&self.base, "/api/v1/query"))
            .query(&[
                ("query", query),
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
    fn the_last_point_with_a_value_is_the_result() {
        assert_eq!(
            v(r#"{"status":"ok","series":[{"pointlist":[[1,1.5],[2,2.5],[3,null]]}]}"#),
            "Value(2.5)"
        );
        assert_eq!(
            v(r#"{"status":"ok","series":[{"pointlist":[[1,0.0]]}]}"#),
            "Value(0.0)"
        );
    }

    #[test]
    fn no_series_no_points_or_only_empty_points_are_no_data() {
        for body in [
            r#"{"status":"ok","series":[]}"#,
            r#"{"status":"ok"}"#,
            r#"{"status":"ok","series":[{"pointlist":[]}]}"#,
            r#"{"status":"ok","series":[{"pointlist":[[1,null],[2]]}]}"#,
        ] {
            assert_eq!(v(body), "NoData", "{body}");
        }
    }

    #[test]
    fn several_series_and_an_error_status_are_failures() {
        let several = v(r#"{"series":[{"pointlist":[[1,1]]},{"pointlist":[[1,2]]}]}"#);
        assert!(several.contains("2 series"), "{several}");
        let refused = v(r#"{"status":"error","error":"Rule 'unknown' not found"}"#);
        assert!(refused.contains("refused the query: Rule"), "{refused}");
    }

    #[test]
    fn a_body_that_is_not_the_documented_shape_is_unreadable() {
        assert!(value_of("<html>").is_err());
        assert!(value_of(r#"{"series":[{"pointlist":[[1,"x"]]}]}"#).is_err());
    }

    #[test]
    fn the_documented_error_body_gives_its_messages() {
        assert_eq!(
            refusal(r#"{"errors":["Error parsing query: unable to parse foo"]}"#).as_deref(),
            Some("Error parsing query: unable to parse foo")
        );
        assert_eq!(refusal("Bad Request"), None);
    }

    #[test]
    fn the_keys_are_required_and_never_shown() {
        let cfg = |data: &[(&str, &str)]| crate::http::testing::config("datadog", "", data);
        let Err(e) = Datadog::new(&cfg(&[(API_KEY, "k3y")]), Duration::from_secs(1)) else {
            panic!("accepted without an application key");
        };
        assert!(
            e.contains("apps/datadog") && e.contains(APPLICATION_KEY) && !e.contains("k3y"),
            "{e}"
        );
        let mut none = cfg(&[]);
        none.secret = None;
        let Err(e) = Datadog::new(&none, Duration::from_secs(1)) else {
            panic!("accepted without a Secret");
        };
        assert!(e.contains("secretRef") && e.contains(API_KEY), "{e}");
        let ok = Datadog::new(
            &cfg(&[(API_KEY, "a"), (APPLICATION_KEY, "b")]),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(ok.http.shown, "https://api.datadoghq.com");
    }
}
