//! Drift detection compares the routes read back from a routing object with the routes the
//! status records, and rewrites the object when they differ. That is only sound if every router
//! reads back exactly what it wrote: otherwise the controller would "restore" an untouched
//! object at every check. These tests build each provider's object for every kind of routes it
//! supports (with session affinity cookies in the status, and a route match) and read it back.

use fledge_api::{Canary, CanaryStatus};
use fledge_controller::routers::gatewayapi::{self, Caps, GatewayVersion, HttpRouteSpec};
use fledge_controller::routers::istio::{self, VirtualServiceSpec};
use fledge_controller::routers::smi::{self, SmiVersion, TrafficSplitSpec};
use fledge_controller::routers::traefik::{self, TraefikServiceSpec};
use fledge_controller::routers::{ServiceNames, routes_in_status};
use fledge_core::Routes;
use serde_json::{Value, json};

fn canary(provider: &str, analysis: Value) -> Canary {
    serde_json::from_value(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "uid-1"},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898, "match": [{"uri": {"prefix": "/api"}}]},
            "analysis": analysis,
        }
    }))
    .expect("a Canary")
}

/// The analysis of a Canary that may be in every state below: weights, mirroring at 40%, an
/// A/B match and session affinity.
fn analysis(with_match: bool, with_affinity: bool) -> Value {
    let mut a = json!({"interval": "1m", "stepWeight": 20, "maxWeight": 60,
        "mirror": true, "mirrorWeight": 40});
    if with_match {
        a["match"] = json!([{"headers": {"x-canary": {"exact": "insider"}}}]);
    }
    if with_affinity {
        a["sessionAffinity"] =
            json!({"cookieName": "fledge-canary", "primaryCookieName": "fledge-primary"});
    }
    a
}

/// Statuses with every combination of weight, mirroring and A/B routing a router may be asked
/// for, with the session cookies the engine keeps.
fn statuses(ab: bool) -> Vec<CanaryStatus> {
    let mut out = Vec::new();
    for weight in [0, 20, 60, 100] {
        for (mirrored, ab_match) in [(false, false), (true, false), (false, ab)] {
            if mirrored && weight > 0 {
                continue;
            }
            out.push(CanaryStatus {
                canary_weight: weight,
                session_affinity_cookie: Some("fledge-canary=c0ffee".into()),
                primary_session_affinity_cookie: Some("fledge-primary=beef".into()),
                previous_session_affinity_cookie: Some("fledge-canary=0ld".into()),
                rollout: Some(fledge_api::RolloutProgress {
                    mirrored,
                    ab_match,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    out
}

#[test]
fn gateway_api_reads_back_what_it_writes() {
    let c = canary("gatewayapi:v1", analysis(true, true));
    let names = ServiceNames::of(&c);
    for caps in [Caps::ALL, Caps::STANDARD] {
        for st in statuses(true) {
            let want = routes_in_status(&c, &st);
            let obj = gatewayapi::build_http_route(&c, &st, want, &caps, GatewayVersion::V1)
                .expect("an HTTPRoute");
            let spec: HttpRouteSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
            assert_eq!(
                gatewayapi::routes_of(&spec, &names, &st),
                want,
                "{caps:?} {st:?}\n{obj}"
            );
        }
    }
}

#[test]
fn istio_reads_back_what_it_writes() {
    let c = canary("istio", analysis(true, true));
    let names = ServiceNames::of(&c);
    for st in statuses(true) {
        let want = routes_in_status(&c, &st);
        let obj = istio::build_virtual_service(&c, &st, want).expect("a VirtualService");
        let spec: VirtualServiceSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
        assert_eq!(istio::routes_of(&spec, &names), want, "{st:?}\n{obj}");
    }
}

#[test]
fn smi_reads_back_what_it_writes() {
    let c = canary(
        "linkerd",
        json!({"interval": "1m", "stepWeight": 20, "maxWeight": 60}),
    );
    let names = ServiceNames::of(&c);
    for st in statuses(false)
        .into_iter()
        .filter(|s| !s.rollout.as_ref().is_some_and(|r| r.mirrored))
    {
        let want = routes_in_status(&c, &st);
        let obj = smi::build_traffic_split(&c, want, SmiVersion::V1alpha2, "linkerd")
            .expect("a TrafficSplit");
        let spec: TrafficSplitSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
        assert_eq!(smi::routes_of(&spec, &names), want, "{st:?}\n{obj}");
    }
}

#[test]
fn traefik_reads_back_what_it_writes() {
    let c = canary("traefik", analysis(false, true));
    let names = ServiceNames::of(&c);
    for st in statuses(false) {
        let want = routes_in_status(&c, &st);
        let obj = traefik::build_traefik_service(&c, want).expect("a TraefikService");
        let spec: TraefikServiceSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
        assert_eq!(traefik::routes_of(&spec, &names), want, "{st:?}\n{obj}");
    }
    // And a hand edit reads back as different.
    let st = &statuses(false)[0];
    let edited: TraefikServiceSpec = serde_json::from_value(json!({"weighted": {"services": [
        {"name": "podinfo-primary", "port": 9898, "weight": 50},
        {"name": "podinfo-canary", "port": 9898, "weight": 50}
    ]}}))
    .unwrap();
    assert_ne!(
        traefik::routes_of(&edited, &names),
        routes_in_status(&c, st)
    );
    assert_eq!(traefik::routes_of(&edited, &names), Routes::weighted(50));
}
