//! `cargo xtask image`: the `fledge` and `fledge-loadgen` container images, built on this machine
//! with no registry and no container daemon, as OCI archives under `target/images/`.
//!
//! - The binaries are static musl release builds (`x86_64-unknown-linux-musl`, the workspace's
//!   release profile), with Debian's `musl-gcc` as the C compiler of the C dependencies
//!   (aws-lc-sys), not position-independent, and linked by `build/link-musl` with the functions
//!   of `build/code-order.txt` first and together (`.cargo/config.toml`: fewer resident pages;
//!   the controller's order is checked after the build).
//! - The base layer is made from Debian packages, as distroless does: the CA bundle is what the
//!   `ca-certificates` package's own `update-ca-certificates` writes from the package's Mozilla
//!   certificates (the package is fetched with `apt-get download`, never taken from this machine,
//!   whose bundle may hold local CAs), and `/etc/passwd` and `/etc/group` name `root`, `nobody`
//!   and `nonroot` (65532). No shell, no package manager, no libc.
//! - The layers are tar archives written by GNU tar with fixed owners, order and times (the commit
//!   time, or `SOURCE_DATE_EPOCH`); umoci (Debian's `umoci`) adds them to an OCI layout and writes
//!   the image configuration: user 65532, entrypoint, OCI labels.
//! - An SBOM per image from `cargo cyclonedx` (installed under `~/.cache/fledge/` when missing),
//!   beside the archive and inside the image under `/sbom/`.
//!
//! The `Dockerfile` at the root builds the same images for users with Docker or Podman; a test
//! below checks that both agree.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cluster::build::cache_dir;
use crate::util::{cargo, root, run, target_dir};

/// The Rust target of the images' binaries.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// The C compiler the `cc` crate uses for [`TARGET`] (aws-lc-sys), from Debian's `musl-tools`.
const MUSL_CC: &str = "musl-gcc";
/// The user and group the images run as (distroless' `nonroot`).
pub const USER: &str = "65532:65532";
/// Where the binaries are in the images.
pub const BIN_DIR: &str = "/usr/local/bin";
/// Where the SBOMs are in the images.
pub const SBOM_DIR: &str = "/sbom";
/// The pinned cargo-cyclonedx.
pub const CYCLONEDX_VERSION: &str = "0.5.9";
/// The `org.opencontainers.image.source` label when `--source` is not given and the checkout
/// has no `origin` remote.
pub const DEFAULT_SOURCE: &str = "https://github.com/fledge-dev/fledge";
/// The images' `PATH` and the CA bundle's path (what Rust's TLS stacks and OpenSSL look for).
const ENV: [&str; 2] = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
];
/// The Debian packages this task runs: umoci (OCI layout), musl-gcc (C dependencies), file (the
/// static-linking check), openssl (`update-ca-certificates` rehashes its output directory).
const DEBIAN_PACKAGES: [(&str, &str); 4] = [
    ("umoci", "umoci"),
    (MUSL_CC, "musl-tools"),
    ("file", "file"),
    ("openssl", "openssl"),
];

/// One image.
#[derive(Clone, Copy, Debug)]
pub struct Image {
    /// The image's name, also the `--target` stage of the Dockerfile.
    pub name: &'static str,
    /// The Cargo package and binary.
    pub package: &'static str,
    pub bin: &'static str,
    /// The default arguments (`CMD`).
    pub cmd: &'static [&'static str],
    pub description: &'static str,
}

pub const IMAGES: [Image; 2] = [
    Image {
        name: "fledge",
        package: "fledge-controller",
        bin: "fledge",
        cmd: &["run"],
        description: "fledge: progressive delivery for Kubernetes (the controller)",
    },
    Image {
        name: "fledge-loadgen",
        package: "fledge-loadgen",
        bin: "fledge-loadgen",
        cmd: &["serve"],
        description: "fledge's load generator and Flagger-compatible load tester",
    },
];

/// The arguments of the one `cargo build` of both binaries (the Dockerfile runs the same).
pub fn build_args() -> Vec<String> {
    let mut args: Vec<String> = ["build", "--release", "--locked", "--target", TARGET]
        .map(String::from)
        .to_vec();
    for image in IMAGES {
        args.extend(["-p", image.package, "--bin", image.bin].map(String::from));
    }
    args
}

/// Where the static release build keeps its artifacts: `$FLEDGE_IMAGE_TARGET_DIR`, else
/// `target/` of the fledge cache (`~/.cache/fledge/target/`), shared by every checkout.
fn image_target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FLEDGE_IMAGE_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    Ok(cache_dir()?.join("target"))
}

