//! The `Canary` resource: what to roll out, how to route it and how to judge it.
//!
//! Field names, types and meanings follow Flagger's `flagger.app/v1beta1` `Canary`, field for
//! field; fledge-only additions are marked "fledge extension".

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

pub use crate::status::*;
use crate::{KNATIVE_API_VERSION, defaults};

/// A progressive delivery of a Deployment, DaemonSet or StatefulSet: when its pod template (or a ConfigMap or
/// Secret it references) changes, fledge shifts traffic to the new revision in steps, analyses
/// it, and promotes or rolls it back.
//
// Large parts that few Canaries set (`gitops`, `autoscalerRef`, `analysis.judge`, the Istio-only
// `service.corsPolicy` and `service.trafficPolicy`, and the operator's requests in the status)
// are boxed: the controller's cache holds every Canary, and an unset field costs its whole fixed
// size unless it is boxed (the Canary type was 4,248 bytes before any content).
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "fledge.dev",
    version = "v1beta1",
    kind = "Canary",
    plural = "canaries",
    singular = "canary",
    namespaced,
    status = "CanaryStatus",
    category = "all",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.canaryWeight"}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend","priority":1}"#,
    printcolumn = r#"{"name":"FailedChecks","type":"integer","jsonPath":".status.failedChecks"}"#,
    printcolumn = r#"{"name":"Interval","type":"string","jsonPath":".spec.analysis.interval","priority":1}"#,
    printcolumn = r#"{"name":"Mirror","type":"boolean","jsonPath":".spec.analysis.mirror","priority":1}"#,
    printcolumn = r#"{"name":"StepWeight","type":"string","jsonPath":".spec.analysis.stepWeight","priority":1}"#,
    printcolumn = r#"{"name":"StepWeights","type":"string","jsonPath":".spec.analysis.stepWeights","priority":1}"#,
    printcolumn = r#"{"name":"MaxWeight","type":"string","jsonPath":".spec.analysis.maxWeight","priority":1}"#,
    printcolumn = r#"{"name":"LastTransitionTime","type":"string","jsonPath":".status.lastTransitionTime"}"#
)]
#[schemars(transform = crate::cel::canary_spec)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// Traffic provider that routes between primary and canary: `gatewayapi:v1` (the default),
    /// `gatewayapi:v1beta1`, `kubernetes` (blue/green by switching the apex Service), `istio`,
    /// `linkerd`, `smi:v1alpha2`, `smi:v1alpha3`. Flagger's other providers are accepted by the
    /// schema and reported by validation as not supported yet.
    #[schemars(extend("enum" = [
        "apisix", "appmesh", "appmesh:v1beta2", "contour", "gatewayapi:v1", "gatewayapi:v1beta1",
        "gloo", "istio", "knative", "kubernetes", "kuma", "linkerd", "nginx", "osm", "skipper",
        "smi:v1alpha1", "smi:v1alpha2", "smi:v1alpha3", "traefik"
    ]))]
    pub provider: Option<String>,

    /// Address of the Prometheus server used by the builtin metrics, e.g.
    /// `http://prometheus.monitoring:9090`. Defaults to the controller's `--metrics-server`.
    pub metrics_server: Option<String>,

    /// Seconds a canary or primary may take to become ready before the rollout is rolled back.
    /// Default 600.
    pub progress_deadline_seconds: Option<i32>,

    /// The workload under progressive delivery: a Deployment, DaemonSet or StatefulSet, or a
    /// Knative Service (`apiVersion: serving.knative.dev/v1`, provider `knative`).
    pub target_ref: LocalObjectReference,

    /// The autoscaler of the target; fledge copies it for the primary.
    pub autoscaler_ref: Option<Box<AutoscalerReference>>,

    /// An Ingress used by the ingress-based providers (nginx).
    pub ingress_ref: Option<LocalObjectReference>,

    /// An ApisixRoute used by the apisix provider.
    pub route_ref: Option<LocalObjectReference>,

    /// A Gloo Upstream used as a template by the gloo provider.
    pub upstream_ref: Option<CrossNamespaceObjectReference>,

    /// The Services fledge generates (`<name>`, `<name>-primary`, `<name>-canary`) and the
    /// routing options of the provider. Required by every provider but `knative`, whose
    /// Knative Service routes between its own Revisions.
    #[serde(default, skip_serializing_if = "CanaryService::is_unset")]
    pub service: CanaryService,

    /// The analysis: traffic steps, metric checks, webhooks and alerts.
    pub analysis: Option<CanaryAnalysis>,

    /// Promote new revisions without analysis (traffic is still switched through the router).
    #[serde(default)]
    pub skip_analysis: bool,

    /// On deletion of the Canary, restore the target workload and route all traffic to it before
    /// the generated objects are removed.
    #[serde(default)]
    pub revert_on_deletion: bool,

    /// Suspend the reconciliation: no rollout starts or advances while true.
    #[serde(default)]
    pub suspend: bool,

    /// fledge extension: record every rollout in Git (a ledger file per rollout) and revert the
    /// GitOps source when a rollout is rolled back.
    pub gitops: Option<Box<crate::gitops::GitOps>>,
}

