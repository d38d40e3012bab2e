//! Statistical judgement of a canary against a baseline, pure: each metric's baseline and
//! canary samples are compared with a two-sided Mann-Whitney U test and an effect size, and
//! classified `Pass`, `High`, `Low` or `NoData`; the metrics' groups, weighted, give a score
//! from 0 to 100, and the score and the critical metrics give the step's verdict.
//!
//! For one metric:
//!
//! 1. both samples are cleaned ([`sample::clean`]: NaNs, infinities, outliers); an empty one
//!    is `NoData`;
//! 2. the test says whether they differ at the configured confidence (`p < 1 - confidence`),
//!    and which way (the canary's common-language effect size above or below one half);
//! 3. a difference within the allowed effect size (a ratio of means, or the common-language
//!    effect size) passes, and so does a difference in the harmless direction;
//! 4. a failing `critical` metric whose effect reaches its critical effect size fails the
//!    step whatever the score.

pub mod mannwhitney;
pub mod sample;
#[cfg(feature = "judge-sim")]
pub mod simulate;
pub mod step;

use std::collections::BTreeMap;

pub use mannwhitney::{MannWhitney, Method, mann_whitney_u};
pub use sample::{NanStrategy, Outliers};
pub use step::{JudgedStep, judge_step};

/// Which change of a metric is bad.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Higher is worse (latency, errors).
    Increase,
    /// Lower is worse (success rate, throughput).
    Decrease,
    /// Any change is bad (the default).
    #[default]
    Either,
}

/// How a difference is measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EffectMeasure {
    /// The canary's mean over the baseline's.
    #[default]
    MeanRatio,
    /// The probability that a canary value exceeds a baseline value, ties counting one half.
    Cles,
}

/// How large a difference may be: below `allowed` a significant difference still passes; from
/// `critical` on, a failing critical metric fails the step. Both per direction, in the units of
/// the [`EffectMeasure`] (a ratio, or a probability).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EffectSize {
    /// The measure.
    pub measure: EffectMeasure,
    /// The largest increase that passes (ratio ≥ 1, or probability ≥ 0.5).
    pub allowed_increase: f64,
    /// The largest decrease that passes (ratio ≤ 1, or probability ≤ 0.5).
    pub allowed_decrease: f64,
    /// The increase from which a critical metric's failure is critical.
    pub critical_increase: f64,
    /// The decrease from which a critical metric's failure is critical.
    pub critical_decrease: f64,
}

impl EffectSize {
    /// No allowance: every significant difference counts, and every one is critical.
    pub fn strict(measure: EffectMeasure) -> EffectSize {
        let neutral = match measure {
            EffectMeasure::MeanRatio => 1.0,
            EffectMeasure::Cles => 0.5,
        };
        EffectSize {
            measure,
            allowed_increase: neutral,
            allowed_decrease: neutral,
            critical_increase: neutral,
            critical_decrease: neutral,
        }
    }
}

impl Default for EffectSize {
    fn default() -> EffectSize {
        EffectSize::strict(EffectMeasure::MeanRatio)
    }
}

/// How one metric is judged.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricConfig {
    /// The metric's name.
    pub name: String,
    /// Its group, for the score.
    pub group: String,
    /// Which change is bad.
    pub direction: Direction,
    /// How large a change may be.
    pub effect: EffectSize,
    /// A failure fails the step whatever the score.
    pub critical: bool,
    /// No data counts as a failure (otherwise the metric is left out of the score).
    pub must_have_data: bool,
    /// NaN values.
    pub nans: NanStrategy,
    /// Outliers.
    pub outliers: Outliers,
}

impl MetricConfig {
    /// A metric in the group `default`, any change bad, no allowance, not critical.
    pub fn new(name: &str) -> MetricConfig {
        MetricConfig {
            name: name.to_string(),
            group: "default".to_string(),
            direction: Direction::Either,
            effect: EffectSize::default(),
            critical: false,
            must_have_data: false,
            nans: NanStrategy::Remove,
            outliers: Outliers::default(),
        }
    }
}

/// The judge's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct JudgeConfig {
    /// How sure a difference must be: it counts when `p < 1 - confidence`.
    pub confidence: f64,
    /// Under this score (0 to 100) the step fails.
    pub marginal: f64,
    /// From this score on the step passes cleanly; between the two it passes as marginal.
    pub pass: f64,
    /// The weight of each group (a group not named weighs 1).
    pub group_weights: BTreeMap<String, f64>,
}

impl Default for JudgeConfig {
    fn default() -> JudgeConfig {
        JudgeConfig {
            confidence: 0.98,
            marginal: 75.0,
            pass: 95.0,
            group_weights: BTreeMap::new(),
        }
    }
}

