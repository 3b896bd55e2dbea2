//! GETs of what a user names by URL (`ADD <url>` in a build, `docker import <url>`), as moby's
//! `remotecontext.GetWithStatusError` makes them: a response below 400, or an error with
//! dockerd's words.

use std::time::Duration;

use crate::errors::ErrorKind;

/// Why a GET gave no usable response.
#[derive(Debug)]
pub enum GetError {
    /// The request failed (connection, TLS, a bad URL): `Get "<url>": <cause>`.
    Request(String),
    /// The server answered 400 or more: `failed to GET <url> with status 404 Not Found:
    /// <body>`, with the status for the caller to choose its error's kind (as dockerd does).
    Status { code: u16, message: String },
}

impl GetError {
    /// The kind dockerd gives (`GetWithStatusError`'s errdefs): a failed request is the
    /// system's; 404 not found, 400 invalid, 401, 403, anything else the system's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GetError::Status { code: 404, .. } => ErrorKind::NotFound,
            GetError::Status { code: 400, .. } => ErrorKind::InvalidParameter,
            GetError::Status { code: 401, .. } => ErrorKind::Unauthorized,
            GetError::Status { code: 403, .. } => ErrorKind::Forbidden,
            GetError::Status { .. } | GetError::Request(_) => ErrorKind::Internal,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            GetError::Request(m) | GetError::Status { message: m, .. } => m,
        }
    }
}

/// A response below 400, as the managers read it: its length, a header, its body in chunks
/// (they never see the HTTP client's types).
pub struct Download {
    resp: reqwest::Response,
}

impl Download {
    /// `Content-Length`, when the server sent one.
    pub fn content_length(&self) -> Option<u64> {
        self.resp.content_length()
    }

    /// The header `name`, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.resp.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The next piece of the body; `None` at its end. An error is its text with its causes.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, String> {
        self.resp.chunk().await.map_err(|e| error_chain(&e))
    }
}

/// GET `url` (30 s to connect, no overall bound: bodies may be large).
pub async fn get(url: &str) -> Result<Download, GetError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| GetError::Request(format!("http client: {e}")))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| GetError::Request(format!("Get {url:?}: {}", error_chain(&e))))?;
    let status = resp.status();
    if status.as_u16() < 400 {
        return Ok(Download { resp });
    }
    let mut message = format!(
        "failed to GET {url} with status {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    match resp.text().await {
        Ok(body) => {
            message.push_str(": ");
            message.push_str(body.trim());
        }
        Err(_) => message.push_str(": error reading body"),
    }
    Err(GetError::Status {
        code: status.as_u16(),
        message,
    })
}

/// An error and its sources, `: `-joined (reqwest's own text leaves out the cause, such as
/// `connection refused`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_names_every_cause() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(error_chain(&outer), "connection refused");
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let w = Wrap(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(error_chain(&w), "error sending request: connection refused");
    }

    #[test]
    fn kinds_follow_dockerd() {
        let status = |code| GetError::Status {
            code,
            message: String::new(),
        };
        assert_eq!(status(404).kind(), ErrorKind::NotFound);
        assert_eq!(status(400).kind(), ErrorKind::InvalidParameter);
        assert_eq!(status(401).kind(), ErrorKind::Unauthorized);
        assert_eq!(status(403).kind(), ErrorKind::Forbidden);
        assert_eq!(status(502).kind(), ErrorKind::Internal);
        assert_eq!(GetError::Request(String::new()).kind(), ErrorKind::Internal);
    }
}
