//! The local data plane: `cargo xtask dataplane up|down|status|build|app|endpoints`.
//!
//! Traefik v3, built from its Go module and run out of cluster with its Kubernetes Gateway
//! provider against the local API server, serves a `Gateway` on a loopback port; the app is
//! podinfo, built from its module and run as plain processes on loopback addresses. Because the
//! kwok Pods of the local cluster serve no traffic, Services reach the podinfo processes through
//! EndpointSlices the harness writes (see [`endpoints`]). State lives in `target/dataplane/`:
//!
//! ```text
//! target/dataplane/dataplane.json  where everything is (read by the e2e harness)
//! target/dataplane/run/            Traefik's configuration, token and pid record; app records
//! target/dataplane/logs/           traefik.log, one log per app, the Go build logs
//! ```
//!
//! Other xtask code calls [`ensure_up`] and uses the returned [`DataplaneInfo`].

mod apps;
pub(crate) mod build;
pub(crate) mod endpoints;
mod gateway;
mod kubectl;
pub(crate) mod prometheus;
mod traefik_crd;

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cluster::{self, ports, proc};
use build::Tool;
use kubectl::Kubectl;

/// Arguments of `cargo xtask dataplane`.
#[derive(clap::Args)]
pub struct DataplaneArgs {
    #[command(subcommand)]
    command: DataplaneCommand,
}

#[derive(clap::Subcommand)]
enum DataplaneCommand {
    /// Start the cluster if needed, install the Gateway API CRDs if missing and Traefik's
    /// CRDs, create the GatewayClass and Gateway, start Traefik (Gateway and CRD providers)
    /// and wait until the Gateway is Programmed.
    Up {
        /// Seconds to wait for Traefik and the Gateway (builds are not counted).
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Stop Traefik and every app started with `app start` (the cluster keeps running).
    Down,
    /// Print the state of Traefik, the Gateway and the apps.
    Status,
    /// Only build (or find in the cache) Traefik and podinfo, and print where they are.
    Build,
    /// podinfo processes on loopback.
    #[command(subcommand)]
    App(apps::AppCommand),
    /// Point a Service at loopback backends through EndpointSlices (local-mode wiring).
    Endpoints(endpoints::EndpointsArgs),
}

/// Where the data plane is, as `dataplane.json` records it.
#[derive(Clone, Debug)]
#[allow(dead_code, reason = "read by other tasks, not by every one")]
pub struct DataplaneInfo {
    /// `http://127.0.0.1:<port>`: the Gateway's HTTP listener.
    pub gateway_url: String,
    /// Traefik's Prometheus metrics, `http://127.0.0.1:<admin>/metrics`.
    pub metrics_url: String,
    /// The podinfo binary, for harnesses that run their own app processes.
    pub podinfo: PathBuf,
    /// `http://127.0.0.1:<port>`: Prometheus, scraping Traefik and the registered targets.
    pub prometheus_url: String,
    /// `target/dataplane/dataplane.json`.
    pub info_file: PathBuf,
}

/// The GatewayClass and Gateway `up` creates; routes attach to `GATEWAY_NAMESPACE/GATEWAY_NAME`.
pub const GATEWAY_CLASS: &str = "traefik";
pub const GATEWAY_NAMESPACE: &str = "fledge-system";
pub const GATEWAY_NAME: &str = "gateway";
pub const LISTENER_NAME: &str = "web";
/// Traefik's `controllerName` for the Gateway API.
pub const TRAEFIK_CONTROLLER: &str = "traefik.io/gateway-controller";

pub fn run(args: DataplaneArgs) -> Result<()> {
    let layout = Layout::new();
    match args.command {
        DataplaneCommand::Up { timeout } => {
            let info = up(&layout, Duration::from_secs(timeout))?;
            println!("dataplane is up: gateway {}", info.gateway_url);
            println!("  metrics: {}", info.metrics_url);
            println!("  prometheus: {}", info.prometheus_url);
            println!("  details: {}", info.info_file.display());
            Ok(())
        }
        DataplaneCommand::Down => down(&layout),
        DataplaneCommand::Status => {
            print!("{}", status_report(&layout));
            Ok(())
        }
        DataplaneCommand::Build => {
            let bins = build::ensure_binaries(&layout.workspace, &layout.logs())?;
            for tool in Tool::ALL {
                println!(
                    "{:<8} {:<40} {}",
                    tool.name(),
                    tool.version(),
                    bins.path(tool).display()
                );
            }
            Ok(())
        }
        DataplaneCommand::App(cmd) => apps::run(&layout, cmd),
        DataplaneCommand::Endpoints(args) => {
            let cluster = cluster::ensure_up()?;
            endpoints::run(&Kubectl::new(&cluster), args)
        }
    }
}

/// Starts the cluster and the data plane unless they are up; for tests, benchmarks and demos.
#[allow(dead_code, reason = "API for other tasks")]
pub fn ensure_up() -> Result<DataplaneInfo> {
    up(&Layout::new(), Duration::from_secs(120))
}

/// Stops what `up` started (Traefik, Prometheus, the apps); the cluster keeps running.
pub fn stop() -> Result<()> {
    down(&Layout::new())
}

/// Paths under `target/dataplane`.
pub(crate) struct Layout {
    workspace: PathBuf,
    dir: PathBuf,
}

impl Layout {
    fn new() -> Self {
        let workspace = crate::util::root();
        let dir = workspace.join("target").join("dataplane");
        Layout { workspace, dir }
    }
    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    fn info_file(&self) -> PathBuf {
        self.dir.join("dataplane.json")
    }
    fn traefik_pid(&self) -> PathBuf {
        self.run_dir().join("traefik.pid")
    }
    fn traefik_log(&self) -> PathBuf {
        self.logs().join("traefik.log")
    }
    fn traefik_config(&self) -> PathBuf {
        self.run_dir().join("traefik.yaml")
    }
    fn traefik_token(&self) -> PathBuf {
        self.run_dir().join("traefik.token")
    }
    fn traefik_crd_token(&self) -> PathBuf {
        self.run_dir().join("traefik-crd.token")
    }
    fn apps_dir(&self) -> PathBuf {
        self.run_dir().join("apps")
    }

