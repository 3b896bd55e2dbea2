//! `POST /build` (the classic builder), `POST /build/prune` and `POST /session` (moby's
//! `router/build` and `router/session`).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::body::{body_channel, channel_body, json_response};
use super::error::ApiError;
use super::router::{Ctx, HandlerResult, Route};
use crate::builder::build::{BuildMessage, BuildOptions};
use crate::builder::cache::{PruneOptions, PruneReport};
use crate::builder::BuilderError;
use crate::filters::Filters;
use crate::registry::client::AuthConfig;
use crate::util::io::BodyReceiver;
use crate::version::ApiVersion;

/// What the build endpoints need: the builder.
#[async_trait]
pub trait BuildBackend: Send + Sync {
    /// Start a build; an error before any output is the request's error.
    async fn build(
        &self,
        context: BodyReceiver,
        opts: BuildOptions,
    ) -> Result<mpsc::Receiver<BuildMessage>, BuilderError>;
    /// `POST /build/prune`.
    async fn build_prune(&self, opts: PruneOptions) -> Result<PruneReport, BuilderError>;
}

/// The build routes over `backend`.
pub fn routes(backend: Arc<dyn BuildBackend>) -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/build", &backend, build),
        Route::new(Method::POST, "/build/prune", &backend, prune),
        Route::new(Method::POST, "/session", &backend, session),
    ]
}

/// A JSON parameter (`buildargs`, `labels`, `cachefrom`, `ulimits`, `outputs`); absent or
/// empty is empty. `what` begins the error, as dockerd's (`error reading build args: …`).
fn json_param<T: serde::de::DeserializeOwned + Default>(
    ctx: &Ctx<dyn BuildBackend>,
    name: &str,
    what: &str,
) -> Result<T, ApiError> {
    match ctx.query.get(name).filter(|s| !s.is_empty()) {
        None => Ok(T::default()),
        Some(text) => {
            serde_json::from_str(text).map_err(|e| ApiError::invalid(format!("{what}: {e}")))
        }
    }
}

/// One entry of `outputs` (BuildKit's exporters). The classic builder reads and ignores them,
/// as dockerd's does.
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct BuildOutput {
    #[serde(rename = "Type", default)]
    typ: String,
    #[serde(rename = "Attrs", default)]
    attrs: HashMap<String, String>,
}

/// The parameters dockerd refuses on Linux or with its classic builder, in the order of moby's
/// `newImageBuildOptions`: `securityopt` (Windows only), malformed `outputs`, an `isolation`
/// other than the default, and a `version` other than the classic builder's.
fn refused_parameters(ctx: &Ctx<dyn BuildBackend>) -> Result<(), ApiError> {
    let q = &ctx.query;
    if q.get_all("securityopt").next().is_some() {
        return Err(ApiError::invalid(
            "security options are not supported on linux",
        ));
    }
    if ctx.version >= ApiVersion::new(1, 40) {
        json_param::<Vec<BuildOutput>>(ctx, "outputs", "invalid outputs specified")?;
    }
    if let Some(i) = q.get("isolation").filter(|i| !i.is_empty()) {
        if !i.eq_ignore_ascii_case("default") {
            return Err(ApiError::invalid(format!("unsupported isolation: {i:?}")));
        }
    }
    Ok(())
}

/// `version`: the builder a client asks for. Only the classic one (`1`) builds here; BuildKit
/// (`2`) gets dockerd's answer when it runs without BuildKit.
fn builder_version(ctx: &Ctx<dyn BuildBackend>) -> Result<(), ApiError> {
    match ctx.query.get("version").unwrap_or("") {
        "" | "1" => Ok(()),
        "2" => Err(ApiError::invalid("buildkit is not enabled on daemon")),
        v => Err(ApiError::invalid(format!("invalid version {v:?}"))),
    }
}

/// `X-Registry-Config`: base64 JSON of credentials by registry. As dockerd, a header that
/// does not decode is ignored.
fn registry_config(ctx: &Ctx<dyn BuildBackend>) -> HashMap<String, AuthConfig> {
    let Some(v) = ctx
        .req
        .headers()
        .get("x-registry-config")
        .and_then(|v| v.to_str().ok())
    else {
        return HashMap::new();
    };
    crate::registry::client::decode_header_base64(v)
        .and_then(|b| serde_json::from_slice::<HashMap<String, AuthConfig>>(&b).ok())
        .map(|mut m| {
            for a in m.values_mut() {
                a.fill_from_auth();
            }
            m
        })
        .unwrap_or_default()
}

fn positive(ctx: &Ctx<dyn BuildBackend>, name: &str) -> Result<Option<i64>, ApiError> {
    Ok(ctx.query.int(name)?.filter(|v| *v != 0))
}

