//! What stops the phase machine before it starts: an invalid spec, suspension, a missing target
//! or a lost primary. None of them changes traffic.

use fledge_api::CanaryPhase;
use fledge_api::validate::{cross_namespace_refs, validate_canary_spec};

use crate::action::{Action, NotifyKind, Severity};
use crate::conditions::{self, READY, SPEC_VALID, SUSPENDED};
use crate::ctx::{Cx, SPEC_ERROR_REQUEUE};
use crate::observe::{Blocker, TargetObservation};

/// Validates the spec. When invalid: `SpecValid=False` and `Ready=False` naming the fields, a
/// warning Event and an alert when that report is new, no other change, and a slow requeue
/// (the watch on the Canary brings the fix). Returns whether the spec is invalid.
pub(super) fn invalid_spec(cx: &mut Cx) -> bool {
    let mut problems = validate_canary_spec(cx.spec);
    if let Some(ns) = &cx.obs.confined_to_namespace {
        problems.extend(cross_namespace_refs(cx.spec, ns));
    }
    let now = cx.now;
    if problems.is_empty() {
        conditions::set(
            &mut cx.status,
            SPEC_VALID,
            "True",
            "Valid",
            "The spec is valid.",
            now,
        );
        return false;
    }
    let details: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let message = format!("Invalid spec: {}", details.join("; "));
    let new = conditions::set(
        &mut cx.status,
        SPEC_VALID,
        "False",
        "InvalidSpec",
        &message,
        now,
    );
    conditions::set(&mut cx.status, READY, "False", "InvalidSpec", &message, now);
    if new {
        cx.event(true, "InvalidSpec", message.clone());
        cx.notify(Severity::Error, NotifyKind::Blocked, message);
    }
    cx.requeue(SPEC_ERROR_REQUEUE);
    true
}

/// `spec.suspend`: nothing moves. The readiness clock is cleared so that time spent suspended
/// never counts against the progress deadline. The halt is reported once (an Event and an
/// alert), remembered in the `Suspended` condition.
pub(super) fn suspended(cx: &mut Cx) {
    if let Some(r) = cx.status.rollout.as_mut() {
        r.unready_since = None;
    }
    let message = format!(
        "Canary {} halted (spec.suspend): nothing moves until it is resumed.",
        cx.target_name()
    );
    let now = cx.now;
    if conditions::set(&mut cx.status, SUSPENDED, "True", "Halted", &message, now) {
        cx.event(false, "Halted", message.clone());
        cx.notify(Severity::Warn, NotifyKind::Halted, message);
    }
    cx.requeue(cx.interval());
}

/// Not suspended: when the Canary was halted before, report the resume once.
pub(super) fn resumed(cx: &mut Cx) {
    let halted = conditions::get(&cx.status, SUSPENDED).is_some_and(|c| c.status == "True");
    if !halted {
        return;
    }
    let message = format!(
        "Canary {} resumed (spec.suspend is false), phase {}.",
        cx.target_name(),
        cx.status.phase
    );
    let now = cx.now;
    conditions::set(&mut cx.status, SUSPENDED, "False", "Resumed", &message, now);
    cx.event(false, "Resumed", message.clone());
    cx.notify(Severity::Info, NotifyKind::Resumed, message);
}

/// Paused with `kubectl fledge pause`: nothing moves, until a `resume` (or a `promote`,
/// `abort` or `retry`) request. The readiness clock is cleared, as while suspended, so that time
/// spent paused never counts against the progress deadline.
pub(super) fn paused(cx: &mut Cx) {
    if let Some(r) = cx.status.rollout.as_mut() {
        r.unready_since = None;
    }
    cx.requeue(cx.interval());
}

/// The target workload does not exist: `Ready=False` with reason `TargetNotFound`, a warning
/// Event and an alert when that report is new, no traffic change, requeue at the interval.
pub(super) fn target_missing(cx: &mut Cx) {
    let kind = cx
        .spec
        .target_ref
        .kind
        .as_deref()
        .filter(|k| !k.is_empty())
        .unwrap_or(fledge_api::defaults::TARGET_KIND);
    let message = format!("Target {kind}/{} not found.", cx.target_name());
    blocked(cx, "TargetNotFound", message, cx.interval());
}

/// The primary is gone after initialization. When nothing is rolling out and the target still
/// holds the promoted revision (or nothing was ever promoted), it is safe to build the primary
/// again from the target: initialize again. Otherwise the target holds an unanalysed revision, so report and wait.
pub(super) fn primary_missing(cx: &mut Cx, target: &TargetObservation) {
    let safe = match cx.status.last_promoted_spec.as_deref() {
        // Nothing was ever promoted: there is no good revision to protect.
        None => true,
        Some(promoted) => promoted == target.spec_hash,
    };
    if !cx.status.phase.is_rolling_out() && safe {
        ready(cx);
        cx.act(Action::EnsurePrimary);
        let message = format!(
            "Primary {}-primary not found, initializing again.",
            cx.target_name()
        );
        cx.enter(CanaryPhase::Initializing, "Initializing", message);
        cx.requeue(cx.poll());
        return;
    }
    let message = format!(
        "Primary {}-primary not found while the target holds a revision that was not promoted; \
         restore the primary or delete and recreate the Canary.",
        cx.target_name()
    );
    blocked(cx, "PrimaryNotFound", message, cx.interval());
}

/// `Ready=True`: the engine can act.
pub(super) fn ready(cx: &mut Cx) {
    let now = cx.now;
    conditions::set(
        &mut cx.status,
        READY,
        "True",
        "Reconciling",
        "The spec is valid and the workloads exist.",
        now,
    );
}

/// A failure only a person can fix: `Ready=False` with the kind's reason and a message naming
/// the fix; a warning Event and an alert when that report is new (so a retried failure reports
/// once); a slow requeue (the adapter backs off its retries on its own).
pub(super) fn blocked_by(cx: &mut Cx, blocker: &Blocker) {
    let message = format!(
        "{}. To fix: {}.",
        blocker.message.trim_end_matches('.'),
        blocker.kind.fix()
    );
    blocked(cx, blocker.kind.reason(), message, SPEC_ERROR_REQUEUE);
}

fn blocked(cx: &mut Cx, reason: &str, message: String, requeue: std::time::Duration) {
    let now = cx.now;
    if conditions::set(&mut cx.status, READY, "False", reason, &message, now) {
        cx.event(true, reason, message.clone());
        cx.notify(Severity::Error, NotifyKind::Blocked, message);
    }
    cx.requeue(requeue);
}
