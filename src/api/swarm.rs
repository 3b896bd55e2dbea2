//! The Swarm endpoints (moby's `router/swarm`): `/swarm`, `/nodes`, `/services`, `/tasks`,
//! `/secrets`, `/configs`.
//!
//! berth has no Swarm mode, so it is always what dockerd calls a node that is not part of a
//! swarm. Each handler checks its request as dockerd's does (JSON bodies, `version`, flags,
//! filters, minimum API versions: a malformed request is the same 400), then answers what
//! dockerd's cluster answers on such a node: 503 `This node is not part of a swarm` for a leave,
//! 503 `This node is not a swarm manager. Use "docker swarm init" ...` for everything else.
//! Creating or joining a swarm is the one divergence: dockerd would do it, berth cannot and says
//! so with a 503 of its own. The answers are fixed, so the routes hold no backend (`Arc<()>`).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request};

use super::body::{check_json_content_type, drain, parse_json, read_limited};
use super::error::ApiError;
use super::router::{Ctx, HandlerResult, Route};
use crate::errors::ErrorKind;
use crate::filters::Filters;
use crate::util::strconv::parse_bool;
use crate::version::ApiVersion;

/// dockerd's `errNoSwarm`: leaving a swarm the node is not in.
pub const NO_SWARM: &str = "This node is not part of a swarm";

/// dockerd's `errNoManager` on a node that is in no swarm at all.
pub const NOT_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

/// berth's answer to `swarm init` and `swarm join`.
pub const NOT_SUPPORTED: &str =
    "this node cannot create or join a swarm: swarm mode is not supported by berth";

type C = Ctx<()>;

/// The Swarm routes. They hold no backend: without Swarm mode every answer is fixed.
pub fn routes() -> Vec<Route> {
    let b = &Arc::new(());
    vec![
        Route::new(Method::POST, "/swarm/init", b, init_or_join),
        Route::new(Method::POST, "/swarm/join", b, init_or_join),
        Route::new(Method::POST, "/swarm/leave", b, leave),
        Route::new(Method::GET, "/swarm", b, plain),
        Route::new(Method::GET, "/swarm/unlockkey", b, plain),
        Route::new(Method::POST, "/swarm/update", b, swarm_update),
        Route::new(Method::POST, "/swarm/unlock", b, with_body),
        Route::new(Method::GET, "/services", b, service_list),
        Route::new(Method::POST, "/services/create", b, with_body),
        Route::new(Method::GET, "/services/{id}", b, service_inspect),
        Route::new(Method::DELETE, "/services/{id}", b, plain),
        Route::new(Method::POST, "/services/{id}/update", b, service_update),
        Route::new(Method::GET, "/services/{id}/logs", b, logs),
        Route::new(Method::GET, "/nodes", b, node_list),
        Route::new(Method::GET, "/nodes/{id}", b, plain),
        Route::new(Method::DELETE, "/nodes/{id}", b, plain),
        Route::new(Method::POST, "/nodes/{id}/update", b, node_update),
        Route::new(Method::GET, "/tasks", b, task_list),
        Route::new(Method::GET, "/tasks/{id}", b, plain),
        Route::new(Method::GET, "/tasks/{id}/logs", b, logs),
    ]
    .into_iter()
    .chain(object_routes(b, SECRETS))
    .chain(object_routes(b, CONFIGS))
    .collect()
}

/// The five routes of secrets or configs.
fn object_routes(b: &Arc<()>, o: Objects) -> [Route; 5] {
    [
        Route::new(Method::GET, o.list, b, move |c| object_list(c, o)),
        Route::new(Method::POST, o.create, b, move |c| object_create(c, o)),
        Route::new(Method::GET, o.by_id, b, move |c| object_by_id(c, o)),
        Route::new(Method::DELETE, o.by_id, b, move |c| object_by_id(c, o)),
        Route::new(Method::POST, o.update, b, move |c| object_update(c, o)),
    ]
}

fn not_manager() -> HandlerResult {
    Err(ApiError::new(ErrorKind::Unavailable, NOT_MANAGER))
}

/// moby's `ReadJSON`: a declared content type must be JSON, an empty body is no request, and
/// anything else must be one JSON value (whose fields go no further: the request stops here).
async fn read_json(req: Request<Incoming>, limit: usize) -> Result<(), ApiError> {
    let (parts, body) = req.into_parts();
    check_json_content_type(&parts.headers)?;
    let bytes = read_limited(&parts.headers, body, limit).await?;
    if !bytes.is_empty() {
        parse_json::<serde_json::Value>(&bytes)?;
    }
    Ok(())
}

/// Go's `strconv.ParseUint(s, 10, 64)` error, if `s` is not one.
fn go_parse_uint(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseUint: parsing {s:?}: invalid syntax"));
    }
    s.parse::<u64>()
        .map_err(|_| format!("strconv.ParseUint: parsing {s:?}: value out of range"))
}

