//! Oversized and malicious objects: what the API server refuses by itself (10,000 metrics, a
//! 1 MiB annotation), and what it accepts and fledge must carry without harm (a webhook's
//! metadata holding 256 KiB of JSON nested 100,000 levels deep, passed on as text).

use std::time::Duration;

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::{Hook, TestNs, deployment_json};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";

fn canary(hook: &str) -> Value {
    json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {"interval": "2s", "threshold": 2, "iterations": 2,
                         "webhooks": [{"name": "acceptance", "type": "rollout", "url": hook}]}
        }
    })
}

/// Creates `obj` as a dry run; the API server's refusal, if any.
async fn refusal(ns: &TestNs, obj: &Value) -> Option<Box<kube::core::Status>> {
    let ar = kube::core::ApiResource::erase::<Canary>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &ar);
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let dynamic: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
    match api.create(&pp, &dynamic).await {
        Ok(_) => None,
        Err(kube::Error::Api(e)) => Some(e),
        Err(e) => panic!("the API server did not answer: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_canaries_are_refused_and_a_huge_webhook_metadata_is_carried_as_text() {
    let ns = TestNs::new("hostile").await;
    let hook = Hook::start(200).await.unwrap();

    // 10,000 metrics: refused by the CRD's bound, naming the field.
    let mut many = canary(&hook.url("/rollout"));
    many["spec"]["analysis"]["metrics"] = (0..10_000)
        .map(|i| json!({"name": format!("m{i}"), "templateRef": {"name": "t"}}))
        .collect();
    let e = refusal(&ns, &many).await.expect("10,000 metrics refused");
    assert!(
        e.code == 422
            && e.message.contains("spec.analysis.metrics")
            && e.message.contains("must have at most 100 items"),
        "{e:?}"
    );

    // A 1 MiB annotation: refused by the API server's bound on annotations.
    let mut annotated = canary(&hook.url("/rollout"));
    annotated["metadata"]["annotations"] = json!({"example.com/blob": "x".repeat(1 << 20)});
    let e = refusal(&ns, &annotated)
        .await
        .expect("a 1 MiB annotation refused");
    assert!(
        e.code == 422 && e.message.contains("metadata.annotations"),
        "{}: {}",
        e.code,
        &e.message[..e.message.len().min(300)]
    );

    // JSON nested 100,000 levels deep, 256 KiB, in a webhook's metadata: accepted (it is a
    // string), rolled out, and handed to the webhook as the same text.
    let depth = 100_000;
    let nested = format!(
        "{}{}{}",
        "[".repeat(depth),
        "x".repeat(256 * 1024 - 2 * depth),
        "]".repeat(depth)
    );
    let mut deep = canary(&hook.url("/rollout"));
    deep["spec"]["analysis"]["webhooks"][0]["metadata"] = json!({"cmd": nested});
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    ns.create::<Canary>(deep).await;
    let controller = ns.start_controller(&[]);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, Duration::from_secs(120))
        .await;
    let calls = hook.calls("/rollout");
    assert!(!calls.is_empty(), "the webhook was called");
    for body in &calls {
        assert_eq!(
            body.pointer("/metadata/cmd").and_then(Value::as_str),
            Some(nested.as_str()),
            "the metadata arrives as the same text"
        );
    }
    assert!(
        !ns.controller_log(controller).contains("panicked"),
        "the controller did not panic"
    );
}
