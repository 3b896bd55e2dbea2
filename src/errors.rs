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

/// Define a module's error type: a `{kind, message}` struct with the constructors every module
/// uses (`new`, `invalid`, `not_found`, `conflict`, `internal`, `io`), `Display` (the message
/// alone), `std::error::Error` and [`Kinded`]. A module adds its own constructors in its own
/// `impl` block:
///
/// ```
/// berth::errors::module_error! {
///     /// A widget-side failure.
///     pub struct WidgetError;
/// }
///
/// impl WidgetError {
///     pub fn no_such_widget(name: &str) -> Self {
///         Self::not_found(format!("No such widget: {name}"))
///     }
/// }
/// ```
#[macro_export]
macro_rules! module_error {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        $vis struct $name {
            kind: $crate::errors::ErrorKind,
            message: String,
        }

        #[allow(dead_code)]
        impl $name {
            pub fn new(kind: $crate::errors::ErrorKind, message: impl Into<String>) -> Self {
                $name {
                    kind,
                    message: message.into(),
                }
            }

            pub fn invalid(message: impl Into<String>) -> Self {
                Self::new($crate::errors::ErrorKind::InvalidParameter, message)
            }

            pub fn not_found(message: impl Into<String>) -> Self {
                Self::new($crate::errors::ErrorKind::NotFound, message)
            }

            pub fn conflict(message: impl Into<String>) -> Self {
                Self::new($crate::errors::ErrorKind::Conflict, message)
            }

            pub fn forbidden(message: impl Into<String>) -> Self {
                Self::new($crate::errors::ErrorKind::Forbidden, message)
            }

            pub fn internal(message: impl Into<String>) -> Self {
                Self::new($crate::errors::ErrorKind::Internal, message)
            }

            /// An I/O failure with what was being done.
            pub fn io(context: impl ::std::fmt::Display, e: ::std::io::Error) -> Self {
                Self::internal(format!("{context}: {}", $crate::errors::io_text(&e)))
            }

            /// The message alone, as clients see it.
            pub fn message(&self) -> &str {
                &self.message
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.message)
            }
        }

        impl ::std::error::Error for $name {}

        impl $crate::errors::Kinded for $name {
            fn kind(&self) -> $crate::errors::ErrorKind {
                self.kind
            }
        }
    };
}

pub use crate::module_error;

/// An I/O error's text for a message. A full disk reads as Go's (dockerd's) words, which users
/// and scripts look for: `no space left on device`, `disk quota exceeded`; other errors keep
/// Rust's text.
pub fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error().and_then(full_disk_text) {
        Some(t) => t.to_string(),
        None => e.to_string(),
    }
}

/// Go's text of `ENOSPC` and `EDQUOT` (see [`io_text`]).
pub fn full_disk_text(errno: i32) -> Option<&'static str> {
    match errno {
        libc::ENOSPC => Some("no space left on device"),
        libc::EDQUOT => Some("disk quota exceeded"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{ErrorKind, Kinded};

    crate::module_error! {
        /// A test error.
        struct TestError;
    }

    #[test]
    fn module_errors_carry_kind_and_message() {
        let e = TestError::io("read x", std::io::Error::other("boom"));
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert_eq!(e.to_string(), "read x: boom");
        assert_eq!(
            TestError::invalid("bad").kind(),
            ErrorKind::InvalidParameter
        );
        assert_eq!(TestError::not_found("gone").message(), "gone");
        let full = TestError::io("write x", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(full.to_string(), "write x: no space left on device");
    }
}
