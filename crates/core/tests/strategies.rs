//! Whole rollouts of each strategy and special mode, through the simulator.

mod common;

use std::time::Duration;

use common::*;
use fledge_api::CanaryPhase::*;
use fledge_api::HookType;
use fledge_core::sim::Sim;
use fledge_core::{Action, CanaryScale, LedgerEvent, MetricOutcome, Routes};

fn ok(sim: &Sim) {
    assert!(sim.violations.is_empty(), "{:?}", sim.violations);
}

fn rollout_routes(sim: &Sim) -> Vec<Routes> {
    // The first SetWeights is the initialization's.
    sim.routes().into_iter().skip(1).collect()
}

#[test]
fn a_canary_coming_up_from_zero_costs_one_status_write_until_its_first_step() {
    // Each status write is a request and a watch event for every watcher: while the canary's
    // pods start, the checks that find it unready change nothing in the status.
    let mut sim = initialized(blue_green_spec(3, false));
    sim.world.ready_delay = Duration::from_secs(40);
    sim.extra_reconcile_every = Some(Duration::from_secs(1));
    sim.new_revision("rev-2");
    let mut writes = 0;
    while sim.status.iterations == 0 && sim.trace.len() < 200 {
        let before = serde_json::to_value(&sim.status).expect("status as JSON");
        sim.reconcile();
        if serde_json::to_value(&sim.status).expect("status as JSON") != before {
            writes += 1;
        }
    }
    ok(&sim);
    assert_eq!(sim.status.iterations, 1, "the first step came");
    // The start (Progressing, with the readiness clock), then the first step.
    assert_eq!(writes, 2);
    assert!(sim.trace.len() > 30, "the canary was checked while unready");
}

#[test]
fn blue_green_runs_iterations_without_live_traffic_then_switches() {
    let mut sim = initialized(blue_green_spec(4, false));
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 100));
    ok(&sim);
    assert_eq!(sim.status.iterations, 4);
    assert_eq!(
        rollout_routes(&sim),
        vec![Routes::weighted(100), Routes::PRIMARY]
    );
    assert_eq!(sim.trace.iter().filter(|r| r.needs.metrics).count(), 4);
    // The switch to the canary comes with the promotion, in that order.
    let switch = sim
        .trace
        .iter()
        .find(|r| r.plan.status.phase == Promoting)
        .expect("promoting");
    let cluster: Vec<_> = switch.plan.actions.iter().take(2).cloned().collect();
    assert_eq!(
        cluster,
        vec![
            Action::SetWeights(Routes::weighted(100)),
            Action::PromotePrimary {
                revision: "rev-2".into()
            }
        ]
    );
}

#[test]
fn blue_green_with_mirroring() {
    let mut sim = initialized(blue_green_spec(3, true));
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 100));
    ok(&sim);
    let mirrored = Routes {
        mirror: Some(100),
        ..Routes::PRIMARY
    };
    assert_eq!(
        rollout_routes(&sim),
        vec![mirrored, Routes::weighted(100), Routes::PRIMARY]
    );
}

#[test]
fn mirror_weight_is_carried() {
    let mut spec = blue_green_spec(2, true);
    analysis(&mut spec).mirror_weight = Some(40);
    let sim = roll_out(spec);
    ok(&sim);
    assert_eq!(rollout_routes(&sim)[0].mirror, Some(40));
    assert_eq!(rollout_routes(&sim)[0].canary, 0);
}

#[test]
fn step_weight_promotion_shifts_back_one_step_per_interval() {
    let mut spec = canary_spec();
    analysis(&mut spec).step_weight_promotion = Some(20);
    let mut sim = initialized(spec);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 200));
    ok(&sim);
    let weights: Vec<i32> = sim.weights().into_iter().skip(11).collect();
    assert_eq!(weights, vec![30, 10, 0]);
    let shifts: Vec<_> = sim
        .trace
        .iter()
        .filter(|r| {
            r.before == Promoting
                && r.plan
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::SetWeights(_)))
        })
        .map(|r| r.at)
        .collect();
    assert_eq!(shifts.len(), 3);
    for pair in shifts.windows(2) {
        assert!(
            pair[1].duration_since(pair[0]).as_secs() >= 60,
            "{shifts:?}"
        );
    }
}

