//! The HTTP server: accepts on every listener at once and serves the API over HTTP/1.1.
//!
//! [`run`] takes listeners that are already bound and a shutdown future, so a test starts a
//! server in one line. On shutdown it stops accepting, lets in-flight requests finish within
//! [`ServerOptions::drain_timeout`], and returns.

mod listener;
mod metrics;
mod systemd;
pub mod tls;

pub use listener::{bind_hosts, ListenError, Listener, SystemdSockets};
pub use metrics::{bind_metrics, serve_metrics};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::api::Api;

/// Timeouts of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long a client may take to send the request headers.
    pub header_read_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// How long in-flight requests may run on after shutdown begins.
    pub drain_timeout: Duration,
    /// How long a request body may send nothing before the request fails and the connection
    /// is closed (a stalled upload holds nothing forever).
    pub body_idle_timeout: Duration,
    /// Until this holds `true`, only `/_ping` is answered and every other request waits
    /// (berthd serves its socket while live restore still reattaches containers); `None`:
    /// ready from the start.
    pub ready: Option<watch::Receiver<bool>>,
}

impl ServerOptions {
    /// The defaults, with the header and body timeouts shortened by the environment variables
    /// `BERTH_TEST_HEADER_READ_TIMEOUT` and `BERTH_TEST_BODY_IDLE_TIMEOUT` (seconds, may be
    /// fractional): knobs for tests, which cannot wait five minutes for a slow client.
    pub fn from_env() -> Self {
        let secs = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64)
        };
        let mut o = ServerOptions::default();
        if let Some(t) = secs("BERTH_TEST_HEADER_READ_TIMEOUT") {
            o.header_read_timeout = t;
        }
        if let Some(t) = secs("BERTH_TEST_BODY_IDLE_TIMEOUT") {
            o.body_idle_timeout = t;
        }
        o
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            // dockerd's ReadHeaderTimeout. hyper also applies it to idle keep-alive
            // connections; clients close theirs sooner (Go: 90 s), so none races our close.
            header_read_timeout: Duration::from_secs(300),
            tls_handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(15),
            body_idle_timeout: crate::api::body::DEFAULT_BODY_IDLE_TIMEOUT,
            ready: None,
        }
    }
}

/// Serve `api` on `listeners` until `shutdown` completes, then drain.
pub async fn run<F>(listeners: Vec<Listener>, api: Arc<Api>, shutdown: F, opts: ServerOptions)
where
    F: Future<Output = ()>,
{
    crate::api::body::set_body_idle_timeout(opts.body_idle_timeout);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection holds a sender; when all are gone, the drain is over.
    let (conn_tx, mut conn_rx) = mpsc::channel::<()>(1);
    let mut accepts = JoinSet::new();
    for l in listeners {
        accepts.spawn(accept_loop(
            l,
            api.clone(),
            stop_rx.clone(),
            conn_tx.clone(),
            opts.clone(),
        ));
    }
    drop(conn_tx);
    shutdown.await;
    tracing::info!("shutting down: no new connections; draining requests in flight");
    let _ = stop_tx.send(true);
    while accepts.join_next().await.is_some() {}
    if tokio::time::timeout(opts.drain_timeout, conn_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {:?}: closing them",
            opts.drain_timeout
        );
    }
}

async fn accept_loop(
    listener: Listener,
    api: Arc<Api>,
    mut stop: watch::Receiver<bool>,
    conn_tx: mpsc::Sender<()>,
    opts: ServerOptions,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut stop) => break,
        };
        match accepted {
            Ok(listener::Accepted::Unix(s)) => {
                tokio::spawn(serve_connection(
                    s,
                    api.clone(),
                    stop.clone(),
                    conn_tx.clone(),
                    opts.clone(),
                ));
            }
            Ok(listener::Accepted::Tcp(s, None)) => {
                let _ = s.set_nodelay(true);
                tokio::spawn(serve_connection(
                    s,
                    api.clone(),
                    stop.clone(),
                    conn_tx.clone(),
                    opts.clone(),
                ));
            }
            Ok(listener::Accepted::Tcp(s, Some(acceptor))) => {
                let _ = s.set_nodelay(true);
                let (api, stop, conn_tx, opts) =
                    (api.clone(), stop.clone(), conn_tx.clone(), opts.clone());
                tokio::spawn(async move {
                    let peer = s.peer_addr().ok();
                    match tokio::time::timeout(opts.tls_handshake_timeout, acceptor.accept(s)).await
                    {
                        Ok(Ok(tls)) => serve_connection(tls, api, stop, conn_tx, opts).await,
                        Ok(Err(e)) => tracing::info!("tls handshake with {peer:?} failed: {e}"),
                        Err(_) => tracing::info!("tls handshake with {peer:?} timed out"),
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept on {}: {e}", listener.describe());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    listener.close();
}

async fn serve_connection<I>(
    io: I,
    api: Arc<Api>,
    mut stop: watch::Receiver<bool>,
    _conn_tx: mpsc::Sender<()>,
    opts: ServerOptions,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ready = opts.ready.clone();
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        crate::util::mem::note_activity();
        let api = api.clone();
        let mut ready = ready.clone();
        async move {
            if let Some(r) = ready.as_mut() {
                if !is_ping(req.uri().path()) {
                    // A sender gone without saying ready: serve anyway.
                    let _ = r.wait_for(|ok| *ok).await;
                }
            }
            api.handle(req).await
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if !e.is_incomplete_message() {
            tracing::debug!("connection closed: {e}");
        }
    }
}

/// `/_ping` with or without a `/vX.Y` prefix: answered before the daemon is ready.
fn is_ping(path: &str) -> bool {
    crate::api::router::split_version(path).1 == "/_ping"
}

/// Resolves once shutdown has begun (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
