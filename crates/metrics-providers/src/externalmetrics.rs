//! The externalmetrics provider: a value of the Kubernetes External Metrics API
//! (`external.metrics.k8s.io/v1beta1`, the API an adapter such as KEDA's or prometheus-adapter
//! serves for autoscaling: <https://github.com/kubernetes/design-proposals-archive/blob/main/instrumentation/external-metrics-api.md>),
//! with the query syntax of Flagger's `externalmetrics` provider:
//! `[<namespace>/]<metric name>[?labelSelector=<URL-encoded selector>]` (namespace `default`
//! when left out), read as
//! `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/<namespace>/<metric>?labelSelector=…`.
//!
//! Without `spec.provider.address` the controller's own client asks its API server (which
//! proxies the aggregated API, as Flagger's in-cluster configuration does); with an address, that
//! server is asked directly, with the bearer token of the Secret's `token` key and
//! `insecureSkipVerify`, as in Flagger. The result is the `value` (a Kubernetes quantity, e.g.
//! `500m`) of the one item of the `ExternalMetricValueList`. fledge differs where Flagger's
//! reading is wrong: several items are several series, an error (Flagger takes the first,
//! whichever it is). The online check asks whether the API group is served (Flagger lists a
//! dummy metric in `kube-system`, which an adapter may refuse).

use std::time::Duration;

use fledge_core::MetricOutcome;
use serde::Deserialize;

use crate::http::clip;
use crate::kubeapi::KubeApi;
use crate::{Cluster, Context, MetricsProvider, ProviderConfig};

/// The External Metrics API's group and version.
pub const GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";
/// The Secret key of the bearer token, as Flagger names it.
pub const TOKEN: &str = "token";

/// What fledge's identity needs, for the hint on 401 and 403.
const RBAC: &str = "check the credentials fledge runs with: its ServiceAccount (or the Secret's token) needs get and list on the metric (a resource named after it) in external.metrics.k8s.io, which fledge's role does not grant by itself";

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The namespace (`default` when the query names none).
    pub namespace: String,
    /// The metric's name.
    pub metric: String,
    /// The label selector, as written (decoded), when there is one.
    pub selector: Option<String>,
}

/// The form every query has, for messages.
const FORM: &str = "write [<namespace>/]<metric name>[?labelSelector=<URL-encoded selector>]";

/// Reads a query as Flagger does.
pub fn parse_query(query: &str) -> Result<Query, String> {
    let q = query.trim();
    let (path, params) = q.split_once('?').unwrap_or((q, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (namespace, metric) = match parts.as_slice() {
        [metric] => ("default", *metric),
        ["", metric] => ("default", *metric),
        [namespace, metric] => (*namespace, *metric),
        _ => {
            return Err(format!(
                "the externalmetrics query {:?} has too many slashes; {FORM}",
                clip(q, 100)
            ));
        }
    };
    if metric.is_empty() {
        return Err(format!(
            "the externalmetrics query {:?} names no metric; {FORM}",
            clip(q, 100)
        ));
    }
    let selector = url::form_urlencoded::parse(params.as_bytes())
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty());
    Ok(Query {
        namespace: namespace.to_string(),
        metric: metric.to_string(),
        selector,
    })
}

/// A Kubernetes quantity (`500m`, `2`, `1.5k`, `3Mi`, `1e3`) as a number.
pub fn quantity(text: &str) -> Option<f64> {
    let t = text.trim();
    let end = t
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '+' || *c == '-'))))
        .map_or(t.len(), |(i, _)| i);
    let (number, suffix) = t.split_at(end);
    let n: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(n * factor)
}

/// The answer's items.
#[derive(Deserialize)]
struct ValueList {
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "metricLabels", default)]
    labels: std::collections::BTreeMap<String, String>,
    value: String,
}

/// The one number of an `ExternalMetricValueList`.
fn value_of(list: &ValueList, what: &str) -> MetricOutcome {
    match list.items.as_slice() {
        [] => MetricOutcome::NoData,
        [one] => match quantity(&one.value) {
            Some(v) => MetricOutcome::Value(v),
            None => MetricOutcome::Error(format!(
                "{what} has the value {:?}, which is not a Kubernetes quantity",
                clip(&one.value, 50)
            )),
        },
        many => MetricOutcome::Error(format!(
            "{what} gave {} series ({}) where one number is expected; narrow the query's labelSelector",
            many.len(),
            clip(
                &many
                    .iter()
                    .map(|i| format!("{:?}", i.labels))
                    .collect::<Vec<_>>()
                    .join(", "),
                200
            )
        )),
    }
}

/// A client of the External Metrics API.
pub struct ExternalMetrics {
    kube: KubeApi,
}

