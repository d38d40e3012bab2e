//! Flagger's documented worked examples, run through the simulator.

mod common;

use std::time::Duration;

use common::*;
use fledge_api::CanaryPhase::*;
use fledge_core::sim::Sim;
use fledge_core::{Action, LedgerEvent, MetricOutcome, Routes};

#[test]
fn canary_step_5_max_50_promotes_after_10_analysis_steps() {
    let mut sim = initialized(canary_spec());
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 200), "{sim:?}");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    let expected: Vec<i32> = (1..=10).map(|i| i * 5).chain([0]).collect();
    // The weights set during the rollout: 5, 10, ..., 50, then all back to the primary.
    let weights: Vec<i32> = sim.weights().into_iter().skip(1).collect();
    assert_eq!(weights, expected);
    // One pre-rollout step (0 -> 5), then one analysis at each weight 5..=50: 11 steps,
    // ten intervals from the first step to the promotion.
    assert_eq!(sim.steps(), 11);
    assert_eq!(sim.status.failed_checks, 0);
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-2"));
    assert_eq!(
        sim.phases(),
        vec![
            Unknown,
            Initializing,
            Initialized,
            Progressing,
            Promoting,
            Finalising,
            Succeeded
        ]
    );
    let analyses = sim.trace.iter().filter(|r| r.needs.metrics).count();
    assert_eq!(analyses, 10, "metrics are queried once per analysis step");
    let promoting = sim
        .trace
        .iter()
        .find(|r| r.plan.status.phase == Promoting)
        .expect("promoted");
    let first_step = sim
        .trace
        .iter()
        .find(|r| r.plan.status.canary_weight == 5)
        .expect("first step");
    assert_eq!(
        promoting.at.duration_since(first_step.at).as_secs(),
        600,
        "time to promotion = interval * (maxWeight / stepWeight)"
    );
}

#[test]
fn canary_failing_from_the_start_is_rolled_back_after_5_failed_checks() {
    let mut sim = initialized(canary_spec());
    sim.metrics = Box::new(|_, m| {
        if m.name == "request-success-rate" {
            MetricOutcome::Value(90.0)
        } else {
            MetricOutcome::Value(100.0)
        }
    });
    sim.new_revision("rev-2");
    assert!(sim.run_to(Failed, 200), "{sim:?}");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.status.failed_checks, 5);
    assert_eq!(
        sim.weights().into_iter().skip(1).collect::<Vec<_>>(),
        vec![5, 0]
    );
    assert_eq!(sim.world.routes, Routes::PRIMARY);
    assert_eq!(sim.world.target.as_ref().map(|t| t.replicas), Some(0));
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-1"));
    assert_eq!(sim.status.last_applied_spec.as_deref(), Some("rev-2"));
    let failed_events = sim
        .events()
        .iter()
        .filter(|(r, _)| r == "CheckFailed")
        .count();
    assert_eq!(failed_events, 5);
    assert!(
        sim.actions()
            .any(|a| matches!(a, Action::RevertInGit { revision, .. } if revision == "rev-2"))
    );
    assert!(sim.actions().any(
        |a| matches!(a, Action::RecordLedger(e) if e.event == LedgerEvent::RolledBack && e.reasons.len() == 6)
    ));
    // Not retried until the target changes again.
    let before = sim.trace.len();
    sim.run_until(20, |_| false);
    assert_eq!(sim.status.phase, Failed);
    assert!(
        sim.trace[before..]
            .iter()
            .all(|r| r.plan.actions.len() == 1)
    );
}

#[test]
fn step_weights_1_2_10_80() {
    let mut spec = canary_spec();
    let a = analysis(&mut spec);
    a.step_weight = None;
    a.max_weight = None;
    a.step_weights = Some(vec![1, 2, 10, 80]);
    let sim = roll_out(spec);
    assert_eq!(sim.status.phase, Succeeded);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(
        sim.weights().into_iter().skip(1).collect::<Vec<_>>(),
        vec![1, 2, 10, 80, 0]
    );
}

#[test]
fn ab_testing_with_10_iterations() {
    let mut sim = initialized(ab_spec(10));
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 200), "{sim:?}");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.status.iterations, 10);
    let ab = Routes {
        ab_match: true,
        ..Routes::PRIMARY
    };
    assert_eq!(
        sim.routes().into_iter().skip(1).collect::<Vec<_>>(),
        vec![ab, Routes::PRIMARY]
    );
    let iterations: Vec<String> = sim
        .events()
        .into_iter()
        .filter(|(r, _)| r == "IterationAdvanced")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(iterations.len(), 10);
    assert_eq!(iterations[9], "Advance podinfo canary iteration 10/10");
    assert_eq!(sim.trace.iter().filter(|r| r.needs.metrics).count(), 10);
}

#[test]
fn restart_resume_gives_the_same_weights_as_an_uninterrupted_run() {
    let reference = roll_out(canary_spec());
    // Same rollout, with a reconcile every 7 seconds on top (watch events, restarts): the
    // status alone decides, so the traffic steps are the same.
    let mut sim = initialized(canary_spec());
    sim.extra_reconcile_every = Some(Duration::from_secs(7));
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 2000));
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.weights(), reference.weights());
    assert_eq!(sim.steps(), reference.steps());
}

#[test]
fn a_fresh_simulator_has_no_violations() {
    let mut sim = Sim::new(canary_spec(), t0());
    sim.reconcile();
    assert!(sim.violations.is_empty());
}

#[test]
fn a_restarted_controller_continues_from_the_stored_json() {
    let reference = roll_out(canary_spec());
    let mut sim = initialized(canary_spec());
    sim.new_revision("rev-2");
    let mut restarts = 0;
    while sim.status.phase != Succeeded && sim.trace.len() < 500 {
        sim.reconcile();
        // Every other reconcile a new controller process starts with nothing but the stored
        // status, as the API server returns it.
        if sim.trace.len().is_multiple_of(2) {
            let stored = serde_json::to_value(&sim.status).expect("serialize");
            let mut fresh = Sim::new(canary_spec(), sim.now);
            fresh.status = serde_json::from_value(stored).expect("deserialize");
            fresh.world = sim.world.clone();
            fresh.trace = std::mem::take(&mut sim.trace);
            sim = fresh;
            restarts += 1;
        }
    }
    assert!(restarts > 5);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.status.phase, Succeeded);
    assert_eq!(sim.weights(), reference.weights());
}
