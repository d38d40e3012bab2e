//! `cargo xtask charts`: the Helm chart (`charts/fledge`) and the kustomize base
//! (`config/default`) checked as an operator would use them.
//!
//! - `helm lint` with the default values and with `ci/full-values.yaml` (every value set);
//! - `helm template` with the default values, the full values and namespaced RBAC, each
//!   rendered manifest (CRDs included) validated by `kubeconform -strict`;
//! - `kustomize build config/default` validated the same way, its controller compared with the
//!   chart's default rendering;
//! - bad values that must fail `helm template` with a message naming the value;
//! - the chart's ClusterRole and Role rules equal to `config/rbac/` (which
//!   `crates/controller/tests/rbac_files.rs` checks against the calls the code makes);
//! - `charts/fledge/crds/` byte-identical to `config/crd/`.
//!
//! helm, kubeconform and kustomize are built from the Go module proxy at the versions pinned in
//! `xtask/go-charts/go.mod` and cached under `~/.cache/fledge/bin/<tool>-<version>/`.
//! kubeconform cannot download its JSON schemas here: they are generated locally (see
//! [`schema`]) from the Kubernetes OpenAPI spec shipped in the `k8s.io/kubernetes` module (the
//! version `xtask/go/go.mod` pins for the local control plane), from prometheus-operator's
//! ServiceMonitor and PodMonitor CRDs, and from fledge's own CRDs.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cluster::build::{cache_dir, check_go_version, go_command, module_version};
use crate::dataplane::build::{Program, build_program, download_module_in};
use crate::util::{output, root, stdout_of, target_dir};

mod schema;

/// The pinned chart tools, compiled in so the versions are known without reading the disk.
const GO_MOD: &str = include_str!("../go-charts/go.mod");
/// The control plane's pins: the Kubernetes release whose OpenAPI spec the schemas come from,
/// and the kustomize kubectl embeds.
const CLUSTER_GO_MOD: &str = include_str!("../go/go.mod");

const KUBERNETES_MODULE: &str = "k8s.io/kubernetes";
const PROMETHEUS_OPERATOR_MODULE: &str = "github.com/prometheus-operator/prometheus-operator";
/// prometheus-operator's CRDs of the two kinds the chart can render, inside its module.
const MONITORING_CRDS: [&str; 2] = [
    "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
];

/// The release the checks render, as the README's `helm install` names it.
const RELEASE: &str = "fledge";
const NAMESPACE: &str = "fledge-system";

/// A program `cargo xtask charts` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Helm,
    Kubeconform,
    Kustomize,
}

impl Tool {
    pub const ALL: [Tool; 3] = [Tool::Helm, Tool::Kubeconform, Tool::Kustomize];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Helm => "helm",
            Tool::Kubeconform => "kubeconform",
            Tool::Kustomize => "kustomize",
        }
    }

    fn module(self) -> &'static str {
        match self {
            Tool::Helm => "helm.sh/helm/v4",
            Tool::Kubeconform => "github.com/yannh/kubeconform",
            Tool::Kustomize => "sigs.k8s.io/kustomize/kustomize/v5",
        }
    }

    /// The main package, relative to the module's root.
    fn package_dir(self) -> &'static str {
        match self {
            Tool::Helm => "./cmd/helm",
            Tool::Kubeconform => "./cmd/kubeconform",
            Tool::Kustomize => ".",
        }
    }

    /// The pinned version, from `xtask/go-charts/go.mod`.
    pub fn version(self) -> &'static str {
        module_version(GO_MOD, self.module()).unwrap_or("unknown")
    }

    /// `-X` flags that stamp the version as each project's release build does.
    fn version_ldflags(self) -> String {
        let v = self.version();
        match self {
            Tool::Helm => format!("-X helm.sh/helm/v4/internal/version.version={v}"),
            Tool::Kubeconform => format!("-X main.version={v}"),
            Tool::Kustomize => format!("-X sigs.k8s.io/kustomize/api/provenance.version={v}"),
        }
    }

    fn cached(self, cache: &Path) -> PathBuf {
        cache
            .join("bin")
            .join(format!("{}-{}", self.name(), self.version()))
            .join(self.name())
    }
}

