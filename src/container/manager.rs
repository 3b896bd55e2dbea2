//! The container manager's core: the table of containers, lookup by ID, name or prefix,
//! update-and-persist of records and publishing their events. Each operation has its own
//! file beside this one (youki's lifecycle split): `create`, `start`, `stop`, `remove`,
//! `pause`, `monitor` (exits, restart policy, wait), `restore`, `attach`, `exec`, `logs`,
//! `update`, and `ops` (inspect, list, changes, export, prune).
//!
//! Each running container has a supervisor process (see `crate::runtime::supervisor`);
//! berthd keeps one `watch` connection to it and learns of the exit from it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::record::{Record, Status};
use super::ContainerError;
use crate::events::{Event, EventBus};
use crate::image::store::Lease;
use crate::image::ImageService;
use crate::runtime::{Runtime, StdioConn};
use crate::volume::VolumeService;

/// What the manager needs from the daemon's configuration.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub data_root: PathBuf,
    pub init_path: Option<PathBuf>,
    pub default_log: (String, HashMap<String, String>),
    pub ncpu: i64,
    /// `--userns-remap`: the host ids container root maps to (`None`: no remapping).
    pub userns_remap: Option<crate::runtime::IdMap>,
}

/// What the manager reports to the daemon's metrics: moby's `container_actions` timings
/// (`create`, `start`, `delete`, `commit`, `changes`) and health check counts.
pub trait ManagerMetrics: Send + Sync {
    fn container_action(&self, action: &'static str, took: Duration);
    /// One health probe ran; `failed`: it could not run at all (not: the check failed).
    fn health_check(&self, failed: bool);
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
pub(super) type PendingAttach = tokio::sync::oneshot::Sender<Option<StdioConn>>;

/// A container's record and its generation. Reading gives `&Record`; the only way to change
/// it is [`RecordCell::write`], which bumps the generation, so a cached view of the record
/// (`docker ps`'s serialised summary, `list::Fragment`) cannot outlive a change: it is kept
/// with the generation it was built from and used only while that still holds.
/// The name of the trash directory among the containers' directories; no container ID
/// starts with a dot.
pub(super) const TRASH: &str = ".trash";

pub struct RecordCell {
    inner: Mutex<Versioned>,
}

struct Versioned {
    record: Record,
    generation: u64,
    /// `docker ps`'s summary of this generation, per variant (`list::Variant`).
    summary: [Option<(u64, u64, Arc<super::list::Fragment>)>; super::list::VARIANTS],
}

/// Read access to a record: no `DerefMut`, so nothing can change it unseen.
pub struct RecordRead<'a>(MutexGuard<'a, Versioned>);

/// Write access to a record; taking it has already bumped the generation.
pub struct RecordWrite<'a>(MutexGuard<'a, Versioned>);

impl std::ops::Deref for RecordRead<'_> {
    type Target = Record;
    fn deref(&self) -> &Record {
        &self.0.record
    }
}

impl RecordRead<'_> {
    pub fn generation(&self) -> u64 {
        self.0.generation
    }

    /// The cached summary of `variant`, if it was built from this generation, when the image
    /// store's references were at `refs` (they decide the `Image` it shows).
    pub(super) fn cached_summary(
        &self,
        variant: usize,
        refs: u64,
    ) -> Option<Arc<super::list::Fragment>> {
        match self.0.summary.get(variant)? {
            Some((g, r, f)) if *g == self.0.generation && *r == refs => Some(f.clone()),
            _ => None,
        }
    }

    /// Keep `f`, built from this generation's record (under this same lock) with the image
    /// references at `refs`.
    pub(super) fn store_summary(
        &mut self,
        variant: usize,
        refs: u64,
        f: Arc<super::list::Fragment>,
    ) {
        let g = self.0.generation;
        if let Some(slot) = self.0.summary.get_mut(variant) {
            *slot = Some((g, refs, f));
        }
    }
}

impl std::ops::Deref for RecordWrite<'_> {
    type Target = Record;
    fn deref(&self) -> &Record {
        &self.0.record
    }
}

impl std::ops::DerefMut for RecordWrite<'_> {
    fn deref_mut(&mut self) -> &mut Record {
        &mut self.0.record
    }
}

impl RecordCell {
    pub fn new(record: Record) -> Self {
        RecordCell {
            inner: Mutex::new(Versioned {
                record,
                generation: 0,
                summary: Default::default(),
            }),
        }
    }

