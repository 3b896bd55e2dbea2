//! A container on its networks: which networks it is on (resolved at create from
//! `NetworkMode` and `NetworkingConfig`, stored in the record), joining them at start (berthd
//! creates the namespace, the network service adds the endpoints, DNS and published ports),
//! `/etc/hosts` and `/etc/resolv.conf` for the run, leaving at the end, and the
//! `NetworkSettings` inspect and `ps` show.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bollard_stubs::models::{
    EndpointSettings, HostConfig, NetworkingConfig, PortBinding as ApiPortBinding, PortMap,
    PortSummary as Port, PortSummaryTypeEnum as PortTypeEnum,
};

use super::manager::ContainerManager;
use super::record::Record;
use super::ContainerError;
use crate::errors::{ErrorKind, Kinded};
use crate::network::firewall::Proto;
use crate::network::service::{Attached, EndpointRequest, JoinRequest, PortRequest};
use crate::network::NetworkError;
use crate::util::fs::replace_file;

impl From<NetworkError> for ContainerError {
    fn from(e: NetworkError) -> Self {
        ContainerError::new(e.kind(), e.to_string())
    }
}

/// Network modes without endpoints of their own.
pub fn joins_networks(mode: &str) -> bool {
    !(mode == "host" || mode == "none" || mode.starts_with("container:"))
}

