//! Published ports through a userland proxy (dockerd's `docker-proxy`): berthd binds each host
//! port itself, so a taken port fails the start with dockerd's `port is already allocated`
//! text, and hands the bound sockets to one proxy process per container, the same binary
//! under [`SUBCOMMAND`]. Like a supervisor, the proxy is detached from berthd and survives
//! its restart; berthd finds it again by pid and start time.
//!
//! The hand-off: berthd starts `berthd __proxy <json>` ([`spawn`]) with the bound sockets at
//! descriptors 3, 4, … and the write end of a readiness pipe after them; the JSON names each
//! port's spec and descriptor. The proxy takes its sockets into a current-thread tokio
//! runtime, writes `ok` (or its error) to the pipe and serves until SIGTERM/SIGINT:
//!
//! - TCP: each accepted client gets a connection to the container's address, and the bytes
//!   move both ways with `splice(2)` through a pipe (no copy through user space); when one
//!   side reaches EOF the other side's write half is shut down, as docker-proxy does.
//! - UDP: each client address gets its own connected socket towards the container; replies
//!   go back from the bound socket (from the very address the client sent to, for a wildcard
//!   bind, through `IP_PKTINFO`); a flow expires after 90 s without traffic, and at most
//!   [`UDP_MAX_FLOWS`] flows exist at once.

use std::collections::HashMap;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::firewall::Proto;
use super::NetworkError;

/// The hidden subcommand that runs a proxy.
pub const SUBCOMMAND: &str = "__proxy";

/// One forwarded port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub proto: Proto,
    /// `0.0.0.0` / `::` for all addresses.
    pub host_ip: IpAddr,
    /// `0` asks the kernel for a free port (from the ephemeral range) at [`bind`].
    pub host_port: u16,
    pub container_ip: IpAddr,
    pub container_port: u16,
}

/// A running proxy process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyProcess {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`, which tells the pid apart from a later reuse.
    pub start_time: u64,
}

/// How long a UDP flow lives without traffic (docker-proxy's `UDPConnTrackTimeout`).
pub const UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most UDP flows (client addresses) one bound port serves at once; datagrams from further
/// clients are dropped until a flow expires.
pub const UDP_MAX_FLOWS: usize = 1024;

/// The TCP listen backlog.
const BACKLOG: libc::c_int = 1024;

/// How long [`spawn`] waits for the proxy to take its sockets.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`stop`] waits after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);

/// The largest UDP payload.
const UDP_BUF: usize = 65535;

/// The pipe size (and splice chunk) of a TCP relay direction.
const SPLICE_PIPE: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// bind

/// Bind the host side of `spec` (TCP: listening; UDP: bound), close-on-exec, `SO_REUSEADDR`
/// for TCP (as dockerd: for UDP the option would let a second socket share the port, so a
/// taken port would go unnoticed), `IPV6_V6ONLY` for IPv6, and for UDP the packet-info option
/// that lets replies leave from the address a client sent to. Returns the socket and the port
/// really bound (the kernel's choice for `0`). A port in use gives dockerd's
/// `Bind for {ip}:{port} failed: port is already allocated` (a conflict).
pub fn bind(spec: &PortSpec) -> Result<(OwnedFd, u16), NetworkError> {
    let addr = SocketAddr::new(spec.host_ip, spec.host_port);
    let what = format!("{} {addr}", spec.proto.as_str());
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let ty = match spec.proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    };
    // SAFETY: socket() has no memory-safety preconditions.
    let raw = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(NetworkError::io(
            format!("create socket for {what}"),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: `raw` is a descriptor socket() just returned, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let opt = |level, name, label: &str| {
        setsockopt_int(fd.as_fd(), level, name, 1)
            .map_err(|e| NetworkError::io(format!("set {label} on {what}"), e))
    };
    if domain == libc::AF_INET6 {
        opt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, "IPV6_V6ONLY")?;
    }
    match spec.proto {
        Proto::Tcp => opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR")?,
        Proto::Udp if domain == libc::AF_INET => {
            opt(libc::IPPROTO_IP, libc::IP_PKTINFO, "IP_PKTINFO")?
        }
        Proto::Udp => opt(
            libc::IPPROTO_IPV6,
            libc::IPV6_RECVPKTINFO,
            "IPV6_RECVPKTINFO",
        )?,
    }
    let (storage, len) = sockaddr_of(addr);
    // SAFETY: `storage` holds a sockaddr of the family of the socket, `len` bytes long.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &storage as *const _ as *const libc::sockaddr,
            len,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EADDRINUSE) {
            return Err(NetworkError::conflict(format!(
                "Bind for {addr} failed: port is already allocated"
            )));
        }
        return Err(NetworkError::io(format!("bind {what}"), e));
    }
    if spec.proto == Proto::Tcp {
        // SAFETY: listen() on a descriptor we own.
        if unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) } < 0 {
            return Err(NetworkError::io(
                format!("listen on {what}"),
                io::Error::last_os_error(),
            ));
        }
    }
    let port = local_addr(fd.as_fd())
        .map_err(|e| NetworkError::io(format!("read the address bound for {what}"), e))?
        .port();
    Ok((fd, port))
}

fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int that lives across the call, with its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A socket address as the C structures take it.
fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data, for which all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// The socket address in a C structure filled by the kernel.
fn socket_addr_from(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data, for which all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `storage`.
    let r = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            &mut storage as *mut _ as *mut libc::sockaddr,
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    socket_addr_from(&storage)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an inet socket"))
}

// ---------------------------------------------------------------------------------------------
// spawn, alive, stop

/// The proxy's argument: what each inherited descriptor is.
#[derive(Debug, Serialize, Deserialize)]
struct Handoff {
    ports: Vec<HandedPort>,
    /// The write end of the readiness pipe: `ok\n`, or the error, then closed.
    ready_fd: RawFd,
}

#[derive(Debug, Serialize, Deserialize)]
struct HandedPort {
    #[serde(flatten)]
    spec: PortSpec,
    fd: RawFd,
}

/// Start one proxy process (`exe` = this binary) for all of a container's `ports`, each with
/// its bound socket (from [`bind`], `host_port` already the real one). The process is
/// detached (own session), inherits only these sockets, and runs until [`stop`]. Returns once
/// the proxy has taken its sockets (blocking, for at most a few seconds: call it off the
/// async workers). The process is berthd's child until berthd restarts: [`stop`] reaps it.
pub fn spawn(exe: &Path, ports: Vec<(PortSpec, OwnedFd)>) -> Result<ProxyProcess, NetworkError> {
    spawn_owned(exe, "", ports)
}

