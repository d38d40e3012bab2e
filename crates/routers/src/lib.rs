//! Traffic routers behind the [`Router`] seam: one file per provider, chosen by `spec.provider`
//! through [`router_for`] from the [`ROUTERS`] registry.
//!
//! Every router writes its objects with server-side apply under its own field manager
//! ([`MANAGER`]), forcing only the fields it sets, so a GitOps tool that owns other fields of the
//! same objects (labels, annotations) never fights with fledge. The object builders are pure
//! functions with unit tests; the `async` methods only read and apply.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use fledge_api::{Canary, CanaryStatus, HttpMatchRequest, SessionAffinity, StringMatch};
use fledge_core::Routes;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;

use fledge_api::primary_name;

pub mod apisix;
pub mod appmesh;
pub mod contour;
mod error;
pub mod gatewayapi;
pub mod gloo;
pub mod ingress;
pub mod istio;
pub mod knative;
pub mod kubernetes;
pub mod kuma;
pub mod nginx;
pub mod skipper;
pub mod smi;
pub mod traefik;

pub use error::Error;

/// The field manager of everything a router writes.
pub const MANAGER: &str = "fledge-router";

/// The label that marks a cluster-scoped routing object as owned by the Canary of this uid: a
/// namespaced Canary cannot be the owner reference of a cluster-scoped object, so such an
/// object is deleted by [`Router::collect`] when the Canary goes, as long as it carries the
/// label (finalization with revert removes it, leaving the object to serve).
pub const OWNER_UID_LABEL: &str = "fledge.dev/owner-uid";

/// The annotation naming the owning Canary (`<namespace>/<name>`) of a cluster-scoped routing
/// object, for people and for the error when two Canaries want the same object.
pub const OWNER_ANNOTATION: &str = "fledge.dev/owner";

/// Everything a router needs to know about the Canary it routes for.
#[derive(Clone, Debug)]
pub struct RouteTarget<'a> {
    /// The Canary.
    pub canary: &'a Canary,
    /// The selector label and the target's value, e.g. `("app", "podinfo")`.
    pub selector: (&'a str, &'a str),
    /// The status the plan being executed leaves: the session affinity cookies to set and
    /// match, and (for [`Router::ensure`]) the routes in force.
    pub status: &'a CanaryStatus,
}

impl RouteTarget<'_> {
    /// The Canary's namespace.
    pub fn namespace(&self) -> &str {
        self.canary
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("default")
    }
}

/// The names of the three generated Services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNames {
    /// `<svc>`, which clients call.
    pub apex: String,
    /// `<svc>-primary`.
    pub primary: String,
    /// `<svc>-canary`.
    pub canary: String,
}

impl ServiceNames {
    /// The names for a Canary.
    pub fn of(canary: &Canary) -> ServiceNames {
        let apex = canary.spec.apex_service_name().to_string();
        ServiceNames {
            primary: primary_name(&apex),
            canary: format!("{apex}-canary"),
            apex,
        }
    }
}

/// The routes a status records as in force: its canary weight, mirroring and A/B matching.
pub fn routes_in_status(canary: &Canary, status: &CanaryStatus) -> Routes {
    let rollout = status.rollout.as_ref();
    let mirror_weight = canary
        .spec
        .analysis_or_default()
        .mirror_weight()
        .clamp(0, 100);
    Routes {
        mirror: rollout.is_some_and(|r| r.mirrored).then_some(mirror_weight),
        ab_match: rollout.is_some_and(|r| r.ab_match),
        ..Routes::weighted(status.canary_weight)
    }
}

/// What a router can do besides sending all traffic to the primary or all to the canary.
/// `fledge validate` refuses specs that ask for more (its lists of providers per capability must
/// agree; a test compares them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Weights between 0 and 100 (a canary strategy with steps).
    pub partial_weights: bool,
    /// Copying requests to the canary while the primary answers them.
    pub mirroring: bool,
    /// Routing requests by header, cookie or query parameter (A/B testing).
    pub http_match: bool,
    /// Keeping a session on the canary with a cookie.
    pub session_affinity: bool,
}

