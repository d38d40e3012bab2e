//! A rollout's analysis replayed over past metric results, step by step: what the engine would
//! have decided at each step, without webhooks, gates or a cluster. `fledge replay` feeds it the
//! metrics provider's answers at each step's time.
//!
//! The rules are the engine's: each step's metrics are judged by [`metric_checks`] (ranges,
//! `dryRun`, `noData`); a step with a counted failure counts towards `threshold`, which rolls
//! the rollout back; a step judged without metrics that had no data is inconclusive and pauses
//! the rollout at every `inconclusiveLimit`-th such step; a passing step advances to the next
//! weight of [`weights::next_weight`] (or the next iteration), and past the last one the rollout
//! would have promoted.

use fledge_api::{Canary, CanaryAnalysis, JudgementRecord, MetricCheck, Strategy};

use crate::{MetricResult, checks::step_checks, weights};

/// What one replayed step decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Passed: the canary goes to this weight.
    Advance(i32),
    /// Passed: the next iteration, numbered from 1, of `of`.
    Iterate { number: i32, of: i32 },
    /// Passed after the last weight or iteration: promotion.
    Promote,
    /// Failed, counted as the `count`-th of `threshold`: the rollout holds.
    Hold { count: i32, threshold: i32 },
    /// Failed, the `count`-th reaching `threshold`: rollback.
    RollBack { count: i32, threshold: i32 },
    /// Inconclusive for the `count`-th time, at the `inconclusiveLimit`: paused for a person.
    Pause { count: i32 },
}

impl Decision {
    /// Whether the replayed rollout ends here.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Decision::Promote | Decision::RollBack { .. } | Decision::Pause { .. }
        )
    }
}

impl Decision {
    /// The rollback's reason, as the engine gives it, when the step rolled back.
    pub fn rollback_reason(&self) -> Option<String> {
        match self {
            Decision::RollBack { count, .. } => {
                Some(format!("failed checks threshold reached {count}"))
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Advance(w) => write!(f, "passed: advance to {w}%"),
            Decision::Iterate { number, of } => write!(f, "passed: iteration {number}/{of}"),
            Decision::Promote => f.write_str("passed: promote"),
            Decision::Hold { count, threshold } => {
                write!(f, "failed check {count}/{threshold}: hold")
            }
            Decision::RollBack { count, threshold } => {
                write!(f, "failed check {count}/{threshold}: roll back")
            }
            Decision::Pause { count } => {
                write!(f, "inconclusive {count} times: pause for a person")
            }
        }
    }
}

/// One replayed step: where the rollout stood, each metric's check, and the decision.
#[derive(Clone, Debug)]
pub struct Step {
    /// The canary's weight (`20%`) or the iteration (`2/5`) while the step ran.
    pub position: String,
    /// Each metric's check.
    pub checks: Vec<MetricCheck>,
    /// The statistical judgement, with `spec.analysis.judge`.
    pub judgement: Option<JudgementRecord>,
    /// What the step decided.
    pub decision: Decision,
}

/// A replayed rollout, moved along one step at a time by [`Replay::step`].
#[derive(Clone, Debug)]
pub struct Replay {
    analysis: CanaryAnalysis,
    strategy: Strategy,
    weight: i32,
    iteration: i32,
    failed: i32,
    inconclusive: i32,
}

impl Replay {
    /// A rollout of `canary` at its first analysis step: a weighted canary at its first weight
    /// (set by the pre-rollout step), the other strategies at their first iteration.
    pub fn new(canary: &Canary) -> Replay {
        let analysis = canary.spec.analysis_or_default();
        let strategy = canary.spec.strategy();
        let weight = match strategy {
            Strategy::Canary => weights::next_weight(&analysis, 0).unwrap_or(0),
            _ => 0,
        };
        Replay {
            analysis: analysis.into_owned(),
            strategy,
            weight,
            iteration: 1,
            failed: 0,
            inconclusive: 0,
        }
    }

    fn position(&self) -> String {
        match self.strategy {
            Strategy::Canary => format!("{}%", self.weight),
            _ => format!("{}/{}", self.iteration, self.analysis.iterations().max(1)),
        }
    }

