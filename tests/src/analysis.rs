//! What the analysis tests add to the data plane: scrape targets registered with the data
//! plane's Prometheus (file service discovery), PromQL queries, a Prometheus of a test's own
//! that the test can stop and start, and a steady background load through the Gateway.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::dataplane::{Tally, dataplane};
use crate::{TestNs, root};

/// A scrape target in the data plane's Prometheus, removed when dropped.
pub struct ScrapeTarget {
    file: PathBuf,
}

impl ScrapeTarget {
    /// Registers `addr` (its `/metrics`) under a unique `name` with extra `labels`; Prometheus
    /// picks it up within a scrape interval.
    pub fn register(name: &str, addr: SocketAddr, labels: &[(&str, &str)]) -> ScrapeTarget {
        let dp = dataplane();
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let body = json!([{"targets": [addr.to_string()], "labels": labels}]);
        let file = dp.prometheus_sd.join(format!("{name}.json"));
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, body.to_string()).expect("write scrape target");
        std::fs::rename(&tmp, &file).expect("publish scrape target");
        ScrapeTarget { file }
    }
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// `fledge run` judging by the data plane's Prometheus, started by [`start_controller`].
pub struct AnalysingController {
    /// Its index for [`TestNs::controller_log`] and the like.
    pub idx: usize,
    /// The flags it was given beside `--namespace` and `--metrics-addr`.
    pub flags: Vec<String>,
    _scrape: ScrapeTarget,
}

/// Starts `fledge run` for `ns` with the data plane's Prometheus as its metrics server and
/// Traefik's per-service metrics for the builtin checks of `gatewayapi` Canaries
/// (`--gateway-metrics traefik`), and has that Prometheus scrape fledge too, as in a cluster.
pub fn start_controller(ns: &TestNs) -> AnalysingController {
    start_controller_with(ns, &[])
}

/// [`start_controller`] with `extra` flags.
pub fn start_controller_with(ns: &TestNs, extra: &[&str]) -> AnalysingController {
    let mut flags: Vec<String> = [
        "--metrics-server",
        &dataplane().prometheus_url,
        "--gateway-metrics",
        "traefik",
        "--metrics-query-timeout",
        "3",
    ]
    .map(String::from)
    .into();
    flags.extend(extra.iter().map(|f| f.to_string()));
    let idx = ns.start_controller(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let scrape = ScrapeTarget::register(
        &format!("{}-fledge", ns.name),
        ns.controller_metrics(idx),
        &[("job_kind", "fledge")],
    );
    AnalysingController {
        idx,
        flags,
        _scrape: scrape,
    }
}

/// Runs an instant PromQL query; the numbers of the result's series (a scalar is one).
pub async fn query(prometheus: &str, promql: &str) -> anyhow::Result<Vec<f64>> {
    let body: Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", promql)])
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .json()
        .await?;
    if body["status"] != "success" {
        bail!("query {promql} failed: {body}");
    }
    let num = |v: &Value| v[1].as_str().and_then(|s| s.parse::<f64>().ok());
    Ok(match body["data"]["resultType"].as_str() {
        Some("scalar") => num(&body["data"]["result"]).into_iter().collect(),
        _ => body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| num(&s["value"]))
            .collect(),
    })
}

/// A Prometheus of a test's own, with the data plane's configuration (Traefik and every
/// registered target), on a port that stays the same across [`OwnPrometheus::stop`] and
/// [`OwnPrometheus::start`]. Killed when dropped.
pub struct OwnPrometheus {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl OwnPrometheus {
    /// Starts it (keeping its data in `target/e2e-logs/prometheus-<name>`) and waits until ready.
    pub async fn start_new(name: &str) -> anyhow::Result<OwnPrometheus> {
        let port = crate::free_port();
        let dir = root()
            .join("target/e2e-logs")
            .join(format!("prometheus-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut p = OwnPrometheus {
            url: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            child: None,
        };
        p.start().await?;
        Ok(p)
    }

    /// Starts it again after [`OwnPrometheus::stop`] (same port, same data).
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let dp = dataplane();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("prometheus.log"))?;
        let child = Command::new(&dp.prometheus_binary)
            .arg(format!("--config.file={}", dp.prometheus_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting Prometheus")?;
        self.child = Some(child);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{}/-/ready", self.url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "Prometheus exited ({status}); see {}",
                    self.dir.join("prometheus.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("Prometheus on {} was not ready in 30 s", self.url);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills it (SIGKILL: as sudden as an outage).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnPrometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Requests sent through the Gateway at a steady rate in the background, until dropped (or
/// `max` has passed, so that a stuck test cannot load the machine for ever).
pub struct Load {
    task: tokio::task::JoinHandle<()>,
    tally: Arc<Mutex<Tally>>,
}

impl Load {
    /// `rate` GET requests per second for `/` with `Host: host`, each on its own task (so slow
    /// answers do not slow the rate), at most 64 in flight, each timing out after 5 s.
    pub fn start(host: &str, rate: u32, max: Duration) -> Load {
        let dp = dataplane();
        let url = format!("http://{}/", dp.gateway);
        let host = host.to_string();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let shared = tally.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        let limit = Arc::new(tokio::sync::Semaphore::new(64));
        let task = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while started.elapsed() < max {
                tick.tick().await;
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    continue;
                };
                let req = http.get(&url).header("Host", &host);
                let tally = shared.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let answer = match req.send().await {
                        Ok(resp) => {
                            let code = resp.status().as_u16();
                            let body: Option<Value> = resp.json().await.ok();
                            let version = body
                                .as_ref()
                                .and_then(|b| b.get("message"))
                                .and_then(Value::as_str)
                                .map(str::to_string);
                            Some((code, version))
                        }
                        Err(_) => None,
                    };
                    let mut t = tally.lock().unwrap();
                    match answer {
                        Some((200, Some(v))) => *t.by_version.entry(v).or_default() += 1,
                        Some((code, _)) => *t.errors.entry(code).or_default() += 1,
                        None => t.failed += 1,
                    }
                });
            }
        });
        Load { task, tally }
    }

    /// What answered so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().unwrap().clone()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.task.abort();
    }
}
