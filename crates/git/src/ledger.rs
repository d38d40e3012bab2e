//! The ledger: one YAML file per rollout, `<ledger>/<namespace>/<canary>/<start>-<revision>.yaml`,
//! written when the rollout starts and completed when it ends. Concurrent rollouts write
//! different files, so they never conflict; a record applied twice changes nothing.

use fledge_api::{AnalysisRecord, CheckRecord, PhaseTransition};
use serde::{Deserialize, Serialize};

/// The `kind` of a ledger file.
pub const KIND: &str = "RolloutRecord";

/// One rollout, as the ledger file holds it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    /// `fledge.dev/v1beta1`.
    pub api_version: String,
    /// [`KIND`].
    pub kind: String,
    /// `namespace/name` of the Canary.
    pub canary: String,
    /// `Kind/name` of the target workload.
    pub target: String,
    /// The target's spec hash under test.
    pub revision: String,
    /// The primary's spec hash when the rollout started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_revision: Option<String>,
    /// The primary's images when the rollout started.
    #[serde(default)]
    pub old_images: Vec<String>,
    /// The target's images under test.
    #[serde(default)]
    pub new_images: Vec<String>,
    /// The source commit that introduced the new image, when fledge found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// When the rollout started (RFC 3339).
    pub start_time: String,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// When the first check failed, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure_time: Option<String>,
    /// `promoted`, `rolled-back`, `superseded` or `aborted`, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// What happened, in order.
    #[serde(default)]
    pub events: Vec<RecordedEvent>,
    /// The metric results and `rollout` webhook answers of each analysis step (the last 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis: Vec<AnalysisRecord>,
    /// The phases the rollout went through, with their reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<PhaseTransition>,
    /// The last answer of each gating webhook (pre-rollout, rollout, confirm-rollout,
    /// confirm-promotion), and who opened a gate with `kubectl fledge approve`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckRecord>,
}

/// What a rollout's ending record adds to its ledger file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ending {
    /// See [`RolloutRecord::analysis`].
    #[serde(default)]
    pub analysis: Vec<AnalysisRecord>,
    /// When the rollout's first check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
    /// See [`RolloutRecord::transitions`].
    #[serde(default)]
    pub transitions: Vec<PhaseTransition>,
    /// See [`RolloutRecord::checks`].
    #[serde(default)]
    pub checks: Vec<CheckRecord>,
}

/// The commit that introduced a revision into the GitOps source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// The commit id.
    pub commit: String,
    /// The file it changed.
    pub path: String,
}

/// One event of a rollout.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    /// When (RFC 3339).
    pub time: String,
    /// `Started`, `Promoted`, `RolledBack`, `Superseded`, `Aborted`.
    pub event: String,
    /// The Canary's phase after it.
    pub phase: String,
    /// The canary's weight then.
    pub canary_weight: i32,
    /// Failed checks so far.
    pub failed_checks: i32,
    /// Why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl RolloutRecord {
    /// The result word of an ending event.
    pub fn result_of(event: &str) -> Option<&'static str> {
        match event {
            "Promoted" => Some("promoted"),
            "RolledBack" => Some("rolled-back"),
            "Superseded" => Some("superseded"),
            "Aborted" => Some("aborted"),
            _ => None,
        }
    }

    /// Adds `ev` unless it is already there (same time and event); returns whether the record
    /// changed. An ending event sets the end time and result, and what `ending` says.
    pub fn apply(&mut self, ev: RecordedEvent, ending: &Ending) -> bool {
        if self
            .events
            .iter()
            .any(|e| e.time == ev.time && e.event == ev.event)
        {
            return false;
        }
        if let Some(result) = Self::result_of(&ev.event) {
            self.end_time = Some(ev.time.clone());
            self.result = Some(result.to_string());
            if !ending.analysis.is_empty() {
                self.analysis = ending.analysis.clone();
            }
            if let Some(t) = &ending.first_failure {
                self.first_failure_time = Some(t.clone());
            }
            if !ending.transitions.is_empty() {
                self.transitions = ending.transitions.clone();
            }
            if !ending.checks.is_empty() {
                self.checks = ending.checks.clone();
            }
        }
        self.events.push(ev);
        true
    }

    /// The file's text.
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_saphyr::to_string(self).map_err(|e| format!("cannot write the ledger file: {e}"))
    }

    /// Reads a ledger file.
    pub fn from_yaml(text: &str) -> Result<RolloutRecord, String> {
        serde_saphyr::from_str(text).map_err(|e| format!("cannot read the ledger file: {e}"))
    }
}

/// `2026-11-23T19:05:12Z` → `20261123T190512Z`, for file names.
pub fn file_time(rfc3339: &str) -> String {
    rfc3339
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect::<String>()
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end_matches('Z')
        .to_string()
        + "Z"
}

/// The ledger file of a rollout.
pub fn file_path(dir: &str, ns: &str, name: &str, start: &str, revision: &str) -> String {
    let short: String = revision.chars().take(12).collect();
    format!("{dir}/{ns}/{name}/{}-{short}.yaml", file_time(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: &str, e: &str) -> RecordedEvent {
        RecordedEvent {
            time: t.into(),
            event: e.into(),
            phase: "Progressing".into(),
            ..Default::default()
        }
    }

    #[test]
    fn files_are_named_by_namespace_canary_start_and_revision() {
        assert_eq!(
            file_path(
                ".fledge/ledger",
                "shop",
                "web",
                "2026-11-23T19:05:12Z",
                "5d8f9c7b6a4e3f21aa"
            ),
            ".fledge/ledger/shop/web/20261123T190512Z-5d8f9c7b6a4e.yaml"
        );
    }

    #[test]
    fn events_apply_once_and_an_ending_sets_the_result() {
        let mut r = RolloutRecord {
            api_version: fledge_api::API_VERSION.into(),
            kind: KIND.into(),
            canary: "shop/web".into(),
            start_time: "2026-11-23T19:05:12Z".into(),
            ..Default::default()
        };
        let none = Ending::default();
        assert!(r.apply(ev("2026-11-23T19:05:12Z", "Started"), &none));
        assert!(!r.apply(ev("2026-11-23T19:05:12Z", "Started"), &none));
        let ending = Ending {
            transitions: vec![PhaseTransition {
                phase: fledge_api::CanaryPhase::Succeeded,
                reason: "Succeeded".into(),
                ..Default::default()
            }],
            checks: vec![CheckRecord {
                kind: "confirm-promotion".into(),
                name: "ship".into(),
                passed: true,
                message: "opened by alice's approval".into(),
                at: None,
                dry_run: None,
            }],
            ..Default::default()
        };
        assert!(r.apply(ev("2026-11-23T19:07:00Z", "Promoted"), &ending));
        assert_eq!(r.transitions, ending.transitions);
        assert_eq!(r.checks, ending.checks);
        assert_eq!(r.result.as_deref(), Some("promoted"));
        assert_eq!(r.end_time.as_deref(), Some("2026-11-23T19:07:00Z"));
        let text = r.to_yaml().unwrap();
        assert!(text.contains("kind: RolloutRecord"), "{text}");
        assert_eq!(RolloutRecord::from_yaml(&text).unwrap(), r);
    }
}