/// A reference to an object in the Canary's namespace.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// API version of the referent, e.g. `apps/v1`.
    pub api_version: Option<String>,
    /// Kind of the referent. For `targetRef`: `Deployment` (default), `DaemonSet`,
    /// `StatefulSet` (rolled out through its partition) or `Service` (a Knative Service).
    pub kind: Option<String>,
    /// Name of the referent.
    pub name: String,
}

/// A reference to an object that may live in another namespace.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceObjectReference {
    /// API version of the referent.
    pub api_version: Option<String>,
    /// Kind of the referent.
    pub kind: Option<String>,
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent; the Canary's namespace when empty.
    pub namespace: Option<String>,
}

/// The autoscaler of the target workload.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerReference {
    /// API version of the autoscaler, e.g. `autoscaling/v2`.
    pub api_version: Option<String>,
    /// `HorizontalPodAutoscaler` or `ScaledObject`.
    pub kind: Option<String>,
    /// Name of the autoscaler.
    pub name: String,
    /// Queries that replace the target's queries in the primary's ScaledObject, by trigger name.
    pub primary_scaler_queries: Option<BTreeMap<String, String>>,
    /// Replica bounds of the primary's autoscaler, when they differ from the target's.
    pub primary_scaler_replicas: Option<ScalerReplicas>,
}

/// Replica bounds for an autoscaler.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalerReplicas {
    /// Minimum replicas.
    pub min_replicas: Option<i32>,
    /// Maximum replicas.
    pub max_replicas: Option<i32>,
}

/// The generated Services and the routing options of the provider.
///
/// Options few Canaries set are boxed: every cached Canary holds this struct inline, and each
/// of them would otherwise take its whole size there, set or not (the Canary is 2,312 bytes
/// before any content instead of 2,800).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryService {
    /// Name of the apex Service; `<name>-primary` and `<name>-canary` are derived from it.
    /// Defaults to the target's name.
    pub name: Option<String>,
    /// Port of the generated Services.
    pub port: i32,
    /// Name of the port. Default `http`.
    pub port_name: Option<String>,
    /// Application protocol of the port (e.g. `http`, `kubernetes.io/h2c`).
    pub app_protocol: Option<String>,
    /// Traffic distribution preference of the generated Services.
    #[schemars(extend("enum" = ["PreferClose", "PreferSameZone", "PreferSameNode"]))]
    pub traffic_distribution: Option<String>,
    /// Container port number or name the Services target. Defaults to `port`.
    pub target_port: Option<IntOrString>,
    /// Add every other container port of the target to the generated Services.
    pub port_discovery: Option<bool>,
    /// Make the primary and canary Services headless.
    pub headless: Option<bool>,
    /// Request timeout set on the route, e.g. `30s`.
    pub timeout: Option<String>,
    /// Timeout for each request to a backend, e.g. `10s` (Gateway API).
    pub backend_timeout: Option<String>,
    /// AppMesh mesh name.
    pub mesh_name: Option<String>,
    /// AppMesh backends.
    pub backends: Option<Vec<String>>,
    /// Host names the route answers for.
    pub hosts: Option<Vec<String>>,
    /// Istio: make the VirtualService a delegate.
    pub delegation: Option<bool>,
    /// Istio: extra HTTP match conditions for the route.
    pub r#match: Option<Vec<HttpMatchRequest>>,
    /// Retry policy of the route.
    pub retries: Option<Box<HttpRetry>>,
    /// URI or authority rewrite.
    pub rewrite: Option<Box<HttpRewrite>>,
    /// Gateway API: extra backends that receive a copy of the traffic.
    pub mirror: Option<Vec<HttpRequestMirror>>,
    /// Request and response header operations.
    pub headers: Option<Box<HeaderOperations>>,
    /// Istio gateways the VirtualService binds to.
    pub gateways: Option<Vec<String>>,
    /// Gateway API: the Gateways the HTTPRoute attaches to.
    pub gateway_refs: Option<Vec<ParentReference>>,
    /// Istio: CORS policy.
    pub cors_policy: Option<Box<CorsPolicy>>,
    /// Istio: traffic policy of the DestinationRules.
    pub traffic_policy: Option<Box<TrafficPolicy>>,
    /// Labels and annotations of the apex Service.
    pub apex: Option<Box<CustomMetadata>>,
    /// Labels and annotations of the primary Service.
    pub primary: Option<Box<CustomMetadata>>,
    /// Labels and annotations of the canary Service.
    pub canary: Option<Box<CustomMetadata>>,
    /// Label and annotation keys on generated objects that fledge must leave to others.
    pub unmanaged_metadata: Option<Box<UnmanagedMetadata>>,
}

