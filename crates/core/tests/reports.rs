//! What the engine says and asks for: conditions, Events, alerts, ledger records, webhook
//! calls, requeues, and the costly observations it needs.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fledge_api::CanaryPhase::*;
use fledge_api::{CanarySpec, CanaryStatus, HookType, RolloutProgress};
use fledge_core::conditions::{self, GIT_SYNCED, PROMOTED, READY, SPEC_VALID};
use fledge_core::{
    Action, GitQueue, GitWriteError, LedgerEvent, MetricOutcome, MetricResult, Needs, NotifyKind,
    Observations, Plan, Readiness, Severity, TargetObservation, WebhookResult, needs, plan,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const NOW: u64 = 10_000;

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

fn rolling(weight: i32, failed: i32, step: i32, ago: u64) -> CanaryStatus {
    CanaryStatus {
        phase: Progressing,
        canary_weight: weight,
        failed_checks: failed,
        last_applied_spec: Some("rev-2".into()),
        last_promoted_spec: Some("rev-1".into()),
        tracked_configs: Some(BTreeMap::new()),
        last_promoted_configs: Some(BTreeMap::new()),
        last_transition_time: Some(Time(at(NOW - 3000))),
        rollout: Some(RolloutProgress {
            start_time: Some(Time(at(NOW - 3000))),
            last_step_time: (step > 0).then(|| Time(at(NOW - ago))),
            step,
            pre_rollout_done: step > 0,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn events(p: &Plan) -> Vec<(bool, String, String)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::RecordEvent {
                warning,
                reason,
                message,
            } => Some((*warning, reason.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

fn notifications(p: &Plan) -> Vec<(Severity, NotifyKind)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify { severity, kind, .. } => Some((*severity, *kind)),
            _ => None,
        })
        .collect()
}

fn metric_results(rate: MetricOutcome) -> Vec<MetricResult> {
    vec![
        MetricResult {
            name: "request-success-rate".into(),
            outcome: rate,
        },
        MetricResult {
            name: "request-duration".into(),
            outcome: MetricOutcome::Value(100.0),
        },
    ]
}

fn invalid_spec() -> CanarySpec {
    let mut spec = canary_spec();
    analysis(&mut spec).step_weights = Some(vec![10, 5]);
    analysis(&mut spec).step_weight = None;
    spec
}

#[test]
fn references_to_other_namespaces_are_refused_only_when_the_controller_confines_them() {
    use fledge_api::{CanaryAlert, CrossNamespaceObjectReference};
    let mut spec = canary_spec();
    let a = analysis(&mut spec);
    a.metrics.as_mut().expect("metrics")[0].template_ref = Some(CrossNamespaceObjectReference {
        name: "error-rate".into(),
        namespace: Some("monitoring".into()),
        ..Default::default()
    });
    a.alerts = Some(vec![CanaryAlert {
        name: "on-call".into(),
        provider_ref: CrossNamespaceObjectReference {
            name: "slack".into(),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        ..Default::default()
    }]);
    let status = rolling(20, 0, 4, 120);
    // Allowed by default (Flagger's default too).
    let open = plan(&spec, &status, &obs("rev-2"));
    assert_eq!(
        conditions::get(&open.status, SPEC_VALID).map(|c| c.status.as_str()),
        Some("True")
    );
    // Confined to `shop`: the template in `monitoring` is refused, the provider in `shop` is not.
    let confined = Observations {
        confined_to_namespace: Some("shop".into()),
        ..obs("rev-2")
    };
    let p = plan(&spec, &status, &confined);
    let cond = conditions::get(&p.status, SPEC_VALID).expect("SpecValid");
    assert_eq!(cond.status, "False");
    let message = cond.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("spec.analysis.metrics[0].templateRef.namespace")
            && message.contains("monitoring/error-rate")
            && message.contains("--no-cross-namespace-refs"),
        "{message}"
    );
    assert!(!message.contains("alerts[0]"), "{message}");
    assert!(
        p.actions
            .iter()
            .all(|a| !matches!(a, Action::SetWeights(_) | Action::ScaleCanary(_)))
    );
    let ev = events(&p);
    assert!(ev.len() == 1 && ev[0].0 && ev[0].1 == "InvalidSpec");
    // Confined to `monitoring`: now the provider in `shop` is the one refused.
    let elsewhere = Observations {
        confined_to_namespace: Some("monitoring".into()),
        ..obs("rev-2")
    };
    let p = plan(&spec, &status, &elsewhere);
    let message = conditions::get(&p.status, SPEC_VALID)
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("spec.analysis.alerts[0].providerRef.namespace")
            && message.contains("shop/slack")
            && !message.contains("templateRef"),
        "{message}"
    );
}

#[test]
fn an_invalid_spec_is_reported_once_and_nothing_moves() {
    let spec = invalid_spec();
    let status = rolling(20, 0, 4, 120);
    let p = plan(&spec, &status, &obs("rev-2"));
    assert!(
        p.actions
            .iter()
            .all(|a| !matches!(a, Action::SetWeights(_) | Action::ScaleCanary(_)))
    );
    assert_eq!(p.status.phase, Progressing);
    assert_eq!(p.status.canary_weight, 20);
    let cond = conditions::get(&p.status, SPEC_VALID).expect("SpecValid");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("InvalidSpec"))
    );
    assert!(
        cond.message
            .as_deref()
            .is_some_and(|m| m.contains("spec.analysis.stepWeights[1]"))
    );
    assert_eq!(
        conditions::get(&p.status, READY).map(|c| c.status.as_str()),
        Some("False")
    );
    let ev = events(&p);
    assert_eq!(ev.len(), 1);
    assert!(ev[0].0 && ev[0].1 == "InvalidSpec" && ev[0].2.contains("stepWeights[1]"));
    assert_eq!(p.requeue_after(), Some(Duration::from_secs(300)));
    assert!(needs(&spec, &status, &obs("rev-2")).is_empty());
    // The next reconcile says nothing new: no Event storm.
    let again = plan(&spec, &p.status, &obs("rev-2"));
    assert!(events(&again).is_empty());
    assert_eq!(again.status, p.status);
    // Fixed: valid again, and the rollout continues.
    let fixed = plan(
        &canary_spec(),
        &p.status,
        &Observations {
            metrics: metric_results(MetricOutcome::Value(100.0)),
            ..obs("rev-2")
        },
    );
    assert_eq!(
        conditions::get(&fixed.status, SPEC_VALID).map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(fixed.status.canary_weight, 25);
}

#[test]
fn a_missing_target_is_reported_once() {
    let spec = canary_spec();
    let status = rolling(20, 0, 4, 120);
    let o = Observations {
        target: None,
        ..obs("rev-2")
    };
    let p = plan(&spec, &status, &o);
    let cond = conditions::get(&p.status, READY).expect("Ready");
    assert_eq!(cond.reason.as_deref(), Some("TargetNotFound"));
    assert_eq!(
        cond.message.as_deref(),
        Some("Target Deployment/podinfo not found.")
    );
    let ev = events(&p);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].1, "TargetNotFound");
    assert_eq!(
        notifications(&p),
        vec![(Severity::Error, NotifyKind::Blocked)]
    );
    assert_eq!(p.requeue_after(), Some(Duration::from_secs(60)));
    let again = plan(&spec, &p.status, &o);
    assert!(events(&again).is_empty());
    // Found again: Ready, and the step runs.
    let back = plan(
        &spec,
        &again.status,
        &Observations {
            metrics: metric_results(MetricOutcome::Value(100.0)),
            ..obs("rev-2")
        },
    );
    assert_eq!(
        conditions::get(&back.status, READY).map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(back.status.canary_weight, 25);
}

#[test]
fn every_failed_check_has_a_warning_event_with_its_reason() {
    let spec = canary_spec();
    for (outcome, words) in [
        (MetricOutcome::Value(42.0), "42 is below the minimum 99"),
        (MetricOutcome::Value(f64::NAN), "NaN"),
        (MetricOutcome::NoData, "no data"),
        (
            MetricOutcome::ProviderUnreachable("connection refused".into()),
            "provider unreachable: connection refused",
        ),
        (
            MetricOutcome::Error("parse error".into()),
            "query failed: parse error",
        ),
    ] {
        let o = Observations {
            metrics: metric_results(outcome),
            ..obs("rev-2")
        };
        let p = plan(&spec, &rolling(20, 1, 4, 60), &o);
        assert_eq!(p.status.failed_checks, 2, "{words}");
        assert_eq!(p.status.canary_weight, 20, "{words}");
        let ev = events(&p);
        assert_eq!(ev.len(), 1, "{words}");
        assert!(ev[0].0 && ev[0].1 == "CheckFailed", "{ev:?}");
        assert!(
            ev[0].2.contains("request-success-rate") && ev[0].2.contains(words),
            "{}",
            ev[0].2
        );
        assert!(ev[0].2.contains("failed checks 2/5"), "{}", ev[0].2);
        assert_eq!(
            notifications(&p),
            vec![(Severity::Warn, NotifyKind::CheckFailed)]
        );
        let failures = &p.status.rollout.as_ref().expect("rollout").failures;
        assert_eq!(failures.len(), 1);
    }
}

#[test]
fn a_declared_metric_without_a_result_fails_the_step() {
    let o = Observations {
        metrics: metric_results(MetricOutcome::Value(100.0))[1..].to_vec(),
        ..obs("rev-2")
    };
    let p = plan(&canary_spec(), &rolling(20, 0, 4, 60), &o);
    assert_eq!(p.status.failed_checks, 1);
    assert_eq!(p.status.canary_weight, 20);
    assert!(events(&p)[0].2.contains("request-success-rate: no result"));
}

#[test]
fn a_muted_webhook_failure_is_an_event_but_no_alert() {
    let mut spec = canary_spec();
    let mut h = hook("smoke", "rollout");
    h.mute_alert = true;
    analysis(&mut spec).webhooks = Some(vec![h]);
    let o = Observations {
        metrics: metric_results(MetricOutcome::Value(100.0)),
        webhooks: vec![WebhookResult {
            hook: HookType::Rollout,
            name: "smoke".into(),
            passed: false,
            message: "500".into(),
        }],
        ..obs("rev-2")
    };
    let p = plan(&spec, &rolling(20, 0, 4, 60), &o);
    assert_eq!(p.status.failed_checks, 1);
    assert_eq!(events(&p).len(), 1);
    assert!(notifications(&p).is_empty());
}

#[test]
fn the_failure_list_is_bounded() {
    let spec = canary_spec();
    let mut status = rolling(20, 0, 4, 60);
    let mut spec20 = spec.clone();
    analysis(&mut spec20).threshold = Some(100);
    for i in 0..30u64 {
        let o = Observations {
            now: at(NOW + i * 60),
            metrics: metric_results(MetricOutcome::NoData),
            ..obs("rev-2")
        };
        status = plan(&spec20, &status, &o).status;
    }
    assert_eq!(status.failed_checks, 30);
    assert_eq!(status.rollout.as_ref().map(|r| r.failures.len()), Some(10));
    // The first failure's time stays: it starts the incident.
    assert_eq!(
        status
            .rollout
            .as_ref()
            .and_then(|r| r.first_failure_time.as_ref())
            .map(|t| t.0),
        Some(at(NOW))
    );
}

#[test]
fn each_metric_result_is_kept_with_its_range_and_reason() {
    let spec = canary_spec();
    let o = Observations {
        metrics: metric_results(MetricOutcome::Value(97.5)),
        ..obs("rev-2")
    };
    let p = plan(&spec, &rolling(20, 0, 4, 60), &o);
    let r = p.status.rollout.as_ref().unwrap();
    let rate = &r.metrics[0];
    assert_eq!(rate.name, "request-success-rate");
    assert_eq!(rate.value, Some(97.5));
    assert_eq!((rate.min, rate.max), (Some(99.0), None));
    assert!(!rate.passed);
    assert!(
        rate.reason
            .as_deref()
            .unwrap()
            .contains("97.5 is below the minimum 99"),
        "{rate:?}"
    );
    let duration = &r.metrics[1];
    assert_eq!(duration.name, "request-duration");
    assert_eq!((duration.value, duration.max), (Some(100.0), Some(500.0)));
    assert!(duration.passed && duration.reason.is_none());
    // The same results open the history, with the step and weight they were measured at.
    assert_eq!(r.history.len(), 1);
    assert_eq!((r.history[0].step, r.history[0].canary_weight), (5, 20));
    assert_eq!(r.history[0].metrics, r.metrics);
    assert_eq!(
        r.history[0].time.as_ref().map(|t| t.0),
        Some(at(NOW)),
        "the time of the step"
    );

    // Silence keeps no value: NaN, no data and an unreachable provider record only a reason.
    for (outcome, words) in [
        (MetricOutcome::Value(f64::NAN), "NaN"),
        (MetricOutcome::NoData, "no data"),
        (
            MetricOutcome::ProviderUnreachable("connection refused".into()),
            "provider unreachable: connection refused",
        ),
    ] {
        let o = Observations {
            metrics: metric_results(outcome),
            ..obs("rev-2")
        };
        let p = plan(&spec, &rolling(20, 0, 4, 60), &o);
        let rate = &p.status.rollout.as_ref().unwrap().metrics[0];
        assert_eq!(rate.value, None);
        assert!(!rate.passed);
        assert!(rate.reason.as_deref().unwrap().contains(words), "{rate:?}");
    }
}

#[test]
fn the_checks_condition_says_why_the_last_step_failed() {
    let spec = canary_spec();
    let failing = Observations {
        metrics: metric_results(MetricOutcome::Error(
            "MetricTemplate shop/rate: spec.query uses the unknown variable {{ nope }}".into(),
        )),
        ..obs("rev-2")
    };
    let p = plan(&spec, &rolling(20, 0, 4, 60), &failing);
    let c = p
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.r#type == conditions::CHECKS_PASSING)
        .expect("ChecksPassing condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("CheckFailed"))
    );
    assert!(
        c.message
            .as_deref()
            .unwrap()
            .contains("unknown variable {{ nope }}"),
        "{c:?}"
    );
    let passing = Observations {
        now: at(NOW + 60),
        metrics: metric_results(MetricOutcome::Value(100.0)),
        ..obs("rev-2")
    };
    let p = plan(&spec, &p.status, &passing);
    let c = p
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.r#type == conditions::CHECKS_PASSING)
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("True", Some("ChecksPassed"))
    );
}

