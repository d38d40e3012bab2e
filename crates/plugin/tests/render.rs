//! The output of `kubectl fledge get` drawn from recorded objects at a fixed time.

use fledge_api::Canary;
use fledge_plugin::render::{
    EventLine, StatefulSetInput, TreeInput, human, iteration, table, tree, watch_line, weight_bar,
};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

fn now() -> Timestamp {
    "2026-11-23T19:30:00Z".parse().unwrap()
}

/// A weighted canary at 40% of 20/40/60, gated before promotion, as the controller recorded it.
fn canary() -> Canary {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "shop"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "30s", "threshold": 3, "stepWeight": 20, "maxWeight": 60,
                "metrics": [
                    {"name": "request-success-rate", "interval": "1m", "thresholdRange": {"min": 99}},
                    {"name": "request-duration", "interval": "1m", "thresholdRange": {"max": 500}},
                    {"name": "error-budget", "interval": "1m", "thresholdRange": {"min": 0, "max": 5}}
                ],
                "webhooks": [
                    {"name": "acceptance", "type": "pre-rollout", "url": "http://tester/"},
                    {"name": "load", "type": "rollout", "url": "http://tester/"},
                    {"name": "manual", "type": "confirm-promotion", "url": "http://tester/gate"},
                    {"name": "notes", "type": "post-rollout", "url": "http://tester/"}
                ]
            }
        },
        "status": {
            "phase": "Progressing", "canaryWeight": 40, "failedChecks": 1, "iterations": 0,
            "lastAppliedSpec": "7d9f6c5b8a1e2f", "lastPromotedSpec": "5c4b3a29180706",
            "lastTransitionTime": "2026-11-23T19:27:50Z",
            "rollout": {
                "startTime": "2026-11-23T19:27:50Z",
                "lastStepTime": "2026-11-23T19:29:50Z",
                "step": 4, "preRolloutDone": true,
                "failures": ["metric request-duration: 612 is above the maximum 500"],
                "checks": [
                    {"kind": "pre-rollout", "name": "acceptance", "passed": true, "at": "2026-11-23T19:28:20Z"},
                    {"kind": "rollout", "name": "load", "passed": true, "at": "2026-11-23T19:29:50Z"}
                ],
                "metrics": [
                    {"name": "request-success-rate", "value": 99.87, "min": 99, "passed": true},
                    {"name": "request-duration", "value": 412.0, "max": 500, "passed": true}
                ],
                "history": [
                    {"step": 3, "time": "2026-11-23T19:29:20Z", "canaryWeight": 20, "metrics": [
                        {"name": "request-success-rate", "value": 99.9, "min": 99, "passed": true},
                        {"name": "request-duration", "value": 612.0, "max": 500, "passed": false,
                         "reason": "metric request-duration: 612 is above the maximum 500"}]},
                    {"step": 4, "time": "2026-11-23T19:29:50Z", "canaryWeight": 40, "metrics": [
                        {"name": "request-success-rate", "value": 99.87, "min": 99, "passed": true},
                        {"name": "request-duration", "value": 412.0, "max": 500, "passed": true}]}
                ]
            },
            "lastRequest": {
                "request": {"id": "1", "action": "pause", "user": "alice@example.com"},
                "accepted": false, "message": "it is already paused (by bob)",
                "handledAt": "2026-11-23T19:29:00Z"
            }
        }
    }))
    .unwrap()
}

fn deployment(name: &str, image: &str, replicas: i32, available: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"spec": {"containers": [{"name": "app", "image": image}]}}
        },
        "status": {"availableReplicas": available}
    }))
    .unwrap()
}

fn event(secs_ago: i64, type_: &str, reason: &str, message: &str) -> EventLine {
    EventLine {
        at: Some(Timestamp::from_second(now().as_second() - secs_ago).unwrap()),
        type_: type_.into(),
        reason: reason.into(),
        message: message.into(),
        count: 1,
    }
}