impl CanaryService {
    /// Whether nothing is set (a Canary without `spec.service`, as the `knative` provider's).
    pub fn is_unset(&self) -> bool {
        self == &CanaryService::default()
    }
}

/// Labels and annotations for a generated object.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct CustomMetadata {
    /// Labels to set.
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations to set.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Label and annotation keys fledge must not manage.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct UnmanagedMetadata {
    /// Annotation keys.
    pub annotations: Option<Vec<String>>,
    /// Label keys.
    pub labels: Option<Vec<String>>,
}

/// How a string is matched: exactly one of `exact`, `prefix`, `suffix` or `regex`.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct StringMatch {
    /// Exact match.
    pub exact: Option<String>,
    /// Prefix match.
    pub prefix: Option<String>,
    /// Suffix match.
    pub suffix: Option<String>,
    /// RE2 regular expression match.
    pub regex: Option<String>,
}

/// Conditions a request must meet (Istio `HTTPMatchRequest`; A/B testing uses `headers`,
/// `queryParams` and `sourceLabels`).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// Name of the match, for logs.
    pub name: Option<String>,
    /// URI match.
    pub uri: Option<StringMatch>,
    /// Scheme match.
    pub scheme: Option<StringMatch>,
    /// Method match.
    pub method: Option<StringMatch>,
    /// Authority match.
    pub authority: Option<StringMatch>,
    /// Header matches by header name (lower case). A cookie is matched through the `cookie`
    /// header, e.g. `regex: "^(.*?;)?(canary=always)(;.*)?$"`.
    pub headers: Option<BTreeMap<String, StringMatch>>,
    /// Port match.
    pub port: Option<i32>,
    /// Labels of the source workload.
    pub source_labels: Option<BTreeMap<String, String>>,
    /// Gateways the match applies to.
    pub gateways: Option<Vec<String>>,
    /// Query parameter matches by name.
    pub query_params: Option<BTreeMap<String, StringMatch>>,
    /// Match the URI case-insensitively.
    pub ignore_uri_case: Option<bool>,
    /// Headers that must not be present or must not match.
    pub without_headers: Option<BTreeMap<String, StringMatch>>,
    /// Namespace of the source workload.
    pub source_namespace: Option<String>,
}

/// Retry policy of a route.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    /// Number of retries.
    #[serde(default)]
    pub attempts: i32,
    /// Timeout of each try, e.g. `2s`.
    pub per_try_timeout: Option<String>,
    /// Conditions that trigger a retry, e.g. `gateway-error,connect-failure`.
    pub retry_on: Option<String>,
}

/// URI or authority rewrite.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HttpRewrite {
    /// Replacement URI (or prefix).
    pub uri: Option<String>,
    /// Replacement authority (Host header).
    pub authority: Option<String>,
    /// Gateway API rewrite type: `ReplaceFullPath` or `ReplacePrefixMatch`.
    pub r#type: Option<String>,
}

/// An extra backend that receives a copy of the requests (Gateway API).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestMirror {
    /// The backend.
    pub backend_ref: BackendObjectReference,
}

/// A Gateway API backend reference.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct BackendObjectReference {
    /// API group of the backend; empty for a Service.
    pub group: Option<String>,
    /// Kind of the backend; `Service` when empty.
    pub kind: Option<String>,
    /// Name of the backend.
    pub name: String,
    /// Namespace of the backend.
    pub namespace: Option<String>,
    /// Port of the backend.
    pub port: Option<i32>,
}

