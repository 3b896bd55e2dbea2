//! Signals: `stop`, `kill`, `restart`, and Docker's signal names.

use std::sync::Arc;
use std::time::Duration;

use super::manager::{Container, ContainerManager};
use super::record::Status;
use super::ContainerError;
use crate::errors::{ErrorKind, Kinded};
use crate::runtime::RuntimeError;

/// The real-time signals as Docker numbers them on Linux (moby/sys/signal's table).
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// moby/sys/signal's `ParseSignal`: any number but 0, or a name of its Linux table with or
/// without `SIG`, in any case: `SIGKILL`, `kill`, `9`, the aliases `IOT`, `POLL` and `CLD`,
/// `RTMIN`, `RTMIN+1` … `RTMIN+15`, `RTMAX-14` … `RTMAX-1`, `RTMAX`.
pub fn parse_signal(s: &str) -> Result<i32, ContainerError> {
    use std::str::FromStr;
    let bad = || ContainerError::invalid(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return if n == 0 { Err(bad()) } else { Ok(n) };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let rt = |prefix: &str, max: i32| {
        let n: i32 = name.strip_prefix(prefix)?.parse().ok()?;
        ((1..=max).contains(&n) && format!("{prefix}{n}") == name).then_some(n)
    };
    match name {
        "IOT" => Ok(libc::SIGIOT),
        "POLL" => Ok(libc::SIGPOLL),
        "CLD" => Ok(libc::SIGCHLD),
        "RTMIN" => Ok(SIGRTMIN),
        "RTMAX" => Ok(SIGRTMAX),
        _ => {
            if let Some(n) = rt("RTMIN+", 15) {
                Ok(SIGRTMIN + n)
            } else if let Some(n) = rt("RTMAX-", 14) {
                Ok(SIGRTMAX - n)
            } else {
                nix::sys::signal::Signal::from_str(&format!("SIG{name}"))
                    .map(|sig| sig as i32)
                    .map_err(|_| bad())
            }
        }
    }
}

/// moby's `ValidSignalForPlatform`: a number its Linux table names (1–31, 34–64).
pub fn valid_signal(n: i32) -> bool {
    (1..=31).contains(&n) || (SIGRTMIN..=SIGRTMAX).contains(&n)
}

impl ContainerManager {
    pub(super) async fn signal(&self, c: &Container, sig: i32) -> Result<(), ContainerError> {
        match self.runtime.signal(&c.id, sig).await {
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
        // As moby's `containerStop`: the request's signal must parse; the container's own
        // (checked at create, but an image's is not) falls back to SIGTERM when it does not.
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(&s)?,
            None => r
                .config
                .stop_signal
                .as_deref()
                .and_then(|s| parse_signal(s).ok())
                .unwrap_or(libc::SIGTERM),
        };
        let timeout = timeout.or(r.config.stop_timeout).unwrap_or(10);
        self.update(c, |r| r.state.manually_stopped = true)?;
        let mut wait = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
        if timeout != 0 {
            self.events
                .publish(self.event(&r, "kill").attribute("signal", sig.to_string()));
            // A signal the kernel refuses (`stop -s 99`) is moby's failed kill: SIGKILL after
            // two seconds instead of the timeout.
            let sent = valid_signal(sig) && self.signal(c, sig).await.is_ok();
            if !sent {
                wait = Some(Duration::from_secs(2));
            }
        }
        // As dockerd 28: a paused container is signalled, then thawed so that it can act.
        if r.state.status == Status::Paused {
            self.resume_after_signal(c).await;
        }
        if timeout == 0 || !Self::wait_stopped(c, wait).await {
            self.events
                .publish(self.event(&r, "kill").attribute("signal", "9"));
            let _ = self.signal(c, libc::SIGKILL).await;
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
        // moby's router prefixes every failure of a kill with the name the client gave.
        let prefixed = |e: ContainerError| {
            ContainerError::new(e.kind(), format!("Cannot kill container: {name}: {e}"))
        };
        let c = self.get(name).map_err(prefixed)?;
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(&s).map_err(prefixed)?,
            None => libc::SIGKILL,
        };
        if !valid_signal(sig) {
            return Err(prefixed(ContainerError::invalid(format!(
                "the linux daemon does not support signal {sig}"
            ))));
        }
        let r = c.record();
        if !r.state.status.is_running() {
            return Err(prefixed(ContainerError::not_running(&r.id)));
        }
        let stop_sig = r
            .config
            .stop_signal
            .as_deref()
            .and_then(|s| parse_signal(s).ok())
            .unwrap_or(libc::SIGTERM);
        if sig == libc::SIGKILL || sig == stop_sig {
            self.update(&c, |r| r.state.manually_stopped = true)?;
        }
        self.events
            .publish(self.event(&r, "kill").attribute("signal", sig.to_string()));
        self.signal(&c, sig).await.map_err(|e| {
            if e.kind() == ErrorKind::Conflict {
                prefixed(ContainerError::not_running(&r.id))
            } else {
                prefixed(e)
            }
        })?;
        if r.state.status == Status::Paused {
            self.resume_after_signal(&c).await;
        }
        if sig == libc::SIGKILL {
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
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("usr1").unwrap(), libc::SIGUSR1);
        assert_eq!(parse_signal("15").unwrap(), 15);
        assert_eq!(parse_signal("99").unwrap(), 99);
        assert_eq!(parse_signal("IOT").unwrap(), 6);
        assert_eq!(parse_signal("sigpoll").unwrap(), 29);
        assert_eq!(parse_signal("CLD").unwrap(), 17);
        assert_eq!(parse_signal("SIGRTMIN").unwrap(), 34);
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), 37);
        assert_eq!(parse_signal("rtmin+15").unwrap(), 49);
        assert_eq!(parse_signal("RTMAX-14").unwrap(), 50);
        assert_eq!(parse_signal("RTMAX-1").unwrap(), 63);
        assert_eq!(parse_signal("SIGRTMAX").unwrap(), 64);
        for bad in [
            "NOPE", "0", "RTMIN+16", "RTMIN+0", "RTMIN+01", "RTMAX-15", "RTMIN+", "",
        ] {
            assert_eq!(
                parse_signal(bad).unwrap_err().to_string(),
                format!("Invalid signal: {bad}")
            );
        }
        assert!(valid_signal(31) && valid_signal(34) && valid_signal(64));
        assert!(!valid_signal(32) && !valid_signal(33) && !valid_signal(65) && !valid_signal(-5));
    }
}
