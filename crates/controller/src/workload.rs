//! Pure builders for the workloads fledge manages: the revision hash of a target, the ConfigMaps
//! and Secrets it references, and the `<target>-primary` copy of it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, DeploymentStatus,
};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

use fledge_api::ImageRef;

use crate::Error;

/// Labels looked up, in order, in the target's selector to tell primary and canary pods apart
/// (Flagger's `-selector-labels` default).
pub const SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];

/// Labels of Flux's toolkit (ownership of the target by a Kustomization or HelmRelease): never
/// copied to the primary, which Flux does not own.
const TOOLKIT_MARKER: &str = "toolkit.fluxcd.io";

/// How primaries are made from targets (`fledge run --selector-labels`,
/// `--include-label-prefix`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryOptions {
    /// Labels looked up, in order, in the target's selector.
    pub selector_labels: Vec<String>,
    /// Prefixes of the target's labels copied to the primary; `*` for all.
    pub include_label_prefixes: Vec<String>,
}

impl Default for PrimaryOptions {
    fn default() -> Self {
        PrimaryOptions {
            selector_labels: SELECTOR_LABELS.iter().map(ToString::to_string).collect(),
            include_label_prefixes: vec!["*".into()],
        }
    }
}

impl PrimaryOptions {
    /// The labels of `labels` (a target's) that are copied to its primary copies.
    pub fn copied_labels(
        &self,
        labels: Option<&BTreeMap<String, String>>,
    ) -> BTreeMap<String, String> {
        labels
            .into_iter()
            .flatten()
            .filter(|(k, _)| self.copies_label(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether the target's label `key` is copied to the primary.
    pub fn copies_label(&self, key: &str) -> bool {
        !key.contains(TOOLKIT_MARKER)
            && self
                .include_label_prefixes
                .iter()
                .any(|p| p == "*" || (!p.is_empty() && key.starts_with(p.as_str())))
    }
}

/// Annotation on a ConfigMap or Secret that turns off its tracking (`disabled`).
pub const CONFIG_TRACKING_ANNOTATION: &str = "fledge.dev/config-tracking";
/// Flagger's annotation with the same meaning, honoured for migration.
pub const FLAGGER_CONFIG_TRACKING_ANNOTATION: &str = "flagger.app/config-tracking";

/// Annotations never copied from the target to the primary.
const SKIPPED_ANNOTATIONS: [&str; 3] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "kustomize.toolkit.fluxcd.io/checksum",
];

/// The node selector that holds a DaemonSet target at zero pods: no node has this label, so the
/// DaemonSet schedules nowhere (a DaemonSet has no replica count to set to zero).
pub const SCALE_TO_ZERO_LABEL: &str = "fledge.dev/scale-to-zero";
/// Flagger's node selector with the same meaning, removed too when a target scales up (after a
/// cut-over from Flagger).
pub const FLAGGER_SCALE_TO_ZERO_LABEL: &str = "flagger.app/scale-to-zero";

/// A DaemonSet seen as a Deployment, for everything that only reads a target or a primary (its
/// revision hash, tracked configs, images, selector label, readiness): the same metadata,
/// selector and pod template without the scale-to-zero node selector, and the rollout status of
/// a Deployment (`replicas` is the number of nodes that should run a pod).
pub fn daemonset_view(ds: &DaemonSet) -> Deployment {
    let spec = ds.spec.clone().unwrap_or_default();
    let mut template = spec.template;
    if let Some(pod) = template.spec.as_mut() {
        if let Some(sel) = pod.node_selector.as_mut() {
            sel.remove(SCALE_TO_ZERO_LABEL);
            sel.remove(FLAGGER_SCALE_TO_ZERO_LABEL);
        }
        if pod.node_selector.as_ref().is_some_and(BTreeMap::is_empty) {
            pod.node_selector = None;
        }
    }
    let st = ds.status.clone().unwrap_or_default();
    Deployment {
        metadata: ds.metadata.clone(),
        spec: Some(DeploymentSpec {
            replicas: Some(st.desired_number_scheduled),
            selector: spec.selector,
            template,
            min_ready_seconds: spec.min_ready_seconds,
            revision_history_limit: spec.revision_history_limit,
            ..Default::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: st.observed_generation,
            replicas: Some(st.current_number_scheduled),
            updated_replicas: st.updated_number_scheduled,
            available_replicas: st.number_available,
            ready_replicas: Some(st.number_ready),
            ..Default::default()
        }),
    }
}

/// The primary DaemonSet of a DaemonSet target: the primary built by [`build_primary`] from the
/// target's view, with the target's update strategy.
pub fn primary_daemonset(primary: Deployment, target: &DaemonSet) -> DaemonSet {
    let spec = primary.spec.unwrap_or_default();
    DaemonSet {
        metadata: primary.metadata,
        spec: Some(DaemonSetSpec {
            selector: spec.selector,
            template: spec.template,
            min_ready_seconds: spec.min_ready_seconds,
            revision_history_limit: spec.revision_history_limit,
            update_strategy: target.spec.as_ref().and_then(|s| s.update_strategy.clone()),
        }),
        status: None,
    }
}

/// A Deployment as the controller's cache keeps it (a DaemonSet or StatefulSet is seen as one,
/// through [`daemonset_view`] and `statefulset::deployment_view`): its metadata, and of its spec
/// and status what the controller reads, with the pod template reduced when it is cached to its
/// hash (the revision), its containers' images and the ConfigMaps and Secrets it references.
///
/// k8s-openapi's `Deployment` is 2.4 KB of fixed-size structure before any content, and each
/// container of its template 2.1 KB more; at a thousand Canaries the cache holds two thousand
/// of them (targets and primaries). A primary is made from the target's template read afresh
/// from the API server, never from this. (`Deserialize` only because kube's controller asks it
/// of the objects that trigger reconciles; it is built with [`Workload::from_deployment`].)
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct Workload {
    /// The object's metadata, without its labels and annotations (the controller never reads
    /// them from the cache, and at a thousand Canaries the two maps held about 1.1 MB: each
    /// Deployment has at least the `deployment.kubernetes.io/revision` annotation) nor
    /// `managedFields`.
    pub metadata: ObjectMeta,
    /// `spec.replicas`.
    pub replicas: Option<i32>,
    /// `spec.selector.matchLabels`.
    pub match_labels: Option<BTreeMap<String, String>>,
    /// [`template_hash`] of the pod template.
    pub template_hash: String,
    /// The containers' names and images, in order.
    pub containers: Vec<(String, Option<String>)>,
    /// [`referenced_configs`] of the pod template.
    pub configs: BTreeSet<ConfigRef>,
    /// The rollout status.
    pub status: WorkloadStatus,
}

/// What [`Workload`] keeps of a Deployment's status.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct WorkloadStatus {
    pub observed_generation: Option<i64>,
    pub replicas: Option<i32>,
    pub updated_replicas: Option<i32>,
    pub available_replicas: Option<i32>,
}

impl Workload {
    /// The cached form of `d`, taking its metadata.
    pub fn from_deployment(d: Deployment) -> Self {
        Workload::from_parts(d.metadata, d.spec.as_ref(), d.status.as_ref())
    }

