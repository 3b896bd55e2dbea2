//! The on-disk image store, modelled on dockerd's overlay2 layout:
//!
//! ```text
//! <data-root>/image/overlay2/imagedb/content/sha256/<id>     image configs (ID = their digest)
//! <data-root>/image/overlay2/imagedb/metadata/sha256/<id>/   lastUpdated, parent, builtLocally
//! <data-root>/image/overlay2/layerdb/sha256/<chain-id>/      diff, parent, cache-id, size, tar-size, tar-split
//! <data-root>/image/overlay2/layerdb/tmp/                    layer records being written
//! <data-root>/image/overlay2/repositories.json               name:tag and name@digest -> image ID
//! <data-root>/overlay2/<cache-id>/{diff,link,lower}          extracted layers, once per chain ID
//! <data-root>/overlay2/l/<short>                             short links for overlay mount options
//! ```
//!
//! A layer becomes visible only when its record directory is renamed into `layerdb/sha256`, an
//! image only when its config is written, a name only when `repositories.json` is replaced: an
//! interrupted import, load or pull leaves nothing half-registered, and [`Store::open`] removes
//! what it left behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::apply::{self, ApplyStats};
use super::config::{chain_ids, ImageConfigFile};
use super::reference::Reference;
use super::tarsplit::{self, Recorder};
use super::{digest_hex, sha256_digest, ImageError};
use crate::util::fs::{atomic_write, ensure_dir, remove_temp_files};
use crate::util::rand::random_hex;
use crate::util::tree::remove_all;

/// A registered layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub chain_id: String,
    pub diff_id: String,
    pub parent: Option<String>,
    pub cache_id: String,
    /// Bytes of file content (what `docker images` adds up).
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
}

/// A registered image.
#[derive(Debug, Clone)]
pub struct Image {
    pub id: String,
    pub config: ImageConfigFile,
    pub raw_config: Arc<Vec<u8>>,
    /// Chain IDs of the layers, bottom first.
    pub chain: Vec<String>,
    pub last_tag_time: Option<String>,
    /// The image it was committed or built on (`metadata/…/parent`), as dockerd links them.
    pub parent: Option<String>,
    /// Made here by a commit or a build step (`metadata/…/builtLocally`): only such images
    /// serve the builder's local cache (moby's `IsBuiltLocally`).
    pub built_locally: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RepositoriesFile {
    #[serde(rename = "Repositories")]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Default)]
struct State {
    layers: HashMap<String, Layer>,
    images: BTreeMap<String, Image>,
    /// Full reference (`docker.io/library/busybox:latest`) -> image ID. Names of images that
    /// could not be loaded at start are kept (and saved) but resolve to nothing.
    refs: BTreeMap<String, String>,
    /// Chain IDs that operations in progress (pull, load, import, save, push) rely on.
    leases: HashMap<String, usize>,
}

/// Keeps layers from being collected while an operation relies on them; dropping it lets the
/// store collect layers that no image uses any more.
pub struct Lease {
    store: Arc<Store>,
    chains: Vec<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            let mut state = self.store.lock();
            for c in &self.chains {
                if let Some(n) = state.leases.get_mut(c) {
                    *n -= 1;
                    if *n == 0 {
                        state.leases.remove(c);
                    }
                }
            }
        }
        self.store.collect_garbage();
    }
}

/// A layer extracted by [`Store::extract_layer`], waiting for [`Store::commit_layer`]. Dropped
/// uncommitted, its directory is removed.
pub struct ExtractedLayer {
    cache_id: String,
    /// `overlay2/<cache-id>`; empty once the layer is registered.
    layer_dir: PathBuf,
    stats: ApplyStats,
    recorder: Option<Recorder>,
}

impl ExtractedLayer {
    /// The layer's DiffID (the digest of its uncompressed tar).
    pub fn diff_id(&self) -> &str {
        &self.stats.diff_id
    }

    fn spool(&self) -> PathBuf {
        self.layer_dir.join("tar-split.spool")
    }
}

