//! The `traefik` provider with real traffic: the controller writes a TraefikService, the test
//! writes the IngressRoute a user would (host → `TraefikService podinfo`), and requests go
//! through Traefik's `kubernetesCRD` provider (`cargo xtask dataplane up` runs it next to the
//! Gateway provider) to podinfo processes that stand in for the primary and canary Pods.
//!
//! - a weighted rollout (20/40/60) measured with 1,000 requests per step, a client holding the
//!   canary's sticky cookie that stays on the canary at every later step, and a hand edit of
//!   the TraefikService that the controller undoes (drift);
//! - blue/green with mirroring: every answer from the primary while the canary's own podinfo
//!   counts the copies.

use std::net::SocketAddrV4;
use std::time::Duration;

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::dataplane::{
    LocalWorkload, Tally, canary_endpoint, dataplane, local_podinfo_canary, send,
    wait_status_weight,
};
use fledge_e2e::{Hook, TestNs, deployment_json, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{V1, V2};

/// Requests per measured step.
const REQUESTS: usize = 1000;
/// Requests in flight.
const CONCURRENCY: usize = 16;
/// Traefik's entry point for routed traffic (the Gateway listener's too).
const ENTRY_POINT: &str = "web";
/// The sticky cookie of the affinity test.
const COOKIE: &str = "fledge-canary";

fn traefik_api(ns: &TestNs, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "traefik.io".into(),
        version: "v1alpha1".into(),
        api_version: "traefik.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

/// The TraefikService API of the test's namespace.
fn traefik_services(ns: &TestNs) -> Api<DynamicObject> {
    traefik_api(ns, "TraefikService", "traefikservices")
}

/// What a user writes to expose the Canary through Traefik: an IngressRoute on the `web` entry
/// point for `host`, served by the TraefikService fledge manages (named like the apex Service).
async fn create_ingress_route(ns: &TestNs, host: &str) {
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
        "metadata": {"name": "podinfo", "namespace": ns.name},
        "spec": {
            "entryPoints": [ENTRY_POINT],
            "routes": [{
                "kind": "Rule",
                "match": format!("Host(`{host}`)"),
                "services": [{"kind": "TraefikService", "name": "podinfo"}],
            }],
        },
    }))
    .unwrap();
    traefik_api(ns, "IngressRoute", "ingressroutes")
        .create(&PostParams::default(), &route)
        .await
        .expect("create the IngressRoute");
}

/// The TraefikService as Traefik runs it now, from its API.
async fn running_service(ns: &TestNs) -> Option<Value> {
    let url = format!(
        "{}/http/services/{}-podinfo@kubernetescrd",
        dataplane().api_url,
        ns.name
    );
    let resp = reqwest::get(url).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// The canary's percentage in the weighted service Traefik runs (a service it does not list
/// weighs 0); `None` while it runs no weighted service for the Canary.
async fn running_canary_weight(ns: &TestNs) -> Option<i64> {
    let svc = running_service(ns).await?;
    let children = svc.pointer("/weighted/services")?.as_array()?;
    let weight = |role: &str| -> i64 {
        let prefix = format!("{}-podinfo-{role}-9898", ns.name);
        children
            .iter()
            .filter(|c| {
                c.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.split('@').next() == Some(prefix.as_str()))
            })
            .map(|c| c.get("weight").and_then(Value::as_i64).unwrap_or(1))
            .sum()
    };
    let (p, c) = (weight("primary"), weight("canary"));
    (p + c > 0).then(|| c * 100 / (p + c))
}

