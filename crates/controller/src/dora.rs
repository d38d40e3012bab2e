//! DORA metrics from the Git ledger: deployment frequency, lead time for changes, change
//! failure rate and time to restore, per Canary and overall, with the performance band of each
//! (the bands of the 2023 State of DevOps report).
//!
//! - Deployment frequency: promoted rollouts per day over the window.
//! - Lead time for changes: from the source commit that introduced the new image (the record's
//!   `trigger`) to the end of its promotion; the median.
//! - Change failure rate: rolled-back rollouts over all rollouts that ended promoted or rolled
//!   back.
//! - Time to restore: from the first failed check to the end of the rollback (all traffic back
//!   on the primary); the median.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::git::ledger::RolloutRecord;

/// The four figures of a set of rollouts.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Rollouts that ended promoted.
    pub deployments: usize,
    /// Rollouts that ended rolled back.
    pub failures: usize,
    /// Promotions per day over the window.
    pub deployments_per_day: f64,
    /// Median lead time in seconds (rollouts with a known trigger commit).
    pub lead_time_seconds: Option<f64>,
    /// Rolled back over ended, in percent.
    pub change_failure_rate_percent: Option<f64>,
    /// Median time to restore in seconds.
    pub time_to_restore_seconds: Option<f64>,
    /// The band of each figure: elite, high, medium or low.
    pub bands: Bands,
}

/// The DORA performance band of each figure.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Bands {
    /// Deployment frequency.
    pub deployment_frequency: String,
    /// Lead time for changes.
    pub lead_time: String,
    /// Change failure rate.
    pub change_failure_rate: String,
    /// Time to restore.
    pub time_to_restore: String,
}

/// The report: overall and per Canary.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The window, in days.
    pub days: f64,
    /// Every Canary together.
    pub overall: Figures,
    /// By `namespace/name`.
    pub canaries: BTreeMap<String, Figures>,
}

/// One rollout, with the time of its trigger commit when known.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// The ledger record.
    pub record: RolloutRecord,
    /// When the trigger commit was committed.
    pub trigger_time: Option<Timestamp>,
}

const DAY: f64 = 86_400.0;

fn ts(s: &Option<String>) -> Option<Timestamp> {
    s.as_deref()?.parse().ok()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn figures(rollouts: &[&Rollout], days: f64) -> Figures {
    let promoted: Vec<&&Rollout> = rollouts
        .iter()
        .filter(|r| r.record.result.as_deref() == Some("promoted"))
        .collect();
    let failed: Vec<&&Rollout> = rollouts
        .iter()
        .filter(|r| r.record.result.as_deref() == Some("rolled-back"))
        .collect();
    let lead = median(
        promoted
            .iter()
            .filter_map(|r| {
                let end = ts(&r.record.end_time)?;
                let start = r.trigger_time?;
                Some((end - start).get_seconds().max(0) as f64)
            })
            .collect(),
    );
    let restore = median(
        failed
            .iter()
            .filter_map(|r| {
                let end = ts(&r.record.end_time)?;
                let start = ts(&r.record.first_failure_time)
                    .or_else(|| r.record.start_time.parse().ok())?;
                Some((end - start).get_seconds().max(0) as f64)
            })
            .collect(),
    );
    let ended = promoted.len() + failed.len();
    let cfr = (ended > 0).then(|| 100.0 * failed.len() as f64 / ended as f64);
    let per_day = promoted.len() as f64 / days.max(1.0 / 24.0);
    Figures {
        deployments: promoted.len(),
        failures: failed.len(),
        deployments_per_day: per_day,
        lead_time_seconds: lead,
        change_failure_rate_percent: cfr,
        time_to_restore_seconds: restore,
        bands: Bands {
            deployment_frequency: frequency_band(per_day).into(),
            lead_time: lead
                .map_or("unknown", |s| time_band(s, DAY, 7.0 * DAY, 30.0 * DAY))
                .into(),
            change_failure_rate: cfr.map_or("unknown", cfr_band).into(),
            time_to_restore: restore
                .map_or("unknown", |s| time_band(s, 3600.0, DAY, 7.0 * DAY))
                .into(),
        },
    }
}

/// Elite: several a day (on demand); high: daily to weekly; medium: weekly to monthly; low: less.
fn frequency_band(per_day: f64) -> &'static str {
    if per_day >= 1.0 {
        "elite"
    } else if per_day >= 1.0 / 7.0 {
        "high"
    } else if per_day >= 1.0 / 30.0 {
        "medium"
    } else {
        "low"
    }
}

