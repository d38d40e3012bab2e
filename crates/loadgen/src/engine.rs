//! The load engine: workers on the current tokio runtime, each with its own connection per
//! origin, paced closed-loop or open-loop, bounded by a duration and/or a request count, and
//! stopped at once by a cancellation token.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONNECTION, CONTENT_LENGTH, HOST, HeaderMap, HeaderValue};
use hyper::{Method, Request, Uri};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::conn::{Connector, Sender};
use crate::error::Error;
use crate::plan::{Model, Plan};
use crate::report::{ErrorKind, Report};

/// Sees every request as it completes: the service's live metrics.
pub trait Observer: Send + Sync {
    /// `target` is the index in the plan; `Ok` holds the status code.
    fn observe(&self, target: usize, result: Result<u16, ErrorKind>, latency: Duration);
}

/// Live counters of a run, for a progress line.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
}

impl Progress {
    /// Requests completed so far (answered or failed).
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// What every worker shares.
struct Shared {
    prepared: Vec<Prepared>,
    origins: usize,
    choose: Option<WeightedIndex<u32>>,
    method: Method,
    body: Bytes,
    model: Model,
    concurrency: usize,
    requests: Option<u64>,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    keepalive: bool,
    connector: Connector,
    tickets: AtomicU64,
    progress: Arc<Progress>,
    observer: Option<Arc<dyn Observer>>,
    start: Instant,
}

/// A target ready to send: its URI and headers for each HTTP version.
struct Prepared {
    target: crate::plan::Target,
    origin: usize,
    /// Origin-form (`/path?query`), for HTTP/1.1.
    uri_h1: Uri,
    /// Absolute form, whose authority becomes `:authority` in HTTP/2.
    uri_h2: Uri,
    headers_h1: HeaderMap,
    headers_h2: HeaderMap,
}

fn prepare(plan: &Plan) -> Result<(Vec<Prepared>, usize), Error> {
    let mut origins: Vec<(bool, String, u16)> = Vec::new();
    let mut out = Vec::new();
    for t in &plan.targets {
        let key = t.origin();
        let origin = match origins.iter().position(|o| (o.0, o.1.as_str(), o.2) == key) {
            Some(i) => i,
            None => {
                origins.push((key.0, key.1.to_string(), key.2));
                origins.len() - 1
            }
        };
        let authority = plan.host.clone().unwrap_or_else(|| t.authority());
        let bad =
            |e: &dyn std::fmt::Display| crate::error::invalid(format!("URL {}: {e}", t.label()));
        let uri_h1: Uri = t.path_and_query.parse().map_err(|e| bad(&e))?;
        let uri_h2: Uri = format!(
            "{}://{authority}{}",
            if t.https { "https" } else { "http" },
            t.path_and_query
        )
        .parse()
        .map_err(|e| bad(&e))?;
        let mut headers = plan.headers.clone();
        if !plan.body.is_empty() || plan.method == Method::POST || plan.method == Method::PUT {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(plan.body.len()));
        }
        let headers_h2 = headers.clone();
        let mut headers_h1 = headers;
        headers_h1.insert(
            HOST,
            HeaderValue::from_str(&authority).map_err(|e| bad(&e))?,
        );
        if !plan.keepalive {
            headers_h1.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        out.push(Prepared {
            target: t.clone(),
            origin,
            uri_h1,
            uri_h2,
            headers_h1,
            headers_h2,
        });
    }
    Ok((out, origins.len()))
}

/// Runs `plan` on the current tokio runtime until its bound is reached or `cancel` fires, and
/// returns what it measured. Requests still in flight when the duration ends or the run is
/// cancelled are dropped and not counted.
pub async fn run(
    plan: &Plan,
    cancel: CancellationToken,
    progress: Option<Arc<Progress>>,
    observer: Option<Arc<dyn Observer>>,
) -> Result<Report, Error> {
    plan.check()?;
    let (prepared, origins) = prepare(plan)?;
    let choose = if prepared.len() > 1 {
        Some(
            WeightedIndex::new(prepared.iter().map(|p| p.target.weight))
                .map_err(|e| crate::error::invalid(format!("URL weights: {e}")))?,
        )
    } else {
        None
    };
    let start = Instant::now();
    let shared = Arc::new(Shared {
        origins,
        choose,
        method: plan.method.clone(),
        body: plan.body.clone(),
        model: plan.model,
        concurrency: plan.concurrency,
        requests: plan.requests,
        deadline: plan.duration.map(|d| start + d),
        timeout: plan.timeout,
        keepalive: plan.keepalive,
        connector: Connector::new(plan)?,
        tickets: AtomicU64::new(0),
        progress: progress.unwrap_or_default(),
        observer,
        start,
        prepared,
    });
    let mut workers = tokio::task::JoinSet::new();
    for id in 0..plan.concurrency {
        let shared = shared.clone();
        let cancel = cancel.child_token();
        workers.spawn(async move { worker(id, shared, cancel).await });
    }
    let mut report = Report::new(plan.targets.len());
    while let Some(done) = workers.join_next().await {
        if let Ok(r) = done {
            report.merge(&r);
        }
    }
    report.elapsed = start.elapsed();
    report.cancelled = cancel.is_cancelled();
    Ok(report)
}

/// What one attempt came to.
enum Attempt {
    Answer {
        status: u16,
        bytes: u64,
    },
    Failed(ErrorKind),
    /// The run ended (deadline or cancellation) while it was in flight.
    Stopped,
}

async fn worker(id: usize, s: Arc<Shared>, cancel: CancellationToken) -> Report {
    let mut report = Report::new(s.prepared.len());
    let mut rng = SmallRng::seed_from_u64(rand::random::<u64>() ^ id as u64);
    let mut conns: Vec<Option<Sender>> = (0..s.origins).map(|_| None).collect();
    let far = s.start + Duration::from_secs(86400 * 365);
    let mut stop_at = pin!(tokio::time::sleep_until(s.deadline.unwrap_or(far)));
    let mut cancelled = pin!(cancel.cancelled());
    let mut timer = pin!(tokio::time::sleep_until(far));

    // Open loop: this worker's share of the rate, starting at a random point of its first
    // interval so that workers do not fire in lockstep. Closed loop: a start jittered within
    // 5 ms, so connections do not all open at the same instant.
    let interval = match s.model {
        Model::OpenLoop { rate } => Some(Duration::from_secs_f64(s.concurrency as f64 / rate)),
        Model::ClosedLoop => None,
    };
    let first = match interval {
        Some(i) => i.mul_f64(rng.random_range(0.0..1.0)),
        None => Duration::from_micros(rng.random_range(0..5000)),
    };
    let mut due = s.start + first;
    let mut sent_on_schedule: u32 = 0;
    let mut connect_failures: u32 = 0;

    loop {
        let intended = match interval {
            Some(i) => s.start + first + i * sent_on_schedule,
            None => due,
        };
        if s.deadline.is_some_and(|d| intended >= d) {
            break;
        }
        if let Some(n) = s.requests
            && s.tickets.fetch_add(1, Ordering::Relaxed) >= n
        {
            break;
        }
        if intended > Instant::now() {
            tokio::select! {
                biased;
                _ = &mut cancelled => break,
                _ = tokio::time::sleep_until(intended) => {}
            }
        }
        let intended = if interval.is_some() {
            sent_on_schedule += 1;
            intended
        } else {
            Instant::now()
        };
        let t = match &s.choose {
            Some(w) => w.sample(&mut rng),
            None => 0,
        };
        if let Some(limit) = s.timeout {
            timer.as_mut().reset(Instant::now() + limit);
        }
        let attempt = {
            let send = send(&s, &mut conns, t);
            tokio::select! {
                biased;
                _ = &mut cancelled => Attempt::Stopped,
                _ = &mut stop_at => Attempt::Stopped,
                _ = &mut timer, if s.timeout.is_some() => Attempt::Failed(ErrorKind::Timeout),
                a = send => a,
            }
        };
        let latency = intended.elapsed();
        match attempt {
            Attempt::Stopped => break,
            Attempt::Answer { status, bytes } => {
                connect_failures = 0;
                report.answered(t, status, latency, bytes);
                if let Some(o) = &s.observer {
                    o.observe(t, Ok(status), latency);
                }
            }
            Attempt::Failed(kind) => {
                // The connection's state is unknown: open a new one next time.
                conns[s.prepared[t].origin] = None;
                report.failed(t, kind);
                if let Some(o) = &s.observer {
                    o.observe(t, Err(kind), latency);
                }
                if matches!(kind, ErrorKind::Connect | ErrorKind::Tls) && interval.is_none() {
                    // Closed loop against a target that refuses connections: back off (10 ms
                    // doubling to 1 s) instead of spinning.
                    connect_failures = connect_failures.saturating_add(1);
                    let wait = Duration::from_millis(10 << connect_failures.min(7))
                        .min(Duration::from_secs(1));
                    tokio::select! {
                        biased;
                        _ = &mut cancelled => break,
                        _ = &mut stop_at => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        s.progress.done.fetch_add(1, Ordering::Relaxed);
        due = Instant::now();
    }
    report
}

/// Sends one request to target `t` over the worker's connection to its origin (opened first
/// when there is none) and reads the whole answer.
async fn send(s: &Shared, conns: &mut [Option<Sender>], t: usize) -> Attempt {
    let p = &s.prepared[t];
    let slot = &mut conns[p.origin];
    // An idle kept-alive connection the server has closed is replaced once, without counting
    // an error: the request was never sent on it.
    for fresh in [false, true] {
        if slot.is_none() {
            match s.connector.connect(&p.target).await {
                Ok(c) => *slot = Some(c),
                Err(kind) => return Attempt::Failed(kind),
            }
        }
        let Some(sender) = slot.as_mut() else {
            continue;
        };
        let ready = match sender {
            Sender::H1(c) => c.ready().await.is_ok(),
            Sender::H2(c) => c.ready().await.is_ok(),
        };
        if !ready {
            *slot = None;
            if fresh {
                return Attempt::Failed(ErrorKind::Closed);
            }
            continue;
        }
        let is_h2 = matches!(sender, Sender::H2(_));
        let mut req = Request::new(Full::new(s.body.clone()));
        *req.method_mut() = s.method.clone();
        if is_h2 {
            *req.uri_mut() = p.uri_h2.clone();
            *req.headers_mut() = p.headers_h2.clone();
        } else {
            *req.uri_mut() = p.uri_h1.clone();
            *req.headers_mut() = p.headers_h1.clone();
        }
        let resp = match sender {
            Sender::H1(c) => c.send_request(req).await,
            Sender::H2(c) => c.send_request(req).await,
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(classify(&e)),
        };
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => bytes += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => return Attempt::Failed(ErrorKind::Body),
            }
        }
        if !s.keepalive {
            *slot = None;
        }
        return Attempt::Answer { status, bytes };
    }
    Attempt::Failed(ErrorKind::Closed)
}

fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_closed() || e.is_canceled() || e.is_incomplete_message() {
        ErrorKind::Closed
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Protocol
    }
}

/// Opens one connection to each origin of the plan (TCP, TLS, HTTP handshake), so that an
/// unreachable target is reported in one line before the run starts.
pub async fn probe(plan: &Plan, within: Duration) -> Result<(), Error> {
    let connector = Connector::new(plan)?;
    let mut seen = Vec::new();
    for t in &plan.targets {
        if seen.contains(&t.origin()) {
            continue;
        }
        seen.push(t.origin());
        let what = format!(
            "{}://{}",
            if t.https { "https" } else { "http" },
            t.authority()
        );
        let tcp = tokio::time::timeout(
            within,
            tokio::net::TcpStream::connect((t.host.as_str(), t.port)),
        )
        .await
        .map_err(|_| crate::error::invalid(format!("cannot connect to {what}: timed out")))?;
        if let Err(e) = tcp {
            return Err(crate::error::invalid(format!(
                "cannot connect to {what}: {e}"
            )));
        }
        match tokio::time::timeout(within, connector.connect(t)).await {
            Ok(Ok(_)) => {}
            Ok(Err(kind)) => {
                return Err(crate::error::invalid(format!(
                    "cannot connect to {what}: {} handshake failed",
                    if kind == ErrorKind::Tls {
                        "TLS"
                    } else {
                        "HTTP"
                    }
                )));
            }
            Err(_) => {
                return Err(crate::error::invalid(format!(
                    "cannot connect to {what}: handshake timed out"
                )));
            }
        }
    }
    Ok(())
}
