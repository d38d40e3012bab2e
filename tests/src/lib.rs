//! The end-to-end harness: the local control plane (started once per run), a namespace per
//! test, the CRDs from `config/crd/`, `fledge run` as its own process, and small local HTTP
//! servers standing in for webhooks. Everything listens on loopback.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod browser;
pub mod cgroup;
pub mod dataplane;
pub mod demo;
pub mod flagger;
pub mod git;
pub mod incluster;
pub mod influx;
pub mod knative;
pub mod loadgen;
pub mod plugin;
pub mod skipper;
pub mod statefulset;
pub mod toxic;
pub mod victoria;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fledge_api::{Canary, CanaryPhase, CanaryStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

struct Prepared {
    kubeconfig: PathBuf,
    fledge: PathBuf,
}

static PREPARED: OnceLock<Result<Prepared, String>> = OnceLock::new();

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn tail(s: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(s);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Set by a caller that has just brought the control plane and the data plane up itself
/// (`cargo xtask demo`): the harness then finds them where `up` recorded them instead of running
/// `cargo xtask cluster up` and `dataplane up` again (some seconds each).
pub const PLANES_UP_ENV: &str = "FLEDGE_E2E_PLANES_UP";

/// Whether [`PLANES_UP_ENV`] is set.
pub fn planes_up() -> bool {
    std::env::var_os(PLANES_UP_ENV).is_some_and(|v| v == "1")
}

/// Starts the local control plane (once per run) and builds `fledge`. Fails the test with what
/// is missing and how to get it, never skips.
fn prepare() -> &'static Prepared {
    let res = PREPARED.get_or_init(|| {
        if !planes_up() {
            let up = cargo()
                .args(["run", "--quiet", "-p", "xtask", "--", "cluster", "up"])
                .output()
                .map_err(|e| format!("cannot run `cargo xtask cluster up`: {e}"))?;
            if !up.status.success() {
                return Err(format!(
                    "the local control plane did not start (`cargo xtask cluster up` failed; \
                     it needs Go on PATH to build etcd, Kubernetes and kwok once):\n{}",
                    tail(&up.stderr, 40)
                ));
            }
        }
        let fledge = build_binary("fledge-controller", "fledge")?;
        Ok(Prepared {
            kubeconfig: root().join("target/cluster/kubeconfig"),
            fledge,
        })
    });
    match res {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// The administrator's kubeconfig of the local control plane.
pub fn admin_kubeconfig() -> PathBuf {
    prepare().kubeconfig.clone()
}

/// The local control plane's audit records so far (its audit policy: each list when it
/// completes, each watch when it starts, and each read or write of a Canary, Deployment or
/// Service), one JSON object each.
pub fn audit_records() -> Vec<serde_json::Value> {
    let dir = prepare()
        .kubeconfig
        .parent()
        .expect("the kubeconfig is in the cluster's directory")
        .to_path_buf();
    read_audit_log(&dir.join("run"))
}

/// Which files hold the API server's audit log, from the code that runs the cluster.
#[path = "../../xtask/src/cluster/audit.rs"]
mod audit;

/// The records of the audit log in the cluster's `run` directory, of the file the API server
/// writes and of those it rotated out (`audit-<time>.log` beside it), oldest first.
fn read_audit_log(run: &Path) -> Vec<serde_json::Value> {
    audit::audit_log_files(run)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<serde_json::Value>>()
        })
        .collect()
}

/// A client of the local control plane.
pub async fn client() -> Client {
    client_of(&prepare().kubeconfig).await
}

/// A client from a kubeconfig file.
async fn client_of(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("read {}: {e}", kubeconfig.display()));
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig of the local control plane");
    Client::try_from(cfg).expect("client")
}

static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Installs the CRDs from `config/crd/` (once per run) and waits until they are served.
pub async fn install_crds(client: &Client) {
    CRDS.get_or_init(|| apply_crds(client)).await;
}

