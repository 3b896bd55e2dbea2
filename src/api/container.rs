//! The container endpoints: a narrow backend trait and thin handlers (moby's
//! `router/container`). Attach is a hijacked connection (`Upgrade: tcp`).

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use bollard_stubs::models::{
    ContainerCreateBody, ContainerCreateResponse, ContainerPruneResponse, ContainerTopResponse,
    ContainerUpdateBody, ContainerUpdateResponse, ContainerWaitResponse, ExecConfig,
    ExecInspectResponse, ExecStartConfig, FilesystemChange,
};
use bytes::Bytes;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::body::{
    channel_body, empty, json_bytes_response, json_ordered, json_response, read_json,
};
use super::error::ApiError;
use super::router::{Ctx, HandlerResult, Route};
use crate::container::archive::{PathStat, PutOptions};
use crate::container::attach::{AttachOptions, AttachSession, ClientConn};
use crate::container::commit::CommitOptions;
use crate::container::exec::ExecSession;
use crate::container::list::{ListOptions, Variant};
use crate::container::logs::LogsOptions;
use crate::container::manager::WaitCondition;
use crate::container::stats::StatsOptions;
use crate::container::ContainerError;
use crate::filters::Filters;
use crate::util::io::{BodyReceiver, ByteReceiver};
use crate::util::time::parse_timestamp;
use crate::version::ApiVersion;

pub type WaitFuture = Pin<Box<dyn Future<Output = (i64, String)> + Send>>;