/// A metric's class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    /// No difference that matters.
    Pass,
    /// The canary is higher, beyond what is allowed, in a direction that is bad.
    High,
    /// The canary is lower, beyond what is allowed, in a direction that is bad.
    Low,
    /// The baseline or the canary had no value.
    NoData,
}

impl Classification {
    /// As the status shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Pass => "Pass",
            Classification::High => "High",
            Classification::Low => "Low",
            Classification::NoData => "NoData",
        }
    }
}

/// What the judge found for one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricVerdict {
    /// The metric's name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// Its class.
    pub classification: Classification,
    /// Why, in words.
    pub reason: String,
    /// It fails the step whatever the score.
    pub critical_failure: bool,
    /// It counts as a failure in the score (a bad difference, or no data where data is a
    /// must).
    pub failed: bool,
    /// The baseline's and the canary's medians (NaN without data).
    pub baseline_median: f64,
    /// See `baseline_median`.
    pub canary_median: f64,
    /// The values judged, after cleaning.
    pub baseline_count: usize,
    /// See `baseline_count`.
    pub canary_count: usize,
    /// The test's p-value, when there was data.
    pub p_value: Option<f64>,
    /// The effect size in the configured measure, when there was data.
    pub effect: Option<f64>,
}

/// Judges one metric from its baseline and canary samples.
pub fn judge_metric(
    cfg: &MetricConfig,
    confidence: f64,
    baseline: &[f64],
    canary: &[f64],
) -> MetricVerdict {
    let b = sample::clean(baseline, cfg.nans, cfg.outliers);
    let c = sample::clean(canary, cfg.nans, cfg.outliers);
    let mut v = MetricVerdict {
        name: cfg.name.clone(),
        group: cfg.group.clone(),
        classification: Classification::NoData,
        reason: String::new(),
        critical_failure: false,
        failed: false,
        baseline_median: sample::quantile(&b, 0.5),
        canary_median: sample::quantile(&c, 0.5),
        baseline_count: b.len(),
        canary_count: c.len(),
        p_value: None,
        effect: None,
    };
    let Some(test) = mann_whitney_u(&c, &b, Method::Auto) else {
        let empty = match (b.is_empty(), c.is_empty()) {
            (true, true) => "the baseline and the canary",
            (true, false) => "the baseline",
            _ => "the canary",
        };
        v.reason = format!("{empty} had no value");
        if cfg.must_have_data {
            v.failed = true;
            v.critical_failure = cfg.critical;
            v.reason.push_str(" (data is a must for this metric)");
        }
        return v;
    };
    let cles = test.cles(c.len(), b.len());
    let effect = match cfg.effect.measure {
        EffectMeasure::Cles => cles,
        EffectMeasure::MeanRatio => mean_ratio(sample::mean(&c), sample::mean(&b)),
    };
    v.p_value = Some(test.p_value);
    v.effect = Some(effect);
    let medians = format!(
        "median {} against the baseline's {}",
        significant(v.canary_median),
        significant(v.baseline_median)
    );
    let alpha = 1.0 - confidence;
    if test.p_value >= alpha || cles == 0.5 {
        v.classification = Classification::Pass;
        v.reason = format!(
            "no significant difference (p = {:.4}, needs < {alpha:.4}): {medians}",
            test.p_value
        );
        return v;
    }
    let higher = cles > 0.5;
    let e = &cfg.effect;
    let (allowed, critical, harmless) = if higher {
        (
            effect <= e.allowed_increase,
            effect >= e.critical_increase,
            cfg.direction == Direction::Decrease,
        )
    } else {
        (
            effect >= e.allowed_decrease,
            effect <= e.critical_decrease,
            cfg.direction == Direction::Increase,
        )
    };
    let way = if higher { "higher" } else { "lower" };
    let measured = match e.measure {
        EffectMeasure::MeanRatio => format!("mean ratio {effect:.3}"),
        EffectMeasure::Cles => format!("common-language effect size {effect:.3}"),
    };
    if harmless {
        v.classification = Classification::Pass;
        v.reason = format!(
            "{way} (p = {:.4}), which is not a regression for this metric: {medians}",
            test.p_value
        );
    } else if allowed {
        v.classification = Classification::Pass;
        v.reason = format!(
            "{way} (p = {:.4}) within the allowed change ({measured}): {medians}",
            test.p_value
        );
    } else {
        v.classification = if higher {
            Classification::High
        } else {
            Classification::Low
        };
        v.failed = true;
        v.critical_failure = cfg.critical && critical;
        v.reason = format!(
            "{way} than the baseline (p = {:.4}, {measured}): {medians}",
            test.p_value
        );
    }
    v
}

/// `canary / baseline`, 1 when both are 0, infinite when only the baseline is.
fn mean_ratio(canary: f64, baseline: f64) -> f64 {
    match (canary == 0.0, baseline == 0.0) {
        (true, true) => 1.0,
        (false, true) => f64::INFINITY.copysign(canary),
        _ => canary / baseline,
    }
}

