//! The container endpoints: a narrow backend trait and thin handlers (moby's
//! `router/container`). Attach is a hijacked connection (`Upgrade: tcp`).

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use bollard_stubs::models::{
    ContainerCreateBody, ContainerCreateResponse, ContainerPruneResponse, ContainerSummary,
    ContainerTopResponse, ContainerUpdateBody, ContainerUpdateResponse, ContainerWaitResponse,
    ExecConfig, ExecInspectResponse, ExecStartConfig, FilesystemChange,
};
use bytes::Bytes;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::body::{channel_body, empty, json_response, read_json};
use super::error::ApiError;
use super::router::{Ctx, HandlerResult, Route};
use crate::container::exec::ExecStream;
use crate::container::list::ListOptions;
use crate::container::manager::WaitCondition;
use crate::container::ops::LogsOptions;
use crate::container::ContainerError;
use crate::filters::Filters;
use crate::logger::jsonfile::LogEntry;
use crate::logger::{format_timestamp, Stream};
use crate::runtime::proto;
use crate::util::io::ByteReceiver;
use crate::util::time::parse_timestamp;
use crate::version::ApiVersion;

pub type WaitFuture = Pin<Box<dyn Future<Output = (i64, String)> + Send>>;
/// The supervisor stream of an attach, once the container runs (`None` if it never does).
pub type AttachStream = oneshot::Receiver<Option<UnixStream>>;

