//! `cargo xtask bench loadgen`: fledge-loadgen beside wrk, oha and hey against the same hyper
//! hello-world server on loopback, with the same connections and duration, one after the
//! other. It prints requests per second, client CPU seconds per 100k requests and p99 latency
//! as a table, and each as a ratio to wrk.
//!
//! The server runs pinned to the first CPU with one thread and each client pinned to the
//! second (`taskset`), so on two cores neither takes the other's core; every client runs
//! closed-loop (as fast as its connections go), with one thread.
//!
//! The tools are installed by this task when missing: wrk from Debian's package (`apt-get`,
//! as root or through `sudo -n`), oha from crates.io (`cargo install --locked` into
//! `~/.cache/fledge/bin/oha-<version>/`), hey from the Go module proxy at the version pinned in
//! `xtask/go-bench/go.mod` (built into `~/.cache/fledge/bin/hey-<version>/`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::measure;
use crate::cluster::build::{cache_dir, check_go_version, go_command, module_version};
use crate::dataplane::build::{download_module_in, go_env};
use crate::util::{cargo, root, run as run_cmd, target_dir};

/// The oha release from crates.io.
const OHA_VERSION: &str = "1.16.0";
/// The pinned module file of the Go tools.
const GO_MOD: &str = include_str!("../../go-bench/go.mod");
/// hey's module.
const HEY_MODULE: &str = "github.com/rakyll/hey";

/// Arguments of `cargo xtask bench loadgen`.
#[derive(clap::Args)]
pub struct LoadgenArgs {
    /// Connections of every tool.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Seconds each tool runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Which tools, in order (fledge, wrk, oha, hey).
    #[arg(long, value_delimiter = ',', default_value = "wrk,fledge,oha,hey")]
    tools: Vec<String>,
    /// Rounds over all the tools; each tool's best round (by req/s) is reported, which keeps
    /// out most of the noise of other work on a shared machine.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

/// What one tool measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Requests completed.
    pub requests: f64,
    /// Requests per second, as the tool reports it.
    pub rate: f64,
    /// 99th percentile latency, seconds.
    pub p99: f64,
}

pub fn run(args: LoadgenArgs) -> Result<()> {
    for t in &args.tools {
        if !["fledge", "wrk", "oha", "hey"].contains(&t.as_str()) {
            bail!("unknown tool {t:?} (fledge, wrk, oha, hey)");
        }
    }
    let (loadgen, hello) = build_ours()?;
    let mut bins: Vec<(String, PathBuf)> = Vec::new();
    for t in &args.tools {
        let bin = match t.as_str() {
            "fledge" => loadgen.clone(),
            "wrk" => ensure_wrk()?,
            "oha" => ensure_oha()?,
            _ => ensure_hey()?,
        };
        bins.push((t.clone(), bin));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = cpus >= 2 && which("taskset").is_some();
    if !pin {
        eprintln!("bench: taskset or a second CPU is missing; server and clients share the CPUs");
    }
    let pinned = |cpu: &str, program: &Path| -> Command {
        if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", cpu]).arg(program);
            c
        } else {
            Command::new(program)
        }
    };
    let mut server = Server::start(pinned("0", &hello).args(["--threads", "1"]))?;
    let url = format!("http://{}/", server.addr);
    let ticks = clock_ticks();
    let secs = args.seconds.to_string();
    let conns = args.connections.to_string();
    eprintln!(
        "bench: {} connections, {}s each, against {url} (server on CPU 0, clients on CPU 1)",
        args.connections, args.seconds
    );
    let mut rows: Vec<(String, Figures, f64, f64)> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        for (tool, bin) in &bins {
            let mut cmd = pinned("1", bin);
            match tool.as_str() {
                "fledge" => cmd
                    .args(["run", "-z", &format!("{secs}s"), "-c", &conns])
                    .args(["--threads", "1", "--json", &url]),
                "wrk" => cmd.args([
                    "-t1",
                    "-c",
                    &conns,
                    "-d",
                    &format!("{secs}s"),
                    "--latency",
                    &url,
                ]),
                "oha" => cmd
                    .args(["-z", &format!("{secs}s"), "-c", &conns, "--no-tui"])
                    .args(["--output-format", "json", &url]),
                _ => cmd.args(["-z", &format!("{secs}s"), "-c", &conns, "-cpus", "1", &url]),
            };
            let server_before = server.cpu_ticks()?;
            let children_before = children_cpu_ticks()?;
            let started = Instant::now();
            let out = cmd
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {}", bin.display()))?;
            let wall = started.elapsed().as_secs_f64();
            let client_cpu = (children_cpu_ticks()? - children_before) / ticks;
            let server_cpu = (server.cpu_ticks()? - server_before) / ticks;
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                bail!(
                    "{tool} failed ({}): {}{}",
                    out.status,
                    text,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let figures = match tool.as_str() {
                "fledge" => parse_fledge(&text),
                "wrk" => parse_wrk(&text),
                "oha" => parse_oha(&text),
                _ => parse_hey(&text),
            }
            .with_context(|| format!("reading {tool}'s output:\n{text}"))?;
            eprintln!(
                "bench: round {round}, {tool}: {:.0} req/s, {:.0} requests in {wall:.1}s, client CPU {client_cpu:.2}s, \
             server CPU {server_cpu:.2}s",
                figures.rate, figures.requests
            );
            match rows.iter_mut().find(|r| &r.0 == tool) {
                Some(best) if best.1.rate >= figures.rate => {}
                Some(best) => *best = (tool.clone(), figures, client_cpu, server_cpu),
                None => rows.push((tool.clone(), figures, client_cpu, server_cpu)),
            }
        }
    }
    server.stop();
    println!(
        "{}",
        render(&rows, args.connections, args.seconds, args.rounds.max(1))
    );
    Ok(())
}

