//! Rollback: all traffic to the primary, `Failed`, and the reports (post-rollout webhooks, alert,
//! ledger, revert in Git); the canary is scaled to zero right after, from `Failed`.

use std::time::Duration;

use fledge_api::{CanaryPhase, HookType};

use crate::action::{Action, ImageRevert, LedgerEvent, NotifyKind, Routes, Severity};
use crate::ctx::Cx;
use crate::observe::ContainerImages;

/// How many failure reasons a rollback alert quotes.
const ALERT_REASONS: usize = 3;

/// Rolls the revision under test back, for `reason`. It is not retried until the target changes.
pub(super) fn run(cx: &mut Cx, reason: String) {
    run_as(cx, reason, NotifyKind::RolledBack);
}

/// [`run`], with the alert of `kind` (a rollback for the progress deadline says so).
pub(super) fn run_as(cx: &mut Cx, reason: String, kind: NotifyKind) {
    if cx.statefulset() {
        // Traffic back to the promoted pods first (behind a router), then the pods that moved
        // go back where they are: the template back to the promoted revision, the partition
        // left where it is.
        cx.set_routes(Routes::PRIMARY);
        let revision = cx.status.last_applied_spec.clone().unwrap_or_default();
        cx.act(Action::RollBackTarget { revision });
    } else {
        // All traffic on the primary is the rollback; the canary is scaled to zero by the
        // reconcile after this one (idle's `settle`), once `Failed` is written: under a wave of
        // rollbacks one write less before the status is most of the time to `Failed`, and a
        // controller stopped in between finds the target still up and scales it down then.
        cx.set_routes(Routes::PRIMARY);
    }
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
    let mut reasons = cx
        .status
        .rollout
        .as_ref()
        .map(|r| r.failures.clone())
        .unwrap_or_default();
    // The alert names the checks that failed (the last few, newest last), not just the count.
    let recent: Vec<&str> = reasons
        .iter()
        .rev()
        .take(ALERT_REASONS)
        .rev()
        .map(String::as_str)
        .collect();
    let because = if recent.is_empty() {
        String::new()
    } else {
        format!(" Failed checks: {}", recent.join("; "))
    };
    cx.notify(
        Severity::Error,
        kind,
        format!("Canary analysis of {name} failed, rollback finished: {reason}.{because}"),
    );
    reasons.push(reason.clone());
    cx.ledger(LedgerEvent::RolledBack, reasons);
    // Git must no longer name the version that failed (spec.gitops.path, revertOnRollback).
    if let Some(gitops) = cx.spec.gitops.as_ref().filter(|g| g.reverts()) {
        let revision = cx.status.last_applied_spec.clone().unwrap_or_default();
        let images = reverted_images(&cx.obs.images);
        if !images.is_empty() {
            let branch = (gitops.mode.as_deref() == Some("branch")).then(|| {
                format!(
                    "fledge/revert-{}-{}",
                    cx.obs.canary_name,
                    super::short(&revision)
                )
            });
            cx.report(Action::RevertInGit {
                revision,
                reason,
                images,
                branch,
            });
        }
    }
    // A Deployment's or DaemonSet's canary is scaled down at once, by the next reconcile; a
    // StatefulSet's template is already back.
    cx.requeue(if cx.statefulset() {
        cx.interval()
    } else {
        Duration::ZERO
    });
}

/// What a revert puts back: each target container's image, where the primary's container of
/// the same name runs another, goes back to the primary's. Nothing when no image differs (the
/// revision changed something else than images, which a revert cannot undo).
fn reverted_images(images: &ContainerImages) -> Vec<ImageRevert> {
    images
        .target
        .iter()
        .filter_map(|(container, failed)| {
            let (_, good) = images.primary.iter().find(|(c, _)| c == container)?;
            (good != failed).then(|| ImageRevert {
                from: failed.clone(),
                to: good.clone(),
            })
        })
        .collect()
}
