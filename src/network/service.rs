//! [`NetworkService`]: the network store (records under `<data-root>/network`), the
//! predefined networks (`bridge`, `host`, `none`), create/remove/prune, and a container's
//! join and leave: IPAM, the veth endpoints, the embedded DNS of user networks, published
//! ports (bound here, served by the proxy, DNAT'ed by the firewall), and the firewall table,
//! which is always recomputed from the records as a whole.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use ipnet::IpNet;

use super::dns::{NameTable, Resolver};
use super::firewall::{nft::Nft, FirewallDriver, FwNetwork, FwPort, FwState, NoFirewall, Proto};
use super::netlink::{BridgeSpec, Netlink, VethSpec};
use super::record::{Endpoint, NetworkRecord, Pool, PortBinding, PortState};
use super::{ipam, proxy, NetworkError};
use crate::config::NetOptions;
use crate::events::{Event, EventBus};
use crate::filters::Filters;
use crate::util::fs::{atomic_write, ensure_dir};
use crate::util::rand::random_hex;
use crate::util::time::rfc3339_nano;

/// What `POST /networks/create` asks for, parsed.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv4: Option<bool>,
    pub enable_ipv6: Option<bool>,
    pub ipam_driver: Option<String>,
    pub ipam_options: Option<BTreeMap<String, String>>,
    pub pools: Vec<PoolRequest>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `Scope` (`local` or none; `swarm` and `global` are refused as dockerd outside a swarm).
    pub scope: String,
    /// `ConfigOnly`, `ConfigFrom.Network`: refused, berth has no configuration-only networks.
    pub config_only: bool,
    pub config_from: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PoolRequest {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub aux: BTreeMap<String, String>,
}

/// How a container wants to be on one network.
#[derive(Debug, Clone, Default)]
pub struct EndpointRequest {
    /// The network's name or ID.
    pub network: String,
    pub aliases: Vec<String>,
    /// The endpoint's `Links` (`name:alias`, user networks): alias → container name, for
    /// this container's lookups only (libnetwork's `CreateOptionAlias`).
    pub links: BTreeMap<String, String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<std::net::Ipv6Addr>,
    pub mac: Option<String>,
}

/// A published port as asked for (`-p [ip:]host[-range]:container[/proto]`, `-P`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub proto: Proto,
    pub host_ip: Option<IpAddr>,
    /// `0` for a port of the kernel's choice; a range tries each in turn.
    pub host_port: u16,
    pub host_port_end: u16,
    pub container_port: u16,
}

/// A container joining its networks at start.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub container_id: String,
    pub container_name: String,
    pub hostname: String,
    pub netns: PathBuf,
    /// The primary network first (its endpoint is `eth0` and gives the default route).
    pub networks: Vec<EndpointRequest>,
    /// The container's `--dns` (upstreams of the embedded server on user networks).
    pub dns: Vec<IpAddr>,
    pub ports: Vec<PortRequest>,
}

/// One network a container is on, as inspect shows it.
#[derive(Debug, Clone)]
pub struct Attached {
    pub network_id: String,
    pub network_name: String,
    pub endpoint: Endpoint,
}

struct State {
    /// Shared snapshots: a lookup hands out the `Arc`, a change copies the record only while
    /// someone still holds the old one (`Arc::make_mut`), so that reading a network never
    /// copies its endpoints (hundreds on a busy bridge).
    nets: BTreeMap<String, Arc<NetworkRecord>>,
    ports: BTreeMap<String, PortState>,
}

pub struct NetworkService {
    opts: NetOptions,
    root: PathBuf,
    exe: PathBuf,
    events: Arc<EventBus>,
    fw: Box<dyn FirewallDriver>,
    warnings: Vec<String>,
    netlink: Netlink,
    state: Mutex<State>,
    resolvers: Mutex<HashMap<String, Resolver>>,
    /// Join, leave, create and remove change links and the firewall one at a time.
    op: tokio::sync::Mutex<()>,
    me: Weak<NetworkService>,
    /// Applies of the firewall table one at a time (each computes the state it applies, so
    /// the last one to run holds the newest).
    fw_lock: Mutex<()>,
    /// Background applies (network create and remove): requested and done generations.
    fw_requested: std::sync::atomic::AtomicU64,
    fw_applied: tokio::sync::watch::Sender<u64>,
    fw_wake: tokio::sync::Notify,
    /// Networks created since the last background apply: the generation that holds them.
    fw_pending: Mutex<HashMap<String, u64>>,
    /// Whether the predefined networks this start made (a first start's `host` and `none`)
    /// are on disk: they are written while the daemon goes on starting, and whatever records
    /// a container's networks waits for them (`predefined_saved`).
    predefined_saved: tokio::sync::watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn encode_record(r: &NetworkRecord) -> Result<Vec<u8>, NetworkError> {
    serde_json::to_vec(r)
        .map_err(|e| NetworkError::internal(format!("encode network {}: {e}", r.name)))
}

fn io_err(ctx: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> NetworkError {
    move |e| NetworkError::io(ctx, e)
}

/// Predefined network names (they cannot be created, removed or pruned).
pub const PREDEFINED: &[&str] = &["bridge", "host", "none"];

impl NetworkService {
    /// Load the store, create the predefined networks and their bridges, and rebuild the
    /// firewall table. Endpoints stay as recorded until [`NetworkService::retain`] is told
    /// which containers still run.
    pub async fn open(
        opts: NetOptions,
        data_root: &Path,
        exe: PathBuf,
        events: Arc<EventBus>,
    ) -> Result<Arc<Self>, NetworkError> {
        let root = data_root.join("network");
        ensure_dir(&root, 0o700).map_err(io_err(format!("create {}", root.display())))?;
        ensure_dir(&root.join("ports"), 0o700).map_err(io_err("create ports dir"))?;
        // Records being replaced when berthd died (the old ones are whole).
        for dir in [root.clone(), root.join("ports")] {
            crate::util::fs::remove_temp_files(&dir)
                .map_err(io_err(format!("clean {}", dir.display())))?;
        }
        let mut warnings = Vec::new();
        let fw: Box<dyn FirewallDriver> = if opts.iptables {
            match Nft::locate("berth") {
                Ok(n) => Box::new(n),
                Err(e) => {
                    tracing::warn!("{e}; published ports and NAT are disabled");
                    warnings.push(format!(
                        "WARNING: {e}: published ports and NAT are disabled"
                    ));
                    Box::new(NoFirewall)
                }
            }
        } else {
            warnings.push("WARNING: iptables is disabled: berth manages no firewall rules".into());
            Box::new(NoFirewall)
        };
        let netlink = Netlink::new().await?;
        let mut nets = BTreeMap::new();
        let mut ports = BTreeMap::new();
        for entry in fs::read_dir(&root)
            .map_err(io_err("read network store"))?
            .flatten()
        {
            let p = entry.path();
            // `bridges.json` is the list of berth's own bridges, not a network: a JSON array
            // of four or more names would otherwise load as a record, field by field.
            if p.extension().is_some_and(|x| x == "json")
                && p.file_name().is_some_and(|n| n != "bridges.json")
            {
                match fs::read(&p).map_err(|e| e.to_string()).and_then(|b| {
                    serde_json::from_slice::<NetworkRecord>(&b).map_err(|e| e.to_string())
                }) {
                    Ok(r) => {
                        nets.insert(r.id.clone(), Arc::new(r));
                    }
                    Err(e) => tracing::error!("load network {}: {e}", p.display()),
                }
            }
        }
        for entry in fs::read_dir(root.join("ports"))
            .map_err(io_err("read port store"))?
            .flatten()
        {
            let p = entry.path();
            if let Ok(ps) = fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<PortState>(&b).map_err(|e| e.to_string()))
            {
                ports.insert(ps.container_id.clone(), ps);
            }
        }
        let svc = Arc::new_cyclic(|me| NetworkService {
            opts,
            root,
            exe,
            events,
            fw,
            warnings,
            netlink,
            state: Mutex::new(State { nets, ports }),
            resolvers: Mutex::new(HashMap::new()),
            op: tokio::sync::Mutex::new(()),
            me: me.clone(),
            fw_lock: Mutex::new(()),
            fw_requested: std::sync::atomic::AtomicU64::new(0),
            fw_applied: tokio::sync::watch::channel(0).0,
            fw_wake: tokio::sync::Notify::new(),
            fw_pending: Mutex::new(HashMap::new()),
            predefined_saved: tokio::sync::watch::channel(true).0,
        });
        {
            // The background applier (for the daemon's lifetime): coalesces requests and
            // applies the newest state.
            let svc = svc.clone();
            tokio::spawn(async move {
                loop {
                    svc.fw_wake.notified().await;
                    let target = svc.fw_requested.load(std::sync::atomic::Ordering::SeqCst);
                    let s2 = svc.clone();
                    let r = tokio::task::spawn_blocking(move || s2.apply_firewall()).await;
                    match r {
                        Ok(Err(e)) => tracing::error!("firewall: {e}"),
                        Err(e) => tracing::error!("firewall task: {e}"),
                        Ok(Ok(())) => {}
                    }
                    svc.fw_applied.send_replace(target);
                }
            });
        }
        svc.predefine().await?;
        if svc.opts.ip_forward {
            if let Err(e) = super::netlink::set_sysctl("net/ipv4/ip_forward", "1") {
                tracing::warn!("{e}");
            }
        }
        let bridges: Vec<Arc<NetworkRecord>> = lock(&svc.state)
            .nets
            .values()
            .filter(|n| n.is_bridge())
            .cloned()
            .collect();
        for n in &bridges {
            if let Err(e) = svc.setup_bridge(n).await {
                tracing::error!("network {}: {e}", n.name);
            }
        }
        svc.remove_orphan_bridges().await;
        svc.apply_firewall()?;
        Ok(svc)
    }

    /// Wait until the predefined networks this start made are on disk (at once on a start that
    /// made none).
    pub async fn predefined_saved(&self) {
        let mut saved = self.predefined_saved.subscribe();
        let _ = saved.wait_for(|done| *done).await;
    }

    /// `docker info` warnings.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    pub fn firewall_backend(&self) -> &'static str {
        self.fw.name()
    }

