//! Requests people make with `kubectl fledge` (`.status.request`): which fit the Canary as it is.
//!
//! The engine takes the pending request at the start of every decision and handles it exactly
//! once: it fits and is carried out, or it does not and is refused with the reason; either way
//! `.status.request` is cleared and `.status.lastRequest` says what became of it. The plugin
//! asks [`fits`] before writing, so that a request that cannot work is refused at once with the
//! same words.

use fledge_api::{
    CanaryPhase, CanarySpec, CanaryStatus, Gate, OperatorRequest, RequestAction, Strategy,
};

/// Whether `request` fits the Canary with this spec and status; `Err` says why not, for people.
///
/// - `promote`: a rollout under analysis (`Progressing`, `WaitingPromotion`).
/// - `abort`: a rollout under analysis, or a revision `Waiting` to start.
/// - `retry`: a `Failed` rollout whose revision was rolled back (not a failed initialization).
/// - `pause`: an initialized Canary that is not paused and not being promoted.
/// - `resume`: a paused Canary.
/// - `approve`: a gate the spec declares, in a phase that consults it, not approved already.
pub fn fits(
    spec: &CanarySpec,
    status: &CanaryStatus,
    request: &OperatorRequest,
) -> Result<(), String> {
    use CanaryPhase as P;
    let phase = status.phase;
    match phase {
        P::Unknown | P::Initializing => {
            return Err("it is not initialized yet".into());
        }
        P::Terminating | P::Terminated => return Err("it is being deleted".into()),
        _ => {}
    }
    let no_rollout = || format!("no rollout is in progress (it is {phase})");
    match request.action {
        RequestAction::Promote => match phase {
            P::Progressing | P::WaitingPromotion => Ok(()),
            P::Promoting | P::Finalising => Err(format!("it is already being promoted ({phase})")),
            P::Waiting => Err(
                "its new revision has not started rolling out (it is Waiting): approve \
                 confirm-rollout, or abort it"
                    .into(),
            ),
            _ => Err(no_rollout()),
        },
        RequestAction::Abort => match phase {
            P::Progressing | P::WaitingPromotion | P::Waiting => Ok(()),
            P::Promoting | P::Finalising => Err(format!(
                "too late to abort: the revision is being promoted ({phase})"
            )),
            _ => Err(no_rollout()),
        },
        RequestAction::Retry => match phase {
            P::Failed if status.last_promoted_spec.is_none() => {
                Err("its initialization failed; nothing was rolled out to retry".into())
            }
            P::Failed if status.last_applied_spec == status.last_promoted_spec => {
                Err("the target is back to the primary's revision; nothing to retry".into())
            }
            P::Failed => Ok(()),
            _ => Err(format!(
                "only a Failed rollout can be retried (it is {phase})"
            )),
        },
        RequestAction::Pause => match (&status.paused, phase) {
            (Some(p), _) => Err(format!("it is already paused (by {})", p.who())),
            (None, P::Promoting | P::Finalising) => Err(format!(
                "the revision is being promoted ({phase}); that finishes on its own"
            )),
            (None, _) => Ok(()),
        },
        RequestAction::Resume => match &status.paused {
            Some(_) => Ok(()),
            None => Err("it is not paused".into()),
        },
        RequestAction::Approve => approve_fits(spec, status, request.gate),
    }
}

fn approve_fits(
    spec: &CanarySpec,
    status: &CanaryStatus,
    gate: Option<Gate>,
) -> Result<(), String> {
    use CanaryPhase as P;
    let phase = status.phase;
    let Some(gate) = gate else {
        return Err(
            "no gate named (confirm-rollout, confirm-traffic-increase or \
                    confirm-promotion)"
                .into(),
        );
    };
    if spec.webhooks_of(gate.hook_type()).is_empty() {
        return Err(format!(
            "spec.analysis.webhooks declares no {gate} gate; there is nothing to approve"
        ));
    }
    let consulted = match gate {
        Gate::ConfirmRollout => phase == P::Waiting,
        Gate::ConfirmTrafficIncrease => {
            phase == P::Progressing && spec.strategy() == Strategy::Canary
        }
        Gate::ConfirmPromotion => matches!(phase, P::Progressing | P::WaitingPromotion),
    };
    if !consulted {
        let when = match gate {
            Gate::ConfirmRollout => "a new revision is Waiting to start",
            Gate::ConfirmTrafficIncrease => "a weighted canary is Progressing",
            Gate::ConfirmPromotion => "a rollout is Progressing or WaitingPromotion",
        };
        return Err(format!(
            "the {gate} gate is consulted only while {when} (it is {phase})"
        ));
    }
    if let Some(a) = approval(status, gate) {
        return Err(format!(
            "{gate} is already approved (by {}) and not used yet",
            a.who()
        ));
    }
    Ok(())
}

/// An accepted `approve` of `gate` not used yet.
pub fn approval(status: &CanaryStatus, gate: Gate) -> Option<&OperatorRequest> {
    status
        .rollout
        .as_ref()?
        .approvals
        .iter()
        .find(|a| a.gate == Some(gate))
}

/// The gate the Canary waits for now, which `approve` without `--gate` opens: `confirm-rollout`
/// while a revision is `Waiting`, `confirm-promotion` in `WaitingPromotion`, and while
/// `Progressing` the `confirm-traffic-increase` gate of a weighted canary (else
/// `confirm-promotion`). Only gates the spec declares; `None` when there is none.
pub fn pending_gate(spec: &CanarySpec, status: &CanaryStatus) -> Option<Gate> {
    let declared = |g: Gate| !spec.webhooks_of(g.hook_type()).is_empty();
    let candidates: &[Gate] = match status.phase {
        CanaryPhase::Waiting => &[Gate::ConfirmRollout],
        CanaryPhase::WaitingPromotion => &[Gate::ConfirmPromotion],
        CanaryPhase::Progressing if spec.strategy() == Strategy::Canary => {
            &[Gate::ConfirmTrafficIncrease, Gate::ConfirmPromotion]
        }
        CanaryPhase::Progressing => &[Gate::ConfirmPromotion],
        _ => &[],
    };
    candidates.iter().copied().find(|g| declared(*g))
}

/// The Event reason of an accepted request (`PromoteRequested`, `ApproveRequested`, ...).
pub fn event_reason(action: RequestAction) -> &'static str {
    match action {
        RequestAction::Promote => "PromoteRequested",
        RequestAction::Abort => "AbortRequested",
        RequestAction::Retry => "RetryRequested",
        RequestAction::Pause => "PauseRequested",
        RequestAction::Resume => "ResumeRequested",
        RequestAction::Approve => "ApproveRequested",
    }
}

/// The Event reason of a refused request.
pub const REJECTED_REASON: &str = "RequestRejected";
