//! The dashboard's fragments rendered from fixed statuses, without a cluster.

use fledge_api::Canary;
use fledge_dashboard::pages::{self, CanaryInput, LedgerLink};
use fledge_dashboard::view::{self, EventLine};
use fledge_dashboard::{chart, ledger};
use jiff::Timestamp;

fn now() -> Timestamp {
    "2026-12-04T10:10:00Z".parse().unwrap()
}

/// A weighted canary (10, 20, … 50) at its third step, with a failed latency check in step 2
/// and a `confirm-promotion` gate.
fn progressing() -> Canary {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "shop", "uid": "u1"},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "30s", "threshold": 3, "maxWeight": 50, "stepWeight": 10,
                "metrics": [
                    {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                    {"name": "latency", "thresholdRange": {"max": 500}, "interval": "1m"}
                ],
                "webhooks": [
                    {"name": "acceptance", "type": "rollout", "url": "http://hook/"},
                    {"name": "ask", "type": "confirm-promotion", "url": "http://gate/"}
                ]
            }
        },
        "status": {
            "phase": "Progressing", "canaryWeight": 30, "failedChecks": 1, "iterations": 0,
            "lastRequest": {"request": {"id": "0", "action": "approve", "gate": "confirm-traffic-increase",
                                        "user": "bob", "requestedAt": "2026-12-04T10:00:55Z"},
                            "accepted": true, "message": "the gate opens once",
                            "handledAt": "2026-12-04T10:00:58Z"},
            "lastTransitionTime": "2026-12-04T10:00:00Z",
            "rollout": {
                "startTime": "2026-12-04T10:00:00Z", "step": 3,
                "failures": ["metric latency: 612.5 > 500 <script>alert(1)</script>"],
                "history": [
                    {"step": 1, "time": "2026-12-04T10:00:30Z", "canaryWeight": 10,
                     "metrics": [
                        {"name": "request-success-rate", "value": 99.5, "min": 99.0, "passed": true},
                        {"name": "latency", "value": 120.25, "max": 500.0, "passed": true}],
                     "webhooks": [{"kind": "rollout", "name": "acceptance", "passed": true}]},
                    {"step": 2, "time": "2026-12-04T10:01:00Z", "canaryWeight": 20,
                     "metrics": [
                        {"name": "request-success-rate", "value": 100.0, "min": 99.0, "passed": true},
                        {"name": "latency", "value": 612.5, "max": 500.0, "passed": false,
                         "reason": "612.5 > 500"}]},
                    {"step": 3, "time": "2026-12-04T10:01:30Z", "canaryWeight": 30,
                     "metrics": [
                        {"name": "request-success-rate", "value": 99.25, "min": 99.0, "passed": true},
                        {"name": "latency", "value": 130.0, "max": 500.0, "passed": true}]}
                ],
                "transitions": [
                    {"time": "2026-12-04T10:00:00Z", "phase": "Progressing", "reason": "Synced", "canaryWeight": 0}
                ],
                "checks": [
                    {"kind": "confirm-rollout", "name": "go", "passed": true, "message": "approved",
                     "at": "2026-12-04T09:59:59Z"}
                ],
                "approvals": [
                    {"id": "1", "action": "approve", "gate": "confirm-promotion", "user": "alice",
                     "requestedAt": "2026-12-04T10:01:40Z"}
                ]
            }
        }
    }))
    .unwrap()
}

fn succeeded(ns: &str, name: &str) -> Canary {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": {"port": 80},
            "analysis": {"interval": "1m", "threshold": 2, "iterations": 4}
        },
        "status": {"phase": "Succeeded", "canaryWeight": 0, "iterations": 4,
                   "lastTransitionTime": "2026-12-04T09:00:00Z"}
    }))
    .unwrap()
}

fn body(c: &Canary, events: &[EventLine]) -> String {
    pages::canary_body(&CanaryInput {
        canary: c,
        events,
        ledger: &[],
        ledger_note: "",
        now: now(),
    })
    .unwrap()
}

