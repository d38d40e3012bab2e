//! `kubectl fledge` requests (`.status.request`) as decision rules: each is handled exactly once,
//! carried out when it fits the phase and refused with the reason when it does not.

mod common;

use common::*;
use fledge_api::{
    CanaryPhase, CanaryPhase::*, CanarySpec, CanaryStatus, Gate, HookType, OperatorRequest,
    RequestAction, RolloutProgress,
};
use fledge_core::requests::{fits, pending_gate};
use fledge_core::sim::Sim;
use fledge_core::{MetricOutcome, Observations, Readiness, TargetObservation, plan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;

fn request(action: RequestAction, gate: Option<Gate>, id: &str) -> OperatorRequest {
    OperatorRequest {
        id: id.into(),
        action,
        gate,
        user: "alice".into(),
        requested_at: Some(Time(t0())),
    }
}

/// Puts a request in the status and reconciles once.
fn ask(sim: &mut Sim, action: RequestAction, gate: Option<Gate>) {
    let id = format!("r{}", sim.trace.len());
    sim.status.request = Some(Box::new(request(action, gate, &id)));
    sim.reconcile();
    assert_eq!(sim.status.request, None, "every request is consumed");
    let last = sim.status.last_request.as_ref().expect("an outcome");
    assert_eq!(last.request.id, id);
}

fn accepted(sim: &Sim) -> bool {
    sim.status.last_request.as_ref().is_some_and(|l| l.accepted)
}

fn last_event(sim: &Sim, reason: &str) -> String {
    sim.events()
        .into_iter()
        .rev()
        .find(|(r, _)| r == reason)
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("no {reason} Event in {:?}", sim.events()))
}

/// A weighted canary (stepWeight 5 up to 50) rolling out `rev-2`, at `weight`.
fn rolling_at(weight: i32) -> Sim {
    let mut sim = initialized(canary_spec());
    sim.new_revision("rev-2");
    assert!(
        sim.run_until(100, |s| s.status.canary_weight >= weight),
        "{sim:?}"
    );
    sim
}

fn primary_hash(sim: &Sim) -> String {
    sim.world
        .primary
        .as_ref()
        .map(|p| p.hash.clone())
        .unwrap_or_default()
}

#[test]
fn promote_skips_the_remaining_analysis() {
    let mut sim = rolling_at(10);
    let steps = sim.steps();
    ask(&mut sim, RequestAction::Promote, None);
    assert!(accepted(&sim));
    assert_eq!(sim.status.phase, Promoting);
    assert!(last_event(&sim, "PromoteRequested").contains("promote requested by alice"));
    assert!(sim.run_to(Succeeded, 20), "{sim:?}");
    assert_eq!(sim.steps(), steps, "no analysis step after the promote");
    assert_eq!(primary_hash(&sim), "rev-2");
    assert_eq!(sim.status.canary_weight, 0);
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
    // The ledger records who asked.
    let promoted = sim
        .actions()
        .filter_map(|a| match a {
            fledge_core::Action::RecordLedger(e)
                if e.event == fledge_core::LedgerEvent::Promoted =>
            {
                Some(e.reasons.clone())
            }
            _ => None,
        })
        .last()
        .expect("a ledger record of the promotion");
    assert_eq!(
        promoted,
        ["promoted on request by alice, skipping the remaining analysis"]
    );
    // The next rollout, promoted by the analysis, records no request.
    sim.new_revision("rev-3");
    assert!(
        sim.run_until(300, |s| s.status.last_promoted_spec.as_deref()
            == Some("rev-3"))
    );
    let last = sim
        .actions()
        .filter_map(|a| match a {
            fledge_core::Action::RecordLedger(e)
                if e.event == fledge_core::LedgerEvent::Promoted =>
            {
                Some(e.reasons.clone())
            }
            _ => None,
        })
        .last()
        .unwrap();
    assert!(last.is_empty(), "{last:?}");
}

