//! The firewall (netavark's `FirewallDriver`): berth owns one nftables table per family and
//! never touches anything else. The table's whole content is a function of [`FwState`] (the
//! networks and the published ports berth has recorded), applied as one atomic batch, so a
//! restart rebuilds it from records and a change can never leave half a rule set.

pub mod nft;

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::NetworkError;

/// One bridge network as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwNetwork {
    /// The bridge device.
    pub bridge: String,
    pub subnets: Vec<IpNet>,
    /// Masquerade traffic from the subnets leaving through another interface
    /// (`--ip-masq`, `com.docker.network.bridge.enable_ip_masquerade`).
    pub masquerade: bool,
    /// Containers of this network may talk to each other (`--icc`, `…enable_icc`).
    pub icc: bool,
    /// `internal`: no traffic in or out of the bridge other than between its containers.
    pub internal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// One published port of one container endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FwPort {
    pub proto: Proto,
    /// The host address the port is bound to; `None` for all (`0.0.0.0` / `::`).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    /// The bridge the container is reached through.
    pub bridge: String,
    pub container_ip: IpAddr,
    pub container_port: u16,
}

/// Everything berth's table must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FwState {
    pub networks: Vec<FwNetwork>,
    pub ports: Vec<FwPort>,
    /// The userland proxy is on (`--userland-proxy`, the default): loopback clients reach
    /// published ports through the proxy, so no DNAT for `127.0.0.0/8` from the host, and
    /// `route_localnet` stays off. Off: hairpin DNAT from loopback as well.
    pub userland_proxy: bool,
}

/// A firewall backend.
pub trait FirewallDriver: Send + Sync {
    /// Make berth's table(s) hold exactly `state`, atomically.
    fn apply(&self, state: &FwState) -> Result<(), NetworkError>;

    /// Remove berth's table(s) (nothing else).
    fn remove_all(&self) -> Result<(), NetworkError>;

    /// Inside the container namespace at `netns`: redirect DNS to the embedded resolver, i.e.
    /// `127.0.0.11:53` (udp/tcp) to the ports it really listens on, and the answers' source
    /// port back to 53 (dockerd's `setupResolutionFiles` rules).
    fn dns_redirect(&self, netns: &Path, udp_port: u16, tcp_port: u16) -> Result<(), NetworkError>;

    /// The backend's name for `docker info` (`nftables`, `none`).
    fn name(&self) -> &'static str;
}

/// The driver for `--iptables=false`: berth manages no firewall rules (dockerd's behaviour);
/// DNS redirection inside namespaces still works.
pub struct NoFirewall;

impl FirewallDriver for NoFirewall {
    fn apply(&self, _state: &FwState) -> Result<(), NetworkError> {
        Ok(())
    }

    fn remove_all(&self) -> Result<(), NetworkError> {
        Ok(())
    }

    fn dns_redirect(&self, netns: &Path, udp_port: u16, tcp_port: u16) -> Result<(), NetworkError> {
        nft::dns_redirect(netns, udp_port, tcp_port)
    }

    fn name(&self) -> &'static str {
        "none"
    }
}
