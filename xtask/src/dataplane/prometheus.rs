//! The data plane's Prometheus: Debian's `prometheus` package (its static binary, unpacked into
//! the cache, never installed system-wide), scraping Traefik every second and, through file
//! service discovery, whatever the tests register: podinfo processes and fledge controllers.
//!
//! ```text
//! target/dataplane/run/prometheus.yml     the configuration
//! target/dataplane/run/prometheus-sd/     one JSON file per extra scrape target (file_sd)
//! target/dataplane/prometheus-data/       the TSDB (thrown away at each start)
//! target/dataplane/logs/prometheus.log
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cluster::{ports, proc};

/// The Debian package the binary comes from.
const PACKAGE: &str = "prometheus";
/// How often Prometheus scrapes: short, so a test's window of a few seconds has samples.
pub const SCRAPE_INTERVAL: &str = "1s";

/// Where the binary is cached: `~/.cache/fledge/bin/prometheus-<Debian version>/prometheus`.
/// Returns the path and the version, fetching the package when no version is cached.
pub fn ensure_binary(cache: &Path, log_dir: &Path) -> Result<(PathBuf, String)> {
    let bin = cache.join("bin");
    if let Some(found) = cached(&bin) {
        return Ok(found);
    }
    fs::create_dir_all(&bin)?;
    fs::create_dir_all(log_dir)?;
    let work = tempdir_in(&bin, "prometheus-download")?;
    eprintln!("dataplane: fetching Debian's {PACKAGE} package (apt-get download)");
    let download = || {
        Command::new("apt-get")
            .args(["download", PACKAGE])
            .current_dir(&work)
            .output()
    };
    let mut out = download().context(
        "running apt-get (Prometheus comes from Debian's `prometheus` package; this machine \
         needs apt-get and access to a Debian mirror)",
    )?;
    if !out.status.success() {
        // A fresh machine may have no package lists yet.
        eprintln!("dataplane: apt-get download failed; running apt-get update and retrying");
        let update = Command::new("apt-get").args(["update", "-q"]).output()?;
        if !update.status.success() {
            bail!(
                "apt-get update failed (needs root and a Debian mirror): {}",
                String::from_utf8_lossy(&update.stderr).trim()
            );
        }
        out = download()?;
    }
    if !out.status.success() {
        bail!(
            "apt-get download {PACKAGE} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let deb = fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb file")?;
    let version = deb_version(&deb).context("reading the package version from its file name")?;
    let unpacked = work.join("x");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .status()
        .context("running dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb -x {} failed", deb.display());
    }
    let dir = bin.join(format!("prometheus-{version}"));
    fs::create_dir_all(&dir)?;
    fs::copy(unpacked.join("usr/bin/prometheus"), dir.join("prometheus"))
        .context("the package has no usr/bin/prometheus")?;
    let _ = fs::remove_dir_all(&work);
    Ok((dir.join("prometheus"), version))
}

/// The newest cached binary, if any.
fn cached(bin: &Path) -> Option<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = fs::read_dir(bin)
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().to_string();
            let version = name.strip_prefix("prometheus-")?.to_string();
            let exe = e.path().join("prometheus");
            (version != "download" && exe.is_file()).then_some((exe, version))
        })
        .collect();
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found.pop()
}

/// `prometheus_2.42.0+ds-5+deb12u1_amd64.deb` → `2.42.0+ds-5+deb12u1`.
fn deb_version(deb: &Path) -> Option<String> {
    let name = deb.file_name()?.to_str()?;
    let mut parts = name.strip_suffix(".deb")?.split('_');
    (parts.next()? == PACKAGE).then_some(())?;
    Some(parts.next()?.replace("%2b", "+"))
}

fn tempdir_in(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{prefix}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path)?;
    Ok(path)
}

/// The files of a running Prometheus.
pub struct Paths {
    pub config: PathBuf,
    pub sd_dir: PathBuf,
    pub data: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
}

impl Paths {
    pub fn new(dataplane_dir: &Path) -> Paths {
        let run = dataplane_dir.join("run");
        Paths {
            config: run.join("prometheus.yml"),
            sd_dir: run.join("prometheus-sd"),
            data: dataplane_dir.join("prometheus-data"),
            pid: run.join("prometheus.pid"),
            log: dataplane_dir.join("logs").join("prometheus.log"),
        }
    }
}

