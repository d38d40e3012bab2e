//! The `gatewayapi:v1` (default) and `gatewayapi:v1beta1` providers: an `HTTPRoute` named like
//! the apex Service, attached to `spec.service.gatewayRefs`, answering for `spec.service.hosts`.
//!
//! Its rules, in order (the Gateway API gives a rule with header matches precedence over one
//! without, whatever the order):
//!
//! 1. `ab-testing` (A/B testing, while the engine routes by match): requests matching
//!    `analysis.match` (headers, cookies through the `Cookie` header, query parameters) go to
//!    the canary only;
//! 2. `canary-session` and `primary-session` (session affinity, while the canary gets traffic):
//!    requests carrying the canary cookie go to the canary, those carrying the primary cookie
//!    (`primaryCookieName`) to the primary;
//! 3. `split`: the weighted `backendRefs` to `<svc>-primary` and `<svc>-canary`, whose responses
//!    set the session cookies (a `ResponseHeaderModifier` on each backend), and a
//!    `RequestMirror` filter to the canary while mirroring (with `percent` = `mirrorWeight`).
//!
//! Every rule carries `spec.service.match` (merged into its own matches), the header filters of
//! `spec.service.headers`, the `URLRewrite` of `spec.service.rewrite`, the extra mirrors of
//! `spec.service.mirror`, `timeouts` (`timeout`, `backendTimeout` or `retries.perTryTimeout`)
//! and `retry` (`retries`). Fields the installed HTTPRoute CRD does not have (`retry` is in the
//! experimental channel only; `percent` and rule names came in later releases) are read from the
//! CRD's schema and left out, except a partial mirror, which is refused rather than silently
//! turned into a full one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fledge_api::{BackendObjectReference, Canary, CanaryStatus, HttpMatchRequest, ParentReference};
use fledge_core::Routes;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::Api;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::{
    Affinity, Capabilities, Cookie, PeerKind, RouteTarget, Router, ServiceNames, cannot,
    merge_matches, object_meta, parse_duration, release_apex, string_match_regex,
};

/// The HTTPRoute API version a provider writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayVersion {
    /// `gateway.networking.k8s.io/v1` (`gatewayapi:v1`).
    V1,
    /// `gateway.networking.k8s.io/v1beta1` (`gatewayapi:v1beta1`).
    V1beta1,
}

impl GatewayVersion {
    fn name(self) -> &'static str {
        match self {
            GatewayVersion::V1 => "v1",
            GatewayVersion::V1beta1 => "v1beta1",
        }
    }

    fn provider(self) -> &'static str {
        match self {
            GatewayVersion::V1 => "gatewayapi:v1",
            GatewayVersion::V1beta1 => "gatewayapi:v1beta1",
        }
    }

    fn kind(self) -> PeerKind {
        PeerKind {
            group: "gateway.networking.k8s.io",
            version: self.name(),
            kind: "HTTPRoute",
            plural: "httproutes",
            namespaced: true,
        }
    }
}

/// The name of the HTTPRoute CRD.
const CRD: &str = "httproutes.gateway.networking.k8s.io";

/// What the installed HTTPRoute CRD can express beyond the core of the standard channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// `rules[].name`.
    pub rule_names: bool,
    /// `rules[].timeouts`.
    pub timeouts: bool,
    /// `rules[].retry` (experimental channel).
    pub retry: bool,
    /// `requestMirror.percent`.
    pub mirror_percent: bool,
}

impl Caps {
    /// Everything (the experimental channel of a recent release).
    pub const ALL: Caps = Caps {
        rule_names: true,
        timeouts: true,
        retry: true,
        mirror_percent: true,
    };
    /// The standard channel of a recent release; also assumed when the CRD cannot be read.
    pub const STANDARD: Caps = Caps {
        retry: false,
        ..Caps::ALL
    };

