//! The `rollout` webhook of the benchmarks: an HTTP server on loopback that answers 200, or
//! 500 for the Canaries chosen to fail, and keeps when it failed each one (Unix seconds), so a
//! benchmark can time a failed check to the rollback it leads to from outside the controller.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The `rollout` webhook: an HTTP server on loopback that fails the calls for the Canaries in
/// its set of failing ones.
pub(super) struct Webhook {
    pub(super) port: u16,
    failing: Arc<Mutex<BTreeSet<String>>>,
    /// When each Canary's calls were answered 500 (Unix seconds), in order.
    failures: Arc<Mutex<BTreeMap<String, Vec<f64>>>>,
    /// Calls answered 200 and 500.
    passed: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

impl Webhook {
    pub(super) fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the webhook server")?;
        let port = listener.local_addr()?.port();
        let mut hook = Webhook {
            port,
            failing: Arc::default(),
            failures: Arc::default(),
            passed: Arc::default(),
            failed: Arc::default(),
            stop: Arc::default(),
            server: None,
        };
        let (failing, failures, passed, failed, stop) = (
            hook.failing.clone(),
            hook.failures.clone(),
            hook.passed.clone(),
            hook.failed.clone(),
            hook.stop.clone(),
        );
        let server = thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (failing, failures, passed, failed) = (
                    failing.clone(),
                    failures.clone(),
                    passed.clone(),
                    failed.clone(),
                );
                thread::spawn(move || match serve(stream, &failing) {
                    Some((200, _, _)) => {
                        passed.fetch_add(1, Ordering::Relaxed);
                    }
                    Some((500, Some(name), at)) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .entry(name)
                            .or_default()
                            .push(at);
                    }
                    _ => {}
                });
            }
        });
        hook.server = Some(server);
        Ok(hook)
    }

    /// Makes the calls for `canary` fail (or pass).
    pub(super) fn choose(&self, canary: &str, fail: bool) {
        let mut set = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if fail {
            set.insert(canary.to_string());
        } else {
            set.remove(canary);
        }
    }

    /// When each Canary's calls were answered 500 so far (Unix seconds), in order.
    pub(super) fn failures(&self) -> BTreeMap<String, Vec<f64>> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Calls answered so far: passed, failed.
    pub(super) fn calls(&self) -> (u64, u64) {
        (
            self.passed.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
    }
}

/// Answers one connection: the status code sent, the Canary the payload named, and when the
/// answer was decided (Unix seconds, before it is written).
fn serve(
    stream: TcpStream,
    failing: &Mutex<BTreeSet<String>>,
) -> Option<(u16, Option<String>, f64)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let (code, text, name) = match read_body(&mut reader) {
        Ok(body) => answer(
            &body,
            &failing.lock().unwrap_or_else(PoisonError::into_inner),
        ),
        Err(_) => (400, "unreadable request", None),
    };
    let at = super::scale::unix_now();
    let reason = match code {
        200 => "OK",
        500 => "Internal Server Error",
        _ => "Bad Request",
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}",
        text.len()
    )
    .ok()?;
    Some((code, name, at))
}

/// The body of an HTTP/1.1 request with a `Content-Length`.
pub(super) fn read_body(r: &mut impl BufRead) -> Result<String> {
    let mut length = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            bail!("connection closed in the headers");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().context("Content-Length")?;
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The answer to a webhook payload: 500 for a Canary in `failing`, 200 for another, 400 for a
/// payload without a name; and the name.
fn answer(body: &str, failing: &BTreeSet<String>) -> (u16, &'static str, Option<String>) {
    let name = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("name")?.as_str().map(String::from));
    match name {
        Some(n) if failing.contains(&n) => (500, "this rollout was chosen to fail", Some(n)),
        Some(n) => (200, "ok", Some(n)),
        None => (400, "no name in the payload", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::thread::sleep;
    use std::time::Instant;

    #[test]
    fn webhook_fails_the_chosen_canaries() {
        let failing: BTreeSet<String> = ["app-0003".to_string()].into();
        let payload = |name: &str| {
            format!(
                r#"{{"name":"{name}","namespace":"fledge-soak-10","phase":"Progressing","checksum":"abc"}}"#
            )
        };
        assert_eq!(answer(&payload("app-0003"), &failing).0, 500);
        assert_eq!(answer(&payload("app-0004"), &failing).0, 200);
        assert_eq!(answer("{}", &failing).0, 400);
        assert_eq!(answer("not json", &failing).0, 400);

        let request = "POST / HTTP/1.1\r\nhost: 127.0.0.1:1234\r\ncontent-type: application/json\r\n\
                       Content-Length: 15\r\n\r\n{\"name\":\"app\"}xtra";
        let mut r = std::io::Cursor::new(request.as_bytes());
        assert_eq!(read_body(&mut r).unwrap(), "{\"name\":\"app\"}x");
        let mut cut = std::io::Cursor::new("POST / HTTP/1.1\r\nhost: x\r\n".as_bytes());
        assert!(read_body(&mut cut).is_err());
    }

    #[test]
    fn webhook_server_answers_over_loopback() {
        let hook = Webhook::start().unwrap();
        hook.choose("app-0001", true);
        hook.choose("app-0002", true);
        hook.choose("app-0002", false);
        let call = |name: &str| {
            let mut s = TcpStream::connect(("127.0.0.1", hook.port)).unwrap();
            let body = format!(r#"{{"name":"{name}"}}"#);
            write!(
                s,
                "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            answer
        };
        assert!(call("app-0001").starts_with("HTTP/1.1 500 "));
        assert!(call("app-0002").starts_with("HTTP/1.1 200 "));
        // The counts are kept after the answer is written.
        let deadline = Instant::now() + Duration::from_secs(5);
        while hook.calls() != (1, 1) && Instant::now() < deadline {
            sleep(Duration::from_millis(10));
        }
        assert_eq!(hook.calls(), (1, 1));
        let failures = hook.failures();
        assert_eq!(failures.keys().collect::<Vec<_>>(), ["app-0001"]);
        assert_eq!(failures["app-0001"].len(), 1);
    }
}
