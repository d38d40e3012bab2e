//! The Keptn metrics provider: a value that Keptn's metrics operator keeps in the cluster, read
//! through the controller's own Kubernetes client, with the query syntax of Flagger's `keptn`
//! provider (`<keptnmetric|analysis>/<namespace>/<name>[/<timeframe>[/<arguments>]]`):
//!
//! - `keptnmetric/<namespace>/<name>` reads the KeptnMetric's `status.value`
//!   (`metrics.keptn.sh/v1beta1`, <https://keptn.sh/stable/docs/reference/crd-reference/metrics/>).
//! - `analysis/<namespace>/<definition>/<timeframe>/<key>=<value>;…` creates an Analysis of the
//!   AnalysisDefinition `<definition>` over the last `<timeframe>` (default `1m`) with those
//!   arguments, waits until Keptn has completed it, and gives 1 when it passed and 0 when it did
//!   not (<https://keptn.sh/stable/docs/reference/crd-reference/analysis/>); the Analysis is
//!   deleted afterwards.
//!
//! As in Flagger, the query is read in lower case, `keptnmetrics` and `analyses` are accepted for
//! the kinds, a KeptnMetric query ignores any part after its name, and an Analysis gets the query
//! timeout to complete (Flagger: 10 seconds, fledge's default query timeout), polled every second.
//! fledge differs where Flagger's reading is wrong: a KeptnMetric without a value yet is no data
//! (not an error), NaN is a failure, a malformed argument is an error (Flagger drops it), and
//! an empty timeframe is `1m`. The online check asks whether the API server serves
//! `metrics.keptn.sh/v1beta1` (Flagger's check always passes), so a cluster without Keptn fails
//! each Keptn metric saying so.

use std::collections::BTreeMap;
use std::time::Duration;

use fledge_core::MetricOutcome;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;

use crate::http::clip;
use crate::kubeapi::KubeApi;
use crate::{Context, MetricsProvider, ProviderConfig};

/// Keptn's metrics API group.
pub const GROUP: &str = "metrics.keptn.sh";
/// The version Flagger reads and writes.
pub const VERSION: &str = "v1beta1";
/// How often a pending Analysis is read again, as in Flagger.
const POLL: Duration = Duration::from_secs(1);

/// What fledge's ServiceAccount needs, for the hint on 401 and 403.
const RBAC: &str = "check the credentials fledge runs with: its ServiceAccount needs get on keptnmetrics and create, get and delete on analyses in metrics.keptn.sh";

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    /// `keptnmetric/<namespace>/<name>`.
    Metric {
        /// The KeptnMetric's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// `analysis/<namespace>/<definition>/<timeframe>/<arguments>`.
    Analysis {
        /// Where the Analysis is created.
        namespace: String,
        /// The AnalysisDefinition.
        definition: String,
        /// `spec.timeframe.recent`, e.g. `5m`.
        timeframe: String,
        /// `spec.args`.
        args: BTreeMap<String, String>,
    },
}

/// The form every query has, for messages.
const FORM: &str = "write keptnmetric/<namespace>/<name> or analysis/<namespace>/<analysis definition>/<timeframe, e.g. 5m>/<key>=<value>;<key>=<value>";

