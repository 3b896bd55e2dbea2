//! Daemon options: command-line flags and the JSON config file, merged as dockerd merges them.
//!
//! Flags and `daemon.json` keys carry dockerd's names. A key the file does not know, or a key set
//! both as a flag and in the file, is an error that names it. `SIGHUP` re-reads the file and
//! applies the keys listed in [`RELOADABLE_KEYS`].

pub mod host;
pub mod userns;

pub use host::Host;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use serde_json::Value;

use crate::registry::RegistryOptions;

/// Where berthd reads its config file unless `--config-file` says otherwise.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";
/// berth is a drop-in replacement: it listens where dockerd listens.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";
pub const DEFAULT_EXEC_ROOT: &str = "/run/berth";
pub const DEFAULT_PIDFILE: &str = "/var/run/berthd.pid";
pub const DEFAULT_GROUP: &str = "docker";
pub const DEFAULT_CGROUP_PARENT: &str = "/berth";

/// The keys that `SIGHUP` applies without a restart.
pub const RELOADABLE_KEYS: &[&str] = &[
    "debug",
    "log-level",
    "live-restore",
    "registry-mirrors",
    "insecure-registries",
];

/// The config-file keys berth knows, with the flag that sets the same option.
const KEYS: &[(&str, &str)] = &[
    ("hosts", "host"),
    ("data-root", "data-root"),
    ("exec-root", "exec-root"),
    ("pidfile", "pidfile"),
    ("group", "group"),
    ("log-level", "log-level"),
    ("debug", "debug"),
    ("tls", "tls"),
    ("tlsverify", "tlsverify"),
    ("tlscacert", "tlscacert"),
    ("tlscert", "tlscert"),
    ("tlskey", "tlskey"),
    ("registry-mirrors", "registry-mirror"),
    ("insecure-registries", "insecure-registry"),
    ("live-restore", "live-restore"),
    ("cgroup-parent", "cgroup-parent"),
    ("init-path", "init-path"),
    ("log-driver", "log-driver"),
    ("log-opts", "log-opt"),
    ("bridge", "bridge"),
    ("bip", "bip"),
    ("fixed-cidr", "fixed-cidr"),
    ("default-address-pools", "default-address-pool"),
    ("iptables", "iptables"),
    ("ip-forward", "ip-forward"),
    ("ip-masq", "ip-masq"),
    ("icc", "icc"),
    ("ip", "ip"),
    ("userland-proxy", "userland-proxy"),
    ("mtu", "mtu"),
    ("dns", "dns"),
    ("dns-search", "dns-search"),
    ("dns-opts", "dns-opt"),
    ("metrics-addr", "metrics-addr"),
    ("userns-remap", "userns-remap"),
];

