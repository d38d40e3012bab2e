//! The Prometheus provider beyond the conformance suite: its result types (scalar, range
//! vector), credentials and headers on every request, the Secret's address override, and the
//! configurations it refuses.

mod common;

use std::time::Duration;

use tokio::net::TcpListener;

use common::server;
use fledge_core::MetricOutcome;
use fledge_metrics_providers::prometheus::Prometheus;
use fledge_metrics_providers::{ProviderConfig, SecretData};

fn cfg(address: &str) -> ProviderConfig {
    ProviderConfig {
        kind: "prometheus".into(),
        address: address.into(),
        headers: Vec::new(),
        secret: None,
        insecure_skip_verify: false,
        region: None,
    }
}

fn secret(pairs: &[(&str, &str)]) -> Option<SecretData> {
    Some(SecretData {
        name: "test/prom".into(),
        data: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
    })
}

fn prom(c: &ProviderConfig) -> Prometheus {
    Prometheus::new(c, Duration::from_secs(2)).unwrap()
}

const ONE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"99.5"]}]}}"#;
const NONE: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
const TWO: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1700000000,"1"]},{"metric":{"a":"2"},"value":[1700000000,"2"]}]}}"#;
const SCALAR: &str =
    r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}"#;
const NAN: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"NaN"]}]}}"#;
const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"]]}]}}"#;
const BAD: &str = r#"{"status":"error","errorType":"bad_data","error":"1:14: parse error: unclosed left parenthesis"}"#;

#[tokio::test]
async fn one_series_is_a_value_and_everything_else_says_what_it_was() {
    for (status, body, want) in [
        (200, ONE, "Value(99.5)"),
        (200, SCALAR, "Value(42.0)"),
        (200, NONE, "NoData"),
        (200, TWO, "2 series where one number is expected"),
        (200, MATRIX, "range vector"),
        (
            400,
            BAD,
            "refused the query: 1:14: parse error: unclosed left parenthesis",
        ),
        (
            401,
            "denied",
            "answered HTTP 401 Unauthorized; check the credentials",
        ),
        (502, "bad gateway", "answered HTTP 502"),
    ] {
        let (url, _) = server(status, body).await;
        let got = format!("{:?}", prom(&cfg(&url)).query("q").await);
        assert!(got.contains(want), "{status} {body}: {got}");
    }
    let (url, _) = server(200, NAN).await;
    assert!(matches!(
        prom(&cfg(&url)).query("q").await,
        MetricOutcome::Value(v) if v.is_nan()
    ));
}

#[tokio::test]
async fn a_server_that_is_down_is_unreachable_and_never_shows_credentials() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = cfg(&format!(
        "http://admin:hunter2@127.0.0.1:{port}/prom?key=s3cr3t"
    ));
    let p = prom(&c);
    let MetricOutcome::ProviderUnreachable(m) = p.query("up").await else {
        panic!("not unreachable");
    };
    assert!(m.contains(&format!("http://127.0.0.1:{port}")), "{m}");
    assert!(m.contains("Connection refused"), "{m}");
    let online = p.online().await.unwrap_err();
    for text in [&m, &online, &format!("{c:?}")] {
        for secret in ["hunter2", "admin", "s3cr3t", "prom?"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Accepts and holds the connection without answering.
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let p = Prometheus::new(&cfg(&url), Duration::from_millis(300)).unwrap();
    let got = format!("{:?}", p.query("up").await);
    assert!(got.contains("did not answer within 0.3s"), "{got}");
    hold.abort();
}

#[tokio::test]
async fn credentials_and_headers_go_with_every_request() {
    let (url, seen) = server(200, ONE).await;
    let mut c = cfg(&url);
    c.secret = secret(&[("token", "tok-123")]);
    c.headers = vec![("X-Scope-OrgID".into(), "team-a".into())];
    assert!(matches!(
        prom(&c).query("up").await,
        MetricOutcome::Value(_)
    ));
    c.secret = secret(&[("username", "fledge"), ("password", "pw")]);
    assert!(matches!(
        prom(&c).query("vector(1)").await,
        MetricOutcome::Value(_)
    ));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let lower: Vec<String> = seen.iter().map(|h| h.to_ascii_lowercase()).collect();
    assert!(
        lower[0].contains("authorization: bearer tok-123"),
        "{}",
        seen[0]
    );
    assert!(lower[0].contains("x-scope-orgid: team-a"), "{}", seen[0]);
    assert!(
        lower[0].starts_with("get /api/v1/query?query=up"),
        "{}",
        seen[0]
    );
    // fledge:pw in base64.
    assert!(
        lower[1].contains("authorization: basic zmxlzgdlonb3"),
        "{}",
        seen[1]
    );
    assert!(lower[1].contains("query=vector%281%29"), "{}", seen[1]);
}

#[test]
fn bad_addresses_and_headers_are_refused_with_what_to_do() {
    for (address, want) in [
        ("prometheus:9090", "must start with http:// or https://"),
        ("not a url", "is not a URL"),
        ("ftp://host", "must start with http:// or https://"),
    ] {
        let err = Prometheus::new(&cfg(address), Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(err.contains(want), "{address}: {err}");
    }
    let mut c = cfg("http://127.0.0.1:1");
    c.headers = vec![("bad header".into(), "x".into())];
    let err = Prometheus::new(&c, Duration::from_secs(1)).err().unwrap();
    assert!(err.contains("not a valid HTTP header name"), "{err}");
    c.headers = Vec::new();
    c.secret = secret(&[("ca.crt", "not a certificate")]);
    let err = Prometheus::new(&c, Duration::from_secs(1)).err().unwrap();
    assert!(err.contains("ca.crt"), "{err}");
    c.secret = secret(&[("username", "u")]);
    let err = Prometheus::new(&c, Duration::from_secs(1)).err().unwrap();
    assert!(
        err.contains("Secret test/prom has a username but no password"),
        "{err}"
    );
    c.secret = secret(&[("password", "p")]);
    let err = Prometheus::new(&c, Duration::from_secs(1)).err().unwrap();
    assert!(err.contains("has a password but no username"), "{err}");
}

#[tokio::test]
async fn an_address_in_the_secret_overrides_the_configured_one() {
    let (url, seen) = server(200, ONE).await;
    let mut c = cfg("http://127.0.0.1:1");
    c.secret = secret(&[("address", &url)]);
    assert!(matches!(
        prom(&c).query("up").await,
        MetricOutcome::Value(_)
    ));
    assert_eq!(seen.lock().unwrap().len(), 1);
}
