//! The Engine API: routing, versions, and thin handlers over backend traits.
//!
//! Handlers parse the request, call one method of a backend trait and write the response; they
//! hold no logic and know no concrete manager. `crate::daemon::Daemon` implements the traits.

pub mod body;
pub mod error;
mod events;
pub mod query;
mod router;
mod system;

pub use events::EventsBackend;
pub use router::{Api, Ctx};
pub use system::SystemBackend;

/// Everything the API needs from the daemon.
pub trait Backend: SystemBackend + EventsBackend + Send + Sync + 'static {}

impl<T: SystemBackend + EventsBackend + Send + Sync + 'static> Backend for T {}
