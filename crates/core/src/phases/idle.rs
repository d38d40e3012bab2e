//! Between rollouts (`Initialized`, `Succeeded`, `Failed`) and before one (`Waiting`): detect a
//! new revision, pass the rollout slot and the `confirm-rollout` gate, and start.

use fledge_api::{CanaryPhase, HookType};

use crate::action::{Action, CanaryScale, LedgerEvent, NotifyKind, Severity};
use crate::checks::Failure;
use crate::conditions;
use crate::ctx::Cx;
use crate::observe::TargetObservation;

use super::promote;
use super::revision::{self, Change};

/// `Initialized`, `Succeeded`, `Failed` or `Waiting`.
pub(super) fn run(cx: &mut Cx, target: &TargetObservation) {
    let change = revision::detect(&cx.status, target);
    if cx.status.last_promoted_spec.is_none() {
        // Initialization failed: only a new revision makes another attempt worthwhile.
        if change == Change::None {
            cx.requeue(cx.interval());
        } else {
            initialize_again(cx, target);
        }
        return;
    }
    match change {
        Change::None => {
            scale_down_after_rollback(cx, target);
            settle(cx);
        }
        Change::BackToPrimary => back_to_primary(cx, target),
        Change::NewRevision if fast_rollback(cx, target) => rollback_to_known_good(cx, target),
        Change::NewRevision => try_start(cx, target),
    }
}

/// Whether the new revision is one promoted before (a revert in Git) and the Canary wants such
/// rollbacks fast (`spec.gitops.fastRollback`, true by default when `spec.gitops` is set).
fn fast_rollback(cx: &Cx, target: &TargetObservation) -> bool {
    cx.spec
        .gitops
        .as_ref()
        .is_some_and(|g| g.fast_rollback != Some(false))
        && cx.status.promoted_revisions.contains(&target.spec_hash)
}

/// A rollback to a revision promoted before is an emergency, not a release: promote it at once,
/// without the rollout slot, gates or analysis, and say so everywhere.
fn rollback_to_known_good(cx: &mut Cx, target: &TargetObservation) {
    super::begin_revision(cx, target);
    let name = cx.target_name();
    let short = super::short(&target.spec_hash);
    let message = format!(
        "Fast rollback: {name} is back to revision {short}, promoted before; promoting it without analysis (spec.gitops.fastRollback)."
    );
    cx.event(true, "FastRollback", message.clone());
    cx.notify(Severity::Warn, NotifyKind::NewRevision, message.clone());
    cx.ledger(LedgerEvent::Started, vec![message.clone()]);
    promote::begin(cx, message);
    cx.requeue(cx.poll());
}

/// A rolled-back target still scaled up: a rollback moves the traffic and writes `Failed` first,
/// and the reconcile after it scales the canary to zero (so does one after a controller stopped
/// in between). A StatefulSet's rollback puts its template back instead ([`Cx::scale_canary`]
/// leaves it alone); Knative scales its Revisions itself.
fn scale_down_after_rollback(cx: &mut Cx, target: &TargetObservation) {
    if cx.status.phase == CanaryPhase::Failed
        && target.readiness.desired > 0
        && !cx.spec.targets_knative()
    {
        cx.scale_canary(CanaryScale::Zero);
    }
}

/// Nothing new. A `Waiting` Canary whose pending revision went away rests again.
fn settle(cx: &mut Cx) {
    if cx.status.phase == CanaryPhase::Waiting {
        let phase = resting_phase(cx);
        let message = format!(
            "The revision of {} waiting to roll out was replaced by the one already applied; \
             nothing to roll out.",
            cx.target_name()
        );
        cx.enter(phase, "RevisionReverted", message);
    }
    cx.requeue(cx.interval());
}

/// The target went back to the revision the primary runs (e.g. after a revert in Git): there is
/// nothing to roll out, only to remember it.
fn back_to_primary(cx: &mut Cx, target: &TargetObservation) {
    cx.status.last_applied_spec = Some(target.spec_hash.clone());
    cx.status.tracked_configs = Some(target.tracked_configs.clone());
    let message = format!(
        "Target {} is back to the {} revision; nothing to roll out.",
        cx.target_name(),
        if cx.statefulset() {
            "promoted"
        } else {
            "primary's"
        }
    );
    if cx.status.phase == CanaryPhase::Waiting {
        cx.enter(CanaryPhase::Initialized, "RevisionReverted", message);
    } else {
        cx.event(false, "RevisionReverted", message);
    }
    cx.requeue(cx.interval());
}

/// The phase a `Waiting` Canary goes back to when its pending revision disappears.
fn resting_phase(cx: &Cx) -> CanaryPhase {
    if cx.status.last_applied_spec == cx.status.last_promoted_spec {
        CanaryPhase::Initialized
    } else {
        CanaryPhase::Failed
    }
}

