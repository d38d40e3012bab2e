//! `cargo xtask bench soak`: the controller through a long series of rollouts on the local
//! control plane, watching for leaks.
//!
//! 1. N Deployments and N blue/green Canaries on the `kubernetes` provider (as `bench scale`
//!    makes them) in namespace `fledge-soak-<N>`, each Canary with a `rollout` webhook that
//!    points at a small HTTP server the bench runs on 127.0.0.1; `fledge run` starts (its log
//!    goes to `target/bench/soak-<N>/fledge.log`) and the bench waits until every Canary is
//!    `Initialized`.
//! 2. The soak: about once a second one `kubectl get canaries.fledge.dev` reads every Canary's
//!    phase and `status.lastAppliedSpec`. A Canary that finished its rollout gets the next one
//!    at once: its Deployment a new image `registry.invalid/fledge-soak/app:r<k>` (server-side
//!    apply, one kubectl for all the Canaries of a poll), until `--rollouts` have completed.
//! 3. Every `--sample-every` seconds: the controller's resident memory, open file descriptors
//!    (`/proc/<pid>/fd`), tasks (`/proc/<pid>/task`) and established TCP connections to the API
//!    server's port (the socket inodes of `/proc/<pid>/fd` looked up in
//!    `/proc/<pid>/net/tcp{,6}`), with the rollouts completed so far.
//!
//! **Which rollouts fail.** Rollouts are numbered in the order the bench starts them; rollout
//! `k` fails when `k % --fail-every == 0` (every tenth by default). Before it changes the image
//! of Canary `c` for rollout `k`, the bench puts `c` in the webhook server's set of failing
//! Canaries when `k` fails, and takes it out otherwise. The webhook answers 500 when the
//! payload's `name` is in the set and 200 otherwise, so every `rollout` webhook call of a
//! failing rollout fails, and the Canary rolls back once `analysis.threshold` (2) checks have
//! failed. The set is only changed while the Canary is idle (its previous rollout has ended
//! and the new image is not applied yet), so no call of one rollout sees the choice of another.
//!
//! **Counting each rollout once.** The bench remembers the `lastAppliedSpec` a Canary showed
//! when it got its new image; the rollout has completed when the Canary is `Succeeded`
//! (promoted) or `Failed` (rolled back) with another `lastAppliedSpec`, the hash of the new
//! pod template (every image is new, so every hash is). Until the controller has seen the new
//! revision the Canary still shows the old terminal phase with the old hash, which does not
//! count. An outcome other than the one chosen (a promotion of a failing rollout, or a
//! rollback of a passing one) is counted as unexpected.
//!
//! At the end: a table of the samples, memory, file descriptor and connection growth after the
//! warm-up (the first 1,000 rollouts, or the first 10% of fewer than 10,000) against the
//! targets (memory < 10%, file descriptors and connections not at all), an SVG plot of
//! resident memory over completed rollouts and the samples as CSV, both in
//! `target/bench/soak-<N>/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::hook::Webhook;
use super::measure::{Summary, mib, secs, table};
use super::scale::{
    Controller, Kind, Kubectl, build_fledge, canary_of, clean_up, deployment, install_crds, name,
    read_memory, remove_namespace, wait_for,
};
use crate::cluster;
use crate::util::root;

/// Field manager of the objects the soak creates.
const MANAGER: &str = "fledge-soak";
/// Field manager of the image changes: another one than the creator's, so that its partial
/// objects leave every other field alone.
const ROLLOUT_MANAGER: &str = "fledge-soak-rollouts";
/// Images of the rollouts: `IMAGE` followed by `r<k>` (kwok never pulls them).
const IMAGE: &str = "registry.invalid/fledge-soak/app:";
/// How often the Canaries are read.
const POLL: Duration = Duration::from_secs(1);
/// Rows of the printed sample table at most (the CSV has them all).
const TABLE_ROWS: usize = 25;