/// What the container endpoints need: the container manager.
#[async_trait]
pub trait ContainerBackend: Send + Sync {
    async fn container_create(
        &self,
        name: Option<String>,
        body: ContainerCreateBody,
    ) -> Result<ContainerCreateResponse, ContainerError>;
    fn container_list(&self, opts: ListOptions) -> Result<Vec<ContainerSummary>, ContainerError>;
    async fn container_inspect(
        &self,
        name: String,
        size: bool,
    ) -> Result<serde_json::Value, ContainerError>;
    /// `false`: it was already running.
    async fn container_start(&self, name: String) -> Result<bool, ContainerError>;
    /// `false`: it was not running.
    async fn container_stop(
        &self,
        name: String,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<bool, ContainerError>;
    async fn container_restart(
        &self,
        name: String,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<(), ContainerError>;
    async fn container_kill(
        &self,
        name: String,
        signal: Option<String>,
    ) -> Result<(), ContainerError>;
    fn container_wait(
        &self,
        name: String,
        condition: WaitCondition,
    ) -> Result<WaitFuture, ContainerError>;
    async fn container_remove(
        &self,
        name: String,
        force: bool,
        volumes: bool,
    ) -> Result<(), ContainerError>;
    async fn container_pause(&self, name: String, pause: bool) -> Result<(), ContainerError>;
    fn container_rename(&self, name: String, new_name: String) -> Result<(), ContainerError>;
    async fn container_update(
        &self,
        name: String,
        body: ContainerUpdateBody,
    ) -> Result<Vec<String>, ContainerError>;
    async fn container_top(
        &self,
        name: String,
        ps_args: Option<String>,
    ) -> Result<ContainerTopResponse, ContainerError>;
    /// Whether the container has a TTY, and its log entries.
    async fn container_logs(
        &self,
        name: String,
        opts: LogsOptions,
    ) -> Result<(bool, mpsc::Receiver<LogEntry>), ContainerError>;
    async fn container_changes(
        &self,
        name: String,
    ) -> Result<Vec<FilesystemChange>, ContainerError>;
    async fn container_export(&self, name: String) -> Result<ByteReceiver, ContainerError>;
    /// Whether the container has a TTY, and its stream once it runs.
    async fn container_attach(
        &self,
        name: String,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(bool, AttachStream), ContainerError>;
    /// Whether the container was created with a TTY, and with `StdinOnce`.
    fn container_stdio(&self, name: String) -> Result<(bool, bool), ContainerError>;
    /// Wait (a few seconds at most) until the container's exit is recorded.
    async fn container_settled(&self, name: String);
    /// A client detached from the container with the detach keys (the `detach` event).
    fn container_detached(&self, name: String);
    async fn container_prune(
        &self,
        filters: Filters,
    ) -> Result<ContainerPruneResponse, ContainerError>;
    async fn container_resize(
        &self,
        name: String,
        height: u16,
        width: u16,
    ) -> Result<(), ContainerError>;
    fn exec_create(&self, name: String, config: ExecConfig) -> Result<String, ContainerError>;
    /// Start an exec; with `detach`, no stream comes back.
    async fn exec_start(
        &self,
        id: String,
        detach: bool,
        tty: Option<bool>,
        console_size: Option<[u16; 2]>,
    ) -> Result<ExecStream, ContainerError>;
    /// The exit code once the exec ended (waits at most a few seconds).
    async fn exec_wait(&self, id: String) -> Option<i64>;
    fn exec_inspect(&self, id: String) -> Result<ExecInspectResponse, ContainerError>;
    async fn exec_resize(&self, id: String, height: u16, width: u16) -> Result<(), ContainerError>;
}

/// The container and exec routes over `backend`.
pub fn routes(backend: std::sync::Arc<dyn ContainerBackend>) -> Vec<Route> {
    let b = &backend;
    vec![
        Route::new(Method::GET, "/containers/json", b, list),
        Route::new(Method::POST, "/containers/create", b, create),
        Route::new(Method::POST, "/containers/prune", b, prune),
        Route::new(Method::GET, "/containers/{name}/json", b, inspect),
        Route::new(Method::GET, "/containers/{name}/top", b, top),
        Route::new(Method::GET, "/containers/{name}/logs", b, logs),
        Route::new(Method::GET, "/containers/{name}/changes", b, changes),
        Route::new(Method::GET, "/containers/{name}/export", b, export),
        Route::new(Method::POST, "/containers/{name}/start", b, start),
        Route::new(Method::POST, "/containers/{name}/stop", b, stop),
        Route::new(Method::POST, "/containers/{name}/restart", b, restart),
        Route::new(Method::POST, "/containers/{name}/kill", b, kill),
        Route::new(Method::POST, "/containers/{name}/pause", b, pause),
        Route::new(Method::POST, "/containers/{name}/unpause", b, unpause),
        Route::new(Method::POST, "/containers/{name}/rename", b, rename),
        Route::new(Method::POST, "/containers/{name}/update", b, update),
        Route::new(Method::POST, "/containers/{name}/wait", b, wait),
        Route::new(Method::POST, "/containers/{name}/attach", b, attach),
        Route::new(Method::GET, "/containers/{name}/attach/ws", b, attach_ws),
        Route::new(Method::POST, "/containers/{name}/resize", b, resize),
        Route::new(Method::DELETE, "/containers/{name}", b, remove),
        Route::new(Method::POST, "/containers/{name}/exec", b, exec_create),
        Route::new(Method::POST, "/exec/{id}/start", b, exec_start),
        Route::new(Method::POST, "/exec/{id}/resize", b, exec_resize),
        Route::new(Method::GET, "/exec/{id}/json", b, exec_inspect),
    ]
}

fn no_content() -> Response<hyper_body::Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn not_modified() -> Response<hyper_body::Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NOT_MODIFIED;
    r
}

mod hyper_body {
    pub use super::super::body::Body;
}

fn name(ctx: &Ctx<dyn ContainerBackend>) -> String {
    ctx.param("name").to_string()
}

fn opt(ctx: &Ctx<dyn ContainerBackend>, key: &str) -> Option<String> {
    ctx.query
        .get(key)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `t` (or `timeout`) of stop and restart.
fn timeout(ctx: &Ctx<dyn ContainerBackend>) -> Result<Option<i64>, ApiError> {
    match ctx.query.int("t")? {
        Some(t) => Ok(Some(t)),
        None => ctx.query.int("timeout"),
    }
}

fn filters(ctx: &Ctx<dyn ContainerBackend>) -> Result<Filters, ApiError> {
    Ok(Filters::parse(ctx.query.get("filters").unwrap_or(""))?)
}

pub async fn create(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let name = opt(&ctx, "name");
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let (parts, body) = ctx.req.into_parts();
    let body: ContainerCreateBody = read_json(&parts.headers, body, limit).await?;
    let resp = backend.container_create(name, body).await?;
    Ok(json_response(StatusCode::CREATED, &resp))
}

pub async fn list(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let limit = ctx
        .query
        .int("limit")?
        .filter(|l| *l > 0)
        .map(|l| l as usize);
    let opts = ListOptions {
        all: ctx.query.bool("all"),
        limit,
        size: ctx.query.bool("size"),
        filters: filters(&ctx)?,
    };
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.container_list(opts)?,
    ))
}

pub async fn inspect(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let v = ctx
        .backend
        .container_inspect(name(&ctx), ctx.query.bool("size"))
        .await?;
    Ok(json_response(StatusCode::OK, &v))
}

pub async fn start(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    if ctx.backend.container_start(name(&ctx)).await? {
        Ok(no_content())
    } else {
        Ok(not_modified())
    }
}

pub async fn stop(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let t = timeout(&ctx)?;
    if ctx
        .backend
        .container_stop(name(&ctx), opt(&ctx, "signal"), t)
        .await?
    {
        Ok(no_content())
    } else {
        Ok(not_modified())
    }
}

pub async fn restart(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let t = timeout(&ctx)?;
    ctx.backend
        .container_restart(name(&ctx), opt(&ctx, "signal"), t)
        .await?;
    Ok(no_content())
}

pub async fn kill(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    ctx.backend
        .container_kill(name(&ctx), opt(&ctx, "signal"))
        .await?;
    Ok(no_content())
}

pub async fn pause(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    ctx.backend.container_pause(name(&ctx), true).await?;
    Ok(no_content())
}

pub async fn unpause(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    ctx.backend.container_pause(name(&ctx), false).await?;
    Ok(no_content())
}

pub async fn rename(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let new_name = ctx.query.get("name").unwrap_or("").to_string();
    ctx.backend.container_rename(name(&ctx), new_name)?;
    Ok(no_content())
}

pub async fn update(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let n = name(&ctx);
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let (parts, body) = ctx.req.into_parts();
    let body: ContainerUpdateBody = read_json(&parts.headers, body, limit).await?;
    let warnings = backend.container_update(n, body).await?;
    Ok(json_response(
        StatusCode::OK,
        &ContainerUpdateResponse {
            warnings: Some(warnings),
        },
    ))
}

pub async fn top(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let r = ctx
        .backend
        .container_top(name(&ctx), opt(&ctx, "ps_args"))
        .await?;
    Ok(json_response(StatusCode::OK, &r))
}

pub async fn remove(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    if ctx.query.bool("link") {
        return Err(ApiError::new(
            crate::errors::ErrorKind::NotImplemented,
            "legacy links are not supported",
        ));
    }
    ctx.backend
        .container_remove(name(&ctx), ctx.query.bool("force"), ctx.query.bool("v"))
        .await?;
    Ok(no_content())
}

pub async fn prune(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let f = filters(&ctx)?;
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.container_prune(f).await?,
    ))
}