/// Header operations for requests and responses.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HeaderOperations {
    /// Operations on request headers.
    pub request: Option<HeaderOperation>,
    /// Operations on response headers.
    pub response: Option<HeaderOperation>,
}

/// Headers to add, set or remove.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HeaderOperation {
    /// Headers to append.
    pub add: Option<BTreeMap<String, String>>,
    /// Headers to overwrite.
    pub set: Option<BTreeMap<String, String>>,
    /// Header names to remove.
    pub remove: Option<Vec<String>>,
}

/// A Gateway API parent reference (a Gateway the HTTPRoute attaches to).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group of the parent; `gateway.networking.k8s.io` when empty.
    pub group: Option<String>,
    /// Kind of the parent; `Gateway` when empty.
    pub kind: Option<String>,
    /// Name of the parent.
    pub name: String,
    /// Namespace of the parent; the Canary's namespace when empty.
    pub namespace: Option<String>,
    /// Listener name within the Gateway.
    pub section_name: Option<String>,
    /// Listener port within the Gateway.
    pub port: Option<i32>,
}

/// Istio CORS policy.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Allowed origins (deprecated by Istio in favour of `allowOrigins`).
    pub allow_origin: Option<Vec<String>>,
    /// Allowed origins as string matches.
    pub allow_origins: Option<Vec<StringMatch>>,
    /// Allowed methods.
    pub allow_methods: Option<Vec<String>>,
    /// Allowed request headers.
    pub allow_headers: Option<Vec<String>>,
    /// Response headers browsers may read.
    pub expose_headers: Option<Vec<String>>,
    /// How long a preflight result may be cached, e.g. `24h`.
    pub max_age: Option<String>,
    /// Whether credentials may be sent.
    pub allow_credentials: Option<bool>,
}

/// Istio DestinationRule traffic policy.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Connection pool settings.
    pub connection_pool: Option<ConnectionPool>,
    /// Load balancer settings.
    pub load_balancer: Option<LoadBalancer>,
    /// Outlier detection settings.
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS settings for upstream connections.
    pub tls: Option<ClientTlsSettings>,
}

/// Istio connection pool settings.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ConnectionPool {
    /// HTTP connection pool settings.
    pub http: Option<HttpConnectionPool>,
}

/// Istio HTTP connection pool settings.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpConnectionPool {
    /// Maximum pending HTTP/1.1 requests.
    #[serde(rename = "http1MaxPendingRequests")]
    pub http1_max_pending_requests: Option<i32>,
    /// Maximum HTTP/2 requests.
    #[serde(rename = "http2MaxRequests")]
    pub http2_max_requests: Option<i32>,
    /// Maximum requests per connection.
    pub max_requests_per_connection: Option<i32>,
    /// Maximum retries outstanding.
    pub max_retries: Option<i32>,
    /// Idle timeout of upstream connections.
    pub idle_timeout: Option<String>,
    /// Whether to upgrade HTTP/1.1 connections to HTTP/2.
    #[serde(rename = "h2UpgradePolicy")]
    #[schemars(extend("enum" = ["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]))]
    pub h2_upgrade_policy: Option<String>,
}

/// Istio load balancer settings.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    /// Simple load balancing algorithm.
    #[schemars(extend("enum" = ["ROUND_ROBIN", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "LEAST_REQUEST"]))]
    pub simple: Option<String>,
    /// Consistent-hash load balancing.
    pub consistent_hash: Option<ConsistentHash>,
    /// Locality load balancing.
    pub locality_lb_setting: Option<LocalityLbSetting>,
    /// Warm-up duration of new endpoints.
    pub warmup_duration_secs: Option<String>,
}

/// Istio consistent-hash load balancing.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHash {
    /// Hash on a header.
    pub http_header_name: Option<String>,
    /// Hash on a cookie.
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the source IP.
    pub use_source_ip: Option<bool>,
    /// Hash on a query parameter.
    pub http_query_parameter_name: Option<String>,
    /// Minimum number of virtual nodes of the hash ring.
    pub minimum_ring_size: Option<i64>,
}

/// An Istio hash cookie.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HttpCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie path.
    pub path: Option<String>,
    /// Cookie lifetime.
    pub ttl: Option<String>,
}

