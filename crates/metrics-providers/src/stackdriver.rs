//! The Stackdriver metrics provider (Google Cloud Monitoring): an MQL query through
//! `projects.timeSeries.query` (`POST /v3/projects/{project}/timeSeries:query`,
//! <https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.timeSeries/query>), the REST
//! form of the `QueryTimeSeries` call Flagger makes.
//!
//! Credentials, as Flagger reads them: the project from the Secret key `project`, and the
//! service-account key JSON from the Secret key `serviceAccountKey` when there is one; without a
//! key, Google's application default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
//! file, then the metadata server, which is how GKE's workload identity gives fledge's
//! ServiceAccount a Google identity). Without a Secret, the project is the credentials' own. The
//! access token (scope `monitoring.read`) comes from the `gcp_auth` crate, which signs the
//! service account's JWT and exchanges it at the key's `token_uri`, and caches it until it
//! expires. `spec.provider.address` overrides `https://monitoring.googleapis.com`.
//!
//! As in Flagger, the result is the first value of the newest point of the one time series. fledge
//! differs where that is wrong: several time series or several value columns are a failure
//! rather than an arbitrary pick, an integer value is read as a number (Flagger reads it as 0),
//! and NaN is a failure. The online check sends an empty query, which Cloud Monitoring refuses as
//! invalid once the token is accepted (Flagger's check).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use fledge_core::MetricOutcome;
use gcp_auth::{CustomServiceAccount, TokenProvider};
use reqwest::header::HeaderMap;
use serde::Deserialize;
use url::Url;

use crate::http::{Http, base_url, clip, endpoint, json_message, online};
use crate::{MetricsProvider, ProviderConfig};

/// Cloud Monitoring's API address when the MetricTemplate names none.
pub const DEFAULT_ADDRESS: &str = "https://monitoring.googleapis.com";
/// The Secret key of the project id, as Flagger names it.
pub const PROJECT: &str = "project";
/// The Secret key of the service-account key JSON, as Flagger names it.
pub const SERVICE_ACCOUNT_KEY: &str = "serviceAccountKey";
/// The OAuth2 scope the token is asked for.
const SCOPE: &str = "https://www.googleapis.com/auth/monitoring.read";
/// The most pages of one answer fledge reads.
const MAX_PAGES: usize = 10;

/// Where the access tokens come from.
enum Credentials {
    /// The service-account key of the Secret.
    Key(Arc<CustomServiceAccount>),
    /// Google's application default credentials (the environment, gcloud's file, the metadata
    /// server), found on first use.
    Default,
}

/// A client of the Cloud Monitoring API.
pub struct Stackdriver {
    http: Http,
    base: Url,
    /// The project id from the Secret; without it, the credentials'.
    project: Option<String>,
    credentials: Credentials,
    timeout: Duration,
}

