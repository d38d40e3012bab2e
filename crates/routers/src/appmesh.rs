//! The App Mesh providers, as Flagger v1.36.1 writes their objects (all in the Canary's
//! namespace, owned by the Canary):
//!
//! `appmesh:v1beta2` (`appmesh.k8s.aws/v1beta2`, the App Mesh controller's current API):
//!
//! - VirtualNodes `<svc>-primary` and `<svc>-canary`: the pods of the primary
//!   (`<label>: <value>-primary`) and of the target (`<label>: <value>`), one listener on the
//!   container port (`spec.service.targetPort` when it is a number, else `spec.service.port`)
//!   with protocol `grpc` when `spec.service.portName` contains `grpc` (`http` otherwise) and the
//!   per-request timeout of `spec.service.timeout`, DNS service discovery on
//!   `<svc>-primary.<ns>.svc.cluster.local.` / `<svc>-canary.<ns>.svc.cluster.local.`, a
//!   backend per `spec.service.backends` entry (an ARN when it starts with `arn:aws`, a
//!   VirtualService name otherwise), the access log on stdout when the Canary is annotated
//!   `appmesh.flagger.app/accesslog: enabled`, and the labels and annotations of
//!   `spec.service.apex` (with Flux's `disabled` switches).
//! - VirtualRouter `<svc>`: a listener like the nodes', and the route `<svc>` on the prefix of
//!   `spec.service.match[0].uri.prefix` (`/` without one), with the timeout and retry policy of
//!   `spec.service`, to the canary and primary nodes by weight. With `analysis.match` the
//!   header route `<svc>-a` (priority 10) comes first and the route `<svc>-b` (priority 20)
//!   after it.
//! - VirtualRouter `<svc>-canary`: the same route, named `<svc>-canary`, all to the canary node
//!   (how other services reach the canary alone).
//! - VirtualServices `<svc>` and `<svc>-canary`, each provided by the VirtualRouter of its name;
//!   the first carries the App Mesh gateway annotations (`gateway.appmesh.k8s.aws/*`) when
//!   `spec.service.hosts` is set.
//!
//! `appmesh` (`appmesh.k8s.aws/v1beta1`, the legacy controller's API): VirtualNodes `<svc>`,
//! `<svc>-primary` and `<svc>-canary` in the mesh `spec.service.meshName` (required), on
//! `spec.service.port`, DNS `<svc>-primary.<ns>` (both `<svc>` and `<svc>-primary`) and
//! `<svc>-canary.<ns>`; VirtualServices `<svc>.<ns>` and `<svc>-canary.<ns>`, each carrying its
//! virtual router (`<svc>` / `<svc>-canary`) and the routes as above (v1beta1 routes have no
//! timeout).
//!
//! The routes are Flagger's at initialization, at every weight, during A/B testing, at promotion
//! and at rollback. Two differences, both for what Flagger cannot do: each `analysis.match`
//! entry is a route of its own (`<svc>-a`, `<svc>-a2`, …; Flagger puts the headers of every
//! entry in one route, which makes alternatives a conjunction), and with weights above 0 the
//! `<svc>-b` route follows them too (Flagger leaves it on the primary, so a weighted canary with
//! `analysis.match` only ever reached matching requests).
//!
//! Mirroring, session affinity, A/B conditions other than headers (one way each: exact, prefix,
//! suffix or regex), route conditions other than one URI prefix, retry events App Mesh does not
//! know, a named `targetPort` (v1beta2 listens on a number), a route timeout on v1beta1 (which
//! only has the gateway's) and the Istio route features (`spec.service.headers`, `rewrite`,
//! `corsPolicy`, `mirror`, `trafficPolicy`) have no App Mesh form here and are refused, naming
//! the field.
//!
//! On deletion with revert ([`Router::finalize`]) the service stays in the mesh, served by the
//! target's pods: see [`AppMeshRouter`]'s `finalize`.

use std::collections::BTreeMap;

use fledge_api::{Canary, HttpMatchRequest};
use fledge_core::Routes;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    Capabilities, Error, PeerKind, RouteTarget, Router, ServiceNames, cannot, object_meta,
    parse_duration, release_apex, routes_in_status,
};

/// The provider name of the legacy (v1beta1) App Mesh API.
pub const PROVIDER: &str = "appmesh";

/// The provider name of the App Mesh v1beta2 API.
pub const PROVIDER_V1BETA2: &str = "appmesh:v1beta2";

/// The API group of both versions.
pub const GROUP: &str = "appmesh.k8s.aws";

/// `VirtualNode` of `appmesh:v1beta2`.
pub const VIRTUAL_NODE: PeerKind = PeerKind {
    group: GROUP,
    version: "v1beta2",
    kind: "VirtualNode",
    plural: "virtualnodes",
    namespaced: true,
};

/// `VirtualRouter` of `appmesh:v1beta2`: the routing object.
pub const VIRTUAL_ROUTER: PeerKind = PeerKind {
    group: GROUP,
    version: "v1beta2",
    kind: "VirtualRouter",
    plural: "virtualrouters",
    namespaced: true,
};

/// `VirtualService` of `appmesh:v1beta2`.
pub const VIRTUAL_SERVICE: PeerKind = PeerKind {
    group: GROUP,
    version: "v1beta2",
    kind: "VirtualService",
    plural: "virtualservices",
    namespaced: true,
};

/// `VirtualNode` of `appmesh` (v1beta1).
pub const LEGACY_VIRTUAL_NODE: PeerKind = PeerKind {
    group: GROUP,
    version: "v1beta1",
    kind: "VirtualNode",
    plural: "virtualnodes",
    namespaced: true,
};

/// `VirtualService` of `appmesh` (v1beta1): the routing object (it carries the routes).
pub const LEGACY_VIRTUAL_SERVICE: PeerKind = PeerKind {
    group: GROUP,
    version: "v1beta1",
    kind: "VirtualService",
    plural: "virtualservices",
    namespaced: true,
};

/// The Canary annotation that turns the virtual nodes' access log on (Flagger's).
pub const ACCESS_LOG_ANNOTATION: &str = "appmesh.flagger.app/accesslog";

/// The App Mesh gateway annotations Flagger sets on the apex VirtualService.
pub const GATEWAY_EXPOSE: &str = "gateway.appmesh.k8s.aws/expose";
/// The gateway's domains: every `spec.service.hosts` entry followed by a comma.
pub const GATEWAY_DOMAIN: &str = "gateway.appmesh.k8s.aws/domain";
/// The gateway's timeout: `spec.service.timeout` as written.
pub const GATEWAY_TIMEOUT: &str = "gateway.appmesh.k8s.aws/timeout";
/// The gateway's retries: `spec.service.retries.attempts`.
pub const GATEWAY_RETRIES: &str = "gateway.appmesh.k8s.aws/retries";

/// The HTTP retry events App Mesh knows (the v1beta2 CRD's enum, and the AWS API's).
pub const HTTP_RETRY_EVENTS: &[&str] = &[
    "server-error",
    "gateway-error",
    "client-error",
    "stream-error",
];

/// Flagger's per-retry timeout when `spec.service.retries.perTryTimeout` is empty, in ms.
const DEFAULT_PER_RETRY_MS: i64 = 250;

/// The priority of the first A/B header route; the next entries take the next ones.
const AB_PRIORITY: i64 = 10;

/// The priority of the route after the A/B header routes (`<svc>-b`).
const DEFAULT_PRIORITY: i64 = 20;

/// At most this many `analysis.match` entries: their priorities stay below [`DEFAULT_PRIORITY`].
const MAX_AB_ROUTES: usize = (DEFAULT_PRIORITY - AB_PRIORITY) as usize;

/// At most this many headers in a route's match (the App Mesh limit).
const MAX_HEADERS: usize = 10;

/// The longest header name App Mesh matches on.
const MAX_HEADER_NAME: usize = 50;

/// The longest header value App Mesh matches on.
const MAX_HEADER_VALUE: usize = 255;

/// Which App Mesh API a router writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppMeshVersion {
    /// `appmesh.k8s.aws/v1beta1` (`spec.provider: appmesh`).
    V1beta1,
    /// `appmesh.k8s.aws/v1beta2` (`spec.provider: appmesh:v1beta2`).
    V1beta2,
}

impl AppMeshVersion {
    /// The provider name of this version.
    pub fn provider(self) -> &'static str {
        match self {
            AppMeshVersion::V1beta1 => PROVIDER,
            AppMeshVersion::V1beta2 => PROVIDER_V1BETA2,
        }
    }

    /// The kind of the object that carries the routes.
    pub fn routing_kind(self) -> PeerKind {
        match self {
            AppMeshVersion::V1beta1 => LEGACY_VIRTUAL_SERVICE,
            AppMeshVersion::V1beta2 => VIRTUAL_ROUTER,
        }
    }

    /// The name of the object that carries the routes: the VirtualRouter `<svc>` (v1beta2), the
    /// VirtualService `<svc>.<ns>` (v1beta1).
    pub fn routing_name(self, canary: &Canary) -> String {
        let apex = canary.spec.apex_service_name();
        match self {
            AppMeshVersion::V1beta1 => format!("{apex}.{}", namespace(canary)),
            AppMeshVersion::V1beta2 => apex.to_string(),
        }
    }
}

// ---- the shapes fledge writes and reads -----------------------------------------------------

/// A header a route matches on (the same JSON in both versions).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteHeader {
    /// Header name.
    pub name: String,
    /// How its value matches.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub header_match: Option<HeaderMatch>,
}

/// How a header value matches: one of the four is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderMatch {
    /// The exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// A prefix of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A regular expression the value matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// A suffix of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// The v1beta2 `VirtualRouter.spec`, as much of it as fledge writes and reads.
pub mod v1beta2 {
    use serde::{Deserialize, Serialize};

    use super::RouteHeader;

