//! The `kuma` provider: a Kuma `TrafficRoute` (`kuma.io/v1alpha1`) named like the apex Service,
//! as Flagger writes it:
//!
//! - In the mesh of the Canary's `kuma.io/mesh` annotation (`default` without one).
//! - From every data plane proxy (`kuma.io/service: "*"`) to the apex Service's Kuma service
//!   (`<svc>_<namespace>_svc_<port>`), split by weight between the Kuma services of
//!   `<svc>-primary` and `<svc>-canary`.
//! - Labels and annotations of `spec.service.apex`, with Flux's `disabled` switches.
//!
//! A TrafficRoute is cluster-scoped: it cannot carry an owner reference to the Canary, so it is
//! marked with [`OWNER_UID_LABEL`] instead and deleted by [`Router::collect`] when the Canary
//! goes. Two Canaries whose apex Services share a name in different namespaces would want the
//! same TrafficRoute; the second is refused rather than taking the first one's over.
//!
//! Weights are all a TrafficRoute split carries here (as in Flagger): A/B matching, mirroring
//! and session affinity are refused.

use std::collections::BTreeMap;

use fledge_api::Canary;
use fledge_core::Routes;
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    Capabilities, Error, OWNER_ANNOTATION, OWNER_UID_LABEL, PeerKind, RouteTarget, Router,
    ServiceNames, cannot, release_apex, weights_only,
};

/// The provider name.
pub const PROVIDER: &str = "kuma";

/// The kind fledge writes (cluster-scoped).
pub const KIND: PeerKind = PeerKind {
    group: "kuma.io",
    version: "v1alpha1",
    kind: "TrafficRoute",
    plural: "trafficroutes",
    namespaced: false,
};

/// The Canary annotation naming the Kuma mesh (Flagger's).
pub const MESH_ANNOTATION: &str = "kuma.io/mesh";

/// The Kuma tag naming a service.
const SERVICE_TAG: &str = "kuma.io/service";

/// `TrafficRoute.spec`, as much of it as fledge writes and reads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficRouteSpec {
    /// Where the traffic comes from.
    #[serde(default)]
    pub sources: Vec<Selector>,
    /// Which service the traffic is for.
    #[serde(default)]
    pub destinations: Vec<Selector>,
    /// Where it goes.
    #[serde(default)]
    pub conf: Conf,
}

/// A selector of Kuma tags.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// Tags and values (`*` for any).
    #[serde(default, rename = "match")]
    pub tags: BTreeMap<String, String>,
}

/// `conf`: the weighted split.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Conf {
    /// Destinations and their relative weights.
    #[serde(default)]
    pub split: Vec<Split>,
}

/// A destination of the split.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// Relative weight; 0 sends nothing.
    #[serde(default)]
    pub weight: u32,
    /// The destination's tags.
    #[serde(default)]
    pub destination: BTreeMap<String, String>,
}

/// The Kuma service name of a Kubernetes Service port: `<name>_<namespace>_svc_<port>`.
pub fn service_tag(name: &str, namespace: &str, port: i32) -> String {
    format!("{name}_{namespace}_svc_{port}")
}

fn tags(service: String) -> BTreeMap<String, String> {
    BTreeMap::from([(SERVICE_TAG.to_string(), service)])
}

/// The mesh of a Canary: its `kuma.io/mesh` annotation, else `default`.
pub fn mesh(canary: &Canary) -> String {
    canary
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MESH_ANNOTATION))
        .filter(|m| !m.is_empty())
        .cloned()
        .unwrap_or_else(|| "default".into())
}

fn namespace(canary: &Canary) -> &str {
    canary.metadata.namespace.as_deref().unwrap_or("default")
}

/// A spec from every proxy to the apex Service, split over `to`.
fn spec_to(canary: &Canary, to: &[(&str, u32)]) -> TrafficRouteSpec {
    let (ns, port) = (namespace(canary), canary.spec.service.port);
    TrafficRouteSpec {
        sources: vec![Selector {
            tags: tags("*".into()),
        }],
        destinations: vec![Selector {
            tags: tags(service_tag(canary.spec.apex_service_name(), ns, port)),
        }],
        conf: Conf {
            split: to
                .iter()
                .map(|(name, weight)| Split {
                    weight: *weight,
                    destination: tags(service_tag(name, ns, port)),
                })
                .collect(),
        },
    }
}

