//! Drift of the routing objects, the adapter's side: when the engine asks
//! ([`fledge_core::Needs::routes`]), read the routes the routing objects give back from the
//! cluster, or take the last read's answer while the watch of the routing objects shows no
//! change ([`crate::route_watch`]). The engine compares them with the status and decides the
//! restore, its Event and its rate limit ([`fledge_core::drift`]).

use fledge_api::{Canary, CanaryStatus};
use fledge_core::RoutesView;
use kube::Client;
use tracing::debug;

use crate::route_watch::RouteWatch;
use crate::routers::{RouteTarget, router_for};

/// The routes the Canary's routing objects give (`Missing` when the routing object, or for
/// the `kubernetes` provider the apex Service, is gone). A failure to read is reported as
/// `Unreadable` and logged: it changes nothing.
pub async fn read_routes(
    client: &Client,
    watch: &RouteWatch,
    canary: &Canary,
    selector: (&str, &str),
    status: &CanaryStatus,
) -> RoutesView {
    let router = match router_for(client.clone(), canary) {
        Ok(r) => r,
        Err(e) => return unreadable(e.to_string()),
    };
    let t = RouteTarget {
        canary,
        selector,
        status,
    };
    let read = async {
        match router.get_routes(&t).await {
            Ok(Some(found)) => RoutesView::Found(found),
            Ok(None) => RoutesView::Missing,
            Err(e) => unreadable(e.to_string()),
        }
    };
    let read_for = crate::route_watch::ReadFor::of(canary, status, selector);
    watch.routes(router.as_ref(), canary, read_for, read).await
}

fn unreadable(message: String) -> RoutesView {
    debug!(error = %message, "cannot read the routes back");
    RoutesView::Unreadable(message)
}
