//! The Gateway API side: the CRDs (installed from the upstream module only when missing),
//! Traefik's RBAC (from Traefik's own module), a GatewayClass and a Gateway, Traefik's static
//! configuration, and waiting until Traefik reports the Gateway Programmed.

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::build::{self, GATEWAY_API_MODULE, Tool};
use super::kubectl::Kubectl;
use super::{
    GATEWAY_CLASS, GATEWAY_NAME, GATEWAY_NAMESPACE, LISTENER_NAME, TRAEFIK_CONTROLLER, wait_until,
};

/// The API group of the Gateway API CRDs.
const GROUP: &str = "gateway.networking.k8s.io";

/// Traefik's documented RBAC for its Kubernetes Gateway provider, inside its module.
const TRAEFIK_RBAC: &str =
    "docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml";

/// The standard-channel CRD files of the pinned Gateway API module: `(CRD name, file)`.
fn standard_crds(workspace: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let module = build::download_module(workspace, GATEWAY_API_MODULE)?;
    let dir = module.join("config").join("crd").join("standard");
    let mut crds = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(plural) = file
            .strip_prefix(&format!("{GROUP}_"))
            .and_then(|f| f.strip_suffix(".yaml"))
        else {
            continue;
        };
        // The channel also ships a ValidatingAdmissionPolicy (safe upgrades); only CRDs here.
        let text = fs::read_to_string(&path)?;
        if !text.contains("kind: CustomResourceDefinition") {
            continue;
        }
        crds.push((format!("{plural}.{GROUP}"), path));
    }
    crds.sort();
    if crds.is_empty() {
        bail!("no Gateway API CRDs found in {}", dir.display());
    }
    Ok(crds)
}

/// Installs the Gateway API CRDs of the standard channel that the cluster lacks, then waits
/// until every one is Established. `cluster up` normally has installed them already (the
/// experimental channel, a superset, by default); those are left as they are.
pub fn ensure_crds(kubectl: &Kubectl, workspace: &Path, deadline: Instant) -> Result<()> {
    let crds = standard_crds(workspace)?;
    let installed = installed_crds(kubectl)?;
    let mut created = Vec::new();
    for (name, file) in &crds {
        if installed.contains_key(name) {
            continue;
        }
        let out = kubectl.output(&["create", "-f", &file.to_string_lossy()])?;
        let err = String::from_utf8_lossy(&out.stderr);
        // `cluster up` may create it at the same moment.
        if !out.status.success() && !err.contains("AlreadyExists") {
            bail!("installing CRD {name} failed: {}", err.trim());
        }
        created.push(name.as_str());
    }
    if !created.is_empty() {
        eprintln!(
            "dataplane: installed Gateway API {} CRDs (standard channel): {}",
            build::gateway_api_version(),
            created.join(", ")
        );
    }
    wait_until(
        deadline,
        "the Gateway API CRDs to be Established",
        &mut || Ok(()),
        &mut || {
            let installed = installed_crds(kubectl)?;
            Ok(crds.iter().all(|(name, _)| {
                installed
                    .get(name)
                    .is_some_and(|c| condition_true(c, "Established"))
            }))
        },
    )
}

/// The cluster's CRDs of the Gateway API group, by name.
fn installed_crds(kubectl: &Kubectl) -> Result<std::collections::BTreeMap<String, Value>> {
    let list = kubectl.get_json(&["crd"])?.unwrap_or_default();
    Ok(list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.pointer("/spec/group").and_then(Value::as_str) == Some(GROUP))
        .filter_map(|c| {
            Some((
                c.pointer("/metadata/name")?.as_str()?.to_string(),
                c.clone(),
            ))
        })
        .collect())
}

/// The `gateway.networking.k8s.io/bundle-version` of the installed Gateway CRD.
pub fn installed_bundle_version(kubectl: &Kubectl) -> Option<String> {
    let crd = kubectl
        .get_json(&["crd", &format!("gateways.{GROUP}")])
        .ok()??;
    crd.pointer("/metadata/annotations")?
        .get(format!("{GROUP}/bundle-version"))?
        .as_str()
        .map(str::to_string)
}

/// Whether `obj.status.conditions` has `type` with status True, observed at the object's
/// current generation when the condition records one.
pub fn condition_true(obj: &Value, type_: &str) -> bool {
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c.get("type").and_then(Value::as_str) == Some(type_)
                && c.get("status").and_then(Value::as_str) == Some("True")
                && match (
                    c.get("observedGeneration").and_then(Value::as_i64),
                    generation,
                ) {
                    (Some(seen), Some(current)) => seen == current,
                    _ => true,
                }
        })
}

