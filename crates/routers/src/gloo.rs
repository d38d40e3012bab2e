//! The `gloo` provider: a Gloo `RouteTable` (`gateway.solo.io/v1`) named like the apex Service,
//! between two Gloo `Upstream`s (`gloo.solo.io/v1`), as Flagger writes them:
//!
//! - The Upstreams `<ns>-<svc>-primaryupstream-<port>` and `<ns>-<svc>-canaryupstream-<port>`,
//!   Kubernetes upstreams of `<svc>-primary` and `<svc>-canary` (their selectors), with the
//!   connection settings of the Upstream `spec.upstreamRef` names when it names one (its
//!   labels, TLS, circuit breakers, connection and load balancer settings, HTTP/2 and window
//!   sizes, proxy host name).
//! - The RouteTable's route, inheriting the path matchers of the VirtualService that delegates
//!   to it (`inheritablePathMatchers`), splitting by weight between the two Upstreams; a zero
//!   weight is left out, as Flagger's Go types omit it.
//! - Labels and annotations of `spec.service.apex`, with Flux's `disabled` switches.
//!
//! A/B testing differs from Flagger on purpose: Flagger puts the `analysis.match` conditions on
//! the table's only route (all of them in one matcher), so requests that do not match find no
//! route in the table at all, during the analysis and after it. fledge writes the A/B route
//! (one matcher per match entry, which Gloo ORs) before a route without matchers to the
//! primary, and only while the analysis routes by match; otherwise the one route has no
//! matchers. Mirroring and session affinity are refused (Flagger's Go types have neither).
//!
//! Both kinds are namespaced and owned by the Canary. On finalization with revert the
//! RouteTable and the primary's Upstream are released from the Canary, the Upstream pointed at
//! the apex Service and the target's pods, so the VirtualService that delegates to the table
//! keeps serving once the Canary is gone (Flagger's gloo router leaves everything as it is).

use std::collections::BTreeMap;

use fledge_api::{Canary, validate::gloo_matchers};
use fledge_core::Routes;
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    Capabilities, Error, PeerKind, RouteTarget, Router, ServiceNames, analysis_match, cannot,
    owner_reference, refused, release_apex,
};

/// The provider name.
pub const PROVIDER: &str = "gloo";

/// The kind that carries the routes.
pub const ROUTE_TABLE: PeerKind = PeerKind {
    group: "gateway.solo.io",
    version: "v1",
    kind: "RouteTable",
    plural: "routetables",
    namespaced: true,
};

/// The kind of the two destinations.
pub const UPSTREAM: PeerKind = PeerKind {
    group: "gloo.solo.io",
    version: "v1",
    kind: "Upstream",
    plural: "upstreams",
    namespaced: true,
};

/// The fields of the `spec.upstreamRef` Upstream copied into both Upstreams (Flagger's list).
pub const COPIED_UPSTREAM_FIELDS: &[&str] = &[
    "labels",
    "sslConfig",
    "circuitBreakers",
    "connectionConfig",
    "loadBalancerConfig",
    "useHttp2",
    "initialStreamWindowSize",
    "initialConnectionWindowSize",
    "httpProxyHostName",
];

/// `RouteTable.spec`, as much of it as fledge writes and reads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTableSpec {
    /// The routes, in order: the first that matches a request takes it.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// A route of the table.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The conditions (any one); none matches every request the VirtualService delegates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<Value>,
    /// Where matching requests go.
    #[serde(default)]
    pub route_action: RouteAction,
    /// Whether the route takes the delegating VirtualService's path matchers.
    #[serde(default)]
    pub inheritable_path_matchers: bool,
}

/// A route's action: weighted destinations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteAction {
    /// The weighted destinations.
    #[serde(default)]
    pub multi: MultiDestination,
}

/// Destinations split by weight.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiDestination {
    /// The destinations.
    #[serde(default)]
    pub destinations: Vec<WeightedDestination>,
}

/// An Upstream and its relative weight.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightedDestination {
    /// The Upstream.
    #[serde(default)]
    pub destination: Destination,
    /// Relative weight; left out (0) sends nothing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: u32,
}

