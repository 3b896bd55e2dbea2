//! `docker logs`: where a container's log is and how to read it, following it while the
//! container runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::manager::{Container, ContainerManager};
use super::record::Status;
use super::ContainerError;
use crate::errors::ErrorKind;
use crate::logger::jsonfile::{self, LogEntry, ReadOptions};
use crate::logger::LogConfig;

/// `GET /containers/{id}/logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub tail: Option<usize>,
}

impl ContainerManager {
    /// Whether the container has a TTY, and its log config and path, for `docker logs`.
    pub fn log_source(
        &self,
        name: &str,
    ) -> Result<(Arc<Container>, bool, LogConfig, PathBuf), ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        let lc = r.host_config.log_config.clone().unwrap_or_default();
        let cfg = LogConfig::from_docker(
            lc.typ.as_deref().unwrap_or("json-file"),
            &lc.config.unwrap_or_default(),
        )
        .map_err(|e| ContainerError::invalid(e.to_string()))?;
        if !cfg.readable() {
            return Err(ContainerError::new(
                ErrorKind::NotImplemented,
                "configured logging driver does not support reading".to_string(),
            ));
        }
        Ok((
            c.clone(),
            r.config.tty.unwrap_or(false),
            cfg,
            PathBuf::from(r.log_path),
        ))
    }

    /// `GET /containers/{id}/logs`: entries on a channel; with `follow`, until the container
    /// stops or the receiver goes.
    pub async fn logs(
        self: &Arc<Self>,
        name: &str,
        opts: LogsOptions,
    ) -> Result<(bool, mpsc::Receiver<LogEntry>), ContainerError> {
        let (c, tty, _cfg, path) = self.log_source(name)?;
        let ropts = ReadOptions {
            stdout: opts.stdout,
            stderr: opts.stderr,
            since: opts.since,
            until: opts.until,
            tail: opts.tail,
        };
        let p = path.clone();
        let (entries, follower) =
            tokio::task::spawn_blocking(move || jsonfile::read_and_follow(&p, &ropts))
                .await
                .map_err(|e| ContainerError::internal(format!("logs task: {e}")))?
                .map_err(|e| ContainerError::io(format!("read log {}", path.display()), e))?;
        let (tx, rx) = mpsc::channel(256);
        let mut rx_state = c.subscribe();
        let follow = opts.follow && (c.status().is_running() || c.status() == Status::Restarting);
        tokio::spawn(async move {
            for e in entries {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            let mut follower = follower;
            let mut last_round = false;
            loop {
                let got = match follower.poll() {
                    Ok(v) => v,
                    Err(_) => return,
                };
                for e in got {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
                if last_round || follower.finished() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = tx.closed() => return,
                    changed = rx_state.changed() => {
                        let s = rx_state.borrow().clone();
                        if changed.is_err() || (!s.running) {
                            // One more read for what was written before the exit.
                            last_round = true;
                        }
                    }
                }
            }
        });
        Ok((tty, rx))
    }
}
