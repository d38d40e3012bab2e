//! `cargo xtask bench scale --canaries N`: the controller at scale on the local control plane.
//!
//! 1. N Deployments (one replica each, made Ready by kwok) and N blue/green Canaries on the
//!    `kubernetes` provider are applied in namespace `fledge-bench-<N>`; the bench waits until
//!    every target is available.
//! 2. `target/release/fledge run` starts (its JSON log goes to `target/bench/scale-<N>/`);
//!    *initialization* lasts until every Canary is `Initialized`.
//! 3. After one interval to settle, a *steady state* window of a few intervals.
//! 4. The *wave*: every target gets a new image at once (server-side apply, a few kubectl
//!    processes in parallel), until every Canary is `Succeeded` (or `Failed`).
//! 5. The *failing wave*: the `rollout` webhook fails every check and every target gets another
//!    image, until every Canary is `Failed`; from the webhook's last failed answer before each
//!    rollback to the `Failed` phase a watch on the Canaries sees (all traffic on the primary).
//!
//! For each phase: wall time, controller CPU seconds (`/proc/<pid>/stat`), resident memory at
//! the end and the peak within the phase (`/proc/<pid>/status`, sampled every 250 ms), API
//! requests (the controller's client-side `fledge_kube_requests_total`, by verb) and reconciles.
//! For the wave, from the controller's log: revision change → new revision detected, → first
//! analysis step, → Succeeded, and the lateness of every analysis step against its schedule
//! (previous step + interval), cross-checked with the `fledge_step_lateness_seconds` histogram.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, sleep};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};

use super::apiserver::ApiServer;
use super::flood::{Flood, FloodFigures};
use super::hook::Webhook;
use super::measure::{
    self, Histogram, LogEvent, Memory, Sample, Summary, mib, parse_log_event, secs, table,
};
use super::watch::ApiWatch;
use crate::cluster::{self, ClusterInfo};
use crate::util::{cargo, root, run as run_cmd, target_dir};

/// Image of the targets before and after the wave, and in the failing wave (kwok never pulls
/// it).
const IMAGE_V1: &str = "registry.invalid/fledge-bench/app:v1";
const IMAGE_V2: &str = "registry.invalid/fledge-bench/app:v2";
const IMAGE_V3: &str = "registry.invalid/fledge-bench/app:v3";
/// Field manager of every object the bench creates.
const MANAGER: &str = "fledge-bench";
/// Field manager of the wave's image change: another manager than the one that created the
/// Deployments, so the partial object it applies leaves every other field alone.
const WAVE_MANAGER: &str = "fledge-bench-wave";
/// kubectl processes that apply objects in parallel.
const PARALLEL: usize = 4;

/// Arguments of `cargo xtask bench scale`.
#[derive(clap::Args)]
pub struct ScaleArgs {
    /// Number of Deployments with Canaries; a comma-separated list (`100,1000`) runs one
    /// benchmark per value, in order.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    canaries: Vec<usize>,
    /// `analysis.interval` of every Canary.
    #[arg(long, default_value = "10s")]
    interval: String,
    /// `analysis.iterations` of every Canary (blue/green: steps before promotion).
    #[arg(long, default_value_t = 3)]
    iterations: u32,
    /// Length of the steady-state window, in intervals.
    #[arg(long, default_value_t = 3)]
    steady_intervals: u32,
    /// Seconds to wait for each phase before giving up.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Leave the namespace and its objects behind (the next run of the same N removes them).
    #[arg(long)]
    keep: bool,
    /// Writes a second to objects unrelated to the wave while it runs: Events created in the
    /// namespace and annotation patches of sixteen bystander Canaries that take no part in it
    /// (0: none). Compare the step lateness with and without.
    #[arg(long, default_value_t = 0)]
    flood: u32,
    /// The flood creates Events only (no bystander Canaries).
    #[arg(long, requires = "flood")]
    flood_events_only: bool,
    /// Run this fledge binary instead of building `target/release/fledge`.
    #[arg(long, value_name = "PATH")]
    fledge: Option<PathBuf>,
    /// The controller measured: fledge, Flagger (built from its Go module at the version
    /// `xtask/go-flagger/go.mod` pins, its Canaries the same spec as `flagger.app/v1beta1`), or
    /// both, one after the other on the same control plane, printed side by side.
    #[arg(long, value_enum, default_value = "fledge")]
    controller: Which,
    /// Run fledge under heaptrack (Debian's `heaptrack`, installed with apt-get when missing)
    /// and print its top allocation sites by peak heap consumption at the end. The memory and
    /// CPU figures of such a run include heaptrack's own cost.
    #[arg(long, conflicts_with = "code_profile")]
    heap_profile: bool,
    /// Run fledge under valgrind's callgrind (Debian's `valgrind`, installed with apt-get when
    /// missing) and write the functions it ran to `build/code-order.txt`, the list the static
    /// musl link places first (`build/link-musl`). Give it the images' executable with
    /// `--fledge` (`cargo xtask image` leaves it in
    /// `~/.cache/fledge/target/x86_64-unknown-linux-musl/release/fledge`): the names of another
    /// build (glibc, debug) are not those the musl link sees. Such a run is many times slower:
    /// only the list is of use from it, not its figures. `--canaries 20` covers what a larger
    /// run does.
    #[arg(long, requires = "fledge")]
    code_profile: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    Fledge,
    Flagger,
    Both,
}

/// A controller under measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Fledge,
    Flagger,
}

impl Kind {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Fledge => "fledge",
            Kind::Flagger => "flagger",
        }
    }

    /// Its Canaries, as kubectl names them unambiguously.
    pub(super) fn canaries(self) -> &'static str {
        match self {
            Kind::Fledge => "canaries.fledge.dev",
            Kind::Flagger => "canaries.flagger.app",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Kind::Fledge => "fledge.dev/v1beta1",
            Kind::Flagger => "flagger.app/v1beta1",
        }
    }

    /// The user it runs as: the audit log records every request of it.
    fn user(self) -> &'static str {
        match self {
            Kind::Fledge => cluster::BENCH_USERS[0],
            Kind::Flagger => cluster::BENCH_USERS[1],
        }
    }
}

/// What runs the benchmark for one kind of controller.
struct Subject {
    kind: Kind,
    binary: PathBuf,
    kubeconfig: PathBuf,
}

/// The benchmarks' `--interval`: a Canary's `analysis.interval`, at least a second.
pub(super) fn parse_interval(text: &str) -> Result<Duration> {
    let interval = fledge_api::parse_duration(text).map_err(|e| anyhow!("--interval: {e}"))?;
    if interval < Duration::from_secs(1) {
        bail!("--interval {text:?}: must be at least 1s, such as 1s, 10s or 1m");
    }
    Ok(interval)
}

