//! The reconciler: observe → ask the engine → execute its plan → write the status.
//!
//! Every decision is the engine's (`fledge-core`); this file only gathers what the engine needs
//! from the cluster and carries out the actions it returns, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use fledge_api::{Canary, CanaryPhase, CanaryStatus, HookType};
use fledge_core::slots::{RolloutSlots, SlotView};
use fledge_core::{Action, ActionClass, CanaryScale, Observations, Readiness, TargetObservation};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event as KubeEvent, EventType, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::configs::ConfigTracker;
use crate::events::Recorder;
use crate::metrics::Metrics;
use crate::routers::{RouteTarget, router_for};
use crate::services::{ApexSelects, build_services};
use crate::webhooks::{Payload, WebhookClient};
use crate::workload::{self, ConfigRef, Workload, primary_name};
use crate::{Error, Result};

/// The finalizer fledge puts on every Canary.
pub const FINALIZER: &str = "fledge.dev/finalizer";
/// The field manager of every object fledge applies.
pub const MANAGER: &str = "fledge";

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Only this namespace, or all.
    pub namespace: Option<String>,
    /// At most this many rollouts in progress cluster-wide (`None`: no limit).
    pub max_concurrent_rollouts: Option<usize>,
    /// Name reported on Events.
    pub reporter: String,
    /// At most this many Canaries reconciled at once (0: no limit).
    pub max_concurrent_reconciles: u16,
    /// Chat alerts: the default provider and delivery settings.
    pub alerts: crate::notify::AlertSettings,
    /// How metric queries run.
    pub analysis: crate::analysis::AnalysisSettings,
    /// How the Git ledger is written.
    pub git: crate::git::GitSettings,
    /// The provider of Canaries that set none (`--mesh-provider`); `gatewayapi:v1` when unset.
    pub mesh_provider: Option<String>,
    /// How primaries are made (`--selector-labels`, `--include-label-prefix`).
    pub workload: workload::PrimaryOptions,
    /// Refuse MetricTemplate and AlertProvider references to other namespaces.
    pub no_cross_namespace_refs: bool,
    /// Where webhooks may connect (`--allow-destination`, the API server's addresses).
    pub destinations: fledge_core::egress::DestinationPolicy,
    /// Where every Event is also posted with Flagger's payload (`--event-webhook`).
    pub event_webhook: Option<String>,
    /// At most this long between two looks at a Canary (`--control-loop-interval`); the
    /// engine's own requeue when unset.
    pub control_loop_interval: Option<Duration>,
    /// The shard whose Canaries this controller handles (`--shard`); all when unset.
    pub shard: Option<fledge_core::shard::Shard>,
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    recorder: Arc<Recorder>,
    webhooks: WebhookClient,
    alerts: Arc<crate::notify::Alerts>,
    analyzer: crate::analysis::Analyzer,
    /// Wakes the Git worker when a record is queued.
    git_wake: Arc<tokio::sync::Notify>,
    /// What the Git worker knows about the queue.
    git_state: Arc<std::sync::Mutex<crate::git::QueueState>>,
    metrics: Arc<Metrics>,
    workloads: Workloads,
    canaries: Store<Canary>,
    configs: ConfigTracker,
    settings: Settings,
    /// For each Canary (by uid), the resourceVersion our last status write replaced. While the
    /// watch still shows that version, the cached object predates our own write: acting on it
    /// would replay a decision already taken (and scale or route from an old status).
    /// Asks the Canary watch for a fresh list, when the cache is found behind the API server.
    canary_relist: crate::watch::Relist,
    /// Per Canary uid: the resource versions our latest status writes replaced (the last
    /// [`WRITES_REMEMBERED`]), each with when. A cached Canary at one of them is older than what
    /// we wrote, also when a direct read let us write again before the watch caught up. Uids and
    /// versions are kept as 64-bit hashes ([`crate::hash64`]): 24 bytes a write instead of two
    /// strings (0.9 MB at N = 1000 in a heap profile, now about a third of it).
    written_over: std::sync::Mutex<std::collections::HashMap<u64, Vec<(u64, std::time::Instant)>>>,
    /// Reports made from decisions whose status write did not land for certain.
    said: crate::said::Said,
    /// Rollout slots given out and not yet visible in the cache, by Canary uid.
    slots_held: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Failed reconciles per Canary, for the backoff of their retries.
    retries: crate::retry::Retries,
    /// For each StatefulSet Canary behind a router (by uid), the revisions its primary and
    /// canary Services were last given to select (`*`: every pod).
    statefulset_services: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
    /// The watches of the routing objects, for drift without reads.
    routes: crate::route_watch::RouteWatch,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let ns = settings.namespace.as_deref();
    let (deployments, dep_stream) = cached_deployments(scoped::<Deployment>(&client, ns));
    let (daemonsets, ds_stream) = cached(scoped::<DaemonSet>(&client, ns), |d| {
        if let Some(spec) = d.spec.as_mut() {
            workload::slim_owned_template(&d.metadata, &mut spec.template);
        }
    });
    let (statefulsets, sts_stream) = cached(scoped::<StatefulSet>(&client, ns), |_| {});
    let (cm_store, cm_stream) = cached(scoped::<PartialObjectMeta<ConfigMap>>(&client, ns), |_| {});
    let (secret_store, secret_stream) =
        cached(scoped::<PartialObjectMeta<Secret>>(&client, ns), |_| {});

    // The Controller's own reflector, as `Controller::new` builds it, with slimmed objects.
    let (canaries, canary_writer) = reflector::store();
    let canary_relist = crate::watch::Relist::default();
    // Which Canaries each workload belongs to, kept from the same events as the cache.
    let target_index = crate::target_index::TargetIndex::default();
    let index_writer = target_index.clone();
    let shard = settings.shard.clone();
    let canary_watch = match shard.as_ref().and_then(fledge_core::shard::Shard::selector) {
        Some(selector) => watcher::Config::default().labels(&selector),
        None => watcher::Config::default(),
    };
    let canary_stream = reflector::reflector(
        canary_writer,
        crate::watch::relisting(
            scoped::<Canary>(&client, ns),
            canary_watch,
            canary_relist.clone(),
        )
        .modify(slim)
        .filter_map(move |ev| {
            futures::future::ready(match ev {
                Ok(e) => crate::watch::keep_owned(e, shard.as_ref()).map(Ok),
                Err(e) => Some(Err(e)),
            })
        })
        .inspect(move |ev| {
            if let Ok(e) = ev {
                index_writer.observe(e);
            }
        }),
    )
    .default_backoff()
    .applied_objects();
    // Canaries whose routing objects were changed outside fledge (see `route_watch`).
    let (route_wake, route_woken) = futures::channel::mpsc::unbounded();
    let controller = Controller::for_stream(canary_stream, canaries.clone())
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(settings.max_concurrent_reconciles),
        )
        .reconcile_on(route_woken);
    let canaries_for_map = canaries.clone();
    let git_wake = Arc::new(tokio::sync::Notify::new());
    let git_state = Arc::new(std::sync::Mutex::new(crate::git::QueueState::default()));
    tokio::spawn(crate::git::run_worker(
        client.clone(),
        settings.namespace.clone(),
        settings.git.clone(),
        git_state.clone(),
        git_wake.clone(),
        metrics.clone(),
    ));
    let ctx = Arc::new(Context {
        git_wake,
        git_state,
        recorder: {
            let recorder = Recorder::new(
                client.clone(),
                Reporter {
                    controller: settings.reporter.clone(),
                    instance: std::env::var("POD_NAME").ok(),
                },
            );
            match &settings.event_webhook {
                Some(url) => Arc::new(recorder.with_event_webhook(
                    url.clone(),
                    WebhookClient::with_policy(settings.destinations.clone())?,
                )),
                None => Arc::new(recorder),
            }
        },
        webhooks: WebhookClient::with_policy(settings.destinations.clone())?,
        alerts: crate::notify::Alerts::start(
            client.clone(),
            Reporter {
                controller: settings.reporter.clone(),
                instance: std::env::var("POD_NAME").ok(),
            },
            settings.alerts.clone(),
            metrics.clone(),
        ),
        analyzer: crate::analysis::Analyzer::new(client.clone(), settings.analysis.clone()),
        routes: crate::route_watch::RouteWatch::new(
            client.clone(),
            settings.namespace.clone(),
            route_wake,
        ),
        client,
        metrics,
        workloads: Workloads {
            deployments,
            daemonsets,
            statefulsets,
        },
        canaries,
        canary_relist,
        configs: ConfigTracker::new(cm_store, secret_store),
        settings,
        written_over: Default::default(),
        said: Default::default(),
        slots_held: Default::default(),
        retries: Default::default(),
        statefulset_services: Default::default(),
    });
    tokio::spawn(count_canaries(ctx.canaries.clone(), ctx.metrics.clone()));
    let (cans_cm, deps_cm) = (canaries_for_map.clone(), ctx.workloads.clone());
    let (cans_sec, deps_sec) = (canaries_for_map.clone(), ctx.workloads.clone());
    let (index_ds, index_sts) = (target_index.clone(), target_index.clone());
    controller
        .watches_stream(dep_stream, move |dep: Workload| {
            canaries_for(&target_index, &dep)
        })
        .watches_stream(ds_stream, move |ds: DaemonSet| canaries_for(&index_ds, &ds))
        .watches_stream(sts_stream, move |sts: StatefulSet| {
            canaries_for(&index_sts, &sts)
        })
        .watches_stream(cm_stream, move |cm: PartialObjectMeta<ConfigMap>| {
            canaries_using(&cans_cm, &deps_cm, &cm, ConfigRef::ConfigMap(cm.name_any()))
        })
        .watches_stream(secret_stream, move |s: PartialObjectMeta<Secret>| {
            canaries_using(&cans_sec, &deps_sec, &s, ConfigRef::Secret(s.name_any()))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile ended with an error");
            }
        })
        .await;
    Ok(())
}