/// berthd's command line, named as dockerd's.
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "berthd",
    about = "A Docker Engine API compatible container daemon",
    version = crate::version::VERSION_LINE,
    disable_version_flag = true
)]
pub struct Flags {
    /// Print version information and quit
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    pub version: Option<bool>,
    /// Daemon configuration file
    #[arg(long = "config-file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,
    /// Daemon socket(s) to connect to: unix://PATH, tcp://HOST:PORT, fd://, fd://NAME
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Root directory of persistent berth state
    #[arg(long = "data-root", value_name = "PATH")]
    pub data_root: Option<PathBuf>,
    /// Root directory for execution state files
    #[arg(long = "exec-root", value_name = "PATH")]
    pub exec_root: Option<PathBuf>,
    /// Path to use for daemon PID file
    #[arg(short = 'p', long = "pidfile", value_name = "PATH")]
    pub pidfile: Option<PathBuf>,
    /// Group for the unix socket
    #[arg(short = 'G', long = "group", value_name = "GROUP")]
    pub group: Option<String>,
    /// Set the logging level ("debug"|"info"|"warn"|"error"|"fatal")
    #[arg(short = 'l', long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long = "debug", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub debug: Option<bool>,
    /// Use TLS; implied by --tlsverify
    #[arg(long = "tls", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub tls: Option<bool>,
    /// Use TLS and verify the remote
    #[arg(long = "tlsverify", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub tls_verify: Option<bool>,
    /// Trust certs signed only by this CA
    #[arg(long = "tlscacert", value_name = "PATH")]
    pub tls_ca_cert: Option<PathBuf>,
    /// Path to TLS certificate file
    #[arg(long = "tlscert", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// Path to TLS key file
    #[arg(long = "tlskey", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// Preferred registry mirror
    #[arg(long = "registry-mirror", value_name = "URL")]
    pub registry_mirrors: Vec<String>,
    /// Enable insecure registry communication
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,
    /// Enable live restore of containers when the daemon stops
    #[arg(long = "live-restore", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub live_restore: Option<bool>,
    /// Set parent cgroup for all containers
    #[arg(long = "cgroup-parent", value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// Path to the docker-init binary (`--init`)
    #[arg(long = "init-path", value_name = "PATH")]
    pub init_path: Option<PathBuf>,
    /// Default driver for container logs
    #[arg(long = "log-driver", value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Default log driver options for containers (KEY=VALUE)
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opts: Vec<String>,
    /// Attach containers to a network bridge ("none" disables the default bridge)
    #[arg(short = 'b', long = "bridge", value_name = "NAME")]
    pub bridge: Option<String>,
    /// Network bridge IP (CIDR)
    #[arg(long = "bip", value_name = "CIDR")]
    pub bip: Option<String>,
    /// IPv4 subnet for fixed IPs on the default bridge
    #[arg(long = "fixed-cidr", value_name = "CIDR")]
    pub fixed_cidr: Option<String>,
    /// Default address pools for local networks (base=CIDR,size=N)
    #[arg(long = "default-address-pool", value_name = "POOL")]
    pub default_address_pools: Vec<String>,
    /// Enable the firewall rules (nftables)
    #[arg(long = "iptables", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub iptables: Option<bool>,
    /// Enable net.ipv4.ip_forward
    #[arg(long = "ip-forward", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub ip_forward: Option<bool>,
    /// Enable IP masquerading
    #[arg(long = "ip-masq", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub ip_masq: Option<bool>,
    /// Enable inter-container communication on the default bridge
    #[arg(long = "icc", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub icc: Option<bool>,
    /// Default IP when binding container ports
    #[arg(long = "ip", value_name = "IP")]
    pub ip: Option<String>,
    /// Use the userland proxy for loopback traffic
    #[arg(long = "userland-proxy", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "BOOL")]
    pub userland_proxy: Option<bool>,
    /// Network MTU of the default bridge
    #[arg(long = "mtu", value_name = "MTU")]
    pub mtu: Option<u32>,
    /// DNS server to use
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// DNS search domains to use
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// DNS options to use
    #[arg(long = "dns-opt", value_name = "OPT")]
    pub dns_opts: Vec<String>,
    /// Set default address and port to serve the metrics api on
    #[arg(long = "metrics-addr", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// User/Group setting for user namespaces
    #[arg(long = "userns-remap", value_name = "USER[:GROUP]")]
    pub userns_remap: Option<String>,
}

impl Flags {
    /// The value of the flag behind config key `key`, as dockerd prints it, if it was given.
    fn given(&self, key: &str) -> Option<String> {
        fn list(v: &[String]) -> Option<String> {
            (!v.is_empty()).then(|| format!("[{}]", v.join(" ")))
        }
        fn path(p: &Option<PathBuf>) -> Option<String> {
            p.as_ref().map(|p| p.display().to_string())
        }
        match key {
            "hosts" => list(&self.hosts),
            "data-root" => path(&self.data_root),
            "exec-root" => path(&self.exec_root),
            "pidfile" => path(&self.pidfile),
            "group" => self.group.clone(),
            "log-level" => self.log_level.clone(),
            "debug" => self.debug.map(|b| b.to_string()),
            "tls" => self.tls.map(|b| b.to_string()),
            "tlsverify" => self.tls_verify.map(|b| b.to_string()),
            "tlscacert" => path(&self.tls_ca_cert),
            "tlscert" => path(&self.tls_cert),
            "tlskey" => path(&self.tls_key),
            "registry-mirrors" => list(&self.registry_mirrors),
            "insecure-registries" => list(&self.insecure_registries),
            "live-restore" => self.live_restore.map(|b| b.to_string()),
            "cgroup-parent" => self.cgroup_parent.clone(),
            "init-path" => path(&self.init_path),
            "log-driver" => self.log_driver.clone(),
            "log-opts" => list(&self.log_opts),
            "bridge" => self.bridge.clone(),
            "bip" => self.bip.clone(),
            "fixed-cidr" => self.fixed_cidr.clone(),
            "default-address-pools" => list(&self.default_address_pools),
            "iptables" => self.iptables.map(|b| b.to_string()),
            "ip-forward" => self.ip_forward.map(|b| b.to_string()),
            "ip-masq" => self.ip_masq.map(|b| b.to_string()),
            "icc" => self.icc.map(|b| b.to_string()),
            "ip" => self.ip.clone(),
            "userland-proxy" => self.userland_proxy.map(|b| b.to_string()),
            "mtu" => self.mtu.map(|m| m.to_string()),
            "dns" => list(&self.dns),
            "dns-search" => list(&self.dns_search),
            "dns-opts" => list(&self.dns_opts),
            "metrics-addr" => self.metrics_addr.clone(),
            "userns-remap" => self.userns_remap.clone(),
            _ => None,
        }
    }
}