fn time_band(seconds: f64, elite: f64, high: f64, medium: f64) -> &'static str {
    if seconds < elite {
        "elite"
    } else if seconds < high {
        "high"
    } else if seconds < medium {
        "medium"
    } else {
        "low"
    }
}

fn cfr_band(percent: f64) -> &'static str {
    if percent <= 5.0 {
        "elite"
    } else if percent <= 10.0 {
        "high"
    } else if percent <= 15.0 {
        "medium"
    } else {
        "low"
    }
}

/// The report of the rollouts that ended in the `days` before `now` (in `namespace` when given).
pub fn report(rollouts: &[Rollout], now: Timestamp, days: f64, namespace: Option<&str>) -> Report {
    let since = now
        .checked_sub(jiff::SignedDuration::from_secs((days * DAY) as i64))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let chosen: Vec<&Rollout> = rollouts
        .iter()
        .filter(|r| ts(&r.record.end_time).is_some_and(|t| t >= since && t <= now))
        .filter(|r| namespace.is_none_or(|ns| r.record.canary.split('/').next() == Some(ns)))
        .collect();
    let mut by: BTreeMap<String, Vec<&Rollout>> = BTreeMap::new();
    for r in &chosen {
        by.entry(r.record.canary.clone()).or_default().push(r);
    }
    Report {
        days,
        overall: figures(&chosen, days),
        canaries: by
            .into_iter()
            .map(|(k, v)| (k, figures(&v, days)))
            .collect(),
    }
}

fn human(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.1}m", s / 60.0),
        Some(s) if s < 2.0 * DAY => format!("{:.1}h", s / 3600.0),
        Some(s) => format!("{:.1}d", s / DAY),
    }
}

/// The report as a table.
pub fn table(r: &Report) -> String {
    let mut out = format!(
        "{:<40} {:>7} {:>7} {:>10} {:>10} {:>8} {:>10}\n",
        "CANARY", "DEPLOYS", "FAILED", "PER DAY", "LEAD TIME", "CFR", "RESTORE"
    );
    let mut row = |name: &str, f: &Figures| {
        out.push_str(&format!(
            "{:<40} {:>7} {:>7} {:>10.2} {:>10} {:>8} {:>10}\n",
            name,
            f.deployments,
            f.failures,
            f.deployments_per_day,
            human(f.lead_time_seconds),
            f.change_failure_rate_percent
                .map_or("-".into(), |p| format!("{p:.1}%")),
            human(f.time_to_restore_seconds),
        ));
    };
    for (name, f) in &r.canaries {
        row(name, f);
    }
    row("(all)", &r.overall);
    let b = &r.overall.bands;
    out.push_str(&format!(
        "\nover the last {} days; DORA bands: deployment frequency {}, lead time {}, change failure rate {}, time to restore {}\n",
        r.days, b.deployment_frequency, b.lead_time, b.change_failure_rate, b.time_to_restore
    ));
    out
}

/// Reads every ledger file under `ledger` in the Git working tree `dir`, with the commit time of
/// each record's trigger (from the repository's history).
pub fn load(dir: &std::path::Path, ledger: &str) -> Result<Vec<Rollout>, String> {
    let root = dir.join(ledger);
    if !root.is_dir() {
        return Err(format!(
            "{} has no ledger directory {ledger} (set --ledger-path if it is elsewhere)",
            dir.display()
        ));
    }
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let record =
            RolloutRecord::from_yaml(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        let trigger_time = record.trigger.as_ref().and_then(|t| {
            let o = std::process::Command::new("git")
                .args(["show", "-s", "--format=%cI", &t.commit])
                .current_dir(dir)
                .output()
                .ok()?;
            String::from_utf8_lossy(&o.stdout).trim().parse().ok()
        });
        out.push(Rollout {
            record,
            trigger_time,
        });
    }
    Ok(out)
}

