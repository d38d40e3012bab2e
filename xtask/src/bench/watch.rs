//! A watch of one kind of object in a namespace, straight from the API server, that resumes
//! where it stopped.
//!
//! The scale bench times the Canaries' steps by the changes a watch sees. `kubectl get
//! --watch-only` decoded each change whole and ran a JSONPath template over it; at 3,000
//! Canaries stepping within the same seconds it fell behind, and the API server closed its watch
//! as unresponsive (`apiserver_terminated_watchers_total`), so that the rest of the wave went
//! unseen. This watch reads only the fields the bench uses, and when its watch ends (closed by
//! the API server, or its timeout) it starts again from the last `resourceVersion` it saw, so
//! that no change is missed; only when that version is too old (410 Gone) does it start from
//! the present, and it says so.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::apiserver::{ApiServer, Body, read_body, read_chunk, read_head, request, send};

/// Each watch request asks the API server to end it after this long; it is then resumed.
const WATCH_SECONDS: u64 = 300;

/// The fields of an object the bench reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Object {
    pub metadata: Meta,
    pub spec: Spec,
    pub status: Status,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Meta {
    pub name: String,
    pub resource_version: String,
    pub generation: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    pub replicas: Option<i64>,
}

/// A Canary's and a Deployment's status fields, together (each has only its own).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Status {
    pub phase: Option<String>,
    pub iterations: Option<i64>,
    pub canary_weight: Option<i64>,
    pub failed_checks: Option<i64>,
    pub observed_generation: Option<i64>,
    pub updated_replicas: Option<i64>,
    pub available_replicas: Option<i64>,
}

/// One watch event; an `ERROR`'s object is a Status, whose `code` says why.
#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: EventObject,
}

#[derive(Debug, Deserialize)]
struct EventObject {
    #[serde(flatten)]
    object: Object,
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: Option<String>,
}

/// What happened to a watch besides its changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WatchLog {
    /// Times a watch request ended before its own timeout and was resumed from the last
    /// version seen (the API server closes a watch whose reader falls behind).
    pub closed_early: u32,
    /// When a watch had to start from the present (its last version was too old): changes
    /// just before these moments may be missing.
    pub restarted_at: Vec<f64>,
    /// Requests that failed, as said.
    pub errors: Vec<String>,
}