/// Another control plane of its own (its own etcd, API server, certificates and ports) in
/// `target/clusters/<name>`, as a rebuilt cluster is: it knows nothing of the first one.
/// Stopped and wiped when dropped.
pub struct OtherCluster {
    dir: PathBuf,
    /// Its administrator's kubeconfig.
    pub kubeconfig: PathBuf,
}

impl OtherCluster {
    /// Starts it (`cargo xtask cluster up --dir …`), from the binaries the first one built.
    pub fn start(name: &str) -> anyhow::Result<OtherCluster> {
        let dir = root().join("target/clusters").join(name);
        let dir_arg = dir.to_string_lossy().to_string();
        let up = cargo()
            .args(["run", "--quiet", "-p", "xtask", "--", "cluster", "up"])
            .args(["--dir", &dir_arg])
            .output()
            .context("run `cargo xtask cluster up --dir`")?;
        let cluster = OtherCluster {
            kubeconfig: dir.join("kubeconfig"),
            dir,
        };
        if !up.status.success() {
            bail!(
                "another control plane did not start in {dir_arg}:\n{}",
                tail(&up.stderr, 40)
            );
        }
        Ok(cluster)
    }

    /// A client of it.
    pub async fn client(&self) -> Client {
        client_of(&self.kubeconfig).await
    }

    /// The API server's audit records so far (each list when it completes, each watch when it
    /// starts: the cluster's audit policy), one JSON object each.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        read_audit_log(&self.dir.join("run"))
    }

    /// Of `records`, the lists and watches in `namespace`, counted by verb and resource
    /// (`list canaries`, `watch deployments`).
    pub fn lists_and_watches_in(
        records: &[serde_json::Value],
        namespace: &str,
    ) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for r in records {
            let object = &r["objectRef"];
            if object["namespace"] != namespace {
                continue;
            }
            let (Some(verb), Some(resource)) = (r["verb"].as_str(), object["resource"].as_str())
            else {
                continue;
            };
            *counts.entry(format!("{verb} {resource}")).or_insert(0) += 1;
        }
        counts
    }

    /// Kills its etcd and API server (SIGKILL, no goodbye), then starts the control plane
    /// again on the same ports and data (`cargo xtask cluster up --dir …` restarts every
    /// component when some are gone).
    pub fn crash_and_restart(&self) -> anyhow::Result<()> {
        for component in ["kube-apiserver", "etcd"] {
            let record =
                std::fs::read_to_string(self.dir.join("run").join(format!("{component}.pid")))?;
            let pid = record
                .lines()
                .find_map(|l| l.strip_prefix("pid="))
                .context("a pid in the record")?
                .trim()
                .to_string();
            let killed = Command::new("kill").args(["-9", &pid]).status()?;
            if !killed.success() {
                bail!("kill -9 {pid} ({component}) failed");
            }
        }
        let up = cargo()
            .args(["run", "--quiet", "-p", "xtask", "--", "cluster", "up"])
            .args(["--dir", &self.dir.to_string_lossy()])
            .output()
            .context("run `cargo xtask cluster up --dir`")?;
        if !up.status.success() {
            bail!(
                "the control plane did not start again:\n{}",
                tail(&up.stderr, 40)
            );
        }
        Ok(())
    }
}

impl Drop for OtherCluster {
    fn drop(&mut self) {
        let _ = cargo()
            .args([
                "run", "--quiet", "-p", "xtask", "--", "cluster", "down", "--wipe",
            ])
            .args(["--dir", &self.dir.to_string_lossy()])
            .output();
    }
}

