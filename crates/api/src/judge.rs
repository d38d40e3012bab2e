//! fledge extension: statistical judgement of a canary against a baseline
//! (`spec.analysis.judge`, and `judge` on each metric it compares).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// How the analysis judges the metrics that carry a `judge` block: the canary's samples
/// against a baseline's, with a Mann-Whitney U test and an effect size, scored by group.
/// Metrics without a `judge` block keep their fixed thresholds.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryJudge {
    /// `statistical` (the only kind).
    #[schemars(extend("enum" = ["statistical"]))]
    pub r#type: String,
    /// What the canary is compared with: `fresh` (the default: a `<target>-baseline`
    /// Deployment created from the primary's spec with the canary's replica count, so pods of
    /// equal age are compared; removed when the rollout ends) or `primary` (the primary's pods).
    #[schemars(extend("enum" = ["", "fresh", "primary"]))]
    pub baseline: Option<String>,
    /// How sure a difference must be to count, between 0.5 and 1 (exclusive). Default 0.98.
    pub confidence: Option<f64>,
    /// The score (0 to 100) under which a step fails, and from which it passes cleanly.
    pub score_thresholds: Option<ScoreThresholds>,
    /// The weights of the metric groups in the score (a group not listed weighs 1).
    pub groups: Option<Vec<JudgeGroup>>,
}

/// The score's bounds.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScoreThresholds {
    /// Under this score the step fails. Default 75.
    pub marginal: Option<f64>,
    /// From this score on the step passes cleanly (between the two: marginal). Default 95.
    pub pass: Option<f64>,
}

/// A group of metrics and its weight in the score.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JudgeGroup {
    /// The group's name, as the metrics' `judge.group` give it.
    pub name: String,
    /// Its weight (positive).
    pub weight: f64,
}

/// How one metric is compared between baseline and canary. Its query (a MetricTemplate's) is
/// run as a range query over the step's interval, once with `{{ target }}` naming the canary's
/// workload and once naming the baseline's; every value of every series it returns (e.g. one
/// series per pod) is a sample.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricJudge {
    /// The group the metric counts in. Default `default`.
    pub group: Option<String>,
    /// Which change is bad: `increase` (latency, errors), `decrease` (success rate) or
    /// `either` (the default).
    #[schemars(extend("enum" = ["", "increase", "decrease", "either"]))]
    pub direction: Option<String>,
    /// How large a change may be before it counts.
    pub effect_size: Option<EffectSizeSpec>,
    /// A failure of this metric, reaching its critical effect size, fails the step whatever the
    /// score.
    pub critical: Option<bool>,
    /// No data fails the metric (otherwise it is left out of the score).
    pub must_have_data: Option<bool>,
    /// NaN values: `remove` (the default) or `replace` (as zero).
    #[schemars(extend("enum" = ["", "remove", "replace"]))]
    pub nan_strategy: Option<String>,
    /// Outlier removal: `iqr` (the default: values more than 3 interquartile ranges outside the
    /// quartiles are dropped) or `none`.
    #[schemars(extend("enum" = ["", "iqr", "none"]))]
    pub outliers: Option<String>,
}

/// The allowed and critical change of a metric, as a ratio of means (`meanRatio`, the default:
/// e.g. `allowedIncrease: 1.1` lets the canary's mean be 10% higher) or as the common-language
/// effect size (`cles`: the probability that a canary value exceeds a baseline value, 0.5 for
/// no change).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EffectSizeSpec {
    /// `meanRatio` or `cles`.
    pub measure: Option<EffectMeasureName>,
    /// The largest increase that passes (≥ 1 as a ratio, ≥ 0.5 as CLES).
    pub allowed_increase: Option<f64>,
    /// The largest decrease that passes (≤ 1 as a ratio, ≤ 0.5 as CLES).
    pub allowed_decrease: Option<f64>,
    /// The increase from which a critical metric's failure fails the step.
    pub critical_increase: Option<f64>,
    /// The decrease from which a critical metric's failure fails the step.
    pub critical_decrease: Option<f64>,
}

/// The measure of an effect size.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EffectMeasureName {
    /// `meanRatio`.
    #[default]
    #[serde(rename = "meanRatio")]
    MeanRatio,
    /// `cles`.
    #[serde(rename = "cles")]
    Cles,
}

impl CanaryJudge {
    /// Whether the baseline is a fresh `<target>-baseline` Deployment (the default).
    pub fn fresh_baseline(&self) -> bool {
        self.baseline.as_deref().unwrap_or("fresh") != "primary"
    }
}

/// The name of a target's fresh baseline workload.
pub fn baseline_name(target: &str) -> String {
    format!("{target}-baseline")
}

/// fledge extension: what the statistical judgement of one step found.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JudgementRecord {
    /// The score, 0 to 100 (none when no metric counted).
    pub score: Option<f64>,
    /// `pass`, `marginal` or `fail`.
    pub outcome: String,
    /// Why, in a sentence.
    pub reason: String,
}
