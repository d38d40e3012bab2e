//! A Git remote worked through the `git` command: fetch, change a file, commit, push, and on a
//! rejected push start over on the fresh head. Nothing is ever force-pushed.
//!
//! Why the `git` command and not a library: `gix` cannot push yet; `git2` (libgit2) would bring
//! a C build, OpenSSL beside our rustls, and an SSH transport (libssh2) that knows neither
//! modern key types well nor `known_hosts` the way OpenSSH does. The `git` command speaks every
//! transport (ssh, https, git, file) exactly as the user's own Git does, and `ssh` checks host
//! keys against the `known_hosts` given. Credentials reach it only through the environment and
//! files readable by this process alone, never through its command line or the remote URL.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// How to authenticate to a remote.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub enum GitAuth {
    /// None (public `git://`, `file://`, or a server that asks nothing).
    #[default]
    None,
    /// An SSH private key and the `known_hosts` lines the server's key must match.
    Ssh {
        /// The private key (OpenSSH format).
        identity: Vec<u8>,
        /// `known_hosts` lines.
        known_hosts: Vec<u8>,
    },
    /// HTTP basic authentication (a user and a token).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GitAuth::None => "None",
            GitAuth::Ssh { .. } => "Ssh(..)",
            GitAuth::Basic { .. } => "Basic(..)",
        })
    }
}

/// A remote branch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Remote {
    /// The URL, without credentials.
    pub url: String,
    /// The branch.
    pub branch: String,
    /// Credentials.
    pub auth: GitAuth,
}

/// Who commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Author and committer name.
    pub name: String,
    /// Author and committer email.
    pub email: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            name: "fledge".into(),
            email: "fledge@localhost".into(),
        }
    }
}

/// What went wrong with Git, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// The remote could not be reached or failed on its side: try again later.
    #[error("{0}")]
    Unreachable(String),
    /// The remote refused who we are, or its host key is unknown: a person must fix the
    /// Secret or `known_hosts`.
    #[error("{0}")]
    Auth(String),
    /// The push lost a race with another writer: fetch and try again.
    #[error("{0}")]
    Rejected(String),
    /// Anything else (a bad repository, a bug): with what `git` said.
    #[error("{0}")]
    Other(String),
}

impl GitError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, GitError::Unreachable(_) | GitError::Rejected(_))
    }
}

/// The URL as it may appear in messages: no user information.
pub fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => url.split('@').next_back().unwrap_or(url).to_string(),
    }
}

/// A working copy of one remote branch, kept under `dir` between uses.
pub struct Workdir {
    dir: PathBuf,
    secrets: PathBuf,
    remote: Remote,
    identity: Identity,
    timeout: Duration,
}

/// The outcome of [`Workdir::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// A commit was pushed; its id.
    Pushed(String),
    /// The change was already in the branch: nothing to do.
    Unchanged,
}

impl Workdir {
    /// A working copy of `remote` in `dir` (created when missing). `secrets` is a private
    /// directory for key files.
    pub fn new(dir: PathBuf, secrets: PathBuf, remote: Remote, identity: Identity) -> Workdir {
        Workdir {
            dir,
            secrets,
            remote,
            identity,
            timeout: Duration::from_secs(60),
        }
    }

