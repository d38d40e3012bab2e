//! Watches that survive a restart of the control plane.
//!
//! A watcher resumes from the last resource version it saw. When the API server has restarted,
//! its watch cache starts at the version etcd holds now, and a watch asked to resume from an
//! older one is answered `410 Gone` (`too old resource version`). kube-runtime's watcher starts
//! over with a fresh list when that 410 arrives as an event inside a running watch, but when it
//! is the answer to the watch request itself the watcher asks again from the same version,
//! forever: the cache it feeds never changes again. [`relisting`] ends such a watcher on that
//! answer and starts a new one, whose first list replaces the whole cache.
//!
//! A watch request can also hang with neither an answer nor an error when the API server dies
//! under it (seen when etcd and the API server are killed together). Whoever finds the cache
//! behind what the API server holds, and the watch silent since ([`Relist::silent_since`]),
//! asks for a fresh list with [`Relist::now`].

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

/// The least time between two fresh lists asked with [`Relist::now`]. A watch that lags under
/// load (a thousand rollbacks at once) is not broken; listing everything again each time a
/// reconcile finds the cache behind would add the load that makes it lag (seen at N = 1000:
/// 3,265 lists of the Canaries in three minutes).
pub const RELIST_GAP: Duration = Duration::from_secs(60);

/// A request to start a watcher again from a fresh list, at most once per gap: a request
/// within the gap is put off to its end, not dropped.
#[derive(Clone)]
pub struct Relist {
    notify: Arc<Notify>,
    gap: Duration,
    state: Arc<Mutex<RelistState>>,
    /// When the watch last gave an object or a list (errors do not count).
    last_event: Arc<Mutex<Option<Instant>>>,
}

#[derive(Default)]
struct RelistState {
    /// When the last relist was asked.
    last: Option<Instant>,
    /// Whether a request is waiting for the end of the gap.
    put_off: bool,
}

impl Default for Relist {
    fn default() -> Self {
        Self::with_gap(RELIST_GAP)
    }
}

impl Relist {
    /// A relist asked at most once per `gap`.
    pub fn with_gap(gap: Duration) -> Self {
        Self {
            notify: Arc::default(),
            gap,
            state: Arc::default(),
            last_event: Arc::default(),
        }
    }

    /// Whether the watch has given nothing since `t` (nor ever). A watch that lags under load
    /// still gives other objects; one that hangs gives none.
    pub fn silent_since(&self, t: Instant) -> bool {
        let last = *self
            .last_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.is_none_or(|last| last < t)
    }

    fn saw_event(&self) {
        *self
            .last_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Ends the running watch; its successor lists everything afresh. Asked while no watch
    /// runs, it ends the next one at once. Within the gap after the last relist, the request
    /// is carried out at the gap's end (`false`: not now). Needs a Tokio runtime.
    pub fn now(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.last.map(|t| t.elapsed()) {
            Some(since) if since < self.gap => {
                if !state.put_off {
                    state.put_off = true;
                    let (me, wait) = (self.clone(), self.gap - since);
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        let mut state = me.state.lock().unwrap_or_else(PoisonError::into_inner);
                        state.put_off = false;
                        state.last = Some(Instant::now());
                        me.notify.notify_one();
                    });
                }
                false
            }
            _ => {
                state.last = Some(Instant::now());
                self.notify.notify_one();
                true
            }
        }
    }
}

/// `watcher(api, config)`, started again from a fresh list whenever the API server answers a
/// watch request with `410 Gone`, or `relist` asks for it.
pub fn relisting<K>(
    api: Api<K>,
    config: watcher::Config,
    relist: Relist,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    restarting(move || watcher(api.clone(), config.clone()), relist)
}