/// Arguments of `cargo xtask bench soak`.
#[derive(clap::Args)]
pub struct SoakArgs {
    /// Number of Deployments with Canaries rolling out at the same time.
    #[arg(long, default_value_t = 100)]
    canaries: usize,
    /// Completed rollouts (promoted or rolled back) after which the soak ends.
    #[arg(long, default_value_t = 10_000)]
    rollouts: u64,
    /// `analysis.interval` of every Canary.
    #[arg(long, default_value = "1s")]
    interval: String,
    /// `analysis.iterations` of every Canary (blue/green: steps before promotion).
    #[arg(long, default_value_t = 2)]
    iterations: u32,
    /// Every this many rollouts one fails its `rollout` webhook and is rolled back (0: none).
    #[arg(long, default_value_t = 10)]
    fail_every: u64,
    /// Seconds between two samples of the controller's memory, descriptors, tasks and
    /// connections.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    /// Seconds to wait for each phase (initialization, the soak itself, clean-up) before
    /// giving up.
    #[arg(long, default_value_t = 10_800)]
    timeout: u64,
    /// Leave the namespace and its objects behind (the next run of the same N removes them).
    #[arg(long)]
    keep: bool,
    /// Run this fledge binary instead of building `target/release/fledge`.
    #[arg(long, value_name = "PATH")]
    fledge: Option<PathBuf>,
}

pub fn run(args: SoakArgs) -> Result<()> {
    super::scale::parse_interval(&args.interval)?;
    if args.canaries == 0 || args.canaries > 9999 {
        bail!("--canaries: must be between 1 and 9999");
    }
    if args.rollouts == 0 || args.sample_every == 0 {
        bail!("--rollouts and --sample-every must be at least 1");
    }
    let cluster = cluster::ensure_up()?;
    let api_port = api_port(&cluster.server)?;
    let fledge = match &args.fledge {
        Some(p) => p.clone(),
        None => build_fledge()?,
    };
    let k = Kubectl::new(&cluster);
    install_crds(&k)?;

    let n = args.canaries;
    let ns = format!("fledge-soak-{n}");
    let timeout = Duration::from_secs(args.timeout);
    let dir = root()
        .join("target")
        .join("bench")
        .join(format!("soak-{n}"));
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "==> soak: {n} canaries in namespace {ns}, interval {}, {} iterations, {} rollouts, every \
         {} failing",
        args.interval,
        args.iterations,
        args.rollouts,
        ordinal(args.fail_every)
    );
    remove_namespace(&k, &ns, timeout)?;
    k.run(&["create", "namespace", &ns])?;

    let hook = Webhook::start()?;
    let url = format!("http://127.0.0.1:{}/", hook.port);
    eprintln!("==> creating {n} Deployments and {n} Canaries (rollout webhook {url})");
    let mut docs = Vec::with_capacity(2 * n);
    for i in 0..n {
        docs.push(deployment(&ns, &name(i)));
        docs.push(canary_of(
            Kind::Fledge,
            &ns,
            &name(i),
            &args.interval,
            args.iterations,
            Some(&url),
        ));
    }
    k.apply_parallel(&docs, MANAGER, &[])?;

    eprintln!("==> starting {} (log: {})", fledge.display(), dir.display());
    let log = dir.join("fledge.log");
    let mut ctrl = Controller::start(&fledge, &cluster.kubeconfig, &ns, &log)?;
    let mut soak = Soak::new(&args, api_port);
    let driven = wait_for("every Canary Initialized", timeout, Some(&mut ctrl), || {
        let states = canary_states(&k, &ns)?;
        let done = states.values().filter(|(p, _)| p == "Initialized").count();
        Ok((done >= n, format!("{done}/{n} Initialized")))
    })
    .and_then(|()| {
        let driven = soak.drive(&k, &mut ctrl, &ns, &hook, timeout);
        soak.finish(&ctrl);
        driven
    });
    if let Err(e) = &driven {
        eprintln!("    soak stopped: {e:#}");
    }
    // Printed now, so that the figures survive a failed clean-up.
    let written = if soak.samples.is_empty() {
        Ok(())
    } else {
        let calls = hook.calls();
        println!("{}", soak.render(&args, calls, &log));
        soak.write_files(&dir)
    };
    let cleanup = if args.keep {
        eprintln!("==> leaving namespace {ns} (--keep)");
        Ok(())
    } else {
        clean_up(&k, &mut ctrl, &ns, timeout)
    };
    ctrl.stop();
    drop(hook);
    driven?;
    written?;
    cleanup
}

/// `n` as "10th", "2nd", …, for the banner.
fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    match n {
        0 => "none".into(),
        1 => "one".into(),
        _ => format!("{n}{suffix}"),
    }
}

/// The port of the API server URL (`https://127.0.0.1:41695`).
fn api_port(server: &str) -> Result<u16> {
    server
        .trim_end_matches('/')
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("no port in the API server URL {server:?}"))
}

/// Whether rollout `k` (counted from 1) is chosen to fail.
fn fails(k: u64, fail_every: u64) -> bool {
    fail_every > 0 && k.is_multiple_of(fail_every)
}

