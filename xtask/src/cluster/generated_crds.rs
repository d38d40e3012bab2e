//! The Gloo and App Mesh CRDs, generated from Flagger's own API types.
//!
//! Their upstream modules (`github.com/solo-io/gloo`, `github.com/aws/aws-app-mesh-controller-for-k8s`)
//! are refused by the Go module proxy this project builds from, so their CRD files cannot be
//! pinned like the other peers'. Flagger's module (pinned in `xtask/go-flagger/go.mod`) carries
//! the Go types it writes these objects with (`pkg/apis/gloo/{gateway,gloo}/v1`,
//! `pkg/apis/appmesh/{v1beta1,v1beta2}`), and controller-gen (`sigs.k8s.io/controller-tools`,
//! pinned in `xtask/go-controller-gen/go.mod`) turns them into structural CRDs. The API server
//! then prunes every field those types lack, which is what the routers' objects are checked
//! against: the fields Flagger itself can write, no more.
//!
//! | kind | group/version | types |
//! | --- | --- | --- |
//! | `RouteTable` | `gateway.solo.io/v1` | `pkg/apis/gloo/gateway/v1` |
//! | `Upstream` | `gloo.solo.io/v1` | `pkg/apis/gloo/gloo/v1` |
//! | `VirtualNode`, `VirtualService` | `appmesh.k8s.aws/v1beta1` and `v1beta2` | `pkg/apis/appmesh/v1beta1`, `v1beta2` |
//! | `VirtualRouter` | `appmesh.k8s.aws/v1beta2` | `pkg/apis/appmesh/v1beta2` |
//!
//! No real cluster serves App Mesh's v1beta1 and v1beta2 together (each controller generation
//! had its own), but both of Flagger's App Mesh providers are tested on one control plane. A
//! CRD stores one version and converts with `None` (objects are stored as written), and the
//! API server prunes what it reads from etcd by the stored version's schema; so each App Mesh
//! CRD gets a third version, `union`, neither served nor written by anyone, whose schema has
//! the fields of both, and stores that one. Writes are still pruned by the schema of the version
//! they name. Flagger's `Mesh` (cluster-scoped, never written by a router) is not installed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use super::build::{cache_dir, go_command, module_version};
use crate::dataplane::build::{Program, build_program, download_module_in, go_env};
use crate::util::{root, target_dir};

/// The pinned controller-gen.
const GO_MOD: &str = include_str!("../../go-controller-gen/go.mod");
/// controller-gen's module.
const CONTROLLER_TOOLS: &str = "sigs.k8s.io/controller-tools";

/// The packages of Flagger's module turned into CRDs, each on its own (two versions of one kind
/// generated together would need a storage-version marker the types do not have).
const PACKAGES: &[(&str, &str)] = &[
    ("gloo", "./pkg/apis/gloo/..."),
    ("appmesh-v1beta1", "./pkg/apis/appmesh/v1beta1"),
    ("appmesh-v1beta2", "./pkg/apis/appmesh/v1beta2"),
];

/// The version each App Mesh CRD stores: the union of the served versions' schemas.
pub const UNION_VERSION: &str = "union";

/// The CRD names installed, for the stamp's check.
pub const NAMES: &[&str] = &[
    "routetables.gateway.solo.io",
    "upstreams.gloo.solo.io",
    "virtualnodes.appmesh.k8s.aws",
    "virtualrouters.appmesh.k8s.aws",
    "virtualservices.appmesh.k8s.aws",
];

/// The pinned controller-gen version.
pub fn controller_gen_version() -> &'static str {
    module_version(GO_MOD, CONTROLLER_TOOLS).unwrap_or("unknown")
}

/// What the generated CRDs depend on, for the peer CRDs' stamp.
pub fn stamp() -> String {
    format!(
        "{}@{} {CONTROLLER_TOOLS}@{} with status subresources\n",
        crate::flagger::MODULE,
        crate::flagger::version(),
        controller_gen_version()
    )
}

/// The generated CRDs, as JSON, App Mesh's versions merged; `to_json` turns a directory of
/// YAML files into a JSON `List` (kubectl's client-side conversion).
pub fn crds(to_json: impl Fn(&Path) -> Result<String>) -> Result<Vec<Value>> {
    let dir = generate()?;
    let mut by_package = Vec::new();
    for (name, _) in PACKAGES {
        let text = to_json(&dir.join(name))?;
        // One object per file, printed one after the other (a `List` is taken apart too).
        let mut items = Vec::new();
        for value in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
            let value = value.with_context(|| {
                format!("the CRDs generated in {} as JSON", dir.join(name).display())
            })?;
            match value.get("items") {
                Some(Value::Array(list)) => items.extend(list.iter().cloned()),
                _ => items.push(value),
            }
        }
        by_package.push(items);
    }
    let [gloo, v1beta1, v1beta2]: [Vec<Value>; 3] = by_package
        .try_into()
        .map_err(|_| anyhow::anyhow!("one CRD list per package"))?;
    let mut out = gloo;
    for crd in v1beta2 {
        let name = crd_name(&crd).to_string();
        match v1beta1.iter().find(|c| crd_name(c) == name) {
            Some(older) => out.push(merge_versions(crd, older)?),
            None => out.push(crd),
        }
    }
    out.retain(|c| NAMES.contains(&crd_name(c)));
    for crd in &mut out {
        with_status_subresource(crd);
    }
    if out.len() != NAMES.len() {
        bail!(
            "controller-gen made {} of the {} CRDs expected ({}) from Flagger's types",
            out.len(),
            NAMES.len(),
            NAMES.join(", ")
        );
    }
    Ok(out)
}

