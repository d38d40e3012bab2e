//! Metric analysis end to end: real traffic through Traefik to podinfo processes, a real
//! Prometheus scraping Traefik every second, and `fledge run` judging every step by PromQL.
//!
//! podinfo's fault injection makes the bad versions: an image tag with `faulty` starts podinfo
//! with `--random-error` (in one second out of three it answers 500, 400 or 409; podinfo seeds its
//! generator once a second, so errors come in whole seconds), one with `slow` adds 600-900 ms
//! to every answer. The builtin checks read Traefik's per-service metrics
//! (`--gateway-metrics traefik`).

use std::time::{Duration, Instant};

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::analysis::{AnalysingController, Load, OwnPrometheus, query, start_controller};
use fledge_e2e::dataplane::{
    GATEWAY_NAME, GATEWAY_NAMESPACE, LocalWorkload, dataplane, faults_by_tag, traefik_servers,
    wait_canary_routed,
};
use fledge_e2e::influx::InfluxDb;
use fledge_e2e::victoria::VictoriaMetrics;
use fledge_e2e::{TestNs, admin_kubeconfig, deployment_json, eventually, fledge_binary};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const FAULTY: &str = "ghcr.io/stefanprodan/podinfo:6.0.1-faulty";
const SLOW: &str = "ghcr.io/stefanprodan/podinfo:6.0.1-slow";
const LAGGING: &str = "ghcr.io/stefanprodan/podinfo:6.0.2-lagging";
/// Requests per second through the Gateway while a rollout runs.
const RATE: u32 = 30;
// Analysis intervals are 8 s: Traefik applies a new weight a second or two after the route
// changes, and a slow canary's first answers take most of a second, so a shorter step could
// find fewer than the two samples rate() needs in Prometheus, which fails the check (no data).
const ROLLOUT: Duration = Duration::from_secs(240);

/// The builtin checks as Flagger's docs write them, over a one-minute window.
fn builtin_metrics() -> Value {
    json!([
        {"name": "request-success-rate", "interval": "1m", "thresholdRange": {"min": 99}},
        {"name": "request-duration", "interval": "1m", "thresholdRange": {"max": 500}},
    ])
}

/// A Canary `podinfo` on the Gateway API router for `host`, with `analysis` and `extra` merged
/// into its spec.
fn canary(host: &str, analysis: Value, extra: Value) -> Value {
    let mut c = json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 120,
            "service": {
                "port": 9898,
                "hosts": [host],
                "gatewayRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
            },
            "analysis": analysis,
        },
    });
    if let (Some(spec), Some(extra)) = (c["spec"].as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    c
}

/// Creates the Deployment (V1), the local stand-in for its Pods, the Canary, and `fledge run`
/// reading the data plane's Prometheus; waits until the route serves the primary.
async fn start(
    ns: &TestNs,
    host: &str,
    canary_json: Value,
) -> (LocalWorkload, AnalysingController) {
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let workload =
        LocalWorkload::start_with(&ns.client, &ns.name, "podinfo", "podinfo", faults_by_tag());
    ns.create::<Canary>(canary_json).await;
    let controller = start_controller(ns);
    wait_canary_routed(ns, "podinfo", host).await.unwrap();
    (workload, controller)
}

/// Changes the image and waits until the rollout ends (Succeeded or Failed); returns the
/// Canary and how long it took.
async fn roll_out(ns: &TestNs, image: &str) -> (Canary, Duration) {
    let started = Instant::now();
    ns.set_image("podinfo", image).await;
    eventually(
        Duration::from_secs(60),
        "Traefik to know the canary's endpoint",
        || async {
            !traefik_servers(&ns.name, "podinfo-canary", 9898)
                .await
                .is_empty()
        },
    )
    .await
    .unwrap();
    let c = ns
        .wait_canary("podinfo", ROLLOUT, "the rollout to end", |c| {
            c.status
                .as_ref()
                .is_some_and(|s| matches!(s.phase, CanaryPhase::Failed | CanaryPhase::Succeeded))
        })
        .await;
    (c, started.elapsed())
}

