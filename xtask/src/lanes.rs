//! The end-to-end test binaries run side by side: `cargo test` runs one test binary after the
//! other, and most of an end-to-end test's time is waiting (for an analysis interval, a Pod made
//! ready by kwok, a watch), so two binaries at once take little more than half the time on the
//! two cores CI has. Each binary still runs its own tests four at a time, each in a namespace of
//! its own, as `cargo test` would; its output is printed whole when it ends, so that the outputs
//! of two binaries never interleave. A binary that fails beside another runs once more, alone,
//! after the others: the step passes only if it passes then, and the log marks it FLAKY.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::util::{cargo, root, target_dir};

/// How many test binaries run at once.
pub const LANES: usize = 2;

/// The slowest binaries, slowest first (their times in a clean-clone run, one binary at a time:
/// 157, 108, 108, 99, 84, 64, 53, 51, 51, 44, 41, 32, 31 s). They start first, so that the
/// lanes end close together; the others follow by name.
const SLOWEST_FIRST: &[&str] = &[
    "flagger_oracle",
    "demo",
    "statefulset",
    "analysis",
    "flagger_metrics",
    "cutover",
    "restart",
    "gitops",
    "sharding",
    "routing",
    "faults",
    "controller",
    "knative",
];

/// A test binary cargo built, and the target it was built from.
struct Binary {
    name: String,
    path: PathBuf,
}

/// `cargo xtask e2e`: the end-to-end tests on the planes already up, as `cargo xtask test` runs
/// them after bringing the planes up and building what the tests need.
pub fn run_standalone() -> anyhow::Result<()> {
    run_on_planes_up(&crate::charts::helm()?)
}

/// The end-to-end tests, told that the planes are up and where helm is.
pub fn run_on_planes_up(helm: &Path) -> anyhow::Result<()> {
    run_e2e(&[
        ("FLEDGE_E2E_PLANES_UP", OsStr::new("1")),
        ("FLEDGE_HELM", helm.as_os_str()),
    ])
}

/// Builds the end-to-end tests and runs their binaries, [`LANES`] at a time, with `envs`;
/// fails naming every binary that failed, after all have run.
fn run_e2e(envs: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    let binaries = build()?;
    eprintln!(
        "==> {} end-to-end test binaries, {LANES} at a time",
        binaries.len()
    );
    let queue = Mutex::new(VecDeque::from(binaries));
    let failed = Mutex::new(Vec::new());
    let logs = target_dir().join("e2e-logs").join("binaries");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    std::thread::scope(|s| {
        for lane in 1..=LANES {
            let (queue, failed, logs) = (&queue, &failed, &logs);
            s.spawn(move || {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                    let Some(bin) = next else { break };
                    if let Err(e) = run_one(lane, &bin, envs, logs) {
                        eprintln!("==> {}: {e:#}", bin.name);
                        failed.lock().unwrap_or_else(|e| e.into_inner()).push(bin);
                    }
                }
            });
        }
    });
    // A binary that failed beside another runs once more, alone, as `cargo test` would run it:
    // the step passes only if it passes then, and the log names it, since a test that needs
    // the machine to itself has a race to find.
    let mut failed_alone = Vec::new();
    let mut passed_alone = Vec::new();
    for bin in failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        eprintln!(
            "==> {} failed with another test binary running beside it; running it again, alone",
            bin.name
        );
        match run_one(0, &bin, envs, logs.as_path()) {
            Ok(()) => passed_alone.push(bin.name),
            Err(e) => {
                eprintln!("==> {}: {e:#}", bin.name);
                failed_alone.push(bin.name);
            }
        }
    }
    if !passed_alone.is_empty() {
        eprintln!(
            "==> FLAKY: failed beside another test binary, passed alone: {} (their first output is above)",
            passed_alone.join(", ")
        );
    }
    if !failed_alone.is_empty() {
        bail!(
            "end-to-end test binaries failed, alone too: {}",
            failed_alone.join(", ")
        );
    }
    // Doc tests of the harness's library, if it ever has some (cargo test runs them last too).
    crate::util::run(
        "end-to-end doc tests",
        cargo().args(["test", "-p", "fledge-e2e", "--doc"]),
    )
}

/// Runs one binary in the test crate's directory (as `cargo test` does), its output into a log,
/// then prints that log whole.
/// `lane` 0 is a run alone, after the lanes; its log is kept beside the first one.
fn run_one(lane: usize, bin: &Binary, envs: &[(&str, &OsStr)], logs: &Path) -> anyhow::Result<()> {
    let log_path = match lane {
        0 => logs.join(format!("{}.alone.log", bin.name)),
        _ => logs.join(format!("{}.log", bin.name)),
    };
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let started = Instant::now();
    eprintln!("==> lane {lane}: {} started", bin.name);
    let mut cmd = Command::new(&bin.path);
    cmd.args(["--test-threads", "4"])
        .current_dir(root().join("tests"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", bin.path.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "==> lane {lane}: {} ended in {secs:.1}s ({status}); its output:",
        bin.name
    );
    let _ = err.write_all(output.as_bytes());
    if !status.success() {
        bail!("failed ({status}); output in {}", log_path.display());
    }
    Ok(())
}

/// `cargo test -p fledge-e2e --no-run`: the test binaries it built, slowest first.
fn build() -> anyhow::Result<Vec<Binary>> {
    eprintln!("==> building the end-to-end tests");
    let out = cargo()
        .args([
            "test",
            "-p",
            "fledge-e2e",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the end-to-end tests failed ({})", out.status);
    }
    let mut binaries = test_binaries(&String::from_utf8_lossy(&out.stdout));
    binaries.sort_by_key(|b| {
        let rank = SLOWEST_FIRST.iter().position(|s| *s == b.name);
        (rank.unwrap_or(usize::MAX), b.name.clone())
    });
    Ok(binaries)
}

/// The test executables in cargo's JSON messages.
fn test_binaries(messages: &str) -> Vec<Binary> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .filter_map(|m| {
            let path = m["executable"].as_str()?;
            let kind = m["target"]["kind"][0].as_str().unwrap_or_default();
            let name = m["target"]["name"].as_str()?;
            // The library's and binaries' unit tests are named after their kind too.
            let name = match kind {
                "test" => name.to_string(),
                other => format!("{name} ({other})"),
            };
            Some(Binary {
                name,
                path: PathBuf::from(path),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_executables_are_read_from_cargos_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"fledge_e2e"},"profile":{"test":false},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"fledge_e2e"},"profile":{"test":true},"executable":"/t/deps/fledge_e2e-1"}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["test"],"name":"demo"},"profile":{"test":true},"executable":"/t/deps/demo-2"}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"fledge-demo"},"profile":{"test":false},"executable":"/t/debug/fledge-demo"}"#,
            r#"{"reason":"build-finished","success":true}"#,
            "not json",
        ]
        .join("\n");
        let found: Vec<(String, PathBuf)> = test_binaries(&messages)
            .into_iter()
            .map(|b| (b.name, b.path))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "fledge_e2e (lib)".to_string(),
                    PathBuf::from("/t/deps/fledge_e2e-1")
                ),
                ("demo".to_string(), PathBuf::from("/t/deps/demo-2")),
            ]
        );
    }
}
