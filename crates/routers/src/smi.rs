//! The `linkerd`, `osm`, `smi:v1alpha1`, `smi:v1alpha2` and `smi:v1alpha3` providers: an SMI
//! `TrafficSplit` (`split.smi-spec.io`) named like the apex Service, splitting it between
//! `<svc>-canary` and `<svc>-primary` by weight (listed in that order, as Flagger lists them).
//!
//! From v1alpha2 on, SMI weights are plain integers; v1alpha1 has resource quantities, which
//! fledge writes as Flagger does (`"100"`, `"0"`) and reads in any form (`500m`, `1k`, a plain
//! number). Every version has the same `spec.service` and `spec.backends`. `linkerd` and `osm`
//! write v1alpha2, the version the Linkerd SMI extension and Open Service Mesh store. A
//! TrafficSplit can only weigh backends: A/B matching, mirroring and session affinity are
//! refused (validation reports them before a rollout starts).
//!
//! `spec.service` is the apex Service, also when `spec.service.hosts` is set (Flagger writes the
//! first host there, which names no Service and so leaves the split without effect).

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
    /// `split.smi-spec.io/v1alpha1`: weights are resource quantities.
    V1alpha1,
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
                SmiVersion::V1alpha1 => "v1alpha1",
                SmiVersion::V1alpha2 => "v1alpha2",
                SmiVersion::V1alpha3 => "v1alpha3",
            },
            kind: "TrafficSplit",
            plural: "trafficsplits",
            namespaced: true,
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TrafficSplitBackend {
    /// Service name.
    pub service: String,
    /// Relative weight.
    pub weight: Weight,
}

/// A backend's weight: an integer (v1alpha2 on), or a resource quantity (v1alpha1).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum Weight {
    /// A plain number.
    Int(i64),
    /// A resource quantity such as `100` or `500m`.
    Quantity(String),
}

impl Weight {
    /// The weight of `percent` in `version`'s form.
    fn of(percent: i32, version: SmiVersion) -> Weight {
        match version {
            SmiVersion::V1alpha1 => Weight::Quantity(percent.to_string()),
            _ => Weight::Int(percent.into()),
        }
    }

    /// The weight in thousandths (`500m` is 500, `1` is 1000); 0 for a negative weight or a
    /// quantity that does not parse.
    pub fn milli(&self) -> i64 {
        match self {
            Weight::Int(n) => n.max(&0).saturating_mul(1000),
            Weight::Quantity(q) => quantity_milli(q).unwrap_or(0).max(0),
        }
    }
}

