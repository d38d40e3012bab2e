//! The `kubernetes` provider: blue/green by pointing the apex Service's selector at the primary's
//! pods or the canary's. It can only send all traffic one way or the other.

use fledge_core::Routes;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::Error;
use crate::{Capabilities, MANAGER, PeerKind, RouteTarget, Router};
use fledge_api::primary_name;

/// Switches the apex Service between primary and canary.
pub struct KubernetesRouter {
    client: Client,
}

impl KubernetesRouter {
    /// A router using `client`.
    pub fn new(client: Client) -> Self {
        KubernetesRouter { client }
    }

    fn api(&self, t: &RouteTarget<'_>) -> Api<Service> {
        let ns = t.canary.metadata.namespace.as_deref().unwrap_or("default");
        Api::namespaced(self.client.clone(), ns)
    }

    async fn point_apex(&self, t: &RouteTarget<'_>, value: &str) -> Result<(), Error> {
        let name = t.canary.spec.apex_service_name();
        let patch = json!({"spec": {"selector": {t.selector.0: value}}});
        self.api(t)
            .patch(
                name,
                &PatchParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Router for KubernetesRouter {
    fn provider(&self) -> &'static str {
        "kubernetes"
    }

    fn routing_kind(&self) -> PeerKind {
        PeerKind {
            group: "",
            version: "v1",
            kind: "Service",
            plural: "services",
            namespaced: true,
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// The apex Service is the whole router, and the controller applies it.
    async fn ensure(&self, _: &RouteTarget<'_>) -> Result<(), Error> {
        Ok(())
    }

    /// All traffic to the primary (canary weight 0) or to the canary (weight 100). Mirroring,
    /// A/B matching and partial weights cannot be done with a Service selector and are refused.
    async fn set_routes(&self, t: &RouteTarget<'_>, routes: Routes) -> Result<(), Error> {
        if routes.ab_match {
            return Err(Error::Router {
                provider: "kubernetes".into(),
                message: "cannot route requests by header, cookie or query parameter (A/B \
                          testing): the kubernetes provider switches all traffic at once; use a \
                          provider with HTTP matching (gatewayapi, istio)"
                    .into(),
            });
        }
        let value = match (routes.canary, routes.mirror) {
            (0, None | Some(0)) => primary_name(t.selector.1),
            (100, None | Some(0)) => t.selector.1.to_string(),
            _ => {
                return Err(Error::Router {
                    provider: "kubernetes".into(),
                    message: format!(
                        "cannot route {}% to the canary{}: the kubernetes provider switches all \
                         traffic at once (blue/green); use iterations instead of weights, or a \
                         provider with weighted routing",
                        routes.canary,
                        if routes.mirror.is_some() {
                            " with mirroring"
                        } else {
                            ""
                        }
                    ),
                });
            }
        };
        self.point_apex(t, &value).await
    }

    /// The routes the apex Service's selector gives now; `None` when it does not exist.
    async fn get_routes(&self, t: &RouteTarget<'_>) -> Result<Option<Routes>, Error> {
        let Some(svc) = self
            .api(t)
            .get_opt(t.canary.spec.apex_service_name())
            .await?
        else {
            return Ok(None);
        };
        let selected = svc
            .spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get(t.selector.0).cloned());
        Ok(Some(if selected.as_deref() == Some(t.selector.1) {
            Routes::weighted(100)
        } else {
            Routes::weighted(0)
        }))
    }

    /// Points the apex at the target's own pods, which serve once the Canary is gone, and drops
    /// its owner reference so that it stays.
    async fn finalize(&self, t: &RouteTarget<'_>) -> Result<(), Error> {
        crate::release_apex(&self.client, t).await
    }
}
