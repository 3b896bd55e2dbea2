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
use super::tarsplit::LayerCheck;
use super::{digest_hex, sha256_digest, ImageError};
use crate::errors::Kinded;
use crate::util::fs::open_in_root;
use crate::util::io::WriteChunk;
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
pub fn write_save<W: WriteChunk>(
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
    // moby's legacy `repositories` file: familiar repository -> tag -> the top layer's DiffID
    // (hex), for every tag saved.
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
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
                let data = store.layer_tar_unchecked(&layer)?;
                append_layer(&mut tar, &path, &layer.diff_id, layer.tar_size, data)
                    .map_err(io(&path))?;
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
        if let Some(top) = layer_descs.last().and_then(|d| d["digest"].as_str()) {
            for r in &tags {
                repositories
                    .entry(r.familiar_repository())
                    .or_default()
                    .insert(
                        r.tag.clone().unwrap_or_default(),
                        digest_hex(top).to_string(),
                    );
            }
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
    // Written only when a tag was saved, as moby's (Go's `json.Encoder`: a newline ends it).
    if !repositories.is_empty() {
        let mut bytes = to_json(&repositories)?;
        bytes.push(b'\n');
        append_bytes(&mut tar, LEGACY_REPOSITORIES, &bytes).map_err(io(LEGACY_REPOSITORIES))?;
    }
    let mut out = tar.into_inner().map_err(io("end"))?;
    out.flush().map_err(io("flush"))?;
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(v).map_err(|e| ImageError::internal(format!("encode archive index: {e}")))
}

/// Bytes moved per read and write when a layer's tar is copied into the archive: under the
/// allocator's mmap threshold (`util::mem`), so each chunk comes from the heap, not from
/// freshly faulted pages.
const COPY_BUF: usize = 512 << 10;

/// Append a layer's tar as one entry, in chunks of [`COPY_BUF`] handed to the writer as they
/// are (the tar crate's own copy goes 8 KiB at a time: a read of a file and a write to the
/// client for each). Each chunk is also handed to a thread that hashes the layer meanwhile;
/// at its end the digest and length must be the layer's `diff_id` and `size`, else the
/// archive fails (a layer that cannot be reproduced exactly is never passed off as whole, as
/// dockerd checks too). On the same thread the SHA-256 was a third of a save's CPU.
fn append_layer<W: WriteChunk, R: Read>(
    tar: &mut tar::Builder<W>,
    path: &str,
    diff_id: &str,
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
        let verified = super::tarsplit::Verified::new(data, diff_id, size);
        return tar.append_data(&mut h, path, verified);
    }
    h.set_cksum();
    let out = tar.get_mut();
    out.write_all(h.as_bytes())?;
    let check = std::thread::scope(|s| -> std::io::Result<LayerCheck> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(4);
        let hasher = s.spawn(move || {
            let mut check = LayerCheck::default();
            for chunk in rx {
                check.update(&chunk);
            }
            check
        });
        loop {
            let mut buf = Vec::with_capacity(COPY_BUF);
            // An error returns here, and dropping the sender ends the hasher.
            (&mut data).take(COPY_BUF as u64).read_to_end(&mut buf)?;
            if buf.is_empty() {
                break;
            }
            let chunk = bytes::Bytes::from(buf);
            // The hasher only ends when the sender is dropped.
            let _ = tx.send(chunk.clone());
            out.write_chunk(chunk)?;
        }
        drop(tx);
        hasher
            .join()
            .map_err(|_| std::io::Error::other("the layer's hasher panicked"))
    })?;
    check.verify(diff_id, size)?;
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

