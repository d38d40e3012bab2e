//! A real Git server on loopback for the ledger tests: `git daemon` with receive-pack enabled,
//! serving bare repositories from a directory of the test's own. It can be stopped and started
//! again on the same port, as an outage.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{free_port, root};

/// `git daemon` serving `base/*.git`, killed when dropped.
pub struct GitDaemon {
    /// Where the bare repositories are.
    pub base: PathBuf,
    /// The port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl GitDaemon {
    /// A daemon over a fresh directory `target/e2e-logs/git-<name>`.
    pub fn start_new(name: &str) -> anyhow::Result<GitDaemon> {
        let base = root().join("target/e2e-logs").join(format!("git-{name}"));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base)?;
        let mut d = GitDaemon {
            base,
            port: free_port(),
            child: None,
        };
        d.start()?;
        Ok(d)
    }

    /// Starts it (again) on its port and waits until it accepts connections.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.base.join("daemon.log"))?;
        // git-daemon itself, not `git daemon`: killing the `git` wrapper would leave the
        // daemon it started serving.
        let exec_path = git(&self.base, &["--exec-path"])?;
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--enable=receive-pack")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg(format!("--base-path={}", self.base.display()))
            .arg(&self.base)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting git daemon (part of Debian's git package)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("git daemon did not listen on 127.0.0.1:{}", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Creates the bare repository `name.git` with one commit holding `files` on `main`;
    /// returns its `git://` URL.
    pub fn create_repo(&self, name: &str, files: &[(&str, &str)]) -> anyhow::Result<String> {
        let bare = self.base.join(format!("{name}.git"));
        git(
            &self.base,
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                &bare.to_string_lossy(),
            ],
        )?;
        let work = self.base.join(format!("{name}-seed"));
        git(
            &self.base,
            &[
                "clone",
                "-q",
                &bare.to_string_lossy(),
                &work.to_string_lossy(),
            ],
        )?;
        for (path, text) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap())?;
            std::fs::write(p, text)?;
        }
        git(&work, &["add", "-A"])?;
        git(&work, &["commit", "-q", "-m", "the app"])?;
        git(&work, &["push", "-q", "origin", "HEAD:main"])?;
        Ok(format!("git://127.0.0.1:{}/{name}.git", self.port))
    }

    /// A fresh clone of `name.git` (its `main`) for reading.
    pub fn clone_repo(&self, name: &str) -> anyhow::Result<Clone> {
        let dir = self
            .base
            .join(format!("{name}-read-{}", crate::free_port()));
        git(
            &self.base,
            &[
                "clone",
                "-q",
                &self.base.join(format!("{name}.git")).to_string_lossy(),
                &dir.to_string_lossy(),
            ],
        )?;
        Ok(Clone { dir })
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A clone of a test repository.
pub struct Clone {
    /// Its working tree.
    pub dir: PathBuf,
}

impl Clone {
    /// `git log` subjects and bodies of `main`, newest first, one string per commit.
    pub fn log(&self) -> anyhow::Result<Vec<String>> {
        let out = git(&self.dir, &["log", "--format=%B%x00"])?;
        Ok(out
            .split('\0')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect())
    }

    /// The files under `dir` (relative to the tree), sorted.
    pub fn files_under(&self, dir: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&self.dir) {
                    out.push(rel.to_string_lossy().to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// A file's text.
    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.dir.join(path)).unwrap_or_default()
    }
}

/// Runs git in `dir`; stdout.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!(
            "git {args:?} in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}
