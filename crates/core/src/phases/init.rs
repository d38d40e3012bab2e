//! Initialization: create the primary from the target, wait until it is ready, then scale the
//! target to zero, create the Services and route everything to the primary.

use fledge_api::CanaryPhase;

use crate::action::{Action, CanaryScale, LedgerEvent, NotifyKind, Routes, Severity};
use crate::ctx::Cx;
use crate::observe::TargetObservation;

/// `Unknown`/`Initializing` (and a leftover `Terminating`/`Terminated` of a Canary that is no
/// longer being deleted).
pub(super) fn run(cx: &mut Cx, target: &TargetObservation) {
    if cx.status.phase != CanaryPhase::Initializing {
        let message = format!(
            "New Deployment detected, starting initialization of {}.",
            cx.target_name()
        );
        cx.enter(CanaryPhase::Initializing, "Initializing", message);
    }
    cx.act(Action::EnsurePrimary);
    let threshold = cx.analysis.primary_ready_threshold();
    let verdict = match cx.obs.primary {
        None => Err("the primary does not exist yet".to_string()),
        Some(r) => r.check(threshold),
    };
    match verdict {
        Ok(()) => finish(cx, target),
        Err(why) => wait(cx, target, why),
    }
}

fn wait(cx: &mut Cx, target: &TargetObservation, why: String) {
    let waited = cx
        .elapsed(cx.status.last_transition_time.as_ref())
        .unwrap_or_default();
    if waited <= cx.deadline() {
        cx.requeue(cx.poll());
        return;
    }
    cx.status.last_applied_spec = Some(target.spec_hash.clone());
    cx.status.tracked_configs = Some(target.tracked_configs.clone());
    let message = format!(
        "Initialization failed: primary {}-primary not ready after {}s: {why}",
        cx.target_name(),
        cx.deadline().as_secs()
    );
    cx.enter(
        CanaryPhase::Failed,
        "ProgressDeadlineExceeded",
        message.clone(),
    );
    cx.notify(Severity::Error, NotifyKind::DeadlineExceeded, message);
}

fn finish(cx: &mut Cx, target: &TargetObservation) {
    cx.act(Action::ScaleCanary(CanaryScale::Zero));
    cx.act(Action::EnsureServices);
    // The routes may have just been created: state the weights explicitly.
    cx.act(Action::SetWeights(Routes::PRIMARY));
    cx.status.canary_weight = 0;
    cx.status.failed_checks = 0;
    cx.status.iterations = 0;
    cx.status.rollout = None;
    cx.status.last_applied_spec = Some(target.spec_hash.clone());
    cx.status.last_promoted_spec = Some(target.spec_hash.clone());
    cx.remember_promoted(Some(target.spec_hash.clone()));
    cx.status.tracked_configs = Some(target.tracked_configs.clone());
    cx.status.last_promoted_configs = Some(target.tracked_configs.clone());
    let message = format!("Initialization done! {}", cx.target_name());
    cx.enter(CanaryPhase::Initialized, "Initialized", message.clone());
    cx.notify(Severity::Info, NotifyKind::Initialized, message);
    cx.ledger(LedgerEvent::Initialized, Vec::new());
    cx.requeue(cx.interval());
}
