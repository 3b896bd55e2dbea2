//! The Engine API: routing, versions, and thin handlers over backend traits.
//!
//! As in moby's `initRouter`, each resource module (`system`, `events`, `image`, `container`, `volume`)
//! declares a narrow backend trait, its thin handlers and its own route list over an
//! `Arc<dyn ItsBackend>`; `router` only dispatches. Handlers parse the request, call one backend
//! method and write the response; they hold no logic and know no concrete manager. The managers
//! implement the traits (`image::backend`, `events::backend`, `container::backend`,
//! `volume::backend`), and
//! `crate::daemon::Daemon` implements [`SystemBackend`], the cross-manager one.
//! `swarm` has no backend: without Swarm mode its answers are fixed (dockerd's for a node in
//! no swarm).

pub mod body;
mod build;
mod container;
pub mod error;
mod events;
mod image;
mod network;
mod order;
pub mod query;
pub(crate) mod router;
mod swarm;
mod system;
mod volume;

use std::sync::Arc;

pub use build::BuildBackend;
pub use container::{ContainerBackend, WaitFuture};
pub use events::EventsBackend;
pub use image::ImageBackend;
pub use network::NetworkBackend;
pub use router::{Api, Ctx, HandlerResult, Route};
pub use system::{DiskUsage, DiskUsageOptions, SystemBackend};
pub use volume::VolumeBackend;

/// One backend per router: what [`Api::new`] serves.
#[derive(Clone)]
pub struct Backends {
    /// `/_ping`, `/version`, `/info`, `/system/df`: the daemon.
    pub system: Arc<dyn SystemBackend>,
    /// `/events`: the event bus.
    pub events: Arc<dyn EventsBackend>,
    /// `/images/...`, `/auth`, `/distribution/...`: the image service.
    pub images: Arc<dyn ImageBackend>,
    /// `/containers/...`, `/exec/...`: the container manager.
    pub containers: Arc<dyn ContainerBackend>,
    /// `/volumes/...`: the volume service.
    pub volumes: Arc<dyn VolumeBackend>,
    /// `/networks/...`: the network service with the container manager.
    pub networks: Arc<dyn NetworkBackend>,
    /// `/build`, `/build/prune`, `/session`: the builder.
    pub build: Arc<dyn BuildBackend>,
}

impl Api {
    /// The whole Engine API over `backends`.
    pub fn new(backends: Backends) -> Arc<Api> {
        let mut routes = system::routes(backends.system);
        routes.extend(events::routes(backends.events));
        routes.extend(image::routes(backends.images));
        routes.extend(container::routes(backends.containers));
        routes.extend(volume::routes(backends.volumes));
        routes.extend(network::routes(backends.networks));
        routes.extend(build::routes(backends.build));
        routes.extend(swarm::routes());
        Api::from_routes(routes)
    }
}