/// What the container endpoints need: the container manager.
#[async_trait]
pub trait ContainerBackend: Send + Sync {
    /// `container_mac`: the deprecated container-wide `MacAddress`, for the main network.
    async fn container_create(
        &self,
        name: Option<String>,
        platform: Option<String>,
        body: ContainerCreateBody,
        container_mac: Option<String>,
    ) -> Result<ContainerCreateResponse, ContainerError>;
    /// The encoded JSON array (the manager keeps each container's entry encoded).
    fn container_list_json(&self, opts: ListOptions) -> Result<Vec<u8>, ContainerError>;
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
    /// `rm --link`: forget the legacy link named `<parent>/<alias>`.
    async fn container_remove_link(&self, name: String) -> Result<(), ContainerError>;
    async fn container_pause(&self, name: String, pause: bool) -> Result<(), ContainerError>;
    async fn container_rename(&self, name: String, new_name: String) -> Result<(), ContainerError>;
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
    /// Whether the container has a TTY, and its log as the client gets it.
    async fn container_logs(
        &self,
        name: String,
        opts: LogsOptions,
    ) -> Result<(bool, ByteReceiver), ContainerError>;
    /// `GET /containers/{id}/stats`: JSON lines, one a second with `stream`.
    async fn container_stats(
        &self,
        name: String,
        opts: StatsOptions,
    ) -> Result<ByteReceiver, ContainerError>;
    async fn container_changes(
        &self,
        name: String,
    ) -> Result<Vec<FilesystemChange>, ContainerError>;
    async fn container_export(&self, name: String) -> Result<ByteReceiver, ContainerError>;
    /// `HEAD /containers/{name}/archive`.
    async fn container_stat_path(
        &self,
        name: String,
        path: String,
    ) -> Result<PathStat, ContainerError>;
    /// `GET /containers/{name}/archive`: the path's stat and its tar.
    async fn container_archive(
        &self,
        name: String,
        path: String,
    ) -> Result<(PathStat, ByteReceiver), ContainerError>;
    /// `PUT /containers/{name}/archive`: extract a tar into a directory.
    async fn container_extract(
        &self,
        name: String,
        path: String,
        opts: PutOptions,
        body: BodyReceiver,
    ) -> Result<(), ContainerError>;
    /// `POST /commit`: the new image's ID.
    async fn container_commit(
        &self,
        name: String,
        opts: CommitOptions,
    ) -> Result<String, ContainerError>;
    /// An attach, ready to serve the client's connection.
    async fn container_attach(
        &self,
        name: String,
        opts: AttachOptions,
    ) -> Result<AttachSession, ContainerError>;
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
    /// Start an exec detached.
    async fn exec_start(
        &self,
        id: String,
        tty: Option<bool>,
        console_size: Option<[u16; 2]>,
    ) -> Result<(), ContainerError>;
    /// An attached exec start, ready to serve the client's connection.
    fn exec_attach(
        &self,
        id: String,
        tty: Option<bool>,
        console_size: Option<[u16; 2]>,
    ) -> Result<ExecSession, ContainerError>;
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
        Route::new(Method::GET, "/containers/{name:.*}/json", b, inspect),
        Route::new(Method::GET, "/containers/{name:.*}/top", b, top),
        Route::new(Method::GET, "/containers/{name:.*}/logs", b, logs),
        Route::new(Method::GET, "/containers/{name:.*}/stats", b, stats),
        Route::new(Method::GET, "/containers/{name:.*}/changes", b, changes),
        Route::new(Method::GET, "/containers/{name:.*}/export", b, export),
        Route::new(
            Method::HEAD,
            "/containers/{name:.*}/archive",
            b,
            archive_head,
        ),
        Route::new(Method::GET, "/containers/{name:.*}/archive", b, archive_get),
        Route::new(Method::PUT, "/containers/{name:.*}/archive", b, archive_put),
        Route::new(Method::POST, "/containers/{name:.*}/start", b, start),
        Route::new(Method::POST, "/containers/{name:.*}/stop", b, stop),
        Route::new(Method::POST, "/containers/{name:.*}/restart", b, restart),
        Route::new(Method::POST, "/containers/{name:.*}/kill", b, kill),
        Route::new(Method::POST, "/containers/{name:.*}/pause", b, pause),
        Route::new(Method::POST, "/containers/{name:.*}/unpause", b, unpause),
        Route::new(Method::POST, "/containers/{name:.*}/rename", b, rename),
        Route::new(Method::POST, "/containers/{name:.*}/update", b, update),
        Route::new(Method::POST, "/containers/{name:.*}/wait", b, wait),
        Route::new(Method::POST, "/containers/{name:.*}/attach", b, attach),
        Route::new(Method::GET, "/containers/{name:.*}/attach/ws", b, attach_ws),
        Route::new(Method::POST, "/containers/{name:.*}/resize", b, resize),
        Route::new(Method::DELETE, "/containers/{name:.*}", b, remove),
        Route::new(Method::POST, "/containers/{name:.*}/exec", b, exec_create),
        Route::new(Method::POST, "/exec/{id}/start", b, exec_start),
        Route::new(Method::POST, "/exec/{id}/resize", b, exec_resize),
        Route::new(Method::GET, "/exec/{id}/json", b, exec_inspect),
        Route::new(Method::POST, "/commit", b, commit),
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

/// A create request: bollard's body and the deprecated container-wide `MacAddress` it lacks.
/// `Cmd`, `Entrypoint` and `Shell` are read here as moby's `strslice.StrSlice`, which also
/// takes a lone string (`"Cmd": "top"` is `["top"]`), and moved into the body.
#[derive(serde::Deserialize)]
struct CreateRequest {
    #[serde(flatten)]
    body: ContainerCreateBody,
    #[serde(rename = "MacAddress", default)]
    mac_address: Option<String>,
    #[serde(rename = "Cmd", default, deserialize_with = "str_slice")]
    cmd: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default, deserialize_with = "str_slice")]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Shell", default, deserialize_with = "str_slice")]
    shell: Option<Vec<String>>,
}

/// The enumerations of a `HostConfig` that the typed body cannot hold an unknown value of,
/// refused with the container module's (dockerd's) words instead of a decoding error.
fn check_host_config_enums(hc: &serde_json::Value) -> Result<(), ApiError> {
    if let Some(name) = hc["RestartPolicy"]["Name"].as_str() {
        crate::container::create::check_restart_policy_name(name)?;
    }
    for m in hc["Mounts"].as_array().into_iter().flatten() {
        if let Some(t) = m["Type"].as_str() {
            crate::container::mounts::check_mount_type(t)?;
        }
    }
    Ok(())
}

/// moby's `StrSlice`: a list of strings, a single string, or null.
fn str_slice<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    Ok(
        match <Option<OneOrMany> as serde::Deserialize>::deserialize(d).map_err(|_| {
            serde::de::Error::custom("invalid type: expected a string or a list of strings")
        })? {
            None => None,
            Some(OneOrMany::Many(v)) => Some(v),
            Some(OneOrMany::One(s)) => Some(vec![s]),
        },
    )
}

