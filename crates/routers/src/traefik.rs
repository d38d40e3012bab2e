//! The `traefik` provider: a `TraefikService` (`traefik.io/v1alpha1`) named like the apex
//! Service, which the user's `IngressRoute` names as its service (`kind: TraefikService`).
//!
//! - Weighted routing: `spec.weighted.services` lists `<svc>-primary` with the primary's weight
//!   and, while the canary gets traffic, `<svc>-canary` with the canary's (Traefik ignores a
//!   service of weight 0, so the canary is left out rather than listed at 0).
//! - Session affinity (`analysis.sessionAffinity`): `spec.weighted.sticky.cookie` named
//!   `cookieName`. Traefik's weighted round robin sets the cookie on the first answer to a client
//!   and sends every later request carrying it to the same service, so a client that got the
//!   canary stays on it while the canary is listed, and one that got the primary stays on the
//!   primary (one cookie for both: `primaryCookieName` has no meaning here and is refused by
//!   validation). Once the canary is no longer listed its cookie matches nothing and the client
//!   is balanced afresh.
//! - Mirroring (blue/green with `mirror`): `spec.mirroring` with the primary as the main service
//!   and the canary as a mirror receiving `mirrorWeight` percent of the requests.
//! - A/B testing cannot be expressed: a TraefikService has no request matching (that lives in
//!   the IngressRoute, which belongs to the user), so `analysis.match` is refused.
//!
//! Everything the IngressRoute carries (hosts, entry points, middlewares, TLS) stays the user's;
//! fledge writes only the TraefikService.

use fledge_api::{Canary, SessionAffinity};
use fledge_core::Routes;
use kube::Client;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::{
    Capabilities, PeerKind, RouteTarget, Router, ServiceNames, cannot, object_meta, release_apex,
};

/// The provider name.
pub const PROVIDER: &str = "traefik";

/// The kind fledge writes.
pub const KIND: PeerKind = PeerKind {
    group: "traefik.io",
    version: "v1alpha1",
    kind: "TraefikService",
    plural: "traefikservices",
    namespaced: true,
};

/// `TraefikService.spec`, as much of it as fledge writes and reads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TraefikServiceSpec {
    /// Weighted round robin over services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted: Option<Weighted>,
    /// A main service whose requests are copied to mirrors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirroring: Option<Mirroring>,
}

/// `spec.weighted`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Weighted {
    /// The services and their weights.
    #[serde(default)]
    pub services: Vec<WeightedService>,
    /// Sticky sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
}

/// A Kubernetes Service of a weighted round robin.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct WeightedService {
    /// Service name (in the TraefikService's namespace).
    pub name: String,
    /// Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Relative weight; 1 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// `sticky`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Sticky {
    /// The cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<StickyCookie>,
}

/// `sticky.cookie`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StickyCookie {
    /// Cookie name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Lifetime in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i32>,
    /// `Path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `HttpOnly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    /// `Secure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// `SameSite`: `none`, `lax` or `strict` (lower case in Traefik's CRD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
}

/// `spec.mirroring`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirroring {
    /// The main service, which answers.
    pub name: String,
    /// Its port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Where copies go.
    #[serde(default)]
    pub mirrors: Vec<Mirror>,
}

/// A mirror.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirror {
    /// Service name.
    pub name: String,
    /// Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Percent of the requests copied; 0 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
}

/// The sticky cookie for `analysis.sessionAffinity`.
fn sticky(sa: &SessionAffinity) -> Sticky {
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    Sticky {
        cookie: Some(StickyCookie {
            name: non_empty(&sa.cookie_name),
            max_age: Some(
                sa.max_age
                    .filter(|a| *a > 0)
                    .unwrap_or(fledge_api::defaults::SESSION_AFFINITY_MAX_AGE),
            ),
            path: non_empty(&sa.path),
            domain: non_empty(&sa.domain),
            http_only: sa.http_only,
            secure: sa.secure,
            same_site: non_empty(&sa.same_site).map(|s| s.to_ascii_lowercase()),
        }),
    }
}

