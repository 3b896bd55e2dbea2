//! `docker save` and `docker load`: the combined docker-archive + OCI image-layout tar that
//! Docker 25+ writes, and on load also plain docker-archives and OCI layouts (from skopeo and
//! others), with every blob checked against its digest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::reference::Reference;
use super::store::{ExtractedLayer, Image, Store};
use super::{digest_hex, sha256_digest, ImageError};
use crate::errors::Kinded;
use crate::util::fs::open_in_root;
use crate::util::progress::{JsonMessage, Progress};
use crate::util::tree::remove_all;

/// The largest JSON document (manifest, index, config) read from an archive.
const MAX_JSON_SIZE: u64 = 32 << 20;

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// One entry of `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// An image to save, with the names to record for it.
pub struct SaveItem {
    pub image: Image,
    pub refs: Vec<Reference>,
}

/// Write the archive of `items` to `out`.
pub fn write_save<W: Write>(
    store: &Arc<Store>,
    items: &[SaveItem],
    out: W,
) -> Result<(), ImageError> {
    let chains: Vec<String> = items
        .iter()
        .flat_map(|i| i.image.chain.iter().cloned())
        .collect();
    let _lease = store.lease(&chains);
    let mut tar = tar::Builder::new(out);
    let mut written: HashSet<String> = HashSet::new();
    let io = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| ImageError::io(format!("write archive {what}"), e)
    };
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, dir, std::io::empty())
            .map_err(io(dir))?;
    }
    let mut manifest_json = Vec::new();
    let mut index_entries = Vec::new();
    for item in items {
        let img = &item.image;
        let cfg_path = format!("blobs/sha256/{}", digest_hex(&img.id));
        if written.insert(cfg_path.clone()) {
            append_bytes(&mut tar, &cfg_path, &img.raw_config).map_err(io(&cfg_path))?;
        }
        let mut layer_paths = Vec::new();
        let mut layer_descs = Vec::new();
        for chain in &img.chain {
            let layer = store
                .layer(chain)
                .ok_or_else(|| ImageError::internal(format!("layer {chain} is missing")))?;
            let path = format!("blobs/sha256/{}", digest_hex(&layer.diff_id));
            if written.insert(path.clone()) {
                let data = store.layer_tar(&layer)?;
                append_layer(&mut tar, &path, layer.tar_size, data).map_err(io(&path))?;
            }
            layer_descs.push(json!({"mediaType": MEDIA_OCI_LAYER, "digest": layer.diff_id, "size": layer.tar_size}));
            layer_paths.push(path);
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": img.id, "size": img.raw_config.len()},
            "layers": layer_descs,
        });
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::internal(format!("encode manifest: {e}")))?;
        let manifest_digest = sha256_digest(&manifest_bytes);
        let manifest_path = format!("blobs/sha256/{}", digest_hex(&manifest_digest));
        if written.insert(manifest_path.clone()) {
            append_bytes(&mut tar, &manifest_path, &manifest_bytes).map_err(io(&manifest_path))?;
        }
        let desc = |annotations: Option<Value>| {
            let mut d = json!({"mediaType": MEDIA_OCI_MANIFEST, "digest": manifest_digest, "size": manifest_bytes.len()});
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        let tags: Vec<&Reference> = item.refs.iter().filter(|r| r.tag.is_some()).collect();
        if tags.is_empty() {
            index_entries.push(desc(None));
        }
        for r in &tags {
            index_entries.push(desc(Some(json!({
                "io.containerd.image.name": r.to_string(),
                "org.opencontainers.image.ref.name": r.tag.clone().unwrap_or_default(),
            }))));
        }
        manifest_json.push(ManifestEntry {
            config: cfg_path,
            repo_tags: (!tags.is_empty()).then(|| tags.iter().map(|r| r.familiar()).collect()),
            layers: layer_paths,
        });
    }
    let index =
        json!({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index_entries});
    let index_bytes = to_json(&index)?;
    let manifest_bytes = to_json(&manifest_json)?;
    append_bytes(&mut tar, "index.json", &index_bytes).map_err(io("index.json"))?;
    append_bytes(&mut tar, "manifest.json", &manifest_bytes).map_err(io("manifest.json"))?;
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io("oci-layout"))?;
    let mut out = tar.into_inner().map_err(io("end"))?;
    out.flush().map_err(io("flush"))?;
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(v).map_err(|e| ImageError::internal(format!("encode archive index: {e}")))
}

