//! Dispatch: matching a request against the routes the resource modules declare, the `/vX.Y`
//! prefix and the headers every response carries.
//!
//! Each resource module (`api::image`, `api::container`, ...) builds its own `Vec<Route>` over
//! its own backend; this file knows none of them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response};

use super::body::{Body, MAX_JSON_BODY};
use super::error::{error_response, ApiError};
use super::query::Query;
use crate::errors::ErrorKind;
use crate::version::{server_header, ApiVersion, API_VERSION, MIN_API_VERSION};

/// What a handler gets: the request, its path parameters, the API version the client asked
/// for, the decoded query and the backend of its router (`B` is that router's backend trait,
/// e.g. `Ctx<dyn ImageBackend>`).
pub struct Ctx<B: ?Sized> {
    pub req: Request<Incoming>,
    pub params: HashMap<&'static str, String>,
    pub version: ApiVersion,
    pub query: Query,
    pub backend: Arc<B>,
    pub max_json_body: usize,
}

impl<B: ?Sized> Ctx<B> {
    /// A path parameter (always present for the route that matched).
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A matched request before a route gives it its backend.
struct Matched {
    req: Request<Incoming>,
    params: HashMap<&'static str, String>,
    version: ApiVersion,
    query: Query,
    max_json_body: usize,
}

impl Matched {
    fn with_backend<B: ?Sized>(self, backend: Arc<B>) -> Ctx<B> {
        Ctx {
            req: self.req,
            params: self.params,
            version: self.version,
            query: self.query,
            backend,
            max_json_body: self.max_json_body,
        }
    }
}

pub type HandlerResult = Result<Response<Body>, ApiError>;
type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type Handler = Box<dyn Fn(Matched) -> HandlerFuture + Send + Sync>;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seg {
    Lit(&'static str),
    /// `{name}`: exactly one path segment.
    Param(&'static str),
    /// `{name:.*}`: one or more segments (image names contain slashes).
    Rest(&'static str),
}

/// One entry of the route table: a method, a path pattern (`/images/{name:.*}/json`) and a
/// handler bound to its backend.
pub struct Route {
    method: Method,
    pattern: Vec<Seg>,
    handler: Handler,
}

impl Route {
    /// Route `method path` to `handler`, which gets `backend` in its [`Ctx`].
    pub fn new<B, F, Fut>(method: Method, path: &'static str, backend: &Arc<B>, handler: F) -> Route
    where
        B: ?Sized + Send + Sync + 'static,
        F: Fn(Ctx<B>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let backend = backend.clone();
        Route {
            method,
            pattern: parse_pattern(path),
            handler: Box::new(move |m: Matched| Box::pin(handler(m.with_backend(backend.clone())))),
        }
    }
}

pub(crate) fn parse_pattern(p: &'static str) -> Vec<Seg> {
    p.trim_start_matches('/')
        .split('/')
        .map(|s| {
            if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                match inner.strip_suffix(":.*") {
                    Some(name) => Seg::Rest(name),
                    None => Seg::Param(inner),
                }
            } else {
                Seg::Lit(s)
            }
        })
        .collect()
}

/// Match `path` (already split) against `pattern`, filling `params`.
pub(crate) fn match_segments(
    pattern: &[Seg],
    path: &[&str],
    params: &mut HashMap<&'static str, String>,
) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Seg::Lit(l), rest)) => {
            path.first().is_some_and(|p| p == l) && match_segments(rest, &path[1..], params)
        }
        Some((Seg::Param(name), rest)) => match path.first() {
            Some(p) if !p.is_empty() => {
                params.insert(name, decode(p));
                match_segments(rest, &path[1..], params) || {
                    params.remove(name);
                    false
                }
            }
            _ => false,
        },
        Some((Seg::Rest(name), rest)) => {
            // Longest match first, as gorilla/mux's `.*` does.
            for take in (1..=path.len().saturating_sub(rest.len())).rev() {
                if path[..take].iter().all(|p| p.is_empty()) {
                    continue;
                }
                if match_segments(rest, &path[take..], params) {
                    params.insert(name, decode(&path[..take].join("/")));
                    return true;
                }
            }
            false
        }
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Split `/v1.41/containers/json` into the version and the rest of the path. A first segment
/// of `v` and digits-and-dots is a version prefix, as moby's `/v{version:[0-9.]+}`.
pub(crate) fn split_version(path: &str) -> (Option<&str>, &str) {
    let trimmed = path.trim_start_matches('/');
    if let Some(rest) = trimmed.strip_prefix('v') {
        let (v, tail) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return (Some(v), tail);
        }
    }
    (None, path)
}

/// The API: a route table, each route bound to its router's backend.
pub struct Api {
    routes: Vec<Route>,
    max_json_body: usize,
}

impl Api {
    /// Serve `routes`, tried in order (the first match wins).
    pub fn from_routes(routes: Vec<Route>) -> Arc<Api> {
        Arc::new(Api {
            routes,
            max_json_body: MAX_JSON_BODY,
        })
    }