/// Rollouts before the growth is measured: the first 1,000, or the first 10% of fewer than
/// 10,000.
fn warmup(rollouts: u64) -> u64 {
    (rollouts / 10).min(1000)
}

/// How a rollout ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Promoted,
    RolledBack,
}

/// The outcome of a Canary's rollout started when it showed `before` as its
/// `lastAppliedSpec`, if the Canary, now in `phase` with `spec`, has finished it.
fn finished(before: &str, phase: &str, spec: &str) -> Option<Outcome> {
    if spec.is_empty() || spec == before {
        return None;
    }
    match phase {
        "Succeeded" => Some(Outcome::Promoted),
        "Failed" => Some(Outcome::RolledBack),
        _ => None,
    }
}

/// The rollout a Canary is in.
struct Pending {
    k: u64,
    before: String,
    fail: bool,
    since: Instant,
}

/// One look at the controller.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Sample {
    /// Seconds since the soak began.
    at: f64,
    /// Rollouts completed, and of them rolled back.
    rollouts: u64,
    rolled_back: u64,
    rss_kib: u64,
    anon_kib: u64,
    fds: usize,
    tasks: usize,
    api_connections: usize,
    /// CPU seconds since the controller started.
    cpu: f64,
}

/// The state and figures of a soak.
struct Soak {
    target: u64,
    fail_every: u64,
    sample_every: Duration,
    api_port: u16,
    issued: u64,
    promoted: u64,
    rolled_back: u64,
    unexpected: Vec<String>,
    /// Seconds from the image change to the end of each rollout.
    durations: Vec<f64>,
    pending: BTreeMap<String, Pending>,
    samples: Vec<Sample>,
    /// When the soak began, and its wall time once it ended.
    started: Instant,
    wall: f64,
}

impl Soak {
    fn new(args: &SoakArgs, api_port: u16) -> Self {
        Soak {
            target: args.rollouts,
            fail_every: args.fail_every,
            sample_every: Duration::from_secs(args.sample_every),
            api_port,
            issued: 0,
            promoted: 0,
            rolled_back: 0,
            unexpected: Vec::new(),
            durations: Vec::new(),
            pending: BTreeMap::new(),
            samples: Vec::new(),
            started: Instant::now(),
            wall: 0.0,
        }
    }

    fn completed(&self) -> u64 {
        self.promoted + self.rolled_back
    }