    fn from_parts(
        metadata: ObjectMeta,
        spec: Option<&DeploymentSpec>,
        status: Option<&DeploymentStatus>,
    ) -> Self {
        let pod = spec.and_then(|s| s.template.spec.as_ref());
        Workload {
            metadata: ObjectMeta {
                labels: None,
                annotations: None,
                managed_fields: None,
                ..metadata
            },
            replicas: spec.and_then(|s| s.replicas),
            match_labels: spec.and_then(|s| s.selector.match_labels.clone()),
            template_hash: spec.map(|s| template_hash(&s.template)).unwrap_or_default(),
            containers: pod
                .map(|p| {
                    p.containers
                        .iter()
                        .map(|c| (c.name.clone(), c.image.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            configs: pod.map(referenced_configs).unwrap_or_default(),
            status: status
                .map(|st| WorkloadStatus {
                    observed_generation: st.observed_generation,
                    replicas: st.replicas,
                    updated_replicas: st.updated_replicas,
                    available_replicas: st.available_replicas,
                })
                .unwrap_or_default(),
        }
    }

    /// `(container, image)` of the containers that name an image.
    pub fn images(&self) -> Vec<(String, String)> {
        self.containers
            .iter()
            .filter_map(|(name, image)| Some((name.clone(), image.clone()?)))
            .collect()
    }
}

impl kube::Resource for Workload {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        <Deployment as kube::Resource>::kind(&())
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        <Deployment as kube::Resource>::group(&())
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        <Deployment as kube::Resource>::version(&())
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        <Deployment as kube::Resource>::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

pub use fledge_api::primary_name;

/// A short, stable hash of a pod template: the revision of the target. Two templates that
/// serialize to the same JSON have the same hash, across restarts and versions of fledge.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    hex16(&Sha256::digest(&json))
}

/// A short, stable checksum of a ConfigMap's or Secret's data.
pub fn data_checksum<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut h = Sha256::new();
    let sorted: BTreeMap<&str, &[u8]> = entries.into_iter().collect();
    for (k, v) in sorted {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    hex16(&h.finalize())
}

fn hex16(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A ConfigMap or Secret referenced by a pod template.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
pub enum ConfigRef {
    /// A ConfigMap by name.
    ConfigMap(String),
    /// A Secret by name.
    Secret(String),
}

impl ConfigRef {
    /// The key used in `status.trackedConfigs`: `ConfigMap/<name>` or `Secret/<name>`.
    pub fn key(&self) -> String {
        match self {
            ConfigRef::ConfigMap(n) => format!("ConfigMap/{n}"),
            ConfigRef::Secret(n) => format!("Secret/{n}"),
        }
    }
    /// The referenced object's name.
    pub fn name(&self) -> &str {
        match self {
            ConfigRef::ConfigMap(n) | ConfigRef::Secret(n) => n,
        }
    }
}

/// Every ConfigMap and Secret a pod spec references: volumes (also projected), `env`
/// `valueFrom` and `envFrom`, in init containers too. Optional references are included; the
/// caller skips the ones that do not exist.
pub fn referenced_configs(pod: &PodSpec) -> BTreeSet<ConfigRef> {
    let mut refs = BTreeSet::new();
    for v in pod.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            refs.insert(ConfigRef::ConfigMap(cm.name.clone()));
        }
        if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            refs.insert(ConfigRef::Secret(name));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &src.config_map {
                refs.insert(ConfigRef::ConfigMap(cm.name.clone()));
            }
            if let Some(s) = &src.secret {
                refs.insert(ConfigRef::Secret(s.name.clone()));
            }
        }
    }
    let containers = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten());
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                if let Some(k) = &from.config_map_key_ref {
                    refs.insert(ConfigRef::ConfigMap(k.name.clone()));
                }
                if let Some(k) = &from.secret_key_ref {
                    refs.insert(ConfigRef::Secret(k.name.clone()));
                }
            }
        }
        for e in c.env_from.iter().flatten() {
            if let Some(cm) = &e.config_map_ref {
                refs.insert(ConfigRef::ConfigMap(cm.name.clone()));
            }
            if let Some(s) = &e.secret_ref {
                refs.insert(ConfigRef::Secret(s.name.clone()));
            }
        }
    }
    refs.retain(|r| !r.name().is_empty());
    refs
}

