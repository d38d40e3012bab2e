//! The `istio` provider: a `VirtualService` named like the apex Service and two
//! `DestinationRule`s, `<svc>-primary` and `<svc>-canary` (`networking.istio.io/v1beta1`, served
//! by every Istio since 1.5).
//!
//! The VirtualService answers for `spec.service.hosts` and the apex Service (none for a
//! `delegation` VirtualService) on `spec.service.gateways`. Its HTTP routes, in order (Istio
//! takes the first that matches):
//!
//! 1. `ab-testing` (A/B testing, while the engine routes by match): `analysis.match`, merged
//!    with `spec.service.match`, to the canary only;
//! 2. `canary-session` and `primary-session` (session affinity, while the canary gets traffic):
//!    requests carrying the canary (primary) cookie to the canary (primary);
//! 3. `split`: `spec.service.match` to the primary and the canary by weight, each destination
//!    setting its session cookie on responses, with `mirror` and `mirrorPercentage` while
//!    mirroring.
//!
//! Every route carries `retries`, `timeout`, `corsPolicy`, `headers` and `rewrite` from
//! `spec.service`. The DestinationRules carry `spec.service.trafficPolicy`. Durations are
//! written in seconds (`90s`, `1.5s`), the only form Istio's protobuf JSON accepts.

use std::collections::BTreeMap;

use fledge_api::{Canary, CanaryStatus, HttpMatchRequest, StringMatch};
use fledge_core::Routes;
use kube::Client;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::{
    Affinity, Capabilities, Cookie, PeerKind, RouteTarget, Router, ServiceNames, cannot,
    merge_matches, object_meta, parse_duration, release_apex, routes_in_status, string_match_regex,
};

const PROVIDER: &str = "istio";

/// `networking.istio.io/v1beta1` VirtualService.
pub const VIRTUAL_SERVICE: PeerKind = PeerKind {
    group: "networking.istio.io",
    version: "v1beta1",
    kind: "VirtualService",
    plural: "virtualservices",
    namespaced: true,
};

/// `networking.istio.io/v1beta1` DestinationRule.
pub const DESTINATION_RULE: PeerKind = PeerKind {
    group: "networking.istio.io",
    version: "v1beta1",
    kind: "DestinationRule",
    plural: "destinationrules",
    namespaced: true,
};

/// Route names.
pub const AB_ROUTE: &str = "ab-testing";
/// Route names.
pub const CANARY_SESSION_ROUTE: &str = "canary-session";
/// Route names.
pub const PRIMARY_SESSION_ROUTE: &str = "primary-session";
/// Route names.
pub const SPLIT_ROUTE: &str = "split";

// ---- the VirtualService, as much of it as fledge writes -----------------------------------

/// `VirtualService.spec`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct VirtualServiceSpec {
    /// Hosts routed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Gateways (and `mesh`) the routes apply to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// HTTP routes, first match wins.
    #[serde(default)]
    pub http: Vec<IstioHttpRoute>,
}

/// An HTTP route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IstioHttpRoute {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions, any of which selects the route.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatchRequest>,
    /// Weighted destinations.
    #[serde(default)]
    pub route: Vec<WeightedDestination>,
    /// Rewrite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<IstioRewrite>,
    /// Timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<IstioRetries>,
    /// Where copies go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Share of requests copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// CORS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<IstioCorsPolicy>,
    /// Header operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<IstioHeaders>,
}

/// A destination and its weight.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct WeightedDestination {
    /// The destination.
    pub destination: Destination,
    /// Percent of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Header operations for this destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<IstioHeaders>,
}

/// A destination Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Destination {
    /// Service host name.
    pub host: String,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// A port number.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PortSelector {
    /// The number.
    pub number: i32,
}

/// A percentage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Percent {
    /// 0 to 100.
    pub value: f64,
}

