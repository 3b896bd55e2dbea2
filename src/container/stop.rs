//! Signals: `stop`, `kill`, `restart`, and Docker's signal names.

use std::sync::Arc;
use std::time::Duration;

use super::manager::{Container, ContainerManager};
use super::record::Status;
use super::ContainerError;
use crate::errors::{ErrorKind, Kinded};
use crate::runtime::RuntimeError;

/// Parse a signal as Docker accepts it: `SIGKILL`, `KILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, ContainerError> {
    use std::str::FromStr;
    let bad = || ContainerError::invalid(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| bad())
}

impl ContainerManager {
    pub(super) async fn signal(
        &self,
        c: &Container,
        sig: nix::sys::signal::Signal,
    ) -> Result<(), ContainerError> {
        match self.runtime.signal(&c.id, sig as i32).await {
            Ok(()) => Ok(()),
            Err(RuntimeError::Gone(_) | RuntimeError::NotRunning) => {
                Err(ContainerError::not_running(&c.id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /containers/{id}/stop`: `Ok(false)` when it was not running (304).
    pub async fn stop(
        self: &Arc<Self>,
        name: &str,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<bool, ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, signal, timeout).await
    }

    pub(super) async fn stop_locked(
        self: &Arc<Self>,
        c: &Arc<Container>,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<bool, ContainerError> {
        let r = c.record();
        if r.state.status == Status::Restarting {
            // Stopping a container that waits for its restart cancels the restart.
            let r = self.update(c, |r| {
                r.state.manually_stopped = true;
                r.state.status = Status::Exited;
                r.state.restart_pending = false;
            })?;
            // Followers of the logs end now.
            c.snapshot.send_modify(|s| s.running = false);
            self.publish(&r, "stop");
            return Ok(true);
        }
        if !r.state.status.is_running() {
            return Ok(false);
        }
        let sig = match signal
            .filter(|s| !s.is_empty())
            .or(r.config.stop_signal.clone())
        {
            Some(s) => parse_signal(&s)?,
            None => nix::sys::signal::Signal::SIGTERM,
        };
        let timeout = timeout.or(r.config.stop_timeout).unwrap_or(10);
        self.update(c, |r| r.state.manually_stopped = true)?;
        if timeout != 0 {
            self.events.publish(
                self.event(&r, "kill")
                    .attribute("signal", (sig as i32).to_string()),
            );
            let _ = self.signal(c, sig).await;
        }
        // As dockerd 28: a paused container is signalled, then thawed so that it can act.
        if r.state.status == Status::Paused {
            self.resume_after_signal(c).await;
        }
        let wait = if timeout < 0 {
            None
        } else {
            Some(Duration::from_secs(timeout as u64))
        };
        if timeout == 0 || !Self::wait_stopped(c, wait).await {
            self.events
                .publish(self.event(&r, "kill").attribute("signal", "9"));
            let _ = self.signal(c, nix::sys::signal::Signal::SIGKILL).await;
            Self::wait_stopped(c, None).await;
        }
        self.publish(&c.record(), "stop");
        Ok(true)
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(
        self: &Arc<Self>,
        name: &str,
        signal: Option<String>,
    ) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(&s)?,
            None => nix::sys::signal::Signal::SIGKILL,
        };
        let r = c.record();
        if !r.state.status.is_running() {
            return Err(ContainerError::conflict(format!(
                "Cannot kill container: {name}: Container {} is not running",
                r.id
            )));
        }
        let stop_sig = r
            .config
            .stop_signal
            .as_deref()
            .and_then(|s| parse_signal(s).ok())
            .unwrap_or(nix::sys::signal::Signal::SIGTERM);
        if sig == nix::sys::signal::Signal::SIGKILL || sig == stop_sig {
            self.update(&c, |r| r.state.manually_stopped = true)?;
        }
        self.events.publish(
            self.event(&r, "kill")
                .attribute("signal", (sig as i32).to_string()),
        );
        self.signal(&c, sig).await.map_err(|e| {
            if e.kind() == ErrorKind::Conflict {
                ContainerError::conflict(format!(
                    "Cannot kill container: {name}: Container {} is not running",
                    r.id
                ))
            } else {
                e
            }
        })?;
        if r.state.status == Status::Paused {
            self.resume_after_signal(&c).await;
        }
        if sig == nix::sys::signal::Signal::SIGKILL {
            // dockerd returns once a SIGKILLed container is gone.
            Self::wait_stopped(&c, Some(Duration::from_secs(10))).await;
        }
        Ok(())
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(
        self: &Arc<Self>,
        name: &str,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, signal, timeout).await?;
        self.update(&c, |r| r.state.manually_stopped = false)?;
        self.start_locked(&c).await?;
        self.publish(&c.record(), "restart");
        Ok(())
    }

    /// Thaw a paused container that was just signalled (so that it can act on the signal).
    pub(super) async fn resume_after_signal(self: &Arc<Self>, c: &Arc<Container>) {
        if self.runtime.resume(&c.id).await.is_ok() {
            if let Ok(r) = self.update(c, |r| {
                if r.state.status == Status::Paused {
                    r.state.status = Status::Running;
                }
            }) {
                self.health_sync(c);
                self.publish(&r, "unpause");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGKILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("15").unwrap(), Signal::SIGTERM);
        assert_eq!(
            parse_signal("NOPE").unwrap_err().to_string(),
            "Invalid signal: NOPE"
        );
    }
}
