//! Property tests: the engine's promises over generated specs, statuses and observations.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fledge_api::{
    CanaryAnalysis, CanaryMetric, CanaryPhase, CanarySpec, CanaryStatus, CanaryWebhook, HookType,
    HttpMatchRequest, RolloutProgress, StringMatch,
};
use fledge_core::sim::{Sim, check_plan, passing_value};
use fledge_core::{
    Action, ActionClass, Blocker, BlockerKind, GitQueue, GitWriteError, LedgerView, MetricOutcome,
    MetricResult, Observations, Plan, Readiness, Routes, RoutesView, TargetObservation,
    WebhookResult, check_metric, needs, plan,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;

const PHASES: [CanaryPhase; 12] = [
    CanaryPhase::Unknown,
    CanaryPhase::Initializing,
    CanaryPhase::Initialized,
    CanaryPhase::Waiting,
    CanaryPhase::Progressing,
    CanaryPhase::WaitingPromotion,
    CanaryPhase::Promoting,
    CanaryPhase::Finalising,
    CanaryPhase::Succeeded,
    CanaryPhase::Failed,
    CanaryPhase::Terminating,
    CanaryPhase::Terminated,
];

const GATING: [HookType; 6] = [
    HookType::ConfirmRollout,
    HookType::PreRollout,
    HookType::Rollout,
    HookType::ConfirmTrafficIncrease,
    HookType::ConfirmPromotion,
    HookType::Rollback,
];

fn arb_strategy() -> impl Strategy<Value = CanaryAnalysis> {
    let canary = (1..=50i32, 1..=100i32).prop_map(|(step, max)| CanaryAnalysis {
        step_weight: Some(step.min(max)),
        max_weight: Some(max),
        ..Default::default()
    });
    let steps = proptest::collection::btree_set(1..=100i32, 1..6).prop_map(|set| CanaryAnalysis {
        step_weights: Some(set.into_iter().collect()),
        ..Default::default()
    });
    let ab = (1..=12i32).prop_map(|n| CanaryAnalysis {
        iterations: Some(n),
        r#match: Some(vec![HttpMatchRequest {
            headers: Some(
                [(
                    "x-canary".to_string(),
                    StringMatch {
                        exact: Some("1".into()),
                        ..Default::default()
                    },
                )]
                .into(),
            ),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let bg = (1..=12i32, any::<bool>(), 1..=100i32).prop_map(|(n, mirror, mw)| CanaryAnalysis {
        iterations: Some(n),
        mirror: mirror.then_some(true),
        mirror_weight: mirror.then_some(mw),
        ..Default::default()
    });
    prop_oneof![canary, steps, ab, bg]
}

fn arb_hooks() -> impl Strategy<Value = Vec<CanaryWebhook>> {
    proptest::collection::vec((0..8usize, any::<bool>()), 0..5).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (t, mute))| {
                let mut h = hook(&format!("h{i}"), HookType::ALL[t].as_str());
                h.mute_alert = mute;
                h
            })
            .collect()
    })
}

fn arb_metrics() -> impl Strategy<Value = Vec<CanaryMetric>> {
    proptest::sample::subsequence(builtin_metrics(), 0..=2)
}

prop_compose! {
    fn arb_spec()(
        analysis in arb_strategy(),
        threshold in 1..=6i32,
        interval in prop::sample::select(vec!["30s", "1m", "2m"]),
        hooks in arb_hooks(),
        metrics in arb_metrics(),
        promotion in prop::option::of(1..=100i32),
        deadline in prop::option::of(60..=900i32),
        skip in prop::bool::weighted(0.1),
        suspend in prop::bool::weighted(0.05),
        revert in any::<bool>(),
        git in prop::option::of(prop::option::of(Just("deploy/app.yaml"))),
    ) -> CanarySpec {
        let mut spec = canary_spec();
        spec.analysis = Some(CanaryAnalysis {
            interval: Some(interval.into()),
            threshold: Some(threshold),
            metrics: Some(metrics),
            webhooks: Some(hooks),
            step_weight_promotion: promotion,
            ..analysis
        });
        spec.progress_deadline_seconds = deadline;
        spec.skip_analysis = skip;
        spec.suspend = suspend;
        spec.revert_on_deletion = revert;
        if let Some(path) = git {
            spec = with_git(spec, path);
        }
        spec
    }
}

fn arb_time() -> impl Strategy<Value = Option<Time>> {
    prop::option::of((0..4000u64).prop_map(|ago| Time(at(10_000 - ago))))
}

