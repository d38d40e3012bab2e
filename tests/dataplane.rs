//! The local data plane end to end: Traefik (built and started by `cargo xtask dataplane up`)
//! routes real HTTP through the Gateway to podinfo processes on loopback. First by the weights
//! of a hand-made HTTPRoute whose backends are selectorless Services with loopback
//! EndpointSlices; then through a whole canary rollout driven by `fledge run` and its Gateway API
//! router, with the test standing in for the kubelet (podinfo processes follow the primary and
//! canary Deployments, EndpointSlices point fledge's Services at them).

use std::net::Ipv4Addr;
use std::time::Duration;

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::dataplane::{
    GATEWAY_NAME, GATEWAY_NAMESPACE, LocalWorkload, Podinfo, PodinfoOpts, Tally, attach_endpoints,
    dataplane, endpoint_slices, httproutes, only_local_endpoints, selectorless_service, send,
    traefik_metrics, traefik_servers, wait_route_accepted, wait_routed, wait_traefik_canary_weight,
};
use fledge_e2e::{Hook, TestNs, deployment_json, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DynamicObject, PostParams};

const REQUESTS: usize = 1000;
const CONCURRENCY: usize = 8;

fn weighted_route(name: &str, host: &str, primary: i32, canary: i32) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
            "hostnames": [host],
            "rules": [{"backendRefs": [
                {"name": "podinfo-primary", "port": 9898, "weight": primary},
                {"name": "podinfo-canary", "port": 9898, "weight": canary},
            ]}],
        },
    }))
    .expect("HTTPRoute JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_splits_real_traffic_by_httproute_weights() {
    let dp = dataplane();
    let ns = TestNs::new("dataplane").await;
    let primary = Podinfo::start("1.0.0", PodinfoOpts::default())
        .await
        .unwrap();
    // Another loopback address, as a second backend of one Service would need.
    let canary = Podinfo::start(
        "2.0.0",
        PodinfoOpts {
            ip: Ipv4Addr::new(127, 0, 0, 2),
            ..PodinfoOpts::default()
        },
    )
    .await
    .unwrap();
    for (svc, app) in [("podinfo-primary", &primary), ("podinfo-canary", &canary)] {
        selectorless_service(&ns.client, &ns.name, svc, 9898)
            .await
            .unwrap();
        attach_endpoints(&ns.client, &ns.name, svc, "http", &[app.addr])
            .await
            .unwrap();
    }
    let host = format!("{}.fledge.test", ns.name);
    httproutes(&ns.client, &ns.name)
        .create(
            &PostParams::default(),
            &weighted_route("podinfo", &host, 80, 20),
        )
        .await
        .unwrap();
    wait_route_accepted(&ns.client, &ns.name, "podinfo", Duration::from_secs(30))
        .await
        .unwrap();
    wait_routed(&host, Duration::from_secs(30)).await.unwrap();

    let canary_before = canary.requests_to("root").await.unwrap();
    let tally = send(&host, "/", &[], REQUESTS, CONCURRENCY).await;
    let canary_after = canary.requests_to("root").await.unwrap();
    eprintln!(
        "Traefik {} through {}: {REQUESTS} requests, weights 80/20 -> primary {:.1}%, canary \
         {:.1}% ({tally:?})",
        dp.traefik_version,
        dp.gateway,
        tally.percent("1.0.0"),
        tally.percent("2.0.0")
    );
    assert!(
        tally.errors.is_empty() && tally.failed == 0,
        "every request must reach podinfo: {tally:?}"
    );
    assert_eq!(tally.total(), REQUESTS as u64);
    assert_eq!(
        tally.by_version.keys().collect::<Vec<_>>(),
        ["1.0.0", "2.0.0"]
    );
    assert!(
        (tally.percent("2.0.0") - 20.0).abs() <= 5.0,
        "canary share {:.1}% is not within 5 points of 20%",
        tally.percent("2.0.0")
    );
    assert!((tally.percent("1.0.0") - 80.0).abs() <= 5.0);
    // podinfo's own counter saw exactly the requests the Gateway sent it.
    assert_eq!(canary_after - canary_before, tally.by_version["2.0.0"]);

    // Traefik's Prometheus metrics count the requests per backend Service.
    let metrics = traefik_metrics().await.unwrap();
    let served = |svc: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("traefik_service_requests_total{"))
            .filter(|l| l.contains(&format!("service=\"{}-{svc}-http-9898@", ns.name)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        served("podinfo-canary") >= tally.by_version["2.0.0"] as f64,
        "traefik_service_requests_total for the canary is {}",
        served("podinfo-canary")
    );
    assert!(served("podinfo-primary") >= tally.by_version["1.0.0"] as f64);
}