impl Stackdriver {
    /// A client for `cfg`; every request gives up after `timeout`. The error is for people and
    /// holds no secret.
    pub fn new(cfg: &ProviderConfig, timeout: Duration) -> Result<Stackdriver, String> {
        let base = base_url(
            "stackdriver",
            &cfg.address,
            Some(DEFAULT_ADDRESS),
            DEFAULT_ADDRESS,
        )?;
        let (project, key) = match &cfg.secret {
            None => (None, None),
            Some(s) => {
                let project = s.required("stackdriver", &[PROJECT])?.remove(0);
                if !project
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b':' || b == b'.')
                {
                    return Err(format!(
                        "the {PROJECT} of Secret {} is not a Google Cloud project id; write the id, e.g. my-project-123456",
                        s.name
                    ));
                }
                (
                    Some(project),
                    s.bytes(SERVICE_ACCOUNT_KEY).map(<[u8]>::to_vec),
                )
            }
        };
        let credentials = match key {
            Some(key) => Credentials::Key(service_account(&key).map_err(|why| {
                format!(
                    "the {SERVICE_ACCOUNT_KEY} of Secret {} is not a service-account key ({why}); put the JSON key file there, e.g. kubectl create secret generic gcloud-sa --from-literal={PROJECT}=my-project --from-file={SERVICE_ACCOUNT_KEY}=key.json",
                    cfg.secret.as_ref().map_or("", |s| s.name.as_str())
                )
            })?),
            None => Credentials::Default,
        };
        let http = Http::new(
            "Cloud Monitoring",
            "project, serviceAccountKey, or the workload identity of fledge's ServiceAccount, which needs roles/monitoring.viewer",
            cfg,
            &base,
            HeaderMap::new(),
            timeout,
        )?;
        Ok(Stackdriver {
            http,
            base,
            project,
            credentials,
            timeout,
        })
    }

    /// [`Stackdriver::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(
        cfg: &ProviderConfig,
        ctx: &crate::Context,
    ) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(Stackdriver::new(cfg, ctx.timeout)?))
    }

    /// The token source for the credentials: one per key and one for the default credentials,
    /// kept for the life of the process so that their tokens are reused until they expire.
    async fn tokens(&self) -> Result<Arc<dyn TokenProvider>, String> {
        match &self.credentials {
            Credentials::Key(k) => Ok(k.clone()),
            Credentials::Default => {
                static DEFAULT: tokio::sync::OnceCell<Arc<dyn TokenProvider>> =
                    tokio::sync::OnceCell::const_new();
                DEFAULT
                    .get_or_try_init(gcp_auth::provider)
                    .await
                    .cloned()
                    .map_err(|e| {
                        format!(
                            "no Google credentials for Cloud Monitoring ({}); give the MetricTemplate's Secret a {SERVICE_ACCOUNT_KEY}, or give fledge's ServiceAccount a Google identity (GKE workload identity)",
                            innermost(&e)
                        )
                    })
            }
        }
    }

    /// The project and an access token, or the failure.
    async fn authorize(&self) -> Result<(String, String), MetricOutcome> {
        let unreachable = |m: String| MetricOutcome::ProviderUnreachable(m);
        let tokens = self.tokens().await.map_err(unreachable)?;
        let token = tokens.token(&[SCOPE]).await.map_err(|e| {
            unreachable(format!(
                "cannot get an access token for Cloud Monitoring at {}: {}; check the credentials ({SERVICE_ACCOUNT_KEY} or the workload identity fledge runs with)",
                self.http.shown,
                innermost(&e)
            ))
        })?;
        let project = match &self.project {
            Some(p) => p.clone(),
            None => tokens.project_id().await.map(|p| p.to_string()).map_err(|e| {
                MetricOutcome::Error(format!(
                    "the stackdriver provider needs a project: name a Secret with the key {PROJECT} in spec.provider.secretRef ({})",
                    innermost(&e)
                ))
            })?,
        };
        Ok((project, token.as_str().to_string()))
    }

    /// One page of `query`'s answer.
    async fn page(
        &self,
        project: &str,
        token: &str,
        query: &str,
        page: Option<&str>,
    ) -> Result<String, MetricOutcome> {
        // The project id is checked to be a path-safe id when it comes from the Secret; one
        // from the credentials is escaped.
        let project: String = url::form_urlencoded::byte_serialize(project.as_bytes()).collect();
        let url = endpoint(
            &self.base,
            &format!("/v3/projects/{project}/timeSeries:query"),
        );
        let mut body = serde_json::json!({ "query": query });
        if let Some(p) = page {
            body["pageToken"] = p.into();
        }
        let request = self.http.client.post(url).bearer_auth(token).json(&body);
        self.http.send(request, refusal).await
    }

    async fn run(&self, query: &str) -> MetricOutcome {
        let (project, token) = match self.authorize().await {
            Ok(a) => a,
            Err(failure) => return failure,
        };
        let mut pages = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let body = match self.page(&project, &token, query, next.as_deref()).await {
                Ok(b) => b,
                Err(failure) => return failure,
            };
            let page: QueryResponse = match serde_json::from_str(&body) {
                Ok(p) => p,
                Err(e) => return self.http.unreadable(e),
            };
            next = page.next_page_token.clone().filter(|t| !t.is_empty());
            pages.push(page);
            match &next {
                None => break,
                Some(_) if pages.len() >= MAX_PAGES => {
                    return MetricOutcome::Error(format!(
                        "Cloud Monitoring answered in more than {MAX_PAGES} pages; aggregate the query to one time series (group_by [])"
                    ));
                }
                Some(_) => {}
            }
        }
        value_of(&pages)
    }
}

/// The key JSON as a token source; the error says what is wrong without showing the key.
fn service_account(key: &[u8]) -> Result<Arc<CustomServiceAccount>, String> {
    type Key = Vec<u8>;
    static KEYS: OnceLock<Mutex<HashMap<Key, Arc<CustomServiceAccount>>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    if let Some(k) = keys.lock().ok().and_then(|m| m.get(key).cloned()) {
        return Ok(k);
    }
    let text = std::str::from_utf8(key).map_err(|_| "not UTF-8 text".to_string())?;
    let account = CustomServiceAccount::from_json(text).map_err(|e| match e {
        gcp_auth::Error::Json(what, _) => format!("{what}: not the JSON of a key file"),
        other => clip(&other.to_string(), 200),
    })?;
    let account = Arc::new(account);
    if let Ok(mut m) = keys.lock() {
        m.insert(key.to_vec(), account.clone());
    }
    Ok(account)
}

