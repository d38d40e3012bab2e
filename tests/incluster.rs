//! The controller running as it runs in a cluster: the chart rendered by `helm template`, its
//! ServiceAccount, ClusterRole and ClusterRoleBinding applied to the local control plane (and no
//! other permission), and the rendered Deployment's two replicas run as pods would be: the
//! image's own binary under podman (crun) from the OCI archive of `cargo xtask image`, the
//! rendered args (with `$(VAR)` expanded as the kubelet does) and env (fieldRefs resolved), the
//! securityContext (user 65532, read-only root, no capabilities, no new privileges), the
//! emptyDir at /tmp, the memory limit and CPU request, a ServiceAccount token and the cluster CA
//! at the in-cluster paths, `KUBERNETES_SERVICE_HOST`/`PORT` and no kubeconfig; each pod in a
//! network namespace of its own with an address on a private /24 (see `fledge_e2e::incluster`).
//!
//! Checked: both pods' probes answer on the pod's address, exactly one replica leads (the
//! Lease's holder, `/readyz` says leader; the other says standby), a blue/green Canary
//! initializes and a new revision is promoted, no request of either replica was refused (no
//! `forbidden` in the logs, no reconcile error but an optimistic-concurrency conflict, which is
//! planned again on fresh state) and the leader counted its API requests
//! in `/metrics`; then the leader's container is killed, the standby takes the Lease over and
//! promotes the next revision.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::incluster::{
    ControllerSpec, Created, PodFacts, Podman, Pods, SA_MOUNT, api_server, counter_samples,
    cpu_shares, expand, find_kind, helm, image_archive, podman_memory, render_chart, require_tools,
    resolve_env,
};
use fledge_e2e::{Hook, TestNs, deployment_json, eventually, image_of, root};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const V3: &str = "ghcr.io/stefanprodan/podinfo:6.0.2";

/// A blue/green Canary on the `kubernetes` provider with a `rollout` webhook.
fn bluegreen(name: &str, hook_url: &str) -> serde_json::Value {
    json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {
                "interval": "2s",
                "threshold": 2,
                "iterations": 2,
                "webhooks": [{"name": "acceptance", "type": "rollout", "url": hook_url, "timeout": "2s"}]
            }
        }
    })
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client")
}

/// `(status, body)` of a GET, or `None` when nothing answers.
async fn get(url: &str) -> Option<(u16, String)> {
    let resp = http().get(url).send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.unwrap_or_default()))
}

