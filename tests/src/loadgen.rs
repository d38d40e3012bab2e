//! `fledge-loadgen serve` on a loopback port, as the load tests and the demo run it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;

use crate::{eventually, free_port, root};

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Builds `fledge-loadgen` once per run; a failure names what is missing.
pub fn binary() -> anyhow::Result<PathBuf> {
    BUILT
        .get_or_init(|| crate::build_binary("fledge-loadgen", "fledge-loadgen"))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// `fledge-loadgen serve` on a loopback port, killed when dropped.
pub struct Loadgen {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Its log.
    pub log: PathBuf,
    child: Child,
}

impl Loadgen {
    /// Starts it with `extra` flags, logging to `target/e2e-logs/<name>-loadgen.log`, and waits
    /// until it answers `/healthz`.
    pub async fn start(name: &str, extra: &[&str]) -> anyhow::Result<Loadgen> {
        let bin = binary()?;
        let port = free_port();
        let logs = root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs)?;
        let log_path = logs.join(format!("{name}-loadgen.log"));
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&bin)
            .args([
                "serve",
                "--address",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args(["--log-format", "text"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let lg = Loadgen {
            base: format!("http://127.0.0.1:{port}"),
            log: log_path,
            child,
        };
        let health = format!("{}/healthz", lg.base);
        eventually(
            Duration::from_secs(20),
            "fledge-loadgen to serve",
            || async {
                reqwest::get(&health)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await?;
        Ok(lg)
    }

    /// Its `/metrics` text.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.base))
            .await
            .context("fledge-loadgen /metrics")?
            .text()
            .await?)
    }

    /// Requests the canary's load jobs got answers to (any status), and the errors.
    pub async fn answered(&self, canary: &str) -> anyhow::Result<(u64, u64)> {
        let m = self.metrics().await?;
        let sum = |prefix: &str| -> u64 {
            m.lines()
                .filter(|l| l.starts_with(prefix) && l.contains(&format!("canary=\"{canary}\"")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64
        };
        Ok((
            sum("fledge_loadgen_requests_total{"),
            sum("fledge_loadgen_request_errors_total{"),
        ))
    }

    /// The running jobs (`GET /jobs`).
    pub async fn jobs(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        Ok(reqwest::get(format!("{}/jobs", self.base))
            .await?
            .json()
            .await?)
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
