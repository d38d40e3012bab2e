//! The Canary's conditions: `Promoted` (as in Flagger), and fledge's `SpecValid`, `Ready`,
//! `ChecksPassing` and `GitSynced`.

use fledge_api::{CanaryCondition, CanaryPhase, CanaryStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Type of Flagger's condition that follows the phase.
pub const PROMOTED: &str = "Promoted";
/// Type of the condition saying whether the spec passed validation.
pub const SPEC_VALID: &str = "SpecValid";
/// Type of the condition saying whether the engine can act (spec valid, target and primary
/// present).
pub const READY: &str = "Ready";
/// Type of the condition saying whether `spec.suspend` halts the Canary (set once it has been
/// suspended; it remembers the halt so that the resume is reported once).
pub const SUSPENDED: &str = "Suspended";
/// Type of the condition saying whether the last analysis step's checks (metrics and
/// `rollout` webhooks) passed, and if not, why.
pub const CHECKS_PASSING: &str = "ChecksPassing";
/// Type of the condition saying whether every ledger record and revert of a Canary with
/// `spec.gitops` reached Git (`Synced`, `Queued`, or why writing fails).
pub const GIT_SYNCED: &str = "GitSynced";

/// Sets condition `type_` and returns whether its status, reason or message changed. The
/// transition time moves only when the status changes; the update time when anything does.
pub fn set(
    status: &mut CanaryStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let now = Some(Time(now));
    match conditions.iter_mut().find(|c| c.r#type == type_) {
        Some(c) => {
            let same_status = c.status == value;
            let same = same_status
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message);
            if same {
                return false;
            }
            if !same_status {
                c.last_transition_time = now.clone();
            }
            c.status = value.to_string();
            c.reason = Some(reason.to_string());
            c.message = Some(message.to_string());
            c.last_update_time = now;
            true
        }
        None => {
            conditions.push(CanaryCondition {
                r#type: type_.to_string(),
                status: value.to_string(),
                last_update_time: now.clone(),
                last_transition_time: now,
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
            });
            true
        }
    }
}

/// The condition `type_`, if set.
pub fn get<'s>(status: &'s CanaryStatus, type_: &str) -> Option<&'s CanaryCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.r#type == type_)
}

/// Sets the `Promoted` condition for `phase`, with Flagger's statuses and messages.
pub(crate) fn set_promoted(status: &mut CanaryStatus, phase: CanaryPhase, now: Timestamp) {
    let (value, message) = match phase {
        CanaryPhase::Unknown | CanaryPhase::Initializing => (
            "Unknown",
            "New Deployment detected, starting initialization.",
        ),
        CanaryPhase::Initialized => ("True", "Deployment initialization completed."),
        CanaryPhase::Waiting => ("Unknown", "Waiting for approval."),
        CanaryPhase::Progressing => (
            "Unknown",
            "New revision detected, starting canary analysis.",
        ),
        CanaryPhase::WaitingPromotion => ("Unknown", "Waiting for approval."),
        CanaryPhase::Promoting => (
            "Unknown",
            "Canary analysis completed, starting primary rolling update.",
        ),
        CanaryPhase::Finalising => (
            "Unknown",
            "Canary analysis completed, routing all traffic to primary.",
        ),
        CanaryPhase::Succeeded => (
            "True",
            "Canary analysis completed successfully, promotion finished.",
        ),
        CanaryPhase::Failed => (
            "False",
            "Canary analysis failed, Deployment scaled to zero.",
        ),
        CanaryPhase::Terminating => ("Unknown", "Canary is being deleted."),
        CanaryPhase::Terminated => ("Unknown", "Canary deleted."),
    };
    let reason = match phase {
        CanaryPhase::Unknown => "Initializing",
        p => p.as_str(),
    };
    set(status, PROMOTED, value, reason, message, now);
}
