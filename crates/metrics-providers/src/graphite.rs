//! The Graphite metrics provider: the render API with `format=json`
//! (<https://graphite.readthedocs.io/en/latest/render_api.html>), as Flagger calls it: the
//! template's query is the render API's query string (`target=…&from=…`, white space runs folded
//! to one space), `format=json` is set, and a Secret, when named, gives HTTP basic auth from its
//! keys `username` and `password`. The result is the last datapoint with a value (`null` points,
//! buckets without data, are skipped), as in Flagger. The online check renders `target=test`,
//! which may have no data.

use std::time::Duration;

use base64::Engine as _;
use fledge_core::MetricOutcome;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::http::{Http, base_url, endpoint, secret_header};
use crate::{MetricsProvider, ProviderConfig};

/// The Secret keys of basic auth, as Flagger names them.
pub const USERNAME: &str = "username";
/// The Secret key of the password.
pub const PASSWORD: &str = "password";

/// A client of one Graphite render API.
pub struct Graphite {
    http: Http,
    render: Url,
}

impl Graphite {
    /// A client for `cfg`; every request gives up after `timeout`. The error is for people and
    /// holds no secret.
    pub fn new(cfg: &ProviderConfig, timeout: Duration) -> Result<Graphite, String> {
        let base = base_url("graphite", &cfg.address, None, "http://graphite.monitoring")?;
        let mut headers = HeaderMap::new();
        if cfg.secret.is_some() {
            let keys = cfg.credentials("graphite", &[USERNAME, PASSWORD])?;
            let pair = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", keys[0], keys[1]));
            headers.insert(
                AUTHORIZATION,
                secret_header(
                    &format!("Basic {pair}"),
                    "the username and password of the provider's Secret",
                )?,
            );
        }
        let http = Http::new(
            "Graphite",
            "username, password",
            cfg,
            &base,
            headers,
            timeout,
        )?;
        Ok(Graphite {
            http,
            render: endpoint(&base, "/render"),
        })
    }

    /// [`Graphite::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(
        cfg: &ProviderConfig,
        ctx: &crate::Context,
    ) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(Graphite::new(cfg, ctx.timeout)?))
    }

    /// The render URL for `query` (a query string such as `target=a.b&from=-5min`).
    fn url(&self, query: &str) -> Url {
        let folded = query.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut url = self.render.clone();
        {
            let mut pairs = url.query_pairs_mut();
            // Each name and value trimmed: a template that puts `&from=…` on its own line
            // leaves a space at the end of the target, which Flagger sends as it is.
            for (k, v) in url::form_urlencoded::parse(folded.as_bytes()) {
                let k = k.trim();
                if !k.is_empty() && k != "format" {
                    pairs.append_pair(k, v.trim());
                }
            }
            pairs.append_pair("format", "json");
        }
        url
    }
}

/// Graphite answers a refused render request with a plain text (or HTML) reason.
fn refusal(body: &str) -> Option<String> {
    let text = body.trim();
    (!text.is_empty() && !text.starts_with('<')).then(|| text.to_string())
}

/// One target of the JSON answer.
#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    target: String,
    /// `[value, timestamp]` pairs; a value may be `null`, a number or a numeric string.
    datapoints: Vec<Vec<Value>>,
}

/// The one number of a render answer.
///
/// Flagger takes the last datapoint with a value over all targets. fledge differs where that is
/// wrong: several targets are several series (Flagger would judge whichever came last).
fn value_of(body: &str) -> Result<MetricOutcome, String> {
    let targets: Vec<Target> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let one = match targets.as_slice() {
        [] => return Ok(MetricOutcome::NoData),
        [one] => one,
        many => {
            return Ok(MetricOutcome::Error(format!(
                "the query returned {} series ({}) where one number is expected; combine them, e.g. with sumSeries()",
                many.len(),
                crate::http::clip(
                    &many
                        .iter()
                        .map(|t| t.target.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    200
                )
            )));
        }
    };
    let mut last = None;
    for point in &one.datapoints {
        match point.first() {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) => last = n.as_f64(),
            Some(Value::String(s)) => {
                last = Some(
                    s.trim()
                        .parse::<f64>()
                        .map_err(|_| format!("the datapoint value {s:?} is not a number"))?,
                );
            }
            Some(other) => return Err(format!("the datapoint value {other} is not a number")),
        }
    }
    Ok(last.map_or(MetricOutcome::NoData, MetricOutcome::Value))
}

#[async_trait::async_trait]
impl MetricsProvider for Graphite {
    async fn online(&self) -> Result<(), String> {
        match self.query("target=test").await {
            MetricOutcome::ProviderUnreachable(m) | MetricOutcome::Error(m) => Err(m),
            _ => Ok(()),
        }
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        let request = self.http.client.get(self.url(query));
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
    fn the_last_datapoint_with_a_value_is_the_result() {
        assert_eq!(
            v(r#"[{"target":"a","datapoints":[[1.5,1],[2.5,2],[null,3]]}]"#),
            "Value(2.5)"
        );
        assert_eq!(
            v(r#"[{"target":"a","datapoints":[["4.5","1"]]}]"#),
            "Value(4.5)"
        );
    }

    #[test]
    fn no_target_or_no_value_is_no_data() {
        assert_eq!(v("[]"), "NoData");
        assert_eq!(v(r#"[{"target":"a","datapoints":[]}]"#), "NoData");
        assert_eq!(
            v(r#"[{"target":"a","datapoints":[[null,1],[null,2]]}]"#),
            "NoData"
        );
    }

    #[test]
    fn several_targets_are_several_series_and_odd_values_unreadable() {
        let two = v(r#"[{"target":"a","datapoints":[[1,1]]},{"target":"b","datapoints":[[2,1]]}]"#);
        assert!(two.contains("2 series (a, b)"), "{two}");
        assert!(v(r#"[{"target":"a","datapoints":[["x",1]]}]"#).starts_with("unreadable"));
        assert!(v(r#"[{"target":"a","datapoints":[[true,1]]}]"#).starts_with("unreadable"));
        assert!(v("{}").starts_with("unreadable"));
    }

    #[test]
    fn the_query_is_the_render_query_string_with_format_json() {
        let cfg = ProviderConfig {
            kind: "graphite".into(),
            address: "https://proxy.example/graphite".into(),
            headers: Vec::new(),
            secret: None,
            insecure_skip_verify: false,
            region: None,
        };
        let g = Graphite::new(&cfg, Duration::from_secs(1)).unwrap();
        let url = g.url("target=sumSeries(\n  a.{b,c}.d\n)&from=-5min&format=raw");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(url.path(), "/graphite/render");
        assert_eq!(
            pairs,
            [
                ("target".into(), "sumSeries( a.{b,c}.d )".into()),
                ("from".into(), "-5min".into()),
                ("format".into(), "json".into()),
            ]
        );
    }

    #[test]
    fn a_secret_needs_both_username_and_password() {
        let cfg = crate::http::testing::config("graphite", "http://graphite", &[(USERNAME, "u")]);
        let Err(e) = Graphite::new(&cfg, Duration::from_secs(1)) else {
            panic!("accepted");
        };
        assert!(
            e.contains("apps/graphite") && e.contains("no password"),
            "{e}"
        );
    }
}
