//! Every libcontainer call berth makes. Only the supervisor, a single-threaded process, runs
//! this code: libcontainer clones and runs Rust code in the children (see
//! docs/notes/libcontainer-0.7.md §5).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

use super::executor::BerthExecutor;

/// Where the container's stdio goes.
pub enum Stdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A listening console socket (absolute path); the pty master arrives on it.
    Console(PathBuf),
}

/// Process-wide state libcontainer's children inherit, put back after a build: the signal
/// mask, SIGPIPE's disposition and our own OOM score.
struct InheritGuard {
    mask: SigSet,
    pipe: Option<SigAction>,
    oom_score_adj: Option<String>,
}

impl InheritGuard {
    fn new() -> InheritGuard {
        let mut mask = SigSet::empty();
        let _ = nix::sys::signal::sigprocmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::empty()),
            Some(&mut mask),
        );
        let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        // SAFETY: SIG_DFL installs no handler; restored in drop.
        let pipe = unsafe { sigaction(Signal::SIGPIPE, &dfl) }.ok();
        let oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj").ok();
        InheritGuard {
            mask,
            pipe,
            oom_score_adj,
        }
    }
}

impl Drop for InheritGuard {
    fn drop(&mut self) {
        if let Some(old) = &self.pipe {
            // SAFETY: re-installing the disposition that was there before.
            let _ = unsafe { sigaction(Signal::SIGPIPE, old) };
        }
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.mask), None);
        if let Some(v) = &self.oom_score_adj {
            let _ = std::fs::write("/proc/self/oom_score_adj", v.trim());
        }
    }
}

/// A builder with berth's root, executor and stdio.
fn builder(
    id: &str,
    lc_root: &Path,
    executor: BerthExecutor,
    stdio: Stdio,
) -> Result<ContainerBuilder, String> {
    let b = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(lc_root)
        .map_err(|e| format!("libcontainer root {}: {e}", lc_root.display()))?
        .with_executor(executor);
    let b = match stdio {
        Stdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => b.with_stdin(stdin).with_stdout(stdout).with_stderr(stderr),
        Stdio::Console(path) => b.with_console_socket(Some(path)),
    };
    b.validate_id().map_err(|e| e.to_string())
}

/// Create (not start) the container of `bundle`.
pub fn create(
    id: &str,
    lc_root: &Path,
    bundle: &Path,
    executor: BerthExecutor,
    stdio: Stdio,
) -> Result<Container, String> {
    let _guard = InheritGuard::new();
    builder(id, lc_root, executor, stdio)?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| e.to_string())
}

pub fn start(c: &mut Container) -> Result<(), String> {
    c.start().map_err(|e| e.to_string())
}

pub fn pause(c: &mut Container) -> Result<(), String> {
    c.refresh_status().map_err(|e| e.to_string())?;
    c.pause().map_err(|e| e.to_string())
}

pub fn resume(c: &mut Container) -> Result<(), String> {
    c.refresh_status().map_err(|e| e.to_string())?;
    c.resume().map_err(|e| e.to_string())
}

/// Remove libcontainer's record and the container's cgroup (killing what is left in it).
pub fn delete(c: &mut Container) -> Result<(), String> {
    let _ = c.refresh_status();
    c.delete(true).map_err(|e| e.to_string())
}

/// Release a container whose init has ended without libcontainer's delete: remove its cgroup's
/// `dirs` (from berthd, see `runtime::cgroup_dirs`) and libcontainer's record. libcontainer's
/// delete finds the directories itself, and libcgroups' lookup reads `/proc/self/mountinfo`
/// whole for each v1 controller a host has not mounted: a cost that grows with every running
/// container's mounts, paid at every container's end (docs/benchmarks.md). What is left in the
/// cgroup (processes outside the container's pid namespace) is killed, as libcgroups' remove
/// does. A container whose init still runs goes through libcontainer's delete.
pub fn release(c: &mut Container, dirs: &[PathBuf]) -> Result<(), String> {
    let _ = c.refresh_status();
    if c.status() != ContainerStatus::Stopped {
        return delete(c);
    }
    let mut failed = Vec::new();
    for dir in dirs {
        if let Err(e) = remove_cgroup_dir(dir) {
            failed.push(format!("remove cgroup {}: {e}", dir.display()));
        }
    }
    match std::fs::remove_dir_all(&c.root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            failed.push(format!("remove {}: {e}", c.root.display()));
        }
        _ => {}
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Remove one cgroup directory. A cgroup that still has members (exiting, or outside the
/// container's pid namespace) is busy: its members are killed and the removal retried, with
/// libcgroups' back-off (10, 20, 60 ms).
fn remove_cgroup_dir(dir: &Path) -> std::io::Result<()> {
    let mut delay = std::time::Duration::from_millis(10);
    for attempt in 1..=4u32 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 4 => {
                kill_members(dir);
                std::thread::sleep(delay);
                delay *= attempt + 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// SIGKILL every member of a cgroup: `cgroup.kill` where the kernel has it (v2), else each pid
/// of `cgroup.procs`.
fn kill_members(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Remove a record left behind by a supervisor that died (`<lc-root>/<id>`).
pub fn delete_stale(lc_root: &Path, id: &str) -> Result<(), String> {
    let dir = lc_root.join(id);
    if !dir.exists() {
        return Ok(());
    }
    let mut c = Container::load(dir).map_err(|e| e.to_string())?;
    c.delete(true).map_err(|e| e.to_string())
}

/// Accept libcontainer's connection on the console socket and take the pty master it sends.
pub fn receive_console(listener: &UnixListener) -> Result<OwnedFd, String> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (conn, _) = listener
        .accept()
        .map_err(|e| format!("accept console socket: {e}"))?;
    let mut buf = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| format!("receive console: {e}"))?;
    for cmsg in msg.cmsgs().map_err(|e| format!("receive console: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                for extra in &fds[1..] {
                    let _ = nix::unistd::close(*extra);
                }
                // SAFETY: the kernel just installed this fd in our table for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err("receive console: no file descriptor in the message".to_string())
}

nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

/// Set a pty's window size; the kernel signals SIGWINCH to its foreground group.
pub fn resize(fd: RawFd, height: u16, width: u16) -> Result<(), String> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: fd is an open terminal (a pty's master, or its slave in the container's
    // process) the caller holds; ws lives across the call.
    unsafe { tiocswinsz(fd, &ws) }
        .map(|_| ())
        .map_err(|e| format!("resize tty: {e}"))
}

/// Start a process in the running container (`docker exec`): libcontainer's tenant builder
/// joins the init's namespaces and cgroup. Returns once the process has exec'd (or failed to).
pub fn exec(
    id: &str,
    lc_root: &Path,
    process_json: &Path,
    executor: BerthExecutor,
    stdio: Stdio,
) -> Result<nix::unistd::Pid, String> {
    let _guard = InheritGuard::new();
    builder(id, lc_root, executor, stdio)?
        .as_tenant()
        .with_process(Some(process_json))
        .with_detach(true)
        .build()
        .map_err(|e| e.to_string())
}
