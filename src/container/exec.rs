//! `docker exec`: exec records (in memory, as dockerd keeps them) and starting them through the
//! container's supervisor, which runs libcontainer's tenant builder.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ProcessConfig};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::attach::{output_body, parse_detach_keys, pump, ClientConn, StdinMode};
use super::manager::{lock, ContainerManager};
use super::record::Status;
use super::ContainerError;
use crate::errors::{ErrorKind, Kinded};
use crate::runtime::RuntimeError;
use crate::runtime::{spec, ExecProcess, ExecStdio, PreparedExec, StdioConn};
use crate::util::io::ByteReceiver;
use crate::util::rand::random_hex;
use crate::util::stdcopy;

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
    /// `DetachKeys` parsed at create (empty: the default, ctrl-p ctrl-q).
    pub detach_keys: Vec<u8>,
    /// The legacy links' variables, resolved at create as dockerd does.
    pub link_env: Vec<String>,
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

/// What starting an exec gives: whether its process has a TTY and stdin, and its stdio unless
/// detached.
pub struct ExecStream {
    pub tty: bool,
    pub stdin: bool,
    pub stream: Option<StdioConn>,
}

/// An attached `POST /exec/{id}/start`, ready to serve a client.
///
/// As dockerd's `postContainerExecStart`, the start request's `Tty` decides the framing of
/// the stream (raw with it, stdcopy frames without), while the process gets a TTY from the
/// exec's create `Tty` alone; detach keys apply when the process has a TTY.
pub struct ExecSession {
    manager: Arc<ContainerManager>,
    id: String,
    /// The start request's `Tty`: raw output.
    raw: bool,
    console_size: Option<[u16; 2]>,
    detach_keys: Vec<u8>,
}

impl ExecSession {
    /// Whether the stream is raw (the start request's `Tty`), not multiplexed.
    pub fn raw(&self) -> bool {
        self.raw
    }

    /// Start the process, in a task of its own: a client that goes away meanwhile cannot
    /// leave it half started.
    async fn start(&self) -> Result<(bool, bool, StdioConn), ContainerError> {
        let (m, id) = (self.manager.clone(), self.id.clone());
        let console_size = self.console_size;
        let started = tokio::spawn(async move { m.exec_start(&id, false, console_size).await })
            .await
            .map_err(|e| ContainerError::internal(format!("exec task: {e}")))??;
        match started {
            ExecStream {
                tty,
                stdin,
                stream: Some(stdio),
            } => Ok((tty, stdin, stdio)),
            _ => Err(ContainerError::internal(format!(
                "exec {} started without a stream",
                self.id
            ))),
        }
    }

    /// Serve a hijacked connection. A failure to start is written into the stream, as
    /// dockerd does (the CLI then reads the exit code, 126 or 127, from the exec's inspect).
    pub async fn serve(self, client: ClientConn) {
        match self.start().await {
            Ok((tty, stdin, stdio)) => {
                let (m, id) = (self.manager.clone(), self.id.clone());
                let done = async move {
                    let _ = m.exec_wait(&id, Duration::from_secs(5)).await;
                };
                // An exec's stdin always closes with the client's (no TTY).
                let mode = StdinMode {
                    forward: stdin,
                    tty,
                    close_with_client: true,
                    detach_keys: self.detach_keys,
                };
                let end = pump(client, stdio, self.raw, mode, done).await;
                if end == super::attach::PumpEnd::Detached {
                    self.manager.exec_detached(&self.id);
                }
            }
            Err(e) => {
                let (_, mut w) = tokio::io::split(client.io);
                let mut text = format!("{e}\r\n").into_bytes();
                if !self.raw {
                    text = stdcopy::frame(stdcopy::STDOUT, &text);
                }
                let _ = w.write_all(&text).await;
                let _ = w.shutdown().await;
            }
        }
    }

