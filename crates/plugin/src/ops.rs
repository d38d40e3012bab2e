//! Talking to the API server: Canaries, their workloads and Events, who the user is, what RBAC
//! allows them, and requests written to `.status.request`.

use std::time::Duration;

use fledge_api::{Canary, Gate, OperatorRequest, RequestAction, RequestOutcome};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::Error;
use crate::render::{StatefulSetInput, TreeInput};

/// The field manager of the plugin's status writes.
pub const MANAGER: &str = "kubectl-fledge";

/// The API server's name for the user (SelfSubjectReview, what `kubectl auth whoami` shows);
/// `None` when the API server does not offer it.
pub async fn whoami(client: &Client) -> Option<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()?;
    review.status?.user_info?.username
}

/// Whether RBAC allows `verb` on `resource` (`canaries` or `canaries/status`) in `ns`;
/// `None` when the API server did not say.
pub async fn allowed(client: &Client, ns: &str, verb: &str, resource: &str) -> Option<bool> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(fledge_api::GROUP.into()),
                namespace: Some(ns.into()),
                resource: Some(resource.into()),
                subresource,
                verb: Some(verb.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let out = api.create(&PostParams::default(), &review).await.ok()?;
    out.status.map(|s| s.allowed)
}

fn forbidden(user: &str, what: &str, verb: &str, resource: &str, ns: &str) -> Error {
    Error::Forbidden {
        user: user.to_string(),
        what: what.to_string(),
        verb: verb.to_string(),
        resource: resource.to_string(),
        namespace: ns.to_string(),
    }
}

/// Reads one Canary, with clear errors for a missing one or a missing permission.
pub async fn get_canary(client: &Client, ns: &str, name: &str) -> Result<Canary, Error> {
    let api: Api<Canary> = Api::namespaced(client.clone(), ns);
    match api.get(name).await {
        Ok(c) => Ok(c),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::NotFound {
            namespace: ns.into(),
            name: name.into(),
        }),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            let user = whoami(client).await.unwrap_or_else(|| "you".into());
            Err(forbidden(
                &user,
                &format!("read Canary {ns}/{name}"),
                "get",
                "canaries",
                ns,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Lists Canaries in `ns` (all namespaces when `None`), sorted by namespace and name.
pub async fn list_canaries(client: &Client, ns: Option<&str>) -> Result<Vec<Canary>, Error> {
    let api: Api<Canary> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default()).await {
        Ok(l) => {
            let mut items = l.items;
            items.sort_by_key(|c| (c.namespace(), c.name_any()));
            Ok(items)
        }
        Err(kube::Error::Api(s)) if s.code == 403 => {
            let user = whoami(client).await.unwrap_or_else(|| "you".into());
            Err(forbidden(
                &user,
                "list Canaries",
                "list",
                "canaries",
                ns.unwrap_or("(all)"),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The Canary with its target, primary and Events, for the tree. Missing workloads or Events
/// the user may not read are left out.
pub async fn tree_input(client: &Client, canary: Canary) -> TreeInput {
    let ns = canary.namespace().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let target_name = canary.spec.target_ref.name.clone();
    let target = deployments.get_opt(&target_name).await.ok().flatten();
    let primary = deployments
        .get_opt(&format!("{target_name}-primary"))
        .await
        .ok()
        .flatten();
    let events = events(client, &canary).await;
    let statefulset = if canary.spec.targets_statefulset() {
        statefulset_input(client, &ns, &target_name).await
    } else {
        None
    };
    let (target, primary) = match &statefulset {
        Some((sts, _)) => (Some(deployment_view_of(sts)), None),
        None => (target, primary),
    };
    TreeInput {
        canary,
        target,
        primary,
        events,
        statefulset: statefulset.map(|(_, s)| s),
    }
}

/// A StatefulSet's template, replicas and rollout status in the shape the tree reads.
fn deployment_view_of(sts: &StatefulSet) -> Deployment {
    let spec = sts.spec.clone().unwrap_or_default();
    let st = sts.status.clone().unwrap_or_default();
    Deployment {
        metadata: sts.metadata.clone(),
        spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec {
            replicas: spec.replicas,
            selector: spec.selector,
            template: spec.template,
            ..Default::default()
        }),
        status: Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            available_replicas: st.available_replicas,
            ..Default::default()
        }),
    }
}

/// A StatefulSet target and its pods' revisions (`None` when it cannot be read).
async fn statefulset_input(
    client: &Client,
    ns: &str,
    name: &str,
) -> Option<(StatefulSet, StatefulSetInput)> {
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()?;
    let spec = sts.spec.clone().unwrap_or_default();
    let st = sts.status.clone().unwrap_or_default();
    let selector = spec
        .selector
        .match_labels
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let prefix = format!("{name}-");
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let ordinal = p.name_any().strip_prefix(&prefix)?.parse().ok()?;
            let revision = p
                .labels()
                .get("controller-revision-hash")
                .cloned()
                .unwrap_or_default();
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            Some((ordinal, revision, ready))
        })
        .collect();
    let input = StatefulSetInput {
        replicas: spec.replicas.unwrap_or(1),
        partition: spec
            .update_strategy
            .and_then(|u| u.rolling_update)
            .and_then(|r| r.partition)
            .unwrap_or(0),
        current_revision: st.current_revision.unwrap_or_default(),
        update_revision: st.update_revision.unwrap_or_default(),
        pods,
    };
    Some((sts, input))
}

pub use fledge_dashboard::server::events;

/// A watch of Canaries (one by name, or all in `ns`, or everywhere), as a stream of objects
/// changed (`Ok(Some)`) or deleted (`Ok(None)` with the name).
pub fn watch(
    client: &Client,
    ns: Option<&str>,
    name: Option<&str>,
) -> impl futures::Stream<Item = Result<watcher::Event<Canary>, watcher::Error>> + Send + 'static {
    let api: Api<Canary> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut cfg = watcher::Config::default();
    if let Some(n) = name {
        cfg = cfg.fields(&format!("metadata.name={n}"));
    }
    watcher(api, cfg).boxed()
}

/// A request to send.
#[derive(Clone, Debug)]
pub struct Ask {
    /// Namespace of the Canary.
    pub namespace: String,
    /// Name of the Canary.
    pub name: String,
    /// What to do.
    pub action: RequestAction,
    /// For approve: the gate, or `None` for the one the Canary waits for.
    pub gate: Option<Gate>,
    /// How long to wait for the controller's answer (`None`: do not wait).
    pub wait: Option<Duration>,
}

/// What happened to a request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Written, not waited for.
    Sent(OperatorRequest),
    /// The controller handled it.
    Handled(RequestOutcome),
}