/// Istio locality load balancing.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalityLbSetting {
    /// Traffic distribution across localities.
    pub distribute: Option<Vec<LocalityDistribute>>,
    /// Failover between regions.
    pub failover: Option<Vec<LocalityFailover>>,
    /// Enable locality load balancing.
    pub enabled: Option<bool>,
}

/// Istio locality distribution.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalityDistribute {
    /// Source locality.
    pub from: Option<String>,
    /// Destination localities and their weights.
    pub to: Option<BTreeMap<String, u32>>,
}

/// Istio locality failover.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalityFailover {
    /// Source region.
    pub from: Option<String>,
    /// Destination region.
    pub to: Option<String>,
}

/// Istio outlier detection.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Separate local-origin errors from external ones.
    pub split_external_local_origin_errors: Option<bool>,
    /// Consecutive local-origin failures before ejection.
    pub consecutive_local_origin_failures: Option<i32>,
    /// Consecutive gateway errors before ejection.
    pub consecutive_gateway_errors: Option<i32>,
    /// Consecutive 5xx errors before ejection.
    #[serde(rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<i32>,
    /// Deprecated: consecutive errors before ejection.
    pub consecutive_errors: Option<i32>,
    /// Interval between ejection sweeps.
    pub interval: Option<String>,
    /// Minimum ejection duration.
    pub base_ejection_time: Option<String>,
    /// Maximum percentage of hosts that may be ejected.
    pub max_ejection_percent: Option<i32>,
    /// Minimum healthy percentage for outlier detection to apply.
    pub min_health_percent: Option<i32>,
}

/// Istio client TLS settings.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsSettings {
    /// TLS mode.
    #[schemars(extend("enum" = ["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]))]
    pub mode: Option<String>,
    /// Client certificate file.
    pub client_certificate: Option<String>,
    /// Client private key file.
    pub private_key: Option<String>,
    /// CA certificates file.
    pub ca_certificates: Option<String>,
    /// Subject alternative names to verify.
    pub subject_alt_names: Option<Vec<String>>,
    /// SNI to present.
    pub sni: Option<String>,
}

/// The analysis of a rollout: traffic steps, checks, webhooks and alerts.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = crate::cel::canary_analysis)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAnalysis {
    /// Time between analysis steps, e.g. `30s`, `1m`. Default `1m`.
    pub interval: Option<String>,
    /// Number of analysis steps for A/B testing and blue/green (no weights).
    pub iterations: Option<i32>,
    /// Failed checks tolerated before the rollout is rolled back. Default 1.
    pub threshold: Option<i32>,
    /// Highest canary weight (percent) before promotion. Default 100.
    pub max_weight: Option<i32>,
    /// Canary weight added at each step (percent).
    pub step_weight: Option<i32>,
    /// Canary weights of each step (percent), strictly increasing; replaces `stepWeight`.
    pub step_weights: Option<Vec<i32>>,
    /// A StatefulSet target only: pods moved to the new revision at each step, a number (`1`)
    /// or a percentage of the replicas (`"20%"`); replaces `stepWeight` and `stepWeights`. The
    /// steps go up to all pods but one; promotion updates the last.
    pub step_replicas: Option<IntOrString>,
    /// Primary weight added at each promotion step; when unset promotion switches all traffic
    /// at once.
    pub step_weight_promotion: Option<i32>,
    /// Blue/green with mirroring: copy traffic to the canary while the primary answers.
    pub mirror: Option<bool>,
    /// Percentage of requests mirrored to the canary. Default 100 when mirroring.
    pub mirror_weight: Option<i32>,
    /// Percent of primary replicas that must be ready before traffic moves. Default 100.
    pub primary_ready_threshold: Option<i32>,
    /// Percent of canary replicas that must be ready before analysis. Default 100.
    pub canary_ready_threshold: Option<i32>,
    /// A/B testing: requests matching any of these go to the canary.
    pub r#match: Option<Vec<HttpMatchRequest>>,
    /// Metric checks run at every step.
    pub metrics: Option<Vec<CanaryMetric>>,
    /// Webhooks: gates, load generation, acceptance tests, events.
    pub webhooks: Option<Vec<CanaryWebhook>>,
    /// Chat alerts.
    pub alerts: Option<Vec<CanaryAlert>>,
    /// Keep users that reached the canary on it with a cookie.
    pub session_affinity: Option<SessionAffinity>,
    /// fledge extension: after this many analysis steps with an inconclusive metric (no data,
    /// with `noData: skip`), the rollout pauses for a person (`kubectl fledge promote`,
    /// `abort` or `resume`) instead of going on. Default: never.
    pub inconclusive_limit: Option<i32>,
    /// fledge extension: judge the metrics that carry a `judge` block statistically, the
    /// canary against a baseline (see [`crate::CanaryJudge`]). Without it every metric has
    /// fixed thresholds, as in Flagger.
    pub judge: Option<Box<crate::CanaryJudge>>,
}

