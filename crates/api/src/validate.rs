//! Validation beyond the schema: pure functions that return every problem at once, each with
//! the path of the field it concerns.
//!
//! The rules cover what a Flagger user can trip over when moving a `flagger.app/v1beta1` spec to
//! fledge: values the schema lets through but that make no sense (a step weight of 0, a
//! `thresholdRange` whose `min` is above its `max`), durations and URLs that do not parse,
//! strategies that cannot run on the chosen provider, and Flagger features fledge does not
//! implement yet, which are named as such.
//!
//! Messages never repeat the value of a URL: webhook and chat URLs carry secrets.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::canary::{
    CanaryAlert, CanaryAnalysis, CanaryMetric, CanaryService, CanaryWebhook, HookType,
    HttpMatchRequest, LocalObjectReference, SessionAffinity, StringMatch,
};
use crate::metric_template::SecretReference;
use crate::{AlertProviderSpec, CanarySpec, KNATIVE_API_VERSION, MetricTemplateSpec, defaults};

/// Traffic providers fledge routes with (`spec.provider`).
pub const SUPPORTED_PROVIDERS: &[&str] = &[
    "kubernetes",
    "apisix",
    "appmesh",
    "appmesh:v1beta2",
    "contour",
    "gatewayapi:v1",
    "gatewayapi:v1beta1",
    "gloo",
    "istio",
    "knative",
    "kuma",
    "linkerd",
    "nginx",
    "osm",
    "skipper",
    "smi:v1alpha1",
    "smi:v1alpha2",
    "smi:v1alpha3",
    "traefik",
];

/// Flagger's traffic providers that fledge does not implement yet.
pub const UNSUPPORTED_FLAGGER_PROVIDERS: &[&str] = &[];

/// Providers that can copy (mirror) traffic to the canary.
pub const MIRROR_PROVIDERS: &[&str] = &["gatewayapi:v1", "gatewayapi:v1beta1", "istio", "traefik"];

/// Providers that can route by header, cookie or query parameter (A/B testing).
pub const HTTP_MATCH_PROVIDERS: &[&str] = &[
    "appmesh",
    "appmesh:v1beta2",
    "contour",
    "gatewayapi:v1",
    "gatewayapi:v1beta1",
    "gloo",
    "istio",
    "nginx",
    "skipper",
];

/// Providers that keep a session on the canary with a cookie (session affinity).
pub const SESSION_AFFINITY_PROVIDERS: &[&str] =
    &["gatewayapi:v1", "gatewayapi:v1beta1", "istio", "traefik"];

/// Metric checks that need no MetricTemplate.
pub const BUILTIN_METRICS: &[&str] = &["request-success-rate", "request-duration"];

/// Metrics providers fledge queries (`MetricTemplate.spec.provider.type`).
pub const SUPPORTED_METRIC_PROVIDERS: &[&str] = &[
    "prometheus",
    "datadog",
    "newrelic",
    "dynatrace",
    "graphite",
    "influxdb",
    "splunk",
    "cloudwatch",
    "stackdriver",
    "keptn",
    "externalmetrics",
];

/// Metrics providers whose API is reached in a cloud region (`spec.provider.region`, required as
/// in Flagger).
pub const METRIC_PROVIDERS_NEEDING_REGION: &[&str] = &["cloudwatch"];

/// Metrics providers whose credentials are required (Flagger refuses them without a Secret).
pub const METRIC_PROVIDERS_NEEDING_SECRET: &[&str] =
    &["datadog", "newrelic", "dynatrace", "splunk"];

/// Metrics providers with no default address (Flagger refuses them without one; only
/// Prometheus falls back to the Canary's `spec.metricsServer`).
pub const METRIC_PROVIDERS_NEEDING_ADDRESS: &[&str] =
    &["dynatrace", "graphite", "influxdb", "splunk"];

/// Metrics providers of Flagger's releases after v1.36.1 that fledge does not implement yet
/// (every one of v1.36.1's, and `externalmetrics`, it does).
pub const UNSUPPORTED_FLAGGER_METRIC_PROVIDERS: &[&str] = &["signoz"];

/// Chat and webhook destinations of alerts (`AlertProvider.spec.type`).
pub const ALERT_PROVIDER_TYPES: &[&str] =
    &["slack", "msteams", "discord", "rocket", "gchat", "webhook"];

/// Variables a MetricTemplate query may use, besides `variables.NAME`.
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "namespace",
    "name",
    "target",
    "service",
    "ingress",
    "route",
    "interval",
    "canary_pods",
    "stable_pods",
];

