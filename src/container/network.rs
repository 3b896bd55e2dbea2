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
    owns_namespace(mode) && mode != "none"
}

/// Network modes whose network namespace is the container's own, made by berthd at its start
/// (`network_up`): every one but `host` and `container:<other>`.
pub fn owns_namespace(mode: &str) -> bool {
    !(mode == "host" || mode.starts_with("container:"))
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
        // its loopback, as it always had. A network that does not exist (yet) is recorded by
        // the name given and checked at start, as moby's `validateNetworkingConfig` ("the
        // referenced network might not exist when the container is created"): compose 1.x
        // creates containers before their networks at times.
        let find = |name: &str| match self.network.find(name) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ContainerError::from(e)),
        };
        // The main network's settings, as the request keys them (the CLI: `default`).
        let for_mode = || given.get(&mode).or_else(|| given.get("default"));
        let primary = match find(&mode)? {
            Some(n) => Some(n),
            None if mode == "bridge" => None,
            None => {
                out.insert(mode.clone(), for_mode().cloned().unwrap_or_default());
                None
            }
        };
        if let Some(n) = primary {
            let mut s = for_mode()
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
            let Some(n) = find(name)? else {
                out.entry(name.clone()).or_insert_with(|| s.clone());
                continue;
            };
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
        if mode == "host" {
            self.network.announce("connect", &mode, &r.id);
        }
        if !owns_namespace(&mode) {
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
        // A `none` container that was disconnected from `none` and connected to bridge
        // networks joins those (moby's `allocateNetwork` walks the record's networks).
        let bridged = r.networks.keys().any(|n| n != "none" && n != "host");
        let joins = joins_networks(&mode) || (mode == "none" && bridged);
        if !joins {
            if mode == "none" && r.networks.contains_key("none") {
                self.network.announce("connect", &mode, &r.id);
            }
            return Ok(Some(netns));
        }
        let mut order: Vec<(&String, &EndpointSettings)> = r
            .networks
            .iter()
            .filter(|(name, _)| *name != "none")
            .collect();
        // The primary network (NetworkMode) first: its endpoint is eth0.
        order.sort_by_key(|(name, _)| {
            (
                **name != mode && !mode_is(&mode, name, self),
                (*name).clone(),
            )
        });
        let networks = order
            .into_iter()
            .map(|(name, s)| {
                let mut e = endpoint_request(name, s);
                // The deprecated container-wide MAC is the main network's (dockerd before 25
                // applied it at start, whatever happened to the endpoint before).
                if e.mac.is_none() && (*name == mode || mode_is(&mode, name, self)) {
                    e.mac = r.mac_address.clone();
                }
                e
            })
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
        let joined = self.network.join(&req).await;
        self.network_changed(&r.id);
        let attached = match joined {
            Ok(a) => a,
            Err(e) => {
                let p = netns.clone();
                let _ =
                    tokio::task::spawn_blocking(move || crate::network::netns::remove(&p)).await;
                // dockerd 28's words around any failure of the start's networking (a port
                // that cannot be bound, a network that did not exist at create and still
                // does not, …).
                return Err(ContainerError::new(
                    e.kind(),
                    format!("failed to set up container networking: {e}"),
                ));
            }
        };
        self.write_network_files(r, &attached, Rewrite::BeforeStart)?;
        self.update_link_parents(r);
        // Networks recorded by name at create (they did not exist then) get their IDs, saved
        // with the start's state.
        if r.networks.values().any(|s| s.network_id.is_none()) {
            if let Ok(c) = self.get(&r.id) {
                self.update_unsaved(&c, |rec| {
                    for a in &attached {
                        if let Some(s) = rec.networks.get_mut(&a.network_name) {
                            s.network_id.get_or_insert_with(|| a.network_id.clone());
                        }
                    }
                });
            }
        }
        Ok(Some(netns))
    }

    /// The network service changed what a container's summary and inspect show (its
    /// endpoints, addresses, published ports): a new record generation, as for a change of
    /// the record itself. `network_up` and `network_down` call it; connect and disconnect
    /// change the record right after.
    pub(super) fn network_changed(&self, id: &str) {
        if let Ok(c) = self.get(id) {
            c.record.touch();
        }
    }

    /// The run ended (or failed to start): leave the networks and drop the namespace.
    pub(super) async fn network_down(&self, id: &str) {
        // The event of `host` or `none`, unless the container was disconnected from it.
        let mode = self.get(id).ok().and_then(|c| {
            c.with_record(|r| {
                r.host_config
                    .network_mode
                    .clone()
                    .filter(|m| r.networks.contains_key(m))
            })
        });
        if let Some(mode) = mode.filter(|m| m == "host" || m == "none") {
            self.network.announce("disconnect", &mode, id);
        }
        self.network.leave(id).await;
        self.network_changed(id);
        let p = self.netns_file(id);
        let _ = tokio::task::spawn_blocking(move || crate::network::netns::remove(&p)).await;
    }

    /// `/etc/hosts` (localhost lines, the container's own addresses, `--add-host` with
    /// `host-gateway`, legacy links) and `/etc/resolv.conf` (the embedded DNS on user
    /// networks) for this run; again when a running container is connected to a network or
    /// disconnected from one (moby's `addHostsEntries`/`deleteHostsEntries`, and
    /// `rebuildDNS` when its resolver starts).
    pub(super) fn write_network_files(
        &self,
        r: &Record,
        attached: &[Attached],
        how: Rewrite,
    ) -> Result<(), ContainerError> {
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
        // Legacy links, on the default bridge only (moby's `addLegacyLinks`).
        if attached.iter().any(|a| a.network_name == "bridge") {
            hosts.push_str(&self.link_hosts(r)?);
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
        // Remade at every start: replaced atomically, not fsynced. A running container has
        // the files bind-mounted: they are rewritten in place, as dockerd's.
        let in_place = !matches!(how, Rewrite::BeforeStart);
        let write = |p: &str, s: &str| {
            let path = std::path::Path::new(p);
            if in_place {
                std::fs::write(path, s.as_bytes())
            } else {
                replace_file(path, s.as_bytes(), 0o644)
            }
            .map_err(|e| ContainerError::io(format!("write {p}"), e))
        };
        write(&r.hosts_path, &hosts)?;
        if matches!(how, Rewrite::HostsOnly) {
            return Ok(());
        }
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
    pub(super) fn host_gateway(&self) -> Option<IpAddr> {
        self.network
            .find("bridge")
            .ok()
            .and_then(|n| n.pool_v4().map(|p| p.gateway))
    }

    /// At create, moby's `registerLinks`: each `HostConfig.Links` entry names an existing
    /// container (followed through `container:` network modes), which is stored as
    /// `/<child ID>:/<name>/<alias>` so that renames and inspect find it again. Links are not
    /// registered on user-defined networks (there the CLI sends them as the endpoint's
    /// `Links`, aliases for the embedded DNS).
    pub(super) fn register_links(
        &self,
        host: &HostConfig,
    ) -> Result<Vec<(String, String)>, ContainerError> {
        let links = host.links.as_deref().unwrap_or(&[]);
        let mode = host.network_mode.clone().unwrap_or_default();
        if links.is_empty() || is_user_defined(&mode) {
            return Ok(Vec::new());
        }
        // A `container:` mode with links was refused before (`create::validate_net_mode`).
        if mode == "host" {
            return Err(ContainerError::invalid(CONFLICT_HOST_LINKS));
        }
        let get = |name: &str| {
            self.get(name).map_err(|e| {
                let kind = if e.kind() == ErrorKind::NotFound {
                    // Not a 404: the CLI would take it for a missing image and pull.
                    ErrorKind::InvalidParameter
                } else {
                    e.kind()
                };
                ContainerError::new(kind, format!("could not get container for {name}: {e}"))
            })
        };
        let mut out: Vec<(String, String)> = Vec::new();
        for l in links {
            let (name, alias) = parse_link(l)?;
            let mut child = get(&name)?.record();
            while let Some(cid) = child
                .host_config
                .network_mode
                .as_deref()
                .and_then(|m| m.strip_prefix("container:"))
                .map(str::to_string)
            {
                child = get(&cid)?.record();
            }
            if child.host_config.network_mode.as_deref() == Some("host") {
                return Err(ContainerError::invalid(CONFLICT_HOST_LINKS));
            }
            // A second link under the same alias is ignored, as dockerd's name reservation.
            if !out.iter().any(|(_, a)| *a == alias) {
                out.push((child.id.clone(), alias));
            }
        }
        Ok(out)
    }

    /// A container's registered legacy links: the linked container and the alias. Links to
    /// containers that are gone are left out.
    pub(super) fn links_of(&self, r: &Record) -> Vec<(Arc<super::manager::Container>, String)> {
        let mode = r.host_config.network_mode.clone().unwrap_or_default();
        if is_user_defined(&mode) {
            return Vec::new();
        }
        r.host_config
            .links
            .iter()
            .flatten()
            .filter_map(|l| parse_link(l).ok())
            .filter_map(|(name, alias)| self.get(&name).ok().map(|c| (c, alias)))
            .collect()
    }

    /// The names legacy links give containers (dockerd reserves `/<parent>/<alias>` for the
    /// linked container): by linked container ID, for `ps`'s `Names`.
    pub(super) fn link_names(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        // Only containers with links are copied (most have none: `docker ps` on many).
        let parents: Vec<Record> = self
            .all()
            .into_iter()
            .filter(|c| c.has_links)
            .map(|c| c.record())
            .collect();
        for parent in parents {
            for (c, alias) in self.links_of(&parent) {
                out.entry(c.id.clone())
                    .or_default()
                    .push(format!("/{}/{alias}", parent.name));
            }
        }
        out
    }

    /// Inspect's `HostConfig.Links`: `/<child name>:/<name>/<alias>` per registered link, as
    /// dockerd builds them from its link index (`None` without any).
    pub(super) fn links_view(&self, r: &Record) -> Option<Vec<String>> {
        let v: Vec<String> = self
            .links_of(r)
            .into_iter()
            .map(|(c, alias)| format!("/{}:/{}/{alias}", c.record().name, r.name))
            .collect();
        (!v.is_empty()).then_some(v)
    }

    /// The `/etc/hosts` lines of legacy links (moby's `addLegacyLinks`): the linked
    /// container's default-bridge addresses as `<ip>\t<alias> <hostname>[ <name>]`.
    fn link_hosts(&self, r: &Record) -> Result<String, ContainerError> {
        let mut out = String::new();
        for (c, alias) in self.links_of(r) {
            let child = c.record();
            if !child.networks.contains_key("bridge") {
                return Err(ContainerError::internal(format!(
                    "Cannot link to /{}, as it does not belong to the default network",
                    child.name
                )));
            }
            let mut names = format!(
                "{alias} {}",
                child.config.hostname.clone().unwrap_or_default()
            );
            if alias != child.name {
                names.push(' ');
                names.push_str(&child.name);
            }
            if let Some(e) = self.bridge_endpoint(&child.id) {
                if let Some(ip) = e.ipv4 {
                    out.push_str(&format!("{ip}\t{names}\n"));
                }
                if let Some(ip) = e.ipv6 {
                    out.push_str(&format!("{ip}\t{names}\n"));
                }
            }
        }
        Ok(out)
    }

    /// A container's endpoint on the default bridge, while it runs.
    fn bridge_endpoint(&self, id: &str) -> Option<crate::network::record::Endpoint> {
        self.network
            .attached(id)
            .into_iter()
            .find(|a| a.network_name == "bridge")
            .map(|a| a.endpoint)
    }

    /// A container joined the default bridge: the running containers that link to it get
    /// its new address in their `/etc/hosts` (moby's `UpdateHostsEntry` for each parent),
    /// written in place, as the file is bind-mounted.
    pub(super) fn update_link_parents(&self, r: &Record) {
        let Some(e) = self.bridge_endpoint(&r.id) else {
            return;
        };
        for parent in self.all().into_iter().map(|c| c.record()) {
            if parent.id == r.id || !parent.state.status.is_running() {
                continue;
            }
            let aliases: Vec<String> = self
                .links_of(&parent)
                .into_iter()
                .filter(|(c, _)| c.id == r.id)
                .map(|(_, a)| a)
                .collect();
            if aliases.is_empty() {
                continue;
            }
            let Ok(mut text) = std::fs::read_to_string(&parent.hosts_path) else {
                continue;
            };
            for alias in &aliases {
                if let Some(ip) = e.ipv4 {
                    text = update_hosts_entry(&text, alias, &ip.to_string());
                }
                if let Some(ip) = e.ipv6 {
                    text = update_hosts_entry(&text, alias, &ip.to_string());
                }
            }
            if let Err(err) = std::fs::write(&parent.hosts_path, text) {
                tracing::warn!(
                    "update /etc/hosts of {} for link {}: {err}",
                    parent.id,
                    r.id
                );
            }
        }
    }

    /// The environment of legacy links (moby's `setupLinkedContainers` and
    /// `links.Link.ToEnv`), for a container on the default bridge: per link, the linked
    /// container's ports, name and variables. A linked container that is not running fails
    /// the start (or exec) with dockerd's text.
    pub(super) fn link_env(&self, r: &Record) -> Result<Vec<String>, ContainerError> {
        if !r.networks.contains_key("bridge") {
            return Ok(Vec::new());
        }
        let mut env = Vec::new();
        for (c, alias) in self.links_of(r) {
            let child = c.record();
            let full = format!("/{}/{alias}", r.name);
            if !child.state.status.is_running() {
                return Err(ContainerError::internal(format!(
                    "Cannot link to a non running container: /{} AS {full}",
                    child.name
                )));
            }
            if !child.networks.contains_key("bridge") {
                return Err(ContainerError::internal(format!(
                    "container {} not attached to default bridge network",
                    child.id
                )));
            }
            let ip = self
                .bridge_endpoint(&child.id)
                .and_then(|e| e.ipv4)
                .map(|i| i.to_string())
                .unwrap_or_default();
            let ports: Vec<(u16, String)> = child
                .config
                .exposed_ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    Some((port.parse().ok()?, proto.to_string()))
                })
                .collect();
            env.extend(link_to_env(
                &full,
                &ip,
                ports,
                child.config.env.as_deref().unwrap_or(&[]),
            ));
        }
        Ok(env)
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
                // The MAC asked for shows before the endpoint exists, as dockerd's.
                mac_address: Some(cfg.mac_address.clone().unwrap_or_default()),
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
                let net = self.network.find(&a.network_id).ok();
                let gateway = |pool: Option<&crate::network::record::Pool>| {
                    pool.map(|p| p.gateway.to_string()).unwrap_or_default()
                };
                s.network_id = Some(a.network_id.clone());
                s.endpoint_id = Some(e.id.clone());
                s.mac_address = Some(e.mac.clone());
                s.ip_address = Some(e.ipv4.map(|i| i.to_string()).unwrap_or_default());
                s.ip_prefix_len = Some(if e.ipv4.is_some() {
                    e.prefix_v4 as i64
                } else {
                    0
                });
                s.gateway = Some(gateway(net.as_ref().and_then(|n| n.pool_v4())));
                s.global_ipv6_address = Some(e.ipv6.map(|i| i.to_string()).unwrap_or_default());
                s.global_ipv6_prefix_len = Some(if e.ipv6.is_some() {
                    e.prefix_v6 as i64
                } else {
                    0
                });
                s.ipv6_gateway = Some(gateway(net.as_ref().and_then(|n| n.pool_v6())));
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
        // moby's summary takes the ports from the network settings, which a container that
        // does not run has none of: its bindings and exposed ports show only while it runs.
        if !r.state.status.is_running() {
            return Vec::new();
        }
        let typ = |proto: Proto| match proto {
            Proto::Tcp => PortTypeEnum::TCP,
            Proto::Udp => PortTypeEnum::UDP,
        };
        let mut out = Vec::new();
        let mut published = std::collections::HashSet::new();
        for b in self.network.ports_of(&r.id) {
            published.insert((b.container_port, b.proto));
            out.push(Port {
                ip: Some(b.host_ip.to_string()),
                private_port: b.container_port,
                public_port: Some(b.host_port),
                typ: Some(typ(b.proto)),
            });
        }
        for p in r.config.exposed_ports.iter().flatten() {
            if let Some((port, proto)) = split_port(p) {
                if !published.contains(&(port, proto)) {
                    out.push(Port {
                        ip: None,
                        private_port: port,
                        public_port: None,
                        typ: Some(typ(proto)),
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

/// When [`ContainerManager::write_network_files`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rewrite {
    /// Before the container starts: both files replaced.
    BeforeStart,
    /// A running container's networks changed: both files rewritten in place.
    Running,
    /// A running container's networks changed without starting or stopping its embedded
    /// resolver: `/etc/hosts` alone, in place.
    HostsOnly,
}

/// Registered links as the record keeps them: `/<child ID>:/<name>/<alias>`.
pub(super) fn stored_links(links: &[(String, String)], name: &str) -> Vec<String> {
    links
        .iter()
        .map(|(id, alias)| format!("/{id}:/{name}/{alias}"))
        .collect()
}

const CONFLICT_HOST_LINKS: &str = "conflicting options: host type networking can't be used with links. This would result in undefined behavior";

/// moby's `NetworkMode.IsUserDefined`.
fn is_user_defined(mode: &str) -> bool {
    !matches!(
        mode,
        "" | "default" | "bridge" | "host" | "none" | "container"
    ) && !mode.starts_with("container:")
}

/// moby's `opts.ParseLink`: `name:alias`, `name`, or `/name:/me/alias` as stored; the
/// name (without its `/`) and the alias (its last path element).
pub(super) fn parse_link(link: &str) -> Result<(String, String), ContainerError> {
    if link.is_empty() {
        return Err(ContainerError::internal("empty string specified for links"));
    }
    let parts: Vec<&str> = link.split(':').collect();
    let base = |a: &str| a.rsplit('/').next().unwrap_or(a).to_string();
    match parts.as_slice() {
        [one] => Ok((one.trim_start_matches('/').to_string(), base(one))),
        [name, alias] => match name.strip_prefix('/') {
            Some(n) => Ok((n.to_string(), base(alias))),
            None => Ok((name.to_string(), base(alias))),
        },
        _ => Err(ContainerError::internal(format!(
            "bad format for links: {link}"
        ))),
    }
}

/// moby's `links.Link.ToEnv` for the link `full` (`/<me>/<alias>`) to a container at `ip`
/// with these exposed ports and variables.
fn link_to_env(
    full: &str,
    ip: &str,
    mut ports: Vec<(u16, String)>,
    child_env: &[String],
) -> Vec<String> {
    let alias = full
        .rsplit('/')
        .next()
        .unwrap_or(full)
        .to_uppercase()
        .replace('-', "_");
    // TCP first, then by protocol name; by number within one.
    ports.sort_by(|(pa, a), (pb, b)| {
        let (ta, tb) = (a.eq_ignore_ascii_case("tcp"), b.eq_ignore_ascii_case("tcp"));
        if a.eq_ignore_ascii_case(b) {
            pa.cmp(pb)
        } else if ta {
            std::cmp::Ordering::Less
        } else if tb {
            std::cmp::Ordering::Greater
        } else {
            a.to_lowercase().cmp(&b.to_lowercase())
        }
    });
    let mut env = Vec::new();
    let mut start = 0usize;
    let mut end = 0usize;
    for (i, (num, proto)) in ports.iter().enumerate() {
        if i == 0 {
            env.push(format!("{alias}_PORT={proto}://{ip}:{num}"));
        }
        let prefix = format!("{alias}_PORT_{num}_{}", proto.to_uppercase());
        env.push(format!("{prefix}={proto}://{ip}:{num}"));
        env.push(format!("{prefix}_ADDR={ip}"));
        env.push(format!("{prefix}_PORT={num}"));
        env.push(format!("{prefix}_PROTO={proto}"));
        // A range: consecutive numbers of the same protocol.
        let (end_num, _) = &ports[end];
        if *num as u32 == *end_num as u32 + 1 && proto.eq_ignore_ascii_case(&ports[start].1) {
            end = i;
            if i < ports.len() - 1 {
                continue;
            }
        }
        if ports[end] != ports[start] {
            let (sn, sp) = &ports[start];
            let (en, ep) = &ports[end];
            let prefix = format!("{alias}_PORT_{sn}_{}", sp.to_uppercase());
            env.push(format!("{prefix}_START={sp}://{ip}:{sn}"));
            env.push(format!("{prefix}_PORT_START={sn}"));
            env.push(format!("{prefix}_END={ep}://{ip}:{en}"));
            env.push(format!("{prefix}_PORT_END={en}"));
        }
        start = i;
        end = i;
    }
    env.push(format!("{alias}_NAME={full}"));
    for kv in child_env {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if k == "HOME" || k == "PATH" {
            continue;
        }
        env.push(format!("{alias}_ENV_{k}={v}"));
    }
    env
}

/// libnetwork's `etchosts.Update`: the address of each line whose first name is `name`.
fn update_hosts_entry(text: &str, name: &str, ip: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let replaced = line.split_once('\t').and_then(|(_, rest)| {
            let first = rest.split(|c: char| c.is_whitespace() || c == '.').next()?;
            let after = &rest[first.len()..];
            (first == name && !after.is_empty()).then(|| format!("{ip}\t{rest}"))
        });
        out.push_str(replaced.as_deref().unwrap_or(line));
    }
    out
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
        links: s
            .links
            .iter()
            .flatten()
            .filter_map(|l| parse_link(l).ok())
            .map(|(name, alias)| (alias, name))
            .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse_as_moby() {
        let p = |l: &str| parse_link(l).unwrap();
        assert_eq!(p("db:alias"), ("db".into(), "alias".into()));
        assert_eq!(p("db"), ("db".into(), "db".into()));
        assert_eq!(p("/db:/web/alias"), ("db".into(), "alias".into()));
        assert_eq!(
            parse_link("a:b:c").unwrap_err().to_string(),
            "bad format for links: a:b:c"
        );
        assert_eq!(
            parse_link("").unwrap_err().to_string(),
            "empty string specified for links"
        );
        assert!(is_user_defined("mynet"));
        assert!(!is_user_defined("bridge") && !is_user_defined("container:x"));
    }

    #[test]
    fn link_env_as_moby_to_env() {
        let ports = vec![
            (6380, "udp".to_string()),
            (6379, "tcp".to_string()),
            (6381, "tcp".to_string()),
            (6380, "tcp".to_string()),
        ];
        let env = link_to_env(
            "/web/my-db",
            "172.17.0.2",
            ports,
            &[
                "PATH=/bin".into(),
                "A=b=c".into(),
                "HOME=/root".into(),
                "BARE".into(),
            ],
        );
        let want = [
            "MY_DB_PORT=tcp://172.17.0.2:6379",
            "MY_DB_PORT_6379_TCP=tcp://172.17.0.2:6379",
            "MY_DB_PORT_6379_TCP_ADDR=172.17.0.2",
            "MY_DB_PORT_6379_TCP_PORT=6379",
            "MY_DB_PORT_6379_TCP_PROTO=tcp",
            "MY_DB_PORT_6380_TCP=tcp://172.17.0.2:6380",
            "MY_DB_PORT_6380_TCP_ADDR=172.17.0.2",
            "MY_DB_PORT_6380_TCP_PORT=6380",
            "MY_DB_PORT_6380_TCP_PROTO=tcp",
            "MY_DB_PORT_6381_TCP=tcp://172.17.0.2:6381",
            "MY_DB_PORT_6381_TCP_ADDR=172.17.0.2",
            "MY_DB_PORT_6381_TCP_PORT=6381",
            "MY_DB_PORT_6381_TCP_PROTO=tcp",
            // The range is told at the first port after it (moby's loop), here the UDP one.
            "MY_DB_PORT_6380_UDP=udp://172.17.0.2:6380",
            "MY_DB_PORT_6380_UDP_ADDR=172.17.0.2",
            "MY_DB_PORT_6380_UDP_PORT=6380",
            "MY_DB_PORT_6380_UDP_PROTO=udp",
            "MY_DB_PORT_6379_TCP_START=tcp://172.17.0.2:6379",
            "MY_DB_PORT_6379_TCP_PORT_START=6379",
            "MY_DB_PORT_6379_TCP_END=tcp://172.17.0.2:6381",
            "MY_DB_PORT_6379_TCP_PORT_END=6381",
            "MY_DB_NAME=/web/my-db",
            "MY_DB_ENV_A=b=c",
        ];
        assert_eq!(env, want);
        assert_eq!(
            link_to_env("/web/db", "", Vec::new(), &[]),
            ["DB_NAME=/web/db"]
        );
    }

    #[test]
    fn hosts_entries_update_by_first_name() {
        let text =
            "127.0.0.1\tlocalhost\n172.17.0.2\tdb abc db2\n172.17.0.3\tdbx\n172.17.0.4\tother db\n";
        assert_eq!(
            update_hosts_entry(text, "db", "172.17.0.9"),
            "127.0.0.1\tlocalhost\n172.17.0.9\tdb abc db2\n172.17.0.3\tdbx\n172.17.0.4\tother db\n"
        );
    }
}