#[test]
fn the_metric_history_is_bounded_and_restarts_with_each_rollout() {
    let mut spec = canary_spec();
    analysis(&mut spec).threshold = Some(100);
    let mut status = rolling(20, 0, 4, 60);
    for i in 0..30u64 {
        let o = Observations {
            now: at(NOW + i * 60),
            metrics: metric_results(MetricOutcome::Value(50.0 + i as f64)),
            ..obs("rev-2")
        };
        status = plan(&spec, &status, &o).status;
    }
    let r = status.rollout.as_ref().unwrap();
    assert_eq!(r.history.len(), 20);
    // Oldest first, the last 20 steps (steps 15..=34 measured 60..=79).
    let steps: Vec<i32> = r.history.iter().map(|h| h.step).collect();
    assert_eq!(steps, (15..=34).collect::<Vec<_>>());
    assert_eq!(r.history[0].metrics[0].value, Some(60.0));
    assert_eq!(r.history[19].metrics[0].value, Some(79.0));
    assert_eq!(r.metrics, r.history[19].metrics);

    // A newer revision starts a new rollout with no results of the old one.
    let o = Observations {
        now: at(NOW + 31 * 60),
        ..obs("rev-3")
    };
    let next = plan(&spec, &status, &o).status;
    let r = next.rollout.as_ref().unwrap();
    assert!(r.history.is_empty() && r.metrics.is_empty(), "{r:?}");
}