    /// `VirtualRouter.spec`.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    pub struct VirtualRouterSpec {
        /// The listeners (one).
        #[serde(default)]
        pub listeners: Vec<RouterListener>,
        /// The routes.
        #[serde(default)]
        pub routes: Vec<Route>,
    }

    /// A listener of the router.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct RouterListener {
        /// Port and protocol.
        pub port_mapping: PortMapping,
    }

    /// A port and its protocol.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    pub struct PortMapping {
        /// Port number.
        pub port: i64,
        /// `http` or `grpc` here.
        pub protocol: String,
    }

    /// A route.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct Route {
        /// Route name.
        pub name: String,
        /// The HTTP route (the only kind fledge writes, as Flagger).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub http_route: Option<HttpRoute>,
        /// Priority, lowest first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub priority: Option<i64>,
    }

    /// An HTTP route.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpRoute {
        /// What requests it takes.
        #[serde(rename = "match")]
        pub route_match: HttpRouteMatch,
        /// Where they go.
        pub action: HttpRouteAction,
        /// Retries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_policy: Option<HttpRetryPolicy>,
        /// Timeouts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub timeout: Option<HttpTimeout>,
    }

    /// The match of an HTTP route.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    pub struct HttpRouteMatch {
        /// Path prefix.
        #[serde(default)]
        pub prefix: String,
        /// Headers, all of which a request carries.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub headers: Vec<RouteHeader>,
    }

    /// The targets of an HTTP route.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpRouteAction {
        /// Virtual nodes and their relative weights.
        #[serde(default)]
        pub weighted_targets: Vec<WeightedTarget>,
    }

    /// A virtual node and its weight.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct WeightedTarget {
        /// The virtual node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub virtual_node_ref: Option<VirtualNodeReference>,
        /// Relative weight, 0 to 100.
        #[serde(default)]
        pub weight: i64,
    }

    /// A virtual node by name (in the router's namespace).
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    pub struct VirtualNodeReference {
        /// Its name.
        pub name: String,
    }

    /// An HTTP retry policy.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpRetryPolicy {
        /// The events retried.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub http_retry_events: Vec<String>,
        /// Most retries.
        #[serde(default)]
        pub max_retries: i64,
        /// Timeout of each retry.
        #[serde(default)]
        pub per_retry_timeout: Duration,
    }

    /// An App Mesh duration.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    pub struct Duration {
        /// `ms` here (or `s`).
        pub unit: String,
        /// The amount.
        pub value: i64,
    }

    /// HTTP timeouts.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpTimeout {
        /// Per request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub per_request: Option<Duration>,
    }
}

/// The v1beta1 `VirtualService.spec`, as much of it as fledge writes and reads.
pub mod v1beta1 {
    use serde::{Deserialize, Serialize};

    use super::RouteHeader;

    /// `VirtualService.spec`: the mesh, the virtual router and its routes.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct VirtualServiceSpec {
        /// The App Mesh mesh.
        #[serde(default)]
        pub mesh_name: String,
        /// The virtual router.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub virtual_router: Option<VirtualRouter>,
        /// The routes.
        #[serde(default)]
        pub routes: Vec<Route>,
    }

    /// The virtual router of a virtual service.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    pub struct VirtualRouter {
        /// Its name.
        pub name: String,
        /// Its listeners (one).
        #[serde(default)]
        pub listeners: Vec<RouterListener>,
    }

    /// A listener of the router.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct RouterListener {
        /// Port and protocol.
        pub port_mapping: PortMapping,
    }

    /// A port and its protocol.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    pub struct PortMapping {
        /// Port number.
        pub port: i64,
        /// `http` or `grpc` here.
        pub protocol: String,
    }

    /// A route.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    pub struct Route {
        /// Route name.
        pub name: String,
        /// The HTTP route.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub http: Option<HttpRoute>,
        /// Priority, lowest first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub priority: Option<i64>,
    }

    /// An HTTP route.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpRoute {
        /// What requests it takes.
        #[serde(rename = "match")]
        pub route_match: HttpRouteMatch,
        /// Where they go.
        pub action: HttpRouteAction,
        /// Retries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub retry_policy: Option<HttpRetryPolicy>,
    }

    /// The match of an HTTP route.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    pub struct HttpRouteMatch {
        /// Path prefix.
        #[serde(default)]
        pub prefix: String,
        /// Headers, all of which a request carries.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub headers: Vec<RouteHeader>,
    }

    /// The targets of an HTTP route.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpRouteAction {
        /// Virtual nodes and their relative weights.
        #[serde(default)]
        pub weighted_targets: Vec<WeightedTarget>,
    }

    /// A virtual node and its weight.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct WeightedTarget {
        /// The virtual node's name.
        #[serde(default)]
        pub virtual_node_name: String,
        /// Relative weight.
        #[serde(default)]
        pub weight: i64,
    }

    /// An HTTP retry policy.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
    #[serde(rename_all = "camelCase")]
    pub struct HttpRetryPolicy {
        /// Timeout of each retry, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub per_retry_timeout_millis: Option<i64>,
        /// Most retries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub max_retries: Option<i64>,
        /// The events retried.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub http_retry_events: Vec<String>,
    }
}

// ---- what the spec asks, checked ------------------------------------------------------------

/// Retries as App Mesh takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Retries {
    max: i64,
    per_try_ms: i64,
    events: Vec<String>,
}

/// What both versions take from the spec, every refusal already made.
#[derive(Clone, Debug)]
struct Settings {
    names: ServiceNames,
    provider: &'static str,
    prefix: String,
    protocol: &'static str,
    /// The port of the v1beta2 listeners (the container port).
    container_port: i64,
    timeout_ms: Option<i64>,
    retries: Option<Retries>,
    /// The headers of each `analysis.match` entry.
    ab: Vec<Vec<RouteHeader>>,
}

fn namespace(canary: &Canary) -> &str {
    canary.metadata.namespace.as_deref().unwrap_or("default")
}

impl Settings {
    /// What the routes of the spec need, every refusal made.
    fn of(canary: &Canary, version: AppMeshVersion) -> Result<Settings, Error> {
        refuse_unexpressible(canary, version)?;
        Ok(Settings {
            ab: ab_headers(canary, version.provider())?,
            ..Settings::base(canary, version)?
        })
    }

    /// What every object needs, without the A/B headers and without refusing what only the
    /// routes of a rollout would carry: finalization writes its objects from these (a Canary
    /// that asks for something App Mesh cannot do is still released on deletion).
    fn base(canary: &Canary, version: AppMeshVersion) -> Result<Settings, Error> {
        let provider = version.provider();
        let svc = &canary.spec.service;
        if version == AppMeshVersion::V1beta1
            && svc.mesh_name.as_deref().unwrap_or_default().is_empty()
        {
            return Err(cannot(
                provider,
                "spec.service.meshName: provider appmesh (App Mesh v1beta1) needs the name of \
                 the mesh its virtual nodes and services join; set it",
            ));
        }
        let timeout_ms = match svc.timeout.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => Some(millis(parse_duration(provider, "spec.service.timeout", t)?)),
            None => None,
        };
        let grpc = svc
            .port_name
            .as_deref()
            .unwrap_or_default()
            .contains("grpc");
        Ok(Settings {
            names: ServiceNames::of(canary),
            provider,
            prefix: route_prefix(canary, provider)?,
            protocol: if grpc { "grpc" } else { "http" },
            container_port: container_port(canary, version)?,
            timeout_ms,
            retries: retries(canary, provider)?,
            ab: Vec::new(),
        })
    }

    /// The routes of the apex routing object for `routes`: the weighted route alone, or the
    /// A/B header routes and the route after them.
    fn apex_routes(&self, routes: &Routes) -> Result<Vec<RoutePlan>, Error> {
        let p = self.provider;
        if routes.mirror.is_some_and(|m| m > 0) {
            return Err(cannot(
                p,
                format!(
                    "provider {p} does not mirror traffic (spec.analysis.mirror), as in \
                     Flagger; remove analysis.mirror, or use istio or gatewayapi:v1"
                ),
            ));
        }
        if routes.ab_match && self.ab.is_empty() {
            return Err(cannot(
                p,
                format!(
                    "provider {p} was asked for A/B routing, but spec.analysis.match has no \
                     header condition: add one"
                ),
            ));
        }
        let names = &self.names;
        let weight = i64::from(routes.canary.clamp(0, 100));
        let split = |w: i64| vec![(names.canary.clone(), w), (names.primary.clone(), 100 - w)];
        if self.ab.is_empty() {
            return Ok(vec![RoutePlan {
                name: names.apex.clone(),
                priority: None,
                headers: Vec::new(),
                targets: split(weight),
            }]);
        }
        let matched = if routes.ab_match { 100 } else { weight };
        let mut out: Vec<RoutePlan> = self
            .ab
            .iter()
            .enumerate()
            .map(|(i, headers)| RoutePlan {
                name: if i == 0 {
                    format!("{}-a", names.apex)
                } else {
                    format!("{}-a{}", names.apex, i + 1)
                },
                priority: Some(AB_PRIORITY + i as i64),
                headers: headers.clone(),
                targets: split(matched),
            })
            .collect();
        out.push(RoutePlan {
            name: format!("{}-b", names.apex),
            priority: Some(DEFAULT_PRIORITY),
            headers: Vec::new(),
            // Flagger's route after the header routes: all to the primary, as one target.
            targets: if weight == 0 {
                vec![(names.primary.clone(), 100)]
            } else {
                split(weight)
            },
        });
        Ok(out)
    }

    /// The route of the `<svc>-canary` routing object: all to the canary.
    fn canary_route(&self) -> RoutePlan {
        RoutePlan {
            name: self.names.canary.clone(),
            priority: None,
            headers: Vec::new(),
            targets: vec![
                (self.names.canary.clone(), 100),
                (self.names.primary.clone(), 0),
            ],
        }
    }

    /// The route left on finalization: all to the `<svc>` virtual node.
    fn released_route(&self) -> RoutePlan {
        RoutePlan {
            name: self.names.apex.clone(),
            priority: None,
            headers: Vec::new(),
            targets: vec![(self.names.apex.clone(), 100)],
        }
    }
}

/// What `fledge validate` refuses for the provider (`fledge_api::validate::appmesh_problems`:
/// the Istio route features, a missing mesh name, a v1beta1 route timeout, a named target port,
/// route conditions other than a URI prefix, unknown retry events, A/B conditions other than
/// headers), refused at runtime too, naming the fields.
fn refuse_unexpressible(canary: &Canary, version: AppMeshVersion) -> Result<(), Error> {
    let provider = version.provider();
    let problems = fledge_api::validate::appmesh_problems(provider, &canary.spec);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(crate::refused(provider, &problems))
    }
}

