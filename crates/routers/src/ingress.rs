//! What the Ingress-based routers (`nginx`, `skipper`) share: the Ingress named by
//! `spec.ingressRef` (the apex Ingress, the user's) is read and copied into an Ingress
//! `<ingressRef>-canary` that fledge owns and that carries the routes.
//!
//! The copy keeps the apex Ingress's labels and annotations, as Flagger's does, except what
//! must not be copied: `kubectl.kubernetes.io/last-applied-configuration`, Flux's own
//! (`*.toolkit.fluxcd.io/*`, so that Flux does not take the copy for one of its objects) and
//! the router's own annotations, which it sets. Like Flagger, it adds
//! `kustomize.toolkit.fluxcd.io/reconcile: disabled` and `helm.toolkit.fluxcd.io/driftDetection:
//! disabled`, so that Flux never reverts what fledge writes.

use std::collections::BTreeMap;

use fledge_api::Canary;
use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::Api;

use crate::{Error, PeerKind, RouteTarget, cannot, owner_reference};

/// The kind of the canary Ingress.
pub const KIND: PeerKind = PeerKind {
    group: "networking.k8s.io",
    version: "v1",
    kind: "Ingress",
    plural: "ingresses",
};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const FLUX_MARKER: &str = "toolkit.fluxcd.io";
/// Flux's switches that Flagger turns off on the objects it writes.
const FLUX_OFF: [(&str, &str); 2] = [
    ("kustomize.toolkit.fluxcd.io/reconcile", "disabled"),
    ("helm.toolkit.fluxcd.io/driftDetection", "disabled"),
];

/// `spec.ingressRef.name`, or an error naming the field.
pub fn apex_ingress_name<'a>(canary: &'a Canary, provider: &str) -> Result<&'a str, Error> {
    canary
        .spec
        .ingress_ref
        .as_ref()
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            cannot(
                provider,
                format!(
                    "spec.ingressRef is required: name the Ingress that routes to the Service \
                     {}; provider {provider} copies it into <name>-canary",
                    canary.spec.apex_service_name()
                ),
            )
        })
}

/// `<ingressRef>-canary`, the Ingress the router writes; the apex Service's name when the
/// Canary names no Ingress (it has nothing to route then, and says so when asked to).
pub fn canary_ingress_name(canary: &Canary) -> String {
    let apex = canary
        .spec
        .ingress_ref
        .as_ref()
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(canary.spec.apex_service_name());
    format!("{apex}-canary")
}

fn api(client: &Client, t: &RouteTarget<'_>) -> Api<Ingress> {
    Api::namespaced(client.clone(), t.namespace())
}

/// The apex Ingress; an error naming `spec.ingressRef` when it does not exist.
pub(crate) async fn read_apex(
    client: &Client,
    t: &RouteTarget<'_>,
    provider: &str,
) -> Result<Ingress, Error> {
    let name = apex_ingress_name(t.canary, provider)?;
    api(client, t).get_opt(name).await?.ok_or_else(|| {
        cannot(
            provider,
            format!(
                "spec.ingressRef: Ingress {}/{name} does not exist; create it (routing to the \
                 Service {}) or fix the reference",
                t.namespace(),
                t.canary.spec.apex_service_name()
            ),
        )
    })
}

/// The canary Ingress, if it exists.
pub(crate) async fn read_canary(
    client: &Client,
    t: &RouteTarget<'_>,
) -> Result<Option<Ingress>, Error> {
    Ok(api(client, t)
        .get_opt(&canary_ingress_name(t.canary))
        .await?)
}

/// Deletes the canary Ingress; absent is fine.
pub(crate) async fn delete_canary(client: &Client, t: &RouteTarget<'_>) -> Result<(), Error> {
    KIND.delete(client, t.namespace(), &canary_ingress_name(t.canary))
        .await
}

/// The apex Ingress's annotations to copy: all but the last applied configuration, Flux's, and
/// those `own` says the router sets itself; plus Flux's switches turned off.
pub fn copied_annotations(apex: &Ingress, own: impl Fn(&str) -> bool) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = apex
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| *k != LAST_APPLIED && !k.contains(FLUX_MARKER) && !own(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in FLUX_OFF {
        out.insert(k.into(), v.into());
    }
    out
}

/// The apex Ingress's labels but Flux's, and fledge's `app.kubernetes.io/managed-by`.
pub fn copied_labels(apex: &Ingress) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = apex
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !k.contains(FLUX_MARKER))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert("app.kubernetes.io/managed-by".into(), "fledge".into());
    out
}

/// Renames the backends of every path that sends to Service `from`: `rename` gives the paths
/// that replace it (one or more). An error naming `spec.ingressRef` when no path sends to it.
pub fn replace_backends(
    spec: &IngressSpec,
    from: &str,
    ingress: &str,
    provider: &str,
    rename: impl Fn(&HTTPIngressPath) -> Vec<HTTPIngressPath>,
) -> Result<IngressSpec, Error> {
    let mut spec = spec.clone();
    let mut found = false;
    for rule in spec.rules.iter_mut().flatten() {
        let Some(http) = rule.http.as_mut() else {
            continue;
        };
        let mut paths = Vec::with_capacity(http.paths.len());
        for path in &http.paths {
            if path
                .backend
                .service
                .as_ref()
                .is_some_and(|s| s.name == from)
            {
                found = true;
                paths.extend(rename(path));
            } else {
                paths.push(path.clone());
            }
        }
        http.paths = paths;
    }
    if !found {
        return Err(cannot(
            provider,
            format!(
                "spec.ingressRef: Ingress {ingress} has no path whose backend is the Service \
                 {from}; point a path of its rules at the Service {from}, which fledge creates"
            ),
        ));
    }
    Ok(spec)
}

/// A path of `path`'s copy whose backend is Service `service`.
pub fn with_service(path: &HTTPIngressPath, service: &str) -> HTTPIngressPath {
    let mut p = path.clone();
    if let Some(s) = p.backend.service.as_mut() {
        s.name = service.to_string();
    }
    p
}

/// The canary Ingress as JSON for server-side apply (owned by the Canary unless `owned` is
/// false).
pub fn canary_ingress(
    canary: &Canary,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    spec: IngressSpec,
    owned: bool,
) -> Result<serde_json::Value, Error> {
    let ing = Ingress {
        metadata: ObjectMeta {
            name: Some(canary_ingress_name(canary)),
            namespace: canary.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: owned
                .then(|| owner_reference(canary))
                .flatten()
                .map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    };
    Ok(serde_json::to_value(ing)?)
}
