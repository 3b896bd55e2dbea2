//! The per-container supervisor: `berthd __supervise <state-dir>`.
//!
//! berthd starts one for each container start. It detaches (`setsid` and a fork) so that it
//! outlives berthd, creates the container through libcontainer while it is still
//! single-threaded, holds the container's stdio, writes its log, reaps it, records its exit
//! status atomically in the state dir and answers berthd on `<state-dir>/sup.sock`
//! (see [`crate::runtime::proto`]). It never uses tokio or threads.

pub mod executor;
pub mod lc;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use libcontainer::container::Container;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::logger::{self, Stream};
use crate::runtime::host;
use crate::runtime::proto::{
    self, Created, Event, ExitStatus, Reply, Request, SupervisorConfig, SupervisorState,
};
use crate::util::fs::atomic_write;
use crate::util::time::rfc3339_nano;
use executor::{BerthExecutor, ExecFailure};

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "__supervise";

/// The fd on which berthd reads the [`Created`] line.
const STATUS_FD: i32 = 3;

/// An attached client's output buffer above which the container's output is no longer read
/// (back-pressure), and the stdin buffer above which clients are no longer read.
const HIGH_WATER: usize = 1 << 20;

/// How long an attached client may hold the container's output back before it is dropped:
/// a reader that stopped reading never blocks the container for good.
const STALL_LIMIT: Duration = Duration::from_secs(5);

/// How long a supervisor waits for its clients after the container exited.
const LINGER: Duration = Duration::from_secs(5);

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

/// Entry point of the hidden subcommand; called by `main` before any thread exists.
pub fn main(args: &[String]) -> i32 {
    let Some(dir) = args.first() else {
        eprintln!("usage: berthd {SUBCOMMAND} <state-dir>");
        return 2;
    };
    let state_dir = PathBuf::from(dir);
    // SAFETY: fd 3 is the status pipe berthd passed; if it is not open, fcntl fails and
    // nothing is wrapped.
    let status = if fcntl(STATUS_FD, FcntlArg::F_GETFD).is_ok() {
        Some(unsafe { File::from_raw_fd(STATUS_FD) })
    } else {
        None
    };
    if let Some(s) = &status {
        let _ = fcntl(
            s.as_raw_fd(),
            FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    // Detach: a new session, and a fork so that the supervisor is no child of berthd.
    let _ = nix::unistd::setsid();
    // SAFETY: single-threaded here (no runtime has been built); the parent only exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            report_created(
                status,
                Created {
                    error: format!("fork supervisor: {e}"),
                    ..Default::default()
                },
            );
            return 1;
        }
    }
    match Supervisor::setup(&state_dir, status) {
        Ok(mut sup) => {
            sup.run();
            0
        }
        Err(()) => 1,
    }
}

