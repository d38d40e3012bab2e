//! The chat alerts the engine asks for: which kind, which severity, what the text carries, and
//! that webhooks with `muteAlert` say nothing in chat.

mod common;

use std::collections::BTreeMap;

use common::*;
use fledge_api::CanaryPhase::*;
use fledge_api::{CanarySpec, CanaryStatus, HookType, RolloutProgress};
use fledge_core::alerts::AlertTarget;
use fledge_core::conditions::{self, SUSPENDED};
use fledge_core::{
    Action, MetricOutcome, MetricResult, NotifyKind, Observations, Plan, Readiness, Severity,
    TargetObservation, WebhookResult, plan,
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
        metrics: passing(),
        ..Observations::at(at(NOW))
    }
}

fn passing() -> Vec<MetricResult> {
    vec![
        MetricResult {
            name: "request-success-rate".into(),
            outcome: MetricOutcome::Value(100.0),
        },
        MetricResult {
            name: "request-duration".into(),
            outcome: MetricOutcome::Value(100.0),
        },
    ]
}

fn rolling(weight: i32, failed: i32, step: i32) -> CanaryStatus {
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
            last_step_time: Some(Time(at(NOW - 60))),
            step,
            pre_rollout_done: step > 0,
            ..Default::default()
        }),
        ..Default::default()
    }
}

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

fn alerts(p: &Plan) -> Vec<(Severity, NotifyKind, String)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify {
                severity,
                kind,
                message,
                ..
            } => Some((*severity, *kind, message.clone())),
            _ => None,
        })
        .collect()
}

fn kinds(p: &Plan) -> Vec<(Severity, NotifyKind)> {
    alerts(p).into_iter().map(|(s, k, _)| (s, k)).collect()
}

fn with_hook(mut spec: CanarySpec, name: &str, t: &str, muted: bool) -> CanarySpec {
    let mut h = hook(name, t);
    h.mute_alert = muted;
    analysis(&mut spec)
        .webhooks
        .get_or_insert_with(Vec::new)
        .push(h);
    spec
}

fn failing(o: Observations, hook: HookType, name: &str) -> Observations {
    let mut o = o;
    o.webhooks.push(WebhookResult {
        hook,
        name: name.into(),
        passed: false,
        message: "answered 403".into(),
    });
    o
}

#[test]
fn each_traffic_step_is_an_info_alert_naming_the_weight() {
    let p = plan(&canary_spec(), &rolling(20, 0, 4), &obs("rev-2"));
    assert_eq!(p.status.canary_weight, 25);
    let a = alerts(&p);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0].0, a[0].1), (Severity::Info, NotifyKind::TrafficStep));
    assert!(a[0].2.contains("weight 25"), "{}", a[0].2);

    // A/B testing and blue/green: each iteration.
    let ab = ab_spec(5);
    let mut status = rolling(0, 0, 2);
    status.iterations = 1;
    let p = plan(&ab, &status, &obs("rev-2"));
    let a = alerts(&p);
    assert_eq!(kinds(&p), vec![(Severity::Info, NotifyKind::TrafficStep)]);
    assert!(a[0].2.contains("iteration 2/5"), "{}", a[0].2);
}

#[test]
fn a_failed_check_alert_carries_the_metric_value_and_range() {
    let mut o = obs("rev-2");
    o.metrics[1].outcome = MetricOutcome::Value(750.0);
    let p = plan(&canary_spec(), &rolling(20, 0, 4), &o);
    let a = alerts(&p);
    assert_eq!(kinds(&p), vec![(Severity::Warn, NotifyKind::CheckFailed)]);
    let text = &a[0].2;
    for part in ["request-duration", "750", "500", "1/5"] {
        assert!(text.contains(part), "{part} missing in {text}");
    }
}

