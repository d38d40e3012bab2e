//! `cargo xtask browser`: what the dashboard's browser tests need: Debian's `chromium` and
//! `chromium-driver` (headless Chromium driven over WebDriver), and axe-core, the accessibility
//! checker the tests inject into the page, from the npm registry into `~/.cache/fledge/`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The axe-core release the tests run.
pub const AXE_VERSION: &str = "4.14.1";

/// Where the browser tests find Chromium and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The WebDriver server of Debian's chromium-driver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// `~/.cache/fledge/axe-core-<version>`: npm installs axe-core under it.
pub fn axe_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/fledge")
        .join(format!("axe-core-{AXE_VERSION}"))
}

/// Installs what is missing, then prints where everything is.
pub fn ensure() -> Result<()> {
    if !std::path::Path::new(CHROMIUM).is_file() || !std::path::Path::new(CHROMEDRIVER).is_file() {
        crate::image::apt_install(
            &["chromium", "chromium-driver"],
            "the dashboard's browser tests",
        )?;
    }
    for p in [CHROMIUM, CHROMEDRIVER] {
        if !std::path::Path::new(p).is_file() {
            bail!("{p} is still missing after installing Debian's chromium and chromium-driver");
        }
    }
    let dir = axe_dir();
    let script = dir.join("node_modules/axe-core/axe.min.js");
    if !script.is_file() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        eprintln!(
            "==> npm install axe-core@{AXE_VERSION} into {}",
            dir.display()
        );
        let ok = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&dir)
            .arg(format!("axe-core@{AXE_VERSION}"))
            .status()
            .context("running npm (Debian's npm package installs it)")?
            .success();
        if !ok || !script.is_file() {
            bail!(
                "npm could not install axe-core@{AXE_VERSION} into {}",
                dir.display()
            );
        }
    }
    eprintln!("chromium:     {CHROMIUM}");
    eprintln!("chromedriver: {CHROMEDRIVER}");
    eprintln!("axe-core:     {}", script.display());
    Ok(())
}
