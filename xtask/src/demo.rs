//! `cargo xtask demo`: the main job of fledge on the local control plane with real traffic.
//!
//! Brings the control plane and the data plane up (as the end-to-end tests do), builds `fledge`,
//! `fledge-loadgen`, `kubectl-fledge` and the demo's driver (`fledge-demo` in the `fledge-e2e`
//! crate, which tells the story with the end-to-end harness), runs it, and takes the data plane and the control plane down again
//! unless `--keep` is given, as `cargo xtask test` does.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::util::{cargo, root, run, target_dir};
use crate::{cluster, dataplane};

/// Arguments of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Leave the local control plane and data plane running afterwards, to look around with
    /// kubectl (`cargo xtask dataplane down` and `cargo xtask cluster down` stop them).
    #[arg(long)]
    pub keep: bool,
}

pub fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // Ctrl-C reaches the driver too, which stops its controller and podinfo processes and
    // exits; this process lives on to take the planes down. A second Ctrl-C stops it at once.
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, interrupted.clone())
            .and_then(|_| signal_hook::flag::register(signal, interrupted.clone()))
            .context("listening for Ctrl-C")?;
    }
    let mut planes_up = false;
    let outcome = prepare_and_tell(&interrupted, &mut planes_up);
    if args.keep && planes_up {
        let cluster = root().join("target/cluster");
        eprintln!("==> the control plane and the data plane keep running (--keep)");
        eprintln!(
            "    watch:     KUBECONFIG={} {} get canaries -n fledge-demo -w",
            cluster.join("kubeconfig").display(),
            cluster.join("bin/kubectl").display()
        );
        eprintln!(
            "    dashboard: KUBECONFIG={} cargo run -q -p fledge-plugin --bin kubectl-fledge -- \
             dashboard -n fledge-demo   (then open http://127.0.0.1:7979/)",
            cluster.join("kubeconfig").display()
        );
        eprintln!("    tear down: cargo xtask dataplane down && cargo xtask cluster down");
    } else if !args.keep {
        eprintln!("==> taking the data plane and the control plane down (--keep leaves them up)");
        if let Err(e) = dataplane::stop() {
            eprintln!("dataplane down failed: {e:#}");
        }
        if let Err(e) = cluster::stop(false) {
            eprintln!("cluster down failed: {e:#}");
        }
    }
    if interrupted.load(Ordering::Relaxed) {
        bail!("the demo was interrupted");
    }
    outcome?;
    eprintln!(
        "==> demo finished in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Brings the planes up (and says so in `planes_up`), builds what the demo runs, and runs the
/// driver.
fn prepare_and_tell(interrupted: &AtomicBool, planes_up: &mut bool) -> anyhow::Result<()> {
    let stop = || -> anyhow::Result<()> {
        if interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    };
    eprintln!("==> local control plane and data plane (built from Go modules on first use)");
    dataplane::ensure_up()?;
    *planes_up = true;
    stop()?;
    // Each built alone, as the end-to-end harness builds it, so that the driver finds `fledge`
    // up to date.
    run(
        "cargo build -p fledge-controller --bin fledge",
        cargo().args(["build", "-p", "fledge-controller", "--bin", "fledge"]),
    )?;
    stop()?;
    for (package, bin) in [
        ("fledge-loadgen", "fledge-loadgen"),
        ("fledge-plugin", "kubectl-fledge"),
        ("fledge-e2e", "fledge-demo"),
    ] {
        run(
            &format!("cargo build -p {package} --bin {bin}"),
            cargo().args(["build", "-p", package, "--bin", bin]),
        )?;
        stop()?;
    }
    let driver: PathBuf = target_dir().join("debug").join("fledge-demo");
    eprintln!("==> {}", driver.display());
    let status = Command::new(&driver)
        .current_dir(root())
        // Up a moment ago: the harness need not check again.
        .env("FLEDGE_E2E_PLANES_UP", "1")
        .status()
        .with_context(|| format!("cannot start {}", driver.display()))?;
    if !status.success() {
        bail!("the demo did not go as expected ({status}); see its messages above");
    }
    Ok(())
}
