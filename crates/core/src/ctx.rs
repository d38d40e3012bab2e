//! The working state of one call to the engine: the inputs, the next status being built, the
//! actions decided so far, and small helpers every phase uses.

use std::borrow::Cow;
use std::time::Duration;

use fledge_api::{
    AnalysisRecord, CanaryAnalysis, CanaryPhase, CanarySpec, CanaryStatus, CheckRecord, Gate,
    HookType, PhaseTransition, RolloutProgress,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::action::{
    Action, ApexSelects, LedgerEntry, LedgerEvent, Needs, NotifyKind, Routes, Severity,
};
use crate::checks::{self, Failure};
use crate::conditions;
use crate::observe::{LedgerView, Observations, RoutesView};

/// Longest wait between two polls while waiting for a workload to become ready.
pub(crate) const READINESS_POLL: Duration = Duration::from_secs(10);
/// Requeue while the spec is invalid: the watch on the Canary brings the fix sooner.
pub(crate) const SPEC_ERROR_REQUEUE: Duration = Duration::from_secs(300);
/// Shortest interval the engine works with, whatever the spec says.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How many failure reasons `status.rollout.failures` keeps.
pub(crate) const MAX_FAILURES: usize = 10;
/// The most analysis steps whose metric results `status.rollout.history` keeps.
pub(crate) const MAX_HISTORY: usize = 20;
/// How many phase transitions `status.rollout.transitions` keeps.
pub(crate) const MAX_TRANSITIONS: usize = 30;
/// How many promoted revisions `status.promotedRevisions` keeps.
pub(crate) const MAX_PROMOTED: usize = 10;

/// Where gate and metric results come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inputs {
    /// From the observations (the real decision).
    Observed,
    /// Every gate open, every metric passing, no rollback asked: used by `needs` to find the
    /// furthest path the decision can take, and so every input it may read.
    Optimistic,
}

/// The working state of one decision.
pub(crate) struct Cx<'a> {
    pub spec: &'a CanarySpec,
    pub analysis: Cow<'a, CanaryAnalysis>,
    pub obs: &'a Observations,
    inputs: Inputs,
    /// `obs.now` truncated to whole seconds.
    pub now: Timestamp,
    /// The next status.
    pub status: CanaryStatus,
    cluster: Vec<Action>,
    reports: Vec<Action>,
    requeue: Option<Duration>,
    /// What the decision read from the costly observations.
    pub read: Needs,
}

impl<'a> Cx<'a> {
    pub fn new(
        spec: &'a CanarySpec,
        status: &CanaryStatus,
        obs: &'a Observations,
        inputs: Inputs,
    ) -> Self {
        Cx {
            spec,
            analysis: stepped_analysis(spec, obs),
            obs,
            inputs,
            now: whole_seconds(obs.now),
            status: sanitized(status),
            cluster: Vec::new(),
            reports: Vec::new(),
            requeue: None,
            read: Needs::default(),
        }
    }

    /// Whether the target is a StatefulSet: no primary copy, the steps move pods through its
    /// partition, a rollback puts its template back.
    pub fn statefulset(&self) -> bool {
        self.spec.targets_statefulset()
    }

    /// A StatefulSet behind a router (any provider but `kubernetes`): the router splits the
    /// traffic between Services selecting the pods by revision, so the pods lead the traffic
    /// by one step (the canary's pods are Ready before the router sends them anything).
    pub fn statefulset_routed(&self) -> bool {
        self.statefulset() && self.spec.provider_or_default() != "kubernetes"
    }

    /// A StatefulSet rolling out: the weight (percent of the pods) whose pods must run the
    /// revision under test. `None` outside a rollout's steps (the adapter holds the partition
    /// between rollouts; promotion and rollback have actions of their own).
    fn statefulset_pods_weight(&self) -> Option<i32> {
        if !self.statefulset()
            || !matches!(
                self.status.phase,
                CanaryPhase::Progressing | CanaryPhase::WaitingPromotion
            )
        {
            return None;
        }
        let weight = self.status.canary_weight;
        if self.statefulset_routed() {
            Some(crate::weights::next_weight(&self.analysis, weight).unwrap_or(weight))
        } else {
            Some(weight)
        }
    }