/// The `filters` parameter, checked against the names dockerd's cluster accepts.
fn check_filters(ctx: &C, accepted: Option<&[&str]>) -> Result<(), ApiError> {
    let f = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    if let Some(accepted) = accepted {
        f.validate(accepted)?;
    }
    Ok(())
}

/// A `version` query parameter that must be an unsigned integer.
fn object_version(ctx: &C) -> Result<u64, String> {
    go_parse_uint(ctx.query.get("version").unwrap_or(""))
}

/// `POST /swarm/init`, `POST /swarm/join`: the one divergence (see the module comment).
pub async fn init_or_join(ctx: C) -> HandlerResult {
    read_json(ctx.req, ctx.max_json_body).await?;
    Err(ApiError::new(ErrorKind::Unavailable, NOT_SUPPORTED))
}

/// `POST /swarm/leave`: there is no swarm to leave, with or without `force`.
pub async fn leave(_ctx: C) -> HandlerResult {
    Err(ApiError::new(ErrorKind::Unavailable, NO_SWARM))
}

/// Endpoints that check nothing before asking the cluster.
pub async fn plain(_ctx: C) -> HandlerResult {
    not_manager()
}

/// Endpoints that read a JSON body before asking the cluster.
pub async fn with_body(ctx: C) -> HandlerResult {
    read_json(ctx.req, ctx.max_json_body).await?;
    not_manager()
}

/// `POST /swarm/update`: the spec, `version`, then the three rotation flags.
pub async fn swarm_update(ctx: C) -> HandlerResult {
    let version = object_version(&ctx);
    let raw = ctx.query.get("version").unwrap_or("").to_string();
    let flags: Vec<(&str, Option<String>)> = [
        "rotateWorkerToken",
        "rotateManagerToken",
        "rotateManagerUnlockKey",
    ]
    .into_iter()
    .map(|k| (k, ctx.query.get(k).map(str::to_string)))
    .collect();
    read_json(ctx.req, ctx.max_json_body).await?;
    version.map_err(|e| ApiError::invalid(format!("invalid swarm version '{raw}': {e}")))?;
    for (name, value) in flags {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            parse_bool(&v)
                .map_err(|_| ApiError::invalid(format!("invalid value for {name}: {v}")))?;
        }
    }
    not_manager()
}

/// `GET /services`: filters, `status` (API 1.41 and later), the accepted filter names.
pub async fn service_list(ctx: C) -> HandlerResult {
    let f = Filters::parse(ctx.query.get("filters").unwrap_or(""))?;
    if ctx.version >= ApiVersion::new(1, 41) {
        if let Some(v) = ctx.query.get("status").filter(|v| !v.is_empty()) {
            parse_bool(v)
                .map_err(|e| ApiError::invalid(format!("invalid value for status: {v}: {e}")))?;
        }
    }
    f.validate(&["name", "id", "label", "mode", "runtime"])?;
    not_manager()
}

/// `GET /services/{id}`: `insertDefaults` must be a boolean.
pub async fn service_inspect(ctx: C) -> HandlerResult {
    if let Some(v) = ctx.query.get("insertDefaults").filter(|v| !v.is_empty()) {
        parse_bool(v).map_err(|e| {
            ApiError::invalid(format!("invalid value for insertDefaults: {v}: {e}"))
        })?;
    }
    not_manager()
}

/// `POST /services/{id}/update`: the spec, `version`, `registryAuthFrom`.
pub async fn service_update(ctx: C) -> HandlerResult {
    let version = object_version(&ctx);
    let raw = ctx.query.get("version").unwrap_or("").to_string();
    let auth_from = ctx.query.get("registryAuthFrom").map(str::to_string);
    read_json(ctx.req, ctx.max_json_body).await?;
    version.map_err(|e| ApiError::invalid(format!("invalid service version '{raw}': {e}")))?;
    if let Some(v) = auth_from.filter(|v| !v.is_empty()) {
        if v != "spec" && v != "previous-spec" {
            return Err(ApiError::invalid(format!("invalid registryAuthFrom '{v}'")));
        }
    }
    not_manager()
}

/// `GET /services/{id}/logs`, `GET /tasks/{id}/logs`: moby's `swarmLogs` checks the streams
/// first, then looks the service or task up.
pub async fn logs(ctx: C) -> HandlerResult {
    if !ctx.query.bool("stdout") && !ctx.query.bool("stderr") {
        return Err(ApiError::invalid(
            "must specify at least one of 'stdout' or 'stderr'",
        ));
    }
    not_manager()
}

/// `GET /nodes`.
pub async fn node_list(ctx: C) -> HandlerResult {
    check_filters(
        &ctx,
        Some(&["name", "id", "label", "role", "membership", "node.label"]),
    )?;
    not_manager()
}

/// `POST /nodes/{id}/update`: the spec, then `version`.
pub async fn node_update(ctx: C) -> HandlerResult {
    let version = object_version(&ctx);
    let raw = ctx.query.get("version").unwrap_or("").to_string();
    read_json(ctx.req, ctx.max_json_body).await?;
    version.map_err(|e| ApiError::invalid(format!("invalid node version '{raw}': {e}")))?;
    not_manager()
}