/// A Canary that last promoted `rev-2` after `rev-1`, at rest.
fn promoted_twice() -> CanaryStatus {
    CanaryStatus {
        phase: Succeeded,
        last_applied_spec: Some("rev-2".into()),
        last_promoted_spec: Some("rev-2".into()),
        tracked_configs: Some(BTreeMap::new()),
        last_promoted_configs: Some(BTreeMap::new()),
        last_transition_time: Some(Time(at(NOW - 3000))),
        promoted_revisions: vec!["rev-1".into(), "rev-2".into()],
        ..Default::default()
    }
}

fn with_gitops(fast: Option<bool>) -> CanarySpec {
    let mut spec = canary_spec();
    spec.gitops = Some(Box::new(fledge_api::gitops::GitOps {
        repository: fledge_api::gitops::GitRepository {
            url: "git://127.0.0.1/app.git".into(),
            ..Default::default()
        },
        fast_rollback: fast,
        ..Default::default()
    }));
    spec
}

#[test]
fn a_revision_promoted_before_is_promoted_at_once_without_analysis() {
    let p = plan(&with_gitops(None), &promoted_twice(), &obs("rev-1"));
    assert_eq!(p.status.phase, Promoting, "{:?}", p.actions);
    assert!(
        p.actions.contains(&Action::PromotePrimary {
            revision: "rev-1".into()
        }),
        "{:?}",
        p.actions
    );
    let evs = events(&p);
    assert!(
        evs.iter()
            .any(|(w, r, m)| *w && r == "FastRollback" && m.contains("promoted before")),
        "{evs:?}"
    );
    assert!(notifications(&p).contains(&(Severity::Warn, NotifyKind::NewRevision)));
    let started = p.actions.iter().find_map(|a| match a {
        Action::RecordLedger(e) if e.event == LedgerEvent::Started => Some(e.clone()),
        _ => None,
    });
    assert!(
        started.is_some_and(|e| e.reasons.iter().any(|r| r.contains("Fast rollback"))),
        "the ledger says why"
    );
    // Told not to, or without spec.gitops, it is a release like any other: analysed.
    for spec in [with_gitops(Some(false)), canary_spec()] {
        let p = plan(&spec, &promoted_twice(), &obs("rev-1"));
        assert_eq!(p.status.phase, Progressing);
    }
    // A revision never promoted is analysed too.
    assert_eq!(
        plan(&with_gitops(None), &promoted_twice(), &obs("rev-3"))
            .status
            .phase,
        Progressing
    );
}

