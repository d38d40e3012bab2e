//! Metric analysis. No metrics provider is wired in this build yet: every declared metric is
//! reported as a failed check with that reason, so a rollout can never pass on silence.

use fledge_api::Canary;
use fledge_core::{MetricOutcome, MetricResult};

/// Runs the metric checks of a Canary.
pub async fn run_metrics(canary: &Canary) -> Vec<MetricResult> {
    canary
        .spec
        .analysis
        .as_ref()
        .and_then(|a| a.metrics.as_ref())
        .into_iter()
        .flatten()
        .map(|m| MetricResult {
            name: m.name.clone(),
            outcome: MetricOutcome::ProviderUnreachable(
                "metrics provider unreachable: no metrics provider is configured in this build"
                    .into(),
            ),
        })
        .collect()
}
