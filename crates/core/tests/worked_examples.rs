//! Flagger's documented worked examples, run through the simulator.

mod common;

use std::time::Duration;

use common::*;
use fledge_api::CanaryPhase::*;
use fledge_api::LedgerRevision;
use fledge_core::sim::Sim;
use fledge_core::{Action, LedgerEvent, LedgerView, MetricOutcome, Routes};

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
    let mut sim = initialized(with_git(canary_spec(), Some("deploy/app.yaml")));
    sim.metrics = Box::new(|_, m| {
        if m.name == "request-success-rate" {
            MetricOutcome::Value(90.0)
        } else {
            MetricOutcome::Value(100.0)
        }
    });
    sim.new_revision("rev-2");
    assert!(sim.run_to(Failed, 200), "{sim:?}");
    // The reconcile right after the rollback scales the canary to zero.
    sim.reconcile();
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

/// What the ledger of a Canary says after `rev-1` and then `rev-2` were promoted.
fn ledger_promoted_rev1_then_rev2() -> LedgerView {
    LedgerView::Read(vec![
        LedgerRevision {
            revision: "rev-2".into(),
            images: vec!["ghcr.io/acme/app:2.0.0".into()],
            promoted_at: Some("2026-11-20T10:00:00Z".into()),
        },
        LedgerRevision {
            revision: "rev-1".into(),
            images: vec!["ghcr.io/acme/app:1.0.0".into()],
            promoted_at: Some("2026-11-19T10:00:00Z".into()),
        },
    ])
}

/// A rebuilt cluster: the Canary is new, the target runs `hash`, the ledger remembers.
fn rebuilt(hash: &str, ledger: LedgerView) -> Sim {
    let mut sim = Sim::new(with_git(canary_spec(), None), t0());
    if let Some(t) = sim.world.target.as_mut() {
        t.hash = hash.into();
    }
    sim.world.ledger = ledger;
    sim
}

#[test]
fn a_rebuilt_cluster_starts_the_primary_from_the_ledger_and_analyses_the_target() {
    let mut sim = rebuilt("rev-3", ledger_promoted_rev1_then_rev2());
    assert!(sim.run_to(Initialized, 10), "{sim:?}");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert!(
        sim.actions().any(|a| a
            == &Action::EnsurePrimaryFrom {
                revision: "rev-2".into(),
                images: vec!["ghcr.io/acme/app:2.0.0".into()],
            }),
        "the primary is created on the last promoted images"
    );
    assert_eq!(
        sim.world.primary.as_ref().map(|p| p.hash.as_str()),
        Some("rev-2")
    );
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-2"));
    assert_eq!(sim.status.promoted_revisions, vec!["rev-1", "rev-2"]);
    assert_eq!(sim.status.initialized_from_ledger, None);
    let evs = sim.events();
    assert!(
        evs.iter().any(|(r, m)| r == "InitializingFromLedger"
            && m.contains("rev-2")
            && m.contains("ghcr.io/acme/app:2.0.0")
            && m.contains("rev-3")),
        "{evs:?}"
    );
    // The ledger is read only while the primary is missing.
    let reads = sim.trace.iter().filter(|r| r.needs.ledger).count();
    assert_eq!(reads, 1);
    // The target's revision was never promoted: it goes through the whole analysis.
    assert!(sim.run_to(Succeeded, 200), "{sim:?}");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    let weights: Vec<i32> = sim.weights().into_iter().skip(1).collect();
    assert_eq!(
        weights,
        (1..=10).map(|i| i * 5).chain([0]).collect::<Vec<_>>()
    );
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-3"));
    let started = sim.actions().find_map(|a| match a {
        Action::RecordLedger(e) if e.event == LedgerEvent::Started => Some(e.clone()),
        _ => None,
    });
    let started = started.expect("the rollout is recorded");
    assert_eq!(started.revision, "rev-3");
    assert_eq!(started.primary_revision.as_deref(), Some("rev-2"));
}

