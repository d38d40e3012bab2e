//! The demo's story, told by `cargo xtask demo` (the `fledge-demo` binary) and checked by the
//! `demo` end-to-end test: the manifests of `examples/demo/` in a GitOps repository on a real
//! Git server on loopback, applied to the local control plane by a stand-in for Flux at each
//! commit; `fledge run` judging every step by the data plane's Prometheus; `fledge-loadgen
//! serve` running the Canary's acceptance test and its load; a chat receiver printing the
//! alerts; [`LocalWorkload`] standing in for the kubelet; and real user requests through the
//! Traefik Gateway the whole time. A healthy version is promoted step by step; a faulty one
//! (podinfo `--random-error`) is rolled back, and fledge's revert commit puts the healthy
//! version back in Git. Each step is printed as it ends: the phase, the canary's weight, the
//! share of the user answers the canary really served in that step, and what the analysis
//! measured, with the chat messages and Git commits of the step under it.

mod gitops;
mod out;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fledge_api::{AnalysisRecord, Canary, CanaryPhase, ImageRef, MetricCheck};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use serde_json::Value;

use self::out::{BAD, DIM, Feed, GIT, GOOD, HEADING, MOVING, paint};
pub use self::out::{Clock, FeedLine, Source};
use crate::analysis::Load;
use crate::dataplane::{
    LocalWorkload, Tally, dataplane, faults_by_tag, wait_canary_routed, wait_traefik_canary_weight,
};
use crate::loadgen::Loadgen;
use crate::{Hook, TestNs, admin_kubeconfig, fledge_binary, image_of, root};

/// Prints a line of the story (see [`out::line`]).
macro_rules! say {
    () => { out::line("") };
    ($($t:tt)*) => { out::line(&format!($($t)*)) };
}

/// The namespace `cargo xtask demo` recreates for each run.
pub const NAMESPACE: &str = "fledge-demo";
/// The image of `examples/demo/podinfo.yaml`.
pub const INITIAL: &str = "ghcr.io/stefanprodan/podinfo:6.0.0";
/// The healthy new version.
pub const HEALTHY: &str = "ghcr.io/stefanprodan/podinfo:6.0.1";
/// The faulty one: [`faults_by_tag`] runs podinfo with `--random-error` for a `faulty` tag.
pub const FAULTY: &str = "ghcr.io/stefanprodan/podinfo:6.0.2-faulty";
/// Requests per second sent through the Gateway for the whole story.
pub const RATE: u32 = 30;
/// The Deployment, the Canary and the apex Service are all `podinfo`.
const NAME: &str = "podinfo";
/// How long one rollout may take.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the answers are watched after a rollout ends.
const AFTERWARDS: Duration = Duration::from_secs(4);

/// `examples/demo/`.
pub fn manifests_dir() -> PathBuf {
    root().join("examples/demo")
}

/// The YAML files of `examples/demo/`, by name.
pub fn manifest_files() -> anyhow::Result<Vec<PathBuf>> {
    let dir = manifests_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The in-cluster addresses `examples/demo/` names, and the loopback ones the demo serves them
/// on: `fledge-loadgen.fledge-demo`, `gateway.fledge-system`, `git.fledge-demo`, and the host
/// `podinfo.fledge-demo.test` (another one when a test runs the demo beside a demo).
pub struct Local {
    /// `http://127.0.0.1:<port>` of `fledge-loadgen serve`.
    pub loadgen: String,
    /// `http://127.0.0.1:<port>` of the Gateway.
    pub gateway: String,
    /// `git://127.0.0.1:<port>` of the Git server.
    pub git: String,
    /// The host the Canary answers for.
    pub host: String,
}

/// The host of `examples/demo/canary.yaml`.
pub const DEMO_HOST: &str = "podinfo.fledge-demo.test";

impl Local {
    /// A manifest's text with the in-cluster addresses replaced by the local ones.
    pub fn localize(&self, text: &str) -> String {
        text.replace("http://fledge-loadgen.fledge-demo", &self.loadgen)
            .replace("http://gateway.fledge-system", &self.gateway)
            .replace("git://git.fledge-demo", &self.git)
            .replace(DEMO_HOST, &self.host)
    }
}

/// The GitOps repository's files: each file of `examples/demo/` under `deploy/`, localized.
pub fn repo_files(local: &Local) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for file in manifest_files()? {
        let text = std::fs::read_to_string(&file)?;
        let name = file
            .file_name()
            .context("a file name")?
            .to_string_lossy()
            .into_owned();
        files.push((
            format!("{}/{name}", gitops::DEPLOY_DIR),
            local.localize(&text),
        ));
    }
    Ok(files)
}

/// The documents of files.
fn documents(files: &[(String, String)]) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for (path, text) in files {
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(text).with_context(|| format!("parsing {path}"))?;
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    Ok(docs)
}

