//! The fledge custom resources (`fledge.dev/v1beta1`): [`Canary`], [`MetricTemplate`] and
//! [`AlertProvider`].
//!
//! Field names and meanings follow Flagger's `flagger.app/v1beta1` API so that a Flagger user
//! moves over by changing `apiVersion` alone. fledge extends the API with new fields, never by
//! renaming. Every default lives in [`defaults`] and is documented on its field.
//!
//! Every type with optional fields is `#[skip_serializing_none]` (above its `derive`): an
//! unset field is left out when written, never sent as `null`.
//!
//! This crate has no Kubernetes client and no runtime: it is shared by the pure engine
//! (`fledge-core`), the controller and the tools.
#![forbid(unsafe_code)]

pub mod alert_provider;
pub mod canary;
pub mod cel;
pub mod defaults;
pub mod duration;
pub mod gitops;
pub mod image;
pub mod judge;
pub mod metric_template;
mod request;
pub mod statefulset;
mod status;
pub mod template;
pub mod validate;

pub use alert_provider::{AlertProvider, AlertProviderSpec};
pub use canary::*;
pub use duration::{DurationError, parse_duration};
pub use image::{ImageRef, ImageRefError};
pub use judge::{
    CanaryJudge, EffectMeasureName, EffectSizeSpec, JudgeGroup, JudgementRecord, MetricJudge,
    ScoreThresholds, baseline_name,
};
pub use metric_template::{MetricTemplate, MetricTemplateSpec};
pub use request::{CheckRecord, Gate, OperatorRequest, RequestAction, RequestOutcome};
pub use statefulset::step_replicas_percent;

/// The API group of every fledge resource.
pub const GROUP: &str = "fledge.dev";
/// The API version of every fledge resource.
pub const VERSION: &str = "v1beta1";
/// `apiVersion` of fledge resources.
pub const API_VERSION: &str = "fledge.dev/v1beta1";
/// `apiVersion` of Flagger resources, accepted by `fledge validate` for migration.
pub const FLAGGER_API_VERSION: &str = "flagger.app/v1beta1";

/// `apiVersion` of a Knative Service, the target of the `knative` provider.
pub const KNATIVE_API_VERSION: &str = "serving.knative.dev/v1";

/// The annotation of a Knative Service that names its promoted Revision, the one the `knative`
/// provider sends the primary's share of traffic to.
pub const KNATIVE_PRIMARY_REVISION: &str = "fledge.dev/primary-revision";

/// Flagger's annotation for the same, read once when fledge takes over a Knative Service from
/// Flagger.
pub const FLAGGER_KNATIVE_PRIMARY_REVISION: &str = "flagger.app/primary-revision";

/// The name of the primary copy of a workload, Service or config: `<name>-primary`.
pub fn primary_name(name: &str) -> String {
    format!("{name}-primary")
}
