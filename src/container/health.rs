//! Health checks (moby's `daemon/health.go`): a monitor task per running container with a
//! `Healthcheck`, each probe an exec in the container, and the `State.Health` it keeps.
//!
//! The monitor runs while the container runs unpaused; it is (re)started by start, restart,
//! unpause and live restore, and stopped by the exit and by pause. Probes take no container
//! lock: a probe that hangs delays only the next probe, never `stop`, `rm` or `inspect`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard_stubs::models::{ContainerConfig, ExecConfig, HealthConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::manager::{lock, Container, ContainerManager};
use super::record::Status;
use super::ContainerError;
use crate::util::time::{go_duration_string, parse_timestamp, rfc3339_nano};

/// The longest probe output kept; more is cut and marked with `...`.
const MAX_OUTPUT: usize = 4096;
/// How many probe results `State.Health.Log` keeps.
const MAX_LOG: usize = 5;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// How long starting the probe's exec may take before the probe counts as an error (moby's
/// separate start timeout: the time to start is not the probe's).
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// `State.Health` as Docker shows it (and as the record keeps it).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct HealthState {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    pub failing_streak: i64,
    /// The last results, oldest first.
    #[serde(default)]
    pub log: Vec<ProbeResult>,
}

/// One probe's result (`HealthcheckResult`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ProbeResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// What to run and how often: a container's `Healthcheck` with dockerd's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub cmd: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: i64,
}

fn or_default(ns: Option<i64>, default: Duration) -> Duration {
    match ns {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The probe of a container config: `CMD` runs its arguments, `CMD-SHELL` its text through
/// the container's shell (`Shell`, or `/bin/sh -c`); `NONE`, an empty test or an unknown kind
/// mean no health check (moby's `getProbe`).
pub fn probe_of(config: &ContainerConfig) -> Option<Probe> {
    let hc = config.healthcheck.as_ref()?;
    let test = hc.test.as_deref()?;
    let (kind, args) = test.split_first()?;
    let cmd = match kind.as_str() {
        "CMD" => args.to_vec(),
        "CMD-SHELL" => {
            let mut cmd = config
                .shell
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()]);
            cmd.extend(args.iter().cloned());
            cmd
        }
        _ => return None,
    };
    if args.is_empty() {
        return None;
    }
    Some(Probe {
        cmd,
        interval: or_default(hc.interval, DEFAULT_INTERVAL),
        timeout: or_default(hc.timeout, DEFAULT_TIMEOUT),
        start_period: or_default(hc.start_period, Duration::ZERO),
        start_interval: or_default(hc.start_interval, DEFAULT_START_INTERVAL),
        retries: hc.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES),
    })
}