    /// Each git command gives up after `timeout` (default 60 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Workdir {
        self.timeout = timeout;
        self
    }

    /// The working tree.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Runs `git args…` in the working copy; stdout on success.
    async fn git(&self, args: &[&str]) -> Result<String, GitError> {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", &self.identity.name)
            .env("GIT_AUTHOR_EMAIL", &self.identity.email)
            .env("GIT_COMMITTER_NAME", &self.identity.name)
            .env("GIT_COMMITTER_EMAIL", &self.identity.email)
            // No system or user configuration changes what fledge does.
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.secrets)
            .env("LC_ALL", "C");
        match &self.remote.auth {
            GitAuth::None => {
                cmd.env(
                    "GIT_SSH_COMMAND",
                    "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes",
                );
            }
            GitAuth::Ssh { .. } => {
                let key = self.secrets.join("identity");
                let hosts = self.secrets.join("known_hosts");
                cmd.env(
                    "GIT_SSH_COMMAND",
                    format!(
                        "ssh -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={} -i {}",
                        hosts.display(),
                        key.display()
                    ),
                );
            }
            GitAuth::Basic { username, password } => {
                use base64::Engine as _;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                cmd.env("GIT_CONFIG_COUNT", "1")
                    .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                    .env(
                        "GIT_CONFIG_VALUE_0",
                        format!("Authorization: Basic {token}"),
                    );
            }
        }
        let out = match tokio::time::timeout(self.timeout, cmd.output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => return Err(GitError::Other(format!("cannot run git: {e}"))),
            Err(_) => {
                return Err(GitError::Unreachable(format!(
                    "git {} on {} took longer than {}s",
                    args.first().unwrap_or(&""),
                    shown(&self.remote.url),
                    self.timeout.as_secs()
                )));
            }
        };
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        Err(classify(
            args.first().copied().unwrap_or(""),
            &shown(&self.remote.url),
            &String::from_utf8_lossy(&out.stderr),
        ))
    }

    /// Writes the key files of the remote's credentials (mode 0600).
    fn write_secrets(&self) -> Result<(), GitError> {
        let io = |e: std::io::Error| GitError::Other(format!("cannot write Git key files: {e}"));
        std::fs::create_dir_all(&self.secrets).map_err(io)?;
        std::fs::set_permissions(&self.secrets, std::fs::Permissions::from_mode(0o700))
            .map_err(io)?;
        if let GitAuth::Ssh {
            identity,
            known_hosts,
        } = &self.remote.auth
        {
            for (name, data) in [("identity", identity), ("known_hosts", known_hosts)] {
                let path = self.secrets.join(name);
                let mut bytes = data.clone();
                if !bytes.ends_with(b"\n") {
                    bytes.push(b'\n');
                }
                std::fs::write(&path, bytes).map_err(io)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
        }
        Ok(())
    }

    /// Brings the working copy to the remote branch's head (an empty branch when the remote has
    /// none yet). Local changes are thrown away.
    pub async fn sync(&self) -> Result<(), GitError> {
        self.write_secrets()?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| GitError::Other(format!("cannot create the working copy: {e}")))?;
        if !self.dir.join(".git").exists() {
            self.git(&["init", "-q"]).await?;
        }
        let _ = self.git(&["remote", "remove", "origin"]).await;
        self.git(&["remote", "add", "origin", &self.remote.url])
            .await?;
        let branch = &self.remote.branch;
        let head = format!("refs/heads/{branch}");
        let exists = !self
            .git(&["ls-remote", "--heads", "origin", &head])
            .await?
            .is_empty();
        let remote_ref = format!("refs/remotes/origin/{branch}");
        if exists {
            let refspec = format!("+{head}:{remote_ref}");
            self.git(&["fetch", "-q", "--prune", "origin", &refspec])
                .await?;
            self.git(&["checkout", "-q", "-B", branch, &remote_ref])
                .await?;
            self.git(&["reset", "-q", "--hard", &remote_ref]).await?;
        } else {
            // A remote without the branch yet: start it.
            self.git(&["checkout", "-q", "--orphan", branch]).await?;
            let _ = self.git(&["rm", "-rq", "--cached", "."]).await;
        }
        self.git(&["clean", "-qfdx"]).await?;
        Ok(())
    }

    /// Applies `change` to a fresh copy of the branch, commits it with `message` and pushes;
    /// when the push loses a race, starts over on the new head (at most `attempts` times, with
    /// backoff). `change` returns whether it changed anything; nothing changed means nothing to
    /// commit.
    pub async fn commit(
        &self,
        message: &str,
        attempts: usize,
        change: &(dyn Fn(&Path) -> Result<bool, String> + Send + Sync),
    ) -> Result<Committed, GitError> {
        self.commit_to(message, attempts, None, change).await
    }

    /// Like [`Workdir::commit`], pushing to `push_to` (another branch, for a pull request)
    /// instead of the working branch when given.
    pub async fn commit_to(
        &self,
        message: &str,
        attempts: usize,
        push_to: Option<&str>,
        change: &(dyn Fn(&Path) -> Result<bool, String> + Send + Sync),
    ) -> Result<Committed, GitError> {
        use backon::{ExponentialBuilder, Retryable};
        let attempt = || async {
            self.sync().await?;
            let changed = change(&self.dir).map_err(GitError::Other)?;
            if !changed {
                return Ok(Committed::Unchanged);
            }
            self.git(&["add", "-A"]).await?;
            if self.git(&["diff", "--cached", "--quiet"]).await.is_ok() {
                return Ok(Committed::Unchanged);
            }
            self.git(&["commit", "-q", "--no-verify", "-m", message])
                .await?;
            let head = self.git(&["rev-parse", "HEAD"]).await?;
            let target = format!("HEAD:refs/heads/{}", push_to.unwrap_or(&self.remote.branch));
            self.git(&["push", "-q", "--porcelain", "origin", &target])
                .await?;
            Ok(Committed::Pushed(head))
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(attempts),
            )
            .when(|e: &GitError| matches!(e, GitError::Rejected(_)))
            .await
    }

    /// The first commit (oldest) on the branch whose change to `path` added `text`, if any.
    pub async fn commit_introducing(&self, path: &str, text: &str) -> Option<String> {
        let pickaxe = format!("-S{text}");
        let out = self
            .git(&["log", "--format=%H", "--reverse", &pickaxe, "--", path])
            .await
            .ok()?;
        out.lines().last().map(str::to_string)
    }

    /// When `commit` was committed.
    pub async fn commit_time(&self, commit: &str) -> Option<jiff::Timestamp> {
        self.git(&["show", "-s", "--format=%cI", commit])
            .await
            .ok()?
            .parse()
            .ok()
    }

    /// Reads a file of the working copy.
    pub fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(path)).ok()
    }
}