/// One problem with a spec: which field, and what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the field, e.g. `spec.analysis.stepWeights[2]`.
    pub field: String,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl Problem {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Collects problems.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(field, message));
    }

    /// Records those of `problems` whose field has none yet: a problem the checks of every
    /// provider already said is said once.
    fn add_new(&mut self, problems: Vec<Problem>) {
        for problem in problems {
            if !self.0.iter().any(|q| q.field == problem.field) {
                self.0.push(problem);
            }
        }
    }

    /// Records `Err(message)` against `field`.
    fn check(&mut self, field: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.add(field, message);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Canary
// ---------------------------------------------------------------------------------------------

/// References of the spec to another namespace than `namespace` (the Canary's): a
/// MetricTemplate (`templateRef`) or an AlertProvider (`providerRef`). Controllers run with
/// `--no-cross-namespace-refs` refuse them, as Flagger's `-no-cross-namespace-refs` does.
pub fn cross_namespace_refs(spec: &CanarySpec, namespace: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(analysis) = &spec.analysis else {
        return problems;
    };
    let elsewhere = |ns: &Option<String>| {
        ns.as_deref()
            .filter(|n| !n.is_empty() && *n != namespace)
            .map(str::to_string)
    };
    for (i, m) in analysis.metrics.iter().flatten().enumerate() {
        if let Some(ns) = m
            .template_ref
            .as_ref()
            .and_then(|r| elsewhere(&r.namespace))
        {
            problems.push(Problem::new(
                format!("spec.analysis.metrics[{i}].templateRef.namespace"),
                format!(
                    "MetricTemplate {ns}/{} is in another namespace than the Canary's ({namespace}), \
                     and this controller refuses references across namespaces \
                     (--no-cross-namespace-refs or --multi-tenant); copy the template into {namespace} and drop the \
                     namespace",
                    m.template_ref.as_ref().map(|r| r.name.as_str()).unwrap_or_default()
                ),
            ));
        }
    }
    for (i, a) in analysis.alerts.iter().flatten().enumerate() {
        if let Some(ns) = elsewhere(&a.provider_ref.namespace) {
            problems.push(Problem::new(
                format!("spec.analysis.alerts[{i}].providerRef.namespace"),
                format!(
                    "AlertProvider {ns}/{} is in another namespace than the Canary's ({namespace}), \
                     and this controller refuses references across namespaces \
                     (--no-cross-namespace-refs or --multi-tenant); create the provider in {namespace} and drop the \
                     namespace",
                    a.provider_ref.name
                ),
            ));
        }
    }
    problems
}

/// Every problem of a Canary spec.
pub fn validate_canary_spec(spec: &CanarySpec) -> Vec<Problem> {
    let mut p = Problems::default();
    let provider = spec.provider_or_default();

    check_provider(&mut p, spec.provider.as_deref());

    if let Some(server) = spec.metrics_server.as_deref().filter(|s| !s.is_empty()) {
        p.check("spec.metricsServer", http_url(server));
    }
    if let Some(secs) = spec.progress_deadline_seconds
        && secs <= 0
    {
        p.add(
            "spec.progressDeadlineSeconds",
            format!(
                "{secs} is not a number of seconds greater than 0; remove it for the default {}",
                defaults::PROGRESS_DEADLINE_SECONDS
            ),
        );
    }

    check_target_ref(&mut p, spec);
    check_autoscaler_ref(&mut p, spec);
    for (field, reference) in [
        ("spec.ingressRef", spec.ingress_ref.as_ref()),
        ("spec.routeRef", spec.route_ref.as_ref()),
    ] {
        if let Some(r) = reference {
            p.check(format!("{field}.name"), required_name(&r.name));
        }
    }
    if let Some(r) = &spec.upstream_ref {
        p.check("spec.upstreamRef.name", required_name(&r.name));
        if let Some(ns) = &r.namespace {
            p.check("spec.upstreamRef.namespace", namespace(ns));
        }
    }

    if provider == "knative" || spec.targets_knative() {
        check_knative(&mut p, spec, provider);
    } else {
        check_service(&mut p, &spec.service);
    }
    if let Some(g) = &spec.gitops {
        for (field, message) in crate::gitops::problems(g) {
            p.add(field, message);
        }
    }

    let analysis = spec.analysis_or_default();
    check_analysis(&mut p, spec, provider, &analysis);
    if INGRESS_PROVIDERS.contains(&provider) {
        check_ingress_ref(&mut p, provider, spec);
    }
    if provider == "apisix" {
        check_route_ref(&mut p, spec);
    }
    if provider == "nginx"
        && let Err(problems) = nginx_canary_match(
            "spec.analysis.match",
            analysis.r#match.as_deref().unwrap_or(&[]),
        )
    {
        p.0.extend(problems);
    }
    if provider == "skipper"
        && let Err(problems) = skipper_canary_predicates(
            "spec.analysis.match",
            analysis.r#match.as_deref().unwrap_or(&[]),
        )
    {
        // An invalid regex or a match that sets two ways is said once, by the checks of
        // every provider.
        p.add_new(problems);
    }
    if provider.starts_with("appmesh") {
        check_appmesh(&mut p, provider, spec);
    }
    if provider == "gloo"
        && let Err(problems) = gloo_matchers(
            "spec.analysis.match",
            analysis.r#match.as_deref().unwrap_or(&[]),
        )
    {
        p.add_new(problems);
    }
    if provider == "contour" {
        for (i, m) in analysis.r#match.iter().flatten().enumerate() {
            check_contour_match(&mut p, &format!("spec.analysis.match[{i}]"), m);
        }
    }
    if GATEWAY_API_PROVIDERS.contains(&provider) {
        for (base, list) in [
            ("spec.service.match", &spec.service.r#match),
            ("spec.analysis.match", &analysis.r#match),
        ] {
            for (i, m) in list.iter().flatten().enumerate() {
                check_gateway_api_match(&mut p, provider, &format!("{base}[{i}]"), m);
            }
        }
    }

    p.0
}

/// Providers that copy the Ingress `spec.ingressRef` names into a `-canary` Ingress.
pub const INGRESS_PROVIDERS: &[&str] = &["nginx", "skipper"];

/// What an ingress-nginx canary Ingress routes by: one header (its value exactly, or a regular
/// expression), one cookie (the canary gets requests whose cookie of that name is `always`),
/// or both as alternatives; Flagger's reading of `analysis.match` for `nginx`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NginxCanaryMatch {
    /// `canary-by-header`.
    pub header: Option<String>,
    /// `canary-by-header-value`.
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`.
    pub header_pattern: Option<String>,
    /// `canary-by-cookie`.
    pub cookie: Option<String>,
}

/// `analysis.match` as ingress-nginx's canary annotations, or every condition they cannot
/// express (with its field under `base`, e.g. `spec.analysis.match`).
pub fn nginx_canary_match(
    base: &str,
    matches: &[HttpMatchRequest],
) -> Result<NginxCanaryMatch, Vec<Problem>> {
    let mut p = Problems::default();
    let mut out = NginxCanaryMatch::default();
    let cannot = |what: &str| {
        format!(
            "provider nginx routes A/B traffic with ingress-nginx's canary annotations, which \
             cannot match on {what}; match on one header (exact or regex) and/or one cookie \
             (headers.cookie.exact: the cookie's name), or use istio or gatewayapi:v1"
        )
    };
    for (i, m) in matches.iter().enumerate() {
        let field = format!("{base}[{i}]");
        for (name, set) in [
            ("uri", m.uri.is_some()),
            ("scheme", m.scheme.is_some()),
            ("method", m.method.is_some()),
            ("authority", m.authority.is_some()),
            ("port", m.port.is_some()),
            ("sourceLabels", m.source_labels.is_some()),
            ("gateways", m.gateways.is_some()),
            ("queryParams", m.query_params.is_some()),
            ("ignoreUriCase", m.ignore_uri_case == Some(true)),
            ("withoutHeaders", m.without_headers.is_some()),
            ("sourceNamespace", m.source_namespace.is_some()),
        ] {
            if set {
                p.add(format!("{field}.{name}"), cannot(name));
            }
        }
        let headers = m.headers.as_ref().map(|h| h.iter().collect::<Vec<_>>());
        let headers = headers.unwrap_or_default();
        if headers.len() > 1 {
            p.add(
                format!("{field}.headers"),
                "provider nginx cannot require several headers (or a header and a cookie) at \
                 once: ingress-nginx sends a request to the canary when its header or its cookie \
                 matches; put each condition in a match entry of its own",
            );
        }
        for (name, sm) in headers {
            let hfield = format!("{field}.headers.{name}");
            if sm.prefix.is_some() || sm.suffix.is_some() {
                p.add(
                    hfield.clone(),
                    "provider nginx matches a header exactly or by a regular expression only; \
                     write exact or regex",
                );
            }
            if name.eq_ignore_ascii_case("cookie") {
                let Some(cookie) = sm.exact.as_ref().filter(|c| !c.is_empty()) else {
                    p.add(
                        hfield,
                        "provider nginx routes by a cookie's name (the canary gets requests \
                         whose cookie of that name is \"always\"): write exact: <cookie name>",
                    );
                    continue;
                };
                if out.cookie.as_ref().is_some_and(|c| c != cookie) {
                    p.add(
                        hfield,
                        "provider nginx routes by one cookie only; every match entry must name \
                         the same cookie",
                    );
                }
                out.cookie = Some(cookie.clone());
            } else {
                if out.header.as_ref().is_some_and(|h| h != name) {
                    p.add(
                        hfield.clone(),
                        "provider nginx routes by one header only; every match entry must name \
                         the same header",
                    );
                }
                if sm.exact.is_some() && sm.regex.is_some() {
                    p.add(hfield.clone(), "set exact or regex, not both");
                }
                let previous = (out.header_value.clone(), out.header_pattern.clone());
                if out.header.is_some() && previous != (sm.exact.clone(), sm.regex.clone()) {
                    p.add(
                        hfield,
                        "provider nginx matches one header against one value or pattern; \
                         every match entry on it must give the same",
                    );
                }
                out.header = Some(name.clone());
                out.header_value = sm.exact.clone();
                out.header_pattern = sm.regex.clone();
            }
        }
    }
    if p.0.is_empty() { Ok(out) } else { Err(p.0) }
}

/// `analysis.match` as Skipper route predicates, ANDed into the predicate of the canary Ingress
/// (`zalando.org/skipper-predicate`): `Header`/`HeaderRegexp` for headers, `QueryParam` for
/// query parameters, `Method` for the method; or every condition they cannot express (with its
/// field under `base`, e.g. `spec.analysis.match`). An Ingress has one predicate, so one match
/// entry only; no entry gives no predicate.
pub fn skipper_canary_predicates(
    base: &str,
    matches: &[HttpMatchRequest],
) -> Result<Vec<String>, Vec<Problem>> {
    let mut p = Problems::default();
    let mut out = Vec::new();
    if matches.len() > 1 {
        p.add(
            base,
 "provider skipper puts the match into the one predicate of the canary Ingress, where conditions can only all hold together: give one match entry (its headers, queryParams and method must all match), or use istio or gatewayapi:v1 for alternatives",
        );
    }
    for (i, m) in matches.iter().enumerate() {
        let field = format!("{base}[{i}]");
        for (name, set) in [
            ("uri", m.uri.is_some()),
            ("scheme", m.scheme.is_some()),
            ("authority", m.authority.is_some()),
            ("port", m.port.is_some()),
            ("sourceLabels", m.source_labels.is_some()),
            ("gateways", m.gateways.is_some()),
            ("ignoreUriCase", m.ignore_uri_case == Some(true)),
            ("withoutHeaders", m.without_headers.is_some()),
            ("sourceNamespace", m.source_namespace.is_some()),
        ] {
            if set {
                p.add(
                    format!("{field}.{name}"),
                    format!(
 "provider skipper routes A/B traffic by headers, queryParams and method only, and cannot match on {name}; remove it, or use istio or gatewayapi:v1"
                    ),
                );
            }
        }
        for (name, sm) in m.headers.iter().flatten() {
            let field = format!("{field}.headers.{name}");
            match skipper_pattern(&mut p, &field, sm) {
                Some(Pattern::Exact(v)) => out.push(format!(
                    "Header({}, {})",
                    eskip_string(name),
                    eskip_string(&v)
                )),
                Some(Pattern::Regex(r)) => out.push(format!(
                    "HeaderRegexp({}, {})",
                    eskip_string(name),
                    eskip_string(&r)
                )),
                None => {}
            }
        }
        for (name, sm) in m.query_params.iter().flatten() {
            let field = format!("{field}.queryParams.{name}");
            let regex = match skipper_pattern(&mut p, &field, sm) {
                Some(Pattern::Exact(v)) => format!("^{}$", regex_syntax::escape(&v)),
                Some(Pattern::Regex(r)) => r,
                None => continue,
            };
            out.push(format!(
                "QueryParam({}, {})",
                eskip_string(name),
                eskip_string(&regex)
            ));
        }
        if let Some(method) = &m.method {
            match method.exact.as_deref() {
                Some(v)
                    if !v.is_empty()
                        && method.prefix.is_none()
                        && method.suffix.is_none()
                        && method.regex.is_none() =>
                {
                    out.push(format!("Method({})", eskip_string(&v.to_ascii_uppercase())));
                }
                _ => p.add(
                    format!("{field}.method"),
 "provider skipper matches the method exactly only; write exact: GET (or another method)",
                ),
            }
        }
    }
    if p.0.is_empty() { Ok(out) } else { Err(p.0) }
}

/// `analysis.match` as Gloo route matchers (`gateway.solo.io/v1` `RouteTable` routes): one
/// matcher per entry (Gloo routes a request that any matcher of the route matches), each with
/// the entry's `headers` (a `withoutHeaders` entry as an inverted header matcher),
/// `queryParams` and exact `method`; or every condition Gloo's matchers cannot express (with its
/// field under `base`). Values are matched whole (Envoy's full-match regular expressions), so a
/// prefix or suffix becomes an expression with the literal escaped.
pub fn gloo_matchers(
    base: &str,
    matches: &[HttpMatchRequest],
) -> Result<Vec<serde_json::Value>, Vec<Problem>> {
    let mut p = Problems::default();
    let mut out = Vec::new();
    for (i, m) in matches.iter().enumerate() {
        let field = format!("{base}[{i}]");
        let problems_before = p.0.len();
        for (name, set) in [
            ("uri", m.uri.is_some()),
            ("scheme", m.scheme.is_some()),
            ("authority", m.authority.is_some()),
            ("port", m.port.is_some()),
            ("sourceLabels", m.source_labels.is_some()),
            ("gateways", m.gateways.is_some()),
            ("ignoreUriCase", m.ignore_uri_case == Some(true)),
            ("sourceNamespace", m.source_namespace.is_some()),
        ] {
            if set {
                p.add(
                    format!("{field}.{name}"),
                    format!(
 "provider gloo routes A/B traffic by headers, withoutHeaders, queryParams and method only, and cannot match on {name}{why}; remove it",
                        why = if name == "uri" {
                            " (the RouteTable's routes take their path from the VirtualService that delegates to it)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        let mut matcher = serde_json::Map::new();
        let mut headers = Vec::new();
        for (list, invert, key) in [
            (&m.headers, false, "headers"),
            (&m.without_headers, true, "withoutHeaders"),
        ] {
            for (name, sm) in list.iter().flatten() {
                let field = format!("{field}.{key}.{name}");
                if let Some((value, regex)) = gloo_value(&mut p, &field, sm) {
                    let mut h = serde_json::json!({"name": name, "value": value});
                    if regex {
                        h["regex"] = true.into();
                    }
                    if invert {
                        h["invertMatch"] = true.into();
                    }
                    headers.push(h);
                }
            }
        }
        let mut params = Vec::new();
        for (name, sm) in m.query_params.iter().flatten() {
            let field = format!("{field}.queryParams.{name}");
            if let Some((value, regex)) = gloo_value(&mut p, &field, sm) {
                let mut q = serde_json::json!({"name": name, "value": value});
                if regex {
                    q["regex"] = true.into();
                }
                params.push(q);
            }
        }
        let mut methods = Vec::new();
        if let Some(method) = &m.method {
            match method.exact.as_deref() {
                Some(v)
                    if !v.is_empty()
                        && method.prefix.is_none()
                        && method.suffix.is_none()
                        && method.regex.is_none() =>
                {
                    methods.push(serde_json::Value::from(v.to_ascii_uppercase()));
                }
                _ => p.add(
                    format!("{field}.method"),
 "provider gloo matches the method exactly only; write exact: GET (or another method)",
                ),
            }
        }
        for (key, list) in [
            ("headers", headers),
            ("queryParameters", params),
            ("methods", methods),
        ] {
            if !list.is_empty() {
                matcher.insert(key.into(), serde_json::Value::Array(list));
            }
        }
        if matcher.is_empty() && p.0.len() == problems_before {
            p.add(
                field,
                "an A/B match entry for provider gloo needs headers, withoutHeaders, queryParams or a method",
            );
        }
        out.push(serde_json::Value::Object(matcher));
    }
    if p.0.is_empty() { Ok(out) } else { Err(p.0) }
}

/// The retry events an App Mesh HTTP route takes (`spec.service.retries.retryOn`).
pub const APPMESH_RETRY_EVENTS: &[&str] = &[
    "server-error",
    "gateway-error",
    "client-error",
    "stream-error",
];

/// What App Mesh's routes can express: A/B matches on headers only (at most 10 entries of at
/// most 10 headers), one `spec.service.match` entry with a URI prefix, App Mesh's retry
/// events, a numeric target port (v1beta2), a mesh name (v1beta1); no header rewriting, CORS,
/// mirroring or traffic policy.
pub fn appmesh_problems(provider: &str, spec: &CanarySpec) -> Vec<Problem> {
    let mut p = Problems::default();
    check_appmesh(&mut p, provider, spec);
    p.0
}

fn check_appmesh(p: &mut Problems, provider: &str, spec: &CanarySpec) {
    let svc = &spec.service;
    for (field, set) in [
        ("spec.service.headers", svc.headers.is_some()),
        ("spec.service.rewrite", svc.rewrite.is_some()),
        ("spec.service.corsPolicy", svc.cors_policy.is_some()),
        (
            "spec.service.mirror",
            svc.mirror.as_ref().is_some_and(|m| !m.is_empty()),
        ),
        ("spec.service.trafficPolicy", svc.traffic_policy.is_some()),
    ] {
        if set {
            p.add(
                field,
                format!(
                    "provider {provider} has no App Mesh form for it (Flagger ignores it); remove it, or use istio"
                ),
            );
        }
    }
    if provider == "appmesh" && svc.mesh_name.as_deref().is_none_or(str::is_empty) {
        p.add(
            "spec.service.meshName",
            "provider appmesh (App Mesh v1beta1) needs the mesh of the virtual nodes; name it",
        );
    }
    if provider == "appmesh"
        && svc.timeout.as_deref().is_some_and(|t| !t.is_empty())
        && svc.hosts.as_ref().is_none_or(Vec::is_empty)
    {
        p.add(
            "spec.service.timeout",
            "provider appmesh (App Mesh v1beta1) has no route timeout (it only goes to the gateway annotation, with spec.service.hosts); remove it, or use appmesh:v1beta2",
        );
    }
    if provider == "appmesh:v1beta2"
        && let Some(IntOrString::String(name)) = &svc.target_port
    {
        p.add(
            "spec.service.targetPort",
            format!(
                "provider appmesh:v1beta2 writes the container port into the virtual node's listener and needs it as a number, not the port name {name:?}"
            ),
        );
    }
    if let Some(list) = &svc.r#match {
        if list.len() > 1 {
            p.add(
                "spec.service.match",
                format!("provider {provider} takes one entry (a URI prefix for the route)"),
            );
        }
        for (i, m) in list.iter().enumerate() {
            let others = HttpMatchRequest {
                uri: None,
                name: None,
                ..m.clone()
            };
            if others != HttpMatchRequest::default() {
                p.add(
                    format!("spec.service.match[{i}]"),
                    format!(
                        "provider {provider} routes by a URI prefix only: give uri.prefix alone"
                    ),
                );
            }
            if m.uri.as_ref().is_some_and(|u| {
                u.prefix.is_none() || u.exact.is_some() || u.regex.is_some() || u.suffix.is_some()
            }) {
                p.add(
                    format!("spec.service.match[{i}].uri"),
                    format!(
                        "provider {provider} routes by a URI prefix only: give uri.prefix alone"
                    ),
                );
            }
        }
    }
    if let Some(retries) = &svc.retries {
        for event in retries.retry_on.as_deref().unwrap_or_default().split(',') {
            let event = event.trim();
            if !event.is_empty() && !APPMESH_RETRY_EVENTS.contains(&event) {
                p.add(
                    "spec.service.retries.retryOn",
                    format!(
                        "{event:?} is not an App Mesh HTTP retry event of provider {provider}; use {}",
                        APPMESH_RETRY_EVENTS.join(", ")
                    ),
                );
            }
        }
    }
    let matches = spec
        .analysis
        .as_ref()
        .and_then(|a| a.r#match.as_deref())
        .unwrap_or(&[]);
    if matches.len() > 10 {
        p.add(
            "spec.analysis.match",
            format!("provider {provider} takes at most 10 entries (one route each); merge some"),
        );
    }
    for (i, m) in matches.iter().enumerate() {
        let field = format!("spec.analysis.match[{i}]");
        let other = HttpMatchRequest {
            headers: None,
            name: None,
            ..m.clone()
        };
        let headers = m.headers.as_ref().map_or(0, BTreeMap::len);
        if other != HttpMatchRequest::default() {
            p.add(
                &field,
                format!(
                    "provider {provider} matches A/B traffic on headers only (as Flagger); remove the other conditions, or use istio or gatewayapi:v1"
                ),
            );
        } else if headers == 0 || headers > 10 {
            p.add(
                &field,
                format!("provider {provider} needs 1 to 10 header conditions per entry"),
            );
        }
    }
}

/// A value a Gloo matcher matches whole: the exact value, or a regular expression (`true`).
fn gloo_value(p: &mut Problems, field: &str, sm: &StringMatch) -> Option<(String, bool)> {
    let pattern = skipper_pattern(p, field, sm)?;
    Some(if let Some(v) = &sm.prefix {
        (format!("{}.*", regex_syntax::escape(v)), true)
    } else if let Some(v) = &sm.suffix {
        (format!(".*{}", regex_syntax::escape(v)), true)
    } else {
        match pattern {
            Pattern::Exact(v) => (v, false),
            Pattern::Regex(r) => (r, true),
        }
    })
}

/// A value Skipper matches: exactly, or by an RE2 regular expression.
enum Pattern {
    Exact(String),
    Regex(String),
}

/// `sm` as one [`Pattern`]: prefix and suffix become anchored expressions; a problem under
/// `field` when it sets none or several.
fn skipper_pattern(p: &mut Problems, field: &str, sm: &StringMatch) -> Option<Pattern> {
    let set = [&sm.exact, &sm.prefix, &sm.suffix, &sm.regex]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set != 1 {
        p.add(field, "set exactly one of exact, prefix, suffix and regex");
        return None;
    }
    if let Some(v) = &sm.exact {
        return Some(Pattern::Exact(v.clone()));
    }
    if let Some(v) = &sm.prefix {
        return Some(Pattern::Regex(format!("^{}", regex_syntax::escape(v))));
    }
    if let Some(v) = &sm.suffix {
        return Some(Pattern::Regex(format!("{}$", regex_syntax::escape(v))));
    }
    let regex = sm.regex.clone().unwrap_or_default();
    if let Err(e) = regex_syntax::Parser::new().parse(&regex) {
        p.add(
            format!("{field}.regex"),
            format!("is not a valid regular expression: {e}"),
        );
        return None;
    }
    Some(Pattern::Regex(regex))
}

/// `s` as a double-quoted string of Skipper's route language (eskip): `\` and `"` escaped.
fn eskip_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// What fledge's HTTPProxy routes match on: headers, by their exact value.
fn check_contour_match(p: &mut Problems, field: &str, m: &HttpMatchRequest) {
    let other = HttpMatchRequest {
        headers: None,
        name: None,
        ..m.clone()
    };
    if other != HttpMatchRequest::default() {
        p.add(
            field,
            "provider contour matches A/B traffic on headers only (exact values); remove the \
             other conditions, or use istio or gatewayapi:v1",
        );
    }
    for (name, sm) in m.headers.iter().flatten() {
        if sm.exact.is_none() || sm.prefix.is_some() || sm.suffix.is_some() || sm.regex.is_some() {
            p.add(
                format!("{field}.headers.{name}"),
                "provider contour matches a header by its exact value only; write exact",
            );
        }
    }
}

/// The Gateway API providers: their HTTPRoute matches less than Istio's `HTTPMatchRequest`.
const GATEWAY_API_PROVIDERS: &[&str] = &["gatewayapi:v1", "gatewayapi:v1beta1"];

/// What an HTTPRoute match cannot express: no scheme, authority, port, source or gateway
/// conditions, no negative header matches, no case-insensitive URI, methods only exactly.
fn check_gateway_api_match(p: &mut Problems, provider: &str, field: &str, m: &HttpMatchRequest) {
    for (name, set) in [
        ("scheme", m.scheme.is_some()),
        ("authority", m.authority.is_some()),
        ("port", m.port.is_some()),
        ("sourceLabels", m.source_labels.is_some()),
        ("gateways", m.gateways.is_some()),
        ("withoutHeaders", m.without_headers.is_some()),
        ("sourceNamespace", m.source_namespace.is_some()),
        ("ignoreUriCase", m.ignore_uri_case == Some(true)),
    ] {
        if set {
            p.add(
                format!("{field}.{name}"),
                format!(
                    "provider {provider} routes with an HTTPRoute, which cannot match on {name}; \
                     match on uri, method, headers (cookies through the cookie header) or \
                     queryParams, or use istio"
                ),
            );
        }
    }
    if let Some(method) = &m.method
        && method.exact.is_none()
    {
        p.add(
            format!("{field}.method"),
            format!(
                "provider {provider} matches a method exactly only; write method: {{exact: GET}}"
            ),
        );
    }
}

fn check_provider(p: &mut Problems, provider: Option<&str>) {
    let Some(provider) = provider.filter(|s| !s.is_empty()) else {
        return;
    };
    if SUPPORTED_PROVIDERS.contains(&provider) {
        return;
    }
    let supported = SUPPORTED_PROVIDERS.join(", ");
    if UNSUPPORTED_FLAGGER_PROVIDERS.contains(&provider) {
        p.add(
            "spec.provider",
            format!("provider {provider:?} is not supported by fledge yet; supported: {supported}"),
        );
    } else if let Some(known) = SUPPORTED_PROVIDERS
        .iter()
        .chain(UNSUPPORTED_FLAGGER_PROVIDERS)
        .find(|k| k.eq_ignore_ascii_case(provider))
    {
        p.add(
            "spec.provider",
            format!(
                "provider {provider:?} is unknown; provider names are lower case: write {known:?}"
            ),
        );
    } else if provider == "gatewayapi" {
        p.add(
            "spec.provider",
            "provider \"gatewayapi\" needs its API version: write \"gatewayapi:v1\" or \"gatewayapi:v1beta1\"",
        );
    } else {
        p.add(
            "spec.provider",
            format!("provider {provider:?} is unknown; use one of: {supported}"),
        );
    }
}

/// The Ingress an ingress provider copies: named, and an Ingress.
fn check_ingress_ref(p: &mut Problems, provider: &str, spec: &CanarySpec) {
    let copied = (
        "spec.ingressRef",
        "ingressRef",
        "networking.k8s.io/v1",
        "Ingress",
    );
    check_copied_ref(p, provider, copied, spec.ingress_ref.as_ref(), spec);
}

/// The ApisixRoute the apisix provider copies: named, and an ApisixRoute.
fn check_route_ref(p: &mut Problems, spec: &CanarySpec) {
    let copied = (
        "spec.routeRef",
        "routeRef",
        "apisix.apache.org/v2",
        "ApisixRoute",
    );
    check_copied_ref(p, "apisix", copied, spec.route_ref.as_ref(), spec);
}

/// The user's routing object a provider copies, `(field, key, apiVersion, kind)`: named, and
/// of that kind.
fn check_copied_ref(
    p: &mut Problems,
    provider: &str,
    (field, key, api_version, want): (&str, &str, &str, &str),
    reference: Option<&LocalObjectReference>,
    spec: &CanarySpec,
) {
    match reference {
        None => p.add(
            field,
            format!(
                "is required by provider {provider}: name the {want} ({api_version}) that routes \
                 to the Service {apex}, e.g. {key}: {{apiVersion: {api_version}, kind: {want}, \
                 name: {apex}}}",
                apex = spec.apex_service_name(),
            ),
        ),
        Some(r) => {
            if let Some(kind) = r.kind.as_deref().filter(|k| !k.is_empty() && *k != want) {
                p.add(
                    format!("{field}.kind"),
                    format!(
                        "provider {provider} copies an {want}, not a {kind}; write kind: {want}"
                    ),
                );
            }
        }
    }
}

fn check_target_ref(p: &mut Problems, spec: &CanarySpec) {
    let target = &spec.target_ref;
    match target.kind.as_deref().filter(|k| !k.is_empty()) {
        None | Some("Deployment") | Some("DaemonSet") => {}
        Some("StatefulSet") => check_statefulset(p, spec),
        Some("Service") if spec.targets_knative() => {}
        Some("Service") => p.add(
            "spec.targetRef.apiVersion",
            format!(
                "kind Service is a Knative Service, apiVersion {KNATIVE_API_VERSION} (with \
                 provider knative), not {:?}; for a Kubernetes workload use Deployment, \
                 DaemonSet or StatefulSet",
                target.api_version.as_deref().unwrap_or_default()
            ),
        ),
        Some(kind) => {
            let hint = ["Deployment", "DaemonSet", "StatefulSet"]
                .into_iter()
                .find(|k| k.eq_ignore_ascii_case(kind))
                .map(|k| format!(" (kinds are case-sensitive: write {k})"))
                .unwrap_or_default();
            p.add(
                "spec.targetRef.kind",
                format!("kind {kind:?} is unknown; use Deployment, DaemonSet or StatefulSet{hint}"),
            )
        }
    }
    if target.name.is_empty() {
        p.add(
            "spec.targetRef.name",
            "is empty; set it to the name of the Deployment, DaemonSet or StatefulSet to roll out",
        );
    } else if let Err(message) = dns1123_subdomain(&target.name) {
        p.add("spec.targetRef.name", message);
    } else if spec.service.name.as_deref().is_none_or(str::is_empty) {
        // The apex Service takes the target's name; Service names are stricter.
        if let Err(message) = service_name(&target.name) {
            p.add(
                "spec.targetRef.name",
                format!("is also the name of the generated Services, and {message}; or set spec.service.name"),
            );
        }
    }
}

/// A StatefulSet is rolled out in place through its partition: what needs a second copy of
/// the workload (mirroring, A/B matching at no weight, a fresh baseline) cannot be done. With
/// the `kubernetes` provider the traffic follows the pods; behind a router, the router splits
/// it between Services selecting the pods by revision.
fn check_statefulset(p: &mut Problems, spec: &CanarySpec) {
    let a = spec.analysis_or_default();
    let base = "spec.analysis";
    match spec.strategy() {
        crate::Strategy::Canary => {}
        crate::Strategy::AbTesting => p.add(
            format!("{base}.match"),
            "A/B matching needs a router in front of two copies of the workload; a StatefulSet \
             is rolled out in place, pod by pod: remove match and use stepReplicas",
        ),
        crate::Strategy::BlueGreen | crate::Strategy::BlueGreenMirror => p.add(
            format!("{base}.iterations"),
            "blue/green needs a second copy of the workload; a StatefulSet is rolled out in \
             place, pod by pod: set stepReplicas (or stepWeight/stepWeights, read as a percentage \
             of the replicas)",
        ),
    }
    if a.mirror == Some(true) {
        p.add(
            format!("{base}.mirror"),
            "mirroring needs a second copy of the workload; a StatefulSet has none: remove it",
        );
    }
    if let Some(j) = &a.judge
        && j.fresh_baseline()
    {
        p.add(
            format!("{base}.judge.baseline"),
            "a fresh baseline is a copy of the primary, and a StatefulSet has none: write \
             baseline: primary (the pods still on the promoted revision)",
        );
    }
    if spec.autoscaler_ref.is_some() {
        p.add(
            "spec.autoscalerRef",
            "a StatefulSet target keeps its own autoscaler (there is no primary to give one); \
             remove autoscalerRef",
        );
    }
    if let Some(step) = &a.step_replicas {
        if a.step_weight.is_some() || a.step_weights.is_some() {
            p.add(
                format!("{base}.stepReplicas"),
                "is set with stepWeight or stepWeights; keep one of them",
            );
        }
        match step {
            IntOrString::Int(n) if *n < 1 => p.add(
                format!("{base}.stepReplicas"),
                format!("{n} is not a number of pods of 1 or more"),
            ),
            IntOrString::Int(_) => {}
            IntOrString::String(s) => {
                if crate::step_replicas_percent(s).is_none() {
                    p.add(
                        format!("{base}.stepReplicas"),
                        format!(
                            "{s:?} is neither a number of pods nor a percentage of the replicas \
                             from 1% to 100% (write 1 or \"20%\")"
                        ),
                    );
                }
            }
        }
    }
}

fn check_autoscaler_ref(p: &mut Problems, spec: &CanarySpec) {
    let Some(a) = &spec.autoscaler_ref else {
        return;
    };
    match a.kind.as_deref() {
        Some("HorizontalPodAutoscaler") | Some("ScaledObject") => {}
        None | Some("") => p.add(
            "spec.autoscalerRef.kind",
            "is required: HorizontalPodAutoscaler or ScaledObject",
        ),
        Some(kind) => p.add(
            "spec.autoscalerRef.kind",
            format!("kind {kind:?} is unknown; use HorizontalPodAutoscaler or ScaledObject"),
        ),
    }
    p.check("spec.autoscalerRef.name", required_name(&a.name));
    if let Some(r) = &a.primary_scaler_replicas {
        let field = "spec.autoscalerRef.primaryScalerReplicas";
        if let Some(min) = r.min_replicas
            && min < 0
        {
            p.add(
                format!("{field}.minReplicas"),
                format!("{min} is negative; use 0 or more"),
            );
        }
        if let Some(max) = r.max_replicas
            && max < 1
        {
            p.add(
                format!("{field}.maxReplicas"),
                format!("{max} is less than 1; use 1 or more"),
            );
        }
        if let (Some(min), Some(max)) = (r.min_replicas, r.max_replicas)
            && min > max
        {
            p.add(
                format!("{field}.minReplicas"),
                format!("{min} is greater than maxReplicas {max}; lower minReplicas or raise maxReplicas"),
            );
        }
    }
}

/// A Knative Service target and the `knative` provider go together; Knative routes between
/// the Service's Revisions by weight and scales them itself.
fn check_knative(p: &mut Problems, spec: &CanarySpec, provider: &str) {
    if provider != "knative" {
        p.add(
            "spec.provider",
            format!(
                "the target is a Knative Service, whose traffic Knative routes between its \
                 Revisions; write provider: knative (not {provider})"
            ),
        );
        return;
    }
    if !spec.targets_knative() {
        p.add(
            "spec.targetRef",
            format!(
                "provider knative rolls out a Knative Service; write apiVersion: \
                 {KNATIVE_API_VERSION} and kind: Service, or choose another provider for a {}",
                spec.target_ref.kind.as_deref().unwrap_or("Deployment")
            ),
        );
        return;
    }
    if spec.autoscaler_ref.is_some() {
        p.add(
            "spec.autoscalerRef",
            "provider knative: Knative scales each Revision itself (its autoscaling annotations); \
             remove autoscalerRef",
        );
    }
    let a = spec.analysis_or_default();
    if a.iterations.is_some_and(|i| i > 0) && a.r#match.as_ref().is_none_or(Vec::is_empty) {
        p.add(
            "spec.analysis.iterations",
            "provider knative shifts traffic between Revisions by weight; blue/green would leave \
             the new Revision without traffic to analyse: set stepWeight (with maxWeight) or \
             stepWeights instead",
        );
    }
    if !spec.service.is_unset() {
        p.add(
            "spec.service",
            "provider knative generates no Services (the Knative Service routes to its \
             Revisions); remove spec.service",
        );
    }
}

/// The problem of a Canary without `spec.service` (or with a port of 0: the two read the same).
const UNSET_PORT: &str = "0 is not a port number; use 1 to 65535 (spec.service, the Services \
                          fledge generates, is required by every provider but knative)";

fn check_service(p: &mut Problems, s: &CanaryService) {
    if s.is_unset() {
        p.add("spec.service.port", UNSET_PORT);
        return;
    }
    if !(1..=65535).contains(&s.port) {
        p.add(
            "spec.service.port",
            format!("{} is not a port number; use 1 to 65535", s.port),
        );
    }
    if let Some(name) = s.name.as_deref().filter(|n| !n.is_empty()) {
        p.check("spec.service.name", service_name(name));
    }
    if let Some(name) = s.port_name.as_deref().filter(|n| !n.is_empty()) {
        p.check("spec.service.portName", port_name(name));
    }
    match &s.target_port {
        Some(IntOrString::Int(port)) if !(1..=65535).contains(port) => p.add(
            "spec.service.targetPort",
            format!("{port} is not a port number; use 1 to 65535, or the name of a container port"),
        ),
        Some(IntOrString::String(name)) => p.check("spec.service.targetPort", port_name(name)),
        _ => {}
    }
    if let Some(t) = s.traffic_distribution.as_deref().filter(|t| !t.is_empty()) {
        p.check(
            "spec.service.trafficDistribution",
            one_of(t, &["PreferClose", "PreferSameZone", "PreferSameNode"]),
        );
    }
    check_duration(p, "spec.service.timeout", s.timeout.as_deref(), true);
    check_duration(
        p,
        "spec.service.backendTimeout",
        s.backend_timeout.as_deref(),
        true,
    );
    if let Some(r) = &s.retries {
        if r.attempts < 0 {
            p.add(
                "spec.service.retries.attempts",
                format!("{} is negative; use 0 or more", r.attempts),
            );
        }
        check_duration(
            p,
            "spec.service.retries.perTryTimeout",
            r.per_try_timeout.as_deref(),
            false,
        );
    }
    for (i, host) in s.hosts.iter().flatten().enumerate() {
        if host.trim().is_empty() {
            p.add(
                format!("spec.service.hosts[{i}]"),
                "is empty; write a host name such as app.example.com or remove it",
            );
        }
    }
    for (i, m) in s.r#match.iter().flatten().enumerate() {
        check_http_match(p, &format!("spec.service.match[{i}]"), m);
    }
    if let Some(rw) = &s.rewrite
        && let Some(t) = rw.r#type.as_deref().filter(|t| !t.is_empty())
    {
        p.check(
            "spec.service.rewrite.type",
            one_of(t, &["ReplaceFullPath", "ReplacePrefixMatch"]),
        );
    }
    for (i, m) in s.mirror.iter().flatten().enumerate() {
        let field = format!("spec.service.mirror[{i}].backendRef");
        p.check(format!("{field}.name"), required_name(&m.backend_ref.name));
        if let Some(port) = m.backend_ref.port {
            p.check(format!("{field}.port"), port_number(port));
        }
        if let Some(ns) = &m.backend_ref.namespace {
            p.check(format!("{field}.namespace"), namespace(ns));
        }
    }
    for (i, g) in s.gateway_refs.iter().flatten().enumerate() {
        let field = format!("spec.service.gatewayRefs[{i}]");
        p.check(format!("{field}.name"), required_name(&g.name));
        if let Some(port) = g.port {
            p.check(format!("{field}.port"), port_number(port));
        }
        if let Some(ns) = g.namespace.as_deref().filter(|n| !n.is_empty()) {
            p.check(format!("{field}.namespace"), namespace(ns));
        }
    }
    if let Some(cors) = &s.cors_policy {
        check_duration(
            p,
            "spec.service.corsPolicy.maxAge",
            cors.max_age.as_deref(),
            true,
        );
        for (i, o) in cors.allow_origins.iter().flatten().enumerate() {
            check_string_match(p, &format!("spec.service.corsPolicy.allowOrigins[{i}]"), o);
        }
    }
    if let Some(tp) = &s.traffic_policy {
        check_traffic_policy(p, tp);
    }
}

