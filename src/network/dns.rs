//! The embedded DNS server of user-defined networks (dockerd's `resolver.go`): inside each
//! container's namespace it listens on `127.0.0.11` at random UDP and TCP ports, to which the
//! namespace's own nat rules redirect port 53 (so the container may still bind :53 itself).
//! It answers A/AAAA/PTR from berth's endpoint table, as the asking container sees it, and
//! forwards everything else to the upstream resolvers.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use super::firewall::FirewallDriver;
use super::NetworkError;

/// The address the resolver answers at, inside the container.
pub const RESOLVER_IP: &str = "127.0.0.11";

/// Names as one container sees them (the networks it is on).
pub trait NameTable: Send + Sync + 'static {
    /// The addresses of `name` (a container name, alias, short ID or hostname, or
    /// `name.network`) of the requested family, on the networks `asker` shares; all of them
    /// for a shared alias. `None`: not a name berth knows (forward it). `Some(empty)`: the
    /// name exists but has no address of that family (NOERROR, no answer).
    fn lookup(&self, asker: &str, name: &str, v6: bool) -> Option<Vec<IpAddr>>;

    /// The name of `ip` for PTR (`<container name>.<network>`), on the networks `asker`
    /// shares.
    fn reverse(&self, asker: &str, ip: IpAddr) -> Option<String>;

    /// Where to forward other queries of `asker`: empty when none may be (all its networks
    /// are `internal`). Loopback upstreams are reached from the host namespace, others from
    /// the container's.
    fn upstreams(&self, asker: &str) -> Vec<SocketAddr>;
}

/// A running resolver for one container.
pub struct Resolver {
    _private: (),
}

impl Resolver {
    /// Bind UDP and TCP sockets on `127.0.0.11:0` inside `netns` (`None`: the current
    /// namespace, for tests), install the redirection through `fw`, and serve on the tokio
    /// runtime until [`Resolver::stop`] or drop. `asker` is the container's ID.
    pub fn start(
        netns: Option<&Path>,
        asker: String,
        names: Arc<dyn NameTable>,
        fw: &dyn FirewallDriver,
    ) -> Result<Resolver, NetworkError> {
        let _ = (netns, asker, names, fw);
        Err(NetworkError::internal("dns is not implemented yet"))
    }

    /// The ports it listens on (udp, tcp).
    pub fn ports(&self) -> (u16, u16) {
        (0, 0)
    }

    /// Stop serving and close the sockets.
    pub fn stop(self) {}
}