/// Keeps `flagger_canary_total` (Canaries per namespace) up to date from the cache, as often as
/// Flagger's control loop counts them. It does not wait for the cache with `wait_until_ready`:
/// the controller already waits on that signal, and a second waiter on it is never woken (its
/// one-shot channel keeps one waker); before the first list the count is simply empty.
async fn count_canaries(canaries: Store<Canary>, metrics: Arc<Metrics>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let namespaces: Vec<String> = canaries
            .state()
            .iter()
            .map(|c| c.namespace().unwrap_or_default())
            .collect();
        metrics.set_totals(namespaces.iter().map(String::as_str));
    }
}

/// Drops what fledge never reads from a cached object and what makes up most of its size:
/// `managedFields` and kubectl's copy of the whole object in the last-applied annotation (never
/// copied to a primary either).
/// An API in the watched namespace, or in all namespaces.
fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The cache of Deployments, in their compact form ([`Workload`]), and the stream of their
/// changes, which triggers reconciles of the Canaries they concern.
fn cached_deployments(
    api: Api<Deployment>,
) -> (
    Store<Workload>,
    impl futures::Stream<Item = Result<Workload, watcher::Error>> + Send + 'static,
) {
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        futures::TryStreamExt::map_ok(
            crate::watch::relisting(api, watcher::Config::default(), Default::default()),
            |ev| {
                crate::watch::map_event(ev, |mut d| {
                    slim(&mut d);
                    Workload::from_deployment(d)
                })
            },
        ),
    )
    .default_backoff()
    .touched_objects();
    (store, stream)
}

/// A cache of `api`'s objects (slimmed, and cut further by `slim_kind`) and the stream of their
/// changes, which triggers reconciles of the Canaries they concern.
fn cached<K>(
    api: Api<K>,
    slim_kind: fn(&mut K),
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        crate::watch::relisting(api, watcher::Config::default(), Default::default()).modify(
            move |obj| {
                slim(obj);
                slim_kind(obj);
            },
        ),
    )
    .default_backoff()
    .touched_objects();
    (store, stream)
}

fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// kubectl's client-side apply record.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The workloads fledge watches: targets and primaries, Deployments or DaemonSets, and
/// StatefulSet targets (which have no primary).
#[derive(Clone)]
struct Workloads {
    deployments: Store<Workload>,
    daemonsets: Store<DaemonSet>,
    statefulsets: Store<StatefulSet>,
}

impl Workloads {
    /// The Canary's target, a DaemonSet seen as a Deployment ([`workload::daemonset_view`]).
    fn target(&self, canary: &Canary, ns: &str) -> Option<Arc<Workload>> {
        self.get(canary, ns, &canary.spec.target_ref.name)
    }

    /// The Canary's primary, as [`Workloads::target`].
    fn primary(&self, canary: &Canary, ns: &str) -> Option<Arc<Workload>> {
        self.get(canary, ns, &primary_name(&canary.spec.target_ref.name))
    }

    fn get(&self, canary: &Canary, ns: &str, name: &str) -> Option<Arc<Workload>> {
        if canary.spec.targets_knative() {
            // A Knative Service is read with its Revisions ([`crate::knative::in_hand`]).
            None
        } else if is_statefulset(canary) {
            // Only the target: a StatefulSet is rolled out in place, it has no primary.
            (name == canary.spec.target_ref.name)
                .then(|| self.statefulset(ns, name))
                .flatten()
                .map(|sts| {
                    Arc::new(Workload::from_deployment(
                        crate::statefulset::deployment_view(&sts),
                    ))
                })
        } else if is_daemonset(canary) {
            self.daemonset(ns, name)
                .map(|ds| Arc::new(Workload::from_deployment(workload::daemonset_view(&ds))))
        } else {
            self.deployments.get(&ObjectRef::new(name).within(ns))
        }
    }

    fn daemonset(&self, ns: &str, name: &str) -> Option<Arc<DaemonSet>> {
        self.daemonsets.get(&ObjectRef::new(name).within(ns))
    }

    fn statefulset(&self, ns: &str, name: &str) -> Option<Arc<StatefulSet>> {
        self.statefulsets.get(&ObjectRef::new(name).within(ns))
    }
}

/// Whether the Canary's target is a StatefulSet.
fn is_statefulset(canary: &Canary) -> bool {
    canary.spec.targets_statefulset()
}

/// Whether the Canary's target is a DaemonSet (else a Deployment).
fn is_daemonset(canary: &Canary) -> bool {
    canary.spec.target_ref.kind.as_deref() == Some("DaemonSet")
}