    pub fn options(&self) -> &NetOptions {
        &self.opts
    }

    fn record_path(&self, r: &NetworkRecord) -> PathBuf {
        self.root.join(format!("{}.json", r.id))
    }

    fn save(&self, r: &NetworkRecord) -> Result<(), NetworkError> {
        let path = self.record_path(r);
        atomic_write(&path, &encode_record(r)?, 0o600)
            .map_err(io_err(format!("write {}", path.display())))
    }

    fn save_ports(&self, p: &PortState) -> Result<(), NetworkError> {
        let path = self
            .root
            .join("ports")
            .join(format!("{}.json", p.container_id));
        let data = serde_json::to_vec(p)
            .map_err(|e| NetworkError::internal(format!("encode ports: {e}")))?;
        atomic_write(&path, &data, 0o600).map_err(io_err(format!("write {}", path.display())))
    }

    fn drop_ports_file(&self, container_id: &str) {
        let _ = fs::remove_file(self.root.join("ports").join(format!("{container_id}.json")));
    }

    /// A container on the predefined `host` or `none` network (which has no endpoints here)
    /// connected or disconnected: the event dockerd gives for it (`type` `host`/`null`).
    pub fn announce(&self, action: &str, network: &str, container_id: &str) {
        if let Ok(r) = self.find(network) {
            self.publish(action, &r, &[("container", container_id.to_string())]);
        }
    }

    fn publish(&self, action: &str, r: &NetworkRecord, extra: &[(&str, String)]) {
        let mut e = Event::new("network", action, r.id.clone())
            .attribute("name", r.name.clone())
            .attribute("type", r.driver.clone());
        for (k, v) in extra {
            e = e.attribute(*k, v.clone());
        }
        self.events.publish(e);
    }

    /// The host's routes plus every subnet berth has, for IPAM to avoid.
    async fn used_subnets(&self) -> Vec<IpNet> {
        let mut used = self.netlink.routes().await.unwrap_or_default();
        let st = lock(&self.state);
        for n in st.nets.values() {
            used.extend(n.pools.iter().map(|p| p.subnet));
        }
        used
    }

    fn pools(&self) -> Vec<(IpNet, u8)> {
        if self.opts.default_address_pools.is_empty() {
            ipam::default_pools()
        } else {
            self.opts.default_address_pools.clone()
        }
    }

