//! One analysis step judged statistically, from the Canary's spec: the judge's settings from
//! `spec.analysis.judge` and each metric's `judge` block, the samples from the metric results,
//! and what the engine records and counts.

use std::collections::BTreeMap;

use fledge_api::{
    CanaryAnalysis, CanaryMetric, EffectMeasureName, JudgementRecord, MetricCheck, MetricJudge,
};

use super::{
    Direction, EffectMeasure, EffectSize, JudgeConfig, Judgement, MetricConfig, NanStrategy,
    Outcome, Outliers, judge,
};
use crate::{MetricOutcome, MetricResult};

/// The judge's settings of `analysis`, when it has `judge`.
pub fn config(analysis: &CanaryAnalysis) -> Option<JudgeConfig> {
    let j = analysis.judge.as_ref()?;
    let defaults = JudgeConfig::default();
    let t = j.score_thresholds.unwrap_or_default();
    Some(JudgeConfig {
        confidence: j.confidence.unwrap_or(defaults.confidence),
        marginal: t.marginal.unwrap_or(defaults.marginal),
        pass: t.pass.unwrap_or(defaults.pass),
        group_weights: j
            .groups
            .iter()
            .flatten()
            .map(|g| (g.name.clone(), g.weight))
            .collect::<BTreeMap<_, _>>(),
    })
}

/// The metrics `analysis` judges statistically (with `judge` set on the analysis and on the
/// metric), in the order of `spec.analysis.metrics`.
pub fn judged_metrics(analysis: &CanaryAnalysis) -> Vec<&CanaryMetric> {
    if analysis.judge.is_none() {
        return Vec::new();
    }
    analysis
        .metrics
        .iter()
        .flatten()
        .filter(|m| m.judge.is_some())
        .collect()
}

/// How the judge treats one metric, from its `judge` block.
pub fn metric_config(name: &str, j: &MetricJudge) -> MetricConfig {
    let measure = match j.effect_size.and_then(|e| e.measure).unwrap_or_default() {
        EffectMeasureName::MeanRatio => EffectMeasure::MeanRatio,
        EffectMeasureName::Cles => EffectMeasure::Cles,
    };
    let strict = EffectSize::strict(measure);
    let e = j.effect_size.unwrap_or_default();
    let allowed_increase = e.allowed_increase.unwrap_or(strict.allowed_increase);
    let allowed_decrease = e.allowed_decrease.unwrap_or(strict.allowed_decrease);
    MetricConfig {
        name: name.to_string(),
        group: j
            .group
            .clone()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| "default".into()),
        direction: match j.direction.as_deref() {
            Some("increase") => Direction::Increase,
            Some("decrease") => Direction::Decrease,
            _ => Direction::Either,
        },
        effect: EffectSize {
            measure,
            allowed_increase,
            allowed_decrease,
            critical_increase: e.critical_increase.unwrap_or(allowed_increase),
            critical_decrease: e.critical_decrease.unwrap_or(allowed_decrease),
        },
        critical: j.critical.unwrap_or(false),
        must_have_data: j.must_have_data.unwrap_or(false),
        nans: match j.nan_strategy.as_deref() {
            Some("replace") => NanStrategy::Replace,
            _ => NanStrategy::Remove,
        },
        outliers: match j.outliers.as_deref() {
            Some("none") => Outliers::Keep,
            _ => Outliers::default(),
        },
    }
}

/// A statistically judged step.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgedStep {
    /// Each judged metric's record, in the order of the spec: the canary's median as the value,
    /// the classification, both medians and the p-value; a metric whose query failed is a
    /// failed check with the provider's reason (it is not judged).
    pub checks: Vec<MetricCheck>,
    /// The judgement of the metrics that had samples.
    pub judgement: Judgement,
    /// What the status and the ledger keep of it.
    pub record: JudgementRecord,
}

impl JudgedStep {
    /// The step's failure message when the judgement failed it: the outcome's reason and each
    /// failing metric's.
    pub fn failure(&self) -> Option<String> {
        if self.judgement.outcome != Outcome::Fail {
            return None;
        }
        let metrics: Vec<String> = self
            .judgement
            .metrics
            .iter()
            .filter(|v| v.failed)
            .map(|v| format!("{} {}: {}", v.name, v.classification.as_str(), v.reason))
            .collect();
        Some(format!(
            "statistical judgement failed: {}; {}",
            self.judgement.reason,
            metrics.join("; ")
        ))
    }