/// The Events of the Canary that carry `word`.
async fn events_with(ns: &TestNs, word: &str) -> Vec<String> {
    ns.events("podinfo")
        .await
        .into_iter()
        .filter(|e| e.contains(word))
        .collect()
}

fn condition<'a>(c: &'a Canary, type_: &str) -> &'a fledge_api::CanaryCondition {
    c.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|x| x.r#type == type_))
        .unwrap_or_else(|| panic!("no {type_} condition: {:?}", c.status))
}

fn report(scenario: &str, took: Duration, c: &Canary, events: &[String]) {
    let s = c.status.clone().unwrap_or_default();
    eprintln!(
        "analysis scenario '{scenario}': {:?} after {:.1} s, failed checks {}, last metrics {:?}\n  events:\n    {}",
        s.phase,
        took.as_secs_f64(),
        s.failed_checks,
        s.rollout.map(|r| r.metrics).unwrap_or_default(),
        events.join("\n    ")
    );
}

/// 1. A healthy new version passes every check and is promoted; each check's value is in the
///    status, measured from real traffic.
#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_version_is_promoted_on_real_metrics() {
    let ns = TestNs::new("an-healthy").await;
    let host = format!("{}.fledge.test", ns.name);
    let analysis = json!({"interval": "8s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
                          "metrics": builtin_metrics()});
    let _w = start(&ns, &host, canary(&host, analysis, json!({}))).await;
    let load = Load::start(&host, RATE, Duration::from_secs(300));
    let (c, took) = roll_out(&ns, V2).await;
    report("healthy", took, &c, &ns.events("podinfo").await);
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Succeeded, "{s:#?}");
    assert_eq!(s.failed_checks, 0, "{s:#?}");
    let r = s.rollout.expect("rollout progress");
    // Three weights (20, 40, 60), each judged by both metrics, values from Prometheus.
    assert!(r.history.len() >= 3, "{:#?}", r.history);
    for step in &r.history {
        let rate = &step.metrics[0];
        let p99 = &step.metrics[1];
        assert!(rate.passed && p99.passed, "{step:?}");
        assert_eq!(rate.value, Some(100.0), "{step:?}");
        assert!(p99.value.is_some_and(|v| v > 0.0 && v <= 500.0), "{step:?}");
    }
    assert!(
        r.history.iter().any(|h| h.canary_weight == 60),
        "{:?}",
        r.history
    );
    // Every request was answered by podinfo, but for a few 503s from Traefik while the local
    // stand-in kubelet catches up (it starts a podinfo process and writes its EndpointSlice a
    // moment after kwok reports the Pod ready; a real kubelet has the endpoint by then).
    let t = load.tally();
    let unavailable = t.errors.get(&503).copied().unwrap_or(0);
    assert!(
        t.failed == 0 && t.errors.keys().all(|c| *c == 503) && unavailable * 100 <= t.total(),
        "{t:?}"
    );
    assert!(t.by_version.contains_key("canary 6.0.1"), "{t:?}");
    // Prometheus scraped fledge's own metrics: the promotion is there.
    let promql = format!(
        "fledge_rollouts_total{{namespace=\"{}\", result=\"promoted\"}}",
        ns.name
    );
    eventually(
        Duration::from_secs(30),
        "fledge's metrics in Prometheus",
        || async {
            query(&dataplane().prometheus_url, &promql)
                .await
                .is_ok_and(|v| v == [1.0])
        },
    )
    .await
    .unwrap();
}

