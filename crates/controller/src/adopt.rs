//! Taking over what Flagger created, for a live cut-over.
//!
//! A Canary moved from `flagger.app/v1beta1` to `fledge.dev/v1beta1` finds `<target>-primary`,
//! the apex, `-primary` and `-canary` Services, the primary's HPA, the `-primary` copies of
//! tracked ConfigMaps and Secrets and the routing objects already there, each owned (as its
//! controller) by Flagger's Canary of the same name. fledge keeps them as they are (no pod is
//! restarted, no weight changes) and only moves their owner reference from Flagger's Canary to
//! its own: an object may have one controller reference only (the API server refuses fledge's
//! server-side apply otherwise), and deleting Flagger's Canary afterwards must not let the
//! garbage collector delete the primary and the Services.
//!
//! The primary is adopted last: while it still names Flagger's Canary, a later reconcile adopts
//! whatever an interrupted one left.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use fledge_api::Canary;

use crate::Result;
use crate::events::Recorder;
use crate::routers::ServiceNames;
use crate::workload::{ConfigRef, primary_name};

/// Flagger's API group.
pub const FLAGGER_GROUP: &str = "flagger.app";

/// Whether `refs` name Flagger's Canary `canary`.
pub fn owned_by_flagger(refs: &[OwnerReference], canary: &str) -> bool {
    refs.iter().any(|r| is_flagger_canary(r, canary))
}

fn is_flagger_canary(r: &OwnerReference, canary: &str) -> bool {
    r.kind == "Canary" && r.name == canary && r.api_version.split('/').next() == Some(FLAGGER_GROUP)
}

/// `refs` with Flagger's Canary `canary` replaced by `owner` (other owners kept, in order), or
/// `None` when Flagger's Canary is not among them.
pub fn replace_flagger_owner(
    refs: &[OwnerReference],
    canary: &str,
    owner: &OwnerReference,
) -> Option<Vec<OwnerReference>> {
    if !owned_by_flagger(refs, canary) {
        return None;
    }
    let mut out: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !is_flagger_canary(r, canary) && r.uid != owner.uid)
        .cloned()
        .collect();
    out.push(owner.clone());
    Some(out)
}