/// The Canaries a Deployment, DaemonSet or StatefulSet concerns: those whose target or
/// primary it is.
fn canaries_for<K: Resource>(
    index: &crate::target_index::TargetIndex,
    workload: &K,
) -> Vec<ObjectRef<Canary>> {
    let meta = workload.meta();
    index.canaries_for(
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The Canaries whose target references a ConfigMap or Secret.
fn canaries_using<K: Resource>(
    canaries: &Store<Canary>,
    workloads: &Workloads,
    obj: &K,
    r: ConfigRef,
) -> Vec<ObjectRef<Canary>> {
    let ns = obj.meta().namespace.clone();
    canaries
        .state()
        .into_iter()
        .filter(|c| c.namespace() == ns)
        .filter(|c| {
            workloads
                .target(c, ns.as_deref().unwrap_or_default())
                .is_some_and(|d| d.configs.contains(&r))
        })
        .map(|c| ObjectRef::from_obj(&*c))
        .collect()
}

/// A failed reconcile is retried with exponential backoff and jitter per Canary; a failure only
/// a person can fix (reported by the engine, see [`report_blocked`]) waits longer.
fn error_policy(canary: Arc<Canary>, err: &Error, ctx: Arc<Context>) -> Requeue {
    if err.is_conflict() {
        // Written over a version already replaced: the watch brings the newer one at once (a
        // new version wakes the Canary); a short wait covers a watch that is late, and only
        // conflicts that keep coming back are backed off (`Retries::conflicted`).
        let wait = ctx.retries.conflicted(ObjectRef::from_obj(&*canary));
        tracing::debug!(canary = %key(&canary), error = %err, retry_in = ?wait, "conflict; reconciling again");
        return Requeue::requeue(wait);
    }
    ctx.metrics.reconcile_error(err.metric_label());
    let transient = err.is_transient();
    let wait = ctx.retries.failed(ObjectRef::from_obj(&*canary), transient);
    warn!(canary = %key(&canary), error = %err, transient, retry_in = ?wait, "reconcile failed");
    Requeue::requeue(wait)
}

fn key(c: &Canary) -> String {
    format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())
}

async fn reconcile(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Requeue> {
    let span = info_span!("reconcile", canary = %key(&canary));
    async move {
        let started = std::time::Instant::now();
        let fresh = match stale_since(&ctx, &canary) {
            Some(since) if since.elapsed() >= WATCH_LAG_LIMIT => {
                Box::pin(read_directly(&ctx, &canary, since.elapsed())).await
            }
            _ => None,
        };
        let canary = fresh.map(Arc::new).unwrap_or(canary);
        let out = reconcile_inner(&canary, &ctx).await;
        ctx.metrics.reconcile_duration(&canary, started.elapsed());
        match &out {
            Ok(_) => ctx.retries.succeeded(&ObjectRef::from_obj(&*canary)),
            Err(e) => {
                if let Some(blocker) = e.blocker() {
                    Box::pin(report_blocked(&ctx, &canary, blocker)).await;
                }
            }
        }
        out
    }
    .instrument(span)
    .await
}

/// Up to `--max-concurrent-reconciles` of these futures are in flight at once, each as large as
/// its largest state: the calls that need kilobytes of state (a primary's apply, an analysis, a
/// status write) are boxed, so a reconcile holds only the state of the call it waits on.
async fn reconcile_inner(canary: &Canary, ctx: &Context) -> Result<Requeue> {
    // The cluster-wide defaults (--gitops-*, --mesh-provider) fill what the Canary leaves unset.
    let effective;
    let gitops = ctx
        .settings
        .git
        .defaults
        .apply(canary.spec.gitops.as_deref())
        .map(Box::new);
    let provider = match (&canary.spec.provider, &ctx.settings.mesh_provider) {
        (Some(p), _) if !p.is_empty() => None,
        (_, default) => default.clone(),
    };
    let canary = if gitops == canary.spec.gitops && provider.is_none() {
        canary
    } else {
        let mut c = Box::new(canary.clone());
        c.spec.gitops = gitops;
        if provider.is_some() {
            c.spec.provider = provider;
        }
        effective = c;
        &*effective
    };
    let ns = canary.namespace().unwrap_or_else(|| "default".into());
    let deleting = canary.meta().deletion_timestamp.is_some();
    let has_finalizer = canary.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        forget_canary(ctx, canary);
        return Ok(Requeue::await_change());
    }
    if !deleting && !has_finalizer {
        Box::pin(add_finalizer(canary, ctx)).await?;
        remember_write(ctx, canary);
        return Ok(Requeue::requeue(Duration::ZERO));
    }
    if !caches_ready(ctx).await {
        // Deployments, ConfigMaps or Secrets not listed yet: deciding now would take a
        // missing object for an absent one.
        return Ok(Requeue::requeue(Duration::from_millis(500)));
    }

    if is_stale(ctx, canary) {
        // Our last status write has not reached the watch yet; its event brings us back.
        return Ok(Requeue::requeue(Duration::from_millis(200)));
    }
    let status = canary.status.clone().unwrap_or_default();
    let target = ctx.workloads.target(canary, &ns);
    let primary = ctx.workloads.primary(canary, &ns);
    let sts = match is_statefulset(canary)
        .then(|| ctx.workloads.statefulset(&ns, &canary.spec.target_ref.name))
        .flatten()
    {
        Some(s) => Some(Box::pin(statefulset_in_hand(ctx, canary, &ns, &s, deleting)).await?),
        None => None,
    };
    let kn = match canary.spec.targets_knative() {
        true => Box::pin(crate::knative::in_hand(&ctx.client, canary, &ns)).await?,
        false => None,
    };

    let tracked = match &target {
        Some(t) => Box::pin(ctx.configs.checksums(&ctx.client, &ns, t)).await?,
        None => BTreeMap::new(),
    };
    let mut obs = Observations::at(jiff::Timestamp::now());
    obs.generation = canary.meta().generation;
    obs.deleting = deleting;
    obs.rollout_slots = rollout_slots(ctx, canary, &status);
    obs.confined_to_namespace = ctx.settings.no_cross_namespace_refs.then(|| ns.clone());
    obs.default_alert_severity = ctx.alerts.default_severity();
    obs.target = target.as_deref().map(|t| TargetObservation {
        spec_hash: t.template_hash.clone(),
        tracked_configs: tracked
            .iter()
            .map(|(r, sum)| (r.key(), sum.clone()))
            .collect(),
        readiness: match &sts {
            Some(v) => v.canary(),
            None => readiness(t),
        },
    });
    obs.primary = match &sts {
        Some(v) => Some(v.stable()),
        None => primary.as_deref().map(readiness),
    };
    if let Some(v) = &kn {
        // The latest Revision is the revision under test; the promoted one is the primary.
        obs.target = Some(TargetObservation {
            spec_hash: v.latest.clone(),
            tracked_configs: BTreeMap::new(),
            // Leaving with revertOnDeletion, the Service's traffic goes to its latest *ready*
            // Revision (Knative resolves `latestRevision` so): it can be handed back as soon as
            // there is one, whether or not the latest Revision ever becomes ready.
            readiness: if deleting && v.serves_without_fledge {
                Readiness::ready(1)
            } else {
                v.latest_ready
            },
        });
        obs.primary = v.primary_ready;
    }
    obs.statefulset_replicas = sts.as_ref().map(|v| v.replicas);
    obs.canary_name = canary.name_any();
    obs.images = match &kn {
        Some(v) => fledge_core::ContainerImages {
            target: v.images.clone(),
            primary: v.primary_images.clone(),
        },
        None => fledge_core::ContainerImages {
            target: container_images(target.as_deref()),
            primary: match &sts {
                Some(v) => {
                    Box::pin(statefulset_promoted_images(ctx, &ns, v, target.as_deref())).await?
                }
                None => container_images(primary.as_deref()),
            },
        },
    };
    if canary.spec.gitops.is_some() {
        let who = format!("{ns}/{}", canary.name_any());
        obs.git_queue = ctx
            .git_state
            .lock()
            .ok()
            .map(|q| q.observe(&who, ctx.settings.git.alert_after));
    }

    let needs = fledge_core::needs(&canary.spec, &status, &obs);
    if !needs.webhooks.is_empty() {
        obs.webhooks = call_gating_webhooks(ctx, canary, &status, &needs.webhooks).await;
    }
    if needs.metrics {
        let pods = match (&sts, &kn) {
            (Some(v), _) => v.pods(),
            (None, Some(v)) => crate::analysis::PodSets {
                canary_revision: Some(v.latest.clone()),
                stable_revision: v.primary.clone(),
                ..Default::default()
            },
            (None, None) => crate::analysis::PodSets::copies(&canary.spec.target_ref.name),
        };
        obs.metrics = Box::pin(ctx.analyzer.run(canary, &pods)).await;
    }
    if needs.ledger {
        obs.ledger = Box::pin(crate::git::read_ledger(
            &ctx.client,
            &ctx.settings.git,
            canary,
        ))
        .await;
    }
    // A StatefulSet's traffic follows its pods: there are no routes to read back; a Knative
    // Service's routes need no selector. Nor are routes read again after a decision from this
    // same version set them and failed before its status was written: they give what it
    // decided, not drift, and the decision is taken again.
    let replaying = ctx.said.acted(
        &canary.uid().unwrap_or_default(),
        &canary.resource_version().unwrap_or_default(),
    );
    if needs.routes && !replaying && kn.is_some() {
        obs.routes =
            crate::drift::read_routes(&ctx.client, &ctx.routes, canary, ("", ""), &status).await;
    } else if needs.routes
        && !replaying
        && sts.is_none()
        && let Some(t) = target.as_deref()
        && let Ok((label, value)) = workload::selector_label(t, &ctx.settings.workload)
    {
        obs.routes =
            crate::drift::read_routes(&ctx.client, &ctx.routes, canary, (&label, &value), &status)
                .await;
    }

    let plan = fledge_core::plan(&canary.spec, &status, &obs);
    record_step_lateness(ctx, canary, &status, &plan.status, obs.now);
    release_slot(ctx, canary, &plan.status);
    let mut requeue = Duration::from_secs(60);
    let exec = Exec {
        ctx,
        canary,
        ns: &ns,
        target: target.as_deref(),
        primary: primary.as_deref(),
        sts: sts.as_ref(),
        kn: kn.as_ref(),
        tracked: &tracked,
        next: &plan.status,
    };
    let mut release = false;
    let version = (
        canary.uid().unwrap_or_default(),
        canary.resource_version().unwrap_or_default(),
    );
    let said_before = ctx.said.before(&version.0, &version.1);
    let mut said = Vec::new();
    let mut acted = false;
    let executed = async {
        for action in &plan.actions {
            match action {
                Action::RequeueAfter(d) => requeue = *d,
                Action::RemoveFinalizer => release = true,
                // A failure stops the plan; its status is not written, so the same decision is
                // taken again on the retry (and one only a person can fix is reported first).
                a if a.class() == ActionClass::Cluster => {
                    // One that writes the routing objects makes the next check read them
                    // afresh rather than trust a watch that may not have shown the write yet.
                    // A Knative Service is its own routing object: pinning its primary is such
                    // a write too.
                    if writes_routing(a, kn.is_some()) {
                        ctx.routes.forget(&version.0);
                    }
                    acted = true;
                    Box::pin(exec.cluster(a)).await?
                }
                Action::RecordLedger(entry) => Box::pin(exec.record_ledger(entry)).await?,
                Action::RevertInGit {
                    revision,
                    reason,
                    images,
                    branch,
                } => {
                    Box::pin(exec.revert_in_git(revision, reason, images, branch.as_deref()))
                        .await?
                }
                a => {
                    let key = crate::said::key(a);
                    if said_before.contains(&key) {
                        info!(action = ?a, "already reported from this version of the Canary: not said again");
                    } else {
                        Box::pin(exec.report(a)).await;
                        said.push(key);
                    }
                }
            }
        }
        Box::pin(write_status(ctx, canary, &status, &plan.status)).await
    }
    .await;
    if let Err(e) = executed {
        // The same decision may come again from this version: say nothing of it twice, and
        // do not take what it already did for drift.
        ctx.said.unconfirmed(&version.0, &version.1, said, acted);
        return Err(e);
    }
    if release {
        if let Some(v) = &sts {
            // fledge is leaving: the StatefulSet rolls its pods out on its own again.
            Box::pin(crate::statefulset::set_partition(&ctx.client, &ns, v, 0)).await?;
        }
        exec.collect_routing().await?;
        Box::pin(remove_finalizer(canary, ctx)).await?;
        forget_canary(ctx, canary);
        return Ok(Requeue::await_change());
    }
    if let Some(bound) = ctx.settings.control_loop_interval {
        requeue = requeue.min(bound);
    }
    if kn.is_some() {
        // Knative's new Revisions are not watched: they are looked for every interval, as
        // Flagger looks for them.
        requeue = requeue.min(canary.spec.analysis_or_default().interval());
    }
    Ok(Requeue::requeue(on_engine_clock(requeue, obs.now)))
}

/// Whether `action` may change what the routes read back give: the engine's routing writes,
/// and for a Knative Service (its own routing object) the pinning of its primary Revision too.
fn writes_routing(action: &Action, knative: bool) -> bool {
    action.writes_routing()
        || (knative
            && matches!(
                action,
                Action::EnsurePrimary
                    | Action::EnsurePrimaryFrom { .. }
                    | Action::PromotePrimary { .. }
            ))
}

/// The engine keeps time in whole seconds: it decides at `now` truncated to the second, and a
/// requeue it asks for is due that long after the truncated time (e.g. the next analysis step
/// at the last step's whole second plus the interval). Counted from the real `now` it would come
/// up to a second late.
fn on_engine_clock(requeue: Duration, now: jiff::Timestamp) -> Duration {
    let into_second = u64::try_from(now.subsec_nanosecond()).unwrap_or(0);
    requeue.saturating_sub(Duration::from_nanos(into_second))
}

/// Whether the caches the decision reads hold their first full list (waits up to 5 s).
async fn caches_ready(ctx: &Context) -> bool {
    let ready = async {
        ctx.workloads.deployments.wait_until_ready().await.is_ok()
            && ctx.workloads.daemonsets.wait_until_ready().await.is_ok()
            && ctx.workloads.statefulsets.wait_until_ready().await.is_ok()
            && ctx.configs.wait_until_ready().await
    };
    tokio::time::timeout(Duration::from_secs(5), ready)
        .await
        .unwrap_or(false)
}

/// Whether the cached Canary is older than our own last status write.
fn is_stale(ctx: &Context, canary: &Canary) -> bool {
    stale_since(ctx, canary).is_some()
}

/// How long a watch may take to bring back our own status write before the Canary is read
/// from the API server instead. A watch delivers in milliseconds; one that has not in this
/// long is broken (a control plane that restarted under it), and waiting on it would stop the
/// rollout until the watch is next renewed, minutes later.
const WATCH_LAG_LIMIT: Duration = Duration::from_secs(5);

/// How long a watch that still gives other objects may lag behind our own status write
/// before it is taken for broken all the same and the Canaries are listed afresh. Under a wave
/// of a thousand rollbacks on a loaded control plane the watch runs 5 s behind and is not
/// broken: the direct read covers that, and a list of every Canary at such a time costs the
/// most memory the controller ever holds (at N = 1000 a relist made the heap's peak, 52 MB
/// against 33 MB before it). A watch that has given nothing since our write is broken at once.
const WATCH_BROKEN_AFTER: Duration = Duration::from_secs(60);

/// How many of its own status writes per Canary the controller remembers.
const WRITES_REMEMBERED: usize = 16;

/// When we wrote over the cached Canary's version, if it is older than one of our status
/// writes.
fn stale_since(ctx: &Context, canary: &Canary) -> Option<std::time::Instant> {
    let uid = crate::hash64(canary.meta().uid.as_deref()?);
    let rv = crate::hash64(canary.meta().resource_version.as_deref()?);
    let map = ctx
        .written_over
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.get(&uid)?
        .iter()
        .find(|(written_over, _)| *written_over == rv)
        .map(|(_, at)| *at)
}

/// The Canary as the API server has it now, when the cache has lagged behind our own write
/// for `lag`; `None` when it cannot be read (the reconcile then waits on the cache as before).
async fn read_directly(ctx: &Context, canary: &Canary, lag: Duration) -> Option<Canary> {
    let api: Api<Canary> =
        Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
    match api.get(&canary.name_any()).await {
        Ok(mut fresh) => {
            // A fresh list of the Canaries when the watch looks broken, at most once a minute
            // (`watch::RELIST_GAP`).
            let written = std::time::Instant::now().checked_sub(lag);
            let broken = lag >= WATCH_BROKEN_AFTER
                || written.is_none_or(|t| ctx.canary_relist.silent_since(t));
            let relisted = broken
                && fresh.resource_version() != canary.resource_version()
                && ctx.canary_relist.now();
            warn!(
                lag_seconds = lag.as_secs(),
                relisted,
                "the Canary watch has not brought back our last status write; read the Canary \
                 from the API server instead"
            );
            slim(&mut fresh);
            Some(fresh)
        }
        Err(e) => {
            warn!(error = %e, "the Canary watch lags and the Canary cannot be read either");
            None
        }
    }
}

/// A reconcile failed for a reason only a person can fix (a provider that cannot route as
/// asked, an unusable target, a missing CRD, a refused object): the engine decides the report
/// from that observation (`Ready=False` naming the fix, a warning Event and an alert when the
/// report is new), and only that is written; the plan that failed is taken again on the retry.
async fn report_blocked(ctx: &Context, canary: &Canary, blocker: fledge_core::Blocker) {
    let ns = canary.namespace().unwrap_or_default();
    let status = canary.status.clone().unwrap_or_default();
    let mut obs = Observations::at(jiff::Timestamp::now());
    obs.generation = canary.meta().generation;
    obs.blocked = Some(blocker);
    obs.default_alert_severity = ctx.alerts.default_severity();
    obs.confined_to_namespace = ctx.settings.no_cross_namespace_refs.then(|| ns.clone());
    let plan = fledge_core::plan(&canary.spec, &status, &obs);
    let target = ctx.workloads.target(canary, &ns);
    let primary = ctx.workloads.primary(canary, &ns);
    let exec = Exec {
        ctx,
        canary,
        ns: &ns,
        target: target.as_deref(),
        primary: primary.as_deref(),
        sts: None,
        kn: None,
        tracked: &BTreeMap::new(),
        next: &plan.status,
    };
    let version = (
        canary.uid().unwrap_or_default(),
        canary.resource_version().unwrap_or_default(),
    );
    let said_before = ctx.said.before(&version.0, &version.1);
    let mut said = Vec::new();
    for action in &plan.actions {
        if action.class() == ActionClass::Report {
            let key = crate::said::key(action);
            if !said_before.contains(&key) {
                exec.report(action).await;
                said.push(key);
            }
        }
    }
    if let Err(e) = write_status(ctx, canary, &status, &plan.status).await {
        ctx.said.unconfirmed(&version.0, &version.1, said, false);
        warn!(error = %e, "cannot write the blocked status");
    }
}

/// Remembers that we just wrote over this version of the Canary.
fn remember_write(ctx: &Context, canary: &Canary) {
    let meta = canary.meta();
    if let (Some(uid), Some(rv)) = (meta.uid.as_deref(), meta.resource_version.as_deref()) {
        let mut map = ctx
            .written_over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let writes = map.entry(crate::hash64(uid)).or_default();
        if writes.len() == WRITES_REMEMBERED {
            writes.remove(0);
        }
        writes.push((crate::hash64(rv), std::time::Instant::now()));
    }
}

/// Forgets what is kept for a Canary that is gone (its uid never comes back): its last read of
/// the routes, its own status writes and its metrics' series.
fn forget_canary(ctx: &Context, canary: &Canary) {
    let uid = canary.meta().uid.as_deref().unwrap_or_default();
    ctx.routes.forget(uid);
    ctx.metrics.forget(canary);
    ctx.written_over
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&crate::hash64(uid));
}