    /// What the CRD's schema of `version` has; an error when that version is not served.
    pub fn of(crd: &CustomResourceDefinition, version: GatewayVersion) -> Result<Caps, Error> {
        let v = crd
            .spec
            .versions
            .iter()
            .find(|v| v.name == version.name() && v.served)
            .ok_or_else(|| version.kind().not_installed(version.provider()))?;
        let schema = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(serde_json::to_value)
            .transpose()?
            .unwrap_or_default();
        let rule = schema
            .pointer("/properties/spec/properties/rules/items/properties")
            .cloned()
            .unwrap_or_default();
        let has = |v: &serde_json::Value, key: &str| v.get(key).is_some();
        let mirror = rule
            .pointer("/filters/items/properties/requestMirror/properties")
            .cloned()
            .unwrap_or_default();
        Ok(Caps {
            rule_names: has(&rule, "name"),
            timeouts: has(&rule, "timeouts"),
            retry: has(&rule, "retry"),
            mirror_percent: has(&mirror, "percent"),
        })
    }
}

// ---- the HTTPRoute, as much of it as fledge writes ----------------------------------------

/// `HTTPRoute.spec`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Gateways the route attaches to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentReference>,
    /// Host names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// One rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Name of the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions, any of which selects the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpRouteMatch>,
    /// Filters applied to every request of the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    /// Backends and their weights.
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    /// Timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<HttpRouteTimeouts>,
    /// Retries (experimental channel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<HttpRouteRetry>,
}

/// One condition.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// Path match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    /// Header matches, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpValueMatch>,
    /// Query parameter matches, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<HttpValueMatch>,
    /// Method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// A path match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` or `RegularExpression`.
    pub r#type: String,
    /// The path.
    pub value: String,
}

/// A header or query parameter match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HttpValueMatch {
    /// `Exact` or `RegularExpression`.
    pub r#type: String,
    /// Header or parameter name.
    pub name: String,
    /// Value or expression.
    pub value: String,
}

/// A filter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    /// `RequestHeaderModifier`, `ResponseHeaderModifier`, `RequestMirror` or `URLRewrite`.
    pub r#type: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HttpHeaderFilter>,
    /// Response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HttpHeaderFilter>,
    /// Mirroring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<HttpRequestMirror>,
    /// Rewrite.
    #[serde(
        default,
        rename = "urlRewrite",
        skip_serializing_if = "Option::is_none"
    )]
    pub url_rewrite: Option<HttpUrlRewrite>,
}

/// Header operations.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HttpHeaderFilter {
    /// Headers to overwrite.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HttpHeader>,
    /// Headers to append.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HttpHeader>,
    /// Headers to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HttpHeader {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A mirror.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestMirror {
    /// Where the copies go.
    pub backend_ref: BackendObjectReference,
    /// Percent of requests copied; all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
    /// The share copied as a fraction (read back only; fledge writes `percent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
}

/// A fraction of requests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Fraction {
    /// Numerator.
    pub numerator: i32,
    /// Denominator, 100 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<i32>,
}

/// A rewrite.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HttpUrlRewrite {
    /// New Host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// New path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathModifier>,
}

/// A path rewrite.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    pub r#type: String,
    /// The new path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    /// The new prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

/// A weighted backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpBackendRef {
    /// Service name.
    pub name: String,
    /// Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Relative weight (1 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Filters applied to requests sent to this backend (and its responses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
}

/// Timeouts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    /// The whole request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Each request to a backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<String>,
}

/// Retries.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HttpRouteRetry {
    /// Retries at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// Response codes retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<i32>,
}

// ---- building ---------------------------------------------------------------------------

/// Rule names.
pub const AB_RULE: &str = "ab-testing";
/// Rule names.
pub const CANARY_SESSION_RULE: &str = "canary-session";
/// Rule names.
pub const PRIMARY_SESSION_RULE: &str = "primary-session";
/// Rule names.
pub const SPLIT_RULE: &str = "split";

/// The HTTPRoute that routes as `routes` says, as JSON for server-side apply.
pub fn build_http_route(
    canary: &Canary,
    status: &CanaryStatus,
    routes: Routes,
    caps: &Caps,
    version: GatewayVersion,
) -> Result<serde_json::Value, Error> {
    let spec = build_spec(canary, status, routes, caps, version)?;
    route_object(canary, spec, version, true)
}

