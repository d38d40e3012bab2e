//! `cargo xtask flagger`: Flagger, the reference fledge is checked against, built from its Go
//! module at the version pinned in `xtask/go-flagger/go.mod`, with its CRDs from the same module.
//!
//! `go mod download` in `xtask/go-flagger` fetches the pinned module and verifies it against the
//! `go.sum` there; Flagger is then built inside the downloaded module (its `./cmd/flagger`
//! package), as its main module, so it gets exactly the dependency versions its authors pinned.
//! The binary and the CRDs (`artifacts/flagger/crd.yaml` of the module) land in
//! `~/.cache/fledge/bin/flagger-<version>/`; a later run finds them there and skips Go.
//!
//! The task prints two lines: the binary's path, then the CRD file's (the cut-over end-to-end
//! test reads them).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cluster::build::{cache_dir, check_go_version, go_command, module_version};
use crate::dataplane::build::{Program, build_program, download_module_in};
use crate::util::{root, target_dir};

/// The pinned module file, compiled in so the version is known without reading the disk.
const GO_MOD: &str = include_str!("../go-flagger/go.mod");
/// Flagger's module.
pub const MODULE: &str = "github.com/fluxcd/flagger";
/// The CRDs inside the module.
const CRD_PATH: &str = "artifacts/flagger/crd.yaml";

/// The pinned Flagger version.
pub fn version() -> &'static str {
    module_version(GO_MOD, MODULE).unwrap_or("unknown")
}

/// Where the built Flagger and its CRDs are.
#[derive(Clone, Debug)]
pub struct Flagger {
    /// The `flagger` binary.
    pub binary: PathBuf,
    /// Flagger's CRDs (Canary, MetricTemplate, AlertProvider of `flagger.app/v1beta1`).
    pub crds: PathBuf,
}

impl Flagger {
    fn in_cache(cache: &Path) -> Flagger {
        let dir = cache.join("bin").join(format!("flagger-{}", version()));
        Flagger {
            binary: dir.join("flagger"),
            crds: dir.join("crd.yaml"),
        }
    }
}

/// `cargo xtask flagger`: builds (or finds) Flagger and prints where it and its CRDs are.
pub fn run() -> Result<()> {
    let f = ensure()?;
    println!("{}", f.binary.display());
    println!("{}", f.crds.display());
    Ok(())
}

/// Flagger and its CRDs, built and copied into the cache first when missing.
pub fn ensure() -> Result<Flagger> {
    let cache = cache_dir()?;
    let f = Flagger::in_cache(&cache);
    if f.binary.is_file() && f.crds.is_file() {
        return Ok(f);
    }
    let bin_dir = cache.join("bin");
    fs::create_dir_all(&bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    // One build at a time, even across concurrent `cargo xtask` runs (the other builds take the
    // same lock).
    let lock = File::create(bin_dir.join(".lock"))?;
    lock.lock().context("locking the binary cache")?;
    if f.binary.is_file() && f.crds.is_file() {
        return Ok(f);
    }
    let go = go_command()?;
    check_go_version(&go)?;
    let module_dir = download_module_in(&root().join("xtask").join("go-flagger"), MODULE)?;
    let dir = f.binary.parent().context("cache path has a parent")?;
    fs::create_dir_all(dir)?;
    if !f.binary.is_file() {
        let log_path = target_dir().join("flagger").join("go-build-flagger.log");
        eprintln!(
            "flagger: building Flagger {} from the Go module proxy (once per version; build log: {})",
            version(),
            log_path.display()
        );
        let started = Instant::now();
        let program = Program {
            name: "flagger",
            version: version(),
            package_dir: "./cmd/flagger",
            // Flagger's release build stamps the revision; the version is in its source.
            ldflags: format!("-X {MODULE}/pkg/version.REVISION={}", version()),
        };
        build_program(&go, &cache, &module_dir, &program, &log_path, &f.binary)?;
        eprintln!(
            "flagger: built Flagger {} in {:.0?} ({})",
            version(),
            started.elapsed(),
            f.binary.display()
        );
    }
    let crds = module_dir.join(CRD_PATH);
    fs::copy(&crds, &f.crds)
        .with_context(|| format!("copying {} to {}", crds.display(), f.crds.display()))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flagger_is_pinned_and_cached_by_version() {
        assert_eq!(version(), "v1.36.1");
        let f = Flagger::in_cache(Path::new("/c"));
        assert_eq!(f.binary, Path::new("/c/bin/flagger-v1.36.1/flagger"));
        assert_eq!(f.crds, Path::new("/c/bin/flagger-v1.36.1/crd.yaml"));
    }
}