/// When the plan takes an analysis step, records how late it is against its schedule (the
/// previous step plus the interval).
fn record_step_lateness(
    ctx: &Context,
    canary: &Canary,
    old: &CanaryStatus,
    new: &CanaryStatus,
    now: jiff::Timestamp,
) {
    let (Some(before), Some(after)) = (old.rollout.as_ref(), new.rollout.as_ref()) else {
        return;
    };
    if after.step <= before.step {
        return;
    }
    let late = before.last_step_time.as_ref().map(|last| {
        let interval = canary.spec.analysis_or_default().interval().as_secs_f64();
        let since = now.duration_since(last.0).as_secs_f64();
        (since - interval).max(0.0)
    });
    // At the decision, before the plan's actions run (the benchmarks time steps by this line).
    debug!(step = after.step, late_seconds = late, "analysis step");
    if let Some(late) = late {
        ctx.metrics.step_late(Duration::from_secs_f64(late));
    }
}

/// The rollout slots as this Canary sees them (`--max-concurrent-rollouts`): the other
/// Canaries' slot state from the cache, read from their statuses so that the queue survives a
/// restart. Reconciles run concurrently and the cache lags behind status writes, so a slot the
/// engine's rule gives this Canary is also held in memory until the cache shows that rollout (or
/// the plan did not start it); other Canaries' holds count as rollouts in progress.
fn rollout_slots(ctx: &Context, canary: &Canary, status: &CanaryStatus) -> RolloutSlots {
    let Some(limit) = ctx.settings.max_concurrent_rollouts else {
        return RolloutSlots::unlimited();
    };
    let all = ctx.canaries.state();
    let mut held = ctx
        .slots_held
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // A hold ends once the cache shows the Canary rolling out, or after a minute at most.
    held.retain(|uid, since| {
        since.elapsed() < Duration::from_secs(60)
            && !all.iter().any(|c| {
                c.uid().as_deref() == Some(uid.as_str())
                    && c.status.as_ref().is_some_and(|s| s.phase.is_rolling_out())
            })
    });
    let me = canary.uid().unwrap_or_default();
    let mut others: Vec<SlotView> = all
        .iter()
        .filter(|c| c.uid().as_deref() != Some(me.as_str()))
        .map(|c| {
            let mut view = SlotView::of(key(c), c.status.as_ref());
            view.rolling_out |= c.uid().is_some_and(|u| held.contains_key(&u));
            view
        })
        .collect();
    // A hold of a Canary the cache does not list yet still takes its slot.
    for uid in held.keys().filter(|u| **u != me) {
        if !all.iter().any(|c| c.uid().as_deref() == Some(uid.as_str())) {
            others.push(SlotView::holding(format!("uid/{uid}")));
        }
    }
    let slots = RolloutSlots {
        limit: Some(limit),
        me: key(canary),
        others,
    };
    if fledge_core::slots::admits(status, &slots) {
        held.insert(me, std::time::Instant::now());
    }
    slots
}