#[test]
fn promoted_revisions_are_remembered_newest_last_and_bounded() {
    let spec = canary_spec();
    let mut status = promoted_twice();
    for i in 3..20 {
        let rev = format!("rev-{i}");
        // Start, then drive the rollout to its end.
        let mut t = NOW + i * 1000;
        for _ in 0..30 {
            let o = Observations {
                now: at(t),
                metrics: metric_results(MetricOutcome::Value(100.0)),
                ..obs(&rev)
            };
            status = plan(&spec, &status, &o).status;
            t += 60;
            if status.phase == Succeeded && status.last_promoted_spec.as_deref() == Some(&rev) {
                break;
            }
        }
        assert_eq!(status.last_promoted_spec.as_deref(), Some(rev.as_str()));
    }
    let want: Vec<String> = (10..20).map(|i| format!("rev-{i}")).collect();
    assert_eq!(status.promoted_revisions, want);
}

#[test]
fn a_rollback_reports_everywhere() {
    let mut spec = canary_spec();
    analysis(&mut spec).webhooks =
        Some(vec![hook("notify", "post-rollout"), hook("audit", "event")]);
    let o = Observations {
        metrics: metric_results(MetricOutcome::NoData),
        ..obs("rev-2")
    };
    // Without spec.gitops there is nothing to revert in Git.
    let p = plan(&spec, &rolling(20, 4, 8, 60), &o);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RevertInGit { .. })),
        "{:?}",
        p.actions
    );
    spec.gitops = with_gitops(None).gitops;
    // A ledger only (no spec.gitops.path) reverts nothing either.
    let p = plan(&spec, &rolling(20, 4, 8, 60), &o);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RevertInGit { .. }))
    );
    if let Some(g) = spec.gitops.as_mut() {
        g.path = Some("deploy/app.yaml".into());
    }
    let o = Observations {
        canary_name: "shop".into(),
        images: fledge_core::ContainerImages {
            target: vec![
                ("app".into(), "ghcr.io/acme/app:2.0.0".into()),
                ("sidecar".into(), "envoy:1.30".into()),
            ],
            primary: vec![
                ("app".into(), "ghcr.io/acme/app:1.9.0".into()),
                ("sidecar".into(), "envoy:1.30".into()),
            ],
        },
        ..o
    };
    let p = plan(&spec, &rolling(20, 4, 8, 60), &o);
    assert_eq!(p.status.phase, Failed);
    assert!(p.actions.contains(&Action::CallWebhooks {
        hook: HookType::PostRollout,
        phase: Failed,
        message: String::new()
    }));
    assert!(p.actions.iter().any(|a| matches!(
        a,
        Action::CallWebhooks {
            hook: HookType::Event,
            ..
        }
    )));
    assert!(notifications(&p).contains(&(Severity::Error, NotifyKind::RolledBack)));
    let ledger = p.actions.iter().find_map(|a| match a {
        Action::RecordLedger(e) => Some(e.clone()),
        _ => None,
    });
    let ledger = ledger.expect("ledger");
    assert_eq!(ledger.event, LedgerEvent::RolledBack);
    assert_eq!(ledger.revision, "rev-2");
    assert_eq!(ledger.primary_revision.as_deref(), Some("rev-1"));
    assert_eq!(ledger.failed_checks, 5);
    assert_eq!(
        ledger.reasons.last().map(String::as_str),
        Some("failed checks threshold reached 5")
    );
    // Only the image that changed goes back, to the primary's; to the tracked branch.
    let revert = Action::RevertInGit {
        revision: "rev-2".into(),
        reason: "failed checks threshold reached 5".into(),
        images: vec![fledge_core::ImageRevert {
            from: "ghcr.io/acme/app:2.0.0".into(),
            to: "ghcr.io/acme/app:1.9.0".into(),
        }],
        branch: None,
    };
    assert!(p.actions.contains(&revert), "{:?}", p.actions);
    // mode: branch: a branch of its own, named after the Canary and the revision.
    let mut branch_spec = spec.clone();
    if let Some(g) = branch_spec.gitops.as_mut() {
        g.mode = Some("branch".into());
    }
    let p = plan(&branch_spec, &rolling(20, 4, 8, 60), &o);
    assert!(p.actions.iter().any(|a| matches!(
        a,
        Action::RevertInGit { branch: Some(b), .. } if b == "fledge/revert-shop-rev-2"
    )));
    // No image differs: nothing a revert could put back.
    let same = Observations {
        images: fledge_core::ContainerImages {
            target: vec![("app".into(), "app:1".into())],
            primary: vec![("app".into(), "app:1".into())],
        },
        ..o.clone()
    };
    let p = plan(&spec, &rolling(20, 4, 8, 60), &same);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RevertInGit { .. }))
    );
    // Told not to revert: no revert.
    if let Some(g) = spec.gitops.as_mut() {
        g.revert_on_rollback = Some(false);
    }
    let p = plan(&spec, &rolling(20, 4, 8, 60), &o);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RevertInGit { .. }))
    );
    let cond = conditions::get(&p.status, PROMOTED).expect("Promoted");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("False", Some("Failed"))
    );
    assert_eq!(p.status.last_transition_time, Some(Time(at(NOW))));
    let ev = events(&p);
    assert!(
        ev.iter()
            .any(|(warning, reason, _)| *warning && reason == "RolledBack")
    );
}