fn is_zero(w: &u32) -> bool {
    *w == 0
}

/// A destination: an Upstream by reference.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Destination {
    /// The Upstream.
    #[serde(default)]
    pub upstream: ResourceRef,
}

/// A reference to a Gloo resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRef {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its namespace.
    #[serde(default)]
    pub namespace: String,
}

fn namespace(canary: &Canary) -> &str {
    canary.metadata.namespace.as_deref().unwrap_or("default")
}

/// The names of the primary's and the canary's Upstreams (Flagger's):
/// `<ns>-<svc>-primaryupstream-<port>`, `<ns>-<svc>-canaryupstream-<port>`.
pub fn upstream_names(canary: &Canary) -> (String, String) {
    let (ns, apex, port) = (
        namespace(canary),
        canary.spec.apex_service_name(),
        canary.spec.service.port,
    );
    (
        format!("{ns}-{apex}-primaryupstream-{port}"),
        format!("{ns}-{apex}-canaryupstream-{port}"),
    )
}

/// The Upstream `name` of the Service `service` selecting `selector`, with the settings of the
/// `spec.upstreamRef` Upstream (`config`, its JSON) when there is one.
pub fn build_upstream(
    canary: &Canary,
    name: &str,
    service: &str,
    selector: BTreeMap<String, String>,
    config: Option<&Value>,
) -> Value {
    let mut spec = serde_json::Map::new();
    if let Some(config) = config {
        for field in COPIED_UPSTREAM_FIELDS {
            if let Some(v) = config["spec"].get(*field) {
                spec.insert((*field).into(), v.clone());
            }
        }
    }
    spec.insert(
        "kube".into(),
        json!({
            "serviceName": service,
            "serviceNamespace": namespace(canary),
            "servicePort": canary.spec.service.port,
            "selector": selector,
        }),
    );
    let mut meta = json!({
        "name": name,
        "namespace": canary.metadata.namespace,
        "labels": {"app.kubernetes.io/managed-by": "fledge"},
    });
    if let Some(owner) = owner_reference(canary) {
        meta["ownerReferences"] = json!([owner]);
    }
    json!({
        "apiVersion": UPSTREAM.api_version(),
        "kind": UPSTREAM.kind,
        "metadata": meta,
        "spec": spec,
    })
}

/// The two Upstreams, primary first, for a target whose pods carry `selector.0: selector.1`.
pub fn build_upstreams(
    canary: &Canary,
    selector: (&str, &str),
    config: Option<&Value>,
) -> [Value; 2] {
    let names = ServiceNames::of(canary);
    let (primary, canary_upstream) = upstream_names(canary);
    let side = |value: String| BTreeMap::from([(selector.0.to_string(), value)]);
    [
        build_upstream(
            canary,
            &primary,
            &names.primary,
            side(fledge_api::primary_name(selector.1)),
            config,
        ),
        build_upstream(
            canary,
            &canary_upstream,
            &names.canary,
            side(selector.1.to_string()),
            config,
        ),
    ]
}

fn weighted(upstreams: &[(&str, u32)], ns: &str) -> RouteAction {
    RouteAction {
        multi: MultiDestination {
            destinations: upstreams
                .iter()
                .map(|(name, weight)| WeightedDestination {
                    destination: Destination {
                        upstream: ResourceRef {
                            name: (*name).to_string(),
                            namespace: ns.to_string(),
                        },
                    },
                    weight: *weight,
                })
                .collect(),
        },
    }
}

