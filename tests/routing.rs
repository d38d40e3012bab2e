//! End-to-end tests of the routers on the local control plane: the objects each provider writes
//! (HTTPRoute, VirtualService and DestinationRules, TrafficSplit) are accepted by the real API
//! server with the upstream CRDs (`cargo xtask cluster up` installs them), and at every step of
//! a rollout they carry the weight the Canary's status shows.
//!
//! No Istio or Linkerd data plane runs here: these tests check objects, not traffic. Real
//! traffic through a gateway is measured by the data-plane tests, for the traefik provider by
//! [`traefik`] (weights, session affinity, mirroring and drift through Traefik's CRD provider),
//! and for the skipper provider by [`skipper`] (weights and an A/B header match through a
//! Skipper that reads the Ingresses).

#[path = "routing/skipper.rs"]
mod skipper;
#[path = "routing/traefik.rs"]
mod traefik;

use std::time::{Duration, Instant};

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::{TestNs, deployment_json, eventually, image_of};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const INIT: Duration = Duration::from_secs(90);
const ROLLOUT: Duration = Duration::from_secs(150);

/// A routing object kind of a peer API.
#[derive(Clone, Copy, Debug)]
enum Peer {
    HttpRoute(&'static str),
    VirtualService,
    TrafficSplit(&'static str),
}

impl Peer {
    fn resource(self) -> ApiResource {
        let (group, version, kind, plural) = match self {
            Peer::HttpRoute(v) => ("gateway.networking.k8s.io", v, "HTTPRoute", "httproutes"),
            Peer::VirtualService => (
                "networking.istio.io",
                "v1beta1",
                "VirtualService",
                "virtualservices",
            ),
            Peer::TrafficSplit(v) => ("split.smi-spec.io", v, "TrafficSplit", "trafficsplits"),
        };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    fn api(self, ns: &TestNs) -> Api<DynamicObject> {
        Api::namespaced_with(ns.client.clone(), &ns.name, &self.resource())
    }

    /// The object's JSON, if it exists.
    async fn get(self, ns: &TestNs, name: &str) -> Option<Value> {
        self.api(ns)
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("reading {self:?} {name}: {e}"))
            .map(|o| serde_json::to_value(o).expect("object JSON"))
    }

    /// Waits until the API is served (the CRDs come from `cluster up`).
    async fn served(self, ns: &TestNs) {
        let api = self.api(ns);
        eventually(
            Duration::from_secs(60),
            &format!("{self:?} served"),
            || async { api.list(&ListParams::default().limit(1)).await.is_ok() },
        )
        .await
        .unwrap();
    }

    /// The canary's percentage in a routing object for Services `<svc>-primary` and
    /// `<svc>-canary`, read independently of the controller's own code.
    fn canary_weight(self, obj: &Value, svc: &str) -> Option<i32> {
        let (primary, canary) = (format!("{svc}-primary"), format!("{svc}-canary"));
        let pair = |list: &Value, name_of: &dyn Fn(&Value) -> Option<String>| {
            let items = list.as_array()?;
            let w = |n: &str| {
                items
                    .iter()
                    .find(|b| name_of(b).as_deref() == Some(n))
                    .map(|b| b["weight"].as_i64().unwrap_or(0))
            };
            Some((w(&primary)?, w(&canary)?))
        };
        let (p, c) = match self {
            Peer::HttpRoute(_) => obj["spec"]["rules"]
                .as_array()?
                .iter()
                .find_map(|r| pair(&r["backendRefs"], &|b| b["name"].as_str().map(String::from)))?,
            Peer::VirtualService => obj["spec"]["http"].as_array()?.iter().find_map(|r| {
                pair(&r["route"], &|d| {
                    d["destination"]["host"].as_str().map(String::from)
                })
            })?,
            Peer::TrafficSplit(_) => pair(&obj["spec"]["backends"], &|b| {
                b["service"].as_str().map(String::from)
            })?,
        };
        assert_eq!(p + c, 100, "weights of {self:?} do not add up: {obj}");
        Some(c as i32)
    }
}

/// A weighted Canary: stepWeight 20 up to 60, every 2 s, on `provider`, `extra` merged into the
/// spec.
fn weighted(name: &str, provider: &str, extra: Value) -> Value {
    let mut c = json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {"interval": "2s", "threshold": 2, "stepWeight": 20, "maxWeight": 60}
        }
    });
    merge(&mut c["spec"], extra);
    c
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// One sample: the phase and weight in the Canary's status, and the weight in the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    phase: CanaryPhase,
    status: i32,
    object: Option<i32>,
}

