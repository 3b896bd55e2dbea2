//! The volume endpoints (moby's `api/server/router/volume`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bollard_stubs::models::{Volume, VolumeListResponse, VolumePruneResponse};
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;

use super::body::{check_json_content_type, empty, json_response, parse_json, read_limited};
use super::error::ApiError;
use super::router::{Ctx, HandlerResult, Route};
use crate::errors::ErrorKind;
use crate::filters::Filters;
use crate::version::ApiVersion;
use crate::volume::{CreateOptions, VolumeError};

/// What the volume endpoints need: the volume service.
#[async_trait]
pub trait VolumeBackend: Send + Sync {
    fn volume_list(&self, filters: Filters) -> Result<Vec<Volume>, VolumeError>;
    fn volume_inspect(&self, name: &str) -> Result<Volume, VolumeError>;
    async fn volume_create(&self, opts: CreateOptions) -> Result<Volume, VolumeError>;
    async fn volume_remove(&self, name: String, force: bool) -> Result<(), VolumeError>;
    /// `all_by_default`: clients before API 1.42 prune every unused volume.
    async fn volume_prune(
        &self,
        filters: Filters,
        all_by_default: bool,
    ) -> Result<VolumePruneResponse, VolumeError>;
}

/// The volume routes over `backend`.
pub fn routes(backend: Arc<dyn VolumeBackend>) -> Vec<Route> {
    let b = &backend;
    vec![
        Route::new(Method::GET, "/volumes", b, list),
        Route::new(Method::POST, "/volumes/create", b, create),
        Route::new(Method::POST, "/volumes/prune", b, prune),
        Route::new(Method::GET, "/volumes/{name:.*}", b, inspect),
        Route::new(Method::PUT, "/volumes/{name:.*}", b, update),
        Route::new(Method::DELETE, "/volumes/{name:.*}", b, remove),
    ]
}

fn filters(ctx: &Ctx<dyn VolumeBackend>) -> Result<Filters, ApiError> {
    Ok(Filters::parse(ctx.query.get("filters").unwrap_or(""))?)
}

pub async fn list(ctx: Ctx<dyn VolumeBackend>) -> HandlerResult {
    let volumes = ctx.backend.volume_list(filters(&ctx)?)?;
    Ok(json_response(
        StatusCode::OK,
        &VolumeListResponse {
            volumes: Some(volumes),
            warnings: Some(Vec::new()),
        },
    ))
}

pub async fn inspect(ctx: Ctx<dyn VolumeBackend>) -> HandlerResult {
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.volume_inspect(ctx.param("name"))?,
    ))
}

/// `VolumeCreateOptions`; `ClusterVolumeSpec` is accepted and ignored (no Swarm).
#[derive(Debug, Default, Deserialize)]
struct CreateBody {
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "Driver", default)]
    driver: Option<String>,
    #[serde(rename = "DriverOpts", default)]
    driver_opts: Option<HashMap<String, String>>,
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

pub async fn create(ctx: Ctx<dyn VolumeBackend>) -> HandlerResult {
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let (parts, body) = ctx.req.into_parts();
    // moby's ReadJSON: an empty body is an empty request (an anonymous volume).
    check_json_content_type(&parts.headers)?;
    let bytes = read_limited(&parts.headers, body, limit).await?;
    let body: CreateBody = if bytes.is_empty() {
        CreateBody::default()
    } else {
        parse_json(&bytes)?
    };
    let vol = backend
        .volume_create(CreateOptions {
            name: body.name,
            driver: body.driver,
            driver_opts: body.driver_opts.unwrap_or_default(),
            labels: body.labels.unwrap_or_default(),
        })
        .await?;
    Ok(json_response(StatusCode::CREATED, &vol))
}

/// `PUT /volumes/{name}` updates cluster volumes only: without Swarm, dockerd's 503.
pub async fn update(_ctx: Ctx<dyn VolumeBackend>) -> HandlerResult {
    Err(ApiError::new(
        ErrorKind::Unavailable,
        "volume update only valid for cluster volumes, but swarm is unavailable",
    ))
}

pub async fn remove(ctx: Ctx<dyn VolumeBackend>) -> HandlerResult {
    ctx.backend
        .volume_remove(ctx.param("name").to_string(), ctx.query.bool("force"))
        .await?;
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

pub async fn prune(ctx: Ctx<dyn VolumeBackend>) -> HandlerResult {
    let f = filters(&ctx)?;
    let all_by_default = ctx.version < ApiVersion::new(1, 42);
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.volume_prune(f, all_by_default).await?,
    ))
}
