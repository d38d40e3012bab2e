//! Has the target changed? (Flagger's `HasTargetChanged` and `HaveDependenciesChanged`.)

use std::collections::BTreeMap;

use fledge_api::CanaryStatus;

use crate::observe::TargetObservation;

/// How the target compares with what the status remembers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// Same pod template and tracked configs as the revision last applied.
    None,
    /// Different from the revision last applied, but the same as the one the primary runs.
    BackToPrimary,
    /// A revision that was never analysed.
    NewRevision,
}

/// Compares the target with `lastAppliedSpec`/`trackedConfigs` and with the promoted revision.
pub(super) fn detect(status: &CanaryStatus, target: &TargetObservation) -> Change {
    let hash = Some(target.spec_hash.as_str());
    let configs = &target.tracked_configs;
    if status.last_applied_spec.as_deref() == hash
        && same_configs(status.tracked_configs.as_ref(), configs)
    {
        Change::None
    } else if status.last_promoted_spec.as_deref() == hash
        && same_configs(status.last_promoted_configs.as_ref(), configs)
    {
        Change::BackToPrimary
    } else {
        Change::NewRevision
    }
}

fn same_configs(stored: Option<&BTreeMap<String, String>>, now: &BTreeMap<String, String>) -> bool {
    match stored {
        Some(s) => s == now,
        None => now.is_empty(),
    }
}
