//! The daemon: owns the configuration, the managers and the event bus; hands each router its
//! backend ([`Daemon::backends`]: the image service, the event bus, the container manager) and
//! itself serves the system-wide and cross-manager endpoints (`/_ping`, `/version`, `/info`,
//! `/system/df`), reload and restore.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use bollard_stubs::models::{
    Commit, LocalNodeState, PluginsInfo, Runtime, SwarmInfo, SystemInfo,
    SystemInfoCgroupDriverEnum, SystemInfoCgroupVersionEnum, SystemVersion,
    SystemVersionComponents, SystemVersionPlatform,
};
use nix::fcntl::{Flock, FlockArg};

use crate::api::{Backends, DiskUsage, DiskUsageOptions, SystemBackend};
use crate::config::{Config, ConfigError, Flags, Host, LogLevel};
use crate::container::{ContainerManager, ManagerConfig};
use crate::errors::Kinded;
use crate::events::{Event, EventBus};
use crate::image::store::Store;
use crate::image::ImageService;
use crate::metrics::{
    ContainerSample, ContainerStates, EngineInfo, InterfaceSample, Metrics, MetricsSource,
};
use crate::network::service::NetworkService;
use crate::runtime::{self, CgroupInfo, CgroupVersion, RuntimeConfig};
use crate::system::{self, HostInfo, SystemError};
use crate::util::fs::{ensure_dir, remove_temp_files};
use crate::util::time::rfc3339_nano;
use crate::version::{
    go_arch, API_VERSION, BUILD_TIME, GIT_COMMIT, MIN_API_VERSION, RUSTC_VERSION, VERSION,
};
use crate::volume::VolumeService;

/// Applies a new log level (installed by `main`, absent in tests).
pub type LogControl = Box<dyn Fn(LogLevel) + Send + Sync>;

pub struct Daemon {
    flags: Flags,
    config: RwLock<Config>,
    host: HostInfo,
    cgroups: CgroupInfo,
    engine_id: String,
    /// A first start's save of its engine ID, until `settle` has waited for it.
    engine_id_saving: Mutex<Option<tokio::task::JoinHandle<()>>>,
    events: Arc<EventBus>,
    images: Arc<ImageService>,
    containers: Arc<ContainerManager>,
    volumes: Arc<VolumeService>,
    network: Arc<NetworkService>,
    metrics: Arc<Metrics>,
    builder: Arc<crate::builder::build::Builder>,
    log_control: Option<LogControl>,
    _root_lock: Flock<File>,
}

