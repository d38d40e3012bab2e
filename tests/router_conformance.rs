//! The conformance suite every router passes, on the local control plane with the upstream CRDs
//! (`cargo xtask cluster up` installs them): the [`Router`] trait's promises, checked against
//! the real API server for each provider of the registry.
//!
//! For each provider: initialization keeps the routes the status records; every weight up to
//! 100 and back to 0 reads back as written; A/B matching, mirroring and session affinity work
//! where the provider supports them and are refused clearly where it does not; a routing object
//! changed or deleted behind fledge's back is restored; finalization with revert leaves the apex
//! Service serving the target, no longer owned, and the route to it (if the provider needs one)
//! released; without revert, the routing object goes with the Canary (garbage collection of its
//! owner reference, or `Router::collect` for a cluster-scoped one, which is marked with
//! `OWNER_UID_LABEL` instead).
//!
//! Adding a router: one line in the `conformance!` list below (a test fails while a registered
//! router has none).

use std::time::Duration;

use fledge_api::validate::{INGRESS_PROVIDERS, validate_canary_spec};
use fledge_api::{Canary, CanaryStatus};
use fledge_core::Routes;
use fledge_e2e::{TestNs, eventually};
use fledge_routers::{Error, OWNER_UID_LABEL, RouteTarget, Router, router_for};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The selector label of the target's pods.
const SELECTOR: (&str, &str) = ("app", "podinfo");
/// The session affinity cookie the status records for the canary.
const COOKIE: &str = "fledge-affinity=conformance7f3a";

macro_rules! conformance {
    ($($test:ident => $provider:literal,)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                conform($provider).await;
            }
        )*

        /// The providers the suite runs.
        const COVERED: &[&str] = &[$($provider),*];
    };
}

conformance! {
    kubernetes => "kubernetes",
    apisix => "apisix",
    appmesh => "appmesh",
    appmesh_v1beta2 => "appmesh:v1beta2",
    contour => "contour",
    gatewayapi_v1 => "gatewayapi:v1",
    gatewayapi_v1beta1 => "gatewayapi:v1beta1",
    gloo => "gloo",
    istio => "istio",
    knative => "knative",
    kuma => "kuma",
    linkerd => "linkerd",
    nginx => "nginx",
    osm => "osm",
    skipper => "skipper",
    smi_v1alpha1 => "smi:v1alpha1",
    smi_v1alpha2 => "smi:v1alpha2",
    smi_v1alpha3 => "smi:v1alpha3",
    traefik => "traefik",
}

#[test]
fn every_registered_router_runs_the_suite() {
    let missing: Vec<&str> = fledge_routers::providers()
        .into_iter()
        .filter(|p| !COVERED.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "routers without a line in the conformance suite: {missing:?}"
    );
}

/// The Canary of the suite: A/B matches and session affinity in the spec, so that routes that
/// ask for them have something to route by.
fn canary_json(provider: &str) -> Value {
    let mut canary = json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "1m", "threshold": 2, "iterations": 3,
                "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
                "sessionAffinity": {"cookieName": "fledge-affinity", "maxAge": 60}
            }
        }
    });
    if INGRESS_PROVIDERS.contains(&provider) {
        canary["spec"]["ingressRef"] =
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"});
    }
    if provider == "appmesh" {
        canary["spec"]["service"]["meshName"] = json!("global");
    }
    if provider == "gloo" {
        canary["spec"]["upstreamRef"] =
            json!({"apiVersion": "gloo.solo.io/v1", "kind": "Upstream", "name": "tuned"});
    }
    if provider == "apisix" {
        canary["spec"]["routeRef"] =
            json!({"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"});
    }
    canary
}

fn gloo_upstreams(ns: &TestNs) -> Api<DynamicObject> {
    let kind = fledge_routers::gloo::UPSTREAM;
    let resource = ApiResource {
        group: kind.group.into(),
        version: kind.version.into(),
        api_version: kind.api_version(),
        kind: kind.kind.into(),
        plural: kind.plural.into(),
    };
    Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
}