    /// A one-line summary for the step's Event: the score and each metric's class and medians.
    pub fn summary(&self) -> String {
        let metrics: Vec<String> = self
            .judgement
            .metrics
            .iter()
            .map(|v| {
                format!(
                    "{} {} (canary {}, baseline {})",
                    v.name,
                    v.classification.as_str(),
                    super::significant(v.canary_median),
                    super::significant(v.baseline_median)
                )
            })
            .collect();
        format!(
            "{} ({}): {}",
            self.record.reason,
            self.record.outcome,
            metrics.join(", ")
        )
    }
}

/// Judges the step of `analysis` from the metric `results` (a judged metric's result carries
/// [`MetricOutcome::Samples`]); `None` when the analysis judges no metric.
pub fn judge_step(analysis: &CanaryAnalysis, results: &[MetricResult]) -> Option<JudgedStep> {
    let cfg = config(analysis)?;
    let metrics = judged_metrics(analysis);
    if metrics.is_empty() {
        return None;
    }
    let mut inputs = Vec::new();
    let mut failed_queries = BTreeMap::new();
    for m in &metrics {
        let Some(j) = &m.judge else { continue };
        let outcome = results
            .iter()
            .find(|r| r.name == m.name)
            .map(|r| &r.outcome);
        let (baseline, canary) = match outcome {
            Some(MetricOutcome::Samples { baseline, canary }) => (baseline.clone(), canary.clone()),
            Some(MetricOutcome::NoData) => (Vec::new(), Vec::new()),
            Some(MetricOutcome::Value(v)) => (Vec::new(), vec![*v]),
            failed @ (Some(MetricOutcome::ProviderUnreachable(_) | MetricOutcome::Error(_))
            | None) => {
                let reason = crate::check_metric(m, failed).err().unwrap_or_default();
                failed_queries.insert(m.name.clone(), reason);
                continue;
            }
        };
        inputs.push((metric_config(&m.name, j), baseline, canary));
    }
    let judgement = judge(&cfg, &inputs);
    let inconclusive = judgement.outcome == Outcome::NoData;
    let checks = metrics
        .iter()
        .map(|m| {
            let dry_run = m.is_dry_run().then_some(true);
            if let Some(reason) = failed_queries.get(&m.name) {
                return MetricCheck {
                    name: m.name.clone(),
                    passed: false,
                    reason: Some(reason.clone()),
                    dry_run,
                    ..Default::default()
                };
            }
            let v = judgement.metrics.iter().find(|v| v.name == m.name);
            let finite = |x: f64| x.is_finite().then_some(x);
            let failed = v.is_some_and(|v| v.failed);
            MetricCheck {
                name: m.name.clone(),
                value: v.and_then(|v| finite(v.canary_median)),
                min: None,
                max: None,
                passed: !failed,
                reason: v.filter(|_| failed || inconclusive).map(|v| {
                    format!(
                        "metric {} {}: {}",
                        m.name,
                        v.classification.as_str(),
                        v.reason
                    )
                }),
                dry_run,
                inconclusive: inconclusive.then_some(true),
                classification: v.map(|v| v.classification.as_str().to_string()),
                baseline_median: v.and_then(|v| finite(v.baseline_median)),
                canary_median: v.and_then(|v| finite(v.canary_median)),
                p_value: v.and_then(|v| v.p_value),
            }
        })
        .collect();
    let record = JudgementRecord {
        score: judgement.score.map(|s| (s * 10.0).round() / 10.0),
        outcome: match judgement.outcome {
            Outcome::Pass => "pass",
            Outcome::Marginal => "marginal",
            Outcome::Fail => "fail",
            Outcome::NoData => "nodata",
        }
        .into(),
        reason: judgement.reason.clone(),
    };
    Some(JudgedStep {
        checks,
        judgement,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analysis(judge: serde_json::Value, metrics: serde_json::Value) -> CanaryAnalysis {
        serde_json::from_value(serde_json::json!({
            "interval": "10s", "threshold": 1, "stepWeight": 20, "maxWeight": 60,
            "judge": judge, "metrics": metrics,
        }))
        .unwrap()
    }

    fn latency() -> serde_json::Value {
        serde_json::json!([
            {"name": "errors", "thresholdRange": {"max": 1}},
            {"name": "latency", "templateRef": {"name": "latency"},
             "judge": {"direction": "increase", "critical": true,
                       "effectSize": {"allowedIncrease": 1.1, "criticalIncrease": 1.5}}}
        ])
    }

    fn samples(base: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| base + 0.001 * ((i * 37) % n) as f64)
            .collect()
    }

    #[test]
    fn settings_come_from_the_spec_with_the_judges_defaults() {
        let a = analysis(
            serde_json::json!({"type": "statistical", "confidence": 0.99,
                               "scoreThresholds": {"marginal": 60},
                               "groups": [{"name": "latency", "weight": 3}]}),
            latency(),
        );
        let c = config(&a).unwrap();
        assert_eq!((c.confidence, c.marginal, c.pass), (0.99, 60.0, 95.0));
        assert_eq!(c.group_weights["latency"], 3.0);
        let m = judged_metrics(&a);
        assert_eq!(m.len(), 1, "only the metric with a judge block");
        let mc = metric_config(&m[0].name, m[0].judge.as_ref().unwrap());
        assert_eq!(mc.direction, Direction::Increase);
        assert_eq!(
            (mc.effect.allowed_increase, mc.effect.critical_increase),
            (1.1, 1.5)
        );
        assert_eq!(mc.effect.allowed_decrease, 1.0);
        assert!(mc.critical && !mc.must_have_data);
        assert_eq!(mc.group, "default");
        let none = analysis(serde_json::Value::Null, latency());
        assert!(config(&none).is_none() && judged_metrics(&none).is_empty());
    }

    #[test]
    fn a_slower_canary_fails_the_step_with_both_medians_recorded() {
        let a = analysis(serde_json::json!({"type": "statistical"}), latency());
        let results = |canary: f64| {
            vec![MetricResult {
                name: "latency".into(),
                outcome: MetricOutcome::Samples {
                    baseline: samples(0.050, 40),
                    canary: samples(canary, 40),
                },
            }]
        };
        let same = judge_step(&a, &results(0.050)).unwrap();
        assert_eq!(same.record.outcome, "pass");
        assert_eq!(same.failure(), None);
        assert!(same.checks[0].passed);
        assert_eq!(same.checks[0].classification.as_deref(), Some("Pass"));

        let slow = judge_step(&a, &results(0.150)).unwrap();
        assert_eq!(slow.record.outcome, "fail");
        let check = &slow.checks[0];
        assert!(!check.passed);
        assert_eq!(check.classification.as_deref(), Some("High"));
        assert!(
            (check.baseline_median.unwrap() - 0.0695).abs() < 0.001,
            "{check:?}"
        );
        assert!(
            (check.canary_median.unwrap() - 0.1695).abs() < 0.001,
            "{check:?}"
        );
        assert!(check.p_value.unwrap() < 0.001);
        let failure = slow.failure().unwrap();
        assert!(
            failure.contains("critical metric failed: latency"),
            "{failure}"
        );
        assert!(
            slow.summary().contains("latency High"),
            "{}",
            slow.summary()
        );
    }

    #[test]
    fn a_failed_query_is_a_failed_check_and_no_data_is_inconclusive() {
        let a = analysis(serde_json::json!({"type": "statistical"}), latency());
        let down = judge_step(
            &a,
            &[MetricResult {
                name: "latency".into(),
                outcome: MetricOutcome::ProviderUnreachable("connection refused".into()),
            }],
        )
        .unwrap();
        assert!(!down.checks[0].passed);
        assert_eq!(
            down.checks[0].reason.as_deref(),
            Some("metric latency: metrics provider unreachable: connection refused")
        );
        let empty = judge_step(
            &a,
            &[MetricResult {
                name: "latency".into(),
                outcome: MetricOutcome::NoData,
            }],
        )
        .unwrap();
        assert_eq!(empty.record.outcome, "nodata");
        assert_eq!(empty.checks[0].inconclusive, Some(true));
        assert!(empty.checks[0].passed);
        assert_eq!(empty.failure(), None);
    }
}
