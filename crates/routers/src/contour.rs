//! The `contour` provider: an `HTTPProxy` (`projectcontour.io/v1`) named like the apex Service,
//! as Flagger writes it:
//!
//! - One route on the prefix of `spec.service.match[0].uri.prefix` (`/` without one), with the
//!   timeout policy of `spec.service.timeout` (`response`, and `idle: 5m`) and the retry policy
//!   of `spec.service.retries`, to `<svc>-primary` and `<svc>-canary` by weight; each service
//!   sets Linkerd's `l5d-dst-override` request header to its own cluster address.
//! - With `analysis.match`: first a route per match entry, its headers as `exact` header
//!   conditions (ANDed, as Contour does within a route), then the weighted route. While A/B
//!   routing is on, the match routes send everything to the canary; otherwise they follow the
//!   weights.
//!
//! Header conditions other than `exact`, and matches on anything but headers, have no
//! HTTPProxy form here; mirroring and session affinity are refused.

use fledge_api::{Canary, HttpMatchRequest};
use fledge_core::Routes;
use kube::Client;
use serde::{Deserialize, Serialize};

use crate::{
    Capabilities, Error, PeerKind, RouteTarget, Router, ServiceNames, cannot, object_meta,
    release_apex,
};

/// The provider name.
pub const PROVIDER: &str = "contour";

/// The kind fledge writes.
pub const KIND: PeerKind = PeerKind {
    group: "projectcontour.io",
    version: "v1",
    kind: "HTTPProxy",
    plural: "httpproxies",
    namespaced: true,
};

/// `HTTPProxy.spec`, as much of it as fledge writes and reads.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpProxySpec {
    /// The routes, in order.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// A route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Conditions, all of which a request meets.
    #[serde(default)]
    pub conditions: Vec<MatchCondition>,
    /// Timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_policy: Option<TimeoutPolicy>,
    /// Retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// The services and their weights.
    #[serde(default)]
    pub services: Vec<Service>,
}

/// A condition: a path prefix and, optionally, a header.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchCondition {
    /// Path prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Header condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderCondition>,
}

/// A header condition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderCondition {
    /// Header name.
    pub name: String,
    /// The exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
}

/// `timeoutPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeoutPolicy {
    /// Response timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Idle timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
}

/// `retryPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Number of retries.
    #[serde(default)]
    pub count: i64,
    /// Timeout of each try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    /// Conditions that trigger a retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
}

/// A service of a route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Service name.
    pub name: String,
    /// Service port.
    pub port: i32,
    /// Relative weight.
    #[serde(default)]
    pub weight: i64,
    /// Request headers set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers_policy: Option<HeadersPolicy>,
}

/// Headers set on requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadersPolicy {
    /// Headers and values.
    #[serde(default)]
    pub set: Vec<HeaderValue>,
}

/// A header and its value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderValue {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// The header conditions of `analysis.match`, one list per entry; an error naming what an
/// HTTPProxy route cannot match on.
fn conditions(
    matches: &[HttpMatchRequest],
    prefix: &str,
) -> Result<Vec<Vec<MatchCondition>>, Error> {
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
                PROVIDER,
                format!(
                    "{field}: provider contour matches A/B traffic on headers only (exact \
                     values); remove the other conditions, or use istio or gatewayapi:v1"
                ),
            ));
        }
        let mut list = Vec::new();
        for (name, sm) in m.headers.iter().flatten() {
            let exact = sm
                .exact
                .clone()
                .filter(|_| sm.prefix.is_none() && sm.suffix.is_none() && sm.regex.is_none());
            let Some(exact) = exact else {
                return Err(cannot(
                    PROVIDER,
                    format!(
                        "{field}.headers.{name}: provider contour matches a header by its exact \
                         value only; write exact"
                    ),
                ));
            };
            list.push(MatchCondition {
                prefix: Some(prefix.to_string()),
                header: Some(HeaderCondition {
                    name: name.clone(),
                    exact: Some(exact),
                }),
            });
        }
        if !list.is_empty() {
            out.push(list);
        }
    }
    Ok(out)
}