fn arb_ledger() -> impl Strategy<Value = LedgerView> {
    prop_oneof![
        Just(LedgerView::NotRead),
        Just(LedgerView::Unreadable("cannot reach the remote".into())),
        proptest::collection::vec(
            (
                arb_hash(),
                proptest::collection::vec("[a-z]{1,4}:[0-9]", 0..3)
            ),
            0..4
        )
        .prop_map(|v| LedgerView::Read(
            v.into_iter()
                .map(|(revision, images)| fledge_api::LedgerRevision {
                    revision,
                    images,
                    promoted_at: None,
                })
                .collect()
        )),
    ]
}

fn arb_hash() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["rev-1", "rev-2", "rev-3"]).prop_map(String::from)
}

prop_compose! {
    fn arb_rollout()(
        start_time in arb_time(),
        last_step_time in arb_time(),
        step in -2..20i32,
        pre_rollout_done in any::<bool>(),
        mirrored in any::<bool>(),
        ab_match in any::<bool>(),
        unready_since in arb_time(),
        failures in proptest::collection::vec("[a-z ]{0,12}", 0..3),
    ) -> RolloutProgress {
        RolloutProgress { start_time, last_step_time, step, pre_rollout_done, mirrored, ab_match, unready_since, failures, ..Default::default() }
    }
}

prop_compose! {
    fn arb_status()(
        phase in prop::sample::select(PHASES.to_vec()),
        failed_checks in -2..10i32,
        canary_weight in -20..130i32,
        iterations in -2..15i32,
        applied in prop::option::of(arb_hash()),
        promoted in prop::option::of(arb_hash()),
        last_transition_time in arb_time(),
        rollout in prop::option::of(arb_rollout()),
        generation in prop::option::of(1..4i64),
    ) -> CanaryStatus {
        CanaryStatus {
            phase,
            failed_checks,
            canary_weight,
            iterations,
            tracked_configs: Some(BTreeMap::new()),
            last_applied_spec: applied,
            last_promoted_spec: promoted,
            last_transition_time,
            observed_generation: generation,
            rollout,
            ..Default::default()
        }
    }
}

fn arb_readiness() -> impl Strategy<Value = Readiness> {
    (any::<bool>(), -1..5i32, 0..6i32, 0..6i32, 0..6i32).prop_map(|(g, d, c, u, a)| Readiness {
        generation_observed: g,
        desired: d,
        current: c,
        updated: u,
        available: a,
    })
}

fn arb_outcome() -> impl Strategy<Value = MetricOutcome> {
    prop_oneof![
        (-10.0..1000.0f64).prop_map(MetricOutcome::Value),
        Just(MetricOutcome::Value(f64::NAN)),
        Just(MetricOutcome::Value(f64::INFINITY)),
        Just(MetricOutcome::NoData),
        Just(MetricOutcome::ProviderUnreachable("refused".into())),
        Just(MetricOutcome::Error("bad".into())),
    ]
}

prop_compose! {
    fn arb_obs()(
        secs in 0..3000u64,
        target in prop::option::of((arb_hash(), arb_readiness(), any::<bool>())),
        primary in prop::option::of(arb_readiness()),
        deleting in prop::bool::weighted(0.1),
        slot in prop::bool::weighted(0.8),
        generation in prop::option::of(1..4i64),
        hooks in proptest::collection::vec((0..6usize, 0..5usize, any::<bool>()), 0..8),
        metrics in proptest::collection::vec((0..2usize, arb_outcome()), 0..3),
        ledger in arb_ledger(),
        queue in prop::option::of((0..3usize, 0..3000u64, any::<bool>())),
        confined in any::<bool>(),
        blocked in prop::option::weighted(0.1, arb_blocker()),
        routes in arb_routes_view(),
    ) -> Observations {
        let names = ["request-success-rate", "request-duration"];
        Observations {
            now: at(10_000 + secs),
            generation,
            deleting,
            rollout_slots: if slot {
                fledge_core::slots::RolloutSlots::unlimited()
            } else {
                fledge_core::slots::RolloutSlots::none_free()
            },
            target: target.map(|(h, r, config)| TargetObservation {
                spec_hash: h,
                tracked_configs: if config { [("ConfigMap/app".to_string(), "x".to_string())].into() } else { BTreeMap::new() },
                readiness: r,
            }),
            statefulset_replicas: None,
            primary,
            webhooks: hooks.into_iter().map(|(t, n, passed)| WebhookResult {
                hook: GATING[t],
                name: format!("h{n}"),
                passed,
                message: "m".into(),
            }).collect(),
            metrics: metrics.into_iter().map(|(n, outcome)| MetricResult { name: names[n].into(), outcome }).collect(),
            ledger,
            git_queue: queue.map(|(pending, ago, failing)| GitQueue {
                pending,
                oldest: (pending > 0).then(|| at(10_000 - ago)),
                error: failing.then(|| GitWriteError {
                    reason: "GitUnreachable".into(),
                    message: "cannot reach the remote".into(),
                }),
                alert_after: Duration::from_secs(900),
            }),
            blocked,
            default_alert_severity: None,
            canary_name: "podinfo".into(),
            images: fledge_core::ContainerImages {
                target: vec![("app".into(), "app:2".into())],
                primary: vec![("app".into(), "app:1".into())],
            },
            routes,
            confined_to_namespace: confined.then(|| "test".to_string()),
        }
    }
}