/// Reads a query as Flagger does (in lower case, trimmed, split on `/`).
pub fn parse_query(query: &str) -> Result<Query, String> {
    let lower = query.to_lowercase();
    let parts: Vec<&str> = lower.trim().split('/').collect();
    if parts.len() < 3 {
        return Err(format!(
            "the keptn query {:?} has {} part(s) where at least 3 are needed; {FORM}",
            clip(query.trim(), 100),
            parts.len()
        ));
    }
    let (namespace, name) = (parts[1].trim(), parts[2].trim());
    if namespace.is_empty() || name.is_empty() {
        return Err(format!(
            "the keptn query {:?} has an empty namespace or name; {FORM}",
            clip(query.trim(), 100)
        ));
    }
    match parts[0].trim() {
        "keptnmetric" | "keptnmetrics" => Ok(Query::Metric {
            namespace: namespace.into(),
            name: name.into(),
        }),
        "analysis" | "analyses" => {
            let timeframe = parts
                .get(3)
                .map(|t| t.trim())
                .filter(|t| !t.is_empty())
                .unwrap_or("1m")
                .to_string();
            let mut args = BTreeMap::new();
            for arg in parts
                .get(4)
                .into_iter()
                .flat_map(|a| a.split(';'))
                .filter(|a| !a.trim().is_empty())
            {
                match arg.split('=').collect::<Vec<_>>().as_slice() {
                    [k, v] if !k.trim().is_empty() => {
                        args.insert(k.trim().to_string(), v.trim().to_string());
                    }
                    _ => {
                        return Err(format!(
                            "the keptn query's argument {:?} is not <key>=<value>; separate arguments with ';'",
                            clip(arg, 100)
                        ));
                    }
                }
            }
            Ok(Query::Analysis {
                namespace: namespace.into(),
                definition: name.into(),
                timeframe,
                args,
            })
        }
        other => Err(format!(
            "the keptn query's kind {other:?} is neither keptnmetric nor analysis; {FORM}"
        )),
    }
}

/// The number of a KeptnMetric (`status.value`, a decimal string).
pub fn metric_value(object: &serde_json::Value, what: &str) -> MetricOutcome {
    let status = &object["status"];
    match status["value"].as_str().map(str::trim) {
        Some(v) if !v.is_empty() => match v.parse::<f64>() {
            Ok(n) if n.is_finite() => MetricOutcome::Value(n),
            Ok(n) => MetricOutcome::Error(format!(
                "{what} has the value {n} (NaN or infinite), not a number to judge"
            )),
            Err(_) => MetricOutcome::Error(format!(
                "{what} has the value {:?}, which is not a number",
                clip(v, 100)
            )),
        },
        _ => match status["errMsg"].as_str().filter(|m| !m.is_empty()) {
            Some(m) => {
                MetricOutcome::Error(format!("{what} has no value: Keptn says {}", clip(m, 300)))
            }
            None => MetricOutcome::NoData,
        },
    }
}

/// The verdict of an Analysis once Keptn has completed it: 1 when it passed, 0 when not;
/// `None` while it is not complete.
pub fn analysis_value(object: &serde_json::Value) -> Option<MetricOutcome> {
    let status = &object["status"];
    if status["state"].as_str() != Some("Completed") {
        return None;
    }
    let pass = status["pass"].as_bool()?;
    Some(MetricOutcome::Value(if pass { 1.0 } else { 0.0 }))
}

/// A client of Keptn's metrics API in the controller's cluster.
pub struct Keptn {
    kube: KubeApi,
}

impl Keptn {
    /// A client on `ctx`'s cluster; every query gives up after the context's timeout.
    pub fn new(_cfg: &ProviderConfig, ctx: &Context) -> Result<Keptn, String> {
        let cluster = ctx.cluster.clone().ok_or_else(|| {
            "the keptn provider reads KeptnMetrics and Analyses in the cluster, and this command has no Kubernetes client to read them with".to_string()
        })?;
        Ok(Keptn {
            kube: KubeApi {
                cluster,
                timeout: ctx.timeout,
                rbac: RBAC,
                missing: "check the query's namespace and name, and that Keptn's metrics operator is installed",
            },
        })
    }

    /// [`Keptn::new`], boxed as a [`MetricsProvider`].
    pub fn boxed(cfg: &ProviderConfig, ctx: &Context) -> Result<Box<dyn MetricsProvider>, String> {
        Ok(Box::new(Keptn::new(cfg, ctx)?))
    }

