//! berth: a Docker Engine API compatible container daemon.
//!
//! Module map (see docs/architecture.md): `api` speaks HTTP and calls one backend trait per
//! router; the managers implement them (`image::backend`, `events::backend`,
//! `container::backend`) and `daemon` the system-wide one; `server` accepts connections;
//! `runtime` is the only module that touches libcontainer. `tests/layering.rs` checks the layers.

pub mod api;
pub mod builder;
pub mod config;
pub mod container;
pub mod daemon;
pub mod errors;
pub mod events;
pub mod filters;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod logger;
pub mod metrics;
pub mod network;
pub mod pidfile;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod system;
pub mod util;
pub mod version;
pub mod volume;