/// Why the slices are of type FQDN: the API server refuses loopback addresses in IPv4 slices.
#[tokio::test(flavor = "multi_thread")]
async fn ipv4_endpoint_slices_refuse_loopback_so_fqdn_slices_carry_it() {
    let ns = TestNs::new("slices").await;
    let mut slice = endpoint_slices(
        &ns.name,
        "svc",
        "http",
        &["127.0.0.1:9898".parse().unwrap()],
    )
    .unwrap()
    .remove(0);
    let api = ns.api::<EndpointSlice>();
    api.create(&PostParams::default(), &slice)
        .await
        .expect("an FQDN slice with address 127.0.0.1 is accepted");
    slice.address_type = "IPv4".into();
    slice.metadata.name = Some("svc-ipv4".into());
    let err = api
        .create(&PostParams::default(), &slice)
        .await
        .expect_err("an IPv4 slice with a loopback address is refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";

/// Waits until Traefik applies `canary` percent to the Canary's route.
async fn wait_traefik_weight(ns: &TestNs, canary: i64) {
    wait_traefik_canary_weight(&ns.name, "podinfo", 9898, canary)
        .await
        .unwrap();
}

/// 1,000 requests; the canary's share must be within 5 points of `weight`.
async fn measure(host: &str, weight: i64, figures: &mut Vec<String>) -> Tally {
    let t = send(host, "/", &[], REQUESTS, CONCURRENCY).await;
    let share = t.role_percent("canary");
    figures.push(format!(
        "weight {weight:>3}%: canary {share:5.1}% of {} ({:?})",
        t.total(),
        t.by_version
    ));
    assert!(
        t.errors.is_empty() && t.failed == 0,
        "at weight {weight}% every request must reach podinfo: {t:?}"
    );
    assert!(
        (share - weight as f64).abs() <= 5.0,
        "at weight {weight}% the canary got {share:.1}%: {t:?}"
    );
    t
}

/// Creates the `podinfo` Deployment (V1), the local stand-in for its Pods, and a Canary on the
/// Gateway API router answering for `host` with `analysis`; starts `fledge run` and waits
/// until the route serves the primary through Traefik.
async fn start_canary(ns: &TestNs, host: &str, analysis: serde_json::Value) -> LocalWorkload {
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let workload = LocalWorkload::start(&ns.client, &ns.name, "podinfo", "podinfo");
    ns.create::<Canary>(serde_json::json!({
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
    }))
    .await;
    ns.start_controller(&[]);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    for svc in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        only_local_endpoints(&ns.client, &ns.name, svc)
            .await
            .unwrap();
    }
    wait_route_accepted(&ns.client, &ns.name, "podinfo", Duration::from_secs(30))
        .await
        .unwrap();
    wait_traefik_weight(ns, 0).await;
    wait_routed(host, Duration::from_secs(30)).await.unwrap();
    workload
}

/// Waits until the canary's podinfo process runs and Traefik knows its endpoint, so that no
/// request meets an empty canary.
/// Waits until Traefik's canary servers are all the new revision's process: a server of the
/// target's earlier run (started while initialization scaled it to zero, still draining) would
/// otherwise answer as `canary 6.0.0` in the first measured step.
async fn wait_canary_serving(ns: &TestNs) {
    let want = format!("canary {}", V2.rsplit(':').next().unwrap_or_default());
    eventually(
        Duration::from_secs(60),
        &format!("Traefik's canary servers all answering as {want:?}"),
        || async {
            let servers = traefik_servers(&ns.name, "podinfo-canary", 9898).await;
            if servers.is_empty() {
                return false;
            }
            for url in servers {
                let message = match reqwest::get(&url).await {
                    Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|b| {
                        b.get("message")
                            .and_then(|m| m.as_str())
                            .map(str::to_string)
                    }),
                    Err(_) => None,
                };
                if message.as_deref() != Some(want.as_str()) {
                    return false;
                }
            }
            true
        },
    )
    .await
    .unwrap();
}

