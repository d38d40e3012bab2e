//! What the pages show, computed from Canaries, their Events and ledger records: plain data,
//! no I/O, so the rendering is tested on fixed statuses.

use fledge_api::{
    AnalysisRecord, Canary, CanaryPhase, CanaryStatus, CheckRecord, OperatorRequest,
    PhaseTransition, RequestAction, Strategy,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// One Event of a Canary, as the page and `kubectl fledge get` list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLine {
    /// When it was last seen.
    pub at: Option<Timestamp>,
    /// How many times.
    pub count: i32,
    /// `Normal` or `Warning`.
    pub type_: String,
    /// One word.
    pub reason: String,
    /// What happened.
    pub message: String,
}

/// The status, or an empty one before the controller wrote any.
pub fn status(c: &Canary) -> CanaryStatus {
    c.status.clone().unwrap_or_default()
}

/// The phase as written, `New` before the controller saw the Canary.
pub fn phase(s: &CanaryStatus) -> &'static str {
    match s.phase {
        CanaryPhase::Unknown => "New",
        p => p.as_str(),
    }
}

/// A CSS class for a phase: `ok`, `bad`, `busy` or `idle`.
pub fn phase_class(p: CanaryPhase) -> &'static str {
    match p {
        CanaryPhase::Succeeded | CanaryPhase::Initialized => "ok",
        CanaryPhase::Failed => "bad",
        p if p.is_rolling_out() => "busy",
        CanaryPhase::Waiting | CanaryPhase::Initializing => "busy",
        _ => "idle",
    }
}

/// The weights a weighted canary goes through, in order.
pub fn weight_steps(c: &Canary) -> Vec<i32> {
    fledge_core::weights::steps(&c.spec.analysis_or_default())
}

/// The step reached against the total: weight steps reached of a weighted canary, iterations
/// done otherwise.
pub fn step_of_total(c: &Canary) -> (i32, i32) {
    let s = status(c);
    match c.spec.strategy() {
        Strategy::Canary => {
            let steps = weight_steps(c);
            let done = steps.iter().filter(|w| **w <= s.canary_weight).count();
            (done as i32, steps.len() as i32)
        }
        _ => (s.iterations, c.spec.analysis_or_default().iterations()),
    }
}

/// The last failed check of the current or last rollout, if one failed.
pub fn last_failure(s: &CanaryStatus) -> Option<String> {
    s.rollout.as_ref().and_then(|r| r.failures.last().cloned())
}

/// A number for people: at most three decimals, no trailing zeros.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// The passing range of a metric, `≥ min`, `≤ max`, `min – max` or empty.
pub fn range(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("{} – {}", number(a), number(b)),
        (Some(a), None) => format!("≥ {}", number(a)),
        (None, Some(b)) => format!("≤ {}", number(b)),
        (None, None) => String::new(),
    }
}

