//! Flagger as the oracle of the routers: Flagger v1.36.1 (built from its Go module) and fledge
//! each run the same Canaries, one per traffic provider both have, in a namespace of their own
//! on the local control plane; the routing objects each writes are compared field by field at
//! initialization and at the first canary weight (names, namespaces, owner references and the
//! API server's bookkeeping aside).
//!
//! Every difference must be one of [`KNOWN`], each with the reason fledge differs (the README's
//! differences table says the same); any other difference fails the test with the table of
//! what differs. Left out: Flagger's `gloo` and `appmesh`, whose CRDs come from Go modules the
//! module proxy here refuses, so neither controller can write their objects; and `traefik`, for
//! which Flagger v1.36.1 writes `traefik.containo.us/v1alpha1` TraefikServices, a group Traefik
//! v3 no longer serves (fledge writes `traefik.io/v1alpha1`, which the data plane's Traefik
//! reads, and its traefik router is tested there with real traffic).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fledge_api::Canary;
use fledge_e2e::dataplane::{GATEWAY_NAME, GATEWAY_NAMESPACE};
use fledge_e2e::flagger::{self, Flagger};
use fledge_e2e::{TestNs, deployment_json};
use fledge_routers::router_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";

/// Each provider, and the name of its target Deployment (and Canary).
const PROVIDERS: &[(&str, &str)] = &[
    ("kubernetes", "o-kube"),
    ("gatewayapi:v1", "o-gw"),
    ("istio", "o-istio"),
    ("linkerd", "o-linkerd"),
    ("osm", "o-osm"),
    ("smi:v1alpha1", "o-smi1"),
    ("contour", "o-contour"),
    ("nginx", "o-nginx"),
    ("skipper", "o-skipper"),
    ("kuma", "o-kuma"),
    ("apisix", "o-apisix"),
];

/// The differences fledge keeps, each with its reason (the README's differences table says
/// the same): the provider (`*`: every one), and a text the field's path contains.
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "*",
        ".labels.app.kubernetes.io/managed-by",
        "fledge labels the objects it writes",
    ),
    (
        "gatewayapi:v1",
        ".spec.rules[0].name",
        "fledge names its rule (split), so that its rule is found among the route's",
    ),
    (
        "istio",
        ".spec.gateways[0]",
        "Flagger writes Istio's default gateway (mesh) out; fledge leaves it to the default",
    ),
    (
        "istio",
        ".spec.http[0].name",
        "fledge names its route (split), so that its route is found among the service's",
    ),
    (
        "istio",
        ".destination.port.number",
        "fledge names the Service port, which Istio needs once a Service has several",
    ),
    (
        "linkerd",
        ".spec.backends[",
        "Flagger's linkerd router writes SMI v1alpha1 quantities (\"30\"); fledge writes \
         v1alpha2's integer weights (30): the same split",
    ),
    (
        "contour",
        ".spec.routes[0].services[1].weight",
        "Flagger leaves a weight of 0 out (Go's omitempty); fledge writes it: the same split",
    ),
    (
        "apisix",
        ".spec.http[0].websocket",
        "Flagger writes the default websocket: false out; fledge leaves it to the default",
    ),
    (
        "skipper",
        ".annotations.zalando.org/skipper-predicate",
        "at initialization Flagger writes Weight(100), fledge False() (as both do after every \
         rollout): the same traffic, all to the primary",
    ),
];

/// The Canary of `provider` for `target`, in `api_version`'s group.
fn canary(api_version: &str, provider: &str, target: &str) -> Value {
    let mut c = json!({
        "apiVersion": api_version, "kind": "Canary",
        "metadata": {"name": target},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "progressDeadlineSeconds": 600,
            "service": {"port": 9898, "targetPort": 9898},
            "analysis": {"interval": "20s", "threshold": 2, "stepWeight": 30, "maxWeight": 60},
        }
    });
    match provider {
        // Blue/green: no weights, only iterations.
        "kubernetes" => {
            c["spec"]["analysis"] = json!({"interval": "20s", "threshold": 2, "iterations": 3});
        }
        "gatewayapi:v1" => {
            c["spec"]["service"]["hosts"] = json!([format!("{target}.oracle.fledge.test")]);
            c["spec"]["service"]["gatewayRefs"] =
                json!([{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}]);
        }
        "nginx" | "skipper" => {
            c["spec"]["ingressRef"] =
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": target});
        }
        "apisix" => {
            c["spec"]["routeRef"] = json!({"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": target});
        }
        _ => {}
    }
    c
}

fn apisix_routes(ns: &TestNs) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "apisix.apache.org".into(),
        version: "v2".into(),
        api_version: "apisix.apache.org/v2".into(),
        kind: "ApisixRoute".into(),
        plural: "apisixroutes".into(),
    };
    Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
}

/// Kuma's TrafficRoute is cluster-scoped and named after the apex Service, so fledge's kuma
/// target has a name of its own (written back as Flagger's when compared).
const FLEDGE_KUMA: &str = "o-kuma-fledge";