/// A metric check.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(transform = crate::cel::canary_metric)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetric {
    /// Name of the check: a builtin (`request-success-rate`, `request-duration`) or any name
    /// with a `templateRef`.
    pub name: String,
    /// Range of the query, e.g. `1m`. Default: the analysis interval.
    pub interval: Option<String>,
    /// Deprecated form of `thresholdRange`: for `request-success-rate` a minimum, otherwise a
    /// maximum.
    pub threshold: Option<f64>,
    /// The range a passing value lies in.
    pub threshold_range: Option<CanaryThresholdRange>,
    /// Deprecated inline PromQL query; prefer a MetricTemplate.
    pub query: Option<String>,
    /// The MetricTemplate that holds the query.
    pub template_ref: Option<CrossNamespaceObjectReference>,
    /// Values for `{{ variables.NAME }}` in the template's query.
    pub template_variables: Option<BTreeMap<String, String>>,
    /// fledge extension: evaluate and report the check everywhere, but never count it as a
    /// failed check (to try a new check without risk).
    pub dry_run: Option<bool>,
    /// fledge extension: what a query without data means: `fail` (the default, as in
    /// Flagger), `skip` (the step is judged without it and counts as inconclusive) or `pass`.
    #[schemars(extend("enum" = ["", "fail", "skip", "pass"]))]
    pub no_data: Option<String>,
    /// fledge extension: with `spec.analysis.judge`, compare this metric between baseline and
    /// canary instead of checking a fixed range.
    pub judge: Option<crate::MetricJudge>,
}

/// Inclusive bounds of a passing metric value.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, JsonSchema)]
pub struct CanaryThresholdRange {
    /// Lowest passing value.
    pub min: Option<f64>,
    /// Highest passing value.
    pub max: Option<f64>,
}

/// A webhook called during the rollout.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(transform = crate::cel::canary_webhook)]
#[serde(rename_all = "camelCase")]
pub struct CanaryWebhook {
    /// Name of the webhook.
    pub name: String,
    /// When it runs: `confirm-rollout`, `pre-rollout`, `rollout` (the default),
    /// `confirm-traffic-increase`, `confirm-promotion`, `post-rollout`, `rollback` or `event`.
    #[schemars(extend("enum" = [
        "", "confirm-rollout", "pre-rollout", "rollout", "confirm-promotion", "post-rollout",
        "event", "rollback", "confirm-traffic-increase"
    ]))]
    pub r#type: Option<String>,
    /// Do not send a chat alert when this webhook fails.
    #[serde(default)]
    pub mute_alert: bool,
    /// Absolute http(s) URL the payload is POSTed to.
    pub url: String,
    /// Timeout of each call, e.g. `30s`. Default `10s`.
    pub timeout: Option<String>,
    /// Retries on failure, with exponential backoff. Default 0.
    pub retries: Option<i32>,
    /// Do not verify the TLS certificate of the URL.
    #[serde(default, rename = "disableTLS")]
    pub disable_tls: bool,
    /// Key-value pairs sent as `metadata` in the payload.
    pub metadata: Option<BTreeMap<String, String>>,
    /// fledge extension: call it and report its answer everywhere, but never let a failure
    /// count, hold a gate or roll back.
    pub dry_run: Option<bool>,
}

/// A chat alert of the Canary.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAlert {
    /// Name of the alert.
    pub name: String,
    /// Lowest severity sent: `info` (the default), `warn` or `error`.
    #[schemars(extend("enum" = ["", "info", "warn", "error"]))]
    pub severity: Option<String>,
    /// The AlertProvider that delivers it.
    pub provider_ref: CrossNamespaceObjectReference,
}

