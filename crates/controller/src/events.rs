//! Kubernetes Events (`events.k8s.io/v1`) about Canaries, published exactly as kube's
//! [`kube::runtime::events::Recorder`] publishes them, with a compact memory of what was sent.
//!
//! As with kube's recorder, an Event with the same type, reason and action about the same object
//! within six minutes of the last one is recorded as a series on the first Event (its count and
//! last observed time are patched) instead of as a new Event; unlike kube's, the note counts too,
//! so "weight 20" after "weight 10", or a check failing for a new reason, is an Event of its own
//! rather than a higher count on the first one. kube's recorder remembers every
//! Event it sent, in full and inline in its map, for those six minutes: about 2 KiB per Event, so
//! at a thousand Canaries rolling out it held some 30 MiB, the largest part of the controller's
//! memory. This one remembers, per Event, a hash of what makes its series, the time that names
//! it, its count and its last time: about 50 bytes, with no allocation of its own.
//!
//! Events a reconcile decides wait in an outbox (a channel), with the time they were decided,
//! and at most [`WORKERS`] are sent at once: a wave of a thousand rollouts decides thousands of
//! Events within a second, and one task per Event would fill the client's requests in flight ahead of the status
//! writes the rollouts wait for.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use futures::StreamExt;
use futures::channel::mpsc;

use fledge_api::{Canary, CanaryPhase, CanaryWebhook, HookType};
use kube::{Resource, ResourceExt};

use backon::{ExponentialBuilder, Retryable};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};

use crate::webhooks::{Payload, WebhookClient};

/// How long a sent Event is remembered for a series (kube's recorder: six minutes).
const TTL: SignedDuration = SignedDuration::from_mins(6);
/// Forgotten Events are swept out at most this often.
const SWEEP_EVERY: SignedDuration = SignedDuration::from_secs(30);
/// At most this many Events are being sent at once; the others wait in the outbox.
const WORKERS: usize = 8;

/// Publishes Events about Canaries.
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    cache: Mutex<Cache>,
    /// `--event-webhook`: every Event of a Canary is also posted there.
    event_webhook: Option<(WebhookClient, CanaryWebhook)>,
    /// The outbox, opened with its sending task by the first Event put in.
    outbox: OnceLock<mpsc::UnboundedSender<Pending>>,
}

/// An Event waiting in the outbox, decided at `at`. A wave of a thousand rollbacks queues
/// thousands of them, so each keeps only what its Event is built from: the Event's own fields
/// (the note and reason once, no empty related object inline) and the Canary's namespace, name
/// and uid (its reference is built when the Event is sent). Nor does it hold the
/// reconcile's span (which would keep that span's data alive until the Event is sent): a
/// failure to send names the Canary itself.
struct Pending {
    at: Timestamp,
    warning: bool,
    reason: Box<str>,
    note: Option<Box<str>>,
    action: Box<str>,
    secondary: Option<Box<ObjectReference>>,
    about: About,
}

/// The Canary an Event in the outbox is about.
struct About {
    namespace: Option<Box<str>>,
    name: Option<Box<str>>,
    uid: Option<Box<str>>,
}

impl About {
    fn of(canary: &Canary) -> Self {
        let meta = canary.meta();
        let boxed = |s: &Option<String>| s.as_deref().map(Box::from);
        About {
            namespace: boxed(&meta.namespace),
            name: boxed(&meta.name),
            uid: boxed(&meta.uid),
        }
    }

    /// The Canary's reference, as `Resource::object_ref` gives it.
    fn reference(&self) -> ObjectReference {
        let string = |s: &Option<Box<str>>| s.as_deref().map(String::from);
        ObjectReference {
            api_version: Some(Canary::api_version(&()).into_owned()),
            kind: Some(Canary::kind(&()).into_owned()),
            name: string(&self.name),
            namespace: string(&self.namespace),
            uid: string(&self.uid),
            resource_version: None,
            field_path: None,
        }
    }
}

