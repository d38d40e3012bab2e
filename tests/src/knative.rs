//! Knative Serving's part, played by the test: no Knative controller runs here (it needs its
//! autoscaler, an Envoy ingress and real pods behind each Revision), so the test does what
//! Knative's reconcilers do to the objects fledge reads, on the real API server with the CRDs of
//! `knative.dev/serving` (installed by `cargo xtask cluster up`):
//!
//! - a new template of the Service makes a Revision `<service>-0000N` (N counts templates), whose
//!   status says `Ready` at its generation (or not, as the test asks);
//! - the Service's status names its latest created (and latest ready) Revision;
//! - the Service's `status.traffic` reflects its `spec.traffic`, the `latestRevision` entry
//!   resolved to the latest ready Revision.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::TestNs;

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "serving.knative.dev".into(),
        version: "v1".into(),
        api_version: "serving.knative.dev/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// A Knative Service and its Revisions, kept by the test as Knative would.
pub struct KnativeService {
    services: Api<DynamicObject>,
    revisions: Api<DynamicObject>,
    /// The Service's name.
    pub name: String,
    /// How many Revisions it has.
    pub revisions_made: u32,
}

impl KnativeService {
    /// Creates the Service with one container of `image` and its first Revision, ready.
    pub async fn create(ns: &TestNs, name: &str, image: &str) -> KnativeService {
        let services = Api::namespaced_with(
            ns.client.clone(),
            &ns.name,
            &resource("Service", "services"),
        );
        let revisions = Api::namespaced_with(
            ns.client.clone(),
            &ns.name,
            &resource("Revision", "revisions"),
        );
        let svc: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"containers": [{"image": image}]}}},
        }))
        .unwrap();
        services
            .create(&PostParams::default(), &svc)
            .await
            .unwrap_or_else(|e| panic!("creating Knative Service {name}: {e}"));
        let mut s = KnativeService {
            services,
            revisions,
            name: name.into(),
            revisions_made: 0,
        };
        s.revision(image, true).await;
        s
    }

    /// The Service as stored.
    pub async fn get(&self) -> Value {
        serde_json::to_value(self.services.get(&self.name).await.unwrap()).unwrap()
    }

    /// The name of Revision `n`.
    pub fn revision_name(&self, n: u32) -> String {
        format!("{}-{n:05}", self.name)
    }

    /// A new template (`image`) and its Revision, ready or not; returns its name.
    pub async fn new_revision(&mut self, image: &str, ready: bool) -> String {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": image}]}}}});
        self.services
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        self.revision(image, ready).await
    }

    async fn revision(&mut self, image: &str, ready: bool) -> String {
        self.revisions_made += 1;
        let name = self.revision_name(self.revisions_made);
        let rev: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "serving.knative.dev/v1", "kind": "Revision",
            "metadata": {"name": name, "labels": {
                "serving.knative.dev/service": self.name,
                "serving.knative.dev/configuration": self.name,
                "serving.knative.dev/configurationGeneration": self.revisions_made.to_string(),
            }},
            "spec": {"containers": [{"image": image}]},
        }))
        .unwrap();
        let created = self
            .revisions
            .create(&PostParams::default(), &rev)
            .await
            .unwrap_or_else(|e| panic!("creating Revision {name}: {e}"));
        let generation = created.metadata.generation.unwrap_or(1);
        let status = json!({"status": {
            "observedGeneration": generation,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                            "reason": if ready { "" } else { "ProgressDeadlineExceeded" }}],
        }});
        self.revisions
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        let mut svc_status = json!({"status": {"latestCreatedRevisionName": name}});
        if ready {
            svc_status["status"]["latestReadyRevisionName"] = json!(name);
        }
        self.services
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(&svc_status),
            )
            .await
            .unwrap();
        self.sync_traffic().await;
        name
    }

    /// `status.traffic` from `spec.traffic`, as Knative's route reconciler writes it.
    pub async fn sync_traffic(&self) {
        let svc = self.get().await;
        let latest_ready = svc["status"]["latestReadyRevisionName"].clone();
        let traffic: Vec<Value> = match svc["spec"]["traffic"].as_array() {
            Some(entries) => entries
                .iter()
                .map(|e| {
                    let latest = e["latestRevision"] == true;
                    json!({
                        "revisionName": if latest { latest_ready.clone() } else { e["revisionName"].clone() },
                        "latestRevision": latest,
                        "percent": e["percent"],
                    })
                })
                .collect(),
            None => vec![json!({"revisionName": latest_ready, "latestRevision": true, "percent": 100})],
        };
        let patch = json!({"status": {"traffic": traffic, "observedGeneration": svc["metadata"]["generation"]}});
        self.services
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// `spec.traffic` as `(latest?, revision, percent)` entries.
    pub async fn traffic(&self) -> Vec<(bool, String, i64)> {
        let svc = self.get().await;
        svc["spec"]["traffic"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["latestRevision"] == true,
                    e["revisionName"].as_str().unwrap_or_default().to_string(),
                    e["percent"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// The Revision the annotation names as promoted.
    pub async fn primary(&self) -> Option<String> {
        self.get().await["metadata"]["annotations"][fledge_api::KNATIVE_PRIMARY_REVISION]
            .as_str()
            .map(str::to_string)
    }
}

/// The Knative Service API of a namespace, for what the stand-in does not cover.
pub fn services(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource("Service", "services"))
}
