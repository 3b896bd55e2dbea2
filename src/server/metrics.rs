//! The metrics listener (`--metrics-addr`): `GET /metrics` in the Prometheus text format, and
//! 404 for anything else.
//!
//! It follows the API's TCP rules: with `--tls`/`--tlsverify` it speaks TLS with the API's
//! certificate, key and CA (and requires client certificates under `--tlsverify`); without
//! `--tlsverify` a non-loopback address is refused unless `--tls=false` was given on purpose.
//! (dockerd serves its metrics in plain HTTP on any address.)

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::listener::{self, is_loopback, ListenError, Listener};
use super::ServerOptions;
use crate::config::Config;
use crate::metrics::{Metrics, MetricsSource, CONTENT_TYPE as METRICS_CONTENT_TYPE};

/// Bind `addr` (`HOST:PORT`, as `Config::metrics_addr` holds it) for the metrics listener.
pub async fn bind_metrics(addr: &str, config: &Config) -> Result<Listener, ListenError> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| ListenError::invalid(format!("invalid metrics address {addr}")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| ListenError::invalid(format!("invalid metrics address {addr}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // An empty host is every address, as Go's net.Listen takes it.
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ListenError::invalid(format!("resolve {addr}: {e}")))?
        .collect();
    let bind = *addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .ok_or_else(|| ListenError::invalid(format!("resolve {addr}: no address")))?;
    check_policy(addr, &addrs, config)?;
    let tls = listener::tls_config(config)?;
    let l = TcpListener::bind(bind)
        .await
        .map_err(|e| ListenError::invalid(format!("listen on {addr}: {e}")))?;
    Ok(Listener::tcp(l, tls))
}

/// The API's rule for TCP sockets, for the metrics: they name every container, its image and
/// its resource use.
fn check_policy(addr: &str, addrs: &[SocketAddr], config: &Config) -> Result<(), ListenError> {
    if config.tls_verify || addrs.iter().all(|a| is_loopback(a.ip())) {
        return Ok(());
    }
    if !config.tls_explicit {
        return Err(ListenError::invalid(format!(
            "refusing to serve metrics on {addr} without --tlsverify: anyone who can reach it can read the names, images and resource use of every container; \
             use --tlsverify with --tlscacert, --tlscert and --tlskey, or pass --tls=false to accept the risk"
        )));
    }
    tracing::warn!(
        "serving metrics on {addr} without --tlsverify: everyone who can reach it can read the names, images and resource use of every container"
    );
    Ok(())
}

/// Serve `GET /metrics` on `listener` until `shutdown` completes; then stop accepting and let
/// scrapes in flight finish within `opts.drain_timeout`.
pub async fn serve_metrics<F>(
    listener: Listener,
    metrics: Arc<Metrics>,
    source: Arc<dyn MetricsSource>,
    shutdown: F,
    opts: ServerOptions,
) where
    F: Future<Output = ()>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (metrics, source, stop, opts) = (
            metrics.clone(),
            source.clone(),
            stop_rx.clone(),
            opts.clone(),
        );
        match accepted {
            Ok(listener::Accepted::Tcp(s, None)) => {
                conns.spawn(serve_connection(s, metrics, source, stop, opts));
            }
            Ok(listener::Accepted::Tcp(s, Some(acceptor))) => {
                conns.spawn(async move {
                    let peer = s.peer_addr().ok();
                    match tokio::time::timeout(opts.tls_handshake_timeout, acceptor.accept(s)).await
                    {
                        Ok(Ok(tls)) => serve_connection(tls, metrics, source, stop, opts).await,
                        Ok(Err(e)) => {
                            tracing::info!("metrics: tls handshake with {peer:?} failed: {e}")
                        }
                        Err(_) => tracing::info!("metrics: tls handshake with {peer:?} timed out"),
                    }
                });
            }
            Ok(listener::Accepted::Unix(s)) => {
                conns.spawn(serve_connection(s, metrics, source, stop, opts));
            }
            Err(e) => {
                tracing::warn!("accept on {}: {e}", listener.describe());
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        // Forget the connections that ended.
        while conns.try_join_next().is_some() {}
    }
    listener.close();
    let _ = stop_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(opts.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "metrics scrapes still in flight after {:?}: closing them",
            opts.drain_timeout
        );
    }
}

async fn serve_connection<I>(
    io: I,
    metrics: Arc<Metrics>,
    source: Arc<dyn MetricsSource>,
    mut stop: watch::Receiver<bool>,
    opts: ServerOptions,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(req, metrics.clone(), source.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = super::stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if !e.is_incomplete_message() {
            tracing::debug!("metrics connection closed: {e}");
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    metrics: Arc<Metrics>,
    source: Arc<dyn MetricsSource>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        // Go's ServeMux text, as dockerd answers any other path.
        return Ok(text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n",
        ));
    }
    // Sampling may read many files (the containers' stats): off the async workers.
    match tokio::task::spawn_blocking(move || metrics.encode(&*source)).await {
        Ok(body) => Ok(text(StatusCode::OK, METRICS_CONTENT_TYPE, body)),
        Err(e) => {
            tracing::error!("metrics: encoding failed: {e}");
            Ok(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "error collecting metrics\n",
            ))
        }
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
