//! Background jobs: one per canary and command, as Flagger's task runner keeps them. A call
//! whose job is already running starts nothing, so a controller calling the `rollout` webhook
//! every interval keeps exactly one load running; a job ends at its bound, at the service's
//! job timeout, when cancelled, or when the service stops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::metrics::{JobObserver, Metrics};
use super::task::Work;
use crate::plan::Plan;
use crate::report::Report;

/// A canary, as `namespace/name`.
pub type CanaryKey = String;

/// A running job, as `GET /jobs` lists it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct JobInfo {
    /// Its number, unique in this process.
    pub id: u64,
    /// `namespace/name` of the canary.
    pub canary: String,
    /// The command line or the native fields.
    pub command: String,
    /// Seconds since the Unix epoch when it started.
    pub started: u64,
}

struct Running {
    info: JobInfo,
    cancel: CancellationToken,
}

/// What [`Jobs::start`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Started {
    /// A new job with this id.
    New(u64),
    /// The same canary's same command was running already (this id); nothing started.
    AlreadyRunning(u64),
}

/// How a job ended, with the figures of a load.
#[derive(Debug)]
pub enum Outcome {
    /// A load job's report.
    Load(Report),
    /// A shell command's exit status and combined output.
    Shell { ok: bool, output: String },
    /// It could not start.
    Failed(String),
}

/// The running jobs.
pub struct Jobs {
    running: Mutex<HashMap<(CanaryKey, String), Running>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
    /// The longest a job may run (Flagger's `-timeout`).
    pub timeout: Duration,
    shutdown: CancellationToken,
    idle: tokio::sync::Notify,
}

