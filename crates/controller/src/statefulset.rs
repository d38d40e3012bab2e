//! StatefulSet targets: rolled out in place through `spec.updateStrategy.rollingUpdate.partition`.
//!
//! There is no primary copy. The pods at or above the partition run the StatefulSet's update
//! revision (the canary), those below it its current revision (the promoted one, the "stable"
//! pods). The engine's weights become partitions ([`fledge_api::statefulset`]); promotion lowers
//! the partition to 0; a rollback puts the pod template of the current revision back (read from
//! its ControllerRevision) and leaves the partition, so the pods that moved come back. Between
//! rollouts the partition is held at the replica count, so that a new template moves no pod
//! before fledge's first step.

use fledge_api::statefulset::{partition_for_weight, pods_regex};
use fledge_core::Readiness;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, Deployment, DeploymentSpec, DeploymentStatus, StatefulSet,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::info;

use crate::{Error, Result};

/// What fledge reads of a StatefulSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// `metadata.name`.
    pub name: String,
    /// `spec.replicas` (default 1).
    pub replicas: i32,
    /// `spec.updateStrategy.rollingUpdate.partition` (default 0).
    pub partition: i32,
    /// `spec.updateStrategy.type` is `OnDelete`: pods change only when deleted, which fledge
    /// does not do.
    pub on_delete: bool,
    /// `status.observedGeneration >= metadata.generation`.
    pub generation_observed: bool,
    /// `status.currentRevision`: the revision of the pods below the partition.
    pub current_revision: String,
    /// `status.updateRevision`: the revision of the template.
    pub update_revision: String,
    /// `status.updatedReplicas`: pods on the update revision.
    pub updated: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.replicas`: pods that exist.
    pub existing: i32,
    /// Behind a router: the primary and canary Services were just given other revisions to
    /// select. Until the next look their endpoints may lag, so the stable pods do not count as
    /// ready (nothing is routed to the primary Service in the meantime).
    pub services_moved: bool,
    /// Behind a router, during a rollout: the ready endpoints of the canary Service. The pods
    /// count as ready only once they are its endpoints, so the router never sends the canary
    /// its weight before the Service has somewhere to send it.
    pub canary_endpoints: Option<i32>,
}

impl View {
    /// Reads `sts`.
    pub fn of(sts: &StatefulSet) -> View {
        let spec = sts.spec.clone().unwrap_or_default();
        let st = sts.status.clone().unwrap_or_default();
        let strategy = spec.update_strategy.unwrap_or_default();
        View {
            name: sts.name_any(),
            replicas: spec.replicas.unwrap_or(1).max(0),
            partition: strategy
                .rolling_update
                .and_then(|r| r.partition)
                .unwrap_or(0)
                .max(0),
            on_delete: strategy.type_.as_deref() == Some("OnDelete"),
            generation_observed: st.observed_generation.unwrap_or(0)
                >= sts.metadata.generation.unwrap_or(0),
            current_revision: st.current_revision.unwrap_or_default(),
            update_revision: st.update_revision.unwrap_or_default(),
            updated: st.updated_replicas.unwrap_or(0),
            ready: st.ready_replicas.unwrap_or(0),
            existing: st.replicas,
            services_moved: false,
            canary_endpoints: None,
        }
    }

    /// Every pod runs one revision: nothing is in flight.
    pub fn settled(&self) -> bool {
        self.generation_observed
            && !self.update_revision.is_empty()
            && self.update_revision == self.current_revision
            && self.updated >= self.replicas
    }

    /// The partition clamped to the replicas: the first ordinal of the canary pods.
    fn first_canary(&self) -> i32 {
        self.partition.min(self.replicas)
    }

    /// The canary: the pods at or above the partition, which must run the update revision and
    /// be ready. None before the first step. The StatefulSet's status does not say which pods
    /// are ready, so an unready pod counts against the canary (the StatefulSet controller
    /// itself moves no further pod while one is unready).
    pub fn canary(&self) -> Readiness {
        let wanted = self.replicas - self.first_canary();
        let moved = if self.settled() {
            wanted
        } else {
            self.updated.min(wanted)
        };
        let unready = (self.existing - self.ready).max(0);
        let mut available = (moved - unready).max(0);
        if let Some(endpoints) = self.canary_endpoints {
            available = available.min(endpoints);
        }
        Readiness {
            generation_observed: self.generation_observed,
            desired: wanted,
            current: wanted,
            updated: moved,
            available,
        }
    }

    /// The stable pods, below the partition; at partition 0 (a promotion, or taking over a
    /// rollout in flight) every pod, all of which must have moved to the template.
    pub fn stable(&self) -> Readiness {
        if self.services_moved {
            return Readiness {
                generation_observed: self.generation_observed,
                desired: self.replicas,
                current: self.existing,
                updated: self.updated,
                available: 0,
            };
        }
        if self.first_canary() == 0 {
            return Readiness {
                generation_observed: self.generation_observed,
                desired: self.replicas,
                current: self.existing,
                updated: if self.settled() {
                    self.replicas
                } else {
                    self.updated
                },
                available: self.ready,
            };
        }
        let stable = self.first_canary();
        let unready = (self.existing - self.ready).max(0);
        Readiness {
            generation_observed: self.generation_observed,
            desired: stable,
            current: stable,
            updated: stable,
            available: (stable - unready).max(0),
        }
    }

    /// The partition that gives `weight` percent of the pods to the canary.
    pub fn partition_for(&self, weight: i32) -> i32 {
        partition_for_weight(weight, self.replicas)
    }

    /// The canary's and the stable pods' names as regular expressions, for queries.
    pub fn pods(&self) -> crate::analysis::PodSets {
        let first = if self.settled() {
            self.replicas
        } else {
            self.first_canary()
        };
        crate::analysis::PodSets {
            canary: pods_regex(&self.name, first..self.replicas),
            stable: pods_regex(&self.name, 0..first),
            ..Default::default()
        }
    }
}

/// A StatefulSet seen as a Deployment, for what only reads a target (its revision hash,
/// tracked configs, images, selector label): the same metadata, selector and pod template.
pub fn deployment_view(sts: &StatefulSet) -> Deployment {
    let spec = sts.spec.clone().unwrap_or_default();
    let st = sts.status.clone().unwrap_or_default();
    Deployment {
        metadata: sts.metadata.clone(),
        spec: Some(DeploymentSpec {
            replicas: spec.replicas,
            selector: spec.selector,
            template: spec.template,
            min_ready_seconds: spec.min_ready_seconds,
            revision_history_limit: spec.revision_history_limit,
            ..Default::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: st.observed_generation,
            replicas: Some(st.replicas),
            updated_replicas: st.updated_replicas,
            available_replicas: st.available_replicas,
            ready_replicas: st.ready_replicas,
            ..Default::default()
        }),
    }
}

/// The ready endpoints of Service `service` (its EndpointSlices'; an endpoint without a ready
/// condition counts as ready, as Kubernetes reads it).
pub async fn ready_endpoints(client: &Client, ns: &str, service: &str) -> Result<i32> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let slices = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await?;
    let ready = slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .count();
    Ok(i32::try_from(ready).unwrap_or(i32::MAX))
}

/// Why fledge cannot roll `view` out, for people, or `None`.
pub fn unusable(view: &View) -> Option<String> {
    view.on_delete.then(|| {
        format!(
            "StatefulSet {} has updateStrategy OnDelete: its pods change only when deleted, and \
             fledge rolls a StatefulSet out through the RollingUpdate partition; set \
             spec.updateStrategy.type: RollingUpdate",
            view.name
        )
    })
}

/// The pod template of revision `name` (a ControllerRevision the StatefulSet controller wrote,
/// whose data is the patch `{"spec": {"template": {..., "$patch": "replace"}}}`).
pub async fn revision_template(client: &Client, ns: &str, name: &str) -> Result<PodTemplateSpec> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let rev = api.get(name).await?;
    let mut template = rev
        .data
        .map(|d| d.0)
        .and_then(|mut d| d.pointer_mut("/spec/template").map(serde_json::Value::take))
        .ok_or_else(|| {
            Error::InvalidTarget(format!(
                "ControllerRevision {ns}/{name} holds no pod template; the StatefulSet's \
                 promoted revision cannot be read back"
            ))
        })?;
    if let Some(obj) = template.as_object_mut() {
        obj.remove("$patch");
    }
    Ok(serde_json::from_value(template)?)
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(crate::controller::MANAGER.into()),
        ..Default::default()
    }
}

/// Sets the partition of StatefulSet `name` (nothing is sent when it already has it).
pub async fn set_partition(client: &Client, ns: &str, view: &View, partition: i32) -> Result<()> {
    if view.partition == partition && !view.on_delete {
        return Ok(());
    }
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let patch = json!({"spec": {"updateStrategy": {
        "type": "RollingUpdate",
        "rollingUpdate": {"partition": partition},
    }}});
    api.patch(&view.name, &params(), &Patch::Merge(&patch))
        .await?;
    info!(statefulset = %view.name, from = view.partition, to = partition, "partition");
    Ok(())
}

/// The rollback: the template of the current revision replaces the StatefulSet's template
/// (whole, so that nothing the failed revision added stays; a replace of the object as read,
/// so a concurrent change is refused rather than overwritten), the partition is left where it
/// is, so that the pods at or above it come back to the current revision. Only when the
/// template still has `revision` (the target spec hash that failed).
pub async fn roll_back(client: &Client, ns: &str, name: &str, revision: &str) -> Result<()> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let mut sts = api.get(name).await?;
    let view = View::of(&sts);
    let Some(spec) = sts.spec.as_mut() else {
        return Ok(());
    };
    if crate::workload::template_hash(&spec.template) != revision
        || view.current_revision.is_empty()
        || view.current_revision == view.update_revision
    {
        info!(statefulset = %name, %revision, "the template no longer has the failed revision; nothing to put back");
        return Ok(());
    }
    spec.template = revision_template(client, ns, &view.current_revision).await?;
    sts.metadata.managed_fields = None;
    sts.status = None;
    api.replace(name, &PostParams::default(), &sts).await?;
    info!(statefulset = %name, revision = %view.current_revision, partition = view.partition, "template put back to the promoted revision");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(partition: i32, updated: i32, ready: i32) -> View {
        View {
            name: "db".into(),
            replicas: 5,
            partition,
            on_delete: false,
            generation_observed: true,
            current_revision: "db-1".into(),
            update_revision: "db-2".into(),
            updated,
            ready,
            existing: 5,
            services_moved: false,
            canary_endpoints: None,
        }
    }

    #[test]
    fn the_canary_is_the_pods_at_or_above_the_partition() {
        let v = view(3, 2, 5);
        assert_eq!(v.canary(), Readiness::ready(2));
        assert!(v.canary().check(100).is_ok());
        assert!(v.stable().check(100).is_ok());
        assert_eq!(v.pods().canary, "db-3|db-4");
        assert_eq!(v.pods().stable, "db-0|db-1|db-2");
        assert!(view(3, 1, 5).canary().check(100).is_err());
        // One pod being replaced (unready): the canary waits.
        assert!(view(3, 2, 4).canary().check(100).is_err());
    }

    #[test]
    fn before_the_first_step_there_is_no_canary_and_at_zero_every_pod_must_move() {
        let v = view(5, 0, 5);
        assert_eq!(v.canary().desired, 0);
        assert!(v.canary().check(100).is_ok());
        assert_eq!(v.pods().canary, "db-");
        let promoting = view(0, 3, 5);
        assert!(promoting.stable().check(100).is_err());
        let done = View {
            current_revision: "db-2".into(),
            ..view(0, 5, 5)
        };
        assert!(done.settled());
        assert!(done.stable().check(100).is_ok());
    }

    #[test]
    fn behind_a_router_the_canary_waits_for_its_services_endpoints() {
        let v = View {
            canary_endpoints: Some(1),
            ..view(3, 2, 5)
        };
        assert!(v.canary().check(100).is_err());
        let v = View {
            canary_endpoints: Some(2),
            ..view(3, 2, 5)
        };
        assert!(v.canary().check(100).is_ok());
    }

    #[test]
    fn weights_become_partitions() {
        let v = view(5, 0, 5);
        assert_eq!(v.partition_for(20), 4);
        assert_eq!(v.partition_for(80), 1);
        assert_eq!(v.partition_for(0), 5);
        assert_eq!(v.partition_for(100), 0);
    }

    #[test]
    fn on_delete_is_refused_with_the_fix() {
        let v = View {
            on_delete: true,
            ..view(0, 5, 5)
        };
        assert!(
            unusable(&v)
                .unwrap()
                .contains("set spec.updateStrategy.type: RollingUpdate")
        );
        assert!(unusable(&view(0, 5, 5)).is_none());
    }
}
