//! Traefik's own CRDs (`traefik.io`: IngressRoute, TraefikService, Middleware, …) for its
//! `kubernetesCRD` provider, which serves the `traefik` router's TraefikServices behind the
//! IngressRoutes users write. The CRDs and the provider's RBAC come from the pinned Traefik
//! module (the same files Traefik documents for installing by hand), never hand-written; the
//! provider runs with a token of the ServiceAccount that RBAC file binds, as the Gateway
//! provider runs with the one its own RBAC file binds.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::build::{self, Tool};
use super::gateway::{rbac_objects, rbac_subject};
use super::kubectl::Kubectl;

/// Every `traefik.io` CRD, in one file of the Traefik module.
pub const CRD_FILE: &str =
    "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml";
/// The RBAC of the `kubernetesCRD` provider, in the Traefik module.
pub const RBAC_FILE: &str = "docs/content/reference/dynamic-configuration/kubernetes-crd-rbac.yml";
/// The field manager of the CRDs.
const MANAGER: &str = "fledge-xtask";

/// Installs (server-side applies) the `traefik.io` CRDs of the pinned Traefik and waits until
/// they are Established; returns their names.
pub fn ensure_crds(kubectl: &Kubectl, workspace: &Path) -> Result<Vec<String>> {
    let module = build::download_module(workspace, Tool::Traefik.module())?;
    let file = module.join(CRD_FILE);
    let out = kubectl
        .run(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            &format!("--field-manager={MANAGER}"),
            "-o",
            "name",
            "-f",
            &file.to_string_lossy(),
        ])
        .with_context(|| format!("installing Traefik's CRDs from {}", file.display()))?;
    let crds: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("customresourcedefinition"))
        .map(String::from)
        .collect();
    if !crds
        .iter()
        .any(|c| c.ends_with("/traefikservices.traefik.io"))
    {
        bail!(
            "{} holds no TraefikService CRD (kubectl printed: {})",
            file.display(),
            out.trim()
        );
    }
    let mut wait = vec![
        "wait".to_string(),
        "--for=condition=Established".into(),
        "--timeout=60s".into(),
    ];
    wait.extend(crds.iter().cloned());
    kubectl.run(&wait.iter().map(String::as_str).collect::<Vec<_>>())?;
    Ok(crds)
}

/// Applies the `kubernetesCRD` provider's RBAC and its ServiceAccount; returns a token of that
/// ServiceAccount.
pub fn provider_token(kubectl: &Kubectl, workspace: &Path) -> Result<String> {
    let rbac = rbac_objects(kubectl, workspace, RBAC_FILE)?;
    let (namespace, name) = rbac_subject(&rbac)?;
    kubectl
        .apply(&rbac)
        .context("applying Traefik's CRD RBAC")?;
    kubectl.apply(&json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }))?;
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
        .context("requesting a token for Traefik's CRD ServiceAccount")?;
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("`kubectl create token` printed nothing");
    }
    Ok(token)
}