/// dockerd's create-time checks of a `Healthcheck` (`validateHealthCheck`).
pub fn validate(hc: Option<&HealthConfig>) -> Result<(), ContainerError> {
    let Some(hc) = hc else { return Ok(()) };
    const MIN: i64 = 1_000_000; // 1ms
    let short = |v: Option<i64>| v.is_some_and(|v| v != 0 && v < MIN);
    for (name, v) in [
        ("Interval", hc.interval),
        ("Timeout", hc.timeout),
        ("StartPeriod", hc.start_period),
        ("StartInterval", hc.start_interval),
    ] {
        if short(v) {
            return Err(ContainerError::invalid(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if hc.retries.is_some_and(|r| r < 0) {
        return Err(ContainerError::invalid(
            "Retries in Healthcheck cannot be negative",
        ));
    }
    Ok(())
}

/// moby's `merge` of a user's `Healthcheck` with the image's: no user check takes the image's;
/// a user check without a test or with zero durations takes those from the image's.
pub fn merge(user: &mut Option<HealthConfig>, image: Option<HealthConfig>) {
    let Some(img) = image else { return };
    let Some(u) = user else {
        *user = Some(img);
        return;
    };
    if u.test.as_ref().is_none_or(|t| t.is_empty()) {
        u.test = img.test;
    }
    let zero = |v: Option<i64>| v.is_none_or(|v| v == 0);
    if zero(u.interval) {
        u.interval = img.interval;
    }
    if zero(u.timeout) {
        u.timeout = img.timeout;
    }
    if zero(u.start_period) {
        u.start_period = img.start_period;
    }
    if zero(u.start_interval) {
        u.start_interval = img.start_interval;
    }
    if zero(u.retries) {
        u.retries = img.retries;
    }
}

/// The health part of `docker ps`'s status: `healthy`, `unhealthy` or `health: starting`.
pub fn status_suffix(h: &HealthState) -> String {
    if h.status == STARTING {
        "health: starting".to_string()
    } else {
        h.status.clone()
    }
}

/// Probe output capped at [`MAX_OUTPUT`] bytes.
#[derive(Default)]
struct Output {
    buf: Vec<u8>,
    truncated: bool,
}

impl Output {
    fn push(&mut self, data: &[u8]) {
        let keep = MAX_OUTPUT.saturating_sub(self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..keep]);
        if keep < data.len() {
            self.truncated = true;
        }
    }

    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.buf).into_owned();
        if self.truncated {
            s.push_str("...");
        }
        s
    }
}

/// Ends a probe's exec if the probe is abandoned before it finished (its monitor stopped).
struct ProbeGuard {
    manager: Arc<ContainerManager>,
    container: String,
    exec: String,
    done: bool,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (m, c, e) = (
            self.manager.clone(),
            std::mem::take(&mut self.container),
            std::mem::take(&mut self.exec),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = m.runtime.signal_exec(&c, &e, libc::SIGKILL).await;
                let _ = m.exec_wait(&e, Duration::from_secs(10)).await;
                m.forget_exec(&e);
            });
        }
    }
}

impl ContainerManager {
    /// A container (re)started or was restored: its health starts over as `starting` and its
    /// monitor runs (moby's `initHealthMonitor`). Nothing for a container without a check.
    pub(super) fn health_init(self: &Arc<Self>, c: &Arc<Container>) {
        if c.with_record(|r| probe_of(&r.config)).is_none() {
            return;
        }
        lock(&c.health).take();
        {
            let mut r = c.record.write();
            let h = r.state.health.get_or_insert_with(HealthState::default);
            h.status = STARTING.to_string();
            h.failing_streak = 0;
        }
        self.health_sync(c);
    }

    /// Run the monitor exactly while the container runs unpaused (moby's
    /// `updateHealthMonitor`). A monitor that stops leaves the status `unhealthy`, as dockerd.
    pub(super) fn health_sync(self: &Arc<Self>, c: &Arc<Container>) {
        let (has, want) = c.with_record(|r| {
            (
                r.state.health.is_some(),
                r.state.status == Status::Running && probe_of(&r.config).is_some(),
            )
        });
        if !has {
            return;
        }
        let mut slot = lock(&c.health);
        if want {
            if slot.is_none() {
                let (tx, rx) = oneshot::channel();
                *slot = Some(tx);
                let generation = *lock(&c.generation);
                tokio::spawn(self.clone().health_monitor(c.clone(), rx, generation));
            }
        } else {
            drop(slot);
            self.health_stop(c);
        }
    }

    /// Stop the monitor, if one runs; the status is then `unhealthy`, as dockerd leaves it.
    pub(super) fn health_stop(&self, c: &Container) {
        if lock(&c.health).take().is_some() {
            if let Some(h) = c.record.write().state.health.as_mut() {
                h.status = UNHEALTHY.to_string();
            }
        }
    }

