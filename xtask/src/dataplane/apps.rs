//! podinfo processes on loopback: `cargo xtask dataplane app start|stop|list`.
//!
//! Each app is one podinfo process bound to a loopback address and port, started in its own
//! process group with a pid record (`run/apps/<name>.pid`) and a description
//! (`run/apps/<name>.json`), so it outlives the command and `app stop` or `down` ends exactly it.
//! podinfo reports the `--version` given here as the `message` of its JSON answer at `/` (its
//! own release number, 6.9.2, is compiled in and the same for every process).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::build::{self, Tool};
use super::{Layout, http_get, wait_until};
use crate::cluster::proc;

#[derive(clap::Subcommand)]
pub enum AppCommand {
    /// Start one podinfo process and print its address.
    Start(StartArgs),
    /// Stop apps started with `app start`.
    Stop {
        /// The apps to stop.
        names: Vec<String>,
        /// Stop every app.
        #[arg(long, conflicts_with = "names")]
        all: bool,
    },
    /// List the apps and whether they run.
    List,
}

#[derive(clap::Args, Clone, Debug)]
pub struct StartArgs {
    /// A name for the process (lower-case letters, digits and '-').
    #[arg(long)]
    pub name: String,
    /// The version this process reports (podinfo's `--ui-message`, the `message` at `/`).
    #[arg(long)]
    pub version: String,
    /// The loopback address to bind; distinct addresses let one Service have several backends.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: Ipv4Addr,
    /// The port; a free one when left out.
    #[arg(long)]
    pub port: Option<u16>,
    /// Answer one request in three with an error (500, 400 or 409): podinfo's `--random-error`.
    #[arg(long)]
    pub random_error: bool,
    /// Delay every answer by a random time from this many milliseconds…
    #[arg(long, default_value_t = 0)]
    pub delay_min_ms: u32,
    /// …to this many (podinfo's `--random-delay`); 0 means no delay.
    #[arg(long, default_value_t = 0)]
    pub delay_max_ms: u32,
}

