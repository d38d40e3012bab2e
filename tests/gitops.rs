//! The Git ledger end to end: `fledge run` on the local control plane, a real `git daemon` on
//! loopback, and rollouts whose records must land in the repository, one file per rollout and
//! one commit when it starts and one when it ends, in order, even when the Git server was down
//! for the whole rollout and the controller restarted meanwhile.

use std::time::{Duration, Instant};

use fledge_api::{Canary, CanaryPhase, ImageRef};
use fledge_e2e::git::{GitDaemon, git};
use fledge_e2e::{Hook, TestNs, deployment_json, eventually, root};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::ListParams;
use serde_json::json;

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
const ROLLOUT: Duration = Duration::from_secs(120);

/// The Deployment manifest as the GitOps repository holds it.
fn manifest(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\nspec:\n  template:\n    spec:\n      containers:\n        - name: podinfo\n          image: {image} # {{\"$imagepolicy\": \"flux-system:podinfo\"}}\n"
    )
}

/// A blue/green Canary with a passing `rollout` webhook and `spec.gitops` on `url`.
fn canary(hook: &str, url: &str) -> serde_json::Value {
    json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {"interval": "2s", "threshold": 2, "iterations": 2,
                         "webhooks": [{"name": "ok", "type": "rollout", "url": hook}]},
            "gitops": {"repository": {"url": url, "branch": "main"},
                       "path": "deploy/podinfo.yaml"},
        },
    })
}

fn start_controller(ns: &TestNs) -> usize {
    let work = root()
        .join("target/e2e-logs")
        .join(format!("{}-gitwork", ns.name));
    ns.start_controller(&["--git-workdir", &work.to_string_lossy()])
}

/// One Canary `podinfo` on V1 with `spec.gitops` on a fresh repository holding the V1 manifest,
/// a `rollout` webhook answering `hook_status`, `edit` applied to the Canary, and a controller
/// (its index returned), waited for until `Initialized`.
async fn initialized(
    prefix: &str,
    hook_status: u16,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (TestNs, GitDaemon, Hook, String, usize) {
    let ns = TestNs::new(prefix).await;
    let daemon = GitDaemon::start_new(&ns.name).unwrap();
    let url = daemon
        .create_repo("app", &[("deploy/podinfo.yaml", &manifest(V1))])
        .unwrap();
    let hook = Hook::start(hook_status).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let mut c = canary(&hook.url("/rollout"), &url);
    edit(&mut c);
    ns.create::<Canary>(c).await;
    let controller = start_controller(&ns);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    (ns, daemon, hook, url, controller)
}

/// Pushes the new image to the source repository, as a developer (or an image automation) does
/// before Flux applies it; returns the commit id.
fn release(daemon: &GitDaemon, image: &str) -> String {
    let c = daemon.clone_repo("app").unwrap();
    std::fs::write(c.dir.join("deploy/podinfo.yaml"), manifest(image)).unwrap();
    git(&c.dir, &["commit", "-qam", &format!("release {image}")]).unwrap();
    git(&c.dir, &["push", "-q", "origin", "HEAD:main"]).unwrap();
    git(&c.dir, &["rev-parse", "HEAD"])
        .unwrap()
        .trim()
        .to_string()
}

/// fledge's commits on `main`, oldest first.
fn fledge_commits(daemon: &GitDaemon) -> Vec<String> {
    let c = daemon.clone_repo("app").unwrap();
    let mut log: Vec<String> = c
        .log()
        .unwrap()
        .into_iter()
        .filter(|m| m.starts_with("fledge: "))
        .collect();
    log.reverse();
    log
}

async fn queue_len(ns: &TestNs) -> usize {
    ns.api::<ConfigMap>()
        .list(&ListParams::default().labels("fledge.dev/git-queue=true"))
        .await
        .map(|l| l.items.len())
        .unwrap_or(usize::MAX)
}

/// Checks the repository after one promoted rollout: exactly one ledger file, and two commits
/// (started, promoted) with their trailers.
fn check_ledger(daemon: &GitDaemon, ns: &TestNs, trigger: &str) {
    let commits = fledge_commits(daemon);
    assert_eq!(commits.len(), 2, "{commits:#?}");
    assert!(
        commits[0].starts_with(&format!(
            "fledge: {}/podinfo rollout started ({V2})",
            ns.name
        )),
        "{}",
        commits[0]
    );
    assert!(
        commits[1].starts_with(&format!("fledge: {}/podinfo promoted ({V2})", ns.name)),
        "{}",
        commits[1]
    );
    for c in &commits {
        assert!(
            c.contains(&format!("Fledge-Canary: {}/podinfo", ns.name)),
            "{c}"
        );
        assert!(c.contains("Fledge-Revision: "), "{c}");
    }
    assert!(
        commits[1].contains("Fledge-Result: promoted"),
        "{}",
        commits[1]
    );
    let c = daemon.clone_repo("app").unwrap();
    let files = c.files_under(".fledge/ledger");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].starts_with(&format!(".fledge/ledger/{}/podinfo/", ns.name)),
        "{files:?}"
    );
    let text = c.read(&files[0]);
    let record: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(record["kind"], "RolloutRecord", "{text}");
    assert_eq!(record["result"], "promoted", "{text}");
    assert_eq!(record["oldImages"], json!([V1]), "{text}");
    assert_eq!(record["newImages"], json!([V2]), "{text}");
    assert_eq!(record["trigger"]["commit"], trigger, "{text}");
    assert_eq!(record["trigger"]["path"], "deploy/podinfo.yaml", "{text}");
    let events: Vec<&str> = record["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(events, ["Started", "Promoted"], "{text}");
    // Every phase transition, each analysis step's webhook answer, the gates' last answers.
    let phases: Vec<&str> = record["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["phase"].as_str())
        .collect();
    assert_eq!(
        phases,
        ["Progressing", "Promoting", "Finalising", "Succeeded"],
        "{text}"
    );
    let steps = record["analysis"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{text}");
    for step in steps {
        assert_eq!(step["webhooks"][0]["name"], "ok", "{text}");
        assert_eq!(step["webhooks"][0]["passed"], true, "{text}");
    }
    assert!(
        record["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "rollout" && c["name"] == "ok" && c["passed"] == true),
        "{text}"
    );
    eprintln!(
        "ledger file {}:\n{text}\ncommits:\n{}",
        files[0],
        commits.join("\n---\n")
    );
}

/// How fledge reaches the repository.
#[derive(Clone, Copy, Debug)]
enum Transport {
    /// `git://` (git daemon, no credentials).
    Daemon,
    /// `http://` (git http-backend) with basic authentication from a Secret.
    Http,
    /// `ssh://` (OpenSSH) with a key and `known_hosts` from a Secret.
    Ssh,
    /// `git://` through a TCP proxy that adds 100 ms to every chunk and drops every connection
    /// every 6 s: pushes cut in the middle fail and are retried, and no record is lost or
    /// doubled.
    Lossy,
}

/// Creates the Secret `git-credentials` with `data` (string values).
async fn secret(ns: &TestNs, data: &[(&str, &str)]) {
    let data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    ns.create::<k8s_openapi::api::core::v1::Secret>(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "git-credentials"},
        "stringData": data,
    }))
    .await;
}

