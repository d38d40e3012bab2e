//! Trying analysis without risk: dry-run metrics and webhooks are evaluated and reported but
//! never counted; `noData` says what a query without data means; steps judged without a
//! metric (`noData: skip`) are inconclusive, and at `inconclusiveLimit` the rollout pauses for
//! a person.

mod common;

use common::*;
use fledge_api::CanaryPhase::*;
use fledge_api::{HookType, OperatorRequest, RequestAction};
use fledge_core::MetricOutcome;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The worked example with a third metric, `new-check`, whose query always fails its range.
fn with_failing_new_check(dry_run: Option<bool>) -> fledge_core::sim::Sim {
    let mut spec = canary_spec();
    let mut m = metric("new-check", None, Some(1.0));
    m.query = Some("sum(rate(new_errors_total[1m]))".into());
    m.dry_run = dry_run;
    analysis(&mut spec).metrics.as_mut().unwrap().push(m);
    let mut sim = initialized(spec);
    let mut default = sim.metrics;
    sim.metrics = Box::new(move |v, m| {
        if m.name == "new-check" {
            MetricOutcome::Value(5.0)
        } else {
            default(v, m)
        }
    });
    sim
}

#[test]
fn a_failing_dry_run_metric_is_reported_and_never_counted() {
    let mut sim = with_failing_new_check(Some(true));
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 200), "{sim:?}");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    assert_eq!(sim.status.failed_checks, 0);
    let reported: Vec<String> = sim
        .events()
        .into_iter()
        .filter(|(r, _)| r == "DryRunCheckFailed")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(reported.len(), 10, "one per analysis step: {reported:#?}");
    assert!(
        reported[0].contains("metric new-check: 5 is above the maximum 1"),
        "{}",
        reported[0]
    );
    let last = sim.status.rollout.as_ref().unwrap();
    let check = last.metrics.iter().find(|m| m.name == "new-check").unwrap();
    assert_eq!((check.passed, check.dry_run), (false, Some(true)));
    assert!(last.failures.is_empty(), "{:?}", last.failures);
    assert!(
        !sim.events().iter().any(|(r, _)| r == "CheckFailed"),
        "no failed check"
    );
}

#[test]
fn the_same_metric_without_dry_run_rolls_back() {
    let mut sim = with_failing_new_check(None);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Failed, 200), "{sim:?}");
    assert_eq!(sim.status.failed_checks, 5);
}

#[test]
fn a_failing_dry_run_webhook_holds_nothing() {
    let mut spec = canary_spec();
    let mut load = hook("load", "rollout");
    load.dry_run = Some(true);
    let mut rollback = hook("rollback-asker", "rollback");
    rollback.dry_run = Some(true);
    let mut gate = hook("gate", "confirm-promotion");
    gate.dry_run = Some(true);
    analysis(&mut spec).webhooks = Some(vec![load, rollback, gate]);
    let mut sim = initialized(spec);
    // Every webhook says no, and the rollback webhook asks for a rollback.
    sim.hooks = Box::new(|_, t, _| (t == HookType::Rollback, "no".to_string()));
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 200), "{sim:?}");
    assert_eq!(sim.status.failed_checks, 0);
    let events = sim.events();
    let dry = |what: &str| {
        events
            .iter()
            .filter(|(r, m)| r == "DryRunCheckFailed" && m.contains(what))
            .count()
    };
    assert!(dry("rollout webhook load failed: no") >= 10, "{events:#?}");
    assert!(dry("rollback webhook rollback-asker asked for a rollback") >= 10);
    assert!(dry("confirm-promotion webhook gate failed") >= 1);
    let checks = &sim.status.rollout.as_ref().unwrap().checks;
    assert!(
        checks
            .iter()
            .all(|c| c.dry_run == Some(true) && (c.passed == (c.kind == "rollback"))),
        "{checks:#?}"
    );
}