/// The config file's keys, typed.
#[derive(Deserialize, Debug, Default, Clone)]
struct FileConfig {
    hosts: Option<Vec<String>>,
    #[serde(rename = "data-root")]
    data_root: Option<PathBuf>,
    #[serde(rename = "exec-root")]
    exec_root: Option<PathBuf>,
    pidfile: Option<PathBuf>,
    group: Option<String>,
    #[serde(rename = "log-level")]
    log_level: Option<String>,
    debug: Option<bool>,
    tls: Option<bool>,
    tlsverify: Option<bool>,
    tlscacert: Option<PathBuf>,
    tlscert: Option<PathBuf>,
    tlskey: Option<PathBuf>,
    #[serde(rename = "registry-mirrors")]
    registry_mirrors: Option<Vec<String>>,
    #[serde(rename = "insecure-registries")]
    insecure_registries: Option<Vec<String>>,
    #[serde(rename = "live-restore")]
    live_restore: Option<bool>,
    #[serde(rename = "cgroup-parent")]
    cgroup_parent: Option<String>,
    #[serde(rename = "init-path")]
    init_path: Option<PathBuf>,
    #[serde(rename = "log-driver")]
    log_driver: Option<String>,
    #[serde(rename = "log-opts")]
    log_opts: Option<std::collections::HashMap<String, String>>,
    bridge: Option<String>,
    bip: Option<String>,
    #[serde(rename = "fixed-cidr")]
    fixed_cidr: Option<String>,
    #[serde(rename = "default-address-pools")]
    default_address_pools: Option<Vec<PoolConfig>>,
    iptables: Option<bool>,
    #[serde(rename = "ip-forward")]
    ip_forward: Option<bool>,
    #[serde(rename = "ip-masq")]
    ip_masq: Option<bool>,
    icc: Option<bool>,
    ip: Option<String>,
    #[serde(rename = "userland-proxy")]
    userland_proxy: Option<bool>,
    mtu: Option<u32>,
    dns: Option<Vec<String>>,
    #[serde(rename = "dns-search")]
    dns_search: Option<Vec<String>>,
    #[serde(rename = "dns-opts")]
    dns_opts: Option<Vec<String>>,
    #[serde(rename = "metrics-addr")]
    metrics_addr: Option<String>,
    #[serde(rename = "userns-remap")]
    userns_remap: Option<String>,
}

/// A `default-address-pools` entry (`{"base": "10.10.0.0/16", "size": 24}`).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub base: String,
    pub size: u8,
}

/// The daemon's networking options (dockerd's bridge flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetOptions {
    /// `-b/--bridge`: the default bridge's device (`berth0` unless given); `none` disables
    /// the default `bridge` network.
    pub bridge: String,
    pub bridge_explicit: bool,
    pub bip: Option<ipnet::Ipv4Net>,
    pub fixed_cidr: Option<ipnet::Ipv4Net>,
    /// `(base, size)`; empty means dockerd's defaults.
    pub default_address_pools: Vec<(ipnet::IpNet, u8)>,
    pub iptables: bool,
    pub ip_forward: bool,
    pub ip_masq: bool,
    pub icc: bool,
    /// `--ip`: the default host address of published ports.
    pub ip: std::net::IpAddr,
    pub userland_proxy: bool,
    pub mtu: Option<u32>,
    pub dns: Vec<std::net::IpAddr>,
    pub dns_search: Vec<String>,
    pub dns_opts: Vec<String>,
}

/// berth's default bridge device: its own name, so that berth runs beside dockerd's `docker0`.
pub const DEFAULT_BRIDGE: &str = "berth0";

