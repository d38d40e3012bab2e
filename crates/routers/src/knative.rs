//! The `knative` router: a Knative Service routes its traffic between its own Revisions, so
//! fledge generates nothing. The Revision promoted last is named by the annotation
//! [`KNATIVE_PRIMARY_REVISION`] on the Service (the primary), and the latest Revision Knative
//! created is the canary; the weights are the Service's `spec.traffic`:
//!
//! ```yaml
//! traffic:
//!   - latestRevision: true        # the canary
//!     percent: 30
//!   - revisionName: app-00001     # the primary
//!     latestRevision: false
//!     percent: 70
//! ```
//!
//! The Service is the user's: the router changes only the annotation and `spec.traffic`, by
//! merge patch, and owns nothing. Knative cannot mirror or route by header, so both are
//! refused. On deletion with revert, the traffic block and the annotation are removed: the
//! Service then sends everything to its latest Revision, as Knative does without fledge.

use fledge_api::{Canary, FLAGGER_KNATIVE_PRIMARY_REVISION, KNATIVE_PRIMARY_REVISION};
use fledge_core::Routes;
use kube::Client;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::{Capabilities, Error, MANAGER, PeerKind, RouteTarget, Router, cannot};

/// The provider name.
const PROVIDER: &str = "knative";

/// A Knative Service.
pub const SERVICE: PeerKind = PeerKind {
    group: "serving.knative.dev",
    version: "v1",
    kind: "Service",
    plural: "services",
    namespaced: true,
};

/// A Knative Revision.
pub const REVISION: PeerKind = PeerKind {
    group: "serving.knative.dev",
    version: "v1",
    kind: "Revision",
    plural: "revisions",
    namespaced: true,
};

/// Routes a Knative Service's traffic between its promoted and its latest Revision.
pub struct KnativeRouter {
    client: Client,
}

impl KnativeRouter {
    /// The router, writing through `client`.
    pub fn new(client: Client) -> Self {
        KnativeRouter { client }
    }
}

/// The Revision the primary's share goes to: fledge's annotation, or Flagger's when fledge
/// takes a Knative Service over from Flagger.
pub fn primary_revision(service: &Value) -> Option<&str> {
    let annotations = &service["metadata"]["annotations"];
    [KNATIVE_PRIMARY_REVISION, FLAGGER_KNATIVE_PRIMARY_REVISION]
        .into_iter()
        .find_map(|key| annotations[key].as_str().filter(|r| !r.is_empty()))
}

/// The latest Revision Knative created for the Service (`status.latestCreatedRevisionName`).
pub fn latest_revision(service: &Value) -> Option<&str> {
    service["status"]["latestCreatedRevisionName"]
        .as_str()
        .filter(|r| !r.is_empty())
}

/// `spec.traffic` for `routes`: the canary's share to the latest Revision, the primary's to
/// the promoted one. Both entries are always written (Knative needs the shares to add up to
/// 100), `latestRevision: false` spelled out as Knative's webhook would default it.
pub fn traffic(primary_revision: &str, routes: Routes) -> Value {
    json!([
        {"latestRevision": true, "percent": routes.canary},
        {"revisionName": primary_revision, "latestRevision": false, "percent": routes.primary},
    ])
}

/// The routes a Knative Service's `spec.traffic` gives: the canary's share is what goes to the
/// latest Revision, the rest goes elsewhere (the promoted Revision, when fledge wrote it).
/// Without a traffic block Knative sends everything to the latest Revision.
pub fn routes_of(service: &Value) -> Routes {
    let Some(entries) = service["spec"]["traffic"].as_array() else {
        return Routes::weighted(100);
    };
    let canary: i64 = entries
        .iter()
        .filter(|e| e["latestRevision"] == true)
        .filter_map(|e| e["percent"].as_i64())
        .sum();
    Routes::weighted(canary.clamp(0, 100) as i32)
}

/// The merge patch that names `revision` as the promoted one.
pub fn pin_patch(revision: &str) -> Value {
    json!({"metadata": {"annotations": {KNATIVE_PRIMARY_REVISION: revision}}})
}

/// The error for a Service Knative has made no Revision of yet (a retry later may pass).
pub fn no_revision_yet(ns: &str, name: &str) -> Error {
    Error::Waiting {
        provider: PROVIDER.into(),
        message: format!(
            "Knative Service {ns}/{name} has no Revision yet (status.latestCreatedRevisionName)"
        ),
    }
}

