//! `cargo xtask fuzz [--seconds N] [--target T]…`: the cargo-fuzz targets of `fuzz/`, each
//! run for a bounded time with the nightly toolchain, from the seeds committed in
//! `fuzz/seeds/<target>/` and the corpus kept between runs in `corpus/` of the fuzz build's
//! directory: `$FLEDGE_FUZZ_TARGET_DIR`, else `target-fuzz/` of the fledge cache
//! (`~/.cache/fledge/target-fuzz/`), shared by every checkout so that a fresh clone rebuilds
//! only the crates that changed.
//!
//! cargo-fuzz is installed once under the cache (`cargo install --locked`) when missing. The
//! targets are built without a sanitizer (`-s none`): every crate of fledge forbids unsafe
//! code, so AddressSanitizer would mostly slow each run; debug assertions are on, so an
//! arithmetic overflow is a crash. A crash stops the task with the input that caused it; it
//! becomes a regression test in the crate whose code crashed, and a fix.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cluster::build::cache_dir;
use crate::util::{root, run};

/// The cargo-fuzz release installed when missing.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The fuzz targets, in the order they run.
pub const TARGETS: &[&str] = &["validate", "template", "hey", "revert", "ledger"];

/// Arguments of `cargo xtask fuzz`.
#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Run only these targets (repeatable); all of them by default.
    #[arg(long = "target", value_name = "TARGET")]
    pub targets: Vec<String>,
}

/// Where the nightly fuzz build keeps its artifacts and the corpus: `$FLEDGE_FUZZ_TARGET_DIR`,
/// else `target-fuzz/` of the fledge cache, shared by every checkout.
fn fuzz_target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FLEDGE_FUZZ_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    Ok(cache_dir()?.join("target-fuzz"))
}

/// What one target's run did.
struct Figures {
    target: String,
    runs: u64,
    seconds: f64,
}

pub fn run_fuzz(args: FuzzArgs) -> Result<()> {
    for t in &args.targets {
        if !TARGETS.contains(&t.as_str()) {
            bail!(
                "{t:?} is not a fuzz target; the targets are {}",
                TARGETS.join(", ")
            );
        }
    }
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    ensure_nightly()?;
    let cargo_fuzz = crate::util::cargo_tool("cargo-fuzz", CARGO_FUZZ_VERSION, "once")?;
    let out = fuzz_target_dir()?;
    run(
        "cargo +nightly fuzz build (the fuzz targets, once per change)",
        &mut fuzz_command(&cargo_fuzz, &out, "build"),
    )?;
    let mut figures = Vec::new();
    for target in targets {
        figures.push(run_target(&cargo_fuzz, &out, target, args.seconds)?);
    }
    eprintln!("==> fuzzing: no crash");
    for f in &figures {
        eprintln!(
            "    {:<9} {:>10} runs in {:>5.1} s ({:.0}/s)",
            f.target,
            f.runs,
            f.seconds,
            f.runs as f64 / f.seconds.max(0.001)
        );
    }
    Ok(())
}

/// `cargo-fuzz fuzz <sub> -s none --debug-assertions --target-dir <out>`, with the nightly
/// toolchain, from the workspace root (cargo-fuzz finds `fuzz/` there).
fn fuzz_command(cargo_fuzz: &Path, out: &Path, sub: &str) -> Command {
    let mut cmd = Command::new(cargo_fuzz);
    cmd.current_dir(root())
        .env("RUSTUP_TOOLCHAIN", "nightly")
        .args(["fuzz", sub, "--sanitizer", "none", "--debug-assertions"])
        .arg("--target-dir")
        .arg(out);
    cmd
}

fn run_target(cargo_fuzz: &Path, out: &Path, target: &str, seconds: u64) -> Result<Figures> {
    let corpus = out.join("corpus").join(target);
    let artifacts = out.join("artifacts").join(target);
    let seeds = root().join("fuzz/seeds").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if !seeds.is_dir() {
        bail!(
            "the seeds of fuzz target {target} are missing: {}",
            seeds.display()
        );
    }
    let what = format!("fuzz target {target} for {seconds} s");
    eprintln!("==> {what}");
    let started = Instant::now();
    let mut cmd = fuzz_command(cargo_fuzz, out, "run");
    // New inputs go to the first directory (the kept corpus), never to the committed seeds.
    cmd.arg(target).arg(&corpus).arg(&seeds).arg("--").args([
        format!("-max_total_time={seconds}"),
        "-timeout=10".to_string(),
        "-rss_limit_mb=2048".to_string(),
        "-max_len=65536".to_string(),
        format!("-artifact_prefix={}/", artifacts.display()),
    ]);
    let output = cmd
        .output()
        .with_context(|| format!("cannot start: {what}"))?;
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{what} found a crash ({}):\n{}\nthe input is in {}; turn it into a regression test \
             in the crate whose code crashed (`cargo +nightly fuzz run {target} <file>` replays it)",
            output.status,
            tail.join("\n"),
            artifacts.display()
        );
    }
    let runs = done_runs(&log).with_context(|| {
        format!("{what}: libFuzzer's last line (\"Done N runs in S second(s)\") is missing:\n{log}")
    })?;
    Ok(Figures {
        target: target.to_string(),
        runs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The `N` of libFuzzer's closing `Done N runs in S second(s)`.
fn done_runs(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        l.strip_prefix("Done ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The nightly toolchain cargo-fuzz needs; the error says how to get it.
fn ensure_nightly() -> Result<()> {
    let ok = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!(
            "fuzzing needs the nightly toolchain (libFuzzer's instrumentation): \
             `rustup toolchain install nightly`"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzers_closing_line_gives_the_runs() {
        let log = "#1048576\tpulse  cov: 812 ft: 2310 corp: 140/9Kb exec/s: 52428\n\
                   #1100000\tDONE   cov: 815 ft: 2322 corp: 141/9Kb lim: 4096 exec/s: 52380\n\
                   Done 1100000 runs in 21 second(s)\n";
        assert_eq!(done_runs(log), Some(1_100_000));
        assert_eq!(done_runs("INFO: Seed: 1\n"), None);
    }

    #[test]
    fn every_target_has_a_binary_and_seeds() {
        let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
        for t in TARGETS {
            assert!(
                manifest.contains(&format!("name = \"{t}\"")),
                "fuzz/Cargo.toml has no [[bin]] {t}"
            );
            let seeds = root().join("fuzz/seeds").join(t);
            let n = std::fs::read_dir(&seeds)
                .unwrap_or_else(|e| panic!("{}: {e}", seeds.display()))
                .count();
            assert!(n >= 2, "fuzz/seeds/{t} has {n} seeds");
        }
    }
}
