//! Knative Service targets (provider `knative`): rolled out between the Service's own Revisions.
//!
//! There is no primary copy and there are no generated Services. The Revision named by the
//! annotation [`fledge_api::KNATIVE_PRIMARY_REVISION`] is the primary, the latest Revision
//! Knative created (`status.latestCreatedRevisionName`) the canary, and the revision the engine
//! compares (`status.lastAppliedSpec`) is that Revision's name: a new Revision is a new
//! revision to roll out. Readiness is the Revision's `Ready` condition at its current
//! generation, as Knative reports it. Knative scales Revisions itself, so the engine's scaling
//! actions do nothing here; the weights are the Service's `spec.traffic`
//! ([`fledge_routers::knative`]), and promotion names the Revision that passed as the primary.

use fledge_api::Canary;
use fledge_core::Readiness;
use fledge_routers::knative::{
    REVISION, SERVICE, latest_revision, no_revision_yet, primary_revision,
};
use kube::Client;
use serde_json::Value;

use crate::{Error, Result};

/// What fledge reads of a Knative Service and its two Revisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// `metadata.name` of the Service.
    pub name: String,
    /// The latest Revision Knative created: the canary.
    pub latest: String,
    /// The promoted Revision (the annotation), if one is named yet.
    pub primary: Option<String>,
    /// Whether only Flagger's annotation names the primary (a takeover from Flagger).
    pub pinned_by_flagger: bool,
    /// Readiness of the latest Revision.
    pub latest_ready: Readiness,
    /// Whether Knative has a ready Revision (`status.latestReadyRevisionName`): where it sends
    /// the traffic of `latestRevision: true`, the Service's whole traffic once fledge leaves.
    pub serves_without_fledge: bool,
    /// Readiness of the promoted Revision, when one is named.
    pub primary_ready: Option<Readiness>,
    /// `(container, image)` of the latest Revision.
    pub images: Vec<(String, String)>,
    /// `(container, image)` of the promoted Revision.
    pub primary_images: Vec<(String, String)>,
}

/// The Canary's Knative Service as this reconcile sees it, with its latest and promoted
/// Revisions (one GET each); `None` when the Service does not exist. A Service Knative has not
/// created a Revision of yet is waited for (a transient error).
pub async fn in_hand(client: &Client, canary: &Canary, ns: &str) -> Result<Option<View>> {
    let name = &canary.spec.target_ref.name;
    let Some(service) = SERVICE.get(client, ns, "knative", name).await? else {
        return Ok(None);
    };
    let Some(latest) = latest_revision(&service).map(str::to_string) else {
        return Err(Error::Router(no_revision_yet(ns, name)));
    };
    let primary = primary_revision(&service).map(str::to_string);
    let serves_without_fledge = service["status"]["latestReadyRevisionName"]
        .as_str()
        .is_some_and(|r| !r.is_empty());
    let pinned_by_flagger = primary.is_some()
        && service["metadata"]["annotations"][fledge_api::KNATIVE_PRIMARY_REVISION].is_null();
    let latest_rev = REVISION.get(client, ns, "knative", &latest).await?;
    let primary_rev = match &primary {
        Some(p) if *p == latest => latest_rev.clone(),
        Some(p) => REVISION.get(client, ns, "knative", p).await?,
        None => None,
    };
    Ok(Some(View {
        name: name.clone(),
        latest_ready: revision_readiness(latest_rev.as_ref()),
        primary_ready: primary
            .as_ref()
            .map(|_| revision_readiness(primary_rev.as_ref())),
        images: revision_images(latest_rev.as_ref()),
        primary_images: revision_images(primary_rev.as_ref()),
        latest,
        primary,
        pinned_by_flagger,
        serves_without_fledge,
    }))
}

/// A Revision's readiness as a one-replica workload's: ready when Knative says `Ready=True`
/// for its current generation, else not updated at all (so that no readiness threshold below
/// 100% takes it for ready). A missing Revision is not ready.
pub fn revision_readiness(revision: Option<&Value>) -> Readiness {
    let Some(r) = revision else {
        return Readiness {
            generation_observed: false,
            desired: 1,
            ..Readiness::default()
        };
    };
    let generation = r["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = r["status"]["observedGeneration"].as_i64().unwrap_or(0);
    let ready = r["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let n = i32::from(ready);
    Readiness {
        generation_observed: observed >= generation,
        desired: 1,
        current: n,
        updated: n,
        available: n,
    }
}

/// `(container, image)` of a Revision's containers (an unnamed single container as `""`).
fn revision_images(revision: Option<&Value>) -> Vec<(String, String)> {
    revision
        .and_then(|r| r["spec"]["containers"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["name"].as_str().unwrap_or_default().to_string(),
                c["image"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_revision_is_ready_when_knative_says_so_at_its_generation() {
        let rev = |observed: i64, ready: &str| {
            json!({
                "metadata": {"name": "app-00001", "generation": 1},
                "spec": {"containers": [{"image": "ghcr.io/app:1"}]},
                "status": {"observedGeneration": observed,
                           "conditions": [{"type": "Ready", "status": ready}]},
            })
        };
        assert_eq!(
            revision_readiness(Some(&rev(1, "True"))),
            Readiness::ready(1)
        );
        let not = revision_readiness(Some(&rev(1, "Unknown")));
        assert!(not.check(100).is_err() && not.check(10).is_err());
        let stale = revision_readiness(Some(&rev(0, "True")));
        assert!(!stale.generation_observed);
        assert!(revision_readiness(None).check(100).is_err());
        assert_eq!(
            revision_images(Some(&rev(1, "True"))),
            vec![(String::new(), "ghcr.io/app:1".to_string())]
        );
    }
}