/// The table, with ratios to wrk when wrk ran.
fn render(
    rows: &[(String, Figures, f64, f64)],
    connections: usize,
    seconds: u64,
    rounds: usize,
) -> String {
    let per_100k = |cpu: f64, f: &Figures| {
        if f.requests > 0.0 {
            cpu / f.requests * 100_000.0
        } else {
            f64::NAN
        }
    };
    let wrk = rows.iter().find(|r| r.0 == "wrk");
    let mut table = vec![
        [
            "tool",
            "req/s",
            "client CPU s / 100k req",
            "server CPU s / 100k req",
            "p99",
            "req/s vs wrk",
            "CPU vs wrk",
            "p99 vs wrk",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (tool, f, client, server) in rows {
        let cpu = per_100k(*client, f);
        let ratio = |ours: f64, theirs: f64| {
            if theirs > 0.0 && ours.is_finite() {
                format!("{:.2}x", ours / theirs)
            } else {
                "-".into()
            }
        };
        let (r_rate, r_cpu, r_p99) = match wrk {
            Some((_, w, wc, _)) => (
                ratio(f.rate, w.rate),
                ratio(cpu, per_100k(*wc, w)),
                ratio(f.p99, w.p99),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let name = if tool == "fledge" {
            "fledge-loadgen".to_string()
        } else {
            tool.clone()
        };
        table.push(vec![
            name,
            format!("{:.0}", f.rate),
            format!("{cpu:.2}"),
            format!("{:.2}", per_100k(*server, f)),
            measure::secs(f.p99),
            r_rate,
            r_cpu,
            r_p99,
        ]);
    }
    format!(
        "load generators against a hyper hello-world server on loopback, {connections} \
         connections, {seconds}s each, closed loop, one client thread, best of {rounds} \
         rounds:\n{}",
        measure::table(&table)
    )
}

/// A latency such as `1.23ms`, `850.00us`, `2.1s` (wrk's units), in seconds.
fn parse_unit_duration(s: &str) -> Option<f64> {
    fledge_api::parse_duration(s).ok().map(|d| d.as_secs_f64())
}

/// wrk's `--latency` output.
pub fn parse_wrk(text: &str) -> Option<Figures> {
    let mut f = Figures::default();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            f.rate = rest.trim().parse().ok()?;
        } else if line.contains(" requests in ") {
            f.requests = line.split_whitespace().next()?.parse().ok()?;
        } else if let Some(rest) = line.strip_prefix("99%") {
            f.p99 = parse_unit_duration(rest)?;
        }
    }
    (f.rate > 0.0 && f.requests > 0.0).then_some(f)
}

/// hey's summary.
pub fn parse_hey(text: &str) -> Option<Figures> {
    let mut f = Figures::default();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            f.rate = rest.trim().parse().ok()?;
        } else if let Some(rest) = line
            .strip_prefix("99% in ")
            // hey v0.1.x prints its percent signs doubled.
            .or_else(|| line.strip_prefix("99%% in "))
        {
            f.p99 = rest.trim().strip_suffix("secs")?.trim().parse().ok()?;
        } else if line.starts_with('[') && line.ends_with("responses") {
            let n: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            f.requests += n;
        }
    }
    (f.rate > 0.0 && f.requests > 0.0).then_some(f)
}

