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

use crate::logger::{self, LogConfig, Stream};
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
}

struct Client {
    sock: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    kind: Kind,
    /// Close once `wbuf` is flushed.
    closing: bool,
    gone: bool,
}

impl Client {
    fn queue_reply(&mut self, reply: &Reply) {
        if let Ok(line) = serde_json::to_vec(reply) {
            self.wbuf.extend_from_slice(&line);
            self.wbuf.push(b'\n');
        }
    }

    fn flush(&mut self) {
        while !self.wbuf.is_empty() {
            match nix::sys::socket::send(
                self.sock.as_raw_fd(),
                &self.wbuf,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    self.gone = true;
                    self.wbuf.clear();
                    return;
                }
            }
        }
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
    /// stdout and stderr pipes, or the pty master as stdout.
    outputs: Vec<(Stream, File)>,
    pty: Option<File>,
    stdin: Option<File>,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    log: Option<logger::jsonfile::Writer>,
    state: SupervisorState,
    report: Option<File>,
    exited_at: Option<Instant>,
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
                outputs.push((Stream::Stdout, File::from(out_r)));
                outputs.push((Stream::Stderr, File::from(err_r)));
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
                    match f.try_clone() {
                        Ok(out) => {
                            outputs.push((Stream::Stdout, out));
                            pty = Some(f);
                        }
                        Err(e) => {
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
        let sup = Supervisor {
            pidfd: pidfd_open(init),
            cfg,
            state_dir: state_dir.to_path_buf(),
            container,
            init,
            listener,
            clients: Vec::new(),
            outputs,
            pty,
            stdin,
            stdin_buf: Vec::new(),
            stdin_close: false,
            log,
            state,
            report: Some(File::from(report_r)),
            exited_at: None,
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
            self.clients.retain(|c| !c.gone);
            if let Some(at) = self.exited_at {
                let busy = self
                    .clients
                    .iter()
                    .any(|c| c.kind != Kind::Pending || !c.wbuf.is_empty());
                if !busy || at.elapsed() > LINGER {
                    break;
                }
            }
            self.poll_once();
            self.reap();
        }
        tracing::debug!("supervisor done");
    }

    /// Whether an attached client is too far behind to read more output.
    fn backpressured(&self) -> bool {
        self.clients
            .iter()
            .any(|c| matches!(c.kind, Kind::Attach { .. }) && c.wbuf.len() > HIGH_WATER)
    }

    fn poll_once(&mut self) {
        // Indexes into the pollfd list: listener, pidfd, outputs, stdin, clients.
        let read_outputs = !self.backpressured();
        let stdin_full = self.stdin_buf.len() > HIGH_WATER;
        let mut fds: Vec<PollFd> = Vec::new();
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        let pidfd_idx = self.pidfd.as_ref().map(|p| {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let out_base = fds.len();
        for (_, f) in &self.outputs {
            let flags = if read_outputs {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            };
            fds.push(PollFd::new(f.as_fd(), flags));
        }
        let stdin_idx = match &self.stdin {
            Some(s) if !self.stdin_buf.is_empty() => {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
                Some(fds.len() - 1)
            }
            _ => None,
        };
        let client_base = fds.len();
        for c in &self.clients {
            let mut flags = PollFlags::empty();
            if !stdin_full {
                flags |= PollFlags::POLLIN;
            }
            if !c.wbuf.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.sock.as_fd(), flags));
        }
        let timeout = if self.exited_at.is_some() {
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
        let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
        let listener_ready = ready(0);
        let _pid_ready = pidfd_idx.map(ready);
        let outs: Vec<bool> = (0..self.outputs.len())
            .map(|i| ready(out_base + i))
            .collect();
        let stdin_ready = stdin_idx.map(ready).unwrap_or(false);
        let clients: Vec<bool> = (0..self.clients.len())
            .map(|i| ready(client_base + i))
            .collect();
        drop(fds);
        if listener_ready {
            self.accept();
        }
        for (i, r) in outs.into_iter().enumerate().rev() {
            if r {
                self.read_output(i);
            }
        }
        if stdin_ready {
            self.write_stdin();
        }
        for (i, r) in clients.into_iter().enumerate() {
            if r {
                self.service_client(i);
            }
        }
        for c in &mut self.clients {
            c.flush();
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
                        kind: Kind::Pending,
                        closing: false,
                        gone: false,
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

    /// Read one chunk of output `i`; at EOF the output is dropped.
    fn read_output(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 64 * 1024];
        let (stream, f) = &mut self.outputs[i];
        let stream = *stream;
        match f.read(&mut buf) {
            Ok(0) => {
                self.outputs.remove(i);
                false
            }
            Ok(n) => {
                self.deliver(stream, &buf[..n]);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            // EIO on a pty master once the last slave fd is closed.
            Err(_) => {
                self.outputs.remove(i);
                false
            }
        }
    }

    fn deliver(&mut self, stream: Stream, data: &[u8]) {
        if let Some(log) = &mut self.log {
            if let Err(e) = log.write(stream, data, SystemTime::now()) {
                tracing::error!("write log: {e}");
            }
        }
        let kind = match stream {
            Stream::Stdout => proto::STDOUT,
            Stream::Stderr => proto::STDERR,
        };
        for c in &mut self.clients {
            if let Kind::Attach { stdout, stderr, .. } = c.kind {
                let wanted = match stream {
                    Stream::Stdout => stdout,
                    Stream::Stderr => stderr,
                };
                if wanted && !c.closing {
                    proto::put_frame(&mut c.wbuf, kind, data);
                }
            }
        }
    }

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
                    // The container closed its stdin.
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
        if self.pty.is_some() {
            // A pty has no half-close: send the terminal's EOF character.
            self.stdin_buf.push(4);
            self.stdin_close = false;
            return;
        }
        self.stdin = None;
    }

    fn service_client(&mut self, i: usize) {
        let mut buf = [0u8; 64 * 1024];
        let n = match self.clients[i].sock.read(&mut buf) {
            Ok(0) => {
                let c = &mut self.clients[i];
                if let Kind::Attach { stdin: true, .. } = c.kind {
                    self.on_stdin_eof();
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
                Kind::Attach { stdin, .. } => {
                    let Some((kind, len)) = proto::frame_len(&self.clients[i].rbuf) else {
                        return;
                    };
                    let frame: Vec<u8> =
                        self.clients[i].rbuf.drain(..proto::HEADER + len).collect();
                    if !stdin {
                        continue;
                    }
                    match kind {
                        proto::STDIN if self.stdin.is_some() || self.pty.is_some() => {
                            self.stdin_buf.extend_from_slice(&frame[proto::HEADER..]);
                            self.write_stdin();
                        }
                        proto::STDIN_CLOSE => self.on_stdin_eof(),
                        _ => {}
                    }
                }
            }
        }
    }

    /// An attached client closed its stdin: with `StdinOnce`, so does the container's.
    fn on_stdin_eof(&mut self) {
        if !self.cfg.stdin_once {
            return;
        }
        if self.stdin_buf.is_empty() {
            self.close_stdin();
            if !self.stdin_buf.is_empty() {
                self.write_stdin();
            }
        } else {
            self.stdin_close = true;
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
            Request::Resize { height, width } => match &self.pty {
                Some(p) => match lc::resize(p.as_raw_fd(), height, width) {
                    Ok(()) => Reply::ok(),
                    Err(e) => Reply::error(e),
                },
                None => Reply::error("the container has no tty"),
            },
            Request::State => Reply {
                ok: true,
                state: Some(self.state.clone()),
                ..Default::default()
            },
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

    /// Reap every exited child; the init's exit ends the container.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.init => self.on_exit(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.init => {
                    self.on_exit(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    }

    fn on_exit(&mut self, code: i32) {
        if self.exited() {
            return;
        }
        // Drain what the container wrote before it ended.
        for _ in 0..4096 {
            if self.outputs.is_empty() {
                break;
            }
            let mut progressed = false;
            for i in (0..self.outputs.len()).rev() {
                progressed |= self.read_output(i);
            }
            if !progressed {
                break;
            }
        }
        self.outputs.clear();
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
        self.stdin = None;
        self.pty = None;
        for c in &mut self.clients {
            match c.kind {
                Kind::Watch => {
                    if oom_killed {
                        push_event(c, &Event::Oom);
                    }
                    push_event(c, &Event::Exited(status.clone()));
                }
                Kind::Attach { .. } => c.closing = true,
                Kind::Pending => {}
            }
            c.flush();
        }
        self.exited_at = Some(Instant::now());
    }
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

/// Whether a log config can be read back (`docker logs`).
pub fn log_readable(cfg: &LogConfig) -> bool {
    cfg.readable()
}