/// Classifies what `git <verb>` wrote to stderr; the message keeps git's words (they never hold
/// credentials: the URL has none and keys live in files).
pub fn classify(verb: &str, url: &str, stderr: &str) -> GitError {
    let text: String = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("hint:"))
        .collect::<Vec<_>>()
        .join("; ");
    let lower = text.to_ascii_lowercase();
    let message = format!("git {verb} {url}: {text}");
    if lower.contains("host key verification failed")
        || lower.contains("permission denied")
        || lower.contains("authentication failed")
        || lower.contains("could not read username")
        || lower.contains("returned error: 401")
        || lower.contains("returned error: 403")
        || lower.contains("invalid format")
        || lower.contains("no such identity")
    {
        GitError::Auth(message)
    } else if lower.contains("[rejected]")
        || lower.contains("non-fast-forward")
        || lower.contains("fetch first")
        || lower.contains("failed to push some refs")
        || lower.contains("cannot lock ref")
    {
        GitError::Rejected(message)
    } else if lower.contains("could not read from remote")
        || lower.contains("unable to access")
        || lower.contains("connection refused")
        || lower.contains("unable to connect")
        || lower.contains("could not resolve")
        || lower.contains("timed out")
        || lower.contains("connection reset")
        || lower.contains("the remote end hung up")
        || lower.contains("returned error: 5")
    {
        GitError::Unreachable(message)
    } else {
        GitError::Other(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh bare repository (file://) and a directory for working copies.
    fn bare(name: &str) -> (String, PathBuf) {
        let root =
            std::env::temp_dir().join(format!("fledge-git-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let repo = root.join("remote.git");
        let ok = std::process::Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&repo)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        (format!("file://{}", repo.display()), root)
    }

    fn workdir(url: &str, root: &Path, who: &str) -> Workdir {
        Workdir::new(
            root.join(who).join("tree"),
            root.join(who).join("keys"),
            Remote {
                url: url.into(),
                branch: "main".into(),
                auth: GitAuth::None,
            },
            Identity::default(),
        )
    }

    fn write(file: &'static str, text: &'static str) -> impl Fn(&Path) -> Result<bool, String> {
        move |dir: &Path| {
            let p = dir.join(file);
            if std::fs::read_to_string(&p).is_ok_and(|t| t == text) {
                return Ok(false);
            }
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
            Ok(true)
        }
    }

    async fn log(url: &str, root: &Path) -> Vec<String> {
        let w = workdir(url, root, "reader");
        w.sync().await.unwrap();
        w.git(&["log", "--format=%s"])
            .await
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    #[tokio::test]
    async fn commits_start_an_empty_branch_and_repeat_as_no_ops() {
        let (url, root) = bare("empty");
        let w = workdir(&url, &root, "a");
        let first = w
            .commit("first", 3, &write("a/x.yaml", "x: 1\n"))
            .await
            .unwrap();
        assert!(matches!(first, Committed::Pushed(_)), "{first:?}");
        let again = w
            .commit("again", 3, &write("a/x.yaml", "x: 1\n"))
            .await
            .unwrap();
        assert_eq!(again, Committed::Unchanged);
        assert_eq!(log(&url, &root).await, ["first"]);
    }

    #[tokio::test]
    async fn a_push_that_loses_a_race_is_redone_on_the_new_head() {
        let (url, root) = bare("race");
        let a = workdir(&url, &root, "a");
        let b = workdir(&url, &root, "b");
        a.commit("a1", 3, &write("a.txt", "a\n")).await.unwrap();
        // b fetched before a's second commit, then a pushes, then b pushes: rejected, redone.
        b.sync().await.unwrap();
        a.commit("a2", 3, &write("a.txt", "a2\n")).await.unwrap();
        let racing = |dir: &Path| -> Result<bool, String> {
            std::fs::write(dir.join("b.txt"), "b\n").map_err(|e| e.to_string())?;
            Ok(true)
        };
        b.commit("b1", 3, &racing).await.unwrap();
        assert_eq!(log(&url, &root).await, ["b1", "a2", "a1"]);
    }

    #[tokio::test]
    async fn the_commit_that_introduced_a_text_is_found() {
        let (url, root) = bare("pickaxe");
        let w = workdir(&url, &root, "a");
        w.commit("v1", 3, &write("app.yaml", "image: app:1\n"))
            .await
            .unwrap();
        let Committed::Pushed(v2) = w
            .commit("v2", 3, &write("app.yaml", "image: app:2\n"))
            .await
            .unwrap()
        else {
            panic!("not pushed");
        };
        w.sync().await.unwrap();
        assert_eq!(w.commit_introducing("app.yaml", "app:2").await, Some(v2));
        assert_eq!(w.commit_introducing("app.yaml", "app:3").await, None);
    }

    #[tokio::test]
    async fn an_unreachable_remote_is_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (_, root) = bare("down");
        let w = workdir(&format!("git://127.0.0.1:{port}/r.git"), &root, "a");
        let err = w.sync().await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(matches!(err, GitError::Unreachable(_)), "{err:?}");
    }

    #[test]
    fn urls_lose_their_credentials_in_messages() {
        assert_eq!(
            shown("https://bot:tok3n@git.example.com/org/repo.git"),
            "https://git.example.com/org/repo.git"
        );
        assert_eq!(shown("ssh://git@h:2222/r.git"), "ssh://h:2222/r.git");
    }

    #[test]
    fn git_errors_are_classified() {
        let c = |s: &str| classify("push", "git://h/r", s);
        assert!(matches!(
            c(
                "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused"
            ),
            GitError::Unreachable(_)
        ));
        assert!(matches!(
            c(" ! [rejected]        HEAD -> main (fetch first)\nerror: failed to push some refs"),
            GitError::Rejected(_)
        ));
        assert!(matches!(
            c("Host key verification failed.\nfatal: Could not read from remote repository."),
            GitError::Auth(_)
        ));
        assert!(matches!(
            c(
                "git@h: Permission denied (publickey).\nfatal: Could not read from remote repository."
            ),
            GitError::Auth(_)
        ));
        assert!(matches!(
            c("fatal: Authentication failed for 'https://h/r/'"),
            GitError::Auth(_)
        ));
        assert!(matches!(
            c("fatal: not a git repository"),
            GitError::Other(_)
        ));
        assert!(
            c("hint: Updates were rejected\nfatal: x")
                .to_string()
                .starts_with("git push git://h/r: ")
        );
    }
}