#[test]
fn a_rollback_alert_names_the_checks_that_failed() {
    let mut status = rolling(20, 4, 8);
    if let Some(r) = status.rollout.as_mut() {
        r.failures = vec!["metric request-duration: 900 is above the maximum 500".into()];
    }
    let mut o = obs("rev-2");
    o.metrics[0].outcome = MetricOutcome::NoData;
    let p = plan(&canary_spec(), &status, &o);
    assert_eq!(p.status.phase, Failed);
    let errors: Vec<_> = alerts(&p)
        .into_iter()
        .filter(|a| a.0 == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error alert: {errors:?}");
    assert_eq!(errors[0].1, NotifyKind::RolledBack);
    let text = &errors[0].2;
    assert!(text.contains("failed checks threshold reached 5"), "{text}");
    assert!(
        text.contains("request-duration: 900 is above the maximum 500"),
        "{text}"
    );
    assert!(text.contains("request-success-rate: no data"), "{text}");
}

#[test]
fn a_promotion_alert_says_how_long_the_rollout_took() {
    let mut status = rolling(0, 0, 11);
    status.phase = Finalising;
    let p = plan(&canary_spec(), &status, &obs("rev-2"));
    let a = alerts(&p);
    assert_eq!(kinds(&p), vec![(Severity::Info, NotifyKind::Promoted)]);
    assert!(a[0].2.contains("in 50m0s"), "{}", a[0].2);
}

#[test]
fn an_unready_canary_past_the_deadline_is_a_deadline_alert() {
    let mut status = rolling(20, 0, 4);
    if let Some(r) = status.rollout.as_mut() {
        r.unready_since = Some(Time(at(NOW - 700)));
    }
    let mut o = obs("rev-2");
    if let Some(t) = o.target.as_mut() {
        t.readiness = Readiness {
            available: 0,
            updated: 0,
            ..Readiness::ready(2)
        };
    }
    let p = plan(&canary_spec(), &status, &o);
    assert_eq!(p.status.phase, Failed);
    let a = alerts(&p);
    assert_eq!(
        kinds(&p),
        vec![(Severity::Error, NotifyKind::DeadlineExceeded)]
    );
    assert!(a[0].2.contains("progress deadline exceeded"), "{}", a[0].2);
}

#[test]
fn suspend_and_resume_are_each_reported_once() {
    let mut spec = canary_spec();
    spec.suspend = true;
    let first = plan(&spec, &rolling(20, 0, 4), &obs("rev-2"));
    assert_eq!(kinds(&first), vec![(Severity::Warn, NotifyKind::Halted)]);
    assert_eq!(
        conditions::get(&first.status, SUSPENDED).map(|c| c.status.as_str()),
        Some("True")
    );
    let again = plan(&spec, &first.status, &obs("rev-2"));
    assert!(alerts(&again).is_empty(), "{:?}", alerts(&again));

    spec.suspend = false;
    let resumed = plan(&spec, &again.status, &obs("rev-2"));
    let k = kinds(&resumed);
    assert_eq!(k[0], (Severity::Info, NotifyKind::Resumed), "{k:?}");
    assert_eq!(
        conditions::get(&resumed.status, SUSPENDED).map(|c| c.status.as_str()),
        Some("False")
    );
    let later = plan(&spec, &resumed.status, &obs("rev-2"));
    assert!(
        !kinds(&later).contains(&(Severity::Info, NotifyKind::Resumed)),
        "resume reported once"
    );
}

#[test]
fn a_closed_gate_is_a_warning_unless_its_webhooks_mute_alerts() {
    // confirm-rollout
    for (muted, expected) in [
        (false, vec![(Severity::Warn, NotifyKind::Waiting)]),
        (true, vec![]),
    ] {
        let spec = with_hook(canary_spec(), "approve", "confirm-rollout", muted);
        let o = failing(obs("rev-2"), HookType::ConfirmRollout, "approve");
        let p = plan(&spec, &at_rest(), &o);
        assert_eq!(p.status.phase, Waiting);
        assert_eq!(kinds(&p), expected, "confirm-rollout muted={muted}");
    }
    // confirm-promotion, at the last weight
    for (muted, expected) in [
        (false, vec![(Severity::Warn, NotifyKind::Waiting)]),
        (true, vec![]),
    ] {
        let spec = with_hook(canary_spec(), "approve", "confirm-promotion", muted);
        let o = failing(obs("rev-2"), HookType::ConfirmPromotion, "approve");
        let p = plan(&spec, &rolling(50, 0, 10), &o);
        assert_eq!(p.status.phase, WaitingPromotion);
        assert_eq!(kinds(&p), expected, "confirm-promotion muted={muted}");
    }
    // confirm-traffic-increase: the alert names the weight it holds at
    for (muted, expected) in [
        (false, vec![(Severity::Warn, NotifyKind::Waiting)]),
        (true, vec![]),
    ] {
        let spec = with_hook(canary_spec(), "more", "confirm-traffic-increase", muted);
        let o = failing(obs("rev-2"), HookType::ConfirmTrafficIncrease, "more");
        let p = plan(&spec, &rolling(20, 0, 4), &o);
        assert_eq!(p.status.canary_weight, 20);
        assert_eq!(
            kinds(&p),
            expected,
            "confirm-traffic-increase muted={muted}"
        );
        if let Some(a) = alerts(&p).first() {
            assert!(a.2.contains("canary weight 20%"), "{}", a.2);
        }
    }
    // Waiting for a rollout slot is news, not a warning.
    let mut no_slot = obs("rev-2");
    no_slot.rollout_slots = fledge_core::slots::RolloutSlots::none_free();
    let p = plan(&canary_spec(), &at_rest(), &no_slot);
    assert_eq!(kinds(&p), vec![(Severity::Info, NotifyKind::Waiting)]);
}

#[test]
fn a_muted_failing_rollout_webhook_still_reports_the_rollback() {
    let spec = with_hook(canary_spec(), "smoke", "rollout", true);
    let o = failing(obs("rev-2"), HookType::Rollout, "smoke");
    let p = plan(&spec, &rolling(20, 4, 8), &o);
    assert_eq!(p.status.phase, Failed);
    assert_eq!(kinds(&p), vec![(Severity::Error, NotifyKind::RolledBack)]);
}

#[test]
fn severities_read_and_order_as_in_flagger() {
    assert_eq!(Severity::parse(""), Some(Severity::Info));
    assert_eq!(Severity::parse("warn"), Some(Severity::Warn));
    assert_eq!(Severity::parse("error"), Some(Severity::Error));
    assert_eq!(Severity::parse("fatal"), None);
    assert!(Severity::Info < Severity::Warn && Severity::Warn < Severity::Error);
    for k in NotifyKind::ALL {
        assert!(!k.title().is_empty());
    }
}

fn with_alerts(mut spec: CanarySpec) -> CanarySpec {
    let alert = |name: &str, severity: Option<&str>, ns: Option<&str>| fledge_api::CanaryAlert {
        name: name.into(),
        severity: severity.map(str::to_string),
        provider_ref: fledge_api::CrossNamespaceObjectReference {
            name: format!("{name}-provider"),
            namespace: ns.map(str::to_string),
            ..Default::default()
        },
    };
    analysis(&mut spec).alerts = Some(vec![
        alert("all", None, None),
        alert("warnings", Some("warn"), Some("ops")),
        alert("errors", Some("error"), Some("")),
    ]);
    spec
}

fn destinations(p: &Plan) -> Vec<(NotifyKind, Vec<String>)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Notify { kind, to, .. } => Some((
                *kind,
                to.iter()
                    .map(|t| match t {
                        AlertTarget::Provider {
                            namespace, name, ..
                        } => format!("{}/{name}", namespace.as_deref().unwrap_or("-")),
                        AlertTarget::Default => "default".into(),
                    })
                    .collect(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn each_alert_reference_gets_the_severities_it_asks_for() {
    let spec = with_alerts(canary_spec());
    // A new revision (info) reaches only the alert without a minimum.
    let p = plan(&spec, &at_rest(), &obs("rev-2"));
    assert_eq!(
        destinations(&p),
        vec![(NotifyKind::NewRevision, vec!["-/all-provider".to_string()])]
    );
    // A missing target (error) reaches all three; the empty namespace is the Canary's.
    let missing = Observations {
        target: None,
        ..obs("rev-1")
    };
    let p = plan(&spec, &at_rest(), &missing);
    assert_eq!(
        destinations(&p),
        vec![(
            NotifyKind::Blocked,
            vec![
                "-/all-provider".to_string(),
                "ops/warnings-provider".to_string(),
                "-/errors-provider".to_string()
            ]
        )]
    );
    // --no-cross-namespace-refs: the provider in another namespace gets nothing.
    let confined = Observations {
        confined_to_namespace: Some("shop".into()),
        ..missing
    };
    let p = plan(&spec, &at_rest(), &confined);
    assert_eq!(
        destinations(&p),
        vec![(
            NotifyKind::Blocked,
            vec![
                "-/all-provider".to_string(),
                "-/errors-provider".to_string()
            ]
        )]
    );
}

#[test]
fn the_default_provider_serves_canaries_without_alerts_at_its_severity() {
    let missing = |default| Observations {
        target: None,
        default_alert_severity: default,
        ..obs("rev-1")
    };
    let p = plan(&canary_spec(), &at_rest(), &missing(Some(Severity::Warn)));
    assert_eq!(
        destinations(&p),
        vec![(NotifyKind::Blocked, vec!["default".to_string()])]
    );
    let p = plan(&canary_spec(), &at_rest(), &missing(None));
    assert_eq!(destinations(&p), vec![(NotifyKind::Blocked, vec![])]);
    assert!(
        p.status.recent_alerts.is_empty(),
        "nothing sent, nothing remembered"
    );
    // An info alert stays below a warn default.
    let p = plan(
        &canary_spec(),
        &at_rest(),
        &Observations {
            default_alert_severity: Some(Severity::Warn),
            ..obs("rev-2")
        },
    );
    assert_eq!(destinations(&p), vec![(NotifyKind::NewRevision, vec![])]);
    // Declared alerts replace the default.
    let p = plan(
        &with_alerts(canary_spec()),
        &at_rest(),
        &missing(Some(Severity::Info)),
    );
    assert!(!destinations(&p)[0].1.contains(&"default".to_string()));
}

#[test]
fn an_alert_is_not_sent_again_within_the_hour_even_after_a_restart() {
    let spec = with_alerts(canary_spec());
    let missing = |secs| Observations {
        now: at(NOW + secs),
        target: None,
        ..obs("rev-1")
    };
    let found = |secs| Observations {
        now: at(NOW + secs),
        ..obs("rev-1")
    };
    let first = plan(&spec, &at_rest(), &missing(0));
    assert_eq!(kinds(&first), vec![(Severity::Error, NotifyKind::Blocked)]);
    assert_eq!(first.status.recent_alerts.len(), 1);
    // The target comes back, then goes again ten minutes later: the same alert about the same
    // revision is not sent again. The status is all a restarted controller has.
    let back = plan(&spec, &first.status, &found(60));
    let again = plan(&spec, &back.status, &missing(600));
    assert!(kinds(&again).is_empty(), "{:?}", again.actions);
    assert!(
        again
            .actions
            .iter()
            .any(|a| matches!(a, Action::RecordEvent { reason, .. } if reason == "TargetNotFound")),
        "the Event is still recorded"
    );
    // After the hour it is news again.
    let back = plan(&spec, &again.status, &found(3700));
    let later = plan(&spec, &back.status, &missing(3720));
    assert_eq!(kinds(&later), vec![(Severity::Error, NotifyKind::Blocked)]);
    assert_eq!(
        later.status.recent_alerts.len(),
        1,
        "the old record expired"
    );
}

#[test]
fn the_alert_memory_is_bounded() {
    let mut status = at_rest();
    status.recent_alerts = (0..40)
        .map(|i| fledge_api::SentAlert {
            key: format!("k{i}"),
            time: Time(at(NOW - 10)),
        })
        .collect();
    let p = plan(
        &with_alerts(canary_spec()),
        &status,
        &Observations {
            target: None,
            ..obs("rev-1")
        },
    );
    assert_eq!(
        p.status.recent_alerts.len(),
        fledge_core::alerts::MAX_RECENT
    );
    assert_eq!(
        p.status.recent_alerts.last().map(|r| r.time.clone()),
        Some(Time(at(NOW)))
    );
}
