//! Adapter tests of the routers: the exact objects each one writes, for every strategy, and the
//! routes read back from them.

use fledge_api::{Canary, CanaryStatus};
use fledge_core::Routes;
use fledge_routers::Error;
use fledge_routers::ServiceNames;
use fledge_routers::gatewayapi::{
    self, Caps, GatewayVersion, HttpRouteSpec, build_http_route, build_released_route,
};
use fledge_routers::istio::{
    self, VirtualServiceSpec, build_destination_rules, build_released_virtual_service,
    build_virtual_service,
};
use fledge_routers::smi::{self, SmiVersion, TrafficSplitSpec, build_traffic_split};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

/// A Canary `test/podinfo` (uid `uid-1`) on `provider`, with `spec` merged over a canary
/// analysis of stepWeight 20 up to 60 on port 9898.
fn canary(provider: &str, spec: Value) -> Canary {
    let mut base = json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test", "uid": "uid-1"},
        "spec": {
            "provider": provider,
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

fn owner() -> Value {
    json!([{"apiVersion": "fledge.dev/v1beta1", "kind": "Canary", "name": "podinfo",
        "uid": "uid-1", "controller": true}])
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "test",
        "labels": {"app.kubernetes.io/managed-by": "fledge"}, "ownerReferences": owner()})
}

fn none() -> CanaryStatus {
    CanaryStatus::default()
}

fn cookies(canary: Option<&str>, primary: Option<&str>, previous: Option<&str>) -> CanaryStatus {
    CanaryStatus {
        session_affinity_cookie: canary.map(Into::into),
        primary_session_affinity_cookie: primary.map(Into::into),
        previous_session_affinity_cookie: previous.map(Into::into),
        ..Default::default()
    }
}

fn mirrored(percent: i32) -> Routes {
    Routes {
        mirror: Some(percent),
        ..Routes::PRIMARY
    }
}

fn ab(canary_weight: i32) -> Routes {
    Routes {
        ab_match: true,
        ..Routes::weighted(canary_weight)
    }
}

const AB_MATCH: &str = r#"[
    {"headers": {"x-canary": {"exact": "insider"}}},
    {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
    {"queryParams": {"canary": {"exact": "1"}}}
]"#;

fn router_error(e: Error) -> String {
    match e {
        Error::Router { message, .. } => message,
        other => panic!("expected a router error, got {other}"),
    }
}

// ---- Gateway API ------------------------------------------------------------------------

fn gw(c: &Canary, st: &CanaryStatus, routes: Routes, caps: &Caps) -> Value {
    build_http_route(c, st, routes, caps, GatewayVersion::V1).expect("an HTTPRoute")
}

fn gw_routes(obj: &Value, c: &Canary, st: &CanaryStatus) -> Routes {
    let spec: HttpRouteSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
    gatewayapi::routes_of(&spec, &ServiceNames::of(c), st)
}

fn backend(name: &str, weight: i32) -> Value {
    json!({"name": name, "port": 9898, "weight": weight})
}

#[test]
fn gateway_weights_80_20_attached_to_the_gateway_for_the_hosts() {
    let c = canary(
        "gatewayapi:v1",
        json!({"service": {
            "gatewayRefs": [{"name": "public", "namespace": "edge", "sectionName": "http"}],
            "hosts": ["app.example.com"]
        }}),
    );
    let obj = gw(&c, &none(), Routes::weighted(20), &Caps::ALL);
    assert_eq!(
        obj,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": meta("podinfo"),
            "spec": {
                "parentRefs": [{"name": "public", "namespace": "edge", "sectionName": "http"}],
                "hostnames": ["app.example.com"],
                "rules": [{
                    "name": "split",
                    "backendRefs": [backend("podinfo-primary", 80), backend("podinfo-canary", 20)]
                }]
            }
        })
    );
    assert_eq!(gw_routes(&obj, &c, &none()), Routes::weighted(20));
    let beta = build_http_route(
        &c,
        &none(),
        Routes::PRIMARY,
        &Caps::ALL,
        GatewayVersion::V1beta1,
    )
    .unwrap();
    assert_eq!(beta["apiVersion"], "gateway.networking.k8s.io/v1beta1");
    assert_eq!(
        beta["spec"]["rules"][0]["backendRefs"],
        json!([
            backend("podinfo-primary", 100),
            backend("podinfo-canary", 0)
        ])
    );
}