/// [`spawn`], with `owner` as one more argument the proxy ignores: berthd names the container
/// there (`<data-root>/network/<container-id>`), so that it can find a proxy it started but
/// did not get to record (see [`owned_by`]).
pub fn spawn_owned(
    exe: &Path,
    owner: &str,
    ports: Vec<(PortSpec, OwnedFd)>,
) -> Result<ProxyProcess, NetworkError> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| NetworkError::io("create the proxy readiness pipe", e.into()))?;
    // The child's descriptors: the sockets at 3, 4, …, then the readiness pipe.
    let mut sources: Vec<RawFd> = ports.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    sources.push(ready_w.as_raw_fd());
    let handoff = Handoff {
        ports: ports
            .iter()
            .enumerate()
            .map(|(i, (spec, _))| HandedPort {
                spec: spec.clone(),
                fd: 3 + i as RawFd,
            })
            .collect(),
        ready_fd: 3 + ports.len() as RawFd,
    };
    let json = serde_json::to_string(&handoff)
        .map_err(|e| NetworkError::internal(format!("encode the proxy hand-off: {e}")))?;
    // Above every target slot, so that moving one socket never overwrites another.
    let base = 3 + sources.len() as RawFd;
    let mut parked: Vec<RawFd> = vec![-1; sources.len()];
    let mut cmd = crate::util::exe::command(exe);
    cmd.arg(SUBCOMMAND).arg(&json);
    if !owner.is_empty() {
        cmd.arg(owner);
    }
    cmd.env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the child only calls fcntl, dup2, close_range and setsid,
    // which are async-signal-safe, and writes into `parked`, allocated before the fork. Each
    // source is first duplicated above every target slot (close-on-exec), then moved to its
    // slot with dup2, which leaves the slot without close-on-exec; every other descriptor from
    // `base` up is marked close-on-exec (std's exec-error pipe among them still works until
    // the exec). setsid puts the proxy in its own session, away from berthd's signals.
    unsafe {
        cmd.pre_exec(move || {
            for (slot, &src) in parked.iter_mut().zip(sources.iter()) {
                let fd = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, base);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                *slot = fd;
            }
            for (i, &fd) in parked.iter().enumerate() {
                if libc::dup2(fd, 3 + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // Fails only on kernels before 5.11, where berthd's descriptors (all close-on-exec
            // already, as std opens them) are closed at the exec anyway.
            libc::syscall(
                libc::SYS_close_range,
                base as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| NetworkError::io(format!("start the port proxy {}", exe.display()), e))?;
    // The child holds the sockets now; berthd does not need them.
    drop(ready_w);
    drop(ports);
    let pid = child.id() as i32;
    // Dropping a std Child neither kills nor reaps it: stop() reaps.
    drop(child);
    let started = crate::runtime::host::proc_start_time(pid);
    match (wait_ready(ready_r, READY_TIMEOUT), started) {
        (Ok(()), Some(start_time)) => Ok(ProxyProcess { pid, start_time }),
        (r, _) => {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
            let why = match r {
                Err(e) => e,
                Ok(()) => "its process vanished".to_string(),
            };
            Err(NetworkError::internal(format!(
                "start the port proxy: {why}"
            )))
        }
    }
}

/// Read the proxy's readiness line: `Ok` for `ok`, its error text otherwise.
fn wait_ready(r: OwnedFd, timeout: Duration) -> Result<(), String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("not ready after {} s", timeout.as_secs()));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(format!("wait for readiness: {e}")),
        }
        let mut buf = [0u8; 512];
        match nix::unistd::read(r.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.ends_with(b"\n") || got.len() > 4096 {
                    break;
                }
            }
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(e) => return Err(format!("read readiness: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&got);
    let text = text.trim();
    if text == "ok" {
        Ok(())
    } else if text.is_empty() {
        Err("it exited before taking its sockets".to_string())
    } else {
        Err(text.to_string())
    }
}

/// The running proxies whose owner argument starts with `prefix`: (pid, owner).
pub fn owned_by(prefix: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.get(1).copied() != Some(SUBCOMMAND.as_bytes()) {
            continue;
        }
        if let Some(owner) = args.get(3).and_then(|o| std::str::from_utf8(o).ok()) {
            if owner.starts_with(prefix) {
                out.push((pid, owner.to_string()));
            }
        }
    }
    out
}

/// Whether the proxy still runs: its pid is the process that started at its start time, and
/// not a zombie waiting to be reaped.
pub fn alive(p: &ProxyProcess) -> bool {
    p.pid > 0
        && matches!(crate::runtime::host::proc_state(p.pid), Some((state, start))
            if start == p.start_time && state != 'Z' && state != 'X')
}

/// Stop the proxy (SIGTERM, then SIGKILL after a second) if it still runs, and reap it when
/// it is our child (after a restart of berthd it is not: its new parent reaps it). Blocks for
/// at most about two seconds.
pub fn stop(p: &ProxyProcess) {
    if p.pid <= 0 {
        return;
    }
    let pid = Pid::from_raw(p.pid);
    let ours = |p: &ProxyProcess| crate::runtime::host::same_process(p.pid, p.start_time);
    if alive(p) {
        let _ = kill(pid, Signal::SIGTERM);
    }
    for signal in [None, Some(Signal::SIGKILL)] {
        if let Some(s) = signal {
            if alive(p) {
                let _ = kill(pid, s);
            }
        }
        let deadline = Instant::now() + TERM_GRACE;
        loop {
            // Only a process with its start time is reaped: the pid may be reused already.
            if !ours(p) {
                return;
            }
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
                Ok(_) => return,
                // Not our child: gone once it is no longer running.
                Err(_) if !alive(p) => return,
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the proxy process

/// The proxy process's `main` (argv after the subcommand); the exit code.
pub fn main(args: &[String]) -> i32 {
    let Some(json) = args.first() else {
        eprintln!("berthd {SUBCOMMAND}: missing the hand-off argument");
        return 2;
    };
    let handoff: Handoff = match serde_json::from_str(json) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("berthd {SUBCOMMAND}: parse the hand-off: {e}");
            return 2;
        }
    };
    let mut seen = vec![handoff.ready_fd];
    for p in &handoff.ports {
        if p.fd < 3 || seen.contains(&p.fd) {
            eprintln!(
                "berthd {SUBCOMMAND}: bad descriptor {} in the hand-off",
                p.fd
            );
            return 2;
        }
        seen.push(p.fd);
    }
    if handoff.ready_fd < 3 {
        eprintln!(
            "berthd {SUBCOMMAND}: bad readiness descriptor {}",
            handoff.ready_fd
        );
        return 2;
    }
    // SAFETY: by the hand-off protocol berthd placed these descriptors in this process for it
    // alone; each number is distinct (checked above) and becomes owned exactly once.
    let ready = unsafe { OwnedFd::from_raw_fd(handoff.ready_fd) };
    let ports: Vec<(PortSpec, OwnedFd)> = handoff
        .ports
        .into_iter()
        // SAFETY: as for the readiness descriptor.
        .map(|p| (p.spec, unsafe { OwnedFd::from_raw_fd(p.fd) }))
        .collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report_ready(ready, &format!("build the proxy runtime: {e}"));
            return 1;
        }
    };
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let signals =
            signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
        let (mut term, mut int) = match signals {
            Ok(s) => s,
            Err(e) => {
                report_ready(ready, &format!("install the signal handlers: {e}"));
                return 1;
            }
        };
        let servers = match register(ports) {
            Ok(s) => s,
            Err(e) => {
                report_ready(ready, &e.to_string());
                return 1;
            }
        };
        report_ready(ready, "ok");
        for s in servers {
            tokio::spawn(s.run());
        }
        // What served only the start (serde, the runtime's construction) need not stay
        // resident.
        crate::runtime::host::shed_memory();
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        0
    })
}

