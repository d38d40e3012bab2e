//! The peer CRDs the routers write to: Gateway API, Istio, SMI, Contour, Kuma, APISIX, Knative, Gloo and App Mesh, installed by `cluster up`
//! from the upstream Go modules that ship them, at the versions pinned in
//! `xtask/go/peers/go.mod` (checksums in its go.sum), never hand-written; Gloo and App Mesh, whose
//! modules the proxy refuses, generated from Flagger's API types (`generated_crds`).
//!
//! | API | module | files |
//! | --- | --- | --- |
//! | Gateway API | `sigs.k8s.io/gateway-api` | `config/crd/<channel>/` as its kustomization lists them |
//! | Istio | `istio.io/api` | `kubernetes/customresourcedefinitions.gen.yaml` |
//! | SMI TrafficSplit | `github.com/openservicemesh/osm` | `cmd/osm-bootstrap/crds/smi_traffic_split.yaml` |
//! | KEDA ScaledObject | `github.com/kedacore/keda/v2` | `config/crd/bases/keda.sh_scaledobjects.yaml` |
//! | Contour HTTPProxy (and Contour's other CRDs) | `github.com/projectcontour/contour` | `examples/contour/01-crds.yaml` |
//! | Kuma TrafficRoute | `github.com/kumahq/kuma/v2` | `deployments/charts/kuma/crds/kuma.io_trafficroutes.yaml` |
//! | APISIX ApisixRoute | `github.com/apache/apisix-ingress-controller` | `samples/deploy/crd/v1/ApisixRoute.yaml` |
//! | Knative Service and Revision | `knative.dev/serving` | `config/core/300-resources/{service,revision}.yaml` |
//! | Traefik v2 TraefikService (`traefik.containo.us`, for the Flagger comparison) | `github.com/traefik/traefik/v2` | `docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml`, that CRD alone |
//! | Gloo RouteTable and Upstream, App Mesh VirtualNode, VirtualRouter, VirtualService | generated from `github.com/fluxcd/flagger`'s types | see `generated_crds` |
//!
//! The Gateway API channel is `experimental` (a superset of `standard` with `retry`), or what
//! `FLEDGE_GATEWAY_API_CHANNEL` says. Upstream's safe-upgrades policy refuses experimental CRDs
//! over standard ones, so switching a running cluster to experimental needs
//! `cargo xtask cluster down --wipe` first.
//!
//! The SMI SDK module ships its TrafficSplit CRD only as `apiextensions.k8s.io/v1beta1`, which
//! Kubernetes no longer serves; OSM's copy is the same CRD as `apiextensions.k8s.io/v1`. OSM
//! serves only v1alpha2 of it; fledge also switches `served` on for v1alpha3 (its schema is in
//! the same file) so that both `smi:v1alpha2` and `smi:v1alpha3` can be tested. Neither file
//! has a schema for v1alpha1 (the SMI SDK lists it unserved under one schema whose weights are
//! numbers, though v1alpha1 weights are resource quantities such as `"100"` or `"500m"`), so
//! fledge adds v1alpha1 as a copy of v1alpha2 whose `weight` is an int-or-string, served and
//! not stored, for `smi:v1alpha1`. The versions share one layout and the CRD converts with
//! `None` (objects are stored as written): a v1alpha1 object keeps its quantity strings.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::ClusterInfo;
use super::build::{cache_dir, go_command, module_version};

/// The pinned modules.
const GO_MOD: &str = include_str!("../../go/peers/go.mod");

/// The modules whose files are installed.
pub const GATEWAY_API: &str = "sigs.k8s.io/gateway-api";
/// Istio's API module.
pub const ISTIO_API: &str = "istio.io/api";
/// The module with the SMI TrafficSplit CRD in `apiextensions.k8s.io/v1` form.
pub const SMI_CRD_MODULE: &str = "github.com/openservicemesh/osm";

/// KEDA's module (the ScaledObject an `autoscalerRef` may name).
pub const KEDA: &str = "github.com/kedacore/keda/v2";
/// Contour's module (the HTTPProxy of the `contour` provider).
pub const CONTOUR: &str = "github.com/projectcontour/contour";
/// Kuma's module (the TrafficRoute of the `kuma` provider).
pub const KUMA: &str = "github.com/kumahq/kuma/v2";
/// The APISIX ingress controller's module (the ApisixRoute of the `apisix` provider).
pub const APISIX: &str = "github.com/apache/apisix-ingress-controller";
/// Knative Serving's module (the Knative Service of the `knative` provider, its Revisions).
pub const KNATIVE_SERVING: &str = "knative.dev/serving";
/// Traefik v2's module (the `traefik.containo.us` TraefikService Flagger's traefik router
/// writes).
pub const TRAEFIK_V2: &str = "github.com/traefik/traefik/v2";