/// The build's parameters, checked as moby's `newImageBuildOptions` checks them.
fn build_options(ctx: &Ctx<dyn BuildBackend>) -> Result<BuildOptions, ApiError> {
    let q = &ctx.query;
    let text = |n: &str| q.get(n).unwrap_or("").to_string();
    let force_remove = q.bool("forcerm");
    refused_parameters(ctx)?;
    let opts = BuildOptions {
        dockerfile: text("dockerfile"),
        tags: q
            .get_all("t")
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        quiet: q.bool("q"),
        nocache: q.bool("nocache"),
        remove: force_remove || q.bool_or("rm", true),
        force_remove,
        pull: q.bool("pull"),
        build_args: json_param(ctx, "buildargs", "error reading build args")?,
        labels: json_param(ctx, "labels", "error reading labels")?,
        target: text("target"),
        network_mode: text("networkmode"),
        extra_hosts: q.get_all("extrahosts").map(str::to_string).collect(),
        shm_size: positive(ctx, "shmsize")?,
        ulimits: json_param(ctx, "ulimits", "error reading ulimit settings")?,
        memory: positive(ctx, "memory")?,
        memory_swap: positive(ctx, "memswap")?,
        cpu_shares: positive(ctx, "cpushares")?,
        cpu_period: positive(ctx, "cpuperiod")?,
        cpu_quota: positive(ctx, "cpuquota")?,
        cpuset_cpus: text("cpusetcpus"),
        cpuset_mems: text("cpusetmems"),
        cgroup_parent: text("cgroupparent"),
        platform: if ctx.version >= ApiVersion::new(1, 32) {
            text("platform")
        } else {
            String::new()
        },
        squash: q.bool("squash"),
        remote: text("remote"),
        cache_from: json_param(ctx, "cachefrom", "error reading cache-from")?,
        auth_configs: registry_config(ctx),
    };
    builder_version(ctx)?;
    Ok(opts)
}

pub async fn build(ctx: Ctx<dyn BuildBackend>) -> HandlerResult {
    let opts = build_options(&ctx);
    let want_aux = ctx.version >= ApiVersion::new(1, 30);
    let backend = ctx.backend.clone();
    let (body, pump) = body_channel(ctx.req.into_body());
    // The context is read before the first message (the build runs in this task until then).
    // A refused parameter is answered inside the drive too, so that the context the client is
    // still sending is drained and it reads the answer rather than a broken pipe.
    let (mut messages, first) = pump
        .drive(async {
            let mut messages = backend.build(body, opts?).await?;
            let first = messages.recv().await;
            Ok::<_, ApiError>((messages, first))
        })
        .await?;
    // Nothing is written before the first message: a build that fails at once is an
    // ordinary error response, as dockerd's (its output is not flushed yet).
    let first = match first {
        None => return Err(ApiError::internal("the build ended without a word")),
        Some(BuildMessage::Error { code, message }) => {
            return Err(match code {
                None => ApiError::invalid(message),
                Some(_) => ApiError::internal(message),
            })
        }
        Some(m) => m,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let mut next = Some(first);
        while let Some(m) = next {
            if let Some(line) = encode(&m, want_aux) {
                if tx.send(Ok(line)).await.is_err() {
                    // The client went away: dropping the messages cancels the build.
                    return;
                }
            }
            // A client that goes away while a step is quiet cancels the build too.
            next = tokio::select! {
                m = messages.recv() => m,
                _ = tx.closed() => return,
            };
        }
    });
    let mut r = Response::new(channel_body(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// dockerd's JSON line for one message.
fn encode(m: &BuildMessage, want_aux: bool) -> Option<Bytes> {
    let v: Value = match m {
        BuildMessage::Stream(s) => json!({ "stream": s }),
        BuildMessage::Aux(id) if want_aux => json!({ "aux": { "ID": id } }),
        BuildMessage::Aux(_) => return None,
        BuildMessage::Progress(p) => serde_json::to_value(p).unwrap_or(Value::Null),
        BuildMessage::Error { code, message } => {
            let mut detail = serde_json::Map::new();
            if let Some(c) = code {
                detail.insert("code".into(), json!(c));
            }
            detail.insert("message".into(), json!(message));
            json!({ "errorDetail": detail, "error": message })
        }
    };
    let mut line = serde_json::to_vec(&v).unwrap_or_default();
    line.extend_from_slice(b"\r\n");
    Some(Bytes::from(line))
}

/// `POST /build/prune` as moby's `postPrune`: `all`, `filters`, and the sizes to keep
/// (`keep-storage`; from API 1.48 `reserved-space`, `max-used-space`, `min-free-space`).
pub async fn prune(ctx: Ctx<dyn BuildBackend>) -> HandlerResult {
    let bytes = |name: &str| -> Result<u64, ApiError> {
        match ctx.query.get(name).filter(|v| !v.is_empty()) {
            None => Ok(0),
            Some(v) => v.parse::<u64>().map_err(|_| {
                ApiError::invalid(format!(
                    "{name} is in bytes and expects an integer, got {v}: strconv.Atoi: parsing {v:?}: invalid syntax"
                ))
            }),
        }
    };
    let (reserved_space, max_used_space) = if ctx.version >= ApiVersion::new(1, 48) {
        let mut reserved = bytes("reserved-space")?;
        if reserved == 0 {
            reserved = bytes("keep-storage")?;
        }
        let max = bytes("max-used-space")?;
        // Accepted; the cache has no free-space target of its own.
        bytes("min-free-space")?;
        (reserved, max)
    } else {
        (bytes("keep-storage")?, 0)
    };
    let opts = PruneOptions {
        all: ctx.query.bool("all"),
        reserved_space,
        max_used_space,
        filters: Filters::parse(ctx.query.get("filters").unwrap_or(""))?,
    };
    let report = ctx.backend.build_prune(opts).await?;
    let deleted = if report.deleted.is_empty() {
        Value::Null
    } else {
        json!(report.deleted)
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "CachesDeleted": deleted, "SpaceReclaimed": report.reclaimed }),
    ))
}

/// `POST /session`: BuildKit's session endpoint. berth builds with the classic builder only;
/// a BuildKit client gets a clear answer instead of a hang.
pub async fn session(_ctx: Ctx<dyn BuildBackend>) -> HandlerResult {
    Err(ApiError::new(
        crate::errors::ErrorKind::NotImplemented,
        "this daemon builds with the classic builder only (BuildKit sessions are not supported); set DOCKER_BUILDKIT=0",
    ))
}