impl Jobs {
    /// An empty set; jobs run at most `timeout`.
    pub fn new(metrics: Arc<Metrics>, timeout: Duration) -> Jobs {
        Jobs {
            running: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
            timeout,
            shutdown: CancellationToken::new(),
            idle: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(CanaryKey, String), Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `work` for `canary` in the background unless the same command of the same
    /// canary is running. `log_output` logs the summary when it ends.
    pub fn start(
        self: &Arc<Self>,
        canary: CanaryKey,
        command: String,
        work: Work,
        log_output: bool,
    ) -> Started {
        let key = (canary.clone(), command.clone());
        let cancel = self.shutdown.child_token();
        let id = {
            let mut running = self.lock();
            if let Some(r) = running.get(&key) {
                return Started::AlreadyRunning(r.info.id);
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let started = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            running.insert(
                key.clone(),
                Running {
                    info: JobInfo {
                        id,
                        canary: canary.clone(),
                        command: command.clone(),
                        started,
                    },
                    cancel: cancel.clone(),
                },
            );
            id
        };
        self.metrics.job_started();
        tracing::info!(canary = %canary, job = id, command = %command, "job started");
        let jobs = self.clone();
        tokio::spawn(async move {
            let outcome = jobs.execute(&canary, &command, &work, cancel.clone()).await;
            let result = describe(&outcome, &cancel);
            log_end(&canary, id, &command, &outcome, log_output);
            jobs.metrics.job_ended(&canary, result);
            let mut running = jobs.lock();
            if running.get(&key).is_some_and(|r| r.info.id == id) {
                running.remove(&key);
            }
            if running.is_empty() {
                jobs.idle.notify_waiters();
            }
        });
        Started::New(id)
    }

    /// Runs `work` to its end (bounded by the job timeout and `cancel`), for a background job
    /// or a blocking call.
    pub async fn execute(
        &self,
        canary: &str,
        command: &str,
        work: &Work,
        cancel: CancellationToken,
    ) -> Outcome {
        match work {
            Work::Load(plan) => self.load(canary, plan, cancel).await,
            Work::Shell { program } => self.shell(program, command, cancel).await,
        }
    }

    async fn load(&self, canary: &str, plan: &Plan, cancel: CancellationToken) -> Outcome {
        let observer = Arc::new(JobObserver {
            metrics: self.metrics.clone(),
            canary: canary.to_string(),
            targets: plan.targets.iter().map(|t| t.label()).collect(),
        });
        let run = crate::engine::run(plan, cancel.clone(), None, Some(observer));
        tokio::pin!(run);
        let result = tokio::select! {
            r = &mut run => r,
            _ = tokio::time::sleep(self.timeout) => {
                cancel.cancel();
                run.await
            }
        };
        match result {
            Ok(report) => Outcome::Load(report),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    async fn shell(&self, program: &str, command: &str, cancel: CancellationToken) -> Outcome {
        let child = tokio::process::Command::new(program)
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        tokio::select! {
            out = child => match out {
                Ok(out) => {
                    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
                    output.push_str(&String::from_utf8_lossy(&out.stderr));
                    Outcome::Shell { ok: out.status.success(), output }
                }
                Err(e) => Outcome::Failed(format!("cannot run {program}: {e}")),
            },
            _ = cancel.cancelled() => Outcome::Failed("cancelled".into()),
            _ = tokio::time::sleep(self.timeout) => Outcome::Failed(format!(
                "timed out after {:?}", self.timeout
            )),
        }
    }

    /// The running jobs, oldest first.
    pub fn list(&self) -> Vec<JobInfo> {
        let mut v: Vec<JobInfo> = self.lock().values().map(|r| r.info.clone()).collect();
        v.sort_by_key(|j| j.id);
        v
    }

    /// Cancels every job of a canary; returns how many.
    pub fn cancel(&self, canary: &str) -> usize {
        let running = self.lock();
        let mine: Vec<_> = running
            .iter()
            .filter(|((c, _), _)| c == canary)
            .map(|(_, r)| r.cancel.clone())
            .collect();
        for c in &mine {
            c.cancel();
        }
        mine.len()
    }

    /// Cancels every job and waits until they have ended, at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(grace, async {
            loop {
                let idle = self.idle.notified();
                if self.lock().is_empty() {
                    return;
                }
                idle.await;
            }
        })
        .await;
    }
}

fn describe(outcome: &Outcome, cancel: &CancellationToken) -> &'static str {
    match outcome {
        Outcome::Load(r) if r.cancelled => "cancelled",
        Outcome::Load(_) => "completed",
        Outcome::Shell { ok: true, .. } => "completed",
        Outcome::Shell { ok: false, .. } => "failed",
        Outcome::Failed(_) if cancel.is_cancelled() => "cancelled",
        Outcome::Failed(_) => "failed",
    }
}

fn log_end(canary: &str, id: u64, command: &str, outcome: &Outcome, log_output: bool) {
    match outcome {
        Outcome::Load(r) => {
            tracing::info!(
                canary = %canary,
                job = id,
                requests = r.requests(),
                successes = r.successes(),
                rate = format!("{:.1}", r.rate()),
                p99_ms = r.quantile(0.99).map(|d| d.as_secs_f64() * 1000.0),
                cancelled = r.cancelled,
                "job finished"
            );
            if log_output {
                let labels: Vec<String> = Vec::new();
                tracing::info!(canary = %canary, job = id, "{}", r.to_text(&labels));
            }
        }
        Outcome::Shell { ok, output } => {
            if *ok {
                if log_output {
                    tracing::info!(canary = %canary, job = id, "{output}");
                }
                tracing::info!(canary = %canary, job = id, command = %command, "command finished");
            } else {
                tracing::error!(canary = %canary, job = id, command = %command, output = %output, "command failed");
            }
        }
        Outcome::Failed(why) => {
            tracing::error!(canary = %canary, job = id, command = %command, "job failed: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Model;

    /// A loopback listener that accepts connections and never answers.
    async fn silent_target() -> (tokio::net::TcpListener, String) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        (l, url)
    }

    fn hanging_load(url: &str, duration: Duration) -> Work {
        let mut plan = Plan::get(url).unwrap();
        plan.duration = Some(duration);
        plan.timeout = None;
        plan.model = Model::OpenLoop { rate: 10.0 };
        Work::Load(Box::new(plan))
    }

    async fn until(jobs: &Jobs, n: usize) {
        for _ in 0..600 {
            if jobs.list().len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("still {} jobs, expected {n}", jobs.list().len());
    }

    #[tokio::test]
    async fn one_job_per_canary_and_command_until_cancelled() {
        let (_listener, url) = silent_target().await;
        let jobs = Arc::new(Jobs::new(
            Arc::new(Metrics::new()),
            Duration::from_secs(3600),
        ));
        let work = hanging_load(&url, Duration::from_secs(3600));
        let first = jobs.start("test/podinfo".into(), "cmd".into(), work.clone(), false);
        let Started::New(id) = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            jobs.start("test/podinfo".into(), "cmd".into(), work.clone(), false),
            Started::AlreadyRunning(id)
        );
        assert!(matches!(
            jobs.start("test/podinfo".into(), "other".into(), work.clone(), false),
            Started::New(_)
        ));
        assert!(matches!(
            jobs.start("prod/podinfo".into(), "cmd".into(), work.clone(), false),
            Started::New(_)
        ));
        assert_eq!(jobs.list().len(), 3);
        assert_eq!(jobs.cancel("test/podinfo"), 2);
        until(&jobs, 1).await;
        assert_eq!(jobs.list()[0].canary, "prod/podinfo");
        // The cancelled command can start again.
        assert!(matches!(
            jobs.start("test/podinfo".into(), "cmd".into(), work, false),
            Started::New(_)
        ));
        // Stopping the service cancels every job and waits for them.
        jobs.shutdown(Duration::from_secs(30)).await;
        assert!(jobs.list().is_empty());
    }

    #[tokio::test]
    async fn a_job_ends_at_its_duration_or_at_the_job_timeout() {
        let (_listener, url) = silent_target().await;
        let jobs = Arc::new(Jobs::new(
            Arc::new(Metrics::new()),
            Duration::from_secs(3600),
        ));
        jobs.start(
            "test/podinfo".into(),
            "short".into(),
            hanging_load(&url, Duration::from_millis(100)),
            true,
        );
        until(&jobs, 0).await;
        // A job longer than the service allows is cut at the job timeout.
        let strict = Arc::new(Jobs::new(
            Arc::new(Metrics::new()),
            Duration::from_millis(100),
        ));
        strict.start(
            "test/podinfo".into(),
            "long".into(),
            hanging_load(&url, Duration::from_secs(3600)),
            false,
        );
        until(&strict, 0).await;
        let metrics = strict.metrics.encode();
        assert!(
            metrics.contains(
                "fledge_loadgen_jobs_total{canary=\"test/podinfo\",result=\"cancelled\"} 1"
            ),
            "{metrics}"
        );
    }
}
