//! `/_ping`, `/version`, `/info`, `/system/df`.

use std::sync::Arc;

use bollard_stubs::models::{ContainerSummary, ImageSummary, SystemInfo, SystemVersion, Volume};
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, PRAGMA};
use hyper::{Method, Response, StatusCode};

use super::body::{empty, json_response, text_response};
use super::router::{Ctx, HandlerResult, Route};
use crate::builder::cache::CacheItem;
use crate::system::SystemError;
use crate::version::ApiVersion;

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
    /// The build cache's records, when asked for.
    pub build_cache: Option<Vec<CacheItem>>,
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

/// `GET /system/df` as dockerd's `getDiskUsage`: every kind, or from API 1.42 on those the
/// `type` parameters name (an unknown one is a 400). Every field is present; a kind not asked
/// for is `null`.
pub async fn disk_usage(ctx: Ctx<dyn SystemBackend>) -> HandlerResult {
    let types: Vec<String> = ctx.query.get_all("type").map(str::to_string).collect();
    let opts = if ctx.version < ApiVersion::new(1, 42) || types.is_empty() {
        DiskUsageOptions {
            images: true,
            containers: true,
            volumes: true,
            build_cache: true,
        }
    } else {
        let mut o = DiskUsageOptions::default();
        for t in &types {
            match t.as_str() {
                "container" => o.containers = true,
                "image" => o.images = true,
                "volume" => o.volumes = true,
                "build-cache" => o.build_cache = true,
                _ => {
                    return Err(super::error::ApiError::invalid(format!(
                        "unknown object type: {t}"
                    )))
                }
            }
        }
        o
    };
    // Sizes are directory walks: off the async workers.
    let backend = ctx.backend.clone();
    let usage = tokio::task::spawn_blocking(move || backend.system_disk_usage(opts))
        .await
        .map_err(|e| super::error::ApiError::internal(format!("disk usage task: {e}")))??;
    Ok(json_response(
        StatusCode::OK,
        &disk_usage_json(usage, ctx.version),
    ))
}

/// The body of `GET /system/df`: moby's `types.DiskUsage`.
fn disk_usage_json(usage: DiskUsage, version: ApiVersion) -> serde_json::Value {
    let (layers, images) = match usage.images {
        Some((layers, images)) => {
            let mut images = serde_json::to_value(images).unwrap_or_default();
            if version < ApiVersion::new(1, 44) {
                // `VirtualSize` is gone from API 1.44; older clients get it equal to `Size`.
                for i in images.as_array_mut().into_iter().flatten() {
                    if let Some(size) = i.get("Size").cloned() {
                        i["VirtualSize"] = size;
                    }
                }
            }
            (layers, images)
        }
        None => (0, serde_json::Value::Null),
    };
    let or_null = |v: Option<serde_json::Value>| v.unwrap_or(serde_json::Value::Null);
    // `BuilderSize` (deprecated) below API 1.42: the build cache's total.
    let builder_size: i64 = match (&usage.build_cache, version < ApiVersion::new(1, 42)) {
        (Some(b), true) => b.iter().map(|i| i.size).sum(),
        _ => 0,
    };
    let mut v = serde_json::json!({
        "LayersSize": layers,
        "Images": images,
        "Containers": or_null(usage.containers.map(|c| serde_json::to_value(c).unwrap_or_default())),
        "Volumes": or_null(usage.volumes.map(|v| serde_json::to_value(v).unwrap_or_default())),
        "BuildCache": or_null(usage.build_cache.map(|b| serde_json::to_value(b).unwrap_or_default())),
    });
    if builder_size != 0 {
        v["BuilderSize"] = builder_size.into();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_not_asked_for_are_null() {
        let usage = DiskUsage {
            images: None,
            volumes: Some(Vec::new()),
            containers: None,
            build_cache: None,
        };
        let v = disk_usage_json(usage, ApiVersion::new(1, 51));
        assert_eq!(v["LayersSize"], 0);
        assert!(v["Images"].is_null());
        assert!(v["Containers"].is_null());
        assert!(v["BuildCache"].is_null());
        assert_eq!(v["Volumes"], serde_json::json!([]));
    }
}