    pub fn read(&self) -> RecordRead<'_> {
        RecordRead(lock(&self.inner))
    }

    /// Change the record: the generation is bumped before the caller sees it.
    pub fn write(&self) -> RecordWrite<'_> {
        let mut g = lock(&self.inner);
        g.generation = g.generation.wrapping_add(1);
        g.summary = Default::default();
        RecordWrite(g)
    }

    /// Something shown with the record but kept elsewhere changed (the run's network
    /// endpoints and published ports, which the network service holds).
    pub fn touch(&self) {
        drop(self.write());
    }

    pub fn generation(&self) -> u64 {
        lock(&self.inner).generation
    }
}

pub struct Container {
    pub id: String,
    /// When it was created (Unix nanoseconds), which never changes: `docker ps` sorts by it
    /// without reading records.
    pub(super) created_at: i128,
    /// Whether it has legacy links (`HostConfig.Links`, set at create only), which give other
    /// containers more names in `docker ps`.
    pub(super) has_links: bool,
    pub(super) record: RecordCell,
    /// Serialises start, stop, restart, pause and remove.
    pub(super) op: tokio::sync::Mutex<()>,
    pub(super) snapshot: watch::Sender<Snapshot>,
    pub(super) pending_attach: Mutex<Vec<(bool, bool, bool, PendingAttach)>>,
    pub(super) _lease: Mutex<Option<Lease>>,
    pub(super) backoff: Mutex<Option<Duration>>,
    pub(super) started: Mutex<Option<Instant>>,
    /// Bumped on every start, so that an old watcher cannot act on a new run.
    pub(super) generation: Mutex<u64>,
    /// The running health monitor's stop handle (dropping it stops the monitor).
    pub(super) health: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Container {
    pub fn record(&self) -> Record {
        self.record.read().clone()
    }

    /// Look at the record without copying it (`docker ps` on many containers).
    pub fn with_record<T>(&self, f: impl FnOnce(&Record) -> T) -> T {
        f(&self.record.read())
    }

    pub fn status(&self) -> Status {
        self.record.read().state.status
    }

    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.subscribe()
    }
}

pub struct ContainerManager {
    pub(super) cfg: ManagerConfig,
    /// Every call into the runtime (supervisors, bundles, cgroups) goes through it.
    pub(super) runtime: Arc<Runtime>,
    pub(super) images: Arc<ImageService>,
    pub(super) volumes: Arc<VolumeService>,
    pub(super) network: Arc<crate::network::service::NetworkService>,
    pub(super) events: Arc<EventBus>,
    pub(super) containers: RwLock<HashMap<String, Arc<Container>>>,
    /// Name (without `/`) -> ID.
    pub(super) names: Mutex<HashMap<String, String>>,
    /// Exec instances by ID.
    pub(super) execs: Mutex<super::exec::ExecTable>,
    /// Where timings and health check counts go, once the daemon has set it.
    pub(super) metrics: std::sync::OnceLock<Arc<dyn ManagerMetrics>>,
}

