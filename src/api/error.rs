//! The one place where an error becomes an HTTP status and a `{"message": "..."}` body.

use std::fmt;

use hyper::{Response, StatusCode};

use super::body::{json_response, Body};
use crate::errors::{ErrorKind, Kinded};

/// An error on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn status(&self) -> StatusCode {
        status_for(self.kind)
    }

    /// The response for this error.
    pub fn into_response(self) -> Response<Body> {
        error_response(self.kind, &self.message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: Kinded> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

/// The HTTP status of an error kind (moby's `httpstatus.FromError`).
pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidParameter => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"message": "..."}` with the status of `kind`.
pub fn error_response(kind: ErrorKind, message: &str) -> Response<Body> {
    json_response(status_for(kind), &serde_json::json!({ "message": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_docker_statuses() {
        assert_eq!(status_for(ErrorKind::NotFound), 404);
        assert_eq!(status_for(ErrorKind::InvalidParameter), 400);
        assert_eq!(status_for(ErrorKind::Conflict), 409);
        assert_eq!(status_for(ErrorKind::Unauthorized), 401);
        assert_eq!(status_for(ErrorKind::Forbidden), 403);
        assert_eq!(status_for(ErrorKind::TooLarge), 413);
        assert_eq!(status_for(ErrorKind::Unavailable), 503);
        assert_eq!(status_for(ErrorKind::NotImplemented), 501);
        assert_eq!(status_for(ErrorKind::Internal), 500);
    }
}