/// The HTTPRoute left when the Canary is deleted with `revertOnDeletion`: one rule sending
/// everything to the apex Service, no owner reference.
pub fn build_released_route(
    canary: &Canary,
    caps: &Caps,
    version: GatewayVersion,
) -> Result<serde_json::Value, Error> {
    let b = Builder::new(canary, caps, version)?;
    let apex = ServiceNames::of(canary).apex;
    let rule = b.rule(
        SPLIT_RULE,
        &b.service_matches,
        vec![b.backend(&apex, None, None)],
        None,
    );
    let spec = b.spec(vec![rule]);
    route_object(canary, spec, version, false)
}

fn route_object(
    canary: &Canary,
    spec: HttpRouteSpec,
    version: GatewayVersion,
    owned: bool,
) -> Result<serde_json::Value, Error> {
    let name = canary.spec.apex_service_name();
    let mut obj = object_meta(&version.kind(), canary, name, owned);
    obj["spec"] = serde_json::to_value(spec)?;
    Ok(obj)
}

/// The spec of [`build_http_route`].
pub fn build_spec(
    canary: &Canary,
    status: &CanaryStatus,
    routes: Routes,
    caps: &Caps,
    version: GatewayVersion,
) -> Result<HttpRouteSpec, Error> {
    let b = Builder::new(canary, caps, version)?;
    let names = ServiceNames::of(canary);
    let affinity = Affinity::of(canary, status, &routes);
    let analysis = canary.spec.analysis_or_default();
    let service_match = canary.spec.service.r#match.clone().unwrap_or_default();
    let mut rules = Vec::new();

    if routes.ab_match {
        let ab = analysis.r#match.clone().unwrap_or_default();
        if ab.is_empty() {
            return Err(cannot(
                b.provider,
                "A/B routing was asked for but spec.analysis.match is empty",
            ));
        }
        let matches = b.matches(&merge_matches(&ab, &service_match))?;
        let backends = vec![b.backend(&names.canary, Some(100), None)];
        rules.push(b.rule(AB_RULE, &matches, backends, None));
    }
    for (rule, cookie, backend) in [
        (CANARY_SESSION_RULE, &affinity.canary, &names.canary),
        (PRIMARY_SESSION_RULE, &affinity.primary, &names.primary),
    ] {
        if let Some(cookie) = cookie {
            let matches = b.matches(&merge_matches(&[cookie_match(cookie)], &service_match))?;
            let backends = vec![b.backend(backend, Some(100), None)];
            rules.push(b.rule(rule, &matches, backends, None));
        }
    }

    let canary_cookie = affinity.canary.as_ref().map(|c| affinity.set_cookie(c));
    let backends = vec![
        b.backend(
            &names.primary,
            Some(routes.primary),
            affinity.primary_set_cookie(),
        ),
        b.backend(&names.canary, Some(routes.canary), canary_cookie),
    ];
    let mirror = match routes.mirror {
        None | Some(0) => None,
        Some(percent) => {
            if percent < 100 && !caps.mirror_percent {
                return Err(cannot(
                    b.provider,
                    format!(
                        "cannot mirror {percent}% of requests: this cluster's HTTPRoute has no \
                         requestMirror.percent; install a newer Gateway API release, or set \
                         mirrorWeight to 100"
                    ),
                ));
            }
            Some(HttpRouteFilter {
                r#type: "RequestMirror".into(),
                request_mirror: Some(HttpRequestMirror {
                    backend_ref: BackendObjectReference {
                        name: names.canary.clone(),
                        port: Some(canary.spec.service.port),
                        ..Default::default()
                    },
                    percent: (percent < 100).then_some(percent),
                    fraction: None,
                }),
                ..Default::default()
            })
        }
    };
    rules.push(b.rule(SPLIT_RULE, &b.service_matches, backends, mirror));
    Ok(b.spec(rules))
}

