//! The conformance suite every metrics provider passes: against a server on loopback that
//! answers in the provider's own wire format, one query gives exactly one finite number or a
//! failure that says which (no data, several series, NaN, a refused query, denied, unreachable,
//! timed out), and no outcome ever shows the provider's secret.
//!
//! Adding a provider: one [`Fixture`] (how its server answers each case) and one line in
//! [`fixtures`].

mod common;

use std::time::Duration;

use common::server;
use fledge_core::MetricOutcome;
use fledge_metrics_providers::{ProviderConfig, SecretData, provider_for};
use tokio::net::TcpListener;

/// What the server is made to do.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Case {
    /// One series with one finite number.
    OneNumber(f64),
    /// No series at all.
    NoData,
    /// Several series where one number is expected.
    SeveralSeries,
    /// One series whose value is NaN.
    NaN,
    /// The server refuses the query as invalid.
    RefusedQuery,
    /// The server answers 401 Unauthorized.
    Unauthorized,
    /// The server answers 403 Forbidden.
    Forbidden,
}

const CASES: [Case; 7] = [
    Case::OneNumber(99.5),
    Case::NoData,
    Case::SeveralSeries,
    Case::NaN,
    Case::RefusedQuery,
    Case::Unauthorized,
    Case::Forbidden,
];

/// A secret value that must never appear in an outcome.
const SECRET: &str = "s3cr3t-t0ken";

/// How one provider's server answers, and how fledge is configured to reach it.
trait Fixture: Sync {
    /// `spec.provider.type`.
    fn kind(&self) -> &'static str;
    /// The configuration for a server at `address`, with credentials holding [`SECRET`].
    fn config(&self, address: &str) -> ProviderConfig;
    /// The query the suite sends.
    fn query(&self) -> &'static str;
    /// The HTTP status and JSON body the server answers `case` with.
    fn answer(&self, case: Case) -> (u16, String);
}

struct Prometheus;

impl Fixture for Prometheus {
    fn kind(&self) -> &'static str {
        "prometheus"
    }
    fn config(&self, address: &str) -> ProviderConfig {
        ProviderConfig {
            kind: self.kind().into(),
            address: address.into(),
            headers: Vec::new(),
            secret: Some(SecretData {
                name: "test/prometheus".into(),
                data: [("token".to_string(), SECRET.as_bytes().to_vec())].into(),
            }),
            insecure_skip_verify: false,
        }
    }
    fn query(&self) -> &'static str {
        "sum(rate(requests_total[1m]))"
    }
    fn answer(&self, case: Case) -> (u16, String) {
        let vector = |values: &[&str]| {
            let series: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!(r#"{{"metric":{{"i":"{i}"}},"value":[1700000000,"{v}"]}}"#))
                .collect();
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
                series.join(",")
            )
        };
        match case {
            Case::OneNumber(v) => (200, vector(&[&v.to_string()])),
            Case::NoData => (200, vector(&[])),
            Case::SeveralSeries => (200, vector(&["1", "2", "3"])),
            Case::NaN => (200, vector(&["NaN"])),
            Case::RefusedQuery => (
                400,
                r#"{"status":"error","errorType":"bad_data","error":"parse error: unexpected end of input"}"#.into(),
            ),
            Case::Unauthorized => (401, "Unauthorized".into()),
            Case::Forbidden => (403, "Forbidden".into()),
        }
    }
}

/// Every provider the suite runs against.
fn fixtures() -> Vec<Box<dyn Fixture>> {
    vec![Box::new(Prometheus)]
}

/// The outcome of one query (after the online check, as the controller runs them).
async fn outcome(f: &dyn Fixture, address: &str, timeout: Duration) -> MetricOutcome {
    let p = match provider_for(&f.config(address), timeout) {
        Ok(p) => p,
        Err(e) => return e,
    };
    p.query(f.query()).await
}

