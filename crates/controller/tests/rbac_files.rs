//! `config/rbac/`: the namespaced Role holds exactly the ClusterRole's namespaced rules, the
//! bindings name the ServiceAccount, and every kind a router writes is covered. Whether the
//! rules are enough for a rollout is proven by the `rbac` end-to-end test.

use std::path::Path;

use fledge_controller::routers::smi::SmiVersion;
use fledge_controller::routers::{apisix, appmesh, gloo, kuma, traefik};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};

fn read<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/rbac")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn cluster_rules() -> Vec<PolicyRule> {
    read::<ClusterRole>("cluster-role.yaml")
        .rules
        .unwrap_or_default()
}

/// Whether some rule allows `verb` on `group`/`resource`.
fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups.iter().flatten().any(|g| g == group)
            && r.resources.iter().flatten().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn the_namespaced_role_is_the_cluster_role_without_cluster_scoped_rules() {
    let cluster = cluster_rules();
    let role = read::<Role>("namespaced/role.yaml")
        .rules
        .unwrap_or_default();
    // The cluster-scoped kinds: CRDs and Kuma's TrafficRoutes.
    let cluster_scoped = |r: &PolicyRule| {
        r.resources
            .iter()
            .flatten()
            .any(|x| x == "customresourcedefinitions" || x == "trafficroutes")
    };
    let namespaced: Vec<PolicyRule> = cluster
        .iter()
        .filter(|r| !cluster_scoped(r))
        .cloned()
        .collect();
    assert_eq!(role, namespaced);
    assert_eq!(namespaced.len() + 2, cluster.len());
    // Nothing cluster-wide beyond reading the one CRD and the kuma router's TrafficRoutes.
    let crd = cluster
        .iter()
        .find(|r| {
            r.api_groups
                .iter()
                .flatten()
                .any(|g| g == "apiextensions.k8s.io")
        })
        .expect("the CRD rule");
    assert_eq!(
        crd.resource_names.as_deref(),
        Some(&["httproutes.gateway.networking.k8s.io".to_string()][..])
    );
    assert_eq!(crd.verbs, ["get"]);
    for r in &cluster {
        assert!(
            !r.verbs.iter().any(|v| v == "*") && !r.resources.iter().flatten().any(|x| x == "*"),
            "no wildcards: {r:?}"
        );
    }
}

#[test]
fn every_router_kind_is_covered() {
    let rules = cluster_rules();
    let smi = SmiVersion::V1alpha2.kind();
    let kinds = [
        ("gateway.networking.k8s.io", "httproutes"),
        ("networking.istio.io", "virtualservices"),
        ("networking.istio.io", "destinationrules"),
        (smi.group, smi.plural),
        (traefik::KIND.group, traefik::KIND.plural),
        (kuma::KIND.group, kuma::KIND.plural),
        (apisix::KIND.group, apisix::KIND.plural),
        (gloo::ROUTE_TABLE.group, gloo::ROUTE_TABLE.plural),
        (gloo::UPSTREAM.group, gloo::UPSTREAM.plural),
        (appmesh::VIRTUAL_NODE.group, appmesh::VIRTUAL_NODE.plural),
        (
            appmesh::VIRTUAL_ROUTER.group,
            appmesh::VIRTUAL_ROUTER.plural,
        ),
        (
            appmesh::VIRTUAL_SERVICE.group,
            appmesh::VIRTUAL_SERVICE.plural,
        ),
        ("", "services"),
    ];
    for (group, plural) in kinds {
        for verb in ["get", "create", "patch"] {
            assert!(
                allows(&rules, group, plural, verb),
                "no {verb} on {group}/{plural}"
            );
        }
    }
    assert!(allows(&rules, smi.group, smi.plural, "delete"));
    // The knative router changes the user's Knative Service (never creates one) and watches it
    // for drift; the controller reads its Revisions.
    let knative = fledge_controller::routers::knative::SERVICE;
    for verb in ["get", "patch", "watch"] {
        assert!(
            allows(&rules, knative.group, knative.plural, verb),
            "knative {verb}"
        );
    }
    let revisions = fledge_controller::routers::knative::REVISION;
    assert!(allows(&rules, revisions.group, revisions.plural, "get"));
    // Deleted with their Canary (no owner reference can do it).
    assert!(allows(
        &rules,
        kuma::KIND.group,
        kuma::KIND.plural,
        "delete"
    ));
    for (group, resource, verb) in [
        ("fledge.dev", "canaries", "watch"),
        ("fledge.dev", "canaries", "patch"),
        ("fledge.dev", "canaries/status", "update"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "delete"),
        // A primary is made from the target read whole, a fresh baseline from the primary.
        ("apps", "deployments", "get"),
        ("apps", "daemonsets", "get"),
        ("", "configmaps", "watch"),
        ("", "secrets", "get"),
        ("events.k8s.io", "events", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("autoscaling", "horizontalpodautoscalers", "patch"),
        // The keptn metrics provider.
        ("metrics.keptn.sh", "keptnmetrics", "get"),
        ("metrics.keptn.sh", "analyses", "create"),
        ("metrics.keptn.sh", "analyses", "get"),
        ("metrics.keptn.sh", "analyses", "delete"),
    ] {
        assert!(
            allows(&rules, group, resource, verb),
            "no {verb} on {group}/{resource}"
        );
    }
}

#[test]
fn the_bindings_name_the_service_account_and_the_roles() {
    let sa: ServiceAccount = read("service-account.yaml");
    let name = sa.metadata.name.clone().unwrap();
    let ns = sa.metadata.namespace.clone().unwrap();
    let crb: ClusterRoleBinding = read("cluster-role-binding.yaml");
    let rb: RoleBinding = read("namespaced/role-binding.yaml");
    for (subjects, role_kind, role_ref) in [
        (
            crb.subjects.unwrap_or_default(),
            "ClusterRole",
            crb.role_ref,
        ),
        (rb.subjects.unwrap_or_default(), "Role", rb.role_ref),
    ] {
        assert_eq!(subjects.len(), 1);
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, name);
        assert_eq!(subjects[0].namespace.as_deref(), Some(ns.as_str()));
        assert_eq!(
            (role_ref.kind.as_str(), role_ref.name.as_str()),
            (role_kind, "fledge")
        );
    }
}