fn check_traffic_policy(p: &mut Problems, tp: &crate::canary::TrafficPolicy) {
    let base = "spec.service.trafficPolicy";
    if let Some(http) = tp.connection_pool.as_ref().and_then(|c| c.http.as_ref()) {
        check_duration(
            p,
            &format!("{base}.connectionPool.http.idleTimeout"),
            http.idle_timeout.as_deref(),
            false,
        );
        if let Some(v) = http.h2_upgrade_policy.as_deref().filter(|v| !v.is_empty()) {
            p.check(
                format!("{base}.connectionPool.http.h2UpgradePolicy"),
                one_of(v, &["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]),
            );
        }
    }
    if let Some(lb) = &tp.load_balancer {
        if let Some(v) = lb.simple.as_deref().filter(|v| !v.is_empty()) {
            p.check(
                format!("{base}.loadBalancer.simple"),
                one_of(
                    v,
                    &[
                        "ROUND_ROBIN",
                        "LEAST_CONN",
                        "RANDOM",
                        "PASSTHROUGH",
                        "LEAST_REQUEST",
                    ],
                ),
            );
        }
        check_duration(
            p,
            &format!("{base}.loadBalancer.warmupDurationSecs"),
            lb.warmup_duration_secs.as_deref(),
            true,
        );
        if let Some(cookie) = lb
            .consistent_hash
            .as_ref()
            .and_then(|c| c.http_cookie.as_ref())
        {
            if cookie.name.is_empty() {
                p.add(
                    format!("{base}.loadBalancer.consistentHash.httpCookie.name"),
                    "is empty; name the cookie to hash on",
                );
            }
            check_duration(
                p,
                &format!("{base}.loadBalancer.consistentHash.httpCookie.ttl"),
                cookie.ttl.as_deref(),
                true,
            );
        }
    }
    if let Some(od) = &tp.outlier_detection {
        check_duration(
            p,
            &format!("{base}.outlierDetection.interval"),
            od.interval.as_deref(),
            false,
        );
        check_duration(
            p,
            &format!("{base}.outlierDetection.baseEjectionTime"),
            od.base_ejection_time.as_deref(),
            false,
        );
        check_percent(
            p,
            &format!("{base}.outlierDetection.maxEjectionPercent"),
            od.max_ejection_percent,
            0,
        );
        check_percent(
            p,
            &format!("{base}.outlierDetection.minHealthPercent"),
            od.min_health_percent,
            0,
        );
    }
    if let Some(tls) = &tp.tls
        && let Some(mode) = tls.mode.as_deref().filter(|v| !v.is_empty())
    {
        p.check(
            format!("{base}.tls.mode"),
            one_of(mode, &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]),
        );
    }
}

fn check_analysis(p: &mut Problems, spec: &CanarySpec, provider: &str, a: &CanaryAnalysis) {
    let base = "spec.analysis";
    check_duration(p, &format!("{base}.interval"), a.interval.as_deref(), false);
    if let Some(n) = a.iterations
        && n < 0
    {
        p.add(
            format!("{base}.iterations"),
            format!("{n} is negative; use 0 or more"),
        );
    }
    if let Some(n) = a.threshold
        && n < 1
    {
        p.add(
            format!("{base}.threshold"),
            format!("{n} is less than 1: it is the number of failed checks that rolls back; use 1 or more"),
        );
    }
    check_percent(p, &format!("{base}.maxWeight"), a.max_weight, 1);
    check_percent(p, &format!("{base}.stepWeight"), a.step_weight, 1);
    check_percent(
        p,
        &format!("{base}.stepWeightPromotion"),
        a.step_weight_promotion,
        1,
    );
    check_percent(p, &format!("{base}.mirrorWeight"), a.mirror_weight, 1);
    check_percent(
        p,
        &format!("{base}.primaryReadyThreshold"),
        a.primary_ready_threshold,
        1,
    );
    check_percent(
        p,
        &format!("{base}.canaryReadyThreshold"),
        a.canary_ready_threshold,
        1,
    );

    let steps = a.step_weights.as_deref().unwrap_or_default();
    let mut previous: Option<i32> = None;
    for (i, &w) in steps.iter().enumerate() {
        if !(1..=100).contains(&w) {
            p.add(
                format!("{base}.stepWeights[{i}]"),
                format!("{w} is not a percentage between 1 and 100"),
            );
        } else if let Some(prev) = previous
            && w <= prev
        {
            p.add(
                format!("{base}.stepWeights[{i}]"),
                format!(
                    "{w} is not greater than the step before it ({prev}); steps must increase, e.g. [5, 10, 25, 50]"
                ),
            );
        }
        previous = Some(w);
    }

    let has_step_weight = a.step_weight.is_some_and(|w| w > 0);
    let has_step_weights = !steps.is_empty();
    let has_weights = has_step_weight || has_step_weights;
    let has_match = a.r#match.as_ref().is_some_and(|m| !m.is_empty());
    let iterations = a.iterations.unwrap_or(0) > 0;
    let mirror = a.mirror.unwrap_or(false);

    if has_step_weight && has_step_weights {
        p.add(
            format!("{base}.stepWeight"),
            "is set together with stepWeights; keep one: stepWeights lists every step, stepWeight adds the same amount at each step up to maxWeight",
        );
    }
    if let (Some(step), None) = (a.step_weight, a.step_weights.as_ref())
        && step > a.max_weight()
        && (1..=100).contains(&step)
        && (1..=100).contains(&a.max_weight())
    {
        p.add(
            format!("{base}.stepWeight"),
            format!(
                "{step} is greater than maxWeight {}: the first step would pass the maximum; lower stepWeight or raise maxWeight",
                a.max_weight()
            ),
        );
    }

    // The strategy, and whether the provider can run it. What an unsupported or unknown
    // provider can do is not checked: spec.provider already has a problem.
    let known_provider = SUPPORTED_PROVIDERS.contains(&provider);
    if a.step_replicas.is_some() && !spec.targets_statefulset() {
        p.add(
            format!("{base}.stepReplicas"),
            "moves pods of a StatefulSet (targetRef.kind: StatefulSet); for this target use stepWeight or stepWeights",
        );
    }
    if spec.targets_statefulset() {
        // Checked by check_statefulset: the weights are pods' shares, not a router's.
        if !has_weights && a.step_replicas.is_none() && !iterations && !spec.skip_analysis {
            p.add(
                format!("{base}.stepReplicas"),
                "a StatefulSet is rolled out pod by pod: set stepReplicas (pods per step, e.g. 1), or stepWeight/stepWeights read as a percentage of the replicas",
            );
        }
    } else if provider == "kubernetes" {
        if has_step_weight {
            p.add(
                format!("{base}.stepWeight"),
                "provider kubernetes does not support traffic weights: it switches all traffic at once (blue/green); remove stepWeight and set iterations",
            );
        }
        if has_step_weights {
            p.add(
                format!("{base}.stepWeights"),
                "provider kubernetes does not support traffic weights: it switches all traffic at once (blue/green); remove stepWeights and set iterations",
            );
        }
        if !iterations && !spec.skip_analysis {
            p.add(
                format!("{base}.iterations"),
                "provider kubernetes does blue/green only, which needs iterations: set the number of analysis runs before promotion, e.g. 10",
            );
        }
    } else if has_match {
        if !iterations {
            p.add(
                format!("{base}.iterations"),
                "A/B testing (analysis.match) needs iterations: set the number of analysis runs before promotion, e.g. 10",
            );
        }
    } else if iterations && has_weights {
        p.add(
            format!("{base}.iterations"),
            "is set together with stepWeight/stepWeights: iterations means blue/green (Flagger ignores the weights), weights mean a progressive canary; remove one",
        );
    } else if !iterations && !has_weights && !spec.skip_analysis {
        p.add(
            base,
            "has no traffic steps: set stepWeight (with maxWeight) or stepWeights for a progressive canary, iterations for blue/green, or match with iterations for A/B testing",
        );
    }
    if provider == "traefik" && has_match {
        p.add(
            format!("{base}.match"),
            "provider traefik routes through a TraefikService, which cannot match requests by \
             header, cookie or query parameter, so A/B testing is not possible; remove \
             analysis.match, or use provider gatewayapi:v1 (Traefik serves HTTPRoutes too)",
        );
    } else if known_provider
        && !spec.targets_statefulset()
        && has_match
        && !HTTP_MATCH_PROVIDERS.contains(&provider)
    {
        p.add(
            format!("{base}.match"),
            format!(
                "provider {provider} cannot route by header, cookie or query parameter, so A/B testing is not supported; use {}",
                HTTP_MATCH_PROVIDERS.join(" or ")
            ),
        );
    }
    // With iterations: blue/green with mirroring. With weights: one mirrored step before the
    // first weighted step, as Flagger does. Neither needs a report here.
    if mirror && known_provider && !MIRROR_PROVIDERS.contains(&provider) {
        p.add(
            format!("{base}.mirror"),
            format!(
                "provider {provider} cannot mirror traffic; mirroring needs {}",
                MIRROR_PROVIDERS.join(" or ")
            ),
        );
    }

    for (i, m) in a.r#match.iter().flatten().enumerate() {
        check_http_match(p, &format!("{base}.match[{i}]"), m);
    }
    check_metrics(p, a.metrics.as_deref().unwrap_or_default());
    check_judge(p, spec, a);
    if let Some(limit) = a.inconclusive_limit
        && limit < 1
    {
        p.add(
            format!("{base}.inconclusiveLimit"),
            format!("{limit} is not a number of steps; write 1 or more, or leave it out to never pause on inconclusive steps"),
        );
    }
    check_webhooks(p, a.webhooks.as_deref().unwrap_or_default());
    check_alerts(p, a.alerts.as_deref().unwrap_or_default());
    if let Some(sa) = &a.session_affinity {
        check_session_affinity(p, known_provider.then_some(provider), sa);
    }
}

