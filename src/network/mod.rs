//! Networks (dockerd's libnetwork, bridge driver only): the network store and IPAM, bridges and
//! veth endpoints over netlink, berth's own nftables table, published ports through a userland
//! proxy process, and the embedded DNS server of user-defined networks. No HTTP types.
//!
//! - [`netns`]: network namespaces created and entered on dedicated OS threads (never on a
//!   tokio worker).
//! - [`netlink`]: bridges, veth pairs moved into a namespace, addresses, routes, MTU, and the
//!   host's routes (for IPAM); `rtnetlink`.
//! - [`firewall`]: the [`firewall::FirewallDriver`] trait and its nftables backend: the whole
//!   `berth` table is computed from recorded state and applied in one atomic `nft` batch.
//! - [`proxy`]: the loopback port proxy (dockerd's `docker-proxy`), a process of this binary
//!   that is handed the host socket berthd bound.
//! - [`dns`]: the embedded resolver at `127.0.0.11` inside a container's namespace.

pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod netlink;
pub mod netns;
pub mod proxy;
pub mod record;
pub mod service;

crate::module_error! {
    /// A network-side failure.
    pub struct NetworkError;
}

impl NetworkError {
    /// `network {name} not found` (404), dockerd's text.
    pub fn no_such_network(name: &str) -> Self {
        Self::not_found(format!("network {name} not found"))
    }
}
