//! `GET /events`: a stream of JSON event objects, one per line.

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use tokio::sync::mpsc;

use super::body::channel_body;
use super::error::ApiError;
use super::router::{Ctx, HandlerResult};
use crate::events::{EventQuery, Subscription};

/// What the events endpoint needs from the daemon.
pub trait EventsBackend {
    /// Subscribe to the event bus; the subscription applies `since`, `until` and filters.
    fn subscribe_events(&self, query: EventQuery) -> Subscription;
}

pub async fn events(ctx: Ctx) -> HandlerResult {
    let q = &ctx.query;
    let query = EventQuery::parse(q.get("since"), q.get("until"), q.get("filters"))
        .map_err(ApiError::from)?;
    let mut sub = ctx.backend.subscribe_events(query);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                ev = sub.next() => {
                    let Some(ev) = ev else { break };
                    let mut line = ev.to_json().to_string().into_bytes();
                    line.push(b'\n');
                    if tx.send(Bytes::from(line)).await.is_err() {
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