pub async fn changes(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.container_changes(name(&ctx)).await?,
    ))
}

pub async fn export(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let rx = ctx.backend.container_export(name(&ctx)).await?;
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

pub async fn resize(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let h = ctx.query.int("h")?.unwrap_or(0);
    let w = ctx.query.int("w")?.unwrap_or(0);
    if !(0..=u16::MAX as i64).contains(&h) || !(0..=u16::MAX as i64).contains(&w) {
        return Err(ApiError::invalid("invalid terminal size"));
    }
    ctx.backend
        .container_resize(name(&ctx), h as u16, w as u16)
        .await?;
    Ok(Response::new(empty()))
}

/// `POST /containers/{id}/wait`: the 200 and headers go out at once, the body at exit.
pub async fn wait(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let condition = match ctx.query.get("condition").unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => return Err(ApiError::invalid(format!("invalid condition: \"{other}\""))),
    };
    let fut = ctx.backend.container_wait(name(&ctx), condition)?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let (code, _error) = tokio::select! {
            r = fut => r,
            _ = tx.closed() => return,
        };
        let resp = ContainerWaitResponse {
            status_code: code,
            error: None,
        };
        let mut line = serde_json::to_vec(&resp).unwrap_or_default();
        line.push(b'\n');
        let _ = tx.send(Ok(Bytes::from(line))).await;
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `GET /containers/{id}/logs`.
pub async fn logs(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let q = &ctx.query;
    let (stdout, stderr) = (q.bool("stdout"), q.bool("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::invalid(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let now = std::time::SystemTime::now();
    let time = |key: &str| -> Result<Option<std::time::SystemTime>, ApiError> {
        match q.get(key).filter(|s| !s.is_empty() && *s != "0") {
            None => Ok(None),
            Some(s) => parse_timestamp(s, now)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(format!("invalid value for \"{key}\": {s}"))),
        }
    };
    let tail = match q.get("tail").unwrap_or("all") {
        "all" | "" => None,
        t => match t.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n as usize),
            _ => None,
        },
    };
    let opts = LogsOptions {
        follow: q.bool("follow"),
        stdout,
        stderr,
        since: time("since")?,
        until: time("until")?,
        tail,
    };
    let timestamps = q.bool("timestamps");
    let (tty, mut entries) = ctx.backend.container_logs(name(&ctx), opts).await?;
    let multiplexed = !tty;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            // A client that went away ends the follow even while no line comes.
            let e = tokio::select! {
                e = entries.recv() => match e {
                    Some(e) => e,
                    None => break,
                },
                _ = tx.closed() => break,
            };
            let mut payload = Vec::with_capacity(e.line.len() + 40);
            if timestamps {
                payload.extend_from_slice(format_timestamp(e.time).as_bytes());
                payload.push(b' ');
            }
            payload.extend_from_slice(&e.line);
            let chunk = if multiplexed {
                let mut framed = Vec::with_capacity(payload.len() + proto::HEADER);
                let kind = match e.stream {
                    Stream::Stdout => proto::STDOUT,
                    Stream::Stderr => proto::STDERR,
                };
                proto::put_frame(&mut framed, kind, &payload);
                framed
            } else {
                payload
            };
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(channel_body(rx));
    let ct = stream_content_type(!multiplexed, ctx.version);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(r)
}