    /// Rolls the Canaries out until the target; `finish` takes the last sample.
    fn drive(
        &mut self,
        k: &Kubectl,
        ctrl: &mut Controller,
        ns: &str,
        hook: &Webhook,
        timeout: Duration,
    ) -> Result<()> {
        eprintln!(
            "==> rolling out until {} rollouts have completed; a sample every {} s",
            self.target,
            self.sample_every.as_secs()
        );
        let started = Instant::now();
        self.started = started;
        let mut next_sample = started;
        let mut errors = 0;
        while self.completed() < self.target {
            let tick = Instant::now();
            ctrl.check_alive()?;
            if tick >= next_sample {
                let s = self.sample(ctrl)?;
                self.samples.push(s);
                self.progress(&s);
                next_sample += self.sample_every;
            }
            if started.elapsed() > timeout {
                bail!(
                    "timed out after {timeout:?} with {} of {} rollouts completed",
                    self.completed(),
                    self.target
                );
            }
            // The API server may be slow to answer under load; a few failures in a row are
            // tolerated.
            let states = match canary_states(k, ns) {
                Ok(s) => {
                    errors = 0;
                    s
                }
                Err(e) if errors < 5 => {
                    errors += 1;
                    eprintln!("    reading the Canaries: {e:#}");
                    sleep(POLL);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let changes = self.step(&states, hook);
            if !changes.is_empty() {
                apply_images(k, ns, &changes)?;
            }
            sleep(POLL.saturating_sub(tick.elapsed()));
        }
        Ok(())
    }

    /// The soak's wall time, and a last sample unless the controller is gone.
    fn finish(&mut self, ctrl: &Controller) {
        self.wall = self.started.elapsed().as_secs_f64();
        if let Ok(s) = self.sample(ctrl) {
            self.samples.push(s);
        }
    }

    /// Counts the rollouts that ended and starts the next ones; the images to set, by name.
    fn step(
        &mut self,
        states: &BTreeMap<String, (String, String)>,
        hook: &Webhook,
    ) -> Vec<(String, String)> {
        let mut changes = Vec::new();
        for (canary, (phase, spec)) in states {
            if let Some(p) = self.pending.get(canary) {
                let Some(outcome) = finished(&p.before, phase, spec) else {
                    continue;
                };
                self.durations.push(p.since.elapsed().as_secs_f64());
                match outcome {
                    Outcome::Promoted => self.promoted += 1,
                    Outcome::RolledBack => self.rolled_back += 1,
                }
                if (outcome == Outcome::RolledBack) != p.fail {
                    self.unexpected
                        .push(format!("rollout {} of {canary}: {outcome:?}", p.k));
                }
                self.pending.remove(canary);
            }
            let idle = matches!(phase.as_str(), "Initialized" | "Succeeded" | "Failed");
            if !idle || self.issued >= self.target {
                continue;
            }
            self.issued += 1;
            let k = self.issued;
            let fail = fails(k, self.fail_every);
            hook.choose(canary, fail);
            self.pending.insert(
                canary.clone(),
                Pending {
                    k,
                    before: spec.clone(),
                    fail,
                    since: Instant::now(),
                },
            );
            changes.push((canary.clone(), format!("{IMAGE}r{k}")));
        }
        changes
    }

    fn sample(&self, ctrl: &Controller) -> Result<Sample> {
        let pid = ctrl.pid;
        let memory = read_memory(pid)?;
        Ok(Sample {
            at: self.started.elapsed().as_secs_f64(),
            rollouts: self.completed(),
            rolled_back: self.rolled_back,
            rss_kib: memory.rss_kib,
            anon_kib: memory.anon_kib,
            fds: count_entries(&format!("/proc/{pid}/fd"))?,
            tasks: count_entries(&format!("/proc/{pid}/task"))?,
            api_connections: api_connections(pid, self.api_port)?,
            cpu: ctrl.cpu_secs()?,
        })
    }

    fn progress(&self, s: &Sample) {
        eprintln!(
            "    {:>6.0} s: {}/{} rollouts ({} rolled back, {} in flight), RSS {}, {} fds, {} \
             tasks, {} API connections",
            s.at,
            s.rollouts,
            self.target,
            s.rolled_back,
            self.pending.len(),
            mib(s.rss_kib),
            s.fds,
            s.tasks,
            s.api_connections
        );
    }

    fn render(&self, args: &SoakArgs, calls: (u64, u64), log: &Path) -> String {
        let done = self.completed();
        let mut out = format!(
            "\nfledge soak benchmark: {} canaries (blue/green, kubernetes provider), interval {}, \
             {} iterations, every {} rollout failing\n\n",
            args.canaries,
            args.interval,
            args.iterations,
            ordinal(args.fail_every)
        );
        let cpu = self.samples.last().map_or(0.0, |s| s.cpu);
        out.push_str(&format!(
            "{done} of {} rollouts completed in {} ({:.2}/s): {} promoted, {} rolled back, {} \
             unexpected outcomes\nrollout webhook calls: {} passed, {} failed\ncontroller CPU: {} \
             ({:.1} ms per rollout, {:.0}% of a core)\n",
            self.target,
            secs(self.wall),
            done as f64 / self.wall.max(1e-9),
            self.promoted,
            self.rolled_back,
            self.unexpected.len(),
            calls.0,
            calls.1,
            secs(cpu),
            1000.0 * cpu / done.max(1) as f64,
            100.0 * cpu / self.wall.max(1e-9),
        ));
        for u in self.unexpected.iter().take(10) {
            out.push_str(&format!("  unexpected: {u}\n"));
        }
        if let Some(s) = Summary::of(&self.durations) {
            out.push_str(&format!(
                "image change -> rollout ended: p50 {}, p99 {}, max {}\n",
                secs(s.p50),
                secs(s.p99),
                secs(s.max)
            ));
        }
        out.push('\n');

        let mut rows = vec![
            [
                "time",
                "rollouts",
                "rolled back",
                "RSS",
                "anonymous",
                "fds",
                "tasks",
                "API connections",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for s in thin(&self.samples, TABLE_ROWS) {
            rows.push(vec![
                format!("{:.0} s", s.at),
                s.rollouts.to_string(),
                s.rolled_back.to_string(),
                mib(s.rss_kib),
                mib(s.anon_kib),
                s.fds.to_string(),
                s.tasks.to_string(),
                s.api_connections.to_string(),
            ]);
        }
        out.push_str(&table(&rows));
        if self.samples.len() > TABLE_ROWS {
            out.push_str(&format!(
                "({TABLE_ROWS} of {} samples; all in samples.csv)\n",
                self.samples.len()
            ));
        }

        let w = warmup(self.target);
        if let Some(g) = Growth::of(&self.samples, w) {
            let ok = |b: bool| if b { "met" } else { "MISSED" };
            let (b, e) = (g.base, g.end);
            out.push_str(&format!(
                "\ntargets (after the first {w} rollouts: {} at {} rollouts -> {} at {}):\n  \
                 resident memory grows < 10%: {} -> {} ({:+.1}%; peak {}, {:+.1}%) — {}\n  \
                 open file descriptors do not grow: {} -> {} ({:+}) — {}\n  \
                 API connections do not grow: {} -> {} ({:+}) — {}\n  \
                 tasks: {} -> {} ({:+})\n",
                secs(b.at),
                b.rollouts,
                secs(e.at),
                e.rollouts,
                mib(b.rss_kib),
                mib(e.rss_kib),
                g.memory_pct(),
                mib(g.peak_rss_kib),
                g.peak_pct(),
                ok(g.memory_pct() < 10.0),
                b.fds,
                e.fds,
                g.fds(),
                ok(g.fds() <= 0),
                b.api_connections,
                e.api_connections,
                g.connections(),
                ok(g.connections() <= 0),
                b.tasks,
                e.tasks,
                e.tasks as i64 - b.tasks as i64,
            ));
            if done < self.target {
                out.push_str("  (the soak did not finish: figures up to where it stopped)\n");
            }
        } else {
            out.push_str(&format!(
                "\nno sample after the first {w} rollouts: no growth figures\n"
            ));
        }
        out.push_str(&format!("controller log: {}\n", log.display()));
        out
    }

    /// `memory.svg` and `samples.csv` in `dir`; prints their paths.
    fn write_files(&self, dir: &Path) -> Result<()> {
        let points: Vec<(f64, f64)> = self
            .samples
            .iter()
            .map(|s| (s.rollouts as f64, s.rss_kib as f64 / 1024.0))
            .collect();
        let svg = svg_plot(
            &points,
            &format!(
                "fledge soak: resident memory over {} rollouts",
                self.completed()
            ),
            "completed rollouts",
            "resident memory (MiB)",
            Some(warmup(self.target) as f64),
        );
        let svg_path = dir.join("memory.svg");
        std::fs::write(&svg_path, svg)
            .with_context(|| format!("writing {}", svg_path.display()))?;
        let csv_path = dir.join("samples.csv");
        std::fs::write(&csv_path, csv(&self.samples))
            .with_context(|| format!("writing {}", csv_path.display()))?;
        println!("memory plot: {}", svg_path.display());
        println!("samples: {}", csv_path.display());
        Ok(())
    }
}

/// Every Canary's phase and `lastAppliedSpec`, by name.
fn canary_states(k: &Kubectl, ns: &str) -> Result<BTreeMap<String, (String, String)>> {
    let rows = k.table(
        "canaries.fledge.dev",
        ns,
        "{.status.phase}{\"\\t\"}{.status.lastAppliedSpec}",
    )?;
    Ok(rows
        .into_iter()
        .map(|(name, v)| {
            let (phase, spec) = v.split_once('\t').unwrap_or((v.as_str(), ""));
            let state = (phase.to_string(), spec.to_string());
            (name, state)
        })
        .collect())
}

/// Gives each named Deployment its image, with one server-side apply of a YAML stream of
/// partial objects in JSON (kubectl would validate the items of a `List` as whole
/// Deployments; a stream that starts with `{` would be read as JSON, without `---`).
fn apply_images(k: &Kubectl, ns: &str, images: &[(String, String)]) -> Result<()> {
    let docs: Vec<String> = images
        .iter()
        .map(|(name, image)| {
            serde_json::json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}},
            })
            .to_string()
        })
        .collect();
    let list = format!("---\n{}\n", docs.join("\n---\n"));
    let args = [
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        ROLLOUT_MANAGER,
        "-f",
        "-",
    ];
    if let Err(e) = k.run_with(&args, Some(&list)) {
        eprintln!(
            "    applying {} images failed, once more: {e:#}",
            images.len()
        );
        sleep(POLL);
        k.run_with(&args, Some(&list))?;
    }
    Ok(())
}