impl Pending {
    fn new(ev: Event, canary: &Canary, at: Timestamp) -> Self {
        Pending {
            at,
            warning: matches!(ev.type_, EventType::Warning),
            reason: ev.reason.into(),
            note: ev.note.map(Into::into),
            action: ev.action.into(),
            secondary: ev.secondary.map(Box::new),
            about: About::of(canary),
        }
    }

    fn event(&self) -> Event {
        Event {
            type_: if self.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: self.reason.to_string(),
            note: self.note.as_deref().map(String::from),
            action: self.action.to_string(),
            secondary: self.secondary.as_deref().cloned(),
        }
    }
}

impl Recorder {
    /// A recorder reporting as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Recorder {
            client,
            reporter,
            cache: Mutex::new(Cache::default()),
            event_webhook: None,
            outbox: OnceLock::new(),
        }
    }

    /// Also posts every Event of a Canary to `url`, with Flagger's event payload (Flagger's
    /// `-event-webhook`), unless the Canary has `event` webhooks of its own.
    pub fn with_event_webhook(mut self, url: String, http: WebhookClient) -> Self {
        self.event_webhook = Some((
            http,
            CanaryWebhook {
                name: "events".into(),
                r#type: Some("event".into()),
                url,
                ..Default::default()
            },
        ));
        self
    }

    /// Publishes `ev` about `canary`, in `phase`, in the background, and posts it to the event
    /// webhook when one is set (in the background too: an unreachable receiver never holds a
    /// rollout). `checksum` is the webhook payload's checksum of the revision under test.
    ///
    /// The caller does not wait for the API server: the status write a decision ends with (an
    /// analysis step, a rollback with all traffic back on the primary) would otherwise come one
    /// Event create later, which under a wave of a thousand rollouts on a loaded control plane
    /// is most of a second. The Event waits in the outbox and is sent with the time it was
    /// decided, with the same retries, and a failure is logged as before; Events about one
    /// Canary may reach the API server in another order than they were decided.
    pub fn publish_about(
        self: &Arc<Self>,
        ev: Event,
        canary: &Canary,
        phase: CanaryPhase,
        checksum: String,
    ) {
        let now = Timestamp::now();
        if let Some((http, hook)) = &self.event_webhook
            && canary.spec.webhooks_of(HookType::Event).is_empty()
        {
            let payload = event_payload(&ev, canary, phase, checksum, now);
            let (http, hook) = (http.clone(), hook.clone());
            tokio::spawn(async move {
                let out = http.call(&hook, &payload).await;
                if !out.passed {
                    tracing::warn!(canary = %format!("{}/{}", payload.namespace, payload.name), "event {}", out.message);
                }
            });
        }
        self.enqueue(Pending::new(ev, canary, now));
    }

    /// Puts `p` in the outbox. The first Event opens it and starts the task that sends its
    /// Events, [`WORKERS`] at a time. The task holds the recorder weakly: once the recorder is
    /// dropped the outbox closes, and the task ends after the Events already in it.
    fn enqueue(self: &Arc<Self>, p: Pending) {
        let outbox = self.outbox.get_or_init(|| {
            let (outbox, pending) = mpsc::unbounded::<Pending>();
            let recorder = Arc::downgrade(self);
            tokio::spawn(pending.for_each_concurrent(WORKERS, move |p| {
                let recorder = recorder.upgrade();
                async move {
                    if let Some(recorder) = recorder {
                        recorder.send(p).await;
                    }
                }
            }));
            outbox
        });
        // The task ends only after the recorder is dropped, so the outbox is open here.
        let _ = outbox.unbounded_send(p);
    }

    /// Sends an Event from the outbox; a failure is logged with the Canary it is about.
    async fn send(&self, p: Pending) {
        let ev = p.event();
        if let Err(e) = self.publish_at(&ev, &p.about.reference(), p.at).await {
            let canary = format!(
                "{}/{}",
                p.about.namespace.as_deref().unwrap_or_default(),
                p.about.name.as_deref().unwrap_or_default()
            );
            tracing::warn!(canary = %canary, error = %e, reason = %ev.reason, "cannot record Event");
        }
    }

    /// Publishes `ev` about `regarding`: a new Event, or the next of a series.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> kube::Result<()> {
        self.publish_at(ev, regarding, Timestamp::now()).await
    }

    /// Publishes `ev` about `regarding`, decided at `now`.
    async fn publish_at(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> kube::Result<()> {
        let key = Key::new(ev, regarding);
        let next = self.lock().next(&key, now);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let (first, count) = match next {
            Next::Series { first, count } => {
                let name = event_name(&self.reporter, regarding, first);
                let series = EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                };
                let patch = serde_json::json!({ "series": series });
                // The same count again is the same patch: safe to send twice.
                let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
                let send = || events.patch(&name, &params, &patch);
                send.retry(transport_retries()).when(is_transport).await?;
                (first, count)
            }
            Next::Create => {
                let event = build(&self.reporter, ev, regarding, now);
                // The name is chosen here, once: when a create whose answer was lost did reach
                // the API server, its retry is refused as AlreadyExists, and the Event is there.
                let params = PostParams::default();
                let send = || events.create(&params, &event);
                match send.retry(transport_retries()).when(is_transport).await {
                    Err(kube::Error::Api(s)) if s.is_already_exists() => {}
                    other => {
                        other?;
                    }
                }
                (now, 1)
            }
        };
        self.lock().sent(key, first, count, now);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Retries of an Event write whose connection failed (a dropped connection to the API server
/// would otherwise lose the Event): three more, from 100 ms apart.
fn transport_retries() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(100))
        .with_max_times(3)
}

