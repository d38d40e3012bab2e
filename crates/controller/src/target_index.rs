//! Which Canaries a workload belongs to, by its namespace and name: its target and its
//! primary (`<target>-primary`).
//!
//! Every event of a watched Deployment, DaemonSet or StatefulSet wakes the Canaries of that
//! workload. Finding them by scanning every Canary costs O(N) per event, and the events of a
//! wave grow with N too: at 3,000 Canaries the controller spent more CPU per rollout than at
//! 1,000, most of it scanning (cloning the cache's list, allocating each primary's name to
//! compare it). This index, kept from the same watch events as the Canary cache, answers in
//! O(1).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use fledge_api::{Canary, primary_name};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

/// By namespace, then by name within it. A Canary's target is in the Canary's own namespace,
/// so each entry keeps names only, and a lookup by `&str` allocates nothing.
type ByNamespace<V> = HashMap<Arc<str>, HashMap<Box<str>, V>>;

/// About 250 bytes per Canary at N = 1000 (a heap profile put the index before, which kept
/// `ObjectRef`s with their uid and resourceVersion and each namespace three times, at 1.7 MB).
#[derive(Default)]
struct Index {
    /// The Canaries (their names) of each workload: a Canary's target and its primary.
    canaries: ByNamespace<Vec<Arc<str>>>,
    /// Each Canary's target, as last seen (to move it when its `targetRef` changes).
    targets: ByNamespace<Box<str>>,
}

impl Index {
    fn insert(&mut self, canary: &Canary) {
        let (namespace, name) = namespace_and_name(canary);
        let target = canary.spec.target_ref.name.as_str();
        let now = self.targets.get(namespace).and_then(|n| n.get(name));
        if now.map(AsRef::as_ref) == Some(target) {
            return;
        }
        self.remove(namespace, name);
        // One allocation of the namespace, shared by every entry of it.
        let ns: Arc<str> = match self.targets.get_key_value(namespace) {
            Some((ns, _)) => ns.clone(),
            None => Arc::from(namespace),
        };
        let canary_name: Arc<str> = Arc::from(name);
        for workload in workloads(target) {
            self.canaries
                .entry(ns.clone())
                .or_default()
                .entry(workload)
                .or_default()
                .push(canary_name.clone());
        }
        self.targets
            .entry(ns)
            .or_default()
            .insert(Box::from(name), Box::from(target));
    }

    fn remove(&mut self, namespace: &str, name: &str) {
        let Some(targets) = self.targets.get_mut(namespace) else {
            return;
        };
        let Some(target) = targets.remove(name) else {
            return;
        };
        if targets.is_empty() {
            self.targets.remove(namespace);
        }
        let Some(by_workload) = self.canaries.get_mut(namespace) else {
            return;
        };
        for workload in workloads(&target) {
            if let Some(list) = by_workload.get_mut(&workload) {
                list.retain(|c| c.as_ref() != name);
                if list.is_empty() {
                    by_workload.remove(&workload);
                }
            }
        }
        if by_workload.is_empty() {
            self.canaries.remove(namespace);
        }
    }
}

