//! Containers: the manager, its records on disk, restart policies and logs. Nothing here
//! knows HTTP; the runtime (`crate::runtime`) runs the processes.

pub mod attach;
pub mod create;
pub mod exec;
pub mod inspect;
pub mod list;
pub mod logs;
pub mod manager;
mod monitor;
pub mod mounts;
pub mod names;
pub mod ops;
mod pause;
pub mod record;
mod remove;
pub mod restart;
mod restore;
mod start;
pub mod stop;
mod update;

use std::fmt;

use crate::errors::{ErrorKind, Kinded};

pub use manager::{ContainerManager, ManagerConfig};

/// A container-side failure, with Docker's wording where clients parse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerError {
    kind: ErrorKind,
    message: String,
}

impl ContainerError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ContainerError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

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

    /// An I/O failure with what was being done.
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Self {
        Self::internal(format!("{context}: {e}"))
    }
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ContainerError {}

impl Kinded for ContainerError {
    fn kind(&self) -> ErrorKind {
        self.kind
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