/// A route before it takes one version's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RoutePlan {
    name: String,
    priority: Option<i64>,
    headers: Vec<RouteHeader>,
    /// Virtual node names and weights.
    targets: Vec<(String, i64)>,
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The route prefix: `spec.service.match[0].uri.prefix`, `/` without one. App Mesh routes here
/// match on that prefix only, so anything else in `spec.service.match` is refused.
fn route_prefix(canary: &Canary, provider: &str) -> Result<String, Error> {
    let list = canary.spec.service.r#match.as_deref().unwrap_or_default();
    if list.len() > 1 {
        return Err(cannot(
            provider,
            format!(
                "spec.service.match: provider {provider} routes on one URI prefix \
                 (spec.service.match[0].uri.prefix); remove the other entries"
            ),
        ));
    }
    let Some(m) = list.first() else {
        return Ok("/".into());
    };
    let other = HttpMatchRequest {
        uri: None,
        name: None,
        ..m.clone()
    };
    if other != HttpMatchRequest::default() {
        return Err(cannot(
            provider,
            format!(
                "spec.service.match[0]: provider {provider} routes on a URI prefix only (as \
                 Flagger, which ignores the rest); remove the other conditions"
            ),
        ));
    }
    let Some(uri) = &m.uri else {
        return Ok("/".into());
    };
    if uri.exact.is_some() || uri.suffix.is_some() || uri.regex.is_some() {
        return Err(cannot(
            provider,
            format!(
                "spec.service.match[0].uri: provider {provider} matches the URI by prefix only; \
                 write uri.prefix"
            ),
        ));
    }
    Ok(uri
        .prefix
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into()))
}

/// The port of the v1beta2 listeners: `targetPort` when it is a number, else `port` (Flagger's
/// rule); v1beta1 listens on `port`, as Flagger writes it.
fn container_port(canary: &Canary, version: AppMeshVersion) -> Result<i64, Error> {
    let svc = &canary.spec.service;
    if version == AppMeshVersion::V1beta1 {
        return Ok(svc.port.into());
    }
    match &svc.target_port {
        Some(IntOrString::Int(p)) if *p > 0 => Ok((*p).into()),
        Some(IntOrString::String(name)) if !name.is_empty() => Err(cannot(
            PROVIDER_V1BETA2,
            format!(
                "spec.service.targetPort: provider appmesh:v1beta2 listens on the container \
                 port's number, which the port name {name:?} does not give; write the number"
            ),
        )),
        _ => Ok(svc.port.into()),
    }
}

/// The retry policy of `spec.service.retries` (Flagger's defaults: one retry, 250ms, on
/// `gateway-error`); events App Mesh does not know are refused.
fn retries(canary: &Canary, provider: &str) -> Result<Option<Retries>, Error> {
    let Some(r) = &canary.spec.service.retries else {
        return Ok(None);
    };
    let per_try_ms = match r.per_try_timeout.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => millis(parse_duration(
            provider,
            "spec.service.retries.perTryTimeout",
            t,
        )?),
        None => DEFAULT_PER_RETRY_MS,
    };
    let events: Vec<String> = match r.retry_on.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => s.split(',').map(|e| e.trim().to_string()).collect(),
        None => vec!["gateway-error".into()],
    };
    if let Some(bad) = events
        .iter()
        .find(|e| !HTTP_RETRY_EVENTS.contains(&e.as_str()))
    {
        return Err(cannot(
            provider,
            format!(
                "spec.service.retries.retryOn: provider {provider} (App Mesh) retries on {}, \
                 not {bad:?}; write those events, comma-separated",
                HTTP_RETRY_EVENTS.join(", ")
            ),
        ));
    }
    Ok(Some(Retries {
        max: if r.attempts > 0 { r.attempts.into() } else { 1 },
        per_try_ms,
        events,
    }))
}

/// The headers of each `analysis.match` entry; an error naming what an App Mesh route cannot
/// match on.
fn ab_headers(canary: &Canary, provider: &str) -> Result<Vec<Vec<RouteHeader>>, Error> {
    let matches = crate::analysis_match(canary);
    if matches.len() > MAX_AB_ROUTES {
        return Err(cannot(
            provider,
            format!(
                "spec.analysis.match: provider {provider} takes at most {MAX_AB_ROUTES} entries \
                 (one route each); merge some"
            ),
        ));
    }
    let mut out = Vec::new();
    for (i, m) in matches.iter().enumerate() {
        let field = format!("spec.analysis.match[{i}]");
        let other = HttpMatchRequest {
            headers: None,
            name: None,
            ..m.clone()
        };
        if other != HttpMatchRequest::default() {
            return Err(cannot(
                provider,
                format!(
                    "{field}: provider {provider} matches A/B traffic on headers only (as \
                     Flagger); remove the other conditions, or use istio or gatewayapi:v1"
                ),
            ));
        }
        let headers = m.headers.clone().unwrap_or_default();
        if headers.is_empty() {
            return Err(cannot(
                provider,
                format!(
                    "{field}: has no header condition, so provider {provider} would send every \
                     request to the canary; add one under headers"
                ),
            ));
        }
        if headers.len() > MAX_HEADERS {
            return Err(cannot(
                provider,
                format!(
                    "{field}.headers: provider {provider} (App Mesh) matches at most \
                     {MAX_HEADERS} headers in a route; remove some"
                ),
            ));
        }
        let mut list = Vec::new();
        for (name, sm) in headers {
            let hfield = format!("{field}.headers.{name}");
            if name.is_empty() || name.len() > MAX_HEADER_NAME {
                return Err(cannot(
                    provider,
                    format!(
                        "{hfield}: provider {provider} (App Mesh) matches header names of 1 \
                         to {MAX_HEADER_NAME} characters"
                    ),
                ));
            }
            let set: Vec<(&str, &String)> = [
                ("exact", &sm.exact),
                ("prefix", &sm.prefix),
                ("suffix", &sm.suffix),
                ("regex", &sm.regex),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().filter(|v| !v.is_empty()).map(|v| (k, v)))
            .collect();
            let [(kind, value)] = set.as_slice() else {
                return Err(cannot(
                    provider,
                    format!(
                        "{hfield}: provider {provider} matches a header one way: give exactly \
                         one of exact, prefix, suffix or regex"
                    ),
                ));
            };
            if value.len() > MAX_HEADER_VALUE {
                return Err(cannot(
                    provider,
                    format!(
                        "{hfield}.{kind}: provider {provider} (App Mesh) matches at most \
                         {MAX_HEADER_VALUE} characters"
                    ),
                ));
            }
            let value = Some((*value).clone());
            let mut hm = HeaderMatch::default();
            match *kind {
                "exact" => hm.exact = value,
                "prefix" => hm.prefix = value,
                "suffix" => hm.suffix = value,
                _ => hm.regex = value,
            }
            list.push(RouteHeader {
                name,
                header_match: Some(hm),
            });
        }
        out.push(list);
    }
    Ok(out)
}

/// Flagger's App Mesh gateway annotations for the apex VirtualService: set when
/// `spec.service.hosts` has entries.
pub fn gateway_annotations(canary: &Canary) -> BTreeMap<String, String> {
    let svc = &canary.spec.service;
    let domains: String = svc
        .hosts
        .iter()
        .flatten()
        .map(|h| format!("{h},"))
        .collect();
    let mut a = BTreeMap::new();
    if domains.is_empty() {
        return a;
    }
    a.insert(GATEWAY_EXPOSE.into(), "true".into());
    a.insert(GATEWAY_DOMAIN.into(), domains);
    if let Some(t) = svc.timeout.as_deref().filter(|t| !t.is_empty()) {
        a.insert(GATEWAY_TIMEOUT.into(), t.into());
    }
    if let Some(r) = svc.retries.as_ref().filter(|r| r.attempts > 0) {
        a.insert(GATEWAY_RETRIES.into(), r.attempts.to_string());
    }
    a
}

fn access_log(canary: &Canary) -> Option<serde_json::Value> {
    let on = canary
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ACCESS_LOG_ANNOTATION))
        .is_some_and(|v| v == "enabled");
    on.then(|| json!({"accessLog": {"file": {"path": "/dev/stdout"}}}))
}

/// A virtual node's metadata: the skeleton, the labels and annotations of `spec.service.apex`
/// and Flux's switches (Flagger's `filterMetadata`).
fn node_skeleton(kind: &PeerKind, canary: &Canary, name: &str, owned: bool) -> serde_json::Value {
    let mut obj = object_meta(kind, canary, name, owned);
    let (labels, annotations) = crate::apex_metadata(canary);
    obj["metadata"]["labels"] = json!(labels);
    obj["metadata"]["annotations"] = json!(annotations);
    obj
}

// ---- v1beta2 --------------------------------------------------------------------------------

/// A v1beta2 VirtualNode for the pods `<label>: <pods>`, found at `host`.
fn node_v1beta2(
    canary: &Canary,
    s: &Settings,
    label: &str,
    (name, pods, host): (&str, &str, &str),
    owned: bool,
) -> serde_json::Value {
    let mut listener = json!({"portMapping": {"port": s.container_port, "protocol": s.protocol}});
    if let Some(ms) = s.timeout_ms {
        listener["timeout"] = json!({"http": {"perRequest": {"unit": "ms", "value": ms}}});
    }
    let mut spec = json!({
        "podSelector": {"matchLabels": {label: pods}},
        "listeners": [listener],
        "serviceDiscovery": {"dns": {"hostname": host}},
    });
    let backends: Vec<serde_json::Value> = canary
        .spec
        .service
        .backends
        .iter()
        .flatten()
        .map(|b| {
            if b.starts_with("arn:aws") {
                json!({"virtualService": {"virtualServiceARN": b}})
            } else {
                json!({"virtualService": {"virtualServiceRef": {"name": b}}})
            }
        })
        .collect();
    if !backends.is_empty() {
        spec["backends"] = json!(backends);
    }
    if let Some(log) = access_log(canary) {
        spec["logging"] = log;
    }
    let mut obj = node_skeleton(&VIRTUAL_NODE, canary, name, owned);
    obj["spec"] = spec;
    obj
}

