//! Faults on the paths around the controller: a TCP proxy on loopback (`fledge_e2e::toxic`)
//! between `fledge run` and the API server, and another between it and the rollout webhook,
//! adds latency to every chunk and drops every open connection every few seconds. The rollout
//! still completes, its steps move one at a time (none written twice, none skipped), and every
//! Event is said (none lost). A chat receiver that never answers and a slow, lossy path to
//! Prometheus hold up no step. (The crash of etcd and the API server is `tests/restart.rs`,
//! apart: a second control plane starting would load the machine under these timings.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::toxic::Toxic;
use fledge_e2e::{Hook, TestNs, admin_kubeconfig, deployment_json, image_of, root};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const ROLLOUT: Duration = Duration::from_secs(240);
const ITERATIONS: i32 = 6;

/// The administrator's kubeconfig with its server at `addr` (the same scheme and certificate
/// authority): the controller's path to the API server through a proxy.
fn kubeconfig_through(ns: &TestNs, addr: SocketAddr) -> (std::path::PathBuf, SocketAddr) {
    let text = std::fs::read_to_string(admin_kubeconfig()).unwrap();
    let mut config: Value = serde_saphyr::from_str(&text).unwrap();
    let mut upstream = None;
    for c in config["clusters"]
        .as_array_mut()
        .expect("kubeconfig clusters")
    {
        let server = c["cluster"]["server"].as_str().unwrap().to_string();
        let url = reqwest::Url::parse(&server).unwrap();
        upstream = Some(SocketAddr::from((
            url.host_str()
                .unwrap()
                .parse::<std::net::IpAddr>()
                .expect("the local API server listens on an IP address"),
            url.port().unwrap(),
        )));
        c["cluster"]["server"] = json!(format!("https://{addr}"));
    }
    let path = root()
        .join("target/e2e-logs")
        .join(format!("{}-proxied-kubeconfig.json", ns.name));
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    (path, upstream.expect("a cluster in the kubeconfig"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_and_lossy_path_to_the_api_server_and_the_webhook_writes_no_step_twice() {
    let ns = TestNs::new("faults-lossy").await;
    let hook = Hook::start(200).await.unwrap();
    let hook_path = Toxic::start(hook.addr).await.unwrap();
    // The proxy's port is known before its upstream: bind it first, then point it at the API
    // server read from the kubeconfig.
    let (_, api_server) = kubeconfig_through(&ns, "127.0.0.1:1".parse().unwrap());
    let api_path = Arc::new(Toxic::start(api_server).await.unwrap());
    let (kubeconfig, _) = kubeconfig_through(&ns, api_path.addr);
    api_path.set_latency(Duration::from_millis(150));
    hook_path.set_latency(Duration::from_millis(300));

    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    // Every decision is also told to a chat receiver (on a direct path): once each.
    let chat = ns.chat().await;
    ns.create::<Canary>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 120,
            "service": {"port": 9898},
            "analysis": {
                "interval": "3s", "threshold": 3, "iterations": ITERATIONS,
                "webhooks": [{"name": "acceptance", "type": "rollout",
                              "url": format!("http://{}/rollout", hook_path.addr), "timeout": "2s"}],
                "alerts": [{"name": "chat", "severity": "info", "providerRef": {"name": "chat"}}]
            }
        }
    }))
    .await;
    let controller = ns.start_controller_as(&kubeconfig, &[]);
    // Every 4 s, every connection between the controller and the API server is dropped.
    let cutter = {
        let api_path = api_path.clone();
        tokio::spawn(async move {
            let mut cuts = 0u32;
            loop {
                tokio::time::sleep(Duration::from_secs(4)).await;
                api_path.cut();
                cuts += 1;
                if cuts.is_multiple_of(3) {
                    hook_path.cut();
                }
            }
        })
    };
    ns.wait_phase(
        "podinfo",
        CanaryPhase::Initialized,
        Duration::from_secs(120),
    )
    .await;
    ns.set_image("podinfo", V2).await;

    // Every iteration value the status shows, read by the test over its own direct path.
    let started = Instant::now();
    let (status, seen) = ns
        .rollout_iterations("podinfo", started, ROLLOUT, Duration::from_millis(100))
        .await;
    cutter.abort();
    let took = started.elapsed();
    assert_eq!(
        status.phase,
        CanaryPhase::Succeeded,
        "the rollout failed: {status:#?}\n{}",
        ns.events("podinfo").await.join("\n")
    );
    // Iterations only ever grow by one: no step written twice, none skipped.
    for w in seen.windows(2) {
        assert_eq!(w[1], w[0] + 1, "iterations went {seen:?}");
    }
    assert_eq!(seen.last(), Some(&ITERATIONS), "{seen:?}");
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
    // The rollout's start and its promotion were each said once: one Event object each, none
    // lost (an Event write cut on the way is retried under the name it was given), and none a
    // series of two. When the answer to a status write is lost after the API server stored it,
    // the reconcile that follows decides again from the same version of the Canary; the reports
    // already made from that version are not made again. An Event is created beside the status
    // write that decided it, so the last ones may land a moment after the status shows the
    // phase (over the slow path): they are waited for before being counted.
    let events = ns
        .events_once_said("podinfo", &["NewRevision", "Promoting", "Succeeded"])
        .await;
    for reason in ["NewRevision", "Promoting", "Succeeded"] {
        let n = events
            .iter()
            .filter(|e| e.contains(&format!(" {reason}:")))
            .count();
        assert_eq!(n, 1, "{reason} said {n} times:\n{}", events.join("\n"));
        let repeated = ns
            .events_where("podinfo", |e| {
                e.reason.as_deref() == Some(reason)
                    && (e.count.unwrap_or(1) > 1
                        || e.series.as_ref().and_then(|s| s.count).unwrap_or(1) > 1)
            })
            .await;
        assert!(repeated.is_empty(), "{reason} said again: {repeated:?}");
    }
    // Each chat alert once: no two with the same kind, message and weight.
    let alerts = chat
        .alerts_each_once(
            "promoted",
            &["eventMessage", "canaryWeight"],
            &["newRevision", "promoted"],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log = ns.controller_log(controller);
    assert!(!log.contains("panicked"), "{log}");
    let connections = api_path.accepted();
    assert!(
        connections > 5,
        "the controller reconnected {connections} times: the cuts did not bite"
    );
    eprintln!(
        "lossy paths: promoted after {:.1} s, iterations {seen:?}, {connections} connections to \
         the API server through the proxy (150 ms a chunk, all dropped every 4 s), webhook \
         calls {} (300 ms a chunk), {} chat alerts, each once",
        took.as_secs_f64(),
        hook.calls("/rollout").len(),
        alerts.len()
    );
}

