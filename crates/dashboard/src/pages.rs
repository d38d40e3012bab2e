//! The pages and the fragments the live updates swap in, rendered by askama templates from the
//! data of [`crate::view`] (pure: the same input gives the same HTML).

use askama::Template;
use fledge_api::{Canary, Strategy};
use jiff::Timestamp;
use kube::ResourceExt;

use crate::chart::{self, Chart};
use crate::view::{self, ActionButton, Answer, EventLine, Row, StepRow, TransitionRow};

/// An error rendering a page.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template failed.
    #[error("rendering the page: {0}")]
    Template(#[from] askama::Error),
    /// A chart failed.
    #[error("{0}")]
    Chart(String),
}

/// What every page's frame shows.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    /// The cluster (kubeconfig context) or the server's name.
    pub context: String,
    /// No action is offered.
    pub read_only: bool,
}

#[derive(Template)]
#[template(path = "overview_table.html")]
struct OverviewTable<'a> {
    rows: &'a [Row],
    filter: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview<'a> {
    title: &'a str,
    stream: &'a str,
    context: &'a str,
    read_only: bool,
    overview: bool,
    filter: &'a str,
    table: &'a str,
}

/// The overview's table: the rows matching `filter` shown, the others hidden (the page's filter
/// box hides and shows them as one types).
pub fn overview_table(
    canaries: &[Canary],
    filter: &str,
    error: Option<&str>,
    now: Timestamp,
) -> Result<String, RenderError> {
    let rows = view::rows(canaries, now);
    Ok(OverviewTable {
        rows: &rows,
        filter,
        error,
    }
    .render()?)
}

/// The overview page.
pub fn overview(frame: &Frame, filter: &str, table: &str) -> Result<String, RenderError> {
    Ok(Overview {
        title: "Canaries",
        stream: "/stream",
        context: &frame.context,
        read_only: frame.read_only,
        overview: true,
        filter,
        table,
    }
    .render()?)
}

/// A link to a past rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerLink {
    /// Its page.
    pub href: String,
    /// What it was.
    pub label: String,
}

#[derive(Template)]
#[template(path = "canary_body.html")]
struct CanaryBody {
    phase: String,
    phase_class: String,
    weight: i32,
    step: String,
    failed: String,
    strategy: String,
    target: String,
    paused: String,
    last_request: String,
    conditions: Vec<(String, bool, String)>,
    rollout_title: String,
    charts: Vec<Chart>,
    step_count: usize,
    failures: Vec<String>,
    steps: Vec<StepRow>,
    metric_names: Vec<String>,
    judged: bool,
    gates: Vec<Answer>,
    transitions: Vec<TransitionRow>,
    show_events: bool,
    events: Vec<EventRow>,
    ledger: Vec<LedgerLink>,
    ledger_note: String,
}

struct EventRow {
    at: String,
    type_: String,
    reason: String,
    count: i32,
    message: String,
}

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Canary => "canary (weighted steps)",
        Strategy::AbTesting => "A/B testing",
        Strategy::BlueGreen => "blue/green",
        Strategy::BlueGreenMirror => "blue/green with mirroring",
    }
}

/// What the Canary's page shows about its rollout, apart from the Events and the ledger.
pub struct CanaryInput<'a> {
    /// The Canary.
    pub canary: &'a Canary,
    /// Its Events, oldest first.
    pub events: &'a [EventLine],
    /// Past rollouts from the ledger.
    pub ledger: &'a [LedgerLink],
    /// Why there are none, when the Canary records rollouts in Git.
    pub ledger_note: &'a str,
    /// The time now.
    pub now: Timestamp,
}