/// Every pinned module, in the order `install_peer_crds` reads their directories.
const PEER_MODULES: &[&str] = &[
    GATEWAY_API,
    ISTIO_API,
    SMI_CRD_MODULE,
    KEDA,
    CONTOUR,
    KUMA,
    APISIX,
    KNATIVE_SERVING,
    TRAEFIK_V2,
];

const ISTIO_FILE: &str = "kubernetes/customresourcedefinitions.gen.yaml";
const KEDA_FILE: &str = "config/crd/bases/keda.sh_scaledobjects.yaml";
const CONTOUR_FILE: &str = "examples/contour/01-crds.yaml";
const KUMA_FILE: &str = "deployments/charts/kuma/crds/kuma.io_trafficroutes.yaml";
const APISIX_FILE: &str = "samples/deploy/crd/v1/ApisixRoute.yaml";
const KNATIVE_FILES: &[&str] = &[
    "config/core/300-resources/service.yaml",
    "config/core/300-resources/revision.yaml",
];
/// Traefik v2's CRDs (both groups); only [`TRAEFIK_V2_CRD`] is installed.
const TRAEFIK_V2_FILE: &str =
    "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml";
/// The one CRD of Traefik v2's file installed (its `traefik.io` CRDs are the data plane's, at
/// Traefik v3's version).
const TRAEFIK_V2_CRD: &str = "traefikservices.traefik.containo.us";
const SMI_FILE: &str = "cmd/osm-bootstrap/crds/smi_traffic_split.yaml";
/// The TrafficSplit versions served, beyond what the file serves.
const SMI_SERVED: &[&str] = &["v1alpha2", "v1alpha3"];

/// The TrafficSplit version fledge adds (weights are quantities), and the one it copies.
const SMI_QUANTITY_VERSION: &str = "v1alpha1";
const SMI_QUANTITY_FROM: &str = "v1alpha2";

/// The field manager of the peer CRDs.
const MANAGER: &str = "fledge-xtask";

/// The Gateway API channel to install: `FLEDGE_GATEWAY_API_CHANNEL`, `experimental` by default.
pub fn gateway_api_channel() -> Result<String> {
    let channel = std::env::var("FLEDGE_GATEWAY_API_CHANNEL")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "experimental".into());
    if channel != "standard" && channel != "experimental" {
        bail!("FLEDGE_GATEWAY_API_CHANNEL is {channel:?}; use standard or experimental");
    }
    Ok(channel)
}

