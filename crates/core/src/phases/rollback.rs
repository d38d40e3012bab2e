//! Rollback: all traffic to the primary, the canary scaled to zero, `Failed`, and the reports
//! (post-rollout webhooks, alert, ledger, revert in Git).

use fledge_api::{CanaryPhase, HookType};

use crate::action::{Action, CanaryScale, LedgerEvent, NotifyKind, Routes, Severity};
use crate::ctx::Cx;

/// Rolls the revision under test back, for `reason`. It is not retried until the target changes.
pub(super) fn run(cx: &mut Cx, reason: String) {
    cx.set_routes(Routes::PRIMARY);
    cx.act(Action::ScaleCanary(CanaryScale::Zero));
    if let Some(r) = cx.status.rollout.as_mut() {
        r.unready_since = None;
    }
    let name = cx.target_name();
    cx.enter(
        CanaryPhase::Failed,
        "RolledBack",
        format!("Rolling back {name}: {reason}"),
    );
    cx.call_webhooks(HookType::PostRollout);
    cx.notify(
        Severity::Error,
        NotifyKind::RolledBack,
        format!("Canary analysis of {name} failed, rollback finished: {reason}"),
    );
    let mut reasons = cx
        .status
        .rollout
        .as_ref()
        .map(|r| r.failures.clone())
        .unwrap_or_default();
    reasons.push(reason.clone());
    cx.ledger(LedgerEvent::RolledBack, reasons);
    let revision = cx.status.last_applied_spec.clone().unwrap_or_default();
    cx.report(Action::RevertInGit { revision, reason });
    cx.requeue(cx.interval());
}
