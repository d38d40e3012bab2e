//! Building the data plane (Traefik, podinfo, the metrics servers VictoriaMetrics and InfluxDB,
//! and Skipper) from the Go module proxy, cached by version.
//!
//! The versions are pinned in `xtask/go-dataplane/go.mod`, with their checksums in `go.sum`
//! beside it. `go mod download` in that directory fetches and verifies each module; the program
//! is then built inside the downloaded module, as its main module, so it gets exactly the
//! dependency versions (and `replace` lines) its authors pinned. Traefik's and podinfo's
//! dependencies never meet each other or the Kubernetes 1.37 libraries of `xtask/go`.
//!
//! The binaries land in `~/.cache/fledge/bin/<tool>-<version>/<tool>`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cluster::build::{cache_dir, check_go_version, go_command, module_version};
use crate::cluster::proc::tail;

/// The pinned module file, compiled in so the versions are known without reading the disk.
const GO_MOD: &str = include_str!("../../go-dataplane/go.mod");

/// One program of the data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    Traefik,
    Podinfo,
    VictoriaMetrics,
    InfluxDb,
    Skipper,
}

impl Tool {
    pub const ALL: [Tool; 5] = [
        Tool::Traefik,
        Tool::Podinfo,
        Tool::VictoriaMetrics,
        Tool::InfluxDb,
        Tool::Skipper,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Traefik => "traefik",
            Tool::Podinfo => "podinfo",
            Tool::VictoriaMetrics => "victoria-metrics",
            Tool::InfluxDb => "influxd",
            Tool::Skipper => "skipper",
        }
    }

    pub fn module(self) -> &'static str {
        match self {
            Tool::Traefik => "github.com/traefik/traefik/v3",
            Tool::Podinfo => "github.com/stefanprodan/podinfo",
            Tool::VictoriaMetrics => "github.com/VictoriaMetrics/VictoriaMetrics",
            Tool::InfluxDb => "github.com/influxdata/influxdb",
            Tool::Skipper => "github.com/zalando/skipper",
        }
    }

    /// The main package, relative to the module's root.
    fn package_dir(self) -> &'static str {
        match self {
            Tool::Traefik => "./cmd/traefik",
            Tool::Podinfo => "./cmd/podinfo",
            Tool::VictoriaMetrics => "./app/victoria-metrics",
            Tool::InfluxDb => "./cmd/influxd",
            Tool::Skipper => "./cmd/skipper",
        }
    }

    /// The pinned module version, from `go.mod`.
    pub fn version(self) -> &'static str {
        module_version(GO_MOD, self.module()).unwrap_or("unknown")
    }

    /// `-X` flags that stamp the version the way each project's release build does.
    fn version_ldflags(self) -> String {
        let version = self.version();
        match self {
            Tool::Traefik => {
                format!("-X github.com/traefik/traefik/v3/pkg/version.Version={version}")
            }
            // podinfo keeps its release number (6.9.2) in the source; the commit is its revision.
            Tool::Podinfo => format!(
                "-X github.com/stefanprodan/podinfo/pkg/version.REVISION={}",
                pseudo_version_commit(version).unwrap_or(version)
            ),
            Tool::VictoriaMetrics => format!(
                "-X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-metrics-{version}"
            ),
            Tool::InfluxDb => format!("-X main.version={}", version.trim_start_matches('v')),
            Tool::Skipper => format!("-X main.version={version}"),
        }
    }
}

/// The Gateway API module whose `config/crd/standard` CRDs are installed when missing.
pub const GATEWAY_API_MODULE: &str = "sigs.k8s.io/gateway-api";

/// The pinned Gateway API version.
pub fn gateway_api_version() -> &'static str {
    module_version(GO_MOD, GATEWAY_API_MODULE).unwrap_or("unknown")
}

/// The commit of a pseudo-version (`v1.8.1-0.20250910200901-e86405a8674e` → `e86405a8674e`).
fn pseudo_version_commit(version: &str) -> Option<&str> {
    let last = version.rsplit('-').next()?;
    (last.len() == 12 && last.bytes().all(|b| b.is_ascii_hexdigit()) && version.contains('-'))
        .then_some(last)
}

/// `xtask/go-dataplane`.
pub fn go_dir(workspace: &Path) -> PathBuf {
    workspace.join("xtask").join("go-dataplane")
}

/// The cached path of one tool: `<cache>/bin/<tool>-<version>/<tool>`.
pub fn cached_binary(cache: &Path, tool: Tool) -> PathBuf {
    cache
        .join("bin")
        .join(format!("{}-{}", tool.name(), tool.version()))
        .join(tool.name())
}