/// 2. A version that answers 5xx in some seconds is rolled back on `request-success-rate`,
///    after exactly `threshold` failed checks.
#[tokio::test(flavor = "multi_thread")]
async fn errors_roll_back_on_the_success_rate_after_threshold_failed_checks() {
    let ns = TestNs::new("an-errors").await;
    let host = format!("{}.fledge.test", ns.name);
    let analysis = json!({"interval": "8s", "threshold": 2, "stepWeight": 10, "maxWeight": 50,
                          "metrics": builtin_metrics()});
    let _w = start(&ns, &host, canary(&host, analysis, json!({}))).await;
    let _load = Load::start(&host, RATE, Duration::from_secs(300));
    let (c, took) = roll_out(&ns, FAULTY).await;
    let events = ns.events("podinfo").await;
    report("5xx", took, &c, &events);
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Failed, "{s:#?}");
    assert_eq!(s.failed_checks, 2, "rolled back at exactly the threshold");
    let failed: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("CheckFailed"))
        .collect();
    assert_eq!(failed.len(), 2, "{events:#?}");
    for e in &failed {
        assert!(
            e.contains("metric request-success-rate:") && e.contains("is below the minimum 99"),
            "{e}"
        );
    }
    let rolled_back = events_with(&ns, "RolledBack").await;
    assert_eq!(rolled_back.len(), 1, "{events:#?}");
    assert!(
        rolled_back[0].contains("failed checks threshold reached 2"),
        "{rolled_back:?}"
    );
    assert_eq!(s.canary_weight, 0);

    // `fledge replay` over the same window, from the first analysis step to now, asks the
    // same Prometheus about the past and would have rolled back on the same check.
    let first = s
        .rollout
        .as_ref()
        .and_then(|r| r.history.first())
        .and_then(|h| h.time.clone())
        .expect("an analysis step in the history");
    let out = std::process::Command::new(fledge_binary())
        .args(["replay", "podinfo", "-n", &ns.name, "--from"])
        .arg(first.0.to_string())
        .args(["--metrics-server", &dataplane().prometheus_url])
        .args(["--gateway-metrics", "traefik"])
        .env("KUBECONFIG", admin_kubeconfig())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "fledge replay:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "would have rolled back");
    assert!(text.contains("would have rolled back at"), "{text}");
    assert!(
        text.contains("metric request-success-rate:") && text.contains("is below the minimum 99"),
        "{text}"
    );
}

/// 3. A version with added latency is rolled back on `request-duration`.
#[tokio::test(flavor = "multi_thread")]
async fn latency_rolls_back_on_the_request_duration() {
    let ns = TestNs::new("an-slow").await;
    let host = format!("{}.fledge.test", ns.name);
    let analysis = json!({"interval": "8s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
                          "metrics": builtin_metrics()});
    let _w = start(&ns, &host, canary(&host, analysis, json!({}))).await;
    let _load = Load::start(&host, RATE, Duration::from_secs(300));
    let (c, took) = roll_out(&ns, SLOW).await;
    let events = ns.events("podinfo").await;
    report("latency", took, &c, &events);
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Failed, "{s:#?}");
    assert_eq!(s.failed_checks, 2);
    let failed: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("CheckFailed"))
        .collect();
    assert_eq!(failed.len(), 2, "{events:#?}");
    for e in &failed {
        assert!(
            e.contains("metric request-duration:") && e.contains("is above the maximum 500"),
            "{e}"
        );
        // The answers were slow, not wrong.
        assert!(!e.contains("request-success-rate"), "{e}");
    }
    let last = s.rollout.unwrap().metrics;
    assert!(last[1].value.is_some_and(|v| v > 500.0), "{last:?}");
}