/// The TraefikService spec for `routes`; an error for what a TraefikService cannot do.
pub fn build_spec(canary: &Canary, routes: Routes) -> Result<TraefikServiceSpec, Error> {
    if routes.ab_match {
        return Err(cannot(
            PROVIDER,
            "a TraefikService cannot route by header, cookie or query parameter, so A/B testing \
             (spec.analysis.match) is not possible with provider traefik; use gatewayapi:v1 \
             (Traefik serves HTTPRoutes too)",
        ));
    }
    let names = ServiceNames::of(canary);
    let port = Some(canary.spec.service.port);
    if let Some(percent) = routes.mirror.filter(|m| *m > 0) {
        if routes.canary > 0 {
            return Err(cannot(
                PROVIDER,
                format!(
                    "cannot mirror traffic while {}% goes to the canary: a TraefikService \
                     mirrors from one main service",
                    routes.canary
                ),
            ));
        }
        return Ok(TraefikServiceSpec {
            weighted: None,
            mirroring: Some(Mirroring {
                name: names.primary,
                port,
                mirrors: vec![Mirror {
                    name: names.canary,
                    port,
                    percent: Some(percent.min(100)),
                }],
            }),
        });
    }
    let mut services = vec![WeightedService {
        name: names.primary,
        port,
        weight: Some(routes.primary),
    }];
    if routes.canary > 0 {
        services.push(WeightedService {
            name: names.canary,
            port,
            weight: Some(routes.canary),
        });
    }
    let analysis = canary.spec.analysis_or_default();
    Ok(TraefikServiceSpec {
        weighted: Some(Weighted {
            services,
            sticky: analysis.session_affinity.as_ref().map(sticky),
        }),
        mirroring: None,
    })
}

/// The TraefikService for `routes`, as JSON for server-side apply.
pub fn build_traefik_service(canary: &Canary, routes: Routes) -> Result<serde_json::Value, Error> {
    let spec = build_spec(canary, routes)?;
    let mut obj = object_meta(&KIND, canary, canary.spec.apex_service_name(), true);
    obj["spec"] = serde_json::to_value(spec)?;
    Ok(obj)
}

/// The TraefikService left when the Canary is deleted with `revertOnDeletion`: everything to
/// the apex Service (which then selects the target's pods), no owner reference, so the user's
/// IngressRoute keeps serving.
pub fn build_released_traefik_service(canary: &Canary) -> Result<serde_json::Value, Error> {
    let names = ServiceNames::of(canary);
    let spec = TraefikServiceSpec {
        weighted: Some(Weighted {
            services: vec![WeightedService {
                name: names.apex,
                port: Some(canary.spec.service.port),
                weight: Some(100),
            }],
            sticky: None,
        }),
        mirroring: None,
    };
    let mut obj = object_meta(&KIND, canary, canary.spec.apex_service_name(), false);
    obj["spec"] = serde_json::to_value(spec)?;
    Ok(obj)
}

/// The routes a TraefikService gives: the weights of the primary and the canary (a service not
/// listed weighs 0), or a mirror of the primary to the canary.
pub fn routes_of(spec: &TraefikServiceSpec, names: &ServiceNames) -> Routes {
    if let Some(m) = &spec.mirroring {
        let mirror = m
            .mirrors
            .iter()
            .find(|x| x.name == names.canary)
            .map(|x| x.percent.unwrap_or(0));
        let canary_answers = m.name == names.canary;
        return Routes {
            mirror: mirror.filter(|p| *p > 0),
            ..Routes::weighted(if canary_answers { 100 } else { 0 })
        };
    }
    let services = spec
        .weighted
        .as_ref()
        .map(|w| w.services.as_slice())
        .unwrap_or_default();
    let weight = |name: &str| -> i32 {
        services
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.weight.unwrap_or(1).max(0))
            .sum()
    };
    let (p, c) = (weight(&names.primary), weight(&names.canary));
    if p + c == 0 {
        // Released (everything to the apex) or empty: the primary serves.
        return Routes::PRIMARY;
    }
    Routes::weighted((c * 100 + (p + c) / 2) / (p + c))
}

/// Routes through a Traefik TraefikService.
pub struct TraefikRouter {
    client: Client,
}

impl TraefikRouter {
    /// A router using `client`.
    pub fn new(client: Client) -> Self {
        TraefikRouter { client }
    }
}

#[async_trait::async_trait]
impl Router for TraefikRouter {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn routing_kind(&self) -> PeerKind {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_weights: true,
            mirroring: true,
            session_affinity: true,
            http_match: false,
        }
    }

    /// Applies the TraefikService for `routes`.
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        let obj = build_traefik_service(t.canary, routes)?;
        KIND.apply(&self.client, t.namespace(), PROVIDER, &obj)
            .await
    }

    /// The routes the TraefikService gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let spec: Option<TraefikServiceSpec> = KIND.read_spec(&self.client, t, PROVIDER).await?;
        Ok(spec.map(|s| routes_of(&s, &ServiceNames::of(t.canary))))
    }

    /// Points the apex Service at the target and the TraefikService at the apex Service; both
    /// stay once the Canary is gone.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        release_apex(&self.client, t).await?;
        let obj = build_released_traefik_service(t.canary)?;
        KIND.apply(&self.client, t.namespace(), PROVIDER, &obj)
            .await
    }
}
