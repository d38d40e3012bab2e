//! The New Relic metrics provider, with Flagger's request shape: NRQL over the Insights query API
//! (`GET /v1/accounts/{account id}/query?nrql=…`,
//! <https://docs.newrelic.com/docs/apis/insights-apis/query-insights-event-data-api/>) with the
//! query key in the `X-Query-Key` header, from the Secret keys `newrelic_account_id` and
//! `newrelic_query_key` as Flagger names them. As in Flagger, `SINCE <interval> seconds ago` is
//! appended to the template's query, and the online check runs `SELECT * FROM Metric`.

use std::time::Duration;

use fledge_core::MetricOutcome;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::http::{
    DEFAULT_INTERVAL, Http, base_url, endpoint, json_message, online, secret_header, whole_seconds,
};
use crate::{MetricsProvider, ProviderConfig};

/// The Insights API address when the MetricTemplate names none (as in Flagger).
pub const DEFAULT_ADDRESS: &str = "https://insights-api.newrelic.com";

/// The Secret key of the account id, as Flagger names it.
pub const ACCOUNT_ID: &str = "newrelic_account_id";
/// The Secret key of the query key, as Flagger names it.
pub const QUERY_KEY: &str = "newrelic_query_key";

/// A client of one New Relic account's query API.
pub struct NewRelic {
    http: Http,
    endpoint: Url,
}

impl NewRelic {
    /// A client for `cfg`; every request gives up after `timeout`. The error is for people and
    /// holds no secret.
    pub fn new(cfg: &ProviderConfig, timeout: Duration) -> Result<NewRelic, String> {
        let base = base_url(
            "newrelic",
            &cfg.address,
            Some(DEFAULT_ADDRESS),
            "https://insights-api.eu.newrelic.com",
        )?;
        let keys = cfg.credentials("newrelic", &[ACCOUNT_ID, QUERY_KEY])?;
        let account = &keys[0];
        if !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "the {ACCOUNT_ID} of Secret {} is not a New Relic account id (a number, e.g. 1234567)",
                cfg.secret.as_ref().map_or("", |s| s.name.as_str())
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            "X-Query-Key",
            secret_header(
                &keys[1],
                &format!("the {QUERY_KEY} of the provider's Secret"),
            )?,
        );
        let http = Http::new(
            "New Relic",
            "newrelic_account_id, newrelic_query_key",
            cfg,
            &base,
            headers,
            timeout,
        )?;
        let endpoint = endpoint(&base, &format!("/v1/accounts/{account}/query"));
        Ok(NewRelic { http, endpoint })
    }

    /// [`NewRelic::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(
        cfg: &ProviderConfig,
        ctx: &crate::Context,
    ) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(NewRelic::new(cfg, ctx.timeout)?))
    }

    fn nrql(&self, nrql: &str) -> reqwest::RequestBuilder {
        self.http
            .client
            .get(self.endpoint.clone())
            .query(&[("nrql", nrql)])
    }
}

/// The documented error body: `{"error": "..."}`.
fn refusal(body: &str) -> Option<String> {
    json_message(body, "error")
}