#[test]
fn the_overview_shows_phase_weight_step_failures_and_age() {
    let list = vec![succeeded("web", "front"), progressing()];
    let rows = view::rows(&list, now());
    assert_eq!(rows.len(), 2);
    // Sorted by namespace: shop before web.
    let p = &rows[0];
    assert_eq!((p.namespace.as_str(), p.name.as_str()), ("shop", "podinfo"));
    assert_eq!(p.phase, "Progressing");
    assert_eq!(p.weight, 30);
    // Steps 10, 20, 30, 40, 50: three reached.
    assert_eq!(p.step, "3/5");
    assert_eq!(p.failed, "1/3");
    assert!(p.last_failure.starts_with("metric latency: 612.5 > 500"));
    assert_eq!(p.age, "10m0s");
    assert_eq!(p.href, "/canaries/shop/podinfo");
    // Blue/green style counts iterations.
    assert_eq!(rows[1].step, "4/4");
    assert_eq!(rows[1].phase_class, "ok");

    let html = pages::overview_table(&list, "", None, now()).unwrap();
    assert!(html.contains("2 Canaries"), "{html}");
    assert!(html.contains(r#"href="/canaries/shop/podinfo""#));
    // The failure's text is escaped, never markup.
    assert!(!html.contains("<script>"));
    assert!(html.contains("&#60;script&#62;alert(1)"), "{html}");
}

#[test]
fn the_filter_hides_rows_that_do_not_match_every_word() {
    let list = vec![succeeded("web", "front"), progressing()];
    let rows = view::rows(&list, now());
    assert!(view::matches(&rows[0], "shop LATENCY"));
    assert!(!view::matches(&rows[0], "shop front"));
    assert!(view::matches(&rows[1], ""));
    let html = pages::overview_table(&list, "succeeded", None, now()).unwrap();
    let hidden: Vec<&str> = html.lines().filter(|l| l.contains(" hidden>")).collect();
    assert_eq!(hidden.len(), 1, "{html}");
    assert!(hidden[0].contains("shop/podinfo"));
    let none = pages::overview_table(&[], "", Some("You may not list Canaries"), now()).unwrap();
    assert!(none.contains("No Canaries"));
    assert!(none.contains(r#"role="alert">You may not list Canaries"#));
}

#[test]
fn a_rollout_in_progress_shows_each_steps_weight_and_metric_values() {
    let c = progressing();
    let html = body(&c, &[]);
    assert!(html.contains(r#"id="weight" data-weight="30""#), "{html}");
    assert!(html.contains(r#"id="step">3/5<"#));
    assert!(html.contains("Rollout in progress"));
    // One row per step, with its weight and each metric's exact value.
    for (step, weight) in [(1, 10), (2, 20), (3, 30)] {
        assert!(
            html.contains(&format!(r#"<tr data-step="{step}""#)),
            "step {step}"
        );
        assert!(html.contains(&format!(r#"data-weight="{weight}">{weight}%"#)));
    }
    assert!(html.contains(r#"data-metric="latency" data-value="612.5">612.5 <span class="range">(≤ 500)</span> <strong>failed</strong>"#), "{html}");
    assert!(html.contains(r#"data-metric="request-success-rate" data-value="99.25">99.25 <span class="range">(≥ 99)</span>"#));
    assert!(html.contains(r#"<tr data-step="2" class="failed">"#));
    assert!(html.contains("acceptance: passed"));
    // The gates: the webhook that opened confirm-rollout, and who approved confirm-promotion.
    assert!(html.contains("confirm-rollout"));
    assert!(html.contains("approved by alice"));
    assert!(html.contains("approval not used yet"));
    // The approval the controller used: who opened which gate, and when.
    assert!(
        html.contains("<td>10:00:58</td><td>confirm-traffic-increase</td><td>approved by bob</td>"),
        "{html}"
    );
    // Charts: the weight, then one per metric with its band.
    assert!(html.contains(r#"id="chart-weight""#));
    assert!(html.contains(r#"id="chart-metric-latency""#));
    assert!(html.contains("latency (passes at ≤ 500)"));
    assert_eq!(html.matches("<svg").count(), 3);
    assert!(!html.contains("<script>"));
}

#[test]
fn the_weight_chart_draws_the_steps_and_says_what_it_shows() {
    let c = progressing();
    let r = view::rollout_of(&c).unwrap();
    assert_eq!(r.end, None, "a rollout in progress is drawn up to now");
    let w = chart::weight(&r, now()).unwrap();
    assert!(w.svg.starts_with("<svg"), "{}", &w.svg[..80]);
    assert!(w.svg.contains("<polyline"));
    assert!(w.svg.contains("canary weight"));
    assert_eq!(
        w.summary,
        "Canary weight over time: 0% at 0s, 10% at 30s, 20% at 1m0s, 30% at 1m30s, \
         30% at 10m0s; 3 analysis steps, 1 with a failed check."
    );
    let m = chart::metric(&r, "latency").unwrap();
    assert_eq!(m.title, "latency (passes at ≤ 500)");
    assert!(
        m.summary.contains("step 2: 612.5 (failed)"),
        "{}",
        m.summary
    );
    assert!(m.svg.contains("passing band"));
    let all = chart::all(&r, now()).unwrap();
    assert_eq!(
        all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["weight", "metric-request-success-rate", "metric-latency"]
    );
}

#[test]
fn a_finished_rollout_is_drawn_up_to_its_last_transition() {
    let mut c = progressing();
    let s = c.status.as_mut().unwrap();
    s.phase = fledge_api::CanaryPhase::Failed;
    s.canary_weight = 0;
    let r = s.rollout.as_mut().unwrap();
    r.transitions.push(fledge_api::PhaseTransition {
        time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-12-04T10:02:00Z".parse().unwrap(),
        )),
        phase: fledge_api::CanaryPhase::Failed,
        reason: "RolledBack".into(),
        canary_weight: 0,
    });
    let r = view::rollout_of(&c).unwrap();
    assert_eq!(r.end, Some("2026-12-04T10:02:00Z".parse().unwrap()));
    let w = chart::weight(&r, now()).unwrap();
    assert!(
        w.summary
            .ends_with("0% at 2m0s; 3 analysis steps, 1 with a failed check."),
        "{}",
        w.summary
    );
    let html = body(&c, &[]);
    assert!(html.contains("Last rollout"));
    assert!(html.contains("RolledBack"));
}

#[test]
fn actions_offer_what_fits_the_canary_and_nothing_when_read_only() {
    let c = progressing();
    let labels: Vec<String> = view::actions(&c).into_iter().map(|b| b.label).collect();
    // confirm-promotion is approved already (by alice, not used yet).
    assert_eq!(labels, ["Promote", "Abort", "Pause"]);
    let mut c = c;
    c.status
        .as_mut()
        .unwrap()
        .rollout
        .as_mut()
        .unwrap()
        .approvals
        .clear();
    let labels: Vec<String> = view::actions(&c).into_iter().map(|b| b.label).collect();
    assert_eq!(
        labels,
        ["Promote", "Abort", "Pause", "Approve confirm-promotion"]
    );
    let html = pages::actions(&c, false, "tok").unwrap();
    assert!(html.contains(r#"action="/canaries/shop/podinfo/actions""#));
    assert!(html.contains(r#"name="token" value="tok""#));
    assert!(html.contains(r#"name="gate" value="confirm-promotion""#));
    let ro = pages::actions(&c, true, "tok").unwrap();
    assert!(!ro.contains("<form"));
    // A Succeeded Canary can only be paused.
    let labels: Vec<String> = view::actions(&succeeded("a", "b"))
        .into_iter()
        .map(|b| b.label)
        .collect();
    assert_eq!(labels, ["Pause"]);
}

#[test]
fn events_are_listed_in_order_with_warnings_marked() {
    let c = progressing();
    let evs = [
        EventLine {
            at: Some("2026-12-04T10:00:00Z".parse().unwrap()),
            count: 1,
            type_: "Normal".into(),
            reason: "Synced".into(),
            message: "New revision detected".into(),
        },
        EventLine {
            at: Some("2026-12-04T10:01:00Z".parse().unwrap()),
            count: 2,
            type_: "Warning".into(),
            reason: "CheckFailed".into(),
            message: "latency 612.5 > 500".into(),
        },
    ];
    let html = body(&c, &evs);
    let a = html.find("New revision detected").unwrap();
    let b = html.find("latency 612.5 &#62; 500").unwrap();
    assert!(a < b);
    assert!(html.contains(r#"<li class="bad"><time>2026-12-04 10:01:00 UTC</time> <strong>CheckFailed</strong> ×2"#), "{html}");
}

#[test]
fn past_rollouts_come_from_ledger_files() {
    let dir = std::env::temp_dir().join(format!("fledge-dash-ledger-{}", std::process::id()));
    let mut c = progressing();
    c.spec.gitops = Some(
        serde_json::from_value(serde_json::json!({
            "repository": {"url": "ssh://git@example/repo.git"}
        }))
        .unwrap(),
    );
    let files = ledger::dir(&dir, &c).unwrap();
    assert!(files.ends_with(".fledge/ledger/shop/podinfo"));
    std::fs::create_dir_all(&files).unwrap();
    let text = "apiVersion: fledge.dev/v1beta1\nkind: RolloutRecord\ncanary: shop/podinfo\n\
        target: Deployment/podinfo\nrevision: abc\nnewImages: [podinfo:6.0.1]\n\
        startTime: '2026-12-01T10:00:00Z'\nendTime: '2026-12-01T10:03:00Z'\nresult: rolled-back\n\
        events:\n- {time: '2026-12-01T10:03:00Z', event: RolledBack, phase: Failed, canaryWeight: 0, failedChecks: 2, reasons: [latency too high]}\n\
        analysis:\n- step: 1\n  time: '2026-12-01T10:01:00Z'\n  canaryWeight: 10\n  metrics: [{name: latency, value: 900.0, max: 500.0, passed: false}]\n\
        transitions:\n- {time: '2026-12-01T10:03:00Z', phase: Failed, reason: RolledBack, canaryWeight: 0}\n";
    std::fs::write(files.join("20261201T100000Z-abc.yaml"), text).unwrap();
    std::fs::write(files.join("notes.txt"), "not a ledger file").unwrap();
    let list = ledger::list(&files).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        ledger::label(&list[0].1),
        "2026-12-01T10:00:00Z – rolled-back (podinfo:6.0.1)"
    );
    assert!(ledger::read(&files, "../../etc/passwd").is_err());
    let r = ledger::rollout(&list[0].1);
    assert_eq!(r.failures, ["latency too high"]);
    let html = pages::past_rollout_body(&r, now()).unwrap();
    assert!(html.contains("Past rollout"));
    // One step, and it failed; the rollback's reason is listed but is not a failed check.
    assert!(
        html.contains(r#"<dd id="step">1 analysis step</dd>"#),
        "{html}"
    );
    assert!(html.contains(r#"<dd id="failed">1</dd>"#), "{html}");
    assert!(
        html.contains(r#"data-metric="latency" data-value="900">900"#),
        "{html}"
    );
    let link = LedgerLink {
        href: "/canaries/shop/podinfo/rollouts/20261201T100000Z-abc.yaml".into(),
        label: ledger::label(&list[0].1),
    };
    let page = pages::canary_body(&CanaryInput {
        canary: &c,
        events: &[],
        ledger: &[link],
        ledger_note: "",
        now: now(),
    })
    .unwrap();
    assert!(page.contains("Past rollouts (Git ledger)"));
    assert!(page.contains("rollouts/20261201T100000Z-abc.yaml"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn alert_links_point_at_the_canarys_page() {
    assert_eq!(
        fledge_dashboard::canary_url("https://fledge.example.com/", "shop", "podinfo"),
        "https://fledge.example.com/canaries/shop/podinfo"
    );
}
