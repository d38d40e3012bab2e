//! `cargo xtask test`: every check CI runs, in order, stopping at the first failure.

use std::time::Instant;

use crate::util::{cargo, run};

/// Arguments of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip the end-to-end tests (they need the local control plane, built from Go modules on
    /// first use). CI never passes this.
    #[arg(long)]
    pub no_e2e: bool,
    /// Leave the local control plane and data plane running after the end-to-end tests.
    #[arg(long)]
    pub keep_cluster: bool,
}

pub fn run_all(args: TestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let timings = std::cell::RefCell::new(Vec::new());
    let timed = |what: &str, task: &mut dyn FnMut() -> anyhow::Result<()>| {
        let t = Instant::now();
        task()?;
        timings
            .borrow_mut()
            .push((what.to_string(), t.elapsed().as_secs_f64()));
        anyhow::Ok(())
    };
    let step = |what: &str, cmd: &mut std::process::Command| timed(what, &mut || run(what, cmd));
    step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "cargo clippy (warnings are errors)",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "cargo test (unit, property, adapter and CLI tests)",
        cargo().args(["test", "--workspace", "--exclude", "fledge-e2e"]),
    )?;
    // Licences, banned crates and sources of the dependency tree (deny.toml).
    step(
        "cargo deny check licenses bans sources (cargo xtask deny)",
        cargo().args(["run", "--quiet", "-p", "xtask", "--", "deny"]),
    )?;
    // Each fuzz target for a bounded time (20 s each; the nightly toolchain, cargo-fuzz
    // installed under the cache when missing).
    step(
        "fuzz targets (cargo xtask fuzz)",
        cargo().args(["run", "--quiet", "-p", "xtask", "--", "fuzz"]),
    )?;
    // The Helm chart and the kustomize base (helm, kubeconform and kustomize built once from
    // the Go module proxy, then cached); no cluster needed, so it runs with --no-e2e too.
    step(
        "Helm chart and kustomize base (cargo xtask charts)",
        cargo().args(["run", "--quiet", "-p", "xtask", "--", "charts"]),
    )?;
    if args.no_e2e {
        eprintln!("==> end-to-end tests skipped (--no-e2e)");
    } else {
        step(
            "local control plane (cargo xtask cluster up)",
            cargo().args(["run", "--quiet", "-p", "xtask", "--", "cluster", "up"]),
        )?;
        step(
            "Git servers for the ledger tests (cargo xtask git-servers)",
            cargo().args(["run", "--quiet", "-p", "xtask", "--", "git-servers"]),
        )?;
        // Traefik and podinfo for the data-plane tests (built once, then cached).
        let e2e = step(
            "local data plane (cargo xtask dataplane up)",
            cargo().args(["run", "--quiet", "-p", "xtask", "--", "dataplane", "up"]),
        )
        .and_then(|()| {
            // The load tester the `loadgen` end-to-end test starts as its own process.
            step(
                "cargo build -p fledge-loadgen (for the end-to-end tests)",
                cargo().args(["build", "-p", "fledge-loadgen", "--bin", "fledge-loadgen"]),
            )
        })
        .and_then(|()| {
            // The plugin the end-to-end tests run as their own process (`tests/plugin.rs`),
            // built as the harness builds it (alone, so that its features match and the
            // harness finds it up to date).
            step(
                "build kubectl-fledge",
                cargo().args(["build", "-p", "fledge-plugin", "--bin", "kubectl-fledge"]),
            )
        })
        .and_then(|()| {
            // Headless Chromium, its WebDriver server and axe-core for the dashboard's browser
            // tests (tests/dashboard.rs).
            step(
                "Chromium and axe-core for the browser tests (cargo xtask browser)",
                cargo().args(["run", "--quiet", "-p", "xtask", "--", "browser"]),
            )
        })
        .and_then(|()| {
            // Flagger, run beside fledge by the cut-over test (built once, then cached).
            step(
                "Flagger for the cut-over test (cargo xtask flagger)",
                cargo().args(["run", "--quiet", "-p", "xtask", "--", "flagger"]),
            )
        })
        .and_then(|()| {
            // The in-cluster test (tests/incluster.rs) runs the image's own binary under podman
            // (crun) in network namespaces joined to the API server by socat, all from Debian's
            // packages, and renders the chart with the helm `cargo xtask charts` built.
            let missing: Vec<&str> = [("podman", "podman"), ("crun", "crun"), ("socat", "socat")]
                .into_iter()
                .filter(|(cmd, _)| !crate::image::on_path(cmd))
                .map(|(_, package)| package)
                .collect();
            if !missing.is_empty() {
                crate::image::apt_install(&missing, "the in-cluster end-to-end test")?;
            }
            step(
                "container images for the in-cluster test (cargo xtask image)",
                cargo().args(["run", "--quiet", "-p", "xtask", "--", "image"]),
            )?;
            crate::charts::helm()
        })
        .and_then(|helm| {
            // The planes were just brought up: each test binary finds them where `up` recorded
            // them instead of running `cluster up` and `dataplane up` again.
            timed("end-to-end tests on the local control plane", &mut || {
                crate::lanes::run_on_planes_up(&helm)
            })
        })
        .and_then(|()| {
            // The benchmarks are too long for CI; a small run of each shows they still work.
            // fledge as the end-to-end tests built it (a release build takes half an hour).
            let fledge = crate::util::target_dir().join("debug").join("fledge");
            let fledge = fledge.display().to_string();
            step(
                "benchmark smoke: bench scale, fledge and Flagger, 10 Canaries",
                cargo()
                    .args(["run", "--quiet", "-p", "xtask", "--", "bench", "scale"])
                    .args([
                        "--canaries",
                        "10",
                        "--interval",
                        "10s",
                        "--iterations",
                        "1",
                        "--steady-intervals",
                        "1",
                        "--controller",
                        "both",
                        "--fledge",
                        &fledge,
                    ]),
            )?;
            step(
                "benchmark smoke: bench soak, 10 Canaries, 100 rollouts",
                cargo()
                    .args(["run", "--quiet", "-p", "xtask", "--", "bench", "soak"])
                    .args(["--canaries", "10", "--rollouts", "100", "--fledge", &fledge]),
            )
        });
        if !args.keep_cluster {
            let _ = run(
                "local data plane down",
                cargo().args(["run", "--quiet", "-p", "xtask", "--", "dataplane", "down"]),
            );
            let _ = run(
                "local control plane down",
                cargo().args(["run", "--quiet", "-p", "xtask", "--", "cluster", "down"]),
            );
        }
        e2e?;
    }
    eprintln!("==> timings:");
    for (what, secs) in timings.borrow().iter() {
        eprintln!("    {secs:>7.1}s  {what}");
    }
    eprintln!(
        "==> all checks passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
