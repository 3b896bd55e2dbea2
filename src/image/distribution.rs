//! Pull and push: moving images between the store and registries, with dockerd's progress
//! messages. Layers download three at a time into scratch files and are extracted in order as
//! soon as each is complete; pushes compress layers on the fly and skip or mount blobs the
//! registry already has.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use tokio::sync::{mpsc, Semaphore};

use super::archive::{
    MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use super::config::{chain_ids, ImageConfigFile};
use super::reference::Reference;
use super::store::Store;
use super::{digest_hex, short_id, ImageError};
use crate::registry::client::{endpoints, pick_endpoint, AuthConfig, Session};
use crate::registry::{RegistryError, RegistryOptions};
use crate::util::fs::atomic_write;
use crate::util::progress::{JsonMessage, Progress, ProgressDetail};
use crate::util::rand::random_hex;

/// Layers downloaded at once, as dockerd's `max-concurrent-downloads` default.
const CONCURRENT_DOWNLOADS: usize = 3;
/// A layer's upload in flight: it ends with the blob's digest and size.
type Upload = tokio::task::JoinHandle<Result<(String, u64), ImageError>>;

/// Layers uploaded at once, as dockerd's `max-concurrent-uploads` default.
const CONCURRENT_UPLOADS: usize = 5;
/// The gzip level of pushed layers: dockerd's (Go's `gzip.DefaultCompression`, level 6).
const PUSH_GZIP_LEVEL: u32 = 6;
/// Bytes of compressed layer per message to the upload (and per HTTP chunk).
const UPLOAD_CHUNK: usize = 1 << 20;
const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

impl From<RegistryError> for ImageError {
    fn from(e: RegistryError) -> Self {
        use crate::errors::Kinded;
        ImageError::new(e.kind(), e.to_string())
    }
}

fn msg(status: &str, id: &str) -> JsonMessage {
    JsonMessage {
        status: Some(status.to_string()),
        id: Some(id.to_string()),
        ..Default::default()
    }
}

fn progress_msg(status: &str, id: &str, current: u64, total: Option<u64>) -> JsonMessage {
    let bar = match total {
        Some(t) if t > 0 => {
            let filled = ((current.min(t) * 50) / t) as usize;
            format!(
                "[{}>{}] {}/{}",
                "=".repeat(filled.saturating_sub(1)),
                " ".repeat(50 - filled.max(1)),
                human(current),
                human(t)
            )
        }
        _ => human(current),
    };
    JsonMessage {
        status: Some(status.to_string()),
        id: Some(id.to_string()),
        progress: Some(bar),
        progress_detail: Some(ProgressDetail {
            current: Some(current as i64),
            total: total.map(|t| t as i64),
        }),
        ..Default::default()
    }
}

fn human(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2}GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.2}MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.2}kB", f / 1e3)
    } else {
        format!("{n}B")
    }
}

/// Where a layer's compressed blob is known to live (dockerd's v2 metadata).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct BlobSource {
    #[serde(rename = "Digest")]
    digest: String,
    #[serde(rename = "SourceRepository")]
    repository: String,
    #[serde(rename = "Size", default)]
    size: u64,
}

fn metadata_path(store: &Store, diff_id: &str) -> std::path::PathBuf {
    store
        .tmp_root()
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default()
        .join("image/overlay2/distribution/v2metadata-by-diffid/sha256")
        .join(digest_hex(diff_id))
}

