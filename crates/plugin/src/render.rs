//! What `kubectl fledge get` prints, from recorded objects and a given time: pure functions, so
//! the output of a rollout can be checked from its status alone.

use std::fmt::Write as _;

use fledge_api::{Canary, CanaryPhase, CanaryStatus, Gate, HookType, NoDataPolicy, Strategy};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// Cells of the weight bar.
const BAR: usize = 10;

/// `[████░░░░░░]  40%`.
pub fn weight_bar(weight: i32) -> String {
    let w = weight.clamp(0, 100);
    let full = usize::try_from(w).unwrap_or(0) * BAR / 100;
    let full = if w > 0 { full.max(1) } else { 0 };
    format!("[{}{}] {w:>3}%", "█".repeat(full), "░".repeat(BAR - full))
}

/// A duration for people: `45s`, `3m12s`, `2h5m`, `3d4h`.
pub fn human(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// Time since `t`, or `-`.
pub fn age(t: Option<&Time>, now: Timestamp) -> String {
    t.map_or_else(
        || "-".to_string(),
        |t| human(now.as_second() - t.0.as_second()),
    )
}

fn status(c: &Canary) -> CanaryStatus {
    c.status.clone().unwrap_or_default()
}

/// The phase as written, `-` before the controller saw the Canary.
fn phase(s: &CanaryStatus) -> &'static str {
    match s.phase {
        CanaryPhase::Unknown => "-",
        p => p.as_str(),
    }
}

/// The weights a weighted canary goes through, in order.
fn weight_steps(c: &Canary) -> Vec<i32> {
    fledge_core::weights::steps(&c.spec.analysis_or_default())
}

/// The weights of a StatefulSet's steps: `stepReplicas` counted in `replicas`, or the
/// weights of `stepWeight`/`stepWeights`.
fn statefulset_steps(c: &Canary, replicas: Option<i32>) -> Vec<i32> {
    let analysis = c.spec.analysis_or_default();
    match (&analysis.step_replicas, replicas) {
        (Some(step), Some(r)) => fledge_api::statefulset::step_weights(step, r),
        (Some(_), None) => Vec::new(),
        (None, _) => weight_steps(c),
    }
}

/// Progress through the analysis: `2/3` weight steps of a weighted canary, `iterations/N`
/// otherwise.
pub fn iteration(c: &Canary) -> String {
    let s = status(c);
    match c.spec.strategy() {
        // Its steps depend on the replicas, which the Canary does not carry.
        Strategy::Canary
            if c.spec.targets_statefulset()
                && c.spec.analysis_or_default().step_replicas.is_some() =>
        {
            format!("{}% of pods", s.canary_weight)
        }
        Strategy::Canary => {
            let steps = weight_steps(c);
            let done = steps.iter().filter(|w| **w <= s.canary_weight).count();
            format!("{done}/{}", steps.len())
        }
        _ => format!(
            "{}/{}",
            s.iterations,
            c.spec.analysis_or_default().iterations()
        ),
    }
}

/// `failed/threshold`.
pub fn failed(c: &Canary) -> String {
    format!(
        "{}/{}",
        status(c).failed_checks,
        c.spec.analysis_or_default().threshold().max(1)
    )
}

/// The table of `kubectl fledge get`.
pub fn table(canaries: &[Canary], all_namespaces: bool, now: Timestamp) -> String {
    let mut rows = vec![{
        let mut h = vec!["NAME", "PHASE", "WEIGHT", "ITERATION", "FAILED", "AGE"];
        if all_namespaces {
            h.insert(0, "NAMESPACE");
        }
        h.into_iter().map(String::from).collect::<Vec<_>>()
    }];
    for c in canaries {
        let s = status(c);
        let mut phase = phase(&s).to_string();
        if s.paused.is_some() {
            phase.push_str(" (paused)");
        }
        let mut row = vec![
            c.name_any(),
            phase,
            weight_bar(s.canary_weight),
            iteration(c),
            failed(c),
            age(s.last_transition_time.as_ref(), now),
        ];
        if all_namespaces {
            row.insert(0, c.namespace().unwrap_or_default());
        }
        rows.push(row);
    }
    columns(&rows)
}

fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                let pad = widths[i] - cell.chars().count() + 3;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One line per change, for `get -w` when the output is not a terminal. Only what a change of
/// state changes is on it (no clocks), so the same rollout always prints the same lines.
pub fn watch_line(c: &Canary) -> String {
    let s = status(c);
    let mut line = format!(
        "{}/{} {} weight {}% iteration {} failed {}",
        c.namespace().unwrap_or_default(),
        c.name_any(),
        phase(&s),
        s.canary_weight,
        iteration(c),
        failed(c)
    );
    if let Some(p) = &s.paused {
        let _ = write!(line, " paused by {}", p.who());
    }
    line
}

pub use fledge_dashboard::view::EventLine;

/// What the tree of `get NAME` is drawn from.
#[derive(Clone, Debug)]
pub struct TreeInput {
    /// The Canary.
    pub canary: Canary,
    /// The target Deployment, when found.
    pub target: Option<Deployment>,
    /// The primary Deployment, when found.
    pub primary: Option<Deployment>,
    /// Its Events, oldest first.
    pub events: Vec<EventLine>,
    /// A StatefulSet target and its pods, when the Canary has one.
    pub statefulset: Option<StatefulSetInput>,
}

/// A StatefulSet target as `get NAME` shows it.
#[derive(Clone, Debug, Default)]
pub struct StatefulSetInput {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `spec.updateStrategy.rollingUpdate.partition`.
    pub partition: i32,
    /// `status.currentRevision`: the promoted pods' revision.
    pub current_revision: String,
    /// `status.updateRevision`: the template's revision.
    pub update_revision: String,
    /// The pods: ordinal, `controller-revision-hash`, Ready.
    pub pods: Vec<(i32, String, bool)>,
}