    /// The actions in their final order, ending with the requeue.
    pub fn finish(mut self) -> (CanaryStatus, Vec<Action>, Needs) {
        if let Some(weight) = self.statefulset_pods_weight() {
            // Before the routes: the pods move first.
            self.cluster.insert(0, Action::SetPartition { weight });
        }
        let requeue = self.requeue.unwrap_or_else(|| self.interval());
        // The apex Service follows the routes the plan leaves, not those it found.
        let apex = ApexSelects::for_routes(self.spec.provider_or_default(), &self.applied_routes());
        let mut actions = self.cluster;
        for a in &mut actions {
            if let Action::EnsureServices { apex: a } = a {
                *a = apex;
            }
        }
        actions.extend(self.reports);
        actions.push(Action::RequeueAfter(requeue));
        (self.status, actions, self.read)
    }

    // ---- time -------------------------------------------------------------------------

    /// The analysis interval, at least [`MIN_INTERVAL`].
    pub fn interval(&self) -> Duration {
        self.analysis.interval().max(MIN_INTERVAL)
    }

    /// How often to look again while waiting for readiness.
    pub fn poll(&self) -> Duration {
        self.interval().min(READINESS_POLL)
    }

    /// `progressDeadlineSeconds` as a duration (negative counts as zero).
    pub fn deadline(&self) -> Duration {
        let secs = self.spec.progress_deadline_seconds().max(0);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    /// `now` as a status time.
    pub fn now_time(&self) -> Time {
        Time(self.now)
    }

    /// Time elapsed since `t` (zero when `t` is in the future); `None` when `t` is unset.
    pub fn elapsed(&self, t: Option<&Time>) -> Option<Duration> {
        let since = t?.0;
        let ms = self
            .now
            .as_millisecond()
            .saturating_sub(since.as_millisecond());
        Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }

    /// `None` when the interval clock is due (never ticked, or an interval has elapsed since the
    /// last tick); otherwise how long until it is.
    pub fn not_due(&self) -> Option<Duration> {
        let last = self.status.rollout.as_ref()?.last_step_time.as_ref();
        let elapsed = self.elapsed(last)?;
        let interval = self.interval();
        (elapsed < interval).then(|| (interval - elapsed).max(MIN_INTERVAL))
    }

    /// Ticks the interval clock now.
    pub fn tick(&mut self) {
        let now = self.now_time();
        self.rollout_mut().last_step_time = Some(now);
    }

    /// Asks for the next reconcile after at most `d`.
    pub fn requeue(&mut self, d: Duration) {
        let d = d.max(MIN_INTERVAL);
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    // ---- status -----------------------------------------------------------------------

    /// The rollout bookkeeping, created when absent.
    pub fn rollout_mut(&mut self) -> &mut RolloutProgress {
        self.status.rollout.get_or_insert_with(Default::default)
    }

    /// The name of the target workload, for messages.
    pub fn target_name(&self) -> &'a str {
        &self.spec.target_ref.name
    }

    /// `threshold`, at least 1.
    pub fn threshold(&self) -> i32 {
        self.analysis.threshold().max(1)
    }

    /// Moves to `phase` (updating the transition time and the `Promoted` condition when it
    /// changes) and records an Event saying why. Every phase change goes through here.
    pub fn enter(&mut self, phase: CanaryPhase, reason: &str, message: String) {
        if self.status.phase != phase {
            let within = self.status.phase.is_rolling_out() || phase.is_rolling_out();
            self.status.phase = phase;
            self.status.last_transition_time = Some(self.now_time());
            conditions::set_promoted(&mut self.status, phase, self.now);
            let transition = PhaseTransition {
                time: Some(self.now_time()),
                phase,
                reason: reason.to_string(),
                canary_weight: self.status.canary_weight,
            };
            // Only within a rollout: into, through and out of the rolling phases.
            if within
                && let Some(r) = self.status.rollout.as_mut()
                && r.start_time.is_some()
            {
                r.transitions.push(transition);
                let excess = r.transitions.len().saturating_sub(MAX_TRANSITIONS);
                r.transitions.drain(..excess);
            }
        }
        self.event(phase == CanaryPhase::Failed, reason, message);
    }

    // ---- routes -----------------------------------------------------------------------

    /// The routes in force, as recorded in the status.
    pub fn applied_routes(&self) -> Routes {
        let rollout = self.status.rollout.as_ref();
        Routes {
            mirror: rollout
                .is_some_and(|r| r.mirrored)
                .then(|| self.mirror_weight()),
            ab_match: rollout.is_some_and(|r| r.ab_match),
            ..Routes::weighted(self.status.canary_weight)
        }
    }

    /// `mirrorWeight` clamped to 0..=100.
    pub fn mirror_weight(&self) -> i32 {
        self.analysis.mirror_weight().clamp(0, 100)
    }

    /// Routes traffic as `routes` says, emitting `SetWeights` only when that changes anything.
    pub fn set_routes(&mut self, routes: Routes) {
        let routes = Routes {
            mirror: routes.mirror.map(|m| m.clamp(0, 100)),
            ..Routes::weighted(routes.canary)
        }
        .with_match(routes.ab_match);
        if routes != self.applied_routes() {
            self.cluster.push(Action::SetWeights(routes));
        }
        self.status.canary_weight = routes.canary;
        self.session_cookies(routes.canary);
        if routes.mirror.is_some() || routes.ab_match || self.status.rollout.is_some() {
            let r = self.rollout_mut();
            r.mirrored = routes.mirror.is_some();
            r.ab_match = routes.ab_match;
        }
    }

    /// Session affinity (`analysis.sessionAffinity`), as Flagger's routers do: while the canary
    /// gets traffic, `sessionAffinityCookie` (and `primarySessionAffinityCookie` when
    /// `primaryCookieName` is set) hold `name=value` for the router to set on responses; when
    /// the canary gets none, the canary cookie moves to `previousSessionAffinityCookie` so the
    /// router can expire it. Values are derived from the revision and the rollout start, so
    /// the same inputs give the same cookies.
    fn session_cookies(&mut self, canary_weight: i32) {
        let Some(affinity) = self.analysis.session_affinity.clone() else {
            return;
        };
        if canary_weight <= 0 {
            if let Some(old) = self.status.session_affinity_cookie.take() {
                self.status.previous_session_affinity_cookie = Some(old);
            }
            self.status.primary_session_affinity_cookie = None;
            return;
        }
        let seed = format!(
            "{}/{}",
            self.status.last_applied_spec.as_deref().unwrap_or_default(),
            self.status
                .rollout
                .as_ref()
                .and_then(|r| r.start_time.as_ref())
                .map_or(0, |t| t.0.as_second())
        );
        if self.status.session_affinity_cookie.is_none() {
            let name = affinity
                .cookie_name
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or("flagger-cookie");
            let value = token(&format!("canary/{seed}"));
            self.status.session_affinity_cookie = Some(format!("{name}={value}"));
        }
        if let Some(name) = affinity
            .primary_cookie_name
            .as_deref()
            .filter(|n| !n.is_empty())
            && self.status.primary_session_affinity_cookie.is_none()
        {
            let value = token(&format!("primary/{seed}"));
            self.status.primary_session_affinity_cookie = Some(format!("{name}={value}"));
        }
    }

    // ---- actions ----------------------------------------------------------------------

    /// (Re)applies the Services and the router's objects; the apex selector is settled when the
    /// plan is finished, from its final routes.
    pub fn ensure_services(&mut self) {
        self.cluster.push(Action::EnsureServices {
            apex: ApexSelects::Primary,
        });
    }

    /// The cluster actions decided so far.
    pub fn cluster_actions(&self) -> &[Action] {
        &self.cluster
    }

    /// Adds a cluster action (workload or traffic change).
    pub fn act(&mut self, action: Action) {
        self.cluster.push(action);
    }

    /// Records a Kubernetes Event, and forwards it to the `event` webhooks.
    pub fn event(&mut self, warning: bool, reason: &str, message: String) {
        if !self.spec.webhooks_of(HookType::Event).is_empty() {
            self.reports.push(Action::CallWebhooks {
                hook: HookType::Event,
                phase: self.status.phase,
                message: message.clone(),
            });
        }
        self.reports.push(Action::RecordEvent {
            warning,
            reason: reason.to_string(),
            message,
        });
    }

    /// Sends a chat alert.
    pub fn notify(&mut self, severity: Severity, kind: NotifyKind, message: String) {
        self.reports.push(Action::Notify {
            severity,
            kind,
            message,
            to: Vec::new(),
        });
    }

    /// Calls the fire-and-forget webhooks of `hook`, when any is declared.
    pub fn call_webhooks(&mut self, hook: HookType) {
        if !self.spec.webhooks_of(hook).is_empty() {
            self.reports.push(Action::CallWebhooks {
                hook,
                phase: self.status.phase,
                message: String::new(),
            });
        }
    }

    /// Remembers `revision` as promoted (newest last, at most the last 10, no repeats).
    pub fn remember_promoted(&mut self, revision: Option<String>) {
        let Some(revision) = revision else {
            return;
        };
        let list = &mut self.status.promoted_revisions;
        list.retain(|r| *r != revision);
        list.push(revision);
        let excess = list.len().saturating_sub(MAX_PROMOTED);
        list.drain(..excess);
    }

    /// Records a ledger entry about the revision under test, from the status as it is now.
    pub fn ledger(&mut self, event: LedgerEvent, reasons: Vec<String>) {
        let entry = LedgerEntry {
            event,
            revision: self.status.last_applied_spec.clone().unwrap_or_default(),
            primary_revision: self.status.last_promoted_spec.clone(),
            at: self.now,
            phase: self.status.phase,
            canary_weight: self.status.canary_weight,
            failed_checks: self.status.failed_checks,
            reasons,
        };
        self.reports.push(Action::RecordLedger(entry));
    }

    /// Takes the report actions decided so far (to settle them; see [`Cx::put_reports`]).
    pub fn take_reports(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.reports)
    }