    /// Holds an exclusive lock on `target/dataplane/.lock` while `up`, `down` or an app
    /// command runs.
    fn lock(&self) -> Result<File> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let file = File::create(self.dir.join(".lock"))?;
        file.lock().context("locking target/dataplane")?;
        Ok(file)
    }

    fn read_info(&self) -> Option<Value> {
        serde_json::from_str(&fs::read_to_string(self.info_file()).ok()?).ok()
    }
}

/// Traefik's two loopback ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TraefikPorts {
    /// The `web` entry point, which the Gateway's listener maps to.
    web: u16,
    /// The `traefik` entry point: ping, Prometheus metrics, the API.
    admin: u16,
}

impl TraefikPorts {
    fn from_info(info: &Value) -> Option<Self> {
        let port = |key: &str| {
            info.pointer(&format!("/traefik/{key}"))
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
        };
        Some(TraefikPorts {
            web: port("web_port")?,
            admin: port("admin_port")?,
        })
    }

    /// The previous ports where still free, new free ones otherwise.
    fn choose(previous: Option<TraefikPorts>) -> Result<Self> {
        if let Some(p) = previous
            && p.web != p.admin
            && ports::is_free(p.web)
            && ports::is_free(p.admin)
        {
            return Ok(p);
        }
        let (web, admin) = two_free_ports()?;
        Ok(TraefikPorts { web, admin })
    }
}