impl Daemon {
    /// Prepare the data and exec roots and take the data root's lock.
    pub async fn new(
        flags: Flags,
        config: Config,
        log_control: Option<LogControl>,
    ) -> Result<Arc<Daemon>, SystemError> {
        let data_root = config.data_root.clone();
        ensure_dir(&data_root, 0o711)
            .map_err(|e| SystemError::io(format!("create data root {}", data_root.display()), e))?;
        ensure_dir(&config.exec_root, 0o700).map_err(|e| {
            SystemError::io(
                format!("create exec root {}", config.exec_root.display()),
                e,
            )
        })?;
        let root_lock = lock_data_root(&data_root)?;
        remove_temp_files(&data_root)
            .map_err(|e| SystemError::io(format!("clean data root {}", data_root.display()), e))?;
        // A first start makes its engine ID and saves it (two fsyncs) while the daemon starts
        // and serves: nothing on disk names it, and shutdown waits for the save (`settle`).
        let (engine_id, engine_id_saving) = match system::load_engine_id(&data_root)? {
            Some(id) => (id, None),
            None => {
                let id = system::new_engine_id();
                let (root, saved) = (data_root.clone(), id.clone());
                let saving = tokio::task::spawn_blocking(move || {
                    if let Err(e) = system::save_engine_id(&root, &saved) {
                        tracing::error!("{e}");
                    }
                });
                (id, Some(saving))
            }
        };
        let events = Arc::new(EventBus::with_image_repository(
            crate::image::reference::familiar_repository,
        ));
        {
            let events = events.clone();
            tokio::task::spawn_blocking(move || events.make_slots());
        }
        let supervisor_exe = crate::util::exe::self_exe();
        // Networking opens on a worker thread meanwhile: netlink, its records (a first
        // start's fsyncs), the default bridge and the firewall.
        let network = tokio::spawn({
            let (opts, root, exe, events) = (
                config.network.clone(),
                data_root.clone(),
                supervisor_exe.clone(),
                events.clone(),
            );
            async move { NetworkService::open(opts, &root, exe, events).await }
        });
        let metrics = Arc::new(Metrics::new());
        {
            let m = metrics.clone();
            events.set_on_publish(Box::new(move || m.event()));
        }
        let volumes = VolumeService::open(&data_root, events.clone()).map_err(|e| {
            SystemError::io(
                "open volume store".to_string(),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let store = Store::open(&data_root).map_err(|e| {
            SystemError::io(
                "open image store".to_string(),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let images = Arc::new(ImageService::new(Arc::new(store), events.clone()));
        images.set_registry_options(config.registry.clone());
        let host = HostInfo::probe();
        let cgroups = runtime::probe_cgroups();
        let userns_remap = match config.userns_remap.as_deref() {
            Some(v) => {
                let r = crate::config::userns::resolve(v).map_err(|e| {
                    SystemError::io(
                        "configure user namespace remapping".to_string(),
                        std::io::Error::other(e.to_string()),
                    )
                })?;
                let (uid, gid) = r.map.root();
                let (uids, gids) = r.map.sizes();
                tracing::info!(
                    "user namespaces: container root is {uid}:{gid} ({uids} uids in {} ranges, \
                     {gids} gids in {} ranges, from {}:{})",
                    r.map.uids.len(),
                    r.map.gids.len(),
                    r.user,
                    r.group
                );
                Some(r)
            }
            None => None,
        };
        let runtime = Arc::new(runtime::Runtime::new(RuntimeConfig {
            exec_root: config.exec_root.clone(),
            cgroup_parent: format!("/{}", config.cgroup_parent.trim_matches('/')),
            supervisor_exe,
            cgroups: cgroups.clone(),
            subtrees: own_subtrees(&data_root, &config.exec_root),
            shed_above: std::env::var("BERTH_TEST_SHED_ABOVE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(runtime::subtree::SHED_ABOVE),
        }));
        let build_cache = crate::builder::cache::ContextCache::open(
            &data_root.join("buildcache"),
            crate::builder::cache::DEFAULT_MAX_BYTES,
        )
        .map_err(|e| SystemError::new(e.kind(), format!("open the build cache: {e}")))?;
        let network = network
            .await
            .map_err(|e| SystemError::internal(format!("set up networking: {e}")))?
            .map_err(|e| {
                SystemError::io(
                    "set up networking".to_string(),
                    std::io::Error::other(e.to_string()),
                )
            })?;
        let containers = ContainerManager::new(
            ManagerConfig {
                data_root: data_root.clone(),
                init_path: config.init_path.clone(),
                default_log: (config.log_driver.clone(), config.log_opts.clone()),
                ncpu: host.ncpu,
                userns_remap: userns_remap.as_ref().map(|r| r.map.clone()),
            },
            runtime,
            images.clone(),
            volumes.clone(),
            network.clone(),
            events.clone(),
        );
        containers.set_metrics(metrics.clone());
        let builder = crate::builder::build::Builder::new(
            containers.clone(),
            images.clone(),
            data_root.join("builder"),
            build_cache,
            events.clone(),
        );
        let weak = Arc::downgrade(&containers);
        images.set_usage_check(Box::new(move |image_id| {
            weak.upgrade().and_then(|m| m.image_user(image_id))
        }));
        Ok(Arc::new(Daemon {
            flags,
            config: RwLock::new(config),
            host,
            cgroups,
            engine_id,
            engine_id_saving: Mutex::new(engine_id_saving),
            events,
            images,
            containers,
            volumes,
            network,
            metrics,
            builder,
            log_control,
            _root_lock: root_lock,
        }))
    }

    /// A snapshot of the current configuration.
    pub fn config(&self) -> Config {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Load the containers from disk and reattach to the running ones.
    pub async fn restore(&self) {
        self.containers.restore().await;
        tokio::spawn(self.containers.clone().collect_execs_periodically());
    }

    pub fn events(&self) -> &Arc<EventBus> {
        &self.events
    }

    /// The daemon's metrics (`--metrics-addr`), for the managers that count into them.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The volume service, for the container manager's wiring.
    pub fn volumes(&self) -> &Arc<VolumeService> {
        &self.volumes
    }

    /// Wait for what a first start writes while the daemon already serves (its engine ID, the
    /// predefined networks), so that a stop right after a first start keeps them. Called once
    /// the server has stopped.
    pub async fn settle(&self) {
        let saving = self
            .engine_id_saving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(saving) = saving {
            let _ = saving.await;
        }
        self.network.predefined_saved().await;
    }

    /// Each router's backend: the daemon for the system routes, the event bus, the image
    /// service and the container manager for theirs.
    pub fn backends(self: &Arc<Self>) -> Backends {
        Backends {
            system: self.clone(),
            events: self.events.clone(),
            images: Arc::new(self.images.clone()),
            containers: Arc::new(self.containers.clone()),
            volumes: Arc::new(self.volumes.clone()),
            networks: Arc::new(crate::container::network_backend::NetworkRouter {
                containers: self.containers.clone(),
            }),
            build: Arc::new(self.builder.clone()),
        }
    }

    /// `SIGHUP`: re-read the config file and apply its reloadable keys.
    pub fn reload(&self) -> Result<Vec<&'static str>, ConfigError> {
        let current = self.config();
        let reload = current.reload(&self.flags)?;
        for key in &reload.ignored {
            tracing::warn!(
                "config key {key} changed in {}: it applies after a restart",
                current.config_file.display()
            );
        }
        if reload.config.effective_log_level() != current.effective_log_level() {
            if let Some(ctl) = &self.log_control {
                ctl(reload.config.effective_log_level());
            }
        }
        let next = reload.config;
        // moby's `Reload` names the reloadable settings with their values after the reload,
        // changed or not; berth names those it has (no daemon labels: `[]`, as in `/info`).
        let event = Event::new("daemon", "reload", self.engine_id.clone())
            .attribute("name", self.host.hostname.clone())
            .attribute("debug", next.debug.to_string())
            .attribute("live-restore", next.live_restore.to_string())
            .attribute("registry-mirrors", json_list(&next.registry.mirrors))
            .attribute("insecure-registries", json_list(&next.registry.insecure))
            .attribute("labels", "[]")
            .attribute("default-runtime", runtime::RUNTIME_NAME)
            .attribute(
                "default-shm-size",
                crate::container::create::DEFAULT_SHM_SIZE.to_string(),
            );
        self.images.set_registry_options(next.registry.clone());
        match self.config.write() {
            Ok(mut c) => *c = next,
            Err(p) => *p.into_inner() = next,
        }
        self.events.publish(event);
        Ok(reload.applied)
    }

    /// The `/info` warnings about how the API is exposed, in dockerd's words.
    fn listen_warnings(config: &Config) -> Vec<String> {
        const WARN: &str = "\n         Access to the remote API is equivalent to root access on the host. Refer\n         to the 'Docker daemon attack surface' section in the documentation for\n         more information: https://docs.docker.com/go/attack-surface/";
        config
            .hosts
            .iter()
            .filter_map(|h| match h {
                Host::Tcp { .. } => {
                    let addr = h.to_string().trim_start_matches("tcp://").to_string();
                    if !config.tls_enabled() {
                        Some(format!("[DEPRECATION NOTICE]: API is accessible on http://{addr} without encryption.{WARN}"))
                    } else if !config.tls_verify {
                        Some(format!("[DEPRECATION NOTICE]: API is accessible on https://{addr} without TLS client verification.{WARN}"))
                    } else {
                        None
                    }
                }
                _ => None,
            })
            .collect()
    }
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string())
}

/// The directories holding the containers' root filesystems and network namespace files, each
/// made a private bind mount of itself (`runtime::subtree`). One that cannot be is left as it
/// is and only costs container starts their speed at scale.
fn own_subtrees(data_root: &Path, exec_root: &Path) -> Vec<std::path::PathBuf> {
    let table = crate::util::fs::mount_table();
    [
        (data_root.join("containers"), 0o710),
        (exec_root.join("netns"), 0o700),
    ]
    .into_iter()
    .filter_map(
        |(dir, mode)| match runtime::subtree::own(&dir, mode, &table) {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                tracing::info!(
                    "{} is not a mount of its own (mounts below it, or another mount on it): \
                 container starts read every running container's mounts",
                    dir.display()
                );
                None
            }
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        },
    )
    .collect()
}

/// Hold an exclusive lock on the data root for the daemon's lifetime: two daemons on one data
/// root would corrupt it.
fn lock_data_root(data_root: &Path) -> Result<Flock<File>, SystemError> {
    let path = data_root.join("berthd.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| SystemError::io(format!("open {}", path.display()), e))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        SystemError::io(
            format!(
                "lock data root {}: is another berthd using it?",
                data_root.display()
            ),
            std::io::Error::from(errno),
        )
    })
}

/// Count the entries of a `/proc/self` directory (open files) or a status field (threads).
fn proc_count_fds() -> i64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as i64)
        .unwrap_or(0)
}

fn proc_threads() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Threads:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

impl SystemBackend for Daemon {
    fn swarm_status(&self) -> String {
        "inactive".to_string()
    }

