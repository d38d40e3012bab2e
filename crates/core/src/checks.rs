//! Judging results: metric values against their ranges, webhook answers against their gates.
//!
//! Anything that is not a clear pass is a failure: a missing result, NaN, an infinite value,
//! no data, an unreachable provider, a query error, or a range bound that is not a number.

use fledge_api::{CanaryMetric, CanaryWebhook, HookType, MetricCheck, NoDataPolicy};

use crate::observe::{MetricOutcome, MetricResult, WebhookResult};

/// The longest message taken from a webhook answer or a provider error.
const MAX_MESSAGE: usize = 256;

/// One failed check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What failed and why, for people.
    pub message: String,
    /// The failure comes from a webhook with `muteAlert: true`: no chat alert for it.
    pub muted: bool,
    /// The check runs in dry-run mode: reported, never counted.
    pub dry_run: bool,
}

/// The bounds a passing value of `metric` lies within (inclusive): `thresholdRange` when set,
/// otherwise the deprecated `threshold` (a minimum for `request-success-rate`, a maximum for
/// every other metric, as in Flagger).
pub fn metric_bounds(metric: &CanaryMetric) -> (Option<f64>, Option<f64>) {
    if let Some(range) = metric.threshold_range {
        return (range.min, range.max);
    }
    match metric.threshold {
        Some(t) if metric.name == "request-success-rate" => (Some(t), None),
        Some(t) => (None, Some(t)),
        None => (None, None),
    }
}

/// Judges one metric: `Ok(value)` when it passes, `Err(reason)` otherwise. `outcome` is `None`
/// when the check has no result, which fails.
pub fn check_metric(metric: &CanaryMetric, outcome: Option<&MetricOutcome>) -> Result<f64, String> {
    let name = &metric.name;
    let value = match outcome {
        None => return Err(format!("metric {name}: no result, the check did not run")),
        Some(MetricOutcome::NoData) => return Err(format!("metric {name}: no data")),
        Some(MetricOutcome::ProviderUnreachable(m)) => {
            return Err(format!(
                "metric {name}: metrics provider unreachable: {}",
                clip(m)
            ));
        }
        Some(MetricOutcome::Error(m)) => {
            return Err(format!("metric {name}: query failed: {}", clip(m)));
        }
        Some(MetricOutcome::Value(v)) if v.is_nan() => {
            return Err(format!("metric {name}: the value is NaN"));
        }
        Some(MetricOutcome::Value(v)) if v.is_infinite() => {
            return Err(format!("metric {name}: the value {v} is not finite"));
        }
        Some(MetricOutcome::Value(v)) => *v,
        Some(MetricOutcome::Samples { .. }) => {
            return Err(format!(
                "metric {name}: samples for a statistical judgement, and the metric has fixed \
                 thresholds"
            ));
        }
    };
    let (min, max) = metric_bounds(metric);
    for bound in [min, max].into_iter().flatten() {
        if bound.is_nan() {
            return Err(format!("metric {name}: its threshold is not a number"));
        }
    }
    // With both bounds, the message gives the whole passing range (alerts quote it).
    let range = match (min, max) {
        (Some(lo), Some(hi)) => format!(" (passing range {lo} to {hi})"),
        _ => String::new(),
    };
    if let Some(min) = min
        && value < min
    {
        return Err(format!(
            "metric {name}: {value} is below the minimum {min}{range}"
        ));
    }
    if let Some(max) = max
        && value > max
    {
        return Err(format!(
            "metric {name}: {value} is above the maximum {max}{range}"
        ));
    }
    Ok(value)
}

/// The failures among the declared `metrics`, given the results (matched by name; the first
/// result of a name counts; results of undeclared metrics are ignored). Failures of dry-run
/// metrics are marked so; a check left out for no data (`noData: skip`) is no failure.
pub fn metric_failures(metrics: &[CanaryMetric], results: &[MetricResult]) -> Vec<Failure> {
    failures_of(&metric_checks(metrics, results))
}

/// The failures among recorded metric checks (see [`metric_failures`]).
pub fn failures_of(checks: &[MetricCheck]) -> Vec<Failure> {
    checks
        .iter()
        .filter(|c| !c.passed && c.inconclusive != Some(true))
        .filter_map(|c| {
            c.reason.clone().map(|message| Failure {
                message,
                muted: false,
                dry_run: c.dry_run == Some(true),
            })
        })
        .collect()
}