fn crd_name(crd: &Value) -> &str {
    crd["metadata"]["name"].as_str().unwrap_or_default()
}

/// The only version of a generated CRD.
fn only_version(crd: &Value) -> Result<&Value> {
    match crd["spec"]["versions"].as_array().map(Vec::as_slice) {
        Some([v]) => Ok(v),
        _ => bail!(
            "the generated CRD {} has not exactly one version",
            crd_name(crd)
        ),
    }
}

/// Gives every version whose schema has a `status` the status subresource, as the real Gloo and
/// App Mesh CRDs have: the API server then drops a status sent with an object (Flagger's Go
/// types send `status: {conditions: null}`, which the generated schema would refuse) and leaves
/// status to the mesh's controller.
pub fn with_status_subresource(crd: &mut Value) {
    for version in crd["spec"]["versions"].as_array_mut().into_iter().flatten() {
        if version
            .pointer("/schema/openAPIV3Schema/properties/status")
            .is_some()
        {
            version["subresources"] = serde_json::json!({"status": {}});
        }
    }
}

/// One CRD serving the versions of `newer` and `older` (each with its own schema), storing the
/// [`UNION_VERSION`] of both, converted with `None`.
pub fn merge_versions(mut newer: Value, older: &Value) -> Result<Value> {
    let mut new_version = only_version(&newer)?.clone();
    let mut old_version = only_version(older)?.clone();
    let mut union = new_version.clone();
    union_schema(
        &mut union["schema"]["openAPIV3Schema"],
        &old_version["schema"]["openAPIV3Schema"],
    );
    union["name"] = Value::from(UNION_VERSION);
    union["served"] = Value::Bool(false);
    union["storage"] = Value::Bool(true);
    for v in [&mut new_version, &mut old_version] {
        v["served"] = Value::Bool(true);
        v["storage"] = Value::Bool(false);
    }
    newer["spec"]["versions"] = Value::Array(vec![old_version, new_version, union]);
    newer["spec"]["conversion"] = serde_json::json!({"strategy": "None"});
    Ok(newer)
}

