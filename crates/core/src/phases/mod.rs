//! The decision, one small function per situation. [`decide`] works out the situation and
//! hands over to the function that owns it.

mod analysis;
mod deletion;
mod guards;
mod idle;
mod init;
mod promote;
mod requests;
mod revision;
mod rollback;
mod strategy;

use fledge_api::{CanaryPhase, OperatorRequest};

use crate::ctx::Cx;
use crate::observe::TargetObservation;

/// Reports what blocks the Canary (see [`crate::Observations::blocked`]).
pub(crate) fn blocked(cx: &mut Cx, blocker: &crate::observe::Blocker) {
    guards::blocked_by(cx, blocker);
}

/// Decides everything for one reconcile.
pub(crate) fn decide(cx: &mut Cx) {
    // A `kubectl fledge` request is taken now and handled exactly once, whatever follows.
    let request = cx.status.request.take().map(|r| *r);
    let refuse = |cx: &mut Cx, why: &str| {
        if let Some(r) = request.clone() {
            requests::reject(cx, r, why);
        }
    };
    if cx.obs.deleting {
        refuse(cx, "the Canary is being deleted");
        return deletion::run(cx);
    }
    if guards::invalid_spec(cx) {
        return refuse(cx, "the spec is invalid");
    }
    if cx.spec.suspend {
        refuse(cx, "spec.suspend is true");
        return guards::suspended(cx);
    }
    guards::resumed(cx);
    match cx.obs.target.as_ref() {
        None => {
            refuse(cx, "the target workload is missing");
            guards::target_missing(cx)
        }
        Some(target) => lifecycle(cx, target, request),
    }
}

/// The phase machine, once the spec is valid, not suspended, and the target exists.
fn lifecycle(cx: &mut Cx, target: &TargetObservation, request: Option<OperatorRequest>) {
    let phase = cx.status.phase;
    let initialized = !matches!(
        phase,
        CanaryPhase::Unknown
            | CanaryPhase::Initializing
            | CanaryPhase::Terminating
            | CanaryPhase::Terminated
    );
    if initialized && cx.obs.primary.is_none() {
        if let Some(r) = request {
            requests::reject(cx, r, "the primary workload is missing");
        }
        return guards::primary_missing(cx, target);
    }
    guards::ready(cx);
    if let Some(r) = request
        && requests::apply(cx, target, r) == requests::After::Done
    {
        return;
    }
    if cx.status.paused.is_some() {
        return guards::paused(cx);
    }
    if initialized && generation_changed(cx) {
        cx.ensure_services();
    }
    match phase {
        CanaryPhase::Unknown
        | CanaryPhase::Initializing
        | CanaryPhase::Terminating
        | CanaryPhase::Terminated => init::run(cx, target),
        CanaryPhase::Initialized
        | CanaryPhase::Succeeded
        | CanaryPhase::Failed
        | CanaryPhase::Waiting => idle::run(cx, target),
        CanaryPhase::Progressing | CanaryPhase::WaitingPromotion => analysis::run(cx, target),
        CanaryPhase::Promoting => promote::promoting(cx, target),
        CanaryPhase::Finalising => promote::finalise(cx),
    }
}

/// Whether the Canary's spec changed since the status was last written (the Services and
/// router objects may need an update).
fn generation_changed(cx: &Cx) -> bool {
    match (cx.obs.generation, cx.status.observed_generation) {
        (Some(now), Some(before)) => now != before,
        _ => false,
    }
}

/// Takes `target`'s revision as the one under test: all traffic on the primary, counters and
/// the rollout's bookkeeping reset, the rollout's clock started now.
fn begin_revision(cx: &mut Cx, target: &TargetObservation) {
    cx.set_routes(crate::action::Routes::PRIMARY);
    let now = cx.now_time();
    let s = &mut cx.status;
    s.last_applied_spec = Some(target.spec_hash.clone());
    s.tracked_configs = Some(target.tracked_configs.clone());
    s.failed_checks = 0;
    s.iterations = 0;
    s.rollout = Some(fledge_api::RolloutProgress {
        start_time: Some(now),
        ..Default::default()
    });
}

/// The first 12 characters of a spec hash, for messages.
fn short(revision: &str) -> String {
    revision.chars().take(12).collect()
}