fn blob_sources(store: &Store, diff_id: &str) -> Vec<BlobSource> {
    std::fs::read(metadata_path(store, diff_id))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn add_blob_source(store: &Store, diff_id: &str, source: BlobSource) {
    let mut all = blob_sources(store, diff_id);
    if all.contains(&source) {
        return;
    }
    all.push(source);
    let path = metadata_path(store, diff_id);
    let ok = path
        .parent()
        .map(|d| crate::util::fs::ensure_dir(d, 0o700).is_ok())
        .unwrap_or(false)
        && serde_json::to_vec(&all)
            .ok()
            .map(|b| atomic_write(&path, &b, 0o600).is_ok())
            .unwrap_or(false);
    if !ok {
        tracing::warn!("could not record where layer {diff_id} lives");
    }
}

/// The platform to pull: `os/arch[/variant]`, this host's by default.
fn wanted_platform(platform: Option<&str>) -> (String, String, Option<String>) {
    match platform.filter(|p| !p.is_empty()) {
        Some(p) => {
            let mut it = p.split('/');
            let os = it.next().unwrap_or("linux").to_string();
            let arch = it
                .next()
                .map(str::to_string)
                .unwrap_or_else(|| crate::version::go_arch().to_string());
            (os, arch, it.next().map(str::to_string))
        }
        None => (
            "linux".to_string(),
            crate::version::go_arch().to_string(),
            None,
        ),
    }
}

/// `POST /images/create?fromImage=...`.
pub async fn pull(
    store: Arc<Store>,
    opts: &RegistryOptions,
    reference: Reference,
    platform: Option<&str>,
    auth: &AuthConfig,
    progress: &Progress,
) -> Result<(String, Reference), ImageError> {
    let (store, r) = (&store, &reference);
    let id = from_endpoints(opts, &reference.domain, auth, |s| async move {
        pull_from(store, &s, r, platform, progress, true)
            .await
            .map(|(id, _)| id)
    })
    .await?;
    Ok((id, reference))
}

/// `POST /images/create?fromImage=<name>` with neither a tag nor a digest (`docker pull -a`):
/// every tag the registry lists, one after the other as dockerd's `pullRepository` does (each
/// `<tag>: Pulling from …` and `Digest: …`), then one `Status:` line for the repository.
pub async fn pull_all_tags(
    store: Arc<Store>,
    opts: &RegistryOptions,
    reference: &Reference,
    platform: Option<&str>,
    auth: &AuthConfig,
    progress: &Progress,
) -> Result<(), ImageError> {
    let store = &store;
    let newer = from_endpoints(opts, &reference.domain, auth, |s| async move {
        let mut newer = false;
        for t in &s.tags(&reference.path).await? {
            let r = reference.with_tag(t);
            let (_, up_to_date) = pull_from(store, &s, &r, platform, progress, false).await?;
            newer |= !up_to_date;
        }
        Ok(newer)
    })
    .await?;
    progress
        .send(pull_status(&reference.familiar(), !newer))
        .await;
    Ok(())
}

/// Run `op` against the registry of `domain`: Docker Hub's mirrors, then Hub itself (a
/// mirror's failure moves on to the next endpoint); another registry's one endpoint (HTTPS, or
/// plain HTTP for insecure registries that do not speak TLS). dockerd answers a registry's
/// "unauthorized" on pull with a 500 (errdefs.Unknown): a 401 would make the docker CLI stop
/// and prompt for a login.
async fn from_endpoints<T, F, Fut>(
    opts: &RegistryOptions,
    domain: &str,
    auth: &AuthConfig,
    mut op: F,
) -> Result<T, ImageError>
where
    F: FnMut(Session) -> Fut,
    Fut: std::future::Future<Output = Result<T, ImageError>>,
{
    let candidates = if domain == crate::registry::DEFAULT_INDEX {
        endpoints(opts, domain)
    } else {
        vec![pick_endpoint(opts, domain).await?]
    };
    let mut last_err = None;
    for ep in candidates {
        let (mirror, host) = (ep.mirror, ep.host.clone());
        match op(Session::new(ep, auth)).await {
            Ok(v) => return Ok(v),
            Err(e) if mirror => {
                tracing::info!("pull from mirror {host} failed: {e}; trying the next endpoint");
                last_err = Some(e);
            }
            Err(e) => return Err(unauthorized_as_internal(e)),
        }
    }
    Err(last_err
        .map(unauthorized_as_internal)
        .unwrap_or_else(|| ImageError::internal("no registry endpoint".to_string())))
}

fn unauthorized_as_internal(e: ImageError) -> ImageError {
    use crate::errors::Kinded;
    if e.kind() == crate::errors::ErrorKind::Unauthorized {
        ImageError::internal(e.to_string())
    } else {
        e
    }
}

/// Pull `r` (a tag or a digest) from one endpoint: the image ID, and whether the name
/// already pointed at it ("up to date"). With `status`, the closing `Status:` line.
async fn pull_from(
    store: &Arc<Store>,
    s: &Session,
    r: &Reference,
    platform: Option<&str>,
    progress: &Progress,
    status: bool,
) -> Result<(String, bool), ImageError> {
    let repo = r.path.as_str();
    let what = r.digest.clone().or(r.tag.clone()).unwrap_or_default();
    let top = s.manifest(repo, &what).await?;
    let mut manifest: Value = serde_json::from_slice(&top.bytes)
        .map_err(|e| ImageError::invalid(format!("invalid manifest for {}: {e}", r.familiar())))?;
    let media = manifest["mediaType"]
        .as_str()
        .unwrap_or(&top.media_type)
        .to_string();
    if media == MEDIA_OCI_INDEX || media == MEDIA_DOCKER_LIST || manifest.get("manifests").is_some()
    {
        let (os, arch, variant) = wanted_platform(platform);
        let entry = manifest["manifests"]
            .as_array()
            .and_then(|ms| {
                ms.iter().find(|m| {
                    let p = &m["platform"];
                    p["os"] == os.as_str()
                        && p["architecture"] == arch.as_str()
                        && variant.as_deref().is_none_or(|v| p["variant"] == v)
                })
            })
            .cloned()
            .ok_or_else(|| {
                ImageError::new(
                    crate::errors::ErrorKind::NotFound,
                    format!("no matching manifest for {os}/{arch} in the manifest list entries"),
                )
            })?;
        let d = entry["digest"].as_str().unwrap_or("").to_string();
        let m = s.manifest(repo, &d).await?;
        manifest = serde_json::from_slice(&m.bytes)
            .map_err(|e| ImageError::invalid(format!("invalid manifest {d}: {e}")))?;
    } else if media != MEDIA_OCI_MANIFEST
        && media != MEDIA_DOCKER_MANIFEST
        && manifest.get("config").is_none()
    {
        return Err(ImageError::invalid(format!(
            "unsupported manifest media type {media:?} for {}",
            r.familiar()
        )));
    }
    // Like dockerd, say nothing until the manifest is resolved: earlier errors become HTTP
    // errors, not stream lines.
    let shown_what = r.tag.clone().or(r.digest.clone()).unwrap_or_default();
    progress
        .send(msg(&format!("Pulling from {}", r.path), &shown_what))
        .await;
    let cfg_digest = manifest["config"]["digest"]
        .as_str()
        .unwrap_or("")
        .to_string();
    super::reference::validate_digest(&cfg_digest).map_err(|_| {
        ImageError::invalid(format!(
            "manifest of {} has no valid config digest",
            r.familiar()
        ))
    })?;
    let layers: Vec<(String, u64)> = manifest["layers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap_or("").to_string(),
                l["size"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    // Digests name scratch files: anything but `sha256:<64 hex>` is refused before any use.
    for (d, _) in &layers {
        super::reference::validate_digest(d).map_err(|_| {
            ImageError::invalid(format!(
                "manifest of {} has an invalid layer digest {d:?}",
                r.familiar()
            ))
        })?;
    }
    // The config: small, kept in memory, verified.
    let config = if let Some(img) = store.image(&cfg_digest) {
        img.raw_config.as_ref().clone()
    } else {
        fetch_config(s, repo, &cfg_digest).await?
    };
    let cfg = ImageConfigFile::parse(&config)?;
    if cfg.rootfs.diff_ids.len() != layers.len() {
        return Err(ImageError::invalid(format!(
            "manifest of {} has {} layers, its config {}",
            r.familiar(),
            layers.len(),
            cfg.rootfs.diff_ids.len()
        )));
    }
    let chain = chain_ids(&cfg.rootfs.diff_ids);
    // "Up to date" only when the name already pointed at this image, as dockerd says it.
    let named = r
        .tag
        .as_ref()
        .map(|t| r.with_tag(t))
        .unwrap_or_else(|| r.with_digest(&top.digest));
    let up_to_date = store.resolve_reference(&named).as_deref() == Some(cfg_digest.as_str());
    let _lease = store.lease(&chain);
    // Downloads: three at a time into scratch files.
    let scratch =
        super::archive::ScratchDir(store.tmp_root().join(format!("pull-{}", random_hex(16))));
    std::fs::create_dir(&scratch.0).map_err(|e| ImageError::io("create pull scratch", e))?;
    let sem = Arc::new(Semaphore::new(CONCURRENT_DOWNLOADS));
    // Each layer is extracted as soon as it is downloaded, a few at once (a layer's files do
    // not depend on the layers below it); they are registered in order below.
    let extractors = Arc::new(Semaphore::new(extract_parallelism()));
    let mut downloads = Vec::new();
    // If the pull fails or is cancelled, the downloads still running stop too.
    let mut abort_all = AbortAll(Vec::new());
    for (i, (digest, size)) in layers.iter().enumerate() {
        let id = short_id(digest).to_string();
        if store.layer(&chain[i]).is_some() {
            progress.send(msg("Already exists", &id)).await;
            downloads.push(None);
            continue;
        }
        progress.send(msg("Pulling fs layer", &id)).await;
        let (s, sem, extractors, progress, digest, size) = (
            s.clone(),
            sem.clone(),
            extractors.clone(),
            progress.clone(),
            digest.clone(),
            *size,
        );
        let path = scratch.0.join(digest_hex(&digest));
        let repo = repo.to_string();
        let (store2, diff) = (store.clone(), cfg.rootfs.diff_ids[i].clone());
        let handle = tokio::spawn(async move {
            {
                let _permit = sem
                    .acquire_owned()
                    .await
                    .map_err(|_| ImageError::internal("download queue closed".to_string()))?;
                download(&s, &repo, &digest, size, &path, &progress).await?;
            }
            let _permit = extractors
                .acquire_owned()
                .await
                .map_err(|_| ImageError::internal("extraction queue closed".to_string()))?;
            progress.send(msg("Extracting", short_id(&digest))).await;
            tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&path)
                    .map_err(|e| ImageError::io(format!("open {}", path.display()), e))?;
                let l = store2
                    .extract_layer(std::io::BufReader::with_capacity(1 << 20, f), Some(&diff));
                let _ = std::fs::remove_file(&path);
                l
            })
            .await
            .map_err(|e| ImageError::internal(format!("extract task: {e}")))?
        });
        abort_all.0.push(handle.abort_handle());
        downloads.push(Some(handle));
    }
    // Registration, in order, as each extraction completes.
    let mut parent: Option<String> = None;
    for (i, d) in downloads.into_iter().enumerate() {
        if let Some(handle) = d {
            let extracted = handle
                .await
                .map_err(|e| ImageError::internal(format!("download task: {e}")))??;
            let id = short_id(&layers[i].0).to_string();
            let (store2, parent2) = (store.clone(), parent.clone());
            let (layer, _held) = tokio::task::spawn_blocking(move || {
                store2.commit_layer(extracted, parent2.as_deref())
            })
            .await
            .map_err(|e| ImageError::internal(format!("register task: {e}")))??;
            if layer.chain_id != chain[i] {
                return Err(ImageError::internal(format!(
                    "layer {} registered as {}",
                    chain[i], layer.chain_id
                )));
            }
            add_blob_source(
                store,
                &cfg.rootfs.diff_ids[i],
                BlobSource {
                    digest: layers[i].0.clone(),
                    repository: r.repository(),
                    size: layers[i].1,
                },
            );
            progress.send(msg("Pull complete", &id)).await;
        }
        parent = Some(chain[i].clone());
    }
    drop(scratch);
    let (img, _) = store.register_image(config)?;
    if let Some(t) = &r.tag {
        store.add_reference(&r.with_tag(t), &img.id)?;
    }
    store.add_reference(&r.with_digest(&top.digest), &img.id)?;
    progress
        .send(JsonMessage::status(format!("Digest: {}", top.digest)))
        .await;
    if status {
        let shown = if r.tag.is_some() {
            r.familiar()
        } else {
            r.with_digest(&top.digest).familiar()
        };
        progress.send(pull_status(&shown, up_to_date)).await;
    }
    Ok((img.id, up_to_date))
}