/// A header match on the `Cookie` header for a session cookie.
fn cookie_match(cookie: &Cookie) -> HttpMatchRequest {
    HttpMatchRequest {
        headers: Some(BTreeMap::from([(
            "Cookie".to_string(),
            fledge_api::StringMatch {
                regex: Some(cookie.header_regex()),
                ..Default::default()
            },
        )])),
        ..Default::default()
    }
}

/// What every rule shares, built once.
struct Builder<'a> {
    canary: &'a Canary,
    caps: &'a Caps,
    provider: &'static str,
    port: i32,
    service_matches: Vec<HttpRouteMatch>,
    filters: Vec<HttpRouteFilter>,
    timeouts: Option<HttpRouteTimeouts>,
    retry: Option<HttpRouteRetry>,
    prefix_rewrite: bool,
}

impl<'a> Builder<'a> {
    fn new(canary: &'a Canary, caps: &'a Caps, version: GatewayVersion) -> Result<Self, Error> {
        let provider = version.provider();
        let svc = &canary.spec.service;
        let mut b = Builder {
            canary,
            caps,
            provider,
            port: svc.port,
            service_matches: Vec::new(),
            filters: Vec::new(),
            timeouts: None,
            retry: None,
            prefix_rewrite: false,
        };
        b.service_matches = b.matches(svc.r#match.as_deref().unwrap_or_default())?;

        if let Some(h) = &svc.headers {
            if let Some(req) = h.request.as_ref().and_then(header_filter) {
                b.filters.push(HttpRouteFilter {
                    r#type: "RequestHeaderModifier".into(),
                    request_header_modifier: Some(req),
                    ..Default::default()
                });
            }
            if let Some(resp) = h.response.as_ref().and_then(header_filter) {
                b.filters.push(HttpRouteFilter {
                    r#type: "ResponseHeaderModifier".into(),
                    response_header_modifier: Some(resp),
                    ..Default::default()
                });
            }
        }
        if let Some(rw) = &svc.rewrite {
            let path = match rw.uri.as_deref().filter(|u| !u.is_empty()) {
                None => None,
                Some(uri) => {
                    let full = rw.r#type.as_deref() == Some("ReplaceFullPath");
                    b.prefix_rewrite = !full;
                    Some(HttpPathModifier {
                        r#type: if full {
                            "ReplaceFullPath"
                        } else {
                            "ReplacePrefixMatch"
                        }
                        .into(),
                        replace_full_path: full.then(|| uri.to_string()),
                        replace_prefix_match: (!full).then(|| uri.to_string()),
                    })
                }
            };
            let hostname = rw.authority.clone().filter(|a| !a.is_empty());
            if path.is_some() || hostname.is_some() {
                b.filters.push(HttpRouteFilter {
                    r#type: "URLRewrite".into(),
                    url_rewrite: Some(HttpUrlRewrite { hostname, path }),
                    ..Default::default()
                });
            }
        }
        for m in svc.mirror.iter().flatten() {
            b.filters.push(HttpRouteFilter {
                r#type: "RequestMirror".into(),
                request_mirror: Some(HttpRequestMirror {
                    backend_ref: m.backend_ref.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }

        let duration = |field: &str, v: &Option<String>| -> Result<Option<String>, Error> {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| gateway_duration(provider, field, s))
                .transpose()
        };
        let request = duration("spec.service.timeout", &svc.timeout)?;
        let per_try = match &svc.retries {
            Some(r) => duration("spec.service.retries.perTryTimeout", &r.per_try_timeout)?,
            None => None,
        };
        let backend_request =
            duration("spec.service.backendTimeout", &svc.backend_timeout)?.or(per_try);
        if (request.is_some() || backend_request.is_some()) && caps.timeouts {
            b.timeouts = Some(HttpRouteTimeouts {
                request,
                backend_request,
            });
        } else if request.is_some() || backend_request.is_some() {
            tracing::debug!(
                "the installed HTTPRoute has no rules[].timeouts; spec.service timeouts left out"
            );
        }
        if let Some(r) = svc.retries.as_ref().filter(|r| r.attempts > 0) {
            if caps.retry {
                b.retry = Some(HttpRouteRetry {
                    attempts: Some(r.attempts),
                    codes: retry_codes(r.retry_on.as_deref().unwrap_or_default()),
                });
            } else {
                tracing::debug!(
                    "the installed HTTPRoute has no rules[].retry (experimental channel); \
                     spec.service.retries left out"
                );
            }
        }
        Ok(b)
    }

    fn spec(&self, rules: Vec<HttpRouteRule>) -> HttpRouteSpec {
        let svc = &self.canary.spec.service;
        HttpRouteSpec {
            parent_refs: svc.gateway_refs.clone().unwrap_or_default(),
            hostnames: svc.hosts.clone().unwrap_or_default(),
            rules,
        }
    }

    fn rule(
        &self,
        name: &str,
        matches: &[HttpRouteMatch],
        backend_refs: Vec<HttpBackendRef>,
        mirror: Option<HttpRouteFilter>,
    ) -> HttpRouteRule {
        let mut matches = matches.to_vec();
        if self.prefix_rewrite {
            // ReplacePrefixMatch needs a PathPrefix match; "/" is what an absent path means.
            if matches.is_empty() {
                matches.push(HttpRouteMatch::default());
            }
            for m in &mut matches {
                m.path.get_or_insert_with(|| HttpPathMatch {
                    r#type: "PathPrefix".into(),
                    value: "/".into(),
                });
            }
        }
        let mut filters = self.filters.clone();
        filters.extend(mirror);
        HttpRouteRule {
            name: self.caps.rule_names.then(|| name.to_string()),
            matches,
            filters,
            backend_refs,
            timeouts: self.timeouts.clone(),
            retry: self.retry.clone(),
        }
    }

    fn backend(
        &self,
        name: &str,
        weight: Option<i32>,
        set_cookie: Option<String>,
    ) -> HttpBackendRef {
        HttpBackendRef {
            name: name.into(),
            port: Some(self.port),
            weight,
            filters: set_cookie
                .map(|value| HttpRouteFilter {
                    r#type: "ResponseHeaderModifier".into(),
                    response_header_modifier: Some(HttpHeaderFilter {
                        add: vec![HttpHeader {
                            name: "Set-Cookie".into(),
                            value,
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
        }
    }

    fn matches(&self, list: &[HttpMatchRequest]) -> Result<Vec<HttpRouteMatch>, Error> {
        list.iter()
            .map(|m| gateway_match(self.provider, m))
            .collect()
    }
}

fn header_filter(op: &fledge_api::HeaderOperation) -> Option<HttpHeaderFilter> {
    let list = |m: &Option<BTreeMap<String, String>>| -> Vec<HttpHeader> {
        m.iter()
            .flatten()
            .map(|(name, value)| HttpHeader {
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    };
    let f = HttpHeaderFilter {
        set: list(&op.set),
        add: list(&op.add),
        remove: op.remove.clone().unwrap_or_default(),
    };
    (!(f.set.is_empty() && f.add.is_empty() && f.remove.is_empty())).then_some(f)
}

/// An Istio-style match as a Gateway API match; an error naming what HTTPRoute cannot express.
pub fn gateway_match(provider: &str, m: &HttpMatchRequest) -> Result<HttpRouteMatch, Error> {
    let unsupported: Vec<&str> = [
        ("scheme", m.scheme.is_some()),
        ("authority", m.authority.is_some()),
        ("port", m.port.is_some()),
        ("sourceLabels", m.source_labels.is_some()),
        ("gateways", m.gateways.is_some()),
        ("withoutHeaders", m.without_headers.is_some()),
        ("sourceNamespace", m.source_namespace.is_some()),
        ("ignoreUriCase", m.ignore_uri_case == Some(true)),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(f, _)| f)
    .collect();
    if !unsupported.is_empty() {
        return Err(cannot(
            provider,
            format!(
                "an HTTPRoute cannot match on {}; match on uri, method, headers (cookies through \
                 the cookie header) and queryParams",
                unsupported.join(", ")
            ),
        ));
    }
    let path = m.uri.as_ref().map(|u| match (&u.exact, &u.prefix) {
        (Some(e), _) => HttpPathMatch {
            r#type: "Exact".into(),
            value: e.clone(),
        },
        (None, Some(p)) => HttpPathMatch {
            r#type: "PathPrefix".into(),
            value: p.clone(),
        },
        _ => HttpPathMatch {
            r#type: "RegularExpression".into(),
            value: string_match_regex(u),
        },
    });
    let values = |map: &Option<BTreeMap<String, fledge_api::StringMatch>>| {
        map.iter()
            .flatten()
            .map(|(name, sm)| match &sm.exact {
                Some(e) => HttpValueMatch {
                    r#type: "Exact".into(),
                    name: name.clone(),
                    value: e.clone(),
                },
                None => HttpValueMatch {
                    r#type: "RegularExpression".into(),
                    name: name.clone(),
                    value: string_match_regex(sm),
                },
            })
            .collect::<Vec<_>>()
    };
    let method = match &m.method {
        None => None,
        Some(sm) => match &sm.exact {
            Some(e) => Some(e.to_ascii_uppercase()),
            None => {
                return Err(cannot(
                    provider,
                    "an HTTPRoute matches a method exactly; write method: {exact: GET}",
                ));
            }
        },
    };
    Ok(HttpRouteMatch {
        path,
        headers: values(&m.headers),
        query_params: values(&m.query_params),
        method,
    })
}

/// A duration in the Gateway API's format (`1h2m3s4ms`, whole milliseconds).
pub fn gateway_duration(provider: &str, field: &str, value: &str) -> Result<String, Error> {
    let d = parse_duration(provider, field, value)?;
    let mut ms = d.as_millis();
    if ms == 0 {
        return Ok(if d.is_zero() { "0s" } else { "1ms" }.into());
    }
    let mut out = String::new();
    for (unit, size) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        let n = ms / size;
        ms %= size;
        if n > 99_999 {
            return Err(cannot(provider, format!("{field}: {value:?} is too long")));
        }
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    Ok(out)
}

/// Istio's `retryOn` as HTTP status codes: numbers as they are, `5xx` and `gateway-error` as
/// the codes they stand for; connection-level conditions have no Gateway API equivalent.
pub fn retry_codes(retry_on: &str) -> Vec<i32> {
    let mut codes = std::collections::BTreeSet::new();
    for part in retry_on.split(',').map(str::trim) {
        match part {
            "5xx" => codes.extend([500, 502, 503, 504]),
            "gateway-error" => codes.extend([502, 503, 504]),
            n => {
                if let Ok(code) = n.parse::<i32>()
                    && (400..=599).contains(&code)
                {
                    codes.insert(code);
                }
            }
        }
    }
    codes.into_iter().collect()
}

// ---- reading back -----------------------------------------------------------------------

/// The routes an HTTPRoute gives: the weights of the rule with both the primary and the canary,
/// its mirror to the canary, and whether another rule sends matching requests to the canary
/// only (a session affinity rule aside).
pub fn routes_of(spec: &HttpRouteSpec, names: &ServiceNames, status: &CanaryStatus) -> Routes {
    let weight = |rule: &HttpRouteRule, name: &str| -> Option<i32> {
        rule.backend_refs
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.weight.unwrap_or(1).max(0))
    };
    let Some((split, p, c)) = spec
        .rules
        .iter()
        .find_map(|r| Some((r, weight(r, &names.primary)?, weight(r, &names.canary)?)))
    else {
        // Released (everything to the apex) or not ours: the primary serves.
        return Routes::PRIMARY;
    };
    let canary = if p + c == 0 {
        0
    } else {
        (c * 100 + (p + c) / 2) / (p + c)
    };
    let mirror = split
        .filters
        .iter()
        .filter_map(|f| f.request_mirror.as_ref())
        .find(|m| m.backend_ref.name == names.canary)
        .map(|m| match (&m.percent, &m.fraction) {
            (Some(p), _) => *p,
            (None, Some(f)) => f.numerator * 100 / f.denominator.unwrap_or(100).max(1),
            (None, None) => 100,
        });
    let session =
        Cookie::parse(status.session_affinity_cookie.as_deref()).map(|c| c.header_regex());
    let is_session = |r: &HttpRouteRule| {
        r.name.as_deref() == Some(CANARY_SESSION_RULE)
            || r.matches
                .iter()
                .all(|m| m.headers.iter().any(|h| Some(&h.value) == session.as_ref()))
                && !r.matches.is_empty()
    };
    let ab_match = spec.rules.iter().any(|r| {
        !std::ptr::eq(r, split)
            && !r.matches.is_empty()
            && !r.backend_refs.is_empty()
            && r.backend_refs.iter().all(|b| b.name == names.canary)
            && !is_session(r)
    });
    Routes {
        mirror,
        ab_match,
        ..Routes::weighted(canary)
    }
}

// ---- the router -------------------------------------------------------------------------

/// Routes through a Gateway API HTTPRoute.
pub struct GatewayApiRouter {
    client: Client,
    version: GatewayVersion,
}

/// How long the capabilities read from the CRD are trusted.
const CAPS_TTL: Duration = Duration::from_secs(60);

fn caps_cache() -> &'static Mutex<HashMap<GatewayVersion, (Instant, Caps)>> {
    static CACHE: OnceLock<Mutex<HashMap<GatewayVersion, (Instant, Caps)>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

impl GatewayApiRouter {
    /// A router writing HTTPRoutes of `version`.
    pub fn new(client: Client, version: GatewayVersion) -> Self {
        GatewayApiRouter { client, version }
    }

    /// What the installed HTTPRoute CRD can express, read from its schema (cached a minute).
    /// When the CRD cannot be read (no permission), the standard channel is assumed.
    async fn caps(&self) -> Result<Caps, Error> {
        let cached = caps_cache()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&self.version)
            .filter(|(at, _)| at.elapsed() < CAPS_TTL)
            .map(|(_, c)| *c);
        if let Some(c) = cached {
            return Ok(c);
        }
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let caps = match api.get_opt(CRD).await {
            Ok(Some(crd)) => Caps::of(&crd, self.version)?,
            Ok(None) => return Err(self.version.kind().not_installed(self.provider())),
            Err(kube::Error::Api(s)) if s.code == 403 => Caps::STANDARD,
            Err(e) => return Err(e.into()),
        };
        caps_cache()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(self.version, (Instant::now(), caps));
        Ok(caps)
    }
}

#[async_trait::async_trait]
impl Router for GatewayApiRouter {
    /// `gatewayapi:v1` or `gatewayapi:v1beta1`.
    fn provider(&self) -> &'static str {
        self.version.provider()
    }

    fn routing_kind(&self) -> PeerKind {
        self.version.kind()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_weights: true,
            mirroring: true,
            http_match: true,
            session_affinity: true,
        }
    }

    /// Applies the HTTPRoute for `routes`.
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        let caps = self.caps().await?;
        let route = build_http_route(t.canary, t.status, routes, &caps, self.version)?;
        self.version
            .kind()
            .apply(&self.client, t.namespace(), self.provider(), &route)
            .await
    }

    /// The routes the HTTPRoute gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let spec: Option<HttpRouteSpec> = self
            .version
            .kind()
            .read_spec(&self.client, t, self.provider())
            .await?;
        Ok(spec.map(|s| routes_of(&s, &ServiceNames::of(t.canary), t.status)))
    }

    /// Points the apex Service at the target and the HTTPRoute at the apex Service; both stay
    /// once the Canary is gone.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        release_apex(&self.client, t).await?;
        let caps = self.caps().await?;
        let route = build_released_route(t.canary, &caps, self.version)?;
        self.version
            .kind()
            .apply(&self.client, t.namespace(), self.provider(), &route)
            .await
    }
}