/// The Upstream `tuned` whose settings the gloo router copies (`spec.upstreamRef`).
async fn gloo_config_upstream(ns: &TestNs) {
    let upstream: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gloo.solo.io/v1", "kind": "Upstream",
        "metadata": {"name": "tuned"},
        "spec": {
            "connectionConfig": {"maxRequestsPerConnection": 10},
            "circuitBreakers": {"maxConnections": 7},
            "useHttp2": true,
            "kube": {"serviceName": "elsewhere", "servicePort": 80}
        }
    }))
    .unwrap();
    gloo_upstreams(ns)
        .create(&PostParams::default(), &upstream)
        .await
        .expect("creating the config Upstream");
}

/// Both Upstreams exist, owned by the Canary, with `tuned`'s settings and each side's Service
/// and selector, as the API server (with the CRD from Flagger's types) stored them.
async fn gloo_upstreams_follow_the_config(ns: &TestNs, canary: &Canary) {
    let (primary, canary_upstream) = fledge_routers::gloo::upstream_names(canary);
    for (name, service, selected) in [
        (&primary, "podinfo-primary", "podinfo-primary"),
        (&canary_upstream, "podinfo-canary", "podinfo"),
    ] {
        let obj = serde_json::to_value(gloo_upstreams(ns).get(name).await.unwrap()).unwrap();
        assert_eq!(
            obj["spec"],
            json!({
                "connectionConfig": {"maxRequestsPerConnection": 10},
                "circuitBreakers": {"maxConnections": 7},
                "useHttp2": true,
                "kube": {"serviceName": service, "serviceNamespace": ns.name,
                         "servicePort": 9898, "selector": {"app": selected}}
            }),
            "gloo: Upstream {name}"
        );
        assert_eq!(
            obj["metadata"]["ownerReferences"][0]["uid"],
            json!(canary.metadata.uid),
            "gloo: Upstream {name} is the Canary's"
        );
    }
}

/// The user's ApisixRoute that the apisix router copies: `app.example.com/*` to the apex
/// Service.
async fn apex_apisix_route(ns: &TestNs) {
    let resource = ApiResource {
        group: "apisix.apache.org".into(),
        version: "v2".into(),
        api_version: "apisix.apache.org/v2".into(),
        kind: "ApisixRoute".into(),
        plural: "apisixroutes".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &resource);
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
        "metadata": {"name": "podinfo"},
        "spec": {"http": [{
            "name": "podinfo",
            "match": {"hosts": ["app.example.com"], "paths": ["/*"]},
            "backends": [{"serviceName": "podinfo", "servicePort": 9898}]
        }]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &route)
        .await
        .unwrap_or_else(|e| panic!("creating ApisixRoute podinfo: {e}"));
}

/// The user's Ingress that an Ingress router copies: `app.example.com` to the apex Service.
async fn apex_ingress(ns: &TestNs) {
    let api: Api<Ingress> = Api::namespaced(ns.client.clone(), &ns.name);
    let ing: Ingress = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "podinfo", "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}
        }]}}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &ing)
        .await
        .unwrap_or_else(|e| panic!("creating Ingress podinfo: {e}"));
}

/// The three Services the controller would create, owned by the Canary.
async fn services(ns: &TestNs, canary: &Canary) {
    let api: Api<Service> = Api::namespaced(ns.client.clone(), &ns.name);
    let owner = json!([{
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "name": "podinfo",
        "uid": canary.metadata.uid, "controller": true, "blockOwnerDeletion": true
    }]);
    for (name, selects) in [
        ("podinfo", "podinfo-primary"),
        ("podinfo-primary", "podinfo-primary"),
        ("podinfo-canary", "podinfo"),
    ] {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "ownerReferences": owner},
            "spec": {"selector": {"app": selects}, "ports": [{"name": "http", "port": 9898}]}
        }))
        .unwrap();
        api.create(&PostParams::default(), &svc)
            .await
            .unwrap_or_else(|e| panic!("creating Service {name}: {e}"));
    }
}

