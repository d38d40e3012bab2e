//! Drift of the routing objects from watches instead of reads.
//!
//! The engine asks for the routes of every settled Canary on every reconcile
//! ([`fledge_core::Needs::routes`]). Reading them with a GET each time costs one request per
//! Canary per interval on a quiet cluster. Instead, each kind of routing object a router uses
//! ([`Router::routing_kind`]) gets one metadata-only watch, started when the first Canary of that
//! provider is reconciled, which keeps each object's `resourceVersion` (nothing else). A Canary
//! remembers what its last GET found, with the `resourceVersion` its routing object had just
//! before and the Canary's own `resourceVersion` (its spec and status) it was read for. While
//! neither has changed, that answer stands and no request is made; any change of the object (by
//! fledge or anyone else) or of the Canary means a GET again.
//!
//! A change made by someone other than fledge's router (the newest entry of `managedFields`
//! that is not a status write belongs to another manager), or a deletion, wakes the Canary that
//! owns the object at once, so drift is found within moments instead of at the next interval.
//!
//! Until a kind's watch has listed its objects (or when it cannot: CRD missing, RBAC refused),
//! every read is a GET, as before. A watch that fails resumes from the last version it saw (a
//! fresh list when that is too old), and the cache stands meanwhile; in case a watch hangs with
//! no error at all, no answer is reused for longer than [`MAX_AGE`].
//!
//! Names, uids and versions are kept as 64-bit hashes ([`crate::hash64`]): the caches only ask
//! whether they are the same, and at a thousand Canaries their strings held about a megabyte.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fledge_api::{Canary, CanaryStatus};
use fledge_core::RoutesView;
use fledge_routers::{MANAGER, PeerKind, Router};
use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use tracing::{debug, warn};

/// One routing object: a hash of its namespace (empty for a cluster-scoped kind) and name.
type Key = u64;

/// The key of the object `name` in `namespace`.
fn key_of(namespace: &str, name: &str) -> Key {
    crate::hash64(&(namespace, name))
}

/// The longest a Canary's last read is reused: a backstop against a watch that hangs without
/// an error, at one GET per Canary per this period.
pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The watches of the routing kinds, and what each Canary's last read found.
pub struct RouteWatch {
    client: Client,
    /// The namespace the controller is confined to, if any.
    namespace: Option<String>,
    /// By API group and kind (every version of a CRD serves the same objects).
    kinds: Mutex<HashMap<(&'static str, &'static str), Arc<KindWatch>>>,
    /// By Canary uid (hashed).
    last: Mutex<HashMap<u64, LastRead>>,
    /// Wakes a Canary whose routing object was changed outside fledge.
    wake: UnboundedSender<ObjectRef<Canary>>,
}

/// What one kind's watch knows.
#[derive(Default)]
struct KindWatch {
    /// Whether the first list is done (and the versions below are the cluster's).
    synced: AtomicBool,
    /// Each object's `resourceVersion` (hashed).
    versions: Mutex<HashMap<Key, u64>>,
    /// The Canary whose routes each object carries, as recorded when it was read.
    owners: Mutex<HashMap<Key, ObjectRef<Canary>>>,
    /// The newest change by someone other than fledge that woke each object's Canary (a hash
    /// of its manager and time), so that later events of the same change wake nobody.
    woken_for: Mutex<HashMap<Key, u64>>,
}

/// A Canary's last read of its routes.
#[derive(Clone)]
struct LastRead {
    kind: (&'static str, &'static str),
    key: Key,
    at: std::time::Instant,
    /// The object's `resourceVersion` (hashed) just before the read (`None`: the watch did not
    /// have it).
    version: Option<u64>,
    /// What else the routes were read in the light of.
    read_for: ReadFor,
    view: RoutesView,
}

/// What a read of a Canary's routes depends on besides its routing object: the Canary's spec
/// (its `generation`: names, provider, analysis), the one field of its status a router reads
/// back (the session cookie, by which the Gateway API router tells its session rule), and the
/// selector of its pods. A status write that changes only weights, iterations or the phase
/// leaves it unchanged, so a rollout's steps need no read of an unchanged routing object. Kept
/// as a hash of the three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadFor(u64);

impl ReadFor {
    pub fn of(canary: &Canary, status: &CanaryStatus, selector: (&str, &str)) -> Self {
        ReadFor(crate::hash64(&(
            canary.metadata.generation,
            status.session_affinity_cookie.as_deref(),
            selector,
        )))
    }
}

impl RouteWatch {
    pub fn new(
        client: Client,
        namespace: Option<String>,
        wake: UnboundedSender<ObjectRef<Canary>>,
    ) -> Self {
        Self {
            client,
            namespace,
            kinds: Mutex::default(),
            last: Mutex::default(),
            wake,
        }
    }

