//! The service's Prometheus metrics, served on `/metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::Observer;
use crate::report::ErrorKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    canary: String,
    target: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    canary: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    canary: String,
    target: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    canary: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    path: String,
    code: String,
}

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<TargetLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    jobs_running: Gauge,
    jobs: Family<JobLabels, Counter>,
    webhooks: Family<WebhookLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("fledge_loadgen");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered by the targets of load jobs, by canary, target and status code",
            requests.clone(),
        );
        let latency = Family::<TargetLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Latency of the requests of load jobs, from the time each was due",
            latency.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "request_errors",
            "Requests of load jobs without an answer, by kind",
            errors.clone(),
        );
        let jobs_running = Gauge::default();
        registry.register(
            "jobs_running",
            "Load jobs running now",
            jobs_running.clone(),
        );
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            "jobs",
            "Load jobs ended, by canary and result (completed, cancelled, failed)",
            jobs.clone(),
        );
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhooks",
            "Calls to the service, by route and status code",
            webhooks.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            errors,
            jobs_running,
            jobs,
            webhooks,
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn webhook(&self, path: &str, code: u16) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                path: path.to_string(),
                code: code.to_string(),
            })
            .inc();
    }

    pub(crate) fn job_started(&self) {
        self.jobs_running.inc();
    }

    pub(crate) fn job_ended(&self, canary: &str, result: &str) {
        self.jobs_running.dec();
        self.jobs
            .get_or_create(&JobLabels {
                canary: canary.to_string(),
                result: result.to_string(),
            })
            .inc();
    }
}

/// Feeds one job's requests into the metrics.
pub(crate) struct JobObserver {
    pub metrics: std::sync::Arc<Metrics>,
    pub canary: String,
    /// The label of each target of the plan, by index.
    pub targets: Vec<String>,
}

impl Observer for JobObserver {
    fn observe(&self, target: usize, result: Result<u16, ErrorKind>, latency: Duration) {
        let target = self.targets.get(target).cloned().unwrap_or_default();
        match result {
            Ok(code) => {
                self.metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        canary: self.canary.clone(),
                        target: target.clone(),
                        code: code.to_string(),
                    })
                    .inc();
                self.metrics
                    .latency
                    .get_or_create(&TargetLabels {
                        canary: self.canary.clone(),
                        target,
                    })
                    .observe(latency.as_secs_f64());
            }
            Err(kind) => {
                self.metrics
                    .errors
                    .get_or_create(&ErrorLabels {
                        canary: self.canary.clone(),
                        target,
                        kind: kind.as_str().to_string(),
                    })
                    .inc();
            }
        }
    }
}