impl ContainerManager {
    /// At create: the networks the container is on, by name, with the endpoint settings the
    /// user gave (`NetworkingConfig.EndpointsConfig`). The primary network is the one of
    /// `NetworkMode`.
    pub(super) fn networks_at_create(
        &self,
        host: &HostConfig,
        nc: Option<&NetworkingConfig>,
    ) -> Result<BTreeMap<String, EndpointSettings>, ContainerError> {
        let mode = host.network_mode.clone().unwrap_or_else(|| "bridge".into());
        let mut out = BTreeMap::new();
        let given = nc
            .and_then(|n| n.endpoints_config.clone())
            .unwrap_or_default();
        if !joins_networks(&mode) {
            if mode == "host" || mode == "none" {
                out.insert(mode.clone(), EndpointSettings::default());
            }
            return Ok(out);
        }
        // The default bridge may be disabled (`--bridge=none`): then the container only has
        // its loopback, as it always had.
        // An unknown network is a 400 here, never a 404: the docker CLI takes any 404 from
        // create for a missing image and goes to pull it.
        let find = |name: &str| {
            self.network.find(name).map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    ContainerError::invalid(e.to_string())
                } else {
                    e.into()
                }
            })
        };
        let primary = match self.network.find(&mode) {
            Ok(n) => Some(n),
            Err(e) if mode == "bridge" && e.kind() == ErrorKind::NotFound => None,
            Err(_) => Some(find(&mode)?),
        };
        if let Some(n) = primary {
            let mut s = given
                .get(&mode)
                .or_else(|| given.get("default"))
                .or_else(|| given.get(&n.id))
                .or_else(|| given.get(&n.name))
                .cloned()
                .unwrap_or_default();
            s.network_id = Some(n.id.clone());
            check_endpoint(&n, &s)?;
            out.insert(n.name.clone(), s);
        }
        for (name, s) in &given {
            // The CLI names the default network `default` (the mode before create maps it).
            if name == "default" || name == &mode {
                continue;
            }
            let n = find(name)?;
            if out.contains_key(&n.name) {
                continue;
            }
            if n.is_default_bridge() {
                continue;
            }
            let mut s = s.clone();
            s.network_id = Some(n.id.clone());
            check_endpoint(&n, &s)?;
            out.insert(n.name.clone(), s);
        }
        Ok(out)
    }

    /// The network namespace file of a container's run.
    pub(super) fn netns_file(&self, id: &str) -> PathBuf {
        self.runtime.netns_path(id)
    }

    /// Before the supervisor: create the run's network namespace (`lo` up) and join the
    /// networks (ports published), then write `/etc/hosts` and `/etc/resolv.conf` for this
    /// run. `none` gets the namespace alone; `Ok(None)` when the container has no namespace of
    /// its own (host, container:…).
    pub(super) async fn network_up(&self, r: &Record) -> Result<Option<PathBuf>, ContainerError> {
        let mode = r.host_config.network_mode.clone().unwrap_or_default();
        if mode == "host" || mode.starts_with("container:") {
            return Ok(None);
        }
        let netns = self.netns_file(&r.id);
        {
            let p = netns.clone();
            tokio::task::spawn_blocking(move || {
                if let Some(dir) = p.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = crate::network::netns::remove(&p);
                crate::network::netns::create(&p)
            })
            .await
            .map_err(|e| ContainerError::internal(format!("netns task: {e}")))??;
        }
        if !joins_networks(&mode) {
            return Ok(Some(netns));
        }
        let mut order: Vec<(&String, &EndpointSettings)> = r.networks.iter().collect();
        // The primary network (NetworkMode) first: its endpoint is eth0.
        order.sort_by_key(|(name, _)| {
            (
                **name != mode && !mode_is(&mode, name, self),
                (*name).clone(),
            )
        });
        let networks = order
            .into_iter()
            .map(|(name, s)| endpoint_request(name, s))
            .collect();
        let req = JoinRequest {
            container_id: r.id.clone(),
            container_name: r.name.clone(),
            hostname: r.config.hostname.clone().unwrap_or_default(),
            netns: netns.clone(),
            networks,
            ports: port_requests(r)?,
            dns: r
                .host_config
                .dns
                .iter()
                .flatten()
                .filter_map(|d| d.parse().ok())
                .collect(),
        };
        let attached = match self.network.join(&req).await {
            Ok(a) => a,
            Err(e) => {
                let p = netns.clone();
                let _ =
                    tokio::task::spawn_blocking(move || crate::network::netns::remove(&p)).await;
                return Err(e.into());
            }
        };
        self.write_network_files(r, &attached)?;
        Ok(Some(netns))
    }

    /// The run ended (or failed to start): leave the networks and drop the namespace.
    pub(super) async fn network_down(&self, id: &str) {
        self.network.leave(id).await;
        let p = self.netns_file(id);
        let _ = tokio::task::spawn_blocking(move || crate::network::netns::remove(&p)).await;
    }

    /// `/etc/hosts` (localhost lines, the container's own addresses, `--add-host` with
    /// `host-gateway`, legacy links) and `/etc/resolv.conf` (the embedded DNS on user
    /// networks) for this run.
    fn write_network_files(&self, r: &Record, attached: &[Attached]) -> Result<(), ContainerError> {
        let hostname = r.config.hostname.clone().unwrap_or_default();
        let mut hosts = super::create::hosts_file(&hostname, &[]);
        let gw = self.host_gateway();
        for e in r.host_config.extra_hosts.iter().flatten() {
            if let Some((name, ip)) = e.split_once(':') {
                let ip = if ip == "host-gateway" {
                    gw.map(|g| g.to_string()).unwrap_or_default()
                } else {
                    ip.to_string()
                };
                if !ip.is_empty() {
                    hosts.push_str(&format!("{ip}\t{name}\n"));
                }
            }
        }
        for link in r.host_config.links.iter().flatten() {
            if let Some((target, ip)) = self.link_target(link) {
                hosts.push_str(&format!("{ip}\t{target}\n"));
            }
        }
        let domain = r.config.domainname.clone().unwrap_or_default();
        for a in attached {
            if let Some(ip) = a.endpoint.ipv4 {
                if domain.is_empty() {
                    hosts.push_str(&format!("{ip}\t{hostname}\n"));
                } else {
                    hosts.push_str(&format!("{ip}\t{hostname}.{domain} {hostname}\n"));
                }
            }
            if let Some(ip) = a.endpoint.ipv6 {
                hosts.push_str(&format!("{ip}\t{hostname}\n"));
            }
        }
        // Remade at every start: replaced atomically, not fsynced.
        let write = |p: &str, s: &str| {
            replace_file(std::path::Path::new(p), s.as_bytes(), 0o644)
                .map_err(|e| ContainerError::io(format!("write {p}"), e))
        };
        write(&r.hosts_path, &hosts)?;
        let user_net = attached.iter().any(|a| a.network_name != "bridge");
        let opts = self.network.options();
        let h = &r.host_config;
        let dns: Vec<String> = match h.dns.as_deref() {
            Some(d) if !d.is_empty() => d.to_vec(),
            _ => opts.dns.iter().map(|d| d.to_string()).collect(),
        };
        let search: Vec<String> = match h.dns_search.as_deref() {
            Some(d) if !d.is_empty() => d.to_vec(),
            _ => opts.dns_search.clone(),
        };
        let dns_opts: Vec<String> = match h.dns_options.as_deref() {
            Some(d) if !d.is_empty() => d.to_vec(),
            _ => opts.dns_opts.clone(),
        };
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = if user_net {
            // dockerd: the embedded server, the search domains, `ndots:0`; the real servers
            // are the embedded server's upstreams.
            let base = super::create::resolv_conf(&host_resolv, false, &[], &search, &dns_opts);
            let mut s = String::new();
            for l in base.lines() {
                if l.starts_with("search") {
                    s.push_str(l);
                    s.push('\n');
                }
            }
            s.push_str("nameserver 127.0.0.11\n");
            let mut o: Vec<String> = base
                .lines()
                .filter_map(|l| l.strip_prefix("options "))
                .flat_map(|l| l.split_whitespace().map(str::to_string))
                .collect();
            if !o.iter().any(|x| x.starts_with("ndots:")) {
                o.push("ndots:0".to_string());
            }
            s.push_str(&format!("options {}\n", o.join(" ")));
            s
        } else {
            super::create::resolv_conf(&host_resolv, false, &dns, &search, &dns_opts)
        };
        write(&r.resolv_conf_path, &resolv)?;
        Ok(())
    }

    /// `host-gateway`: the default bridge's gateway (dockerd's default host-gateway-ip).
    fn host_gateway(&self) -> Option<IpAddr> {
        self.network
            .find("bridge")
            .ok()
            .and_then(|n| n.pool_v4().map(|p| p.gateway))
    }

    /// A legacy `--link name:alias`: the alias and the linked container's default-bridge IP.
    fn link_target(&self, link: &str) -> Option<(String, IpAddr)> {
        let (name, alias) = parse_link(link);
        let c = self.get(name).ok()?;
        let ip = self
            .network
            .attached(&c.id)
            .into_iter()
            .find_map(|a| a.endpoint.ipv4)?;
        let label = if alias == name {
            name.to_string()
        } else {
            format!("{alias} {name}")
        };
        Some((label, IpAddr::V4(ip)))
    }

    /// The environment of legacy links (moby's `links.Link.ToEnv`): for `--link db:alias`,
    /// `ALIAS_NAME=/<me>/alias`, the linked container's own variables as `ALIAS_ENV_<KEY>`,
    /// and per exposed port `ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO]`, with
    /// `ALIAS_PORT` for the lowest one.
    pub(super) fn link_env(&self, r: &Record) -> Vec<String> {
        let mut env = Vec::new();
        for link in r.host_config.links.iter().flatten() {
            let (name, alias) = parse_link(link);
            let Ok(c) = self.get(name) else { continue };
            let other = c.record();
            let Some(ip) = self
                .network
                .attached(&other.id)
                .into_iter()
                .find_map(|a| a.endpoint.ipv4)
            else {
                continue;
            };
            let prefix = alias.to_ascii_uppercase().replace('-', "_");
            env.push(format!("{prefix}_NAME=/{}/{alias}", r.name));
            let mut ports: Vec<(u16, Proto)> = other
                .config
                .exposed_ports
                .iter()
                .flatten()
                .filter_map(|p| split_port(p))
                .collect();
            ports.sort();
            if let Some((p, proto)) = ports.first() {
                env.push(format!("{prefix}_PORT={}://{ip}:{p}", proto.as_str()));
            }
            for (p, proto) in &ports {
                let key = format!("{prefix}_PORT_{p}_{}", proto.as_str().to_ascii_uppercase());
                env.push(format!("{key}={}://{ip}:{p}", proto.as_str()));
                env.push(format!("{key}_ADDR={ip}"));
                env.push(format!("{key}_PORT={p}"));
                env.push(format!("{key}_PROTO={}", proto.as_str()));
            }
            for kv in other.config.env.iter().flatten() {
                let key = kv.split('=').next().unwrap_or("");
                if matches!(key, "HOME" | "PATH" | "HOSTNAME") || key.is_empty() {
                    continue;
                }
                env.push(format!("{prefix}_ENV_{kv}"));
            }
        }
        env
    }

    /// Inspect's `NetworkSettings.Networks` and `Ports`.
    pub(super) fn network_view(&self, r: &Record) -> (HashMap<String, EndpointSettings>, PortMap) {
        let attached: HashMap<String, Attached> = self
            .network
            .attached(&r.id)
            .into_iter()
            .map(|a| (a.network_name.clone(), a))
            .collect();
        let mut nets = HashMap::new();
        for (name, cfg) in &r.networks {
            let mut s = EndpointSettings {
                ipam_config: cfg.ipam_config.clone(),
                links: cfg.links.clone(),
                aliases: cfg.aliases.clone(),
                driver_opts: cfg.driver_opts.clone(),
                gw_priority: Some(cfg.gw_priority.unwrap_or(0)),
                network_id: cfg.network_id.clone().or(Some(String::new())),
                mac_address: Some(String::new()),
                endpoint_id: Some(String::new()),
                gateway: Some(String::new()),
                ip_address: Some(String::new()),
                ip_prefix_len: Some(0),
                ipv6_gateway: Some(String::new()),
                global_ipv6_address: Some(String::new()),
                global_ipv6_prefix_len: Some(0),
                dns_names: None,
            };
            if let Some(a) = attached.get(name) {
                let e = &a.endpoint;
                s.network_id = Some(a.network_id.clone());
                s.endpoint_id = Some(e.id.clone());
                s.mac_address = Some(e.mac.clone());
                s.ip_address = Some(e.ipv4.map(|i| i.to_string()).unwrap_or_default());
                s.ip_prefix_len = Some(if e.ipv4.is_some() {
                    e.prefix_v4 as i64
                } else {
                    0
                });
                s.gateway = Some(
                    self.network
                        .find(&a.network_id)
                        .ok()
                        .and_then(|n| n.pool_v4().map(|p| p.gateway.to_string()))
                        .unwrap_or_default(),
                );
                s.global_ipv6_address = Some(e.ipv6.map(|i| i.to_string()).unwrap_or_default());
                s.global_ipv6_prefix_len = Some(if e.ipv6.is_some() {
                    e.prefix_v6 as i64
                } else {
                    0
                });
                s.ipv6_gateway = Some(
                    self.network
                        .find(&a.network_id)
                        .ok()
                        .and_then(|n| n.pool_v6().map(|p| p.gateway.to_string()))
                        .unwrap_or_default(),
                );
                if !e.dns_names.is_empty() {
                    s.dns_names = Some(e.dns_names.clone());
                }
            }
            nets.insert(name.clone(), s);
        }
        let mut ports: HashMap<String, Option<Vec<ApiPortBinding>>> = HashMap::new();
        let running = r.state.status.is_running();
        for p in r.config.exposed_ports.iter().flatten() {
            ports.insert(normalize_port(p), None);
        }
        for p in r.host_config.port_bindings.iter().flat_map(|m| m.keys()) {
            ports.entry(normalize_port(p)).or_insert(None);
        }
        if running {
            for b in self.network.ports_of(&r.id) {
                let key = format!("{}/{}", b.container_port, b.proto.as_str());
                ports
                    .entry(key)
                    .or_insert(None)
                    .get_or_insert_with(Vec::new)
                    .push(ApiPortBinding {
                        host_ip: Some(b.host_ip.to_string()),
                        host_port: Some(b.host_port.to_string()),
                    });
            }
        } else {
            ports.clear();
        }
        (nets, ports)
    }

    /// `docker ps`'s `Ports`.
    pub(super) fn port_summary(&self, r: &Record) -> Vec<Port> {
        let mut out = Vec::new();
        let mut published = std::collections::HashSet::new();
        if r.state.status.is_running() {
            for b in self.network.ports_of(&r.id) {
                published.insert((b.container_port, b.proto));
                out.push(Port {
                    ip: Some(b.host_ip.to_string()),
                    private_port: b.container_port,
                    public_port: Some(b.host_port),
                    typ: Some(match b.proto {
                        Proto::Tcp => PortTypeEnum::TCP,
                        Proto::Udp => PortTypeEnum::UDP,
                    }),
                });
            }
        }
        for p in r.config.exposed_ports.iter().flatten() {
            if let Some((port, proto)) = split_port(p) {
                if !published.contains(&(port, proto)) {
                    out.push(Port {
                        ip: None,
                        private_port: port,
                        public_port: None,
                        typ: Some(match proto {
                            Proto::Tcp => PortTypeEnum::TCP,
                            Proto::Udp => PortTypeEnum::UDP,
                        }),
                    });
                }
            }
        }
        out
    }

    /// The networks a container's record names, for `ps --filter network=`.
    pub fn network_names_of(&self, r: &Record) -> Vec<(String, String)> {
        r.networks
            .iter()
            .map(|(name, s)| (name.clone(), s.network_id.clone().unwrap_or_default()))
            .collect()
    }

    pub fn network_service(&self) -> &Arc<crate::network::service::NetworkService> {
        &self.network
    }
}