#[test]
fn a_promotion_reports_everywhere() {
    let mut spec = canary_spec();
    analysis(&mut spec).webhooks = Some(vec![hook("notify", "post-rollout")]);
    let mut status = rolling(0, 1, 11, 10);
    status.phase = Finalising;
    status.tracked_configs = Some([("ConfigMap/podinfo".to_string(), "abc".to_string())].into());
    let p = plan(&spec, &status, &obs("rev-2"));
    assert_eq!(p.status.phase, Succeeded);
    assert_eq!(p.status.last_promoted_spec.as_deref(), Some("rev-2"));
    assert_eq!(p.status.last_promoted_configs, status.tracked_configs);
    assert!(p.actions.contains(&Action::CallWebhooks {
        hook: HookType::PostRollout,
        phase: Succeeded,
        message: String::new()
    }));
    assert_eq!(
        notifications(&p),
        vec![(Severity::Info, NotifyKind::Promoted)]
    );
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::RecordLedger(e) if e.event == LedgerEvent::Promoted))
    );
    let cond = conditions::get(&p.status, PROMOTED).expect("Promoted");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref()),
        ("True", Some("Succeeded"))
    );
}

#[test]
fn conditions_move_their_transition_time_only_on_change() {
    let mut sim = initialized(canary_spec());
    let ready = conditions::get(&sim.status, READY).cloned().expect("Ready");
    sim.new_revision("rev-2");
    sim.run_to(Succeeded, 200);
    let ready_after = conditions::get(&sim.status, READY).cloned().expect("Ready");
    assert_eq!(ready, ready_after, "Ready stayed True, untouched");
    let promoted = conditions::get(&sim.status, PROMOTED).expect("Promoted");
    assert_eq!(
        promoted.last_transition_time,
        sim.status.last_transition_time
    );
}

