//! systemd socket activation: the `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` protocol.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};

/// The first fd systemd passes.
const LISTEN_FDS_START: RawFd = 3;

/// A socket handed over by systemd.
pub enum ActivatedSocket {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

/// The sockets systemd passed to this process, each taken at most once.
pub struct SystemdSockets {
    fds: Vec<(RawFd, String, bool)>,
}

impl SystemdSockets {
    /// Read and clear the activation environment.
    pub fn from_env() -> Result<Self, String> {
        let pid = std::env::var("LISTEN_PID").ok();
        let count = std::env::var("LISTEN_FDS").ok();
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        // Children must not think the sockets are theirs. berthd binds its listeners before it
        // starts anything that reads the environment.
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
        let none = || {
            "no sockets found via socket activation: make sure the service was started by systemd"
                .to_string()
        };
        let pid: u32 = pid.and_then(|p| p.parse().ok()).ok_or_else(none)?;
        if pid != std::process::id() {
            return Err(none());
        }
        let count: i32 = count
            .and_then(|c| c.parse().ok())
            .filter(|c| *c > 0)
            .ok_or_else(none)?;
        let names: Vec<&str> = names.split(':').collect();
        let fds = (0..count)
            .map(|i| {
                let fd = LISTEN_FDS_START + i;
                // Keep the fds out of the containers and helpers we start.
                let _ = nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
                let name = names.get(i as usize).copied().unwrap_or("").to_string();
                (fd, name, false)
            })
            .collect();
        Ok(SystemdSockets { fds })
    }

    /// The sockets for `fd://` (all), `fd://N` (by number) or `fd://NAME` (by
    /// `FileDescriptorName=`).
    pub fn take(&mut self, selector: Option<&str>) -> Result<Vec<ActivatedSocket>, String> {
        let chosen: Vec<usize> = match selector {
            None => (0..self.fds.len()).filter(|&i| !self.fds[i].2).collect(),
            Some(sel) => match sel.parse::<RawFd>() {
                Ok(n) => {
                    let i = self
                        .fds
                        .iter()
                        .position(|(fd, _, _)| *fd == n)
                        .ok_or_else(|| {
                            "too few socket activated files passed in by systemd".to_string()
                        })?;
                    vec![i]
                }
                Err(_) => {
                    let v: Vec<usize> = (0..self.fds.len())
                        .filter(|&i| self.fds[i].1 == sel)
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
            let (fd, _, taken) = &mut self.fds[i];
            if *taken {
                return Err(format!("systemd socket fd {fd} is named twice in -H"));
            }
            *taken = true;
            out.push(socket_from_fd(*fd)?);
        }
        Ok(out)
    }
}

fn socket_from_fd(fd: RawFd) -> Result<ActivatedSocket, String> {
    let addr: SockaddrStorage = getsockname(fd)
        .map_err(|e| format!("failed to listen on systemd activated file: fd {fd}: {e}"))?;
    // SAFETY: systemd passes fds LISTEN_FDS_START.. to this process and nothing else in it owns
    // them; `take` marks each fd as taken, so it is wrapped at most once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    match addr.family() {
        Some(AddressFamily::Unix) => {
            let l = std::os::unix::net::UnixListener::from(owned);
            l.set_nonblocking(true)
                .map_err(|e| format!("systemd socket fd {fd}: {e}"))?;
            Ok(ActivatedSocket::Unix(l))
        }
        Some(AddressFamily::Inet) | Some(AddressFamily::Inet6) => {
            let l = std::net::TcpListener::from(owned);
            l.set_nonblocking(true)
                .map_err(|e| format!("systemd socket fd {fd}: {e}"))?;
            Ok(ActivatedSocket::Tcp(l))
        }
        _ => Err(format!(
            "failed to listen on systemd activated file: fd {fd}: not a unix or tcp socket"
        )),
    }
}