    /// The routes `router` gives for `canary`: the last read's answer while its routing object
    /// and what the read depends on (`read_for`) are unchanged, else what `read` (a GET) finds.
    pub async fn routes<F>(
        &self,
        router: &dyn Router,
        canary: &Canary,
        read_for: ReadFor,
        read: F,
    ) -> RoutesView
    where
        F: std::future::Future<Output = RoutesView>,
    {
        let kind = router.routing_kind();
        let namespace = canary.metadata.namespace.as_deref().unwrap_or_default();
        let key = key_of(
            if kind.namespaced { namespace } else { "" },
            &router.routing_name(canary),
        );
        let uid = crate::hash64(canary.metadata.uid.as_deref().unwrap_or_default());
        let watch = self.kind(kind);
        let name = canary.metadata.name.as_deref().unwrap_or_default();
        if let Ok(mut owners) = watch.owners.lock() {
            // Recorded on every read, so allocated only when the owner is new. The name and
            // namespace alone: that is all a wake-up needs.
            let known = owners
                .get(&key)
                .is_some_and(|o| o.name == name && o.namespace.as_deref() == Some(namespace));
            if !known {
                owners.insert(key, ObjectRef::new(name).within(namespace));
            }
        }
        let synced = watch.synced.load(Ordering::Acquire);
        let version = if synced {
            watch
                .versions
                .lock()
                .ok()
                .and_then(|v| v.get(&key).copied())
        } else {
            None
        };
        if synced
            && let Some(last) = self.last.lock().ok().and_then(|l| l.get(&uid).cloned())
            && last.kind == (kind.group, kind.kind)
            && last.key == key
            && last.version == version
            && last.read_for == read_for
            && last.at.elapsed() < MAX_AGE
        {
            return last.view;
        }
        let view = read.await;
        if let Ok(mut l) = self.last.lock() {
            // An object the GET found but the watch has not shown yet is read again next time.
            let cacheable = match &view {
                RoutesView::Found(_) => version.is_some(),
                RoutesView::Missing => true,
                _ => false,
            };
            match &view {
                _ if synced && cacheable => {
                    l.insert(
                        uid,
                        LastRead {
                            kind: (kind.group, kind.kind),
                            key,
                            at: std::time::Instant::now(),
                            version,
                            read_for,
                            view: view.clone(),
                        },
                    );
                }
                _ => {
                    l.remove(&uid);
                }
            }
        }
        view
    }

    /// Forgets a Canary that is gone.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut l) = self.last.lock() {
            l.remove(&crate::hash64(uid));
        }
    }

    /// The watch of `kind`, started on first use.
    fn kind(&self, kind: PeerKind) -> Arc<KindWatch> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        kinds
            .entry((kind.group, kind.kind))
            .or_insert_with(|| {
                let watch = Arc::new(KindWatch::default());
                tokio::spawn(run(
                    self.api(kind),
                    kind.kind,
                    watch.clone(),
                    self.wake.clone(),
                ));
                watch
            })
            .clone()
    }

    fn api(&self, kind: PeerKind) -> Api<PartialObjectMeta<DynamicObject>> {
        let resource = ApiResource {
            group: kind.group.into(),
            version: kind.version.into(),
            api_version: kind.api_version(),
            kind: kind.kind.into(),
            plural: kind.plural.into(),
        };
        match (&self.namespace, kind.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &resource),
            _ => Api::all_with(self.client.clone(), &resource),
        }
    }
}

/// Keeps `watch` up to date with the objects of one kind, for as long as the controller runs.
async fn run(
    api: Api<PartialObjectMeta<DynamicObject>>,
    kind: &'static str,
    watch: Arc<KindWatch>,
    wake: UnboundedSender<ObjectRef<Canary>>,
) {
    let mut listing: HashMap<Key, u64> = HashMap::new();
    let mut events = std::pin::pin!(crate::watch::relisting(
        api,
        watcher::Config::default(),
        Default::default()
    ));
    let mut failures = 0u32;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => {
                failures = 0;
                e
            }
            Err(e) => {
                failures += 1;
                // The watcher resumes from the last version it saw (a fresh list if that is too
                // old): what the cache holds stays, and catches up.
                if failures == 1 {
                    warn!(%kind, error = %e, "the watch of the routing objects failed; retrying");
                } else {
                    debug!(%kind, error = %e, "the watch of the routing objects failed again");
                }
                // The watcher retries at once; wait a little longer each time (up to a minute).
                let wait = std::time::Duration::from_millis(500) * failures.min(120);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        match event {
            Event::Init => listing.clear(),
            Event::InitApply(obj) => {
                if let Some((key, v)) = key_version(&obj) {
                    listing.insert(key, v);
                }
            }
            Event::InitDone => {
                if let Ok(mut v) = watch.versions.lock() {
                    *v = std::mem::take(&mut listing);
                }
                watch.synced.store(true, Ordering::Release);
            }
            Event::Apply(obj) => {
                if let Some((key, v)) = key_version(&obj) {
                    if let Ok(mut versions) = watch.versions.lock() {
                        versions.insert(key, v);
                    }
                    if let Some(change) = foreign_change(&obj) {
                        let change = crate::hash64(&change);
                        let new = watch
                            .woken_for
                            .lock()
                            .map(|mut w| w.insert(key, change) != Some(change))
                            .unwrap_or(true);
                        if new {
                            wake_owner(&watch, &key, &wake);
                        }
                    }
                }
            }
            Event::Delete(obj) => {
                if let Some((key, _)) = key_version(&obj) {
                    if let Ok(mut versions) = watch.versions.lock() {
                        versions.remove(&key);
                    }
                    if let Ok(mut w) = watch.woken_for.lock() {
                        w.remove(&key);
                    }
                    wake_owner(&watch, &key, &wake);
                    // A Canary that still wants the object records itself again at its next read.
                    if let Ok(mut owners) = watch.owners.lock() {
                        owners.remove(&key);
                    }
                }
            }
        }
    }
}