#[test]
fn a_rebuilt_cluster_on_the_last_promoted_revision_initializes_as_usual() {
    let mut sim = rebuilt("rev-2", ledger_promoted_rev1_then_rev2());
    assert!(sim.run_to(Initialized, 10), "{sim:?}");
    assert!(sim.actions().any(|a| a == &Action::EnsurePrimary));
    assert!(
        !sim.actions()
            .any(|a| matches!(a, Action::EnsurePrimaryFrom { .. }))
    );
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-2"));
    // Nothing new to roll out.
    sim.run_until(20, |_| false);
    assert_eq!(sim.status.phase, Initialized);
}

#[test]
fn a_rebuilt_cluster_on_an_older_promoted_revision_rolls_back_fast() {
    // Git was reverted to rev-1 after rev-2: the primary starts on rev-2 (the last promoted),
    // and rev-1, promoted before, is a rollback to a known-good revision: no analysis.
    let mut sim = rebuilt("rev-1", ledger_promoted_rev1_then_rev2());
    assert!(sim.run_to(Initialized, 10), "{sim:?}");
    assert!(sim.run_to(Succeeded, 50), "{sim:?}");
    assert!(!sim.trace.iter().any(|r| r.needs.metrics), "not analysed");
    assert!(sim.events().iter().any(|(r, _)| r == "FastRollback"));
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-1"));
}

#[test]
fn an_unreadable_ledger_never_holds_initialization() {
    let mut sim = rebuilt(
        "rev-3",
        LedgerView::Unreadable("cannot reach git://127.0.0.1/app.git".into()),
    );
    assert!(sim.run_to(Initialized, 10), "{sim:?}");
    assert_eq!(
        sim.world.primary.as_ref().map(|p| p.hash.as_str()),
        Some("rev-3")
    );
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-3"));
    let evs = sim.events();
    assert!(
        evs.iter()
            .any(|(r, m)| r == "LedgerUnreadable" && m.contains("cannot reach")),
        "{evs:?}"
    );
    // An empty ledger (a new Canary) and a Canary without spec.gitops start from the target;
    // without spec.gitops the ledger is never read.
    let mut sim = rebuilt("rev-3", LedgerView::Read(Vec::new()));
    assert!(sim.run_to(Initialized, 10), "{sim:?}");
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-3"));
    let mut sim = Sim::new(canary_spec(), t0());
    sim.world.ledger = ledger_promoted_rev1_then_rev2();
    assert!(sim.run_to(Initialized, 10), "{sim:?}");
    assert!(!sim.trace.iter().any(|r| r.needs.ledger));
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-1"));
}

#[test]
fn a_rollout_keeps_its_transitions_and_each_steps_webhook_answers_for_the_ledger() {
    let mut spec = canary_spec();
    analysis(&mut spec).webhooks = Some(vec![hook("load", "rollout")]);
    let sim = roll_out(spec);
    assert_eq!(sim.status.phase, Succeeded, "{sim:?}");
    let r = sim.status.rollout.clone().expect("rollout");
    let phases: Vec<_> = r.transitions.iter().map(|t| t.phase).collect();
    assert_eq!(phases, vec![Progressing, Promoting, Finalising, Succeeded]);
    let reasons: Vec<&str> = r.transitions.iter().map(|t| t.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec!["NewRevision", "Promoting", "Finalising", "Succeeded"]
    );
    assert!(r.transitions.iter().all(|t| t.time.is_some()));
    // Every analysis step keeps its metrics and the rollout webhook's answer.
    assert_eq!(r.history.len(), 10);
    for step in &r.history {
        assert_eq!(step.metrics.len(), 2, "{step:?}");
        assert_eq!(step.webhooks.len(), 1, "{step:?}");
        assert!(step.webhooks[0].passed && step.webhooks[0].name == "load");
    }
    // The ending ledger entry comes with the status that holds all of it.
    assert!(
        sim.actions()
            .any(|a| matches!(a, Action::RecordLedger(e) if e.event == LedgerEvent::Promoted))
    );
}
