//! The service's webhook contract, called the way the controller calls it: with
//! `fledge-controller`'s own webhook client and payload (`name`, `namespace`, `phase`,
//! `checksum`, `metadata`), on loopback. The load goes to a recording server, so every
//! request the jobs send is counted.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use fledge_api::{CanaryPhase, CanaryWebhook};
use fledge_controller::webhooks::{Payload, WebhookClient};
use fledge_loadgen::service::{Config, Service};
use tokio_util::sync::CancellationToken;

struct Running {
    base: String,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(config: Config) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(Service::new(config).serve(listener, stop.clone()));
    Running { base, stop }
}

fn hook(url: String, typ: &str, metadata: &[(&str, &str)]) -> CanaryWebhook {
    CanaryWebhook {
        name: "load-test".into(),
        r#type: Some(typ.into()),
        url,
        timeout: Some("30s".into()),
        metadata: Some(
            metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..CanaryWebhook::default()
    }
}

fn payload(name: &str, namespace: &str) -> Payload {
    Payload {
        name: name.into(),
        namespace: namespace.into(),
        phase: CanaryPhase::Progressing,
        checksum: "abc123".into(),
        metadata: BTreeMap::new(),
    }
}

async fn jobs(base: &str) -> Vec<serde_json::Value> {
    reqwest::get(format!("{base}/jobs"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits (polling, bounded) until no job runs.
async fn until_idle(base: &str) {
    for _ in 0..600 {
        if jobs(base).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("jobs still running after 30s: {:?}", jobs(base).await);
}

async fn post(url: &str, body: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_webhook_with_a_hey_command_runs_it_natively_once() {
    let target = common::start().await;
    let svc = serve(Config::default()).await;
    let client = WebhookClient::new().unwrap();
    let cmd = format!(
        "hey -n 30 -c 2 -q 200 -m POST -d ping -H 'X-Load: fledge' {}",
        target.url("/api")
    );
    let rollout = hook(format!("{}/", svc.base), "rollout", &[("cmd", &cmd)]);
    let out = client.call(&rollout, &payload("podinfo", "test")).await;
    assert!(out.passed, "{out:?}");
    assert!(out.message.starts_with("job "), "{out:?}");
    until_idle(&svc.base).await;
    let seen = target.recorder.requests();
    assert_eq!(seen.len(), 30);
    assert!(seen.iter().all(|r| r.method == "POST"
        && r.path == "/api"
        && r.headers["x-load"] == "fledge"
        && r.body == "ping"));
    // The metrics count them per canary and target.
    let metrics = reqwest::get(format!("{}/metrics", svc.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = format!(
        "fledge_loadgen_requests_total{{canary=\"test/podinfo\",target=\"{}\",code=\"200\"}} 30",
        target.url("/api")
    );
    assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    assert!(
        metrics
            .contains("fledge_loadgen_jobs_total{canary=\"test/podinfo\",result=\"completed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fledge_loadgen_request_duration_seconds_count{canary=\"test/podinfo\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_every_interval_keep_one_job_per_canary_and_command() {
    let target = common::start().await;
    let svc = serve(Config::default()).await;
    let client = WebhookClient::new().unwrap();
    let cmd = format!("hey -z 1h -q 1 -c 1 {}", target.url("/"));
    let rollout = hook(format!("{}/", svc.base), "rollout", &[("cmd", &cmd)]);
    for _ in 0..3 {
        assert!(
            client
                .call(&rollout, &payload("podinfo", "test"))
                .await
                .passed
        );
    }
    // Another canary with the same command, and the same canary with another command.
    assert!(
        client
            .call(&rollout, &payload("podinfo", "prod"))
            .await
            .passed
    );
    let other = hook(
        format!("{}/", svc.base),
        "rollout",
        &[(
            "cmd",
            &format!("hey -z 1h -q 1 -c 1 {}", target.url("/other")),
        )],
    );
    let out = client.call(&other, &payload("podinfo", "test")).await;
    assert!(out.passed);
    let list = jobs(&svc.base).await;
    let canaries: Vec<&str> = list.iter().map(|j| j["canary"].as_str().unwrap()).collect();
    assert_eq!(
        canaries,
        ["test/podinfo", "prod/podinfo", "test/podinfo"],
        "{list:?}"
    );
    let again = client.call(&rollout, &payload("podinfo", "test")).await;
    assert!(again.message.contains("already running"), "{again:?}");

    // Cancelling a canary's jobs stops them at once; the other canary's job goes on.
    let cancel = hook(format!("{}/jobs/cancel", svc.base), "post-rollout", &[]);
    let out = client.call(&cancel, &payload("podinfo", "test")).await;
    assert_eq!(out.message, "cancelled 2 job(s)");
    for _ in 0..600 {
        if jobs(&svc.base).await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = jobs(&svc.base).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["canary"], "prod/podinfo");
    // After it ended, the same call starts a new job.
    let out = client.call(&rollout, &payload("podinfo", "test")).await;
    assert!(out.message.ends_with("started"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_follow_flaggers_semantics() {
    let svc = serve(Config::default()).await;
    let client = WebhookClient::new().unwrap();
    let at = |path: &str, typ: &str| hook(format!("{}{path}", svc.base), typ, &[]);
    let p = payload("podinfo", "test");
    let check = at("/gate/check", "confirm-promotion");
    let out = client.call(&check, &p).await;
    assert!(!out.passed, "a gate is closed until opened: {out:?}");
    assert!(out.message.contains("403"), "{out:?}");
    assert!(client.call(&at("/gate/open", "event"), &p).await.passed);
    assert!(client.call(&check, &p).await.passed);
    assert!(
        client.call(&check, &p).await.passed,
        "checking leaves it open"
    );
    assert!(
        !client
            .call(&check, &payload("podinfo", "other"))
            .await
            .passed
    );
    assert!(client.call(&at("/gate/close", "event"), &p).await.passed);
    assert!(!client.call(&check, &p).await.passed);
    // approve and halt answer the same whatever the gate.
    assert!(
        client
            .call(&at("/gate/approve", "confirm-rollout"), &p)
            .await
            .passed
    );
    assert!(
        !client
            .call(&at("/gate/halt", "confirm-rollout"), &p)
            .await
            .passed
    );
    // Rollback gates are separate.
    let rollback = at("/rollback/check", "rollback");
    assert!(!client.call(&rollback, &p).await.passed);
    assert!(client.call(&at("/rollback/open", "event"), &p).await.passed);
    assert!(client.call(&rollback, &p).await.passed);
    assert!(!client.call(&check, &p).await.passed);
    assert!(
        client
            .call(&at("/rollback/close", "event"), &p)
            .await
            .passed
    );
    assert!(!client.call(&rollback, &p).await.passed);
    // Status codes as Flagger's: 202 for open/close.
    let (code, _) = post(
        &format!("{}/gate/open", svc.base),
        r#"{"name":"podinfo","namespace":"test"}"#,
    )
    .await;
    assert_eq!(code, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_tasks_return_their_output_when_asked() {
    let target = common::start().await;
    let svc = serve(Config::default()).await;
    let client = WebhookClient::new().unwrap();
    let cmd = format!("hey -n 5 -c 1 {}", target.url("/pre"));
    let pre = hook(
        format!("{}/", svc.base),
        "pre-rollout",
        &[("type", "bash"), ("cmd", &cmd), ("returnCmdOutput", "true")],
    );
    let out = client.call(&pre, &payload("podinfo", "test")).await;
    assert!(out.passed, "{out:?}");
    assert!(out.message.contains("Summary:"), "{out:?}");
    // The call returned after the load: all five were sent.
    assert_eq!(target.recorder.count(), 5);
    // Without returnCmdOutput the answer is empty (the client says "ok").
    let quiet = hook(
        format!("{}/", svc.base),
        "pre-rollout",
        &[("type", "bash"), ("cmd", &cmd)],
    );
    assert_eq!(
        client
            .call(&quiet, &payload("podinfo", "test"))
            .await
            .message,
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_commands_run_only_when_allowed() {
    let refusing = serve(Config::default()).await;
    let client = WebhookClient::new().unwrap();
    let meta = [
        ("type", "bash"),
        ("cmd", "echo accepted"),
        ("returnCmdOutput", "true"),
    ];
    let out = client
        .call(
            &hook(format!("{}/", refusing.base), "pre-rollout", &meta),
            &payload("podinfo", "test"),
        )
        .await;
    assert!(!out.passed);
    assert!(
        out.message.contains("400") && out.message.contains("--allow-commands"),
        "{out:?}"
    );

    let allowing = serve(Config {
        allow_commands: true,
        ..Config::default()
    })
    .await;
    let out = client
        .call(
            &hook(format!("{}/", allowing.base), "pre-rollout", &meta),
            &payload("podinfo", "test"),
        )
        .await;
    assert!(out.passed, "{out:?}");
    assert_eq!(out.message, "accepted");
    let fail = [("type", "bash"), ("cmd", "exit 3")];
    let out = client
        .call(
            &hook(format!("{}/", allowing.base), "pre-rollout", &fail),
            &payload("podinfo", "test"),
        )
        .await;
    assert!(!out.passed && out.message.contains("500"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_with_the_reason() {
    let svc = serve(Config::default()).await;
    let root = format!("{}/", svc.base);
    for (body, code, why) in [
        ("not json", 400, "invalid webhook payload"),
        ("{\"namespace\":\"test\"}", 400, "missing field `name`"),
        (
            "{\"name\":\"\",\"namespace\":\"test\"}",
            400,
            "must not be empty",
        ),
        (
            "{\"name\":\"a\",\"namespace\":\"test\"}",
            400,
            "metadata not found",
        ),
        (
            "{\"name\":\"a\",\"namespace\":\"t\",\"metadata\":{\"type\":\"x\"}}",
            400,
            "unknown task type x",
        ),
        (
            "{\"name\":\"a\",\"namespace\":\"t\",\"metadata\":{\"cmd\":\"hey -z 1m\"}}",
            400,
            "no URL",
        ),
        (
            "{\"name\":\"a\",\"namespace\":\"t\",\"metadata\":{\"cmd\":5}}",
            400,
            "invalid webhook payload",
        ),
        (
            "{\"name\":\"a\",\"namespace\":\"t\",\"metadata\":{\"type\":\"load\",\"url\":\"http://x/\"}}",
            400,
            "needs rate",
        ),
    ] {
        let (got, text) = post(&root, body).await;
        assert_eq!(got, code, "{body}: {text}");
        assert!(text.contains(why), "{body}: {text}");
    }
    let big = format!(
        "{{\"name\":\"a\",\"namespace\":\"t\",\"metadata\":{{\"cmd\":\"{}\"}}}}",
        "x".repeat(2 << 20)
    );
    assert_eq!(post(&root, &big).await.0, 413);
    assert_eq!(post(&format!("{}/gate/check", svc.base), "{").await.0, 400);
    assert_eq!(post(&format!("{}/nowhere", svc.base), "{}").await.0, 404);
    let get = reqwest::get(&root).await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    // Still serving after all that.
    let health = reqwest::get(format!("{}/healthz", svc.base)).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_route_but_healthz() {
    let svc = serve(Config {
        token: Some("s3cret".into()),
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let body = r#"{"name":"podinfo","namespace":"test"}"#;
    let open = format!("{}/gate/open", svc.base);
    let code = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(code(http.post(&open).body(body).send().await.unwrap()), 401);
    assert_eq!(
        code(
            http.post(&open)
                .bearer_auth("wrong")
                .body(body)
                .send()
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(
        code(
            http.post(&open)
                .bearer_auth("s3cret")
                .body(body)
                .send()
                .await
                .unwrap()
        ),
        202
    );
    assert_eq!(
        code(
            http.get(format!("{}/metrics", svc.base))
                .send()
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(
        code(
            http.get(format!("{}/healthz", svc.base))
                .send()
                .await
                .unwrap()
        ),
        200
    );
    // The controller's client sends a URL's user info as Basic authorization: the token as
    // the password works.
    let client = WebhookClient::new().unwrap();
    let with_token = svc.base.replace("http://", "http://fledge:s3cret@");
    let check = hook(format!("{with_token}/gate/check"), "confirm-promotion", &[]);
    assert!(
        client
            .call(&check, &payload("podinfo", "test"))
            .await
            .passed
    );
    let without = hook(format!("{}/gate/check", svc.base), "confirm-promotion", &[]);
    let out = client.call(&without, &payload("podinfo", "test")).await;
    assert!(out.message.contains("401"), "{out:?}");
}