fn dynamic(ns: &TestNs, router: &dyn Router) -> Api<DynamicObject> {
    let k = router.routing_kind();
    let resource = ApiResource {
        group: k.group.into(),
        version: k.version.into(),
        api_version: k.api_version(),
        kind: k.kind.into(),
        plural: k.plural.into(),
    };
    if k.namespaced {
        Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
    } else {
        Api::all_with(ns.client.clone(), &resource)
    }
}

/// Whether the routing object is the Canary's: its owner reference, or for a cluster-scoped
/// object (which cannot name a namespaced owner) the owner label.
fn owned_by(obj: &Value, router: &dyn Router, canary: &Canary) -> bool {
    let uid = json!(canary.metadata.uid);
    if router.routing_kind().namespaced {
        obj.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
    } else {
        obj["metadata"]["labels"][OWNER_UID_LABEL] == uid
    }
}

/// The routing object's JSON, if it exists.
async fn routing_object(ns: &TestNs, router: &dyn Router, canary: &Canary) -> Option<Value> {
    dynamic(ns, router)
        .get_opt(&router.routing_name(canary))
        .await
        .unwrap_or_else(|e| panic!("{}: reading the routing object: {e}", router.provider()))
        .map(|o| serde_json::to_value(o).unwrap())
}

/// Whether a refusal names the provider and says what it cannot do.
fn clear_refusal(e: &Error, provider: &str) -> bool {
    matches!(e, Error::Router { provider: p, message } if p == provider && message.len() > 20)
}

async fn read(router: &dyn Router, t: &RouteTarget<'_>) -> Option<Routes> {
    router
        .get_routes(t)
        .await
        .unwrap_or_else(|e| panic!("{}: get_routes: {e}", router.provider()))
}

/// Sets `routes` and checks they read back as written.
async fn round_trip(router: &dyn Router, t: &RouteTarget<'_>, routes: Routes) {
    let provider = router.provider();
    router
        .set_routes(t, routes)
        .await
        .unwrap_or_else(|e| panic!("{provider}: set_routes {routes:?}: {e}"));
    assert_eq!(read(router, t).await, Some(routes), "{provider}: read back");
}

/// Either the router does `routes` and reads them back, or it refuses them clearly; which one
/// is the router's declared capability (`Router::capabilities`, which a unit test ties to what
/// `fledge validate` accepts).
async fn capability(router: &dyn Router, t: &RouteTarget<'_>, routes: Routes, supported: bool) {
    let provider = router.provider();
    if supported {
        round_trip(router, t, routes).await;
    } else {
        let r = router.set_routes(t, routes).await;
        assert!(
            r.as_ref().is_err_and(|e| clear_refusal(e, provider)),
            "{provider} has no such capability and must refuse {routes:?} clearly: {r:?}"
        );
    }
}

/// A/B matching and mirroring: done and read back, or refused clearly, as the router declares.
async fn match_and_mirror(router: &dyn Router, t: &RouteTarget<'_>) {
    let caps = router.capabilities();
    let ab = Routes {
        ab_match: true,
        ..Routes::PRIMARY
    };
    capability(router, t, ab, caps.http_match).await;
    let mirrored = Routes {
        mirror: Some(100),
        ..Routes::PRIMARY
    };
    capability(router, t, mirrored, caps.mirroring).await;
}