/// Whether a request failed on the way rather than being answered by the API server.
fn is_transport(e: &kube::Error) -> bool {
    !matches!(e, kube::Error::Api(_))
}

/// The Event kube's recorder creates.
/// Flagger's event payload: the Canary, its phase, and `eventMessage`, `eventType` and
/// `timestamp` (milliseconds since the epoch) in `metadata`.
pub fn event_payload(
    ev: &Event,
    canary: &Canary,
    phase: CanaryPhase,
    checksum: String,
    now: Timestamp,
) -> Payload {
    let event_type = match ev.type_ {
        EventType::Warning => "Warning",
        EventType::Normal => "Normal",
    };
    Payload {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        phase,
        checksum,
        metadata: BTreeMap::from([
            (
                "eventMessage".to_string(),
                ev.note.clone().unwrap_or_default(),
            ),
            ("eventType".to_string(), event_type.to_string()),
            ("timestamp".to_string(), now.as_millisecond().to_string()),
        ]),
    }
}

fn build(reporter: &Reporter, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
    let controller = &reporter.controller;
    K8sEvent {
        action: Some(ev.action.clone()),
        reason: Some(ev.reason.clone()),
        event_time: Some(MicroTime(now)),
        regarding: Some(regarding.clone()),
        note: ev.note.clone(),
        metadata: ObjectMeta {
            namespace: regarding.namespace.clone(),
            name: Some(event_name(reporter, regarding, now)),
            ..Default::default()
        },
        reporting_controller: Some(controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| controller.clone()),
        ),
        type_: Some(
            match ev.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        related: ev.secondary.clone(),
        ..Default::default()
    }
}

/// The name of the Event about `regarding` first sent at `first`, as kube's recorder names it.
fn event_name(reporter: &Reporter, regarding: &ObjectReference, first: Timestamp) -> String {
    format!(
        "{}.{:x}",
        regarding.name.as_ref().unwrap_or(&reporter.controller),
        first.as_nanosecond()
    )
}

/// What makes two Events one series (the reporter is the same for every Event sent here): a
/// hash of the object the Event is about (its uid, or its kind, namespace and name when it has
/// none), the related object, the type, reason, action and note. A hash rather than the fields
/// themselves keeps the cache free of allocations; two series that hashed alike (odds about one
/// in 10^12 at ten thousand Events remembered) would only count on one Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key(u64);

