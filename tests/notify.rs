//! Chat alerts end to end: `fledge run` on the local control plane posts to local receivers on
//! loopback standing in for Slack, Teams (both formats), Discord, Google Chat, Rocket.Chat and a
//! generic webhook, while one more provider never answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fledge_api::{AlertProvider, Canary, CanaryPhase};
use fledge_e2e::{Hook, TestNs, deployment_json, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const INIT: Duration = Duration::from_secs(90);
const ROLLOUT: Duration = Duration::from_secs(120);
/// The secret part of the Slack URL, which must appear nowhere but in the request line.
const SLACK_KEY: &str = "T0SECRET/B0SECRET/XXXXSECRETXXXX";

/// A receiver that accepts requests and never answers; counts the requests it read.
async fn hanging_receiver() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    s.store(text.matches("POST ").count(), Ordering::Relaxed);
                }
            });
        }
    });
    (addr, seen)
}

fn provider(name: &str, kind: &str, address: Option<String>, secret: Option<&str>) -> Value {
    let mut spec = json!({"type": kind, "username": "fledge-e2e"});
    if let Some(a) = address {
        spec["address"] = json!(a);
    }
    if let Some(s) = secret {
        spec["secretRef"] = json!({"name": s});
    }
    json!({"apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider",
           "metadata": {"name": name}, "spec": spec})
}