#[test]
fn a_request_that_does_not_fit_the_phase_is_refused_with_the_reason() {
    let mut sim = roll_out(canary_spec());
    assert_eq!(sim.status.phase, Succeeded);
    let before = sim.status.clone();
    ask(&mut sim, RequestAction::Promote, None);
    assert!(!accepted(&sim));
    let last = sim.status.last_request.clone().unwrap();
    assert_eq!(last.message, "no rollout is in progress (it is Succeeded)");
    assert!(
        last_event(&sim, "RequestRejected")
            .contains("promote requested by alice refused: no rollout is in progress")
    );
    assert_eq!(sim.status.phase, Succeeded);
    assert_eq!(sim.status.last_promoted_spec, before.last_promoted_spec);
    for (action, words) in [
        (RequestAction::Abort, "no rollout is in progress"),
        (RequestAction::Retry, "only a Failed rollout can be retried"),
        (RequestAction::Resume, "it is not paused"),
    ] {
        ask(&mut sim, action, None);
        let last = sim.status.last_request.clone().unwrap();
        assert!(!last.accepted && last.message.contains(words), "{last:?}");
    }
}

#[test]
fn abort_rolls_back_now() {
    let mut sim = rolling_at(15);
    ask(&mut sim, RequestAction::Abort, None);
    assert!(accepted(&sim));
    assert_eq!(sim.status.phase, Failed);
    assert_eq!(sim.status.canary_weight, 0);
    assert_eq!(primary_hash(&sim), "rev-1");
    assert!(last_event(&sim, "RolledBack").contains("aborted by alice"));
    // It stays rolled back: the revision is not tried again on its own.
    sim.run_until(10, |_| false);
    assert_eq!(sim.status.phase, Failed);
}

fn gated_spec(gates: &[&str]) -> CanarySpec {
    let mut spec = canary_spec();
    let a = analysis(&mut spec);
    a.step_weight = Some(25);
    a.webhooks = Some(gates.iter().map(|g| hook(g, g)).collect());
    spec
}

/// Every gate closed: a load tester that never answers yes.
fn closed_gates(sim: &mut Sim) {
    sim.hooks = Box::new(|_, t, _| {
        let gate = matches!(
            t,
            HookType::ConfirmRollout
                | HookType::ConfirmTrafficIncrease
                | HookType::ConfirmPromotion
        );
        (!gate && t != HookType::Rollback, "closed".into())
    });
}

#[test]
fn abort_of_a_waiting_revision_never_starts_it() {
    let mut sim = initialized(gated_spec(&["confirm-rollout"]));
    closed_gates(&mut sim);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Waiting, 5));
    ask(&mut sim, RequestAction::Abort, None);
    assert!(accepted(&sim));
    assert_eq!(sim.status.phase, Failed);
    assert_eq!(sim.status.last_applied_spec.as_deref(), Some("rev-2"));
    sim.hooks = Box::new(|_, _, _| (true, String::new()));
    sim.run_until(10, |_| false);
    assert_eq!(
        sim.status.phase, Failed,
        "the aborted revision stays rolled back"
    );
}

#[test]
fn retry_runs_a_failed_revision_again() {
    let mut sim = initialized(canary_spec());
    sim.metrics = Box::new(|_, _| MetricOutcome::NoData);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Failed, 100), "{sim:?}");
    assert_eq!(sim.status.failed_checks, 5);
    sim.metrics = Box::new(|_, m| MetricOutcome::Value(fledge_core::sim::passing_value(m)));
    ask(&mut sim, RequestAction::Retry, None);
    assert!(accepted(&sim));
    assert_eq!(sim.status.phase, Progressing);
    assert_eq!(sim.status.failed_checks, 0);
    assert!(last_event(&sim, "RetryRequested").contains("retry requested by alice"));
    assert!(sim.run_to(Succeeded, 100), "{sim:?}");
    assert_eq!(primary_hash(&sim), "rev-2");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