/// Bytes moved per read and write when a layer's tar is copied into the archive.
const COPY_BUF: usize = 1 << 20;

/// Append a layer's tar as one entry, copied in whole 1 MiB pieces (the tar crate's own copy
/// goes 8 KiB at a time: a read of a file and a write to the client for each).
fn append_layer<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    mut data: R,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_size(size);
    if h.set_path(path).is_err() {
        // Not a `blobs/sha256/<hex>` name: let the tar crate write the long name.
        return tar.append_data(&mut h, path, data);
    }
    h.set_cksum();
    let out = tar.get_mut();
    out.write_all(h.as_bytes())?;
    let mut buf = vec![0u8; COPY_BUF];
    let mut copied = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            match data.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        copied += n as u64;
    }
    if copied != size {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("layer tar is {copied} bytes, its record says {size}"),
        ));
    }
    let pad = (512 - (size % 512) as usize) % 512;
    out.write_all(&[0u8; 512][..pad])
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    tar.append_data(&mut h, path, data)
}

/// What loading found: images with the names to give them.
pub struct LoadedImage {
    pub id: String,
    pub refs: Vec<Reference>,
}

/// Load every image of the archive read by [`read_archive`].
pub fn load_images(
    store: &Arc<Store>,
    un: &mut Unpacked,
    progress: &Progress,
) -> Result<Vec<LoadedImage>, ImageError> {
    let read_json = |un: &Unpacked, rel: &str| -> Result<Value, ImageError> {
        serde_json::from_slice(&un.read_file(rel)?)
            .map_err(|e| ImageError::invalid(format!("invalid archive: {rel}: {e}")))
    };
    if un.exists("manifest.json") {
        let entries: Vec<ManifestEntry> =
            serde_json::from_value(read_json(un, "manifest.json")?)
                .map_err(|e| ImageError::invalid(format!("invalid archive: manifest.json: {e}")))?;
        let mut out = Vec::new();
        for e in entries {
            let config = un.read_file(&e.config)?;
            check_named_digest(&e.config, &config)?;
            let layers: Vec<(String, Option<String>)> =
                e.layers.iter().map(|l| (l.clone(), None)).collect();
            let id = register(store, un, config, &layers, progress)?;
            let mut refs = Vec::new();
            for t in e.repo_tags.unwrap_or_default() {
                refs.push(Reference::parse(&t)?);
            }
            out.push(LoadedImage { id, refs });
        }
        return Ok(out);
    }
    if un.exists("index.json") {
        let index = read_json(un, "index.json")?;
        let mut out = Vec::new();
        for m in index["manifests"].as_array().cloned().unwrap_or_default() {
            let names = names_from_annotations(&m);
            let manifest = resolve_manifest(un, &m)?;
            let cfg_digest = manifest["config"]["digest"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let cfg_path = blob_path(&cfg_digest)?;
            let config = un.read_file(&cfg_path)?;
            check_digest(&cfg_digest, &config)?;
            let mut layers = Vec::new();
            for l in manifest["layers"].as_array().cloned().unwrap_or_default() {
                let d = l["digest"].as_str().unwrap_or("").to_string();
                layers.push((blob_path(&d)?, Some(d)));
            }
            let id = register(store, un, config, &layers, progress)?;
            out.push(LoadedImage { id, refs: names });
        }
        return Ok(out);
    }
    Err(ImageError::invalid(
        "invalid archive: it has neither manifest.json nor index.json".to_string(),
    ))
}

/// The names an OCI index entry carries.
fn names_from_annotations(desc: &Value) -> Vec<Reference> {
    let a = &desc["annotations"];
    if let Some(full) = a["io.containerd.image.name"].as_str() {
        if let Ok(r) = Reference::parse(full) {
            return vec![r];
        }
    }
    if let Some(name) = a["org.opencontainers.image.ref.name"].as_str() {
        // A bare tag names no repository; `name:tag` or `host/name` does.
        if name.contains(':') || name.contains('/') {
            if let Ok(r) = Reference::parse(name) {
                return vec![r];
            }
        }
    }
    Vec::new()
}

/// Follow an index entry to an image manifest, choosing this platform in nested indexes.
fn resolve_manifest(un: &Unpacked, desc: &Value) -> Result<Value, ImageError> {
    let mut desc = desc.clone();
    for _ in 0..4 {
        let digest = desc["digest"].as_str().unwrap_or("").to_string();
        let data = un.read_file(&blob_path(&digest)?)?;
        check_digest(&digest, &data)?;
        let v: Value = serde_json::from_slice(&data)
            .map_err(|e| ImageError::invalid(format!("invalid archive: manifest {digest}: {e}")))?;
        let media = v["mediaType"]
            .as_str()
            .or(desc["mediaType"].as_str())
            .unwrap_or("");
        if media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST || v.get("manifests").is_some() {
            let arch = crate::version::go_arch();
            let chosen = v["manifests"]
                .as_array()
                .and_then(|ms| {
                    ms.iter().find(|m| {
                        m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch
                    })
                })
                .cloned()
                .ok_or_else(|| {
                    ImageError::invalid(format!(
                        "invalid archive: no manifest for linux/{arch} in {digest}"
                    ))
                })?;
            desc = chosen;
            continue;
        }
        return Ok(v);
    }
    Err(ImageError::invalid(
        "invalid archive: indexes nested too deeply".to_string(),
    ))
}

fn blob_path(digest: &str) -> Result<String, ImageError> {
    super::reference::validate_digest(digest)
        .map_err(|_| ImageError::invalid(format!("invalid archive: bad digest {digest:?}")))?;
    Ok(format!("blobs/sha256/{}", digest_hex(digest)))
}

fn read_file(dir: &Path, rel: &str) -> Result<Vec<u8>, ImageError> {
    let f = open_in_root(dir, rel)
        .map_err(|e| ImageError::invalid(format!("invalid archive: open {rel}: {e}")))?;
    read_json_file(f, rel)
}

fn read_json_file(mut f: std::fs::File, rel: &str) -> Result<Vec<u8>, ImageError> {
    let mut buf = Vec::new();
    (&mut f)
        .take(MAX_JSON_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ImageError::invalid(format!("invalid archive: read {rel}: {e}")))?;
    if buf.len() as u64 > MAX_JSON_SIZE {
        return Err(ImageError::invalid(format!(
            "invalid archive: {rel} is larger than {MAX_JSON_SIZE} bytes"
        )));
    }
    Ok(buf)
}

fn check_digest(digest: &str, data: &[u8]) -> Result<(), ImageError> {
    let got = sha256_digest(data);
    if got != digest {
        return Err(ImageError::invalid(format!(
            "invalid archive: content of {digest} has digest {got}"
        )));
    }
    Ok(())
}

/// `blobs/sha256/<hex>` and `<hex>.json` names carry their digest: check it.
fn check_named_digest(path: &str, data: &[u8]) -> Result<(), ImageError> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let hex = name.strip_suffix(".json").unwrap_or(name);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        check_digest(&format!("sha256:{hex}"), data)?;
    }
    Ok(())
}

