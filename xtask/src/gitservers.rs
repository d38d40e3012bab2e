//! `cargo xtask git-servers`: what the Git ledger tests run on loopback. `git daemon` and
//! `git http-backend` come with Debian's `git`; OpenSSH's `sshd` comes from Debian's
//! `openssh-server`, installed here when missing (its service is not started: the tests run
//! their own `sshd` with their own configuration, keys and port).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where Debian puts OpenSSH's server.
const SSHD: &str = "/usr/sbin/sshd";

pub fn ensure() -> Result<()> {
    let exec = Command::new("git")
        .arg("--exec-path")
        .output()
        .context("running git (Debian's git package is needed)")?;
    let exec = String::from_utf8_lossy(&exec.stdout).trim().to_string();
    for tool in ["git-daemon", "git-http-backend"] {
        if !Path::new(&exec).join(tool).exists() {
            bail!("{tool} is missing from {exec}; install Debian's git package");
        }
    }
    if Path::new(SSHD).exists() {
        println!("git servers: git daemon, git http-backend and {SSHD} are here");
        return Ok(());
    }
    eprintln!("git servers: installing Debian's openssh-server for {SSHD}");
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "openssh-server",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let mut ok = install().context("running apt-get")?.success();
    if !ok {
        let updated = Command::new("apt-get").args(["update", "-q"]).status()?;
        if !updated.success() {
            bail!("apt-get update failed (needs root and a Debian mirror)");
        }
        ok = install()?.success();
    }
    if !ok || !Path::new(SSHD).exists() {
        bail!(
            "could not install openssh-server; the Git-over-SSH tests need {SSHD} \
             (apt-get install openssh-server, as root)"
        );
    }
    Ok(())
}
