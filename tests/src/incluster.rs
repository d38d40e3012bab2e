//! The controller as the chart's Deployment runs it in a cluster, on this machine: the chart
//! rendered by `helm template`, its ServiceAccount and RBAC applied to the local control plane,
//! and each replica a "pod" of its own: the image's own binary run by podman (crun) from the OCI
//! archive `cargo xtask image` builds, with the rendered args, env and securityContext, in a
//! network namespace with an address on a private /24 of its own (bridged to the host), the
//! ServiceAccount's token and the cluster CA at the in-cluster paths,
//! `KUBERNETES_SERVICE_HOST`/`PORT` set and no kubeconfig.
//!
//! The API server listens on the host's 127.0.0.1 only; inside each pod, 127.0.0.1:<its port>
//! reaches it through socat (a TCP listener in the pod's namespace, a Unix socket, a TCP
//! connection from the host's namespace). Everything (containers, socat, namespaces, links) is
//! removed when the [`Pods`] are dropped, also when the test fails.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, Probe};
use serde_json::Value;

use crate::{admin_kubeconfig, root};

/// Where Kubernetes mounts a pod's ServiceAccount token, CA and namespace.
pub const SA_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The helm `cargo xtask charts` builds; `cargo xtask test` sets it.
pub const HELM_ENV: &str = "FLEDGE_HELM";

/// The programs the in-cluster test runs, with the Debian package of each.
const TOOLS: [(&str, &str); 6] = [
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("socat", "socat"),
    ("podman", "podman"),
    ("crun", "crun"),
    ("unshare", "util-linux"),
];

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .any(|d| d.join(cmd).is_file())
}

/// Fails, naming what is missing and how to get it, unless this process can make network
/// namespaces and run podman.
pub fn require_tools() -> Result<()> {
    let missing: Vec<(&str, &str)> = TOOLS.into_iter().filter(|(c, _)| !on_path(c)).collect();
    if !missing.is_empty() {
        let cmds: Vec<&str> = missing.iter().map(|(c, _)| *c).collect();
        let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
        pkgs.dedup();
        bail!(
            "the in-cluster test needs {} on PATH: `cargo xtask test` installs them, or run \
             `apt-get install {}` as root",
            cmds.join(", "),
            pkgs.join(" ")
        );
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .context("running id")?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!(
            "the in-cluster test makes network namespaces (ip netns) and runs podman as root: \
             run it as root"
        );
    }
    Ok(())
}

/// The helm of [`HELM_ENV`].
pub fn helm() -> Result<PathBuf> {
    let Some(helm) = std::env::var_os(HELM_ENV).map(PathBuf::from) else {
        bail!(
            "{HELM_ENV} is not set: `cargo xtask test` sets it to the helm `cargo xtask charts` \
             builds; running this test alone, set it to that binary \
             (~/.cache/fledge/bin/helm-<version>/helm after `cargo xtask charts`)"
        );
    };
    if !helm.is_file() {
        bail!(
            "{HELM_ENV}={} is not a file; run `cargo xtask charts` (it builds helm)",
            helm.display()
        );
    }
    Ok(helm)
}

/// The OCI archive of the controller's image that `cargo xtask image` writes.
pub fn image_archive() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let archive = target
        .join("images")
        .join(format!("fledge-{}.oci.tar", env!("CARGO_PKG_VERSION")));
    if !archive.is_file() {
        bail!(
            "{} is missing: run `cargo xtask image` (cargo xtask test runs it before the \
             end-to-end tests)",
            archive.display()
        );
    }
    Ok(archive)
}