pub async fn create(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let name = opt(&ctx, "name");
    // From API 1.41, as moby's router reads it.
    let platform = opt(&ctx, "platform").filter(|_| ctx.version >= ApiVersion::new(1, 41));
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let (parts, body) = ctx.req.into_parts();
    let CreateRequest {
        mut body,
        mac_address,
        cmd,
        entrypoint,
        shell,
    } = {
        // Go's JSON decoding matches keys in any case (`{"image": …}` works with dockerd).
        let mut v = fold_keys(read_json(&parts.headers, body, limit).await?, CREATE_KEYS);
        if let Some(hc) = v.get_mut("HostConfig") {
            *hc = fold_keys(hc.take(), HOST_CONFIG_KEYS);
        }
        check_host_config_enums(&v["HostConfig"])?;
        serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?
    };
    body.cmd = cmd;
    body.entrypoint = entrypoint;
    body.shell = shell;
    crate::container::create::old_client_ipc_mode(&mut body, ctx.version);
    let mac = crate::container::create::migrate_mac_address(&mut body, mac_address, ctx.version)?;
    let mut resp = backend
        .container_create(name, platform, body, mac.kept)
        .await?;
    resp.warnings.extend(mac.warning);
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
        variant: Variant::for_version(ctx.version),
    };
    Ok(json_bytes_response(
        StatusCode::OK,
        ctx.backend.container_list_json(opts)?,
    ))
}

pub async fn inspect(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let v = ctx
        .backend
        .container_inspect(name(&ctx), ctx.query.bool("size"))
        .await?;
    Ok(json_ordered(StatusCode::OK, &v, &super::order::CONTAINER))
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
    ctx.backend.container_rename(name(&ctx), new_name).await?;
    Ok(no_content())
}