/// Installs the peer CRDs (once per cluster and pin set) and waits until they are Established.
pub fn install_peer_crds(info: &ClusterInfo) -> Result<()> {
    let channel = gateway_api_channel()?;
    let stamp_text = stamp(&channel);
    let stamp_file = info.dir.join("run").join("peer-crds");
    let kubectl = Kubectl(info);
    let key_crds = [
        "httproutes.gateway.networking.k8s.io",
        "virtualservices.networking.istio.io",
        "trafficsplits.split.smi-spec.io",
        "scaledobjects.keda.sh",
        "httpproxies.projectcontour.io",
        "trafficroutes.kuma.io",
        "apisixroutes.apisix.apache.org",
        "services.serving.knative.dev",
        "revisions.serving.knative.dev",
        TRAEFIK_V2_CRD,
    ];
    let key_crds = [&key_crds[..], super::generated_crds::NAMES].concat();
    if fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp_text)
        && kubectl.ok(&[&["get", "crd", "-o", "name"][..], &key_crds[..]].concat())
    {
        return Ok(());
    }

    let dirs = module_dirs(PEER_MODULES)?;
    let mut files = gateway_api_files(&dirs[0], &channel)?;
    files.push(dirs[1].join(ISTIO_FILE));
    files.push(dirs[3].join(KEDA_FILE));
    files.push(dirs[4].join(CONTOUR_FILE));
    files.push(dirs[5].join(KUMA_FILE));
    files.push(dirs[6].join(APISIX_FILE));
    files.extend(KNATIVE_FILES.iter().map(|f| dirs[7].join(f)));
    let mut crds = Vec::new();
    let mut args: Vec<String> = APPLY.map(String::from).to_vec();
    for f in &files {
        args.push("-f".into());
        args.push(f.display().to_string());
    }
    let out = kubectl
        .run(&args.iter().map(String::as_str).collect::<Vec<_>>(), None)
        .with_context(|| {
            format!(
                "installing the Gateway API ({channel} channel) and Istio CRDs; switching the \
                 Gateway API channel of a running cluster may be refused by upstream's \
                 safe-upgrades policy: `cargo xtask cluster down --wipe` first"
            )
        })?;
    crds.extend(crd_names(&out));

    // The SMI CRD, read as JSON (kubectl converts the YAML) and served at the versions fledge
    // writes.
    let smi_file = dirs[2].join(SMI_FILE);
    let json = kubectl.to_json(&smi_file)?;
    let mut smi: Value = serde_json::from_str(&json).context("the SMI CRD as JSON")?;
    serve_versions(&mut smi, SMI_SERVED)?;
    add_quantity_version(&mut smi, SMI_QUANTITY_VERSION, SMI_QUANTITY_FROM)?;
    let out = kubectl.apply_json(&smi.to_string())?;
    crds.extend(crd_names(&out));

    // Traefik v2's TraefikService of `traefik.containo.us`, alone of its file.
    let traefik_file = dirs[8].join(TRAEFIK_V2_FILE);
    let json = kubectl.to_json(&traefik_file)?;
    let traefik_service = serde_json::Deserializer::from_str(&json)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .flat_map(|v| match v.get("items") {
            Some(Value::Array(items)) => items.clone(),
            _ => vec![v],
        })
        .find(|c| c["metadata"]["name"] == TRAEFIK_V2_CRD)
        .with_context(|| format!("{} holds no {TRAEFIK_V2_CRD}", traefik_file.display()))?;
    let out = kubectl.apply_json(&traefik_service.to_string())?;
    crds.extend(crd_names(&out));

    // Gloo's and App Mesh's, generated from Flagger's types (see `generated_crds`).
    let generated = super::generated_crds::crds(|dir| kubectl.to_json(dir))?;
    let out = kubectl.apply_json(
        &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": generated}).to_string(),
    )?;
    crds.extend(crd_names(&out));

    let mut wait = vec![
        "wait".to_string(),
        "--for=condition=Established".into(),
        "--timeout=60s".into(),
    ];
    wait.extend(crds.iter().cloned());
    kubectl.run(&wait.iter().map(String::as_str).collect::<Vec<_>>(), None)?;
    eprintln!(
        "cluster: peer CRDs installed ({} CRDs: Gateway API {} {channel}, Istio {}, SMI \
         TrafficSplit from OSM {}, KEDA ScaledObject {}, Contour {}, Kuma TrafficRoute {}, APISIX ApisixRoute {}, Knative Service and Revision {}, Traefik v2's TraefikService {}, Gloo and App Mesh from Flagger {}'s types)",
        crds.len(),
        pinned(GATEWAY_API),
        pinned(ISTIO_API),
        pinned(SMI_CRD_MODULE),
        pinned(KEDA),
        pinned(CONTOUR),
        pinned(KUMA),
        pinned(APISIX),
        pinned(KNATIVE_SERVING),
        pinned(TRAEFIK_V2),
        crate::flagger::version()
    );
    fs::create_dir_all(stamp_file.parent().context("stamp has a parent")?)?;
    fs::write(&stamp_file, stamp_text)?;
    Ok(())
}

/// The pinned version of a module.
pub fn pinned(module: &str) -> &'static str {
    module_version(GO_MOD, module).unwrap_or("unknown")
}

fn stamp(channel: &str) -> String {
    format!(
        "{GATEWAY_API}@{} {channel}\n{ISTIO_API}@{}\n{SMI_CRD_MODULE}@{} served {} added {}\n{KEDA}@{}\n{CONTOUR}@{}\n{KUMA}@{}\n{APISIX}@{}\n{KNATIVE_SERVING}@{}\n{TRAEFIK_V2}@{} {TRAEFIK_V2_CRD}\n",
        pinned(GATEWAY_API),
        pinned(ISTIO_API),
        pinned(SMI_CRD_MODULE),
        SMI_SERVED.join(","),
        SMI_QUANTITY_VERSION,
        pinned(KEDA),
        pinned(CONTOUR),
        pinned(KUMA),
        pinned(APISIX),
        pinned(KNATIVE_SERVING),
        pinned(TRAEFIK_V2)
    ) + &super::generated_crds::stamp()
}

/// The CRD names among `kubectl apply -o name` lines.
fn crd_names(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("customresourcedefinition"))
        .map(String::from)
        .collect()
}

