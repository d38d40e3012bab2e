//! A small simulator: drives [`crate::plan`] over simulated time against a scripted world, the
//! way the adapter would (observe, ask [`crate::needs`], gather only what is needed, plan,
//! apply the actions, persist the status through JSON, requeue), and records what happened.
//!
//! It is a test harness for the engine and for adapter authors: the worked examples of
//! Flagger's documentation are written with it. It checks the engine's contract at every
//! reconcile (see [`check_plan`]) and collects any breach in [`Sim::violations`]; it never
//! panics.
//!
//! It is compiled only with the `sim` feature (the engine's integration tests enable it through
//! a dev-dependency on this crate), so production builds never contain it.

use std::collections::BTreeMap;
use std::time::Duration;

use fledge_api::{CanaryMetric, CanaryPhase, CanarySpec, CanaryStatus, HookType};
use jiff::Timestamp;

use crate::action::{Action, ActionClass, CanaryScale, Needs, Routes};
use crate::checks::metric_bounds;
use crate::observe::{
    LedgerView, MetricOutcome, MetricResult, Observations, Readiness, TargetObservation,
    WebhookResult,
};
use crate::{Plan, needs, plan};

/// A simulated Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimWorkload {
    /// Pod template hash.
    pub hash: String,
    /// Tracked ConfigMap/Secret checksums.
    pub configs: BTreeMap<String, String>,
    /// Desired replicas.
    pub replicas: i32,
    /// When its pods are all available (after the last change).
    pub ready_at: Timestamp,
    /// Never becomes ready (a crash-looping revision).
    pub broken: bool,
}

impl SimWorkload {
    /// Readiness at `now`.
    pub fn readiness(&self, now: Timestamp) -> Readiness {
        if self.broken || now < self.ready_at {
            Readiness {
                available: 0,
                ..Readiness::ready(self.replicas)
            }
        } else {
            Readiness::ready(self.replicas)
        }
    }
}

/// The simulated cluster and its surroundings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct World {
    /// The target Deployment (`None`: missing).
    pub target: Option<SimWorkload>,
    /// The primary Deployment (`None`: not created yet).
    pub primary: Option<SimWorkload>,
    /// The routes as the router has them.
    pub routes: Routes,
    /// The Services and router objects exist.
    pub services: bool,
    /// The fresh baseline of a statistical judgement exists.
    pub baseline: bool,
    /// The apex was handed back to the target on deletion.
    pub finalized: bool,
    /// Whether the engine released the Canary (its finalizer removed).
    pub released: bool,
    /// The Canary is being deleted.
    pub deleting: bool,
    /// A rollout slot is available.
    pub slot: bool,
    /// `metadata.generation` of the Canary.
    pub generation: i64,
    /// Replicas of the primary (and of the canary when scaled up).
    pub replicas: i32,
    /// How long a workload takes to become ready after a change.
    pub ready_delay: Duration,
    /// How many `PromotePrimary` actions were refused because the target had changed.
    pub refused_promotions: usize,
    /// What the Git ledger says, when read.
    pub ledger: LedgerView,
}

/// One reconcile, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// When it ran.
    pub at: Timestamp,
    /// Phase before.
    pub before: CanaryPhase,
    /// What [`crate::needs`] asked for.
    pub needs: Needs,
    /// The plan.
    pub plan: Plan,
}

/// The answer of a scripted webhook: `(passed, message)`.
pub type HookAnswer = (bool, String);
/// Scripts the answer of each gating webhook call: `(view, type, name)`.
pub type HookScript = Box<dyn FnMut(&View<'_>, HookType, &str) -> HookAnswer>;
/// Scripts the outcome of each metric query.
pub type MetricScript = Box<dyn FnMut(&View<'_>, &CanaryMetric) -> MetricOutcome>;

/// What a script sees when it answers.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// Current simulated time.
    pub now: Timestamp,
    /// The status before this reconcile.
    pub status: &'a CanaryStatus,
    /// The routes in force.
    pub routes: Routes,
    /// Number of reconciles so far.
    pub reconciles: usize,
}

/// The simulator.
pub struct Sim {
    /// The Canary spec (change it between reconciles to simulate an edit).
    pub spec: CanarySpec,
    /// The status as stored in the API server.
    pub status: CanaryStatus,
    /// Simulated time.
    pub now: Timestamp,
    /// The world.
    pub world: World,
    /// Round-trip the status through JSON between reconciles, as the API server does.
    pub persist_json: bool,
    /// The next reconcile crashes after its actions ran and before its status was written
    /// (one shot): the next plan starts again from the old status.
    pub lose_next_status_write: bool,
    /// Reconcile at least this often, on top of the engine's requeues (watch events).
    pub extra_reconcile_every: Option<Duration>,
    /// Gating webhook answers (default: every gate passes, no rollback asked).
    pub hooks: HookScript,
    /// Metric outcomes (default: a value inside the metric's range).
    pub metrics: MetricScript,
    /// Every reconcile so far.
    pub trace: Vec<Record>,
    /// Breaches of the engine's contract seen so far (empty when all is well).
    pub violations: Vec<String>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("status", &self.status)
            .field("world", &self.world)
            .field("reconciles", &self.trace.len())
            .finish_non_exhaustive()
    }
}