/// `spec.analysis.judge` and the metrics' `judge` blocks.
fn check_judge(p: &mut Problems, spec: &CanarySpec, a: &CanaryAnalysis) {
    let base = "spec.analysis.judge";
    let metrics = a.metrics.as_deref().unwrap_or_default();
    let judged: Vec<(usize, &CanaryMetric)> = metrics
        .iter()
        .enumerate()
        .filter(|(_, m)| m.judge.is_some())
        .collect();
    let Some(j) = &a.judge else {
        for (i, _) in judged {
            p.add(
                format!("spec.analysis.metrics[{i}].judge"),
                "compares the metric with a baseline, which needs spec.analysis.judge (type: \
                 statistical); add it, or remove this block to keep fixed thresholds",
            );
        }
        return;
    };
    if j.r#type != "statistical" {
        p.add(
            format!("{base}.type"),
            format!(
                "{:?} is not a kind of judgement; write statistical",
                j.r#type
            ),
        );
    }
    if !matches!(j.baseline.as_deref(), None | Some("" | "fresh" | "primary")) {
        p.add(
            format!("{base}.baseline"),
            format!(
                "{:?} is not a baseline; write fresh (a new <target>-baseline Deployment, the \
                 default) or primary",
                j.baseline.as_deref().unwrap_or_default()
            ),
        );
    }
    let kind = spec.target_ref.kind.as_deref().unwrap_or("Deployment");
    if j.fresh_baseline() && kind != "Deployment" {
        p.add(
            format!("{base}.baseline"),
            format!(
                "a fresh baseline is a copy of the primary Deployment, and the target is a {kind}; \
                 write baseline: primary"
            ),
        );
    }
    if let Some(c) = j.confidence
        && !(c > 0.5 && c < 1.0)
    {
        p.add(
            format!("{base}.confidence"),
            format!("{c} is not a confidence between 0.5 and 1 (exclusive); e.g. 0.98"),
        );
    }
    if let Some(t) = &j.score_thresholds {
        let marginal = t.marginal.unwrap_or(75.0);
        let pass = t.pass.unwrap_or(95.0);
        for (name, v) in [("marginal", t.marginal), ("pass", t.pass)] {
            if let Some(v) = v
                && !(0.0..=100.0).contains(&v)
            {
                p.add(
                    format!("{base}.scoreThresholds.{name}"),
                    format!("{v} is not a score; scores go from 0 to 100"),
                );
            }
        }
        if marginal > pass {
            p.add(
                format!("{base}.scoreThresholds"),
                format!(
                    "marginal {marginal} is above pass {pass}; a step under marginal fails and \
                     one from pass on passes cleanly, so marginal must not exceed pass"
                ),
            );
        }
    }
    let mut groups = BTreeMap::new();
    for (i, g) in j.groups.iter().flatten().enumerate() {
        let field = format!("{base}.groups[{i}]");
        if g.name.trim().is_empty() {
            p.add(format!("{field}.name"), "is empty; name the group");
        } else if let Some(first) = groups.insert(g.name.as_str(), i) {
            p.add(
                format!("{field}.name"),
                format!(
                    "{:?} is already groups[{first}]; group names must be unique",
                    g.name
                ),
            );
        }
        if !(g.weight.is_finite() && g.weight > 0.0) {
            p.add(
                format!("{field}.weight"),
                format!("{} is not a positive weight", g.weight),
            );
        }
    }
    if judged.is_empty() {
        p.add(
            base,
            "no metric has a judge block, so nothing would be compared; add judge: {} (with \
             its direction) to the metrics to compare, or remove spec.analysis.judge",
        );
    }
    for (i, m) in judged {
        let field = format!("spec.analysis.metrics[{i}]");
        let Some(mj) = &m.judge else { continue };
        if m.template_ref.is_none() {
            p.add(
                format!("{field}.judge"),
                format!(
                    "{:?} has no MetricTemplate; a judged metric needs a templateRef whose query \
                     uses {{{{ target }}}} and returns one series per pod (a range query is run \
                     for the canary and for the baseline)",
                    m.name
                ),
            );
        }
        if m.threshold_range.is_some() || m.threshold.is_some() {
            p.add(
                format!("{field}.thresholdRange"),
                "a judged metric is compared with the baseline, not with a fixed range; remove \
                 thresholdRange (or the judge block, to keep the range)",
            );
        }
        if let Some(g) = mj.group.as_deref()
            && !groups.is_empty()
            && !groups.contains_key(g)
        {
            p.add(
                format!("{field}.judge.group"),
                format!(
                    "{g:?} is not among spec.analysis.judge.groups ({}); add it there or fix the name",
                    groups.keys().copied().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        let choice =
            |v: Option<&str>, ok: &[&str]| v.is_none_or(|v| v.is_empty() || ok.contains(&v));
        if !choice(mj.direction.as_deref(), &["increase", "decrease", "either"]) {
            p.add(
                format!("{field}.judge.direction"),
                "is not a direction; write increase (higher is worse), decrease (lower is worse) or either",
            );
        }
        if !choice(mj.nan_strategy.as_deref(), &["remove", "replace"]) {
            p.add(
                format!("{field}.judge.nanStrategy"),
                "is not a choice; write remove (drop NaN values) or replace (count them as 0)",
            );
        }
        if !choice(mj.outliers.as_deref(), &["iqr", "none"]) {
            p.add(
                format!("{field}.judge.outliers"),
                "is not a choice; write iqr (drop far outliers, the default) or none",
            );
        }
        if let Some(e) = &mj.effect_size {
            check_effect_size(p, &format!("{field}.judge.effectSize"), e);
        }
    }
}

/// An effect size's bounds: increases at or above no change, decreases at or below it, critical
/// beyond allowed.
fn check_effect_size(p: &mut Problems, field: &str, e: &crate::EffectSizeSpec) {
    let (neutral, unit, lo, hi) = match e.measure.unwrap_or_default() {
        crate::EffectMeasureName::MeanRatio => (1.0, "a ratio of means", 0.0, f64::INFINITY),
        crate::EffectMeasureName::Cles => (0.5, "a probability", 0.0, 1.0),
    };
    let bounds = [
        ("allowedIncrease", e.allowed_increase, true),
        ("criticalIncrease", e.critical_increase, true),
        ("allowedDecrease", e.allowed_decrease, false),
        ("criticalDecrease", e.critical_decrease, false),
    ];
    for (name, v, up) in bounds {
        let Some(v) = v else { continue };
        let ok =
            v.is_finite() && v >= lo && v <= hi && if up { v >= neutral } else { v <= neutral };
        if !ok {
            let side = if up { "at or above" } else { "at or below" };
            p.add(
                format!("{field}.{name}"),
                format!("{v} is not {unit} {side} {neutral} (no change)"),
            );
        }
    }
    if let (Some(a), Some(c)) = (e.allowed_increase, e.critical_increase)
        && c < a
    {
        p.add(
            format!("{field}.criticalIncrease"),
            format!(
                "{c} is below allowedIncrease {a}; a critical change is at least an allowed one"
            ),
        );
    }
    if let (Some(a), Some(c)) = (e.allowed_decrease, e.critical_decrease)
        && c > a
    {
        p.add(
            format!("{field}.criticalDecrease"),
            format!(
                "{c} is above allowedDecrease {a}; a critical decrease is at least an allowed one"
            ),
        );
    }
}

fn check_metrics(p: &mut Problems, metrics: &[CanaryMetric]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in metrics.iter().enumerate() {
        let field = format!("spec.analysis.metrics[{i}]");
        if m.name.trim().is_empty() {
            p.add(
                format!("{field}.name"),
                "is empty; name the check, e.g. request-success-rate or the name of its MetricTemplate",
            );
        } else if let Some(first) = seen.insert(&m.name, i) {
            seen.insert(&m.name, first);
            p.add(
                format!("{field}.name"),
                format!(
                    "{:?} is already the name of metrics[{first}]; metric names must be unique",
                    m.name
                ),
            );
        }
        check_duration(
            p,
            &format!("{field}.interval"),
            m.interval.as_deref(),
            false,
        );
        if let Some(t) = m.threshold
            && !t.is_finite()
        {
            p.add(format!("{field}.threshold"), "is not a finite number");
        }
        if let Some(r) = &m.threshold_range {
            for (bound, v) in [("min", r.min), ("max", r.max)] {
                if let Some(v) = v
                    && !v.is_finite()
                {
                    p.add(
                        format!("{field}.thresholdRange.{bound}"),
                        "is not a finite number",
                    );
                }
            }
            match (r.min, r.max) {
                (None, None) => p.add(
                    format!("{field}.thresholdRange"),
                    "has neither min nor max; set the lowest passing value (min), the highest (max), or both",
                ),
                (Some(min), Some(max)) if min > max => p.add(
                    format!("{field}.thresholdRange"),
                    format!("min {min} is greater than max {max}: no value could pass; swap them or widen the range"),
                ),
                _ => {}
            }
        }
        let builtin = BUILTIN_METRICS.contains(&m.name.as_str());
        match (&m.template_ref, m.query.as_deref()) {
            (Some(t), _) => {
                p.check(format!("{field}.templateRef.name"), required_name(&t.name));
                if let Some(ns) = t.namespace.as_deref().filter(|n| !n.is_empty()) {
                    p.check(format!("{field}.templateRef.namespace"), namespace(ns));
                }
            }
            (None, Some(q)) if q.trim().is_empty() => p.add(
                format!("{field}.query"),
                "is empty; write the PromQL query, or better, move it to a MetricTemplate and reference it with templateRef",
            ),
            (None, Some(_)) => {}
            (None, None) if builtin => {}
            (None, None) if !m.name.trim().is_empty() => p.add(
                format!("{field}.templateRef"),
                format!(
                    "is missing: {:?} is not a builtin metric ({}); reference a MetricTemplate with templateRef",
                    m.name,
                    BUILTIN_METRICS.join(", ")
                ),
            ),
            (None, None) => {}
        }
        if m.no_data_policy().is_none() {
            p.add(
                format!("{field}.noData"),
                format!(
                    "{:?} is not a choice; write fail (no data fails the check, the default), skip (the step is judged without it and counts as inconclusive) or pass",
                    m.no_data.as_deref().unwrap_or_default()
                ),
            );
        }
        for key in m.template_variables.iter().flat_map(|v| v.keys()) {
            if !is_identifier(key) {
                p.add(
                    format!("{field}.templateVariables"),
                    format!(
                        "{key:?} cannot be used as {{{{ variables.{key} }}}}: use letters, digits and '_', starting with a letter"
                    ),
                );
            }
        }
    }
}

fn check_webhooks(p: &mut Problems, hooks: &[CanaryWebhook]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, h) in hooks.iter().enumerate() {
        let field = format!("spec.analysis.webhooks[{i}]");
        if h.name.trim().is_empty() {
            p.add(
                format!("{field}.name"),
                "is empty; name the webhook, e.g. load-test",
            );
        } else if let Some(first) = seen.insert(&h.name, i) {
            seen.insert(&h.name, first);
            p.add(
                format!("{field}.name"),
                format!(
                    "{:?} is already the name of webhooks[{first}]; webhook names must be unique",
                    h.name
                ),
            );
        }
        if h.hook_type().is_none() {
            let known: Vec<&str> = HookType::ALL.iter().map(|t| t.as_str()).collect();
            p.add(
                format!("{field}.type"),
                format!(
                    "{:?} is not a webhook type; use one of: {}",
                    h.r#type.as_deref().unwrap_or_default(),
                    known.join(", ")
                ),
            );
        }
        if h.url.trim().is_empty() {
            p.add(
                format!("{field}.url"),
                "is empty; write the absolute http(s) URL the webhook is sent to, e.g. http://fledge-loadtester.test/",
            );
        } else {
            p.check(format!("{field}.url"), http_url(&h.url));
        }
        check_duration(p, &format!("{field}.timeout"), h.timeout.as_deref(), false);
        if let Some(n) = h.retries
            && n < 0
        {
            p.add(
                format!("{field}.retries"),
                format!("{n} is negative; use 0 or more"),
            );
        }
    }
}

fn check_alerts(p: &mut Problems, alerts: &[CanaryAlert]) {
    for (i, a) in alerts.iter().enumerate() {
        let field = format!("spec.analysis.alerts[{i}]");
        if a.name.trim().is_empty() {
            p.add(
                format!("{field}.name"),
                "is empty; name the alert, e.g. on-call",
            );
        }
        if let Some(s) = a.severity.as_deref().filter(|s| !s.is_empty()) {
            p.check(
                format!("{field}.severity"),
                one_of(s, &["info", "warn", "error"]),
            );
        }
        if a.provider_ref.name.is_empty() {
            p.add(
                format!("{field}.providerRef.name"),
                "is empty; set it to the name of an AlertProvider",
            );
        } else {
            p.check(
                format!("{field}.providerRef.name"),
                dns1123_subdomain(&a.provider_ref.name),
            );
        }
        if let Some(ns) = a
            .provider_ref
            .namespace
            .as_deref()
            .filter(|n| !n.is_empty())
        {
            p.check(format!("{field}.providerRef.namespace"), namespace(ns));
        }
    }
}

/// `provider` is `None` when it is not one fledge supports.
fn check_session_affinity(p: &mut Problems, provider: Option<&str>, sa: &SessionAffinity) {
    let base = "spec.analysis.sessionAffinity";
    if let Some(provider) = provider
        && !SESSION_AFFINITY_PROVIDERS.contains(&provider)
    {
        p.add(
            base,
            format!(
                "provider {provider} cannot route by cookie, so session affinity is not supported; use {}",
                SESSION_AFFINITY_PROVIDERS.join(" or ")
            ),
        );
    }
    if provider == Some("traefik") {
        // Traefik's sticky cookie keeps primary and canary clients alike, under one name, and
        // has no Partitioned attribute.
        if sa
            .primary_cookie_name
            .as_deref()
            .is_some_and(|n| !n.is_empty())
        {
            p.add(
                format!("{base}.primaryCookieName"),
                "provider traefik keeps clients of the primary and of the canary with one sticky \
                 cookie (cookieName); remove primaryCookieName",
            );
        }
        if sa.partitioned == Some(true) {
            p.add(
                format!("{base}.partitioned"),
                "provider traefik's sticky cookie has no Partitioned attribute; remove it",
            );
        }
    }
    match sa.cookie_name.as_deref() {
        None | Some("") => p.add(
            format!("{base}.cookieName"),
            "is required: name the cookie that keeps users on the canary, e.g. fledge-cookie",
        ),
        Some(name) => p.check(format!("{base}.cookieName"), cookie_name(name)),
    }
    if let Some(name) = sa.primary_cookie_name.as_deref().filter(|n| !n.is_empty()) {
        if let Err(message) = cookie_name(name) {
            p.add(format!("{base}.primaryCookieName"), message);
        } else if sa.cookie_name.as_deref() == Some(name) {
            p.add(
                format!("{base}.primaryCookieName"),
                "is the same as cookieName; the primary and canary cookies need different names",
            );
        }
    }
    if let Some(age) = sa.max_age
        && age <= 0
    {
        p.add(
            format!("{base}.maxAge"),
            format!(
                "{age} is not a number of seconds greater than 0; remove it for the default {}",
                defaults::SESSION_AFFINITY_MAX_AGE
            ),
        );
    }
    if let Some(s) = sa.same_site.as_deref().filter(|s| !s.is_empty()) {
        p.check(
            format!("{base}.sameSite"),
            one_of(s, &["Strict", "Lax", "None"]),
        );
    }
}

fn check_http_match(p: &mut Problems, field: &str, m: &HttpMatchRequest) {
    for (name, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            check_string_match(p, &format!("{field}.{name}"), sm);
        }
    }
    for (name, map) in [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (key, sm) in map.iter().flatten() {
            if key.is_empty() {
                p.add(
                    format!("{field}.{name}"),
                    "has an empty name; write the header or parameter name",
                );
            }
            check_string_match(p, &format!("{field}.{name}.{key}"), sm);
        }
    }
    if let Some(port) = m.port {
        p.check(format!("{field}.port"), port_number(port));
    }
}