/// 4. A MetricTemplate with its own PromQL and `templateVariables` decides a rollout alone: the
///    rate of the canary's error answers (4xx and 5xx), which the faulty version fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_metric_template_with_variables_decides_the_rollout() {
    let ns = TestNs::new("an-template").await;
    let host = format!("{}.fledge.test", ns.name);
    ns.create::<fledge_api::MetricTemplate>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "error-answers"},
        "spec": {
            "provider": {"type": "prometheus", "address": dataplane().prometheus_url},
            "query": "sum(rate(traefik_service_requests_total{service=~\"{{ namespace }}-{{ variables.backend }}-http-[0-9]+@kubernetesgateway\", code=~\"{{ variables.codes }}\"}[{{ interval }}])) or vector(0)",
        },
    }))
    .await;
    let analysis = json!({"interval": "8s", "threshold": 2, "stepWeight": 10, "maxWeight": 50,
    "metrics": [{
        "name": "error-answers-per-second", "interval": "1m",
        "templateRef": {"name": "error-answers"},
        "templateVariables": {"backend": "podinfo-canary", "codes": "4..|5.."},
        "thresholdRange": {"max": 0},
    }]});
    let _w = start(&ns, &host, canary(&host, analysis, json!({}))).await;
    let _load = Load::start(&host, RATE, Duration::from_secs(300));
    let (c, took) = roll_out(&ns, FAULTY).await;
    let events = ns.events("podinfo").await;
    report("MetricTemplate", took, &c, &events);
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Failed, "{s:#?}");
    assert_eq!(s.failed_checks, 2);
    let failed: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("CheckFailed"))
        .collect();
    for e in &failed {
        assert!(
            e.contains("metric error-answers-per-second:") && e.contains("above the maximum 0"),
            "{e}"
        );
    }
    // The rendered query is the one Prometheus answers: the same PromQL, by hand.
    let by_hand = query(
        &dataplane().prometheus_url,
        &format!(
            "sum(increase(traefik_service_requests_total{{service=~\"{}-podinfo-canary-http-[0-9]+@kubernetesgateway\", code=~\"4..|5..\"}}[5m]))",
            ns.name
        ),
    )
    .await
    .unwrap();
    assert!(by_hand.first().is_some_and(|v| *v > 0.0), "{by_hand:?}");
}