fn two_free_ports() -> Result<(u16, u16)> {
    let a = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    let b = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn info_from_json(layout: &Layout, info: &Value) -> Option<DataplaneInfo> {
    let s = |ptr: &str| {
        info.pointer(ptr)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Some(DataplaneInfo {
        gateway_url: s("/gateway/url")?,
        metrics_url: s("/traefik/metrics_url")?,
        podinfo: PathBuf::from(s("/podinfo/binary")?),
        prometheus_url: s("/prometheus/url")?,
        info_file: layout.info_file(),
    })
}

fn up(layout: &Layout, timeout: Duration) -> Result<DataplaneInfo> {
    let cluster = cluster::ensure_up()?;
    let _lock = layout.lock()?;
    let bins = build::ensure_binaries(&layout.workspace, &layout.logs())?;
    let (prom_exe, prom_version) =
        prometheus::ensure_binary(&cluster::build::cache_dir()?, &layout.logs())?;
    let prom_paths = prometheus::Paths::new(&layout.dir);
    let kubectl = Kubectl::new(&cluster);
    let deadline = Instant::now() + timeout;

    gateway::ensure_crds(&kubectl, &layout.workspace, deadline)?;
    let traefik_crds = traefik_crd::ensure_crds(&kubectl, &layout.workspace)?;
    warn_if_endpointslice_controller_runs(&cluster);

    // Already running against this API server, and the Gateway still served? Then keep it.
    let previous = layout.read_info();
    let running = matches!(
        proc::PidRecord::read(&layout.traefik_pid()),
        Ok(Some(r)) if r.is_running()
    );
    if running
        && let Some(info) = previous.as_ref()
        && info.pointer("/cluster/server").and_then(Value::as_str) == Some(cluster.server.as_str())
        && info.pointer("/traefik/binary").and_then(Value::as_str) == bins.traefik.to_str()
        && info
            .pointer("/traefik/crd_provider")
            .and_then(Value::as_bool)
            == Some(true)
        && let Some(ports) = TraefikPorts::from_info(info)
        && ports::http_get(ports.admin, "/ping").is_ok_and(|(code, _)| code == 200)
    {
        // The objects may be gone (a wiped cluster keeps no Traefik state); re-apply them. A
        // Traefik that does not serve them soon (say its token died with a wiped cluster's
        // keys) is restarted below.
        gateway::apply_objects(&kubectl, &layout.workspace, ports.web)?;
        let soon = Instant::now() + Duration::from_secs(10);
        match gateway::wait_programmed(&kubectl, soon.min(deadline), &mut || Ok(())) {
            Ok(()) => {
                let prom = prometheus::ensure_running(
                    &prom_paths,
                    &prom_exe,
                    &prom_version,
                    prometheus_port(info),
                    ports.admin,
                    deadline,
                )?;
                let mut info = info.clone();
                info["prometheus"] = prom;
                fs::write(layout.info_file(), serde_json::to_string_pretty(&info)?)?;
                eprintln!("dataplane: already running");
                return info_from_json(layout, &info).context("dataplane.json is incomplete");
            }
            Err(e) => eprintln!("dataplane: restarting Traefik: {e:#}"),
        }
    }
    proc::stop(&layout.traefik_pid(), Duration::from_secs(10)).context("stopping Traefik")?;

    let ports = TraefikPorts::choose(previous.as_ref().and_then(TraefikPorts::from_info))?;
    fs::create_dir_all(layout.run_dir())?;
    gateway::apply_objects(&kubectl, &layout.workspace, ports.web)?;
    gateway::reset_gateway_status(&kubectl)?;
    let token = gateway::service_account_token(&kubectl, &layout.workspace)?;
    write_private(&layout.traefik_token(), &token)?;
    let crd_token = traefik_crd::provider_token(&kubectl, &layout.workspace)?;
    write_private(&layout.traefik_crd_token(), &crd_token)?;
    let config = gateway::traefik_config(
        ports.web,
        ports.admin,
        &cluster.server,
        &layout.traefik_token(),
        &layout.traefik_crd_token(),
        &cluster.ca_cert,
    );
    fs::write(
        layout.traefik_config(),
        serde_json::to_string_pretty(&config)?,
    )?;

    let started = Instant::now();
    let mut traefik = proc::spawn(
        "traefik",
        &bins.traefik,
        &[format!(
            "--configFile={}",
            layout.traefik_config().display()
        )],
        &layout.traefik_log(),
        &layout.traefik_pid(),
    )?;
    let mut alive = || traefik.check_alive();
    let result = wait_until(deadline, "Traefik's /ping", &mut alive, &mut || {
        Ok(ports::http_get(ports.admin, "/ping").is_ok_and(|(code, _)| code == 200))
    })
    .and_then(|()| gateway::wait_programmed(&kubectl, deadline, &mut alive));
    if let Err(e) = result {
        let _ = proc::stop(&layout.traefik_pid(), Duration::from_secs(5));
        return Err(e.context(format!(
            "Traefik did not serve the Gateway; last lines of {}:\n{}",
            layout.traefik_log().display(),
            proc::tail(&layout.traefik_log(), 20)
        )));
    }

    let prom = prometheus::ensure_running(
        &prom_paths,
        &prom_exe,
        &prom_version,
        previous.as_ref().and_then(prometheus_port),
        ports.admin,
        deadline,
    )?;
    let info = json!({
        "prometheus": prom,
        "cluster": {
            "server": cluster.server,
            "kubeconfig": cluster.kubeconfig,
        },
        "gateway": {
            "class": GATEWAY_CLASS,
            "namespace": GATEWAY_NAMESPACE,
            "name": GATEWAY_NAME,
            "listener": LISTENER_NAME,
            "url": format!("http://127.0.0.1:{}", ports.web),
        },
        "gateway_api": {
            "installed_bundle_version": gateway::installed_bundle_version(&kubectl),
            "pinned_version": build::gateway_api_version(),
        },
        "traefik": {
            "version": Tool::Traefik.version(),
            "binary": bins.traefik,
            "pid_file": layout.traefik_pid(),
            "log": layout.traefik_log(),
            "web_port": ports.web,
            // The kubernetesCRD provider (IngressRoute, TraefikService) runs too.
            "crd_provider": true,
            "crds": traefik_crds,
            "admin_port": ports.admin,
            "metrics_url": format!("http://127.0.0.1:{}/metrics", ports.admin),
            "ping_url": format!("http://127.0.0.1:{}/ping", ports.admin),
            "api_url": format!("http://127.0.0.1:{}/api", ports.admin),
        },
        "podinfo": {
            "version": Tool::Podinfo.version(),
            "binary": bins.podinfo,
        },
        // Not started here: the metrics providers' tests run their own, as a second real
        // metrics server (Prometheus API, Graphite's carbon protocol and render API).
        "victoria_metrics": {
            "version": Tool::VictoriaMetrics.version(),
            "binary": bins.victoria_metrics,
        },
        // Not started here either: the influxdb provider's tests run their own, a real server
        // of the v2 query API with Flux.
        "influxdb": {
            "version": Tool::InfluxDb.version(),
            "binary": bins.influxd,
        },
        // Not started here: the skipper provider's real-traffic test runs its own, reading
        // the Ingresses of its namespace.
        "skipper": {
            "version": Tool::Skipper.version(),
            "binary": bins.skipper,
        },
        "endpoint_slices": {
            "address_type": endpoints::ADDRESS_TYPE,
            "managed_by": endpoints::MANAGED_BY,
        },
    });
    fs::write(layout.info_file(), serde_json::to_string_pretty(&info)?)?;
    eprintln!(
        "dataplane: Traefik serves the Gateway after {:.1?} (log: {})",
        started.elapsed(),
        layout.traefik_log().display()
    );
    info_from_json(layout, &info).context("dataplane.json is incomplete")
}

/// The port of the Prometheus a previous `up` started.
fn prometheus_port(info: &Value) -> Option<u16> {
    info.pointer("/prometheus/port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
}

/// A control plane started before `cluster up` turned the endpointslice controller off still
/// publishes kwok Pod IPs for Services with selectors; Traefik would route to them too.
fn warn_if_endpointslice_controller_runs(cluster: &cluster::ClusterInfo) {
    let pid_file = cluster.dir.join("run").join("kube-controller-manager.pid");
    let Ok(Some(record)) = proc::PidRecord::read(&pid_file) else {
        return;
    };
    let Ok(cmdline) = fs::read(format!("/proc/{}/cmdline", record.pid)) else {
        return;
    };
    if !String::from_utf8_lossy(&cmdline).contains("-endpointslice-controller") {
        eprintln!(
            "dataplane: warning: the running kube-controller-manager still runs the \
             endpointslice controller, which publishes kwok Pod IPs (that serve nothing) for \
             Services with selectors; restart the control plane to get local-mode endpoints \
             only: cargo xtask cluster down && cargo xtask cluster up"
        );
    }
}

fn down(layout: &Layout) -> Result<()> {
    if !layout.dir.exists() {
        println!("dataplane: nothing to stop");
        return Ok(());
    }
    let _lock = layout.lock()?;
    let apps = apps::stop_all(layout)?;
    if !apps.is_empty() {
        println!("dataplane: stopped apps {}", apps.join(", "));
    }
    if prometheus::stop(&prometheus::Paths::new(&layout.dir))? {
        println!("dataplane: stopped Prometheus");
    }
    if proc::stop(&layout.traefik_pid(), Duration::from_secs(10))? {
        println!("dataplane: stopped Traefik");
    } else {
        println!("dataplane: Traefik was not running");
    }
    // The GatewayClass and Gateway stay in the cluster; the next `up` serves them again.
    Ok(())
}

fn status_report(layout: &Layout) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let info = layout.read_info();
    let traefik = match proc::PidRecord::read(&layout.traefik_pid()) {
        Ok(Some(r)) if r.is_running() => format!("running (pid {})", r.pid),
        Ok(Some(r)) => format!("not running (stale record of pid {})", r.pid),
        _ => "stopped".to_string(),
    };
    let _ = writeln!(out, "dataplane directory: {}", layout.dir.display());
    let _ = writeln!(out, "  traefik {:<10} {traefik}", Tool::Traefik.version());
    if let Some(info) = &info {
        for (label, ptr) in [
            ("gateway", "/gateway/url"),
            ("metrics", "/traefik/metrics_url"),
            ("api", "/traefik/api_url"),
            ("prometheus", "/prometheus/url"),
        ] {
            if let Some(v) = info.pointer(ptr).and_then(Value::as_str) {
                let _ = writeln!(out, "  {label:<8} {v}");
            }
        }
        if let Some(ports) = TraefikPorts::from_info(info) {
            let ping = ports::http_get(ports.admin, "/ping").is_ok_and(|(c, _)| c == 200);
            let _ = writeln!(out, "  ping     {}", if ping { "ok" } else { "no answer" });
        }
    }
    let _ = writeln!(out, "  podinfo  {}", Tool::Podinfo.version());
    for line in apps::list_lines(layout) {
        let _ = writeln!(out, "    {line}");
    }
    let _ = writeln!(
        out,
        "  gateway-api (pinned) {}",
        build::gateway_api_version()
    );
    out
}

/// Polls `ready` every 250 ms until it returns true. Fails at once when `alive` fails (a
/// process exited), and at `deadline` with the last error `ready` gave.
pub(crate) fn wait_until(
    deadline: Instant,
    what: &str,
    alive: &mut dyn FnMut() -> Result<()>,
    ready: &mut dyn FnMut() -> Result<bool>,
) -> Result<()> {
    let mut last_error = None;
    loop {
        alive().with_context(|| format!("while waiting for {what}"))?;
        match ready() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out waiting for {what}{}",
                last_error.map_or(String::new(), |e| format!(" (last error: {e:#})"))
            );
        }
        sleep(Duration::from_millis(250));
    }
}

/// Writes a file only its owner can read (the service-account token).
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// A plain HTTP/1.0 GET to `addr`; returns the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP status line")?;
    Ok((code, body.to_string()))
}