fn input(c: Canary) -> TreeInput {
    TreeInput {
        canary: c,
        target: Some(deployment("podinfo", "ghcr.io/stefanprodan/podinfo:6.0.1", 2, 2)),
        primary: Some(deployment(
            "podinfo-primary",
            "ghcr.io/stefanprodan/podinfo:6.0.0",
            2,
            2,
        )),
        statefulset: None,
        events: (0..8)
            .map(|i| event(200 - i * 20, "Normal", "Old", &format!("event {i}")))
            .chain([
                event(70, "Warning", "CheckFailed", "Halt advancement podinfo: metric request-duration: 612 is above the maximum 500 (failed checks 1/3)"),
                EventLine {
                    count: 2,
                    ..event(10, "Normal", "WaitingForApproval", "Halt advancement podinfo: waiting for approval")
                },
            ])
            .collect(),
    }
}

#[test]
fn the_tree_of_a_rollout_in_progress() {
    let expected = "\
Canary:    shop/podinfo
Status:    Progressing  [████░░░░░░]  40%  iteration 2/3  failed checks 1/3
Strategy:  canary, weights 20% 40% 60%, every 30s, provider gatewayapi:v1
Since:     2m10s in this phase
Revisions:
├── target  podinfo  revision 7d9f6c5b8a (under test)
│   images ghcr.io/stefanprodan/podinfo:6.0.1  2/2 available
└── primary podinfo-primary  revision 5c4b3a2918
    images ghcr.io/stefanprodan/podinfo:6.0.0  2/2 available
Analysis:
├── metric request-success-rate  last 99.87 ok at 19:29:50  (range >= 99)
├── metric request-duration  last 412 ok at 19:29:50  (range <= 500)
├── metric error-budget  last not checked yet  (range 0..5)
├── webhook acceptance (pre-rollout)  passed at 19:28:20
├── webhook load (rollout)  passed at 19:29:50
├── gate manual (confirm-promotion)  not checked yet
└── webhook notes (post-rollout)  called after the fact
Next:      analysis step, then weight 60%, at 19:30:20 (in 20s)
Failed:    metric request-duration: 612 is above the maximum 500
Last request: pause by alice@example.com (1m0s ago), refused: it is already paused (by bob)
Events:
    2m0s  Normal   Old: event 4
   1m40s  Normal   Old: event 5
   1m20s  Normal   Old: event 6
   1m10s  Warning  CheckFailed: Halt advancement podinfo: metric request-duration: 612 is above the maximum 500 (failed checks 1/3)
    1m0s  Normal   Old: event 7
     10s  Normal   WaitingForApproval x2: Halt advancement podinfo: waiting for approval
";
    let mut i = input(canary());
    i.events.sort_by_key(|e| e.at);
    assert_eq!(tree(&i, now()), expected);
}

#[test]
fn a_paused_rollout_at_its_last_weight_waits_for_the_promotion_gate_and_says_so() {
    let mut c = canary();
    let s = c.status.as_mut().unwrap();
    s.canary_weight = 60;
    s.phase = fledge_api::CanaryPhase::WaitingPromotion;
    let mut raw = serde_json::to_value(&c).unwrap();
    raw["status"]["paused"] = serde_json::json!({"id": "2", "action": "pause", "user": "bob"});
    raw["status"]["rollout"]["checks"]
        .as_array_mut()
        .unwrap()
        .push(
            serde_json::json!({"kind": "confirm-promotion", "name": "manual", "passed": false,
            "message": "HTTP 403", "at": "2026-11-23T19:29:50Z"}),
        );
    raw["status"]["request"] = serde_json::json!({"id": "3", "action": "resume", "user": "carol"});
    let c: Canary = serde_json::from_value(raw).unwrap();
    let out = tree(&input(c.clone()), now());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1],
        "Status:    WaitingPromotion  [██████░░░░]  60%  iteration 3/3  failed checks 1/3  PAUSED by bob"
    );
    assert!(lines.contains(&"├── gate manual (confirm-promotion)  closed at 19:29:50: HTTP 403"));
    assert!(lines.contains(
        &"Next:      nothing until resumed (paused by bob; `kubectl fledge resume podinfo`)"
    ));
    assert!(lines.contains(&"Request:   resume by carol waiting for the controller"));

    // Unpaused with an approval waiting: the gate says who opened it.
    let mut raw = serde_json::to_value(&c).unwrap();
    raw["status"].as_object_mut().unwrap().remove("paused");
    raw["status"]["rollout"]["approvals"] = serde_json::json!([
        {"id": "4", "action": "approve", "gate": "confirm-promotion", "user": "dave"}
    ]);
    let out = tree(&input(serde_json::from_value(raw).unwrap()), now());
    assert!(
        out.contains(
            "├── gate manual (confirm-promotion)  approved by dave, opens at its next check\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("Next:      promotion, behind the confirm-promotion gate, checked at 19:30:20 (in 20s)\n"),
        "{out}"
    );
}

