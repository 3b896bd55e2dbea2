//! The image endpoints.

use std::sync::Arc;

use async_trait::async_trait;
use bollard_stubs::models::{
    ImageDeleteResponseItem, ImageHistoryResponseItem, ImagePruneResponse, ImageSummary,
};
use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use tokio::sync::mpsc;

use super::body::{body_channel, channel_body, empty, json_ordered, json_response};
use super::error::ApiError;
use super::router::{Ctx, HandlerResult, Route};
use crate::filters::Filters;
use crate::image::archive::SaveItem;
use crate::image::service::{ImportOptions, InspectData, ListOptions};
use crate::image::ImageError;
use crate::registry::client::AuthConfig;
use crate::registry::RegistryError;
use crate::util::io::{BodyReceiver, ChannelWriter};
use crate::util::progress::{JsonMessage, Progress};
use crate::version::ApiVersion;
use bollard_stubs::models::{DistributionInspect, ImageSearchResponseItem};

/// What the image endpoints need: the image service.
#[async_trait]
pub trait ImageBackend: Send + Sync {
    fn image_list(&self, opts: ListOptions) -> Result<Vec<ImageSummary>, ImageError>;
    fn image_inspect(&self, name: &str) -> Result<InspectData, ImageError>;
    fn image_history(&self, name: &str) -> Result<Vec<ImageHistoryResponseItem>, ImageError>;
    async fn image_tag(
        &self,
        name: String,
        repo: String,
        tag: Option<String>,
    ) -> Result<(), ImageError>;
    async fn image_delete(
        &self,
        name: String,
        force: bool,
        noprune: bool,
    ) -> Result<Vec<ImageDeleteResponseItem>, ImageError>;
    async fn image_prune(&self, filters: Filters) -> Result<ImagePruneResponse, ImageError>;
    async fn image_import(
        &self,
        body: BodyReceiver,
        opts: ImportOptions,
        progress: Progress,
    ) -> Result<(), ImageError>;
    /// Import the archive a URL serves (`fromSrc=<URL>`, in `opts.src`).
    async fn image_import_url(
        &self,
        opts: ImportOptions,
        progress: Progress,
    ) -> Result<(), ImageError>;
    async fn image_load(
        &self,
        body: BodyReceiver,
        quiet: bool,
        progress: Progress,
    ) -> Result<(), ImageError>;
    fn image_save_plan(&self, names: &[String]) -> Result<Vec<SaveItem>, ImageError>;
    /// Write a planned save (blocking).
    fn image_save_write(
        &self,
        items: &[SaveItem],
        out: &mut ChannelWriter,
    ) -> Result<(), ImageError>;
    async fn image_pull(
        &self,
        image: String,
        tag: Option<String>,
        platform: Option<String>,
        auth: AuthConfig,
        progress: Progress,
    ) -> Result<(), ImageError>;
    async fn image_push(
        &self,
        name: String,
        tag: Option<String>,
        auth: AuthConfig,
        progress: Progress,
    ) -> Result<(), ImageError>;
    async fn registry_login(&self, auth: AuthConfig) -> Result<String, RegistryError>;
    async fn distribution_inspect(
        &self,
        name: String,
        auth: AuthConfig,
    ) -> Result<DistributionInspect, ImageError>;
    async fn image_search(
        &self,
        term: String,
        limit: Option<i64>,
        auth: AuthConfig,
    ) -> Result<Vec<ImageSearchResponseItem>, RegistryError>;
}

/// The image routes over `backend` (with `/auth` and `/distribution`, which serve images).
pub fn routes(backend: Arc<dyn ImageBackend>) -> Vec<Route> {
    let b = &backend;
    vec![
        Route::new(Method::GET, "/images/json", b, list),
        Route::new(Method::POST, "/images/create", b, create),
        Route::new(Method::POST, "/images/load", b, load),
        Route::new(Method::GET, "/images/get", b, save),
        Route::new(Method::POST, "/images/prune", b, prune),
        Route::new(Method::GET, "/images/{name:.*}/json", b, inspect),
        Route::new(Method::GET, "/images/{name:.*}/history", b, history),
        Route::new(Method::GET, "/images/{name:.*}/get", b, save),
        Route::new(Method::POST, "/images/{name:.*}/tag", b, tag),
        Route::new(Method::POST, "/images/{name:.*}/push", b, push),
        Route::new(Method::GET, "/images/search", b, search),
        Route::new(Method::POST, "/auth", b, auth),
        Route::new(Method::GET, "/distribution/{name:.*}/json", b, distribution),
        Route::new(Method::DELETE, "/images/{name:.*}", b, delete),
    ]
}

