//! Building the control-plane binaries from the Go module proxy, cached by version.
//!
//! Every version is pinned in `xtask/go/go.mod` (with `go.sum` beside it); this file reads the
//! versions from there, so a bump is one edit in one file. The binaries land in
//! `~/.cache/fledge/bin/<tool>-<version>/<tool>`; a later `up` finds them there and skips Go.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The pinned module file, compiled in so the versions are known without reading the disk.
const GO_MOD: &str = include_str!("../../go/go.mod");

/// One binary of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubectl,
    Kwok,
}

impl Tool {
    pub const ALL: [Tool; 6] = [
        Tool::Etcd,
        Tool::KubeApiserver,
        Tool::KubeControllerManager,
        Tool::KubeScheduler,
        Tool::Kubectl,
        Tool::Kwok,
    ];

    /// The binary's name, in the cache and in process listings.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Etcd => "etcd",
            Tool::KubeApiserver => "kube-apiserver",
            Tool::KubeControllerManager => "kube-controller-manager",
            Tool::KubeScheduler => "kube-scheduler",
            Tool::Kubectl => "kubectl",
            Tool::Kwok => "kwok",
        }
    }

    /// The Go main package.
    fn package(self) -> &'static str {
        match self {
            Tool::Etcd => "go.etcd.io/etcd/server/v3",
            Tool::KubeApiserver => "k8s.io/kubernetes/cmd/kube-apiserver",
            Tool::KubeControllerManager => "k8s.io/kubernetes/cmd/kube-controller-manager",
            Tool::KubeScheduler => "k8s.io/kubernetes/cmd/kube-scheduler",
            Tool::Kubectl => "k8s.io/kubernetes/cmd/kubectl",
            Tool::Kwok => "sigs.k8s.io/kwok/cmd/kwok",
        }
    }

    /// The module whose version names the binary.
    fn module(self) -> &'static str {
        match self {
            Tool::Etcd => "go.etcd.io/etcd/server/v3",
            Tool::Kwok => "sigs.k8s.io/kwok",
            _ => "k8s.io/kubernetes",
        }
    }

    /// The file name `go build -o <dir>/` gives the package: its last path element that is not
    /// a major-version suffix.
    fn go_output_name(self) -> &'static str {
        let mut parts = self.package().rsplit('/');
        let last = parts.next().unwrap_or_default();
        if is_major_suffix(last) {
            parts.next().unwrap_or(last)
        } else {
            last
        }
    }

    /// The pinned version, from `go.mod`.
    pub fn version(self) -> &'static str {
        module_version(GO_MOD, self.module()).unwrap_or("unknown")
    }
}

fn is_major_suffix(s: &str) -> bool {
    s.len() > 1 && s.starts_with('v') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// The version `go.mod` requires for `module` (in a `require` block or a one-line `require`).
pub fn module_version<'a>(go_mod: &'a str, module: &str) -> Option<&'a str> {
    let mut in_require = false;
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["require", "("] => in_require = true,
            [")"] => in_require = false,
            ["require", m, v] if *m == module => return Some(v),
            [m, v] if in_require && *m == module => return Some(v),
            _ => {}
        }
    }
    None
}

/// Where fledge keeps what it builds or downloads: `$FLEDGE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/fledge`, else `~/.cache/fledge`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FLEDGE_CACHE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("fledge"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set FLEDGE_CACHE_DIR")?;
    Ok(PathBuf::from(home).join(".cache").join("fledge"))
}

/// The cached path of one tool: `<cache>/bin/<tool>-<version>/<tool>`.
pub fn cached_binary(cache: &Path, tool: Tool) -> PathBuf {
    cache
        .join("bin")
        .join(format!("{}-{}", tool.name(), tool.version()))
        .join(tool.name())
}

/// kwok's default Stages (what `kwokctl` feeds it): node setup and heartbeat with a Lease, pods
/// becoming Ready, completing and being deleted. Taken from the kwok module itself, never
/// hand-written; paths are inside the module.
const KWOK_STAGES: [&str; 5] = [
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
];

/// The paths of the built binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubectl: PathBuf,
    pub kwok: PathBuf,
    /// kwok's Stage files, kept next to the kwok binary.
    pub kwok_stages: Vec<PathBuf>,
}