/// The canary weights of the Canary's analysis: `stepWeight`, twice that, … up to `maxWeight`.
fn analysis_weights(docs: &[Value]) -> Vec<i32> {
    let analysis = docs
        .iter()
        .find(|d| d["kind"] == "Canary")
        .map(|c| &c["spec"]["analysis"]);
    let get = |field: &str| {
        analysis
            .and_then(|a| a[field].as_i64())
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(0)
    };
    let (step, max) = (get("stepWeight"), get("maxWeight"));
    if step <= 0 {
        return Vec::new();
    }
    (1..=max / step).map(|i| i * step).collect()
}

/// `fledge validate` over the demo's files: its summary line, or an error with its report.
pub fn validate() -> anyhow::Result<String> {
    let out = Command::new(fledge_binary())
        .arg("validate")
        .args(manifest_files()?)
        .output()
        .context("running fledge validate")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "fledge validate refused examples/demo ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text.lines().last().unwrap_or_default().to_string())
}

/// Applies the documents in the namespace (server-side apply, as `kubectl apply
/// --server-side` and Flux do); names what it applied.
async fn apply(client: &Client, namespace: &str, docs: &[Value]) -> anyhow::Result<Vec<String>> {
    let mut applied = Vec::new();
    for doc in docs {
        let mut obj: DynamicObject = serde_json::from_value(doc.clone())?;
        let types = obj
            .types
            .clone()
            .context("a document without apiVersion/kind")?;
        let gvk = GroupVersionKind::try_from(&types)?;
        let (resource, caps) = pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("the API server does not serve {}", types.kind))?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                obj.metadata.namespace = Some(namespace.to_string());
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let name = obj.name_any();
        api.patch(
            &name,
            &PatchParams::apply("fledge-demo").force(),
            &Patch::Apply(&obj),
        )
        .await
        .with_context(|| format!("applying {} {name}", types.kind))?;
        applied.push(format!("{} {name}", types.kind));
    }
    Ok(applied)
}

/// One step of a rollout as it was seen: a stretch of time with the same phase and weight,
/// ended by the next change or by the next analysis.
#[derive(Clone, Debug)]
pub struct Step {
    /// When it ended, since the story began.
    pub ended: Duration,
    /// The phase.
    pub phase: CanaryPhase,
    /// The canary's weight in the Canary's status.
    pub weight: i32,
    /// The answers to the users' requests sent through the Gateway during the step.
    pub answers: Tally,
    /// The requests the Gateway forwarded to the primary and to the canary during the step
    /// (Traefik's own counts: the users' and fledge-loadgen's).
    pub forwarded: Forwarded,
    /// The analyses that ended the step (`status.rollout.history`).
    pub checks: Vec<AnalysisRecord>,
    /// `status.failedChecks` after them.
    pub failed_checks: i32,
}

impl Step {
    /// The canary's share of the requests the Gateway forwarded, in percent. (Not of the
    /// users' answers alone: the Gateway's weighted round robin splits all its requests by
    /// weight, and two steady request streams interleaved can each see a skewed share.)
    pub fn canary_percent(&self) -> f64 {
        let total = self.forwarded.primary + self.forwarded.canary;
        100.0 * self.forwarded.canary as f64 / total.max(1) as f64
    }
}

/// Requests the Gateway forwarded to each of the Canary's Services, by Traefik's metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Forwarded {
    /// To `podinfo-primary`.
    pub primary: u64,
    /// To `podinfo-canary`.
    pub canary: u64,
}

impl Forwarded {
    /// The counts now (zero where Traefik has counted none yet).
    async fn read(namespace: &str) -> Forwarded {
        let metrics = crate::dataplane::traefik_metrics()
            .await
            .unwrap_or_default();
        let count = |svc| crate::dataplane::forwarded_in(&metrics, namespace, svc);
        Forwarded {
            primary: count("podinfo-primary"),
            canary: count("podinfo-canary"),
        }
    }

    /// The requests since `earlier`.
    fn since(self, earlier: Forwarded) -> Forwarded {
        Forwarded {
            primary: self.primary.saturating_sub(earlier.primary),
            canary: self.canary.saturating_sub(earlier.canary),
        }
    }

    fn total(self) -> u64 {
        self.primary + self.canary
    }
}

/// One rollout of the story.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// The image it rolled out.
    pub image: String,
    /// The release commit (short id) that named it in Git.
    pub release: String,
    /// When it was released, since the story began.
    pub started: Duration,
    /// The phase it ended in (`Succeeded` or `Failed`).
    pub phase: CanaryPhase,
    /// From the image change to that phase.
    pub took: Duration,
    /// Its steps, in order.
    pub steps: Vec<Step>,
    /// Every answer while it ran.
    pub answers: Tally,
    /// `status.failedChecks` at the end.
    pub failed_checks: i32,
    /// The reasons of its failed checks (`status.rollout.failures`).
    pub failures: Vec<String>,
    /// The message of the `RolledBack` Event, when it was rolled back.
    pub rolled_back: Option<String>,
    /// The image of `podinfo-primary` at the end.
    pub primary_image: String,
}

impl Rollout {
    /// The canary's measured share at each weight of the analysis: `(weight, percent)`.
    pub fn shares(&self) -> Vec<(i32, f64)> {
        self.steps
            .iter()
            .filter(|s| s.phase == CanaryPhase::Progressing && s.weight > 0)
            .map(|s| (s.weight, s.canary_percent()))
            .collect()
    }
}