impl NetOptions {
    fn merge(flags: &Flags, file: &FileConfig) -> Result<NetOptions, ConfigError> {
        let bad = |what: &str, v: &str| ConfigError::invalid(format!("invalid {what}: {v:?}"));
        let bridge = flags.bridge.clone().or(file.bridge.clone());
        let bip = match flags.bip.clone().or(file.bip.clone()) {
            Some(b) => Some(b.parse::<ipnet::Ipv4Net>().map_err(|_| bad("bip", &b))?),
            None => None,
        };
        let fixed_cidr = match flags.fixed_cidr.clone().or(file.fixed_cidr.clone()) {
            Some(b) => Some(
                b.parse::<ipnet::Ipv4Net>()
                    .map_err(|_| bad("fixed-cidr", &b))?,
            ),
            None => None,
        };
        let mut pools = Vec::new();
        if !flags.default_address_pools.is_empty() {
            for p in &flags.default_address_pools {
                let (mut base, mut size) = (None, None);
                for kv in p.split(',') {
                    match kv.split_once('=') {
                        Some(("base", v)) => base = Some(v.to_string()),
                        Some(("size", v)) => size = v.parse::<u8>().ok(),
                        _ => return Err(bad("default-address-pool", p)),
                    }
                }
                let (Some(base), Some(size)) = (base, size) else {
                    return Err(bad("default-address-pool", p));
                };
                pools.push(PoolConfig { base, size });
            }
        } else if let Some(p) = &file.default_address_pools {
            pools = p.clone();
        }
        let mut default_address_pools = Vec::new();
        for p in pools {
            let base: ipnet::IpNet = p
                .base
                .parse()
                .map_err(|_| bad("default-address-pool", &p.base))?;
            if p.size < base.prefix_len() || p.size > base.max_prefix_len() {
                return Err(ConfigError::invalid(format!(
                    "invalid pools size: {}: size must be between {} and {}",
                    p.size,
                    base.prefix_len(),
                    base.max_prefix_len()
                )));
            }
            default_address_pools.push((base.trunc(), p.size));
        }
        let ip_text = flags
            .ip
            .clone()
            .or(file.ip.clone())
            .unwrap_or_else(|| "0.0.0.0".into());
        let ip = ip_text.parse().map_err(|_| bad("ip", &ip_text))?;
        let list = |f: &[String], file: &Option<Vec<String>>| {
            if f.is_empty() {
                file.clone().unwrap_or_default()
            } else {
                f.to_vec()
            }
        };
        let mut dns = Vec::new();
        for d in list(&flags.dns, &file.dns) {
            dns.push(
                d.parse()
                    .map_err(|_| ConfigError::invalid(format!("{d} is not an ip address")))?,
            );
        }
        Ok(NetOptions {
            bridge_explicit: bridge.is_some(),
            bridge: bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string()),
            bip,
            fixed_cidr,
            default_address_pools,
            iptables: flags.iptables.or(file.iptables).unwrap_or(true),
            ip_forward: flags.ip_forward.or(file.ip_forward).unwrap_or(true),
            ip_masq: flags.ip_masq.or(file.ip_masq).unwrap_or(true),
            icc: flags.icc.or(file.icc).unwrap_or(true),
            ip,
            userland_proxy: flags.userland_proxy.or(file.userland_proxy).unwrap_or(true),
            mtu: flags.mtu.or(file.mtu),
            dns,
            dns_search: list(&flags.dns_search, &file.dns_search),
            dns_opts: list(&flags.dns_opts, &file.dns_opts),
        })
    }
}

/// A logging level as dockerd names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "fatal" | "panic" => LogLevel::Fatal,
            _ => return None,
        })
    }

    /// The `tracing` filter directive for this level.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Fatal => "error",
        }
    }
}

/// The resolved options berthd runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub config_file: PathBuf,
    pub hosts: Vec<Host>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    pub group: String,
    /// Whether the socket group was named by the user (a missing group is then an error).
    pub group_explicit: bool,
    pub log_level: LogLevel,
    pub debug: bool,
    /// Whether TCP listeners speak TLS: `--tls`, or implied by any `--tlsverify`.
    pub tls: bool,
    /// Whether clients must present a certificate signed by `--tlscacert`: `--tlsverify`, or
    /// `--tls` alone (as in dockerd, where `--tls` defaults `--tlsverify` to its own value).
    pub tls_verify: bool,
    /// Whether `--tls` or `--tlsverify` was given at all (flag or file): an explicit choice,
    /// which is what allows an unauthenticated TCP socket off loopback.
    pub tls_explicit: bool,
    pub tls_ca_cert: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub registry: RegistryOptions,
    pub live_restore: bool,
    pub cgroup_parent: String,
    /// `--init-path`; `None` looks for docker-init, then Debian's tini-static, on PATH.
    pub init_path: Option<PathBuf>,
    /// The default log driver and its options.
    pub log_driver: String,
    pub log_opts: std::collections::HashMap<String, String>,
    /// Networking.
    pub network: NetOptions,
    /// `--metrics-addr`: where `GET /metrics` is served (`HOST:PORT`); `None` serves nothing.
    pub metrics_addr: Option<String>,
    /// `--userns-remap` as given (`default` or `user[:group]`); resolved at start with
    /// [`userns::resolve`]. `None` or empty: no remapping.
    pub userns_remap: Option<String>,
}