/// A number in three significant digits (whole numbers from 100 on), as judgements show them.
pub fn significant(v: f64) -> String {
    if v.is_nan() {
        return "none".into();
    }
    if v == 0.0 || !v.is_finite() || v.abs() >= 100.0 || v == v.trunc() {
        return format!("{v:.0}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).clamp(0, 15) as usize;
    format!("{v:.decimals$}")
}

/// The step's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The score reached `pass` and no critical metric failed.
    Pass,
    /// The score is between `marginal` and `pass`: the step passes, marked.
    Marginal,
    /// The score is under `marginal`, or a critical metric failed.
    Fail,
    /// No metric had data to judge.
    NoData,
}

/// The judgement of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// Each metric's verdict, in the order given.
    pub metrics: Vec<MetricVerdict>,
    /// The score from 0 to 100, when any metric counted.
    pub score: Option<f64>,
    /// The outcome.
    pub outcome: Outcome,
    /// Why, in words.
    pub reason: String,
}

/// Judges a step: each metric with its samples `(baseline, canary)`, then the score and the
/// outcome.
pub fn judge(cfg: &JudgeConfig, metrics: &[(MetricConfig, Vec<f64>, Vec<f64>)]) -> Judgement {
    let verdicts: Vec<MetricVerdict> = metrics
        .iter()
        .map(|(m, b, c)| judge_metric(m, cfg.confidence, b, c))
        .collect();
    let score = score(cfg, &verdicts);
    let critical: Vec<&str> = verdicts
        .iter()
        .filter(|v| v.critical_failure)
        .map(|v| v.name.as_str())
        .collect();
    let (outcome, reason) = match score {
        _ if !critical.is_empty() => (
            Outcome::Fail,
            format!("critical metric failed: {}", critical.join(", ")),
        ),
        None => (Outcome::NoData, "no metric had data to judge".to_string()),
        Some(s) if s < cfg.marginal => (
            Outcome::Fail,
            format!("score {s:.0} is under the marginal score {}", cfg.marginal),
        ),
        Some(s) if s < cfg.pass => (
            Outcome::Marginal,
            format!("score {s:.0} is marginal (pass from {})", cfg.pass),
        ),
        Some(s) => (Outcome::Pass, format!("score {s:.0}")),
    };
    Judgement {
        metrics: verdicts,
        score,
        outcome,
        reason,
    }
}