    /// Output only, as a response body.
    pub async fn into_body(self) -> Result<ByteReceiver, ContainerError> {
        let (_tty, _stdin, stdio) = self
            .start()
            .await
            .map_err(|e| ContainerError::internal(e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(Some(stdio));
        let (m, id) = (self.manager, self.id);
        let done = async move {
            let _ = m.exec_wait(&id, Duration::from_secs(5)).await;
        };
        Ok(output_body(Vec::new(), Some(rx), self.raw, done))
    }
}

/// moby's event text: the entrypoint, a space, the arguments (so `pwd` alone is `pwd `).
fn cmd_text(cfg: &ExecConfig) -> String {
    let cmd = cfg.cmd.as_deref().unwrap_or_default();
    let (first, rest) = cmd
        .split_first()
        .map_or(("", &[][..]), |(f, r)| (f.as_str(), r));
    format!("{first} {}", rest.join(" "))
}

impl ContainerManager {
    fn exec_get(&self, id: &str) -> Result<Arc<Exec>, ContainerError> {
        lock(&self.execs).get(id).cloned().ok_or_else(|| {
            ContainerError::new(ErrorKind::NotFound, format!("No such exec instance: {id}"))
        })
    }

    /// The IDs of a container's exec instances that have not ended (`ExecIDs` in inspect):
    /// dockerd drops an exec from its container's list when it exits, and keeps it only for
    /// `GET /exec/{id}/json` (as berth does, see `collect_execs`).
    pub fn exec_ids(&self, container_id: &str) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.execs)
            .values()
            .filter_map(|e| {
                let r = lock(&e.record);
                (r.container_id == container_id && r.exit_code.is_none()).then(|| r.id.clone())
            })
            .collect();
        ids.sort();
        ids
    }

    /// A container's records of execs that ended more than [`EXEC_KEEP`] ago go (dockerd's
    /// exec GC); at each exec create.
    fn collect_execs(&self, container_id: &str) {
        lock(&self.execs).retain(|_, e| {
            let r = lock(&e.record);
            r.container_id != container_id || !ended_long_ago(&r)
        });
    }

    /// Every container's records of execs that ended more than [`EXEC_KEEP`] ago go, and the
    /// table shrinks after a burst: a container that stops running execs does not keep its
    /// old ones until its next exec. [`ContainerManager::collect_execs_periodically`] calls
    /// it.
    fn collect_all_execs(&self) {
        let mut execs = lock(&self.execs);
        let before = execs.len();
        execs.retain(|_, e| !ended_long_ago(&lock(&e.record)));
        if execs.capacity() > 4 * execs.len().max(64) {
            execs.shrink_to_fit();
        }
        if execs.len() < before {
            // What was freed goes back to the kernel at the daemon's next quiet moment.
            crate::util::mem::note_activity();
        }
    }

