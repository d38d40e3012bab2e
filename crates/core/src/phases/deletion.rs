//! Deletion of the Canary. With `revertOnDeletion`: traffic to the primary, the target scaled
//! back up, and once it is ready the apex routed to it (`Terminating` → `Terminated`). Without:
//! `Terminated` at once, nothing touched.

use fledge_api::CanaryPhase;

use crate::action::{Action, LedgerEvent, Routes};
use crate::ctx::Cx;

/// Any phase while the Canary is being deleted.
pub(super) fn run(cx: &mut Cx) {
    match cx.status.phase {
        CanaryPhase::Terminated => cx.requeue(cx.interval()),
        CanaryPhase::Terminating => restore(cx),
        _ => begin(cx),
    }
    // Done, now or earlier (a removal that failed is asked for again): nothing holds the
    // Canary any more.
    if cx.status.phase == CanaryPhase::Terminated {
        cx.act(Action::RemoveFinalizer);
    }
}

fn begin(cx: &mut Cx) {
    let in_flight = cx.status.phase.is_rolling_out();
    let name = cx.target_name();
    // Before initialization finished, the target still serves: nothing to restore.
    let initialized = !matches!(
        cx.status.phase,
        CanaryPhase::Unknown | CanaryPhase::Initializing
    );
    if cx.spec.revert_on_deletion && initialized {
        cx.set_routes(Routes::PRIMARY);
        cx.act(Action::RestoreTarget);
        let message = format!("Canary deleted, restoring {name} (revertOnDeletion)");
        cx.enter(CanaryPhase::Terminating, "Terminating", message);
        cx.requeue(cx.poll());
    } else {
        let message = format!("Canary deleted, {name} left as it is");
        cx.enter(CanaryPhase::Terminated, "Terminated", message);
    }
    if in_flight {
        cx.ledger(
            LedgerEvent::Aborted,
            vec!["the Canary was deleted during the rollout".to_string()],
        );
    }
}

/// `Terminating`: route the apex to the target once it is ready. Past the progress deadline
/// keep waiting (the primary still serves) and warn at every interval.
fn restore(cx: &mut Cx) {
    let threshold = cx.analysis.canary_ready_threshold();
    let verdict = match cx.obs.target.as_ref() {
        None => return finish(cx, false),
        Some(t) if t.readiness.desired <= 0 => Err("the target has no replicas yet".to_string()),
        Some(t) => t.readiness.check(threshold),
    };
    let Err(why) = verdict else {
        return finish(cx, true);
    };
    let waited = cx
        .elapsed(cx.status.last_transition_time.as_ref())
        .unwrap_or_default();
    if waited > cx.deadline() {
        let message = format!(
            "Target {} not ready after {}s, traffic stays on the primary: {why}",
            cx.target_name(),
            cx.deadline().as_secs()
        );
        cx.event(true, "TargetNotReady", message);
        cx.requeue(cx.interval());
    } else {
        cx.requeue(cx.poll());
    }
}

fn finish(cx: &mut Cx, target_exists: bool) {
    let message = if target_exists {
        cx.act(Action::FinalizeRouting);
        format!("Canary deleted, traffic routed to {}", cx.target_name())
    } else {
        format!(
            "Canary deleted; target {} is gone, nothing to restore",
            cx.target_name()
        )
    };
    cx.enter(CanaryPhase::Terminated, "Terminated", message);
    cx.requeue(cx.interval());
}