/// The weighted score: in each group, the share of its counted metrics that passed; the groups
/// weighted by their weights. A metric without data counts only when data is a must for it;
/// a group with no counted metric is left out. `None` when nothing counted.
pub fn score(cfg: &JudgeConfig, verdicts: &[MetricVerdict]) -> Option<f64> {
    let mut groups: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for v in verdicts {
        if v.classification == Classification::NoData && !v.failed {
            continue;
        }
        let g = groups.entry(v.group.as_str()).or_default();
        g.1 += 1;
        if !v.failed {
            g.0 += 1;
        }
    }
    let (mut weighted, mut weights) = (0.0, 0.0);
    for (group, (passed, counted)) in groups {
        let w = cfg.group_weights.get(group).copied().unwrap_or(1.0);
        weighted += w * passed as f64 / counted as f64;
        weights += w;
    }
    (weights > 0.0).then(|| 100.0 * weighted / weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shifted(n: usize, base: f64, step: f64) -> Vec<f64> {
        // Spread values without ties: base, base + step, … in a shuffled-looking order.
        (0..n)
            .map(|i| base + step * ((i * 37) % n) as f64)
            .collect()
    }

    #[test]
    fn numbers_are_shown_in_three_significant_digits() {
        let shown: Vec<String> = [0.000_183_64, 0.5, 12.345, 250.4, 3.0, 0.0, f64::NAN]
            .into_iter()
            .map(significant)
            .collect();
        assert_eq!(
            shown,
            ["0.000184", "0.500", "12.3", "250", "3", "0", "none"]
        );
    }

    #[test]
    fn equal_samples_pass_and_a_clear_rise_is_high() {
        let m = MetricConfig::new("latency");
        let b = shifted(50, 100.0, 1.0);
        let same = judge_metric(&m, 0.98, &b, &b);
        assert_eq!(same.classification, Classification::Pass, "{same:?}");
        let worse = shifted(50, 130.0, 1.0);
        let v = judge_metric(&m, 0.98, &b, &worse);
        assert_eq!(v.classification, Classification::High, "{v:?}");
        assert!(v.failed && !v.critical_failure);
        assert!(
            v.reason.contains("higher than the baseline"),
            "{}",
            v.reason
        );
        assert_eq!((v.baseline_median, v.canary_median), (124.5, 154.5));
    }

    #[test]
    fn the_direction_and_the_allowance_decide_what_a_difference_means() {
        let b = shifted(50, 100.0, 1.0);
        let lower = shifted(50, 70.0, 1.0);
        let mut m = MetricConfig::new("latency");
        m.direction = Direction::Increase;
        let v = judge_metric(&m, 0.98, &b, &lower);
        assert_eq!(v.classification, Classification::Pass, "{v:?}");
        assert!(v.reason.contains("not a regression"), "{}", v.reason);

        let higher = shifted(50, 110.0, 1.0);
        m.effect.allowed_increase = 1.2;
        let v = judge_metric(&m, 0.98, &b, &higher);
        assert_eq!(v.classification, Classification::Pass, "{v:?}");
        assert!(
            v.reason.contains("within the allowed change"),
            "{}",
            v.reason
        );
        m.effect.allowed_increase = 1.05;
        let v = judge_metric(&m, 0.98, &b, &higher);
        assert_eq!(v.classification, Classification::High, "{v:?}");
    }

    #[test]
    fn a_critical_metric_fails_the_step_whatever_the_score() {
        let b = shifted(40, 100.0, 1.0);
        let bad = shifted(40, 200.0, 1.0);
        let mut errors = MetricConfig::new("errors");
        errors.critical = true;
        errors.effect.critical_increase = 1.5;
        let mut cfg = JudgeConfig::default();
        cfg.group_weights.insert("default".into(), 1.0);
        let fine: Vec<(MetricConfig, Vec<f64>, Vec<f64>)> = (0..9)
            .map(|i| (MetricConfig::new(&format!("m{i}")), b.clone(), b.clone()))
            .collect();
        let mut all = fine.clone();
        all.push((errors.clone(), b.clone(), bad));
        let j = judge(&cfg, &all);
        assert_eq!(j.score, Some(90.0));
        assert_eq!(j.outcome, Outcome::Fail, "{j:?}");
        assert!(j.reason.contains("critical metric failed: errors"));
        // Below its critical effect size the same metric only costs score.
        let mut mild = all.clone();
        mild[9].2 = shifted(40, 130.0, 1.0);
        let j = judge(&cfg, &mild);
        assert_eq!(j.outcome, Outcome::Marginal, "{j:?}");
    }

    #[test]
    fn no_data_is_left_out_unless_it_is_a_must() {
        let b = shifted(20, 1.0, 0.1);
        let cfg = JudgeConfig::default();
        let mut m = MetricConfig::new("gone");
        let ok = MetricConfig::new("ok");
        let j = judge(
            &cfg,
            &[
                (m.clone(), b.clone(), vec![]),
                (ok.clone(), b.clone(), b.clone()),
            ],
        );
        assert_eq!(j.metrics[0].classification, Classification::NoData);
        assert_eq!(j.metrics[0].reason, "the canary had no value");
        assert_eq!((j.score, j.outcome), (Some(100.0), Outcome::Pass));
        m.must_have_data = true;
        let j = judge(&cfg, &[(m.clone(), b.clone(), vec![]), (ok, b.clone(), b)]);
        assert_eq!((j.score, j.outcome), (Some(50.0), Outcome::Fail));
        let j = judge(&cfg, &[(MetricConfig::new("x"), vec![], vec![])]);
        assert_eq!((j.score, j.outcome), (None, Outcome::NoData));
    }

    #[test]
    fn groups_weigh_by_their_weights() {
        let cfg = JudgeConfig {
            group_weights: [("latency".to_string(), 3.0), ("errors".to_string(), 1.0)].into(),
            ..JudgeConfig::default()
        };
        let verdict = |group: &str, failed: bool| MetricVerdict {
            name: "m".into(),
            group: group.into(),
            classification: if failed {
                Classification::High
            } else {
                Classification::Pass
            },
            reason: String::new(),
            critical_failure: false,
            failed,
            baseline_median: 0.0,
            canary_median: 0.0,
            baseline_count: 1,
            canary_count: 1,
            p_value: None,
            effect: None,
        };
        // latency: 1 of 2 passed (0.5 × 3); errors: 1 of 1 (1 × 1); (1.5 + 1) / 4 = 62.5.
        let s = score(
            &cfg,
            &[
                verdict("latency", false),
                verdict("latency", true),
                verdict("errors", false),
            ],
        );
        assert_eq!(s, Some(62.5));
    }

    #[test]
    fn mean_ratios_of_zero_stay_finite_where_they_can() {
        assert_eq!(mean_ratio(0.0, 0.0), 1.0);
        assert_eq!(mean_ratio(2.0, 0.0), f64::INFINITY);
        assert_eq!(mean_ratio(3.0, 2.0), 1.5);
    }
}