/// Any stream a hijacked connection can be.
trait HijackIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> HijackIo for T {}

/// A hijacked connection: its stream, the bytes hyper had read past the request (early
/// stdin), and for a Unix-socket client its fd, to notice a client that went away while the
/// container writes nothing.
struct Hijacked {
    io: Box<dyn HijackIo>,
    early: Bytes,
    fd: Option<std::os::fd::RawFd>,
}

fn hijacked(upgraded: hyper::upgrade::Upgraded) -> Hijacked {
    use std::os::fd::AsRawFd;
    match upgraded.downcast::<TokioIo<UnixStream>>() {
        Ok(parts) => {
            let stream = parts.io.into_inner();
            let fd = stream.as_raw_fd();
            Hijacked {
                io: Box::new(stream),
                early: parts.read_buf,
                fd: Some(fd),
            }
        }
        Err(up) => Hijacked {
            io: Box::new(TokioIo::new(up)),
            early: Bytes::new(),
            fd: None,
        },
    }
}

/// Resolves once the peer of `fd` has closed both directions (a client that went away, not
/// one that only closed its stdin). Never resolves without an fd.
async fn hung_up(fd: Option<std::os::fd::RawFd>) {
    let Some(fd) = fd else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let mut p = [libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        }];
        // SAFETY: a zero-timeout poll of one fd that the caller keeps open meanwhile.
        let n = unsafe { libc::poll(p.as_mut_ptr(), 1, 0) };
        if n > 0 && p[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return;
        }
    }
}

/// The `Content-Type` of an attach or exec stream: multiplexed frames without a TTY from API
/// 1.42, raw bytes otherwise.
fn stream_content_type(tty: bool, version: ApiVersion) -> &'static str {
    if !tty && version >= ApiVersion::new(1, 42) {
        "application/vnd.docker.multiplexed-stream"
    } else {
        "application/vnd.docker.raw-stream"
    }
}

/// Whether the client asks to hijack the connection (`Upgrade: tcp`).
fn wants_tcp_upgrade(ctx: &Ctx<dyn ContainerBackend>) -> bool {
    ctx.req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

/// What an attach sends: the replayed log (`logs=1`) and, with `stream=1`, the live stream.
async fn attach_parts(
    backend: &std::sync::Arc<dyn ContainerBackend>,
    container: &str,
    (stdin, stdout, stderr): (bool, bool, bool),
    stream: bool,
    logs: bool,
    multiplexed: bool,
) -> Result<(Vec<u8>, Option<AttachStream>), ApiError> {
    let preamble = if logs {
        logged_output(backend, container, stdout, stderr, multiplexed).await
    } else {
        Vec::new()
    };
    let attached = if stream {
        Some(
            backend
                .container_attach(container.to_string(), stdin, stdout, stderr)
                .await?
                .1,
        )
    } else {
        None
    };
    Ok((preamble, attached))
}

/// A response body fed from a supervisor stream (an attach or exec without hijacking);
/// `after` runs once the output ended, before the body does.
fn supervisor_body<F>(
    preamble: Vec<u8>,
    attached: Option<AttachStream>,
    tty: bool,
    after: F,
) -> super::body::Body
where
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        if !preamble.is_empty() && tx.send(Ok(Bytes::from(preamble))).await.is_err() {
            return;
        }
        let Some(attached) = attached else {
            return;
        };
        let Ok(Some(mut sup)) = attached.await else {
            return;
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending = Vec::new();
        loop {
            let out = tokio::select! {
                o = next_output(&mut sup, &mut buf, &mut pending, tty) => match o {
                    Some(o) => o,
                    None => break,
                },
                _ = tx.closed() => return,
            };
            if tx.send(Ok(Bytes::from(out))).await.is_err() {
                return;
            }
        }
        after.await;
    });
    channel_body(rx)
}