/// Gives back a slot held for a Canary whose plan did not start a rollout.
fn release_slot(ctx: &Context, canary: &Canary, next: &CanaryStatus) {
    if ctx.settings.max_concurrent_rollouts.is_none() || next.phase.is_rolling_out() {
        return;
    }
    if let Some(uid) = canary.uid() {
        ctx.slots_held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&uid);
    }
}

/// A StatefulSet target behind a router (any provider but `kubernetes`).
fn routed(canary: &Canary) -> bool {
    canary.spec.provider_or_default() != "kubernetes"
}

/// The Services of a StatefulSet target: the apex selects every pod; behind a router, during
/// a rollout's steps the primary and canary Services select the pods by revision
/// (`controller-revision-hash`: the StatefulSet's current and update revisions). While every
/// pod moves (promotion, partition 0) and between rollouts both select every pod, so the
/// primary Service never runs out of endpoints when the last promoted pods move. Applied when
/// what they select changes (and once after a restart of the controller).
async fn ensure_statefulset_services(
    ctx: &Context,
    canary: &Canary,
    ns: &str,
    view: &crate::statefulset::View,
    owner: &OwnerReference,
) -> Result<()> {
    let target = ctx
        .workloads
        .target(canary, ns)
        .ok_or_else(|| Error::InvalidTarget(format!("StatefulSet {ns}/{} not found", view.name)))?;
    let (label, value) = workload::selector_label(&target, &ctx.settings.workload)?;
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(ctx.client.clone(), ns);
    let [apex, primary, canary_svc] =
        build_services(canary, owner, (&label, &value), ApexSelects::Canary);
    let by_revision = |mut svc: k8s_openapi::api::core::v1::Service, revision: Option<&str>| {
        if let Some(spec) = svc.spec.as_mut() {
            let mut selector = BTreeMap::from([(label.clone(), value.clone())]);
            if let Some(r) = revision {
                selector.insert("controller-revision-hash".to_string(), r.to_string());
            }
            spec.selector = Some(selector);
        }
        svc
    };
    let mut services = vec![apex];
    if routed(canary) {
        let (primary_rev, canary_rev) = statefulset_service_revisions(view);
        services.push(by_revision(primary, primary_rev));
        services.push(by_revision(canary_svc, canary_rev));
    }
    for svc in services {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mut value = serde_json::to_value(&svc)?;
        value["apiVersion"] = json!("v1");
        value["kind"] = json!("Service");
        api.patch(&name, &Exec::apply_params(), &Patch::Apply(value))
            .await?;
    }
    Ok(())
}

/// The revisions the primary and canary Services of a StatefulSet behind a router select
/// (`None`: every pod), see [`ensure_statefulset_services`].
fn statefulset_service_revisions(view: &crate::statefulset::View) -> (Option<&str>, Option<&str>) {
    if view.settled() || view.partition == 0 || view.current_revision == view.update_revision {
        (None, None)
    } else {
        (
            Some(view.current_revision.as_str()),
            Some(view.update_revision.as_str()),
        )
    }
}

/// A StatefulSet target as this reconcile sees it. One that cannot be rolled out (OnDelete)
/// blocks the Canary with the fix. Between rollouts (every pod on one revision) its partition
/// is held at the replica count, so that a new template moves no pod before the first step.
async fn statefulset_in_hand(
    ctx: &Context,
    canary: &Canary,
    ns: &str,
    sts: &StatefulSet,
    deleting: bool,
) -> Result<crate::statefulset::View> {
    let mut view = crate::statefulset::View::of(sts);
    if let Some(why) = crate::statefulset::unusable(&view) {
        return Err(Error::InvalidTarget(why));
    }
    let initialized = canary
        .status
        .as_ref()
        .is_some_and(|s| s.last_applied_spec.is_some());
    if initialized && !deleting && view.settled() && view.partition != view.replicas {
        crate::statefulset::set_partition(&ctx.client, ns, &view, view.replicas).await?;
        view.partition = view.replicas;
    }
    // Behind a router, the Services follow the revisions before anything is routed.
    if initialized && !deleting && routed(canary) && !view.current_revision.is_empty() {
        let key = canary.uid().unwrap_or_default();
        let revisions = {
            let (p, c) = statefulset_service_revisions(&view);
            (p.unwrap_or("*").to_string(), c.unwrap_or("*").to_string())
        };
        let known = ctx
            .statefulset_services
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned());
        if known.as_ref() != Some(&revisions) {
            let owner = canary.controller_owner_ref(&()).unwrap_or_default();
            ensure_statefulset_services(ctx, canary, ns, &view, &owner).await?;
            if let Ok(mut m) = ctx.statefulset_services.lock() {
                m.insert(key, revisions);
            }
            view.services_moved = true;
        }
        if !view.settled() && view.partition < view.replicas {
            let service = format!("{}-canary", canary.spec.apex_service_name());
            view.canary_endpoints =
                Some(crate::statefulset::ready_endpoints(&ctx.client, ns, &service).await?);
        }
    }
    Ok(view)
}

/// The images of a StatefulSet's promoted revision (its current revision's template, read
/// from its ControllerRevision while another is in flight), `(container, image)`.
async fn statefulset_promoted_images(
    ctx: &Context,
    ns: &str,
    view: &crate::statefulset::View,
    target: Option<&Workload>,
) -> Result<Vec<(String, String)>> {
    if view.settled() || view.current_revision.is_empty() {
        return Ok(container_images(target));
    }
    let template =
        crate::statefulset::revision_template(&ctx.client, ns, &view.current_revision).await?;
    Ok(template
        .spec
        .map(|p| {
            p.containers
                .into_iter()
                .filter_map(|c| Some((c.name, c.image?)))
                .collect()
        })
        .unwrap_or_default())
}

/// `(container, image)` of a workload's containers.
fn container_images(d: Option<&Workload>) -> Vec<(String, String)> {
    d.map(Workload::images).unwrap_or_default()
}

fn readiness(d: &Workload) -> Readiness {
    let spec_replicas = d.replicas.unwrap_or(1);
    let st = &d.status;
    let generation = d.metadata.generation.unwrap_or(0);
    Readiness {
        generation_observed: st.observed_generation.unwrap_or(0) >= generation,
        desired: spec_replicas,
        current: st.replicas.unwrap_or(0),
        updated: st.updated_replicas.unwrap_or(0),
        available: st.available_replicas.unwrap_or(0),
    }
}

/// The `checksum` of webhook payloads: the revision under test, with its tracked configs.
pub(crate) fn checksum(status: &CanaryStatus) -> String {
    let configs = status
        .tracked_configs
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_bytes()));
    let revision = status.last_applied_spec.as_deref().unwrap_or_default();
    workload::data_checksum(std::iter::once(("revision", revision.as_bytes())).chain(configs))
}

/// The payload of a fire-and-forget webhook (`post-rollout`, `event`) of a plan. Its checksum
/// names the revision the report is about, so it comes from the plan's next status, like the
/// Events' and the alerts': on a new revision the status read before the decision still holds
/// the previous one.
fn report_payload(
    canary: &Canary,
    next: &CanaryStatus,
    hook: HookType,
    phase: CanaryPhase,
    message: &str,
) -> Payload {
    let mut metadata = BTreeMap::new();
    if hook == HookType::Event {
        metadata.insert("eventMessage".to_string(), message.to_string());
        metadata.insert("eventType".to_string(), "Normal".to_string());
    }
    Payload {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        phase,
        checksum: checksum(next),
        metadata,
    }
}

async fn call_gating_webhooks(
    ctx: &Context,
    canary: &Canary,
    status: &CanaryStatus,
    types: &BTreeSet<HookType>,
) -> Vec<fledge_core::WebhookResult> {
    let payload = |phase| Payload {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        phase,
        checksum: checksum(status),
        metadata: BTreeMap::new(),
    };
    let mut calls = Vec::new();
    for t in types {
        for hook in canary.spec.webhooks_of(*t) {
            let p = payload(status.phase);
            let client = ctx.webhooks.clone();
            let t = *t;
            calls.push(async move {
                let out = client.call(&hook, &p).await;
                fledge_core::WebhookResult {
                    hook: t,
                    name: hook.name.clone(),
                    passed: out.passed,
                    message: out.message,
                }
            });
        }
    }
    futures::future::join_all(calls).await
}