/// A weighted rollout on the Gateway API router (`stepWeight: 20, maxWeight: 60`) with real
/// traffic through Traefik: gates hold each step while 1,000 requests are counted by the
/// podinfo process that answered; 0% reach the canary before the rollout and after promotion.
#[tokio::test(flavor = "multi_thread")]
async fn canary_rollout_shifts_real_traffic_at_every_step() {
    dataplane();
    let ns = TestNs::new("dp-rollout").await;
    let host = format!("{}.fledge.test", ns.name);
    // Gates closed (403) until the test has measured a step.
    let traffic_gate = Hook::start(403).await.unwrap();
    let promotion_gate = Hook::start(403).await.unwrap();
    let _workload = start_canary(
        &ns,
        &host,
        serde_json::json!({
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

    let mut figures = Vec::new();
    let before = measure(&host, 0, &mut figures).await;
    assert_eq!(
        before.by_version.keys().collect::<Vec<_>>(),
        ["primary 6.0.0"]
    );

    ns.set_image("podinfo", V2).await;
    wait_canary_serving(&ns).await;
    for weight in [20, 40, 60] {
        traffic_gate.set_status(200);
        ns.wait_canary(
            "podinfo",
            Duration::from_secs(60),
            &format!("canary weight {weight}"),
            |c| c.status.as_ref().is_some_and(|s| s.canary_weight == weight),
        )
        .await;
        traffic_gate.set_status(403);
        wait_traefik_weight(&ns, i64::from(weight)).await;
        let t = measure(&host, i64::from(weight), &mut figures).await;
        assert_eq!(
            t.by_version.keys().collect::<Vec<_>>(),
            ["canary 6.0.1", "primary 6.0.0"]
        );
        let still = ns.api::<Canary>().get("podinfo").await.unwrap();
        assert_eq!(
            still.status.map(|s| s.canary_weight),
            Some(weight),
            "the weight moved while it was measured"
        );
    }

    promotion_gate.set_status(200);
    ns.wait_canary(
        "podinfo",
        Duration::from_secs(120),
        "promotion finished",
        |c| {
            c.status.as_ref().is_some_and(|s| {
                s.phase == CanaryPhase::Succeeded && s.last_promoted_spec == s.last_applied_spec
            })
        },
    )
    .await;
    wait_traefik_weight(&ns, 0).await;
    eventually(
        Duration::from_secs(60),
        "the promoted primary (6.0.1) to answer every request",
        || async {
            send(&host, "/", &[], 20, 4)
                .await
                .by_version
                .keys()
                .collect::<Vec<_>>()
                == ["primary 6.0.1"]
        },
    )
    .await
    .unwrap();
    let after = measure(&host, 0, &mut figures).await;
    assert_eq!(
        after.by_version.keys().collect::<Vec<_>>(),
        ["primary 6.0.1"]
    );
    eprintln!(
        "real traffic through Traefik during the rollout ({REQUESTS} requests per step):\n  {}",
        figures.join("\n  ")
    );
}

/// A/B testing on the Gateway API router with real traffic: while the analysis runs (held by a
/// `confirm-promotion` gate), requests with the header or the cookie reach only the canary and
/// the others only the primary; after promotion everything reaches the primary.
#[tokio::test(flavor = "multi_thread")]
async fn ab_testing_sends_matching_requests_to_the_canary_only() {
    dataplane();
    let ns = TestNs::new("dp-ab").await;
    let host = format!("{}.fledge.test", ns.name);
    let promotion_gate = Hook::start(403).await.unwrap();
    let _workload = start_canary(
        &ns,
        &host,
        serde_json::json!({
            "interval": "2s", "threshold": 5, "iterations": 2,
            "match": [
                {"headers": {"x-canary": {"exact": "insider"}}},
                {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
            ],
            "webhooks": [{"name": "promotion", "type": "confirm-promotion",
                          "url": promotion_gate.url("/promotion")}],
        }),
    )
    .await;
    ns.set_image("podinfo", V2).await;
    wait_canary_serving(&ns).await;
    let insider = [("x-canary", "insider")];
    eventually(
        Duration::from_secs(60),
        "Traefik to route the A/B match to the canary",
        || async {
            send(&host, "/", &insider, 10, 2)
                .await
                .by_version
                .keys()
                .collect::<Vec<_>>()
                == ["canary 6.0.1"]
        },
    )
    .await
    .unwrap();
    let n = REQUESTS / 2;
    // Flagger's documented regex wants `canary=always` first or right after a `;` (no space).
    let cookie = [("cookie", "canary=always; session=42")];
    let near_miss = [("x-canary", "outsider"), ("cookie", "canary=never")];
    let mut figures = Vec::new();
    for (what, headers, expect) in [
        ("x-canary: insider", &insider[..], "canary 6.0.1"),
        ("cookie canary=always", &cookie[..], "canary 6.0.1"),
        ("no match", &[][..], "primary 6.0.0"),
        (
            "x-canary: outsider, cookie canary=never",
            &near_miss[..],
            "primary 6.0.0",
        ),
    ] {
        let t = send(&host, "/", headers, n, CONCURRENCY).await;
        figures.push(format!("{what}: {:?}", t.by_version));
        assert_eq!(
            t.by_version.get(expect).copied(),
            Some(n as u64),
            "{what}: all {n} requests should reach {expect}: {t:?}"
        );
    }
    promotion_gate.set_status(200);
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, Duration::from_secs(120))
        .await;
    eventually(
        Duration::from_secs(60),
        "the promoted primary to answer the insiders too",
        || async {
            send(&host, "/", &insider, 20, 4)
                .await
                .by_version
                .keys()
                .collect::<Vec<_>>()
                == ["primary 6.0.1"]
        },
    )
    .await
    .unwrap();
    eprintln!(
        "A/B through Traefik ({n} requests each):\n  {}",
        figures.join("\n  ")
    );
}
