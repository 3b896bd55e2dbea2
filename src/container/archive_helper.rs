//! `berthd __archive`: `docker cp` for a container that is not running.
//!
//! berthd spawns its own binary (from `spawn_blocking`, never a tokio worker's `unshare`);
//! the helper is single-threaded: it `unshare(CLONE_NEWNS)`s, makes every mount private,
//! mounts the container's overlay rootfs and binds each mount point's source at its
//! destination resolved inside that rootfs (a destination missing from the rootfs is skipped,
//! as the container has not created it yet), then serves one request with the same in-root
//! code as a running container ([`super::archive`]): a reply line of JSON on stdout, followed
//! by the tar for `get`. For `hold` (berthd's `PUT`) the reply names the view root's
//! descriptor, which berthd opens through `/proc/<pid>/fd/<n>` and extracts into; the helper
//! waits until berthd closes its stdin. When it exits its mount namespace, and every mount in
//! it, goes away.

use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Stdio};

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use serde::{Deserialize, Serialize};

use super::archive::{self, kind_word, word_kind, PathStat, PutOptions};
use super::ContainerError;
use crate::errors::Kinded;
use crate::runtime::host;
use crate::util::inroot;

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "__archive";

/// One mount point to bind into the view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelperMount {
    pub source: PathBuf,
    pub destination: String,
    pub rw: bool,
    /// Create a missing destination (as moby's `mountVolumes` does); else skip the mount.
    #[serde(default)]
    pub create: bool,
}

/// What the helper is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelperRequest {
    /// `stat`, `get` or `put`.
    pub op: String,
    pub path: String,
    /// The container's name as the client gave it (for error texts).
    pub container: String,
    pub opts: PutOptions,
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    pub mounts: Vec<HelperMount>,
}

/// The helper's reply line.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<PathStat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `hold`: the descriptor of the view's root in the helper (berthd opens it through
    /// `/proc/<pid>/fd/<n>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_fd: Option<i32>,
}

impl Reply {
    fn of(r: Result<Option<PathStat>, ContainerError>) -> Self {
        match r {
            Ok(stat) => Reply {
                stat,
                ..Default::default()
            },
            Err(e) => Reply {
                stat: None,
                kind: Some(kind_word(e.kind()).to_string()),
                message: Some(e.message().to_string()),
                root_fd: None,
            },
        }
    }

    fn into_result(self) -> Result<Option<PathStat>, ContainerError> {
        match (self.kind, self.message) {
            (Some(k), Some(m)) => Err(ContainerError::new(word_kind(&k), m)),
            _ => Ok(self.stat),
        }
    }
}

fn reply(out: &mut impl Write, r: Result<Option<PathStat>, ContainerError>) -> io::Result<()> {
    write_reply(out, &Reply::of(r))
}

