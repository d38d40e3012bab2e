//! End-to-end: what a Flagger installation brings along, on the local control plane: a KEDA
//! `ScaledObject` as the autoscaler (its CRD from KEDA's Go module, installed by `cluster up`;
//! no KEDA operator runs, so the objects fledge writes are what is checked), and Flagger's
//! controller flags (`--mesh-provider`, `--selector-labels`, `--include-label-prefix`,
//! `--event-webhook`) with Flagger's metric families on `/metrics`; and DaemonSet targets, held at
//! zero by a node selector as Flagger holds them.

use std::time::Duration;

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::{Hook, TestNs, eventually, image_of};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const INIT: Duration = Duration::from_secs(90);
const ROLLOUT: Duration = Duration::from_secs(120);
const PAUSED: &str = "autoscaling.keda.sh/paused-replicas";

fn scaled_objects(ns: &TestNs) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject"),
        "scaledobjects",
    );
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

async fn paused(api: &Api<DynamicObject>, name: &str) -> Option<String> {
    let so = api.get(name).await.expect("the target's ScaledObject");
    so.metadata.annotations.and_then(|a| a.get(PAUSED).cloned())
}

/// A blue/green Canary of two iterations with a `rollout` webhook, on `target` (`Kind/name`),
/// with `extra` merged into its spec.
fn canary(target: (&str, &str), hook_url: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "targetRef": {"apiVersion": "apps/v1", "kind": target.0, "name": target.1},
        "progressDeadlineSeconds": 60,
        "service": {"port": 9898},
        "analysis": {
            "interval": "2s", "threshold": 2, "iterations": 2,
            "webhooks": [{"name": "acceptance", "type": "rollout", "url": hook_url, "timeout": "2s"}]
        }
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    serde_json::json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": target.1},
        "spec": spec
    })
}