/// `xtask/go-charts`.
fn go_dir() -> PathBuf {
    root().join("xtask").join("go-charts")
}

/// The Kubernetes release of the local control plane, whose OpenAPI spec the schemas come from.
fn kubernetes_version() -> &'static str {
    module_version(CLUSTER_GO_MOD, KUBERNETES_MODULE).unwrap_or("unknown")
}

fn prometheus_operator_version() -> &'static str {
    module_version(GO_MOD, PROMETHEUS_OPERATOR_MODULE).unwrap_or("unknown")
}

/// The paths of the built tools.
struct Tools {
    helm: PathBuf,
    kubeconform: PathBuf,
    kustomize: PathBuf,
}

/// The tools, each built first if missing from the cache.
fn ensure_tools(log_dir: &Path) -> Result<Tools> {
    let cache = cache_dir()?;
    let missing = || -> Vec<Tool> {
        Tool::ALL
            .into_iter()
            .filter(|t| !t.cached(&cache).is_file())
            .collect()
    };
    if !missing().is_empty() {
        let bin_dir = cache.join("bin");
        fs::create_dir_all(&bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
        // One build at a time, even across concurrent `cargo xtask` runs (the other builds take
        // the same lock).
        let lock = File::create(bin_dir.join(".lock"))?;
        lock.lock().context("locking the binary cache")?;
        let go = go_command().context(
            "Go builds helm, kubeconform and kustomize for `cargo xtask charts` (once per version)",
        )?;
        check_go_version(&go)?;
        for tool in missing() {
            let log = log_dir.join(format!("go-build-{}.log", tool.name()));
            eprintln!(
                "charts: building {} {} from the Go module proxy (once per version; build log: {})",
                tool.name(),
                tool.version(),
                log.display()
            );
            let started = Instant::now();
            let module_dir = download_module_in(&go_dir(), tool.module())?;
            build_program(
                &go,
                &cache,
                &module_dir,
                &Program {
                    name: tool.name(),
                    version: tool.version(),
                    package_dir: tool.package_dir(),
                    ldflags: tool.version_ldflags(),
                },
                &log,
                &tool.cached(&cache),
            )?;
            eprintln!(
                "charts: built {} {} in {:.0?}",
                tool.name(),
                tool.version(),
                started.elapsed()
            );
        }
    }
    Ok(Tools {
        helm: Tool::Helm.cached(&cache),
        kubeconform: Tool::Kubeconform.cached(&cache),
        kustomize: Tool::Kustomize.cached(&cache),
    })
}

/// helm, built first if missing from the cache: what the in-cluster end-to-end test renders the
/// chart with (`cargo xtask test` passes its path in `FLEDGE_HELM`).
pub(crate) fn helm() -> Result<PathBuf> {
    let work = target_dir().join("charts");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    Ok(ensure_tools(&work)?.helm)
}

/// How many schemas each source gave.
type SchemaCounts = Vec<(String, usize)>;

/// kubeconform's `-schema-location` templates: the Kubernetes and prometheus-operator schemas
/// (generated once per version into the cache) and fledge's (generated from `config/crd/` on
/// every run, as the CRDs change with the code). Each directory holds only strict schemas
/// (`additionalProperties: false`), named with the `-strict` suffix kubeconform adds under
/// `-strict`.
/// Also returns how many schemas each source gave.
fn ensure_schemas(work: &Path) -> Result<(Vec<String>, SchemaCounts)> {
    let cache = cache_dir()?;
    let schemas = cache.join("schemas");
    fs::create_dir_all(&schemas)?;
    let lock = File::create(schemas.join(".lock"))?;
    lock.lock().context("locking the schema cache")?;
    let mut figures = Vec::new();

    let kube = schemas.join(format!("kubernetes-{}", kubernetes_version()));
    let n = cached_schema_set(&kube, || {
        eprintln!(
            "charts: JSON schemas from the OpenAPI spec of Kubernetes {} (once per version)",
            kubernetes_version()
        );
        let dir = download_module_in(&root().join("xtask").join("go"), KUBERNETES_MODULE)?;
        let path = dir.join("api/openapi-spec/swagger.json");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let swagger: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        schema::from_swagger(&swagger)
    })?;
    figures.push((format!("Kubernetes {}", kubernetes_version()), n));

    let monitoring = schemas.join(format!(
        "prometheus-operator-{}",
        prometheus_operator_version()
    ));
    let n = cached_schema_set(&monitoring, || {
        let dir = download_module_in(&go_dir(), PROMETHEUS_OPERATOR_MODULE)?;
        let mut out = Vec::new();
        for file in MONITORING_CRDS {
            out.extend(schema::from_crd_file(&dir.join(file))?);
        }
        Ok(out)
    })?;
    figures.push((
        format!(
            "prometheus-operator {} (ServiceMonitor, PodMonitor)",
            prometheus_operator_version()
        ),
        n,
    ));

    let fledge = work.join("schemas").join("fledge");
    let _ = fs::remove_dir_all(strict_dir(&fledge));
    let mut fledge_schemas = Vec::new();
    for file in crd_files(&root().join("config/crd"))? {
        fledge_schemas.extend(schema::from_crd_file(&file)?);
    }
    figures.push(("fledge's CRDs".to_string(), fledge_schemas.len()));
    write_schema_set(&strict_dir(&fledge), &fledge_schemas)?;

    let locations = [kube, monitoring, fledge]
        .iter()
        .map(|d| {
            format!(
                "{}{{{{ .StrictSuffix }}}}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
                d.display()
            )
        })
        .collect();
    Ok((locations, figures))
}

fn strict_dir(base: &Path) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push("-strict");
    PathBuf::from(s)
}

