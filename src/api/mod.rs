//! The Engine API: routing, versions, and thin handlers over backend traits.
//!
//! Handlers parse the request, call one method of a backend trait and write the response; they
//! hold no logic and know no concrete manager. `crate::daemon::Daemon` implements the traits.

pub mod body;
mod container;
pub mod error;
mod events;
mod image;
pub mod query;
mod router;
mod system;

pub use container::{ContainerBackend, WaitFuture};
pub use events::EventsBackend;
pub use image::ImageBackend;
pub use router::{Api, Ctx};
pub use system::SystemBackend;

/// Everything the API needs from the daemon.
pub trait Backend:
    SystemBackend + EventsBackend + ImageBackend + ContainerBackend + Send + Sync + 'static
{
}

impl<T> Backend for T where
    T: SystemBackend + EventsBackend + ImageBackend + ContainerBackend + Send + Sync + 'static
{
}