/// The number of entries of a directory (`/proc/<pid>/fd`, `/proc/<pid>/task`).
fn count_entries(dir: &str) -> Result<usize> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("reading {dir}"))?
        .count())
}

/// The inode of a `/proc/<pid>/fd` link that names a socket (`socket:[12345]`).
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// A line of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TcpSocket {
    remote_port: u16,
    /// `01` is established.
    state: u8,
    inode: u64,
}

/// Parses a line of `/proc/net/tcp{,6}`: `sl local rem st tx:rx tr:when retrnsmt uid timeout
/// inode …`, addresses as `HEXADDR:HEXPORT`. The header line gives `None`.
fn parse_tcp_line(line: &str) -> Option<TcpSocket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (_, port) = f.get(2)?.rsplit_once(':')?;
    Some(TcpSocket {
        remote_port: u16::from_str_radix(port, 16).ok()?,
        state: u8::from_str_radix(f.get(3)?, 16).ok()?,
        inode: f.get(9)?.parse().ok()?,
    })
}

/// Established TCP connections of process `pid` to remote port `port`.
fn api_connections(pid: u32, port: u16) -> Result<usize> {
    let mut inodes = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed since the listing has no link any more.
        if let Ok(link) = std::fs::read_link(entry?.path())
            && let Some(inode) = socket_inode(&link.to_string_lossy())
        {
            inodes.insert(inode);
        }
    }
    let mut count = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        count += text
            .lines()
            .filter_map(parse_tcp_line)
            .filter(|s| s.state == 0x01 && s.remote_port == port && inodes.contains(&s.inode))
            .count();
    }
    Ok(count)
}

