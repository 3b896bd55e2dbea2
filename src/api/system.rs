//! `/_ping`, `/version`, `/info`, `/system/df`.

use std::sync::Arc;

use bollard_stubs::models::{ContainerSummary, ImageSummary, SystemInfo, SystemVersion, Volume};
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, PRAGMA};
use hyper::{Method, Response, StatusCode};

use super::body::{empty, json_response, text_response};
use super::router::{Ctx, HandlerResult, Route};
use crate::system::SystemError;

/// What `GET /system/df` asks for: which object kinds to count.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskUsageOptions {
    pub images: bool,
    pub containers: bool,
    pub volumes: bool,
    pub build_cache: bool,
}

/// The images part of `GET /system/df` (the other kinds come with their managers).
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Total layer bytes and the images with shared sizes, when images were asked for.
    pub images: Option<(i64, Vec<ImageSummary>)>,
    /// The volumes with their `UsageData`, when volumes were asked for.
    pub volumes: Option<Vec<Volume>>,
    /// Every container with `SizeRw` and `SizeRootFs`, when containers were asked for.
    pub containers: Option<Vec<ContainerSummary>>,
}

/// What the system endpoints need from the daemon: system-wide and cross-manager facts.
pub trait SystemBackend: Send + Sync {
    /// The `Swarm` header of `/_ping`: `inactive`, or `active/manager` and the like.
    fn swarm_status(&self) -> String;
    /// The builder the daemon offers: `1` is the classic Dockerfile builder.
    fn builder_version(&self) -> &'static str;
    fn system_version(&self) -> SystemVersion;
    fn system_info(&self) -> Result<SystemInfo, SystemError>;
    /// `GET /system/df`: disk usage across the managers.
    fn system_disk_usage(&self, opts: DiskUsageOptions) -> Result<DiskUsage, SystemError>;
}

/// The system routes over `backend`.
pub fn routes(backend: Arc<dyn SystemBackend>) -> Vec<Route> {
    vec![
        Route::new(Method::GET, "/_ping", &backend, ping),
        Route::new(Method::HEAD, "/_ping", &backend, ping),
        Route::new(Method::GET, "/version", &backend, version),
        Route::new(Method::GET, "/info", &backend, info),
        Route::new(Method::GET, "/system/df", &backend, disk_usage),
    ]
}

pub async fn ping(ctx: Ctx<dyn SystemBackend>) -> HandlerResult {
    let head = ctx.req.method() == Method::HEAD;
    let mut resp = if head {
        let mut r = Response::new(empty());
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        r
    } else {
        text_response(StatusCode::OK, "OK")
    };
    let h = resp.headers_mut();
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(ctx.backend.builder_version()) {
        h.insert(HeaderName::from_static("builder-version"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.backend.swarm_status()) {
        h.insert(HeaderName::from_static("swarm"), v);
    }
    Ok(resp)
}

pub async fn version(ctx: Ctx<dyn SystemBackend>) -> HandlerResult {
    Ok(json_response(StatusCode::OK, &ctx.backend.system_version()))
}

pub async fn info(ctx: Ctx<dyn SystemBackend>) -> HandlerResult {
    Ok(json_response(StatusCode::OK, &ctx.backend.system_info()?))
}

/// `GET /system/df` in the API 1.51 shape. The build cache is empty until the builder exists.
pub async fn disk_usage(ctx: Ctx<dyn SystemBackend>) -> HandlerResult {
    const TYPES: &[&str] = &["container", "image", "volume", "build-cache"];
    let types: Vec<&str> = ctx.query.get_all("type").collect();
    if let Some(bad) = types.iter().find(|t| !TYPES.contains(t)) {
        return Err(super::error::ApiError::invalid(format!(
            "invalid type: {bad}"
        )));
    }
    let want = |t: &str| types.is_empty() || types.contains(&t);
    let usage = ctx.backend.system_disk_usage(DiskUsageOptions {
        images: want("image"),
        containers: want("container"),
        volumes: want("volume"),
        build_cache: want("build-cache"),
    })?;
    let mut body = serde_json::Map::new();
    if let Some((layers, images)) = usage.images {
        body.insert("LayersSize".into(), layers.into());
        body.insert(
            "Images".into(),
            serde_json::to_value(images).unwrap_or_default(),
        );
    }
    if let Some(containers) = usage.containers {
        body.insert(
            "Containers".into(),
            serde_json::to_value(containers).unwrap_or_default(),
        );
    }
    if let Some(volumes) = usage.volumes {
        body.insert(
            "Volumes".into(),
            serde_json::to_value(volumes).unwrap_or_default(),
        );
    }
    if want("build-cache") {
        body.insert("BuildCache".into(), serde_json::Value::Array(Vec::new()));
    }
    Ok(json_response(StatusCode::OK, &body))
}