/// The innermost cause of `e`.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out = c.to_string();
        cause = c.source();
    }
    clip(&out, 300)
}

/// Google's error body: `{"error": {"code", "message", "status"}}`.
fn refusal(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let Some(error) = v.get("error") else {
        return json_message(body, "message");
    };
    let message = error.get("message")?.as_str()?;
    Some(match error.get("status").and_then(|s| s.as_str()) {
        Some(status) => format!("{status}: {message}"),
        None => message.to_string(),
    })
}

/// The documented answer of `timeSeries.query` (the fields fledge reads).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryResponse {
    #[serde(default)]
    time_series_data: Vec<TimeSeriesData>,
    #[serde(default)]
    next_page_token: Option<String>,
    #[serde(default)]
    partial_errors: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeSeriesData {
    #[serde(default)]
    point_data: Vec<PointData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PointData {
    #[serde(default)]
    values: Vec<TypedValue>,
    #[serde(default)]
    time_interval: Option<TimeInterval>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimeInterval {
    #[serde(default)]
    end_time: Option<String>,
}

/// A `TypedValue`: one of its fields is set (int64 is a string in JSON, and a double may be
/// the string "NaN" or "Infinity").
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypedValue {
    #[serde(default)]
    double_value: Option<serde_json::Value>,
    #[serde(default)]
    int64_value: Option<serde_json::Value>,
    #[serde(default)]
    bool_value: Option<bool>,
    #[serde(default)]
    string_value: Option<String>,
    #[serde(default)]
    distribution_value: Option<serde_json::Value>,
}

/// The number of a JSON double or int64 (a number, or a string holding one).
fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The one number of an answer.
fn value_of(pages: &[QueryResponse]) -> MetricOutcome {
    let series: Vec<&TimeSeriesData> = pages.iter().flat_map(|p| &p.time_series_data).collect();
    let partial: Vec<String> = pages
        .iter()
        .flat_map(|p| &p.partial_errors)
        .map(|e| {
            e.get("message")
                .and_then(|m| m.as_str())
                .map_or_else(|| e.to_string(), str::to_string)
        })
        .collect();
    let one = match series.as_slice() {
        [] if !partial.is_empty() => {
            return MetricOutcome::ProviderUnreachable(format!(
                "Cloud Monitoring answered no time series, with errors: {}",
                clip(&partial.join("; "), 300)
            ));
        }
        [] => return MetricOutcome::NoData,
        [one] => one,
        many => {
            return MetricOutcome::Error(format!(
                "the query returned {} time series where one number is expected; aggregate them, e.g. | group_by [], [value: mean(val())]",
                many.len()
            ));
        }
    };
    // The newest point (RFC 3339 end times in UTC compare as text); the first when they have none.
    let Some(point) = one.point_data.iter().reduce(|a, b| {
        let end = |p: &PointData| p.time_interval.as_ref().and_then(|t| t.end_time.clone());
        if end(b) > end(a) { b } else { a }
    }) else {
        return MetricOutcome::NoData;
    };
    let value = match point.values.as_slice() {
        [] => return MetricOutcome::NoData,
        [v] => v,
        many => {
            return MetricOutcome::Error(format!(
                "the query's table has {} value columns where one number is expected; keep one, e.g. | value [val(0)]",
                many.len()
            ));
        }
    };
    let n = match (&value.double_value, &value.int64_value) {
        (Some(d), _) => number(d),
        (None, Some(i)) => number(i),
        (None, None) => {
            let kind = if value.bool_value.is_some() {
                "a boolean"
            } else if value.string_value.is_some() {
                "a string"
            } else if value.distribution_value.is_some() {
                "a distribution (aggregate it, e.g. with percentile or mean)"
            } else {
                "empty"
            };
            return MetricOutcome::Error(format!("the query's value is {kind}, not a number"));
        }
    };
    match n {
        Some(v) if v.is_finite() => MetricOutcome::Value(v),
        Some(v) => MetricOutcome::Error(format!(
            "the query's value is {v} (NaN or infinite), not a number to judge"
        )),
        None => MetricOutcome::Error("the query's value is not a number".into()),
    }
}

#[async_trait::async_trait]
impl MetricsProvider for Stackdriver {
    async fn online(&self) -> Result<(), String> {
        let check = async {
            let (project, token) = self.authorize().await?;
            match self.page(&project, &token, "", None).await {
                Ok(_) => Ok(()),
                // Refused as an invalid query: the token was accepted and the API is there.
                Err(MetricOutcome::Error(m)) if m.contains("HTTP 400") => Ok(()),
                Err(other) => Err(other),
            }
        };
        match tokio::time::timeout(self.timeout, check).await {
            Ok(answer) => online(answer),
            Err(_) => Err(self.late()),
        }
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        tokio::time::timeout(self.timeout, self.run(query))
            .await
            .unwrap_or_else(|_| MetricOutcome::ProviderUnreachable(self.late()))
    }
}

impl Stackdriver {
    fn late(&self) -> String {
        format!(
            "Cloud Monitoring at {} did not answer within {}s",
            self.http.shown,
            self.timeout.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pages: &[&str]) -> String {
        let pages: Vec<QueryResponse> = pages
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect();
        format!("{:?}", value_of(&pages))
    }

    #[test]
    fn the_first_value_of_the_newest_point_of_the_one_series_is_the_number() {
        let body = r#"{"timeSeriesDescriptor":{},"timeSeriesData":[{"labelValues":[],"pointData":[
            {"values":[{"doubleValue":2.5}],"timeInterval":{"startTime":"2026-01-01T00:01:00Z","endTime":"2026-01-01T00:02:00Z"}},
            {"values":[{"doubleValue":1.5}],"timeInterval":{"startTime":"2026-01-01T00:00:00Z","endTime":"2026-01-01T00:01:00Z"}}]}]}"#;
        assert_eq!(v(&[body]), "Value(2.5)");
        let int = r#"{"timeSeriesData":[{"pointData":[{"values":[{"int64Value":"42"}]}]}]}"#;
        assert_eq!(v(&[int]), "Value(42.0)");
    }

    #[test]
    fn no_series_no_point_or_no_value_is_no_data() {
        for body in [
            r#"{}"#,
            r#"{"timeSeriesData":[]}"#,
            r#"{"timeSeriesData":[{"pointData":[]}]}"#,
            r#"{"timeSeriesData":[{"pointData":[{"values":[]}]}]}"#,
        ] {
            assert_eq!(v(&[body]), "NoData", "{body}");
        }
    }

    #[test]
    fn several_series_columns_nan_and_non_numbers_are_failures() {
        let two = r#"{"timeSeriesData":[{"pointData":[{"values":[{"doubleValue":1}]}]}]}"#;
        assert!(v(&[two, two]).contains("2 time series"));
        let cols = r#"{"timeSeriesData":[{"pointData":[{"values":[{"doubleValue":1},{"doubleValue":2}]}]}]}"#;
        assert!(v(&[cols]).contains("2 value columns"));
        let nan = r#"{"timeSeriesData":[{"pointData":[{"values":[{"doubleValue":"NaN"}]}]}]}"#;
        assert!(v(&[nan]).contains("NaN"), "{}", v(&[nan]));
        let dist = r#"{"timeSeriesData":[{"pointData":[{"values":[{"distributionValue":{"count":"3"}}]}]}]}"#;
        assert!(v(&[dist]).contains("distribution"));
        let partial = r#"{"partialErrors":[{"code":14,"message":"backend unavailable"}]}"#;
        assert!(v(&[partial]).contains("backend unavailable"));
    }

    #[test]
    fn the_documented_error_body_gives_its_status_and_message() {
        assert_eq!(
            refusal(r#"{"error":{"code":400,"message":"Line 1: unknown table","status":"INVALID_ARGUMENT"}}"#)
                .as_deref(),
            Some("INVALID_ARGUMENT: Line 1: unknown table")
        );
        assert_eq!(refusal("<html>"), None);
    }

    #[test]
    fn the_project_is_required_with_a_secret_and_a_bad_key_is_named_not_shown() {
        let cfg = |pairs: &[(&str, &str)]| crate::http::testing::config("stackdriver", "", pairs);
        let Err(e) = Stackdriver::new(&cfg(&[]), Duration::from_secs(1)) else {
            panic!("accepted a Secret without a project");
        };
        assert!(e.contains(PROJECT) && e.contains("apps/stackdriver"), "{e}");
        let Err(e) = Stackdriver::new(&cfg(&[(PROJECT, "p/x")]), Duration::from_secs(1)) else {
            panic!("accepted a bad project");
        };
        assert!(e.contains("project id"), "{e}");
        let Err(e) = Stackdriver::new(
            &cfg(&[
                (PROJECT, "p"),
                (SERVICE_ACCOUNT_KEY, "{\"private_key\":\"s3cr3t\"}"),
            ]),
            Duration::from_secs(1),
        ) else {
            panic!("accepted a bad key");
        };
        assert!(
            e.contains(SERVICE_ACCOUNT_KEY) && !e.contains("s3cr3t"),
            "{e}"
        );
        let ok =
            Stackdriver::new(&cfg(&[(PROJECT, "my-project")]), Duration::from_secs(1)).unwrap();
        assert_eq!(ok.http.shown, DEFAULT_ADDRESS);
        assert!(matches!(ok.credentials, Credentials::Default));
    }
}
