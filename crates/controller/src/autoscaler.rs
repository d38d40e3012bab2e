//! The primary's autoscaler: a copy of the target's HorizontalPodAutoscaler or KEDA
//! `ScaledObject` (`autoscalerRef`) that scales `<target>-primary`; and, for a ScaledObject, the
//! pause of the target's while the target is scaled to zero (KEDA would scale it back up).

use fledge_api::Canary;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::workload::{PrimaryOptions, primary_name};
use crate::{Error, Result};

/// KEDA's annotation that holds a ScaledObject's target at a replica count.
pub const KEDA_PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";

/// KEDA's `ScaledObject` (`keda.sh/v1alpha1`).
pub fn scaled_object_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    )
}

/// The autoscaler kinds an `autoscalerRef` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScalerKind {
    Hpa,
    ScaledObject,
}

fn scaler_kind(canary: &Canary) -> Result<Option<(ScalerKind, &str)>> {
    let Some(reference) = canary.spec.autoscaler_ref.as_ref() else {
        return Ok(None);
    };
    let kind = match reference.kind.as_deref() {
        None | Some("") | Some("HorizontalPodAutoscaler") => ScalerKind::Hpa,
        Some("ScaledObject") => ScalerKind::ScaledObject,
        Some(other) => {
            return Err(Error::InvalidSpec(format!(
                "spec.autoscalerRef.kind: {other} is not an autoscaler fledge knows; use \
                 HorizontalPodAutoscaler or ScaledObject"
            )));
        }
    };
    Ok(Some((kind, reference.name.as_str())))
}

/// `query` with the target's name replaced by the primary's, as Flagger rewrites the queries of
/// the primary's ScaledObject: `<target>` and `<target>-canary` become `<target>-primary`; an
/// existing `<target>-primary` is left alone (Flagger's placeholder replacement would make it
/// `<target>-primary-primary`).
pub fn primary_query(query: &str, target: &str) -> String {
    if target.is_empty() {
        return query.to_string();
    }
    let primary = primary_name(target);
    let canary = format!("{target}-canary");
    let mut out = String::with_capacity(query.len() + 16);
    let mut rest = query;
    while let Some(i) = rest.find(target) {
        out.push_str(&rest[..i]);
        let at = &rest[i..];
        if at.starts_with(&primary) {
            out.push_str(&primary);
            rest = &at[primary.len()..];
        } else if at.starts_with(&canary) {
            out.push_str(&primary);
            rest = &at[canary.len()..];
        } else {
            out.push_str(&primary);
            rest = &at[target.len()..];
        }
    }
    out.push_str(rest);
    out
}

/// Builds `<scaledobject>-primary` from the target's ScaledObject: its spec scaling the
/// primary, trigger queries pointed at the primary (or `autoscalerRef.primaryScalerQueries`
/// by trigger name), the replica bounds of `primaryScalerReplicas`, the labels the options
/// copy, owned by the Canary.
pub fn build_primary_scaled_object(
    canary: &Canary,
    target: &DynamicObject,
    owner: OwnerReference,
    opts: &PrimaryOptions,
) -> Value {
    let reference = canary.spec.autoscaler_ref.clone().unwrap_or_default();
    let target_name = &canary.spec.target_ref.name;
    let mut spec = target
        .data
        .get("spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(obj) = spec.as_object_mut() {
        let str_field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let target_ref = obj.get("scaleTargetRef").cloned().unwrap_or_default();
        let mut scale_ref = json!({ "name": primary_name(target_name) });
        for k in ["kind", "apiVersion", "envSourceContainerName"] {
            if let Some(v) = str_field(&target_ref, k) {
                scale_ref[k] = Value::String(v);
            }
        }
        obj.insert("scaleTargetRef".into(), scale_ref);
        if let Some(triggers) = obj.get_mut("triggers").and_then(Value::as_array_mut) {
            for t in triggers {
                let name = str_field(t, "name");
                let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut) else {
                    continue;
                };
                match &reference.primary_scaler_queries {
                    Some(queries) => {
                        if let Some(q) = name.as_ref().and_then(|n| queries.get(n)) {
                            meta.insert("query".into(), Value::String(q.clone()));
                        }
                    }
                    None => {
                        if let Some(q) = meta.get("query").and_then(Value::as_str) {
                            let q = primary_query(q, target_name);
                            meta.insert("query".into(), Value::String(q));
                        }
                    }
                }
            }
        }
        if let Some(r) = &reference.primary_scaler_replicas {
            if let Some(min) = r.min_replicas {
                obj.insert("minReplicaCount".into(), json!(min));
            }
            if let Some(max) = r.max_replicas {
                obj.insert("maxReplicaCount".into(), json!(max));
            }
        }
    }
    let labels = opts.copied_labels(target.metadata.labels.as_ref());
    json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": primary_name(&target.name_any()),
            "namespace": target.namespace(),
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": spec,
    })
}

