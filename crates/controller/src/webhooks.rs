//! Webhook calls with Flagger's payload: `POST` of `{name, namespace, phase, checksum,
//! metadata}`, a timeout per call and retries with exponential backoff (`backon`).

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use fledge_api::{CanaryPhase, CanaryWebhook, parse_duration};
use serde::Serialize;

/// The JSON body of every webhook call, as Flagger sends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Payload {
    /// Canary name.
    pub name: String,
    /// Canary namespace.
    pub namespace: String,
    /// Phase of the Canary when the webhook is called.
    pub phase: CanaryPhase,
    /// Checksum of the revision under test (spec hash and tracked configs).
    pub checksum: String,
    /// The webhook's `metadata`, plus `eventMessage`/`eventType` for `event` webhooks.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The outcome of one webhook call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The webhook answered 2xx.
    pub passed: bool,
    /// The answer or the error, without the URL (which may carry secrets).
    pub message: String,
}

/// A client for webhook calls.
#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    insecure: reqwest::Client,
}

impl WebhookClient {
    /// A client; `disableTLS` webhooks use a second one that skips certificate checks.
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(WebhookClient {
            http: reqwest::Client::builder().user_agent("fledge").build()?,
            insecure: reqwest::Client::builder()
                .user_agent("fledge")
                .danger_accept_invalid_certs(true)
                .build()?,
        })
    }

    /// Calls one webhook, retrying `retries` times with exponential backoff on failure.
    pub async fn call(&self, hook: &CanaryWebhook, payload: &Payload) -> Outcome {
        let timeout = hook
            .timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(10));
        let retries = hook.retries.unwrap_or(0).clamp(0, 10) as usize;
        let mut body = payload.clone();
        for (k, v) in hook.metadata.iter().flatten() {
            body.metadata.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let client = if hook.disable_tls {
            &self.insecure
        } else {
            &self.http
        };
        let attempt = || async {
            let resp = client
                .post(&hook.url)
                .timeout(timeout)
                .json(&body)
                .send()
                .await
                .map_err(|e| describe_error(&e))?;
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let text: String = text.trim().chars().take(200).collect();
            if status.is_success() {
                Ok(text)
            } else {
                Err(format!("answered {status}{}", sep(&text)))
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(retries);
        match attempt.retry(backoff).await {
            Ok(text) => Outcome {
                passed: true,
                message: if text.is_empty() { "ok".into() } else { text },
            },
            Err(message) => Outcome {
                passed: false,
                message: format!("webhook {} {message}", hook.name),
            },
        }
    }
}

fn sep(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// Describes a transport error without its URL: webhook URLs may carry keys.
fn describe_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_builder() {
        "has an invalid URL"
    } else {
        "failed"
    };
    let host = e
        .url()
        .map(|u| format!(" ({}://{})", u.scheme(), u.host_str().unwrap_or("")))
        .unwrap_or_default();
    format!("{kind}{host}")
}