/// Load every image of the archive already extracted at `dir`.
pub fn load_dir(
    store: &Arc<Store>,
    dir: &Path,
    progress: &Progress,
) -> Result<Vec<LoadedImage>, ImageError> {
    let read_json = |rel: &str| -> Result<Value, ImageError> {
        serde_json::from_slice(&read_file(dir, rel)?)
            .map_err(|e| ImageError::invalid(format!("invalid archive: {rel}: {e}")))
    };
    if dir.join("manifest.json").exists() {
        let entries: Vec<ManifestEntry> = serde_json::from_value(read_json("manifest.json")?)
            .map_err(|e| ImageError::invalid(format!("invalid archive: manifest.json: {e}")))?;
        let mut out = Vec::new();
        for e in entries {
            let config = read_file(dir, &e.config)?;
            check_named_digest(&e.config, &config)?;
            let layers: Vec<(String, Option<String>)> =
                e.layers.iter().map(|l| (l.clone(), None)).collect();
            let id = register(store, dir, config, &layers, progress)?;
            let mut refs = Vec::new();
            for t in e.repo_tags.unwrap_or_default() {
                refs.push(Reference::parse(&t)?);
            }
            out.push(LoadedImage { id, refs });
        }
        return Ok(out);
    }
    if dir.join("index.json").exists() {
        let index = read_json("index.json")?;
        let mut out = Vec::new();
        for m in index["manifests"].as_array().cloned().unwrap_or_default() {
            let names = names_from_annotations(&m);
            let manifest = resolve_manifest(dir, &m)?;
            let cfg_digest = manifest["config"]["digest"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let cfg_path = blob_path(&cfg_digest)?;
            let config = read_file(dir, &cfg_path)?;
            check_digest(&cfg_digest, &config)?;
            let mut layers = Vec::new();
            for l in manifest["layers"].as_array().cloned().unwrap_or_default() {
                let d = l["digest"].as_str().unwrap_or("").to_string();
                layers.push((blob_path(&d)?, Some(d)));
            }
            let id = register(store, dir, config, &layers, progress)?;
            out.push(LoadedImage { id, refs: names });
        }
        return Ok(out);
    }
    if dir.join(LEGACY_REPOSITORIES).exists() {
        return load_legacy(store, dir, progress);
    }
    Err(ImageError::invalid(
        "invalid archive: it has neither manifest.json nor index.json".to_string(),
    ))
}

/// The legacy names file of `docker save`: written beside `manifest.json`, the only names of
/// an archive from before Docker 1.10.
const LEGACY_REPOSITORIES: &str = "repositories";

/// A v1 image of a legacy archive, once registered.
struct LegacyImage {
    id: String,
    diff_ids: Vec<String>,
    history: Vec<Value>,
    layers: Vec<(String, Option<String>)>,
}

/// The format of `docker save` before Docker 1.10 (moby's `legacyLoad`): a directory per v1
/// image (`json`, `layer.tar`) naming its parent, and the names in `repositories`. Each v1
/// image becomes an image whose layers are its ancestors' and its own, with a parent link,
/// its config the v1 JSON without the v1 bookkeeping (moby's `MakeConfigFromV1Config`).
fn load_legacy(
    store: &Arc<Store>,
    dir: &Path,
    progress: &Progress,
) -> Result<Vec<LoadedImage>, ImageError> {
    let repos: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_slice(&read_file(dir, LEGACY_REPOSITORIES)?).map_err(|e| {
            ImageError::invalid(format!("invalid archive: {LEGACY_REPOSITORIES}: {e}"))
        })?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| ImageError::io(format!("read {}", dir.display()), e))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let mut loaded: HashMap<String, LegacyImage> = HashMap::new();
    for n in &names {
        load_legacy_image(store, dir, n, &mut loaded, progress, 0)?;
    }
    let mut out: Vec<LoadedImage> = Vec::new();
    for (name, tags) in repos {
        for (tag, old) in tags {
            let id = loaded
                .get(&old)
                .map(|l| l.id.clone())
                .ok_or_else(|| ImageError::invalid(format!("invalid target ID: {old}")))?;
            let r = Reference::parse(&format!("{name}:{tag}"))?;
            match out.iter_mut().find(|l| l.id == id) {
                Some(l) => l.refs.push(r),
                None => out.push(LoadedImage { id, refs: vec![r] }),
            }
        }
    }
    Ok(out)
}