/// The schema set under `<base>-strict`, generated by `make` unless complete already; returns
/// how many schemas it holds.
fn cached_schema_set(
    base: &Path,
    make: impl FnOnce() -> Result<Vec<schema::Schema>>,
) -> Result<usize> {
    let dir = strict_dir(base);
    let complete = dir.join(".complete");
    if let Ok(n) = fs::read_to_string(&complete)
        && let Ok(n) = n.trim().parse()
    {
        return Ok(n);
    }
    let schemas = make()?;
    let partial = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    write_schema_set(&partial, &schemas)?;
    fs::write(partial.join(".complete"), schemas.len().to_string())?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&partial, &dir)
        .with_context(|| format!("moving {} to {}", partial.display(), dir.display()))?;
    Ok(schemas.len())
}

fn write_schema_set(dir: &Path, schemas: &[schema::Schema]) -> Result<()> {
    for s in schemas {
        let path = dir.join(s.relative_path());
        fs::create_dir_all(path.parent().context("schema path has a parent")?)?;
        fs::write(&path, serde_json::to_vec(&s.schema)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The `*.yaml` files of a directory, sorted.
fn crd_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The RBAC files the chart carries copies of: (`config/rbac/` file, chart file).
const RBAC_COPIES: [(&str, &str); 2] = [
    (
        "config/rbac/cluster-role.yaml",
        "charts/fledge/rbac/cluster-role.yaml",
    ),
    (
        "config/rbac/namespaced/role.yaml",
        "charts/fledge/rbac/role.yaml",
    ),
];

/// Copies `config/crd/*.yaml` to `charts/fledge/crds/` and the RBAC rules of `config/rbac/` to
/// `charts/fledge/rbac/` (a chart must hold real files: Helm packages, and Flux and Argo CD
/// read, a chart directory without following links out of it).
pub fn sync_chart_copies(workspace: &Path) -> Result<()> {
    let chart_crds = workspace.join("charts/fledge/crds");
    for f in crd_files(&chart_crds)? {
        fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
    }
    for f in crd_files(&workspace.join("config/crd"))? {
        let name = f.file_name().context("a CRD file name")?;
        fs::copy(&f, chart_crds.join(name))
            .with_context(|| format!("copying {} to the chart", f.display()))?;
    }
    for (from, to) in RBAC_COPIES {
        let to = workspace.join(to);
        let _ = fs::remove_file(&to);
        fs::copy(workspace.join(from), &to)
            .with_context(|| format!("copying {from} to the chart"))?;
    }
    Ok(())
}

/// What differs between the chart's copies and their sources: `config/crd/` and
/// `charts/fledge/crds/`, and the RBAC files (empty when identical).
pub fn copy_differences(workspace: &Path) -> Result<Vec<String>> {
    let mut diffs = crd_differences(workspace)?;
    for (from, to) in RBAC_COPIES {
        let read = |f: &str| fs::read(workspace.join(f)).with_context(|| format!("reading {f}"));
        let meta = fs::symlink_metadata(workspace.join(to));
        if meta.as_ref().is_ok_and(|m| m.file_type().is_symlink()) {
            diffs.push(format!("{to} is a link; the chart needs a copy of {from}"));
        } else if meta.is_err() || read(from)? != read(to)? {
            diffs.push(format!("{to} differs from {from}"));
        }
    }
    Ok(diffs)
}

/// What differs between `config/crd/` and `charts/fledge/crds/` (empty when identical).
fn crd_differences(workspace: &Path) -> Result<Vec<String>> {
    let name_set = |dir: &Path| -> Result<BTreeSet<String>> {
        Ok(crd_files(dir)?
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    };
    let config = workspace.join("config/crd");
    let chart = workspace.join("charts/fledge/crds");
    let (ours, theirs) = (name_set(&config)?, name_set(&chart)?);
    let mut diffs = Vec::new();
    for name in ours.union(&theirs) {
        match (ours.contains(name), theirs.contains(name)) {
            (true, false) => diffs.push(format!("charts/fledge/crds/{name} is missing")),
            (false, true) => diffs.push(format!("charts/fledge/crds/{name} is not in config/crd/")),
            _ => {
                if fs::read(config.join(name))? != fs::read(chart.join(name))? {
                    diffs.push(format!(
                        "charts/fledge/crds/{name} differs from config/crd/{name}"
                    ));
                }
            }
        }
    }
    Ok(diffs)
}

/// Parses a multi-document YAML stream into its non-empty documents.
fn documents(text: &str, what: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| anyhow::anyhow!("parsing {what} as YAML: {e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn read_yaml(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    documents(&text, &path.display().to_string())?
        .into_iter()
        .next()
        .with_context(|| format!("{} holds no document", path.display()))
}

/// One `helm template` of the checks.
struct Render {
    name: &'static str,
    args: Vec<String>,
}

fn renders() -> Vec<Render> {
    let full = root().join("charts/fledge/ci/full-values.yaml");
    vec![
        Render {
            name: "default values",
            args: vec![],
        },
        Render {
            name: "ci/full-values.yaml (every value set)",
            args: vec!["-f".into(), full.display().to_string()],
        },
        Render {
            name: "namespaced RBAC (rbac.namespaced=true, watchNamespace=team-a)",
            args: vec![
                "--set".into(),
                "rbac.namespaced=true".into(),
                "--set".into(),
                "watchNamespace=team-a".into(),
            ],
        },
    ]
}

fn helm_template(helm: &Path, extra: &[String]) -> Command {
    let mut cmd = Command::new(helm);
    cmd.current_dir(root())
        .args([
            "template",
            RELEASE,
            "charts/fledge",
            "--namespace",
            NAMESPACE,
        ])
        .arg(format!(
            "--kube-version={}",
            kubernetes_version().trim_start_matches('v')
        ))
        .arg("--include-crds")
        .args(extra);
    cmd
}

/// Values that `helm template` must refuse, and the text its error must contain.
const BAD_VALUES: [(&str, &str); 6] = [
    ("logFormat=yaml", "/logFormat"),
    ("replicas=0", "/replicas"),
    ("gitops.mode=pull", "/gitops/mode"),
    ("rbac.namespaced=true", "/watchNamespace"),
    // Shards without a default: unlabelled Canaries would have no controller.
    (
        "shards[0].name=a",
        "exactly one shard must have default: true",
    ),
    ("shards[0].name=Shard_A", "/shards/0/name"),
];

/// kubeconform's verdict on one manifest file.
struct Verdict {
    valid: u64,
    kinds: BTreeSet<String>,
}

fn kubeconform(tool: &Path, locations: &[String], file: &Path, docs: &[Value]) -> Result<Verdict> {
    let mut cmd = Command::new(tool);
    cmd.args(["-strict", "-summary", "-output", "json"]);
    for l in locations {
        cmd.arg("-schema-location").arg(l);
    }
    cmd.arg(file);
    let out = output("kubeconform", &mut cmd)?;
    let report: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "kubeconform printed no JSON ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let count = |k: &str| report["summary"][k].as_u64().unwrap_or(0);
    let (valid, invalid, errors, skipped) = (
        count("valid"),
        count("invalid"),
        count("errors"),
        count("skipped"),
    );
    if !out.status.success() || invalid + errors + skipped > 0 || valid != docs.len() as u64 {
        let problems: Vec<String> = report["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                format!(
                    "  {} {}: {} {}",
                    r["kind"].as_str().unwrap_or("?"),
                    r["name"].as_str().unwrap_or("?"),
                    r["status"].as_str().unwrap_or("?"),
                    r["msg"].as_str().unwrap_or("")
                )
            })
            .collect();
        bail!(
            "kubeconform -strict refused {}: {valid} valid of {} documents, {invalid} invalid, \
             {errors} errors, {skipped} skipped\n{}",
            file.display(),
            docs.len(),
            problems.join("\n")
        );
    }
    let kinds = docs
        .iter()
        .filter_map(|d| d["kind"].as_str().map(str::to_string))
        .collect();
    Ok(Verdict { valid, kinds })
}

/// kubeconform must refuse a field no schema knows, in a Kubernetes kind and in a fledge kind:
/// proof that the schemas are strict and in use (kubeconform silently accepts what a lax schema
/// allows).
fn check_strictness(
    tool: &Path,
    locations: &[String],
    work: &Path,
    deployment: &Value,
) -> Result<()> {
    let mut deployment = deployment.clone();
    deployment["spec"]["template"]["spec"]["containers"][0]["bogusField"] = Value::from(1);
    let mut canary = read_yaml(&root().join("examples/demo/canary.yaml"))?;
    canary["spec"]["analysis"]["bogusField"] = Value::from(1);
    let file = work.join("unknown-fields.yaml");
    let text = [&deployment, &canary]
        .iter()
        .map(|d| serde_json::to_string(d).map(|j| format!("---\n{j}\n")))
        .collect::<Result<String, _>>()?;
    fs::write(&file, text)?;
    let mut cmd = Command::new(tool);
    cmd.args(["-strict", "-summary", "-output", "json"]);
    for l in locations {
        cmd.arg("-schema-location").arg(l);
    }
    let out = output("kubeconform", cmd.arg(&file))?;
    let report: Value =
        serde_json::from_slice(&out.stdout).context("kubeconform printed no JSON")?;
    // kubeconform validates in parallel: its report is in no fixed order.
    let refused: BTreeSet<&str> = report["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["status"] == "statusInvalid"
                && r["msg"].as_str().is_some_and(|m| m.contains("bogusField"))
        })
        .filter_map(|r| r["kind"].as_str())
        .collect();
    if refused != BTreeSet::from(["Canary", "Deployment"]) {
        bail!(
            "kubeconform -strict did not refuse an unknown field in both a Deployment and a \
             Canary (refused: {refused:?}); the schemas under ~/.cache/fledge/schemas are not \
             strict, delete them to regenerate:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

/// The `--flags` a `--help` text documents.
fn documented_flags(help: &str) -> BTreeSet<String> {
    help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_string)
        .collect()
}

/// Every flag the rendered containers pass must be one the program documents: a renamed or
/// removed flag fails here, not in a user's cluster.
fn check_flags(docs: &[Value], container: &str, help: &str) -> Result<usize> {
    let known = documented_flags(help);
    let mut checked = 0;
    for d in docs.iter().filter(|d| d["kind"] == "Deployment") {
        let containers = d["spec"]["template"]["spec"]["containers"].as_array();
        for c in containers
            .into_iter()
            .flatten()
            .filter(|c| c["name"] == container)
        {
            for arg in c["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let Some(flag) = arg.split('=').next().filter(|f| f.starts_with("--")) else {
                    continue;
                };
                if !known.contains(flag) {
                    bail!(
                        "the chart passes {flag} to the {container} container, which its \
                         program does not know (see its --help); fix charts/fledge/templates"
                    );
                }
                checked += 1;
            }
        }
    }
    Ok(checked)
}

/// `--help` of a workspace binary's subcommand, built first.
fn help_of(package: &str, bin: &str, subcommand: &str) -> Result<String> {
    crate::util::run(
        &format!("cargo build -p {package} --bin {bin}"),
        crate::util::cargo().args(["build", "--quiet", "-p", package, "--bin", bin]),
    )?;
    stdout_of(
        &format!("{bin} {subcommand} --help"),
        Command::new(target_dir().join("debug").join(bin)).args([subcommand, "--help"]),
    )
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .with_context(|| format!("no {kind} rendered"))
}

/// The chart's rendered rules of `kind` must be those of `file` in `config/rbac/`.
fn compare_rules(docs: &[Value], kind: &str, file: &str) -> Result<usize> {
    let rendered = &find(docs, kind)?["rules"];
    let expected = &read_yaml(&root().join("config/rbac").join(file))?["rules"];
    if rendered != expected {
        bail!(
            "the chart's {kind} does not grant what config/rbac/{file} grants; \
             charts/fledge/rbac/ must hold copies of config/rbac/cluster-role.yaml and \
             config/rbac/namespaced/role.yaml (`cargo xtask crds` copies them), read by \
             fledge.rbacRules in charts/fledge/templates/_helpers.tpl.\nchart:\n{}\nconfig/rbac/{file}:\n{}",
            serde_json::to_string_pretty(rendered)?,
            serde_json::to_string_pretty(expected)?
        );
    }
    Ok(expected.as_array().map_or(0, Vec::len))
}

/// The controller of `config/default` must be the chart's with default values: the same
/// Deployment and Service specs, names and namespace, and the same ServiceAccount.
fn compare_with_chart(kustomized: &[Value], chart: &[Value]) -> Result<()> {
    for kind in [
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRoleBinding",
    ] {
        let (ours, theirs) = (find(kustomized, kind)?, find(chart, kind)?);
        for field in [
            "/metadata/name",
            "/metadata/namespace",
            "/spec",
            "/subjects",
        ] {
            if ours.pointer(field) != theirs.pointer(field) {
                bail!(
                    "config/default's {kind} differs from the chart's default rendering at \
                     {field}:\nconfig/default: {}\nchart:          {}",
                    serde_json::to_string(&ours.pointer(field))?,
                    serde_json::to_string(&theirs.pointer(field))?
                );
            }
        }
    }
    Ok(())
}

/// The paths of a YAML tree's keys down to its leaves (a key whose value is a list, a scalar or
/// an empty map is a leaf).
fn leaf_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(child, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// The values of `values.yaml` that `ci/full-values.yaml` does not set.
pub fn values_missing_from_full(workspace: &Path) -> Result<Vec<String>> {
    let chart = workspace.join("charts/fledge");
    let mut defaults = BTreeSet::new();
    leaf_paths(&read_yaml(&chart.join("values.yaml"))?, "", &mut defaults);
    let mut full = BTreeSet::new();
    leaf_paths(
        &read_yaml(&chart.join("ci/full-values.yaml"))?,
        "",
        &mut full,
    );
    Ok(defaults
        .into_iter()
        .filter(|p| {
            !full
                .iter()
                .any(|f| f == p || f.starts_with(&format!("{p}.")))
        })
        .collect())
}

pub fn run() -> Result<()> {
    let started = Instant::now();
    let work = target_dir().join("charts");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut lines: Vec<String> = Vec::new();

    let diffs = copy_differences(&root())?;
    if !diffs.is_empty() {
        bail!(
            "{}\nrun `cargo xtask crds`: it regenerates config/crd/ and copies it and \
             config/rbac/'s rules into the chart (they must stay byte-identical)",
            diffs.join("\n")
        );
    }
    lines.push(format!(
        "charts/fledge/crds/ is byte-identical to config/crd/ ({} CRDs), charts/fledge/rbac/ to \
         config/rbac/",
        crd_files(&root().join("config/crd"))?.len()
    ));
    let missing = values_missing_from_full(&root())?;
    if !missing.is_empty() {
        bail!(
            "charts/fledge/ci/full-values.yaml does not set {}; set every value there",
            missing.join(", ")
        );
    }

    let tools = ensure_tools(&work)?;
    let (locations, schema_figures) = ensure_schemas(&work)?;
    for (what, n) in &schema_figures {
        lines.push(format!("JSON schemas (strict): {n} from {what}"));
    }

    for (what, extra) in [
        ("default values", vec![]),
        (
            "ci/full-values.yaml",
            vec![
                "-f".to_string(),
                root()
                    .join("charts/fledge/ci/full-values.yaml")
                    .display()
                    .to_string(),
            ],
        ),
    ] {
        let out = stdout_of(
            &format!("helm lint charts/fledge ({what})"),
            Command::new(&tools.helm)
                .current_dir(root())
                .args(["lint", "--strict", "charts/fledge"])
                .args(&extra),
        )?;
        let summary = out.lines().last().unwrap_or_default().trim().to_string();
        lines.push(format!("helm lint --strict ({what}): {summary}"));
    }

    let mut rendered = Vec::new();
    for (i, r) in renders().into_iter().enumerate() {
        let text = stdout_of(
            &format!("helm template ({})", r.name),
            &mut helm_template(&tools.helm, &r.args),
        )?;
        let file = work.join(format!("rendered-{i}.yaml"));
        fs::write(&file, &text)?;
        let docs = documents(&text, &file.display().to_string())?;
        let verdict = kubeconform(&tools.kubeconform, &locations, &file, &docs)?;
        lines.push(format!(
            "helm template, {}: {} objects valid under kubeconform -strict ({})",
            r.name,
            verdict.valid,
            verdict.kinds.into_iter().collect::<Vec<_>>().join(", ")
        ));
        rendered.push(docs);
    }

    let n = check_flags(
        &rendered[1],
        "fledge",
        &help_of("fledge-controller", "fledge", "run")?,
    )?;
    let m = check_flags(
        &rendered[1],
        "loadgen",
        &help_of("fledge-loadgen", "fledge-loadgen", "serve")?,
    )?;
    lines.push(format!(
        "every flag the full values pass is documented: {n} of `fledge run`, {m} of \
         `fledge-loadgen serve`"
    ));

    check_strictness(
        &tools.kubeconform,
        &locations,
        &work,
        find(&rendered[0], "Deployment")?,
    )?;
    lines.push(
        "kubeconform -strict refuses an unknown field in a Deployment and in a Canary".into(),
    );

    let n = compare_rules(&rendered[0], "ClusterRole", "cluster-role.yaml")?;
    lines.push(format!(
        "the chart's ClusterRole grants exactly config/rbac/cluster-role.yaml's {n} rules"
    ));
    let n = compare_rules(&rendered[2], "Role", "namespaced/role.yaml")?;
    lines.push(format!(
        "the chart's namespaced Role grants exactly config/rbac/namespaced/role.yaml's {n} rules"
    ));

    for (value, expected) in BAD_VALUES {
        let out = output(
            &format!("helm template --set {value}"),
            &mut helm_template(&tools.helm, &["--set".into(), value.into()]),
        )?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            bail!("helm template --set {value} succeeded; values.schema.json must refuse it");
        }
        if !err.contains(expected) {
            bail!("helm template --set {value} failed without naming {expected}:\n{err}");
        }
        let reason = err
            .lines()
            .find(|l| l.contains(expected))
            .unwrap_or_default()
            .trim();
        lines.push(format!("helm template --set {value} refused: {reason}"));
    }

    let text = stdout_of(
        "kustomize build config/default",
        Command::new(&tools.kustomize)
            .current_dir(root())
            .args(["build", "config/default"]),
    )?;
    let file = work.join("kustomize-default.yaml");
    fs::write(&file, &text)?;
    let docs = documents(&text, "kustomize build config/default")?;
    let verdict = kubeconform(&tools.kubeconform, &locations, &file, &docs)?;
    lines.push(format!(
        "kustomize build config/default: {} objects valid under kubeconform -strict ({})",
        verdict.valid,
        verdict.kinds.into_iter().collect::<Vec<_>>().join(", ")
    ));
    compare_with_chart(&docs, &rendered[0])?;
    lines.push(
        "config/default's Deployment, Service, ServiceAccount and ClusterRoleBinding match the \
         chart's default rendering"
            .into(),
    );

    eprintln!(
        "==> charts checked in {:.1}s with helm {}, kubeconform {}, kustomize {} (the one kubectl \
         {} embeds):",
        started.elapsed().as_secs_f64(),
        Tool::Helm.version(),
        Tool::Kubeconform.version(),
        Tool::Kustomize.version(),
        kubernetes_version()
    );
    for l in lines {
        eprintln!("    {l}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn every_tool_has_a_pinned_version() {
        for tool in Tool::ALL {
            assert!(tool.version().starts_with('v'), "{tool:?} has no version");
        }
        assert!(Tool::Helm.version().starts_with("v4."));
        assert!(prometheus_operator_version().starts_with("v0."));
        assert!(kubernetes_version().starts_with("v1."));
    }

    /// `kustomize build` stands for `kubectl kustomize`: the same kustomize as the kubectl of
    /// the local control plane.
    #[test]
    fn kustomize_is_the_one_kubectl_embeds() {
        assert_eq!(
            module_version(CLUSTER_GO_MOD, Tool::Kustomize.module()),
            Some(Tool::Kustomize.version()),
            "xtask/go-charts/go.mod and xtask/go/go.mod pin different kustomize versions"
        );
    }

    #[test]
    fn cache_paths_are_keyed_by_version() {
        assert_eq!(
            Tool::Helm.cached(Path::new("/c")),
            Path::new("/c/bin")
                .join(format!("helm-{}", Tool::Helm.version()))
                .join("helm")
        );
    }

    #[test]
    fn the_chart_crds_and_rbac_are_byte_identical_to_config() {
        let diffs = copy_differences(&workspace()).unwrap();
        assert!(
            diffs.is_empty(),
            "{}; run `cargo xtask crds`, which copies them",
            diffs.join("; ")
        );
    }

    #[test]
    fn the_full_values_file_sets_every_value() {
        let missing = values_missing_from_full(&workspace()).unwrap();
        assert!(
            missing.is_empty(),
            "charts/fledge/ci/full-values.yaml does not set {missing:?}"
        );
    }

    #[test]
    fn reads_flags_from_help_text() {
        let help = "Options:\n      --metrics-addr <METRICS_ADDR>  Address [default: x]\n  \
                    -n, --namespace <NS>\n      --leader-elect\n";
        let flags = documented_flags(help);
        assert_eq!(
            flags.into_iter().collect::<Vec<_>>(),
            ["--leader-elect", "--metrics-addr", "--namespace"]
        );
    }

    #[test]
    fn leaf_paths_stop_at_lists_scalars_and_empty_maps() {
        let v: Value =
            serde_json::json!({"a": {"b": 1, "c": {}}, "d": [1], "e": {"f": {"g": "x"}}});
        let mut out = BTreeSet::new();
        leaf_paths(&v, "", &mut out);
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            ["a.b", "a.c", "d", "e.f.g"]
        );
    }
}
