//! `cargo xtask test`: every check CI runs, in order, stopping at the first failure.

use crate::util::{cargo, run};

/// Arguments of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {}

pub fn run_all(_args: TestArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
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
    run(
        "cargo test (unit, property, adapter and CLI tests)",
        cargo().args(["test", "--workspace"]),
    )?;
    eprintln!(
        "==> all checks passed in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
