//! Traffic routers: one file per provider, chosen by `spec.provider` through [`router_for`].

use fledge_api::Canary;
use fledge_core::Routes;
use kube::Client;

use crate::Error;

pub mod kubernetes;

/// Everything a router needs to know about the Canary it routes for.
#[derive(Clone, Debug)]
pub struct RouteTarget<'a> {
    /// The Canary.
    pub canary: &'a Canary,
    /// The selector label and the target's value, e.g. `("app", "podinfo")`.
    pub selector: (&'a str, &'a str),
}

/// A traffic provider. Every method is idempotent.
pub enum Router {
    /// `kubernetes`: blue/green by switching the apex Service's selector.
    Kubernetes(kubernetes::KubernetesRouter),
}

/// The router for a Canary's `spec.provider`, or an error naming the providers that have one.
pub fn router_for(client: Client, canary: &Canary) -> Result<Router, Error> {
    match canary.spec.provider_or_default() {
        "kubernetes" => Ok(Router::Kubernetes(kubernetes::KubernetesRouter::new(
            client,
        ))),
        other => Err(Error::InvalidSpec(format!(
            "spec.provider: provider {other:?} has no router in this build yet; the routers \
             available now are: kubernetes"
        ))),
    }
}

impl Router {
    /// The provider name.
    pub fn provider(&self) -> &'static str {
        match self {
            Router::Kubernetes(_) => "kubernetes",
        }
    }

    /// Routes traffic as `routes` says.
    pub async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        match self {
            Router::Kubernetes(r) => r.set_routes(t, routes).await,
        }
    }

    /// Reads the routes back from the cluster.
    pub async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Routes, Error> {
        match self {
            Router::Kubernetes(r) => r.get_routes(t).await,
        }
    }

    /// On deletion with `revertOnDeletion`: send all traffic to the target's pods.
    pub async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        match self {
            Router::Kubernetes(r) => r.finalize(t).await,
        }
    }
}