/// Writes a request to `.status.request` after checking that the Canary exists, that the
/// request fits it, and that RBAC lets the user write there; then waits for the controller's
/// answer.
pub async fn send(client: &Client, ask: &Ask) -> Result<Answer, Error> {
    let (ns, name) = (ask.namespace.as_str(), ask.name.as_str());
    let user = whoami(client).await.unwrap_or_default();
    let shown_user = if user.is_empty() { "you" } else { &user };
    let what = format!("{} Canary {ns}/{name}", ask.action);
    let mut attempts = 0;
    let request = loop {
        attempts += 1;
        let canary = get_canary(client, ns, name).await?;
        let status = canary.status.clone().unwrap_or_default();
        if let Some(p) = &status.request {
            return Err(Error::DoesNotFit {
                action: ask.action.to_string(),
                namespace: ns.into(),
                name: name.into(),
                why: format!(
                    "an earlier request ({} by {}) is still waiting for the controller",
                    p.describe(),
                    p.who()
                ),
            });
        }
        let gate = match (ask.action, ask.gate) {
            (RequestAction::Approve, None) => Some(
                fledge_core::requests::pending_gate(&canary.spec, &status).ok_or_else(|| {
                    Error::DoesNotFit {
                        action: "approve".into(),
                        namespace: ns.into(),
                        name: name.into(),
                        why: format!(
                            "it waits for no gate it declares (it is {}); name one with --gate",
                            status.phase
                        ),
                    }
                })?,
            ),
            (RequestAction::Approve, g) => g,
            (_, Some(_)) => {
                return Err(Error::Usage("--gate goes with approve only".into()));
            }
            (_, None) => None,
        };
        let now = jiff::Timestamp::now();
        let request = OperatorRequest {
            id: format!(
                "{}-{}",
                now.as_nanosecond().rem_euclid(1 << 62),
                std::process::id()
            ),
            action: ask.action,
            gate,
            user: user.clone(),
            requested_at: Some(Time(
                jiff::Timestamp::from_second(now.as_second()).unwrap_or(now),
            )),
        };
        if let Err(why) = fledge_core::requests::fits(&canary.spec, &status, &request) {
            return Err(Error::DoesNotFit {
                action: request.describe(),
                namespace: ns.into(),
                name: name.into(),
                why,
            });
        }
        if allowed(client, ns, "patch", "canaries/status").await == Some(false) {
            return Err(forbidden(shown_user, &what, "patch", "canaries/status", ns));
        }
        let api: Api<Canary> = Api::namespaced(client.clone(), ns);
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": canary.resource_version()},
            "status": {"request": request},
        });
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        match api.patch_status(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => break request,
            Err(kube::Error::Api(s)) if s.code == 409 && attempts < 5 => continue,
            Err(kube::Error::Api(s)) if s.code == 403 => {
                return Err(forbidden(shown_user, &what, "patch", "canaries/status", ns));
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(Error::NotFound {
                    namespace: ns.into(),
                    name: name.into(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    };
    let Some(timeout) = ask.wait else {
        return Ok(Answer::Sent(request));
    };
    match tokio::time::timeout(timeout, outcome(client, ns, name, &request.id)).await {
        Ok(Ok(o)) if o.accepted => Ok(Answer::Handled(o)),
        Ok(Ok(o)) => Err(Error::Refused {
            action: o.request.describe(),
            namespace: ns.into(),
            name: name.into(),
            why: o.message,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Timeout(format!(
            "the request is recorded in .status.request of {ns}/{name}, but no controller \
             handled it within {}s (is `fledge run` watching namespace {ns}?); it is handled \
             when one does",
            timeout.as_secs()
        ))),
    }
}

/// Waits until the controller records the outcome of request `id`.
async fn outcome(client: &Client, ns: &str, name: &str, id: &str) -> Result<RequestOutcome, Error> {
    let mut stream = watch(client, Some(ns), Some(name)).boxed();
    while let Some(ev) = stream
        .try_next()
        .await
        .map_err(|e| Error::Kube(format!("watching {ns}/{name}: {e}")))?
    {
        let obj = match ev {
            watcher::Event::Apply(c) | watcher::Event::InitApply(c) => c,
            watcher::Event::Delete(_) => {
                return Err(Error::NotFound {
                    namespace: ns.into(),
                    name: name.into(),
                });
            }
            _ => continue,
        };
        if let Some(o) = obj.status.and_then(|s| s.last_request)
            && o.request.id == id
        {
            return Ok(*o);
        }
    }
    Err(Error::Kube(format!("the watch of {ns}/{name} ended")))
}
