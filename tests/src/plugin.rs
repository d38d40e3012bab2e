//! Running `kubectl-fledge` against the local control plane, as a user would.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use crate::{TestNs, root};

static PLUGIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The `kubectl-fledge` binary, built once per run.
pub fn binary() -> PathBuf {
    let res = PLUGIN.get_or_init(|| crate::build_binary("fledge-plugin", "kubectl-fledge"));
    match res {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// What one run of the plugin gave.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Panics unless the run succeeded; returns its output.
    pub fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "kubectl fledge failed: {self:#?}");
        self.stdout
    }

    /// Panics unless the run failed; returns its error output.
    pub fn err(self) -> String {
        assert_eq!(
            self.code,
            Some(1),
            "kubectl fledge should have failed: {self:#?}"
        );
        self.stderr
    }
}

/// A command running the plugin in `ns`'s namespace with the local control plane's kubeconfig.
pub fn command(ns: &TestNs, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(binary());
    c.args(args)
        .args(["-n", &ns.name])
        .env("KUBECONFIG", root().join("target/cluster/kubeconfig"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Runs the plugin to its end.
pub async fn run(ns: &TestNs, args: &[&str]) -> Run {
    let out = command(ns, args)
        .output()
        .await
        .expect("run kubectl-fledge");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