/// The credentials of `X-Registry-Auth` (anonymous when absent).
fn registry_auth(ctx: &Ctx<dyn ImageBackend>) -> Result<AuthConfig, ApiError> {
    match ctx.req.headers().get("x-registry-auth") {
        None => Ok(AuthConfig::default()),
        // Like dockerd: a header that does not decode is ignored (anonymous access).
        Some(v) => Ok(v
            .to_str()
            .ok()
            .and_then(|v| AuthConfig::from_header(v).ok())
            .unwrap_or_default()),
    }
}

fn filters(ctx: &Ctx<dyn ImageBackend>) -> Result<Filters, ApiError> {
    Ok(Filters::parse(ctx.query.get("filters").unwrap_or(""))?)
}

pub async fn list(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let opts = ListOptions {
        all: ctx.query.bool("all"),
        shared_size: ctx.query.bool("shared-size"),
        filters: filters(&ctx)?,
    };
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.image_list(opts)?,
    ))
}

pub async fn inspect(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let data = ctx.backend.image_inspect(ctx.param("name"))?;
    // docker-compose 1.x reads `ContainerConfig` (its `get_container_data_volumes`) and stops
    // every recreate with a `KeyError` when the field is gone, as from API 1.45 (Docker 26
    // broke compose 1.x so). It talks the daemon's own version unless told otherwise, so it
    // gets the field at every version: compose 1.29 recreates against berth as it did
    // against dockerd up to 25.
    let compose_v1 = ctx
        .req
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("docker-compose/1."));
    Ok(json_ordered(
        StatusCode::OK,
        &inspect_json(data, ctx.version, compose_v1),
        &super::order::IMAGE,
    ))
}

/// moby's `getImagesByName`: below API 1.52 `Parent`, `Comment`, `DockerVersion` and `Author`
/// are always there (from 1.52 `Parent` and `DockerVersion` only when set), below 1.45
/// `Container` and `ContainerConfig` (and for docker-compose 1.x, `with_container_config`),
/// below 1.44 `VirtualSize`.
fn inspect_json(
    data: InspectData,
    version: ApiVersion,
    with_container_config: bool,
) -> serde_json::Value {
    let InspectData { inspect, legacy } = data;
    let mut v = serde_json::to_value(&inspect).unwrap_or_default();
    let Some(m) = v.as_object_mut() else {
        return v;
    };
    let s = |t: &str| serde_json::Value::String(t.to_string());
    if version < ApiVersion::new(1, 52) {
        m.insert("Parent".into(), s(&legacy.parent));
        m.insert("DockerVersion".into(), s(&legacy.docker_version));
        m.entry("Comment").or_insert_with(|| s(""));
        m.entry("Author").or_insert_with(|| s(""));
    } else {
        if !legacy.parent.is_empty() {
            m.insert("Parent".into(), s(&legacy.parent));
        }
        if !legacy.docker_version.is_empty() {
            m.insert("DockerVersion".into(), s(&legacy.docker_version));
        }
    }
    if version < ApiVersion::new(1, 45) || with_container_config {
        m.insert("Container".into(), s(&legacy.container));
        m.insert("ContainerConfig".into(), legacy.container_config);
    }
    if version < ApiVersion::new(1, 44) {
        if let Some(size) = m.get("Size").cloned() {
            m.insert("VirtualSize".into(), size);
        }
    }
    v
}

pub async fn history(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.image_history(ctx.param("name"))?,
    ))
}