    /// Collect ended execs once a minute, for the daemon's life.
    pub async fn collect_execs_periodically(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            self.collect_all_execs();
        }
    }

    /// The container ended: its running execs ended with it (137), their records stay until
    /// the container starts again or goes, or for [`EXEC_KEEP`], so that clients can still
    /// inspect them. One created and never started keeps no exit code (as in moby), and a
    /// start of it is refused because the container is not running.
    pub(super) fn finish_execs(&self, container_id: &str) {
        let running: Vec<String> = lock(&self.execs)
            .values()
            .map(|e| e.snapshot())
            .filter(|r| r.container_id == container_id && r.started && r.exit_code.is_none())
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

    /// A client detached from an exec with the detach keys (`exec_detach`).
    fn exec_detached(&self, exec_id: &str) {
        let Ok(exec) = self.exec_get(exec_id) else {
            return;
        };
        let container_id = exec.snapshot().container_id;
        if let Ok(c) = self.get(&container_id) {
            self.events_bus().publish(
                self.event_for(&c.record(), "exec_detach")
                    .attribute("execID", exec_id),
            );
        }
    }

    /// Forget an ended exec's record at once (a health probe's: dockerd keeps no trace of
    /// them either, and one a second would otherwise pile up for five minutes).
    pub(super) fn forget_exec(&self, id: &str) {
        lock(&self.execs).remove(id);
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
        // dockerd's text, and a plain error there (500), unlike attach's 400.
        let detach_keys = match cfg.detach_keys.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => parse_detach_keys(k).map_err(|_| {
                ContainerError::internal(format!("Invalid escape keys ({k}) provided"))
            })?,
            None => Vec::new(),
        };
        let link_env = self.link_env(&r)?;
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
            detach_keys,
            link_env,
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

    /// An attached `POST /exec/{id}/start`: `tty` is the start request's (the framing of the
    /// stream), known before the connection is taken over; its console size counts only
    /// with it, as dockerd's.
    pub fn exec_session(
        self: &Arc<Self>,
        id: &str,
        tty: Option<bool>,
        console_size: Option<[u16; 2]>,
    ) -> Result<ExecSession, ContainerError> {
        let r = self.exec_get(id)?.snapshot();
        let raw = tty.unwrap_or(false);
        Ok(ExecSession {
            manager: self.clone(),
            id: id.to_string(),
            raw,
            console_size: console_size.filter(|_| raw),
            detach_keys: r.detach_keys,
        })
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, id: &str) -> Result<ExecInspectResponse, ContainerError> {
        let r = self.exec_get(id)?.snapshot();
        let cmd = r.config.cmd.clone().unwrap_or_default();
        Ok(ExecInspectResponse {
            can_remove: Some(false),
            // dockerd's `[]byte`: the parsed keys, base64 in JSON.
            detach_keys: Some(base64_std(&r.detach_keys)),
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
        self.runtime
            .resize(&r.container_id, height, width, Some(id))
            .await?;
        Ok(())
    }

    /// Resolves to the exit code once the exec has ended (at most `timeout`).
    pub(super) async fn exec_wait(&self, id: &str, timeout: Duration) -> Option<i64> {
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
        console_size: Option<[u16; 2]>,
    ) -> Result<ExecStream, ContainerError> {
        let exec = self.exec_get(id)?;
        let container_id = lock(&exec.record).container_id.clone();
        // The container's state first, then the exec's own (moby's `getExecConfig`, then
        // `ContainerExecStart`): an exec whose container ended is refused as such, however
        // the exec's record ended. One that never started ends with 126.
        let refuse = |e: ContainerError| {
            if !lock(&exec.record).started {
                self.exec_failed(id, 126);
            }
            e
        };
        let c = self.get(&container_id).map_err(refuse)?;
        let rec = c.record();
        if rec.state.status == Status::Paused {
            return Err(refuse(ContainerError::conflict(format!(
                "Container {container_id} is paused, unpause the container before exec"
            ))));
        }
        if rec.state.status != Status::Running {
            return Err(refuse(ContainerError::not_running(&container_id)));
        }
        let cfg = {
            let mut r = lock(&exec.record);
            if r.running || (r.started && r.exit_code.is_none()) {
                return Err(ContainerError::conflict(format!(
                    "exec command {id} is already running"
                )));
            }
            if r.exit_code.is_some() {
                return Err(ContainerError::conflict(format!(
                    "exec command {id} has already run"
                )));
            }
            r.started = true;
            // Running from now on: the exit may be reported before the start's reply is.
            r.running = true;
            r.config.clone()
        };
        // moby's `ContainerExecStart` logs the start before the process is made, so an exec
        // that cannot start has its `exec_start` too (and no `exec_die`).
        self.events_bus().publish(
            self.event_for(&rec, &format!("exec_start: {}", cmd_text(&cfg)))
                .attribute("execID", id),
        );
        let fail = |e: ContainerError| {
            self.exec_failed(id, 126);
            e
        };
        // The process's TTY is the create request's (the start's only frames the stream);
        // without a console size at start, the create's.
        let tty = cfg.tty.unwrap_or(false);
        let console_size = console_size.or_else(|| {
            cfg.console_size
                .as_ref()
                .filter(|v| v.len() == 2 && v[0] > 0 && v[1] > 0)
                .map(|v| [v[0] as u16, v[1] as u16])
        });
        let link_env = lock(&exec.record).link_env.clone();
        let stdin = cfg.attach_stdin.unwrap_or(false);
        let prepared = {
            let this = self.clone();
            let rec = rec.clone();
            let cfg = cfg.clone();
            tokio::task::spawn_blocking(move || this.exec_process(&rec, &cfg, &link_env, tty))
                .await
                .map_err(|e| ContainerError::internal(format!("exec task: {e}")))
                .and_then(|r| r)
                .map_err(fail)?
        };
        let stdio = ExecStdio {
            tty,
            stdin,
            attach: !detach,
            console_size,
        };
        let started = self
            .runtime
            .exec(&container_id, id, prepared, stdio, self.counts().1 as usize)
            .await;
        let (pid, stream) = match started {
            Ok(x) => x,
            Err(e)
                if matches!(e, RuntimeError::Gone(_) | RuntimeError::NotRunning)
                    || (e.exit_code() == 0
                        && init_ends(|| c.status().is_running(), rec.state.pid as i32).await) =>
            {
                // The container ended after the check (its supervisor is gone, or libcontainer
                // failed because the init was dying under it, killed by another client's stop
                // or kill): dockerd's `errNotRunning` (409).
                tracing::debug!("exec {id}: {e}");
                self.exec_failed(id, 126);
                return Err(ContainerError::conflict(format!(
                    "container {container_id} is not running"
                )));
            }
            Err(e) => {
                let code = if e.exit_code() != 0 {
                    e.exit_code() as i64
                } else {
                    126
                };
                self.exec_failed(id, code);
                let message = if e.exit_code() != 0 {
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
                r.pid = pid as i64;
            }
        }
        Ok(ExecStream {
            tty,
            stdin,
            stream: if detach { None } else { Some(stream) },
        })
    }

    /// Blocking. The exec's process, resolved by the runtime against the container's spec.
    fn exec_process(
        &self,
        r: &super::record::Record,
        cfg: &ExecConfig,
        link_env: &[String],
        tty: bool,
    ) -> Result<PreparedExec, ContainerError> {
        // The links' variables come before the container's own, which override them
        // (moby's `CreateDaemonEnvironment`).
        let with_links;
        let r = if link_env.is_empty() {
            r
        } else {
            let mut c = r.clone();
            let mut env = link_env.to_vec();
            env.extend(c.config.env.take().unwrap_or_default());
            c.config.env = Some(env);
            with_links = c;
            &with_links
        };
        let inputs = self.spec_inputs(r);
        let opts = inputs.options(r, [0; 4].map(|_| spec::Namespace::Host), None);
        let p = ExecProcess {
            cmd: cfg.cmd.as_deref().unwrap_or(&[]),
            env: cfg.env.as_deref().unwrap_or(&[]),
            user: cfg.user.as_deref().unwrap_or(""),
            working_dir: cfg.working_dir.as_deref().unwrap_or(""),
            tty,
            privileged: cfg.privileged.unwrap_or(false)
                || r.host_config.privileged.unwrap_or(false),
        };
        Ok(self.runtime.exec_process(&r.id, &opts, &p)?)
    }

    /// Record an exec's exit (from the supervisor's event, or its container's end): the exit
    /// code and the `exec_die` event.
    pub(super) fn exec_finished(&self, exec_id: &str, code: i64) {
        self.exec_ended(exec_id, code, true);
    }

    /// Record an exec that never ran (its start failed or was refused): the exit code only,
    /// as moby's `setExitCodeFromError`; no process died, so no `exec_die`.
    fn exec_failed(&self, exec_id: &str, code: i64) {
        self.exec_ended(exec_id, code, false);
    }

    fn exec_ended(&self, exec_id: &str, code: i64, die_event: bool) {
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
        if first && die_event {
            let r = exec.snapshot();
            if let Ok(c) = self.get(&r.container_id) {
                self.events_bus().publish(
                    self.event_for(&c.record(), "exec_die")
                        .attribute("execID", exec_id)
                        .attribute("exitCode", code.to_string()),
                );
            }
        }
    }
}

/// How long an exec that failed waits for the init to start ending before its failure counts
/// as the runtime's.
const INIT_END_GRACE: Duration = Duration::from_secs(1);

/// Whether the container's init (`pid`) has ended or is ending (inside its exit, or with a
/// SIGKILL pending), or starts to within [`INIT_END_GRACE`], or the container stopped running
/// (`running` turned false): an exec start that failed then raced with the container's end
/// rather than failing on its own.
async fn init_ends(running: impl Fn() -> bool, pid: i32) -> bool {
    let deadline = tokio::time::Instant::now() + INIT_END_GRACE;
    loop {
        if !running() || crate::runtime::host::process_ending(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Go's encoding of a `[]byte` in JSON: standard base64 with padding.
fn base64_std(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Exec instances of every container, by ID.
pub type ExecTable = HashMap<String, Arc<Exec>>;

/// How long the record of an exec that ended stays for `GET /exec/{id}/json`.
const EXEC_KEEP: Duration = Duration::from_secs(300);

/// Whether an exec ended more than [`EXEC_KEEP`] ago.
fn ended_long_ago(r: &ExecRecord) -> bool {
    r.finished.is_some_and(|t| t.elapsed() >= EXEC_KEEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_text_is_mobys() {
        let cfg = |cmd: &[&str]| ExecConfig {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        assert_eq!(cmd_text(&cfg(&["pwd"])), "pwd ");
        assert_eq!(cmd_text(&cfg(&["sh", "-c", "exit 4"])), "sh -c exit 4");
    }

    #[tokio::test]
    async fn a_failed_exec_waits_for_a_dying_init() {
        // Stopped or ended: at once.
        assert!(init_ends(|| false, std::process::id() as i32).await);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(init_ends(|| true, pid).await);
        // Ending within the grace: the exec raced with the end.
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let reaper = std::thread::spawn(move || child.wait());
        assert!(init_ends(|| true, pid).await);
        reaper.join().unwrap().unwrap();
        // Alive past the grace: the failure is the runtime's.
        let start = std::time::Instant::now();
        assert!(!init_ends(|| true, std::process::id() as i32).await);
        assert!(start.elapsed() >= INIT_END_GRACE);
    }

    #[test]
    fn command_text_for_events() {
        let cfg = ExecConfig {
            cmd: Some(vec!["sh".into(), "-c".into(), "true".into()]),
            ..Default::default()
        };
        assert_eq!(cmd_text(&cfg), "sh -c true");
    }

    #[test]
    fn an_exec_record_goes_five_minutes_after_the_exec_ended() {
        let record = |finished: Option<std::time::Instant>| ExecRecord {
            id: "e".into(),
            container_id: "c".into(),
            config: ExecConfig::default(),
            started: true,
            running: false,
            exit_code: finished.map(|_| 0),
            pid: 1,
            finished,
            detach_keys: Vec::new(),
            link_env: Vec::new(),
        };
        let now = std::time::Instant::now();
        assert!(!ended_long_ago(&record(None)));
        assert!(!ended_long_ago(&record(Some(now))));
        if let Some(then) = now.checked_sub(EXEC_KEEP + Duration::from_secs(1)) {
            assert!(ended_long_ago(&record(Some(then))));
        }
    }

    #[test]
    fn detach_keys_show_as_go_bytes() {
        assert_eq!(base64_std(&[16, 17]), "EBE=");
        assert_eq!(base64_std(&[16]), "EA==");
        assert_eq!(base64_std(b"abc"), "YWJj");
        assert_eq!(base64_std(&[]), "");
    }
}