#[test]
fn needs_asks_only_for_what_the_step_uses() {
    let mut spec = canary_spec();
    analysis(&mut spec).webhooks = Some(vec![
        hook("go", "confirm-rollout"),
        hook("db", "pre-rollout"),
        hook("load", "rollout"),
        hook("more", "confirm-traffic-increase"),
        hook("ship", "confirm-promotion"),
        hook("abort", "rollback"),
        hook("post", "post-rollout"),
        hook("audit", "event"),
    ]);
    let set = |hooks: &[HookType], metrics: bool| Needs {
        webhooks: hooks.iter().copied().collect(),
        metrics,
        ledger: false,
        // Every case is an initialized Canary: its routes are checked for drift.
        routes: true,
    };
    use HookType::*;
    let at_rest = CanaryStatus {
        phase: Succeeded,
        ..rolling(0, 0, 11, 600)
    };
    let mut unready = obs("rev-2");
    if let Some(t) = unready.target.as_mut() {
        t.readiness.available = 0;
    }
    let cases = [
        ("at rest", at_rest.clone(), obs("rev-2"), set(&[], false)),
        (
            "new revision",
            at_rest.clone(),
            obs("rev-3"),
            set(&[ConfirmRollout], false),
        ),
        (
            "first step",
            rolling(0, 0, 0, 0),
            obs("rev-2"),
            set(&[Rollback, PreRollout, ConfirmTrafficIncrease], false),
        ),
        (
            "step due",
            rolling(20, 0, 4, 60),
            obs("rev-2"),
            set(&[Rollback, Rollout, ConfirmTrafficIncrease], true),
        ),
        (
            "last step",
            rolling(50, 0, 10, 60),
            obs("rev-2"),
            set(&[Rollback, Rollout, ConfirmPromotion], true),
        ),
        (
            "step not due",
            rolling(20, 0, 4, 30),
            obs("rev-2"),
            set(&[], false),
        ),
        (
            "canary not ready",
            rolling(20, 0, 4, 60),
            unready,
            set(&[], false),
        ),
        (
            "new revision mid-rollout",
            rolling(20, 0, 4, 60),
            obs("rev-3"),
            set(&[], false),
        ),
    ];
    for (name, status, o, expected) in cases {
        assert_eq!(needs(&spec, &status, &o), expected, "{name}");
    }
}

