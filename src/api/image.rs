//! The image endpoints.

use async_trait::async_trait;
use bollard_stubs::models::{
    ImageDeleteResponseItem, ImageHistoryResponseItem, ImageInspect, ImagePruneResponse,
    ImageSummary,
};
use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::body::{body_channel, channel_body, empty, json_response};
use super::error::ApiError;
use super::router::{Ctx, HandlerResult};
use crate::errors::ErrorKind;
use crate::filters::Filters;
use crate::image::archive::SaveItem;
use crate::image::service::{ImportOptions, ListOptions};
use crate::image::ImageError;
use crate::util::io::{ByteReceiver, ChannelWriter};
use crate::util::progress::{JsonMessage, Progress};

/// What the image endpoints need from the daemon.
#[async_trait]
pub trait ImageBackend {
    fn image_list(&self, opts: ListOptions) -> Result<Vec<ImageSummary>, ImageError>;
    fn image_inspect(&self, name: &str) -> Result<ImageInspect, ImageError>;
    fn image_history(&self, name: &str) -> Result<Vec<ImageHistoryResponseItem>, ImageError>;
    fn image_tag(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<(), ImageError>;
    async fn image_delete(
        &self,
        name: String,
        force: bool,
        noprune: bool,
    ) -> Result<Vec<ImageDeleteResponseItem>, ImageError>;
    async fn image_prune(&self, filters: Filters) -> Result<ImagePruneResponse, ImageError>;
    async fn image_import(
        &self,
        body: ByteReceiver,
        opts: ImportOptions,
        progress: Progress,
    ) -> Result<(), ImageError>;
    async fn image_load(
        &self,
        body: ByteReceiver,
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
}

fn filters(ctx: &Ctx) -> Result<Filters, ApiError> {
    Ok(Filters::parse(ctx.query.get("filters").unwrap_or(""))?)
}

pub async fn list(ctx: Ctx) -> HandlerResult {
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

pub async fn inspect(ctx: Ctx) -> HandlerResult {
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.image_inspect(ctx.param("name"))?,
    ))
}

pub async fn history(ctx: Ctx) -> HandlerResult {
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.image_history(ctx.param("name"))?,
    ))
}

pub async fn tag(ctx: Ctx) -> HandlerResult {
    let repo = ctx.query.get("repo").unwrap_or("");
    if repo.is_empty() {
        return Err(ApiError::invalid(
            "repository name (repo parameter) is required",
        ));
    }
    ctx.backend
        .image_tag(ctx.param("name"), repo, ctx.query.get("tag"))?;
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

pub async fn delete(ctx: Ctx) -> HandlerResult {
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

pub async fn prune(ctx: Ctx) -> HandlerResult {
    let f = filters(&ctx)?;
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.image_prune(f).await?,
    ))
}

/// `POST /images/create`: import from the body (`fromSrc=-`) or pull (`fromImage`).
pub async fn create(ctx: Ctx) -> HandlerResult {
    let q = &ctx.query;
    match (q.get("fromSrc"), q.get("fromImage")) {
        (Some("-"), _) => {
            let opts = ImportOptions {
                repo: q.get("repo").map(str::to_string),
                tag: q.get("tag").map(str::to_string),
                message: q.get("message").map(str::to_string),
                changes: q.get_all("changes").map(str::to_string).collect(),
                platform: q.get("platform").map(str::to_string),
            };
            let backend = ctx.backend.clone();
            let body = body_channel(ctx.req.into_body());
            progress_response(move |p| async move { backend.image_import(body, opts, p).await })
                .await
        }
        (Some(src), _) if !src.is_empty() => Err(ApiError::new(
            ErrorKind::NotImplemented,
            format!(
                "importing from a URL ({src}) is not supported: pipe the archive in with fromSrc=-"
            ),
        )),
        (_, Some(image)) if !image.is_empty() => Err(ApiError::new(
            ErrorKind::NotImplemented,
            format!(
                "pulling {image} is not implemented yet in berth: use docker load or docker import"
            ),
        )),
        _ => Err(ApiError::invalid("either fromSrc or fromImage is required")),
    }
}

pub async fn load(ctx: Ctx) -> HandlerResult {
    let quiet = ctx.query.bool("quiet");
    let backend = ctx.backend.clone();
    let body = body_channel(ctx.req.into_body());
    progress_response(move |p| async move { backend.image_load(body, quiet, p).await }).await
}

/// `GET /images/{name}/get` and `GET /images/get?names=...`.
pub async fn save(ctx: Ctx) -> HandlerResult {
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
    let (ptx, mut prx) = mpsc::channel::<JsonMessage>(64);
    let mut task = tokio::spawn(op(Progress::new(ptx)));
    let first = tokio::select! {
        biased;
        m = prx.recv() => m,
        done = &mut task => {
            let mut early = Vec::new();
            while let Ok(m) = prx.try_recv() {
                early.push(m);
            }
            match done {
                Ok(Err(e)) if early.is_empty() => return Err(e.into()),
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
        if let Some(m) = first {
            let _ = tx.send(send(&m)).await;
        }
        while let Some(m) = prx.recv().await {
            let _ = tx.send(send(&m)).await;
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