/// `0-2`, `4`, `0-1,3` for a sorted list of ordinals.
fn ordinal_ranges(ordinals: &[i32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ordinals.len() {
        let start = ordinals[i];
        let mut end = start;
        while i + 1 < ordinals.len() && ordinals[i + 1] == end + 1 {
            i += 1;
            end = ordinals[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(",")
    }
}

/// The partition and which ordinals run which revision.
fn statefulset_lines(out: &mut String, sts: &StatefulSetInput) {
    let on = |rev: &str| -> Vec<i32> {
        let mut v: Vec<i32> = sts
            .pods
            .iter()
            .filter(|(_, r, _)| r == rev)
            .map(|(o, _, _)| *o)
            .collect();
        v.sort_unstable();
        v
    };
    let _ = writeln!(
        out,
        "│   partition {} of {} replicas: the pods at or above it run the template",
        sts.partition, sts.replicas
    );
    let unready: Vec<i32> = sts
        .pods
        .iter()
        .filter(|(_, _, ready)| !ready)
        .map(|(o, _, _)| *o)
        .collect();
    if sts.update_revision != sts.current_revision {
        let _ = writeln!(
            out,
            "│   ordinals {} on {} (under test), {} on {} (promoted)",
            ordinal_ranges(&on(&sts.update_revision)),
            sts.update_revision,
            ordinal_ranges(&on(&sts.current_revision)),
            sts.current_revision
        );
    } else {
        let _ = writeln!(
            out,
            "│   ordinals {} on {}",
            ordinal_ranges(&on(&sts.current_revision)),
            sts.current_revision
        );
    }
    if !unready.is_empty() {
        let _ = writeln!(out, "│   not ready: ordinals {}", ordinal_ranges(&unready));
    }
}

/// How many Events the tree shows.
pub const EVENTS_SHOWN: usize = 6;

fn images(d: &Deployment) -> String {
    let list: Vec<String> = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(", ")
    }
}

fn replicas(d: &Deployment) -> String {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = d
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    format!("{ready}/{want} available")
}

fn short(hash: Option<&str>) -> String {
    match hash {
        Some(h) if !h.is_empty() => h.chars().take(10).collect(),
        _ => "-".into(),
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

fn range(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("{}..{}", number(a), number(b)),
        (Some(a), None) => format!(">= {}", number(a)),
        (None, Some(b)) => format!("<= {}", number(b)),
        (None, None) => "any".into(),
    }
}

fn clock(t: &Timestamp) -> String {
    t.strftime("%H:%M:%S").to_string()
}

/// The tree of `kubectl fledge get NAME` at `now`.
pub fn tree(input: &TreeInput, now: Timestamp) -> String {
    let c = &input.canary;
    let s = status(c);
    let analysis = c.spec.analysis_or_default();
    let mut out = String::new();
    let ns = c.namespace().unwrap_or_default();
    let _ = writeln!(out, "Canary:    {ns}/{}", c.name_any());
    let mut state = format!(
        "{}  {}  iteration {}  failed checks {}",
        phase(&s),
        weight_bar(s.canary_weight),
        iteration(c),
        failed(c)
    );
    if let Some(p) = &s.paused {
        let _ = write!(state, "  PAUSED by {}", p.who());
    }
    let _ = writeln!(out, "Status:    {state}");
    let strategy = match c.spec.strategy() {
        Strategy::Canary if c.spec.targets_statefulset() => {
            let replicas = input.statefulset.as_ref().map(|s| s.replicas);
            let steps: Vec<String> = statefulset_steps(c, replicas)
                .iter()
                .map(|w| {
                    let pods = replicas
                        .map(|r| fledge_api::statefulset::pods_for_weight(*w, r).to_string())
                        .unwrap_or_else(|| "?".into());
                    format!("{pods} ({w}%)")
                })
                .collect();
            format!("StatefulSet partition, pods {}", steps.join(" "))
        }
        Strategy::Canary => {
            let steps: Vec<String> = weight_steps(c).iter().map(|w| format!("{w}%")).collect();
            format!("canary, weights {}", steps.join(" "))
        }
        Strategy::AbTesting => "A/B testing".into(),
        Strategy::BlueGreen => "blue/green".into(),
        Strategy::BlueGreenMirror => "blue/green with mirroring".into(),
    };
    let _ = writeln!(
        out,
        "Strategy:  {strategy}, every {}, provider {}",
        analysis.interval_str(),
        c.spec.provider_or_default()
    );
    let since = age(s.last_transition_time.as_ref(), now);
    let _ = writeln!(out, "Since:     {since} in this phase");

    let target_name = &c.spec.target_ref.name;
    let _ = writeln!(out, "Revisions:");
    let rollout_rev = s.last_applied_spec.as_deref();
    let promoted_rev = s.last_promoted_spec.as_deref();
    let _ = writeln!(
        out,
        "├── target  {target_name}  revision {}{}",
        short(rollout_rev),
        if rollout_rev != promoted_rev && s.phase != CanaryPhase::Failed {
            " (under test)"
        } else if rollout_rev != promoted_rev {
            " (rolled back)"
        } else {
            ""
        }
    );
    match &input.target {
        Some(d) => {
            let _ = writeln!(out, "│   images {}  {}", images(d), replicas(d));
        }
        None => out.push_str("│   not found\n"),
    }
    if c.spec.targets_statefulset() {
        if let Some(sts) = &input.statefulset {
            statefulset_lines(&mut out, sts);
        }
        let _ = writeln!(
            out,
            "└── promoted revision {} (rolled out in place: no primary copy)",
            short(promoted_rev)
        );
    } else {
        let _ = writeln!(
            out,
            "└── primary {target_name}-primary  revision {}",
            short(promoted_rev)
        );
        match &input.primary {
            Some(d) => {
                let _ = writeln!(out, "    images {}  {}", images(d), replicas(d));
            }
            None => out.push_str("    not found\n"),
        }
    }

    let checks = s
        .rollout
        .as_ref()
        .map(|r| r.checks.clone())
        .unwrap_or_default();
    let record = |kind: &str, name: &str| {
        checks
            .iter()
            .find(|r| r.kind == kind && r.name == name)
            .cloned()
    };
    let mut items: Vec<String> = Vec::new();
    let rollout = s.rollout.clone().unwrap_or_default();
    if let Some(j) = &analysis.judge {
        let baseline = if j.fresh_baseline() {
            fledge_api::baseline_name(target_name)
        } else {
            format!("{target_name}-primary")
        };
        let last = match &rollout.judgement {
            Some(r) => {
                let score = r.score.map_or_else(|| "no score".to_string(), number);
                format!("score {score} ({}): {}", r.outcome, r.reason)
            }
            None => "not judged yet".into(),
        };
        items.push(format!(
            "judgement {}  last {last}  (baseline {baseline})",
            j.r#type
        ));
    }
    for m in analysis.metrics.iter().flatten() {
        let (min, max) = fledge_core::metric_bounds(m);
        let last = match rollout.metrics.iter().find(|r| r.name == m.name) {
            Some(r) => {
                let value = r.value.map_or_else(|| "no value".to_string(), number);
                let mark = match (r.passed, r.inconclusive == Some(true)) {
                    (_, true) => "inconclusive",
                    (true, false) => "ok",
                    (false, false) if r.dry_run == Some(true) => "failed (dry run, not counted)",
                    (false, false) => "FAILED",
                };
                // When the step that measured it ran.
                let at = rollout
                    .history
                    .iter()
                    .rev()
                    .find(|h| h.metrics.iter().any(|x| x.name == m.name))
                    .and_then(|h| h.time.as_ref())
                    .map(|t| format!(" at {}", clock(&t.0)))
                    .unwrap_or_default();
                let why = match (&r.reason, r.passed) {
                    (Some(reason), false) => format!(": {reason}"),
                    _ => String::new(),
                };
                match (&r.classification, r.baseline_median) {
                    (Some(class), baseline) => {
                        let sig = fledge_core::judge::significant;
                        let against = baseline
                            .map(|b| format!(" against the baseline's {}", sig(b)))
                            .unwrap_or_default();
                        let p = r.p_value.map(|p| format!(", p {p:.4}")).unwrap_or_default();
                        let value = r.value.map_or_else(|| "no value".to_string(), sig);
                        format!("{value} {class}{against}{p} {mark}{at}")
                    }
                    (None, _) => format!("{value} {mark}{at}{why}"),
                }
            }
            None => "not checked yet".into(),
        };
        let mut notes = match m.judge.as_ref().filter(|_| analysis.judge.is_some()) {
            Some(j) => vec![format!(
                "judged, {} is bad{}",
                j.direction.as_deref().unwrap_or("either"),
                if j.critical == Some(true) {
                    ", critical"
                } else {
                    ""
                }
            )],
            None => vec![format!("range {}", range(min, max))],
        };
        if m.is_dry_run() {
            notes.push("dry run".into());
        }
        if let Some(policy) = m.no_data_policy().filter(|p| *p != NoDataPolicy::Fail) {
            notes.push(format!("noData: {}", policy.as_str()));
        }
        items.push(format!(
            "metric {}  last {last}  ({})",
            m.name,
            notes.join(", ")
        ));
    }
    for t in HookType::ALL {
        for h in c.spec.webhooks_of(t) {
            let gate = Gate::of(t);
            let approved = gate.and_then(|g| fledge_core::requests::approval(&s, g));
            let state = if let Some(a) = approved {
                format!("approved by {}, opens at its next check", a.who())
            } else {
                match (record(t.as_str(), &h.name), t) {
                    (_, HookType::PostRollout | HookType::Event) => "called after the fact".into(),
                    (Some(r), _) => {
                        let at = r.at.as_ref().map(|t| clock(&t.0)).unwrap_or_default();
                        let word = match (gate.is_some(), r.passed) {
                            (true, true) => "open",
                            (true, false) => "closed",
                            (false, true) => "passed",
                            (false, false) => "failed",
                        };
                        if r.message.is_empty() {
                            format!("{word} at {at}")
                        } else {
                            format!("{word} at {at}: {}", r.message)
                        }
                    }
                    (None, _) => "not checked yet".into(),
                }
            };
            let what = if gate.is_some() { "gate" } else { "webhook" };
            let dry = if h.is_dry_run() { ", dry run" } else { "" };
            items.push(format!("{what} {} ({t}{dry})  {state}", h.name));
        }
    }
    let _ = writeln!(out, "Analysis:");
    if items.is_empty() {
        out.push_str("└── no metrics or webhooks\n");
    }
    for (i, item) in items.iter().enumerate() {
        let branch = if i + 1 == items.len() {
            "└──"
        } else {
            "├──"
        };
        let _ = writeln!(out, "{branch} {item}");
    }
    let replicas = input.statefulset.as_ref().map(|s| s.replicas);
    let _ = writeln!(out, "Next:      {}", next_step(c, &s, now, replicas));
    if let Some(r) = &s.rollout
        && let Some(last) = r.failures.last()
    {
        let _ = writeln!(out, "Failed:    {last}");
    }
    if let Some(r) = &s.request {
        let _ = writeln!(
            out,
            "Request:   {} by {} waiting for the controller",
            r.describe(),
            r.who()
        );
    }
    if let Some(l) = &s.last_request {
        let at = l
            .handled_at
            .as_ref()
            .map(|t| format!(" ({} ago)", age(Some(t), now)))
            .unwrap_or_default();
        let verdict = if l.accepted { "done" } else { "refused" };
        let _ = writeln!(
            out,
            "Last request: {} by {}{at}, {verdict}: {}",
            l.request.describe(),
            l.request.who(),
            l.message
        );
    }
    let _ = writeln!(out, "Events:");
    let shown = &input.events[input.events.len().saturating_sub(EVENTS_SHOWN)..];
    if shown.is_empty() {
        out.push_str("  none\n");
    }
    for e in shown {
        let when =
            e.at.map_or_else(|| "-".into(), |t| human(now.as_second() - t.as_second()));
        let times = if e.count > 1 {
            format!(" x{}", e.count)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {when:>6}  {:<7}  {}{times}: {}",
            e.type_, e.reason, e.message
        );
    }
    out
}

/// What comes next and when, for people.
///
/// `replicas`: a StatefulSet target's, which its steps are counted in.
pub fn next_step(c: &Canary, s: &CanaryStatus, now: Timestamp, replicas: Option<i32>) -> String {
    let analysis = c.spec.analysis_or_default();
    if let Some(p) = &s.paused {
        return format!(
            "nothing until resumed (paused by {}; `kubectl fledge resume {}`)",
            p.who(),
            c.name_any()
        );
    }
    if c.spec.suspend {
        return "nothing: spec.suspend is true".into();
    }
    let due = || {
        let interval = i64::try_from(analysis.interval().as_secs().max(1)).unwrap_or(60);
        match s.rollout.as_ref().and_then(|r| r.last_step_time.as_ref()) {
            Some(t) => {
                let at = t.0.as_second() + interval;
                let left = at - now.as_second();
                let when = Timestamp::from_second(at)
                    .map(|t| clock(&t))
                    .unwrap_or_default();
                if left > 0 {
                    format!("at {when} (in {})", human(left))
                } else {
                    "now".to_string()
                }
            }
            None => "once the canary is ready".into(),
        }
    };
    let gate_note = |g: Gate| {
        if c.spec.webhooks_of(g.hook_type()).is_empty() {
            String::new()
        } else {
            format!(", behind the {g} gate")
        }
    };
    match s.phase {
        CanaryPhase::Unknown | CanaryPhase::Initializing => {
            "creating the primary and the Services".into()
        }
        CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed => {
            "waits for a new revision of the target".into()
        }
        CanaryPhase::Waiting => format!(
            "start the rollout{}, checked {}",
            gate_note(Gate::ConfirmRollout),
            due()
        ),
        CanaryPhase::Progressing => {
            let what = match c.spec.strategy() {
                Strategy::Canary if c.spec.targets_statefulset() => {
                    let steps = statefulset_steps(c, replicas);
                    match steps.iter().find(|w| **w > s.canary_weight) {
                        Some(w) => format!(
                            "{} pods ({w}%){}",
                            replicas.map_or(0, |r| fledge_api::statefulset::pods_for_weight(*w, r)),
                            gate_note(Gate::ConfirmTrafficIncrease)
                        ),
                        None => format!("promotion{}", gate_note(Gate::ConfirmPromotion)),
                    }
                }
                Strategy::Canary => {
                    match fledge_core::weights::next_weight(&analysis, s.canary_weight) {
                        Some(w) => {
                            format!("weight {w}%{}", gate_note(Gate::ConfirmTrafficIncrease))
                        }
                        None => format!("promotion{}", gate_note(Gate::ConfirmPromotion)),
                    }
                }
                _ if s.iterations < analysis.iterations() => {
                    format!("iteration {}/{}", s.iterations + 1, analysis.iterations())
                }
                _ => format!("promotion{}", gate_note(Gate::ConfirmPromotion)),
            };
            format!("analysis step, then {what}, {}", due())
        }
        CanaryPhase::WaitingPromotion => format!(
            "promotion{}, checked {}",
            gate_note(Gate::ConfirmPromotion),
            due()
        ),
        CanaryPhase::Promoting | CanaryPhase::Finalising => {
            "routing all traffic back to the primary, then scaling the canary down".into()
        }
        CanaryPhase::Terminating | CanaryPhase::Terminated => "deletion".into(),
    }
}