    /// Puts back report actions taken with [`Cx::take_reports`].
    pub fn put_reports(&mut self, reports: Vec<Action>) {
        self.reports = reports;
    }

    /// Adds a report action.
    pub fn report(&mut self, action: Action) {
        self.reports.push(action);
    }

    // ---- costly inputs ----------------------------------------------------------------

    /// Whether the gate of `hook` is open: every declared webhook of that type passed. `Err`
    /// carries the reasons. A type with no webhook is open and reads nothing.
    pub fn gate(&mut self, hook: HookType) -> Result<(), Vec<Failure>> {
        let hooks = self.spec.webhooks_of(hook);
        if hooks.is_empty() {
            return Ok(());
        }
        if self.take_approval(hook, &hooks) {
            return Ok(());
        }
        self.read.webhooks.insert(hook);
        if self.inputs == Inputs::Optimistic {
            return Ok(());
        }
        self.record_webhooks(hook, &hooks);
        let failures = self.counted(checks::gate_failures(&hooks, hook, &self.obs.webhooks));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }

    /// The failures that count; the dry-run ones are reported in an Event instead.
    fn counted(&mut self, failures: Vec<Failure>) -> Vec<Failure> {
        let (dry, counted): (Vec<Failure>, Vec<Failure>) =
            failures.into_iter().partition(|f| f.dry_run);
        if !dry.is_empty() {
            let messages: Vec<&str> = dry.iter().map(|f| f.message.as_str()).collect();
            self.event(
                false,
                "DryRunCheckFailed",
                format!(
                    "Dry run, not counted: {} ({})",
                    messages.join("; "),
                    self.target_name()
                ),
            );
        }
        counted
    }