/// The container's logged output, framed as an attach stream delivers it (`logs=1`).
async fn logged_output(
    backend: &std::sync::Arc<dyn ContainerBackend>,
    container: &str,
    stdout: bool,
    stderr: bool,
    multiplexed: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    if !stdout && !stderr {
        return out;
    }
    let opts = LogsOptions {
        stdout,
        stderr,
        ..Default::default()
    };
    let Ok((_, mut entries)) = backend.container_logs(container.to_string(), opts).await else {
        return out;
    };
    while let Some(e) = entries.recv().await {
        if multiplexed {
            let kind = match e.stream {
                Stream::Stdout => proto::STDOUT,
                Stream::Stderr => proto::STDERR,
            };
            proto::put_frame(&mut out, kind, &e.line);
        } else {
            out.extend_from_slice(&e.line);
        }
    }
    out
}

/// `POST /containers/{id}/attach`: with `Upgrade: tcp` the connection is hijacked (101);
/// without, the stream is the body of a 200. `logs=1` replays the log first.
pub async fn attach(mut ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let q = &ctx.query;
    let (stdin, stdout, stderr) = (q.bool("stdin"), q.bool("stdout"), q.bool("stderr"));
    let (stream, logs) = (q.bool("stream"), q.bool("logs"));
    let backend = ctx.backend.clone();
    if !stream && !logs {
        return Err(ApiError::invalid(
            "at least one of stream or logs must be set",
        ));
    }
    let detach_keys = match q.get("detachKeys").filter(|k| !k.is_empty()) {
        Some(k) => parse_detach_keys(k)?,
        None => DEFAULT_DETACH_KEYS.to_vec(),
    };
    let container = name(&ctx);
    let (tty, stdin_once) = backend.container_stdio(container.clone())?;
    let multiplexed = !tty;
    let ct = stream_content_type(!multiplexed, ctx.version);
    let (preamble, attached) = attach_parts(
        &backend,
        &container,
        (stdin, stdout, stderr),
        stream,
        logs,
        multiplexed,
    )
    .await?;
    let upgrade = wants_tcp_upgrade(&ctx);
    if upgrade {
        let on_upgrade = hyper::upgrade::on(&mut ctx.req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut client = hijacked(upgraded);
            if !preamble.is_empty() && client.io.write_all(&preamble).await.is_err() {
                return;
            }
            let Some(attached) = attached else {
                let _ = client.io.shutdown().await;
                return;
            };
            // The stream ends when the process does; the client then sees it stopped.
            let settle = {
                let backend = backend.clone();
                let container = container.clone();
                async move { backend.container_settled(container).await }
            };
            let Ok(Some(sup)) = attached.await else {
                let _ = client.io.shutdown().await;
                return;
            };
            let end = pump_stream(client, sup, tty, stdin, stdin_once, detach_keys, settle).await;
            tracing::debug!("attach to {container} ended: {end:?}");
            if end == PumpEnd::Detached {
                backend.container_detached(container);
            }
        });
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("tcp"));
        return Ok(r);
    }
    // No hijack: output only, as the body; it ends once the exit is recorded.
    let settle = async move { backend.container_settled(container).await };
    let mut r = Response::new(supervisor_body(preamble, attached, tty, settle));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(r)
}

