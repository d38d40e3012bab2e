//! `fledge-loadgen serve`: a load tester service with the webhook API of Flagger's load
//! tester.
//!
//! - `POST /` takes Flagger's webhook payload and starts the task in its `metadata`
//!   (see [`task`]); background tasks answer 202, once per canary and command.
//! - `/gate/approve` (200) and `/gate/halt` (403) answer the same whatever the payload;
//!   `/gate/check` answers 200 when the canary's gate is open and 403 when closed;
//!   `/gate/open` and `/gate/close` set it (202). `/rollback/check|open|close` do the same for
//!   a separate rollback gate.
//! - `GET /jobs` lists the running jobs; `POST /jobs/cancel` with a payload cancels the
//!   canary's jobs (fledge's additions).
//! - `/healthz`, and `/metrics` in the OpenMetrics text format.
//!
//! With a token, every route but `/healthz` wants `Authorization: Bearer <token>`, or Basic
//! authorization whose password is the token (what a webhook URL with user info,
//! `http://fledge:<token>@host/`, sends). Bad input gets a 4xx and a one-line reason.

pub mod gates;
pub mod jobs;
pub mod metrics;
pub mod task;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use gates::{Gates, Kind};
use jobs::{Jobs, Outcome, Started};
use metrics::Metrics;
use task::Mode;

/// The largest request body the service reads.
pub const MAX_BODY: usize = 1 << 20;

/// Settings of the service.
#[derive(Clone, Debug)]
pub struct Config {
    /// Run commands that are not `hey` lines in a shell, as Flagger does. Off by default.
    pub allow_commands: bool,
    /// The token callers must present; `None` lets everyone in.
    pub token: Option<String>,
    /// The longest a job (or a blocking task) may run.
    pub job_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            allow_commands: false,
            token: None,
            job_timeout: Duration::from_secs(3600),
        }
    }
}