/// The name of `target` on fledge's side (`ours`) or Flagger's.
fn named(target: &str, ours: bool) -> &str {
    if ours && target == "o-kuma" {
        FLEDGE_KUMA
    } else {
        target
    }
}

/// The targets, and the objects the Ingress and APISIX routers copy.
async fn workloads(ns: &TestNs, ours: bool) {
    for (provider, target) in PROVIDERS {
        let target = &named(target, ours);
        ns.create::<Deployment>(deployment_json(target, V1, 1))
            .await;
        match *provider {
            "nginx" | "skipper" => {
                let class = if *provider == "nginx" {
                    "nginx"
                } else {
                    "skipper"
                };
                let ing: Ingress = serde_json::from_value(json!({
                    "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": {"name": target,
                                 "annotations": {"kubernetes.io/ingress.class": class}},
                    "spec": {"rules": [{"host": format!("{target}.example.com"), "http": {"paths": [{
                        "path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": target, "port": {"number": 9898}}}
                    }]}}]}
                }))
                .unwrap();
                ns.api::<Ingress>()
                    .create(&PostParams::default(), &ing)
                    .await
                    .unwrap();
            }
            "apisix" => {
                let route: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
                    "metadata": {"name": target},
                    "spec": {"http": [{
                        "name": target,
                        "match": {"hosts": [format!("{target}.example.com")], "paths": ["/*"]},
                        "backends": [{"serviceName": target, "servicePort": 9898}]
                    }]}
                }))
                .unwrap();
                apisix_routes(ns)
                    .create(&PostParams::default(), &route)
                    .await
                    .unwrap();
            }
            _ => {}
        }
    }
}

/// `value` flattened to `path → scalar`, with the namespace written as `NS`.
fn flatten(prefix: &str, value: &Value, ns: &str, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(
                    &format!("{prefix}.{k}").replace(FLEDGE_KUMA, "o-kuma"),
                    v,
                    ns,
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, ns, out);
            }
        }
        other => {
            let text = other
                .to_string()
                .replace(ns, "NS")
                .replace(FLEDGE_KUMA, "o-kuma");
            out.insert(prefix.to_string(), text);
        }
    }
}

/// What routes a provider's traffic in `ns`: its Services' selectors and ports, and its routing
/// object's spec, labels and annotations.
async fn routing(ns: &TestNs, provider: &str, target: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let ours = ns.name.contains("fledge");
    let target = named(target, ours);
    for svc in [
        target.to_string(),
        format!("{target}-primary"),
        format!("{target}-canary"),
    ] {
        let s = ns.api::<Service>().get(&svc).await.unwrap();
        let spec = s.spec.unwrap_or_default();
        let v = json!({"selector": spec.selector, "ports": spec.ports});
        let shown = svc.replace(FLEDGE_KUMA, "o-kuma");
        flatten(&format!("Service {shown}"), &v, &ns.name, &mut out);
    }
    if provider == "kubernetes" {
        return out;
    }
    let c: Canary = serde_json::from_value(canary("fledge.dev/v1beta1", provider, target)).unwrap();
    let router = router_for(ns.client.clone(), &c).unwrap();
    let k = router.routing_kind();
    let resource = ApiResource {
        group: k.group.into(),
        version: k.version.into(),
        api_version: k.api_version(),
        kind: k.kind.into(),
        plural: k.plural.into(),
    };
    let api: Api<DynamicObject> = if k.namespaced {
        Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
    } else {
        Api::all_with(ns.client.clone(), &resource)
    };
    let name = router.routing_name(&c);
    let obj = api.get(&name).await.unwrap();
    let skip = |k: &str| {
        k.starts_with("kubectl.kubernetes.io/")
            || k.starts_with("fledge.dev/")
            || k.starts_with("flagger.app/")
            || k.starts_with("helm.toolkit.fluxcd.io/")
            || k.starts_with("kustomize.toolkit.fluxcd.io/")
    };
    let meta = |m: &Option<BTreeMap<String, String>>| -> BTreeMap<String, String> {
        m.clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !skip(k))
            .collect()
    };
    let v = json!({
        "labels": meta(&obj.metadata.labels),
        "annotations": meta(&obj.metadata.annotations),
        "spec": obj.data.get("spec").cloned().unwrap_or(Value::Null),
    });
    flatten(
        &format!("{} {}", k.kind, name.replace(FLEDGE_KUMA, "o-kuma")),
        &v,
        &ns.name,
        &mut out,
    );
    out
}

/// The paths where Flagger's and fledge's routing differ: (path, Flagger's, fledge's).
fn differences(
    flagger: &BTreeMap<String, String>,
    fledge: &BTreeMap<String, String>,
) -> Vec<(String, String, String)> {
    let mut paths: Vec<&String> = flagger.keys().chain(fledge.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| flagger.get(*p) != fledge.get(*p))
        .map(|p| {
            let shown = |m: &BTreeMap<String, String>| m.get(p).cloned().unwrap_or("-".into());
            (p.clone(), shown(flagger), shown(fledge))
        })
        .collect()
}