/// The record of each declared metric's check, in the order of `metrics`, given the results
/// (matched as in [`metric_failures`]): the value when the query gave a finite number, the
/// range, and the reason when it failed.
pub fn metric_checks(metrics: &[CanaryMetric], results: &[MetricResult]) -> Vec<MetricCheck> {
    metrics
        .iter()
        .map(|m| {
            let outcome = results
                .iter()
                .find(|r| r.name == m.name)
                .map(|r| &r.outcome);
            let (min, max) = metric_bounds(m);
            let value = match outcome {
                Some(MetricOutcome::Value(v)) if v.is_finite() => Some(*v),
                _ => None,
            };
            let no_data = matches!(outcome, Some(MetricOutcome::NoData));
            let policy = m.no_data_policy().unwrap_or(NoDataPolicy::Fail);
            let (reason, inconclusive) = match (no_data, policy) {
                (true, NoDataPolicy::Pass) => (None, false),
                (true, NoDataPolicy::Skip) => (
                    Some(format!(
                        "metric {}: no data; the step is judged without it (noData: skip)",
                        m.name
                    )),
                    true,
                ),
                _ => (check_metric(m, outcome).err(), false),
            };
            MetricCheck {
                name: m.name.clone(),
                value,
                min: min.filter(|b| b.is_finite()),
                max: max.filter(|b| b.is_finite()),
                passed: reason.is_none(),
                reason,
                dry_run: m.is_dry_run().then_some(true),
                inconclusive: inconclusive.then_some(true),
                ..Default::default()
            }
        })
        .collect()
}

/// Every metric check of one analysis step of `analysis`, in the spec's order: the fixed
/// thresholds of [`metric_checks`] and, with `judge`, the statistical judgement of the metrics
/// that carry a `judge` block; the failures they count (a failed judgement is one failure,
/// a dry run when every judged metric is); and the judgement.
pub fn step_checks(
    analysis: &fledge_api::CanaryAnalysis,
    results: &[MetricResult],
) -> (
    Vec<MetricCheck>,
    Vec<Failure>,
    Option<crate::judge::JudgedStep>,
) {
    let metrics = analysis.metrics.as_deref().unwrap_or_default();
    let judged = crate::judge::judge_step(analysis, results);
    let fixed: Vec<CanaryMetric> = metrics
        .iter()
        .filter(|m| judged.is_none() || m.judge.is_none())
        .cloned()
        .collect();
    let mut checks = metric_checks(&fixed, results);
    let mut failures = failures_of(&checks);
    if let Some(step) = &judged {
        checks.extend(step.checks.iter().cloned());
        checks.sort_by_key(|c| metrics.iter().position(|m| m.name == c.name));
        // A judged metric's own verdict counts only through the judgement (a High metric may
        // still leave the score passing); a query that failed counts as it does for any metric.
        let unjudged: Vec<MetricCheck> = step
            .checks
            .iter()
            .filter(|c| c.classification.is_none())
            .cloned()
            .collect();
        failures.extend(failures_of(&unjudged));
        if let Some(message) = step.failure() {
            let all_dry_run = crate::judge::step::judged_metrics(analysis)
                .iter()
                .all(|m| m.is_dry_run());
            failures.push(Failure {
                message,
                muted: false,
                dry_run: all_dry_run,
            });
        }
    }
    (checks, failures, judged)
}

/// The failures of a gate: each declared webhook of type `hook` that has no passing result.
pub fn gate_failures(
    hooks: &[CanaryWebhook],
    hook: HookType,
    results: &[WebhookResult],
) -> Vec<Failure> {
    hooks
        .iter()
        .filter_map(|h| {
            let result = results.iter().find(|r| r.hook == hook && r.name == h.name);
            let message = match result {
                Some(r) if r.passed => return None,
                Some(r) => format!("{hook} webhook {} failed: {}", h.name, clip(&r.message)),
                None => format!("{hook} webhook {}: no result, it was not called", h.name),
            };
            Some(Failure {
                message,
                muted: h.mute_alert,
                dry_run: h.is_dry_run(),
            })
        })
        .collect()
}