#[test]
fn requeues_follow_the_work() {
    let spec = canary_spec();
    let requeue = |s: &CanaryStatus, o: &Observations| plan(&spec, s, o).requeue_after();
    let mut unready = obs("rev-2");
    if let Some(t) = unready.target.as_mut() {
        t.readiness.available = 0;
    }
    assert_eq!(
        requeue(&rolling(20, 0, 4, 60), &unready),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        requeue(&rolling(20, 0, 4, 45), &obs("rev-2")),
        Some(Duration::from_secs(15))
    );
    let o = Observations {
        metrics: metric_results(MetricOutcome::Value(100.0)),
        ..obs("rev-2")
    };
    assert_eq!(
        requeue(&rolling(20, 0, 4, 60), &o),
        Some(Duration::from_secs(60))
    );
    let at_rest = CanaryStatus {
        phase: Succeeded,
        ..rolling(0, 0, 11, 600)
    };
    assert_eq!(
        requeue(&at_rest, &obs("rev-2")),
        Some(Duration::from_secs(60))
    );
}

#[test]
fn sub_second_times_are_stored_as_whole_seconds() {
    let o = Observations {
        now: at(NOW)
            .checked_add(Duration::from_millis(750))
            .expect("time"),
        ..obs("rev-3")
    };
    let p = plan(
        &canary_spec(),
        &CanaryStatus {
            phase: Succeeded,
            ..rolling(0, 0, 11, 600)
        },
        &o,
    );
    assert_eq!(
        p.status.rollout.and_then(|r| r.start_time),
        Some(Time(at(NOW)))
    );
}

/// A Canary at rest on `rev-1` (initialized, nothing rolling out).
fn at_rest() -> CanaryStatus {
    CanaryStatus {
        phase: Initialized,
        last_applied_spec: Some("rev-1".into()),
        last_promoted_spec: Some("rev-1".into()),
        tracked_configs: Some(BTreeMap::new()),
        last_promoted_configs: Some(BTreeMap::new()),
        last_transition_time: Some(Time(at(NOW - 3000))),
        ..Default::default()
    }
}

#[test]
fn the_promoted_condition_says_what_a_waiting_canary_waits_for() {
    let reason = |p: &Plan| {
        conditions::get(&p.status, PROMOTED)
            .and_then(|c| c.reason.clone())
            .unwrap_or_default()
    };
    // No rollout slot: waits for one, and says so.
    let mut no_slot = obs("rev-2");
    no_slot.rollout_slots = fledge_core::slots::RolloutSlots::none_free();
    let p = plan(&canary_spec(), &at_rest(), &no_slot);
    assert_eq!(p.status.phase, Waiting);
    assert_eq!(reason(&p), "WaitingForRolloutSlot");
    let c = conditions::get(&p.status, PROMOTED).unwrap();
    assert_eq!(c.status, "Unknown");
    assert!(
        c.message
            .as_deref()
            .unwrap_or_default()
            .contains("rollout slot")
    );

    // A slot frees up but a confirm-rollout gate is closed: the reason changes.
    let mut gated = canary_spec();
    analysis(&mut gated)
        .webhooks
        .get_or_insert_with(Vec::new)
        .push(hook("approve", "confirm-rollout"));
    let mut closed = obs("rev-2");
    closed.webhooks = vec![WebhookResult {
        hook: HookType::ConfirmRollout,
        name: "approve".into(),
        passed: false,
        message: "closed".into(),
    }];
    let p2 = plan(&gated, &p.status, &closed);
    assert_eq!(p2.status.phase, Waiting);
    assert_eq!(reason(&p2), "WaitingForApproval");
}

