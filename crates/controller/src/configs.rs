//! Tracking of the ConfigMaps and Secrets a target references, without polling: metadata-only
//! watches tell which objects exist and when they change (their `resourceVersion`), and the
//! data is read only when a referenced object's version changed since its checksum was taken.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::Result;
use crate::workload::{self, ConfigRef, Workload};

/// Checksums of referenced configs, kept up to date from metadata watches.
pub struct ConfigTracker {
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
    secrets: Store<PartialObjectMeta<Secret>>,
    /// `(namespace, kind/name)` → `(resourceVersion, checksum)`.
    checksums: Mutex<HashMap<(String, String), (String, String)>>,
}

impl ConfigTracker {
    /// A tracker over the two metadata caches.
    pub fn new(
        config_maps: Store<PartialObjectMeta<ConfigMap>>,
        secrets: Store<PartialObjectMeta<Secret>>,
    ) -> Self {
        ConfigTracker {
            config_maps,
            secrets,
            checksums: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until both caches hold their first full list: before that, a ConfigMap that
    /// exists would look missing and the primary would be built without its copy.
    pub async fn wait_until_ready(&self) -> bool {
        self.config_maps.wait_until_ready().await.is_ok()
            && self.secrets.wait_until_ready().await.is_ok()
    }

    fn meta(&self, ns: &str, r: &ConfigRef) -> Option<ObjectMeta> {
        match r {
            ConfigRef::ConfigMap(n) => self
                .config_maps
                .get(&ObjectRef::new(n).within(ns))
                .map(|o| o.metadata.clone()),
            ConfigRef::Secret(n) => self
                .secrets
                .get(&ObjectRef::new(n).within(ns))
                .map(|o| o.metadata.clone()),
        }
    }

    /// Checksums of the configs `target` references that exist and are tracked. Reads an
    /// object's data only when its version changed since the last read.
    pub async fn checksums(
        &self,
        client: &Client,
        ns: &str,
        target: &Workload,
    ) -> Result<BTreeMap<ConfigRef, String>> {
        let mut out = BTreeMap::new();
        for r in target.configs.iter().cloned() {
            let Some(meta) = self.meta(ns, &r) else {
                continue;
            };
            if tracking_disabled(&meta) {
                continue;
            }
            let rv = meta.resource_version.clone().unwrap_or_default();
            let key = (ns.to_string(), r.key());
            let cached = self
                .checksums
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&key)
                .filter(|(v, _)| *v == rv)
                .map(|(_, sum)| sum.clone());
            let sum = match cached {
                Some(sum) => sum,
                None => {
                    let Some((rv, sum)) = read_checksum(client, ns, &r).await? else {
                        continue;
                    };
                    self.checksums
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(key, (rv, sum.clone()));
                    sum
                }
            };
            out.insert(r, sum);
        }
        Ok(out)
    }
}

/// Reads a config and returns its version and the checksum of its data.
async fn read_checksum(
    client: &Client,
    ns: &str,
    r: &ConfigRef,
) -> Result<Option<(String, String)>> {
    Ok(match r {
        ConfigRef::ConfigMap(n) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            api.get_opt(n).await?.map(|cm| {
                let mut entries: Vec<(&str, &[u8])> = Vec::new();
                for (k, v) in cm.data.iter().flatten() {
                    entries.push((k, v.as_bytes()));
                }
                for (k, v) in cm.binary_data.iter().flatten() {
                    entries.push((k, &v.0));
                }
                (
                    cm.resource_version().unwrap_or_default(),
                    workload::data_checksum(entries),
                )
            })
        }
        ConfigRef::Secret(n) => {
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            api.get_opt(n).await?.map(|s| {
                let entries = s
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.0.as_slice()));
                (
                    s.resource_version().unwrap_or_default(),
                    workload::data_checksum(entries),
                )
            })
        }
    })
}

/// Whether a config opts out of tracking (`fledge.dev/config-tracking: disabled`, or Flagger's
/// annotation).
pub fn tracking_disabled(meta: &ObjectMeta) -> bool {
    meta.annotations.as_ref().is_some_and(|a| {
        [
            workload::CONFIG_TRACKING_ANNOTATION,
            workload::FLAGGER_CONFIG_TRACKING_ANNOTATION,
        ]
        .iter()
        .any(|k| a.get(*k).is_some_and(|v| v == "disabled"))
    })
}
