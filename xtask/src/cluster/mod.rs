//! The local Kubernetes control plane: `cargo xtask cluster up|down|status|build`.
//!
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (a fake kubelet that
//! makes Pods Running and Ready), built from the Go module proxy at the versions pinned in
//! `xtask/go/go.mod`, cached under `~/.cache/fledge/bin/`, and run on 127.0.0.1 with locally
//! generated certificates. State lives in `target/cluster/`:
//!
//! ```text
//! target/cluster/kubeconfig   admin kubeconfig (system:masters)
//! target/cluster/bin/kubectl  the matching kubectl
//! target/cluster/pki/         CA, serving and client certificates, service-account keys
//! target/cluster/etcd/        etcd data (kept by `down`, removed by `down --wipe`)
//! target/cluster/run/         pid records, component kubeconfigs and configuration
//! target/cluster/logs/        one log per component, plus the Go build log
//! ```
//!
//! Other xtask code calls [`ensure_up`] and uses the returned [`ClusterInfo`].

mod audit;
pub(crate) mod build;
mod components;
mod generated_crds;
mod peers;
mod pki;
pub(crate) mod ports;
pub(crate) mod proc;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use build::{Binaries, Tool};
use components::{Component, Files, NODE_NAME};
use pki::Pki;
use ports::Ports;
use proc::{PidRecord, Started};

/// Arguments of `cargo xtask cluster`.
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Keep this control plane in DIR instead of `target/cluster` (another, independent
    /// cluster: its own etcd, API server, ports and certificates).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// Build the binaries if needed, start the control plane and wait until it is ready.
    Up(UpArgs),
    /// Stop the processes `up` started.
    Down {
        /// Also delete the cluster's data (etcd, certificates, kubeconfig, logs).
        #[arg(long)]
        wipe: bool,
    },
    /// Print the state of each component.
    Status,
    /// Only build (or find in the cache) the binaries, and print where they are.
    Build,
}

#[derive(clap::Args, Clone, Debug, Default)]
pub struct UpArgs {
    /// Serve the API on this loopback port (an error if taken) instead of a free one.
    #[arg(long)]
    pub apiserver_port: Option<u16>,
    /// Seconds to wait for the components to become ready (the build is not counted).
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

/// How to reach the running control plane.
#[derive(Clone, Debug)]
#[allow(
    dead_code,
    reason = "read by the test runner and benchmarks, not by every task"
)]
pub struct ClusterInfo {
    /// Admin kubeconfig (user `fledge-admin`, group `system:masters`).
    pub kubeconfig: PathBuf,
    /// A kubectl of the cluster's version.
    pub kubectl: PathBuf,
    /// The API server URL, `https://127.0.0.1:<port>`.
    pub server: String,
    /// The CA certificate that signed the API server's certificate.
    pub ca_cert: PathBuf,
    /// The kwok node Pods are scheduled to.
    pub node: String,
    /// `target/cluster`.
    pub dir: PathBuf,
}

pub fn run(args: ClusterArgs) -> Result<()> {
    let layout = match args.dir {
        Some(dir) => Layout::at(dir),
        None => Layout::new(),
    };
    match args.command {
        ClusterCommand::Up(up_args) => {
            let info = up(&layout, &up_args)?;
            println!("cluster is up: {}", info.server);
            println!("  export KUBECONFIG={}", info.kubeconfig.display());
            println!("  {} get nodes", info.kubectl.display());
            Ok(())
        }
        ClusterCommand::Down { wipe } => down(&layout, wipe),
        ClusterCommand::Status => status(&layout),
        ClusterCommand::Build => {
            let bins = build::ensure_binaries(&layout.go_dir(), &layout.build_log())?;
            for tool in Tool::ALL {
                println!("{:<24} {}", tool.name(), bins.path(tool).display());
            }
            Ok(())
        }
    }
}

pub use components::BENCH_USERS;

