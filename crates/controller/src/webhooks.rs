//! Webhook calls with Flagger's payload: `POST` of `{name, namespace, phase, checksum,
//! metadata}`, a timeout per call and retries with exponential backoff (`backon`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use fledge_api::{CanaryPhase, CanaryWebhook, parse_duration};
use fledge_core::egress::{DestinationPolicy, Purpose};
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
    policy: Arc<DestinationPolicy>,
}

impl WebhookClient {
    /// A client with the default destination policy (link-local and cloud metadata addresses
    /// refused); `disableTLS` webhooks use a second one that skips certificate checks.
    pub fn new() -> Result<Self, reqwest::Error> {
        Self::with_policy(DestinationPolicy::default())
    }

    /// A client that connects only where `policy` allows (see [`fledge_core::egress`]): the
    /// URL's host is resolved and every address checked before the call, and the client
    /// connects only to addresses its resolver checked again, so a name that resolves
    /// elsewhere a moment later is refused too. A redirect to a refused address is not
    /// followed.
    pub fn with_policy(policy: DestinationPolicy) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let build = |insecure: bool| {
            fledge_metrics_providers::egress::guard(
                reqwest::Client::builder(),
                policy.clone(),
                Purpose::Webhook,
            )
            .user_agent("fledge")
            .danger_accept_invalid_certs(insecure)
            .build()
        };
        Ok(WebhookClient {
            http: build(false)?,
            insecure: build(true)?,
            policy,
        })
    }

    /// Why the controller may not call `url`, checked before any connection: its host (an
    /// address, or every address its name resolves to) against the policy.
    async fn refused(&self, url: &str) -> Option<String> {
        let url = reqwest::Url::parse(url).ok()?;
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<IpAddr> = match fledge_metrics_providers::egress::literal_ip(&url) {
            Some(ip) => vec![ip],
            None => {
                let host = url.host_str()?.to_string();
                // A name that does not resolve fails at the call, as before.
                tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .ok()?
                    .map(|a| a.ip())
                    .collect()
            }
        };
        addrs
            .into_iter()
            .find_map(|ip| self.policy.check(ip, Some(port), Purpose::Webhook).err())
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
        if let Some(reason) = self.refused(&hook.url).await {
            return Outcome {
                passed: false,
                message: format!(
                    "webhook {} (spec.analysis.webhooks[].url) was not called: {reason}",
                    hook.name
                ),
            };
        }
        let attempt = || async {
            let resp = client
                .post(&hook.url)
                .timeout(timeout)
                .json(&body)
                .send()
                .await
                .map_err(|e| describe_error(&e))?;
            let status = resp.status();
            let text = answer_start(resp).await;
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
    format!("{kind}{host}{}", sep(&root_cause(e)))
}

/// The innermost cause of a transport error ("Connection refused (os error 111)", a DNS or TLS
/// failure), which says what to fix; left out if it shows a URL (reqwest's own errors do).
fn root_cause(e: &reqwest::Error) -> String {
    let Some(cause) = std::iter::successors(std::error::Error::source(e), |c| c.source()).last()
    else {
        return String::new();
    };
    let text = cause.to_string();
    if text.contains("://") {
        return String::new();
    }
    text.chars().take(200).collect()
}

/// The first KiB of a webhook's answer (its first 200 characters are all fledge shows): a
/// receiver that streams without end delays the step no longer than its timeout, and fills no
/// memory.
async fn answer_start(mut resp: reqwest::Response) -> String {
    const MAX: usize = 1024;
    let mut buf = Vec::new();
    while buf.len() < MAX {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk[..chunk.len().min(MAX - buf.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod destination_tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn hook(url: &str) -> CanaryWebhook {
        CanaryWebhook {
            name: "load-test".into(),
            url: url.into(),
            timeout: Some("2s".into()),
            ..CanaryWebhook::default()
        }
    }

    fn payload() -> Payload {
        Payload {
            name: "podinfo".into(),
            namespace: "shop".into(),
            phase: CanaryPhase::Progressing,
            checksum: "abc".into(),
            metadata: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn webhooks_to_metadata_and_link_local_addresses_are_refused_before_connecting() {
        let client = WebhookClient::new().unwrap();
        for url in [
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "http://169.254.10.20:8080/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
        ] {
            let out = client.call(&hook(url), &payload()).await;
            assert!(!out.passed, "{url}");
            assert!(
                out.message.starts_with(
                    "webhook load-test (spec.analysis.webhooks[].url) was not called: "
                ) && out.message.contains("is refused")
                    && out.message.contains("--allow-destination"),
                "{url}: {}",
                out.message
            );
            assert!(
                !out.message.contains("/latest/"),
                "the URL's path stays out: {}",
                out.message
            );
        }
    }

    /// A receiver that answers 200 and then streams its body without end: the call passes
    /// with the start of the answer, long before the webhook's timeout, and reads only a KiB.
    #[tokio::test]
    async fn an_endless_answer_is_read_only_as_far_as_it_is_shown() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(AtomicUsize::new(0));
        let count = sent.clone();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
            if conn.write_all(head).await.is_err() {
                return;
            }
            // 64 KiB chunks, at most 64 MiB, until fledge hangs up.
            let chunk = format!("10000\r\n{}\r\n", "y".repeat(0x10000));
            for _ in 0..1024 {
                if conn.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        let client = WebhookClient::with_policy(DestinationPolicy {
            allowed: vec!["127.0.0.1/32".parse().unwrap()],
            api_server: vec![],
        })
        .unwrap();
        let mut h = hook(&format!("http://127.0.0.1:{port}/"));
        h.timeout = Some("30s".into());
        let out = client.call(&h, &payload()).await;
        assert!(out.passed, "{}", out.message);
        assert!(out.message.contains(&"y".repeat(100)), "{}", out.message);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            sent.load(Ordering::SeqCst) < 1024,
            "fledge read the whole endless answer"
        );
    }

    /// A webhook nothing listens on fails with what went wrong (the connection was refused),
    /// and with neither its path nor its query, which may carry a key.
    #[tokio::test]
    async fn a_failed_connection_says_why_and_not_the_url() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = WebhookClient::new().unwrap();
        let out = client
            .call(
                &hook(&format!("http://127.0.0.1:{port}/hook?key=s3cret")),
                &payload(),
            )
            .await;
        assert!(!out.passed);
        assert!(
            out.message
                .starts_with("webhook load-test could not connect (http://127.0.0.1): "),
            "{}",
            out.message
        );
        assert!(
            out.message.to_lowercase().contains("refused"),
            "{}",
            out.message
        );
        assert!(
            !out.message.contains("s3cret") && !out.message.contains("/hook"),
            "{}",
            out.message
        );
    }

    /// A listener on loopback stands for the API server: the policy refuses its address for
    /// webhooks, and the listener sees no connection, by address or by a name that resolves
    /// to it; allowed, the same webhook is called.
    #[tokio::test]
    async fn the_api_server_is_refused_without_a_connection_unless_allowed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            }
        });
        let api_server = DestinationPolicy {
            allowed: vec![],
            api_server: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        };
        let client = WebhookClient::with_policy(api_server.clone()).unwrap();
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
        ] {
            let out = client.call(&hook(&url), &payload()).await;
            assert!(!out.passed, "{url}");
            assert!(
                out.message.contains("is the Kubernetes API server"),
                "{url}: {}",
                out.message
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection was made");
        // Another port of the same address is not the API server.
        let other = WebhookClient::with_policy(DestinationPolicy {
            allowed: vec![],
            api_server: vec![SocketAddr::from(([127, 0, 0, 1], port.wrapping_add(1)))],
        })
        .unwrap();
        let out = other
            .call(&hook(&format!("http://127.0.0.1:{port}/")), &payload())
            .await;
        assert!(out.passed, "{}", out.message);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        let allowed = DestinationPolicy {
            allowed: vec!["127.0.0.1/32".parse().unwrap()],
            ..api_server
        };
        let client = WebhookClient::with_policy(allowed).unwrap();
        let out = client
            .call(&hook(&format!("http://127.0.0.1:{port}/")), &payload())
            .await;
        assert!(out.passed, "{}", out.message);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