pub fn run(args: ScaleArgs) -> Result<()> {
    let interval = parse_interval(&args.interval)?;
    if args.canaries.iter().any(|n| *n == 0 || *n > 99_999) {
        bail!("--canaries: each value must be between 1 and 99999");
    }
    let cluster = cluster::ensure_up()?;
    let kubectl = Kubectl::new(&cluster);
    let kinds = match args.controller {
        Which::Fledge => vec![Kind::Fledge],
        Which::Flagger => vec![Kind::Flagger],
        Which::Both => vec![Kind::Fledge, Kind::Flagger],
    };
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let mut subjects = Vec::new();
    for kind in kinds {
        let binary = match kind {
            Kind::Fledge => {
                install_crds(&kubectl)?;
                match &args.fledge {
                    Some(p) => p.clone(),
                    None => build_fledge()?,
                }
            }
            Kind::Flagger => {
                let flagger = crate::flagger::ensure()?;
                let crds = flagger.crds.display().to_string();
                kubectl.run(&["apply", "--server-side", "--force-conflicts", "-f", &crds])?;
                kubectl.run(&[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd/canaries.flagger.app",
                ])?;
                flagger.binary
            }
        };
        let kubeconfig = dir.join(format!("{}.kubeconfig", kind.name()));
        cluster::user_kubeconfig(&cluster, kind.user(), &kubeconfig)?;
        subjects.push(Subject {
            kind,
            binary,
            kubeconfig,
        });
    }
    let mut reports = Vec::new();
    for &n in &args.canaries {
        for subject in &subjects {
            reports.push(scale(&kubectl, &cluster, subject, n, interval, &args)?);
        }
    }
    if subjects.len() > 1 {
        println!("{}", side_by_side(&reports));
    } else if reports.len() > 1 {
        println!("{}", summary(&reports));
    }
    Ok(())
}

pub(super) fn build_fledge() -> Result<PathBuf> {
    run_cmd(
        "cargo build --release -p fledge-controller --bin fledge",
        cargo().args([
            "build",
            "--release",
            "-p",
            "fledge-controller",
            "--bin",
            "fledge",
        ]),
    )?;
    Ok(target_dir().join("release").join("fledge"))
}

/// The cluster's kubectl with the admin kubeconfig.
pub(super) struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    pub(super) fn new(c: &ClusterInfo) -> Self {
        Kubectl {
            bin: c.kubectl.clone(),
            kubeconfig: c.kubeconfig.clone(),
        }
    }

    pub(super) fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .stdin(Stdio::null());
        c
    }

    /// Runs kubectl and returns its standard output; fails with its standard error.
    pub(super) fn run(&self, args: &[&str]) -> Result<String> {
        self.run_with(args, None)
    }

    pub(super) fn run_with(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let mut cmd = self.cmd();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {}", self.bin.display()))?;
        let writer = match (input, child.stdin.take()) {
            (Some(text), Some(mut stdin)) => {
                let text = text.to_string();
                Some(thread::spawn(move || stdin.write_all(text.as_bytes())))
            }
            _ => None,
        };
        let out = child.wait_with_output()?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Applies `docs` server-side with `PARALLEL` kubectl processes; returns each output line
    /// with the time it was printed (kubectl prints one per object once the API server
    /// answered).
    pub(super) fn apply_parallel(
        &self,
        docs: &[String],
        manager: &str,
        extra: &[&str],
    ) -> Result<Vec<(String, f64)>> {
        let per = docs.len().div_ceil(PARALLEL).max(1);
        thread::scope(|s| {
            let workers: Vec<_> = docs
                .chunks(per)
                .map(|chunk| {
                    let input = chunk.join("---\n");
                    s.spawn(move || -> Result<Vec<(String, f64)>> {
                        let mut child = self
                            .cmd()
                            .args(["apply", "--server-side", "--field-manager", manager])
                            .args(extra)
                            .args(["-f", "-"])
                            .stdin(Stdio::piped())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped())
                            .spawn()
                            .context("running kubectl apply")?;
                        let mut stdin = child.stdin.take().context("kubectl stdin")?;
                        let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
                        let mut stderr = child.stderr.take().context("kubectl stderr")?;
                        let errors = thread::spawn(move || {
                            let mut e = String::new();
                            let _ = stderr.read_to_string(&mut e);
                            e
                        });
                        let stdout = child.stdout.take().context("kubectl stdout")?;
                        let mut lines = Vec::new();
                        for line in BufReader::new(stdout).lines() {
                            lines.push((line?, unix_now()));
                        }
                        let status = child.wait()?;
                        let _ = writer.join();
                        let errors = errors.join().unwrap_or_default();
                        if !status.success() {
                            bail!("kubectl apply failed ({status}): {}", errors.trim());
                        }
                        Ok(lines)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for w in workers {
                all.extend(
                    w.join()
                        .map_err(|_| anyhow::anyhow!("kubectl worker panicked"))??,
                );
            }
            Ok(all)
        })
    }

    /// `name<TAB>value` lines of a jsonpath over a list, as a map.
    pub(super) fn table(
        &self,
        resource: &str,
        ns: &str,
        value: &str,
    ) -> Result<BTreeMap<String, String>> {
        let jsonpath = format!(
            "jsonpath={{range .items[*]}}{{.metadata.name}}{{\"\\t\"}}{value}{{\"\\n\"}}{{end}}"
        );
        let out = self.run(&["get", resource, "-n", ns, "-o", &jsonpath])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('\t')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect())
    }
}

pub(super) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

pub(super) fn install_crds(k: &Kubectl) -> Result<()> {
    eprintln!("==> installing the CRDs from config/crd/");
    let dir = root().join("config").join("crd");
    let dir = dir.to_string_lossy();
    k.run(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        MANAGER,
        "-f",
        &dir,
    ])?;
    k.run(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/canaries.fledge.dev",
    ])?;
    Ok(())
}

pub(super) fn name(i: usize) -> String {
    format!("app-{i:05}")
}

pub(super) fn deployment(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app: {name}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: {IMAGE_V1}
        ports:
        - {{name: http, containerPort: 9898}}
"
    )
}

/// A blue/green Canary of `kind` on the `kubernetes` provider, with a `rollout` webhook to
/// `webhook` when given (both controllers then do an analysis's I/O at every step).
pub(super) fn canary_of(
    kind: Kind,
    ns: &str,
    name: &str,
    interval: &str,
    iterations: u32,
    webhook: Option<&str>,
) -> String {
    let api_version = kind.api_version();
    let webhooks = webhook.map_or(String::new(), |url| {
        format!(
            "    webhooks:\n    - {{name: check, type: rollout, url: \"{url}\", timeout: 5s}}\n"
        )
    });
    format!(
        "apiVersion: {api_version}
kind: Canary
metadata:
  name: {name}
  namespace: {ns}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  progressDeadlineSeconds: 900
  service: {{port: 9898}}
  analysis:
    interval: {interval}
    threshold: 2
    iterations: {iterations}
{webhooks}"
    )
}

/// Only the image (`IMAGE_V2`): applied by another field manager, it changes nothing else.
pub(super) fn new_image(ns: &str, name: &str) -> String {
    image_of(ns, name, IMAGE_V2)
}

/// Only the image, `image`.
fn image_of(ns: &str, name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  template:
    spec:
      containers:
      - name: app
        image: {image}
"
    )
}

/// Polls `check` until it says done, printing its progress every 10 s; fails at `timeout` or
/// when the controller exits. It waits 2 s between polls, or four times as long as the last
/// check took when that is longer, so that the bench's own listing of thousands of objects
/// (kubectl, a CPU-heavy process) takes at most about a fifth of a core from the controller
/// and the control plane it measures.
pub(super) fn wait_for(
    what: &str,
    timeout: Duration,
    mut controller: Option<&mut Controller>,
    mut check: impl FnMut() -> Result<(bool, String)>,
) -> Result<()> {
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        if let Some(c) = controller.as_deref_mut() {
            c.check_alive()?;
        }
        let checked = Instant::now();
        let (done, progress) = match check() {
            Ok(v) => v,
            Err(e) => (false, format!("{e:#}")),
        };
        let took = checked.elapsed();
        if done {
            eprintln!(
                "    {what}: done in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what} ({progress})");
        }
        if said.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "    {what}: {progress} ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
            said = Instant::now();
        }
        sleep(Duration::from_secs(2).max(took * 4));
    }
}

