#![forbid(unsafe_code)]
//! The fledge rollout engine: pure functions from a Canary's spec, its status and what the
//! adapter observed to a [`Plan`]: the next status and the [`Action`]s to take.
//!
//! Nothing here performs I/O, sleeps, reads a clock or panics on user input. The adapter in
//! `fledge-controller` runs every reconcile the same way:
//!
//! 1. gather the cheap [`Observations`] (time, target, primary, deletion, rollout slots);
//! 2. ask [`needs`] which costly ones the engine will read (gating webhooks, metric queries)
//!    and gather only those into [`Observations::webhooks`] and [`Observations::metrics`];
//! 3. call [`plan`], execute [`Plan::actions`] in order, then write [`Plan::status`] to
//!    `.status`.
//!
//! The status is the engine's only memory: replaying [`plan`] with the status read back from
//! the API server continues exactly where it was, so a restarted controller never repeats a
//! traffic step and never skips one. Steps are due once per analysis interval, measured from
//! `status.rollout.lastStepTime`; a reconcile before that (a watch event, a restart) changes
//! nothing.
//!
//! The lifecycle follows Flagger: `Initializing` → `Initialized` → (new revision) `Waiting`? →
//! `Progressing` ⇄ `WaitingPromotion` → `Promoting` → `Finalising` → `Succeeded`, or `Failed`
//! on rollback; `Terminating` → `Terminated` on deletion.

mod action;
pub mod alerts;
mod checks;
pub mod conditions;
mod ctx;
pub mod drift;
pub mod egress;
mod gitsync;
pub mod judge;
mod observe;
mod phases;
pub mod replay;
pub mod requests;
pub mod shard;
#[cfg(feature = "sim")]
pub mod sim;
pub mod slots;
pub mod weights;

pub use action::{
    Action, ActionClass, ApexSelects, CanaryScale, ImageRevert, LedgerEntry, LedgerEvent, Needs,
    NotifyKind, Routes, Severity,
};
pub use checks::{
    Failure, RollbackRequest, check_metric, failures_of, gate_failures, metric_bounds,
    metric_checks, metric_failures, rollback_request,
};
pub use observe::{
    Blocker, BlockerKind, ContainerImages, GitQueue, GitWriteError, LedgerView, MetricOutcome,
    MetricResult, Observations, Readiness, RoutesView, TargetObservation, WebhookResult,
};

use fledge_api::{CanarySpec, CanaryStatus};

use ctx::{Cx, Inputs};

/// What the engine decided for one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The next status, to be written after the actions ran.
    pub status: CanaryStatus,
    /// What to do, in order; the last action is always [`Action::RequeueAfter`].
    pub actions: Vec<Action>,
    /// The costly observations the decision read: always within what [`needs`] asked for
    /// with the same spec, status and cheap observations (a useful assertion for the adapter).
    pub read: Needs,
}

impl Plan {
    /// The requeue delay of the plan.
    pub fn requeue_after(&self) -> Option<std::time::Duration> {
        self.actions.iter().rev().find_map(|a| match a {
            Action::RequeueAfter(d) => Some(*d),
            _ => None,
        })
    }
}

/// Decides the next status and actions. Pure and deterministic: the same inputs always give
/// the same plan.
pub fn plan(spec: &CanarySpec, status: &CanaryStatus, obs: &Observations) -> Plan {
    run(spec, status, obs, Inputs::Observed)
}

/// Which costly observations [`plan`] will read given these cheap ones: the gating webhook
/// types to call and whether to run the metric queries. `obs.webhooks` and `obs.metrics` are
/// ignored.
///
/// It follows the same decision as [`plan`] with every gate open and every check passing,
/// which is the path that reads the most; any other outcome reads less. So the adapter calls
/// exactly the webhooks and queries the engine may use: metric queries and `rollout` webhooks
/// only when an analysis step is due, `confirm-rollout` only when a new revision waits, and so
/// on.
pub fn needs(spec: &CanarySpec, status: &CanaryStatus, obs: &Observations) -> Needs {
    run(spec, status, obs, Inputs::Optimistic).read
}

fn run(spec: &CanarySpec, status: &CanaryStatus, obs: &Observations, inputs: Inputs) -> Plan {
    let mut cx = Cx::new(spec, status, obs, inputs);
    if let Some(blocker) = &obs.blocked {
        // Only the report: the status is otherwise kept (the generation too, so that changes
        // it asked for are made once the cause is gone).
        phases::blocked(&mut cx, blocker);
    } else {
        let check_routes = drift::due(&cx);
        phases::decide(&mut cx);
        drift::run(&mut cx, check_routes);
        gitsync::run(&mut cx);
        if let Some(g) = obs.generation {
            cx.status.observed_generation = Some(g);
        }
    }
    alerts::settle(&mut cx);
    let (status, actions, read) = cx.finish();
    Plan {
        status,
        actions,
        read,
    }
}
