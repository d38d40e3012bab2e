//! End-to-end: a Knative Service rolled out by the `knative` provider, on the local control
//! plane with Knative Serving's CRDs; the test plays Knative's controller
//! ([`fledge_e2e::knative`]): it makes the Revisions and their status, and reflects the traffic
//! block in the status. What is checked is what fledge writes to the Service (its `spec.traffic`
//! and the annotation naming the promoted Revision) at initialization, at each weight, after
//! promotion, after the rollback of a Revision whose checks fail, while a Revision that never
//! becomes ready is waited for and rolled back, and when the Canary is deleted with
//! `revertOnDeletion`. No Knative data plane (Kourier, an Envoy) can run here, so there is no
//! real traffic; the builtin metrics' queries are rendered in the controller's unit tests.

use std::time::Duration;

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::knative::KnativeService;
use fledge_e2e::{Hook, TestNs, eventually};
use kube::api::DeleteParams;
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const V3: &str = "ghcr.io/stefanprodan/podinfo:6.0.2";
const V4: &str = "ghcr.io/stefanprodan/podinfo:6.0.3";
const ROLLOUT: Duration = Duration::from_secs(120);

fn canary(name: &str, hook: &str) -> Value {
    json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": "knative",
            "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name},
            "progressDeadlineSeconds": 15,
            "revertOnDeletion": true,
            "analysis": {
                "interval": "2s", "threshold": 2, "stepWeight": 25, "maxWeight": 50,
                "webhooks": [{"name": "check", "type": "rollout", "url": hook}],
            },
        }
    })
}

/// `spec.traffic` that sends `canary` percent to the latest Revision and the rest to `primary`.
fn split(primary: &str, canary: i64) -> Vec<(bool, String, i64)> {
    vec![
        (true, String::new(), canary),
        (false, primary.to_string(), 100 - canary),
    ]
}

async fn weight_seen(ns: &TestNs, name: &str, weight: i32) -> Canary {
    ns.wait_canary(name, ROLLOUT, &format!("canary weight {weight}"), |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.phase == CanaryPhase::Progressing && s.canary_weight == weight)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_knative_service_is_rolled_out_between_its_revisions() {
    let ns = TestNs::new("knative").await;
    let hook = Hook::start(200).await.unwrap();
    let mut svc = KnativeService::create(&ns, "app", V1).await;
    let first = svc.revision_name(1);
    ns.create::<Canary>(canary("app", &hook.url("/rollout")))
        .await;
    ns.start_controller(&[]);

    // Initialization: the first Revision is the primary and takes everything.
    ns.wait_phase("app", CanaryPhase::Initialized, ROLLOUT)
        .await;
    assert_eq!(svc.primary().await.as_deref(), Some(first.as_str()));
    assert_eq!(svc.traffic().await, split(&first, 0));
    let c: Canary = ns.api().get("app").await.unwrap();
    assert_eq!(
        c.status.unwrap().last_applied_spec.as_deref(),
        Some(first.as_str()),
        "the revision under test is the Revision's name"
    );

    // A new Revision: 25%, 50%, then promoted.
    let second = svc.new_revision(V2, true).await;
    for w in [25, 50] {
        weight_seen(&ns, "app", w).await;
        assert_eq!(svc.traffic().await, split(&first, i64::from(w)), "at {w}%");
        svc.sync_traffic().await;
    }
    ns.wait_phase("app", CanaryPhase::Succeeded, ROLLOUT).await;
    assert_eq!(svc.primary().await.as_deref(), Some(second.as_str()));
    assert_eq!(svc.traffic().await, split(&second, 0));
    assert!(
        hook.calls("/rollout").iter().any(|b| b["name"] == "app"),
        "the rollout webhook was called with the Canary"
    );

    // The next Revision fails its checks: rolled back to the promoted one.
    hook.set_status(500);
    let third = svc.new_revision(V3, true).await;
    let failed = ns.wait_phase("app", CanaryPhase::Failed, ROLLOUT).await;
    assert_eq!(svc.primary().await.as_deref(), Some(second.as_str()));
    assert_eq!(svc.traffic().await, split(&second, 0));
    assert_eq!(
        failed.status.unwrap().last_applied_spec.as_deref(),
        Some(third.as_str())
    );

    // A Revision that never becomes ready: rolled back at the progress deadline, no traffic
    // ever given to it.
    hook.set_status(200);
    svc.new_revision(V4, false).await;
    ns.wait_canary("app", ROLLOUT, "rolled back, not ready", |c| {
        c.status.as_ref().is_some_and(|s| {
            s.phase == CanaryPhase::Failed && s.last_applied_spec.as_deref() == Some("app-00004")
        })
    })
    .await;
    assert_eq!(svc.traffic().await, split(&second, 0));

    // Deleted with revertOnDeletion: the Service routes as without fledge.
    ns.api::<Canary>()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    let canaries = ns.api::<Canary>();
    eventually(ROLLOUT, "Canary deleted", || async {
        canaries.get_opt("app").await.ok().flatten().is_none()
    })
    .await
    .unwrap();
    assert_eq!(svc.traffic().await, vec![]);
    assert_eq!(svc.primary().await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_knative_canary_refused_for_what_knative_cannot_do() {
    let ns = TestNs::new("knative-refused").await;
    let hook = Hook::start(200).await.unwrap();
    KnativeService::create(&ns, "ab", V1).await;
    let mut c = canary("ab", &hook.url("/rollout"));
    c["spec"]["analysis"] = json!({
        "interval": "2s", "threshold": 2, "iterations": 3,
        "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
    });
    ns.create::<Canary>(c).await;
    ns.start_controller(&[]);
    let c = ns
        .wait_canary("ab", ROLLOUT, "refused", |c| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions.iter().flatten().any(|cond| {
                    cond.r#type == "Ready"
                        && cond.status == "False"
                        && cond
                            .message
                            .as_deref()
                            .is_some_and(|m| m.contains("spec.analysis.match"))
                })
            })
        })
        .await;
    let message = c
        .status
        .unwrap()
        .conditions
        .into_iter()
        .flatten()
        .find(|c| c.r#type == "Ready")
        .and_then(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("knative"), "{message}");
}
