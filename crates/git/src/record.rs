//! The records fledge queues for Git: a ledger event of a rollout, or a revert of the GitOps
//! source, with the commit message each gets.

use fledge_api::gitops::GitRepository;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ledger::{self, RecordedEvent, RolloutRecord};

/// One queued write to Git.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueuedRecord {
    /// The Canary's namespace (where its Secret is).
    pub namespace: String,
    /// The Canary's name.
    pub canary: String,
    /// Where to write.
    pub repository: GitRepository,
    /// When the event happened (RFC 3339), the queue's order.
    pub at: String,
    /// Order among records of the same second (start before end).
    pub rank: u8,
    /// The ledger file to create or complete.
    pub file: String,
    /// The record as it starts (used when the file does not exist yet).
    pub seed: RolloutRecord,
    /// The event to add.
    pub event: RecordedEvent,
    /// What an ending event adds to the file (analysis steps, transitions, gate answers).
    #[serde(default)]
    pub ending: ledger::Ending,
    /// The GitOps source file, to find the commit that introduced the new image.
    #[serde(default)]
    pub source_path: Option<String>,
    /// Instead of a ledger record: a revert of the GitOps source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revert: Option<RevertWork>,
}

/// A revert of the image in the GitOps source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevertWork {
    /// The source file (`spec.gitops.path`).
    pub path: String,
    /// `spec.gitops.imagePath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_path: Option<String>,
    /// `(failed image, promoted image)` pairs.
    pub images: Vec<(String, String)>,
    /// Push to this branch (mode `branch`) instead of the repository's branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_branch: Option<String>,
    /// Why it was rolled back.
    pub reason: String,
}

impl QueuedRecord {
    /// The commit message, with trailers.
    pub fn message(&self) -> String {
        if let Some(r) = &self.revert {
            let short: String = self.seed.revision.chars().take(12).collect();
            let pairs: Vec<String> = r
                .images
                .iter()
                .map(|(from, to)| format!("{from} -> {to}"))
                .collect();
            return format!(
                "fledge: revert {}/{} to the last promoted image\n\nThe rollout of {} was rolled back: {}\n{}\n\nFledge-Canary: {}/{}\nFledge-Revision: {short}\nFledge-Result: rolled-back\n",
                self.namespace,
                self.canary,
                self.seed.new_images.join(", "),
                r.reason,
                pairs.join("\n"),
                self.namespace,
                self.canary
            );
        }
        let short: String = self.seed.revision.chars().take(12).collect();
        let what = match self.event.event.as_str() {
            "Started" => "rollout started".to_string(),
            "Promoted" => "promoted".to_string(),
            "RolledBack" => "rolled back".to_string(),
            other => other.to_lowercase(),
        };
        let mut m = format!(
            "fledge: {}/{} {what} ({})\n\n",
            self.namespace,
            self.canary,
            self.seed.new_images.join(", ")
        );
        for r in &self.event.reasons {
            m.push_str(&format!("- {r}\n"));
        }
        if !self.event.reasons.is_empty() {
            m.push('\n');
        }
        m.push_str(&format!(
            "Fledge-Canary: {}/{}\nFledge-Revision: {short}\n",
            self.namespace, self.canary
        ));
        if let Some(result) = RolloutRecord::result_of(&self.event.event) {
            m.push_str(&format!("Fledge-Result: {result}\n"));
        }
        m
    }
}

/// 16 hex digits of the SHA-256 of `parts` (each followed by a NUL, so that no two lists of
/// parts run together the same way).
pub fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