/// Builds `<hpa>-primary` from the target's HPA: same spec, scaling the primary, with the
/// replica bounds of `autoscalerRef.primaryScalerReplicas` when set.
pub fn build_primary_hpa(
    canary: &Canary,
    hpa: &HorizontalPodAutoscaler,
    owner: OwnerReference,
) -> HorizontalPodAutoscaler {
    let mut spec = hpa.spec.clone().unwrap_or_default();
    spec.scale_target_ref.name = primary_name(&canary.spec.target_ref.name);
    if let Some(bounds) = canary
        .spec
        .autoscaler_ref
        .as_ref()
        .and_then(|a| a.primary_scaler_replicas.as_ref())
    {
        if let Some(min) = bounds.min_replicas {
            spec.min_replicas = Some(min);
        }
        if let Some(max) = bounds.max_replicas {
            spec.max_replicas = max;
        }
    }
    HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(primary_name(&hpa.name_any())),
            namespace: hpa.namespace(),
            labels: hpa.metadata.labels.clone(),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Creates or updates the primary's autoscaler when the Canary names one: a copy of its
/// HorizontalPodAutoscaler or KEDA ScaledObject scaling the primary.
pub async fn ensure_primary_scaler(
    client: &Client,
    canary: &Canary,
    owner: OwnerReference,
    opts: &PrimaryOptions,
) -> Result<()> {
    let Some((kind, name)) = scaler_kind(canary)? else {
        return Ok(());
    };
    let ns = canary.namespace().unwrap_or_else(|| "default".into());
    let apply = PatchParams::apply(crate::controller::MANAGER).force();
    match kind {
        ScalerKind::Hpa => {
            let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
            let Some(hpa) = api.get_opt(name).await? else {
                return Err(Error::InvalidTarget(format!(
                    "spec.autoscalerRef: HorizontalPodAutoscaler {ns}/{name} not found; create it or remove autoscalerRef"
                )));
            };
            let primary = build_primary_hpa(canary, &hpa, owner);
            let mut value = serde_json::to_value(&primary)?;
            value["apiVersion"] = "autoscaling/v2".into();
            value["kind"] = "HorizontalPodAutoscaler".into();
            api.patch(&primary_name(name), &apply, &Patch::Apply(value))
                .await?;
        }
        ScalerKind::ScaledObject => {
            let api = scaled_objects(client, &ns);
            let Some(so) = api.get_opt(name).await.map_err(missing_keda)? else {
                return Err(Error::InvalidTarget(format!(
                    "spec.autoscalerRef: ScaledObject {ns}/{name} not found; create it or remove autoscalerRef"
                )));
            };
            let primary = build_primary_scaled_object(canary, &so, owner, opts);
            api.patch(&primary_name(name), &apply, &Patch::Apply(primary))
                .await?;
        }
    }
    Ok(())
}

/// Holds the target's ScaledObject at zero replicas (KEDA's `paused-replicas: "0"`) while the
/// target is scaled to zero, so that KEDA does not scale it back up; a no-op for an HPA, which
/// never scales a Deployment up from zero.
pub async fn pause_target_scaler(client: &Client, canary: &Canary) -> Result<()> {
    set_paused(client, canary, Some("0")).await
}

/// Lets KEDA scale the target again (a new revision under test, or the Canary deleted).
pub async fn resume_target_scaler(client: &Client, canary: &Canary) -> Result<()> {
    set_paused(client, canary, None).await
}

async fn set_paused(client: &Client, canary: &Canary, replicas: Option<&str>) -> Result<()> {
    let Some((ScalerKind::ScaledObject, name)) = scaler_kind(canary)? else {
        return Ok(());
    };
    let ns = canary.namespace().unwrap_or_else(|| "default".into());
    let api = scaled_objects(client, &ns);
    let Some(so) = api.get_opt(name).await.map_err(missing_keda)? else {
        return Err(Error::InvalidTarget(format!(
            "spec.autoscalerRef: ScaledObject {ns}/{name} not found; create it or remove autoscalerRef"
        )));
    };
    let current = so
        .annotations()
        .get(KEDA_PAUSED_REPLICAS)
        .map(String::as_str);
    if current == replicas {
        return Ok(());
    }
    let patch = json!({"metadata": {"annotations": {KEDA_PAUSED_REPLICAS: replicas}}});
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(crate::controller::MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

fn scaled_objects(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &scaled_object_resource())
}

/// A 404 on the ScaledObject API itself means KEDA's CRD is not installed.
fn missing_keda(e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) if s.code == 404 => Error::InvalidSpec(
            "spec.autoscalerRef.kind: ScaledObject, but KEDA's ScaledObject CRD \
             (scaledobjects.keda.sh) is not installed; install KEDA or use a \
             HorizontalPodAutoscaler"
                .into(),
        ),
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::owner;

    #[test]
    fn the_primary_hpa_scales_the_primary_within_its_own_bounds() {
        let canary: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "autoscalerRef": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "name": "podinfo", "primaryScalerReplicas": {"minReplicas": 3}},
                "service": {"port": 9898}
            }
        }))
        .unwrap();
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "podinfo", "namespace": "test", "labels": {"app": "podinfo"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "minReplicas": 2, "maxReplicas": 4,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 99}}}]
            }
        }))
        .unwrap();
        let p = build_primary_hpa(&canary, &hpa, owner());
        assert_eq!(p.metadata.name.as_deref(), Some("podinfo-primary"));
        assert_eq!(
            p.metadata.owner_references.as_ref().unwrap()[0].kind,
            "Canary"
        );
        let spec = p.spec.unwrap();
        assert_eq!(spec.scale_target_ref.name, "podinfo-primary");
        assert_eq!(spec.min_replicas, Some(3));
        assert_eq!(spec.max_replicas, 4);
        assert_eq!(spec.metrics.unwrap().len(), 1);
    }

    #[test]
    fn queries_point_at_the_primary_once() {
        let q = primary_query(
            "sum(rate(http_requests_total{deployment=\"podinfo\"}[1m])) + \
             sum(up{pod=~\"podinfo-canary-.*\"}) + sum(up{pod=~\"podinfo-primary-.*\"})",
            "podinfo",
        );
        assert_eq!(
            q,
            "sum(rate(http_requests_total{deployment=\"podinfo-primary\"}[1m])) + \
             sum(up{pod=~\"podinfo-primary-.*\"}) + sum(up{pod=~\"podinfo-primary-.*\"})"
        );
        assert_eq!(primary_query("no name here", "podinfo"), "no name here");
    }

    fn keda_canary(extra: serde_json::Value) -> Canary {
        let mut spec = serde_json::json!({
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "autoscalerRef": {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                "name": "podinfo-so"},
            "service": {"port": 9898}
        });
        for (k, v) in extra.as_object().unwrap() {
            spec["autoscalerRef"][k] = v.clone();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": spec
        }))
        .unwrap()
    }

    fn scaled_object() -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "podinfo-so", "namespace": "test",
                "labels": {"app": "podinfo", "kustomize.toolkit.fluxcd.io/name": "apps"},
                "annotations": {"autoscaling.keda.sh/paused-replicas": "0"}},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "pollingInterval": 10, "cooldownPeriod": 20, "minReplicaCount": 1, "maxReplicaCount": 3,
                "triggers": [
                    {"type": "prometheus", "name": "rps", "metadata": {
                        "serverAddress": "http://prometheus:9090", "threshold": "100",
                        "query": "sum(rate(http_requests_total{app=\"podinfo-canary\"}[1m]))"}},
                    {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}
                ]
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_primary_scaled_object_scales_the_primary_with_rewritten_queries() {
        let c = keda_canary(serde_json::json!({"primaryScalerReplicas": {"maxReplicas": 5}}));
        let p =
            build_primary_scaled_object(&c, &scaled_object(), owner(), &PrimaryOptions::default());
        assert_eq!(p["metadata"]["name"], "podinfo-so-primary");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Canary");
        assert_eq!(
            p["metadata"]["labels"],
            serde_json::json!({"app": "podinfo"}),
            "Flux's labels stay on the target"
        );
        assert!(p["metadata"].get("annotations").is_none(), "never paused");
        let spec = &p["spec"];
        assert_eq!(
            spec["scaleTargetRef"],
            serde_json::json!({"name": "podinfo-primary", "kind": "Deployment", "apiVersion": "apps/v1"})
        );
        assert_eq!(
            spec["triggers"][0]["metadata"]["query"],
            "sum(rate(http_requests_total{app=\"podinfo-primary\"}[1m]))"
        );
        assert_eq!(
            spec["triggers"][1]["metadata"],
            serde_json::json!({"value": "60"})
        );
        assert_eq!(
            (&spec["pollingInterval"], &spec["cooldownPeriod"]),
            (&serde_json::json!(10), &serde_json::json!(20))
        );
        assert_eq!(
            (&spec["minReplicaCount"], &spec["maxReplicaCount"]),
            (&serde_json::json!(1), &serde_json::json!(5))
        );
    }

    #[test]
    fn primary_scaler_queries_replace_the_named_triggers_only() {
        let c = keda_canary(serde_json::json!({"primaryScalerQueries": {
            "rps": "sum(rate(http_requests_total{app=\"podinfo-primary\"}[2m]))"}}));
        let p =
            build_primary_scaled_object(&c, &scaled_object(), owner(), &PrimaryOptions::default());
        assert_eq!(
            p["spec"]["triggers"][0]["metadata"]["query"],
            "sum(rate(http_requests_total{app=\"podinfo-primary\"}[2m]))"
        );
    }

    #[test]
    fn an_unknown_autoscaler_kind_is_an_invalid_spec() {
        let mut c = keda_canary(serde_json::json!({}));
        c.spec.autoscaler_ref.as_mut().unwrap().kind = Some("VerticalPodAutoscaler".into());
        let err = scaler_kind(&c).unwrap_err().to_string();
        assert!(err.contains("VerticalPodAutoscaler"), "{err}");
    }
}
