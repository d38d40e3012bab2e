//! The `apisix` provider: the `ApisixRoute` (`apisix.apache.org/v2`) named by `spec.routeRef`
//! (the user's) is read and copied into an ApisixRoute `<routeRef>-<svc>-canary` that fledge
//! owns and that carries the routes, as Flagger writes it:
//!
//! - Of the user's `spec.http` routes, the first with a backend to the apex Service `<svc>`
//!   (it must have that one backend only), with `priority: 10000` so that APISIX prefers it to
//!   the user's route for the same requests.
//! - Its backend sent to `<svc>-primary` and a copy of it (port, resolve granularity, subset) to
//!   `<svc>-canary`, weighted.
//! - The rest of the user's spec (its `ingressClassName`) but its `stream` routes.
//! - The user's labels and annotations, but the last applied configuration and Flux's (as the
//!   Ingress routers copy them), with Flux's `disabled` switches.
//!
//! On finalization with revert the copy is deleted: the user's route then serves everything
//! through the apex Service. Weights are all it carries (as in Flagger): A/B matching,
//! mirroring and session affinity are refused.

use fledge_api::Canary;
use fledge_core::Routes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use serde_json::{Value, json};

use crate::ingress::{copied_annotations, copied_labels};
use crate::{
    Capabilities, Error, PeerKind, RouteTarget, Router, ServiceNames, cannot, owner_reference,
    release_apex, weights_only,
};

/// The provider name.
pub const PROVIDER: &str = "apisix";

/// The kind fledge copies and writes.
pub const KIND: PeerKind = PeerKind {
    group: "apisix.apache.org",
    version: "v2",
    kind: "ApisixRoute",
    plural: "apisixroutes",
    namespaced: true,
};

/// The priority of the copied route (Flagger's): above any the user is likely to give.
pub const PRIORITY: i64 = 10000;

/// `spec.routeRef.name`, or an error naming the field.
pub fn route_ref_name(canary: &Canary) -> Result<&str, Error> {
    canary
        .spec
        .route_ref
        .as_ref()
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            cannot(
                PROVIDER,
                format!(
                    "spec.routeRef is required: name the ApisixRoute that routes to the Service \
                     {}; provider apisix copies it into <name>-{}-canary",
                    canary.spec.apex_service_name(),
                    canary.spec.apex_service_name()
                ),
            )
        })
}

/// `<routeRef>-<svc>-canary`, the ApisixRoute the router writes (`<svc>-<svc>-canary` when the
/// Canary names no route: it has nothing to route then, and says so when asked to).
pub fn canary_route_name(canary: &Canary) -> String {
    let apex = canary.spec.apex_service_name();
    let route = route_ref_name(canary).unwrap_or(apex);
    format!("{route}-{apex}-canary")
}

/// The backend object of `service` with `weight`, the rest of `backend` kept.
fn backend_to(backend: &Value, service: &str, weight: i32) -> Value {
    let mut b = backend.clone();
    b["serviceName"] = json!(service);
    b["weight"] = json!(weight);
    b
}

/// The canary route for `routes`: the copy of the user's ApisixRoute `apex` (its JSON), as
/// JSON for server-side apply; an error for what the provider cannot do or a route without a
/// backend to the apex Service.
pub fn build_route(canary: &Canary, apex: &Value, routes: Routes) -> Result<Value, Error> {
    weights_only(PROVIDER, &routes)?;
    let names = ServiceNames::of(canary);
    let route_name = route_ref_name(canary)?;
    let http = apex["spec"]["http"].as_array().filter(|h| !h.is_empty());
    let Some(http) = http else {
        return Err(cannot(
            PROVIDER,
            format!(
                "spec.routeRef: ApisixRoute {route_name} has no spec.http routes; add one whose \
                 backend is the Service {}",
                names.apex
            ),
        ));
    };
    let serves_apex = |r: &&Value| {
        r["backends"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["serviceName"] == names.apex.as_str()))
    };
    let Some(target) = http.iter().find(serves_apex) else {
        return Err(cannot(
            PROVIDER,
            format!(
                "spec.routeRef: ApisixRoute {route_name} has no spec.http route with a backend \
                 to the Service {apex}; point one at {apex}, which fledge creates",
                apex = names.apex
            ),
        ));
    };
    let backends = target["backends"].as_array().cloned().unwrap_or_default();
    if backends.len() != 1 {
        return Err(cannot(
            PROVIDER,
            format!(
                "spec.routeRef: the http route {:?} of ApisixRoute {route_name} has {} backends; \
                 provider apisix splits a route with one backend (the Service {}), as Flagger",
                target["name"].as_str().unwrap_or_default(),
                backends.len(),
                names.apex
            ),
        ));
    }
    let primary = &backends[0];
    let mut canary_backend = json!({"serviceName": names.canary, "weight": routes.canary});
    for key in ["servicePort", "resolveGranularity", "subset"] {
        if let Some(v) = primary.get(key) {
            canary_backend[key] = v.clone();
        }
    }
    let mut route = target.clone();
    route["priority"] = json!(PRIORITY);
    route["backends"] = json!([
        backend_to(primary, &names.primary, 100 - routes.canary),
        canary_backend
    ]);

    let meta: ObjectMeta = serde_json::from_value(apex["metadata"].clone()).unwrap_or_default();
    let mut metadata = json!({
        "name": canary_route_name(canary),
        "namespace": canary.metadata.namespace,
        "labels": copied_labels(&meta),
        "annotations": copied_annotations(&meta, |_| false),
    });
    if let Some(owner) = owner_reference(canary) {
        metadata["ownerReferences"] = json!([owner]);
    }
    // The rest of the spec (the ingress class) as the user wrote it; stream routes are not
    // copied (they would claim the user's TCP ports a second time).
    let mut spec = apex["spec"].clone();
    if let Some(fields) = spec.as_object_mut() {
        fields.remove("stream");
    }
    spec["http"] = json!([route]);
    Ok(json!({
        "apiVersion": KIND.api_version(),
        "kind": KIND.kind,
        "metadata": metadata,
        "spec": spec,
    }))
}

