//! The network endpoints (moby's `api/server/router/network`).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bollard_stubs::models::EndpointSettings;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::body::{empty, json_ordered, json_response, read_json};
use super::error::ApiError;
use super::router::{Ctx, HandlerResult, Route};
use crate::filters::Filters;
use crate::network::service::{CreateRequest, PoolRequest};
use crate::network::NetworkError;

/// What the network endpoints need: the network service, and the container manager for
/// connect and disconnect.
#[async_trait]
pub trait NetworkBackend: Send + Sync {
    /// Networks in `GET /networks`'s shape.
    fn network_list(&self, filters: Filters) -> Result<Vec<Value>, NetworkError>;
    fn network_inspect(&self, term: &str, verbose: bool) -> Result<Value, NetworkError>;
    /// The new network's ID and a warning.
    async fn network_create(&self, req: CreateRequest) -> Result<(String, String), NetworkError>;
    async fn network_remove(&self, term: String) -> Result<(), NetworkError>;
    /// The names of the networks removed.
    async fn network_prune(&self, filters: Filters) -> Result<Vec<String>, NetworkError>;
    async fn network_connect(
        &self,
        network: String,
        container: String,
        settings: EndpointSettings,
    ) -> Result<(), NetworkError>;
    async fn network_disconnect(
        &self,
        network: String,
        container: String,
        force: bool,
    ) -> Result<(), NetworkError>;
}

pub fn routes(backend: Arc<dyn NetworkBackend>) -> Vec<Route> {
    let b = &backend;
    vec![
        Route::new(Method::GET, "/networks", b, list),
        Route::new(Method::GET, "/networks/", b, list),
        Route::new(Method::POST, "/networks/create", b, create),
        Route::new(Method::POST, "/networks/prune", b, prune),
        Route::new(Method::GET, "/networks/{id:.*}", b, inspect),
        Route::new(Method::POST, "/networks/{id}/connect", b, connect),
        Route::new(Method::POST, "/networks/{id}/disconnect", b, disconnect),
        Route::new(Method::DELETE, "/networks/{id:.*}", b, remove),
    ]
}

fn filters(ctx: &Ctx<dyn NetworkBackend>) -> Result<Filters, ApiError> {
    Ok(Filters::parse(ctx.query.get("filters").unwrap_or(""))?)
}

pub async fn list(ctx: Ctx<dyn NetworkBackend>) -> HandlerResult {
    Ok(json_response(
        StatusCode::OK,
        &ctx.backend.network_list(filters(&ctx)?)?,
    ))
}

pub async fn inspect(ctx: Ctx<dyn NetworkBackend>) -> HandlerResult {
    let v = ctx
        .backend
        .network_inspect(ctx.param("id"), ctx.query.bool("verbose"))?;
    Ok(json_ordered(StatusCode::OK, &v, &super::order::NETWORK))
}

#[derive(Debug, Default, Deserialize)]
struct IpamBody {
    #[serde(rename = "Driver", default)]
    driver: Option<String>,
    #[serde(rename = "Config", default)]
    config: Option<Vec<IpamConfigBody>>,
    #[serde(rename = "Options", default)]
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
struct IpamConfigBody {
    #[serde(rename = "Subnet", default)]
    subnet: Option<String>,
    #[serde(rename = "IPRange", default)]
    ip_range: Option<String>,
    #[serde(rename = "Gateway", default)]
    gateway: Option<String>,
    #[serde(rename = "AuxiliaryAddresses", alias = "AuxAddress", default)]
    aux: Option<BTreeMap<String, String>>,
}

/// `NetworkCreateRequest`.
#[derive(Debug, Default, Deserialize)]
struct CreateBody {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Driver", default)]
    driver: Option<String>,
    #[serde(rename = "Internal", default)]
    internal: Option<bool>,
    #[serde(rename = "Attachable", default)]
    attachable: Option<bool>,
    #[serde(rename = "EnableIPv4", default)]
    enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6", default)]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM", default)]
    ipam: Option<IpamBody>,
    #[serde(rename = "Options", default)]
    options: Option<BTreeMap<String, String>>,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "Scope", default)]
    scope: Option<String>,
    #[serde(rename = "ConfigOnly", default)]
    config_only: Option<bool>,
    #[serde(rename = "ConfigFrom", default)]
    config_from: Option<ConfigFromBody>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFromBody {
    #[serde(rename = "Network", default)]
    network: Option<String>,
}

pub async fn create(ctx: Ctx<dyn NetworkBackend>) -> HandlerResult {
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let (parts, body) = ctx.req.into_parts();
    let b: CreateBody = read_json(&parts.headers, body, limit).await?;
    let ipam = b.ipam.unwrap_or_default();
    let req = CreateRequest {
        name: b.name,
        driver: b.driver.unwrap_or_default(),
        internal: b.internal.unwrap_or(false),
        attachable: b.attachable.unwrap_or(false),
        enable_ipv4: b.enable_ipv4,
        enable_ipv6: b.enable_ipv6,
        ipam_driver: ipam.driver,
        ipam_options: ipam.options,
        pools: ipam
            .config
            .unwrap_or_default()
            .into_iter()
            .map(|c| PoolRequest {
                subnet: c.subnet.filter(|s| !s.is_empty()),
                ip_range: c.ip_range,
                gateway: c.gateway,
                aux: c.aux.unwrap_or_default(),
            })
            .collect(),
        options: b.options.unwrap_or_default(),
        labels: b.labels.unwrap_or_default(),
        scope: b.scope.unwrap_or_default(),
        config_only: b.config_only.unwrap_or(false),
        config_from: b.config_from.and_then(|c| c.network),
    };
    let (id, warning) = backend.network_create(req).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &serde_json::json!({ "Id": id, "Warning": warning }),
    ))
}

pub async fn remove(ctx: Ctx<dyn NetworkBackend>) -> HandlerResult {
    ctx.backend
        .network_remove(ctx.param("id").to_string())
        .await?;
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

pub async fn prune(ctx: Ctx<dyn NetworkBackend>) -> HandlerResult {
    let names = ctx.backend.network_prune(filters(&ctx)?).await?;
    // dockerd's nil slice when nothing went.
    let names = (!names.is_empty()).then_some(names);
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "NetworksDeleted": names }),
    ))
}

#[derive(Debug, Default, Deserialize)]
struct ConnectBody {
    #[serde(rename = "Container", default)]
    container: String,
    #[serde(rename = "EndpointConfig", default)]
    endpoint_config: Option<EndpointSettings>,
}

#[derive(Debug, Default, Deserialize)]
struct DisconnectBody {
    #[serde(rename = "Container", default)]
    container: String,
    #[serde(rename = "Force", default)]
    force: Option<bool>,
}

pub async fn connect(ctx: Ctx<dyn NetworkBackend>) -> HandlerResult {
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let id = ctx.param("id").to_string();
    let (parts, body) = ctx.req.into_parts();
    let b: ConnectBody = read_json(&parts.headers, body, limit).await?;
    backend
        .network_connect(id, b.container, b.endpoint_config.unwrap_or_default())
        .await?;
    Ok(Response::new(empty()))
}

pub async fn disconnect(ctx: Ctx<dyn NetworkBackend>) -> HandlerResult {
    let limit = ctx.max_json_body;
    let backend = ctx.backend.clone();
    let id = ctx.param("id").to_string();
    let (parts, body) = ctx.req.into_parts();
    let b: DisconnectBody = read_json(&parts.headers, body, limit).await?;
    backend
        .network_disconnect(id, b.container, b.force.unwrap_or(false))
        .await?;
    Ok(Response::new(empty()))
}