fn route_v1beta2(plan: &RoutePlan, s: &Settings) -> v1beta2::Route {
    use v1beta2::*;
    let ms = |value: i64| Duration {
        unit: "ms".into(),
        value,
    };
    Route {
        name: plan.name.clone(),
        priority: plan.priority,
        http_route: Some(HttpRoute {
            route_match: HttpRouteMatch {
                prefix: s.prefix.clone(),
                headers: plan.headers.clone(),
            },
            action: HttpRouteAction {
                weighted_targets: plan
                    .targets
                    .iter()
                    .map(|(node, weight)| WeightedTarget {
                        virtual_node_ref: Some(VirtualNodeReference { name: node.clone() }),
                        weight: *weight,
                    })
                    .collect(),
            },
            retry_policy: s.retries.as_ref().map(|r| HttpRetryPolicy {
                http_retry_events: r.events.clone(),
                max_retries: r.max,
                per_retry_timeout: ms(r.per_try_ms),
            }),
            timeout: s.timeout_ms.map(|t| HttpTimeout {
                per_request: Some(ms(t)),
            }),
        }),
    }
}

fn router_v1beta2(
    canary: &Canary,
    s: &Settings,
    name: &str,
    routes: &[RoutePlan],
    owned: bool,
) -> Result<serde_json::Value, Error> {
    let spec = v1beta2::VirtualRouterSpec {
        listeners: vec![v1beta2::RouterListener {
            port_mapping: v1beta2::PortMapping {
                port: s.container_port,
                protocol: s.protocol.into(),
            },
        }],
        routes: routes.iter().map(|r| route_v1beta2(r, s)).collect(),
    };
    let mut obj = object_meta(&VIRTUAL_ROUTER, canary, name, owned);
    obj["spec"] = serde_json::to_value(spec)?;
    Ok(obj)
}

fn service_v1beta2(canary: &Canary, name: &str, apex: bool, owned: bool) -> serde_json::Value {
    let mut obj = object_meta(&VIRTUAL_SERVICE, canary, name, owned);
    let annotations = gateway_annotations(canary);
    if apex && !annotations.is_empty() {
        obj["metadata"]["annotations"] = json!(annotations);
    }
    obj["spec"] = json!({"provider": {"virtualRouter": {"virtualRouterRef": {"name": name}}}});
    obj
}

// ---- v1beta1 --------------------------------------------------------------------------------

fn node_v1beta1(
    canary: &Canary,
    s: &Settings,
    name: &str,
    host: &str,
    owned: bool,
) -> serde_json::Value {
    let mut spec = json!({
        "meshName": canary.spec.service.mesh_name,
        "listeners": [{"portMapping": {"port": s.container_port, "protocol": s.protocol}}],
        "serviceDiscovery": {"dns": {"hostName": host}},
    });
    let backends: Vec<serde_json::Value> = canary
        .spec
        .service
        .backends
        .iter()
        .flatten()
        .map(|b| json!({"virtualService": {"virtualServiceName": b}}))
        .collect();
    if !backends.is_empty() {
        spec["backends"] = json!(backends);
    }
    if let Some(log) = access_log(canary) {
        spec["logging"] = log;
    }
    let mut obj = node_skeleton(&LEGACY_VIRTUAL_NODE, canary, name, owned);
    obj["spec"] = spec;
    obj
}

fn route_v1beta1(plan: &RoutePlan, s: &Settings) -> v1beta1::Route {
    use v1beta1::*;
    Route {
        name: plan.name.clone(),
        priority: plan.priority,
        http: Some(HttpRoute {
            route_match: HttpRouteMatch {
                prefix: s.prefix.clone(),
                headers: plan.headers.clone(),
            },
            action: HttpRouteAction {
                weighted_targets: plan
                    .targets
                    .iter()
                    .map(|(node, weight)| WeightedTarget {
                        virtual_node_name: node.clone(),
                        weight: *weight,
                    })
                    .collect(),
            },
            retry_policy: s.retries.as_ref().map(|r| HttpRetryPolicy {
                per_retry_timeout_millis: Some(r.per_try_ms),
                max_retries: Some(r.max),
                http_retry_events: r.events.clone(),
            }),
        }),
    }
}

/// A v1beta1 VirtualService `<router>.<ns>` carrying the virtual router `router` and `routes`.
fn service_v1beta1(
    canary: &Canary,
    s: &Settings,
    router: &str,
    routes: &[RoutePlan],
    (apex, owned): (bool, bool),
) -> Result<serde_json::Value, Error> {
    let spec = v1beta1::VirtualServiceSpec {
        mesh_name: canary.spec.service.mesh_name.clone().unwrap_or_default(),
        virtual_router: Some(v1beta1::VirtualRouter {
            name: router.into(),
            listeners: vec![v1beta1::RouterListener {
                port_mapping: v1beta1::PortMapping {
                    port: s.container_port,
                    protocol: s.protocol.into(),
                },
            }],
        }),
        routes: routes.iter().map(|r| route_v1beta1(r, s)).collect(),
    };
    let name = format!("{router}.{}", namespace(canary));
    let mut obj = object_meta(&LEGACY_VIRTUAL_SERVICE, canary, &name, owned);
    let annotations = gateway_annotations(canary);
    if apex && !annotations.is_empty() {
        obj["metadata"]["annotations"] = json!(annotations);
    }
    obj["spec"] = serde_json::to_value(spec)?;
    Ok(obj)
}

// ---- the objects ----------------------------------------------------------------------------

/// Every object of the provider for `routes`, in the order they are applied (virtual nodes,
/// then what refers to them). `selector` is the target's selector label and value.
pub fn build_objects(
    canary: &Canary,
    selector: (&str, &str),
    routes: Routes,
    version: AppMeshVersion,
) -> Result<Vec<(PeerKind, serde_json::Value)>, Error> {
    let s = Settings::of(canary, version)?;
    let apex_routes = s.apex_routes(&routes)?;
    let names = &s.names;
    let ns = namespace(canary);
    Ok(match version {
        AppMeshVersion::V1beta2 => {
            let (label, value) = selector;
            let primary_pods = fledge_api::primary_name(value);
            let host = |name: &str| format!("{name}.{ns}.svc.cluster.local.");
            vec![
                (
                    VIRTUAL_NODE,
                    node_v1beta2(
                        canary,
                        &s,
                        label,
                        (&names.primary, &primary_pods, &host(&names.primary)),
                        true,
                    ),
                ),
                (
                    VIRTUAL_NODE,
                    node_v1beta2(
                        canary,
                        &s,
                        label,
                        (&names.canary, value, &host(&names.canary)),
                        true,
                    ),
                ),
                (
                    VIRTUAL_ROUTER,
                    router_v1beta2(canary, &s, &names.apex, &apex_routes, true)?,
                ),
                (
                    VIRTUAL_ROUTER,
                    router_v1beta2(canary, &s, &names.canary, &[s.canary_route()], true)?,
                ),
                (
                    VIRTUAL_SERVICE,
                    service_v1beta2(canary, &names.apex, true, true),
                ),
                (
                    VIRTUAL_SERVICE,
                    service_v1beta2(canary, &names.canary, false, true),
                ),
            ]
        }
        AppMeshVersion::V1beta1 => {
            let primary_host = format!("{}.{ns}", names.primary);
            let canary_host = format!("{}.{ns}", names.canary);
            vec![
                (
                    LEGACY_VIRTUAL_NODE,
                    node_v1beta1(canary, &s, &names.apex, &primary_host, true),
                ),
                (
                    LEGACY_VIRTUAL_NODE,
                    node_v1beta1(canary, &s, &names.primary, &primary_host, true),
                ),
                (
                    LEGACY_VIRTUAL_NODE,
                    node_v1beta1(canary, &s, &names.canary, &canary_host, true),
                ),
                (
                    LEGACY_VIRTUAL_SERVICE,
                    service_v1beta1(canary, &s, &names.apex, &apex_routes, (true, true))?,
                ),
                (
                    LEGACY_VIRTUAL_SERVICE,
                    service_v1beta1(
                        canary,
                        &s,
                        &names.canary,
                        &[s.canary_route()],
                        (false, true),
                    )?,
                ),
            ]
        }
    })
}

/// The routing object for `routes`: the VirtualRouter `<svc>` (v1beta2) or the VirtualService
/// `<svc>.<ns>` (v1beta1), as JSON for server-side apply.
pub fn build_routing_object(
    canary: &Canary,
    routes: Routes,
    version: AppMeshVersion,
) -> Result<serde_json::Value, Error> {
    let s = Settings::of(canary, version)?;
    let apex_routes = s.apex_routes(&routes)?;
    match version {
        AppMeshVersion::V1beta2 => router_v1beta2(canary, &s, &s.names.apex, &apex_routes, true),
        AppMeshVersion::V1beta1 => {
            service_v1beta1(canary, &s, &s.names.apex, &apex_routes, (true, true))
        }
    }
}

/// What finalization with revert leaves, no longer owned by the Canary, in the order to apply:
/// a virtual node `<svc>` for the target's pods behind the apex Service (which
/// `release_apex` points at them), and the apex routing object (and, for v1beta2, the apex
/// VirtualService) sending everything to it. The primary and canary virtual nodes, Services
/// and the `-canary` objects go with the Canary.
pub fn released_objects(
    canary: &Canary,
    selector: (&str, &str),
    version: AppMeshVersion,
) -> Result<Vec<(PeerKind, serde_json::Value)>, Error> {
    let s = Settings::base(canary, version)?;
    let names = &s.names;
    let ns = namespace(canary);
    let route = [s.released_route()];
    Ok(match version {
        AppMeshVersion::V1beta2 => {
            let host = format!("{}.{ns}.svc.cluster.local.", names.apex);
            vec![
                (
                    VIRTUAL_NODE,
                    node_v1beta2(
                        canary,
                        &s,
                        selector.0,
                        (&names.apex, selector.1, &host),
                        false,
                    ),
                ),
                (
                    VIRTUAL_ROUTER,
                    router_v1beta2(canary, &s, &names.apex, &route, false)?,
                ),
                (
                    VIRTUAL_SERVICE,
                    service_v1beta2(canary, &names.apex, true, false),
                ),
            ]
        }
        AppMeshVersion::V1beta1 => {
            let host = format!("{}.{ns}", names.apex);
            vec![
                (
                    LEGACY_VIRTUAL_NODE,
                    node_v1beta1(canary, &s, &names.apex, &host, false),
                ),
                (
                    LEGACY_VIRTUAL_SERVICE,
                    service_v1beta1(canary, &s, &names.apex, &route, (true, false))?,
                ),
            ]
        }
    })
}