fn check_string_match(p: &mut Problems, field: &str, m: &StringMatch) {
    let set: Vec<&str> = [
        ("exact", &m.exact),
        ("prefix", &m.prefix),
        ("suffix", &m.suffix),
        ("regex", &m.regex),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some())
    .map(|(k, _)| k)
    .collect();
    match set.len() {
        0 => p.add(
            field,
            "sets no match; set one of exact, prefix, suffix or regex",
        ),
        1 => {}
        _ => p.add(
            field,
            format!(
                "sets {}; set only one of exact, prefix, suffix or regex",
                set.join(" and ")
            ),
        ),
    }
    if let Some(re) = &m.regex
        && let Err(e) = regex_syntax::Parser::new().parse(re)
    {
        let kind = e.to_string();
        let reason = kind
            .lines()
            .last()
            .unwrap_or("invalid")
            .trim_start_matches("error: ")
            .to_string();
        p.add(
            format!("{field}.regex"),
            format!("is not a valid regular expression ({reason}); write an RE2 expression such as \".*Firefox.*\""),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// MetricTemplate
// ---------------------------------------------------------------------------------------------

/// Every problem of a MetricTemplate spec.
pub fn validate_metric_template_spec(spec: &MetricTemplateSpec) -> Vec<Problem> {
    let mut p = Problems::default();
    let provider = &spec.provider;
    if let Some(t) = provider.r#type.as_deref().filter(|t| !t.is_empty())
        && !SUPPORTED_METRIC_PROVIDERS.contains(&t)
    {
        let supported = SUPPORTED_METRIC_PROVIDERS.join(", ");
        if UNSUPPORTED_FLAGGER_METRIC_PROVIDERS.contains(&t) {
            p.add(
                "spec.provider.type",
                format!(
                    "metrics provider {t:?} is not supported by fledge yet; supported: {supported}"
                ),
            );
        } else {
            p.add(
                "spec.provider.type",
                format!("metrics provider {t:?} is unknown; use {supported}"),
            );
        }
    }
    // How an unsupported provider uses its address is not checked.
    if SUPPORTED_METRIC_PROVIDERS.contains(&spec.provider_type())
        && let Some(address) = provider.address.as_deref().filter(|a| !a.is_empty())
    {
        p.check("spec.provider.address", http_url(address));
    }
    for name in provider.headers.iter().flat_map(|h| h.keys()) {
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            p.add(
                "spec.provider.headers",
                format!("{name:?} is not an HTTP header name; use letters, digits and '-', e.g. X-Scope-OrgID"),
            );
        }
    }
    if let Some(secret) = &provider.secret_ref {
        check_secret_ref(&mut p, "spec.provider.secretRef", secret);
    }
    let kind = spec.provider_type();
    if METRIC_PROVIDERS_NEEDING_SECRET.contains(&kind) && provider.secret_ref.is_none() {
        p.add(
            "spec.provider.secretRef",
            format!("is required for the {kind} provider; name the Secret holding its credentials (see the provider's documentation for the keys)"),
        );
    }
    if METRIC_PROVIDERS_NEEDING_ADDRESS.contains(&kind)
        && provider.address.as_deref().is_none_or(str::is_empty)
    {
        p.add(
            "spec.provider.address",
            format!("is required for the {kind} provider; write the base URL of its API"),
        );
    }
    if METRIC_PROVIDERS_NEEDING_REGION.contains(&kind)
        && provider
            .region
            .as_deref()
            .is_none_or(|r| r.trim().is_empty())
    {
        p.add(
            "spec.provider.region",
            format!("is required for the {kind} provider; write the region of its metrics, e.g. us-east-1"),
        );
    }
    if spec.query.trim().is_empty() {
        p.add(
            "spec.query",
            "is empty; write the query, e.g. sum(rate(http_requests_total{namespace=\"{{ namespace }}\"}[{{ interval }}]))",
        );
    } else {
        let problems = template_problems(&spec.query);
        let well_formed = problems.is_empty();
        for message in problems {
            p.add("spec.query", message);
        }
        if well_formed && let Some(message) = query_shape_problem(kind, &spec.query) {
            p.add("spec.query", message);
        }
    }
    p.0
}

/// What is wrong with the shape a provider needs its query in (CloudWatch: a JSON array of
/// MetricDataQuery; Keptn: `keptnmetric/…` or `analysis/…`), judged before rendering: each
/// `{{ ... }}` stands for a value.
fn query_shape_problem(kind: &str, query: &str) -> Option<String> {
    let mut rendered = String::new();
    let mut rest = query;
    while let Some(open) = rest.find("{{") {
        rendered.push_str(&rest[..open]);
        rendered.push('0');
        let after = &rest[open + 2..];
        rest = after.find("}}").map_or("", |close| &after[close + 2..]);
    }
    rendered.push_str(rest);
    match kind {
        "cloudwatch" => {
            const HOW: &str = "write a JSON array of MetricDataQuery objects, e.g. [{\"Id\": \"e1\", \"Expression\": \"m1 / m2\"}, …]";
            let value: serde_json::Value = match serde_json::from_str(&rendered) {
                Ok(v) => v,
                Err(e) => return Some(format!("is not JSON ({e}); {HOW}")),
            };
            let Some(items) = value.as_array().filter(|a| !a.is_empty()) else {
                return Some(format!("is not a non-empty JSON array; {HOW}"));
            };
            items.iter().enumerate().find_map(|(i, q)| {
                let has_id = q
                    .as_object()
                    .is_some_and(|o| o.keys().any(|k| k.eq_ignore_ascii_case("id")));
                (!has_id).then(|| format!("item {i} is not a MetricDataQuery with an Id; {HOW}"))
            })
        }
        "keptn" => {
            let lower = rendered.trim().to_lowercase();
            let parts: Vec<&str> = lower.split('/').collect();
            let kind_ok = matches!(
                parts[0],
                "keptnmetric" | "keptnmetrics" | "analysis" | "analyses"
            );
            let named = parts.len() >= 3 && !parts[1].is_empty() && !parts[2].is_empty();
            (!kind_ok || !named).then(|| {
                "is not a Keptn query; write keptnmetric/<namespace>/<name> or analysis/<namespace>/<analysis definition>/<timeframe>/<key>=<value>;…".to_string()
            })
        }
        _ => None,
    }
}

/// The problems of the `{{ ... }}` actions of a MetricTemplate query, one message each
/// (duplicates folded).
fn template_problems(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |m: String| {
        if !out.contains(&m) {
            out.push(m);
        }
    };
    let mut rest = query;
    let mut consumed = 0usize;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            let line = query[..consumed + open].matches('\n').count() + 1;
            push(format!(
                "has an unclosed {{{{ on line {line}; close it with }}}}, e.g. {{{{ namespace }}}}"
            ));
            break;
        };
        let inner = &after[..close];
        let body = inner.trim_start_matches('-').trim_end_matches('-').trim();
        if let Some(m) = template_action_problem(body, inner) {
            push(m);
        }
        let step = open + 2 + close + 2;
        consumed += step;
        rest = &rest[step..];
    }
    out
}