/// `GET /tasks`: the filters are parsed; their names are checked by the manager.
pub async fn task_list(ctx: C) -> HandlerResult {
    check_filters(&ctx, None)?;
    not_manager()
}

/// Secrets or configs: the same five endpoints over a different kind of object.
#[derive(Clone, Copy)]
pub struct Objects {
    /// The route patterns: `/secrets`, `/secrets/create`, `/secrets/{id}`,
    /// `/secrets/{id}/update`.
    list: &'static str,
    create: &'static str,
    by_id: &'static str,
    update: &'static str,
    /// The object in error texts: `secret`.
    what: &'static str,
    /// The API version that brought the endpoints.
    min: ApiVersion,
    /// The filter names the list accepts.
    filters: &'static [&'static str],
}

const SECRETS: Objects = Objects {
    list: "/secrets",
    create: "/secrets/create",
    by_id: "/secrets/{id}",
    update: "/secrets/{id}/update",
    what: "secret",
    min: ApiVersion::new(1, 25),
    filters: &["names", "name", "id", "label"],
};

const CONFIGS: Objects = Objects {
    list: "/configs",
    create: "/configs/create",
    by_id: "/configs/{id}",
    update: "/configs/{id}/update",
    what: "config",
    min: ApiVersion::new(1, 30),
    filters: &["name", "id", "label"],
};

/// Specs with `Templating` are refused below this API version.
const TEMPLATING: ApiVersion = ApiVersion::new(1, 37);

/// moby's `WithMinimumAPIVersion`: `GET /secrets requires minimum API version 1.25`.
fn require_version(ctx: &C, o: Objects, route: &str) -> Result<(), ApiError> {
    if ctx.version < o.min {
        return Err(ApiError::invalid(format!(
            "{} {route} requires minimum API version {}",
            ctx.req.method(),
            o.min
        )));
    }
    Ok(())
}

/// `GET /secrets`, `GET /configs`.
pub async fn object_list(ctx: C, o: Objects) -> HandlerResult {
    require_version(&ctx, o, o.list)?;
    check_filters(&ctx, Some(o.filters))?;
    not_manager()
}

/// `POST /secrets/create`, `POST /configs/create`: the spec, whose `Templating` needs API 1.37.
pub async fn object_create(ctx: C, o: Objects) -> HandlerResult {
    if let Err(e) = require_version(&ctx, o, o.create) {
        drain(ctx.req.into_body());
        return Err(e);
    }
    let version = ctx.version;
    let (parts, body) = ctx.req.into_parts();
    check_json_content_type(&parts.headers)?;
    let bytes = read_limited(&parts.headers, body, ctx.max_json_body).await?;
    if !bytes.is_empty() {
        let spec: serde_json::Value = parse_json(&bytes)?;
        let templating = spec.get("Templating").is_some_and(|t| !t.is_null());
        if templating && version < TEMPLATING {
            return Err(ApiError::invalid(format!(
                "{} templating is not supported on the specified API version: {version}",
                o.what
            )));
        }
    }
    not_manager()
}

/// `GET` and `DELETE /secrets/{id}` and `/configs/{id}`.
pub async fn object_by_id(ctx: C, o: Objects) -> HandlerResult {
    require_version(&ctx, o, o.by_id)?;
    not_manager()
}

/// `POST /secrets/{id}/update`, `POST /configs/{id}/update`: the spec, then `version`.
pub async fn object_update(ctx: C, o: Objects) -> HandlerResult {
    if let Err(e) = require_version(&ctx, o, o.update) {
        drain(ctx.req.into_body());
        return Err(e);
    }
    let version = object_version(&ctx);
    read_json(ctx.req, ctx.max_json_body).await?;
    version.map_err(|_| ApiError::invalid(format!("invalid {} version", o.what)))?;
    not_manager()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_number_and_bool_errors() {
        assert_eq!(go_parse_uint("12"), Ok(12));
        assert_eq!(
            go_parse_uint("").unwrap_err(),
            "strconv.ParseUint: parsing \"\": invalid syntax"
        );
        assert_eq!(
            go_parse_uint("-1").unwrap_err(),
            "strconv.ParseUint: parsing \"-1\": invalid syntax"
        );
        assert_eq!(
            go_parse_uint("99999999999999999999").unwrap_err(),
            "strconv.ParseUint: parsing \"99999999999999999999\": value out of range"
        );
        assert_eq!(parse_bool("T"), Ok(true));
        assert_eq!(parse_bool("False"), Ok(false));
        assert_eq!(
            parse_bool("yes").unwrap_err(),
            "strconv.ParseBool: parsing \"yes\": invalid syntax"
        );
    }

    #[test]
    fn every_swarm_route_is_declared() {
        // 7 swarm, 6 service, 4 node, 3 task, 5 secret, 5 config operations of the spec.
        assert_eq!(routes().len(), 30);
    }
}