/// oha's `--output-format json`.
pub fn parse_oha(text: &str) -> Option<Figures> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    let requests: f64 = v
        .get("statusCodeDistribution")?
        .as_object()?
        .values()
        .filter_map(serde_json::Value::as_f64)
        .sum();
    Some(Figures {
        requests,
        rate: v.pointer("/summary/requestsPerSec")?.as_f64()?,
        p99: v.pointer("/latencyPercentiles/p99")?.as_f64()?,
    })
}

/// `fledge-loadgen run --json`.
pub fn parse_fledge(text: &str) -> Option<Figures> {
    let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
    Some(Figures {
        requests: v.get("requests")?.as_f64()?,
        rate: v.get("requests_per_second")?.as_f64()?,
        p99: v.pointer("/latency_ms/p99")?.as_f64()? / 1000.0,
    })
}

/// CPU ticks of this process's waited-for children (`cutime` + `cstime`, fields 16 and 17 of
/// `/proc/self/stat`): a client's CPU time is the difference across its run.
fn children_cpu_ticks() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    parse_children_ticks(&stat).context("unreadable /proc/self/stat")
}

fn parse_children_ticks(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let cutime: f64 = fields.get(16 - 3)?.parse().ok()?;
    let cstime: f64 = fields.get(17 - 3)?.parse().ok()?;
    Some(cutime + cstime)
}

/// `getconf CLK_TCK`, 100 when unknown.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(program))
            .find(|f| f.is_file())
    })
}

