//! `cargo deny check licenses bans sources` over the workspace, as `deny.toml` configures it
//! (advisories need the RustSec database from GitHub, which this project's machines cannot
//! download; see `deny.toml`). cargo-deny is installed once under the cache when missing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::cluster::build::cache_dir;
use crate::util::{cargo, root, run};

/// The cargo-deny release installed when missing.
pub const CARGO_DENY_VERSION: &str = "0.20.2";

/// The checks `cargo xtask test` runs.
pub const CHECKS: &[&str] = &["licenses", "bans", "sources"];

/// Runs the checks; fails naming the crate and the rule when one fails.
pub fn check() -> Result<()> {
    let bin = ensure_cargo_deny()?;
    run(
        &format!("cargo deny check {} (deny.toml)", CHECKS.join(" ")),
        Command::new(bin)
            .current_dir(root())
            .args(["deny", "--log-level", "error", "check"])
            .args(CHECKS),
    )
}

/// cargo-deny, installed with `cargo install --locked` under the cache when missing.
fn ensure_cargo_deny() -> Result<PathBuf> {
    let prefix = cache_dir()?
        .join("bin")
        .join(format!("cargo-deny-{CARGO_DENY_VERSION}"));
    let bin = prefix.join("bin").join("cargo-deny");
    if bin.is_file() {
        return Ok(bin);
    }
    run(
        &format!("cargo install cargo-deny {CARGO_DENY_VERSION} (once)"),
        cargo()
            .args(["install", "cargo-deny", "--locked", "--version"])
            .arg(CARGO_DENY_VERSION)
            .arg("--root")
            .arg(&prefix),
    )?;
    if !bin.is_file() {
        bail!("cargo install did not leave {}", bin.display());
    }
    Ok(bin)
}