/// `GET /containers/{id}/attach/ws`: the attach stream over a websocket (raw output; binary
/// messages from API 1.42, text before, as dockerd).
pub async fn attach_ws(mut ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::{Message, Role};
    let q = &ctx.query;
    let (stdin, stdout, stderr) = (q.bool("stdin"), q.bool("stdout"), q.bool("stderr"));
    let (stream, logs) = (q.bool("stream"), q.bool("logs"));
    let key = ctx
        .req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .ok_or_else(|| {
            ApiError::invalid("not a websocket request: Sec-WebSocket-Key is missing")
        })?;
    let backend = ctx.backend.clone();
    let container = name(&ctx);
    let (tty, _) = backend.container_stdio(container.clone())?;
    let binary = ctx.version >= ApiVersion::new(1, 42);
    let (preamble, attached) = attach_parts(
        &backend,
        &container,
        (stdin, stdout, stderr),
        stream,
        logs,
        false,
    )
    .await?;
    let on_upgrade = hyper::upgrade::on(&mut ctx.req);
    let message = move |data: Vec<u8>| {
        if binary {
            Message::Binary(data.into())
        } else {
            Message::Text(String::from_utf8_lossy(&data).into_owned().into())
        }
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        let (mut sink, mut incoming) = ws.split();
        if !preamble.is_empty() && sink.send(message(preamble)).await.is_err() {
            return;
        }
        let Some(attached) = attached else {
            let _ = sink.close().await;
            return;
        };
        let Ok(Some(sup)) = attached.await else {
            let _ = sink.close().await;
            return;
        };
        let (mut sup_r, mut sup_w) = sup.into_split();
        let input = async move {
            while let Some(Ok(m)) = incoming.next().await {
                let data: Vec<u8> = match m {
                    Message::Text(t) => t.as_bytes().to_vec(),
                    Message::Binary(b) => b.to_vec(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if !stdin || data.is_empty() {
                    continue;
                }
                let mut frame = Vec::with_capacity(data.len() + proto::HEADER);
                proto::put_frame(&mut frame, proto::STDIN, &data);
                if sup_w.write_all(&frame).await.is_err() {
                    return;
                }
            }
        };
        let output = async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut pending = Vec::new();
            // Websocket attach is always raw: frame headers are stripped.
            while let Some(out) = next_output(&mut sup_r, &mut buf, &mut pending, true).await {
                if sink.send(message(out)).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        };
        tokio::select! {
            _ = output => {}
            _ = input => {}
        }
        let _ = tty;
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).map_err(|e| ApiError::internal(e.to_string()))?,
    );
    Ok(r)
}

/// The next output for the client from a supervisor stream (complete frames only); `None`
/// at its end. Cancel-safe: bytes are kept in `pending` only once read.
async fn next_output<R>(
    sup: &mut R,
    buf: &mut [u8],
    pending: &mut Vec<u8>,
    tty: bool,
) -> Option<Vec<u8>>
where
    R: tokio::io::AsyncRead + Unpin,
{
    loop {
        let n = match sup.read(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let out = take_output(pending, tty);
        if !out.is_empty() {
            return Some(out);
        }
    }
}

/// The complete frames at the front of `pending`, as the client gets them: unchanged when
/// multiplexed, bare payloads with a TTY.
fn take_output(pending: &mut Vec<u8>, tty: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut used = 0;
    while let Some((kind, len)) = proto::frame_len(&pending[used..]) {
        let frame = &pending[used..used + proto::HEADER + len];
        if kind == proto::STDOUT || kind == proto::STDERR {
            if tty {
                out.extend_from_slice(&frame[proto::HEADER..]);
            } else {
                out.extend_from_slice(frame);
            }
        }
        used += proto::HEADER + len;
    }
    pending.drain(..used);
    out
}

/// moby's `term.ToBytes`: `ctrl-p,ctrl-q` and the like into the bytes they type.
pub fn parse_detach_keys(keys: &str) -> Result<Vec<u8>, ApiError> {
    let bad = || ApiError::invalid(format!("Invalid detach keys ({keys}) provided"));
    let mut out = Vec::new();
    for key in keys.split(',') {
        let k = key.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [x] if x.is_ascii_lowercase() => x - b'a' + 1,
                [x] if x.is_ascii_uppercase() => x - b'A' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(bad()),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            return Err(bad());
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// The default detach sequence, ctrl-p ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[16, 17];

/// Passes stdin through, holding back a partial detach sequence; `true` once the whole
/// sequence was typed.
struct DetachFilter {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachFilter {
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(data);
            return false;
        }
        for &b in data {
            if !self.keys.is_empty() && b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return true;
                }
                continue;
            }
            // A mismatch: the held-back prefix was ordinary input after all.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if !self.keys.is_empty() && b == self.keys[0] {
                self.matched = 1;
            } else {
                out.push(b);
            }
        }
        false
    }
}

/// How a hijacked stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The process's output ended (it exited).
    Output,
    /// The client typed the detach keys.
    Detached,
    /// The client or the supervisor went away.
    Gone,
}