fn report_ready(fd: OwnedFd, text: &str) {
    let line = format!("{text}\n");
    let _ = nix::unistd::write(&fd, line.as_bytes());
}

/// One bound port, taken into the runtime.
enum Server {
    Tcp {
        listener: TcpListener,
        backend: SocketAddr,
    },
    Udp(UdpServer),
}

/// Take the bound sockets into the current tokio runtime (within one).
fn register(ports: Vec<(PortSpec, OwnedFd)>) -> Result<Vec<Server>, NetworkError> {
    let mut servers = Vec::with_capacity(ports.len());
    for (spec, fd) in ports {
        let backend = SocketAddr::new(spec.container_ip, spec.container_port);
        let what = format!(
            "{} {}:{}",
            spec.proto.as_str(),
            spec.host_ip,
            spec.host_port
        );
        servers.push(match spec.proto {
            Proto::Tcp => {
                let std = std::net::TcpListener::from(fd);
                std.set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(std))
                    .map(|listener| Server::Tcp { listener, backend })
                    .map_err(|e| NetworkError::io(format!("take {what}"), e))?
            }
            Proto::Udp => {
                let pktinfo = spec.host_ip.is_unspecified();
                let std = std::net::UdpSocket::from(fd);
                std.set_nonblocking(true)
                    .and_then(|()| UdpSocket::from_std(std))
                    .map(|socket| {
                        Server::Udp(UdpServer::new(socket, backend, pktinfo, UDP_IDLE_TIMEOUT))
                    })
                    .map_err(|e| NetworkError::io(format!("take {what}"), e))?
            }
        });
    }
    Ok(servers)
}

impl Server {
    async fn run(self) {
        match self {
            Server::Tcp { listener, backend } => serve_tcp(listener, backend).await,
            Server::Udp(u) => u.run().await,
        }
    }
}

/// Serve a set of already bound sockets until the future is dropped (for tests and embedding;
/// the proxy process uses the same pieces).
#[cfg(test)]
async fn serve(ports: Vec<(PortSpec, OwnedFd)>, idle: Duration) -> Result<(), NetworkError> {
    let mut servers = register(ports)?;
    for s in &mut servers {
        if let Server::Udp(u) = s {
            u.idle = idle;
        }
    }
    let tasks: Vec<_> = servers.into_iter().map(|s| tokio::spawn(s.run())).collect();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// TCP

async fn serve_tcp(listener: TcpListener, backend: SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(relay_tcp(client, backend));
            }
            // Out of descriptors or memory, or a connection aborted before accept: go on after
            // a breath rather than spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn relay_tcp(client: TcpStream, backend: SocketAddr) {
    // A refused (or unreachable) container closes the client.
    let Ok(upstream) = TcpStream::connect(backend).await else {
        return;
    };
    // As docker-proxy (Go sets TCP_NODELAY on every connection).
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    match (SplicePipe::new(), SplicePipe::new()) {
        (Ok(up), Ok(down)) => {
            tokio::join!(
                splice_half(&client, &upstream, &up),
                splice_half(&upstream, &client, &down),
            );
        }
        _ => {
            let (mut client, mut upstream) = (client, upstream);
            let _ = tokio::io::copy_bidirectional_with_sizes(
                &mut client,
                &mut upstream,
                64 << 10,
                64 << 10,
            )
            .await;
        }
    }
}

/// A non-blocking pipe that carries one direction's bytes between two sockets.
struct SplicePipe {
    r: OwnedFd,
    w: OwnedFd,
    size: usize,
}

