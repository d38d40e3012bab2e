//! The `MetricTemplate` resource: a query against a metrics provider, referenced by Canary
//! metric checks through `templateRef`.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// A reusable metric query. The query may use `{{ namespace }}`, `{{ name }}`, `{{ target }}`,
/// `{{ service }}`, `{{ ingress }}`, `{{ interval }}` and `{{ variables.NAME }}`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "fledge.dev",
    version = "v1beta1",
    kind = "MetricTemplate",
    plural = "metrictemplates",
    singular = "metrictemplate",
    namespaced,
    status = "MetricTemplateStatus",
    category = "all",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider.type"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MetricTemplateSpec {
    /// The metrics provider the query runs against.
    #[serde(default)]
    pub provider: MetricTemplateProvider,
    /// The query, with template variables.
    #[serde(default)]
    pub query: String,
}

/// Where and how a MetricTemplate's query runs.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricTemplateProvider {
    /// Provider type: `prometheus` (the default), or another of Flagger's providers.
    #[schemars(extend("enum" = [
        "prometheus", "influxdb", "datadog", "externalmetrics", "stackdriver", "cloudwatch",
        "newrelic", "graphite", "dynatrace", "keptn", "splunk"
    ]))]
    pub r#type: Option<String>,
    /// Address of the provider's API, e.g. `http://prometheus.monitoring:9090`.
    pub address: Option<String>,
    /// Extra HTTP headers sent with every query.
    pub headers: Option<BTreeMap<String, Vec<String>>>,
    /// Secret with credentials: `token` (bearer), or `username` and `password` (basic auth).
    pub secret_ref: Option<SecretReference>,
    /// Region of cloud providers.
    pub region: Option<String>,
    /// Do not verify the provider's TLS certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A reference to a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    /// Name of the Secret.
    pub name: String,
}

/// Status of a MetricTemplate.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct MetricTemplateStatus {
    /// Conditions.
    pub conditions: Option<Vec<crate::CanaryCondition>>,
}

impl MetricTemplateSpec {
    /// Provider type, `prometheus` when unset.
    pub fn provider_type(&self) -> &str {
        self.provider
            .r#type
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or(crate::defaults::METRIC_PROVIDER_TYPE)
    }
}
