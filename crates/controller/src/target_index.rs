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

/// A workload: namespace and name.
type Workload = (String, String);

#[derive(Default)]
struct Index {
    /// The Canaries of each workload.
    canaries: HashMap<Workload, Vec<ObjectRef<Canary>>>,
    /// Each Canary's target, as last seen (to move it when its `targetRef` changes).
    targets: HashMap<ObjectRef<Canary>, Workload>,
}

impl Index {
    fn insert(&mut self, canary: &Canary) {
        let key = ObjectRef::from_obj(canary);
        let target = (
            canary.metadata.namespace.clone().unwrap_or_default(),
            canary.spec.target_ref.name.clone(),
        );
        if self.targets.get(&key) == Some(&target) {
            return;
        }
        self.remove(&key);
        for workload in workloads(&target) {
            self.canaries.entry(workload).or_default().push(key.clone());
        }
        self.targets.insert(key, target);
    }

    fn remove(&mut self, key: &ObjectRef<Canary>) {
        let Some(target) = self.targets.remove(key) else {
            return;
        };
        for workload in workloads(&target) {
            if let Some(list) = self.canaries.get_mut(&workload) {
                list.retain(|c| c != key);
                if list.is_empty() {
                    self.canaries.remove(&workload);
                }
            }
        }
    }
}

/// The workloads a Canary with `target` covers: the target and its primary.
fn workloads(target: &Workload) -> [Workload; 2] {
    [target.clone(), (target.0.clone(), primary_name(&target.1))]
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
            watcher::Event::Delete(c) => s.index.remove(&ObjectRef::from_obj(c)),
            watcher::Event::Init => s.relisting = Some(Index::default()),
            watcher::Event::InitApply(c) => s.relisting.get_or_insert_default().insert(c),
            watcher::Event::InitDone => {
                s.index = s.relisting.take().unwrap_or_default();
            }
        }
    }

    /// The Canaries whose target or primary is the workload `name` in `namespace`.
    pub fn canaries_for(&self, namespace: Option<&str>, name: &str) -> Vec<ObjectRef<Canary>> {
        let s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        s.index
            .canaries
            .get(&(namespace.unwrap_or_default().to_string(), name.to_string()))
            .cloned()
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
