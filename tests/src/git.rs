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
        static CLONES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CLONES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.base.join(format!("{name}-read-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
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

/// `git http-backend` behind a small HTTP server on loopback that asks for basic
/// authentication (`user` / `password`), serving the same repositories as a [`GitDaemon`].
pub struct GitHttp {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl GitHttp {
    /// Serves `base` (a daemon's directory) with the credentials `user`/`password`.
    pub async fn start(base: &Path, user: &str, password: &str) -> anyhow::Result<GitHttp> {
        use base64::Engine as _;
        use http_body_util::{BodyExt, Full};
        use hyper::body::Bytes;
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let exec = git(base, &["--exec-path"])?.trim().to_string();
        let backend = Path::new(&exec).join("git-http-backend");
        let root = base.to_path_buf();
        let user = user.to_string();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (expected, backend, root, user) = (
                    expected.clone(),
                    backend.clone(),
                    root.clone(),
                    user.clone(),
                );
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (expected, backend, root, user) = (
                            expected.clone(),
                            backend.clone(),
                            root.clone(),
                            user.clone(),
                        );
                        async move {
                            let authorized = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                == Some(expected.as_str());
                            if !authorized {
                                let mut resp = hyper::Response::new(Full::new(Bytes::from(
                                    "authentication required\n",
                                )));
                                *resp.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                                resp.headers_mut().insert(
                                    "www-authenticate",
                                    hyper::header::HeaderValue::from_static("Basic realm=\"git\""),
                                );
                                return Ok::<_, std::convert::Infallible>(resp);
                            }
                            let method = req.method().to_string();
                            let path = req.uri().path().to_string();
                            let query = req.uri().query().unwrap_or("").to_string();
                            let header = |k: &str| {
                                req.headers()
                                    .get(k)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_string()
                            };
                            let (content_type, encoding, protocol) = (
                                header("content-type"),
                                header("content-encoding"),
                                header("git-protocol"),
                            );
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let out = cgi(
                                &backend,
                                &root,
                                &[
                                    ("REQUEST_METHOD", method.as_str()),
                                    ("PATH_INFO", path.as_str()),
                                    ("QUERY_STRING", query.as_str()),
                                    ("CONTENT_TYPE", content_type.as_str()),
                                    ("HTTP_CONTENT_ENCODING", encoding.as_str()),
                                    ("GIT_PROTOCOL", protocol.as_str()),
                                    ("REMOTE_USER", user.as_str()),
                                ],
                                &body,
                            )
                            .await;
                            Ok(out)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(GitHttp {
            url: format!("http://{addr}"),
            task,
        })
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `git http-backend` as a CGI program and turns its output into a response.
async fn cgi(
    backend: &Path,
    root: &Path,
    env: &[(&str, &str)],
    body: &[u8],
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use tokio::io::AsyncWriteExt;

    let fail = |m: String| {
        let mut r = hyper::Response::new(Full::new(Bytes::from(m)));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    };
    let mut cmd = tokio::process::Command::new(backend);
    cmd.env_clear()
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        if !v.is_empty() {
            cmd.env(k, v);
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("git http-backend: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(body).await;
    }
    let out = match child.wait_with_output().await {
        Ok(o) => o.stdout,
        Err(e) => return fail(format!("git http-backend: {e}")),
    };
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        return fail("git http-backend wrote no headers".into());
    };
    let head = String::from_utf8_lossy(&out[..end]).to_string();
    let mut resp = hyper::Response::new(Full::new(Bytes::copy_from_slice(&out[end + sep..])));
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            let code = v.split_whitespace().next().and_then(|c| c.parse().ok());
            *resp.status_mut() = code
                .and_then(|c| hyper::StatusCode::from_u16(c).ok())
                .unwrap_or(hyper::StatusCode::OK);
        } else if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::try_from(k.trim()),
            hyper::header::HeaderValue::try_from(v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

/// OpenSSH's `sshd` (Debian's `openssh-server`, which `cargo xtask test` installs when missing)
/// on a loopback port, accepting one key for the current user, serving the repositories by
/// absolute path. Killed when dropped.
pub struct GitSsh {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The client's private key (OpenSSH format) that the server accepts.
    pub client_key: String,
    /// A `known_hosts` line for the server's host key.
    pub known_hosts: String,
    /// The user to log in as.
    pub user: String,
    child: Child,
}

/// Where Debian's `openssh-server` puts the daemon.
pub const SSHD: &str = "/usr/sbin/sshd";

impl GitSsh {
    /// Starts sshd with fresh host and client keys in `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<GitSsh> {
        if !Path::new(SSHD).exists() {
            bail!(
                "{SSHD} is missing: the Git-over-SSH tests need OpenSSH's server; `cargo xtask \
                 test` installs Debian's openssh-server, or run `apt-get install \
                 openssh-server`"
            );
        }
        std::fs::create_dir_all(dir)?;
        // sshd's privilege separation needs its empty directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let keygen = |name: &str| -> anyhow::Result<()> {
            let path = dir.join(name);
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("pub"));
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(&path)
                .status()?
                .success();
            if !ok {
                bail!("ssh-keygen failed");
            }
            Ok(())
        };
        keygen("host_key")?;
        keygen("client_key")?;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(dir.join("client_key.pub"), &authorized)?;
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
                 PidFile {pid}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n\
                 StrictModes no\nLogLevel ERROR\n",
                host = dir.join("host_key").display(),
                auth = authorized.display(),
                pid = dir.join("sshd.pid").display(),
            ),
        )?;
        let log = std::fs::File::create(dir.join("sshd.log"))?;
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting sshd")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "sshd did not listen on 127.0.0.1:{port}: {}",
                    std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub"))?;
        let mut parts = host_pub.split_whitespace();
        let (kind, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output()?.stdout)
            .trim()
            .to_string();
        Ok(GitSsh {
            port,
            client_key: std::fs::read_to_string(dir.join("client_key"))?,
            known_hosts: format!("[127.0.0.1]:{port} {kind} {key}\n"),
            user,
            child,
        })
    }

    /// The `ssh://` URL of a bare repository by its absolute path.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }
}

impl Drop for GitSsh {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
