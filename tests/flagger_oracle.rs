//! Flagger as the oracle of the routers: Flagger v1.36.1 (built from its Go module) and fledge
//! each run the same Canaries, one per traffic provider both have (and an A/B Canary for each
//! provider both route by header), in a namespace of their own
//! on the local control plane; the routing objects each writes are compared field by field at
//! initialization, at each step of a rollout (each weight, each iteration of blue/green and of
//! A/B testing with a header match), after its promotion, and after the rollback of the next
//! revision, whose rollout webhook fails (names, namespaces, owner references and the API
//! server's bookkeeping aside).
//!
//! Every difference must be one of [`KNOWN`], each with the reason fledge differs (the README's
//! differences table says the same); any other difference fails the test with the table of
//! what differs. The Gloo and App Mesh objects are checked against CRDs generated from Flagger's
//! own API types (their upstream modules are refused by the module proxy here). For `traefik`,
//! Flagger v1.36.1 writes `traefik.containo.us/v1alpha1` TraefikServices, a group Traefik v3 no
//! longer serves, and fledge `traefik.io/v1alpha1` (which the data plane's Traefik reads): the two
//! are compared across groups, Traefik v2's CRD of the old group installed for Flagger.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fledge_api::Canary;
use fledge_e2e::dataplane::{GATEWAY_NAME, GATEWAY_NAMESPACE};
use fledge_e2e::flagger::{self, Flagger};
use fledge_e2e::{TestNs, deployment_json};
use fledge_routers::{PeerKind, ServiceNames, router_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const V3: &str = "ghcr.io/stefanprodan/podinfo:6.0.2";

/// Each provider, and the name of its target Deployment (and Canary). The targets ending in
/// `-ab` are rolled out by A/B testing, on the providers of both controllers that route by
/// header.
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
    ("gloo", "o-gloo"),
    ("traefik", "o-traefik"),
    ("appmesh", "o-mesh1"),
    ("appmesh:v1beta2", "o-mesh2"),
    ("gatewayapi:v1", "o-gw-ab"),
    ("istio", "o-istio-ab"),
    ("contour", "o-contour-ab"),
    ("nginx", "o-nginx-ab"),
    ("gloo", "o-gloo-ab"),
    ("appmesh", "o-mesh1-ab"),
    ("appmesh:v1beta2", "o-mesh2-ab"),
];

/// Whether `target` is rolled out by A/B testing.
fn is_ab(target: &str) -> bool {
    target.ends_with("-ab")
}

/// Whether `target`'s rollout counts iterations (blue/green, A/B) rather than weights.
fn by_iterations(provider: &str, target: &str) -> bool {
    provider == "kubernetes" || is_ab(target)
}

/// The `n`th step of a rollout in a Canary's status: its `n`th weight (30, 60) or iteration.
fn at_step(n: u64, provider: &str, target: &str, s: &Value) -> bool {
    s["phase"] == "Progressing"
        && if by_iterations(provider, target) {
            s["iterations"] == n
        } else {
            s["canaryWeight"] == 30 * n
        }
}

/// The differences fledge keeps, each with its reason (the README's differences table says
/// the same): the provider (`*`: every one; a provider also stands for its A/B Canary), a text
/// the field's path contains, and when given, Flagger's and fledge's values (`-`: none).
type Known = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    &'static str,
);