/// Register the layers (skipping those already present) and the config of one image.
fn register(
    store: &Arc<Store>,
    un: &mut Unpacked,
    config: Vec<u8>,
    layers: &[(String, Option<String>)],
    progress: &Progress,
) -> Result<String, ImageError> {
    let cfg = super::config::ImageConfigFile::parse(&config)?;
    if cfg.rootfs.diff_ids.len() != layers.len() {
        return Err(ImageError::invalid(format!(
            "invalid archive: the config names {} layers, the manifest {}",
            cfg.rootfs.diff_ids.len(),
            layers.len()
        )));
    }
    let chain = super::config::chain_ids(&cfg.rootfs.diff_ids);
    let _lease = store.lease(&chain);
    let missing: Vec<usize> = (0..layers.len())
        .filter(|&i| store.layer(&chain[i]).is_none())
        .collect();
    // Most layers were extracted as the archive streamed by; the rest (a blob that did not
    // look like a layer there) are extracted from the scratch directory now, a few at once (a
    // layer's files do not depend on the layers below it). Then all are registered in order.
    let mut extracted: HashMap<usize, ExtractedLayer> = HashMap::new();
    let mut again: HashMap<usize, String> = HashMap::new();
    let mut todo: Vec<usize> = Vec::new();
    for &i in &missing {
        let (path, digest) = &layers[i];
        match un.take_layer(path, digest.as_deref(), &cfg.rootfs.diff_ids[i], &chain[i])? {
            Take::Layer(x) => {
                extracted.insert(i, *x);
            }
            Take::Registered(chain_id) => {
                again.insert(i, chain_id);
            }
            Take::NotStaged => todo.push(i),
        }
    }
    let results: Vec<Mutex<Option<Result<ExtractedLayer, ImageError>>>> =
        todo.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let workers = super::distribution::extract_parallelism().min(todo.len());
    let dir = un.scratch.0.clone();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = todo.get(k) else { break };
                let (path, digest) = &layers[i];
                let r = un.resolve(path).and_then(|path| {
                    extract_one(
                        store,
                        &dir,
                        &path,
                        digest.as_deref(),
                        &cfg.rootfs.diff_ids[i],
                        progress,
                    )
                });
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                if let Ok(mut slot) = results[k].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    for (k, slot) in results.into_iter().enumerate() {
        match slot.into_inner().ok().flatten() {
            Some(Ok(x)) => {
                extracted.insert(todo[k], x);
            }
            Some(Err(e)) => return Err(e),
            // Not reached: another layer failed first.
            None => {}
        }
    }
    if extracted.len() + again.len() != missing.len() {
        return Err(ImageError::internal(
            "a layer was not extracted".to_string(),
        ));
    }
    let mut parent: Option<String> = None;
    for (i, (path, _)) in layers.iter().enumerate() {
        let x = match (extracted.remove(&i), again.get(&i)) {
            (Some(x), _) => Some(x),
            // A blob another layer registered (the same content on another parent): read
            // back from the store.
            (None, Some(first)) => Some(extract_again(store, first, &cfg.rootfs.diff_ids[i])?),
            (None, None) => None,
        };
        if let Some(x) = x {
            let (layer, _held) = store.commit_layer(x, parent.as_deref())?;
            if layer.chain_id != chain[i] {
                return Err(ImageError::internal(format!(
                    "layer {path} registered as {}, expected {}",
                    layer.chain_id, chain[i]
                )));
            }
        }
        parent = Some(chain[i].clone());
    }
    let (img, _) = store.register_image(config)?;
    Ok(img.id)
}

