//! berthd's side of the supervisor protocol: launch a supervisor, send it requests, keep a
//! `watch` connection for its events and `attach` connections for output.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::UnixStream;

use super::proto::{self, Created, Event, Reply, Request, SupervisorConfig};
use super::supervisor::{self, SUBCOMMAND};
use crate::errors::{ErrorKind, Kinded};
use crate::util::fs::atomic_write;

/// A failure talking to a supervisor or starting one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeError {
    kind: ErrorKind,
    message: String,
    /// Docker's exit code for an exec failure (126 / 127), else 0.
    pub exit_code: i32,
}

impl RuntimeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> RuntimeError {
        RuntimeError {
            kind,
            message: message.into(),
            exit_code: 0,
        }
    }

    pub fn internal(message: impl Into<String>) -> RuntimeError {
        Self::new(ErrorKind::Internal, message)
    }

    /// The supervisor is gone (its socket refuses connections).
    pub fn is_gone(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuntimeError {}

impl Kinded for RuntimeError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Start a supervisor for the bundle in `state_dir` (whose `config.json` is written) and wait
/// until the container is created. Returns the init's pid.
pub async fn launch(
    exe: PathBuf,
    state_dir: PathBuf,
    config: SupervisorConfig,
) -> Result<i32, RuntimeError> {
    tokio::task::spawn_blocking(move || launch_blocking(&exe, &state_dir, &config))
        .await
        .map_err(|e| RuntimeError::internal(format!("launch task: {e}")))?
}

fn launch_blocking(
    exe: &Path,
    state_dir: &Path,
    config: &SupervisorConfig,
) -> Result<i32, RuntimeError> {
    let json = serde_json::to_vec(config)
        .map_err(|e| RuntimeError::internal(format!("encode supervisor config: {e}")))?;
    atomic_write(&supervisor::config_path(state_dir), &json, 0o600)
        .map_err(|e| RuntimeError::internal(format!("write supervisor config: {e}")))?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::internal(format!("create status pipe: {e}")))?;
    let w_fd = w.as_raw_fd();
    let mut cmd = Command::new(exe);
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
        .map_err(|e| RuntimeError::internal(format!("start supervisor {}: {e}", exe.display())))?;
    drop(w);
    // The launched process forks the real supervisor and exits at once.
    let _ = child.wait();
    let mut line = String::new();
    let _ = BufReader::new(std::fs::File::from(r)).read_line(&mut line);
    let created: Created = serde_json::from_str(line.trim()).map_err(|_| {
        let log = std::fs::read_to_string(state_dir.join("supervisor.log")).unwrap_or_default();
        let last = log.lines().last().unwrap_or("").to_string();
        RuntimeError::internal(format!("supervisor failed to start: {last}"))
    })?;
    if created.ok {
        Ok(created.pid)
    } else {
        Err(RuntimeError {
            kind: if created.exit_code != 0 {
                ErrorKind::InvalidParameter
            } else {
                ErrorKind::Internal
            },
            message: created.error,
            exit_code: created.exit_code,
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
        let dir = std::fs::File::open(state_dir).map_err(|e| {
            RuntimeError::new(
                ErrorKind::NotFound,
                format!("open {}: {e}", state_dir.display()),
            )
        })?;
        let short = format!("/proc/self/fd/{}/sup.sock", dir.as_raw_fd());
        let r = UnixStream::connect(&short).await;
        drop(dir);
        r
    };
    r.map_err(|e| {
        RuntimeError::new(
            ErrorKind::NotFound,
            format!("connect to supervisor {}: {e}", path.display()),
        )
    })
}

async fn send_request(stream: &mut UnixStream, req: &Request) -> Result<(), RuntimeError> {
    let mut line = serde_json::to_vec(req)
        .map_err(|e| RuntimeError::internal(format!("encode request: {e}")))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .await
        .map_err(|e| RuntimeError::internal(format!("send to supervisor: {e}")))
}

/// How long a supervisor may take to answer a request (a start or an exec includes
/// libcontainer's work, which takes tens of milliseconds).
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Read the reply line, bounded by [`REPLY_TIMEOUT`].
async fn read_reply(stream: &mut UnixStream) -> Result<Reply, RuntimeError> {
    match tokio::time::timeout(REPLY_TIMEOUT, read_reply_inner(stream)).await {
        Ok(r) => r,
        Err(_) => Err(RuntimeError::new(
            ErrorKind::Unavailable,
            "the container's supervisor does not answer",
        )),
    }
}

/// Read the reply line byte by byte, so that nothing after it is consumed.
async fn read_reply_inner(stream: &mut UnixStream) -> Result<Reply, RuntimeError> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match stream.read(&mut b).await {
            Ok(0) => {
                return Err(RuntimeError::new(
                    ErrorKind::NotFound,
                    "supervisor closed the connection",
                ))
            }
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => line.push(b[0]),
            Err(e) => return Err(RuntimeError::internal(format!("read from supervisor: {e}"))),
        }
        if line.len() > 1 << 20 {
            return Err(RuntimeError::internal("supervisor reply too long"));
        }
    }
    serde_json::from_slice(&line)
        .map_err(|e| RuntimeError::internal(format!("decode supervisor reply: {e}")))
}

