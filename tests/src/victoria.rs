//! A VictoriaMetrics server on loopback, started by a test and killed when dropped: a second real
//! metrics server for the metrics providers. It answers Prometheus's query API, takes Graphite's
//! carbon plaintext protocol, and serves Graphite's render API over what it took.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::dataplane::dataplane;
use crate::{free_port, server_dir, wait_answering};

/// One VictoriaMetrics process.
pub struct VictoriaMetrics {
    /// `http://127.0.0.1:<port>`: the query APIs (`/api/v1/…`, `/render`).
    pub url: String,
    /// Where it takes carbon plaintext lines.
    pub carbon: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl VictoriaMetrics {
    /// Starts it (the binary `cargo xtask dataplane up` built) and waits until it answers.
    pub async fn start() -> anyhow::Result<VictoriaMetrics> {
        let binary = &dataplane().victoria_metrics;
        if !binary.is_file() {
            bail!(
                "no VictoriaMetrics binary at {}; `cargo xtask dataplane up` builds it from its Go module",
                binary.display()
            );
        }
        let (http, carbon) = (free_port(), free_port());
        let (dir, log) = server_dir("victoria-metrics", http)?;
        let child = Command::new(binary)
            .arg(format!("-storageDataPath={}", dir.join("data").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{http}"))
            .arg(format!("-graphiteListenAddr=127.0.0.1:{carbon}"))
            // Recent points are searchable at once (the default hides the last 30 s).
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .arg("-loggerLevel=WARN")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut vm = VictoriaMetrics {
            url: format!("http://127.0.0.1:{http}"),
            carbon: SocketAddr::from(([127, 0, 0, 1], carbon)),
            child,
            dir,
        };
        let (health, log) = (
            format!("{}/health", vm.url),
            vm.dir.join("victoria-metrics.log"),
        );
        wait_answering(&mut vm.child, "VictoriaMetrics", &health, &log).await?;
        // The carbon listener opens with the HTTP one.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(vm.carbon).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "VictoriaMetrics took no carbon connection on {} in 10 s",
                    vm.carbon
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(vm)
    }

    /// Sends `points` (`name value unix-seconds`) over the carbon plaintext protocol.
    pub fn carbon(&self, points: &[(&str, f64, i64)]) -> anyhow::Result<()> {
        let mut s = TcpStream::connect(self.carbon)?;
        let text: String = points
            .iter()
            .map(|(name, value, at)| format!("{name} {value} {at}\n"))
            .collect();
        s.write_all(text.as_bytes())?;
        Ok(())
    }

    /// Imports Prometheus exposition text (`name{labels} value [ms]`) through its import API.
    pub async fn import_prometheus(&self, text: &str) -> anyhow::Result<()> {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/import/prometheus", self.url))
            .body(text.to_string())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("import answered {}: {}", r.status(), r.text().await?);
        }
        Ok(())
    }

    /// Waits until a render of `target` (last `from`) gives a datapoint: newly written series
    /// take a moment to be indexed.
    pub async fn wait_rendered(&self, target: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let body = reqwest::Client::new()
                .get(format!("{}/render", self.url))
                .query(&[("target", target), ("from", "-10min"), ("format", "json")])
                .send()
                .await?
                .text()
                .await?;
            if body.contains("datapoints") && !body.contains("\"datapoints\":[]") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{target} was not rendered within 30 s: {body}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the Prometheus API answers `query` with a series.
    pub async fn wait_queried(&self, query: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if crate::analysis::query(&self.url, query)
                .await
                .is_ok_and(|v| !v.is_empty())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{query} had no series within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