/// 1. A promoted rollout leaves exactly its ledger file and two commits, over each transport.
async fn a_promoted_rollout_is_recorded_over(transport: Transport) {
    let ns = TestNs::new(&format!("git-{}", format!("{transport:?}").to_lowercase())).await;
    let daemon = GitDaemon::start_new(&ns.name).unwrap();
    let daemon_url = daemon
        .create_repo("app", &[("deploy/podinfo.yaml", &manifest(V1))])
        .unwrap();
    let mut _http = None;
    let mut _ssh = None;
    let mut _lossy = None;
    let url = match transport {
        Transport::Daemon => daemon_url,
        Transport::Http => {
            let http = fledge_e2e::git::GitHttp::start(&daemon.base, "fledge-bot", "t0ken-s3cret")
                .await
                .unwrap();
            secret(
                &ns,
                &[("username", "fledge-bot"), ("password", "t0ken-s3cret")],
            )
            .await;
            let url = format!("{}/app.git", http.url);
            _http = Some(http);
            url
        }
        Transport::Ssh => {
            let ssh = fledge_e2e::git::GitSsh::start(&daemon.base.join("ssh")).unwrap();
            secret(
                &ns,
                &[
                    ("identity", &ssh.client_key),
                    ("known_hosts", &ssh.known_hosts),
                ],
            )
            .await;
            let url = ssh.url(&daemon.base.join("app.git"));
            _ssh = Some(ssh);
            url
        }
        Transport::Lossy => {
            let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], daemon.port));
            let path =
                std::sync::Arc::new(fledge_e2e::toxic::Toxic::start(upstream).await.unwrap());
            path.set_latency(Duration::from_millis(100));
            let cutter = {
                let path = path.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(6)).await;
                        path.cut();
                    }
                })
            };
            let url = format!("git://{}/app.git", path.addr);
            _lossy = Some((path, AbortOnDrop(cutter)));
            url
        }
    };
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let mut c = canary(&hook.url("/rollout"), &url);
    if matches!(transport, Transport::Http | Transport::Ssh) {
        c["spec"]["gitops"]["repository"]["secretRef"] = json!({"name": "git-credentials"});
    }
    ns.create::<Canary>(c).await;
    start_controller(&ns);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    let trigger = release(&daemon, V2);
    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    eventually(Duration::from_secs(60), "two ledger commits", || async {
        fledge_commits(&daemon).len() >= 2 && queue_len(&ns).await == 0
    })
    .await
    .unwrap();
    check_ledger(&daemon, &ns, &trigger);
    if let Some((path, _)) = &_lossy {
        eprintln!(
            "the ledger over a lossy path: {} connections through the proxy",
            path.accepted()
        );
    }
    ns.wait_canary("podinfo", Duration::from_secs(30), "GitSynced=True", |c| {
        c.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.r#type == "GitSynced" && c.status == "True")
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_rollout_is_recorded_over_git_daemon() {
    a_promoted_rollout_is_recorded_over(Transport::Daemon).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_rollout_is_recorded_over_a_slow_and_lossy_path() {
    a_promoted_rollout_is_recorded_over(Transport::Lossy).await;
}

/// Stops a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_rollout_is_recorded_over_http_with_basic_auth() {
    a_promoted_rollout_is_recorded_over(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promoted_rollout_is_recorded_over_ssh_with_a_key() {
    a_promoted_rollout_is_recorded_over(Transport::Ssh).await;
}

/// 5. A wrong key, an unknown host key and a missing Secret: the rollout still finishes, the
///    records wait, the GitSynced condition and a warning Event say what is wrong, and no
///    secret material appears in logs, Events, status or commits.
#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_get_a_clear_condition_and_leak_nothing() {
    let ns = TestNs::new("git-badcreds").await;
    let daemon = GitDaemon::start_new(&ns.name).unwrap();
    daemon
        .create_repo("app", &[("deploy/podinfo.yaml", &manifest(V1))])
        .unwrap();
    let ssh = fledge_e2e::git::GitSsh::start(&daemon.base.join("ssh")).unwrap();
    let other = fledge_e2e::git::GitSsh::start(&daemon.base.join("ssh-other")).unwrap();
    let url = ssh.url(&daemon.base.join("app.git"));
    let hook = Hook::start(200).await.unwrap();
    // (Canary, SSH key and known_hosts, words the condition must carry)
    type Case<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 3] = [
        // Another key than the one the server accepts.
        (
            "wrong-key",
            Some((other.client_key.as_str(), ssh.known_hosts.as_str())),
            "Permission denied",
        ),
        // The right key, but the server's host key is not the one known.
        (
            "unknown-host",
            Some((ssh.client_key.as_str(), other.known_hosts.as_str())),
            "Host key verification failed",
        ),
        ("missing-secret", None, "which does not exist"),
    ];
    for (name, creds, _) in &cases {
        ns.create::<Deployment>(deployment_json(name, V1, 1)).await;
        if let Some((key, hosts)) = creds {
            ns.create::<k8s_openapi::api::core::v1::Secret>(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-git")},
                "stringData": {"identity": key, "known_hosts": hosts},
            }))
            .await;
        }
        let mut c = canary(&hook.url("/rollout"), &url);
        c["metadata"]["name"] = json!(name);
        c["spec"]["targetRef"]["name"] = json!(name);
        c["spec"]["gitops"]["repository"]["secretRef"] = json!({"name": format!("{name}-git")});
        ns.create::<Canary>(c).await;
    }
    let idx = start_controller(&ns);
    for (name, _, _) in &cases {
        ns.wait_phase(name, CanaryPhase::Initialized, Duration::from_secs(90))
            .await;
        ns.set_image(name, V2).await;
    }
    for (name, _, words) in &cases {
        // The rollout does not wait for Git.
        ns.wait_phase(name, CanaryPhase::Succeeded, ROLLOUT).await;
        let c = ns
            .wait_canary(
                name,
                Duration::from_secs(60),
                "GitSynced=False GitAuthFailed",
                |c| {
                    c.status.as_ref().is_some_and(|s| {
                        s.conditions.iter().flatten().any(|c| {
                            c.r#type == "GitSynced"
                                && c.status == "False"
                                && c.reason.as_deref() == Some("GitAuthFailed")
                        })
                    })
                },
            )
            .await;
        let cond = c
            .status
            .unwrap()
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.r#type == "GitSynced")
            .unwrap();
        let message = cond.message.unwrap_or_default();
        assert!(message.contains(words), "{name}: {message}");
        let events = ns.events(name).await;
        assert!(
            events
                .iter()
                .any(|e| e.contains("GitAuthFailed") && e.contains(words)),
            "{name}: {events:#?}"
        );
        eprintln!("{name}: GitSynced=False GitAuthFailed: {message}");
    }
    assert!(fledge_commits(&daemon).is_empty(), "nothing was written");
    // No secret material anywhere: the private keys' bodies, in logs, Events, status, Git.
    let secrets: Vec<String> = [&ssh.client_key, &other.client_key]
        .iter()
        .map(|k| {
            k.lines()
                .find(|l| !l.starts_with("-----") && l.len() > 40)
                .unwrap()
                .to_string()
        })
        .collect();
    let mut haystack = ns.controller_log(idx);
    for (name, _, _) in &cases {
        haystack.push_str(&ns.events(name).await.join("\n"));
        let c = ns.api::<Canary>().get(name).await.unwrap();
        haystack.push_str(&serde_json::to_string(&c.status).unwrap());
    }
    let repo = daemon.clone_repo("app").unwrap();
    haystack.push_str(&git(&repo.dir, &["log", "-p", "--all"]).unwrap());
    for s in &secrets {
        assert!(!haystack.contains(s.as_str()), "secret material leaked");
    }
}

