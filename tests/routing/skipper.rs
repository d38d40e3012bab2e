//! The `skipper` provider with real traffic: a Skipper process ([`fledge_e2e::skipper`]) reads
//! the test namespace's Ingresses from the local control plane, the user's apex Ingress and the
//! `-canary` copy the controller writes, and routes requests to podinfo processes that stand in
//! for the primary's and the canary's Pods.
//!
//! - a weighted rollout (20/40/60): at each step the canary's share of 10,000 requests is
//!   within 2 percentage points of the weight (Skipper draws each request's backend at random,
//!   so the share of 10,000 lies within 2 points of the weight with a probability above
//!   99.99%);
//! - an A/B test (`analysis.match` on a header): every request carrying the header goes to
//!   the canary, every other to the primary, and after promotion all to the new primary.

use std::time::{Duration, Instant};

use fledge_api::CanaryPhase;
use fledge_e2e::dataplane::{
    LocalWorkload, Tally, canary_endpoint, local_podinfo_canary, send_to, wait_status_weight,
};
use fledge_e2e::skipper::Skipper;
use fledge_e2e::{Hook, TestNs};
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

use super::{V1, V2};

/// Requests per measured step.
const REQUESTS: usize = 10_000;
/// Requests in flight.
const CONCURRENCY: usize = 16;
/// How far the canary's measured share may be from the weight, in percentage points.
const TOLERANCE: f64 = 2.0;

/// The Deployment `podinfo` (V1), the local stand-in for its Pods, the user's apex Ingress for
/// `host`, a Canary on the skipper provider with `analysis`, `fledge run`, and Skipper; returns
/// once Skipper sends `host` to the primary.
async fn start(ns: &TestNs, host: &str, analysis: Value) -> (LocalWorkload, Skipper) {
    ns.create::<Ingress>(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "podinfo", "annotations": {"kubernetes.io/ingress.class": "skipper"}},
        "spec": {"rules": [{"host": host, "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}},
        }]}}]},
    }))
    .await;
    let workload = local_podinfo_canary(
        ns,
        V1,
        json!({
            "provider": "skipper",
            "ingressRef": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                           "name": "podinfo"},
            "analysis": analysis,
        }),
    )
    .await;
    let skipper = Skipper::start(&ns.name).await.expect("Skipper starts");
    // The copy's routes, switched off: the apex Ingress serves.
    skipper
        .wait_routes(
            "the canary Ingress's routes, off",
            Duration::from_secs(30),
            |r| r.contains("podinfo_canary") && r.contains("False()"),
        )
        .await
        .unwrap();
    // Before the rollout Skipper sends everything to the primary (once it has read the
    // apex Service's EndpointSlice).
    answers_only(&skipper, host, &[], &["primary 6.0.0"]).await;
    (workload, skipper)
}