#[test]
fn a_canary_the_controller_has_not_seen_and_missing_workloads() {
    let c: Canary = serde_json::from_value(serde_json::json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "new", "namespace": "shop"},
        "spec": {"targetRef": {"name": "new"}, "service": {"port": 80},
                 "analysis": {"interval": "1m", "iterations": 5}}
    }))
    .unwrap();
    let out = tree(
        &TreeInput {
            canary: c,
            target: None,
            primary: None,
            events: vec![],
            statefulset: None,
        },
        now(),
    );
    let expected = "\
Canary:    shop/new
Status:    -  [░░░░░░░░░░]   0%  iteration 0/5  failed checks 0/1
Strategy:  blue/green, every 1m, provider gatewayapi:v1
Since:     - in this phase
Revisions:
├── target  new  revision -
│   not found
└── primary new-primary  revision -
    not found
Analysis:
└── no metrics or webhooks
Next:      creating the primary and the Services
Events:
  none
";
    assert_eq!(out, expected);
}

#[test]
fn the_table_and_the_watch_lines() {
    let a = canary();
    let mut b = canary();
    b.metadata.name = Some("cart".into());
    b.metadata.namespace = Some("web".into());
    let s = b.status.as_mut().unwrap();
    s.phase = fledge_api::CanaryPhase::Succeeded;
    s.canary_weight = 0;
    s.failed_checks = 0;
    s.last_transition_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-11-22T17:00:00Z".parse().unwrap(),
    ));
    let out = table(&[a.clone(), b.clone()], true, now());
    assert_eq!(
        out,
        "\
NAMESPACE   NAME      PHASE         WEIGHT              ITERATION   FAILED   AGE
shop        podinfo   Progressing   [████░░░░░░]  40%   2/3         1/3      2m10s
web         cart      Succeeded     [░░░░░░░░░░]   0%   0/3         0/3      1d2h
"
    );
    assert_eq!(
        watch_line(&a),
        "shop/podinfo Progressing weight 40% iteration 2/3 failed 1/3"
    );
    assert_eq!(iteration(&b), "0/3");
}

#[test]
fn bars_and_durations() {
    assert_eq!(weight_bar(0), "[░░░░░░░░░░]   0%");
    assert_eq!(weight_bar(5), "[█░░░░░░░░░]   5%");
    assert_eq!(weight_bar(100), "[██████████] 100%");
    assert_eq!(weight_bar(250), "[██████████] 100%");
    assert_eq!(weight_bar(-3), "[░░░░░░░░░░]   0%");
    assert_eq!(human(-5), "0s");
    assert_eq!(human(59), "59s");
    assert_eq!(human(61), "1m1s");
    assert_eq!(human(3600 * 5 + 120), "5h2m");
    assert_eq!(human(86400 * 3 + 3600), "3d1h");
}

#[test]
fn dry_run_and_inconclusive_checks_are_marked() {
    let mut c = canary();
    let a = c.spec.analysis.as_mut().unwrap();
    let metrics = a.metrics.as_mut().unwrap();
    metrics[1].dry_run = Some(true);
    metrics[2].no_data = Some("skip".into());
    a.webhooks.as_mut().unwrap()[1].dry_run = Some(true);
    let r = c.status.as_mut().unwrap().rollout.as_mut().unwrap();
    r.metrics = serde_json::from_value(serde_json::json!([
        {"name": "request-success-rate", "value": 99.87, "min": 99, "passed": true},
        {"name": "request-duration", "value": 612.0, "max": 500, "passed": false, "dryRun": true,
         "reason": "metric request-duration: 612 is above the maximum 500"},
        {"name": "error-budget", "passed": false, "inconclusive": true,
         "reason": "metric error-budget: no data; the step is judged without it (noData: skip)"}
    ]))
    .unwrap();
    r.history[1].metrics = r.metrics.clone();
    let out = tree(&input(c), now());
    for line in [
        "├── metric request-duration  last 612 failed (dry run, not counted) at 19:29:50: metric request-duration: 612 is above the maximum 500  (range <= 500, dry run)",
        "├── metric error-budget  last no value inconclusive at 19:29:50: metric error-budget: no data; the step is judged without it (noData: skip)  (range 0..5, noData: skip)",
        "├── webhook load (rollout, dry run)  passed at 19:29:50",
    ] {
        assert!(out.contains(line), "{line}\nnot in\n{out}");
    }
}

