//! etcd and the API server of a control plane of its own crash mid-rollout (SIGKILL) and come
//! back on the same ports and data: the controller's watches resume without a relist storm (the
//! API server's audit log counts the lists) and the rollout completes, every step once. Its own
//! test binary, so that the second control plane's start loads no other test's timings.

use std::time::{Duration, Instant};

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::{Hook, TestNs, deployment_json, image_of};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const ROLLOUT: Duration = Duration::from_secs(240);
const ITERATIONS: i32 = 6;

/// The controller's API requests by method, from its `/metrics`.
async fn kube_requests(ns: &TestNs, idx: usize) -> std::collections::BTreeMap<String, f64> {
    let url = format!("http://{}/metrics", ns.controller_metrics(idx));
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("fledge_kube_requests_total{verb=\""))
        .filter_map(|rest| {
            let (verb, value) = rest.split_once("\"} ")?;
            Some((verb.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_and_the_api_server_crash_mid_rollout_and_the_rollout_completes() {
    let name = format!("e2e-crash-{}", std::process::id());
    let cluster = fledge_e2e::OtherCluster::start(&name).unwrap();
    let ns = TestNs::named_on(&cluster, &name).await;
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    ns.create::<Canary>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 300,
            "service": {"port": 9898},
            "analysis": {
                "interval": "2s", "threshold": 5, "iterations": ITERATIONS + 2,
                "webhooks": [{"name": "acceptance", "type": "rollout",
                              "url": hook.url("/rollout"), "timeout": "2s"}]
            }
        }
    }))
    .await;
    let controller = ns.start_controller(&[]);
    ns.wait_phase(
        "podinfo",
        CanaryPhase::Initialized,
        Duration::from_secs(120),
    )
    .await;
    ns.set_image("podinfo", V2).await;
    ns.wait_canary("podinfo", ROLLOUT, "two iterations", |c| {
        c.status.as_ref().is_some_and(|s| s.iterations >= 2)
    })
    .await;
    let before = kube_requests(&ns, controller).await;
    let audited_before = cluster.audit_records().len();
    let crashed = Instant::now();
    cluster.crash_and_restart().unwrap();
    let back = crashed.elapsed();
    // The test's own client reconnects as any client does; the controller must do so by itself.
    let (done, seen) = ns
        .rollout_iterations("podinfo", crashed, ROLLOUT, Duration::from_millis(200))
        .await;
    assert_eq!(done.phase, CanaryPhase::Succeeded, "{done:#?}");
    for w in seen.windows(2) {
        assert_eq!(w[1], w[0] + 1, "iterations went {seen:?}");
    }
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
    let after = kube_requests(&ns, controller).await;
    let delta: Vec<String> = after
        .iter()
        .map(|(verb, n)| format!("{verb} {}", n - before.get(verb).copied().unwrap_or(0.0)))
        .collect();
    // The API server's audit log: the lists and watches in the namespace from the crash to the
    // end are the controller's (the test itself only reads single objects). Each cache lists
    // again at most a few times (a watch refused with 410, a watch found stuck), never in a
    // loop. (Its new watches are printed, not asserted: requests served while the restarted API
    // server starts can be missing from its log.)
    let records = cluster.audit_records();
    let after_crash = fledge_e2e::OtherCluster::lists_and_watches_in(
        &records[audited_before.min(records.len())..],
        &ns.name,
    );
    let kinds = [
        "canaries",
        "deployments",
        "daemonsets",
        "statefulsets",
        "configmaps",
        "secrets",
    ];
    for kind in kinds {
        let lists = after_crash
            .get(&format!("list {kind}"))
            .copied()
            .unwrap_or(0);
        assert!(
            lists <= 3,
            "{lists} lists of {kind} after the crash: a relist storm; all: {after_crash:?}"
        );
    }
    eprintln!(
        "etcd and the API server crashed at iteration 2 and were back after {:.1} s; the rollout \
         completed with iterations {seen:?}; the controller's API requests from the crash to the \
         end: {}; its lists and watches (audit log): {after_crash:?}",
        back.as_secs_f64(),
        delta.join(", ")
    );
}
