//! Request dispatch: the request line a client sends first on the control socket, answered
//! with one [`Reply`] (`Watch`, `Attach` and `Exec` turn the connection into a stream).

use std::os::fd::AsRawFd;
use std::time::SystemTime;

use super::clients::{push_event, Kind};
use super::{lc, read_failure, Supervisor};
use crate::runtime::proto::{Event, Reply, Request};
use crate::util::time::rfc3339_nano;

/// A failed reply carrying the exit code Docker gives for it (0 if none).
pub(super) fn failed(message: String, exit_code: i32) -> Reply {
    Reply {
        ok: false,
        error: Some(message),
        exit_code,
        ..Default::default()
    }
}

impl Supervisor {
    /// Answer the request line of pending client `i`, if it is complete; false when there is
    /// nothing more to do with the client now (no complete line yet, or it is done).
    pub(super) fn take_request(&mut self, i: usize) -> bool {
        let Some(pos) = self.clients[i].rbuf.iter().position(|&b| b == b'\n') else {
            if self.clients[i].rbuf.len() > 64 * 1024 {
                self.clients[i].gone = true;
            }
            return false;
        };
        let line: Vec<u8> = self.clients[i].rbuf.drain(..=pos).collect();
        let reply = match serde_json::from_slice::<Request>(&line) {
            Ok(req) => self.handle(i, req),
            Err(e) => Reply::error(format!("bad request: {e}")),
        };
        let c = &mut self.clients[i];
        c.queue_reply(&reply);
        if c.kind == Kind::Pending {
            c.closing = true;
            return false;
        }
        if c.kind == Kind::Watch {
            if let Some(exit) = self.state.exit.clone() {
                push_event(c, &Event::Exited(exit));
            }
        }
        true
    }

    fn handle(&mut self, i: usize, req: Request) -> Reply {
        match req {
            Request::Start => self.start(),
            Request::Watch => {
                self.clients[i].kind = Kind::Watch;
                // A watch on a running container is a restarted berthd reattaching: the code
                // that served it need not stay resident either.
                self.shed_later();
                Reply::ok()
            }
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                self.clients[i].kind = Kind::Attach {
                    stdin,
                    stdout,
                    stderr,
                };
                if self.exited() {
                    self.clients[i].closing = true;
                }
                Reply::ok()
            }
            Request::Kill { signal } => self.kill(signal),
            Request::KillExec { exec_id, signal } => self.kill_exec(&exec_id, signal),
            Request::Pause => self.pause_or_resume(true),
            Request::Resume => self.pause_or_resume(false),
            Request::Resize {
                height,
                width,
                exec,
            } => self.resize(height, width, exec.as_deref()),
            Request::State => Reply {
                ok: true,
                state: Some(self.state.clone()),
                ..Default::default()
            },
            Request::Exec(req) => {
                let reply = self.exec(i, req);
                // libcontainer's tenant build ran: give back what only it needed.
                self.shed_later();
                reply
            }
        }
    }

    /// Give back the memory a rare request needed ([`crate::runtime::host::shed_memory`]) a
    /// little later, once the container runs.
    fn shed_later(&mut self) {
        if self.state.started && !self.exited() && self.shed_at.is_none() {
            self.shed_at = Some(std::time::Instant::now() + super::SHED_DELAY);
        }
    }

    fn start(&mut self) -> Reply {
        if self.state.started {
            return Reply::error("container already started");
        }
        if let Err(e) = lc::start(&mut self.container) {
            return Reply::error(e);
        }
        // EOF on the report pipe means the exec succeeded (the write end is close-on-exec).
        let failure = self.report.take().and_then(read_failure);
        self.state.started = true;
        self.state.started_at = rfc3339_nano(SystemTime::now());
        self.save_state();
        // libcontainer's work is done: its code need not stay resident for the container's
        // life. Given back a little later, not before this reply.
        self.shed_later();
        match failure {
            Some(f) => failed(f.message, f.code),
            None => Reply::ok(),
        }
    }

    fn kill(&mut self, signal: i32) -> Reply {
        if self.exited() {
            return Reply::error("container is not running");
        }
        // A raw number: Docker's names include the real-time signals, which nix's `Signal`
        // cannot hold.
        // SAFETY: kill(2) takes a pid and a signal number; it returns 0 or -1 with errno.
        let rc = unsafe { libc::kill(self.init.as_raw(), signal) };
        match nix::errno::Errno::result(rc) {
            Ok(_) => Reply::ok(),
            Err(e) => Reply::error(format!("kill {}: {e}", self.init)),
        }
    }

    /// Signal a running exec process, through its pidfd when there is one (no pid reuse).
    fn kill_exec(&mut self, exec_id: &str, signal: i32) -> Reply {
        let Some(exec) = self.execs.iter().find(|e| e.exec_id == exec_id) else {
            return Reply::error(format!("exec {exec_id} is not running"));
        };
        let sent = match &exec.pidfd {
            Some(fd) => {
                // SAFETY: pidfd_send_signal takes a pidfd we own, a signal number, a null
                // siginfo and no flags; it returns 0 or -1 with errno.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signal as libc::c_int,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                if rc == 0 {
                    Ok(())
                } else {
                    Err(nix::errno::Errno::last())
                }
            }
            None => {
                // SAFETY: as in `kill`: a pid and a signal number, 0 or -1 with errno.
                let rc = unsafe { libc::kill(exec.pid.as_raw(), signal) };
                nix::errno::Errno::result(rc).map(drop)
            }
        };
        match sent {
            Ok(()) => Reply::ok(),
            Err(e) => Reply::error(format!("kill exec {exec_id} ({}): {e}", exec.pid)),
        }
    }

    fn pause_or_resume(&mut self, pause: bool) -> Reply {
        if self.exited() {
            return Reply::error("container is not running");
        }
        let r = if pause {
            lc::pause(&mut self.container)
        } else {
            lc::resume(&mut self.container)
        };
        match r {
            Ok(()) => {
                self.state.paused = pause;
                self.save_state();
                Reply::ok()
            }
            Err(e) => Reply::error(e),
        }
    }

    /// Resize the pty of the init (`exec` None) or of an exec.
    fn resize(&mut self, height: u16, width: u16, exec: Option<&str>) -> Reply {
        let pty = match exec {
            None => self.io.pty.as_ref(),
            Some(x) => self
                .execs
                .iter()
                .find(|e| e.exec_id == x)
                .and_then(|e| e.io.pty.as_ref()),
        };
        match pty {
            Some(p) => match lc::resize(p.as_raw_fd(), height, width) {
                Ok(()) => Reply::ok(),
                Err(e) => Reply::error(e),
            },
            None => Reply::error("the process has no tty"),
        }
    }
}
