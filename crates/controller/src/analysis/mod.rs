//! Metric analysis: turns `spec.analysis.metrics` into numbers from Prometheus.
//!
//! For each metric: a MetricTemplate's query (by `templateRef`), the builtin query of the
//! Canary's provider (`request-success-rate`, `request-duration`), or the metric's inline
//! `query`, rendered with Flagger's variables ([`fledge_api::template`]). Each Prometheus server
//! is checked online before its queries run; a server that is down fails every metric it
//! serves with that reason. Anything that is not one number fails the check (the engine judges
//! the values): fledge never mistakes silence for health.

pub mod builtin;

use std::collections::HashMap;
use std::time::Duration;

use fledge_api::template::{TemplateVars, render};
use fledge_api::{Canary, CanaryMetric, MetricTemplate, defaults, parse_duration};
use fledge_core::{MetricOutcome, MetricResult};
use futures::future::join_all;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

pub use builtin::{GatewayMetrics, Observer};
use fledge_metrics_providers::{
    Cluster, Context, MetricsProvider, ProviderConfig, SecretData, provider_for,
};

/// How the controller runs metric queries.
#[derive(Clone, Debug)]
pub struct AnalysisSettings {
    /// The Prometheus address for builtin metrics and templates without `provider.address`,
    /// when the Canary has no `spec.metricsServer` (`--metrics-server`).
    pub metrics_server: Option<String>,
    /// Whose metrics the builtin queries of `gatewayapi` Canaries read.
    pub gateway_metrics: GatewayMetrics,
    /// Every query (and the online check) gives up after this long.
    pub query_timeout: Duration,
    /// The API server's address as messages show it (the `keptn` provider reads the cluster
    /// through the controller's client); empty when unknown.
    pub api_server: String,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        AnalysisSettings {
            metrics_server: None,
            gateway_metrics: GatewayMetrics::App,
            query_timeout: Duration::from_secs(10),
            api_server: String::new(),
        }
    }
}

/// The canary's and the stable pods' names as regular expressions (`{{ canary_pods }}`,
/// `{{ stable_pods }}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSets {
    /// The canary's pods.
    pub canary: String,
    /// The stable (promoted) pods.
    pub stable: String,
    /// A Knative Service's Revision under test, which `{{ route }}` names instead of
    /// `spec.routeRef` (as Flagger's queries for Knative read it).
    pub canary_revision: Option<String>,
    /// The promoted Revision of a Knative Service (`{{ route }}` of a baseline query).
    pub stable_revision: Option<String>,
}

impl PodSets {
    /// A Deployment or DaemonSet target `target`: its pods `<target>-<hash>-<suffix>`, the
    /// primary's `<target>-primary-<hash>-<suffix>` (a DaemonSet's pods have one suffix).
    pub fn copies(target: &str) -> PodSets {
        PodSets {
            canary: format!("{target}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"),
            stable: format!("{target}-primary-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"),
            ..PodSets::default()
        }
    }
}

/// Runs metric checks.
pub struct Analyzer {
    client: Client,
    settings: AnalysisSettings,
}

/// One metric, ready to run: where and what, or why it cannot run.
struct Planned {
    name: String,
    /// The server, the rendered query, and the metric's interval.
    job: Result<(ProviderConfig, String, Duration), MetricOutcome>,
    /// A statistically judged metric: its query rendered for the baseline's workload (the
    /// job's is the canary's).
    baseline_query: Option<String>,
}

impl Analyzer {
    /// An analyzer reading MetricTemplates and Secrets through `client`.
    pub fn new(client: Client, settings: AnalysisSettings) -> Analyzer {
        Analyzer { client, settings }
    }

    /// The result of every metric of `canary` (in the spec's order).
    pub async fn run(&self, canary: &Canary, pods: &PodSets) -> Vec<MetricResult> {
        self.run_with(canary, None, pods).await
    }

    /// [`Analyzer::run`] as the queries would have answered at `at` (seconds since the Unix
    /// epoch), or now: what `fledge replay` asks.
    pub async fn run_at(&self, canary: &Canary, at: Option<i64>) -> Vec<MetricResult> {
        let pods = PodSets::copies(&canary.spec.target_ref.name);
        self.run_with(canary, at, &pods).await
    }

