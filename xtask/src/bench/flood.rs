//! A flood of writes to objects unrelated to a rollout, for `cargo xtask bench scale --flood
//! RATE`: Events created in the namespace (which the controller does not watch, but the API
//! server and etcd must store) and annotation patches of bystander Canaries that take no part in
//! the wave (each one a watch event and a reconcile of a Canary with nothing to do). The writes
//! go straight to the API server, over TLS with the kubeconfig's client certificate, from 128
//! threads with a kept-alive connection each, each paced to its share of the rate. (Through
//! `kubectl proxy`, as the first version did, the proxy set the limit: 144 writes/s here, where
//! direct connections carry over 1,000.)

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::apiserver::{ApiServer, Conn, request};

/// Writers that patch, each its own bystander Canary (two writers patching one object would
/// wait on each other: the API server serializes updates of an object, and four writers on one
/// Canary did fewer patches a second than one). They send half the rate.
pub const PATCH_WRITERS: usize = 16;
/// Writers that create Events: the other half of the rate. Each waits for its answer before
/// the next write, and under a wave an answer takes 50-150 ms here, so there are many. Without
/// bystanders (`--flood-events-only`) every writer creates Events.
const WRITERS: usize = 128;

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
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<FloodFigures>>,
    started: Instant,
    rate: u32,
}

impl Flood {
    /// Starts `rate` writes a second in `ns`, half Events and half patches of `bystanders`;
    /// only Events when `bystanders` is empty.
    pub fn start(kubeconfig: &Path, ns: &str, bystanders: &[String], rate: u32) -> Result<Flood> {
        let patch_writers = if bystanders.is_empty() {
            0
        } else {
            PATCH_WRITERS
        };
        let server = Arc::new(ApiServer::from_kubeconfig(kubeconfig)?);
        // One request first, so that a flood that cannot write says why at once.
        let mut probe = server.connect()?;
        let (status, _) = request(
            &mut probe,
            &server.host,
            "GET",
            &format!("/api/v1/namespaces/{ns}"),
            "application/json",
            "",
        )?;
        if status != 200 {
            bail!("the flood's writer cannot read namespace {ns}: HTTP {status}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let rate = f64::from(rate.max(1));
        let (patches, events) = match patch_writers {
            0 => (0.0, rate),
            _ => (rate / 2.0, rate / 2.0),
        };
        let event_writers = WRITERS - patch_writers;
        let writers = (0..WRITERS)
            .map(|w| {
                let (stop, ns, server) = (stop.clone(), ns.to_string(), server.clone());
                let patching = w < patch_writers;
                let target = patching.then(|| bystanders[w % bystanders.len()].clone());
                let per_writer = match patching {
                    true => patches / patch_writers as f64,
                    false => events / event_writers as f64,
                };
                thread::spawn(move || {
                    write_loop(&server, &ns, target.as_deref(), w, per_writer, &stop)
                })
            })
            .collect();
        Ok(Flood {
            stop,
            writers,
            started: Instant::now(),
            rate: rate as u32,
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
    }
}

/// One writer: its share of the rate until `stop`: patches of its `bystander`, or Events.
fn write_loop(
    server: &ApiServer,
    ns: &str,
    bystander: Option<&str>,
    writer: usize,
    per_second: f64,
    stop: &AtomicBool,
) -> FloodFigures {
    let mut figures = FloodFigures::default();
    let mut conn: Option<Conn> = None;
    let start = Instant::now();
    let mut k: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_secs_f64(k as f64 / per_second);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let (method, path, content_type, body) = if let Some(target) = bystander {
            (
                "PATCH",
                format!("/apis/fledge.dev/v1beta1/namespaces/{ns}/canaries/{target}"),
                "application/merge-patch+json",
                format!(r#"{{"metadata":{{"annotations":{{"bench.fledge.dev/flood":"{k}"}}}}}}"#),
            )
        } else {
            let name = format!("flood-{writer}-{k}");
            (
                "POST",
                format!("/api/v1/namespaces/{ns}/events"),
                "application/json",
                event(ns, &name),
            )
        };
        k += 1;
        let ok = conn
            .take()
            .map_or_else(|| server.connect(), Ok)
            .and_then(|mut c| {
                let (status, _) =
                    request(&mut c, &server.host, method, &path, content_type, &body)?;
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