/// The last line of a pull (moby's `writeStatus`).
fn pull_status(shown: &str, up_to_date: bool) -> JsonMessage {
    JsonMessage::status(if up_to_date {
        format!("Status: Image is up to date for {shown}")
    } else {
        format!("Status: Downloaded newer image for {shown}")
    })
}

/// Download an image config: bounded to `MAX_CONFIG_SIZE` and checked against its digest.
async fn fetch_config(s: &Session, repo: &str, digest: &str) -> Result<Vec<u8>, ImageError> {
    super::reference::validate_digest(digest)
        .map_err(|_| ImageError::invalid(format!("invalid config digest {digest:?}")))?;
    let mut buf = Vec::new();
    let mut st = s.blob_stream(repo, digest).await?;
    while let Some(c) = st.next().await {
        if buf.len() > MAX_CONFIG_SIZE {
            return Err(ImageError::invalid(format!(
                "config blob {digest} is larger than {MAX_CONFIG_SIZE} bytes"
            )));
        }
        buf.extend_from_slice(&c.map_err(|e| {
            ImageError::new(
                crate::errors::ErrorKind::Unavailable,
                format!("download config {digest}: {e}"),
            )
        })?);
    }
    if super::sha256_digest(&buf) != digest {
        return Err(ImageError::invalid(format!(
            "config blob {digest} does not match its digest"
        )));
    }
    Ok(buf)
}