/// The RouteTable spec for `routes`: one weighted route, or with A/B matching a route taking
/// the matching requests to the canary before the weighted route for the others; an error for
/// what Gloo cannot do.
pub fn build_spec(canary: &Canary, routes: Routes) -> Result<RouteTableSpec, Error> {
    if routes.mirror.is_some_and(|m| m > 0) {
        return Err(cannot(
            PROVIDER,
            "provider gloo does not mirror traffic (spec.analysis.mirror), as in Flagger; remove \
             analysis.mirror, or use istio or gatewayapi:v1",
        ));
    }
    let ns = namespace(canary);
    let (primary, canary_upstream) = upstream_names(canary);
    let weight = u32::try_from(routes.canary.clamp(0, 100)).unwrap_or(0);
    let split = Route {
        matchers: Vec::new(),
        route_action: weighted(&[(&primary, 100 - weight), (&canary_upstream, weight)], ns),
        inheritable_path_matchers: true,
    };
    if !routes.ab_match {
        return Ok(RouteTableSpec {
            routes: vec![split],
        });
    }
    let matchers = gloo_matchers("spec.analysis.match", &analysis_match(canary))
        .map_err(|p| refused(PROVIDER, &p))?;
    if matchers.is_empty() {
        return Err(cannot(
            PROVIDER,
            "A/B routing needs spec.analysis.match; give at least one entry",
        ));
    }
    // The primary listed at weight 0 (left out), as Flagger's A/B route lists it.
    let matched = Route {
        matchers,
        route_action: weighted(&[(&primary, 0), (&canary_upstream, 100)], ns),
        inheritable_path_matchers: true,
    };
    Ok(RouteTableSpec {
        routes: vec![matched, split],
    })
}

/// The metadata of the RouteTable: the apex Service's name, the labels and annotations of
/// `spec.service.apex`, Flux's switches, and (while `owned`) the owner reference.
fn route_table_meta(canary: &Canary, owned: bool) -> Value {
    let (labels, annotations) = crate::apex_metadata(canary);
    let mut meta = json!({
        "name": canary.spec.apex_service_name(),
        "namespace": canary.metadata.namespace,
        "labels": labels,
        "annotations": annotations,
    });
    if owned && let Some(owner) = owner_reference(canary) {
        meta["ownerReferences"] = json!([owner]);
    }
    meta
}

fn route_table(canary: &Canary, spec: &RouteTableSpec, owned: bool) -> Result<Value, Error> {
    Ok(json!({
        "apiVersion": ROUTE_TABLE.api_version(),
        "kind": ROUTE_TABLE.kind,
        "metadata": route_table_meta(canary, owned),
        "spec": serde_json::to_value(spec)?,
    }))
}

/// The RouteTable for `routes`, as JSON for server-side apply.
pub fn build_route_table(canary: &Canary, routes: Routes) -> Result<Value, Error> {
    route_table(canary, &build_spec(canary, routes)?, true)
}

/// The routes a RouteTable gives: the canary's share of the weights of its last route to the
/// primary's or the canary's Upstream (the one requests without a match take), and A/B
/// matching when a route with matchers before it sends everything to the canary.
pub fn routes_of(spec: &RouteTableSpec, canary: &Canary) -> Routes {
    let (primary, canary_upstream) = upstream_names(canary);
    let ns = namespace(canary);
    let to = |route: &Route, name: &str| -> Vec<u64> {
        route
            .route_action
            .multi
            .destinations
            .iter()
            .filter(|d| d.destination.upstream.name == name)
            .filter(|d| {
                d.destination.upstream.namespace.is_empty()
                    || d.destination.upstream.namespace == ns
            })
            .map(|d| u64::from(d.weight))
            .collect()
    };
    let ours: Vec<&Route> = spec
        .routes
        .iter()
        .filter(|r| !to(r, &primary).is_empty() || !to(r, &canary_upstream).is_empty())
        .collect();
    let Some((last, before)) = ours.split_last() else {
        return Routes::PRIMARY;
    };
    let weight = |r: &Route, name: &str| to(r, name).iter().sum::<u64>();
    let (p, c) = (weight(last, &primary), weight(last, &canary_upstream));
    let mut routes = (c * 100 + (p + c) / 2)
        .checked_div(p + c)
        .map_or(Routes::PRIMARY, |w| {
            Routes::weighted(i32::try_from(w).unwrap_or(0))
        });
    routes.ab_match = before.iter().any(|r| {
        !r.matchers.is_empty() && weight(r, &primary) == 0 && weight(r, &canary_upstream) > 0
    });
    routes
}

/// Routes through a Gloo RouteTable.
pub struct GlooRouter {
    client: Client,
}

