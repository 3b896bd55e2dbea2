//! Request and response bodies: bounded JSON reads, JSON and text responses, streams.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::error::ApiError;
use crate::errors::ErrorKind;

/// The body type of every response.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// The default bound on JSON request bodies.
pub const MAX_JSON_BODY: usize = 8 << 20;

/// How long a request body may send nothing before the request fails (milliseconds).
static BODY_IDLE_TIMEOUT_MS: AtomicU64 =
    AtomicU64::new(DEFAULT_BODY_IDLE_TIMEOUT.as_millis() as u64);

/// The default body idle timeout: a client whose body sends nothing for this long is cut off,
/// so a stalled upload cannot hold a request (and what it holds) forever. dockerd has none.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Set the body idle timeout of every request from now on (the server does, from its options).
pub fn set_body_idle_timeout(t: Duration) {
    BODY_IDLE_TIMEOUT_MS.store(t.as_millis().max(1) as u64, Ordering::Relaxed);
}

fn body_idle_timeout() -> Duration {
    Duration::from_millis(BODY_IDLE_TIMEOUT_MS.load(Ordering::Relaxed))
}

/// The next frame of `body`, or an error once it has been idle for the body idle timeout.
async fn next_frame<B>(body: &mut B) -> Option<Result<Frame<Bytes>, String>>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let idle = body_idle_timeout();
    match tokio::time::timeout(idle, body.frame()).await {
        Ok(f) => f.map(|r| r.map_err(|e| e.to_string())),
        Err(_) => Some(Err(format!(
            "timed out: the client sent nothing for {}s",
            idle.as_secs_f64()
        ))),
    }
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body fed by a channel; the stream ends when the sender is dropped, and an `Err` aborts
/// the response (the client sees a cut connection, not a short but complete body).
pub fn channel_body(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|r| (r.map(Frame::data), rx))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

/// How much of a request body is still read (and dropped) after the handler stopped wanting it,
/// so that the client gets to read the error response instead of a broken pipe (Go's server
/// does the same, with a smaller bound).
const DRAIN_LIMIT: u64 = 64 << 20;

/// How much of a request body is gathered into one chunk before it is handed on. Clients
/// send bulk bodies (contexts, archives) in small frames (the docker CLI's chunks are 32 KiB);
/// handing each one on costs two task switches, which dominated a cached build.
const BATCH: usize = 512 << 10;

/// Hand a request body to a manager as a channel of chunks of up to [`BATCH`] bytes. Every
/// user of it reads a whole upload (a context or an archive), so a chunk waits for the frames
/// that fill it; the body's end or an error sends what was gathered first.
pub fn body_channel(mut body: hyper::body::Incoming) -> crate::util::io::ByteReceiver {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut draining = None::<u64>;
        let mut batch = Batch::default();
        loop {
            match next_frame(&mut body).await {
                None => break,
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if let Some(drained) = draining.as_mut() {
                        *drained += data.len() as u64;
                        if *drained > DRAIN_LIMIT {
                            return;
                        }
                    } else if let Some(full) = batch.push(data) {
                        if tx.send(Ok(full)).await.is_err() {
                            draining = Some(0);
                        }
                    }
                }
                Some(Err(e)) => {
                    if let Some(rest) = batch.take() {
                        let _ = tx.send(Ok(rest)).await;
                    }
                    let _ = tx
                        .send(Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("read request body: {e}"),
                        )))
                        .await;
                    return;
                }
            }
        }
        if let Some(rest) = batch.take() {
            let _ = tx.send(Ok(rest)).await;
        }
    });
    rx
}

/// Frames gathered into one chunk: the first frame is kept as it is (no copy when it alone
/// fills a chunk or is the whole body), later ones are copied behind it.
#[derive(Default)]
struct Batch {
    first: Option<Bytes>,
    buf: BytesMut,
}

impl Batch {
    /// Add a frame; a full chunk comes back.
    fn push(&mut self, data: Bytes) -> Option<Bytes> {
        if data.is_empty() {
            return None;
        }
        match self.first.take() {
            None if self.buf.is_empty() => self.first = Some(data),
            None => self.buf.extend_from_slice(&data),
            Some(first) => {
                self.buf.reserve(BATCH.max(first.len() + data.len()));
                self.buf.extend_from_slice(&first);
                self.buf.extend_from_slice(&data);
            }
        }
        let len = self.first.as_ref().map_or(self.buf.len(), Bytes::len);
        if len >= BATCH {
            self.take()
        } else {
            None
        }
    }

