//! systemd socket activation: the `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` protocol.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};

/// The first fd systemd passes.
const LISTEN_FDS_START: RawFd = 3;
/// More sockets than this is not a real activation.
const MAX_FDS: i32 = 1024;

/// A socket handed over by systemd.
pub enum ActivatedSocket {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

/// The sockets systemd passed to this process. Each is taken at most once; those no `-H`
/// takes are closed when this is dropped.
pub struct SystemdSockets {
    fds: Vec<(Option<OwnedFd>, RawFd, String)>,
}

impl SystemdSockets {
    /// Read and clear the activation environment. Call this first thing in `main`, before any
    /// thread exists: it changes the environment. Returns `None` when this process was not
    /// socket-activated.
    pub fn from_env() -> Option<Self> {
        let pid = std::env::var("LISTEN_PID").ok();
        let count = std::env::var("LISTEN_FDS").ok();
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        // Children (supervisors, containers) must not think the sockets are theirs.
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
        let pid: u32 = pid?.parse().ok()?;
        if pid != std::process::id() {
            return None;
        }
        let count: i32 = count?.parse().ok().filter(|c| *c > 0 && *c <= MAX_FDS)?;
        let names: Vec<&str> = names.split(':').collect();
        let fds = (0..count)
            .map(|i| {
                let fd = LISTEN_FDS_START + i;
                let _ = nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
                // SAFETY: systemd passes fds LISTEN_FDS_START..+LISTEN_FDS to this process and
                // nothing else in it owns them; each is wrapped exactly once, here.
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                let name = names.get(i as usize).copied().unwrap_or("").to_string();
                (Some(owned), fd, name)
            })
            .collect();
        Some(SystemdSockets { fds })
    }

    /// The sockets for `fd://` (all not yet taken), `fd://N` (by number) or `fd://NAME` (by
    /// `FileDescriptorName=`).
    pub fn take(&mut self, selector: Option<&str>) -> Result<Vec<ActivatedSocket>, String> {
        let chosen: Vec<usize> = match selector {
            None => (0..self.fds.len())
                .filter(|&i| self.fds[i].0.is_some())
                .collect(),
            Some(sel) => match sel.parse::<RawFd>() {
                Ok(n) => {
                    let i = self
                        .fds
                        .iter()
                        .position(|(_, fd, _)| *fd == n)
                        .ok_or_else(|| {
                            "too few socket activated files passed in by systemd".to_string()
                        })?;
                    vec![i]
                }
                Err(_) => {
                    let v: Vec<usize> = (0..self.fds.len())
                        .filter(|&i| self.fds[i].2 == sel)
                        .collect();
                    if v.is_empty() {
                        return Err(format!(
                            "no socket named {sel:?} was passed in by systemd (FileDescriptorName=)"
                        ));
                    }
                    v
                }
            },
        };
        let mut out = Vec::new();
        for i in chosen {
            let (slot, fd, _) = &mut self.fds[i];
            let owned = slot
                .take()
                .ok_or_else(|| format!("systemd socket fd {fd} is named twice in -H"))?;
            out.push(socket_from_fd(owned)?);
        }
        Ok(out)
    }
}

fn socket_from_fd(owned: OwnedFd) -> Result<ActivatedSocket, String> {
    let fd = owned.as_raw_fd();
    let fail =
        |what: String| format!("failed to listen on systemd activated file: fd {fd}: {what}");
    let stream = getsockopt(&owned, sockopt::SockType).map_err(|e| fail(e.to_string()))?;
    let listening = getsockopt(&owned, sockopt::AcceptConn).map_err(|e| fail(e.to_string()))?;
    if stream != SockType::Stream || !listening {
        return Err(fail("not a listening stream socket".to_string()));
    }
    let addr: SockaddrStorage = getsockname(fd).map_err(|e| fail(e.to_string()))?;
    match addr.family() {
        Some(AddressFamily::Unix) => {
            let l = std::os::unix::net::UnixListener::from(owned);
            l.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
            Ok(ActivatedSocket::Unix(l))
        }
        Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => {
            let l = std::net::TcpListener::from(owned);
            l.set_nonblocking(true).map_err(|e| fail(e.to_string()))?;
            Ok(ActivatedSocket::Tcp(l))
        }
        _ => Err(fail("not a unix or tcp socket".to_string())),
    }
}