    fn builder_version(&self) -> &'static str {
        "1"
    }

    fn system_version(&self) -> SystemVersion {
        let details = |pairs: &[(&str, String)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        let engine = SystemVersionComponents {
            name: "Engine".to_string(),
            version: VERSION.to_string(),
            details: Some(details(&[
                ("ApiVersion", API_VERSION.to_string()),
                ("MinAPIVersion", MIN_API_VERSION.to_string()),
                ("GitCommit", GIT_COMMIT.to_string()),
                ("GoVersion", RUSTC_VERSION.to_string()),
                ("Os", "linux".to_string()),
                ("Arch", go_arch().to_string()),
                ("KernelVersion", self.host.kernel_version.clone()),
                ("BuildTime", BUILD_TIME.to_string()),
                ("Experimental", "false".to_string()),
            ])),
        };
        let runtime = SystemVersionComponents {
            name: runtime::RUNTIME_NAME.to_string(),
            version: runtime::version().to_string(),
            details: Some(details(&[(
                "GitCommit",
                format!("v{}", runtime::version()),
            )])),
        };
        SystemVersion {
            platform: Some(SystemVersionPlatform {
                name: format!("berth {VERSION}"),
            }),
            components: Some(vec![engine, runtime]),
            version: Some(VERSION.to_string()),
            api_version: Some(API_VERSION.to_string()),
            min_api_version: Some(MIN_API_VERSION.to_string()),
            git_commit: Some(GIT_COMMIT.to_string()),
            go_version: Some(RUSTC_VERSION.to_string()),
            os: Some("linux".to_string()),
            arch: Some(go_arch().to_string()),
            kernel_version: Some(self.host.kernel_version.clone()),
            // `Experimental bool json:",omitempty"` in moby's `types.Version`: absent when
            // false (the Engine component's details still say "false").
            experimental: None,
            build_time: Some(BUILD_TIME.to_string()),
        }
    }

    fn system_info(&self) -> Result<SystemInfo, SystemError> {
        let config = self.config();
        let cg = &self.cgroups;
        let counts = self.containers.counts();
        let mut warnings = Daemon::listen_warnings(&config);
        warnings.extend(cg.warnings());
        let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .map(|s| s.trim() == "1")
            .unwrap_or(self.host.ipv4_forwarding);
        if !forwarding {
            warnings.push("WARNING: IPv4 forwarding is disabled".to_string());
        }
        warnings.extend(self.network.warnings());
        let mut security = Vec::new();
        if self.host.seccomp {
            security.push("name=seccomp,profile=builtin".to_string());
        }
        if config.userns_remap.is_some() {
            security.push("name=userns".to_string());
        }
        if cg.version == CgroupVersion::V2 {
            security.push("name=cgroupns".to_string());
        }
        let exe = crate::util::exe::name().to_string_lossy().into_owned();
        // berth's runtime, and dockerd's names for its default runtime that create accepts.
        let runtimes: HashMap<String, Runtime> = crate::container::create::RUNTIME_NAMES
            .iter()
            .map(|name| {
                let rt = Runtime {
                    path: Some(exe.clone()),
                    ..Default::default()
                };
                (name.to_string(), rt)
            })
            .collect();
        let proxy = |name: &str| system::mask_credentials(&system::proxy_env(name));
        Ok(SystemInfo {
            id: Some(self.engine_id.clone()),
            containers: Some(counts.0),
            containers_running: Some(counts.1),
            containers_paused: Some(counts.2),
            containers_stopped: Some(counts.3),
            images: Some(self.images.count() as i64),
            driver: Some("overlay2".to_string()),
            driver_status: Some(vec![vec![
                "Backing Filesystem".to_string(),
                backing_filesystem(&config.data_root),
            ]]),
            docker_root_dir: Some(config.data_root.display().to_string()),
            plugins: Some(PluginsInfo {
                volume: Some(vec![crate::volume::LOCAL_DRIVER.to_string()]),
                network: Some(vec!["bridge".into(), "host".into(), "null".into()]),
                authorization: None,
                // moby's `logger.ListDrivers`: the registered drivers (`none` is not one).
                log: Some(vec!["json-file".into(), "local".into()]),
            }),
            memory_limit: Some(cg.memory_limit),
            swap_limit: Some(cg.swap_limit),
            cpu_cfs_period: Some(cg.cpu_cfs_period),
            cpu_cfs_quota: Some(cg.cpu_cfs_quota),
            cpu_shares: Some(cg.cpu_shares),
            cpu_set: Some(cg.cpuset),
            pids_limit: Some(cg.pids_limit),
            oom_kill_disable: Some(cg.oom_kill_disable),
            debug: Some(config.debug),
            nfd: Some(proc_count_fds()),
            n_goroutines: Some(proc_threads()),
            system_time: Some(rfc3339_nano(SystemTime::now())),
            logging_driver: Some("json-file".to_string()),
            cgroup_driver: Some(SystemInfoCgroupDriverEnum::CGROUPFS),
            cgroup_version: Some(match cg.version {
                CgroupVersion::V1 => SystemInfoCgroupVersionEnum::_1,
                CgroupVersion::V2 => SystemInfoCgroupVersionEnum::_2,
            }),
            n_events_listener: Some(self.events.listeners() as i64),
            kernel_version: Some(self.host.kernel_version.clone()),
            operating_system: Some(self.host.operating_system.clone()),
            os_version: Some(self.host.os_version.clone()),
            os_type: Some("linux".to_string()),
            architecture: Some(self.host.architecture.clone()),
            ipv4_forwarding: Some(self.host.ipv4_forwarding),
            ncpu: Some(self.host.ncpu),
            mem_total: Some(self.host.mem_total),
            index_server_address: Some(crate::registry::INDEX_SERVER_ADDRESS.to_string()),
            registry_config: Some(config.registry.service_config()),
            generic_resources: None,
            http_proxy: Some(proxy("HTTP_PROXY")),
            https_proxy: Some(proxy("HTTPS_PROXY")),
            no_proxy: Some(system::proxy_env("NO_PROXY")),
            name: Some(self.host.hostname.clone()),
            labels: Some(Vec::new()),
            experimental_build: Some(false),
            server_version: Some(VERSION.to_string()),
            runtimes: Some(runtimes),
            default_runtime: Some(runtime::RUNTIME_NAME.to_string()),
            swarm: Some(SwarmInfo {
                node_id: Some(String::new()),
                node_addr: Some(String::new()),
                local_node_state: Some(LocalNodeState::INACTIVE),
                control_available: Some(false),
                error: Some(String::new()),
                remote_managers: None,
                ..Default::default()
            }),
            live_restore_enabled: Some(config.live_restore),
            isolation: None,
            init_binary: Some("docker-init".to_string()),
            containerd_commit: Some(Commit {
                id: Some(String::new()),
            }),
            runc_commit: Some(Commit {
                id: Some(format!("libcontainer v{}", runtime::version())),
            }),
            init_commit: Some(Commit {
                id: Some(String::new()),
            }),
            security_options: Some(security),
            product_license: Some("Apache-2.0".to_string()),
            default_address_pools: None,
            firewall_backend: None,
            discovered_devices: None,
            nri: None,
            warnings: Some(warnings),
            cdi_spec_dirs: Some(Vec::new()),
            containerd: None,
        })
    }

    /// moby's `SystemDiskUsage`: images with shared sizes and how many containers use each,
    /// every container with its sizes, the local volumes without mount options with their
    /// size and reference count. Blocking (directory walks).
    fn system_disk_usage(&self, opts: DiskUsageOptions) -> Result<DiskUsage, SystemError> {
        let list = |size: bool| {
            let all = crate::container::list::ListOptions {
                all: true,
                size,
                ..Default::default()
            };
            self.containers
                .list(&all)
                .map_err(|e| SystemError::new(e.kind(), e.to_string()))
        };
        let containers = if opts.containers {
            Some(list(true)?)
        } else {
            None
        };
        let images = if opts.images {
            let (layers, mut images) = self
                .images
                .disk_usage()
                .map_err(|e| SystemError::new(e.kind(), e.to_string()))?;
            let listed;
            let all = match &containers {
                Some(c) => c,
                None => {
                    listed = list(false)?;
                    &listed
                }
            };
            for i in &mut images {
                i.containers = all
                    .iter()
                    .filter(|c| c.image_id.as_deref() == Some(i.id.as_str()))
                    .count() as i64;
            }
            Some((layers, images))
        } else {
            None
        };
        let volumes = opts.volumes.then(|| self.volumes.disk_usage());
        let build_cache = opts.build_cache.then(|| self.builder.cache_usage());
        Ok(DiskUsage {
            images,
            volumes,
            containers,
            build_cache,
        })
    }
}

/// The container manager's timings and health checks go to the daemon's metrics.
impl crate::container::ManagerMetrics for Metrics {
    fn container_action(&self, action: &'static str, took: std::time::Duration) {
        self.observe_action(action, took.as_secs_f64());
    }

