//! `cargo deny check licenses bans sources` over the workspace, as `deny.toml` configures it
//! (advisories need the RustSec database from GitHub, which this project's machines cannot
//! download; see `deny.toml`). cargo-deny is installed once under the cache when missing.

use std::process::Command;

use anyhow::Result;

use crate::util::{root, run};

/// The cargo-deny release installed when missing.
pub const CARGO_DENY_VERSION: &str = "0.20.2";

/// The checks `cargo xtask test` runs.
pub const CHECKS: &[&str] = &["licenses", "bans", "sources"];

/// Runs the checks; fails naming the crate and the rule when one fails.
pub fn check() -> Result<()> {
    let bin = crate::util::cargo_tool("cargo-deny", CARGO_DENY_VERSION, "once")?;
    run(
        &format!("cargo deny check {} (deny.toml)", CHECKS.join(" ")),
        Command::new(bin)
            .current_dir(root())
            .args(["deny", "--log-level", "error", "check"])
            .args(CHECKS),
    )
}