/// The ServiceAccount Traefik's upstream ClusterRoleBinding names, from the RBAC file.
pub(super) fn rbac_subject(objects: &Value) -> Result<(String, String)> {
    let items = objects
        .get("items")
        .and_then(Value::as_array)
        .context("the RBAC file holds no list of objects")?;
    items
        .iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("ClusterRoleBinding"))
        .flat_map(|o| {
            o.get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|s| s.get("kind").and_then(Value::as_str) == Some("ServiceAccount"))
        .and_then(|s| {
            Some((
                s.get("namespace")?.as_str()?.to_string(),
                s.get("name")?.as_str()?.to_string(),
            ))
        })
        .context("Traefik's RBAC file binds no ServiceAccount")
}

/// Traefik's RBAC objects for its Gateway provider, as JSON, read from its module.
fn traefik_rbac(kubectl: &Kubectl, workspace: &Path) -> Result<Value> {
    rbac_objects(kubectl, workspace, TRAEFIK_RBAC)
}

/// The objects of an RBAC file of the Traefik module, as a JSON List, read with kubectl.
pub(super) fn rbac_objects(kubectl: &Kubectl, workspace: &Path, path: &str) -> Result<Value> {
    let module = build::download_module(workspace, Tool::Traefik.module())?;
    let file = module.join(path);
    let json = kubectl
        .run(&[
            "create",
            "--dry-run=client",
            "-o",
            "json",
            "-f",
            &file.to_string_lossy(),
        ])
        .with_context(|| format!("reading {}", file.display()))?;
    // One JSON document per object; gather them into a List.
    let items = serde_json::Deserializer::from_str(&json)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .context("kubectl printed no JSON for Traefik's RBAC")?;
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// Applies the namespace, Traefik's RBAC and ServiceAccount, the GatewayClass and the Gateway
/// with its HTTP listener on `web_port`; resets the Gateway's status so that only a Traefik
/// started after this call can mark it Programmed.
pub fn apply_objects(kubectl: &Kubectl, workspace: &Path, web_port: u16) -> Result<()> {
    let rbac = traefik_rbac(kubectl, workspace)?;
    let (sa_namespace, sa_name) = rbac_subject(&rbac)?;
    kubectl.apply(&rbac).context("applying Traefik's RBAC")?;
    kubectl.apply(&objects(web_port, &sa_namespace, &sa_name))?;
    Ok(())
}

/// Clears the Gateway's status conditions back to the CRD's Pending defaults.
pub fn reset_gateway_status(kubectl: &Kubectl) -> Result<()> {
    let pending = |type_: &str| {
        json!({
            "type": type_, "status": "Unknown", "reason": "Pending",
            "message": "Waiting for controller", "lastTransitionTime": "1970-01-01T00:00:00Z",
        })
    };
    let patch = json!({"status": {
        "conditions": [pending("Accepted"), pending("Programmed")],
        "listeners": [],
        "addresses": [],
    }});
    kubectl
        .run(&[
            "patch",
            "gateway",
            GATEWAY_NAME,
            "-n",
            GATEWAY_NAMESPACE,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])
        .map(drop)
        .context("resetting the Gateway's status")
}

fn objects(web_port: u16, sa_namespace: &str, sa_name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": GATEWAY_NAMESPACE},
            },
            {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": sa_name, "namespace": sa_namespace},
            },
            {
                "apiVersion": format!("{GROUP}/v1"), "kind": "GatewayClass",
                "metadata": {"name": GATEWAY_CLASS},
                "spec": {"controllerName": TRAEFIK_CONTROLLER},
            },
            {
                "apiVersion": format!("{GROUP}/v1"), "kind": "Gateway",
                "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
                "spec": {
                    "gatewayClassName": GATEWAY_CLASS,
                    "listeners": [{
                        "name": LISTENER_NAME,
                        "protocol": "HTTP",
                        // Traefik maps a listener to the entry point with the same port.
                        "port": web_port,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }],
                },
            },
        ],
    })
}

/// A token for Traefik's ServiceAccount from the TokenRequest API (`kubectl create token`).
pub fn service_account_token(kubectl: &Kubectl, workspace: &Path) -> Result<String> {
    let rbac = traefik_rbac(kubectl, workspace)?;
    let (namespace, name) = rbac_subject(&rbac)?;
    let token = kubectl
        .run(&[
            "create",
            "token",
            &name,
            "-n",
            &namespace,
            // Traefik reads the token once, at start; a year outlives any local session.
            "--duration=8760h",
        ])
        .context("requesting a token for Traefik's ServiceAccount")?;
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("`kubectl create token` printed nothing");
    }
    Ok(token)
}