/// Retries.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IstioRetries {
    /// Retries at most (0 disables Istio's default retries).
    pub attempts: i32,
    /// Timeout of each try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    /// Conditions that trigger a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
}

/// A rewrite.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct IstioRewrite {
    /// New URI (prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// New authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

/// Header operations on requests and responses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct IstioHeaders {
    /// Request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<IstioHeaderOps>,
    /// Response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<IstioHeaderOps>,
}

/// Header operations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct IstioHeaderOps {
    /// Overwrite.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// CORS, as Istio's current API has it (origins as string matches).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IstioCorsPolicy {
    /// Allowed origins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    /// Allowed methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Allowed headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Exposed headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// Preflight cache time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Credentials allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
}

// ---- building ---------------------------------------------------------------------------

/// The VirtualService that routes as `routes` says, as JSON for server-side apply.
pub fn build_virtual_service(
    canary: &Canary,
    status: &CanaryStatus,
    routes: Routes,
) -> Result<serde_json::Value, Error> {
    let spec = build_spec(canary, status, routes)?;
    vs_object(canary, &spec, true)
}

/// The VirtualService left when the Canary is deleted with `revertOnDeletion`: one route to
/// the apex Service, no owner reference.
pub fn build_released_virtual_service(canary: &Canary) -> Result<serde_json::Value, Error> {
    let shared = Shared::new(canary)?;
    let names = ServiceNames::of(canary);
    let route = shared.route(
        SPLIT_ROUTE,
        shared.service_matches.clone(),
        vec![shared.destination(&names.apex, None, None)],
    );
    vs_object(canary, &shared.spec(vec![route]), false)
}

fn vs_object(
    canary: &Canary,
    spec: &VirtualServiceSpec,
    owned: bool,
) -> Result<serde_json::Value, Error> {
    let mut obj = object_meta(
        &VIRTUAL_SERVICE,
        canary,
        canary.spec.apex_service_name(),
        owned,
    );
    obj["spec"] = serde_json::to_value(spec)?;
    Ok(obj)
}

/// The DestinationRules `<svc>-primary` and `<svc>-canary`, with `spec.service.trafficPolicy`.
pub fn build_destination_rules(canary: &Canary) -> Result<[serde_json::Value; 2], Error> {
    let names = ServiceNames::of(canary);
    let policy = canary
        .spec
        .service
        .traffic_policy
        .as_ref()
        .map(serde_json::to_value)
        .transpose()?;
    let rule = |host: &str| {
        let mut obj = object_meta(&DESTINATION_RULE, canary, host, true);
        obj["spec"] = serde_json::json!({"host": host});
        if let Some(p) = &policy {
            obj["spec"]["trafficPolicy"] = p.clone();
        }
        obj
    };
    Ok([rule(&names.primary), rule(&names.canary)])
}

/// The spec of [`build_virtual_service`].
pub fn build_spec(
    canary: &Canary,
    status: &CanaryStatus,
    routes: Routes,
) -> Result<VirtualServiceSpec, Error> {
    let shared = Shared::new(canary)?;
    let names = ServiceNames::of(canary);
    let affinity = Affinity::of(canary, status, &routes);
    let service_match = canary.spec.service.r#match.clone().unwrap_or_default();
    let mut http = Vec::new();
    if routes.ab_match {
        let ab = crate::analysis_match(canary);
        if ab.is_empty() {
            return Err(cannot(
                PROVIDER,
                "A/B routing was asked for but spec.analysis.match is empty",
            ));
        }
        http.push(shared.route(
            AB_ROUTE,
            istio_matches(&merge_matches(&ab, &service_match)),
            vec![shared.destination(&names.canary, Some(100), None)],
        ));
    }
    for (name, cookie, host) in [
        (CANARY_SESSION_ROUTE, &affinity.canary, &names.canary),
        (PRIMARY_SESSION_ROUTE, &affinity.primary, &names.primary),
    ] {
        if let Some(cookie) = cookie {
            http.push(shared.route(
                name,
                istio_matches(&merge_matches(&[cookie_match(cookie)], &service_match)),
                vec![shared.destination(host, Some(100), None)],
            ));
        }
    }
    let canary_cookie = affinity.canary.as_ref().map(|c| affinity.set_cookie(c));
    let mut split = shared.route(
        SPLIT_ROUTE,
        shared.service_matches.clone(),
        vec![
            shared.destination(
                &names.primary,
                Some(routes.primary),
                affinity.primary_set_cookie(),
            ),
            shared.destination(&names.canary, Some(routes.canary), canary_cookie),
        ],
    );
    if let Some(percent) = routes.mirror.filter(|m| *m > 0) {
        split.mirror = Some(Destination {
            host: names.canary.clone(),
            port: Some(PortSelector {
                number: canary.spec.service.port,
            }),
        });
        split.mirror_percentage = Some(Percent {
            value: f64::from(percent),
        });
    }
    http.push(split);
    Ok(shared.spec(http))
}