/// Waits until 50 requests for `host` with `headers` through Skipper are all answered, each by
/// one of `versions`: Skipper reads the EndpointSlices every [`fledge_e2e::skipper::POLL_MS`],
/// and a podinfo process scaled down a moment ago still serves for a few seconds, as a Pod
/// with a preStop sleep would.
async fn answers_only(skipper: &Skipper, host: &str, headers: &[(&str, &str)], versions: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = send_to(skipper.addr, host, "/", headers, 50, 8).await;
        // Every one answered by podinfo: Skipper's own 502 ("no endpoints", while it has not
        // read the EndpointSlice yet) counts against.
        let answered: u64 = t.by_version.values().sum();
        if answered == 50 && t.by_version.keys().all(|v| versions.contains(&v.as_str())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Skipper's answers for {host} {headers:?} not all from {versions:?} in 30 s; the \
             last: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The canary's share of the answers, in percent.
fn canary_share(t: &Tally) -> f64 {
    let n: u64 = t
        .by_version
        .iter()
        .filter(|(v, _)| v.starts_with("canary "))
        .map(|(_, n)| n)
        .sum();
    100.0 * n as f64 / t.total().max(1) as f64
}

/// Every request answered by podinfo, none failed.
fn all_answered(t: &Tally, what: &str) {
    assert!(
        t.errors.is_empty() && t.failed == 0 && t.total() > 0,
        "{what}: every request must reach podinfo: {t:?}"
    );
}

/// A weighted rollout on the skipper provider, gates holding every step: at 20, 40 and 60%
/// Skipper sends the canary its weight of 10,000 requests (± 2 points), and after promotion
/// everything to the new primary.
#[tokio::test(flavor = "multi_thread")]
async fn skipper_splits_real_traffic_by_the_weight_of_each_step() {
    let ns = TestNs::new("skipper").await;
    let host = format!("{}.skipper.test", ns.name);
    let traffic_gate = Hook::start(403).await.unwrap();
    let promotion_gate = Hook::start(403).await.unwrap();
    let (_workload, skipper) = start(
        &ns,
        &host,
        json!({
            "interval": "2s", "threshold": 5, "stepWeight": 20, "maxWeight": 60,
            "webhooks": [
                {"name": "traffic", "type": "confirm-traffic-increase",
                 "url": traffic_gate.url("/traffic")},
                {"name": "promotion", "type": "confirm-promotion",
                 "url": promotion_gate.url("/promotion")},
            ],
        }),
    )
    .await;

    ns.set_image("podinfo", V2).await;
    canary_endpoint(&ns).await;
    let mut figures = Vec::new();
    for weight in [20, 40, 60] {
        traffic_gate.set_status(200);
        wait_status_weight(&ns, "podinfo", weight).await;
        traffic_gate.set_status(403);
        // Skipper's split: the primary's route (the first backend of the path) draws its
        // share, the canary's takes the rest.
        let draw = format!("Traffic({})", f64::from(100 - weight) / 100.0);
        skipper
            .wait_routes(
                &format!("the {weight}% split"),
                Duration::from_secs(30),
                |r| {
                    r.split(';')
                        .find(|route| route.contains("__podinfo_primary:"))
                        .is_some_and(|route| route.contains(&draw) && !route.contains("False()"))
                },
            )
            .await
            .unwrap();
        answers_only(&skipper, &host, &[], &["canary 6.0.1", "primary 6.0.0"]).await;
        let t = send_to(skipper.addr, &host, "/", &[], REQUESTS, CONCURRENCY).await;
        all_answered(&t, &format!("at weight {weight}%"));
        let share = canary_share(&t);
        figures.push(format!(
            "weight {weight:>2}%: canary {share:5.2}% of {} ({:?})",
            t.total(),
            t.by_version
        ));
        assert!(
            (share - f64::from(weight)).abs() <= TOLERANCE,
            "at weight {weight}% the canary got {share:.2}% through Skipper: {t:?}"
        );
        assert_eq!(
            t.by_version.keys().collect::<Vec<_>>(),
            ["canary 6.0.1", "primary 6.0.0"],
            "{t:?}"
        );
    }

    let t = promote(&ns, &promotion_gate, &skipper, &host, &[], 1000).await;
    figures.push(format!("promoted: {:?} of {}", t.by_version, t.total()));
    eprintln!("skipper weighted rollout:\n  {}", figures.join("\n  "));
}

/// An A/B test on the skipper provider (a header match), the promotion gate holding it: every
/// request with `x-canary: insider` reaches the canary, every request without it (or with
/// another value) the primary; after promotion all reach the new primary.
#[tokio::test(flavor = "multi_thread")]
async fn skipper_ab_test_sends_every_matching_request_to_the_canary() {
    let ns = TestNs::new("skipper-ab").await;
    let host = format!("{}.skipper.test", ns.name);
    let promotion_gate = Hook::start(403).await.unwrap();
    let (_workload, skipper) = start(
        &ns,
        &host,
        json!({
            "interval": "2s", "threshold": 5, "iterations": 2,
            "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
            "webhooks": [
                {"name": "promotion", "type": "confirm-promotion",
                 "url": promotion_gate.url("/promotion")},
            ],
        }),
    )
    .await;

    ns.set_image("podinfo", V2).await;
    canary_endpoint(&ns).await;
    ns.wait_canary(
        "podinfo",
        Duration::from_secs(60),
        "A/B routes in force",
        |c| {
            c.status
                .as_ref()
                .and_then(|s| s.rollout.as_ref())
                .is_some_and(|r| r.ab_match)
        },
    )
    .await;
    skipper
        .wait_routes("the A/B route", Duration::from_secs(30), |r| {
            r.to_ascii_lowercase()
                .contains(r#"header("x-canary", "insider")"#)
                && !r.contains("False()")
        })
        .await
        .unwrap();
    answers_only(
        &skipper,
        &host,
        &[("x-canary", "insider")],
        &["canary 6.0.1"],
    )
    .await;
    let insider = send_to(
        skipper.addr,
        &host,
        "/",
        &[("x-canary", "insider")],
        2000,
        CONCURRENCY,
    )
    .await;
    let others = send_to(skipper.addr, &host, "/", &[], 2000, CONCURRENCY).await;
    let outsider = send_to(
        skipper.addr,
        &host,
        "/",
        &[("x-canary", "outsider")],
        500,
        CONCURRENCY,
    )
    .await;
    eprintln!(
        "skipper A/B: with x-canary: insider {:?}; without {:?}; x-canary: outsider {:?}",
        insider.by_version, others.by_version, outsider.by_version
    );
    for (t, what) in [
        (&insider, "with the header"),
        (&others, "without it"),
        (&outsider, "another value"),
    ] {
        all_answered(t, what);
    }
    assert_eq!(
        insider.by_version.keys().collect::<Vec<_>>(),
        ["canary 6.0.1"],
        "every matching request reaches the canary: {insider:?}"
    );
    for t in [&others, &outsider] {
        assert_eq!(
            t.by_version.keys().collect::<Vec<_>>(),
            ["primary 6.0.0"],
            "every other request reaches the primary: {t:?}"
        );
    }

    promote(
        &ns,
        &promotion_gate,
        &skipper,
        &host,
        &[("x-canary", "insider")],
        500,
    )
    .await;
}

/// Opens the promotion gate and waits for `Succeeded` and the canary Ingress's routes off;
/// then `n` requests with `headers` must all reach the new primary. Their tally.
async fn promote(
    ns: &TestNs,
    gate: &Hook,
    skipper: &Skipper,
    host: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Tally {
    gate.set_status(200);
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, Duration::from_secs(120))
        .await;
    skipper
        .wait_routes(
            "the canary Ingress's routes, off after promotion",
            Duration::from_secs(30),
            |r| r.contains("False()"),
        )
        .await
        .unwrap();
    answers_only(skipper, host, headers, &["primary 6.0.1"]).await;
    let t = send_to(skipper.addr, host, "/", headers, n, CONCURRENCY).await;
    all_answered(&t, "after promotion");
    assert_eq!(
        t.by_version.keys().collect::<Vec<_>>(),
        ["primary 6.0.1"],
        "after promotion every request {headers:?} reaches the new primary: {t:?}"
    );
    t
}