pub(crate) fn template_action_problem(body: &str, raw: &str) -> Option<String> {
    let known = TEMPLATE_VARIABLES.join(", ");
    if body.is_empty() {
        return Some(format!(
            "has an empty {{{{ }}}}; write a variable inside, one of: {known}, variables.NAME"
        ));
    }
    if raw.contains("{{") {
        return Some("has {{ inside {{ ... }}; close each variable before opening the next".into());
    }
    if TEMPLATE_VARIABLES.contains(&body) {
        return None;
    }
    if let Some(var) = body.strip_prefix("variables.") {
        return if is_identifier(var) {
            None
        } else {
            Some(format!(
                "uses {{{{ {body} }}}}: {var:?} is not a variable name; use letters, digits and '_', starting with a letter"
            ))
        };
    }
    if let Some(call) = crate::template::Printf::parse(body) {
        let call = match call {
            Ok(c) => c,
            Err(problem) => return Some(problem),
        };
        for arg in &call.args {
            if let crate::template::Arg::Var(v) = arg {
                let known_var = TEMPLATE_VARIABLES.contains(&v.as_str())
                    || v.strip_prefix("variables.").is_some_and(is_identifier);
                if !known_var {
                    return Some(format!(
                        "uses the unknown variable {v} in {{{{ {body} }}}}; use one of {known}, variables.NAME, or a quoted string"
                    ));
                }
            }
        }
        return None;
    }
    let first = body.split_whitespace().next().unwrap_or(body);
    if body.contains(char::is_whitespace) || body.contains('|') || body.contains('(') {
        return Some(format!(
            "uses the template function {first:?} in {{{{ {body} }}}}; fledge supports printf and no other template function: use the variables directly ({known}, variables.NAME)"
        ));
    }
    if let Some(stripped) = body.strip_prefix('.')
        && (TEMPLATE_VARIABLES.contains(&stripped) || stripped.starts_with("variables."))
    {
        return Some(format!(
            "uses {{{{ {body} }}}}; write {{{{ {stripped} }}}} without the dot"
        ));
    }
    if is_identifier(body) {
        return Some(format!(
            "uses the unknown variable {{{{ {body} }}}}; use one of {known}, or pass it from the Canary's templateVariables as {{{{ variables.{body} }}}}"
        ));
    }
    Some(format!(
        "uses the unknown variable {{{{ {body} }}}}; use one of {known}, variables.NAME"
    ))
}

