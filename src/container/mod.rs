//! Containers: the manager, its records on disk, restart policies and logs. Nothing here
//! knows HTTP; the runtime (`crate::runtime`) runs the processes.

pub mod archive;
pub mod archive_helper;
pub mod attach;
pub mod backend;
pub mod commit;
pub mod create;
pub mod exec;
pub mod health;
pub mod inspect;
pub mod list;
pub mod logs;
pub mod manager;
mod monitor;
pub mod mounts;
pub mod names;
pub mod network;
pub mod network_backend;
pub mod ops;
mod pause;
pub mod record;
mod remove;
pub mod restart;
mod restore;
mod start;
pub mod stats;
pub mod stop;
mod update;
pub mod volumes;

use crate::errors::{ErrorKind, Kinded};

pub use manager::{ContainerManager, ManagerConfig, ManagerMetrics};

crate::module_error! {
    /// A container-side failure, with Docker's wording where clients parse it.
    pub struct ContainerError;
}

impl ContainerError {
    /// `No such container: NAME`.
    pub fn no_such_container(name: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("No such container: {name}"))
    }

    /// `Container ID is not running`.
    pub fn not_running(id: &str) -> Self {
        Self::conflict(format!("Container {id} is not running"))
    }

    /// `Container ID is paused. Unpause the container before stopping or killing`.
    pub fn paused(id: &str) -> Self {
        Self::conflict(format!(
            "Container {id} is paused. Unpause the container before stopping or killing"
        ))
    }
}

impl From<crate::volume::VolumeError> for ContainerError {
    fn from(e: crate::volume::VolumeError) -> Self {
        ContainerError::new(e.kind(), e.to_string())
    }
}

impl From<crate::image::ImageError> for ContainerError {
    fn from(e: crate::image::ImageError) -> Self {
        ContainerError::new(e.kind(), e.to_string())
    }
}

impl From<crate::runtime::RuntimeError> for ContainerError {
    fn from(e: crate::runtime::RuntimeError) -> Self {
        ContainerError::new(e.kind(), e.to_string())
    }
}

impl From<crate::runtime::spec::SpecError> for ContainerError {
    fn from(e: crate::runtime::spec::SpecError) -> Self {
        ContainerError::new(e.kind(), e.to_string())
    }
}
