//! The daemon's event bus: every manager publishes here, `GET /events` subscribes.
//!
//! Recent events are kept in a ring so that `since` can replay them; a broadcast channel tells
//! live subscribers each new event's sequence number, and they copy the event out of the ring
//! (see [`EventBus`]). A subscriber that falls too far behind skips what it missed rather than
//! slowing publishers down.

pub mod backend;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use crate::filters::Filters;
use crate::util::time::{parse_unix_timestamp, unix_nanos};

/// How many past events `since` can replay (dockerd keeps 256; berth keeps more, each event
/// shared between the ring and the live channel).
const RING_SIZE: usize = 1024;
/// How many live events a subscriber may lag behind before it skips.
const CHANNEL_SIZE: usize = 1024;

/// One event.
#[derive(Debug, PartialEq)]
pub struct Event {
    /// Object kind: `container`, `image`, `daemon`, ...
    pub kind: &'static str,
    /// What happened: `create`, `start`, `pull`, `reload`, ...
    pub action: String,
    /// The object's ID.
    pub actor_id: String,
    /// Extra facts, such as `name` and `image`, and the object's labels.
    pub attributes: Attributes,
    /// Nanoseconds since the epoch.
    pub time_nano: i128,
}

impl Clone for Event {
    fn clone(&self) -> Self {
        Event {
            kind: self.kind,
            action: self.action.clone(),
            actor_id: self.actor_id.clone(),
            attributes: self.attributes.clone(),
            time_nano: self.time_nano,
        }
    }

    /// Into the buffers `self` already has (the ring's slots are overwritten this way).
    fn clone_from(&mut self, source: &Self) {
        self.kind = source.kind;
        self.action.clone_from(&source.action);
        self.actor_id.clone_from(&source.actor_id);
        self.attributes.clone_from(&source.attributes);
        self.time_nano = source.time_nano;
    }
}

impl Event {
    pub fn new(kind: &'static str, action: impl Into<String>, actor_id: impl Into<String>) -> Self {
        Event {
            kind,
            action: action.into(),
            actor_id: actor_id.into(),
            attributes: Attributes::default(),
            time_nano: unix_nanos(SystemTime::now()),
        }
    }

    pub fn attribute(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.attributes.insert(key.as_ref(), value.as_ref());
        self
    }

    /// Whether the event passes `f`, as moby's `events.Filter.Include` decides.
    /// `image_repository` gives an image name's repository in its familiar form, for the
    /// `image` filter. Filter names moby does not know are ignored.
    fn matches(&self, f: &Filters, image_repository: ImageRepository) -> bool {
        let name = self.attributes.get("name").unwrap_or("");
        // moby's matchEvent: `health_status`, `exec_create` or `exec_start` among the values
        // makes every value a prefix (`health_status` matches `health_status: healthy`).
        let event_ok = if f
            .get("event")
            .any(|v| matches!(v, "health_status" | "exec_create" | "exec_start"))
        {
            f.fuzzy_match("event", &self.action)
        } else {
            f.exact_match("event", &self.action)
        };
        // moby's fuzzyMatchName: the filter of a kind matches the ID or the `name` attribute
        // by prefix, whatever the event's kind.
        let by_name = |key: &str| f.fuzzy_match(key, &self.actor_id) || f.fuzzy_match(key, name);
        // moby's matchImage: the ID, or the image name (`name` of image events, `image` of the
        // others), as given or as a repository without its tag.
        let image_ok = !f.contains("image") || {
            let image_name = match self.kind {
                "image" => name,
                _ => self.attributes.get("image").unwrap_or(""),
            };
            f.exact_match("image", &self.actor_id)
                || f.exact_match("image", image_name)
                || f.exact_match("image", &image_repository(&self.actor_id))
                || f.exact_match("image", &image_repository(image_name))
        };
        event_ok
            && f.exact_match("type", self.kind)
            && f.exact_match("scope", "local")
            && [
                "daemon",
                "container",
                "plugin",
                "volume",
                "network",
                "node",
                "service",
                "secret",
                "config",
            ]
            .iter()
            .all(|k| by_name(k))
            && image_ok
            && f.match_kv("label", |k| self.attributes.get(k))
    }
}

/// An event's attributes, packed: every key and value in one string, and where each ends, so
/// that an event is a few buffers the ring can reuse (see [`EventBus`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    text: String,
    /// For each pair, where its key ends and where its value ends in `text`.
    ends: Vec<(u32, u32)>,
}

