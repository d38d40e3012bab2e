//! The demo's GitOps side: a real Git server on loopback (`git daemon`) holding the demo's
//! repository (`examples/demo/` under `deploy/`), a stand-in for Flux that applies `deploy/`
//! at each new commit of `main`, and the image automation that commits a release.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use kube::Client;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::out::{Feed, Source};
use crate::git::{GitDaemon, git};

/// The repository's name on the Git server.
pub const REPO: &str = "podinfo";
/// Where the manifests are in it.
pub const DEPLOY_DIR: &str = "deploy";
/// The file whose image line a release and a revert change.
pub const WORKLOAD_FILE: &str = "deploy/podinfo.yaml";

/// Runs git off the async runtime's threads.
async fn git_async(dir: PathBuf, args: Vec<String>) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        git(&dir, &args)
    })
    .await
    .context("git task")?
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The Git server with the demo's repository.
pub struct Repo {
    /// The server.
    pub daemon: GitDaemon,
    /// `git://127.0.0.1:<port>/podinfo.git`.
    pub url: String,
}

impl Repo {
    /// The repository on `daemon`, with one commit holding `files` (paths in the repository,
    /// texts).
    pub fn create(daemon: GitDaemon, files: &[(String, String)]) -> anyhow::Result<Repo> {
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let url = daemon.create_repo(REPO, &refs)?;
        Ok(Repo { daemon, url })
    }

    /// A fresh clone for reading.
    pub fn clone_repo(&self) -> anyhow::Result<crate::git::Clone> {
        self.daemon.clone_repo(REPO)
    }

    /// Commits `image` to the image line of [`WORKLOAD_FILE`] as an image automation does
    /// (the marker stays) and pushes it; returns the short commit id.
    pub async fn release(&self, image: &str) -> anyhow::Result<String> {
        let c = self.clone_repo()?;
        let path = c.dir.join(WORKLOAD_FILE);
        let text = std::fs::read_to_string(&path)?;
        let new = set_image_line(&text, image)
            .with_context(|| format!("{WORKLOAD_FILE} has no image line"))?;
        std::fs::write(&path, new)?;
        let tag = super::tag(image).to_string();
        git_async(
            c.dir.clone(),
            args(&[
                "commit",
                "-q",
                "-a",
                "--author",
                "image automation <automation@fledge-demo.test>",
                "-m",
                &format!("release podinfo {tag}"),
            ]),
        )
        .await?;
        git_async(c.dir.clone(), args(&["push", "-q", "origin", "HEAD:main"])).await?;
        Ok(git_async(c.dir, args(&["rev-parse", "--short", "HEAD"]))
            .await?
            .trim()
            .to_string())
    }
}

/// The image line of a Deployment manifest (`image: …`), trimmed.
pub fn image_line(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("image:") || l.starts_with("- image:"))
}

/// `text` with the image of its image line replaced, the rest of the line (the marker) kept.
fn set_image_line(text: &str, image: &str) -> Option<String> {
    let mut done = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let trimmed = l.trim_start();
            if done || !trimmed.starts_with("image:") {
                return l.to_string();
            }
            done = true;
            let indent = &l[..l.len() - trimmed.len()];
            let rest = trimmed["image:".len()..].trim_start();
            let after = rest.find(char::is_whitespace).map_or("", |i| &rest[i..]);
            format!("{indent}image: {image}{after}")
        })
        .collect();
    done.then(|| lines.join("\n") + "\n")
}

/// The stand-in for Flux: a clone of the repository fetched every second; each new commit is
/// a line in the feed, and when one changes `deploy/`, every document there is applied to the
/// namespace (server-side apply).
pub struct Sync {
    task: JoinHandle<()>,
}

impl Drop for Sync {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct SyncState {
    dir: PathBuf,
    head: Option<String>,
    client: Client,
    namespace: String,
    feed: Feed,
}

impl Sync {
    /// Clones the repository, applies `deploy/` once (its documents named in the result), and
    /// goes on in the background.
    pub async fn start(
        repo: &Repo,
        client: Client,
        namespace: &str,
        feed: Feed,
    ) -> anyhow::Result<(Sync, Vec<String>)> {
        let dir = repo.clone_repo()?.dir;
        let mut state = SyncState {
            dir,
            head: None,
            client,
            namespace: namespace.to_string(),
            feed,
        };
        let applied = state.step().await?;
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = state.step().await {
                    state
                        .feed
                        .push(Source::Apply, format!("failed: {e:#} (tried again in 1 s)"));
                }
            }
        });
        Ok((Sync { task }, applied))
    }
}

impl SyncState {
    /// Fetches; prints the new commits; applies `deploy/` when they changed it.
    async fn step(&mut self) -> anyhow::Result<Vec<String>> {
        git_async(self.dir.clone(), args(&["fetch", "-q", "origin", "main"])).await?;
        let new = git_async(self.dir.clone(), args(&["rev-parse", "origin/main"]))
            .await?
            .trim()
            .to_string();
        let changed_deploy = match &self.head {
            Some(h) if *h == new => return Ok(Vec::new()),
            Some(h) => {
                let log = git_async(
                    self.dir.clone(),
                    args(&["log", "--reverse", "--format=%h %s", &format!("{h}..{new}")]),
                )
                .await?;
                for l in log.lines() {
                    self.feed.push(Source::Git, l);
                }
                !git_async(
                    self.dir.clone(),
                    args(&["diff", "--name-only", h, &new, "--", DEPLOY_DIR]),
                )
                .await?
                .trim()
                .is_empty()
            }
            None => true,
        };
        git_async(self.dir.clone(), args(&["reset", "-q", "--hard", &new])).await?;
        let first = self.head.is_none();
        self.head = Some(new.clone());
        if !changed_deploy {
            return Ok(Vec::new());
        }
        let docs = read_docs(&self.dir.join(DEPLOY_DIR))?;
        let applied = super::apply(&self.client, &self.namespace, &docs).await?;
        if !first {
            let image = docs
                .iter()
                .find(|d| d["kind"] == "Deployment")
                .and_then(|d| {
                    d.pointer("/spec/template/spec/containers/0/image")?
                        .as_str()
                })
                .unwrap_or("?");
            self.feed.push(
                Source::Apply,
                format!(
                    "{DEPLOY_DIR}/ at {}: the Deployment podinfo names {}",
                    &new[..7],
                    super::tag(image)
                ),
            );
        }
        Ok(applied)
    }
}

/// The YAML documents of the files in `dir`, by file name.
fn read_docs(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .with_context(|| format!("parsing {}", f.display()))?;
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    if docs.is_empty() {
        bail!("{} holds no manifest", dir.display());
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_changes_the_image_and_keeps_the_marker() {
        let text = "spec:\n  containers:\n    - name: a\n      image: r/a:1 # {\"$imagepolicy\": \"ns:a\"}\n      ports: []\n";
        let new = set_image_line(text, "r/a:2").unwrap();
        assert_eq!(
            new,
            "spec:\n  containers:\n    - name: a\n      image: r/a:2 # {\"$imagepolicy\": \"ns:a\"}\n      ports: []\n"
        );
        assert_eq!(
            image_line(&new),
            Some("image: r/a:2 # {\"$imagepolicy\": \"ns:a\"}")
        );
        assert_eq!(set_image_line("kind: X\n", "r/a:2"), None);
    }
}
