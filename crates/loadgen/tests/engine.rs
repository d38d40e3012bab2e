//! The engine against a recording hyper server on loopback: exact request counts, methods,
//! headers and bodies, HTTP/1.1 keep-alive and h2c and TLS, both load models, bounds,
//! cancellation, and how failures are counted.

mod common;

use std::time::Duration;

use bytes::Bytes;
use fledge_loadgen::{ErrorKind, HttpVersion, Model, Plan, Target, TlsOptions, hey, run};
use hyper::{Method, Version};
use tokio_util::sync::CancellationToken;

/// Every run here ends by its own bound; this only turns a hang into a failure.
const LIMIT: Duration = Duration::from_secs(60);

async fn go(plan: &Plan) -> fledge_loadgen::Report {
    tokio::time::timeout(LIMIT, run(plan, CancellationToken::new(), None, None))
        .await
        .expect("the run ended by its bound")
        .expect("the plan is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_sends_exactly_n_requests_with_method_headers_and_body() {
    let server = common::start().await;
    let line = format!(
        "hey -n 50 -c 3 -m POST -H 'X-Canary: insider' -H 'Cookie: canary=always' \
         -T application/json -d '{{\"a\":1}}' -host app.example.com {}",
        server.url("/echo?x=1")
    );
    let plan = hey::parse_command(&line).unwrap();
    let report = go(&plan).await;
    assert_eq!(report.requests(), 50);
    assert_eq!(report.statuses.get(&200), Some(&50));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.body_bytes, 50 * 5);
    let seen = server.recorder.requests();
    assert_eq!(seen.len(), 50);
    for r in &seen {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/echo?x=1");
        assert_eq!(r.version, Version::HTTP_11);
        assert_eq!(r.headers["host"], "app.example.com");
        assert_eq!(r.headers["x-canary"], "insider");
        assert_eq!(r.headers["cookie"], "canary=always");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["content-length"], "7");
        assert_eq!(r.body, Bytes::from_static(b"{\"a\":1}"));
    }
    // Keep-alive: at most one connection per worker.
    let conns = server.recorder.connections();
    assert!(
        (1..=3).contains(&conns),
        "{conns} connections for 3 workers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_carry_no_body_and_the_urls_host() {
    let server = common::start().await;
    let mut plan = Plan::get(&server.url("/")).unwrap();
    plan.requests = Some(7);
    let report = go(&plan).await;
    assert_eq!(report.requests(), 7);
    let seen = server.recorder.requests();
    assert_eq!(seen.len(), 7);
    for r in &seen {
        assert_eq!(r.method, "GET");
        assert_eq!(r.headers["host"], server.addr.to_string());
        assert!(r.body.is_empty());
        assert!(!r.headers.contains_key("content-length"));
    }
    assert_eq!(server.recorder.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_keepalive_opens_a_connection_per_request() {
    let server = common::start().await;
    let plan = hey::parse_command(&format!(
        "hey -n 12 -c 2 -disable-keepalive {}",
        server.url("/")
    ))
    .unwrap();
    let report = go(&plan).await;
    assert_eq!(report.requests(), 12);
    assert_eq!(server.recorder.count(), 12);
    assert_eq!(server.recorder.connections(), 12);
    for r in server.recorder.requests() {
        assert_eq!(r.headers["connection"], "close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge() {
    let server = common::start().await;
    let plan = hey::parse_command(&format!(
        "hey -n 20 -c 2 -h2 -m PUT -d body -host app.example.com {}",
        server.url("/h2")
    ))
    .unwrap();
    let report = go(&plan).await;
    assert_eq!(report.requests(), 20);
    assert_eq!(report.statuses.get(&200), Some(&20));
    let seen = server.recorder.requests();
    assert_eq!(seen.len(), 20);
    for r in &seen {
        assert_eq!(r.version, Version::HTTP_2);
        assert_eq!(r.method, "PUT");
        assert_eq!(r.path, "/h2");
        assert_eq!(r.authority.as_deref(), Some("app.example.com"));
        assert_eq!(r.body, Bytes::from_static(b"body"));
    }
    assert!(server.recorder.connections() <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_trusted_ca_speaks_h2_or_http1_as_negotiated() {
    let (acceptor, pem) = common::self_signed();
    let server = common::start_with_tls(Some(acceptor)).await;
    let ca = std::env::temp_dir().join(format!("fledge-loadgen-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, pem).unwrap();
    let url = format!("https://localhost:{}/tls", server.addr.port());
    for (http, version) in [
        (HttpVersion::Http2, Version::HTTP_2),
        (HttpVersion::Http1, Version::HTTP_11),
    ] {
        let before = server.recorder.count();
        let mut plan = Plan::get(&url).unwrap();
        plan.requests = Some(10);
        plan.concurrency = 2;
        plan.http = http;
        plan.tls = TlsOptions {
            insecure: false,
            ca_file: Some(ca.clone()),
        };
        let report = go(&plan).await;
        assert_eq!(
            report.statuses.get(&200),
            Some(&10),
            "{http:?}: {:?}",
            report.errors
        );
        let seen = server.recorder.requests();
        assert_eq!(seen.len() - before, 10);
        assert!(seen[before..].iter().all(|r| r.version == version));
    }
    // Without the CA the certificate is refused; --insecure accepts it.
    let mut plan = Plan::get(&url).unwrap();
    plan.requests = Some(3);
    let report = go(&plan).await;
    assert_eq!(report.errors.get(&ErrorKind::Tls), Some(&3));
    plan.tls.insecure = true;
    let report = go(&plan).await;
    assert_eq!(report.statuses.get(&200), Some(&3));
    let _ = std::fs::remove_file(ca);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_exactly_n_at_a_rate() {
    let server = common::start().await;
    let mut plan = Plan::get(&server.url("/open")).unwrap();
    plan.model = Model::OpenLoop { rate: 400.0 };
    plan.concurrency = 4;
    plan.requests = Some(40);
    let report = go(&plan).await;
    assert_eq!(report.requests(), 40);
    assert_eq!(server.recorder.count(), 40);
    assert_eq!(report.latency_us.len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_targets_split_by_weight_and_counts_agree() {
    let server = common::start().await;
    let mut plan = Plan::get(&server.url("/a")).unwrap();
    plan.targets
        .push(Target::parse(&server.url("/b"), 3).unwrap());
    plan.requests = Some(400);
    plan.concurrency = 4;
    let report = go(&plan).await;
    let seen = server.recorder.requests();
    let a = seen.iter().filter(|r| r.path == "/a").count() as u64;
    let b = seen.iter().filter(|r| r.path == "/b").count() as u64;
    assert_eq!(a + b, 400);
    assert_eq!(report.per_target, vec![a, b]);
    // Both are reached; /b three times as often on average.
    assert!(a > 0 && b > a, "a={a} b={b}");
    // One origin: the two paths share each worker's connection.
    assert!(server.recorder.connections() <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duration_bound_ends_the_run_and_counts_only_finished_requests() {
    let server = common::start().await;
    let mut plan = Plan::get(&server.url("/z")).unwrap();
    plan.duration = Some(Duration::from_millis(300));
    plan.concurrency = 2;
    plan.model = Model::OpenLoop { rate: 100.0 };
    let report = go(&plan).await;
    let received = server.recorder.count() as u64;
    // A request still in flight at the end reached the server but is not counted.
    assert!(
        report.requests() <= received && received <= report.requests() + 2,
        "report {} server {received}",
        report.requests()
    );
    assert!(report.requests() > 0);
    assert!(!report.cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_a_long_run_at_once() {
    let server = common::start().await;
    let mut plan = Plan::get(&server.url("/hang")).unwrap();
    plan.duration = Some(Duration::from_secs(3600));
    plan.timeout = None;
    plan.concurrency = 3;
    let cancel = CancellationToken::new();
    let handle = {
        let cancel = cancel.clone();
        tokio::spawn(async move { run(&plan, cancel, None, None).await })
    };
    // Wait until every worker hangs on the server, then cancel.
    while server.recorder.count() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let report = tokio::time::timeout(LIMIT, handle)
        .await
        .expect("the run stopped when cancelled")
        .unwrap()
        .unwrap();
    assert!(report.cancelled);
    // The requests in flight were dropped, not counted.
    assert_eq!(report.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_by_kind() {
    let server = common::start().await;
    // Status codes.
    let mut plan = Plan::get(&server.url("/status/503")).unwrap();
    plan.requests = Some(5);
    let report = go(&plan).await;
    assert_eq!(report.statuses.get(&503), Some(&5));
    assert_eq!(report.successes(), 0);
    // Timeouts.
    let mut plan = Plan::get(&server.url("/hang")).unwrap();
    plan.requests = Some(2);
    plan.timeout = Some(Duration::from_millis(50));
    let report = go(&plan).await;
    assert_eq!(report.errors.get(&ErrorKind::Timeout), Some(&2));
    assert_eq!(report.answers(), 0);
    // Connection refused: a port that was just free.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut plan = Plan::get(&format!("http://127.0.0.1:{port}/")).unwrap();
    plan.requests = Some(3);
    let report = go(&plan).await;
    assert_eq!(report.errors.get(&ErrorKind::Connect), Some(&3));
    let err = fledge_loadgen::probe(&plan, Duration::from_secs(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("cannot connect to http://127.0.0.1:{port}: ")),
        "{err}"
    );
}

#[tokio::test]
async fn unbounded_or_invalid_plans_are_refused_before_sending() {
    let server = common::start().await;
    let mut plan = Plan::get(&server.url("/")).unwrap();
    let err = run(&plan, CancellationToken::new(), None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unbounded"), "{err}");
    plan.requests = Some(1);
    plan.method = Method::POST;
    plan.concurrency = 0;
    assert!(
        run(&plan, CancellationToken::new(), None, None)
            .await
            .is_err()
    );
    assert_eq!(server.recorder.count(), 0);
}