impl Attributes {
    /// Set `key` to `value` (replacing an earlier value, as a map does).
    pub fn insert(&mut self, key: &str, value: &str) {
        if self.get(key).is_some() {
            *self = Attributes::from_pairs(self.iter().filter(|(k, _)| *k != key));
        }
        self.push(key, value);
    }

    fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Attributes {
        let mut a = Attributes::default();
        for (k, v) in pairs {
            a.push(k, v);
        }
        a
    }

    fn push(&mut self, key: &str, value: &str) {
        self.text.push_str(key);
        let k = self.text.len() as u32;
        self.text.push_str(value);
        self.ends.push((k, self.text.len() as u32));
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The pairs, in insertion order (sorted by key once published).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |&(k, v)| {
            let (k, v) = (k as usize, v as usize);
            let pair = (&self.text[start..k], &self.text[k..v]);
            start = v;
            pair
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Sorted by key.
    fn sort(&mut self) {
        let mut pairs: Vec<(&str, &str)> = self.iter().collect();
        if pairs.windows(2).all(|w| w[0].0 <= w[1].0) {
            return;
        }
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        *self = Attributes::from_pairs(pairs);
    }
}

impl Clone for Attributes {
    fn clone(&self) -> Self {
        Attributes {
            text: self.text.clone(),
            ends: self.ends.clone(),
        }
    }

    fn clone_from(&mut self, source: &Self) {
        self.text.clone_from(&source.text);
        self.ends.clone_from(&source.ends);
    }
}

impl serde::Serialize for Attributes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// An image name without its tag or digest, in its familiar form (`localhost:5000/app:1` is
/// `localhost:5000/app`, `docker.io/library/busybox:latest` is `busybox`). The bus does not
/// parse image references itself: the daemon installs `image::reference::familiar_repository`
/// with [`EventBus::with_image_repository`].
pub type ImageRepository = fn(&str) -> String;

/// The repository of an image name by its text alone: the name without `@digest` and without
/// a `:tag` after the last `/` (no `docker.io/library/` shortening).
pub fn strip_tag(name: &str) -> String {
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => name[..i].to_string(),
        _ => name.to_string(),
    }
}

/// What `GET /events` asks for.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub filters: Filters,
}

impl EventQuery {
    /// Build a query from the raw `since`, `until` and `filters` parameters, as dockerd's
    /// `getEvents`: times are Unix timestamps (`seconds[.nanoseconds]`; the CLI converts
    /// durations and dates before sending), filters are not checked against known names
    /// (an unknown filter or `type` value only matches what moby's filter would).
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        filters: Option<&str>,
    ) -> Result<Self, EventsError> {
        let time = |name: &str, v: Option<&str>| -> Result<Option<SystemTime>, EventsError> {
            match v.filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => parse_unix_timestamp(s).map(Some).map_err(|e| {
                    EventsError::invalid(format!(
                        "invalid value for '{name}': invalid timestamp {s:?}: {e}"
                    ))
                }),
            }
        };
        let since_t = time("since", since)?;
        let until_t = time("until", until)?;
        if let (Some(s), Some(u)) = (since_t, until_t) {
            if u < s {
                return Err(EventsError::invalid(format!(
                    "`since` time ({}) cannot be after `until` time ({})",
                    since.unwrap_or(""),
                    until.unwrap_or("")
                )));
            }
        }
        let filters = Filters::parse(filters.unwrap_or(""))
            .map_err(|e| EventsError::invalid(e.to_string()))?;
        Ok(EventQuery {
            since: since_t,
            until: until_t,
            filters,
        })
    }
}

/// The ring: [`RING_SIZE`] slots (see [`EventBus::make_slots`]); event `seq` sits in slot
/// `(seq - 1) % RING_SIZE` until a later event takes the slot over.
struct Inner {
    ring: Vec<Event>,
    next_seq: u64,
}

impl Inner {
    /// The oldest sequence number still in the ring (`next_seq` while it is empty).
    fn oldest(&self) -> u64 {
        self.next_seq - (self.next_seq - 1).min(RING_SIZE as u64)
    }

    fn get(&self, seq: u64) -> Option<&Event> {
        if seq < self.oldest() || seq >= self.next_seq {
            return None;
        }
        self.ring.get(slot(seq))
    }
}

/// The ring slot of event `seq` (sequence numbers start at 1).
fn slot(seq: u64) -> usize {
    ((seq - 1) % RING_SIZE as u64) as usize
}