/// The HTTPProxy spec for `routes`; an error for what an HTTPProxy cannot do.
pub fn build_spec(canary: &Canary, routes: Routes) -> Result<HttpProxySpec, Error> {
    if routes.mirror.is_some_and(|m| m > 0) {
        return Err(cannot(
            PROVIDER,
            "provider contour does not mirror traffic (spec.analysis.mirror), as in Flagger; \
             remove analysis.mirror, or use istio or gatewayapi:v1",
        ));
    }
    let names = ServiceNames::of(canary);
    let ns = canary.metadata.namespace.as_deref().unwrap_or("default");
    let svc = &canary.spec.service;
    let prefix = svc
        .r#match
        .as_ref()
        .and_then(|m| m.first())
        .and_then(|m| m.uri.as_ref())
        .and_then(|u| u.prefix.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    let timeout_policy = svc
        .timeout
        .clone()
        .filter(|t| !t.is_empty())
        .map(|t| TimeoutPolicy {
            response: Some(t),
            idle: Some("5m".into()),
        });
    let retry_policy = svc.retries.as_ref().map(|r| RetryPolicy {
        count: r.attempts.into(),
        per_try_timeout: r.per_try_timeout.clone().filter(|t| !t.is_empty()),
        retry_on: r
            .retry_on
            .as_deref()
            .map(|s| s.split(',').map(String::from).collect())
            .unwrap_or_default(),
    });
    let service = |name: &str, weight: i32| Service {
        name: name.to_string(),
        port: svc.port,
        weight: weight.into(),
        request_headers_policy: Some(HeadersPolicy {
            set: vec![HeaderValue {
                name: "l5d-dst-override".into(),
                value: format!("{name}.{ns}.svc.cluster.local:{}", svc.port),
            }],
        }),
    };
    let route = |conditions: Vec<MatchCondition>, canary_weight: i32| Route {
        conditions,
        timeout_policy: timeout_policy.clone(),
        retry_policy: retry_policy.clone(),
        services: vec![
            service(&names.primary, 100 - canary_weight),
            service(&names.canary, canary_weight),
        ],
    };
    let matches = crate::analysis_match(canary);
    let matched = conditions(&matches, &prefix)?;
    if routes.ab_match && matched.is_empty() {
        return Err(cannot(
            PROVIDER,
            "A/B routing asked, but spec.analysis.match has no header condition: add one",
        ));
    }
    let matched_weight = if routes.ab_match { 100 } else { routes.canary };
    let mut out: Vec<Route> = matched
        .into_iter()
        .map(|c| route(c, matched_weight))
        .collect();
    let default = vec![MatchCondition {
        prefix: Some(prefix),
        header: None,
    }];
    out.push(route(default, routes.canary));
    Ok(HttpProxySpec { routes: out })
}

/// The HTTPProxy for `routes`, as JSON for server-side apply.
pub fn build_http_proxy(canary: &Canary, routes: Routes) -> Result<serde_json::Value, Error> {
    let spec = build_spec(canary, routes)?;
    let mut obj = object_meta(&KIND, canary, canary.spec.apex_service_name(), true);
    // Flux must not revert what fledge writes (Flagger's annotations).
    obj["metadata"]["annotations"] =
        serde_json::json!(std::collections::BTreeMap::from(crate::FLUX_OFF));
    obj["spec"] = serde_json::to_value(spec)?;
    Ok(obj)
}

/// The routes an HTTPProxy gives: the weights of its last route; A/B routing when a route
/// before it sends everything to the canary while the last does not.
pub fn routes_of(spec: &HttpProxySpec, names: &ServiceNames) -> Routes {
    let canary_share = |r: &Route| {
        let weight = |n: &str| -> i64 {
            r.services
                .iter()
                .filter(|s| s.name == *n)
                .map(|s| s.weight.max(0))
                .sum()
        };
        let (p, c) = (weight(&names.primary), weight(&names.canary));
        if p + c == 0 {
            return 0;
        }
        i32::try_from((c * 100 + (p + c) / 2) / (p + c)).unwrap_or(0)
    };
    let Some((last, matched)) = spec.routes.split_last() else {
        return Routes::PRIMARY;
    };
    let canary = canary_share(last);
    Routes {
        ab_match: canary < 100
            && !matched.is_empty()
            && matched.iter().all(|r| canary_share(r) == 100),
        ..Routes::weighted(canary)
    }
}

/// Routes through a Contour HTTPProxy.
pub struct ContourRouter {
    client: Client,
}

impl ContourRouter {
    /// A router using `client`.
    pub fn new(client: Client) -> Self {
        ContourRouter { client }
    }
}

#[async_trait::async_trait]
impl Router for ContourRouter {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn routing_kind(&self) -> PeerKind {
        KIND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_weights: true,
            http_match: true,
            ..Capabilities::default()
        }
    }

    /// Applies the HTTPProxy for `routes`.
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        let obj = build_http_proxy(t.canary, routes)?;
        KIND.apply(&self.client, t.namespace(), PROVIDER, &obj)
            .await
    }

    /// The routes the HTTPProxy gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let spec: Option<HttpProxySpec> = KIND.read_spec(&self.client, t, PROVIDER).await?;
        Ok(spec.map(|s| routes_of(&s, &ServiceNames::of(t.canary))))
    }

    /// Points the apex Service at the target and the HTTPProxy at the apex Service; both stay
    /// once the Canary is gone, so a root HTTPProxy including this one keeps serving.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        release_apex(&self.client, t).await?;
        let names = ServiceNames::of(t.canary);
        let spec = HttpProxySpec {
            routes: vec![Route {
                conditions: vec![MatchCondition {
                    prefix: Some("/".into()),
                    header: None,
                }],
                services: vec![Service {
                    name: names.apex.clone(),
                    port: t.canary.spec.service.port,
                    weight: 100,
                    request_headers_policy: None,
                }],
                ..Route::default()
            }],
        };
        let mut obj = object_meta(&KIND, t.canary, &names.apex, false);
        obj["spec"] = serde_json::to_value(spec)?;
        KIND.apply(&self.client, t.namespace(), PROVIDER, &obj)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::canary;
    use serde_json::json;

    /// A route as Flagger v1.36.1 (`pkg/router/contour.go`) writes it, for `test/podinfo` on
    /// port 9898 with a timeout and retries.
    fn flagger_route(
        conditions: serde_json::Value,
        primary: i32,
        canary: i32,
    ) -> serde_json::Value {
        let svc = |name: &str, weight: i32| {
            json!({"name": name, "port": 9898, "weight": weight, "requestHeadersPolicy": {"set": [
                {"name": "l5d-dst-override", "value": format!("{name}.test.svc.cluster.local:9898")}
            ]}})
        };
        json!({
            "conditions": conditions,
            "timeoutPolicy": {"response": "15s", "idle": "5m"},
            "retryPolicy": {"count": 3, "perTryTimeout": "5s", "retryOn": ["5xx", "gateway-error"]},
            "services": [svc("podinfo-primary", primary), svc("podinfo-canary", canary)]
        })
    }

    fn contour_canary(analysis: serde_json::Value) -> Canary {
        canary(
            PROVIDER,
            json!({"service": {"port": 9898, "timeout": "15s",
                "retries": {"attempts": 3, "perTryTimeout": "5s", "retryOn": "5xx,gateway-error"},
                "match": [{"uri": {"prefix": "/api"}}]},
              "analysis": analysis}),
        )
    }

    #[test]
    fn writes_what_flagger_writes_at_init_each_weight_promotion_and_rollback() {
        let c = contour_canary(json!({}));
        let names = ServiceNames::of(&c);
        for w in [0, 10, 50, 100, 0] {
            let obj = build_http_proxy(&c, Routes::weighted(w)).unwrap();
            assert_eq!(obj["apiVersion"], "projectcontour.io/v1");
            assert_eq!(obj["kind"], "HTTPProxy");
            assert_eq!(obj["metadata"]["name"], "podinfo");
            assert_eq!(obj["metadata"]["ownerReferences"][0]["uid"], "uid-1");
            assert_eq!(
                obj["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/reconcile"],
                "disabled"
            );
            assert_eq!(
                obj["spec"],
                json!({"routes": [flagger_route(json!([{"prefix": "/api"}]), 100 - w, w)]}),
                "{w}"
            );
            let spec: HttpProxySpec = serde_json::from_value(obj["spec"].clone()).unwrap();
            assert_eq!(routes_of(&spec, &names), Routes::weighted(w));
        }
    }

    #[test]
    fn ab_testing_puts_a_header_route_first() {
        let c = contour_canary(json!({"iterations": 5, "match": [
            {"headers": {"x-canary": {"exact": "insider"}, "cookie": {"exact": "canary=always"}}}
        ]}));
        let names = ServiceNames::of(&c);
        let header_conditions = json!([
            {"prefix": "/api", "header": {"name": "cookie", "exact": "canary=always"}},
            {"prefix": "/api", "header": {"name": "x-canary", "exact": "insider"}}
        ]);
        let ab = Routes {
            ab_match: true,
            ..Routes::PRIMARY
        };
        // Flagger's SetRoutes(0, 100) during A/B: the header route all to the canary, the
        // default route (which Flagger always writes 100/0) to the primary.
        let obj = build_http_proxy(&c, ab).unwrap();
        assert_eq!(
            obj["spec"],
            json!({"routes": [
                flagger_route(header_conditions.clone(), 0, 100),
                flagger_route(json!([{"prefix": "/api"}]), 100, 0)
            ]})
        );
        let spec: HttpProxySpec = serde_json::from_value(obj["spec"].clone()).unwrap();
        assert_eq!(routes_of(&spec, &names), ab);
        // Initialization, promotion, rollback: both routes to the primary.
        let obj = build_http_proxy(&c, Routes::PRIMARY).unwrap();
        assert_eq!(
            obj["spec"],
            json!({"routes": [
                flagger_route(header_conditions, 100, 0),
                flagger_route(json!([{"prefix": "/api"}]), 100, 0)
            ]})
        );
        let spec: HttpProxySpec = serde_json::from_value(obj["spec"].clone()).unwrap();
        assert_eq!(routes_of(&spec, &names), Routes::PRIMARY);
    }

    #[test]
    fn refuses_what_an_http_proxy_route_cannot_match_and_mirroring() {
        let ab = Routes {
            ab_match: true,
            ..Routes::PRIMARY
        };
        let regex = contour_canary(json!({"match": [{"headers": {"x-canary": {"regex": "a.*"}}}]}));
        let e = build_http_proxy(&regex, ab).unwrap_err();
        assert!(
            matches!(&e, Error::Router { provider, message } if provider == "contour"
                && message.contains("spec.analysis.match[0].headers.x-canary")),
            "{e}"
        );
        let query = contour_canary(json!({"match": [{"queryParams": {"a": {"exact": "1"}}}]}));
        let e = build_http_proxy(&query, Routes::PRIMARY).unwrap_err();
        assert!(e.to_string().contains("spec.analysis.match[0]"), "{e}");
        let mirrored = Routes {
            mirror: Some(20),
            ..Routes::PRIMARY
        };
        let e = build_http_proxy(&contour_canary(json!({})), mirrored).unwrap_err();
        assert!(e.to_string().contains("spec.analysis.mirror"), "{e}");
    }

    #[test]
    fn defaults_without_timeout_retries_or_prefix() {
        let c = canary(PROVIDER, json!({}));
        let spec = build_spec(&c, Routes::weighted(30)).unwrap();
        let route = &spec.routes[0];
        assert_eq!(route.conditions[0].prefix.as_deref(), Some("/"));
        assert_eq!(
            (route.timeout_policy.clone(), route.retry_policy.clone()),
            (None, None)
        );
        assert_eq!(
            serde_json::to_value(route).unwrap().get("timeoutPolicy"),
            None
        );
    }
}
