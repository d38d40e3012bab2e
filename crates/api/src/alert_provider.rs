//! The `AlertProvider` resource: where chat alerts of Canaries go.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::metric_template::SecretReference;

/// A chat or webhook destination for alerts.
#[skip_serializing_none]
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "fledge.dev",
    version = "v1beta1",
    kind = "AlertProvider",
    plural = "alertproviders",
    singular = "alertprovider",
    namespaced,
    status = "AlertProviderStatus",
    category = "all",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AlertProviderSpec {
    /// Provider type: `slack`, `msteams`, `discord`, `rocket` or `gchat` (fledge extension:
    /// `webhook` for a generic JSON webhook).
    #[schemars(extend("enum" = ["slack", "msteams", "discord", "rocket", "gchat", "webhook"]))]
    pub r#type: String,
    /// Channel to post to, where the provider takes one.
    pub channel: Option<String>,
    /// User name the messages are posted as.
    pub username: Option<String>,
    /// Webhook URL. A secret: prefer `secretRef`.
    pub address: Option<String>,
    /// HTTP(S) proxy used to reach the provider.
    pub proxy: Option<String>,
    /// Secret with the `address` key (and optionally `proxy`, `token`).
    pub secret_ref: Option<SecretReference>,
    /// fledge extension: the link each message carries back to the Canary, an http(s) URL in
    /// which `{namespace}` and `{name}` are replaced (e.g. a dashboard). Default: the
    /// `kubectl` command that describes the Canary.
    pub link_template: Option<String>,
    /// fledge extension: also send a message at each traffic step. Default: false for chat
    /// providers, true for `webhook`.
    pub traffic_steps: Option<bool>,
}

/// Status of an AlertProvider.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AlertProviderStatus {
    /// Conditions.
    pub conditions: Option<Vec<crate::CanaryCondition>>,
}