/// The streams `start` makes, one after the other: each runs until it yields a watch request
/// answered `410 Gone`, which is passed on (the backoff after it sees an error) before the next
/// stream starts, or until `relist` asks.
fn restarting<S, K>(
    start: impl FnMut() -> S + Send,
    relist: Relist,
) -> impl Stream<Item = S::Item> + Send
where
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
    K: Send,
{
    futures::stream::repeat_with(start).flat_map(move |stream| {
        let asked = relist.notify.clone();
        let seen = relist.clone();
        stream
            .take_until(async move { asked.notified().await })
            .inspect(move |item| {
                if item.is_ok() {
                    seen.saw_event();
                }
            })
            .scan(false, |gone, item| {
                let next = (!*gone).then(|| {
                    *gone = is_gone(&item);
                    item
                });
                futures::future::ready(next)
            })
    })
}

/// Whether the API server refused to start a watch from the version asked for.
fn is_gone<K>(item: &watcher::Result<watcher::Event<K>>) -> bool {
    matches!(
        item,
        Err(watcher::Error::WatchStartFailed(kube::Error::Api(status))) if status.code == 410
    )
}

/// Keeps the watch events of a shard's own objects (`None`: unsharded, every object). An object
/// that stops being the shard's (its shard label changed) leaves the cache as if deleted, so
/// the shard lets go of it; one that becomes the shard's arrives as an update.
pub fn keep_owned<K: kube::Resource>(
    event: watcher::Event<K>,
    shard: Option<&fledge_core::shard::Shard>,
) -> Option<watcher::Event<K>> {
    let Some(shard) = shard else {
        return Some(event);
    };
    match event {
        watcher::Event::Apply(o) if !shard.owns(o.meta().labels.as_ref().unwrap_or(&NO_LABELS)) => {
            Some(watcher::Event::Delete(o))
        }
        watcher::Event::InitApply(o)
            if !shard.owns(o.meta().labels.as_ref().unwrap_or(&NO_LABELS)) =>
        {
            None
        }
        other => Some(other),
    }
}

static NO_LABELS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