    /// Bound JSON request bodies at `limit` bytes.
    pub fn with_max_json_body(mut self: Arc<Self>, limit: usize) -> Arc<Self> {
        if let Some(api) = Arc::get_mut(&mut self) {
            api.max_json_body = limit;
        }
        self
    }

    /// Serve one request. Never fails: errors and panics become JSON error responses.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let mut resp = self.dispatch(req).await;
        add_common_headers(&mut resp);
        let status = resp.status();
        if status.is_server_error() {
            tracing::error!("{method} {path}: {status}");
        } else {
            tracing::debug!("{method} {path}: {status} in {:?}", started.elapsed());
        }
        Ok(resp)
    }

    async fn dispatch(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let (version_text, rest) = split_version(&path);
        let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let mut params = HashMap::new();
        let Some(route) = self.routes.iter().find(|r| {
            params.clear();
            r.method == *req.method() && match_segments(&r.pattern, &segments, &mut params)
        }) else {
            return error_response(ErrorKind::NotFound, "page not found");
        };
        let version = match version_text {
            None => API_VERSION,
            Some(text) => match check_version(text) {
                Ok(v) => v,
                Err(e) => return e.into_response(),
            },
        };
        let matched = Matched {
            query: Query::parse(req.uri().query()),
            req,
            params,
            version,
            max_json_body: self.max_json_body,
        };
        match AssertUnwindSafe((route.handler)(matched))
            .catch_unwind()
            .await
        {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                if e.status().is_server_error() {
                    tracing::error!("handler for {path} returned error: {e}");
                }
                e.into_response()
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!("handler for {path} panicked: {what}");
                error_response(ErrorKind::Internal, "internal server error")
            }
        }
    }
}

/// Refuse versions outside what berth speaks, with dockerd's words.
pub(crate) fn check_version(text: &str) -> Result<ApiVersion, ApiError> {
    let v = ApiVersion::parse(text).ok_or_else(|| {
        ApiError::invalid(format!("client version {text} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"))
    })?;
    if v < MIN_API_VERSION {
        return Err(ApiError::invalid(format!(
            "client version {text} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        )));
    }
    if v > API_VERSION {
        return Err(ApiError::invalid(format!(
            "client version {text} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    Ok(v)
}

fn add_common_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    let set = |h: &mut hyper::HeaderMap, name: &'static str, value: HeaderValue| {
        h.insert(HeaderName::from_static(name), value);
    };
    set(h, "api-version", HeaderValue::from_static(API_VERSION_STR));
    set(h, "ostype", HeaderValue::from_static("linux"));
    set(h, "docker-experimental", HeaderValue::from_static("false"));
    if let Ok(v) = HeaderValue::from_str(&server_header()) {
        set(h, "server", v);
    }
}

const API_VERSION_STR: &str = "1.51";

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &'static str, path: &str) -> Option<HashMap<&'static str, String>> {
        let pat = parse_pattern(pattern);
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut params = HashMap::new();
        match_segments(&pat, &segs, &mut params).then_some(params)
    }

    #[test]
    fn api_version_constant_matches() {
        assert_eq!(API_VERSION.to_string(), API_VERSION_STR);
    }

    #[test]
    fn matches_literals_params_and_greedy_names() {
        assert!(m("/_ping", "/_ping").is_some());
        assert!(m("/_ping", "/_ping/").is_none());
        assert!(m("/info", "/infox").is_none());
        let p = m("/containers/{id}/json", "/containers/abc/json").unwrap();
        assert_eq!(p["id"], "abc");
        assert!(m("/containers/{id}/json", "/containers//json").is_none());
        let p = m("/images/{name:.*}/json", "/images/localhost:5000/a/b/json").unwrap();
        assert_eq!(p["name"], "localhost:5000/a/b");
        let p = m("/images/{name:.*}", "/images/a%2Fb").unwrap();
        assert_eq!(p["name"], "a/b");
        let p = m("/images/{name:.*}/push", "/images/x/push/push").unwrap();
        assert_eq!(p["name"], "x/push");
        assert!(m("/images/{name:.*}/json", "/images/json").is_none());
    }

    #[test]
    fn splits_version_prefixes() {
        assert_eq!(split_version("/v1.41/info"), (Some("1.41"), "/info"));
        assert_eq!(split_version("/info"), (None, "/info"));
        assert_eq!(split_version("/volumes"), (None, "/volumes"));
        assert_eq!(split_version("/v1.a/info"), (None, "/v1.a/info"));
        assert_eq!(split_version("/v/info"), (None, "/v/info"));
    }

    #[test]
    fn version_bounds_use_dockerd_words() {
        assert_eq!(
            check_version("1.12").unwrap_err().message,
            "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
        );
        assert_eq!(
            check_version("1.99").unwrap_err().message,
            "client version 1.99 is too new. Maximum supported API version is 1.51"
        );
        assert_eq!(check_version("1.41").unwrap(), ApiVersion::new(1, 41));
        assert!(check_version("1.24").is_ok());
        assert!(check_version("1.51").is_ok());
    }
}