/// The controller's step lateness: `(count, sum in seconds, steps later than 1 s)`, from its
/// `fledge_step_lateness_seconds` histogram.
async fn step_lateness(ns: &TestNs, idx: usize) -> (f64, f64, f64) {
    let url = format!("http://{}/metrics", ns.controller_metrics(idx));
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let value = |prefix: &str| {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let count = value("fledge_step_lateness_seconds_count");
    let within = |bound: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("fledge_step_lateness_seconds_bucket")
                    && l.contains(&format!("le=\"{bound}\""))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    // The bucket bounds double from 0.05 s: 0.8 is the last at or under 1 s.
    let over_a_second = count - within("0.8").unwrap_or(0.0);
    (
        count,
        value("fledge_step_lateness_seconds_sum"),
        over_a_second,
    )
}

/// A chat receiver that never answers, and Prometheus behind a slow path (200 ms a chunk) that
/// drops every connection every 5 s: the alerts wait for nobody and the metric checks go on,
/// so the rollout completes with every step once, on time (the lateness is printed; timings
/// are not asserted).
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_chat_receiver_and_a_lossy_prometheus_hold_up_no_step() {
    let ns = TestNs::new("faults-hang").await;
    let chat = fledge_e2e::toxic::BlackHole::start().await.unwrap();
    let prometheus =
        reqwest::Url::parse(&fledge_e2e::dataplane::dataplane().prometheus_url).unwrap();
    let upstream = SocketAddr::from((
        prometheus
            .host_str()
            .unwrap()
            .parse::<std::net::IpAddr>()
            .unwrap(),
        prometheus.port_or_known_default().unwrap(),
    ));
    let prom_path = Arc::new(Toxic::start(upstream).await.unwrap());
    prom_path.set_latency(Duration::from_millis(200));
    ns.create::<fledge_api::MetricTemplate>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "one"},
        "spec": {"provider": {"type": "prometheus",
                              "address": format!("http://{}", prom_path.addr)},
                 "query": "vector(1)"},
    }))
    .await;
    ns.create::<fledge_api::AlertProvider>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider",
        "metadata": {"name": "chat"},
        "spec": {"type": "slack", "address": format!("http://{}/hooks/chat", chat.addr),
                 "trafficSteps": true},
    }))
    .await;
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    ns.create::<Canary>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 120,
            "service": {"port": 9898},
            "analysis": {
                "interval": "2s", "threshold": 5, "iterations": ITERATIONS,
                "metrics": [{"name": "one", "templateRef": {"name": "one"},
                             "thresholdRange": {"max": 2}}],
                "alerts": [{"name": "chat", "severity": "info",
                            "providerRef": {"name": "chat"}}]
            }
        }
    }))
    .await;
    let controller = ns.start_controller(&[]);
    let cutter = {
        let prom_path = prom_path.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                prom_path.cut();
            }
        })
    };
    ns.wait_phase(
        "podinfo",
        CanaryPhase::Initialized,
        Duration::from_secs(120),
    )
    .await;
    ns.set_image("podinfo", V2).await;
    let started = Instant::now();
    let (status, seen) = ns
        .rollout_iterations("podinfo", started, ROLLOUT, Duration::from_millis(100))
        .await;
    cutter.abort();
    let took = started.elapsed();
    assert_eq!(
        status.phase,
        CanaryPhase::Succeeded,
        "{status:#?}\n{}",
        ns.events("podinfo").await.join("\n")
    );
    for w in seen.windows(2) {
        assert_eq!(w[1], w[0] + 1, "iterations went {seen:?}");
    }
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
    assert!(
        chat.accepted() > 0,
        "no alert was ever sent to the hanging chat receiver"
    );
    assert!(
        prom_path.accepted() > 0,
        "no metric query went through the lossy path"
    );
    let (steps, late_sum, over_a_second) = step_lateness(&ns, controller).await;
    eprintln!(
        "a hanging chat receiver ({} connections held, never answered) and Prometheus at 200 ms \
         a chunk, cut every 5 s ({} connections): promoted after {:.1} s, iterations {seen:?}, \
         {steps} steps, mean lateness {:.2} s, {over_a_second} steps more than 1 s late; failed \
         checks on the way: {}",
        chat.accepted(),
        prom_path.accepted(),
        took.as_secs_f64(),
        late_sum / steps.max(1.0),
        status.failed_checks
    );
}