/// `ev` with its object turned into another type (the cached form of a workload).
pub fn map_event<K, T>(ev: watcher::Event<K>, f: impl FnOnce(K) -> T) -> watcher::Event<T> {
    match ev {
        watcher::Event::Apply(k) => watcher::Event::Apply(f(k)),
        watcher::Event::Delete(k) => watcher::Event::Delete(f(k)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(k) => watcher::Event::InitApply(f(k)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn refused(code: u16) -> watcher::Result<watcher::Event<String>> {
        let status = Status::failure("too old resource version: 457 (524)", "Expired");
        Err(watcher::Error::WatchStartFailed(kube::Error::Api(
            Box::new(status.with_code(code)),
        )))
    }

    fn applied(name: &str) -> watcher::Result<watcher::Event<String>> {
        Ok(watcher::Event::Apply(name.to_string()))
    }

    /// What the test's watchers yielded, as text: `apply a`, `410`, `500`.
    fn seen(items: &[watcher::Result<watcher::Event<String>>]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                Ok(watcher::Event::Apply(name)) => format!("apply {name}"),
                Ok(_) => "other".to_string(),
                Err(watcher::Error::WatchStartFailed(kube::Error::Api(s))) => s.code.to_string(),
                Err(e) => e.to_string(),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_watch_refused_with_410_starts_a_new_watcher_and_other_errors_do_not() {
        let mut started = 0;
        let stream = restarting(
            move || {
                started += 1;
                let items = match started {
                    // Listed, then the restarted API server refuses the old version (twice, as
                    // the old watcher would ask again): only the first refusal is passed on.
                    1 => vec![applied("a"), refused(410), refused(410)],
                    // A new list; a refusal for another reason keeps the same watcher.
                    2 => vec![applied("a"), refused(500), applied("b"), refused(410)],
                    _ => vec![applied("c")],
                };
                futures::stream::iter(items)
            },
            Relist::default(),
        );
        let items: Vec<_> = stream.take(7).collect().await;
        assert_eq!(
            seen(&items),
            [
                "apply a", "410", "apply a", "500", "apply b", "410", "apply c"
            ]
        );
    }

    #[tokio::test]
    async fn a_relist_asked_for_ends_the_running_watch_and_starts_another() {
        let relist = Relist::with_gap(Duration::ZERO);
        let mut started = 0;
        let stream = restarting(
            move || {
                started += 1;
                let name = format!("from watcher {started}");
                // A watch that gives one object, then hangs.
                futures::stream::iter([applied(&name)]).chain(futures::stream::pending())
            },
            relist.clone(),
        );
        let mut stream = std::pin::pin!(stream);
        assert_eq!(
            seen(&[stream.next().await.unwrap()]),
            ["apply from watcher 1"]
        );
        relist.now();
        assert_eq!(
            seen(&[stream.next().await.unwrap()]),
            ["apply from watcher 2"]
        );
        // And again: each ask ends the watcher running then.
        relist.now();
        assert_eq!(
            seen(&[stream.next().await.unwrap()]),
            ["apply from watcher 3"]
        );
    }

    #[tokio::test]
    async fn a_watch_is_silent_since_a_time_until_it_gives_something_after_it() {
        let relist = Relist::default();
        let began = Instant::now();
        assert!(
            relist.silent_since(began),
            "a watch that has given nothing yet"
        );
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut rx = Some(rx);
        let stream = restarting(move || rx.take().unwrap(), relist.clone());
        let mut stream = std::pin::pin!(stream);
        tx.unbounded_send(refused(500)).unwrap();
        stream.next().await.unwrap().unwrap_err();
        assert!(relist.silent_since(began), "an error is not an event");
        tx.unbounded_send(applied("a")).unwrap();
        stream.next().await.unwrap().unwrap();
        assert!(
            !relist.silent_since(began),
            "an object given after the time"
        );
        let later = Instant::now() + Duration::from_millis(1);
        assert!(relist.silent_since(later));
    }

    #[tokio::test]
    async fn relists_are_asked_at_most_once_per_gap_and_one_put_off_to_its_end() {
        let gap = Duration::from_millis(300);
        let relist = Relist::with_gap(gap);
        let began = Instant::now();
        assert!(relist.now());
        assert!(!relist.now(), "a second ask within the gap");
        assert!(!relist.now(), "and a third: one relist is put off");
        let asked = relist.notify.clone();
        // The first ask's permit is taken by a watch; the put-off one comes at the gap's end,
        // not before.
        asked.notified().await;
        asked.notified().await;
        assert!(began.elapsed() >= gap);
        let eager = Relist::with_gap(Duration::ZERO);
        assert!(eager.now() && eager.now());
    }

    #[test]
    fn a_shard_keeps_its_own_canaries_and_lets_go_of_those_relabelled_away() {
        use fledge_core::shard::Shard;
        use k8s_openapi::api::core::v1::ConfigMap;
        let obj = |shard: Option<&str>| {
            let mut o = ConfigMap::default();
            o.metadata.name = Some("podinfo".into());
            if let Some(s) = shard {
                o.metadata.labels = Some([("fledge.dev/shard".to_string(), s.to_string())].into());
            }
            o
        };
        let b = Shard::new("b", false).unwrap();
        let a = Shard::new("a", true).unwrap();
        let kept = |e: watcher::Event<ConfigMap>, s: &Shard| keep_owned(e, Some(s));
        assert!(matches!(
            kept(watcher::Event::Apply(obj(Some("b"))), &b),
            Some(watcher::Event::Apply(_))
        ));
        // Relabelled to another shard: out of the cache.
        assert!(matches!(
            kept(watcher::Event::Apply(obj(Some("a"))), &b),
            Some(watcher::Event::Delete(_))
        ));
        assert!(kept(watcher::Event::InitApply(obj(None)), &b).is_none());
        assert!(matches!(
            kept(watcher::Event::InitApply(obj(None)), &a),
            Some(watcher::Event::InitApply(_))
        ));
        assert!(matches!(
            kept(watcher::Event::Delete(obj(Some("b"))), &a),
            Some(watcher::Event::Delete(_))
        ));
        assert!(matches!(
            kept(watcher::Event::InitDone, &a),
            Some(watcher::Event::InitDone)
        ));
        assert!(matches!(
            keep_owned(watcher::Event::Apply(obj(Some("z"))), None),
            Some(watcher::Event::Apply(_))
        ));
    }
}