/// Writes to `path` a kubeconfig of a new user `user` (group `system:masters`) of the cluster:
/// with one of [`BENCH_USERS`], the API server's audit log records every request it sends.
pub fn user_kubeconfig(info: &ClusterInfo, user: &str, path: &Path) -> Result<()> {
    let layout = Layout::at(info.dir.clone());
    let text = layout
        .pki()
        .issue_kubeconfig(&info.server, user, &["system:masters"])?;
    pki::write_secret(path, &text)
}

/// The API server's audit log files, oldest first: those it rotated out, then the one it
/// writes.
pub fn audit_logs(info: &ClusterInfo) -> Vec<PathBuf> {
    audit::audit_log_files(&Layout::at(info.dir.clone()).run_dir())
}

/// Starts the control plane unless it is already up and ready; for tests and benchmarks.
#[allow(dead_code, reason = "API for the test runner and benchmarks")]
pub fn ensure_up() -> Result<ClusterInfo> {
    up(
        &Layout::new(),
        &UpArgs {
            timeout: 180,
            ..UpArgs::default()
        },
    )
}

/// Stops the control plane started by [`ensure_up`] or `up`; `wipe` also deletes its data.
#[allow(dead_code, reason = "API for the test runner and benchmarks")]
pub fn stop(wipe: bool) -> Result<()> {
    down(&Layout::new(), wipe)
}

/// Paths under `target/cluster`.
struct Layout {
    workspace: PathBuf,
    dir: PathBuf,
}

impl Layout {
    fn new() -> Self {
        let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
        let workspace = xtask.parent().unwrap_or(xtask).to_path_buf();
        let dir = workspace.join("target").join("cluster");
        Layout { workspace, dir }
    }
    fn at(dir: PathBuf) -> Self {
        let workspace = Layout::new().workspace;
        let dir = if dir.is_absolute() {
            dir
        } else {
            workspace.join(dir)
        };
        Layout { workspace, dir }
    }
    fn go_dir(&self) -> PathBuf {
        self.workspace.join("xtask").join("go")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    fn kubectl(&self) -> PathBuf {
        self.dir.join("bin").join("kubectl")
    }
    fn pki(&self) -> Pki {
        Pki::new(self.dir.join("pki"))
    }
    fn etcd_data(&self) -> PathBuf {
        self.dir.join("etcd")
    }
    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    fn pid_file(&self, c: Component) -> PathBuf {
        self.run_dir().join(format!("{}.pid", c.name()))
    }
    fn log(&self, c: Component) -> PathBuf {
        self.dir.join("logs").join(format!("{}.log", c.name()))
    }
    fn build_log(&self) -> PathBuf {
        self.dir.join("logs").join("go-build.log")
    }
    fn ports_file(&self) -> PathBuf {
        self.dir.join("ports")
    }

    /// Holds an exclusive lock on `target/cluster/.lock` while `up` or `down` runs.
    fn lock(&self) -> Result<File> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let file = File::create(self.dir.join(".lock"))?;
        file.lock().context("locking target/cluster")?;
        Ok(file)
    }

    fn ports(&self) -> Option<Ports> {
        Ports::parse(&fs::read_to_string(self.ports_file()).ok()?)
    }

    fn info(&self, ports: &Ports) -> ClusterInfo {
        ClusterInfo {
            kubeconfig: self.kubeconfig(),
            kubectl: self.kubectl(),
            server: server_url(ports),
            ca_cert: self.pki().ca_cert(),
            node: NODE_NAME.to_string(),
            dir: self.dir.clone(),
        }
    }
}

fn server_url(ports: &Ports) -> String {
    format!("https://127.0.0.1:{}", ports.apiserver)
}

/// What `status` and `up` learn about a component from its pid record.
#[derive(Debug, PartialEq, Eq)]
enum ProcState {
    Running(u32),
    Stopped,
    /// A record whose process is gone (or the pid now belongs to another program).
    Stale(u32),
}