/// Adds `other`'s fields to `schema`: properties merged (recursively where both have one),
/// `required` only what both require, array items merged.
pub fn union_schema(schema: &mut Value, other: &Value) {
    let (Some(s), Some(o)) = (schema.as_object_mut(), other.as_object()) else {
        return;
    };
    if let Some(Value::Object(theirs)) = o.get("properties") {
        let ours = s
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(ours) = ours.as_object_mut() {
            for (name, field) in theirs {
                match ours.get_mut(name) {
                    Some(mine) => union_schema(mine, field),
                    None => {
                        ours.insert(name.clone(), field.clone());
                    }
                }
            }
        }
    }
    let required = |m: &Map<String, Value>| -> Vec<Value> {
        m.get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let both: Vec<Value> = required(s)
        .into_iter()
        .filter(|r| required(o).contains(r))
        .collect();
    if both.is_empty() {
        s.remove("required");
    } else {
        s.insert("required".into(), Value::Array(both));
    }
    if let (Some(mine), Some(theirs)) = (s.get_mut("items"), o.get("items")) {
        union_schema(mine, theirs);
    }
    if let (Some(mine @ Value::Object(_)), Some(theirs)) = (
        s.get_mut("additionalProperties"),
        o.get("additionalProperties"),
    ) {
        union_schema(mine, theirs);
    }
}

/// The directory of generated CRDs (one subdirectory per package), generated once per pin set.
fn generate() -> Result<PathBuf> {
    let cache = cache_dir()?;
    let dir = cache.join("crds").join(format!(
        "flagger-{}-controller-gen-{}",
        crate::flagger::version(),
        controller_gen_version()
    ));
    if PACKAGES.iter().all(|(name, _)| dir.join(name).is_dir()) {
        return Ok(dir);
    }
    let controller_gen = controller_gen(&cache)?;
    let flagger = download_module_in(
        &root().join("xtask").join("go-flagger"),
        crate::flagger::MODULE,
    )?;
    let partial = cache
        .join("crds")
        .join(format!(".partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&partial);
    for (name, package) in PACKAGES {
        let out_dir = partial.join(name);
        let mut cmd = Command::new(&controller_gen);
        cmd.current_dir(&flagger)
            .arg("crd:crdVersions=v1,allowDangerousTypes=true,maxDescLen=0")
            .arg(format!("paths={package}"))
            .arg(format!("output:crd:dir={}", out_dir.display()))
            .stdin(Stdio::null());
        go_env(&mut cmd, &cache);
        let out = cmd
            .output()
            .with_context(|| format!("running {}", controller_gen.display()))?;
        if !out.status.success() {
            bail!(
                "controller-gen on Flagger's {package} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&partial, &dir)
        .with_context(|| format!("moving {} to {}", partial.display(), dir.display()))?;
    Ok(dir)
}

/// controller-gen, built into the cache from its pinned module when missing.
fn controller_gen(cache: &Path) -> Result<PathBuf> {
    let version = controller_gen_version();
    let binary = cache
        .join("bin")
        .join(format!("controller-gen-{version}"))
        .join("controller-gen");
    if binary.is_file() {
        return Ok(binary);
    }
    let go = go_command()?;
    let module_dir = download_module_in(
        &root().join("xtask").join("go-controller-gen"),
        CONTROLLER_TOOLS,
    )?;
    let log_path = target_dir().join("controller-gen").join("go-build.log");
    eprintln!(
        "cluster: building controller-gen {version} (once per version; build log: {})",
        log_path.display()
    );
    let program = Program {
        name: "controller-gen",
        version,
        package_dir: "./cmd/controller-gen",
        ldflags: String::new(),
    };
    build_program(&go, cache, &module_dir, &program, &log_path, &binary)?;
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(version: &str, schema: Value) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "virtualnodes.appmesh.k8s.aws"},
            "spec": {"versions": [{
                "name": version, "served": true, "storage": true,
                "schema": {"openAPIV3Schema": schema}
            }]}
        })
    }

    #[test]
    fn versions_are_served_with_their_own_schemas_and_stored_as_their_union() {
        let newer = crd(
            "v1beta2",
            json!({"type": "object", "properties": {"spec": {"type": "object",
                "required": ["podSelector", "listeners"],
                "properties": {
                    "podSelector": {"type": "object"},
                    "listeners": {"type": "array", "items": {"type": "object",
                        "properties": {"portMapping": {"type": "object"}}}}}}}}),
        );
        let older = crd(
            "v1beta1",
            json!({"type": "object", "properties": {"spec": {"type": "object",
                "required": ["meshName", "listeners"],
                "properties": {
                    "meshName": {"type": "string"},
                    "listeners": {"type": "array", "items": {"type": "object",
                        "properties": {"healthCheck": {"type": "object"}}}}}}}}),
        );
        let merged = merge_versions(newer, &older).unwrap();
        let versions = merged["spec"]["versions"].as_array().unwrap();
        let names: Vec<_> = versions
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["v1beta1", "v1beta2", UNION_VERSION]);
        let flags: Vec<_> = versions
            .iter()
            .map(|v| (v["served"].clone(), v["storage"].clone()))
            .collect();
        assert_eq!(
            flags,
            [
                (json!(true), json!(false)),
                (json!(true), json!(false)),
                (json!(false), json!(true))
            ]
        );
        // Each served version keeps its own fields only.
        assert!(
            versions[0]
                .pointer("/schema/openAPIV3Schema/properties/spec/properties/podSelector")
                .is_none()
        );
        assert!(
            versions[1]
                .pointer("/schema/openAPIV3Schema/properties/spec/properties/meshName")
                .is_none()
        );
        // The stored one has both, requires only what both require, and merges array items.
        let spec = &versions[2]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["properties"]["meshName"]["type"], "string");
        assert_eq!(spec["properties"]["podSelector"]["type"], "object");
        assert_eq!(spec["required"], json!(["listeners"]));
        let item = &spec["properties"]["listeners"]["items"]["properties"];
        assert!(item.get("portMapping").is_some() && item.get("healthCheck").is_some());
        assert_eq!(merged["spec"]["conversion"]["strategy"], "None");
    }

    #[test]
    fn versions_with_a_status_get_the_status_subresource() {
        let mut c = crd(
            "v1beta2",
            json!({"type": "object", "properties": {"status": {"type": "object",
                "required": ["conditions"]}}}),
        );
        c["spec"]["versions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "v1", "schema": {"openAPIV3Schema": {"type": "object"}}}));
        with_status_subresource(&mut c);
        assert_eq!(
            c["spec"]["versions"][0]["subresources"],
            json!({"status": {}})
        );
        assert!(c["spec"]["versions"][1].get("subresources").is_none());
    }

    #[test]
    fn a_crd_with_more_than_one_version_is_not_merged() {
        let mut newer = crd("v1beta2", json!({"type": "object"}));
        let older = crd("v1beta1", json!({"type": "object"}));
        newer["spec"]["versions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "v1"}));
        let err = merge_versions(newer, &older).unwrap_err().to_string();
        assert!(err.contains("not exactly one version"), "{err}");
    }

    #[test]
    fn controller_gen_is_pinned() {
        assert!(
            controller_gen_version().starts_with("v0."),
            "{}",
            controller_gen_version()
        );
    }
}
