//! The controller's Prometheus metrics, served on `/metrics`.

use std::time::Duration;

use fledge_api::{Canary, CanaryPhase, CanaryStatus};
use kube::ResourceExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabels {
    namespace: String,
    name: String,
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
    namespace: String,
    name: String,
    result: String,
}

/// Every metric of the controller.
pub struct Metrics {
    registry: Registry,
    status: Family<CanaryLabels, Gauge>,
    weight: Family<CanaryLabels, Gauge>,
    failed_checks: Family<CanaryLabels, Gauge>,
    rollouts: Family<ResultLabels, Counter>,
    duration: Family<CanaryLabels, Histogram>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconcile_seconds: Histogram,
    kube_requests: Family<VerbLabels, Counter>,
    git_queue_depth: Gauge,
    git_queue_oldest: Gauge<f64, std::sync::atomic::AtomicU64>,
    step_lateness: Histogram,
    alerts_sent: Family<AlertLabels, Counter>,
    alerts_failed: Family<AlertFailureLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fledge");
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
        Metrics {
            alerts_sent,
            alerts_failed,
            git_queue_depth,
            git_queue_oldest,
            kube_requests,
            step_lateness,
            registry,
            status,
            weight,
            failed_checks,
            rollouts,
            duration,
            reconcile_errors,
            reconcile_seconds,
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn labels(c: &Canary) -> CanaryLabels {
        CanaryLabels {
            namespace: c.namespace().unwrap_or_default(),
            name: c.name_any(),
        }
    }

    /// Counts a reconcile error of `kind`.
    pub fn reconcile_error(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { kind: kind.into() })
            .inc();
    }

    /// Records how long a reconcile took.
    pub fn reconcile_duration(&self, d: Duration) {
        self.reconcile_seconds.observe(d.as_secs_f64());
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
            .get_or_create(&Self::labels(c))
            .set(i64::from(weight));
    }

    /// Records a status just written; counts a rollout when it ended.
    pub fn observe_status(&self, c: &Canary, new: &CanaryStatus) {
        let l = Self::labels(c);
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
                    result: result.into(),
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