fn proc_state(layout: &Layout, c: Component) -> ProcState {
    match PidRecord::read(&layout.pid_file(c)) {
        Ok(Some(r)) if r.is_running() => ProcState::Running(r.pid),
        Ok(Some(r)) => ProcState::Stale(r.pid),
        Ok(None) | Err(_) => ProcState::Stopped,
    }
}

fn up(layout: &Layout, args: &UpArgs) -> Result<ClusterInfo> {
    let _lock = layout.lock()?;
    let bins = build::ensure_binaries(&layout.go_dir(), &layout.build_log())?;
    link_kubectl(&bins.kubectl, &layout.kubectl())?;

    let states: Vec<ProcState> = Component::ALL
        .iter()
        .map(|c| proc_state(layout, *c))
        .collect();
    if states.iter().all(|s| matches!(s, ProcState::Running(_)))
        && let Some(ports) = layout.ports()
        && args.apiserver_port.is_none_or(|p| p == ports.apiserver)
        && layout.kubeconfig().is_file()
        && kubectl(layout, &["get", "--raw=/readyz"]).is_ok_and(|o| o.status.success())
    {
        eprintln!("cluster: already running");
        let info = layout.info(&ports);
        peers::install_peer_crds(&info)?;
        return Ok(info);
    }
    if states.iter().any(|s| matches!(s, ProcState::Running(_))) {
        eprintln!("cluster: some components are not running; restarting all of them");
    }
    stop_all(layout)?;

    let started = Instant::now();
    let result = start_all(layout, args, &bins);
    match result {
        Ok(info) => {
            eprintln!(
                "cluster: ready in {:.1?} (logs in {})",
                started.elapsed(),
                layout.dir.join("logs").display()
            );
            peers::install_peer_crds(&info)?;
            Ok(info)
        }
        Err(e) => {
            // Leave nothing half-started behind; the logs stay for a look.
            let _ = stop_all(layout);
            Err(e)
        }
    }
}

fn start_all(layout: &Layout, args: &UpArgs, bins: &Binaries) -> Result<ClusterInfo> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let pki = layout.pki();
    pki.ensure()?;

    let ports = ports::choose(layout.ports(), args.apiserver_port, ports::is_free)?;
    fs::write(layout.ports_file(), ports.render())?;
    let server = server_url(&ports);

    let run = layout.run_dir();
    fs::create_dir_all(&run)?;
    let write = |name: &str, text: String| -> Result<PathBuf> {
        let p = run.join(name);
        pki::write_secret(&p, &text)?;
        Ok(p)
    };
    pki::write_secret(&layout.kubeconfig(), &pki.kubeconfig(&server, pki::ADMIN)?)?;
    let cm_kubeconfig = write(
        "controller-manager.kubeconfig",
        pki.kubeconfig(&server, pki::CONTROLLER_MANAGER)?,
    )?;
    let scheduler_kubeconfig = write(
        "scheduler.kubeconfig",
        pki.kubeconfig(&server, pki::SCHEDULER)?,
    )?;
    let scheduler_config = write(
        "scheduler.yaml",
        components::scheduler_config(&scheduler_kubeconfig),
    )?;
    let kwok_kubeconfig = write("kwok.kubeconfig", pki.kubeconfig(&server, pki::KWOK)?)?;
    let etcd_data = layout.etcd_data();
    let audit_policy = write("audit-policy.yaml", components::AUDIT_POLICY.to_string())?;
    let audit_log = run.join("audit.log");
    let files = Files {
        audit_policy: &audit_policy,
        audit_log: &audit_log,
        pki: &pki,
        etcd_data: &etcd_data,
        controller_manager_kubeconfig: &cm_kubeconfig,
        scheduler_config: &scheduler_config,
        kwok_kubeconfig: &kwok_kubeconfig,
        kwok_stages: &bins.kwok_stages,
    };

    let mut procs: Vec<Started> = Vec::new();
    let start = |procs: &mut Vec<Started>, c: Component, exe: &Path, args: Vec<String>| {
        let p = proc::spawn(c.name(), exe, &args, &layout.log(c), &layout.pid_file(c))?;
        procs.push(p);
        anyhow::Ok(())
    };

    start(
        &mut procs,
        Component::Etcd,
        &bins.etcd,
        components::etcd_args(&ports, &files),
    )?;
    wait_until(&mut procs, deadline, "etcd to report healthy", || {
        let (code, body) = ports::http_get(ports.etcd_client, "/health")?;
        Ok(code == 200 && body.contains("\"health\":\"true\""))
    })?;

    start(
        &mut procs,
        Component::KubeApiserver,
        &bins.kube_apiserver,
        components::apiserver_args(&ports, &files),
    )?;
    wait_until(&mut procs, deadline, "kube-apiserver /readyz", || {
        Ok(kubectl(layout, &["get", "--raw=/readyz"])?.status.success())
    })?;

    start(
        &mut procs,
        Component::KubeControllerManager,
        &bins.kube_controller_manager,
        components::controller_manager_args(&files),
    )?;
    start(
        &mut procs,
        Component::KubeScheduler,
        &bins.kube_scheduler,
        components::scheduler_args(&files),
    )?;
    start(
        &mut procs,
        Component::Kwok,
        &bins.kwok,
        components::kwok_args(&files),
    )?;

    kubectl_stdin(layout, &["apply", "-f", "-"], &components::node_manifest())
        .context("creating the kwok node")?;
    wait_until(&mut procs, deadline, "the kwok node to be Ready", || {
        Ok(node_ready(layout).as_deref() == Some("True"))
    })?;
    // The `default` ServiceAccount appearing shows the controller manager at work; Pods are
    // refused until it exists.
    wait_until(
        &mut procs,
        deadline,
        "the default ServiceAccount (controller manager)",
        || {
            Ok(
                kubectl(layout, &["get", "serviceaccount", "default", "-o", "name"])?
                    .status
                    .success(),
            )
        },
    )?;
    for p in &mut procs {
        p.check_alive()?;
    }
    Ok(layout.info(&ports))
}