impl Config {
    /// Whether TCP listeners speak TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls
    }

    /// The level logs are written at: `debug` overrides `log-level`.
    pub fn effective_log_level(&self) -> LogLevel {
        if self.debug {
            LogLevel::Debug
        } else {
            self.log_level
        }
    }

    /// Resolve flags and the config file into a [`Config`].
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let explicit = flags.config_file.is_some();
        let path = flags
            .config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => parse_file(&path, &text, flags)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                FileConfig::default()
            }
            Err(e) => {
                return Err(ConfigError::invalid(format!(
                    "unable to configure the daemon with file {}: {e}",
                    path.display()
                )))
            }
        };
        Self::merge(path, flags, file)
    }

    fn merge(config_file: PathBuf, flags: &Flags, file: FileConfig) -> Result<Config, ConfigError> {
        let pick_path = |flag: &Option<PathBuf>, file: Option<PathBuf>, default: &str| {
            absolute(
                flag.clone()
                    .or(file)
                    .unwrap_or_else(|| PathBuf::from(default)),
            )
        };
        let host_strings = if !flags.hosts.is_empty() {
            flags.hosts.clone()
        } else {
            file.hosts.clone().unwrap_or_default()
        };
        let mut hosts: Vec<Host> = Vec::new();
        for h in if host_strings.is_empty() {
            vec![DEFAULT_HOST.to_string()]
        } else {
            host_strings
        } {
            let h = Host::parse(&h)?;
            // The same address twice would collide with itself.
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
        let level_text = flags
            .log_level
            .clone()
            .or(file.log_level.clone())
            .unwrap_or_else(|| "info".to_string());
        let log_level = LogLevel::parse(&level_text).ok_or_else(|| {
            ConfigError::invalid(format!("unable to parse logging level: {level_text}"))
        })?;
        let cert_dir = default_cert_dir();
        let registry = RegistryOptions::new(
            if flags.registry_mirrors.is_empty() {
                file.registry_mirrors.clone().unwrap_or_default()
            } else {
                flags.registry_mirrors.clone()
            },
            if flags.insecure_registries.is_empty() {
                file.insecure_registries.clone().unwrap_or_default()
            } else {
                flags.insecure_registries.clone()
            },
        )
        .map_err(|e| ConfigError::invalid(e.to_string()))?;
        let cgroup_parent = flags
            .cgroup_parent
            .clone()
            .or(file.cgroup_parent.clone())
            .unwrap_or_else(|| DEFAULT_CGROUP_PARENT.to_string());
        if cgroup_parent.split('/').any(|c| c == "..") {
            return Err(ConfigError::invalid(format!(
                "invalid cgroup-parent {cgroup_parent:?}: it must not contain \"..\""
            )));
        }
        let group_explicit = flags.group.is_some() || file.group.is_some();
        let mut log_opts = file.log_opts.clone().unwrap_or_default();
        for kv in &flags.log_opts {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                ConfigError::invalid(format!("invalid --log-opt {kv:?}: expected KEY=VALUE"))
            })?;
            log_opts.insert(k.to_string(), v.to_string());
        }
        // dockerd: any --tlsverify turns TLS on; --tlsverify defaults to --tls.
        let tls_raw = flags.tls.or(file.tls);
        let verify_raw = flags.tls_verify.or(file.tlsverify);
        let tls = verify_raw.is_some() || tls_raw == Some(true);
        let tls_verify = verify_raw.or(tls_raw).unwrap_or(false);
        // A TCP address without a port gets dockerd's default for its kind.
        for h in hosts.iter_mut() {
            if let Host::Tcp {
                port: port @ None, ..
            } = h
            {
                *port = Some(if tls {
                    host::DEFAULT_TLS_PORT
                } else {
                    host::DEFAULT_TCP_PORT
                });
            }
        }
        let network = NetOptions::merge(flags, &file)?;
        let metrics_addr = match flags.metrics_addr.clone().or(file.metrics_addr.clone()) {
            Some(a) if a.is_empty() => None,
            Some(a) => Some(parse_metrics_addr(&a)?),
            None => None,
        };
        let userns_remap = flags
            .userns_remap
            .clone()
            .or(file.userns_remap.clone())
            .filter(|v| !v.is_empty());
        Ok(Config {
            userns_remap,
            metrics_addr,
            network,
            config_file,
            hosts,
            data_root: pick_path(&flags.data_root, file.data_root, DEFAULT_DATA_ROOT),
            exec_root: pick_path(&flags.exec_root, file.exec_root, DEFAULT_EXEC_ROOT),
            pidfile: pick_path(&flags.pidfile, file.pidfile, DEFAULT_PIDFILE),
            group: flags
                .group
                .clone()
                .or(file.group)
                .unwrap_or_else(|| DEFAULT_GROUP.to_string()),
            group_explicit,
            log_level,
            debug: flags.debug.or(file.debug).unwrap_or(false),
            tls,
            tls_verify,
            tls_explicit: tls_raw.is_some() || verify_raw.is_some(),
            tls_ca_cert: flags
                .tls_ca_cert
                .clone()
                .or(file.tlscacert)
                .unwrap_or_else(|| cert_dir.join("ca.pem")),
            tls_cert: flags
                .tls_cert
                .clone()
                .or(file.tlscert)
                .unwrap_or_else(|| cert_dir.join("cert.pem")),
            tls_key: flags
                .tls_key
                .clone()
                .or(file.tlskey)
                .unwrap_or_else(|| cert_dir.join("key.pem")),
            registry,
            live_restore: flags.live_restore.or(file.live_restore).unwrap_or(false),
            cgroup_parent,
            init_path: flags.init_path.clone().or(file.init_path),
            log_driver: flags
                .log_driver
                .clone()
                .or(file.log_driver)
                .unwrap_or_else(|| "json-file".to_string()),
            log_opts,
        })
    }

    /// Re-read the config file for `SIGHUP`: returns the new config (with only the reloadable
    /// keys taken from the file) and the names of the keys that changed. Keys that need a
    /// restart are reported in the second list and left as they were.
    pub fn reload(&self, flags: &Flags) -> Result<Reload, ConfigError> {
        let fresh = Config::load(flags)?;
        let mut next = self.clone();
        let mut applied = Vec::new();
        if fresh.debug != self.debug {
            next.debug = fresh.debug;
            applied.push("debug");
        }
        if fresh.log_level != self.log_level {
            next.log_level = fresh.log_level;
            applied.push("log-level");
        }
        if fresh.live_restore != self.live_restore {
            next.live_restore = fresh.live_restore;
            applied.push("live-restore");
        }
        if fresh.registry.mirrors != self.registry.mirrors {
            applied.push("registry-mirrors");
        }
        if fresh.registry.insecure != self.registry.insecure {
            applied.push("insecure-registries");
        }
        next.registry = fresh.registry.clone();
        let mut ignored = Vec::new();
        if fresh.hosts != self.hosts {
            ignored.push("hosts");
        }
        if fresh.data_root != self.data_root {
            ignored.push("data-root");
        }
        if fresh.exec_root != self.exec_root {
            ignored.push("exec-root");
        }
        if fresh.pidfile != self.pidfile {
            ignored.push("pidfile");
        }
        if fresh.group != self.group {
            ignored.push("group");
        }
        if fresh.tls != self.tls
            || fresh.tls_verify != self.tls_verify
            || fresh.tls_explicit != self.tls_explicit
            || fresh.tls_ca_cert != self.tls_ca_cert
            || fresh.tls_cert != self.tls_cert
            || fresh.tls_key != self.tls_key
        {
            ignored.push("tls");
        }
        if fresh.cgroup_parent != self.cgroup_parent {
            ignored.push("cgroup-parent");
        }
        if fresh.network != self.network {
            ignored.push("network");
        }
        if fresh.metrics_addr != self.metrics_addr {
            ignored.push("metrics-addr");
        }
        Ok(Reload {
            config: next,
            applied,
            ignored,
        })
    }
}

