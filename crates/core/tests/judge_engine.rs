//! The engine with `spec.analysis.judge`: a fresh baseline beside the canary for the rollout's
//! length, each step's statistical judgement in the status, the history, Events and alerts, and
//! a canary the judge finds worse rolled back.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::*;
use fledge_api::CanaryPhase::*;
use fledge_api::{CanaryJudge, CanaryMetric, CrossNamespaceObjectReference, MetricJudge};
use fledge_core::{Action, MetricOutcome, NotifyKind};

/// Values around `median`, without ties.
fn samples(median: f64) -> Vec<f64> {
    (0..40)
        .map(|i| median - 0.0195 + 0.001 * ((i * 37) % 40) as f64)
        .collect()
}

/// The worked example plus a `latency` metric judged against a fresh baseline; the canary's
/// latency median is whatever `canary` holds (the baseline's is 0.05).
fn judged(canary: Rc<Cell<f64>>) -> fledge_core::sim::Sim {
    let mut spec = canary_spec();
    let a = analysis(&mut spec);
    a.judge = Some(Box::new(CanaryJudge {
        r#type: "statistical".into(),
        ..Default::default()
    }));
    a.metrics.as_mut().unwrap().push(CanaryMetric {
        name: "latency".into(),
        template_ref: Some(CrossNamespaceObjectReference {
            name: "latency".into(),
            ..Default::default()
        }),
        judge: Some(MetricJudge {
            direction: Some("increase".into()),
            critical: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut sim = initialized(spec);
    let mut default = sim.metrics;
    sim.metrics = Box::new(move |v, m| {
        if m.name == "latency" {
            MetricOutcome::Samples {
                baseline: samples(0.05),
                canary: samples(canary.get()),
            }
        } else {
            default(v, m)
        }
    });
    sim
}

fn baseline_actions(sim: &fledge_core::sim::Sim) -> Vec<&'static str> {
    sim.actions()
        .filter_map(|a| match a {
            Action::EnsureBaseline => Some("ensure"),
            Action::RemoveBaseline => Some("remove"),
            _ => None,
        })
        .collect()
}

#[test]
fn an_equal_canary_promotes_with_a_baseline_that_lives_as_long_as_the_rollout() {
    let mut sim = judged(Rc::new(Cell::new(0.05)));
    assert!(!sim.world.baseline);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Progressing, 10), "{sim:?}");
    assert!(sim.world.baseline, "the baseline comes up with the canary");
    assert!(sim.run_to(Succeeded, 200), "{sim:?}");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert!(!sim.world.baseline, "and goes with it");
    // Initialization scales the canary to zero and removes any baseline left behind.
    assert_eq!(baseline_actions(&sim), ["remove", "ensure", "remove"]);
    let r = sim.status.rollout.as_ref().unwrap();
    assert_eq!(r.judgement.as_ref().unwrap().outcome, "pass");
    let latency = r.metrics.iter().find(|m| m.name == "latency").unwrap();
    assert_eq!(latency.classification.as_deref(), Some("Pass"));
    assert_eq!(latency.baseline_median, Some(0.05));
    // The fixed-threshold metrics are judged as before, in the spec's order.
    let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["request-success-rate", "request-duration", "latency"]
    );
    assert!(r.history.iter().all(|h| h.judgement.is_some()));
    let judgements = sim
        .events()
        .into_iter()
        .filter(|(reason, _)| reason == "Judgement")
        .count();
    assert_eq!(judgements, r.history.len(), "one Event per judged step");
}

#[test]
fn a_slower_canary_is_rolled_back_with_the_judgement_in_the_alert_and_the_baseline_removed() {
    let latency = Rc::new(Cell::new(0.05));
    let mut sim = judged(latency.clone());
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 200), "{sim:?}");
    latency.set(0.08);
    sim.new_revision("rev-3");
    assert!(sim.run_to(Failed, 200), "{sim:?}");
    // The reconcile right after the rollback scales the canary to zero.
    sim.reconcile();
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert!(!sim.world.baseline);
    assert_eq!(
        baseline_actions(&sim),
        ["remove", "ensure", "remove", "ensure", "remove"]
    );
    let r = sim.status.rollout.as_ref().unwrap();
    let judgement = r.judgement.as_ref().unwrap();
    assert_eq!(judgement.outcome, "fail");
    assert!(
        judgement.reason.contains("critical metric failed: latency"),
        "{judgement:?}"
    );
    let check = r.metrics.iter().find(|m| m.name == "latency").unwrap();
    assert_eq!(check.classification.as_deref(), Some("High"));
    assert_eq!(
        (check.baseline_median, check.canary_median),
        (Some(0.05), Some(0.08))
    );
    let alert = sim
        .actions()
        .find_map(|a| match a {
            Action::Notify {
                kind: NotifyKind::CheckFailed,
                message,
                ..
            } => Some(message.clone()),
            _ => None,
        })
        .expect("a check-failed alert");
    assert!(
        alert.contains("statistical judgement failed") && alert.contains("latency High"),
        "{alert}"
    );
}