#[test]
fn gateway_ab_testing_sends_header_cookie_and_query_matches_to_the_canary_only() {
    let c = canary(
        "gatewayapi:v1",
        json!({"analysis": {"iterations": 5, "stepWeight": null, "maxWeight": null,
            "match": serde_json::from_str::<Value>(AB_MATCH).unwrap()}}),
    );
    let obj = gw(&c, &none(), ab(0), &Caps::ALL);
    assert_eq!(
        obj["spec"]["rules"],
        json!([
            {
                "name": "ab-testing",
                "matches": [
                    {"headers": [{"type": "Exact", "name": "x-canary", "value": "insider"}]},
                    {"headers": [{"type": "RegularExpression", "name": "cookie",
                        "value": "^(.*?;)?(canary=always)(;.*)?$"}]},
                    {"queryParams": [{"type": "Exact", "name": "canary", "value": "1"}]}
                ],
                "backendRefs": [backend("podinfo-canary", 100)]
            },
            {
                "name": "split",
                "backendRefs": [backend("podinfo-primary", 100), backend("podinfo-canary", 0)]
            }
        ])
    );
    assert_eq!(gw_routes(&obj, &c, &none()), ab(0));
    // After the analysis the match rule goes.
    let after = gw(&c, &none(), Routes::PRIMARY, &Caps::ALL);
    assert_eq!(after["spec"]["rules"].as_array().unwrap().len(), 1);
    assert_eq!(gw_routes(&after, &c, &none()), Routes::PRIMARY);
}

#[test]
fn gateway_ab_matches_are_merged_with_the_service_match() {
    let c = canary(
        "gatewayapi:v1",
        json!({
            "service": {"match": [{"uri": {"prefix": "/api"}, "method": {"exact": "get"}}]},
            "analysis": {"iterations": 5, "match": [{"headers": {"x-canary": {"prefix": "in"}}}]}
        }),
    );
    let obj = gw(&c, &none(), ab(0), &Caps::ALL);
    let api = json!({"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"});
    assert_eq!(
        obj["spec"]["rules"][0]["matches"],
        json!([{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET",
            "headers": [{"type": "RegularExpression", "name": "x-canary", "value": "^in.*"}]}])
    );
    assert_eq!(obj["spec"]["rules"][1]["matches"], json!([api]));
}

#[test]
fn gateway_refuses_matches_an_http_route_cannot_express() {
    let c = canary(
        "gatewayapi:v1",
        json!({"analysis": {"iterations": 5, "match": [
            {"sourceLabels": {"app": "x"}, "withoutHeaders": {"x": {"exact": "y"}}}
        ]}}),
    );
    let err = build_http_route(&c, &none(), ab(0), &Caps::ALL, GatewayVersion::V1).unwrap_err();
    let msg = router_error(err);
    assert!(msg.contains("sourceLabels, withoutHeaders"), "{msg}");
}