impl Binaries {
    fn in_cache(cache: &Path) -> Self {
        Binaries {
            etcd: cached_binary(cache, Tool::Etcd),
            kube_apiserver: cached_binary(cache, Tool::KubeApiserver),
            kube_controller_manager: cached_binary(cache, Tool::KubeControllerManager),
            kube_scheduler: cached_binary(cache, Tool::KubeScheduler),
            kubectl: cached_binary(cache, Tool::Kubectl),
            kwok: cached_binary(cache, Tool::Kwok),
            kwok_stages: KWOK_STAGES
                .iter()
                .map(|s| kwok_stage_path(cache, s))
                .collect(),
        }
    }

    fn missing(&self) -> Vec<&Path> {
        Tool::ALL
            .iter()
            .map(|t| self.path(*t))
            .chain(self.kwok_stages.iter().map(PathBuf::as_path))
            .filter(|p| !p.is_file())
            .collect()
    }

    pub fn path(&self, tool: Tool) -> &Path {
        match tool {
            Tool::Etcd => &self.etcd,
            Tool::KubeApiserver => &self.kube_apiserver,
            Tool::KubeControllerManager => &self.kube_controller_manager,
            Tool::KubeScheduler => &self.kube_scheduler,
            Tool::Kubectl => &self.kubectl,
            Tool::Kwok => &self.kwok,
        }
    }
}

/// The binaries, built first if any is missing from the cache.
///
/// `go_dir` is the module with the pinned versions (`xtask/go`); `log` receives Go's output.
pub fn ensure_binaries(go_dir: &Path, log: &Path) -> Result<Binaries> {
    let cache = cache_dir()?;
    let bins = Binaries::in_cache(&cache);
    if bins.missing().is_empty() {
        return Ok(bins);
    }
    let bin_dir = cache.join("bin");
    fs::create_dir_all(&bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    // One build at a time, even across concurrent `cargo xtask` runs.
    let lock = File::create(bin_dir.join(".lock"))?;
    lock.lock().context("locking the binary cache")?;
    if bins.missing().is_empty() {
        return Ok(bins);
    }
    let go = go_command()?;
    check_go_version(&go)?;
    let names: Vec<String> = Tool::ALL
        .iter()
        .map(|t| format!("{} {}", t.name(), t.version()))
        .collect();
    eprintln!(
        "cluster: building {} from the Go module proxy (once per version; this takes a while)",
        names.join(", ")
    );
    eprintln!("cluster: build log: {}", log.display());
    let started = Instant::now();
    go_build(&go, &cache, go_dir, log)?;
    let staging = build_output_dir(&cache);
    for tool in Tool::ALL {
        let built = staging.join(tool.go_output_name());
        let dest = bins.path(tool);
        let dir = dest.parent().context("cache path has a parent")?;
        fs::create_dir_all(dir)?;
        fs::rename(&built, dest)
            .with_context(|| format!("moving {} to {}", built.display(), dest.display()))?;
    }
    let _ = fs::remove_dir_all(&staging);
    let kwok_module = cache
        .join("go")
        .join("mod")
        .join(format!("sigs.k8s.io/kwok@{}", Tool::Kwok.version()));
    for (stage, dest) in KWOK_STAGES.iter().zip(&bins.kwok_stages) {
        let src = kwok_module.join(stage);
        fs::create_dir_all(dest.parent().context("stage path has a parent")?)?;
        fs::copy(&src, dest)
            .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?;
    }
    eprintln!(
        "cluster: built the control plane in {:.0?} (cached under {})",
        started.elapsed(),
        bin_dir.display()
    );
    Ok(bins)
}

fn kwok_stage_path(cache: &Path, stage: &str) -> PathBuf {
    let file = stage.rsplit('/').next().unwrap_or(stage);
    cached_binary(cache, Tool::Kwok)
        .with_file_name("stages")
        .join(file)
}

fn build_output_dir(cache: &Path) -> PathBuf {
    cache
        .join("bin")
        .join(format!(".build-{}", std::process::id()))
}

/// Where the `go` command is: `fledge_go` (`$FLEDGE_GO`) if set, else `go` in one of the
/// `path` directories, else `fallback` (where the official tarball installs it) if it exists.
pub fn locate_go(
    fledge_go: Option<std::ffi::OsString>,
    path: Option<std::ffi::OsString>,
    fallback: &Path,
) -> Option<PathBuf> {
    if let Some(go) = fledge_go.filter(|g| !g.is_empty()) {
        return Some(PathBuf::from(go));
    }
    let on_path = path
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("go"))
        .find(|g| g.is_file());
    on_path.or_else(|| fallback.is_file().then(|| fallback.to_path_buf()))
}