/// podinfo's command line for one app; `dir` holds its (empty) data and config directories.
pub fn podinfo_args(args: &StartArgs, port: u16, dir: &std::path::Path) -> Vec<String> {
    let mut v = vec![
        format!("--host={}", args.address),
        format!("--port={port}"),
        // Metrics are served on the main port at /metrics as well; no second listener.
        "--port-metrics=0".to_string(),
        "--grpc-port=0".to_string(),
        "--level=warn".to_string(),
        format!("--ui-message={}", args.version),
        format!("--data-path={}", dir.display()),
        // A directory without config.yaml, so no stray file is read from the working directory.
        format!("--config-path={}", dir.display()),
    ];
    if args.random_error {
        v.push("--random-error".to_string());
    }
    if args.delay_max_ms > 0 {
        v.extend([
            "--random-delay".to_string(),
            "--random-delay-unit=ms".to_string(),
            format!("--random-delay-min={}", args.delay_min_ms),
            format!("--random-delay-max={}", args.delay_max_ms),
        ]);
    }
    v
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn pid_file(layout: &Layout, name: &str) -> PathBuf {
    layout.apps_dir().join(format!("{name}.pid"))
}

fn record_file(layout: &Layout, name: &str) -> PathBuf {
    layout.apps_dir().join(format!("{name}.json"))
}

pub fn run(layout: &Layout, cmd: AppCommand) -> Result<()> {
    match cmd {
        AppCommand::Start(args) => {
            let bins = build::ensure_binaries(&layout.workspace, &layout.logs())?;
            let _lock = layout.lock()?;
            let addr = start(layout, &bins.podinfo, &args)?;
            println!("{addr}");
            Ok(())
        }
        AppCommand::Stop { names, all } => {
            let _lock = layout.lock()?;
            let stopped = if all {
                stop_all(layout)?
            } else {
                let mut stopped = Vec::new();
                for name in names {
                    if stop(layout, &name)? {
                        stopped.push(name);
                    }
                }
                stopped
            };
            println!("stopped: {}", stopped.join(" "));
            Ok(())
        }
        AppCommand::List => {
            for line in list_lines(layout) {
                println!("{line}");
            }
            Ok(())
        }
    }
}

/// Starts one app and waits until it answers `/readyz`; returns its address.
pub fn start(layout: &Layout, podinfo: &std::path::Path, args: &StartArgs) -> Result<SocketAddr> {
    if !valid_name(&args.name) {
        bail!(
            "app name {:?}: use lower-case letters, digits and '-'",
            args.name
        );
    }
    if !args.address.is_loopback() {
        bail!("{} is not a loopback address (127.0.0.0/8)", args.address);
    }
    if args.delay_max_ms < args.delay_min_ms {
        bail!("--delay-max-ms must not be below --delay-min-ms");
    }
    let pid = pid_file(layout, &args.name);
    if matches!(proc::PidRecord::read(&pid), Ok(Some(r)) if r.is_running()) {
        bail!(
            "app {} is already running; `app stop {}` first",
            args.name,
            args.name
        );
    }
    let port = match args.port {
        Some(p) => p,
        None => TcpListener::bind((args.address, 0))
            .with_context(|| format!("binding {}:0", args.address))?
            .local_addr()?
            .port(),
    };
    let addr = SocketAddr::V4(SocketAddrV4::new(args.address, port));
    let dir = layout.apps_dir().join(&args.name);
    fs::create_dir_all(&dir)?;
    let log = layout.logs().join(format!("app-{}.log", args.name));
    let mut child = proc::spawn(
        "podinfo",
        podinfo,
        &podinfo_args(args, port, &dir),
        &log,
        &pid,
    )?;
    let record = json!({
        "name": args.name,
        "version": args.version,
        "address": addr.to_string(),
        "podinfo": Tool::Podinfo.version(),
        "random_error": args.random_error,
        "delay_ms": [args.delay_min_ms, args.delay_max_ms],
    });
    fs::write(
        record_file(layout, &args.name),
        serde_json::to_string_pretty(&record)?,
    )?;
    let ready = wait_until(
        Instant::now() + Duration::from_secs(20),
        &format!("podinfo {} to answer on {addr}", args.name),
        &mut || child.check_alive(),
        &mut || Ok(http_get(addr, "/readyz")?.0 == 200),
    );
    if let Err(e) = ready {
        let _ = proc::stop(&pid, Duration::from_secs(5));
        return Err(e);
    }
    Ok(addr)
}

/// Stops one app; whether it was running.
pub fn stop(layout: &Layout, name: &str) -> Result<bool> {
    let stopped = proc::stop(&pid_file(layout, name), Duration::from_secs(5))?;
    let _ = fs::remove_file(record_file(layout, name));
    let _ = fs::remove_dir_all(layout.apps_dir().join(name));
    Ok(stopped)
}

/// Stops every app; the names of those that were running.
pub fn stop_all(layout: &Layout) -> Result<Vec<String>> {
    let mut stopped = Vec::new();
    for name in names(layout) {
        if stop(layout, &name)? {
            stopped.push(name);
        }
    }
    Ok(stopped)
}

fn names(layout: &Layout) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(layout.apps_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".pid")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// One line per app: name, state, address, version.
pub fn list_lines(layout: &Layout) -> Vec<String> {
    names(layout)
        .into_iter()
        .map(|name| {
            let state = match proc::PidRecord::read(&pid_file(layout, &name)) {
                Ok(Some(r)) if r.is_running() => format!("running (pid {})", r.pid),
                _ => "stopped".to_string(),
            };
            let record: Value = fs::read_to_string(record_file(layout, &name))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            let field = |k: &str| {
                record
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string()
            };
            format!(
                "{name:<16} {state:<22} {:<22} version {}",
                field("address"),
                field("version")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> StartArgs {
        StartArgs {
            name: "v2".into(),
            version: "2.0.0".into(),
            address: Ipv4Addr::new(127, 0, 0, 2),
            port: None,
            random_error: false,
            delay_min_ms: 0,
            delay_max_ms: 0,
        }
    }

    #[test]
    fn podinfo_flags_follow_the_knobs() {
        let plain = podinfo_args(&args(), 9000, std::path::Path::new("/d"));
        assert!(plain.contains(&"--host=127.0.0.2".to_string()));
        assert!(plain.contains(&"--port=9000".to_string()));
        assert!(plain.contains(&"--ui-message=2.0.0".to_string()));
        assert!(!plain.iter().any(|a| a.starts_with("--random")));
        let faulty = podinfo_args(
            &StartArgs {
                random_error: true,
                delay_min_ms: 10,
                delay_max_ms: 50,
                ..args()
            },
            9000,
            std::path::Path::new("/d"),
        );
        for flag in [
            "--random-error",
            "--random-delay",
            "--random-delay-unit=ms",
            "--random-delay-min=10",
            "--random-delay-max=50",
        ] {
            assert!(faulty.contains(&flag.to_string()), "{flag} missing");
        }
    }

    #[test]
    fn app_names_are_file_and_label_safe() {
        assert!(valid_name("podinfo-v2"));
        assert!(!valid_name(""));
        assert!(!valid_name("../x"));
        assert!(!valid_name("Upper"));
    }
}
