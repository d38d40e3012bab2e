//! A StatefulSet target, driven through `plan` against a small model of the StatefulSet
//! controller: the steps move pods through the partition from the highest ordinal down,
//! promotion lowers it to 0, a rollback puts the template back and leaves the partition.

mod common;

use std::collections::BTreeMap;

use common::*;
use fledge_api::CanaryPhase;
use fledge_api::CanaryStatus;
use fledge_api::statefulset::partition_for_weight;
use fledge_core::{
    Action, ActionClass, MetricOutcome, MetricResult, Observations, Readiness, TargetObservation,
    plan,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The StatefulSet as its controller keeps it: the revision of each ordinal, moved at once.
struct StatefulSet {
    template: String,
    current: String,
    partition: i32,
    pods: Vec<String>,
    /// The canary's share the router was last given.
    routed: i32,
}

impl StatefulSet {
    fn new(replicas: usize) -> Self {
        StatefulSet {
            template: "rev-1".into(),
            current: "rev-1".into(),
            partition: replicas as i32,
            pods: vec!["rev-1".into(); replicas],
            routed: 0,
        }
    }

    /// The StatefulSet controller: every pod at or above the partition runs the template.
    fn settle(&mut self) {
        for (i, pod) in self.pods.iter_mut().enumerate() {
            if i as i32 >= self.partition {
                *pod = self.template.clone();
            }
        }
        if self.pods.iter().all(|p| *p == self.template) {
            self.current = self.template.clone();
        }
    }

    fn replicas(&self) -> i32 {
        self.pods.len() as i32
    }

    /// The ordinals running `rev`.
    fn running(&self, rev: &str) -> Vec<usize> {
        (0..self.pods.len())
            .filter(|i| self.pods[*i] == rev)
            .collect()
    }

    fn observations(&self, now: u64, metrics: Vec<MetricResult>) -> Observations {
        let r = self.replicas();
        let updated = self.pods.iter().filter(|p| **p == self.template).count() as i32;
        Observations {
            generation: Some(1),
            target: Some(TargetObservation {
                spec_hash: self.template.clone(),
                tracked_configs: BTreeMap::new(),
                readiness: Readiness {
                    desired: r - self.partition.min(r),
                    current: r - self.partition.min(r),
                    updated: updated.min(r - self.partition.min(r)),
                    available: updated.min(r - self.partition.min(r)),
                    generation_observed: true,
                },
            }),
            statefulset_replicas: Some(r),
            primary: Some(Readiness::ready(self.partition.min(r).max(1))),
            metrics,
            canary_name: "db".into(),
            ..Observations::at(at(now))
        }
    }

    /// What the adapter does with a plan's cluster actions (the seam's contract).
    fn apply(&mut self, actions: &[Action]) {
        for a in actions.iter().filter(|a| a.class() == ActionClass::Cluster) {
            match a {
                Action::SetPartition { weight } => {
                    self.partition = self
                        .partition
                        .min(partition_for_weight(*weight, self.replicas()))
                }
                Action::SetWeights(routes) => self.routed = routes.canary,
                Action::PromotePrimary { revision } if *revision == self.template => {
                    self.partition = 0
                }
                Action::RollBackTarget { revision } if *revision == self.template => {
                    self.template = self.current.clone()
                }
                Action::ScaleCanary(_) | Action::EnsureBaseline | Action::RemoveBaseline => {
                    panic!("a StatefulSet has no canary copy to scale: {a:?}")
                }
                _ => {}
            }
        }
        self.settle();
        // Whatever the router sends the canary, its pods have moved already.
        let moved = self.running(&self.template).len() as i32;
        assert!(
            self.template == self.current
                || fledge_api::statefulset::pods_for_weight(self.routed, self.replicas()) <= moved,
            "{}% routed to {moved} pods",
            self.routed
        );
        if self.pods.iter().all(|p| *p == self.current) {
            // Between rollouts the adapter holds the partition at the replica count.
            self.partition = self.replicas();
        }
    }
}

fn spec() -> fledge_api::CanarySpec {
    spec_with("kubernetes")
}

fn spec_with(provider: &str) -> fledge_api::CanarySpec {
    let mut spec = canary_spec();
    spec.target_ref.kind = Some("StatefulSet".into());
    spec.provider = Some(provider.into());
    let a = analysis(&mut spec);
    a.step_weight = None;
    a.step_weights = None;
    a.max_weight = None;
    a.step_replicas = Some(IntOrString::Int(1));
    a.metrics = Some(vec![metric("request-success-rate", Some(99.0), None)]);
    a.threshold = Some(2);
    spec
}

fn error_rate(v: f64) -> Vec<MetricResult> {
    vec![MetricResult {
        name: "request-success-rate".into(),
        outcome: MetricOutcome::Value(100.0 - v),
    }]
}

/// Runs reconciles every 10 s until `until` holds or `limit` reconciles passed; records the
/// ordinals running the new revision after each reconcile that changed them.
fn drive(
    spec: &fledge_api::CanarySpec,
    sts: &mut StatefulSet,
    status: &mut CanaryStatus,
    metrics: impl Fn(&StatefulSet) -> Vec<MetricResult>,
    until: impl Fn(&CanaryStatus) -> bool,
    now: &mut u64,
) -> Vec<Vec<usize>> {
    let mut seen: Vec<Vec<usize>> = Vec::new();
    for _ in 0..200 {
        let obs = sts.observations(*now, metrics(sts));
        let p = plan(spec, status, &obs);
        sts.apply(&p.actions);
        *status = p.status;
        let moved = sts.running("rev-2");
        if seen.last() != Some(&moved) {
            seen.push(moved);
        }
        if until(status) {
            return seen;
        }
        *now += 10;
    }
    panic!("did not finish: {status:?}");
}

fn initialized(sts: &mut StatefulSet, now: &mut u64) -> CanaryStatus {
    let mut status = CanaryStatus::default();
    drive(
        &spec(),
        sts,
        &mut status,
        |_| Vec::new(),
        |s| s.phase == CanaryPhase::Initialized,
        now,
    );
    status
}

#[test]
fn five_pods_move_one_per_step_from_the_highest_ordinal_then_all_at_promotion() {
    let mut sts = StatefulSet::new(5);
    let mut now = 1_000;
    let mut status = initialized(&mut sts, &mut now);
    assert_eq!(
        sts.partition, 5,
        "held at the replica count between rollouts"
    );
    sts.template = "rev-2".into();
    let seen = drive(
        &spec(),
        &mut sts,
        &mut status,
        |_| error_rate(0.0),
        |s| s.phase == CanaryPhase::Succeeded,
        &mut now,
    );
    assert_eq!(
        seen,
        vec![
            vec![],
            vec![4],
            vec![3, 4],
            vec![2, 3, 4],
            vec![1, 2, 3, 4],
            vec![0, 1, 2, 3, 4],
        ]
    );
    assert_eq!(sts.current, "rev-2");
    assert_eq!(sts.partition, 5);
    assert_eq!(status.canary_weight, 0);
    assert_eq!(status.last_promoted_spec.as_deref(), Some("rev-2"));
}

#[test]
fn a_failing_revision_is_rolled_back_from_the_pods_it_reached_and_nothing_else_moves() {
    let mut sts = StatefulSet::new(5);
    let mut now = 1_000;
    let mut status = initialized(&mut sts, &mut now);
    sts.template = "rev-2".into();
    // Fine on one pod, failing from the second on.
    let seen = drive(
        &spec(),
        &mut sts,
        &mut status,
        |s| {
            error_rate(if s.running("rev-2").len() >= 2 {
                5.0
            } else {
                0.0
            })
        },
        |s| s.phase == CanaryPhase::Failed,
        &mut now,
    );
    assert_eq!(seen, vec![vec![], vec![4], vec![3, 4], vec![]]);
    assert_eq!(sts.template, "rev-1", "the template is back");
    assert!(sts.running("rev-1").len() == 5, "every pod is back");
    assert_eq!(sts.partition, 5, "held again");
    assert_eq!(status.canary_weight, 0);
    assert_eq!(status.last_promoted_spec.as_deref(), Some("rev-1"));
}

#[test]
fn stepweights_are_read_as_a_share_of_the_pods() {
    let mut spec = spec();
    let a = analysis(&mut spec);
    a.step_replicas = None;
    a.step_weights = Some(vec![25, 50]);
    let sts = StatefulSet::new(4);
    let obs = sts.observations(1_000, Vec::new());
    let status = CanaryStatus {
        phase: CanaryPhase::Progressing,
        last_applied_spec: Some("rev-2".into()),
        last_promoted_spec: Some("rev-1".into()),
        ..Default::default()
    };
    let p = plan(&spec, &status, &obs);
    let weights: Vec<i32> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::SetWeights(r) => Some(r.canary),
            _ => None,
        })
        .collect();
    assert!(weights.iter().all(|w| [25, 50].contains(w)), "{weights:?}");
}

#[test]
fn behind_a_router_the_pods_lead_the_traffic_by_one_step() {
    let spec = spec_with("gatewayapi:v1");
    let mut sts = StatefulSet::new(5);
    let mut now = 1_000;
    let mut status = CanaryStatus::default();
    drive(
        &spec,
        &mut sts,
        &mut status,
        |_| Vec::new(),
        |s| s.phase == CanaryPhase::Initialized,
        &mut now,
    );
    sts.template = "rev-2".into();
    // `apply` checks at every reconcile that the routed share never outruns the moved pods.
    let seen = drive(
        &spec,
        &mut sts,
        &mut status,
        |_| error_rate(0.0),
        |s| s.phase == CanaryPhase::Succeeded,
        &mut now,
    );
    assert_eq!(
        seen,
        vec![
            vec![4],
            vec![3, 4],
            vec![2, 3, 4],
            vec![1, 2, 3, 4],
            vec![0, 1, 2, 3, 4],
        ]
    );
    assert_eq!(sts.routed, 0, "all traffic back on the promoted pods");
    assert_eq!(sts.partition, 5);
}
