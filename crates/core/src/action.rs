//! What the engine decided: the actions of a [`crate::Plan`], as data.

use std::collections::BTreeSet;
use std::time::Duration;

use fledge_api::{CanaryPhase, HookType};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One thing for the adapter to do. The adapter executes a plan's actions in order, then writes
/// the plan's status.
///
/// The engine orders every plan the same way: workload and traffic changes
/// ([`ActionClass::Cluster`]) first, then reports ([`ActionClass::Report`]), then exactly one
/// [`Action::RequeueAfter`] last. A suggested adapter policy: stop at the first failed cluster
/// action and retry the reconcile with backoff without writing the status (the same plan comes
/// again, and every cluster action is idempotent); log a failed report and go on.
///
/// In JSON (for logs and fixtures) an action reads `{"action": "setWeights", "args": {...}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "action", content = "args")]
pub enum Action {
    /// Create `<target>-primary` from the target if it does not exist (same spec, labels
    /// rewritten to the primary's, replicas of the target, autoscaler copied). An existing
    /// primary's pod template is never changed by this action: only [`Action::PromotePrimary`]
    /// does that.
    EnsurePrimary,
    /// Like [`Action::EnsurePrimary`], but the primary is created on the images of a revision
    /// promoted before (the Git ledger's last promoted revision, on a rebuilt cluster): each
    /// container whose image has the same repository (the reference without its tag or digest)
    /// as one of `images` runs that image instead of the target's.
    EnsurePrimaryFrom {
        /// The promoted revision's spec hash (for messages and logs).
        revision: String,
        /// Its images.
        images: Vec<String>,
    },
    /// Create or update the apex, primary and canary Services and the router's objects from
    /// `spec.service` (and the A/B `match`). Routes that exist keep their weights: a
    /// [`Action::SetWeights`] follows whenever the weights must change.
    EnsureServices {
        /// Which pods the apex Service selects, from the routes of the plan's next status.
        apex: ApexSelects,
    },
    /// Route traffic between the primary and the canary. For a StatefulSet target the routes
    /// are the router's only (its pods follow [`Action::SetPartition`]); with the `kubernetes`
    /// provider they are the pods' shares and nothing is routed.
    SetWeights(Routes),
    /// Scale the target (the canary) workload.
    ScaleCanary(CanaryScale),
    /// `spec.analysis.judge` with a fresh baseline, as the canary scales up: create (or bring
    /// back) `<target>-baseline`, a Deployment with the primary's pod template, labelled as the
    /// primary's pods (so the primary Service sends it its share of traffic) plus
    /// `fledge.dev/baseline`, with the canary's replica count, owned by the Canary.
    EnsureBaseline,
    /// As the canary scales down: delete `<target>-baseline` (nothing happens when it does not
    /// exist).
    RemoveBaseline,
    /// Copy the target's pod template, and the tracked ConfigMaps and Secrets it references, to
    /// the primary. `revision` is the target spec hash the engine analysed: if the target no
    /// longer has it, the adapter must not copy (the next reconcile restarts the analysis).
    PromotePrimary {
        /// Target spec hash expected.
        revision: String,
    },
    /// A StatefulSet target rolling out: the pods of `weight` percent of its replicas (rounded
    /// to the nearest pod, at least one above 0) must run the revision under test, the highest
    /// ordinals first: the partition is lowered to give them, never raised (pods that moved
    /// stay until promotion or rollback). Planned at every step of a rollout; for a
    /// StatefulSet behind a router, one step ahead of the routes.
    SetPartition {
        /// Percent of the replicas.
        weight: i32,
    },
    /// A StatefulSet target's rollback: put its pod template back to the promoted revision
    /// (the StatefulSet's `status.currentRevision`) and leave the partition where it is, so
    /// that the StatefulSet controller moves the pods at or above it, those that ran the
    /// failed revision, back; no volume is touched. `revision` is the target spec hash that
    /// failed: a target that no longer has it (already reverted, or changed again) is left
    /// alone. Once every pod runs one revision, the adapter holds the partition at the replica
    /// count again, as it does between rollouts.
    RollBackTarget {
        /// Target spec hash that failed.
        revision: String,
    },
    /// Deletion with `revertOnDeletion`: scale the target back up to the primary's replicas so
    /// that it can serve again once the Canary is gone.
    RestoreTarget,
    /// Deletion with `revertOnDeletion`, once the target is ready: point the apex Service at the
    /// target's pods and remove the router objects fledge generated.
    FinalizeRouting,
    /// Deletion is done (`Terminated`): drop fledge's finalizer so that the API server deletes
    /// the Canary. Executed once the status is written.
    RemoveFinalizer,
    /// Call every webhook of a fire-and-forget type (`post-rollout`, `event`) with Flagger's
    /// payload; failures are logged, not retried by the engine.
    CallWebhooks {
        /// The webhooks' type.
        hook: HookType,
        /// The phase sent in the payload.
        phase: CanaryPhase,
        /// For `event` webhooks, the event's message (`metadata.eventMessage`).
        message: String,
    },
    /// Send a chat alert to `to`: the entries of `spec.analysis.alerts` whose severity it
    /// meets, or the controller's default provider (see [`crate::alerts`]). With `to` empty
    /// nothing is sent. An alert the Canary sent within the hour does not come again.
    Notify {
        /// How bad it is.
        severity: Severity,
        /// What it is about.
        kind: NotifyKind,
        /// The text.
        message: String,
        /// Where it goes.
        #[serde(default)]
        to: Vec<crate::alerts::AlertTarget>,
    },
    /// Record a Kubernetes Event on the Canary.
    RecordEvent {
        /// `Warning` rather than `Normal`.
        warning: bool,
        /// One word in CamelCase.
        reason: String,
        /// What happened, for people.
        message: String,
    },
    /// Append a record to the Git ledger.
    RecordLedger(LedgerEntry),
    /// Rollback of a Canary whose `spec.gitops` reverts (a `path`, `revertOnRollback` not
    /// false): revert the target's revision in the GitOps source, so that Git no longer points
    /// at the version that failed.
    RevertInGit {
        /// The target spec hash that failed.
        revision: String,
        /// Why it was rolled back.
        reason: String,
        /// What to put back: each container's failed image, and the primary's (promoted) one.
        images: Vec<ImageRevert>,
        /// `spec.gitops.mode: branch`: the branch to push the revert to (for a pull request)
        /// instead of the tracked one.
        branch: Option<String>,
    },
    /// Reconcile again after this long (the last action of every plan).
    RequeueAfter(Duration),
}

