//! `config/rbac/` is enough: `fledge run --namespace` as a ServiceAccount bound only by the
//! namespaced Role of `config/rbac/namespaced/` (with a token from the TokenRequest API of the
//! local API server) takes Canaries on the gatewayapi and traefik routers through a whole
//! rollout, and never meets a `forbidden` answer on the way; with the same credentials, nothing
//! in another namespace can be read or written.

use std::time::Duration;

use fledge_api::{Canary, CanaryPhase};
use fledge_e2e::{TestNs, admin_kubeconfig, deployment_json, image_of, root};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const V1: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
const V2: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";

fn rbac_file<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = root().join("config/rbac").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Creates the ServiceAccount `fledge` in the test's namespace and binds it with the
/// namespaced Role of `config/rbac`; returns a kubeconfig with a token of that account.
async fn service_account_kubeconfig(ns: &TestNs) -> std::path::PathBuf {
    let apply = PatchParams::apply("fledge-e2e").force();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "fledge", "namespace": ns.name}}))
            .unwrap();
    ns.api::<ServiceAccount>()
        .patch("fledge", &apply, &Patch::Apply(&sa))
        .await
        .unwrap();
    let mut role: Role = rbac_file("namespaced/role.yaml");
    role.metadata.namespace = Some(ns.name.clone());
    ns.api::<Role>()
        .patch("fledge", &apply, &Patch::Apply(&role))
        .await
        .expect("the namespaced Role of config/rbac is accepted");
    let mut binding: RoleBinding = rbac_file("namespaced/role-binding.yaml");
    binding.metadata.namespace = Some(ns.name.clone());
    for s in binding.subjects.iter_mut().flatten() {
        s.namespace = Some(ns.name.clone());
    }
    ns.api::<RoleBinding>()
        .patch("fledge", &apply, &Patch::Apply(&binding))
        .await
        .expect("the RoleBinding of config/rbac is accepted");

    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }))
    .unwrap();
    let issued: TokenRequest = ns
        .api::<ServiceAccount>()
        .create_subresource("token", "fledge", &PostParams::default(), &request)
        .await
        .expect("a token for the ServiceAccount");
    let token = issued.status.expect("the token").token;

    // The administrator's kubeconfig with the ServiceAccount's token as the only credential.
    let admin = std::fs::read_to_string(admin_kubeconfig()).unwrap();
    let mut config: Value = serde_saphyr::from_str(&admin).unwrap();
    let users = config["users"].as_array_mut().expect("kubeconfig users");
    for u in users.iter_mut() {
        u["user"] = json!({"token": token});
    }
    let path = root()
        .join("target/e2e-logs")
        .join(format!("{}-kubeconfig.json", ns.name));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
    path
}