impl SplicePipe {
    fn new() -> io::Result<Self> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        // Larger than the default 64 KiB for fewer wake-ups; the pages are the sockets' own
        // (moved, not copied), so a large pipe costs no memory while idle.
        // SAFETY: F_SETPIPE_SZ on a pipe we own.
        let size = unsafe {
            libc::fcntl(
                w.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                SPLICE_PIPE as libc::c_int,
            )
        };
        let size = if size > 0 { size as usize } else { 64 << 10 };
        Ok(SplicePipe { r, w, size })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice between two descriptors borrowed for the call, without offsets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Move `src`'s bytes to `dst` until EOF or an error, then shut `dst`'s write half (the peer
/// sees EOF) and `src`'s read half, as docker-proxy does.
async fn splice_half(src: &TcpStream, dst: &TcpStream, pipe: &SplicePipe) {
    let _ = splice_loop(src, dst, pipe).await;
    let _ = nix::sys::socket::shutdown(dst.as_raw_fd(), nix::sys::socket::Shutdown::Write);
    let _ = nix::sys::socket::shutdown(src.as_raw_fd(), nix::sys::socket::Shutdown::Read);
}

async fn splice_loop(src: &TcpStream, dst: &TcpStream, pipe: &SplicePipe) -> io::Result<()> {
    loop {
        // The pipe is empty here, so EAGAIN means the socket has nothing to read.
        let n = src
            .async_io(Interest::READABLE, || {
                splice(src.as_raw_fd(), pipe.w.as_raw_fd(), pipe.size)
            })
            .await?;
        if n == 0 {
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            // The pipe holds `left` bytes, so EAGAIN means the socket cannot take more yet.
            let m = dst
                .async_io(Interest::WRITABLE, || {
                    splice(pipe.r.as_raw_fd(), dst.as_raw_fd(), left)
                })
                .await?;
            if m == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= m;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// UDP

/// The local address a datagram was sent to (from `IP_PKTINFO` / `IPV6_PKTINFO`), to answer
/// from it.
#[derive(Clone, Copy)]
enum LocalDst {
    V4(libc::in_pktinfo),
    V6(libc::in6_pktinfo),
}

/// One client of a UDP port.
struct Flow {
    upstream: UdpSocket,
    /// Milliseconds since the server's epoch of the last datagram either way.
    last: AtomicU64,
    local: Mutex<Option<LocalDst>>,
}

struct UdpServer {
    socket: Arc<UdpSocket>,
    backend: SocketAddr,
    /// Whether the socket is bound to all addresses, and replies need the client's destination.
    pktinfo: bool,
    idle: Duration,
    flows: Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>,
    epoch: Instant,
    /// One buffer for every flow's replies: it is used without an await in between, and the
    /// runtime runs one task at a time.
    reply_buf: Arc<Mutex<Vec<u8>>>,
}

impl UdpServer {
    fn new(socket: UdpSocket, backend: SocketAddr, pktinfo: bool, idle: Duration) -> Self {
        UdpServer {
            socket: Arc::new(socket),
            backend,
            pktinfo,
            idle,
            flows: Arc::new(Mutex::new(HashMap::new())),
            epoch: Instant::now(),
            reply_buf: Arc::new(Mutex::new(vec![0; UDP_BUF])),
        }
    }

    fn now_ms(epoch: Instant) -> u64 {
        epoch.elapsed().as_millis() as u64
    }

    async fn run(self) {
        let mut buf = vec![0u8; UDP_BUF];
        loop {
            let got = if self.pktinfo {
                self.socket
                    .async_io(Interest::READABLE, || {
                        recv_with_dst(self.socket.as_raw_fd(), &mut buf)
                    })
                    .await
            } else {
                self.socket
                    .recv_from(&mut buf)
                    .await
                    .map(|(n, from)| (n, from, None))
            };
            // Errors on an unconnected socket are ICMP reports for earlier replies: go on.
            let Ok((n, client, local)) = got else {
                continue;
            };
            let Some(flow) = self.flow(client) else {
                continue;
            };
            flow.last.store(Self::now_ms(self.epoch), Ordering::Relaxed);
            if local.is_some() {
                if let Ok(mut l) = flow.local.lock() {
                    *l = local;
                }
            }
            // A refused earlier datagram shows up here as ECONNREFUSED: the datagram is lost
            // either way, as it would be without the proxy.
            let _ = flow.upstream.send(&buf[..n]).await;
        }
    }

    /// The flow of `client`, created if there is room.
    fn flow(&self, client: SocketAddr) -> Option<Arc<Flow>> {
        let mut flows = self.flows.lock().ok()?;
        if let Some(f) = flows.get(&client) {
            return Some(f.clone());
        }
        if flows.len() >= UDP_MAX_FLOWS {
            return None;
        }
        let any: SocketAddr = match self.backend {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let std = std::net::UdpSocket::bind(any).ok()?;
        std.connect(self.backend).ok()?;
        std.set_nonblocking(true).ok()?;
        let upstream = UdpSocket::from_std(std).ok()?;
        let flow = Arc::new(Flow {
            upstream,
            last: AtomicU64::new(Self::now_ms(self.epoch)),
            local: Mutex::new(None),
        });
        flows.insert(client, flow.clone());
        tokio::spawn(reply_loop(
            flow.clone(),
            client,
            self.socket.clone(),
            self.flows.clone(),
            self.reply_buf.clone(),
            self.epoch,
            self.idle,
        ));
        Some(flow)
    }
}

/// Carry the container's replies of one flow back to its client until the flow is idle.
async fn reply_loop(
    flow: Arc<Flow>,
    client: SocketAddr,
    socket: Arc<UdpSocket>,
    flows: Arc<Mutex<HashMap<SocketAddr, Arc<Flow>>>>,
    buf: Arc<Mutex<Vec<u8>>>,
    epoch: Instant,
    idle: Duration,
) {
    let idle_ms = idle.as_millis() as u64;
    loop {
        let last = flow.last.load(Ordering::Relaxed);
        let now = UdpServer::now_ms(epoch);
        if now.saturating_sub(last) >= idle_ms {
            break;
        }
        let wait = Duration::from_millis(last + idle_ms - now);
        tokio::select! {
            r = flow.upstream.readable() => {
                if r.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(wait) => continue,
        }
        let Ok(mut buf) = buf.lock() else {
            break;
        };
        match flow.upstream.try_recv(&mut buf) {
            Ok(n) => {
                flow.last.store(UdpServer::now_ms(epoch), Ordering::Relaxed);
                let local = flow.local.lock().ok().and_then(|l| *l);
                // A full send buffer drops the reply, as the network may.
                let _ = socket.try_io(Interest::WRITABLE, || {
                    send_with_src(socket.as_raw_fd(), &buf[..n], client, local.as_ref())
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // Nothing listens in the container (yet): keep the flow until it expires, as
            // docker-proxy does.
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {}
            Err(_) => break,
        }
    }
    if let Ok(mut flows) = flows.lock() {
        if flows.get(&client).is_some_and(|f| Arc::ptr_eq(f, &flow)) {
            flows.remove(&client);
        }
    }
}

/// Room for one packet-info control message of either family.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// recvmsg with the datagram's destination address (packet info).
fn recv_with_dst(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<LocalDst>)> {
    // SAFETY: sockaddr_storage and msghdr are plain old data, valid when zeroed.
    let mut from: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut cmsg = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = &mut from as *mut _ as *mut libc::c_void;
    msg.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.0.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = cmsg.0.len() as _;
    // SAFETY: every pointer in `msg` points at a live buffer of the length given with it.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let client = socket_addr_from(&from).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram from a non-inet address",
        )
    })?;
    let mut local = None;
    // SAFETY: the kernel filled `msg_controllen` bytes of the control buffer with cmsghdrs;
    // CMSG_FIRSTHDR/CMSG_NXTHDR stay within it, and each payload is read unaligned with the
    // size its level and type promise.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let mut info = std::ptr::read_unaligned(data as *const libc::in_pktinfo);
                    // Answer from the address, by routing, not through the arrival interface.
                    info.ipi_ifindex = 0;
                    local = Some(LocalDst::V4(info));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                    local = Some(LocalDst::V6(info));
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, client, local))
}

/// sendmsg to `to`, from the local address in `local` when given.
fn send_with_src(
    fd: RawFd,
    data: &[u8],
    to: SocketAddr,
    local: Option<&LocalDst>,
) -> io::Result<usize> {
    let (mut name, namelen) = sockaddr_of(to);
    let mut cmsg = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain old data, valid when zeroed.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = &mut name as *mut _ as *mut libc::c_void;
    msg.msg_namelen = namelen;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(local) = local {
        let (level, ty, payload, len) = match local {
            LocalDst::V4(i) => (
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                i as *const _ as *const u8,
                mem::size_of::<libc::in_pktinfo>(),
            ),
            LocalDst::V6(i) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                i as *const _ as *const u8,
                mem::size_of::<libc::in6_pktinfo>(),
            ),
        };
        // SAFETY: CMSG_SPACE of either pktinfo (at most 40 bytes) fits the 64-byte, 8-aligned
        // buffer; the header and payload are written within it, then `msg` describes it.
        unsafe {
            msg.msg_control = cmsg.0.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = libc::CMSG_SPACE(len as u32) as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            if c.is_null() {
                return Err(io::Error::other("no room for the packet info"));
            }
            (*c).cmsg_level = level;
            (*c).cmsg_type = ty;
            (*c).cmsg_len = libc::CMSG_LEN(len as u32) as _;
            std::ptr::copy_nonoverlapping(payload, libc::CMSG_DATA(c), len);
        }
    }
    // SAFETY: every pointer in `msg` points at a live buffer of the length given with it.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Kinded;
    use std::io::{Read, Write};
    use std::net::Shutdown;

    fn spec(proto: Proto, host_port: u16, container_port: u16) -> PortSpec {
        PortSpec {
            proto,
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host_port,
            container_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            container_port,
        }
    }

    /// A TCP echo server on 127.0.0.1 that echoes until EOF, then closes its write half.
    fn tcp_echo() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind echo");
        let port = l.local_addr().expect("echo addr").port();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let mut r = c.try_clone().expect("clone");
                    let _ = std::io::copy(&mut r, &mut c);
                    let _ = c.shutdown(Shutdown::Write);
                });
            }
        });
        port
    }

    fn udp_echo() -> u16 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp echo");
        let port = s.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
        port
    }

    /// Serve `ports` on a thread of their own, as the proxy process would.
    fn serve_in_thread(ports: Vec<(PortSpec, OwnedFd)>, idle: Duration) {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(serve(ports, idle)).expect("serve");
        });
    }

    #[test]
    fn bind_port_zero_gives_a_real_port() {
        let (fd, port) = bind(&spec(Proto::Tcp, 0, 1)).expect("bind");
        assert_ne!(port, 0);
        assert_eq!(local_addr(fd.as_fd()).expect("addr").port(), port);
        // Listening: a connection succeeds.
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    }

    #[test]
    fn bind_taken_port_is_a_conflict_with_dockerds_text() {
        let (_fd, port) = bind(&spec(Proto::Tcp, 0, 1)).expect("bind");
        let e = bind(&spec(Proto::Tcp, port, 1)).expect_err("second bind");
        assert_eq!(e.kind(), crate::errors::ErrorKind::Conflict);
        assert_eq!(
            e.message(),
            format!("Bind for 127.0.0.1:{port} failed: port is already allocated")
        );
        let (_u, uport) = bind(&spec(Proto::Udp, 0, 1)).expect("bind udp");
        let e = bind(&spec(Proto::Udp, uport, 1)).expect_err("second udp bind");
        assert_eq!(
            e.message(),
            format!("Bind for 127.0.0.1:{uport} failed: port is already allocated")
        );
    }

    #[test]
    fn conflict_text_shows_addresses_as_dockerd() {
        let l = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let mut s = spec(Proto::Tcp, port, 1);
        s.host_ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let e = bind(&s).expect_err("taken");
        assert_eq!(
            e.message(),
            format!("Bind for 0.0.0.0:{port} failed: port is already allocated")
        );
        // IPv6 may be disabled on the host: only check the text when it is not.
        if let Ok(l6) = std::net::TcpListener::bind("[::]:0") {
            let port = l6.local_addr().expect("addr").port();
            s.host_ip = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
            s.host_port = port;
            let e = bind(&s).expect_err("taken v6");
            assert_eq!(
                e.message(),
                format!("Bind for [::]:{port} failed: port is already allocated")
            );
        }
    }

    #[test]
    fn bind_udp() {
        let (fd, port) = bind(&spec(Proto::Udp, 0, 1)).expect("bind udp");
        assert_ne!(port, 0);
        let sock = std::net::UdpSocket::from(fd);
        let c = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
        c.send_to(b"hi", ("127.0.0.1", port)).expect("send");
        let mut buf = [0u8; 8];
        let (n, _) = sock.recv_from(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"hi");
    }

    #[test]
    fn tcp_echo_through_the_proxy_with_a_large_transfer_and_half_close() {
        let echo = tcp_echo();
        let s = spec(Proto::Tcp, 0, echo);
        let (fd, port) = bind(&s).expect("bind");
        serve_in_thread(vec![(s, fd)], UDP_IDLE_TIMEOUT);

        // A small round trip.
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.write_all(b"ping").expect("write");
        let mut b = [0u8; 4];
        c.read_exact(&mut b).expect("read");
        assert_eq!(&b, b"ping");

        // 10 MB one way while reading the echo, then half-close: the echo server sees EOF,
        // closes its side, and the client reads everything and then EOF.
        let data: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut w = c.try_clone().expect("clone");
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            w.write_all(&sent).expect("write all");
            w.shutdown(Shutdown::Write).expect("half close");
        });
        let mut back = Vec::new();
        c.read_to_end(&mut back).expect("read to end");
        writer.join().expect("writer");
        assert_eq!(back.len(), data.len());
        assert!(back == data, "the echo differs");
    }

    #[test]
    fn half_close_keeps_the_other_direction_open() {
        // A server that reads until EOF, then answers with the byte count.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let backend = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let mut all = Vec::new();
                let _ = c.read_to_end(&mut all);
                let _ = c.write_all(format!("{}", all.len()).as_bytes());
            }
        });
        let s = spec(Proto::Tcp, 0, backend);
        let (fd, port) = bind(&s).expect("bind");
        serve_in_thread(vec![(s, fd)], UDP_IDLE_TIMEOUT);
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.write_all(&[7u8; 12345]).expect("write");
        c.shutdown(Shutdown::Write).expect("half close");
        let mut answer = String::new();
        c.read_to_string(&mut answer).expect("read");
        assert_eq!(answer, "12345");
    }

    #[test]
    fn refused_container_closes_the_client() {
        // A port with nothing listening.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let s = spec(Proto::Tcp, 0, port);
        let (fd, host) = bind(&s).expect("bind");
        serve_in_thread(vec![(s, fd)], UDP_IDLE_TIMEOUT);
        let mut c = std::net::TcpStream::connect(("127.0.0.1", host)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut b = [0u8; 1];
        let r = c.read(&mut b);
        assert!(matches!(r, Ok(0)) || r.is_err(), "got {r:?}");
    }

    #[test]
    fn udp_echo_through_the_proxy_per_client_and_flows_expire() {
        let echo = udp_echo();
        let s = spec(Proto::Udp, 0, echo);
        let (fd, port) = bind(&s).expect("bind");
        serve_in_thread(vec![(s, fd)], Duration::from_millis(300));
        let clients: Vec<_> = (0..3)
            .map(|_| {
                let c = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
                c.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                c.connect(("127.0.0.1", port)).expect("connect");
                c
            })
            .collect();
        for round in 0..2 {
            for (i, c) in clients.iter().enumerate() {
                let msg = format!("hello {i} {round}");
                c.send(msg.as_bytes()).expect("send");
                let mut buf = [0u8; 64];
                let n = c.recv(&mut buf).expect("recv");
                assert_eq!(&buf[..n], msg.as_bytes());
            }
            // Let the flows expire: the next round makes new ones.
            std::thread::sleep(Duration::from_millis(600));
        }
        // A large datagram.
        let big = vec![9u8; 60000];
        clients[0].send(&big).expect("send big");
        let mut buf = vec![0u8; 65535];
        let n = clients[0].recv(&mut buf).expect("recv big");
        assert_eq!(n, big.len());
    }

    #[test]
    fn udp_on_a_wildcard_bind_answers_from_the_address_sent_to() {
        let echo = udp_echo();
        let mut s = spec(Proto::Udp, 0, echo);
        s.host_ip = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let (fd, port) = bind(&s).expect("bind");
        serve_in_thread(vec![(s, fd)], UDP_IDLE_TIMEOUT);
        // 127.0.0.2 is loopback too: the reply must come from it, not from 127.0.0.1.
        let c = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        c.send_to(b"x", ("127.0.0.2", port)).expect("send");
        let mut buf = [0u8; 8];
        let (n, from) = c.recv_from(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"x");
        assert_eq!(from, SocketAddr::from(([127, 0, 0, 2], port)));
    }

    #[test]
    fn proc_state_reads_this_process() {
        let (state, start) =
            crate::runtime::host::proc_state(std::process::id() as i32).expect("stat");
        // The test runs on another thread than the main one, which /proc/<pid>/stat shows.
        assert!(state != 'Z' && state != 'X', "state {state}");
        assert_eq!(
            Some(start),
            crate::runtime::host::proc_start_time(std::process::id() as i32)
        );
        assert!(!alive(&ProxyProcess {
            pid: 0,
            start_time: start
        }));
    }
}