// ---------------------------------------------------------------------------------------------
// AlertProvider
// ---------------------------------------------------------------------------------------------

/// Every problem of an AlertProvider spec.
pub fn validate_alert_provider_spec(spec: &AlertProviderSpec) -> Vec<Problem> {
    let mut p = Problems::default();
    let t = spec.r#type.as_str();
    if t.is_empty() {
        p.add(
            "spec.type",
            format!("is empty; use one of: {}", ALERT_PROVIDER_TYPES.join(", ")),
        );
    } else if !ALERT_PROVIDER_TYPES.contains(&t) {
        p.add(
            "spec.type",
            format!(
                "{t:?} is not an alert provider type; use one of: {}",
                ALERT_PROVIDER_TYPES.join(", ")
            ),
        );
    }
    let address = spec.address.as_deref().filter(|a| !a.trim().is_empty());
    if let Some(a) = address {
        p.check("spec.address", http_url(a));
    }
    if let Some(proxy) = spec.proxy.as_deref().filter(|a| !a.trim().is_empty()) {
        p.check("spec.proxy", proxy_url(proxy));
    }
    if let Some(link) = spec
        .link_template
        .as_deref()
        .filter(|a| !a.trim().is_empty())
    {
        let sample = link
            .replace("{namespace}", "namespace")
            .replace("{name}", "name");
        p.check("spec.linkTemplate", http_url(&sample));
    }
    match &spec.secret_ref {
        Some(secret) => check_secret_ref(&mut p, "spec.secretRef", secret),
        None if address.is_none() => p.add(
            "spec.address",
            "is missing and no secretRef is set; set secretRef to a Secret with an address key (preferred: the URL is a secret), or set address",
        ),
        None => {}
    }
    p.0
}