async fn conform(provider: &str) {
    if provider == "knative" {
        return conform_knative().await;
    }
    let ns = TestNs::new(&format!("conf-{}", provider.replace([':', '.'], "-"))).await;
    let api: Api<Canary> = Api::namespaced(ns.client.clone(), &ns.name);
    let canary: Canary = serde_json::from_value(canary_json(provider)).unwrap();
    let canary = api
        .create(&PostParams::default(), &canary)
        .await
        .unwrap_or_else(|e| panic!("{provider}: creating the Canary: {e}"));
    services(&ns, &canary).await;
    if INGRESS_PROVIDERS.contains(&provider) {
        apex_ingress(&ns).await;
    }
    if provider == "apisix" {
        apex_apisix_route(&ns).await;
    }
    if provider == "gloo" {
        gloo_config_upstream(&ns).await;
    }
    let router = router_for(ns.client.clone(), &canary).unwrap();
    let router = router.as_ref();
    assert_eq!(router.provider(), provider);
    // A cluster-scoped routing object outlives the namespace: one a failed earlier run left
    // would belong to that run's Canary.
    if !router.routing_kind().namespaced {
        dynamic(&ns, router)
            .delete(&router.routing_name(&canary), &DeleteParams::default())
            .await
            .map(|_| ())
            .or_else(|e| match e {
                kube::Error::Api(s) if s.code == 404 => Ok(()),
                e => Err(e),
            })
            .unwrap_or_else(|e| panic!("{provider}: deleting a leftover routing object: {e}"));
    }
    let caps = router.capabilities();
    let blue_green_only = !caps.partial_weights;
    // The apex Service itself carries the routes (the `kubernetes` provider): it is the
    // controller's object, not the router's.
    let apex_is_the_route = router.routing_kind().kind == "Service";

    // Initialization: the objects appear with the routes of a fresh status (all to the primary).
    let fresh = CanaryStatus::default();
    let t = RouteTarget {
        canary: &canary,
        selector: SELECTOR,
        status: &fresh,
    };
    router
        .ensure(&t)
        .await
        .unwrap_or_else(|e| panic!("{provider}: ensure: {e}"));
    assert_eq!(read(router, &t).await, Some(Routes::PRIMARY), "{provider}");
    let obj = routing_object(&ns, router, &canary)
        .await
        .expect("routing object");
    if !apex_is_the_route {
        assert!(
            owned_by(&obj, router, &canary),
            "{provider}: the routing object is owned by the Canary: {obj}"
        );
    }
    if provider == "gloo" {
        gloo_upstreams_follow_the_config(&ns, &canary).await;
    }
    // A second ensure changes nothing. (The object itself, not its bookkeeping: the API server
    // rewrites the field managers of a custom resource on the first apply after its creation,
    // which bumps the resourceVersion once.)
    let content = |mut o: Value| {
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        o
    };
    router.ensure(&t).await.unwrap();
    let again = routing_object(&ns, router, &canary).await.unwrap();
    assert_eq!(
        content(again),
        content(obj),
        "{provider}: ensure is idempotent"
    );

    // Every weight up and back to 0.
    let weights: Vec<i32> = if blue_green_only {
        vec![100, 0]
    } else {
        (1..=10).map(|i| i * 10).chain([50, 0]).collect()
    };
    for w in weights {
        round_trip(router, &t, Routes::weighted(w)).await;
    }
    if blue_green_only {
        capability(router, &t, Routes::weighted(30), false).await;
    }

    // A/B matching, mirroring.
    match_and_mirror(router, &t).await;
    round_trip(router, &t, Routes::PRIMARY).await;

    // Session affinity: the status's cookie routes to the canary, or the spec is refused.
    let affine = CanaryStatus {
        session_affinity_cookie: Some(COOKIE.into()),
        ..CanaryStatus::default()
    };
    let ta = RouteTarget {
        status: &affine,
        ..t.clone()
    };
    if caps.session_affinity {
        round_trip(router, &ta, Routes::weighted(50)).await;
        let text = routing_object(&ns, router, &canary)
            .await
            .unwrap()
            .to_string();
        assert!(
            text.contains("fledge-affinity"),
            "{provider}: the affinity cookie is in the routing object: {text}"
        );
        round_trip(router, &t, Routes::PRIMARY).await;
    } else {
        let problems = validate_canary_spec(&canary.spec);
        assert!(
            problems
                .iter()
                .any(|p| p.field.contains("sessionAffinity") && p.message.contains(provider)),
            "{provider} has no session affinity and its spec must be refused clearly: {problems:?}"
        );
    }

    // Drift: the routing object changed or deleted behind fledge's back is read as such, and
    // ensure plus the status's routes restore it.
    let status_at_40 = CanaryStatus {
        canary_weight: 40,
        ..CanaryStatus::default()
    };
    let t40 = RouteTarget {
        status: &status_at_40,
        ..t.clone()
    };
    let want = if blue_green_only {
        Routes::PRIMARY
    } else {
        Routes::weighted(40)
    };
    round_trip(router, &t40, want).await;
    if apex_is_the_route {
        // Someone points the apex Service at the canary.
        let svc: Api<Service> = Api::namespaced(ns.client.clone(), &ns.name);
        svc.patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"app": "podinfo"}}})),
        )
        .await
        .unwrap();
        assert_eq!(read(router, &t).await, Some(Routes::weighted(100)));
    } else {
        dynamic(&ns, router)
            .delete(&router.routing_name(&canary), &DeleteParams::default())
            .await
            .unwrap();
        eventually(
            Duration::from_secs(30),
            "routing object deleted",
            || async { routing_object(&ns, router, &canary).await.is_none() },
        )
        .await
        .unwrap();
        assert_eq!(
            read(router, &t40).await,
            None,
            "{provider}: a deleted object"
        );
        router.ensure(&t40).await.unwrap();
    }
    router.set_routes(&t40, want).await.unwrap();
    assert_eq!(read(router, &t40).await, Some(want), "{provider}: restored");

    // Finalization with revert: the apex Service serves the target's own pods and, like the
    // route that reaches it, is no longer owned by the Canary.
    router
        .finalize(&t)
        .await
        .unwrap_or_else(|e| panic!("{provider}: finalize: {e}"));
    let svc: Api<Service> = Api::namespaced(ns.client.clone(), &ns.name);
    let apex = svc.get("podinfo").await.unwrap();
    assert_eq!(
        apex.spec.as_ref().and_then(|s| s.selector.clone()),
        Some([("app".to_string(), "podinfo".to_string())].into()),
        "{provider}: the apex Service selects the target"
    );
    assert!(
        apex.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "{provider}: the apex Service is released"
    );
    // A provider whose apex Service alone serves once released (SMI, the Ingress routers)
    // deletes its object.
    if let Some(obj) = routing_object(&ns, router, &canary).await
        && !apex_is_the_route
    {
        assert!(
            !owned_by(&obj, router, &canary),
            "{provider}: the routing object is released: {obj}"
        );
    }

    // Without revert: the routing object goes with the Canary (what the controller does when it
    // removes its finalizer: `collect`, then garbage collection).
    if !apex_is_the_route {
        router.ensure(&t).await.unwrap();
        router
            .collect(&t)
            .await
            .unwrap_or_else(|e| panic!("{provider}: collect: {e}"));
        api.delete("podinfo", &DeleteParams::background())
            .await
            .unwrap();
        eventually(
            Duration::from_secs(60),
            &format!("{provider}: the routing object to be collected with its Canary"),
            || async { routing_object(&ns, router, &canary).await.is_none() },
        )
        .await
        .unwrap();
    }
}