/// Extract a registered layer (`chain_id`) once more, from its reassembled tar.
fn extract_again(
    store: &Arc<Store>,
    chain_id: &str,
    diff_id: &str,
) -> Result<ExtractedLayer, ImageError> {
    let layer = store.layer(chain_id).ok_or_else(|| {
        ImageError::internal(format!("layer {chain_id} went away during the load"))
    })?;
    store.extract_layer(store.layer_tar(&layer)?, Some(diff_id))
}

/// Extract one layer blob of the archive, checking its DiffID and, when the archive names it by
/// digest, its blob digest.
fn extract_one(
    store: &Arc<Store>,
    dir: &Path,
    path: &str,
    digest: Option<&str>,
    diff_id: &str,
    progress: &Progress,
) -> Result<ExtractedLayer, ImageError> {
    let f = open_in_root(dir, path)
        .map_err(|e| ImageError::invalid(format!("invalid archive: open {path}: {e}")))?;
    // A blob named by a digest other than its DiffID (a compressed one) is hashed as it is
    // read; an uncompressed blob's digest is its DiffID, which the extraction checks.
    let digest = digest.filter(|d| *d != diff_id);
    let mut hashing = HashingReader::new(f, digest.is_some());
    progress.send_blocking(loading_layer(diff_id));
    let x = store.extract_layer(&mut hashing, Some(diff_id))?;
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| ImageError::invalid(format!("invalid archive: read {path}: {e}")))?;
    if let Some(d) = digest {
        check_blob_digest(d, &hashing.digest())?;
    }
    Ok(x)
}

fn loading_layer(diff_id: &str) -> JsonMessage {
    JsonMessage {
        status: Some("Loading layer".to_string()),
        id: Some(super::short_id(diff_id).to_string()),
        ..Default::default()
    }
}

fn check_blob_digest(want: &str, got: &str) -> Result<(), ImageError> {
    if got != want {
        // The content matched its DiffID, so the layer itself is sound; the blob was
        // misnamed.
        return Err(ImageError::invalid(format!(
            "invalid archive: blob {want} has digest {got}"
        )));
    }
    Ok(())
}

/// Hashes what passes through (when asked to).
struct HashingReader<R> {
    inner: R,
    hash: Option<sha2::Sha256>,
}

