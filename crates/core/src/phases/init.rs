//! Initialization: create the primary from the target, wait until it is ready, then scale the
//! target to zero, create the Services and route everything to the primary.
//!
//! With `spec.gitops`, the Git ledger outlives the cluster: when the primary does not exist yet
//! and the ledger names a last promoted revision other than the target's (a rebuilt cluster to
//! which Flux applied a revision whose rollout never finished), the primary starts on that
//! revision's images, and the target's revision is analysed like any new release.

use fledge_api::CanaryPhase;

use crate::action::{Action, CanaryScale, LedgerEvent, NotifyKind, Routes, Severity};
use crate::ctx::Cx;
use crate::observe::{LedgerView, TargetObservation};

use super::short;

/// `Unknown`/`Initializing` (and a leftover `Terminating`/`Terminated` of a Canary that is no
/// longer being deleted).
pub(super) fn run(cx: &mut Cx, target: &TargetObservation) {
    if cx.status.phase != CanaryPhase::Initializing {
        let message = format!(
            "New Deployment detected, starting initialization of {}.",
            cx.target_name()
        );
        cx.enter(CanaryPhase::Initializing, "Initializing", message);
        cx.status.initialized_from_ledger = None;
    }
    if cx.obs.primary.is_none() {
        create_primary(cx, target);
    } else {
        cx.act(Action::EnsurePrimary);
    }
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

/// The primary does not exist: create it from the target, or from the ledger's last promoted
/// revision when that is another one.
fn create_primary(cx: &mut Cx, target: &TargetObservation) {
    cx.status.initialized_from_ledger = None;
    if cx.spec.gitops.is_none() {
        return cx.act(Action::EnsurePrimary);
    }
    match cx.ledger_view() {
        LedgerView::NotRead => {}
        LedgerView::Unreadable(why) => {
            let message = format!(
                "Cannot read the Git ledger of {}: {why}. The primary starts on the target's \
                 revision (rollouts never wait for Git).",
                cx.target_name()
            );
            cx.event(true, "LedgerUnreadable", message);
        }
        LedgerView::Read(promoted) => {
            // Known-good revisions for fast rollbacks, oldest first as the status keeps them.
            for p in promoted.iter().take(crate::ctx::MAX_PROMOTED).rev() {
                cx.remember_promoted(Some(p.revision.clone()));
            }
            if let Some(last) = promoted.first()
                && last.revision != target.spec_hash
                && !last.images.is_empty()
            {
                let message = format!(
                    "The Git ledger's last promoted revision of {} is {} ({}{}), not the \
                     target's {}: the primary starts on the promoted images and the target's \
                     revision will be analysed.",
                    cx.target_name(),
                    short(&last.revision),
                    last.images.join(", "),
                    last.promoted_at
                        .as_deref()
                        .map(|t| format!(", promoted {t}"))
                        .unwrap_or_default(),
                    short(&target.spec_hash),
                );
                cx.event(false, "InitializingFromLedger", message);
                cx.act(Action::EnsurePrimaryFrom {
                    revision: last.revision.clone(),
                    images: last.images.clone(),
                });
                cx.status.initialized_from_ledger = Some(last.clone());
                return;
            }
        }
    }
    cx.act(Action::EnsurePrimary);
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
    cx.scale_canary(CanaryScale::Zero);
    cx.ensure_services();
    // The routes may have just been created: state the weights explicitly.
    cx.act(Action::SetWeights(Routes::PRIMARY));
    cx.status.canary_weight = 0;
    cx.status.failed_checks = 0;
    cx.status.iterations = 0;
    cx.status.rollout = None;
    // The primary runs the ledger's revision (then the target's is new) or the target's.
    let (primary, message) = match cx.status.initialized_from_ledger.take() {
        Some(from) => {
            let message = format!(
                "Initialization done! {}: the primary runs revision {} from the Git ledger ({}); \
                 the target's revision {} is new.",
                cx.target_name(),
                short(&from.revision),
                from.images.join(", "),
                short(&target.spec_hash)
            );
            (from.revision, message)
        }
        None => (
            target.spec_hash.clone(),
            format!("Initialization done! {}", cx.target_name()),
        ),
    };
    cx.status.last_applied_spec = Some(primary.clone());
    cx.status.last_promoted_spec = Some(primary.clone());
    cx.remember_promoted(Some(primary));
    cx.status.tracked_configs = Some(target.tracked_configs.clone());
    cx.status.last_promoted_configs = Some(target.tracked_configs.clone());
    cx.enter(CanaryPhase::Initialized, "Initialized", message.clone());
    cx.notify(Severity::Info, NotifyKind::Initialized, message);
    cx.ledger(LedgerEvent::Initialized, Vec::new());
    cx.requeue(cx.interval());
}