/// The TrafficRoute spec for `routes`; an error for what it cannot do.
pub fn build_spec(canary: &Canary, routes: Routes) -> Result<TrafficRouteSpec, Error> {
    weights_only(PROVIDER, &routes)?;
    let names = ServiceNames::of(canary);
    let weight = u32::try_from(routes.canary.clamp(0, 100)).unwrap_or(0);
    Ok(spec_to(
        canary,
        &[(&names.primary, 100 - weight), (&names.canary, weight)],
    ))
}

/// The metadata and mesh of the TrafficRoute: the apex Service's name, the labels and
/// annotations of `spec.service.apex`, Flux's switches and, while `owned`, the owner marks.
fn skeleton(canary: &Canary, owned: bool) -> serde_json::Value {
    let (mut labels, mut annotations) = crate::apex_metadata(canary);
    if owned {
        if let Some(uid) = canary.metadata.uid.as_ref() {
            labels.insert(OWNER_UID_LABEL.into(), uid.clone());
        }
        annotations.insert(
            OWNER_ANNOTATION.into(),
            format!(
                "{}/{}",
                namespace(canary),
                canary.metadata.name.as_deref().unwrap_or_default()
            ),
        );
    }
    json!({
        "apiVersion": KIND.api_version(),
        "kind": KIND.kind,
        "metadata": {
            "name": canary.spec.apex_service_name(),
            "labels": labels,
            "annotations": annotations,
        },
        "mesh": mesh(canary),
    })
}

/// The TrafficRoute for `routes`, as JSON for server-side apply.
pub fn build_traffic_route(canary: &Canary, routes: Routes) -> Result<serde_json::Value, Error> {
    let mut obj = skeleton(canary, true);
    obj["spec"] = serde_json::to_value(build_spec(canary, routes)?)?;
    Ok(obj)
}

/// The TrafficRoute left on finalization with revert: the apex Service's Kuma service to
/// itself, no longer marked as the Canary's.
pub fn released_traffic_route(canary: &Canary) -> Result<serde_json::Value, Error> {
    let mut obj = skeleton(canary, false);
    obj["spec"] = serde_json::to_value(spec_to(canary, &[(canary.spec.apex_service_name(), 100)]))?;
    Ok(obj)
}

/// The routes a TrafficRoute gives: the canary's share of the split's weights between the
/// primary's and the canary's Kuma services.
pub fn routes_of(spec: &TrafficRouteSpec, canary: &Canary) -> Routes {
    let names = ServiceNames::of(canary);
    let (ns, port) = (namespace(canary), canary.spec.service.port);
    let weight = |name: &str| -> u64 {
        let tag = service_tag(name, ns, port);
        spec.conf
            .split
            .iter()
            .filter(|s| s.destination.get(SERVICE_TAG) == Some(&tag))
            .map(|s| u64::from(s.weight))
            .sum()
    };
    let (p, c) = (weight(&names.primary), weight(&names.canary));
    if p + c == 0 {
        return Routes::PRIMARY;
    }
    Routes::weighted(i32::try_from((c * 100 + (p + c) / 2) / (p + c)).unwrap_or(0))
}

/// The owner marks of an existing TrafficRoute: the uid label and the owner annotation.
fn owner_of(obj: &serde_json::Value) -> (Option<&str>, &str) {
    let meta = &obj["metadata"];
    (
        meta["labels"][OWNER_UID_LABEL].as_str(),
        meta["annotations"][OWNER_ANNOTATION]
            .as_str()
            .unwrap_or("another Canary"),
    )
}

