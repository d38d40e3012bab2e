//! The demo's story, told by `cargo xtask demo` (the `fledge-demo` binary) and checked by the
//! `demo` end-to-end test: the manifests of `examples/demo/` on the local control plane,
//! `fledge run` judging every step by the data plane's Prometheus, [`LocalWorkload`] standing in
//! for the kubelet, and real requests through the Traefik Gateway the whole time. A healthy
//! version is promoted step by step; a faulty one (podinfo `--random-error`) is rolled back.
//! Each step is printed as it ends: the phase, the canary's weight, the share of the answers
//! the canary really served in that step, and what the analysis measured.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fledge_api::{AnalysisRecord, Canary, CanaryPhase, ImageRef, MetricCheck};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::Value;

use crate::analysis::{Load, start_controller};
use crate::dataplane::{
    LocalWorkload, Tally, dataplane, faults_by_tag, wait_canary_routed, wait_traefik_canary_weight,
};
use crate::{TestNs, admin_kubeconfig, fledge_binary, image_of, root};

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

/// The documents of `examples/demo/` as JSON; with `host`, the Canary answers for that host
/// instead of its own (so that a test can run the demo beside another one).
pub fn manifests(host: Option<&str>) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for file in manifest_files()? {
        let text = std::fs::read_to_string(&file)?;
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .with_context(|| format!("parsing {}", file.display()))?;
        docs.extend(parsed.into_iter().filter(|d| !d.is_null()));
    }
    if let Some(host) = host {
        for d in docs.iter_mut().filter(|d| d["kind"] == "Canary") {
            d["spec"]["service"]["hosts"] = serde_json::json!([host]);
        }
    }
    Ok(docs)
}

/// The host the Canary's route answers for.
fn canary_host(docs: &[Value]) -> anyhow::Result<String> {
    docs.iter()
        .find(|d| d["kind"] == "Canary")
        .and_then(|c| c.pointer("/spec/service/hosts/0")?.as_str())
        .map(str::to_string)
        .context("examples/demo has no Canary with spec.service.hosts")
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
/// --server-side` does); names what it applied.
async fn apply(ns: &TestNs, docs: &[Value]) -> anyhow::Result<Vec<String>> {
    let mut applied = Vec::new();
    for doc in docs {
        let mut obj: DynamicObject = serde_json::from_value(doc.clone())?;
        let types = obj
            .types
            .clone()
            .context("a document without apiVersion/kind")?;
        let gvk = GroupVersionKind::try_from(&types)?;
        let (resource, caps) = pinned_kind(&ns.client, &gvk)
            .await
            .with_context(|| format!("the API server does not serve {}", types.kind))?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                obj.metadata.namespace = Some(ns.name.clone());
                Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
            }
            Scope::Cluster => Api::all_with(ns.client.clone(), &resource),
        };
        let name = obj.name_any();
        api.patch(
            &name,
            &PatchParams::apply("fledge-demo"),
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
    /// The answers to the requests sent through the Gateway during the step.
    pub answers: Tally,
    /// The analyses that ended the step (`status.rollout.history`).
    pub checks: Vec<AnalysisRecord>,
    /// `status.failedChecks` after them.
    pub failed_checks: i32,
}

impl Step {
    /// The share of the answers the canary served, in percent.
    pub fn canary_percent(&self) -> f64 {
        self.answers.role_percent("canary")
    }
}

/// One rollout of the story.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// The image it rolled out.
    pub image: String,
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
    /// The image the target Deployment names at the end.
    pub target_image: String,
    /// The whole story.
    pub took: Duration,
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
        if !f
            .failures
            .iter()
            .any(|r| r.contains("request-success-rate"))
        {
            problems.push(format!(
                "the faulty version failed no request-success-rate check: {:?}",
                f.failures
            ));
        }
        if f.primary_image != HEALTHY {
            problems.push(format!(
                "after the rollback the primary runs {}, not {HEALTHY}",
                f.primary_image
            ));
        }
        problems
    }
}

