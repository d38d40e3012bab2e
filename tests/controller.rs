//! End-to-end tests of `fledge run` on the local control plane (`cargo xtask cluster up`, started
//! by the harness once per run): real API server, real Deployments made Ready by kwok, the
//! controller as its own process.

use std::time::Duration;

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::{Hook, TestNs, deployment_json, eventually, image_of};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{DeleteParams, Patch, PatchParams};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const INIT: Duration = Duration::from_secs(90);
const ROLLOUT: Duration = Duration::from_secs(120);

/// A blue/green Canary on the `kubernetes` provider with a `rollout` webhook.
fn bluegreen(name: &str, hook_url: &str, iterations: i32, threshold: i32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {
                "interval": "2s",
                "threshold": threshold,
                "iterations": iterations,
                "webhooks": [{"name": "acceptance", "type": "rollout", "url": hook_url, "timeout": "2s"}]
            }
        }
    })
}

fn apex_selector(svc: &Service) -> String {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.get("app").cloned())
        .unwrap_or_default()
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1)
}

async fn initialized(ns: &TestNs, name: &str) -> Canary {
    ns.wait_phase(name, CanaryPhase::Initialized, INIT).await
}

#[tokio::test(flavor = "multi_thread")]
async fn blue_green_promotes_a_new_image() {
    let ns = TestNs::new("bg").await;
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 2))
        .await;
    ns.create::<HorizontalPodAutoscaler>(serde_json::json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "podinfo"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "minReplicas": 2, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 99}}}]
        }
    }))
    .await;
    let mut canary = bluegreen("podinfo", &hook.url("/rollout"), 3, 2);
    canary["spec"]["autoscalerRef"] = serde_json::json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": "podinfo"
    });
    ns.create::<Canary>(canary).await;
    ns.start_controller(&[]);

    let c = initialized(&ns, "podinfo").await;
    let hpa = ns
        .api::<HorizontalPodAutoscaler>()
        .get("podinfo-primary")
        .await
        .expect("the primary's HPA");
    assert_eq!(hpa.spec.unwrap().scale_target_ref.name, "podinfo-primary");
    let primary = ns.deployment("podinfo-primary").await;
    assert_eq!(image_of(&primary), V1);
    assert_eq!(replicas(&primary), 2);
    assert_eq!(
        replicas(&ns.deployment("podinfo").await),
        0,
        "target scaled to zero"
    );
    let svcs = ns.api::<Service>();
    assert_eq!(
        apex_selector(&svcs.get("podinfo").await.unwrap()),
        "podinfo-primary"
    );
    assert_eq!(
        apex_selector(&svcs.get("podinfo-primary").await.unwrap()),
        "podinfo-primary"
    );
    assert_eq!(
        apex_selector(&svcs.get("podinfo-canary").await.unwrap()),
        "podinfo"
    );
    let first_hash = c.status.unwrap().last_applied_spec;

    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Progressing, ROLLOUT)
        .await;
    let done = ns
        .wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    let st = done.status.unwrap();
    assert_ne!(st.last_applied_spec, first_hash);
    assert_eq!(st.last_promoted_spec, st.last_applied_spec);
    assert_eq!(st.failed_checks, 0);
    assert_eq!(st.canary_weight, 0);

    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
    assert_eq!(
        replicas(&ns.deployment("podinfo").await),
        0,
        "canary scaled to zero"
    );
    assert_eq!(
        apex_selector(&svcs.get("podinfo").await.unwrap()),
        "podinfo-primary"
    );
    let calls = hook.calls("/rollout");
    assert!(
        calls.len() >= 3,
        "one rollout webhook call per iteration: {calls:?}"
    );
    assert_eq!(calls[0]["name"], "podinfo");
    assert_eq!(calls[0]["namespace"], ns.name.as_str());
    assert_eq!(calls[0]["phase"], "Progressing");
    let events = ns.events("podinfo").await;
    for reason in ["AnalysisStarted", "IterationAdvanced"] {
        assert!(
            events.iter().any(|e| e.contains(reason)),
            "no {reason} Event in {events:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_rollout_webhook_rolls_back_after_threshold_checks() {
    let ns = TestNs::new("fail").await;
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 2))
        .await;
    ns.create::<Canary>(bluegreen("podinfo", &hook.url("/rollout"), 5, 3))
        .await;
    ns.start_controller(&[]);
    initialized(&ns, "podinfo").await;

    hook.set_status(500);
    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Progressing, ROLLOUT)
        .await;
    let failed = ns.wait_phase("podinfo", CanaryPhase::Failed, ROLLOUT).await;
    let st = failed.status.unwrap();
    assert_eq!(
        st.failed_checks, 3,
        "rolled back after exactly threshold failed checks"
    );
    assert_eq!(st.canary_weight, 0);
    assert_eq!(
        image_of(&ns.deployment("podinfo-primary").await),
        V1,
        "primary untouched"
    );
    // The canary is scaled to zero by the reconcile right after `Failed` is written.
    eventually(
        Duration::from_secs(30),
        "the canary scaled to zero",
        || async { replicas(&ns.deployment("podinfo").await) == 0 },
    )
    .await
    .unwrap();
    let apex = ns.api::<Service>().get("podinfo").await.unwrap();
    assert_eq!(
        apex_selector(&apex),
        "podinfo-primary",
        "all traffic on primary"
    );
    let events = ns.events("podinfo").await;
    let failed_checks = events.iter().filter(|e| e.contains("CheckFailed")).count();
    assert!(
        failed_checks >= 1,
        "a CheckFailed Event per failed check: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_controller_resumes_without_repeating_or_skipping_steps() {
    let ns = TestNs::new("restart").await;
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    ns.create::<Canary>(bluegreen("podinfo", &hook.url("/rollout"), 6, 2))
        .await;
    let first = ns.start_controller(&[]);
    initialized(&ns, "podinfo").await;
    ns.set_image("podinfo", V2).await;

    // Record every iteration value the status shows, across the restart.
    let api = ns.api::<Canary>();
    let mut seen: Vec<i32> = Vec::new();
    let mut restarted = false;
    let deadline = std::time::Instant::now() + ROLLOUT;
    loop {
        let c = api.get("podinfo").await.unwrap();
        let st = c.status.clone().unwrap_or_default();
        if st.phase == CanaryPhase::Progressing && seen.last() != Some(&st.iterations) {
            seen.push(st.iterations);
        }
        if !restarted && st.iterations >= 2 {
            ns.kill_controller(first);
            tokio::time::sleep(Duration::from_secs(3)).await;
            ns.start_controller(&[]);
            restarted = true;
        }
        if st.phase == CanaryPhase::Succeeded {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no promotion; seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(restarted);
    // Iterations only ever grow by one: no step repeated, none skipped.
    for w in seen.windows(2) {
        assert_eq!(w[1], w[0] + 1, "iterations went {seen:?}");
    }
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_spec_and_missing_target_are_reported_and_recover() {
    let ns = TestNs::new("invalid").await;
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let mut bad = bluegreen("podinfo", &hook.url("/rollout"), 3, 2);
    // Two webhooks of one name: refused by `fledge validate` and the controller, not by the
    // CRD's own rules (which refuse e.g. a malformed interval at the API server already).
    let twin = bad["spec"]["analysis"]["webhooks"][0].clone();
    bad["spec"]["analysis"]["webhooks"]
        .as_array_mut()
        .unwrap()
        .push(twin);
    ns.create::<Canary>(bad).await;
    ns.create::<Deployment>(deployment_json("gw", V1, 1)).await;
    // The default provider (gatewayapi:v1) with a host name the HTTPRoute CRD refuses: the API
    // server rejects the router's object, which only a change of the spec can fix.
    let mut gw = bluegreen("gw", &hook.url("/rollout"), 3, 2);
    gw["spec"].as_object_mut().unwrap().remove("provider");
    gw["spec"]["service"]["hosts"] = serde_json::json!(["Not A Host!"]);
    ns.create::<Canary>(gw).await;
    // Missing target: a Canary for a Deployment that does not exist yet.
    ns.create::<Canary>(bluegreen("later", &hook.url("/rollout"), 3, 2))
        .await;
    ns.start_controller(&[]);

    let has_condition = |reason: &'static str| {
        move |c: &Canary| {
            c.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|x| x.status == "False" && x.reason.as_deref() == Some(reason))
                })
        }
    };
    let c = ns
        .wait_canary(
            "podinfo",
            INIT,
            "InvalidSpec condition",
            has_condition("InvalidSpec"),
        )
        .await;
    let msg = c
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|x| x.reason.as_deref() == Some("InvalidSpec"))
        .and_then(|x| x.message)
        .unwrap_or_default();
    assert!(msg.contains("spec.analysis.webhooks[1].name"), "{msg}");
    assert!(
        ns.events("podinfo")
            .await
            .iter()
            .any(|e| e.contains("InvalidSpec") && e.contains("spec.analysis.webhooks[1].name"))
    );
    ns.wait_canary(
        "later",
        INIT,
        "TargetNotFound condition",
        has_condition("TargetNotFound"),
    )
    .await;
    assert!(
        ns.events("later")
            .await
            .iter()
            .any(|e| e.contains("TargetNotFound"))
    );
    // A routing object the API server refuses: reported the same way.
    let gw = ns
        .wait_canary(
            "gw",
            INIT,
            "refused-route condition",
            has_condition("InvalidSpec"),
        )
        .await;
    let gw_msg = gw
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find_map(|x| x.message.filter(|m| m.contains("HTTPRoute")));
    assert!(
        gw_msg
            .as_deref()
            .is_some_and(|m| m.contains("spec.hostnames")),
        "{gw_msg:?}"
    );
    assert!(
        ns.events("gw")
            .await
            .iter()
            .any(|e| e.contains("Warning InvalidSpec") && e.contains("spec.hostnames"))
    );
    // Nothing was created for the invalid one.
    assert!(
        ns.api::<Deployment>()
            .get_opt("podinfo-primary")
            .await
            .unwrap()
            .is_none()
    );

    // Fix both: one webhook of that name.
    let one =
        bluegreen("podinfo", &hook.url("/rollout"), 3, 2)["spec"]["analysis"]["webhooks"].clone();
    ns.api::<Canary>()
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"analysis": {"webhooks": one}}})),
        )
        .await
        .unwrap();
    ns.create::<Deployment>(deployment_json("later", V1, 1))
        .await;
    ns.api::<Canary>()
        .patch(
            "gw",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"service": {"hosts": ["app.example.com"]}}})),
        )
        .await
        .unwrap();
    initialized(&ns, "podinfo").await;
    initialized(&ns, "later").await;
    initialized(&ns, "gw").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_with_and_without_revert_on_deletion() {
    let ns = TestNs::new("delete").await;
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("revert", V1, 2))
        .await;
    ns.create::<Deployment>(deployment_json("keep", V1, 2))
        .await;
    let mut revert = bluegreen("revert", &hook.url("/rollout"), 3, 2);
    revert["spec"]["revertOnDeletion"] = true.into();
    ns.create::<Canary>(revert).await;
    ns.create::<Canary>(bluegreen("keep", &hook.url("/rollout"), 3, 2))
        .await;
    ns.start_controller(&[]);
    initialized(&ns, "revert").await;
    initialized(&ns, "keep").await;

    let canaries = ns.api::<Canary>();
    canaries
        .delete("revert", &DeleteParams::default())
        .await
        .unwrap();
    canaries
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap();
    for name in ["revert", "keep"] {
        eventually(
            Duration::from_secs(90),
            &format!("Canary {name} deleted"),
            || async { canaries.get_opt(name).await.ok().flatten().is_none() },
        )
        .await
        .unwrap();
    }
    // revertOnDeletion: the target serves again, and the apex Service points at it.
    let target = ns.deployment("revert").await;
    assert_eq!(replicas(&target), 2, "target scaled back up");
    let ready = target
        .status
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    assert_eq!(ready, 2, "target ready before the Canary went");
    let apex = ns.api::<Service>().get_opt("revert").await.unwrap();
    if let Some(apex) = apex {
        assert_eq!(apex_selector(&apex), "revert");
    }
    // Without it, fledge leaves the target as it was.
    assert_eq!(replicas(&ns.deployment("keep").await), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_replica_takes_over_when_the_leader_dies() {
    let ns = TestNs::new("leader").await;
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    ns.create::<Canary>(bluegreen("podinfo", &hook.url("/rollout"), 5, 2))
        .await;
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        ns.name.as_str(),
        "--lease-duration",
        "4",
    ];
    let a = ns.start_controller(&flags);
    eventually(Duration::from_secs(30), "replica A leads", || async {
        ns.controller_log(a).contains("became leader")
    })
    .await
    .unwrap();
    let b = ns.start_controller(&flags);
    eventually(Duration::from_secs(30), "replica B stands by", || async {
        ns.controller_log(b).contains("waiting to become leader")
    })
    .await
    .unwrap();
    initialized(&ns, "podinfo").await;
    assert!(
        !ns.controller_log(b).contains("became leader"),
        "only one leader"
    );

    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Progressing, ROLLOUT)
        .await;
    ns.kill_controller(a);
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    assert!(ns.controller_log(b).contains("became leader"));
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_referenced_config_map_change_starts_a_rollout() {
    let ns = TestNs::new("config").await;
    let hook = Hook::start(200).await.unwrap();
    ns.create::<ConfigMap>(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "podinfo-config"},
        "data": {"color": "blue"}
    }))
    .await;
    let mut dep = deployment_json("podinfo", V1, 1);
    dep["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
        serde_json::json!([{"configMapRef": {"name": "podinfo-config"}}]);
    ns.create::<Deployment>(dep).await;
    // A long interval: only the watch on the ConfigMap can start the rollout quickly.
    let mut canary = bluegreen("podinfo", &hook.url("/rollout"), 2, 2);
    canary["spec"]["analysis"]["interval"] = "5m".into();
    ns.create::<Canary>(canary).await;
    ns.start_controller(&[]);
    let c = initialized(&ns, "podinfo").await;
    let tracked = c.status.unwrap().tracked_configs.unwrap_or_default();
    assert!(
        tracked.contains_key("ConfigMap/podinfo-config"),
        "{tracked:?}"
    );
    let cms = ns.api::<ConfigMap>();
    let copy = cms.get("podinfo-config-primary").await.unwrap();
    assert_eq!(copy.data.unwrap()["color"], "blue");
    let primary = ns.deployment("podinfo-primary").await;
    let env_from = primary.spec.unwrap().template.spec.unwrap().containers[0]
        .env_from
        .clone()
        .unwrap();
    assert_eq!(
        env_from[0].config_map_ref.as_ref().unwrap().name,
        "podinfo-config-primary"
    );

    cms.patch(
        "podinfo-config",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"color": "green"}})),
    )
    .await
    .unwrap();
    // The ConfigMap is watched: the rollout starts long before the 5m requeue.
    ns.wait_phase("podinfo", CanaryPhase::Progressing, Duration::from_secs(20))
        .await;
    ns.api::<Canary>()
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"analysis": {"interval": "2s"}}})),
        )
        .await
        .unwrap();
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    let copy = cms.get("podinfo-config-primary").await.unwrap();
    assert_eq!(copy.data.unwrap()["color"], "green");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_concurrent_rollouts_queues_the_rest_in_waiting() {
    let ns = TestNs::new("slots").await;
    let hook = Hook::start(200).await.unwrap();
    let names = ["app-a", "app-b", "app-c"];
    for n in names {
        ns.create::<Deployment>(deployment_json(n, V1, 1)).await;
        ns.create::<Canary>(bluegreen(n, &hook.url("/rollout"), 2, 2))
            .await;
    }
    ns.start_controller(&["--max-concurrent-rollouts", "1"]);
    for n in names {
        initialized(&ns, n).await;
    }
    for n in names {
        ns.set_image(n, V2).await;
    }
    let api = ns.api::<Canary>();
    let mut saw_queue = false;
    let mut max_rolling = 0;
    let deadline = std::time::Instant::now() + ROLLOUT;
    loop {
        let list = api.list(&Default::default()).await.unwrap().items;
        let rolling = list
            .iter()
            .filter(|c| c.status.as_ref().is_some_and(|s| s.phase.is_rolling_out()))
            .count();
        max_rolling = max_rolling.max(rolling);
        saw_queue |= list.iter().any(|c| {
            c.status.as_ref().is_some_and(|s| {
                s.phase == CanaryPhase::Waiting
                    && s.conditions
                        .iter()
                        .flatten()
                        .any(|x| x.reason.as_deref() == Some("WaitingForRolloutSlot"))
            })
        });
        let done = list.iter().all(|c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.phase == CanaryPhase::Succeeded)
        });
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all promoted: {:?}",
            list.iter()
                .map(|c| (c.metadata.name.clone(), c.status.as_ref().map(|s| s.phase)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(max_rolling, 1, "never more than one rollout at once");
    assert!(
        saw_queue,
        "the others waited with reason WaitingForRolloutSlot"
    );
    for n in names {
        assert_eq!(image_of(&ns.deployment(&format!("{n}-primary")).await), V2);
    }
}

/// The API server's reads of the Service `name` in `ns` by fledge (its user agent), so far.
fn service_reads_by_fledge(ns: &TestNs, name: &str) -> usize {
    fledge_e2e::audit_records()
        .iter()
        .filter(|r| {
            r["verb"] == "get"
                && r["objectRef"]["resource"] == "services"
                && r["objectRef"]["namespace"] == ns.name.as_str()
                && r["objectRef"]["name"] == name
                && r["userAgent"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("fledge/"))
        })
        .count()
}

/// Drift from watches: a settled Canary reconciled every second reads its routing object (for
/// the `kubernetes` provider, the apex Service) not once, since the watch of the routing
/// objects shows it unchanged; and a hand edit of the apex Service of a Canary whose interval
/// is an hour is undone at once, because the watch wakes that Canary (its next requeue is an
/// hour away).
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_canary_reads_nothing_back_and_a_hand_edit_is_undone_at_once() {
    let ns = TestNs::new("drift-watch").await;
    let hook = Hook::start(200).await.unwrap();
    for (name, interval) in [("quiet", "1s"), ("hourly", "1h")] {
        ns.create::<Deployment>(deployment_json(name, V1, 1)).await;
        let mut canary = bluegreen(name, &hook.url("/rollout"), 2, 2);
        canary["spec"]["analysis"]["interval"] = serde_json::json!(interval);
        ns.create::<Canary>(canary).await;
    }
    let controller = ns.start_controller(&[]);
    initialized(&ns, "quiet").await;
    initialized(&ns, "hourly").await;

    // Quiet: every reconcile of `quiet` is due a drift check, and none reads the apex back.
    // The first checks read it while the watch lists (and once more when its answer was not
    // yet cacheable): a window of 10 reconciles with no read must come within three.
    let mut reads = Vec::new();
    for _ in 0..3 {
        let before = service_reads_by_fledge(&ns, "quiet");
        ns.wait_reconciles(controller, 10, Duration::from_secs(60))
            .await;
        reads.push(service_reads_by_fledge(&ns, "quiet").saturating_sub(before));
        if reads.last() == Some(&0) {
            break;
        }
    }
    assert_eq!(
        reads.last(),
        Some(&0),
        "a settled Canary kept reading its apex Service back: {reads:?} reads in windows of 10 \
         reconciles"
    );
    let hourly_reads = service_reads_by_fledge(&ns, "hourly");

    // A hand edit: the apex Service of `hourly` sent to the canary's pods.
    let svcs = ns.api::<Service>();
    svcs.patch(
        "hourly",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(serde_json::json!({"spec": {"selector": {"app": "hourly"}}})),
    )
    .await
    .unwrap();
    let edited = std::time::Instant::now();
    eventually(
        Duration::from_secs(60),
        "the hand edit of the apex Service to be undone, with a RoutesRestored Event",
        || async {
            apex_selector(&svcs.get("hourly").await.unwrap()) == "hourly-primary"
                && ns
                    .events_where("hourly", |_| true)
                    .await
                    .iter()
                    .any(|e| e.starts_with("Warning RoutesRestored"))
        },
    )
    .await
    .unwrap();
    eprintln!(
        "hand edit undone {:?} after it was made (interval 1h)",
        edited.elapsed()
    );
    // The audit log holds fledge's reads: the woken Canary read its apex back.
    assert!(
        service_reads_by_fledge(&ns, "hourly") > hourly_reads,
        "no read of the edited apex Service by fledge in the audit log"
    );
}
