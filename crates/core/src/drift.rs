//! Drift of the routing objects: someone (or some tool) changed the HTTPRoute, VirtualService,
//! TrafficSplit, TraefikService or apex Service by hand, so the traffic no longer follows the
//! routes the status records. The status is the only memory, so it wins: the routes are set
//! again and a warning Event says what was found.
//!
//! The adapter reads the routes back when [`crate::needs`] asks ([`crate::Needs::routes`]):
//! on every reconcile of an initialized Canary that is not being deleted, unless routes were
//! restored less than [`RESTORE_EVERY`] ago (`status.routesRestoredAt`, so the limit holds
//! across restarts: a tool that keeps rewriting the routes meets one restore and one Event per
//! period, not one per reconcile). A plan that sets the routes or (re)creates the routing
//! objects itself ignores what was read. Routes that give the canary less than the status
//! records are left alone (see [`less_exposed`]). Nothing is checked while people are in
//! charge: a suspended or paused Canary, or one whose spec is invalid.

use std::time::Duration;

use fledge_api::CanaryPhase;
use fledge_api::validate::{cross_namespace_refs, validate_canary_spec};

use crate::action::{Action, Routes};
use crate::ctx::Cx;
use crate::observe::RoutesView;

/// The least time between two restores of one Canary's routes.
pub const RESTORE_EVERY: Duration = Duration::from_secs(10);

/// The Event reason of a restore of changed routes.
pub const ROUTES_RESTORED: &str = "RoutesRestored";
/// The Event reason of a routing object recreated after its deletion. (Events of one reason
/// about one Canary within minutes become a series that keeps the first message.)
pub const ROUTING_OBJECT_RECREATED: &str = "RoutingObjectRecreated";

/// Whether the routes are read back this reconcile: from the inputs alone, so that
/// [`crate::needs`] and [`crate::plan`] agree whatever the decision.
pub(crate) fn due(cx: &Cx) -> bool {
    let settled = !matches!(
        cx.status.phase,
        CanaryPhase::Unknown
            | CanaryPhase::Initializing
            | CanaryPhase::Terminating
            | CanaryPhase::Terminated
    );
    let restored_lately = cx
        .elapsed(cx.status.routes_restored_at.as_ref())
        .is_some_and(|d| d < RESTORE_EVERY);
    let hands_off = cx.spec.suspend
        || cx.status.paused.is_some()
        || !validate_canary_spec(cx.spec).is_empty()
        || cx
            .obs
            .confined_to_namespace
            .as_ref()
            .is_some_and(|ns| !cross_namespace_refs(cx.spec, ns).is_empty());
    settled && !cx.obs.deleting && !restored_lately && !hands_off
}

/// Compares the routes read back with those the plan's status records and restores them when
/// they differ (after the phase decision, which may have set them itself).
/// `due`: [`due`] as it was before the decision.
pub(crate) fn run(cx: &mut Cx, due: bool) {
    if !due {
        return;
    }
    cx.read.routes = true;
    let routing = cx.cluster_actions().iter().any(|a| {
        matches!(
            a,
            Action::SetWeights(_) | Action::EnsureServices { .. } | Action::FinalizeRouting
        )
    });
    let settled_after = !matches!(
        cx.status.phase,
        CanaryPhase::Unknown
            | CanaryPhase::Initializing
            | CanaryPhase::Terminating
            | CanaryPhase::Terminated
    );
    if routing || !settled_after {
        return;
    }
    let want = cx.applied_routes();
    let provider = cx.spec.provider_or_default().to_string();
    let (reason, message) = match cx.routes_read() {
        RoutesView::NotRead | RoutesView::Unreadable(_) => return,
        RoutesView::Found(found) if *found == want || less_exposed(found, &want) => return,
        RoutesView::Found(found) => {
            let message = format!(
                "the {provider} routing objects gave {} while the status records {}: changed \
                 outside fledge; restored",
                describe(found),
                describe(&want)
            );
            cx.act(Action::SetWeights(want));
            (ROUTES_RESTORED, message)
        }
        RoutesView::Missing => {
            let message = format!(
                "the {provider} routing object was deleted outside fledge; recreated with {}",
                describe(&want)
            );
            cx.ensure_services();
            (ROUTING_OBJECT_RECREATED, message)
        }
    };
    cx.status.routes_restored_at = Some(cx.now_time());
    cx.event(true, reason, message);
}

/// Whether `found` exposes the canary to no more traffic than `want` (no more weight, no more
/// mirroring, no A/B routing that `want` lacks) while differing from it. Such routes are left
/// as they are until the next step sets them: they are what a rollback leaves when the
/// controller stopped before writing its status (restoring the status's routes would send
/// traffic back to a revision just rolled back), or an operator draining the canary by hand.
fn less_exposed(found: &Routes, want: &Routes) -> bool {
    found.canary <= want.canary
        && found.mirror.unwrap_or(0) <= want.mirror.unwrap_or(0)
        && (!found.ab_match || want.ab_match)
}

/// A short text of routes for messages: `canary 20%`, `mirror 50%`, `A/B match`.
pub fn describe(r: &Routes) -> String {
    let mut s = format!("canary {}%", r.canary);
    if let Some(m) = r.mirror {
        s.push_str(&format!(", mirror {m}%"));
    }
    if r.ab_match {
        s.push_str(", A/B match");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_routes() {
        assert_eq!(describe(&Routes::weighted(20)), "canary 20%");
        let r = Routes {
            mirror: Some(50),
            ab_match: true,
            ..Routes::PRIMARY
        };
        assert_eq!(describe(&r), "canary 0%, mirror 50%, A/B match");
    }
}