/// The objects, besides the primary Deployment, that fledge writes for `canary` and Flagger may
/// have created: `(resource, name)`.
pub fn candidates(canary: &Canary, tracked: &[&ConfigRef]) -> Vec<(ApiResource, String)> {
    let ar = |group: &str, version: &str, kind: &str, plural: &str| ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    };
    let names = ServiceNames::of(canary);
    let service = ar("", "v1", "Service", "services");
    let mut out = vec![
        (service.clone(), names.apex.clone()),
        (service.clone(), names.primary.clone()),
        (service, names.canary.clone()),
    ];
    for r in tracked {
        let res = match r {
            ConfigRef::ConfigMap(_) => ar("", "v1", "ConfigMap", "configmaps"),
            ConfigRef::Secret(_) => ar("", "v1", "Secret", "secrets"),
        };
        out.push((res, primary_name(r.name())));
    }
    if let Some(hpa) = canary.spec.autoscaler_ref.as_ref() {
        let res = match hpa.kind.as_deref() {
            Some("ScaledObject") => ar("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
            _ => ar(
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
        };
        out.push((res, primary_name(&hpa.name)));
    }
    let route = |group: &str, version: &str, kind: &str, plural: &str, name: &str| {
        (ar(group, version, kind, plural), name.to_string())
    };
    match canary.spec.provider_or_default() {
        "gatewayapi:v1" | "gatewayapi:v1beta1" => {
            let version = canary
                .spec
                .provider_or_default()
                .trim_start_matches("gatewayapi:");
            out.push(route(
                "gateway.networking.k8s.io",
                version,
                "HTTPRoute",
                "httproutes",
                &names.apex,
            ));
        }
        "istio" => {
            for (kind, plural, name) in [
                ("VirtualService", "virtualservices", &names.apex),
                ("DestinationRule", "destinationrules", &names.primary),
                ("DestinationRule", "destinationrules", &names.canary),
            ] {
                out.push(route("networking.istio.io", "v1beta1", kind, plural, name));
            }
        }
        "linkerd" | "osm" | "smi:v1alpha1" | "smi:v1alpha2" | "smi:v1alpha3" => {
            let version = match canary.spec.provider_or_default() {
                "smi:v1alpha1" => "v1alpha1",
                "smi:v1alpha3" => "v1alpha3",
                _ => "v1alpha2",
            };
            out.push(route(
                "split.smi-spec.io",
                version,
                "TrafficSplit",
                "trafficsplits",
                &names.apex,
            ));
        }
        "contour" => out.push(route(
            "projectcontour.io",
            "v1",
            "HTTPProxy",
            "httpproxies",
            &names.apex,
        )),
        "nginx" | "skipper" => out.push(route(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            &fledge_routers::ingress::canary_ingress_name(canary),
        )),
        "apisix" => out.push(route(
            "apisix.apache.org",
            "v2",
            "ApisixRoute",
            "apisixroutes",
            &fledge_routers::apisix::canary_route_name(canary),
        )),
        // Flagger's TrafficRoute is cluster-scoped and has no owner reference to move: the
        // kuma router's apply takes it over by name (it is named after the apex Service in
        // both), as it takes over any TrafficRoute no other Canary has marked as its own.
        "kuma" => {}
        "appmesh:v1beta2" => {
            for (kind, plural, name) in [
                ("VirtualNode", "virtualnodes", &names.primary),
                ("VirtualNode", "virtualnodes", &names.canary),
                ("VirtualRouter", "virtualrouters", &names.apex),
                ("VirtualRouter", "virtualrouters", &names.canary),
                ("VirtualService", "virtualservices", &names.apex),
                ("VirtualService", "virtualservices", &names.canary),
            ] {
                out.push(route("appmesh.k8s.aws", "v1beta2", kind, plural, name));
            }
        }
        "appmesh" => {
            let ns = canary.metadata.namespace.as_deref().unwrap_or("default");
            for (kind, plural, name) in [
                ("VirtualNode", "virtualnodes", names.apex.clone()),
                ("VirtualNode", "virtualnodes", names.primary.clone()),
                ("VirtualNode", "virtualnodes", names.canary.clone()),
                (
                    "VirtualService",
                    "virtualservices",
                    format!("{}.{ns}", names.apex),
                ),
                (
                    "VirtualService",
                    "virtualservices",
                    format!("{}.{ns}", names.canary),
                ),
            ] {
                out.push(route("appmesh.k8s.aws", "v1beta1", kind, plural, &name));
            }
        }
        "gloo" => {
            out.push(route(
                "gateway.solo.io",
                "v1",
                "RouteTable",
                "routetables",
                &names.apex,
            ));
            let (primary, canary_upstream) = fledge_routers::gloo::upstream_names(canary);
            for name in [&primary, &canary_upstream] {
                out.push(route("gloo.solo.io", "v1", "Upstream", "upstreams", name));
            }
        }
        "traefik" => out.push(route(
            "traefik.io",
            "v1alpha1",
            "TraefikService",
            "traefikservices",
            &names.apex,
        )),
        _ => {}
    }
    out
}

/// When the primary `<target>-primary` (a Deployment, or a DaemonSet for a DaemonSet target,
/// seen here as a Deployment) is owned by Flagger's Canary of the same name, moves
/// the owner reference of it and of every other object of [`candidates`] that Flagger owns to
/// `owner`, changing nothing else, and records one Event naming them. Does nothing (and asks
/// the API server nothing) when the primary is not Flagger's.
pub async fn adopt_from_flagger(
    client: &Client,
    recorder: &Recorder,
    canary: &Canary,
    owner: &OwnerReference,
    primary: &crate::workload::Workload,
    tracked: &[&ConfigRef],
) -> Result<()> {
    let name = canary.name_any();
    if !owned_by_flagger(primary.owner_references(), &name) {
        return Ok(());
    }
    let ns = canary.namespace().unwrap_or_else(|| "default".into());
    let mut adopted = Vec::new();
    for (res, obj_name) in candidates(canary, tracked) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &res);
        let obj = match api.get_opt(&obj_name).await {
            Ok(Some(o)) => o,
            Ok(None) => continue,
            // A peer API that is not served here (no CRD): nothing of that kind to adopt.
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e.into()),
        };
        if take_over(&api, &obj.metadata, &obj_name, &name, owner).await? {
            adopted.push(format!("{} {obj_name}", res.kind));
        }
    }
    // A DaemonSet target's primary is a DaemonSet (the controller sees it as a Deployment).
    let resource = match canary.spec.target_ref.kind.as_deref() {
        Some("DaemonSet") => ApiResource::erase::<k8s_openapi::api::apps::v1::DaemonSet>(&()),
        _ => ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
    };
    let workloads: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    let primary_name = primary.name_any();
    if take_over(&workloads, &primary.metadata, &primary_name, &name, owner).await? {
        adopted.push(format!("{} {primary_name}", resource.kind));
    }
    let message = format!(
        "Adopted from Flagger's Canary {ns}/{name}, unchanged but for their owner: {}.",
        adopted.join(", ")
    );
    info!(objects = ?adopted, "adopted Flagger's objects");
    let ev = KubeEvent {
        type_: EventType::Normal,
        reason: "AdoptedFromFlagger".into(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &canary.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot record Event");
    }
    Ok(())
}