/// Arguments of `cargo xtask image`.
#[derive(clap::Args)]
pub struct ImageArgs {
    /// The `org.opencontainers.image.source` label (default: the `origin` remote's URL, else
    /// the project's repository).
    #[arg(long)]
    pub source: Option<String>,
}

/// What one built image is, for the summary.
struct Built {
    name: &'static str,
    archive: PathBuf,
    sbom: PathBuf,
    archive_bytes: u64,
    layer_bytes: u64,
    unpacked_bytes: u64,
}

pub fn run_image(args: ImageArgs) -> Result<()> {
    let started = Instant::now();
    let version = env!("CARGO_PKG_VERSION");
    let out = target_dir().join("images");
    let work = out.join("work");
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    ensure_debian_tools()?;
    ensure_rust_target()?;
    let revision = git(&["rev-parse", "HEAD"])?;
    let epoch = source_date_epoch()?;
    let created = jiff::Timestamp::from_second(epoch)
        .context("the source date is out of range")?
        .to_string();
    let source = match args.source {
        Some(s) => s,
        None => git(&["remote", "get-url", "origin"]).unwrap_or_else(|_| DEFAULT_SOURCE.into()),
    };
    if !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
        eprintln!(
            "image: note: the work tree has uncommitted changes; the revision label says {revision}"
        );
    }

    // The static release build keeps its own target directory in the cache, so a fresh clone
    // (CI's) compiles only the workspace's crates, not every dependency again for musl.
    let release_target = image_target_dir()?;
    let mut build = cargo();
    build
        .args(build_args())
        .env("CARGO_TARGET_DIR", &release_target)
        .env(format!("CC_{}", TARGET.replace('-', "_")), MUSL_CC);
    run(
        &format!(
            "cargo {} (static, release profile; target directory {})",
            build_args().join(" "),
            release_target.display()
        ),
        &mut build,
    )?;
    let bin_dir = release_target.join(TARGET).join("release");
    for image in IMAGES {
        check_static(&bin_dir.join(image.bin))?;
    }
    // The controller's code is laid out as build/code-order.txt says (build/link-musl): the
    // functions a controller runs first and together.
    let controller = bin_dir.join("fledge");
    println!(
        "image: {}: {}",
        controller.display(),
        crate::code_order::check(&controller)?
    );

    let cyclonedx =
        crate::util::cargo_tool("cargo-cyclonedx", CYCLONEDX_VERSION, "once, for the SBOMs")?;
    let base = work.join("base");
    base_rootfs(&base)?;
    let base_tar = work.join("base.tar");
    layer_tar(&base, &base_tar, epoch)?;

    let sboms = write_sboms(&cyclonedx, &out, version, epoch)?;
    let mut built = Vec::new();
    for (image, sbom) in IMAGES.into_iter().zip(sboms) {
        let app = work.join(format!("{}-app", image.name));
        app_rootfs(&app, &bin_dir.join(image.bin), &sbom, image)?;
        let app_tar = work.join(format!("{}-app.tar", image.name));
        layer_tar(&app, &app_tar, epoch)?;

        let layout = work.join(format!("{}-layout", image.name));
        let labels = Labels {
            version,
            revision: &revision,
            source: &source,
            created: &created,
        };
        umoci_image(&layout, image, &base_tar, &app_tar, &labels)?;
        let archive = out.join(format!("{}-{version}.oci.tar", image.name));
        archive_layout(&layout, &archive, epoch)?;

        let bundle = work.join(format!("{}-bundle", image.name));
        let unpacked_bytes = verify(&layout, &bundle, image, version)?;
        built.push(Built {
            name: image.name,
            archive_bytes: fs::metadata(&archive)?.len(),
            layer_bytes: layer_bytes(&layout)?,
            unpacked_bytes,
            archive,
            sbom,
        });
    }
    fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;

    println!();
    println!(
        "{:<24} {:>12} {:>14} {:>12}",
        "image", "archive", "gzip layers", "unpacked"
    );
    for b in &built {
        println!(
            "{:<24} {:>12} {:>14} {:>12}",
            format!("{}:{version}", b.name),
            mib(b.archive_bytes),
            mib(b.layer_bytes),
            mib(b.unpacked_bytes)
        );
    }
    println!();
    for b in &built {
        println!("{}", b.archive.display());
        println!("{}", b.sbom.display());
    }
    println!(
        "\nload one with `podman load -i {}` (it is then localhost/{}:{version}), or run it with \
         `podman run oci-archive:…`; built in {:.0?}",
        built[0].archive.display(),
        built[0].name,
        started.elapsed()
    );
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Output of a git command in the workspace, trimmed.
fn git(args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root())
        .stderr(Stdio::null())
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!("`git {}` failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The images' timestamps: `SOURCE_DATE_EPOCH` if set, else the time of the last commit, so
/// that two builds of one commit give the same layers.
fn source_date_epoch() -> Result<i64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v.trim().parse().with_context(|| {
            format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")
        });
    }
    let ct = git(&["log", "-1", "--format=%ct"])?;
    ct.parse()
        .with_context(|| format!("`git log -1 --format=%ct` said {ct:?}"))
}