/// What happened, for the summary and the test.
#[derive(Clone, Debug)]
pub struct Report {
    /// The namespace.
    pub namespace: String,
    /// The canary weights of the analysis (`stepWeight` up to `maxWeight`).
    pub weights: Vec<i32>,
    /// From the start until the primary served the route.
    pub initialized_after: Duration,
    /// The healthy version's rollout.
    pub healthy: Rollout,
    /// The faulty version's rollout.
    pub faulty: Rollout,
    /// The answers in the seconds before the first rollout.
    pub before: Tally,
    /// The answers in the seconds after the promotion.
    pub after_promotion: Tally,
    /// The answers in the seconds after the rollback.
    pub after_rollback: Tally,
    /// Every answer of the story.
    pub answers: Tally,
    /// The image the target Deployment names at the end (applied from Git).
    pub target_image: String,
    /// The whole story.
    pub took: Duration,
    /// The chat messages, Git commits and applies, in order.
    pub feed: Vec<FeedLine>,
    /// What Git holds at the end.
    pub git: GitOutcome,
    /// Requests fledge-loadgen sent for the Canary (its `/metrics`), and how many failed.
    pub loadgen_requests: (u64, u64),
    /// The output of `fledge dora` over the repository.
    pub dora: String,
    /// The output of `kubectl fledge get podinfo`.
    pub tree: String,
}

/// The GitOps repository at the end of the story.
#[derive(Clone, Debug, Default)]
pub struct GitOutcome {
    /// `git log --oneline` of `main`, newest first.
    pub log: Vec<String>,
    /// The ledger's files.
    pub ledger_files: Vec<String>,
    /// fledge's revert commit (`git show -s`), when there is one.
    pub revert: Option<String>,
    /// The image line of the Deployment manifest after the faulty release.
    pub image_line_released: String,
    /// The image line at the end.
    pub image_line_now: String,
    /// A clone of the repository at the end, left on disk (for the dashboard's `--ledger`).
    pub checkout: std::path::PathBuf,
}

impl Report {
    /// The chat messages that arrived while `r` ran (from its release to the next one).
    pub fn chat_of(&self, r: &Rollout) -> Vec<&FeedLine> {
        let next = [&self.healthy, &self.faulty]
            .into_iter()
            .map(|x| x.started)
            .filter(|s| *s > r.started)
            .min()
            .unwrap_or(Duration::MAX);
        self.feed
            .iter()
            .filter(|f| f.source == Source::Chat && f.at >= r.started && f.at < next)
            .collect()
    }
}

impl Report {
    /// What did not go as the story says; empty when everything did.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let (h, f) = (&self.healthy, &self.faulty);
        if h.phase != CanaryPhase::Succeeded {
            problems.push(format!(
                "the healthy version ended {}, not Succeeded: {:?}",
                h.phase, h.failures
            ));
        }
        if h.primary_image != HEALTHY {
            problems.push(format!(
                "after the healthy rollout the primary runs {}, not {HEALTHY}",
                h.primary_image
            ));
        }
        let shares = h.shares();
        let weights: Vec<i32> = shares.iter().map(|(w, _)| *w).collect();
        if weights != self.weights {
            problems.push(format!(
                "the healthy rollout went through the weights {weights:?}, not {:?}",
                self.weights
            ));
        }
        if shares.windows(2).any(|w| w[1].1 <= w[0].1) || shares.first().is_none_or(|s| s.1 <= 0.0)
        {
            problems.push(format!(
                "the canary's measured share of the answers did not rise with its weight: {}",
                shares_text(&shares)
            ));
        }
        if f.phase != CanaryPhase::Failed {
            problems.push(format!(
                "the faulty version ended {}, not Failed (rolled back)",
                f.phase
            ));
        }
        if !f.failures.iter().any(|r| failed_on_errors(r)) {
            problems.push(format!(
                "the faulty version failed neither its request-success-rate check nor its \
                 acceptance test: {:?}",
                f.failures
            ));
        }
        if f.primary_image != HEALTHY {
            problems.push(format!(
                "after the rollback the primary runs {}, not {HEALTHY}",
                f.primary_image
            ));
        }
        let g = &self.git;
        if g.ledger_files.len() != 2 {
            problems.push(format!(
                "the ledger holds {} files, not one per rollout: {:?}",
                g.ledger_files.len(),
                g.ledger_files
            ));
        }
        match &g.revert {
            None => problems.push("fledge committed no revert after the rollback".into()),
            Some(c) if !c.contains(&format!("{FAULTY} -> {HEALTHY}")) => {
                problems.push(format!("the revert commit does not revert {FAULTY}: {c}"))
            }
            Some(_) => {}
        }
        if !g.image_line_now.contains(HEALTHY) {
            problems.push(format!(
                "after the revert Git names {:?}, not {HEALTHY}",
                g.image_line_now
            ));
        }
        if self.target_image != HEALTHY {
            problems.push(format!(
                "the Deployment applied from Git names {}, not {HEALTHY}",
                self.target_image
            ));
        }
        for r in [h, f] {
            if self.chat_of(r).is_empty() {
                problems.push(format!("no chat message during the rollout of {}", r.image));
            }
        }
        if self.loadgen_requests.0 == 0 {
            problems.push("fledge-loadgen sent no request".into());
        }
        problems
    }
}