#[test]
fn a_statistical_judgement_shows_its_score_baseline_and_each_class() {
    let mut c = canary();
    let a = c.spec.analysis.as_mut().unwrap();
    a.judge = Some(serde_json::from_value(serde_json::json!({"type": "statistical"})).unwrap());
    let metrics = a.metrics.as_mut().unwrap();
    metrics[1].threshold_range = None;
    metrics[1].judge = Some(
        serde_json::from_value(serde_json::json!({"direction": "increase", "critical": true}))
            .unwrap(),
    );
    let r = c.status.as_mut().unwrap().rollout.as_mut().unwrap();
    r.judgement = Some(fledge_api::JudgementRecord {
        score: Some(0.0),
        outcome: "fail".into(),
        reason: "critical metric failed: request-duration".into(),
    });
    r.metrics = serde_json::from_value(serde_json::json!([
        {"name": "request-success-rate", "value": 99.87, "min": 99, "passed": true},
        {"name": "request-duration", "value": 0.04076893552830187, "passed": false,
         "classification": "High", "baselineMedian": 0.0001415844222222223,
         "canaryMedian": 0.04076893552830187, "pValue": 7.05e-7,
         "reason": "metric request-duration High: higher than the baseline"}
    ]))
    .unwrap();
    r.history[1].metrics = r.metrics.clone();
    let out = tree(&input(c), now());
    for line in [
        "├── judgement statistical  last score 0 (fail): critical metric failed: request-duration  (baseline podinfo-baseline)",
        "├── metric request-duration  last 0.0408 High against the baseline's 0.000142, p 0.0000 FAILED at 19:29:50  (judged, increase is bad, critical)",
    ] {
        assert!(out.contains(line), "{line}\nnot in\n{out}");
    }
}

#[test]
fn a_statefulset_shows_its_partition_and_which_ordinals_run_which_revision() {
    let c: Canary = serde_json::from_value(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"provider": "kubernetes",
                 "targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
                 "service": {"port": 9898},
                 "analysis": {"interval": "8s", "stepReplicas": 1}},
        "status": {"phase": "Progressing", "canaryWeight": 40,
                   "lastAppliedSpec": "bbbbbbbbbbbb", "lastPromotedSpec": "aaaaaaaaaaaa"}
    }))
    .unwrap();
    let sts = StatefulSetInput {
        replicas: 5,
        partition: 3,
        current_revision: "db-c498fd888".into(),
        update_revision: "db-76dffd864c".into(),
        pods: (0..5)
            .map(|o| {
                let rev = if o >= 3 {
                    "db-76dffd864c"
                } else {
                    "db-c498fd888"
                };
                (o, rev.to_string(), o != 3)
            })
            .collect(),
    };
    let out = tree(
        &TreeInput {
            canary: c,
            target: Some(deployment("db", "ghcr.io/stefanprodan/podinfo:6.0.1", 5, 4)),
            primary: None,
            events: vec![],
            statefulset: Some(sts),
        },
        now(),
    );
    for line in [
        "Strategy:  StatefulSet partition, pods 1 (20%) 2 (40%) 3 (60%) 4 (80%), every 8s, provider kubernetes",
        "│   partition 3 of 5 replicas: the pods at or above it run the template",
        "│   ordinals 3-4 on db-76dffd864c (under test), 0-2 on db-c498fd888 (promoted)",
        "│   not ready: ordinals 3",
        "└── promoted revision aaaaaaaaaa (rolled out in place: no primary copy)",
        "Next:      analysis step, then 3 pods (60%)",
    ] {
        assert!(out.contains(line), "no line {line:?} in\n{out}");
    }
    assert!(!out.contains("db-primary"), "{out}");
}
