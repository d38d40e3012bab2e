//! What the adapter observed this reconcile: the inputs of [`crate::plan`].
//!
//! The adapter fills the cheap part first (time, workloads, deletion, rollout slot), asks
//! [`crate::needs`] which costly results the engine will read (gating webhooks, metric
//! queries), gathers only those, and then calls [`crate::plan`].

use std::collections::BTreeMap;

use fledge_api::HookType;
use jiff::Timestamp;

/// Everything the engine may look at besides the spec and the status.
#[derive(Clone, Debug, PartialEq)]
pub struct Observations {
    /// The time of this reconcile. The engine stores times with whole-second precision.
    pub now: Timestamp,
    /// `metadata.generation` of the Canary, when known; copied to `status.observedGeneration`.
    /// A change after initialization makes the engine re-apply the Services and router objects.
    pub generation: Option<i64>,
    /// The Canary has a deletion timestamp.
    pub deleting: bool,
    /// The cluster-wide limit on rollouts in progress (`--max-concurrent-rollouts`) and the
    /// other Canaries' slot state; the engine decides whether this Canary may start a rollout
    /// and in which order waiters go ([`crate::slots`]).
    pub rollout_slots: crate::slots::RolloutSlots,
    /// The target workload (`spec.targetRef`), or `None` when it does not exist.
    pub target: Option<TargetObservation>,
    /// A StatefulSet target's `spec.replicas`: the pods `analysis.stepReplicas` counts in
    /// (`None` for other targets, or when unknown).
    pub statefulset_replicas: Option<i32>,
    /// The primary workload (`<target>-primary`), or `None` when it does not exist.
    pub primary: Option<Readiness>,
    /// Results of the gating webhooks called this reconcile (only the types [`crate::needs`]
    /// asked for; a declared webhook without a result counts as not passed).
    pub webhooks: Vec<WebhookResult>,
    /// Results of the metric checks run this reconcile (only when [`crate::needs`] asked for
    /// them; a declared metric without a result is a failed check).
    pub metrics: Vec<MetricResult>,
    /// What the Git ledger says about this Canary (only when [`crate::needs`] asked for it:
    /// a Canary with `spec.gitops` whose primary does not exist yet, e.g. on a rebuilt cluster).
    pub ledger: LedgerView,
    /// The routes the routing objects give, read back from the cluster (only when
    /// [`crate::needs`] asked for them: [`crate::Needs::routes`]).
    pub routes: RoutesView,
    /// This Canary's records waiting to be written to Git, as the adapter's Git worker last
    /// saw them (`None`: unknown, or the Canary has no `spec.gitops`). Sets `GitSynced`.
    pub git_queue: Option<GitQueue>,
    /// What blocks this Canary: a failure of this reconcile that will not go away by itself
    /// (an invalid target, a missing CRD, an object the API server refused), as the adapter
    /// classified it. When set, the engine decides nothing else: it reports the block
    /// (`Ready=False` naming the fix, one warning Event and one alert when that report is new)
    /// and leaves the rest of the status as it was, so the same decision is taken again once
    /// the cause is gone.
    pub blocked: Option<Blocker>,
    /// `metadata.name` of the Canary, for the names the engine gives (a revert branch).
    pub canary_name: String,
    /// The images of the target's and the primary's containers (what a Git revert puts back).
    pub images: ContainerImages,
    /// The lowest severity of the controller's default alert provider (`--alert-*` flags), which
    /// serves Canaries that declare no alerts; `None`: there is none.
    pub default_alert_severity: Option<crate::action::Severity>,
    /// The Canary's namespace when the controller refuses references to other namespaces
    /// (`--no-cross-namespace-refs`): a MetricTemplate or AlertProvider elsewhere then makes the
    /// spec invalid. `None`: such references are allowed.
    pub confined_to_namespace: Option<String>,
}

/// A Canary's records in the Git queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitQueue {
    /// Records waiting.
    pub pending: usize,
    /// When the oldest waiting record happened.
    pub oldest: Option<Timestamp>,
    /// Why the last write failed, when it did.
    pub error: Option<GitWriteError>,
    /// Records waiting longer than this raise an alert (`--git-queue-alert-after`).
    pub alert_after: std::time::Duration,
}

/// Why writing to Git failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitWriteError {
    /// A condition reason: `GitUnreachable`, `GitAuthFailed`, `GitRejected`, `GitWriteFailed`.
    pub reason: String,
    /// What went wrong, for people (no secret material).
    pub message: String,
}

