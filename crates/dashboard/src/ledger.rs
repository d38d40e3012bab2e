//! Past rollouts from the Git ledger, read from a working copy of the repository the Canary
//! records its rollouts in (`kubectl fledge dashboard --ledger DIR`): the user's own clone, kept
//! current with their own `git pull`, so no credential of the cluster's is needed.

use std::path::{Path, PathBuf};

use fledge_api::Canary;
use fledge_api::gitops::DEFAULT_LEDGER_PATH;
use fledge_git::ledger::RolloutRecord;
use kube::ResourceExt;

use crate::view::Rollout;

/// The directory of a Canary's ledger files in the working copy, `None` when the Canary does
/// not record its rollouts in Git (`spec.gitops` unset).
pub fn dir(checkout: &Path, c: &Canary) -> Option<PathBuf> {
    let gitops = c.spec.gitops.as_ref()?;
    let ledger = gitops
        .ledger
        .as_ref()
        .and_then(|l| l.path.clone())
        .unwrap_or_else(|| DEFAULT_LEDGER_PATH.to_string());
    Some(
        checkout
            .join(ledger.trim_matches('/'))
            .join(c.namespace().unwrap_or_default())
            .join(c.name_any()),
    )
}

/// Whether `file` is a ledger file's name (no path, `.yaml`).
pub fn valid_name(file: &str) -> bool {
    file.ends_with(".yaml")
        && !file.starts_with('.')
        && file
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// The ledger files of a Canary, newest first (their names start with the rollout's start).
pub fn list(dir: &Path) -> Result<Vec<(String, RolloutRecord)>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !valid_name(&name) {
            continue;
        }
        out.push((name.clone(), read(dir, &name)?));
    }
    out.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(out)
}

/// One ledger file.
pub fn read(dir: &Path, file: &str) -> Result<RolloutRecord, String> {
    if !valid_name(file) {
        return Err(format!("{file:?} is not a ledger file's name"));
    }
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    RolloutRecord::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn time(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// A ledger record as the chart draws it.
pub fn rollout(r: &RolloutRecord) -> Rollout {
    Rollout {
        start: time(&r.start_time),
        end: r.end_time.as_deref().and_then(time),
        judged: r.analysis.iter().any(|h| h.judgement.is_some()),
        history: r.analysis.clone(),
        transitions: r.transitions.clone(),
        checks: r.checks.clone(),
        approvals: Vec::new(),
        approved: None,
        failures: r
            .events
            .iter()
            .flat_map(|e| e.reasons.iter().cloned())
            .collect(),
        current_weight: None,
    }
}

/// How a ledger record is listed: start, result, images.
pub fn label(r: &RolloutRecord) -> String {
    format!(
        "{} – {} ({})",
        r.start_time,
        r.result.as_deref().unwrap_or("in progress"),
        if r.new_images.is_empty() {
            r.revision.clone()
        } else {
            r.new_images.join(", ")
        }
    )
}