/// `8.7 / 20.1 % of the answers at weights 10 / 20 %`.
fn shares_text(shares: &[(i32, f64)]) -> String {
    let (weights, measured): (Vec<String>, Vec<String>) = shares
        .iter()
        .map(|(w, s)| (w.to_string(), format!("{s:.1}")))
        .unzip();
    format!(
        "{} % of the answers at weights {} %",
        measured.join(" / "),
        weights.join(" / ")
    )
}

/// `[m:ss]` since the story began.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn stamp(self) -> String {
        let s = self.0.elapsed().as_secs();
        format!("[{:>2}:{:02}]", s / 60, s % 60)
    }
}

/// The tag of an image (`6.0.1`).
fn tag(image: &str) -> &str {
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

/// Tells the story in `ns`: applies `examples/demo/` (with the Canary answering for `host`
/// when given), starts the stand-in kubelet, `fledge run` and the traffic, rolls out
/// [`HEALTHY`] and then [`FAULTY`], printing every step, and prints a summary. Errors when
/// something does not happen in time; [`Report::problems`] says whether the outcome was the
/// expected one.
pub async fn run(ns: &TestNs, host: Option<&str>) -> anyhow::Result<Report> {
    let clock = Clock(Instant::now());
    let dp = dataplane();
    let docs = manifests(host)?;
    let host = canary_host(&docs)?;
    println!("fledge demo: a canary rollout on the local control plane, with real traffic");
    println!(
        "  gateway     {} (Traefik {}, Gateway API provider)",
        dp.gateway, dp.traefik_version
    );
    println!("  prometheus  {}", dp.prometheus_url);
    println!("  watch       {}", watch_command(&ns.name));
    println!();
    println!("fledge validate examples/demo/*.yaml: {}", validate()?);
    let applied = apply(ns, &docs).await?;
    println!("applied to namespace {}: {}", ns.name, applied.join(", "));
    // The stand-in kubelet: a podinfo process per ready Deployment, EndpointSlices to it.
    let _workload = LocalWorkload::start_with(&ns.client, &ns.name, NAME, NAME, faults_by_tag());
    let controller = start_controller(ns);
    let log = ns.controller_log_path(controller.idx);
    println!(
        "started fledge run --namespace {} {} (log: {})",
        ns.name,
        controller.flags.join(" "),
        log.display()
    );

    println!();
    println!("1. Initialization: fledge creates podinfo-primary, the Services and the HTTPRoute");
    wait_canary_routed(ns, NAME, &host).await?;
    let initialized_after = clock.0.elapsed();
    println!(
        "{} Initialized: podinfo-primary serves {INITIAL}, the HTTPRoute is Accepted",
        clock.stamp()
    );
    let load = Load::start(&host, RATE, Duration::from_secs(900));
    println!(
        "{} sending {RATE} requests/s to http://{host}/ through the Gateway, from now to the end",
        clock.stamp()
    );
    let before = observe(&load, clock).await;

    println!();
    println!("2. A healthy version: {HEALTHY}");
    let healthy = roll_out(ns, &load, HEALTHY, clock).await?;
    let after_promotion = observe(&load, clock).await;

    println!();
    println!(
        "3. A faulty version: {FAULTY} (podinfo --random-error: 500, 400 or 409 in one second \
         out of three)"
    );
    let faulty = roll_out(ns, &load, FAULTY, clock).await?;
    let after_rollback = observe(&load, clock).await;

    let report = Report {
        namespace: ns.name.clone(),
        weights: analysis_weights(&docs),
        initialized_after,
        healthy,
        faulty,
        before,
        after_promotion,
        after_rollback,
        answers: load.tally(),
        target_image: image_of(&ns.deployment(NAME).await),
        took: clock.0.elapsed(),
    };
    println!();
    print_summary(&report, &log);
    Ok(report)
}

/// Counts the answers for a few seconds, and prints them.
async fn observe(load: &Load, clock: Clock) -> Tally {
    let start = load.tally();
    tokio::time::sleep(AFTERWARDS).await;
    let t = load.tally().since(&start);
    println!(
        "{} answers over the last {} s: {}",
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
async fn roll_out(ns: &TestNs, load: &Load, image: &str, clock: Clock) -> anyhow::Result<Rollout> {
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
    ns.set_image(NAME, image).await;
    println!("{} image set to {image}", clock.stamp());
    let metrics: Vec<String> = current
        .spec
        .analysis
        .iter()
        .flat_map(|a| a.metrics.iter().flatten())
        .map(|m| m.name.clone())
        .collect();
    println!(
        "        {:<14} {:>6}   {:<16} {:<24} analysis: {}",
        "phase",
        "weight",
        "canary answered",
        "errors",
        metrics.join(", ")
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
            let step = Step {
                ended: clock.0.elapsed(),
                phase,
                weight,
                answers: now.since(&step_start),
                checks,
                failed_checks: s.failed_checks,
            };
            // Until fledge picks the new revision up, the previous rollout's phase stays.
            if moving {
                print_step(&step, threshold, clock);
                steps.push(step);
            }
            step_start = now;
            (phase, weight) = (s.phase, s.canary_weight);
        }
        moving |= !matches!(
            s.phase,
            CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed
        );
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
                CanaryPhase::Succeeded => println!(
                    "{} Succeeded      promoted in {:.0} s: podinfo-primary runs {}",
                    clock.stamp(),
                    took.as_secs_f64(),
                    tag(&primary_image)
                ),
                _ => println!(
                    "{} Failed         rolled back in {:.0} s ({}): podinfo-primary runs {}",
                    clock.stamp(),
                    took.as_secs_f64(),
                    rolled_back.as_deref().unwrap_or("no RolledBack Event"),
                    tag(&primary_image)
                ),
            }
            return Ok(Rollout {
                image: image.to_string(),
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
    let share = format!("{:5.1}% of {:>3}", step.canary_percent(), answers.total());
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
    println!(
        "{} {:<14} {:>5}%   {share:<16} {errors:<24} {analysis}",
        clock.stamp(),
        step.phase.as_str(),
        step.weight
    );
    let failed = step.checks.iter().flat_map(|r| &r.metrics);
    for m in failed.filter(|m| !m.passed) {
        let reason = m
            .reason
            .clone()
            .unwrap_or_else(|| format!("metric {}: failed", m.name));
        println!(
            "        failed checks {} of {threshold}: {reason}",
            step.failed_checks
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

fn print_summary(r: &Report, log: &std::path::Path) {
    let (h, f) = (&r.healthy, &r.faulty);
    println!("Summary");
    println!(
        "  initialized in {:.0} s; the whole story took {:.0} s",
        r.initialized_after.as_secs_f64(),
        r.took.as_secs_f64()
    );
    println!(
        "  {:<13} {} in {:.0} s; the canary served {}",
        tag(&h.image),
        h.phase,
        h.took.as_secs_f64(),
        shares_text(&h.shares())
    );
    println!(
        "  {:<13} {} in {:.0} s after {} failed checks; {}",
        tag(&f.image),
        f.phase,
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
    println!(
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
        println!(
            "    (a 503 is the gateway's while the canary has no endpoint yet: kwok makes its Pod \
             ready at once, and the local\n    stand-in for the kubelet starts its podinfo and \
             writes its EndpointSlice a moment later)"
        );
    }
    println!(
        "  requests sent through the Gateway: {} ({:.1}% answered 200)",
        r.answers.total(),
        percent(r.answers.by_version.values().sum(), &r.answers)
    );
    println!(
        "  podinfo-primary runs {}; the Deployment podinfo still names {} until a new image \
         replaces it",
        f.primary_image, r.target_image
    );
    println!("  watch the Canary:  {}", watch_command(&r.namespace));
    println!("  controller log:    {}", log.display());
}