/// `helm template` of `charts/fledge` as release `release` in `namespace`, with `--set` values;
/// the rendered objects.
pub fn render_chart(
    helm: &Path,
    release: &str,
    namespace: &str,
    set: &[String],
) -> Result<Vec<Value>> {
    let mut cmd = Command::new(helm);
    cmd.current_dir(root()).args([
        "template",
        release,
        "charts/fledge",
        "--namespace",
        namespace,
    ]);
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    if !out.status.success() {
        bail!(
            "helm template failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let docs: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout))
        .map_err(|e| anyhow::anyhow!("helm template's output is not YAML: {e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// The rendered object of `kind` (the first).
pub fn find_kind<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .with_context(|| format!("the rendered chart has no {kind}"))
}

/// Expands `$(VAR)` references as the kubelet does in a container's command, args and env
/// values: `$$` is a literal `$`, a reference to a variable not defined is left as written.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&rest[i..i + 2 + end + 1]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// What the kubelet would know of one pod, for the `fieldRef`s of its env.
pub struct PodFacts<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub ip: Ipv4Addr,
    pub node: &'a str,
    pub service_account: &'a str,
}

/// The env of a container as the kubelet resolves it: the service variables first, then the
/// container's `env` in order, each value expanded against what is defined before it; fieldRefs
/// from `pod`. Other sources (Secrets, ConfigMaps, resources) are refused by name.
pub fn resolve_env(
    env: &[EnvVar],
    service_vars: &[(String, String)],
    pod: &PodFacts,
) -> Result<Vec<(String, String)>> {
    let mut vars: BTreeMap<String, String> = service_vars.iter().cloned().collect();
    let mut out: Vec<(String, String)> = service_vars.to_vec();
    for e in env {
        let value = match (&e.value, &e.value_from) {
            (Some(v), None) => expand(v, &vars),
            (None, None) => String::new(),
            (_, Some(from)) => {
                let field = from.field_ref.as_ref().with_context(|| {
                    format!(
                        "env {}: only fieldRef sources are resolved here (a Secret, ConfigMap or \
                         resource source is not)",
                        e.name
                    )
                })?;
                match field.field_path.as_str() {
                    "metadata.name" => pod.name.to_string(),
                    "metadata.namespace" => pod.namespace.to_string(),
                    "status.podIP" => pod.ip.to_string(),
                    "spec.nodeName" => pod.node.to_string(),
                    "spec.serviceAccountName" => pod.service_account.to_string(),
                    other => bail!("env {}: fieldRef {other} is not resolved here", e.name),
                }
            }
        };
        vars.insert(e.name.clone(), value.clone());
        out.retain(|(k, _)| k != &e.name);
        out.push((e.name.clone(), value));
    }
    Ok(out)
}

/// An HTTP probe: path and port number.
#[derive(Clone, Debug)]
pub struct HttpProbe {
    pub path: String,
    pub port: u16,
}

/// The controller's pod template as rendered, read into what a container runtime needs.
#[derive(Clone, Debug)]
pub struct ControllerSpec {
    pub replicas: i32,
    pub service_account: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub liveness: HttpProbe,
    pub readiness: HttpProbe,
    pub user: i64,
    pub group: i64,
    /// The pod's fsGroup, a supplementary group of the container's process.
    pub fs_group: Option<i64>,
    pub read_only_root: bool,
    pub no_new_privileges: bool,
    pub drop_all_capabilities: bool,
    /// Mount paths of `emptyDir` volumes.
    pub empty_dirs: Vec<String>,
    pub memory_limit: Option<String>,
    pub cpu_request: Option<String>,
}

fn http_probe(c: &Container, probe: Option<&Probe>, what: &str) -> Result<HttpProbe> {
    let get = probe
        .and_then(|p| p.http_get.as_ref())
        .with_context(|| format!("the controller has no httpGet {what}"))?;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let port = match &get.port {
        IntOrString::Int(n) => u16::try_from(*n)?,
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .with_context(|| format!("the {what}'s port {name} is not a container port"))?,
    };
    Ok(HttpProbe {
        path: get.path.clone().unwrap_or_else(|| "/".into()),
        port,
    })
}

impl ControllerSpec {
    /// Reads the rendered Deployment (its container named `fledge`).
    pub fn from_deployment(doc: &Value) -> Result<ControllerSpec> {
        let d: Deployment = serde_json::from_value(doc.clone())
            .context("the rendered Deployment does not parse")?;
        let spec = d.spec.context("the Deployment has no spec")?;
        let pod = spec
            .template
            .spec
            .context("the Deployment has no pod spec")?;
        if pod.volumes.iter().flatten().any(|v| v.empty_dir.is_none()) {
            bail!("the controller's pod has a volume other than an emptyDir; not run here");
        }
        let c = pod
            .containers
            .iter()
            .find(|c| c.name == "fledge")
            .context("the Deployment has no container named fledge")?
            .clone();
        let psc = pod.security_context.unwrap_or_default();
        let csc = c.security_context.clone().unwrap_or_default();
        let user = csc
            .run_as_user
            .or(psc.run_as_user)
            .context("the controller sets no runAsUser")?;
        let group = csc.run_as_group.or(psc.run_as_group).unwrap_or(user);
        if csc.run_as_non_root.or(psc.run_as_non_root) == Some(true) && user == 0 {
            bail!("runAsNonRoot with runAsUser 0: the kubelet would refuse to start it");
        }
        let resources = c.resources.clone().unwrap_or_default();
        let empty_dirs = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.clone())
            .collect();
        Ok(ControllerSpec {
            replicas: spec.replicas.unwrap_or(1),
            service_account: pod
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
            image: c.image.clone().context("the container has no image")?,
            command: c.command.clone(),
            args: c.args.clone().unwrap_or_default(),
            env: c.env.clone().unwrap_or_default(),
            liveness: http_probe(&c, c.liveness_probe.as_ref(), "liveness probe")?,
            readiness: http_probe(&c, c.readiness_probe.as_ref(), "readiness probe")?,
            user,
            group,
            fs_group: psc.fs_group,
            read_only_root: csc.read_only_root_filesystem == Some(true),
            no_new_privileges: csc.allow_privilege_escalation == Some(false),
            drop_all_capabilities: csc
                .capabilities
                .as_ref()
                .and_then(|c| c.drop.as_ref())
                .is_some_and(|d| d.iter().any(|x| x == "ALL")),
            empty_dirs,
            memory_limit: resources
                .limits
                .as_ref()
                .and_then(|l| l.get("memory"))
                .map(|q| q.0.clone()),
            cpu_request: resources
                .requests
                .as_ref()
                .and_then(|l| l.get("cpu"))
                .map(|q| q.0.clone()),
        })
    }
}

/// podman's `--memory` for a Kubernetes memory quantity (`256Mi`, `1Gi`, bytes).
pub fn podman_memory(q: &str) -> Result<String> {
    let units = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)];
    for (suffix, mul) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            let n: u64 = n.parse().with_context(|| format!("memory {q}"))?;
            return Ok((n * mul).to_string());
        }
    }
    let n: u64 = q
        .parse()
        .with_context(|| format!("memory {q}: not a quantity read here"))?;
    Ok(n.to_string())
}

