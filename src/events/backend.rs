//! [`EventsBackend`] over the [`EventBus`]: what the events router calls.

use super::{EventBus, EventQuery, Subscription};
use crate::api::EventsBackend;

impl EventsBackend for EventBus {
    fn subscribe_events(&self, query: EventQuery) -> Subscription {
        self.subscribe(query)
    }
}
