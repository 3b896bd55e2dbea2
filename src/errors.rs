//! The error kinds shared by every module.
//!
//! Each module has its own error type; all of them implement [`Kinded`] so the API layer can
//! turn any of them into a status code and a `{"message": "..."}` body in one place
//! (`api::error::status_for`). Managers never see HTTP.

use std::fmt;

/// What went wrong, as far as a client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The named object does not exist (404).
    NotFound,
    /// The request is malformed or names an impossible value (400).
    InvalidParameter,
    /// The request conflicts with the current state, e.g. a name in use (409).
    Conflict,
    /// Credentials are missing or wrong (401).
    Unauthorized,
    /// The operation is not allowed (403).
    Forbidden,
    /// A request body exceeds its bound (413).
    TooLarge,
    /// A dependency is temporarily unavailable (503).
    Unavailable,
    /// The operation is not implemented by berth (501).
    NotImplemented,
    /// Anything else: a bug or a host failure (500).
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::InvalidParameter => "invalid parameter",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::NotImplemented => "not implemented",
            ErrorKind::Internal => "internal",
        };
        f.write_str(s)
    }
}

/// An error that knows its [`ErrorKind`].
pub trait Kinded: std::error::Error {
    fn kind(&self) -> ErrorKind;
}