fn cookie_match(cookie: &Cookie) -> HttpMatchRequest {
    HttpMatchRequest {
        headers: Some(BTreeMap::from([(
            "cookie".to_string(),
            StringMatch {
                regex: Some(cookie.header_regex()),
                ..Default::default()
            },
        )])),
        ..Default::default()
    }
}

/// Matches as Istio takes them: header names in lower case, suffix matches as expressions
/// (Istio's string match has exact, prefix and regex only).
pub fn istio_matches(list: &[HttpMatchRequest]) -> Vec<HttpMatchRequest> {
    let sm = |m: &StringMatch| -> StringMatch {
        if m.suffix.is_some() {
            StringMatch {
                regex: Some(string_match_regex(m)),
                ..Default::default()
            }
        } else {
            m.clone()
        }
    };
    let map = |m: &Option<BTreeMap<String, StringMatch>>, lower: bool| {
        m.as_ref().map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        if lower {
                            k.to_ascii_lowercase()
                        } else {
                            k.clone()
                        },
                        sm(v),
                    )
                })
                .collect()
        })
    };
    list.iter()
        .map(|m| HttpMatchRequest {
            uri: m.uri.as_ref().map(sm),
            scheme: m.scheme.as_ref().map(sm),
            method: m.method.as_ref().map(sm),
            authority: m.authority.as_ref().map(sm),
            headers: map(&m.headers, true),
            query_params: map(&m.query_params, false),
            without_headers: map(&m.without_headers, true),
            ..m.clone()
        })
        .collect()
}

/// A duration in seconds, as Istio's protobuf JSON wants it (`90s`, `1.5s`).
pub fn istio_duration(field: &str, value: &str) -> Result<String, Error> {
    let d = parse_duration(PROVIDER, field, value)?;
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    Ok(if nanos == 0 {
        format!("{secs}s")
    } else {
        let frac = format!("{nanos:09}");
        format!("{secs}.{}s", frac.trim_end_matches('0'))
    })
}

/// What every route shares, built once.
struct Shared<'a> {
    canary: &'a Canary,
    service_matches: Vec<HttpMatchRequest>,
    rewrite: Option<IstioRewrite>,
    timeout: Option<String>,
    retries: Option<IstioRetries>,
    cors: Option<IstioCorsPolicy>,
    headers: Option<IstioHeaders>,
}