/// A new revision: wait for a rollout slot, then for the `confirm-rollout` gate, then start.
fn try_start(cx: &mut Cx, target: &TargetObservation) {
    if !crate::slots::admits(&cx.status, &cx.obs.rollout_slots) {
        let message = format!(
            "Halt {} rollout: waiting for a rollout slot (--max-concurrent-rollouts).",
            cx.target_name()
        );
        return wait(
            cx,
            crate::slots::WAITING_FOR_SLOT,
            message,
            false,
            Some(Severity::Info),
        );
    }
    let gated = !cx.spec.webhooks_of(HookType::ConfirmRollout).is_empty();
    if gated
        && cx.status.phase == CanaryPhase::Waiting
        && !cx.approved(HookType::ConfirmRollout)
        && let Some(left) = cx.not_due()
    {
        return cx.requeue(left);
    }
    match cx.gate(HookType::ConfirmRollout) {
        Ok(()) => start(cx, target),
        Err(failures) => {
            let message = format!(
                "Halt {} rollout, waiting for approval: {}",
                cx.target_name(),
                join(&failures)
            );
            // A gate held by `muteAlert` webhooks only says nothing in chat, as in Flagger.
            let alert = failures.iter().any(|f| !f.muted).then_some(Severity::Warn);
            wait(cx, "WaitingForApproval", message, true, alert);
        }
    }
}

/// Stays in (or enters) `Waiting`. `polled`: a gate was just asked, so the interval clock ticks.
/// `alert`: the severity of the chat alert sent on entering, if any.
fn wait(cx: &mut Cx, reason: &str, message: String, polled: bool, alert: Option<Severity>) {
    let now = cx.now_time();
    if cx.status.phase == CanaryPhase::Waiting {
        if polled {
            cx.tick();
            cx.event(false, reason, message.clone());
        }
    } else {
        cx.rollout_mut().last_step_time = polled.then_some(now);
        cx.enter(CanaryPhase::Waiting, reason, message.clone());
        if let Some(severity) = alert {
            cx.notify(severity, NotifyKind::Waiting, message.clone());
        }
    }
    // The condition says what the Canary waits for (a slot or an approval), so that the
    // adapter can queue slot waiters in order and people can see why.
    let at = cx.now;
    conditions::set(
        &mut cx.status,
        conditions::PROMOTED,
        "Unknown",
        reason,
        &message,
        at,
    );
    cx.requeue(cx.interval());
}

/// Starts the rollout of the target's revision.
fn start(cx: &mut Cx, target: &TargetObservation) {
    super::begin_revision(cx, target);
    let name = cx.target_name();
    if cx.spec.skip_analysis {
        promote::begin(
            cx,
            format!("New revision detected! Promoting {name} without analysis (skipAnalysis)."),
        );
        cx.notify(
            Severity::Info,
            NotifyKind::NewRevision,
            format!("New revision detected, promoting {name} without analysis."),
        );
    } else {
        cx.scale_canary(CanaryScale::MatchPrimary);
        if !cx.statefulset() {
            // Scaled up from zero, the canary is not ready yet: its readiness clock starts
            // now, in this same status write, rather than at the next check, which would
            // write the status again only to say so.
            let now = cx.now_time();
            cx.rollout_mut().unready_since = Some(now);
        }
        if cx.statefulset_routed() {
            // The first step's pods move now; the router sends them traffic one interval
            // later, once the Service's endpoints have reached the router.
            cx.tick();
        }
        cx.enter(
            CanaryPhase::Progressing,
            "NewRevision",
            if cx.statefulset() {
                format!("New revision detected! Moving {name} to it pod by pod")
            } else {
                format!("New revision detected! Scaling up {name}")
            },
        );
        cx.notify(
            Severity::Info,
            NotifyKind::NewRevision,
            format!("New revision detected, progressing canary analysis of {name}."),
        );
    }
    cx.ledger(LedgerEvent::Started, Vec::new());
    cx.requeue(cx.poll());
}

/// Initialization failed earlier and the target changed: copy it to the primary and initialize
/// again (nothing was ever promoted, so there is no good revision to protect).
fn initialize_again(cx: &mut Cx, target: &TargetObservation) {
    cx.act(Action::EnsurePrimary);
    cx.act(Action::PromotePrimary {
        revision: target.spec_hash.clone(),
    });
    cx.status.last_applied_spec = Some(target.spec_hash.clone());
    cx.status.tracked_configs = Some(target.tracked_configs.clone());
    let message = format!(
        "New revision of {} detected after a failed initialization, initializing again.",
        cx.target_name()
    );
    cx.enter(CanaryPhase::Initializing, "Initializing", message);
    cx.requeue(cx.poll());
}

/// The messages of `failures`, joined.
pub(super) fn join(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|f| f.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}
