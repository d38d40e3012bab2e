//! The status of a Canary: Flagger's fields, plus the bookkeeping fledge needs to resume a
//! rollout exactly where it was after a restart ("fledge extension" fields).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// Phases of a Canary, as in Flagger.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum CanaryPhase {
    /// Not yet seen by the controller.
    #[default]
    #[serde(rename = "")]
    Unknown,
    /// Creating the primary workload and the Services.
    Initializing,
    /// The primary serves all traffic; waiting for a new revision.
    Initialized,
    /// A new revision waits for a gate or a rollout slot.
    Waiting,
    /// A rollout is under analysis.
    Progressing,
    /// Analysis passed; waiting for the `confirm-promotion` gate.
    WaitingPromotion,
    /// Copying the canary's spec to the primary.
    Promoting,
    /// Routing all traffic back to the primary and scaling the canary down.
    Finalising,
    /// The last rollout was promoted.
    Succeeded,
    /// The last rollout was rolled back.
    Failed,
    /// The Canary is being deleted.
    Terminating,
    /// The Canary was deleted and its objects restored.
    Terminated,
}

impl CanaryPhase {
    /// The phase as written in `.status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryPhase::Unknown => "",
            CanaryPhase::Initializing => "Initializing",
            CanaryPhase::Initialized => "Initialized",
            CanaryPhase::Waiting => "Waiting",
            CanaryPhase::Progressing => "Progressing",
            CanaryPhase::WaitingPromotion => "WaitingPromotion",
            CanaryPhase::Promoting => "Promoting",
            CanaryPhase::Finalising => "Finalising",
            CanaryPhase::Succeeded => "Succeeded",
            CanaryPhase::Failed => "Failed",
            CanaryPhase::Terminating => "Terminating",
            CanaryPhase::Terminated => "Terminated",
        }
    }

    /// Whether a rollout is in flight (traffic may be on the canary).
    pub fn is_rolling_out(self) -> bool {
        matches!(
            self,
            CanaryPhase::Progressing
                | CanaryPhase::WaitingPromotion
                | CanaryPhase::Promoting
                | CanaryPhase::Finalising
        )
    }
}

impl std::fmt::Display for CanaryPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The observed state of a Canary. Everything the engine needs to resume lives here.
// The operator's requests, rarely present, are boxed (see `Canary`'s comment).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The phase of the Canary.
    #[serde(default)]
    pub phase: CanaryPhase,
    /// Failed checks in the current rollout.
    #[serde(default)]
    pub failed_checks: i32,
    /// Percent of traffic routed to the canary.
    #[serde(default)]
    pub canary_weight: i32,
    /// Analysis steps done in the current rollout (A/B testing and blue/green).
    #[serde(default)]
    pub iterations: i32,
    /// Checksums of the ConfigMaps and Secrets the target references, by `ConfigMap/name` or
    /// `Secret/name`, as of the revision under test.
    pub tracked_configs: Option<BTreeMap<String, String>>,
    /// Hash of the target's pod template under test (or last seen).
    pub last_applied_spec: Option<String>,
    /// Hash of the pod template last promoted to the primary.
    pub last_promoted_spec: Option<String>,
    /// When the phase last changed.
    pub last_transition_time: Option<Time>,
    /// Session affinity cookie set on canary responses in the current rollout.
    pub session_affinity_cookie: Option<String>,
    /// Session affinity cookie set on primary responses in the current rollout.
    pub primary_session_affinity_cookie: Option<String>,
    /// Cookie of the previous rollout, expired on the next one.
    pub previous_session_affinity_cookie: Option<String>,
    /// Conditions: `Promoted` (as in Flagger), and fledge's `Ready` and `SpecValid`.
    pub conditions: Option<Vec<CanaryCondition>>,

    /// fledge extension: the generation of the spec this status reflects.
    pub observed_generation: Option<i64>,
    /// fledge extension: the tracked ConfigMap and Secret checksums of the revision last promoted
    /// to the primary (what `trackedConfigs` was when `lastPromotedSpec` was set).
    pub last_promoted_configs: Option<BTreeMap<String, String>>,
    /// fledge extension: bookkeeping of the rollout in flight (kept after it ends, for
    /// inspection, until the next one starts).
    pub rollout: Option<RolloutProgress>,
    /// fledge extension: the spec hashes of the revisions promoted to the primary, oldest
    /// first (at most the last 10): a new revision equal to one of them is a rollback to a
    /// known-good version (`spec.gitops.fastRollback`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promoted_revisions: Vec<String>,
    /// fledge extension: set while the Canary initializes from the Git ledger: the last
    /// promoted revision the ledger names, whose images the primary was created with (the
    /// target runs another revision, which is then analysed like any new release).
    pub initialized_from_ledger: Option<LedgerRevision>,

    // ---- kubectl fledge: requests (see `request.rs`) ----
    /// fledge extension: a request made with `kubectl fledge`, waiting for the controller, which
    /// clears it when it records the outcome in `lastRequest`.
    pub request: Option<Box<crate::OperatorRequest>>,
    /// fledge extension: the last request the controller handled, who made it and the outcome.
    pub last_request: Option<Box<crate::RequestOutcome>>,
    /// fledge extension: the accepted `pause` request while the Canary is paused.
    pub paused: Option<Box<crate::OperatorRequest>>,

    // ---- what the controller must remember across restarts ----
    /// fledge extension: when the controller last put back routes changed outside it (a hand
    /// edit or deletion of the routing objects); restores of one Canary are at least 10 s
    /// apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_restored_at: Option<Time>,
    /// fledge extension: the chat alerts sent lately (at most 16, newest last), so that the
    /// same alert is not sent again within an hour, even by a restarted controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_alerts: Vec<SentAlert>,
}