    fn api(&self, namespace: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk(GROUP, VERSION, kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
        Api::namespaced_with(self.kube.cluster.client.clone(), namespace, &resource)
    }

    async fn metric(&self, namespace: &str, name: &str) -> MetricOutcome {
        let what = format!("KeptnMetric {namespace}/{name}");
        let api = self.api(namespace, "KeptnMetric", "keptnmetrics");
        match tokio::time::timeout(self.kube.timeout, api.get(name)).await {
            Err(_) => self.kube.late(&what),
            Ok(Err(e)) => self.kube.failure(e, &what),
            Ok(Ok(object)) => match serde_json::to_value(&object) {
                Ok(v) => metric_value(&v, &what),
                Err(e) => MetricOutcome::Error(format!("{what} cannot be read: {e}")),
            },
        }
    }

    async fn analysis(
        &self,
        namespace: &str,
        definition: &str,
        timeframe: &str,
        args: &BTreeMap<String, String>,
    ) -> MetricOutcome {
        let what = format!("an Analysis of AnalysisDefinition {namespace}/{definition}");
        let api = self.api(namespace, "Analysis", "analyses");
        let gvk = GroupVersionKind::gvk(GROUP, VERSION, "Analysis");
        let mut object =
            DynamicObject::new("", &ApiResource::from_gvk_with_plural(&gvk, "analyses"));
        object.metadata.name = None;
        object.metadata.generate_name = Some(format!("{}-", clip_name(definition)));
        object.metadata.namespace = Some(namespace.to_string());
        object.metadata.labels = Some(
            [(
                "app.kubernetes.io/managed-by".to_string(),
                "fledge".to_string(),
            )]
            .into(),
        );
        object.data = serde_json::json!({
            "spec": {
                "analysisDefinition": {"name": definition},
                "timeframe": {"recent": timeframe},
                "args": args,
            }
        });
        let created = match tokio::time::timeout(
            self.kube.timeout,
            api.create(&PostParams::default(), &object),
        )
        .await
        {
            Err(_) => return self.kube.late(&what),
            Ok(Err(e)) => return self.kube.failure(e, &what),
            Ok(Ok(created)) => created,
        };
        let Some(name) = created.metadata.name.clone() else {
            return MetricOutcome::Error(format!("the API server created {what} without a name"));
        };
        let outcome = tokio::time::timeout(self.kube.timeout, async {
            loop {
                tokio::time::sleep(POLL).await;
                match api.get(&name).await {
                    Err(e) => return self.kube.failure(e, &format!("Analysis {namespace}/{name}")),
                    Ok(o) => {
                        let value = serde_json::to_value(&o).unwrap_or_default();
                        if let Some(outcome) = analysis_value(&value) {
                            return outcome;
                        }
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            MetricOutcome::ProviderUnreachable(format!(
                "Keptn did not complete Analysis {namespace}/{name} within {}s; raise the metrics query timeout or shorten the analysis",
                self.kube.timeout.as_secs_f64()
            ))
        });
        let deleted = tokio::time::timeout(
            self.kube.timeout,
            api.delete(&name, &DeleteParams::background()),
        )
        .await;
        if !matches!(deleted, Ok(Ok(_))) {
            tracing::warn!(analysis = %format!("{namespace}/{name}"), "could not delete the Keptn Analysis fledge created");
        }
        outcome
    }
}

/// A name prefix short enough for `generateName` (the API server adds five characters).
fn clip_name(name: &str) -> &str {
    match name.char_indices().nth(57) {
        Some((i, _)) => name[..i].trim_end_matches(['-', '.']),
        None => name,
    }
}

#[async_trait::async_trait]
impl MetricsProvider for Keptn {
    async fn online(&self) -> Result<(), String> {
        self.kube
            .serves(
                &format!("{GROUP}/{VERSION}"),
                "install Keptn's metrics operator (its CRDs) for the keptn provider",
            )
            .await
    }

    async fn query(&self, query: &str) -> MetricOutcome {
        match parse_query(query) {
            Err(e) => MetricOutcome::Error(e),
            Ok(Query::Metric { namespace, name }) => self.metric(&namespace, &name).await,
            Ok(Query::Analysis {
                namespace,
                definition,
                timeframe,
                args,
            }) => {
                self.analysis(&namespace, &definition, &timeframe, &args)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn flaggers_example_queries_parse() {
        assert_eq!(
            parse_query("keptnmetric/my-namespace/response-time/2m/reporter=destination\n"),
            Ok(Query::Metric {
                namespace: "my-namespace".into(),
                name: "response-time".into()
            })
        );
        assert_eq!(
            parse_query("KeptnMetrics/Apps/Latency"),
            Ok(Query::Metric {
                namespace: "apps".into(),
                name: "latency".into()
            })
        );
        assert_eq!(
            parse_query("analysis/apps/error-budget/5m/workload=podinfo;Stage=Canary"),
            Ok(Query::Analysis {
                namespace: "apps".into(),
                definition: "error-budget".into(),
                timeframe: "5m".into(),
                args: [
                    ("stage".to_string(), "canary".to_string()),
                    ("workload".to_string(), "podinfo".to_string())
                ]
                .into()
            })
        );
        assert_eq!(
            parse_query("analyses/apps/error-budget"),
            Ok(Query::Analysis {
                namespace: "apps".into(),
                definition: "error-budget".into(),
                timeframe: "1m".into(),
                args: BTreeMap::new()
            })
        );
    }

    #[test]
    fn a_malformed_query_says_how_to_write_one() {
        for (query, says) in [
            ("keptnmetric/apps", "at least 3"),
            ("keptnmetric//latency", "empty namespace"),
            (
                "prometheus/apps/latency",
                "neither keptnmetric nor analysis",
            ),
            ("analysis/apps/budget/5m/workload", "not <key>=<value>"),
            ("analysis/apps/budget/5m/a=b=c", "not <key>=<value>"),
        ] {
            let e = parse_query(query).unwrap_err();
            assert!(e.contains(says), "{query}: {e}");
        }
    }

    #[test]
    fn a_keptn_metric_gives_its_value_or_says_why_not() {
        let m = |status: serde_json::Value| {
            format!(
                "{:?}",
                metric_value(&json!({"status": status}), "KeptnMetric a/b")
            )
        };
        assert_eq!(
            m(json!({"value": "12.5", "rawValue": "MTIuNQ=="})),
            "Value(12.5)"
        );
        assert_eq!(m(json!({})), "NoData");
        assert_eq!(m(json!({"value": ""})), "NoData");
        assert!(m(json!({"value": "NaN"})).contains("NaN"));
        assert!(m(json!({"value": "fast"})).contains("not a number"));
        assert!(
            m(json!({"errMsg": "prometheus: connection refused"})).contains("connection refused")
        );
        assert_eq!(
            format!(
                "{:?}",
                metric_value(&json!({"spec": {}}), "KeptnMetric a/b")
            ),
            "NoData"
        );
    }

    #[test]
    fn a_completed_analysis_is_one_when_it_passed_and_zero_when_not() {
        let a = |status: serde_json::Value| {
            analysis_value(&json!({"status": status})).map(|o| format!("{o:?}"))
        };
        assert_eq!(
            a(json!({"state": "Completed", "pass": true})).as_deref(),
            Some("Value(1.0)")
        );
        assert_eq!(
            a(json!({"state": "Completed", "pass": false, "warning": true})).as_deref(),
            Some("Value(0.0)")
        );
        assert_eq!(a(json!({"state": "Progressing"})), None);
        assert_eq!(a(json!({"state": "Completed"})), None);
        assert_eq!(a(json!(null)), None);
    }

    #[test]
    fn a_generated_name_prefix_fits() {
        let long = "a".repeat(80);
        assert_eq!(clip_name(&long).len(), 57);
        assert_eq!(clip_name("budget"), "budget");
    }
}