    /// The monitor of one run: probe, record, wait, until stopped.
    async fn health_monitor(
        self: Arc<Self>,
        c: Arc<Container>,
        mut stop: oneshot::Receiver<()>,
        generation: u64,
    ) {
        let started = c
            .with_record(|r| parse_timestamp(&r.state.started_at, SystemTime::now()))
            .unwrap_or_else(SystemTime::now);
        loop {
            let Some((probe, status)) = c.with_record(|r| {
                let status = r.state.health.as_ref().map(|h| h.status.clone());
                probe_of(&r.config).zip(status)
            }) else {
                return;
            };
            let in_start_period = started.elapsed().unwrap_or_default() < probe.start_period;
            let wait = if in_start_period && status == STARTING {
                probe.start_interval
            } else {
                probe.interval
            };
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if *lock(&c.generation) != generation {
                return;
            }
            let start = SystemTime::now();
            // Boxed, as the exit handling in `spawn_watcher`: the task lives as long as the
            // container runs, in one block of its future's largest size.
            let result = tokio::select! {
                _ = &mut stop => return,
                r = Box::pin(self.run_probe(&c, &probe)) => r,
            };
            if let Some(m) = self.metrics.get() {
                m.health_check(result.is_err());
            }
            let (exit_code, output) = result.unwrap_or_else(|e| (-1, e));
            // Stopped meanwhile: the result is not recorded (moby's `handleProbeResult`).
            if !matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
                return;
            }
            let result = ProbeResult {
                start: rfc3339_nano(start),
                end: rfc3339_nano(SystemTime::now()),
                exit_code,
                output,
            };
            self.health_record(&c, result, &probe, started, start);
        }
    }

    /// One probe: an exec of the check's command with the container's user, working
    /// directory and environment. `Ok((exit code, output))`, with -1 and dockerd's text for a
    /// probe killed at its timeout; `Err` when the probe could not run.
    async fn run_probe(
        self: &Arc<Self>,
        c: &Container,
        probe: &Probe,
    ) -> Result<(i64, String), String> {
        let cfg = ExecConfig {
            cmd: Some(probe.cmd.clone()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            ..Default::default()
        };
        let exec_id = self.exec_create(&c.id, cfg).map_err(|e| e.to_string())?;
        let mut guard = ProbeGuard {
            manager: self.clone(),
            container: c.id.clone(),
            exec: exec_id.clone(),
            done: false,
        };
        let started =
            tokio::time::timeout(START_TIMEOUT, self.exec_start(&exec_id, false, None)).await;
        let stream = match started {
            Err(_) => {
                return Err(format!(
                    "timed out starting health check for container {}",
                    c.id
                ))
            }
            Ok(Err(e)) => {
                guard.done = true;
                self.forget_exec(&exec_id);
                return Err(e.to_string());
            }
            Ok(Ok(s)) => s.stream,
        };
        let Some(stream) = stream else {
            return Err(format!("health check exec {exec_id} has no output stream"));
        };
        let (mut out, _stdin) = stream.split();
        let mut output = Output::default();
        let read = async {
            while let Some(chunk) = out.next(true).await {
                output.push(&chunk);
            }
        };
        let finished = tokio::time::timeout(probe.timeout, read).await.is_ok();
        if !finished {
            tracing::debug!("health check for container {} taking too long", c.id);
            let _ = self
                .runtime
                .signal_exec(&c.id, &exec_id, libc::SIGKILL)
                .await;
        }
        // The end of the output comes with the exec's exit; its code follows at once.
        let code = self.exec_wait(&exec_id, Duration::from_secs(10)).await;
        guard.done = code.is_some();
        if guard.done {
            self.forget_exec(&exec_id);
        }
        if !finished {
            let limit = go_duration_string(probe.timeout);
            let text = output.text();
            return Ok((
                -1,
                if text.is_empty() {
                    format!("Health check exceeded timeout ({limit})")
                } else {
                    format!("Health check exceeded timeout ({limit}): {text}")
                },
            ));
        }
        match code {
            Some(code) => Ok((code, output.text())),
            None => Err(format!(
                "healthcheck for container {} has no exit code",
                c.id
            )),
        }
    }

    /// Record a probe's result (moby's `handleProbeResult`): the log, the failing streak
    /// (failures in the start period before any success do not count) and the status, with
    /// a `health_status` event and a write of the record when the status changes.
    fn health_record(
        &self,
        c: &Container,
        result: ProbeResult,
        probe: &Probe,
        started: SystemTime,
        probe_start: SystemTime,
    ) {
        let changed = {
            let mut r = c.record.write();
            let Some(h) = r.state.health.as_mut() else {
                return;
            };
            let old = h.status.clone();
            if h.log.len() >= MAX_LOG {
                h.log.drain(..=h.log.len() - MAX_LOG);
            }
            let ok = result.exit_code == 0;
            h.log.push(result);
            if ok {
                h.failing_streak = 0;
                h.status = HEALTHY.to_string();
            } else {
                let in_start_period = h.status == STARTING
                    && probe_start.duration_since(started).unwrap_or_default() < probe.start_period;
                if !in_start_period {
                    h.failing_streak += 1;
                    if h.failing_streak >= probe.retries {
                        h.status = UNHEALTHY.to_string();
                    }
                }
            }
            (old != h.status).then(|| h.status.clone())
        };
        if let Some(status) = changed {
            match self.update(c, |_| {}) {
                Ok(r) => self.publish(&r, &format!("health_status: {status}")),
                Err(e) => tracing::warn!("record health of {}: {e}", c.id),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(test: &[&str]) -> ContainerConfig {
        ContainerConfig {
            healthcheck: Some(HealthConfig {
                test: Some(test.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn probes_follow_moby() {
        let p = probe_of(&config(&["CMD-SHELL", "exit 1"])).unwrap();
        assert_eq!(p.cmd, ["/bin/sh", "-c", "exit 1"]);
        assert_eq!(p.interval, Duration::from_secs(30));
        assert_eq!(p.timeout, Duration::from_secs(30));
        assert_eq!(p.start_interval, Duration::from_secs(5));
        assert_eq!(p.retries, 3);
        assert_eq!(p.start_period, Duration::ZERO);
        assert_eq!(
            probe_of(&config(&["CMD", "true", "x"])).unwrap().cmd,
            ["true", "x"]
        );
        assert!(probe_of(&config(&["NONE"])).is_none());
        assert!(probe_of(&config(&[])).is_none());
        assert!(probe_of(&config(&["CMD"])).is_none());
        assert!(probe_of(&config(&["BOGUS", "x"])).is_none());
        let mut c = config(&["CMD-SHELL", "true"]);
        c.shell = Some(vec!["/bin/ash".into(), "-ec".into()]);
        assert_eq!(probe_of(&c).unwrap().cmd, ["/bin/ash", "-ec", "true"]);
    }

    #[test]
    fn validation_texts() {
        let hc = |f: fn(&mut HealthConfig)| {
            let mut h = HealthConfig::default();
            f(&mut h);
            validate(Some(&h)).map_err(|e| e.to_string())
        };
        assert!(hc(|_| {}).is_ok());
        assert_eq!(
            hc(|h| h.interval = Some(1000)).unwrap_err(),
            "Interval in Healthcheck cannot be less than 1ms"
        );
        assert_eq!(
            hc(|h| h.retries = Some(-1)).unwrap_err(),
            "Retries in Healthcheck cannot be negative"
        );
        assert_eq!(
            hc(|h| h.start_interval = Some(5)).unwrap_err(),
            "StartInterval in Healthcheck cannot be less than 1ms"
        );
    }

    #[test]
    fn merge_with_image() {
        let img = HealthConfig {
            test: Some(vec!["CMD".into(), "true".into()]),
            interval: Some(5),
            retries: Some(7),
            ..Default::default()
        };
        let mut none = None;
        merge(&mut none, Some(img.clone()));
        assert_eq!(none, Some(img.clone()));
        let mut user = Some(HealthConfig {
            interval: Some(9),
            ..Default::default()
        });
        merge(&mut user, Some(img.clone()));
        let u = user.unwrap();
        assert_eq!(u.test, img.test);
        assert_eq!(u.interval, Some(9));
        assert_eq!(u.retries, Some(7));
        let mut off = Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        });
        merge(&mut off, Some(img));
        assert!(probe_of(&ContainerConfig {
            healthcheck: off,
            ..Default::default()
        })
        .is_none());
    }

    #[test]
    fn output_is_capped() {
        let mut o = Output::default();
        o.push(&[b'a'; 4000]);
        o.push(&[b'b'; 200]);
        let t = o.text();
        assert_eq!(t.len(), 4096 + 3);
        assert!(t.ends_with("bb..."));
    }
}