/// Rewrites every reference to a tracked config in a pod spec to its `-primary` copy.
pub fn rewrite_config_refs(pod: &mut PodSpec, tracked: &BTreeSet<ConfigRef>) {
    let cm = |n: &mut String| {
        if tracked.contains(&ConfigRef::ConfigMap(n.clone())) {
            *n = primary_name(n);
        }
    };
    let sec = |n: &mut String| {
        if tracked.contains(&ConfigRef::Secret(n.clone())) {
            *n = primary_name(n);
        }
    };
    for v in pod.volumes.iter_mut().flatten() {
        if let Some(c) = &mut v.config_map {
            cm(&mut c.name);
        }
        if let Some(n) = v.secret.as_mut().and_then(|s| s.secret_name.as_mut()) {
            sec(n);
        }
        for src in v
            .projected
            .iter_mut()
            .flat_map(|p| p.sources.iter_mut().flatten())
        {
            if let Some(c) = &mut src.config_map {
                cm(&mut c.name);
            }
            if let Some(s) = &mut src.secret {
                sec(&mut s.name);
            }
        }
    }
    let init = pod.init_containers.iter_mut().flatten();
    for c in pod.containers.iter_mut().chain(init) {
        for e in c.env.iter_mut().flatten() {
            if let Some(from) = &mut e.value_from {
                if let Some(k) = &mut from.config_map_key_ref {
                    cm(&mut k.name);
                }
                if let Some(k) = &mut from.secret_key_ref {
                    sec(&mut k.name);
                }
            }
        }
        for e in c.env_from.iter_mut().flatten() {
            if let Some(c) = &mut e.config_map_ref {
                cm(&mut c.name);
            }
            if let Some(s) = &mut e.secret_ref {
                sec(&mut s.name);
            }
        }
    }
}

/// The selector label of a target and its value, e.g. `("app", "podinfo")`.
pub fn selector_label(target: &Workload, opts: &PrimaryOptions) -> Result<(String, String), Error> {
    selector_label_of(
        target.metadata.name.as_deref(),
        target.match_labels.as_ref(),
        opts,
    )
}

/// [`selector_label`] of a Deployment as the API server has it.
fn deployment_selector_label(
    target: &Deployment,
    opts: &PrimaryOptions,
) -> Result<(String, String), Error> {
    selector_label_of(
        target.metadata.name.as_deref(),
        target
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref()),
        opts,
    )
}

fn selector_label_of(
    name: Option<&str>,
    labels: Option<&BTreeMap<String, String>>,
    opts: &PrimaryOptions,
) -> Result<(String, String), Error> {
    opts.selector_labels
        .iter()
        .find_map(|k| {
            labels
                .and_then(|l| l.get(k))
                .map(|v| (k.to_string(), v.clone()))
        })
        .ok_or_else(|| {
            Error::InvalidTarget(format!(
                "spec.selector.matchLabels of Deployment {} has none of the labels {}; add one of \
                 them to the selector and the pod template (or name its label in fledge run \
                 --selector-labels)",
                name.unwrap_or_default(),
                opts.selector_labels.join(", ")
            ))
        })
}