/// A metric value inside `metric`'s bounds (its minimum, else its maximum, else 0).
pub fn passing_value(metric: &CanaryMetric) -> f64 {
    match metric_bounds(metric) {
        (Some(min), _) => min,
        (None, Some(max)) => max,
        (None, None) => 0.0,
    }
}

impl Sim {
    /// A world with a ready target `rev-1` of 2 replicas and nothing else, at `start`.
    pub fn new(spec: CanarySpec, start: Timestamp) -> Self {
        let target = SimWorkload {
            hash: "rev-1".into(),
            configs: BTreeMap::new(),
            replicas: 2,
            ready_at: start,
            broken: false,
        };
        Sim {
            spec,
            status: CanaryStatus::default(),
            now: start,
            world: World {
                target: Some(target),
                primary: None,
                routes: Routes::PRIMARY,
                services: false,
                baseline: false,
                finalized: false,
                released: false,
                deleting: false,
                slot: true,
                generation: 1,
                replicas: 2,
                ready_delay: Duration::ZERO,
                refused_promotions: 0,
                ledger: LedgerView::NotRead,
            },
            persist_json: true,
            lose_next_status_write: false,
            extra_reconcile_every: None,
            hooks: Box::new(|_, t, _| (t != HookType::Rollback, String::new())),
            metrics: Box::new(|_, m| MetricOutcome::Value(passing_value(m))),
            trace: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// The cheap observations of the world now.
    pub fn observe(&self) -> Observations {
        let target = self.world.target.as_ref().map(|t| TargetObservation {
            spec_hash: t.hash.clone(),
            tracked_configs: t.configs.clone(),
            readiness: t.readiness(self.now),
        });
        Observations {
            now: self.now,
            generation: Some(self.world.generation),
            deleting: self.world.deleting,
            rollout_slots: if self.world.slot {
                crate::slots::RolloutSlots::unlimited()
            } else {
                crate::slots::RolloutSlots::none_free()
            },
            target,
            statefulset_replicas: None,
            primary: self.world.primary.as_ref().map(|p| p.readiness(self.now)),
            webhooks: Vec::new(),
            metrics: Vec::new(),
            ledger: LedgerView::NotRead,
            routes: crate::RoutesView::NotRead,
            git_queue: None,
            blocked: None,
            canary_name: "podinfo".into(),
            images: crate::observe::ContainerImages {
                target: self
                    .world
                    .target
                    .iter()
                    .map(|t| ("app".to_string(), format!("app:{}", t.hash)))
                    .collect(),
                primary: self
                    .world
                    .primary
                    .iter()
                    .map(|p| ("app".to_string(), format!("app:{}", p.hash)))
                    .collect(),
            },
            default_alert_severity: None,
            confined_to_namespace: None,
        }
    }

    /// One reconcile: observe, gather what is needed, plan, apply, persist, move the clock.
    pub fn reconcile(&mut self) -> &Record {
        let mut obs = self.observe();
        let needs = needs(&self.spec, &self.status, &obs);
        self.gather(&needs, &mut obs);
        let plan = plan(&self.spec, &self.status, &obs);
        let before = self.status.clone();
        for v in check_plan(&self.spec, &before, &plan, &needs) {
            self.violations.push(format!("at {}: {v}", self.now));
        }
        for a in &plan.actions {
            self.apply(a);
        }
        if self.lose_next_status_write {
            self.lose_next_status_write = false;
        } else {
            self.status = self.persist(&plan.status);
        }
        let wait = plan.requeue_after().unwrap_or(Duration::from_secs(60));
        let wait = match self.extra_reconcile_every {
            Some(e) => wait.min(e),
            None => wait,
        };
        let at = self.now;
        self.now = self.now.checked_add(wait).unwrap_or(self.now);
        self.trace.push(Record {
            at,
            before: before.phase,
            needs,
            plan,
        });
        let last = self.trace.len() - 1;
        &self.trace[last]
    }

    /// Reconciles until `done` holds (checked before each reconcile) or `max` reconciles ran;
    /// returns whether `done` held.
    pub fn run_until(&mut self, max: usize, mut done: impl FnMut(&Sim) -> bool) -> bool {
        for _ in 0..max {
            if done(self) {
                return true;
            }
            self.reconcile();
        }
        done(self)
    }

    /// Reconciles until the phase is `phase` (or `max` reconciles ran).
    pub fn run_to(&mut self, phase: CanaryPhase, max: usize) -> bool {
        self.run_until(max, |s| s.status.phase == phase)
    }

    /// A new revision lands on the target (its pods take `ready_delay` to become ready).
    pub fn new_revision(&mut self, hash: &str) {
        let ready_at = self
            .now
            .checked_add(self.world.ready_delay)
            .unwrap_or(self.now);
        if let Some(t) = self.world.target.as_mut() {
            t.hash = hash.to_string();
            t.ready_at = ready_at;
        }
    }

    /// The canary weight of every `SetWeights` so far, in order.
    pub fn weights(&self) -> Vec<i32> {
        self.routes().iter().map(|r| r.canary).collect()
    }

    /// Every `SetWeights` so far, in order.
    pub fn routes(&self) -> Vec<Routes> {
        self.actions()
            .filter_map(|a| match a {
                Action::SetWeights(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// The phases the status went through, consecutive repeats removed.
    pub fn phases(&self) -> Vec<CanaryPhase> {
        let mut out: Vec<CanaryPhase> = Vec::new();
        for r in &self.trace {
            for p in [r.before, r.plan.status.phase] {
                if out.last() != Some(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Every action so far, in order.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.trace.iter().flat_map(|r| r.plan.actions.iter())
    }

    /// The `(reason, message)` of every Event so far.
    pub fn events(&self) -> Vec<(String, String)> {
        self.actions()
            .filter_map(|a| match a {
                Action::RecordEvent {
                    reason, message, ..
                } => Some((reason.clone(), message.clone())),
                _ => None,
            })
            .collect()
    }

    /// How many analysis steps ran this rollout (from the status).
    pub fn steps(&self) -> i32 {
        self.status.rollout.as_ref().map_or(0, |r| r.step)
    }

    fn view(&self) -> View<'_> {
        View {
            now: self.now,
            status: &self.status,
            routes: self.world.routes,
            reconciles: self.trace.len(),
        }
    }

    fn gather(&mut self, needs: &Needs, obs: &mut Observations) {
        let hooks: Vec<_> = needs
            .webhooks
            .iter()
            .flat_map(|t| self.spec.webhooks_of(*t).into_iter().map(move |h| (*t, h)))
            .collect();
        let metrics = if needs.metrics {
            self.spec
                .analysis_or_default()
                .metrics
                .clone()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        if needs.ledger {
            obs.ledger = self.world.ledger.clone();
        }
        if needs.routes {
            obs.routes = if self.world.services {
                crate::RoutesView::Found(self.world.routes)
            } else {
                crate::RoutesView::Missing
            };
        }
        let status = self.status.clone();
        let view = View {
            status: &status,
            ..self.view()
        };
        for (t, h) in hooks {
            let (passed, message) = (self.hooks)(&view, t, &h.name);
            obs.webhooks.push(WebhookResult {
                hook: t,
                name: h.name.clone(),
                passed,
                message,
            });
        }
        for m in metrics {
            let outcome = (self.metrics)(&view, &m);
            obs.metrics.push(MetricResult {
                name: m.name.clone(),
                outcome,
            });
        }
    }

    fn apply(&mut self, action: &Action) {
        let now = self.now;
        let ready_at = now.checked_add(self.world.ready_delay).unwrap_or(now);
        let w = &mut self.world;
        match action {
            Action::EnsurePrimary => {
                if w.primary.is_none()
                    && let Some(t) = &w.target
                {
                    w.primary = Some(SimWorkload {
                        replicas: w.replicas,
                        ready_at,
                        broken: false,
                        ..t.clone()
                    });
                }
            }
            Action::EnsurePrimaryFrom { revision, .. } => {
                if w.primary.is_none()
                    && let Some(t) = &w.target
                {
                    w.primary = Some(SimWorkload {
                        hash: revision.clone(),
                        replicas: w.replicas,
                        ready_at,
                        broken: false,
                        ..t.clone()
                    });
                }
            }
            Action::EnsureServices { .. } => w.services = true,
            Action::SetWeights(r) => w.routes = *r,
            Action::EnsureBaseline => w.baseline = true,
            Action::RemoveBaseline => w.baseline = false,
            Action::ScaleCanary(scale) => {
                let replicas = match scale {
                    CanaryScale::Zero => 0,
                    CanaryScale::MatchPrimary => w.replicas,
                };
                if let Some(t) = w.target.as_mut() {
                    t.replicas = replicas;
                    t.ready_at = ready_at;
                }
            }
            Action::PromotePrimary { revision } => match (&w.target, w.primary.as_mut()) {
                (Some(t), Some(p)) if &t.hash == revision => {
                    p.hash = t.hash.clone();
                    p.configs = t.configs.clone();
                    p.broken = t.broken;
                    p.ready_at = ready_at;
                }
                _ => w.refused_promotions += 1,
            },
            Action::RestoreTarget => {
                if let Some(t) = w.target.as_mut() {
                    t.replicas = w.replicas;
                    t.ready_at = ready_at;
                }
            }
            // The simulated world has Deployments only (StatefulSets: tests/statefulset.rs).
            Action::RollBackTarget { .. } | Action::SetPartition { .. } => {
                w.refused_promotions += 1
            }
            Action::FinalizeRouting => w.finalized = true,
            Action::RemoveFinalizer => w.released = true,
            Action::CallWebhooks { .. }
            | Action::Notify { .. }
            | Action::RecordEvent { .. }
            | Action::RecordLedger(_)
            | Action::RevertInGit { .. }
            | Action::RequeueAfter(_) => {}
        }
    }

    fn persist(&mut self, status: &CanaryStatus) -> CanaryStatus {
        if !self.persist_json {
            return status.clone();
        }
        let back = serde_json::to_string(status)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_json::from_str::<CanaryStatus>(&s).map_err(|e| e.to_string()));
        match back {
            Ok(b) => {
                if &b != status {
                    self.violations
                        .push(format!("at {}: status changed through JSON", self.now));
                }
                b
            }
            Err(e) => {
                self.violations
                    .push(format!("at {}: status JSON round trip: {e}", self.now));
                status.clone()
            }
        }
    }
}

/// Checks a plan against the engine's contract; returns every breach (empty when all holds):
///
/// - exactly one `RequeueAfter`, last; cluster actions before reports;
/// - every `SetWeights` within 0..=100 with `primary + canary == 100`, mirror within 0..=100;
/// - the status weight within 0..=100;
/// - the plan read nothing [`crate::needs`] did not ask for;
/// - every phase change comes with an Event;
/// - no weight increase in a plan that counted a failed check;
/// - never entering `Promoting` with `failedChecks >= threshold` (so, with an unchanged spec,
///   never `Succeeded` with it either: nothing counts checks after promotion starts).
pub fn check_plan(
    spec: &CanarySpec,
    before: &CanaryStatus,
    plan: &Plan,
    needs: &Needs,
) -> Vec<String> {
    let mut out = Vec::new();
    let requeues = plan
        .actions
        .iter()
        .filter(|a| a.class() == ActionClass::Schedule)
        .count();
    if requeues != 1 || !matches!(plan.actions.last(), Some(Action::RequeueAfter(_))) {
        out.push(format!(
            "the plan must end with one RequeueAfter: {:?}",
            plan.actions
        ));
    }
    let classes: Vec<_> = plan.actions.iter().map(Action::class).collect();
    if classes
        .windows(2)
        .any(|w| w[0] == ActionClass::Report && w[1] == ActionClass::Cluster)
    {
        out.push(format!(
            "a cluster action follows a report: {:?}",
            plan.actions
        ));
    }
    for a in &plan.actions {
        if let Action::SetWeights(r) = a {
            let ok = (0..=100).contains(&r.primary)
                && (0..=100).contains(&r.canary)
                && r.primary + r.canary == 100
                && r.mirror.is_none_or(|m| (0..=100).contains(&m));
            if !ok {
                out.push(format!("bad weights {r:?}"));
            }
        }
    }
    let s = &plan.status;
    if !(0..=100).contains(&s.canary_weight) {
        out.push(format!("status weight {} out of range", s.canary_weight));
    }
    if !plan.read.is_subset(needs) {
        out.push(format!("read {:?} beyond needs {:?}", plan.read, needs));
    }
    let has_event = plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::RecordEvent { .. }));
    if s.phase != before.phase && !has_event {
        out.push(format!("{} -> {} without an Event", before.phase, s.phase));
    }
    let increased = plan.actions.iter().any(
        |a| matches!(a, Action::SetWeights(r) if r.canary > before.canary_weight.clamp(0, 100)),
    );
    if s.failed_checks > before.failed_checks.max(0) && increased {
        out.push("weight increased in a step that failed".into());
    }
    let threshold = spec.analysis_or_default().threshold().max(1);
    let promoting_now = s.phase == CanaryPhase::Promoting && before.phase != CanaryPhase::Promoting;
    if promoting_now && s.failed_checks >= threshold {
        out.push(format!("promoting with {} failed checks", s.failed_checks));
    }
    out
}
