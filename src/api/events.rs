//! `GET /events`: a stream of JSON event objects, one per line.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response};
use tokio::sync::mpsc;

use super::body::channel_body;
use super::error::ApiError;
use super::router::{Ctx, HandlerResult, Route};
use crate::events::{Event, EventQuery, Subscription};
use crate::version::ApiVersion;

/// What the events endpoint needs: the event bus.
pub trait EventsBackend: Send + Sync {
    /// Subscribe to the event bus; the subscription applies `since`, `until` and filters.
    fn subscribe_events(&self, query: EventQuery) -> Subscription;
}

/// The events route over `backend`.
pub fn routes(backend: Arc<dyn EventsBackend>) -> Vec<Route> {
    vec![Route::new(Method::GET, "/events", &backend, events)]
}

pub async fn events(ctx: Ctx<dyn EventsBackend>) -> HandlerResult {
    let q = &ctx.query;
    let query = EventQuery::parse(q.get("since"), q.get("until"), q.get("filters"))
        .map_err(ApiError::from)?;
    let mut sub = ctx.backend.subscribe_events(query);
    let version = ctx.version;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = sub.next() => {
                    let Some(ev) = ev else { break };
                    if skipped(&ev, version) {
                        continue;
                    }
                    let mut line = event_json(&ev, version).to_string().into_bytes();
                    line.push(b'\n');
                    if tx.send(Ok(Bytes::from(line))).await.is_err() {
                        break;
                    }
                }
                // The client went away: stop listening.
                _ = tx.closed() => break,
            }
        }
    });
    let mut resp = Response::new(channel_body(rx));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// moby's `getEvents`: image `create` events exist from API 1.46 on.
fn skipped(e: &Event, version: ApiVersion) -> bool {
    version < ApiVersion::new(1, 46) && e.kind == "image" && e.action == "create"
}

/// An event as the Engine API encodes it. Below API 1.52 (every version berth speaks)
/// container and image events also carry the deprecated `status` and `id` fields, and
/// container events `from` (the `image` attribute; omitted when empty, as dockerd 28 does).
fn event_json(e: &Event, version: ApiVersion) -> serde_json::Value {
    let mut v = serde_json::json!({
        "Type": e.kind,
        "Action": e.action,
        "Actor": { "ID": e.actor_id, "Attributes": e.attributes },
        "scope": "local",
        "time": (e.time_nano / 1_000_000_000) as i64,
        "timeNano": e.time_nano as i64,
    });
    if version < ApiVersion::new(1, 52) && matches!(e.kind, "container" | "image") {
        v["status"] = serde_json::json!(e.action);
        v["id"] = serde_json::json!(e.actor_id);
        if e.kind == "container" {
            if let Some(image) = e.attributes.get("image").filter(|i| !i.is_empty()) {
                v["from"] = serde_json::json!(image);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_fields_below_1_52() {
        let v151 = ApiVersion::new(1, 51);
        let c = Event::new("container", "start", "abc").attribute("image", "busybox");
        let j = event_json(&c, v151);
        assert_eq!(j["status"], "start");
        assert_eq!(j["id"], "abc");
        assert_eq!(j["from"], "busybox");
        let i = Event::new("image", "tag", "sha256:aa").attribute("name", "app:1");
        let j = event_json(&i, ApiVersion::new(1, 24));
        assert_eq!(j["status"], "tag");
        assert_eq!(j["id"], "sha256:aa");
        assert!(j.get("from").is_none());
        let n = Event::new("network", "create", "n1");
        assert!(event_json(&n, v151).get("status").is_none());
        assert!(event_json(&c, ApiVersion::new(1, 52))
            .get("status")
            .is_none());
    }

    #[test]
    fn image_create_hidden_below_1_46() {
        let e = Event::new("image", "create", "sha256:aa");
        assert!(skipped(&e, ApiVersion::new(1, 45)));
        assert!(!skipped(&e, ApiVersion::new(1, 46)));
    }
}