/// A time as `HH:MM:SS` UTC.
pub fn clock(t: Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

/// A time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn date_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Seconds as `1h2m`, `3m4s` or `5s`.
pub fn human(secs: i64) -> String {
    let secs = secs.max(0);
    if secs >= 3600 {
        format!("{}h{}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// How long ago, `-` when unknown.
pub fn age(t: Option<&Time>, now: Timestamp) -> String {
    match t {
        Some(t) => human(now.as_second() - t.0.as_second()),
        None => "-".into(),
    }
}

/// One row of the overview.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The Canary's page.
    pub href: String,
    /// Phase as written.
    pub phase: String,
    /// CSS class of the phase.
    pub phase_class: String,
    /// Canary weight in percent.
    pub weight: i32,
    /// `n/total`.
    pub step: String,
    /// `failed/threshold`.
    pub failed: String,
    /// The last failed check, or empty.
    pub last_failure: String,
    /// Since the last transition.
    pub age: String,
    /// Lower-case text the filter matches.
    pub filter_text: String,
}

/// The overview's rows, sorted by namespace and name.
pub fn rows(canaries: &[Canary], now: Timestamp) -> Vec<Row> {
    let mut out: Vec<Row> = canaries
        .iter()
        .map(|c| {
            let s = status(c);
            let (done, total) = step_of_total(c);
            let namespace = c.namespace().unwrap_or_default();
            let name = c.name_any();
            let phase = phase(&s).to_string();
            let last_failure = last_failure(&s).unwrap_or_default();
            Row {
                href: crate::canary_path(&namespace, &name),
                filter_text: format!("{namespace}/{name} {phase} {last_failure}").to_lowercase(),
                phase_class: phase_class(s.phase).into(),
                weight: s.canary_weight,
                step: format!("{done}/{total}"),
                failed: format!(
                    "{}/{}",
                    s.failed_checks,
                    c.spec.analysis_or_default().threshold().max(1)
                ),
                last_failure,
                age: age(s.last_transition_time.as_ref(), now),
                namespace,
                name,
                phase,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

/// Whether a row matches the filter (every word of it, case-insensitive).
pub fn matches(row: &Row, filter: &str) -> bool {
    filter
        .to_lowercase()
        .split_whitespace()
        .all(|w| row.filter_text.contains(w))
}

/// A rollout as the chart draws it: from `status.rollout` or from a ledger file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rollout {
    /// When it started.
    pub start: Option<Timestamp>,
    /// When it ended, for a finished one from the ledger; `None` while it runs.
    pub end: Option<Timestamp>,
    /// The analysis steps, oldest first.
    pub history: Vec<AnalysisRecord>,
    /// The phases it went through, oldest first.
    pub transitions: Vec<PhaseTransition>,
    /// The last answer of each gating webhook.
    pub checks: Vec<CheckRecord>,
    /// Gates opened with `approve` and not used yet.
    pub approvals: Vec<OperatorRequest>,
    /// The last `approve` the controller accepted in this rollout, and when it handled it.
    pub approved: Option<(OperatorRequest, Option<Timestamp>)>,
    /// Failed checks' reasons, newest last.
    pub failures: Vec<String>,
    /// The weight now (a rollout in progress).
    pub current_weight: Option<i32>,
    /// The statistical judgement's score per step exists.
    pub judged: bool,
}

/// The current or last rollout of a Canary, `None` before its first.
pub fn rollout_of(c: &Canary) -> Option<Rollout> {
    let s = status(c);
    let r = s.rollout.as_ref()?;
    // A rollout that ended is drawn up to its last transition, not up to now.
    let end = (!s.phase.is_rolling_out() && s.phase != CanaryPhase::Waiting)
        .then(|| {
            r.transitions
                .iter()
                .filter_map(|t| t.time.as_ref().map(|t| t.0))
                .chain(
                    r.history
                        .iter()
                        .filter_map(|h| h.time.as_ref().map(|t| t.0)),
                )
                .max()
        })
        .flatten();
    let start = r.start_time.as_ref().map(|t| t.0);
    let approved = s
        .last_request
        .as_ref()
        .filter(|o| o.accepted && o.request.action == RequestAction::Approve)
        .map(|o| (o.request.clone(), o.handled_at.as_ref().map(|t| t.0)))
        .filter(|(_, at)| matches!((at, start), (Some(a), Some(s)) if *a >= s));
    Some(Rollout {
        start,
        approved,
        end,
        judged: r.history.iter().any(|h| h.judgement.is_some()),
        history: r.history.clone(),
        transitions: r.transitions.clone(),
        checks: r.checks.clone(),
        approvals: r.approvals.clone(),
        failures: r.failures.clone(),
        current_weight: Some(s.canary_weight),
    })
}

/// One analysis step as the table lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRow {
    /// `status.rollout.history[].step`.
    pub step: i32,
    /// When its checks ran.
    pub time: String,
    /// The canary weight then.
    pub weight: i32,
    /// One cell per metric, in the order of [`metric_names`].
    pub cells: Vec<Cell>,
    /// The `rollout` webhooks' answers.
    pub webhooks: Vec<Answer>,
    /// The judgement's score and outcome, or empty.
    pub score: String,
    /// Whether a counted check failed in this step.
    pub failed: bool,
}

/// One metric's value in one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The metric's name.
    pub metric: String,
    /// The value as shown, or `no data`, or empty when the metric was not checked.
    pub text: String,
    /// The value exactly (for machines: a `data-value` attribute), or empty.
    pub raw: String,
    /// The passing range.
    pub range: String,
    /// `pass`, `fail`, `dry-run`, `skip` or empty.
    pub verdict: String,
    /// Why it failed.
    pub reason: String,
}

/// A webhook's or gate's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Its kind (`rollout`, `confirm-promotion`, `approve`, ...).
    pub kind: String,
    /// Its name, or who approved.
    pub name: String,
    /// Whether it passed (opened the gate).
    pub passed: bool,
    /// What it said.
    pub message: String,
    /// When.
    pub at: String,
}

/// The metrics named in a rollout's steps, in the order first seen.
pub fn metric_names(r: &Rollout) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in &r.history {
        for m in &h.metrics {
            if !out.contains(&m.name) {
                out.push(m.name.clone());
            }
        }
    }
    out
}

fn answer(c: &CheckRecord) -> Answer {
    Answer {
        kind: c.kind.clone(),
        name: c.name.clone(),
        passed: c.passed,
        message: c.message.clone(),
        at: c.at.as_ref().map(|t| clock(t.0)).unwrap_or_default(),
    }
}

/// Whether a step had a counted failure: a metric or a webhook that failed, not in dry-run.
pub fn step_failed(h: &AnalysisRecord) -> bool {
    h.metrics
        .iter()
        .any(|m| !m.passed && m.dry_run != Some(true) && m.inconclusive != Some(true))
        || h.webhooks
            .iter()
            .any(|w| !w.passed && w.dry_run != Some(true))
}

/// The table of analysis steps.
pub fn step_rows(r: &Rollout) -> Vec<StepRow> {
    let names = metric_names(r);
    r.history
        .iter()
        .map(|h| StepRow {
            step: h.step,
            time: h.time.as_ref().map(|t| clock(t.0)).unwrap_or_default(),
            weight: h.canary_weight,
            cells: names
                .iter()
                .map(|n| match h.metrics.iter().find(|m| &m.name == n) {
                    Some(m) => Cell {
                        metric: n.clone(),
                        text: m.value.map(number).unwrap_or_else(|| "no data".into()),
                        raw: m.value.map(|v| v.to_string()).unwrap_or_default(),
                        range: range(m.min, m.max),
                        verdict: if m.inconclusive == Some(true) {
                            "skip"
                        } else if m.passed {
                            "pass"
                        } else if m.dry_run == Some(true) {
                            "dry-run"
                        } else {
                            "fail"
                        }
                        .into(),
                        reason: m.reason.clone().unwrap_or_default(),
                    },
                    None => Cell {
                        metric: n.clone(),
                        text: String::new(),
                        raw: String::new(),
                        range: String::new(),
                        verdict: String::new(),
                        reason: String::new(),
                    },
                })
                .collect(),
            webhooks: h.webhooks.iter().map(answer).collect(),
            score: h
                .judgement
                .as_ref()
                .map(|j| match j.score {
                    Some(s) => format!("{} ({})", number(s), j.outcome),
                    None => j.outcome.clone(),
                })
                .unwrap_or_default(),
            failed: step_failed(h),
        })
        .collect()
}

/// The gates' answers, and who opened a gate with `approve`: gating webhooks' last answers
/// (the `rollout` webhooks are in the steps), then approvals not used yet.
pub fn gate_answers(r: &Rollout) -> Vec<Answer> {
    let mut out: Vec<Answer> = r
        .checks
        .iter()
        .filter(|c| c.kind != "rollout")
        .map(answer)
        .collect();
    if let Some((a, at)) = &r.approved {
        out.push(Answer {
            kind: a.gate.map(|g| g.to_string()).unwrap_or_default(),
            name: format!("approved by {}", a.who()),
            passed: true,
            message: "opened the gate once".into(),
            at: at.map(clock).unwrap_or_default(),
        });
    }
    for a in &r.approvals {
        out.push(Answer {
            kind: a.gate.map(|g| g.to_string()).unwrap_or_default(),
            name: format!("approved by {}", a.who()),
            passed: true,
            message: "approval not used yet: opens the gate once".into(),
            at: a
                .requested_at
                .as_ref()
                .map(|t| clock(t.0))
                .unwrap_or_default(),
        });
    }
    out
}

/// A phase transition as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct TransitionRow {
    /// When.
    pub at: String,
    /// The phase entered.
    pub phase: String,
    /// Why.
    pub reason: String,
    /// The weight then.
    pub weight: i32,
}

/// The transitions, oldest first.
pub fn transition_rows(r: &Rollout) -> Vec<TransitionRow> {
    r.transitions
        .iter()
        .map(|t| TransitionRow {
            at: t.time.as_ref().map(|t| clock(t.0)).unwrap_or_default(),
            phase: t.phase.as_str().into(),
            reason: t.reason.clone(),
            weight: t.canary_weight,
        })
        .collect()
}

/// An action button.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionButton {
    /// `promote`, `abort`, ...
    pub action: String,
    /// The gate, for approve.
    pub gate: String,
    /// The button's text.
    pub label: String,
}

/// The actions that fit the Canary as it is (the same checks `kubectl fledge` makes before it
/// writes a request).
pub fn actions(c: &Canary) -> Vec<ActionButton> {
    let s = status(c);
    if s.request.is_some() {
        return Vec::new();
    }
    RequestAction::ALL
        .into_iter()
        .filter_map(|action| {
            let gate = match action {
                RequestAction::Approve => Some(fledge_core::requests::pending_gate(&c.spec, &s)?),
                _ => None,
            };
            let request = OperatorRequest {
                id: String::new(),
                action,
                gate,
                user: String::new(),
                requested_at: None,
            };
            fledge_core::requests::fits(&c.spec, &s, &request).ok()?;
            Some(ActionButton {
                action: action.to_string(),
                gate: gate.map(|g| g.to_string()).unwrap_or_default(),
                label: match gate {
                    Some(g) => format!("Approve {g}"),
                    None => {
                        let a = action.as_str();
                        let mut chars = a.chars();
                        chars
                            .next()
                            .map(|f| f.to_uppercase().chain(chars).collect())
                            .unwrap_or_default()
                    }
                },
            })
        })
        .collect()
}
