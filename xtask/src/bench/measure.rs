//! Pure helpers of the benchmarks: reading `/proc`, the Prometheus text format, the
//! controller's JSON log, percentiles. No I/O here, so every piece has a unit test.

use std::collections::BTreeMap;

/// Memory of a process, from `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size since the start (`VmHWM`).
    pub hwm_kib: u64,
    /// Of `VmRSS`, anonymous memory (`RssAnon`: the heap and stacks).
    pub anon_kib: u64,
    /// Of `VmRSS`, file pages (`RssFile`: mostly the program's own code, shared and clean).
    pub file_kib: u64,
}

/// Parses `VmRSS` and `VmHWM` out of `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let value = l.strip_prefix(name)?.strip_prefix(':')?.trim();
            value.strip_suffix("kB")?.trim().parse().ok()
        })
    };
    Some(Memory {
        rss_kib: field("VmRSS")?,
        hwm_kib: field("VmHWM")?,
        anon_kib: field("RssAnon").unwrap_or(0),
        file_kib: field("RssFile").unwrap_or(0),
    })
}

/// CPU time (user + system, `utime` + `stime`) in clock ticks, from `/proc/<pid>/stat`. The
/// command name in parentheses may hold spaces and parentheses, so fields are counted after the
/// last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")" comes field 3 (state); utime is field 14 and stime field 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// One sample of the Prometheus (or OpenMetrics) text format.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name, with its `_total`, `_bucket`, … suffix.
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample {
    /// The value of a label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text format; comments and malformed lines are skipped.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            // key
            while chars
                .peek()
                .is_some_and(|(_, c)| *c == ',' || c.is_whitespace())
            {
                chars.next();
            }
            let (start, c) = *chars.peek()?;
            if c == '}' {
                rest = &inner[start + 1..];
                break;
            }
            let eq = inner[start..].find('=')? + start;
            let key = inner[start..eq].trim().to_string();
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.push((key, value));
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The values of the samples called `name`, keyed by their `label`.
pub fn by_label(samples: &[Sample], name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == name) {
        *out.entry(s.label(label).unwrap_or_default().to_string())
            .or_insert(0.0) += s.value;
    }
    out
}

/// The sum of the samples called `name`.
pub fn total(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// A histogram read from `<name>_bucket`, `<name>_sum` and `<name>_count`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Cumulative counts by upper bound, ascending; the last bound is `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl Histogram {
    /// Reads the histogram `name` (without suffix).
    pub fn from_samples(samples: &[Sample], name: &str) -> Self {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.name == bucket)
            .filter_map(|s| {
                let le = match s.label("le")? {
                    "+Inf" | "Inf" => f64::INFINITY,
                    v => v.parse().ok()?,
                };
                Some((le, s.value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram {
            buckets,
            sum: total(samples, &format!("{name}_sum")),
            count: total(samples, &format!("{name}_count")),
        }
    }

    /// What was observed between `earlier` and `self` (same buckets).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, c - before(*le)))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// The upper bound of the bucket holding the `q`-quantile (`0 < q <= 1`): the quantile is at
    /// most this. `None` without observations.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = (q * self.count).ceil().max(1.0);
        self.buckets
            .iter()
            .find(|(_, c)| *c >= rank)
            .map(|(le, _)| *le)
    }

    /// The mean observation.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

/// The `p`-th percentile (`0 < p <= 100`) by nearest rank; `None` for no values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p99 and max of `values`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        Some(Summary {
            count: values.len(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            p50: percentile(values, 50.0)?,
            p99: percentile(values, 99.0)?,
            max: percentile(values, 100.0)?,
        })
    }
}

/// A line the controller logged while reconciling one Canary: an Event (by its reason) or the
/// decision to take an analysis step.
#[derive(Clone, Debug, PartialEq)]
pub struct LogEvent {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// `namespace/name` from the `reconcile` span.
    pub canary: String,
    /// The Event's reason, or [`STEP`] for a step decision.
    pub reason: String,
}

/// The message of the controller's (debug) line for each analysis step it decides to take,
/// logged before the step's actions run.
pub const STEP: &str = "analysis step";

