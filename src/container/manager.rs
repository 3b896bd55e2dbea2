//! The container manager: every lifecycle operation, the exit handling that drives waits,
//! restart policies and events, and live restore at start.
//!
//! Each running container has a supervisor process (see `crate::runtime::supervisor`);
//! berthd keeps one `watch` connection to it and learns of the exit from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bollard_stubs::models::{ContainerCreateBody, HostConfig};
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::create::{self, merge_image_config, path_and_args, split_body, verify_host_config};
use super::names;
use super::record::{Record, State, Status};
use super::restart;
use super::ContainerError;
use crate::errors::{ErrorKind, Kinded};
use crate::events::{Event, EventBus};
use crate::image::store::Lease;
use crate::image::ImageService;
use crate::logger::LogConfig;
use crate::runtime::client::{self, RuntimeError};
use crate::runtime::proto::{self, ExitStatus, Request, SupervisorConfig, SupervisorState};
use crate::runtime::{host, spec, supervisor};
use crate::util::fs::{atomic_write, ensure_dir};
use crate::util::rand::random_hex;
use crate::util::time::rfc3339_nano;

/// What the manager needs from the daemon's configuration.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// Absolute cgroup parent, e.g. `/berth`.
    pub cgroup_parent: String,
    /// The binary that runs `__supervise` (berthd itself).
    pub supervisor_exe: PathBuf,
    pub init_path: Option<PathBuf>,
    pub default_log: (String, HashMap<String, String>),
    pub ncpu: i64,
}

/// What waiters see of a container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub running: bool,
    /// Counts the exits (and failed starts) so far.
    pub exits: u64,
    pub exit_code: i64,
    pub error: String,
    pub removed: bool,
}

/// `condition` of `POST /containers/{id}/wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

/// An attach waiting for its container to start.
type PendingAttach = tokio::sync::oneshot::Sender<Option<UnixStream>>;

pub struct Container {
    pub id: String,
    record: Mutex<Record>,
    /// Serialises start, stop, restart, pause and remove.
    op: tokio::sync::Mutex<()>,
    snapshot: watch::Sender<Snapshot>,
    pending_attach: Mutex<Vec<(bool, bool, bool, PendingAttach)>>,
    _lease: Mutex<Option<Lease>>,
    backoff: Mutex<Option<Duration>>,
    started: Mutex<Option<Instant>>,
    /// Bumped on every start, so that an old watcher cannot act on a new run.
    generation: Mutex<u64>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Container {
    pub fn record(&self) -> Record {
        lock(&self.record).clone()
    }

    /// Look at the record without copying it (`docker ps` on many containers).
    pub fn with_record<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&lock(&self.record))
    }

    pub fn status(&self) -> Status {
        lock(&self.record).state.status
    }

    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.subscribe()
    }
}

pub struct ContainerManager {
    cfg: ManagerConfig,
    images: Arc<ImageService>,
    events: Arc<EventBus>,
    containers: RwLock<HashMap<String, Arc<Container>>>,
    /// Name (without `/`) -> ID.
    names: Mutex<HashMap<String, String>>,
    /// Exec instances by ID.
    pub(super) execs: Mutex<super::exec::ExecTable>,
}

/// Parse a signal as Docker accepts it: `SIGKILL`, `KILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, ContainerError> {
    use std::str::FromStr;
    let bad = || ContainerError::invalid(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| bad())
}

impl ContainerManager {
    pub fn new(cfg: ManagerConfig, images: Arc<ImageService>, events: Arc<EventBus>) -> Arc<Self> {
        Arc::new(ContainerManager {
            cfg,
            images,
            events,
            containers: RwLock::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
        })
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        Record::dir(&self.cfg.data_root, id)
    }