#[test]
fn retry_waits_for_the_confirm_rollout_gate_like_any_new_revision() {
    let mut sim = initialized(gated_spec(&["confirm-rollout"]));
    closed_gates(&mut sim);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Waiting, 5));
    ask(&mut sim, RequestAction::Abort, None);
    ask(&mut sim, RequestAction::Retry, None);
    assert!(accepted(&sim));
    assert_eq!(sim.status.phase, Waiting);
    sim.run_until(5, |_| false);
    assert_eq!(sim.status.phase, Waiting, "still waiting for approval");
    ask(&mut sim, RequestAction::Approve, Some(Gate::ConfirmRollout));
    assert_eq!(sim.status.phase, Progressing);
}

#[test]
fn pause_holds_everything_until_resume() {
    let mut sim = rolling_at(10);
    ask(&mut sim, RequestAction::Pause, None);
    assert!(accepted(&sim));
    assert_eq!(
        sim.status.paused.as_ref().map(|p| p.user.as_str()),
        Some("alice")
    );
    let (weight, steps, reconciles) = (sim.status.canary_weight, sim.steps(), sim.trace.len());
    sim.run_until(30, |_| false);
    assert_eq!(sim.status.canary_weight, weight);
    assert_eq!(sim.steps(), steps);
    assert!(
        sim.trace[reconciles..]
            .iter()
            .all(|r| r.needs.is_empty() && r.plan.status == sim.status),
        "nothing read, nothing changed while paused"
    );
    ask(&mut sim, RequestAction::Pause, None);
    assert!(!accepted(&sim), "already paused");
    ask(&mut sim, RequestAction::Resume, None);
    assert!(accepted(&sim));
    assert_eq!(sim.status.paused, None);
    assert!(sim.run_to(Succeeded, 100), "{sim:?}");
}

#[test]
fn approve_opens_each_gate_once() {
    let mut sim = initialized(gated_spec(&[
        "confirm-rollout",
        "confirm-traffic-increase",
        "confirm-promotion",
    ]));
    closed_gates(&mut sim);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Waiting, 5));
    assert_eq!(
        pending_gate(&sim.spec, &sim.status),
        Some(Gate::ConfirmRollout)
    );
    ask(&mut sim, RequestAction::Approve, Some(Gate::ConfirmRollout));
    assert!(accepted(&sim));
    assert_eq!(sim.status.phase, Progressing, "started at once");
    assert!(last_event(&sim, "GateApproved").contains("approved by alice"));

    // The first step (pre-rollout) passes, then the traffic increase waits.
    sim.run_until(10, |_| false);
    assert_eq!(sim.status.canary_weight, 0);
    assert_eq!(
        pending_gate(&sim.spec, &sim.status),
        Some(Gate::ConfirmTrafficIncrease)
    );
    let mut weights = Vec::new();
    for _ in 0..2 {
        ask(
            &mut sim,
            RequestAction::Approve,
            Some(Gate::ConfirmTrafficIncrease),
        );
        assert!(accepted(&sim));
        sim.run_until(10, |_| false);
        weights.push(sim.status.canary_weight);
    }
    assert_eq!(weights, [25, 50], "one step per approval");
    assert_eq!(sim.status.phase, WaitingPromotion);
    let gate = sim
        .status
        .rollout
        .as_ref()
        .and_then(|r| r.checks.iter().find(|c| c.kind == "confirm-promotion"))
        .cloned()
        .expect("the gate's answer is recorded");
    assert!(!gate.passed && gate.message == "closed", "{gate:?}");
    ask(&mut sim, RequestAction::Approve, None);
    assert!(!accepted(&sim), "approve needs a gate");
    let gate = pending_gate(&sim.spec, &sim.status);
    assert_eq!(gate, Some(Gate::ConfirmPromotion));
    // An approval waits for the gate's next step when that step is not due yet.
    let mut early = sim.status.clone();
    early.request = Some(Box::new(request(RequestAction::Approve, gate, "early")));
    let mut obs = sim.observe();
    obs.now = sim.trace.last().unwrap().at;
    let p = plan(&sim.spec, &early, &obs);
    assert_eq!(p.status.phase, WaitingPromotion);
    let kept = fledge_core::requests::approval(&p.status, Gate::ConfirmPromotion);
    assert_eq!(kept.map(|a| a.id.as_str()), Some("early"));
    let twice = request(RequestAction::Approve, gate, "twice");
    assert_eq!(
        fits(&sim.spec, &p.status, &twice),
        Err("confirm-promotion is already approved (by alice) and not used yet".into())
    );
    ask(&mut sim, RequestAction::Approve, gate);
    assert!(accepted(&sim));
    assert_eq!(
        sim.status.phase, Promoting,
        "the step was due: promoted at once"
    );
    assert!(sim.run_to(Succeeded, 20), "{sim:?}");
    assert_eq!(primary_hash(&sim), "rev-2");
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

