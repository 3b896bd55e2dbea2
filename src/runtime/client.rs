//! berthd's side of the supervisor protocol: launch a supervisor, send it requests, keep a
//! `watch` connection for its events and `attach` connections for output.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::error::RuntimeError;
use super::proto::{self, Created, Event, Reply, Request, SupervisorConfig};
use super::supervisor::{self, SUBCOMMAND};
use crate::util::fs::replace_file;

/// Start a supervisor for the bundle in `state_dir` (whose `config.json` is written) and wait
/// until the container is created. Returns the init's pid.
pub(super) async fn launch(
    exe: PathBuf,
    state_dir: PathBuf,
    config: SupervisorConfig,
) -> Result<i32, RuntimeError> {
    tokio::task::spawn_blocking(move || launch_blocking(&exe, &state_dir, &config))
        .await
        .map_err(|e| RuntimeError::failed(format!("launch task: {e}")))?
}

fn launch_blocking(
    exe: &Path,
    state_dir: &Path,
    config: &SupervisorConfig,
) -> Result<i32, RuntimeError> {
    let json = serde_json::to_vec(config)
        .map_err(|e| RuntimeError::failed(format!("encode supervisor config: {e}")))?;
    replace_file(&supervisor::config_path(state_dir), &json, 0o600)
        .map_err(|e| RuntimeError::failed(format!("write supervisor config: {e}")))?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::failed(format!("create status pipe: {e}")))?;
    let w_fd = w.as_raw_fd();
    let mut cmd = crate::util::exe::command(exe);
    cmd.arg(SUBCOMMAND)
        .arg(state_dir)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the child only calls dup2, fcntl and close_range, which are
    // async-signal-safe; fd 3 ends up as the status pipe without close-on-exec, and every
    // descriptor above it is closed.
    unsafe {
        cmd.pre_exec(move || {
            if w_fd == 3 {
                // Already in place: dup2 would keep close-on-exec set.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(w_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Descriptors berthd inherited without close-on-exec must not live on in the
            // supervisor; close_range only fails on old kernels, where nothing is lost.
            libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::failed(format!("start supervisor {}: {e}", exe.display())))?;
    drop(w);
    // The launched process forks the real supervisor and exits at once.
    let _ = child.wait();
    let mut line = String::new();
    let _ = BufReader::new(std::fs::File::from(r)).read_line(&mut line);
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