/// The live part of a Canary's page: summary, charts, steps, gates, transitions, Events.
pub fn canary_body(input: &CanaryInput<'_>) -> Result<String, RenderError> {
    let c = input.canary;
    let s = view::status(c);
    let (done, total) = view::step_of_total(c);
    let rollout = view::rollout_of(c);
    let charts = match &rollout {
        Some(r) => chart::all(r, input.now).map_err(RenderError::Chart)?,
        None => Vec::new(),
    };
    let r = rollout.unwrap_or_default();
    let body = CanaryBody {
        phase: view::phase(&s).into(),
        phase_class: view::phase_class(s.phase).into(),
        weight: s.canary_weight,
        step: format!("{done}/{total}"),
        failed: format!(
            "{}/{}",
            s.failed_checks,
            c.spec.analysis_or_default().threshold().max(1)
        ),
        strategy: strategy_name(c.spec.strategy()).into(),
        target: format!(
            "{}/{}",
            c.spec.target_ref.kind.as_deref().unwrap_or("Deployment"),
            c.spec.target_ref.name
        ),
        paused: s
            .paused
            .as_ref()
            .map(|p| format!("by {}", p.who()))
            .unwrap_or_default(),
        last_request: s
            .last_request
            .as_ref()
            .map(|o| {
                format!(
                    "{} by {}: {} ({})",
                    o.request.describe(),
                    o.request.who(),
                    if o.accepted { "accepted" } else { "refused" },
                    o.message
                )
            })
            .or_else(|| {
                s.request.as_ref().map(|p| {
                    format!(
                        "{} by {}: waiting for the controller",
                        p.describe(),
                        p.who()
                    )
                })
            })
            .unwrap_or_default(),
        conditions: s
            .conditions
            .iter()
            .flatten()
            .filter(|c| c.r#type != "Promoted")
            .filter(|c| c.status != "True" || c.message.is_some())
            .map(|c| {
                (
                    c.r#type.clone(),
                    c.status == "True",
                    c.message.clone().or(c.reason.clone()).unwrap_or_default(),
                )
            })
            .collect(),
        rollout_title: if s.phase.is_rolling_out() {
            "Rollout in progress".into()
        } else {
            "Last rollout".into()
        },
        step_count: r.history.len(),
        charts,
        failures: r.failures.clone(),
        steps: view::step_rows(&r),
        metric_names: view::metric_names(&r),
        judged: r.judged,
        gates: view::gate_answers(&r),
        transitions: view::transition_rows(&r),
        show_events: true,
        events: input
            .events
            .iter()
            .map(|e| EventRow {
                at: e.at.map(view::date_time).unwrap_or_default(),
                type_: e.type_.clone(),
                reason: e.reason.clone(),
                count: e.count,
                message: e.message.clone(),
            })
            .collect(),
        ledger: input.ledger.to_vec(),
        ledger_note: input.ledger_note.into(),
    };
    Ok(body.render()?)
}

/// A past rollout's chart and tables, from its ledger record.
pub fn past_rollout_body(r: &view::Rollout, now: Timestamp) -> Result<String, RenderError> {
    let charts = chart::all(r, now).map_err(RenderError::Chart)?;
    let last = r.transitions.last();
    let body = CanaryBody {
        phase: last
            .map(|t| t.phase.as_str().to_string())
            .unwrap_or_default(),
        phase_class: last
            .map(|t| view::phase_class(t.phase))
            .unwrap_or("idle")
            .into(),
        weight: last.map(|t| t.canary_weight).unwrap_or_default(),
        step: match r.history.len() {
            1 => "1 analysis step".into(),
            n => format!("{n} analysis steps"),
        },
        // The steps with a counted failure (the failures' list also holds the rollback's
        // reason).
        failed: r
            .history
            .iter()
            .filter(|h| view::step_failed(h))
            .count()
            .to_string(),
        strategy: String::new(),
        target: String::new(),
        paused: String::new(),
        last_request: String::new(),
        conditions: Vec::new(),
        rollout_title: "Past rollout".into(),
        step_count: r.history.len(),
        charts,
        failures: r.failures.clone(),
        steps: view::step_rows(r),
        metric_names: view::metric_names(r),
        judged: r.judged,
        gates: view::gate_answers(r),
        transitions: view::transition_rows(r),
        show_events: false,
        events: Vec::new(),
        ledger: Vec::new(),
        ledger_note: String::new(),
    };
    Ok(body.render()?)
}

#[derive(Template)]
#[template(path = "actions.html")]
struct Actions<'a> {
    read_only: bool,
    pending: Option<String>,
    buttons: &'a [ActionButton],
    action_url: &'a str,
    token: &'a str,
}

/// The action buttons that fit the Canary now (none when read-only).
pub fn actions(c: &Canary, read_only: bool, token: &str) -> Result<String, RenderError> {
    let buttons = if read_only {
        Vec::new()
    } else {
        view::actions(c)
    };
    let pending = view::status(c).request.map(|p| {
        format!(
            "{} requested by {} is waiting for the controller.",
            p.describe(),
            p.who()
        )
    });
    let url = format!(
        "{}/actions",
        crate::canary_path(&c.namespace().unwrap_or_default(), &c.name_any())
    );
    Ok(Actions {
        read_only,
        pending,
        buttons: &buttons,
        action_url: &url,
        token,
    }
    .render()?)
}

/// A message after an action.
#[derive(Clone, Debug)]
pub struct Flash {
    /// Whether it went through.
    pub ok: bool,
    /// What happened, or the refusal.
    pub text: String,
}

#[derive(Template)]
#[template(path = "canary.html")]
struct CanaryPage<'a> {
    title: &'a str,
    stream: &'a str,
    context: &'a str,
    read_only: bool,
    overview: bool,
    namespace: &'a str,
    name: &'a str,
    flash: Option<&'a Flash>,
    actions: &'a str,
    body: &'a str,
}

/// A Canary's page around its fragments; `stream` is where its live updates come from (empty:
/// none, for a past rollout).
#[allow(clippy::too_many_arguments)]
pub fn canary_page(
    frame: &Frame,
    namespace: &str,
    name: &str,
    title: &str,
    stream: &str,
    flash: Option<&Flash>,
    actions: &str,
    body: &str,
) -> Result<String, RenderError> {
    Ok(CanaryPage {
        title,
        stream,
        context: &frame.context,
        read_only: frame.read_only,
        overview: false,
        namespace,
        name,
        flash,
        actions,
        body,
    }
    .render()?)
}