/// Whether a failed check's reason is one the faulty version's errors explain: its success
/// rate, or its acceptance test (which may meet an error too).
pub fn failed_on_errors(reason: &str) -> bool {
    reason.contains("request-success-rate") || reason.contains("webhook acceptance")
}

/// `8.7 / 20.1 % of the answers at weights 10 / 20 %`.
fn shares_text(shares: &[(i32, f64)]) -> String {
    let (weights, measured): (Vec<String>, Vec<String>) = shares
        .iter()
        .map(|(w, s)| (w.to_string(), format!("{s:.1}")))
        .unzip();
    format!(
        "{} % of the requests at weights {} %",
        measured.join(" / "),
        weights.join(" / ")
    )
}

/// The tag of an image (`6.0.1`).
pub fn tag(image: &str) -> &str {
    ImageRef::parse(image)
        .ok()
        .and_then(|r| r.tag())
        .unwrap_or(image)
}

/// The kubectl `cargo xtask cluster up` puts beside its kubeconfig, and the command to watch
/// the Canaries with it.
pub fn watch_command(namespace: &str) -> String {
    let kubeconfig = admin_kubeconfig();
    let kubectl = kubeconfig
        .parent()
        .map(|d| d.join("bin/kubectl"))
        .unwrap_or_else(|| "kubectl".into());
    format!(
        "KUBECONFIG={} {} get canaries -n {namespace} -w",
        kubeconfig.display(),
        kubectl.display()
    )
}

/// The command that serves the web dashboard of the demo's namespace
/// (http://127.0.0.1:7979/ while it runs).
pub fn dashboard_command(namespace: &str) -> String {
    format!(
        "KUBECONFIG={} {} dashboard -n {namespace}   (then open http://127.0.0.1:7979/)",
        admin_kubeconfig().display(),
        crate::plugin::binary().display()
    )
}

/// The programs the demo's acceptance test runs in fledge-loadgen (a Flagger load tester
/// `bash` task): fails with what is missing and how to get it.
fn check_programs() -> anyhow::Result<()> {
    for program in ["bash", "curl", "grep"] {
        let found = Command::new(program)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok();
        if !found {
            bail!(
                "the demo's acceptance webhook runs `{program}` (in fledge-loadgen, as Flagger's \
                 load tester runs bash tasks), and it is not on PATH: install it (Debian: \
                 apt-get install {program})"
            );
        }
    }
    Ok(())
}