/// What the `rollback` webhooks asked for: the reason of the first one that answered yes
/// (passed), and what each dry-run webhook that answered yes would have asked (reported, never
/// acted on). A missing result asks for nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RollbackRequest {
    /// Why to roll back, when a webhook that counts asked.
    pub reason: Option<String>,
    /// What the dry-run webhooks that answered yes would have asked.
    pub dry_run: Vec<String>,
}

/// The `rollback` webhooks' [`RollbackRequest`].
pub fn rollback_request(hooks: &[CanaryWebhook], results: &[WebhookResult]) -> RollbackRequest {
    let mut out = RollbackRequest::default();
    for h in hooks {
        let Some(r) = results
            .iter()
            .find(|r| r.hook == HookType::Rollback && r.name == h.name && r.passed)
        else {
            continue;
        };
        let detail = clip(&r.message);
        let asked = if detail.is_empty() {
            format!("rollback webhook {} asked for a rollback", h.name)
        } else {
            format!("rollback webhook {} asked for a rollback: {detail}", h.name)
        };
        if h.is_dry_run() {
            out.dry_run.push(asked);
        } else if out.reason.is_none() {
            out.reason = Some(asked);
        }
    }
    out
}

/// `s` cut to [`MAX_MESSAGE`] bytes at a character boundary, trimmed.
pub(crate) fn clip(s: &str) -> &str {
    let s = s.trim();
    if s.len() <= MAX_MESSAGE {
        return s;
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use fledge_api::CanaryThresholdRange;

    fn metric(name: &str, min: Option<f64>, max: Option<f64>) -> CanaryMetric {
        CanaryMetric {
            name: name.into(),
            threshold_range: Some(CanaryThresholdRange { min, max }),
            ..Default::default()
        }
    }

    #[test]
    fn values_inside_the_range_pass_and_bounds_are_inclusive() {
        let m = metric("latency", Some(1.0), Some(500.0));
        for v in [1.0, 250.0, 500.0] {
            assert_eq!(check_metric(&m, Some(&MetricOutcome::Value(v))), Ok(v));
        }
        for v in [0.999, 500.001, -1.0] {
            assert!(
                check_metric(&m, Some(&MetricOutcome::Value(v))).is_err(),
                "{v}"
            );
        }
    }

    #[test]
    fn a_value_outside_both_bounds_names_the_whole_range() {
        let m = metric("latency", Some(1.0), Some(500.0));
        let err = check_metric(&m, Some(&MetricOutcome::Value(750.0))).unwrap_err();
        assert_eq!(
            err,
            "metric latency: 750 is above the maximum 500 (passing range 1 to 500)"
        );
        let one_bound = metric("rate", Some(99.0), None);
        let err = check_metric(&one_bound, Some(&MetricOutcome::Value(42.0))).unwrap_err();
        assert_eq!(err, "metric rate: 42 is below the minimum 99");
    }

    #[test]
    fn anything_but_a_finite_value_fails() {
        let m = metric("rate", None, None);
        let bad = [
            None,
            Some(MetricOutcome::NoData),
            Some(MetricOutcome::Value(f64::NAN)),
            Some(MetricOutcome::Value(f64::INFINITY)),
            Some(MetricOutcome::Value(f64::NEG_INFINITY)),
            Some(MetricOutcome::ProviderUnreachable(
                "dial tcp: refused".into(),
            )),
            Some(MetricOutcome::Error("bad query".into())),
        ];
        for o in &bad {
            let err = check_metric(&m, o.as_ref()).unwrap_err();
            assert!(err.starts_with("metric rate: "), "{err}");
        }
    }

    #[test]
    fn a_nan_bound_never_passes() {
        let m = metric("rate", Some(f64::NAN), None);
        assert!(check_metric(&m, Some(&MetricOutcome::Value(1.0))).is_err());
    }

    #[test]
    fn legacy_threshold_is_a_minimum_for_success_rate_and_a_maximum_otherwise() {
        let sr = CanaryMetric {
            name: "request-success-rate".into(),
            threshold: Some(99.0),
            ..Default::default()
        };
        assert_eq!(metric_bounds(&sr), (Some(99.0), None));
        assert!(check_metric(&sr, Some(&MetricOutcome::Value(98.0))).is_err());
        assert!(check_metric(&sr, Some(&MetricOutcome::Value(99.5))).is_ok());
        let d = CanaryMetric {
            name: "request-duration".into(),
            threshold: Some(500.0),
            ..Default::default()
        };
        assert_eq!(metric_bounds(&d), (None, Some(500.0)));
        assert!(check_metric(&d, Some(&MetricOutcome::Value(501.0))).is_err());
        assert!(check_metric(&d, Some(&MetricOutcome::Value(499.0))).is_ok());
    }

    #[test]
    fn threshold_range_wins_over_legacy_threshold() {
        let m = CanaryMetric {
            name: "request-success-rate".into(),
            threshold: Some(99.0),
            threshold_range: Some(CanaryThresholdRange {
                min: Some(90.0),
                max: None,
            }),
            ..Default::default()
        };
        assert!(check_metric(&m, Some(&MetricOutcome::Value(95.0))).is_ok());
    }

    #[test]
    fn metrics_are_matched_by_name_and_missing_ones_fail() {
        let ms = vec![metric("a", Some(1.0), None), metric("b", Some(1.0), None)];
        let results = vec![
            MetricResult {
                name: "a".into(),
                outcome: MetricOutcome::Value(2.0),
            },
            MetricResult {
                name: "zzz".into(),
                outcome: MetricOutcome::Value(2.0),
            },
        ];
        let f = metric_failures(&ms, &results);
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("metric b: no result"), "{f:?}");
    }

    fn hook(name: &str, t: &str, mute: bool) -> CanaryWebhook {
        CanaryWebhook {
            name: name.into(),
            r#type: Some(t.into()),
            url: "http://x".into(),
            mute_alert: mute,
            ..Default::default()
        }
    }

    #[test]
    fn a_gate_opens_only_when_every_webhook_of_its_type_passed() {
        let hooks = vec![
            hook("a", "confirm-promotion", false),
            hook("b", "confirm-promotion", true),
        ];
        let pass = |n: &str, p: bool| WebhookResult {
            hook: HookType::ConfirmPromotion,
            name: n.into(),
            passed: p,
            message: "nope".into(),
        };
        assert!(
            gate_failures(
                &hooks,
                HookType::ConfirmPromotion,
                &[pass("a", true), pass("b", true)]
            )
            .is_empty()
        );
        let f = gate_failures(&hooks, HookType::ConfirmPromotion, &[pass("a", true)]);
        assert_eq!(f.len(), 1);
        assert!(f[0].muted && f[0].message.contains("b: no result"));
        let f = gate_failures(
            &hooks,
            HookType::ConfirmPromotion,
            &[pass("a", false), pass("b", true)],
        );
        assert_eq!(f[0].message, "confirm-promotion webhook a failed: nope");
        // A result of another type does not count.
        let other = WebhookResult {
            hook: HookType::Rollout,
            ..pass("a", true)
        };
        assert_eq!(
            gate_failures(
                &hooks,
                HookType::ConfirmPromotion,
                &[other, pass("b", true)]
            )
            .len(),
            1
        );
    }

    #[test]
    fn rollback_is_asked_only_by_a_passing_rollback_webhook() {
        let hooks = vec![hook("r", "rollback", false)];
        let res = |p: bool| WebhookResult {
            hook: HookType::Rollback,
            name: "r".into(),
            passed: p,
            message: String::new(),
        };
        assert_eq!(rollback_request(&hooks, &[]), RollbackRequest::default());
        assert_eq!(
            rollback_request(&hooks, &[res(false)]),
            RollbackRequest::default()
        );
        assert_eq!(
            rollback_request(&hooks, &[res(true)]).reason.as_deref(),
            Some("rollback webhook r asked for a rollback")
        );
        let dry = vec![CanaryWebhook {
            dry_run: Some(true),
            ..hook("r", "rollback", false)
        }];
        assert_eq!(
            rollback_request(&dry, &[res(true)]),
            RollbackRequest {
                reason: None,
                dry_run: vec!["rollback webhook r asked for a rollback".into()]
            }
        );
    }

    #[test]
    fn clip_cuts_at_a_char_boundary() {
        let s = "é".repeat(300);
        let c = clip(&s);
        assert!(c.len() <= MAX_MESSAGE && c.chars().all(|ch| ch == 'é'));
    }
}