#[test]
fn gateway_mirrors_to_the_canary_with_percent_when_supported() {
    let c = canary("gatewayapi:v1", json!({"analysis": {"mirror": true}}));
    let obj = gw(&c, &none(), mirrored(50), &Caps::ALL);
    assert_eq!(
        obj["spec"]["rules"],
        json!([{
            "name": "split",
            "filters": [{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": "podinfo-canary", "port": 9898}, "percent": 50}}],
            "backendRefs": [backend("podinfo-primary", 100), backend("podinfo-canary", 0)]
        }])
    );
    assert_eq!(gw_routes(&obj, &c, &none()), mirrored(50));
    // All requests: no percent at all, which every release understands.
    let old = Caps {
        mirror_percent: false,
        ..Caps::STANDARD
    };
    let all = gw(&c, &none(), mirrored(100), &old);
    assert_eq!(
        all["spec"]["rules"][0]["filters"][0]["requestMirror"],
        json!({"backendRef": {"name": "podinfo-canary", "port": 9898}})
    );
    assert_eq!(gw_routes(&all, &c, &none()), mirrored(100));
    // A share without percent support is refused rather than widened to all requests.
    let err = build_http_route(&c, &none(), mirrored(50), &old, GatewayVersion::V1).unwrap_err();
    assert!(router_error(err).contains("requestMirror.percent"));
}

#[test]
fn gateway_session_affinity_sets_cookies_and_keeps_their_holders() {
    let c = canary(
        "gatewayapi:v1",
        json!({"analysis": {"sessionAffinity": {"cookieName": "flagger-cookie",
            "primaryCookieName": "primary-cookie", "maxAge": 3600}}}),
    );
    let st = cookies(
        Some("flagger-cookie=aaaa"),
        Some("primary-cookie=bbbb"),
        None,
    );
    let obj = gw(&c, &st, Routes::weighted(20), &Caps::ALL);
    let set_cookie = |v: &str| {
        json!([{"type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"add": [{"name": "Set-Cookie", "value": v}]}}])
    };
    assert_eq!(
        obj["spec"]["rules"],
        json!([
            {
                "name": "canary-session",
                "matches": [{"headers": [{"type": "RegularExpression", "name": "Cookie",
                    "value": r"^(.*; ?)?flagger\-cookie=aaaa(;.*)?$"}]}],
                "backendRefs": [backend("podinfo-canary", 100)]
            },
            {
                "name": "primary-session",
                "matches": [{"headers": [{"type": "RegularExpression", "name": "Cookie",
                    "value": r"^(.*; ?)?primary\-cookie=bbbb(;.*)?$"}]}],
                "backendRefs": [backend("podinfo-primary", 100)]
            },
            {
                "name": "split",
                "backendRefs": [
                    {"name": "podinfo-primary", "port": 9898, "weight": 80,
                        "filters": set_cookie("primary-cookie=bbbb; Max-Age=3600")},
                    {"name": "podinfo-canary", "port": 9898, "weight": 20,
                        "filters": set_cookie("flagger-cookie=aaaa; Max-Age=3600")}
                ]
            }
        ])
    );
    // The session rule is not mistaken for A/B routing.
    assert_eq!(gw_routes(&obj, &c, &st), Routes::weighted(20));
    // Once the canary gets nothing, primary responses expire the canary cookie.
    let done = cookies(None, None, Some("flagger-cookie=aaaa"));
    let after = gw(&c, &done, Routes::PRIMARY, &Caps::ALL);
    assert_eq!(
        after["spec"]["rules"],
        json!([{
            "name": "split",
            "backendRefs": [
                {"name": "podinfo-primary", "port": 9898, "weight": 100,
                    "filters": set_cookie("flagger-cookie=aaaa; Max-Age=0")},
                backend("podinfo-canary", 0)
            ]
        }])
    );
}

#[test]
fn gateway_timeouts_retries_headers_rewrite_and_extra_mirrors() {
    let c = canary(
        "gatewayapi:v1",
        json!({"service": {
            "timeout": "1m30s",
            "retries": {"attempts": 3, "perTryTimeout": "1.5s", "retryOn": "gateway-error,connect-failure,429"},
            "headers": {
                "request": {"set": {"x-env": "prod"}, "add": {"x-via": "fledge"}, "remove": ["x-debug"]},
                "response": {"remove": ["server"]}
            },
            "rewrite": {"uri": "/v2", "authority": "internal.example.com"},
            "mirror": [{"backendRef": {"name": "shadow", "port": 8080}}]
        }}),
    );
    let obj = gw(&c, &none(), Routes::weighted(40), &Caps::ALL);
    assert_eq!(
        obj["spec"]["rules"],
        json!([{
            "name": "split",
            "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "filters": [
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                    "set": [{"name": "x-env", "value": "prod"}],
                    "add": [{"name": "x-via", "value": "fledge"}],
                    "remove": ["x-debug"]}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["server"]}},
                {"type": "URLRewrite", "urlRewrite": {"hostname": "internal.example.com",
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
                {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "shadow", "port": 8080}}}
            ],
            "backendRefs": [backend("podinfo-primary", 60), backend("podinfo-canary", 40)],
            "timeouts": {"request": "1m30s", "backendRequest": "1s500ms"},
            "retry": {"attempts": 3, "codes": [429, 502, 503, 504]}
        }])
    );
    assert_eq!(gw_routes(&obj, &c, &none()), Routes::weighted(40));
    // The standard channel has no retry; an old release no timeouts nor rule names.
    let std = gw(&c, &none(), Routes::weighted(40), &Caps::STANDARD);
    assert!(std["spec"]["rules"][0].get("retry").is_none());
    assert!(std["spec"]["rules"][0].get("timeouts").is_some());
    let old = Caps {
        rule_names: false,
        timeouts: false,
        retry: false,
        mirror_percent: false,
    };
    let rule = &gw(&c, &none(), Routes::weighted(40), &old)["spec"]["rules"][0];
    assert!(rule.get("timeouts").is_none() && rule.get("name").is_none());
    assert_eq!(
        gw_routes(&gw(&c, &none(), Routes::weighted(40), &old), &c, &none()),
        Routes::weighted(40)
    );
}

#[test]
fn gateway_released_route_sends_everything_to_the_apex_and_is_not_owned() {
    let c = canary(
        "gatewayapi:v1",
        json!({"service": {"gatewayRefs": [{"name": "public"}], "timeout": "10s"}}),
    );
    let obj = build_released_route(&c, &Caps::ALL, GatewayVersion::V1).unwrap();
    assert!(obj["metadata"].get("ownerReferences").is_none());
    assert_eq!(
        obj["spec"],
        json!({
            "parentRefs": [{"name": "public"}],
            "rules": [{"name": "split", "backendRefs": [{"name": "podinfo", "port": 9898}],
                "timeouts": {"request": "10s"}}]
        })
    );
}

#[test]
fn gateway_durations_in_gateway_api_format() {
    let d = |s: &str| gatewayapi::gateway_duration("gatewayapi:v1", "f", s);
    assert_eq!(d("30s").unwrap(), "30s");
    assert_eq!(d("1.5s").unwrap(), "1s500ms");
    assert_eq!(d("90m").unwrap(), "1h30m");
    assert_eq!(d("0s").unwrap(), "0s");
    assert_eq!(d("250us").unwrap(), "1ms");
    assert!(d("soon").is_err());
    assert_eq!(
        gatewayapi::retry_codes("5xx, 503,reset,999"),
        vec![500, 502, 503, 504]
    );
}

fn crd(rule_props: Value, mirror_props: Value, served: bool) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "httproutes.gateway.networking.k8s.io"},
        "spec": {
            "group": "gateway.networking.k8s.io", "scope": "Namespaced",
            "names": {"kind": "HTTPRoute", "plural": "httproutes"},
            "versions": [{"name": "v1", "served": served, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {"rules": {"type": "array", "items": {
                    "type": "object",
                    "properties": merge_into(rule_props, json!({"filters": {"type": "array", "items": {
                        "type": "object", "properties": {"requestMirror": {"type": "object", "properties": mirror_props}}}}}))
                }}}}}
            }}}]
        }
    }))
    .unwrap()
}