/// The directories of the pinned modules, downloaded (and verified against go.sum) if needed.
fn module_dirs(modules: &[&str]) -> Result<Vec<PathBuf>> {
    let go = go_command()?;
    let cache = cache_dir()?;
    let peers = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("go")
        .join("peers");
    let out = Command::new(&go)
        .current_dir(&peers)
        .args(["mod", "download", "-json"])
        .args(modules)
        .env("GOMODCACHE", cache.join("go").join("mod"))
        .env("GOFLAGS", "-modcacherw -mod=readonly")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", go.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let infos = parse_download(&text)?;
    let mut dirs = Vec::new();
    for m in modules {
        let info = infos.iter().find(|i| i["Path"] == *m).with_context(|| {
            format!(
                "`go mod download` said nothing about {m}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })?;
        if let Some(err) = info["Error"].as_str() {
            bail!("downloading {m}: {err}");
        }
        let dir = info["Dir"]
            .as_str()
            .with_context(|| format!("no directory for {m}"))?;
        dirs.push(PathBuf::from(dir));
    }
    Ok(dirs)
}

/// `go mod download -json` prints one JSON object per module, one after the other.
fn parse_download(text: &str) -> Result<Vec<Value>> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .context("parsing `go mod download -json`")
}

/// The files of a Gateway API channel, in the order its kustomization lists them.
fn gateway_api_files(module: &Path, channel: &str) -> Result<Vec<PathBuf>> {
    let dir = module.join("config").join("crd").join(channel);
    let kustomization = fs::read_to_string(dir.join("kustomization.yaml"))
        .with_context(|| format!("reading {}", dir.join("kustomization.yaml").display()))?;
    let files: Vec<PathBuf> = kustomization_resources(&kustomization)
        .into_iter()
        .map(|f| dir.join(f))
        .collect();
    if files.is_empty() {
        bail!("no resources in {}/kustomization.yaml", dir.display());
    }
    Ok(files)
}

/// The `resources:` entries of a kustomization (a plain list of file names).
fn kustomization_resources(text: &str) -> Vec<String> {
    let mut in_resources = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('-') {
            in_resources = line.trim_end() == "resources:";
            continue;
        }
        if in_resources && let Some(item) = line.trim().strip_prefix("- ") {
            out.push(item.trim().to_string());
        }
    }
    out
}

/// Sets `served: true` on the named versions of a CRD; an error if one is missing.
fn serve_versions(crd: &mut Value, versions: &[&str]) -> Result<()> {
    let list = crd["spec"]["versions"]
        .as_array_mut()
        .context("the CRD has no spec.versions")?;
    for name in versions {
        let v = list
            .iter_mut()
            .find(|v| v["name"] == *name)
            .with_context(|| format!("the CRD has no version {name}"))?;
        v["served"] = Value::Bool(true);
    }
    Ok(())
}

/// Adds version `name` to the TrafficSplit CRD, served and not stored, as a copy of version
/// `from` whose backends' `weight` is an int-or-string (a resource quantity); replaces it if the
/// file has it already.
fn add_quantity_version(crd: &mut Value, name: &str, from: &str) -> Result<()> {
    let list = crd["spec"]["versions"]
        .as_array_mut()
        .context("the CRD has no spec.versions")?;
    let mut version = list
        .iter()
        .find(|v| v["name"] == from)
        .with_context(|| format!("the CRD has no version {from}"))?
        .clone();
    version["name"] = Value::from(name);
    version["served"] = Value::Bool(true);
    version["storage"] = Value::Bool(false);
    let weight = version
        .pointer_mut(
            "/schema/openAPIV3Schema/properties/spec/properties/backends/items/properties/weight",
        )
        .with_context(|| format!("version {from} has no spec.backends[].weight in its schema"))?;
    *weight = serde_json::json!({
        "description": "Traffic weight value of this backend, a resource quantity.",
        "x-kubernetes-int-or-string": true,
    });
    list.retain(|v| v["name"] != name);
    list.push(version);
    Ok(())
}

/// A server-side apply as [`MANAGER`] that prints the names of what it applied; the files
/// (`-f`) follow.
const APPLY: [&str; 7] = [
    "apply",
    "--server-side",
    "--force-conflicts",
    "--field-manager",
    MANAGER,
    "-o",
    "name",
];

/// kubectl against the cluster.
struct Kubectl<'a>(&'a ClusterInfo);

