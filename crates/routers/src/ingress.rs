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
use fledge_core::Routes;
use k8s_openapi::api::networking::v1::{HTTPIngressPath, Ingress, IngressSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::Api;

use crate::{
    Capabilities, Error, FLUX_OFF, PeerKind, RouteTarget, Router, ServiceNames, cannot,
    owner_reference,
};

/// The kind of the canary Ingress.
pub const KIND: PeerKind = PeerKind {
    group: "networking.k8s.io",
    version: "v1",
    kind: "Ingress",
    plural: "ingresses",
    namespaced: true,
};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const FLUX_MARKER: &str = "toolkit.fluxcd.io";

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
async fn read_apex(client: &Client, t: &RouteTarget<'_>, provider: &str) -> Result<Ingress, Error> {
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
async fn read_canary(client: &Client, t: &RouteTarget<'_>) -> Result<Option<Ingress>, Error> {
    Ok(api(client, t)
        .get_opt(&canary_ingress_name(t.canary))
        .await?)
}

/// Deletes the canary Ingress; absent is fine.
async fn delete_canary(client: &Client, t: &RouteTarget<'_>) -> Result<(), Error> {
    KIND.delete(client, t.namespace(), &canary_ingress_name(t.canary))
        .await
}

/// The annotations to copy from the user's object (the apex Ingress, or APISIX's route): all
/// but the last applied configuration, Flux's, and those `own` says the router sets itself;
/// plus Flux's switches turned off.
pub fn copied_annotations(
    apex: &ObjectMeta,
    own: impl Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = apex
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

/// The labels of the user's object but Flux's, and fledge's `app.kubernetes.io/managed-by`.
pub fn copied_labels(apex: &ObjectMeta) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = apex
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !k.contains(FLUX_MARKER))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert("app.kubernetes.io/managed-by".into(), "fledge".into());
    out
}

/// The apex Ingress's spec with every path that sends to Service `from` sent to `to` instead
/// and, with `also`, a copy of it sending to `also` appended to its rule's paths (Flagger's
/// order). An error naming `spec.ingressRef` when no path sends to `from`.
pub fn replace_backends(
    spec: &IngressSpec,
    from: &str,
    to: &str,
    also: Option<&str>,
    ingress: &str,
    provider: &str,
) -> Result<IngressSpec, Error> {
    let mut spec = spec.clone();
    let mut found = false;
    let with_service = |path: &HTTPIngressPath, service: &str| {
        let mut p = path.clone();
        if let Some(s) = p.backend.service.as_mut() {
            s.name = service.to_string();
        }
        p
    };
    for rule in spec.rules.iter_mut().flatten() {
        let Some(http) = rule.http.as_mut() else {
            continue;
        };
        let mut copies = Vec::new();
        for path in http.paths.iter_mut() {
            if path
                .backend
                .service
                .as_ref()
                .is_some_and(|s| s.name == from)
            {
                found = true;
                if let Some(also) = also {
                    copies.push(with_service(path, also));
                }
                *path = with_service(path, to);
            }
        }
        http.paths.extend(copies);
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

/// The canary Ingress as JSON for server-side apply, owned by the Canary, with the apex
/// Ingress's labels ([`copied_labels`]).
pub fn canary_ingress(
    canary: &Canary,
    apex: &Ingress,
    annotations: BTreeMap<String, String>,
    spec: IngressSpec,
) -> Result<serde_json::Value, Error> {
    let ing = Ingress {
        metadata: ObjectMeta {
            name: Some(canary_ingress_name(canary)),
            namespace: canary.metadata.namespace.clone(),
            labels: Some(copied_labels(&apex.metadata)),
            annotations: Some(annotations),
            owner_references: owner_reference(canary).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    };
    Ok(serde_json::to_value(ing)?)
}

/// An Ingress router: how one provider writes its canary Ingress and reads it back.
pub struct IngressRouter {
    client: Client,
    provider: &'static str,
    capabilities: Capabilities,
    build: fn(&Canary, &Ingress, Routes) -> Result<serde_json::Value, Error>,
    read: fn(&Ingress, &ServiceNames) -> Routes,
}

impl IngressRouter {
    /// The router of `provider`: `build` makes the canary Ingress from the Canary, the apex
    /// Ingress and the routes; `read` gives the routes of a canary Ingress.
    pub fn new(
        client: Client,
        provider: &'static str,
        capabilities: Capabilities,
        build: fn(&Canary, &Ingress, Routes) -> Result<serde_json::Value, Error>,
        read: fn(&Ingress, &ServiceNames) -> Routes,
    ) -> Self {
        IngressRouter {
            client,
            provider,
            capabilities,
            build,
            read,
        }
    }
}

#[async_trait::async_trait]
impl Router for IngressRouter {
    fn provider(&self) -> &'static str {
        self.provider
    }

    fn routing_kind(&self) -> PeerKind {
        KIND
    }

    fn routing_name(&self, canary: &Canary) -> String {
        canary_ingress_name(canary)
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// Copies the apex Ingress into the canary Ingress for `routes`.
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        let apex = read_apex(&self.client, t, self.provider).await?;
        let obj = (self.build)(t.canary, &apex, routes)?;
        KIND.apply(&self.client, t.namespace(), self.provider, &obj)
            .await
    }

    /// The routes the canary Ingress gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let names = ServiceNames::of(t.canary);
        Ok(read_canary(&self.client, t)
            .await?
            .map(|i| (self.read)(&i, &names)))
    }

    /// Points the apex Service at the target and deletes the canary Ingress (as Flagger's
    /// Skipper router does): the apex Ingress then serves everything through the apex Service,
    /// the target's pods.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        crate::release_apex(&self.client, t).await?;
        delete_canary(&self.client, t).await
    }
}
