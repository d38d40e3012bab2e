//! What a passed analysis step does, by strategy: more weight (canary), one more iteration
//! (A/B testing, blue/green), or, at the end, the `confirm-promotion` gate and promotion.

use fledge_api::{CanaryPhase, HookType, Strategy};

use crate::action::{NotifyKind, Routes, Severity};
use crate::ctx::Cx;
use crate::weights;

use super::idle::join;
use super::promote;

/// Advances the rollout after a passed step.
pub(super) fn advance(cx: &mut Cx) {
    match cx.spec.strategy() {
        Strategy::Canary => weighted(cx),
        Strategy::AbTesting => iterate(
            cx,
            Routes {
                ab_match: true,
                ..Routes::PRIMARY
            },
            None,
        ),
        Strategy::BlueGreen => iterate(cx, Routes::PRIMARY, Some(Routes::weighted(100))),
        Strategy::BlueGreenMirror => {
            let mirrored = Routes {
                mirror: Some(cx.mirror_weight()),
                ..Routes::PRIMARY
            };
            iterate(cx, mirrored, Some(Routes::weighted(100)))
        }
    }
}

/// Weighted canary: the next weight (after one mirror step when `mirror` is set), behind the
/// `confirm-traffic-increase` gate; at the last weight, promotion.
fn weighted(cx: &mut Cx) {
    let current = cx.status.canary_weight;
    let mirrored = cx.applied_routes().mirror.is_some();
    let next = if cx.analysis.mirror.unwrap_or(false) && current == 0 && !mirrored {
        Some(Routes {
            mirror: Some(cx.mirror_weight()),
            ..Routes::PRIMARY
        })
    } else {
        weights::next_weight(&cx.analysis, current).map(Routes::weighted)
    };
    let Some(next) = next else {
        return promotion_gate(cx, None);
    };
    if let Err(failures) = cx.gate(HookType::ConfirmTrafficIncrease) {
        let message = format!(
            "Halt advancement {}: waiting for traffic increase approval: {}",
            cx.target_name(),
            join(&failures)
        );
        cx.event(false, "WaitingForApproval", message.clone());
        // Asked every interval while it holds; the adapter posts a repeated alert once.
        if failures.iter().any(|f| !f.muted) {
            cx.notify(
                Severity::Warn,
                NotifyKind::Waiting,
                format!("{message} (canary weight {current}%)"),
            );
        }
        return;
    }
    cx.set_routes(next);
    let message = match next.mirror {
        Some(m) => format!(
            "Advance {} canary: mirroring {m}% of requests",
            cx.target_name()
        ),
        None => format!("Advance {} canary weight {}", cx.target_name(), next.canary),
    };
    cx.notify(Severity::Info, NotifyKind::TrafficStep, message.clone());
    if cx.status.phase == CanaryPhase::Progressing {
        cx.event(false, "WeightAdvanced", message);
    } else {
        cx.enter(CanaryPhase::Progressing, "WeightAdvanced", message);
    }
}

/// A/B testing and blue/green: `iterations` steps with `during` routes; then promotion, with
/// `before_promotion` routes set first (blue/green switches all traffic to the canary).
fn iterate(cx: &mut Cx, during: Routes, before_promotion: Option<Routes>) {
    let total = cx.analysis.iterations();
    if cx.status.iterations >= total {
        return promotion_gate(cx, before_promotion);
    }
    cx.set_routes(during);
    cx.status.iterations = cx.status.iterations.saturating_add(1);
    let message = format!(
        "Advance {} canary iteration {}/{total}",
        cx.target_name(),
        cx.status.iterations
    );
    cx.notify(Severity::Info, NotifyKind::TrafficStep, message.clone());
    if cx.status.phase == CanaryPhase::Progressing {
        cx.event(false, "IterationAdvanced", message);
    } else {
        cx.enter(CanaryPhase::Progressing, "IterationAdvanced", message);
    }
}

/// The analysis is complete: promote when `confirm-promotion` agrees, else wait in
/// `WaitingPromotion` (the analysis keeps running every interval meanwhile).
fn promotion_gate(cx: &mut Cx, before_promotion: Option<Routes>) {
    match cx.gate(HookType::ConfirmPromotion) {
        Ok(()) => {
            if let Some(routes) = before_promotion {
                cx.set_routes(routes);
            }
            let message = format!("Copying {0} template spec to {0}-primary", cx.target_name());
            promote::begin(cx, message);
        }
        Err(failures) => {
            let message = format!(
                "Halt advancement {}: waiting for promotion approval: {}",
                cx.target_name(),
                join(&failures)
            );
            if cx.status.phase == CanaryPhase::WaitingPromotion {
                cx.event(false, "WaitingForApproval", message);
            } else {
                cx.enter(
                    CanaryPhase::WaitingPromotion,
                    "WaitingForApproval",
                    message.clone(),
                );
                if failures.iter().any(|f| !f.muted) {
                    cx.notify(Severity::Warn, NotifyKind::Waiting, message);
                }
            }
        }
    }
}
