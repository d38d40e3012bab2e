//! Adapter tests of the `traefik` router: the exact TraefikService it writes for every strategy,
//! and the routes read back from it.

use fledge_api::Canary;
use fledge_core::Routes;
use fledge_routers::Error;
use fledge_routers::ServiceNames;
use fledge_routers::traefik::{
    self, TraefikServiceSpec, build_released_traefik_service, build_traefik_service,
};
use serde_json::{Value, json};

/// A Canary `test/podinfo` (uid `uid-1`) on the traefik provider, with `spec` merged over a
/// canary analysis of stepWeight 20 up to 60 on port 9898.
fn canary(spec: Value) -> Canary {
    let mut base = json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "uid-1"},
        "spec": {
            "provider": "traefik",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "1m", "stepWeight": 20, "maxWeight": 60}
        }
    });
    merge(&mut base["spec"], spec);
    serde_json::from_value(base).expect("a Canary")
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

fn meta() -> Value {
    json!({"name": "podinfo", "namespace": "test",
        "labels": {"app.kubernetes.io/managed-by": "fledge"},
        "ownerReferences": [{"apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "name": "podinfo", "uid": "uid-1", "controller": true}]})
}

fn ts(c: &Canary, routes: Routes) -> Value {
    build_traefik_service(c, routes).expect("a TraefikService")
}

fn routes_of(obj: &Value, c: &Canary) -> Routes {
    let spec: TraefikServiceSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
    traefik::routes_of(&spec, &ServiceNames::of(c))
}

fn router_error(e: Error) -> String {
    match e {
        Error::Router { provider, message } => {
            assert_eq!(provider, "traefik");
            message
        }
        other => panic!("expected a router error, got {other}"),
    }
}

fn mirrored(percent: i32) -> Routes {
    Routes {
        mirror: Some(percent),
        ..Routes::PRIMARY
    }
}

#[test]
fn weights_80_20_on_a_traefik_service_named_like_the_apex() {
    let c = canary(json!({}));
    let obj = ts(&c, Routes::weighted(20));
    assert_eq!(
        obj,
        json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "TraefikService",
            "metadata": meta(),
            "spec": {"weighted": {"services": [
                {"name": "podinfo-primary", "port": 9898, "weight": 80},
                {"name": "podinfo-canary", "port": 9898, "weight": 20}
            ]}}
        })
    );
    assert_eq!(routes_of(&obj, &c), Routes::weighted(20));
}

#[test]
fn the_canary_is_listed_only_while_it_gets_traffic() {
    let c = canary(json!({"service": {"name": "web", "port": 8080}}));
    let before = ts(&c, Routes::PRIMARY);
    assert_eq!(
        before["spec"],
        json!({"weighted": {"services": [{"name": "web-primary", "port": 8080, "weight": 100}]}})
    );
    assert_eq!(before["metadata"]["name"], "web");
    assert_eq!(routes_of(&before, &c), Routes::PRIMARY);
    let all = ts(&c, Routes::weighted(100));
    assert_eq!(
        all["spec"]["weighted"]["services"],
        json!([
            {"name": "web-primary", "port": 8080, "weight": 0},
            {"name": "web-canary", "port": 8080, "weight": 100}
        ])
    );
    assert_eq!(routes_of(&all, &c), Routes::weighted(100));
}

#[test]
fn session_affinity_is_a_sticky_cookie_on_the_weighted_services() {
    let c = canary(json!({"analysis": {"sessionAffinity": {
        "cookieName": "fledge-canary", "maxAge": 600, "path": "/", "domain": "app.example.com",
        "httpOnly": true, "secure": true, "sameSite": "Strict"}}}));
    let obj = ts(&c, Routes::weighted(40));
    assert_eq!(
        obj["spec"],
        json!({"weighted": {
            "services": [
                {"name": "podinfo-primary", "port": 9898, "weight": 60},
                {"name": "podinfo-canary", "port": 9898, "weight": 40}
            ],
            "sticky": {"cookie": {"name": "fledge-canary", "maxAge": 600, "path": "/",
                "domain": "app.example.com", "httpOnly": true, "secure": true,
                "sameSite": "strict"}}
        }})
    );
    assert_eq!(routes_of(&obj, &c), Routes::weighted(40));
    // Only the name: the default lifetime, no other attribute.
    let plain = canary(json!({"analysis": {"sessionAffinity": {"cookieName": "c"}}}));
    assert_eq!(
        ts(&plain, Routes::PRIMARY)["spec"]["weighted"]["sticky"],
        json!({"cookie": {"name": "c", "maxAge": fledge_api::defaults::SESSION_AFFINITY_MAX_AGE}})
    );
}

#[test]
fn mirroring_copies_mirror_weight_percent_to_the_canary_while_the_primary_answers() {
    let c = canary(json!({"analysis": {"stepWeight": null, "maxWeight": null,
        "iterations": 5, "mirror": true, "mirrorWeight": 50}}));
    let obj = ts(&c, mirrored(50));
    assert_eq!(
        obj,
        json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "TraefikService",
            "metadata": meta(),
            "spec": {"mirroring": {
                "name": "podinfo-primary", "port": 9898,
                "mirrors": [{"name": "podinfo-canary", "port": 9898, "percent": 50}]
            }}
        })
    );
    assert_eq!(routes_of(&obj, &c), mirrored(50));
    let all = ts(&c, mirrored(100));
    assert_eq!(
        all["spec"]["mirroring"]["mirrors"][0]["percent"],
        json!(100)
    );
    assert_eq!(routes_of(&all, &c), mirrored(100));
}