/// A Canary's namespace and name, borrowed (`""` for one the API server has not named).
fn namespace_and_name(canary: &Canary) -> (&str, &str) {
    let meta = &canary.metadata;
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// The workloads a Canary with `target` covers: the target and its primary.
fn workloads(target: &str) -> [Box<str>; 2] {
    [Box::from(target), primary_name(target).into_boxed_str()]
}

/// The index, shared between the Canary watch that keeps it and the workload watches that
/// read it.
#[derive(Clone, Default)]
pub struct TargetIndex {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    index: Index,
    /// A relist under way: the index it is building (the old one answers until it is done).
    relisting: Option<Index>,
}

impl TargetIndex {
    /// Takes one event of the Canary watch, as the cache takes it.
    pub fn observe(&self, event: &watcher::Event<Canary>) {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(c) => s.index.insert(c),
            watcher::Event::Delete(c) => {
                let (namespace, name) = namespace_and_name(c);
                s.index.remove(namespace, name)
            }
            watcher::Event::Init => s.relisting = Some(Index::default()),
            watcher::Event::InitApply(c) => s.relisting.get_or_insert_default().insert(c),
            watcher::Event::InitDone => {
                s.index = s.relisting.take().unwrap_or_default();
            }
        }
    }

    /// The Canaries whose target or primary is the workload `name` in `namespace`.
    pub fn canaries_for(&self, namespace: Option<&str>, name: &str) -> Vec<ObjectRef<Canary>> {
        let ns = namespace.unwrap_or_default();
        let s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        s.index
            .canaries
            .get(ns)
            .and_then(|n| n.get(name))
            .map(|list| list.iter().map(|c| ObjectRef::new(c).within(ns)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(ns: &str, name: &str, target: &str) -> Canary {
        let mut c = Canary::new(name, Default::default());
        c.metadata.namespace = Some(ns.into());
        c.spec.target_ref.name = target.into();
        c
    }

    /// No empty list, no empty namespace is left behind once every Canary is gone.
    fn assert_nothing_left(index: &TargetIndex) {
        let s = index.inner.lock().unwrap();
        assert!(s.index.canaries.is_empty() && s.index.targets.is_empty());
    }

    fn names(refs: Vec<ObjectRef<Canary>>) -> Vec<String> {
        let mut n: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        n.sort();
        n
    }

    #[test]
    fn a_workload_finds_the_canaries_of_its_target_and_primary() {
        let index = TargetIndex::default();
        index.observe(&watcher::Event::Apply(canary("apps", "web", "podinfo")));
        index.observe(&watcher::Event::Apply(canary("apps", "web-ab", "podinfo")));
        index.observe(&watcher::Event::Apply(canary("other", "web", "podinfo")));
        assert_eq!(
            names(index.canaries_for(Some("apps"), "podinfo")),
            ["web", "web-ab"]
        );
        assert_eq!(
            names(index.canaries_for(Some("apps"), "podinfo-primary")),
            ["web", "web-ab"]
        );
        assert_eq!(names(index.canaries_for(Some("other"), "podinfo")), ["web"]);
        assert!(
            index
                .canaries_for(Some("apps"), "podinfo-canary")
                .is_empty()
        );
        assert!(index.canaries_for(None, "podinfo").is_empty());
    }

    #[test]
    fn a_new_target_moves_the_canary_and_a_delete_removes_it() {
        let index = TargetIndex::default();
        index.observe(&watcher::Event::Apply(canary("apps", "web", "podinfo")));
        // A newer version with the same target changes nothing.
        let mut newer = canary("apps", "web", "podinfo");
        newer.metadata.resource_version = Some("2".into());
        newer.metadata.uid = Some("u-1".into());
        index.observe(&watcher::Event::Apply(newer));
        assert_eq!(names(index.canaries_for(Some("apps"), "podinfo")), ["web"]);
        index.observe(&watcher::Event::Apply(canary("apps", "web", "frontend")));
        assert!(index.canaries_for(Some("apps"), "podinfo").is_empty());
        assert!(
            index
                .canaries_for(Some("apps"), "podinfo-primary")
                .is_empty()
        );
        assert_eq!(
            names(index.canaries_for(Some("apps"), "frontend-primary")),
            ["web"]
        );
        index.observe(&watcher::Event::Delete(canary("apps", "web", "frontend")));
        assert!(index.canaries_for(Some("apps"), "frontend").is_empty());
        assert_nothing_left(&index);
    }

    #[test]
    fn canaries_of_one_workload_share_its_entry_and_leave_it_one_by_one() {
        let index = TargetIndex::default();
        index.observe(&watcher::Event::Apply(canary("apps", "web", "podinfo")));
        index.observe(&watcher::Event::Apply(canary("apps", "web-ab", "podinfo")));
        index.observe(&watcher::Event::Delete(canary("apps", "web", "podinfo")));
        assert_eq!(
            names(index.canaries_for(Some("apps"), "podinfo")),
            ["web-ab"]
        );
        let found = index.canaries_for(Some("apps"), "podinfo-primary");
        assert_eq!(found[0].namespace.as_deref(), Some("apps"));
        index.observe(&watcher::Event::Delete(canary("apps", "web-ab", "podinfo")));
        assert_nothing_left(&index);
    }

    #[test]
    fn a_relist_replaces_the_index_once_it_is_done() {
        let index = TargetIndex::default();
        index.observe(&watcher::Event::Apply(canary("apps", "gone", "old")));
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(canary("apps", "web", "podinfo")));
        // Until the relist is done, the index before it answers.
        assert_eq!(names(index.canaries_for(Some("apps"), "old")), ["gone"]);
        assert!(index.canaries_for(Some("apps"), "podinfo").is_empty());
        index.observe(&watcher::Event::InitDone);
        assert!(index.canaries_for(Some("apps"), "old").is_empty());
        assert_eq!(names(index.canaries_for(Some("apps"), "podinfo")), ["web"]);
    }
}