impl Observations {
    /// Observations at `now` with nothing found: no target, no primary, no results, no limit
    /// on rollouts. Fill in the rest with struct update syntax.
    pub fn at(now: Timestamp) -> Self {
        Observations {
            now,
            generation: None,
            deleting: false,
            rollout_slots: crate::slots::RolloutSlots::unlimited(),
            target: None,
            statefulset_replicas: None,
            primary: None,
            webhooks: Vec::new(),
            metrics: Vec::new(),
            ledger: LedgerView::NotRead,
            routes: RoutesView::NotRead,
            git_queue: None,
            blocked: None,
            canary_name: String::new(),
            images: ContainerImages::default(),
            default_alert_severity: None,
            confined_to_namespace: None,
        }
    }
}

/// A failure that only a person can fix, as the adapter observed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// What kind of failure.
    pub kind: BlockerKind,
    /// What failed, for people (no secret material).
    pub message: String,
}

/// Kinds of [`Blocker`], each with its own fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockerKind {
    /// The target workload cannot be used as it is (missing, no usable selector label).
    InvalidTarget,
    /// The spec asks for something that cannot be done (e.g. a provider that cannot route
    /// as asked).
    InvalidSpec,
    /// An API the Canary needs is not served: its CRD is missing, or the API server answered
    /// 404 for the kind.
    ApiNotServed,
    /// The API server refused fledge's request for want of permission (403).
    Forbidden,
    /// The API server refused an object fledge built from the spec (400, 422).
    Refused,
}

impl BlockerKind {
    /// The condition and Event reason.
    pub fn reason(self) -> &'static str {
        match self {
            BlockerKind::InvalidTarget => "InvalidTarget",
            BlockerKind::InvalidSpec => "InvalidSpec",
            BlockerKind::ApiNotServed => "ApiNotServed",
            BlockerKind::Forbidden => "Forbidden",
            // The refused object was built from the spec: only a change of the spec fixes it,
            // as for any other invalid spec.
            BlockerKind::Refused => "InvalidSpec",
        }
    }

    /// What a person does about it.
    pub fn fix(self) -> &'static str {
        match self {
            BlockerKind::InvalidTarget => {
                "fix the target workload named by spec.targetRef (it must exist and carry the \
                 selector label), or point spec.targetRef at another one"
            }
            BlockerKind::InvalidSpec => "change the Canary's spec",
            BlockerKind::ApiNotServed => {
                "install the CRD of the API named above, or choose another spec.provider"
            }
            BlockerKind::Forbidden => {
                "grant fledge's ServiceAccount the permission named above (its ClusterRole)"
            }
            BlockerKind::Refused => {
                "change the Canary's spec fields the refused object is built from"
            }
        }
    }
}

/// The Git ledger's view of one Canary, read by the adapter from `spec.gitops`'s ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LedgerView {
    /// Not read (not asked for, or the Canary has no `spec.gitops`).
    #[default]
    NotRead,
    /// The revisions of this Canary the ledger records as promoted, newest first (empty when
    /// the ledger has none).
    Read(Vec<fledge_api::LedgerRevision>),
    /// The ledger could not be read; why, for people (no secret material).
    Unreadable(String),
}

/// The images of the workloads' containers, by container name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerImages {
    /// The target's (the revision under test), `(container, image)`.
    pub target: Vec<(String, String)>,
    /// The primary's (the promoted revision), `(container, image)`.
    pub primary: Vec<(String, String)>,
}

/// The routes as read back from the routing objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RoutesView {
    /// Not read (not asked for, or the adapter could not say).
    #[default]
    NotRead,
    /// The routing objects exist and give these routes.
    Found(crate::action::Routes),
    /// The routing object (or, for the `kubernetes` provider, the apex Service) is gone.
    Missing,
    /// Reading failed; why, for the log (no secret material).
    Unreadable(String),
}

/// The target workload as observed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetObservation {
    /// Hash of the target's pod template spec, computed by the adapter (stable across
    /// reconciles and controller restarts; compared with `status.lastAppliedSpec`).
    pub spec_hash: String,
    /// Checksums of the ConfigMaps and Secrets the pod template references, keyed
    /// `ConfigMap/<name>` or `Secret/<name>` (compared with `status.trackedConfigs`).
    pub tracked_configs: BTreeMap<String, String>,
    /// Readiness of the target (the canary during a rollout).
    pub readiness: Readiness,
}

/// Readiness of a Deployment or DaemonSet, from its spec and status.
///
/// For a Deployment: `desired` = `spec.replicas`, `current` = `status.replicas`, `updated` =
/// `status.updatedReplicas`, `available` = `status.availableReplicas`. For a DaemonSet:
/// `desiredNumberScheduled`, `currentNumberScheduled`, `updatedNumberScheduled`,
/// `numberAvailable`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// `status.observedGeneration >= metadata.generation`: the workload controller has seen the
    /// latest spec. Without it the other counts may describe the previous template.
    pub generation_observed: bool,
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas that exist (old and new).
    pub current: i32,
    /// Replicas running the latest template.
    pub updated: i32,
    /// Replicas available.
    pub available: i32,
}

