//! `Progressing` and `WaitingPromotion`: one analysis step per interval, once the workloads are
//! ready; a new revision restarts the analysis; failures count towards the threshold.

use fledge_api::{CanaryPhase, HookType, OperatorRequest, RequestAction};

use crate::action::{CanaryScale, LedgerEvent, NotifyKind, Severity};
use crate::checks::Failure;
use crate::conditions::{self, CHECKS_PASSING};
use crate::ctx::{Cx, MAX_FAILURES};
use crate::observe::TargetObservation;

use super::idle::join;
use super::revision::{self, Change};
use super::{promote, rollback, strategy};

/// `Progressing` or `WaitingPromotion`.
pub(super) fn run(cx: &mut Cx, target: &TargetObservation) {
    if revision::detect(&cx.status, target) != Change::None {
        return restart(cx, target);
    }
    if cx.status.failed_checks >= cx.threshold() {
        let reason = format!(
            "failed checks threshold reached {}",
            cx.status.failed_checks
        );
        return rollback::run(cx, reason);
    }
    if cx.spec.skip_analysis {
        let message = format!(
            "Analysis skipped (skipAnalysis), promoting {}.",
            cx.target_name()
        );
        return promote::begin(cx, message);
    }
    if !canary_ready(cx, target) || !primary_ready(cx) {
        return;
    }
    if let Some(left) = cx.not_due() {
        return cx.requeue(left);
    }
    step(cx);
}

/// A newer revision replaced the one under test: back to zero and start over, as Flagger does
/// (no gate: the rollout already holds its slot and passed `confirm-rollout`).
pub(super) fn restart(cx: &mut Cx, target: &TargetObservation) {
    cx.ledger(
        LedgerEvent::Superseded,
        vec!["a newer revision replaced the one under test".to_string()],
    );
    super::begin_revision(cx, target);
    if cx.statefulset_routed() {
        // As at a rollout's start: the router waits an interval for the pods' endpoints.
        cx.tick();
    }
    let name = cx.target_name();
    cx.enter(
        CanaryPhase::Progressing,
        "NewRevision",
        format!("New revision detected! Restarting analysis for {name}"),
    );
    cx.notify(
        Severity::Info,
        NotifyKind::NewRevision,
        format!("New revision detected, restarting canary analysis of {name}."),
    );
    cx.ledger(LedgerEvent::Started, Vec::new());
    cx.requeue(cx.poll());
}

/// Whether the canary is ready. When it is not: wait (scaling it up again if it has no
/// replicas), or roll back once it has been unready for longer than the progress deadline.
fn canary_ready(cx: &mut Cx, target: &TargetObservation) -> bool {
    let r = target.readiness;
    // A StatefulSet's canary is the pods at or above the partition: none before the first
    // step, and nothing to scale.
    let verdict = if r.desired <= 0 && !cx.statefulset() {
        // Scaled to zero: the scale-up was lost (a crash before the status write) or undone.
        cx.scale_canary(CanaryScale::MatchPrimary);
        Err("the canary has no replicas".to_string())
    } else {
        r.check(cx.analysis.canary_ready_threshold())
    };
    let Err(why) = verdict else {
        cx.rollout_mut().unready_since = None;
        return true;
    };
    let now = cx.now_time();
    let since = cx.rollout_mut().unready_since.get_or_insert(now).clone();
    let waited = cx.elapsed(Some(&since)).unwrap_or_default();
    if waited > cx.deadline() {
        let reason = format!(
            "progress deadline exceeded: canary {} not ready after {}s: {why}",
            cx.target_name(),
            cx.deadline().as_secs()
        );
        rollback::run_as(cx, reason, NotifyKind::DeadlineExceeded);
    } else {
        cx.requeue(cx.poll());
    }
    false
}

/// Whether the primary is ready; when it is not, wait (its readiness is not the canary's fault).
fn primary_ready(cx: &mut Cx) -> bool {
    let threshold = cx.analysis.primary_ready_threshold();
    match cx.obs.primary.map(|p| p.check(threshold)) {
        Some(Ok(())) => true,
        _ => {
            cx.requeue(cx.poll());
            false
        }
    }
}