/// The routes a canary ApisixRoute gives: the canary's share of the weights of the http route
/// with the primary backend.
pub fn routes_of(obj: &Value, names: &ServiceNames) -> Routes {
    let weight_of = |backends: &[Value], service: &str| -> i64 {
        backends
            .iter()
            .filter(|b| b["serviceName"] == service)
            // APISIX's default weight is 100.
            .map(|b| b["weight"].as_i64().unwrap_or(100).max(0))
            .sum()
    };
    let routes = obj["spec"]["http"].as_array().cloned().unwrap_or_default();
    for r in &routes {
        let backends = r["backends"].as_array().cloned().unwrap_or_default();
        if !backends
            .iter()
            .any(|b| b["serviceName"] == names.primary.as_str())
        {
            continue;
        }
        let (p, c) = (
            weight_of(&backends, &names.primary),
            weight_of(&backends, &names.canary),
        );
        if p + c == 0 {
            return Routes::PRIMARY;
        }
        return Routes::weighted(i32::try_from((c * 100 + (p + c) / 2) / (p + c)).unwrap_or(0));
    }
    Routes::PRIMARY
}

/// Routes through a copy of the user's ApisixRoute.
pub struct ApisixRouter {
    client: Client,
}

impl ApisixRouter {
    /// A router using `client`.
    pub fn new(client: Client) -> Self {
        ApisixRouter { client }
    }
}

#[async_trait::async_trait]
impl Router for ApisixRouter {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn routing_kind(&self) -> PeerKind {
        KIND
    }

