//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`, through
//! fantoccini), the dashboard run as `kubectl fledge dashboard`, and axe-core's accessibility
//! check injected into its pages. `cargo xtask browser` installs what these need.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{TestNs, root};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromium-driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The axe-core release `cargo xtask browser` installs (`xtask/src/browser.rs`).
pub const AXE_VERSION: &str = "4.14.1";

fn missing(what: &str) -> String {
    format!(
        "{what} is missing: run `cargo xtask browser` (it installs Debian's chromium and \
         chromium-driver with apt-get and axe-core from npm into ~/.cache/fledge/)"
    )
}

/// axe-core's script, as `cargo xtask browser` installed it.
pub fn axe_script() -> String {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let path = home.join(format!(
        ".cache/fledge/axe-core-{AXE_VERSION}/node_modules/axe-core/axe.min.js"
    ));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{}", missing(&format!("axe-core ({})", path.display()))))
}

/// A chromedriver process and a WebDriver session of a headless Chromium with a fresh profile.
pub struct Browser {
    /// The session.
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a Chromium session.
    pub async fn start() -> anyhow::Result<Browser> {
        for p in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(p).is_file() {
                panic!("{}", missing(p));
            }
        }
        let port = crate::free_port();
        let logs = root().join("target/e2e-logs/browser");
        std::fs::create_dir_all(&logs)?;
        let log = std::fs::File::create(logs.join(format!("chromedriver-{port}.log")))?;
        // In a process group of its own, with the Chromium it starts: a test that fails ends
        // them all (see `Drop`), leaving no browser behind.
        let mut driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting chromedriver")?;
        let profile =
            std::env::temp_dir().join(format!("fledge-chromium-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => {
                    let _ = driver.kill();
                    bail!("no WebDriver session from chromedriver on {url} in 30 s: {e}");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Ok(Browser {
            client,
            driver,
            profile,
        })
    }

    /// Runs axe-core on the page and returns its violations of serious or critical impact, as
    /// `rule: help (selectors)` lines.
    pub async fn serious_a11y_violations(&self) -> anyhow::Result<Vec<String>> {
        self.client.execute(&axe_script(), vec![]).await?;
        let out = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                   .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.map(n => n.target.join(' '))}))))
                   .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));",
                vec![],
            )
            .await?;
        let mut bad = Vec::new();
        for v in out.as_array().cloned().unwrap_or_default() {
            let impact = v["impact"].as_str().unwrap_or_default();
            let line = format!("{} [{impact}]: {} ({})", v["id"], v["help"], v["nodes"]);
            eprintln!("axe: {line}");
            if matches!(impact, "serious" | "critical") {
                bad.push(line);
            }
        }
        Ok(bad)
    }

    /// Saves a screenshot of the page under `target/dashboard-screenshots/`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let dir = root().join("target/dashboard-screenshots");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        eprintln!("screenshot: {}", path.display());
        Ok(path)
    }

    /// Ends the session and the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// Ends chromedriver and every Chromium process it started (its process group).
    fn end(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.end();
    }
}

/// `kubectl fledge dashboard` for `ns`, as a process of its own.
pub struct Dashboard {
    /// The URL it printed.
    pub url: String,
    _child: tokio::process::Child,
}

impl Dashboard {
    /// Starts the dashboard on a free port with `extra` arguments (`--as USER`), and waits for
    /// the URL it prints.
    pub async fn start(ns: &TestNs, extra: &[&str]) -> anyhow::Result<Dashboard> {
        let mut args = vec!["dashboard", "--port", "0"];
        args.extend_from_slice(extra);
        let mut child = crate::plugin::command(ns, &args).spawn()?;
        let stdout = child.stdout.take().context("the dashboard's output")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the dashboard printed no URL within 60 s")??
            .context("the dashboard ended before printing its URL")?;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("no URL in {line:?}"))?
            .trim_end_matches('/')
            .to_string();
        // Keep reading its output so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Dashboard { url, _child: child })
    }
}
