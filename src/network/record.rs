//! What the network store keeps, one file per network (`<data-root>/network/<id>.json`,
//! written atomically): its configuration, IPAM state and the endpoints of the containers
//! running on it; and per container with published ports, its bindings and proxy
//! (`<data-root>/network/ports/<container-id>.json`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::firewall::Proto;
use super::proxy::ProxyProcess;

/// One `IPAM.Config` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub subnet: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<IpNet>,
    pub gateway: IpAddr,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux: BTreeMap<String, IpAddr>,
    /// Which keys the user gave (inspect shows only those; all for an automatic pool).
    #[serde(default)]
    pub user_subnet: bool,
    #[serde(default)]
    pub user_gateway: bool,
    /// The last address handed out (allocation rolls forward from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<IpAddr>,
}

/// A running container's attachment to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub container_id: String,
    pub container_name: String,
    /// The names the embedded DNS answers for (container name, aliases, short ID, hostname).
    pub dns_names: Vec<String>,
    pub aliases: Vec<String>,
    /// Link aliases of this container's lookups (alias → container name), user networks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, String>,
    pub ifname: String,
    pub host_veth: String,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    pub prefix_v4: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    #[serde(default)]
    pub prefix_v6: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_v4: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_v6: Option<Ipv6Addr>,
    /// The container's own `--dns`: the embedded server's upstreams for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default = "yes")]
    pub enable_ipv4: bool,
    #[serde(default)]
    pub enable_ipv6: bool,
    #[serde(default)]
    pub ipam_options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub pools: Vec<Pool>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The bridge device (bridge driver only).
    #[serde(default)]
    pub bridge: String,
    /// `bridge`, `host`, `none`: made by berthd, never removed by users.
    #[serde(default)]
    pub predefined: bool,
    /// Container ID → its endpoint while it runs.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
}

fn yes() -> bool {
    true
}

impl NetworkRecord {
    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }

    /// The default `bridge` network (no embedded DNS, legacy links).
    pub fn is_default_bridge(&self) -> bool {
        self.predefined && self.driver == "bridge"
    }

    fn opt_bool(&self, key: &str, default: bool) -> bool {
        self.options
            .get(key)
            .map(|v| v.parse().unwrap_or(default))
            .unwrap_or(default)
    }

    pub fn icc(&self) -> bool {
        self.opt_bool("com.docker.network.bridge.enable_icc", true)
    }

    pub fn masquerade(&self) -> bool {
        self.opt_bool("com.docker.network.bridge.enable_ip_masquerade", true)
    }

    pub fn mtu(&self) -> Option<u32> {
        self.options
            .get("com.docker.network.driver.mtu")
            .and_then(|m| m.parse().ok())
            .filter(|m| *m > 0)
    }

    /// `com.docker.network.bridge.host_binding_ipv4`.
    pub fn host_binding(&self) -> Option<IpAddr> {
        self.options
            .get("com.docker.network.bridge.host_binding_ipv4")
            .and_then(|v| v.parse().ok())
    }

    /// Every address taken in the network (gateways, auxiliary addresses, endpoints).
    pub fn taken(&self) -> BTreeSet<IpAddr> {
        let mut t = BTreeSet::new();
        for p in &self.pools {
            t.insert(p.gateway);
            t.extend(p.aux.values().copied());
        }
        for e in self.endpoints.values() {
            if let Some(a) = e.ipv4 {
                t.insert(IpAddr::V4(a));
            }
            if let Some(a) = e.ipv6 {
                t.insert(IpAddr::V6(a));
            }
        }
        t
    }

    pub fn pool_v4(&self) -> Option<&Pool> {
        self.pools.iter().find(|p| matches!(p.subnet, IpNet::V4(_)))
    }

    pub fn pool_v6(&self) -> Option<&Pool> {
        self.pools.iter().find(|p| matches!(p.subnet, IpNet::V6(_)))
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// One published port as bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub proto: Proto,
    /// `0.0.0.0` for all.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub container_ip: IpAddr,
    pub bridge: String,
}

/// A container's published ports and the proxy serving them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PortState {
    pub container_id: String,
    pub bindings: Vec<PortBinding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyProcess>,
}