fn canary(name: &str, provider: &str) -> Value {
    json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": name},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 60,
            "service": {"port": 9898},
            "analysis": {"interval": "2s", "threshold": 2, "stepWeight": 30, "maxWeight": 60}
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_needs_no_more_than_the_namespaced_role() {
    // The traefik.io CRDs come with the data plane.
    fledge_e2e::dataplane::dataplane();
    let ns = TestNs::new("rbac").await;
    let kubeconfig = service_account_kubeconfig(&ns).await;
    // Webhooks and alerts go to a local receiver, which must never see the ServiceAccount's
    // token.
    let hook = fledge_e2e::Hook::start(200).await.unwrap();
    ns.create::<fledge_api::AlertProvider>(json!({
        "apiVersion": "fledge.dev/v1beta1", "kind": "AlertProvider",
        "metadata": {"name": "chat"},
        "spec": {"type": "webhook", "address": hook.url("/chat")},
    }))
    .await;
    let names = [("rbacgw", "gatewayapi:v1"), ("rbactr", "traefik")];
    for (name, provider) in names {
        ns.create::<Deployment>(deployment_json(name, V1, 1)).await;
        let mut c = canary(name, provider);
        c["spec"]["analysis"]["webhooks"] =
            json!([{"name": "acceptance", "type": "rollout", "url": hook.url("/rollout")}]);
        c["spec"]["analysis"]["alerts"] =
            json!([{"name": "chat", "severity": "info", "providerRef": {"name": "chat"}}]);
        ns.create::<Canary>(c).await;
    }
    ns.start_controller_as(&kubeconfig, &[]);
    for (name, _) in names {
        ns.wait_phase(name, CanaryPhase::Initialized, Duration::from_secs(90))
            .await;
        ns.set_image(name, V2).await;
    }
    for (name, _) in names {
        ns.wait_canary(
            name,
            Duration::from_secs(150),
            "the rollout promoted",
            |c| {
                c.status.as_ref().is_some_and(|s| {
                    s.phase == CanaryPhase::Succeeded && s.last_promoted_spec == s.last_applied_spec
                })
            },
        )
        .await;
        assert_eq!(
            image_of(&ns.deployment(&format!("{name}-primary")).await),
            V2
        );
        let events = ns.events(name).await;
        assert!(
            events.iter().any(|e| e.contains("WeightAdvanced")),
            "the controller recorded Events: {events:?}"
        );
    }
    // The ServiceAccount's token went to the API server only.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&kubeconfig).unwrap()).unwrap();
    let token = config["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let seen = hook.header_lines();
    assert!(
        !hook.calls("/rollout").is_empty() && !hook.calls("/chat").is_empty(),
        "webhooks and alerts were sent"
    );
    assert!(
        !seen.iter().any(|l| l.contains(&token)),
        "the token was sent to a webhook or alert receiver"
    );
    assert!(
        !serde_json::to_string(&hook.all_calls())
            .unwrap()
            .contains(&token),
        "the token is in a payload"
    );
    let log = ns.controller_log(0);
    assert!(!log.contains(&token), "the token is in the log");
    let forbidden: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
        .collect();
    assert!(
        forbidden.is_empty(),
        "the ServiceAccount lacked permissions:\n{}",
        forbidden.join("\n")
    );
}

/// The namespaced Role reaches no other namespace: with its ServiceAccount's token, reading or
/// writing Canaries, Secrets, Deployments and Services of a second namespace is forbidden,
/// listing across namespaces is forbidden, and the same reads in its own namespace work.
#[tokio::test(flavor = "multi_thread")]
async fn the_namespaced_role_reaches_no_other_namespace() {
    use k8s_openapi::api::core::v1::{Secret, Service};
    use kube::api::{Api, DeleteParams, ListParams};
    let ns = TestNs::new("rbac-fence").await;
    let other = TestNs::new("rbac-other").await;
    other
        .create::<Deployment>(deployment_json("podinfo", V1, 1))
        .await;
    other
        .create::<Secret>(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"},
            "stringData": {"token": "not for fledge"},
        }))
        .await;
    let kubeconfig = service_account_kubeconfig(&ns).await;
    let config = kube::Config::from_custom_kubeconfig(
        serde_json::from_str(&std::fs::read_to_string(&kubeconfig).unwrap()).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let forbidden = |what: &str, r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    };
    let ours = ListParams::default();
    // Its own namespace: the reads the controller needs work, once the API server's RBAC
    // authorizer has the new Role and RoleBinding (it learns them from a watch of its own, a
    // moment after they are written, and later on a busy machine: it answered 403 once, with
    // two test binaries running at a time).
    let canaries = Api::<Canary>::namespaced(client.clone(), &ns.name);
    fledge_e2e::eventually_some(
        Duration::from_secs(30),
        "the ServiceAccount lists the Canaries of its own namespace",
        || async {
            match canaries.list(&ours).await {
                Ok(_) => Some(()),
                Err(kube::Error::Api(s)) if s.code == 403 => None,
                Err(e) => panic!("Canaries of its own namespace: {e}"),
            }
        },
    )
    .await;
    Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .list(&ours)
        .await
        .expect("Deployments of its own namespace");
    // The other namespace, and every namespace at once.
    let there = &other.name;
    forbidden(
        "list Canaries there",
        Api::<Canary>::namespaced(client.clone(), there)
            .list(&ours)
            .await
            .map(drop),
    );
    forbidden(
        "get a Secret there",
        Api::<Secret>::namespaced(client.clone(), there)
            .get("keys")
            .await
            .map(drop),
    );
    forbidden(
        "get a Deployment there",
        Api::<Deployment>::namespaced(client.clone(), there)
            .get("podinfo")
            .await
            .map(drop),
    );
    forbidden(
        "patch a Deployment there",
        Api::<Deployment>::namespaced(client.clone(), there)
            .patch(
                "podinfo",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 0}})),
            )
            .await
            .map(drop),
    );
    forbidden(
        "create a Service there",
        Api::<Service>::namespaced(client.clone(), there)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": "podinfo-canary"},
                    "spec": {"ports": [{"port": 9898}]},
                }))
                .unwrap(),
            )
            .await
            .map(drop),
    );
    forbidden(
        "delete a Deployment there",
        Api::<Deployment>::namespaced(client.clone(), there)
            .delete("podinfo", &DeleteParams::default())
            .await
            .map(drop),
    );
    forbidden(
        "list Canaries in every namespace",
        Api::<Canary>::all(client.clone())
            .list(&ours)
            .await
            .map(drop),
    );
    forbidden(
        "list Secrets in every namespace",
        Api::<Secret>::all(client).list(&ours).await.map(drop),
    );
    // The other namespace's objects are untouched.
    assert_eq!(
        other.deployment("podinfo").await.spec.unwrap().replicas,
        Some(1)
    );
}