async fn download(
    s: &Session,
    repo: &str,
    digest: &str,
    size: u64,
    path: &std::path::Path,
    progress: &Progress,
) -> Result<(), ImageError> {
    let id = short_id(digest).to_string();
    let unavailable = |e: std::io::Error| {
        ImageError::new(
            crate::errors::ErrorKind::Unavailable,
            format!("download {digest}: {e}"),
        )
    };
    let mut stream = s.blob_stream(repo, digest).await?;
    let mut file = std::fs::File::create(path)
        .map_err(|e| ImageError::io(format!("create {}", path.display()), e))?;
    let mut hash = sha2::Sha256::new();
    let mut done = 0u64;
    let mut last_report = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unavailable)?;
        hash.update(&chunk);
        file.write_all(&chunk)
            .map_err(|e| ImageError::io(format!("write {}", path.display()), e))?;
        done += chunk.len() as u64;
        // A registry that sends more than the manifest said is lying: stop before the disk fills.
        if size > 0 && done > size {
            return Err(ImageError::invalid(format!(
                "filesystem layer verification failed for digest {digest}: more than {size} bytes"
            )));
        }
        if done - last_report >= 512 * 1024 || done == size {
            last_report = done;
            progress
                .send(progress_msg("Downloading", &id, done, Some(size)))
                .await;
        }
    }
    let got = format!("sha256:{}", hex::encode(hash.finalize()));
    if got != digest {
        return Err(ImageError::invalid(format!(
            "filesystem layer verification failed for digest {digest}"
        )));
    }
    progress.send(msg("Verifying Checksum", &id)).await;
    progress.send(msg("Download complete", &id)).await;
    Ok(())
}