#[test]
fn approving_an_undeclared_gate_is_refused() {
    let mut sim = rolling_at(5);
    ask(
        &mut sim,
        RequestAction::Approve,
        Some(Gate::ConfirmPromotion),
    );
    let last = sim.status.last_request.clone().unwrap();
    assert!(!last.accepted);
    assert_eq!(
        last.message,
        "spec.analysis.webhooks declares no confirm-promotion gate; there is nothing to approve"
    );
}

#[test]
fn webhook_answers_are_recorded() {
    let mut spec = canary_spec();
    analysis(&mut spec).webhooks = Some(vec![hook("acceptance", "rollout")]);
    let mut sim = initialized(spec);
    sim.hooks = Box::new(|_, t, _| (t != HookType::Rollback, "HTTP 200 load test ran".into()));
    sim.new_revision("rev-2");
    assert!(
        sim.run_until(20, |s| s.status.canary_weight >= 10),
        "{sim:?}"
    );
    let checks = sim.status.rollout.clone().unwrap().checks;
    assert_eq!(checks.len(), 1, "one record per webhook: {checks:?}");
    let acceptance = &checks[0];
    assert_eq!(
        (
            acceptance.kind.as_str(),
            acceptance.name.as_str(),
            acceptance.passed
        ),
        ("rollout", "acceptance", true)
    );
    assert_eq!(acceptance.message, "HTTP 200 load test ran");
    assert_eq!(
        acceptance.at,
        sim.status.rollout.as_ref().unwrap().last_step_time
    );
}

// ---- properties ---------------------------------------------------------------------------

const PHASES: [CanaryPhase; 12] = [
    Unknown,
    Initializing,
    Initialized,
    Waiting,
    Progressing,
    WaitingPromotion,
    Promoting,
    Finalising,
    Succeeded,
    Failed,
    Terminating,
    Terminated,
];

fn arb_request() -> impl Strategy<Value = OperatorRequest> {
    (
        proptest::sample::select(RequestAction::ALL.to_vec()),
        proptest::option::of(proptest::sample::select(Gate::ALL.to_vec())),
        "[a-z0-9]{1,8}",
    )
        .prop_map(|(action, gate, id)| request(action, gate, &id))
}

