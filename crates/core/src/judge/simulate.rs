//! A simulator with a known answer for the statistical judge (feature `judge-sim`): request-level
//! traffic to a baseline and a canary, a shift injected into the canary, and the two ways of
//! judging it side by side, the statistical judge and fixed thresholds as Flagger has them.
//!
//! The model, per run:
//!
//! - three baseline pods and three canary pods, each getting `rate` requests per second
//!   (Poisson), judged every `interval` (60 s) over `intervals` (3) steps from a random time of
//!   day; the judge reads per-pod series at a 10 s resolution (6 samples per pod per interval,
//!   18 per side), as a range query returns them;
//! - errors are Bernoulli per request at 1% (the canary: plus the injected percentage points);
//!   latency is log-normal with a median of 50 ms and σ = 0.5 (the canary: times the injected
//!   factor); each series point is the bucket's error percentage and its p99 latency;
//! - a diurnal drift shared by both sides moves the traffic (±50%), the error rate (±40%) and
//!   the latency (±30%) over the day, so a fixed threshold must leave room for the peak;
//! - fixed thresholds judge the canary's error percentage and p99 over the whole interval (what
//!   a Flagger MetricTemplate over `[1m]` measures), one failed interval rolling back;
//! - the statistical judge compares the two metrics' series with [`super::judge`], directions
//!   `increase`, one failed step rolling back.
//!
//! A p99 of `n` requests is drawn exactly (the `⌈0.99 n⌉`-th of `n` normal draws) up to 1,000
//! requests, and from the normal approximation of a sample quantile above.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Binomial, Distribution, Poisson, StandardNormal};

use super::{Direction, EffectSize, JudgeConfig, MetricConfig, Outcome, Outliers, judge};

/// The standard normal's 0.99 quantile.
const Z99: f64 = 2.326_347_874_040_841;
/// Pods per side.
const PODS: usize = 3;
/// Seconds per series point.
const BUCKET: f64 = 10.0;
/// Seconds per interval.
const INTERVAL: f64 = 60.0;
/// The error probability of a request at the day's mean.
const BASE_ERROR: f64 = 0.01;
/// The median latency at the day's mean, in ms.
const BASE_MEDIAN_MS: f64 = 50.0;
/// The latency's log-normal σ.
const SIGMA: f64 = 0.5;

/// How the traffic per pod is chosen for each run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Traffic {
    /// Always this many requests per second per pod.
    Fixed(f64),
    /// Log-uniform between the two, per run.
    LogUniform(f64, f64),
}

/// One scenario: the traffic and the shift injected into the canary.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Its name in the table.
    pub name: String,
    /// Requests per second per pod.
    pub traffic: Traffic,
    /// Percentage points added to the canary's error rate.
    pub error_shift_pp: f64,
    /// The canary's latency factor (1.2: 20% slower, every percentile).
    pub latency_factor: f64,
    /// Intervals judged.
    pub intervals: usize,
}

impl Scenario {
    /// Whether the canary differs from the baseline (so a rollback is a detection, not a false
    /// rollback).
    pub fn shifted(&self) -> bool {
        self.error_shift_pp != 0.0 || self.latency_factor != 1.0
    }
}

/// What one side measured in one interval.
#[derive(Clone, Debug, Default)]
struct Interval {
    /// Per pod and bucket: the error percentage (NaN without requests).
    errors: Vec<f64>,
    /// Per pod and bucket: the p99 latency in ms (NaN without requests).
    p99: Vec<f64>,
    /// Over the interval: the error percentage and the p99, all pods together.
    total_errors: f64,
    total_p99: f64,
}

/// The day's drift at second `t`: factors for traffic, errors and latency.
fn drift(t: f64) -> (f64, f64, f64) {
    let s = (2.0 * std::f64::consts::PI * t / 86_400.0).sin();
    (1.0 + 0.5 * s, 1.0 + 0.4 * s, 1.0 + 0.3 * s)
}