impl GlooRouter {
    /// A router using `client`.
    pub fn new(client: Client) -> Self {
        GlooRouter { client }
    }

    /// The `spec.upstreamRef` Upstream, when the Canary names one; an error when it is missing.
    async fn config_upstream(&self, t: &RouteTarget<'_>) -> Result<Option<Value>, Error> {
        let Some(r) = t.canary.spec.upstream_ref.as_ref() else {
            return Ok(None);
        };
        let ns = r
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(t.namespace());
        match UPSTREAM.get(&self.client, ns, PROVIDER, &r.name).await? {
            Some(u) => Ok(Some(u)),
            None => Err(cannot(
                PROVIDER,
                format!(
                    "spec.upstreamRef: Upstream {ns}/{} does not exist; create it or remove \
                     spec.upstreamRef (the Upstreams then have default settings)",
                    r.name
                ),
            )),
        }
    }

    async fn apply_upstreams(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        let config = self.config_upstream(t).await?;
        for upstream in build_upstreams(t.canary, t.selector, config.as_ref()) {
            UPSTREAM
                .apply(&self.client, t.namespace(), PROVIDER, &upstream)
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Router for GlooRouter {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn routing_kind(&self) -> PeerKind {
        ROUTE_TABLE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_weights: true,
            http_match: true,
            ..Capabilities::default()
        }
    }

    /// Applies the two Upstreams (from `spec.upstreamRef`'s settings), then the RouteTable for
    /// the routes the status records.
    async fn ensure(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        self.apply_upstreams(t).await?;
        self.set_routes(t, crate::routes_in_status(t.canary, t.status))
            .await
    }

    /// Applies the RouteTable for `routes`.
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        let obj = build_route_table(t.canary, routes)?;
        ROUTE_TABLE
            .apply(&self.client, t.namespace(), PROVIDER, &obj)
            .await
    }

    /// The routes the RouteTable gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let spec: Option<RouteTableSpec> = ROUTE_TABLE.read_spec(&self.client, t, PROVIDER).await?;
        Ok(spec.map(|s| routes_of(&s, t.canary)))
    }

    /// Points the apex Service at the target, and the RouteTable and the primary's Upstream at
    /// the target's pods (the Upstream of `<svc>-primary` selecting them), all released from the
    /// Canary so they keep serving once it is gone; the canary's Upstream goes with the Canary.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        release_apex(&self.client, t).await?;
        let config = self.config_upstream(t).await.ok().flatten();
        let [mut primary, _] = build_upstreams(t.canary, t.selector, config.as_ref());
        released_upstream(&mut primary, t);
        UPSTREAM
            .apply(&self.client, t.namespace(), PROVIDER, &primary)
            .await?;
        let spec = build_spec(t.canary, Routes::PRIMARY)?;
        let obj = route_table(t.canary, &spec, false)?;
        ROUTE_TABLE
            .apply(&self.client, t.namespace(), PROVIDER, &obj)
            .await
    }
}