    /// [`Analyzer::run_at`] with the pods the queries' `{{ canary_pods }}` and
    /// `{{ stable_pods }}` name.
    pub async fn run_with(
        &self,
        canary: &Canary,
        at: Option<i64>,
        pods: &PodSets,
    ) -> Vec<MetricResult> {
        let metrics = canary
            .spec
            .analysis
            .as_ref()
            .and_then(|a| a.metrics.clone())
            .unwrap_or_default();
        if metrics.is_empty() {
            return Vec::new();
        }
        let judge = canary.spec.analysis.as_ref().and_then(|a| a.judge.as_ref());
        let mut planned = Vec::with_capacity(metrics.len());
        for (i, m) in metrics.iter().enumerate() {
            let job = self.plan(canary, i, m, None, pods).await;
            let baseline_query = match judge.filter(|_| m.judge.is_some()) {
                Some(j) if job.is_ok() => {
                    let target = &canary.spec.target_ref.name;
                    let baseline = if j.fresh_baseline() {
                        fledge_api::baseline_name(target)
                    } else {
                        format!("{target}-primary")
                    };
                    // The baseline's pods stand where the canary's do in the query.
                    let swapped = PodSets {
                        canary: pods.stable.clone(),
                        stable: pods.canary.clone(),
                        canary_revision: pods.stable_revision.clone(),
                        stable_revision: pods.canary_revision.clone(),
                    };
                    self.plan(canary, i, m, Some(&baseline), &swapped)
                        .await
                        .ok()
                        .map(|(_, q, _)| q)
                }
                _ => None,
            };
            planned.push(Planned {
                name: m.name.clone(),
                job,
                baseline_query,
            });
        }
        // One client and one online check per distinct server.
        type Server = Result<Box<dyn MetricsProvider>, MetricOutcome>;
        let mut servers: HashMap<ProviderConfig, Server> = HashMap::new();
        for p in &planned {
            if let Ok((cfg, _, _)) = &p.job
                && !servers.contains_key(cfg)
            {
                let ctx = Context {
                    timeout: self.settings.query_timeout,
                    cluster: Some(Cluster {
                        client: self.client.clone(),
                        shown: self.settings.api_server.clone(),
                    }),
                };
                let server = provider_for(cfg, ctx);
                servers.insert(cfg.clone(), server);
            }
        }
        let online: HashMap<ProviderConfig, Result<(), MetricOutcome>> =
            join_all(servers.iter().map(|(cfg, server)| async move {
                let up = match server {
                    Ok(s) => s.online().await.map_err(MetricOutcome::ProviderUnreachable),
                    Err(e) => Err(e.clone()),
                };
                (cfg.clone(), up)
            }))
            .await
            .into_iter()
            .collect();
        let results = join_all(planned.iter().map(|p| async {
            let outcome = match &p.job {
                Err(outcome) => outcome.clone(),
                Ok((cfg, query, interval)) => match (online.get(cfg), servers.get(cfg)) {
                    (Some(Ok(())), Some(Ok(server))) => match (&p.baseline_query, at) {
                        (Some(baseline), _) => {
                            let (b, c) = futures::join!(
                                server.samples(baseline, *interval, at),
                                server.samples(query, *interval, at)
                            );
                            match (b, c) {
                                (Ok(baseline), Ok(canary)) => {
                                    MetricOutcome::Samples { baseline, canary }
                                }
                                (Err(e), _) | (_, Err(e)) => e,
                            }
                        }
                        (None, None) => server.query_over(query, *interval).await,
                        (None, Some(t)) => server.query_at(query, t).await,
                    },
                    (Some(Err(why)), _) => why.clone(),
                    _ => MetricOutcome::ProviderUnreachable("no metrics provider client".into()),
                },
            };
            MetricResult {
                name: p.name.clone(),
                outcome,
            }
        }))
        .await;
        for r in &results {
            tracing::debug!(
                canary = %format!("{}/{}", canary.namespace().unwrap_or_default(), canary.name_any()),
                metric = %r.name,
                outcome = ?r.outcome,
                "metric checked"
            );
        }
        results
    }