/// Waits until Traefik runs the TraefikService with `canary` percent to the canary.
async fn wait_running_weight(ns: &TestNs, canary: i64) {
    eventually(
        Duration::from_secs(30),
        &format!("Traefik to send {canary}% to the canary"),
        || async { running_canary_weight(ns).await == Some(canary) },
    )
    .await
    .unwrap();
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

/// 1,000 requests without cookies; the canary's share must be within 5 points of `weight`.
async fn measure(host: &str, weight: i64, figures: &mut Vec<String>) -> Tally {
    let t = send(host, "/", &[], REQUESTS, CONCURRENCY).await;
    let share = canary_share(&t);
    figures.push(format!(
        "weight {weight:>3}%: canary {share:5.1}% of {} without cookies ({:?})",
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

/// One request through Traefik, with `cookie` (`name=value`) if given: the version that
/// answered and the sticky cookie Traefik set, if any.
async fn get(
    http: &reqwest::Client,
    host: &str,
    cookie: Option<&str>,
) -> (Option<String>, Option<String>) {
    let mut req = http
        .get(format!("http://{}/", dataplane().gateway))
        .header("Host", host);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let resp = req.send().await.expect("a request through Traefik");
    let set = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|kv| kv.starts_with(&format!("{COOKIE}=")))
        .map(str::to_string);
    let body: Value = resp.json().await.unwrap_or_default();
    let version = body
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string);
    (version, set)
}

/// The Deployment `podinfo` (V1), the local stand-in for its Pods, a Canary on the traefik
/// provider with `analysis`, `fledge run`, and the user's IngressRoute for `host`; returns once
/// Traefik serves the primary for `host`.
async fn start(ns: &TestNs, host: &str, analysis: Value) -> LocalWorkload {
    let workload =
        local_podinfo_canary(ns, V1, json!({"provider": "traefik", "analysis": analysis})).await;
    create_ingress_route(ns, host).await;
    wait_running_weight(ns, 0).await;
    eventually(
        Duration::from_secs(30),
        "the primary to answer through the IngressRoute",
        || async {
            send(host, "/", &[], 4, 2)
                .await
                .by_version
                .keys()
                .collect::<Vec<_>>()
                == ["primary 6.0.0"]
        },
    )
    .await
    .unwrap();
    workload
}

/// podinfo's own count of the requests it answered, from its `/metrics`.
async fn requests_total(addr: SocketAddrV4) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("podinfo /metrics")
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A weighted rollout on the traefik provider with session affinity, gates holding every step:
/// cookie-less clients see the declared split (1,000 requests per step); a client that got the
/// canary's sticky cookie at 20% lands on the canary with every request at 20, 40 and 60%, and
/// is balanced afresh (onto the promoted primary) once the canary is out; a hand edit of the
/// TraefikService's weights is undone by the controller with a warning Event.
#[tokio::test(flavor = "multi_thread")]
async fn traefik_weighted_rollout_keeps_sticky_clients_on_the_canary() {
    let ns = TestNs::new("traefik").await;
    let host = format!("{}.fledge.test", ns.name);
    let traffic_gate = Hook::start(403).await.unwrap();
    let promotion_gate = Hook::start(403).await.unwrap();
    let _workload = start(
        &ns,
        &host,
        json!({
            "interval": "2s", "threshold": 5, "stepWeight": 20, "maxWeight": 60,
            "sessionAffinity": {"cookieName": COOKIE, "maxAge": 600},
            "webhooks": [
                {"name": "traffic", "type": "confirm-traffic-increase",
                 "url": traffic_gate.url("/traffic")},
                {"name": "promotion", "type": "confirm-promotion",
                 "url": promotion_gate.url("/promotion")},
            ],
        }),
    )
    .await;
    let written = traefik_services(&ns).get("podinfo").await.unwrap();
    assert_eq!(
        written.data["spec"]["weighted"]["sticky"],
        json!({"cookie": {"name": COOKIE, "maxAge": 600}})
    );

    let mut figures = Vec::new();
    let before = measure(&host, 0, &mut figures).await;
    assert_eq!(
        before.by_version.keys().collect::<Vec<_>>(),
        ["primary 6.0.0"]
    );

    ns.set_image("podinfo", V2).await;
    canary_endpoint(&ns).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut sticky: Option<String> = None;
    for weight in [20, 40, 60] {
        traffic_gate.set_status(200);
        wait_status_weight(&ns, "podinfo", weight).await;
        traffic_gate.set_status(403);
        wait_running_weight(&ns, i64::from(weight)).await;
        measure(&host, i64::from(weight), &mut figures).await;

        if sticky.is_none() {
            // A new client: balanced by weight until an answer comes from the canary, whose
            // cookie it keeps.
            for _ in 0..200 {
                let (version, set) = get(&http, &host, None).await;
                if version.as_deref() == Some("canary 6.0.1") {
                    sticky = Some(set.expect("the canary's answer sets the sticky cookie"));
                    break;
                }
            }
        }
        let cookie = sticky.clone().expect("some answer from the canary at 20%");
        let mut with_cookie = Tally::default();
        for _ in 0..200 {
            let (version, _) = get(&http, &host, Some(&cookie)).await;
            *with_cookie
                .by_version
                .entry(version.unwrap_or_else(|| "no answer".into()))
                .or_default() += 1;
        }
        figures.push(format!(
            "weight {weight:>3}%: with the canary's cookie {:?}",
            with_cookie.by_version
        ));
        assert_eq!(
            with_cookie.by_version.keys().collect::<Vec<_>>(),
            ["canary 6.0.1"],
            "the client holding {cookie} left the canary at {weight}%"
        );

        if weight == 20 {
            // Someone edits the weights by hand: the controller puts the status's back.
            let edit = json!({"spec": {"weighted": {"services": [
                {"name": "podinfo-primary", "port": 9898, "weight": 50},
                {"name": "podinfo-canary", "port": 9898, "weight": 50}
            ]}}});
            traefik_services(&ns)
                .patch(
                    "podinfo",
                    &PatchParams {
                        field_manager: Some("kubectl-edit".into()),
                        ..Default::default()
                    },
                    &Patch::Merge(&edit),
                )
                .await
                .unwrap();
            eventually(
                Duration::from_secs(60),
                "the controller to restore 80/20 and say so",
                || async {
                    let obj = traefik_services(&ns).get("podinfo").await.unwrap();
                    let weights: Vec<i64> = obj.data["spec"]["weighted"]["services"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["weight"].as_i64())
                        .collect();
                    weights == [80, 20]
                        && ns
                            .events("podinfo")
                            .await
                            .iter()
                            .any(|e| e.starts_with("Warning RoutesRestored"))
                },
            )
            .await
            .unwrap();
            let event = ns
                .events("podinfo")
                .await
                .into_iter()
                .find(|e| e.starts_with("Warning RoutesRestored"))
                .unwrap();
            assert!(
                event.contains("canary 50%") && event.contains("canary 20%"),
                "{event}"
            );
            figures.push(format!("hand edit to 50/50 undone: {event}"));
            wait_running_weight(&ns, 20).await;
        }
        if weight == 40 {
            // Someone deletes the TraefikService: the controller recreates it.
            traefik_services(&ns)
                .delete("podinfo", &DeleteParams::default())
                .await
                .unwrap();
            eventually(
                Duration::from_secs(60),
                "the controller to recreate the TraefikService and say so",
                || async {
                    let back = traefik_services(&ns)
                        .get_opt("podinfo")
                        .await
                        .ok()
                        .flatten();
                    back.is_some_and(|o| {
                        o.data["spec"]["weighted"]["services"][1]["weight"] == json!(40)
                    }) && ns
                        .events("podinfo")
                        .await
                        .iter()
                        .any(|e| e.starts_with("Warning RoutingObjectRecreated"))
                },
            )
            .await
            .unwrap();
            figures.push("TraefikService deleted by hand: recreated at 60/40".into());
            wait_running_weight(&ns, 40).await;
        }
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
    wait_running_weight(&ns, 0).await;
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
    // The canary is out of the TraefikService: its cookie matches nothing any more.
    let cookie = sticky.unwrap();
    let (version, _) = get(&http, &host, Some(&cookie)).await;
    assert_eq!(version.as_deref(), Some("primary 6.0.1"));
    eprintln!(
        "traefik provider, real traffic through an IngressRoute and the TraefikService \
         ({REQUESTS} requests per step):\n  {}",
        figures.join("\n  ")
    );
}

/// Blue/green with mirroring on the traefik provider: while the analysis holds (a
/// `confirm-promotion` gate), every answer comes from the primary and the canary's own
/// podinfo counts the mirrored half of the requests.
#[tokio::test(flavor = "multi_thread")]
async fn traefik_mirroring_answers_from_the_primary_while_the_canary_gets_copies() {
    let ns = TestNs::new("traefik-mirror").await;
    let host = format!("{}.fledge.test", ns.name);
    let promotion_gate = Hook::start(403).await.unwrap();
    let _workload = start(
        &ns,
        &host,
        json!({
            "interval": "2s", "threshold": 5, "iterations": 2,
            "mirror": true, "mirrorWeight": 50,
            "webhooks": [{"name": "promotion", "type": "confirm-promotion",
                          "url": promotion_gate.url("/promotion")}],
        }),
    )
    .await;
    ns.set_image("podinfo", V2).await;
    let canary = canary_endpoint(&ns).await;
    ns.wait_phase(
        "podinfo",
        CanaryPhase::WaitingPromotion,
        Duration::from_secs(90),
    )
    .await;
    let written = traefik_services(&ns).get("podinfo").await.unwrap();
    assert_eq!(
        written.data["spec"],
        json!({"mirroring": {"name": "podinfo-primary", "port": 9898,
            "mirrors": [{"name": "podinfo-canary", "port": 9898, "percent": 50}]}})
    );
    eventually(
        Duration::from_secs(30),
        "Traefik to run the mirroring service",
        || async {
            running_service(&ns)
                .await
                .and_then(|s| s.pointer("/mirroring/mirrors/0/percent").cloned())
                == Some(json!(50))
        },
    )
    .await
    .unwrap();

    let counted_before = requests_total(canary).await;
    let t = send(&host, "/", &[], REQUESTS, CONCURRENCY).await;
    assert_eq!(
        t.by_version.keys().collect::<Vec<_>>(),
        ["primary 6.0.0"],
        "only the primary answers while mirroring: {t:?}"
    );
    assert_eq!(t.total(), REQUESTS as u64);
    // Copies are sent in the background: wait until the canary has counted (at least) the
    // mirrored share, then check it got no more than that.
    let low = (REQUESTS as u64) * 45 / 100;
    eventually(
        Duration::from_secs(30),
        "the canary to count the mirrored requests",
        || async { requests_total(canary).await - counted_before >= low },
    )
    .await
    .unwrap();
    let mirrored = requests_total(canary).await - counted_before;
    let share = 100.0 * mirrored as f64 / REQUESTS as f64;
    eprintln!(
        "traefik mirroring (mirrorWeight 50): {REQUESTS} requests all answered by the primary \
         ({:?}); the canary's podinfo counted {mirrored} copies ({share:.1}%)",
        t.by_version
    );
    assert!(
        (share - 50.0).abs() <= 5.0,
        "the canary counted {mirrored} of {REQUESTS} requests"
    );
    let still = ns.api::<Canary>().get("podinfo").await.unwrap();
    assert_eq!(
        still.status.map(|s| s.phase),
        Some(CanaryPhase::WaitingPromotion),
        "the mirror phase ended while it was measured"
    );

    // Promotion: the canary takes all traffic, then the promoted primary; no mirror is left.
    promotion_gate.set_status(200);
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, Duration::from_secs(120))
        .await;
    let done = traefik_services(&ns).get("podinfo").await.unwrap();
    assert_eq!(
        done.data["spec"],
        json!({"weighted": {"services": [{"name": "podinfo-primary", "port": 9898, "weight": 100}]}})
    );
}

/// Deleting a Canary on the traefik provider with `revertOnDeletion`: the TraefikService stays,
/// no longer owned, sending everything to the apex Service (which selects the target's pods
/// again), so the user's IngressRoute keeps a backend once the Canary is gone.
#[tokio::test(flavor = "multi_thread")]
async fn traefik_deletion_with_revert_leaves_the_traefik_service_on_the_apex() {
    dataplane();
    let ns = TestNs::new("traefik-revert").await;
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    ns.create::<Canary>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "traefik",
            "revertOnDeletion": true,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "2s", "stepWeight": 20, "maxWeight": 60},
        },
    }))
    .await;
    ns.start_controller(&[]);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    let owned = traefik_services(&ns).get("podinfo").await.unwrap();
    assert_eq!(
        owned.metadata.owner_references.unwrap_or_default()[0].kind,
        "Canary"
    );
    let canaries = ns.api::<Canary>();
    canaries
        .delete("podinfo", &DeleteParams::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(90), "the Canary deleted", || async {
        canaries.get_opt("podinfo").await.ok().flatten().is_none()
    })
    .await
    .unwrap();
    let kept = traefik_services(&ns)
        .get_opt("podinfo")
        .await
        .unwrap()
        .expect("the TraefikService stays");
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(
        kept.data["spec"],
        json!({"weighted": {"services": [{"name": "podinfo", "port": 9898, "weight": 100}]}})
    );
    let apex = ns
        .api::<k8s_openapi::api::core::v1::Service>()
        .get("podinfo")
        .await
        .unwrap();
    assert_eq!(apex.spec.unwrap().selector.unwrap()["app"], "podinfo");
}
