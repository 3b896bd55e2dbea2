//! Request and response bodies: bounded JSON reads, JSON and text responses, streams.

use std::future::Future;
use std::pin::Pin;
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
use crate::util::io::{BodyPart, BodyReceiver};

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

/// How much of a request body is gathered into one part before it is handed on. Clients
/// send bulk bodies (contexts, archives) in small frames (the docker CLI's chunks are 32 KiB);
/// handing each one on costs a wake-up of the blocking reader, which dominated a cached build.
const BATCH: usize = 512 << 10;

/// Hand a request body to a manager: the receiving end of a channel of parts of up to
/// [`BATCH`] bytes (the client's frames, not copied), and the [`Pump`] that fills it. Every
/// user of it reads a whole upload (a context or an archive), so a part waits for the frames
/// that fill it; the body's end or an error sends what was gathered first.
pub fn body_channel(mut body: hyper::body::Incoming) -> (BodyReceiver, Pump) {
    let (tx, rx) = mpsc::channel(8);
    let pump = async move {
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
                        if tx.send(Ok(BodyPart::Data(full))).await.is_err() {
                            draining = Some(0);
                        }
                    }
                }
                Some(Err(e)) => {
                    if let Some(rest) = batch.take() {
                        let _ = tx.send(Ok(BodyPart::Data(rest))).await;
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
            let _ = tx.send(Ok(BodyPart::Data(rest))).await;
        }
        let _ = tx.send(Ok(BodyPart::End)).await;
    };
    (rx, Pump(Box::pin(pump)))
}

/// Drop a request body the handler answers without reading: a task of its own reads it to the
/// end (up to [`DRAIN_LIMIT`]), so that the client reads the answer rather than a broken pipe
/// on its next write.
pub fn drain(body: hyper::body::Incoming) {
    let (_, pump) = body_channel(body);
    tokio::spawn(pump.0);
}