/// 3. The Git server is down for the whole rollout: the rollout finishes on time, the records
///    wait in the queue (through a controller restart and the Canary's deletion), and once the
///    server is back every record is in Git, in order, none lost, none doubled.
#[tokio::test(flavor = "multi_thread")]
async fn git_down_never_blocks_a_rollout_and_loses_no_record() {
    let (ns, mut daemon, _hook, _url, first) = initialized("git-down", 200, |_| {}).await;
    let trigger = release(&daemon, V2);
    daemon.stop();
    let started = Instant::now();
    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    let took = started.elapsed();
    eventually(Duration::from_secs(30), "both records queued", || async {
        queue_len(&ns).await == 2
    })
    .await
    .unwrap();
    // A controller restart with the queue full: the queue is in the cluster, not in the process.
    // This one alerts (a generic webhook) when records wait longer than 2 s.
    ns.kill_controller(first);
    let alerts = Hook::start(200).await.unwrap();
    let work = root()
        .join("target/e2e-logs")
        .join(format!("{}-gitwork", ns.name));
    ns.start_controller(&[
        "--git-workdir",
        &work.to_string_lossy(),
        "--git-queue-alert-after",
        "2",
        "--alert-url",
        &alerts.url("/alerts"),
        "--alert-type",
        "webhook",
    ]);
    eventually(
        Duration::from_secs(60),
        "an alert about the queue",
        || async {
            alerts
                .calls("/alerts")
                .iter()
                .any(|b| b.to_string().contains("have waited for Git longer than 2s"))
        },
    )
    .await
    .unwrap();
    assert_eq!(queue_len(&ns).await, 2, "records kept while Git is down");
    // The Canary is deleted meanwhile: its records do not go with it.
    ns.api::<Canary>()
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the Canary gone", || async {
        ns.api::<Canary>()
            .get_opt("podinfo")
            .await
            .unwrap()
            .is_none()
    })
    .await
    .unwrap();
    assert_eq!(
        queue_len(&ns).await,
        2,
        "records kept after the Canary's deletion"
    );
    daemon.start().unwrap();
    eventually(
        Duration::from_secs(90),
        "the queue to drain into Git",
        || async { queue_len(&ns).await == 0 },
    )
    .await
    .unwrap();
    eprintln!("rollout with Git down took {:.1} s", took.as_secs_f64());
    check_ledger(&daemon, &ns, &trigger);
}

/// The GitOps source formats a revert must edit.
#[derive(Clone, Copy, Debug)]
enum Source {
    Manifest,
    Kustomization,
    HelmRelease,
}

