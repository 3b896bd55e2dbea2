//! The daemon's event bus: every manager publishes here, `GET /events` subscribes.
//!
//! Recent events are kept in a ring so that `since` can replay them; live events fan out through
//! a broadcast channel. A subscriber that falls too far behind skips what it missed rather than
//! slowing publishers down.

pub mod backend;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use crate::filters::Filters;
use crate::util::time::{parse_timestamp, unix_nanos};

/// How many past events `since` can replay (dockerd keeps 256).
const RING_SIZE: usize = 256;
/// How many live events a subscriber may lag behind before it skips.
const CHANNEL_SIZE: usize = 1024;

/// The object kinds events are about.
pub const EVENT_TYPES: &[&str] = &[
    "builder",
    "config",
    "container",
    "daemon",
    "image",
    "network",
    "node",
    "plugin",
    "secret",
    "service",
    "volume",
];

/// The filter names `GET /events` accepts.
pub const FILTER_KEYS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Object kind: `container`, `image`, `daemon`, ...
    pub kind: &'static str,
    /// What happened: `create`, `start`, `pull`, `reload`, ...
    pub action: String,
    /// The object's ID.
    pub actor_id: String,
    /// Extra facts, such as `name` and `image`, and the object's labels.
    pub attributes: HashMap<String, String>,
    /// Nanoseconds since the epoch.
    pub time_nano: i128,
    seq: u64,
}

impl Event {
    pub fn new(kind: &'static str, action: impl Into<String>, actor_id: impl Into<String>) -> Self {
        Event {
            kind,
            action: action.into(),
            actor_id: actor_id.into(),
            attributes: HashMap::new(),
            time_nano: unix_nanos(SystemTime::now()),
            seq: 0,
        }
    }

    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Whether the event passes `f`. `image_repository` gives an image name's repository in
    /// its familiar form, for the `image` filter.
    fn matches(&self, f: &Filters, image_repository: ImageRepository) -> bool {
        let name = self
            .attributes
            .get("name")
            .map(String::as_str)
            .unwrap_or("");
        // moby's fuzzyMatchName: ID or name, by prefix.
        let by_name = |key: &str| {
            !f.contains(key)
                || (self.kind == key
                    && (f.fuzzy_match(key, &self.actor_id) || f.fuzzy_match(key, name)))
        };
        // moby's matchImage: exact ID, or the name with and without its tag.
        let image_ok = !f.contains("image") || {
            let image_name = match self.kind {
                "image" => Some(name),
                "container" => self.attributes.get("image").map(String::as_str),
                _ => None,
            };
            (self.kind == "image" && f.exact_match("image", &self.actor_id))
                || image_name.is_some_and(|n| {
                    !n.is_empty()
                        && (f.exact_match("image", n)
                            || f.exact_match("image", &image_repository(n)))
                })
        };
        // `health_status: healthy` matches the filter `health_status`.
        let action = self.action.split(':').next().unwrap_or(&self.action);
        f.exact_match("type", self.kind)
            && (f.exact_match("event", &self.action) || f.exact_match("event", action))
            && f.exact_match("scope", "local")
            && f.match_kv_list("label", &self.attributes)
            && image_ok
            && [
                "container",
                "daemon",
                "network",
                "volume",
                "plugin",
                "node",
                "service",
                "secret",
                "config",
            ]
            .iter()
            .all(|k| by_name(k))
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
    /// Build a query from the raw `since`, `until` and `filters` parameters.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        filters: Option<&str>,
    ) -> Result<Self, EventsError> {
        let now = SystemTime::now();
        let time = |name: &str, v: Option<&str>| -> Result<Option<SystemTime>, EventsError> {
            match v.filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => parse_timestamp(s, now).map(Some).ok_or_else(|| {
                    EventsError::invalid(format!(
                        "invalid value for {name}: {s:?} is neither a Unix timestamp, an RFC 3339 time nor a duration"
                    ))
                }),
            }
        };
        let since = time("since", since)?;
        let until = time("until", until)?;
        if let (Some(s), Some(u)) = (since, until) {
            if u < s {
                return Err(EventsError::invalid(format!(
                    "`since` time ({}) cannot be after `until` time ({})",
                    unix_nanos(s) as f64 / 1e9,
                    unix_nanos(u) as f64 / 1e9
                )));
            }
        }
        let filters = Filters::parse(filters.unwrap_or(""))
            .map_err(|e| EventsError::invalid(e.to_string()))?;
        filters
            .validate(FILTER_KEYS)
            .and_then(|_| filters.validate_values("type", EVENT_TYPES))
            .map_err(|e| EventsError::invalid(e.to_string()))?;
        Ok(EventQuery {
            since,
            until,
            filters,
        })
    }
}

struct Inner {
    ring: VecDeque<Event>,
    next_seq: u64,
}

/// The event bus.
pub struct EventBus {
    inner: Mutex<Inner>,
    image_repository: ImageRepository,
    tx: broadcast::Sender<Event>,
    closed: tokio::sync::watch::Sender<bool>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
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
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(RING_SIZE),
                next_seq: 1,
            }),
            tx,
            closed: tokio::sync::watch::channel(false).0,
        }
    }

    /// Record an event and hand it to every subscriber.
    pub fn publish(&self, mut event: Event) {
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        event.seq = inner.next_seq;
        inner.next_seq += 1;
        if inner.ring.len() == RING_SIZE {
            inner.ring.pop_front();
        }
        inner.ring.push_back(event.clone());
        // Sending under the lock keeps ring order and channel order the same.
        let _ = self.tx.send(event);
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
        let inner = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let rx = self.tx.subscribe();
        let mut replay = VecDeque::new();
        if query.since.is_some() || query.until.is_some() {
            let since = query.since.map(unix_nanos).unwrap_or(0);
            let until = query.until.map(unix_nanos).unwrap_or(i128::MAX);
            replay.extend(
                inner
                    .ring
                    .iter()
                    .filter(|e| e.time_nano >= since && e.time_nano <= until)
                    .cloned(),
            );
        }
        let last_seq = inner.next_seq - 1;
        let live = query.until.is_none_or(|u| u > SystemTime::now());
        Subscription {
            replay,
            rx: live.then_some(rx),
            last_seq,
            query,
            image_repository: self.image_repository,
            closed: self.closed.subscribe(),
        }
    }
}

/// One client's view of the bus.
pub struct Subscription {
    replay: VecDeque<Event>,
    rx: Option<broadcast::Receiver<Event>>,
    last_seq: u64,
    query: EventQuery,
    image_repository: ImageRepository,
    closed: tokio::sync::watch::Receiver<bool>,
}

impl Subscription {
    /// The next matching event, or `None` once `until` has passed or the bus is gone.
    pub async fn next(&mut self) -> Option<Event> {
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
                Ok(e) if e.seq <= self.last_seq => continue,
                Ok(e) => {
                    if let Some(until) = self.query.until {
                        if e.time_nano > unix_nanos(until) {
                            self.rx = None;
                            return None;
                        }
                    }
                    if e.matches(&self.query.filters, self.image_repository) {
                        return Some(e);
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
        assert_eq!(live.attributes["image"], "busybox");
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
        assert!(EventQuery::parse(Some("garbage"), None, None).is_err());
        assert!(EventQuery::parse(None, None, Some(r#"{"bogus":["x"]}"#)).is_err());
        assert!(EventQuery::parse(None, None, Some(r#"{"type":["bogus"]}"#)).is_err());
        let e = EventQuery::parse(Some("20"), Some("10"), None).unwrap_err();
        assert!(e.to_string().contains("cannot be after"), "{e}");
    }
}
