//! End-to-end tests of `kubectl fledge` on the local control plane: the plugin as its own
//! process steering rollouts that `fledge run` carries out.

use std::time::Duration;

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::plugin::{self, run};
use fledge_e2e::{Hook, TestNs, deployment_json, image_of};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use tokio::io::{AsyncBufReadExt, BufReader};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const INIT: Duration = Duration::from_secs(90);
const ROLLOUT: Duration = Duration::from_secs(150);

/// A blue/green Canary on the `kubernetes` provider with a `rollout` webhook.
fn bluegreen(
    name: &str,
    hook_url: &str,
    interval: &str,
    iterations: i32,
    threshold: i32,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {
                "interval": interval,
                "threshold": threshold,
                "iterations": iterations,
                "webhooks": [{"name": "acceptance", "type": "rollout", "url": hook_url, "timeout": "2s"}]
            }
        }
    })
}

/// Creates the Deployments and Canaries, starts the controller and waits until every Canary
/// is initialized.
async fn set_up(ns: &TestNs, canaries: Vec<serde_json::Value>) {
    // Built before anything starts, so that no request waits for a build mid-rollout.
    plugin::binary();
    for c in &canaries {
        let name = c["metadata"]["name"].as_str().unwrap();
        ns.create::<Deployment>(deployment_json(name, V1, 1)).await;
        ns.create::<Canary>(c.clone()).await;
    }
    ns.start_controller(&[]);
    for c in &canaries {
        let name = c["metadata"]["name"].as_str().unwrap();
        ns.wait_phase(name, CanaryPhase::Initialized, INIT).await;
    }
}

fn status(c: &Canary) -> fledge_api::CanaryStatus {
    c.status.clone().unwrap_or_default()
}

/// The last request's outcome as recorded in the status.
async fn last_request(ns: &TestNs, name: &str) -> fledge_api::RequestOutcome {
    let c = ns.api::<Canary>().get(name).await.unwrap();
    *status(&c)
        .last_request
        .expect("a request outcome in the status")
}