pub async fn tag(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let repo = ctx.query.get("repo").unwrap_or("");
    if repo.is_empty() {
        return Err(ApiError::invalid(
            "repository name (repo parameter) is required",
        ));
    }
    ctx.backend
        .image_tag(
            ctx.param("name").to_string(),
            repo.to_string(),
            ctx.query.get("tag").map(str::to_string),
        )
        .await?;
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

pub async fn delete(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let items = ctx
        .backend
        .image_delete(
            ctx.param("name").to_string(),
            ctx.query.bool("force"),
            ctx.query.bool("noprune"),
        )
        .await?;
    Ok(json_response(StatusCode::OK, &items))
}

pub async fn prune(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let f = filters(&ctx)?;
    let report = ctx.backend.image_prune(f).await?;
    // moby's `PruneReport`: `ImagesDeleted` is `null` when nothing went.
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "ImagesDeleted": report.images_deleted,
            "SpaceReclaimed": report.space_reclaimed.unwrap_or(0),
        }),
    ))
}

/// `POST /images/create`: import from the body (`fromSrc=-`) or pull (`fromImage`).
pub async fn create(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let q = &ctx.query;
    match (q.get("fromSrc"), q.get("fromImage")) {
        (Some(src), _) if !src.is_empty() => {
            let opts = ImportOptions {
                src: src.to_string(),
                repo: q.get("repo").map(str::to_string),
                tag: q.get("tag").map(str::to_string),
                message: q.get("message").map(str::to_string),
                changes: q.get_all("changes").map(str::to_string).collect(),
                platform: q.get("platform").map(str::to_string),
            };
            let backend = ctx.backend.clone();
            if src != "-" {
                return progress_response(move |p| async move {
                    backend.image_import_url(opts, p).await
                })
                .await;
            }
            let (body, pump) = body_channel(ctx.req.into_body());
            pump.drive(progress_response(move |p| async move {
                backend.image_import(body, opts, p).await
            }))
            .await
        }
        (_, Some(image)) if !image.is_empty() => {
            let auth = registry_auth(&ctx)?;
            let (image, tag, platform) = (
                image.to_string(),
                q.get("tag").map(str::to_string),
                q.get("platform").map(str::to_string),
            );
            let backend = ctx.backend.clone();
            progress_response(move |p| async move {
                backend.image_pull(image, tag, platform, auth, p).await
            })
            .await
        }
        _ => Err(ApiError::invalid("either fromSrc or fromImage is required")),
    }
}

/// `POST /images/load`: as dockerd's `postImagesLoad`, `quiet` unless `quiet=0`, and every
/// failure of the load (an archive that is not one among them) is the last message of a 200
/// stream, where `docker load` and docker-py's `ImageLoadError` find it.
pub async fn load(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let quiet = ctx.query.bool_or("quiet", true);
    let backend = ctx.backend.clone();
    let (body, pump) = body_channel(ctx.req.into_body());
    pump.drive(progress_stream(
        move |p| async move { backend.image_load(body, quiet, p).await },
        true,
    ))
    .await
}

pub async fn push(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let auth = registry_auth(&ctx)?;
    let name = ctx.param("name").to_string();
    let tag = ctx.query.get("tag").map(str::to_string);
    let backend = ctx.backend.clone();
    progress_response(move |p| async move { backend.image_push(name, tag, auth, p).await }).await
}

/// `POST /auth`.
pub async fn auth(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let limit = ctx.max_json_body;
    let (parts, body) = ctx.req.into_parts();
    let mut auth: AuthConfig = super::body::read_json(&parts.headers, body, limit).await?;
    auth.fill_from_auth();
    let status = ctx.backend.registry_login(auth).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"Status": status, "IdentityToken": ""}),
    ))
}

/// `GET /distribution/{name}/json`.
pub async fn distribution(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let auth = registry_auth(&ctx)?;
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend
            .distribution_inspect(ctx.param("name").to_string(), auth)
            .await?,
    ))
}