impl Key {
    fn new(ev: &Event, regarding: &ObjectReference) -> Self {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        object_identity(regarding, &mut h);
        match &ev.secondary {
            Some(related) => {
                1u8.hash(&mut h);
                object_identity(related, &mut h);
            }
            None => 0u8.hash(&mut h),
        }
        matches!(ev.type_, EventType::Warning).hash(&mut h);
        ev.reason.hash(&mut h);
        ev.action.hash(&mut h);
        ev.note.hash(&mut h);
        Key(h.finish())
    }
}

/// Feeds an object's identity to `h`: its uid, or its API version, kind, namespace and name
/// when it has none.
fn object_identity(r: &ObjectReference, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    match &r.uid {
        Some(uid) => {
            0u8.hash(h);
            uid.hash(h);
        }
        None => {
            1u8.hash(h);
            r.api_version.hash(h);
            r.kind.hash(h);
            r.namespace.hash(h);
            r.name.hash(h);
        }
    }
}

/// An Event sent and still remembered.
#[derive(Debug)]
struct Sent {
    /// When the Event was created, which names it ([`event_name`]).
    first: Timestamp,
    count: i32,
    last: Timestamp,
}

/// The next Event to send for a key.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Create,
    /// The next of the series on the Event first sent at `first`.
    Series {
        first: Timestamp,
        count: i32,
    },
}

#[derive(Default)]
struct Cache {
    sent: HashMap<Key, Sent>,
    swept: Option<Timestamp>,
}

impl Cache {
    fn next(&mut self, key: &Key, now: Timestamp) -> Next {
        self.sweep(now);
        match self.sent.get(key) {
            Some(s) if s.last + TTL > now => Next::Series {
                first: s.first,
                count: s.count.saturating_add(1),
            },
            _ => Next::Create,
        }
    }

    fn sent(&mut self, key: Key, first: Timestamp, count: i32, now: Timestamp) {
        self.sent.insert(
            key,
            Sent {
                first,
                count,
                last: now,
            },
        );
    }