/// 4b. Statistical judgement against a fresh baseline: a healthy version is promoted, then a
///     version 20-60 ms slower per answer, which the demo's fixed thresholds (p99 under
///     500 ms, success rate from 99%) pass, is rolled back on its latency compared with the
///     baseline's; the baseline Deployment exists only while a rollout runs.
#[tokio::test(flavor = "multi_thread")]
async fn statistical_judgement_rolls_back_a_slower_version_the_fixed_thresholds_pass() {
    let ns = TestNs::new("an-judge").await;
    let host = format!("{}.fledge.test", ns.name);
    // The mean latency of each pod of {{ target }}, from podinfo's own histogram.
    ns.create::<fledge_api::MetricTemplate>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "pod-latency"},
        "spec": {
            "provider": {"type": "prometheus", "address": dataplane().prometheus_url},
            "query": "sum by (kubernetes_pod_name) (rate(http_request_duration_seconds_sum{kubernetes_namespace=\"{{ namespace }}\", kubernetes_pod_name=~\"{{ target }}-[0-9a-f]+-[0-9]+\"}[5s])) / sum by (kubernetes_pod_name) (rate(http_request_duration_seconds_count{kubernetes_namespace=\"{{ namespace }}\", kubernetes_pod_name=~\"{{ target }}-[0-9a-f]+-[0-9]+\"}[5s]))",
        },
    }))
    .await;
    let mut metrics = builtin_metrics();
    metrics.as_array_mut().unwrap().push(json!({
        "name": "latency", "interval": "16s", "templateRef": {"name": "pod-latency"},
        "judge": {"direction": "increase", "critical": true,
                  "effectSize": {"allowedIncrease": 5.0, "criticalIncrease": 10.0}},
    }));
    let analysis = json!({"interval": "8s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
                          "judge": {"type": "statistical", "baseline": "fresh"},
                          "metrics": metrics});
    let _w = start(&ns, &host, canary(&host, analysis, json!({}))).await;
    let _load = Load::start(&host, RATE, Duration::from_secs(400));
    let baseline_exists = || async {
        ns.api::<Deployment>()
            .get_opt("podinfo-baseline")
            .await
            .unwrap()
            .is_some()
    };

    // The first baseline seen, to compare with the primary it was copied from.
    let first_baseline = {
        let api = ns.api::<Deployment>();
        tokio::spawn(async move {
            loop {
                if let Ok(Some(d)) = api.get_opt("podinfo-baseline").await {
                    return d;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let (c, took) = roll_out(&ns, V2).await;
    report("judged, healthy", took, &c, &ns.events("podinfo").await);
    // The baseline's pods are the primary's whole (the controller's cache keeps only the images
    // of a primary's template; the copy comes from the primary read afresh), image aside: the
    // primary has been promoted since.
    let containers = |d: &Deployment| {
        let mut cs = d.spec.clone().unwrap().template.spec.unwrap().containers;
        cs.iter_mut().for_each(|c| c.image = None);
        cs
    };
    let baseline = tokio::time::timeout(Duration::from_secs(1), first_baseline)
        .await
        .expect("no baseline was seen during the rollout")
        .unwrap();
    let primary = ns.api::<Deployment>().get("podinfo-primary").await.unwrap();
    assert_eq!(containers(&baseline), containers(&primary));
    assert!(
        containers(&primary)[0].ports.is_some(),
        "{:?}",
        containers(&primary)
    );
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Succeeded, "{s:#?}");
    let r = s.rollout.clone().unwrap();
    let judged: Vec<_> = r
        .history
        .iter()
        .filter_map(|h| h.judgement.clone())
        .collect();
    assert!(!judged.is_empty(), "{:#?}", r.history);
    assert!(judged.iter().all(|j| j.outcome == "pass"), "{judged:#?}");
    eventually(
        Duration::from_secs(30),
        "the baseline to be removed",
        || async { !baseline_exists().await },
    )
    .await
    .unwrap();

    // The status says Succeeded until the controller sees the new revision.
    ns.set_image("podinfo", LAGGING).await;
    ns.wait_canary("podinfo", ROLLOUT, "the next rollout to start", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.phase == CanaryPhase::Progressing)
    })
    .await;
    let (c, took) = roll_out(&ns, LAGGING).await;
    let events = ns.events("podinfo").await;
    report("judged, 20-60 ms slower", took, &c, &events);
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Failed, "{s:#?}");
    let r = s.rollout.clone().unwrap();
    let judgement = r.judgement.clone().unwrap();
    assert_eq!(judgement.outcome, "fail", "{judgement:?}");
    let step = r
        .history
        .iter()
        .rev()
        .find(|h| h.judgement.as_ref().is_some_and(|j| j.outcome == "fail"))
        .unwrap();
    let check = |name: &str| {
        step.metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap()
            .clone()
    };
    let latency = check("latency");
    assert_eq!(
        latency.classification.as_deref(),
        Some("High"),
        "{latency:?}"
    );
    let (b, c50) = (
        latency.baseline_median.unwrap(),
        latency.canary_median.unwrap(),
    );
    assert!(
        c50 > 0.015 && c50 > 3.0 * b,
        "canary {c50} s, baseline {b} s"
    );
    // The fixed thresholds of the demo passed the same steps.
    for name in ["request-success-rate", "request-duration"] {
        assert!(check(name).passed, "{:?}", check(name));
    }
    assert!(
        events
            .iter()
            .any(|e| e.contains("Judgement") && e.contains("latency High")),
        "{events:#?}"
    );
    eventually(
        Duration::from_secs(30),
        "the baseline to be removed",
        || async { !baseline_exists().await },
    )
    .await
    .unwrap();
}