/// Whether an action changes the cluster, reports, or schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionClass {
    /// Changes workloads or traffic; idempotent; a failure should stop the plan.
    Cluster,
    /// Events, alerts, webhooks, ledger, Git revert: reports about a decision.
    Report,
    /// [`Action::RequeueAfter`].
    Schedule,
    /// [`Action::RemoveFinalizer`]: the last thing done for a Canary, after its status is
    /// written.
    Release,
}

impl Action {
    /// The report as it is identified: the same decision taken again a moment later (its status
    /// write was cut) makes the same report. A chat alert's text may count time ("promotion
    /// finished in 1m14s"), so an alert is identified by its severity, kind and receivers.
    pub fn report_identity(&self) -> std::borrow::Cow<'_, Action> {
        match self {
            Action::Notify {
                severity, kind, to, ..
            } => std::borrow::Cow::Owned(Action::Notify {
                severity: *severity,
                kind: *kind,
                message: String::new(),
                to: to.clone(),
            }),
            other => std::borrow::Cow::Borrowed(other),
        }
    }

    /// Whether this action may change what a router reads back from its routing objects (or
    /// for the `kubernetes` provider the apex Service): the Services and the router's objects,
    /// the weights, and their release on deletion. The workload's own actions (scaling, copying
    /// the template, the partition, the baseline) touch no routing object, so a read of the
    /// routes taken before them still stands. (A Knative Service is its own routing object and
    /// its workload at once; the adapter counts its pinning of the primary as a routing write.)
    pub fn writes_routing(&self) -> bool {
        matches!(
            self,
            Action::EnsureServices { .. } | Action::SetWeights(_) | Action::FinalizeRouting
        )
    }

    /// The class of this action.
    pub fn class(&self) -> ActionClass {
        match self {
            Action::EnsurePrimary
            | Action::EnsurePrimaryFrom { .. }
            | Action::EnsureServices { .. }
            | Action::SetWeights(_)
            | Action::ScaleCanary(_)
            | Action::EnsureBaseline
            | Action::RemoveBaseline
            | Action::PromotePrimary { .. }
            | Action::RollBackTarget { .. }
            | Action::SetPartition { .. }
            | Action::RestoreTarget
            | Action::FinalizeRouting => ActionClass::Cluster,
            Action::CallWebhooks { .. }
            | Action::Notify { .. }
            | Action::RecordEvent { .. }
            | Action::RecordLedger(_)
            | Action::RevertInGit { .. } => ActionClass::Report,
            Action::RequeueAfter(_) => ActionClass::Schedule,
            Action::RemoveFinalizer => ActionClass::Release,
        }
    }
}