/// The paths of the built programs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub traefik: PathBuf,
    pub podinfo: PathBuf,
    pub victoria_metrics: PathBuf,
    pub influxd: PathBuf,
    pub skipper: PathBuf,
}

impl Binaries {
    fn in_cache(cache: &Path) -> Self {
        Binaries {
            traefik: cached_binary(cache, Tool::Traefik),
            podinfo: cached_binary(cache, Tool::Podinfo),
            victoria_metrics: cached_binary(cache, Tool::VictoriaMetrics),
            influxd: cached_binary(cache, Tool::InfluxDb),
            skipper: cached_binary(cache, Tool::Skipper),
        }
    }

    pub fn path(&self, tool: Tool) -> &Path {
        match tool {
            Tool::Traefik => &self.traefik,
            Tool::Podinfo => &self.podinfo,
            Tool::VictoriaMetrics => &self.victoria_metrics,
            Tool::InfluxDb => &self.influxd,
            Tool::Skipper => &self.skipper,
        }
    }
}

/// The programs, each built first if missing from the cache. `log_dir` receives one Go build
/// log per program.
pub fn ensure_binaries(workspace: &Path, log_dir: &Path) -> Result<Binaries> {
    let cache = cache_dir()?;
    let bins = Binaries::in_cache(&cache);
    let missing = |bins: &Binaries| -> Vec<Tool> {
        Tool::ALL
            .into_iter()
            .filter(|t| !bins.path(*t).is_file())
            .collect()
    };
    if missing(&bins).is_empty() {
        return Ok(bins);
    }
    let bin_dir = cache.join("bin");
    fs::create_dir_all(&bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    // One build at a time, even across concurrent `cargo xtask` runs (the cluster build takes
    // the same lock).
    let lock = File::create(bin_dir.join(".lock"))?;
    lock.lock().context("locking the binary cache")?;
    let go = go_command()?;
    check_go_version(&go)?;
    for tool in missing(&bins) {
        let log = log_dir.join(format!("go-build-{}.log", tool.name()));
        eprintln!(
            "dataplane: building {} {} from the Go module proxy (once per version; build log: {})",
            tool.name(),
            tool.version(),
            log.display()
        );
        let started = Instant::now();
        build_one(&go, &cache, workspace, tool, &log, bins.path(tool))?;
        eprintln!(
            "dataplane: built {} {} in {:.0?} ({})",
            tool.name(),
            tool.version(),
            started.elapsed(),
            bins.path(tool).display()
        );
    }
    Ok(bins)
}

/// Environment shared by every Go command here: caches under `~/.cache/fledge/go`, static
/// binaries, no VCS stamping, and nothing written to `go.mod`/`go.sum` files.
pub(crate) fn go_env(cmd: &mut Command, cache: &Path) {
    cmd.env("GOMODCACHE", cache.join("go").join("mod"))
        .env("GOCACHE", cache.join("go").join("build"))
        .env("GOFLAGS", "-modcacherw -mod=readonly -buildvcs=false")
        .env("CGO_ENABLED", "0")
        .env_remove("GOOS")
        .env_remove("GOARCH")
        .stdin(Stdio::null());
}

/// `go mod download -json <module>` in `xtask/go-dataplane`: fetches the pinned version,
/// verifies it against `go.sum` there, and returns the directory it was unpacked into.
pub fn download_module(workspace: &Path, module: &str) -> Result<PathBuf> {
    download_module_in(&go_dir(workspace), module)
}

/// `go mod download -json <module>` in the pinned module `dir`: fetches the version pinned
/// there, verifies it against its `go.sum`, and returns the directory it was unpacked into.
pub fn download_module_in(dir: &Path, module: &str) -> Result<PathBuf> {
    let cache = cache_dir()?;
    let go = go_command()?;
    let mut cmd = Command::new(&go);
    cmd.current_dir(dir)
        .args(["mod", "download", "-json", module]);
    go_env(&mut cmd, &cache);
    let out = cmd
        .output()
        .with_context(|| format!("running {} mod download", go.display()))?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`go mod download -json {module}` printed no JSON ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    if let Some(err) = info.get("Error").and_then(|e| e.as_str()) {
        bail!("`go mod download {module}` failed: {err}");
    }
    if !out.status.success() {
        bail!(
            "`go mod download {module}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let dir = info
        .get("Dir")
        .and_then(|d| d.as_str())
        .with_context(|| format!("`go mod download -json {module}` gave no Dir"))?;
    Ok(PathBuf::from(dir))
}

fn build_one(
    go: &Path,
    cache: &Path,
    workspace: &Path,
    tool: Tool,
    log_path: &Path,
    dest: &Path,
) -> Result<()> {
    let module_dir = download_module(workspace, tool.module())?;
    build_program(
        go,
        cache,
        &module_dir,
        &Program {
            name: tool.name(),
            version: tool.version(),
            package_dir: tool.package_dir(),
            ldflags: tool.version_ldflags(),
        },
        log_path,
        dest,
    )
}

/// A Go program built inside its own downloaded module (see [`build_program`]).
pub(crate) struct Program<'a> {
    /// The binary's name, in messages and in the partial file's name.
    pub name: &'a str,
    /// The pinned version, in messages.
    pub version: &'a str,
    /// The main package, relative to the module's root (`./cmd/x`).
    pub package_dir: &'a str,
    /// `-X` flags that stamp the version as the project's release build does.
    pub ldflags: String,
}

/// Builds `program` inside `module_dir` (a module `download_module_in` fetched), as its main
/// module, so it gets exactly the dependency versions its authors pinned; the binary lands at
/// `dest` (renamed into place, so an interrupted build never leaves a truncated binary there).
/// `log_path` receives Go's output.
pub(crate) fn build_program(
    go: &Path,
    cache: &Path,
    module_dir: &Path,
    program: &Program<'_>,
    log_path: &Path,
    dest: &Path,
) -> Result<()> {
    fs::create_dir_all(log_path.parent().context("log path has a parent")?)?;
    let log = File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let dest_dir = dest.parent().context("cache path has a parent")?;
    fs::create_dir_all(dest_dir)?;
    let partial = dest_dir.join(format!(".{}.partial-{}", program.name, std::process::id()));
    // `nice -n 19`: the build must not disturb benchmarks measured on the same machine.
    let mut cmd = Command::new("nice");
    cmd.current_dir(module_dir)
        .args(["-n", "19"])
        .arg(go)
        .arg("build")
        .arg("-trimpath")
        // -ldflags=-w drops DWARF at link time anyway; not generating it saves compile time.
        .arg("-gcflags=all=-dwarf=false")
        .arg(format!("-ldflags=-s -w {}", program.ldflags))
        .arg("-o")
        .arg(&partial)
        .arg(program.package_dir)
        .stdout(log.try_clone()?)
        .stderr(log);
    go_env(&mut cmd, cache);
    let status = crate::util::status_with_progress(&format!("building {}", program.name), &mut cmd)
        .with_context(|| format!("running nice {} build", go.display()))?;
    if !status.success() {
        let _ = fs::remove_file(&partial);
        bail!(
            "building {} {} failed ({status}); last lines of {}:\n{}",
            program.name,
            program.version,
            log_path.display(),
            tail(log_path, 30)
        );
    }
    fs::rename(&partial, dest)
        .with_context(|| format!("moving {} to {}", partial.display(), dest.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_pinned_version() {
        for tool in Tool::ALL {
            assert!(tool.version().starts_with('v'), "{tool:?} has no version");
        }
        assert!(Tool::Traefik.version().starts_with("v3."));
        assert!(gateway_api_version().starts_with("v1."));
    }

    #[test]
    fn cache_paths_are_keyed_by_version() {
        assert_eq!(
            cached_binary(Path::new("/c"), Tool::Traefik),
            Path::new("/c/bin")
                .join(format!("traefik-{}", Tool::Traefik.version()))
                .join("traefik")
        );
    }

    #[test]
    fn stamps_versions_like_the_release_builds() {
        assert_eq!(
            pseudo_version_commit("v1.8.1-0.20250910200901-e86405a8674e"),
            Some("e86405a8674e")
        );
        assert_eq!(pseudo_version_commit("v3.6.12"), None);
        assert!(
            Tool::Traefik
                .version_ldflags()
                .ends_with(&format!("version.Version={}", Tool::Traefik.version()))
        );
        assert!(
            Tool::Podinfo
                .version_ldflags()
                .contains("version.REVISION=")
        );
    }

    /// `cluster up` installs the Gateway API CRDs from `xtask/go/peers/go.mod`; the data plane
    /// installs them only when missing, and must then install the same version.
    #[test]
    fn gateway_api_pin_agrees_with_the_peer_crds() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let peers = workspace.join("xtask/go/peers/go.mod");
        if let Ok(text) = fs::read_to_string(&peers) {
            assert_eq!(
                module_version(&text, GATEWAY_API_MODULE),
                Some(gateway_api_version()),
                "{} and xtask/go-dataplane/go.mod pin different Gateway API versions",
                peers.display()
            );
        }
    }
}