/// One analysis step: rollback webhooks, then `pre-rollout` (first step) or the checks, then
/// the strategy's advance.
fn step(cx: &mut Cx) {
    cx.tick();
    let r = cx.rollout_mut();
    r.step = r.step.saturating_add(1);
    cx.requeue(cx.interval());
    if let Some(reason) = cx.rollback_requested() {
        return rollback::run(cx, reason);
    }
    let pre_rollout = !cx
        .status
        .rollout
        .as_ref()
        .is_some_and(|r| r.pre_rollout_done);
    let failures = if pre_rollout {
        pre_rollout_checks(cx)
    } else {
        let failures = analysis_checks(cx);
        let (value, reason, message) = if failures.is_empty() {
            (
                "True",
                "ChecksPassed",
                "every check of the last analysis step passed".to_string(),
            )
        } else {
            ("False", "CheckFailed", join(&failures))
        };
        let now = cx.now;
        conditions::set(&mut cx.status, CHECKS_PASSING, value, reason, &message, now);
        failures
    };
    if !failures.is_empty() {
        return failed_check(cx, failures);
    }
    let skipped = if pre_rollout {
        Vec::new()
    } else {
        cx.inconclusive_metrics()
    };
    if skipped.is_empty() || !inconclusive(cx, &skipped) {
        strategy::advance(cx);
    }
}

/// A step judged without metrics that had no data (`noData: skip`): counted, said in an Event,
/// and at every `inconclusiveLimit`-th such step the rollout pauses for a person (`kubectl
/// fledge promote`, `abort` or `resume`). Whether it paused.
fn inconclusive(cx: &mut Cx, skipped: &[String]) -> bool {
    let r = cx.rollout_mut();
    r.inconclusive_checks = r.inconclusive_checks.saturating_add(1);
    let count = r.inconclusive_checks;
    let limit = cx.analysis.inconclusive_limit.filter(|l| *l > 0);
    let name = cx.target_name();
    let of_limit = limit.map_or(String::new(), |l| format!(" of {l}"));
    let message = format!(
        "Analysis of {name} inconclusive ({count}{of_limit}): no data for {}",
        skipped.join(", ")
    );
    cx.event(true, "AnalysisInconclusive", message.clone());
    let Some(limit) = limit.filter(|l| count % l == 0) else {
        return false;
    };
    let now = cx.now_time();
    cx.status.paused = Some(Box::new(OperatorRequest {
        id: format!("inconclusive-{count}"),
        action: RequestAction::Pause,
        gate: None,
        user: "fledge (inconclusive analysis)".into(),
        requested_at: Some(now),
    }));
    let message = format!(
        "{message}. Paused after {limit} inconclusive steps: promote, abort or resume with \
         kubectl fledge."
    );
    cx.event(true, "InconclusivePaused", message.clone());
    cx.notify(Severity::Warn, NotifyKind::Waiting, message);
    true
}

/// The first step: `pre-rollout` webhooks, once they pass. No metrics: no traffic reached the
/// canary yet.
fn pre_rollout_checks(cx: &mut Cx) -> Vec<Failure> {
    let message = format!("Starting canary analysis for {}", cx.target_name());
    match cx.gate(HookType::PreRollout) {
        Ok(()) => {
            cx.rollout_mut().pre_rollout_done = true;
            cx.event(false, "AnalysisStarted", message);
            Vec::new()
        }
        Err(failures) => failures,
    }
}

/// Every other step: `rollout` webhooks and metric checks, all of them.
fn analysis_checks(cx: &mut Cx) -> Vec<Failure> {
    let mut failures = cx.gate(HookType::Rollout).err().unwrap_or_default();
    failures.extend(cx.metric_failures());
    failures
}

/// A failed step: count it, say why, and roll back when the threshold is reached.
fn failed_check(cx: &mut Cx, failures: Vec<Failure>) {
    let s = &mut cx.status;
    s.failed_checks = s.failed_checks.saturating_add(1);
    let (count, threshold) = (cx.status.failed_checks, cx.threshold());
    let now = cx.now_time();
    let r = cx.rollout_mut();
    r.first_failure_time.get_or_insert(now);
    r.failures
        .extend(failures.iter().map(|f| f.message.clone()));
    let excess = r.failures.len().saturating_sub(MAX_FAILURES);
    r.failures.drain(..excess);
    let message = format!(
        "Halt advancement {}: {} (failed checks {count}/{threshold})",
        cx.target_name(),
        join(&failures)
    );
    cx.event(true, "CheckFailed", message.clone());
    if failures.iter().any(|f| !f.muted) {
        cx.notify(Severity::Warn, NotifyKind::CheckFailed, message);
    }
    if count >= threshold {
        rollback::run(cx, format!("failed checks threshold reached {count}"));
    }
}