/// Rolls out V2 and samples the status and the routing object every 100 ms until Succeeded.
async fn roll_out_and_sample(ns: &TestNs, name: &str, peer: Peer) -> Vec<Sample> {
    ns.set_image(name, V2).await;
    let api = ns.api::<Canary>();
    let deadline = Instant::now() + ROLLOUT;
    let mut samples = Vec::new();
    loop {
        let c = api.get(name).await.unwrap();
        let st = c.status.clone().unwrap_or_default();
        let object = peer
            .get(ns, name)
            .await
            .and_then(|o| peer.canary_weight(&o, name));
        samples.push(Sample {
            phase: st.phase,
            status: st.canary_weight,
            object,
        });
        if st.phase == CanaryPhase::Succeeded && st.last_promoted_spec == st.last_applied_spec {
            // One more reading of the object after the status said so.
            let last = peer.get(ns, name).await.expect("the routing object");
            samples.push(Sample {
                phase: st.phase,
                status: st.canary_weight,
                object: peer.canary_weight(&last, name),
            });
            return samples;
        }
        assert_ne!(
            st.phase,
            CanaryPhase::Failed,
            "rollout failed: {st:#?}\n{:#?}",
            ns.events(name).await
        );
        assert!(
            Instant::now() < deadline,
            "no promotion after {ROLLOUT:?}; samples {samples:?}\nstatus {st:#?}\n{}",
            ns.controller_log(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Consecutive equal samples, counted: `Progressing 20/20 x19, ...`.
fn runs(samples: &[Sample]) -> String {
    let mut out: Vec<(Sample, usize)> = Vec::new();
    for s in samples {
        match out.last_mut() {
            Some((last, n)) if last == s => *n += 1,
            _ => out.push((*s, 1)),
        }
    }
    out.iter()
        .map(|(s, n)| {
            let object = s.object.map_or("-".to_string(), |o| o.to_string());
            format!("{} {}/{object} x{n}", s.phase, s.status)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn dedup(v: impl Iterator<Item = i32>) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::new();
    for x in v {
        if out.last() != Some(&x) {
            out.push(x);
        }
    }
    out
}

/// The weights of the rollout, in the status and in the object: 0, 20, 40, 60, then 0 again
/// (promotion switches all traffic back to the primary at once), none skipped or repeated;
/// every step seen with the object and the status agreeing.
fn check_steps(samples: &[Sample]) -> Vec<i32> {
    let status = dedup(samples.iter().map(|s| s.status));
    let object = dedup(samples.iter().filter_map(|s| s.object));
    assert_eq!(
        status,
        vec![0, 20, 40, 60, 0],
        "status weights; {samples:?}"
    );
    assert_eq!(
        object,
        vec![0, 20, 40, 60, 0],
        "object weights; {samples:?}"
    );
    for w in [20, 40, 60] {
        assert!(
            samples.iter().any(|s| s.status == w
                && s.object == Some(w)
                && s.phase == CanaryPhase::Progressing),
            "the object never showed {w} while the status did: {samples:?}"
        );
    }
    let last = samples.last().unwrap();
    assert_eq!((last.status, last.object), (0, Some(0)), "after promotion");
    object
}

/// Waits until the routing object meets `cond` (10 s at most) and returns it.
async fn wait_object(
    ns: &TestNs,
    peer: Peer,
    name: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let obj = peer.get(ns, name).await.unwrap_or_default();
        if cond(&obj) {
            return obj;
        }
        assert!(
            Instant::now() < deadline,
            "{peer:?} {name}: no {what}: {obj}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn initialized(ns: &TestNs, name: &str) -> Canary {
    ns.wait_phase(name, CanaryPhase::Initialized, INIT).await
}

/// Creates a Deployment and a Canary, starts the controller and waits for initialization.
async fn set_up(ns: &TestNs, canaries: &[(&str, Value)]) {
    for (name, canary) in canaries {
        ns.create::<Deployment>(deployment_json(name, V1, 1)).await;
        ns.create::<Canary>(canary.clone()).await;
    }
    ns.start_controller(&[]);
    for (name, _) in canaries {
        initialized(ns, name).await;
    }
}

async fn weighted_rollout(prefix: &str, provider: &str, peer: Peer, extra: Value) -> Value {
    let ns = TestNs::new(prefix).await;
    peer.served(&ns).await;
    set_up(&ns, &[("podinfo", weighted("podinfo", provider, extra))]).await;
    let before = peer.get(&ns, "podinfo").await.expect("the routing object");
    assert_eq!(peer.canary_weight(&before, "podinfo"), Some(0), "{before}");
    assert_eq!(
        before["metadata"]["ownerReferences"][0]["kind"], "Canary",
        "owned by the Canary: {before}"
    );
    let samples = roll_out_and_sample(&ns, "podinfo", peer).await;
    let steps = check_steps(&samples);
    eprintln!(
        "{provider}: object weights {steps:?}; samples as phase status/object weight x count: {}",
        runs(&samples)
    );
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
    peer.get(&ns, "podinfo").await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_api_http_route_follows_every_step() {
    let route = weighted_rollout(
        "gw",
        "gatewayapi:v1",
        Peer::HttpRoute("v1"),
        json!({"service": {
            "gatewayRefs": [{"name": "public", "namespace": "edge", "sectionName": "http"}],
            "hosts": ["app.example.com"],
            "timeout": "30s",
            "retries": {"attempts": 2, "perTryTimeout": "5s", "retryOn": "5xx"},
            "headers": {"request": {"set": {"x-env": "e2e"}}, "response": {"remove": ["server"]}}
        }}),
    )
    .await;
    let spec = &route["spec"];
    assert_eq!(
        spec["parentRefs"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public",
            "namespace": "edge", "sectionName": "http"}]),
        "the API server defaults group and kind"
    );
    assert_eq!(spec["hostnames"], json!(["app.example.com"]));
    let rule = &spec["rules"][0];
    assert_eq!(rule["name"], "split");
    assert_eq!(
        rule["timeouts"],
        json!({"request": "30s", "backendRequest": "5s"})
    );
    // The experimental channel (what `cluster up` installs by default) has `retry`; the
    // standard one does not, and the router leaves it out.
    let crds: Api<CustomResourceDefinition> = Api::all(fledge_e2e::client().await);
    let crd = crds
        .get("httproutes.gateway.networking.k8s.io")
        .await
        .unwrap();
    let channel = crd
        .metadata
        .annotations
        .unwrap_or_default()
        .get("gateway.networking.k8s.io/channel")
        .cloned();
    if channel.as_deref() == Some("experimental") {
        assert_eq!(
            rule["retry"],
            json!({"attempts": 2, "codes": [500, 502, 503, 504]})
        );
    } else {
        assert!(rule.get("retry").is_none(), "{rule}");
    }
    assert_eq!(rule["filters"][0]["type"], "RequestHeaderModifier");
    assert_eq!(rule["filters"][1]["type"], "ResponseHeaderModifier");
}

#[tokio::test(flavor = "multi_thread")]
async fn istio_virtual_service_follows_every_step() {
    let vs = weighted_rollout(
        "istio",
        "istio",
        Peer::VirtualService,
        json!({"service": {
            "hosts": ["app.example.com"],
            "gateways": ["public-gateway.istio-system.svc.cluster.local", "mesh"],
            "timeout": "30s",
            "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "gateway-error,connect-failure"},
            "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}], "allowMethods": ["GET"], "maxAge": "1h"},
            "headers": {"request": {"add": {"x-env": "e2e"}}},
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}
        }}),
    )
    .await;
    let spec = &vs["spec"];
    assert_eq!(spec["hosts"], json!(["app.example.com", "podinfo"]));
    let route = &spec["http"][0];
    assert_eq!(route["timeout"], "30s");
    assert_eq!(route["retries"]["perTryTimeout"], "1s");
    assert_eq!(route["corsPolicy"]["maxAge"], "3600s");
    // The DestinationRules, one per side, with the traffic policy.
    let ns_name = vs["metadata"]["namespace"].as_str().unwrap().to_string();
    let client = fledge_e2e::client().await;
    let dr = ApiResource {
        group: "networking.istio.io".into(),
        version: "v1beta1".into(),
        api_version: "networking.istio.io/v1beta1".into(),
        kind: "DestinationRule".into(),
        plural: "destinationrules".into(),
    };
    let drs: Api<DynamicObject> = Api::namespaced_with(client, &ns_name, &dr);
    for side in ["podinfo-primary", "podinfo-canary"] {
        let d = drs.get(side).await.unwrap();
        assert_eq!(d.data["spec"]["host"], side);
        assert_eq!(
            d.data["spec"]["trafficPolicy"]["tls"]["mode"],
            "ISTIO_MUTUAL"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn linkerd_traffic_split_follows_every_step() {
    let ts = weighted_rollout(
        "linkerd",
        "linkerd",
        Peer::TrafficSplit("v1alpha2"),
        json!({}),
    )
    .await;
    assert_eq!(ts["apiVersion"], "split.smi-spec.io/v1alpha2");
    assert_eq!(ts["spec"]["service"], "podinfo");
}

#[tokio::test(flavor = "multi_thread")]
async fn smi_v1alpha3_traffic_split_follows_every_step() {
    let ts = weighted_rollout(
        "smi",
        "smi:v1alpha3",
        Peer::TrafficSplit("v1alpha3"),
        json!({}),
    )
    .await;
    assert_eq!(ts["apiVersion"], "split.smi-spec.io/v1alpha3");
}

/// An A/B Canary: header and cookie matches, 5 iterations.
fn ab(name: &str, provider: &str) -> Value {
    weighted(
        name,
        provider,
        json!({"analysis": {"stepWeight": null, "maxWeight": null, "iterations": 5, "match": [
            {"headers": {"x-canary": {"exact": "insider"}}},
            {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}}
        ]}}),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn ab_testing_routes_header_and_cookie_matches_to_the_canary_during_the_analysis() {
    let ns = TestNs::new("ab").await;
    let gw = Peer::HttpRoute("v1beta1");
    gw.served(&ns).await;
    Peer::VirtualService.served(&ns).await;
    set_up(
        &ns,
        &[
            ("abgw", ab("abgw", "gatewayapi:v1beta1")),
            ("abistio", ab("abistio", "istio")),
        ],
    )
    .await;
    ns.set_image("abgw", V2).await;
    ns.set_image("abistio", V2).await;
    // During the analysis: the match rule first, to the canary only; the rest to the primary.
    ns.wait_phase("abgw", CanaryPhase::Progressing, ROLLOUT)
        .await;
    let route = wait_object(&ns, gw, "abgw", "the A/B rule", |r| {
        r["spec"]["rules"][0]["name"] == "ab-testing"
    })
    .await;
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1beta1");
    let rules = route["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{route}");
    assert_eq!(rules[0]["name"], "ab-testing");
    assert_eq!(
        rules[0]["matches"],
        json!([
            {"path": {"type": "PathPrefix", "value": "/"},
                "headers": [{"type": "Exact", "name": "x-canary", "value": "insider"}]},
            {"path": {"type": "PathPrefix", "value": "/"},
                "headers": [{"type": "RegularExpression", "name": "cookie",
                    "value": "^(.*?;)?(canary=always)(;.*)?$"}]}
        ]),
        "as the API server defaults them"
    );
    assert_eq!(
        rules[0]["backendRefs"],
        json!([{"group": "", "kind": "Service", "name": "abgw-canary", "port": 9898, "weight": 100}])
    );
    assert_eq!(gw.canary_weight(&route, "abgw"), Some(0));

    ns.wait_phase("abistio", CanaryPhase::Progressing, ROLLOUT)
        .await;
    let vs = wait_object(&ns, Peer::VirtualService, "abistio", "the A/B route", |v| {
        v["spec"]["http"][0]["name"] == "ab-testing"
    })
    .await;
    let http = vs["spec"]["http"].as_array().unwrap();
    assert_eq!(
        http[0]["match"][1]["headers"]["cookie"]["regex"],
        "^(.*?;)?(canary=always)(;.*)?$"
    );
    assert_eq!(http[0]["route"][0]["destination"]["host"], "abistio-canary");
    assert_eq!(Peer::VirtualService.canary_weight(&vs, "abistio"), Some(0));

    // After promotion: only the weighted rule, all to the primary.
    for name in ["abgw", "abistio"] {
        ns.wait_phase(name, CanaryPhase::Succeeded, ROLLOUT).await;
    }
    let route = gw.get(&ns, "abgw").await.unwrap();
    assert_eq!(route["spec"]["rules"].as_array().unwrap().len(), 1);
    assert_eq!(gw.canary_weight(&route, "abgw"), Some(0));
    let vs = Peer::VirtualService.get(&ns, "abistio").await.unwrap();
    assert_eq!(vs["spec"]["http"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_affinity_cookies_and_mirroring_on_the_http_route() {
    let ns = TestNs::new("sticky").await;
    let gw = Peer::HttpRoute("v1");
    gw.served(&ns).await;
    let sticky = weighted(
        "sticky",
        "gatewayapi:v1",
        json!({"analysis": {"sessionAffinity": {"cookieName": "fledge-canary", "maxAge": 600}}}),
    );
    let shadow = weighted(
        "shadow",
        "gatewayapi:v1",
        json!({"analysis": {"stepWeight": null, "maxWeight": null, "iterations": 5,
            "mirror": true, "mirrorWeight": 50}}),
    );
    set_up(&ns, &[("sticky", sticky), ("shadow", shadow)]).await;
    ns.set_image("sticky", V2).await;
    ns.set_image("shadow", V2).await;

    // Session affinity: while the canary gets traffic, its responses set the cookie the status
    // names and a rule sends requests carrying it to the canary.
    let c = ns
        .wait_canary("sticky", ROLLOUT, "canary weight 20", |c| {
            c.status.as_ref().is_some_and(|s| s.canary_weight == 20)
        })
        .await;
    let cookie = c.status.unwrap().session_affinity_cookie.expect("a cookie");
    let (cookie_name, cookie_value) = cookie.split_once('=').unwrap();
    assert_eq!(cookie_name, "fledge-canary");
    let route = wait_object(&ns, gw, "sticky", "the session rule", |r| {
        r["spec"]["rules"][0]["name"] == "canary-session"
    })
    .await;
    let rules = route["spec"]["rules"].as_array().unwrap();
    let session_regex = rules[0]["matches"][0]["headers"][0]["value"]
        .as_str()
        .unwrap();
    assert!(
        session_regex.contains(cookie_value),
        "{session_regex} matches {cookie}"
    );
    assert_eq!(rules[0]["backendRefs"][0]["name"], "sticky-canary");
    let canary_backend = &rules[1]["backendRefs"][1];
    assert_eq!(canary_backend["name"], "sticky-canary");
    assert_eq!(
        canary_backend["filters"][0]["responseHeaderModifier"]["add"][0],
        json!({"name": "Set-Cookie", "value": format!("{cookie}; Max-Age=600")})
    );

    // Mirroring: half of the requests copied to the canary while the primary answers all.
    ns.wait_phase("shadow", CanaryPhase::Progressing, ROLLOUT)
        .await;
    let route = wait_object(&ns, gw, "shadow", "the mirror filter", |r| {
        r["spec"]["rules"][0]["filters"][0]["type"] == "RequestMirror"
    })
    .await;
    assert_eq!(
        route["spec"]["rules"][0]["filters"][0]["requestMirror"],
        json!({"backendRef": {"group": "", "kind": "Service", "name": "shadow-canary", "port": 9898},
            "percent": 50})
    );
    assert_eq!(gw.canary_weight(&route, "shadow"), Some(0));

    // After promotion: no mirror; primary responses expire the canary cookie.
    let done = ns
        .wait_phase("sticky", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    assert_eq!(
        done.status
            .unwrap()
            .previous_session_affinity_cookie
            .as_deref(),
        Some(cookie.as_str())
    );
    let route = gw.get(&ns, "sticky").await.unwrap();
    let rules = route["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{route}");
    assert_eq!(
        rules[0]["backendRefs"][0]["filters"][0]["responseHeaderModifier"]["add"][0]["value"],
        format!("{cookie}; Max-Age=0")
    );
    ns.wait_phase("shadow", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    let route = gw.get(&ns, "shadow").await.unwrap();
    assert!(
        route["spec"]["rules"][0].get("filters").is_none(),
        "{route}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_with_revert_leaves_the_apex_and_its_route_serving_the_target() {
    let ns = TestNs::new("release").await;
    let gw = Peer::HttpRoute("v1");
    let ts = Peer::TrafficSplit("v1alpha2");
    gw.served(&ns).await;
    ts.served(&ns).await;
    let mut keep_gw = weighted(
        "webgw",
        "gatewayapi:v1",
        json!({"service": {"gatewayRefs": [{"name": "public"}]}}),
    );
    keep_gw["spec"]["revertOnDeletion"] = true.into();
    let mut keep_ts = weighted("webts", "linkerd", json!({}));
    keep_ts["spec"]["revertOnDeletion"] = true.into();
    set_up(&ns, &[("webgw", keep_gw), ("webts", keep_ts)]).await;
    let canaries = ns.api::<Canary>();
    for name in ["webgw", "webts"] {
        canaries
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for name in ["webgw", "webts"] {
        eventually(
            Duration::from_secs(90),
            &format!("Canary {name} deleted"),
            || async { canaries.get_opt(name).await.ok().flatten().is_none() },
        )
        .await
        .unwrap();
    }
    // Give the garbage collector time to remove what the Canary still owned.
    let primary_gone = |name: &'static str| {
        let deployments = ns.api::<Deployment>();
        async move {
            deployments
                .get_opt(&format!("{name}-primary"))
                .await
                .ok()
                .flatten()
                .is_none()
        }
    };
    for name in ["webgw", "webts"] {
        eventually(
            Duration::from_secs(60),
            "the primary garbage-collected",
            || primary_gone(name),
        )
        .await
        .unwrap();
    }
    let services = ns.api::<Service>();
    for name in ["webgw", "webts"] {
        let apex = services
            .get_opt(name)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the apex Service {name} was removed"));
        assert_eq!(
            apex.spec.unwrap().selector.unwrap()["app"],
            name,
            "the apex Service selects the target's pods"
        );
        assert!(
            apex.metadata
                .owner_references
                .unwrap_or_default()
                .is_empty()
        );
    }
    let route = gw.get(&ns, "webgw").await.expect("the HTTPRoute stays");
    assert!(
        route["metadata"].get("ownerReferences").is_none(),
        "{route}"
    );
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "public");
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"],
        json!([{"group": "", "kind": "Service", "name": "webgw", "port": 9898, "weight": 1}])
    );
    assert!(
        ts.get(&ns, "webts").await.is_none(),
        "the TrafficSplit is removed: the mesh routes the apex Service directly"
    );
}
