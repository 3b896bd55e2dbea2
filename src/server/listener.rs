//! Binding the `-H` addresses: Unix sockets (stale-socket check, group, mode 0660), TCP (with
//! TLS, and the refusal of unauthenticated non-loopback addresses) and systemd sockets.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::TlsAcceptor;

use super::systemd::ActivatedSocket;
pub use super::systemd::SystemdSockets;
use super::tls;
use crate::config::host::{DEFAULT_TCP_PORT, DEFAULT_TLS_PORT};
use crate::config::{Config, Host};

/// A bound listener.
pub enum Listener {
    /// A Unix socket; `path` (with the device and inode berth created there) is removed when
    /// the server stops if berth created it.
    Unix {
        listener: UnixListener,
        path: Option<(PathBuf, u64, u64)>,
    },
    /// A TCP socket, with TLS when an acceptor is set.
    Tcp {
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
    },
}

pub(super) enum Accepted {
    Unix(UnixStream),
    Tcp(TcpStream, Option<TlsAcceptor>),
}

impl Listener {
    /// A Unix listener that the caller owns (its socket file is left alone).
    pub fn unix(listener: UnixListener) -> Self {
        Listener::Unix {
            listener,
            path: None,
        }
    }

    /// A plain or TLS TCP listener.
    pub fn tcp(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Listener::Tcp {
            listener,
            tls: tls.map(TlsAcceptor::from),
        }
    }

    pub(super) async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Unix { listener, .. } => Ok(Accepted::Unix(listener.accept().await?.0)),
            Listener::Tcp { listener, tls } => {
                Ok(Accepted::Tcp(listener.accept().await?.0, tls.clone()))
            }
        }
    }

    /// What this listener listens on, for logs.
    pub fn describe(&self) -> String {
        match self {
            Listener::Unix { listener, .. } => match listener.local_addr() {
                Ok(a) => match a.as_pathname() {
                    Some(p) => format!("unix://{}", p.display()),
                    None => "unix socket".to_string(),
                },
                Err(_) => "unix socket".to_string(),
            },
            Listener::Tcp { listener, tls } => {
                let scheme = if tls.is_some() { "tcp+tls" } else { "tcp" };
                match listener.local_addr() {
                    Ok(a) => format!("{scheme}://{a}"),
                    Err(_) => format!("{scheme} socket"),
                }
            }
        }
    }

    /// Stop listening; remove the socket file berth created.
    pub(super) fn close(self) {
        if let Listener::Unix {
            listener,
            path: Some((path, dev, ino)),
        } = self
        {
            drop(listener);
            // Only if it is still the socket berth made: another daemon may own the path now.
            use std::os::unix::fs::MetadataExt;
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.dev() == dev && m.ino() == ino => {
                    if let Err(e) = std::fs::remove_file(&path) {
                        tracing::warn!("remove socket {}: {e}", path.display());
                    }
                }
                _ => {}
            }
        }
    }
}

/// Bind every host of `config`, taking `fd://` sockets from `activated` (read from the
/// environment at start-up). On failure, the sockets already bound are closed again; systemd
/// sockets that no `-H` names are closed.
pub async fn bind_hosts(
    config: &Config,
    activated: Option<SystemdSockets>,
) -> Result<Vec<Listener>, ListenError> {
    let mut out = Vec::new();
    let mut activated = activated;
    let result = bind_into(config, &mut activated, &mut out).await;
    drop(activated);
    match result {
        Ok(()) => Ok(out),
        Err(e) => {
            for l in out {
                l.close();
            }
            Err(e)
        }
    }
}

async fn bind_into(
    config: &Config,
    systemd: &mut Option<SystemdSockets>,
    out: &mut Vec<Listener>,
) -> Result<(), ListenError> {
    let tls = tls_config(config)?;
    for host in &config.hosts {
        match host {
            Host::Unix(path) => out.push(bind_unix(path, config).await?),
            Host::Tcp { host: name, port } => {
                let port = port.unwrap_or(if tls.is_some() {
                    DEFAULT_TLS_PORT
                } else {
                    DEFAULT_TCP_PORT
                });
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map_err(|e| ListenError::invalid(format!("resolve {host}: {e}")))?
                    .collect();
                // Prefer IPv4 for a name, as Go's net.Listen does.
                let addr = *addrs
                    .iter()
                    .find(|a| a.is_ipv4())
                    .or(addrs.first())
                    .ok_or_else(|| ListenError::invalid(format!("resolve {host}: no address")))?;
                check_tcp_policy(host, &addrs, config)?;
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| ListenError::invalid(format!("listen on {host}: {e}")))?;
                out.push(Listener::tcp(listener, tls.clone()));
            }
            Host::Fd(name) => {
                let sockets = systemd.as_mut().ok_or_else(|| {
                    ListenError::invalid(
                        "no sockets found via socket activation: make sure the service was started by systemd"
                            .to_string(),
                    )
                })?;
                for s in sockets
                    .take(name.as_deref())
                    .map_err(ListenError::invalid)?
                {
                    out.push(match s {
                        ActivatedSocket::Unix(l) => Listener::Unix {
                            listener: UnixListener::from_std(l).map_err(|e| {
                                ListenError::invalid(format!("systemd socket: {e}"))
                            })?,
                            path: None,
                        },
                        ActivatedSocket::Tcp(l) => {
                            let local = l.local_addr().map_err(|e| {
                                ListenError::invalid(format!("systemd socket: {e}"))
                            })?;
                            check_tcp_policy(host, &[local], config)?;
                            Listener::tcp(
                                TcpListener::from_std(l).map_err(|e| {
                                    ListenError::invalid(format!("systemd socket: {e}"))
                                })?,
                                tls.clone(),
                            )
                        }
                    });
                }
            }
        }
    }
    Ok(())
}