/// Installs Debian packages with apt-get (updating the lists once if the first try fails).
pub(crate) fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    eprintln!("==> apt-get install {} ({why})", packages.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let mut ok = install()
        .context("running apt-get (a Debian or Ubuntu machine is needed)")?
        .success();
    if !ok {
        let updated = Command::new("apt-get").args(["update", "-q"]).status()?;
        if !updated.success() {
            bail!("apt-get update failed (it needs root and a Debian mirror)");
        }
        ok = install()?.success();
    }
    if !ok {
        bail!(
            "could not install {} with apt-get; install them as root ({why})",
            packages.join(" ")
        );
    }
    Ok(())
}

pub(crate) fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .any(|d| d.join(cmd).is_file())
}

/// umoci, musl-gcc, file and openssl, installed from Debian's packages when missing.
fn ensure_debian_tools() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(cmd, _)| !on_path(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        apt_install(&missing, "the tools of `cargo xtask image`")?;
    }
    for (cmd, pkg) in DEBIAN_PACKAGES {
        if !on_path(cmd) {
            bail!("{cmd} is still missing after installing Debian's {pkg}");
        }
    }
    for (cmd, pkg) in [("dpkg-deb", "dpkg"), ("tar", "tar")] {
        if !on_path(cmd) {
            bail!("{cmd} is missing; the base layer needs Debian's {pkg}");
        }
    }
    Ok(())
}

/// The Rust standard library for [`TARGET`], added with rustup when missing.
fn ensure_rust_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root())
        .output();
    let installed = match installed {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => bail!(
            "`rustup target list --installed` failed; the images need Rust's {TARGET} \
             standard library: install rustup (https://rustup.rs) and run \
             `rustup target add {TARGET}`"
        ),
    };
    if installed.lines().any(|l| l.trim() == TARGET) {
        return Ok(());
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .current_dir(root())
        .status()
        .context("running rustup")?;
    if !added.success() {
        bail!(
            "`rustup target add {TARGET}` failed ({added}); the images' static binaries need \
             it. Run it by hand to see why (it downloads from static.rust-lang.org; with \
             RUSTUP_AUTO_INSTALL=0 or an offline machine, install the target where rustup can \
             reach its server)"
        );
    }
    Ok(())
}

/// Fails unless `file` calls the binary statically linked.
fn check_static(bin: &Path) -> Result<()> {
    let out = Command::new("file")
        .arg("--brief")
        .arg(bin)
        .output()
        .context("running file")?;
    let what = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !is_static(&what) {
        bail!(
            "{} is not statically linked (file says: {what}); the images have no libc",
            bin.display()
        );
    }
    eprintln!("image: {}: {what}", bin.display());
    Ok(())
}

/// What `file` says of a static executable (`static-pie linked` for Rust's musl default).
fn is_static(file_says: &str) -> bool {
    file_says.contains("ELF")
        && (file_says.contains("statically linked") || file_says.contains("static-pie linked"))
}

/// The CycloneDX SBOMs of the images' binaries (each binary's dependencies resolved for
/// [`TARGET`], build-only dependencies left out), written to `out/<image>-<version>.cdx.json`.
///
/// cargo-cyclonedx writes `<bin>_bin.cdx.json` beside the Cargo.toml of every workspace member;
/// the files this run made are moved out of the source tree at once.
fn write_sboms(cyclonedx: &Path, out: &Path, version: &str, epoch: i64) -> Result<Vec<PathBuf>> {
    let members = member_dirs()?;
    let sbom_files = |members: &[(String, PathBuf)]| -> Vec<PathBuf> {
        members
            .iter()
            .flat_map(|(_, dir)| fs::read_dir(dir).into_iter().flatten().flatten())
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with("_bin.cdx.json"))
            .collect()
    };
    let mut sources = Vec::new();
    for image in IMAGES {
        let (_, dir) = members
            .iter()
            .find(|(name, _)| name == image.package)
            .with_context(|| format!("no package {} in the workspace", image.package))?;
        sources.push(dir.join(format!("{}_bin.cdx.json", image.bin)));
    }
    let before = sbom_files(&members);
    let mut cmd = Command::new(cyclonedx);
    cmd.arg("cyclonedx")
        .args(SBOM_ARGS)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .current_dir(root());
    let status = run("cargo cyclonedx (one SBOM per binary)", &mut cmd);
    let made: Vec<PathBuf> = sbom_files(&members)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let mut written = Vec::new();
    let mut result = status;
    if result.is_ok() {
        for (image, src) in IMAGES.into_iter().zip(&sources) {
            let dest = out.join(format!("{}-{version}.cdx.json", image.name));
            result = fs::copy(src, &dest)
                .with_context(|| format!("copying {} to {}", src.display(), dest.display()))
                .and_then(|_| check_sbom(&dest, image));
            if result.is_err() {
                break;
            }
            written.push(dest);
        }
    }
    for p in &made {
        fs::remove_file(p).with_context(|| format!("removing {}", p.display()))?;
    }
    result.map(|()| written)
}

