//! The nftables backend: JSON batches through Debian's `nft` binary (the `nftables` crate).
//! Tables `ip berth` and `ip6 berth`; berth never lists, flushes or edits any other table.

use std::path::Path;

use super::{FirewallDriver, FwState};
use crate::network::NetworkError;

/// The `nft` binary, found at start.
pub struct Nft {
    pub program: String,
    /// The table name (`berth`; tests may use another).
    pub table: String,
}

impl Nft {
    /// Find `nft` (`$PATH`, `/usr/sbin`, `/sbin`); an error that names Debian's `nftables`
    /// package when it is missing.
    pub fn locate(table: &str) -> Result<Self, NetworkError> {
        let _ = table;
        Err(NetworkError::internal("nft backend is not implemented yet"))
    }
}

impl FirewallDriver for Nft {
    fn apply(&self, state: &FwState) -> Result<(), NetworkError> {
        let _ = state;
        Err(NetworkError::internal("nft backend is not implemented yet"))
    }

    fn remove_all(&self) -> Result<(), NetworkError> {
        Err(NetworkError::internal("nft backend is not implemented yet"))
    }

    fn dns_redirect(&self, netns: &Path, udp_port: u16, tcp_port: u16) -> Result<(), NetworkError> {
        dns_redirect(netns, udp_port, tcp_port)
    }

    fn name(&self) -> &'static str {
        "nftables"
    }
}

/// The DNS redirection rules inside a container's namespace (see
/// [`FirewallDriver::dns_redirect`]); `nft` runs with its network namespace switched in the
/// forked child, before exec.
pub fn dns_redirect(netns: &Path, udp_port: u16, tcp_port: u16) -> Result<(), NetworkError> {
    let _ = (netns, udp_port, tcp_port);
    Err(NetworkError::internal(
        "nft dns redirect is not implemented yet",
    ))
}