/// `POST /images/{name}/push`: push `asked` (a tag), or every tag of its repository (a name
/// alone), in moby's order (`distribution.Push`, `pushRepository`): the "push refers to" line,
/// the repository's names checked, the registry reached, then the tag looked up.
pub async fn push(
    store: Arc<Store>,
    opts: &RegistryOptions,
    asked: &Reference,
    auth: &AuthConfig,
    progress: &Progress,
) -> Result<Vec<(Reference, String)>, ImageError> {
    progress
        .send(JsonMessage::status(format!(
            "The push refers to repository [{}]",
            asked.repository()
        )))
        .await;
    // moby's `ReferencesByName`: the repository's tags and digests.
    let names: Vec<(Reference, String)> = store
        .references()
        .into_iter()
        .filter(|(x, _)| x.repository() == asked.repository())
        .collect();
    if names.is_empty() {
        return Err(ImageError::not_found(format!(
            "An image does not exist locally with the tag: {}",
            asked.familiar_repository()
        )));
    }
    let ep = pick_endpoint(opts, &asked.domain).await?;
    let s = Session::new(ep, auth);
    let repo = asked.path.clone();
    s.authenticate(&repo, oci_client::RegistryOperation::Push)
        .await?;
    let targets: Vec<(Reference, String)> = if asked.tag.is_some() {
        let id = store.resolve_reference(asked).ok_or_else(|| {
            ImageError::not_found(format!("tag does not exist: {}", asked.familiar()))
        })?;
        vec![(asked.clone(), id)]
    } else if asked.digest.is_some() {
        return Err(ImageError::invalid(
            "cannot push a digest reference".to_string(),
        ));
    } else {
        names.into_iter().filter(|(x, _)| x.tag.is_some()).collect()
    };
    if targets.is_empty() {
        return Err(ImageError::not_found(format!(
            "no tags to push for {}",
            asked.familiar_repository()
        )));
    }
    let chains: Vec<String> = targets
        .iter()
        .filter_map(|(_, id)| store.image(id))
        .flat_map(|img| img.chain)
        .collect();
    let _lease = store.lease(&chains);
    let mut pushed = Vec::new();
    let mut done_layers: HashMap<String, (String, u64)> = HashMap::new();
    let sem = Arc::new(Semaphore::new(CONCURRENT_UPLOADS));
    for (r, id) in targets {
        let img = store
            .image(&id)
            .ok_or_else(|| ImageError::no_such_image(&r.familiar()))?;
        // Every layer the registry may not have yet goes at once, up to five at a time
        // (dockerd's `max-concurrent-uploads`); the manifest lists them in order.
        let mut order = Vec::new();
        let mut uploads: HashMap<String, Upload> = HashMap::new();
        // If the push fails or is cancelled, the uploads still running stop too.
        let mut abort_all = AbortAll(Vec::new());
        for chain in &img.chain {
            let layer = store
                .layer(chain)
                .ok_or_else(|| ImageError::internal(format!("layer {chain} is missing")))?;
            order.push(layer.diff_id.clone());
            if done_layers.contains_key(&layer.diff_id) || uploads.contains_key(&layer.diff_id) {
                continue;
            }
            let lid = short_id(&layer.diff_id).to_string();
            progress.send(msg("Preparing", &lid)).await;
            let (store, s, r, progress, sem) = (
                store.clone(),
                s.clone(),
                r.clone(),
                progress.clone(),
                sem.clone(),
            );
            let diff_id = layer.diff_id.clone();
            let handle = tokio::spawn(async move {
                let _permit = match sem.clone().try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        progress.send(msg("Waiting", &lid)).await;
                        sem.acquire_owned()
                            .await
                            .map_err(|_| ImageError::internal("upload queue closed".to_string()))?
                    }
                };
                let (digest, size) = push_layer(&store, &s, &r, &layer, &lid, &progress).await?;
                add_blob_source(
                    &store,
                    &layer.diff_id,
                    BlobSource {
                        digest: digest.clone(),
                        repository: r.repository(),
                        size,
                    },
                );
                Ok((digest, size))
            });
            abort_all.0.push(handle.abort_handle());
            uploads.insert(diff_id, handle);
        }
        let mut descs = Vec::new();
        for diff_id in &order {
            if let Some(handle) = uploads.remove(diff_id) {
                let done = handle
                    .await
                    .map_err(|e| ImageError::internal(format!("upload task: {e}")))??;
                done_layers.insert(diff_id.clone(), done);
            }
            let (digest, size) = done_layers
                .get(diff_id)
                .ok_or_else(|| ImageError::internal(format!("layer {diff_id} was not pushed")))?;
            descs.push(
                json!({"mediaType": MEDIA_DOCKER_LAYER_GZIP, "size": size, "digest": digest}),
            );
        }
        drop(abort_all);
        if !s.blob_exists(&repo, &img.id).await.unwrap_or(false) {
            s.upload_bytes(&repo, img.raw_config.as_ref().clone(), &img.id)
                .await?;
        }
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_MANIFEST,
            "config": {"mediaType": MEDIA_DOCKER_CONFIG, "size": img.raw_config.len(), "digest": img.id},
            "layers": descs,
        });
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ImageError::internal(format!("encode manifest: {e}")))?;
        let digest = super::sha256_digest(&body);
        let tag = r
            .tag
            .clone()
            .unwrap_or_else(|| super::reference::DEFAULT_TAG.to_string());
        let size = body.len();
        s.put_manifest(&repo, &tag, body, MEDIA_DOCKER_MANIFEST)
            .await?;
        store.add_reference(&r.with_digest(&digest), &img.id)?;
        progress
            .send(JsonMessage {
                status: Some(format!("{tag}: digest: {digest} size: {size}")),
                ..Default::default()
            })
            .await;
        progress
            .send(JsonMessage {
                aux: Some(json!({"Tag": tag, "Digest": digest, "Size": size})),
                ..Default::default()
            })
            .await;
        pushed.push((r, digest));
    }
    Ok(pushed)
}

