//! Table-driven tests of every phase transition: one `plan` call each, from a crafted status
//! and observations, checking the next phase and the cluster actions (traffic and workloads).

mod common;

use std::collections::BTreeMap;

use common::*;
use fledge_api::CanaryPhase::{self, *};
use fledge_api::{CanarySpec, CanaryStatus, HookType, RolloutProgress};
use fledge_core::sim::check_plan;
use fledge_core::{
    Action, ActionClass, ApexSelects, CanaryScale, MetricOutcome, MetricResult, Observations, Plan,
    Readiness, Routes, TargetObservation, WebhookResult, needs, plan,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const NOW: u64 = 10_000;

fn time(secs_before_now: u64) -> Option<Time> {
    Some(Time(at(NOW - secs_before_now)))
}

/// At rest after promoting `rev-1`.
fn rest(phase: CanaryPhase) -> CanaryStatus {
    CanaryStatus {
        phase,
        last_applied_spec: Some("rev-1".into()),
        last_promoted_spec: Some("rev-1".into()),
        tracked_configs: Some(BTreeMap::new()),
        last_promoted_configs: Some(BTreeMap::new()),
        last_transition_time: time(3600),
        ..Default::default()
    }
}

/// Rolling out `rev-2` at `weight`, after `step` steps, the last one `ago` seconds ago.
fn rolling(phase: CanaryPhase, weight: i32, failed: i32, step: i32, ago: u64) -> CanaryStatus {
    CanaryStatus {
        phase,
        canary_weight: weight,
        failed_checks: failed,
        last_applied_spec: Some("rev-2".into()),
        rollout: Some(RolloutProgress {
            start_time: time(3000),
            last_step_time: (step > 0).then(|| time(ago)).flatten(),
            step,
            pre_rollout_done: step > 0,
            ..Default::default()
        }),
        ..rest(phase)
    }
}

/// Both workloads ready, the target at `hash`.
fn obs(hash: &str) -> Observations {
    Observations {
        generation: Some(1),
        target: Some(TargetObservation {
            spec_hash: hash.into(),
            tracked_configs: BTreeMap::new(),
            readiness: Readiness::ready(2),
        }),
        primary: Some(Readiness::ready(2)),
        ..Observations::at(at(NOW))
    }
}

fn unready(n: i32) -> Readiness {
    Readiness {
        available: 0,
        ..Readiness::ready(n)
    }
}

fn with_target_readiness(mut o: Observations, r: Readiness) -> Observations {
    if let Some(t) = o.target.as_mut() {
        t.readiness = r;
    }
    o
}

fn hook_result(hook: HookType, name: &str, passed: bool) -> WebhookResult {
    WebhookResult {
        hook,
        name: name.into(),
        passed,
        message: if passed { "ok" } else { "not yet" }.into(),
    }
}

fn passing_metrics() -> Vec<MetricResult> {
    vec![
        MetricResult {
            name: "request-success-rate".into(),
            outcome: MetricOutcome::Value(99.9),
        },
        MetricResult {
            name: "request-duration".into(),
            outcome: MetricOutcome::Value(120.0),
        },
    ]
}

fn with_hooks(mut spec: CanarySpec, hooks: &[(&str, &str)]) -> CanarySpec {
    analysis(&mut spec).webhooks = Some(hooks.iter().map(|(n, t)| hook(n, t)).collect());
    spec
}

fn cluster(plan: &Plan) -> Vec<Action> {
    plan.actions
        .iter()
        .filter(|a| a.class() == ActionClass::Cluster)
        .cloned()
        .collect()
}

fn w(canary: i32) -> Action {
    Action::SetWeights(Routes::weighted(canary))
}

const TO_PRIMARY: Action = Action::SetWeights(Routes::PRIMARY);
const SCALE_ZERO: Action = Action::ScaleCanary(CanaryScale::Zero);
const SCALE_UP: Action = Action::ScaleCanary(CanaryScale::MatchPrimary);

struct Row {
    name: &'static str,
    spec: CanarySpec,
    status: CanaryStatus,
    obs: Observations,
    phase: CanaryPhase,
    cluster: Vec<Action>,
}

fn row(
    name: &'static str,
    spec: CanarySpec,
    status: CanaryStatus,
    obs: Observations,
    phase: CanaryPhase,
    cluster: Vec<Action>,
) -> Row {
    Row {
        name,
        spec,
        status,
        obs,
        phase,
        cluster,
    }
}

fn promote(rev: &str) -> Action {
    Action::PromotePrimary {
        revision: rev.into(),
    }
}

fn rows() -> Vec<Row> {
    let spec = canary_spec;
    let metrics = |mut o: Observations| {
        o.metrics = passing_metrics();
        o
    };
    let failing = |mut o: Observations| {
        o.metrics = passing_metrics();
        o.metrics[0].outcome = MetricOutcome::Value(80.0);
        o
    };
    let hooks = |mut o: Observations, results: Vec<WebhookResult>| {
        o.webhooks = results;
        o
    };
    let mut new_config = obs("rev-1");
    if let Some(t) = new_config.target.as_mut() {
        t.tracked_configs
            .insert("ConfigMap/podinfo".into(), "abc".into());
    }
    let mut no_primary = obs("rev-1");
    no_primary.primary = None;
    let mut primary_unready = obs("rev-2");
    primary_unready.primary = Some(unready(2));
    let mut no_slot = obs("rev-2");
    no_slot.rollout_slots = fledge_core::slots::RolloutSlots::none_free();
    let mut init_slow = rest(Initializing);
    init_slow.last_transition_time = time(30);
    let mut init_late = rest(Initializing);
    init_late.last_transition_time = time(601);
    let mut waiting_polled = rest(Waiting);
    waiting_polled.rollout = Some(RolloutProgress {
        last_step_time: time(20),
        ..Default::default()
    });
    let unready_since = |secs: u64| {
        let mut s = rolling(Progressing, 20, 0, 4, 30);
        if let Some(r) = s.rollout.as_mut() {
            r.unready_since = time(secs);
        }
        s
    };
    let mut stepped = spec();
    analysis(&mut stepped).step_weight_promotion = Some(20);
    let mut skip = spec();
    skip.skip_analysis = true;
    let mut suspended = spec();
    suspended.suspend = true;
    let mut revert = spec();
    revert.revert_on_deletion = true;
    let deleting = |mut o: Observations| {
        o.deleting = true;
        o
    };
    let mut terminating = rest(Terminating);
    terminating.last_transition_time = time(5);

    vec![
        // Initialization.
        row(
            "new canary creates the primary",
            spec(),
            CanaryStatus::default(),
            no_primary.clone(),
            Initializing,
            vec![Action::EnsurePrimary],
        ),
        row(
            "waits for the primary",
            spec(),
            init_slow.clone(),
            with_primary(obs("rev-1"), unready(2)),
            Initializing,
            vec![Action::EnsurePrimary],
        ),
        row(
            "primary never ready fails",
            spec(),
            init_late,
            with_primary(obs("rev-1"), unready(2)),
            Failed,
            vec![Action::EnsurePrimary],
        ),
        row(
            "primary ready: initialized",
            spec(),
            init_slow,
            obs("rev-1"),
            Initialized,
            vec![
                Action::EnsurePrimary,
                SCALE_ZERO,
                Action::EnsureServices {
                    apex: ApexSelects::Primary,
                },
                TO_PRIMARY,
            ],
        ),
        // Detection.
        row(
            "same revision: nothing",
            spec(),
            rest(Initialized),
            obs("rev-1"),
            Initialized,
            vec![],
        ),
        row(
            "new revision from Initialized",
            spec(),
            rest(Initialized),
            obs("rev-2"),
            Progressing,
            vec![SCALE_UP],
        ),
        row(
            "new revision from Succeeded",
            spec(),
            rest(Succeeded),
            obs("rev-2"),
            Progressing,
            vec![SCALE_UP],
        ),
        row(
            "new revision from Failed",
            spec(),
            rolling(Failed, 0, 5, 6, 60),
            obs("rev-3"),
            Progressing,
            vec![SCALE_UP],
        ),
        row(
            "tracked config change is a new revision",
            spec(),
            rest(Succeeded),
            new_config,
            Progressing,
            vec![SCALE_UP],
        ),
        row(
            "failed revision is not retried",
            spec(),
            rolling(Failed, 0, 5, 6, 60),
            with_target_readiness(obs("rev-2"), Readiness::ready(0)),
            Failed,
            vec![],
        ),
        row(
            "rolled back, the canary still up: scaled to zero",
            spec(),
            rolling(Failed, 0, 5, 6, 60),
            obs("rev-2"),
            Failed,
            vec![SCALE_ZERO],
        ),
        row(
            "reverted to the primary's revision",
            spec(),
            rolling(Failed, 0, 5, 6, 60),
            obs("rev-1"),
            Failed,
            vec![],
        ),
        // Waiting.
        row(
            "no rollout slot",
            spec(),
            rest(Succeeded),
            no_slot,
            Waiting,
            vec![],
        ),
        row(
            "confirm-rollout closed",
            with_hooks(spec(), &[("approve", "confirm-rollout")]),
            rest(Succeeded),
            hooks(
                obs("rev-2"),
                vec![hook_result(HookType::ConfirmRollout, "approve", false)],
            ),
            Waiting,
            vec![],
        ),
        row(
            "confirm-rollout opens",
            with_hooks(spec(), &[("approve", "confirm-rollout")]),
            rest(Waiting),
            hooks(
                obs("rev-2"),
                vec![hook_result(HookType::ConfirmRollout, "approve", true)],
            ),
            Progressing,
            vec![SCALE_UP],
        ),
        row(
            "confirm-rollout polled once per interval",
            with_hooks(spec(), &[("approve", "confirm-rollout")]),
            waiting_polled,
            hooks(
                obs("rev-2"),
                vec![hook_result(HookType::ConfirmRollout, "approve", true)],
            ),
            Waiting,
            vec![],
        ),
        row(
            "pending revision reverted",
            spec(),
            rest(Waiting),
            obs("rev-1"),
            Initialized,
            vec![],
        ),
        // Progressing.
        row(
            "canary not ready yet",
            spec(),
            unready_since(60),
            with_target_readiness(obs("rev-2"), unready(2)),
            Progressing,
            vec![],
        ),
        row(
            "canary not ready past the deadline",
            spec(),
            unready_since(601),
            with_target_readiness(obs("rev-2"), unready(2)),
            Failed,
            vec![TO_PRIMARY],
        ),
        row(
            "primary not ready: wait",
            spec(),
            rolling(Progressing, 20, 0, 4, 60),
            primary_unready,
            Progressing,
            vec![],
        ),
        row(
            "step not due",
            spec(),
            rolling(Progressing, 20, 0, 4, 30),
            metrics(obs("rev-2")),
            Progressing,
            vec![],
        ),
        row(
            "first step runs pre-rollout and sets the first weight",
            with_hooks(spec(), &[("db", "pre-rollout")]),
            rolling(Progressing, 0, 0, 0, 0),
            hooks(
                obs("rev-2"),
                vec![hook_result(HookType::PreRollout, "db", true)],
            ),
            Progressing,
            vec![w(5)],
        ),
        row(
            "pre-rollout failure holds",
            with_hooks(spec(), &[("db", "pre-rollout")]),
            rolling(Progressing, 0, 0, 0, 0),
            hooks(
                obs("rev-2"),
                vec![hook_result(HookType::PreRollout, "db", false)],
            ),
            Progressing,
            vec![],
        ),
        row(
            "passed step advances",
            spec(),
            rolling(Progressing, 20, 0, 4, 60),
            metrics(obs("rev-2")),
            Progressing,
            vec![w(25)],
        ),
        row(
            "failed step holds",
            spec(),
            rolling(Progressing, 20, 0, 4, 60),
            failing(obs("rev-2")),
            Progressing,
            vec![],
        ),
        row(
            "failed step at the threshold rolls back",
            spec(),
            rolling(Progressing, 20, 4, 8, 60),
            failing(obs("rev-2")),
            Failed,
            vec![TO_PRIMARY],
        ),
        row(
            "threshold already reached rolls back",
            spec(),
            rolling(Progressing, 20, 5, 8, 30),
            obs("rev-2"),
            Failed,
            vec![TO_PRIMARY],
        ),
        row(
            "rollout webhook failure holds",
            with_hooks(spec(), &[("load", "rollout")]),
            rolling(Progressing, 20, 0, 4, 60),
            hooks(
                metrics(obs("rev-2")),
                vec![hook_result(HookType::Rollout, "load", false)],
            ),
            Progressing,
            vec![],
        ),
        row(
            "rollback webhook rolls back",
            with_hooks(spec(), &[("abort", "rollback")]),
            rolling(Progressing, 20, 0, 4, 60),
            hooks(
                metrics(obs("rev-2")),
                vec![hook_result(HookType::Rollback, "abort", true)],
            ),
            Failed,
            vec![TO_PRIMARY],
        ),
        row(
            "rollback webhook saying no",
            with_hooks(spec(), &[("abort", "rollback")]),
            rolling(Progressing, 20, 0, 4, 60),
            hooks(
                metrics(obs("rev-2")),
                vec![hook_result(HookType::Rollback, "abort", false)],
            ),
            Progressing,
            vec![w(25)],
        ),
        row(
            "confirm-traffic-increase closed",
            with_hooks(spec(), &[("more", "confirm-traffic-increase")]),
            rolling(Progressing, 20, 0, 4, 60),
            hooks(
                metrics(obs("rev-2")),
                vec![hook_result(HookType::ConfirmTrafficIncrease, "more", false)],
            ),
            Progressing,
            vec![],
        ),
        row(
            "confirm-traffic-increase open",
            with_hooks(spec(), &[("more", "confirm-traffic-increase")]),
            rolling(Progressing, 20, 0, 4, 60),
            hooks(
                metrics(obs("rev-2")),
                vec![hook_result(HookType::ConfirmTrafficIncrease, "more", true)],
            ),
            Progressing,
            vec![w(25)],
        ),
        row(
            "at max weight: promote",
            spec(),
            rolling(Progressing, 50, 0, 10, 60),
            metrics(obs("rev-2")),
            Promoting,
            vec![promote("rev-2")],
        ),
        row(
            "confirm-promotion closed",
            with_hooks(spec(), &[("ship", "confirm-promotion")]),
            rolling(Progressing, 50, 0, 10, 60),
            hooks(
                metrics(obs("rev-2")),
                vec![hook_result(HookType::ConfirmPromotion, "ship", false)],
            ),
            WaitingPromotion,
            vec![],
        ),
        row(
            "confirm-promotion opens",
            with_hooks(spec(), &[("ship", "confirm-promotion")]),
            rolling(WaitingPromotion, 50, 0, 11, 60),
            hooks(
                metrics(obs("rev-2")),
                vec![hook_result(HookType::ConfirmPromotion, "ship", true)],
            ),
            Promoting,
            vec![promote("rev-2")],
        ),
        row(
            "analysis still runs while waiting for promotion",
            with_hooks(spec(), &[("ship", "confirm-promotion")]),
            rolling(WaitingPromotion, 50, 0, 11, 60),
            failing(obs("rev-2")),
            WaitingPromotion,
            vec![],
        ),
        row(
            "new revision mid-rollout restarts",
            spec(),
            rolling(Progressing, 30, 2, 7, 10),
            obs("rev-3"),
            Progressing,
            vec![TO_PRIMARY],
        ),
        row(
            "new revision while waiting for promotion restarts",
            spec(),
            rolling(WaitingPromotion, 50, 0, 11, 10),
            obs("rev-3"),
            Progressing,
            vec![TO_PRIMARY],
        ),
        row(
            "skipAnalysis mid-rollout promotes",
            skip.clone(),
            rolling(Progressing, 30, 0, 7, 10),
            obs("rev-2"),
            Promoting,
            vec![promote("rev-2")],
        ),
        // Promotion.
        row(
            "promoting waits for the primary",
            spec(),
            rolling(Promoting, 50, 0, 11, 10),
            with_primary(obs("rev-2"), unready(2)),
            Promoting,
            vec![],
        ),
        row(
            "primary ready: route all to it",
            spec(),
            rolling(Promoting, 50, 0, 11, 10),
            obs("rev-2"),
            Finalising,
            vec![TO_PRIMARY],
        ),
        row(
            "stepped promotion shifts one step",
            stepped.clone(),
            rolling(Promoting, 50, 0, 11, 60),
            obs("rev-2"),
            Promoting,
            vec![w(30)],
        ),
        row(
            "stepped promotion waits an interval",
            stepped.clone(),
            rolling(Promoting, 30, 0, 12, 10),
            obs("rev-2"),
            Promoting,
            vec![],
        ),
        row(
            "stepped promotion last step",
            stepped,
            rolling(Promoting, 10, 0, 14, 60),
            obs("rev-2"),
            Finalising,
            vec![TO_PRIMARY],
        ),
        row(
            "new revision while promoting restarts",
            spec(),
            rolling(Promoting, 50, 0, 11, 10),
            obs("rev-3"),
            Progressing,
            vec![TO_PRIMARY],
        ),
        row(
            "finalising scales the canary down",
            spec(),
            rolling(Finalising, 0, 0, 11, 10),
            obs("rev-2"),
            Succeeded,
            vec![SCALE_ZERO],
        ),
        // Special modes.
        row(
            "skipAnalysis promotes a new revision at once",
            skip,
            rest(Succeeded),
            obs("rev-2"),
            Promoting,
            vec![promote("rev-2")],
        ),
        row(
            "suspended: nothing moves",
            suspended.clone(),
            rest(Succeeded),
            obs("rev-2"),
            Succeeded,
            vec![],
        ),
        row(
            "suspended mid-rollout: nothing moves",
            suspended,
            rolling(Progressing, 20, 0, 4, 600),
            metrics(obs("rev-2")),
            Progressing,
            vec![],
        ),
        // Deletion.
        row(
            "deleted without revertOnDeletion",
            spec(),
            rolling(Progressing, 20, 0, 4, 60),
            deleting(obs("rev-2")),
            Terminated,
            vec![],
        ),
        row(
            "deleted with revertOnDeletion",
            revert.clone(),
            rolling(Progressing, 20, 0, 4, 60),
            deleting(obs("rev-2")),
            Terminating,
            vec![TO_PRIMARY, Action::RestoreTarget],
        ),
        row(
            "terminating waits for the target",
            revert.clone(),
            terminating.clone(),
            deleting(with_target_readiness(obs("rev-1"), unready(2))),
            Terminating,
            vec![],
        ),
        row(
            "terminating routes to the target",
            revert.clone(),
            terminating,
            deleting(obs("rev-1")),
            Terminated,
            vec![Action::FinalizeRouting],
        ),
        row(
            "terminated stays",
            revert,
            rest(Terminated),
            deleting(obs("rev-1")),
            Terminated,
            vec![],
        ),
        // Missing objects.
        row(
            "target missing",
            spec(),
            rest(Succeeded),
            Observations {
                target: None,
                ..obs("rev-1")
            },
            Succeeded,
            vec![],
        ),
        row(
            "primary lost at rest: initialize again",
            spec(),
            rest(Succeeded),
            Observations {
                primary: None,
                ..obs("rev-1")
            },
            Initializing,
            vec![Action::EnsurePrimary],
        ),
        row(
            "primary lost mid-rollout: report and wait",
            spec(),
            rolling(Progressing, 20, 0, 4, 60),
            Observations {
                primary: None,
                ..obs("rev-2")
            },
            Progressing,
            vec![],
        ),
        row(
            "spec edited: Services re-applied",
            spec(),
            CanaryStatus {
                observed_generation: Some(1),
                ..rest(Succeeded)
            },
            Observations {
                generation: Some(2),
                ..obs("rev-1")
            },
            Succeeded,
            vec![Action::EnsureServices {
                apex: ApexSelects::Primary,
            }],
        ),
    ]
}

fn with_primary(mut o: Observations, r: Readiness) -> Observations {
    o.primary = Some(r);
    o
}

#[test]
fn every_phase_transition() {
    let mut failures = Vec::new();
    let rows = rows();
    assert!(rows.len() > 50);
    for r in rows {
        let n = needs(&r.spec, &r.status, &r.obs);
        let p = plan(&r.spec, &r.status, &r.obs);
        if p.status.phase != r.phase {
            failures.push(format!(
                "{}: phase {} expected {}",
                r.name, p.status.phase, r.phase
            ));
        }
        if cluster(&p) != r.cluster {
            failures.push(format!(
                "{}: actions {:?} expected {:?}",
                r.name,
                cluster(&p),
                r.cluster
            ));
        }
        for v in check_plan(&r.spec, &r.status, &p, &n) {
            failures.push(format!("{}: {v}", r.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_apex_selector_follows_the_routes_the_plan_leaves() {
    let mut kubernetes = CanarySpec {
        provider: Some("kubernetes".into()),
        ..canary_spec()
    };
    let a = analysis(&mut kubernetes);
    a.step_weight = None;
    a.max_weight = None;
    a.iterations = Some(10);
    let changed = Observations {
        generation: Some(2),
        ..obs("rev-2")
    };
    let apex = |p: &Plan| {
        p.actions.iter().find_map(|a| match a {
            Action::EnsureServices { apex } => Some(*apex),
            _ => None,
        })
    };
    // Promoting at 100% to the canary, the primary ready: the plan moves everything back to
    // the primary, so the Services it applies select the primary (the status it started from
    // said the canary).
    let finalising = CanaryStatus {
        observed_generation: Some(1),
        ..rolling(Promoting, 100, 0, 3, 10)
    };
    let p = plan(&kubernetes, &finalising, &changed);
    assert_eq!(p.status.phase, Finalising);
    assert_eq!(p.status.canary_weight, 0);
    assert_eq!(apex(&p), Some(ApexSelects::Primary), "{:?}", p.actions);
    // Staying at 100% (the primary not ready yet): the apex Service keeps selecting the canary.
    let waiting = with_primary(changed.clone(), unready(2));
    let p = plan(&kubernetes, &finalising, &waiting);
    assert_eq!(p.status.canary_weight, 100);
    assert_eq!(apex(&p), Some(ApexSelects::Canary), "{:?}", p.actions);
    // A weighted provider never points the apex Service at the canary.
    let p = plan(&canary_spec(), &finalising, &changed);
    assert_eq!(apex(&p), Some(ApexSelects::Primary));
    // Only kubernetes at 100% (nothing mirrored) selects the canary.
    let all = Routes::weighted(100);
    assert_eq!(
        ApexSelects::for_routes("kubernetes", &all),
        ApexSelects::Canary
    );
    assert_eq!(ApexSelects::for_routes("istio", &all), ApexSelects::Primary);
    assert_eq!(
        ApexSelects::for_routes("kubernetes", &Routes::weighted(99)),
        ApexSelects::Primary
    );
}

#[test]
fn a_new_revision_queues_behind_the_canaries_already_waiting_for_a_slot() {
    use fledge_core::slots::{RolloutSlots, SlotView, WAITING_FOR_SLOT};
    // One slot, taken: another Canary starts waiting for it.
    let waiter = plan(
        &canary_spec(),
        &rest(Succeeded),
        &Observations {
            rollout_slots: RolloutSlots {
                limit: Some(1),
                me: "test/other".into(),
                others: vec![SlotView::holding("test/busy".into())],
            },
            ..obs("rev-9")
        },
    );
    assert_eq!(waiter.status.phase, Waiting);
    let others = vec![SlotView::of("test/other".into(), Some(&waiter.status))];
    let slots = RolloutSlots {
        limit: Some(1),
        me: "test/podinfo".into(),
        others,
    };
    let p = plan(
        &canary_spec(),
        &rest(Succeeded),
        &Observations {
            rollout_slots: slots.clone(),
            ..obs("rev-2")
        },
    );
    // The slot is free now, but the waiter is ahead (rebuilt from its status alone).
    assert_eq!(p.status.phase, Waiting);
    let reason = |s: &CanaryStatus| {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.r#type == "Promoted")
            .and_then(|c| c.reason.clone())
    };
    assert_eq!(reason(&p.status).as_deref(), Some(WAITING_FOR_SLOT));
    // Once the first waiter rolls out and is done, this one goes.
    let p = plan(
        &canary_spec(),
        &p.status,
        &Observations {
            rollout_slots: RolloutSlots {
                others: vec![SlotView::of("test/other".into(), Some(&rest(Succeeded)))],
                ..slots
            },
            ..obs("rev-2")
        },
    );
    assert_eq!(p.status.phase, Progressing);
}
