//! `fledge replay`: a Canary's analysis run over a past window of its metrics provider, step by
//! step, printing what it would have decided at each step and why, without changing anything in
//! the cluster (it only reads the Canary, its MetricTemplates and their Secrets).
//!
//! Each step evaluates every metric as the provider would have answered at that time (an
//! instant query at the step's time), judges the results as the engine does (ranges, `dryRun`,
//! `noData`), and moves a replayed rollout along: a passing step advances the weight (or the
//! iteration), a failing one counts towards `threshold`, which rolls it back; past the last
//! weight (or iteration) it would have promoted. `--target` names another workload than
//! `spec.targetRef` (a past release's name) for the templates' `{{ target }}`.

use std::io::Write;
use std::time::Duration;

use fledge_api::{Canary, MetricCheck};
use fledge_core::replay::{self, Decision};
use jiff::Timestamp;
use kube::{Api, Client, ResourceExt};

use crate::analysis::{AnalysisSettings, Analyzer};

/// What to replay.
#[derive(Clone, Debug)]
pub struct ReplayArgs {
    /// The Canary's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The window's start.
    pub from: Timestamp,
    /// The window's end (the last step is at or before it).
    pub to: Timestamp,
    /// A workload name for `{{ target }}` instead of `spec.targetRef.name`.
    pub target: Option<String>,
    /// Where the queries go.
    pub settings: AnalysisSettings,
}

/// How the replayed rollout ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It would have promoted at this step time.
    Promoted(Timestamp),
    /// It would have rolled back at this step time, for this reason.
    RolledBack(Timestamp, String),
    /// It would have paused for a person at this step time (`inconclusiveLimit`).
    Paused(Timestamp),
    /// The window ended first.
    Undecided,
}

/// One replayed step, at its time.
#[derive(Clone, Debug)]
pub struct Step {
    /// When.
    pub at: Timestamp,
    /// What the engine's rules made of it.
    pub step: replay::Step,
}

/// The steps' times from `from` to `to`, `interval` apart (at most `limit`).
pub fn step_times(
    from: Timestamp,
    to: Timestamp,
    interval: Duration,
    limit: usize,
) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= to && out.len() < limit {
        out.push(t);
        match t.checked_add(interval) {
            Ok(next) => t = next,
            Err(_) => break,
        }
    }
    out
}

/// The longest replay, in steps.
const MAX_STEPS: usize = 10_000;

/// Replays the analysis of `canary` with the metric results `results_at` gives for each step
/// time; the steps and the verdict. The decisions are [`fledge_core::replay`]'s.
pub async fn replay<F, Fut>(
    canary: &Canary,
    times: &[Timestamp],
    mut results_at: F,
) -> (Vec<Step>, Verdict)
where
    F: FnMut(Timestamp) -> Fut,
    Fut: std::future::Future<Output = Vec<fledge_core::MetricResult>>,
{
    let mut rollout = replay::Replay::new(canary);
    let mut steps = Vec::new();
    for &at in times {
        let step = rollout.step(&results_at(at).await);
        let verdict = match &step.decision {
            Decision::Promote => Some(Verdict::Promoted(at)),
            d @ Decision::RollBack { .. } => Some(Verdict::RolledBack(
                at,
                d.rollback_reason().unwrap_or_default(),
            )),
            Decision::Pause { .. } => Some(Verdict::Paused(at)),
            _ => None,
        };
        steps.push(Step { at, step });
        if let Some(v) = verdict {
            return (steps, v);
        }
    }
    (steps, Verdict::Undecided)
}

/// `fledge replay`: reads the Canary, replays its analysis over the window, prints each step
/// and the verdict. Exit code 0 when it would have promoted, 1 rolled back, 3 undecided, 4
/// paused at `inconclusiveLimit`, 2 when it could not run.
pub async fn run(
    client: Client,
    args: ReplayArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let api: Api<Canary> = Api::namespaced(client.clone(), &args.namespace);
    let mut canary = match api.get_opt(&args.name).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            let _ = writeln!(
                err,
                "fledge replay: Canary {}/{} not found",
                args.namespace, args.name
            );
            return 2;
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "fledge replay: cannot read Canary {}/{}: {e}",
                args.namespace, args.name
            );
            return 2;
        }
    };
    if args.to < args.from {
        let _ = writeln!(err, "fledge replay: --to is before --from");
        return 2;
    }
    if let Some(t) = &args.target {
        canary.spec.target_ref.name = t.clone();
    }
    let interval = canary.spec.analysis_or_default().interval();
    let times = step_times(args.from, args.to, interval, MAX_STEPS);
    let analyzer = Analyzer::new(client, args.settings.clone());
    let metrics: Vec<String> = canary
        .spec
        .analysis_or_default()
        .metrics
        .iter()
        .flatten()
        .map(|m| m.name.clone())
        .collect();
    let _ = writeln!(
        out,
        "fledge replay {}/{} (target {}): {} steps every {}s from {} to {}",
        args.namespace,
        canary.name_any(),
        canary.spec.target_ref.name,
        times.len(),
        interval.as_secs(),
        args.from.strftime("%Y-%m-%dT%H:%M:%SZ"),
        args.to.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    let _ = writeln!(
        out,
        "{:<22} {:>8}  {:<40}  decision",
        "time",
        "step",
        metrics.join(", ")
    );
    let (steps, verdict) = replay(&canary, &times, |at| {
        let analyzer = &analyzer;
        let canary = &canary;
        async move { analyzer.run_at(canary, Some(at.as_second())).await }
    })
    .await;
    for s in &steps {
        let values: Vec<String> = s.step.checks.iter().map(check_text).collect();
        let _ = writeln!(
            out,
            "{:<22} {:>8}  {:<40}  {}",
            s.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            s.step.position,
            values.join(", "),
            s.step.decision
        );
        if let Some(j) = &s.step.judgement {
            let score = j
                .score
                .map_or_else(|| "no score".into(), |v| format!("{v}"));
            let _ = writeln!(
                out,
                "{:<33}judgement: score {score} ({}): {}",
                "", j.outcome, j.reason
            );
        }
        for c in s.step.checks.iter().filter(|c| !c.passed) {
            if let Some(r) = &c.reason {
                let _ = writeln!(out, "{:<33}{r}", "");
            }
        }
    }
    match verdict {
        Verdict::Promoted(at) => {
            let _ = writeln!(out, "would have promoted at {}", at.strftime("%H:%M:%S"));
            0
        }
        Verdict::RolledBack(at, why) => {
            let _ = writeln!(
                out,
                "would have rolled back at {}: {why}",
                at.strftime("%H:%M:%S")
            );
            1
        }
        Verdict::Paused(at) => {
            let _ = writeln!(
                out,
                "would have paused for a person at {}: inconclusiveLimit reached",
                at.strftime("%H:%M:%S")
            );
            4
        }
        Verdict::Undecided => {
            let _ = writeln!(
                out,
                "undecided: the window ended before a promotion or a rollback"
            );
            3
        }
    }
}