fn arb_status() -> impl Strategy<Value = CanaryStatus> {
    (
        proptest::sample::select(PHASES.to_vec()),
        0..=60i32,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(phase, weight, failed_rev, paused, promoted)| CanaryStatus {
                phase,
                canary_weight: weight,
                last_applied_spec: Some(if failed_rev { "rev-2" } else { "rev-1" }.into()),
                last_promoted_spec: promoted.then(|| "rev-1".into()),
                tracked_configs: Some(Default::default()),
                last_promoted_configs: Some(Default::default()),
                paused: paused.then(|| Box::new(request(RequestAction::Pause, None, "p"))),
                rollout: Some(RolloutProgress {
                    start_time: Some(Time(t0())),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
}

fn world(deleting: bool, target: Option<&str>) -> Observations {
    Observations {
        generation: Some(1),
        deleting,
        target: target.map(|hash| TargetObservation {
            spec_hash: hash.into(),
            tracked_configs: Default::default(),
            readiness: Readiness::ready(2),
        }),
        primary: Some(Readiness::ready(2)),
        ..Observations::at(at(3600))
    }
}

fn all_gates_spec() -> CanarySpec {
    gated_spec(&[
        "confirm-rollout",
        "confirm-traffic-increase",
        "confirm-promotion",
    ])
}

/// How many Events of the plan match.
fn events_with(p: &fledge_core::Plan, f: impl Fn(&str, &str) -> bool) -> usize {
    p.actions
        .iter()
        .filter(|a| match a {
            fledge_core::Action::RecordEvent {
                reason, message, ..
            } => f(reason, message),
            _ => false,
        })
        .count()
}

proptest! {
    /// Whatever the request and the situation, it is consumed in this very decision, its
    /// outcome names it, it is carried out only if it fits, and replaying the decision with the
    /// status it wrote never handles it again.
    #[test]
    fn every_request_is_handled_exactly_once(
        req in arb_request(),
        status in arb_status(),
        deleting in any::<bool>(),
        target in proptest::option::of(proptest::sample::select(vec!["rev-1", "rev-2", "rev-3"])),
        gated in any::<bool>(),
    ) {
        let spec = if gated { all_gates_spec() } else { canary_spec() };
        let obs = world(deleting, target);
        let mut before = status.clone();
        before.request = Some(Box::new(req.clone()));
        let p = plan(&spec, &before, &obs);
        prop_assert_eq!(p.status.request.as_ref(), None);
        let outcome = p.status.last_request.clone().expect("an outcome");
        prop_assert_eq!(&outcome.request, &req);
        let fit = fits(&spec, &status, &req);
        if outcome.accepted {
            prop_assert!(fit.is_ok(), "accepted although {:?}", fit);
            prop_assert!(!deleting && target.is_some());
        } else if let Err(why) = &fit
            && !deleting
            && target.is_some()
        {
            prop_assert_eq!(&outcome.message, why);
        }
        let reason = if outcome.accepted {
            fledge_core::requests::event_reason(req.action)
        } else {
            fledge_core::requests::REJECTED_REASON
        };
        let events = events_with(&p, |r, m| r == reason && m.contains("requested by alice"));
        prop_assert_eq!(events, 1);
        // Replayed with the status it wrote: the outcome stays, nothing is handled again.
        let again = plan(&spec, &p.status, &obs);
        prop_assert_eq!(again.status.last_request.as_ref(), Some(&outcome));
        let handled_again = events_with(&again, |_, m| m.contains("requested by"));
        prop_assert_eq!(handled_again, 0);
    }

    /// The effect of each accepted request.
    #[test]
    fn accepted_requests_do_what_they_say(
        req in arb_request(),
        status in arb_status(),
        gated in any::<bool>(),
    ) {
        let spec = if gated { all_gates_spec() } else { canary_spec() };
        let target = status.last_applied_spec.clone().unwrap_or_default();
        let mut before = status.clone();
        before.request = Some(Box::new(req.clone()));
        let p = plan(&spec, &before, &world(false, Some(&target)));
        let accepted = p.status.last_request.as_ref().is_some_and(|l| l.accepted);
        if !accepted {
            return Ok(());
        }
        let s = &p.status;
        match req.action {
            RequestAction::Promote => prop_assert_eq!(s.phase, Promoting),
            RequestAction::Abort => {
                prop_assert_eq!(s.phase, Failed);
                prop_assert_eq!(s.canary_weight, 0);
            }
            RequestAction::Retry => prop_assert!(
                matches!(s.phase, Progressing | Waiting | Promoting), "{:?}", s.phase),
            RequestAction::Pause => {
                prop_assert!(s.paused.is_some());
                prop_assert_eq!(s.canary_weight, status.canary_weight.clamp(0, 100));
            }
            RequestAction::Resume => prop_assert!(s.paused.is_none()),
            RequestAction::Approve => {
                let gate = req.gate.expect("approve names a gate");
                let waiting = fledge_core::requests::approval(s, gate).is_some();
                let used = events_with(&p, |r, _| r == "GateApproved") == 1;
                prop_assert!(waiting ^ used, "kept for later or used now, once");
            }
        }
        if matches!(req.action, RequestAction::Promote | RequestAction::Abort | RequestAction::Retry) {
            prop_assert!(s.paused.is_none(), "promote, abort and retry end a pause");
        }
    }
}