impl<R> HashingReader<R> {
    fn new(inner: R, hash: bool) -> Self {
        use sha2::Digest;
        HashingReader {
            inner,
            hash: hash.then(sha2::Sha256::new),
        }
    }
    fn digest(&self) -> String {
        use sha2::Digest;
        match &self.hash {
            Some(h) => format!("sha256:{}", hex::encode(h.clone().finalize())),
            None => String::new(),
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hash {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// An archive read as it streamed by ([`read_archive`]): its small files in a scratch
/// directory, its layer blobs already extracted, and its links as a table (none is made on
/// disk, so nothing written later can follow one).
pub struct Unpacked {
    scratch: ScratchDir,
    /// What each blob that looked like a layer became, by its cleaned path in the archive.
    staged: HashMap<String, Staged>,
    /// Symbolic and hard links: cleaned path → the cleaned path it names.
    links: HashMap<String, String>,
}

enum Staged {
    Layer {
        /// `None` once taken; `chain` is then the layer it was registered as.
        layer: Option<Box<ExtractedLayer>>,
        chain: String,
        diff_id: String,
        /// The sha256 of the blob as stored (compressed or not).
        digest: String,
    },
    /// It looked like a layer but did not extract: an error only if an image uses it.
    Broken(String),
}

/// What [`Unpacked::take_layer`] found for a layer.
enum Take {
    Layer(Box<ExtractedLayer>),
    /// The blob was registered already as this chain (another image's, or this image's at
    /// another position).
    Registered(String),
    /// No blob at that path was extracted on the way.
    NotStaged,
}

/// How many links a name may go through.
const MAX_LINKS: usize = 16;

impl Unpacked {
    /// `path` cleaned and with every link on it followed.
    fn resolve(&self, path: &str) -> Result<String, ImageError> {
        let mut p = clean_archive_path(path.as_bytes())
            .ok_or_else(|| ImageError::invalid(format!("invalid archive: bad path {path:?}")))?;
        'follow: for _ in 0..MAX_LINKS {
            // The longest prefix of `p` (whole components) that is a link.
            let mut end = p.len();
            loop {
                if let Some(target) = self.links.get(&p[..end]) {
                    let rest = &p[end..];
                    p = clean_archive_path(format!("{target}{rest}").as_bytes()).ok_or_else(
                        || ImageError::invalid(format!("invalid archive: bad path {path:?}")),
                    )?;
                    continue 'follow;
                }
                match p[..end].rfind('/') {
                    Some(slash) => end = slash,
                    None => return Ok(p),
                }
            }
        }
        Err(ImageError::invalid(format!(
            "invalid archive: too many links in {path:?}"
        )))
    }

    fn exists(&self, path: &str) -> bool {
        self.resolve(path)
            .is_ok_and(|p| self.staged.contains_key(&p) || self.scratch.0.join(p).exists())
    }

    /// A JSON document of the archive.
    fn read_file(&self, rel: &str) -> Result<Vec<u8>, ImageError> {
        read_file(&self.scratch.0, &self.resolve(rel)?)
    }

    /// The layer extracted from the blob at `path`, checked against the DiffID the config
    /// gives it and the digest the manifest names it by.
    fn take_layer(
        &mut self,
        path: &str,
        digest: Option<&str>,
        diff_id: &str,
        chain_id: &str,
    ) -> Result<Take, ImageError> {
        let resolved = self.resolve(path)?;
        let Some(staged) = self.staged.get_mut(&resolved) else {
            return Ok(Take::NotStaged);
        };
        let (layer, chain, got_diff, got_digest) = match staged {
            Staged::Broken(e) => return Err(ImageError::invalid(e.clone())),
            Staged::Layer {
                layer,
                chain,
                diff_id,
                digest,
            } => (layer, chain, diff_id, digest),
        };
        if got_diff != diff_id {
            return Err(ImageError::invalid(format!(
                "layer content does not match its DiffID: expected {diff_id}, got {got_diff}"
            )));
        }
        if let Some(d) = digest.filter(|d| *d != diff_id) {
            check_blob_digest(d, got_digest)?;
        }
        Ok(match layer.take() {
            Some(x) => {
                *chain = chain_id.to_string();
                Take::Layer(x)
            }
            None => Take::Registered(chain.clone()),
        })
    }
}

/// An archive member's name cleaned to a path inside the archive (`None`: it climbs out, or
/// is not UTF-8). The root is the empty string.
fn clean_archive_path(raw: &[u8]) -> Option<String> {
    let comps = crate::util::inroot::components(raw).ok()?;
    String::from_utf8(crate::util::inroot::join(&comps)).ok()
}

/// Whether the first bytes of a blob are those of a layer: a tar header or a compressed
/// stream (gzip, zstd, xz, bzip2). JSON documents never start so.
fn looks_like_layer(head: &[u8]) -> bool {
    const MAGICS: [&[u8]; 4] = [
        &[0x1f, 0x8b],
        &[0x28, 0xb5, 0x2f, 0xfd],
        &[0xfd, b'7', b'z', b'X', b'Z', 0],
        b"BZh",
    ];
    MAGICS.iter().any(|m| head.starts_with(m)) || head.get(257..262).is_some_and(|m| m == b"ustar")
}

/// Read the archive stream of a `docker load`. Each member that looks like a layer is
/// extracted into a layer directory of the store as it goes by (its DiffID and its digest
/// computed on the way), so a layer's bytes are written once; the other members (manifests,
/// configs) go to a scratch directory. The layers no image uses are removed when the result
/// is dropped.
pub fn read_archive<R: Read>(
    store: &Arc<Store>,
    src: R,
    progress: &Progress,
) -> Result<Unpacked, ImageError> {
    let dir = store
        .tmp_root()
        .join(format!("load-{}", crate::util::rand::random_hex(16)));
    std::fs::create_dir(&dir)
        .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
    let mut un = Unpacked {
        scratch: ScratchDir(dir),
        staged: HashMap::new(),
        links: HashMap::new(),
    };
    let failed = std::cell::Cell::new(false);
    let source = SourceReader {
        inner: src,
        failed: &failed,
    };
    // Special members above Go's 1 MiB are refused before the tar crate reads one whole.
    let mut archive = tar::Archive::new(crate::util::targuard::HeaderGuard::new(source));
    let entries = archive.entries().map_err(|e| stream_error(e, &failed))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| stream_error(e, &failed))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let path = clean_archive_path(&raw).ok_or_else(|| {
            ImageError::invalid(format!("{name}: path escapes the archive or is not UTF-8"))
        })?;
        if path.is_empty() {
            continue;
        }
        if let Some(link) = un.link_above(&path) {
            return Err(ImageError::invalid(format!(
                "{name}: inside the link {link}"
            )));
        }
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(un.scratch.0.join(&path))
                    .map_err(|e| scratch_error(&path, e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                un.links.remove(&path);
                un.member(store, &path, &mut entry, &failed, progress)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                // A symlink names a path from its own directory, a hard link from the root;
                // one that climbs out is recorded as naming nothing.
                let full = match (kind, path.rfind('/')) {
                    (tar::EntryType::Symlink, Some(slash)) if !target.starts_with(b"/") => {
                        let mut f = path.as_bytes()[..slash].to_vec();
                        f.push(b'/');
                        f.extend_from_slice(&target);
                        f
                    }
                    _ => target,
                };
                let resolved = if full.starts_with(b"/") {
                    clean_archive_path(&full)
                } else {
                    let cleaned = crate::util::inroot::clean_bytes(&full);
                    (!cleaned.starts_with(b".."))
                        .then(|| clean_archive_path(&cleaned))
                        .flatten()
                };
                un.staged.remove(&path);
                un.links
                    .insert(path, resolved.unwrap_or_else(|| "\0escapes".to_string()));
            }
            // Devices, fifos and the like are no part of an image archive.
            _ => {}
        }
    }
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| stream_error(e, &failed))?;
    Ok(un)
}