/// Every second, hands `send` the time and the canary's 4xx and 5xx answers of the last 30 s,
/// from Traefik's counters: a metric of the rollout for a metrics server other than Prometheus.
fn forward_canary_errors<F, Fut>(ns: &str, send: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(i64, f64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let service = format!("service=\"{ns}-podinfo-canary-http-9898@");
    tokio::spawn(async move {
        let mut seen: std::collections::VecDeque<(i64, f64)> = Default::default();
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let errors: f64 = fledge_e2e::dataplane::traefik_metrics()
                .await
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("traefik_service_requests_total{"))
                .filter(|l| l.contains(&service))
                .filter(|l| l.contains("code=\"4") || l.contains("code=\"5"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            seen.push_back((now, errors));
            while seen.front().is_some_and(|(t, _)| *t < now - 30) {
                seen.pop_front();
            }
            let since = seen.front().map_or(errors, |(_, e)| *e);
            send(now, errors - since).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// Rolls out the faulty version with one check, `canary-errors` (at most 0) from the
/// MetricTemplate of `template`'s spec, and sees it rolled back on that check and no other.
/// `forward` (what feeds the metrics server) is stopped at the end.
async fn rolled_back_on_canary_errors(
    ns: &TestNs,
    scenario: &str,
    template: Value,
    forward: tokio::task::JoinHandle<()>,
) {
    let host = format!("{}.fledge.test", ns.name);
    ns.create::<fledge_api::MetricTemplate>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "canary-errors"},
        "spec": template,
    }))
    .await;
    let analysis = json!({"interval": "8s", "threshold": 2, "stepWeight": 10, "maxWeight": 50,
    "metrics": [{
        "name": "canary-errors", "interval": "1m", "templateRef": {"name": "canary-errors"},
        "thresholdRange": {"max": 0},
    }]});
    let _w = start(ns, &host, canary(&host, analysis, json!({}))).await;
    let _load = Load::start(&host, RATE, Duration::from_secs(300));
    let (c, took) = roll_out(ns, FAULTY).await;
    let events = ns.events("podinfo").await;
    report(scenario, took, &c, &events);
    forward.abort();
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Failed, "{s:#?}");
    assert_eq!(s.failed_checks, 2);
    let failed: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("CheckFailed"))
        .collect();
    assert!(!failed.is_empty(), "{events:#?}");
    for e in &failed {
        assert!(
            e.contains("metric canary-errors:") && e.contains("above the maximum 0"),
            "{e}"
        );
    }
}

/// 4c. A Graphite check: a VictoriaMetrics server takes the canary's error answers (counted by
///     Traefik) through the carbon protocol, the Graphite provider reads them back through the
///     render API, and the faulty version is rolled back on that check.
#[tokio::test(flavor = "multi_thread")]
async fn a_graphite_check_over_carbon_data_rolls_back_a_faulty_version() {
    let ns = TestNs::new("an-graphite").await;
    let vm = std::sync::Arc::new(VictoriaMetrics::start().await.unwrap());
    let series = format!("{}.podinfo.canary.errors_30s", ns.name);
    let forward = {
        let (vm, series) = (vm.clone(), series.clone());
        forward_canary_errors(&ns.name, move |now, errors| {
            let _ = vm.carbon(&[(&series, errors, now)]);
            async {}
        })
    };
    vm.wait_rendered(&series).await.unwrap();
    let template = json!({
        "provider": {"type": "graphite", "address": vm.url},
        "query": "target={{ namespace }}.{{ target }}.canary.errors_30s\n&from=-1min",
    });
    rolled_back_on_canary_errors(&ns, "Graphite", template, forward).await;
}