/// A Deployment whose selector label is `tier` (none of Flagger's default selector labels), with
/// team and Flux labels on it.
fn deployment(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {
            "tier": name, "team.example.com/owner": "shop", "env": "prod",
            "kustomize.toolkit.fluxcd.io/name": "apps"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"tier": name}},
            "template": {
                "metadata": {"labels": {"tier": name}},
                "spec": {"containers": [{"name": "podinfod", "image": V1,
                    "ports": [{"name": "http", "containerPort": 9898}]}]}
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keda_scaled_object_and_flaggers_flags() {
    let ns = TestNs::new("keda").await;
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment("podinfo")).await;
    let sos = scaled_objects(&ns);
    let so: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "podinfo", "labels": {"tier": "podinfo"}},
        "spec": {
            "scaleTargetRef": {"name": "podinfo"},
            "minReplicaCount": 2, "maxReplicaCount": 4, "pollingInterval": 15,
            "triggers": [{"type": "prometheus", "name": "rps", "metadata": {
                "serverAddress": "http://prometheus.monitoring:9090", "threshold": "100",
                "query": "sum(rate(http_requests_total{deployment=\"podinfo\"}[1m]))"}}]
        }
    }))
    .unwrap();
    sos.create(&PostParams::default(), &so)
        .await
        .expect("create the ScaledObject (is KEDA's CRD installed? cargo xtask cluster up)");
    // No `provider`: --mesh-provider decides, as in Flagger.
    ns.create::<Canary>(canary(
        ("Deployment", "podinfo"),
        &hook.url("/rollout"),
        serde_json::json!({"autoscalerRef": {"apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject", "name": "podinfo",
            "primaryScalerReplicas": {"maxReplicas": 6}}}),
    ))
    .await;
    let idx = ns.start_controller(&[
        "--mesh-provider",
        "kubernetes",
        "--selector-labels",
        "app,tier",
        "--include-label-prefix",
        "team.example.com,env",
        "--event-webhook",
        &hook.url("/events"),
        "--cluster-name",
        "e2e",
    ]);

    ns.wait_phase("podinfo", CanaryPhase::Initialized, INIT)
        .await;
    // The primary's ScaledObject scales the primary, with the query on the primary.
    let primary_so = sos
        .get("podinfo-primary")
        .await
        .expect("the primary's ScaledObject");
    let spec = &primary_so.data["spec"];
    assert_eq!(spec["scaleTargetRef"]["name"], "podinfo-primary");
    assert_eq!(
        spec["triggers"][0]["metadata"]["query"],
        "sum(rate(http_requests_total{deployment=\"podinfo-primary\"}[1m]))"
    );
    assert_eq!(
        (&spec["minReplicaCount"], &spec["maxReplicaCount"]),
        (&2.into(), &6.into())
    );
    assert_eq!(
        primary_so
            .metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].kind.as_str()),
        Some("Canary")
    );
    assert!(
        primary_so
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key(PAUSED)),
        "the primary's scaler is never paused"
    );
    // The target is at zero and its ScaledObject held there.
    assert_eq!(paused(&sos, "podinfo").await.as_deref(), Some("0"));
    let target = ns.deployment("podinfo").await;
    assert_eq!(target.spec.and_then(|s| s.replicas), Some(0));

    // --selector-labels: `tier` is the selector label; --include-label-prefix: only the team and
    // env labels are copied (Flux's never).
    let primary = ns.deployment("podinfo-primary").await;
    let labels = primary.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("tier").map(String::as_str),
        Some("podinfo-primary")
    );
    assert_eq!(
        labels.get("team.example.com/owner").map(String::as_str),
        Some("shop")
    );
    assert_eq!(labels.get("env").map(String::as_str), Some("prod"));
    assert!(
        !labels.keys().any(|k| k.contains("toolkit.fluxcd.io")),
        "{labels:?}"
    );
    // --mesh-provider kubernetes: the apex Service selects the primary, no HTTPRoute router.
    let apex = ns
        .api::<Service>()
        .get("podinfo")
        .await
        .expect("apex Service");
    assert_eq!(
        apex.spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get("tier").cloned()),
        Some("podinfo-primary".to_string())
    );

    // A new revision: the target's scaler is resumed while the canary runs, held again after.
    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Progressing, ROLLOUT)
        .await;
    eventually(
        Duration::from_secs(30),
        "the target's ScaledObject resumed",
        || async { paused(&sos, "podinfo").await.is_none() },
    )
    .await
    .unwrap();
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
    eventually(
        Duration::from_secs(30),
        "the target's ScaledObject paused again",
        || async { paused(&sos, "podinfo").await.as_deref() == Some("0") },
    )
    .await
    .unwrap();

    // --event-webhook: every Event of the Canary, with Flagger's payload.
    let events = hook.calls("/events");
    let messages: Vec<String> = events
        .iter()
        .map(|e| {
            e["metadata"]["eventMessage"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for want in [
        "Initialization done",
        "New revision detected",
        "Promotion completed",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(want)),
            "no event {want:?} posted: {messages:#?}"
        );
    }
    for e in &events {
        assert_eq!(e["name"], "podinfo");
        assert_eq!(e["namespace"], ns.name.as_str());
        assert!(e["phase"].is_string(), "{e}");
        assert!(
            matches!(
                e["metadata"]["eventType"].as_str(),
                Some("Normal" | "Warning")
            ),
            "{e}"
        );
        assert!(
            e["metadata"]["timestamp"]
                .as_str()
                .is_some_and(|t| t.parse::<u64>().is_ok()),
            "{e}"
        );
    }

    // Flagger's metric families, beside fledge's.
    let addr = ns.controller_metrics(idx);
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        text.contains("flagger_info{version=\"")
            && text.contains("mesh_provider=\"kubernetes\"} 1"),
        "{text}"
    );
    let ns_label = format!("namespace=\"{}\"", ns.name);
    for line in [
        format!("flagger_canary_status{{name=\"podinfo\",{ns_label}}} 1"),
        format!("flagger_canary_weight{{workload=\"podinfo-primary\",{ns_label}}} 100"),
        format!("flagger_canary_weight{{workload=\"podinfo\",{ns_label}}} 0"),
    ] {
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
    assert!(
        text.contains("# TYPE flagger_canary_duration_seconds histogram"),
        "{text}"
    );
    // Counted from the cache every 10 s.
    let total = format!("flagger_canary_total{{{ns_label}}} 1");
    eventually(
        Duration::from_secs(20),
        "flagger_canary_total counted",
        || async {
            match reqwest::get(format!("http://{addr}/metrics")).await {
                Ok(r) => r.text().await.is_ok_and(|t| t.contains(&total)),
                Err(_) => false,
            }
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemonset_target_is_held_at_zero_and_promoted() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let ns = TestNs::new("ds").await;
    let hook = Hook::start(200).await.unwrap();
    ns.create::<DaemonSet>(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "labels": {"app": "agent"}},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": V1,
                    "ports": [{"name": "http", "containerPort": 9898}]}]}
            }
        }
    }))
    .await;
    ns.create::<Canary>(canary(
        ("DaemonSet", "agent"),
        &hook.url("/rollout"),
        serde_json::json!({"provider": "kubernetes"}),
    ))
    .await;
    ns.start_controller(&[]);
    let dss = ns.api::<DaemonSet>();
    let node_selector = |ds: &DaemonSet| {
        ds.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.node_selector.clone())
            .unwrap_or_default()
    };
    let image = |ds: &DaemonSet| {
        ds.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers[0].image.clone())
            .unwrap_or_default()
    };

    let c = ns.wait_phase("agent", CanaryPhase::Initialized, INIT).await;
    let primary = dss
        .get("agent-primary")
        .await
        .expect("the primary DaemonSet");
    assert_eq!(image(&primary), V1);
    assert!(
        node_selector(&primary).is_empty(),
        "the primary runs everywhere"
    );
    assert_eq!(
        primary
            .status
            .as_ref()
            .map(|s| s.number_available.unwrap_or(0)),
        Some(1),
        "the primary's pod runs on the kwok node"
    );
    let target = dss.get("agent").await.unwrap();
    assert_eq!(
        node_selector(&target)
            .get("fledge.dev/scale-to-zero")
            .map(String::as_str),
        Some("true"),
        "the target is held at zero"
    );
    eventually(
        Duration::from_secs(30),
        "the target's pods gone",
        || async {
            dss.get("agent")
                .await
                .ok()
                .and_then(|d| d.status)
                .is_some_and(|s| s.desired_number_scheduled == 0 && s.current_number_scheduled == 0)
        },
    )
    .await
    .unwrap();
    let apex = ns
        .api::<Service>()
        .get("agent")
        .await
        .expect("apex Service");
    assert_eq!(
        apex.spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get("app").cloned()),
        Some("agent-primary".to_string())
    );
    let first = c.status.and_then(|s| s.last_applied_spec);

    // A new image: the hold is lifted for the analysis, the primary takes the new image, and the
    // target is held at zero again.
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": "agent", "image": V2}]}}}});
    dss.patch(
        "agent",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(&patch),
    )
    .await
    .expect("set the DaemonSet's image");
    ns.wait_phase("agent", CanaryPhase::Progressing, ROLLOUT)
        .await;
    let running = dss.get("agent").await.unwrap();
    assert!(
        !node_selector(&running).contains_key("fledge.dev/scale-to-zero"),
        "the target runs during the analysis"
    );
    let done = ns
        .wait_phase("agent", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    let st = done.status.unwrap();
    assert_ne!(st.last_applied_spec, first, "a new revision, not the hold");
    assert_eq!(st.last_promoted_spec, st.last_applied_spec);
    assert_eq!(image(&dss.get("agent-primary").await.unwrap()), V2);
    assert_eq!(
        node_selector(&dss.get("agent").await.unwrap())
            .get("fledge.dev/scale-to-zero")
            .map(String::as_str),
        Some("true")
    );
    assert!(hook.calls("/rollout").len() >= 2, "the analysis ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_cross_namespace_refs_refuses_a_template_in_another_namespace() {
    refuses_a_template_in_another_namespace("xns", "--no-cross-namespace-refs").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_multi_tenant_preset_refuses_a_template_in_another_namespace() {
    refuses_a_template_in_another_namespace("xns-mt", "--multi-tenant").await;
}

async fn refuses_a_template_in_another_namespace(prefix: &str, flag: &str) {
    let ns = TestNs::new(prefix).await;
    ns.create::<Deployment>(deployment("podinfo")).await;
    ns.create::<Canary>(serde_json::json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "2s", "threshold": 2, "iterations": 2,
                "metrics": [{"name": "error-rate", "interval": "1m",
                    "templateRef": {"name": "error-rate", "namespace": "monitoring"},
                    "thresholdRange": {"max": 1}}]
            }
        }
    }))
    .await;
    ns.start_controller(&["--selector-labels", "tier", flag]);
    let c = ns
        .wait_canary("podinfo", Duration::from_secs(60), "SpecValid=False", |c| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .flatten()
                    .any(|k| k.r#type == "SpecValid" && k.status == "False")
            })
        })
        .await;
    let cond = c
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|k| k.r#type == "SpecValid")
        .expect("SpecValid");
    let message = cond.message.unwrap_or_default();
    assert!(
        message.contains("spec.analysis.metrics[0].templateRef.namespace")
            && message.contains("monitoring/error-rate")
            && message.contains("(--no-cross-namespace-refs or --multi-tenant)"),
        "{message}"
    );
    assert!(
        ns.api::<Deployment>()
            .get_opt("podinfo-primary")
            .await
            .unwrap()
            .is_none(),
        "nothing is created for a refused spec"
    );
    let events = ns.events("podinfo").await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("InvalidSpec") && e.contains("templateRef")),
        "{events:#?}"
    );
}