/// The configuration: Traefik by address, the rest from `sd_dir/*.json`.
pub fn config(traefik_admin_port: u16, sd_dir: &Path) -> Value {
    json!({
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": [
            {
                "job_name": "traefik",
                "static_configs": [{"targets": [format!("127.0.0.1:{traefik_admin_port}")]}],
            },
            {
                "job_name": "local",
                "file_sd_configs": [{
                    "files": [sd_dir.join("*.json")],
                    "refresh_interval": SCRAPE_INTERVAL,
                }],
            },
        ],
    })
}

/// Starts Prometheus unless the one recorded in `paths.pid` still answers on `port`; returns
/// its part of `dataplane.json`.
pub fn ensure_running(
    paths: &Paths,
    exe: &Path,
    version: &str,
    previous_port: Option<u16>,
    traefik_admin_port: u16,
    deadline: Instant,
) -> Result<Value> {
    fs::create_dir_all(&paths.sd_dir)?;
    let config = serde_json::to_string_pretty(&config(traefik_admin_port, &paths.sd_dir))?;
    let unchanged = fs::read_to_string(&paths.config).is_ok_and(|c| c == config);
    let running = matches!(proc::PidRecord::read(&paths.pid), Ok(Some(r)) if r.is_running());
    if let Some(port) = previous_port
        && running
        && unchanged
        && ready(port)
    {
        return Ok(info(paths, exe, version, port));
    }
    proc::stop(&paths.pid, Duration::from_secs(10)).context("stopping Prometheus")?;
    // Prometheus's YAML loader reads JSON.
    fs::write(&paths.config, &config)?;
    let _ = fs::remove_dir_all(&paths.data);
    let port = match previous_port {
        Some(p) if ports::is_free(p) => p,
        _ => std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port(),
    };
    let mut started = proc::spawn(
        "prometheus",
        exe,
        &[
            format!("--config.file={}", paths.config.display()),
            format!("--storage.tsdb.path={}", paths.data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.tsdb.retention.time=6h".into(),
            "--log.level=warn".into(),
        ],
        &paths.log,
        &paths.pid,
    )?;
    loop {
        started.check_alive()?;
        if ready(port) {
            break;
        }
        if Instant::now() > deadline {
            let _ = proc::stop(&paths.pid, Duration::from_secs(5));
            bail!(
                "Prometheus was not ready on 127.0.0.1:{port} in time; last lines of {}:\n{}",
                paths.log.display(),
                proc::tail(&paths.log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("dataplane: Prometheus {version} on http://127.0.0.1:{port}");
    Ok(info(paths, exe, version, port))
}

fn ready(port: u16) -> bool {
    ports::http_get(port, "/-/ready").is_ok_and(|(code, _)| code == 200)
}

fn info(paths: &Paths, exe: &Path, version: &str, port: u16) -> Value {
    json!({
        "version": version,
        "binary": exe,
        "url": format!("http://127.0.0.1:{port}"),
        "port": port,
        "sd_dir": paths.sd_dir,
        "config": paths.config,
        "scrape_interval": SCRAPE_INTERVAL,
        "pid_file": paths.pid,
        "log": paths.log,
    })
}

/// Stops Prometheus; whether one ran.
pub fn stop(paths: &Paths) -> Result<bool> {
    proc::stop(&paths.pid, Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_comes_from_the_package_file_name() {
        assert_eq!(
            deb_version(Path::new("/x/prometheus_2.42.0+ds-5+deb12u1_amd64.deb")).as_deref(),
            Some("2.42.0+ds-5+deb12u1")
        );
        assert_eq!(
            deb_version(Path::new("prometheus_2.53.1%2bds1-1_arm64.deb")).as_deref(),
            Some("2.53.1+ds1-1")
        );
        assert_eq!(deb_version(Path::new("promtool_2.42.0_amd64.deb")), None);
    }

    #[test]
    fn traefik_is_scraped_by_address_and_the_rest_by_file_discovery() {
        let c = config(4242, Path::new("/sd"));
        assert_eq!(c["global"]["scrape_interval"], "1s");
        assert_eq!(
            c["scrape_configs"][0]["static_configs"][0]["targets"][0],
            "127.0.0.1:4242"
        );
        assert_eq!(
            c["scrape_configs"][1]["file_sd_configs"][0]["files"][0],
            "/sd/*.json"
        );
    }
}