impl Readiness {
    /// A workload with `n` replicas, all updated and available.
    pub fn ready(n: i32) -> Self {
        Readiness {
            generation_observed: true,
            desired: n,
            current: n,
            updated: n,
            available: n,
        }
    }

    /// Whether the workload is ready by Flagger's rule, with `threshold` the percent of
    /// replicas that must be available (clamped to 0..=100). `Err` says why not, for people.
    ///
    /// Ready means: the latest generation is observed, every replica is updated, no old
    /// replica is left, and `available >= floor(desired * threshold / 100)`.
    pub fn check(&self, threshold: i32) -> Result<(), String> {
        let threshold = i64::from(threshold.clamp(0, 100));
        let desired = i64::from(self.desired.max(0));
        let needed = desired * threshold / 100;
        if !self.generation_observed {
            Err("waiting for the workload controller to observe the latest generation".into())
        } else if i64::from(self.updated) < desired {
            Err(format!(
                "waiting for rollout to finish: {} of {} replicas updated",
                self.updated.max(0),
                desired
            ))
        } else if i64::from(self.current) > i64::from(self.updated.max(0)) {
            Err(format!(
                "waiting for rollout to finish: {} old replicas pending termination",
                i64::from(self.current) - i64::from(self.updated.max(0))
            ))
        } else if i64::from(self.available) < needed {
            Err(format!(
                "{} of {} replicas available (readiness threshold {}%)",
                self.available.max(0),
                desired,
                threshold
            ))
        } else {
            Ok(())
        }
    }
}

/// The answer of one gating webhook called this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookResult {
    /// The webhook's type.
    pub hook: HookType,
    /// The webhook's `name` in the spec.
    pub name: String,
    /// The call succeeded (HTTP 2xx within the timeout and retries). For `rollback` webhooks,
    /// `true` asks for a rollback.
    pub passed: bool,
    /// The answer or the error, for people (must not contain secrets such as URLs with keys).
    pub message: String,
}

/// The result of one metric check run this reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricResult {
    /// The metric's `name` in `spec.analysis.metrics`.
    pub name: String,
    /// What the query gave.
    pub outcome: MetricOutcome,
}

/// What a metric query gave. Only a finite value inside the metric's range passes.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricOutcome {
    /// One number (may be NaN or infinite, which never pass).
    Value(f64),
    /// The query returned no series (often: no traffic reached the canary).
    NoData,
    /// The metrics provider could not be reached; the message says why.
    ProviderUnreachable(String),
    /// The query failed (bad query, bad template, provider error); the message says why.
    Error(String),
    /// A statistically judged metric (`judge` set): every value the range query gave over the
    /// step's interval for the baseline's pods and for the canary's.
    Samples {
        /// The baseline's values.
        baseline: Vec<f64>,
        /// The canary's values.
        canary: Vec<f64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(observed: bool, desired: i32, current: i32, updated: i32, available: i32) -> Readiness {
        Readiness {
            generation_observed: observed,
            desired,
            current,
            updated,
            available,
        }
    }

    #[test]
    fn readiness_follows_flaggers_rule() {
        assert_eq!(Readiness::ready(3).check(100), Ok(()));
        assert_eq!(r(true, 0, 0, 0, 0).check(100), Ok(()));
        let cases = [
            (r(false, 3, 3, 3, 3), 100, "observe the latest generation"),
            (r(true, 3, 3, 2, 2), 100, "2 of 3 replicas updated"),
            (
                r(true, 3, 4, 3, 3),
                100,
                "1 old replicas pending termination",
            ),
            (
                r(true, 3, 3, 3, 2),
                100,
                "2 of 3 replicas available (readiness threshold 100%)",
            ),
        ];
        for (readiness, threshold, words) in cases {
            let err = readiness.check(threshold).unwrap_err();
            assert!(err.contains(words), "{err}");
        }
    }

    #[test]
    fn the_threshold_is_a_floored_percentage_of_desired_replicas() {
        // 50% of 3 is 1.5, floored to 1 as in Flagger.
        assert_eq!(r(true, 3, 3, 3, 1).check(50), Ok(()));
        assert!(r(true, 3, 3, 3, 0).check(50).is_err());
        assert!(r(true, 4, 4, 4, 1).check(50).is_err());
        assert_eq!(r(true, 4, 4, 4, 2).check(50), Ok(()));
        // Out-of-range thresholds are clamped; nonsense counts are not ready, and never panic.
        assert_eq!(r(true, 4, 4, 4, 0).check(-10), Ok(()));
        assert!(r(true, 4, 4, 4, 3).check(1000).is_err());
        assert!(
            r(true, i32::MAX, i32::MAX, i32::MAX, i32::MIN)
                .check(100)
                .is_err()
        );
        assert!(
            r(true, i32::MIN, i32::MIN, i32::MIN, i32::MIN)
                .check(100)
                .is_err()
        );
    }
}