/// Builds `<target>-primary`: the target's spec with the selector label's value rewritten to
/// `<value>-primary`, tracked configs renamed to their `-primary` copies, owned by the Canary.
/// `replicas` is the primary's replica count (the target's, kept when the primary exists).
/// A copy of `spec` with its own replicas, selector and pod template: the rollout settings
/// (readiness, deadline, history, strategy) kept, never paused.
fn copied_spec(
    spec: &DeploymentSpec,
    replicas: Option<i32>,
    selector: LabelSelector,
    template: k8s_openapi::api::core::v1::PodTemplateSpec,
) -> DeploymentSpec {
    DeploymentSpec {
        replicas,
        selector,
        template,
        min_ready_seconds: spec.min_ready_seconds,
        progress_deadline_seconds: spec.progress_deadline_seconds,
        revision_history_limit: spec.revision_history_limit,
        strategy: spec.strategy.clone(),
        paused: None,
    }
}

/// The label that marks a statistical judgement's fresh baseline pods (and selects them).
pub const BASELINE_LABEL: &str = "fledge.dev/baseline";

/// Whether a Canary (fledge's or Flagger's) controls this object: a primary, or a baseline.
pub fn owned_by_canary(meta: &ObjectMeta) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.kind == "Canary")
}

/// What the cache keeps of the pod template of a workload a Canary owns: its containers' names
/// and images, all the controller reads of it (the images a rollout moves from, for the plan
/// and the ledger).
/// A copy is made from the target's template, never from the primary's, but for a statistical
/// judgement's baseline, which reads the primary afresh. A primary's template is most of its
/// size, and primaries are half the Deployments of a cluster of Canaries.
pub fn slim_owned_template(meta: &ObjectMeta, template: &mut PodTemplateSpec) {
    if !owned_by_canary(meta) {
        return;
    }
    let containers = template
        .spec
        .as_ref()
        .map(|p| {
            p.containers
                .iter()
                .map(|c| k8s_openapi::api::core::v1::Container {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default();
    *template = PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers,
            ..Default::default()
        }),
    };
}

/// A statistical judgement's fresh baseline: `<target>-baseline`, the primary's pod template
/// and labels (so that the primary Service sends it its share of requests and the metrics of
/// its pods look like the primary's) plus [`BASELINE_LABEL`], which its selector also requires
/// so that it never adopts the primary's pods; `replicas` of them, owned by the Canary.
pub fn build_baseline(
    primary: &Deployment,
    target: &str,
    owner: OwnerReference,
    replicas: i32,
) -> Result<Deployment, Error> {
    let name = fledge_api::baseline_name(target);
    let spec = primary.spec.as_ref().ok_or_else(|| {
        Error::InvalidTarget(format!(
            "Deployment {} has no spec to copy to {name}",
            primary_name(target)
        ))
    })?;
    let mark = (BASELINE_LABEL.to_string(), "true".to_string());
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.remove("pod-template-hash");
    labels.insert(mark.0.clone(), mark.1.clone());
    let mut selector = spec.selector.match_labels.clone().unwrap_or_default();
    selector.insert(mark.0.clone(), mark.1.clone());
    let mut labels = primary.metadata.labels.clone().unwrap_or_default();
    labels.insert(mark.0, mark.1);
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: primary.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(copied_spec(
            spec,
            Some(replicas.max(1)),
            LabelSelector {
                match_labels: Some(selector),
                match_expressions: spec.selector.match_expressions.clone(),
            },
            template,
        )),
        status: None,
    })
}

pub fn build_primary(
    target: &Deployment,
    owner: OwnerReference,
    tracked: &BTreeSet<ConfigRef>,
    replicas: Option<i32>,
    opts: &PrimaryOptions,
) -> Result<Deployment, Error> {
    let (label, value) = deployment_selector_label(target, opts)?;
    let primary_value = primary_name(&value);
    let name = primary_name(target.metadata.name.as_deref().unwrap_or_default());
    let spec = target
        .spec
        .as_ref()
        .ok_or_else(|| Error::InvalidTarget(format!("Deployment {name} has no spec")))?;

    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(label.clone(), primary_value.clone());
    if let Some(pod) = &mut template.spec {
        rewrite_config_refs(pod, tracked);
    }

    let mut labels = opts.copied_labels(target.metadata.labels.as_ref());
    labels.insert(label.clone(), primary_value.clone());
    let annotations: BTreeMap<String, String> = target
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !SKIPPED_ANNOTATIONS.contains(&k.as_str()))
        .collect();

    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: target.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(copied_spec(
            spec,
            replicas.or(spec.replicas),
            LabelSelector {
                match_labels: Some(BTreeMap::from([(label, primary_value)])),
                ..Default::default()
            },
            template,
        )),
        status: None,
    })
}