    pub(super) fn state_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("c").join(id)
    }

    /// Whether the running container has a seccomp profile (its bundle says so).
    pub(super) fn has_seccomp(&self, id: &str) -> bool {
        oci_spec::runtime::Spec::load(self.state_dir(id).join("config.json"))
            .ok()
            .and_then(|s| s.linux().as_ref().and_then(|l| l.seccomp().clone()))
            .is_some()
    }

    pub(super) fn spec_inputs(&self, r: &Record) -> SpecInputs {
        SpecInputs {
            rootfs: self.rootfs(&r.id),
            hostname: PathBuf::from(&r.hostname_path),
            hosts: PathBuf::from(&r.hosts_path),
            resolv_conf: PathBuf::from(&r.resolv_conf_path),
            cgroup_path: self.cgroup_path(&r.id),
        }
    }

    fn lc_root(&self) -> PathBuf {
        self.cfg.exec_root.join("runtime")
    }

    fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("netns").join(id)
    }

    fn layer_dir(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("layer")
    }

    /// The mounted root filesystem of a container.
    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.layer_dir(id).join("merged")
    }

    /// The writable layer's `diff` directory.
    pub fn upper_dir(&self, id: &str) -> PathBuf {
        self.layer_dir(id).join("diff")
    }

    fn cgroup_path(&self, id: &str) -> String {
        format!("{}/{id}", self.cfg.cgroup_parent.trim_end_matches('/'))
    }

    pub fn image_service(&self) -> &Arc<ImageService> {
        &self.images
    }

    pub fn events_bus(&self) -> &Arc<EventBus> {
        &self.events
    }

    /// Bytes of one image layer's files.
    pub fn image_layer_size(&self, chain_id: &str) -> Option<i64> {
        self.images.store().layer(chain_id).map(|l| l.size as i64)
    }

    /// The network namespace file of a running container.
    pub fn sandbox_key(&self, id: &str) -> String {
        let p = self.netns_path(id);
        if p.exists() {
            p.display().to_string()
        } else {
            String::new()
        }
    }

    pub fn event_for(&self, r: &Record, action: &str) -> Event {
        self.event(r, action)
    }

    pub fn status_of(&self, id: &str) -> Option<Status> {
        self.get(id).ok().map(|c| c.status())
    }

    /// Mount a stopped container's rootfs (for export); the caller unmounts it.
    pub fn mount_for_export(&self, r: &Record) -> Result<(), ContainerError> {
        self.mount_rootfs(r)
    }

    fn all(&self) -> Vec<Arc<Container>> {
        match self.containers.read() {
            Ok(m) => m.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        }
    }

    /// (all, running, paused, stopped) for `/info`.
    pub fn counts(&self) -> (i64, i64, i64, i64) {
        let mut c = (0, 0, 0, 0);
        for x in self.all() {
            c.0 += 1;
            match x.status() {
                Status::Running | Status::Restarting => c.1 += 1,
                Status::Paused => c.2 += 1,
                _ => c.3 += 1,
            }
        }
        c
    }

    pub fn list_all(&self) -> Vec<Arc<Container>> {
        self.all()
    }

    /// Find a container by full ID, name (with or without `/`), or unique ID prefix.
    pub fn get(&self, name: &str) -> Result<Arc<Container>, ContainerError> {
        if name.is_empty() {
            return Err(ContainerError::no_such_container(name));
        }
        let map = match self.containers.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some(c) = map.get(name) {
            return Ok(c.clone());
        }
        let bare = name.strip_prefix('/').unwrap_or(name);
        if let Some(id) = lock(&self.names).get(bare) {
            if let Some(c) = map.get(id) {
                return Ok(c.clone());
            }
        }
        let matches: Vec<&Arc<Container>> =
            map.values().filter(|c| c.id.starts_with(name)).collect();
        match matches.len() {
            1 => Ok(matches[0].clone()),
            0 => Err(ContainerError::no_such_container(name)),
            _ => Err(ContainerError::invalid(format!(
                "multiple IDs found with provided prefix: {name}"
            ))),
        }
    }

    /// The image a container uses, for `docker rmi`'s conflict check: `(container ID,
    /// running)` of one container using `image_id`.
    pub fn image_user(&self, image_id: &str) -> Option<(String, bool)> {
        let mut found = None;
        for c in self.all() {
            let r = lock(&c.record);
            if r.image == image_id {
                let running = r.state.status.is_running();
                if running || found.is_none() {
                    found = Some((r.id.clone(), running));
                }
            }
        }
        found
    }

    fn event(&self, r: &Record, action: &str) -> Event {
        let mut e = Event::new("container", action, r.id.clone())
            .attribute("name", r.name.clone())
            .attribute(
                "image",
                r.config.image.clone().unwrap_or_else(|| r.image.clone()),
            );
        if let Some(labels) = &r.config.labels {
            for (k, v) in labels {
                e = e.attribute(k.clone(), v.clone());
            }
        }
        e
    }

    fn publish(&self, r: &Record, action: &str) {
        self.events.publish(self.event(r, action));
    }

    /// Mutate a container's record and persist it.
    fn update(&self, c: &Container, f: impl FnOnce(&mut Record)) -> Result<Record, ContainerError> {
        let mut r = lock(&c.record);
        f(&mut r);
        r.save(&self.container_dir(&c.id))?;
        Ok(r.clone())
    }

    fn insert(&self, c: Arc<Container>) {
        let name = lock(&c.record).name.clone();
        lock(&self.names).insert(name, c.id.clone());
        match self.containers.write() {
            Ok(mut m) => m.insert(c.id.clone(), c),
            Err(p) => p.into_inner().insert(c.id.clone(), c),
        };
    }

    fn new_container(&self, record: Record) -> Arc<Container> {
        let lease = if record.chain.is_empty() {
            None
        } else {
            Some(self.images.store().lease(&record.chain))
        };
        let snap = Snapshot {
            running: record.state.status.is_running(),
            exits: 0,
            exit_code: record.state.exit_code,
            error: record.state.error.clone(),
            removed: false,
        };
        Arc::new(Container {
            id: record.id.clone(),
            record: Mutex::new(record),
            op: tokio::sync::Mutex::new(()),
            snapshot: watch::channel(snap).0,
            pending_attach: Mutex::new(Vec::new()),
            _lease: Mutex::new(lease),
            backoff: Mutex::new(None),
            started: Mutex::new(None),
            generation: Mutex::new(0),
        })
    }

    // ----- create -----

    /// `POST /containers/create`: returns the ID and warnings.
    pub async fn create(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
    ) -> Result<(String, Vec<String>), ContainerError> {
        let image_name = body.image.clone().unwrap_or_default();
        if image_name.is_empty() {
            return Err(ContainerError::invalid(
                "config cannot be empty in order to create a container",
            ));
        }
        let (mut config, mut host) = split_body(body);
        let image = self.images.get_image(&image_name).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                ContainerError::new(ErrorKind::NotFound, format!("No such image: {image_name}"))
            } else {
                e.into()
            }
        })?;
        let log = verify_host_config(&mut host, self.cfg.ncpu, &self.cfg.default_log)?;
        let _ = log;
        if let Some(run) = &image.config.config {
            merge_image_config(&mut config, run);
        }
        let (path, args) = path_and_args(&config)?;
        let mut warnings = Vec::new();
        if host.memory.unwrap_or(0) > 0
            && !crate::runtime::probe_cgroups().swap_limit
            && host.memory_swap.unwrap_or(0) > 0
        {
            warnings.push("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.".to_string());
        }
        let id = loop {
            let id = random_hex(64);
            // Like dockerd: a short ID that parses as a number would be ambiguous.
            if id[..12].parse::<u64>().is_err() {
                break id;
            }
        };
        let name = self.reserve_name(name, &id)?;
        let result = self.create_files(&id, &name, config, host, path, args, &image);
        match result {
            Ok(record) => {
                let c = self.new_container(record.clone());
                self.insert(c);
                self.publish(&record, "create");
                Ok((id, warnings))
            }
            Err(e) => {
                lock(&self.names).remove(&name);
                let _ = std::fs::remove_dir_all(self.container_dir(&id));
                Err(e)
            }
        }
    }

    /// Take a name (given or generated) for `id`, or Docker's conflict error.
    fn reserve_name(&self, name: Option<String>, id: &str) -> Result<String, ContainerError> {
        let mut names_map = lock(&self.names);
        match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let bare = n.strip_prefix('/').unwrap_or(&n).to_string();
                if !names::valid(&bare) {
                    return Err(ContainerError::invalid(format!(
                        "Invalid container name ({bare}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                if let Some(other) = names_map.get(&bare) {
                    return Err(ContainerError::conflict(format!(
                        "Conflict. The container name \"/{bare}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                    )));
                }
                names_map.insert(bare.clone(), id.to_string());
                Ok(bare)
            }
            None => {
                for retry in 0..10 {
                    let n = names::generate(retry);
                    if !names_map.contains_key(&n) {
                        names_map.insert(n.clone(), id.to_string());
                        return Ok(n);
                    }
                }
                let n = format!("{}_{}", names::generate(1), &id[..6]);
                names_map.insert(n.clone(), id.to_string());
                Ok(n)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create_files(
        &self,
        id: &str,
        name: &str,
        mut config: bollard_stubs::models::ContainerConfig,
        host: HostConfig,
        path: String,
        args: Vec<String>,
        image: &crate::image::store::Image,
    ) -> Result<Record, ContainerError> {
        let dir = self.container_dir(id);
        ensure_dir(&self.cfg.data_root.join("containers"), 0o710)
            .map_err(|e| ContainerError::io("create containers dir", e))?;
        ensure_dir(&dir, 0o710)
            .map_err(|e| ContainerError::io(format!("create {}", dir.display()), e))?;
        let layer = self.layer_dir(id);
        for sub in ["diff", "work", "merged"] {
            ensure_dir(&layer.join(sub), 0o755)
                .map_err(|e| ContainerError::io(format!("create container layer {sub}"), e))?;
        }
        let net = host.network_mode.clone().unwrap_or_default();
        if config.hostname.as_deref().unwrap_or("").is_empty() {
            config.hostname = Some(if net == "host" {
                nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| id[..12].to_string())
            } else {
                id[..12].to_string()
            });
        }
        let hostname = config.hostname.clone().unwrap_or_default();
        let hostname_path = dir.join("hostname");
        let hosts_path = dir.join("hosts");
        let resolv_path = dir.join("resolv.conf");
        let write = |p: &Path, s: &str| {
            atomic_write(p, s.as_bytes(), 0o644)
                .map_err(|e| ContainerError::io(format!("write {}", p.display()), e))
        };
        write(&hostname_path, &format!("{hostname}\n"))?;
        let host_net = net == "host";
        let hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            create::hosts_file(&hostname, host.extra_hosts.as_deref().unwrap_or(&[]))
        };
        write(&hosts_path, &hosts)?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        write(
            &resolv_path,
            &create::resolv_conf(
                &host_resolv,
                host_net,
                host.dns.as_deref().unwrap_or(&[]),
                host.dns_search.as_deref().unwrap_or(&[]),
                host.dns_options.as_deref().unwrap_or(&[]),
            ),
        )?;
        let record = Record {
            id: id.to_string(),
            name: name.to_string(),
            created: rfc3339_nano(SystemTime::now()),
            image: image.id.clone(),
            chain: image.chain.clone(),
            path,
            args,
            config,
            host_config: host,
            state: State::default(),
            restart_count: 0,
            log_path: dir.join(format!("{id}-json.log")).display().to_string(),
            hostname_path: hostname_path.display().to_string(),
            hosts_path: hosts_path.display().to_string(),
            resolv_conf_path: resolv_path.display().to_string(),
        };
        record.save(&dir)?;
        Ok(record)
    }

    // ----- start -----

    /// `POST /containers/{id}/start`: `Ok(false)` when it was already running (304).
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<bool, ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        match c.status() {
            Status::Running => return Ok(false),
            Status::Paused => {
                return Err(ContainerError::conflict(
                    "cannot start a paused container, try unpause instead",
                ))
            }
            Status::Removing | Status::Dead => {
                return Err(ContainerError::conflict(
                    "container is marked for removal and cannot be started",
                ))
            }
            _ => {}
        }
        // A manual start begins a fresh restart-policy history (moby's ResetRestartManager).
        self.update(&c, |r| {
            r.state.manually_stopped = false;
            r.restart_count = 0;
        })?;
        *lock(&c.backoff) = None;
        self.start_locked(&c).await.map(|_| true)
    }

    /// Mount the rootfs, write the bundle, launch the supervisor and start the process.
    async fn start_locked(self: &Arc<Self>, c: &Arc<Container>) -> Result<(), ContainerError> {
        let record = c.record();
        let id = record.id.clone();
        let state_dir = self.state_dir(&id);
        // A supervisor left from a start berthd never recorded (it was killed meanwhile) would
        // hold the netns, the cgroup and libcontainer's state: end it first.
        self.reap_unstarted(&id).await;
        // A new run: the previous run's exec records go.
        self.drop_execs(&id);
        let t0 = Instant::now();
        let prepared = {
            let this = self.clone();
            let record = record.clone();
            let state_dir = state_dir.clone();
            tokio::task::spawn_blocking(move || this.prepare_start(&record, &state_dir))
                .await
                .map_err(|e| ContainerError::internal(format!("prepare task: {e}")))?
        };
        let sup_cfg = match prepared {
            Ok(cfg) => cfg,
            Err(e) => {
                self.fail_start(c, &e, 0);
                return Err(e);
            }
        };
        let t1 = Instant::now();
        let launched =
            client::launch(self.cfg.supervisor_exe.clone(), state_dir.clone(), sup_cfg).await;
        let t2 = Instant::now();
        let pid = match launched {
            Ok(pid) => pid,
            Err(e) => return Err(self.start_error(c, e)),
        };
        // Watch first, so that an exit right after start is not missed; then hand the
        // waiting attach clients their streams; then start.
        let watch = match client::watch(&state_dir).await {
            Ok(w) => w,
            Err(e) => return Err(self.start_error(c, e)),
        };
        let pending: Vec<_> = std::mem::take(&mut *lock(&c.pending_attach));
        for (stdin, stdout, stderr, tx) in pending {
            let stream = client::attach(&state_dir, stdin, stdout, stderr).await.ok();
            let _ = tx.send(stream);
        }
        if let Err(e) = client::request_ok(&state_dir, Request::Start).await {
            // The process failed to exec: the supervisor reports its exit right after.
            return Err(self.start_error(c, e));
        }
        tracing::debug!(
            "start {id}: prepare {:?}, create {:?}, start {:?}",
            t1 - t0,
            t2 - t1,
            t2.elapsed()
        );
        let generation = {
            let mut g = lock(&c.generation);
            *g += 1;
            *g
        };
        *lock(&c.started) = Some(Instant::now());
        let now = rfc3339_nano(SystemTime::now());
        let saved = self.update(c, |r| {
            r.state.status = Status::Running;
            r.state.pid = pid as i64;
            r.state.started_at = now.clone();
            r.state.has_been_started = true;
            r.state.error.clear();
            r.state.exit_code = 0;
            r.state.oom_killed = false;
            r.state.restart_pending = false;
        });
        // The process runs whatever happened to the record: always watch it.
        if let Err(e) = saved {
            tracing::error!("record the start of {id}: {e}");
        }
        c.snapshot.send_modify(|s| {
            s.running = true;
            s.error.clear();
        });
        self.publish(&c.record(), "start");
        self.spawn_watcher(c.clone(), watch, generation);
        Ok(())
    }

    /// Everything before the supervisor: rootfs, resolv.conf & co, the OCI spec.
    fn prepare_start(
        &self,
        r: &Record,
        state_dir: &Path,
    ) -> Result<SupervisorConfig, ContainerError> {
        let id = &r.id;
        let _ = std::fs::remove_dir_all(state_dir);
        ensure_dir(&self.cfg.exec_root.join("c"), 0o700)
            .map_err(|e| ContainerError::io("create exec root", e))?;
        ensure_dir(state_dir, 0o700).map_err(|e| ContainerError::io("create state dir", e))?;
        ensure_dir(&self.cfg.exec_root.join("netns"), 0o700)
            .map_err(|e| ContainerError::io("create netns dir", e))?;
        ensure_dir(&self.lc_root(), 0o700)
            .map_err(|e| ContainerError::io("create runtime dir", e))?;
        // A record left by an earlier supervisor that died would make libcontainer refuse.
        if self.lc_root().join(id).exists() {
            let _ = std::fs::remove_dir_all(self.lc_root().join(id));
        }
        self.mount_rootfs(r)?;
        let rootfs = self.rootfs(id);
        spec::prepare_rootfs(&rootfs, r.config.working_dir.as_deref().unwrap_or(""))?;
        let h = &r.host_config;
        let net_mode = h.network_mode.clone().unwrap_or_default();
        let netns_file = self.netns_path(id);
        let mut joined_net: Option<PathBuf> = None;
        let mut create_netns = None;
        if net_mode == "host" {
        } else if let Some(other) = net_mode.strip_prefix("container:") {
            joined_net = Some(self.namespace_of(other, "net")?);
        } else {
            create_netns = Some(netns_file.clone());
        }
        let ipc_mode = h.ipc_mode.clone().unwrap_or_default();
        let joined_ipc = match ipc_mode.strip_prefix("container:") {
            Some(other) => Some(self.namespace_of(other, "ipc")?),
            None => None,
        };
        let pid_mode = h.pid_mode.clone().unwrap_or_default();
        let joined_pid = match pid_mode.strip_prefix("container:") {
            Some(other) => Some(self.namespace_of(other, "pid")?),
            None => None,
        };
        let ns = |mode: &str, joined: &Option<PathBuf>| -> NsChoice {
            if mode == "host" {
                NsChoice::Host
            } else if let Some(p) = joined {
                NsChoice::Path(p.clone())
            } else {
                NsChoice::Private
            }
        };
        let network = if net_mode == "host" {
            NsChoice::Host
        } else if let Some(p) = joined_net {
            NsChoice::Path(p)
        } else {
            NsChoice::Path(netns_file.clone())
        };
        let ipc = ns(&ipc_mode, &joined_ipc);
        let pid = ns(&pid_mode, &joined_pid);
        let uts = if h.uts_mode.as_deref() == Some("host") {
            NsChoice::Host
        } else {
            NsChoice::Private
        };
        let init_path = if h.init == Some(true) {
            Some(self.init_binary()?)
        } else {
            None
        };
        let inputs = self.spec_inputs(r);
        let cgroup_path = inputs.cgroup_path.clone();
        let opts = inputs.options(
            r,
            [
                network.as_spec(),
                ipc.as_spec(),
                pid.as_spec(),
                uts.as_spec(),
            ],
            init_path.as_deref(),
        );
        let oci = spec::build(&opts)?;
        let json = serde_json::to_vec(&oci)
            .map_err(|e| ContainerError::internal(format!("encode OCI spec: {e}")))?;
        atomic_write(&state_dir.join("config.json"), &json, 0o600)
            .map_err(|e| ContainerError::io("write config.json", e))?;
        let lc = h.log_config.clone().unwrap_or_default();
        let log = LogConfig::from_docker(
            lc.typ.as_deref().unwrap_or("json-file"),
            &lc.config.unwrap_or_default(),
        )
        .map_err(|e| ContainerError::invalid(e.to_string()))?;
        let console_size = h
            .console_size
            .as_ref()
            .filter(|v| v.len() == 2 && v[0] > 0 && v[1] > 0)
            .map(|v| [v[0] as u16, v[1] as u16]);
        Ok(SupervisorConfig {
            id: id.clone(),
            lc_root: self.lc_root(),
            log_path: PathBuf::from(&r.log_path),
            log,
            tty: r.config.tty.unwrap_or(false),
            open_stdin: r.config.open_stdin.unwrap_or(false),
            stdin_once: r.config.stdin_once.unwrap_or(false),
            console_size,
            netns: create_netns,
            cgroup_path,
        })
    }

    /// `/proc/<pid>/ns/<kind>` of another running container (`--network container:x`).
    fn namespace_of(&self, other: &str, kind: &str) -> Result<PathBuf, ContainerError> {
        let c = self.get(other)?;
        let r = c.record();
        if !r.state.status.is_running() {
            return Err(ContainerError::conflict(format!(
                "cannot join network of a non running container: {}",
                r.id
            )));
        }
        if kind == "net" {
            let p = self.netns_path(&r.id);
            if p.exists() {
                return Ok(p);
            }
        }
        Ok(PathBuf::from(format!("/proc/{}/ns/{kind}", r.state.pid)))
    }

    fn init_binary(&self) -> Result<PathBuf, ContainerError> {
        if let Some(p) = &self.cfg.init_path {
            return if p.exists() {
                Ok(p.clone())
            } else {
                Err(ContainerError::invalid(format!(
                    "docker-init binary not found at {}",
                    p.display()
                )))
            };
        }
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        for name in ["docker-init", "tini-static", "tini"] {
            for dir in path.split(':').chain(["/usr/bin", "/usr/local/bin"]) {
                let p = Path::new(dir).join(name);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(ContainerError::invalid(
            "docker-init binary not found in PATH (install tini or set --init-path)",
        ))
    }

    fn mount_rootfs(&self, r: &Record) -> Result<(), ContainerError> {
        let merged = self.rootfs(&r.id);
        if host::is_mounted(&merged) {
            return Ok(());
        }
        let layer = self.layer_dir(&r.id);
        for sub in ["diff", "work", "merged"] {
            ensure_dir(&layer.join(sub), 0o755)
                .map_err(|e| ContainerError::io(format!("create container layer {sub}"), e))?;
        }
        let lowers = match r.chain_id() {
            Some(chain) => self.images.store().lower_dirs(chain)?,
            None => {
                let empty = layer.join("empty");
                ensure_dir(&empty, 0o755)
                    .map_err(|e| ContainerError::io("create empty layer", e))?;
                vec![empty]
            }
        };
        host::mount_overlay(&lowers, &layer.join("diff"), &layer.join("work"), &merged)
            .map_err(|e| ContainerError::io(format!("mount rootfs of {}", r.id), e))
    }

    fn unmount_rootfs(&self, id: &str) {
        if let Err(e) = host::unmount(&self.rootfs(id)) {
            tracing::warn!("unmount rootfs of {id}: {e}");
        }
    }

    /// A start that failed before the process ran: record Docker's exit code and error.
    fn start_error(self: &Arc<Self>, c: &Arc<Container>, e: RuntimeError) -> ContainerError {
        let code = e.exit_code;
        let message = if code != 0 {
            format!(
                "failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: {e}: unknown"
            )
        } else {
            format!("failed to create task for container: {e}")
        };
        let err = ContainerError::new(
            if code != 0 {
                ErrorKind::InvalidParameter
            } else {
                ErrorKind::Internal
            },
            message,
        );
        // A supervisor that got as far as the watch stays until its container exits; ask it
        // to finish.
        let state_dir = self.state_dir(&c.id);
        let sd = state_dir.clone();
        tokio::spawn(async move {
            let _ = client::request(&sd, Request::Kill { signal: 9 }).await;
        });
        self.fail_start(c, &err, if code != 0 { code as i64 } else { 128 });
        err
    }

    fn fail_start(self: &Arc<Self>, c: &Arc<Container>, err: &ContainerError, code: i64) {
        let id = c.id.clone();
        self.unmount_rootfs(&id);
        let msg = err.to_string();
        let r = self.update(c, |r| {
            r.state.status = if r.state.has_been_started {
                Status::Exited
            } else {
                Status::Created
            };
            r.state.exit_code = code;
            r.state.error = msg.clone();
            r.state.pid = 0;
            r.state.restart_pending = false;
        });
        c.snapshot.send_modify(|s| {
            s.running = false;
            s.exits += 1;
            s.exit_code = code;
            s.error = msg.clone();
        });
        for (_, _, _, tx) in std::mem::take(&mut *lock(&c.pending_attach)) {
            let _ = tx.send(None);
        }
        if let Ok(r) = r {
            if r.host_config.auto_remove == Some(true) {
                self.spawn_auto_remove(c.clone());
            }
        }
    }

    // ----- exits -----

    fn spawn_watcher(self: &Arc<Self>, c: Arc<Container>, mut w: client::Watch, generation: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            let status = loop {
                match w.next().await {
                    // The exit status that follows carries OOMKilled.
                    Some(proto::Event::Oom) => {}
                    Some(proto::Event::ExecExited { exec_id, exit_code }) => {
                        this.exec_finished(&exec_id, exit_code as i64)
                    }
                    Some(proto::Event::Exited(s)) => break Some(s),
                    None => break None,
                }
            };
            drop(w);
            let state_dir = this.state_dir(&c.id);
            let status = match status {
                Some(s) => s,
                None => match read_exit(&state_dir) {
                    Some(s) => s,
                    None => {
                        this.end_orphan(&c.id).await;
                        ExitStatus {
                            exit_code: 137,
                            oom_killed: false,
                            finished_at: rfc3339_nano(SystemTime::now()),
                            error: "the container's supervisor exited unexpectedly".to_string(),
                        }
                    }
                },
            };
            if *lock(&c.generation) != generation {
                return;
            }
            this.on_exit(&c, status).await;
        });
    }

    /// The container's process ended: record it, clean up, tell waiters, apply the policy.
    async fn on_exit(self: &Arc<Self>, c: &Arc<Container>, status: ExitStatus) {
        let id = c.id.clone();
        self.finish_execs(&id);
        let ran_for = lock(&c.started).map(|t| t.elapsed()).unwrap_or_default();
        let (policy, max) = c.record().restart_policy();
        let rec = c.record();
        let will_restart = restart::should_restart(
            &policy,
            max,
            rec.restart_count,
            status.exit_code as i64,
            rec.state.manually_stopped,
        ) && rec.state.status != Status::Removing;
        let r = self.update(c, |r| {
            r.state.status = if will_restart {
                Status::Restarting
            } else {
                Status::Exited
            };
            r.state.exit_code = status.exit_code as i64;
            r.state.finished_at = status.finished_at.clone();
            r.state.oom_killed = status.oom_killed;
            r.state.pid = 0;
            r.state.error = status.error.clone();
            r.state.restart_pending = will_restart;
        });
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("record exit of {id}: {e}");
                c.record()
            }
        };
        // Only now that the exit is recorded may exit.json go with the state dir.
        {
            let this = self.clone();
            let id = id.clone();
            let _ = tokio::task::spawn_blocking(move || {
                this.unmount_rootfs(&id);
                let _ = std::fs::remove_dir_all(this.state_dir(&id));
                let _ = host::remove_netns(&this.netns_path(&id));
            })
            .await;
        }
        if status.oom_killed {
            self.publish(&r, "oom");
        }
        self.events.publish(
            self.event(&r, "die")
                .attribute("exitCode", status.exit_code.to_string())
                .attribute("execDuration", ran_for.as_secs().to_string()),
        );
        c.snapshot.send_modify(|s| {
            s.running = false;
            s.exits += 1;
            s.exit_code = status.exit_code as i64;
            s.error = status.error.clone();
        });
        if will_restart {
            let delay = {
                let mut b = lock(&c.backoff);
                let d = restart::next_delay(*b, ran_for);
                *b = Some(d);
                d
            };
            let this = self.clone();
            let c = c.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _op = c.op.lock().await;
                let r = c.record();
                if r.state.status != Status::Restarting || r.state.manually_stopped {
                    return;
                }
                let _ = this.update(&c, |r| r.restart_count += 1);
                if let Err(e) = this.start_locked(&c).await {
                    tracing::warn!("restart {}: {e}", c.id);
                }
            });
        } else if r.host_config.auto_remove == Some(true) {
            self.spawn_auto_remove(c.clone());
        }
    }

    fn spawn_auto_remove(self: &Arc<Self>, c: Arc<Container>) {
        let this = self.clone();
        tokio::spawn(async move {
            let _op = c.op.lock().await;
            if let Err(e) = this.remove_locked(&c, false).await {
                tracing::warn!("auto-remove {}: {e}", c.id);
            }
        });
    }

    // ----- stop, kill, restart -----

    /// Wait until the container is not running, at most `timeout`.
    async fn wait_stopped(c: &Container, timeout: Option<Duration>) -> bool {
        let mut rx = c.subscribe();
        let done = async {
            loop {
                if !rx.borrow_and_update().running {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, done).await.is_ok(),
            None => {
                done.await;
                true
            }
        }
    }

    async fn signal(
        &self,
        c: &Container,
        sig: nix::sys::signal::Signal,
    ) -> Result<(), ContainerError> {
        let state_dir = self.state_dir(&c.id);
        match client::request_ok(&state_dir, Request::Kill { signal: sig as i32 }).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_gone() => Err(ContainerError::not_running(&c.id)),
            Err(e) => {
                if e.to_string().contains("not running") {
                    Err(ContainerError::not_running(&c.id))
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// `POST /containers/{id}/stop`: `Ok(false)` when it was not running (304).
    pub async fn stop(
        self: &Arc<Self>,
        name: &str,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<bool, ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, signal, timeout).await
    }

    async fn stop_locked(
        self: &Arc<Self>,
        c: &Arc<Container>,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<bool, ContainerError> {
        let r = c.record();
        if r.state.status == Status::Restarting {
            // Stopping a container that waits for its restart cancels the restart.
            let r = self.update(c, |r| {
                r.state.manually_stopped = true;
                r.state.status = Status::Exited;
                r.state.restart_pending = false;
            })?;
            // Followers of the logs end now.
            c.snapshot.send_modify(|s| s.running = false);
            self.publish(&r, "stop");
            return Ok(true);
        }
        if !r.state.status.is_running() {
            return Ok(false);
        }
        let sig = match signal
            .filter(|s| !s.is_empty())
            .or(r.config.stop_signal.clone())
        {
            Some(s) => parse_signal(&s)?,
            None => nix::sys::signal::Signal::SIGTERM,
        };
        let timeout = timeout.or(r.config.stop_timeout).unwrap_or(10);
        self.update(c, |r| r.state.manually_stopped = true)?;
        if timeout != 0 {
            self.events.publish(
                self.event(&r, "kill")
                    .attribute("signal", (sig as i32).to_string()),
            );
            let _ = self.signal(c, sig).await;
        }
        // As dockerd 28: a paused container is signalled, then thawed so that it can act.
        if r.state.status == Status::Paused {
            self.resume_after_signal(c).await;
        }
        let wait = if timeout < 0 {
            None
        } else {
            Some(Duration::from_secs(timeout as u64))
        };
        if timeout == 0 || !Self::wait_stopped(c, wait).await {
            self.events
                .publish(self.event(&r, "kill").attribute("signal", "9"));
            let _ = self.signal(c, nix::sys::signal::Signal::SIGKILL).await;
            Self::wait_stopped(c, None).await;
        }
        self.publish(&c.record(), "stop");
        Ok(true)
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(
        self: &Arc<Self>,
        name: &str,
        signal: Option<String>,
    ) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => parse_signal(&s)?,
            None => nix::sys::signal::Signal::SIGKILL,
        };
        let r = c.record();
        if !r.state.status.is_running() {
            return Err(ContainerError::conflict(format!(
                "Cannot kill container: {name}: Container {} is not running",
                r.id
            )));
        }
        let stop_sig = r
            .config
            .stop_signal
            .as_deref()
            .and_then(|s| parse_signal(s).ok())
            .unwrap_or(nix::sys::signal::Signal::SIGTERM);
        if sig == nix::sys::signal::Signal::SIGKILL || sig == stop_sig {
            self.update(&c, |r| r.state.manually_stopped = true)?;
        }
        self.events.publish(
            self.event(&r, "kill")
                .attribute("signal", (sig as i32).to_string()),
        );
        self.signal(&c, sig).await.map_err(|e| {
            if e.kind() == ErrorKind::Conflict {
                ContainerError::conflict(format!(
                    "Cannot kill container: {name}: Container {} is not running",
                    r.id
                ))
            } else {
                e
            }
        })?;
        if r.state.status == Status::Paused {
            self.resume_after_signal(&c).await;
        }
        if sig == nix::sys::signal::Signal::SIGKILL {
            // dockerd returns once a SIGKILLed container is gone.
            Self::wait_stopped(&c, Some(Duration::from_secs(10))).await;
        }
        Ok(())
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(
        self: &Arc<Self>,
        name: &str,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, signal, timeout).await?;
        self.update(&c, |r| r.state.manually_stopped = false)?;
        self.start_locked(&c).await?;
        self.publish(&c.record(), "restart");
        Ok(())
    }

    // ----- wait -----

    /// `POST /containers/{id}/wait`: resolves to `(exit code, error)` when the condition holds.
    pub fn wait(
        self: &Arc<Self>,
        name: &str,
        condition: WaitCondition,
    ) -> Result<impl std::future::Future<Output = (i64, String)> + Send + 'static, ContainerError>
    {
        let c = self.get(name)?;
        let mut rx = c.subscribe();
        let start = rx.borrow().clone();
        Ok(async move {
            loop {
                let s = rx.borrow_and_update().clone();
                let done = match condition {
                    WaitCondition::NotRunning => !s.running,
                    WaitCondition::NextExit => s.exits > start.exits,
                    WaitCondition::Removed => s.removed,
                };
                if done {
                    return (s.exit_code, s.error);
                }
                if rx.changed().await.is_err() {
                    let s = rx.borrow().clone();
                    return (s.exit_code, s.error);
                }
            }
        })
    }

    // ----- remove -----

    /// `DELETE /containers/{id}`.
    pub async fn remove(self: &Arc<Self>, name: &str, force: bool) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        self.remove_locked(&c, force).await
    }

    async fn remove_locked(
        self: &Arc<Self>,
        c: &Arc<Container>,
        force: bool,
    ) -> Result<(), ContainerError> {
        let r = c.record();
        if r.state.status == Status::Removing {
            return Err(ContainerError::conflict(format!(
                "removal of container {} is already in progress",
                r.id
            )));
        }
        if r.state.status == Status::Restarting && !force {
            return Err(ContainerError::conflict(format!(
                "cannot remove container \"/{}\": container is restarting: stop the container before removing or force remove",
                r.name
            )));
        }
        if r.state.status.is_running() {
            if !force {
                return Err(ContainerError::conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    r.name
                )));
            }
            self.update(c, |r| r.state.manually_stopped = true)?;
            if r.state.status == Status::Paused {
                let _ = client::request(&self.state_dir(&c.id), Request::Resume).await;
            }
            self.events
                .publish(self.event(&r, "kill").attribute("signal", "9"));
            let _ = self.signal(c, nix::sys::signal::Signal::SIGKILL).await;
            Self::wait_stopped(c, Some(Duration::from_secs(30))).await;
        }
        let r = self.update(c, |r| {
            r.state.status = Status::Removing;
            r.state.restart_pending = false;
        })?;
        let this = self.clone();
        let id = c.id.clone();
        tokio::task::spawn_blocking(move || {
            this.unmount_rootfs(&id);
            let _ = host::remove_netns(&this.netns_path(&id));
            let _ = std::fs::remove_dir_all(this.state_dir(&id));
            // The record first: a crash half-way leaves no record pointing at missing files.
            let dir = this.container_dir(&id);
            let _ = std::fs::remove_file(Record::file(&dir));
            crate::util::tree::remove_all(&dir);
        })
        .await
        .map_err(|e| ContainerError::internal(format!("remove task: {e}")))?;
        match self.containers.write() {
            Ok(mut m) => m.remove(&c.id),
            Err(p) => p.into_inner().remove(&c.id),
        };
        {
            let mut names_map = lock(&self.names);
            if names_map.get(&r.name) == Some(&c.id) {
                names_map.remove(&r.name);
            }
        }
        *lock(&c._lease) = None;
        self.drop_execs(&c.id);
        for (_, _, _, tx) in std::mem::take(&mut *lock(&c.pending_attach)) {
            let _ = tx.send(None);
        }
        c.snapshot.send_modify(|s| s.removed = true);
        self.publish(&r, "destroy");
        Ok(())
    }

    // ----- pause, rename -----

    pub async fn pause(self: &Arc<Self>, name: &str, pause: bool) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        let r = c.record();
        match (pause, r.state.status) {
            (_, s) if !s.is_running() => return Err(ContainerError::not_running(&r.id)),
            (true, Status::Paused) => {
                return Err(ContainerError::conflict(format!(
                    "Container {} is already paused",
                    r.id
                )))
            }
            (false, Status::Running) => {
                return Err(ContainerError::conflict(format!(
                    "Container {} is not paused",
                    r.id
                )))
            }
            _ => {}
        }
        let req = if pause {
            Request::Pause
        } else {
            Request::Resume
        };
        client::request_ok(&self.state_dir(&c.id), req).await?;
        let r = self.update(&c, |r| {
            r.state.status = if pause {
                Status::Paused
            } else {
                Status::Running
            };
        })?;
        self.publish(&r, if pause { "pause" } else { "unpause" });
        Ok(())
    }

    pub fn rename(&self, name: &str, new_name: &str) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        let new_bare = new_name.strip_prefix('/').unwrap_or(new_name).to_string();
        if new_bare.is_empty() {
            return Err(ContainerError::invalid(
                "Neither old nor new names may be empty",
            ));
        }
        if !names::valid(&new_bare) {
            return Err(ContainerError::invalid(format!(
                "Invalid container name ({new_bare}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let old = c.record().name;
        if old == new_bare {
            return Err(ContainerError::invalid(
                "Renaming a container with the same name as its current name",
            ));
        }
        {
            let mut names_map = lock(&self.names);
            if let Some(other) = names_map.get(&new_bare) {
                return Err(ContainerError::conflict(format!(
                    "Conflict. The container name \"/{new_bare}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            names_map.insert(new_bare.clone(), c.id.clone());
            names_map.remove(&old);
        }
        let r = self.update(&c, |r| r.name = new_bare.clone())?;
        self.events.publish(
            self.event(&r, "rename")
                .attribute("oldName", format!("/{old}")),
        );
        Ok(())
    }

    /// The supervisor's view of a running container (pid, paused).
    pub async fn runtime_state(&self, c: &Container) -> Option<SupervisorState> {
        client::request(&self.state_dir(&c.id), Request::State)
            .await
            .ok()
            .and_then(|r| r.state)
    }

    /// `POST /containers/{id}/update`: the new host config is stored and, for a running
    /// container, its resources are applied to the cgroup at once.
    pub async fn update_config(
        self: &Arc<Self>,
        name: &str,
        upd: bollard_stubs::models::ContainerUpdateBody,
    ) -> Result<Vec<String>, ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        let mut h = c.record().host_config;
        super::inspect::apply_update(&mut h, &upd);
        let mut check = h.clone();
        verify_host_config(&mut check, self.cfg.ncpu, &self.cfg.default_log)?;
        if h.auto_remove == Some(true)
            && upd
                .restart_policy
                .as_ref()
                .and_then(|p| p.name.as_ref())
                .is_some_and(|n| n.to_string() != "no" && !n.to_string().is_empty())
        {
            return Err(ContainerError::invalid(
                "Restart policy cannot be updated because AutoRemove is enabled for the container",
            ));
        }
        let r = c.record();
        if r.state.status.is_running() {
            let mut rec = r.clone();
            rec.host_config = h.clone();
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.apply_resources(&rec))
                .await
                .map_err(|e| ContainerError::internal(format!("update task: {e}")))??;
        }
        let r = self.update(&c, |r| r.host_config = h)?;
        self.publish(&r, "update");
        Ok(Vec::new())
    }

    fn apply_resources(&self, r: &Record) -> Result<(), ContainerError> {
        // Only the resources are used: the namespaces do not matter here.
        let inputs = self.spec_inputs(r);
        let opts = inputs.options(r, [0; 4].map(|_| spec::Namespace::Host), None);
        let oci = spec::build(&opts)?;
        crate::runtime::update_resources(&self.cgroup_path(&r.id), &oci)
            .map_err(ContainerError::internal)
    }

    /// `GET /containers/{id}/top`: `ps` on the host, limited to the container's processes.
    pub async fn top(
        &self,
        name: &str,
        ps_args: Option<String>,
    ) -> Result<(Vec<String>, Vec<Vec<String>>), ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        if !r.state.status.is_running() {
            return Err(ContainerError::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        let pids = crate::runtime::cgroup_pids(&self.cgroup_path(&r.id));
        let args = ps_args
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "-ef".to_string());
        let out = tokio::process::Command::new("ps")
            .args(args.split_whitespace())
            .output()
            .await
            .map_err(|e| ContainerError::internal(format!("run ps: {e}")))?;
        if !out.status.success() {
            return Err(ContainerError::internal(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        super::inspect::parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }

    /// Thaw a paused container that was just signalled (so that it can act on the signal).
    async fn resume_after_signal(&self, c: &Container) {
        if client::request_ok(&self.state_dir(&c.id), Request::Resume)
            .await
            .is_ok()
        {
            if let Ok(r) = self.update(c, |r| {
                if r.state.status == Status::Paused {
                    r.state.status = Status::Running;
                }
            }) {
                self.publish(&r, "unpause");
            }
        }
    }

    /// A supervisor that died without recording an exit: kill its container if the recorded
    /// pid is still that process, and clear libcontainer's state and the cgroup.
    async fn end_orphan(&self, id: &str) {
        let state_dir = self.state_dir(id);
        if let Some(st) = read_state(&state_dir) {
            if host::same_process(st.pid, st.start_time) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(st.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let lc_root = self.lc_root();
        let id = id.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            crate::runtime::remove_stale_container(&lc_root, &id)
        })
        .await;
    }

    /// A client detached with the detach keys.
    pub fn detached(&self, name: &str) {
        if let Ok(c) = self.get(name) {
            self.publish(&c.record(), "detach");
        }
    }

    /// `POST /containers/{id}/resize`: the TTY's new size.
    pub async fn resize(&self, name: &str, height: u16, width: u16) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        if !c.status().is_running() {
            return Err(ContainerError::not_running(&c.id));
        }
        client::request_ok(
            &self.state_dir(&c.id),
            Request::Resize {
                height,
                width,
                exec: None,
            },
        )
        .await?;
        self.events.publish(
            self.event(&c.record(), "resize")
                .attribute("height", height.to_string())
                .attribute("width", width.to_string()),
        );
        Ok(())
    }

    // ----- attach & logs -----

    /// The supervisor stream of an attach: at once for a running container, at start for a
    /// created one. Resolves to `None` if the container ends or goes first.
    pub async fn attach(
        self: &Arc<Self>,
        name: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(bool, tokio::sync::oneshot::Receiver<Option<UnixStream>>), ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        let tty = r.config.tty.unwrap_or(false);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Register under the op lock so that a concurrent start either sees us or has
        // already made the supervisor reachable.
        {
            let _op = c.op.lock().await;
            self.publish(&r, "attach");
            if !c.status().is_running() {
                lock(&c.pending_attach).push((stdin, stdout, stderr, tx));
                return Ok((tty, rx));
            }
        }
        // Running: connect outside the lock (a supervisor that went meanwhile just ends
        // the stream).
        let s = client::attach(&self.state_dir(&c.id), stdin, stdout, stderr)
            .await
            .ok();
        let _ = tx.send(s);
        Ok((tty, rx))
    }

    /// Whether the container has a TTY, and its log config and path, for `docker logs`.
    pub fn log_source(
        &self,
        name: &str,
    ) -> Result<(Arc<Container>, bool, LogConfig, PathBuf), ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        let lc = r.host_config.log_config.clone().unwrap_or_default();
        let cfg = LogConfig::from_docker(
            lc.typ.as_deref().unwrap_or("json-file"),
            &lc.config.unwrap_or_default(),
        )
        .map_err(|e| ContainerError::invalid(e.to_string()))?;
        if !cfg.readable() {
            return Err(ContainerError::new(
                ErrorKind::NotImplemented,
                "configured logging driver does not support reading".to_string(),
            ));
        }
        Ok((
            c.clone(),
            r.config.tty.unwrap_or(false),
            cfg,
            PathBuf::from(r.log_path),
        ))
    }

    // ----- restore -----

    /// Load every container from disk and reattach to the running ones.
    pub async fn restore(self: &Arc<Self>) {
        let dir = self.cfg.data_root.join("containers");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(_) => return,
        };
        let mut loaded = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            match Record::load(&path) {
                Ok(r) => loaded.push(r),
                Err(err) => {
                    tracing::warn!("skip container {}: {err}", path.display());
                    // A container whose record was never written (crash during create).
                    if !Record::file(&path).exists() {
                        crate::util::tree::remove_all(&path);
                    }
                }
            }
        }
        for r in loaded {
            let c = self.new_container(r.clone());
            self.insert(c.clone());
            match r.state.status {
                Status::Running | Status::Paused => self.reattach(c).await,
                Status::Restarting if r.state.manually_stopped => {
                    let _ = self.update(&c, |r| {
                        r.state.status = Status::Exited;
                        r.state.restart_pending = false;
                    });
                    self.reap_unstarted(&r.id).await;
                }
                Status::Restarting => {
                    let this = self.clone();
                    tokio::spawn(async move {
                        let _op = c.op.lock().await;
                        let _ = this.update(&c, |r| r.restart_count += 1);
                        if let Err(e) = this.start_locked(&c).await {
                            tracing::warn!("restart {}: {e}", c.id);
                        }
                    });
                }
                Status::Removing => {
                    let this = self.clone();
                    tokio::spawn(async move {
                        let _op = c.op.lock().await;
                        let _ = this.update(&c, |r| r.state.status = Status::Dead);
                        let _ = this.remove_locked(&c, true).await;
                    });
                }
                _ => {
                    self.reap_unstarted(&r.id).await;
                    // An auto-remove container that ended just before berthd did.
                    if r.state.status == Status::Exited && r.host_config.auto_remove == Some(true) {
                        self.spawn_auto_remove(c);
                    }
                }
            }
        }
    }

    /// A container recorded as not running may still have a supervisor: berthd died between
    /// launching it and recording the start. End it (its init never ran the command) and clean
    /// up after it.
    async fn reap_unstarted(&self, id: &str) {
        let state_dir = self.state_dir(id);
        if state_dir.exists() {
            if client::request(&state_dir, Request::Kill { signal: 9 })
                .await
                .is_ok()
            {
                for _ in 0..50 {
                    if read_exit(&state_dir).is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            }
            let _ = std::fs::remove_dir_all(&state_dir);
        }
        if host::is_mounted(&self.rootfs(id)) {
            self.unmount_rootfs(id);
        }
    }

    async fn reattach(self: &Arc<Self>, c: Arc<Container>) {
        let state_dir = self.state_dir(&c.id);
        match client::watch(&state_dir).await {
            Ok(w) => {
                let generation = {
                    let mut g = lock(&c.generation);
                    *g += 1;
                    *g
                };
                if let Some(st) = self.runtime_state(&c).await {
                    if st.paused != (c.status() == Status::Paused) {
                        let _ = self.update(&c, |r| {
                            r.state.status = if st.paused {
                                Status::Paused
                            } else {
                                Status::Running
                            };
                        });
                    }
                }
                tracing::info!("reattached to container {}", c.id);
                self.spawn_watcher(c, w, generation);
            }
            Err(_) => {
                // The supervisor is gone: it recorded the exit, or it died with the container.
                let status = match read_exit(&state_dir) {
                    Some(s) => s,
                    None => {
                        self.end_orphan(&c.id).await;
                        ExitStatus {
                            exit_code: 137,
                            oom_killed: false,
                            finished_at: rfc3339_nano(SystemTime::now()),
                            error: "the container's supervisor exited while berthd was down"
                                .to_string(),
                        }
                    }
                };
                self.on_exit(&c, status).await;
            }
        }
    }
}

/// The host paths a container's OCI spec refers to (the spec options borrow them).
pub(super) struct SpecInputs {
    rootfs: PathBuf,
    hostname: PathBuf,
    hosts: PathBuf,
    resolv_conf: PathBuf,
    pub(super) cgroup_path: String,
}

impl SpecInputs {
    /// The options for `spec::build` / `spec::exec_process`; `ns` is network, ipc, pid, uts.
    pub(super) fn options<'a>(
        &'a self,
        r: &'a Record,
        ns: [spec::Namespace<'a>; 4],
        init_path: Option<&'a Path>,
    ) -> spec::SpecOptions<'a> {
        let [network, ipc, pid, uts] = ns;
        spec::SpecOptions {
            id: &r.id,
            config: &r.config,
            host_config: &r.host_config,
            rootfs: &self.rootfs,
            hostname_path: &self.hostname,
            hosts_path: &self.hosts,
            resolv_conf_path: &self.resolv_conf,
            network,
            ipc,
            pid,
            uts,
            cgroup_path: self.cgroup_path.clone(),
            cgroup_version: crate::runtime::cgroup_version(),
            init_path,
        }
    }
}

/// A namespace choice owning its path (the spec options borrow it).
pub(super) enum NsChoice {
    Private,
    Host,
    Path(PathBuf),
}

impl NsChoice {
    pub(super) fn as_spec(&self) -> spec::Namespace<'_> {
        match self {
            NsChoice::Private => spec::Namespace::Private,
            NsChoice::Host => spec::Namespace::Host,
            NsChoice::Path(p) => spec::Namespace::Path(p),
        }
    }
}

fn read_exit(state_dir: &Path) -> Option<ExitStatus> {
    let b = std::fs::read(supervisor::exit_path(state_dir)).ok()?;
    serde_json::from_slice(&b).ok()
}

fn read_state(state_dir: &Path) -> Option<SupervisorState> {
    let b = std::fs::read(supervisor::state_path(state_dir)).ok()?;
    serde_json::from_slice(&b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGKILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("usr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse_signal("15").unwrap(), Signal::SIGTERM);
        assert_eq!(
            parse_signal("NOPE").unwrap_err().to_string(),
            "Invalid signal: NOPE"
        );
    }
}