/// The pods' log tails, for failure messages.
fn logs(pods: &Pods) -> String {
    pods.pods
        .iter()
        .map(|p| format!("--- {} ({}):\n{}", p.name, p.log.display(), p.log_tail(25)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits for a Canary phase; fails with its status, its Events and the pods' logs.
async fn wait_phase(ns: &TestNs, pods: &Pods, name: &str, phase: CanaryPhase, secs: u64) {
    let api = ns.api::<Canary>();
    let reached = eventually(Duration::from_secs(secs), &format!("phase {phase}"), || {
        let api = api.clone();
        async move {
            api.get(name)
                .await
                .ok()
                .and_then(|c| c.status)
                .is_some_and(|s| s.phase == phase)
        }
    })
    .await;
    if let Err(e) = reached {
        let status = api.get(name).await.ok().and_then(|c| c.status);
        panic!(
            "Canary {}/{name}: {e}\nstatus: {status:#?}\nevents:\n{}\n{}",
            ns.name,
            ns.events(name).await.join("\n"),
            logs(pods)
        );
    }
}

/// The roles `/readyz` reports, by pod index (`None`: not ready or not answering).
async fn roles(pods: &Pods, spec: &ControllerSpec) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for p in &pods.pods {
        let r = get(&p.url(spec.readiness.port, &spec.readiness.path)).await;
        out.push(match r {
            Some((200, body)) => Some(body),
            _ => None,
        });
    }
    out
}

async fn lease_holder(client: &kube::Client, namespace: &str, lease: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), namespace)
        .get_opt(lease)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// Waits until pod `idx` is the one leader: the Lease names it, its `/readyz` says leader and
/// every other live pod's says standby.
async fn wait_leader(
    ns: &TestNs,
    pods: &Pods,
    spec: &ControllerSpec,
    lease_ns: &str,
    lease: &str,
    live: &[usize],
    secs: u64,
) -> usize {
    let names: Vec<String> = pods.pods.iter().map(|p| p.name.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let holder = lease_holder(&ns.client, lease_ns, lease).await;
        let roles = roles(pods, spec).await;
        if let Some(i) = holder
            .as_ref()
            .and_then(|h| names.iter().position(|n| n == h))
            && live.contains(&i)
        {
            let leaders: Vec<usize> = live
                .iter()
                .copied()
                .filter(|j| roles[*j].as_deref().is_some_and(|r| r.contains("leader")))
                .collect();
            let standby = live
                .iter()
                .filter(|j| **j != i)
                .all(|j| roles[*j].as_deref().is_some_and(|r| r.contains("standby")));
            if leaders == [i] && standby {
                return i;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "no single leader among {names:?} (live: {live:?}) after {secs}s: Lease \
                 {lease_ns}/{lease} holder {holder:?}, /readyz {roles:?}\n{}",
                logs(pods)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies a rendered object (server-side apply).
async fn apply<K>(api: &Api<K>, doc: &serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let obj: K = serde_json::from_value(doc.clone()).expect("a rendered object");
    let name = doc["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply("fledge-e2e-incluster").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("applying the chart's {} {name}: {e}", doc["kind"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_runs_the_image_as_two_pods_with_its_rbac_alone() {
    let started = Instant::now();
    require_tools().unwrap_or_else(|e| panic!("{e}"));
    let helm = helm().unwrap_or_else(|e| panic!("{e}"));
    let archive = image_archive().unwrap_or_else(|e| panic!("{e}"));
    let podman = Podman::probe();

    // Where the Canary lives; the controller watches it alone (watchNamespace), so that it
    // leaves the other tests' namespaces to their own controllers.
    let ns = TestNs::new("incluster").await;
    let run = format!("{}", std::process::id() % 100000);
    let release = format!("fledge-inc-{run}");
    let release_ns = format!("fledge-incluster-{run}");
    let docs = render_chart(
        &helm,
        &release,
        &release_ns,
        &[format!("watchNamespace={}", ns.name)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let deployment = find_kind(&docs, "Deployment").unwrap();
    let spec = ControllerSpec::from_deployment(deployment).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.replicas, 2, "the chart runs two replicas by default");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        spec.image.ends_with(&format!(":{version}")),
        "the chart's image {} is not the version the archive holds ({version})",
        spec.image
    );
    assert!(
        spec.read_only_root && spec.no_new_privileges && spec.drop_all_capabilities,
        "the rendered container is not hardened: {spec:?}"
    );

    // The chart's ServiceAccount and RBAC, and nothing else.
    let mut created = Created {
        objects: Vec::new(),
    };
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    created.objects.push(format!("namespace/{release_ns}"));
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": release_ns}})).unwrap(),
        )
        .await
        .expect("the release namespace");
    let sa_doc = find_kind(&docs, "ServiceAccount").unwrap();
    assert_eq!(sa_doc["metadata"]["name"], spec.service_account.as_str());
    let sas: Api<ServiceAccount> = Api::namespaced(ns.client.clone(), &release_ns);
    apply(&sas, sa_doc).await;
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        let doc = find_kind(&docs, kind).unwrap();
        created.objects.push(format!(
            "{}/{}",
            kind.to_lowercase(),
            doc["metadata"]["name"].as_str().unwrap()
        ));
        if kind == "ClusterRole" {
            apply(&Api::<ClusterRole>::all(ns.client.clone()), doc).await;
        } else {
            apply(&Api::<ClusterRoleBinding>::all(ns.client.clone()), doc).await;
        }
    }

    // The pods' network, and the test's rollout webhook reachable from it.
    let (api_port, ca) = api_server().unwrap();
    let dir = root().join("target/incluster").join(&run);
    let _ = std::fs::remove_dir_all(&dir);
    let mut pods = Pods::network(podman, &dir, api_port).unwrap_or_else(|e| panic!("{e}"));
    let hook = Hook::start(200).await.unwrap();
    let hook_addr = pods
        .expose_host_port(hook.addr.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let hook_url = format!("http://{hook_addr}/rollout");

    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    ns.create::<Canary>(bluegreen("podinfo", &hook_url)).await;

    // Each replica: its network, a token of the chart's ServiceAccount, the env and args of the
    // rendered Deployment.
    let service_vars = vec![
        (
            "KUBERNETES_SERVICE_HOST".to_string(),
            "127.0.0.1".to_string(),
        ),
        ("KUBERNETES_SERVICE_PORT".to_string(), api_port.to_string()),
        (
            "KUBERNETES_SERVICE_PORT_HTTPS".to_string(),
            api_port.to_string(),
        ),
        (
            "KUBERNETES_PORT".to_string(),
            format!("tcp://127.0.0.1:{api_port}"),
        ),
    ];
    let mut lease_ns = release_ns.clone();
    let mut lease_name = "fledge-leader".to_string();
    let mut launches = Vec::new();
    for i in 0..spec.replicas as usize {
        let pod_name = format!("fledge-{i}");
        let idx = pods
            .add_pod_network(&pod_name)
            .unwrap_or_else(|e| panic!("{e}"));
        let ip = pods.pods[idx].ip;

        let request: TokenRequest = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        }))
        .unwrap();
        let issued: TokenRequest = sas
            .create_subresource(
                "token",
                &spec.service_account,
                &PostParams::default(),
                &request,
            )
            .await
            .expect("a token of the chart's ServiceAccount");
        let token = issued.status.expect("the token").token;
        let sa_dir = dir.join(&pod_name).join("serviceaccount");
        std::fs::create_dir_all(&sa_dir).unwrap();
        for (file, content) in [
            ("token", token.as_bytes()),
            ("ca.crt", ca.as_slice()),
            ("namespace", release_ns.as_bytes()),
        ] {
            let path = sa_dir.join(file);
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(&sa_dir, std::fs::Permissions::from_mode(0o755)).unwrap();

        let env = resolve_env(
            &spec.env,
            &service_vars,
            &PodFacts {
                name: &pod_name,
                namespace: &release_ns,
                ip,
                node: "kwok-node-0",
                service_account: &spec.service_account,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let vars: BTreeMap<String, String> = env.iter().cloned().collect();
        let args: Vec<String> = spec.args.iter().map(|a| expand(a, &vars)).collect();
        for a in &args {
            assert!(!a.contains("$("), "an unresolved reference in {a}");
            if let Some(n) = a.strip_prefix("--lease-namespace=") {
                lease_ns = n.to_string();
            }
            if let Some(n) = a.strip_prefix("--lease-name=") {
                lease_name = n.to_string();
            }
        }
        assert!(
            args.contains(&format!("--identity={pod_name}")),
            "the pod's name is its identity: {args:?}"
        );

        let mut flags = vec![
            format!("--user={}:{}", spec.user, spec.group),
            format!("--volume={}:{SA_MOUNT}:ro", sa_dir.display()),
            "--read-only-tmpfs=false".to_string(),
        ];
        if let Some(g) = spec.fs_group {
            flags.push(format!("--group-add={g}"));
        }
        if spec.read_only_root {
            flags.push("--read-only".into());
        }
        if spec.drop_all_capabilities {
            flags.push("--cap-drop=ALL".into());
        }
        if spec.no_new_privileges {
            flags.push("--security-opt=no-new-privileges".into());
        }
        for path in &spec.empty_dirs {
            flags.push(format!("--tmpfs={path}:rw,mode=0777"));
        }
        if let Some(m) = &spec.memory_limit {
            flags.push(format!("--memory={}", podman_memory(m).unwrap()));
        }
        if let Some(c) = &spec.cpu_request {
            flags.push(format!("--cpu-shares={}", cpu_shares(c).unwrap()));
        }
        if let Some(cmd) = &spec.command {
            let cmd: Vec<String> = cmd.iter().map(|a| expand(a, &vars)).collect();
            flags.push(format!(
                "--entrypoint={}",
                serde_json::to_string(&cmd).unwrap()
            ));
        }
        for (k, v) in &env {
            flags.push(format!("--env={k}={v}"));
        }
        launches.push((idx, flags, args));
    }
    let launched = Instant::now();
    for (idx, flags, args) in &launches {
        pods.start(*idx, &archive, flags, args)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    // The probes answer on each pod's address, as the kubelet would ask them; a container that
    // exits (podman or crun refusing to run it, the binary failing) fails the test at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..pods.pods.len() {
        let live = pods.pods[i].url(spec.liveness.port, &spec.liveness.path);
        let ready = pods.pods[i].url(spec.readiness.port, &spec.readiness.path);
        loop {
            if matches!(get(&live).await, Some((200, _)))
                && matches!(get(&ready).await, Some((200, _)))
            {
                break;
            }
            let exited = pods.exited(i);
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "{live} and {ready} did not both answer 200 (podman run exited: {exited:?}; \
                     podman run as: {:?}); podman's and the pods' output:\n{}",
                    pods.podman.notes,
                    logs(&pods)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let all_ready = launched.elapsed();

    // The kernel's view of each pod's process: the chart's user, no capabilities, no new
    // privileges, a read-only root, a seccomp filter.
    for (i, p) in pods.pods.iter().enumerate() {
        let (facts, root_ro) = pods
            .process_facts(i)
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let uid = facts.get("Uid").cloned().unwrap_or_default();
        let user = spec.user.to_string();
        assert!(
            uid.split(' ').all(|u| u == user),
            "{} runs as uid {uid}, not {user}",
            p.name
        );
        if let Some(g) = spec.fs_group {
            let groups = facts.get("Groups").cloned().unwrap_or_default();
            assert!(
                groups.split(' ').any(|x| x == g.to_string()),
                "{}'s supplementary groups {groups:?} lack the fsGroup {g}",
                p.name
            );
        }
        assert_eq!(
            facts.get("NoNewPrivs").map(String::as_str),
            Some("1"),
            "{}",
            p.name
        );
        assert_eq!(
            facts.get("CapEff").map(String::as_str),
            Some("0000000000000000"),
            "{} holds capabilities",
            p.name
        );
        assert!(root_ro, "{}'s root filesystem is writable", p.name);
        // seccompProfile RuntimeDefault: the runtime's default filter (mode 2, filtering).
        assert_eq!(
            facts.get("Seccomp").map(String::as_str),
            Some("2"),
            "{} runs without a seccomp filter",
            p.name
        );
    }
    let leader = wait_leader(&ns, &pods, &spec, &lease_ns, &lease_name, &[0, 1], 60).await;
    let time_to_leader = launched.elapsed();
    let standby = 1 - leader;

    // A blue/green rollout under the leader.
    wait_phase(&ns, &pods, "podinfo", CanaryPhase::Initialized, 90).await;
    let initialized = launched.elapsed();
    ns.set_image("podinfo", V2).await;
    wait_phase(&ns, &pods, "podinfo", CanaryPhase::Succeeded, 120).await;
    let promoted = launched.elapsed();
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V2);
    assert!(
        !hook.calls("/rollout").is_empty(),
        "the rollout webhook was called from the pod network"
    );

    // Every request succeeded with the chart's RBAC alone, and the leader counted them.
    let mut requests = Vec::new();
    for p in &pods.pods {
        let log = p.log_text().to_lowercase();
        for word in ["forbidden", " 403", "\"403\"", "code: 403"] {
            assert!(
                !log.contains(word),
                "{} met a refusal ({word}) with the chart's RBAC:\n{}",
                p.name,
                p.log_tail(40)
            );
        }
        let (code, text) = get(&p.url(spec.readiness.port, "/metrics"))
            .await
            .unwrap_or_else(|| panic!("{}'s /metrics does not answer", p.name));
        assert_eq!(code, 200);
        let samples = counter_samples(&text, "fledge_kube_requests");
        requests.push(samples.values().sum::<f64>());
        let errors = counter_samples(&text, "fledge_reconcile_errors");
        eprintln!(
            "incluster: {} API requests by verb: {samples:?}; reconcile errors: {errors:?}",
            p.name
        );
        // A reconcile may lose an optimistic-concurrency race (409 Conflict: the test or the
        // other replica wrote the Canary first); it is then planned again on fresh state, as
        // designed, and neither logged as a failure nor counted as an error. Any failure is a
        // defect.
        let text_log = p.log_text();
        let failed: Vec<&str> = text_log
            .lines()
            .filter(|l| l.contains("\"reconcile failed\""))
            .collect();
        assert!(
            failed.is_empty(),
            "{} failed reconciles:\n{}",
            p.name,
            failed.join("\n")
        );
        assert!(
            errors.values().all(|n| *n == 0.0),
            "{} counted reconcile errors {errors:?}:\n{}",
            p.name,
            p.log_tail(40)
        );
    }
    assert!(
        requests[leader] > 0.0,
        "the leader counted no API request in fledge_kube_requests"
    );

    // The leader dies; the standby takes the Lease over and promotes the next revision.
    let killed = Instant::now();
    pods.kill_pod(leader).unwrap_or_else(|e| panic!("{e}"));
    let new_leader = wait_leader(&ns, &pods, &spec, &lease_ns, &lease_name, &[standby], 90).await;
    assert_eq!(new_leader, standby);
    let takeover = killed.elapsed();
    ns.set_image("podinfo", V3).await;
    wait_phase(&ns, &pods, "podinfo", CanaryPhase::Progressing, 60).await;
    wait_phase(&ns, &pods, "podinfo", CanaryPhase::Succeeded, 120).await;
    assert_eq!(image_of(&ns.deployment("podinfo-primary").await), V3);
    let log = pods.pods[standby].log_text().to_lowercase();
    assert!(
        !log.contains("forbidden"),
        "the new leader met a refusal:\n{}",
        pods.pods[standby].log_tail(40)
    );
    let (_, text) = get(&pods.pods[standby].url(spec.readiness.port, "/metrics"))
        .await
        .expect("the new leader's /metrics");
    let after = counter_samples(&text, "fledge_kube_requests")
        .values()
        .sum::<f64>();
    let errors = counter_samples(&text, "fledge_reconcile_errors");
    assert!(
        errors.values().all(|n| *n == 0.0),
        "the new leader counted reconcile errors {errors:?}"
    );

    eprintln!(
        "incluster: podman ran {} ({}); both pods ready {:.1}s after podman run, {} leading at \
         {:.1}s; Canary initialized at {:.1}s, revision 2 promoted at {:.1}s; API requests: \
         leader {}, standby {}; leader killed: {} took over in {:.1}s and promoted revision 3 \
         ({} requests in all); test {:.0}s",
        archive.display(),
        pods.podman.notes.join("; "),
        all_ready.as_secs_f64(),
        pods.pods[leader].name,
        time_to_leader.as_secs_f64(),
        initialized.as_secs_f64(),
        promoted.as_secs_f64(),
        requests[leader],
        requests[standby],
        pods.pods[standby].name,
        takeover.as_secs_f64(),
        after,
        started.elapsed().as_secs_f64()
    );
    // The Canary's finalizer is the controller's to remove: delete it while a replica runs.
    let canaries = ns.api::<Canary>();
    canaries
        .delete("podinfo", &DeleteParams::default())
        .await
        .expect("delete the Canary");
    eventually(
        Duration::from_secs(60),
        "the Canary to be finalized",
        || async { matches!(canaries.get_opt("podinfo").await, Ok(None)) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&pods)));
    drop(pods);
    drop(created);
}