/// Replaces Flagger's owner reference of one object; `false` when Flagger does not own it.
/// The patch carries the `resourceVersion` read, so it never overwrites a concurrent change.
async fn take_over(
    api: &Api<DynamicObject>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    obj_name: &str,
    canary: &str,
    owner: &OwnerReference,
) -> Result<bool> {
    let refs = meta.owner_references.clone().unwrap_or_default();
    let Some(refs) = replace_flagger_owner(&refs, canary, owner) else {
        return Ok(false);
    };
    let patch = json!({"metadata": {
        "resourceVersion": meta.resource_version,
        "ownerReferences": refs,
    }});
    api.patch(
        obj_name,
        &PatchParams {
            field_manager: Some(crate::controller::MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(api_version: &str, name: &str, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: "Canary".into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn flagger_s_owner_is_replaced_and_others_are_kept() {
        let flagger = reference("flagger.app/v1beta1", "podinfo", "f-1");
        let other = OwnerReference {
            controller: None,
            kind: "ConfigMap".into(),
            ..reference("v1", "bundle", "c-1")
        };
        let ours = reference("fledge.dev/v1beta1", "podinfo", "u-1");
        let refs = vec![other.clone(), flagger];
        assert_eq!(
            replace_flagger_owner(&refs, "podinfo", &ours),
            Some(vec![other.clone(), ours.clone()])
        );
        // Not Flagger's, or Flagger's Canary of another name: nothing to do.
        assert_eq!(
            replace_flagger_owner(std::slice::from_ref(&ours), "podinfo", &ours),
            None
        );
        assert_eq!(
            replace_flagger_owner(
                &[reference("flagger.app/v1beta1", "other", "f-2")],
                "podinfo",
                &ours
            ),
            None
        );
        assert!(!owned_by_flagger(&[], "podinfo"));
    }

    #[test]
    fn candidates_follow_the_provider() {
        let canary: Canary = serde_json::from_value(json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "provider": "gatewayapi:v1",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "10s", "threshold": 2, "maxWeight": 50, "stepWeight": 10}
            }
        }))
        .unwrap();
        let cm = ConfigRef::ConfigMap("settings".into());
        let list: Vec<String> = candidates(&canary, &[&cm])
            .into_iter()
            .map(|(r, n)| format!("{} {n}", r.api_version))
            .collect();
        assert_eq!(
            list,
            [
                "v1 podinfo",
                "v1 podinfo-primary",
                "v1 podinfo-canary",
                "v1 settings-primary",
                "autoscaling/v2 podinfo-primary",
                "gateway.networking.k8s.io/v1 podinfo",
            ]
        );
        // The Ingress routers: Flagger's canary Ingress; OSM and SMI v1alpha1: the split.
        let mut nginx = canary.clone();
        nginx.spec.provider = Some("nginx".into());
        nginx.spec.ingress_ref = serde_json::from_value(json!({"name": "web"})).unwrap();
        let last = candidates(&nginx, &[]).pop().unwrap();
        assert_eq!(
            (
                last.0.api_version.as_str(),
                last.0.plural.as_str(),
                last.1.as_str()
            ),
            ("networking.k8s.io/v1", "ingresses", "web-canary")
        );
        let mut contour = canary.clone();
        contour.spec.provider = Some("contour".into());
        let last = candidates(&contour, &[]).pop().unwrap();
        assert_eq!(
            (
                last.0.api_version.as_str(),
                last.0.plural.as_str(),
                last.1.as_str()
            ),
            ("projectcontour.io/v1", "httpproxies", "podinfo")
        );
        let mut apisix = canary.clone();
        apisix.spec.provider = Some("apisix".into());
        apisix.spec.route_ref = Some(fledge_api::LocalObjectReference {
            name: "podinfo".into(),
            ..Default::default()
        });
        let last = candidates(&apisix, &[]).pop().unwrap();
        assert_eq!(
            (
                last.0.api_version.as_str(),
                last.0.plural.as_str(),
                last.1.as_str()
            ),
            (
                "apisix.apache.org/v2",
                "apisixroutes",
                "podinfo-podinfo-canary"
            )
        );
        let mut gloo = canary.clone();
        gloo.spec.provider = Some("gloo".into());
        let tail: Vec<(String, String)> = candidates(&gloo, &[])
            .into_iter()
            .rev()
            .take(3)
            .map(|(r, n)| (r.kind, n))
            .collect();
        assert_eq!(
            tail,
            [
                ("Upstream".into(), "test-podinfo-canaryupstream-9898".into()),
                (
                    "Upstream".into(),
                    "test-podinfo-primaryupstream-9898".into()
                ),
                ("RouteTable".into(), "podinfo".into()),
            ]
        );
        let mut kuma = canary.clone();
        kuma.spec.provider = Some("kuma".into());
        // The Services and the HPA only: Flagger's TrafficRoute has no owner to move.
        let kinds: Vec<String> = candidates(&kuma, &[])
            .into_iter()
            .map(|(r, _)| r.kind)
            .collect();
        assert_eq!(
            kinds,
            ["Service", "Service", "Service", "HorizontalPodAutoscaler"]
        );
        for (provider, version) in [("osm", "v1alpha2"), ("smi:v1alpha1", "v1alpha1")] {
            let mut smi = canary.clone();
            smi.spec.provider = Some(provider.into());
            let last = candidates(&smi, &[]).pop().unwrap();
            assert_eq!(last.0.api_version, format!("split.smi-spec.io/{version}"));
            assert_eq!(last.1, "podinfo");
        }
    }
}