impl<'a> Shared<'a> {
    fn new(canary: &'a Canary) -> Result<Self, Error> {
        let svc = &canary.spec.service;
        let opt_duration = |field: &str, v: &Option<String>| -> Result<Option<String>, Error> {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| istio_duration(field, s))
                .transpose()
        };
        let retries = match &svc.retries {
            None => None,
            Some(r) => Some(IstioRetries {
                attempts: r.attempts,
                per_try_timeout: opt_duration(
                    "spec.service.retries.perTryTimeout",
                    &r.per_try_timeout,
                )?,
                retry_on: r.retry_on.clone().filter(|s| !s.is_empty()),
            }),
        };
        let cors = match &svc.cors_policy {
            None => None,
            Some(c) => {
                let mut origins: Vec<StringMatch> = c
                    .allow_origin
                    .iter()
                    .flatten()
                    .map(|o| StringMatch {
                        exact: Some(o.clone()),
                        ..Default::default()
                    })
                    .collect();
                origins.extend(c.allow_origins.iter().flatten().map(|m| {
                    if m.suffix.is_some() {
                        StringMatch {
                            regex: Some(string_match_regex(m)),
                            ..Default::default()
                        }
                    } else {
                        m.clone()
                    }
                }));
                Some(IstioCorsPolicy {
                    allow_origins: origins,
                    allow_methods: c.allow_methods.clone().unwrap_or_default(),
                    allow_headers: c.allow_headers.clone().unwrap_or_default(),
                    expose_headers: c.expose_headers.clone().unwrap_or_default(),
                    max_age: opt_duration("spec.service.corsPolicy.maxAge", &c.max_age)?,
                    allow_credentials: c.allow_credentials,
                })
            }
        };
        let ops = |op: &Option<fledge_api::HeaderOperation>| {
            op.as_ref()
                .map(|o| IstioHeaderOps {
                    set: o.set.clone().unwrap_or_default(),
                    add: o.add.clone().unwrap_or_default(),
                    remove: o.remove.clone().unwrap_or_default(),
                })
                .filter(|o| !(o.set.is_empty() && o.add.is_empty() && o.remove.is_empty()))
        };
        let headers = svc
            .headers
            .as_ref()
            .map(|h| IstioHeaders {
                request: ops(&h.request),
                response: ops(&h.response),
            })
            .filter(|h| h.request.is_some() || h.response.is_some());
        let rewrite = svc
            .rewrite
            .as_ref()
            .map(|r| IstioRewrite {
                uri: r.uri.clone().filter(|s| !s.is_empty()),
                authority: r.authority.clone().filter(|s| !s.is_empty()),
            })
            .filter(|r| r.uri.is_some() || r.authority.is_some());
        Ok(Shared {
            canary,
            service_matches: istio_matches(svc.r#match.as_deref().unwrap_or_default()),
            rewrite,
            timeout: opt_duration("spec.service.timeout", &svc.timeout)?,
            retries,
            cors,
            headers,
        })
    }

    fn spec(&self, http: Vec<IstioHttpRoute>) -> VirtualServiceSpec {
        let svc = &self.canary.spec.service;
        if svc.delegation == Some(true) {
            // A delegate VirtualService names no hosts and no gateways.
            return VirtualServiceSpec {
                http,
                ..Default::default()
            };
        }
        let apex = self.canary.spec.apex_service_name().to_string();
        let mut hosts: Vec<String> = svc.hosts.clone().unwrap_or_default();
        if !hosts.contains(&apex) {
            hosts.push(apex);
        }
        VirtualServiceSpec {
            hosts,
            gateways: svc.gateways.clone().unwrap_or_default(),
            http,
        }
    }

    fn route(
        &self,
        name: &str,
        matches: Vec<HttpMatchRequest>,
        route: Vec<WeightedDestination>,
    ) -> IstioHttpRoute {
        IstioHttpRoute {
            name: Some(name.into()),
            matches,
            route,
            rewrite: self.rewrite.clone(),
            timeout: self.timeout.clone(),
            retries: self.retries.clone(),
            mirror: None,
            mirror_percentage: None,
            cors_policy: self.cors.clone(),
            headers: self.headers.clone(),
        }
    }