impl WatchLog {
    /// A warning for the bench's output when the watch may have missed changes.
    pub fn warning(&self, what: &str) -> Option<String> {
        if self.restarted_at.is_empty() {
            return None;
        }
        Some(format!(
            "the watch of the {what} had to start again from the present {} time(s) (at {}): \
             changes just before those moments may be missing from its figures",
            self.restarted_at.len(),
            self.restarted_at
                .iter()
                .map(|t| format!("{t:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// A running watch; every change it sees becomes a line (`format` of the object), with when it
/// came (Unix seconds).
pub struct ApiWatch {
    lines: Arc<Mutex<Vec<(f64, String)>>>,
    stop: Arc<AtomicBool>,
    socket: Arc<Mutex<Option<TcpStream>>>,
    thread: Option<JoinHandle<WatchLog>>,
}

impl ApiWatch {
    /// Watches the objects under `collection` (an API path such as
    /// `/apis/apps/v1/namespaces/ns/deployments`) from now on.
    pub fn start(
        server: ApiServer,
        collection: String,
        format: fn(&Object) -> String,
    ) -> Result<ApiWatch> {
        // The present version first, so that a watch that cannot start says why at once.
        let version = current_version(&server, &collection)?;
        let lines: Arc<Mutex<Vec<(f64, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let socket: Arc<Mutex<Option<TcpStream>>> = Arc::default();
        let thread = {
            let (lines, stop, socket) = (lines.clone(), stop.clone(), socket.clone());
            thread::spawn(move || {
                let mut w = Watcher {
                    server,
                    collection,
                    format,
                    lines,
                    stop,
                    socket,
                    log: WatchLog::default(),
                };
                w.run(version);
                w.log
            })
        };
        Ok(ApiWatch {
            lines,
            stop,
            socket,
            thread: Some(thread),
        })
    }

    /// The lines so far.
    pub fn lines(&self) -> std::sync::MutexGuard<'_, Vec<(f64, String)>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether it still watches (it stops only when told, or if its thread failed).
    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the watch: its lines and what happened to it.
    pub fn finish(mut self) -> (Vec<(f64, String)>, WatchLog) {
        let log = self.stop_thread();
        let lines = std::mem::take(&mut *self.lines());
        (lines, log)
    }

    fn stop_thread(&mut self) -> WatchLog {
        self.stop.store(true, Ordering::Release);
        if let Some(s) = self
            .socket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for ApiWatch {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// The collection's present `resourceVersion`, from a list of one object.
fn current_version(server: &ApiServer, collection: &str) -> Result<String> {
    let mut conn = server.connect()?;
    let (status, body) = request(
        &mut conn,
        &server.host,
        "GET",
        &format!("{collection}?limit=1"),
        "application/json",
        "",
    )?;
    if status != 200 {
        bail!(
            "GET {collection}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let list: serde_json::Value = serde_json::from_slice(&body).context("a list")?;
    list["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_string)
        .context("the list has no resourceVersion")
}

struct Watcher {
    server: ApiServer,
    collection: String,
    format: fn(&Object) -> String,
    lines: Arc<Mutex<Vec<(f64, String)>>>,
    stop: Arc<AtomicBool>,
    socket: Arc<Mutex<Option<TcpStream>>>,
    log: WatchLog,
}

impl Watcher {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn run(&mut self, mut version: String) {
        while !self.stopped() {
            let started = Instant::now();
            match self.watch_from(&mut version) {
                Ok(Ended::Timeout) => {}
                Ok(Ended::Early) => {
                    if !self.stopped() {
                        self.log.closed_early += 1;
                    }
                }
                Ok(Ended::Gone) => {
                    // Too old to resume from: from the present, said.
                    self.log.restarted_at.push(super::scale::unix_now());
                    match current_version(&self.server, &self.collection) {
                        Ok(v) => version = v,
                        Err(e) => self.failed(format!("{e:#}")),
                    }
                }
                Err(e) if !self.stopped() => self.failed(format!("{e:#}")),
                Err(_) => {}
            }
            if started.elapsed() < Duration::from_millis(100) && !self.stopped() {
                // Not a busy loop when the API server refuses at once.
                thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn failed(&mut self, error: String) {
        if self.log.errors.len() < 10 {
            self.log.errors.push(error);
        }
    }

    /// One watch request from `version`, which is kept up to date with what it sees.
    fn watch_from(&mut self, version: &mut String) -> Result<Ended> {
        let (mut conn, socket) = self.server.connect_with(None)?;
        *self.socket.lock().unwrap_or_else(PoisonError::into_inner) = Some(socket);
        if self.stopped() {
            return Ok(Ended::Early);
        }
        let path = format!(
            "{}?watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
            self.collection, version
        );
        let started = Instant::now();
        send(
            &mut conn,
            &self.server.host,
            "GET",
            &path,
            "application/json",
            "",
        )?;
        let (status, body) = read_head(&mut conn)?;
        if status == 410 {
            return Ok(Ended::Gone);
        }
        if status != 200 || body != Body::Chunked {
            let text = read_body(&mut conn, body).unwrap_or_default();
            bail!(
                "watch {}: HTTP {status}: {}",
                self.collection,
                String::from_utf8_lossy(&text)
            );
        }
        let mut buf = Vec::new();
        loop {
            if !read_chunk(&mut conn, &mut buf)? {
                break;
            }
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let at = super::scale::unix_now();
                let line: Vec<u8> = buf.drain(..=end).collect();
                match self.event(&line, at, version)? {
                    Some(gone) => return Ok(gone),
                    None => continue,
                }
            }
        }
        // The API server ends a watch at its timeout, or earlier when its reader falls behind.
        let lasted = started.elapsed();
        Ok(
            if lasted + Duration::from_secs(5) >= Duration::from_secs(WATCH_SECONDS) {
                Ended::Timeout
            } else {
                Ended::Early
            },
        )
    }

    /// Takes one event: a change becomes a line; `Some` when the watch cannot go on.
    fn event(&mut self, line: &[u8], at: f64, version: &mut String) -> Result<Option<Ended>> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let event: Event = serde_json::from_slice(line).context("a watch event")?;
        match event.kind.as_str() {
            "ERROR" if event.object.code == Some(410) => Ok(Some(Ended::Gone)),
            "ERROR" => bail!(
                "the watch of {} failed: {}",
                self.collection,
                event.object.message.unwrap_or_default()
            ),
            kind => {
                let object = event.object.object;
                if !object.metadata.resource_version.is_empty() {
                    version.clone_from(&object.metadata.resource_version);
                }
                if kind != "BOOKMARK" {
                    let text = (self.format)(&object);
                    self.lines
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((at, text));
                }
                Ok(None)
            }
        }
    }
}

/// How a watch request ended.
enum Ended {
    /// At its own timeout.
    Timeout,
    /// Before it, with no error: closed by the API server.
    Early,
    /// Its version was too old (410 Gone).
    Gone,
}

/// An optional number as kubectl's JSONPath prints it: nothing when absent.
fn num(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

/// `name|phase|iterations|canaryWeight|failedChecks`, as the bench reads a Canary.
pub fn canary_line(o: &Object) -> String {
    let s = &o.status;
    format!(
        "{}|{}|{}|{}|{}",
        o.metadata.name,
        s.phase.as_deref().unwrap_or_default(),
        num(s.iterations),
        num(s.canary_weight),
        num(s.failed_checks)
    )
}

/// `name|generation|observedGeneration|replicas|updatedReplicas|availableReplicas`, as the bench
/// reads a Deployment.
pub fn deployment_line(o: &Object) -> String {
    let s = &o.status;
    format!(
        "{}|{}|{}|{}|{}|{}",
        o.metadata.name,
        num(o.metadata.generation),
        num(s.observed_generation),
        num(o.spec.replicas),
        num(s.updated_replicas),
        num(s.available_replicas)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: serde_json::Value) -> Object {
        serde_json::from_value(json).expect("an object")
    }

    #[test]
    fn a_canary_reads_as_the_bench_parses_it() {
        let o = object(serde_json::json!({
            "metadata": {"name": "app-00001", "resourceVersion": "42", "generation": 1},
            "spec": {"targetRef": {"name": "app-00001"}, "analysis": {"iterations": 3}},
            "status": {"phase": "Progressing", "iterations": 2, "canaryWeight": 0,
                       "failedChecks": 1, "conditions": [{"type": "Promoted"}]}
        }));
        let line = canary_line(&o);
        assert_eq!(line, "app-00001|Progressing|2|0|1");
        let seen = super::super::measure::parse_status_line(&line, 1.0).expect("parsed");
        assert_eq!(
            (seen.phase.as_str(), seen.iterations, seen.failed_checks),
            ("Progressing", 2, 1)
        );
        // A Canary whose status is not written yet: empty fields, as kubectl printed them.
        let fresh = object(serde_json::json!({"metadata": {"name": "app-00002"}}));
        assert_eq!(canary_line(&fresh), "app-00002||||");
    }

    #[test]
    fn a_deployment_reads_as_the_bench_parses_it() {
        let o = object(serde_json::json!({
            "metadata": {"name": "app-00001", "resourceVersion": "7", "generation": 2},
            "spec": {"replicas": 1, "template": {"spec": {"containers": []}}},
            "status": {"observedGeneration": 2, "updatedReplicas": 1, "availableReplicas": 1}
        }));
        let line = deployment_line(&o);
        assert_eq!(line, "app-00001|2|2|1|1|1");
        assert_eq!(
            super::super::measure::ready_target(&line),
            Some("app-00001")
        );
    }

    #[test]
    fn watch_events_keep_the_version_and_say_when_it_is_gone() {
        let ev: Event = serde_json::from_str(
            r#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}"#,
        )
        .expect("an error event");
        assert_eq!((ev.kind.as_str(), ev.object.code), ("ERROR", Some(410)));
        let ev: Event = serde_json::from_str(
            r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"99"}}}"#,
        )
        .expect("a bookmark");
        assert_eq!(ev.object.object.metadata.resource_version, "99");
        let log = WatchLog {
            restarted_at: vec![12.0],
            ..Default::default()
        };
        assert!(
            log.warning("canaries")
                .is_some_and(|w| w.contains("1 time(s) (at 12.0)"))
        );
        assert_eq!(WatchLog::default().warning("canaries"), None);
    }
}