/// The routes the weighted targets of the apex routes give (each route's targets as virtual
/// node names and weights, in order): the canary's share of the last route (the route every
/// request not matched before reaches), and A/B routing when every route before it sends all
/// to the canary while the last does not.
fn routes_from(targets: &[Vec<(&str, i64)>], names: &ServiceNames) -> Routes {
    let share = |route: &Vec<(&str, i64)>| {
        let weight = |n: &str| -> i64 {
            route
                .iter()
                .filter(|(node, _)| *node == n)
                .map(|(_, w)| (*w).max(0))
                .sum()
        };
        let (c, total) = (
            weight(&names.canary),
            weight(&names.primary) + weight(&names.canary),
        );
        // Rounded to the nearest percent; no weight at all reads as all to the primary.
        (c * 100 + total / 2)
            .checked_div(total)
            .and_then(|share| i32::try_from(share).ok())
            .unwrap_or(0)
    };
    let Some((last, matched)) = targets.split_last() else {
        return Routes::PRIMARY;
    };
    let canary = share(last);
    Routes {
        ab_match: canary < 100 && !matched.is_empty() && matched.iter().all(|r| share(r) == 100),
        ..Routes::weighted(canary)
    }
}

/// The routes a v1beta2 VirtualRouter gives.
pub fn routes_of_router(spec: &v1beta2::VirtualRouterSpec, names: &ServiceNames) -> Routes {
    let targets: Vec<Vec<(&str, i64)>> = spec
        .routes
        .iter()
        .map(|r| {
            r.http_route
                .iter()
                .flat_map(|h| &h.action.weighted_targets)
                .filter_map(|t| Some((t.virtual_node_ref.as_ref()?.name.as_str(), t.weight)))
                .collect()
        })
        .collect();
    routes_from(&targets, names)
}

/// The routes a v1beta1 VirtualService gives.
pub fn routes_of_service(spec: &v1beta1::VirtualServiceSpec, names: &ServiceNames) -> Routes {
    let targets: Vec<Vec<(&str, i64)>> = spec
        .routes
        .iter()
        .map(|r| {
            r.http
                .iter()
                .flat_map(|h| &h.action.weighted_targets)
                .map(|t| (t.virtual_node_name.as_str(), t.weight))
                .collect()
        })
        .collect();
    routes_from(&targets, names)
}

/// Whether an existing v1beta2 VirtualNode `<svc>` is one fledge released on a finalization
/// (marked as fledge's, owned by nobody): it selects the target's pods as the canary virtual
/// node does, and App Mesh refuses to inject a pod two virtual nodes select.
pub fn is_released_node(obj: &serde_json::Value) -> bool {
    let meta = &obj["metadata"];
    meta["labels"]["app.kubernetes.io/managed-by"] == "fledge"
        && meta["ownerReferences"].as_array().is_none_or(Vec::is_empty)
}

// ---- the router -----------------------------------------------------------------------------

/// Routes through App Mesh virtual routers (v1beta2) or virtual services (v1beta1).
pub struct AppMeshRouter {
    client: Client,
    version: AppMeshVersion,
}

impl AppMeshRouter {
    /// A router using `client` that writes the objects of `version`.
    pub fn new(client: Client, version: AppMeshVersion) -> Self {
        AppMeshRouter { client, version }
    }

    async fn apply_all(
        &self,
        t: &RouteTarget<'_>,
        objects: &[(PeerKind, serde_json::Value)],
    ) -> Result<(), Error> {
        for (kind, obj) in objects {
            kind.apply(&self.client, t.namespace(), self.version.provider(), obj)
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Router for AppMeshRouter {
    fn provider(&self) -> &'static str {
        self.version.provider()
    }

    fn routing_kind(&self) -> PeerKind {
        self.version.routing_kind()
    }

    fn routing_name(&self, canary: &Canary) -> String {
        self.version.routing_name(canary)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_weights: true,
            http_match: true,
            ..Capabilities::default()
        }
    }

    /// Applies every object (virtual nodes first), keeping the routes the status records; for
    /// v1beta2, then deletes the virtual node `<svc>` a previous finalization released, which
    /// would select the target's pods along with the canary virtual node.
    async fn ensure(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        let routes = routes_in_status(t.canary, t.status);
        let objects = build_objects(t.canary, t.selector, routes, self.version)?;
        self.apply_all(t, &objects).await?;
        if self.version == AppMeshVersion::V1beta2 {
            let (ns, apex) = (t.namespace(), t.canary.spec.apex_service_name());
            let existing = VIRTUAL_NODE
                .get(&self.client, ns, self.provider(), apex)
                .await?;
            if existing.as_ref().is_some_and(is_released_node) {
                VIRTUAL_NODE.delete(&self.client, ns, apex).await?;
            }
        }
        Ok(())
    }

    /// Applies the routing object for `routes` (one API call per traffic step).
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        let obj = build_routing_object(t.canary, routes, self.version)?;
        self.routing_kind()
            .apply(&self.client, t.namespace(), self.provider(), &obj)
            .await
    }