/// How bad the message a receiver got is, read the way its provider shows it.
fn severity(path: &str, body: &Value) -> String {
    let s = |p: &str| body.pointer(p).and_then(Value::as_str).unwrap_or_default();
    match path {
        "/slack" => match s("/attachments/0/color") {
            "#E01E5A" => "error",
            "#ECB22E" => "warn",
            _ => "info",
        }
        .into(),
        "/webhook" => s("/metadata/severity").into(),
        _ => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_rollout_posts_one_error_per_provider_while_a_hung_provider_delays_nothing() {
    let ns = TestNs::new("notify").await;
    let chat = Hook::start(200).await.unwrap();
    let rollout_hook = Hook::start(200).await.unwrap();
    let (hung, hung_seen) = hanging_receiver().await;
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;

    // Slack through a Secret (address and token); the others inline.
    ns.create::<Secret>(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "slack-url"},
        "stringData": {"address": chat.url(&format!("/slack/services/{SLACK_KEY}")), "token": "xoxb-e2e"}
    }))
    .await;
    let providers = [
        provider("slack", "slack", None, Some("slack-url")),
        provider("teams", "msteams", Some(chat.url("/teams")), None),
        provider(
            "teams-connector",
            "msteams",
            Some(chat.url("/webhookb2/teams")),
            None,
        ),
        provider("discord", "discord", Some(chat.url("/discord/slack")), None),
        provider("gchat", "gchat", Some(chat.url("/gchat")), None),
        provider("rocket", "rocket", Some(chat.url("/rocket")), None),
        provider("webhook", "webhook", Some(chat.url("/webhook")), None),
        provider("hung", "slack", Some(format!("http://{hung}/hung")), None),
        // Its Secret has the URL under the wrong key.
        provider("broken", "slack", None, Some("broken-url")),
        // Where clouds serve instance credentials: refused by the destination policy.
        provider(
            "metadata",
            "webhook",
            Some("http://169.254.169.254/latest/meta-data/".into()),
            None,
        ),
    ];
    ns.create::<Secret>(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "broken-url"},
        "stringData": {"url": chat.url(&format!("/broken/{SLACK_KEY}"))}
    }))
    .await;
    for p in providers {
        ns.create::<AlertProvider>(p).await;
    }
    let alert = |name: &str, severity: &str| json!({"name": name, "severity": severity, "providerRef": {"name": name}});
    let mut alerts: Vec<Value> = [
        "slack",
        "teams",
        "teams-connector",
        "discord",
        "gchat",
        "rocket",
    ]
    .iter()
    .map(|n| alert(n, "error"))
    .collect();
    // The generic webhook and the hung provider get everything; a missing provider is reported.
    alerts.push(alert("webhook", "info"));
    alerts.push(alert("hung", "info"));
    alerts.push(alert("nonexistent", "error"));
    alerts.push(alert("broken", "error"));
    alerts.push(alert("metadata", "error"));
    ns.create::<Canary>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {
                "interval": "2s",
                "threshold": 1,
                "iterations": 3,
                "webhooks": [{"name": "smoke", "type": "rollout",
                              "url": rollout_hook.url("/smoke"), "timeout": "2s"}],
                "alerts": alerts,
            }
        }
    }))
    .await;
    ns.start_controller(&["--alert-timeout", "3s"]);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, INIT)
        .await;
    eventually(
        Duration::from_secs(30),
        "the hung provider got a request",
        || {
            let seen = hung_seen.clone();
            async move { seen.load(Ordering::Relaxed) >= 1 }
        },
    )
    .await
    .unwrap();

    // The smoke test fails: the first analysis step with it rolls back (threshold 1).
    rollout_hook.set_status(500);
    ns.set_image("podinfo", V2).await;
    let failed = ns.wait_phase("podinfo", CanaryPhase::Failed, ROLLOUT).await;
    assert_eq!(failed.status.unwrap().failed_checks, 1);

    let paths = [
        "/slack/services/T0SECRET/B0SECRET/XXXXSECRETXXXX",
        "/teams",
        "/webhookb2/teams",
        "/discord",
        "/gchat",
        "/rocket",
    ];
    eventually(
        Duration::from_secs(30),
        "every provider got the rollback",
        || {
            let chat = chat.clone();
            async move { paths.iter().all(|p| !chat.calls(p).is_empty()) }
        },
    )
    .await
    .unwrap();
    // A few more reconciles in Failed: the same state must not post again.
    ns.wait_reconciles(0, 3, Duration::from_secs(60)).await;
    for p in paths {
        let calls = chat.calls(p);
        assert_eq!(calls.len(), 1, "{p}: exactly one error message: {calls:#?}");
        let text = calls[0].to_string();
        assert!(
            text.contains("smoke") && text.contains("500"),
            "{p}: the failing check is named: {text}"
        );
        assert!(text.contains(V2), "{p}: the new image is named: {text}");
    }
    assert!(
        chat.calls("/discord/slack").is_empty(),
        "Flagger's /slack suffix goes to the native endpoint"
    );
    let slack = &chat.calls(paths[0])[0];
    assert_eq!(severity("/slack", slack), "error");
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .starts_with("[ERROR] Rolled back")
    );
    assert_eq!(
        chat.calls("/teams")[0]["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(chat.calls("/webhookb2/teams")[0]["@type"], "MessageCard");

    // The generic webhook got every kind of this rollout, exactly one of them an error.
    let hook_calls = chat.calls("/webhook");
    let kinds: Vec<&str> = hook_calls
        .iter()
        .map(|c| c["metadata"]["kind"].as_str().unwrap_or_default())
        .collect();
    for k in ["initialized", "newRevision", "checkFailed", "rolledBack"] {
        assert!(kinds.contains(&k), "webhook: no {k} in {kinds:?}");
    }
    let errors = hook_calls
        .iter()
        .filter(|c| severity("/webhook", c) == "error")
        .count();
    assert_eq!(errors, 1, "webhook: one error message in {kinds:?}");
    assert!(
        hook_calls
            .iter()
            .all(|c| c["namespace"] == ns.name.as_str())
    );

    // The missing provider is named in an Event; the Slack key is nowhere but in the request.
    let events = ns.events("podinfo").await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("AlertProviderNotFound") && e.contains("nonexistent")),
        "{events:#?}"
    );
    let broken = format!("Secret {}/broken-url: has no address key", ns.name);
    assert!(
        events
            .iter()
            .any(|e| e.contains("AlertProviderInvalid") && e.contains(&broken)),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e.contains("AlertProviderInvalid")
            && e.contains(
                "metadata: spec.address (or its Secret's address): 169.254.169.254 is refused"
            )
            && e.contains("--allow-destination")),
        "{events:#?}"
    );
    let ready = ns
        .api::<AlertProvider>()
        .get("broken")
        .await
        .unwrap()
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.r#type == "Ready"))
        .expect("the broken AlertProvider has a Ready condition");
    assert_eq!(ready.status, "False");
    assert!(ready.message.unwrap_or_default().contains(&broken));
    let good = ns.api::<AlertProvider>().get("slack").await.unwrap();
    assert!(
        good.status
            .and_then(|s| s.conditions)
            .is_some_and(|c| c.iter().any(|c| c.r#type == "Ready" && c.status == "True")),
        "a usable provider is Ready"
    );
    let log = ns.controller_log(0);
    for (what, text) in [("log", log.as_str()), ("events", &events.join("\n"))] {
        assert!(
            !text.contains("SECRET"),
            "the Slack key leaked into the {what}"
        );
        assert!(
            !text.contains("xoxb-e2e"),
            "the token leaked into the {what}"
        );
    }
    let c = ns.api::<Canary>().get("podinfo").await.unwrap();
    assert!(!serde_json::to_string(&c.status).unwrap().contains("SECRET"));
    assert!(
        log.contains("alert not sent") && log.contains("timed out"),
        "the hung provider's timeout is logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_provider_serves_canaries_without_alerts_and_muted_webhooks_stay_quiet() {
    let ns = TestNs::new("notify-default").await;
    let chat = Hook::start(200).await.unwrap();
    let rollout_hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    ns.create::<Canary>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {
                "interval": "2s",
                "threshold": 1,
                "iterations": 3,
                "webhooks": [{"name": "smoke", "type": "rollout", "muteAlert": true,
                              "url": rollout_hook.url("/smoke"), "timeout": "2s"}],
            }
        }
    }))
    .await;
    let url = chat.url("/default");
    ns.start_controller(&["--alert-url", &url, "--alert-channel", "#deploys"]);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, INIT)
        .await;
    rollout_hook.set_status(500);
    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Failed, ROLLOUT).await;
    eventually(
        Duration::from_secs(30),
        "the rollback reached the default provider",
        || {
            let chat = chat.clone();
            async move {
                chat.calls("/default").iter().any(|c| {
                    c["text"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("Rolled back")
                })
            }
        },
    )
    .await
    .unwrap();
    let titles: Vec<String> = chat
        .calls("/default")
        .iter()
        .map(|c| c["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        titles.iter().any(|t| t.starts_with("[INFO] Initialized")),
        "{titles:#?}"
    );
    assert!(
        titles.iter().any(|t| t.starts_with("[INFO] New revision")),
        "{titles:#?}"
    );
    assert!(
        !titles.iter().any(|t| t.contains("Check failed")),
        "a muted webhook's failure says nothing in chat: {titles:#?}"
    );
    assert!(
        !titles.iter().any(|t| t.contains("Traffic step")),
        "no traffic steps in chat by default: {titles:#?}"
    );
    assert!(
        chat.calls("/default")
            .iter()
            .all(|c| c["channel"] == "#deploys")
    );
    // The Event still records the muted failure.
    let events = ns.events("podinfo").await;
    assert!(
        events.iter().any(|e| e.contains("CheckFailed")),
        "{events:#?}"
    );
}