/// Applies the CRDs from `config/crd/` and waits until they are served.
async fn apply_crds(client: &Client) {
    {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        for file in [
            "canaries.yaml",
            "metrictemplates.yaml",
            "alertproviders.yaml",
        ] {
            let text = std::fs::read_to_string(root().join("config/crd").join(file))
                .expect("read config/crd");
            let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("CRD YAML");
            let name = crd.name_any();
            api.patch(
                &name,
                &PatchParams::apply("fledge-e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .expect("apply CRD");
        }
        let canaries: Api<Canary> = Api::all(client.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        while canaries
            .list(&ListParams::default().limit(1))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the Canary CRD was not served in 30s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Builds binary `bin` of `package` as `cargo build` does (debug profile, the workspace's
/// target directory) and says where it is; the error carries cargo's last lines.
pub fn build_binary(package: &str, bin: &str) -> Result<PathBuf, String> {
    let build = cargo()
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .output()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !build.status.success() {
        return Err(format!("cannot build {bin}:\n{}", tail(&build.stderr, 40)));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    Ok(target.join("debug").join(bin))
}

/// The `fledge` binary the tests run (built once per run).
pub fn fledge_binary() -> PathBuf {
    prepare().fledge.clone()
}

/// A namespace of its own for one test, deleted at the end.
pub struct TestNs {
    /// The client.
    pub client: Client,
    /// The namespace.
    pub name: String,
    /// Left in place when dropped.
    keep: bool,
    controllers: Mutex<Vec<Child>>,
    metrics_ports: Mutex<Vec<u16>>,
    /// The kubeconfig controllers started here use.
    kubeconfig: PathBuf,
    /// Controller logs are `target/e2e-logs/<logs_as>-<n>.log`.
    logs_as: String,
}

impl TestNs {
    /// Creates `e2e-<prefix>-<n>` and installs the CRDs.
    pub async fn new(prefix: &str) -> TestNs {
        let client = client().await;
        install_crds(&client).await;
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("e2e-{prefix}-{}-{n}", std::process::id() % 100000);
        Self::create_ns(client, name, prepare().kubeconfig.clone(), None).await
    }

    /// The namespace `name` (which may exist on another cluster too) on `cluster`, with the
    /// CRDs installed there.
    pub async fn named_on(cluster: &OtherCluster, name: &str) -> TestNs {
        let client = cluster.client().await;
        apply_crds(&client).await;
        let on = cluster
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string());
        Self::create_ns(client, name.to_string(), cluster.kubeconfig.clone(), on).await
    }

    async fn create_ns(
        client: Client,
        name: String,
        kubeconfig: PathBuf,
        cluster: Option<String>,
    ) -> TestNs {
        let api: Api<Namespace> = Api::all(client.clone());
        api.create(&PostParams::default(), &namespace(&name))
            .await
            .expect("create namespace");
        TestNs::of(client, name, false, kubeconfig, cluster)
    }

    /// Creates the namespace `name` afresh, deleting what a previous run left there first, and
    /// installs the CRDs. Unlike [`TestNs::new`], the namespace is kept when dropped (so that it
    /// can be looked at afterwards); the next `fresh` replaces it.
    pub async fn fresh(name: &str) -> anyhow::Result<TestNs> {
        let client = client().await;
        install_crds(&client).await;
        let api: Api<Namespace> = Api::all(client.clone());
        if api.get_opt(name).await?.is_some() {
            // No controller runs for it any more: the Canaries' finalizers would hold the
            // namespace in Terminating for ever.
            let canaries: Api<Canary> = Api::namespaced(client.clone(), name);
            for c in canaries.list(&ListParams::default()).await?.items {
                canaries
                    .patch(
                        &c.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
                    )
                    .await?;
            }
            let _ = api.delete(name, &DeleteParams::default()).await;
            eventually(
                Duration::from_secs(120),
                &format!("namespace {name} of a previous run to be deleted"),
                || async { matches!(api.get_opt(name).await, Ok(None)) },
            )
            .await?;
        }
        api.create(&PostParams::default(), &namespace(name))
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(TestNs::of(
            client,
            name.to_string(),
            true,
            prepare().kubeconfig.clone(),
            None,
        ))
    }

    /// `cluster`: the other cluster's name, when not the local control plane's.
    fn of(
        client: Client,
        name: String,
        keep: bool,
        kubeconfig: PathBuf,
        cluster: Option<String>,
    ) -> TestNs {
        TestNs {
            logs_as: match cluster {
                Some(c) => format!("{name}-on-{c}"),
                None => name.clone(),
            },
            client,
            name,
            keep,
            controllers: Mutex::new(Vec::new()),
            metrics_ports: Mutex::new(Vec::new()),
            kubeconfig,
        }
    }

    /// An API in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Starts `fledge run` for this namespace with extra flags; its log goes to
    /// `target/e2e-logs/<namespace>-<n>.log`. Returns an index for [`TestNs::kill_controller`].
    pub fn start_controller(&self, extra: &[&str]) -> usize {
        self.start_controller_as(&self.kubeconfig.clone(), extra)
    }

    /// Starts `fledge run` for this namespace with another identity: the credentials of
    /// `kubeconfig` instead of the administrator's.
    pub fn start_controller_as(&self, kubeconfig: &Path, extra: &[&str]) -> usize {
        let p = prepare();
        let logs = root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs).expect("create target/e2e-logs");
        let mut list = self.controllers.lock().unwrap();
        let idx = list.len();
        let log = std::fs::File::create(self.controller_log_path(idx)).expect("create log");
        let port = free_port();
        let child = Command::new(&p.fledge)
            .arg("run")
            .args(["--namespace", &self.name])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("FLEDGE_E2E_CONTROLLER_LOG")
                    .unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start fledge run");
        list.push(child);
        self.metrics_ports.lock().unwrap().push(port);
        idx
    }

    /// Where a controller started by [`TestNs::start_controller`] serves `/metrics`.
    pub fn controller_metrics(&self, idx: usize) -> SocketAddr {
        let port = self.metrics_ports.lock().unwrap()[idx];
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// How many reconciles the controller `idx` has finished (its
    /// `fledge_reconcile_duration_seconds_count`), or `None` while it does not answer.
    pub async fn reconciles(&self, idx: usize) -> Option<u64> {
        let url = format!("http://{}/metrics", self.controller_metrics(idx));
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("fledge_reconcile_duration_seconds_count "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }

    /// Waits until the controller `idx` has finished `n` more reconciles than now: the positive
    /// sign that it is still working, before a test asserts that something did *not* happen
    /// (a wait that only sleeps would also pass with a stalled controller).
    pub async fn wait_reconciles(&self, idx: usize, n: u64, timeout: Duration) {
        let start = eventually_some(timeout, "the controller's /metrics", || {
            self.reconciles(idx)
        })
        .await;
        eventually(
            timeout,
            &format!("{n} more reconciles by controller {idx} (from {start})"),
            || async { self.reconciles(idx).await.is_some_and(|c| c >= start + n) },
        )
        .await
        .unwrap();
    }

    /// Kills a controller started by [`TestNs::start_controller`] (SIGKILL: no cleanup).
    pub fn kill_controller(&self, idx: usize) {
        let mut list = self.controllers.lock().unwrap();
        if let Some(c) = list.get_mut(idx) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id of the controller `idx`.
    pub fn controller_pid(&self, idx: usize) -> u32 {
        self.controllers.lock().unwrap()[idx].id()
    }

    /// How the controller `idx` ended, or `None` while it runs.
    pub fn controller_exit(&self, idx: usize) -> Option<std::process::ExitStatus> {
        self.controllers.lock().unwrap()[idx]
            .try_wait()
            .ok()
            .flatten()
    }

    /// Where the log of a controller started by [`TestNs::start_controller`] is.
    pub fn controller_log_path(&self, idx: usize) -> PathBuf {
        root()
            .join("target/e2e-logs")
            .join(format!("{}-{idx}.log", self.logs_as))
    }

    /// The log of a controller, for assertions and failure messages.
    pub fn controller_log(&self, idx: usize) -> String {
        std::fs::read_to_string(self.controller_log_path(idx)).unwrap_or_default()
    }

    /// The last `lines` lines of the log of a controller.
    fn controller_log_tail(&self, idx: usize, lines: usize) -> String {
        let log = self.controller_log(idx);
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Creates an object from JSON in this namespace.
    pub async fn create<K>(&self, value: serde_json::Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        let obj: K = serde_json::from_value(value).expect("object JSON");
        self.api::<K>()
            .create(&PostParams::default(), &obj)
            .await
            .expect("create object")
    }

    /// Waits until the Canary meets `cond`, or fails with its last status and the Events.
    pub async fn wait_canary(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&Canary) -> bool,
    ) -> Canary {
        let api = self.api::<Canary>();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(c) = api.get(name).await
                && cond(&c)
            {
                return c;
            }
            if Instant::now() > deadline {
                let last = api.get(name).await.ok().and_then(|c| c.status);
                panic!(
                    "timed out after {timeout:?} waiting for Canary {}/{name}: {what}\nlast status: \
                     {last:#?}\nevents:\n{}\ncontroller log tail:\n{}",
                    self.name,
                    self.events(name).await.join("\n"),
                    self.controller_log_tail(0, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for a phase.
    pub async fn wait_phase(&self, name: &str, phase: CanaryPhase, timeout: Duration) -> Canary {
        self.wait_canary(name, timeout, &format!("phase {phase}"), |c| {
            c.status.as_ref().is_some_and(|s| s.phase == phase)
        })
        .await
    }

    /// Creates `count` Deployments named `name(i)` (one replica of `image`) and a Canary of each
    /// (same name, labels `labels(i)`, the `kubernetes` provider, port 9898, `analysis`), eight
    /// at a time.
    pub async fn create_canaries(
        &self,
        count: usize,
        name: impl Fn(usize) -> String,
        labels: impl Fn(usize) -> serde_json::Value,
        image: &str,
        analysis: &serde_json::Value,
    ) {
        let (name, labels) = (&name, &labels);
        futures::stream::iter(0..count)
            .for_each_concurrent(8, |i| async move {
                self.create::<Deployment>(deployment_json(&name(i), image, 1))
                    .await;
                self.create::<Canary>(serde_json::json!({
                    "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
                    "metadata": {"name": name(i), "labels": labels(i)},
                    "spec": {
                        "provider": "kubernetes",
                        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": name(i)},
                        "service": {"port": 9898},
                        "analysis": analysis
                    }
                }))
                .await;
            })
            .await;
    }

    /// The phase of each Canary, by name.
    pub async fn phases(&self) -> Vec<(String, CanaryPhase)> {
        let list = self
            .api::<Canary>()
            .list(&Default::default())
            .await
            .unwrap();
        list.items
            .into_iter()
            .map(|c| {
                let phase = c.status.map(|s| s.phase).unwrap_or_default();
                (c.metadata.name.unwrap_or_default(), phase)
            })
            .collect()
    }

    /// Waits until every Canary of `names` is in `phase`, at most `timeout`, while the
    /// controllers `alive` run. Fails as soon as one of them has Failed (it stays so until its
    /// next revision).
    pub async fn wait_all_in(
        &self,
        names: &std::collections::BTreeSet<String>,
        phase: CanaryPhase,
        alive: &[usize],
        timeout: Duration,
    ) {
        let start = Instant::now();
        loop {
            let now = self.phases().await;
            let done = now
                .iter()
                .filter(|(n, p)| names.contains(n) && *p == phase)
                .count();
            if done == names.len() {
                return;
            }
            for &idx in alive {
                assert!(
                    self.controller_exit(idx).is_none(),
                    "controller {idx} ended ({:?}) with {done} of {} Canaries {phase:?}:\n{}",
                    self.controller_exit(idx),
                    names.len(),
                    self.controller_log(idx)
                );
            }
            let failed: Vec<_> = now
                .iter()
                .filter(|(n, p)| names.contains(n) && *p == CanaryPhase::Failed)
                .collect();
            assert!(failed.is_empty(), "failed: {failed:?}");
            assert!(
                start.elapsed() < timeout,
                "{done} of {} Canaries {phase:?} after {timeout:?}",
                names.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Reads the Canary `name` every `every` until its rollout ends (Succeeded or Failed), at
    /// most `timeout` from `since`; returns its last status and each number of iterations its
    /// status showed while Progressing, in order, without repeats. A failed read is tried again
    /// (the API server may be restarting); at the deadline, fails with the iterations seen, the
    /// last read, the Events and the tail of the first controller's log.
    pub async fn rollout_iterations(
        &self,
        name: &str,
        since: Instant,
        timeout: Duration,
        every: Duration,
    ) -> (CanaryStatus, Vec<i32>) {
        let api = self.api::<Canary>();
        let mut seen: Vec<i32> = Vec::new();
        loop {
            let read = api.get(name).await;
            if let Ok(c) = &read {
                let st = c.status.clone().unwrap_or_default();
                if st.phase == CanaryPhase::Progressing && seen.last() != Some(&st.iterations) {
                    seen.push(st.iterations);
                }
                if matches!(st.phase, CanaryPhase::Succeeded | CanaryPhase::Failed) {
                    return (st, seen);
                }
            }
            if since.elapsed() >= timeout {
                panic!(
                    "the rollout of {name} did not end in {timeout:?}; iterations seen {seen:?}; \
                     last read: {:?}\nevents:\n{}\ncontroller log tail:\n{}",
                    read.map(|c| c.status),
                    self.events(name).await.join("\n"),
                    self.controller_log_tail(0, 30)
                );
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The Events of an object, oldest first, as `Type Reason: message`, once they have
    /// settled: two readings 300 ms apart agree (at most 5 s). The controller sends an Event
    /// beside the status write that decided it, so the last ones may land a moment after the
    /// status shows the phase a test waited for. Each call takes 300 ms at least: a polling
    /// loop reads them with [`TestNs::events_where`].
    pub async fn events(&self, name: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.events_where(name, |_| true).await;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = self.events_where(name, |_| true).await;
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    /// The Events of an object, once each of `reasons` has been said at least once (waiting up
    /// to 30 s for the last of them), then settled as [`TestNs::events`] settles them.
    pub async fn events_once_said(&self, name: &str, reasons: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = self.events_where(name, |_| true).await;
            let said = |r: &&str| events.iter().any(|e| e.contains(&format!(" {r}:")));
            if reasons.iter().all(said) || Instant::now() > deadline {
                return self.events(name).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The Events of an object that `keep` keeps, oldest first, as `Type Reason: message`.
    pub async fn events_where(&self, name: &str, keep: impl Fn(&Event) -> bool) -> Vec<String> {
        let api: Api<Event> = self.api();
        let mut list = api
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        list.retain(|e| keep(e));
        list.sort_by_key(|e| {
            e.event_time
                .as_ref()
                .map(|t| t.0)
                .or(e.first_timestamp.as_ref().map(|t| t.0))
        });
        list.into_iter()
            .map(|e| {
                format!(
                    "{} {}: {}",
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                )
            })
            .collect()
    }

    /// A Deployment in this namespace.
    pub async fn deployment(&self, name: &str) -> Deployment {
        self.api::<Deployment>()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get Deployment {name}: {e}"))
    }

    /// Sets the image of the first container of a Deployment (a strategic merge patch of that
    /// container, as `kubectl set image` does, so that the controller scaling the Deployment
    /// meanwhile cannot make it conflict).
    pub async fn set_image(&self, name: &str, image: &str) {
        let d = self.deployment(name).await;
        let container = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers.first())
            .map(|c| c.name.clone())
            .expect("a Deployment with a container");
        let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": container, "image": image}
        ]}}}});
        self.api::<Deployment>()
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .expect("update image");
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        for c in self.controllers.lock().unwrap().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.keep {
            return;
        }
        // Ask for the namespace's deletion and go on (the runtime may be shutting down, so
        // through the cluster's kubectl rather than the async client); a failure leaves it for
        // `cluster down --wipe`.
        if let Some(dir) = self.kubeconfig.parent() {
            let kubectl = |args: &[&str], input: Option<&[u8]>| {
                let mut cmd = Command::new(dir.join("bin/kubectl"));
                cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
                run_with_input(cmd, input)
            };
            release_canaries(&self.name, kubectl);
            let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"], None);
        }
    }
}

/// Takes fledge's finalizers off the Canaries of `ns`, whose controllers are gone: a finalizer
/// nobody removes keeps the namespace `Terminating` for ever, and the namespace controller
/// retrying it loads the API server for the rest of the run. One list and one replace.
fn release_canaries(ns: &str, kubectl: impl Fn(&[&str], Option<&[u8]>) -> Option<Vec<u8>>) {
    let Some(out) = kubectl(
        &["get", "canaries.fledge.dev", "-n", ns, "-o", "json"],
        None,
    ) else {
        return;
    };
    let Ok(mut list) = serde_json::from_slice::<serde_json::Value>(&out) else {
        return;
    };
    let Some(items) = list["items"].as_array_mut() else {
        return;
    };
    items.retain_mut(|c| {
        let held = c["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if let Some(meta) = c["metadata"].as_object_mut() {
            meta.remove("finalizers");
        }
        held
    });
    if !items.is_empty() {
        let _ = kubectl(&["replace", "-f", "-"], Some(list.to_string().as_bytes()));
    }
}

/// Runs `cmd` with `input` on its standard input; its standard output when it succeeds.
fn run_with_input(mut cmd: Command, input: Option<&[u8]>) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let _ = stdin.write_all(data);
    }
    let out = child.wait_with_output().ok()?;
    out.status.success().then_some(out.stdout)
}

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace JSON")
}

/// The image of the first container of a Deployment.
pub fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A metrics server a test runs: its own directory under `target/e2e-logs/<name>/` (the run's
/// pid and `port`), emptied, with `<name>.log` open for its output.
pub fn server_dir(name: &str, port: u16) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let dir = root()
        .join("target/e2e-logs")
        .join(name)
        .join(format!("{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    Ok((dir, log))
}

/// Waits until `url` answers with a success status: fails with `log`'s text when `child`
/// exits first, and after 30 s.
pub async fn wait_answering(
    child: &mut Child,
    what: &str,
    url: &str,
    log: &Path,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer {url} in 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A local HTTP server that stands in for webhooks: answers every request with a status code
/// that the test can change, and counts the requests and keeps their bodies.
#[derive(Clone)]
pub struct Hook {
    /// Where it listens.
    pub addr: SocketAddr,
    status: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    /// Every request's header lines (`name: value`), for what must not be sent.
    headers: Arc<Mutex<Vec<String>>>,
}

impl Hook {
    /// Starts a server answering `status`.
    pub async fn start(status: u16) -> anyhow::Result<Hook> {
        use http_body_util::{BodyExt, Full};
        use hyper::body::Bytes;
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind webhook server")?;
        let addr = listener.local_addr()?;
        let hook = Hook {
            addr,
            status: Arc::new(AtomicUsize::new(status as usize)),
            bodies: Arc::new(Mutex::new(Vec::new())),
            headers: Arc::new(Mutex::new(Vec::new())),
        };
        let h = hook.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let h = h.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let h = h.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            h.headers
                                .lock()
                                .unwrap()
                                .extend(req.headers().iter().map(|(k, v)| {
                                    format!("{k}: {}", String::from_utf8_lossy(v.as_bytes()))
                                }));
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let json =
                                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                            h.bodies.lock().unwrap().push((path, json));
                            let code = h.status.load(Ordering::Relaxed) as u16;
                            let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = hyper::StatusCode::from_u16(code)
                                .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(hook)
    }

    /// The URL of a path on the server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Changes the status code answered from now on.
    pub fn set_status(&self, status: u16) {
        self.status.store(status as usize, Ordering::Relaxed);
    }

    /// Every header line (`name: value`) of every request received.
    pub fn header_lines(&self) -> Vec<String> {
        self.headers.lock().unwrap().clone()
    }

    /// Every request received: its path and its JSON body (`null` when not JSON).
    pub fn all_calls(&self) -> Vec<(String, serde_json::Value)> {
        self.bodies.lock().unwrap().clone()
    }

    /// Requests received on a path, with their JSON bodies.
    pub fn calls(&self, path: &str) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

/// A chat receiver: a local [`Hook`] and the AlertProvider `chat` of a namespace (type `webhook`,
/// traffic steps included) posting to it at `/chat`. A Canary's analysis alerts through it with
/// `{"name": "chat", "severity": "info", "providerRef": {"name": "chat"}}`.
pub struct Chat {
    hook: Hook,
}

/// A chat alert: its kind, then the values of the metadata fields asked for, in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatAlert {
    /// `metadata.kind` (`newRevision`, `promoted`, `rolledBack`, …).
    pub kind: String,
    /// The other fields of its metadata.
    pub fields: Vec<String>,
}

impl TestNs {
    /// Starts a [`Chat`] receiver and creates its AlertProvider `chat` in this namespace.
    pub async fn chat(&self) -> Chat {
        let hook = Hook::start(200).await.unwrap();
        self.create::<fledge_api::AlertProvider>(serde_json::json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider",
            "metadata": {"name": "chat"},
            "spec": {"type": "webhook", "address": hook.url("/chat"), "trafficSteps": true},
        }))
        .await;
        Chat { hook }
    }
}

impl Chat {
    /// The alerts received, each as its kind and the metadata `fields`, once one of the kind
    /// `last` has come (it may come a moment after the status says the rollout ended; this waits
    /// 15 s at most). An error unless each was sent once: no two alike in kind and `fields`, and
    /// exactly one of each kind of `once`.
    pub async fn alerts_each_once(
        &self,
        last: &str,
        fields: &[&str],
        once: &[&str],
    ) -> Result<Vec<ChatAlert>, String> {
        let _ = eventually(Duration::from_secs(15), "the last alert", || async {
            self.hook.calls("/chat").iter().any(|b| {
                b.pointer("/metadata/kind")
                    .and_then(serde_json::Value::as_str)
                    == Some(last)
            })
        })
        .await;
        let alerts: Vec<ChatAlert> = self
            .hook
            .calls("/chat")
            .iter()
            .map(|b| {
                let m = |k: &str| {
                    b.pointer(&format!("/metadata/{k}"))
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                ChatAlert {
                    kind: m("kind"),
                    fields: fields.iter().map(|f| m(f)).collect(),
                }
            })
            .collect();
        for (i, a) in alerts.iter().enumerate() {
            if alerts[..i].contains(a) {
                return Err(format!("the alert {a:?} was sent twice: {alerts:#?}"));
            }
        }
        for kind in once {
            let n = alerts.iter().filter(|a| a.kind == *kind).count();
            if n != 1 {
                return Err(format!("{n} {kind} alerts: {alerts:#?}"));
            }
        }
        Ok(alerts)
    }
}

/// A Deployment of `replicas` pods with the label `app: <name>` and an image.
pub fn deployment_json(name: &str, image: &str, replicas: i32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image,
                    "ports": [{"name": "http", "containerPort": 9898}]}]}
            }
        }
    })
}

/// Polls `f` until it gives a value, for at most `timeout`; panics naming `what` otherwise.
pub async fn eventually_some<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Fails unless `cond` holds within `timeout`, polling.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("timed out after {timeout:?}: {what}")
}
