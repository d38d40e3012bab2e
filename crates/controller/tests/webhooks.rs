//! The webhook client against a real HTTP server on loopback: Flagger's payload, retries with
//! backoff, timeouts, and errors that never show the URL.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fledge_api::{CanaryPhase, CanaryWebhook};
use fledge_controller::webhooks::{Payload, WebhookClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server that answers each request with the next status of `script` (the last one repeats),
/// after `delay`, and keeps the request bodies.
async fn server(script: Vec<u16>, delay: Duration) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((mut sock, _)) = listener.accept().await {
            let code = script[n.min(script.len() - 1)];
            n += 1;
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head and the body (Content-Length).
                loop {
                    let Ok(k) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= head_end + 4 + len {
                            seen.lock().unwrap().push(text[head_end + 4..].to_string());
                            break;
                        }
                    }
                }
                tokio::time::sleep(delay).await;
                let resp = format!(
                    "HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/hook?token=s3cr3t"), bodies)
}

fn hook(url: &str, retries: i32, timeout: &str) -> CanaryWebhook {
    CanaryWebhook {
        name: "acceptance".into(),
        r#type: Some("rollout".into()),
        url: url.into(),
        timeout: Some(timeout.into()),
        retries: Some(retries),
        metadata: Some(BTreeMap::from([("cmd".into(), "test".into())])),
        ..Default::default()
    }
}

fn payload() -> Payload {
    Payload {
        name: "podinfo".into(),
        namespace: "test".into(),
        phase: CanaryPhase::Progressing,
        checksum: "abc".into(),
        metadata: BTreeMap::new(),
    }
}

#[tokio::test]
async fn sends_flaggers_payload_and_passes_on_2xx() {
    let (url, bodies) = server(vec![200], Duration::ZERO).await;
    let out = WebhookClient::new()
        .unwrap()
        .call(&hook(&url, 0, "2s"), &payload())
        .await;
    assert!(out.passed, "{out:?}");
    let body: serde_json::Value = serde_json::from_str(&bodies.lock().unwrap()[0]).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "name": "podinfo", "namespace": "test", "phase": "Progressing",
            "checksum": "abc", "metadata": {"cmd": "test"}
        })
    );
}

#[tokio::test]
async fn retries_with_backoff_until_it_passes() {
    let (url, bodies) = server(vec![500, 503, 200], Duration::ZERO).await;
    let out = WebhookClient::new()
        .unwrap()
        .call(&hook(&url, 3, "2s"), &payload())
        .await;
    assert!(out.passed, "{out:?}");
    assert_eq!(bodies.lock().unwrap().len(), 3, "two retries, then success");
}

#[tokio::test]
async fn fails_after_its_retries_and_never_shows_the_url() {
    let (url, bodies) = server(vec![500], Duration::ZERO).await;
    let out = WebhookClient::new()
        .unwrap()
        .call(&hook(&url, 2, "2s"), &payload())
        .await;
    assert!(!out.passed);
    assert_eq!(bodies.lock().unwrap().len(), 3, "the call and two retries");
    assert!(out.message.contains("500"), "{}", out.message);
    assert!(!out.message.contains("s3cr3t"), "{}", out.message);
}

#[tokio::test]
async fn a_slow_webhook_times_out() {
    let (url, _) = server(vec![200], Duration::from_secs(5)).await;
    let started = Instant::now();
    let out = WebhookClient::new()
        .unwrap()
        .call(&hook(&url, 0, "300ms"), &payload())
        .await;
    assert!(!out.passed);
    assert!(out.message.contains("timed out"), "{}", out.message);
    assert!(!out.message.contains("s3cr3t"), "{}", out.message);
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn an_unreachable_webhook_fails_with_scheme_and_host_only() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/x?key=s3cr3t");
    let out = WebhookClient::new()
        .unwrap()
        .call(&hook(&url, 0, "1s"), &payload())
        .await;
    assert!(!out.passed);
    assert!(out.message.contains("could not connect"), "{}", out.message);
    assert!(out.message.contains("http://127.0.0.1"), "{}", out.message);
    assert!(!out.message.contains("s3cr3t"), "{}", out.message);
}