    /// The routes the routing object gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let names = ServiceNames::of(t.canary);
        let name = self.routing_name(t.canary);
        let Some(obj) = self
            .routing_kind()
            .get(&self.client, t.namespace(), self.provider(), &name)
            .await?
        else {
            return Ok(None);
        };
        let spec = obj["spec"].clone();
        Ok(Some(match self.version {
            AppMeshVersion::V1beta2 => routes_of_router(&serde_json::from_value(spec)?, &names),
            AppMeshVersion::V1beta1 => routes_of_service(&serde_json::from_value(spec)?, &names),
        }))
    }

    /// Flagger does nothing here, and garbage collection then deletes every App Mesh object
    /// with the Canary: the mesh no longer knows the service, and every virtual node that
    /// lists it as a backend loses it. fledge keeps the service in the mesh instead: it points
    /// the apex Service at the target's pods, then leaves, owned by nobody, a virtual node
    /// `<svc>` for those pods behind the apex Service and the apex routing object (and the
    /// v1beta2 apex VirtualService) sending everything to it. For v1beta2 it then deletes the
    /// canary VirtualService, VirtualRouter and virtual node (in that order, each free of
    /// references when it goes), as the canary virtual node selects the same pods as `<svc>`
    /// and App Mesh refuses to inject a pod that two virtual nodes select. A Canary created
    /// again takes these objects over (and `ensure` deletes the released `<svc>` node).
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        release_apex(&self.client, t).await?;
        let objects = released_objects(t.canary, t.selector, self.version)?;
        self.apply_all(t, &objects).await?;
        if self.version == AppMeshVersion::V1beta2 {
            let canary = ServiceNames::of(t.canary).canary;
            for kind in [VIRTUAL_SERVICE, VIRTUAL_ROUTER, VIRTUAL_NODE] {
                kind.delete(&self.client, t.namespace(), &canary).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::canary;

    const ARN: &str =
        "arn:aws:appmesh:eu-west-1:12345678910:mesh/my-mesh/virtualService/mytestservice";
    const SELECTOR: (&str, &str) = ("app", "podinfo");

    /// `test/podinfo` with every field Flagger's App Mesh routers read.
    fn mesh_canary(provider: &str, extra: serde_json::Value) -> Canary {
        let mut spec = json!({"service": {
            "port": 9898, "portName": "http", "targetPort": 8080, "meshName": "global",
            "hosts": ["podinfo.example.com", "*"],
            "backends": ["backend.default", ARN],
            "timeout": "30s",
            "retries": {"attempts": 5, "perTryTimeout": "5s", "retryOn": "gateway-error,client-error"},
            "match": [{"uri": {"prefix": "/api"}}],
            "apex": {"labels": {"team": "web"}, "annotations": {"note": "apex"}}
        }});
        merge(&mut spec, extra);
        let mut c = canary(provider, spec);
        c.metadata.annotations =
            Some([(ACCESS_LOG_ANNOTATION.to_string(), "enabled".to_string())].into());
        c
    }

    /// `extra` merged into `into`, objects key by key (as the Canary helper merges).
    fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
        match (into, extra) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn find<'a>(
        objects: &'a [(PeerKind, serde_json::Value)],
        kind: &str,
        name: &str,
    ) -> &'a serde_json::Value {
        &objects
            .iter()
            .find(|(k, o)| k.kind == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
            .1
    }

    fn ab() -> Routes {
        Routes {
            ab_match: true,
            ..Routes::PRIMARY
        }
    }

    // ---- v1beta2: what Flagger's pkg/router/appmesh_v1beta2.go writes ----

    /// Flagger's v1beta2 virtual node spec for `name`, selecting `pods`.
    fn flagger_node_v1beta2(name: &str, pods: &str) -> serde_json::Value {
        json!({
            "podSelector": {"matchLabels": {"app": pods}},
            "listeners": [{
                "portMapping": {"port": 8080, "protocol": "http"},
                "timeout": {"http": {"perRequest": {"unit": "ms", "value": 30000}}}
            }],
            "serviceDiscovery": {"dns": {"hostname": format!("{name}.test.svc.cluster.local.")}},
            "backends": [
                {"virtualService": {"virtualServiceRef": {"name": "backend.default"}}},
                {"virtualService": {"virtualServiceARN": ARN}}
            ],
            "logging": {"accessLog": {"file": {"path": "/dev/stdout"}}}
        })
    }

    /// A v1beta2 route as Flagger writes it, with the timeout and retry policy of the spec.
    fn flagger_route_v1beta2(
        name: &str,
        priority: Option<i64>,
        headers: serde_json::Value,
        targets: serde_json::Value,
    ) -> serde_json::Value {
        let mut m = json!({"prefix": "/api"});
        if headers != json!(null) {
            m["headers"] = headers;
        }
        let mut r = json!({"name": name, "httpRoute": {
            "match": m,
            "timeout": {"perRequest": {"unit": "ms", "value": 30000}},
            "retryPolicy": {
                "perRetryTimeout": {"unit": "ms", "value": 5000},
                "maxRetries": 5,
                "httpRetryEvents": ["gateway-error", "client-error"]
            },
            "action": {"weightedTargets": targets}
        }});
        if let Some(p) = priority {
            r["priority"] = json!(p);
        }
        r
    }

    fn targets_v1beta2(pairs: &[(&str, i64)]) -> serde_json::Value {
        json!(
            pairs
                .iter()
                .map(|(n, w)| json!({"virtualNodeRef": {"name": n}, "weight": w}))
                .collect::<Vec<_>>()
        )
    }

    fn flagger_router_v1beta2(routes: Vec<serde_json::Value>) -> serde_json::Value {
        json!({
            "listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}],
            "routes": routes
        })
    }

    #[test]
    fn v1beta2_writes_what_flagger_writes_at_initialization() {
        let c = mesh_canary(PROVIDER_V1BETA2, json!({}));
        let objects =
            build_objects(&c, SELECTOR, Routes::PRIMARY, AppMeshVersion::V1beta2).unwrap();
        let order: Vec<(&str, &str)> = objects
            .iter()
            .map(|(k, o)| (k.kind, o["metadata"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            order,
            [
                ("VirtualNode", "podinfo-primary"),
                ("VirtualNode", "podinfo-canary"),
                ("VirtualRouter", "podinfo"),
                ("VirtualRouter", "podinfo-canary"),
                ("VirtualService", "podinfo"),
                ("VirtualService", "podinfo-canary"),
            ]
        );
        for (kind, obj) in &objects {
            assert_eq!(obj["apiVersion"], "appmesh.k8s.aws/v1beta2");
            assert_eq!(kind.api_version(), "appmesh.k8s.aws/v1beta2");
            assert_eq!(obj["metadata"]["namespace"], "test");
            assert_eq!(obj["metadata"]["ownerReferences"][0]["uid"], "uid-1");
            assert_eq!(obj["metadata"]["ownerReferences"][0]["kind"], "Canary");
            assert_eq!(
                obj["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "fledge"
            );
        }
        let primary = find(&objects, "VirtualNode", "podinfo-primary");
        assert_eq!(
            primary["spec"],
            flagger_node_v1beta2("podinfo-primary", "podinfo-primary")
        );
        assert_eq!(
            primary["metadata"]["labels"],
            json!({"team": "web", "app.kubernetes.io/managed-by": "fledge"})
        );
        assert_eq!(
            primary["metadata"]["annotations"],
            json!({"note": "apex", "kustomize.toolkit.fluxcd.io/reconcile": "disabled",
                   "helm.toolkit.fluxcd.io/driftDetection": "disabled"})
        );
        let canary_node = find(&objects, "VirtualNode", "podinfo-canary");
        assert_eq!(
            canary_node["spec"],
            flagger_node_v1beta2("podinfo-canary", "podinfo")
        );
        assert_eq!(canary_node["metadata"]["annotations"]["note"], "apex");

        let apex_router = find(&objects, "VirtualRouter", "podinfo");
        assert_eq!(
            apex_router["spec"],
            flagger_router_v1beta2(vec![flagger_route_v1beta2(
                "podinfo",
                None,
                json!(null),
                targets_v1beta2(&[("podinfo-canary", 0), ("podinfo-primary", 100)])
            )])
        );
        // Flagger writes no labels or annotations of its own on routers and services.
        assert!(apex_router["metadata"].get("annotations").is_none());
        let canary_router = find(&objects, "VirtualRouter", "podinfo-canary");
        assert_eq!(
            canary_router["spec"],
            flagger_router_v1beta2(vec![flagger_route_v1beta2(
                "podinfo-canary",
                None,
                json!(null),
                targets_v1beta2(&[("podinfo-canary", 100), ("podinfo-primary", 0)])
            )])
        );

        let apex_service = find(&objects, "VirtualService", "podinfo");
        assert_eq!(
            apex_service["spec"],
            json!({"provider": {"virtualRouter": {"virtualRouterRef": {"name": "podinfo"}}}})
        );
        assert_eq!(
            apex_service["metadata"]["annotations"],
            json!({
                "gateway.appmesh.k8s.aws/expose": "true",
                "gateway.appmesh.k8s.aws/domain": "podinfo.example.com,*,",
                "gateway.appmesh.k8s.aws/timeout": "30s",
                "gateway.appmesh.k8s.aws/retries": "5"
            })
        );
        let canary_service = find(&objects, "VirtualService", "podinfo-canary");
        assert_eq!(
            canary_service["spec"],
            json!({"provider": {"virtualRouter": {"virtualRouterRef": {"name": "podinfo-canary"}}}})
        );
        assert!(canary_service["metadata"].get("annotations").is_none());
    }

    #[test]
    fn v1beta2_routes_at_each_weight_promotion_and_rollback_read_back() {
        let c = mesh_canary(PROVIDER_V1BETA2, json!({}));
        let names = ServiceNames::of(&c);
        // The steps, blue/green's all-to-the-canary, promotion (then 0) and a rollback (0).
        for w in [10, 20, 60, 100, 0, 30, 0] {
            let obj =
                build_routing_object(&c, Routes::weighted(w), AppMeshVersion::V1beta2).unwrap();
            assert_eq!(obj["kind"], "VirtualRouter");
            assert_eq!(obj["metadata"]["name"], "podinfo");
            assert_eq!(obj["metadata"]["ownerReferences"][0]["uid"], "uid-1");
            let w = i64::from(w);
            assert_eq!(
                obj["spec"],
                flagger_router_v1beta2(vec![flagger_route_v1beta2(
                    "podinfo",
                    None,
                    json!(null),
                    targets_v1beta2(&[("podinfo-canary", w), ("podinfo-primary", 100 - w)])
                )]),
                "{w}"
            );
            let spec: v1beta2::VirtualRouterSpec =
                serde_json::from_value(obj["spec"].clone()).unwrap();
            assert_eq!(routes_of_router(&spec, &names), Routes::weighted(w as i32));
        }
        // ensure writes the same routing object as set_routes does.
        let objects =
            build_objects(&c, SELECTOR, Routes::weighted(40), AppMeshVersion::V1beta2).unwrap();
        assert_eq!(
            find(&objects, "VirtualRouter", "podinfo"),
            &build_routing_object(&c, Routes::weighted(40), AppMeshVersion::V1beta2).unwrap()
        );
    }

    #[test]
    fn v1beta2_ab_testing_puts_the_header_route_first() {
        let c = mesh_canary(
            PROVIDER_V1BETA2,
            json!({"analysis": {"iterations": 2, "match": [
                {"headers": {"x-user-type": {"exact": "test"}, "user-agent": {"regex": ".*Firefox.*"}}}
            ]}}),
        );
        let names = ServiceNames::of(&c);
        let headers = json!([
            {"name": "user-agent", "match": {"regex": ".*Firefox.*"}},
            {"name": "x-user-type", "match": {"exact": "test"}}
        ]);
        let route_b = flagger_route_v1beta2(
            "podinfo-b",
            Some(20),
            json!(null),
            targets_v1beta2(&[("podinfo-primary", 100)]),
        );
        // Initialization, promotion and rollback: Flagger's Reconcile.
        let init = build_routing_object(&c, Routes::PRIMARY, AppMeshVersion::V1beta2).unwrap();
        assert_eq!(
            init["spec"],
            flagger_router_v1beta2(vec![
                flagger_route_v1beta2(
                    "podinfo-a",
                    Some(10),
                    headers.clone(),
                    targets_v1beta2(&[("podinfo-canary", 0), ("podinfo-primary", 100)])
                ),
                route_b.clone()
            ])
        );
        let spec: v1beta2::VirtualRouterSpec =
            serde_json::from_value(init["spec"].clone()).unwrap();
        assert_eq!(routes_of_router(&spec, &names), Routes::PRIMARY);
        // During the test: Flagger's SetRoutes(0, 100), which changes the first route only.
        let during = build_routing_object(&c, ab(), AppMeshVersion::V1beta2).unwrap();
        assert_eq!(
            during["spec"],
            flagger_router_v1beta2(vec![
                flagger_route_v1beta2(
                    "podinfo-a",
                    Some(10),
                    headers,
                    targets_v1beta2(&[("podinfo-canary", 100), ("podinfo-primary", 0)])
                ),
                route_b
            ])
        );
        let spec: v1beta2::VirtualRouterSpec =
            serde_json::from_value(during["spec"].clone()).unwrap();
        assert_eq!(routes_of_router(&spec, &names), ab());
        // The canary router has no A/B route.
        let objects = build_objects(&c, SELECTOR, ab(), AppMeshVersion::V1beta2).unwrap();
        let canary_router = find(&objects, "VirtualRouter", "podinfo-canary");
        assert_eq!(canary_router["spec"]["routes"].as_array().unwrap().len(), 1);
        assert!(canary_router["spec"]["routes"][0].get("priority").is_none());
    }

    #[test]
    fn each_match_entry_is_a_route_and_weights_reach_the_route_after_them() {
        let c = mesh_canary(
            PROVIDER_V1BETA2,
            json!({"analysis": {"match": [
                {"headers": {"x-canary": {"exact": "insider"}}},
                {"headers": {"cookie": {"suffix": "canary=always"}}}
            ]}}),
        );
        let names = ServiceNames::of(&c);
        let obj = build_routing_object(&c, Routes::weighted(30), AppMeshVersion::V1beta2).unwrap();
        let spec: v1beta2::VirtualRouterSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
        let summary: Vec<(String, Option<i64>, usize, Vec<i64>)> = spec
            .routes
            .iter()
            .map(|r| {
                let h = r.http_route.as_ref().unwrap();
                (
                    r.name.clone(),
                    r.priority,
                    h.route_match.headers.len(),
                    h.action.weighted_targets.iter().map(|t| t.weight).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("podinfo-a".to_string(), Some(10), 1, vec![30, 70]),
                ("podinfo-a2".to_string(), Some(11), 1, vec![30, 70]),
                ("podinfo-b".to_string(), Some(20), 0, vec![30, 70]),
            ]
        );
        assert_eq!(
            spec.routes[1]
                .http_route
                .as_ref()
                .unwrap()
                .route_match
                .headers[0],
            RouteHeader {
                name: "cookie".into(),
                header_match: Some(HeaderMatch {
                    suffix: Some("canary=always".into()),
                    ..HeaderMatch::default()
                })
            }
        );
        assert_eq!(routes_of_router(&spec, &names), Routes::weighted(30));
    }

    #[test]
    fn v1beta2_defaults_grpc_and_flaggers_retry_defaults() {
        let c = canary(
            PROVIDER_V1BETA2,
            json!({"service": {"port": 9898, "portName": "grpc-api",
                "retries": {"attempts": 0}}}),
        );
        let objects =
            build_objects(&c, SELECTOR, Routes::PRIMARY, AppMeshVersion::V1beta2).unwrap();
        let node = find(&objects, "VirtualNode", "podinfo-primary");
        assert_eq!(
            node["spec"],
            json!({
                "podSelector": {"matchLabels": {"app": "podinfo-primary"}},
                "listeners": [{"portMapping": {"port": 9898, "protocol": "grpc"}}],
                "serviceDiscovery": {"dns": {"hostname": "podinfo-primary.test.svc.cluster.local."}}
            })
        );
        let router = find(&objects, "VirtualRouter", "podinfo");
        assert_eq!(
            router["spec"]["routes"][0]["httpRoute"],
            json!({
                "match": {"prefix": "/"},
                "retryPolicy": {"perRetryTimeout": {"unit": "ms", "value": 250}, "maxRetries": 1,
                                "httpRetryEvents": ["gateway-error"]},
                "action": {"weightedTargets": [
                    {"virtualNodeRef": {"name": "podinfo-canary"}, "weight": 0},
                    {"virtualNodeRef": {"name": "podinfo-primary"}, "weight": 100}
                ]}
            })
        );
        assert_eq!(
            router["spec"]["listeners"][0]["portMapping"]["protocol"],
            "grpc"
        );
        // No hosts: no gateway annotations.
        assert!(
            find(&objects, "VirtualService", "podinfo")["metadata"]
                .get("annotations")
                .is_none()
        );
        assert!(node["metadata"]["annotations"].get("note").is_none());
    }

    #[test]
    fn v1beta2_release_leaves_a_node_for_the_target_behind_the_apex_service() {
        let c = mesh_canary(PROVIDER_V1BETA2, json!({}));
        let objects = released_objects(&c, SELECTOR, AppMeshVersion::V1beta2).unwrap();
        for (_, obj) in &objects {
            assert!(obj["metadata"].get("ownerReferences").is_none(), "{obj}");
        }
        let node = find(&objects, "VirtualNode", "podinfo");
        let mut want = flagger_node_v1beta2("podinfo", "podinfo");
        want["serviceDiscovery"]["dns"]["hostname"] = json!("podinfo.test.svc.cluster.local.");
        assert_eq!(node["spec"], want);
        assert!(is_released_node(node));
        let router = find(&objects, "VirtualRouter", "podinfo");
        assert_eq!(
            router["spec"],
            flagger_router_v1beta2(vec![flagger_route_v1beta2(
                "podinfo",
                None,
                json!(null),
                targets_v1beta2(&[("podinfo", 100)])
            )])
        );
        let service = find(&objects, "VirtualService", "podinfo");
        assert_eq!(
            service["metadata"]["annotations"]["gateway.appmesh.k8s.aws/expose"],
            "true"
        );
        assert_eq!(objects[0].0, VIRTUAL_NODE);
        // A spec that asks what App Mesh cannot do is still released.
        let sticky = mesh_canary(
            PROVIDER_V1BETA2,
            json!({"analysis": {"sessionAffinity": {"cookieName": "c"},
                "match": [{"queryParams": {"a": {"exact": "1"}}}]}}),
        );
        assert!(
            build_objects(&sticky, SELECTOR, Routes::PRIMARY, AppMeshVersion::V1beta2).is_err()
        );
        assert_eq!(
            released_objects(&sticky, SELECTOR, AppMeshVersion::V1beta2).unwrap(),
            objects
        );
        // An owned node is not a released one.
        let owned = build_objects(&c, SELECTOR, Routes::PRIMARY, AppMeshVersion::V1beta2).unwrap();
        assert!(!is_released_node(&owned[0].1));
        assert!(!is_released_node(&json!({"metadata": {"name": "podinfo"}})));
    }

    // ---- v1beta1: what Flagger's pkg/router/appmesh.go writes ----

    fn flagger_node_v1beta1(host: &str) -> serde_json::Value {
        json!({
            "meshName": "global",
            "listeners": [{"portMapping": {"port": 9898, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostName": host}},
            "backends": [
                {"virtualService": {"virtualServiceName": "backend.default"}},
                {"virtualService": {"virtualServiceName": ARN}}
            ],
            "logging": {"accessLog": {"file": {"path": "/dev/stdout"}}}
        })
    }

    fn flagger_route_v1beta1(
        name: &str,
        priority: Option<i64>,
        headers: serde_json::Value,
        targets: &[(&str, i64)],
    ) -> serde_json::Value {
        let mut m = json!({"prefix": "/api"});
        if headers != json!(null) {
            m["headers"] = headers;
        }
        let targets: Vec<serde_json::Value> = targets
            .iter()
            .map(|(n, w)| json!({"virtualNodeName": n, "weight": w}))
            .collect();
        let mut r = json!({"name": name, "http": {
            "match": m,
            "retryPolicy": {"perRetryTimeoutMillis": 5000, "maxRetries": 5,
                            "httpRetryEvents": ["gateway-error", "client-error"]},
            "action": {"weightedTargets": targets}
        }});
        if let Some(p) = priority {
            r["priority"] = json!(p);
        }
        r
    }

    fn flagger_service_v1beta1(router: &str, routes: Vec<serde_json::Value>) -> serde_json::Value {
        json!({
            "meshName": "global",
            "virtualRouter": {"name": router,
                "listeners": [{"portMapping": {"port": 9898, "protocol": "http"}}]},
            "routes": routes
        })
    }

    #[test]
    fn v1beta1_writes_what_flagger_writes_at_initialization() {
        let c = mesh_canary(PROVIDER, json!({}));
        let objects =
            build_objects(&c, SELECTOR, Routes::PRIMARY, AppMeshVersion::V1beta1).unwrap();
        let order: Vec<(&str, &str)> = objects
            .iter()
            .map(|(k, o)| (k.kind, o["metadata"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            order,
            [
                ("VirtualNode", "podinfo"),
                ("VirtualNode", "podinfo-primary"),
                ("VirtualNode", "podinfo-canary"),
                ("VirtualService", "podinfo.test"),
                ("VirtualService", "podinfo-canary.test"),
            ]
        );
        for (_, obj) in &objects {
            assert_eq!(obj["apiVersion"], "appmesh.k8s.aws/v1beta1");
            assert_eq!(obj["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        }
        // Flagger's apex node is found at the primary's address.
        assert_eq!(
            find(&objects, "VirtualNode", "podinfo")["spec"],
            flagger_node_v1beta1("podinfo-primary.test")
        );
        assert_eq!(
            find(&objects, "VirtualNode", "podinfo-primary")["spec"],
            flagger_node_v1beta1("podinfo-primary.test")
        );
        let canary_node = find(&objects, "VirtualNode", "podinfo-canary");
        assert_eq!(
            canary_node["spec"],
            flagger_node_v1beta1("podinfo-canary.test")
        );
        assert_eq!(canary_node["metadata"]["labels"]["team"], "web");
        assert_eq!(
            canary_node["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"],
            "disabled"
        );
        let apex = find(&objects, "VirtualService", "podinfo.test");
        assert_eq!(
            apex["spec"],
            flagger_service_v1beta1(
                "podinfo",
                vec![flagger_route_v1beta1(
                    "podinfo",
                    None,
                    json!(null),
                    &[("podinfo-canary", 0), ("podinfo-primary", 100)]
                )]
            )
        );
        assert_eq!(
            apex["metadata"]["annotations"]["gateway.appmesh.k8s.aws/domain"],
            "podinfo.example.com,*,"
        );
        let canary_service = find(&objects, "VirtualService", "podinfo-canary.test");
        assert_eq!(
            canary_service["spec"],
            flagger_service_v1beta1(
                "podinfo-canary",
                vec![flagger_route_v1beta1(
                    "podinfo-canary",
                    None,
                    json!(null),
                    &[("podinfo-canary", 100), ("podinfo-primary", 0)]
                )]
            )
        );
        assert!(canary_service["metadata"].get("annotations").is_none());
    }

    #[test]
    fn v1beta1_routes_at_each_weight_and_ab_testing_read_back() {
        let c = mesh_canary(PROVIDER, json!({}));
        let names = ServiceNames::of(&c);
        assert_eq!(AppMeshVersion::V1beta1.routing_name(&c), "podinfo.test");
        assert_eq!(AppMeshVersion::V1beta2.routing_name(&c), "podinfo");
        for w in [10, 50, 100, 0] {
            let obj =
                build_routing_object(&c, Routes::weighted(w), AppMeshVersion::V1beta1).unwrap();
            assert_eq!(obj["metadata"]["name"], "podinfo.test");
            let w64 = i64::from(w);
            assert_eq!(
                obj["spec"],
                flagger_service_v1beta1(
                    "podinfo",
                    vec![flagger_route_v1beta1(
                        "podinfo",
                        None,
                        json!(null),
                        &[("podinfo-canary", w64), ("podinfo-primary", 100 - w64)]
                    )]
                )
            );
            let spec: v1beta1::VirtualServiceSpec =
                serde_json::from_value(obj["spec"].clone()).unwrap();
            assert_eq!(routes_of_service(&spec, &names), Routes::weighted(w));
        }
        let c = mesh_canary(
            PROVIDER,
            json!({"analysis": {"iterations": 2, "match": [{"headers": {"x-user-type": {"exact": "test"}}}]}}),
        );
        let obj = build_routing_object(&c, ab(), AppMeshVersion::V1beta1).unwrap();
        assert_eq!(
            obj["spec"]["routes"],
            json!([
                flagger_route_v1beta1(
                    "podinfo-a",
                    Some(10),
                    json!([{"name": "x-user-type", "match": {"exact": "test"}}]),
                    &[("podinfo-canary", 100), ("podinfo-primary", 0)]
                ),
                flagger_route_v1beta1(
                    "podinfo-b",
                    Some(20),
                    json!(null),
                    &[("podinfo-primary", 100)]
                )
            ])
        );
        let spec: v1beta1::VirtualServiceSpec =
            serde_json::from_value(obj["spec"].clone()).unwrap();
        assert_eq!(routes_of_service(&spec, &names), ab());
    }

    #[test]
    fn v1beta1_release_points_the_apex_node_at_the_apex_service() {
        let c = mesh_canary(PROVIDER, json!({}));
        let objects = released_objects(&c, SELECTOR, AppMeshVersion::V1beta1).unwrap();
        assert_eq!(objects.len(), 2);
        let node = find(&objects, "VirtualNode", "podinfo");
        assert_eq!(node["spec"], flagger_node_v1beta1("podinfo.test"));
        assert!(node["metadata"].get("ownerReferences").is_none());
        let service = find(&objects, "VirtualService", "podinfo.test");
        assert!(service["metadata"].get("ownerReferences").is_none());
        assert_eq!(
            service["spec"]["routes"][0]["http"]["action"],
            json!({"weightedTargets": [{"virtualNodeName": "podinfo", "weight": 100}]})
        );
        let spec: v1beta1::VirtualServiceSpec =
            serde_json::from_value(service["spec"].clone()).unwrap();
        assert_eq!(
            routes_of_service(&spec, &ServiceNames::of(&c)),
            Routes::PRIMARY
        );
    }

    // ---- refusals and read-back edges ----

    fn refusal(c: &Canary, version: AppMeshVersion, routes: Routes) -> String {
        let e = build_routing_object(c, routes, version).unwrap_err();
        match &e {
            Error::Router { provider, message } => {
                assert_eq!(provider, version.provider(), "{e}");
                assert!(
                    message.contains(&format!("provider {}", version.provider())),
                    "{message}"
                );
                message.clone()
            }
            other => panic!("not a router refusal: {other}"),
        }
    }

    #[test]
    fn refuses_mirroring_and_istio_only_features() {
        for version in [AppMeshVersion::V1beta1, AppMeshVersion::V1beta2] {
            let p = version.provider();
            let mirrored = Routes {
                mirror: Some(50),
                ..Routes::PRIMARY
            };
            let m = refusal(&mesh_canary(p, json!({})), version, mirrored);
            assert!(m.contains("spec.analysis.mirror") && m.contains(p), "{m}");
            // Session affinity in the spec is refused by validation; the routes never carry it.
            let headers = mesh_canary(
                p,
                json!({"service": {"headers": {"request": {"set": {"x-a": "1"}}}}}),
            );
            let m = refusal(&headers, version, Routes::PRIMARY);
            assert!(m.contains("spec.service.headers") && m.contains(p), "{m}");
            let rewrite = mesh_canary(p, json!({"service": {"rewrite": {"uri": "/"}}}));
            let m = refusal(&rewrite, version, Routes::PRIMARY);
            assert!(m.contains("spec.service.rewrite"), "{m}");
        }
    }

    #[test]
    fn refuses_what_an_app_mesh_route_cannot_match() {
        let v = AppMeshVersion::V1beta2;
        let p = PROVIDER_V1BETA2;
        let query = mesh_canary(
            p,
            json!({"analysis": {"match": [{"queryParams": {"a": {"exact": "1"}}}]}}),
        );
        let m = refusal(&query, v, ab());
        assert!(
            m.contains("spec.analysis.match[0]") && m.contains("headers only"),
            "{m}"
        );
        let two_ways = mesh_canary(
            p,
            json!({"analysis": {"match": [{"headers": {"x-a": {"exact": "1", "prefix": "1"}}}]}}),
        );
        let m = refusal(&two_ways, v, ab());
        assert!(m.contains("spec.analysis.match[0].headers.x-a"), "{m}");
        let empty = mesh_canary(p, json!({"analysis": {"match": [{"headers": {}}]}}));
        let m = refusal(&empty, v, Routes::PRIMARY);
        assert!(
            m.contains("spec.analysis.match[0]") && m.contains("header"),
            "{m}"
        );
        let long = "x".repeat(51);
        let long_name = mesh_canary(
            p,
            json!({"analysis": {"match": [{"headers": {long: {"exact": "1"}}}]}}),
        );
        let m = refusal(&long_name, v, Routes::PRIMARY);
        assert!(m.contains("50"), "{m}");
        // A/B asked without a match.
        let m = refusal(&mesh_canary(p, json!({})), v, ab());
        assert!(m.contains("spec.analysis.match"), "{m}");
        // Route conditions other than one URI prefix.
        let exact_uri = mesh_canary(
            p,
            json!({"service": {"match": [{"uri": {"exact": "/api"}}]}}),
        );
        let m = refusal(&exact_uri, v, Routes::PRIMARY);
        assert!(m.contains("spec.service.match[0].uri"), "{m}");
        let method = mesh_canary(
            p,
            json!({"service": {"match": [{"uri": {"prefix": "/api"}, "method": {"exact": "GET"}}]}}),
        );
        let m = refusal(&method, v, Routes::PRIMARY);
        assert!(m.contains("spec.service.match[0]"), "{m}");
        let two = mesh_canary(
            p,
            json!({"service": {"match": [{"uri": {"prefix": "/a"}}, {"uri": {"prefix": "/b"}}]}}),
        );
        let m = refusal(&two, v, Routes::PRIMARY);
        assert!(m.contains("spec.service.match"), "{m}");
    }

    #[test]
    fn refuses_retry_events_named_ports_and_missing_meshes() {
        let bad_event = mesh_canary(
            PROVIDER_V1BETA2,
            json!({"service": {"retries": {"attempts": 2, "retryOn": "5xx"}}}),
        );
        let m = refusal(&bad_event, AppMeshVersion::V1beta2, Routes::PRIMARY);
        assert!(
            m.contains("spec.service.retries.retryOn") && m.contains("\"5xx\""),
            "{m}"
        );
        let named = mesh_canary(PROVIDER_V1BETA2, json!({"service": {"targetPort": "http"}}));
        let m = refusal(&named, AppMeshVersion::V1beta2, Routes::PRIMARY);
        assert!(
            m.contains("spec.service.targetPort") && m.contains("appmesh:v1beta2"),
            "{m}"
        );
        // v1beta1 listens on the service port, as Flagger: a named target port is fine there.
        let named = mesh_canary(PROVIDER, json!({"service": {"targetPort": "http"}}));
        assert!(build_routing_object(&named, Routes::PRIMARY, AppMeshVersion::V1beta1).is_ok());
        let no_mesh = canary(PROVIDER, json!({}));
        let m = refusal(&no_mesh, AppMeshVersion::V1beta1, Routes::PRIMARY);
        assert!(
            m.contains("spec.service.meshName") && m.contains("appmesh"),
            "{m}"
        );
        let timeout = canary(
            PROVIDER,
            json!({"service": {"port": 9898, "meshName": "global", "timeout": "5s"}}),
        );
        let m = refusal(&timeout, AppMeshVersion::V1beta1, Routes::PRIMARY);
        assert!(m.contains("spec.service.timeout"), "{m}");
        // v1beta2 has no mesh name to set: the namespace's mesh applies.
        let plain = canary(PROVIDER_V1BETA2, json!({}));
        assert!(build_routing_object(&plain, Routes::PRIMARY, AppMeshVersion::V1beta2).is_ok());
        // Spaces around the events are fine.
        let spaced = mesh_canary(
            PROVIDER_V1BETA2,
            json!({"service": {"retries": {"attempts": 2, "retryOn": "server-error, stream-error"}}}),
        );
        let obj = build_routing_object(&spaced, Routes::PRIMARY, AppMeshVersion::V1beta2).unwrap();
        assert_eq!(
            obj["spec"]["routes"][0]["httpRoute"]["retryPolicy"]["httpRetryEvents"],
            json!(["server-error", "stream-error"])
        );
    }

    #[test]
    fn reads_flaggers_routes_and_relative_weights() {
        let names = ServiceNames::of(&canary(PROVIDER_V1BETA2, json!({})));
        // Flagger's SetRoutes(60, 40) on a router it made.
        let spec: v1beta2::VirtualRouterSpec = serde_json::from_value(json!({
            "awsName": "podinfo_test", "meshRef": {"name": "global", "uid": "u"},
            "listeners": [{"portMapping": {"port": 9898, "protocol": "http"}}],
            "routes": [{"name": "podinfo", "httpRoute": {"match": {"prefix": "/"}, "action": {
                "weightedTargets": [
                    {"virtualNodeRef": {"name": "podinfo-canary"}, "weight": 40},
                    {"virtualNodeRef": {"name": "podinfo-primary"}, "weight": 60}
                ]}}}]
        }))
        .unwrap();
        assert_eq!(routes_of_router(&spec, &names), Routes::weighted(40));
        let mut relative = spec.clone();
        let targets = &mut relative.routes[0]
            .http_route
            .as_mut()
            .unwrap()
            .action
            .weighted_targets;
        targets[0].weight = 1;
        targets[1].weight = 3;
        assert_eq!(routes_of_router(&relative, &names), Routes::weighted(25));
        assert_eq!(
            routes_of_router(&v1beta2::VirtualRouterSpec::default(), &names),
            Routes::PRIMARY
        );
        // A weighted canary with a match, as Flagger leaves it: the route after the header
        // route on the primary, the header route weighted; not A/B routing.
        let spec: v1beta1::VirtualServiceSpec = serde_json::from_value(json!({
            "meshName": "global",
            "routes": [
                {"name": "podinfo-a", "priority": 10, "http": {"match": {"prefix": "/"}, "action": {
                    "weightedTargets": [{"virtualNodeName": "podinfo-canary", "weight": 30},
                                        {"virtualNodeName": "podinfo-primary", "weight": 70}]}}},
                {"name": "podinfo-b", "priority": 20, "http": {"match": {"prefix": "/"}, "action": {
                    "weightedTargets": [{"virtualNodeName": "podinfo-primary", "weight": 100}]}}}
            ]
        }))
        .unwrap();
        assert_eq!(routes_of_service(&spec, &names), Routes::PRIMARY);
    }

    #[test]
    fn gateway_annotations_need_hosts() {
        let none = canary(
            PROVIDER_V1BETA2,
            json!({"service": {"port": 9898, "timeout": "5s"}}),
        );
        assert!(gateway_annotations(&none).is_empty());
        let some = canary(
            PROVIDER_V1BETA2,
            json!({"service": {"port": 9898, "hosts": ["a.example.com"]}}),
        );
        assert_eq!(
            gateway_annotations(&some),
            BTreeMap::from([
                (GATEWAY_DOMAIN.to_string(), "a.example.com,".to_string()),
                (GATEWAY_EXPOSE.to_string(), "true".to_string()),
            ])
        );
    }
}