impl ExternalMetrics {
    /// A client of the controller's API server (no address) or of `cfg.address`; every request
    /// gives up after the context's timeout.
    pub fn new(cfg: &ProviderConfig, ctx: &Context) -> Result<ExternalMetrics, String> {
        let cluster = if cfg.address.trim().is_empty() {
            ctx.cluster.clone().ok_or_else(|| {
                "the externalmetrics provider without spec.provider.address asks the controller's API server, and this command has no Kubernetes client; set spec.provider.address".to_string()
            })?
        } else {
            let url: ::http::Uri = cfg.address.trim().parse().map_err(|e| {
                format!("spec.provider.address is not a URL ({e}); write e.g. https://external-metrics.monitoring:443")
            })?;
            let mut config = kube::Config::new(url);
            config.accept_invalid_certs = cfg.insecure_skip_verify;
            config.read_timeout = Some(ctx.timeout);
            config.connect_timeout = Some(ctx.timeout.min(Duration::from_secs(5)));
            if let Some(secret) = &cfg.secret {
                let token = secret.required("externalmetrics", &[TOKEN])?.remove(0);
                config.auth_info.token = Some(token.into());
            }
            Cluster {
                client: kube::Client::try_from(config)
                    .map_err(|e| format!("cannot build a client for spec.provider.address: {e}"))?,
                shown: crate::shown(&cfg.address),
            }
        };
        Ok(ExternalMetrics {
            kube: KubeApi {
                cluster,
                timeout: ctx.timeout,
                rbac: RBAC,
                missing: "check the query's namespace and metric name, and that an adapter serves the External Metrics API",
            },
        })
    }

    /// [`ExternalMetrics::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(cfg: &ProviderConfig, ctx: &Context) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(ExternalMetrics::new(cfg, ctx)?))
    }
}

#[async_trait::async_trait]
impl MetricsProvider for ExternalMetrics {
    async fn online(&self) -> Result<(), String> {
        self.kube
            .serves(
                GROUP_VERSION,
                "install an adapter that serves the External Metrics API (KEDA, prometheus-adapter, …) for the externalmetrics provider",
            )
            .await
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        let q = match parse_query(query) {
            Ok(q) => q,
            Err(e) => return MetricOutcome::Error(e),
        };
        let what = format!("external metric {}/{}", q.namespace, q.metric);
        let mut path = format!(
            "/apis/{GROUP_VERSION}/namespaces/{}/{}",
            url::form_urlencoded::byte_serialize(q.namespace.as_bytes()).collect::<String>(),
            url::form_urlencoded::byte_serialize(q.metric.as_bytes()).collect::<String>()
        );
        if let Some(s) = &q.selector {
            path.push_str("?labelSelector=");
            path.extend(url::form_urlencoded::byte_serialize(s.as_bytes()));
        }
        let request = match ::http::Request::get(path).body(Vec::new()) {
            Ok(r) => r,
            Err(e) => return MetricOutcome::Error(format!("{what}: {e}")),
        };
        let answer = tokio::time::timeout(
            self.kube.timeout,
            self.kube.cluster.client.request::<ValueList>(request),
        )
        .await;
        match answer {
            Err(_) => self.kube.late(&what),
            Ok(Err(e)) => self.kube.failure(e, &what),
            Ok(Ok(list)) => value_of(&list, &what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flaggers_query_forms_parse() {
        assert_eq!(
            parse_query("webapp-frontend/job-success-rate?labelSelector=env%3Dproduction"),
            Ok(Query {
                namespace: "webapp-frontend".into(),
                metric: "job-success-rate".into(),
                selector: Some("env=production".into()),
            })
        );
        assert_eq!(
            parse_query("queue-depth").map(|q| (q.namespace, q.metric, q.selector)),
            Ok(("default".into(), "queue-depth".into(), None))
        );
        assert_eq!(
            parse_query("/queue-depth").map(|q| q.namespace),
            Ok("default".into())
        );
        assert!(
            parse_query("a/b/c")
                .unwrap_err()
                .contains("too many slashes")
        );
        assert!(
            parse_query("apps/")
                .unwrap_err()
                .contains("names no metric")
        );
    }

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        for (text, want) in [
            ("500m", 0.5),
            ("2", 2.0),
            ("1.5k", 1500.0),
            ("3Mi", 3.0 * 1024.0 * 1024.0),
            ("1e3", 1000.0),
            ("-250m", -0.25),
            ("42u", 42e-6),
        ] {
            let got = quantity(text).unwrap();
            assert!(
                (got - want).abs() < 1e-12 * want.abs().max(1.0),
                "{text}: {got}"
            );
        }
        for bad in ["", "m", "1x", "1.2.3", "abc"] {
            assert_eq!(quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn one_item_is_a_number_none_is_no_data_several_are_an_error() {
        let list = |json: &str| serde_json::from_str::<ValueList>(json).unwrap();
        let one = list(
            r#"{"kind":"ExternalMetricValueList","items":[{"metricName":"m","metricLabels":{"env":"prod"},"timestamp":"2026-01-01T00:00:00Z","value":"995m"}]}"#,
        );
        assert_eq!(value_of(&one, "m"), MetricOutcome::Value(0.995));
        assert_eq!(
            value_of(&list(r#"{"items":[]}"#), "m"),
            MetricOutcome::NoData
        );
        let two = list(
            r#"{"items":[{"metricLabels":{"a":"1"},"value":"1"},{"metricLabels":{"a":"2"},"value":"2"}]}"#,
        );
        let MetricOutcome::Error(e) = value_of(&two, "m") else {
            panic!("several items are an error");
        };
        assert!(e.contains("2 series") && e.contains("labelSelector"), "{e}");
    }
}
