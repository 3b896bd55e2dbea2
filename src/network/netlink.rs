//! Links, addresses and routes over rtnetlink: the bridge of a network, a container's veth
//! pair (host end on the bridge, the other moved into the container's namespace and renamed
//! `eth0`, `eth1`, …), and the host's routes that IPAM must avoid.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::IpNet;

use super::NetworkError;

/// A bridge device as a network wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Device name (`berth0`, `br-<12 hex>`, or `com.docker.network.bridge.name`).
    pub name: String,
    /// The gateway addresses with the subnet's prefix (`172.18.0.1/16`); none for a network
    /// without a gateway on the host (`internal` networks still get one, as dockerd).
    pub addresses: Vec<IpNet>,
    /// `com.docker.network.driver.mtu` / `--mtu`; `None` keeps the kernel's default.
    pub mtu: Option<u32>,
}

/// One container endpoint: a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethSpec {
    /// The host end's name (`veth` + 7 hex, as dockerd), enslaved to `bridge`.
    pub host_name: String,
    pub bridge: String,
    /// The container's namespace file.
    pub netns: PathBuf,
    /// The name inside the namespace (`eth0`, …).
    pub ifname: String,
    pub mac: [u8; 6],
    pub mtu: Option<u32>,
    /// Addresses with prefix (`172.18.0.2/16`, `fd00::2/64`).
    pub addresses: Vec<IpNet>,
    /// Default routes through these gateways (only for the endpoint that gives the
    /// container its default gateway).
    pub gateway_v4: Option<Ipv4Addr>,
    pub gateway_v6: Option<Ipv6Addr>,
}

/// A connection to the host namespace's rtnetlink.
pub struct Netlink {
    _private: (),
}

impl Netlink {
    /// Open a connection in the caller's (the host's) namespace.
    pub async fn new() -> Result<Self, NetworkError> {
        Err(NetworkError::internal("netlink is not implemented yet"))
    }

    /// Create the bridge if missing (or adopt an existing one of that name), set its MTU and
    /// addresses (adding missing ones, never removing others), and bring it up.
    pub async fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<(), NetworkError> {
        let _ = spec;
        Err(NetworkError::internal("netlink is not implemented yet"))
    }

    /// Delete a link by name; a missing one is fine.
    pub async fn delete_link(&self, name: &str) -> Result<(), NetworkError> {
        let _ = name;
        Err(NetworkError::internal("netlink is not implemented yet"))
    }

    /// The names of all links of the host namespace.
    pub async fn link_names(&self) -> Result<Vec<String>, NetworkError> {
        Err(NetworkError::internal("netlink is not implemented yet"))
    }

    /// The destinations of the host's IPv4 and IPv6 routes (main table), for IPAM to skip.
    pub async fn routes(&self) -> Result<Vec<IpNet>, NetworkError> {
        Err(NetworkError::internal("netlink is not implemented yet"))
    }

    /// Create the veth pair, enslave the host end to the bridge and bring it up, move the
    /// other end into the namespace, rename it, set MAC, MTU and addresses, bring it up, and
    /// add the default routes. On failure, the pair is deleted.
    pub async fn add_veth(&self, spec: &VethSpec) -> Result<(), NetworkError> {
        let _ = spec;
        Err(NetworkError::internal("netlink is not implemented yet"))
    }

    /// The addresses of the host's own interfaces (for `host-gateway` and hairpin checks).
    pub async fn host_addresses(&self) -> Result<Vec<IpAddr>, NetworkError> {
        Err(NetworkError::internal("netlink is not implemented yet"))
    }
}

/// Write a sysctl under `/proc/sys` (`net/ipv4/ip_forward` → `1`); a no-op when it already
/// holds that value.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), NetworkError> {
    let _ = (key, value);
    Err(NetworkError::internal("sysctl is not implemented yet"))
}