/// A wait lists every Canary only once in this many checks (or once its watch has ended).
const LIST_EVERY: u32 = 15;

/// The Canaries' phases for a wait during a wave: as the wave's watch last saw them (the
/// Canaries it has not seen change are left out). A list of every Canary is the backstop, made
/// only every [`LIST_EVERY`] checks or once the watch has ended: at N = 1000 a list is about
/// 5 MB of JSON for the API server to write and kubectl to read, every 2 s, on the cores the
/// controller and the control plane measured share.
fn phases_seen(
    watch: &mut LineWatch,
    checks: &mut u32,
    list: impl Fn() -> Result<BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>> {
    *checks += 1;
    let (seen, running) = watch.phases();
    if running && !checks.is_multiple_of(LIST_EVERY) {
        Ok(seen.clone())
    } else {
        list()
    }
}

/// Counts of each value, as `value=count, …`.
fn counts(map: &BTreeMap<String, String>) -> String {
    let mut c: BTreeMap<&str, usize> = BTreeMap::new();
    for v in map.values() {
        *c.entry(if v.is_empty() { "(none)" } else { v })
            .or_default() += 1;
    }
    c.iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `fledge run` as a child process, with a thread sampling its resident memory.
pub(super) struct Controller {
    child: Child,
    /// What runs (for messages).
    program: String,
    started: Instant,
    /// The same moment as a Unix time, for the audit log.
    started_unix: f64,
    pub(super) pid: u32,
    pub(super) port: u16,
    pub(super) log: PathBuf,
    ticks_per_sec: f64,
    samples: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
}

impl Controller {
    pub(super) fn start(fledge: &Path, kubeconfig: &Path, ns: &str, log: &Path) -> Result<Self> {
        Self::start_traced(fledge, kubeconfig, ns, log, &Tracer::None)
    }

    /// As [`Controller::start`], under `tracer`.
    fn start_traced(
        fledge: &Path,
        kubeconfig: &Path,
        ns: &str,
        log: &Path,
        tracer: &Tracer,
    ) -> Result<Self> {
        let port = free_port()?;
        let mut cmd = match tracer {
            Tracer::None => Command::new(fledge),
            Tracer::Heap(out) => {
                let mut c = Command::new("heaptrack");
                c.arg("-o").arg(out).arg(fledge);
                c
            }
            Tracer::Code(out) => {
                let mut c = Command::new("valgrind");
                c.arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}", out.display()))
                    // Symbol names as the linker sees them, each in full on its `fn=` line.
                    .args([
                        "--demangle=no",
                        "--compress-strings=no",
                        "--compress-pos=no",
                    ])
                    .args(["--dump-instr=no", "--dump-line=no"])
                    .arg(fledge);
                c
            }
        };
        cmd.args(["run", "--namespace", ns, "--log-format", "json"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                "info,kube=warn,fledge_controller::controller=debug",
            );
        Self::spawn(cmd, port, log)
    }

    /// Flagger for `ns`, as its chart runs it for the `kubernetes` provider; its control loop
    /// at the analysis interval (so that it sees a new revision as soon as fledge does).
    fn start_flagger(
        flagger: &Path,
        kubeconfig: &Path,
        ns: &str,
        log: &Path,
        interval: &str,
    ) -> Result<Self> {
        let port = free_port()?;
        let mut cmd = Command::new(flagger);
        cmd.arg(format!("-kubeconfig={}", kubeconfig.display()))
            .arg(format!("-namespace={ns}"))
            .arg("-mesh-provider=kubernetes")
            // No metric in these Canaries: nothing is queried.
            .arg("-metrics-server=http://127.0.0.1:9")
            .arg(format!("-port={port}"))
            .arg("-log-level=info")
            .arg("-zap-encoding=json")
            .arg(format!("-control-loop-interval={interval}"));
        Self::spawn(cmd, port, log)
    }

    fn spawn(mut cmd: Command, port: u16, log: &Path) -> Result<Self> {
        let program = cmd.get_program().to_string_lossy().to_string();
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let started = Instant::now();
        let started_unix = unix_now();
        // Under heaptrack, the process measured is the program heaptrack's script starts.
        let mut child = child;
        let pid = match program.as_str() {
            "heaptrack" => match traced_pid(child.id(), &traced_name(&cmd)) {
                Ok(pid) => pid,
                Err(e) => {
                    // The script's own children (the program, heaptrack's interpreter) would
                    // outlive it and go on reconciling the bench's Canaries.
                    for pid in descendants(child.id()) {
                        let _ = Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            },
            _ => child.id(),
        };
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let samples = samples.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match read_memory(pid) {
                        Ok(m) => samples
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((Instant::now(), m.rss_kib)),
                        Err(_) => return,
                    }
                    sleep(Duration::from_millis(250));
                }
            })
        };
        let mut c = Controller {
            child,
            program,
            started,
            started_unix,
            pid,
            port,
            log: log.to_path_buf(),
            ticks_per_sec: clock_ticks(),
            samples,
            stop,
            sampler: Some(sampler),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.scrape().is_err() {
            c.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "{} did not serve /metrics on port {port} within 30 s",
                    c.program
                );
            }
            sleep(Duration::from_millis(100));
        }
        Ok(c)
    }

    pub(super) fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.program,
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    pub(super) fn cpu_secs(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        let ticks = measure::parse_cpu_ticks(&stat).context("unreadable /proc/<pid>/stat")?;
        Ok(ticks as f64 / self.ticks_per_sec)
    }

    pub(super) fn scrape(&self) -> Result<Vec<Sample>> {
        Ok(measure::parse_prometheus(&http_get(self.port, "/metrics")?))
    }

    /// Highest sampled RSS within `[from, to]`.
    pub(super) fn peak_rss(&self, from: Instant, to: Instant) -> u64 {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0)
    }

    pub(super) fn snapshot(&self) -> Result<Snapshot> {
        let metrics = self.scrape()?;
        Ok(Snapshot {
            at: Instant::now(),
            unix: unix_now(),
            cpu: self.cpu_secs()?,
            memory: read_memory(self.pid)?,
            requests: measure::by_label(&metrics, "fledge_kube_requests_total", "verb"),
            reconciles: measure::total(&metrics, "fledge_reconcile_duration_seconds_count"),
            lateness: Histogram::from_samples(&metrics, "fledge_step_lateness_seconds"),
        })
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub(super) fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .status();
            // heaptrack and callgrind write their data after the program has ended.
            let grace = match self.program.as_str() {
                "heaptrack" | "valgrind" => Duration::from_secs(300),
                _ => Duration::from_secs(10),
            };
            let deadline = Instant::now() + grace;
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                sleep(Duration::from_millis(100));
            }
            if self.child.try_wait().ok().flatten().is_none() && self.pid != self.child.id() {
                // Under heaptrack the child is its script: the program too.
                let _ = Command::new("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .status();
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.sampler.take() {
            let _ = s.join();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The name (`/proc/PID/comm`: the file name, cut to 15 bytes) of the program heaptrack runs
/// in `cmd` (`heaptrack -o OUT PROGRAM ARGS…`).
fn traced_name(cmd: &Command) -> String {
    let program = cmd
        .get_args()
        .nth(2)
        .map(Path::new)
        .and_then(Path::file_name);
    let name = program.map_or("fledge".into(), |n| n.to_string_lossy().into_owned());
    name.bytes().take(15).map(char::from).collect()
}

/// The pids of every process started under `parent`, children before theirs.
fn descendants(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![parent];
    while let Some(p) = queue.pop() {
        let children =
            std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
        for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            found.push(c);
            queue.push(c);
        }
    }
    found
}

/// The pid of the process named `name` among the descendants of `parent`, waiting up to 10 s
/// for it to start.
fn traced_pid(parent: u32, name: &str) -> Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let named = |c: &u32| {
            let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
            comm.trim() == name
        };
        if let Some(pid) = descendants(parent).into_iter().find(named) {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            bail!("no process {name} started under pid {parent} within 10 s");
        }
        sleep(Duration::from_millis(50));
    }
}