/// Who the plugin says the user is (the kubeconfig's user, from SelfSubjectReview).
async fn me(ns: &TestNs) -> String {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: kube::Api<SelfSubjectReview> = kube::Api::all(ns.client.clone());
    let r = api
        .create(&Default::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview");
    r.status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .expect("a user name")
}

async fn has_event(ns: &TestNs, name: &str, reason: &str, words: &str) {
    let events = ns.events(name).await;
    assert!(
        events
            .iter()
            .any(|e| e.contains(reason) && e.contains(words)),
        "no {reason} Event with {words:?}: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_and_abort_mid_rollout() {
    let ns = TestNs::new("plugin-pa").await;
    let hook = Hook::start(200).await.unwrap();
    set_up(
        &ns,
        vec![
            bluegreen("fast", &hook.url("/rollout"), "1s", 100, 2),
            bluegreen("back", &hook.url("/rollout"), "1s", 100, 2),
        ],
    )
    .await;
    let user = me(&ns).await;
    ns.set_image("fast", V2).await;
    ns.set_image("back", V2).await;
    for name in ["fast", "back"] {
        ns.wait_canary(name, ROLLOUT, "a step of the analysis", |c| {
            status(c).phase == CanaryPhase::Progressing && status(c).iterations >= 1
        })
        .await;
    }

    let out = run(&ns, &["promote", "fast"]).await.ok();
    assert_eq!(
        out.trim(),
        format!(
            "{}/fast: promote requested by {user}: skipping the remaining analysis",
            ns.name
        )
    );
    let done = ns.wait_phase("fast", CanaryPhase::Succeeded, ROLLOUT).await;
    assert!(status(&done).iterations < 100, "the analysis was cut short");
    assert_eq!(image_of(&ns.deployment("fast-primary").await), V2);
    let last = last_request(&ns, "fast").await;
    assert!(last.accepted);
    assert_eq!(last.request.user, user);
    assert_eq!(status(&done).request, None, "the request was consumed");
    has_event(
        &ns,
        "fast",
        "PromoteRequested",
        &format!("promote requested by {user}"),
    )
    .await;

    let out = run(&ns, &["abort", "back"]).await.ok();
    assert_eq!(
        out.trim(),
        format!("{}/back: abort requested by {user}: rolling back", ns.name)
    );
    let failed = ns.wait_phase("back", CanaryPhase::Failed, ROLLOUT).await;
    assert_eq!(status(&failed).canary_weight, 0);
    assert_eq!(image_of(&ns.deployment("back-primary").await), V1);
    has_event(&ns, "back", "AbortRequested", &user).await;
    has_event(&ns, "back", "RolledBack", &format!("aborted by {user}")).await;

    // Neither fits any more: clear errors, nothing written.
    let err = run(&ns, &["promote", "fast"]).await.err();
    assert_eq!(
        err.trim(),
        format!(
            "Error: cannot promote {}/fast: no rollout is in progress (it is Succeeded)",
            ns.name
        )
    );
    let err = run(&ns, &["abort", "back"]).await.err();
    assert!(
        err.contains("no rollout is in progress (it is Failed)"),
        "{err}"
    );
    let err = run(&ns, &["promote", "missing"]).await.err();
    assert_eq!(
        err.trim(),
        format!("Error: no Canary \"missing\" in namespace \"{}\"", ns.name)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_a_failure() {
    let ns = TestNs::new("plugin-retry").await;
    let hook = Hook::start(500).await.unwrap();
    set_up(
        &ns,
        vec![bluegreen("podinfo", &hook.url("/rollout"), "1s", 2, 1)],
    )
    .await;
    let err = run(&ns, &["retry", "podinfo"]).await.err();
    assert!(
        err.contains("only a Failed rollout can be retried (it is Initialized)"),
        "{err}"
    );
    ns.set_image("podinfo", V2).await;
    let failed = ns.wait_phase("podinfo", CanaryPhase::Failed, ROLLOUT).await;
    assert_eq!(status(&failed).failed_checks, 1);
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V1);

    hook.set_status(200);
    let out = run(&ns, &["retry", "podinfo"]).await.ok();
    assert!(out.contains("retry requested by"), "{out}");
    assert!(out.ends_with(": rolling the revision out again\n"), "{out}");
    let done = ns
        .wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    assert_eq!(status(&done).failed_checks, 0);
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
    has_event(&ns, "podinfo", "RetryRequested", "retry requested by").await;
    // For scripts: the object as JSON, with the outcome of the request.
    let json = run(&ns, &["get", "podinfo", "-o", "json"]).await.ok();
    let c: Canary = serde_json::from_str(&json).expect("a Canary in JSON");
    let last = status(&c).last_request.expect("the outcome");
    assert_eq!(last.request.action, fledge_api::RequestAction::Retry);
    assert!(last.accepted);
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_and_resume() {
    let ns = TestNs::new("plugin-pause").await;
    let hook = Hook::start(200).await.unwrap();
    // Long enough (30 steps of 2 s) that the pause lands mid-analysis.
    set_up(
        &ns,
        vec![bluegreen("podinfo", &hook.url("/rollout"), "2s", 30, 2)],
    )
    .await;
    ns.set_image("podinfo", V2).await;
    ns.wait_canary("podinfo", ROLLOUT, "a step of the analysis", |c| {
        status(c).iterations >= 1
    })
    .await;
    let out = run(&ns, &["pause", "podinfo"]).await.ok();
    assert!(out.contains(": nothing moves until resumed"), "{out}");
    let paused = ns.api::<Canary>().get("podinfo").await.unwrap();
    assert_eq!(status(&paused).phase, CanaryPhase::Progressing);
    assert!(status(&paused).paused.is_some());
    let at = status(&paused).iterations;
    let calls = hook.calls("/rollout").len();
    // Three reconciles later nothing has moved: no step, no webhook call.
    ns.wait_reconciles(0, 3, Duration::from_secs(60)).await;
    let still = ns.api::<Canary>().get("podinfo").await.unwrap();
    assert_eq!(status(&still).iterations, at);
    assert_eq!(status(&still).phase, CanaryPhase::Progressing);
    assert_eq!(
        hook.calls("/rollout").len(),
        calls,
        "no analysis while paused"
    );
    let tree = run(&ns, &["get", "podinfo"]).await.ok();
    assert!(tree.contains("  PAUSED by "), "{tree}");
    assert!(tree.contains("Next:      nothing until resumed"), "{tree}");
    let err = run(&ns, &["pause", "podinfo"]).await.err();
    assert!(err.contains("it is already paused (by "), "{err}");

    let out = run(&ns, &["resume", "podinfo"]).await.ok();
    assert!(out.contains(": carrying on"), "{out}");
    ns.wait_canary("podinfo", ROLLOUT, "the analysis going on", |c| {
        status(c).iterations > at
    })
    .await;
    assert!(hook.calls("/rollout").len() > calls);
    run(&ns, &["promote", "podinfo"]).await.ok();
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    has_event(&ns, "podinfo", "PauseRequested", "pause requested by").await;
    has_event(&ns, "podinfo", "ResumeRequested", "resume requested by").await;
}

/// Whether the last check of a gate says it is closed.
fn gate_closed(c: &Canary, gate: &str) -> bool {
    status(c)
        .rollout
        .is_some_and(|r| r.checks.iter().any(|k| k.kind == gate && !k.passed))
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_each_gate_type() {
    let ns = TestNs::new("plugin-gates").await;
    // A load tester that never opens a gate.
    let gates = Hook::start(403).await.unwrap();
    let name = "podinfo";
    let canary = serde_json::json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {
                "interval": "1s", "threshold": 2, "stepWeight": 50, "maxWeight": 50,
                "webhooks": [
                    {"name": "start", "type": "confirm-rollout", "url": gates.url("/start")},
                    {"name": "more", "type": "confirm-traffic-increase", "url": gates.url("/more")},
                    {"name": "ship", "type": "confirm-promotion", "url": gates.url("/ship")}
                ]
            }
        }
    });
    set_up(&ns, vec![canary]).await;
    ns.set_image(name, V2).await;
    ns.wait_phase(name, CanaryPhase::Waiting, ROLLOUT).await;

    // Without --gate: the gate the Canary waits for.
    let out = run(&ns, &["approve", name]).await.ok();
    assert!(
        out.contains(": approve confirm-rollout requested by "),
        "{out}"
    );
    assert!(
        out.ends_with(": the confirm-rollout gate opens once\n"),
        "{out}"
    );
    ns.wait_canary(
        name,
        ROLLOUT,
        "the traffic increase held by its gate",
        |c| gate_closed(c, "confirm-traffic-increase"),
    )
    .await;
    let c = ns.api::<Canary>().get(name).await.unwrap();
    assert_eq!(status(&c).phase, CanaryPhase::Progressing);
    assert_eq!(status(&c).canary_weight, 0);
    let tree = run(&ns, &["get", name]).await.ok();
    println!("kubectl fledge get {name} (held at the traffic increase):\n{tree}");
    assert!(
        tree.contains("├── gate more (confirm-traffic-increase)  closed at "),
        "{tree}"
    );

    run(
        &ns,
        &["approve", name, "--gate", "confirm-traffic-increase"],
    )
    .await
    .ok();
    ns.wait_phase(name, CanaryPhase::WaitingPromotion, ROLLOUT)
        .await;
    let c = ns.api::<Canary>().get(name).await.unwrap();
    assert_eq!(status(&c).canary_weight, 50);

    let err = run(&ns, &["approve", name, "--gate", "confirm-rollout"])
        .await
        .err();
    assert!(
        err.contains("the confirm-rollout gate is consulted only while a new revision is Waiting to start (it is WaitingPromotion)"),
        "{err}"
    );
    run(&ns, &["approve", name, "--gate", "confirm-promotion"])
        .await
        .ok();
    ns.wait_phase(name, CanaryPhase::Succeeded, ROLLOUT).await;
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
    for path in ["/start", "/more", "/ship"] {
        assert!(!gates.calls(path).is_empty(), "the {path} gate was asked");
    }
    // Events of one reason form a series that keeps its first message.
    has_event(
        &ns,
        name,
        "GateApproved",
        "confirm-rollout gate of podinfo opened: approved by ",
    )
    .await;
    let c = ns.api::<Canary>().get(name).await.unwrap();
    let checks = status(&c).rollout.unwrap_or_default().checks;
    for gate in ["confirm-traffic-increase", "confirm-promotion"] {
        let check = checks.iter().find(|k| k.kind == gate).expect("recorded");
        assert!(check.passed, "{check:?}");
        assert!(check.message.starts_with("opened by "), "{check:?}");
    }
    let last = last_request(&ns, name).await;
    assert!(last.accepted);
    assert_eq!(last.request.gate, Some(fledge_api::Gate::ConfirmPromotion));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_rbac_permission_is_refused() {
    let ns = TestNs::new("plugin-rbac").await;
    let hook = Hook::start(200).await.unwrap();
    set_up(
        &ns,
        vec![bluegreen("podinfo", &hook.url("/rollout"), "2s", 3, 2)],
    )
    .await;
    // A ServiceAccount that may read Canaries, not write their status.
    ns.create::<ServiceAccount>(serde_json::json!({"metadata": {"name": "viewer"}}))
        .await;
    ns.create::<Role>(serde_json::json!({
        "metadata": {"name": "canary-viewer"},
        "rules": [{"apiGroups": ["fledge.dev"], "resources": ["canaries"],
                   "verbs": ["get", "list", "watch"]}]
    }))
    .await;
    ns.create::<RoleBinding>(serde_json::json!({
        "metadata": {"name": "canary-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "canary-viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns.name}]
    }))
    .await;
    let viewer = format!("system:serviceaccount:{}:viewer", ns.name);
    // RBAC bindings take effect asynchronously in the authorizer's cache: wait until reads work.
    fledge_e2e::eventually(
        Duration::from_secs(30),
        "the viewer may list Canaries",
        || async { run(&ns, &["get", "--as", &viewer]).await.code == Some(0) },
    )
    .await
    .unwrap();
    let table = run(&ns, &["get", "--as", &viewer]).await.ok();
    assert!(table.starts_with("NAME "), "{table}");

    let err = run(&ns, &["pause", "podinfo", "--as", &viewer]).await.err();
    assert_eq!(
        err.trim(),
        format!(
            "Error: {viewer} may not pause Canary {0}/podinfo: RBAC does not allow the verb \
             \"patch\" on \"canaries/status\" (API group fledge.dev) in namespace \"{0}\"",
            ns.name
        )
    );
    let c = ns.api::<Canary>().get("podinfo").await.unwrap();
    assert_eq!(status(&c).request, None, "nothing was written");
    assert_eq!(status(&c).paused, None);

    // Someone who may not even read Canaries.
    let err = run(&ns, &["promote", "podinfo", "--as", "nobody"])
        .await
        .err();
    assert_eq!(
        err.trim(),
        format!(
            "Error: nobody may not read Canary {0}/podinfo: RBAC does not allow the verb \"get\" \
             on \"canaries\" (API group fledge.dev) in namespace \"{0}\"",
            ns.name
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn get_watch_prints_one_line_per_change() {
    let ns = TestNs::new("plugin-watch").await;
    let hook = Hook::start(200).await.unwrap();
    set_up(
        &ns,
        vec![bluegreen("podinfo", &hook.url("/rollout"), "1s", 3, 2)],
    )
    .await;
    let mut child = plugin::command(&ns, &["get", "podinfo", "-w"])
        .spawn()
        .expect("start kubectl fledge get -w");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read a line") {
            if seen.is_empty() {
                // The first line is the state before the change: now roll out.
                ns.set_image("podinfo", V2).await;
            }
            let done = line.contains(" Succeeded ");
            seen.push(line);
            if done {
                break;
            }
        }
    };
    if tokio::time::timeout(ROLLOUT, read).await.is_err() {
        panic!("no Succeeded line; lines so far: {seen:#?}");
    }
    let _ = child.kill().await;
    let p = format!("{}/podinfo", ns.name);
    let expected: Vec<String> = [
        "Initialized weight 0% iteration 0/3 failed 0/2",
        "Progressing weight 0% iteration 0/3 failed 0/2",
        "Progressing weight 0% iteration 1/3 failed 0/2",
        "Progressing weight 0% iteration 2/3 failed 0/2",
        "Progressing weight 0% iteration 3/3 failed 0/2",
        "Promoting weight 100% iteration 3/3 failed 0/2",
        "Finalising weight 0% iteration 3/3 failed 0/2",
        "Succeeded weight 0% iteration 3/3 failed 0/2",
    ]
    .iter()
    .map(|l| format!("{p} {l}"))
    .collect();
    assert_eq!(seen, expected);
}
