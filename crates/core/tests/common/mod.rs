//! Builders shared by the engine's tests.
#![allow(dead_code)]

use std::time::Duration;

use fledge_api::{
    CanaryAnalysis, CanaryMetric, CanaryPhase, CanaryService, CanarySpec, CanaryThresholdRange,
    CanaryWebhook, HttpMatchRequest, LocalObjectReference, StringMatch,
};
use fledge_core::sim::Sim;
use jiff::Timestamp;

/// A fixed start time.
pub fn t0() -> Timestamp {
    "2025-03-01T12:00:00Z".parse().expect("valid timestamp")
}

/// `t0() + secs`.
pub fn at(secs: u64) -> Timestamp {
    t0().checked_add(Duration::from_secs(secs))
        .expect("in range")
}

/// A metric with a range.
pub fn metric(name: &str, min: Option<f64>, max: Option<f64>) -> CanaryMetric {
    CanaryMetric {
        name: name.into(),
        interval: Some("1m".into()),
        threshold_range: Some(CanaryThresholdRange { min, max }),
        ..Default::default()
    }
}

/// Flagger's two builtin checks.
pub fn builtin_metrics() -> Vec<CanaryMetric> {
    vec![
        metric("request-success-rate", Some(99.0), None),
        metric("request-duration", None, Some(500.0)),
    ]
}

/// A webhook of a type.
pub fn hook(name: &str, t: &str) -> CanaryWebhook {
    CanaryWebhook {
        name: name.into(),
        r#type: Some(t.into()),
        url: format!("http://flagger-loadtester.test/{name}"),
        ..Default::default()
    }
}

/// Flagger's worked example: interval 1m, threshold 5, stepWeight 5, maxWeight 50, the two
/// builtin metrics.
pub fn canary_spec() -> CanarySpec {
    CanarySpec {
        target_ref: LocalObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some("Deployment".into()),
            name: "podinfo".into(),
        },
        service: CanaryService {
            port: 9898,
            ..Default::default()
        },
        analysis: Some(CanaryAnalysis {
            interval: Some("1m".into()),
            threshold: Some(5),
            max_weight: Some(50),
            step_weight: Some(5),
            metrics: Some(builtin_metrics()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The analysis of `spec`, for editing.
pub fn analysis(spec: &mut CanarySpec) -> &mut CanaryAnalysis {
    spec.analysis.get_or_insert_with(Default::default)
}

/// A/B testing with `iterations` and a header match.
pub fn ab_spec(iterations: i32) -> CanarySpec {
    let mut s = canary_spec();
    let a = analysis(&mut s);
    a.step_weight = None;
    a.max_weight = None;
    a.iterations = Some(iterations);
    a.threshold = Some(2);
    a.r#match = Some(vec![HttpMatchRequest {
        headers: Some(
            [(
                "x-canary".to_string(),
                StringMatch {
                    exact: Some("insider".into()),
                    ..Default::default()
                },
            )]
            .into(),
        ),
        ..Default::default()
    }]);
    s
}

/// Blue/green with `iterations`; mirrored when `mirror`.
pub fn blue_green_spec(iterations: i32, mirror: bool) -> CanarySpec {
    let mut s = canary_spec();
    let a = analysis(&mut s);
    a.step_weight = None;
    a.max_weight = None;
    a.iterations = Some(iterations);
    a.threshold = Some(2);
    if mirror {
        a.mirror = Some(true);
        a.mirror_weight = Some(100);
    }
    s
}

/// `spec` with `spec.gitops`: a repository and, with `path`, a GitOps source to revert.
pub fn with_git(mut spec: CanarySpec, path: Option<&str>) -> CanarySpec {
    spec.gitops = Some(Box::new(fledge_api::gitops::GitOps {
        repository: fledge_api::gitops::GitRepository {
            url: "git://127.0.0.1/app.git".into(),
            ..Default::default()
        },
        path: path.map(str::to_string),
        ..Default::default()
    }));
    spec
}

/// A simulator already `Initialized` with `spec`.
pub fn initialized(spec: CanarySpec) -> Sim {
    let mut sim = Sim::new(spec, t0());
    assert!(sim.run_to(CanaryPhase::Initialized, 10), "{sim:?}");
    sim
}

/// A simulator that has started the rollout of `rev-2` and runs it to a rest phase.
pub fn roll_out(spec: CanarySpec) -> Sim {
    let mut sim = initialized(spec);
    sim.new_revision("rev-2");
    sim.reconcile();
    sim.run_until(200, |s| {
        matches!(s.status.phase, CanaryPhase::Succeeded | CanaryPhase::Failed)
    });
    sim
}