/// Tells the story in `ns`: puts `examples/demo/` in a GitOps repository on a local Git
/// server (with the Canary answering for `host` when given) and applies it from there, starts
/// the chat receiver, fledge-loadgen, the stand-in kubelet, `fledge run` and the user traffic,
/// releases [`HEALTHY`] and then [`FAULTY`] through Git, printing every step, follows the
/// revert back to Git, and prints a summary. Errors when something does not happen in time;
/// [`Report::problems`] says whether the outcome was the expected one.
pub async fn run(ns: &TestNs, host: Option<&str>) -> anyhow::Result<Report> {
    check_programs()?;
    let clock = Clock(Instant::now());
    let feed = Feed::new(clock);
    let dp = dataplane();
    let host = host.unwrap_or(DEMO_HOST).to_string();
    say!(
        "{}",
        paint(
            HEADING,
            "fledge demo: canary rollouts on a local control plane, with real traffic, Git and chat"
        )
    );
    say!(
        "  gateway     {} (Traefik {}, Gateway API provider)",
        dp.gateway,
        dp.traefik_version
    );
    say!("  prometheus  {}", dp.prometheus_url);

    // The chat receiver: a Slack-compatible incoming webhook that prints what it gets.
    let chat = Hook::start(200).await?;
    let loadgen = Loadgen::start(&ns.name, &["--allow-commands"]).await?;
    say!("  loadgen     {} (fledge-loadgen serve)", loadgen.base);
    say!(
        "  chat        {} (prints each message it receives)",
        chat.url("/chat")
    );
    let gateway = format!("http://{}", dp.gateway);
    let daemon = crate::git::GitDaemon::start_new(&ns.name)?;
    let local = Local {
        loadgen: loadgen.base.clone(),
        gateway,
        git: format!("git://127.0.0.1:{}", daemon.port),
        host: host.clone(),
    };
    let files = repo_files(&local)?;
    let repo = gitops::Repo::create(daemon, &files)?;
    say!(
        "  git         {} (git daemon; main holds examples/demo/ under deploy/)",
        repo.url
    );
    say!("  watch       {}", watch_command(&ns.name));
    say!();
    say!("fledge validate examples/demo/*.yaml: {}", validate()?);
    let docs = documents(&files)?;
    let weights = analysis_weights(&docs);

    // The webhook URL is a secret: never in Git.
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "team-chat-webhook"},
        "stringData": {"address": chat.url("/chat")},
    }))?;
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .context("creating the Secret team-chat-webhook")?;
    say!("created Secret team-chat-webhook (the chat receiver's URL; secrets stay out of Git)");
    let (sync, applied) = gitops::Sync::start(&repo, ns.client.clone(), &ns.name, feed.clone())
        .await
        .context("applying the repository")?;
    say!(
        "applied deploy/ of {} to namespace {} (as Flux does at every commit): {}",
        repo.url,
        ns.name,
        applied.join(", ")
    );
    let chat_feed = forward_chat(chat.clone(), feed.clone());
    // The stand-in kubelet: a podinfo process per ready Deployment, EndpointSlices to it.
    let _workload = LocalWorkload::start_with(&ns.client, &ns.name, NAME, NAME, faults_by_tag());
    let work = root()
        .join("target/e2e-logs")
        .join(format!("{}-gitwork", ns.name));
    let controller =
        crate::analysis::start_controller_with(ns, &["--git-workdir", &work.to_string_lossy()]);
    let log = ns.controller_log_path(controller.idx);
    say!(
        "started fledge run --namespace {} {} (log: {})",
        ns.name,
        controller.flags.join(" "),
        log.display()
    );

    say!();
    say!(
        "{}",
        paint(
            HEADING,
            "1. Initialization: fledge creates podinfo-primary, the Services and the HTTPRoute"
        )
    );
    wait_canary_routed(ns, NAME, &host).await?;
    let initialized_after = clock.0.elapsed();
    say!(
        "{} {}: podinfo-primary serves {INITIAL}, the HTTPRoute is Accepted",
        clock.stamp(),
        paint(GOOD, "Initialized")
    );
    feed.flush();
    let load = Load::start(&host, RATE, Duration::from_secs(900));
    say!(
        "{} users: {RATE} requests/s to http://{host}/ through the Gateway, from now to the end",
        clock.stamp()
    );
    let before = observe(&load, &feed, clock).await;

    say!();
    say!(
        "{}",
        paint(
            HEADING,
            format!("2. A healthy version: {HEALTHY}, released by a commit to Git")
        )
    );
    let healthy = roll_out(ns, &repo, &load, &feed, HEALTHY, clock).await?;
    let after_promotion = observe(&load, &feed, clock).await;

    say!();
    say!(
        "{}",
        paint(
            HEADING,
            format!(
                "3. A faulty version: {FAULTY} (podinfo --random-error: 500, 400 or 409 in one \
                 second out of three)"
            )
        )
    );
    let faulty = roll_out(ns, &repo, &load, &feed, FAULTY, clock).await?;
    let image_line_released = {
        let c = repo.clone_repo()?;
        let text = c.read(gitops::WORKLOAD_FILE);
        // The release commit's text: the revert may have landed already.
        let at_release = crate::git::git(
            &c.dir,
            &[
                "show",
                &format!("{}:{}", faulty.release, gitops::WORKLOAD_FILE),
            ],
        )
        .unwrap_or(text);
        gitops::image_line(&at_release)
            .unwrap_or_default()
            .to_string()
    };

    say!();
    say!(
        "{}",
        paint(
            HEADING,
            "4. The revert: fledge commits the last promoted image back to Git, and Git is \
             applied again"
        )
    );
    let target_image = wait_reverted(ns, &feed, clock).await?;
    let after_rollback = observe(&load, &feed, clock).await;
    drop(sync);
    drop(chat_feed);

    let git = git_outcome(&repo, image_line_released)?;
    let loadgen_requests = loadgen
        .answered(&format!("{}/{NAME}", ns.name))
        .await
        .unwrap_or_default();
    let dora = run_captured(
        Command::new(fledge_binary()).args(["dora", "--repo", &repo.url]),
        "fledge dora",
    );
    let tree = run_captured(
        Command::new(crate::plugin::binary())
            .args(["get", NAME, "-n", &ns.name])
            .env("KUBECONFIG", admin_kubeconfig()),
        "kubectl fledge get",
    );
    let report = Report {
        namespace: ns.name.clone(),
        weights,
        initialized_after,
        healthy,
        faulty,
        before,
        after_promotion,
        after_rollback,
        answers: load.tally(),
        target_image,
        took: clock.0.elapsed(),
        feed: feed.all(),
        git,
        loadgen_requests,
        dora,
        tree,
    };
    say!();
    print_summary(&report, &log, &repo.url, &loadgen.log);
    Ok(report)
}

/// Puts each message the chat receiver gets into the feed, as its provider shows it (Slack's
/// `text`), until dropped.
fn forward_chat(chat: Hook, feed: Feed) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let calls = chat.calls("/chat");
            for body in &calls[seen.min(calls.len())..] {
                let text = body["text"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| body.to_string());
                feed.push(Source::Chat, text);
            }
            seen = calls.len();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

