//! Flagger, the reference: built by `cargo xtask flagger` (v1.36.1 from its Go module, cached),
//! its CRDs installed on the local control plane, and the `flagger` binary run out of cluster
//! against `target/cluster/kubeconfig` for one test namespace, stopped when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::{TestNs, admin_kubeconfig, free_port, root};

/// Where `cargo xtask flagger` put Flagger.
#[derive(Clone, Debug)]
pub struct FlaggerBuild {
    /// The `flagger` binary.
    pub binary: PathBuf,
    /// Its CRDs (`artifacts/flagger/crd.yaml` of the module).
    pub crds: PathBuf,
}

static BUILD: OnceLock<Result<FlaggerBuild, String>> = OnceLock::new();

/// Flagger, built once per version by `cargo xtask flagger` (needs Go the first time). Fails
/// the test with what went wrong, never skips.
pub fn build() -> &'static FlaggerBuild {
    let res = BUILD.get_or_init(|| {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root())
            .args(["run", "--quiet", "-p", "xtask", "--", "flagger"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `cargo xtask flagger`: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout.lines();
        match (out.status.success(), lines.next(), lines.next()) {
            (true, Some(binary), Some(crds)) => Ok(FlaggerBuild {
                binary: PathBuf::from(binary),
                crds: PathBuf::from(crds),
            }),
            _ => Err(format!(
                "Flagger is not built (`cargo xtask flagger` failed; it builds Flagger from the Go \
                 module proxy once and needs Go on PATH):\n{}",
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    });
    match res {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// The `flagger.app/v1beta1` API of a kind (`canaries`, `metrictemplates`, `alertproviders`).
pub fn api(client: &Client, namespace: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "flagger.app".into(),
        version: "v1beta1".into(),
        api_version: "flagger.app/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), namespace, &ar)
}

/// Flagger's Canaries of a namespace.
pub fn canaries(client: &Client, namespace: &str) -> Api<DynamicObject> {
    api(client, namespace, "Canary", "canaries")
}

static CRDS: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Installs Flagger's CRDs from its module (once per run) and waits until they are served.
pub async fn install_crds(client: &Client) {
    CRDS.get_or_init(|| async {
        let path = &build().crds;
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        for doc in serde_saphyr::from_multiple::<Value>(&text).expect("Flagger's CRD YAML") {
            if doc.is_null() {
                continue;
            }
            let crd: CustomResourceDefinition =
                serde_json::from_value(doc).expect("a CustomResourceDefinition");
            api.patch(
                &crd.name_any(),
                &PatchParams::apply("fledge-e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("applying Flagger's CRD {}: {e}", crd.name_any()));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while canaries(client, "default")
            .list(&ListParams::default().limit(1))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "Flagger's Canary CRD was not served in 30s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
}

/// A running Flagger, watching one namespace; killed when dropped.
pub struct Flagger {
    child: Option<Child>,
    /// Its HTTP server (`/metrics`, `/healthz`), `127.0.0.1:<port>`.
    pub addr: SocketAddr,
    /// Its log.
    pub log: PathBuf,
}

impl Flagger {
    /// Starts Flagger for `ns` (its CRDs installed first), with the data plane's Prometheus as
    /// its metrics server, `kubernetes` as the provider of Canaries that name none, and `extra`
    /// flags; waits until it answers `/healthz`.
    pub async fn start(ns: &TestNs, extra: &[&str]) -> anyhow::Result<Flagger> {
        install_crds(&ns.client).await;
        let port = free_port();
        let logs = root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{}-flagger.log", ns.name));
        let file = std::fs::File::create(&log)?;
        let prometheus = crate::dataplane::dataplane().prometheus_url.clone();
        let child = Command::new(&build().binary)
            .arg(format!("-kubeconfig={}", admin_kubeconfig().display()))
            .arg(format!("-namespace={}", ns.name))
            .arg("-mesh-provider=kubernetes")
            .arg(format!("-metrics-server={prometheus}"))
            .arg(format!("-port={port}"))
            .arg("-log-level=info")
            .arg("-zap-encoding=console")
            .arg("-control-loop-interval=2s")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .context("starting flagger")?;
        let mut f = Flagger {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = reqwest::get(format!("http://{}/healthz", f.addr))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(f);
            }
            if let Some(c) = f.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!("flagger exited ({status}):\n{}", f.log_tail(30));
            }
            if Instant::now() > deadline {
                bail!(
                    "flagger did not answer /healthz in 30 s:\n{}",
                    f.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops it (SIGKILL: it keeps no state outside the cluster).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until Flagger's Canary `name` of `ns` has `status.phase == phase`.
    pub async fn wait_phase(
        &self,
        ns: &TestNs,
        name: &str,
        phase: &str,
        timeout: Duration,
    ) -> anyhow::Result<DynamicObject> {
        let api = canaries(&ns.client, &ns.name);
        let deadline = Instant::now() + timeout;
        loop {
            let c = api.get(name).await?;
            if c.data.pointer("/status/phase").and_then(Value::as_str) == Some(phase) {
                return Ok(c);
            }
            if Instant::now() > deadline {
                bail!(
                    "Flagger's Canary {}/{name} not {phase} in {timeout:?}: status {}\nflagger \
                     log:\n{}",
                    ns.name,
                    c.data.get("status").cloned().unwrap_or(Value::Null),
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Flagger {
    fn drop(&mut self) {
        self.stop();
    }
}
