//! Reports (Events, chat alerts, event webhooks) already made from a decision whose status write
//! did not land for certain.
//!
//! A plan's reports go out before its status is written. When that write fails, the next
//! reconcile may decide again from the very same Canary version: the write was refused, or its
//! answer was lost after the API server stored it and the cache has not caught up yet. The same
//! version gives the same decision, and without this memory its reports would be made twice (an
//! Event becoming a series of two, a second chat alert). So the reports made from a version are
//! remembered until a status write over that Canary succeeds, and a decision from the same
//! version skips the reports it already made. Decisions from any other version report as usual,
//! and nothing is remembered for a plan whose status was written, so a report that is meant to
//! repeat (a gate still waiting at the next interval) still does.
//!
//! Whether such a plan changed the cluster before it failed is remembered too: the routes it
//! set may then differ from the status, which still records the routes before it. The decision
//! from the same version must be taken again, not taken for drift and undone
//! ([`Said::acted`]).

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use fledge_core::Action;

/// What identifies one report: a hash of the report's identity as the engine gives it
/// ([`Action::report_identity`]).
pub fn key(action: &Action) -> u64 {
    let mut h = DefaultHasher::new();
    // Every action serializes (the engine's plans are data); Debug would do too, but the JSON
    // form is the one documented and stable across the fields' order in memory.
    let identity = action.report_identity();
    serde_json::to_string(&*identity)
        .unwrap_or_else(|_| format!("{identity:?}"))
        .hash(&mut h);
    h.finish()
}

/// What a decision from one version of a Canary did before its status write failed.
#[derive(Default)]
struct Unconfirmed {
    /// The Canary's resourceVersion decided from.
    rv: String,
    /// The reports made.
    made: HashSet<u64>,
    /// Whether a cluster action ran.
    acted: bool,
}

/// Per Canary uid: what the last decision whose status was not written did.
#[derive(Default)]
pub struct Said {
    unconfirmed: Mutex<HashMap<String, Unconfirmed>>,
}

impl Said {
    /// The reports already made from this version of the Canary (`uid`, `rv`).
    pub fn before(&self, uid: &str, rv: &str) -> HashSet<u64> {
        match self.lock().get(uid) {
            Some(u) if u.rv == rv => u.made.clone(),
            _ => HashSet::new(),
        }
    }

    /// Whether a decision from this version of the Canary changed the cluster and its status
    /// was not written: the routing objects may already give what it decided.
    pub fn acted(&self, uid: &str, rv: &str) -> bool {
        self.lock().get(uid).is_some_and(|u| u.rv == rv && u.acted)
    }

    /// The status decided from `rv` was not written (or not for certain): remember the reports
    /// made from it, with those made from it before, and whether it ran a cluster action.
    pub fn unconfirmed(
        &self,
        uid: &str,
        rv: &str,
        made: impl IntoIterator<Item = u64>,
        acted: bool,
    ) {
        let mut map = self.lock();
        let entry = map.entry(uid.to_string()).or_default();
        if entry.rv != rv {
            *entry = Unconfirmed {
                rv: rv.to_string(),
                ..Unconfirmed::default()
            };
        }
        entry.made.extend(made);
        entry.acted |= acted;
        if entry.made.is_empty() && !entry.acted {
            map.remove(uid);
        }
    }

    /// A status write over this Canary succeeded: its next decision is from a new version.
    pub fn confirmed(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// How many Canaries have reports remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Unconfirmed>> {
        self.unconfirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str) -> Action {
        Action::RecordEvent {
            warning: false,
            reason: reason.into(),
            message: format!("{reason} podinfo.shop"),
        }
    }

    #[test]
    fn a_report_is_one_key_and_another_report_another() {
        assert_eq!(key(&event("NewRevision")), key(&event("NewRevision")));
        assert_ne!(key(&event("NewRevision")), key(&event("Promoting")));
        let warning = Action::RecordEvent {
            warning: true,
            reason: "NewRevision".into(),
            message: "NewRevision podinfo.shop".into(),
        };
        assert_ne!(key(&event("NewRevision")), key(&warning));
    }

    #[test]
    fn an_alert_is_the_same_report_whatever_time_its_text_counts() {
        let promoted = |text: &str| Action::Notify {
            severity: fledge_core::Severity::Info,
            kind: fledge_core::NotifyKind::Promoted,
            message: text.into(),
            to: vec![],
        };
        let a = promoted(
            "Canary analysis of podinfo completed successfully, promotion finished in 1m14s.",
        );
        let b = promoted(
            "Canary analysis of podinfo completed successfully, promotion finished in 1m15s.",
        );
        assert_eq!(key(&a), key(&b));
        let rolled_back = Action::Notify {
            severity: fledge_core::Severity::Error,
            kind: fledge_core::NotifyKind::RolledBack,
            message: "x".into(),
            to: vec![],
        };
        assert_ne!(key(&a), key(&rolled_back));
    }

    #[test]
    fn reports_from_a_version_whose_write_failed_are_not_made_again_from_it() {
        let said = Said::default();
        assert!(said.before("uid-1", "10").is_empty());
        // Decided from version 10, said NewRevision, the status write's answer was lost.
        said.unconfirmed("uid-1", "10", [key(&event("NewRevision"))], false);
        let before = said.before("uid-1", "10");
        assert!(before.contains(&key(&event("NewRevision"))));
        // Another Canary, or a newer version of this one, reports as usual.
        assert!(said.before("uid-2", "10").is_empty());
        assert!(said.before("uid-1", "11").is_empty());
        // A second failure from the same version keeps what the first made.
        said.unconfirmed("uid-1", "10", [key(&event("Other"))], false);
        assert_eq!(said.before("uid-1", "10").len(), 2);
        // A failure from a newer version replaces the older one's.
        said.unconfirmed("uid-1", "12", [key(&event("Promoting"))], false);
        assert!(said.before("uid-1", "10").is_empty());
        assert_eq!(said.before("uid-1", "12").len(), 1);
        // A write that lands forgets it all.
        said.confirmed("uid-1");
        assert!(said.before("uid-1", "12").is_empty());
        assert!(said.is_empty());
    }

    #[test]
    fn a_failure_with_nothing_said_or_done_remembers_nothing() {
        let said = Said::default();
        said.unconfirmed("uid-1", "10", [], false);
        assert!(said.is_empty());
        assert!(!said.acted("uid-1", "10"));
    }

    #[test]
    fn a_failure_after_a_cluster_action_is_remembered_for_its_version() {
        let said = Said::default();
        said.unconfirmed("uid-1", "10", [], true);
        assert!(said.acted("uid-1", "10"));
        assert!(!said.acted("uid-1", "11"));
        assert!(!said.acted("uid-2", "10"));
        // A second failure from the same version that did nothing keeps it.
        said.unconfirmed("uid-1", "10", [key(&event("Promoting"))], false);
        assert!(said.acted("uid-1", "10"));
        said.confirmed("uid-1");
        assert!(!said.acted("uid-1", "10"));
    }
}