/// The status of `target`'s Canary in `ns`, as Flagger's or fledge's.
async fn status(ns: &TestNs, ours: bool, target: &str) -> Value {
    if ours {
        let c: Canary = ns.api().get(target).await.unwrap();
        serde_json::to_value(&c.status).unwrap()
    } else {
        let c = flagger::canaries(&ns.client, &ns.name)
            .get(target)
            .await
            .unwrap();
        c.data.get("status").cloned().unwrap_or(Value::Null)
    }
}

/// Each provider's routing in `ns`, read as soon as its Canary's status satisfies `at` (each
/// Canary is looked at in turn, every quarter second, so none is missed while it holds a step).
async fn routing_when(
    ns: &TestNs,
    ours: bool,
    what: &str,
    at: impl Fn(&str, &Value) -> bool,
) -> BTreeMap<&'static str, BTreeMap<String, String>> {
    let who = if ours { "fledge" } else { "Flagger" };
    let mut out = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while out.len() < PROVIDERS.len() {
        for (provider, target) in PROVIDERS {
            if out.contains_key(provider) {
                continue;
            }
            let s = status(ns, ours, named(target, ours)).await;
            if at(provider, &s) {
                out.insert(*provider, routing(ns, provider, target).await);
            } else {
                assert!(
                    Instant::now() < deadline,
                    "{who}'s {target} ({provider}) not {what} in 240 s: {s}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    out
}

/// The differences between both controllers' routing at one moment; those not known go to
/// `unknown` too.
fn compare(
    moment: &str,
    theirs: &BTreeMap<&str, BTreeMap<String, String>>,
    ours: &BTreeMap<&str, BTreeMap<String, String>>,
    table: &mut Vec<String>,
    unknown: &mut Vec<String>,
) {
    for (provider, _) in PROVIDERS {
        for (path, f, x) in differences(&theirs[provider], &ours[provider]) {
            let known = KNOWN
                .iter()
                .find(|(p, part, _)| (*p == "*" || p == provider) && path.contains(part));
            let why = known.map_or("NO REASON GIVEN", |(_, _, why)| why);
            let line = format!("| {provider} | {moment} | `{path}` | {f} | {x} | {why} |");
            table.push(line.clone());
            if known.is_none() {
                unknown.push(line);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fledge_writes_the_routing_objects_flagger_writes() {
    let flagger_ns = TestNs::new("oracle-flagger").await;
    let fledge_ns = TestNs::new("oracle-fledge").await;
    workloads(&flagger_ns, false).await;
    workloads(&fledge_ns, true).await;
    let _flagger = Flagger::start(&flagger_ns, &[]).await.unwrap();
    let flagger_api = flagger::canaries(&flagger_ns.client, &flagger_ns.name);
    for (provider, target) in PROVIDERS {
        let c = serde_json::from_value(canary("flagger.app/v1beta1", provider, target)).unwrap();
        flagger_api
            .create(&PostParams::default(), &c)
            .await
            .unwrap();
    }
    fledge_ns.start_controller(&[]);
    for (provider, target) in PROVIDERS {
        fledge_ns
            .create::<Canary>(canary("fledge.dev/v1beta1", provider, named(target, true)))
            .await;
    }
    let initialized = |_: &str, s: &Value| s["phase"] == "Initialized";
    let (theirs, ours) = futures::join!(
        routing_when(&flagger_ns, false, "Initialized", initialized),
        routing_when(&fledge_ns, true, "Initialized", initialized)
    );
    let mut table = Vec::new();
    let mut unknown = Vec::new();
    compare("initialized", &theirs, &ours, &mut table, &mut unknown);

    for (ns, ours) in [(&flagger_ns, false), (&fledge_ns, true)] {
        for (_, target) in PROVIDERS {
            ns.set_image(named(target, ours), V2).await;
        }
    }
    // The first step: weight 30, or the first iteration of blue/green.
    let first_step = |provider: &str, s: &Value| {
        s["phase"] == "Progressing"
            && if provider == "kubernetes" {
                s["iterations"] == 1
            } else {
                s["canaryWeight"] == 30
            }
    };
    let (theirs, ours) = futures::join!(
        routing_when(&flagger_ns, false, "at its first step", first_step),
        routing_when(&fledge_ns, true, "at its first step", first_step)
    );
    compare("first step", &theirs, &ours, &mut table, &mut unknown);

    // Kuma's TrafficRoutes are cluster-scoped: the namespaces' deletion leaves them.
    let routes = Api::<DynamicObject>::all_with(
        fledge_ns.client.clone(),
        &ApiResource {
            group: "kuma.io".into(),
            version: "v1alpha1".into(),
            api_version: "kuma.io/v1alpha1".into(),
            kind: "TrafficRoute".into(),
            plural: "trafficroutes".into(),
        },
    );
    for name in ["o-kuma", FLEDGE_KUMA] {
        let _ = routes.delete(name, &Default::default()).await;
    }
    eprintln!(
        "routing differences, Flagger v1.36.1 against fledge:\n| provider | when | field | Flagger | fledge | why |\n| --- | --- | --- | --- | --- | --- |\n{}",
        table.join("\n")
    );
    assert!(
        unknown.is_empty(),
        "differences from Flagger with no reason given:\n{}",
        unknown.join("\n")
    );
}