/// Push one layer unless the registry has it: HEAD by a known digest, mount from another
/// repository of the same registry, or compress and upload.
async fn push_layer(
    store: &Arc<Store>,
    s: &Session,
    r: &Reference,
    layer: &super::store::Layer,
    lid: &str,
    progress: &Progress,
) -> Result<(String, u64), ImageError> {
    let repo = r.path.as_str();
    for src in blob_sources(store, &layer.diff_id) {
        let Ok(src_ref) = Reference::parse_any(&src.repository) else {
            continue;
        };
        // Only blobs of this registry whose size is known can go into a manifest unseen.
        if src_ref.domain != r.domain || src.size == 0 {
            continue;
        }
        if s.blob_exists(repo, &src.digest).await.unwrap_or(false) {
            progress.send(msg("Layer already exists", lid)).await;
            return Ok((src.digest.clone(), src.size));
        }
        if src_ref.path != r.path && s.mount(repo, &src_ref.path, &src.digest).await.is_ok() {
            progress
                .send(msg(&format!("Mounted from {}", src_ref.path), lid))
                .await;
            return Ok((src.digest.clone(), src.size));
        }
    }
    // Compress the reassembled layer on the fly (on a blocking thread, which also hashes the
    // compressed bytes) and stream it to the registry in one request.
    let mut upload = s.begin_upload(repo).await?;
    let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let store2 = store.clone();
    let layer2 = layer.clone();
    let total = layer.tar_size;
    let prog = progress.clone();
    let id = lid.to_string();
    let producer = tokio::task::spawn_blocking(move || -> Result<(String, u64), ImageError> {
        let produce = || -> Result<(String, u64), ImageError> {
            let tar = store2.layer_tar(&layer2)?;
            let counted = CountingReader {
                inner: tar,
                count: 0,
                last: 0,
                total,
                progress: prog,
                id,
            };
            let mut gz = flate2::read::GzEncoder::new(
                std::io::BufReader::with_capacity(UPLOAD_CHUNK, counted),
                flate2::Compression::new(PUSH_GZIP_LEVEL),
            );
            let mut hash = sha2::Sha256::new();
            let mut size = 0u64;
            loop {
                // Whole chunks: one channel message and one HTTP chunk per MiB.
                let mut buf = vec![0u8; UPLOAD_CHUNK];
                let mut n = 0;
                while n < buf.len() {
                    match std::io::Read::read(&mut gz, &mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(ImageError::io("compress layer", e)),
                    }
                }
                if n == 0 {
                    return Ok((format!("sha256:{}", hex::encode(hash.finalize())), size));
                }
                buf.truncate(n);
                hash.update(&buf);
                size += n as u64;
                if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                    return Err(ImageError::internal(UPLOAD_STOPPED.to_string()));
                }
            }
        };
        let r = produce();
        if let Err(e) = &r {
            // Fail the upload itself: a short stream must not become a complete blob.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        r
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let sent = upload.send(stream).await;
    let produced = producer
        .await
        .map_err(|e| ImageError::internal(format!("compress task: {e}")))?;
    // A real producer failure explains an upload failure better than the upload's own error;
    // "upload stopped" is only the echo of a failed upload.
    let (digest, size) = match (produced, sent) {
        (Ok(done), Ok(())) => done,
        (Ok(_), Err(u)) => return Err(u.into()),
        (Err(p), Err(u)) if p.to_string() == UPLOAD_STOPPED => return Err(u.into()),
        (Err(p), _) => return Err(p),
    };
    upload.commit(&digest).await?;
    progress.send(msg("Pushed", lid)).await;
    Ok((digest, size))
}

const UPLOAD_STOPPED: &str = "upload stopped";
/// The largest image config berth downloads (configs are kilobytes; this stops a hostile
/// registry from filling memory).
const MAX_CONFIG_SIZE: usize = 16 << 20;

/// How many layers a pull or a load extracts at once: one per CPU, at most four.
pub(super) fn extract_parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
}

/// Aborts the tasks it holds when dropped.
struct AbortAll(Vec<tokio::task::AbortHandle>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Counts what the compressor reads, for the push progress.
struct CountingReader<R> {
    inner: R,
    count: u64,
    last: u64,
    total: u64,
    progress: Progress,
    id: String,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count - self.last >= 512 * 1024 || (n == 0 && self.count > self.last) {
            self.last = self.count;
            self.progress.send_blocking(progress_msg(
                "Pushing",
                &self.id,
                self.count,
                Some(self.total),
            ));
        }
        Ok(n)
    }
}

/// `GET /distribution/{name}/json`: the descriptor the registry has for a reference and the
/// platforms it offers.
///
/// The endpoints are a pull's (moby's `GetRepositories` over `LookupPullEndpoints`): for Docker
/// Hub its `--registry-mirror`s in order, then Hub itself; each failure moves on to the next
/// endpoint and the last one's error is the answer.
pub async fn inspect(
    opts: &RegistryOptions,
    r: &Reference,
    auth: &AuthConfig,
) -> Result<bollard_stubs::models::DistributionInspect, ImageError> {
    let candidates = if r.domain == crate::registry::DEFAULT_INDEX {
        endpoints(opts, &r.domain)
    } else {
        vec![pick_endpoint(opts, &r.domain).await?]
    };
    let mut last_err = None;
    for ep in candidates {
        let host = ep.host.clone();
        match inspect_at(Session::new(ep, auth), r).await {
            Ok(d) => return Ok(d),
            Err(e) => {
                tracing::info!(
                    "distribution inspect at {host} failed: {e}; trying the next endpoint"
                );
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| ImageError::internal("no registry endpoint".to_string())))
}

/// The descriptor and platforms of `r` at one endpoint.
async fn inspect_at(
    s: Session,
    r: &Reference,
) -> Result<bollard_stubs::models::DistributionInspect, ImageError> {
    use bollard_stubs::models::{DistributionInspect, OciDescriptor, OciPlatform};
    let what = r
        .digest
        .clone()
        .or(r.tag.clone())
        .unwrap_or_else(|| super::reference::DEFAULT_TAG.to_string());
    let m = s.manifest(&r.path, &what).await?;
    let v: Value = serde_json::from_slice(&m.bytes)
        .map_err(|e| ImageError::invalid(format!("invalid manifest: {e}")))?;
    let media = v["mediaType"].as_str().unwrap_or(&m.media_type).to_string();
    let platform = |p: &Value| OciPlatform {
        architecture: p["architecture"].as_str().map(str::to_string),
        os: p["os"].as_str().map(str::to_string),
        variant: p["variant"].as_str().map(str::to_string),
        ..Default::default()
    };
    let platforms = if let Some(list) = v["manifests"].as_array() {
        list.iter().map(|e| platform(&e["platform"])).collect()
    } else {
        let cfg = v["config"]["digest"].as_str().unwrap_or("").to_string();
        let buf = fetch_config(&s, &r.path, &cfg).await?;
        let c: Value = serde_json::from_slice(&buf)
            .map_err(|e| ImageError::invalid(format!("invalid config: {e}")))?;
        vec![platform(&c)]
    };
    Ok(DistributionInspect {
        descriptor: OciDescriptor {
            media_type: Some(media),
            digest: Some(m.digest.clone()),
            size: Some(m.bytes.len() as i64),
            ..Default::default()
        },
        platforms,
    })
}