/// One request, one reply.
pub async fn request(state_dir: &Path, req: Request) -> Result<Reply, RuntimeError> {
    let mut s = connect(state_dir).await?;
    send_request(&mut s, &req).await?;
    read_reply(&mut s).await
}

/// A reply that must be `ok`, or the supervisor's error.
pub async fn request_ok(state_dir: &Path, req: Request) -> Result<Reply, RuntimeError> {
    let reply = request(state_dir, req).await?;
    if reply.ok {
        Ok(reply)
    } else {
        Err(reply_error(reply))
    }
}

/// A failed reply as an error: exec failures (126/127) are the caller's mistake, the rest
/// berth's.
fn reply_error(reply: Reply) -> RuntimeError {
    RuntimeError {
        kind: if reply.exit_code != 0 {
            ErrorKind::InvalidParameter
        } else {
            ErrorKind::Internal
        },
        message: reply.error.unwrap_or_default(),
        exit_code: reply.exit_code,
    }
}

/// A `watch` connection: events until the supervisor goes.
pub struct Watch {
    reader: AsyncBufReader<UnixStream>,
}

pub async fn watch(state_dir: &Path) -> Result<Watch, RuntimeError> {
    let mut s = connect(state_dir).await?;
    send_request(&mut s, &Request::Watch).await?;
    let reply = read_reply(&mut s).await?;
    if !reply.ok {
        return Err(RuntimeError::internal(reply.error.unwrap_or_default()));
    }
    Ok(Watch {
        reader: AsyncBufReader::new(s),
    })
}

impl Watch {
    /// The next event; `None` when the connection ends.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let mut header = [0u8; proto::HEADER];
            self.reader.read_exact(&mut header).await.ok()?;
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if len > 1 << 20 {
                return None;
            }
            let mut payload = vec![0u8; len];
            self.reader.read_exact(&mut payload).await.ok()?;
            if header[0] == proto::EVENT {
                if let Ok(ev) = serde_json::from_slice(&payload) {
                    return Some(ev);
                }
            }
        }
    }

    /// Wait for the supervisor to close the connection (after the last event).
    pub async fn closed(&mut self) {
        let mut sink = Vec::new();
        let _ = self.reader.read_until(0xff, &mut sink).await;
    }
}

/// Start an exec process: its reply, and the connection (which carries the process's output
/// frames when the request asked to attach).
pub async fn exec(state_dir: &Path, req: Request) -> Result<(Reply, UnixStream), RuntimeError> {
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
pub async fn attach(
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
        return Err(RuntimeError::internal(reply.error.unwrap_or_default()));
    }
    Ok(s)
}