/// A legacy `--link name:alias` (`/name:/me/alias` as the API stores it): name and alias.
fn parse_link(link: &str) -> (&str, &str) {
    match link.split_once(':') {
        Some((n, a)) => (n.trim_start_matches('/'), a.rsplit('/').next().unwrap_or(a)),
        None => (link.trim_start_matches('/'), link.trim_start_matches('/')),
    }
}

fn mode_is(mode: &str, name: &str, m: &ContainerManager) -> bool {
    m.network
        .find(mode)
        .map(|n| n.name == name)
        .unwrap_or(false)
}

fn check_endpoint(
    n: &crate::network::record::NetworkRecord,
    s: &EndpointSettings,
) -> Result<(), ContainerError> {
    let want_ip = s.ipam_config.as_ref().is_some_and(|c| {
        c.ipv4_address.as_deref().is_some_and(|a| !a.is_empty())
            || c.ipv6_address.as_deref().is_some_and(|a| !a.is_empty())
    });
    if want_ip && (n.is_default_bridge() || !n.pools.iter().any(|p| p.user_subnet)) {
        return Err(ContainerError::invalid(
            "user specified IP address is supported only when connecting to networks with user configured subnets",
        ));
    }
    if s.aliases.as_ref().is_some_and(|a| !a.is_empty()) && n.is_default_bridge() {
        return Err(ContainerError::invalid(
            "network-scoped alias is supported only for containers in user defined networks",
        ));
    }
    Ok(())
}

