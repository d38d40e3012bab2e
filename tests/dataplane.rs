//! The local data plane end to end: Traefik (built and started by `cargo xtask dataplane up`)
//! routes real HTTP through the Gateway to two podinfo processes on loopback, by the weights of
//! an HTTPRoute whose backends are selectorless Services with loopback EndpointSlices.

use std::net::Ipv4Addr;
use std::time::Duration;

use fledge_e2e::TestNs;
use fledge_e2e::dataplane::{
    GATEWAY_NAME, GATEWAY_NAMESPACE, Podinfo, PodinfoOpts, attach_endpoints, dataplane,
    endpoint_slices, httproutes, selectorless_service, send, traefik_metrics, wait_route_accepted,
    wait_routed,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DynamicObject, PostParams};

const REQUESTS: usize = 1000;
const CONCURRENCY: usize = 8;

fn weighted_route(name: &str, host: &str, primary: i32, canary: i32) -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
            "hostnames": [host],
            "rules": [{"backendRefs": [
                {"name": "podinfo-primary", "port": 9898, "weight": primary},
                {"name": "podinfo-canary", "port": 9898, "weight": canary},
            ]}],
        },
    }))
    .expect("HTTPRoute JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn traefik_splits_real_traffic_by_httproute_weights() {
    let dp = dataplane();
    let ns = TestNs::new("dataplane").await;
    let primary = Podinfo::start("1.0.0", PodinfoOpts::default())
        .await
        .unwrap();
    // Another loopback address, as a second backend of one Service would need.
    let canary = Podinfo::start(
        "2.0.0",
        PodinfoOpts {
            ip: Ipv4Addr::new(127, 0, 0, 2),
            ..PodinfoOpts::default()
        },
    )
    .await
    .unwrap();
    for (svc, app) in [("podinfo-primary", &primary), ("podinfo-canary", &canary)] {
        selectorless_service(&ns.client, &ns.name, svc, 9898)
            .await
            .unwrap();
        attach_endpoints(&ns.client, &ns.name, svc, "http", &[app.addr])
            .await
            .unwrap();
    }
    let host = format!("{}.fledge.test", ns.name);
    httproutes(&ns.client, &ns.name)
        .create(
            &PostParams::default(),
            &weighted_route("podinfo", &host, 80, 20),
        )
        .await
        .unwrap();
    wait_route_accepted(&ns.client, &ns.name, "podinfo", Duration::from_secs(30))
        .await
        .unwrap();
    wait_routed(&host, Duration::from_secs(30)).await.unwrap();

    let canary_before = canary.requests_to("root").await.unwrap();
    let tally = send(&host, "/", &[], REQUESTS, CONCURRENCY).await;
    let canary_after = canary.requests_to("root").await.unwrap();
    eprintln!(
        "Traefik {} through {}: {REQUESTS} requests, weights 80/20 -> primary {:.1}%, canary \
         {:.1}% ({tally:?})",
        dp.traefik_version,
        dp.gateway,
        tally.percent("1.0.0"),
        tally.percent("2.0.0")
    );
    assert!(
        tally.errors.is_empty() && tally.failed == 0,
        "every request must reach podinfo: {tally:?}"
    );
    assert_eq!(tally.total(), REQUESTS as u64);
    assert_eq!(
        tally.by_version.keys().collect::<Vec<_>>(),
        ["1.0.0", "2.0.0"]
    );
    assert!(
        (tally.percent("2.0.0") - 20.0).abs() <= 5.0,
        "canary share {:.1}% is not within 5 points of 20%",
        tally.percent("2.0.0")
    );
    assert!((tally.percent("1.0.0") - 80.0).abs() <= 5.0);
    // podinfo's own counter saw exactly the requests the Gateway sent it.
    assert_eq!(canary_after - canary_before, tally.by_version["2.0.0"]);

    // Traefik's Prometheus metrics count the requests per backend Service.
    let metrics = traefik_metrics().await.unwrap();
    let served = |svc: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("traefik_service_requests_total{"))
            .filter(|l| l.contains(&format!("service=\"{}-{svc}-http-9898@", ns.name)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        served("podinfo-canary") >= tally.by_version["2.0.0"] as f64,
        "traefik_service_requests_total for the canary is {}",
        served("podinfo-canary")
    );
    assert!(served("podinfo-primary") >= tally.by_version["1.0.0"] as f64);
}

/// Why the slices are of type FQDN: the API server refuses loopback addresses in IPv4 slices.
#[tokio::test(flavor = "multi_thread")]
async fn ipv4_endpoint_slices_refuse_loopback_so_fqdn_slices_carry_it() {
    let ns = TestNs::new("slices").await;
    let mut slice = endpoint_slices(
        &ns.name,
        "svc",
        "http",
        &["127.0.0.1:9898".parse().unwrap()],
    )
    .unwrap()
    .remove(0);
    let api = ns.api::<EndpointSlice>();
    api.create(&PostParams::default(), &slice)
        .await
        .expect("an FQDN slice with address 127.0.0.1 is accepted");
    slice.address_type = "IPv4".into();
    slice.metadata.name = Some("svc-ipv4".into());
    let err = api
        .create(&PostParams::default(), &slice)
        .await
        .expect_err("an IPv4 slice with a loopback address is refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}
