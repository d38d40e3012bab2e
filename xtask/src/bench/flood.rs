//! A flood of writes to objects unrelated to a rollout, for `cargo xtask bench scale --flood
//! RATE`: Events created in the namespace (which the controller does not watch, but the API
//! server and etcd must store) and annotation patches of bystander Canaries that take no part in
//! the wave (each one a watch event and a reconcile of a Canary with nothing to do). The writes
//! go straight to the API server, over TLS with the kubeconfig's client certificate, from 128
//! threads with a kept-alive connection each, each paced to its share of the rate. (Through
//! `kubectl proxy`, as the first version did, the proxy set the limit: 144 writes/s here, where
//! direct connections carry over 1,000.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

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
        let status = request(
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
                let status = request(&mut c, &server.host, method, &path, content_type, &body)?;
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

/// A kept-alive TLS connection to the API server.
type Conn = BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// The API server of a kubeconfig: its address and a TLS client with the user's certificate.
struct ApiServer {
    addr: SocketAddr,
    /// `host:port`, for the Host header.
    host: String,
    name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
}

impl ApiServer {
    /// From a kubeconfig with inline data (the local control plane's): the current context's
    /// server, certificate authority, client certificate and key.
    fn from_kubeconfig(path: &Path) -> Result<ApiServer> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the kubeconfig {}", path.display()))?;
        let config: serde_json::Value = serde_saphyr::from_str(&text)
            .with_context(|| format!("parse the kubeconfig {}", path.display()))?;
        let context = config["current-context"].as_str().unwrap_or_default();
        let named = |list: &str, name: &str| {
            config[list]
                .as_array()
                .and_then(|l| l.iter().find(|e| e["name"].as_str() == Some(name)))
                .cloned()
                .unwrap_or_default()
        };
        let ctx = named("contexts", context);
        let cluster = named(
            "clusters",
            ctx["context"]["cluster"].as_str().unwrap_or_default(),
        );
        let user = named("users", ctx["context"]["user"].as_str().unwrap_or_default());
        let data = |v: &serde_json::Value, field: &str| -> Result<Vec<u8>> {
            let b64 = v[field].as_str().with_context(|| {
                format!(
                    "the kubeconfig {} has no inline {field} for its current context",
                    path.display()
                )
            })?;
            Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
        };
        let server = cluster["cluster"]["server"]
            .as_str()
            .context("the kubeconfig's server")?;
        let url = server
            .strip_prefix("https://")
            .context("the API server is not on https")?;
        let host = url.trim_end_matches('/').to_string();
        let addr = host
            .to_socket_addrs()?
            .next()
            .with_context(|| format!("{server} does not resolve"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&data(
            &cluster["cluster"],
            "certificate-authority-data",
        )?) {
            roots.add(cert?)?;
        }
        let chain =
            CertificateDer::pem_slice_iter(&data(&user["user"], "client-certificate-data")?)
                .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(&data(&user["user"], "client-key-data")?)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        // The serving certificate names the address the local control plane listens on.
        let name = ServerName::from(addr.ip());
        Ok(ApiServer {
            addr,
            host,
            name,
            tls: Arc::new(tls),
        })
    }

    fn connect(&self) -> Result<Conn> {
        let stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        let tls = rustls::ClientConnection::new(self.tls.clone(), self.name.clone())?;
        Ok(BufReader::new(rustls::StreamOwned::new(tls, stream)))
    }
}

/// One HTTP/1.1 request on a kept-alive connection; its status (the body is read and dropped).
fn request(
    conn: &mut Conn,
    host: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<u16> {
    // The whole request in one write: one TLS record and one segment, not one per piece.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.get_mut().write_all(request.as_bytes())?;
    conn.get_mut().flush()?;
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
