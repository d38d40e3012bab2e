//! The primary's autoscaler: a copy of the target's HorizontalPodAutoscaler (`autoscalerRef`)
//! that scales `<target>-primary`.

use fledge_api::Canary;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::workload::primary_name;
use crate::{Error, Result};

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

/// Creates or updates the primary's HPA when the Canary names one. Other autoscaler kinds
/// (KEDA `ScaledObject`) are reported as not supported yet.
pub async fn ensure_primary_hpa(
    client: &Client,
    canary: &Canary,
    owner: OwnerReference,
) -> Result<()> {
    let Some(reference) = canary.spec.autoscaler_ref.as_ref() else {
        return Ok(());
    };
    let kind = reference
        .kind
        .as_deref()
        .unwrap_or("HorizontalPodAutoscaler");
    if kind != "HorizontalPodAutoscaler" {
        return Err(Error::InvalidSpec(format!(
            "spec.autoscalerRef.kind: {kind} is not supported by fledge yet; use a HorizontalPodAutoscaler"
        )));
    }
    let ns = canary.namespace().unwrap_or_else(|| "default".into());
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
    let Some(hpa) = api.get_opt(&reference.name).await? else {
        return Err(Error::InvalidTarget(format!(
            "spec.autoscalerRef: HorizontalPodAutoscaler {ns}/{} not found; create it or remove autoscalerRef",
            reference.name
        )));
    };
    let primary = build_primary_hpa(canary, &hpa, owner);
    let mut value = serde_json::to_value(&primary)?;
    value["apiVersion"] = "autoscaling/v2".into();
    value["kind"] = "HorizontalPodAutoscaler".into();
    api.patch(
        &primary_name(&reference.name),
        &PatchParams::apply(crate::controller::MANAGER).force(),
        &Patch::Apply(value),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let owner = OwnerReference {
            api_version: "fledge.dev/v1beta1".into(),
            kind: "Canary".into(),
            name: "podinfo".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let p = build_primary_hpa(&canary, &hpa, owner);
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
}