/// The TLS configuration of TCP listeners, when `--tls`/`--tlsverify` is on.
pub(super) fn tls_config(
    config: &Config,
) -> Result<Option<Arc<rustls::ServerConfig>>, ListenError> {
    if !config.tls_enabled() {
        return Ok(None);
    }
    let ca =
        (config.tls_verify || config.tls_ca_cert.exists()).then_some(config.tls_ca_cert.as_path());
    Ok(Some(
        tls::server_config(&config.tls_cert, &config.tls_key, ca, config.tls_verify)
            .map_err(|e| ListenError::invalid(e.to_string()))?,
    ))
}

/// Without `--tlsverify`, anyone who reaches a TCP socket is root on this host. Refuse that on
/// a non-loopback address unless the user said `--tls=false` (or `--tlsverify=false`) on purpose.
fn check_tcp_policy(host: &Host, addrs: &[SocketAddr], config: &Config) -> Result<(), ListenError> {
    if config.tls_verify {
        return Ok(());
    }
    let loopback = addrs.iter().all(|a| is_loopback(a.ip()));
    if !loopback && !config.tls_explicit {
        return Err(ListenError::invalid(format!(
            "refusing to listen on {host} without --tlsverify: anyone who can reach it gets root access to this host; \
             use --tlsverify with --tlscacert, --tlscert and --tlskey, or pass --tls=false to accept the risk"
        )));
    }
    tracing::warn!(
        "binding to {host} without --tlsverify is insecure and gives root access on this machine to everyone who can reach it"
    );
    Ok(())
}

pub(super) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Bind a Unix socket at `path`, replacing a stale socket file but never a live one.
async fn bind_unix(path: &Path, config: &Config) -> Result<Listener, ListenError> {
    let fail =
        |what: &str, e: io::Error| ListenError::invalid(format!("{what} {}: {e}", path.display()));
    // Resolve the group first: a bad --group must not leave a socket file behind.
    let gid = socket_gid(config)?;
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| fail("create directory for socket", e))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path).await {
            Ok(_) => {
                return Err(ListenError::invalid(format!(
                    "another daemon is already listening on unix://{}: refusing to replace a live socket; stop it first or choose another -H",
                    path.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!("removing stale socket {}", path.display());
                std::fs::remove_file(path).map_err(|e| fail("remove stale socket", e))?;
            }
            Err(e) => return Err(fail("probe existing socket", e)),
        },
        Ok(_) => {
            return Err(ListenError::invalid(format!(
                "{} exists and is not a socket: refusing to replace it",
                path.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("stat", e)),
    }
    // berthd runs with umask 022 (set in main), so until the chmod below only root can connect.
    let listener = UnixListener::bind(path).map_err(|e| fail("listen on", e))?;
    let finish = || -> Result<(u64, u64), ListenError> {
        nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(0)), Some(gid))
            .map_err(|e| fail("chown socket", io::Error::from(e)))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| fail("chmod socket", e))?;
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path).map_err(|e| fail("stat socket", e))?;
        Ok((m.dev(), m.ino()))
    };
    match finish() {
        Ok((dev, ino)) => Ok(Listener::Unix {
            listener,
            path: Some((path.to_path_buf(), dev, ino)),
        }),
        Err(e) => {
            drop(listener);
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

/// The group of the Unix sockets: `--group` by name or number. A missing default group
/// (`docker`) falls back to berthd's own group with a warning; a missing named group is an error.
fn socket_gid(config: &Config) -> Result<nix::unistd::Gid, ListenError> {
    let name = config.group.as_str();
    if name.is_empty() {
        return Ok(nix::unistd::getgid());
    }
    let found = match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Some(g.gid),
        _ => name.parse::<u32>().ok().map(nix::unistd::Gid::from_raw),
    };
    match found {
        Some(gid) => Ok(gid),
        None if config.group_explicit => {
            Err(ListenError::invalid(format!("group {name} not found")))
        }
        None => {
            tracing::warn!("group {name} not found: the API sockets keep berthd's own group");
            Ok(nix::unistd::getgid())
        }
    }
}

crate::module_error! {
    /// A listener could not be set up.
    pub struct ListenError;
}