    /// What has been gathered, if anything.
    fn take(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }
}

/// A JSON response: the value, then a newline, as Go's `json.Encoder` writes it.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut v) => {
            v.push(b'\n');
            let mut r = Response::new(full(v));
            *r.status_mut() = status;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => {
            tracing::error!("encode response: {e}");
            let mut r = Response::new(full(
                "{\"message\":\"internal error: could not encode the response\"}\n",
            ));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
    }
}

/// A JSON response already encoded (with its newline) by a backend.
pub fn json_bytes_response(status: StatusCode, encoded: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(full(encoded));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A `text/plain` response.
pub fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Refuse a body that declares a content type other than JSON (moby's `CheckForJSON`).
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct
        .to_str()
        .map_err(|_| ApiError::invalid("malformed Content-Type header"))?;
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        )))
    }
}

/// Read a whole body, refusing more than `limit` bytes with 413.
pub async fn read_limited<B>(
    headers: &HeaderMap,
    mut body: B,
    limit: usize,
) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let too_large = || {
        ApiError::new(
            ErrorKind::TooLarge,
            format!("request body is too large: the limit is {limit} bytes"),
        )
    };
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = next_frame(&mut body).await {
        let frame = frame.map_err(|e| ApiError::invalid(format!("read request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Read and decode a JSON body, with dockerd's error texts.
pub async fn read_json<T, B>(headers: &HeaderMap, body: B, limit: usize) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    check_json_content_type(headers)?;
    let bytes = read_limited(headers, body, limit).await?;
    parse_json(&bytes)
}

/// Decode JSON bytes as dockerd reports failures: `invalid JSON: ...`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "invalid JSON: got EOF while reading request body",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Thing {
        #[serde(rename = "Name")]
        name: String,
    }

    fn headers(ct: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        h
    }

    #[test]
    fn batches_gather_frames_into_chunks_in_order() {
        let mut b = Batch::default();
        assert!(b.push(Bytes::new()).is_none());
        assert!(b.push(Bytes::from_static(b"ab")).is_none());
        assert!(b.push(Bytes::from_static(b"cd")).is_none());
        assert_eq!(b.take().as_deref(), Some(&b"abcd"[..]));
        assert!(b.take().is_none());
        // A lone frame is handed on as it is; a big one fills a chunk at once.
        assert!(b.push(Bytes::from_static(b"x")).is_none());
        assert_eq!(b.take().as_deref(), Some(&b"x"[..]));
        let big = Bytes::from(vec![7u8; BATCH]);
        assert_eq!(b.push(big.clone()), Some(big));
        // Frames that fill a chunk together come back as one, then gathering starts afresh.
        let half = Bytes::from(vec![1u8; BATCH / 2]);
        assert!(b.push(half.clone()).is_none());
        let full = b.push(half.clone()).expect("a full chunk");
        assert_eq!(full.len(), BATCH);
        assert!(b.take().is_none());
    }

    #[tokio::test]
    async fn reads_json_within_the_limit() {
        let t: Thing = read_json(
            &headers(Some("application/json")),
            Full::new(Bytes::from(r#"{"Name":"x"}"#)),
            100,
        )
        .await
        .unwrap();
        assert_eq!(t.name, "x");
    }

    #[tokio::test]
    async fn refuses_oversized_bodies_with_413() {
        let big = Bytes::from(vec![b' '; 200]);
        let e = read_json::<Thing, _>(&headers(None), Full::new(big), 100)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 413);
        let mut h = headers(None);
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("1000000"));
        let e = read_limited(&h, Full::new(Bytes::from("{}")), 100)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 413);
    }

    #[tokio::test]
    async fn malformed_json_is_400_with_dockerd_text() {
        let e = read_json::<Thing, _>(&headers(None), Full::new(Bytes::from("{bad")), 100)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message.starts_with("invalid JSON: "), "{}", e.message);
        let e = read_json::<Thing, _>(&headers(None), Full::new(Bytes::new()), 100)
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            "invalid JSON: got EOF while reading request body"
        );
        let e = read_json::<Thing, _>(&headers(None), Full::new(Bytes::from(r#"{"Name":3}"#)), 100)
            .await
            .unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = read_json::<Thing, _>(
            &headers(Some("text/plain")),
            Full::new(Bytes::from("{}")),
            100,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.message,
            "unsupported Content-Type header (text/plain): must be 'application/json'"
        );
    }
}
