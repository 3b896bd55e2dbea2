//! The volume manager: dockerd's `local` driver and its volume service (moby's
//! `volume/local` + `volume/service`).
//!
//! ```text
//! <data-root>/volumes/<name>/_data        the data (mode 0755), or where the options mount
//! <data-root>/volumes/<name>/opts.json    the driver options, atomic
//! <data-root>/volumes/<name>/meta.json    labels and creation time, atomic; written last, so a
//!                                         directory without it is a half-created volume
//! <data-root>/volumes/<name>/active.json  the containers that have it mounted, atomic
//! ```
//!
//! **References and active users.** A container *refers* to a volume from its create to its
//! removal ([`VolumeService::reference`]); the container layer calls it again when it restores
//! its records at start, so references live in memory only. A container is an *active user*
//! while it runs with the volume mounted ([`VolumeService::mount`] .. [`VolumeService::unmount`]);
//! those are persisted in `active.json`, because berthd may exit while containers keep running
//! (live restore): after a restart, the mount count is right, the first mount is not repeated,
//! and the unmount the container layer sends when it sees the run's end (even one that happened
//! while berthd was down) unmounts at the last user. A volume with options that is found not
//! mounted at open (the host rebooted) forgets its active users: nothing can be using it; and
//! after its restore the container layer may call [`VolumeService::retain_active`] with the
//! running containers, which drops users whose end was never reported. A volume is in use while
//! it has references or active users.

pub mod backend;
pub mod options;
pub mod subpath;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bollard_stubs::models::{Volume, VolumePruneResponse, VolumeScopeEnum, VolumeUsageData};
use serde::{Deserialize, Serialize};

use crate::events::{Event, EventBus};
use crate::filters::Filters;
use crate::util::fs::{atomic_write, ensure_dir, remove_temp_files};
use crate::util::strconv::parse_bool;

crate::module_error! {
    /// A volume-side failure.
    pub struct VolumeError;
}

impl VolumeError {
    /// `get {name}: no such volume` (404), dockerd's text.
    pub fn no_such_volume(name: &str) -> Self {
        Self::not_found(format!("get {name}: no such volume"))
    }
}

impl From<crate::filters::FilterError> for VolumeError {
    fn from(e: crate::filters::FilterError) -> Self {
        use crate::errors::Kinded;
        VolumeError::new(e.kind(), e.to_string())
    }
}

/// The only driver berth has.
pub const LOCAL_DRIVER: &str = "local";
/// The label dockerd (23+) puts on anonymous volumes.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// What `create` is asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `None` or empty: an anonymous volume with a random name.
    pub name: Option<String>,
    /// `local` or empty.
    pub driver: Option<String>,
    pub driver_opts: HashMap<String, String>,
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Driver")]
    driver: String,
    #[serde(rename = "Labels", default)]
    labels: HashMap<String, String>,
    #[serde(rename = "CreatedAt")]
    created_at: String,
}

/// One volume in memory.
#[derive(Debug, Clone)]
struct Vol {
    meta: Meta,
    opts: HashMap<String, String>,
    /// Containers referring to it (rebuilt by the container layer at restore).
    refs: BTreeSet<String>,
    /// Containers that have it mounted, with how many times (persisted).
    active: BTreeMap<String, u32>,
    /// Whether its options are mounted at `_data` now.
    mounted: bool,
}

impl Vol {
    fn in_use(&self) -> bool {
        !self.refs.is_empty() || !self.active.is_empty()
    }

    fn users(&self) -> Vec<String> {
        let mut ids: BTreeSet<&String> = self.refs.iter().collect();
        ids.extend(self.active.keys());
        ids.into_iter().cloned().collect()
    }
}

/// The volume service; shared behind an `Arc` by the router and the container manager.
pub struct VolumeService {
    root: PathBuf,
    events: Arc<EventBus>,
    volumes: Mutex<BTreeMap<String, Vol>>,
}