#[test]
fn refuses_ab_testing_and_mirroring_with_canary_weight() {
    let c = canary(json!({}));
    let ab = Routes {
        ab_match: true,
        ..Routes::PRIMARY
    };
    let msg = router_error(build_traefik_service(&c, ab).unwrap_err());
    assert!(
        msg.contains("spec.analysis.match") && msg.contains("gatewayapi:v1"),
        "{msg}"
    );
    let both = Routes {
        mirror: Some(100),
        ..Routes::weighted(20)
    };
    let msg = router_error(build_traefik_service(&c, both).unwrap_err());
    assert!(msg.contains("20% goes to the canary"), "{msg}");
}

#[test]
fn released_service_sends_everything_to_the_apex_and_is_not_owned() {
    let c = canary(json!({"analysis": {"sessionAffinity": {"cookieName": "c"}}}));
    let obj = build_released_traefik_service(&c).unwrap();
    assert_eq!(
        obj,
        json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "TraefikService",
            "metadata": {"name": "podinfo", "namespace": "test",
                "labels": {"app.kubernetes.io/managed-by": "fledge"}},
            "spec": {"weighted": {"services": [{"name": "podinfo", "port": 9898, "weight": 100}]}}
        })
    );
    assert_eq!(routes_of(&obj, &c), Routes::PRIMARY);
}

#[test]
fn routes_read_back_from_objects_edited_by_hand() {
    let c = canary(json!({}));
    // As the API server returns it after someone edited the weights (and added a field).
    let edited = json!({"spec": {"weighted": {"services": [
        {"name": "podinfo-primary", "port": 9898, "weight": 1, "kind": "Service"},
        {"name": "podinfo-canary", "port": 9898, "weight": 3}
    ]}}});
    assert_eq!(routes_of(&edited, &c), Routes::weighted(75));
    // A weight left out counts 1, as Traefik counts it.
    let unweighted = json!({"spec": {"weighted": {"services": [
        {"name": "podinfo-primary", "port": 9898},
        {"name": "podinfo-canary", "port": 9898}
    ]}}});
    assert_eq!(routes_of(&unweighted, &c), Routes::weighted(50));
    let foreign = json!({"spec": {"weighted": {"services": [{"name": "other", "weight": 5}]}}});
    assert_eq!(routes_of(&foreign, &c), Routes::PRIMARY);
}
