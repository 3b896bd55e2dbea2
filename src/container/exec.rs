//! `docker exec`: exec records (in memory, as dockerd keeps them) and starting them through the
//! container's supervisor, which runs libcontainer's tenant builder.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ProcessConfig};
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::manager::{lock, ContainerManager};
use super::record::Status;
use super::ContainerError;
use crate::errors::{ErrorKind, Kinded};
use crate::runtime::client;
use crate::runtime::proto::Request;
use crate::runtime::spec;
use crate::util::rand::random_hex;

/// One exec instance.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub started: bool,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
    /// When it ended (records are collected a while after).
    pub finished: Option<std::time::Instant>,
}

/// An exec record and the channel that tells its end.
pub struct Exec {
    pub record: std::sync::Mutex<ExecRecord>,
    pub done: watch::Sender<Option<i64>>,
}

impl Exec {
    pub fn snapshot(&self) -> ExecRecord {
        lock(&self.record).clone()
    }
}

/// What `POST /exec/{id}/start` returns: whether the exec has a TTY, and the stream to pump.
pub struct ExecStream {
    pub tty: bool,
    pub stdin: bool,
    pub stream: Option<UnixStream>,
}

fn cmd_text(cfg: &ExecConfig) -> String {
    cfg.cmd.clone().unwrap_or_default().join(" ")
}

impl ContainerManager {
    fn exec_get(&self, id: &str) -> Result<Arc<Exec>, ContainerError> {
        lock(&self.execs).get(id).cloned().ok_or_else(|| {
            ContainerError::new(ErrorKind::NotFound, format!("No such exec instance: {id}"))
        })
    }

