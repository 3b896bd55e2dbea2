//! berth: a Docker Engine API compatible container daemon.
//!
//! Module map (see docs/architecture.md): `api` speaks HTTP and calls backend traits; `daemon`
//! implements them over the managers; `server` accepts connections; `runtime` is the only module
//! that touches libcontainer.

pub mod api;
pub mod config;
pub mod container;
pub mod daemon;
pub mod errors;
pub mod events;
pub mod filters;
pub mod image;
pub mod logger;
pub mod pidfile;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod system;
pub mod util;
pub mod version;