/// The `go` command, or an error that says how to install Go.
pub(crate) fn go_command() -> Result<PathBuf> {
    if let Some(go) = locate_go(
        std::env::var_os("FLEDGE_GO"),
        std::env::var_os("PATH"),
        Path::new("/usr/local/go/bin/go"),
    ) {
        if !go.is_file() {
            bail!("FLEDGE_GO points at {}, which does not exist", go.display());
        }
        return Ok(go);
    }
    bail!(
        "Go is needed to build the local control plane (etcd, Kubernetes and kwok are built from \
         the Go module proxy) but no `go` command was found.\n\
         Install Go 1.21 or newer (a newer toolchain is then fetched through the module proxy as \
         xtask/go/go.mod asks), e.g.:\n  \
         curl -fsSL https://go.dev/dl/go1.26.0.linux-amd64.tar.gz | sudo tar -C /usr/local -xz \
         && export PATH=$PATH:/usr/local/go/bin\n\
         or `sudo apt-get install golang-go` on a recent Debian/Ubuntu, \
         or point FLEDGE_GO at a go binary."
    )
}

/// Parses `go1.26.8` (or `go1.26rc1`) into (major, minor).
pub fn parse_go_version(s: &str) -> Option<(u32, u32)> {
    let rest = s.trim().strip_prefix("go")?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// Fails unless `go` is recent enough to fetch the toolchain `go.mod` asks for.
pub(crate) fn check_go_version(go: &Path) -> Result<()> {
    let version = Command::new(go)
        .args(["env", "GOVERSION"])
        .output()
        .with_context(|| format!("running `{} env GOVERSION`", go.display()))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    match parse_go_version(&version) {
        Some(v) if v >= (1, 21) => {}
        _ => bail!(
            "`{} env GOVERSION` says {version:?}; Go 1.21 or newer is needed (it fetches the \
             toolchain xtask/go/go.mod asks for through the module proxy)",
            go.display()
        ),
    }
    Ok(())
}

fn go_build(go: &Path, cache: &Path, go_dir: &Path, log_path: &Path) -> Result<()> {
    // Leftovers of interrupted builds (the caller holds the build lock, so none is running).
    for entry in fs::read_dir(cache.join("bin"))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".build-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let out_dir = build_output_dir(cache);
    fs::create_dir_all(&out_dir)?;
    if let Some(dir) = log_path.parent() {
        fs::create_dir_all(dir)?;
    }
    let log = File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;

    let kube = Tool::KubeApiserver.version();
    let (major, minor) = kube_major_minor(kube);
    let ldflags = format!(
        "-s -w -X k8s.io/component-base/version.gitVersion={kube} \
         -X k8s.io/component-base/version.gitMajor={major} \
         -X k8s.io/component-base/version.gitMinor={minor} \
         -X k8s.io/component-base/version.gitTreeState=clean"
    );
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut cmd = Command::new(go);
    cmd.current_dir(go_dir)
        .arg("build")
        .arg(format!("-p={jobs}"))
        .arg("-trimpath")
        // -ldflags=-w drops DWARF at link time anyway; not generating it saves ~10% compile time.
        .arg("-gcflags=all=-dwarf=false")
        .arg(format!("-ldflags={ldflags}"))
        .arg("-o")
        // The trailing slash makes Go write one binary per package into the directory.
        .arg(format!("{}/", out_dir.display()))
        .args(Tool::ALL.map(Tool::package))
        .env("GOMODCACHE", cache.join("go").join("mod"))
        .env("GOCACHE", cache.join("go").join("build"))
        // -modcacherw keeps the module cache deletable; -mod=readonly fails on a stale go.sum
        // instead of rewriting it.
        .env("GOFLAGS", "-modcacherw -mod=readonly -buildvcs=false")
        // Static binaries: no C compiler needed.
        .env("CGO_ENABLED", "0")
        .env_remove("GOOS")
        .env_remove("GOARCH")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let status = crate::util::status_with_progress("building the control plane", &mut cmd)
        .with_context(|| format!("running {}", go.display()))?;
    if !status.success() {
        let _ = fs::remove_dir_all(&out_dir);
        bail!(
            "building the control plane failed ({status}); last lines of {}:\n{}",
            log_path.display(),
            super::proc::tail(log_path, 30)
        );
    }
    Ok(())
}

/// `v1.37.2` → ("1", "37").
fn kube_major_minor(version: &str) -> (String, String) {
    let mut parts = version.trim_start_matches('v').split('.');
    let major = parts.next().unwrap_or("1").to_string();
    let minor = parts.next().unwrap_or("0").to_string();
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_pinned_version() {
        for tool in Tool::ALL {
            assert!(
                tool.version().starts_with('v'),
                "{} has no version in go.mod",
                tool.name()
            );
        }
        assert!(Tool::Kubectl.version().starts_with("v1."));
    }

    #[test]
    fn staging_modules_match_the_kubernetes_release() {
        let kube = Tool::KubeApiserver.version();
        let staging = format!("v0.{}", kube.trim_start_matches("v1."));
        let replaces: Vec<&str> = GO_MOD
            .lines()
            .filter(|l| l.trim_start().starts_with("k8s.io/") && l.contains("=>"))
            .collect();
        assert!(replaces.len() > 20, "go.mod lost its staging replaces");
        for line in replaces {
            assert!(
                line.trim_end().ends_with(&format!(" {staging}")),
                "{line:?} does not point at {staging} (Kubernetes {kube})"
            );
        }
    }

    #[test]
    fn reads_versions_from_require_blocks_and_lines() {
        let go_mod = "module x\n\ngo 1.26.0\n\nrequire example.com/one v1.2.3\n\
                      require (\n\tk8s.io/kubernetes v1.37.2 // indirect\n\tsigs.k8s.io/kwok v0.8.0\n)\n\
                      replace (\n\tk8s.io/api => k8s.io/api v0.37.2\n)\n";
        assert_eq!(module_version(go_mod, "example.com/one"), Some("v1.2.3"));
        assert_eq!(module_version(go_mod, "k8s.io/kubernetes"), Some("v1.37.2"));
        assert_eq!(module_version(go_mod, "sigs.k8s.io/kwok"), Some("v0.8.0"));
        assert_eq!(module_version(go_mod, "k8s.io/api"), None);
    }

    #[test]
    fn go_output_names_skip_major_version_suffixes() {
        assert_eq!(Tool::Etcd.go_output_name(), "server");
        assert_eq!(Tool::Kwok.go_output_name(), "kwok");
        assert_eq!(Tool::Kubectl.go_output_name(), "kubectl");
    }

    #[test]
    fn finds_go_on_the_path_then_in_the_usual_place() {
        let dir = std::env::temp_dir().join(format!("fledge-go-test-{}", std::process::id()));
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("go"), "").unwrap();
        let fallback = dir.join("usr-local-go");
        let path = std::env::join_paths([dir.join("nothing"), bin.clone()]).unwrap();
        assert_eq!(
            locate_go(None, Some(path.clone()), &fallback),
            Some(bin.join("go"))
        );
        assert_eq!(
            locate_go(Some("/my/go".into()), Some(path), &fallback),
            Some(PathBuf::from("/my/go"))
        );
        assert_eq!(locate_go(None, Some("/nowhere".into()), &fallback), None);
        fs::write(&fallback, "").unwrap();
        assert_eq!(locate_go(None, None, &fallback), Some(fallback.clone()));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn parses_go_versions() {
        assert_eq!(parse_go_version("go1.26.8\n"), Some((1, 26)));
        assert_eq!(parse_go_version("go1.27rc1"), Some((1, 27)));
        assert_eq!(parse_go_version("devel"), None);
    }

    #[test]
    fn cache_paths_are_keyed_by_version() {
        let p = cached_binary(Path::new("/c"), Tool::Kwok);
        assert_eq!(
            p,
            Path::new("/c/bin")
                .join(format!("kwok-{}", Tool::Kwok.version()))
                .join("kwok")
        );
        assert_eq!(kube_major_minor("v1.37.2"), ("1".into(), "37".into()));
    }
}