fn arb_routes_view() -> impl Strategy<Value = RoutesView> {
    prop_oneof![
        Just(RoutesView::NotRead),
        (0..=100i32, prop::option::of(0..=100i32), any::<bool>()).prop_map(|(c, mirror, ab)| {
            RoutesView::Found(Routes {
                mirror,
                ab_match: ab,
                ..Routes::weighted(c)
            })
        }),
        Just(RoutesView::Missing),
        Just(RoutesView::Unreadable("timeout".into())),
    ]
}

fn arb_blocker() -> impl Strategy<Value = Blocker> {
    (
        prop::sample::select(vec![
            BlockerKind::InvalidTarget,
            BlockerKind::InvalidSpec,
            BlockerKind::ApiNotServed,
            BlockerKind::Forbidden,
            BlockerKind::Refused,
        ]),
        "[a-z ]{0,20}",
    )
        .prop_map(|(kind, message)| Blocker { kind, message })
}

fn bad(outcome: Option<&MetricOutcome>) -> bool {
    match outcome {
        None => true,
        Some(MetricOutcome::Value(v)) => !v.is_finite(),
        Some(_) => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_plan_keeps_the_contract(spec in arb_spec(), status in arb_status(), obs in arb_obs()) {
        let n = needs(&spec, &status, &obs);
        let p = plan(&spec, &status, &obs);
        let violations = check_plan(&spec, &status, &p, &n);
        prop_assert!(violations.is_empty(), "{:?}", violations);
        prop_assert!(p.requeue_after().is_some_and(|d| d >= Duration::from_secs(1)));
        prop_assert!((0..=100).contains(&p.status.canary_weight));
        prop_assert!(p.status.failed_checks >= 0);
    }

    #[test]
    fn a_blocked_canary_reports_once_and_changes_nothing_else(
        spec in arb_spec(),
        status in arb_status(),
        obs in arb_obs(),
        blocker in arb_blocker(),
    ) {
        let obs = Observations { blocked: Some(blocker.clone()), ..obs };
        let p = plan(&spec, &status, &obs);
        // No cluster action, no costly input read, and only the Ready condition changes.
        prop_assert!(p.actions.iter().all(|a| a.class() != ActionClass::Cluster), "{:?}", p.actions);
        prop_assert!(p.read.is_empty());
        let ready = |s: &CanaryStatus| s.conditions.iter().flatten().find(|c| c.r#type == "Ready").cloned();
        let cond = ready(&p.status).expect("Ready");
        prop_assert_eq!(cond.status.as_str(), "False");
        prop_assert_eq!(cond.reason.as_deref(), Some(blocker.kind.reason()));
        prop_assert!(cond.message.as_deref().is_some_and(|m| m.contains(blocker.kind.fix())));
        prop_assert_eq!(p.status.phase, status.phase);
        prop_assert_eq!(&p.status.last_applied_spec, &status.last_applied_spec);
        prop_assert_eq!(p.status.observed_generation, status.observed_generation);
        // One warning Event and one alert when the report is new, none when it repeats.
        let events = |p: &Plan| p.actions.iter().filter(|a| matches!(a, Action::RecordEvent { warning: true, .. })).count();
        let alerts = |p: &Plan| p.actions.iter().filter(|a| matches!(a, Action::Notify { .. })).count();
        prop_assert_eq!(events(&p), 1);
        prop_assert_eq!(alerts(&p), 1);
        let again = plan(&spec, &p.status, &obs);
        prop_assert_eq!(events(&again), 0);
        prop_assert_eq!(alerts(&again), 0);
        prop_assert_eq!(again.status, p.status);
    }

    #[test]
    fn an_alert_sent_is_not_sent_again_within_the_hour(
        spec in arb_spec(),
        status in arb_status(),
        obs in arb_obs(),
        later in 0..7200u64,
    ) {
        let mut spec = spec;
        analysis(&mut spec).alerts = Some(vec![fledge_api::CanaryAlert {
            name: "chat".into(),
            severity: None,
            provider_ref: fledge_api::CrossNamespaceObjectReference {
                name: "chat".into(),
                ..Default::default()
            },
        }]);
        let p = plan(&spec, &status, &obs);
        prop_assert!(p.status.recent_alerts.len() <= fledge_core::alerts::MAX_RECENT);
        let sent = |p: &Plan| -> Vec<String> {
            p.actions
                .iter()
                .filter_map(|a| match a {
                    Action::Notify { severity, kind, message, to } if !to.is_empty() => {
                        Some(fledge_core::alerts::repeat_key(&p.status, *kind, *severity, message))
                    }
                    _ => None,
                })
                .collect()
        };
        for key in sent(&p) {
            prop_assert!(p.status.recent_alerts.iter().any(|r| r.key == key));
        }
        // The same decision again, with the status written (a restart, a retry): what was
        // sent within the hour does not go again.
        let again_obs = Observations { now: obs.now.checked_add(Duration::from_secs(later)).unwrap(), ..obs.clone() };
        let again = plan(&spec, &p.status, &again_obs);
        if later < 3600 {
            for key in sent(&again) {
                prop_assert!(!sent(&p).contains(&key), "sent twice within the hour: {:?}", again.actions);
            }
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_plan(spec in arb_spec(), status in arb_status(), obs in arb_obs()) {
        prop_assert_eq!(plan(&spec, &status, &obs), plan(&spec, &status.clone(), &obs.clone()));
        prop_assert_eq!(needs(&spec, &status, &obs), needs(&spec, &status, &obs));
        // And the status read back from JSON decides the same.
        let back: CanaryStatus = serde_json::from_str(&serde_json::to_string(&status).unwrap()).unwrap();
        prop_assert_eq!(plan(&spec, &back, &obs), plan(&spec, &status, &obs));
    }

    #[test]
    fn the_next_status_survives_json(spec in arb_spec(), status in arb_status(), obs in arb_obs()) {
        let p = plan(&spec, &status, &obs);
        let json = serde_json::to_string(&p.status).unwrap();
        let back: CanaryStatus = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, p.status);
    }

    #[test]
    fn a_bad_or_missing_metric_never_passes(spec in arb_spec(), status in arb_status(), obs in arb_obs()) {
        let p = plan(&spec, &status, &obs);
        let declared = spec.analysis_or_default().metrics.clone().unwrap_or_default();
        let any_bad = declared.iter().any(|m| {
            bad(obs.metrics.iter().find(|r| r.name == m.name).map(|r| &r.outcome))
        });
        if p.read.metrics && any_bad {
            prop_assert_eq!(p.status.failed_checks, status.failed_checks.max(0) + 1);
            let raised = p.actions.iter().any(|a| matches!(a, Action::SetWeights(r) if r.canary > status.canary_weight.clamp(0, 100)));
            prop_assert!(!raised);
            let promoted = p.actions.iter().any(|a| matches!(a, Action::PromotePrimary { .. }));
            prop_assert!(!promoted);
            prop_assert!(p.status.phase != CanaryPhase::Promoting);
        }
    }

    #[test]
    fn check_metric_rejects_every_non_value(min in prop::option::of(-100.0..100.0f64), max in prop::option::of(-100.0..100.0f64), outcome in prop_oneof![
        Just(None),
        Just(Some(MetricOutcome::Value(f64::NAN))),
        Just(Some(MetricOutcome::Value(f64::INFINITY))),
        Just(Some(MetricOutcome::Value(f64::NEG_INFINITY))),
        Just(Some(MetricOutcome::NoData)),
        Just(Some(MetricOutcome::ProviderUnreachable(String::new()))),
        Just(Some(MetricOutcome::Error(String::new()))),
    ]) {
        let m = metric("m", min, max);
        prop_assert!(check_metric(&m, outcome.as_ref()).is_err());
    }

    #[test]
    fn suspended_or_invalid_specs_change_no_traffic(spec in arb_spec(), status in arb_status(), obs in arb_obs(), broken in any::<bool>()) {
        let mut spec = spec;
        if broken {
            analysis(&mut spec).threshold = Some(0);
        } else {
            spec.suspend = true;
        }
        let obs = Observations { deleting: false, ..obs };
        let p = plan(&spec, &status, &obs);
        prop_assert!(p.actions.iter().all(|a| a.class() != ActionClass::Cluster), "{:?}", p.actions);
        prop_assert_eq!(p.status.phase, status.phase);
        prop_assert!(p.read.is_empty());
    }
}

/// Runs a rollout of `spec` to a rest phase.
fn reference(spec: &CanarySpec, fail_at: Option<i32>) -> Sim {
    let mut sim = Sim::new(spec.clone(), t0());
    script(&mut sim, fail_at);
    sim.run_to(CanaryPhase::Initialized, 10);
    sim.new_revision("rev-2");
    sim.reconcile();
    sim.run_until(400, at_rest);
    sim
}

fn at_rest(sim: &Sim) -> bool {
    matches!(
        sim.status.phase,
        CanaryPhase::Succeeded | CanaryPhase::Failed
    )
}

/// Metrics pass, except at analysis step `fail_at` and after (a regression that shows up).
fn script(sim: &mut Sim, fail_at: Option<i32>) {
    sim.metrics = Box::new(move |view, m| {
        let step = view.status.rollout.as_ref().map_or(0, |r| r.step);
        if fail_at.is_some_and(|f| step >= f) {
            MetricOutcome::NoData
        } else {
            MetricOutcome::Value(passing_value(m))
        }
    });
    // Gates open, no rollback asked.
    sim.hooks = Box::new(|_, t, _| (t != HookType::Rollback, String::new()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Restarts, lost status writes, downtime and extra reconciles change when things happen,
    /// never which traffic steps happen.
    #[test]
    fn interruptions_never_repeat_nor_skip_a_step(
        spec in arb_spec(),
        fail_at in prop::option::of(1..12i32),
        disturbances in proptest::collection::vec((0..4u8, 1..400u64), 1..60),
    ) {
        let mut spec = spec;
        spec.suspend = false;
        let expected = reference(&spec, fail_at);
        prop_assert!(at_rest(&expected), "reference did not finish: {:?}", expected);
        prop_assert!(expected.violations.is_empty(), "{:?}", expected.violations);

        let mut sim = Sim::new(spec.clone(), t0());
        script(&mut sim, fail_at);
        sim.run_to(CanaryPhase::Initialized, 10);
        sim.new_revision("rev-2");
        sim.reconcile();
        let mut d = disturbances.iter().cycle();
        let mut since_lost = usize::MAX;
        for _ in 0..2000 {
            if at_rest(&sim) {
                break;
            }
            match d.next() {
                Some((0, secs)) => {
                    // The controller was down for a while.
                    sim.now = sim.now.checked_add(Duration::from_secs(*secs)).unwrap();
                }
                // A crash before the status write; not more often than one reconcile in five
                // (a controller that always crashes mid-step cannot progress at all).
                Some((1, _)) => sim.lose_next_status_write = since_lost >= 5,
                Some((2, secs)) => sim.extra_reconcile_every = Some(Duration::from_secs(*secs % 50 + 1)),
                _ => sim.extra_reconcile_every = None,
            }
            let lost = sim.lose_next_status_write;
            sim.reconcile();
            since_lost = if lost { 0 } else { since_lost.saturating_add(1) };
        }
        prop_assert!(at_rest(&sim), "did not finish: {:?}", sim);
        prop_assert!(sim.violations.is_empty(), "{:?}", sim.violations);
        prop_assert_eq!(sim.status.phase, expected.status.phase);
        let mut weights = sim.routes();
        weights.dedup();
        prop_assert_eq!(weights, expected.routes());
        prop_assert_eq!(sim.status.failed_checks, expected.status.failed_checks);
        let threshold = spec.analysis_or_default().threshold();
        if sim.status.phase == CanaryPhase::Succeeded {
            prop_assert!(sim.status.failed_checks < threshold);
        }
    }

    /// Weighted canaries go up by the configured steps and never above the maximum.
    #[test]
    fn weights_only_rise_during_analysis(spec in arb_spec()) {
        let sim = reference(&spec, None);
        let rollout: Vec<Routes> = sim.routes().into_iter().skip(1).collect();
        if let Some((last, rising)) = rollout.split_last() {
            prop_assert_eq!(*last, Routes::PRIMARY);
            let promoting_down = spec.analysis_or_default().step_weight_promotion.is_some();
            if !promoting_down {
                for pair in rising.windows(2) {
                    prop_assert!(pair[0].canary <= pair[1].canary, "{:?}", rollout);
                }
            }
        }
    }
}
