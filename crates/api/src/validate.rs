//! Validation beyond the schema: pure functions that return every problem at once, each with
//! the path of the field it concerns.

use crate::{AlertProviderSpec, CanarySpec, MetricTemplateSpec};

/// One problem with a spec: which field, and what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the field, e.g. `spec.analysis.stepWeights[2]`.
    pub field: String,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem of a Canary spec.
pub fn validate_canary_spec(_spec: &CanarySpec) -> Vec<Problem> {
    Vec::new()
}

/// Every problem of a MetricTemplate spec.
pub fn validate_metric_template_spec(_spec: &MetricTemplateSpec) -> Vec<Problem> {
    Vec::new()
}

/// Every problem of an AlertProvider spec.
pub fn validate_alert_provider_spec(_spec: &AlertProviderSpec) -> Vec<Problem> {
    Vec::new()
}