    /// `bridge` (unless `--bridge=none`), `host` and `none`.
    async fn predefine(&self) -> Result<(), NetworkError> {
        let have = |name: &str| lock(&self.state).nets.values().any(|n| n.name == name);
        // A first start writes both records, with one fsync of the directory for the two.
        let mut made = Vec::new();
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !have(name) {
                let r = NetworkRecord {
                    id: random_hex(64),
                    name: name.to_string(),
                    driver: driver.to_string(),
                    created: rfc3339_nano(SystemTime::now()),
                    internal: false,
                    attachable: false,
                    enable_ipv4: true,
                    enable_ipv6: false,
                    ipam_options: None,
                    pools: Vec::new(),
                    options: BTreeMap::new(),
                    labels: BTreeMap::new(),
                    bridge: String::new(),
                    predefined: true,
                    endpoints: BTreeMap::new(),
                };
                made.push(r);
            }
        }
        let files = made
            .iter()
            .map(|r| Ok((self.record_path(r), encode_record(r)?)))
            .collect::<Result<Vec<_>, NetworkError>>()?;
        lock(&self.state)
            .nets
            .extend(made.into_iter().map(|r| (r.id.clone(), Arc::new(r))));
        if !files.is_empty() {
            // Written (temp file, fsync, rename, fsync of the directory) while the start goes
            // on: nothing on disk names them until a container is created, which waits. Killed
            // before the rename, the next start makes them again, as if this one had not been.
            self.predefined_saved.send_replace(false);
            let saved = self.predefined_saved.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = crate::util::fs::atomic_write_all(&files, 0o600) {
                    tracing::error!("write the predefined networks: {e}");
                }
                saved.send_replace(true);
            });
        }
        if self.opts.bridge == "none" {
            // dockerd without a default bridge: the record goes if no container uses it.
            let id = lock(&self.state)
                .nets
                .values()
                .find(|n| n.name == "bridge")
                .map(|n| n.id.clone());
            if let Some(id) = id {
                lock(&self.state).nets.remove(&id);
                let _ = fs::remove_file(self.root.join(format!("{id}.json")));
            }
            return Ok(());
        }
        let existing = lock(&self.state)
            .nets
            .values()
            .find(|n| n.name == "bridge")
            .cloned();
        let mut options = BTreeMap::new();
        options.insert(
            "com.docker.network.bridge.default_bridge".into(),
            "true".into(),
        );
        options.insert(
            "com.docker.network.bridge.enable_icc".into(),
            self.opts.icc.to_string(),
        );
        options.insert(
            "com.docker.network.bridge.enable_ip_masquerade".into(),
            self.opts.ip_masq.to_string(),
        );
        options.insert(
            "com.docker.network.bridge.host_binding_ipv4".into(),
            self.opts.ip.to_string(),
        );
        options.insert(
            "com.docker.network.bridge.name".into(),
            self.opts.bridge.clone(),
        );
        options.insert(
            "com.docker.network.driver.mtu".into(),
            self.opts.mtu.unwrap_or(1500).to_string(),
        );
        // The pool: --bip, else what the record has, else the first free default pool.
        let pool = if let Some(bip) = self.opts.bip {
            Some(Pool {
                subnet: IpNet::V4(bip.trunc()),
                ip_range: self.opts.fixed_cidr.map(IpNet::V4),
                gateway: IpAddr::V4(bip.addr()),
                aux: BTreeMap::new(),
                user_subnet: true,
                user_gateway: true,
                last: None,
            })
        } else {
            existing
                .as_ref()
                .and_then(|e| e.pool_v4().cloned())
                .map(|p| Pool {
                    ip_range: self.opts.fixed_cidr.map(IpNet::V4),
                    ..p
                })
        };
        let pool = match pool {
            Some(p) => p,
            None => {
                let mut used = self.netlink.routes().await.unwrap_or_default();
                {
                    let st = lock(&self.state);
                    used.extend(
                        st.nets
                            .values()
                            .flat_map(|n| n.pools.iter().map(|p| p.subnet)),
                    );
                }
                let subnet = ipam::pick_subnet(&self.pools(), &used).ok_or_else(|| {
                    NetworkError::internal(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
                    )
                })?;
                Pool {
                    gateway: ipam::default_gateway(&subnet, None),
                    subnet,
                    ip_range: self.opts.fixed_cidr.map(IpNet::V4),
                    aux: BTreeMap::new(),
                    user_subnet: false,
                    user_gateway: false,
                    last: None,
                }
            }
        };
        let r = NetworkRecord {
            id: existing
                .as_ref()
                .map(|e| e.id.clone())
                .unwrap_or_else(|| random_hex(64)),
            name: "bridge".into(),
            driver: "bridge".into(),
            created: existing
                .as_ref()
                .map(|e| e.created.clone())
                .unwrap_or_else(|| rfc3339_nano(SystemTime::now())),
            internal: false,
            attachable: false,
            enable_ipv4: true,
            enable_ipv6: false,
            ipam_options: None,
            pools: vec![pool],
            options,
            labels: BTreeMap::new(),
            bridge: self.opts.bridge.clone(),
            predefined: true,
            endpoints: existing
                .as_ref()
                .map(|e| e.endpoints.clone())
                .unwrap_or_default(),
        };
        // Written only when it changed (a first start, another `--bip`): every start would
        // otherwise rewrite the same record, two fsyncs on the way to serving.
        if existing.as_deref() != Some(&r) {
            self.save(&r)?;
        }
        lock(&self.state).nets.insert(r.id.clone(), Arc::new(r));
        Ok(())
    }

    /// The bridges berth made itself (`<data-root>/network/bridges.json`): only these are ever
    /// deleted, so that an adopted bridge (`-b br0`, `bridge.name` of an existing device)
    /// stays, and one whose network record is gone (a crash) is found again.
    fn owned_bridges(&self) -> std::collections::BTreeSet<String> {
        fs::read(self.root.join("bridges.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_owned_bridges(
        &self,
        set: &std::collections::BTreeSet<String>,
    ) -> Result<(), NetworkError> {
        let data = serde_json::to_vec(set)
            .map_err(|e| NetworkError::internal(format!("encode bridges: {e}")))?;
        let path = self.root.join("bridges.json");
        atomic_write(&path, &data, 0o600).map_err(io_err(format!("write {}", path.display())))
    }

    /// Delete the bridges berth made that no network names any more.
    async fn remove_orphan_bridges(&self) {
        let named: HashSet<String> = lock(&self.state)
            .nets
            .values()
            .map(|n| n.bridge.clone())
            .collect();
        let mut owned = self.owned_bridges();
        let orphans: Vec<String> = owned
            .iter()
            .filter(|b| !named.contains(*b))
            .cloned()
            .collect();
        let mut removed = false;
        for b in orphans {
            tracing::info!("remove bridge {b}: no network names it");
            if self.netlink.delete_link(&b).await.is_ok() {
                removed |= owned.remove(&b);
            }
        }
        if removed {
            if let Err(e) = self.save_owned_bridges(&owned) {
                tracing::warn!("{e}");
            }
        }
    }

    async fn setup_bridge(&self, n: &NetworkRecord) -> Result<(), NetworkError> {
        let mut owned = self.owned_bridges();
        if !owned.contains(&n.bridge) {
            let existing = self.netlink.link_names().await?;
            if !existing.contains(&n.bridge) {
                // Recorded before the device exists: a crash in between leaves only a name.
                owned.insert(n.bridge.clone());
                self.save_owned_bridges(&owned)?;
            }
        }
        let addresses = n
            .pools
            .iter()
            .filter_map(|p| IpNet::new(p.gateway, p.subnet.prefix_len()).ok())
            .collect();
        self.netlink
            .ensure_bridge(&BridgeSpec {
                name: n.bridge.clone(),
                addresses,
                mtu: n.mtu(),
            })
            .await?;
        if !self.opts.userland_proxy {
            let _ = super::netlink::set_sysctl(
                &format!("net/ipv4/conf/{}/route_localnet", n.bridge),
                "1",
            );
        }
        Ok(())
    }

    /// The firewall table from the records.
    fn fw_state(&self) -> FwState {
        let st = lock(&self.state);
        let networks = st
            .nets
            .values()
            .filter(|n| n.is_bridge())
            .map(|n| FwNetwork {
                bridge: n.bridge.clone(),
                subnets: n.pools.iter().map(|p| p.subnet).collect(),
                masquerade: n.masquerade() && !n.internal,
                icc: n.icc(),
                internal: n.internal,
            })
            .collect();
        let ports = st
            .ports
            .values()
            .flat_map(|p| p.bindings.iter())
            // An IPv6 host address to an IPv4 container is the proxy's alone.
            .filter(|b| b.host_ip.is_ipv4() || b.container_ip.is_ipv6())
            .map(|b| FwPort {
                proto: b.proto,
                host_ip: (!b.host_ip.is_unspecified()).then_some(b.host_ip),
                host_port: b.host_port,
                bridge: b.bridge.clone(),
                container_ip: b.container_ip,
                container_port: b.container_port,
            })
            .collect();
        FwState {
            networks,
            ports,
            userland_proxy: self.opts.userland_proxy,
        }
    }

    /// Ask the background applier for the current state, without waiting (network create and
    /// remove: no container depends on those rules yet).
    fn request_apply(&self) -> u64 {
        let g = self
            .fw_requested
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.fw_wake.notify_one();
        g
    }

    /// Wait until the rules of the networks `ids` are in (a network created a moment ago
    /// waits for its background apply; others do not wait at all).
    async fn firewall_settled(&self, ids: &[String]) {
        let done = *self.fw_applied.borrow();
        let want = {
            let mut pending = lock(&self.fw_pending);
            pending.retain(|_, g| *g > done);
            ids.iter().filter_map(|id| pending.get(id).copied()).max()
        };
        if let Some(want) = want {
            let mut rx = self.fw_applied.subscribe();
            let _ = rx.wait_for(|done| *done >= want).await;
        }
    }

    /// Blocking (runs `nft`): async callers wrap it in `block_in_place`.
    fn apply_firewall(&self) -> Result<(), NetworkError> {
        let _one_at_a_time = lock(&self.fw_lock);
        self.fw.apply(&self.fw_state())
    }

    // -----------------------------------------------------------------------------------------
    // Lookups

    /// dockerd's order: full ID, exact name, then a unique ID prefix.
    pub fn find(&self, term: &str) -> Result<Arc<NetworkRecord>, NetworkError> {
        let st = lock(&self.state);
        if let Some(n) = st.nets.get(term) {
            return Ok(n.clone());
        }
        if let Some(n) = st.nets.values().find(|n| n.name == term) {
            return Ok(n.clone());
        }
        let matches: Vec<&Arc<NetworkRecord>> = st
            .nets
            .values()
            .filter(|n| !term.is_empty() && n.id.starts_with(term))
            .collect();
        match matches.len() {
            1 => Ok(matches[0].clone()),
            0 => Err(NetworkError::no_such_network(term)),
            _ => Err(NetworkError::invalid(format!(
                "network {term} is ambiguous ({} matches found based on ID prefix)",
                matches.len()
            ))),
        }
    }

    pub fn all(&self) -> Vec<Arc<NetworkRecord>> {
        lock(&self.state).nets.values().cloned().collect()
    }

    /// `GET /networks` filters: `dangling`, `driver`, `id`, `label`, `name`, `scope`, `type`.
    pub fn list(&self, f: &Filters) -> Result<Vec<Arc<NetworkRecord>>, NetworkError> {
        f.validate(&["dangling", "driver", "id", "label", "name", "scope", "type"])
            .map_err(|e| NetworkError::invalid(e.to_string()))?;
        let mut dangling = None;
        for v in f.get("dangling") {
            dangling = Some(match v {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(NetworkError::invalid(format!(
                        "invalid filter 'dangling={v}'"
                    )))
                }
            });
        }
        for v in f.get("type") {
            if v != "custom" && v != "builtin" {
                return Err(NetworkError::invalid(format!(
                    "invalid filter: 'type'='{v}'"
                )));
            }
        }
        let mut out: Vec<Arc<NetworkRecord>> = self
            .all()
            .into_iter()
            .filter(|n| {
                let labels: HashMap<String, String> = n
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (!f.contains("driver") || f.exact_match("driver", &n.driver))
                    && (!f.contains("name") || f.fuzzy_match("name", &n.name))
                    && (!f.contains("id") || f.get("id").any(|i| n.id.starts_with(i)))
                    && (!f.contains("label") || f.match_kv_list("label", &labels))
                    && (!f.contains("scope") || f.exact_match("scope", "local"))
                    && f.get("type").all(|t| (t == "builtin") == n.predefined)
                    && dangling.is_none_or(|d| {
                        // dangling: user networks without containers.
                        d == (!n.predefined && n.endpoints.is_empty())
                    })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Whether the network has (running) containers.
    pub fn in_use(&self, id: &str) -> bool {
        lock(&self.state)
            .nets
            .get(id)
            .is_some_and(|n| !n.endpoints.is_empty())
    }

    // -----------------------------------------------------------------------------------------
    // Create, remove, prune

    pub async fn create(&self, mut req: CreateRequest) -> Result<NetworkRecord, NetworkError> {
        let _op = self.op.lock().await;
        let driver = if req.driver.is_empty() {
            "bridge".to_string()
        } else {
            req.driver.clone()
        };
        if PREDEFINED.contains(&req.name.as_str()) {
            return Err(NetworkError::forbidden(format!(
                "{} is a pre-defined network and cannot be created",
                req.name
            )));
        }
        validate_name(&req.name)?;
        if driver == "overlay" {
            // moby's `createNetwork` on a node that is not a swarm manager.
            return Err(NetworkError::forbidden(
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
            ));
        }
        if req.config_only || req.config_from.as_deref().is_some_and(|n| !n.is_empty()) {
            return Err(NetworkError::new(
                crate::errors::ErrorKind::NotImplemented,
                "configuration-only networks (ConfigOnly, ConfigFrom) are not supported by berth",
            ));
        }
        match req.scope.as_str() {
            "" | "local" => {}
            // libnetwork's `NewNetwork` outside a swarm.
            "swarm" => {
                return Err(NetworkError::forbidden(
                    "cannot create a swarm scoped network when swarm is not active",
                ))
            }
            // dockerd 20.10 goes on to store the network in that scope's store, which only a
            // cluster store configures.
            other => {
                return Err(NetworkError::internal(format!(
                    "datastore for scope {other:?} is not initialized"
                )))
            }
        }
        match driver.as_str() {
            "bridge" => {}
            "host" | "null" => {
                return Err(NetworkError::forbidden(format!(
                    "only one instance of \"{driver}\" network is allowed"
                )))
            }
            "ipvlan" | "macvlan" => {
                return Err(NetworkError::invalid(format!(
                    "the {driver} driver is not supported by berth"
                )))
            }
            other => {
                return Err(NetworkError::not_found(format!(
                    "plugin \"{other}\" not found"
                )))
            }
        }
        if let Some(d) = req
            .ipam_driver
            .as_deref()
            .filter(|d| !d.is_empty() && *d != "default")
        {
            return Err(NetworkError::not_found(format!("plugin \"{d}\" not found")));
        }
        if lock(&self.state).nets.values().any(|n| n.name == req.name) {
            return Err(NetworkError::conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        for (k, v) in &req.options {
            match k.as_str() {
                "com.docker.network.bridge.enable_icc"
                | "com.docker.network.bridge.enable_ip_masquerade" => {
                    v.parse::<bool>().map_err(|_| {
                        NetworkError::invalid(format!("invalid value {v:?} for option {k}"))
                    })?;
                }
                "com.docker.network.driver.mtu" => {
                    v.parse::<u32>().map_err(|_| {
                        NetworkError::invalid(format!("invalid value {v:?} for option {k}"))
                    })?;
                }
                "com.docker.network.bridge.host_binding_ipv4" => {
                    v.parse::<IpAddr>().map_err(|_| {
                        NetworkError::invalid(format!("invalid value {v:?} for option {k}"))
                    })?;
                }
                "com.docker.network.bridge.name" => {
                    if v.is_empty()
                        || v.len() > 15
                        || v.contains('/')
                        || v.contains(char::is_whitespace)
                    {
                        return Err(NetworkError::invalid(format!("invalid bridge name {v:?}")));
                    }
                    if lock(&self.state).nets.values().any(|n| &n.bridge == v) {
                        return Err(NetworkError::forbidden(format!(
                            "bridge name {v} is already in use by another network"
                        )));
                    }
                }
                _ => {}
            }
        }
        // moby's `createNetwork`: the request's flag wins (and its driver option goes), else
        // the driver option `com.docker.network.enable_ipv6` (compose files set it so). berth
        // has no default IPv6 pool: an option without an IPv6 subnet leaves the network
        // IPv4-only, as the option did on dockerd before 27 (the flag alone is refused below).
        let v6_subnet = req
            .pools
            .iter()
            .any(|p| p.subnet.as_deref().is_some_and(|s| s.contains(':')));
        let enable_ipv6 = flag_or_option(&mut req.options, req.enable_ipv6, ENABLE_IPV6, false)?
            && (req.enable_ipv6.is_some() || v6_subnet);
        let enable_ipv4 = flag_or_option(&mut req.options, req.enable_ipv4, ENABLE_IPV4, true)?;
        if !enable_ipv4 {
            return Err(NetworkError::invalid(
                "IPv4 can only be disabled on IPv6-only networks, which berth does not support yet",
            ));
        }
        let mut pools = Vec::new();
        let used = self.used_subnets().await;
        for p in &req.pools {
            pools.push(parse_pool(p)?);
        }
        for p in &pools {
            if matches!(p.subnet, IpNet::V6(_)) && !enable_ipv6 {
                return Err(NetworkError::invalid(
                    "non-overlapping IPv6 address pool(s) require EnableIPv6=true or --ipv6",
                ));
            }
            // A user subnet may overlap a host route (dockerd allows it), never another network.
            let clash = lock(&self.state)
                .nets
                .values()
                .any(|n| n.pools.iter().any(|q| ipam::overlaps(&q.subnet, &p.subnet)));
            if clash {
                return Err(NetworkError::forbidden(
                    "Pool overlaps with other one on this address space",
                ));
            }
        }
        // The bridge driver's `processIPAM`: one subnet per family.
        for v6 in [false, true] {
            if pools
                .iter()
                .filter(|p| matches!(p.subnet, IpNet::V6(_)) == v6)
                .count()
                > 1
            {
                return Err(NetworkError::forbidden(
                    "bridge driver doesn't support multiple subnets",
                ));
            }
        }
        if !pools.iter().any(|p| matches!(p.subnet, IpNet::V4(_))) {
            let subnet = ipam::pick_subnet(&self.pools(), &used).ok_or_else(|| {
                NetworkError::forbidden("all predefined address pools have been fully subnetted")
            })?;
            pools.insert(
                0,
                Pool {
                    gateway: ipam::default_gateway(&subnet, None),
                    subnet,
                    ip_range: None,
                    aux: BTreeMap::new(),
                    user_subnet: false,
                    user_gateway: false,
                    last: None,
                },
            );
        }
        if enable_ipv6 && !pools.iter().any(|p| matches!(p.subnet, IpNet::V6(_))) {
            return Err(NetworkError::invalid(
                "berth needs an explicit IPv6 subnet for EnableIPv6 (no default IPv6 pool)",
            ));
        }
        let id = random_hex(64);
        let bridge = req
            .options
            .get("com.docker.network.bridge.name")
            .cloned()
            .unwrap_or_else(|| format!("br-{}", &id[..12]));
        let r = NetworkRecord {
            id,
            name: req.name.clone(),
            driver,
            created: rfc3339_nano(SystemTime::now()),
            internal: req.internal,
            attachable: req.attachable,
            enable_ipv4,
            enable_ipv6,
            ipam_options: req.ipam_options.clone(),
            pools,
            options: req.options.clone(),
            labels: req.labels.clone(),
            bridge,
            predefined: false,
            endpoints: BTreeMap::new(),
        };
        self.setup_bridge(&r).await?;
        if let Err(e) = self.save(&r) {
            if self.owned_bridges().contains(&r.bridge) {
                let _ = self.netlink.delete_link(&r.bridge).await;
            }
            return Err(e);
        }
        lock(&self.state)
            .nets
            .insert(r.id.clone(), Arc::new(r.clone()));
        // In the background: containers that join it wait for that (`firewall_settled`).
        let g = self.request_apply();
        lock(&self.fw_pending).insert(r.id.clone(), g);
        self.publish("create", &r, &[]);
        Ok(r)
    }

    pub async fn remove(&self, term: &str) -> Result<(), NetworkError> {
        let _op = self.op.lock().await;
        let r = self.find(term)?;
        if r.predefined {
            return Err(NetworkError::forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                r.name
            )));
        }
        if !r.endpoints.is_empty() {
            return Err(NetworkError::forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                r.name, r.id
            )));
        }
        self.remove_record(&r).await
    }

    async fn remove_record(&self, r: &NetworkRecord) -> Result<(), NetworkError> {
        let path = self.root.join(format!("{}.json", r.id));
        fs::remove_file(&path).map_err(io_err(format!("remove {}", path.display())))?;
        lock(&self.state).nets.remove(&r.id);
        self.request_apply();
        let mut owned = self.owned_bridges();
        if owned.contains(&r.bridge) && r.bridge.starts_with("br-") {
            // A `br-<id>` name is never made again: the kernel's teardown (tens of ms) goes
            // on in the background; the name stays in bridges.json until the next start,
            // which deletes it if it is still there.
            self.netlink.delete_link_detached(&r.bridge);
        } else if owned.contains(&r.bridge) {
            match self.netlink.delete_link(&r.bridge).await {
                Ok(()) => {
                    owned.remove(&r.bridge);
                    if let Err(e) = self.save_owned_bridges(&owned) {
                        tracing::warn!("{e}");
                    }
                }
                Err(e) => tracing::warn!("delete bridge {}: {e}", r.bridge),
            }
        }
        self.publish("destroy", r, &[]);
        Ok(())
    }

    /// `POST /networks/prune`: user networks without endpoints (filters `until`, `label`,
    /// `label!`).
    pub async fn prune(&self, f: &Filters) -> Result<Vec<String>, NetworkError> {
        f.validate(&["until", "label", "label!"])
            .map_err(|e| NetworkError::invalid(e.to_string()))?;
        let now = SystemTime::now();
        let until = match f.get("until").next() {
            Some(u) => Some(crate::util::time::parse_timestamp(u, now).ok_or_else(|| {
                NetworkError::invalid(format!(
                    "failed to parse value as time or duration: \"{u}\""
                ))
            })?),
            None => None,
        };
        let _op = self.op.lock().await;
        let mut removed = Vec::new();
        for r in self.all() {
            if r.predefined || !r.endpoints.is_empty() {
                continue;
            }
            let labels: HashMap<String, String> = r
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if f.contains("label") && !f.match_kv_list("label", &labels) {
                continue;
            }
            if f.contains("label!") && f.match_kv_list("label!", &labels) {
                continue;
            }
            if let Some(until) = until {
                let created = crate::util::time::parse_timestamp(&r.created, now).unwrap_or(now);
                if created >= until {
                    continue;
                }
            }
            if self.remove_record(&r).await.is_ok() {
                removed.push(r.name.clone());
            }
        }
        self.events
            .publish(Event::new("network", "prune", "").attribute("reclaimed", "0"));
        Ok(removed)
    }

    // -----------------------------------------------------------------------------------------
    // Joining and leaving

    /// The container's endpoints on every network it is on.
    pub fn attached(&self, container_id: &str) -> Vec<Attached> {
        lock(&self.state)
            .nets
            .values()
            .filter_map(|n| {
                n.endpoints.get(container_id).map(|e| Attached {
                    network_id: n.id.clone(),
                    network_name: n.name.clone(),
                    endpoint: e.clone(),
                })
            })
            .collect()
    }

    pub fn ports_of(&self, container_id: &str) -> Vec<PortBinding> {
        lock(&self.state)
            .ports
            .get(container_id)
            .map(|p| p.bindings.clone())
            .unwrap_or_default()
    }

    /// Attach a starting container to its networks (in order: `eth0`, `eth1`, …), start its
    /// DNS server on user networks, and publish its ports. On failure everything done is
    /// undone.
    pub async fn join(&self, req: &JoinRequest) -> Result<Vec<Attached>, NetworkError> {
        let _op = self.op.lock().await;
        let result = self.join_locked(req).await;
        if result.is_err() {
            self.leave_locked(&req.container_id).await;
        }
        result
    }

    async fn join_locked(&self, req: &JoinRequest) -> Result<Vec<Attached>, NetworkError> {
        let ids: Vec<String> = req
            .networks
            .iter()
            .filter_map(|n| self.find(&n.network).ok().map(|r| r.id.clone()))
            .collect();
        self.firewall_settled(&ids).await;
        let mut out = Vec::new();
        let mut gateway_given = false;
        for (i, nreq) in req.networks.iter().enumerate() {
            let a = self
                .add_endpoint(req, nreq, &format!("eth{i}"), !gateway_given)
                .await?;
            if a.endpoint.gateway_v4.is_some() {
                gateway_given = true;
            }
            out.push(a);
        }
        tokio::task::block_in_place(|| self.ensure_resolver(&req.container_id, &req.netns))?;
        if !req.ports.is_empty() {
            // Ports go to the first network that is not internal.
            let target = out.iter().find_map(|a| {
                let st = lock(&self.state);
                let n = st.nets.get(&a.network_id)?;
                (!n.internal).then(|| {
                    (
                        n.bridge.clone(),
                        a.endpoint.ipv4,
                        a.endpoint.ipv6,
                        n.host_binding(),
                        a.endpoint.id.clone(),
                    )
                })
            });
            if let Some((bridge, Some(ip), ip6, binding, endpoint_id)) = target {
                // Binding and starting the proxy block briefly (the proxy reports ready).
                tokio::task::block_in_place(|| {
                    self.publish_ports(&req.container_id, &req.ports, &bridge, (ip, ip6), binding)
                })
                .map_err(|e| {
                    // dockerd 28's words around the binding's own error (the start adds
                    // "failed to set up container networking").
                    NetworkError::new(
                        crate::errors::Kinded::kind(&e),
                        format!(
                            "driver failed programming external connectivity on endpoint {} \
                             ({endpoint_id}): {e}",
                            req.container_name
                        ),
                    )
                })?;
            }
        }
        Ok(out)
    }

    /// A running container joins one more network (`docker network connect`).
    pub async fn connect(&self, req: &JoinRequest) -> Result<Attached, NetworkError> {
        let _op = self.op.lock().await;
        let nreq = req
            .networks
            .first()
            .ok_or_else(|| NetworkError::invalid("no network to connect"))?;
        let n = self.find(&nreq.network)?;
        self.firewall_settled(std::slice::from_ref(&n.id)).await;
        if n.endpoints.contains_key(&req.container_id) {
            return Err(NetworkError::forbidden(format!(
                "endpoint with name {} already exists in network {}",
                req.container_name, n.name
            )));
        }
        let attached = self.attached(&req.container_id);
        let ifname = self.free_ifname(&req.container_id, attached.len());
        let has_gw = attached.iter().any(|a| a.endpoint.gateway_v4.is_some());
        let a = self.add_endpoint(req, nreq, &ifname, !has_gw).await?;
        if let Err(e) =
            tokio::task::block_in_place(|| self.ensure_resolver(&req.container_id, &req.netns))
        {
            tracing::warn!("dns for {}: {e}", req.container_id);
        }
        Ok(a)
    }

    fn free_ifname(&self, container_id: &str, start: usize) -> String {
        let used: HashSet<String> = self
            .attached(container_id)
            .into_iter()
            .map(|a| a.endpoint.ifname)
            .collect();
        (start..start + 64)
            .map(|i| format!("eth{i}"))
            .find(|n| !used.contains(n))
            .unwrap_or_else(|| format!("eth{start}"))
    }

    async fn add_endpoint(
        &self,
        req: &JoinRequest,
        nreq: &EndpointRequest,
        ifname: &str,
        may_route: bool,
    ) -> Result<Attached, NetworkError> {
        let n = self.find(&nreq.network)?;
        if !n.is_bridge() {
            return Err(NetworkError::invalid(format!(
                "container cannot be connected to network {} of driver {}",
                n.name, n.driver
            )));
        }
        if (nreq.ipv4.is_some() || nreq.ipv6.is_some()) && !n.pools.iter().any(|p| p.user_subnet) {
            return Err(NetworkError::invalid(
                "user specified IP address is supported only when connecting to networks with user configured subnets",
            ));
        }
        // Allocate under the lock, persist, then set up the link. The lookup's snapshot goes
        // first: held, it would make the change below copy the record and all its endpoints.
        let network_id = n.id.clone();
        drop(n);
        let (e, mac, n) = {
            let mut st = lock(&self.state);
            let slot = st
                .nets
                .get_mut(&network_id)
                .ok_or_else(|| NetworkError::no_such_network(&nreq.network))?;
            let net = Arc::make_mut(slot);
            let taken = net.taken();
            let (mut ipv4, mut prefix_v4, mut gw4) = (None, 0, None);
            if let Some((ip, prefix, gw)) =
                allocate(net, false, nreq.ipv4.map(IpAddr::V4), &taken, may_route)?
            {
                if let IpAddr::V4(v) = ip {
                    ipv4 = Some(v);
                }
                prefix_v4 = prefix;
                if let Some(IpAddr::V4(g)) = gw {
                    gw4 = Some(g);
                }
            }
            let (mut ipv6, mut prefix_v6, mut gw6) = (None, 0, None);
            if net.enable_ipv6 {
                if let Some((ip, prefix, gw)) =
                    allocate(net, true, nreq.ipv6.map(IpAddr::V6), &taken, may_route)?
                {
                    if let IpAddr::V6(v) = ip {
                        ipv6 = Some(v);
                    }
                    prefix_v6 = prefix;
                    if let Some(IpAddr::V6(g)) = gw {
                        gw6 = Some(g);
                    }
                }
            }
            let mac = match &nreq.mac {
                Some(m) => ipam::parse_mac(m)
                    .ok_or_else(|| NetworkError::invalid(format!("invalid MAC address: {m}")))?,
                None => ipam::mac_for(ipv4),
            };
            let e = Endpoint {
                id: random_hex(64),
                container_id: req.container_id.clone(),
                container_name: req.container_name.clone(),
                dns_names: if net.is_default_bridge() {
                    Vec::new()
                } else {
                    dns_names(
                        &req.container_name,
                        &nreq.aliases,
                        &req.container_id,
                        &req.hostname,
                    )
                },
                aliases: nreq.aliases.clone(),
                links: if net.is_default_bridge() {
                    BTreeMap::new()
                } else {
                    nreq.links.clone()
                },
                ifname: ifname.to_string(),
                host_veth: format!("veth{}", &random_hex(8)[..7]),
                mac: ipam::mac_string(&mac),
                ipv4,
                prefix_v4,
                ipv6,
                prefix_v6,
                gateway_v4: gw4,
                gateway_v6: gw6,
                dns: req.dns.clone(),
            };
            net.endpoints.insert(req.container_id.clone(), e.clone());
            let snapshot = slot.clone();
            drop(st);
            self.save(&snapshot)?;
            (e, mac, snapshot)
        };
        let mut addresses = Vec::new();
        if let Some(a) = e.ipv4 {
            addresses.push(
                IpNet::new(IpAddr::V4(a), e.prefix_v4)
                    .map_err(|x| NetworkError::internal(x.to_string()))?,
            );
        }
        if let Some(a) = e.ipv6 {
            addresses.push(
                IpNet::new(IpAddr::V6(a), e.prefix_v6)
                    .map_err(|x| NetworkError::internal(x.to_string()))?,
            );
        }
        let spec = VethSpec {
            host_name: e.host_veth.clone(),
            bridge: n.bridge.clone(),
            netns: req.netns.clone(),
            ifname: ifname.to_string(),
            mac,
            mtu: n.mtu(),
            addresses,
            gateway_v4: e.gateway_v4,
            gateway_v6: e.gateway_v6,
        };
        if let Err(err) = self.netlink.add_veth(&spec).await {
            self.forget_endpoint(&n.id, &req.container_id);
            return Err(err);
        }
        if !self.opts.userland_proxy {
            // Hairpin NAT: a container reaching its own published port through the host
            // comes back out of the port it went in (dockerd sets hairpin mode likewise).
            let p = format!("/sys/class/net/{}/brport/hairpin_mode", e.host_veth);
            if let Err(err) = fs::write(&p, "1") {
                tracing::warn!("set {p}: {err}");
            }
        }
        self.publish("connect", &n, &[("container", req.container_id.clone())]);
        Ok(Attached {
            network_id: n.id.clone(),
            network_name: n.name.clone(),
            endpoint: e,
        })
    }

    fn forget_endpoint(
        &self,
        network_id: &str,
        container_id: &str,
    ) -> Option<(Arc<NetworkRecord>, Endpoint)> {
        let mut st = lock(&self.state);
        let net = st.nets.get_mut(network_id)?;
        let e = Arc::make_mut(net).endpoints.remove(container_id)?;
        let snapshot = net.clone();
        drop(st);
        if let Err(err) = self.save(&snapshot) {
            tracing::error!("{err}");
        }
        Some((snapshot, e))
    }

    /// Start the embedded DNS server for a container on a user network (once). Blocking (a
    /// thread in the namespace, `nft` there): async callers wrap it in `block_in_place`.
    fn ensure_resolver(&self, container_id: &str, netns: &Path) -> Result<(), NetworkError> {
        let on_user_net = lock(&self.state)
            .nets
            .values()
            .any(|n| !n.predefined && n.endpoints.contains_key(container_id));
        if !on_user_net || lock(&self.resolvers).contains_key(container_id) {
            return Ok(());
        }
        let names: Arc<dyn NameTable> = Arc::new(Names(self.me.clone()));
        let r = Resolver::start(
            Some(netns),
            container_id.to_string(),
            names,
            self.fw.as_ref(),
        )?;
        lock(&self.resolvers).insert(container_id.to_string(), r);
        Ok(())
    }

    /// Bind the published ports (moby's `sortAndNormPBs`): an IPv4 host address goes to the
    /// container's IPv4 address; an IPv6 one to its IPv6 address, or, when it has none, to
    /// its IPv4 address through the proxy alone (without the proxy such a port is skipped,
    /// as dockerd logs and skips it). A port published on every IPv4 address is published
    /// on `[::]` as well, likewise; skipped where the host has no IPv6.
    fn publish_ports(
        &self,
        container_id: &str,
        reqs: &[PortRequest],
        bridge: &str,
        (container_ip, container_ip6): (Ipv4Addr, Option<Ipv6Addr>),
        binding: Option<IpAddr>,
    ) -> Result<(), NetworkError> {
        // Where a port on an IPv6 host address goes, if anywhere.
        let target6 = match container_ip6 {
            Some(v6) => Some(IpAddr::V6(v6)),
            None => self.opts.userland_proxy.then_some(IpAddr::V4(container_ip)),
        };
        let mut bound: Vec<(proxy::PortSpec, std::os::fd::OwnedFd)> = Vec::new();
        for r in reqs {
            let host_ip = r.host_ip.or(binding).unwrap_or(self.opts.ip);
            let target = match host_ip {
                IpAddr::V4(_) => IpAddr::V4(container_ip),
                IpAddr::V6(_) => match target6 {
                    Some(t) => t,
                    None => {
                        tracing::info!(
                            "{container_id}: cannot map {host_ip} port {} to an IPv4-only \
                             container because the userland proxy is disabled",
                            r.container_port
                        );
                        continue;
                    }
                },
            };
            let dual = target6.is_some()
                && r.host_ip.is_none()
                && host_ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            let (lo, hi) = (r.host_port, r.host_port_end.max(r.host_port));
            // A port of the kernel's choice that is taken on IPv6 only is chosen again.
            let tries: Vec<u16> = if lo == 0 {
                vec![0; 16]
            } else {
                (lo..=hi).collect()
            };
            let mut last_err = None;
            let mut done = false;
            for port in tries {
                // The same port twice in one request (e.g. a range) is skipped.
                if port != 0
                    && bound.iter().any(|(s, _)| {
                        s.proto == r.proto && s.host_port == port && s.host_ip == host_ip
                    })
                {
                    continue;
                }
                let mut spec = proxy::PortSpec {
                    proto: r.proto,
                    host_ip,
                    host_port: port,
                    container_ip: target,
                    container_port: r.container_port,
                };
                let (fd, real) = match proxy::bind(&spec) {
                    Ok(b) => b,
                    Err(e) => {
                        last_err = Some(e);
                        continue;
                    }
                };
                spec.host_port = real;
                let mut v6 = None;
                if let Some(t6) = target6.filter(|_| dual) {
                    let spec6 = proxy::PortSpec {
                        host_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                        container_ip: t6,
                        ..spec.clone()
                    };
                    match proxy::bind(&spec6) {
                        Ok((fd6, _)) => v6 = Some((spec6, fd6)),
                        Err(e)
                            if crate::errors::Kinded::kind(&e)
                                == crate::errors::ErrorKind::Conflict =>
                        {
                            last_err = Some(e);
                            continue;
                        }
                        Err(e) => tracing::debug!("no IPv6 binding for {real}: {e}"),
                    }
                }
                bound.push((spec, fd));
                bound.extend(v6);
                done = true;
                break;
            }
            if !done {
                return Err(last_err.unwrap_or_else(|| NetworkError::internal("no port to bind")));
            }
        }
        let bindings: Vec<PortBinding> = bound
            .iter()
            .map(|(s, _)| PortBinding {
                proto: s.proto,
                host_ip: s.host_ip,
                host_port: s.host_port,
                container_port: s.container_port,
                container_ip: s.container_ip,
                bridge: bridge.to_string(),
            })
            .collect();
        let mut state = PortState {
            container_id: container_id.to_string(),
            bindings,
            proxy: None,
        };
        if self.opts.userland_proxy {
            let p_id = container_id.to_string();
            state.proxy = Some(proxy::spawn_owned(
                &self.exe,
                &self.proxy_owner(&p_id),
                bound,
            )?);
        } else {
            drop(bound);
        }
        if let Err(e) = self.save_ports(&state) {
            if let Some(p) = &state.proxy {
                proxy::stop(p);
            }
            return Err(e);
        }
        lock(&self.state)
            .ports
            .insert(container_id.to_string(), state);
        self.apply_firewall()
    }

    /// The owner argument of a container's proxy (see [`proxy::spawn_owned`]).
    fn proxy_owner(&self, container_id: &str) -> String {
        format!("{}/{container_id}", self.root.display())
    }

    /// Proxies berthd started but never recorded (it died between the two): they hold host
    /// ports nothing will release. Killed.
    fn kill_unrecorded_proxies(&self) {
        let prefix = format!("{}/", self.root.display());
        let known: HashSet<i32> = lock(&self.state)
            .ports
            .values()
            .filter_map(|p| p.proxy.map(|x| x.pid))
            .collect();
        for (pid, owner) in proxy::owned_by(&prefix) {
            if !known.contains(&pid) {
                tracing::info!("stop unrecorded port proxy {pid} ({owner})");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// A running container's proxy that died (while berthd was away): bind its ports again
    /// and start a new one.
    fn respawn_proxy(&self, mut p: PortState) -> Result<(), NetworkError> {
        let mut bound = Vec::new();
        for b in &p.bindings {
            let spec = proxy::PortSpec {
                proto: b.proto,
                host_ip: b.host_ip,
                host_port: b.host_port,
                container_ip: b.container_ip,
                container_port: b.container_port,
            };
            let (fd, _) = proxy::bind(&spec)?;
            bound.push((spec, fd));
        }
        let p_id = p.container_id.clone();
        p.proxy = Some(proxy::spawn_owned(
            &self.exe,
            &self.proxy_owner(&p_id),
            bound,
        )?);
        self.save_ports(&p)?;
        lock(&self.state).ports.insert(p.container_id.clone(), p);
        Ok(())
    }

    /// The container's run ended: its endpoints, DNS server, ports and proxy go.
    pub async fn leave(&self, container_id: &str) {
        let _op = self.op.lock().await;
        self.leave_locked(container_id).await;
    }

    async fn leave_locked(&self, container_id: &str) {
        if let Some(r) = lock(&self.resolvers).remove(container_id) {
            r.stop();
        }
        let ports = lock(&self.state).ports.remove(container_id);
        if let Some(p) = &ports {
            if let Some(px) = &p.proxy {
                tokio::task::block_in_place(|| proxy::stop(px));
            }
            self.drop_ports_file(container_id);
            if let Err(e) = tokio::task::block_in_place(|| self.apply_firewall()) {
                tracing::error!("firewall after {container_id} left: {e}");
            }
        }
        let ids = self.networks_with_endpoint(container_id);
        for id in ids {
            if let Some((n, e)) = self.forget_endpoint(&id, container_id) {
                // The pair goes with the namespace; the host end is deleted as well, without
                // waiting for the kernel's teardown (its random name is never reused).
                self.netlink.delete_link_detached(&e.host_veth);
                self.publish("disconnect", &n, &[("container", container_id.to_string())]);
            }
        }
    }

    /// The IDs of the networks where `container_id` has an endpoint.
    fn networks_with_endpoint(&self, container_id: &str) -> Vec<String> {
        lock(&self.state)
            .nets
            .values()
            .filter(|n| n.endpoints.contains_key(container_id))
            .map(|n| n.id.clone())
            .collect()
    }

    /// A running container was renamed (moby's `Sandbox.Rename` and `UpdateDNSNames`): its
    /// endpoints carry the new name, and the embedded DNS answers it (and no longer the old
    /// one) at once; its other DNS names (aliases, short ID, hostname) stay.
    pub async fn rename(&self, container_id: &str, new: &str, hostname: &str) {
        let _op = self.op.lock().await;
        let ids = self.networks_with_endpoint(container_id);
        for id in ids {
            let snapshot = {
                let mut st = lock(&self.state);
                let Some(slot) = st.nets.get_mut(&id) else {
                    continue;
                };
                let net = Arc::make_mut(slot);
                let default_bridge = net.is_default_bridge();
                let Some(e) = net.endpoints.get_mut(container_id) else {
                    continue;
                };
                e.container_name = new.to_string();
                if !default_bridge {
                    e.dns_names = dns_names(new, &e.aliases, container_id, hostname);
                }
                slot.clone()
            };
            if let Err(e) = self.save(&snapshot) {
                tracing::error!("{e}");
            }
        }
    }

    /// `docker network disconnect` of a running container from one network.
    pub async fn disconnect(&self, container_id: &str, network: &str) -> Result<(), NetworkError> {
        let _op = self.op.lock().await;
        let n = self.find(network)?;
        let Some((n, e)) = self.forget_endpoint(&n.id, container_id) else {
            return Err(NetworkError::forbidden(format!(
                "container {container_id} is not connected to network {}",
                n.name
            )));
        };
        self.netlink.delete_link_detached(&e.host_veth);
        // Its published ports pointed at the address it just gave back (moby releases an
        // endpoint's port bindings with it).
        let ports = {
            let mut st = lock(&self.state);
            let here = st
                .ports
                .get(container_id)
                .is_some_and(|p| p.bindings.iter().any(|b| b.bridge == n.bridge));
            if here {
                st.ports.remove(container_id)
            } else {
                None
            }
        };
        if let Some(p) = ports {
            if let Some(px) = &p.proxy {
                tokio::task::block_in_place(|| proxy::stop(px));
            }
            self.drop_ports_file(container_id);
            if let Err(err) = tokio::task::block_in_place(|| self.apply_firewall()) {
                tracing::error!("firewall after {container_id} left {}: {err}", n.name);
            }
        }
        let still_user = lock(&self.state)
            .nets
            .values()
            .any(|x| !x.predefined && x.endpoints.contains_key(container_id));
        if !still_user {
            if let Some(r) = lock(&self.resolvers).remove(container_id) {
                r.stop();
            }
        }
        self.publish("disconnect", &n, &[("container", container_id.to_string())]);
        Ok(())
    }

    /// After the containers were restored: endpoints, ports and proxies of containers that no
    /// longer run are released; running ones get their DNS server back (`running` maps their
    /// IDs to their namespace files). Returns how many endpoints were dropped.
    pub async fn retain(&self, running: &HashMap<String, PathBuf>) -> usize {
        let stale: HashSet<String> = {
            let st = lock(&self.state);
            st.nets
                .values()
                .flat_map(|n| n.endpoints.keys().cloned())
                .chain(st.ports.keys().cloned())
                .filter(|id| !running.contains_key(id))
                .collect()
        };
        for id in &stale {
            self.leave(id).await;
        }
        self.kill_unrecorded_proxies();
        // Proxies of running containers that died while berthd was away come back.
        let dead: Vec<PortState> = lock(&self.state)
            .ports
            .values()
            .filter(|p| {
                self.opts.userland_proxy && p.proxy.as_ref().is_some_and(|px| !proxy::alive(px))
            })
            .cloned()
            .collect();
        for p in dead {
            tracing::warn!(
                "port proxy of {} is gone: starting it again",
                p.container_id
            );
            if let Err(e) = tokio::task::block_in_place(|| self.respawn_proxy(p)) {
                tracing::error!("{e}");
            }
        }
        for (id, netns) in running {
            if let Err(e) = tokio::task::block_in_place(|| self.ensure_resolver(id, netns)) {
                tracing::warn!("dns for {id}: {e}");
            }
        }
        if let Err(e) = tokio::task::block_in_place(|| self.apply_firewall()) {
            tracing::error!("firewall: {e}");
        }
        // Host ends left on berth's bridges that no endpoint names (a run whose end was
        // missed, a crash between creating a pair and recording it) go: only on bridges berth
        // made, and only veths named as berth names them (an adopted bridge may carry other
        // interfaces: a host's bond, a VM's tap, dockerd's containers).
        let owned = self.owned_bridges();
        let (bridges, known): (Vec<String>, HashSet<String>) = {
            let st = lock(&self.state);
            (
                st.nets
                    .values()
                    .filter(|n| n.is_bridge())
                    .map(|n| n.bridge.clone())
                    .collect(),
                st.nets
                    .values()
                    .flat_map(|n| n.endpoints.values().map(|e| e.host_veth.clone()))
                    .collect(),
            )
        };
        for br in bridges {
            if !owned.contains(&br) {
                continue;
            }
            for port in self.netlink.ports_of(&br).await.unwrap_or_default() {
                let ours = port.len() == 11
                    && port.starts_with("veth")
                    && port[4..].chars().all(|c| c.is_ascii_hexdigit());
                if ours && !known.contains(&port) {
                    tracing::info!("remove stale endpoint {port} of {br}");
                    let _ = self.netlink.delete_link(&port).await;
                }
            }
        }
        stale.len()
    }

    // -----------------------------------------------------------------------------------------
    // Names for the embedded DNS

    fn lookup_names(&self, asker: &str, name: &str, v6: bool) -> Option<Vec<IpAddr>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let st = lock(&self.state);
        let mine: Vec<&Arc<NetworkRecord>> = st
            .nets
            .values()
            .filter(|n| !n.predefined && n.endpoints.contains_key(asker))
            .collect();
        let ip_of = |e: &Endpoint| {
            if v6 {
                e.ipv6.map(IpAddr::V6)
            } else {
                e.ipv4.map(IpAddr::V4)
            }
        };
        // The asker's link aliases first (libnetwork's `resolveName` with `lookupAlias`):
        // `alias` (or `alias.<network>`) is the linked container's name on that network.
        for n in &mine {
            let bare = name
                .strip_suffix(&format!(".{}", n.name.to_ascii_lowercase()))
                .unwrap_or(&name);
            let Some(target) = n.endpoints.get(asker).and_then(|e| {
                e.links
                    .iter()
                    .find(|(a, _)| a.to_ascii_lowercase() == bare)
                    .map(|(_, t)| t.to_ascii_lowercase())
            }) else {
                continue;
            };
            let hits: Vec<&Endpoint> = n
                .endpoints
                .values()
                .filter(|e| e.dns_names.iter().any(|d| d.to_ascii_lowercase() == target))
                .collect();
            if !hits.is_empty() {
                return Some(hits.into_iter().filter_map(ip_of).collect());
            }
        }
        let mut found = false;
        let mut ips = Vec::new();
        for n in &mine {
            let (bare, scoped) =
                match name.strip_suffix(&format!(".{}", n.name.to_ascii_lowercase())) {
                    Some(b) => (b.to_string(), true),
                    None => (name.clone(), false),
                };
            let _ = scoped;
            for e in n.endpoints.values() {
                if e.dns_names.iter().any(|d| d.to_ascii_lowercase() == bare) {
                    found = true;
                    if v6 {
                        ips.extend(e.ipv6.map(IpAddr::V6));
                    } else {
                        ips.extend(e.ipv4.map(IpAddr::V4));
                    }
                }
            }
        }
        found.then_some(ips)
    }

    fn reverse_name(&self, asker: &str, ip: IpAddr) -> Option<String> {
        let st = lock(&self.state);
        for n in st
            .nets
            .values()
            .filter(|n| !n.predefined && n.endpoints.contains_key(asker))
        {
            for e in n.endpoints.values() {
                if e.ipv4.map(IpAddr::V4) == Some(ip) || e.ipv6.map(IpAddr::V6) == Some(ip) {
                    return Some(format!("{}.{}", e.container_name, n.name));
                }
            }
        }
        None
    }

    fn upstreams_for(&self, asker: &str) -> Vec<SocketAddr> {
        let all_internal = {
            let st = lock(&self.state);
            let mine: Vec<&Arc<NetworkRecord>> = st
                .nets
                .values()
                .filter(|n| n.endpoints.contains_key(asker))
                .collect();
            !mine.is_empty() && mine.iter().all(|n| n.internal)
        };
        if all_internal {
            return Vec::new();
        }
        let own: Vec<IpAddr> = lock(&self.state)
            .nets
            .values()
            .filter_map(|n| n.endpoints.get(asker))
            .find(|e| !e.dns.is_empty())
            .map(|e| e.dns.clone())
            .unwrap_or_default();
        let servers: Vec<IpAddr> = if !own.is_empty() {
            own
        } else if !self.opts.dns.is_empty() {
            self.opts.dns.clone()
        } else {
            host_nameservers()
        };
        servers
            .into_iter()
            .take(3)
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    }
}

/// The nameservers of the host's `/etc/resolv.conf`.
pub fn host_nameservers() -> Vec<IpAddr> {
    parse_nameservers(&fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

/// The `nameserver` lines of a resolv.conf (a zone after `%` dropped).
fn parse_nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("nameserver"))
                .then(|| it.next())
                .flatten()
        })
        .filter_map(|s| s.split('%').next()?.parse().ok())
        .collect()
}

struct Names(Weak<NetworkService>);

impl NameTable for Names {
    fn lookup(&self, asker: &str, name: &str, v6: bool) -> Option<Vec<IpAddr>> {
        self.0.upgrade()?.lookup_names(asker, name, v6)
    }

    fn reverse(&self, asker: &str, ip: IpAddr) -> Option<String> {
        self.0.upgrade()?.reverse_name(asker, ip)
    }

    fn upstreams(&self, asker: &str) -> Vec<SocketAddr> {
        self.0
            .upgrade()
            .map(|s| s.upstreams_for(asker))
            .unwrap_or_default()
    }
}

/// An endpoint's address on the network's IPv4 (or IPv6) pool: the user's (`want`, checked
/// against the subnet and the taken addresses) or the next free one after the pool's last
/// (which it becomes). Returns the address, the subnet's prefix and the gateway it routes
/// through (none on internal networks or when `may_route` is off); `None` without such a pool.
fn allocate(
    net: &mut NetworkRecord,
    v6: bool,
    want: Option<IpAddr>,
    taken: &std::collections::BTreeSet<IpAddr>,
    may_route: bool,
) -> Result<Option<(IpAddr, u8, Option<IpAddr>)>, NetworkError> {
    let Some(pi) = net
        .pools
        .iter()
        .position(|p| matches!(p.subnet, IpNet::V6(_)) == v6)
    else {
        return Ok(None);
    };
    let pool = &net.pools[pi];
    let ip = match want {
        Some(w) => {
            if !ipam::usable(&pool.subnet, w) {
                return Err(NetworkError::invalid(format!(
                    "invalid address {w}: It does not belong to any of this network's subnets"
                )));
            }
            if taken.contains(&w) {
                return Err(NetworkError::forbidden("Address already in use"));
            }
            w
        }
        None => ipam::next_free(&pool.subnet, pool.ip_range.as_ref(), taken, pool.last)
            .ok_or_else(|| {
                if v6 {
                    NetworkError::forbidden("no available IPv6 addresses")
                } else {
                    NetworkError::forbidden(format!(
                        "no available IPv4 addresses on this network's address pools: {} ({})",
                        net.name, net.id
                    ))
                }
            })?,
    };
    let pool = &mut net.pools[pi];
    if want.is_none() {
        pool.last = Some(ip);
    }
    let (prefix, gateway) = (pool.subnet.prefix_len(), pool.gateway);
    Ok(Some((
        ip,
        prefix,
        (!net.internal && may_route).then_some(gateway),
    )))
}

/// The addresses moby's default IPAM reserves in a pool (`newPoolData`): the first (the IPv4
/// network address, the IPv6 subnet-router anycast address) and the IPv4 broadcast address,
/// except in an IPv4 /31 or /32.
fn ipam_reserved(subnet: &IpNet, ip: IpAddr) -> bool {
    match subnet {
        IpNet::V4(n) => n.prefix_len() < 31 && (ip == subnet.network() || ip == subnet.broadcast()),
        IpNet::V6(_) => ip == subnet.network(),
    }
}

/// moby's `buildEndpointDNSNames`: the container's name, its aliases, its short ID and its
/// hostname, without repeats (the first is the name PTR answers give).
fn dns_names(name: &str, aliases: &[String], container_id: &str, hostname: &str) -> Vec<String> {
    let short = &container_id[..12.min(container_id.len())];
    let mut out: Vec<String> = Vec::new();
    for n in std::iter::once(name)
        .chain(aliases.iter().map(String::as_str))
        .chain([short, hostname])
    {
        if !n.is_empty() && !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// dockerd's network name check (libnetwork's `NewNetwork`): any name but a blank one.
fn validate_name(name: &str) -> Result<(), NetworkError> {
    if name.trim().is_empty() {
        return Err(NetworkError::invalid("invalid name: name is empty"));
    }
    Ok(())
}

fn parse_pool(p: &PoolRequest) -> Result<Pool, NetworkError> {
    let subnet_text = p
        .subnet
        .clone()
        .ok_or_else(|| NetworkError::invalid("ipam config has no Subnet"))?;
    let given: IpNet = subnet_text.parse().map_err(|_| {
        NetworkError::invalid(format!(
            "invalid subnet {subnet_text}: invalid CIDR address: {subnet_text}"
        ))
    })?;
    let subnet = given.trunc();
    if subnet != given {
        return Err(NetworkError::invalid(format!(
            "invalid subnet {given}: it should be {subnet}"
        )));
    }
    let ip_range = match &p.ip_range {
        Some(r) if !r.is_empty() => {
            let n: IpNet = r.parse().map_err(|_| {
                NetworkError::invalid(format!("invalid ip-range {r}: invalid CIDR address: {r}"))
            })?;
            if !subnet.contains(&n) {
                return Err(NetworkError::invalid(format!(
                    "invalid ip-range {r}: it must be a subset of the subnet {subnet}"
                )));
            }
            Some(n.trunc())
        }
        _ => None,
    };
    let (gateway, user_gateway) = match &p.gateway {
        Some(g) if !g.is_empty() => {
            let ip: IpAddr = g
                .parse()
                .map_err(|_| NetworkError::invalid(format!("invalid gateway address {g}")))?;
            if !subnet.contains(&ip) {
                return Err(NetworkError::invalid(format!(
                    "invalid gateway address {g}: it does not belong to the subnet {subnet}"
                )));
            }
            if ipam_reserved(&subnet, ip) {
                return Err(NetworkError::internal(format!(
                    "failed to allocate gateway ({ip}): Address already in use"
                )));
            }
            (ip, true)
        }
        _ => (ipam::default_gateway(&subnet, ip_range.as_ref()), false),
    };
    let mut aux = BTreeMap::new();
    for (k, v) in &p.aux {
        let ip: IpAddr = v
            .parse()
            .map_err(|_| NetworkError::invalid(format!("invalid auxiliary address {k}={v}")))?;
        if !subnet.contains(&ip) {
            return Err(NetworkError::invalid(format!(
                "invalid auxiliary address {k}: it does not belong to the subnet {subnet}"
            )));
        }
        aux.insert(k.clone(), ip);
    }
    Ok(Pool {
        subnet,
        ip_range,
        gateway,
        aux,
        user_subnet: true,
        user_gateway,
        last: None,
    })
}

const ENABLE_IPV4: &str = "com.docker.network.enable_ipv4";
const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";

/// A network's IPv4/IPv6 switch: the request's field, else its driver option (a Go bool),
/// else the default. With the field given, the option is dropped (moby keeps no conflicting
/// value for inspect).
fn flag_or_option(
    options: &mut BTreeMap<String, String>,
    flag: Option<bool>,
    key: &str,
    default: bool,
) -> Result<bool, NetworkError> {
    if let Some(v) = flag {
        options.remove(key);
        return Ok(v);
    }
    match options.get(key) {
        None => Ok(default),
        Some(v) => crate::util::strconv::parse_bool(v).map_err(|_| {
            NetworkError::invalid(format!("driver-opt \"{key}\" is not a valid bool"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::{ErrorKind, Kinded};

    #[test]
    fn network_names_follow_dockerd() {
        for ok in ["a", "my-net", "n_1.x", "9net", "-net", "test 01", "a/b"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "  "] {
            let e = validate_name(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{bad}");
        }
    }

    #[test]
    fn pools_are_checked_against_their_subnet() {
        let req = |subnet: &str, range: Option<&str>, gw: Option<&str>, aux: &[(&str, &str)]| {
            parse_pool(&PoolRequest {
                subnet: Some(subnet.to_string()),
                ip_range: range.map(str::to_string),
                gateway: gw.map(str::to_string),
                aux: aux
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
        };
        let p = req(
            "10.1.0.0/16",
            Some("10.1.5.0/24"),
            None,
            &[("a", "10.1.0.9")],
        )
        .unwrap();
        assert_eq!(p.gateway.to_string(), "10.1.5.0");
        assert!(p.user_subnet && !p.user_gateway);
        let p = req("10.1.0.0/16", None, Some("10.1.0.254"), &[]).unwrap();
        assert_eq!(p.gateway.to_string(), "10.1.0.254");
        assert!(p.user_gateway);
        let e = req("10.1.0.1/16", None, None, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid subnet 10.1.0.1/16: it should be 10.1.0.0/16"
        );
        assert!(req("10.1.0.0/16", Some("10.2.0.0/24"), None, &[]).is_err());
        assert!(req("10.1.0.0/16", None, Some("10.2.0.1"), &[]).is_err());
        assert!(req("10.1.0.0/16", None, None, &[("a", "10.2.0.9")]).is_err());
        assert!(req("nonsense", None, None, &[]).is_err());
        let v6 = req("fd00:1::/64", None, None, &[]).unwrap();
        assert_eq!(v6.gateway.to_string(), "fd00:1::1");
        // moby's IPAM holds the network and broadcast addresses (not in a /31), and IPv6's
        // first address.
        for gw in ["10.1.0.0", "10.1.255.255"] {
            let e = req("10.1.0.0/16", None, Some(gw), &[]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("failed to allocate gateway ({gw}): Address already in use")
            );
        }
        assert!(req("10.1.0.0/31", None, Some("10.1.0.0"), &[]).is_ok());
        assert!(req("10.1.0.0/16", None, Some("10.1.0.1"), &[]).is_ok());
        assert!(req("fd00:1::/64", None, Some("fd00:1::"), &[]).is_err());
    }

    #[test]
    fn nameservers_skip_comments_and_zones() {
        let text = "# nameserver 1.1.1.1\nsearch x\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n\
                    nameserver bogus\n nameserver 10.0.0.3\n";
        let got: Vec<String> = parse_nameservers(text)
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(got, ["10.0.0.2", "fe80::1", "10.0.0.3"]);
    }
}
