//! berthd's side of the supervisor protocol: launch a supervisor, send it requests, keep a
//! `watch` connection for its events and `attach` connections for output.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::error::RuntimeError;
use super::proto::{self, Created, Event, Reply, Request, SupervisorConfig};
use super::supervisor::{self, SPARE_SUBCOMMAND, SUBCOMMAND};
use crate::util::fs::replace_file;

/// Start a supervisor for the bundle in `state_dir` (whose `config.json` is written) and wait
/// until the container is created. Returns the init's pid. A spare supervisor takes the
/// container when there is one; a new spare is then made for the next start.
pub(super) async fn launch(
    exe: PathBuf,
    state_dir: PathBuf,
    config: SupervisorConfig,
    spares: Arc<Spares>,
) -> Result<i32, RuntimeError> {
    let taken = spares.clone();
    let launched =
        tokio::task::spawn_blocking(move || launch_blocking(&exe, &state_dir, &config, &taken))
            .await
            .map_err(|e| RuntimeError::failed(format!("launch task: {e}")))?;
    // Not at once: the start under way would share the CPU with the spare's start-up.
    tokio::spawn(async move {
        tokio::time::sleep(SPARE_DELAY).await;
        spares.refill();
    });
    launched
}

/// How long after a launch the next spare is started.
const SPARE_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

fn launch_blocking(
    exe: &Path,
    state_dir: &Path,
    config: &SupervisorConfig,
    spares: &Spares,
) -> Result<i32, RuntimeError> {
    let json = serde_json::to_vec(config)
        .map_err(|e| RuntimeError::failed(format!("encode supervisor config: {e}")))?;
    replace_file(&supervisor::config_path(state_dir), &json, 0o600)
        .map_err(|e| RuntimeError::failed(format!("write supervisor config: {e}")))?;
    let status = match spares.take().map(|s| s.assign(state_dir)) {
        Some(Ok(status)) => status,
        // No spare, or one that went (killed, say): a new supervisor.
        other => {
            if let Some(Err(e)) = other {
                tracing::debug!("spare supervisor: {e}");
            }
            start_supervisor(exe, &[SUBCOMMAND.as_ref(), state_dir.as_os_str()], None)?
        }
    };
    read_created(status, state_dir)
}

