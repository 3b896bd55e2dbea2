//! The per-container supervisor: `berthd __supervise <state-dir>`.
//!
//! berthd starts one for each container start. It detaches (`setsid` and a fork) so that it
//! outlives berthd, creates the container through libcontainer while it is still
//! single-threaded, holds the container's stdio, writes its log, reaps it, records its exit
//! status atomically in the state dir and answers berthd on `<state-dir>/sup.sock`
//! (see [`crate::runtime::proto`]). It never uses tokio or threads.
//!
//! This file holds the [`Supervisor`] and its poll loop; the rest is split by concern:
//! [`setup`] (starting, daemonising, creating the container), [`stdio`] (a process's pipes or
//! pty), [`clients`] (connections, output fan-out, back-pressure), [`dispatch`] (requests on
//! the control socket), [`exec`] (`docker exec`) and [`reap`] (reaping, exit recording).

mod clients;
mod dispatch;
mod exec;
pub mod executor;
pub mod lc;
mod reap;
mod setup;
mod stdio;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::Container;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;

use crate::logger;
use crate::runtime::proto::{SupervisorConfig, SupervisorState};
use crate::util::fs::replace_file;
use clients::{Client, Kind};
use exec::ExecProc;
use executor::ExecFailure;
use stdio::{Io, ReadBuf};

pub use setup::{main, spare_main};

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "__supervise";

/// A spare supervisor's subcommand ([`spare_main`]); once it has a container, its command
/// line reads as [`SUBCOMMAND`]'s.
pub const SPARE_SUBCOMMAND: &str = "__spare";

/// An attached client's output buffer above which the container's output is no longer read
/// (back-pressure), and the stdin buffer above which clients are no longer read.
const HIGH_WATER: usize = 1 << 20;

/// How long an attached client may hold the container's output back before it is dropped:
/// a reader that stopped reading never blocks the container for good.
const STALL_LIMIT: Duration = Duration::from_secs(5);

/// How long a supervisor waits for its clients after the container exited.
const LINGER: Duration = Duration::from_secs(5);

/// How long after a failed exec start the loop keeps reaping the processes it left, and how
/// often (ms).
pub(super) const STRAY_WINDOW: Duration = Duration::from_secs(5);
const STRAY_POLL_MS: u16 = 10;

/// How long after its start a container must still run before the supervisor gives back the
/// memory only the create needed ([`crate::runtime::host::shed_memory`]): off the start's
/// reply, and never for a container that ends sooner (`docker run --rm … true`).
pub(super) const SHED_DELAY: Duration = Duration::from_millis(200);

pub fn config_path(state_dir: &Path) -> PathBuf {
    state_dir.join("supervisor.json")
}

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("sup.sock")
}

pub fn exit_path(state_dir: &Path) -> PathBuf {
    state_dir.join("exit.json")
}

pub fn state_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state.json")
}

struct Supervisor {
    cfg: SupervisorConfig,
    state_dir: PathBuf,
    container: Container,
    init: Pid,
    pidfd: Option<OwnedFd>,
    listener: UnixListener,
    clients: Vec<Client>,
    /// The init's stdio.
    io: Io,
    /// `docker exec` processes.
    execs: Vec<ExecProc>,
    /// The container's seccomp profile, applied to exec'd processes too; read from the bundle
    /// at the first exec (most containers never see one).
    seccomp: Option<Option<executor::Filter>>,
    log: Option<logger::jsonfile::Writer>,
    state: SupervisorState,
    report: Option<File>,
    exited_at: Option<Instant>,
    /// Until when the loop wakes often to reap children it has no pidfd for: the processes of
    /// a failed exec start, which libcontainer leaves unreaped. One killed inside the
    /// container's pid namespace holds the init's exit until it is reaped.
    strays_until: Option<Instant>,
    /// When the memory only the create needed is given back ([`SHED_DELAY`]).
    shed_at: Option<Instant>,
    /// When a client last took bytes.
    last_progress: Instant,
    /// The buffer reads go through (made at the first read, and taken out while in use).
    readbuf: Option<ReadBuf>,
    /// The mounts an exec started without the other containers' mounts keeps
    /// ([`setup::mounts_to_keep`]); `None` when it must not shed them.
    keep: Option<Vec<PathBuf>>,
}

/// Which process an output, a stdin or a client belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Init,
    Exec(u64),
}

/// What each pollfd is for.
enum Slot {
    Listener,
    Pidfd,
    Output(Src, usize),
    Stdin(Src),
    Client(usize),
}

/// What one poll found ready, by kind.
#[derive(Default)]
struct Ready {
    accept: bool,
    outputs: Vec<(Src, usize)>,
    stdins: Vec<Src>,
    clients: Vec<usize>,
}

impl Ready {
    fn sort(slots: Vec<Slot>, ready: Vec<bool>) -> Ready {
        let mut r = Ready::default();
        for (slot, ready) in slots.into_iter().zip(ready) {
            if !ready {
                continue;
            }
            match slot {
                Slot::Listener => r.accept = true,
                Slot::Pidfd => {}
                Slot::Output(src, i) => r.outputs.push((src, i)),
                Slot::Stdin(src) => r.stdins.push(src),
                Slot::Client(i) => r.clients.push(i),
            }
        }
        r
    }
}

impl Supervisor {
    fn save_state(&self) {
        if let Ok(b) = serde_json::to_vec(&self.state) {
            if let Err(e) = replace_file(&state_path(&self.state_dir), &b, 0o600) {
                tracing::error!("write state: {e}");
            }
        }
    }