/// A background task, stopped when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// After the rollback: waits until fledge's revert is applied from Git (the Deployment names
/// the last promoted image again and fledge took it as a revert, not a new revision); the
/// Deployment's image.
async fn wait_reverted(ns: &TestNs, feed: &Feed, clock: Clock) -> anyhow::Result<String> {
    let started = Instant::now();
    let api = ns.api::<Canary>();
    loop {
        feed.flush();
        let image = image_of(&ns.deployment(NAME).await);
        let c = api.get(NAME).await?;
        let settled = c.status.as_ref().is_some_and(|s| {
            s.last_applied_spec.is_some() && s.last_applied_spec == s.last_promoted_spec
        });
        if image == HEALTHY && settled {
            feed.flush();
            let phase = c.status.map(|s| s.phase).unwrap_or_default();
            say!(
                "{} the Deployment podinfo names {} again, applied from Git; fledge sees the last \
                 promoted revision, starts no rollout, and the Canary stays {}",
                clock.stamp(),
                tag(&image),
                paint(BAD, phase.as_str())
            );
            return Ok(image);
        }
        if started.elapsed() > Duration::from_secs(90) {
            bail!(
                "the revert did not come back from Git in 90 s: the Deployment names {image}\n\
                 Events:\n{}",
                ns.events(NAME).await.join("\n")
            );
        }
        out::progress(&format!(
            "        waiting for the revert commit and the apply: {:.0} s",
            started.elapsed().as_secs_f64()
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The repository at the end.
fn git_outcome(repo: &gitops::Repo, image_line_released: String) -> anyhow::Result<GitOutcome> {
    let c = repo.clone_repo()?;
    let log = crate::git::git(&c.dir, &["log", "--oneline"])?
        .lines()
        .map(str::to_string)
        .collect();
    let revert = crate::git::git(&c.dir, &["log", "--format=%H %s"])?
        .lines()
        .find(|l| l.contains(" fledge: revert"))
        .and_then(|l| l.split_whitespace().next())
        .map(|id| {
            crate::git::git(
                &c.dir,
                &[
                    "show",
                    "-s",
                    "--format=commit %h%nAuthor: %an <%ae>%n%n%B",
                    id,
                ],
            )
        })
        .transpose()?
        .map(|t| t.trim_end().to_string());
    Ok(GitOutcome {
        log,
        ledger_files: c.files_under(".fledge/ledger"),
        revert,
        image_line_released,
        image_line_now: gitops::image_line(&c.read(gitops::WORKLOAD_FILE))
            .unwrap_or_default()
            .to_string(),
        checkout: c.dir.clone(),
    })
}

/// A command's output (stdout, then stderr when it failed), for the summary.
fn run_captured(cmd: &mut Command, what: &str) -> String {
    match cmd.output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("cannot run {what}: {e}"),
    }
}

/// Counts the answers for a few seconds, and prints them.
async fn observe(load: &Load, feed: &Feed, clock: Clock) -> Tally {
    let start = load.tally();
    let until = Instant::now() + AFTERWARDS;
    while Instant::now() < until {
        feed.flush();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    feed.flush();
    let t = load.tally().since(&start);
    say!(
        "{} user answers over the last {} s: {}",
        clock.stamp(),
        AFTERWARDS.as_secs(),
        versions(&t)
    );
    t
}

/// `primary 6.0.0 100.0%, 503 0.4%` for a tally.
fn versions(t: &Tally) -> String {
    let mut parts: Vec<String> = t
        .by_version
        .iter()
        .map(|(v, n)| format!("{v} {:.1}%", percent(*n, t)))
        .collect();
    parts.extend(
        t.errors
            .iter()
            .map(|(code, n)| format!("{code} {:.1}%", percent(*n, t))),
    );
    if t.failed > 0 {
        parts.push(format!("no answer {:.1}%", percent(t.failed, t)));
    }
    format!("{} of {} requests", parts.join(", "), t.total())
}

/// A metric's value in its unit.
fn metric_value(m: &MetricCheck) -> String {
    match m.value {
        None => "no value".into(),
        Some(v) if m.name.contains("duration") => format!("{v:.0} ms"),
        Some(v) if m.name.contains("success-rate") => format!("{v:.1}%"),
        Some(v) => format!("{v:.3}"),
    }
}

/// Each metric's value and verdict, `100.0% ok, 12 ms ok`, in the order of the spec.
fn checks_text(record: &AnalysisRecord) -> String {
    record
        .metrics
        .iter()
        .map(|m| {
            let mark = if m.passed { "ok" } else { "FAILED" };
            format!("{} {mark}", metric_value(m))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets the image and follows the rollout until it is promoted or rolled back, printing each
/// step as it ends.
async fn roll_out(
    ns: &TestNs,
    repo: &gitops::Repo,
    load: &Load,
    feed: &Feed,
    image: &str,
    clock: Clock,
) -> anyhow::Result<Rollout> {
    let api = ns.api::<Canary>();
    let history = |c: &Canary| -> Vec<AnalysisRecord> {
        c.status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .map(|r| r.history.clone())
            .unwrap_or_default()
    };
    let current = api.get(NAME).await?;
    let threshold = current
        .spec
        .analysis
        .as_ref()
        .and_then(|a| a.threshold)
        .unwrap_or_default();
    let port = u16::try_from(current.spec.service.port).context("spec.service.port")?;
    let mut seen = history(&current);
    let status = current.status.clone().unwrap_or_default();
    let (mut phase, mut weight) = (status.phase, status.canary_weight);
    let started = Instant::now();
    let first = load.tally();
    let mut step_start = first.clone();
    let mut forwarded_start = Forwarded::read(&ns.name).await;
    let release_started = clock.0.elapsed();
    let release = repo.release(image).await?;
    let metrics: Vec<String> = current
        .spec
        .analysis
        .iter()
        .flat_map(|a| a.metrics.iter().flatten())
        .map(|m| m.name.clone())
        .collect();
    say!(
        "{}",
        paint(
            DIM,
            format!(
                "        {:<14} {:>6}   {:<16} {:<24} analysis: {}",
                "phase",
                "weight",
                "canary served",
                "user errors",
                metrics.join(", ")
            )
        )
    );
    let mut moving = false;
    let mut steps = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let c = api.get(NAME).await?;
        let s = c.status.clone().unwrap_or_default();
        let checks: Vec<AnalysisRecord> = history(&c)
            .into_iter()
            .filter(|r| !seen.contains(r))
            .collect();
        seen.extend(checks.iter().cloned());
        if (s.phase, s.canary_weight) != (phase, weight) || !checks.is_empty() {
            let now = load.tally();
            let forwarded_now = Forwarded::read(&ns.name).await;
            let step = Step {
                ended: clock.0.elapsed(),
                phase,
                weight,
                answers: now.since(&step_start),
                forwarded: forwarded_now.since(forwarded_start),
                checks,
                failed_checks: s.failed_checks,
            };
            // Until fledge picks the new revision up, the previous rollout's phase stays.
            if moving {
                print_step(&step, threshold, clock);
                steps.push(step);
            }
            feed.flush();
            step_start = now;
            forwarded_start = forwarded_now;
            (phase, weight) = (s.phase, s.canary_weight);
        }
        moving |= !matches!(
            s.phase,
            CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed
        );
        // Before fledge picks the revision up: the release and its apply, as they come.
        if !moving {
            feed.flush();
        }
        if moving && matches!(s.phase, CanaryPhase::Succeeded | CanaryPhase::Failed) {
            let primary_image = image_of(&ns.deployment("podinfo-primary").await);
            let rolled_back = if s.phase == CanaryPhase::Failed {
                ns.events(NAME)
                    .await
                    .into_iter()
                    .rev()
                    .find_map(|e| e.split_once("RolledBack: ").map(|(_, m)| m.to_string()))
            } else {
                None
            };
            let took = started.elapsed();
            // What the users get from now on: the route as Traefik applies it.
            wait_traefik_canary_weight(&ns.name, NAME, port, 0).await?;
            match s.phase {
                CanaryPhase::Succeeded => say!(
                    "{} {}      promoted in {:.0} s: podinfo-primary runs {}",
                    clock.stamp(),
                    paint(GOOD, "Succeeded"),
                    took.as_secs_f64(),
                    tag(&primary_image)
                ),
                _ => say!(
                    "{} {}         rolled back in {:.0} s ({}): podinfo-primary runs {}",
                    clock.stamp(),
                    paint(BAD, "Failed"),
                    took.as_secs_f64(),
                    rolled_back.as_deref().unwrap_or("no RolledBack Event"),
                    tag(&primary_image)
                ),
            }
            feed.flush();
            return Ok(Rollout {
                image: image.to_string(),
                release,
                started: release_started,
                phase: s.phase,
                took,
                steps,
                answers: load.tally().since(&first),
                failed_checks: s.failed_checks,
                failures: s.rollout.map(|r| r.failures).unwrap_or_default(),
                rolled_back,
                primary_image,
            });
        }
        let in_step = clock
            .0
            .elapsed()
            .saturating_sub(steps.last().map_or(release_started, |x: &Step| x.ended));
        out::progress(&if moving {
            format!(
                "        {} at {}% for {:.0} s",
                phase.as_str(),
                weight,
                in_step.as_secs_f64()
            )
        } else {
            format!(
                "        released; waiting for the apply and for fledge to see the new revision \
                 ({:.0} s)",
                in_step.as_secs_f64()
            )
        });
        if started.elapsed() > ROLLOUT_TIMEOUT {
            bail!(
                "the rollout of {image} did not end in {ROLLOUT_TIMEOUT:?}: phase {}, weight {}, \
                 failed checks {}\nEvents:\n{}",
                s.phase,
                s.canary_weight,
                s.failed_checks,
                ns.events(NAME).await.join("\n")
            );
        }
    }
}

fn print_step(step: &Step, threshold: i32, clock: Clock) {
    let answers = &step.answers;
    let share = format!(
        "{:5.1}% of {:>3}",
        step.canary_percent(),
        step.forwarded.total()
    );
    let errors = if answers.unsuccessful() > 0 {
        format!(
            "{:4.1}% ({})",
            percent(answers.unsuccessful(), answers),
            error_codes(answers)
        )
    } else {
        "   -".into()
    };
    let analysis = step
        .checks
        .iter()
        .map(checks_text)
        .collect::<Vec<_>>()
        .join("; ");
    let style = match step.phase {
        CanaryPhase::Failed => BAD,
        CanaryPhase::Succeeded => GOOD,
        _ => MOVING,
    };
    say!(
        "{} {} {:>5}%   {share:<16} {errors:<24} {analysis}",
        clock.stamp(),
        paint(style, format!("{:<14}", step.phase.as_str())),
        step.weight
    );
    let failed = step.checks.iter().flat_map(|r| &r.metrics);
    for m in failed.filter(|m| !m.passed) {
        let reason = m
            .reason
            .clone()
            .unwrap_or_else(|| format!("metric {}: failed", m.name));
        say!(
            "        {} {reason}",
            paint(
                BAD,
                format!("failed checks {} of {threshold}:", step.failed_checks)
            )
        );
    }
}

/// `n` in percent of the requests of `t`.
fn percent(n: u64, t: &Tally) -> f64 {
    100.0 * n as f64 / t.total().max(1) as f64
}

/// The error statuses of a tally, `400,503` (`none` for requests without an answer).
fn error_codes(t: &Tally) -> String {
    let mut codes: Vec<String> = t.errors.keys().map(u16::to_string).collect();
    if t.failed > 0 {
        codes.push("none".into());
    }
    codes.join(",")
}

/// Prints `text` indented by four spaces.
fn block(text: &str) {
    for l in text.trim_end().lines() {
        say!("    {l}");
    }
}

fn print_summary(r: &Report, log: &std::path::Path, repo: &str, loadgen_log: &std::path::Path) {
    let (h, f) = (&r.healthy, &r.faulty);
    say!("{}", paint(HEADING, "Summary"));
    say!(
        "  initialized in {:.0} s; the whole story took {:.0} s",
        r.initialized_after.as_secs_f64(),
        r.took.as_secs_f64()
    );
    say!(
        "  {:<13} {} in {:.0} s; the canary served {}",
        tag(&h.image),
        paint(GOOD, h.phase),
        h.took.as_secs_f64(),
        shares_text(&h.shares())
    );
    say!(
        "  {:<13} {} in {:.0} s after {} failed checks; {}",
        tag(&f.image),
        paint(BAD, f.phase),
        f.took.as_secs_f64(),
        f.failed_checks,
        f.rolled_back.as_deref().unwrap_or("not rolled back")
    );
    let mut counts: Vec<String> = f
        .answers
        .errors
        .iter()
        .map(|(code, n)| format!("{n} x {code}"))
        .collect();
    if f.answers.failed > 0 {
        counts.push(format!("{} unanswered", f.answers.failed));
    }
    say!(
        "  users saw errors in {:.1}% of the answers during the faulty rollout ({} of {}: {}), \
         {:.1}% during the healthy one",
        percent(f.answers.unsuccessful(), &f.answers),
        f.answers.unsuccessful(),
        f.answers.total(),
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        },
        percent(h.answers.unsuccessful(), &h.answers),
    );
    if r.answers.errors.contains_key(&503) {
        say!(
            "    (a 503 is the gateway's while the canary has no endpoint yet: kwok makes its Pod \
             ready at once, and the local\n    stand-in for the kubelet starts its podinfo and \
             writes its EndpointSlice a moment later)"
        );
    }
    say!(
        "  user requests through the Gateway: {} ({:.1}% answered 200); fledge-loadgen sent {} \
         more for the Canary ({} failed)",
        r.answers.total(),
        percent(r.answers.by_version.values().sum(), &r.answers),
        r.loadgen_requests.0,
        r.loadgen_requests.1
    );
    say!(
        "  chat: {} messages during the healthy rollout, {} during the faulty one",
        r.chat_of(h).len(),
        r.chat_of(f).len()
    );
    say!(
        "  podinfo-primary runs {}; the Deployment podinfo, applied from Git, names {}",
        tag(&f.primary_image),
        tag(&r.target_image)
    );

    say!();
    say!("{}", paint(HEADING, format!("git log --oneline ({repo})")));
    for l in &r.git.log {
        let styled = if l.contains(" fledge: revert") {
            paint(BAD, l)
        } else if l.contains(" fledge: ") {
            paint(GIT, l)
        } else {
            l.clone()
        };
        say!("    {styled}");
    }
    say!("  ledger: {}", r.git.ledger_files.join(", "));
    say!("{}", paint(HEADING, "fledge's revert commit"));
    block(r.git.revert.as_deref().unwrap_or("(none)"));
    say!(
        "{}",
        paint(HEADING, format!("{} image line", gitops::WORKLOAD_FILE))
    );
    say!(
        "    after the faulty release: {}",
        r.git.image_line_released
    );
    say!("    after fledge's revert:    {}", r.git.image_line_now);

    say!();
    say!("{}", paint(HEADING, format!("fledge dora --repo {repo}")));
    block(&r.dora);
    say!();
    say!(
        "{}",
        paint(
            HEADING,
            format!("kubectl fledge get {NAME} -n {}", r.namespace)
        )
    );
    block(&r.tree);
    say!();
    say!("  watch the Canary:  {}", watch_command(&r.namespace));
    say!("  the dashboard:     {}", dashboard_command(&r.namespace));
    say!("  controller log:    {}", log.display());
    say!("  loadgen log:       {}", loadgen_log.display());
}