#[test]
fn git_synced_follows_the_queue_with_one_event_per_failure_and_an_alert_when_old() {
    let spec = with_gitops(None);
    let status = promoted_twice();
    let queue = |pending: usize, ago: u64, error: Option<&str>| {
        Some(GitQueue {
            pending,
            oldest: (pending > 0).then(|| at(NOW - ago)),
            error: error.map(|reason| GitWriteError {
                reason: reason.into(),
                message: "git ls-remote git://127.0.0.1/app.git: connection refused".into(),
            }),
            alert_after: Duration::from_secs(900),
        })
    };
    let synced = |s: &CanaryStatus| {
        let c = conditions::get(s, GIT_SYNCED).expect("GitSynced");
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    };
    // Nothing waiting.
    let p = plan(
        &spec,
        &status,
        &Observations {
            git_queue: queue(0, 0, None),
            ..obs("rev-2")
        },
    );
    assert_eq!(synced(&p.status).0, "True");
    assert_eq!(synced(&p.status).1, "Synced");
    // Queued, not failing: no Event.
    let p = plan(
        &spec,
        &p.status,
        &Observations {
            git_queue: queue(2, 30, None),
            ..obs("rev-2")
        },
    );
    let (value, reason, message) = synced(&p.status);
    assert_eq!((value.as_str(), reason.as_str()), ("False", "Queued"));
    assert!(
        message.starts_with("2 record(s) queued since "),
        "{message}"
    );
    assert!(events(&p).is_empty(), "{:?}", events(&p));
    // Failing: one warning Event naming the reason, not repeated while nothing changes.
    let o = Observations {
        git_queue: queue(2, 60, Some("GitUnreachable")),
        ..obs("rev-2")
    };
    let p = plan(&spec, &p.status, &o);
    assert_eq!(synced(&p.status).1, "GitUnreachable");
    let ev = events(&p);
    assert!(
        ev.iter()
            .any(|(w, r, m)| *w && r == "GitUnreachable" && m.contains("connection refused")),
        "{ev:?}"
    );
    let again = plan(&spec, &p.status, &o);
    assert!(events(&again).is_empty(), "{:?}", events(&again));
    assert!(notifications(&again).is_empty());
    // Older than --git-queue-alert-after: an error alert.
    let o = Observations {
        git_queue: queue(2, 1000, Some("GitUnreachable")),
        ..obs("rev-2")
    };
    let p = plan(&spec, &p.status, &o);
    assert!(notifications(&p).contains(&(Severity::Error, NotifyKind::Blocked)));
    // Written at last.
    let p = plan(
        &spec,
        &p.status,
        &Observations {
            git_queue: queue(0, 0, None),
            ..obs("rev-2")
        },
    );
    assert_eq!(synced(&p.status).0, "True");
    // Without spec.gitops, or when the queue is unknown, no condition.
    let p = plan(
        &canary_spec(),
        &status,
        &Observations {
            git_queue: queue(2, 30, None),
            ..obs("rev-2")
        },
    );
    assert!(conditions::get(&p.status, GIT_SYNCED).is_none());
    let p = plan(&spec, &status, &obs("rev-2"));
    assert!(conditions::get(&p.status, GIT_SYNCED).is_none());
}

#[test]
fn a_failure_only_a_person_can_fix_is_reported_once_with_the_fix() {
    let spec = canary_spec();
    let status = rolling(20, 0, 4, 120);
    let o = Observations {
        generation: Some(2),
        blocked: Some(fledge_core::Blocker {
            kind: fledge_core::BlockerKind::ApiNotServed,
            message: "router traefik: TraefikService traefik.io/v1alpha1 is not served by this \
                      cluster."
                .into(),
        }),
        ..obs("rev-2")
    };
    let p = plan(&spec, &status, &o);
    let cond = conditions::get(&p.status, READY).expect("Ready");
    assert_eq!(cond.status, "False");
    assert_eq!(cond.reason.as_deref(), Some("ApiNotServed"));
    assert_eq!(
        cond.message.as_deref(),
        Some(
            "router traefik: TraefikService traefik.io/v1alpha1 is not served by this cluster. \
             To fix: install the CRD of the API named above, or choose another spec.provider."
        )
    );
    let ev = events(&p);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].1, "ApiNotServed");
    assert_eq!(
        notifications(&p),
        vec![(Severity::Error, NotifyKind::Blocked)]
    );
    // Nothing else moves: no cluster action, the step and the generation are not recorded.
    assert_eq!(p.actions.len(), 3, "{:?}", p.actions);
    assert_eq!(p.status.canary_weight, 20);
    assert_eq!(p.status.observed_generation, status.observed_generation);
    assert_eq!(p.requeue_after(), Some(Duration::from_secs(300)));
    // The retry fails the same way: no second Event or alert.
    let again = plan(&spec, &p.status, &o);
    assert!(events(&again).is_empty() && notifications(&again).is_empty());
    // Fixed: the next plan is Ready again and takes the step it could not take.
    let back = plan(
        &spec,
        &again.status,
        &Observations {
            metrics: metric_results(MetricOutcome::Value(100.0)),
            ..obs("rev-2")
        },
    );
    assert_eq!(
        conditions::get(&back.status, READY).map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(back.status.canary_weight, 25);
}