/// Executes a plan's actions against the cluster.
struct Exec<'a> {
    ctx: &'a Context,
    canary: &'a Canary,
    ns: &'a str,
    target: Option<&'a Workload>,
    primary: Option<&'a Workload>,
    /// A StatefulSet target, as read this reconcile.
    sts: Option<&'a crate::statefulset::View>,
    /// A Knative Service target, as read this reconcile.
    kn: Option<&'a crate::knative::View>,
    tracked: &'a BTreeMap<ConfigRef, String>,
    /// The status the plan leaves (routers read the session affinity cookies from it).
    next: &'a CanaryStatus,
}

impl Exec<'_> {
    fn owner(&self) -> OwnerReference {
        self.canary
            .controller_owner_ref(&())
            .unwrap_or_else(|| OwnerReference {
                api_version: fledge_api::API_VERSION.into(),
                kind: "Canary".into(),
                name: self.canary.name_any(),
                uid: self.canary.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            })
    }

    fn target(&self) -> Result<&Workload> {
        self.target.ok_or_else(|| self.target_missing())
    }

    fn target_missing(&self) -> Error {
        Error::InvalidTarget(format!(
            "{} {}/{} not found",
            if is_daemonset(self.canary) {
                "DaemonSet"
            } else {
                "Deployment"
            },
            self.ns,
            self.canary.spec.target_ref.name
        ))
    }

    /// Queues a ledger record for Git (when the Canary has `spec.gitops`). A failure to queue
    /// fails the reconcile, so the plan runs again and the record is never lost.
    async fn record_ledger(&self, entry: &fledge_core::LedgerEntry) -> Result<()> {
        info!(event = ?entry.event, revision = %entry.revision, "ledger record");
        let images = |d: Option<&Workload>| -> Vec<String> {
            d.map(|d| d.images().into_iter().map(|(_, image)| image).collect())
                .unwrap_or_default()
        };
        let Some(record) = crate::git::record_for(
            self.canary,
            entry,
            self.next,
            images(self.primary),
            images(self.target),
        ) else {
            return Ok(());
        };
        crate::git::enqueue(
            &self.ctx.client,
            &record,
            self.ctx.settings.git.shard.as_deref(),
        )
        .await?;
        self.ctx.git_wake.notify_one();
        Ok(())
    }

    /// Queues the revert of a rolled-back revision in the GitOps source (when the Canary has
    /// `spec.gitops.path`), with the images and branch the engine decided.
    async fn revert_in_git(
        &self,
        revision: &str,
        reason: &str,
        images: &[fledge_core::ImageRevert],
        branch: Option<&str>,
    ) -> Result<()> {
        let pairs = images
            .iter()
            .map(|i| (i.from.clone(), i.to.clone()))
            .collect();
        let Some(record) = crate::git::revert_for(
            self.canary,
            self.next,
            revision,
            reason,
            pairs,
            branch.map(str::to_string),
        ) else {
            info!(%revision, %reason, "rolled back; no Git source to revert");
            return Ok(());
        };
        crate::git::enqueue(
            &self.ctx.client,
            &record,
            self.ctx.settings.git.shard.as_deref(),
        )
        .await?;
        self.ctx.git_wake.notify_one();
        Ok(())
    }

    /// With the Canary going (its finalizer about to be removed): what the router owns and
    /// garbage collection cannot reach (cluster-scoped routing objects) goes with it. A
    /// provider without a router in this build never wrote anything.
    async fn collect_routing(&self) -> Result<()> {
        let Ok(router) = router_for(self.ctx.client.clone(), self.canary) else {
            return Ok(());
        };
        let (label, value) = self.selector().unwrap_or_default();
        Ok(router
            .collect(&RouteTarget {
                canary: self.canary,
                selector: (&label, &value),
                status: self.next,
            })
            .await?)
    }

    fn selector(&self) -> Result<(String, String)> {
        workload::selector_label(self.target()?, &self.ctx.settings.workload)
    }

    fn apply_params() -> PatchParams {
        PatchParams::apply(MANAGER).force()
    }

    async fn cluster(&self, action: &Action) -> Result<()> {
        if let Some(view) = self.sts {
            return self.statefulset(view, action).await;
        }
        if let Some(view) = self.kn {
            return self.knative(view, action).await;
        }
        match action {
            Action::EnsurePrimary => {
                if self.primary.is_none() {
                    self.copy_configs().await?;
                    self.apply_primary(None, &[]).await?;
                }
                // A primary Flagger made (a cut-over): kept as it is, with what Flagger made
                // beside it, owned from now on by this Canary.
                if let Some(primary) = self.primary {
                    let tracked: Vec<&ConfigRef> = self.tracked.keys().collect();
                    crate::adopt::adopt_from_flagger(
                        &self.ctx.client,
                        &self.ctx.recorder,
                        self.canary,
                        &self.owner(),
                        primary,
                        &tracked,
                    )
                    .await?;
                }
                self.ensure_primary_scaler().await
            }
            Action::EnsurePrimaryFrom { revision, images } => {
                if self.primary.is_none() {
                    info!(%revision, ?images, "creating the primary on the Git ledger's last promoted images");
                    self.copy_configs().await?;
                    self.apply_primary(None, images).await?;
                }
                self.ensure_primary_scaler().await
            }
            Action::EnsureServices { apex } => self.ensure_services(*apex).await,
            Action::SetWeights(routes) => {
                let (label, value) = self.selector()?;
                let router = router_for(self.ctx.client.clone(), self.canary)?;
                let t = RouteTarget {
                    canary: self.canary,
                    selector: (&label, &value),
                    status: self.next,
                };
                router.set_routes(&t, *routes).await?;
                self.ctx.metrics.set_weight(self.canary, routes.canary);
                Ok(())
            }
            Action::ScaleCanary(scale) => {
                let client = &self.ctx.client;
                match scale {
                    CanaryScale::Zero => {
                        // KEDA would scale the target back up: hold it first.
                        crate::autoscaler::pause_target_scaler(client, self.canary).await?;
                        self.scale_target(0).await
                    }
                    CanaryScale::MatchPrimary => {
                        self.scale_target(self.primary_replicas()).await?;
                        crate::autoscaler::resume_target_scaler(client, self.canary).await
                    }
                }
            }
            Action::EnsureBaseline => {
                if self.primary.is_none() {
                    return Ok(());
                }
                let target = &self.canary.spec.target_ref.name;
                // The cache keeps only the images of a primary's template: the copy is made
                // from the primary read afresh.
                let client = self.ctx.client.clone();
                let name = primary_name(target);
                let primary = if is_daemonset(self.canary) {
                    Api::<DaemonSet>::namespaced(client, self.ns)
                        .get_opt(&name)
                        .await?
                        .map(|ds| workload::daemonset_view(&ds))
                } else {
                    Api::<Deployment>::namespaced(client, self.ns)
                        .get_opt(&name)
                        .await?
                };
                let Some(primary) = primary else {
                    return Ok(());
                };
                let baseline = workload::build_baseline(
                    &primary,
                    target,
                    self.owner(),
                    self.primary_replicas(),
                )?;
                let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), self.ns);
                api.patch(
                    &fledge_api::baseline_name(target),
                    &Self::apply_params(),
                    &Patch::Apply(&baseline),
                )
                .await?;
                Ok(())
            }
            Action::RemoveBaseline => {
                let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), self.ns);
                let name = fledge_api::baseline_name(&self.canary.spec.target_ref.name);
                match api.delete(&name, &Default::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Action::PromotePrimary { revision } => {
                // The target read afresh, so that what is copied is the revision the analysis
                // passed and nothing newer.
                let target = self.fresh_target().await?;
                let current = target
                    .spec
                    .as_ref()
                    .map(|s| workload::template_hash(&s.template))
                    .unwrap_or_default();
                if &current != revision {
                    info!(expected = %revision, found = %current, "target changed before promotion; not copying");
                    return Ok(());
                }
                self.copy_configs().await?;
                let keep = self.primary.and_then(|p| p.replicas);
                self.apply_primary_of(&target, keep, &[]).await?;
                self.ensure_primary_scaler().await
            }
            Action::RestoreTarget => {
                self.scale_target(self.primary_replicas()).await?;
                crate::autoscaler::resume_target_scaler(&self.ctx.client, self.canary).await
            }
            Action::FinalizeRouting => {
                let (label, value) = self.selector()?;
                let router = router_for(self.ctx.client.clone(), self.canary)?;
                Ok(router
                    .finalize(&RouteTarget {
                        canary: self.canary,
                        selector: (&label, &value),
                        status: self.next,
                    })
                    .await?)
            }
            other => {
                warn!(action = ?other, "not a cluster action");
                Ok(())
            }
        }
    }

    /// The cluster actions for a StatefulSet target: the weights and promotion become its
    /// partition, a rollback puts its template back ([`crate::statefulset`]).
    async fn statefulset(&self, view: &crate::statefulset::View, action: &Action) -> Result<()> {
        use crate::statefulset::{roll_back, set_partition};
        let client = &self.ctx.client;
        let hash = || {
            self.target
                .map(|t| t.template_hash.clone())
                .unwrap_or_default()
        };
        match action {
            // No copy to make: the StatefulSet is the workload. A rollout found in flight
            // finishes (its template is what the Canary starts from); otherwise it is held.
            Action::EnsurePrimary | Action::EnsurePrimaryFrom { .. } => {
                let partition = if view.settled() { view.replicas } else { 0 };
                set_partition(client, self.ns, view, partition).await
            }
            Action::EnsureServices { .. } => {
                ensure_statefulset_services(self.ctx, self.canary, self.ns, view, &self.owner())
                    .await?;
                if routed(self.canary) {
                    let (label, value) = self.selector()?;
                    let router = router_for(client.clone(), self.canary)?;
                    router
                        .ensure(&RouteTarget {
                            canary: self.canary,
                            selector: (&label, &value),
                            status: self.next,
                        })
                        .await?;
                }
                Ok(())
            }
            Action::SetPartition { weight } => {
                // Lowered only: the pods that moved stay until promotion or rollback.
                let partition = view.partition.min(view.partition_for(*weight));
                set_partition(client, self.ns, view, partition).await
            }
            Action::SetWeights(routes) => {
                if routed(self.canary) {
                    self.route(*routes).await?;
                }
                self.ctx.metrics.set_weight(self.canary, routes.canary);
                Ok(())
            }
            Action::PromotePrimary { revision } => {
                if &hash() != revision {
                    info!(expected = %revision, found = %hash(), "target changed before promotion; not promoting");
                    return Ok(());
                }
                if routed(self.canary) {
                    // Every pod is about to move, the promoted ones last: the traffic goes to
                    // the moved pods first, and back to the primary Service once it selects
                    // them (when every pod runs the new revision).
                    self.route(fledge_core::Routes::weighted(100)).await?;
                }
                set_partition(client, self.ns, view, 0).await
            }
            Action::RollBackTarget { revision } => {
                roll_back(client, self.ns, &view.name, revision).await
            }
            Action::RestoreTarget => set_partition(client, self.ns, view, 0).await,
            // Nothing to scale, no router objects.
            Action::ScaleCanary(_)
            | Action::EnsureBaseline
            | Action::RemoveBaseline
            | Action::FinalizeRouting => Ok(()),
            other => {
                warn!(action = ?other, "not a cluster action");
                Ok(())
            }
        }
    }

    /// The cluster actions for a Knative Service target: the weights are its `spec.traffic`,
    /// initialization and promotion name the primary Revision; Knative scales the Revisions
    /// ([`crate::knative`]).
    async fn knative(&self, view: &crate::knative::View, action: &Action) -> Result<()> {
        use fledge_routers::knative::pin_primary;
        let client = &self.ctx.client;
        let router = || router_for(client.clone(), self.canary);
        let t = RouteTarget {
            canary: self.canary,
            selector: ("", ""),
            status: self.next,
        };
        match action {
            Action::EnsurePrimary | Action::EnsurePrimaryFrom { .. } => {
                match &view.primary {
                    // Taken over from Flagger: its promoted Revision, under fledge's name.
                    Some(p) if view.pinned_by_flagger => {
                        info!(revision = %p, "the primary Revision Flagger named, kept");
                        pin_primary(client, self.ns, self.canary, p).await?;
                    }
                    Some(_) => {}
                    None => {
                        info!(revision = %view.latest, "the latest Revision named the primary");
                        pin_primary(client, self.ns, self.canary, &view.latest).await?;
                    }
                }
                Ok(())
            }
            Action::EnsureServices { .. } => Ok(router()?.ensure(&t).await?),
            Action::SetWeights(routes) => {
                router()?.set_routes(&t, *routes).await?;
                self.ctx.metrics.set_weight(self.canary, routes.canary);
                Ok(())
            }
            Action::PromotePrimary { revision } => {
                if &view.latest != revision {
                    info!(expected = %revision, found = %view.latest, "a newer Revision before promotion; not promoting");
                    return Ok(());
                }
                Ok(pin_primary(client, self.ns, self.canary, revision).await?)
            }
            Action::FinalizeRouting => Ok(router()?.finalize(&t).await?),
            // Knative scales the Revisions; there is no copy, baseline or partition.
            Action::ScaleCanary(_)
            | Action::EnsureBaseline
            | Action::RemoveBaseline
            | Action::RestoreTarget
            | Action::RollBackTarget { .. }
            | Action::SetPartition { .. } => Ok(()),
            other => {
                warn!(action = ?other, "not a cluster action");
                Ok(())
            }
        }
    }

    /// Routes traffic through the Canary's router.
    async fn route(&self, routes: fledge_core::Routes) -> Result<()> {
        let (label, value) = self.selector()?;
        let router = router_for(self.ctx.client.clone(), self.canary)?;
        let t = RouteTarget {
            canary: self.canary,
            selector: (&label, &value),
            status: self.next,
        };
        Ok(router.set_routes(&t, routes).await?)
    }

    async fn ensure_primary_scaler(&self) -> Result<()> {
        crate::autoscaler::ensure_primary_scaler(
            &self.ctx.client,
            self.canary,
            self.owner(),
            &self.ctx.settings.workload,
        )
        .await
    }

    fn primary_replicas(&self) -> i32 {
        self.primary.and_then(|p| p.replicas).unwrap_or(1).max(1)
    }

    async fn scale_target(&self, replicas: i32) -> Result<()> {
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        if is_daemonset(self.canary) {
            // A DaemonSet has no replica count: a node selector no node matches holds it at
            // zero, and removing it (Flagger's too, after a cut-over) lets it run again.
            let hold = (replicas == 0).then_some("true");
            let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {
                workload::SCALE_TO_ZERO_LABEL: hold,
                workload::FLAGGER_SCALE_TO_ZERO_LABEL: Option::<&str>::None,
            }}}}});
            let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), self.ns);
            api.patch(
                &self.canary.spec.target_ref.name,
                &params,
                &Patch::Merge(&patch),
            )
            .await?;
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let patch = json!({"spec": {"replicas": replicas}});
        api.patch(
            &self.canary.spec.target_ref.name,
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await?;
        Ok(())
    }

    /// Creates or updates the primary from the target; with `images`, containers of the same
    /// image repositories run those images instead of the target's.
    async fn apply_primary(&self, replicas: Option<i32>, images: &[String]) -> Result<()> {
        let target = self.fresh_target().await?;
        self.apply_primary_of(&target, replicas, images).await
    }

    /// The target as the API server has it now, whole (the cache keeps only what the
    /// controller reads of its template), a DaemonSet seen as a Deployment.
    async fn fresh_target(&self) -> Result<Deployment> {
        let name = &self.canary.spec.target_ref.name;
        let missing = || self.target_missing();
        if is_daemonset(self.canary) {
            // The DaemonSet cache keeps a target's template whole.
            return self
                .ctx
                .workloads
                .daemonset(self.ns, name)
                .map(|ds| workload::daemonset_view(&ds))
                .ok_or_else(missing);
        }
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), self.ns);
        api.get_opt(name).await?.ok_or_else(missing)
    }

    /// [`Exec::apply_primary`] from `target`, read afresh by the caller.
    async fn apply_primary_of(
        &self,
        target: &Deployment,
        replicas: Option<i32>,
        images: &[String],
    ) -> Result<()> {
        let tracked: BTreeSet<ConfigRef> = self.tracked.keys().cloned().collect();
        let mut primary = workload::build_primary(
            target,
            self.owner(),
            &tracked,
            replicas,
            &self.ctx.settings.workload,
        )?;
        if let Some(spec) = primary.spec.as_mut() {
            for (container, from, to) in workload::use_images(&mut spec.template, images) {
                info!(%container, %from, %to, "primary image from the Git ledger");
            }
        }
        if replicas.is_none()
            && let Some(spec) = primary.spec.as_mut()
        {
            // The target may already be scaled to zero by an earlier rollout.
            spec.replicas = Some(spec.replicas.unwrap_or(1).max(1));
        }
        primary.metadata.managed_fields = None;
        let name = primary.metadata.name.clone().unwrap_or_default();
        if is_daemonset(self.canary) {
            let target = self
                .ctx
                .workloads
                .daemonset(self.ns, &self.canary.spec.target_ref.name)
                .ok_or_else(|| {
                    Error::InvalidTarget(format!(
                        "DaemonSet {}/{} not found",
                        self.ns, self.canary.spec.target_ref.name
                    ))
                })?;
            let primary = workload::primary_daemonset(primary, &target);
            let mut value = serde_json::to_value(&primary)?;
            value["apiVersion"] = json!("apps/v1");
            value["kind"] = json!("DaemonSet");
            let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), self.ns);
            api.patch(&name, &Self::apply_params(), &Patch::Apply(value))
                .await?;
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let mut value = serde_json::to_value(&primary)?;
        value["apiVersion"] = json!("apps/v1");
        value["kind"] = json!("Deployment");
        api.patch(&name, &Self::apply_params(), &Patch::Apply(value))
            .await?;
        Ok(())
    }

    /// Copies tracked ConfigMaps and Secrets to their `-primary` names.
    async fn copy_configs(&self) -> Result<()> {
        for r in self.tracked.keys() {
            match r {
                ConfigRef::ConfigMap(n) => {
                    let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), self.ns);
                    if let Some(cm) = api.get_opt(n).await? {
                        let copy = json!({
                            "apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": primary_name(n), "ownerReferences": [self.owner()]},
                            "data": cm.data, "binaryData": cm.binary_data,
                        });
                        api.patch(&primary_name(n), &Self::apply_params(), &Patch::Apply(copy))
                            .await?;
                    }
                }
                ConfigRef::Secret(n) => {
                    let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), self.ns);
                    if let Some(s) = api.get_opt(n).await? {
                        let copy = json!({
                            "apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": primary_name(n), "ownerReferences": [self.owner()]},
                            "type": s.type_, "data": s.data,
                        });
                        api.patch(&primary_name(n), &Self::apply_params(), &Patch::Apply(copy))
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn ensure_services(&self, apex_selects: ApexSelects) -> Result<()> {
        let (label, value) = self.selector()?;
        // Validate the provider before creating anything.
        let router = router_for(self.ctx.client.clone(), self.canary)?;
        let api: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(self.ctx.client.clone(), self.ns);
        for svc in build_services(self.canary, &self.owner(), (&label, &value), apex_selects) {
            let name = svc.metadata.name.clone().unwrap_or_default();
            let mut value = serde_json::to_value(&svc)?;
            value["apiVersion"] = json!("v1");
            value["kind"] = json!("Service");
            api.patch(&name, &Self::apply_params(), &Patch::Apply(value))
                .await?;
        }
        // The router's own objects, keeping the routes in force.
        Ok(router
            .ensure(&RouteTarget {
                canary: self.canary,
                selector: (&label, &value),
                status: self.next,
            })
            .await?)
    }

    async fn report(&self, action: &Action) {
        match action {
            Action::RecordEvent {
                warning,
                reason,
                message,
            } => {
                let ev = KubeEvent {
                    type_: if *warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: reason.clone(),
                    note: Some(message.chars().take(1000).collect()),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                info!(reason = %reason, warning = *warning, "{message}");
                self.ctx.recorder.publish_about(
                    ev,
                    self.canary,
                    self.next.phase,
                    checksum(self.next),
                );
            }
            Action::CallWebhooks {
                hook,
                phase,
                message,
            } => {
                let hooks = self.canary.spec.webhooks_of(*hook);
                for h in hooks {
                    let payload = report_payload(self.canary, self.next, *hook, *phase, message);
                    let client = self.ctx.webhooks.clone();
                    let span = tracing::Span::current();
                    tokio::spawn(
                        async move {
                            let out = client.call(&h, &payload).await;
                            if !out.passed {
                                warn!(webhook = %h.name, "{}", out.message);
                            }
                        }
                        .instrument(span),
                    );
                }
            }
            Action::Notify {
                severity,
                kind,
                message,
                to,
            } => {
                debug!(severity = ?severity, kind = ?kind, "alert: {message}");
                let msg = crate::notify::message(
                    self.canary,
                    self.target,
                    self.next,
                    checksum(self.next),
                    *severity,
                    *kind,
                    message,
                );
                self.ctx.alerts.send(self.canary, msg, to);
            }
            _ => {}
        }
    }
}

