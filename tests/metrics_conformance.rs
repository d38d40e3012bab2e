//! The metrics providers' conformance cases against the real servers (the provider crate's own
//! suite covers every case with a scripted server in each wire format; here the cases a real
//! server can be made to answer): one number, no data, several series, NaN, a refused query,
//! and a server that is gone.

use std::time::Duration;

use fledge_core::MetricOutcome;
use fledge_e2e::analysis::OwnPrometheus;
use fledge_metrics_providers::{ProviderConfig, provider_for};

fn config(address: &str) -> ProviderConfig {
    ProviderConfig {
        kind: "prometheus".into(),
        address: address.into(),
        headers: Vec::new(),
        secret: None,
        insecure_skip_verify: false,
        region: None,
    }
}

#[tokio::test]
async fn a_real_prometheus_gives_one_number_or_says_what_went_wrong() {
    let mut prom = OwnPrometheus::start_new("metrics-conformance")
        .await
        .unwrap();
    let p = provider_for(&config(&prom.url), Duration::from_secs(10)).unwrap();
    p.online().await.expect("online");
    let several = r#"label_replace(vector(1), "a", "1", "", "") or label_replace(vector(2), "a", "2", "", "")"#;
    for (query, want) in [
        ("vector(99.5)", "Value(99.5)"),
        ("scalar(vector(42))", "Value(42.0)"),
        ("absent_metric_fledge_conformance", "NoData"),
        (several, "2 series where one number is expected"),
        ("vector(0) / 0", "Value(NaN)"),
        ("sum(", "refused the query"),
    ] {
        let got = format!("{:?}", p.query(query).await);
        assert!(got.contains(want), "{query}: {got}");
    }
    let address = prom.url.clone();
    prom.stop();
    let gone = provider_for(&config(&address), Duration::from_secs(5)).unwrap();
    assert!(
        matches!(
            gone.query("vector(1)").await,
            MetricOutcome::ProviderUnreachable(_)
        ),
        "a stopped server is unreachable"
    );
    assert!(gone.online().await.is_err());
}