    fn routing_name(&self, canary: &Canary) -> String {
        canary_route_name(canary)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_weights: true,
            ..Capabilities::default()
        }
    }

    /// Copies the user's ApisixRoute into the canary route for `routes`.
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        let name = route_ref_name(t.canary)?;
        let apex = KIND
            .get(&self.client, t.namespace(), PROVIDER, name)
            .await?
            .ok_or_else(|| {
                cannot(
                    PROVIDER,
                    format!(
                        "spec.routeRef: ApisixRoute {}/{name} does not exist; create it (routing \
                         to the Service {}) or fix the reference",
                        t.namespace(),
                        t.canary.spec.apex_service_name()
                    ),
                )
            })?;
        let obj = build_route(t.canary, &apex, routes)?;
        KIND.apply(&self.client, t.namespace(), PROVIDER, &obj)
            .await
    }

    /// The routes the canary ApisixRoute gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let name = canary_route_name(t.canary);
        let obj = KIND
            .get(&self.client, t.namespace(), PROVIDER, &name)
            .await?;
        Ok(obj.map(|o| routes_of(&o, &ServiceNames::of(t.canary))))
    }

    /// Points the apex Service at the target and deletes the canary route: the user's route
    /// then serves everything through the apex Service, the target's pods.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        release_apex(&self.client, t).await?;
        KIND.delete(&self.client, t.namespace(), &canary_route_name(t.canary))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::canary;

    fn apisix_canary() -> Canary {
        canary(
            PROVIDER,
            json!({"service": {"port": 80, "targetPort": 9898},
                   "routeRef": {"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
                                "name": "podinfo"}}),
        )
    }

    /// The user's ApisixRoute of Flagger's APISIX tutorial, with a second http route (to
    /// another Service), a stream route, and labels and annotations.
    fn user_route() -> Value {
        json!({
            "apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute",
            "metadata": {"name": "podinfo", "namespace": "test",
                "labels": {"team": "web", "kustomize.toolkit.fluxcd.io/name": "apps"},
                "annotations": {"note": "edge",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {
                "ingressClassName": "apisix",
                "http": [
                    {"name": "other", "match": {"paths": ["/other"]},
                     "backends": [{"serviceName": "other", "servicePort": 80}]},
                    {"name": "method", "match": {"hosts": ["app.example.com"],
                        "methods": ["GET"], "paths": ["/*"]},
                     "plugins": [{"name": "prometheus", "enable": true}],
                     "backends": [{"serviceName": "podinfo", "servicePort": 80,
                                   "resolveGranularity": "service"}]}
                ],
                "stream": [{"name": "tcp", "protocol": "TCP", "match": {"ingressPort": 9100},
                            "backend": {"serviceName": "podinfo", "servicePort": 9100}}]
            }
        })
    }

    /// What Flagger v1.36.1 (`pkg/router/apisix.go`) writes as the canary route's spec for
    /// these weights (its `stream` aside, see the README).
    fn flagger_spec(primary: i32, canary: i32) -> Value {
        json!({"ingressClassName": "apisix", "http": [{
            "name": "method",
            "priority": 10000,
            "match": {"hosts": ["app.example.com"], "methods": ["GET"], "paths": ["/*"]},
            "plugins": [{"name": "prometheus", "enable": true}],
            "backends": [
                {"serviceName": "podinfo-primary", "servicePort": 80,
                 "resolveGranularity": "service", "weight": primary},
                {"serviceName": "podinfo-canary", "servicePort": 80,
                 "resolveGranularity": "service", "weight": canary}
            ]
        }]})
    }

    #[test]
    fn writes_what_flagger_writes_at_init_each_weight_promotion_and_rollback() {
        let c = apisix_canary();
        let names = ServiceNames::of(&c);
        for w in [0, 10, 50, 100, 0] {
            let obj = build_route(&c, &user_route(), Routes::weighted(w)).unwrap();
            assert_eq!(obj["apiVersion"], "apisix.apache.org/v2");
            assert_eq!(obj["kind"], "ApisixRoute");
            assert_eq!(obj["metadata"]["name"], "podinfo-podinfo-canary");
            assert_eq!(obj["metadata"]["ownerReferences"][0]["uid"], "uid-1");
            assert_eq!(obj["spec"], flagger_spec(100 - w, w), "weight {w}");
            assert_eq!(routes_of(&obj, &names), Routes::weighted(w));
        }
    }

    #[test]
    fn copies_labels_and_annotations_but_the_last_applied_and_fluxs() {
        let obj = build_route(&apisix_canary(), &user_route(), Routes::PRIMARY).unwrap();
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"team": "web", "app.kubernetes.io/managed-by": "fledge"})
        );
        assert_eq!(
            obj["metadata"]["annotations"],
            json!({"note": "edge", "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                   "helm.toolkit.fluxcd.io/driftDetection": "disabled"})
        );
    }

    #[test]
    fn refuses_routes_it_cannot_copy_and_what_it_cannot_route() {
        let c = apisix_canary();
        let mut no_apex = user_route();
        no_apex["spec"]["http"][1]["backends"][0]["serviceName"] = json!("web");
        let e = build_route(&c, &no_apex, Routes::PRIMARY).unwrap_err();
        assert!(
            matches!(&e, Error::Router { provider, message } if provider == "apisix"
                && message.contains("spec.routeRef") && message.contains("Service podinfo")),
            "{e}"
        );
        let mut two = user_route();
        two["spec"]["http"][1]["backends"]
            .as_array_mut()
            .unwrap()
            .push(json!({"serviceName": "web", "servicePort": 80}));
        let e = build_route(&c, &two, Routes::PRIMARY).unwrap_err();
        assert!(e.to_string().contains("2 backends"), "{e}");
        let empty = json!({"metadata": {"name": "podinfo"}, "spec": {}});
        let e = build_route(&c, &empty, Routes::PRIMARY).unwrap_err();
        assert!(e.to_string().contains("no spec.http routes"), "{e}");
        let ab = Routes {
            ab_match: true,
            ..Routes::PRIMARY
        };
        let e = build_route(&c, &user_route(), ab).unwrap_err();
        assert!(e.to_string().contains("spec.analysis.match"), "{e}");
        let mirrored = Routes {
            mirror: Some(10),
            ..Routes::PRIMARY
        };
        let e = build_route(&c, &user_route(), mirrored).unwrap_err();
        assert!(e.to_string().contains("spec.analysis.mirror"), "{e}");
        let no_ref = canary(PROVIDER, json!({}));
        let e = build_route(&no_ref, &user_route(), Routes::PRIMARY).unwrap_err();
        assert!(e.to_string().contains("spec.routeRef is required"), "{e}");
        assert_eq!(canary_route_name(&no_ref), "podinfo-podinfo-canary");
    }

    #[test]
    fn weights_read_back_with_apisixs_default() {
        let names = ServiceNames::of(&apisix_canary());
        let obj = json!({"spec": {"http": [{"backends": [
            {"serviceName": "podinfo-primary"},
            {"serviceName": "podinfo-canary", "weight": 300}
        ]}]}});
        assert_eq!(routes_of(&obj, &names), Routes::weighted(75));
        assert_eq!(routes_of(&json!({}), &names), Routes::PRIMARY);
    }
}