fn merge_into(mut a: Value, b: Value) -> Value {
    merge(&mut a, b);
    a
}

#[test]
fn gateway_capabilities_come_from_the_crd_schema() {
    let s = json!({"type": "string"});
    let experimental = crd(
        json!({"name": s, "timeouts": {"type": "object"}, "retry": {"type": "object"}}),
        json!({"percent": {"type": "integer"}}),
        true,
    );
    assert_eq!(
        Caps::of(&experimental, GatewayVersion::V1).unwrap(),
        Caps::ALL
    );
    let old = crd(json!({}), json!({}), true);
    assert_eq!(
        Caps::of(&old, GatewayVersion::V1).unwrap(),
        Caps {
            rule_names: false,
            timeouts: false,
            retry: false,
            mirror_percent: false
        }
    );
    // v1beta1 is not in this CRD; v1 not served.
    assert!(Caps::of(&old, GatewayVersion::V1beta1).is_err());
    assert!(Caps::of(&crd(json!({}), json!({}), false), GatewayVersion::V1).is_err());
}

// ---- Istio ------------------------------------------------------------------------------

fn vs(c: &Canary, st: &CanaryStatus, routes: Routes) -> Value {
    build_virtual_service(c, st, routes).expect("a VirtualService")
}

fn vs_routes(obj: &Value, c: &Canary) -> Routes {
    let spec: VirtualServiceSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
    istio::routes_of(&spec, &ServiceNames::of(c))
}

fn dest(host: &str, weight: i32) -> Value {
    json!({"destination": {"host": host, "port": {"number": 9898}}, "weight": weight})
}