/// Merge-patches the Knative Service `name` under fledge's field manager.
async fn merge_patch(client: &Client, ns: &str, name: &str, patch: &Value) -> Result<(), Error> {
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    SERVICE
        .api(client, ns)
        .patch(name, &params, &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Names the promoted Revision of a Knative Service (the primary), e.g. at initialization
/// (its latest Revision) or at promotion (the Revision that passed the analysis).
pub async fn pin_primary(
    client: &Client,
    ns: &str,
    canary: &Canary,
    revision: &str,
) -> Result<(), Error> {
    merge_patch(
        client,
        ns,
        &canary.spec.target_ref.name,
        &pin_patch(revision),
    )
    .await
}

impl KnativeRouter {
    async fn service(&self, t: &RouteTarget<'_>) -> Result<Option<Value>, Error> {
        SERVICE
            .get(
                &self.client,
                t.namespace(),
                PROVIDER,
                &t.canary.spec.target_ref.name,
            )
            .await
    }

    /// The Knative Service of `t`; its absence is the user's to fix.
    async fn existing(&self, t: &RouteTarget<'_>) -> Result<Value, Error> {
        self.service(t).await?.ok_or_else(|| {
            cannot(
                PROVIDER,
                format!(
                    "Knative Service {}/{} not found: create it, or point spec.targetRef at an \
                     existing one",
                    t.namespace(),
                    t.canary.spec.target_ref.name
                ),
            )
        })
    }

    /// Writes `routes` into `service` (as read), naming its latest Revision the primary when
    /// none is named yet.
    async fn route(
        &self,
        t: &RouteTarget<'_>,
        service: &Value,
        routes: Routes,
    ) -> Result<(), Error> {
        let pinned = primary_revision(service);
        let primary = pinned
            .or_else(|| latest_revision(service))
            .ok_or_else(|| no_revision_yet(t.namespace(), &t.canary.spec.target_ref.name))?;
        let mut patch = json!({"spec": {"traffic": traffic(primary, routes)}});
        if pinned.is_none() {
            patch["metadata"] = pin_patch(primary)["metadata"].clone();
        }
        merge_patch(
            &self.client,
            t.namespace(),
            &t.canary.spec.target_ref.name,
            &patch,
        )
        .await
    }
}

#[async_trait::async_trait]
impl Router for KnativeRouter {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn routing_kind(&self) -> PeerKind {
        SERVICE
    }

    /// The Knative Service itself (`spec.targetRef.name`).
    fn routing_name(&self, canary: &Canary) -> String {
        canary.spec.target_ref.name.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_weights: true,
            mirroring: false,
            http_match: false,
            session_affinity: false,
        }
    }

    /// Names the latest Revision as the promoted one when none is named yet (a new Canary),
    /// and sets the routes the status records.
    async fn ensure(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        let service = self.existing(t).await?;
        self.route(t, &service, crate::routes_in_status(t.canary, t.status))
            .await
    }

    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        if routes.mirror.is_some() {
            return Err(cannot(
                PROVIDER,
                "a Knative Service cannot copy requests to a Revision (no mirroring); remove \
                 analysis.mirror",
            ));
        }
        if routes.ab_match {
            return Err(cannot(
                PROVIDER,
                "a Knative Service routes by weight only, not by header, cookie or query \
                 parameter (no A/B testing); remove analysis.match",
            ));
        }
        let service = self.existing(t).await?;
        self.route(t, &service, routes).await
    }

    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        Ok(self.service(t).await?.map(|s| routes_of(&s)))
    }

    /// Removes the traffic block and the annotation: the Service sends everything to its
    /// latest Revision, as without fledge.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        if self.service(t).await?.is_none() {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"annotations": {KNATIVE_PRIMARY_REVISION: null}},
            "spec": {"traffic": null},
        });
        merge_patch(
            &self.client,
            t.namespace(),
            &t.canary.spec.target_ref.name,
            &patch,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(annotations: Value, traffic: Option<Value>) -> Value {
        let mut s = json!({
            "metadata": {"name": "app", "annotations": annotations},
            "spec": {"template": {"spec": {"containers": [{"image": "app:1"}]}}},
            "status": {"latestCreatedRevisionName": "app-00002"},
        });
        if let Some(t) = traffic {
            s["spec"]["traffic"] = t;
        }
        s
    }

    #[test]
    fn traffic_sends_the_canary_share_to_the_latest_revision() {
        assert_eq!(
            traffic("app-00001", Routes::weighted(30)),
            json!([
                {"latestRevision": true, "percent": 30},
                {"revisionName": "app-00001", "latestRevision": false, "percent": 70},
            ])
        );
        assert_eq!(
            traffic("app-00001", Routes::PRIMARY)[1]["percent"],
            json!(100)
        );
    }

    #[test]
    fn routes_read_back_as_written() {
        for w in [0, 10, 55, 100] {
            let s = service(json!({}), Some(traffic("app-00001", Routes::weighted(w))));
            assert_eq!(routes_of(&s), Routes::weighted(w));
        }
        // No traffic block: Knative sends everything to the latest Revision.
        assert_eq!(routes_of(&service(json!({}), None)), Routes::weighted(100));
        // Someone pinned everything to a Revision by name.
        let pinned = json!([{"revisionName": "app-00001", "percent": 100}]);
        assert_eq!(
            routes_of(&service(json!({}), Some(pinned))),
            Routes::PRIMARY
        );
    }

    #[test]
    fn the_primary_is_fledges_annotation_or_flaggers() {
        let s = service(json!({KNATIVE_PRIMARY_REVISION: "app-00001"}), None);
        assert_eq!(primary_revision(&s), Some("app-00001"));
        let s = service(json!({FLAGGER_KNATIVE_PRIMARY_REVISION: "app-00003"}), None);
        assert_eq!(primary_revision(&s), Some("app-00003"));
        let s = service(
            json!({KNATIVE_PRIMARY_REVISION: "app-00001", FLAGGER_KNATIVE_PRIMARY_REVISION: "app-00003"}),
            None,
        );
        assert_eq!(primary_revision(&s), Some("app-00001"));
        assert_eq!(primary_revision(&service(json!({}), None)), None);
        assert_eq!(
            latest_revision(&service(json!({}), None)),
            Some("app-00002")
        );
    }
}