/// `GET /images/search`.
pub async fn search(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let auth = registry_auth(&ctx)?;
    let term = ctx.query.get("term").unwrap_or("").to_string();
    let limit = ctx.query.int("limit")?;
    let f = filters(&ctx)?;
    f.validate(&["is-automated", "is-official", "stars"])?;
    let mut items = ctx.backend.image_search(term, limit, auth).await?;
    let min_stars: i64 = f
        .get("stars")
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    items.retain(|i| i.star_count.unwrap_or(0) >= min_stars);
    if let Some(v) = f.get("is-official").next() {
        let want = v == "true" || v == "1";
        items.retain(|i| i.is_official.unwrap_or(false) == want);
    }
    Ok(json_response(StatusCode::OK, &items))
}

/// `GET /images/{name}/get` and `GET /images/get?names=...`.
pub async fn save(ctx: Ctx<dyn ImageBackend>) -> HandlerResult {
    let names: Vec<String> = if ctx.params.contains_key("name") {
        vec![ctx.param("name").to_string()]
    } else {
        ctx.query.get_all("names").map(str::to_string).collect()
    };
    let items = ctx.backend.image_save_plan(&names)?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let backend = ctx.backend.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter::new(tx);
        match backend.image_save_write(&items, &mut w) {
            Ok(()) => {
                let _ = std::io::Write::flush(&mut w);
            }
            Err(e) => {
                tracing::warn!("save: {e}");
                w.fail(std::io::Error::other(e.to_string()));
            }
        }
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    Ok(r)
}

/// Run an operation that reports JSON progress. An error before the first message is an
/// ordinary error response; after it, the error becomes the last message of the stream (the
/// status line has been sent), as dockerd does.
async fn progress_response<F, Fut>(op: F) -> HandlerResult
where
    F: FnOnce(Progress) -> Fut,
    Fut: std::future::Future<Output = Result<(), ImageError>> + Send + 'static,
{
    progress_stream(op, false).await
}

/// The progress stream of `op`. An error before the first message is an ordinary error
/// response, unless `always_stream` (dockerd's load: a 200 whose stream carries the error).
async fn progress_stream<F, Fut>(op: F, always_stream: bool) -> HandlerResult
where
    F: FnOnce(Progress) -> Fut,
    Fut: std::future::Future<Output = Result<(), ImageError>> + Send + 'static,
{
    let (ptx, mut prx) = mpsc::channel::<JsonMessage>(64);
    let mut task = tokio::spawn(op(Progress::new(ptx)));
    let first = tokio::select! {
        biased;
        m = prx.recv() => Ok(m),
        done = &mut task => Err(done),
    };
    let done = match first {
        Ok(Some(m)) => Ok(m),
        // The sender is gone: the task is finishing.
        Ok(None) => Err((&mut task).await),
        Err(done) => Err(done),
    };
    let first = match done {
        Ok(m) => m,
        Err(done) => {
            // Finished before a word: its error is an ordinary error response.
            let mut early = Vec::new();
            while let Ok(m) = prx.try_recv() {
                early.push(m);
            }
            match done {
                Ok(Err(e)) if early.is_empty() && !always_stream => return Err(e.into()),
                Ok(Err(e)) => early.push(JsonMessage::error(e.to_string())),
                Ok(Ok(())) => {}
                Err(e) => return Err(ApiError::internal(format!("task failed: {e}"))),
            }
            return Ok(json_lines_response(early));
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let send = |m: &JsonMessage| {
            let mut line = serde_json::to_vec(m).unwrap_or_default();
            line.push(b'\n');
            Ok(Bytes::from(line))
        };
        // A client that goes away cancels the operation, as in dockerd.
        let mut gone = tx.send(send(&first)).await.is_err();
        while !gone {
            match prx.recv().await {
                Some(m) => gone = tx.send(send(&m)).await.is_err(),
                None => break,
            }
        }
        if gone {
            task.abort();
            return;
        }
        let last = match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(JsonMessage::error(e.to_string())),
            Err(e) => Some(JsonMessage::error(format!("task failed: {e}"))),
        };
        if let Some(m) = last {
            let _ = tx.send(send(&m)).await;
        }
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn json_lines_response(msgs: Vec<JsonMessage>) -> Response<super::body::Body> {
    let mut out = Vec::new();
    for m in &msgs {
        if let Ok(mut l) = serde_json::to_vec(m) {
            l.push(b'\n');
            out.extend(l);
        }
    }
    let mut r = Response::new(super::body::full(out));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