    /// Forgets Events older than the TTL; gives memory back after a burst.
    fn sweep(&mut self, now: Timestamp) {
        if self.swept.is_some_and(|t| t + SWEEP_EVERY > now) {
            return;
        }
        self.swept = Some(now);
        self.sent.retain(|_, s| s.last + TTL > now);
        if self.sent.capacity() > 64 && self.sent.len() < self.sent.capacity() / 4 {
            self.sent.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_event_is_sent_as_it_was_decided_and_stays_small() {
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("shop".into());
        canary.metadata.uid = Some("0b5e6d1c-2f4a-4c39-9d1e-7f2a8b3c4d5e".into());
        canary.metadata.resource_version = Some("4711".into());
        for secondary in [None, Some(canary.object_ref(&()))] {
            let ev = || Event {
                type_: EventType::Warning,
                reason: "CheckFailed".into(),
                note: Some("Halt advancement podinfo: request-success-rate 92 < 99".into()),
                action: "Reconcile".into(),
                secondary: secondary.clone(),
            };
            let (p, ev) = (Pending::new(ev(), &canary, Timestamp::UNIX_EPOCH), ev());
            let back = p.event();
            assert_eq!(
                (back.type_, &back.reason, &back.note, &back.action),
                (ev.type_, &ev.reason, &ev.note, &ev.action)
            );
            assert_eq!(back.secondary, ev.secondary);
            assert_eq!(p.about.reference(), canary.object_ref(&()));
        }
        // Thousands wait in the outbox in a wave of rollbacks: an Event and a reference inline
        // were some 470 bytes.
        assert!(
            std::mem::size_of::<Pending>() <= 144,
            "{} bytes",
            std::mem::size_of::<Pending>()
        );
    }

    #[test]
    fn the_event_webhook_gets_flaggers_event_payload() {
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("shop".into());
        let ev = Event {
            type_: EventType::Warning,
            reason: "CheckFailed".into(),
            note: Some("Halt advancement podinfo: request-success-rate 92 < 99".into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let at: Timestamp = "2026-01-02T03:04:05.678Z".parse().unwrap();
        let p = event_payload(&ev, &canary, CanaryPhase::Progressing, "abc".into(), at);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({
                "name": "podinfo",
                "namespace": "shop",
                "phase": "Progressing",
                "checksum": "abc",
                "metadata": {
                    "eventMessage": "Halt advancement podinfo: request-success-rate 92 < 99",
                    "eventType": "Warning",
                    "timestamp": "1767323045678",
                }
            })
        );
    }

    fn key(reason: &str) -> Key {
        key_with_note(reason, "a note")
    }

    fn key_with_note(reason: &str, note: &str) -> Key {
        let ev = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let regarding = podinfo_ref();
        Key::new(&ev, &regarding)
    }

    /// The Canary `test/podinfo` that the Events here are about.
    fn podinfo_ref() -> ObjectReference {
        ObjectReference {
            uid: Some("uid-1".into()),
            name: Some("podinfo".into()),
            namespace: Some("test".into()),
            ..Default::default()
        }
    }

    fn fledge_reporter() -> Reporter {
        Reporter {
            controller: "fledge".into(),
            instance: None,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn repeats_within_six_minutes_make_a_series() {
        let mut c = Cache::default();
        assert_eq!(c.next(&key("IterationAdvanced"), at(0)), Next::Create);
        c.sent(key("IterationAdvanced"), at(0), 1, at(0));
        let series = |count| Next::Series {
            first: at(0),
            count,
        };
        assert_eq!(c.next(&key("IterationAdvanced"), at(10)), series(2));
        c.sent(key("IterationAdvanced"), at(0), 2, at(10));
        // Six minutes after the last one, not after the first.
        assert_eq!(c.next(&key("IterationAdvanced"), at(369)), series(3));
        // Another reason is another Event.
        assert_eq!(c.next(&key("Promoting"), at(20)), Next::Create);
        // So is the same reason with another note.
        let other = key_with_note("IterationAdvanced", "another note");
        assert_eq!(c.next(&other, at(20)), Next::Create);
        // Six minutes of silence: a new Event.
        assert_eq!(c.next(&key("IterationAdvanced"), at(370)), Next::Create);
    }

    #[test]
    fn forgotten_events_are_swept_out() {
        let mut c = Cache::default();
        for i in 0..1000 {
            c.sent(key(&format!("R{i}")), at(i), 1, at(0));
        }
        c.next(&key("R0"), at(10));
        assert_eq!(c.sent.len(), 1000);
        c.next(&key("R0"), at(400));
        assert!(c.sent.is_empty());
        assert!(c.sent.capacity() < 1000, "{}", c.sent.capacity());
    }

    #[test]
    fn objects_without_uid_are_told_apart_by_name() {
        let a = ObjectReference {
            kind: Some("Canary".into()),
            namespace: Some("a".into()),
            name: Some("x".into()),
            ..Default::default()
        };
        let b = ObjectReference {
            namespace: Some("b".into()),
            ..a.clone()
        };
        let ev = |type_, secondary| Event {
            type_,
            reason: "Synced".into(),
            note: None,
            action: "Reconcile".into(),
            secondary,
        };
        let normal = ev(EventType::Normal, None);
        assert_ne!(Key::new(&normal, &a), Key::new(&normal, &b));
        assert_eq!(Key::new(&normal, &a), Key::new(&normal, &a.clone()));
        // A related object makes another series, and so does another type of Event.
        let related = ev(EventType::Normal, Some(b.clone()));
        assert_ne!(Key::new(&related, &a), Key::new(&normal, &a));
        let warning = ev(EventType::Warning, None);
        assert_ne!(Key::new(&warning, &a), Key::new(&normal, &a));
    }

    #[test]
    fn a_series_is_sent_under_the_name_of_its_first_event() {
        let reporter = fledge_reporter();
        let regarding = podinfo_ref();
        let ev = Event {
            type_: EventType::Normal,
            reason: "Synced".into(),
            note: None,
            action: "Reconcile".into(),
            secondary: None,
        };
        let created = build(&reporter, &ev, &regarding, at(3));
        assert_eq!(
            created.metadata.name,
            Some(event_name(&reporter, &regarding, at(3)))
        );
        let nameless = ObjectReference {
            name: None,
            ..regarding
        };
        assert!(event_name(&reporter, &nameless, at(3)).starts_with("fledge."));
    }

    #[test]
    fn the_event_is_the_one_kube_creates() {
        let ev = Event {
            type_: EventType::Warning,
            reason: "CheckFailed".into(),
            note: Some("Halt advancement".into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let regarding = podinfo_ref();
        let reporter = fledge_reporter();
        let now = at(0);
        let name = format!("podinfo.{:x}", now.as_nanosecond());
        let fields = |e: &K8sEvent| {
            (
                e.metadata.name.clone(),
                e.metadata.namespace.clone(),
                e.type_.clone(),
                e.reason.clone(),
                e.note.clone(),
                e.reporting_controller.clone(),
                e.reporting_instance.clone(),
                e.event_time.clone(),
                e.series.clone(),
            )
        };
        let expected = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some("test".into()),
                ..Default::default()
            },
            type_: Some("Warning".into()),
            reason: Some("CheckFailed".into()),
            note: Some("Halt advancement".into()),
            action: Some("Reconcile".into()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some("fledge".into()),
            reporting_instance: Some("fledge".into()),
            event_time: Some(MicroTime(now)),
            ..Default::default()
        };
        let built = build(&reporter, &ev, &regarding, now);
        assert_eq!(fields(&built), fields(&expected));
        assert_eq!(built.regarding, expected.regarding);
        assert_eq!(built.action, expected.action);
    }

    /// A stand-in API server that answers every Event create after 5 ms, echoing it, and counts
    /// creates by name and the most requests it had in flight at once.
    #[derive(Default)]
    struct StandIn {
        created: Mutex<HashMap<String, usize>>,
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }

    fn stand_in_client(server: Arc<StandIn>) -> Client {
        use http_body_util::{BodyExt, Full};
        use hyper::body::Bytes;
        use std::sync::atomic::Ordering::SeqCst;
        crate::test_support::stand_in_api(move |req: hyper::Request<kube::client::Body>| {
            let server = server.clone();
            async move {
                let now = server.in_flight.fetch_add(1, SeqCst) + 1;
                server.most.fetch_max(now, SeqCst);
                let body = req.into_body().collect().await?.to_bytes();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                let event: K8sEvent = serde_json::from_slice(&body)?;
                let name = event.metadata.name.clone().unwrap_or_default();
                *server.created.lock().unwrap().entry(name).or_default() += 1;
                server.in_flight.fetch_sub(1, SeqCst);
                Ok(hyper::Response::builder()
                    .status(201)
                    .body(Full::new(Bytes::from(body.to_vec())))?)
            }
        })
    }

    #[tokio::test]
    async fn the_outbox_sends_every_event_once_with_at_most_eight_in_flight() {
        let server = Arc::new(StandIn::default());
        let reporter = fledge_reporter();
        let recorder = Arc::new(Recorder::new(stand_in_client(server.clone()), reporter));
        for i in 0..200 {
            let mut canary = Canary::new(&format!("app{i}"), Default::default());
            canary.metadata.namespace = Some("test".into());
            canary.metadata.uid = Some(format!("uid-{i}"));
            let ev = Event {
                type_: EventType::Normal,
                reason: "Synced".into(),
                note: Some(format!("event {i}")),
                action: "Reconcile".into(),
                secondary: None,
            };
            recorder.publish_about(ev, &canary, CanaryPhase::Progressing, String::new());
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        let arrived = || server.created.lock().unwrap().values().sum::<usize>();
        while arrived() < 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the outbox did not drain: {} Events arrived",
                arrived()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The sending task does not keep the recorder (and so its outbox) alive.
        let weak = Arc::downgrade(&recorder);
        drop(recorder);
        while weak.upgrade().is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the outbox's task keeps the recorder alive"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let created = server.created.lock().unwrap();
        assert_eq!(created.len(), 200, "every Event arrives");
        assert!(created.values().all(|n| *n == 1), "each once: {created:?}");
        let most = server.most.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (2..=WORKERS).contains(&most),
            "{most} creates were in flight at once"
        );
    }
}
