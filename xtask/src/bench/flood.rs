//! A flood of writes to objects unrelated to a rollout, for `cargo xtask bench scale --flood
//! RATE`: Events created in the namespace (which the controller does not watch, but the API
//! server and etcd must store) and annotation patches of bystander Canaries that take no part in
//! the wave (each one a watch event and a reconcile of a Canary with nothing to do). The writes
//! go through `kubectl proxy` on loopback, from a few threads with keep-alive connections, each
//! paced to its share of the rate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Threads writing at once.
const WRITERS: usize = 32;

/// What a flood sent.
#[derive(Clone, Debug, Default)]
pub struct FloodFigures {
    /// Writes per second asked for.
    pub rate: u32,
    pub events: u64,
    pub patches: u64,
    /// Writes the API server refused or that failed on the way.
    pub failed: u64,
    pub seconds: f64,
}

impl FloodFigures {
    /// Writes per second that went through.
    pub fn achieved(&self) -> f64 {
        (self.events + self.patches) as f64 / self.seconds.max(1e-9)
    }

    pub fn render(&self) -> String {
        format!(
            "flood during the wave: {} writes/s asked, {:.0}/s done for {:.0} s ({} Events \
             created, {} bystander Canaries patched, {} failed)",
            self.rate,
            self.achieved(),
            self.seconds,
            self.events,
            self.patches,
            self.failed
        )
    }
}

/// A running flood; [`Flood::finish`] stops it.
pub struct Flood {
    proxy: Child,
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<FloodFigures>>,
    started: Instant,
    rate: u32,
}

impl Flood {
    /// Starts `rate` writes a second in `ns`, half Events and half patches of `bystanders`.
    pub fn start(
        kubectl: &Path,
        kubeconfig: &Path,
        ns: &str,
        bystanders: &[String],
        rate: u32,
    ) -> Result<Flood> {
        if bystanders.is_empty() {
            bail!("a flood needs bystander Canaries to patch");
        }
        let mut proxy = Command::new(kubectl)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["proxy", "--address=127.0.0.1", "--port=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start kubectl proxy")?;
        let mut first = String::new();
        BufReader::new(proxy.stdout.take().context("kubectl proxy's output")?)
            .read_line(&mut first)?;
        // "Starting to serve on 127.0.0.1:PORT"
        let port: u16 = first
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("kubectl proxy said {first:?}, not its port"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let per_writer = f64::from(rate.max(1)) / WRITERS as f64;
        let writers = (0..WRITERS)
            .map(|w| {
                let (stop, ns) = (stop.clone(), ns.to_string());
                let bystanders = bystanders.to_vec();
                thread::spawn(move || write_loop(port, &ns, &bystanders, w, per_writer, &stop))
            })
            .collect();
        Ok(Flood {
            proxy,
            stop,
            writers,
            started: Instant::now(),
            rate,
        })
    }

    /// Stops the writers and says what they sent.
    pub fn finish(mut self) -> FloodFigures {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = FloodFigures {
            rate: self.rate,
            seconds: self.started.elapsed().as_secs_f64(),
            ..Default::default()
        };
        for w in self.writers.drain(..) {
            if let Ok(f) = w.join() {
                total.events += f.events;
                total.patches += f.patches;
                total.failed += f.failed;
            }
        }
        total
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
    }
}

/// One writer: its share of the rate until `stop`, alternating an Event and a patch.
fn write_loop(
    port: u16,
    ns: &str,
    bystanders: &[String],
    writer: usize,
    per_second: f64,
    stop: &AtomicBool,
) -> FloodFigures {
    let mut figures = FloodFigures::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let start = Instant::now();
    let mut k: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_secs_f64(k as f64 / per_second);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let seq = k * WRITERS as u64 + writer as u64;
        let (method, path, content_type, body) = if k.is_multiple_of(2) {
            let name = format!("flood-{writer}-{k}");
            (
                "POST",
                format!("/api/v1/namespaces/{ns}/events"),
                "application/json",
                event(ns, &name),
            )
        } else {
            let target = &bystanders[(seq as usize / 2) % bystanders.len()];
            (
                "PATCH",
                format!("/apis/fledge.dev/v1beta1/namespaces/{ns}/canaries/{target}"),
                "application/merge-patch+json",
                format!(r#"{{"metadata":{{"annotations":{{"bench.fledge.dev/flood":"{seq}"}}}}}}"#),
            )
        };
        k += 1;
        let ok = conn
            .take()
            .map_or_else(|| connect(port), Ok)
            .and_then(|mut c| {
                let status = request(&mut c, port, method, &path, content_type, &body)?;
                conn = Some(c);
                Ok(status)
            });
        match ok {
            Ok(s) if (200..300).contains(&s) && method == "POST" => figures.events += 1,
            Ok(s) if (200..300).contains(&s) => figures.patches += 1,
            _ => figures.failed += 1,
        }
    }
    figures
}

fn connect(port: u16) -> Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// One HTTP/1.1 request on a kept-alive connection; its status (the body is read and dropped).
fn request(
    conn: &mut BufReader<TcpStream>,
    port: u16,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<u16> {
    write!(
        conn.get_mut(),
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let (mut length, mut chunked) = (0usize, false);
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.trim().eq_ignore_ascii_case("chunked");
        }
    }
    if !chunked {
        std::io::copy(&mut conn.by_ref().take(length as u64), &mut std::io::sink())?;
        return Ok(status);
    }
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)?;
        // The chunk and its CRLF (the last, empty chunk: just the final CRLF).
        std::io::copy(
            &mut conn.by_ref().take(size as u64 + 2),
            &mut std::io::sink(),
        )?;
        if size == 0 {
            return Ok(status);
        }
    }
}

/// An Event about a Pod that does not exist (nothing reads it).
fn event(ns: &str, name: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": "Pod", "name": "flood", "namespace": ns},
        "reason": "Flood", "message": "a write unrelated to any rollout", "type": "Normal",
        "source": {"component": "fledge-bench"}
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_say_what_was_asked_and_what_was_done() {
        let f = FloodFigures {
            rate: 1000,
            events: 3000,
            patches: 3000,
            failed: 2,
            seconds: 10.0,
        };
        assert_eq!(f.achieved(), 600.0);
        assert!(
            f.render()
                .contains("1000 writes/s asked, 600/s done for 10 s")
        );
    }
}