/// How traffic is split. Always `primary + canary == 100`, both within 0..=100.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Routes {
    /// Percent of requests answered by the primary.
    pub primary: i32,
    /// Percent of requests answered by the canary.
    pub canary: i32,
    /// Percent of requests copied to the canary while the primary answers them (responses of
    /// the canary are discarded); `None`: no mirroring.
    pub mirror: Option<i32>,
    /// A/B testing: requests matching `spec.analysis.match` all go to the canary; the others
    /// follow the weights above.
    pub ab_match: bool,
}

impl Routes {
    /// Everything to the primary, nothing mirrored, no match routing.
    pub const PRIMARY: Routes = Routes {
        primary: 100,
        canary: 0,
        mirror: None,
        ab_match: false,
    };

    /// `canary` percent to the canary (clamped to 0..=100), the rest to the primary.
    pub fn weighted(canary: i32) -> Routes {
        let canary = canary.clamp(0, 100);
        Routes {
            primary: 100 - canary,
            canary,
            mirror: None,
            ab_match: false,
        }
    }
}

/// One image a Git revert puts back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRevert {
    /// The image that failed (the target's).
    pub from: String,
    /// The image to put back (the primary's, last promoted).
    pub to: String,
}

/// Which pods the apex Service (the one clients call) selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ApexSelects {
    /// The primary's pods: the steady state, and always with a provider that routes by weight
    /// (the apex Service is then only the entry point, the router splits behind it).
    #[default]
    Primary,
    /// The canary's pods: the `kubernetes` provider (blue/green by switching the apex
    /// Service's selector) while all traffic goes to the canary.
    Canary,
}

impl ApexSelects {
    /// The apex selector of a Canary whose provider is `provider` when traffic follows
    /// `routes`. Only the `kubernetes` provider switches the apex Service itself, and only at
    /// 100% to the canary with nothing mirrored.
    pub fn for_routes(provider: &str, routes: &Routes) -> ApexSelects {
        if provider == "kubernetes" && routes.canary == 100 && routes.mirror.unwrap_or(0) == 0 {
            ApexSelects::Canary
        } else {
            ApexSelects::Primary
        }
    }
}

/// Target size of the canary (the target workload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CanaryScale {
    /// Scale to zero replicas.
    Zero,
    /// Scale up from zero to the primary's replica count (or the autoscaler's minimum).
    MatchPrimary,
}

/// Severity of a chat alert, as in Flagger's `alerts[].severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Progress worth knowing.
    Info,
    /// Something held the rollout up.
    Warn,
    /// A rollout failed or cannot run.
    Error,
}

impl Severity {
    /// The name users write in `alerts[].severity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }

    /// Reads `info`, `warn` or `error` (an empty string is `info`, the default).
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "" | "info" => Some(Severity::Info),
            "warn" => Some(Severity::Warn),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

/// What a chat alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NotifyKind {
    /// The primary and the routes were created.
    Initialized,
    /// A new revision is being rolled out (or the analysis restarted for a newer one).
    NewRevision,
    /// A gate holds the rollout (confirm-rollout, confirm-promotion) or it waits for a slot.
    Waiting,
    /// An analysis step failed.
    CheckFailed,
    /// The revision was promoted.
    Promoted,
    /// The revision was rolled back.
    RolledBack,
    /// The spec is invalid or its target is missing; nothing moves until it is fixed.
    Blocked,
    /// Traffic moved one step towards the canary (a weight, a mirror step or an iteration).
    /// Chat providers leave it out unless asked for (`AlertProvider.spec.trafficSteps`).
    TrafficStep,
    /// `spec.suspend` halted the Canary: nothing moves until it is resumed.
    Halted,
    /// The Canary was resumed after `spec.suspend`.
    Resumed,
    /// A workload did not become ready within `progressDeadlineSeconds`.
    DeadlineExceeded,
}

impl NotifyKind {
    /// Every kind, in the order of a rollout's life.
    pub const ALL: [NotifyKind; 11] = [
        NotifyKind::Initialized,
        NotifyKind::NewRevision,
        NotifyKind::Waiting,
        NotifyKind::TrafficStep,
        NotifyKind::CheckFailed,
        NotifyKind::Halted,
        NotifyKind::Resumed,
        NotifyKind::Promoted,
        NotifyKind::RolledBack,
        NotifyKind::DeadlineExceeded,
        NotifyKind::Blocked,
    ];

    /// A short title for people ("Rolled back", "Waiting for approval", ...).
    pub fn title(self) -> &'static str {
        match self {
            NotifyKind::Initialized => "Initialized",
            NotifyKind::NewRevision => "New revision, analysis started",
            NotifyKind::Waiting => "Waiting",
            NotifyKind::CheckFailed => "Check failed",
            NotifyKind::Promoted => "Promoted",
            NotifyKind::RolledBack => "Rolled back",
            NotifyKind::Blocked => "Action required",
            NotifyKind::TrafficStep => "Traffic step",
            NotifyKind::Halted => "Halted",
            NotifyKind::Resumed => "Resumed",
            NotifyKind::DeadlineExceeded => "Progress deadline exceeded",
        }
    }
}

/// A record for the Git ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// What happened.
    pub event: LedgerEvent,
    /// Target spec hash of the revision concerned.
    pub revision: String,
    /// Spec hash of the primary's revision at that moment, if any.
    pub primary_revision: Option<String>,
    /// When it happened.
    pub at: Timestamp,
    /// The Canary's phase after the event.
    pub phase: CanaryPhase,
    /// Canary weight when it happened (percent).
    pub canary_weight: i32,
    /// Failed checks of the rollout so far.
    pub failed_checks: i32,
    /// Why (failed checks, gate messages, ...), oldest first.
    pub reasons: Vec<String>,
}

/// The kinds of ledger records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LedgerEvent {
    /// The primary was created and serves all traffic.
    Initialized,
    /// A rollout of a new revision started.
    Started,
    /// A rollout ended with the revision promoted.
    Promoted,
    /// A rollout ended with the revision rolled back.
    RolledBack,
    /// A rollout ended because a newer revision replaced the one under test.
    Superseded,
    /// A rollout ended because the Canary was deleted.
    Aborted,
}

