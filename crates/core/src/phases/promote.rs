//! Promotion: copy the canary to the primary, wait until the primary is ready, route traffic
//! back to it (at once, or by `stepWeightPromotion` per interval), scale the canary down.

use fledge_api::{CanaryPhase, HookType};

use crate::action::{Action, CanaryScale, LedgerEvent, NotifyKind, Routes, Severity};
use crate::ctx::Cx;
use crate::observe::TargetObservation;
use crate::weights;

use super::analysis;
use super::revision::{self, Change};

/// Starts the promotion of the revision under test.
pub(super) fn begin(cx: &mut Cx, message: String) {
    let revision = cx.status.last_applied_spec.clone().unwrap_or_default();
    cx.act(Action::PromotePrimary { revision });
    cx.enter(CanaryPhase::Promoting, "Promoting", message);
    cx.requeue(cx.poll());
}

/// `Promoting`: once the primary runs the new revision and is ready, shift the traffic to it.
pub(super) fn promoting(cx: &mut Cx, target: &TargetObservation) {
    if revision::detect(&cx.status, target) != Change::None {
        // The primary may not have the analysed revision (the adapter refuses to copy a target
        // that changed); analysing the newer revision from zero is right in every case.
        return analysis::restart(cx, target);
    }
    let threshold = cx.analysis.primary_ready_threshold();
    if !matches!(cx.obs.primary.map(|p| p.check(threshold)), Some(Ok(()))) {
        return cx.requeue(cx.poll());
    }
    let step = cx.analysis.step_weight_promotion.filter(|s| *s > 0);
    let current = cx.status.canary_weight;
    match step {
        Some(step) if current > 0 => stepped_shift(cx, current, step),
        _ => finish_shift(cx),
    }
}

/// One `stepWeightPromotion` step per interval.
fn stepped_shift(cx: &mut Cx, current: i32, step: i32) {
    if let Some(left) = cx.not_due() {
        return cx.requeue(left);
    }
    cx.tick();
    let next = weights::next_promotion_weight(current, step);
    if next == 0 {
        return finish_shift(cx);
    }
    cx.set_routes(Routes::weighted(next));
    let message = format!("Advance {} primary weight {}", cx.target_name(), 100 - next);
    cx.event(false, "PromotionAdvanced", message);
    cx.requeue(cx.interval());
}

fn finish_shift(cx: &mut Cx) {
    cx.set_routes(Routes::PRIMARY);
    let message = format!(
        "Routing all traffic to primary {}-primary",
        cx.target_name()
    );
    cx.enter(CanaryPhase::Finalising, "Finalising", message);
    cx.requeue(cx.poll());
}

/// `Finalising`: scale the canary down and record the success.
pub(super) fn finalise(cx: &mut Cx) {
    cx.set_routes(Routes::PRIMARY);
    cx.scale_canary(CanaryScale::Zero);
    cx.status.last_promoted_spec = cx.status.last_applied_spec.clone();
    cx.remember_promoted(cx.status.last_applied_spec.clone());
    cx.status.last_promoted_configs = cx.status.tracked_configs.clone();
    if let Some(r) = cx.status.rollout.as_mut() {
        r.unready_since = None;
    }
    let name = cx.target_name();
    cx.enter(
        CanaryPhase::Succeeded,
        "Succeeded",
        format!("Promotion completed! Scaling down {name}"),
    );
    cx.call_webhooks(HookType::PostRollout);
    let took = cx
        .elapsed(
            cx.status
                .rollout
                .as_ref()
                .and_then(|r| r.start_time.as_ref()),
        )
        .map(|d| format!(" in {}", human_duration(d)))
        .unwrap_or_default();
    cx.notify(
        Severity::Info,
        NotifyKind::Promoted,
        format!("Canary analysis of {name} completed successfully, promotion finished{took}."),
    );
    let reasons = super::requests::promoted_by(cx).into_iter().collect();
    cx.ledger(LedgerEvent::Promoted, reasons);
    cx.requeue(cx.interval());
}

/// `d` for people: `1h2m3s`, `4m0s`, `12s`.
pub(crate) fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_as_hours_minutes_and_seconds() {
        assert_eq!(human_duration(Duration::from_secs(12)), "12s");
        assert_eq!(human_duration(Duration::from_secs(240)), "4m0s");
        assert_eq!(human_duration(Duration::from_secs(3723)), "1h2m3s");
    }
}