/// The suite for `knative`, whose routing object is the user's Knative Service (the test plays
/// Knative's controller, [`fledge_e2e::knative`]): the router owns nothing, generates no
/// Service, and changes only the Service's traffic block and the annotation naming the promoted
/// Revision.
async fn conform_knative() {
    let provider = "knative";
    let ns = TestNs::new("conf-knative").await;
    let mut svc = fledge_e2e::knative::KnativeService::create(
        &ns,
        "podinfo",
        "ghcr.io/stefanprodan/podinfo:6.0.0",
    )
    .await;
    let mut spec = canary_json(provider);
    spec["spec"]["targetRef"] =
        json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"});
    spec["spec"].as_object_mut().unwrap().remove("service");
    let api: Api<Canary> = Api::namespaced(ns.client.clone(), &ns.name);
    let canary = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(spec).unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("{provider}: creating the Canary: {e}"));
    let router = router_for(ns.client.clone(), &canary).unwrap();
    let router = router.as_ref();
    assert_eq!(router.provider(), provider);
    let caps = router.capabilities();
    let fresh = CanaryStatus::default();
    let t = RouteTarget {
        canary: &canary,
        selector: ("", ""),
        status: &fresh,
    };

    // Initialization: the latest Revision named the primary, all traffic to it; the Service is
    // not taken over (no owner reference), and a second ensure changes nothing.
    router
        .ensure(&t)
        .await
        .unwrap_or_else(|e| panic!("{provider}: ensure: {e}"));
    assert_eq!(read(router, &t).await, Some(Routes::PRIMARY));
    let first = svc.revision_name(1);
    assert_eq!(svc.primary().await.as_deref(), Some(first.as_str()));
    let obj = routing_object(&ns, router, &canary).await.unwrap();
    assert!(
        !owned_by(&obj, router, &canary),
        "{provider}: the Service stays the user's"
    );
    let content = |mut o: Value| {
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
            m.remove("generation");
        }
        o
    };
    router.ensure(&t).await.unwrap();
    let again = routing_object(&ns, router, &canary).await.unwrap();
    assert_eq!(
        content(again),
        content(obj),
        "{provider}: ensure is idempotent"
    );

    // Every weight up and back to 0, with a new Revision as the canary.
    svc.new_revision("ghcr.io/stefanprodan/podinfo:6.0.1", true)
        .await;
    for w in (1..=10).map(|i| i * 10).chain([50, 0]) {
        round_trip(router, &t, Routes::weighted(w)).await;
        let traffic = svc.traffic().await;
        assert_eq!(
            traffic,
            vec![
                (true, String::new(), i64::from(w)),
                (false, first.clone(), i64::from(100 - w)),
            ],
            "{provider}: spec.traffic at {w}%"
        );
    }

    // No A/B matching, no mirroring, no session affinity.
    match_and_mirror(router, &t).await;
    assert!(!caps.session_affinity && !caps.http_match && !caps.mirroring);
    let problems = validate_canary_spec(&canary.spec);
    assert!(
        problems
            .iter()
            .any(|p| p.field.contains("sessionAffinity") && p.message.contains(provider)),
        "{provider} has no session affinity and its spec must be refused clearly: {problems:?}"
    );

    // Drift: someone sends everything to the latest Revision; read as such, and restored.
    let services = fledge_e2e::knative::services(&ns.client, &ns.name);
    services
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"traffic": [{"latestRevision": true, "percent": 100}]}})),
        )
        .await
        .unwrap();
    assert_eq!(read(router, &t).await, Some(Routes::weighted(100)));
    round_trip(router, &t, Routes::weighted(40)).await;

    // Finalization with revert: the traffic block and the annotation are gone, so the Service
    // routes as without fledge (everything to its latest Revision).
    router
        .finalize(&t)
        .await
        .unwrap_or_else(|e| panic!("{provider}: finalize: {e}"));
    assert_eq!(svc.traffic().await, vec![]);
    assert_eq!(svc.primary().await, None);
    assert_eq!(read(router, &t).await, Some(Routes::weighted(100)));

    // The Service deleted: nothing to read, and ensure says clearly that it is missing (fledge
    // does not make the user's Service).
    services
        .delete("podinfo", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "Knative Service deleted",
        || async { routing_object(&ns, router, &canary).await.is_none() },
    )
    .await
    .unwrap();
    assert_eq!(read(router, &t).await, None);
    let e = router.ensure(&t).await.unwrap_err();
    assert!(
        clear_refusal(&e, provider) && e.to_string().contains("not found"),
        "{provider}: {e}"
    );
}