impl Drop for ExtractedLayer {
    fn drop(&mut self) {
        // The record file is closed before its directory goes.
        self.recorder = None;
        if !self.layer_dir.as_os_str().is_empty() {
            remove_all(&self.layer_dir);
        }
    }
}

/// The image and layer store.
pub struct Store {
    root: PathBuf,
    state: Mutex<State>,
    /// Serialises writers of `repositories.json` (held without the state lock).
    refs_writer: Mutex<()>,
    /// Moves at every change of a reference: what caches a name's resolution (`docker ps`'s
    /// `Image` column) compares it.
    refs_generation: std::sync::atomic::AtomicU64,
}

fn lock_unpoisoned<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn io(context: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ImageError {
    move |e| ImageError::io(context, e)
}

impl Store {
    /// Open (and create) the store under `data_root`, dropping the leftovers of interrupted
    /// operations.
    pub fn open(data_root: &Path) -> Result<Store, ImageError> {
        let s = Store {
            root: data_root.to_path_buf(),
            state: Mutex::new(State::default()),
            refs_writer: Mutex::new(()),
            refs_generation: std::sync::atomic::AtomicU64::new(0),
        };
        for d in [
            s.imagedb(),
            s.image_root().join("imagedb/metadata/sha256"),
            s.layerdb(),
            s.layer_tmp(),
            s.overlay_root().join("l"),
            s.tmp_root(),
        ] {
            ensure_dir(&d, 0o700).map_err(io(format!("create {}", d.display())))?;
        }
        s.recover()?;
        Ok(s)
    }

    fn image_root(&self) -> PathBuf {
        self.root.join("image/overlay2")
    }
    fn imagedb(&self) -> PathBuf {
        self.image_root().join("imagedb/content/sha256")
    }
    fn layerdb(&self) -> PathBuf {
        self.image_root().join("layerdb/sha256")
    }
    fn layer_tmp(&self) -> PathBuf {
        self.image_root().join("layerdb/tmp")
    }
    fn repositories(&self) -> PathBuf {
        self.image_root().join("repositories.json")
    }
    pub fn overlay_root(&self) -> PathBuf {
        self.root.join("overlay2")
    }
    /// Scratch space for loads and imports, on the same filesystem as the store.
    pub fn tmp_root(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The `diff/` directory of a layer.
    pub fn layer_diff(&self, layer: &Layer) -> PathBuf {
        self.overlay_root().join(&layer.cache_id).join("diff")
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock_unpoisoned(&self.state)
    }

    fn recover(&self) -> Result<(), ImageError> {
        // Half-written layer records and scratch directories.
        for dir in [self.layer_tmp(), self.tmp_root()] {
            for e in fs::read_dir(&dir).map_err(io(format!("read {}", dir.display())))? {
                let p = e.map_err(io("read dir entry"))?.path();
                remove_all(&p);
            }
        }
        remove_temp_files(&self.image_root()).map_err(io("clean image root"))?;
        remove_temp_files(&self.imagedb()).map_err(io("clean imagedb"))?;
        // And each image's metadata directory (`lastUpdated`, `parent`, `builtLocally`): a
        // kill during their atomic write leaves its temporary file (found by the crash loop).
        let metadata = self.image_root().join("imagedb/metadata/sha256");
        if let Ok(dirs) = fs::read_dir(&metadata) {
            for d in dirs.flatten() {
                if d.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_temp_files(&d.path()).map_err(io("clean image metadata"))?;
                }
            }
        }
        let mut state = State::default();
        for e in fs::read_dir(self.layerdb()).map_err(io("read layerdb"))? {
            let e = e.map_err(io("read layerdb entry"))?;
            let chain_id = format!("sha256:{}", e.file_name().to_string_lossy());
            // Only positive evidence (a missing file) removes a record; any other error stops
            // the start rather than throw layers away on a passing fault.
            match self.read_layer(&e.path(), &chain_id) {
                Ok(l) if self.overlay_root().join(&l.cache_id).join("diff").is_dir() => {
                    state.layers.insert(chain_id, l);
                }
                Ok(_) | Err(ReadLayer::Missing) => {
                    tracing::warn!("removing broken layer record {}", e.path().display());
                    remove_all(&e.path());
                }
                Err(ReadLayer::Failed(err)) => return Err(err),
            }
        }
        // Extracted layers that no record names were interrupted: remove them.
        let known: HashSet<&str> = state.layers.values().map(|l| l.cache_id.as_str()).collect();
        for e in fs::read_dir(self.overlay_root()).map_err(io("read overlay2"))? {
            let e = e.map_err(io("read overlay2 entry"))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "l" || known.contains(name.as_str()) {
                continue;
            }
            tracing::info!("removing orphan layer directory {}", e.path().display());
            remove_all(&e.path());
        }
        for e in fs::read_dir(self.overlay_root().join("l")).map_err(io("read overlay2/l"))? {
            let e = e.map_err(io("read overlay2/l entry"))?;
            if fs::metadata(e.path()).is_err() {
                let _ = fs::remove_file(e.path());
            }
        }
        for e in fs::read_dir(self.imagedb()).map_err(io("read imagedb"))? {
            let e = e.map_err(io("read imagedb entry"))?;
            let id = format!("sha256:{}", e.file_name().to_string_lossy());
            let raw = fs::read(e.path()).map_err(io(format!("read {}", e.path().display())))?;
            if sha256_digest(&raw) != id {
                tracing::warn!(
                    "image config {} does not match its digest: ignored",
                    e.path().display()
                );
                continue;
            }
            let config = match ImageConfigFile::parse(&raw) {
                Ok(c) => c,
                Err(err) => {
                    tracing::warn!("image {id}: {err}: ignored");
                    continue;
                }
            };
            let chain = chain_ids(&config.rootfs.diff_ids);
            if let Some(missing) = chain.iter().find(|c| !state.layers.contains_key(*c)) {
                tracing::warn!("image {id} lacks layer {missing}: ignored");
                continue;
            }
            let meta = self
                .image_root()
                .join("imagedb/metadata/sha256")
                .join(digest_hex(&id));
            let last_tag_time = fs::read_to_string(meta.join("lastUpdated")).ok();
            let parent = fs::read_to_string(meta.join("parent"))
                .ok()
                .map(|p| p.trim().to_string())
                .filter(|p| p.starts_with("sha256:"));
            let built_locally =
                fs::read(meta.join("builtLocally")).is_ok_and(|b| b.first() == Some(&1));
            state.images.insert(
                id.clone(),
                Image {
                    id,
                    config,
                    raw_config: Arc::new(raw),
                    chain,
                    last_tag_time,
                    parent,
                    built_locally,
                },
            );
        }
        if let Ok(text) = fs::read(self.repositories()) {
            let file: RepositoriesFile = serde_json::from_slice(&text).map_err(|e| {
                ImageError::internal(format!("parse {}: {e}", self.repositories().display()))
            })?;
            for (_, refs) in file.repositories {
                for (r, id) in refs {
                    if !state.images.contains_key(&id) {
                        tracing::warn!("reference {r} names image {id}, which is not loaded");
                    }
                    state.refs.insert(r, id);
                }
            }
        }
        *self.lock() = state;
        // Layers of an operation that never registered its image (a pull or load cut short).
        self.collect_garbage();
        Ok(())
    }

    fn read_layer(&self, dir: &Path, chain_id: &str) -> Result<Layer, ReadLayer> {
        let read = |name: &str| match fs::read_to_string(dir.join(name)) {
            Ok(s) => Ok(s.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ReadLayer::Missing),
            Err(e) => Err(ReadLayer::Failed(ImageError::io(
                format!("read {}/{name}", dir.display()),
                e,
            ))),
        };
        let parent = read("parent").ok().filter(|p| !p.is_empty());
        Ok(Layer {
            chain_id: chain_id.to_string(),
            diff_id: read("diff")?,
            parent,
            cache_id: read("cache-id")?,
            size: read("size")?.parse().unwrap_or(0),
            tar_size: read("tar-size")?.parse().unwrap_or(0),
        })
    }

    pub fn layer(&self, chain_id: &str) -> Option<Layer> {
        self.lock().layers.get(chain_id).cloned()
    }

    /// Extract a layer blob on top of `parent` and register it, unless that chain is already
    /// there. `expected_diff_id`, when known, is checked against what the blob contains.
    /// The layer comes back leased: it cannot be collected before the caller registers the
    /// image that uses it.
    pub fn register_layer<R: Read>(
        self: &Arc<Self>,
        parent: Option<&str>,
        blob: R,
        expected_diff_id: Option<&str>,
    ) -> Result<(Layer, Lease), ImageError> {
        let extracted = self.extract_layer(blob, expected_diff_id)?;
        self.commit_layer(extracted, parent)
    }

    /// The first half of [`Store::register_layer`]: extract a layer blob into a directory of
    /// its own, without a parent (a layer's files do not depend on the layers below it). Pulls
    /// and loads extract several layers at once this way and register them in order with
    /// [`Store::commit_layer`]. Nothing is visible until then; dropping the result removes the
    /// directory, and so does the next start after a crash.
    pub fn extract_layer<R: Read>(
        &self,
        blob: R,
        expected_diff_id: Option<&str>,
    ) -> Result<ExtractedLayer, ImageError> {
        let cache_id = random_hex(32);
        let layer_dir = self.overlay_root().join(&cache_id);
        let diff = layer_dir.join("diff");
        fs::create_dir_all(&diff).map_err(io(format!("create {}", diff.display())))?;
        let mut x = ExtractedLayer {
            cache_id,
            layer_dir,
            stats: ApplyStats {
                diff_id: String::new(),
                tar_size: 0,
                content_size: 0,
            },
            recorder: None,
        };
        // The tar-split record is streamed to a file beside the layer as it is made (a layer
        // with millions of entries or huge headers does not make it big in memory).
        let spool_file = fs::File::create(x.spool()).map_err(io("create tar-split"))?;
        let (stats, recorder): (ApplyStats, Recorder) =
            apply::apply_layer_recorded(blob, &diff, Recorder::to_file(spool_file))?;
        if let Some(want) = expected_diff_id {
            if stats.diff_id != want {
                return Err(ImageError::invalid(format!(
                    "layer content does not match its DiffID: expected {want}, got {}",
                    stats.diff_id
                )));
            }
        }
        x.stats = stats;
        x.recorder = Some(recorder);
        Ok(x)
    }

    /// The second half of [`Store::register_layer`]: register an extracted layer on top of
    /// `parent`, or lease the registered one if that chain is already there.
    pub fn commit_layer(
        self: &Arc<Self>,
        mut x: ExtractedLayer,
        parent: Option<&str>,
    ) -> Result<(Layer, Lease), ImageError> {
        let stats = x.stats.clone();
        let chain_id = match parent {
            None => stats.diff_id.clone(),
            Some(p) => sha256_digest(format!("{p} {}", stats.diff_id).as_bytes()),
        };
        if let Some(found) = self.lease_existing(&chain_id) {
            return Ok(found);
        }
        let (cache_id, layer_dir, spool) = (x.cache_id.clone(), x.layer_dir.clone(), x.spool());
        let recorder = x.recorder.take().ok_or_else(|| {
            ImageError::internal("layer extracted without its record".to_string())
        })?;
        // overlay2 bookkeeping: a short link and the lower chain for mounts.
        let short = random_hex(13).to_uppercase();
        std::os::unix::fs::symlink(
            format!("../{cache_id}/diff"),
            self.overlay_root().join("l").join(&short),
        )
        .map_err(io("create layer link"))?;
        let result = (|| {
            atomic_write(&layer_dir.join("link"), short.as_bytes(), 0o644)
                .map_err(io("write layer link"))?;
            if let Some(p) = parent {
                let lower = self.lower_chain(p)?;
                atomic_write(&layer_dir.join("lower"), lower.as_bytes(), 0o644)
                    .map_err(io("write lower"))?;
            }
            recorder.finish().map_err(io("write tar-split"))?;
            // The record: written in tmp, then renamed into place in one step.
            let tmp = self.layer_tmp().join(random_hex(16));
            fs::create_dir(&tmp).map_err(io("create layer record"))?;
            let files: [(&str, Vec<u8>); 5] = [
                ("diff", stats.diff_id.clone().into_bytes()),
                ("parent", parent.unwrap_or("").as_bytes().to_vec()),
                ("cache-id", cache_id.clone().into_bytes()),
                ("size", stats.content_size.to_string().into_bytes()),
                ("tar-size", stats.tar_size.to_string().into_bytes()),
            ];
            for (name, data) in files {
                atomic_write(&tmp.join(name), &data, 0o600)
                    .map_err(io(format!("write layer {name}")))?;
            }
            fs::set_permissions(&spool, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(io("write layer tar-split"))?;
            fs::rename(&spool, tmp.join("tar-split")).map_err(io("write layer tar-split"))?;
            let layer = Layer {
                chain_id: chain_id.clone(),
                diff_id: stats.diff_id.clone(),
                parent: parent.map(str::to_string),
                cache_id: cache_id.clone(),
                size: stats.content_size,
                tar_size: stats.tar_size,
            };
            let mut state = self.lock();
            if state.layers.contains_key(&chain_id) {
                // Registered concurrently by someone else.
                drop(state);
                remove_all(&tmp);
                return match self.lease_existing(&chain_id) {
                    Some(found) => Ok((found, false)),
                    None => Err(ImageError::new(
                        crate::errors::ErrorKind::Unavailable,
                        format!("layer {chain_id} was removed while it was registered: try again"),
                    )),
                };
            }
            let dest = self.layerdb().join(digest_hex(&chain_id));
            fs::rename(&tmp, &dest).map_err(io(format!("register layer {chain_id}")))?;
            crate::util::fs::sync_dir(&self.layerdb()).map_err(io("sync layerdb"))?;
            state.layers.insert(chain_id.clone(), layer.clone());
            *state.leases.entry(chain_id.clone()).or_default() += 1;
            drop(state);
            let lease = Lease {
                store: self.clone(),
                chains: vec![chain_id],
            };
            Ok(((layer, lease), true))
        })();
        match result {
            Ok((found, true)) => {
                // Registered: the directory is the layer's now.
                x.layer_dir = PathBuf::new();
                Ok(found)
            }
            Ok((found, false)) => {
                let _ = fs::remove_file(self.overlay_root().join("l").join(&short));
                Ok(found)
            }
            Err(e) => {
                let _ = fs::remove_file(self.overlay_root().join("l").join(&short));
                Err(e)
            }
        }
    }

    /// The absolute short-link paths of a layer and its parents, top first: the `lowerdir`
    /// of a container's overlay mount.
    pub fn lower_dirs(&self, chain_id: &str) -> Result<Vec<PathBuf>, ImageError> {
        let root = self.overlay_root();
        Ok(self
            .lower_chain(chain_id)?
            .split(':')
            .map(|l| root.join(l))
            .collect())
    }

    /// `l/<short>:l/<short>...` of a layer and its parents, top first.
    fn lower_chain(&self, chain_id: &str) -> Result<String, ImageError> {
        let mut out = Vec::new();
        let mut cur = Some(chain_id.to_string());
        while let Some(c) = cur {
            let l = self.layer(&c).ok_or_else(|| {
                ImageError::internal(format!("parent layer {c} is not registered"))
            })?;
            let link = fs::read_to_string(self.overlay_root().join(&l.cache_id).join("link"))
                .map_err(io(format!("read link of layer {c}")))?;
            out.push(format!("l/{}", link.trim()));
            cur = l.parent.clone();
        }
        Ok(out.join(":"))
    }

    /// The uncompressed tar of a layer, reassembled from its files and checked against its
    /// DiffID as it is read.
    pub fn layer_tar(
        &self,
        layer: &Layer,
    ) -> Result<tarsplit::Verified<tarsplit::Assembler>, ImageError> {
        Ok(tarsplit::Verified::new(
            self.layer_tar_unchecked(layer)?,
            &layer.diff_id,
            layer.tar_size,
        ))
    }

    /// The uncompressed tar of a layer, reassembled from its files; the caller checks it
    /// against the layer's DiffID (`docker save` does so on a thread of its own).
    pub fn layer_tar_unchecked(&self, layer: &Layer) -> Result<tarsplit::Assembler, ImageError> {
        let dir = self.layerdb().join(digest_hex(&layer.chain_id));
        let split = fs::File::open(dir.join("tar-split"))
            .map_err(io(format!("read tar-split of {}", layer.chain_id)))?;
        Ok(tarsplit::assemble_from(&self.layer_diff(layer), split))
    }

    /// Register an image config whose layers are all registered. Returns the image and
    /// whether it is new.
    pub fn register_image(&self, raw: Vec<u8>) -> Result<(Image, bool), ImageError> {
        let config = ImageConfigFile::parse(&raw)?;
        let id = sha256_digest(&raw);
        let chain = chain_ids(&config.rootfs.diff_ids);
        // Checked and inserted under one lock: no collection can remove a layer in between
        // (the caller holds a lease on them anyway). Configs are small; the write is short.
        let mut state = self.lock();
        if let Some(img) = state.images.get(&id) {
            return Ok((img.clone(), false));
        }
        if let Some(missing) = chain.iter().find(|c| !state.layers.contains_key(*c)) {
            return Err(ImageError::internal(format!(
                "image {id}: layer {missing} is not registered"
            )));
        }
        atomic_write(&self.imagedb().join(digest_hex(&id)), &raw, 0o600)
            .map_err(io(format!("write image config {id}")))?;
        let img = Image {
            id: id.clone(),
            config,
            raw_config: Arc::new(raw),
            chain,
            last_tag_time: None,
            parent: None,
            built_locally: false,
        };
        state.images.insert(id, img.clone());
        Ok((img, true))
    }

    /// Write the metadata file `key` of image `id`.
    fn set_metadata(&self, id: &str, key: &str, value: &[u8]) -> Result<(), ImageError> {
        let meta = self
            .image_root()
            .join("imagedb/metadata/sha256")
            .join(digest_hex(id));
        fs::create_dir_all(&meta).map_err(io(format!("create {}", meta.display())))?;
        atomic_write(&meta.join(key), value, 0o600).map_err(io(format!("write {key} of {id}")))
    }

    /// Link `id` to the image it was made from (moby's `SetParent`), on disk and in memory.
    pub fn set_parent(&self, id: &str, parent: &str) -> Result<(), ImageError> {
        self.set_metadata(id, "parent", parent.as_bytes())?;
        if let Some(img) = self.lock().images.get_mut(id) {
            img.parent = Some(parent.to_string());
        }
        Ok(())
    }

    /// Mark `id` as made here (moby's `SetBuiltLocally`): the builder's local cache uses it.
    pub fn set_built_locally(&self, id: &str) -> Result<(), ImageError> {
        self.set_metadata(id, "builtLocally", &[1])?;
        if let Some(img) = self.lock().images.get_mut(id) {
            img.built_locally = true;
        }
        Ok(())
    }

    /// The images whose parent is `id` (moby's `Children`).
    pub fn children(&self, id: &str) -> Vec<Image> {
        self.lock()
            .images
            .values()
            .filter(|i| i.parent.as_deref() == Some(id))
            .cloned()
            .collect()
    }

    pub fn image(&self, id: &str) -> Option<Image> {
        self.lock().images.get(id).cloned()
    }

    pub fn images(&self) -> Vec<Image> {
        self.lock().images.values().cloned().collect()
    }

    pub fn layer_count(&self) -> usize {
        self.lock().layers.len()
    }

    /// Every reference of a loaded image, with the image it names.
    pub fn references(&self) -> Vec<(Reference, String)> {
        let state = self.lock();
        state
            .refs
            .iter()
            .filter(|(_, id)| state.images.contains_key(*id))
            .filter_map(|(r, id)| Reference::parse_any(r).ok().map(|r| (r, id.clone())))
            .collect()
    }

    /// The references of one image.
    pub fn references_of(&self, id: &str) -> Vec<Reference> {
        self.references()
            .into_iter()
            .filter(|(_, i)| i == id)
            .map(|(r, _)| r)
            .collect()
    }

    /// The image a reference names.
    pub fn resolve_reference(&self, r: &Reference) -> Option<String> {
        let state = self.lock();
        state
            .refs
            .get(&r.to_string())
            .filter(|id| state.images.contains_key(*id))
            .cloned()
    }

    /// A registered layer, leased, checked and leased under one lock.
    fn lease_existing(self: &Arc<Self>, chain_id: &str) -> Option<(Layer, Lease)> {
        let mut state = self.lock();
        let layer = state.layers.get(chain_id).cloned()?;
        *state.leases.entry(chain_id.to_string()).or_default() += 1;
        drop(state);
        Some((
            layer,
            Lease {
                store: self.clone(),
                chains: vec![chain_id.to_string()],
            },
        ))
    }

    /// Hold `chains` for the lifetime of the returned lease.
    pub fn lease(self: &Arc<Self>, chains: &[String]) -> Lease {
        let mut state = self.lock();
        for c in chains {
            *state.leases.entry(c.clone()).or_default() += 1;
        }
        Lease {
            store: self.clone(),
            chains: chains.to_vec(),
        }
    }

    /// Remove every layer that no image uses and no lease holds. Records are moved aside under
    /// the lock; directories are removed after it. Returns the removed chain IDs.
    pub fn collect_garbage(&self) -> Vec<String> {
        let mut doomed = Vec::new();
        {
            let mut state = self.lock();
            let used: HashSet<String> = state
                .images
                .values()
                .flat_map(|i| i.chain.iter().cloned())
                .chain(state.leases.keys().cloned())
                .collect();
            let unused: Vec<String> = state
                .layers
                .keys()
                .filter(|c| !used.contains(*c))
                .cloned()
                .collect();
            for chain_id in unused {
                if let Some(layer) = state.layers.remove(&chain_id) {
                    let rec = self.layerdb().join(digest_hex(&chain_id));
                    let tomb = self.layer_tmp().join(format!("del-{}", random_hex(8)));
                    if let Err(e) = fs::rename(&rec, &tomb) {
                        tracing::warn!("retire layer record {}: {e}", rec.display());
                    }
                    doomed.push((chain_id, layer, tomb));
                }
            }
        }
        let mut removed = Vec::new();
        for (chain_id, layer, tomb) in doomed {
            remove_all(&tomb);
            let dir = self.overlay_root().join(&layer.cache_id);
            if let Ok(link) = fs::read_to_string(dir.join("link")) {
                let _ = fs::remove_file(self.overlay_root().join("l").join(link.trim()));
            }
            remove_all(&dir);
            removed.push(chain_id);
        }
        removed
    }

    /// Point `r` at image `id`; returns the image it pointed at before, if another.
    pub fn add_reference(&self, r: &Reference, id: &str) -> Result<Option<String>, ImageError> {
        // One writer at a time, so the file follows the map; readers never wait for the disk.
        let _writer = lock_unpoisoned(&self.refs_writer);
        let (previous, snapshot) = {
            let mut state = self.lock();
            if !state.images.contains_key(id) {
                return Err(ImageError::no_such_image(id));
            }
            let previous = state.refs.insert(r.to_string(), id.to_string());
            self.refs_changed();
            // A tag that already names `id` (a rebuild that hit the cache) leaves the file
            // as it is; only its time is written.
            let snapshot = (previous.as_deref() != Some(id)).then(|| state.refs.clone());
            (previous, snapshot)
        };
        if let Err(e) = snapshot.map_or(Ok(()), |s| self.save_refs(&s)) {
            let mut state = self.lock();
            match &previous {
                Some(p) => state.refs.insert(r.to_string(), p.clone()),
                None => state.refs.remove(&r.to_string()),
            };
            self.refs_changed();
            return Err(e);
        }
        let now = crate::util::time::rfc3339_nano(std::time::SystemTime::now());
        let meta = self
            .image_root()
            .join("imagedb/metadata/sha256")
            .join(digest_hex(id));
        if ensure_dir(&meta, 0o700).is_ok()
            && atomic_write(&meta.join("lastUpdated"), now.as_bytes(), 0o600).is_ok()
        {
            if let Some(img) = self.lock().images.get_mut(id) {
                img.last_tag_time = Some(now);
            }
        }
        Ok(previous.filter(|p| p != id))
    }

    /// Remove a reference; returns the image it named.
    pub fn remove_reference(&self, r: &Reference) -> Result<Option<String>, ImageError> {
        let _writer = lock_unpoisoned(&self.refs_writer);
        let (removed, snapshot) = {
            let mut state = self.lock();
            let removed = state.refs.remove(&r.to_string());
            self.refs_changed();
            (removed, state.refs.clone())
        };
        if let Some(id) = &removed {
            if let Err(e) = self.save_refs(&snapshot) {
                self.lock().refs.insert(r.to_string(), id.clone());
                self.refs_changed();
                return Err(e);
            }
        }
        Ok(removed)
    }

    fn refs_changed(&self) {
        self.refs_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// See [`Store::refs_generation`]'s field: moves whenever a reference is added, moved or
    /// removed.
    pub fn refs_generation(&self) -> u64 {
        self.refs_generation
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn save_refs(&self, refs: &BTreeMap<String, String>) -> Result<(), ImageError> {
        let mut file = RepositoriesFile::default();
        for (r, id) in refs {
            let repo = Reference::parse_any(r)
                .map(|p| p.repository())
                .unwrap_or_else(|_| r.clone());
            file.repositories
                .entry(repo)
                .or_default()
                .insert(r.clone(), id.clone());
        }
        let data = serde_json::to_vec(&file)
            .map_err(|e| ImageError::internal(format!("encode references: {e}")))?;
        atomic_write(&self.repositories(), &data, 0o600).map_err(io("write repositories.json"))
    }

    /// Delete an image record (its references must be gone) and collect every layer no other
    /// image uses and no operation holds. Returns the deleted layers' chain IDs.
    pub fn delete_image(&self, id: &str) -> Result<Vec<String>, ImageError> {
        {
            let mut state = self.lock();
            if !state.images.contains_key(id) {
                return Err(ImageError::no_such_image(id));
            }
            if let Some((r, _)) = state.refs.iter().find(|(_, i)| *i == id) {
                return Err(ImageError::conflict(format!(
                    "conflict: unable to delete {} - image was tagged {r} meanwhile",
                    super::short_id(id)
                )));
            }
            fs::remove_file(self.imagedb().join(digest_hex(id)))
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(io(format!("remove image config {id}")))?;
            state.images.remove(id);
        }
        remove_all(
            &self
                .image_root()
                .join("imagedb/metadata/sha256")
                .join(digest_hex(id)),
        );
        Ok(self.collect_garbage())
    }
}

/// Why a layer record could not be read.
enum ReadLayer {
    /// A file of the record is missing: the record is broken.
    Missing,
    /// Anything else: maybe passing; not a reason to delete.
    Failed(ImageError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_metadata_file_left_by_a_kill_goes_at_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let store = Store::open(dir.path()).unwrap();
        let meta = store
            .image_root()
            .join("imagedb/metadata/sha256")
            .join("ab".repeat(32));
        fs::create_dir_all(&meta).unwrap();
        let tmp = meta.join(format!("{}parent-1-2", crate::util::fs::TEMP_PREFIX));
        fs::write(&tmp, "sha256:").unwrap();
        fs::write(meta.join("parent"), "sha256:x").unwrap();
        drop(store);
        drop(Store::open(dir.path()).unwrap());
        assert!(!tmp.exists());
        assert!(meta.join("parent").exists());
    }
}
