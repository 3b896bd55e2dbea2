//! berthd: parse options, bind listeners, serve until SIGTERM/SIGINT, reload on SIGHUP.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

use berth::api::Api;
use berth::config::{Config, Flags, LogLevel};
use berth::daemon::{Daemon, LogControl};
use berth::metrics::MetricsSource;
use berth::pidfile::PidFile;
use berth::server::{self, ServerOptions, SystemdSockets};

fn main() -> ExitCode {
    // A container's supervisor is this binary under a hidden subcommand; it must stay
    // single-threaded, so it is dispatched before anything else happens.
    let args: Vec<String> = std::env::args().collect();
    // libcontainer runs `newuidmap`/`newgidmap` for maps of several ranges: in a supervisor,
    // links to this binary (`runtime::idmap::provide_map_helpers`).
    let called = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if berth::runtime::idmap::MAP_HELPERS.contains(&called) {
        let code = berth::runtime::idmap::map_helper_main(called, &args[1..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    if args.get(1).map(String::as_str) == Some(berth::runtime::supervisor::SUBCOMMAND) {
        let code = berth::runtime::supervisor::main(&args[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    if args.get(1).map(String::as_str) == Some(berth::runtime::supervisor::SPARE_SUBCOMMAND) {
        let code = berth::runtime::supervisor::spare_main(&args[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    // `docker cp` of a container that is not running: a single-threaded helper that builds a
    // private mount namespace.
    if args.get(1).map(String::as_str) == Some(berth::container::archive_helper::SUBCOMMAND) {
        let code = berth::container::archive_helper::main(&args[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    // A container's port proxy (dockerd's docker-proxy), handed its bound sockets.
    if args.get(1).map(String::as_str) == Some(berth::network::proxy::SUBCOMMAND) {
        let code = berth::network::proxy::main(&args[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    // Before any thread exists: take systemd's sockets and clear its environment, and make new
    // files (the API sockets before their chmod) private to root, as dockerd does.
    let activated = SystemdSockets::from_env();
    berth::util::mem::tune_allocator();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let flags = match Flags::try_parse() {
        Ok(f) => f,
        Err(e) => {
            use clap::error::ErrorKind as K;
            if matches!(
                e.kind(),
                K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("berthd: {}", first.trim_start_matches("error: "));
            return ExitCode::FAILURE;
        }
    };
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_control = init_logging(config.effective_log_level());
    if !nix::unistd::geteuid().is_root() {
        eprintln!("berthd: berthd needs to be started with root privileges");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Once the daemon is idle, each worker empties its allocator cache, the blocking pool's
        // threads have ended before the trim, and glibc keeps fewer of their stacks (`util::mem`).
        .on_thread_park(berth::util::mem::worker_parked)
        .thread_stack_size(berth::util::mem::THREAD_STACK)
        .thread_keep_alive(berth::util::mem::BLOCKING_KEEP_ALIVE)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(flags, config, log_control, activated));
    // Connections still open after the drain bound are cut here.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("berthd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    flags: Flags,
    config: Config,
    log_control: LogControl,
    activated: Option<SystemdSockets>,
) -> Result<(), String> {
    tracing::info!("starting berthd {}", berth::version::VERSION);
    // Signals first: a SIGTERM during start-up must still run the clean-up below.
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("install SIGTERM handler: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("install SIGINT handler: {e}"))?;
    let mut hup =
        signal(SignalKind::hangup()).map_err(|e| format!("install SIGHUP handler: {e}"))?;
    let _pidfile = PidFile::create(&config.pidfile).map_err(|e| e.to_string())?;
    // Lock the data root before binding, so that a refused start leaves no socket file behind.
    let daemon = Daemon::new(flags, config.clone(), Some(log_control))
        .await
        .map_err(|e| e.to_string())?;
    // Before the API sockets: a refused metrics address leaves no socket file behind.
    let metrics_listener = match &config.metrics_addr {
        Some(addr) => Some(
            server::bind_metrics(addr, &config)
                .await
                .map_err(|e| format!("failed to start metrics server: {e}"))?,
        ),
        None => None,
    };
    let listeners = server::bind_hosts(&config, activated)
        .await
        .map_err(|e| format!("failed to load listeners: {e}"))?;
    for l in &listeners {
        tracing::info!("API listen on {}", l.describe());
    }
    // Free heap pages go back to the kernel once the daemon has been quiet for a while.
    tokio::spawn(berth::util::mem::trim_when_idle(
        std::time::Duration::from_secs(5),
    ));
    let (metrics_stop, mut metrics_stopped) = tokio::sync::watch::channel(false);
    let metrics_task = metrics_listener.map(|l| {
        tracing::info!("metrics API listening on {}", l.describe());
        let source: Arc<dyn MetricsSource> = daemon.clone();
        tokio::spawn(server::serve_metrics(
            l,
            daemon.metrics().clone(),
            source,
            async move {
                let _ = metrics_stopped.wait_for(|s| *s).await;
            },
            ServerOptions::default(),
        ))
    });
    spawn_reloader(daemon.clone(), async move {
        hup.recv().await;
    });
    // The sockets answer `/_ping` at once; every other request waits for live restore (the
    // containers loaded and reattached), as it would have before the socket was bound.
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    {
        let daemon = daemon.clone();
        tokio::spawn(async move {
            daemon.restore().await;
            let _ = ready_tx.send(true);
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            tracing::info!("daemon has completed initialization");
        });
    }
    let bus = daemon.events().clone();
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
        // Endless event streams end now instead of holding the drain up.
        bus.close();
        let _ = metrics_stop.send(true);
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    };
    let opts = ServerOptions {
        ready: Some(ready_rx),
        ..ServerOptions::from_env()
    };
    server::run(listeners, Api::new(daemon.backends()), shutdown, opts).await;
    daemon.settle().await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    tracing::info!("daemon shutdown complete");
    Ok(())
}

/// Reload the config file on every SIGHUP.
fn spawn_reloader<F>(daemon: Arc<Daemon>, first: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        first.await;
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("install SIGHUP handler: {e}");
                return;
            }
        };
        loop {
            tracing::info!("got signal to reload configuration");
            match daemon.reload() {
                Ok(applied) => tracing::info!(
                    "reloaded configuration: {}",
                    if applied.is_empty() {
                        "no changes".to_string()
                    } else {
                        applied.join(", ")
                    }
                ),
                Err(e) => tracing::error!("error reloading configuration: {e}"),
            }
            if hup.recv().await.is_none() {
                return;
            }
        }
    });
}

/// Log to stderr through `tracing`, with a level that SIGHUP can change.
fn init_logging(level: LogLevel) -> LogControl {
    let filter = |l: LogLevel| EnvFilter::new(format!("warn,berth={0},berthd={0}", l.directive()));
    let (layer, handle) = reload::Layer::new(filter(level));
    tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    Box::new(move |l| {
        let _ = handle.modify(|f| *f = filter(l));
    })
}