fn key_version(obj: &PartialObjectMeta<DynamicObject>) -> Option<(Key, u64)> {
    let meta = obj.meta();
    Some((
        key_of(
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref()?,
        ),
        crate::hash64(meta.resource_version.as_deref()?),
    ))
}

/// The newest change of the object's spec or metadata (status writes aside), as its manager
/// and time, when it is not fledge's (its router's or the controller's, which writes the
/// Services).
fn foreign_change(obj: &PartialObjectMeta<DynamicObject>) -> Option<(String, String)> {
    let newest = obj
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.subresource.as_deref().is_none_or(str::is_empty))
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))?;
    let manager = newest.manager.clone().unwrap_or_default();
    if [MANAGER, crate::controller::MANAGER].contains(&manager.as_str()) {
        return None;
    }
    let time = newest
        .time
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    Some((manager, time))
}

fn wake_owner(watch: &KindWatch, key: &Key, wake: &UnboundedSender<ObjectRef<Canary>>) {
    let owner = watch.owners.lock().ok().and_then(|o| o.get(key).cloned());
    if let Some(owner) = owner {
        debug!(canary = %owner, "a routing object changed outside fledge");
        let _ = wake.unbounded_send(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    fn entry(manager: &str, secs: i64, subresource: Option<&str>) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            time: Some(Time(
                jiff::Timestamp::from_second(secs).expect("a valid time"),
            )),
            subresource: subresource.map(Into::into),
            ..Default::default()
        }
    }

    fn object(fields: Vec<ManagedFieldsEntry>) -> PartialObjectMeta<DynamicObject> {
        PartialObjectMeta {
            types: None,
            metadata: kube::core::ObjectMeta {
                name: Some("podinfo".into()),
                namespace: Some("apps".into()),
                resource_version: Some("42".into()),
                managed_fields: Some(fields),
                ..Default::default()
            },
            _phantom: std::marker::PhantomData,
        }
    }

    #[test]
    fn the_newest_spec_change_names_who_wrote_it() {
        let ours = object(vec![
            entry("kubectl-edit", 10, None),
            entry(MANAGER, 20, None),
        ]);
        assert_eq!(foreign_change(&ours), None);
        let services = object(vec![
            entry("kubectl-edit", 10, None),
            entry("fledge", 20, None),
        ]);
        assert_eq!(foreign_change(&services), None);
        let theirs = object(vec![
            entry(MANAGER, 10, None),
            entry("kubectl-edit", 20, None),
        ]);
        let change = foreign_change(&theirs).expect("a foreign change");
        assert_eq!(change.0, "kubectl-edit");
        // A gateway writing the status afterwards does not count.
        let status = object(vec![
            entry(MANAGER, 10, None),
            entry("traefik", 30, Some("status")),
        ]);
        assert_eq!(foreign_change(&status), None);
        let after_edit = object(vec![
            entry("kubectl-edit", 20, None),
            entry("traefik", 30, Some("status")),
        ]);
        assert_eq!(
            foreign_change(&after_edit),
            Some(change),
            "the same change as before"
        );
        assert_eq!(foreign_change(&object(Vec::new())), None);
    }

    #[test]
    fn a_read_stands_over_status_writes_but_not_over_a_new_spec_cookie_or_selector() {
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.generation = Some(3);
        let mut status = CanaryStatus {
            canary_weight: 10,
            ..Default::default()
        };
        let read = ReadFor::of(&canary, &status, ("app", "podinfo"));
        status.canary_weight = 20;
        status.iterations = 2;
        assert_eq!(ReadFor::of(&canary, &status, ("app", "podinfo")), read);
        status.session_affinity_cookie = Some("flagger-cookie=abc".into());
        assert_ne!(ReadFor::of(&canary, &status, ("app", "podinfo")), read);
        status.session_affinity_cookie = None;
        assert_ne!(ReadFor::of(&canary, &status, ("app", "other")), read);
        canary.metadata.generation = Some(4);
        assert_ne!(ReadFor::of(&canary, &status, ("app", "podinfo")), read);
    }

    #[test]
    fn objects_are_keyed_by_namespace_and_name() {
        let o = object(Vec::new());
        assert_eq!(
            key_version(&o),
            Some((key_of("apps", "podinfo"), crate::hash64("42")))
        );
        assert_ne!(key_of("apps", "podinfo"), key_of("", "podinfo"));
        assert_ne!(key_of("app", "spodinfo"), key_of("apps", "podinfo"));
    }
}