    fn destination(
        &self,
        host: &str,
        weight: Option<i32>,
        set_cookie: Option<String>,
    ) -> WeightedDestination {
        WeightedDestination {
            destination: Destination {
                host: host.into(),
                port: Some(PortSelector {
                    number: self.canary.spec.service.port,
                }),
            },
            weight,
            headers: set_cookie.map(|c| IstioHeaders {
                request: None,
                response: Some(IstioHeaderOps {
                    add: BTreeMap::from([("Set-Cookie".to_string(), c)]),
                    ..Default::default()
                }),
            }),
        }
    }
}

// ---- reading back -----------------------------------------------------------------------

/// The routes a VirtualService gives: the weights of the route with both the primary and the
/// canary, its mirror, and whether a route other than the session's sends matching requests to
/// the canary only.
pub fn routes_of(spec: &VirtualServiceSpec, names: &ServiceNames) -> Routes {
    let weight = |r: &IstioHttpRoute, host: &str| -> Option<i32> {
        r.route
            .iter()
            .find(|d| d.destination.host == host)
            .map(|d| d.weight.unwrap_or(0).max(0))
    };
    let Some((split, p, c)) = spec
        .http
        .iter()
        .find_map(|r| Some((r, weight(r, &names.primary)?, weight(r, &names.canary)?)))
    else {
        return Routes::PRIMARY;
    };
    let canary = if p + c == 0 {
        0
    } else {
        (c * 100 + (p + c) / 2) / (p + c)
    };
    let mirror = split
        .mirror
        .as_ref()
        .filter(|m| m.host == names.canary)
        .map(|_| {
            split
                .mirror_percentage
                .as_ref()
                .map_or(100, |p| p.value.round() as i32)
        });
    let ab_match = spec.http.iter().any(|r| {
        !std::ptr::eq(r, split)
            && r.name.as_deref() != Some(CANARY_SESSION_ROUTE)
            && !r.matches.is_empty()
            && !r.route.is_empty()
            && r.route.iter().all(|d| d.destination.host == names.canary)
    });
    Routes {
        mirror,
        ab_match,
        ..Routes::weighted(canary)
    }
}

// ---- the router -------------------------------------------------------------------------

/// Routes through an Istio VirtualService.
pub struct IstioRouter {
    client: Client,
}

impl IstioRouter {
    /// A router using `client`.
    pub fn new(client: Client) -> Self {
        IstioRouter { client }
    }
}

#[async_trait::async_trait]
impl Router for IstioRouter {
    /// Applies the DestinationRules (they depend on the spec only) and the VirtualService.
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn routing_kind(&self) -> PeerKind {
        VIRTUAL_SERVICE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_weights: true,
            mirroring: true,
            http_match: true,
            session_affinity: true,
        }
    }

    async fn ensure(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        let routes = routes_in_status(t.canary, t.status);
        let vs = build_virtual_service(t.canary, t.status, routes)?;
        for dr in build_destination_rules(t.canary)? {
            DESTINATION_RULE
                .apply(&self.client, t.namespace(), PROVIDER, &dr)
                .await?;
        }
        VIRTUAL_SERVICE
            .apply(&self.client, t.namespace(), PROVIDER, &vs)
            .await
    }

    /// Applies the VirtualService for `routes` (one API call per traffic step).
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        let vs = build_virtual_service(t.canary, t.status, routes)?;
        VIRTUAL_SERVICE
            .apply(&self.client, t.namespace(), PROVIDER, &vs)
            .await
    }

    /// The routes the VirtualService gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let spec: Option<VirtualServiceSpec> =
            VIRTUAL_SERVICE.read_spec(&self.client, t, PROVIDER).await?;
        Ok(spec.map(|s| routes_of(&s, &ServiceNames::of(t.canary))))
    }

    /// Points the apex Service at the target and the VirtualService at the apex Service; both
    /// stay once the Canary is gone (the DestinationRules go with it).
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        release_apex(&self.client, t).await?;
        let vs = build_released_virtual_service(t.canary)?;
        VIRTUAL_SERVICE
            .apply(&self.client, t.namespace(), PROVIDER, &vs)
            .await
    }
}