pub async fn update(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let n = name(&ctx);
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let (parts, body) = ctx.req.into_parts();
    // The restart policy's name is checked before the body is typed, as at create (else
    // serde's `unknown variant` text instead of moby's).
    let v: serde_json::Value = read_json(&parts.headers, body, limit).await?;
    check_host_config_enums(&v)?;
    let body: ContainerUpdateBody =
        serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
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
        ctx.backend.container_remove_link(name(&ctx)).await?;
    } else {
        ctx.backend
            .container_remove(name(&ctx), ctx.query.bool("force"), ctx.query.bool("v"))
            .await?;
    }
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
    let changes = ctx.backend.container_changes(name(&ctx)).await?;
    // No change is Go's nil slice: `null`, as dockerd writes it (docker-py returns it as None).
    Ok(json_response(
        StatusCode::OK,
        &(!changes.is_empty()).then_some(changes),
    ))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`, with an optional
/// container config as the body (moby's `postCommit`).
pub async fn commit(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let q = &ctx.query;
    let get = |k: &str| q.get(k).unwrap_or("").to_string();
    let mut opts = CommitOptions {
        repo: get("repo"),
        tag: get("tag"),
        author: get("author"),
        comment: get("comment"),
        // An absent or empty `pause` means pause (API 1.13 and later).
        pause: q.get("pause").is_none_or(str::is_empty) || q.bool("pause"),
        changes: q.get_all("changes").map(str::to_string).collect(),
        config: None,
    };
    let container = get("container");
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let (parts, body) = ctx.req.into_parts();
    super::body::check_json_content_type(&parts.headers)?;
    let bytes = super::body::read_limited(&parts.headers, body, limit).await?;
    // An empty body is no config (moby ignores EOF).
    if !bytes.iter().all(u8::is_ascii_whitespace) && bytes.as_ref() != b"null" {
        opts.config = Some(super::body::parse_json(&bytes)?);
    }
    let id = backend.container_commit(container, opts).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": id }),
    ))
}

pub async fn export(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let rx = ctx.backend.container_export(name(&ctx)).await?;
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

const PATH_STAT_HEADER: &str = "x-docker-container-path-stat";

fn with_path_stat(
    mut r: Response<super::body::Body>,
    stat: &PathStat,
) -> Response<super::body::Body> {
    if let Ok(v) = HeaderValue::from_str(&stat.header_value()) {
        r.headers_mut().insert(PATH_STAT_HEADER, v);
    }
    r
}

pub async fn archive_head(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let path = ctx.query.get("path").unwrap_or("").to_string();
    let stat = ctx.backend.container_stat_path(name(&ctx), path).await?;
    Ok(with_path_stat(Response::new(empty()), &stat))
}

pub async fn archive_get(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let path = ctx.query.get("path").unwrap_or("").to_string();
    let (stat, rx) = ctx.backend.container_archive(name(&ctx), path).await?;
    let mut r = with_path_stat(Response::new(channel_body(rx)), &stat);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

pub async fn archive_put(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let path = ctx.query.get("path").unwrap_or("").to_string();
    let opts = PutOptions {
        no_overwrite_dir_non_dir: ctx.query.bool("noOverwriteDirNonDir"),
        copy_uid_gid: ctx.query.bool("copyUIDGID"),
    };
    let container = name(&ctx);
    let backend = ctx.backend.clone();
    let (body, pump) = super::body::body_channel(ctx.req.into_body());
    pump.drive(backend.container_extract(container, path, opts, body))
        .await?;
    Ok(Response::new(empty()))
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
        timestamps: q.bool("timestamps"),
        details: q.bool("details"),
    };
    let (tty, rx) = ctx.backend.container_logs(name(&ctx), opts).await?;
    let mut r = Response::new(channel_body(rx));
    let ct = stream_content_type(tty, ctx.version);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(r)
}

/// `GET /containers/{id}/stats`.
pub async fn stats(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let opts = StatsOptions {
        stream: ctx.query.bool_or("stream", true),
        one_shot: ctx.version >= ApiVersion::new(1, 41) && ctx.query.bool("one-shot"),
    };
    let rx = ctx.backend.container_stats(name(&ctx), opts).await?;
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// Take over a connection hyper upgraded: its stream, the bytes hyper had read past the
/// request (early stdin), and for a Unix-socket client its fd, so that the container layer
/// notices a client that went away while the container writes nothing.
/// The stream starts once the client has read the response head (100 ms at most; see
/// `unix_peer_caught_up`).
async fn hijacked(upgraded: hyper::upgrade::Upgraded) -> ClientConn {
    use std::os::fd::AsRawFd;
    match upgraded.downcast::<TokioIo<UnixStream>>() {
        Ok(parts) => {
            let stream = parts.io.into_inner();
            let fd = stream.as_raw_fd();
            crate::util::io::unix_peer_caught_up(fd, std::time::Duration::from_millis(100)).await;
            ClientConn {
                io: Box::new(stream),
                early: parts.read_buf,
                fd: Some(fd),
            }
        }
        Err(up) => ClientConn {
            io: Box::new(TokioIo::new(up)),
            early: Bytes::new(),
            fd: None,
        },
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

/// The query of an attach (websocket attaches have no detach keys).
fn attach_options(ctx: &Ctx<dyn ContainerBackend>, websocket: bool) -> AttachOptions {
    let q = &ctx.query;
    AttachOptions {
        stdin: q.bool("stdin"),
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        stream: q.bool("stream"),
        logs: q.bool("logs"),
        detach_keys: (!websocket)
            .then(|| q.get("detachKeys").map(str::to_string))
            .flatten(),
        websocket,
    }
}

/// `POST /containers/{id}/attach`: with `Upgrade: tcp` the connection is hijacked (101);
/// without, the stream is the body of a 200. `logs=1` replays the log first.
pub async fn attach(mut ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let opts = attach_options(&ctx, false);
    if !opts.stream && !opts.logs {
        return Err(ApiError::invalid(
            "at least one of stream or logs must be set",
        ));
    }
    let session = ctx.backend.container_attach(name(&ctx), opts).await?;
    let ct = stream_content_type(session.tty(), ctx.version);
    if !wants_tcp_upgrade(&ctx) {
        // No hijack: output only, as the body.
        let mut r = Response::new(channel_body(session.into_body()));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        return Ok(r);
    }
    let on_upgrade = hyper::upgrade::on(&mut ctx.req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            session.serve(hijacked(upgraded).await).await;
        }
    });
    Ok(switching_protocols(ct))
}

/// A `101 Switching Protocols` to a raw TCP stream.
fn switching_protocols(content_type: &'static str) -> Response<super::body::Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    r
}

/// `GET /containers/{id}/attach/ws`: the attach stream over a websocket (raw output; binary
/// messages from API 1.42, text before, as dockerd).
pub async fn attach_ws(mut ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    use tokio_tungstenite::tungstenite::protocol::Role;
    let opts = attach_options(&ctx, true);
    let key = ctx
        .req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .ok_or_else(|| {
            ApiError::invalid("not a websocket request: Sec-WebSocket-Key is missing")
        })?;
    let session = ctx.backend.container_attach(name(&ctx), opts).await?;
    let binary = ctx.version >= ApiVersion::new(1, 42);
    let on_upgrade = hyper::upgrade::on(&mut ctx.req);
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
        session.serve_websocket(ws, binary).await;
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

pub async fn exec_create(ctx: Ctx<dyn ContainerBackend>) -> HandlerResult {
    let n = name(&ctx);
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let (parts, body) = ctx.req.into_parts();
    let cfg: serde_json::Value = read_json(&parts.headers, body, limit).await?;
    let cfg: ExecConfig = serde_json::from_value(fold_keys(cfg, EXEC_CONFIG_KEYS))
        .map_err(|e| ApiError::invalid(format!("invalid JSON: {e}")))?;
    let id = backend.exec_create(n, cfg)?;
    // Docker's exact key: the model's `IdResponse` serialises it in lower case.
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": id }),
    ))
}

/// The keys of a create body (moby's `ContainerConfigWrapper`: the container config, then
/// `HostConfig` and `NetworkingConfig`), for [`fold_keys`].
const CREATE_KEYS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
    "HostConfig",
    "NetworkingConfig",
];

/// The keys of a `HostConfig` (API v1.51), for [`fold_keys`].
const HOST_CONFIG_KEYS: &[&str] = &[
    "CpuShares",
    "Memory",
    "CgroupParent",
    "BlkioWeight",
    "BlkioWeightDevice",
    "BlkioDeviceReadBps",
    "BlkioDeviceWriteBps",
    "BlkioDeviceReadIOps",
    "BlkioDeviceWriteIOps",
    "CpuPeriod",
    "CpuQuota",
    "CpuRealtimePeriod",
    "CpuRealtimeRuntime",
    "CpusetCpus",
    "CpusetMems",
    "Devices",
    "DeviceCgroupRules",
    "DeviceRequests",
    "KernelMemoryTCP",
    "MemoryReservation",
    "MemorySwap",
    "MemorySwappiness",
    "NanoCpus",
    "OomKillDisable",
    "Init",
    "PidsLimit",
    "Ulimits",
    "CpuCount",
    "CpuPercent",
    "IOMaximumIOps",
    "IOMaximumBandwidth",
    "Binds",
    "ContainerIDFile",
    "LogConfig",
    "NetworkMode",
    "PortBindings",
    "RestartPolicy",
    "AutoRemove",
    "VolumeDriver",
    "VolumesFrom",
    "Mounts",
    "ConsoleSize",
    "Annotations",
    "CapAdd",
    "CapDrop",
    "CgroupnsMode",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "GroupAdd",
    "IpcMode",
    "Cgroup",
    "Links",
    "OomScoreAdj",
    "PidMode",
    "Privileged",
    "PublishAllPorts",
    "ReadonlyRootfs",
    "SecurityOpt",
    "StorageOpt",
    "Tmpfs",
    "UTSMode",
    "UsernsMode",
    "ShmSize",
    "Sysctls",
    "Runtime",
    "Isolation",
    "MaskedPaths",
    "ReadonlyPaths",
];

/// The fields of an exec create body, spelled as dockerd's types name them.
const EXEC_CONFIG_KEYS: &[&str] = &[
    "User",
    "Privileged",
    "Tty",
    "ConsoleSize",
    "AttachStdin",
    "AttachStderr",
    "AttachStdout",
    "DetachKeys",
    "Env",
    "WorkingDir",
    "Cmd",
];

/// Go's `encoding/json` matches object keys to fields without regard to case (an exact
/// match first): docker-py sends `detachKeys`. Each top-level key that equals one of `names`
/// but for case is renamed to it, unless the exact name is given too.
fn fold_keys(v: serde_json::Value, names: &[&str]) -> serde_json::Value {
    let serde_json::Value::Object(m) = v else {
        return v;
    };
    let exact: Vec<String> = m
        .keys()
        .filter(|k| names.contains(&k.as_str()))
        .cloned()
        .collect();
    let mut out = serde_json::Map::new();
    for (k, val) in m {
        let name = names
            .iter()
            .find(|n| n.eq_ignore_ascii_case(&k))
            .filter(|n| **n != k && !exact.iter().any(|e| e == **n));
        match name {
            Some(n) => {
                out.insert(n.to_string(), val);
            }
            None => {
                out.insert(k, val);
            }
        }
    }
    serde_json::Value::Object(out)
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
        backend.exec_start(id, cfg.tty, console_size).await?;
        return Ok(Response::new(empty()));
    }
    // The start request's `Tty` frames the stream (and names its type), as dockerd's.
    let session = backend.exec_attach(id, cfg.tty, console_size)?;
    let ct = stream_content_type(session.raw(), version);
    let Some(on_upgrade) = on_upgrade else {
        // No hijack: the output is the body, announced as raw whatever its framing (dockerd).
        let mut r = Response::new(channel_body(session.into_body().await?));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.docker.raw-stream"),
        );
        return Ok(r);
    };
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            session.serve(hijacked(upgraded).await).await;
        }
    });
    Ok(switching_protocols(ct))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmd_entrypoint_and_shell_are_str_slices() {
        let r: CreateRequest = serde_json::from_str(
            r#"{"Image":"b","Cmd":"top","Entrypoint":["sh","-c"],"Shell":null}"#,
        )
        .unwrap();
        assert_eq!(r.cmd, Some(vec!["top".to_string()]));
        assert_eq!(r.entrypoint, Some(vec!["sh".to_string(), "-c".to_string()]));
        assert_eq!(r.shell, None);
        let r: CreateRequest = serde_json::from_str(r#"{"Image":"b","Cmd":[]}"#).unwrap();
        assert_eq!(r.cmd, Some(vec![]));
        // Keys in any case, as Go reads them, at the top and in HostConfig.
        let mut v = serde_json::json!({"image": "b", "cmd": "x", "hostconfig": {"memory": 5}});
        let hc = v["hostconfig"].take();
        v["hostconfig"] = fold_keys(hc, HOST_CONFIG_KEYS);
        let r: CreateRequest = serde_json::from_value(fold_keys(v, CREATE_KEYS)).unwrap();
        assert_eq!(r.body.image.as_deref(), Some("b"));
        assert_eq!(r.cmd, Some(vec!["x".to_string()]));
        assert_eq!(r.body.host_config.and_then(|h| h.memory), Some(5));
        // Unknown enumeration values get dockerd's words.
        let e = check_host_config_enums(&serde_json::json!({"RestartPolicy": {"Name": "x"}}));
        assert_eq!(
            e.unwrap_err().to_string(),
            "invalid restart policy: unknown policy 'x'; use one of 'no', 'always', \
             'on-failure', or 'unless-stopped'"
        );
        let e = check_host_config_enums(&serde_json::json!({"Mounts": [{"Type": "bogus"}]}));
        assert_eq!(
            e.unwrap_err().to_string(),
            "invalid mount config for type \"bogus\": mount type unknown"
        );
        assert!(
            check_host_config_enums(&serde_json::json!({"RestartPolicy": {"Name": ""}})).is_ok()
        );
        assert!(serde_json::from_str::<CreateRequest>(r#"{"Cmd":3}"#).is_err());
    }

    #[test]
    fn exec_create_keys_fold_as_go_json() {
        let v = serde_json::json!({"detachKeys": "ctrl-x", "tty": true, "Cmd": ["sh"], "Container": "c"});
        let cfg: ExecConfig = serde_json::from_value(fold_keys(v, EXEC_CONFIG_KEYS)).unwrap();
        assert_eq!(cfg.detach_keys.as_deref(), Some("ctrl-x"));
        assert_eq!(cfg.tty, Some(true));
        // The exact spelling wins over a folded one.
        let v = serde_json::json!({"detachkeys": "ctrl-x", "DetachKeys": "ctrl-y"});
        let cfg: ExecConfig = serde_json::from_value(fold_keys(v, EXEC_CONFIG_KEYS)).unwrap();
        assert_eq!(cfg.detach_keys.as_deref(), Some("ctrl-y"));
    }
}