async fn add_finalizer(canary: &Canary, ctx: &Context) -> Result<()> {
    let api: Api<Canary> =
        Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": {
            "finalizers": canary.finalizers().iter().cloned().chain([FINALIZER.to_string()]).collect::<Vec<_>>(),
            "resourceVersion": canary.resource_version(),
        }
    });
    api.patch(
        &canary.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn remove_finalizer(canary: &Canary, ctx: &Context) -> Result<()> {
    let api: Api<Canary> =
        Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
    let rest: Vec<String> = canary
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    let patch =
        json!({"metadata": {"finalizers": rest, "resourceVersion": canary.resource_version()}});
    api.patch(
        &canary.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Writes the engine's status through the status subresource, with optimistic concurrency: a
/// conflict means someone else wrote first, and the reconcile runs again on fresh state.
async fn write_status(
    ctx: &Context,
    canary: &Canary,
    old: &CanaryStatus,
    new: &CanaryStatus,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let api: Api<Canary> =
        Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
    // Boxed: a Canary inline would make every reconcile's future kilobytes larger.
    let mut body = Box::new(Canary::new(&canary.name_any(), canary.spec.clone()));
    body.metadata.resource_version = canary.resource_version();
    body.metadata.namespace = canary.namespace();
    body.status = Some(new.clone());
    api.replace_status(&canary.name_any(), &PostParams::default(), &body)
        .await?;
    remember_write(ctx, canary);
    ctx.said.confirmed(&canary.uid().unwrap_or_default());
    ctx.metrics.observe_status(canary, new);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, read from its type alone.
    fn future_size<A, B, F: Future>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn a_reconcile_in_flight_holds_a_few_kilobytes() {
        // Up to --max-concurrent-reconciles (128) of these are in flight at once. With every
        // call inline the future was 20 KB (a primary's apply alone is 9 KB, and the Canary
        // copy and the status body another 2.8 KB each).
        let reconcile = future_size::<Arc<Canary>, Arc<Context>, _>(reconcile);
        let inner = future_size::<&'static Canary, &'static Context, _>(reconcile_inner);
        assert!(
            reconcile <= 8 << 10,
            "reconcile's future: {reconcile} bytes"
        );
        assert!(inner <= 8 << 10, "reconcile_inner's future: {inner} bytes");
    }

    #[test]
    fn a_knative_services_primary_pin_is_a_routing_write_and_a_deployments_copy_is_not() {
        let promote = Action::PromotePrimary {
            revision: "abc".into(),
        };
        assert!(!writes_routing(&promote, false));
        assert!(writes_routing(&promote, true));
        assert!(writes_routing(&Action::EnsurePrimary, true));
        assert!(!writes_routing(&Action::EnsurePrimary, false));
        let scale = Action::ScaleCanary(fledge_core::CanaryScale::Zero);
        assert!(!writes_routing(&scale, false) && !writes_routing(&scale, true));
        let weights = Action::SetWeights(fledge_core::Routes::weighted(50));
        assert!(writes_routing(&weights, false) && writes_routing(&weights, true));
    }

    #[test]
    fn requeues_count_from_the_engines_whole_second() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        // Decided at 12:00:05.75 (05 for the engine): "in 10 s" is due at 12:00:15.
        assert_eq!(
            on_engine_clock(Duration::from_secs(10), at("2026-01-01T12:00:05.75Z")),
            Duration::from_millis(9250)
        );
        assert_eq!(
            on_engine_clock(Duration::from_secs(10), at("2026-01-01T12:00:05Z")),
            Duration::from_secs(10)
        );
        assert_eq!(
            on_engine_clock(Duration::ZERO, at("2026-01-01T12:00:05.5Z")),
            Duration::ZERO
        );
    }

    #[test]
    fn report_webhooks_carry_the_checksum_of_the_revision_they_report() {
        let canary: Canary = serde_json::from_value(json!({
            "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "shop"},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 80}}
        }))
        .unwrap();
        let old = CanaryStatus {
            last_applied_spec: Some("rev-1".into()),
            ..Default::default()
        };
        let next = CanaryStatus {
            phase: CanaryPhase::Progressing,
            last_applied_spec: Some("rev-2".into()),
            ..Default::default()
        };
        // "New revision detected!" forwarded to an event webhook: about rev-2.
        let p = report_payload(
            &canary,
            &next,
            HookType::Event,
            CanaryPhase::Progressing,
            "New revision detected!",
        );
        assert_eq!(p.checksum, checksum(&next));
        assert_ne!(p.checksum, checksum(&old));
        assert_eq!(p.namespace, "shop");
        assert_eq!(
            p.metadata.get("eventMessage").map(String::as_str),
            Some("New revision detected!")
        );
        let post = report_payload(
            &canary,
            &next,
            HookType::PostRollout,
            CanaryPhase::Succeeded,
            "",
        );
        assert!(post.metadata.is_empty());
        assert_eq!(post.checksum, checksum(&next));
    }

    #[test]
    fn slimmed_objects_keep_what_fledge_reads() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "podinfo", "annotations": {
                LAST_APPLIED: "{\"huge\": true}", "keep": "yes"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"selector": {"matchLabels": {"app": "podinfo"}},
                "template": {"metadata": {"labels": {"app": "podinfo"}}}}
        }))
        .unwrap();
        let spec = d.spec.clone();
        slim(&mut d);
        assert_eq!(d.metadata.managed_fields, None);
        assert_eq!(
            d.metadata.annotations,
            Some(BTreeMap::from([("keep".to_string(), "yes".to_string())]))
        );
        assert_eq!(d.spec, spec);
        let mut only_last_applied: Deployment = serde_json::from_value(
            json!({"metadata": {"name": "x", "annotations": {LAST_APPLIED: "{}"}}}),
        )
        .unwrap();
        slim(&mut only_last_applied);
        assert_eq!(only_last_applied.metadata.annotations, None);
    }
}