pub(super) fn endpoint_request(name: &str, s: &EndpointSettings) -> EndpointRequest {
    let ipam = s.ipam_config.clone().unwrap_or_default();
    EndpointRequest {
        network: s
            .network_id
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| name.to_string()),
        aliases: s.aliases.clone().unwrap_or_default(),
        ipv4: ipam.ipv4_address.as_deref().and_then(|a| a.parse().ok()),
        ipv6: ipam.ipv6_address.as_deref().and_then(|a| a.parse().ok()),
        mac: s.mac_address.clone().filter(|m| !m.is_empty()),
    }
}

/// `80/tcp` from `80` or `80/tcp`.
fn normalize_port(p: &str) -> String {
    if p.contains('/') {
        p.to_string()
    } else {
        format!("{p}/tcp")
    }
}

fn split_port(p: &str) -> Option<(u16, Proto)> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return None,
    };
    Some((port.parse().ok()?, proto))
}

/// The ports to publish: `PortBindings`, and with `PublishAllPorts` every exposed port not
/// bound otherwise, on a port of the kernel's choice.
pub(super) fn port_requests(r: &Record) -> Result<Vec<PortRequest>, ContainerError> {
    let mut out = Vec::new();
    let mut keys: Vec<&String> = r
        .host_config
        .port_bindings
        .iter()
        .flat_map(|m| m.keys())
        .collect();
    keys.sort();
    for key in keys {
        let Some((cport, proto)) = split_port(key) else {
            return Err(ContainerError::invalid(format!(
                "invalid port specification: \"{key}\""
            )));
        };
        let bindings = r
            .host_config
            .port_bindings
            .as_ref()
            .and_then(|m| m.get(key).cloned().flatten())
            .unwrap_or_default();
        let bindings = if bindings.is_empty() {
            vec![ApiPortBinding::default()]
        } else {
            bindings
        };
        for b in bindings {
            let host_ip = match b.host_ip.as_deref().filter(|s| !s.is_empty()) {
                Some(ip) => Some(ip.trim_matches(['[', ']']).parse::<IpAddr>().map_err(|_| {
                    ContainerError::invalid(format!("invalid host IP address: {ip}"))
                })?),
                None => None,
            };
            let hp = b.host_port.unwrap_or_default();
            let (lo, hi) = match hp.split_once('-') {
                Some((a, z)) => (parse_port(a)?, parse_port(z)?),
                None if hp.is_empty() => (0, 0),
                None => {
                    let p = parse_port(&hp)?;
                    (p, p)
                }
            };
            // IPv6 host addresses are not served yet: skip them, as dockerd does without ip6.
            if host_ip.is_some_and(|i| i.is_ipv6()) {
                continue;
            }
            out.push(PortRequest {
                proto,
                host_ip,
                host_port: lo,
                host_port_end: hi,
                container_port: cport,
            });
        }
    }
    if r.host_config.publish_all_ports == Some(true) {
        let mut exposed: Vec<&String> = r.config.exposed_ports.iter().flatten().collect();
        exposed.sort();
        for p in exposed {
            if let Some((cport, proto)) = split_port(p) {
                if !out
                    .iter()
                    .any(|q| q.container_port == cport && q.proto == proto)
                {
                    out.push(PortRequest {
                        proto,
                        host_ip: None,
                        host_port: 0,
                        host_port_end: 0,
                        container_port: cport,
                    });
                }
            }
        }
    }
    Ok(out)
}

fn parse_port(s: &str) -> Result<u16, ContainerError> {
    s.parse::<u16>()
        .map_err(|_| ContainerError::invalid(format!("invalid port specification: \"{s}\"")))
}