fn check_secret_ref(p: &mut Problems, field: &str, secret: &SecretReference) {
    if secret.name.is_empty() {
        p.add(
            format!("{field}.name"),
            "is empty; set it to the name of a Secret in the same namespace",
        );
    } else {
        p.check(format!("{field}.name"), dns1123_subdomain(&secret.name));
    }
}

// ---------------------------------------------------------------------------------------------
// Value checks
// ---------------------------------------------------------------------------------------------

fn check_duration(p: &mut Problems, field: &str, value: Option<&str>, allow_zero: bool) {
    let Some(value) = value else {
        return;
    };
    match crate::parse_duration(value) {
        Err(e) => p.add(field, e.to_string()),
        Ok(d) if d.is_zero() && !allow_zero => p.add(
            field,
            format!("{value:?} is zero; write a duration greater than 0 such as 30s or 1m"),
        ),
        Ok(_) => {}
    }
}

fn check_percent(p: &mut Problems, field: &str, value: Option<i32>, min: i32) {
    if let Some(v) = value
        && !(min..=100).contains(&v)
    {
        p.add(
            field,
            format!("{v} is not a percentage between {min} and 100"),
        );
    }
}

fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        return Ok(());
    }
    let hint = allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value))
        .map(|a| format!(" (values are case-sensitive: write {a})"))
        .unwrap_or_default();
    Err(format!(
        "{value:?} is not one of: {}{hint}",
        allowed.join(", ")
    ))
}

fn port_number(port: i32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("{port} is not a port number; use 1 to 65535"))
    }
}

fn required_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("is empty; set the name of the object it refers to".into())
    } else {
        dns1123_subdomain(name)
    }
}

fn namespace(ns: &str) -> Result<(), String> {
    if ns.len() <= 63 && is_dns_label(ns) {
        Ok(())
    } else {
        Err(format!(
            "{ns:?} is not a namespace name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// An absolute `http` or `https` URL with a host. The message never contains the value: URLs
/// of webhooks and chat providers carry secrets.
pub fn http_url(value: &str) -> Result<(), String> {
    absolute_url(value, &["http", "https"], "http or https")
}

fn proxy_url(value: &str) -> Result<(), String> {
    absolute_url(
        value,
        &["http", "https", "socks5", "socks5h"],
        "http, https or socks5",
    )
}

fn absolute_url(value: &str, schemes: &[&str], expected: &str) -> Result<(), String> {
    if !value.contains("://") {
        return Err(format!(
            "is not an absolute URL; write it with its scheme, as {}://host[:port]/path",
            schemes[0]
        ));
    }
    match url::Url::parse(value) {
        Err(url::ParseError::RelativeUrlWithoutBase) => Err(format!(
            "is not an absolute URL: it has no scheme; write it as {}://host[:port]/path",
            schemes[0]
        )),
        Err(e) => Err(format!(
            "is not a valid URL ({e}); write it as {}://host[:port]/path",
            schemes[0]
        )),
        Ok(u) if !schemes.contains(&u.scheme()) => {
            let scheme = u.scheme();
            let shown = if scheme.len() <= 16 {
                format!("scheme {scheme:?}")
            } else {
                "another scheme".to_string()
            };
            Err(format!(
                "uses {shown}; use an {expected} URL such as {}://host[:port]/path",
                schemes[0]
            ))
        }
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Err(format!(
            "has no host; write it as {}://host[:port]/path",
            u.scheme()
        )),
        Ok(_) => Ok(()),
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A Kubernetes object name (DNS-1123 subdomain).
fn dns1123_subdomain(name: &str) -> Result<(), String> {
    if name.len() <= 253 && name.split('.').all(|l| l.len() <= 63 && is_dns_label(l)) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid Kubernetes name: use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// The apex Service name: a DNS-1035 label with room for the `-primary` suffix.
fn service_name(name: &str) -> Result<(), String> {
    const MAX: usize = 63 - "-primary".len();
    let starts_with_letter = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if name.len() <= MAX && is_dns_label(name) && starts_with_letter {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid Service name: use at most {MAX} lowercase letters, digits and '-' (fledge appends -primary and -canary), starting with a letter and ending with a letter or digit"
        ))
    }
}

/// A port name (IANA service name).
fn port_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && is_dns_label(name)
        && !name.contains("--")
        && name.bytes().any(|b| b.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid port name: use at most 15 lowercase letters, digits and '-', with at least one letter, e.g. http"
        ))
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn cookie_name(name: &str) -> Result<(), String> {
    if name.bytes().all(is_token_byte) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid cookie name; use letters, digits and '-' or '_' only"
        ))
    }
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