/// `99.5 ok`, `612 FAILED`, `no data inconclusive`, `3 failed (dry run)`.
fn check_text(c: &MetricCheck) -> String {
    let value = c.value.map_or_else(
        || "no value".to_string(),
        |v| {
            format!("{v:.4}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        },
    );
    let mark = match (
        c.passed,
        c.inconclusive == Some(true),
        c.dry_run == Some(true),
    ) {
        (_, true, _) => "inconclusive",
        (true, _, _) => "ok",
        (false, _, true) => "failed (dry run)",
        (false, _, false) => "FAILED",
    };
    match &c.classification {
        Some(class) => format!("{value} {class} {mark}"),
        None => format!("{value} {mark}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_core::{MetricOutcome, MetricResult};

    fn canary(analysis: serde_json::Value) -> Canary {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "shop"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": analysis,
            }
        }))
        .unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn success(v: f64) -> Vec<MetricResult> {
        vec![MetricResult {
            name: "request-success-rate".into(),
            outcome: MetricOutcome::Value(v),
        }]
    }

    fn weighted() -> Canary {
        canary(serde_json::json!({
            "interval": "10s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]
        }))
    }

    #[test]
    fn step_times_are_an_interval_apart_within_the_window() {
        let t = step_times(at(0), at(25), Duration::from_secs(10), 100);
        assert_eq!(t, [at(0), at(10), at(20)]);
        assert_eq!(
            step_times(at(0), at(100), Duration::from_secs(1), 3).len(),
            3
        );
    }

    #[tokio::test]
    async fn a_healthy_window_promotes_after_the_last_weight() {
        let c = weighted();
        let times = step_times(at(0), at(60), Duration::from_secs(10), 100);
        let (steps, verdict) = replay(&c, &times, |_| async { success(99.9) }).await;
        assert_eq!(verdict, Verdict::Promoted(at(20)));
        let decisions: Vec<String> = steps
            .iter()
            .map(|s| format!("{} {}", s.step.position, s.step.decision))
            .collect();
        assert_eq!(
            decisions,
            [
                "20% passed: advance to 40%",
                "40% passed: advance to 60%",
                "60% passed: promote"
            ]
        );
    }

    #[tokio::test]
    async fn failing_steps_hold_and_roll_back_at_the_threshold() {
        let c = weighted();
        let times = step_times(at(0), at(60), Duration::from_secs(10), 100);
        let values = [99.9, 95.0, 92.0];
        let (steps, verdict) = replay(&c, &times, |t| {
            let i = ((t.as_second() - at(0).as_second()) / 10) as usize;
            let v = values[i.min(2)];
            async move { success(v) }
        })
        .await;
        assert_eq!(
            verdict,
            Verdict::RolledBack(at(20), "failed checks threshold reached 2".into())
        );
        assert_eq!(steps[1].step.decision.to_string(), "failed check 1/2: hold");
        assert_eq!(steps[1].step.position, "40%");
        assert_eq!(check_text(&steps[2].step.checks[0]), "92 FAILED");
    }

    #[tokio::test]
    async fn dry_run_failures_never_count_and_blue_green_counts_iterations() {
        let c = canary(serde_json::json!({
            "interval": "1m", "threshold": 1, "iterations": 2,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "dryRun": true}]
        }));
        let times = step_times(at(0), at(600), Duration::from_secs(60), 100);
        let (steps, verdict) = replay(&c, &times, |_| async { success(50.0) }).await;
        assert_eq!(verdict, Verdict::Promoted(at(60)));
        assert_eq!(steps[0].step.position, "1/2");
        assert_eq!(check_text(&steps[0].step.checks[0]), "50 failed (dry run)");
    }

    #[tokio::test]
    async fn a_short_window_is_undecided() {
        let c = weighted();
        let (_, verdict) = replay(&c, &[at(0)], |_| async { success(99.9) }).await;
        assert_eq!(verdict, Verdict::Undecided);
    }
}
