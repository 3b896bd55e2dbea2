//! `docker logs`: where a container's log is and how to read it, following it while the
//! container runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::attach::stream_number;
use super::manager::{Container, ContainerManager};
use super::record::Status;
use super::ContainerError;
use crate::errors::ErrorKind;
use crate::logger::format_timestamp;
use crate::logger::jsonfile::{self, LogEntry, ReadOptions};
use crate::util::io::ByteReceiver;
use crate::util::stdcopy;
use bytes::Bytes;

/// `GET /containers/{id}/logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub tail: Option<usize>,
    /// Prefix every line with its RFC 3339 time.
    pub timestamps: bool,
    /// Prefix every line with its attributes and a space (`--details`): `k=v` pairs, sorted,
    /// query-escaped and comma-joined (the space alone for a line without attributes).
    pub details: bool,
}

impl ContainerManager {
    /// Whether the container has a TTY, and its log path, for `docker logs`.
    fn log_source(&self, name: &str) -> Result<(Arc<Container>, bool, PathBuf), ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        if !r.log_config()?.readable() {
            return Err(ContainerError::new(
                ErrorKind::NotImplemented,
                "configured logging driver does not support reading".to_string(),
            ));
        }
        Ok((
            c.clone(),
            r.config.tty.unwrap_or(false),
            PathBuf::from(r.log_path),
        ))
    }

    /// `GET /containers/{id}/logs`: whether the container has a TTY, and the log as a client
    /// gets it: stdcopy frames without a TTY, raw lines with one; with `follow`, until the
    /// container stops or the client goes.
    pub async fn logs(
        self: &Arc<Self>,
        name: &str,
        opts: LogsOptions,
    ) -> Result<(bool, ByteReceiver), ContainerError> {
        let timestamps = opts.timestamps;
        let details = opts.details;
        let (tty, mut entries) = self.log_entries(name, opts).await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                // A client that went away ends the follow even while no line comes.
                let e = tokio::select! {
                    e = entries.recv() => match e {
                        Some(e) => e,
                        None => break,
                    },
                    _ = tx.closed() => break,
                };
                let mut payload = Vec::with_capacity(e.line.len() + 40);
                if timestamps {
                    payload.extend_from_slice(format_timestamp(e.time).as_bytes());
                    payload.push(b' ');
                }
                if details {
                    crate::logger::attrs::details_prefix(&e.attrs, &mut payload);
                }
                payload.extend_from_slice(&e.line);
                let chunk = if tty {
                    payload
                } else {
                    stdcopy::frame(stream_number(e.stream), &payload)
                };
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return;
                }
            }
        });
        Ok((tty, rx))
    }

    /// The log's entries on a channel; with `follow`, until the container stops or the
    /// receiver goes.
    pub(super) async fn log_entries(
        self: &Arc<Self>,
        name: &str,
        opts: LogsOptions,
    ) -> Result<(bool, mpsc::Receiver<LogEntry>), ContainerError> {
        let (c, tty, path) = self.log_source(name)?;
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