impl Unpacked {
    /// The link at or above `path` (whole components), if any.
    fn link_above(&self, path: &str) -> Option<String> {
        let mut end = path.len();
        loop {
            if self.links.contains_key(&path[..end]) && end < path.len() {
                return Some(path[..end].to_string());
            }
            end = path[..end].rfind('/')?;
        }
    }

    /// A regular member: a layer blob is extracted, anything else written to the scratch
    /// directory.
    fn member<R: Read>(
        &mut self,
        store: &Arc<Store>,
        path: &str,
        entry: &mut R,
        failed: &std::cell::Cell<bool>,
        progress: &Progress,
    ) -> Result<(), ImageError> {
        let mut head = [0u8; 512];
        let mut have = 0;
        while have < head.len() {
            match entry.read(&mut head[have..]) {
                Ok(0) => break,
                Ok(n) => have += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(stream_error(e, failed)),
            }
        }
        let head = &head[..have];
        if !looks_like_layer(head) {
            let dst = self.scratch.0.join(path);
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(|e| scratch_error(path, e))?;
            }
            let mut f = std::fs::File::create(&dst).map_err(|e| scratch_error(path, e))?;
            f.write_all(head)
                .map_err(|e| ImageError::io(format!("write {}", dst.display()), e))?;
            copy_member(entry, &mut f, failed, &dst)?;
            self.staged.remove(path);
            return Ok(());
        }
        let mut hashing = HashingReader::new(std::io::Cursor::new(head).chain(entry), true);
        let staged = match store.extract_layer(&mut hashing, None) {
            Ok(x) => {
                std::io::copy(&mut hashing, &mut std::io::sink())
                    .map_err(|e| stream_error(e, failed))?;
                progress.send_blocking(loading_layer(x.diff_id()));
                Staged::Layer {
                    chain: String::new(),
                    diff_id: x.diff_id().to_string(),
                    digest: hashing.digest(),
                    layer: Some(Box::new(x)),
                }
            }
            // The client went away, or the data root failed: the whole load fails.
            Err(e) if failed.get() || e.kind() != crate::errors::ErrorKind::InvalidParameter => {
                return Err(e)
            }
            // Not a layer after all: read past it, and fail only an image that uses it.
            Err(e) => {
                std::io::copy(&mut hashing, &mut std::io::sink())
                    .map_err(|e| stream_error(e, failed))?;
                Staged::Broken(format!("invalid archive: {path}: {e}"))
            }
        };
        self.staged.insert(path.to_string(), staged);
        Ok(())
    }
}