/// The p99 latency of `n` requests in ms, with `median` in ms.
fn p99_of(rng: &mut StdRng, n: u64, median: f64) -> f64 {
    let z = if n <= 1_000 {
        let k = ((0.99 * n as f64).ceil() as usize).clamp(1, n as usize) - 1;
        let mut draws: Vec<f64> = (0..n).map(|_| rng.sample(StandardNormal)).collect();
        *draws.select_nth_unstable_by(k, f64::total_cmp).1
    } else {
        // A sample quantile is about normal around the true one with variance
        // p (1 - p) / (n f(q)^2); for the standard normal f(q) is its density at q.
        let density = (-Z99 * Z99 / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let sd = (0.99 * 0.01 / n as f64).sqrt() / density;
        Z99 + sd * rng.sample::<f64, _>(StandardNormal)
    };
    median * (SIGMA * z).exp()
}

/// Simulates one side for one interval starting at second `t`.
fn side(rng: &mut StdRng, t: f64, rate: f64, error_pp: f64, latency_factor: f64) -> Interval {
    let (traffic, err, lat) = drift(t);
    let p_error = (BASE_ERROR * err + error_pp / 100.0).clamp(0.0, 1.0);
    let median = BASE_MEDIAN_MS * lat * latency_factor;
    let mut out = Interval::default();
    let (mut requests, mut errors) = (0u64, 0u64);
    let buckets = (INTERVAL / BUCKET) as usize;
    for _pod in 0..PODS {
        for _ in 0..buckets {
            let mean = rate * traffic * BUCKET;
            let n = if mean > 0.0 {
                Poisson::new(mean).map_or(0.0, |d| d.sample(rng)) as u64
            } else {
                0
            };
            let e = Binomial::new(n, p_error).map_or(0, |d| d.sample(rng));
            requests += n;
            errors += e;
            if n == 0 {
                out.errors.push(f64::NAN);
                out.p99.push(f64::NAN);
            } else {
                out.errors.push(100.0 * e as f64 / n as f64);
                out.p99.push(p99_of(rng, n, median));
            }
        }
    }
    out.total_errors = if requests == 0 {
        f64::NAN
    } else {
        100.0 * errors as f64 / requests as f64
    };
    out.total_p99 = if requests == 0 {
        f64::NAN
    } else {
        p99_of(rng, requests, median)
    };
    out
}

/// The two metrics, as the statistical judge is set for the simulation: both get worse when
/// they rise, and allow a modest change (errors up to ×1.3, latency up to ×1.1) so that noise
/// that happens to be significant does not roll back.
pub fn metrics() -> [MetricConfig; 2] {
    let mut errors = MetricConfig::new("error-rate");
    errors.direction = Direction::Increase;
    errors.effect = EffectSize {
        allowed_increase: 1.3,
        ..EffectSize::default()
    };
    errors.outliers = Outliers::Keep;
    let mut latency = MetricConfig::new("latency-p99");
    latency.direction = Direction::Increase;
    latency.effect = EffectSize {
        allowed_increase: 1.1,
        ..EffectSize::default()
    };
    [errors, latency]
}

/// One run's outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    /// The interval (1-based) in which the statistical judge failed the canary, if any.
    pub statistical_failed_at: Option<usize>,
    /// The canary's highest error percentage and p99 over the intervals, for the fixed
    /// thresholds (which fail an interval when either is above its threshold).
    pub max_errors: f64,
    /// See `max_errors`.
    pub max_p99: f64,
}

/// Simulates one run of `scenario` from `seed`.
pub fn run(scenario: &Scenario, cfg: &JudgeConfig, seed: u64) -> Run {
    let mut rng = StdRng::seed_from_u64(seed);
    let rate = match scenario.traffic {
        Traffic::Fixed(r) => r,
        Traffic::LogUniform(lo, hi) => (lo.ln() + (hi.ln() - lo.ln()) * rng.random::<f64>()).exp(),
    };
    let start = 86_400.0 * rng.random::<f64>();
    let [errors, latency] = metrics();
    let mut out = Run {
        statistical_failed_at: None,
        max_errors: f64::NEG_INFINITY,
        max_p99: f64::NEG_INFINITY,
    };
    for i in 0..scenario.intervals {
        let t = start + INTERVAL * i as f64;
        let baseline = side(&mut rng, t, rate, 0.0, 1.0);
        let canary = side(
            &mut rng,
            t,
            rate,
            scenario.error_shift_pp,
            scenario.latency_factor,
        );
        let j = judge(
            cfg,
            &[
                (errors.clone(), baseline.errors, canary.errors),
                (latency.clone(), baseline.p99, canary.p99),
            ],
        );
        if j.outcome == Outcome::Fail && out.statistical_failed_at.is_none() {
            out.statistical_failed_at = Some(i + 1);
        }
        if !canary.total_errors.is_nan() {
            out.max_errors = out.max_errors.max(canary.total_errors);
        }
        if !canary.total_p99.is_nan() {
            out.max_p99 = out.max_p99.max(canary.total_p99);
        }
    }
    out
}

