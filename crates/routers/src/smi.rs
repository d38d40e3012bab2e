//! The `linkerd`, `smi:v1alpha2` and `smi:v1alpha3` providers: an SMI `TrafficSplit`
//! (`split.smi-spec.io`) named like the apex Service, splitting it between `<svc>-primary` and
//! `<svc>-canary` by weight.
//!
//! From v1alpha2 on, SMI weights are plain integers (v1alpha1 had resource quantities such as
//! `500m`); both versions fledge writes have the same `spec.service` and `spec.backends`.
//! `linkerd` writes v1alpha2, the version the Linkerd SMI extension stores. A TrafficSplit can
//! only weigh backends: A/B matching, mirroring and session affinity are refused (validation
//! reports them before a rollout starts).

use fledge_api::Canary;
use fledge_core::Routes;
use kube::Client;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::{
    Capabilities, PeerKind, RouteTarget, Router, ServiceNames, cannot, object_meta, release_apex,
};

/// The TrafficSplit API version a provider writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmiVersion {
    /// `split.smi-spec.io/v1alpha2`.
    V1alpha2,
    /// `split.smi-spec.io/v1alpha3`.
    V1alpha3,
}

impl SmiVersion {
    /// The TrafficSplit kind of this version.
    pub fn kind(self) -> PeerKind {
        PeerKind {
            group: "split.smi-spec.io",
            version: match self {
                SmiVersion::V1alpha2 => "v1alpha2",
                SmiVersion::V1alpha3 => "v1alpha3",
            },
            kind: "TrafficSplit",
            plural: "trafficsplits",
        }
    }
}

/// `TrafficSplit.spec`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficSplitSpec {
    /// The apex Service clients call.
    pub service: String,
    /// The Services it splits into.
    #[serde(default)]
    pub backends: Vec<TrafficSplitBackend>,
}

/// A backend and its weight.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficSplitBackend {
    /// Service name.
    pub service: String,
    /// Relative weight.
    pub weight: i64,
}

/// The TrafficSplit for `routes`, as JSON for server-side apply; an error for what a
/// TrafficSplit cannot do.
pub fn build_traffic_split(
    canary: &Canary,
    routes: Routes,
    version: SmiVersion,
    provider: &str,
) -> Result<serde_json::Value, Error> {
    if routes.ab_match {
        return Err(cannot(
            provider,
            "a TrafficSplit cannot route by header, cookie or query parameter, so A/B testing \
             (analysis.match) is not possible; use gatewayapi:v1 or istio",
        ));
    }
    if routes.mirror.is_some_and(|m| m > 0) {
        return Err(cannot(
            provider,
            "a TrafficSplit cannot mirror traffic (analysis.mirror); use gatewayapi:v1 or istio",
        ));
    }
    let names = ServiceNames::of(canary);
    let spec = TrafficSplitSpec {
        service: names.apex.clone(),
        backends: vec![
            TrafficSplitBackend {
                service: names.primary,
                weight: routes.primary.into(),
            },
            TrafficSplitBackend {
                service: names.canary,
                weight: routes.canary.into(),
            },
        ],
    };
    let mut obj = object_meta(&version.kind(), canary, &names.apex, true);
    obj["spec"] = serde_json::to_value(spec)?;
    Ok(obj)
}

/// The routes a TrafficSplit gives.
pub fn routes_of(spec: &TrafficSplitSpec, names: &ServiceNames) -> Routes {
    let weight = |name: &str| {
        spec.backends
            .iter()
            .find(|b| b.service == name)
            .map_or(0, |b| b.weight.max(0))
    };
    let (p, c) = (weight(&names.primary), weight(&names.canary));
    if p + c == 0 {
        return Routes::PRIMARY;
    }
    let canary = (c * 100 + (p + c) / 2) / (p + c);
    Routes::weighted(i32::try_from(canary).unwrap_or(0))
}

/// Routes through an SMI TrafficSplit.
pub struct SmiRouter {
    client: Client,
    version: SmiVersion,
    provider: &'static str,
}

impl SmiRouter {
    /// A router writing TrafficSplits of `version` for `provider`.
    pub fn new(client: Client, version: SmiVersion, provider: &'static str) -> Self {
        SmiRouter {
            client,
            version,
            provider,
        }
    }
}

#[async_trait::async_trait]
impl Router for SmiRouter {
    /// `linkerd`, `smi:v1alpha2` or `smi:v1alpha3`.
    fn provider(&self) -> &'static str {
        self.provider
    }

    fn routing_kind(&self) -> PeerKind {
        self.version.kind()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_weights: true,
            ..Capabilities::default()
        }
    }

    /// Applies the TrafficSplit for `routes`.
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        let ts = build_traffic_split(t.canary, routes, self.version, self.provider)?;
        self.version
            .kind()
            .apply(&self.client, t.namespace(), self.provider, &ts)
            .await
    }

    /// The routes the TrafficSplit gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let spec: Option<TrafficSplitSpec> = self
            .version
            .kind()
            .read_spec(&self.client, t, self.provider)
            .await?;
        Ok(spec.map(|s| routes_of(&s, &ServiceNames::of(t.canary))))
    }

    /// Points the apex Service at the target and deletes the TrafficSplit: the mesh then sends
    /// the apex Service's traffic to its own endpoints, the target's pods.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        release_apex(&self.client, t).await?;
        self.version
            .kind()
            .delete(
                &self.client,
                t.namespace(),
                t.canary.spec.apex_service_name(),
            )
            .await
    }
}