/// Session affinity: a cookie set on canary responses keeps those users on the canary.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    /// Name of the canary cookie.
    pub cookie_name: Option<String>,
    /// Name of the primary cookie, set on primary responses during the rollout.
    pub primary_cookie_name: Option<String>,
    /// Cookie lifetime in seconds. Default 86400.
    pub max_age: Option<i32>,
    /// Cookie domain.
    pub domain: Option<String>,
    /// Cookie `HttpOnly` attribute.
    pub http_only: Option<bool>,
    /// Cookie `Partitioned` attribute.
    pub partitioned: Option<bool>,
    /// Cookie path.
    pub path: Option<String>,
    /// Cookie `SameSite` attribute.
    #[schemars(extend("enum" = ["Strict", "Lax", "None"]))]
    pub same_site: Option<String>,
    /// Cookie `Secure` attribute.
    pub secure: Option<bool>,
}

/// The kinds of webhook, by when they run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum HookType {
    /// A gate before the rollout starts; polled until it answers 200.
    ConfirmRollout,
    /// Runs once before traffic moves; a failure counts as a failed check.
    PreRollout,
    /// Runs at every analysis step; a failure counts as a failed check.
    Rollout,
    /// A gate before each weight increase.
    ConfirmTrafficIncrease,
    /// A gate before promotion.
    ConfirmPromotion,
    /// Runs once after promotion or rollback.
    PostRollout,
    /// Polled during the analysis; a 200 answer asks for a rollback.
    Rollback,
    /// Receives every event of the Canary.
    Event,
}

impl HookType {
    /// Every webhook type.
    pub const ALL: [HookType; 8] = [
        HookType::ConfirmRollout,
        HookType::PreRollout,
        HookType::Rollout,
        HookType::ConfirmTrafficIncrease,
        HookType::ConfirmPromotion,
        HookType::PostRollout,
        HookType::Rollback,
        HookType::Event,
    ];

    /// The name users write in `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookType::ConfirmRollout => "confirm-rollout",
            HookType::PreRollout => "pre-rollout",
            HookType::Rollout => "rollout",
            HookType::ConfirmTrafficIncrease => "confirm-traffic-increase",
            HookType::ConfirmPromotion => "confirm-promotion",
            HookType::PostRollout => "post-rollout",
            HookType::Rollback => "rollback",
            HookType::Event => "event",
        }
    }

    /// Parses a `type` value; empty means `rollout`, as in Flagger.
    pub fn parse(s: &str) -> Option<HookType> {
        if s.is_empty() {
            return Some(HookType::Rollout);
        }
        HookType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for HookType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a metric query without data means (`noData`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoDataPolicy {
    /// A failed check (the default, as in Flagger).
    Fail,
    /// Left out of the step, which counts as inconclusive.
    Skip,
    /// A passing check.
    Pass,
}

impl NoDataPolicy {
    /// The spec's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NoDataPolicy::Fail => "fail",
            NoDataPolicy::Skip => "skip",
            NoDataPolicy::Pass => "pass",
        }
    }
}

impl CanaryMetric {
    /// `noData`, `fail` when unset; `None` for a value that is none of the three.
    pub fn no_data_policy(&self) -> Option<NoDataPolicy> {
        match self.no_data.as_deref().unwrap_or("") {
            "" | "fail" => Some(NoDataPolicy::Fail),
            "skip" => Some(NoDataPolicy::Skip),
            "pass" => Some(NoDataPolicy::Pass),
            _ => None,
        }
    }

    /// Whether the check runs in dry-run mode.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run == Some(true)
    }
}

impl CanaryWebhook {
    /// Whether the webhook runs in dry-run mode.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run == Some(true)
    }

    /// The webhook's type, `rollout` when unset; `None` for an unknown type.
    pub fn hook_type(&self) -> Option<HookType> {
        HookType::parse(self.r#type.as_deref().unwrap_or(""))
    }
}

/// The deployment strategy a Canary spec describes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Weighted traffic steps (`stepWeight`/`stepWeights` up to `maxWeight`).
    Canary,
    /// A/B testing: `match` routes some requests to the canary for `iterations` steps.
    AbTesting,
    /// Blue/green: `iterations` steps with no traffic to the canary, then a switch.
    BlueGreen,
    /// Blue/green with traffic mirrored to the canary.
    BlueGreenMirror,
}