#[test]
fn istio_weights_80_20_with_hosts_gateways_and_destination_rules() {
    let c = canary(
        "istio",
        json!({"service": {
            "hosts": ["app.example.com"],
            "gateways": ["public-gateway.istio-system.svc.cluster.local", "mesh"],
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
                "loadBalancer": {"simple": "LEAST_REQUEST"}}
        }}),
    );
    let obj = vs(&c, &none(), Routes::weighted(20));
    assert_eq!(
        obj,
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": meta("podinfo"),
            "spec": {
                "hosts": ["app.example.com", "podinfo"],
                "gateways": ["public-gateway.istio-system.svc.cluster.local", "mesh"],
                "http": [{
                    "name": "split",
                    "route": [dest("podinfo-primary", 80), dest("podinfo-canary", 20)]
                }]
            }
        })
    );
    assert_eq!(vs_routes(&obj, &c), Routes::weighted(20));
    let policy =
        json!({"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "LEAST_REQUEST"}});
    assert_eq!(
        build_destination_rules(&c).unwrap(),
        [
            json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                "metadata": meta("podinfo-primary"),
                "spec": {"host": "podinfo-primary", "trafficPolicy": policy}}),
            json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                "metadata": meta("podinfo-canary"),
                "spec": {"host": "podinfo-canary", "trafficPolicy": policy}}),
        ]
    );
}