/// Polls `ready` until it returns true, failing early with the log tail of any component that
/// exits, and at `deadline` with the last error seen.
fn wait_until(
    procs: &mut [Started],
    deadline: Instant,
    what: &str,
    mut ready: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let mut last_error = None;
    loop {
        for p in procs.iter_mut() {
            p.check_alive()
                .with_context(|| format!("while waiting for {what}"))?;
        }
        match ready() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| {
                    format!(
                        "--- last lines of {}:\n{}",
                        p.log.display(),
                        proc::tail(&p.log, 15)
                    )
                })
                .collect();
            bail!(
                "timed out waiting for {what}{}\n{}",
                last_error.map_or(String::new(), |e| format!(" (last error: {e:#})")),
                logs.join("\n")
            );
        }
        sleep(Duration::from_millis(250));
    }
}

fn kubectl_command(layout: &Layout) -> Command {
    let mut cmd = Command::new(layout.kubectl());
    cmd.arg(format!("--kubeconfig={}", layout.kubeconfig().display()))
        .arg("--request-timeout=5s")
        .stdin(Stdio::null());
    cmd
}

fn kubectl(layout: &Layout, args: &[&str]) -> Result<Output> {
    kubectl_command(layout)
        .args(args)
        .output()
        .with_context(|| format!("running {}", layout.kubectl().display()))
}

