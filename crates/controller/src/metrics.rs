//! The controller's Prometheus metrics, served on `/metrics`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fledge_api::{Canary, CanaryPhase, CanaryStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabels {
    namespace: Arc<str>,
    name: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertFailureLabels {
    provider: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    namespace: Arc<str>,
    name: Arc<str>,
    result: &'static str,
}

/// Flagger's labels of a Canary: `name` is the target's name, as Flagger records it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlaggerCanaryLabels {
    name: Arc<str>,
    namespace: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlaggerInfoLabels {
    version: String,
    mesh_provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlaggerNamespaceLabels {
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlaggerWeightLabels {
    workload: Arc<str>,
    namespace: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlaggerAnalysisLabels {
    name: Arc<str>,
    namespace: Arc<str>,
    metric: Arc<str>,
}

/// The label values of the per-Canary series, each held once and shared by every series that
/// carries it (a Canary's namespace and name are in about ten series, its namespace in every
/// Canary's of that namespace): a series' labels are reference counts, not copies.
#[derive(Default)]
struct Strings {
    /// The values, and the size at which the next new one first drops those no series holds.
    held: Mutex<(HashSet<Arc<str>>, usize)>,
}

impl Strings {
    /// The shared value equal to `s`.
    fn get(&self, s: &str) -> Arc<str> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let (values, prune_at) = &mut *held;
        if let Some(v) = values.get(s) {
            return v.clone();
        }
        if values.len() >= *prune_at {
            values.retain(|v| Arc::strong_count(v) > 1);
            *prune_at = (values.len() * 2).max(1024);
        }
        let v: Arc<str> = Arc::from(s);
        values.insert(v.clone());
        v
    }
}

/// The buckets of Flagger's `flagger_canary_duration_seconds` (Prometheus' default buckets).
const FLAGGER_DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Flagger's metrics, with Flagger's names, types, labels and meanings, so that dashboards and
/// alert rules written for Flagger keep working.
struct FlaggerMetrics {
    info: Family<FlaggerInfoLabels, Gauge>,
    total: Family<FlaggerNamespaceLabels, Gauge>,
    status: Family<FlaggerCanaryLabels, Gauge>,
    weight: Family<FlaggerWeightLabels, Gauge>,
    duration: Family<FlaggerCanaryLabels, Histogram>,
    analysis: Family<FlaggerAnalysisLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl FlaggerMetrics {
    fn register(registry: &mut Registry) -> Self {
        let info = Family::default();
        registry.register(
            "info",
            "Flagger version and mesh provider information",
            Family::clone(&info),
        );
        let total = Family::default();
        registry.register(
            "canary_total",
            "Total number of canary object",
            Family::clone(&total),
        );
        let status = Family::default();
        registry.register(
            "canary_status",
            "Last canary analysis result",
            Family::clone(&status),
        );
        let weight = Family::default();
        registry.register(
            "canary_weight",
            "The virtual service destination weight current value",
            Family::clone(&weight),
        );
        let duration = Family::<FlaggerCanaryLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(FLAGGER_DURATION_BUCKETS)
        });
        registry.register(
            "canary_duration_seconds",
            "Seconds spent performing canary analysis.",
            duration.clone(),
        );
        let analysis = Family::default();
        registry.register(
            "canary_metric_analysis",
            "Last canary analysis result per metric",
            Family::clone(&analysis),
        );
        FlaggerMetrics {
            info,
            total,
            status,
            weight,
            duration,
            analysis,
        }
    }

    fn labels(strings: &Strings, c: &Canary) -> FlaggerCanaryLabels {
        FlaggerCanaryLabels {
            name: strings.get(&c.spec.target_ref.name),
            namespace: strings.get(c.metadata.namespace.as_deref().unwrap_or_default()),
        }
    }

    /// The labels of the two weight series of `c`: its primary's and its target's.
    fn weight_labels(strings: &Strings, c: &Canary) -> [FlaggerWeightLabels; 2] {
        let FlaggerCanaryLabels { name, namespace } = Self::labels(strings, c);
        [
            FlaggerWeightLabels {
                workload: strings.get(&format!("{name}-primary")),
                namespace: namespace.clone(),
            },
            FlaggerWeightLabels {
                workload: name,
                namespace,
            },
        ]
    }

    fn set_weight(&self, strings: &Strings, c: &Canary, canary_weight: i32) {
        let [primary, target] = Self::weight_labels(strings, c);
        let canary_weight = i64::from(canary_weight.clamp(0, 100));
        self.weight.get_or_create(&primary).set(100 - canary_weight);
        self.weight.get_or_create(&target).set(canary_weight);
    }
}

/// Every metric of the controller.
pub struct Metrics {
    registry: Registry,
    flagger: FlaggerMetrics,
    status: Family<CanaryLabels, Gauge>,
    weight: Family<CanaryLabels, Gauge>,
    failed_checks: Family<CanaryLabels, Gauge>,
    rollouts: Family<ResultLabels, Counter>,
    duration: Family<CanaryLabels, Histogram>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_seconds: Histogram,
    kube_requests: Family<VerbLabels, Counter>,
    lead_time: Histogram,
    time_to_restore: Histogram,
    git_queue_depth: Gauge,
    git_queue_oldest: Gauge<f64, std::sync::atomic::AtomicU64>,
    step_lateness: Histogram,
    alerts_sent: Family<AlertLabels, Counter>,
    alerts_failed: Family<AlertFailureLabels, Counter>,
    /// Namespaces `flagger_canary_total` has a series for.
    known_namespaces: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The per-Canary series' label values.
    strings: Strings,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let flagger = FlaggerMetrics::register(root.sub_registry_with_prefix("flagger"));
        let registry = root.sub_registry_with_prefix("fledge");
        let status = Family::<CanaryLabels, Gauge>::default();
        registry.register(
            "canary_status",
            "Phase of each Canary: 0 initializing, 1 progressing, 2 succeeded, 3 failed",
            status.clone(),
        );
        let weight = Family::<CanaryLabels, Gauge>::default();
        registry.register(
            "canary_weight",
            "Percent of traffic routed to the canary",
            weight.clone(),
        );
        let failed_checks = Family::<CanaryLabels, Gauge>::default();
        registry.register(
            "canary_failed_checks",
            "Failed checks of the rollout in progress",
            failed_checks.clone(),
        );
        let rollouts = Family::<ResultLabels, Counter>::default();
        registry.register(
            "rollouts",
            "Rollouts that ended, by result (promoted, rolled_back)",
            rollouts.clone(),
        );
        let duration = Family::<CanaryLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(10.0, 2.0, 12))
        });
        registry.register(
            "rollout_duration_seconds",
            "Time from a new revision to its promotion or rollback",
            duration.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconcile errors by kind",
            reconcile_errors.clone(),
        );
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_seconds.clone(),
        );
        let kube_requests = Family::<VerbLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Requests the controller sent to the Kubernetes API server, by HTTP method",
            kube_requests.clone(),
        );
        let step_lateness = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "step_lateness_seconds",
            "How late each analysis step ran against its schedule (last step + interval)",
            step_lateness.clone(),
        );
        let alerts_sent = Family::<AlertLabels, Counter>::default();
        registry.register(
            "alerts_sent",
            "Chat alerts delivered, by provider type",
            alerts_sent.clone(),
        );
        let alerts_failed = Family::<AlertFailureLabels, Counter>::default();
        registry.register(
            "alerts_failed",
            "Chat alerts not delivered, by provider type and reason (timeout, connect, \
             rate_limited, server_error, client_error, queue_full, invalid_provider, other)",
            alerts_failed.clone(),
        );
        let git_queue_depth = Gauge::default();
        registry.register(
            "git_queue_depth",
            "Ledger records and reverts waiting to be written to Git",
            git_queue_depth.clone(),
        );
        let git_queue_oldest = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "git_queue_oldest_seconds",
            "Age of the oldest record waiting to be written to Git",
            git_queue_oldest.clone(),
        );
        let lead_time = Histogram::new(exponential_buckets(60.0, 4.0, 10));
        registry.register(
            "dora_lead_time_seconds",
            "DORA lead time for changes: from the source commit that introduced a revision to the end of its promotion (from the Git ledger)",
            lead_time.clone(),
        );
        let time_to_restore = Histogram::new(exponential_buckets(10.0, 4.0, 10));
        registry.register(
            "dora_time_to_restore_seconds",
            "DORA time to restore: from the first failed check of a rollout to the end of its rollback",
            time_to_restore.clone(),
        );
        Metrics {
            registry: root,
            flagger,
            lead_time,
            time_to_restore,
            alerts_sent,
            alerts_failed,
            git_queue_depth,
            git_queue_oldest,
            kube_requests,
            step_lateness,
            status,
            weight,
            failed_checks,
            rollouts,
            duration,
            reconcile_errors,
            reconcile_seconds,
            known_namespaces: Default::default(),
            strings: Strings::default(),
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn labels(&self, c: &Canary) -> CanaryLabels {
        CanaryLabels {
            namespace: self
                .strings
                .get(c.metadata.namespace.as_deref().unwrap_or_default()),
            name: self
                .strings
                .get(c.metadata.name.as_deref().unwrap_or_default()),
        }
    }

    /// Counts a reconcile error of `kind`.
    pub fn reconcile_error(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { kind: kind.into() })
            .inc();
    }

    /// Records how long a reconcile of `c` took (in its own series unless it is being deleted,
    /// when [`Metrics::forget`] drops them).
    pub fn reconcile_duration(&self, c: &Canary, d: Duration) {
        self.reconcile_seconds.observe(d.as_secs_f64());
        if c.metadata.deletion_timestamp.is_some() {
            return;
        }
        self.flagger
            .duration
            .get_or_create(&FlaggerMetrics::labels(&self.strings, c))
            .observe(d.as_secs_f64());
    }

    /// Drops the series of a Canary that is gone, fledge's and Flagger's, so that a cluster
    /// whose Canaries come and go neither shows them nor keeps them in memory.
    pub fn forget(&self, c: &Canary) {
        let l = self.labels(c);
        for family in [&self.status, &self.weight, &self.failed_checks] {
            family.remove(&l);
        }
        self.duration.remove(&l);
        for result in ["promoted", "rolled_back"] {
            self.rollouts.remove(&ResultLabels {
                namespace: l.namespace.clone(),
                name: l.name.clone(),
                result,
            });
        }
        let fl = FlaggerMetrics::labels(&self.strings, c);
        self.flagger.status.remove(&fl);
        self.flagger.duration.remove(&fl);
        for labels in FlaggerMetrics::weight_labels(&self.strings, c) {
            self.flagger.weight.remove(&labels);
        }
        let in_spec = c
            .spec
            .analysis
            .iter()
            .flat_map(|a| a.metrics.iter().flatten())
            .map(|m| m.name.as_str());
        let in_status = c
            .status
            .iter()
            .flat_map(|s| s.rollout.iter())
            .flat_map(|r| r.metrics.iter())
            .map(|m| m.name.as_str());
        for metric in in_spec.chain(in_status) {
            self.flagger.analysis.remove(&FlaggerAnalysisLabels {
                name: fl.name.clone(),
                namespace: fl.namespace.clone(),
                metric: self.strings.get(metric),
            });
        }
    }

    /// Records the version and the default provider (`flagger_info`).
    pub fn set_info(&self, version: &str, mesh_provider: &str) {
        self.flagger
            .info
            .get_or_create(&FlaggerInfoLabels {
                version: version.into(),
                mesh_provider: mesh_provider.into(),
            })
            .set(1);
    }

    /// Records how many Canaries each namespace has (`flagger_canary_total`); a namespace
    /// recorded before and missing now drops to zero, as Flagger's gauge does.
    pub fn set_totals<'a>(&self, namespaces: impl IntoIterator<Item = &'a str>) {
        let mut counts: std::collections::BTreeMap<&str, i64> = Default::default();
        for ns in namespaces {
            *counts.entry(ns).or_default() += 1;
        }
        let mut known = self
            .known_namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for ns in known.iter() {
            if !counts.contains_key(ns.as_str()) {
                self.flagger
                    .total
                    .get_or_create(&FlaggerNamespaceLabels {
                        namespace: ns.clone(),
                    })
                    .set(0);
            }
        }
        for (ns, n) in counts {
            self.flagger
                .total
                .get_or_create(&FlaggerNamespaceLabels {
                    namespace: ns.to_string(),
                })
                .set(n);
            known.insert(ns.to_string());
        }
    }

    /// Counts a request to the API server.
    pub fn kube_request(&self, method: &str) {
        self.kube_requests
            .get_or_create(&VerbLabels {
                verb: method.to_string(),
            })
            .inc();
    }

    /// Counts a chat alert delivered by a provider of type `provider`.
    pub fn alert_sent(&self, provider: &str) {
        self.alerts_sent
            .get_or_create(&AlertLabels {
                provider: provider.into(),
            })
            .inc();
    }

    /// Counts a chat alert that was not delivered.
    pub fn alert_failed(&self, provider: &str, reason: &str) {
        self.alerts_failed
            .get_or_create(&AlertFailureLabels {
                provider: provider.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Records a DORA lead time (seconds).
    pub fn lead_time(&self, seconds: f64) {
        self.lead_time.observe(seconds.max(0.0));
    }

    /// Records a DORA time to restore (seconds).
    pub fn time_to_restore(&self, seconds: f64) {
        self.time_to_restore.observe(seconds.max(0.0));
    }

    /// Records the Git queue's depth and the age of its oldest record.
    pub fn git_queue(&self, depth: usize, oldest_seconds: f64) {
        self.git_queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.git_queue_oldest.set(oldest_seconds);
    }

    /// Records how late an analysis step ran.
    pub fn step_late(&self, late: Duration) {
        self.step_lateness.observe(late.as_secs_f64());
    }

    /// Records the canary weight just routed.
    pub fn set_weight(&self, c: &Canary, weight: i32) {
        self.weight
            .get_or_create(&self.labels(c))
            .set(i64::from(weight));
        self.flagger.set_weight(&self.strings, c, weight);
    }

    /// Records a status just written; counts a rollout when it ended.
    pub fn observe_status(&self, c: &Canary, new: &CanaryStatus) {
        let l = self.labels(c);
        let code = match new.phase {
            CanaryPhase::Progressing
            | CanaryPhase::WaitingPromotion
            | CanaryPhase::Promoting
            | CanaryPhase::Finalising => 1,
            CanaryPhase::Succeeded => 2,
            CanaryPhase::Failed => 3,
            _ => 0,
        };
        self.status.get_or_create(&l).set(code);
        self.weight
            .get_or_create(&l)
            .set(i64::from(new.canary_weight));
        // Flagger's: 0 running, 1 successful (and every other phase), 2 failed.
        let flagger_code = match new.phase {
            CanaryPhase::Progressing => 0,
            CanaryPhase::Failed => 2,
            _ => 1,
        };
        let fl = FlaggerMetrics::labels(&self.strings, c);
        self.flagger.status.get_or_create(&fl).set(flagger_code);
        self.flagger.set_weight(&self.strings, c, new.canary_weight);
        for m in new.rollout.iter().flat_map(|r| &r.metrics) {
            if let Some(v) = m.value {
                self.flagger
                    .analysis
                    .get_or_create(&FlaggerAnalysisLabels {
                        name: fl.name.clone(),
                        namespace: fl.namespace.clone(),
                        metric: self.strings.get(&m.name),
                    })
                    .set(v);
            }
        }
        self.failed_checks
            .get_or_create(&l)
            .set(i64::from(new.failed_checks));
        let old_phase = c.status.as_ref().map(|s| s.phase);
        let ended = match new.phase {
            CanaryPhase::Succeeded => Some("promoted"),
            CanaryPhase::Failed => Some("rolled_back"),
            _ => None,
        };
        if let Some(result) = ended
            && old_phase != Some(new.phase)
            && old_phase.is_some_and(CanaryPhase::is_rolling_out)
        {
            self.rollouts
                .get_or_create(&ResultLabels {
                    namespace: l.namespace.clone(),
                    name: l.name.clone(),
                    result,
                })
                .inc();
            let started = c
                .status
                .as_ref()
                .and_then(|s| s.rollout.as_ref())
                .and_then(|r| r.start_time.as_ref())
                .map(|t| t.0);
            if let Some(start) = started {
                let secs = jiff::Timestamp::now().duration_since(start).as_secs_f64();
                self.duration.get_or_create(&l).observe(secs.max(0.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_api::{MetricCheck, RolloutProgress};

    fn canary() -> Canary {
        let mut c = Canary::new("podinfo-canary", Default::default());
        c.metadata.namespace = Some("shop".into());
        c.spec.target_ref.name = "podinfo".into();
        c
    }

    /// A rollout at weight 30 whose last check measured `request-success-rate` at 99.5.
    fn progressing_at_30() -> CanaryStatus {
        CanaryStatus {
            phase: CanaryPhase::Progressing,
            canary_weight: 30,
            rollout: Some(RolloutProgress {
                metrics: vec![MetricCheck {
                    name: "request-success-rate".into(),
                    value: Some(99.5),
                    passed: true,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The `# TYPE` of each family, and its sample lines.
    fn family<'a>(text: &'a str, name: &str) -> (Option<&'a str>, Vec<&'a str>) {
        let kind = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# TYPE {name} ")));
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(name))
            .collect();
        (kind, samples)
    }

    /// Every series of a Canary shares one copy of its namespace and name, and a value no
    /// series holds any more is dropped when new ones come.
    #[test]
    fn a_canary_s_label_values_are_held_once() {
        let m = Metrics::new();
        let mut c = canary();
        c.metadata.name = Some("podinfo".into());
        let status = CanaryStatus {
            phase: CanaryPhase::Progressing,
            canary_weight: 10,
            ..Default::default()
        };
        m.observe_status(&c, &status);
        m.reconcile_duration(&c, Duration::from_millis(3));
        m.set_weight(&c, 20);
        let shop = m.strings.get("shop");
        let podinfo = m.strings.get("podinfo");
        // fledge's 3 gauges, Flagger's status, 2 weights and duration (the primary's weight
        // names the workload `podinfo-primary`); and the set's own and the one just taken.
        assert_eq!(Arc::strong_count(&shop), 7 + 2);
        assert_eq!(Arc::strong_count(&podinfo), 6 + 2);
        let before = Arc::strong_count(&shop);
        m.observe_status(&c, &status);
        assert_eq!(
            Arc::strong_count(&shop),
            before,
            "no series added or copied"
        );
        drop((shop, podinfo));

        let unused = Arc::downgrade(&m.strings.get("gone"));
        for i in 0..2048 {
            m.strings.get(&format!("other-{i}"));
        }
        assert!(
            unused.upgrade().is_none(),
            "a value no series holds is dropped"
        );
        assert!(
            Arc::strong_count(&m.strings.get("shop")) > 2,
            "values in series stay"
        );
    }

    /// A Canary that is gone leaves no series behind, fledge's or Flagger's; another Canary's
    /// stay.
    #[test]
    fn a_canary_that_is_gone_leaves_no_series() {
        let m = Metrics::new();
        let c = canary();
        let mut other = canary();
        other.metadata.name = Some("other".into());
        other.spec.target_ref.name = "other".into();
        let rollout = progressing_at_30();
        let ended = CanaryStatus {
            phase: CanaryPhase::Succeeded,
            ..Default::default()
        };
        for c in [&c, &other] {
            m.observe_status(c, &rollout);
            let mut progressing = c.clone();
            progressing.status = Some(rollout.clone());
            m.observe_status(&progressing, &ended);
            m.reconcile_duration(c, Duration::from_millis(3));
        }
        let text = m.encode();
        for series in [
            "name=\"podinfo-canary\"",
            "name=\"podinfo\"",
            "workload=\"podinfo",
        ] {
            assert!(text.contains(series), "{series} before: {text}");
        }
        let mut gone = c.clone();
        gone.status = Some(rollout);
        gone.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        m.forget(&gone);
        m.reconcile_duration(&gone, Duration::from_millis(3));
        let text = m.encode();
        for series in [
            "name=\"podinfo-canary\"",
            "name=\"podinfo\"",
            "workload=\"podinfo",
        ] {
            assert!(!text.contains(series), "{series} after: {text}");
        }
        for series in ["name=\"other\"", "workload=\"other-primary\""] {
            assert!(text.contains(series), "{series} stays: {text}");
        }
        assert_eq!(
            text.matches("name=\"other\"").count(),
            text.lines()
                .filter(|l| !l.starts_with('#') && l.contains("namespace=\"shop\""))
                .filter(|l| !l.contains("workload="))
                .count(),
            "every Canary series left is the other one's"
        );
    }

    #[test]
    fn flaggers_families_have_flaggers_names_types_and_labels() {
        let m = Metrics::new();
        m.set_info("0.1.0", "gatewayapi:v1");
        m.set_totals(["shop", "shop", "web"]);
        let c = canary();
        let status = progressing_at_30();
        m.observe_status(&c, &status);
        m.reconcile_duration(&c, Duration::from_millis(30));
        let text = m.encode();

        let (kind, samples) = family(&text, "flagger_info");
        assert_eq!(kind, Some("gauge"));
        assert_eq!(
            samples,
            ["flagger_info{version=\"0.1.0\",mesh_provider=\"gatewayapi:v1\"} 1"]
        );
        let (kind, samples) = family(&text, "flagger_canary_total");
        assert_eq!(kind, Some("gauge"));
        assert!(samples.contains(&"flagger_canary_total{namespace=\"shop\"} 2"));
        assert!(samples.contains(&"flagger_canary_total{namespace=\"web\"} 1"));
        // `name` is the target's name, as in Flagger; 0 is running.
        let (kind, samples) = family(&text, "flagger_canary_status");
        assert_eq!(kind, Some("gauge"));
        assert_eq!(
            samples,
            ["flagger_canary_status{name=\"podinfo\",namespace=\"shop\"} 0"]
        );
        let (kind, samples) = family(&text, "flagger_canary_weight");
        assert_eq!(kind, Some("gauge"));
        assert!(samples.contains(
            &"flagger_canary_weight{workload=\"podinfo-primary\",namespace=\"shop\"} 70"
        ));
        assert!(
            samples.contains(&"flagger_canary_weight{workload=\"podinfo\",namespace=\"shop\"} 30")
        );
        let (kind, samples) = family(&text, "flagger_canary_duration_seconds");
        assert_eq!(kind, Some("histogram"));
        assert!(samples.contains(
            &"flagger_canary_duration_seconds_bucket{le=\"0.05\",name=\"podinfo\",namespace=\"shop\"} 1"
        ), "{samples:?}");
        assert!(samples.contains(
            &"flagger_canary_duration_seconds_count{name=\"podinfo\",namespace=\"shop\"} 1"
        ));
        let (kind, samples) = family(&text, "flagger_canary_metric_analysis");
        assert_eq!(kind, Some("gauge"));
        assert_eq!(
            samples,
            [
                "flagger_canary_metric_analysis{name=\"podinfo\",namespace=\"shop\",metric=\"request-success-rate\"} 99.5"
            ]
        );
        // fledge's own families keep their names beside Flagger's.
        assert!(text.contains("# TYPE fledge_canary_weight gauge"));
        assert_eq!(text.matches("# EOF").count(), 1);

        // Failed is 2, every other phase 1; a namespace without Canaries drops to 0.
        m.observe_status(
            &c,
            &CanaryStatus {
                phase: CanaryPhase::Failed,
                ..Default::default()
            },
        );
        m.set_totals(["shop"]);
        let text = m.encode();
        assert!(text.contains("flagger_canary_status{name=\"podinfo\",namespace=\"shop\"} 2"));
        assert!(text.contains("flagger_canary_total{namespace=\"web\"} 0"));
        m.observe_status(
            &c,
            &CanaryStatus {
                phase: CanaryPhase::Succeeded,
                ..Default::default()
            },
        );
        assert!(
            m.encode()
                .contains("flagger_canary_status{name=\"podinfo\",namespace=\"shop\"} 1")
        );
    }
}