/// A traffic provider: what moves traffic between the primary and the canary. Every method is
/// idempotent, and none decides anything: the engine says which routes to set, and when.
#[async_trait::async_trait]
pub trait Router: Send + Sync {
    /// The provider name (`spec.provider`).
    fn provider(&self) -> &'static str;

    /// The kind of the object that carries the routes, named after the apex Service: what
    /// [`Router::get_routes`] reads back.
    fn routing_kind(&self) -> PeerKind;

    /// The name of the object of [`Router::routing_kind`] that carries the routes: the apex
    /// Service's name, or (for the Ingress routers) `<ingressRef>-canary`.
    fn routing_name(&self, canary: &Canary) -> String {
        canary.spec.apex_service_name().to_string()
    }

    /// What it can do; routes asking for more are refused with an [`Error::Router`].
    fn capabilities(&self) -> Capabilities;

    /// Creates or updates the router's objects from the spec, keeping the routes the status
    /// records (a `SetWeights` follows whenever they must change).
    async fn ensure(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        self.set_routes(t, routes_in_status(t.canary, t.status))
            .await
    }

    /// Routes traffic as `routes` says: weights, mirroring, A/B matching, session affinity.
    /// Routes the provider cannot do are refused with an [`Error::Router`] that says so.
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error>;

    /// Reads the routes back from the cluster (for drift); `None` when the routing object (the
    /// apex Service for `kubernetes`) does not exist. Besides the routing object it may read the
    /// Canary's spec, the selector and, of the status, only the session cookie: the controller
    /// keeps an answer while those and the object are unchanged.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error>;

    /// When the Canary goes (its finalizer removed, with or without `revertOnDeletion`): delete
    /// what it owns that garbage collection cannot reach, the cluster-scoped routing objects
    /// still marked with [`OWNER_UID_LABEL`]. Nothing for routers whose objects carry owner
    /// references.
    async fn collect(&self, _t: &RouteTarget<'_>) -> Result<(), Error> {
        Ok(())
    }

    /// On deletion with `revertOnDeletion`: send all traffic to the target's pods through the
    /// apex Service, and leave the apex Service (and the route that reaches it) in place,
    /// no longer owned by the Canary, so they keep serving once it is gone.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error>;
}

/// Builds the router of one provider name.
pub type Constructor = fn(Client, &'static str) -> Box<dyn Router>;

/// Every router of this build, by `spec.provider`. Adding a provider is one file and one line
/// here.
pub const ROUTERS: &[(&str, Constructor)] = &[
    ("kubernetes", |c, _| {
        Box::new(kubernetes::KubernetesRouter::new(c))
    }),
    ("apisix", |c, _| Box::new(apisix::ApisixRouter::new(c))),
    ("appmesh", |c, _| {
        Box::new(appmesh::AppMeshRouter::new(
            c,
            appmesh::AppMeshVersion::V1beta1,
        ))
    }),
    ("appmesh:v1beta2", |c, _| {
        Box::new(appmesh::AppMeshRouter::new(
            c,
            appmesh::AppMeshVersion::V1beta2,
        ))
    }),
    ("contour", |c, _| Box::new(contour::ContourRouter::new(c))),
    ("gatewayapi:v1", |c, _| {
        Box::new(gatewayapi::GatewayApiRouter::new(
            c,
            gatewayapi::GatewayVersion::V1,
        ))
    }),
    ("gatewayapi:v1beta1", |c, _| {
        Box::new(gatewayapi::GatewayApiRouter::new(
            c,
            gatewayapi::GatewayVersion::V1beta1,
        ))
    }),
    ("gloo", |c, _| Box::new(gloo::GlooRouter::new(c))),
    ("istio", |c, _| Box::new(istio::IstioRouter::new(c))),
    ("knative", |c, _| Box::new(knative::KnativeRouter::new(c))),
    ("kuma", |c, _| Box::new(kuma::KumaRouter::new(c))),
    ("linkerd", |c, p| {
        Box::new(smi::SmiRouter::new(c, smi::SmiVersion::V1alpha2, p))
    }),
    ("nginx", |c, _| Box::new(nginx::router(c))),
    ("osm", |c, p| {
        Box::new(smi::SmiRouter::new(c, smi::SmiVersion::V1alpha2, p))
    }),
    ("skipper", |c, _| Box::new(skipper::router(c))),
    ("smi:v1alpha1", |c, p| {
        Box::new(smi::SmiRouter::new(c, smi::SmiVersion::V1alpha1, p))
    }),
    ("smi:v1alpha2", |c, p| {
        Box::new(smi::SmiRouter::new(c, smi::SmiVersion::V1alpha2, p))
    }),
    ("smi:v1alpha3", |c, p| {
        Box::new(smi::SmiRouter::new(c, smi::SmiVersion::V1alpha3, p))
    }),
    ("traefik", |c, _| Box::new(traefik::TraefikRouter::new(c))),
];

/// The providers that have a router, as `spec.provider` names them.
pub fn providers() -> Vec<&'static str> {
    ROUTERS.iter().map(|(name, _)| *name).collect()
}