const KNOWN: &[Known] = &[
    (
        "*",
        ".labels.app.kubernetes.io/managed-by",
        None,
        "fledge labels the objects it writes",
    ),
    (
        "gatewayapi:v1",
        "].name",
        Some(("-", "\"split\"")),
        "fledge names its rule (split), so that its rule is found among the route's",
    ),
    (
        "gatewayapi:v1",
        "].name",
        Some(("-", "\"ab-testing\"")),
        "fledge names its A/B rule (ab-testing), so that it is found among the route's",
    ),
    (
        "istio",
        ".spec.gateways[0]",
        None,
        "Flagger writes Istio's default gateway (mesh) out; fledge leaves it to the default",
    ),
    (
        "istio",
        "].name",
        Some(("-", "\"split\"")),
        "fledge names its route (split), so that its route is found among the service's",
    ),
    (
        "istio",
        "].name",
        Some(("-", "\"ab-testing\"")),
        "fledge names its A/B route (ab-testing), so that it is found among the service's",
    ),
    (
        "istio",
        ".destination.port.number",
        None,
        "fledge names the Service port, which Istio needs once a Service has several",
    ),
    (
        "linkerd",
        ".spec.backends[",
        None,
        "Flagger's linkerd router writes SMI v1alpha1 quantities (\"30\"); fledge writes \
         v1alpha2's integer weights (30): the same split",
    ),
    (
        "contour",
        ".weight",
        Some(("-", "0")),
        "Flagger leaves a weight of 0 out (Go's omitempty); fledge writes it: the same split",
    ),
    (
        "apisix",
        ".spec.http[0].websocket",
        None,
        "Flagger writes the default websocket: false out; fledge leaves it to the default",
    ),
    (
        "skipper",
        ".annotations.zalando.org/skipper-predicate",
        None,
        "at initialization Flagger writes Weight(100), fledge False() (as both do after every \
         rollout): the same traffic, all to the primary",
    ),
    (
        "*",
        " (weight 0)",
        None,
        "a backend of weight 0 receives nothing: during A/B testing Flagger's A/B rule lists the \
         primary at 0 and its other rule the primary alone, fledge's A/B rule the canary alone \
         and its split rule both, the canary at 0 (the same shape as in every rollout)",
    ),
    (
        "*",
        " (sends where the next rule does)",
        None,
        "once an A/B rollout is over Flagger keeps its A/B rule, sending matching requests to \
         the primary as the next rule sends every other; fledge removes it: the same traffic",
    ),
    (
        "traefik",
        ".spec.weighted.services[",
        Some(("\"NS\"", "-")),
        "Flagger names the TraefikService's own namespace on each weighted service; fledge leaves \
         it to that default: the same services",
    ),
    (
        "gloo",
        "].matchers[",
        None,
        "outside A/B testing (at initialization, after promotion and rollback) Flagger keeps the \
         match on the table's only route, so requests without the header find no route in the \
         table; fledge's route then has no matchers",
    ),
    (
        "gloo",
        ".spec.routes[1].",
        None,
        "during A/B testing fledge adds, after the matched route, the weighted route that \
         requests without the header take (all to the primary); Flagger has none, so they find \
         no route in the table",
    ),
    (
        "istio",
        " (alone, weight 0)",
        None,
        "during A/B testing Flagger writes the primary alone in its other route at weight 0, \
         which Istio takes as everything; fledge writes 100: the same traffic",
    ),
];

