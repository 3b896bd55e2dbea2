//! Reaping: the init's and the execs' exits (seen through their pidfds and `waitpid`), their
//! last output drained, the exit status recorded in the state dir and told to the clients.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Instant, SystemTime};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::clients::{push_event, Kind};
use super::{exit_path, lc, Src, Supervisor};
use crate::runtime::host;
use crate::runtime::proto::{Event, ExitStatus};
use crate::util::fs::replace_file;
use crate::util::time::rfc3339_nano;

/// A pidfd for `pid` (readable once it exits), if the kernel has them.
pub(super) fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall returned a fresh fd that we now own.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Supervisor {
    /// Reap every exited child: the init's exit ends the container, an exec's ends the exec.
    pub(super) fn reap(&mut self) {
        loop {
            let (pid, code) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            if pid == self.init {
                self.on_exit(code);
            } else if let Some(i) = self.execs.iter().position(|e| e.pid == pid) {
                self.on_exec_exit(i, code);
            }
        }
    }

    /// Read what a process wrote before it ended.
    fn drain(&mut self, src: Src) {
        for _ in 0..4096 {
            let n = self.io_mut(src).map(|io| io.outputs.len()).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut progressed = false;
            for i in (0..n).rev() {
                progressed |= self.read_output(src, i);
            }
            if !progressed {
                break;
            }
        }
        if let Some(io) = self.io_mut(src) {
            io.outputs.clear();
        }
    }

    fn on_exec_exit(&mut self, i: usize, code: i32) {
        let id = self.execs[i].id;
        self.drain(Src::Exec(id));
        let exec = self.execs.remove(i);
        let event = Event::ExecExited {
            exec_id: exec.exec_id.clone(),
            exit_code: code,
        };
        for c in &mut self.clients {
            match c.kind {
                Kind::Exec { id: e, .. } if e == id => {
                    push_event(c, &event);
                    c.closing = true;
                }
                Kind::Watch => push_event(c, &event),
                _ => {}
            }
            c.flush();
        }
    }

    fn on_exit(&mut self, code: i32) {
        if self.exited() {
            return;
        }
        self.drain(Src::Init);
        if let Some(log) = &mut self.log {
            let _ = log.flush(SystemTime::now());
        }
        let oom_file = self.cfg.oom_file.clone().or_else(|| {
            crate::runtime::oom_file(crate::runtime::cgroup_version(), &self.cfg.cgroup_path)
        });
        let oom_killed = oom_file.is_some_and(|f| host::oom_kills(&f) > 0);
        self.release_container();
        let status = ExitStatus {
            exit_code: code,
            oom_killed,
            finished_at: rfc3339_nano(SystemTime::now()),
            error: String::new(),
        };
        self.write_exit(&status);
        self.state.exit = Some(status.clone());
        // The pidfd stays readable once the init is reaped: stop polling it.
        self.pidfd = None;
        self.io.stdin = None;
        self.io.pty = None;
        // Exec processes died with the container's pid namespace; reap them now.
        self.reap();
        self.notify_exit(&status, oom_killed);
        self.exited_at = Some(Instant::now());
    }

    /// Remove the ended container's cgroup and libcontainer's record of it.
    fn release_container(&mut self) {
        let released = match &self.cfg.cgroup_dirs {
            Some(dirs) => lc::release(&mut self.container, dirs),
            None => lc::delete(&mut self.container),
        };
        if let Err(e) = released {
            tracing::warn!("delete container: {e}");
        }
    }

    /// Record the exit status in the state dir (berthd reads it when the supervisor is gone).
    fn write_exit(&self, status: &ExitStatus) {
        if let Ok(b) = serde_json::to_vec(status) {
            if let Err(e) = replace_file(&exit_path(&self.state_dir), &b, 0o600) {
                tracing::error!("write exit status: {e}");
            }
        }
    }

    /// Watchers get the events, attached clients are closed once flushed.
    fn notify_exit(&mut self, status: &ExitStatus, oom_killed: bool) {
        for c in &mut self.clients {
            match c.kind {
                Kind::Watch => {
                    if oom_killed {
                        push_event(c, &Event::Oom);
                    }
                    push_event(c, &Event::Exited(status.clone()));
                }
                Kind::Attach { .. } | Kind::Exec { .. } => c.closing = true,
                Kind::Pending => {}
            }
            c.flush();
        }
    }
}