/// The router for a Canary's `spec.provider`, or an error naming the providers that have one.
pub fn router_for(client: Client, canary: &Canary) -> Result<Box<dyn Router>, Error> {
    let provider = canary.spec.provider_or_default();
    match ROUTERS.iter().find(|(name, _)| *name == provider) {
        Some((name, build)) => Ok(build(client, name)),
        None => Err(Error::InvalidSpec(format!(
            "spec.provider: provider {provider:?} has no router in this build; the routers \
             available are: {}",
            providers().join(", ")
        ))),
    }
}

// ---- shared by the routers ------------------------------------------------------------------

/// The controller owner reference to the Canary, when it has a uid (always, from the API).
pub(crate) fn owner_reference(canary: &Canary) -> Option<OwnerReference> {
    canary.controller_owner_ref(&())
}

/// A kind of a peer API (Gateway API, Istio, SMI) that a router writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerKind {
    /// API group.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Resource (plural).
    pub plural: &'static str,
    /// Whether its objects live in a namespace (false for cluster-scoped kinds such as Kuma's
    /// TrafficRoute, which cannot carry an owner reference to a Canary; see
    /// [`OWNER_UID_LABEL`]).
    pub namespaced: bool,
}

impl PeerKind {
    /// `group/version` (`version` alone for the core group).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: self.version.into(),
            api_version: self.api_version(),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }

    /// The API of its objects in `ns` (`ns` is ignored for a cluster-scoped kind).
    pub fn api(&self, client: &Client, ns: &str) -> Api<DynamicObject> {
        if self.namespaced {
            Api::namespaced_with(client.clone(), ns, &self.resource())
        } else {
            Api::all_with(client.clone(), &self.resource())
        }
    }

    /// The error for an API that is not served: its CRD is missing (or that version is off).
    fn not_installed(&self, provider: &str) -> Error {
        Error::NotServed {
            provider: provider.into(),
            message: format!(
                "{} {} is not served by this cluster: install its CRD (cargo xtask cluster up \
                 installs the upstream CRDs locally)",
                self.kind,
                self.api_version()
            ),
        }
    }

    /// Server-side applies `object` (which carries apiVersion, kind and metadata.name).
    pub(crate) async fn apply(
        &self,
        client: &Client,
        ns: &str,
        provider: &str,
        object: &serde_json::Value,
    ) -> Result<(), Error> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let params = PatchParams::apply(MANAGER).force();
        match self
            .api(client, ns)
            .patch(name, &params, &Patch::Apply(object))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(self.not_installed(provider)),
            Err(e) => Err(e.into()),
        }
    }

    /// The object's JSON, or `None` when it does not exist.
    pub async fn get(
        &self,
        client: &Client,
        ns: &str,
        provider: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, Error> {
        match self.api(client, ns).get_opt(name).await {
            // The whole object: `metadata` too (a DynamicObject's `data` holds the rest only).
            Ok(obj) => Ok(obj.map(serde_json::to_value).transpose()?),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(self.not_installed(provider)),
            Err(e) => Err(e.into()),
        }
    }

    /// The `spec` of the routing object of `t` (named after the apex Service), or `None` when it
    /// does not exist: the read-back every peer router's `get_routes` starts with.
    pub(crate) async fn read_spec<T: serde::de::DeserializeOwned>(
        &self,
        client: &Client,
        t: &RouteTarget<'_>,
        provider: &str,
    ) -> Result<Option<T>, Error> {
        let name = t.canary.spec.apex_service_name();
        match self.get(client, t.namespace(), provider, name).await? {
            Some(obj) => Ok(Some(serde_json::from_value(obj["spec"].clone())?)),
            None => Ok(None),
        }
    }

    /// Deletes the object; absent is fine.
    pub(crate) async fn delete(&self, client: &Client, ns: &str, name: &str) -> Result<(), Error> {
        match self
            .api(client, ns)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The skeleton of an object a router applies: apiVersion, kind, name, namespace, labels and
/// the owner reference to the Canary (dropped when `owned` is false, on finalization).
pub(crate) fn object_meta(
    kind: &PeerKind,
    canary: &Canary,
    name: &str,
    owned: bool,
) -> serde_json::Value {
    let mut meta = json!({
        "name": name,
        "namespace": canary.metadata.namespace,
        "labels": {"app.kubernetes.io/managed-by": "fledge"},
    });
    if owned && let Some(owner) = owner_reference(canary) {
        meta["ownerReferences"] = json!([owner]);
    }
    json!({"apiVersion": kind.api_version(), "kind": kind.kind, "metadata": meta})
}

/// Flux's switches that Flagger turns off on the objects it writes, so that Flux does not revert
/// what the controller writes.
pub(crate) const FLUX_OFF: [(&str, &str); 2] = [
    ("kustomize.toolkit.fluxcd.io/reconcile", "disabled"),
    ("helm.toolkit.fluxcd.io/driftDetection", "disabled"),
];

/// The labels and annotations of a routing object fledge makes from `spec.service.apex` (as
/// Flagger's `filterMetadata`): the apex's own, the managed-by label and Flux's switches.
pub(crate) fn apex_metadata(
    canary: &Canary,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let apex = canary.spec.service.apex.as_ref();
    let mut labels = apex.and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert("app.kubernetes.io/managed-by".into(), "fledge".into());
    let mut annotations = apex.and_then(|m| m.annotations.clone()).unwrap_or_default();
    for (key, value) in FLUX_OFF {
        annotations.insert(key.into(), value.into());
    }
    (labels, annotations)
}

/// Points the apex Service at the target's own pods and drops its owner reference, so that it
/// serves the target, and survives, once the Canary is gone.
pub(crate) async fn release_apex(client: &Client, t: &RouteTarget<'_>) -> Result<(), Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), t.namespace());
    let patch = json!({
        "metadata": {"ownerReferences": null},
        "spec": {"selector": {t.selector.0: t.selector.1}},
    });
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch(
            t.canary.spec.apex_service_name(),
            &params,
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Nothing to release: the Services were never created.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The error for routes a provider cannot do.
pub(crate) fn cannot(provider: &str, message: impl Into<String>) -> Error {
    Error::Router {
        provider: provider.into(),
        message: message.into(),
    }
}

/// `spec.analysis.match` of `canary` (none when unset): the requests an A/B test routes to
/// the canary.
pub(crate) fn analysis_match(canary: &Canary) -> Vec<HttpMatchRequest> {
    canary
        .spec
        .analysis_or_default()
        .r#match
        .clone()
        .unwrap_or_default()
}

/// What validation finds wrong in a spec a router was asked to route, as one error of
/// `provider` (validation refuses such specs first; this covers a controller that runs one
/// anyway).
pub(crate) fn refused(provider: &str, problems: &[fledge_api::validate::Problem]) -> Error {
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    cannot(provider, text.join("; "))
}

/// Refuses routes beyond weights (mirroring, A/B matching) for a provider that, as in Flagger,
/// only splits traffic by weight.
pub(crate) fn weights_only(provider: &str, routes: &Routes) -> Result<(), Error> {
    if routes.mirror.is_some_and(|m| m > 0) {
        return Err(cannot(
            provider,
            format!(
                "provider {provider} does not mirror traffic (spec.analysis.mirror), as in \
                 Flagger; remove analysis.mirror, or use istio or gatewayapi:v1"
            ),
        ));
    }
    if routes.ab_match {
        return Err(cannot(
            provider,
            format!(
                "provider {provider} splits traffic by weight only and cannot route by \
                 spec.analysis.match (nor does Flagger); remove analysis.match, or use istio or \
                 gatewayapi:v1"
            ),
        ));
    }
    Ok(())
}

/// A duration as the user wrote it (`30s`, `1m30s`, `1.5s`), parsed.
pub(crate) fn parse_duration(
    provider: &str,
    field: &str,
    value: &str,
) -> Result<std::time::Duration, Error> {
    fledge_api::parse_duration(value).map_err(|e| cannot(provider, format!("{field}: {e}")))
}

/// A regular expression matching `text` literally.
pub(crate) fn literal(text: &str) -> String {
    regex_syntax::escape(text)
}

/// A `StringMatch` as one regular expression (for APIs without prefix or suffix matches).
pub(crate) fn string_match_regex(m: &StringMatch) -> String {
    if let Some(r) = &m.regex {
        r.clone()
    } else if let Some(e) = &m.exact {
        format!("^{}$", literal(e))
    } else if let Some(p) = &m.prefix {
        format!("^{}.*", literal(p))
    } else if let Some(s) = &m.suffix {
        format!(".*{}$", literal(s))
    } else {
        ".*".into()
    }
}

/// The A/B conditions merged with the route's own (`spec.service.match`): every pair of an A/B
/// condition and a route condition, the A/B condition's fields winning; the A/B conditions
/// alone when the route has none.
pub(crate) fn merge_matches(
    ab: &[HttpMatchRequest],
    service: &[HttpMatchRequest],
) -> Vec<HttpMatchRequest> {
    if service.is_empty() {
        return ab.to_vec();
    }
    let mut out = Vec::new();
    for a in ab {
        for s in service {
            out.push(merge_match(a, s));
        }
    }
    out
}

fn merge_match(a: &HttpMatchRequest, s: &HttpMatchRequest) -> HttpMatchRequest {
    fn maps<V: Clone>(
        a: &Option<BTreeMap<String, V>>,
        s: &Option<BTreeMap<String, V>>,
    ) -> Option<BTreeMap<String, V>> {
        match (a, s) {
            (None, None) => None,
            _ => {
                let mut m = s.clone().unwrap_or_default();
                m.extend(a.clone().unwrap_or_default());
                Some(m)
            }
        }
    }
    HttpMatchRequest {
        name: a.name.clone().or_else(|| s.name.clone()),
        uri: a.uri.clone().or_else(|| s.uri.clone()),
        scheme: a.scheme.clone().or_else(|| s.scheme.clone()),
        method: a.method.clone().or_else(|| s.method.clone()),
        authority: a.authority.clone().or_else(|| s.authority.clone()),
        headers: maps(&a.headers, &s.headers),
        port: a.port.or(s.port),
        source_labels: maps(&a.source_labels, &s.source_labels),
        gateways: a.gateways.clone().or_else(|| s.gateways.clone()),
        query_params: maps(&a.query_params, &s.query_params),
        ignore_uri_case: a.ignore_uri_case.or(s.ignore_uri_case),
        without_headers: maps(&a.without_headers, &s.without_headers),
        source_namespace: a
            .source_namespace
            .clone()
            .or_else(|| s.source_namespace.clone()),
    }
}

/// A session affinity cookie, `name=value` as the engine keeps it in the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cookie {
    pub name: String,
    pub value: String,
}

impl Cookie {
    pub(crate) fn parse(s: Option<&str>) -> Option<Cookie> {
        let (name, value) = s?.split_once('=')?;
        (!name.is_empty()).then(|| Cookie {
            name: name.into(),
            value: value.into(),
        })
    }

    /// A regular expression matching a `Cookie` request header that carries this cookie. It is
    /// anchored, so implementations that match the whole value and those that search in it
    /// agree.
    pub(crate) fn header_regex(&self) -> String {
        format!(
            "^(.*; ?)?{}={}(;.*)?$",
            literal(&self.name),
            literal(&self.value)
        )
    }
}

/// What session affinity asks of a router at this point of the rollout (Flagger's semantics):
/// while the canary gets traffic, canary responses set the canary cookie and requests carrying
/// it go to the canary (and, with `primaryCookieName`, primary responses set the primary cookie
/// and requests carrying it stay on the primary); once the canary gets none, primary responses
/// expire the previous canary cookie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Affinity {
    /// Set on canary responses; requests carrying it go to the canary.
    pub canary: Option<Cookie>,
    /// Set on primary responses; requests carrying it go to the primary.
    pub primary: Option<Cookie>,
    /// Expired on primary responses.
    pub expire: Option<Cookie>,
    attributes: String,
}

impl Affinity {
    pub(crate) fn of(canary: &Canary, status: &CanaryStatus, routes: &Routes) -> Affinity {
        let analysis = canary.spec.analysis_or_default();
        let Some(sa) = analysis.session_affinity.as_ref() else {
            return Affinity::default();
        };
        let attributes = cookie_attributes(sa);
        if routes.canary > 0 {
            Affinity {
                canary: Cookie::parse(status.session_affinity_cookie.as_deref()),
                primary: Cookie::parse(status.primary_session_affinity_cookie.as_deref()),
                expire: None,
                attributes,
            }
        } else {
            Affinity {
                expire: Cookie::parse(status.previous_session_affinity_cookie.as_deref()),
                attributes,
                ..Affinity::default()
            }
        }
    }

    /// The `Set-Cookie` value for `cookie`.
    pub(crate) fn set_cookie(&self, cookie: &Cookie) -> String {
        format!("{}={}{}", cookie.name, cookie.value, self.attributes)
    }

    /// The `Set-Cookie` value on primary responses, if any: the primary cookie, else the
    /// expiry of the previous canary cookie.
    pub(crate) fn primary_set_cookie(&self) -> Option<String> {
        if let Some(c) = &self.primary {
            return Some(self.set_cookie(c));
        }
        self.expire
            .as_ref()
            .map(|c| format!("{}={}; Max-Age=0", c.name, c.value))
    }
}

/// `; Max-Age=…` and the other attributes of `sessionAffinity`.
fn cookie_attributes(sa: &SessionAffinity) -> String {
    let mut s = format!(
        "; Max-Age={}",
        sa.max_age
            .filter(|a| *a > 0)
            .unwrap_or(fledge_api::defaults::SESSION_AFFINITY_MAX_AGE)
    );
    if let Some(p) = sa.path.as_deref().filter(|p| !p.is_empty()) {
        s.push_str(&format!("; Path={p}"));
    }
    if let Some(d) = sa.domain.as_deref().filter(|d| !d.is_empty()) {
        s.push_str(&format!("; Domain={d}"));
    }
    if sa.http_only == Some(true) {
        s.push_str("; HttpOnly");
    }
    if sa.secure == Some(true) {
        s.push_str("; Secure");
    }
    if let Some(v) = sa.same_site.as_deref().filter(|v| !v.is_empty()) {
        s.push_str(&format!("; SameSite={v}"));
    }
    if sa.partitioned == Some(true) {
        s.push_str("; Partitioned");
    }
    s
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A Canary and statuses for the builders' tests.

    use fledge_api::{Canary, CanaryStatus};

    /// A Canary `podinfo/test` with a uid, the given provider and extra spec fields merged in.
    pub fn canary(provider: &str, spec: serde_json::Value) -> Canary {
        let mut base = serde_json::json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "uid-1"},
            "spec": {
                "provider": provider,
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "1m", "stepWeight": 20, "maxWeight": 60}
            }
        });
        merge(&mut base["spec"], spec);
        serde_json::from_value(base).expect("a Canary")
    }

    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    /// A status with session affinity cookies.
    pub fn with_cookies(
        canary: Option<&str>,
        primary: Option<&str>,
        previous: Option<&str>,
    ) -> CanaryStatus {
        CanaryStatus {
            session_affinity_cookie: canary.map(Into::into),
            primary_session_affinity_cookie: primary.map(Into::into),
            previous_session_affinity_cookie: previous.map(Into::into),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn service_names_follow_the_apex() {
        let mut c = canary("istio", json!({}));
        assert_eq!(
            ServiceNames::of(&c),
            ServiceNames {
                apex: "podinfo".into(),
                primary: "podinfo-primary".into(),
                canary: "podinfo-canary".into()
            }
        );
        c.spec.service.name = Some("web".into());
        assert_eq!(ServiceNames::of(&c).canary, "web-canary");
    }

    #[test]
    fn the_factory_knows_every_supported_provider() {
        assert_eq!(providers(), fledge_api::validate::SUPPORTED_PROVIDERS);
    }

    #[tokio::test]
    async fn each_router_can_do_what_validation_lets_a_spec_ask_of_it() {
        use fledge_api::validate::{
            HTTP_MATCH_PROVIDERS, MIRROR_PROVIDERS, SESSION_AFFINITY_PROVIDERS,
        };
        // Never contacted: building a router does no I/O.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        for (name, build) in ROUTERS {
            let caps = build(client.clone(), name).capabilities();
            assert_eq!(caps.mirroring, MIRROR_PROVIDERS.contains(name), "{name}");
            assert_eq!(
                caps.http_match,
                HTTP_MATCH_PROVIDERS.contains(name),
                "{name}"
            );
            assert_eq!(
                caps.session_affinity,
                SESSION_AFFINITY_PROVIDERS.contains(name),
                "{name}"
            );
            assert_eq!(caps.partial_weights, *name != "kubernetes", "{name}");
        }
    }

    #[test]
    fn routes_in_status_read_weight_mirror_and_match() {
        let c = canary("istio", json!({"analysis": {"mirrorWeight": 40}}));
        let mut st = CanaryStatus {
            canary_weight: 30,
            ..Default::default()
        };
        assert_eq!(routes_in_status(&c, &st), Routes::weighted(30));
        st.rollout = Some(fledge_api::RolloutProgress {
            mirrored: true,
            ab_match: true,
            ..Default::default()
        });
        let r = routes_in_status(&c, &st);
        assert_eq!((r.mirror, r.ab_match, r.canary), (Some(40), true, 30));
    }

    #[test]
    fn cookies_parse_and_match_anchored() {
        let c = Cookie::parse(Some("fledge-cookie=0a1b")).unwrap();
        assert_eq!(c.header_regex(), r"^(.*; ?)?fledge\-cookie=0a1b(;.*)?$");
        let re = regex_syntax::Parser::new().parse(&c.header_regex());
        assert!(re.is_ok());
        assert_eq!(Cookie::parse(Some("novalue")), None);
        assert_eq!(Cookie::parse(Some("=x")), None);
        assert_eq!(Cookie::parse(None), None);
    }

    #[test]
    fn affinity_sets_cookies_while_the_canary_serves_and_expires_after() {
        let c = canary(
            "istio",
            json!({"analysis": {"sessionAffinity": {"cookieName": "c", "primaryCookieName": "p",
                "maxAge": 60, "path": "/", "httpOnly": true, "secure": true, "sameSite": "Lax"}}}),
        );
        let st = with_cookies(Some("c=1"), Some("p=2"), Some("c=0"));
        let a = Affinity::of(&c, &st, &Routes::weighted(20));
        let canary_cookie = a.canary.clone().unwrap();
        assert_eq!(
            a.set_cookie(&canary_cookie),
            "c=1; Max-Age=60; Path=/; HttpOnly; Secure; SameSite=Lax"
        );
        assert_eq!(
            a.primary_set_cookie().as_deref(),
            Some("p=2; Max-Age=60; Path=/; HttpOnly; Secure; SameSite=Lax")
        );
        let after = Affinity::of(&c, &st, &Routes::PRIMARY);
        assert_eq!(after.canary, None);
        assert_eq!(
            after.primary_set_cookie().as_deref(),
            Some("c=0; Max-Age=0")
        );
        let none = Affinity::of(&canary("istio", json!({})), &st, &Routes::weighted(20));
        assert_eq!(none, Affinity::default());
    }

    #[test]
    fn matches_merge_as_a_cross_product() {
        let ab: Vec<HttpMatchRequest> = serde_json::from_value(json!([
            {"headers": {"x-canary": {"exact": "yes"}}},
            {"queryParams": {"canary": {"exact": "1"}}}
        ]))
        .unwrap();
        let svc: Vec<HttpMatchRequest> = serde_json::from_value(json!([
            {"uri": {"prefix": "/api"}, "headers": {"x-canary": {"exact": "no"}, "x-env": {"exact": "prod"}}}
        ]))
        .unwrap();
        assert_eq!(merge_matches(&ab, &[]), ab);
        let merged = serde_json::to_value(merge_matches(&ab, &svc)).unwrap();
        assert_eq!(
            merged,
            json!([
                {"uri": {"prefix": "/api"}, "headers": {"x-canary": {"exact": "yes"}, "x-env": {"exact": "prod"}}},
                {"uri": {"prefix": "/api"}, "headers": {"x-canary": {"exact": "no"}, "x-env": {"exact": "prod"}},
                 "queryParams": {"canary": {"exact": "1"}}}
            ])
        );
    }

    #[test]
    fn string_matches_as_regular_expressions() {
        let m = |v: serde_json::Value| -> StringMatch { serde_json::from_value(v).unwrap() };
        assert_eq!(string_match_regex(&m(json!({"exact": "a.b"}))), r"^a\.b$");
        assert_eq!(string_match_regex(&m(json!({"prefix": "v1"}))), "^v1.*");
        assert_eq!(string_match_regex(&m(json!({"suffix": ".js"}))), r".*\.js$");
        assert_eq!(string_match_regex(&m(json!({"regex": "x+"}))), "x+");
        assert_eq!(string_match_regex(&m(json!({}))), ".*");
    }

    #[test]
    fn object_meta_owns_unless_released() {
        let c = canary("istio", json!({}));
        let kind = PeerKind {
            group: "split.smi-spec.io",
            version: "v1alpha2",
            kind: "TrafficSplit",
            plural: "trafficsplits",
            namespaced: true,
        };
        let owned = object_meta(&kind, &c, "podinfo", true);
        assert_eq!(owned["apiVersion"], "split.smi-spec.io/v1alpha2");
        assert_eq!(owned["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(owned["metadata"]["ownerReferences"][0]["controller"], true);
        let released = object_meta(&kind, &c, "podinfo", false);
        assert!(released["metadata"].get("ownerReferences").is_none());
        assert_eq!(released["metadata"]["namespace"], "test");
    }
}