/// A Kubernetes resource quantity in thousandths: a decimal number with an optional decimal
/// (`m`, `k`, `M`, `G`, `T`) or binary (`Ki`, `Mi`, `Gi`, `Ti`) suffix, or an exponent (`1e3`).
fn quantity_milli(q: &str) -> Option<i64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    let milli = (number * factor * 1000.0).round();
    // Saturating: a weight beyond i64 is as good as all of the traffic.
    Some(milli as i64)
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
            format!(
                "a TrafficSplit cannot route by header, cookie or query parameter, so A/B \
                 testing (spec.analysis.match) is not possible with provider {provider}; remove \
                 analysis.match, or use gatewayapi:v1 or istio"
            ),
        ));
    }
    if routes.mirror.is_some_and(|m| m > 0) {
        return Err(cannot(
            provider,
            format!(
                "a TrafficSplit cannot mirror traffic (spec.analysis.mirror) with provider \
                 {provider}; remove analysis.mirror, or use gatewayapi:v1 or istio"
            ),
        ));
    }
    let names = ServiceNames::of(canary);
    let spec = TrafficSplitSpec {
        service: names.apex.clone(),
        backends: vec![
            TrafficSplitBackend {
                service: names.canary,
                weight: Weight::of(routes.canary, version),
            },
            TrafficSplitBackend {
                service: names.primary,
                weight: Weight::of(routes.primary, version),
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
            .map_or(0, |b| b.weight.milli())
    };
    let (p, c) = (weight(&names.primary), weight(&names.canary));
    let total = p.saturating_add(c);
    if total == 0 {
        return Routes::PRIMARY;
    }
    let canary = c.saturating_mul(100).saturating_add(total / 2) / total;
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
    /// `linkerd`, `osm`, `smi:v1alpha1`, `smi:v1alpha2` or `smi:v1alpha3`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::canary;
    use serde_json::json;

    /// The spec Flagger v1.36.1 writes (`pkg/router/smi*.go`) for weights `canary`/`primary`.
    fn flagger_spec(version: SmiVersion, canary: i32, primary: i32) -> serde_json::Value {
        let w = |n: i32| match version {
            SmiVersion::V1alpha1 => json!(n.to_string()),
            _ => json!(n),
        };
        json!({"service": "podinfo", "backends": [
            {"service": "podinfo-canary", "weight": w(canary)},
            {"service": "podinfo-primary", "weight": w(primary)}
        ]})
    }

    fn written(provider: &str, version: SmiVersion, routes: Routes) -> serde_json::Value {
        build_traffic_split(&canary(provider, json!({})), routes, version, provider).unwrap()
    }

    #[test]
    fn writes_what_flagger_writes_at_init_each_weight_promotion_and_rollback() {
        for (provider, version, api) in [
            ("osm", SmiVersion::V1alpha2, "split.smi-spec.io/v1alpha2"),
            (
                "smi:v1alpha1",
                SmiVersion::V1alpha1,
                "split.smi-spec.io/v1alpha1",
            ),
            (
                "smi:v1alpha2",
                SmiVersion::V1alpha2,
                "split.smi-spec.io/v1alpha2",
            ),
            (
                "smi:v1alpha3",
                SmiVersion::V1alpha3,
                "split.smi-spec.io/v1alpha3",
            ),
            (
                "linkerd",
                SmiVersion::V1alpha2,
                "split.smi-spec.io/v1alpha2",
            ),
        ] {
            // Initialization, promotion and rollback all leave everything on the primary.
            let init = written(provider, version, Routes::PRIMARY);
            assert_eq!(init["apiVersion"], api, "{provider}");
            assert_eq!(init["kind"], "TrafficSplit");
            assert_eq!(init["metadata"]["name"], "podinfo");
            assert_eq!(init["metadata"]["namespace"], "test");
            assert_eq!(init["metadata"]["ownerReferences"][0]["kind"], "Canary");
            assert_eq!(init["spec"], flagger_spec(version, 0, 100), "{provider}");
            for w in [20, 40, 60, 100] {
                let obj = written(provider, version, Routes::weighted(w));
                assert_eq!(
                    obj["spec"],
                    flagger_spec(version, w, 100 - w),
                    "{provider} {w}"
                );
            }
        }
    }

    #[test]
    fn refuses_ab_matching_and_mirroring_naming_the_provider_and_field() {
        let c = canary("osm", json!({}));
        let ab = Routes {
            ab_match: true,
            ..Routes::PRIMARY
        };
        let e = build_traffic_split(&c, ab, SmiVersion::V1alpha2, "osm").unwrap_err();
        assert!(
            matches!(&e, Error::Router { provider, message }
                if provider == "osm" && message.contains("analysis.match")),
            "{e}"
        );
        let mirrored = Routes {
            mirror: Some(50),
            ..Routes::PRIMARY
        };
        let e =
            build_traffic_split(&c, mirrored, SmiVersion::V1alpha1, "smi:v1alpha1").unwrap_err();
        assert!(
            matches!(&e, Error::Router { provider, message }
                if provider == "smi:v1alpha1" && message.contains("analysis.mirror")),
            "{e}"
        );
    }

    #[test]
    fn reads_back_weights_of_every_version_and_quantity_form() {
        let names = ServiceNames::of(&canary("osm", json!({})));
        for version in [SmiVersion::V1alpha1, SmiVersion::V1alpha2] {
            for w in [0, 10, 33, 100] {
                let obj = written("osm", version, Routes::weighted(w));
                let spec: TrafficSplitSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
                assert_eq!(routes_of(&spec, &names), Routes::weighted(w), "{version:?}");
            }
        }
        let spec = |p: serde_json::Value, c: serde_json::Value| -> TrafficSplitSpec {
            serde_json::from_value(json!({"service": "podinfo", "backends": [
                {"service": "podinfo-primary", "weight": p},
                {"service": "podinfo-canary", "weight": c}
            ]}))
            .unwrap()
        };
        assert_eq!(
            routes_of(&spec(json!("750m"), json!("250m")), &names),
            Routes::weighted(25)
        );
        assert_eq!(
            routes_of(&spec(json!("1k"), json!("1k")), &names),
            Routes::weighted(50)
        );
        assert_eq!(
            routes_of(&spec(json!(0), json!("1e2")), &names),
            Routes::weighted(100)
        );
        // Nothing weighed (or nothing that parses): the primary serves.
        assert_eq!(
            routes_of(&spec(json!("x"), json!(-5)), &names),
            Routes::PRIMARY
        );
    }

    #[test]
    fn quantities_parse_in_thousandths() {
        for (q, want) in [
            ("100", Some(100_000)),
            ("500m", Some(500)),
            ("1.5", Some(1500)),
            ("2k", Some(2_000_000)),
            ("1Ki", Some(1_024_000)),
            ("1e3", Some(1_000_000)),
            ("", None),
            ("5q", None),
        ] {
            assert_eq!(quantity_milli(q), want, "{q}");
        }
    }
}
