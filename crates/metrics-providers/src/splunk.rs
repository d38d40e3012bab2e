//! The Splunk Observability (SignalFx) metrics provider: the template's query is a SignalFlow
//! program, run as Flagger runs it (from ten metric intervals ago until now, `immediate`) with
//! the access token from the Secret key `sf_token_key` in the `X-SF-Token` header, as Flagger
//! names it. Flagger streams it over SignalFlow's WebSocket API; fledge uses the same API's HTTP
//! form, `POST /v2/signalflow/execute` answered with Server-Sent Events
//! (<https://dev.splunk.com/observability/reference/api/signalflow/latest>, the stream messages
//! <https://dev.splunk.com/observability/docs/signalflow/messages/>), which carries the same
//! messages as JSON and needs no WebSocket client. The online check lists one metric
//! (`GET /v2/metric?limit=1` on the API host), as in Flagger.
//!
//! The address may be the API host (`https://api.<realm>.signalfx.com`) or the stream host
//! (`wss://stream.<realm>.signalfx.com`); the query goes to the stream host and the online check
//! to the API host.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fledge_core::MetricOutcome;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::http::{
    DEFAULT_INTERVAL, Http, base_url, clip, endpoint, json_message, online, secret_header,
    whole_seconds,
};
use crate::{MetricsProvider, ProviderConfig};

/// The Secret key of the access token, as Flagger names it.
pub const TOKEN: &str = "sf_token_key";

/// How many metric intervals back the program starts, as in Flagger.
const WINDOW_INTERVALS: u64 = 10;

/// A client of one Splunk Observability realm.
pub struct Splunk {
    http: Http,
    stream: Url,
    api: Url,
}

/// The address with `host_from.` as its first host label replaced by `host_to.` and a WebSocket
/// scheme turned into its HTTP one. Flagger replaces the first "api" (or "stream") anywhere in
/// the address, which also rewrites e.g. `https://myapi.example`; only the first host label is
/// replaced here.
fn on_host(base: &Url, host_from: &str, host_to: &str) -> Url {
    let mut url = base.clone();
    if let Some(rest) = base
        .host_str()
        .and_then(|h| h.strip_prefix(host_from))
        .and_then(|h| h.strip_prefix('.'))
    {
        let _ = url.set_host(Some(&format!("{host_to}.{rest}")));
    }
    url
}

impl Splunk {
    /// A client for `cfg`; every request gives up after `timeout`. The error is for people and
    /// holds no secret.
    pub fn new(cfg: &ProviderConfig, timeout: Duration) -> Result<Splunk, String> {
        let address = cfg.address.trim();
        let address = if let Some(rest) = address.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = address.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            address.to_string()
        };
        let base = base_url("splunk", &address, None, "https://api.us1.signalfx.com")?;
        let token = cfg.credentials("splunk", &[TOKEN])?.remove(0);
        let mut headers = HeaderMap::new();
        headers.insert(
            "X-SF-Token",
            secret_header(&token, &format!("the {TOKEN} of the provider's Secret"))?,
        );
        let http = Http::new("Splunk Observability", TOKEN, cfg, &base, headers, timeout)?;
        Ok(Splunk {
            http,
            stream: endpoint(&on_host(&base, "api", "stream"), "/v2/signalflow/execute"),
            api: endpoint(&on_host(&base, "stream", "api"), "/v2/metric"),
        })
    }

    /// [`Splunk::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(
        cfg: &ProviderConfig,
        ctx: &crate::Context,
    ) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(Splunk::new(cfg, ctx.timeout)?))
    }
}

/// The documented error body: `{"message": "...", "errorType": "..."}`.
fn refusal(body: &str) -> Option<String> {
    json_message(body, "message")
}

/// One Server-Sent Event: its type and its data (the data lines joined).
fn events(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut kind, mut data) = (String::new(), Vec::<&str>::new());
    for line in body.lines().chain(std::iter::once("")) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if !data.is_empty() {
                let k = if kind.is_empty() { "message" } else { &kind };
                out.push((k.to_string(), data.join("\n")));
            }
            kind.clear();
            data.clear();
        } else if let Some(v) = line.strip_prefix("event:") {
            kind = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    out
}

/// The one number of a computation's event stream.
///
/// As in Flagger: datapoints without a value are dropped, none left is no data, datapoints of
/// more than one time series are several series, and otherwise the last datapoint is the
/// result. An error message or an aborted computation is a refused query.
fn value_of(body: &str) -> Result<MetricOutcome, String> {
    #[derive(Deserialize)]
    struct Data {
        data: Vec<Datum>,
    }
    #[derive(Deserialize)]
    struct Datum {
        #[serde(rename = "tsId")]
        ts_id: String,
        value: Option<f64>,
    }
    let mut points: Vec<(String, f64)> = Vec::new();
    for (kind, data) in events(body) {
        let payload: Value = serde_json::from_str(&data)
            .map_err(|e| format!("the {kind} event is not JSON: {e}"))?;
        match kind.as_str() {
            "data" => {
                let d: Data = serde_json::from_value(payload).map_err(|e| e.to_string())?;
                points.extend(
                    d.data
                        .into_iter()
                        .filter_map(|p| p.value.map(|v| (p.ts_id, v))),
                );
            }
            "error" => {
                return Ok(MetricOutcome::Error(format!(
                    "Splunk Observability refused the program: {}",
                    clip(&payload["errors"].to_string(), 500)
                )));
            }
            "control-message" if payload["event"] == "CHANNEL_ABORT" => {
                return Ok(MetricOutcome::Error(format!(
                    "Splunk Observability aborted the program: {}",
                    clip(&payload["abortInfo"].to_string(), 500)
                )));
            }
            _ => {}
        }
    }
    let series: BTreeSet<&str> = points.iter().map(|(ts, _)| ts.as_str()).collect();
    if series.len() > 1 {
        return Ok(MetricOutcome::Error(format!(
            "the program published {} series where one number is expected; aggregate them, e.g. with .sum() before .publish()",
            series.len()
        )));
    }
    Ok(points
        .last()
        .map_or(MetricOutcome::NoData, |(_, v)| MetricOutcome::Value(*v)))
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() * 1000)
}