/// Copy between a hijacked client and a supervisor stream; `before_close` runs after the
/// output ended and before the client's stream is closed.
async fn pump_stream<F>(
    client: Hijacked,
    sup: UnixStream,
    tty: bool,
    stdin: bool,
    stdin_once: bool,
    detach_keys: Vec<u8>,
    before_close: F,
) -> PumpEnd
where
    F: Future<Output = ()> + Send,
{
    let Hijacked { io, early, fd } = client;
    let (mut client_r, mut client_w) = tokio::io::split(io);
    let (mut sup_r, mut sup_w) = sup.into_split();
    let input = async move {
        if !stdin {
            // Nothing to forward: wait for the output side to end, or the client to go.
            hung_up(fd).await;
            return PumpEnd::Gone;
        }
        // As in dockerd, detach keys apply only with a TTY: binary stdin passes untouched.
        let mut filter = DetachFilter {
            keys: if tty { detach_keys } else { Vec::new() },
            matched: 0,
        };
        let mut buf = vec![0u8; 32 * 1024];
        let mut data = Vec::with_capacity(buf.len());
        let mut early = Some(early);
        loop {
            let read = match early.take().filter(|e| !e.is_empty()) {
                Some(e) => {
                    let n = e.len().min(buf.len());
                    buf[..n].copy_from_slice(&e[..n]);
                    if n < e.len() {
                        early = Some(e.slice(n..));
                    }
                    Ok(n)
                }
                None => client_r.read(&mut buf).await,
            };
            match read {
                Ok(0) | Err(_) => {
                    // As dockerd: unless the process's stdin closes with this client's (no TTY,
                    // StdinOnce), the client's EOF ends its attach.
                    if tty || !stdin_once {
                        return PumpEnd::Gone;
                    }
                    let mut frame = Vec::new();
                    proto::put_frame(&mut frame, proto::STDIN_CLOSE, &[]);
                    let _ = sup_w.write_all(&frame).await;
                    // Keep the write half open: closing it would end the attach; the output
                    // goes on until the process ends (a client's CloseWrite) or the client
                    // is gone altogether.
                    hung_up(fd).await;
                    return PumpEnd::Gone;
                }
                Ok(n) => {
                    data.clear();
                    let detached = filter.feed(&buf[..n], &mut data);
                    if !data.is_empty() {
                        let mut frame = Vec::with_capacity(data.len() + proto::HEADER);
                        proto::put_frame(&mut frame, proto::STDIN, &data);
                        if let Err(e) = sup_w.write_all(&frame).await {
                            tracing::debug!("attach: write to the supervisor: {e}");
                            return PumpEnd::Gone;
                        }
                    }
                    if detached {
                        return PumpEnd::Detached;
                    }
                }
            }
        }
    };
    let output = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending = Vec::new();
        while let Some(out) = next_output(&mut sup_r, &mut buf, &mut pending, tty).await {
            if let Err(e) = client_w.write_all(&out).await {
                tracing::debug!("attach: write to the client: {e}");
                return PumpEnd::Gone;
            }
        }
        let _ = client_w.flush().await;
        before_close.await;
        let _ = client_w.shutdown().await;
        PumpEnd::Output
    };
    tokio::select! {
        end = output => end,
        end = input => end,
    }
}

pub async fn exec_create(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let n = name(&ctx);
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let (parts, body) = ctx.req.into_parts();
    let cfg: ExecConfig = read_json(&parts.headers, body, limit).await?;
    let id = backend.exec_create(n, cfg)?;
    // Docker's exact key: the model's `IdResponse` serialises it in lower case.
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": id }),
    ))
}

pub async fn exec_inspect(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let r = ctx.backend.exec_inspect(ctx.param("id").to_string())?;
    let mut v = serde_json::to_value(&r).map_err(|e| ApiError::internal(e.to_string()))?;
    if let serde_json::Value::Object(m) = &mut v {
        // dockerd always sends the key (null while it runs); clients index it.
        m.entry("ExitCode").or_insert(serde_json::Value::Null);
    }
    Ok(json_response(StatusCode::OK, &v))
}

pub async fn exec_resize(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let h = ctx.query.int("h")?.unwrap_or(0);
    let w = ctx.query.int("w")?.unwrap_or(0);
    if !(0..=u16::MAX as i64).contains(&h) || !(0..=u16::MAX as i64).contains(&w) {
        return Err(ApiError::invalid("invalid terminal size"));
    }
    ctx.backend
        .exec_resize(ctx.param("id").to_string(), h as u16, w as u16)
        .await?;
    Ok(Response::new(empty()))
}