fn kubectl_stdin(layout: &Layout, args: &[&str], input: &str) -> Result<()> {
    use std::io::Write;
    let mut child = kubectl_command(layout)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", layout.kubectl().display()))?;
    child
        .stdin
        .take()
        .context("kubectl stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The status of the kwok node's Ready condition, if it can be read.
fn node_ready(layout: &Layout) -> Option<String> {
    let out = kubectl(
        layout,
        &[
            "get",
            "node",
            NODE_NAME,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    )
    .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Puts the cached kubectl at `target/cluster/bin/kubectl` (a hard link, or a copy).
fn link_kubectl(cached: &Path, dest: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(a), Ok(b)) = (fs::metadata(cached), fs::metadata(dest))
        && a.ino() == b.ino()
        && a.dev() == b.dev()
    {
        return Ok(());
    }
    fs::create_dir_all(dest.parent().context("kubectl path has a parent")?)?;
    let _ = fs::remove_file(dest);
    if fs::hard_link(cached, dest).is_err() {
        fs::copy(cached, dest)
            .with_context(|| format!("copying {} to {}", cached.display(), dest.display()))?;
    }
    Ok(())
}

/// Stops every recorded component, last started first.
fn stop_all(layout: &Layout) -> Result<Vec<Component>> {
    let mut stopped = Vec::new();
    for c in Component::ALL.into_iter().rev() {
        let grace = if c == Component::Etcd {
            Duration::from_secs(15)
        } else {
            Duration::from_secs(10)
        };
        if proc::stop(&layout.pid_file(c), grace)
            .with_context(|| format!("stopping {}", c.name()))?
        {
            stopped.push(c);
        }
    }
    Ok(stopped)
}

fn down(layout: &Layout, wipe: bool) -> Result<()> {
    if !layout.dir.exists() {
        println!(
            "cluster: nothing to stop ({} does not exist)",
            layout.dir.display()
        );
        return Ok(());
    }
    let _lock = layout.lock()?;
    let stopped = stop_all(layout)?;
    if stopped.is_empty() {
        println!("cluster: no running components");
    } else {
        let names: Vec<&str> = stopped.iter().map(|c| c.name()).collect();
        println!("cluster: stopped {}", names.join(", "));
    }
    if wipe {
        for entry in fs::read_dir(&layout.dir)? {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n == ".lock") {
                continue;
            }
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.with_context(|| format!("removing {}", path.display()))?;
        }
        println!("cluster: wiped {}", layout.dir.display());
    } else {
        println!(
            "cluster: data kept in {} (`down --wipe` deletes it)",
            layout.dir.display()
        );
    }
    Ok(())
}

fn status(layout: &Layout) -> Result<()> {
    use std::io::Write;
    let report = status_report(layout);
    match std::io::stdout().write_all(report.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn status_report(layout: &Layout) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // Writing to a String cannot fail.
    macro_rules! wln {
        ($($arg:tt)*) => {
            let _ = writeln!(out, $($arg)*);
        };
    }
    let ports = layout.ports();
    wln!("cluster directory: {}", layout.dir.display());
    for c in Component::ALL {
        let state = match proc_state(layout, c) {
            ProcState::Running(pid) => format!("running (pid {pid})"),
            ProcState::Stopped => "stopped".to_string(),
            ProcState::Stale(pid) => format!("not running (stale record of pid {pid})"),
        };
        let detail = match (c, ports) {
            (Component::Etcd, Some(p)) => format!("http://127.0.0.1:{}", p.etcd_client),
            (Component::KubeApiserver, Some(p)) => server_url(&p),
            _ => String::new(),
        };
        wln!("  {:<24} {:<36} {detail}", c.name(), state);
    }
    let api_running = matches!(
        proc_state(layout, Component::KubeApiserver),
        ProcState::Running(_)
    );
    if api_running && layout.kubectl().is_file() {
        let ready = kubectl(layout, &["get", "--raw=/readyz"])
            .map(|o| o.status.success())
            .unwrap_or(false);
        wln!(
            "  API server /readyz: {}",
            if ready { "ok" } else { "not ready" }
        );
        let node = node_ready(layout).unwrap_or_else(|| "unknown".to_string());
        wln!("  node {NODE_NAME} Ready: {node}");
        wln!("  kubeconfig: {}", layout.kubeconfig().display());
        wln!("  kubectl:    {}", layout.kubectl().display());
    }
    wln!("  versions:");
    for tool in Tool::ALL {
        wln!("    {:<24} {}", tool.name(), tool.version());
    }
    out
}
