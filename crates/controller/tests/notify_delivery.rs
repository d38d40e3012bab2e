//! Alert delivery against local HTTP receivers on loopback that stand in for chat providers:
//! one that rate-limits with `Retry-After`, one that fails then recovers, one that never
//! answers, one that refuses. Retries are counted and the waits read from the delivery report,
//! never timed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fledge_controller::notify::{DeliveryError, DeliveryPolicy, Destination, deliver};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::Url;
use serde_json::json;

/// One scripted answer: status and optional `Retry-After`; `None` never answers.
type Answer = Option<(u16, Option<&'static str>)>;

#[derive(Clone, Default)]
struct Seen {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    auth: Arc<Mutex<Vec<Option<String>>>>,
}

/// A receiver answering `script` in order (the last answer repeats).
async fn receiver(script: Vec<Answer>) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let script = Arc::new(script);
    let calls = Arc::new(Mutex::new(0usize));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (s, script, calls) = (s.clone(), script.clone(), calls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (s, script, calls) = (s.clone(), script.clone(), calls.clone());
                    async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        s.bodies
                            .lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap_or_default());
                        s.auth.lock().unwrap().push(auth);
                        let n = {
                            let mut c = calls.lock().unwrap();
                            *c += 1;
                            *c - 1
                        };
                        let answer = script[n.min(script.len() - 1)];
                        let Some((status, retry_after)) = answer else {
                            // Never answers: hold the request until the client gives up.
                            std::future::pending::<()>().await;
                            unreachable!()
                        };
                        let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"")));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        if let Some(ra) = retry_after {
                            resp.headers_mut()
                                .insert("retry-after", ra.parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn policy() -> DeliveryPolicy {
    DeliveryPolicy {
        timeout: Duration::from_millis(500),
        retries: 3,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

fn dest(addr: SocketAddr, token: Option<&str>) -> Destination {
    Destination {
        url: Url::parse(&format!("http://{addr}/services/T0/B0/SECRET")).unwrap(),
        proxy: None,
        token: token.map(str::to_string),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn a_rate_limited_message_waits_as_retry_after_asks_then_arrives() {
    let (addr, seen) = receiver(vec![Some((429, Some("1"))), Some((200, None))]).await;
    let body = json!({"text": "hello"});
    let r = deliver(&client(), &dest(addr, None), &body, &policy()).await;
    assert_eq!(r.result, Ok(()));
    assert_eq!(r.attempts, 2);
    assert_eq!(
        r.waits,
        vec![Duration::from_secs(1)],
        "Retry-After, not the backoff"
    );
    let bodies = seen.bodies.lock().unwrap().clone();
    assert_eq!(bodies, vec![body.clone(), body]);
}

#[tokio::test]
async fn a_server_error_is_retried_with_backoff_until_it_answers() {
    let (addr, seen) = receiver(vec![
        Some((500, None)),
        Some((503, None)),
        Some((200, None)),
    ])
    .await;
    let r = deliver(&client(), &dest(addr, None), &json!({"n": 1}), &policy()).await;
    assert_eq!(r.result, Ok(()));
    assert_eq!(r.attempts, 3);
    assert_eq!(r.waits.len(), 2);
    assert!(r.waits.iter().all(|w| *w <= Duration::from_millis(50)));
    assert_eq!(seen.bodies.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_provider_that_never_answers_times_out_once_without_retry() {
    let (addr, seen) = receiver(vec![None]).await;
    let r = deliver(&client(), &dest(addr, None), &json!({"n": 1}), &policy()).await;
    assert_eq!(
        r.result,
        Err(DeliveryError::Timeout(Duration::from_millis(500)))
    );
    assert_eq!(r.attempts, 1, "a timeout may have posted: never repeated");
    assert_eq!(seen.bodies.lock().unwrap().len(), 1);
    assert_eq!(r.result.unwrap_err().label(), "timeout");
}

#[tokio::test]
async fn other_client_errors_are_not_retried() {
    for status in [400, 403, 404] {
        let (addr, seen) = receiver(vec![Some((status, None))]).await;
        let r = deliver(&client(), &dest(addr, None), &json!({}), &policy()).await;
        assert_eq!(
            r.result,
            Err(DeliveryError::Status {
                status,
                retry_after: None
            })
        );
        assert_eq!(r.attempts, 1);
        assert_eq!(seen.bodies.lock().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn retries_end_and_a_long_retry_after_is_not_waited_for() {
    let (addr, _) = receiver(vec![Some((502, None))]).await;
    let r = deliver(&client(), &dest(addr, None), &json!({}), &policy()).await;
    assert_eq!(r.attempts, 4, "the first attempt and three retries");
    assert_eq!(r.result.unwrap_err().label(), "server_error");

    let (addr, seen) = receiver(vec![Some((429, Some("3600")))]).await;
    let r = deliver(&client(), &dest(addr, None), &json!({}), &policy()).await;
    assert_eq!(
        r.result,
        Err(DeliveryError::RetryAfterTooLong(Duration::from_secs(3600)))
    );
    assert_eq!(r.attempts, 1);
    assert_eq!(seen.bodies.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_retried_and_errors_never_show_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The listener is closed: connections are refused.
    let r = deliver(&client(), &dest(port, None), &json!({}), &policy()).await;
    assert_eq!(r.attempts, 4);
    let e = r.result.unwrap_err();
    assert_eq!(e, DeliveryError::Connect);
    assert!(!e.to_string().contains("SECRET"));
}

#[tokio::test]
async fn a_token_is_sent_as_a_bearer_header() {
    let (addr, seen) = receiver(vec![Some((200, None))]).await;
    let r = deliver(
        &client(),
        &dest(addr, Some("xoxb-1")),
        &json!({}),
        &policy(),
    )
    .await;
    assert_eq!(r.result, Ok(()));
    assert_eq!(
        seen.auth.lock().unwrap().clone(),
        vec![Some("Bearer xoxb-1".to_string())]
    );
}

/// The controller's alert path with a default provider (no API server needed): a message goes
/// out once however often the engine repeats it, traffic steps stay out of chat, and sending
/// returns at once even when the provider never answers.
mod alerts {
    use super::*;
    use fledge_api::{Canary, CanaryStatus};
    use fledge_controller::metrics::Metrics;
    use fledge_controller::notify::{AlertSettings, Alerts, DefaultProvider, message};
    use fledge_core::{NotifyKind, Severity};
    use kube::runtime::events::Reporter;

    fn start(kind: &str, url: String) -> (Arc<Alerts>, Arc<Metrics>) {
        start_with(kind, url, None)
    }

    fn start_with(
        kind: &str,
        url: String,
        dashboard_url: Option<&str>,
    ) -> (Arc<Alerts>, Arc<Metrics>) {
        // Never contacted: the default provider needs no AlertProvider object.
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let metrics = Arc::new(Metrics::new());
        let settings = AlertSettings {
            default: Some(DefaultProvider {
                kind: kind.into(),
                address: url,
                ..Default::default()
            }),
            policy: policy(),
            cluster: None,
            no_cross_namespace_refs: false,
            dashboard_url: dashboard_url.map(str::to_string),
        };
        let reporter = Reporter {
            controller: "fledge-test".into(),
            instance: None,
        };
        (
            Alerts::start(client, reporter, settings, metrics.clone()),
            metrics,
        )
    }

    fn canary() -> Canary {
        let mut c = Canary::new("podinfo", Default::default());
        c.metadata.namespace = Some("shop".into());
        c.metadata.uid = Some("uid-1".into());
        c.spec.target_ref.name = "podinfo".into();
        c
    }

    fn send(alerts: &Alerts, kind: NotifyKind, severity: Severity, text: &str) {
        let c = canary();
        let status = CanaryStatus::default();
        alerts.send(
            &c,
            message(&c, None, &status, "sum".into(), severity, kind, text),
            &[fledge_core::alerts::AlertTarget::Default],
        );
    }

    async fn settle(seen: &Seen, n: usize) {
        for _ in 0..200 {
            if seen.bodies.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    // Repeats are dropped by the engine (fledge_core::alerts), before they get here.
    #[tokio::test]
    async fn alerts_are_posted_in_order_without_traffic_steps_in_chat() {
        let (addr, seen) = receiver(vec![Some((200, None))]).await;
        let (alerts, metrics) = start("slack", format!("http://{addr}/slack"));
        send(
            &alerts,
            NotifyKind::Waiting,
            Severity::Warn,
            "waiting for approval",
        );
        // Chat leaves traffic steps out by default.
        send(
            &alerts,
            NotifyKind::TrafficStep,
            Severity::Info,
            "weight 20",
        );
        send(
            &alerts,
            NotifyKind::RolledBack,
            Severity::Error,
            "rolled back",
        );
        settle(&seen, 2).await;
        // One more round trip through the same queue: anything else would have arrived first.
        send(&alerts, NotifyKind::Promoted, Severity::Info, "promoted");
        settle(&seen, 3).await;
        let bodies = seen.bodies.lock().unwrap().clone();
        let texts: Vec<&str> = bodies
            .iter()
            .map(|b| b["blocks"][1]["text"]["text"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            texts,
            vec!["waiting for approval", "rolled back", "promoted"]
        );
        let counted = "fledge_alerts_sent_total{provider=\"slack\"} 3";
        for _ in 0..200 {
            if metrics.encode().contains(counted) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(metrics.encode().contains(counted), "{}", metrics.encode());
    }

    #[tokio::test]
    async fn with_a_dashboard_url_alerts_link_to_the_canarys_page() {
        let (addr, seen) = receiver(vec![Some((200, None))]).await;
        let (alerts, _) = start_with(
            "slack",
            format!("http://{addr}/slack"),
            Some("https://fledge.example.com"),
        );
        send(
            &alerts,
            NotifyKind::RolledBack,
            Severity::Error,
            "rolled back",
        );
        settle(&seen, 1).await;
        let body = seen.bodies.lock().unwrap()[0].to_string();
        assert!(
            body.contains("<https://fledge.example.com/canaries/shop/podinfo|Open the Canary>"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn the_generic_webhook_gets_traffic_steps() {
        let (addr, seen) = receiver(vec![Some((200, None))]).await;
        let (alerts, _) = start("webhook", format!("http://{addr}/hook"));
        send(
            &alerts,
            NotifyKind::TrafficStep,
            Severity::Info,
            "weight 20",
        );
        settle(&seen, 1).await;
        let bodies = seen.bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0]["metadata"]["kind"], "trafficStep");
    }

    #[tokio::test]
    async fn a_hung_provider_is_counted_and_never_blocks_the_sender() {
        let (addr, seen) = receiver(vec![None]).await;
        let (alerts, metrics) = start("discord", format!("http://{addr}/discord"));
        for i in 0..20 {
            // Returns at once: the reconcile never waits for a provider.
            send(
                &alerts,
                NotifyKind::CheckFailed,
                Severity::Warn,
                &format!("check {i}"),
            );
        }
        settle(&seen, 1).await;
        for _ in 0..200 {
            if metrics.encode().contains("reason=\"timeout\"") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            metrics
                .encode()
                .contains("fledge_alerts_failed_total{provider=\"discord\",reason=\"timeout\"}"),
            "{}",
            metrics.encode()
        );
    }
}