/// Parses one line of `fledge run --log-format json` that records an Event (it has a
/// `fields.reason`) or a step decision, in the `reconcile` span of a Canary. Other lines give
/// `None`.
pub fn parse_log_event(line: &str) -> Option<LogEvent> {
    if !line.contains("\"reason\"") && !line.contains(STEP) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let at: jiff::Timestamp = v.get("timestamp")?.as_str()?.parse().ok()?;
    let reason = match v.pointer("/fields/reason").and_then(|r| r.as_str()) {
        Some(r) => r,
        None if v.pointer("/fields/message")?.as_str()? == STEP => STEP,
        None => return None,
    };
    Some(LogEvent {
        at: at.as_nanosecond() as f64 / 1e9,
        canary: v.pointer("/span/canary")?.as_str()?.to_string(),
        reason: reason.to_string(),
    })
}

/// Event reasons that mark an analysis step: each is recorded in the reconcile that takes the
/// step (and ticks the interval clock), once per step. Used for logs without [`STEP`] lines;
/// an Event is logged after the actions planned before it ran, so these times include some
/// API latency.
pub const STEP_REASONS: [&str; 5] = [
    "IterationAdvanced",
    "WeightAdvanced",
    "PromotionAdvanced",
    "CheckFailed",
    // The step after the last iteration or weight starts the promotion.
    "Promoting",
];

/// For each Canary, the times of its analysis steps at or after `since`, in order: the
/// [`STEP`] decisions when the log has them, else the Events of [`STEP_REASONS`].
pub fn step_times(events: &[LogEvent], since: f64) -> BTreeMap<String, Vec<f64>> {
    let decisions = events.iter().any(|e| e.reason == STEP);
    let is_step = |r: &str| {
        if decisions {
            r == STEP
        } else {
            STEP_REASONS.contains(&r)
        }
    };
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.at >= since && is_step(&e.reason))
    {
        out.entry(e.canary.clone()).or_default().push(e.at);
    }
    for times in out.values_mut() {
        times.sort_by(f64::total_cmp);
    }
    out
}

/// How late each step after the first ran against its schedule, in seconds. The schedule is
/// the engine's: the previous step's time as the status keeps it (whole seconds) plus
/// `interval`; the engine never steps before it.
pub fn lateness(steps: &[f64], interval: f64) -> Vec<f64> {
    steps
        .windows(2)
        .map(|w| w[1] - (w[0].floor() + interval))
        .collect()
}

/// The name in a `name|generation|observedGeneration|replicas|updated|available` line when the
/// Deployment is a target (not a `-primary`) with replicas, all of them updated and available
/// for its current generation: what the engine waits for before the first step.
pub fn ready_target(line: &str) -> Option<&str> {
    let f: Vec<&str> = line.trim().split('|').collect();
    let [name, generation, observed, replicas, updated, available] = f[..] else {
        return None;
    };
    let num = |s: &str| s.parse::<i64>().unwrap_or(0);
    let ready = !name.ends_with("-primary")
        && num(observed) >= num(generation)
        && num(replicas) > 0
        && num(updated) == num(replicas)
        && num(available) >= num(replicas);
    ready.then_some(name)
}

/// KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Seconds with a unit suited to their size.
pub fn secs(s: f64) -> String {
    // No "-0 ms" for a tiny negative value.
    let s = if s.abs() < 0.0005 { 0.0 } else { s };
    if s.abs() < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// Renders rows as a table with aligned columns; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = width[i])
                } else {
                    format!("{c:>w$}", w = width[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

/// One Canary as a watch on the Canaries saw it change, from a
/// `name|phase|iterations|canaryWeight|failedChecks` line (kubectl's jsonpath output) at `at`.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusSeen {
    pub at: f64,
    pub canary: String,
    pub phase: String,
    pub iterations: i64,
    pub weight: i64,
    pub failed_checks: i64,
}

/// The line's fields; empty numbers (a status not written yet) are 0.
pub fn parse_status_line(line: &str, at: f64) -> Option<StatusSeen> {
    let f: Vec<&str> = line.trim().split('|').collect();
    let [canary, phase, iterations, weight, failed] = f[..] else {
        return None;
    };
    let num = |s: &str| s.trim().parse::<i64>().unwrap_or(0);
    (!canary.is_empty()).then(|| StatusSeen {
        at,
        canary: canary.to_string(),
        phase: phase.to_string(),
        iterations: num(iterations),
        weight: num(weight),
        failed_checks: num(failed),
    })
}

/// What a watch on the Canaries saw, per Canary: the same figures for any controller, taken
/// from outside it.
#[derive(Debug, Default)]
pub struct WatchTimes {
    /// The analysis steps: each time `iterations` rose (while `Progressing`, or into
    /// `Promoting`), or the canary weight changed while `Progressing`.
    pub steps: BTreeMap<String, Vec<f64>>,
    /// The first `Progressing`: the new revision detected.
    pub detected: BTreeMap<String, f64>,
    /// The first failed check (`failedChecks` above 0).
    pub first_failed_check: BTreeMap<String, f64>,
    /// The first `Succeeded`.
    pub succeeded: BTreeMap<String, f64>,
    /// The first `Failed`: rolled back, all traffic on the primary.
    pub failed: BTreeMap<String, f64>,
}

/// Reads a watch's changes (in the order they came) into [`WatchTimes`].
pub fn watch_times(seen: &[StatusSeen]) -> WatchTimes {
    let mut out = WatchTimes::default();
    let mut last: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for s in seen {
        let first = |m: &mut BTreeMap<String, f64>| {
            m.entry(s.canary.clone()).or_insert(s.at);
        };
        match s.phase.as_str() {
            "Progressing" => first(&mut out.detected),
            "Succeeded" => first(&mut out.succeeded),
            "Failed" => first(&mut out.failed),
            _ => {}
        }
        if s.failed_checks > 0 {
            first(&mut out.first_failed_check);
        }
        // Before its first change the watch saw, a Canary was at rest (the watch starts before
        // the wave): no iteration, no canary weight. A controller that takes its first step in
        // the same write as the new revision's detection shows `Progressing` at iteration 1 at
        // once.
        let (iterations, weight) = last
            .insert(&s.canary, (s.iterations, s.weight))
            .unwrap_or((0, 0));
        // The last step of an analysis may come with the phase it leads to (`Promoting`).
        let analysing = s.phase == "Progressing" || s.phase == "Promoting";
        if (analysing && s.iterations > iterations)
            || (s.phase == "Progressing" && s.weight != weight)
        {
            out.steps.entry(s.canary.clone()).or_default().push(s.at);
        }
    }
    out
}

/// One allocation site of a heap profile: the heap it held at the peak, summed over every
/// backtrace through it, named by the first frame outside the standard library and the
/// allocator crates, and the first of fledge's own frames (empty when none).
#[derive(Debug, PartialEq)]
pub struct HeapSite {
    pub peak_bytes: u64,
    pub library: String,
    pub fledge: String,
}

/// The allocation sites of heaptrack_print's flame-graph stacks costed by peak consumption
/// (`--flamegraph-cost-type peak -F`: one line per backtrace, frames from the root down to the
/// allocation separated by `;`, then the bytes it held at the peak), merged by site and
/// largest first.
pub fn heap_sites(stacks: &str) -> Vec<HeapSite> {
    const PLUMBING: &[&str] = &[
        "alloc",
        "core::",
        "std::",
        "hashbrown::",
        "bytes::",
        "<alloc::",
        "<core::",
        "<std::",
        "<hashbrown::",
        "<bytes::",
        "<T as ",
        "new",
        "with_capacity",
        "allocate",
        "reserve",
        "box_new",
        "pin",
        "clone",
        "to_vec",
        "to_owned",
        "from",
        "into",
        "collect",
        "extend",
        "push",
        "spawn",
        "insert",
        "grow",
        "do_reserve",
        "finish_grow",
        "try_reserve",
    ];
    let name = |frame: &str| -> String {
        let mut f = frame.trim().to_string();
        for (a, b) in [
            ("$LT$", "<"),
            ("$GT$", ">"),
            ("$u20$", " "),
            ("$C$", ","),
            ("$u7b$", "{"),
            ("$u7d$", "}"),
            ("$RF$", "&"),
            ("..", "::"),
        ] {
            f = f.replace(a, b);
        }
        let f = f.strip_prefix('_').unwrap_or(&f).replace("::_{", "::{");
        match f.rfind("::h") {
            Some(i) if f[i + 3..].len() == 16 => f[..i].to_string(),
            _ => f,
        }
    };
    let mut merged: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in stacks.lines() {
        let Some((stack, bytes)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(bytes) = bytes.parse::<u64>() else {
            continue;
        };
        let frames: Vec<String> = stack.split(';').rev().map(name).collect();
        let library = frames
            .iter()
            .find(|f| !PLUMBING.iter().any(|p| f.starts_with(p)) && f.contains("::"))
            .cloned()
            .unwrap_or_default();
        let fledge = frames
            .iter()
            .find(|f| f.starts_with("fledge_") || f.starts_with("<fledge_"))
            .cloned()
            .unwrap_or_default();
        *merged.entry((library, fledge)).or_default() += bytes;
    }
    let mut sites: Vec<HeapSite> = merged
        .into_iter()
        .map(|((library, fledge), peak_bytes)| HeapSite {
            peak_bytes,
            library,
            fledge,
        })
        .collect();
    sites.sort_by_key(|s| std::cmp::Reverse(s.peak_bytes));
    sites
}

/// For each of [`rollbacks`], the seconds from the last failed answer of its webhook before the
/// `Failed` (the check that led to the rollback) to that moment.
pub fn rollback_times(rollbacks: &[(&str, f64, f64)]) -> Vec<f64> {
    rollbacks.iter().map(|(_, check, at)| at - check).collect()
}

/// For each Canary that turned `Failed` (as a watch saw it): its name, the last failed answer of
/// its webhook before then, and that moment (Unix seconds).
pub fn rollbacks<'a>(
    failed: &'a BTreeMap<String, f64>,
    failures: &BTreeMap<String, Vec<f64>>,
) -> Vec<(&'a str, f64, f64)> {
    failed
        .iter()
        .filter_map(|(canary, at)| {
            let check = failures
                .get(canary)?
                .iter()
                .copied()
                .filter(|f| f <= at)
                .reduce(f64::max)?;
            Some((canary.as_str(), check, *at))
        })
        .collect()
}

/// How late each step after the first came against the previous one plus `interval`, as a
/// watch saw them (negative: early).
pub fn watch_lateness(steps: &[f64], interval: f64) -> Vec<f64> {
    steps.windows(2).map(|w| w[1] - w[0] - interval).collect()
}

/// One request in the API server's audit log: who sent it, its verb, and when it arrived
/// (Unix seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct Audited {
    pub user: String,
    pub verb: String,
    pub at: f64,
}

/// An audit log line (one JSON event), or `None` for anything else.
pub fn parse_audit_line(line: &str) -> Option<Audited> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let at: jiff::Timestamp = v["requestReceivedTimestamp"].as_str()?.parse().ok()?;
    Some(Audited {
        user: v["user"]["username"].as_str()?.to_string(),
        verb: v["verb"].as_str()?.to_string(),
        at: at.as_microsecond() as f64 / 1e6,
    })
}

