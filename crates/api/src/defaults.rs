//! Every default of the fledge API, in one place. Field docs in [`crate::canary`] name these
//! values so that `kubectl explain` shows them.

/// `spec.provider` when none is set.
pub const PROVIDER: &str = "gatewayapi:v1";
/// `spec.progressDeadlineSeconds` when none is set.
pub const PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// `spec.analysis.interval` when none is set.
pub const ANALYSIS_INTERVAL: &str = "1m";
/// `spec.analysis.threshold` when none is set.
pub const THRESHOLD: i32 = 1;
/// `spec.analysis.maxWeight` when none is set.
pub const MAX_WEIGHT: i32 = 100;
/// `spec.analysis.primaryReadyThreshold` when none is set (percent of replicas).
pub const PRIMARY_READY_THRESHOLD: i32 = 100;
/// `spec.analysis.canaryReadyThreshold` when none is set (percent of replicas).
pub const CANARY_READY_THRESHOLD: i32 = 100;
/// `spec.analysis.mirrorWeight` when mirroring and none is set (percent of requests mirrored).
pub const MIRROR_WEIGHT: i32 = 100;
/// `spec.analysis.webhooks[].timeout` when none is set.
pub const WEBHOOK_TIMEOUT: &str = "10s";
/// `spec.analysis.webhooks[].retries` when none is set (no retry).
pub const WEBHOOK_RETRIES: i32 = 0;
/// `spec.analysis.metrics[].interval` when none is set: the analysis interval.
pub const METRIC_INTERVAL: &str = ANALYSIS_INTERVAL;
/// `spec.analysis.sessionAffinity.maxAge` when none is set (seconds).
pub const SESSION_AFFINITY_MAX_AGE: i32 = 86400;
/// `spec.analysis.alerts[].severity` when none is set.
pub const ALERT_SEVERITY: &str = "info";
/// `spec.service.portName` when none is set.
pub const SERVICE_PORT_NAME: &str = "http";
/// `spec.targetRef.kind` when none is set.
pub const TARGET_KIND: &str = "Deployment";
/// `MetricTemplate.spec.provider.type` when none is set.
pub const METRIC_PROVIDER_TYPE: &str = "prometheus";