    fn exited(&self) -> bool {
        self.state.exit.is_some()
    }

    fn run(&mut self) {
        loop {
            self.drop_stalled_clients();
            self.clients.retain(|c| !c.gone);
            if self.done() {
                break;
            }
            self.poll_once();
            self.reap();
            if self.strays_until.is_some_and(|t| t <= Instant::now()) {
                self.strays_until = None;
            }
            if self.shed_at.is_some_and(|t| t <= Instant::now()) {
                self.shed_at = None;
                if !self.exited() {
                    crate::runtime::host::shed_memory();
                }
            }
        }
        tracing::debug!("supervisor done");
    }

    /// Once the container exited: whether the clients need not be waited for any longer.
    fn done(&self) -> bool {
        let Some(at) = self.exited_at else {
            return false;
        };
        let busy = self
            .clients
            .iter()
            .any(|c| c.kind != Kind::Pending || c.pending() > 0);
        // Clients still draining the last output are waited for while they make
        // progress; idle ones at most LINGER.
        let idle = self.last_progress.elapsed() > LINGER;
        !busy || (at.elapsed() > LINGER && idle)
    }

    fn io_mut(&mut self, src: Src) -> Option<&mut Io> {
        match src {
            Src::Init => Some(&mut self.io),
            Src::Exec(id) => self
                .execs
                .iter_mut()
                .find(|e| e.id == id)
                .map(|e| &mut e.io),
        }
    }

    /// One round of the loop: poll everything, then serve what is ready.
    fn poll_once(&mut self) {
        let (mut fds, slots) = self.poll_set();
        let timeout = self.poll_timeout();
        match nix::poll::poll(&mut fds, PollTimeout::from(timeout)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return,
            Err(e) => {
                tracing::error!("poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        self.serve(Ready::sort(slots, ready));
    }

    /// The fds to poll and what each is for.
    fn poll_set(&self) -> (Vec<PollFd<'_>>, Vec<Slot>) {
        let mut fds: Vec<PollFd> = Vec::new();
        let mut slots: Vec<Slot> = Vec::new();
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        slots.push(Slot::Listener);
        self.push_process_fds(&mut fds, &mut slots);
        self.push_client_fds(&mut fds, &mut slots);
        (fds, slots)
    }

    /// The pidfds, the outputs (not read while a client is backpressured) and the stdins
    /// with input waiting, of the init and the execs.
    fn push_process_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>, slots: &mut Vec<Slot>) {
        if let Some(p) = &self.pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            slots.push(Slot::Pidfd);
        }
        for e in &self.execs {
            if let Some(p) = &e.pidfd {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                slots.push(Slot::Pidfd);
            }
        }
        let mut sources: Vec<(Src, &Io)> = vec![(Src::Init, &self.io)];
        for e in &self.execs {
            sources.push((Src::Exec(e.id), &e.io));
        }
        for (src, io) in sources {
            let read = !self.backpressured(src);
            for (i, (_, f)) in io.outputs.iter().enumerate() {
                let flags = if read {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                };
                fds.push(PollFd::new(f.as_fd(), flags));
                slots.push(Slot::Output(src, i));
            }
            if !io.stdin_buf.is_empty() {
                if let Some(s) = &io.stdin {
                    fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
                    slots.push(Slot::Stdin(src));
                }
            }
        }
    }

    /// The clients: read unless their process's stdin is full, written when output waits.
    fn push_client_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>, slots: &mut Vec<Slot>) {
        // A process that does not read its stdin holds back only the clients feeding it;
        // requests, watches and everyone else are always served.
        let init_full = self.io.stdin_buf.len() > HIGH_WATER;
        let full_execs: Vec<u64> = self
            .execs
            .iter()
            .filter(|e| e.io.stdin_buf.len() > HIGH_WATER)
            .map(|e| e.id)
            .collect();
        for (i, c) in self.clients.iter().enumerate() {
            let mut flags = PollFlags::empty();
            let held = match c.kind {
                Kind::Attach { stdin: true, .. } => init_full,
                Kind::Exec { id, stdin: true } => full_execs.contains(&id),
                _ => false,
            };
            if !held {
                flags |= PollFlags::POLLIN;
            }
            if c.pending() > 0 {
                flags |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.sock.as_fd(), flags));
            slots.push(Slot::Client(i));
        }
    }

    /// Short while clients are stalled or the container has exited (both end on a timer).
    fn poll_timeout(&self) -> u16 {
        let stalled = self.clients.iter().any(|c| c.stalled_since.is_some());
        let timeout = if self.strays_until.is_some() {
            STRAY_POLL_MS
        } else if self.exited_at.is_some() || stalled {
            200u16
        } else {
            10_000
        };
        match self.shed_at {
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now()).as_millis();
                timeout.min(u16::try_from(left).unwrap_or(u16::MAX))
            }
            None => timeout,
        }
    }

    fn serve(&mut self, ready: Ready) {
        if ready.accept {
            self.accept();
        }
        // Highest index first: an output that ended is removed from its list.
        for (src, i) in ready.outputs.into_iter().rev() {
            self.read_output(src, i);
        }
        for src in ready.stdins {
            if let Some(io) = self.io_mut(src) {
                io.write_stdin();
            }
        }
        for i in ready.clients {
            self.service_client(i);
        }
        self.flush_clients();
    }
}

/// Read the executor's report to EOF.
fn read_failure(mut f: File) -> Option<ExecFailure> {
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s.lines().find_map(|l| serde_json::from_str(l).ok())
}