    fn health_check(&self, failed: bool) {
        Metrics::health_check(self, failed);
    }
}

/// What `/metrics` samples at each scrape: the `/version` and `/info` facts, the container
/// counts of `/info`, and each container's record.
impl MetricsSource for Daemon {
    fn engine_info(&self) -> EngineInfo {
        EngineInfo {
            version: VERSION.to_string(),
            commit: GIT_COMMIT.to_string(),
            architecture: self.host.architecture.clone(),
            graphdriver: "overlay2".to_string(),
            kernel: self.host.kernel_version.clone(),
            os: self.host.operating_system.clone(),
            os_type: "linux".to_string(),
            os_version: self.host.os_version.clone(),
            daemon_id: self.engine_id.clone(),
            cpus: self.host.ncpu,
            memory_bytes: self.host.mem_total,
        }
    }

    fn container_states(&self) -> ContainerStates {
        let (_, running, paused, stopped) = self.containers.counts();
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        ContainerStates {
            running: n(running),
            paused: n(paused),
            stopped: n(stopped),
        }
    }

    fn event_subscribers(&self) -> u64 {
        self.events.listeners() as u64
    }

    /// Blocking (called off the async workers): each container's record, and the usage of
    /// the running ones from their cgroup files.
    fn container_samples(&self) -> Vec<ContainerSample> {
        self.containers
            .list_all()
            .iter()
            .map(|c| {
                let usage = self.containers.usage_blocking(c);
                let mut sample = c.with_record(|r| ContainerSample {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    image: r.config.image.clone().unwrap_or_else(|| r.image.clone()),
                    restart_count: u64::try_from(r.restart_count).unwrap_or(0),
                    cpu_seconds: None,
                    memory_usage: None,
                    memory_limit: None,
                    networks: Vec::new(),
                    blkio_read: None,
                    blkio_write: None,
                });
                if let Some(u) = usage {
                    sample.cpu_seconds = Some(u.cpu_seconds);
                    sample.memory_usage = u.memory_usage;
                    sample.memory_limit = u.memory_limit;
                    sample.networks = u
                        .networks
                        .into_iter()
                        .map(|(interface, rx_bytes, tx_bytes)| InterfaceSample {
                            interface,
                            rx_bytes,
                            tx_bytes,
                        })
                        .collect();
                    sample.blkio_read = u.blkio_read;
                    sample.blkio_write = u.blkio_write;
                }
                sample
            })
            .collect()
    }
}

/// The filesystem under the data root, named as dockerd's `DriverStatus` names it.
fn backing_filesystem(path: &Path) -> String {
    use nix::sys::statfs::{
        statfs, BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC,
        XFS_SUPER_MAGIC,
    };
    match statfs(path) {
        Ok(s) => {
            let t = s.filesystem_type();
            if t == EXT4_SUPER_MAGIC {
                "extfs"
            } else if t == XFS_SUPER_MAGIC {
                "xfs"
            } else if t == BTRFS_SUPER_MAGIC {
                "btrfs"
            } else if t == TMPFS_MAGIC {
                "tmpfs"
            } else if t == OVERLAYFS_SUPER_MAGIC {
                "overlayfs"
            } else {
                "<unknown>"
            }
            .to_string()
        }
        Err(_) => "<unknown>".to_string(),
    }
}