/// `POST /exec/{id}/start`: detached, a plain 200; attached, the connection is hijacked first
/// and a failure to start is written into the stream, as dockerd does (the CLI then reads the
/// exit code, 126 or 127, from the exec's inspect).
pub async fn exec_start(mut ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let id = ctx.param("id").to_string();
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let version = ctx.version;
    let upgrade = wants_tcp_upgrade(&ctx);
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut ctx.req));
    let (parts, body) = ctx.req.into_parts();
    let cfg: ExecStartConfig = read_json(&parts.headers, body, limit).await?;
    let console_size = cfg
        .console_size
        .as_ref()
        .filter(|v| v.len() == 2 && v[0] > 0 && v[1] > 0)
        .map(|v| [v[0] as u16, v[1] as u16]);
    if cfg.detach.unwrap_or(false) {
        backend.exec_start(id, true, cfg.tty, console_size).await?;
        return Ok(Response::new(empty()));
    }
    // The exec's own TTY setting decides the stream type.
    let tty = cfg.tty.unwrap_or(false)
        || backend
            .exec_inspect(id.clone())?
            .process_config
            .and_then(|p| p.tty)
            .unwrap_or(false);
    let ct = stream_content_type(tty, version);
    let start_tty = cfg.tty;
    let detach_keys = match backend
        .exec_inspect(id.clone())?
        .detach_keys
        .filter(|k| !k.is_empty())
    {
        Some(k) => parse_detach_keys(&k)?,
        None => DEFAULT_DETACH_KEYS.to_vec(),
    };
    let run = async move {
        match backend
            .exec_start(id.clone(), false, start_tty, console_size)
            .await
        {
            Ok(ExecStream {
                tty,
                stdin,
                stream: Some(sup),
            }) => Ok((backend, id, tty, stdin, sup)),
            Ok(_) => Err(format!("exec {id} started without a stream")),
            Err(e) => Err(e.to_string()),
        }
    };
    let mut r = if let Some(on_upgrade) = on_upgrade {
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let client = hijacked(upgraded);
            match run.await {
                Ok((backend, id, tty, stdin, sup)) => {
                    let done = async move {
                        let _ = backend.exec_wait(id).await;
                    };
                    // An exec's stdin always closes with the client's (no TTY).
                    pump_stream(client, sup, tty, stdin, true, detach_keys, done).await;
                }
                Err(message) => {
                    let (_, mut w) = tokio::io::split(client.io);
                    let mut text = format!("{message}\r\n").into_bytes();
                    if !tty {
                        let mut framed = Vec::new();
                        proto::put_frame(&mut framed, proto::STDOUT, &text);
                        text = framed;
                    }
                    let _ = w.write_all(&text).await;
                    let _ = w.shutdown().await;
                }
            }
        });
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        r.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("tcp"));
        r
    } else {
        // No hijack: the output is the body.
        let (backend, id, tty, _stdin, sup) = run.await.map_err(ApiError::internal)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(Some(sup));
        let done = async move {
            let _ = backend.exec_wait(id).await;
        };
        Response::new(supervisor_body(Vec::new(), Some(rx), tty, done))
    };
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_and_filter() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,z").unwrap(), vec![1, b'z']);
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("abc").is_err());
        let mut f = DetachFilter {
            keys: vec![16, 17],
            matched: 0,
        };
        let mut out = Vec::new();
        assert!(!f.feed(b"ab\x10", &mut out));
        assert_eq!(out, b"ab");
        out.clear();
        assert!(!f.feed(b"x\x10", &mut out));
        assert_eq!(out, b"\x10x");
        out.clear();
        assert!(f.feed(b"\x11", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn output_frames_pass_or_strip() {
        let mut p = Vec::new();
        proto::put_frame(&mut p, proto::STDOUT, b"ab");
        proto::put_frame(&mut p, proto::STDERR, b"c");
        p.extend_from_slice(&[1, 0, 0]);
        let mut q = p.clone();
        let out = take_output(&mut p, false);
        assert_eq!(out.len(), 8 + 2 + 8 + 1);
        assert_eq!(p, vec![1, 0, 0]);
        assert_eq!(take_output(&mut q, true), b"abc");
    }
}