/// The event bus.
///
/// The ring's [`RING_SIZE`] slots are allocated together before the first event (by
/// [`EventBus::make_slots`], which the daemon runs beside its other start-up work: 0.4 ms of
/// allocations and page faults) and then overwritten in
/// place, each into the buffers it already has ([`Event::clone_from`]); subscribers learn of a
/// new event by its sequence number and copy it out of the ring. So publishing allocates
/// nothing that outlives the call. Events are published all through a busy period: as objects
/// of their own, the last thousand of them stayed spread over the heap after a load had gone,
/// each keeping a page of it resident (heaptrack: half of what a load left allocated;
/// docs/hardening.md, *Load and leaks*).
pub struct EventBus {
    inner: Arc<Mutex<Inner>>,
    image_repository: ImageRepository,
    tx: broadcast::Sender<u64>,
    closed: tokio::sync::watch::Sender<bool>,
    /// Called for every event published (the daemon's `engine_daemon_events_total`).
    on_publish: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// The buffers each slot starts with, sized for a typical event (a container's ID, an action
/// such as `exec_create: sh -c …`, its name and image and a few labels), so that most events
/// fit without growing them: a slot's buffer grown during a load is made wherever the heap has
/// room then, and keeps that page resident afterwards (with 16 bytes for the action, every
/// `exec_create: true` grew one; 0.5 MB of the RSS left after `bench/load.py`).
const SLOT_ACTION: usize = 64;
const SLOT_ACTOR: usize = 64;
const SLOT_TEXT: usize = 160;
const SLOT_PAIRS: usize = 6;

/// The ring's slots, each with its buffers.
fn slots() -> Vec<Event> {
    (0..RING_SIZE)
        .map(|_| Event {
            kind: "",
            action: String::with_capacity(SLOT_ACTION),
            actor_id: String::with_capacity(SLOT_ACTOR),
            attributes: Attributes {
                text: String::with_capacity(SLOT_TEXT),
                ends: Vec::with_capacity(SLOT_PAIRS),
            },
            time_nano: 0,
        })
        .collect()
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

fn lock_inner(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl EventBus {
    /// A bus whose `image` filter strips tags textually ([`strip_tag`]).
    pub fn new() -> Self {
        Self::with_image_repository(strip_tag)
    }

    /// A bus whose `image` filter also matches the repository `image_repository` gives.
    pub fn with_image_repository(image_repository: ImageRepository) -> Self {
        let (tx, _) = broadcast::channel(CHANNEL_SIZE);
        EventBus {
            image_repository,
            inner: Arc::new(Mutex::new(Inner {
                ring: Vec::new(),
                next_seq: 1,
            })),
            tx,
            closed: tokio::sync::watch::channel(false).0,
            on_publish: std::sync::OnceLock::new(),
        }
    }

    /// Call `f` for every event published from now on (once; later calls are ignored).
    pub fn set_on_publish(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_publish.set(f);
    }

    /// Allocate the ring's slots, all together, unless they exist already (the first
    /// [`publish`](Self::publish) makes them too). Made outside the lock, so a publish meanwhile
    /// is not held up.
    pub fn make_slots(&self) {
        if !lock_inner(&self.inner).ring.is_empty() {
            return;
        }
        let ring = slots();
        let mut inner = lock_inner(&self.inner);
        if inner.ring.is_empty() {
            inner.ring = ring;
        }
    }

    /// Record an event and hand it to every subscriber.
    pub fn publish(&self, mut event: Event) {
        event.attributes.sort();
        let mut inner = lock_inner(&self.inner);
        if inner.ring.is_empty() {
            inner.ring = slots();
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.ring[slot(seq)].clone_from(&event);
        // Sending under the lock keeps ring order and channel order the same.
        let _ = self.tx.send(seq);
        drop(inner);
        if let Some(f) = self.on_publish.get() {
            f();
        }
    }

    /// End every subscription (the daemon is shutting down): streams finish cleanly instead of
    /// holding the shutdown up.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// How many clients are subscribed (`NEventsListener` in `/info`).
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Subscribe: past events in `[since, until]` first, then live ones until `until`.
    pub fn subscribe(&self, query: EventQuery) -> Subscription {
        let inner = lock_inner(&self.inner);
        let rx = self.tx.subscribe();
        let mut replay = VecDeque::new();
        if query.since.is_some() || query.until.is_some() {
            let since = query.since.map(unix_nanos).unwrap_or(0);
            let until = query.until.map(unix_nanos).unwrap_or(i128::MAX);
            replay.extend(
                (inner.oldest()..inner.next_seq)
                    .filter_map(|seq| inner.get(seq))
                    .filter(|e| e.time_nano >= since && e.time_nano <= until)
                    .map(|e| Arc::new(e.clone())),
            );
        }
        let last_seq = inner.next_seq - 1;
        let live = query.until.is_none_or(|u| u > SystemTime::now());
        Subscription {
            replay,
            rx: live.then_some(rx),
            ring: self.inner.clone(),
            last_seq,
            query,
            image_repository: self.image_repository,
            closed: self.closed.subscribe(),
        }
    }
}

/// One client's view of the bus.
pub struct Subscription {
    replay: VecDeque<Arc<Event>>,
    rx: Option<broadcast::Receiver<u64>>,
    ring: Arc<Mutex<Inner>>,
    last_seq: u64,
    query: EventQuery,
    image_repository: ImageRepository,
    closed: tokio::sync::watch::Receiver<bool>,
}

impl Subscription {
    /// The next matching event, or `None` once `until` has passed or the bus is gone.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        while let Some(e) = self.replay.pop_front() {
            if e.matches(&self.query.filters, self.image_repository) {
                return Some(e);
            }
        }
        loop {
            if *self.closed.borrow() {
                self.rx = None;
            }
            let rx = self.rx.as_mut()?;
            let wait = self.query.until.map(|u| {
                u.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            });
            let closed = &mut self.closed;
            let received = tokio::select! {
                r = rx.recv() => r,
                _ = async { match wait { Some(w) => tokio::time::sleep(w).await, None => std::future::pending().await } } => {
                    self.rx = None;
                    return None;
                }
                _ = closed.wait_for(|c| *c) => {
                    self.rx = None;
                    return None;
                }
            };
            match received {
                Ok(seq) if seq <= self.last_seq => continue,
                Ok(seq) => {
                    // Copied out under the lock; gone if the ring has come round since.
                    let Some(e) = lock_inner(&self.ring).get(seq).cloned() else {
                        tracing::warn!("events subscriber fell behind and skipped an event");
                        continue;
                    };
                    if let Some(until) = self.query.until {
                        if e.time_nano > unix_nanos(until) {
                            self.rx = None;
                            return None;
                        }
                    }
                    if e.matches(&self.query.filters, self.image_repository) {
                        return Some(Arc::new(e));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("events subscriber fell behind and skipped {n} events");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.rx = None;
                    return None;
                }
            }
        }
    }
}

crate::module_error! {
    /// A bad events query.
    pub struct EventsError;
}

/// A shared handle to the bus.
pub type SharedEventBus = Arc<EventBus>;

#[cfg(test)]
mod tests {
    use super::*;

    fn q(since: Option<&str>, until: Option<&str>, filters: Option<&str>) -> EventQuery {
        EventQuery::parse(since, until, filters).unwrap()
    }

    #[tokio::test]
    async fn replays_then_streams_live() {
        let bus = EventBus::new();
        bus.publish(Event::new("image", "pull", "sha256:aa").attribute("name", "busybox"));
        let mut sub = bus.subscribe(q(Some("0"), None, None));
        bus.publish(Event::new("container", "start", "c1").attribute("image", "busybox"));
        assert_eq!(sub.next().await.unwrap().action, "pull");
        let live = sub.next().await.unwrap();
        assert_eq!(live.action, "start");
        assert_eq!(live.attributes.get("image"), Some("busybox"));
    }

    #[test]
    fn attributes_pack_replace_and_sort() {
        let mut e = Event::new("container", "start", "c1")
            .attribute("name", "web")
            .attribute("image", "busybox")
            .attribute("", "empty key")
            .attribute("name", "db");
        assert_eq!(e.attributes.len(), 3);
        assert_eq!(e.attributes.get("name"), Some("db"));
        assert_eq!(e.attributes.get(""), Some("empty key"));
        assert_eq!(e.attributes.get("nope"), None);
        e.attributes.sort();
        assert_eq!(
            e.attributes.iter().collect::<Vec<_>>(),
            [("", "empty key"), ("image", "busybox"), ("name", "db")]
        );
        assert_eq!(
            serde_json::to_string(&e.attributes).unwrap(),
            r#"{"":"empty key","image":"busybox","name":"db"}"#
        );
        assert!(Attributes::default().is_empty());
    }

    #[tokio::test]
    async fn until_in_the_past_ends_after_replay() {
        let bus = EventBus::new();
        bus.publish(Event::new("daemon", "reload", "d"));
        let mut sub = bus.subscribe(q(
            Some("0"),
            Some(&format!(
                "{}",
                unix_nanos(SystemTime::now()) / 1_000_000_000 + 1
            )),
            None,
        ));
        assert_eq!(sub.next().await.unwrap().action, "reload");
        // The `until` second has not passed yet: wait for it, then the stream ends.
        assert!(sub.next().await.is_none());
    }

    #[tokio::test]
    async fn filters_apply() {
        let bus = EventBus::new();
        let mut sub = bus.subscribe(q(
            None,
            None,
            Some(r#"{"type":["container"],"container":["web"]}"#),
        ));
        bus.publish(Event::new("image", "pull", "x"));
        bus.publish(Event::new("container", "start", "abc").attribute("name", "db"));
        bus.publish(Event::new("container", "start", "def").attribute("name", "web"));
        assert_eq!(sub.next().await.unwrap().actor_id, "def");
    }

    #[tokio::test]
    async fn close_ends_live_subscriptions() {
        let bus = EventBus::new();
        let mut sub = bus.subscribe(q(None, None, None));
        bus.close();
        assert!(tokio::time::timeout(Duration::from_secs(2), sub.next())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn name_and_image_filters_follow_moby() {
        let bus = EventBus::new();
        let mut sub = bus.subscribe(q(
            None,
            None,
            Some(r#"{"container":["web"],"image":["localhost:5000/app"]}"#),
        ));
        bus.publish(
            Event::new("container", "start", "1")
                .attribute("name", "db")
                .attribute("image", "localhost:5000/app:1"),
        );
        bus.publish(
            Event::new("container", "start", "2")
                .attribute("name", "web-1")
                .attribute("image", "localhost:5000/app:1"),
        );
        assert_eq!(sub.next().await.unwrap().actor_id, "2");
    }

    #[test]
    fn strip_tag_keeps_registry_ports() {
        assert_eq!(strip_tag("localhost:5000/app:1"), "localhost:5000/app");
        assert_eq!(strip_tag("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(strip_tag("busybox@sha256:aa"), "busybox");
        assert_eq!(strip_tag("busybox:latest"), "busybox");
    }

    #[test]
    fn bad_queries() {
        let e = EventQuery::parse(Some("garbage"), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid value for 'since': invalid timestamp "garbage": invalid seconds "garbage": invalid syntax"#
        );
        let e = EventQuery::parse(None, Some("1.x"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid value for 'until': invalid timestamp "1.x": invalid nanoseconds: invalid character 'x' at position 0"#
        );
        assert!(EventQuery::parse(Some("10m"), None, None).is_err());
        assert!(EventQuery::parse(None, None, Some("{not json")).is_err());
        let e = EventQuery::parse(Some("20"), Some("10"), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`since` time (20) cannot be after `until` time (10)"
        );
    }

    #[test]
    fn unknown_filters_and_types_are_accepted() {
        assert!(EventQuery::parse(None, None, Some(r#"{"bogus":["x"]}"#)).is_ok());
        assert!(EventQuery::parse(None, None, Some(r#"{"type":["bogus"]}"#)).is_ok());
        assert!(EventQuery::parse(None, None, Some(r#"{"action":["start"]}"#)).is_ok());
    }

    #[test]
    fn timestamps_follow_moby() {
        let t = |s: &str| unix_nanos(parse_unix_timestamp(s).unwrap());
        assert_eq!(t("10"), 10_000_000_000);
        assert_eq!(t("10.5"), 10_500_000_000);
        assert_eq!(t("10.000000001"), 10_000_000_001);
        assert_eq!(t("10.0000000019"), 10_000_000_001);
        assert!(parse_unix_timestamp("99999999999999999999").is_err());
        assert!(parse_unix_timestamp("1.123456789012345678901").is_err());
        assert!(parse_unix_timestamp("2024-01-01T00:00:00Z").is_err());
    }

    fn passes(filters: &str, e: &Event) -> bool {
        e.matches(&Filters::parse(filters).unwrap(), strip_tag)
    }

    #[test]
    fn filters_match_like_moby() {
        let start = Event::new("container", "start", "abc123")
            .attribute("name", "web")
            .attribute("image", "busybox:latest")
            .attribute("tier", "front");
        // Unknown filter names change nothing; an unknown type matches nothing.
        assert!(passes(r#"{"bogus":["x"]}"#, &start));
        assert!(!passes(r#"{"type":["bogus"]}"#, &start));
        assert!(passes(r#"{"event":["start"],"container":["abc"]}"#, &start));
        assert!(!passes(r#"{"event":["star"]}"#, &start));
        assert!(passes(r#"{"image":["busybox"]}"#, &start));
        assert!(passes(r#"{"label":["tier=front"]}"#, &start));
        assert!(!passes(r#"{"label":["tier=back"]}"#, &start));
        assert!(passes(r#"{"scope":["local"]}"#, &start));
        assert!(!passes(r#"{"scope":["swarm"]}"#, &start));
        // A kind's filter matches any event whose ID or name has that prefix.
        let vol = Event::new("volume", "create", "web-data").attribute("driver", "local");
        assert!(passes(r#"{"container":["web"]}"#, &vol));
        assert!(!passes(r#"{"container":["db"]}"#, &vol));
        assert!(passes(r#"{"volume":["web-d"]}"#, &vol));
        // `health_status` makes the event filter a prefix match.
        let health = Event::new("container", "health_status: healthy", "abc");
        assert!(passes(r#"{"event":["health_status"]}"#, &health));
        assert!(!passes(r#"{"event":["health"]}"#, &health));
        // Image events match by ID and by name with or without the tag.
        let tag = Event::new("image", "tag", "sha256:aa").attribute("name", "app:1");
        assert!(passes(r#"{"image":["app"]}"#, &tag));
        assert!(passes(r#"{"image":["sha256:aa"]}"#, &tag));
        assert!(!passes(r#"{"image":["other"]}"#, &tag));
    }

    #[test]
    fn slots_are_made_once_by_whichever_comes_first() {
        let bus = EventBus::new();
        assert!(bus.inner.lock().unwrap().ring.is_empty());
        bus.make_slots();
        let first = bus.inner.lock().unwrap().ring.as_ptr();
        assert_eq!(bus.inner.lock().unwrap().ring.len(), RING_SIZE);
        bus.publish(Event::new("volume", "create", "v1"));
        bus.make_slots();
        let inner = bus.inner.lock().unwrap();
        assert_eq!(inner.ring.as_ptr(), first, "the slots were made anew");
        assert_eq!(inner.get(1).unwrap().actor_id, "v1");
    }

    #[test]
    fn ring_keeps_a_thousand_events() {
        let bus = EventBus::new();
        for i in 0..RING_SIZE + 10 {
            bus.publish(Event::new("volume", "create", format!("v{i}")));
        }
        let inner = bus.inner.lock().unwrap();
        assert_eq!(inner.ring.len(), RING_SIZE);
        assert_eq!(inner.next_seq - inner.oldest(), RING_SIZE as u64);
        const { assert!(RING_SIZE >= 1000) };
        assert_eq!(inner.get(inner.oldest()).unwrap().actor_id, "v10");
        assert_eq!(inner.get(inner.oldest() - 1), None);
        assert_eq!(
            inner.get(inner.next_seq - 1).unwrap().actor_id,
            format!("v{}", RING_SIZE + 9)
        );
        assert_eq!(inner.get(inner.next_seq), None);
    }

    #[tokio::test]
    async fn overwritten_slots_reuse_their_buffers_and_lagging_readers_skip() {
        let bus = EventBus::new();
        let mut sub = bus.subscribe(q(None, None, None));
        bus.publish(
            Event::new("container", "start", "c".repeat(64))
                .attribute("name", "web")
                .attribute("image", "busybox"),
        );
        let first = sub.next().await.unwrap();
        assert_eq!(first.attributes.get("name"), Some("web"));
        // The same slot, RING_SIZE events later: its buffers are kept, not made anew.
        let (text, actor) = {
            let inner = bus.inner.lock().unwrap();
            (
                inner.ring[0].attributes.text.as_ptr(),
                inner.ring[0].actor_id.as_ptr(),
            )
        };
        for i in 0..RING_SIZE {
            bus.publish(Event::new("container", "die", format!("{i:064}")).attribute("name", "x"));
        }
        {
            let inner = bus.inner.lock().unwrap();
            assert_eq!(inner.ring[0].actor_id, format!("{:064}", RING_SIZE - 1));
            assert_eq!(inner.ring[0].attributes.text.as_ptr(), text);
            assert_eq!(inner.ring[0].actor_id.as_ptr(), actor);
        }
        // The subscriber read one event; the rest of the channel has been overwritten but
        // the newest RING_SIZE are still there: it reads them in order.
        let next = sub.next().await.unwrap();
        assert_eq!(next.action, "die");
        assert_eq!(next.actor_id, format!("{:064}", 0));
    }
}