/// Run `exe args` as a supervisor's launcher, which detaches the supervisor and exits: fd 3
/// of the supervisor is the returned status pipe, fd 4 `go` if given. Waits for the launcher.
fn start_supervisor(
    exe: &Path,
    args: &[&std::ffi::OsStr],
    go: Option<OwnedFd>,
) -> Result<File, RuntimeError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::failed(format!("create status pipe: {e}")))?;
    let w_fd = w.as_raw_fd();
    let go_fd = go.as_ref().map_or(-1, |g| g.as_raw_fd());
    let mut cmd = crate::util::exe::command(exe);
    cmd.args(args)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the child only calls fcntl, dup2 and close_range, which
    // are async-signal-safe. Both pipes are first copied above fd 9, so that neither dup2
    // overwrites the other; fd 3 (and fd 4 with `go`) end up without close-on-exec, and every
    // descriptor above them is closed.
    unsafe {
        cmd.pre_exec(move || {
            let status = libc::fcntl(w_fd, libc::F_DUPFD_CLOEXEC, 10);
            let go = if go_fd >= 0 {
                libc::fcntl(go_fd, libc::F_DUPFD_CLOEXEC, 10)
            } else {
                -1
            };
            if status < 0 || (go_fd >= 0 && go < 0) || libc::dup2(status, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut first_closed = 4u32;
            if go >= 0 {
                if libc::dup2(go, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                first_closed = 5;
            }
            // Descriptors berthd inherited without close-on-exec must not live on in the
            // supervisor; close_range only fails on old kernels, where nothing is lost.
            libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, 0u32);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::failed(format!("start supervisor {}: {e}", exe.display())))?;
    drop(w);
    drop(go);
    // The launched process forks the real supervisor and exits at once.
    let _ = child.wait();
    Ok(File::from(r))
}

/// The supervisor's [`Created`] line on its status pipe.
fn read_created(status: File, state_dir: &Path) -> Result<i32, RuntimeError> {
    let mut line = String::new();
    let _ = BufReader::new(status).read_line(&mut line);
    let created: Created = serde_json::from_str(line.trim()).map_err(|_| {
        let log = std::fs::read_to_string(state_dir.join("supervisor.log")).unwrap_or_default();
        let last = log.lines().last().unwrap_or("").to_string();
        RuntimeError::failed(format!("supervisor failed to start: {last}"))
    })?;
    if created.ok {
        Ok(created.pid)
    } else {
        Err(if created.exit_code != 0 {
            RuntimeError::Exec {
                code: created.exit_code,
                message: created.error,
            }
        } else {
            RuntimeError::Failed(created.error)
        })
    }
}

/// A supervisor started before a container needs it ([`supervisor::spare_main`]): it waits
/// for a state dir on `go`, and answers on `status` as a supervisor started for that dir.
pub(super) struct Spare {
    go: File,
    status: File,
}

impl Spare {
    fn start(exe: &Path, exec_root: &Path) -> Result<Spare, RuntimeError> {
        let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| RuntimeError::failed(format!("create spare pipe: {e}")))?;
        // As long as a state dir and 4 bytes more (`__supervise` against `__spare`), so that
        // the taken spare's command line names its container as any supervisor's does.
        let placeholder = exec_root.join("c").join("_".repeat(64 + 4));
        let status = start_supervisor(
            exe,
            &[SPARE_SUBCOMMAND.as_ref(), placeholder.as_os_str()],
            Some(go_r),
        )?;
        Ok(Spare {
            go: File::from(go_w),
            status,
        })
    }

    /// Hand the spare `state_dir`; its status pipe then tells how the create went.
    fn assign(mut self, state_dir: &Path) -> Result<File, RuntimeError> {
        let mut line = state_dir.as_os_str().as_encoded_bytes().to_vec();
        line.push(b'\n');
        self.go.write_all(&line).map_err(|e| {
            RuntimeError::failed(format!("hand the spare supervisor its container: {e}"))
        })?;
        Ok(self.status)
    }
}

/// At most one [`Spare`], made again in the background after each start that took it.
pub(super) struct Spares {
    exe: PathBuf,
    exec_root: PathBuf,
    slot: Mutex<Option<Spare>>,
    making: AtomicBool,
}

impl Spares {
    pub(super) fn new(exe: PathBuf, exec_root: PathBuf) -> Spares {
        Spares {
            exe,
            exec_root,
            slot: Mutex::new(None),
            making: AtomicBool::new(false),
        }
    }

    fn take(&self) -> Option<Spare> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Start a spare on a blocking thread unless one is there or on its way.
    pub(super) fn refill(self: &Arc<Self>) {
        if self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
            || self.making.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            match Spare::start(&this.exe, &this.exec_root) {
                Ok(spare) => {
                    let mut slot = this.slot.lock().unwrap_or_else(|p| p.into_inner());
                    // One already there (never, with `making`): this one's pipe closes and
                    // it exits.
                    if slot.is_none() {
                        *slot = Some(spare);
                    }
                }
                Err(e) => tracing::debug!("start a spare supervisor: {e}"),
            }
            this.making.store(false, Ordering::Release);
        });
    }
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spares")
            .field("exe", &self.exe)
            .field("exec_root", &self.exec_root)
            .finish_non_exhaustive()
    }
}

/// Connect to a supervisor's socket; `NotFound` when no supervisor answers.
async fn connect(state_dir: &Path) -> Result<UnixStream, RuntimeError> {
    let path = supervisor::socket_path(state_dir);
    let r = if path.as_os_str().len() < 100 {
        UnixStream::connect(&path).await
    } else {
        // Too long for sun_path: go through a directory fd.
        let dir = std::fs::File::open(state_dir)
            .map_err(|e| RuntimeError::Gone(format!("open {}: {e}", state_dir.display())))?;
        let short = format!("/proc/self/fd/{}/sup.sock", dir.as_raw_fd());
        let r = UnixStream::connect(&short).await;
        drop(dir);
        r
    };
    r.map_err(|e| RuntimeError::Gone(format!("connect to supervisor {}: {e}", path.display())))
}

async fn send_request(stream: &mut UnixStream, req: &Request) -> Result<(), RuntimeError> {
    let mut line = serde_json::to_vec(req)
        .map_err(|e| RuntimeError::failed(format!("encode request: {e}")))?;
    line.push(b'\n');
    stream.write_all(&line).await.map_err(|e| match e.kind() {
        // The supervisor ended (with its container) between the connect and the request: the
        // same as finding none.
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
            RuntimeError::Gone(format!("send to supervisor: {e}"))
        }
        _ => RuntimeError::failed(format!("send to supervisor: {e}")),
    })
}

/// How long a supervisor may take to answer a request (a start or an exec includes
/// libcontainer's work, which takes tens of milliseconds).
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Read the reply line, bounded by [`REPLY_TIMEOUT`].
async fn read_reply(stream: &mut UnixStream) -> Result<Reply, RuntimeError> {
    match tokio::time::timeout(REPLY_TIMEOUT, read_reply_inner(stream)).await {
        Ok(r) => r,
        Err(_) => Err(RuntimeError::Timeout),
    }
}