    /// Where and what to query for metric `i`, with `{{ target }}` naming `target` instead of
    /// `spec.targetRef.name` when given (a statistical judgement's baseline).
    async fn plan(
        &self,
        canary: &Canary,
        i: usize,
        m: &CanaryMetric,
        target: Option<&str>,
        pods: &PodSets,
    ) -> Result<(ProviderConfig, String, Duration), MetricOutcome> {
        let ns = canary.namespace().unwrap_or_default();
        let field = format!("spec.analysis.metrics[{i}]");
        let interval = m.interval.as_deref().unwrap_or(defaults::METRIC_INTERVAL);
        let window = parse_duration(interval).map_err(|e| {
            MetricOutcome::Error(format!(
                "{field}.interval {interval:?} is not a duration ({e}); write e.g. 1m"
            ))
        })?;
        let target = target.unwrap_or(canary.spec.target_ref.name.as_str());
        let name = canary.name_any();
        let vars = TemplateVars {
            namespace: &ns,
            name: &name,
            target,
            service: canary.spec.apex_service_name(),
            ingress: canary
                .spec
                .ingress_ref
                .as_ref()
                .map_or("", |r| r.name.as_str()),
            route: match &pods.canary_revision {
                Some(revision) => revision,
                None => canary
                    .spec
                    .route_ref
                    .as_ref()
                    .map_or("", |r| r.name.as_str()),
            },
            interval,
            canary_pods: &pods.canary,
            stable_pods: &pods.stable,
            variables: m.template_variables.as_ref(),
        };
        let default_address = canary
            .spec
            .metrics_server
            .clone()
            .filter(|a| !a.is_empty())
            .or_else(|| self.settings.metrics_server.clone());
        if let Some(r) = &m.template_ref {
            let tns = r
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or(ns.clone());
            let what = format!("MetricTemplate {tns}/{}", r.name);
            let api: Api<MetricTemplate> = Api::namespaced(self.client.clone(), &tns);
            let template = match api.get_opt(&r.name).await {
                Ok(Some(t)) => t,
                Ok(None) => {
                    return Err(MetricOutcome::Error(format!(
                        "{what} (from {field}.templateRef) does not exist; create it or fix the reference"
                    )));
                }
                Err(e) => {
                    return Err(MetricOutcome::Error(format!("cannot read {what}: {e}")));
                }
            };
            let provider = &template.spec.provider;
            let kind = template.spec.provider_type();
            if !fledge_metrics_providers::provider_names().contains(&kind) {
                return Err(MetricOutcome::Error(format!(
                    "{what}: spec.provider.type {kind:?} is not supported by fledge yet; the metrics providers available are: {}",
                    fledge_metrics_providers::provider_names().join(", ")
                )));
            }
            let query = render(&template.spec.query, &vars)
                .map_err(|e| MetricOutcome::Error(format!("{what}: spec.query {e}")))?;
            let address = provider.address.clone().filter(|a| !a.is_empty());
            // Only a Prometheus template falls back to the Canary's or the controller's
            // Prometheus; every other provider has its own default address or needs one (as in
            // Flagger), which its constructor says.
            let address = if kind == defaults::METRIC_PROVIDER_TYPE {
                address.or(default_address).ok_or_else(|| {
                    MetricOutcome::Error(format!(
                        "{what} has no spec.provider.address, and neither the Canary's spec.metricsServer nor the controller's --metrics-server is set"
                    ))
                })?
            } else {
                address.unwrap_or_default()
            };
            let mut cfg = ProviderConfig {
                kind: kind.to_string(),
                address,
                headers: provider
                    .headers
                    .iter()
                    .flatten()
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
                    .collect(),
                secret: None,
                insecure_skip_verify: provider.insecure_skip_verify,
                region: provider.region.clone().filter(|r| !r.trim().is_empty()),
            };
            if let Some(secret) = &provider.secret_ref {
                cfg.secret = Some(self.secret(&tns, &secret.name, &what).await?);
            }
            return Ok((cfg, query, window));
        }
        let observer = Observer::for_provider(
            canary.spec.provider.as_deref().unwrap_or_default(),
            self.settings.gateway_metrics,
        );
        let query = match m.query.as_deref().filter(|q| !q.trim().is_empty()) {
            Some(q) => render(q, &vars),
            None => {
                let builtin = observer.query(&m.name).ok_or_else(|| {
                    MetricOutcome::Error(format!(
                        "{field}: {:?} is not a builtin metric ({}, {}); reference a MetricTemplate with templateRef",
                        m.name,
                        builtin::SUCCESS_RATE,
                        builtin::DURATION
                    ))
                })?;
                observer.render(&builtin, &vars)
            }
        }
        .map_err(|e| MetricOutcome::Error(format!("{field}.query {e}")))?;
        let address = default_address.ok_or_else(|| {
            MetricOutcome::Error(format!(
                "metric {}: no Prometheus address; set the Canary's spec.metricsServer or the controller's --metrics-server",
                m.name
            ))
        })?;
        Ok((
            ProviderConfig {
                kind: defaults::METRIC_PROVIDER_TYPE.into(),
                address,
                headers: Vec::new(),
                secret: None,
                insecure_skip_verify: false,
                region: None,
            },
            query,
            window,
        ))
    }

    /// Reads the provider's Secret; the provider picks the keys it knows, as Flagger names them
    /// (for Prometheus: `address`, `token` or `username` and `password`, and `ca.crt`; for
    /// Datadog: `datadog_api_key` and `datadog_application_key`; …).
    async fn secret(&self, ns: &str, name: &str, what: &str) -> Result<SecretData, MetricOutcome> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let secret = match api.get_opt(name).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(MetricOutcome::Error(format!(
                    "{what}: spec.provider.secretRef names Secret {ns}/{name}, which does not exist"
                )));
            }
            Err(e) => {
                return Err(MetricOutcome::Error(format!(
                    "{what}: cannot read Secret {ns}/{name}: {e}"
                )));
            }
        };
        Ok(SecretData {
            name: format!("{ns}/{name}"),
            data: secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
        })
    }
}