/// The Canary of `provider` for `target`, in `api_version`'s group, with a rollout webhook to
/// `hook`.
fn canary(api_version: &str, provider: &str, target: &str, hook: &str) -> Value {
    let mut c = json!({
        "apiVersion": api_version, "kind": "Canary",
        "metadata": {"name": target},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "progressDeadlineSeconds": 600,
            "service": {"port": 9898, "targetPort": 9898},
            "analysis": {"interval": "10s", "threshold": 2, "stepWeight": 30, "maxWeight": 60},
        }
    });
    if by_iterations(provider, target) {
        // Blue/green or A/B: no weights, only iterations.
        c["spec"]["analysis"] = json!({"interval": "10s", "threshold": 2, "iterations": 3});
    }
    if is_ab(target) {
        c["spec"]["analysis"]["match"] = json!([{"headers": {"x-canary": {"exact": "insider"}}}]);
        // Flagger v1.36.1's A/B rule on the Gateway API has an empty request timeout when the
        // Canary gives none, which the Gateway API's CRDs refuse. (App Mesh v1beta1 routes have
        // no timeout: fledge refuses one there.)
        if provider != "appmesh" {
            c["spec"]["service"]["timeout"] = json!("30s");
        }
    }
    c["spec"]["analysis"]["webhooks"] =
        json!([{"name": "rollout-check", "type": "rollout", "url": hook}]);
    match provider {
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
        "appmesh" | "appmesh:v1beta2" => {
            c["spec"]["service"]["meshName"] = json!("global");
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
    let mut c: Canary =
        serde_json::from_value(canary("fledge.dev/v1beta1", provider, target, "http://h")).unwrap();
    c.metadata.namespace = Some(ns.name.clone());
    let router = router_for(ns.client.clone(), &c).unwrap();
    let mut k = router.routing_kind();
    if provider == "traefik" && !ours {
        // Flagger v1.36.1 writes Traefik v2's group (Traefik v3 serves `traefik.io` only).
        k.group = "traefik.containo.us";
    }
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
    let mut spec = obj.data.get("spec").cloned().unwrap_or(Value::Null);
    let shown = format!(
        "{} {}",
        k.kind,
        name.replace(FLEDGE_KUMA, "o-kuma").replace(&ns.name, "NS")
    );
    if is_ab(target) {
        for (path, what) in same_traffic(k.kind, &mut spec) {
            out.insert(format!("{shown}{path}"), what);
        }
    }
    // The provider's other objects (Gloo's Upstreams, App Mesh's nodes, routers and services).
    for (kind, name) in other_objects(provider, &c) {
        let api = Api::<DynamicObject>::namespaced_with(
            ns.client.clone(),
            &ns.name,
            &ApiResource {
                group: kind.group.into(),
                version: kind.version.into(),
                api_version: kind.api_version(),
                kind: kind.kind.into(),
                plural: kind.plural.into(),
            },
        );
        let o = api.get(&name).await.unwrap();
        let v = json!({
            "labels": meta(&o.metadata.labels),
            "annotations": meta(&o.metadata.annotations),
            "spec": o.data.get("spec"),
        });
        let shown = format!("{} {}", kind.kind, name.replace(&ns.name, "NS"));
        flatten(&shown, &v, &ns.name, &mut out);
    }
    let v = json!({
        "labels": meta(&obj.metadata.labels),
        "annotations": meta(&obj.metadata.annotations),
        "spec": spec,
    });
    flatten(&shown, &v, &ns.name, &mut out);
    out
}

/// The objects of `provider` besides its routing object, compared too.
fn other_objects(provider: &str, c: &Canary) -> Vec<(PeerKind, String)> {
    use fledge_routers::{appmesh, gloo};
    let names = ServiceNames::of(c);
    let ns = c.metadata.namespace.as_deref().unwrap_or_default();
    match provider {
        "gloo" => {
            let (primary, canary) = gloo::upstream_names(c);
            vec![(gloo::UPSTREAM, primary), (gloo::UPSTREAM, canary)]
        }
        "appmesh:v1beta2" => vec![
            (appmesh::VIRTUAL_NODE, names.primary.clone()),
            (appmesh::VIRTUAL_NODE, names.canary.clone()),
            (appmesh::VIRTUAL_ROUTER, names.canary.clone()),
            (appmesh::VIRTUAL_SERVICE, names.apex.clone()),
            (appmesh::VIRTUAL_SERVICE, names.canary.clone()),
        ],
        "appmesh" => vec![
            (appmesh::LEGACY_VIRTUAL_NODE, names.apex.clone()),
            (appmesh::LEGACY_VIRTUAL_NODE, names.primary.clone()),
            (appmesh::LEGACY_VIRTUAL_NODE, names.canary.clone()),
            (
                appmesh::LEGACY_VIRTUAL_SERVICE,
                format!("{}.{ns}", names.canary),
            ),
        ],
        _ => Vec::new(),
    }
}

/// An A/B route's rules written as the traffic they give, so that both controllers' shapes of
/// the same traffic compare equal: a backend of weight 0 (which receives nothing) left out, an
/// Istio destination alone in its route given weight 100 (Istio sends it everything whatever
/// its weight), and a rule sending its requests where the next rule sends every other request
/// left out (Flagger keeps the A/B rule once a rollout is over). What it changed, by path, each
/// shown as a difference of its own.
fn same_traffic(kind: &str, spec: &mut Value) -> Vec<(String, String)> {
    let (rules_key, backends_key) = match kind {
        "HTTPRoute" => ("rules", "backendRefs"),
        "VirtualService" => ("http", "route"),
        _ => return Vec::new(),
    };
    let mut changed = Vec::new();
    let Some(rules) = spec.get_mut(rules_key).and_then(Value::as_array_mut) else {
        return changed;
    };
    for (i, rule) in rules.iter_mut().enumerate() {
        let Some(backends) = rule.get_mut(backends_key).and_then(Value::as_array_mut) else {
            continue;
        };
        let at = |j: usize| format!(".spec.{rules_key}[{i}].{backends_key}[{j}]");
        if kind == "VirtualService" && backends.len() == 1 {
            if backends[0]["weight"] != 100 {
                changed.push((
                    format!("{} (alone, weight {})", at(0), backends[0]["weight"]),
                    "taken as 100".to_string(),
                ));
                backends[0]["weight"] = json!(100);
            }
            continue;
        }
        let mut j = 0;
        backends.retain(|b| {
            let zero = b["weight"] == 0;
            if zero {
                changed.push((format!("{} (weight 0)", at(j)), "left out".to_string()));
            }
            j += 1;
            !zero
        });
    }
    let mut i = 0;
    while i + 1 < rules.len() {
        if rules[i][backends_key] == rules[i + 1][backends_key] {
            changed.push((
                format!(".spec.{rules_key}[{i}] (sends where the next rule does)"),
                "left out".to_string(),
            ));
            rules.remove(i);
        } else {
            i += 1;
        }
    }
    changed
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

/// A moment of a rollout, by the Canary's provider, target and status.
type Moment<'a> = (&'a str, &'a (dyn Fn(&str, &str, &Value) -> bool + Sync));

/// Each target's routing in `ns` at each of `moments` in turn (one map per moment), read as
/// soon as its Canary's status reaches it. Each Canary is looked at in turn every quarter
/// second, so none is missed while it holds a step; a Canary seen at a later moment before an
/// earlier one fails the test.
async fn routing_at(
    ns: &TestNs,
    ours: bool,
    moments: &[Moment<'_>],
) -> Vec<BTreeMap<&'static str, BTreeMap<String, String>>> {
    let who = if ours { "fledge" } else { "Flagger" };
    let mut out = vec![BTreeMap::new(); moments.len()];
    let mut next: BTreeMap<&str, usize> = PROVIDERS.iter().map(|(_, t)| (*t, 0)).collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    while next.values().any(|n| *n < moments.len()) {
        for (provider, target) in PROVIDERS {
            let n = next[target];
            if n == moments.len() {
                continue;
            }
            let s = status(ns, ours, named(target, ours)).await;
            let (what, at) = moments[n];
            if at(provider, target, &s) {
                out[n].insert(*target, routing(ns, provider, target).await);
                next.insert(target, n + 1);
                continue;
            }
            if let Some((later, _)) = moments[n + 1..]
                .iter()
                .find(|(_, m)| m(provider, target, &s))
            {
                panic!("{who}'s {target} ({provider}) is {later} but was not seen {what}: {s}");
            }
            assert!(
                Instant::now() < deadline,
                "{who}'s {target} ({provider}) not {what} in 300 s: {s}"
            );
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
    for (provider, target) in PROVIDERS {
        let provider = &if is_ab(target) {
            format!("{provider} (A/B)")
        } else {
            provider.to_string()
        };
        for (path, f, x) in differences(&theirs[target], &ours[target]) {
            let known = KNOWN.iter().find(|(p, part, values, _)| {
                (*p == "*" || provider.starts_with(p))
                    && path.contains(part)
                    && values.is_none_or(|(theirs, ours)| f == theirs && x == ours)
            });
            let why = known.map_or("NO REASON GIVEN", |(_, _, _, why)| why);
            let line = format!("| {provider} | {moment} | `{path}` | {f} | {x} | {why} |");
            table.push(line.clone());
            if known.is_none() {
                unknown.push(line);
            }
        }
    }
}

/// Kuma's TrafficRoutes are cluster-scoped: the namespaces' deletion leaves them, so the test
/// deletes them when it ends, and at its start those a failed run left.
async fn delete_kuma_routes(ns: &TestNs) {
    let routes = Api::<DynamicObject>::all_with(
        ns.client.clone(),
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
}

#[tokio::test(flavor = "multi_thread")]
async fn fledge_writes_the_routing_objects_flagger_writes() {
    let flagger_ns = TestNs::new("oracle-flagger").await;
    let fledge_ns = TestNs::new("oracle-fledge").await;
    delete_kuma_routes(&fledge_ns).await;
    // Every rollout calls it; it fails the third revision's.
    let hook = fledge_e2e::Hook::start(200).await.unwrap();
    let hook_url = hook.url("/rollout");
    workloads(&flagger_ns, false).await;
    workloads(&fledge_ns, true).await;
    let _flagger = Flagger::start(&flagger_ns, &[]).await.unwrap();
    let flagger_api = flagger::canaries(&flagger_ns.client, &flagger_ns.name);
    for (provider, target) in PROVIDERS {
        let c = canary("flagger.app/v1beta1", provider, target, &hook_url);
        flagger_api
            .create(&PostParams::default(), &serde_json::from_value(c).unwrap())
            .await
            .unwrap();
    }
    fledge_ns.start_controller(&[]);
    for (provider, target) in PROVIDERS {
        fledge_ns
            .create::<Canary>(canary(
                "fledge.dev/v1beta1",
                provider,
                named(target, true),
                &hook_url,
            ))
            .await;
    }
    let both = async |moments: &[Moment<'_>]| {
        let (theirs, ours) = futures::join!(
            routing_at(&flagger_ns, false, moments),
            routing_at(&fledge_ns, true, moments)
        );
        let mut table = Vec::new();
        let mut unknown = Vec::new();
        for (i, (moment, _)) in moments.iter().enumerate() {
            compare(moment, &theirs[i], &ours[i], &mut table, &mut unknown);
        }
        (table, unknown)
    };
    let set_images = async |image: &str| {
        for (ns, ours) in [(&flagger_ns, false), (&fledge_ns, true)] {
            for (_, target) in PROVIDERS {
                ns.set_image(named(target, ours), image).await;
            }
        }
    };
    let (mut table, mut unknown) =
        both(&[("initialized", &|_, _, s| s["phase"] == "Initialized")]).await;

    // Each step (weight 30 then 60, or iteration 1 then 2 of 3), then the promotion.
    set_images(V2).await;
    let (t, u) = both(&[
        ("at step 1", &|p, t, s| at_step(1, p, t, s)),
        ("at step 2", &|p, t, s| at_step(2, p, t, s)),
        ("promoted", &|_, _, s| s["phase"] == "Succeeded"),
    ])
    .await;
    table.extend(t);
    unknown.extend(u);

    // The next revision's rollout webhook fails twice: rolled back.
    hook.set_status(500);
    set_images(V3).await;
    let (t, u) = both(&[("rolled back", &|_, _, s| s["phase"] == "Failed")]).await;
    table.extend(t);
    unknown.extend(u);

    delete_kuma_routes(&fledge_ns).await;
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
