//! fledge extension: requests people make with `kubectl fledge` (promote, abort, retry, pause,
//! resume, approve), and what became of them.
//!
//! A request lives in the status subresource (`.status.request`), never in the spec: GitOps tools
//! (Flux, Argo CD) apply and compare the spec, so a request there would be reverted or flagged as
//! drift, while the status is the controller's and theirs to ignore. Writing it needs `patch` on
//! `canaries/status`, a permission separate from editing the Canary, so RBAC decides who may steer
//! rollouts. The engine consumes each request exactly once: it clears `.status.request` in the same
//! status write that records the outcome in `.status.lastRequest`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::HookType;

/// What a person asks the controller to do.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RequestAction {
    /// Finish the rollout in flight now: skip the remaining analysis and promote.
    Promote,
    /// Roll the rollout in flight (or the revision waiting to start) back now.
    Abort,
    /// Roll out the revision that failed again, without a new version.
    Retry,
    /// Hold the Canary where it is: no analysis step, no traffic change, no new rollout.
    Pause,
    /// Undo a pause.
    Resume,
    /// Open a manual gate (`confirm-*` webhooks) once.
    Approve,
}

impl RequestAction {
    /// Every action.
    pub const ALL: [RequestAction; 6] = [
        RequestAction::Promote,
        RequestAction::Abort,
        RequestAction::Retry,
        RequestAction::Pause,
        RequestAction::Resume,
        RequestAction::Approve,
    ];

    /// The word used on the command line and in `.status.request.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestAction::Promote => "promote",
            RequestAction::Abort => "abort",
            RequestAction::Retry => "retry",
            RequestAction::Pause => "pause",
            RequestAction::Resume => "resume",
            RequestAction::Approve => "approve",
        }
    }
}

impl std::fmt::Display for RequestAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A manual gate a person can open: the `confirm-*` webhook types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    /// Before a new revision starts rolling out.
    ConfirmRollout,
    /// Before each increase of the canary's traffic.
    ConfirmTrafficIncrease,
    /// Before promotion.
    ConfirmPromotion,
}

impl Gate {
    /// Every gate.
    pub const ALL: [Gate; 3] = [
        Gate::ConfirmRollout,
        Gate::ConfirmTrafficIncrease,
        Gate::ConfirmPromotion,
    ];

    /// The webhook type of the gate.
    pub fn hook_type(self) -> HookType {
        match self {
            Gate::ConfirmRollout => HookType::ConfirmRollout,
            Gate::ConfirmTrafficIncrease => HookType::ConfirmTrafficIncrease,
            Gate::ConfirmPromotion => HookType::ConfirmPromotion,
        }
    }

    /// The gate of a webhook type, if it is one.
    pub fn of(hook: HookType) -> Option<Gate> {
        Gate::ALL.into_iter().find(|g| g.hook_type() == hook)
    }

    /// The name, as webhook types are written (`confirm-promotion`).
    pub fn as_str(self) -> &'static str {
        self.hook_type().as_str()
    }

    /// Parses `confirm-rollout`, `confirm-traffic-increase` or `confirm-promotion`.
    pub fn parse(s: &str) -> Option<Gate> {
        Gate::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// fledge extension: one request, as `kubectl fledge` writes it to `.status.request`.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorRequest {
    /// Unique per request; `.status.lastRequest.id` says which request was handled.
    pub id: String,
    /// What is asked.
    pub action: RequestAction,
    /// For `approve`: the gate to open.
    pub gate: Option<Gate>,
    /// Who asked, as the API server authenticated them (`kubectl auth whoami`).
    #[serde(default)]
    pub user: String,
    /// When it was asked.
    pub requested_at: Option<Time>,
}

impl OperatorRequest {
    /// `promote`, or `approve confirm-promotion`, for messages.
    pub fn describe(&self) -> String {
        match self.gate {
            Some(g) => format!("{} {g}", self.action),
            None => self.action.to_string(),
        }
    }

    /// Who asked, or `someone` when the name is missing.
    pub fn who(&self) -> &str {
        if self.user.is_empty() {
            "someone"
        } else {
            &self.user
        }
    }
}

/// fledge extension: what the controller did with the last request it took.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestOutcome {
    /// The request.
    pub request: OperatorRequest,
    /// Whether it was carried out.
    pub accepted: bool,
    /// What was done, or why not.
    pub message: String,
    /// When the controller handled it.
    pub handled_at: Option<Time>,
}

/// fledge extension: the last answer of one gating webhook, kept for people (`kubectl fledge get
/// NAME`; metric results are in `status.rollout.metrics`).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckRecord {
    /// The webhook type (`pre-rollout`, `rollout`, `confirm-promotion`, ...).
    pub kind: String,
    /// The webhook's `name`.
    pub name: String,
    /// Whether it passed (for a gate: open).
    pub passed: bool,
    /// What the webhook answered, or why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it was checked.
    pub at: Option<Time>,
    /// The webhook runs in dry-run mode: its answer is reported, never counted.
    pub dry_run: Option<bool>,
}