fn report_created(status: Option<File>, created: Created) {
    if let Some(mut f) = status {
        if let Ok(mut line) = serde_json::to_vec(&created) {
            line.push(b'\n');
            let _ = f.write_all(&line);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Has not sent its request line yet.
    Pending,
    Watch,
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Attached to the exec process with this index in `Supervisor::execs`' ids.
    Exec {
        id: u64,
        stdin: bool,
    },
}

/// The stdio of a process: output pipes (or the pty master as stdout) and stdin.
struct Io {
    outputs: Vec<(Stream, File)>,
    pty: Option<File>,
    stdin: Option<File>,
    stdin_buf: Vec<u8>,
    /// Close stdin once `stdin_buf` is written.
    stdin_close: bool,
    /// Whether a client's stdin EOF closes the process's stdin.
    stdin_once: bool,
}

impl Io {
    fn write_stdin(&mut self) {
        let Some(s) = &mut self.stdin else {
            self.stdin_buf.clear();
            return;
        };
        while !self.stdin_buf.is_empty() {
            match s.write(&self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // The process closed its stdin.
                    self.stdin_buf.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
        if self.stdin_close {
            self.close_stdin();
        }
    }

    fn close_stdin(&mut self) {
        self.stdin_close = false;
        self.stdin = None;
    }

    /// A client's stdin reached EOF. With a TTY nothing happens (as dockerd: a terminal is
    /// never closed by one client going); otherwise `StdinOnce` closes the process's stdin
    /// once what was sent is written.
    fn on_stdin_eof(&mut self) {
        if self.pty.is_some() || !self.stdin_once {
            return;
        }
        if self.stdin_buf.is_empty() {
            self.close_stdin();
        } else {
            self.stdin_close = true;
        }
    }

    /// Queue input for the process (with a TTY, `stdin` is the pty master) and write what
    /// it takes now; the rest goes when the poll loop sees it writable.
    fn push_stdin(&mut self, data: &[u8]) {
        if self.stdin.is_some() {
            self.stdin_buf.extend_from_slice(data);
            self.write_stdin();
        }
    }

    /// Read one chunk of output `i` into `buf`: `Some((stream, n))`, or `None` (nothing now,
    /// or the output ended and was dropped).
    fn read(&mut self, i: usize, buf: &mut [u8]) -> Option<(Stream, usize)> {
        let (stream, f) = &mut self.outputs[i];
        let stream = *stream;
        match f.read(buf) {
            Ok(0) => {
                self.outputs.remove(i);
                None
            }
            Ok(n) => Some((stream, n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            // EIO on a pty master once the last slave fd is closed.
            Err(_) => {
                self.outputs.remove(i);
                None
            }
        }
    }
}

/// A `docker exec` process.
struct ExecProc {
    /// The supervisor's own number for it (clients refer to it).
    id: u64,
    /// berthd's exec ID.
    exec_id: String,
    pid: Pid,
    pidfd: Option<OwnedFd>,
    io: Io,
}

struct Client {
    sock: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// How much of `wbuf` was already sent (compacted lazily, so sending stays linear).
    wpos: usize,
    kind: Kind,
    /// Close once `wbuf` is flushed.
    closing: bool,
    gone: bool,
    /// Since when the client has been too far behind (output is held back meanwhile).
    stalled_since: Option<Instant>,
}

impl Client {
    fn queue_reply(&mut self, reply: &Reply) {
        if let Ok(line) = serde_json::to_vec(reply) {
            self.wbuf.extend_from_slice(&line);
            self.wbuf.push(b'\n');
        }
    }

    /// Bytes queued and not yet sent.
    fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    fn flush(&mut self) {
        while self.wpos < self.wbuf.len() {
            match nix::sys::socket::send(
                self.sock.as_raw_fd(),
                &self.wbuf[self.wpos..],
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => self.wpos += n,
                Err(nix::errno::Errno::EAGAIN) => {
                    if self.wpos > self.wbuf.len() / 2 {
                        self.wbuf.drain(..self.wpos);
                        self.wpos = 0;
                    }
                    return;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    self.gone = true;
                    self.wbuf.clear();
                    self.wpos = 0;
                    return;
                }
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.closing {
            self.gone = true;
        }
    }
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
    seccomp: Option<Option<oci_spec::runtime::LinuxSeccomp>>,
    log: Option<logger::jsonfile::Writer>,
    state: SupervisorState,
    report: Option<File>,
    exited_at: Option<Instant>,
    /// When a client last took bytes.
    last_progress: Instant,
}

fn nonblocking(fd: &impl AsRawFd) {
    if let Ok(flags) = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags));
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("create pipe: {e}"))
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall returned a fresh fd that we now own.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Supervisor {
    fn setup(state_dir: &Path, status: Option<File>) -> Result<Supervisor, ()> {
        let fail = |status: Option<File>, error: String, exit_code: i32| {
            tracing::error!("{error}");
            report_created(
                status,
                Created {
                    error,
                    exit_code,
                    ..Default::default()
                },
            );
        };
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if let Err(e) = std::env::set_current_dir(state_dir) {
            fail(
                status,
                format!("enter state dir {}: {e}", state_dir.display()),
                0,
            );
            return Err(());
        }
        init_logging(&state_dir.join("supervisor.log"));
        let cfg: SupervisorConfig = match std::fs::read(config_path(state_dir))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                fail(status, format!("read supervisor config: {e}"), 0);
                return Err(());
            }
        };
        let sock = socket_path(state_dir);
        let _ = std::fs::remove_file(&sock);
        // Bound relative to the state dir: the absolute path may exceed sun_path.
        let listener = match UnixListener::bind("sup.sock") {
            Ok(l) => l,
            Err(e) => {
                fail(status, format!("bind {}: {e}", sock.display()), 0);
                return Err(());
            }
        };
        nonblocking(&listener);
        if let Some(ns) = &cfg.netns {
            if let Err(e) = host::create_netns(ns) {
                fail(status, e, 0);
                return Err(());
            }
        }
        let cleanup_netns = |cfg: &SupervisorConfig| {
            if let Some(ns) = &cfg.netns {
                let _ = host::remove_netns(ns);
            }
        };
        let (report_r, report_w) = match pipe() {
            Ok(p) => p,
            Err(e) => {
                cleanup_netns(&cfg);
                fail(status, e, 0);
                return Err(());
            }
        };
        let executor = BerthExecutor {
            report_fd: report_w.as_raw_fd(),
            seccomp: None,
            drop_caps: Vec::new(),
        };
        let mut outputs = Vec::new();
        let mut stdin = None;
        let mut console = None;
        let stdio = if cfg.tty {
            let path = state_dir.join("console.sock");
            let _ = std::fs::remove_file(&path);
            match UnixListener::bind(&path) {
                Ok(l) => console = Some(l),
                Err(e) => {
                    cleanup_netns(&cfg);
                    fail(status, format!("bind console socket: {e}"), 0);
                    return Err(());
                }
            }
            lc::Stdio::Console(path)
        } else {
            let made = (|| -> Result<_, String> {
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                let in_r = if cfg.open_stdin {
                    let (in_r, in_w) = pipe()?;
                    stdin = Some(File::from(in_w));
                    in_r
                } else {
                    OwnedFd::from(
                        File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?,
                    )
                };
                // Read in reverse order: stdout first.
                outputs.push((Stream::Stderr, File::from(err_r)));
                outputs.push((Stream::Stdout, File::from(out_r)));
                Ok(lc::Stdio::Pipes {
                    stdin: in_r,
                    stdout: out_w,
                    stderr: err_w,
                })
            })();
            match made {
                Ok(s) => s,
                Err(e) => {
                    cleanup_netns(&cfg);
                    fail(status, e, 0);
                    return Err(());
                }
            }
        };
        let created = lc::create(&cfg.id, &cfg.lc_root, state_dir, executor, stdio);
        drop(report_w);
        let mut container = match created {
            Ok(c) => c,
            Err(e) => {
                // The executor's report, if any, names Docker's exit code and words.
                let failure = read_failure(File::from(report_r));
                let _ = lc::delete_stale(&cfg.lc_root, &cfg.id);
                cleanup_netns(&cfg);
                match failure {
                    Some(f) => fail(status, f.message, f.code),
                    None => fail(status, e, 0),
                }
                return Err(());
            }
        };
        let mut pty = None;
        if let Some(l) = console {
            match lc::receive_console(&l) {
                Ok(fd) => {
                    if let Some([h, w]) = cfg.console_size {
                        let _ = lc::resize(fd.as_raw_fd(), h, w);
                    }
                    let f = File::from(fd);
                    match (f.try_clone(), f.try_clone()) {
                        (Ok(out), Ok(input)) => {
                            outputs.push((Stream::Stdout, out));
                            stdin = Some(input);
                            pty = Some(f);
                        }
                        (Err(e), _) | (_, Err(e)) => {
                            let _ = lc::delete(&mut container);
                            cleanup_netns(&cfg);
                            fail(status, format!("duplicate pty: {e}"), 0);
                            return Err(());
                        }
                    }
                }
                Err(e) => {
                    let _ = lc::delete(&mut container);
                    cleanup_netns(&cfg);
                    fail(status, e, 0);
                    return Err(());
                }
            }
            let _ = std::fs::remove_file(state_dir.join("console.sock"));
        }
        let Some(init) = container.pid() else {
            let _ = lc::delete(&mut container);
            cleanup_netns(&cfg);
            fail(status, "container has no init process".to_string(), 0);
            return Err(());
        };
        for (_, f) in &outputs {
            nonblocking(f);
        }
        if let Some(s) = &stdin {
            nonblocking(s);
        }
        let log = if cfg.log.readable() {
            match logger::jsonfile::Writer::open(&cfg.log_path, &cfg.log) {
                Ok(w) => Some(w),
                Err(e) => {
                    let _ = lc::delete(&mut container);
                    cleanup_netns(&cfg);
                    fail(
                        status,
                        format!("open log {}: {e}", cfg.log_path.display()),
                        0,
                    );
                    return Err(());
                }
            }
        } else {
            None
        };
        let state = SupervisorState {
            supervisor_pid: std::process::id() as i32,
            pid: init.as_raw(),
            start_time: host::proc_start_time(init.as_raw()).unwrap_or(0),
            ..Default::default()
        };
        let stdin_once = cfg.stdin_once;
        let sup = Supervisor {
            pidfd: pidfd_open(init),
            cfg,
            state_dir: state_dir.to_path_buf(),
            container,
            init,
            listener,
            clients: Vec::new(),
            io: Io {
                outputs,
                pty,
                stdin,
                stdin_buf: Vec::new(),
                stdin_close: false,
                stdin_once,
            },
            execs: Vec::new(),
            seccomp: None,
            log,
            state,
            report: Some(File::from(report_r)),
            exited_at: None,
            last_progress: Instant::now(),
        };
        sup.save_state();
        report_created(
            status,
            Created {
                ok: true,
                pid: init.as_raw(),
                ..Default::default()
            },
        );
        Ok(sup)
    }

    fn save_state(&self) {
        if let Ok(b) = serde_json::to_vec(&self.state) {
            if let Err(e) = atomic_write(&state_path(&self.state_dir), &b, 0o600) {
                tracing::error!("write state: {e}");
            }
        }
    }

    fn exited(&self) -> bool {
        self.state.exit.is_some()
    }

    fn run(&mut self) {
        loop {
            // A reader that stays full holds back the others reading the same process: after
            // STALL_LIMIT it is dropped. The only reader of a process is never dropped; the
            // process waits for it, as with dockerd (`docker exec c cat big | less`).
            let source = |k: Kind| match k {
                Kind::Attach { .. } => Some(Src::Init),
                Kind::Exec { id, .. } => Some(Src::Exec(id)),
                _ => None,
            };
            let readers: Vec<(Option<Src>, bool)> = self
                .clients
                .iter()
                .map(|c| (source(c.kind), c.pending() > HIGH_WATER))
                .collect();
            for c in &mut self.clients {
                if c.pending() > HIGH_WATER {
                    let since = *c.stalled_since.get_or_insert_with(Instant::now);
                    let src = source(c.kind);
                    let others_waiting = readers.iter().any(|(s, full)| *s == src && !*full);
                    if since.elapsed() > STALL_LIMIT && others_waiting {
                        tracing::warn!("dropping a client that stopped reading");
                        c.gone = true;
                    }
                } else {
                    c.stalled_since = None;
                }
            }
            self.clients.retain(|c| !c.gone);
            if let Some(at) = self.exited_at {
                let busy = self
                    .clients
                    .iter()
                    .any(|c| c.kind != Kind::Pending || c.pending() > 0);
                // Clients still draining the last output are waited for while they make
                // progress; idle ones at most LINGER.
                let idle = self.last_progress.elapsed() > LINGER;
                if !busy || (at.elapsed() > LINGER && idle) {
                    break;
                }
            }
            self.poll_once();
            self.reap();
        }
        tracing::debug!("supervisor done");
    }

    /// Whether a client attached to process `src` is too far behind to read more output.
    fn backpressured(&self, src: Src) -> bool {
        self.clients.iter().any(|c| {
            c.pending() > HIGH_WATER
                && match (src, c.kind) {
                    (Src::Init, Kind::Attach { .. }) => true,
                    (Src::Exec(id), Kind::Exec { id: e, .. }) => id == e,
                    _ => false,
                }
        })
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

    fn poll_once(&mut self) {
        // What each pollfd is for.
        enum Slot {
            Listener,
            Pidfd,
            Output(Src, usize),
            Stdin(Src),
            Client(usize),
        }
        // A process that does not read its stdin holds back only the clients feeding it;
        // requests, watches and everyone else are always served.
        let init_full = self.io.stdin_buf.len() > HIGH_WATER;
        let full_execs: Vec<u64> = self
            .execs
            .iter()
            .filter(|e| e.io.stdin_buf.len() > HIGH_WATER)
            .map(|e| e.id)
            .collect();
        let mut fds: Vec<PollFd> = Vec::new();
        let mut slots: Vec<Slot> = Vec::new();
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        slots.push(Slot::Listener);
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
        let stalled = self.clients.iter().any(|c| c.stalled_since.is_some());
        let timeout = if self.exited_at.is_some() || stalled {
            200u16
        } else {
            10_000
        };
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
        let mut outputs = Vec::new();
        let mut stdins = Vec::new();
        let mut clients = Vec::new();
        let mut accept = false;
        for (slot, r) in slots.into_iter().zip(ready) {
            if !r {
                continue;
            }
            match slot {
                Slot::Listener => accept = true,
                Slot::Pidfd => {}
                Slot::Output(src, i) => outputs.push((src, i)),
                Slot::Stdin(src) => stdins.push(src),
                Slot::Client(i) => clients.push(i),
            }
        }
        if accept {
            self.accept();
        }
        // Highest index first: an output that ended is removed from its list.
        for (src, i) in outputs.into_iter().rev() {
            self.read_output(src, i);
        }
        for src in stdins {
            if let Some(io) = self.io_mut(src) {
                io.write_stdin();
            }
        }
        for i in clients {
            self.service_client(i);
        }
        for c in &mut self.clients {
            let before = c.pending();
            c.flush();
            if c.pending() < before {
                self.last_progress = Instant::now();
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    nonblocking(&sock);
                    self.clients.push(Client {
                        sock,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        wpos: 0,
                        kind: Kind::Pending,
                        closing: false,
                        gone: false,
                        stalled_since: None,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    /// Read one chunk of output `i` of `src` and deliver it; false when nothing was read.
    fn read_output(&mut self, src: Src, i: usize) -> bool {
        let mut buf = [0u8; 64 * 1024];
        let got = match self.io_mut(src) {
            Some(io) if i < io.outputs.len() => io.read(i, &mut buf),
            _ => None,
        };
        match got {
            Some((stream, n)) => {
                self.deliver(src, stream, &buf[..n]);
                true
            }
            None => false,
        }
    }

    fn deliver(&mut self, src: Src, stream: Stream, data: &[u8]) {
        if src == Src::Init {
            if let Some(log) = &mut self.log {
                if let Err(e) = log.write(stream, data, SystemTime::now()) {
                    tracing::error!("write log: {e}");
                }
            }
        }
        let kind = match stream {
            Stream::Stdout => proto::STDOUT,
            Stream::Stderr => proto::STDERR,
        };
        for c in &mut self.clients {
            if c.closing {
                continue;
            }
            let wanted = match (src, c.kind) {
                (Src::Init, Kind::Attach { stdout, stderr, .. }) => match stream {
                    Stream::Stdout => stdout,
                    Stream::Stderr => stderr,
                },
                (Src::Exec(id), Kind::Exec { id: e, .. }) => id == e,
                _ => false,
            };
            if wanted {
                proto::put_frame(&mut c.wbuf, kind, data);
            }
        }
    }

    fn service_client(&mut self, i: usize) {
        let mut buf = [0u8; 64 * 1024];
        let n = match self.clients[i].sock.read(&mut buf) {
            Ok(0) => {
                match self.clients[i].kind {
                    Kind::Attach { stdin: true, .. } => self.io.on_stdin_eof(),
                    Kind::Exec { id, stdin: true } => {
                        if let Some(io) = self.io_mut(Src::Exec(id)) {
                            io.on_stdin_eof();
                        }
                    }
                    _ => {}
                }
                self.clients[i].gone = true;
                return;
            }
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return
            }
            Err(_) => {
                self.clients[i].gone = true;
                return;
            }
        };
        self.clients[i].rbuf.extend_from_slice(&buf[..n]);
        loop {
            match self.clients[i].kind {
                Kind::Pending => {
                    let Some(pos) = self.clients[i].rbuf.iter().position(|&b| b == b'\n') else {
                        if self.clients[i].rbuf.len() > 64 * 1024 {
                            self.clients[i].gone = true;
                        }
                        return;
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
                        return;
                    }
                    if c.kind == Kind::Watch {
                        if let Some(exit) = self.state.exit.clone() {
                            push_event(c, &Event::Exited(exit));
                        }
                    }
                }
                Kind::Watch => {
                    self.clients[i].rbuf.clear();
                    return;
                }
                Kind::Attach { stdin, .. } | Kind::Exec { stdin, .. } => {
                    // Walk the complete frames in place, then drop them in one go.
                    let rbuf = std::mem::take(&mut self.clients[i].rbuf);
                    let src = match self.clients[i].kind {
                        Kind::Exec { id, .. } => Src::Exec(id),
                        _ => Src::Init,
                    };
                    let mut off = 0;
                    while let Some((kind, len)) = proto::frame_len(&rbuf[off..]) {
                        let payload = &rbuf[off + proto::HEADER..off + proto::HEADER + len];
                        off += proto::HEADER + len;
                        if !stdin {
                            continue;
                        }
                        if let Some(io) = self.io_mut(src) {
                            match kind {
                                proto::STDIN => io.push_stdin(payload),
                                proto::STDIN_CLOSE => io.on_stdin_eof(),
                                _ => {}
                            }
                        }
                    }
                    let mut rest = rbuf;
                    rest.drain(..off);
                    self.clients[i].rbuf = rest;
                    return;
                }
            }
        }
    }

    fn handle(&mut self, i: usize, req: Request) -> Reply {
        match req {
            Request::Start => self.start(),
            Request::Watch => {
                self.clients[i].kind = Kind::Watch;
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
            Request::Kill { signal } => {
                if self.exited() {
                    return Reply::error("container is not running");
                }
                let sig = match Signal::try_from(signal) {
                    Ok(s) => s,
                    Err(_) => return Reply::error(format!("invalid signal: {signal}")),
                };
                match nix::sys::signal::kill(self.init, sig) {
                    Ok(()) => Reply::ok(),
                    Err(e) => Reply::error(format!("kill {}: {e}", self.init)),
                }
            }
            Request::Pause | Request::Resume => {
                if self.exited() {
                    return Reply::error("container is not running");
                }
                let pause = matches!(req, Request::Pause);
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
            Request::Resize {
                height,
                width,
                exec,
            } => {
                let pty = match &exec {
                    None => self.io.pty.as_ref(),
                    Some(x) => self
                        .execs
                        .iter()
                        .find(|e| &e.exec_id == x)
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
            Request::State => Reply {
                ok: true,
                state: Some(self.state.clone()),
                ..Default::default()
            },
            Request::Exec {
                exec_id,
                process,
                tty,
                stdin,
                attach,
                console_size,
                add_caps,
            } => self.exec(
                i,
                exec_id,
                process,
                tty,
                stdin,
                attach,
                console_size,
                add_caps,
            ),
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
        // libcontainer's work is done: its code need not stay resident for the container's life.
        host::shed_memory();
        match failure {
            Some(f) => Reply {
                ok: false,
                error: Some(f.message),
                exit_code: f.code,
                ..Default::default()
            },
            None => Reply::ok(),
        }
    }

    /// `docker exec`: start `process` in the container through libcontainer's tenant builder.
    #[allow(clippy::too_many_arguments)]
    fn exec(
        &mut self,
        client: usize,
        exec_id: String,
        process: serde_json::Value,
        tty: bool,
        open_stdin: bool,
        attach: bool,
        console_size: Option<[u16; 2]>,
        add_caps: Vec<String>,
    ) -> Reply {
        if self.exited() || !self.state.started {
            return Reply::error("container is not running");
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let process_path = self.state_dir.join(format!("exec-{id}.json"));
        let bytes = match serde_json::to_vec(&process) {
            Ok(b) => b,
            Err(e) => return Reply::error(format!("encode exec process: {e}")),
        };
        if let Err(e) = atomic_write(&process_path, &bytes, 0o600) {
            return Reply::error(format!("write exec process: {e}"));
        }
        let result = self.exec_inner(id, &process_path, tty, open_stdin, console_size, add_caps);
        let _ = std::fs::remove_file(&process_path);
        match result {
            Ok((pid, io)) => {
                self.execs.push(ExecProc {
                    id,
                    exec_id,
                    pid,
                    pidfd: pidfd_open(pid),
                    io,
                });
                if attach {
                    self.clients[client].kind = Kind::Exec {
                        id,
                        stdin: open_stdin,
                    };
                }
                Reply {
                    ok: true,
                    pid: pid.as_raw(),
                    ..Default::default()
                }
            }
            Err((message, code)) => Reply {
                ok: false,
                error: Some(message),
                exit_code: code,
                ..Default::default()
            },
        }
    }

    fn exec_inner(
        &mut self,
        id: u64,
        process_path: &Path,
        tty: bool,
        open_stdin: bool,
        console_size: Option<[u16; 2]>,
        add_caps: Vec<String>,
    ) -> Result<(Pid, Io), (String, i32)> {
        let plain = |e: String| (e, 0);
        let (report_r, report_w) = pipe().map_err(plain)?;
        let drop_caps = add_caps
            .iter()
            .filter_map(|c| c.parse::<caps::Capability>().ok())
            .collect();
        let executor = BerthExecutor {
            report_fd: report_w.as_raw_fd(),
            seccomp: self
                .seccomp
                .get_or_insert_with(|| load_seccomp(&self.state_dir))
                .clone(),
            drop_caps,
        };
        let mut io = Io {
            outputs: Vec::new(),
            pty: None,
            stdin: None,
            stdin_buf: Vec::new(),
            stdin_close: false,
            stdin_once: true,
        };
        let mut console = None;
        let console_path = self.state_dir.join(format!("exec-{id}.sock"));
        let stdio = if tty {
            let _ = std::fs::remove_file(&console_path);
            let l = UnixListener::bind(&console_path)
                .map_err(|e| plain(format!("bind console socket: {e}")))?;
            console = Some(l);
            lc::Stdio::Console(console_path.clone())
        } else {
            let (out_r, out_w) = pipe().map_err(plain)?;
            let (err_r, err_w) = pipe().map_err(plain)?;
            let in_r = if open_stdin {
                let (in_r, in_w) = pipe().map_err(plain)?;
                io.stdin = Some(File::from(in_w));
                in_r
            } else {
                OwnedFd::from(
                    File::open("/dev/null").map_err(|e| plain(format!("open /dev/null: {e}")))?,
                )
            };
            io.outputs.push((Stream::Stderr, File::from(err_r)));
            io.outputs.push((Stream::Stdout, File::from(out_r)));
            lc::Stdio::Pipes {
                stdin: in_r,
                stdout: out_w,
                stderr: err_w,
            }
        };
        let fds_before = open_fds();
        let started = lc::exec(
            &self.cfg.id,
            &self.cfg.lc_root,
            process_path,
            executor,
            stdio,
        );
        drop(report_w);
        if started.is_err() {
            // libcontainer 0.7 leaks its channel fds when a tenant build fails half-way.
            close_new_fds(&fds_before);
            let _ = std::fs::remove_file(&console_path);
        }
        let failure = read_failure(File::from(report_r));
        let pid = match (started, failure) {
            (_, Some(f)) if f.code != 0 => return Err((f.message, f.code)),
            (Ok(pid), _) => pid,
            (Err(e), Some(f)) => return Err((format!("{e}: {}", f.message), 0)),
            (Err(e), None) => return Err((e, 0)),
        };
        if let Some(l) = console {
            let fd = lc::receive_console(&l).map_err(plain)?;
            let _ = std::fs::remove_file(&console_path);
            if let Some([h, w]) = console_size {
                let _ = lc::resize(fd.as_raw_fd(), h, w);
            }
            let f = File::from(fd);
            let dup = |f: &File| {
                f.try_clone()
                    .map_err(|e| plain(format!("duplicate pty: {e}")))
            };
            io.outputs.push((Stream::Stdout, dup(&f)?));
            io.stdin = Some(dup(&f)?);
            io.pty = Some(f);
        }
        for (_, f) in &io.outputs {
            nonblocking(f);
        }
        if let Some(s) = &io.stdin {
            nonblocking(s);
        }
        if let Some(p) = &io.pty {
            nonblocking(p);
        }
        Ok((pid, io))
    }

    /// Reap every exited child: the init's exit ends the container, an exec's ends the exec.
    fn reap(&mut self) {
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
        let oom_killed = host::oom_kills(&self.cfg.cgroup_path) > 0;
        if let Err(e) = lc::delete(&mut self.container) {
            tracing::warn!("delete container: {e}");
        }
        if let Some(ns) = &self.cfg.netns {
            if let Err(e) = host::remove_netns(ns) {
                tracing::warn!("remove netns: {e}");
            }
        }
        let status = ExitStatus {
            exit_code: code,
            oom_killed,
            finished_at: rfc3339_nano(SystemTime::now()),
            error: String::new(),
        };
        if let Ok(b) = serde_json::to_vec(&status) {
            if let Err(e) = atomic_write(&exit_path(&self.state_dir), &b, 0o600) {
                tracing::error!("write exit status: {e}");
            }
        }
        self.state.exit = Some(status.clone());
        // The pidfd stays readable once the init is reaped: stop polling it.
        self.pidfd = None;
        self.io.stdin = None;
        self.io.pty = None;
        // Exec processes died with the container's pid namespace; reap them now.
        self.reap();
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
        self.exited_at = Some(Instant::now());
    }
}

/// Which process an output, a stdin or a client belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    Init,
    Exec(u64),
}

/// The fds open in this process.
fn open_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Close the fds that were not open before (what a failed libcontainer call left behind).
/// The supervisor is single-threaded, so nothing else opened them meanwhile.
fn close_new_fds(before: &[i32]) {
    for fd in open_fds() {
        if !before.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// The container's seccomp profile, from the bundle.
fn load_seccomp(state_dir: &Path) -> Option<oci_spec::runtime::LinuxSeccomp> {
    let spec = oci_spec::runtime::Spec::load(state_dir.join("config.json")).ok()?;
    spec.linux().as_ref()?.seccomp().clone()
}

fn push_event(c: &mut Client, event: &Event) {
    if let Ok(b) = serde_json::to_vec(event) {
        proto::put_frame(&mut c.wbuf, proto::EVENT, &b);
    }
}

/// Read the executor's report to EOF.
fn read_failure(mut f: File) -> Option<ExecFailure> {
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s.lines().find_map(|l| serde_json::from_str(l).ok())
}

/// The supervisor's own log (libcontainer logs through `tracing` too): never fd 2, which the
/// container's init would inherit.
fn init_logging(path: &Path) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(file) = file {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .try_init();
    }
}