#[test]
fn skip_analysis_promotes_without_scaling_up_or_shifting() {
    let mut spec = canary_spec();
    spec.skip_analysis = true;
    let mut sim = initialized(spec);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 20));
    ok(&sim);
    assert_eq!(rollout_routes(&sim), vec![]);
    assert!(
        !sim.actions()
            .any(|a| *a == Action::ScaleCanary(CanaryScale::MatchPrimary))
    );
    assert_eq!(
        sim.world.primary.as_ref().map(|p| p.hash.as_str()),
        Some("rev-2")
    );
    assert_eq!(&sim.phases()[3..], &[Promoting, Finalising, Succeeded]);
    assert!(sim.trace.iter().all(|r| !r.needs.metrics));
}

#[test]
fn suspend_freezes_a_rollout_and_resume_continues_it() {
    let mut sim = initialized(canary_spec());
    sim.new_revision("rev-2");
    sim.run_until(100, |s| s.status.canary_weight == 15);
    sim.spec.suspend = true;
    let before = sim.weights().len();
    sim.run_until(30, |_| false);
    assert_eq!(
        sim.weights().len(),
        before,
        "no traffic change while suspended"
    );
    assert_eq!(sim.status.canary_weight, 15);
    assert!(sim.trace.iter().rev().take(30).all(|r| r.needs.is_empty()));
    sim.spec.suspend = false;
    assert!(sim.run_to(Succeeded, 200));
    ok(&sim);
    let expected: Vec<i32> = (1..=10).map(|i| i * 5).chain([0]).collect();
    assert_eq!(
        sim.weights().into_iter().skip(1).collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn a_new_revision_mid_rollout_restarts_the_analysis() {
    let mut sim = initialized(canary_spec());
    sim.new_revision("rev-2");
    sim.run_until(100, |s| s.status.canary_weight == 20);
    sim.new_revision("rev-3");
    assert!(sim.run_to(Succeeded, 200));
    ok(&sim);
    let weights: Vec<i32> = sim.weights().into_iter().skip(1).collect();
    let mut expected = vec![5, 10, 15, 20, 0];
    expected.extend((1..=10).map(|i| i * 5));
    expected.push(0);
    assert_eq!(weights, expected);
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev-3"));
    let ledger: Vec<(LedgerEvent, String)> = sim
        .actions()
        .filter_map(|a| match a {
            Action::RecordLedger(e) => Some((e.event, e.revision.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        ledger,
        vec![
            (LedgerEvent::Initialized, "rev-1".into()),
            (LedgerEvent::Started, "rev-2".into()),
            (LedgerEvent::Superseded, "rev-2".into()),
            (LedgerEvent::Started, "rev-3".into()),
            (LedgerEvent::Promoted, "rev-3".into()),
        ]
    );
}

#[test]
fn a_canary_that_never_becomes_ready_is_rolled_back_at_the_progress_deadline() {
    let mut spec = canary_spec();
    spec.progress_deadline_seconds = Some(120);
    let mut sim = initialized(spec);
    sim.new_revision("rev-2");
    if let Some(t) = sim.world.target.as_mut() {
        t.broken = true;
    }
    let start = sim.now;
    assert!(sim.run_to(Failed, 100));
    ok(&sim);
    let waited = sim
        .trace
        .last()
        .map(|r| r.at.duration_since(start).as_secs());
    assert!(
        waited.is_some_and(|s| (120..=140).contains(&s)),
        "{waited:?}"
    );
    assert_eq!(sim.status.canary_weight, 0);
    assert!(
        sim.events()
            .iter()
            .any(|(r, m)| r == "RolledBack" && m.contains("progress deadline exceeded"))
    );
    assert!(
        sim.trace.iter().all(|r| !r.needs.metrics),
        "no analysis on an unready canary"
    );
}

#[test]
fn a_revert_in_git_does_not_start_a_rollout_but_the_next_revision_does() {
    let mut sim = initialized(canary_spec());
    sim.metrics = Box::new(|_, _| MetricOutcome::NoData);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Failed, 100));
    // The reconcile right after the rollback scales the canary to zero.
    sim.reconcile();
    // The adapter reverted Git; Flux puts rev-1 back on the target.
    sim.new_revision("rev-1");
    let n = sim.trace.len();
    sim.run_until(5, |_| false);
    ok(&sim);
    assert_eq!(sim.status.phase, Failed);
    assert_eq!(sim.status.last_applied_spec.as_deref(), Some("rev-1"));
    assert!(
        sim.trace[n..]
            .iter()
            .flat_map(|r| &r.plan.actions)
            .all(|a| a.class() != fledge_core::ActionClass::Cluster)
    );
    sim.metrics = Box::new(|_, m| MetricOutcome::Value(fledge_core::sim::passing_value(m)));
    sim.new_revision("rev-3");
    assert!(sim.run_to(Succeeded, 200));
    ok(&sim);
}

#[test]
fn gates_hold_and_release_the_rollout() {
    let mut spec = canary_spec();
    analysis(&mut spec).max_weight = Some(10);
    analysis(&mut spec).webhooks = Some(vec![
        hook("go", "confirm-rollout"),
        hook("more", "confirm-traffic-increase"),
        hook("ship", "confirm-promotion"),
    ]);
    let mut sim = initialized(spec);
    // Every gate stays closed for its first three polls.
    let mut polls: std::collections::BTreeMap<HookType, u32> = Default::default();
    sim.hooks = Box::new(move |_, t, _| {
        let n = polls.entry(t).or_default();
        *n += 1;
        (*n > 3, format!("poll {n}"))
    });
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 200));
    ok(&sim);
    let phases = sim.phases();
    assert_eq!(
        &phases[3..],
        &[
            Waiting,
            Progressing,
            WaitingPromotion,
            Promoting,
            Finalising,
            Succeeded
        ]
    );
    let calls = |t: HookType| {
        sim.trace
            .iter()
            .filter(|r| r.needs.webhooks.contains(&t))
            .count()
    };
    assert_eq!(calls(HookType::ConfirmRollout), 4);
    // Three closed polls and one open for 0 -> 5, one open for 5 -> 10.
    assert_eq!(calls(HookType::ConfirmTrafficIncrease), 5);
    assert_eq!(calls(HookType::ConfirmPromotion), 4);
    // Gate polls are one interval apart.
    let polls_at: Vec<_> = sim
        .trace
        .iter()
        .filter(|r| r.needs.webhooks.contains(&HookType::ConfirmRollout))
        .map(|r| r.at)
        .collect();
    for pair in polls_at.windows(2) {
        assert!(pair[1].duration_since(pair[0]).as_secs() >= 60);
    }
    assert_eq!(
        sim.weights().into_iter().skip(1).collect::<Vec<_>>(),
        vec![5, 10, 0]
    );
}

#[test]
fn deletion_with_revert_restores_the_target_then_terminates() {
    let mut spec = canary_spec();
    spec.revert_on_deletion = true;
    let mut sim = initialized(spec);
    sim.world.ready_delay = Duration::from_secs(30);
    sim.new_revision("rev-2");
    sim.run_until(100, |s| s.status.canary_weight == 10);
    sim.world.deleting = true;
    sim.run_until(50, |s| s.status.phase == Terminating);
    assert!(!sim.world.released, "held while the target is restored");
    assert!(sim.run_to(Terminated, 50));
    ok(&sim);
    assert!(sim.world.released, "released once terminated");
    assert_eq!(sim.world.routes, Routes::PRIMARY);
    assert!(sim.world.finalized);
    assert_eq!(sim.world.target.as_ref().map(|t| t.replicas), Some(2));
    assert!(
        sim.actions()
            .any(|a| matches!(a, Action::RecordLedger(e) if e.event == LedgerEvent::Aborted))
    );
    // Once terminated, nothing but the release again (the Canary is normally gone by then).
    let n = sim.trace.len();
    sim.run_until(3, |_| false);
    assert!(sim.trace[n..].iter().all(|r| matches!(
        r.plan.actions.as_slice(),
        [Action::RemoveFinalizer, Action::RequeueAfter(_)]
    )));
}

#[test]
fn deletion_without_revert_touches_nothing() {
    let mut sim = initialized(canary_spec());
    sim.world.deleting = true;
    let routes = sim.routes().len();
    assert!(sim.run_to(Terminated, 5));
    ok(&sim);
    assert!(sim.world.released);
    assert_eq!(sim.routes().len(), routes);
    assert!(!sim.world.finalized);
    assert!(!sim.actions().any(|a| *a == Action::RestoreTarget));
}

#[test]
fn slow_workloads_delay_but_do_not_change_the_steps() {
    let reference = roll_out(canary_spec());
    let mut sim = initialized(canary_spec());
    sim.world.ready_delay = Duration::from_secs(95);
    sim.new_revision("rev-2");
    assert!(sim.run_to(Succeeded, 300));
    ok(&sim);
    assert_eq!(sim.weights(), reference.weights());
}

#[test]
fn a_crash_before_the_status_write_repeats_no_step() {
    let reference = roll_out(canary_spec());
    let mut sim = initialized(canary_spec());
    sim.new_revision("rev-2");
    for i in 0..300 {
        if sim.status.phase == Succeeded {
            break;
        }
        sim.lose_next_status_write = i % 3 == 1;
        sim.reconcile();
    }
    ok(&sim);
    assert_eq!(sim.status.phase, Succeeded);
    // A lost write makes the adapter apply the same weights again; it never applies a
    // different step.
    let mut weights = sim.weights();
    weights.dedup();
    assert_eq!(weights, reference.weights());
}

#[test]
fn session_affinity_cookies_live_while_the_canary_gets_traffic() {
    let mut spec = canary_spec();
    analysis(&mut spec).session_affinity = Some(fledge_api::SessionAffinity {
        cookie_name: Some("canary-affinity".into()),
        primary_cookie_name: Some("primary-affinity".into()),
        ..Default::default()
    });
    let mut sim = initialized(spec);
    sim.new_revision("rev-2");
    sim.run_until(100, |s| s.status.canary_weight == 10);
    let cookie = sim
        .status
        .session_affinity_cookie
        .clone()
        .expect("canary cookie");
    assert!(cookie.starts_with("canary-affinity="), "{cookie}");
    let primary = sim
        .status
        .primary_session_affinity_cookie
        .clone()
        .expect("primary cookie");
    assert!(primary.starts_with("primary-affinity=") && primary != cookie);
    assert!(sim.run_to(Succeeded, 200));
    ok(&sim);
    assert_eq!(sim.status.session_affinity_cookie, None);
    assert_eq!(sim.status.primary_session_affinity_cookie, None);
    assert_eq!(
        sim.status.previous_session_affinity_cookie,
        Some(cookie.clone())
    );
    // The next rollout gets a new cookie; the old one stays "previous" until then.
    sim.new_revision("rev-3");
    sim.run_until(100, |s| s.status.canary_weight == 5);
    let next = sim
        .status
        .session_affinity_cookie
        .clone()
        .expect("new cookie");
    assert_ne!(next, cookie);
    assert_eq!(sim.status.previous_session_affinity_cookie, Some(cookie));
}