fn load_legacy_image(
    store: &Arc<Store>,
    dir: &Path,
    old_id: &str,
    loaded: &mut HashMap<String, LegacyImage>,
    progress: &Progress,
    depth: usize,
) -> Result<(), ImageError> {
    if loaded.contains_key(old_id) {
        return Ok(());
    }
    // The names come from the archive: one plain path element each, and a chain of parents
    // no longer than an image can have layers.
    if old_id.is_empty() || old_id == "." || old_id == ".." || old_id.contains('/') {
        return Err(ImageError::invalid(format!(
            "invalid archive: invalid image ID {old_id:?}"
        )));
    }
    if depth > 127 {
        return Err(ImageError::invalid(
            "invalid archive: the chain of parents is too long (or a loop)".to_string(),
        ));
    }
    let raw = read_file(dir, &format!("{old_id}/json"))?;
    let mut v1: serde_json::Map<String, Value> = serde_json::from_slice(&raw)
        .map_err(|e| ImageError::invalid(format!("invalid archive: {old_id}/json: {e}")))?;
    let os = v1.get("os").and_then(Value::as_str).unwrap_or("linux");
    if !os.is_empty() && os != "linux" {
        return Err(ImageError::invalid(format!(
            "cannot load {os} image on linux"
        )));
    }
    let parent = v1
        .get("parent")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let (parent_id, mut diff_ids, mut history, mut layers) = match &parent {
        Some(p) => {
            load_legacy_image(store, dir, p, loaded, progress, depth + 1)?;
            let l = &loaded[p];
            (
                Some(l.id.clone()),
                l.diff_ids.clone(),
                l.history.clone(),
                l.layers.clone(),
            )
        }
        None => (None, Vec::new(), Vec::new(), Vec::new()),
    };
    // The layer's DiffID: the digest of the (uncompressed) layer.tar.
    let layer_path = format!("{old_id}/layer.tar");
    let f = open_in_root(dir, &layer_path)
        .map_err(|e| ImageError::invalid(format!("invalid archive: open {layer_path}: {e}")))?;
    let mut hashing = HashingReader::new(f, true);
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| ImageError::invalid(format!("invalid archive: read {layer_path}: {e}")))?;
    diff_ids.push(hashing.digest());
    layers.push((layer_path, None));
    // moby's `HistoryFromConfig`: empty fields left out.
    let text = |k: &str| v1.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let created_by = v1
        .get("container_config")
        .and_then(|c| c.get("Cmd"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let mut h = serde_json::Map::new();
    for (k, val) in [
        ("created", text("created")),
        ("author", text("author")),
        ("created_by", created_by),
        ("comment", text("comment")),
    ] {
        if !val.is_empty() {
            h.insert(k.to_string(), Value::String(val));
        }
    }
    history.push(Value::Object(h));
    for k in ["id", "parent", "Size", "parent_id", "layer_id", "throwaway"] {
        v1.remove(k);
    }
    v1.insert(
        "rootfs".to_string(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    v1.insert("history".to_string(), Value::Array(history.clone()));
    let config = serde_json::to_vec(&v1)
        .map_err(|e| ImageError::internal(format!("encode image config: {e}")))?;
    let id = register(store, dir, config, &layers, progress)?;
    if let Some(p) = &parent_id {
        store.set_parent(&id, p)?;
    }
    loaded.insert(
        old_id.to_string(),
        LegacyImage {
            id,
            diff_ids,
            history,
            layers,
        },
    );
    Ok(())
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
fn resolve_manifest(dir: &Path, desc: &Value) -> Result<Value, ImageError> {
    let mut desc = desc.clone();
    for _ in 0..4 {
        let digest = desc["digest"].as_str().unwrap_or("").to_string();
        let data = read_file(dir, &blob_path(&digest)?)?;
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
    let mut f = open_in_root(dir, rel)
        .map_err(|e| ImageError::invalid(format!("invalid archive: open {rel}: {e}")))?;
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
    dir: &Path,
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
    // The missing layers are extracted a few at once (a layer's files do not depend on the
    // layers below it), then registered in order.
    let todo: Vec<usize> = (0..layers.len())
        .filter(|&i| store.layer(&chain[i]).is_none())
        .collect();
    let results: Vec<Mutex<Option<Result<ExtractedLayer, ImageError>>>> =
        todo.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let workers = super::distribution::extract_parallelism().min(todo.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = todo.get(k) else { break };
                let (path, digest) = &layers[i];
                let r = extract_one(
                    store,
                    dir,
                    path,
                    digest.as_deref(),
                    &cfg.rootfs.diff_ids[i],
                    progress,
                );
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                if let Ok(mut slot) = results[k].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    let mut extracted: HashMap<usize, ExtractedLayer> = HashMap::new();
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
    if extracted.len() != todo.len() {
        return Err(ImageError::internal(
            "a layer was not extracted".to_string(),
        ));
    }
    let mut parent: Option<String> = None;
    for (i, (path, _)) in layers.iter().enumerate() {
        if let Some(x) = extracted.remove(&i) {
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
    progress.send_blocking(JsonMessage {
        status: Some("Loading layer".to_string()),
        id: Some(super::short_id(diff_id).to_string()),
        ..Default::default()
    });
    let x = store
        .extract_layer(&mut hashing, Some(diff_id))
        .map_err(|e| archive_fault(e, Some(path)))?;
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| ImageError::invalid(format!("invalid archive: read {path}: {e}")))?;
    if let Some(d) = digest {
        let got = hashing.digest();
        if got != d {
            // The content matched its DiffID, so the layer itself is sound; the blob was
            // misnamed.
            return Err(ImageError::invalid(format!(
                "invalid archive: blob {d} has digest {got}"
            )));
        }
    }
    Ok(x)
}

/// A load's error as it is reported: the archive's fault (an invalid parameter) says
/// `invalid archive: [<member>: ]…` (a 400); a full disk or another fault of the data root
/// keeps its own kind and words (a 500).
pub(super) fn archive_fault(e: ImageError, member: Option<&str>) -> ImageError {
    match (e.kind(), member) {
        (crate::errors::ErrorKind::InvalidParameter, Some(m)) => {
            ImageError::invalid(format!("invalid archive: {m}: {e}"))
        }
        (crate::errors::ErrorKind::InvalidParameter, None) => {
            ImageError::invalid(format!("invalid archive: {e}"))
        }
        _ => e,
    }
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

/// Extract an archive stream into a fresh scratch directory (entries resolved inside it).
pub fn unpack_to_scratch<R: Read>(store: &Store, src: R) -> Result<ScratchDir, ImageError> {
    let dir = store
        .tmp_root()
        .join(format!("load-{}", crate::util::rand::random_hex(16)));
    std::fs::create_dir(&dir)
        .map_err(|e| ImageError::io(format!("create {}", dir.display()), e))?;
    let scratch = ScratchDir(dir);
    super::apply::unpack_tar(src, &scratch.0).map_err(|e| match e {
        // The archive itself is no tar: say so without calling it a layer.
        super::apply::ApplyError::Malformed { .. } => {
            let text = e.to_string();
            let text = text
                .strip_prefix("invalid layer archive: ")
                .unwrap_or(&text);
            ImageError::invalid(text.to_string())
        }
        e => e.into(),
    })?;
    Ok(scratch)
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