/// The cgroup v1 CPU shares the kubelet gives a CPU request (`100m` → 102).
pub fn cpu_shares(q: &str) -> Result<u64> {
    let millis: u64 = match q.strip_suffix('m') {
        Some(m) => m.parse().with_context(|| format!("cpu {q}"))?,
        None => {
            let cores: f64 = q.parse().with_context(|| format!("cpu {q}"))?;
            (cores * 1000.0).round() as u64
        }
    };
    Ok((millis * 1024 / 1000).max(2))
}

/// The API server of the admin kubeconfig: its port on 127.0.0.1 and its CA (PEM).
pub fn api_server() -> Result<(u16, Vec<u8>)> {
    let text = fs::read_to_string(admin_kubeconfig())?;
    let kc: Value = serde_saphyr::from_str(&text).context("the kubeconfig is not YAML")?;
    let cluster = &kc["clusters"][0]["cluster"];
    let server = cluster["server"]
        .as_str()
        .context("the kubeconfig names no server")?;
    let port: u16 = server
        .strip_prefix("https://127.0.0.1:")
        .context("the local API server is expected at https://127.0.0.1:<port>")?
        .trim_end_matches('/')
        .parse()?;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            cluster["certificate-authority-data"]
                .as_str()
                .context("the kubeconfig has no certificate-authority-data")?,
        )
        .context("certificate-authority-data is not base64")?;
    Ok((port, ca))
}