/// What moves a request body from hyper into the channel [`body_channel`] returned.
pub struct Pump(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Pump {
    /// Run `work` (what reads the body) while this task pumps the body. Handlers run in the
    /// connection's task, so each frame passes from hyper's reader to the pump without a task
    /// switch. If `work` finishes first, the rest of the body is pumped (or drained, so that
    /// the client reads the response rather than a broken pipe) by a task of its own. If the
    /// request is cancelled, the pump goes with it and the reader sees the body cut off.
    pub async fn drive<T>(self, work: impl Future<Output = T>) -> T {
        let mut pump = self.0;
        let mut pumped = false;
        tokio::pin!(work);
        let out = loop {
            tokio::select! {
                biased;
                out = &mut work => break out,
                () = &mut pump, if !pumped => pumped = true,
            }
        };
        if !pumped {
            tokio::spawn(pump);
        }
        out
    }
}

/// Frames gathered into one part, in order and without copying them.
#[derive(Default)]
struct Batch {
    frames: Vec<Bytes>,
    len: usize,
}

impl Batch {
    /// Add a frame; a full part comes back.
    fn push(&mut self, data: Bytes) -> Option<Vec<Bytes>> {
        if data.is_empty() {
            return None;
        }
        self.len += data.len();
        self.frames.push(data);
        if self.len >= BATCH {
            self.take()
        } else {
            None
        }
    }

    /// What has been gathered, if anything.
    fn take(&mut self) -> Option<Vec<Bytes>> {
        self.len = 0;
        (!self.frames.is_empty()).then(|| std::mem::take(&mut self.frames))
    }
}

/// A JSON response whose objects keep dockerd's key order (`docker inspect` prints the bytes
/// as they come; see `order`).
pub fn json_ordered(
    status: StatusCode,
    value: &serde_json::Value,
    shape: &super::order::Shape,
) -> Response<Body> {
    let mut v = super::order::to_vec(value, shape);
    v.push(b'\n');
    json_bytes_response(status, v)
}

/// A JSON response: the value, then a newline, as Go's `json.Encoder` writes it.
pub fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut v) => {
            v.push(b'\n');
            json_bytes_response(status, v)
        }
        Err(e) => {
            tracing::error!("encode response: {e}");
            json_bytes_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                b"{\"message\":\"internal error: could not encode the response\"}\n".to_vec(),
            )
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
    fn batches_gather_frames_into_parts_in_order() {
        let mut b = Batch::default();
        assert!(b.push(Bytes::new()).is_none());
        assert!(b.push(Bytes::from_static(b"ab")).is_none());
        assert!(b.push(Bytes::from_static(b"cd")).is_none());
        assert_eq!(
            b.take(),
            Some(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")])
        );
        assert!(b.take().is_none());
        let big = Bytes::from(vec![7u8; BATCH]);
        assert_eq!(b.push(big.clone()), Some(vec![big]));
        // Frames that fill a part together come back as one, then gathering starts afresh.
        let half = Bytes::from(vec![1u8; BATCH / 2]);
        assert!(b.push(half.clone()).is_none());
        let full = b.push(half.clone()).expect("a full part");
        assert_eq!(full.iter().map(Bytes::len).sum::<usize>(), BATCH);
        assert!(b.take().is_none());
    }

    /// A server on one end of a socket pair whose handler reads the whole upload through
    /// `body_channel`, `Pump::drive` and a blocking `ChannelReader`, and reports what it read;
    /// the other end, with a chunked request's head sent.
    async fn upload_server() -> (
        tokio::net::UnixStream,
        mpsc::Receiver<std::io::Result<Vec<u8>>>,
    ) {
        use std::io::Read;
        let (server, client) = tokio::net::UnixStream::pair().unwrap();
        let (done_tx, done_rx) = mpsc::channel(1);
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let done_tx = done_tx.clone();
            async move {
                let (rx, pump) = body_channel(req.into_body());
                // The reader reports itself: hyper drops this future when the client goes.
                let reader = tokio::task::spawn_blocking(move || {
                    let mut v = Vec::new();
                    let got = crate::util::io::ChannelReader::new(rx)
                        .read_to_end(&mut v)
                        .map(|_| v);
                    let _ = done_tx.blocking_send(got);
                });
                pump.drive(reader).await.unwrap();
                Ok::<_, std::convert::Infallible>(Response::new(empty()))
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server), svc),
        );
        let mut client = client;
        tokio::io::AsyncWriteExt::write_all(
            &mut client,
            b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
        (client, done_rx)
    }

    #[tokio::test]
    async fn uploads_are_pumped_whole_and_in_order() {
        use tokio::io::AsyncWriteExt;
        let (mut client, mut done) = upload_server().await;
        let mut sent = Vec::new();
        // More than two parts' worth, in frames of odd sizes.
        for i in 0..300u32 {
            let frame = vec![(i % 251) as u8; 4000 + (i as usize % 7) * 1000];
            client
                .write_all(format!("{:x}\r\n", frame.len()).as_bytes())
                .await
                .unwrap();
            client.write_all(&frame).await.unwrap();
            client.write_all(b"\r\n").await.unwrap();
            sent.extend_from_slice(&frame);
        }
        client.write_all(b"0\r\n\r\n").await.unwrap();
        let got = done.recv().await.unwrap().unwrap();
        assert!(sent.len() > 2 * BATCH);
        assert!(got == sent, "{} bytes read of {}", got.len(), sent.len());
    }

    #[tokio::test]
    async fn an_upload_cut_off_is_an_error_for_its_reader() {
        use tokio::io::AsyncWriteExt;
        let (mut client, mut done) = upload_server().await;
        client.write_all(b"5\r\nhello\r\n").await.unwrap();
        drop(client);
        let got = done.recv().await.unwrap();
        assert!(got.is_err(), "a cut-off body read as complete: {got:?}");
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