/// Fixed thresholds: the canary's error percentage and p99 over an interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// The highest error percentage that passes.
    pub max_errors: f64,
    /// The highest p99 in ms that passes.
    pub max_p99: f64,
}

impl Thresholds {
    /// Whether a run's canary failed them in any interval.
    pub fn fail(&self, r: &Run) -> bool {
        r.max_errors > self.max_errors || r.max_p99 > self.max_p99
    }

    /// Thresholds that roll back a share `rate` of the A/A runs, half the budget to each
    /// metric: each threshold is the `1 - rate / 2` quantile of the runs' highest values.
    pub fn tuned(aa: &[Run], rate: f64) -> Thresholds {
        let quantile_of = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            super::sample::quantile(&v, 1.0 - rate / 2.0)
        };
        Thresholds {
            max_errors: quantile_of(aa.iter().map(|r| r.max_errors).collect()),
            max_p99: quantile_of(aa.iter().map(|r| r.max_p99).collect()),
        }
    }
}

/// One row of the table: how often each way rolled back.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The scenario.
    pub scenario: Scenario,
    /// Runs.
    pub runs: usize,
    /// The share of runs the statistical judge rolled back within the intervals.
    pub statistical: f64,
    /// The share the fixed thresholds rolled back.
    pub fixed: f64,
}

/// The scenarios of the table: A/A, +1 percentage point of errors, +20% latency, over traffic
/// from 1 to 1,000 requests per second per pod, and the last two again at 1 request per second.
pub fn scenarios() -> Vec<Scenario> {
    let s = |name: &str, traffic, error_shift_pp, latency_factor| Scenario {
        name: name.to_string(),
        traffic,
        error_shift_pp,
        latency_factor,
        intervals: 3,
    };
    let wide = Traffic::LogUniform(10.0, 1000.0);
    let low = Traffic::Fixed(1.0);
    vec![
        s("A/A (no difference), 10-1000 req/s per pod", wide, 0.0, 1.0),
        s("+1 pp errors, 10-1000 req/s per pod", wide, 1.0, 1.0),
        s("+20% latency, 10-1000 req/s per pod", wide, 0.0, 1.2),
        s("A/A (no difference), 1 req/s per pod", low, 0.0, 1.0),
        s("+1 pp errors, 1 req/s per pod", low, 1.0, 1.0),
        s("+20% latency, 1 req/s per pod", low, 0.0, 1.2),
    ]
}

/// Runs every scenario `runs` times (seeds `seed..seed + runs`), with the fixed thresholds
/// tuned per traffic to the statistical judge's false-rollback rate in the A/A scenario of the
/// same traffic (at least one run in `runs`, so that the thresholds stay finite).
pub fn table(cfg: &JudgeConfig, runs: usize, seed: u64) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut thresholds: Option<(Traffic, Thresholds)> = None;
    for scenario in scenarios() {
        let results: Vec<Run> = (0..runs as u64)
            .map(|i| run(&scenario, cfg, seed.wrapping_add(i)))
            .collect();
        let statistical = share(&results, |r| r.statistical_failed_at.is_some());
        if !scenario.shifted() {
            let rate = statistical.max(1.0 / runs as f64);
            thresholds = Some((scenario.traffic, Thresholds::tuned(&results, rate)));
        }
        let fixed = match thresholds {
            Some((traffic, t)) if traffic == scenario.traffic => share(&results, |r| t.fail(r)),
            _ => f64::NAN,
        };
        rows.push(Row {
            scenario,
            runs,
            statistical,
            fixed,
        });
    }
    rows
}

fn share(runs: &[Run], f: impl Fn(&Run) -> bool) -> f64 {
    runs.iter().filter(|r| f(r)).count() as f64 / runs.len().max(1) as f64
}