/// The growth between the first sample after the warm-up and the last.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Growth {
    base: Sample,
    end: Sample,
    /// The highest resident memory from the base on.
    peak_rss_kib: u64,
}

impl Growth {
    /// `None` without a sample at or after `warmup` rollouts.
    fn of(samples: &[Sample], warmup: u64) -> Option<Growth> {
        let from = samples.iter().position(|s| s.rollouts >= warmup)?;
        let after = &samples[from..];
        Some(Growth {
            base: after[0],
            end: *after.last()?,
            peak_rss_kib: after.iter().map(|s| s.rss_kib).max()?,
        })
    }

    fn pct(from: u64, to: u64) -> f64 {
        100.0 * (to as f64 - from as f64) / (from.max(1) as f64)
    }

    fn memory_pct(&self) -> f64 {
        Self::pct(self.base.rss_kib, self.end.rss_kib)
    }

    fn peak_pct(&self) -> f64 {
        Self::pct(self.base.rss_kib, self.peak_rss_kib)
    }

    fn fds(&self) -> i64 {
        self.end.fds as i64 - self.base.fds as i64
    }

    fn connections(&self) -> i64 {
        self.end.api_connections as i64 - self.base.api_connections as i64
    }
}

/// At most `max` samples, evenly spread, the first and the last always among them.
fn thin(samples: &[Sample], max: usize) -> Vec<Sample> {
    let n = samples.len();
    if n <= max || max < 2 {
        return samples.to_vec();
    }
    (0..max).map(|i| samples[i * (n - 1) / (max - 1)]).collect()
}

/// The samples as CSV with a header line.
fn csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "seconds,rollouts,rolled_back,rss_kib,anon_kib,fds,tasks,api_connections,cpu_seconds\n",
    );
    for s in samples {
        out.push_str(&format!(
            "{:.1},{},{},{},{},{},{},{},{:.2}\n",
            s.at,
            s.rollouts,
            s.rolled_back,
            s.rss_kib,
            s.anon_kib,
            s.fds,
            s.tasks,
            s.api_connections,
            s.cpu
        ));
    }
    out
}

/// Tick values from 0 to at least `max`: 0, step, 2·step, … with a step of 1, 2 or 5 times a
/// power of ten, four to six ticks in all.
fn ticks(max: f64) -> (Vec<f64>, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    let n = (max / step - 1e-9).ceil().max(1.0) as usize;
    ((0..=n).map(|i| i as f64 * step).collect(), step)
}