/// Flagger's webhook payload. `phase`, `checksum` and any other field are accepted and
/// ignored.
#[derive(Debug, Deserialize)]
struct Payload {
    name: String,
    namespace: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// The service's state.
pub struct Service {
    config: Config,
    /// The gates.
    pub gates: Gates,
    /// The background jobs.
    pub jobs: Arc<Jobs>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
}

type Answer = Response<Full<Bytes>>;

fn answer(code: StatusCode, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl Service {
    /// A service with no gate open and no job running.
    pub fn new(config: Config) -> Arc<Service> {
        let metrics = Arc::new(Metrics::new());
        Arc::new(Service {
            jobs: Arc::new(Jobs::new(metrics.clone(), config.job_timeout)),
            gates: Gates::default(),
            metrics,
            config,
        })
    }

    /// Answers one request. Never fails and never panics on what the caller sent.
    pub async fn handle<B>(&self, req: Request<B>) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_string();
        let resp = self.route(req).await;
        let known = matches!(
            path.as_str(),
            "/" | "/healthz"
                | "/metrics"
                | "/jobs"
                | "/jobs/cancel"
                | "/gate/approve"
                | "/gate/halt"
                | "/gate/check"
                | "/gate/open"
                | "/gate/close"
                | "/rollback/check"
                | "/rollback/open"
                | "/rollback/close"
        );
        self.metrics
            .webhook(if known { &path } else { "other" }, resp.status().as_u16());
        resp
    }

    async fn route<B>(&self, req: Request<B>) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_string();
        if path == "/healthz" {
            return answer(StatusCode::OK, "OK");
        }
        if !self.authorized(&req) {
            let mut r = answer(StatusCode::UNAUTHORIZED, "missing or wrong token");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
        match path.as_str() {
            "/metrics" => {
                let mut r = answer(StatusCode::OK, self.metrics.encode());
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                return r;
            }
            "/gate/approve" => return answer(StatusCode::OK, "Approved"),
            "/gate/halt" => return answer(StatusCode::FORBIDDEN, "Forbidden"),
            "/jobs" if req.method() == Method::GET => {
                let mut r = answer(
                    StatusCode::OK,
                    serde_json::to_vec(&self.jobs.list()).unwrap_or_default(),
                );
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                return r;
            }
            "/" | "/jobs/cancel" | "/gate/check" | "/gate/open" | "/gate/close"
            | "/rollback/check" | "/rollback/open" | "/rollback/close" => {}
            _ => return answer(StatusCode::NOT_FOUND, format!("no route {path}")),
        }
        if req.method() != Method::POST {
            return answer(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} takes a POST of the webhook payload"),
            );
        }
        let payload = match read_payload(req).await {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        let (name, ns) = (payload.name.as_str(), payload.namespace.as_str());
        let gate = |kind: Kind, action: &str| -> Answer {
            match action {
                "check" => {
                    let open = self.gates.is_open(kind, name, ns);
                    tracing::info!(canary = %format!("{ns}/{name}"), ?kind, open, "gate check");
                    if open {
                        answer(StatusCode::OK, "Approved")
                    } else {
                        answer(StatusCode::FORBIDDEN, "Forbidden")
                    }
                }
                "open" => {
                    self.gates.open(kind, name, ns);
                    tracing::info!(canary = %format!("{ns}/{name}"), ?kind, "gate opened");
                    answer(StatusCode::ACCEPTED, "gate opened")
                }
                _ => {
                    self.gates.close(kind, name, ns);
                    tracing::info!(canary = %format!("{ns}/{name}"), ?kind, "gate closed");
                    answer(StatusCode::ACCEPTED, "gate closed")
                }
            }
        };
        match path.as_str() {
            "/gate/check" => gate(Kind::Promotion, "check"),
            "/gate/open" => gate(Kind::Promotion, "open"),
            "/gate/close" => gate(Kind::Promotion, "close"),
            "/rollback/check" => gate(Kind::Rollback, "check"),
            "/rollback/open" => gate(Kind::Rollback, "open"),
            "/rollback/close" => gate(Kind::Rollback, "close"),
            "/jobs/cancel" => {
                let n = self.jobs.cancel(&format!("{ns}/{name}"));
                answer(StatusCode::OK, format!("cancelled {n} job(s)"))
            }
            _ => self.task(payload).await,
        }
    }

    async fn task(&self, payload: Payload) -> Answer {
        let canary = format!("{}/{}", payload.namespace, payload.name);
        let Some(metadata) = payload.metadata.filter(|m| !m.is_empty()) else {
            return answer(StatusCode::BAD_REQUEST, "metadata not found in payload");
        };
        let task = match task::parse(&metadata, self.config.allow_commands) {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(canary = %canary, "refused: {why}");
                return answer(StatusCode::BAD_REQUEST, why);
            }
        };
        match task.mode {
            Mode::Background => {
                match self
                    .jobs
                    .start(canary.clone(), task.command, task.work, task.log_output)
                {
                    Started::New(id) => answer(StatusCode::ACCEPTED, format!("job {id} started")),
                    Started::AlreadyRunning(id) => {
                        tracing::info!(canary = %canary, job = id, "command skipped: already running");
                        answer(StatusCode::ACCEPTED, format!("job {id} already running"))
                    }
                }
            }
            Mode::Blocking => {
                let outcome = self
                    .jobs
                    .execute(&canary, &task.command, &task.work, CancellationToken::new())
                    .await;
                let (ok, text) = match outcome {
                    Outcome::Load(r) => {
                        let labels: Vec<String> = match &task.work {
                            task::Work::Load(p) => p.targets.iter().map(|t| t.label()).collect(),
                            task::Work::Shell { .. } => Vec::new(),
                        };
                        let text = r.to_text(&labels);
                        if task.log_output {
                            tracing::info!(canary = %canary, "{text}");
                        }
                        (true, text)
                    }
                    Outcome::Shell { ok, output } => {
                        if task.log_output || !ok {
                            tracing::info!(canary = %canary, ok, "{output}");
                        }
                        (ok, output)
                    }
                    Outcome::Failed(why) => (false, why),
                };
                if !ok {
                    answer(StatusCode::INTERNAL_SERVER_ERROR, text)
                } else if task.return_output {
                    answer(StatusCode::OK, text)
                } else {
                    answer(StatusCode::OK, "")
                }
            }
        }
    }

    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(token) = &self.config.token else {
            return true;
        };
        let Some(value) = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let presented = if let Some(t) = value.strip_prefix("Bearer ") {
            t.trim().to_string()
        } else if let Some(b) = value.strip_prefix("Basic ") {
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
                return false;
            };
            let text = String::from_utf8_lossy(&raw).into_owned();
            match text.split_once(':') {
                Some((_, password)) => password.to_string(),
                None => return false,
            }
        } else {
            return false;
        };
        constant_time_eq(presented.as_bytes(), token.as_bytes())
    }

    /// Serves on `addr` until `stop` fires, then cancels the jobs (waiting up to 10 s).
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        loop {
            let (stream, _) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, never exit.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let svc = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let svc = svc.clone();
                    async move { Ok::<_, std::convert::Infallible>(svc.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
        self.jobs.shutdown(Duration::from_secs(10)).await;
        Ok(())
    }
}

/// Binds `addr`; the error names the address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

async fn read_payload<B>(req: Request<B>) -> Result<Payload, Answer>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {MAX_BODY} bytes"),
            ));
        }
        Err(e) => {
            return Err(answer(
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {e}"),
            ));
        }
    };
    let payload: Payload = serde_json::from_slice(&body).map_err(|e| {
        answer(
            StatusCode::BAD_REQUEST,
            format!("invalid webhook payload: {e}"),
        )
    })?;
    if payload.name.is_empty() || payload.namespace.is_empty() {
        return Err(answer(
            StatusCode::BAD_REQUEST,
            "invalid webhook payload: name and namespace must not be empty",
        ));
    }
    Ok(payload)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