/// The arguments of `cargo cyclonedx` (the Dockerfile runs the same).
pub const SBOM_ARGS: [&str; 9] = [
    "--format",
    "json",
    "--spec-version",
    "1.5",
    "--target",
    TARGET,
    "--describe",
    "binaries",
    "--no-build-deps",
];

/// Fails unless `path` is a CycloneDX SBOM of the image's binary with components.
fn check_sbom(path: &Path, image: Image) -> Result<()> {
    let sbom: Value = serde_json::from_slice(&fs::read(path)?)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let components = sbom["components"].as_array().map_or(0, Vec::len);
    if sbom["bomFormat"] != "CycloneDX"
        || sbom["metadata"]["component"]["name"] != image.bin
        || components == 0
    {
        bail!(
            "{} is not a CycloneDX SBOM of {} with components",
            path.display(),
            image.bin
        );
    }
    eprintln!(
        "image: {}: CycloneDX {}, {components} components",
        path.display(),
        sbom["specVersion"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// The workspace's packages and their directories, from `cargo metadata`.
fn member_dirs() -> Result<Vec<(String, PathBuf)>> {
    let out = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let mut members = Vec::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        let (Some(name), Some(manifest)) = (p["name"].as_str(), p["manifest_path"].as_str()) else {
            continue;
        };
        let dir = Path::new(manifest)
            .parent()
            .context("a manifest has a directory")?;
        members.push((name.to_string(), dir.to_path_buf()));
    }
    Ok(members)
}

/// Writes a file with the given mode, making its directory.
fn put(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Makes a directory with the given mode.
fn dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The users and groups of the images, as in distroless: `root`, `nobody` and `nonroot`.
pub const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
                          nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
pub const GROUP: &str = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n";

/// The base layer's tree: the CA bundle and its copyright file from Debian's `ca-certificates`,
/// passwd and group, `/home/nonroot` (owned by 65532 in the layer), `/tmp`.
fn base_rootfs(rootfs: &Path) -> Result<()> {
    let ca = ca_bundle()?;
    dir(rootfs, 0o755)?;
    put(
        &rootfs.join("etc/ssl/certs/ca-certificates.crt"),
        &fs::read(ca.join("ca-certificates.crt"))?,
        0o644,
    )?;
    put(
        &rootfs.join("usr/share/doc/ca-certificates/copyright"),
        &fs::read(ca.join("copyright"))?,
        0o644,
    )?;
    put(&rootfs.join("etc/passwd"), PASSWD.as_bytes(), 0o644)?;
    put(&rootfs.join("etc/group"), GROUP.as_bytes(), 0o644)?;
    for d in [
        "etc",
        "etc/ssl",
        "etc/ssl/certs",
        "usr",
        "usr/share",
        "usr/share/doc",
    ] {
        dir(&rootfs.join(d), 0o755)?;
    }
    dir(&rootfs.join("usr/share/doc/ca-certificates"), 0o755)?;
    dir(&rootfs.join("home"), 0o755)?;
    dir(&rootfs.join("home/nonroot"), 0o700)?;
    dir(&rootfs.join("tmp"), 0o1777)?;
    Ok(())
}

/// The directory holding `ca-certificates.crt` and `copyright` of the candidate version of
/// Debian's `ca-certificates`, made once per version under the cache.
fn ca_bundle() -> Result<PathBuf> {
    let show = Command::new("apt-cache")
        .args(["show", "--no-all-versions", "ca-certificates"])
        .output()
        .context("running apt-cache (Debian's package lists are needed for the base layer)")?;
    let mut version = String::from_utf8_lossy(&show.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Version: ").map(str::to_string));
    if version.is_none() {
        run(
            "apt-get update (to find Debian's ca-certificates)",
            Command::new("apt-get").args(["update", "-q"]),
        )?;
        let show = Command::new("apt-cache")
            .args(["show", "--no-all-versions", "ca-certificates"])
            .output()?;
        version = String::from_utf8_lossy(&show.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Version: ").map(str::to_string));
    }
    let version = version.context("apt-cache knows no ca-certificates package")?;
    let dest = cache_dir()?.join("image-base").join(format!(
        "ca-certificates-{}",
        version.replace(['~', ':'], "_")
    ));
    if dest.join("ca-certificates.crt").is_file() && dest.join("copyright").is_file() {
        return Ok(dest);
    }
    let scratch = dest.with_extension(format!("tmp-{}", std::process::id()));
    if scratch.exists() {
        fs::remove_dir_all(&scratch)?;
    }
    fs::create_dir_all(&scratch)?;
    run(
        &format!("apt-get download ca-certificates={version}"),
        Command::new("apt-get")
            .args(["download", "-q"])
            .arg(format!("ca-certificates={version}"))
            .current_dir(&scratch),
    )?;
    let deb = fs::read_dir(&scratch)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let tree = scratch.join("tree");
    run(
        "dpkg-deb -x (ca-certificates)",
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree),
    )?;
    // What the package's postinst does on a Debian system: every Mozilla certificate enabled in
    // the configuration, then the package's own update-ca-certificates writes the bundle.
    let certs_dir = tree.join("usr/share/ca-certificates");
    let mut certs: Vec<String> = fs::read_dir(certs_dir.join("mozilla"))?
        .flatten()
        .map(|e| format!("mozilla/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".crt"))
        .collect();
    certs.sort();
    if certs.len() < 50 {
        bail!(
            "{} holds only {} certificates; not the package expected",
            deb.display(),
            certs.len()
        );
    }
    let conf = scratch.join("ca-certificates.conf");
    fs::write(&conf, certs.join("\n") + "\n")?;
    let etc = scratch.join("etc-ssl-certs");
    let (local, hooks) = (scratch.join("local"), scratch.join("hooks"));
    for d in [&etc, &local, &hooks] {
        fs::create_dir_all(d)?;
    }
    run(
        "update-ca-certificates (from the package, into a scratch directory)",
        Command::new("sh")
            .arg(tree.join("usr/sbin/update-ca-certificates"))
            .arg("--certsconf")
            .arg(&conf)
            .arg("--certsdir")
            .arg(&certs_dir)
            .arg("--localcertsdir")
            .arg(&local)
            .arg("--etccertsdir")
            .arg(&etc)
            .arg("--hooksdir")
            .arg(&hooks)
            .stdout(Stdio::null()),
    )?;
    let bundle = fs::read_to_string(etc.join("ca-certificates.crt"))?;
    let count = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    if count != certs.len() {
        bail!(
            "update-ca-certificates wrote {count} certificates, the package has {}",
            certs.len()
        );
    }
    fs::create_dir_all(&dest)?;
    fs::write(dest.join("ca-certificates.crt"), bundle)?;
    fs::copy(
        tree.join("usr/share/doc/ca-certificates/copyright"),
        dest.join("copyright"),
    )?;
    fs::write(dest.join("version"), format!("{version}\n"))?;
    fs::remove_dir_all(&scratch)?;
    eprintln!("image: CA bundle of ca-certificates {version}: {count} certificates");
    Ok(dest)
}

/// The application layer's tree: the binary and its SBOM.
fn app_rootfs(rootfs: &Path, bin: &Path, sbom: &Path, image: Image) -> Result<()> {
    dir(rootfs, 0o755)?;
    let rel_bin = BIN_DIR.trim_start_matches('/');
    put(
        &rootfs.join(rel_bin).join(image.bin),
        &fs::read(bin).with_context(|| format!("reading {}", bin.display()))?,
        0o755,
    )?;
    put(
        &rootfs
            .join(SBOM_DIR.trim_start_matches('/'))
            .join(format!("{}.cdx.json", image.name)),
        &fs::read(sbom)?,
        0o644,
    )?;
    for d in [
        "usr",
        "usr/local",
        rel_bin,
        SBOM_DIR.trim_start_matches('/'),
    ] {
        dir(&rootfs.join(d), 0o755)?;
    }
    Ok(())
}

/// GNU tar's options for a reproducible layer: sorted names, one time, numeric owners, no
/// access or change times.
fn tar_reproducible(epoch: i64) -> Vec<String> {
    vec![
        "--sort=name".into(),
        "--format=posix".into(),
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime".into(),
        format!("--mtime=@{epoch}"),
        "--numeric-owner".into(),
    ]
}

/// An uncompressed layer tar of `rootfs`: everything owned by root, except `home/nonroot`
/// (owned by 65532) when it exists.
fn layer_tar(rootfs: &Path, tar: &Path, epoch: i64) -> Result<()> {
    let home = Path::new("./home/nonroot");
    let mut create = Command::new("tar");
    create
        .args(tar_reproducible(epoch))
        .args(["--owner=0", "--group=0", "--exclude", "./home/nonroot"])
        .arg("--create")
        .arg("--file")
        .arg(tar)
        .arg("-C")
        .arg(rootfs)
        .arg(".");
    run(&format!("tar {}", tar.display()), &mut create)?;
    if rootfs.join(home).exists() {
        let (uid, gid) = USER.split_once(':').context("USER is uid:gid")?;
        let mut append = Command::new("tar");
        append
            .args(tar_reproducible(epoch))
            .arg(format!("--owner={uid}"))
            .arg(format!("--group={gid}"))
            .args(["--no-recursion", "--append", "--file"])
            .arg(tar)
            .arg("-C")
            .arg(rootfs)
            .arg(home);
        run(&format!("tar --append {}", home.display()), &mut append)?;
    }
    Ok(())
}

/// The labels of an image.
struct Labels<'a> {
    version: &'a str,
    revision: &'a str,
    source: &'a str,
    created: &'a str,
}

/// The OCI labels (and manifest annotations) of an image; the Dockerfile sets the same keys.
fn oci_labels(image: Image, l: &Labels) -> Vec<(&'static str, String)> {
    vec![
        ("org.opencontainers.image.title", image.name.to_string()),
        (
            "org.opencontainers.image.description",
            image.description.to_string(),
        ),
        ("org.opencontainers.image.source", l.source.to_string()),
        ("org.opencontainers.image.version", l.version.to_string()),
        ("org.opencontainers.image.revision", l.revision.to_string()),
        ("org.opencontainers.image.created", l.created.to_string()),
        (
            "org.opencontainers.image.licenses",
            "Apache-2.0".to_string(),
        ),
    ]
}

fn umoci(what: &str, args: &[String]) -> Result<()> {
    run(&format!("umoci {what}"), Command::new("umoci").args(args))
}

/// The OCI layout of one image: the base layer, the application layer, the configuration.
fn umoci_image(layout: &Path, image: Image, base: &Path, app: &Path, l: &Labels) -> Result<()> {
    let layout_s = layout.display().to_string();
    // The tag `<name>:<version>` becomes the index's `org.opencontainers.image.ref.name`, the
    // name `podman load` gives the image (`localhost/<name>:<version>`).
    let reference = format!("{layout_s}:{}:{}", image.name, l.version);
    umoci("init", &["init".into(), "--layout".into(), layout_s])?;
    umoci("new", &["new".into(), "--image".into(), reference.clone()])?;
    let layers = [
        (
            base,
            "base: CA bundle from Debian's ca-certificates, passwd and group (nonroot 65532)",
        ),
        (app, "the binary and its SBOM"),
    ];
    for (tar, comment) in layers {
        umoci(
            &format!("raw add-layer {}", tar.display()),
            &[
                "raw".into(),
                "add-layer".into(),
                "--image".into(),
                reference.clone(),
                "--history.created".into(),
                l.created.to_string(),
                "--history.created_by".into(),
                "cargo xtask image".into(),
                "--history.comment".into(),
                comment.into(),
                tar.display().to_string(),
            ],
        )?;
    }
    let mut config: Vec<String> = vec![
        "config".into(),
        "--image".into(),
        reference,
        "--no-history".into(),
        "--created".into(),
        l.created.to_string(),
        "--os".into(),
        "linux".into(),
        "--architecture".into(),
        "amd64".into(),
        "--config.user".into(),
        USER.into(),
        "--config.workingdir".into(),
        "/home/nonroot".into(),
        "--config.entrypoint".into(),
        format!("{BIN_DIR}/{}", image.bin),
    ];
    for c in image.cmd {
        config.extend(["--config.cmd".into(), (*c).into()]);
    }
    for e in ENV {
        config.extend(["--config.env".into(), e.into()]);
    }
    for (k, v) in oci_labels(image, l) {
        config.extend(["--config.label".into(), format!("{k}={v}")]);
        config.extend(["--manifest.annotation".into(), format!("{k}={v}")]);
    }
    umoci("config", &config)?;
    umoci(
        "gc",
        &["gc".into(), "--layout".into(), layout.display().to_string()],
    )?;
    Ok(())
}

/// The OCI archive: the layout as one tar (what `podman load` and `oci-archive:` read).
fn archive_layout(layout: &Path, archive: &Path, epoch: i64) -> Result<()> {
    let mut tar = Command::new("tar");
    tar.args(tar_reproducible(epoch))
        .args(["--owner=0", "--group=0", "--create", "--file"])
        .arg(archive)
        .arg("-C")
        .arg(layout)
        .arg(".");
    run(&format!("tar {}", archive.display()), &mut tar)
}

/// The JSON of the image's manifest in the layout.
fn manifest(layout: &Path) -> Result<Value> {
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json names no manifest")?;
    blob(layout, digest)
}

fn blob(layout: &Path, digest: &str) -> Result<Value> {
    let (algo, hex) = digest
        .split_once(':')
        .with_context(|| format!("bad digest {digest}"))?;
    let path = layout.join("blobs").join(algo).join(hex);
    serde_json::from_slice(&fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
        .with_context(|| format!("{} is not JSON", path.display()))
}

/// The compressed size of the image: its gzip layers.
fn layer_bytes(layout: &Path) -> Result<u64> {
    let m = manifest(layout)?;
    Ok(m["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["size"].as_u64())
        .sum())
}

/// Unpacks the image with umoci and checks what it runs: the configuration (user 65532,
/// entrypoint, labels), the rootfs (the binary, the CA bundle, the SBOM, no shell, no package
/// manager) and the binary itself (`--version` from the unpacked rootfs). Returns the
/// unpacked size.
fn verify(layout: &Path, bundle: &Path, image: Image, version: &str) -> Result<u64> {
    let rootless = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() != "0")
        .unwrap_or(true);
    let mut args: Vec<String> = vec!["unpack".into()];
    if rootless {
        args.push("--rootless".into());
    }
    args.extend([
        "--image".into(),
        format!("{}:{}:{version}", layout.display(), image.name),
        bundle.display().to_string(),
    ]);
    umoci("unpack", &args)?;

    let m = manifest(layout)?;
    let config = blob(
        layout,
        m["config"]["digest"]
            .as_str()
            .context("the manifest names no config")?,
    )?;
    let c = &config["config"];
    if c["User"] != USER {
        bail!(
            "{}: the image's user is {}, not {USER}",
            image.name,
            c["User"]
        );
    }
    let entrypoint = format!("{BIN_DIR}/{}", image.bin);
    if c["Entrypoint"][0] != entrypoint.as_str() {
        bail!("{}: the entrypoint is {}", image.name, c["Entrypoint"]);
    }
    for key in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
    ] {
        if c["Labels"][key].as_str().is_none_or(str::is_empty) {
            bail!("{}: the label {key} is missing", image.name);
        }
    }

    let rootfs = bundle.join("rootfs");
    for present in [
        entrypoint.trim_start_matches('/').to_string(),
        "etc/ssl/certs/ca-certificates.crt".into(),
        "etc/passwd".into(),
        format!(
            "{}/{}.cdx.json",
            SBOM_DIR.trim_start_matches('/'),
            image.name
        ),
    ] {
        if !rootfs.join(&present).is_file() {
            bail!("{}: /{present} is missing from the image", image.name);
        }
    }
    for absent in [
        "bin/sh",
        "usr/bin/sh",
        "bin/busybox",
        "usr/bin/apt",
        "usr/bin/dpkg",
    ] {
        if rootfs.join(absent).symlink_metadata().is_ok() {
            bail!("{}: the image holds /{absent}", image.name);
        }
    }
    let out = Command::new(rootfs.join(entrypoint.trim_start_matches('/')))
        .arg("--version")
        .env_clear()
        .output()
        .with_context(|| format!("running {} --version from the unpacked image", image.bin))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !said.contains(version) {
        bail!(
            "{}: `{} --version` from the unpacked image said {said:?} ({})",
            image.name,
            image.bin,
            out.status
        );
    }
    eprintln!(
        "image: {}: `{} --version` from the unpacked rootfs: {said}",
        image.name, image.bin
    );
    tree_bytes(&rootfs)
}

/// The bytes of the regular files under `dir`.
fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        if meta.is_dir() {
            total += tree_bytes(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERFILE: &str = include_str!("../../Dockerfile");

    /// The Dockerfile's instructions of one stage (`FROM … AS name` to the next `FROM`), with
    /// continuation lines joined.
    fn stage(name: &str) -> String {
        let joined = DOCKERFILE.replace("\\\n", " ");
        let mut out = String::new();
        let mut inside = false;
        for line in joined.lines() {
            let t = line.trim();
            if t.starts_with("FROM ") {
                inside = t.ends_with(&format!(" AS {name}"));
            }
            if inside && !t.starts_with('#') {
                out.push_str(t);
                out.push('\n');
            }
        }
        assert!(!out.is_empty(), "the Dockerfile has no stage {name}");
        out
    }

    #[test]
    fn the_dockerfile_builds_what_xtask_builds() {
        let joined = DOCKERFILE.replace("\\\n", " ");
        let cargo_build = format!("cargo {}", build_args().join(" "));
        let squeezed: String = joined.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            squeezed.contains(&cargo_build),
            "the Dockerfile does not run `{cargo_build}`"
        );
        assert!(squeezed.contains(&format!("CC_{}={MUSL_CC}", TARGET.replace('-', "_"))));
        assert!(squeezed.contains(&format!("rustup target add {TARGET}")));
        assert!(squeezed.contains(&format!(
            "cargo install cargo-cyclonedx --locked --version {CYCLONEDX_VERSION}"
        )));
        assert!(
            squeezed.contains(&format!("cargo cyclonedx {}", SBOM_ARGS.join(" "))),
            "the Dockerfile's SBOMs are not made as xtask makes them"
        );
        for image in IMAGES {
            let dir = if image.package == "fledge-controller" {
                "crates/controller"
            } else {
                "crates/loadgen"
            };
            assert!(squeezed.contains(&format!(
                "cp {dir}/{}_bin.cdx.json /out/sbom/{}.cdx.json",
                image.bin, image.name
            )));
        }
        assert!(squeezed.contains(&format!("ARG SOURCE={DEFAULT_SOURCE}")));
        assert!(squeezed.contains(&format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"))));
    }

    #[test]
    fn each_image_is_a_dockerfile_target_with_the_same_user_entrypoint_and_labels() {
        let labels = Labels {
            version: "v",
            revision: "r",
            source: "s",
            created: "c",
        };
        for image in IMAGES {
            let s = stage(image.name);
            assert!(
                s.contains(&format!("USER {USER}")),
                "stage {} does not run as {USER}",
                image.name
            );
            let entrypoint = format!("ENTRYPOINT [\"{BIN_DIR}/{}\"]", image.bin);
            assert!(
                s.contains(&entrypoint),
                "stage {}: no {entrypoint}",
                image.name
            );
            let cmd = format!(
                "CMD [{}]",
                image
                    .cmd
                    .iter()
                    .map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            assert!(s.contains(&cmd), "stage {}: no {cmd}", image.name);
            assert!(s.contains(&format!("{BIN_DIR}/{}", image.bin)));
            assert!(s.contains(&format!("{SBOM_DIR}/{}.cdx.json", image.name)));
            for (key, _) in oci_labels(image, &labels) {
                if key == "org.opencontainers.image.created" {
                    continue; // Docker's build metadata says when; the Dockerfile pins nothing.
                }
                assert!(
                    s.contains(&format!("{key}=")),
                    "stage {} lacks the label {key}",
                    image.name
                );
            }
            assert!(
                s.contains(&format!(
                    "org.opencontainers.image.title=\"{}\"",
                    image.name
                )),
                "stage {}: wrong title",
                image.name
            );
            for env in ENV {
                let (k, _) = env.split_once('=').unwrap();
                // distroless sets PATH and SSL_CERT_FILE itself; the Dockerfile may too.
                if s.contains(&format!("ENV {k}")) {
                    assert!(s.contains(env), "stage {}: {k} differs", image.name);
                }
            }
        }
        assert!(
            DOCKERFILE.contains("distroless/static-debian12:nonroot"),
            "the Dockerfile's base is not distroless static nonroot"
        );
    }

    #[test]
    fn build_args_name_every_package_and_binary_once() {
        let args = build_args();
        assert_eq!(
            args[..5],
            ["build", "--release", "--locked", "--target", TARGET]
        );
        assert_eq!(args.len(), 5 + 4 * IMAGES.len());
        for image in IMAGES {
            let wanted = ["-p", image.package, "--bin", image.bin];
            assert_eq!(
                args.windows(4).filter(|w| *w == wanted).count(),
                1,
                "{wanted:?} in {args:?}"
            );
        }
    }

    #[test]
    fn file_output_decides_static() {
        assert!(is_static(
            "ELF 64-bit LSB pie executable, x86-64, version 1 (SYSV), static-pie linked, stripped"
        ));
        assert!(is_static(
            "ELF 64-bit LSB executable, x86-64, version 1 (SYSV), statically linked, stripped"
        ));
        assert!(!is_static(
            "ELF 64-bit LSB pie executable, x86-64, version 1 (SYSV), dynamically linked, \
             interpreter /lib64/ld-linux-x86-64.so.2, for GNU/Linux 3.2.0, stripped"
        ));
    }

    #[test]
    fn passwd_and_group_name_nonroot_as_the_images_user() {
        let (uid, gid) = USER.split_once(':').unwrap();
        assert!(
            PASSWD
                .lines()
                .any(|l| l.starts_with(&format!("nonroot:x:{uid}:{gid}:")))
        );
        assert!(GROUP.lines().any(|l| l == format!("nonroot:x:{gid}:")));
        assert!(PASSWD.lines().all(|l| l.ends_with(":/sbin/nologin")));
    }
}