/// How podman is run on this machine, and why so.
#[derive(Clone, Debug)]
pub struct Podman {
    /// Run in a mount namespace of its own without the cgroup v2 hierarchy (see [`Podman::probe`]).
    private_cgroup_view: bool,
    /// `--ulimit` values no higher than this process's hard limits.
    ulimits: Vec<String>,
    /// What had to be adjusted, for the report.
    pub notes: Vec<String>,
}

fn hard_limit(name: &str) -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let hard = line[name.len()..].split_whitespace().nth(1)?;
    hard.parse().ok()
}

impl Podman {
    /// Looks at the machine: cgroups and resource limits.
    ///
    /// - crun refuses a hybrid cgroup layout (v1 controllers, plus a cgroup v2 hierarchy with
    ///   controllers of its own at `/sys/fs/cgroup/unified`): "cgroups in hybrid mode not
    ///   supported, drop all controllers from cgroupv2". podman is then run in a private mount
    ///   namespace (`unshare --mount`) where that v2 mount is unmounted, so crun sees cgroup v1
    ///   only; the machine's mounts are left as they are.
    /// - Without CAP_SYS_RESOURCE, crun cannot raise RLIMIT_NOFILE/NPROC to podman's defaults
    ///   ("setrlimit `RLIMIT_NOFILE`: Operation not permitted"): the limits are set to this
    ///   process's own hard limits (NPROC no higher than kernel.pid_max).
    pub fn probe() -> Podman {
        let mut notes = Vec::new();
        let v2 = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
        let hybrid_with_v2_controllers = !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
            && fs::read_to_string(v2).is_ok_and(|c| !c.trim().is_empty());
        if hybrid_with_v2_controllers {
            notes.push(format!(
                "hybrid cgroups with v2 controllers ({}) at /sys/fs/cgroup/unified, which crun \
                 refuses: podman runs in a private mount namespace without that mount",
                fs::read_to_string(v2).unwrap_or_default().trim()
            ));
        }
        let mut ulimits = Vec::new();
        if let Some(n) = hard_limit("Max open files") {
            ulimits.push(format!("nofile={n}:{n}"));
        }
        let pid_max: Option<u64> = fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if let Some(n) = hard_limit("Max processes") {
            let n = pid_max.map_or(n, |p| n.min(p));
            ulimits.push(format!("nproc={n}:{n}"));
        }
        if !ulimits.is_empty() {
            notes.push(format!(
                "--ulimit {} (podman's defaults exceed this machine's hard limits)",
                ulimits.join(" --ulimit ")
            ));
        }
        Podman {
            private_cgroup_view: hybrid_with_v2_controllers,
            ulimits,
            notes,
        }
    }

    /// A podman command (in the private mount namespace when needed).
    pub fn command(&self) -> Command {
        if self.private_cgroup_view {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("umount /sys/fs/cgroup/unified && exec \"$@\"")
                .args(["podman", "podman"]);
            c
        } else {
            Command::new("podman")
        }
    }

