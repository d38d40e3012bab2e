//! The cluster's kubectl with the admin kubeconfig, for the few objects the data plane writes.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cluster::ClusterInfo;

/// The field manager of every object the data plane applies.
pub const FIELD_MANAGER: &str = "fledge-dataplane";

pub struct Kubectl {
    exe: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(cluster: &ClusterInfo) -> Self {
        Kubectl {
            exe: cluster.kubectl.clone(),
            kubeconfig: cluster.kubeconfig.clone(),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--request-timeout=10s");
        cmd
    }

    /// Runs kubectl; the output whatever the exit status.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.exe.display()))
    }

    /// Runs kubectl, failing with its stderr; returns stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.output(args)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl get … -o json`, or `None` when the object does not exist.
    pub fn get_json(&self, args: &[&str]) -> Result<Option<Value>> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.output(&all)?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("NotFound") || err.contains("not found") {
                return Ok(None);
            }
            bail!("kubectl {} failed: {}", all.join(" "), err.trim());
        }
        Ok(Some(
            serde_json::from_slice(&out.stdout).context("kubectl printed no JSON")?,
        ))
    }

    /// Feeds `input` to kubectl's stdin; returns stdout.
    pub fn stdin(&self, args: &[&str], input: &str) -> Result<String> {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.exe.display()))?;
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
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Server-side applies objects (a JSON `List` or one object) with [`FIELD_MANAGER`].
    pub fn apply(&self, objects: &Value) -> Result<()> {
        self.stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                &format!("--field-manager={FIELD_MANAGER}"),
                "-f",
                "-",
            ],
            &objects.to_string(),
        )
        .map(drop)
    }
}