fn write_reply(out: &mut impl Write, reply: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// The helper's entry point: `args` is the JSON request.
pub fn main(args: &[String]) -> i32 {
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(128 * 1024, stdout.lock());
    let req: HelperRequest = match args.first().map(|a| serde_json::from_str(a)) {
        Some(Ok(r)) => r,
        _ => {
            let _ = reply(
                &mut out,
                Err(ContainerError::internal("archive helper: bad request")),
            );
            return 2;
        }
    };
    let root = match setup(&req) {
        Ok(r) => r,
        Err(e) => {
            let _ = reply(&mut out, Err(e));
            return 1;
        }
    };
    let result = match req.op.as_str() {
        "stat" => reply(
            &mut out,
            archive::stat_path(&root, &req.path, &req.container).map(|(_, s)| Some(s)),
        ),
        "get" => match archive::stat_path(&root, &req.path, &req.container) {
            Ok((t, s)) => {
                reply(&mut out, Ok(Some(s))).and_then(|()| archive::write_archive(&t, &mut out))
            }
            Err(e) => reply(&mut out, Err(e)),
        },
        "hold" => {
            // Keep the view (its mounts live as long as this process) for berthd, which
            // works in it through the root's descriptor, until it closes our stdin.
            let ready = Reply {
                root_fd: Some(root.as_raw_fd()),
                ..Default::default()
            };
            let sent = write_reply(&mut out, &ready);
            let mut sink = [0u8; 64];
            while let Ok(n) = io::Read::read(&mut io::stdin().lock(), &mut sink) {
                if n == 0 {
                    break;
                }
            }
            sent
        }
        _ => reply(
            &mut out,
            Err(ContainerError::internal("archive helper: bad op")),
        ),
    };
    match result {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn setup(req: &HelperRequest) -> Result<OwnedFd, ContainerError> {
    let sys = |what: &str, e: nix::errno::Errno| {
        ContainerError::internal(format!("archive helper: {what}: {}", e.desc()))
    };
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| sys("unshare", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| sys("make mounts private", e))?;
    host::mount_overlay(&req.lowers, &req.upper, &req.work, &req.merged)
        .map_err(|e| ContainerError::io("archive helper: mount rootfs", e))?;
    let open_root = || {
        std::fs::File::open(&req.merged)
            .map(OwnedFd::from)
            .map_err(|e| ContainerError::io("archive helper: open rootfs", e))
    };
    let root = open_root()?;
    let mut mounts = req.mounts.clone();
    mounts.sort_by_key(|m| m.destination.split('/').filter(|c| !c.is_empty()).count());
    for m in &mounts {
        let dst = match inroot::resolve(&root, m.destination.as_bytes(), OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) if m.create => {
                create_mount_point(&root, &m.destination, m.source.is_dir())
                    .map_err(|e| sys(&format!("create {}", m.destination), e))?;
                inroot::resolve(&root, m.destination.as_bytes(), OFlag::O_PATH)
                    .map_err(|e| sys(&format!("resolve {}", m.destination), e))?
            }
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => return Err(sys(&format!("resolve {}", m.destination), e)),
        };
        let target = format!("/proc/self/fd/{}", dst.as_raw_fd());
        mount(
            Some(&m.source),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| sys(&format!("bind {}", m.destination), e))?;
        if !m.rw {
            let top = inroot::resolve(&root, m.destination.as_bytes(), OFlag::O_PATH)
                .map_err(|e| sys(&format!("resolve {}", m.destination), e))?;
            let target = format!("/proc/self/fd/{}", top.as_raw_fd());
            mount(
                None::<&str>,
                target.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|e| sys(&format!("read-only {}", m.destination), e))?;
        }
    }
    Ok(root)
}

/// Create the missing components of `dest` in `root` (directories 0755; the last one a file
/// unless `dir`), each step resolved in-root, never following the created names.
fn create_mount_point(root: &OwnedFd, dest: &str, dir: bool) -> Result<(), nix::errno::Errno> {
    use nix::sys::stat::{mkdirat, Mode};
    let comps = inroot::components(dest.as_bytes()).map_err(|_| nix::errno::Errno::EINVAL)?;
    for i in 0..comps.len() {
        match inroot::resolve(root, &inroot::join(&comps[..=i]), OFlag::O_PATH) {
            Ok(_) => continue,
            Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let parent = inroot::open_dir(root, &inroot::join(&comps[..i]))?;
        let name = comps[i].as_c_str();
        let last = i + 1 == comps.len();
        if last && !dir {
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
            let fd = nix::fcntl::openat(
                Some(parent.as_raw_fd()),
                name,
                flags,
                Mode::from_bits_truncate(0o644),
            )?;
            nix::unistd::close(fd)?;
        } else {
            mkdirat(
                Some(parent.as_raw_fd()),
                name,
                Mode::from_bits_truncate(0o755),
            )?;
        }
    }
    Ok(())
}

/// The pipe size asked for between berthd and the helper.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// berthd's side: a running helper and its reply.
pub(crate) struct Helper {
    pub child: Child,
}

impl Helper {
    /// Start the helper (blocking: call from `spawn_blocking`).
    pub fn spawn(req: &HelperRequest) -> Result<Self, ContainerError> {
        let json = serde_json::to_string(req)
            .map_err(|e| ContainerError::internal(format!("archive request: {e}")))?;
        let child = crate::util::exe::command(&crate::util::exe::self_exe())
            .arg(SUBCOMMAND)
            .arg(json)
            .env_clear()
            .stdin(if req.op == "hold" {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| ContainerError::io("start the archive helper", e))?;
        // A 1 MiB pipe each way instead of 64 KiB: a tar of many megabytes crosses it with a
        // sixteenth of the wake-ups. Best effort: the kernel's limit may refuse it.
        let fds = [
            child.stdin.as_ref().map(|s| s.as_raw_fd()),
            child.stdout.as_ref().map(|s| s.as_raw_fd()),
        ];
        for fd in fds.into_iter().flatten() {
            // SAFETY: F_SETPIPE_SZ on a pipe descriptor the child handle owns and keeps open.
            unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_SIZE) };
        }
        Ok(Helper { child })
    }

    /// Read the reply line from `out`.
    pub fn read_reply(out: &mut impl BufRead) -> Result<Option<PathStat>, ContainerError> {
        Self::read_line(out)?.into_result()
    }

    /// Read the `hold` reply and open the view's root through the helper's descriptor.
    pub fn read_root(out: &mut impl BufRead, pid: u32) -> Result<OwnedFd, ContainerError> {
        let reply = Self::read_line(out)?;
        let fd = reply.root_fd;
        reply.into_result()?;
        let fd = fd.ok_or_else(|| ContainerError::internal("archive helper: no root"))?;
        let root = std::fs::File::open(format!("/proc/{pid}/fd/{fd}"))
            .map_err(|e| ContainerError::io("open the container's view", e))?;
        Ok(OwnedFd::from(root))
    }

    /// The helper's reply line, decoded.
    fn read_line(out: &mut impl BufRead) -> Result<Reply, ContainerError> {
        let mut line = String::new();
        out.read_line(&mut line)
            .map_err(|e| ContainerError::io("read the archive helper's reply", e))?;
        if line.is_empty() {
            return Err(ContainerError::internal(
                "the archive helper exited without a reply",
            ));
        }
        serde_json::from_str(&line)
            .map_err(|e| ContainerError::internal(format!("archive helper reply: {e}")))
    }

    /// Kill (if still running) and reap.
    pub fn finish(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Reap after a normal end.
    pub fn wait(mut self) {
        let _ = self.child.wait();
    }
}