#[test]
fn istio_ab_testing_with_header_cookie_and_query_matches() {
    let c = canary(
        "istio",
        json!({"analysis": {"iterations": 5,
            "match": serde_json::from_str::<Value>(AB_MATCH).unwrap()}}),
    );
    let obj = vs(&c, &none(), ab(0));
    assert_eq!(
        obj["spec"]["http"],
        json!([
            {
                "name": "ab-testing",
                "match": [
                    {"headers": {"x-canary": {"exact": "insider"}}},
                    {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
                    {"queryParams": {"canary": {"exact": "1"}}}
                ],
                "route": [dest("podinfo-canary", 100)]
            },
            {"name": "split", "route": [dest("podinfo-primary", 100), dest("podinfo-canary", 0)]}
        ])
    );
    assert_eq!(vs_routes(&obj, &c), ab(0));
}

#[test]
fn istio_mirror_with_mirror_percentage() {
    let c = canary(
        "istio",
        json!({"analysis": {"mirror": true, "mirrorWeight": 25}}),
    );
    let obj = vs(&c, &none(), mirrored(25));
    assert_eq!(
        obj["spec"]["http"],
        json!([{
            "name": "split",
            "route": [dest("podinfo-primary", 100), dest("podinfo-canary", 0)],
            "mirror": {"host": "podinfo-canary", "port": {"number": 9898}},
            "mirrorPercentage": {"value": 25.0}
        }])
    );
    assert_eq!(vs_routes(&obj, &c), mirrored(25));
}

#[test]
fn istio_session_affinity_sets_cookies_and_keeps_their_holders() {
    let c = canary(
        "istio",
        json!({"analysis": {"sessionAffinity": {"cookieName": "flagger-cookie", "path": "/"}}}),
    );
    let st = cookies(Some("flagger-cookie=aaaa"), None, None);
    let obj = vs(&c, &st, Routes::weighted(40));
    assert_eq!(
        obj["spec"]["http"],
        json!([
            {
                "name": "canary-session",
                "match": [{"headers": {"cookie": {"regex": r"^(.*; ?)?flagger\-cookie=aaaa(;.*)?$"}}}],
                "route": [dest("podinfo-canary", 100)]
            },
            {
                "name": "split",
                "route": [
                    dest("podinfo-primary", 60),
                    {"destination": {"host": "podinfo-canary", "port": {"number": 9898}}, "weight": 40,
                        "headers": {"response": {"add": {"Set-Cookie": "flagger-cookie=aaaa; Max-Age=86400; Path=/"}}}}
                ]
            }
        ])
    );
    assert_eq!(vs_routes(&obj, &c), Routes::weighted(40));
    let done = cookies(None, None, Some("flagger-cookie=aaaa"));
    let after = vs(&c, &done, Routes::PRIMARY);
    assert_eq!(
        after["spec"]["http"][0]["route"][0]["headers"],
        json!({"response": {"add": {"Set-Cookie": "flagger-cookie=aaaa; Max-Age=0"}}})
    );
}

#[test]
fn istio_retries_timeout_cors_headers_rewrite_and_service_match() {
    let c = canary(
        "istio",
        json!({"service": {
            "timeout": "1m",
            "retries": {"attempts": 3, "perTryTimeout": "500ms", "retryOn": "gateway-error,connect-failure"},
            "corsPolicy": {"allowOrigin": ["https://a.example.com"],
                "allowOrigins": [{"suffix": ".example.org"}],
                "allowMethods": ["GET", "POST"], "maxAge": "24h", "allowCredentials": true},
            "headers": {"request": {"add": {"x-via": "fledge"}}, "response": {"remove": ["server"]}},
            "rewrite": {"uri": "/v2"},
            "match": [{"uri": {"prefix": "/api"}, "headers": {"X-Env": {"suffix": "-prod"}}}]
        }}),
    );
    let obj = vs(&c, &none(), Routes::weighted(60));
    assert_eq!(
        obj["spec"]["http"],
        json!([{
            "name": "split",
            "match": [{"uri": {"prefix": "/api"}, "headers": {"x-env": {"regex": r".*\-prod$"}}}],
            "route": [dest("podinfo-primary", 40), dest("podinfo-canary", 60)],
            "rewrite": {"uri": "/v2"},
            "timeout": "60s",
            "retries": {"attempts": 3, "perTryTimeout": "0.5s", "retryOn": "gateway-error,connect-failure"},
            "corsPolicy": {
                "allowOrigins": [{"exact": "https://a.example.com"}, {"regex": r".*\.example\.org$"}],
                "allowMethods": ["GET", "POST"], "maxAge": "86400s", "allowCredentials": true
            },
            "headers": {"request": {"add": {"x-via": "fledge"}}, "response": {"remove": ["server"]}}
        }])
    );
    assert_eq!(vs_routes(&obj, &c), Routes::weighted(60));
}

#[test]
fn istio_delegate_and_released_virtual_services() {
    let delegate = canary(
        "istio",
        json!({"service": {"delegation": true, "hosts": ["x"], "gateways": ["g"]}}),
    );
    let spec = &vs(&delegate, &none(), Routes::PRIMARY)["spec"];
    assert!(spec.get("hosts").is_none() && spec.get("gateways").is_none());

    let c = canary("istio", json!({"service": {"gateways": ["g"]}}));
    let released = build_released_virtual_service(&c).unwrap();
    assert!(released["metadata"].get("ownerReferences").is_none());
    assert_eq!(
        released["spec"],
        json!({"hosts": ["podinfo"], "gateways": ["g"], "http": [{"name": "split",
            "route": [{"destination": {"host": "podinfo", "port": {"number": 9898}}}]}]})
    );
    assert_eq!(vs_routes(&released, &c), Routes::PRIMARY);
}

#[test]
fn istio_durations_in_seconds() {
    assert_eq!(istio::istio_duration("f", "1m30s").unwrap(), "90s");
    assert_eq!(istio::istio_duration("f", "250ms").unwrap(), "0.25s");
    assert!(istio::istio_duration("f", "x").is_err());
}

// ---- SMI --------------------------------------------------------------------------------

#[test]
fn smi_traffic_split_weights_for_each_version() {
    let c = canary("smi:v1alpha3", json!({}));
    let obj = build_traffic_split(
        &c,
        Routes::weighted(20),
        SmiVersion::V1alpha3,
        "smi:v1alpha3",
    )
    .unwrap();
    assert_eq!(
        obj,
        json!({
            "apiVersion": "split.smi-spec.io/v1alpha3", "kind": "TrafficSplit",
            "metadata": meta("podinfo"),
            "spec": {"service": "podinfo", "backends": [
                {"service": "podinfo-canary", "weight": 20},
                {"service": "podinfo-primary", "weight": 80}
            ]}
        })
    );
    let spec: TrafficSplitSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
    assert_eq!(
        smi::routes_of(&spec, &ServiceNames::of(&c)),
        Routes::weighted(20)
    );
    let linkerd =
        build_traffic_split(&c, Routes::PRIMARY, SmiVersion::V1alpha2, "linkerd").unwrap();
    assert_eq!(linkerd["apiVersion"], "split.smi-spec.io/v1alpha2");
    assert_eq!(linkerd["spec"]["backends"][0]["weight"], 0);
}

#[test]
fn smi_refuses_matching_and_mirroring() {
    let c = canary("linkerd", json!({}));
    let e = build_traffic_split(&c, ab(0), SmiVersion::V1alpha2, "linkerd").unwrap_err();
    assert!(router_error(e).contains("A/B testing"));
    let e = build_traffic_split(&c, mirrored(100), SmiVersion::V1alpha2, "linkerd").unwrap_err();
    assert!(router_error(e).contains("mirror"));
}
