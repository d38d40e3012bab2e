//! The API server's audit log files. Only the standard library: the end-to-end harness
//! (`tests/src/lib.rs`) compiles this file into its own crate too, as it cannot depend on xtask
//! (a binary).

use std::path::{Path, PathBuf};

/// The audit log files in the cluster's `run` directory, oldest first: the ones the API server
/// rotated out (`audit-<time>.log`; 100 MB each, ten kept), then the one it writes
/// (`audit.log`, whose policy is `components::AUDIT_POLICY`).
pub fn audit_log_files(run: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(run)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.push(run.join("audit.log"));
    files
}