/// The requests of `user` that arrived in `(from, to]`, counted by verb.
pub fn requests_by_verb(
    records: &[Audited],
    user: &str,
    from: f64,
    to: f64,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.user == user && r.at > from && r.at <= to)
    {
        *out.entry(r.verb.clone()).or_insert(0.0) += 1.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_sites_merge_backtraces_by_the_first_frames_past_the_allocator() {
        let stacks = "\
main;fledge_controller::controller::run::_$u7b$$u7b$closure$u7d$$u7d$::h0123456789abcdef;kube_runtime::reflector::store::Writer$LT$K$GT$::apply_watcher_event::h0123456789abcdef;alloc::raw_vec::RawVecInner$LT$A$GT$::with_capacity_in::h21e7030d08e40c92 1000
main;fledge_controller::controller::run::_$u7b$$u7b$closure$u7d$$u7d$::h0123456789abcdef;kube_runtime::reflector::store::Writer$LT$K$GT$::apply_watcher_event::h0123456789abcdef;_$LT$alloc..string..String$u20$as$u20$core..clone..Clone$GT$::clone::h0123456789abcdef 500
main;fledge_controller::events::Cache::sent::h0123456789abcdef;hashbrown::raw::RawTableInner::fallible_with_capacity::h0123456789abcdef 2000
not a stack line
";
        assert_eq!(
            heap_sites(stacks),
            vec![
                HeapSite {
                    peak_bytes: 2000,
                    library: "fledge_controller::events::Cache::sent".into(),
                    fledge: "fledge_controller::events::Cache::sent".into(),
                },
                HeapSite {
                    peak_bytes: 1500,
                    library: "kube_runtime::reflector::store::Writer<K>::apply_watcher_event"
                        .into(),
                    fledge: "fledge_controller::controller::run::{{closure}}".into(),
                },
            ]
        );
    }

    #[test]
    fn a_rollback_is_timed_from_the_last_failed_check_before_it() {
        let failed: BTreeMap<String, f64> = [("a".into(), 110.0), ("b".into(), 50.0)].into();
        let failures: BTreeMap<String, Vec<f64>> = [
            // Checks at 100 and 105 failed; one answered after the rollback is ignored.
            ("a".into(), vec![100.0, 105.0, 120.0]),
            // No failed check before the rollback: not timed.
            ("b".into(), vec![60.0]),
        ]
        .into();
        assert_eq!(rollback_times(&rollbacks(&failed, &failures)), vec![5.0]);
    }

    #[test]
    fn reads_memory_from_proc_status() {
        let text = "Name:\tfledge\nVmPeak:\t  900000 kB\nVmHWM:\t   41234 kB\nVmRSS:\t   38000 kB\n\
                    RssAnon:\t   22000 kB\nRssFile:\t   16000 kB\nThreads:\t3\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss_kib: 38000,
                hwm_kib: 41234,
                anon_kib: 22000,
                file_kib: 16000,
            })
        );
        // Kernels before 4.5 have no RssAnon/RssFile.
        assert_eq!(
            parse_status("VmHWM:\t2 kB\nVmRSS:\t1 kB\n").map(|m| (m.anon_kib, m.file_kib)),
            Some((0, 0))
        );
        assert_eq!(parse_status("Name:\tx\nVmRSS:\t1 kB\n"), None);
        assert_eq!(parse_status("VmRSS:\tlots kB\nVmHWM:\t1 kB\n"), None);
    }

    #[test]
    fn reads_cpu_ticks_from_proc_stat() {
        let stat = "4242 (fledge (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 31 0 0 20 0 3 0 \
                    987654 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(281));
        assert_eq!(parse_cpu_ticks("4242 (short) S 1"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn parses_prometheus_text() {
        let text = r#"# HELP fledge_kube_requests Requests.
# TYPE fledge_kube_requests counter
fledge_kube_requests_total{verb="GET"} 12
fledge_kube_requests_total{verb="PUT"} 3
fledge_step_lateness_seconds_sum 1.5
fledge_step_lateness_seconds_count 4
fledge_step_lateness_seconds_bucket{le="0.05"} 1
fledge_step_lateness_seconds_bucket{le="0.1"} 3
fledge_step_lateness_seconds_bucket{le="+Inf"} 4
odd{a="x\"y",b="c,d} e"} 2.5e1 1700000000
broken{a="x" 1
# EOF
"#;
        let s = parse_prometheus(text);
        assert_eq!(s.len(), 8, "{s:?}");
        let verbs = by_label(&s, "fledge_kube_requests_total", "verb");
        assert_eq!(verbs["GET"], 12.0);
        assert_eq!(verbs["PUT"], 3.0);
        assert_eq!(total(&s, "fledge_kube_requests_total"), 15.0);
        let odd = s.iter().find(|s| s.name == "odd").unwrap();
        assert_eq!(odd.label("a"), Some("x\"y"));
        assert_eq!(odd.label("b"), Some("c,d} e"));
        assert_eq!(odd.value, 25.0);

        let h = Histogram::from_samples(&s, "fledge_step_lateness_seconds");
        assert_eq!(h.buckets, [(0.05, 1.0), (0.1, 3.0), (f64::INFINITY, 4.0)]);
        assert_eq!(h.count, 4.0);
        assert_eq!(h.quantile_bound(0.5), Some(0.1));
        assert_eq!(h.quantile_bound(0.25), Some(0.05));
        assert_eq!(h.quantile_bound(1.0), Some(f64::INFINITY));
        assert_eq!(h.mean(), Some(0.375));
    }

    #[test]
    fn histogram_differences() {
        let a = Histogram {
            buckets: vec![(0.1, 2.0), (1.0, 3.0), (f64::INFINITY, 3.0)],
            sum: 1.0,
            count: 3.0,
        };
        let b = Histogram {
            buckets: vec![(0.1, 2.0), (1.0, 5.0), (f64::INFINITY, 6.0)],
            sum: 9.0,
            count: 6.0,
        };
        let d = b.since(&a);
        assert_eq!(d.buckets, [(0.1, 0.0), (1.0, 2.0), (f64::INFINITY, 3.0)]);
        assert_eq!(d.count, 3.0);
        assert_eq!(d.quantile_bound(0.5), Some(1.0));
        assert_eq!(d.quantile_bound(0.99), Some(f64::INFINITY));
        assert_eq!(Histogram::default().quantile_bound(0.5), None);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
        let s = Summary::of(&[0.2, 0.1, 0.4, 0.3]).unwrap();
        assert_eq!(
            (s.count, s.min, s.p50, s.p99, s.max),
            (4, 0.1, 0.2, 0.4, 0.4)
        );
    }

    #[test]
    fn parses_event_lines_of_the_controller_log() {
        let line = r#"{"timestamp":"2026-03-01T10:00:05.250000Z","level":"INFO","fields":{"message":"Advance app-0001 canary iteration 1/3","reason":"IterationAdvanced","warning":false},"target":"fledge_controller::controller","span":{"canary":"bench/app-0001","name":"reconcile"}}"#;
        let e = parse_log_event(line).unwrap();
        assert_eq!(e.canary, "bench/app-0001");
        assert_eq!(e.reason, "IterationAdvanced");
        let expected: jiff::Timestamp = "2026-03-01T10:00:05.25Z".parse().unwrap();
        assert!((e.at - expected.as_millisecond() as f64 / 1000.0).abs() < 1e-6);
        assert_eq!(
            parse_log_event(r#"{"timestamp":"2026-03-01T10:00:05Z","fields":{"message":"x"}}"#),
            None
        );
        assert_eq!(parse_log_event("not json \"reason\""), None);
    }

    #[test]
    fn steps_and_their_lateness() {
        let ev = |at: f64, canary: &str, reason: &str| LogEvent {
            at,
            canary: canary.into(),
            reason: reason.into(),
        };
        let events = [
            ev(1.0, "ns/a", "IterationAdvanced"), // before the wave
            ev(100.0, "ns/a", "NewRevision"),
            ev(105.0, "ns/a", "AnalysisStarted"),
            ev(105.0, "ns/a", "IterationAdvanced"),
            ev(115.5, "ns/a", "IterationAdvanced"),
            ev(125.5, "ns/a", "Promoting"),
            ev(130.0, "ns/a", "Succeeded"),
            ev(101.0, "ns/b", "NewRevision"),
            ev(108.0, "ns/b", "WeightAdvanced"),
        ];
        let steps = step_times(&events, 50.0);
        assert_eq!(steps["ns/a"], [105.0, 115.5, 125.5]);
        assert_eq!(steps["ns/b"], [108.0]);
        // Against the whole second of the previous step: 115.5 - 115 - 10 = 0.5.
        assert_eq!(lateness(&steps["ns/a"], 10.0), [0.5, 0.5]);
        assert!(lateness(&steps["ns/b"], 10.0).is_empty());

        // Step decisions, when logged, are the steps (the Events come later).
        let mut with_decisions = events.to_vec();
        with_decisions.push(ev(104.9, "ns/a", STEP));
        with_decisions.push(ev(115.2, "ns/a", STEP));
        let steps = step_times(&with_decisions, 50.0);
        assert_eq!(steps["ns/a"], [104.9, 115.2]);
        assert!(!steps.contains_key("ns/b"));
        assert!((lateness(&steps["ns/a"], 10.0)[0] - 1.2).abs() < 1e-9);
    }

    #[test]
    fn parses_step_decision_lines() {
        let line = r#"{"timestamp":"2026-03-01T10:00:05.5Z","level":"DEBUG","fields":{"message":"analysis step","step":2,"late_seconds":0.25},"target":"fledge_controller::controller","span":{"canary":"bench/app-0001","name":"reconcile"}}"#;
        let e = parse_log_event(line).unwrap();
        assert_eq!(e.reason, STEP);
        assert_eq!(e.canary, "bench/app-0001");
    }

    #[test]
    fn recognises_ready_targets() {
        assert_eq!(ready_target("app-0001|3|3|1|1|1\n"), Some("app-0001"));
        // Scaled to zero, an old generation, not all updated or available, a primary, junk.
        assert_eq!(ready_target("app-0001|3|3|0|||"), None);
        assert_eq!(ready_target("app-0001|3|2|1|1|1"), None);
        assert_eq!(ready_target("app-0001|3|3|1||1"), None);
        assert_eq!(ready_target("app-0001|3|3|1|1|"), None);
        assert_eq!(ready_target("app-0001-primary|3|3|1|1|1"), None);
        assert_eq!(ready_target("app-0001 3 3 1 1 1"), None);
    }

    #[test]
    fn renders_aligned_tables() {
        let rows = vec![
            vec!["phase".to_string(), "CPU".to_string()],
            vec!["steady".to_string(), "1.25 s".to_string()],
        ];
        assert_eq!(
            table(&rows),
            "phase      CPU\n------  ------\nsteady  1.25 s\n"
        );
    }

    #[test]
    fn a_watch_on_the_canaries_gives_the_steps_and_the_outcome() {
        let lines = [
            (0.0, "app-1|Initialized|0|0|0"),
            (10.2, "app-1|Progressing|0|0|0"),
            (10.3, "app-1|Progressing|0|0|0"),
            (12.1, "app-1|Progressing|1|0|0"),
            (14.4, "app-1|Progressing|2|0|1"),
            (16.0, "app-1|Progressing|3|0|1"),
            (17.0, "app-1|Promoting|3|0|1"),
            (17.5, "app-3|Progressing|2|0|0"),
            (19.5, "app-3|Promoting|3|0|0"),
            (19.5, "app-1|Succeeded|0|0|0"),
            (11.0, "app-2|Progressing|||"),
            (11.5, "app-4|Progressing|1|0|0"),
            (13.5, "app-4|Progressing|2|0|0"),
            (13.0, "app-2|Failed|0|0|2"),
            (13.5, "garbage"),
        ];
        let seen: Vec<StatusSeen> = lines
            .iter()
            .filter_map(|(at, l)| parse_status_line(l, *at))
            .collect();
        assert_eq!(seen.len(), 14);

        let t = watch_times(&seen);
        assert_eq!(t.steps["app-1"], [12.1, 14.4, 16.0]);
        assert!(!t.steps.contains_key("app-2"));
        // The last step, written with the phase it leads to.
        assert_eq!(t.steps["app-3"], [17.5, 19.5]);
        // A first step taken in the same write as the detection.
        assert_eq!(t.steps["app-4"], [11.5, 13.5]);
        assert_eq!(t.detected["app-1"], 10.2);
        assert_eq!(t.succeeded["app-1"], 19.5);
        assert_eq!(t.first_failed_check["app-1"], 14.4);
        assert_eq!(t.failed["app-2"], 13.0);
        let late = watch_lateness(&t.steps["app-1"], 2.0);
        assert_eq!(late.len(), 2);
        assert!((late[0] - 0.3).abs() < 1e-9 && (late[1] + 0.4).abs() < 1e-9);
    }

    #[test]
    fn audit_records_are_counted_by_user_verb_and_time() {
        let line = |user: &str, verb: &str, at: &str| {
            serde_json::json!({
                "kind": "Event", "level": "Metadata", "stage": "ResponseComplete",
                "verb": verb, "user": {"username": user, "groups": ["system:masters"]},
                "userAgent": "x", "requestReceivedTimestamp": at,
                "objectRef": {"resource": "canaries", "namespace": "ns"}
            })
            .to_string()
        };
        let lines = [
            line("fledge-bench-fledge", "get", "2026-01-01T00:00:01.500000Z"),
            line("fledge-bench-fledge", "get", "2026-01-01T00:00:02.000000Z"),
            line("fledge-bench-fledge", "patch", "2026-01-01T00:00:03Z"),
            line("fledge-bench-flagger", "get", "2026-01-01T00:00:02Z"),
            "not json".to_string(),
        ];
        let records: Vec<Audited> = lines.iter().filter_map(|l| parse_audit_line(l)).collect();
        assert_eq!(records.len(), 4);
        let t0 = 1767225600.0;
        let counts = requests_by_verb(&records, "fledge-bench-fledge", t0 + 1.5, t0 + 3.0);
        assert_eq!(counts.get("get"), Some(&1.0));
        assert_eq!(counts.get("patch"), Some(&1.0));
        assert_eq!(
            requests_by_verb(&records, "fledge-bench-flagger", t0, t0 + 10.0).get("get"),
            Some(&1.0)
        );
    }
}
