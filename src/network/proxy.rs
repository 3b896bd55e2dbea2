//! Published ports through a userland proxy (dockerd's `docker-proxy`): berthd binds each host
//! port itself, so a taken port fails the start with dockerd's `port is already allocated`
//! text, and hands the bound sockets to one proxy process per container, the same binary
//! under [`SUBCOMMAND`]. Like a supervisor, the proxy is detached from berthd and survives
//! its restart; berthd finds it again by pid and start time.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::Path;

use serde::{Deserialize, Serialize};

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

/// Bind the host side of `spec` (TCP: listening; UDP: bound), `SO_REUSEADDR`, close-on-exec.
/// Returns the socket and the port really bound (the kernel's choice for `0`). A port in use
/// gives dockerd's `Bind for {ip}:{port} failed: port is already allocated` (a conflict).
pub fn bind(spec: &PortSpec) -> Result<(OwnedFd, u16), NetworkError> {
    let _ = spec;
    Err(NetworkError::internal("proxy::bind is not implemented yet"))
}

/// Start one proxy process (`exe` = this binary) for all of a container's `ports`, each with
/// its bound socket (from [`bind`], `host_port` already the real one). The process is
/// detached (own session), inherits only these sockets, and runs until [`stop`].
pub fn spawn(exe: &Path, ports: Vec<(PortSpec, OwnedFd)>) -> Result<ProxyProcess, NetworkError> {
    let _ = (exe, ports);
    Err(NetworkError::internal(
        "proxy::spawn is not implemented yet",
    ))
}

/// Whether the proxy still runs.
pub fn alive(p: &ProxyProcess) -> bool {
    let _ = p;
    false
}

/// Stop the proxy (SIGTERM, then SIGKILL) if it still runs, and reap it when it is our child.
pub fn stop(p: &ProxyProcess) {
    let _ = p;
}

/// The proxy process's `main` (argv after the subcommand); the exit code.
pub fn main(args: &[String]) -> i32 {
    let _ = args;
    1
}