impl Source {
    /// The file, its text naming `image`, and `spec.gitops` extras.
    fn file(self, image: &str) -> (&'static str, String, serde_json::Value) {
        let reference = ImageRef::parse(image).unwrap();
        let (repo, tag) = (reference.name(), reference.tag().unwrap());
        match self {
            Source::Manifest => ("deploy/podinfo.yaml", manifest(image), json!({})),
            Source::Kustomization => (
                "deploy/kustomization.yaml",
                format!(
                    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - podinfo.yaml\nimages:\n  - name: {repo}\n    newTag: {tag} # {{\"$imagepolicy\": \"flux-system:podinfo:tag\"}}\n"
                ),
                json!({}),
            ),
            Source::HelmRelease => (
                "deploy/helmrelease.yaml",
                format!(
                    "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: podinfo\nspec:\n  chart:\n    spec:\n      chart: podinfo\n      version: 6.0.1\n  values:\n    image:\n      repository: {repo}\n      tag: {tag} # {{\"$imagepolicy\": \"flux-system:podinfo:tag\"}}\n"
                ),
                json!({"imagePath": "spec.values.image.tag"}),
            ),
        }
    }
}

/// 2. A failed rollout commits a revert of the image in the GitOps source; re-applying the
///    source (as Flux would) leaves the cluster on the last promoted image with no new rollout.
async fn a_rollback_reverts_the_source(source: Source) {
    let ns = TestNs::new(&format!(
        "git-revert-{}",
        format!("{source:?}").to_lowercase()
    ))
    .await;
    let daemon = GitDaemon::start_new(&ns.name).unwrap();
    let (path, text_v1, extra) = source.file(V1);
    let url = daemon.create_repo("app", &[(path, &text_v1)]).unwrap();
    let failing = Hook::start(500).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let mut c = canary(&failing.url("/rollout"), &url);
    c["spec"]["analysis"]["threshold"] = json!(1);
    c["spec"]["gitops"]["path"] = json!(path);
    for (k, v) in extra.as_object().unwrap() {
        c["spec"]["gitops"][k] = v.clone();
    }
    ns.create::<Canary>(c).await;
    start_controller(&ns);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    // The release: the source names V2, and the cluster gets it.
    let (_, text_v2, _) = source.file(V2);
    let repo = daemon.clone_repo("app").unwrap();
    std::fs::write(repo.dir.join(path), &text_v2).unwrap();
    git(&repo.dir, &["commit", "-qam", "release 6.0.1"]).unwrap();
    git(&repo.dir, &["push", "-q", "origin", "HEAD:main"]).unwrap();
    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Failed, ROLLOUT).await;
    eventually(Duration::from_secs(60), "the revert commit", || async {
        fledge_commits(&daemon)
            .iter()
            .any(|m| m.starts_with("fledge: revert"))
            && queue_len(&ns).await == 0
    })
    .await
    .unwrap();
    let commits = fledge_commits(&daemon);
    let subjects: Vec<&str> = commits.iter().map(|c| c.lines().next().unwrap()).collect();
    assert_eq!(
        subjects,
        [
            format!("fledge: {}/podinfo rollout started ({V2})", ns.name),
            format!("fledge: {}/podinfo rolled back ({V2})", ns.name),
            format!(
                "fledge: revert {}/podinfo to the last promoted image",
                ns.name
            ),
        ],
        "{commits:#?}"
    );
    let revert = &commits[2];
    assert!(revert.contains(&format!("{V2} -> {V1}")), "{revert}");
    assert!(revert.contains("Fledge-Result: rolled-back"), "{revert}");
    let after = daemon.clone_repo("app").unwrap();
    // The source is exactly the V1 text again: only the image changed, marker and all.
    assert_eq!(after.read(path), text_v1, "{source:?}");
    eprintln!(
        "{source:?} revert commit:\n{revert}\n{path} after:\n{}",
        after.read(path)
    );

    // Flux applies the reverted source: the target is back on V1, which the primary runs.
    ns.set_image("podinfo", V1).await;
    ns.wait_canary(
        "podinfo",
        Duration::from_secs(30),
        "revision reverted",
        |c| {
            c.status.as_ref().is_some_and(|s| {
                s.last_applied_spec.is_some() && s.last_applied_spec == s.last_promoted_spec
            })
        },
    )
    .await;
    // Later reconciles, which would start a rollout if the reverted revision looked new.
    ns.wait_reconciles(0, 3, Duration::from_secs(60)).await;
    let c = ns.api::<Canary>().get("podinfo").await.unwrap();
    let s = c.status.unwrap();
    assert_eq!(s.phase, CanaryPhase::Failed, "no new rollout: {s:#?}");
    let events = ns.events("podinfo").await;
    let new_revisions = events.iter().filter(|e| e.contains("NewRevision")).count();
    assert_eq!(
        new_revisions, 1,
        "only the failed release started a rollout: {events:#?}"
    );
    assert!(
        events.iter().any(|e| e.contains("RevisionReverted")),
        "{events:#?}"
    );
    let primary = ns.deployment("podinfo-primary").await;
    assert_eq!(fledge_e2e::image_of(&primary), V1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_reverts_a_deployment_manifest() {
    a_rollback_reverts_the_source(Source::Manifest).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_reverts_a_kustomization() {
    a_rollback_reverts_the_source(Source::Kustomization).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_reverts_a_helm_release_value() {
    a_rollback_reverts_the_source(Source::HelmRelease).await;
}

/// 7. A revert to the previously promoted image is promoted without analysis; with
///    `fastRollback: false` it is analysed like any release.
#[tokio::test(flavor = "multi_thread")]
async fn a_revert_to_a_promoted_image_is_promoted_fast_unless_told_not_to() {
    let ns = TestNs::new("git-fast").await;
    let daemon = GitDaemon::start_new(&ns.name).unwrap();
    let url = daemon
        .create_repo("app", &[("deploy/podinfo.yaml", &manifest(V1))])
        .unwrap();
    let hook = Hook::start(200).await.unwrap();
    for (name, fast) in [("fast", true), ("slow", false)] {
        ns.create::<Deployment>(deployment_json(name, V1, 1)).await;
        let mut c = canary(&hook.url("/rollout"), &url);
        c["metadata"]["name"] = json!(name);
        c["spec"]["targetRef"]["name"] = json!(name);
        c["spec"]["analysis"]["iterations"] = json!(3);
        c["spec"]["gitops"]["fastRollback"] = json!(fast);
        ns.create::<Canary>(c).await;
    }
    start_controller(&ns);
    for name in ["fast", "slow"] {
        ns.wait_phase(name, CanaryPhase::Initialized, Duration::from_secs(90))
            .await;
        ns.set_image(name, V2).await;
    }
    for name in ["fast", "slow"] {
        ns.wait_canary(name, ROLLOUT, "V2 promoted", |c| {
            c.status.as_ref().is_some_and(|s| {
                s.phase == CanaryPhase::Succeeded && s.promoted_revisions.len() == 2
            })
        })
        .await;
    }
    // Back to V1, which was promoted before (as after a revert in Git).
    let mut took = Vec::new();
    for name in ["fast", "slow"] {
        let before = ns.api::<Canary>().get(name).await.unwrap().status.unwrap();
        let (v1, v2) = (
            before.promoted_revisions[0].clone(),
            before.promoted_revisions[1].clone(),
        );
        let started = Instant::now();
        ns.set_image(name, V1).await;
        ns.wait_canary(name, ROLLOUT, "V1 promoted again", |c| {
            c.status.as_ref().is_some_and(|s| {
                s.phase == CanaryPhase::Succeeded
                    && s.last_promoted_spec.as_ref() == Some(&v1)
                    && s.promoted_revisions == [v2.clone(), v1.clone()]
            })
        })
        .await;
        took.push((name, started.elapsed()));
    }
    let fast_events = ns.events("fast").await;
    let slow_events = ns.events("slow").await;
    let count = |evs: &[String], what: &str| evs.iter().filter(|e| e.contains(what)).count();
    assert_eq!(count(&fast_events, "FastRollback"), 1, "{fast_events:#?}");
    assert_eq!(count(&slow_events, "FastRollback"), 0, "{slow_events:#?}");
    // The fast one went back to V1 without an analysis iteration; the slow one ran all three.
    let iterations = |name: &'static str| {
        let api = ns.api::<Canary>();
        async move { api.get(name).await.unwrap().status.unwrap().iterations }
    };
    assert_eq!(iterations("fast").await, 0);
    assert_eq!(iterations("slow").await, 3);
    eprintln!("back to a promoted image: {took:?}");
    assert_eq!(
        fledge_e2e::image_of(&ns.deployment("fast-primary").await),
        V1
    );
    assert_eq!(
        fledge_e2e::image_of(&ns.deployment("slow-primary").await),
        V1
    );
}

/// 6. `fledge dora` on the ledger of a scripted series of rollouts: two promoted, one rolled
///    back; the four figures follow from what the test did and timed.
#[tokio::test(flavor = "multi_thread")]
async fn dora_metrics_come_from_the_ledger() {
    let ns = TestNs::new("git-dora").await;
    let daemon = GitDaemon::start_new(&ns.name).unwrap();
    let url = daemon
        .create_repo("app", &[("deploy/podinfo.yaml", &manifest(V1))])
        .unwrap();
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let mut c = canary(&hook.url("/rollout"), &url);
    c["spec"]["analysis"]["threshold"] = json!(1);
    ns.create::<Canary>(c).await;
    let idx = start_controller(&ns);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    let began = Instant::now();
    let v3 = "ghcr.io/stefanprodan/podinfo:6.0.2";
    let v4 = "ghcr.io/stefanprodan/podinfo:6.0.3";
    let mut longest_release = Duration::ZERO;
    for (image, ok) in [(V2, true), (v3, false), (v4, true)] {
        hook.set_status(if ok { 200 } else { 500 });
        let prev = ns
            .api::<Canary>()
            .get("podinfo")
            .await
            .unwrap()
            .status
            .and_then(|s| s.last_applied_spec);
        let released = Instant::now();
        release(&daemon, image);
        ns.set_image("podinfo", image).await;
        let want = if ok {
            CanaryPhase::Succeeded
        } else {
            CanaryPhase::Failed
        };
        ns.wait_canary("podinfo", ROLLOUT, &format!("{image} to end {want}"), |c| {
            c.status
                .as_ref()
                .is_some_and(|s| s.phase == want && s.last_applied_spec != prev)
        })
        .await;
        longest_release = longest_release.max(released.elapsed());
        eventually(Duration::from_secs(60), "the records in Git", || async {
            queue_len(&ns).await == 0
        })
        .await
        .unwrap();
    }
    let out = std::process::Command::new(fledge_e2e::fledge_binary())
        .args(["dora", "--repo", &url, "--since", "1d", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let all = &report["overall"];
    eprintln!(
        "fledge dora: {}\n{}",
        serde_json::to_string_pretty(all).unwrap(),
        String::from_utf8_lossy(
            &std::process::Command::new(fledge_e2e::fledge_binary())
                .args(["dora", "--repo", &url, "--since", "1d"])
                .output()
                .unwrap()
                .stdout
        )
    );
    assert_eq!(all["deployments"], 2, "{report}");
    assert_eq!(all["failures"], 1, "{report}");
    assert_eq!(all["deploymentsPerDay"], 2.0, "{report}");
    let cfr = all["changeFailureRatePercent"].as_f64().unwrap();
    assert!((cfr - 100.0 / 3.0).abs() < 1e-6, "{report}");
    // Lead time: from the release commit to the end of the promotion, so at most what the
    // test measured from its commit to the Succeeded it saw (whole seconds in the ledger).
    let lead = all["leadTimeSeconds"].as_f64().unwrap();
    assert!(
        lead >= 0.0 && lead <= longest_release.as_secs_f64() + 2.0,
        "{lead} vs {longest_release:?}"
    );
    // Time to restore: from the first failed check to the end of the rollback (threshold 1:
    // the same step), a few seconds at most.
    let restore = all["timeToRestoreSeconds"].as_f64().unwrap();
    assert!(
        restore >= 0.0 && restore <= began.elapsed().as_secs_f64(),
        "{restore}"
    );
    assert_eq!(all["bands"]["deploymentFrequency"], "elite");
    assert_eq!(all["bands"]["leadTime"], "elite");
    assert_eq!(all["bands"]["changeFailureRate"], "low");
    assert_eq!(all["bands"]["timeToRestore"], "elite");
    let per = &report["canaries"][format!("{}/podinfo", ns.name)];
    assert_eq!(per["deployments"], 2, "{report}");
    // The controller exports the same figures: two lead times, one time to restore.
    let text = reqwest::get(format!("http://{}/metrics", ns.controller_metrics(idx)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert_eq!(
        value("fledge_dora_lead_time_seconds_count"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value("fledge_dora_time_to_restore_seconds_count"),
        Some(1.0),
        "{text}"
    );
}

/// 4. Another writer pushes to the branch between fledge's fetch and its push: the push is
///    refused, fledge starts over on the new head, and both histories are kept (nothing is
///    force-pushed). The other writer is a `pre-receive` hook that commits to `main` while
///    fledge's first push waits, exactly between fetch and push.
#[tokio::test(flavor = "multi_thread")]
async fn a_concurrent_writer_keeps_its_commit() {
    use std::os::unix::fs::PermissionsExt;
    let (ns, daemon, _hook, _url, _) = initialized("git-race", 200, |_| {}).await;
    let trigger = release(&daemon, V2);
    let hook_path = daemon.base.join("app.git/hooks/pre-receive");
    std::fs::write(
        &hook_path,
        "#!/bin/sh\n\
         # Once: another writer commits to main before this push updates it.\n\
         [ -e \"$GIT_DIR/raced\" ] && exit 0\n\
         touch \"$GIT_DIR/raced\"\n\
         unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n\
         parent=$(git rev-parse refs/heads/main)\n\
         tree=$(git rev-parse \"$parent^{tree}\")\n\
         c=$(echo 'another writer' | GIT_AUTHOR_NAME=other GIT_AUTHOR_EMAIL=o@x GIT_COMMITTER_NAME=other GIT_COMMITTER_EMAIL=o@x git commit-tree \"$tree\" -p \"$parent\")\n\
         git update-ref refs/heads/main \"$c\" \"$parent\"\n\
         exit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&hook_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    eventually(Duration::from_secs(60), "two ledger commits", || async {
        fledge_commits(&daemon).len() >= 2 && queue_len(&ns).await == 0
    })
    .await
    .unwrap();
    // The other writer's commit came in while fledge's first push waited: fledge's commits
    // follow it.
    let clone = daemon.clone_repo("app").unwrap();
    let subjects: Vec<String> = clone
        .log()
        .unwrap()
        .iter()
        .map(|m| m.lines().next().unwrap_or_default().to_string())
        .rev()
        .collect();
    let other = subjects.iter().position(|s| s == "another writer");
    let started = subjects.iter().position(|s| s.contains("rollout started"));
    assert!(
        other.is_some() && started.is_some() && other < started,
        "{subjects:#?}"
    );
    check_ledger(&daemon, &ns, &trigger);
    // Linear history: every commit has one parent, nothing was rewritten.
    let merges = git(&clone.dir, &["rev-list", "--merges", "HEAD"]).unwrap();
    assert!(merges.trim().is_empty(), "{merges}");
    eprintln!("history with a concurrent writer: {subjects:?}");
}

const V3: &str = "ghcr.io/stefanprodan/podinfo:6.0.2";

/// 8. The ledger outlives the cluster. On a first cluster V2 is promoted after V1; then V3 is
///    released in Git and the cluster is lost before anything rolled it out. A fresh control
///    plane (its own etcd and API server, nothing carried over but the Git repository) gets the
///    Deployment on V3 and the same Canary: the primary starts on V2, the last promoted images
///    in the ledger, and V3 is analysed like any new release.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebuilt_cluster_starts_the_primary_from_the_ledger() {
    let (ns, daemon, hook, url, first) = initialized("git-rebuild", 200, |_| {}).await;
    release(&daemon, V2);
    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    eventually(Duration::from_secs(60), "V2's ledger record", || async {
        fledge_commits(&daemon).len() >= 2 && queue_len(&ns).await == 0
    })
    .await
    .unwrap();
    let promoted = ns.api::<Canary>().get("podinfo").await.unwrap();
    let v2_revision = promoted
        .status
        .and_then(|s| s.last_promoted_spec)
        .expect("V2 promoted");
    // V3 is released in Git; the first cluster is lost before it rolls it out.
    release(&daemon, V3);
    ns.kill_controller(first);
    let calls_before = hook.calls("/rollout").len();

    // The rebuilt cluster: Flux applies the repository (the Deployment on V3 and the Canary),
    // and fledge starts with nothing but the repository to remember.
    let rebuilt = fledge_e2e::OtherCluster::start(&format!("{}-rebuilt", ns.name)).unwrap();
    let ns2 = TestNs::named_on(&rebuilt, &ns.name).await;
    ns2.create::<Deployment>(deployment_json("podinfo", V3, 1))
        .await;
    ns2.create::<Canary>(canary(&hook.url("/rollout"), &url))
        .await;
    let started = Instant::now();
    let work = root()
        .join("target/e2e-logs")
        .join(format!("{}-rebuilt-gitwork", ns.name));
    ns2.start_controller(&["--git-workdir", &work.to_string_lossy()]);
    // V3 was never promoted: it is analysed (both iterations call the rollout webhook) and
    // promoted only then.
    let done = ns2
        .wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    let took = started.elapsed();
    let s = done.status.unwrap();
    assert_eq!(s.iterations, 2, "{s:#?}");
    assert!(
        hook.calls("/rollout").len() >= calls_before + 2,
        "the rollout webhook gated V3's analysis"
    );
    assert_eq!(
        fledge_e2e::image_of(&ns2.deployment("podinfo-primary").await),
        V3
    );
    // The primary's first revision ran V2, the last promoted image (its ReplicaSets keep the
    // history), and only the promotion moved it to V3.
    let sets = ns2
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut primary_images: Vec<(i64, String)> = sets
        .iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|o| o.name == "podinfo-primary")
        })
        .map(|rs| {
            let revision = rs
                .annotations()
                .get("deployment.kubernetes.io/revision")
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let image = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .and_then(|p| p.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            (revision, image)
        })
        .collect();
    primary_images.sort();
    assert_eq!(
        primary_images,
        [(1, V2.to_string()), (2, V3.to_string())],
        "the primary's revisions"
    );
    let events = ns2.events("podinfo").await;
    assert!(
        events.iter().any(|e| e.contains("InitializingFromLedger")
            && e.contains(V2)
            && e.contains(&v2_revision[..12])),
        "{events:#?}"
    );
    let events = ns2.events("podinfo").await;
    assert!(
        events.iter().any(|e| e.contains("NewRevision")),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| e.contains("FastRollback")),
        "{events:#?}"
    );
    // The ledger has V3's rollout, started from V2.
    eventually(Duration::from_secs(60), "V3's ledger record", || async {
        fledge_commits(&daemon).len() >= 4 && queue_len(&ns2).await == 0
    })
    .await
    .unwrap();
    let c = daemon.clone_repo("app").unwrap();
    let files = c.files_under(".fledge/ledger");
    assert_eq!(files.len(), 2, "{files:?}");
    let record: serde_json::Value = serde_saphyr::from_str(&c.read(&files[1])).unwrap();
    assert_eq!(record["result"], "promoted", "{record:#}");
    assert_eq!(record["oldImages"], json!([V2]), "{record:#}");
    assert_eq!(record["newImages"], json!([V3]), "{record:#}");
    assert_eq!(record["primaryRevision"], json!(v2_revision), "{record:#}");
    eprintln!(
        "rebuilt cluster: primary on {V2} from the ledger, {V3} analysed and promoted in {took:?}\n{}",
        events.join("\n")
    );
}

/// `mode: branch`: a failed rollout pushes its revert to a `fledge/revert-<canary>-<revision>`
/// branch for a pull request, and the branch the cluster follows is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_in_branch_mode_pushes_a_revert_branch() {
    let (ns, daemon, _failing, _url, _) = initialized("git-branch-mode", 500, |c| {
        c["spec"]["analysis"]["threshold"] = json!(1);
        c["spec"]["gitops"]["mode"] = json!("branch");
    })
    .await;
    release(&daemon, V2);
    ns.set_image("podinfo", V2).await;
    let failed = ns.wait_phase("podinfo", CanaryPhase::Failed, ROLLOUT).await;
    let revision = failed.status.unwrap().last_applied_spec.unwrap();
    let branch = format!("fledge/revert-podinfo-{}", &revision[..12]);
    let bare = daemon.base.join("app.git");
    eventually(Duration::from_secs(60), "the revert branch", || async {
        git(&bare, &["rev-parse", "--verify", "-q", &branch]).is_ok() && queue_len(&ns).await == 0
    })
    .await
    .unwrap();
    let message = git(&bare, &["log", "-1", "--format=%B", &branch]).unwrap();
    assert!(
        message.starts_with(&format!(
            "fledge: revert {}/podinfo to the last promoted image",
            ns.name
        )),
        "{message}"
    );
    assert!(message.contains(&format!("{V2} -> {V1}")), "{message}");
    let on_branch = git(&bare, &["show", &format!("{branch}:deploy/podinfo.yaml")]).unwrap();
    assert_eq!(on_branch.trim_end(), manifest(V1).trim_end());
    // The branch starts from main's head; main itself still names V2 and has no revert.
    let base = git(&bare, &["merge-base", "main", &branch]).unwrap();
    let main_head = git(&bare, &["rev-parse", "main"]).unwrap();
    assert_eq!(base.trim(), main_head.trim());
    let on_main = daemon.clone_repo("app").unwrap();
    assert_eq!(on_main.read("deploy/podinfo.yaml"), manifest(V2));
    assert!(
        !fledge_commits(&daemon)
            .iter()
            .any(|m| m.starts_with("fledge: revert")),
        "no revert on main"
    );
    eprintln!("revert branch {branch}:\n{message}");
}

/// Cluster-wide defaults: a Canary without `spec.gitops` records its rollouts to the ledger of
/// the controller's `--gitops-repository`, under `--gitops-ledger-path`.
#[tokio::test(flavor = "multi_thread")]
async fn a_canary_without_spec_gitops_records_to_the_default_repository() {
    let ns = TestNs::new("git-defaults").await;
    let daemon = GitDaemon::start_new(&ns.name).unwrap();
    let url = daemon
        .create_repo("ledger", &[("README.md", "the platform's ledger\n")])
        .unwrap();
    let hook = Hook::start(200).await.unwrap();
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let mut c = canary(&hook.url("/rollout"), &url);
    c["spec"].as_object_mut().unwrap().remove("gitops");
    ns.create::<Canary>(c).await;
    let work = root()
        .join("target/e2e-logs")
        .join(format!("{}-gitwork", ns.name));
    ns.start_controller(&[
        "--git-workdir",
        &work.to_string_lossy(),
        "--gitops-repository",
        &url,
        "--gitops-ledger-path",
        "rollouts",
    ]);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    ns.set_image("podinfo", V2).await;
    ns.wait_phase("podinfo", CanaryPhase::Succeeded, ROLLOUT)
        .await;
    eventually(Duration::from_secs(60), "the ledger record", || async {
        queue_len(&ns).await == 0
            && daemon
                .clone_repo("ledger")
                .is_ok_and(|c| c.files_under("rollouts").len() == 1)
    })
    .await
    .unwrap();
    let c = daemon.clone_repo("ledger").unwrap();
    let files = c.files_under("rollouts");
    assert!(
        files[0].starts_with(&format!("rollouts/{}/podinfo/", ns.name)),
        "{files:?}"
    );
    let record: serde_json::Value = serde_saphyr::from_str(&c.read(&files[0])).unwrap();
    assert_eq!(record["result"], "promoted");
    assert_eq!(record["newImages"], json!([V2]));
    // Bad defaults stop the controller at start with the flag's name.
    let out = std::process::Command::new(fledge_e2e::fledge_binary())
        .args(["run", "--gitops-repository", "git@example.com:org/repo.git"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains("--gitops-repository: must start with ssh://"),
        "{err}"
    );
}

/// A distinctive value planted in every Secret fledge reads (the Git password, the metrics
/// provider's bearer token, the chat provider's address and token) goes only to the server it
/// is for: through a failed rollout, its ledger commits and its revert, it is in no log line, no
/// Event, no Canary, no ledger file or commit, no alert or webhook payload, and not on
/// `/metrics`.
#[tokio::test(flavor = "multi_thread")]
async fn a_value_planted_in_every_secret_appears_nowhere() {
    const PLANTED: &str = "pl4nted-v4lue-of-fledge-secrets";
    let ns = TestNs::new("git-planted").await;
    let daemon = GitDaemon::start_new(&ns.name).unwrap();
    daemon
        .create_repo("app", &[("deploy/podinfo.yaml", &manifest(V1))])
        .unwrap();
    let http = fledge_e2e::git::GitHttp::start(&daemon.base, "fledge-bot", PLANTED)
        .await
        .unwrap();
    secret(&ns, &[("username", "fledge-bot"), ("password", PLANTED)]).await;
    let chat = Hook::start(200).await.unwrap();
    let failing = Hook::start(500).await.unwrap();
    for (name, data) in [
        ("metrics-token", json!({"token": PLANTED})),
        (
            "chat-url",
            json!({"address": chat.url(&format!("/slack/{PLANTED}")), "token": PLANTED}),
        ),
    ] {
        ns.create::<k8s_openapi::api::core::v1::Secret>(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data,
        }))
        .await;
    }
    ns.create::<fledge_api::MetricTemplate>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "one"},
        "spec": {
            "provider": {"type": "prometheus", "address": fledge_e2e::dataplane::dataplane().prometheus_url,
                         "secretRef": {"name": "metrics-token"}},
            "query": "vector(1)",
        },
    }))
    .await;
    ns.create::<fledge_api::AlertProvider>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider",
        "metadata": {"name": "chat"},
        "spec": {"type": "slack", "secretRef": {"name": "chat-url"}},
    }))
    .await;
    ns.create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    let mut c = canary(&failing.url("/rollout"), &format!("{}/app.git", http.url));
    c["spec"]["gitops"]["repository"]["secretRef"] = json!({"name": "git-credentials"});
    c["spec"]["analysis"]["metrics"] = json!([{
        "name": "one", "interval": "1m", "templateRef": {"name": "one"},
        "thresholdRange": {"min": 1},
    }]);
    c["spec"]["analysis"]["alerts"] =
        json!([{"name": "chat", "severity": "info", "providerRef": {"name": "chat"}}]);
    ns.create::<Canary>(c).await;
    let controller = start_controller(&ns);
    ns.wait_phase("podinfo", CanaryPhase::Initialized, Duration::from_secs(90))
        .await;
    release(&daemon, V2);
    ns.set_image("podinfo", V2).await;
    let failed = ns.wait_phase("podinfo", CanaryPhase::Failed, ROLLOUT).await;
    eventually(
        Duration::from_secs(60),
        "the ledger's commits and the revert",
        || async {
            let log = fledge_commits(&daemon);
            log.iter().any(|m| m.starts_with("fledge: revert"))
                && log
                    .iter()
                    .filter(|m| !m.starts_with("fledge: revert"))
                    .count()
                    >= 2
                && queue_len(&ns).await == 0
        },
    )
    .await
    .unwrap();
    // Every Secret was used: Git took the password (the commits are there), Prometheus
    // answered the check, and the chat receiver got the alerts at the address from its Secret.
    let checks = failed
        .status
        .as_ref()
        .unwrap()
        .rollout
        .clone()
        .unwrap()
        .history;
    assert!(
        checks
            .iter()
            .flat_map(|h| &h.metrics)
            .any(|m| m.name == "one" && m.value == Some(1.0) && m.passed),
        "{checks:#?}"
    );
    let alerts = chat.all_calls();
    assert!(
        !alerts.is_empty() && alerts.iter().all(|(path, _)| path.ends_with(PLANTED)),
        "{alerts:#?}"
    );

    // And nowhere else.
    let bare = daemon.base.join("app.git");
    let events: Vec<k8s_openapi::api::core::v1::Event> = ns
        .api::<k8s_openapi::api::core::v1::Event>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let canary: Canary = ns.api::<Canary>().get("podinfo").await.unwrap();
    let metrics = reqwest::get(format!(
        "http://{}/metrics",
        ns.controller_metrics(controller)
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let places = [
        ("the controller's log", ns.controller_log(controller)),
        ("the Events", serde_json::to_string(&events).unwrap()),
        ("the Canary", serde_json::to_string(&canary).unwrap()),
        (
            "the repository's commits and files",
            git(&bare, &["log", "-p", "--all", "--format=%H%n%B"]).unwrap(),
        ),
        (
            "the alerts' payloads",
            serde_json::to_string(&alerts.iter().map(|(_, b)| b).collect::<Vec<_>>()).unwrap(),
        ),
        (
            "the webhooks' payloads",
            serde_json::to_string(&failing.all_calls()).unwrap(),
        ),
        ("/metrics", metrics),
    ];
    for (place, text) in &places {
        assert!(!text.is_empty(), "{place} is empty: nothing was searched");
        assert!(
            !text.contains(PLANTED),
            "the planted value is in {place}:\n{}",
            text.lines()
                .filter(|l| l.contains(PLANTED))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!(
        "planted value searched in {} ({} bytes): none found",
        places
            .iter()
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
            .join(", "),
        places.iter().map(|(_, t)| t.len()).sum::<usize>()
    );
}