    /// Judges one step with the metrics' `results` and moves the rollout along.
    pub fn step(&mut self, results: &[MetricResult]) -> Step {
        let position = self.position();
        let (checks, failures, judged) = step_checks(&self.analysis, results);
        let counted = failures.iter().any(|f| !f.dry_run);
        let decision = if counted {
            self.failed = self.failed.saturating_add(1);
            let threshold = self.analysis.threshold().max(1);
            let count = self.failed;
            if count >= threshold {
                Decision::RollBack { count, threshold }
            } else {
                Decision::Hold { count, threshold }
            }
        } else if checks.iter().any(|c| c.inconclusive == Some(true)) && self.inconclusive_pauses()
        {
            Decision::Pause {
                count: self.inconclusive,
            }
        } else {
            self.advance()
        };
        Step {
            position,
            checks,
            judgement: judged.map(|j| j.record),
            decision,
        }
    }

    /// Counts an inconclusive step; whether it reached the limit.
    fn inconclusive_pauses(&mut self) -> bool {
        self.inconclusive = self.inconclusive.saturating_add(1);
        self.analysis
            .inconclusive_limit
            .filter(|l| *l > 0)
            .is_some_and(|l| self.inconclusive % l == 0)
    }

    fn advance(&mut self) -> Decision {
        match self.strategy {
            Strategy::Canary => match weights::next_weight(&self.analysis, self.weight) {
                Some(w) => {
                    self.weight = w;
                    Decision::Advance(w)
                }
                None => Decision::Promote,
            },
            _ if self.iteration < self.analysis.iterations().max(1) => {
                self.iteration += 1;
                Decision::Iterate {
                    number: self.iteration,
                    of: self.analysis.iterations().max(1),
                }
            }
            _ => Decision::Promote,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricOutcome;

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

    fn success(v: Option<f64>) -> Vec<MetricResult> {
        vec![MetricResult {
            name: "request-success-rate".into(),
            outcome: v.map_or(MetricOutcome::NoData, MetricOutcome::Value),
        }]
    }

    fn run(c: &Canary, values: &[Option<f64>]) -> Vec<(String, Decision)> {
        let mut r = Replay::new(c);
        let mut out = Vec::new();
        for v in values {
            let s = r.step(&success(*v));
            let end = s.decision.is_final();
            out.push((s.position, s.decision));
            if end {
                break;
            }
        }
        out
    }

    fn weighted() -> Canary {
        canary(serde_json::json!({
            "interval": "10s", "threshold": 2, "stepWeight": 20, "maxWeight": 60,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}]
        }))
    }

    #[test]
    fn a_healthy_rollout_advances_through_the_weights_and_promotes() {
        let steps = run(&weighted(), &[Some(99.9); 5]);
        assert_eq!(
            steps,
            [
                ("20%".into(), Decision::Advance(40)),
                ("40%".into(), Decision::Advance(60)),
                ("60%".into(), Decision::Promote),
            ]
        );
        assert_eq!(steps[0].1.to_string(), "passed: advance to 40%");
    }

    #[test]
    fn failures_hold_and_roll_back_at_the_threshold() {
        let steps = run(&weighted(), &[Some(99.9), Some(95.0), Some(92.0)]);
        assert_eq!(
            steps[1],
            (
                "40%".into(),
                Decision::Hold {
                    count: 1,
                    threshold: 2
                }
            )
        );
        assert_eq!(
            steps[2].1,
            Decision::RollBack {
                count: 2,
                threshold: 2
            }
        );
        assert_eq!(
            steps[2].1.rollback_reason().as_deref(),
            Some("failed checks threshold reached 2")
        );
        assert_eq!(steps[2].1.to_string(), "failed check 2/2: roll back");
        assert_eq!(steps[1].1.to_string(), "failed check 1/2: hold");
    }

    #[test]
    fn dry_run_failures_never_count_and_iterations_are_numbered_from_one() {
        let c = canary(serde_json::json!({
            "interval": "1m", "threshold": 1, "iterations": 2,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "dryRun": true}]
        }));
        let steps = run(&c, &[Some(50.0); 4]);
        assert_eq!(
            steps,
            [
                ("1/2".into(), Decision::Iterate { number: 2, of: 2 }),
                ("2/2".into(), Decision::Promote)
            ]
        );
    }

    #[test]
    fn skipped_metrics_without_data_pause_at_the_inconclusive_limit() {
        let c = canary(serde_json::json!({
            "interval": "10s", "threshold": 1, "stepWeight": 10, "maxWeight": 50,
            "inconclusiveLimit": 2,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "noData": "skip"}]
        }));
        let steps = run(&c, &[None, Some(99.5), None, None]);
        assert_eq!(
            steps,
            [
                ("10%".into(), Decision::Advance(20)),
                ("20%".into(), Decision::Advance(30)),
                ("30%".into(), Decision::Pause { count: 2 }),
            ]
        );
    }
}