/// The one number of a query answer.
///
/// Flagger reads `results[0].result` and calls everything else "no values". fledge differs where
/// that is wrong: a faceted answer with several facets is several series (not no data), and a
/// single result under another name (`SELECT count(*)` answers `{"count": 5}`) is that number.
fn value_of(body: &str) -> Result<MetricOutcome, String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        results: Vec<serde_json::Map<String, Value>>,
        #[serde(default)]
        facets: Option<Vec<Value>>,
    }
    let a: Answer = serde_json::from_str(body).map_err(|e| e.to_string())?;
    if let Some(facets) = &a.facets
        && facets.len() > 1
    {
        return Ok(several(facets.len()));
    }
    let results = match (a.results.as_slice(), a.facets.as_deref()) {
        ([], Some([one])) => one
            .get("results")
            .and_then(Value::as_array)
            .and_then(|r| r.iter().map(|v| v.as_object().cloned()).collect())
            .unwrap_or_default(),
        _ => a.results,
    };
    let one = match results.as_slice() {
        [] => return Ok(MetricOutcome::NoData),
        [one] => one,
        many => return Ok(several(many.len())),
    };
    let value = match one.get("result") {
        Some(v) => v,
        None => match one.values().collect::<Vec<_>>().as_slice() {
            [v] => v,
            _ => {
                return Err(format!(
                    "the result has the fields {:?} where one number is expected",
                    one.keys().collect::<Vec<_>>()
                ));
            }
        },
    };
    match value {
        Value::Null => Ok(MetricOutcome::NoData),
        Value::Number(n) => n
            .as_f64()
            .map(MetricOutcome::Value)
            .ok_or_else(|| format!("{n} is not a number")),
        // NRQL gives "NaN" and "Infinity" as strings when a division has no data.
        Value::String(s) if s.eq_ignore_ascii_case("nan") => Ok(MetricOutcome::Value(f64::NAN)),
        other => Err(format!("the result {other} is not a number")),
    }
}

fn several(n: usize) -> MetricOutcome {
    MetricOutcome::Error(format!(
        "the query returned {n} series where one number is expected; remove FACET or TIMESERIES"
    ))
}

#[async_trait::async_trait]
impl MetricsProvider for NewRelic {
    async fn online(&self) -> Result<(), String> {
        let request = self.nrql("SELECT * FROM Metric");
        online(self.http.send(request, refusal).await)
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        self.query_over(query, DEFAULT_INTERVAL).await
    }

    async fn query_over(&self, query: &str, interval: Duration) -> MetricOutcome {
        let nrql = format!(
            "{} SINCE {} seconds ago",
            query.trim_end(),
            whole_seconds(interval)
        );
        self.http.answer(self.nrql(&nrql), refusal, value_of).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(body: &str) -> String {
        crate::http::testing::shown(value_of(body))
    }

    #[test]
    fn the_one_result_is_the_value() {
        assert_eq!(v(r#"{"results":[{"result":2.5}]}"#), "Value(2.5)");
        assert_eq!(v(r#"{"results":[{"count":5}]}"#), "Value(5.0)");
        assert_eq!(
            v(r#"{"facets":[{"name":"a","results":[{"result":1.5}]}]}"#),
            "Value(1.5)"
        );
    }

    #[test]
    fn null_and_nothing_are_no_data_and_nan_is_nan() {
        assert_eq!(v(r#"{"results":[{"result":null}]}"#), "NoData");
        assert_eq!(v(r#"{"results":[]}"#), "NoData");
        assert_eq!(v(r#"{"metadata":{}}"#), "NoData");
        assert_eq!(v(r#"{"results":[{"result":"NaN"}]}"#), "Value(NaN)");
    }

    #[test]
    fn several_results_or_facets_are_several_series() {
        assert!(v(r#"{"results":[{"result":1},{"result":2}]}"#).contains("2 series"));
        assert!(
            v(r#"{"facets":[{"results":[]},{"results":[]},{"results":[]}]}"#).contains("3 series")
        );
    }

    #[test]
    fn anything_else_is_unreadable() {
        assert!(
            v(r#"{"results":[{"a":1,"b":2}]}"#)
                .starts_with("unreadable: the result has the fields")
        );
        assert!(v(r#"{"results":[{"result":"x"}]}"#).starts_with("unreadable"));
        assert!(v("<html>").starts_with("unreadable"));
    }

    #[test]
    fn the_account_id_must_be_a_number() {
        let keys = [(ACCOUNT_ID, "../x"), (QUERY_KEY, "NRIQ-k")];
        let cfg = crate::http::testing::config("newrelic", "", &keys);
        let Err(e) = NewRelic::new(&cfg, Duration::from_secs(1)) else {
            panic!("accepted");
        };
        assert!(
            e.contains("apps/newrelic") && e.contains("account id") && !e.contains("NRIQ"),
            "{e}"
        );
    }
}