/// 4d. An InfluxDB check: a real InfluxDB (1.8, authentication on) takes the canary's error
///     answers as line protocol, the influxdb provider reads them with Flux over the v2 query
///     API with the token and org of a Secret, and the faulty version is rolled back on that
///     check.
#[tokio::test(flavor = "multi_thread")]
async fn an_influxdb_check_over_flux_rolls_back_a_faulty_version() {
    let ns = TestNs::new("an-influx").await;
    let db = std::sync::Arc::new(InfluxDb::start().await.unwrap());
    let forward = {
        let (db, name) = (db.clone(), ns.name.clone());
        forward_canary_errors(&ns.name, move |now, errors| {
            let (db, line) = (
                db.clone(),
                format!("canary_errors,namespace={name},target=podinfo errors={errors} {now}"),
            );
            async move {
                let _ = db.write(&line).await;
            }
        })
    };
    ns.create::<k8s_openapi::api::core::v1::Secret>(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "influxdb"},
        "stringData": {"token": InfluxDb::token(), "org": "e2e"},
    }))
    .await;
    let template = json!({
        "provider": {"type": "influxdb", "address": db.url, "secretRef": {"name": "influxdb"}},
        "query": format!(
            "from(bucket: \"{}\")\n  |> range(start: -1m)\n  |> filter(fn: (r) => r._measurement == \"canary_errors\" and r.namespace == \"{{{{ namespace }}}}\" and r.target == \"{{{{ target }}}}\")\n  |> last()",
            InfluxDb::bucket()
        ),
    });
    rolled_back_on_canary_errors(&ns, "InfluxDB", template, forward).await;
}

/// 5a. Prometheus goes down mid-rollout: the steps stop advancing and each check fails with
///     "metrics provider unreachable"; started again before the threshold, the rollout goes on
///     and is promoted.
#[tokio::test(flavor = "multi_thread")]
async fn a_prometheus_outage_halts_the_rollout_until_it_returns() {
    let ns = TestNs::new("an-outage").await;
    let host = format!("{}.fledge.test", ns.name);
    let mut prom = OwnPrometheus::start_new(&ns.name).await.unwrap();
    let analysis = json!({"interval": "8s", "threshold": 4, "stepWeight": 10, "maxWeight": 50,
                          "metrics": builtin_metrics()});
    let spec = canary(&host, analysis, json!({"metricsServer": prom.url}));
    let _w = start(&ns, &host, spec).await;
    let _load = Load::start(&host, RATE, Duration::from_secs(300));
    let started = Instant::now();
    ns.set_image("podinfo", V2).await;
    // One passing check at 10%, then the outage.
    let c = ns
        .wait_canary("podinfo", ROLLOUT, "a passing check", |c| {
            c.status.as_ref().is_some_and(|s| {
                s.rollout
                    .as_ref()
                    .is_some_and(|r| r.history.iter().any(|h| h.metrics.iter().all(|m| m.passed)))
            })
        })
        .await;
    prom.stop();
    let weight_at_outage = c.status.as_ref().unwrap().canary_weight;
    let c = ns
        .wait_canary("podinfo", ROLLOUT, "two failed checks", |c| {
            c.status.as_ref().is_some_and(|s| s.failed_checks >= 2)
        })
        .await;
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Progressing, "{s:#?}");
    // No step was taken while the checks failed (the weight may have moved once, by a step
    // decided before the outage).
    assert!(
        s.canary_weight <= weight_at_outage + 10,
        "{} -> {}",
        weight_at_outage,
        s.canary_weight
    );
    let halts = events_with(&ns, "metrics provider unreachable").await;
    assert!(!halts.is_empty(), "{:#?}", ns.events("podinfo").await);
    let reasons = s
        .rollout
        .as_ref()
        .map(|r| r.failures.clone())
        .unwrap_or_default();
    assert!(
        reasons
            .iter()
            .rev()
            .take(2)
            .all(|f| f.contains("metrics provider unreachable")),
        "{reasons:#?}"
    );
    let failed_while_down = s.failed_checks;
    prom.start().await.unwrap();
    let c = ns
        .wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    let events = ns.events("podinfo").await;
    report(
        "Prometheus outage, restarted",
        started.elapsed(),
        &c,
        &events,
    );
    let s = c.status.unwrap();
    assert!(
        s.failed_checks >= failed_while_down && s.failed_checks < 4,
        "{s:#?}"
    );
    assert_eq!(s.last_promoted_spec, s.last_applied_spec);
}