/// Puts `images` into the pod template: each container (and init container) whose image is of
/// the repository of one of `images`, however written (`nginx:1` and `docker.io/library/nginx:2`
/// are one repository), runs that image. Strings that are not image references match nothing.
/// Returns `(container, from, to)` for each change.
pub fn use_images(
    template: &mut PodTemplateSpec,
    images: &[String],
) -> Vec<(String, String, String)> {
    let wanted: Vec<ImageRef<'_>> = images
        .iter()
        .filter_map(|i| ImageRef::parse(i).ok())
        .collect();
    let mut changed = Vec::new();
    let Some(pod) = template.spec.as_mut() else {
        return changed;
    };
    let init = pod.init_containers.iter_mut().flatten();
    for c in pod.containers.iter_mut().chain(init) {
        let Some(current) = c.image.clone() else {
            continue;
        };
        let Ok(reference) = ImageRef::parse(&current) else {
            continue;
        };
        if let Some(wanted) = wanted.iter().find(|w| w.same_repository(&reference))
            && wanted.as_str() != current
        {
            changed.push((c.name.clone(), current.clone(), wanted.to_string()));
            c.image = Some(wanted.to_string());
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::owner;
    use k8s_openapi::api::core::v1::{
        ConfigMapKeySelector, ConfigMapVolumeSource, EnvFromSource, SecretKeySelector,
        SecretVolumeSource, Volume,
    };

    fn target() -> Deployment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "podinfo", "namespace": "test",
                "labels": {"app": "podinfo", "team": "a"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "yes"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "podinfo"}},
                "template": {
                    "metadata": {"labels": {"app": "podinfo"}},
                    "spec": {
                        "containers": [{"name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                            "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "a"}}},
                                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec-env", "key": "b"}}}],
                            "envFrom": [{"configMapRef": {"name": "cm-all"}}]}],
                        "volumes": [{"name": "c", "configMap": {"name": "cm-vol"}},
                                    {"name": "s", "secret": {"secretName": "sec-vol"}}]
                    }
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn finds_every_referenced_config() {
        let t = target();
        let refs = referenced_configs(t.spec.unwrap().template.spec.as_ref().unwrap());
        let keys: Vec<String> = refs.iter().map(ConfigRef::key).collect();
        assert_eq!(
            keys,
            [
                "ConfigMap/cm-all",
                "ConfigMap/cm-env",
                "ConfigMap/cm-vol",
                "Secret/sec-env",
                "Secret/sec-vol"
            ]
        );
    }

    #[test]
    fn a_cached_primary_keeps_only_its_images_and_a_target_keeps_its_whole_template() {
        let mut t = target();
        let full = t.spec.clone().unwrap().template;
        let meta = t.metadata.clone();
        slim_owned_template(&meta, &mut t.spec.as_mut().unwrap().template);
        assert_eq!(
            t.spec.as_ref().unwrap().template,
            full,
            "a target is never cut"
        );

        let mut p = build_primary(
            &target(),
            owner(),
            &BTreeSet::new(),
            None,
            &PrimaryOptions::default(),
        )
        .unwrap();
        let meta = p.metadata.clone();
        let spec = p.spec.as_mut().unwrap();
        slim_owned_template(&meta, &mut spec.template);
        assert_eq!(spec.replicas, Some(3), "the rest of the spec stays");
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.containers.len(), 1);
        assert_eq!(pod.containers[0].name, "podinfod");
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some("ghcr.io/stefanprodan/podinfo:6.0.0")
        );
        assert!(pod.containers[0].env.is_none() && pod.volumes.is_none());
        assert!(spec.template.metadata.is_none());

        // Flagger's primary (an owner of another group, a cut-over) is cut the same way; an
        // owner that is not the controller, or not a Canary, is not.
        let mut o = owner();
        o.api_version = "flagger.app/v1beta1".into();
        assert!(owned_by_canary(&ObjectMeta {
            owner_references: Some(vec![o.clone()]),
            ..Default::default()
        }));
        o.controller = None;
        assert!(!owned_by_canary(&ObjectMeta {
            owner_references: Some(vec![o.clone()]),
            ..Default::default()
        }));
        o.controller = Some(true);
        o.kind = "HelmRelease".into();
        assert!(!owned_by_canary(&ObjectMeta {
            owner_references: Some(vec![o]),
            ..Default::default()
        }));
    }

    #[test]
    fn the_baseline_is_the_primary_marked_selected_apart_and_sized_as_the_canary() {
        let t = target();
        let p = build_primary(
            &t,
            owner(),
            &BTreeSet::new(),
            None,
            &PrimaryOptions::default(),
        )
        .unwrap();
        let b = build_baseline(&p, "podinfo", owner(), 2).unwrap();
        assert_eq!(b.metadata.name.as_deref(), Some("podinfo-baseline"));
        assert_eq!(
            b.metadata.owner_references.as_ref().unwrap()[0].kind,
            "Canary"
        );
        let spec = b.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let selector = spec.selector.match_labels.unwrap();
        assert_eq!(
            selector,
            BTreeMap::from([
                ("app".to_string(), "podinfo-primary".to_string()),
                (BASELINE_LABEL.to_string(), "true".to_string())
            ]),
            "the primary Service's label, and never the primary's pods alone"
        );
        let pod_labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(pod_labels["app"], "podinfo-primary");
        assert_eq!(pod_labels[BASELINE_LABEL], "true");
        assert_eq!(
            spec.template.spec,
            p.spec.unwrap().template.spec,
            "the primary's pods"
        );
    }

    #[test]
    fn primary_is_a_relabelled_copy_owned_by_the_canary() {
        let t = target();
        let tracked = referenced_configs(t.spec.as_ref().unwrap().template.spec.as_ref().unwrap());
        let p = build_primary(&t, owner(), &tracked, None, &PrimaryOptions::default()).unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("podinfo-primary"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("test"));
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["app"],
            "podinfo-primary"
        );
        assert_eq!(p.metadata.labels.as_ref().unwrap()["team"], "a");
        let ann = p.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann.len(), 1, "{ann:?}");
        assert_eq!(ann["keep"], "yes");
        assert_eq!(
            p.metadata.owner_references.as_ref().unwrap()[0].kind,
            "Canary"
        );
        let spec = p.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels.unwrap()["app"],
            "podinfo-primary"
        );
        let tpl = spec.template;
        assert_eq!(
            tpl.metadata.unwrap().labels.unwrap()["app"],
            "podinfo-primary"
        );
        let pod = tpl.spec.unwrap();
        let c = &pod.containers[0];
        let env = c.env.as_ref().unwrap();
        let cmk: &ConfigMapKeySelector = env[0]
            .value_from
            .as_ref()
            .unwrap()
            .config_map_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(cmk.name, "cm-env-primary");
        let sk: &SecretKeySelector = env[1]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(sk.name, "sec-env-primary");
        let ef: &EnvFromSource = &c.env_from.as_ref().unwrap()[0];
        assert_eq!(ef.config_map_ref.as_ref().unwrap().name, "cm-all-primary");
        let vols: &Vec<Volume> = pod.volumes.as_ref().unwrap();
        let cmv: &ConfigMapVolumeSource = vols[0].config_map.as_ref().unwrap();
        assert_eq!(cmv.name, "cm-vol-primary");
        let sv: &SecretVolumeSource = vols[1].secret.as_ref().unwrap();
        assert_eq!(sv.secret_name.as_deref(), Some("sec-vol-primary"));
    }

    #[test]
    fn untracked_configs_keep_their_names() {
        let t = target();
        let tracked = BTreeSet::from([ConfigRef::ConfigMap("cm-vol".into())]);
        let p = build_primary(&t, owner(), &tracked, Some(5), &PrimaryOptions::default()).unwrap();
        let spec = p.spec.unwrap();
        assert_eq!(spec.replicas, Some(5));
        let pod = spec.template.spec.unwrap();
        assert_eq!(
            pod.volumes.as_ref().unwrap()[0]
                .config_map
                .as_ref()
                .unwrap()
                .name,
            "cm-vol-primary"
        );
        assert_eq!(
            pod.containers[0].env_from.as_ref().unwrap()[0]
                .config_map_ref
                .as_ref()
                .unwrap()
                .name,
            "cm-all"
        );
    }

    #[test]
    fn a_target_without_a_selector_label_is_refused_with_the_labels_to_use() {
        let mut t = target();
        t.spec.as_mut().unwrap().selector.match_labels =
            Some(BTreeMap::from([("tier".into(), "web".into())]));
        let err = build_primary(
            &t,
            owner(),
            &BTreeSet::new(),
            None,
            &PrimaryOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("app, name, app.kubernetes.io/name"), "{err}");
        assert!(err.contains("podinfo"), "{err}");
    }

    #[test]
    fn selector_labels_and_label_prefixes_follow_the_options() {
        let mut t = target();
        t.spec.as_mut().unwrap().selector.match_labels =
            Some(BTreeMap::from([("tier".into(), "web".into())]));
        t.metadata.labels.as_mut().unwrap().extend([
            ("tier".to_string(), "web".to_string()),
            (
                "kustomize.toolkit.fluxcd.io/name".to_string(),
                "apps".to_string(),
            ),
        ]);
        let opts = PrimaryOptions {
            selector_labels: vec!["tier".into()],
            include_label_prefixes: vec!["te".into()],
        };
        let p = build_primary(&t, owner(), &BTreeSet::new(), None, &opts).unwrap();
        let labels = p.metadata.labels.unwrap();
        assert_eq!(
            labels,
            BTreeMap::from([
                ("team".to_string(), "a".to_string()),
                ("tier".to_string(), "web-primary".to_string()),
            ]),
            "the selector label is rewritten, `te*` copied, `app` and Flux's labels left out"
        );
        let none = PrimaryOptions {
            include_label_prefixes: vec![],
            ..opts.clone()
        };
        let p = build_primary(&t, owner(), &BTreeSet::new(), None, &none).unwrap();
        assert_eq!(
            p.metadata.labels.unwrap().keys().collect::<Vec<_>>(),
            ["tier"]
        );
        let all = PrimaryOptions::default();
        let p = build_primary(&t, owner(), &BTreeSet::new(), None, &all);
        assert!(
            p.unwrap_err().to_string().contains("--selector-labels"),
            "the default labels are not in this selector"
        );
        let all = PrimaryOptions {
            include_label_prefixes: vec!["*".into()],
            ..opts
        };
        let p = build_primary(&t, owner(), &BTreeSet::new(), None, &all).unwrap();
        let labels = p.metadata.labels.unwrap();
        assert!(labels.contains_key("app") && labels.contains_key("team"));
        assert!(!labels.keys().any(|k| k.contains("toolkit.fluxcd.io")));
    }

    fn daemonset() -> DaemonSet {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "node-agent", "namespace": "test", "generation": 3,
                "labels": {"app": "node-agent"}},
            "spec": {
                "selector": {"matchLabels": {"app": "node-agent"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}},
                "template": {
                    "metadata": {"labels": {"app": "node-agent"}},
                    "spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                        "containers": [{"name": "agent", "image": "ghcr.io/example/agent:1.0.0"}]}
                }
            },
            "status": {"currentNumberScheduled": 3, "desiredNumberScheduled": 3,
                "numberMisscheduled": 0, "numberReady": 2, "numberAvailable": 2,
                "updatedNumberScheduled": 3, "observedGeneration": 3}
        }))
        .unwrap()
    }

    #[test]
    fn a_daemonset_held_at_zero_has_the_revision_it_has_when_running() {
        let ds = daemonset();
        let running = daemonset_view(&ds);
        let mut held = ds.clone();
        held.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .node_selector
            .as_mut()
            .unwrap()
            .insert(SCALE_TO_ZERO_LABEL.into(), "true".into());
        let held = daemonset_view(&held);
        let hash = |d: &Deployment| template_hash(&d.spec.as_ref().unwrap().template);
        assert_eq!(hash(&running), hash(&held));
        assert_eq!(
            held.spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap()
                .node_selector,
            Some(BTreeMap::from([(
                "kubernetes.io/os".to_string(),
                "linux".to_string()
            )])),
            "the user's node selector stays"
        );
        // Readiness as a Deployment's: 3 nodes, 3 updated, 2 available.
        let st = running.status.unwrap();
        assert_eq!(running.spec.unwrap().replicas, Some(3));
        assert_eq!(
            (
                st.replicas,
                st.updated_replicas,
                st.available_replicas,
                st.observed_generation
            ),
            (Some(3), Some(3), Some(2), Some(3))
        );
    }

    #[test]
    fn the_primary_daemonset_is_a_relabelled_copy_with_the_targets_update_strategy() {
        let ds = daemonset();
        let p = build_primary(
            &daemonset_view(&ds),
            owner(),
            &BTreeSet::new(),
            None,
            &PrimaryOptions::default(),
        )
        .unwrap();
        let p = primary_daemonset(p, &ds);
        assert_eq!(p.metadata.name.as_deref(), Some("node-agent-primary"));
        let spec = p.spec.unwrap();
        assert_eq!(
            spec.selector.match_labels.unwrap()["app"],
            "node-agent-primary"
        );
        assert_eq!(
            spec.template.metadata.unwrap().labels.unwrap()["app"],
            "node-agent-primary"
        );
        assert_eq!(spec.update_strategy, ds.spec.unwrap().update_strategy);
    }

    #[test]
    fn a_cached_workload_keeps_the_revision_images_configs_selector_and_status_of_the_template() {
        let mut d = target();
        d.status = Some(DeploymentStatus {
            observed_generation: Some(4),
            replicas: Some(3),
            updated_replicas: Some(2),
            available_replicas: Some(1),
            ready_replicas: Some(1),
            ..Default::default()
        });
        let w = Workload::from_deployment(d.clone());
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(w.template_hash, template_hash(&spec.template));
        assert_eq!(
            w.configs,
            referenced_configs(spec.template.spec.as_ref().unwrap())
        );
        assert_eq!(
            w.images(),
            [(
                "podinfod".to_string(),
                "ghcr.io/stefanprodan/podinfo:6.0.0".to_string()
            )]
        );
        assert_eq!(w.replicas, Some(3));
        // The metadata without the labels and annotations, which the controller never reads
        // from the cache.
        assert_eq!(
            w.metadata,
            ObjectMeta {
                labels: None,
                annotations: None,
                ..d.metadata.clone()
            }
        );
        assert!(d.metadata.labels.is_some() && d.metadata.annotations.is_some());
        assert_eq!(
            w.status,
            WorkloadStatus {
                observed_generation: Some(4),
                replicas: Some(3),
                updated_replicas: Some(2),
                available_replicas: Some(1),
            }
        );
        let opts = PrimaryOptions::default();
        assert_eq!(
            selector_label(&w, &opts).unwrap(),
            deployment_selector_label(&d, &opts).unwrap()
        );
        assert_eq!(Workload::from_deployment(d.clone()), w);

        // A container without an image is kept by name (the alert lists it), not as an image.
        d.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = None;
        let w = Workload::from_deployment(d.clone());
        assert_eq!(w.containers, [("podinfod".to_string(), None)]);
        assert!(w.images().is_empty());

        // What the cache holds per object: a fraction of k8s-openapi's fixed-size structure,
        // which a Deployment holds before any content (and each container 2.1 KB more).
        assert!(
            size_of::<Workload>() * 4 < size_of::<Deployment>(),
            "{} bytes against {}",
            size_of::<Workload>(),
            size_of::<Deployment>()
        );
    }

    #[test]
    fn the_template_hash_is_stable_and_changes_with_the_image() {
        let t = target();
        let tpl = t.spec.unwrap().template;
        let h1 = template_hash(&tpl);
        assert_eq!(h1.len(), 16);
        assert_eq!(h1, template_hash(&tpl.clone()));
        let mut other = tpl.clone();
        other.spec.as_mut().unwrap().containers[0].image =
            Some("ghcr.io/stefanprodan/podinfo:6.0.1".into());
        assert_ne!(h1, template_hash(&other));
    }

    #[test]
    fn data_checksum_depends_on_keys_and_values_not_order() {
        let a = data_checksum([("a", b"1".as_slice()), ("b", b"2".as_slice())]);
        let b = data_checksum([("b", b"2".as_slice()), ("a", b"1".as_slice())]);
        assert_eq!(a, b);
        assert_ne!(
            a,
            data_checksum([("a", b"1".as_slice()), ("b", b"3".as_slice())])
        );
        // Boundaries between key and value are part of the checksum.
        assert_ne!(
            data_checksum([("ab", b"".as_slice())]),
            data_checksum([("a", b"b".as_slice())])
        );
    }

    #[test]
    fn images_of_a_promoted_revision_replace_those_of_the_same_repository() {
        let mut t: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {
                "containers": [
                    {"name": "app", "image": "ghcr.io/acme/app:2.0.0"},
                    {"name": "proxy", "image": "envoy:1.30"}
                ],
                "initContainers": [{"name": "migrate", "image": "ghcr.io/acme/app:2.0.0"}]
            }
        }))
        .unwrap();
        let changed = use_images(
            &mut t,
            &[
                "ghcr.io/acme/app:1.0.0".into(),
                "other:1".into(),
                "Not A Reference".into(),
            ],
        );
        assert_eq!(
            changed,
            vec![
                (
                    "app".into(),
                    "ghcr.io/acme/app:2.0.0".into(),
                    "ghcr.io/acme/app:1.0.0".into()
                ),
                (
                    "migrate".into(),
                    "ghcr.io/acme/app:2.0.0".into(),
                    "ghcr.io/acme/app:1.0.0".into()
                ),
            ]
        );
        let pod = t.spec.unwrap();
        assert_eq!(pod.containers[1].image.as_deref(), Some("envoy:1.30"));
    }

    #[test]
    fn a_pinned_image_and_another_spelling_of_its_repository_are_replaced_too() {
        let sha = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let mut t: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {
                "containers": [
                    {"name": "app", "image": format!("registry:5000/app:v2@{sha}")},
                    {"name": "proxy", "image": "envoy:1.30"},
                    {"name": "other-port", "image": "registry:5001/app:v2"}
                ]
            }
        }))
        .unwrap();
        let changed = use_images(
            &mut t,
            &[
                "registry:5000/app:v1".into(),
                "docker.io/library/envoy:1.29".into(),
            ],
        );
        let to: Vec<&str> = changed.iter().map(|(_, _, to)| to.as_str()).collect();
        assert_eq!(to, ["registry:5000/app:v1", "docker.io/library/envoy:1.29"]);
        let pod = t.spec.unwrap();
        assert_eq!(
            pod.containers[2].image.as_deref(),
            Some("registry:5001/app:v2")
        );
    }
}