/// A tick's label with as many decimals as its step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A line plot of `points` (x, y) as an SVG document: both axes from zero with ticks and
/// labels, the points as one polyline, and a dashed vertical line at `mark` (the end of the
/// warm-up).
fn svg_plot(
    points: &[(f64, f64)],
    title: &str,
    x_label: &str,
    y_label: &str,
    mark: Option<f64>,
) -> String {
    const W: f64 = 800.0;
    const H: f64 = 450.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 30.0;
    const TOP: f64 = 50.0;
    const BOTTOM: f64 = 60.0;
    let max_x = points.iter().map(|p| p.0).fold(0.0, f64::max);
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let (xt, x_step) = ticks(max_x);
    let (yt, y_step) = ticks(max_y);
    let x_end = xt.last().copied().unwrap_or(1.0);
    let y_end = yt.last().copied().unwrap_or(1.0);
    let px = |x: f64| LEFT + x / x_end * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - y / y_end * (H - TOP - BOTTOM);
    let (x0, y0) = (px(0.0), py(0.0));

    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">{}</text>\n",
        W / 2.0,
        xml_escape(title)
    );
    for &x in &xt {
        let at = px(x);
        s.push_str(&format!(
            "<line x1=\"{at:.1}\" y1=\"{y0:.1}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\n\
             <line x1=\"{at:.1}\" y1=\"{y0:.1}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
             <text x=\"{at:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            TOP,
            y0 + 5.0,
            y0 + 20.0,
            tick_label(x, x_step)
        ));
    }
    for &y in &yt {
        let at = py(y);
        s.push_str(&format!(
            "<line x1=\"{x0:.1}\" y1=\"{at:.1}\" x2=\"{:.1}\" y2=\"{at:.1}\" stroke=\"#eee\"/>\n\
             <line x1=\"{:.1}\" y1=\"{at:.1}\" x2=\"{x0:.1}\" y2=\"{at:.1}\" stroke=\"black\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            W - RIGHT,
            x0 - 5.0,
            x0 - 8.0,
            at + 4.0,
            tick_label(y, y_step)
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{x0:.1}\" y1=\"{y0:.1}\" x2=\"{:.1}\" y2=\"{y0:.1}\" stroke=\"black\"/>\n\
         <line x1=\"{x0:.1}\" y1=\"{y0:.1}\" x2=\"{x0:.1}\" y2=\"{TOP:.1}\" stroke=\"black\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
         <text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">{}</text>\n",
        W - RIGHT,
        (x0 + W - RIGHT) / 2.0,
        H - 15.0,
        xml_escape(x_label),
        (TOP + y0) / 2.0,
        (TOP + y0) / 2.0,
        xml_escape(y_label)
    ));
    if let Some(m) = mark.filter(|m| *m > 0.0 && *m <= x_end) {
        s.push_str(&format!(
            "<line x1=\"{at:.1}\" y1=\"{y0:.1}\" x2=\"{at:.1}\" y2=\"{TOP:.1}\" stroke=\"gray\" \
             stroke-dasharray=\"4 4\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"gray\">warm-up</text>\n",
            px(m) + 4.0,
            TOP + 12.0,
            at = px(m)
        ));
    }
    let line: Vec<String> = points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
        .collect();
    s.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n</svg>\n",
        line.join(" ")
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp_lines() {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   \
                      uid  timeout inode";
        assert_eq!(parse_tcp_line(header), None);
        let v4 = "   3: 0100007F:D6A2 0100007F:A2BF 01 00000000:00000000 02:000A7A6D 00000000     \
                  0        0 4242117 2 0000000000000000 20 4 30 10 -1";
        assert_eq!(
            parse_tcp_line(v4),
            Some(TcpSocket {
                remote_port: 0xA2BF,
                state: 1,
                inode: 4242117
            })
        );
        let v6 = "   0: 00000000000000000000000001000000:1F90 \
                  00000000000000000000000001000000:C35A 0A 00000000:00000000 00:00000000 \
                  00000000     0        0 99 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_tcp_line(v6),
            Some(TcpSocket {
                remote_port: 0xC35A,
                state: 0x0A,
                inode: 99
            })
        );
        assert_eq!(socket_inode("socket:[4242117]"), Some(4242117));
        assert_eq!(socket_inode("pipe:[12]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn reads_the_api_port() {
        assert_eq!(api_port("https://127.0.0.1:41695").unwrap(), 41695);
        assert_eq!(api_port("https://[::1]:6443/").unwrap(), 6443);
        assert!(api_port("https://example.com").is_err());
    }

    #[test]
    fn chooses_every_nth_rollout_to_fail() {
        assert!(fails(10, 10));
        assert!(fails(20, 10));
        assert!(!fails(9, 10));
        assert!(!fails(1, 10));
        assert!(!fails(10, 0));
        assert!(fails(1, 1));
        assert_eq!((1..=10_000).filter(|k| fails(*k, 10)).count(), 1000);
        assert_eq!(warmup(10_000), 1000);
        assert_eq!(warmup(50_000), 1000);
        assert_eq!(warmup(2000), 200);
        assert_eq!(warmup(100), 10);
        assert_eq!(ordinal(10), "10th");
        assert_eq!(ordinal(2), "2nd");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(0), "none");
    }

    #[test]
    fn counts_a_rollout_once_it_ended_with_a_new_spec() {
        // The new image is not seen yet: the old terminal phase with the old hash.
        assert_eq!(finished("aaa", "Succeeded", "aaa"), None);
        assert_eq!(finished("aaa", "Initialized", "aaa"), None);
        assert_eq!(finished("aaa", "Progressing", "bbb"), None);
        assert_eq!(finished("aaa", "Succeeded", "bbb"), Some(Outcome::Promoted));
        assert_eq!(finished("aaa", "Failed", "bbb"), Some(Outcome::RolledBack));
        assert_eq!(finished("aaa", "Failed", ""), None);
    }

    fn sample(rollouts: u64, rss_kib: u64, fds: usize, api_connections: usize) -> Sample {
        Sample {
            at: rollouts as f64,
            rollouts,
            rss_kib,
            fds,
            api_connections,
            tasks: 4,
            ..Sample::default()
        }
    }

    #[test]
    fn growth_after_the_warmup() {
        let samples = [
            sample(0, 20_000, 20, 3),
            sample(500, 30_000, 24, 4),
            sample(1000, 40_000, 25, 4),
            sample(5000, 46_000, 26, 4),
            sample(10_000, 42_000, 25, 4),
        ];
        let g = Growth::of(&samples, 1000).unwrap();
        assert_eq!(g.base.rollouts, 1000);
        assert_eq!(g.end.rollouts, 10_000);
        assert!((g.memory_pct() - 5.0).abs() < 1e-9);
        assert!((g.peak_pct() - 15.0).abs() < 1e-9);
        assert_eq!(g.fds(), 0);
        assert_eq!(g.connections(), 0);
        let g = Growth::of(&samples, 600).unwrap();
        assert_eq!(g.base.rollouts, 1000);
        assert!(Growth::of(&samples, 20_000).is_none());
        assert!(Growth::of(&[], 0).is_none());
        let leak = [sample(10, 100, 10, 2), sample(100, 150, 14, 3)];
        let g = Growth::of(&leak, 10).unwrap();
        assert!((g.memory_pct() - 50.0).abs() < 1e-9);
        assert_eq!((g.fds(), g.connections()), (4, 1));
    }

    #[test]
    fn thins_and_writes_samples() {
        let samples: Vec<Sample> = (0..100).map(|i| sample(i * 10, 1000 + i, 5, 1)).collect();
        let t = thin(&samples, 25);
        assert_eq!(t.len(), 25);
        assert_eq!(t[0].rollouts, 0);
        assert_eq!(t[24].rollouts, 990);
        assert_eq!(thin(&samples[..3], 25).len(), 3);
        let text = csv(&samples[..2]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("seconds,rollouts,"));
        assert_eq!(lines[2], "10.0,10,0,1001,0,5,4,1,0.00");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(47.3).0, [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(
            ticks(10_000.0).0,
            [0.0, 2000.0, 4000.0, 6000.0, 8000.0, 10_000.0]
        );
        assert_eq!(ticks(100.0).0.last(), Some(&100.0));
        assert_eq!(ticks(0.0).0, [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        assert_eq!(tick_label(0.6000000000000001, 0.2), "0.6");
        assert_eq!(tick_label(4000.0, 2000.0), "4000");
        assert_eq!(tick_label(25.0, 5.0), "25");
    }

    #[test]
    fn plots_memory_as_svg() {
        let points: Vec<(f64, f64)> = (0..=10)
            .map(|i| (i as f64 * 10.0, 30.0 + i as f64))
            .collect();
        let svg = svg_plot(
            &points,
            "memory <soak>",
            "completed rollouts",
            "resident memory (MiB)",
            Some(10.0),
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        let line = svg.split("<polyline").nth(1).unwrap();
        let pts = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(pts.split_whitespace().count(), points.len());
        // The first point is at the origin's x, the last at the right end of the x axis.
        assert!(pts.starts_with("80.0,"));
        assert!(pts.split_whitespace().last().unwrap().starts_with("770.0,"));
        for label in [
            ">completed rollouts</text>",
            ">resident memory (MiB)</text>",
            ">memory &lt;soak&gt;</text>",
            ">0</text>",
            ">100</text>",
            ">40</text>",
            "<text x=\"153.0\" y=\"62.0\" fill=\"gray\">warm-up</text>",
        ] {
            assert!(svg.contains(label), "{label} missing");
        }
        // No points: still a document with axes.
        let empty = svg_plot(&[], "t", "x", "y", None);
        assert!(empty.contains("points=\"\""));
    }
}