/// The outcome of [`Config::reload`].
#[derive(Debug)]
pub struct Reload {
    pub config: Config,
    pub applied: Vec<&'static str>,
    pub ignored: Vec<&'static str>,
}

/// Parse and check the config file against the flags: unknown keys, then conflicts, then types.
fn parse_file(path: &Path, text: &str, flags: &Flags) -> Result<FileConfig, ConfigError> {
    let wrap = |msg: String| {
        ConfigError::invalid(format!(
            "unable to configure the daemon with file {}: {msg}",
            path.display()
        ))
    };
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let value: Value = serde_json::from_str(text).map_err(|e| wrap(e.to_string()))?;
    let map = match value {
        Value::Object(m) => m,
        _ => return Err(wrap("the configuration must be a JSON object".to_string())),
    };
    let unknown: Vec<&str> = map
        .keys()
        .filter(|k| !KEYS.iter().any(|(key, _)| key == k))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(wrap(format!(
            "the following directives don't match any configuration option: {}",
            unknown.join(", ")
        )));
    }
    let mut conflicts = Vec::new();
    for (key, value) in &map {
        if let Some(from_flag) = flags.given(key) {
            conflicts.push(format!(
                "{key}: (from flag: {from_flag}, from file: {})",
                display_value(value)
            ));
        }
    }
    if !conflicts.is_empty() {
        return Err(wrap(format!(
            "the following directives are specified both as a flag and in the configuration file: {}",
            conflicts.join(", ")
        )));
    }
    // Type-check key by key so that the error names the key.
    let mut typed = BTreeMap::new();
    for (key, value) in map {
        let single = serde_json::json!({ key.clone(): value.clone() });
        serde_json::from_value::<FileConfig>(single)
            .map_err(|e| wrap(format!("invalid value for {key}: {e}")))?;
        typed.insert(key, value);
    }
    serde_json::from_value(Value::Object(typed.into_iter().collect()))
        .map_err(|e| wrap(e.to_string()))
}

