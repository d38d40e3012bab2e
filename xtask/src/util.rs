//! Small helpers shared by the tasks.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// Where cargo builds: `CARGO_TARGET_DIR`, or the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The cargo that runs this task.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, echoing it, and fails with its exit status.
pub fn run(what: &str, cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("==> {what}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start: {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs a long, quiet command (its output goes to a log) to its end, showing that it is alive:
/// on a terminal, a line with the time so far, redrawn every second; elsewhere (CI logs), a
/// line every 30 s.
pub fn status_with_progress(what: &str, cmd: &mut Command) -> std::io::Result<ExitStatus> {
    let mut child = cmd.spawn()?;
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut said = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if tty {
                eprint!("\r\x1b[2K");
            }
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(250));
        let secs = started.elapsed().as_secs();
        let so_far = format!("{}m{:02}s", secs / 60, secs % 60);
        if tty {
            eprint!("\r\x1b[2K  {what}: {so_far}");
            let _ = std::io::Write::flush(&mut std::io::stderr());
        } else if said.elapsed() >= Duration::from_secs(30) {
            eprintln!("  {what}: still going after {so_far}");
            said = Instant::now();
        }
    }
}

/// A cargo subcommand's binary (`cargo-deny`, `cargo-fuzz`, …) at `version`, installed once with
/// `cargo install --locked` under the cache (`bin/<krate>-<version>/`) when missing. `why` is
/// added to the progress line.
pub fn cargo_tool(krate: &str, version: &str, why: &str) -> anyhow::Result<PathBuf> {
    let prefix = crate::cluster::build::cache_dir()?
        .join("bin")
        .join(format!("{krate}-{version}"));
    let bin = prefix.join("bin").join(krate);
    if bin.is_file() {
        return Ok(bin);
    }
    run(
        &format!("cargo install {krate} {version} ({why})"),
        cargo()
            .args(["install", krate, "--locked", "--version", version])
            .arg("--root")
            .arg(&prefix),
    )?;
    if !bin.is_file() {
        bail!("cargo install did not leave {}", bin.display());
    }
    Ok(bin)
}

/// Runs `cmd` (`what` names it in errors) with no standard input and returns its output.
pub fn output(what: &str, cmd: &mut Command) -> anyhow::Result<std::process::Output> {
    cmd.stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot start: {what}"))
}

/// Runs a command that must succeed and returns its standard output.
pub fn stdout_of(what: &str, cmd: &mut Command) -> anyhow::Result<String> {
    let out = output(what, cmd)?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
