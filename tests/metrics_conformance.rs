//! The metrics providers' conformance cases against the real servers (the provider crate's own
//! suite covers every case with a scripted server in each wire format; here the cases a real
//! server can be made to answer): one number, no data, several series, NaN, a refused query,
//! and a server that is gone. The servers: Prometheus, VictoriaMetrics both as a second
//! Prometheus-compatible server and as a Graphite render API over data written through the
//! carbon plaintext protocol, and InfluxDB 1.8 for Flux over the v2 query API.

use std::time::Duration;

use fledge_core::MetricOutcome;
use fledge_e2e::analysis::OwnPrometheus;
use fledge_e2e::influx::InfluxDb;
use fledge_e2e::victoria::VictoriaMetrics;
use fledge_metrics_providers::{ProviderConfig, SecretData, provider_for};

fn config(address: &str) -> ProviderConfig {
    config_of("prometheus", address)
}

fn config_of(kind: &str, address: &str) -> ProviderConfig {
    ProviderConfig {
        kind: kind.into(),
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

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn victoria_metrics_answers_the_prometheus_provider_and_its_range_queries() {
    let vm = VictoriaMetrics::start().await.unwrap();
    let t = now() * 1000;
    let text: String = (0..10)
        .flat_map(|i| {
            let at = t - (9 - i) * 1000;
            [
                format!(
                    "fledge_conformance_latency{{pod=\"a\"}} {} {at}\n",
                    0.1 + i as f64 * 0.01
                ),
                format!(
                    "fledge_conformance_latency{{pod=\"b\"}} {} {at}\n",
                    0.2 + i as f64 * 0.01
                ),
            ]
        })
        .collect();
    vm.import_prometheus(&text).await.unwrap();
    vm.wait_queried("fledge_conformance_latency").await.unwrap();
    let p = provider_for(&config(&vm.url), Duration::from_secs(10)).unwrap();
    p.online().await.expect("online");
    for (query, want) in [
        ("vector(99.5)", "Value(99.5)"),
        ("sum(fledge_conformance_latency)", "Value(0.48"),
        ("absent_metric_fledge_conformance", "NoData"),
        (
            "fledge_conformance_latency",
            "2 series where one number is expected",
        ),
        ("sum(", "refused the query"),
    ] {
        let got = format!("{:?}", p.query(query).await);
        assert!(got.contains(want), "{query}: {got}");
    }
    // The range query a statistical judgement runs: every point of both pods' series.
    let samples = p
        .samples(
            "fledge_conformance_latency",
            Duration::from_secs(20),
            Some(now()),
        )
        .await
        .unwrap();
    assert!(samples.len() >= 10, "{samples:?}");
    assert!(
        samples.iter().all(|v| (0.1..0.3).contains(v)),
        "{samples:?}"
    );
    let none = p
        .samples(
            "absent_metric_fledge_conformance",
            Duration::from_secs(20),
            None,
        )
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
async fn a_real_graphite_render_api_over_carbon_data_gives_one_number_or_says_what_went_wrong() {
    let mut vm = VictoriaMetrics::start().await.unwrap();
    // One point per 10 s bucket of the render API (the last one 10 s ago: never a bucket in
    // the making).
    let t = now() / 10 * 10 - 10;
    let mut points = Vec::new();
    for i in 0..12 {
        points.push((
            "shop.podinfo.canary.errors",
            (i * 3) as f64,
            t - 110 + i * 10,
        ));
        points.push(("shop.podinfo.primary.errors", i as f64, t - 110 + i * 10));
    }
    vm.carbon(&points).unwrap();
    vm.wait_rendered("shop.podinfo.canary.errors")
        .await
        .unwrap();
    vm.wait_rendered("shop.podinfo.primary.errors")
        .await
        .unwrap();
    let g = provider_for(&config_of("graphite", &vm.url), Duration::from_secs(10)).unwrap();
    g.online().await.expect("online");
    for (query, want) in [
        // The last datapoint with a value, as Flagger reads it.
        (
            "target=shop.podinfo.canary.errors&from=-5min",
            "Value(33.0)",
        ),
        (
            "target=sumSeries(shop.podinfo.*.errors)\n  &from=-5min",
            "Value(44.0)",
        ),
        ("target=shop.podinfo.absent.errors&from=-5min", "NoData"),
        (
            "target=shop.podinfo.*.errors&from=-5min",
            "2 series (shop.podinfo.canary.errors, shop.podinfo.primary.errors)",
        ),
        ("target=bogus(x&from=-5min", "cannot parse"),
    ] {
        let got = format!("{:?}", g.query(query).await);
        assert!(got.contains(want), "{query}: {got}");
    }
    let address = vm.url.clone();
    drop(std::mem::replace(
        &mut vm,
        VictoriaMetrics::start().await.unwrap(),
    ));
    let gone = provider_for(&config_of("graphite", &address), Duration::from_secs(5)).unwrap();
    assert!(
        matches!(
            gone.query("target=shop.podinfo.canary.errors").await,
            MetricOutcome::ProviderUnreachable(_)
        ),
        "a stopped server is unreachable"
    );
}

fn influx_config(address: &str, token: &str) -> ProviderConfig {
    ProviderConfig {
        secret: Some(SecretData {
            name: "e2e/influx-token".into(),
            data: [("token", token), ("org", "my-org")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        }),
        ..config_of("influxdb", address)
    }
}

#[tokio::test]
async fn a_real_influxdb_answers_flux_with_one_number_or_says_what_went_wrong() {
    let mut db = InfluxDb::start().await.unwrap();
    let t = now();
    let mut lines = String::new();
    for i in 0..10 {
        for (code, n) in [("200", 10 + i), ("500", i % 3)] {
            lines.push_str(&format!(
                "requests,app=podinfo,code={code} count={n} {}\n",
                t - 100 + i * 10
            ));
        }
    }
    lines.push_str(&format!("latency,app=podinfo p99=0.25 {}\n", t - 5));
    db.write(&lines).await.unwrap();
    let p = provider_for(
        &influx_config(&db.url, &InfluxDb::token()),
        Duration::from_secs(10),
    )
    .unwrap();
    p.online().await.expect("online");
    let bucket = InfluxDb::bucket();
    let from =
        |rest: &str| format!("from(bucket: \"{bucket}\")\n  |> range(start: -5m)\n  |> {rest}");
    let requests = r#"filter(fn: (r) => r._measurement == "requests")"#;
    for (query, want) in [
        // 10 + 11 + … + 19 answers of 200, and 0+1+2+0+1+2+0+1+2+0 of 500.
        (
            from(&format!("{requests}\n  |> group()\n  |> sum()")),
            "Value(154.0)",
        ),
        (
            from(&format!(
                "{requests}\n  |> filter(fn: (r) => r.code == \"500\")\n  |> sum()"
            )),
            "Value(9.0)",
        ),
        (
            from(&format!("{requests}\n  |> group()\n  |> count()")),
            "Value(20.0)",
        ),
        (
            from(r#"filter(fn: (r) => r._measurement == "latency") |> last()"#),
            "Value(0.25)",
        ),
        (
            from(r#"filter(fn: (r) => r._measurement == "absent") |> sum()"#),
            "NoData",
        ),
        (
            from(&format!("{requests}\n  |> sum()")),
            "2 rows where one number is expected",
        ),
        (
            from(&format!(
                "{requests}\n  |> group()\n  |> sum()\n  |> map(fn: (r) => ({{r with _value: float(v: \"NaN\")}}))"
            )),
            "Value(NaN)",
        ),
        (
            from(&format!(
                "{requests}\n  |> group()\n  |> sum()\n  |> map(fn: (r) => ({{r with _value: r._value / 0.0}}))"
            )),
            "cannot divide by zero",
        ),
        (
            "frm(bucket: \"e2e/autogen\")".to_string(),
            "undefined identifier",
        ),
        (
            "from(bucket: \"nope/autogen\") |> range(start: -5m)".to_string(),
            "no database",
        ),
    ] {
        let got = format!("{:?}", p.query(&query).await);
        assert!(got.contains(want), "{query}: {got}");
    }
    let wrong = provider_for(
        &influx_config(&db.url, "fledge:wrong-password"),
        Duration::from_secs(10),
    )
    .unwrap();
    let got = format!("{:?}", wrong.query(&from("count()")).await);
    assert!(
        got.contains("HTTP 401") && got.contains("token, org") && !got.contains("wrong-password"),
        "{got}"
    );
    assert!(wrong.online().await.is_err());
    let address = db.url.clone();
    drop(std::mem::replace(&mut db, InfluxDb::start().await.unwrap()));
    let gone = provider_for(
        &influx_config(&address, &InfluxDb::token()),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(
        matches!(
            gone.query(&from("count()")).await,
            MetricOutcome::ProviderUnreachable(_)
        ),
        "a stopped server is unreachable"
    );
}