/// `--metrics-addr`: `HOST:PORT` as Go's `net.SplitHostPort` takes it (an IPv6 host in
/// brackets; an empty host is every address, as in dockerd). The host is resolved at bind time.
fn parse_metrics_addr(addr: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| {
        ConfigError::invalid(format!(
            "invalid metrics-addr {addr:?}: {why} (expected HOST:PORT)"
        ))
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad("an IPv6 address needs brackets"));
    }
    port.parse::<u16>().map_err(|_| bad("bad port"))?;
    Ok(addr.to_string())
}

/// A JSON value as Go's `%v` prints the decoded value.
fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(display_value).collect::<Vec<_>>().join(" ")
        ),
        other => other.to_string(),
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

/// `$DOCKER_CERT_PATH`, else `~/.docker`, as dockerd and the docker CLI default.
fn default_cert_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DOCKER_CERT_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker")
}

crate::module_error! {
    /// A bad flag, host or config file.
    pub struct ConfigError;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut v = vec!["berthd"];
        v.extend_from_slice(args);
        Flags::try_parse_from(v).unwrap()
    }

    fn with_file(text: &str, args: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.json");
        std::fs::write(&p, text).unwrap();
        let mut a = vec!["--config-file", p.to_str().unwrap()];
        a.extend_from_slice(args);
        Config::load(&flags(&a))
    }

    #[test]
    fn defaults_without_a_file() {
        let c = Config::load(&flags(&["--config-file", "/nonexistent/berth-test.json"]));
        assert!(c.is_err(), "an explicit config file must exist");
        let f = Flags {
            config_file: None,
            ..Default::default()
        };
        // The default file may or may not exist on the machine; only check flags-only parsing.
        let c = Config::merge(
            PathBuf::from(DEFAULT_CONFIG_FILE),
            &f,
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(
            c.hosts,
            vec![Host::Unix(PathBuf::from("/var/run/docker.sock"))]
        );
        assert_eq!(c.data_root, PathBuf::from("/var/lib/berth"));
        assert_eq!(c.exec_root, PathBuf::from("/run/berth"));
        assert_eq!(c.group, "docker");
        assert!(!c.group_explicit);
        assert!(!c.tls_enabled());
        assert_eq!(c.cgroup_parent, "/berth");
    }

    #[test]
    fn flags_are_named_as_dockerd() {
        let f = flags(&[
            "-H",
            "unix:///tmp/a.sock",
            "-H",
            "tcp://127.0.0.1:2375",
            "--data-root",
            "/d",
            "-D",
            "--tls=false",
            "--tlsverify",
            "--registry-mirror",
            "https://m.example",
            "--insecure-registry",
            "10.0.0.0/8",
            "--live-restore",
            "--cgroup-parent",
            "/x",
            "-G",
            "wheel",
            "-l",
            "warn",
            "-p",
            "/tmp/p.pid",
        ]);
        assert_eq!(f.hosts.len(), 2);
        assert_eq!(f.debug, Some(true));
        assert_eq!(f.tls, Some(false));
        assert_eq!(f.tls_verify, Some(true));
        assert_eq!(f.live_restore, Some(true));
        let c = Config::merge(PathBuf::from("/x.json"), &f, FileConfig::default()).unwrap();
        assert!(c.tls_enabled());
        assert_eq!(c.effective_log_level(), LogLevel::Debug);
        assert!(c.group_explicit);
    }

    #[test]
    fn tls_flags_resolve_as_in_dockerd() {
        let c = |args: &[&str]| {
            Config::merge(PathBuf::from("/x"), &flags(args), FileConfig::default()).unwrap()
        };
        let none = c(&[]);
        assert!(!none.tls && !none.tls_verify && !none.tls_explicit);
        let tls = c(&["--tls"]);
        assert!(
            tls.tls && tls.tls_verify,
            "--tls alone verifies clients, as in dockerd"
        );
        let off = c(&["--tls=false"]);
        assert!(!off.tls && !off.tls_verify && off.tls_explicit);
        let v = c(&["--tlsverify"]);
        assert!(v.tls && v.tls_verify);
        let nv = c(&["--tlsverify=false"]);
        assert!(
            nv.tls && !nv.tls_verify && nv.tls_explicit,
            "TLS without client certificates"
        );
        let f = with_file(r#"{"tls": true}"#, &[]).unwrap();
        assert!(f.tls && f.tls_verify);
        let d = c(&["-H", "unix:///a", "-H", "unix:///a"]);
        assert_eq!(d.hosts.len(), 1, "duplicate hosts are merged");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = with_file(r#"{"debug": true, "bogus": 1}"#, &[]).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("the following directives don't match any configuration option: bogus"),
            "{e}"
        );
    }

    #[test]
    fn flag_and_file_conflicts_are_named() {
        let e = with_file(r#"{"data-root": "/b"}"#, &["--data-root", "/a"]).unwrap_err();
        assert!(
            e.to_string().contains(
                "the following directives are specified both as a flag and in the configuration file: data-root: (from flag: /a, from file: /b)"
            ),
            "{e}"
        );
        let e = with_file(r#"{"hosts": ["unix:///b"]}"#, &["-H", "unix:///a"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("hosts: (from flag: [unix:///a], from file: [unix:///b])"),
            "{e}"
        );
    }

    #[test]
    fn file_values_apply_and_types_are_checked() {
        let c = with_file(
            r#"{"data-root": "/srv/berth", "debug": true, "insecure-registries": ["myreg:5000"]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(c.data_root, PathBuf::from("/srv/berth"));
        assert!(c.debug);
        assert_eq!(c.registry.insecure, vec!["myreg:5000".to_string()]);
        let e = with_file(r#"{"debug": "yes"}"#, &[]).unwrap_err();
        assert!(e.to_string().contains("invalid value for debug"), "{e}");
        let e = with_file(r#"[1]"#, &[]).unwrap_err();
        assert!(e.to_string().contains("must be a JSON object"), "{e}");
        let e = with_file(r#"{"debug": tru"#, &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unable to configure the daemon with file"),
            "{e}"
        );
        assert!(with_file("  \n", &[]).is_ok());
    }

    #[test]
    fn bad_log_level_and_cgroup_parent() {
        let e = Config::merge(
            PathBuf::from("/x"),
            &flags(&["-l", "loud"]),
            FileConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "unable to parse logging level: loud");
        let e = Config::merge(
            PathBuf::from("/x"),
            &flags(&["--cgroup-parent", "/a/../b"]),
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("must not contain"));
    }

    #[test]
    fn metrics_addr_from_flag_or_file() {
        let c =
            |args: &[&str]| Config::merge(PathBuf::from("/x"), &flags(args), FileConfig::default());
        assert_eq!(c(&[]).unwrap().metrics_addr, None);
        assert_eq!(
            c(&["--metrics-addr", "127.0.0.1:9323"])
                .unwrap()
                .metrics_addr
                .as_deref(),
            Some("127.0.0.1:9323")
        );
        assert_eq!(
            c(&["--metrics-addr", "[::1]:9323"])
                .unwrap()
                .metrics_addr
                .as_deref(),
            Some("[::1]:9323")
        );
        assert_eq!(c(&["--metrics-addr", ""]).unwrap().metrics_addr, None);
        for bad in ["127.0.0.1", "127.0.0.1:x", "::1:9323", "host:70000"] {
            let e = c(&["--metrics-addr", bad]).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid metrics-addr"),
                "{bad}: {e}"
            );
        }
        let f = with_file(r#"{"metrics-addr": "127.0.0.1:9400"}"#, &[]).unwrap();
        assert_eq!(f.metrics_addr.as_deref(), Some("127.0.0.1:9400"));
        let e = with_file(
            r#"{"metrics-addr": "127.0.0.1:9400"}"#,
            &["--metrics-addr", "127.0.0.1:1"],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("metrics-addr: (from flag: 127.0.0.1:1, from file: 127.0.0.1:9400)"),
            "{e}"
        );
    }

    #[test]
    fn reload_applies_only_reloadable_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.json");
        std::fs::write(&p, r#"{"debug": false, "data-root": "/one"}"#).unwrap();
        let f = flags(&["--config-file", p.to_str().unwrap()]);
        let c = Config::load(&f).unwrap();
        std::fs::write(
            &p,
            r#"{"debug": true, "data-root": "/two", "registry-mirrors": ["https://mirror.example"]}"#,
        )
        .unwrap();
        let r = c.reload(&f).unwrap();
        assert!(r.config.debug);
        assert_eq!(r.config.data_root, PathBuf::from("/one"));
        assert_eq!(r.applied, vec!["debug", "registry-mirrors"]);
        assert_eq!(r.ignored, vec!["data-root"]);
        std::fs::write(&p, r#"{"nope": 1}"#).unwrap();
        assert!(c.reload(&f).is_err());
    }
}
