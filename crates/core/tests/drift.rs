//! Worked examples of drift repair: the routes read back from the cluster against those the
//! status records.

mod common;

use std::collections::BTreeMap;

use common::*;
use fledge_api::CanaryPhase::{self, *};
use fledge_api::{CanaryStatus, RolloutProgress};
use fledge_core::drift::{ROUTES_RESTORED, ROUTING_OBJECT_RECREATED};
use fledge_core::{
    Action, ActionClass, ApexSelects, Observations, Plan, Readiness, Routes, RoutesView,
    TargetObservation, needs, plan,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const NOW: u64 = 10_000;

fn obs(routes: RoutesView) -> Observations {
    Observations {
        generation: Some(1),
        target: Some(TargetObservation {
            spec_hash: "rev-2".into(),
            tracked_configs: BTreeMap::new(),
            readiness: Readiness::ready(2),
        }),
        primary: Some(Readiness::ready(2)),
        routes,
        ..Observations::at(at(NOW))
    }
}

/// Progressing at 20%, the last step 10 s ago (the next one is not due).
fn at_20() -> CanaryStatus {
    CanaryStatus {
        phase: Progressing,
        canary_weight: 20,
        last_applied_spec: Some("rev-2".into()),
        last_promoted_spec: Some("rev-1".into()),
        tracked_configs: Some(BTreeMap::new()),
        last_promoted_configs: Some(BTreeMap::new()),
        observed_generation: Some(1),
        rollout: Some(RolloutProgress {
            start_time: Some(Time(at(NOW - 3000))),
            last_step_time: Some(Time(at(NOW - 10))),
            step: 4,
            pre_rollout_done: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn cluster(p: &Plan) -> Vec<Action> {
    p.actions
        .iter()
        .filter(|a| a.class() == ActionClass::Cluster)
        .cloned()
        .collect()
}

fn warnings(p: &Plan) -> Vec<(String, String)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::RecordEvent {
                warning: true,
                reason,
                message,
            } => Some((reason.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_hand_edit_that_sends_more_to_the_canary_is_undone_once() {
    let spec = canary_spec();
    let o = obs(RoutesView::Found(Routes::weighted(50)));
    assert!(needs(&spec, &at_20(), &o).routes);
    let p = plan(&spec, &at_20(), &o);
    assert_eq!(cluster(&p), vec![Action::SetWeights(Routes::weighted(20))]);
    assert_eq!(
        warnings(&p),
        vec![(
            ROUTES_RESTORED.to_string(),
            "the gatewayapi:v1 routing objects gave canary 50% while the status records \
             canary 20%: changed outside fledge; restored"
                .to_string()
        )]
    );
    assert_eq!(p.status.routes_restored_at, Some(Time(at(NOW))));
    assert_eq!(p.status.canary_weight, 20);
    // The same tool rewrites them at once: nothing is read for RESTORE_EVERY, even by a
    // restarted controller (the time is in the status).
    let soon = Observations {
        now: at(NOW + 5),
        ..o.clone()
    };
    assert!(!needs(&spec, &p.status, &soon).routes);
    let quiet = plan(&spec, &p.status, &soon);
    assert!(cluster(&quiet).is_empty() && warnings(&quiet).is_empty());
    let later = Observations {
        now: at(NOW + 11),
        ..o
    };
    assert!(needs(&spec, &p.status, &later).routes);
    assert_eq!(
        cluster(&plan(&spec, &p.status, &later)),
        vec![Action::SetWeights(Routes::weighted(20))]
    );
}

#[test]
fn a_deleted_routing_object_is_recreated() {
    let spec = canary_spec();
    let p = plan(&spec, &at_20(), &obs(RoutesView::Missing));
    assert_eq!(
        cluster(&p),
        vec![Action::EnsureServices {
            apex: ApexSelects::Primary
        }]
    );
    let w = warnings(&p);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].0, ROUTING_OBJECT_RECREATED);
    assert!(w[0].1.contains("recreated with canary 20%"), "{}", w[0].1);
}

#[test]
fn matching_less_exposed_or_unreadable_routes_are_left_alone() {
    let spec = canary_spec();
    for routes in [
        RoutesView::Found(Routes::weighted(20)),
        // A rollback whose status write was lost, or an operator draining the canary.
        RoutesView::Found(Routes::weighted(5)),
        RoutesView::Found(Routes::PRIMARY),
        RoutesView::Unreadable("timeout".into()),
        RoutesView::NotRead,
    ] {
        let p = plan(&spec, &at_20(), &obs(routes.clone()));
        assert!(cluster(&p).is_empty(), "{routes:?}: {:?}", p.actions);
        assert!(warnings(&p).is_empty(), "{routes:?}");
        assert_eq!(p.status.routes_restored_at, None);
    }
    // More mirroring than recorded is more exposure.
    let mirrored = RoutesView::Found(Routes {
        mirror: Some(50),
        ..Routes::weighted(20)
    });
    assert_eq!(
        cluster(&plan(&spec, &at_20(), &obs(mirrored))),
        vec![Action::SetWeights(Routes::weighted(20))]
    );
}

#[test]
fn a_plan_that_sets_the_routes_itself_ignores_what_was_read() {
    let spec = canary_spec();
    let mut due = at_20();
    if let Some(r) = due.rollout.as_mut() {
        r.last_step_time = Some(Time(at(NOW - 60)));
    }
    let o = Observations {
        metrics: vec![
            fledge_core::MetricResult {
                name: "request-success-rate".into(),
                outcome: fledge_core::MetricOutcome::Value(100.0),
            },
            fledge_core::MetricResult {
                name: "request-duration".into(),
                outcome: fledge_core::MetricOutcome::Value(100.0),
            },
        ],
        ..obs(RoutesView::Found(Routes::weighted(50)))
    };
    let p = plan(&spec, &due, &o);
    assert_eq!(cluster(&p), vec![Action::SetWeights(Routes::weighted(25))]);
    assert!(warnings(&p).is_empty());
}

#[test]
fn routes_are_not_read_while_people_are_in_charge_or_nothing_is_routed() {
    let spec = canary_spec();
    let o = obs(RoutesView::NotRead);
    let read = |spec: &fledge_api::CanarySpec, s: &CanaryStatus, o: &Observations| {
        needs(spec, s, o).routes
    };
    assert!(read(&spec, &at_20(), &o));
    let rest = |phase: CanaryPhase| CanaryStatus { phase, ..at_20() };
    for phase in [Unknown, Initializing, Terminating, Terminated] {
        assert!(!read(&spec, &rest(phase), &o), "{phase}");
    }
    for phase in [Initialized, Succeeded, Failed, Waiting, WaitingPromotion] {
        assert!(read(&spec, &rest(phase), &o), "{phase}");
    }
    let deleting = Observations {
        deleting: true,
        ..o.clone()
    };
    assert!(!read(&spec, &at_20(), &deleting));
    let suspended = fledge_api::CanarySpec {
        suspend: true,
        ..spec.clone()
    };
    assert!(!read(&suspended, &at_20(), &o));
    let mut invalid = spec.clone();
    analysis(&mut invalid).threshold = Some(0);
    assert!(!read(&invalid, &at_20(), &o));
}