impl ContainerManager {
    pub fn new(
        cfg: ManagerConfig,
        runtime: Arc<Runtime>,
        images: Arc<ImageService>,
        volumes: Arc<VolumeService>,
        network: Arc<crate::network::service::NetworkService>,
        events: Arc<EventBus>,
    ) -> Arc<Self> {
        Arc::new(ContainerManager {
            cfg,
            runtime,
            volumes,
            network,
            images,
            events,
            containers: RwLock::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// Report timings and health checks to `metrics` from now on.
    pub fn set_metrics(&self, metrics: Arc<dyn ManagerMetrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// A successful `action` that began at `since`.
    pub(super) fn observe(&self, action: &'static str, since: Instant) {
        if let Some(m) = self.metrics.get() {
            m.container_action(action, since.elapsed());
        }
    }

    pub(super) fn container_dir(&self, id: &str) -> PathBuf {
        Record::dir(&self.cfg.data_root, id)
    }

    /// Where removed containers' directories wait for their files to be removed
    /// ([`crate::util::tree::move_to_trash`]): inside `containers`, which berthd binds on
    /// itself ([`crate::runtime::subtree`]), so that the rename stays within one mount.
    pub(super) fn trash_dir(&self) -> PathBuf {
        self.cfg.data_root.join("containers").join(TRASH)
    }

    pub(super) fn layer_dir(&self, id: &str) -> PathBuf {
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
        self.runtime.sandbox_key(id)
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

    pub(super) fn all(&self) -> Vec<Arc<Container>> {
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
            0 => {
                drop(map);
                self.linked(bare)
                    .ok_or_else(|| ContainerError::no_such_container(name))
            }
            _ => Err(ContainerError::invalid(format!(
                "multiple IDs found with provided prefix: {name}"
            ))),
        }
    }

    /// A legacy link's name, `<parent>/<alias>` (dockerd registers `/<parent>/<alias>` as
    /// a name of the linked container): the linked container.
    fn linked(&self, name: &str) -> Option<Arc<Container>> {
        let (parent, alias) = name.rsplit_once('/')?;
        if parent.is_empty() || alias.is_empty() {
            return None;
        }
        let parent = self.get(parent).ok()?;
        if !parent.has_links {
            return None;
        }
        self.links_of(&parent.record())
            .into_iter()
            .find(|(_, a)| a == alias)
            .map(|(c, _)| c)
    }

    /// The image a container uses, for `docker rmi`'s conflict check: `(container ID,
    /// running)` of one container using `image_id`.
    pub fn image_user(&self, image_id: &str) -> Option<(String, bool)> {
        let mut found = None;
        for c in self.all() {
            let r = c.record.read();
            if r.image == image_id {
                let running = r.state.status.is_running();
                if running || found.is_none() {
                    found = Some((r.id.clone(), running));
                }
            }
        }
        found
    }

    /// A container event with moby's attributes: the labels, then `image` (as configured)
    /// and `name`, which win over labels of those names.
    pub(super) fn event(&self, r: &Record, action: &str) -> Event {
        let mut e = Event::new("container", action, r.id.clone());
        if let Some(labels) = &r.config.labels {
            for (k, v) in labels {
                e = e.attribute(k.clone(), v.clone());
            }
        }
        let image = r.config.image.clone().unwrap_or_else(|| r.image.clone());
        if !image.is_empty() {
            e = e.attribute("image", image);
        }
        e.attribute("name", r.name.clone())
    }

    pub(super) fn publish(&self, r: &Record, action: &str) {
        self.events.publish(self.event(r, action));
    }

    /// Mutate a container's record in memory only: for a state that must not outlive berthd
    /// (a removal's `removing`, which a crash leaves undone as a whole).
    pub(super) fn update_unsaved(&self, c: &Container, f: impl FnOnce(&mut Record)) -> Record {
        let mut r = c.record.write();
        f(&mut r);
        r.clone()
    }

    /// Mutate a container's record and persist it.
    pub(super) fn update(
        &self,
        c: &Container,
        f: impl FnOnce(&mut Record),
    ) -> Result<Record, ContainerError> {
        self.update_written(c, f, true)
    }

    /// Mutate a container's record and write it, fsynced only if `durable`: without, a
    /// `kill -9` still finds the old record or the new one whole, and only a power loss may
    /// find the old; for a state restore reaches from the old one as well.
    pub(super) fn update_written(
        &self,
        c: &Container,
        f: impl FnOnce(&mut Record),
        durable: bool,
    ) -> Result<Record, ContainerError> {
        let mut r = c.record.write();
        f(&mut r);
        r.write_to(&self.container_dir(&c.id), durable)?;
        Ok(r.clone())
    }

    pub(super) fn insert(&self, c: Arc<Container>) {
        let name = c.record.read().name.clone();
        lock(&self.names).insert(name, c.id.clone());
        match self.containers.write() {
            Ok(mut m) => m.insert(c.id.clone(), c),
            Err(p) => p.into_inner().insert(c.id.clone(), c),
        };
    }

    pub(super) fn new_container(&self, record: Record) -> Arc<Container> {
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
        let created_at =
            crate::util::time::parse_timestamp(&record.created, std::time::SystemTime::now())
                .map(crate::util::time::unix_nanos)
                .unwrap_or(0);
        Arc::new(Container {
            id: record.id.clone(),
            created_at,
            has_links: record
                .host_config
                .links
                .as_ref()
                .is_some_and(|l| !l.is_empty()),
            record: RecordCell::new(record),
            op: tokio::sync::Mutex::new(()),
            snapshot: watch::channel(snap).0,
            pending_attach: Mutex::new(Vec::new()),
            _lease: Mutex::new(lease),
            backoff: Mutex::new(None),
            started: Mutex::new(None),
            generation: Mutex::new(0),
            health: Mutex::new(None),
        })
    }
}