/// Read the reply line byte by byte, so that nothing after it is consumed.
async fn read_reply_inner(stream: &mut UnixStream) -> Result<Reply, RuntimeError> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match stream.read(&mut b).await {
            Ok(0) => {
                return Err(RuntimeError::Gone(
                    "supervisor closed the connection".to_string(),
                ))
            }
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => line.push(b[0]),
            // Reset: the supervisor ended with the request unread (its container ended).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Err(RuntimeError::Gone(format!("read from supervisor: {e}")))
            }
            Err(e) => return Err(RuntimeError::failed(format!("read from supervisor: {e}"))),
        }
        if line.len() > 1 << 20 {
            return Err(RuntimeError::failed("supervisor reply too long"));
        }
    }
    serde_json::from_slice(&line)
        .map_err(|e| RuntimeError::failed(format!("decode supervisor reply: {e}")))
}

/// One request, one reply.
pub(super) async fn request(state_dir: &Path, req: Request) -> Result<Reply, RuntimeError> {
    let mut s = connect(state_dir).await?;
    send_request(&mut s, &req).await?;
    read_reply(&mut s).await
}

/// A reply that must be `ok`, or the supervisor's error.
pub(super) async fn request_ok(state_dir: &Path, req: Request) -> Result<Reply, RuntimeError> {
    let reply = request(state_dir, req).await?;
    if reply.ok {
        Ok(reply)
    } else {
        Err(reply_error(reply))
    }
}

/// The supervisor's words for a request on a container whose process has ended.
const NOT_RUNNING: &str = "container is not running";

/// A failed reply as an error: exec failures (126/127) are the caller's mistake, a process
/// that has ended is [`RuntimeError::NotRunning`], the rest berth's.
fn reply_error(reply: Reply) -> RuntimeError {
    let message = reply.error.unwrap_or_default();
    if reply.exit_code != 0 {
        RuntimeError::Exec {
            code: reply.exit_code,
            message,
        }
    } else if message == NOT_RUNNING {
        RuntimeError::NotRunning
    } else {
        RuntimeError::Failed(message)
    }
}

/// A `watch` connection: events until the supervisor goes.
///
/// The connection is read without a buffer of its own: its frames are a few small events over
/// the container's life (two reads each), and every running container keeps the connection
/// for as long as it runs. A buffer (tokio's default is 8 KiB; 512 bytes later) was one more
/// object per container remade at each restart wherever the heap had room, each keeping a page
/// of it resident after a load (docs/hardening.md, *Load and leaks*).
pub struct Watch {
    stream: UnixStream,
}

pub(super) async fn watch(state_dir: &Path) -> Result<Watch, RuntimeError> {
    let mut s = connect(state_dir).await?;
    send_request(&mut s, &Request::Watch).await?;
    let reply = read_reply(&mut s).await?;
    if !reply.ok {
        return Err(reply_error(reply));
    }
    Ok(Watch { stream: s })
}

impl Watch {
    /// The next event; `None` when the connection ends.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let mut header = [0u8; proto::HEADER];
            self.stream.read_exact(&mut header).await.ok()?;
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if len > 1 << 20 {
                return None;
            }
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await.ok()?;
            if header[0] == proto::EVENT {
                if let Ok(ev) = serde_json::from_slice(&payload) {
                    return Some(ev);
                }
            }
        }
    }

    /// Wait for the supervisor to close the connection (after the last event).
    pub async fn closed(&mut self) {
        let mut sink = [0u8; 64];
        while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
    }
}

/// Start an exec process: its reply, and the connection (which carries the process's output
/// frames when the request asked to attach).
pub(super) async fn exec(
    state_dir: &Path,
    req: Request,
) -> Result<(Reply, UnixStream), RuntimeError> {
    let mut s = connect(state_dir).await?;
    send_request(&mut s, &req).await?;
    let reply = read_reply(&mut s).await?;
    if !reply.ok {
        return Err(reply_error(reply));
    }
    Ok((reply, s))
}

/// An `attach` connection: the stream carries output frames to us and stdin frames to the
/// supervisor.
pub(super) async fn attach(
    state_dir: &Path,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<UnixStream, RuntimeError> {
    let mut s = connect(state_dir).await?;
    send_request(
        &mut s,
        &Request::Attach {
            stdin,
            stdout,
            stderr,
        },
    )
    .await?;
    let reply = read_reply(&mut s).await?;
    if !reply.ok {
        return Err(reply_error(reply));
    }
    Ok(s)
}