/// What fledge runs under in a benchmark.
enum Tracer {
    None,
    /// heaptrack, writing its data beside this path (it adds a compression suffix).
    Heap(PathBuf),
    /// valgrind's callgrind, writing its output to this path.
    Code(PathBuf),
}

/// Writes the functions callgrind saw run (its output at `out`) to `build/code-order.txt`.
fn write_code_order(out: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    let run = crate::code_order::functions_run(&text);
    if run.is_empty() {
        bail!("callgrind saw no function run");
    }
    let list = crate::code_order::list_path();
    std::fs::write(&list, crate::code_order::list_text(&run))
        .with_context(|| format!("writing {}", list.display()))?;
    Ok(format!(
        "{} functions ran; written to {} (commit it: the next musl build places them first)",
        run.len(),
        list.display()
    ))
}

/// heaptrack's data file for the path given to `-o` (it adds `.zst` or `.gz`).
fn heaptrack_file(out: &Path) -> Option<PathBuf> {
    let dir = out.parent()?;
    let stem = out.file_name()?.to_string_lossy().to_string();
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with(&format!("{stem}.")))
        })
}

/// The top allocation sites of a heaptrack file by the heap they held at its peak, and
/// heaptrack's totals.
fn heap_report(file: &Path) -> Result<String> {
    let stacks = file.with_extension("peak-stacks.txt");
    let out = Command::new("heaptrack_print")
        .arg("-f")
        .arg(file)
        .args(["--print-peaks", "0", "--print-allocators", "0"])
        .args(["--print-temporary", "0", "--print-leaks", "0"])
        .args(["--flamegraph-cost-type", "peak", "--print-flamegraph"])
        .arg(&stacks)
        .output()
        .context("running heaptrack_print")?;
    if !out.status.success() {
        bail!(
            "heaptrack_print failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let totals: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("peak heap memory consumption") || l.starts_with("peak RSS"))
        .collect();
    let stacks_text = std::fs::read_to_string(&stacks)
        .with_context(|| format!("reading {}", stacks.display()))?;
    let mut rows = vec![
        ["held at the peak", "allocated in", "for fledge's"]
            .map(String::from)
            .to_vec(),
    ];
    for site in measure::heap_sites(&stacks_text).into_iter().take(20) {
        rows.push(vec![
            format!("{:.2} MB", site.peak_bytes as f64 / 1e6),
            site.library,
            site.fledge,
        ]);
    }
    Ok(format!(
        "{}\n{}(every backtrace: {})",
        totals.join("\n"),
        table(&rows),
        stacks.display()
    ))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(super) fn read_memory(pid: u32) -> Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    measure::parse_status(&text).context("unreadable /proc/<pid>/status")
}

/// `getconf CLK_TCK`, 100 when unknown.
pub(super) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A plain HTTP/1.0 GET on loopback; the body of a 200 answer.
pub(super) fn http_get(port: u16, path: &str) -> Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if head.split_whitespace().nth(1) != Some("200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_string())
}

/// A watch of the Canaries or the Deployments in the background ([`ApiWatch`]): every change,
/// as a line in the form the bench parses, with when it came (Unix seconds).
struct LineWatch {
    watch: ApiWatch,
    what: String,
    /// Each Canary's phase in the last of the first `read` lines (see [`Self::phases`]).
    phases: BTreeMap<String, String>,
    read: usize,
}

impl LineWatch {
    fn start(
        k: &Kubectl,
        what: &str,
        collection: String,
        format: fn(&super::watch::Object) -> String,
    ) -> Result<Self> {
        let server = ApiServer::from_kubeconfig(&k.kubeconfig)?;
        let watch = ApiWatch::start(server, collection, format)
            .with_context(|| format!("watching the {what}"))?;
        Ok(LineWatch {
            watch,
            what: what.to_string(),
            phases: BTreeMap::new(),
            read: 0,
        })
    }

    /// Each Canary's phase in the last line the watch gave of it (a [`Self::canary_status`]
    /// watch), and whether the watch still runs. Only the lines that came since the last call
    /// are read, so the watch, which stamps each line as it comes, waits on the lock as little
    /// as possible.
    fn phases(&mut self) -> (&BTreeMap<String, String>, bool) {
        let running = self.watch.running();
        let lines = self.watch.lines();
        for (at, line) in &lines[self.read..] {
            if let Some(s) = measure::parse_status_line(line, *at) {
                self.phases.insert(s.canary, s.phase);
            }
        }
        self.read = lines.len();
        drop(lines);
        (&self.phases, running)
    }

    /// When each target became ready to analyse (all its replicas updated and available).
    fn targets_ready(k: &Kubectl, ns: &str) -> Result<Self> {
        let collection = format!("/apis/apps/v1/namespaces/{ns}/deployments");
        Self::start(k, "deployments", collection, super::watch::deployment_line)
    }

    /// Every change of the Canaries' phase, iterations, weight and failed checks.
    fn canary_status(k: &Kubectl, kind: Kind, ns: &str) -> Result<Self> {
        let collection = format!("/apis/{}/namespaces/{ns}/canaries", kind.api_version());
        Self::start(k, kind.canaries(), collection, super::watch::canary_line)
    }

    /// Stops the watch; its lines. A watch that may have missed changes is said: the figures
    /// taken from it miss them.
    fn finish(self) -> Vec<(f64, String)> {
        let (lines, log) = self.watch.finish();
        if let Some(w) = log.warning(&self.what) {
            eprintln!("    WARNING: {w}");
        }
        if log.closed_early > 0 {
            println!(
                "    the API server closed the watch of the {} {} time(s) before its timeout; \
                 it resumed each time from the last version it had seen, missing nothing",
                self.what, log.closed_early
            );
        }
        for e in &log.errors {
            eprintln!("    the watch of the {}: {e}", self.what);
        }
        lines
    }
}

/// What the controller had done and used at one moment.
pub(super) struct Snapshot {
    at: Instant,
    unix: f64,
    cpu: f64,
    memory: Memory,
    requests: BTreeMap<String, f64>,
    reconciles: f64,
    lateness: Histogram,
}

/// The figures of one phase.
struct Phase {
    name: &'static str,
    wall: f64,
    cpu: f64,
    rss_end_kib: u64,
    rss_peak_kib: u64,
    requests: BTreeMap<String, f64>,
    reconciles: f64,
}

impl Phase {
    fn between(name: &'static str, a: &Snapshot, b: &Snapshot, c: &Controller) -> Phase {
        let mut requests = b.requests.clone();
        for (verb, n) in &mut requests {
            *n -= a.requests.get(verb).copied().unwrap_or(0.0);
        }
        requests.retain(|_, n| *n >= 0.5);
        Phase {
            name,
            wall: (b.at - a.at).as_secs_f64(),
            cpu: b.cpu - a.cpu,
            rss_end_kib: b.memory.rss_kib,
            rss_peak_kib: c.peak_rss(a.at, b.at).max(b.memory.rss_kib),
            requests,
            reconciles: b.reconciles - a.reconciles,
        }
    }

    fn total_requests(&self) -> f64 {
        // `+ 0.0`: the empty sum is -0.0.
        self.requests.values().sum::<f64>() + 0.0
    }

    fn verbs(&self) -> String {
        if self.requests.is_empty() {
            return "none".into();
        }
        self.requests
            .iter()
            .map(|(v, n)| format!("{v} {n:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Everything measured for one N.
struct Report {
    kind: Kind,
    n: usize,
    interval: Duration,
    iterations: u32,
    phases: Vec<Phase>,
    /// Seconds from the first to the last target change of the wave.
    change_spread: f64,
    detected: Option<Summary>,
    first_step: Option<Summary>,
    /// Revision change to the target ready for analysis (the cluster's part).
    ready: Option<Summary>,
    /// Target ready to the first analysis step (the controller's part).
    reaction: Option<Summary>,
    succeeded: Option<Summary>,
    /// Step lateness as the watch on the Canaries saw it.
    lateness: Option<Summary>,
    /// fledge's: as its log says (its own schedule).
    lateness_log: Option<Summary>,
    lateness_hist: Histogram,
    /// The failing wave: the failed check that led to the rollback → `Failed` (all traffic on
    /// the primary).
    rollback: Option<Summary>,
    failed: usize,
    flood: Option<FloodFigures>,
    hwm_kib: u64,
    end_memory: Memory,
    log: PathBuf,
    /// Calls of the `rollout` webhook.
    webhook_calls: u64,
}

fn scale(
    k: &Kubectl,
    cluster: &ClusterInfo,
    subject: &Subject,
    n: usize,
    interval: Duration,
    args: &ScaleArgs,
) -> Result<Report> {
    let kind = subject.kind;
    let ns = format!("{}-bench-{n}", kind.name());
    let timeout = Duration::from_secs(args.timeout);
    let dir = target_dir().join("bench").join(match kind {
        Kind::Fledge => format!("scale-{n}"),
        Kind::Flagger => format!("scale-flagger-{n}"),
    });
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "==> {} scale benchmark: {n} canaries in namespace {ns}, interval {}, {} iterations",
        kind.name(),
        args.interval,
        args.iterations
    );
    remove_namespace(k, &ns, timeout)?;
    k.run(&["create", "namespace", &ns])?;
    let webhook = Webhook::start()?;

    eprintln!("==> creating {n} Deployments and {n} Canaries");
    let mut docs = Vec::with_capacity(2 * n);
    let url = format!("http://127.0.0.1:{}/check", webhook.port);
    let canary =
        |name: &str| canary_of(kind, &ns, name, &args.interval, args.iterations, Some(&url));
    for i in 0..n {
        docs.push(deployment(&ns, &name(i)));
        docs.push(canary(&name(i)));
    }
    let bystanders = match args.flood_events_only {
        true => Vec::new(),
        false => bystanders(args.flood),
    };
    for b in &bystanders {
        docs.push(deployment(&ns, b));
        docs.push(canary(b));
    }
    let t = Instant::now();
    k.apply_parallel(&docs, MANAGER, &[])?;
    eprintln!("    applied in {:.1} s", t.elapsed().as_secs_f64());
    wait_for("targets available", timeout, None, || {
        let avail = k.table("deployments", &ns, "{.status.availableReplicas}")?;
        let ready = avail.values().filter(|v| v.as_str() == "1").count();
        let all = n + bystanders.len();
        Ok((ready >= all, format!("{ready}/{all} available")))
    })?;

    eprintln!(
        "==> starting {} (log: {})",
        subject.binary.display(),
        dir.display()
    );
    let log = dir.join(format!("{}.log", kind.name()));
    let tracer = match kind {
        Kind::Fledge if args.heap_profile => Tracer::Heap(dir.join("fledge.heaptrack")),
        Kind::Fledge if args.code_profile => Tracer::Code(dir.join("fledge.callgrind")),
        _ => Tracer::None,
    };
    match &tracer {
        Tracer::Heap(out) => {
            if Command::new("heaptrack").arg("--version").output().is_err() {
                crate::image::apt_install(&["heaptrack"], "the heap profile of --heap-profile")?;
            }
            if let Some(old) = heaptrack_file(out) {
                std::fs::remove_file(&old)
                    .with_context(|| format!("removing {}", old.display()))?;
            }
        }
        Tracer::Code(out) => {
            if Command::new("valgrind").arg("--version").output().is_err() {
                crate::image::apt_install(&["valgrind"], "the code profile of --code-profile")?;
            }
            if out.exists() {
                std::fs::remove_file(out).with_context(|| format!("removing {}", out.display()))?;
            }
        }
        Tracer::None => {}
    }
    let mut ctrl = match kind {
        Kind::Fledge => {
            Controller::start_traced(&subject.binary, &subject.kubeconfig, &ns, &log, &tracer)?
        }
        Kind::Flagger => Controller::start_flagger(
            &subject.binary,
            &subject.kubeconfig,
            &ns,
            &log,
            &args.interval,
        )?,
    };
    let result = measure_phases(
        k,
        &mut ctrl,
        subject,
        cluster,
        &ns,
        n,
        &bystanders,
        &webhook,
        interval,
        args,
        timeout,
    )
    .map(|mut r| {
        r.log = log;
        let (passed, failed) = webhook.calls();
        r.webhook_calls = passed + failed;
        // Printed now, so that the figures survive a failed clean-up.
        println!("{}", r.render());
        r
    });
    let cleanup = if args.keep {
        eprintln!("==> leaving namespace {ns} (--keep)");
        Ok(())
    } else {
        clean_up_of(kind, k, &mut ctrl, &ns, timeout)
    };
    ctrl.stop();
    if let Tracer::Code(out) = &tracer {
        match write_code_order(out) {
            Ok(said) => println!("\ncode profile ({}): {said}", out.display()),
            Err(e) => eprintln!("code profile {}: {e:#}", out.display()),
        }
    }
    if let Tracer::Heap(out) = &tracer {
        match heaptrack_file(out) {
            Some(file) => match heap_report(&file) {
                Ok(report) => println!(
                    "\nheap profile ({}): top allocation sites by peak consumption\n{report}",
                    file.display()
                ),
                Err(e) => eprintln!("heap profile {}: {e:#}", file.display()),
            },
            None => eprintln!("heaptrack wrote no data file beside {}", out.display()),
        }
    }
    let report = result?;
    cleanup?;
    Ok(report)
}

/// The Canaries a flood of `rate` writes a second patches (none without a flood).
fn bystanders(rate: u32) -> Vec<String> {
    match rate {
        0 => Vec::new(),
        _ => (0..super::flood::PATCH_WRITERS)
            .map(|i| format!("bystander-{i:02}"))
            .collect(),
    }
}

#[allow(clippy::too_many_arguments)]
fn measure_phases(
    k: &Kubectl,
    ctrl: &mut Controller,
    subject: &Subject,
    cluster: &ClusterInfo,
    ns: &str,
    n: usize,
    bystanders: &[String],
    hook: &Webhook,
    interval: Duration,
    args: &ScaleArgs,
    timeout: Duration,
) -> Result<Report> {
    let kind = subject.kind;
    let phases_of = |k: &Kubectl| k.table(kind.canaries(), ns, "{.status.phase}");
    let start = Snapshot {
        at: ctrl.started,
        unix: ctrl.started_unix,
        cpu: 0.0,
        memory: Memory::default(),
        requests: BTreeMap::new(),
        reconciles: 0.0,
        lateness: Histogram::default(),
    };
    wait_for(
        "every Canary Initialized",
        timeout,
        Some(&mut *ctrl),
        || {
            let p = phases_of(k)?;
            let done = p.values().filter(|v| *v == "Initialized").count();
            Ok((done >= n + bystanders.len(), counts(&p)))
        },
    )?;
    let initialized = ctrl.snapshot()?;

    let settle = interval + Duration::from_secs(2);
    let window = interval * args.steady_intervals.max(1);
    eprintln!(
        "==> steady state: settling for {:.0} s, then measuring for {:.0} s",
        settle.as_secs_f64(),
        window.as_secs_f64()
    );
    sleep(settle);
    let steady_from = ctrl.snapshot()?;
    sleep(window);
    ctrl.check_alive()?;
    let steady_to = ctrl.snapshot()?;

    eprintln!("==> wave: a new image for all {n} targets");
    let wave_from = ctrl.snapshot()?;
    let ready_watch = LineWatch::targets_ready(k, ns)?;
    let mut status_watch = LineWatch::canary_status(k, kind, ns)?;
    let flood = match args.flood {
        0 => None,
        rate => {
            eprintln!("    with a flood of {rate} writes/s to unrelated objects");
            Some(Flood::start(&k.kubeconfig, ns, bystanders, rate)?)
        }
    };
    let t0 = unix_now();
    let docs: Vec<String> = (0..n).map(|i| new_image(ns, &name(i))).collect();
    let lines = k.apply_parallel(&docs, WAVE_MANAGER, &["--force-conflicts"])?;
    let changed: BTreeMap<String, f64> = lines
        .iter()
        .filter_map(|(line, at)| {
            let obj = line.split_whitespace().next()?;
            let (_, name) = obj.split_once('/')?;
            Some((name.to_string(), *at))
        })
        .collect();
    let change_spread = changed.values().fold(0.0_f64, |m, t| m.max(*t)) - t0;
    eprintln!(
        "    {} targets changed in {change_spread:.1} s",
        changed.len()
    );
    let mut failed = 0;
    let mut checks = 0;
    wait_for(
        "every Canary Succeeded (or Failed)",
        timeout,
        Some(&mut *ctrl),
        || {
            let p = phases_seen(&mut status_watch, &mut checks, || phases_of(k))?;
            let done = p
                .values()
                .filter(|v| *v == "Succeeded" || *v == "Failed")
                .count();
            failed = p.values().filter(|v| *v == "Failed").count();
            Ok((done >= n, counts(&p)))
        },
    )?;
    let wave_to = ctrl.snapshot()?;
    let flood = flood.map(Flood::finish);
    let ready: BTreeMap<String, f64> =
        ready_watch
            .finish()
            .iter()
            .fold(BTreeMap::new(), |mut m, (at, line)| {
                if let Some(name) = measure::ready_target(line) {
                    m.entry(name.to_string()).or_insert(*at);
                }
                m
            });
    let seen: Vec<measure::StatusSeen> = status_watch
        .finish()
        .iter()
        .filter_map(|(at, line)| measure::parse_status_line(line, *at))
        .collect();
    let watched = measure::watch_times(&seen);

    // The failing wave: every check fails, so every rollout is rolled back once `threshold`
    // checks have failed. Timed from the webhook's last failed answer before the rollback
    // (outside the controller) to the `Failed` phase the watch sees (all traffic back on the
    // primary).
    eprintln!("==> failing wave: every check fails, and a new image for all {n} targets");
    for i in 0..n {
        hook.choose(&name(i), true);
    }
    let failing_from = ctrl.snapshot()?;
    let mut failing_watch = LineWatch::canary_status(k, kind, ns)?;
    let docs: Vec<String> = (0..n).map(|i| image_of(ns, &name(i), IMAGE_V3)).collect();
    k.apply_parallel(&docs, WAVE_MANAGER, &["--force-conflicts"])?;
    let mut checks = 0;
    wait_for(
        "every Canary of the failing wave Failed",
        timeout,
        Some(&mut *ctrl),
        || {
            let p = phases_seen(&mut failing_watch, &mut checks, || phases_of(k))?;
            let done = p.values().filter(|v| *v == "Failed").count();
            Ok((done >= n, counts(&p)))
        },
    )?;
    let failing_to = ctrl.snapshot()?;
    let failing_seen: Vec<measure::StatusSeen> = failing_watch
        .finish()
        .iter()
        .filter_map(|(at, line)| measure::parse_status_line(line, *at))
        .collect();
    let failed_seen = measure::watch_times(&failing_seen).failed;
    let failures = hook.failures();
    let rollbacks = measure::rollbacks(&failed_seen, &failures);
    let rollback = measure::rollback_times(&rollbacks);
    // Each rollback's two moments, to follow one through the controller's log and the audit log.
    let rows: String = rollbacks
        .iter()
        .map(|(canary, check, at)| format!("{canary}\t{check:.3}\t{at:.3}\n"))
        .collect();
    if let Some(dir) = ctrl.log.parent() {
        let tsv = dir.join("rollbacks.tsv");
        std::fs::write(
            &tsv,
            format!("canary\tlast failed check\tFailed seen\n{rows}"),
        )
        .with_context(|| format!("writing {}", tsv.display()))?;
    }

    // Requests as the API server saw them, by the controller's own user.
    let mut audit: Vec<measure::Audited> = Vec::new();
    // The files as they are now: the API server rotates its log while a large run goes on.
    let audit_logs = cluster::audit_logs(cluster);
    for file in &audit_logs {
        // The rotated file may be gone, or not there yet.
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        audit.extend(
            text.lines()
                .filter_map(measure::parse_audit_line)
                .filter(|a| a.user == kind.user()),
        );
    }
    let audited_from = audit.iter().map(|a| a.at).fold(f64::INFINITY, f64::min);
    if audit.is_empty() || audited_from > ctrl.started_unix + 60.0 {
        bail!(
            "the API server's audit log ({}) does not hold the requests of user {} since the \
             controller started: the control plane runs an older audit policy, or the log \
             rotated past them; restart it (`cargo xtask dataplane down; cargo xtask cluster \
             down; cargo xtask cluster up`) and run the benchmark again",
            audit_logs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            kind.user()
        );
    }

    let since = |map: &BTreeMap<String, f64>| -> Option<Summary> {
        let d: Vec<f64> = map
            .iter()
            .filter_map(|(c, t)| Some(t - changed.get(c)?))
            .collect();
        Summary::of(&d)
    };
    let first_steps: BTreeMap<String, f64> = watched
        .steps
        .iter()
        .filter_map(|(c, t)| Some((c.clone(), *t.first()?)))
        .collect();
    let reaction: Vec<f64> = first_steps
        .iter()
        .filter_map(|(c, t)| Some(t - ready.get(c)?))
        .collect();
    let late: Vec<f64> = watched
        .steps
        .values()
        .flat_map(|t| measure::watch_lateness(t, interval.as_secs_f64()))
        .collect();
    // fledge's own view of its schedule, from its log: a cross-check of the watch.
    let lateness_log = match kind {
        Kind::Fledge => {
            let text = std::fs::read_to_string(&ctrl.log)?;
            // The wave's steps only: the failing wave's come after it.
            let events: Vec<LogEvent> = text
                .lines()
                .filter_map(parse_log_event)
                .filter(|e| e.at <= wave_to.unix)
                .collect();
            let steps = measure::step_times(&events, t0);
            let late: Vec<f64> = steps
                .values()
                .flat_map(|t| measure::lateness(t, interval.as_secs_f64()))
                .collect();
            Summary::of(&late)
        }
        Kind::Flagger => None,
    };
    let phase = |name, a: &Snapshot, b: &Snapshot| {
        let mut p = Phase::between(name, a, b, ctrl);
        p.requests = measure::requests_by_verb(&audit, kind.user(), a.unix, b.unix);
        p
    };

    Ok(Report {
        kind,
        n,
        interval,
        iterations: args.iterations,
        phases: vec![
            phase("initialization", &start, &initialized),
            phase("steady state", &steady_from, &steady_to),
            phase("wave", &wave_from, &wave_to),
            phase("failing wave", &failing_from, &failing_to),
        ],
        rollback: Summary::of(&rollback),
        change_spread,
        detected: since(&watched.detected),
        first_step: since(&first_steps),
        ready: since(&ready),
        reaction: Summary::of(&reaction),
        succeeded: since(&watched.succeeded),
        lateness: Summary::of(&late),
        lateness_log,
        flood,
        lateness_hist: wave_to.lateness.since(&wave_from.lateness),
        failed,
        // The whole run's: the failing wave comes last and may hold the most.
        hwm_kib: failing_to.memory.hwm_kib.max(wave_to.memory.hwm_kib),
        end_memory: wave_to.memory,
        log: PathBuf::new(),
        webhook_calls: 0,
    })
}

/// Deletes the Canaries while the controller still runs (it removes its finalizers), then the
/// namespace.
pub(super) fn clean_up(
    k: &Kubectl,
    ctrl: &mut Controller,
    ns: &str,
    timeout: Duration,
) -> Result<()> {
    clean_up_of(Kind::Fledge, k, ctrl, ns, timeout)
}

/// [`clean_up`] of `kind`'s Canaries (Flagger puts finalizers on its own too).
fn clean_up_of(
    kind: Kind,
    k: &Kubectl,
    ctrl: &mut Controller,
    ns: &str,
    timeout: Duration,
) -> Result<()> {
    eprintln!("==> cleaning up: deleting the Canaries, then namespace {ns}");
    k.run(&["delete", kind.canaries(), "--all", "-n", ns, "--wait=false"])?;
    let gone = wait_for("Canaries finalized", timeout, Some(&mut *ctrl), || {
        let left = k.table(kind.canaries(), ns, "")?.len();
        Ok((left == 0, format!("{left} left")))
    });
    if let Err(e) = gone {
        eprintln!("    {e:#}");
    }
    ctrl.stop();
    remove_namespace(k, ns, timeout)
}

/// Removes `ns` if it exists, first taking fledge's finalizer off any Canary left in it (no
/// controller runs to do so).
pub(super) fn remove_namespace(k: &Kubectl, ns: &str, timeout: Duration) -> Result<()> {
    if k.run(&["get", "namespace", ns, "-o", "name"]).is_err() {
        return Ok(());
    }
    for kind in [Kind::Fledge, Kind::Flagger] {
        // Flagger's CRD may not be installed.
        let Ok(list) = k.run(&["get", kind.canaries(), "-n", ns, "-o", "json"]) else {
            continue;
        };
        let mut list: serde_json::Value = serde_json::from_str(&list)?;
        let mut stuck = 0;
        if let Some(items) = list.get_mut("items").and_then(|i| i.as_array_mut()) {
            for item in items.iter_mut() {
                if let Some(meta) = item.get_mut("metadata").and_then(|m| m.as_object_mut())
                    && meta.remove("finalizers").is_some()
                {
                    stuck += 1;
                }
            }
        }
        if stuck > 0 {
            eprintln!(
                "    removing the finalizer of {stuck} {} left in {ns}",
                kind.canaries()
            );
            k.run_with(&["replace", "-f", "-"], Some(&list.to_string()))?;
        }
    }
    k.run(&["delete", "namespace", ns, "--wait=false"])?;
    wait_for(&format!("namespace {ns} deleted"), timeout, None, || {
        let gone = k.run(&["get", "namespace", ns, "-o", "name"]).is_err();
        Ok((gone, "deleting".into()))
    })
}

impl Report {
    /// The most resident memory seen: the largest sample of `VmRSS` or the kernel's `VmHWM`
    /// (which it updates lazily, so a sample can be above it).
    fn peak_kib(&self) -> u64 {
        self.phases
            .iter()
            .map(|p| p.rss_peak_kib)
            .max()
            .unwrap_or(0)
            .max(self.hwm_kib)
    }

    fn render(&self) -> String {
        let n = self.n as f64;
        let iv = self.interval.as_secs_f64();
        let mut out = format!(
            "\n{} scale benchmark: {} canaries (blue/green, kubernetes provider, a rollout \
             webhook), interval {}, {} iterations\n(API requests: the API server's audit log, \
             by the controller's user; steps: a watch on the Canaries)\n\n",
            self.kind.name(),
            self.n,
            secs(iv),
            self.iterations
        );
        let mut rows = vec![
            [
                "phase",
                "wall",
                "CPU",
                "CPU/wall",
                "RSS end",
                "RSS peak",
                "API requests",
                "req/canary",
                "req/canary/interval",
                "reconciles/canary/interval",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for p in &self.phases {
            let per_interval = |x: f64| x / n / (p.wall / iv);
            rows.push(vec![
                p.name.to_string(),
                secs(p.wall),
                secs(p.cpu),
                format!("{:.1}%", 100.0 * p.cpu / p.wall.max(1e-9)),
                mib(p.rss_end_kib),
                mib(p.rss_peak_kib),
                format!("{:.0}", p.total_requests()),
                format!("{:.2}", p.total_requests() / n),
                format!("{:.3}", per_interval(p.total_requests())),
                match self.kind {
                    Kind::Fledge => format!("{:.2}", per_interval(p.reconciles)),
                    Kind::Flagger => "-".into(),
                },
            ]);
        }
        out.push_str(&table(&rows));
        out.push_str("\nAPI requests by verb:\n");
        for p in &self.phases {
            out.push_str(&format!("  {:<15} {}\n", p.name, p.verbs()));
        }

        out.push_str(&format!(
            "\nwave: {} targets changed within {}; {} Failed; {} webhook calls in all\n",
            self.n,
            secs(self.change_spread),
            self.failed,
            self.webhook_calls
        ));
        if let Some(f) = &self.flood {
            out.push_str(&f.render());
            out.push('\n');
        }
        out.push('\n');
        let mut rows = vec![
            ["", "n", "min", "p50", "p99", "max"]
                .map(String::from)
                .to_vec(),
        ];
        let mut row = |what: &str, s: &Option<Summary>| {
            rows.push(match s {
                Some(s) => vec![
                    what.to_string(),
                    s.count.to_string(),
                    secs(s.min),
                    secs(s.p50),
                    secs(s.p99),
                    secs(s.max),
                ],
                None => vec![
                    what.to_string(),
                    "0".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ],
            });
        };
        row("revision change -> new revision detected", &self.detected);
        row("revision change -> target ready (cluster)", &self.ready);
        row("target ready -> first analysis step", &self.reaction);
        row("revision change -> first analysis step", &self.first_step);
        row("revision change -> Succeeded", &self.succeeded);
        row(
            "failing wave: failed check -> Failed (traffic on primary)",
            &self.rollback,
        );
        row(
            "step lateness: previous step + interval (watch)",
            &self.lateness,
        );
        let h = &self.lateness_hist;
        if self.kind == Kind::Fledge {
            row(
                "step lateness vs its schedule (fledge's log)",
                &self.lateness_log,
            );
            let bound = |q: f64| {
                h.quantile_bound(q)
                    .map_or("-".to_string(), |b| format!("<= {}", secs(b)))
            };
            rows.push(vec![
                "step lateness (fledge_step_lateness_seconds)".into(),
                format!("{:.0}", h.count),
                "-".into(),
                bound(0.5),
                bound(0.99),
                bound(1.0),
            ]);
        }
        out.push_str(&table(&rows));
        if let (Kind::Fledge, Some(mean)) = (self.kind, h.mean()) {
            out.push_str(&format!(
                "(histogram: upper bounds of the buckets; mean {}. fledge schedules a step from \
                 the previous one's whole second, so the watch sees some steps up to 1 s \
                 early)\n",
                secs(mean)
            ));
        }

        let steady = &self.phases[1];
        let steady_rate = steady.total_requests() / n / (steady.wall / iv);
        let worst_late = self.lateness.map_or(0.0, |s| s.max);
        let peak = self
            .phases
            .iter()
            .map(|p| p.rss_peak_kib)
            .max()
            .unwrap_or(0);
        let ok = |b: bool| if b { "met" } else { "MISSED" };
        let end = self.end_memory;
        out.push_str(&format!(
            "\nresident memory at the end: {} = {} anonymous (heap, stacks) + {} file pages (the \
             program's code)\n",
            mib(end.rss_kib),
            mib(end.anon_kib),
            mib(end.file_kib)
        ));
        out.push_str(&format!(
            "\ntargets (stated for N = 1000):\n  resident memory < 64 MiB: peak {} (VmHWM {}) — {}\n  \
             <= 1 API request per canary per interval in steady state: {steady_rate:.3} — {}\n  \
             every step within 2 s of its schedule: max {} — {}\n",
            mib(peak),
            mib(self.hwm_kib),
            ok(self.peak_kib() < 64 * 1024),
            ok(steady_rate <= 1.0),
            secs(worst_late),
            ok(worst_late <= 2.0),
        ));
        out.push_str(&format!("controller log: {}\n", self.log.display()));
        out
    }
}

/// A figure of the side-by-side table: its name, how to read it from a report, and whether it
/// is a time.
type Figure = (&'static str, fn(&Report) -> Option<f64>, bool);

/// fledge and Flagger at each N, side by side, with Flagger's figure over fledge's.
fn side_by_side(reports: &[Report]) -> String {
    let mut rows = vec![
        ["N", "figure", "fledge", "flagger", "flagger / fledge"]
            .map(String::from)
            .to_vec(),
    ];
    let ns: BTreeSet<usize> = reports.iter().map(|r| r.n).collect();
    for n in ns {
        let of = |kind| reports.iter().find(|r| r.n == n && r.kind == kind);
        let (Some(a), Some(b)) = (of(Kind::Fledge), of(Kind::Flagger)) else {
            continue;
        };
        let figures: [Figure; 11] = [
            (
                "resident memory, peak (MiB)",
                |r| Some(r.peak_kib() as f64 / 1024.0),
                false,
            ),
            ("CPU, initialization (s)", |r| Some(r.phases[0].cpu), false),
            ("CPU, wave (s)", |r| Some(r.phases[2].cpu), false),
            (
                "API requests per Canary per interval, steady state",
                |r| {
                    let p = &r.phases[1];
                    Some(p.total_requests() / r.n as f64 / (p.wall / r.interval.as_secs_f64()))
                },
                false,
            ),
            (
                "API requests, wave",
                |r| Some(r.phases[2].total_requests()),
                false,
            ),
            (
                "revision change -> first step, p50 (s)",
                |r| r.first_step.map(|s| s.p50),
                true,
            ),
            (
                "revision change -> Succeeded, p50 (s)",
                |r| r.succeeded.map(|s| s.p50),
                true,
            ),
            ("step lateness p99 (s)", |r| r.lateness.map(|s| s.p99), true),
            ("step lateness max (s)", |r| r.lateness.map(|s| s.max), true),
            (
                "failed check -> traffic on primary, p50 (s)",
                |r| r.rollback.map(|s| s.p50),
                true,
            ),
            (
                "failed check -> traffic on primary, p99 (s)",
                |r| r.rollback.map(|s| s.p99),
                true,
            ),
        ];
        for (what, f, time) in figures {
            let show = |x: Option<f64>| match x {
                Some(v) if time => secs(v),
                Some(v) => format!("{v:.3}"),
                None => "-".into(),
            };
            let ratio = match (f(a), f(b)) {
                (Some(x), Some(y)) if x.abs() > 1e-9 => format!("{:.2}", y / x),
                _ => "-".into(),
            };
            rows.push(vec![
                n.to_string(),
                what.into(),
                show(f(a)),
                show(f(b)),
                ratio,
            ]);
        }
    }
    format!("\nfledge and Flagger side by side\n\n{}", table(&rows))
}

/// One line per N.
fn summary(reports: &[Report]) -> String {
    let mut rows = vec![
        [
            "N",
            "RSS peak",
            "CPU init",
            "CPU steady/interval",
            "CPU wave",
            "steady req/canary/interval",
            "first step p50",
            "first step p99",
            "lateness p50",
            "lateness p99",
            "lateness max",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in reports {
        let iv = r.interval.as_secs_f64();
        let steady = &r.phases[1];
        let s = |x: Option<Summary>, f: fn(&Summary) -> f64| x.map_or("-".into(), |s| secs(f(&s)));
        rows.push(vec![
            r.n.to_string(),
            mib(r.peak_kib()),
            secs(r.phases[0].cpu),
            secs(steady.cpu / (steady.wall / iv)),
            secs(r.phases[2].cpu),
            format!(
                "{:.3}",
                steady.total_requests() / r.n as f64 / (steady.wall / iv)
            ),
            s(r.first_step, |s| s.p50),
            s(r.first_step, |s| s.p99),
            s(r.lateness_log, |s| s.p50),
            s(r.lateness_log, |s| s.p99),
            s(r.lateness_log, |s| s.max),
        ]);
    }
    format!("\nsummary\n\n{}", table(&rows))
}