    /// Runs a podman command to completion; its combined output on failure.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running podman")?;
        if !out.status.success() {
            bail!(
                "podman {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Runs a command that must succeed.
fn sh(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn spawn_quiet(cmd: &mut Command, what: &str) -> Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {what}"))
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether something listens on TCP `port` in network namespace `netns` (`None`: the host's).
fn listening(netns: Option<&str>, addr: &str, port: u16) -> bool {
    let filter = format!("sport = :{port}");
    let out = match netns {
        Some(ns) => Command::new("ip")
            .args(["netns", "exec", ns, "ss", "-Hltn", &filter])
            .output(),
        None => Command::new("ss").args(["-Hltn", &filter]).output(),
    };
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{addr}:{port}")))
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

static RUN: AtomicU32 = AtomicU32::new(0);

/// One replica.
pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    pub netns: String,
    pub container: String,
    /// The host's end of its veth pair (on the bridge).
    host_end: String,
    /// Its log (the container's stdout and stderr).
    pub log: PathBuf,
    run: Option<Child>,
    api_forwarder: Option<Child>,
}

impl Pod {
    /// The log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `http://<pod ip>:<port><path>`.
    pub fn url(&self, port: u16, path: &str) -> String {
        format!("http://{}:{port}{path}", self.ip)
    }
}

/// The pods' network (a bridge on the host with the first address of a private /24, a network
/// namespace and a veth pair per pod), the socat forwarders, and the pods. Dropping it removes
/// them all.
pub struct Pods {
    pub podman: Podman,
    /// The host's address on the pods' bridge.
    pub gateway: Ipv4Addr,
    bridge: String,
    dir: PathBuf,
    api_port: u16,
    api_listener: Option<Child>,
    host_forwarders: Vec<Child>,
    pub pods: Vec<Pod>,
}

impl Pods {
    /// The bridge, a free /24 of 10.251.0.0/16, and the host end of the API forwarders
    /// (`<dir>/api.sock` to 127.0.0.1:`api_port`).
    pub fn network(podman: Podman, dir: &Path, api_port: u16) -> Result<Pods> {
        fs::create_dir_all(dir)?;
        let used = Command::new("ip").args(["-4", "-o", "addr"]).output()?;
        let used = String::from_utf8_lossy(&used.stdout).into_owned();
        let n = RUN.fetch_add(1, Ordering::Relaxed);
        let start = (std::process::id() + n * 7) % 200 + 20;
        let third = (0..200)
            .map(|i| (start + i) % 250 + 1)
            .find(|t| !used.contains(&format!("10.251.{t}.")))
            .context("no free /24 in 10.251.0.0/16")?;
        let bridge = format!("flinc{third}");
        let gateway = Ipv4Addr::new(10, 251, third as u8, 1);
        let mut pods = Pods {
            podman,
            gateway,
            bridge: bridge.clone(),
            dir: dir.to_path_buf(),
            api_port,
            api_listener: None,
            host_forwarders: Vec::new(),
            pods: Vec::new(),
        };
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        sh("ip", &["link", "add", &bridge, "type", "bridge"])?;
        sh(
            "ip",
            &["addr", "add", &format!("{gateway}/24"), "dev", &bridge],
        )?;
        sh("ip", &["link", "set", &bridge, "up"])?;
        let sock = dir.join("api.sock");
        let _ = fs::remove_file(&sock);
        pods.api_listener = Some(spawn_quiet(
            Command::new("socat")
                .arg(format!("UNIX-LISTEN:{},fork,unlink-early", sock.display()))
                .arg(format!("TCP:127.0.0.1:{api_port}")),
            "socat (the host end of the API forwarder)",
        )?);
        wait_until("the API forwarder's socket", Duration::from_secs(5), || {
            sock.exists()
        })?;
        Ok(pods)
    }

    /// Makes `127.0.0.1:port` of the host reachable from the pods at the bridge's address.
    pub fn expose_host_port(&mut self, port: u16) -> Result<SocketAddr> {
        let gw = self.gateway.to_string();
        self.host_forwarders.push(spawn_quiet(
            Command::new("socat")
                .arg(format!("TCP-LISTEN:{port},bind={gw},fork,reuseaddr"))
                .arg(format!("TCP:127.0.0.1:{port}")),
            "socat (a host port for the pods)",
        )?);
        wait_until(
            &format!("socat to listen on {gw}:{port}"),
            Duration::from_secs(5),
            || listening(None, &gw, port),
        )?;
        Ok(SocketAddr::from((self.gateway, port)))
    }

    /// The pod network of pod `name`: a namespace with `lo` and `eth0` (the next address of the
    /// /24, the bridge as default route) and 127.0.0.1:<API port> forwarded to the API server.
    pub fn add_pod_network(&mut self, name: &str) -> Result<usize> {
        let idx = self.pods.len();
        let netns = format!("{}-{idx}", self.bridge);
        let host_end = format!("{}h{idx}", self.bridge);
        let pod_end = format!("{}p{idx}", self.bridge);
        let o = self.gateway.octets();
        let ip = Ipv4Addr::new(o[0], o[1], o[2], 10 + idx as u8);
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        sh("ip", &["netns", "add", &netns])?;
        // Registered at once so that a failure below still removes it.
        self.pods.push(Pod {
            name: name.to_string(),
            ip,
            netns: netns.clone(),
            container: format!("{}-{name}", self.bridge),
            host_end: host_end.clone(),
            log: self.dir.join(format!("{name}.log")),
            run: None,
            api_forwarder: None,
        });
        sh(
            "ip",
            &[
                "link", "add", &host_end, "type", "veth", "peer", "name", &pod_end,
            ],
        )?;
        sh("ip", &["link", "set", &host_end, "master", &self.bridge])?;
        sh("ip", &["link", "set", &host_end, "up"])?;
        sh("ip", &["link", "set", &pod_end, "netns", &netns])?;
        let inside = |args: &[&str]| -> Result<()> {
            let mut all = vec!["netns", "exec", &netns, "ip"];
            all.extend_from_slice(args);
            sh("ip", &all)
        };
        inside(&["link", "set", &pod_end, "name", "eth0"])?;
        inside(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        inside(&["link", "set", "eth0", "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&["route", "add", "default", "via", &self.gateway.to_string()])?;
        let sock = self.dir.join("api.sock");
        let port = self.api_port;
        self.pods[idx].api_forwarder = Some(spawn_quiet(
            Command::new("ip")
                .args(["netns", "exec", &netns, "socat"])
                .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"))
                .arg(format!("UNIX-CONNECT:{}", sock.display())),
            "socat (the pod end of the API forwarder)",
        )?);
        wait_until(
            &format!("the API forwarder to listen in {netns}"),
            Duration::from_secs(5),
            || listening(Some(&netns), "127.0.0.1", port),
        )?;
        Ok(idx)
    }

    /// Starts pod `idx`'s container: `podman run` of the image archive in the pod's network
    /// namespace with `flags` (user, env, mounts…) and the container's args, its output to the
    /// pod's log.
    pub fn start(
        &mut self,
        idx: usize,
        archive: &Path,
        flags: &[String],
        args: &[String],
    ) -> Result<()> {
        let pod = &mut self.pods[idx];
        let log = fs::File::create(&pod.log)?;
        let mut cmd = self.podman.command();
        cmd.args(["run", "--rm", "--quiet"])
            .arg(format!("--name={}", pod.container))
            .arg(format!("--hostname={}", pod.name))
            .arg(format!("--network=ns:/run/netns/{}", pod.netns));
        for u in &self.podman.ulimits {
            cmd.arg(format!("--ulimit={u}"));
        }
        cmd.args(flags)
            .arg(format!("oci-archive:{}", archive.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        pod.run = Some(cmd.spawn().context("starting podman run")?);
        Ok(())
    }

    /// Kills pod `idx`'s container (SIGKILL, as a node dying would) and waits for podman.
    pub fn kill_pod(&mut self, idx: usize) -> Result<()> {
        let name = self.pods[idx].container.clone();
        self.podman.run(&["kill", "--signal", "KILL", &name])?;
        if let Some(mut c) = self.pods[idx].run.take() {
            let _ = c.wait();
        }
        Ok(())
    }

    /// What the kernel says of pod `idx`'s main process (its `/proc/<pid>/status` lines
    /// `Uid`, `Gid`, `NoNewPrivs`, `CapEff`…, and whether its root is mounted read-only).
    pub fn process_facts(&self, idx: usize) -> Result<(BTreeMap<String, String>, bool)> {
        let pid = self.podman.run(&[
            "inspect",
            "--format",
            "{{.State.Pid}}",
            &self.pods[idx].container,
        ])?;
        let pid = pid.trim();
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let facts = status
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.split_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
            .collect();
        let mountinfo = fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
        let root_ro = mountinfo.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(4) == Some(&"/") && f.get(5).is_some_and(|o| o.split(',').any(|x| x == "ro"))
        });
        Ok((facts, root_ro))
    }

    /// Whether pod `idx`'s `podman run` has exited, with its status.
    pub fn exited(&mut self, idx: usize) -> Option<std::process::ExitStatus> {
        self.pods[idx]
            .run
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for pod in &mut self.pods {
            if let Some(mut c) = pod.run.take() {
                let _ = self
                    .podman
                    .command()
                    .args(["rm", "--force", "--time", "0", &pod.container])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                kill(&mut c);
            }
            if let Some(mut c) = pod.api_forwarder.take() {
                kill(&mut c);
            }
            // The pair at once (the namespace's teardown would take it too, but later).
            let _ = Command::new("ip")
                .args(["link", "del", &pod.host_end])
                .output();
            let _ = Command::new("ip")
                .args(["netns", "del", &pod.netns])
                .output();
        }
        for c in &mut self.host_forwarders {
            kill(c);
        }
        if let Some(mut c) = self.api_listener.take() {
            kill(&mut c);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        let _ = fs::remove_file(self.dir.join("api.sock"));
    }
}

/// Cluster-scoped objects and the release namespace a test created, deleted when dropped
/// (through the cluster's kubectl: the async runtime may be shutting down).
pub struct Created {
    /// `kind/name` of cluster-scoped objects, and `namespace/name` of namespaces.
    pub objects: Vec<String>,
}

impl Drop for Created {
    fn drop(&mut self) {
        let kubeconfig = admin_kubeconfig();
        let Some(dir) = kubeconfig.parent() else {
            return;
        };
        for o in self.objects.iter().rev() {
            let _ = Command::new(dir.join("bin/kubectl"))
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["delete", o, "--wait=false", "--ignore-not-found"])
                .stdin(Stdio::null())
                .output();
        }
    }
}

/// The sum of a counter family's samples in an OpenMetrics text, by label set.
pub fn counter_samples(metrics: &str, family: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let total = format!("{family}_total");
    for line in metrics.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        if (name == family || name == total)
            && let Ok(v) = value.parse::<f64>()
        {
            *out.entry(labels.to_string()).or_default() += v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_references_as_the_kubelet_does() {
        let v = vars(&[("POD_NAME", "fledge-0"), ("A", "x")]);
        assert_eq!(expand("--identity=$(POD_NAME)", &v), "--identity=fledge-0");
        assert_eq!(expand("$(A)$(A)-$(MISSING)", &v), "xx-$(MISSING)");
        assert_eq!(expand("$$(A) costs $5", &v), "$(A) costs $5");
        assert_eq!(expand("$(unclosed", &v), "$(unclosed");
        assert_eq!(expand("plain", &v), "plain");
    }

    #[test]
    fn resolves_field_refs_and_earlier_variables() {
        let env: Vec<EnvVar> = serde_json::from_value(serde_json::json!([
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "WHO", "value": "$(POD_NAME).$(POD_NAMESPACE) via $(KUBERNETES_SERVICE_HOST)"},
        ]))
        .unwrap();
        let pod = PodFacts {
            name: "fledge-1",
            namespace: "ns",
            ip: Ipv4Addr::new(10, 0, 0, 2),
            node: "node",
            service_account: "fledge",
        };
        let service = vec![(
            "KUBERNETES_SERVICE_HOST".to_string(),
            "127.0.0.1".to_string(),
        )];
        let out = resolve_env(&env, &service, &pod).unwrap();
        assert_eq!(out[1], ("POD_NAME".into(), "fledge-1".into()));
        assert_eq!(out[3], ("WHO".into(), "fledge-1.ns via 127.0.0.1".into()));

        let secret: Vec<EnvVar> = serde_json::from_value(serde_json::json!([
            {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "s", "key": "url"}}}
        ]))
        .unwrap();
        let err = resolve_env(&secret, &[], &pod).unwrap_err().to_string();
        assert!(err.contains("URL"), "{err}");
    }

    #[test]
    fn quantities_become_podman_flags() {
        assert_eq!(podman_memory("256Mi").unwrap(), "268435456");
        assert_eq!(podman_memory("1024").unwrap(), "1024");
        assert!(podman_memory("1.5Gi").is_err());
        assert_eq!(cpu_shares("100m").unwrap(), 102);
        assert_eq!(cpu_shares("1").unwrap(), 1024);
    }

    #[test]
    fn sums_counter_samples() {
        let text = "# TYPE fledge_kube_requests counter\n\
                    fledge_kube_requests_total{verb=\"GET\"} 12\n\
                    fledge_kube_requests_total{verb=\"PATCH\"} 3\n\
                    fledge_other_total 9\n";
        let s = counter_samples(text, "fledge_kube_requests");
        assert_eq!(s.len(), 2);
        assert_eq!(s["verb=\"GET\""], 12.0);
    }
}