/// The hello-world server, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(cmd: &mut Command) -> Result<Server> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .context("starting the hello-world server")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
        if line.trim().is_empty() {
            let _ = child.kill();
            bail!("the hello-world server printed no address");
        }
        Ok(Server {
            child,
            addr: line.trim().to_string(),
        })
    }

    fn cpu_ticks(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        Ok(measure::parse_cpu_ticks(&stat).context("unreadable server stat")? as f64)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds fledge-loadgen and the hello-world server in release mode.
fn build_ours() -> Result<(PathBuf, PathBuf)> {
    run_cmd(
        "cargo build --release -p fledge-loadgen (the CLI and the hello-world server)",
        cargo().args([
            "build",
            "--release",
            "-p",
            "fledge-loadgen",
            "--bin",
            "fledge-loadgen",
            "--bin",
            "fledge-loadgen-hello",
        ]),
    )?;
    let target = target_dir();
    Ok((
        target.join("release/fledge-loadgen"),
        target.join("release/fledge-loadgen-hello"),
    ))
}

/// wrk from PATH, or Debian's package installed now (as root, or with `sudo -n`).
fn ensure_wrk() -> Result<PathBuf> {
    if let Some(w) = which("wrk") {
        return Ok(w);
    }
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let prefix: Vec<&str> = if root_user {
        vec![]
    } else if which("sudo").is_some() {
        vec!["sudo", "-n"]
    } else {
        bail!(
            "wrk is not installed and this user can neither install packages (not root) nor use \
             sudo; install it with `apt-get install wrk` as root"
        );
    };
    let apt = |args: &[&str]| -> Command {
        let mut c = Command::new(prefix.first().copied().unwrap_or("apt-get"));
        if !prefix.is_empty() {
            c.args(&prefix[1..]).arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run_cmd("apt-get update", &mut apt(&["update", "-q"]))?;
    run_cmd(
        "apt-get install wrk",
        &mut apt(&["install", "-y", "-q", "wrk"]),
    )?;
    which("wrk").context("wrk is still not on PATH after apt-get install wrk")
}

/// oha from crates.io, built once into the cache.
fn ensure_oha() -> Result<PathBuf> {
    let dir = cache_dir()?.join("bin").join(format!("oha-{OHA_VERSION}"));
    let bin = dir.join("bin").join("oha");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("bench: building oha {OHA_VERSION} from crates.io (once; a few minutes)");
    run_cmd(
        &format!("cargo install oha {OHA_VERSION}"),
        Command::new("nice")
            .args(["-n", "19"])
            .arg(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "install",
                "--locked",
                "--quiet",
                "oha",
                "--version",
                OHA_VERSION,
            ])
            .arg("--root")
            .arg(&dir),
    )?;
    if !bin.is_file() {
        bail!("cargo install oha did not produce {}", bin.display());
    }
    Ok(bin)
}

/// hey from the Go module proxy at the pinned version, built once into the cache.
fn ensure_hey() -> Result<PathBuf> {
    let version = module_version(GO_MOD, HEY_MODULE).context("hey is not pinned in go.mod")?;
    let cache = cache_dir()?;
    let dir = cache.join("bin").join(format!("hey-{version}"));
    let bin = dir.join("hey");
    if bin.is_file() {
        return Ok(bin);
    }
    let go = go_command()?;
    check_go_version(&go)?;
    eprintln!("bench: building hey {version} from the Go module proxy (once)");
    let module_dir = download_module_in(&root().join("xtask").join("go-bench"), HEY_MODULE)?;
    std::fs::create_dir_all(&dir)?;
    let partial = dir.join(format!(".hey.partial-{}", std::process::id()));
    let mut cmd = Command::new("nice");
    cmd.current_dir(&module_dir)
        .args(["-n", "19"])
        .arg(&go)
        .args(["build", "-trimpath", "-ldflags=-s -w", "-o"])
        .arg(&partial)
        .arg(".");
    go_env(&mut cmd, &cache);
    run_cmd(&format!("go build {HEY_MODULE}@{version}"), &mut cmd)?;
    std::fs::rename(&partial, &bin)?;
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk() {
        let text = "Running 10s test @ http://127.0.0.1:1/\n  1 threads and 50 connections\n\
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   1.02ms  200.00us   9.00ms   90.00%\n\
            Latency Distribution\n     50%    0.98ms\n     75%    1.10ms\n     90%    1.30ms\n     99%    2.50ms\n\
            812345 requests in 10.00s, 68.17MB read\nRequests/sec:  81234.50\nTransfer/sec:      6.82MB\n";
        assert_eq!(
            parse_wrk(text),
            Some(Figures {
                requests: 812345.0,
                rate: 81234.5,
                p99: 0.0025
            })
        );
        assert_eq!(parse_unit_duration("850.00us"), Some(850e-6));
        assert_eq!(parse_unit_duration("1.5s"), Some(1.5));
        assert_eq!(parse_wrk("nothing"), None);
    }

    #[test]
    fn reads_hey() {
        let text = "\nSummary:\n  Total:\t10.0012 secs\n  Slowest:\t0.0500 secs\n  Requests/sec:\t30123.4567\n\n\
            Latency distribution:\n  10%% in 0.0010 secs\n  99%% in 0.0042 secs\n\n\
            Status code distribution:\n  [200]\t301200 responses\n  [503]\t34 responses\n";
        let f = parse_hey(text).unwrap();
        assert_eq!(f.requests, 301234.0);
        assert_eq!(f.rate, 30123.4567);
        assert_eq!(f.p99, 0.0042);
    }

    #[test]
    fn reads_oha_and_fledge_json() {
        let oha = r#"{"summary":{"successRate":1.0,"requestsPerSec":55000.5},
            "latencyPercentiles":{"p50":0.001,"p99":0.003},"statusCodeDistribution":{"200":550005}}"#;
        assert_eq!(
            parse_oha(oha),
            Some(Figures {
                requests: 550005.0,
                rate: 55000.5,
                p99: 0.003
            })
        );
        let ours = r#"{"requests":1000,"requests_per_second":100.0,"latency_ms":{"p99":2.5}}"#;
        assert_eq!(
            parse_fledge(ours),
            Some(Figures {
                requests: 1000.0,
                rate: 100.0,
                p99: 0.0025
            })
        );
    }

    #[test]
    fn reads_children_cpu_from_proc_stat() {
        let stat = "77 (xtask) S 1 77 77 0 -1 4194560 1000 0 0 0 250 31 120 45 20 0 3 0 1 2 3";
        assert_eq!(parse_children_ticks(stat), Some(165.0));
    }

    #[test]
    fn renders_ratios_to_wrk() {
        let f = |rate: f64, p99: f64| Figures {
            requests: rate * 10.0,
            rate,
            p99,
        };
        let rows = vec![
            ("wrk".to_string(), f(80_000.0, 0.002), 8.0, 10.0),
            ("fledge".to_string(), f(88_000.0, 0.001), 8.8, 11.0),
        ];
        let t = render(&rows, 50, 10, 2);
        assert!(t.contains("fledge-loadgen"), "{t}");
        assert!(t.contains("1.10x"), "{t}");
        assert!(t.contains("0.50x"), "{t}");
        assert!(t.contains("1.00x"), "{t}");
    }
}