/// 5b. Prometheus goes down and stays down: no promotion, the rollout fails after `threshold`
///     checks, every one for "metrics provider unreachable".
#[tokio::test(flavor = "multi_thread")]
async fn a_lasting_prometheus_outage_rolls_back_after_threshold_checks() {
    let ns = TestNs::new("an-down").await;
    let host = format!("{}.fledge.test", ns.name);
    let mut prom = OwnPrometheus::start_new(&ns.name).await.unwrap();
    let analysis = json!({"interval": "8s", "threshold": 3, "stepWeight": 10, "maxWeight": 50,
                          "metrics": builtin_metrics()});
    let spec = canary(&host, analysis, json!({"metricsServer": prom.url}));
    let _w = start(&ns, &host, spec).await;
    let _load = Load::start(&host, RATE, Duration::from_secs(300));
    prom.stop();
    let (c, took) = roll_out(&ns, V2).await;
    let events = ns.events("podinfo").await;
    report("Prometheus down", took, &c, &events);
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Failed, "{s:#?}");
    assert_eq!(s.failed_checks, 3);
    assert_ne!(s.last_promoted_spec, s.last_applied_spec, "never promoted");
    let failed: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("CheckFailed"))
        .collect();
    assert_eq!(failed.len(), 3, "{events:#?}");
    for e in &failed {
        assert!(
            e.contains("metric request-success-rate: metrics provider unreachable")
                && e.contains("metric request-duration: metrics provider unreachable")
                && e.contains(&prom.url),
            "{e}"
        );
    }
}

/// 6. A template with an unknown variable and one with a malformed query: the ChecksPassing
///    condition and the CheckFailed Event say which template and what is wrong.
#[tokio::test(flavor = "multi_thread")]
async fn broken_templates_get_a_clear_condition_and_event() {
    let ns = TestNs::new("an-broken").await;
    let host = format!("{}.fledge.test", ns.name);
    for (name, q) in [
        (
            "unknown-variable",
            "sum(rate(x{app=\"{{ app_name }}\"}[{{ interval }}]))",
        ),
        (
            "malformed",
            "sum(rate(x{ns=\"{{ namespace }}\"}[{{ interval }}])",
        ),
    ] {
        ns.create::<fledge_api::MetricTemplate>(json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": name},
            "spec": {"provider": {"type": "prometheus"}, "query": q},
        }))
        .await;
    }
    let analysis = json!({"interval": "4s", "threshold": 1, "stepWeight": 20, "maxWeight": 60,
    "metrics": [
        {"name": "first", "templateRef": {"name": "unknown-variable"}, "thresholdRange": {"max": 1}},
        {"name": "second", "templateRef": {"name": "malformed"}, "thresholdRange": {"max": 1}},
    ]});
    let _w = start(&ns, &host, canary(&host, analysis, json!({}))).await;
    let (c, took) = roll_out(&ns, V2).await;
    let events = ns.events("podinfo").await;
    report("broken templates", took, &c, &events);
    let s = c.status.clone().unwrap();
    assert_eq!(s.phase, CanaryPhase::Failed, "{s:#?}");
    let cond = condition(&c, "ChecksPassing");
    assert_eq!(cond.status, "False");
    let message = cond.message.clone().unwrap_or_default();
    let want = [
        format!(
            "MetricTemplate {}/unknown-variable: spec.query uses the unknown variable {{{{ app_name }}}}",
            ns.name
        ),
        format!(
            "metric second: query failed: Prometheus at {} refused the query:",
            dataplane().prometheus_url
        ),
    ];
    for w in &want {
        assert!(
            message.contains(w.as_str()),
            "condition message lacks {w:?}: {message}"
        );
        assert!(
            events
                .iter()
                .any(|e| e.contains("CheckFailed") && e.contains(w.as_str())),
            "no CheckFailed Event with {w:?}: {events:#?}"
        );
    }
}