    /// The IDs of a container's exec instances (`ExecIDs` in inspect).
    pub fn exec_ids(&self, container_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.execs)
            .values()
            .map(|e| e.snapshot())
            .filter(|r| r.container_id == container_id)
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    }

    /// Records of execs that ended more than five minutes ago go (dockerd's exec GC).
    fn collect_execs(&self, container_id: &str) {
        const KEEP: Duration = Duration::from_secs(300);
        lock(&self.execs).retain(|_, e| {
            let r = e.snapshot();
            r.container_id != container_id || r.finished.is_none_or(|t| t.elapsed() < KEEP)
        });
    }

    /// The container ended: its running execs ended with it (137), their records stay until
    /// the container starts again or goes, so that clients can still inspect them.
    pub(super) fn finish_execs(&self, container_id: &str) {
        let running: Vec<String> = lock(&self.execs)
            .values()
            .map(|e| e.snapshot())
            .filter(|r| r.container_id == container_id && r.exit_code.is_none())
            .map(|r| r.id)
            .collect();
        for id in running {
            self.exec_finished(&id, 137);
        }
    }

    /// Forget the exec records of a container that starts again or goes.
    pub(super) fn drop_execs(&self, container_id: &str) {
        let mut execs = lock(&self.execs);
        execs.retain(|_, e| {
            let r = e.snapshot();
            if r.container_id == container_id {
                e.done.send_modify(|d| {
                    if d.is_none() {
                        *d = Some(r.exit_code.unwrap_or(137));
                    }
                });
                false
            } else {
                true
            }
        });
    }

    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, name: &str, cfg: ExecConfig) -> Result<String, ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        match r.state.status {
            Status::Paused => {
                return Err(ContainerError::conflict(format!(
                    "Container {} is paused, unpause the container before exec",
                    r.id
                )))
            }
            Status::Running => {}
            _ => return Err(ContainerError::not_running(&r.id)),
        }
        if cfg.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(ContainerError::invalid("No exec command specified"));
        }
        self.collect_execs(&r.id);
        let id = random_hex(64);
        let record = ExecRecord {
            id: id.clone(),
            container_id: r.id.clone(),
            config: cfg.clone(),
            started: false,
            running: false,
            exit_code: None,
            pid: 0,
            finished: None,
        };
        lock(&self.execs).insert(
            id.clone(),
            Arc::new(Exec {
                record: std::sync::Mutex::new(record),
                done: watch::channel(None).0,
            }),
        );
        self.events_bus().publish(
            self.event_for(&r, &format!("exec_create: {}", cmd_text(&cfg)))
                .attribute("execID", id.clone()),
        );
        Ok(id)
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, id: &str) -> Result<ExecInspectResponse, ContainerError> {
        let r = self.exec_get(id)?.snapshot();
        let cmd = r.config.cmd.clone().unwrap_or_default();
        Ok(ExecInspectResponse {
            can_remove: Some(false),
            detach_keys: Some(r.config.detach_keys.clone().unwrap_or_default()),
            id: Some(r.id.clone()),
            running: Some(r.running),
            exit_code: r.exit_code,
            process_config: Some(ProcessConfig {
                privileged: Some(r.config.privileged.unwrap_or(false)),
                user: Some(r.config.user.clone().unwrap_or_default()),
                tty: Some(r.config.tty.unwrap_or(false)),
                entrypoint: cmd.first().cloned(),
                arguments: Some(cmd.iter().skip(1).cloned().collect()),
            }),
            open_stdin: Some(r.config.attach_stdin.unwrap_or(false)),
            open_stderr: Some(r.config.attach_stderr.unwrap_or(false)),
            open_stdout: Some(r.config.attach_stdout.unwrap_or(false)),
            container_id: Some(r.container_id.clone()),
            pid: Some(r.pid),
        })
    }

    /// `POST /exec/{id}/resize`.
    pub async fn exec_resize(
        &self,
        id: &str,
        height: u16,
        width: u16,
    ) -> Result<(), ContainerError> {
        // The CLI resizes right after the hijack: give the start a moment (dockerd waits too).
        let exec = self.exec_get(id)?;
        for _ in 0..200 {
            let r = exec.snapshot();
            if r.pid != 0 || r.exit_code.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = exec.snapshot();
        if !r.running {
            return Err(ContainerError::conflict(format!(
                "Exec {id} is not running"
            )));
        }
        client::request_ok(
            &self.state_dir(&r.container_id),
            Request::Resize {
                height,
                width,
                exec: Some(id.to_string()),
            },
        )
        .await?;
        Ok(())
    }

    /// Resolves to the exit code once the exec has ended (at most `timeout`).
    pub async fn exec_wait(&self, id: &str, timeout: Duration) -> Option<i64> {
        let exec = self.exec_get(id).ok()?;
        let mut rx = exec.done.subscribe();
        let wait = async {
            loop {
                if let Some(code) = *rx.borrow_and_update() {
                    return Some(code);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// `POST /exec/{id}/start`: start the process; the stream carries its output frames
    /// unless `detach`.
    pub async fn exec_start(
        self: &Arc<Self>,
        id: &str,
        detach: bool,
        tty_override: Option<bool>,
        console_size: Option<[u16; 2]>,
    ) -> Result<ExecStream, ContainerError> {
        let exec = self.exec_get(id)?;
        let (cfg, container_id) = {
            let mut r = lock(&exec.record);
            if r.running || (r.started && r.exit_code.is_none()) {
                return Err(ContainerError::conflict(format!(
                    "Error: Exec command {id} is already running"
                )));
            }
            if r.exit_code.is_some() {
                return Err(ContainerError::conflict(format!(
                    "Error: Exec command {id} has already run"
                )));
            }
            r.started = true;
            // Running from now on: the exit may be reported before the start's reply is.
            r.running = true;
            (r.config.clone(), r.container_id.clone())
        };
        let fail = |e: ContainerError| {
            self.exec_finished(id, 126);
            e
        };
        let c = self.get(&container_id).map_err(fail)?;
        let rec = c.record();
        if rec.state.status == Status::Paused {
            return Err(fail(ContainerError::conflict(format!(
                "Container {container_id} is paused, unpause the container before exec"
            ))));
        }
        if rec.state.status != Status::Running {
            return Err(fail(ContainerError::not_running(&container_id)));
        }
        let tty = tty_override.unwrap_or(false) || cfg.tty.unwrap_or(false);
        let stdin = cfg.attach_stdin.unwrap_or(false);
        let (process, add_caps) = {
            let this = self.clone();
            let rec = rec.clone();
            let cfg = cfg.clone();
            tokio::task::spawn_blocking(move || this.exec_process(&rec, &cfg, tty))
                .await
                .map_err(|e| ContainerError::internal(format!("exec task: {e}")))
                .and_then(|r| r)
                .map_err(fail)?
        };
        let state_dir = self.state_dir(&container_id);
        let req = Request::Exec {
            exec_id: id.to_string(),
            process,
            tty,
            stdin,
            attach: !detach,
            console_size,
            add_caps,
        };
        let started = client::exec(&state_dir, req).await;
        let (reply, stream) = match started {
            Ok(x) => x,
            Err(e) => {
                let code = if e.exit_code != 0 {
                    e.exit_code as i64
                } else {
                    126
                };
                self.exec_finished(id, code);
                let message = if e.exit_code != 0 {
                    format!("OCI runtime exec failed: exec failed: unable to start container process: {e}: unknown")
                } else {
                    format!("OCI runtime exec failed: {e}: unknown")
                };
                return Err(ContainerError::new(e.kind(), message));
            }
        };
        {
            let mut r = lock(&exec.record);
            if r.exit_code.is_none() {
                r.pid = reply.pid as i64;
            }
        }
        self.events_bus().publish(
            self.event_for(&rec, &format!("exec_start: {}", cmd_text(&cfg)))
                .attribute("execID", id.to_string()),
        );
        Ok(ExecStream {
            tty,
            stdin,
            stream: if detach { None } else { Some(stream) },
        })
    }

    /// The OCI process of an exec, plus the capabilities added only to load seccomp.
    fn exec_process(
        &self,
        r: &super::record::Record,
        cfg: &ExecConfig,
        tty: bool,
    ) -> Result<(serde_json::Value, Vec<String>), ContainerError> {
        let inputs = self.spec_inputs(r);
        let opts = inputs.options(r, [0; 4].map(|_| spec::Namespace::Host), None);
        let privileged =
            cfg.privileged.unwrap_or(false) || r.host_config.privileged.unwrap_or(false);
        let process = spec::exec_process(
            &opts,
            cfg.cmd.as_deref().unwrap_or(&[]),
            cfg.env.as_deref().unwrap_or(&[]),
            cfg.user.as_deref().unwrap_or(""),
            cfg.working_dir.as_deref().unwrap_or(""),
            tty,
            privileged,
        )?;
        let mut value = serde_json::to_value(&process)
            .map_err(|e| ContainerError::internal(format!("encode exec process: {e}")))?;
        // The container's seccomp profile is loaded by the exec'd process itself (libcontainer's
        // tenant path does not): it needs CAP_SYS_ADMIN for that, and CAP_SETPCAP to drop it
        // again from the bounding set.
        let mut added = Vec::new();
        let has_seccomp = self.has_seccomp(&r.id);
        if has_seccomp {
            if let Some(caps) = value
                .get_mut("capabilities")
                .and_then(|c| c.as_object_mut())
            {
                for cap in ["CAP_SYS_ADMIN", "CAP_SETPCAP"] {
                    let present = caps
                        .get("bounding")
                        .and_then(|b| b.as_array())
                        .is_some_and(|b| b.iter().any(|x| x == cap));
                    if present {
                        continue;
                    }
                    added.push(cap.to_string());
                    for set in ["bounding", "effective", "permitted"] {
                        let list = caps
                            .entry(set)
                            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                        if let Some(a) = list.as_array_mut() {
                            a.push(serde_json::Value::String(cap.to_string()));
                        }
                    }
                }
            }
        }
        Ok((value, added))
    }

    /// Record an exec's exit (from the supervisor's event or a failed start).
    pub(super) fn exec_finished(&self, exec_id: &str, code: i64) {
        let Ok(exec) = self.exec_get(exec_id) else {
            return;
        };
        let first = {
            let mut r = lock(&exec.record);
            let first = r.exit_code.is_none();
            if first {
                r.running = false;
                r.exit_code = Some(code);
                r.finished = Some(std::time::Instant::now());
            }
            first
        };
        exec.done.send_modify(|d| *d = Some(code));
        if first {
            let r = exec.snapshot();
            if let Ok(c) = self.get(&r.container_id) {
                self.events_bus().publish(
                    self.event_for(&c.record(), "exec_die")
                        .attribute("execID", exec_id.to_string())
                        .attribute("exitCode", code.to_string()),
                );
            }
        }
    }
}

/// Exec instances of every container, by ID.
pub type ExecTable = HashMap<String, Arc<Exec>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_text_for_events() {
        let cfg = ExecConfig {
            cmd: Some(vec!["sh".into(), "-c".into(), "true".into()]),
            ..Default::default()
        };
        assert_eq!(cmd_text(&cfg), "sh -c true");
    }
}