impl Kubectl<'_> {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.0.kubectl);
        c.arg(format!("--kubeconfig={}", self.0.kubeconfig.display()))
            .arg("--request-timeout=60s");
        c
    }

    fn ok(&self, args: &[&str]) -> bool {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The objects of `path` (a file or a directory of YAML) as JSON, as kubectl reads them.
    fn to_json(&self, path: &Path) -> Result<String> {
        let path = path.display().to_string();
        self.run(
            &["create", "--dry-run=client", "-o", "json", "-f", &path],
            None,
        )
    }

    /// Server-side applies `json` (one object or a `List`) as [`MANAGER`]; the names of what
    /// it applied, one `kind/name` a line.
    fn apply_json(&self, json: &str) -> Result<String> {
        self.run(&[&APPLY[..], &["-f", "-"]].concat(), Some(json))
    }

    /// Runs kubectl, with `input` on stdin; its stdout, or an error with its stderr.
    fn run(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let mut child = self
            .command()
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.0.kubectl.display()))?;
        if let Some(text) = input {
            child
                .stdin
                .take()
                .context("kubectl stdin")?
                .write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.first().copied().unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_peer_module_is_pinned() {
        for m in PEER_MODULES {
            assert!(pinned(m).starts_with('v'), "{m} is not pinned in go/peers");
        }
        let sum = include_str!("../../go/peers/go.sum");
        for m in PEER_MODULES {
            assert!(
                sum.contains(&format!("{m} {} h1:", pinned(m))),
                "go/peers/go.sum has no checksum for {m}"
            );
        }
    }

    #[test]
    fn reads_kustomization_resources() {
        let k = "apiVersion: x\nresources:\n- a.yaml\n  - b.yaml\nother:\n- c.yaml\n";
        assert_eq!(kustomization_resources(k), vec!["a.yaml", "b.yaml"]);
    }

    #[test]
    fn serves_the_smi_versions_fledge_writes() {
        let mut crd = serde_json::json!({"spec": {"versions": [
            {"name": "v1alpha4", "served": false}, {"name": "v1alpha3", "served": false},
            {"name": "v1alpha2", "served": true, "storage": true}
        ]}});
        serve_versions(&mut crd, SMI_SERVED).unwrap();
        let served: Vec<bool> = crd["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["served"].as_bool().unwrap())
            .collect();
        assert_eq!(served, vec![false, true, true]);
        assert!(serve_versions(&mut crd, &["v9"]).is_err());
    }

    #[test]
    fn adds_the_smi_quantity_version() {
        let weight = serde_json::json!({"type": "number"});
        let mut crd = serde_json::json!({"spec": {"versions": [
            {"name": "v1alpha1", "served": false},
            {"name": "v1alpha2", "served": true, "storage": true, "schema": {"openAPIV3Schema":
                {"properties": {"spec": {"properties": {"backends": {"items": {"properties":
                    {"service": {"type": "string"}, "weight": weight}}}}}}}}}
        ]}});
        add_quantity_version(&mut crd, SMI_QUANTITY_VERSION, SMI_QUANTITY_FROM).unwrap();
        let versions = crd["spec"]["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 2);
        let (v2, v1) = (&versions[0], &versions[1]);
        assert_eq!(v2["storage"], true);
        let path = "/schema/openAPIV3Schema/properties/spec/properties/backends/items/properties";
        assert_eq!(v2.pointer(path).unwrap()["weight"]["type"], "number");
        assert_eq!(v1["name"], "v1alpha1");
        assert_eq!(
            (&v1["served"], &v1["storage"]),
            (&Value::Bool(true), &Value::Bool(false))
        );
        let props = v1.pointer(path).unwrap();
        assert_eq!(props["weight"]["x-kubernetes-int-or-string"], true);
        assert_eq!(props["service"]["type"], "string");
        let mut without = serde_json::json!({"spec": {"versions": [{"name": "v1alpha3"}]}});
        assert!(add_quantity_version(&mut without, "v1alpha1", "v1alpha2").is_err());
    }

    #[test]
    fn parses_go_mod_download_output() {
        let text = "{\n\t\"Path\": \"a\",\n\t\"Dir\": \"/x\"\n}\n{\n\t\"Path\": \"b\",\n\t\"Error\": \"no\"\n}\n";
        let v = parse_download(text).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1]["Error"], "no");
        assert_eq!(
            crd_names(
                "customresourcedefinition.apiextensions.k8s.io/x\nvalidatingadmissionpolicy/y\n"
            ),
            vec!["customresourcedefinition.apiextensions.k8s.io/x"]
        );
    }
}