impl CanarySpec {
    /// The analysis, or an empty one with every default.
    pub fn analysis_or_default(&self) -> std::borrow::Cow<'_, CanaryAnalysis> {
        match &self.analysis {
            Some(a) => std::borrow::Cow::Borrowed(a),
            None => std::borrow::Cow::Owned(CanaryAnalysis::default()),
        }
    }

    /// The provider, `gatewayapi:v1` when unset.
    pub fn provider_or_default(&self) -> &str {
        self.provider
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(defaults::PROVIDER)
    }

    /// The progress deadline in seconds (default 600).
    pub fn progress_deadline_seconds(&self) -> i32 {
        self.progress_deadline_seconds
            .unwrap_or(defaults::PROGRESS_DEADLINE_SECONDS)
    }

    /// The strategy the spec describes, decided as Flagger does: a non-empty `match` means A/B
    /// testing; `iterations` without weights means blue/green (mirrored when `mirror` is set);
    /// otherwise weighted canary steps.
    pub fn strategy(&self) -> Strategy {
        let a = self.analysis_or_default();
        let has_match = a.r#match.as_ref().is_some_and(|m| !m.is_empty());
        let has_weights = a.step_weight.unwrap_or(0) > 0
            || a.step_weights.as_ref().is_some_and(|w| !w.is_empty())
            || a.step_replicas.is_some();
        let iterations = a.iterations.unwrap_or(0) > 0;
        if has_match && iterations {
            Strategy::AbTesting
        } else if iterations && !has_weights {
            if a.mirror.unwrap_or(false) {
                Strategy::BlueGreenMirror
            } else {
                Strategy::BlueGreen
            }
        } else {
            Strategy::Canary
        }
    }

    /// Whether the target is a StatefulSet (rolled out through its partition, no primary copy).
    pub fn targets_statefulset(&self) -> bool {
        self.target_ref.kind.as_deref() == Some("StatefulSet")
    }

    /// Whether the target is a Knative Service (`serving.knative.dev/v1`, kind `Service`):
    /// rolled out between its Revisions, no primary copy and no generated Services.
    pub fn targets_knative(&self) -> bool {
        self.target_ref.kind.as_deref() == Some("Service")
            && self.target_ref.api_version.as_deref() == Some(KNATIVE_API_VERSION)
    }

    /// Name of the apex Service: `spec.service.name`, or the target's name.
    pub fn apex_service_name(&self) -> &str {
        self.service
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.target_ref.name)
    }

    /// The webhooks of one type, in declaration order.
    pub fn webhooks_of(&self, t: HookType) -> Vec<CanaryWebhook> {
        self.analysis
            .as_ref()
            .and_then(|a| a.webhooks.as_ref())
            .map(|w| {
                w.iter()
                    .filter(|h| h.hook_type() == Some(t))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl CanaryAnalysis {
    /// `threshold`, default 1.
    pub fn threshold(&self) -> i32 {
        self.threshold.unwrap_or(defaults::THRESHOLD)
    }
    /// `maxWeight`, default 100.
    pub fn max_weight(&self) -> i32 {
        self.max_weight.unwrap_or(defaults::MAX_WEIGHT)
    }
    /// `iterations`, default 0.
    pub fn iterations(&self) -> i32 {
        self.iterations.unwrap_or(0)
    }
    /// `mirrorWeight`, default 100.
    pub fn mirror_weight(&self) -> i32 {
        self.mirror_weight.unwrap_or(defaults::MIRROR_WEIGHT)
    }
    /// `primaryReadyThreshold`, default 100.
    pub fn primary_ready_threshold(&self) -> i32 {
        self.primary_ready_threshold
            .unwrap_or(defaults::PRIMARY_READY_THRESHOLD)
    }
    /// `canaryReadyThreshold`, default 100.
    pub fn canary_ready_threshold(&self) -> i32 {
        self.canary_ready_threshold
            .unwrap_or(defaults::CANARY_READY_THRESHOLD)
    }
    /// `interval` as written, default `1m`.
    pub fn interval_str(&self) -> &str {
        self.interval
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(defaults::ANALYSIS_INTERVAL)
    }
    /// `interval` parsed; the default when unset or unparsable (validation reports the latter).
    pub fn interval(&self) -> std::time::Duration {
        crate::parse_duration(self.interval_str()).unwrap_or(std::time::Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cached Canary holds its whole struct inline, set or not: options few Canaries set
    /// are boxed to keep it small (2,312 bytes; 4,248 before the first options were boxed).
    #[test]
    fn a_canary_stays_small_inline() {
        let size = std::mem::size_of::<Canary>();
        assert!(
            size <= 2400,
            "a Canary is {size} bytes inline; box the options few Canaries set"
        );
    }
}