/// Which costly observations the engine will read this reconcile (see [`crate::needs`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Needs {
    /// Gating webhook types to call (every declared webhook of each type). Fire-and-forget
    /// types (`post-rollout`, `event`) never appear here: they come as actions.
    pub webhooks: BTreeSet<HookType>,
    /// Whether to run the metric checks of `spec.analysis.metrics`.
    pub metrics: bool,
    /// Whether to read the Git ledger ([`crate::Observations::ledger`]).
    #[serde(default)]
    pub ledger: bool,
    /// Whether to read the routes back from the routing objects
    /// ([`crate::Observations::routes`]), to find changes made outside fledge.
    #[serde(default)]
    pub routes: bool,
}

impl Needs {
    /// Nothing costly is needed.
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty() && !self.metrics && !self.ledger && !self.routes
    }

    /// Whether everything in `self` is also in `other`.
    pub fn is_subset(&self, other: &Needs) -> bool {
        self.webhooks.is_subset(&other.webhooks)
            && (!self.metrics || other.metrics)
            && (!self.ledger || other.ledger)
            && (!self.routes || other.routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_services_weights_and_release_write_routing_objects() {
        let writes = [
            Action::EnsureServices {
                apex: ApexSelects::Primary,
            },
            Action::SetWeights(Routes::weighted(0)),
            Action::FinalizeRouting,
        ];
        assert!(writes.iter().all(Action::writes_routing));
        let workload_only = [
            Action::EnsurePrimary,
            Action::EnsurePrimaryFrom {
                revision: "abc".into(),
                images: Vec::new(),
            },
            Action::ScaleCanary(CanaryScale::Zero),
            Action::EnsureBaseline,
            Action::RemoveBaseline,
            Action::PromotePrimary {
                revision: "abc".into(),
            },
            Action::SetPartition { weight: 10 },
            Action::RollBackTarget {
                revision: "abc".into(),
            },
            Action::RestoreTarget,
        ];
        assert!(workload_only.iter().all(|a| !a.writes_routing()));
        // Every action that writes routing objects is a cluster action.
        assert!(writes.iter().all(|a| a.class() == ActionClass::Cluster));
    }

    #[test]
    fn every_action_serializes_and_reads_back() {
        let actions = vec![
            Action::EnsurePrimary,
            Action::EnsurePrimaryFrom {
                revision: "abc".into(),
                images: vec!["app:1.0.0".into()],
            },
            Action::EnsureServices {
                apex: ApexSelects::Canary,
            },
            Action::SetWeights(Routes::weighted(30)),
            Action::ScaleCanary(CanaryScale::MatchPrimary),
            Action::PromotePrimary {
                revision: "abc".into(),
            },
            Action::RestoreTarget,
            Action::FinalizeRouting,
            Action::RemoveFinalizer,
            Action::CallWebhooks {
                hook: HookType::PostRollout,
                phase: CanaryPhase::Succeeded,
                message: String::new(),
            },
            Action::Notify {
                severity: Severity::Warn,
                kind: NotifyKind::CheckFailed,
                message: "m".into(),
                to: vec![crate::alerts::AlertTarget::Default],
            },
            Action::RecordEvent {
                warning: true,
                reason: "CheckFailed".into(),
                message: "m".into(),
            },
            Action::RecordLedger(LedgerEntry {
                event: LedgerEvent::RolledBack,
                revision: "abc".into(),
                primary_revision: None,
                at: Timestamp::UNIX_EPOCH,
                phase: CanaryPhase::Failed,
                canary_weight: 0,
                failed_checks: 2,
                reasons: vec!["r".into()],
            }),
            Action::RevertInGit {
                revision: "abc".into(),
                reason: "r".into(),
                images: vec![ImageRevert {
                    from: "app:2".into(),
                    to: "app:1".into(),
                }],
                branch: Some("fledge/revert-app-abc".into()),
            },
            Action::RequeueAfter(Duration::from_secs(60)),
        ];
        for a in actions {
            let json = serde_json::to_string(&a).expect("serialize");
            let back: Action = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, a, "{json}");
        }
        let json = serde_json::to_value(Action::SetWeights(Routes::weighted(30))).expect("json");
        assert_eq!(json["action"], "setWeights");
        assert_eq!(json["args"]["canary"], 30);
    }
}