/// A chat alert sent lately, as `status.recentAlerts` remembers it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentAlert {
    /// A digest of what makes two alerts the same: kind, severity, text, revision and rollout.
    pub key: String,
    /// When it was last sent or suppressed as a repeat.
    pub time: Time,
}

/// A promoted revision as the Git ledger records it.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerRevision {
    /// The target's spec hash when it was promoted.
    pub revision: String,
    /// Its container images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// When it was promoted (RFC 3339), as the ledger says.
    pub promoted_at: Option<String>,
}

/// A condition of a Canary.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryCondition {
    /// Type of the condition: `Promoted`, `Ready` or `SpecValid`.
    pub r#type: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When the condition was last updated.
    pub last_update_time: Option<Time>,
    /// When the status last changed.
    pub last_transition_time: Option<Time>,
    /// One-word reason in CamelCase.
    pub reason: Option<String>,
    /// What happened, for people.
    pub message: Option<String>,
}

/// fledge extension: the engine's memory of the rollout in flight (or of the last one), so that a
/// restarted controller neither repeats nor skips a step.
///
/// Every time stored here has whole-second precision (Kubernetes `Time` serializes seconds), so a
/// status read back from the API server equals the status the engine wrote.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutProgress {
    /// When the rollout started (a new revision was detected and the rollout began).
    pub start_time: Option<Time>,
    /// When the engine last acted on the interval clock: an analysis step, a promotion traffic
    /// step, or a poll of the `confirm-rollout` gate while `Waiting`. The next one is due an
    /// interval later; none is due before.
    pub last_step_time: Option<Time>,
    /// Number of analysis steps taken in this rollout (each step advances exactly once).
    #[serde(default)]
    pub step: i32,
    /// Whether the `pre-rollout` webhooks passed for this revision.
    #[serde(default)]
    pub pre_rollout_done: bool,
    /// Whether traffic is mirrored to the canary (blue/green with mirroring, or the mirror step
    /// of a weighted canary with `mirror: true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirrored: bool,
    /// A/B testing: whether requests matching `spec.analysis.match` are routed to the canary.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ab_match: bool,
    /// Since when the workload the engine waits for (the canary during analysis, the target
    /// while terminating) has been seen not ready; compared with `progressDeadlineSeconds`.
    pub unready_since: Option<Time>,
    /// Reasons of the failed checks of this rollout, newest last (at most the last 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// When the first check of this rollout failed (the start of an incident, for the time to
    /// restore).
    pub first_failure_time: Option<Time>,
    /// Analysis steps of this rollout judged without a metric that had no data (`noData:
    /// skip`); at `spec.analysis.inconclusiveLimit` the rollout pauses for a person.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inconclusive_checks: i32,
    /// The last result of each metric of `spec.analysis.metrics`, from the latest analysis
    /// step that ran the metric checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricCheck>,
    /// The statistical judgement of the latest analysis step, with `spec.analysis.judge`.
    pub judgement: Option<crate::JudgementRecord>,
    /// The metric results of this rollout's analysis steps, oldest first (at most the last 20
    /// steps): what the Git ledger records for each iteration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AnalysisRecord>,
    /// `approve` requests accepted for this rollout and not used yet: each opens its gate once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<crate::OperatorRequest>,
    /// The last answer of each gating webhook called in this rollout (`kubectl fledge get`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<crate::CheckRecord>,
    /// The phases this rollout went through, oldest first (at most the last 30): what the
    /// Git ledger records as its transitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<PhaseTransition>,
}

/// fledge extension: a phase a rollout entered.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTransition {
    /// When.
    pub time: Option<Time>,
    /// The phase entered.
    pub phase: CanaryPhase,
    /// Why, in one word (the Event's reason).
    pub reason: String,
    /// The canary's traffic weight then.
    pub canary_weight: i32,
}

/// fledge extension: the result of one metric check.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricCheck {
    /// The metric's `name` in `spec.analysis.metrics`.
    pub name: String,
    /// The value the query gave, when it gave a finite number.
    pub value: Option<f64>,
    /// The smallest passing value, when there is one.
    pub min: Option<f64>,
    /// The largest passing value, when there is one.
    pub max: Option<f64>,
    /// Whether the check passed.
    pub passed: bool,
    /// Why it failed (no data, NaN, provider unreachable, out of range, …).
    pub reason: Option<String>,
    /// The check runs in dry-run mode: reported, never counted as a failed check.
    pub dry_run: Option<bool>,
    /// The query had no data and `noData: skip` left the check out of the step.
    pub inconclusive: Option<bool>,
    /// Statistical judgement: `Pass`, `High`, `Low` or `NoData`.
    pub classification: Option<String>,
    /// Statistical judgement: the baseline's median.
    pub baseline_median: Option<f64>,
    /// Statistical judgement: the canary's median (also in `value`).
    pub canary_median: Option<f64>,
    /// Statistical judgement: the Mann-Whitney U test's two-sided p-value.
    pub p_value: Option<f64>,
}

/// fledge extension: the metric results of one analysis step.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRecord {
    /// The analysis step (`status.rollout.step`) these results belong to.
    pub step: i32,
    /// When the checks ran.
    pub time: Option<Time>,
    /// The canary's traffic weight while the checks ran.
    pub canary_weight: i32,
    /// Each metric's result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricCheck>,
    /// The answers of the `rollout` webhooks called in this step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<crate::CheckRecord>,
    /// The statistical judgement of this step, with `spec.analysis.judge`.
    pub judgement: Option<crate::JudgementRecord>,
}

/// Whether a counter is zero (left out of the serialized status).
fn is_zero(n: &i32) -> bool {
    *n == 0
}