    /// What the Git ledger says (recorded as read). `needs` reads nothing from it: the answer
    /// only decides which revision the primary starts on, not which inputs follow.
    pub fn ledger_view(&mut self) -> &'a LedgerView {
        self.read.ledger = true;
        static NOT_READ: LedgerView = LedgerView::NotRead;
        if self.inputs == Inputs::Optimistic {
            return &NOT_READ;
        }
        &self.obs.ledger
    }

    /// The routes read back from the cluster (the caller records the read).
    pub fn routes_read(&self) -> &'a RoutesView {
        static NOT_READ: RoutesView = RoutesView::NotRead;
        if self.inputs == Inputs::Optimistic {
            return &NOT_READ;
        }
        &self.obs.routes
    }

    /// Whether a `rollback` webhook asks for a rollback; the reason when one does.
    pub fn rollback_requested(&mut self) -> Option<String> {
        let hooks = self.spec.webhooks_of(HookType::Rollback);
        if hooks.is_empty() {
            return None;
        }
        self.read.webhooks.insert(HookType::Rollback);
        if self.inputs == Inputs::Optimistic {
            return None;
        }
        let asked = checks::rollback_request(&hooks, &self.obs.webhooks);
        if !asked.dry_run.is_empty() {
            let message = format!(
                "Dry run, not acted on: {} ({})",
                asked.dry_run.join("; "),
                self.target_name()
            );
            self.event(false, "DryRunCheckFailed", message);
        }
        asked.reason
    }

    /// Scales the canary, and with a fresh statistical baseline creates or removes it beside.
    pub fn scale_canary(&mut self, scale: crate::CanaryScale) {
        if self.statefulset() {
            // A StatefulSet has no second copy to scale: its steps move pods through the
            // partition ([`Action::SetWeights`]), and a rollback puts its template back
            // ([`Action::RollBackTarget`]).
            return;
        }
        self.act(Action::ScaleCanary(scale));
        if self
            .analysis
            .judge
            .as_ref()
            .is_some_and(|j| j.fresh_baseline())
        {
            self.act(match scale {
                crate::CanaryScale::MatchPrimary => Action::EnsureBaseline,
                crate::CanaryScale::Zero => Action::RemoveBaseline,
            });
        }
    }

    /// The failures of the metric checks (empty: all passed, or none declared).
    pub fn metric_failures(&mut self) -> Vec<Failure> {
        let metrics = self.analysis.metrics.clone().unwrap_or_default();
        if metrics.is_empty() {
            return Vec::new();
        }
        self.read.metrics = true;
        if self.inputs == Inputs::Optimistic {
            return Vec::new();
        }
        let (results, failures, judged) = checks::step_checks(&self.analysis, &self.obs.metrics);
        if let Some(step) = &judged {
            let message = format!(
                "Statistical judgement of {}: {}",
                self.target_name(),
                step.summary()
            );
            self.event(false, "Judgement", message);
            self.step_record().judgement = Some(step.record.clone());
            self.rollout_mut().judgement = Some(step.record.clone());
        }
        self.step_record().metrics = results.clone();
        self.rollout_mut().metrics = results;
        self.counted(failures)
    }

    /// The metrics of the last step left out for want of data (`noData: skip`).
    pub fn inconclusive_metrics(&self) -> Vec<String> {
        self.status
            .rollout
            .as_ref()
            .map(|r| {
                r.metrics
                    .iter()
                    .filter(|m| m.inconclusive == Some(true))
                    .map(|m| m.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The record of this analysis step in `status.rollout.history` (created on first use;
    /// the history keeps the last [`MAX_HISTORY`] steps).
    fn step_record(&mut self) -> &mut AnalysisRecord {
        let now = Some(self.now_time());
        let weight = self.status.canary_weight;
        let r = self.rollout_mut();
        let step = r.step;
        let current = r
            .history
            .last()
            .is_some_and(|h| h.step == step && h.time == now);
        if !current {
            r.history.push(AnalysisRecord {
                step,
                time: now,
                canary_weight: weight,
                ..Default::default()
            });
            let excess = r.history.len().saturating_sub(MAX_HISTORY);
            r.history.drain(..excess);
        }
        let last = r.history.len() - 1;
        &mut r.history[last]
    }

    // ---- kubectl fledge: approvals and the record of gating webhooks ---------------------------

    /// Whether an `approve` request for the gate of `hook` waits to be used.
    pub fn approved(&self, hook: HookType) -> bool {
        Gate::of(hook).is_some_and(|g| crate::requests::approval(&self.status, g).is_some())
    }

    /// Uses an approval of the gate of `hook`, if one waits: the gate opens once, without
    /// calling its webhooks.
    fn take_approval(&mut self, hook: HookType, hooks: &[fledge_api::CanaryWebhook]) -> bool {
        let Some(gate) = Gate::of(hook) else {
            return false;
        };
        let Some(approvals) = self.status.rollout.as_mut().map(|r| &mut r.approvals) else {
            return false;
        };
        let Some(i) = approvals.iter().position(|a| a.gate == Some(gate)) else {
            return false;
        };
        let by = approvals.remove(i);
        let now = Some(self.now_time());
        for h in hooks {
            self.record_check(CheckRecord {
                kind: hook.as_str().into(),
                name: h.name.clone(),
                passed: true,
                message: format!("opened by {}'s approval", by.who()),
                at: now.clone(),
                dry_run: h.is_dry_run().then_some(true),
            });
        }
        let message = format!(
            "{gate} gate of {} opened: approved by {}",
            self.target_name(),
            by.who()
        );
        self.event(false, "GateApproved", message);
        true
    }

    /// Records the answers of the webhooks of `hook` called this reconcile.
    fn record_webhooks(&mut self, hook: HookType, hooks: &[fledge_api::CanaryWebhook]) {
        let now = Some(self.now_time());
        for h in hooks {
            let result = self
                .obs
                .webhooks
                .iter()
                .find(|r| r.hook == hook && r.name == h.name);
            let (passed, message) = match result {
                Some(r) => (r.passed, r.message.chars().take(256).collect()),
                None => (false, "not called".to_string()),
            };
            let record = CheckRecord {
                kind: hook.as_str().into(),
                name: h.name.clone(),
                passed,
                message,
                at: now.clone(),
                dry_run: h.is_dry_run().then_some(true),
            };
            if hook == HookType::Rollout {
                self.step_record().webhooks.push(record.clone());
            }
            self.record_check(record);
        }
    }

    /// Keeps `record` as the last answer of its webhook in `status.rollout.checks`.
    fn record_check(&mut self, record: CheckRecord) {
        let checks = &mut self.rollout_mut().checks;
        match checks
            .iter_mut()
            .find(|c| c.kind == record.kind && c.name == record.name)
        {
            Some(c) => *c = record,
            None => checks.push(record),
        }
    }
}

impl Routes {
    fn with_match(self, ab_match: bool) -> Routes {
        Routes { ab_match, ..self }
    }
}

/// `status` with its counters brought back into range (a hand-edited or corrupted status must
/// not lead to weights outside 0..=100 or negative counts).
fn sanitized(status: &CanaryStatus) -> CanaryStatus {
    let mut s = status.clone();
    s.canary_weight = s.canary_weight.clamp(0, 100);
    s.failed_checks = s.failed_checks.max(0);
    s.iterations = s.iterations.max(0);
    if let Some(r) = s.rollout.as_mut() {
        r.step = r.step.max(0);
    }
    s
}

/// A cookie value derived from `seed`: 16 hex digits of its FNV-1a hash (not a secret: it only
/// has to differ between rollouts).
fn token(seed: &str) -> String {
    let hash = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// `t` without its sub-second part (Kubernetes `Time` keeps whole seconds).
pub(crate) fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// The analysis the engine follows: the spec's, with a StatefulSet's `stepReplicas` turned into
/// the `stepWeights` that give those pods (percent of the replicas observed now; see
/// [`fledge_api::statefulset`]).
fn stepped_analysis<'a>(spec: &'a CanarySpec, obs: &Observations) -> Cow<'a, CanaryAnalysis> {
    let analysis = spec.analysis_or_default();
    let (Some(step), Some(replicas)) = (
        analysis
            .step_replicas
            .clone()
            .filter(|_| spec.targets_statefulset()),
        obs.statefulset_replicas,
    ) else {
        return analysis;
    };
    let mut stepped = analysis.into_owned();
    let weights = fledge_api::statefulset::step_weights(&step, replicas);
    // One replica: no step short of all pods; promotion moves the one pod after one analysis
    // at no weight.
    stepped.max_weight = Some(weights.last().copied().unwrap_or(0).max(1));
    stepped.step_weights = Some(weights).filter(|w| !w.is_empty());
    stepped.step_weight = None;
    Cow::Owned(stepped)
}
