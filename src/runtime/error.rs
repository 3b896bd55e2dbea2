//! The runtime's error: what went wrong preparing a container or talking to its supervisor.
//! Callers decide by variant, never by message text.

use std::fmt;

use super::spec::SpecError;
use crate::errors::{ErrorKind, Kinded};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeError {
    /// No supervisor answers for the container: it ended with its container, or never ran.
    Gone(String),
    /// The supervisor answers, but the container's process is not running.
    NotRunning,
    /// The process could not be executed; Docker reports `code` (126 or 127).
    Exec { code: i32, message: String },
    /// The supervisor did not answer in time.
    Timeout,
    /// The container's configuration cannot be turned into a runtime spec.
    Spec(SpecError),
    /// Anything else: a host failure or a bug.
    Failed(String),
}

impl RuntimeError {
    pub fn failed(message: impl Into<String>) -> RuntimeError {
        RuntimeError::Failed(message.into())
    }

    /// Docker's exit code for a process that could not be executed (126, 127), else 0.
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::Exec { code, .. } => *code,
            _ => 0,
        }
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Gone(m) | RuntimeError::Failed(m) => f.write_str(m),
            RuntimeError::NotRunning => f.write_str("container is not running"),
            RuntimeError::Exec { message, .. } => f.write_str(message),
            RuntimeError::Timeout => f.write_str("the container's supervisor does not answer"),
            RuntimeError::Spec(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RuntimeError {}

impl Kinded for RuntimeError {
    fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::Gone(_) => ErrorKind::NotFound,
            RuntimeError::NotRunning => ErrorKind::Conflict,
            RuntimeError::Exec { .. } => ErrorKind::InvalidParameter,
            RuntimeError::Timeout => ErrorKind::Unavailable,
            RuntimeError::Spec(e) => e.kind(),
            RuntimeError::Failed(_) => ErrorKind::Internal,
        }
    }
}

impl From<SpecError> for RuntimeError {
    fn from(e: SpecError) -> Self {
        RuntimeError::Spec(e)
    }
}