/// Traefik's static configuration (JSON, which Traefik's YAML loader reads): the Gateway
/// provider with `token_file`, and the CRD provider (IngressRoutes, TraefikServices) with
/// `crd_token_file`.
pub fn traefik_config(
    web_port: u16,
    admin_port: u16,
    server: &str,
    token_file: &Path,
    crd_token_file: &Path,
    ca_file: &Path,
) -> Value {
    json!({
        "global": {"checkNewVersion": false, "sendAnonymousUsage": false},
        "log": {"level": "INFO", "noColor": true},
        "entryPoints": {
            LISTENER_NAME: {"address": format!("127.0.0.1:{web_port}")},
            // Ping, metrics and the read-only API, apart from routed traffic.
            "traefik": {"address": format!("127.0.0.1:{admin_port}")},
        },
        "ping": {"entryPoint": "traefik"},
        "api": {"insecure": true, "dashboard": false},
        "metrics": {"prometheus": {
            "entryPoint": "traefik",
            "addEntryPointsLabels": true,
            "addRoutersLabels": true,
            "addServicesLabels": true,
            // Finer than Traefik's default (0.1, 0.3, 1.2, 5 s), so that a P99 computed from
            // the histogram is near the truth and not the top of a wide bucket.
            "buckets": [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
        }},
        "providers": {
            // How soon a route change (a new weight) takes effect; Traefik's default is 2s.
            "providersThrottleDuration": "1s",
            "kubernetesGateway": {
                "endpoint": server,
                "token": token_file,
                "certAuthFilePath": ca_file,
                "statusAddress": {"ip": "127.0.0.1"},
            },
            "kubernetesCRD": {
                "endpoint": server,
                "token": crd_token_file,
                "certAuthFilePath": ca_file,
                // A Service without endpoints (a canary scaled to zero) answers 503 for its
                // share instead of taking its whole TraefikService down.
                "allowEmptyServices": true,
            },
        },
    })
}

/// Waits until Traefik has accepted the GatewayClass and reports the Gateway Accepted and
/// Programmed at its current generation.
pub fn wait_programmed(
    kubectl: &Kubectl,
    deadline: Instant,
    alive: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    wait_until(
        deadline,
        &format!("Traefik to accept GatewayClass {GATEWAY_CLASS}"),
        alive,
        &mut || {
            let class = kubectl.get_json(&["gatewayclass", GATEWAY_CLASS])?;
            Ok(class.is_some_and(|c| condition_true(&c, "Accepted")))
        },
    )?;
    wait_until(
        deadline,
        &format!("Gateway {GATEWAY_NAMESPACE}/{GATEWAY_NAME} to be Accepted and Programmed"),
        alive,
        &mut || {
            let gw = kubectl.get_json(&["gateway", GATEWAY_NAME, "-n", GATEWAY_NAMESPACE])?;
            Ok(gw.is_some_and(|g| {
                condition_true(&g, "Accepted") && condition_true(&g, "Programmed")
            }))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_count_only_at_the_current_generation() {
        let gw = |observed: i64| {
            json!({
                "metadata": {"generation": 2},
                "status": {"conditions": [
                    {"type": "Accepted", "status": "True", "observedGeneration": observed},
                    {"type": "Programmed", "status": "False", "observedGeneration": 2},
                ]},
            })
        };
        assert!(condition_true(&gw(2), "Accepted"));
        assert!(!condition_true(&gw(1), "Accepted"));
        assert!(!condition_true(&gw(2), "Programmed"));
        assert!(!condition_true(&json!({}), "Accepted"));
        let crd = json!({"status": {"conditions": [{"type": "Established", "status": "True"}]}});
        assert!(condition_true(&crd, "Established"));
    }

    #[test]
    fn finds_the_service_account_traefiks_rbac_binds() {
        let list = json!({"kind": "List", "items": [
            {"kind": "ClusterRole", "metadata": {"name": "gateway-role"}},
            {"kind": "ClusterRoleBinding", "subjects": [
                {"kind": "ServiceAccount", "name": "traefik-controller", "namespace": "default"},
            ]},
        ]});
        assert_eq!(
            rbac_subject(&list).unwrap(),
            ("default".to_string(), "traefik-controller".to_string())
        );
        assert!(rbac_subject(&json!({"items": []})).is_err());
    }

    #[test]
    fn the_listener_port_is_an_entry_point_port() {
        let config = traefik_config(
            8000,
            8001,
            "https://127.0.0.1:6443",
            Path::new("/t"),
            Path::new("/crd"),
            Path::new("/ca"),
        );
        assert_eq!(config["providers"]["kubernetesCRD"]["token"], "/crd");
        assert_eq!(
            config["providers"]["kubernetesCRD"]["allowEmptyServices"],
            true
        );
        assert_eq!(
            config["entryPoints"][LISTENER_NAME]["address"],
            "127.0.0.1:8000"
        );
        let objs = objects(8000, "default", "traefik-controller");
        let gateway = &objs["items"][3];
        assert_eq!(gateway["kind"], "Gateway");
        assert_eq!(gateway["spec"]["listeners"][0]["port"], 8000);
        assert_eq!(
            objs["items"][2]["spec"]["controllerName"],
            TRAEFIK_CONTROLLER
        );
    }
}
