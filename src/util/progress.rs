//! dockerd's JSON message stream (`jsonmessage`): what pull, push, load and import write, one
//! object per line, and what the docker CLI draws progress bars from.

use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProgressDetail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ErrorDetail {
    pub message: String,
}

/// One message of the stream.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct JsonMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<ErrorDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<Value>,
}

impl JsonMessage {
    pub fn status(s: impl Into<String>) -> Self {
        JsonMessage {
            status: Some(s.into()),
            ..Default::default()
        }
    }

    pub fn stream(s: impl Into<String>) -> Self {
        JsonMessage {
            stream: Some(s.into()),
            ..Default::default()
        }
    }

    pub fn error(msg: impl Into<String>) -> Self {
        let m = msg.into();
        JsonMessage {
            error_detail: Some(ErrorDetail { message: m.clone() }),
            error: Some(m),
            ..Default::default()
        }
    }
}

/// Where a manager sends progress; sending never fails the operation (a gone client is
/// ignored).
#[derive(Clone)]
pub struct Progress {
    tx: Option<mpsc::Sender<JsonMessage>>,
}

impl Progress {
    pub fn new(tx: mpsc::Sender<JsonMessage>) -> Self {
        Progress { tx: Some(tx) }
    }

    /// Progress that goes nowhere.
    pub fn discard() -> Self {
        Progress { tx: None }
    }

    /// Send from a blocking thread.
    pub fn send_blocking(&self, m: JsonMessage) {
        if let Some(tx) = &self.tx {
            let _ = tx.blocking_send(m);
        }
    }

    /// Send from async code.
    pub async fn send(&self, m: JsonMessage) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(m).await;
        }
    }
}