/// dockerd's `RestrictedNamePattern`: `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`.
pub fn validate_name(name: &str) -> Result<(), VolumeError> {
    if name.chars().count() == 1 {
        return Err(VolumeError::invalid(
            "volume name is too short, names should be at least two alphanumeric characters",
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(first_ok && rest_ok && name.len() >= 2) {
        return Err(VolumeError::invalid(format!(
            "{name:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )));
    }
    Ok(())
}

/// The creation time as dockerd prints it (RFC 3339, seconds).
fn now_rfc3339() -> String {
    let odt = time::OffsetDateTime::from(SystemTime::now());
    let odt = odt.replace_nanosecond(0).unwrap_or(odt);
    odt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "0001-01-01T00:00:00Z".to_string())
}

/// Bytes of the regular files under `dir` (moby's `directory.Size`: hard links once).
fn dir_size(dir: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0i64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.nlink() > 1 && !seen.insert((m.dev(), m.ino())) {
                continue;
            } else {
                total += m.len() as i64;
            }
        }
    }
    total
}

impl VolumeService {
    /// Load `<data-root>/volumes/*`; remove half-created volumes and leftover temp files.
    pub fn open(
        data_root: &Path,
        events: Arc<EventBus>,
    ) -> Result<Arc<VolumeService>, VolumeError> {
        let root = data_root.join("volumes");
        ensure_dir(&root, 0o701)
            .map_err(|e| VolumeError::io(format!("create {}", root.display()), e))?;
        let mut volumes = BTreeMap::new();
        let entries = fs::read_dir(&root)
            .map_err(|e| VolumeError::io(format!("read {}", root.display()), e))?;
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let _ = remove_temp_files(&dir);
            match load(&dir, &name) {
                Some(v) => {
                    volumes.insert(name, v);
                }
                None => {
                    let data = dir.join("_data");
                    if options::is_mounted(&data) {
                        tracing::warn!("volume {name} has no metadata but is mounted: kept");
                        continue;
                    }
                    tracing::warn!("removing half-created volume {name}");
                    if let Err(e) = fs::remove_dir_all(&dir) {
                        tracing::warn!("remove {}: {e}", dir.display());
                    }
                }
            }
        }
        Ok(Arc::new(VolumeService {
            root,
            events,
            volumes: Mutex::new(volumes),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Vol>> {
        match self.volumes.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn data_path(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    fn to_api(&self, v: &Vol) -> Volume {
        Volume {
            name: v.meta.name.clone(),
            driver: v.meta.driver.clone(),
            mountpoint: self.data_path(&v.meta.name).display().to_string(),
            created_at: Some(v.meta.created_at.clone()),
            status: None,
            labels: v.meta.labels.clone(),
            scope: Some(VolumeScopeEnum::LOCAL),
            cluster_volume: None,
            options: v.opts.clone(),
            usage_data: None,
        }
    }

    fn publish(&self, action: &str, name: &str, attrs: &[(&str, String)]) {
        let mut e = Event::new("volume", action, name);
        for (k, v) in attrs {
            e = e.attribute(*k, v.clone());
        }
        self.events.publish(e);
    }

    /// Create a volume, or return the existing one of that name (dockerd's idempotent create).
    pub fn create(&self, opts: CreateOptions) -> Result<Volume, VolumeError> {
        let mut labels = opts.labels;
        let name = match opts.name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => {
                labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                crate::util::rand::random_hex(64)
            }
        };
        let driver = opts.driver.filter(|d| !d.is_empty());
        let mut vols = self.lock();
        if let Some(v) = vols.get(&name) {
            if driver.as_deref().is_some_and(|d| d != v.meta.driver) {
                return Err(VolumeError::conflict(format!(
                    "create {name}: driver '{}' already has volume '{name}': volume name must be unique",
                    v.meta.driver
                )));
            }
            // An existing volume: no `create` event (moby's store logs only a new one).
            return Ok(self.to_api(v));
        }
        if let Some(d) = driver.as_deref().filter(|d| *d != LOCAL_DRIVER) {
            return Err(VolumeError::not_found(format!(
                "create {name}: error looking up volume plugin {d}: plugin \"{d}\" not found"
            )));
        }
        let wrap = |e: VolumeError| {
            VolumeError::new(
                crate::errors::Kinded::kind(&e),
                format!("create {name}: {e}"),
            )
        };
        validate_name(&name).map_err(wrap)?;
        options::validate(&opts.driver_opts).map_err(wrap)?;
        let dir = self.dir(&name);
        let written = (|| -> Result<Meta, VolumeError> {
            ensure_dir(&dir, 0o701).map_err(|e| {
                VolumeError::io(
                    format!("error while creating volume root path '{}'", dir.display()),
                    e,
                )
            })?;
            let data = dir.join("_data");
            ensure_dir(&data, 0o755).map_err(|e| {
                VolumeError::io(
                    format!("error while creating volume data path '{}'", data.display()),
                    e,
                )
            })?;
            let o = serde_json::to_vec(&opts.driver_opts)
                .map_err(|e| VolumeError::internal(e.to_string()))?;
            atomic_write(&dir.join("opts.json"), &o, 0o600)
                .map_err(|e| VolumeError::io("error while persisting volume options", e))?;
            let meta = Meta {
                name: name.clone(),
                driver: LOCAL_DRIVER.to_string(),
                labels: labels.clone(),
                created_at: now_rfc3339(),
            };
            let m = serde_json::to_vec(&meta).map_err(|e| VolumeError::internal(e.to_string()))?;
            atomic_write(&dir.join("meta.json"), &m, 0o600)
                .map_err(|e| VolumeError::io("error while persisting volume metadata", e))?;
            Ok(meta)
        })();
        let meta = match written {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let v = Vol {
            meta,
            opts: opts.driver_opts,
            refs: BTreeSet::new(),
            active: BTreeMap::new(),
            mounted: false,
        };
        let out = self.to_api(&v);
        vols.insert(name.clone(), v);
        drop(vols);
        self.publish("create", &name, &[("driver", LOCAL_DRIVER.to_string())]);
        Ok(out)
    }

    /// One volume; 404 `get {name}: no such volume`.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        let vols = self.lock();
        vols.get(name)
            .map(|v| self.to_api(v))
            .ok_or_else(|| VolumeError::no_such_volume(name))
    }

    /// Every volume, sorted by name.
    pub fn list_all(&self) -> Vec<Volume> {
        self.lock().values().map(|v| self.to_api(v)).collect()
    }

    /// `GET /volumes`: filters `name` (substring), `label`, `driver`, `dangling`.
    pub fn list(&self, filters: &Filters) -> Result<Vec<Volume>, VolumeError> {
        filters.validate(&["name", "label", "driver", "dangling"])?;
        // moby's GetBoolOrDefault: true/1 or false/0 (any case), else the filter is invalid.
        let dangling: Vec<bool> = filters
            .get("dangling")
            .map(|d| match d.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(VolumeError::invalid(format!(
                    "invalid filter 'dangling={d}'"
                ))),
            })
            .collect::<Result<_, _>>()?;
        let vols = self.lock();
        Ok(vols
            .values()
            .filter(|v| {
                (!filters.contains("name")
                    || filters.get("name").any(|n| name_matches(&v.meta.name, n)))
                    && filters.exact_match("driver", &v.meta.driver)
                    && filters.match_kv_list("label", &v.meta.labels)
                    && dangling.iter().all(|d| *d != v.in_use())
            })
            .map(|v| self.to_api(v))
            .collect())
    }

    /// A container now refers to the volume (at create, and again at restore): it is "in use".
    pub fn reference(&self, name: &str, container_id: &str) -> Result<(), VolumeError> {
        let mut vols = self.lock();
        let v = vols
            .get_mut(name)
            .ok_or_else(|| VolumeError::no_such_volume(name))?;
        v.refs.insert(container_id.to_string());
        Ok(())
    }

    /// The container no longer refers to the volume (it was removed).
    pub fn dereference(&self, name: &str, container_id: &str) {
        if let Some(v) = self.lock().get_mut(name) {
            v.refs.remove(container_id);
        }
    }

    /// Mount for a container's start: mounts the volume's options at its first active user and
    /// returns the host path to bind into the container; emits `mount`.
    pub fn mount(
        &self,
        name: &str,
        container_id: &str,
        destination: &str,
        rw: bool,
    ) -> Result<PathBuf, VolumeError> {
        let data = self.data_path(name);
        let mut vols = self.lock();
        let v = vols
            .get_mut(name)
            .ok_or_else(|| VolumeError::no_such_volume(name))?;
        if options::needs_mount(&v.opts) && !v.mounted {
            if options::is_mounted(&data) {
                v.mounted = true;
            } else {
                let get = |k: &str| v.opts.get(k).map(String::as_str).unwrap_or("");
                let o = options::resolve_addr(get("type"), get("o"))?;
                options::mount(get("device"), &data, get("type"), &o)?;
                v.mounted = true;
            }
        }
        *v.active.entry(container_id.to_string()).or_insert(0) += 1;
        if let Err(e) = self.save_active(name, &v.active) {
            tracing::warn!("volume {name}: {e}");
        }
        let driver = v.meta.driver.clone();
        drop(vols);
        self.publish(
            "mount",
            name,
            &[
                ("container", container_id.to_string()),
                ("destination", destination.to_string()),
                ("read/write", rw.to_string()),
                ("propagation", String::new()),
                ("driver", driver),
            ],
        );
        Ok(data)
    }

    /// The container's run ended: unmounts at the last active user; emits `unmount`.
    pub fn unmount(&self, name: &str, container_id: &str) {
        let mut vols = self.lock();
        let Some(v) = vols.get_mut(name) else {
            return;
        };
        match v.active.get_mut(container_id) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                v.active.remove(container_id);
            }
            None => return,
        }
        if v.active.is_empty() && v.mounted {
            match options::unmount(&self.data_path(name)) {
                Ok(()) => v.mounted = false,
                Err(e) => tracing::warn!("volume {name}: {e}"),
            }
        }
        if let Err(e) = self.save_active(name, &v.active) {
            tracing::warn!("volume {name}: {e}");
        }
        let driver = v.meta.driver.clone();
        drop(vols);
        self.publish(
            "unmount",
            name,
            &[("container", container_id.to_string()), ("driver", driver)],
        );
    }

    /// After the containers restored: forget the active users that are not among `running`
    /// (their end was missed, or their record is gone), unmounting volumes left without users.
    /// Returns how many users were dropped.
    pub fn retain_active(&self, running: &std::collections::HashSet<String>) -> usize {
        let mut dropped = 0;
        let mut vols = self.lock();
        for (name, v) in vols.iter_mut() {
            let before = v.active.len();
            v.active.retain(|id, _| running.contains(id));
            if v.active.len() == before {
                continue;
            }
            dropped += before - v.active.len();
            tracing::info!(
                "volume {name}: {} stale active user(s) dropped",
                before - v.active.len()
            );
            if v.active.is_empty() && v.mounted {
                match options::unmount(&self.data_path(name)) {
                    Ok(()) => v.mounted = false,
                    Err(e) => tracing::warn!("volume {name}: {e}"),
                }
            }
            if let Err(e) = self.save_active(name, &v.active) {
                tracing::warn!("volume {name}: {e}");
            }
        }
        dropped
    }

    fn save_active(&self, name: &str, active: &BTreeMap<String, u32>) -> Result<(), VolumeError> {
        let path = self.dir(name).join("active.json");
        let bytes = serde_json::to_vec(active).map_err(|e| VolumeError::internal(e.to_string()))?;
        atomic_write(&path, &bytes, 0o600)
            .map_err(|e| VolumeError::io(format!("write {}", path.display()), e))
    }

    /// Remove a volume: 409 while in use; `force` ignores a volume that does not exist.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), VolumeError> {
        let mut vols = self.lock();
        let Some(v) = vols.get(name) else {
            return if force {
                Ok(())
            } else {
                Err(VolumeError::no_such_volume(name))
            };
        };
        if v.in_use() {
            return Err(VolumeError::conflict(format!(
                "remove {name}: volume is in use - [{}]",
                v.users().join(", ")
            )));
        }
        self.destroy(name)?;
        vols.remove(name);
        drop(vols);
        self.publish("destroy", name, &[("driver", LOCAL_DRIVER.to_string())]);
        Ok(())
    }

    /// Unmount (if mounted) and delete a volume's directory; never deletes through a mount.
    fn destroy(&self, name: &str) -> Result<(), VolumeError> {
        let dir = self.dir(name);
        let data = dir.join("_data");
        let fail = |e: VolumeError| {
            VolumeError::new(
                crate::errors::Kinded::kind(&e),
                format!("remove {name}: {e}"),
            )
        };
        if options::is_mounted(&data) {
            options::unmount(&data).map_err(fail)?;
            if options::is_mounted(&data) {
                return Err(fail(VolumeError::internal("volume is still mounted")));
            }
        }
        // Metadata first: a crash half-way leaves a half-created volume that open() removes.
        let _ = fs::remove_file(dir.join("meta.json"));
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(fail(VolumeError::io(
                format!("error removing volume path '{}'", dir.display()),
                e,
            ))),
        }
    }

    /// `POST /volumes/prune`: unused volumes matching `label`/`label!`; only anonymous ones
    /// unless `all` (API 1.42+; older clients prune all unused volumes: `all_by_default`).
    pub fn prune(
        &self,
        filters: &Filters,
        all_by_default: bool,
    ) -> Result<VolumePruneResponse, VolumeError> {
        filters.validate(&["label", "label!", "all"])?;
        // moby's withPrune: one value, parsed as Go's strconv.ParseBool.
        let values: Vec<&str> = filters.get("all").collect();
        let all = match values.as_slice() {
            [] => all_by_default,
            [one] => parse_bool(one).ok().ok_or_else(|| {
                VolumeError::invalid(format!(
                    "invalid filter 'all': strconv.ParseBool: parsing {one:?}: invalid syntax"
                ))
            })?,
            many => {
                return Err(VolumeError::invalid(format!(
                    "invalid filter 'all=[{}]': only one value is expected",
                    many.join(" ")
                )))
            }
        };
        let mut deleted = Vec::new();
        let mut reclaimed = 0i64;
        let mut vols = self.lock();
        let names: Vec<String> = vols
            .values()
            .filter(|v| !v.in_use())
            .filter(|v| all || v.meta.labels.contains_key(ANONYMOUS_LABEL))
            .filter(|v| filters.match_kv_list("label", &v.meta.labels))
            .filter(|v| {
                !filters.get("label!").any(|l| match l.split_once('=') {
                    Some((k, want)) => v.meta.labels.get(k).is_some_and(|h| h == want),
                    None => v.meta.labels.contains_key(l),
                })
            })
            .map(|v| v.meta.name.clone())
            .collect();
        for name in names {
            let size = dir_size(&self.data_path(&name));
            match self.destroy(&name) {
                Ok(()) => {
                    vols.remove(&name);
                    reclaimed += size;
                    self.publish("destroy", &name, &[("driver", LOCAL_DRIVER.to_string())]);
                    deleted.push(name);
                }
                Err(e) => tracing::warn!("prune volume {name}: {e}"),
            }
        }
        drop(vols);
        self.publish("prune", "", &[("reclaimed", reclaimed.to_string())]);
        Ok(VolumePruneResponse {
            volumes_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed),
        })
    }

    /// Every volume with `UsageData {Size, RefCount}` for `/system/df`. As moby's
    /// `LocalVolumesSize`, volumes with mount options (`-o type=tmpfs`, NFS, ...) are left out:
    /// their data is not on the local disk. Blocking (walks each volume's data).
    pub fn disk_usage(&self) -> Vec<Volume> {
        let snapshot: Vec<(Volume, i64)> = self
            .lock()
            .values()
            .filter(|v| v.opts.is_empty())
            .map(|v| (self.to_api(v), v.users().len() as i64))
            .collect();
        snapshot
            .into_iter()
            .map(|(mut vol, refs)| {
                vol.usage_data = Some(VolumeUsageData {
                    size: dir_size(Path::new(&vol.mountpoint)),
                    ref_count: refs,
                });
                vol
            })
            .collect()
    }

    /// How many volumes exist.
    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

/// moby's `filters.Match`: equal, or the pattern as a regular expression; berth supports
/// substrings and the `^`/`$` anchors (as the container list does).
fn name_matches(name: &str, pattern: &str) -> bool {
    let starts = pattern.starts_with('^');
    let ends = pattern.ends_with('$') && pattern.len() > usize::from(starts);
    let core = &pattern[usize::from(starts)..pattern.len() - usize::from(ends)];
    match (starts, ends) {
        (true, true) => name == core,
        (true, false) => name.starts_with(core),
        (false, true) => name.ends_with(core),
        (false, false) => name.contains(core),
    }
}

/// Read one volume's files; `None` for a half-created one (no metadata).
fn load(dir: &Path, name: &str) -> Option<Vol> {
    let meta: Meta = match fs::read(dir.join("meta.json")) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("volume {name}: bad meta.json: {e}");
                return None;
            }
        },
        Err(_) => return None,
    };
    let opts: HashMap<String, String> = fs::read(dir.join("opts.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut active: BTreeMap<String, u32> = fs::read(dir.join("active.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let data = dir.join("_data");
    let mut mounted = false;
    if options::needs_mount(&opts) {
        mounted = options::is_mounted(&data);
        if !mounted && !active.is_empty() {
            // Nothing is mounted (the host rebooted): no container can still be using it.
            active.clear();
            let _ = atomic_write(&dir.join("active.json"), b"{}", 0o600);
        }
    }
    Some(Vol {
        meta: Meta {
            name: name.to_string(),
            ..meta
        },
        opts,
        refs: BTreeSet::new(),
        active,
        mounted,
    })
}

#[cfg(test)]
mod tests;