/// `fledge dora`: prints the report of the ledger in `repo` (a local working tree, or a URL
/// cloned into a temporary directory). Returns the exit code.
pub fn run(
    repo: &str,
    ledger: &str,
    since: &str,
    namespace: Option<&str>,
    json: bool,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> i32 {
    let days = match since
        .strip_suffix('d')
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n > 0.0)
    {
        Some(days) => days,
        None => match fledge_api::parse_duration(since) {
            Ok(d) => d.as_secs_f64() / DAY,
            Err(_) => {
                let _ = writeln!(
                    err,
                    "fledge dora: --since {since:?} is not a window; write days (30d) or a duration (12h, 90m)"
                );
                return 2;
            }
        },
    };
    let local = std::path::Path::new(repo);
    let (dir, _tmp) = if local.is_dir() {
        (local.to_path_buf(), None)
    } else {
        let tmp = std::env::temp_dir().join(format!("fledge-dora-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let cloned = std::process::Command::new("git")
            .args(["clone", "-q", repo])
            .arg(&tmp)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output();
        match cloned {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                let _ = writeln!(
                    err,
                    "fledge dora: cannot clone {}: {}",
                    crate::git::repo::shown(repo),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return 2;
            }
            Err(e) => {
                let _ = writeln!(err, "fledge dora: cannot run git: {e}");
                return 2;
            }
        }
        (tmp.clone(), Some(TempDir(tmp)))
    };
    let rollouts = match load(&dir, ledger) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "fledge dora: {e}");
            return 2;
        }
    };
    let r = report(&rollouts, Timestamp::now(), days, namespace);
    let text = if json {
        serde_json::to_string_pretty(&r).unwrap_or_default() + "\n"
    } else {
        table(&r)
    };
    match out.write_all(text.as_bytes()) {
        Ok(()) => 0,
        Err(_) => 2,
    }
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(
        canary: &str,
        start: &str,
        end: &str,
        result: &str,
        trigger: Option<&str>,
        fail: Option<&str>,
    ) -> Rollout {
        Rollout {
            record: RolloutRecord {
                canary: canary.into(),
                start_time: start.into(),
                end_time: Some(end.into()),
                result: Some(result.into()),
                first_failure_time: fail.map(String::from),
                ..Default::default()
            },
            trigger_time: trigger.map(|t| t.parse().unwrap()),
        }
    }

    #[test]
    fn the_four_figures_and_their_bands() {
        let now: Timestamp = "2026-11-30T00:00:00Z".parse().unwrap();
        let rollouts = vec![
            // Lead times 1 h, 3 h, 5 h: median 3 h.
            rollout(
                "a/web",
                "2026-11-20T10:00:00Z",
                "2026-11-20T10:30:00Z",
                "promoted",
                Some("2026-11-20T09:30:00Z"),
                None,
            ),
            rollout(
                "a/web",
                "2026-11-21T10:00:00Z",
                "2026-11-21T12:00:00Z",
                "promoted",
                Some("2026-11-21T09:00:00Z"),
                None,
            ),
            rollout(
                "b/api",
                "2026-11-22T10:00:00Z",
                "2026-11-22T12:00:00Z",
                "promoted",
                Some("2026-11-22T07:00:00Z"),
                None,
            ),
            // Restored 10 min after the first failed check.
            rollout(
                "b/api",
                "2026-11-23T10:00:00Z",
                "2026-11-23T10:15:00Z",
                "rolled-back",
                None,
                Some("2026-11-23T10:05:00Z"),
            ),
            // Outside the window and superseded: not counted.
            rollout(
                "a/web",
                "2026-10-01T10:00:00Z",
                "2026-10-01T10:15:00Z",
                "rolled-back",
                None,
                None,
            ),
            rollout(
                "a/web",
                "2026-11-24T10:00:00Z",
                "2026-11-24T10:15:00Z",
                "superseded",
                None,
                None,
            ),
        ];
        let r = report(&rollouts, now, 30.0, None);
        let o = &r.overall;
        assert_eq!((o.deployments, o.failures), (3, 1));
        assert!((o.deployments_per_day - 0.1).abs() < 1e-9);
        assert_eq!(o.lead_time_seconds, Some(3.0 * 3600.0));
        assert_eq!(o.change_failure_rate_percent, Some(25.0));
        assert_eq!(o.time_to_restore_seconds, Some(600.0));
        assert_eq!(
            o.bands,
            Bands {
                deployment_frequency: "medium".into(),
                lead_time: "elite".into(),
                change_failure_rate: "low".into(),
                time_to_restore: "elite".into(),
            }
        );
        assert_eq!(r.canaries["a/web"].deployments, 2);
        assert_eq!(r.canaries["b/api"].change_failure_rate_percent, Some(50.0));
        let only_a = report(&rollouts, now, 30.0, Some("a"));
        assert_eq!(only_a.overall.failures, 0);
        assert!(table(&r).contains("(all)"));
    }
}
