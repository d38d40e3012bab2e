//! Drift of the routing objects: someone (or some tool) changed the HTTPRoute, VirtualService,
//! TrafficSplit, TraefikService or apex Service by hand, so the traffic no longer follows the
//! routes the Canary's status records. The status is the only memory, so it wins: the routes are
//! applied again and a warning Event says what was found.
//!
//! The check reads the routing object back ([`crate::routers::Router::get_routes`]) on a
//! reconcile that did not itself set routes, at most once per [`CHECK_EVERY`] for a Canary, so
//! a hand edit is undone at the next reconcile after it (the analysis interval during a
//! rollout, the periodic resync otherwise).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use fledge_api::{Canary, CanaryPhase, CanaryStatus};
use fledge_core::{Action, Routes};
use kube::runtime::events::{Event, EventType};
use kube::{Client, ResourceExt};
use tracing::{debug, warn};

use crate::Error;
use crate::events::Recorder;
use crate::routers::{RouteTarget, router_for, routes_in_status};

/// The least time between two checks of one Canary.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// The Event reason of a restore of changed routes.
pub const REASON: &str = "RoutesRestored";
/// The Event reason of a routing object recreated after its deletion. (Events of one reason
/// about one Canary within minutes become a series that keeps the first message.)
pub const REASON_RECREATED: &str = "RoutingObjectRecreated";

/// Whether a plan leaves the routes to a drift check: the Canary is not being deleted or set
/// up, and the plan neither sets routes nor (re)creates the routing objects itself.
pub fn wanted(next: &CanaryStatus, deleting: bool, actions: &[Action]) -> bool {
    !deleting
        && !matches!(
            next.phase,
            CanaryPhase::Unknown
                | CanaryPhase::Initializing
                | CanaryPhase::Terminating
                | CanaryPhase::Terminated
        )
        && !actions.iter().any(|a| {
            matches!(
                a,
                Action::SetWeights(_) | Action::EnsureServices { .. } | Action::FinalizeRouting
            )
        })
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

fn last_checks() -> &'static Mutex<HashMap<String, Instant>> {
    static LAST: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    LAST.get_or_init(Default::default)
}

/// Whether this Canary is due for a check now (and notes that it was checked).
fn due(canary: &Canary) -> bool {
    let Some(uid) = canary.uid() else {
        return false;
    };
    let mut map = last_checks()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = Instant::now();
    match map.get(&uid) {
        Some(at) if now.duration_since(*at) < CHECK_EVERY => false,
        _ => {
            map.insert(uid, now);
            true
        }
    }
}

/// Compares the routes in the cluster with those `status` records and, when they differ,
/// applies the recorded ones (recreating a deleted routing object) and publishes a warning
/// Event. Returns the Event's message when it restored them. Errors are the caller's to log: a
/// failed check changes nothing.
pub async fn restore(
    client: &Client,
    recorder: &Recorder,
    canary: &Canary,
    selector: (&str, &str),
    status: &CanaryStatus,
) -> Result<Option<String>, Error> {
    if !due(canary) {
        return Ok(None);
    }
    let router = router_for(client.clone(), canary)?;
    let t = RouteTarget {
        canary,
        selector,
        status,
    };
    let want = routes_in_status(canary, status);
    let (reason, message) = match router.get_routes(&t).await? {
        Some(found) if found == want => {
            debug!("routes match the status ({})", describe(&want));
            return Ok(None);
        }
        Some(found) => {
            router.set_routes(&t, want).await?;
            let message = format!(
                "the {} routing objects gave {} while the status records {}: changed outside \
                 fledge; restored",
                router.provider(),
                describe(&found),
                describe(&want)
            );
            (REASON, message)
        }
        None if router.provider() == "kubernetes" => {
            // The apex Service itself is gone: the Services are applied when the spec changes.
            return Err(Error::InvalidSpec(format!(
                "the apex Service {} was deleted outside fledge; any change to the Canary's \
                 spec recreates it",
                canary.spec.apex_service_name()
            )));
        }
        None => {
            router.ensure(&t).await?;
            let message = format!(
                "the {} routing object was deleted outside fledge; recreated with {}",
                router.provider(),
                describe(&want)
            );
            (REASON_RECREATED, message)
        }
    };
    warn!(reason, "{message}");
    let ev = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(message.clone()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder
        .publish_about(
            &ev,
            canary,
            status.phase,
            crate::controller::checksum(status),
        )
        .await
    {
        warn!(error = %e, "cannot record Event");
    }
    Ok(Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_only_plans_that_leave_the_routes_alone() {
        let progressing = CanaryStatus {
            phase: CanaryPhase::Progressing,
            ..Default::default()
        };
        assert!(wanted(&progressing, false, &[]));
        assert!(!wanted(&progressing, true, &[]));
        assert!(!wanted(
            &progressing,
            false,
            &[Action::SetWeights(Routes::weighted(20))]
        ));
        assert!(!wanted(
            &progressing,
            false,
            &[Action::EnsureServices {
                apex: fledge_core::ApexSelects::Primary
            }]
        ));
        let init = CanaryStatus {
            phase: CanaryPhase::Initializing,
            ..Default::default()
        };
        assert!(!wanted(&init, false, &[]));
        let done = CanaryStatus {
            phase: CanaryPhase::Succeeded,
            ..Default::default()
        };
        assert!(wanted(&done, false, &[]));
    }

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

    #[test]
    fn a_canary_is_checked_at_most_once_per_period() {
        let c: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "x", "namespace": "t", "uid": "drift-test-uid"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "service": {"port": 80}}
        }))
        .unwrap();
        assert!(due(&c));
        assert!(!due(&c));
        let mut other = c.clone();
        other.metadata.uid = Some("drift-test-uid-2".into());
        assert!(due(&other));
    }
}
