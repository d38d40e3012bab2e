//! A request made with `kubectl fledge` (`.status.request`), handled exactly once: refused with
//! the reason when it does not fit (see [`crate::requests::fits`]), otherwise carried out.

use fledge_api::{CanaryPhase, OperatorRequest, RequestAction, RequestOutcome};

use crate::ctx::Cx;
use crate::observe::TargetObservation;
use crate::requests::{REJECTED_REASON, event_reason, fits};

use super::revision::{self, Change};
use super::{promote, rollback};

/// What the lifecycle does after a request was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum After {
    /// The request decided this reconcile (promotion or rollback started).
    Done,
    /// Go on with the usual decision (the request only changed the status).
    Continue,
}

/// Handles `request` with the spec valid, the target present and the primary present (once
/// initialized).
pub(super) fn apply(cx: &mut Cx, target: &TargetObservation, request: OperatorRequest) -> After {
    if let Err(why) = fits(cx.spec, &cx.status, &request) {
        reject(cx, request, &why);
        return After::Continue;
    }
    let who = request.who().to_string();
    let name = cx.target_name();
    match request.action {
        RequestAction::Promote => {
            if revision::detect(&cx.status, target) != Change::None {
                let why = "a newer revision replaced the one under test; its analysis restarts";
                reject(cx, request, why);
                return After::Continue;
            }
            accept(cx, request, "skipping the remaining analysis".into());
            cx.status.paused = None;
            let message = format!(
                "Promotion requested by {who}: copying {name} template spec to {name}-primary"
            );
            promote::begin(cx, message);
            After::Done
        }
        RequestAction::Abort => {
            accept(cx, request, "rolling back".into());
            cx.status.paused = None;
            if cx.status.phase == CanaryPhase::Waiting {
                // The waiting revision becomes the one rolled back, so it does not start later.
                super::begin_revision(cx, target);
            }
            rollback::run(cx, format!("aborted by {who}"));
            After::Done
        }
        RequestAction::Retry => {
            if revision::detect(&cx.status, target) != Change::None {
                let why = "the target changed since the failure; its new revision rolls out \
                           on its own";
                reject(cx, request, why);
                return After::Continue;
            }
            accept(cx, request, "rolling the revision out again".into());
            cx.status.paused = None;
            // Forgetting the failed revision makes it new again: the usual start follows (rollout
            // slot, confirm-rollout gate, counters reset).
            cx.status.last_applied_spec = None;
            cx.status.tracked_configs = None;
            After::Continue
        }
        RequestAction::Pause => {
            accept(cx, request.clone(), "nothing moves until resumed".into());
            cx.status.paused = Some(Box::new(request));
            After::Continue
        }
        RequestAction::Resume => {
            accept(cx, request, "carrying on".into());
            cx.status.paused = None;
            After::Continue
        }
        RequestAction::Approve => {
            let gate = request.gate.map(|g| g.as_str()).unwrap_or_default();
            accept(cx, request.clone(), format!("the {gate} gate opens once"));
            cx.rollout_mut().approvals.push(request);
            After::Continue
        }
    }
}

/// Refuses `request`: recorded in `lastRequest` with the reason, and a warning Event.
pub(super) fn reject(cx: &mut Cx, request: OperatorRequest, why: &str) {
    let message = format!(
        "{} requested by {} refused: {why}",
        request.describe(),
        request.who()
    );
    cx.event(true, REJECTED_REASON, message);
    record(cx, request, false, why.to_string());
}

fn accept(cx: &mut Cx, request: OperatorRequest, what: String) {
    let message = format!(
        "{} requested by {}: {what}",
        request.describe(),
        request.who()
    );
    cx.event(false, event_reason(request.action), message);
    record(cx, request, true, what);
}

fn record(cx: &mut Cx, request: OperatorRequest, accepted: bool, message: String) {
    let handled_at = Some(cx.now_time());
    cx.status.last_request = Some(Box::new(RequestOutcome {
        request,
        accepted,
        message,
        handled_at,
    }));
}

/// For the ledger record of a promotion: who asked for it with `kubectl fledge promote`, when
/// the rollout ending now was promoted on request.
pub(super) fn promoted_by(cx: &Cx) -> Option<String> {
    let last = cx.status.last_request.as_ref()?;
    let started = cx.status.rollout.as_ref()?.start_time.as_ref()?;
    let handled = last.handled_at.as_ref()?;
    (last.accepted && last.request.action == RequestAction::Promote && handled.0 >= started.0).then(
        || {
            format!(
                "promoted on request by {}, skipping the remaining analysis",
                last.request.who()
            )
        },
    )
}