/// The primary's Upstream once the Canary goes: the apex Service (which then selects the
/// target's pods), with no owner reference.
fn released_upstream(upstream: &mut Value, t: &RouteTarget<'_>) {
    if let Some(meta) = upstream["metadata"].as_object_mut() {
        meta.remove("ownerReferences");
    }
    upstream["spec"]["kube"]["serviceName"] = json!(t.canary.spec.apex_service_name());
    upstream["spec"]["kube"]["selector"] = json!({t.selector.0: t.selector.1});
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::canary;

    /// The RouteTable spec Flagger v1.36.1 (`pkg/router/gloo.go`) writes for `test/podinfo` on
    /// port 9898 at these weights, a zero weight left out by its Go types.
    fn flagger_spec(primary: u32, canary: u32) -> Value {
        let dest = |name: &str, w: u32| {
            let mut d = json!({"destination": {"upstream": {"name": name, "namespace": "test"}}});
            if w > 0 {
                d["weight"] = json!(w);
            }
            d
        };
        json!({"routes": [{
            "routeAction": {"multi": {"destinations": [
                dest("test-podinfo-primaryupstream-9898", primary),
                dest("test-podinfo-canaryupstream-9898", canary),
            ]}},
            "inheritablePathMatchers": true,
        }]})
    }

    fn gloo_canary(extra: Value) -> Canary {
        canary(PROVIDER, extra)
    }

    #[test]
    fn writes_what_flagger_writes_at_init_each_weight_promotion_and_rollback() {
        let c = gloo_canary(json!({}));
        for w in [0, 20, 40, 60, 100, 0] {
            let obj = build_route_table(&c, Routes::weighted(w)).unwrap();
            assert_eq!(obj["apiVersion"], "gateway.solo.io/v1");
            assert_eq!(obj["kind"], "RouteTable");
            assert_eq!(obj["metadata"]["name"], "podinfo");
            assert_eq!(
                obj["spec"],
                flagger_spec(100 - w as u32, w as u32),
                "weight {w}"
            );
            let spec: RouteTableSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
            assert_eq!(routes_of(&spec, &c), Routes::weighted(w));
        }
    }

    #[test]
    fn metadata_is_the_apex_services_with_flux_switches_and_the_owner() {
        let c = gloo_canary(json!({"service": {"apex": {
            "labels": {"team": "web"}, "annotations": {"note": "x"}}}}));
        let obj = build_route_table(&c, Routes::PRIMARY).unwrap();
        let meta = &obj["metadata"];
        assert_eq!(meta["namespace"], "test");
        assert_eq!(
            meta["labels"],
            json!({"team": "web", "app.kubernetes.io/managed-by": "fledge"})
        );
        assert_eq!(
            meta["annotations"],
            json!({"note": "x", "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                   "helm.toolkit.fluxcd.io/driftDetection": "disabled"})
        );
        assert_eq!(meta["ownerReferences"][0]["uid"], "uid-1");
        let released = route_table(&c, &build_spec(&c, Routes::PRIMARY).unwrap(), false).unwrap();
        assert!(released["metadata"].get("ownerReferences").is_none());
    }

    #[test]
    fn upstreams_are_flaggers_with_the_referenced_upstreams_settings() {
        let c = gloo_canary(json!({"upstreamRef": {"name": "tuned", "namespace": "gloo"}}));
        let config = json!({"metadata": {"name": "tuned"}, "spec": {
            "labels": {"tier": "a"},
            "connectionConfig": {"maxRequestsPerConnection": 10},
            "circuitBreakers": {"maxConnections": 5},
            "useHttp2": true,
            "httpProxyHostName": "proxy",
            "static": {"hosts": [{"addr": "10.0.0.1"}]},
            "kube": {"serviceName": "other"}
        }});
        let [primary, canary_up] = build_upstreams(&c, ("app", "podinfo"), Some(&config));
        assert_eq!(primary["apiVersion"], "gloo.solo.io/v1");
        assert_eq!(
            primary["metadata"]["name"],
            "test-podinfo-primaryupstream-9898"
        );
        assert_eq!(
            canary_up["metadata"]["name"],
            "test-podinfo-canaryupstream-9898"
        );
        assert_eq!(
            primary["spec"],
            json!({
                "labels": {"tier": "a"},
                "connectionConfig": {"maxRequestsPerConnection": 10},
                "circuitBreakers": {"maxConnections": 5},
                "useHttp2": true,
                "httpProxyHostName": "proxy",
                "kube": {"serviceName": "podinfo-primary", "serviceNamespace": "test",
                         "servicePort": 9898, "selector": {"app": "podinfo-primary"}}
            })
        );
        assert_eq!(
            canary_up["spec"]["kube"],
            json!({"serviceName": "podinfo-canary", "serviceNamespace": "test",
                   "servicePort": 9898, "selector": {"app": "podinfo"}})
        );
        assert_eq!(
            canary_up["metadata"]["ownerReferences"][0]["kind"],
            "Canary"
        );
        let [plain, _] = build_upstreams(&c, ("app", "podinfo"), None);
        assert_eq!(plain["spec"].as_object().unwrap().len(), 1, "{plain}");
    }

    #[test]
    fn ab_testing_matches_first_and_sends_the_rest_to_the_primary() {
        let c = gloo_canary(json!({"analysis": {"iterations": 5, "match": [
            {"headers": {"x-canary": {"exact": "insider"}, "user-agent": {"regex": ".*Firefox.*"}},
             "method": {"exact": "get"}},
            {"headers": {"cookie": {"prefix": "a.b"}}, "queryParams": {"beta": {"suffix": "on"}}},
            {"withoutHeaders": {"x-old": {"exact": "1"}}}
        ]}}));
        // Matching requests to the canary, the others by the weights (all to the primary).
        let routes = Routes {
            ab_match: true,
            ..Routes::PRIMARY
        };
        let obj = build_route_table(&c, routes).unwrap();
        assert_eq!(
            obj["spec"]["routes"],
            json!([
                {"matchers": [
                    {"headers": [{"name": "user-agent", "value": ".*Firefox.*", "regex": true},
                                 {"name": "x-canary", "value": "insider"}],
                     "methods": ["GET"]},
                    {"headers": [{"name": "cookie", "value": "a\\.b.*", "regex": true}],
                     "queryParameters": [{"name": "beta", "value": ".*on", "regex": true}]},
                    {"headers": [{"name": "x-old", "value": "1", "invertMatch": true}]}
                 ],
                 "routeAction": {"multi": {"destinations": [
                     {"destination": {"upstream": {"name": "test-podinfo-primaryupstream-9898", "namespace": "test"}}},
                     {"destination": {"upstream": {"name": "test-podinfo-canaryupstream-9898", "namespace": "test"}}, "weight": 100}]}},
                 "inheritablePathMatchers": true},
                {"routeAction": {"multi": {"destinations": [
                     {"destination": {"upstream": {"name": "test-podinfo-primaryupstream-9898", "namespace": "test"}}, "weight": 100},
                     {"destination": {"upstream": {"name": "test-podinfo-canaryupstream-9898", "namespace": "test"}}}]}},
                 "inheritablePathMatchers": true}
            ])
        );
        let spec: RouteTableSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
        assert_eq!(routes_of(&spec, &c), routes);
        // A weighted canary with a match: the others follow the weights.
        let weighted = Routes {
            ab_match: true,
            ..Routes::weighted(30)
        };
        let spec = build_spec(&c, weighted).unwrap();
        assert_eq!(spec.routes[1].route_action.multi.destinations[1].weight, 30);
        assert_eq!(routes_of(&spec, &c), weighted);
        // After the analysis the match goes: one route, everything to the primary.
        let after = build_spec(&c, Routes::PRIMARY).unwrap();
        assert_eq!(after.routes.len(), 1);
        assert!(after.routes[0].matchers.is_empty());
        assert_eq!(routes_of(&after, &c), Routes::PRIMARY);
    }

    #[test]
    fn what_gloo_cannot_do_is_refused_naming_the_field() {
        let mirrored = gloo_canary(json!({}));
        let err = build_spec(
            &mirrored,
            Routes {
                mirror: Some(50),
                ..Routes::PRIMARY
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("gloo") && err.contains("spec.analysis.mirror"),
            "{err}"
        );
        let c = gloo_canary(json!({"analysis": {"iterations": 5, "match": [
            {"uri": {"prefix": "/api"}, "method": {"prefix": "G"}}
        ]}}));
        let err = build_spec(
            &c,
            Routes {
                ab_match: true,
                ..Routes::weighted(100)
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("spec.analysis.match[0].uri"), "{err}");
        assert!(err.contains("spec.analysis.match[0].method"), "{err}");
    }

    #[test]
    fn drift_reads_back_weights_from_the_route_to_the_primary() {
        let c = gloo_canary(json!({}));
        let mut spec = build_spec(&c, Routes::weighted(30)).unwrap();
        spec.routes[0].route_action.multi.destinations[0].weight = 1;
        spec.routes[0].route_action.multi.destinations[1].weight = 3;
        assert_eq!(routes_of(&spec, &c), Routes::weighted(75));
        assert_eq!(routes_of(&RouteTableSpec::default(), &c), Routes::PRIMARY);
    }
}