fn judge(case: Case, got: &MetricOutcome) -> Result<(), String> {
    let text = format!("{got:?}");
    if text.contains(SECRET) {
        return Err(format!("the secret shows in {text}"));
    }
    let ok = match case {
        Case::OneNumber(v) => matches!(got, MetricOutcome::Value(x) if *x == v),
        Case::NoData => matches!(got, MetricOutcome::NoData),
        Case::SeveralSeries => matches!(got, MetricOutcome::Error(m) if m.contains("series")),
        // A NaN is never a passing number: either the value NaN, which the engine fails, or a
        // failure saying so.
        Case::NaN => match got {
            MetricOutcome::Value(v) => v.is_nan(),
            MetricOutcome::Error(m) => m.contains("NaN"),
            _ => false,
        },
        Case::RefusedQuery => matches!(got, MetricOutcome::Error(m) if m.contains("refused")),
        Case::Unauthorized => {
            matches!(got, MetricOutcome::ProviderUnreachable(m) | MetricOutcome::Error(m)
                if m.contains("401") && m.contains("credentials"))
        }
        Case::Forbidden => {
            matches!(got, MetricOutcome::ProviderUnreachable(m) | MetricOutcome::Error(m)
                if m.contains("403") && m.contains("credentials"))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{case:?} gave {text}"))
    }
}

#[tokio::test]
async fn every_provider_gives_one_number_or_says_what_went_wrong() {
    let mut wrong = Vec::new();
    for f in fixtures() {
        for case in CASES {
            let (status, body) = f.answer(case);
            let (url, count) = server(status, body).await;
            let got = outcome(f.as_ref(), &url, Duration::from_secs(5)).await;
            if let Err(e) = judge(case, &got) {
                wrong.push(format!("{}: {e}", f.kind()));
            }
            assert!(
                count.lock().unwrap().len() <= 3,
                "{}: retried without bound",
                f.kind()
            );
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn an_unreachable_server_is_unreachable_and_its_check_fails_offline() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for f in fixtures() {
        let address = format!("http://127.0.0.1:{port}");
        let got = outcome(f.as_ref(), &address, Duration::from_secs(5)).await;
        assert!(
            matches!(&got, MetricOutcome::ProviderUnreachable(m) if m.contains(&address) && !m.contains(SECRET)),
            "{}: {got:?}",
            f.kind()
        );
        let p = provider_for(&f.config(&address), Duration::from_secs(5)).unwrap();
        let online = p.online().await;
        assert!(
            online.as_ref().is_err_and(|m| !m.contains(SECRET)),
            "{}: online {online:?}",
            f.kind()
        );
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_timeout() {
    for f in fixtures() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        // Accepts and holds every connection without answering.
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            outcome(f.as_ref(), &address, Duration::from_millis(300)),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: the query outlived its timeout", f.kind()));
        assert!(
            matches!(&got, MetricOutcome::ProviderUnreachable(m) if m.contains("0.3s")),
            "{}: {got:?}",
            f.kind()
        );
        hold.abort();
    }
}

#[test]
fn a_type_this_build_lacks_is_refused_naming_the_ones_it_has() {
    let mut cfg = Prometheus.config("http://127.0.0.1:1");
    cfg.kind = "graphite-but-not-really".into();
    let Err(MetricOutcome::Error(m)) = provider_for(&cfg, Duration::from_secs(1)) else {
        panic!("accepted");
    };
    assert!(
        m.contains("graphite-but-not-really") && m.contains("prometheus"),
        "{m}"
    );
}

#[test]
fn every_provider_is_known_to_validation_and_runs_the_suite() {
    assert_eq!(
        fledge_metrics_providers::provider_names(),
        fledge_api::validate::SUPPORTED_METRIC_PROVIDERS,
        "fledge validate accepts exactly the metrics providers this build has"
    );
    let covered: Vec<&str> = fixtures().iter().map(|f| f.kind()).collect();
    assert_eq!(covered, fledge_metrics_providers::provider_names());
}