/// Refuses to take over a TrafficRoute another Canary owns (the name is cluster-wide). One
/// without the mark (Flagger's, or one released on deletion) is taken over.
pub fn check_owner(canary: &Canary, existing: &serde_json::Value) -> Result<(), Error> {
    match owner_of(existing) {
        (Some(uid), owner) if Some(uid) != canary.metadata.uid.as_deref() => Err(cannot(
            PROVIDER,
            format!(
                "TrafficRoute {name} (cluster-scoped, named after the apex Service) belongs to \
                 the Canary {owner}; set spec.service.name to an apex name no Canary of another \
                 namespace uses",
                name = canary.spec.apex_service_name()
            ),
        )),
        _ => Ok(()),
    }
}

/// Routes through a Kuma TrafficRoute.
pub struct KumaRouter {
    client: Client,
}

impl KumaRouter {
    /// A router using `client`.
    pub fn new(client: Client) -> Self {
        KumaRouter { client }
    }

    async fn existing(&self, t: &RouteTarget<'_>) -> Result<Option<serde_json::Value>, Error> {
        let name = t.canary.spec.apex_service_name();
        KIND.get(&self.client, t.namespace(), PROVIDER, name).await
    }
}

#[async_trait::async_trait]
impl Router for KumaRouter {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn routing_kind(&self) -> PeerKind {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_weights: true,
            ..Capabilities::default()
        }
    }

    /// Applies the TrafficRoute for `routes`, unless another Canary owns one of that name.
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        let obj = build_traffic_route(t.canary, routes)?;
        if let Some(existing) = self.existing(t).await? {
            check_owner(t.canary, &existing)?;
        }
        KIND.apply(&self.client, t.namespace(), PROVIDER, &obj)
            .await
    }

    /// The routes the TrafficRoute gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let spec: Option<TrafficRouteSpec> = KIND.read_spec(&self.client, t, PROVIDER).await?;
        Ok(spec.map(|s| routes_of(&s, t.canary)))
    }

    /// Deletes the TrafficRoute while it is this Canary's (not once released by `finalize`).
    async fn collect(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        let Some(existing) = self.existing(t).await? else {
            return Ok(());
        };
        let uid = owner_of(&existing).0;
        if uid.is_some() && uid == t.canary.metadata.uid.as_deref() {
            let name = t.canary.spec.apex_service_name();
            KIND.delete(&self.client, t.namespace(), name).await?;
        }
        Ok(())
    }

    /// Points the apex Service at the target and the TrafficRoute at the apex Service's Kuma
    /// service; both stay, no longer the Canary's, once it is gone.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        release_apex(&self.client, t).await?;
        if let Some(existing) = self.existing(t).await? {
            check_owner(t.canary, &existing)?;
        }
        let obj = released_traffic_route(t.canary)?;
        KIND.apply(&self.client, t.namespace(), PROVIDER, &obj)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::canary;

    /// The spec Flagger v1.36.1 (`pkg/router/kuma.go`) writes for `test/podinfo` on port 9898
    /// with these weights.
    fn flagger_spec(primary: u32, canary: u32) -> serde_json::Value {
        json!({
            "sources": [{"match": {"kuma.io/service": "*"}}],
            "destinations": [{"match": {"kuma.io/service": "podinfo_test_svc_9898"}}],
            "conf": {"split": [
                {"weight": primary, "destination": {"kuma.io/service": "podinfo-primary_test_svc_9898"}},
                {"weight": canary, "destination": {"kuma.io/service": "podinfo-canary_test_svc_9898"}}
            ]}
        })
    }

    fn kuma_canary() -> Canary {
        let mut c = canary(
            PROVIDER,
            json!({"service": {"port": 9898, "apex": {
                "labels": {"team": "web"},
                "annotations": {"9898.service.kuma.io/protocol": "http"}}}}),
        );
        c.metadata.annotations = Some([(MESH_ANNOTATION.to_string(), "edge".to_string())].into());
        c
    }

    #[test]
    fn writes_what_flagger_writes_at_init_each_weight_promotion_and_rollback() {
        let c = kuma_canary();
        // Initialization (0), the steps, promotion (100 then 0) and a rollback (0).
        for w in [0, 10, 50, 100, 0] {
            let obj = build_traffic_route(&c, Routes::weighted(w)).unwrap();
            assert_eq!(obj["apiVersion"], "kuma.io/v1alpha1");
            assert_eq!(obj["kind"], "TrafficRoute");
            assert_eq!(obj["mesh"], "edge");
            assert_eq!(
                obj["spec"],
                flagger_spec(100 - w as u32, w as u32),
                "weight {w}"
            );
            let spec: TrafficRouteSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
            assert_eq!(routes_of(&spec, &c), Routes::weighted(w));
        }
    }

    #[test]
    fn metadata_is_the_apex_services_with_flux_switches_and_the_owner_marks() {
        let obj = build_traffic_route(&kuma_canary(), Routes::PRIMARY).unwrap();
        let meta = &obj["metadata"];
        assert_eq!(meta["name"], "podinfo");
        // Cluster-scoped: no namespace, no owner reference.
        assert!(meta.get("namespace").is_none() && meta.get("ownerReferences").is_none());
        assert_eq!(
            meta["labels"],
            json!({"team": "web", "app.kubernetes.io/managed-by": "fledge",
                   OWNER_UID_LABEL: "uid-1"})
        );
        assert_eq!(
            meta["annotations"],
            json!({"9898.service.kuma.io/protocol": "http",
                   "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                   "helm.toolkit.fluxcd.io/driftDetection": "disabled",
                   OWNER_ANNOTATION: "test/podinfo"})
        );
        // Without the annotation, the default mesh.
        let plain = canary(PROVIDER, json!({}));
        assert_eq!(mesh(&plain), "default");
    }

    #[test]
    fn refuses_ab_matching_and_mirroring() {
        let c = kuma_canary();
        let ab = Routes {
            ab_match: true,
            ..Routes::PRIMARY
        };
        let e = build_traffic_route(&c, ab).unwrap_err();
        assert!(
            matches!(&e, Error::Router { provider, message } if provider == "kuma"
                && message.contains("spec.analysis.match")),
            "{e}"
        );
        let mirrored = Routes {
            mirror: Some(10),
            ..Routes::PRIMARY
        };
        let e = build_traffic_route(&c, mirrored).unwrap_err();
        assert!(e.to_string().contains("spec.analysis.mirror"), "{e}");
    }

    #[test]
    fn released_route_sends_the_apex_to_itself_without_owner_marks() {
        let obj = released_traffic_route(&kuma_canary()).unwrap();
        assert_eq!(
            obj["spec"]["conf"],
            json!({"split": [{"weight": 100,
                "destination": {"kuma.io/service": "podinfo_test_svc_9898"}}]})
        );
        assert!(obj["metadata"]["labels"].get(OWNER_UID_LABEL).is_none());
        assert!(
            obj["metadata"]["annotations"]
                .get(OWNER_ANNOTATION)
                .is_none()
        );
        let spec: TrafficRouteSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
        assert_eq!(routes_of(&spec, &kuma_canary()), Routes::PRIMARY);
    }

    #[test]
    fn another_canarys_route_is_not_taken_over() {
        let c = kuma_canary();
        let theirs = json!({"metadata": {"labels": {OWNER_UID_LABEL: "uid-2"},
            "annotations": {OWNER_ANNOTATION: "shop/podinfo"}}});
        let e = check_owner(&c, &theirs).unwrap_err();
        assert!(
            e.to_string().contains("shop/podinfo") && e.to_string().contains("spec.service.name"),
            "{e}"
        );
        let ours = build_traffic_route(&c, Routes::PRIMARY).unwrap();
        assert!(check_owner(&c, &ours).is_ok());
        // Flagger's (no mark) and a released one are taken over.
        assert!(check_owner(&c, &json!({"metadata": {"name": "podinfo"}})).is_ok());
        assert!(check_owner(&c, &released_traffic_route(&c).unwrap()).is_ok());
    }

    #[test]
    fn relative_weights_read_as_shares() {
        let c = kuma_canary();
        let mut spec = build_spec(&c, Routes::PRIMARY).unwrap();
        spec.conf.split[0].weight = 3;
        spec.conf.split[1].weight = 1;
        assert_eq!(routes_of(&spec, &c), Routes::weighted(25));
        spec.conf.split.clear();
        assert_eq!(routes_of(&spec, &c), Routes::PRIMARY);
    }
}
