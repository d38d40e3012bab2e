//! `fledge-loadgen serve` end to end: a canary rollout on the Gateway API router where the
//! only traffic is the load the Canary's `rollout` webhook asks fledge-loadgen for (a Flagger
//! `hey` command line, run on the native engine), through Traefik to podinfo processes, and
//! whose `confirm-promotion` gate is fledge-loadgen's `/gate/check`, opened through
//! `/gate/open`. The test itself sends no request to the app.

use std::time::Duration;

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::dataplane::{
    GATEWAY_NAME, GATEWAY_NAMESPACE, LocalWorkload, MANAGED_BY, dataplane, only_local_endpoints,
    traefik_forwarded, traefik_servers, traefik_weights, wait_route_accepted,
};
use fledge_e2e::loadgen::Loadgen;
use fledge_e2e::{TestNs, deployment_json, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
/// Requests of each load job: 2 workers at 10 per second each, so about 10 s per job.
const JOB_REQUESTS: u64 = 200;

/// The loopback address of the podinfo process the harness attached to `service`.
async fn backend(ns: &TestNs, service: &str) -> Option<String> {
    let slices = ns
        .api::<EndpointSlice>()
        .list(&ListParams::default().labels(&format!(
            "kubernetes.io/service-name={service},endpointslice.kubernetes.io/managed-by={MANAGED_BY}"
        )))
        .await
        .ok()?;
    let s = slices.items.into_iter().find(|s| !s.endpoints.is_empty())?;
    let port = s.ports.as_ref()?.first()?.port?;
    let ip = s.endpoints.first()?.addresses.first()?.clone();
    Some(format!("{ip}:{port}"))
}

/// podinfo's count of requests to `/`, from its own `/metrics`.
async fn podinfo_root_requests(addr: &str) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("http_request_duration_seconds_count{") && l.contains("path=\"root\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_whose_only_traffic_is_fledge_loadgen() {
    let dp = dataplane();
    let ns = TestNs::new("loadgen").await;
    let loadgen = Loadgen::start(&ns.name, &[]).await.unwrap();
    let host = format!("{}.fledge.test", ns.name);
    let canary_key = format!("{}/podinfo", ns.name);
    // What a Flagger user writes, pointed at the local Gateway.
    let cmd = format!(
        "hey -n {JOB_REQUESTS} -q 10 -c 2 -host {host} -H 'X-Load: fledge' http://{}/",
        dp.gateway
    );

    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let _workload = LocalWorkload::start(&ns.client, &ns.name, "podinfo", "podinfo");
    ns.create::<Canary>(serde_json::json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 120,
            "service": {
                "port": 9898,
                "hosts": [host],
                "gatewayRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
            },
            "analysis": {
                "interval": "2s", "threshold": 5, "stepWeight": 50, "maxWeight": 50,
                "webhooks": [
                    {"name": "load-test", "type": "rollout", "url": format!("{}/", loadgen.base),
                     "timeout": "5s", "metadata": {"cmd": cmd}},
                    {"name": "promotion-gate", "type": "confirm-promotion",
                     "url": format!("{}/gate/check", loadgen.base)},
                ],
            },
        },
    }))
    .await;
    ns.start_controller(&[]);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    for svc in ["podinfo", "podinfo-primary", "podinfo-canary"] {
        only_local_endpoints(&ns.client, &ns.name, svc)
            .await
            .unwrap();
    }
    wait_route_accepted(&ns.client, &ns.name, "podinfo", Duration::from_secs(30))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "Traefik to know the primary's endpoint",
        || async {
            !traefik_servers(&ns.name, "podinfo-primary", 9898)
                .await
                .is_empty()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        loadgen.answered(&canary_key).await.unwrap(),
        (0, 0),
        "no load before the rollout"
    );

    ns.set_image("podinfo", V2).await;
    // The analysis runs at 50% and waits for the gate, closed until opened.
    ns.wait_canary(
        "podinfo",
        Duration::from_secs(90),
        "WaitingPromotion at weight 50",
        |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.phase == CanaryPhase::WaitingPromotion && s.canary_weight == 50)
        },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "Traefik to split 50/50 and know the canary's endpoint",
        || async {
            traefik_weights(&ns.name, "podinfo", 9898).await == Some((50, 50))
                && !traefik_servers(&ns.name, "podinfo-canary", 9898)
                    .await
                    .is_empty()
        },
    )
    .await
    .unwrap();
    let primary = backend(&ns, "podinfo-primary")
        .await
        .expect("primary backend");
    let canary = backend(&ns, "podinfo-canary")
        .await
        .expect("canary backend");
    // Both podinfo processes count the load: the canary's only client is fledge-loadgen.
    eventually(
        Duration::from_secs(60),
        "podinfo's primary and canary to count requests from fledge-loadgen",
        || async {
            podinfo_root_requests(&canary).await >= 20
                && podinfo_root_requests(&primary).await >= 20
        },
    )
    .await
    .unwrap();
    let (sent_before, _) = loadgen.answered(&canary_key).await.unwrap();
    let on_primary = podinfo_root_requests(&primary).await;
    let on_canary = podinfo_root_requests(&canary).await;
    let (sent_after, _) = loadgen.answered(&canary_key).await.unwrap();
    // Every answer fledge-loadgen counted was counted by podinfo first; podinfo may have seen
    // up to the 2 workers' requests in flight more.
    assert!(
        sent_before <= on_primary + on_canary && on_primary + on_canary <= sent_after + 2,
        "fledge-loadgen {sent_before}..{sent_after}, podinfo primary {on_primary} + canary {on_canary}"
    );
    // One job at a time for the Canary, however often the webhook is called.
    let jobs = loadgen.jobs().await.unwrap();
    assert!(jobs.len() <= 1, "{jobs:?}");
    let metrics = loadgen.metrics().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("fledge_loadgen_webhooks_total{path=\"/gate/check\",code=\"403\"}")),
        "the gate was checked and closed:\n{metrics}"
    );

    // Open the gate as a person would; the rollout is promoted.
    let opened = reqwest::Client::new()
        .post(format!("{}/gate/open", loadgen.base))
        .json(&serde_json::json!({"name": "podinfo", "namespace": ns.name}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status().as_u16(), 202);
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, Duration::from_secs(120))
        .await;
    // The rollout webhook is no longer called: the last job ends at its request count.
    eventually(
        Duration::from_secs(60),
        "the last load job to end",
        || async { loadgen.jobs().await.unwrap().is_empty() },
    )
    .await
    .unwrap();
    let (answered, errors) = loadgen.answered(&canary_key).await.unwrap();
    let forwarded = traefik_forwarded(&ns.name, "podinfo-primary")
        .await
        .unwrap()
        + traefik_forwarded(&ns.name, "podinfo-canary").await.unwrap();
    eprintln!(
        "fledge-loadgen: {answered} answered, {errors} errors; Traefik forwarded {forwarded} \
         (primary and canary); podinfo during the analysis: primary {on_primary}, canary \
         {on_canary}"
    );
    assert_eq!(errors, 0);
    // Whole jobs only: each sent exactly its request count.
    assert_eq!(answered % JOB_REQUESTS, 0, "{answered} is not whole jobs");
    // Traefik forwarded exactly what fledge-loadgen sent: nothing else reached the app.
    assert_eq!(forwarded, answered);
}