/// A member that could not be written to the scratch directory: the archive's fault when it
/// puts a file where it made a directory or the other way round, else the data root's.
fn scratch_error(path: &str, e: std::io::Error) -> ImageError {
    match e.raw_os_error() {
        Some(libc::EISDIR | libc::ENOTDIR | libc::EEXIST) => {
            ImageError::invalid(format!("{path}: {e}"))
        }
        _ => ImageError::io(format!("write {path} of the archive"), e),
    }
}

/// Copy the rest of a member into a scratch file.
fn copy_member<R: Read>(
    entry: &mut R,
    f: &mut std::fs::File,
    failed: &std::cell::Cell<bool>,
    dst: &Path,
) -> Result<(), ImageError> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(stream_error(e, failed)),
        };
        f.write_all(&buf[..n])
            .map_err(|e| ImageError::io(format!("write {}", dst.display()), e))?;
    }
}

/// Records whether the caller's reader itself failed (the client went away), so that an
/// error surfacing through the tar parser can be told apart from a malformed archive.
struct SourceReader<'a, R> {
    inner: R,
    failed: &'a std::cell::Cell<bool>,
}

impl<R: Read> Read for SourceReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let res = self.inner.read(buf);
        if let Err(e) = &res {
            if e.kind() != std::io::ErrorKind::Interrupted {
                self.failed.set(true);
            }
        }
        res
    }
}

/// An error reading the archive: the source's own (500), or the archive's fault (400).
fn stream_error(e: std::io::Error, failed: &std::cell::Cell<bool>) -> ImageError {
    if failed.get() {
        ImageError::io("read the archive".to_string(), e)
    } else {
        ImageError::invalid(e.to_string())
    }
}

/// A directory removed when dropped.
pub struct ScratchDir(pub std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        remove_all(&self.0);
    }
}

/// Group references by image for saving: `names` as the user gave them.
pub fn plan_save(
    names: &[String],
    resolve: impl Fn(&str) -> Result<Vec<(Image, Vec<Reference>)>, ImageError>,
) -> Result<Vec<SaveItem>, ImageError> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, SaveItem> = HashMap::new();
    for (image, refs) in names
        .iter()
        .map(|n| resolve(n))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
    {
        let entry = by_id.entry(image.id.clone()).or_insert_with(|| {
            order.push(image.id.clone());
            SaveItem {
                image,
                refs: Vec::new(),
            }
        });
        for r in refs {
            if !entry.refs.contains(&r) {
                entry.refs.push(r);
            }
        }
    }
    let mut sorted: BTreeMap<usize, SaveItem> = BTreeMap::new();
    for (i, id) in order.iter().enumerate() {
        if let Some(item) = by_id.remove(id) {
            sorted.insert(i, item);
        }
    }
    Ok(sorted.into_values().collect())
}