#[async_trait::async_trait]
impl MetricsProvider for Splunk {
    async fn online(&self) -> Result<(), String> {
        let request = self
            .http
            .client
            .get(self.api.clone())
            .query(&[("limit", "1")]);
        online(self.http.send(request, refusal).await)
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        self.query_over(query, DEFAULT_INTERVAL).await
    }

    async fn query_over(&self, query: &str, interval: Duration) -> MetricOutcome {
        let stop = now_millis();
        let start = stop.saturating_sub(WINDOW_INTERVALS * whole_seconds(interval) * 1000);
        let request = self
            .http
            .client
            .post(self.stream.clone())
            .query(&[
                ("start", start.to_string()),
                ("stop", stop.to_string()),
                ("immediate", "true".to_string()),
            ])
            .header(CONTENT_TYPE, HeaderValue::from_static("text/plain"))
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .body(query.trim().to_string());
        self.http.answer(request, refusal, value_of).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(body: &str) -> String {
        crate::http::testing::shown(value_of(body))
    }

    const START: &str = "event: control-message\ndata: {\"event\":\"STREAM_START\",\"timestampMs\":1}\n\nevent: control-message\ndata: {\"event\":\"JOB_START\",\"handle\":\"h\",\"timestampMs\":1}\n\nevent: metadata\ndata: {\"tsId\":\"AAA\",\"properties\":{}}\n\n";
    const END: &str =
        "event: control-message\ndata: {\"event\":\"END_OF_CHANNEL\",\"timestampMs\":3}\n\n";

    fn data(points: &[(&str, &str)]) -> String {
        let data: Vec<String> = points
            .iter()
            .map(|(ts, v)| format!(r#"{{"tsId":"{ts}","value":{v}}}"#))
            .collect();
        format!(
            "event: data\r\ndata: {{\"logicalTimestampMs\":2,\r\ndata: \"data\":[{}]}}\r\n\r\n",
            data.join(",")
        )
    }

    #[test]
    fn the_last_datapoint_with_a_value_is_the_result() {
        let body = format!(
            "{START}{}{}{}{END}",
            data(&[("AAA", "1")]),
            data(&[("AAA", "2.5")]),
            data(&[("AAA", "null")])
        );
        assert_eq!(v(&body), "Value(2.5)");
    }

    #[test]
    fn no_datapoint_with_a_value_is_no_data() {
        assert_eq!(v(&format!("{START}{END}")), "NoData");
        assert_eq!(
            v(&format!("{START}{}{END}", data(&[("AAA", "null")]))),
            "NoData"
        );
        assert_eq!(v(""), "NoData");
    }

    #[test]
    fn several_series_errors_and_aborts_are_failures() {
        let two = v(&format!(
            "{START}{}{END}",
            data(&[("AAA", "1"), ("BBB", "2")])
        ));
        assert!(two.contains("2 series"), "{two}");
        let error = v(
            "event: error\ndata: {\"errors\":[{\"code\":\"ANALYTICS_PROGRAM_NAME_ERROR\",\"context\":{\"name\":\"dta\"}}]}\n\n",
        );
        assert!(
            error.contains("refused the program") && error.contains("dta"),
            "{error}"
        );
        let abort = v(
            "event: control-message\ndata: {\"event\":\"CHANNEL_ABORT\",\"abortInfo\":{\"sf_job_abortReason\":\"too many\"},\"timestampMs\":1}\n\n",
        );
        assert!(
            abort.contains("aborted") && abort.contains("too many"),
            "{abort}"
        );
        assert!(v("event: data\ndata: {oops\n\n").starts_with("unreadable"));
    }

    #[test]
    fn the_query_goes_to_the_stream_host_and_the_check_to_the_api_host() {
        for address in [
            "https://api.us1.signalfx.com",
            "wss://stream.us1.signalfx.com",
        ] {
            let cfg = crate::http::testing::config("splunk", address, &[(TOKEN, "t")]);
            let s = Splunk::new(&cfg, Duration::from_secs(1)).unwrap();
            assert_eq!(
                s.stream.as_str(),
                "https://stream.us1.signalfx.com/v2/signalflow/execute"
            );
            assert_eq!(s.api.as_str(), "https://api.us1.signalfx.com/v2/metric");
        }
        let cfg = crate::http::testing::config("splunk", "https://myapi.example", &[(TOKEN, "t")]);
        let s = Splunk::new(&cfg, Duration::from_secs(1)).unwrap();
        assert_eq!(
            s.stream.as_str(),
            "https://myapi.example/v2/signalflow/execute"
        );
    }
}