/// The worked example where `request-duration` never has data, with `noData` set.
fn without_duration_data(no_data: Option<&str>, limit: Option<i32>) -> fledge_core::sim::Sim {
    let mut spec = canary_spec();
    let a = analysis(&mut spec);
    a.metrics.as_mut().unwrap()[1].no_data = no_data.map(String::from);
    a.inconclusive_limit = limit;
    let mut sim = initialized(spec);
    let mut default = sim.metrics;
    sim.metrics = Box::new(move |v, m| {
        if m.name == "request-duration" {
            MetricOutcome::NoData
        } else {
            default(v, m)
        }
    });
    sim
}

#[test]
fn no_data_fails_by_default_and_passes_when_told_to() {
    let mut sim = without_duration_data(None, None);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Failed, 200), "{sim:?}");
    assert!(
        sim.status
            .rollout
            .as_ref()
            .unwrap()
            .failures
            .iter()
            .all(|f| f == "metric request-duration: no data")
    );

    let mut sim = without_duration_data(Some("pass"), None);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 200), "{sim:?}");
    assert_eq!(sim.status.failed_checks, 0);
    let r = sim.status.rollout.as_ref().unwrap();
    assert_eq!(r.inconclusive_checks, 0);
    let d = r
        .metrics
        .iter()
        .find(|m| m.name == "request-duration")
        .unwrap();
    assert!(
        d.passed && d.value.is_none() && d.inconclusive.is_none(),
        "{d:?}"
    );
}

#[test]
fn skipped_metrics_make_steps_inconclusive_without_a_limit_to_pause() {
    let mut sim = without_duration_data(Some("skip"), None);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 200), "{sim:?}");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    let r = sim.status.rollout.as_ref().unwrap();
    assert_eq!((sim.status.failed_checks, r.inconclusive_checks), (0, 10));
    let d = r
        .metrics
        .iter()
        .find(|m| m.name == "request-duration")
        .unwrap();
    assert_eq!((d.passed, d.inconclusive), (false, Some(true)));
    let inconclusive = sim
        .events()
        .into_iter()
        .filter(|(r, _)| r == "AnalysisInconclusive")
        .collect::<Vec<_>>();
    assert_eq!(inconclusive.len(), 10);
    assert!(
        inconclusive[2]
            .1
            .contains("inconclusive (3): no data for request-duration"),
        "{inconclusive:?}"
    );
}

#[test]
fn at_the_inconclusive_limit_the_rollout_pauses_for_a_person() {
    let mut sim = without_duration_data(Some("skip"), Some(3));
    sim.new_revision("rev-2");
    assert!(sim.run_until(200, |s| s.status.paused.is_some()), "{sim:?}");
    let paused = sim.status.paused.clone().unwrap();
    assert_eq!(paused.user, "fledge (inconclusive analysis)");
    let weight = sim.status.canary_weight;
    // The pre-rollout step set 5%; the first two inconclusive steps advanced to 10% and 15%;
    // the third holds the weight.
    assert_eq!(sim.weights(), [0, 5, 10, 15]);
    assert!(
        sim.events()
            .iter()
            .any(|(r, m)| r == "InconclusivePaused" && m.contains("Paused after 3")),
    );
    // Nothing moves while paused.
    sim.run_until(10, |_| false);
    assert_eq!(
        (sim.status.phase, sim.status.canary_weight),
        (Progressing, weight)
    );
    // A person resumes: it goes on, and pauses again three inconclusive steps later.
    sim.status.request = Some(Box::new(OperatorRequest {
        id: "resume".into(),
        action: RequestAction::Resume,
        gate: None,
        user: "alice".into(),
        requested_at: Some(Time(t0())),
    }));
    sim.reconcile();
    assert_eq!(sim.status.paused, None);
    assert!(sim.run_until(200, |s| s.status.paused.is_some()), "{sim:?}");
    assert_eq!(sim.status.rollout.as_ref().unwrap().inconclusive_checks, 6);
    assert!(sim.status.canary_weight > weight);
}
