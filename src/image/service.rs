//! The image manager: what the image endpoints do, over the [`Store`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use bollard_stubs::models::{
    DriverData, ImageConfig, ImageDeleteResponseItem, ImageHistoryResponseItem, ImageInspect,
    ImageInspectMetadata, ImageInspectRootFs, ImagePruneResponse, ImageSummary,
};

use serde_json::Value;

use super::changes::apply_changes;
use super::config::{History, ImageConfigFile, RootFs, RunConfig};
use super::reference::{is_id_prefix, Reference};
use super::store::{Image, Store};
use super::{short_id, ImageError};
use crate::errors::Kinded;
use crate::events::{Event, EventBus};
use crate::filters::Filters;
use crate::registry::client::AuthConfig;
use crate::registry::{RegistryError, RegistryOptions};
use crate::util::io::{BodyReceiver, ChannelReader};
use crate::util::progress::{JsonMessage, Progress};
use crate::util::time::{parse_timestamp_or_error, rfc3339_nano};

/// Options of `GET /images/json`.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub all: bool,
    pub shared_size: bool,
    pub filters: Filters,
}

/// Options of `POST /images/create?fromSrc=…`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `fromSrc` as the client gave it (`-` for the body, else a URL): the history's comment
    /// says `Imported from <src>` when there is no `message`, as dockerd's.
    pub src: String,
    pub repo: Option<String>,
    pub tag: Option<String>,
    pub message: Option<String>,
    pub changes: Vec<String>,
    pub platform: Option<String>,
}

pub struct ImageService {
    store: Arc<Store>,
    events: Arc<EventBus>,
    /// Set while a prune runs: a second one is refused, as in dockerd.
    pruning: std::sync::atomic::AtomicBool,
    /// Which container uses an image: `(container ID, running)` (set by the daemon).
    usage: std::sync::RwLock<Option<UsageCheck>>,
    /// Mirrors and insecure registries for pull, push, login, search and distribution (set by
    /// the daemon at start and on reload).
    registry: std::sync::RwLock<RegistryOptions>,
}

/// Answers whether a container uses an image ID: `(container ID, running)`.
pub type UsageCheck = Box<dyn Fn(&str) -> Option<(String, bool)> + Send + Sync>;

/// Clears the prune flag when the prune ends, however it ends.
struct PruneGuard<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for PruneGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

const LIST_FILTERS: &[&str] = &["before", "dangling", "label", "reference", "since", "until"];
const PRUNE_FILTERS: &[&str] = &["dangling", "label", "label!", "until"];

/// What image inspect answers: today's shape and the deprecated fields that API versions
/// below 1.52 still carry (moby's `compat.WithExtraFields` in `getImagesByName`).
#[derive(Debug, Clone)]
pub struct InspectData {
    pub inspect: ImageInspect,
    pub legacy: LegacyInspect,
}

/// The deprecated fields of image inspect.
#[derive(Debug, Clone, Default)]
pub struct LegacyInspect {
    /// The image it was committed or built on (the classic builder's parent link).
    pub parent: String,
    pub docker_version: String,
    /// The committed container (below API 1.45).
    pub container: String,
    /// The committed container's config (below API 1.45): a Go `container.Config` always,
    /// its zero value under the stored fields.
    pub container_config: Value,
}

/// An image config's `container_config` as dockerd reports it: a `container.Config` always
/// (Go's zero value when the image has none, as imported or pulled images), the stored fields
/// over that zero value. docker-compose 1.29 reads `ContainerConfig.Volumes`.
fn legacy_container_config(stored: Option<&Value>) -> Value {
    let mut config = serde_json::json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "",
        "Entrypoint": null, "Labels": null
    });
    if let (Some(zero), Some(Value::Object(stored))) = (config.as_object_mut(), stored) {
        for (k, v) in stored {
            zero.insert(k.clone(), v.clone());
        }
    }
    config
}

impl ImageService {
    pub fn new(store: Arc<Store>, events: Arc<EventBus>) -> Self {
        ImageService {
            store,
            events,
            pruning: std::sync::atomic::AtomicBool::new(false),
            usage: std::sync::RwLock::new(None),
            registry: std::sync::RwLock::new(RegistryOptions::default()),
        }
    }

    /// Install the registry options (at start and on every config reload).
    pub fn set_registry_options(&self, opts: RegistryOptions) {
        match self.registry.write() {
            Ok(mut r) => *r = opts,
            Err(p) => *p.into_inner() = opts,
        }
    }

    /// A snapshot of the registry options.
    pub fn registry_options(&self) -> RegistryOptions {
        match self.registry.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Install the check `docker rmi` and prune use to keep images that containers use.
    pub fn set_usage_check(&self, check: UsageCheck) {
        match self.usage.write() {
            Ok(mut u) => *u = Some(check),
            Err(p) => *p.into_inner() = Some(check),
        }
    }

    fn user_of(&self, image_id: &str) -> Option<(String, bool)> {
        let u = match self.usage.read() {
            Ok(u) => u,
            Err(p) => p.into_inner(),
        };
        u.as_ref().and_then(|f| f(image_id))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn count(&self) -> usize {
        self.store.images().len()
    }

    /// An image event as moby's `LogImageEvent` makes it: the image's labels (while it
    /// exists), then `name`. The actor is the image ID, except for pull and push, whose actor
    /// is the reference and `name` its repository; the other actions name the ID itself,
    /// and only `tag` names the new reference.
    pub(super) fn event(&self, action: &str, id: &str, name: Option<&str>, img: Option<&Image>) {
        let mut e = Event::new("image", action, id);
        if let Some(img) = img {
            for (k, v) in img.config.labels() {
                e = e.attribute(k, v);
            }
        }
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            e = e.attribute("name", n);
        }
        self.events.publish(e);
    }

    /// Find an image by full ID, ID prefix, `name:tag` or `name@digest`, as dockerd does.
    pub fn get_image(&self, name: &str) -> Result<Image, ImageError> {
        if let Some(hex) = name.strip_prefix("sha256:") {
            if hex.len() == 64 {
                return self
                    .store
                    .image(name)
                    .ok_or_else(|| ImageError::no_such_image(name));
            }
        }
        if let Ok(r) = Reference::parse(name) {
            if let Some(id) = self.store.resolve_reference(&r) {
                if let Some(img) = self.store.image(&id) {
                    return Ok(img);
                }
            }
            // `busybox@sha256:...` where the digest is the image ID itself.
            if let Some(d) = &r.digest {
                if let Some(img) = self.store.image(d) {
                    if self
                        .store
                        .references_of(&img.id)
                        .iter()
                        .any(|x| x.repository() == r.repository())
                    {
                        return Ok(img);
                    }
                }
            }
        }
        if is_id_prefix(name) {
            let hex = name.strip_prefix("sha256:").unwrap_or(name);
            let matches: Vec<Image> = self
                .store
                .images()
                .into_iter()
                .filter(|i| super::digest_hex(&i.id).starts_with(hex))
                .collect();
            match matches.len() {
                1 => {
                    return matches
                        .into_iter()
                        .next()
                        .ok_or_else(|| ImageError::no_such_image(name))
                }
                0 => {}
                _ => {
                    return Err(ImageError::invalid(format!(
                        "multiple IDs found with provided prefix: {name}"
                    )))
                }
            }
        }
        match Reference::parse(name) {
            Ok(r) => Err(ImageError::no_such_image(&r.familiar())),
            Err(_) => Err(ImageError::no_such_image(name)),
        }
    }

    fn size_of(&self, img: &Image) -> i64 {
        img.chain
            .iter()
            .filter_map(|c| self.store.layer(c))
            .map(|l| l.size as i64)
            .sum()
    }

    fn tags_and_digests(&self, id: &str) -> (Vec<String>, Vec<String>) {
        let mut tags = Vec::new();
        let mut digests = Vec::new();
        for r in self.store.references_of(id) {
            if r.digest.is_some() {
                digests.push(r.familiar());
            } else {
                tags.push(r.familiar());
            }
        }
        (tags, digests)
    }

    /// `GET /images/json`.
    pub fn list(&self, opts: &ListOptions) -> Result<Vec<ImageSummary>, ImageError> {
        let f = &opts.filters;
        f.validate(LIST_FILTERS)
            .map_err(|e| ImageError::invalid(e.to_string()))?;
        // As moby's `Images`: `dangling=true` keeps untagged images only; `dangling=false`
        // leaves out the images that have neither a tag nor a digest.
        let dangling_only = f
            .get_bool_or_default("dangling", false)
            .map_err(|e| ImageError::invalid(e.to_string()))?;
        // As moby's `Images`: `before` and `until` make one limit, the earliest of them (an
        // image created at it or later is left out); `since` the latest of its images.
        let mut before: Option<i128> = None;
        for b in f.get("before") {
            let t = self.get_image(b)?.config.created_nanos();
            before = Some(before.map_or(t, |x| x.min(t)));
        }
        let now = SystemTime::now();
        for u in f.get("until") {
            let t = until_nanos(u, now)?;
            before = Some(before.map_or(t, |x| x.min(t)));
        }
        let mut since: Option<i128> = None;
        for s in f.get("since") {
            let t = self.get_image(s)?.config.created_nanos();
            since = Some(since.map_or(t, |x| x.max(t)));
        }
        let images = self.store.images();
        // The images that have children: the others are moby's `imageStore.Heads()`.
        let parents: HashSet<&str> = images.iter().filter_map(|i| i.parent.as_deref()).collect();
        let mut layer_users: HashMap<&str, usize> = HashMap::new();
        if opts.shared_size {
            for img in &images {
                for c in &img.chain {
                    *layer_users.entry(c.as_str()).or_default() += 1;
                }
            }
        }
        let mut out = Vec::new();
        for img in &images {
            let created = img.config.created_unix();
            let refs = self.store.references_of(&img.id);
            let (tags, digests) = self.tags_and_digests(&img.id);
            let has_children = parents.contains(img.id.as_str());
            // `dangling=true` looks among the images without children only (moby's
            // `imageStore.Heads()`), with `all` too: an intermediate image is no dangling
            // image, and `docker rmi $(docker images -aqf dangling=true)` meets no conflict.
            if dangling_only && (!tags.is_empty() || has_children) {
                continue;
            }
            // An untagged image with children is an intermediate (build) image: shown with
            // `all` only, as dockerd.
            if refs.is_empty() && !opts.all && has_children {
                continue;
            }
            // `dangling=false`: an image without any name is left out.
            if refs.is_empty() && f.contains("dangling") && !dangling_only {
                continue;
            }
            let created_ns = img.config.created_nanos();
            if before.is_some_and(|b| created_ns >= b) || since.is_some_and(|s| created_ns <= s) {
                continue;
            }
            let labels = img.config.labels();
            if !f.match_kv_list("label", &labels) {
                continue;
            }
            let (tags, digests) = if f.contains("reference") {
                // Only the names that match are shown, as dockerd does.
                let matched: Vec<&Reference> = refs
                    .iter()
                    .filter(|r| f.get("reference").any(|pat| reference_matches(pat, r)))
                    .collect();
                if matched.is_empty() {
                    continue;
                }
                (
                    matched
                        .iter()
                        .filter(|r| r.digest.is_none())
                        .map(|r| r.familiar())
                        .collect(),
                    matched
                        .iter()
                        .filter(|r| r.digest.is_some())
                        .map(|r| r.familiar())
                        .collect(),
                )
            } else {
                (tags, digests)
            };
            let shared = if opts.shared_size {
                img.chain
                    .iter()
                    .filter(|c| layer_users.get(c.as_str()).copied().unwrap_or(0) > 1)
                    .filter_map(|c| self.store.layer(c))
                    .map(|l| l.size as i64)
                    .sum()
            } else {
                -1
            };
            out.push(ImageSummary {
                id: img.id.clone(),
                parent_id: img.parent.clone().unwrap_or_default(),
                repo_tags: tags,
                repo_digests: digests,
                created,
                size: self.size_of(img),
                shared_size: shared,
                labels,
                containers: -1,
                manifests: None,
                descriptor: None,
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The image part of `GET /system/df`: the bytes of all layers, and every image with its
    /// shared size.
    pub fn disk_usage(&self) -> Result<(i64, Vec<ImageSummary>), ImageError> {
        let mut layers: HashMap<String, i64> = HashMap::new();
        for img in self.store.images() {
            for c in &img.chain {
                if let Some(l) = self.store.layer(c) {
                    layers.insert(c.clone(), l.size as i64);
                }
            }
        }
        let mut images = self.list(&ListOptions {
            shared_size: true,
            ..Default::default()
        })?;
        for i in &mut images {
            i.containers = 0;
        }
        Ok((layers.values().sum(), images))
    }

    /// `GET /images/{name}/json`: the answer, and the fields API versions below 1.52 (1.45,
    /// 1.44) add to it.
    pub fn inspect(&self, name: &str) -> Result<InspectData, ImageError> {
        let img = self.get_image(name)?;
        Ok(InspectData {
            legacy: LegacyInspect {
                parent: img.parent.clone().unwrap_or_default(),
                docker_version: img.config.docker_version.clone().unwrap_or_default(),
                container: img
                    .config
                    .other
                    .get("container")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string(),
                container_config: legacy_container_config(img.config.other.get("container_config")),
            },
            inspect: self.inspect_current(&img),
        })
    }

    fn inspect_current(&self, img: &Image) -> ImageInspect {
        let (tags, digests) = self.tags_and_digests(&img.id);
        let c = &img.config;
        let run = c.config.clone().unwrap_or_default();
        let mut layers: Vec<String> = img
            .chain
            .iter()
            .filter_map(|ch| self.store.layer(ch))
            .map(|l| self.store.layer_diff(&l).display().to_string())
            .collect();
        let upper = layers.pop();
        layers.reverse();
        let mut data = HashMap::new();
        if let Some(u) = &upper {
            let dir = std::path::Path::new(u)
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default();
            data.insert("UpperDir".to_string(), u.clone());
            data.insert(
                "MergedDir".to_string(),
                dir.join("merged").display().to_string(),
            );
            data.insert(
                "WorkDir".to_string(),
                dir.join("work").display().to_string(),
            );
        }
        if !layers.is_empty() {
            data.insert("LowerDir".to_string(), layers.join(":"));
        }
        ImageInspect {
            id: Some(img.id.clone()),
            repo_tags: Some(tags),
            repo_digests: Some(digests),
            comment: Some(c.comment.clone().unwrap_or_default()),
            created: c.created.clone(),
            author: Some(c.author.clone().unwrap_or_default()),
            config: Some(to_api_config(&run)),
            architecture: Some(c.architecture.clone()),
            variant: c.variant.clone(),
            os: Some(c.os.clone()),
            os_version: c.os_version.clone(),
            size: Some(self.size_of(img)),
            graph_driver: Some(DriverData {
                name: "overlay2".to_string(),
                data,
            }),
            root_fs: Some(ImageInspectRootFs {
                typ: "layers".to_string(),
                layers: Some(c.rootfs.diff_ids.clone()),
            }),
            metadata: Some(ImageInspectMetadata {
                last_tag_time: img.last_tag_time.clone(),
            }),
            ..Default::default()
        }
    }

    /// `GET /images/{name}/history`: newest first.
    pub fn history(&self, name: &str) -> Result<Vec<ImageHistoryResponseItem>, ImageError> {
        let img = self.get_image(name)?;
        let (tags, _) = self.tags_and_digests(&img.id);
        let layers: Vec<_> = img
            .chain
            .iter()
            .filter_map(|c| self.store.layer(c))
            .collect();
        let mut layer_idx = 0;
        let mut out = Vec::new();
        for h in &img.config.history {
            let size = if h.empty_layer {
                0
            } else {
                let s = layers.get(layer_idx).map(|l| l.size as i64).unwrap_or(0);
                layer_idx += 1;
                s
            };
            let created = h
                .created
                .as_deref()
                .and_then(|c| {
                    time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| t.unix_timestamp())
                .unwrap_or(0);
            out.push(ImageHistoryResponseItem {
                id: "<missing>".to_string(),
                created,
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        if out.is_empty() {
            // No history recorded: one line per layer.
            for l in &layers {
                out.push(ImageHistoryResponseItem {
                    id: "<missing>".to_string(),
                    created: img.config.created_unix(),
                    created_by: String::new(),
                    tags: Vec::new(),
                    size: l.size as i64,
                    comment: String::new(),
                });
            }
        }
        out.reverse();
        // moby's `ImageHistory`: the newest entries get the image's ID and tags, then its
        // parent's, as far as parent links reach.
        let mut current = Some((img.id.clone(), tags));
        for item in out.iter_mut() {
            let Some((id, tags)) = current.take() else {
                break;
            };
            item.id = id.clone();
            item.tags = tags;
            current = self
                .store
                .image(&id)
                .and_then(|i| i.parent)
                .and_then(|p| self.store.image(&p))
                .map(|p| {
                    let (tags, _) = self.tags_and_digests(&p.id);
                    (p.id, tags)
                });
        }
        Ok(out)
    }

    /// `POST /images/{name}/tag`.
    pub fn tag(&self, name: &str, repo: &str, tag: Option<&str>) -> Result<Reference, ImageError> {
        let img = self.get_image(name)?;
        let repo_ref = Reference::parse_any(repo)?;
        let target = match (
            tag.filter(|t| !t.is_empty()),
            repo_ref.tag.is_some() || repo_ref.digest.is_some(),
        ) {
            (Some(t), false) => {
                super::reference::validate_tag(t)?;
                repo_ref.with_tag(t)
            }
            (Some(_), true) => {
                return Err(ImageError::invalid(
                    "refusing to create an ambiguous tag using digest reference".to_string(),
                ))
            }
            (None, true) => repo_ref,
            (None, false) => repo_ref.with_tag(super::reference::DEFAULT_TAG),
        };
        if target.digest.is_some() {
            return Err(ImageError::invalid(
                "refusing to create a tag with a digest reference".to_string(),
            ));
        }
        self.store.add_reference(&target, &img.id)?;
        self.event("tag", &img.id, Some(&target.familiar()), Some(&img));
        Ok(target)
    }

    /// `DELETE /images/{name}`: untag or delete, as dockerd decides (moby's `ImageDelete`).
    pub fn delete(
        &self,
        name: &str,
        force: bool,
        noprune: bool,
    ) -> Result<Vec<ImageDeleteResponseItem>, ImageError> {
        let img = self.get_image(name)?;
        let mut out = Vec::new();
        let untag =
            |r: &Reference, out: &mut Vec<ImageDeleteResponseItem>| -> Result<(), ImageError> {
                self.store.remove_reference(r)?;
                out.push(ImageDeleteResponseItem {
                    untagged: Some(r.familiar()),
                    deleted: None,
                });
                self.event("untag", &img.id, Some(&img.id), Some(&img));
                Ok(())
            };
        let named = Reference::parse(name).ok().filter(|r| {
            !is_prefix_of_id(&img.id, name) && self.store.resolve_reference(r).is_some()
        });
        let user = self.user_of(&img.id);
        if let Some(r) = named {
            // A name was given: remove it; the image goes only with its last reference.
            if !force && is_single_reference(&self.store.references_of(&img.id)) {
                if let Some((c, _)) = &user {
                    return Err(ImageError::conflict(format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                        short_id(c),
                        short_id(&img.id)
                    )));
                }
            }
            untag(&r, &mut out)?;
            let mut remaining = self.store.references_of(&img.id);
            if r.digest.is_none()
                && !remaining
                    .iter()
                    .any(|x| x.digest.is_none() && x.repository() == r.repository())
            {
                // The last tag of a repository takes that repository's digests with it.
                for d in remaining
                    .iter()
                    .filter(|x| x.digest.is_some() && x.repository() == r.repository())
                {
                    untag(d, &mut out)?;
                }
                remaining = self.store.references_of(&img.id);
            }
            if !remaining.is_empty() || user.is_some() || !self.store.children(&img.id).is_empty() {
                // An image a container or a child image uses stays, untagged (dockerd's quiet
                // conflicts).
                return Ok(out);
            }
        } else {
            if !self.store.children(&img.id).is_empty() {
                return Err(ImageError::conflict(format!(
                    "conflict: unable to delete {} (cannot be forced) - image has dependent child images",
                    short_id(&img.id)
                )));
            }
            match &user {
                Some((c, true)) => {
                    return Err(ImageError::conflict(format!(
                        "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                        short_id(&img.id),
                        short_id(c)
                    )))
                }
                Some((c, false)) if !force => {
                    return Err(ImageError::conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                        short_id(&img.id),
                        short_id(c)
                    )))
                }
                _ => {}
            }
            let refs = self.store.references_of(&img.id);
            if is_single_reference(&refs) || force {
                for r in &refs {
                    untag(r, &mut out)?;
                }
            } else if !refs.is_empty() {
                return Err(ImageError::conflict(format!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    short_id(&img.id)
                )));
            }
        }
        if user.is_some() {
            // Forced with a stopped container: the names go, the image stays for the
            // container (dockerd would delete it and keep the layers through the container).
            return Ok(out);
        }
        self.delete_record(&img.id, &mut out)?;
        if !noprune {
            self.delete_unused_parents(img.parent.as_deref(), &mut out);
        }
        Ok(out)
    }

    /// Delete an image record and the layers only it used: the response items (the image, then
    /// each layer) and the `delete` event (without labels: the image is gone, as in moby).
    fn delete_record(
        &self,
        id: &str,
        out: &mut Vec<ImageDeleteResponseItem>,
    ) -> Result<(), ImageError> {
        let layers = self.store.delete_image(id)?;
        out.push(ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(id.to_string()),
        });
        out.extend(layers.into_iter().map(|l| ImageDeleteResponseItem {
            untagged: None,
            deleted: Some(l),
        }));
        self.event("delete", id, Some(id), None);
        Ok(())
    }

    /// moby's parent pruning after a delete: each untagged parent that no other image and no
    /// container uses goes too, up the chain; the first one still needed stops it (quietly).
    fn delete_unused_parents(&self, parent: Option<&str>, out: &mut Vec<ImageDeleteResponseItem>) {
        let mut parent = parent.map(str::to_string);
        while let Some(id) = parent.take() {
            let id = id.as_str();
            let Some(img) = self.store.image(id) else {
                return;
            };
            if !self.store.references_of(id).is_empty()
                || !self.store.children(id).is_empty()
                || self.user_of(id).is_some()
            {
                return;
            }
            if self.delete_record(id, out).is_err() {
                return;
            }
            parent = img.parent;
        }
    }

    /// `POST /images/prune`, as moby's `ImagePrune`: the candidates are the images without
    /// children (every image with `dangling=false`), less untagged intermediates and what the
    /// `until` and label filters leave out; each is removed through [`ImageService::delete`]
    /// without force, by each of its names (every name with `dangling=false`; with
    /// `dangling=true` only an image that has no tag, i.e. digests only), or by ID when it has
    /// none. So a tagged image with children is untagged and stays, an image a container uses
    /// loses all its names but the last, and conflicts are skipped quietly.
    pub fn prune(&self, filters: &Filters) -> Result<ImagePruneResponse, ImageError> {
        if self.pruning.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(ImageError::conflict("a prune operation is already running"));
        }
        let _guard = PruneGuard(&self.pruning);
        filters
            .validate(PRUNE_FILTERS)
            .map_err(|e| ImageError::invalid(e.to_string()))?;
        let dangling_only = filters
            .get_bool_or_default("dangling", true)
            .map_err(|e| ImageError::invalid(e.to_string()))?;
        // moby's `getUntilFromPruneFilters`.
        let untils: Vec<&str> = filters.get("until").collect();
        if untils.len() > 1 {
            return Err(ImageError::invalid(
                "more than one until filter specified".to_string(),
            ));
        }
        let until = match untils.first() {
            Some(u) => Some(until_nanos(u, SystemTime::now())?),
            None => None,
        };
        let images = self.store.images();
        let parents: HashSet<&str> = images.iter().filter_map(|i| i.parent.as_deref()).collect();
        // Every layer before the prune, for the space reclaimed (moby's `layerStore.Map()`).
        let layer_sizes: HashMap<String, i64> = images
            .iter()
            .flat_map(|i| i.chain.iter())
            .filter_map(|c| self.store.layer(c).map(|l| (c.clone(), l.size as i64)))
            .collect();
        let mut top = Vec::new();
        for img in &images {
            let has_children = parents.contains(img.id.as_str());
            // `dangling=true` looks among the heads only (moby's `imageStore.Heads()`).
            if dangling_only && has_children {
                continue;
            }
            if has_children && self.store.references_of(&img.id).is_empty() {
                continue;
            }
            if until.is_some_and(|u| img.config.created.is_none() || img.config.created_nanos() > u)
            {
                continue;
            }
            // moby's `matchLabels`: every `label` matches, and not every `label!` does.
            let labels = img.config.labels();
            if !filters.match_kv_list("label", &labels)
                || (filters.contains("label!") && filters.match_kv_list("label!", &labels))
            {
                continue;
            }
            top.push(img.id.as_str());
        }
        let mut deleted = Vec::new();
        for id in top {
            let refs = self.store.references_of(id);
            let names: Vec<String> = if refs.is_empty() {
                vec![super::digest_hex(id).to_string()]
            } else if !dangling_only || !refs.iter().any(|r| r.tag.is_some()) {
                refs.iter().map(Reference::to_string).collect()
            } else {
                Vec::new()
            };
            for name in names {
                match self.delete(&name, false, false) {
                    Ok(items) => deleted.extend(items),
                    // A conflict is no failure of the prune (nor does it say so); a name an
                    // earlier delete took along is gone.
                    Err(e) if e.kind() == crate::errors::ErrorKind::Conflict => {}
                    Err(e) => tracing::warn!("failed to prune image {name}: {e}"),
                }
            }
        }
        let reclaimed: i64 = deleted
            .iter()
            .filter_map(|i| i.deleted.as_ref().and_then(|d| layer_sizes.get(d)))
            .sum();
        self.events.publish(
            Event::new("image", "prune", "").attribute("reclaimed", reclaimed.to_string()),
        );
        Ok(ImagePruneResponse {
            // moby's nil slice: `null` when nothing went.
            images_deleted: (!deleted.is_empty()).then_some(deleted),
            space_reclaimed: Some(reclaimed),
        })
    }

    /// `POST /images/create?fromSrc=-`: one layer from a rootfs tar, with a config built from
    /// the options. Progress (the new ID) goes to `progress`.
    pub async fn import(
        &self,
        body: BodyReceiver,
        opts: ImportOptions,
        progress: Progress,
    ) -> Result<String, ImageError> {
        let target = match &opts.repo {
            Some(repo) if !repo.is_empty() => {
                let r = Reference::parse_any(repo)?;
                Some(match (&opts.tag, r.tag.is_some() || r.digest.is_some()) {
                    (Some(t), false) if !t.is_empty() => {
                        super::reference::validate_tag(t)?;
                        r.with_tag(t)
                    }
                    (_, true) => r,
                    _ => r.with_tag(super::reference::DEFAULT_TAG),
                })
            }
            _ => None,
        };
        let mut run = RunConfig::default();
        apply_changes(&mut run, &opts.changes)?;
        let (os, arch) = match opts.platform.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => {
                let mut parts = p.split('/');
                (
                    parts.next().unwrap_or("linux").to_string(),
                    parts
                        .next()
                        .unwrap_or(crate::version::go_arch())
                        .to_string(),
                )
            }
            None => ("linux".to_string(), crate::version::go_arch().to_string()),
        };
        if os != "linux" {
            return Err(ImageError::invalid(format!(
                "operating system is not supported: {os}"
            )));
        }
        let store = self.store.clone();
        let (layer, _lease) = tokio::task::spawn_blocking(move || {
            store.register_layer(None, ChannelReader::new(body), None)
        })
        .await
        .map_err(|e| ImageError::internal(format!("import task: {e}")))??;
        let now = rfc3339_nano(SystemTime::now());
        let comment = opts.message.clone().filter(|m| !m.is_empty());
        let config = ImageConfigFile {
            architecture: arch,
            os,
            created: Some(now.clone()),
            comment: comment.clone(),
            config: Some(run),
            rootfs: RootFs {
                typ: "layers".to_string(),
                diff_ids: vec![layer.diff_id.clone()],
            },
            history: vec![History {
                created: Some(now),
                comment: Some(comment.unwrap_or_else(|| {
                    format!(
                        "Imported from {}",
                        if opts.src.is_empty() { "-" } else { &opts.src }
                    )
                })),
                ..Default::default()
            }],
            ..Default::default()
        };
        let raw = serde_json::to_vec(&config)
            .map_err(|e| ImageError::internal(format!("encode config: {e}")))?;
        let (img, _) = self.store.register_image(raw)?;
        if let Some(t) = &target {
            self.store.add_reference(t, &img.id)?;
            self.event("tag", &img.id, Some(&t.familiar()), Some(&img));
        }
        self.event("import", &img.id, Some(&img.id), Some(&img));
        progress.send(JsonMessage::status(img.id.clone())).await;
        Ok(img.id)
    }

    /// `POST /images/create?fromSrc=<URL>`: import the archive a URL serves (dockerd's
    /// `postImagesCreate`): a source without a scheme is `http://`; a GET that fails, or
    /// answers 400 or more, fails the import before any output, with dockerd's kinds and words
    /// (`failed to GET <url> with status 404 Not Found: <body>`); then `Downloading from <url>`,
    /// the import of the body as it arrives, and the image ID.
    pub async fn import_url(
        &self,
        opts: ImportOptions,
        progress: Progress,
    ) -> Result<String, ImageError> {
        let src = if opts.src.contains("://") {
            opts.src.clone()
        } else {
            format!("http://{}", opts.src)
        };
        let url = url::Url::parse(&src)
            .map_err(|e| ImageError::invalid(format!("parse {src:?}: {e}")))?;
        let mut resp = crate::util::http::get(url.as_str())
            .await
            .map_err(|e| ImageError::new(e.kind(), e.message().to_string()))?;
        progress
            .send(JsonMessage::status(format!("Downloading from {url}")))
            .await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let what = url.to_string();
        let (bar, total) = (progress.clone(), resp.content_length().map(|n| n as i64));
        // Ends when the body does, or when the import stops reading (its receiver gone). The
        // `Importing` progress (a bar on a terminal) at most ten times a second and at the end.
        tokio::spawn(async move {
            let (mut current, mut shown) = (0i64, None::<std::time::Instant>);
            loop {
                let part = match resp.chunk().await {
                    Ok(Some(b)) => {
                        current += b.len() as i64;
                        if shown
                            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(100))
                        {
                            shown = Some(std::time::Instant::now());
                            bar.send(importing(current, total)).await;
                        }
                        Ok(crate::util::io::BodyPart::Data(vec![b]))
                    }
                    Ok(None) => {
                        bar.send(importing(current, total)).await;
                        Ok(crate::util::io::BodyPart::End)
                    }
                    Err(e) => Err(std::io::Error::other(format!("read {what}: {e}"))),
                };
                let last = !matches!(part, Ok(crate::util::io::BodyPart::Data(_)));
                if tx.send(part).await.is_err() || last {
                    return;
                }
            }
        });
        self.import(rx, opts, progress).await
    }
}

/// dockerd's progress message of a URL import (`Importing`, with the bytes so far).
fn importing(current: i64, total: Option<i64>) -> JsonMessage {
    JsonMessage {
        status: Some("Importing".to_string()),
        progress_detail: Some(crate::util::progress::ProgressDetail {
            current: Some(current),
            total,
        }),
        ..Default::default()
    }
}

impl ImageService {
    /// Resolve the names of `docker save`: a repository without a tag saves all its tags; an ID
    /// saves the image without names.
    pub fn plan_save(&self, names: &[String]) -> Result<Vec<super::archive::SaveItem>, ImageError> {
        if names.is_empty() {
            return Err(ImageError::invalid("no images named to save".to_string()));
        }
        super::archive::plan_save(names, |n| {
            // A repository without a tag: all its tags, whichever images they name.
            if let Ok(r) = Reference::parse_any(n) {
                if r.tag.is_none() && r.digest.is_none() && !is_id_prefix(n) {
                    let tagged: Vec<(Reference, String)> = self
                        .store
                        .references()
                        .into_iter()
                        .filter(|(x, _)| x.repository() == r.repository() && x.tag.is_some())
                        .collect();
                    if !tagged.is_empty() {
                        return Ok(tagged
                            .into_iter()
                            .filter_map(|(x, id)| self.store.image(&id).map(|img| (img, vec![x])))
                            .collect());
                    }
                }
            }
            let img = self.get_image(n)?;
            let by_id = is_prefix_of_id(&img.id, n);
            let refs = if by_id {
                Vec::new()
            } else {
                match Reference::parse_any(n) {
                    Ok(r) if r.tag.is_none() && r.digest.is_none() => self
                        .store
                        .references_of(&img.id)
                        .into_iter()
                        .filter(|x| x.repository() == r.repository() && x.tag.is_some())
                        .collect(),
                    Ok(r) if r.digest.is_none() => vec![r],
                    _ => Vec::new(),
                }
            };
            Ok(vec![(img, refs)])
        })
    }

    /// Write the archive of a planned save (blocking: run it off the async threads).
    pub fn write_save<W: crate::util::io::WriteChunk>(
        &self,
        items: &[super::archive::SaveItem],
        out: W,
    ) -> Result<(), ImageError> {
        super::archive::write_save(&self.store, items, out)?;
        for item in items {
            self.event(
                "save",
                &item.image.id,
                Some(&item.image.id),
                Some(&item.image),
            );
        }
        Ok(())
    }

    /// `POST /images/load`: register every image of the archive and give it its names.
    pub async fn load(
        &self,
        body: BodyReceiver,
        quiet: bool,
        progress: Progress,
    ) -> Result<(), ImageError> {
        let store = self.store.clone();
        let p = if quiet {
            Progress::discard()
        } else {
            progress.clone()
        };
        let loaded = tokio::task::spawn_blocking(move || {
            let scratch = super::archive::unpack_to_scratch(&store, ChannelReader::new(body))
                .map_err(|e| super::archive::archive_fault(e, None))?;
            super::archive::load_dir(&store, &scratch.0, &p)
        })
        .await
        .map_err(|e| ImageError::internal(format!("load task: {e}")))??;
        for l in loaded {
            let img = self.store.image(&l.id);
            if l.refs.is_empty() {
                progress
                    .send(JsonMessage::stream(format!("Loaded image ID: {}\n", l.id)))
                    .await;
            }
            for r in &l.refs {
                if let Some(old) = self.store.add_reference(r, &l.id)? {
                    progress
                        .send(JsonMessage::stream(format!(
                            "The image {} already exists, renaming the old one with ID {} to empty string\n",
                            r.familiar(),
                            old
                        )))
                        .await;
                }
                progress
                    .send(JsonMessage::stream(format!(
                        "Loaded image: {}\n",
                        r.familiar()
                    )))
                    .await;
            }
            self.event("load", &l.id, Some(&l.id), img.as_ref());
        }
        Ok(())
    }
}

impl ImageService {
    /// `POST /auth`: check the credentials against the registry.
    pub async fn login(&self, auth: &AuthConfig) -> Result<String, RegistryError> {
        crate::registry::client::login(&self.registry_options(), auth).await
    }

    /// `GET /images/search`.
    pub async fn search(
        &self,
        term: &str,
        limit: Option<i64>,
        auth: &AuthConfig,
    ) -> Result<Vec<bollard_stubs::models::ImageSearchResponseItem>, RegistryError> {
        crate::registry::client::search(&self.registry_options(), term, limit, auth).await
    }

    /// `GET /distribution/{name}/json`: the manifest descriptor and platforms in the registry.
    pub async fn distribution_inspect(
        &self,
        name: &str,
        auth: &AuthConfig,
    ) -> Result<bollard_stubs::models::DistributionInspect, ImageError> {
        let r = Reference::parse(name)?;
        super::distribution::inspect(&self.registry_options(), &r, auth).await
    }

    /// `POST /images/create?fromImage=...&tag=...`.
    pub async fn pull(
        &self,
        image: &str,
        tag: Option<&str>,
        platform: Option<&str>,
        auth: &AuthConfig,
        progress: Progress,
    ) -> Result<(), ImageError> {
        let opts = &self.registry_options();
        let mut r = Reference::parse_any(image)?;
        if let Some(t) = tag.filter(|t| !t.is_empty()) {
            if t.starts_with("sha256:") {
                super::reference::validate_digest(t)?;
                r.tag = None;
                r.digest = Some(t.to_string());
            } else {
                super::reference::validate_tag(t)?;
                r.tag = Some(t.to_string());
            }
        }
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(super::reference::DEFAULT_TAG.to_string());
        }
        let (id, r) =
            super::distribution::pull(self.store.clone(), opts, r, platform, auth, &progress)
                .await?;
        let img = self.store.image(&id);
        self.event(
            "pull",
            &r.familiar(),
            Some(&r.familiar_repository()),
            img.as_ref(),
        );
        Ok(())
    }

    /// `POST /images/create?fromImage=…` as a client asks for it: a name with neither a tag
    /// nor a digest and no `tag` pulls every tag of the repository, as dockerd does (`docker
    /// pull -a`, docker-py's `images.pull(name, all_tags=True)`); anything else is
    /// [`ImageService::pull`], where a name alone means `latest` (a build's `FROM`).
    pub async fn pull_request(
        &self,
        image: &str,
        tag: Option<&str>,
        platform: Option<&str>,
        auth: &AuthConfig,
        progress: Progress,
    ) -> Result<(), ImageError> {
        let r = Reference::parse_any(image)?;
        if tag.is_some_and(|t| !t.is_empty()) || r.tag.is_some() || r.digest.is_some() {
            return self.pull(image, tag, platform, auth, progress).await;
        }
        let opts = &self.registry_options();
        super::distribution::pull_all_tags(self.store.clone(), opts, &r, platform, auth, &progress)
            .await?;
        self.event("pull", &r.familiar(), Some(&r.familiar_repository()), None);
        Ok(())
    }

    /// `POST /images/{name}/push`.
    pub async fn push(
        &self,
        name: &str,
        tag: Option<&str>,
        auth: &AuthConfig,
        progress: Progress,
    ) -> Result<(), ImageError> {
        let opts = &self.registry_options();
        let r = Reference::parse_any(name)?;
        let asked = match tag.filter(|t| !t.is_empty()) {
            Some(t) => r.with_tag(t),
            None => r.clone(),
        };
        let pushed =
            super::distribution::push(self.store.clone(), opts, &asked, auth, &progress).await?;
        // One event per push, as moby's: the actor is the reference asked for.
        let img = pushed
            .first()
            .and_then(|(p, _)| self.store.resolve_reference(p))
            .and_then(|id| self.store.image(&id));
        self.event(
            "push",
            &asked.familiar(),
            Some(&asked.familiar_repository()),
            img.as_ref(),
        );
        Ok(())
    }
}

/// Whether `name` is (a prefix of) the ID `id`, with or without `sha256:`.
fn is_prefix_of_id(id: &str, name: &str) -> bool {
    !name.is_empty() && (id.starts_with(name) || super::digest_hex(id).starts_with(name))
}

/// moby's `isSingleReference`: at most one tag, and digests only of that tag's repository.
fn is_single_reference(refs: &[Reference]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let tags: Vec<&Reference> = refs.iter().filter(|r| r.digest.is_none()).collect();
    if tags.len() > 1 {
        return false;
    }
    let digest_repos: HashSet<String> = refs
        .iter()
        .filter(|r| r.digest.is_some())
        .map(|r| r.repository())
        .collect();
    let single = tags.first().copied().unwrap_or(&refs[0]);
    digest_repos.len() == 1 && digest_repos.contains(&single.repository())
}

/// The image config's container defaults in the API's shape.
fn to_api_config(r: &RunConfig) -> ImageConfig {
    let keys = |m: &Option<HashMap<String, serde_json::Value>>| {
        m.as_ref().map(|m| {
            let mut k: Vec<String> = m.keys().cloned().collect();
            k.sort();
            k
        })
    };
    ImageConfig {
        user: r.user.clone(),
        exposed_ports: keys(&r.exposed_ports),
        env: r.env.clone(),
        cmd: r.cmd.clone(),
        healthcheck: r
            .healthcheck
            .clone()
            .and_then(|h| serde_json::from_value(h).ok()),
        args_escaped: r.args_escaped,
        volumes: keys(&r.volumes),
        working_dir: r.working_dir.clone(),
        entrypoint: r.entrypoint.clone(),
        on_build: r.on_build.clone(),
        labels: r.labels.clone(),
        stop_signal: r.stop_signal.clone(),
        shell: r.shell.clone(),
    }
}

/// moby's `reference` filter: a glob over the familiar name, with or without the tag.
fn reference_matches(pattern: &str, r: &Reference) -> bool {
    let familiar = r.familiar();
    let repo = r.familiar_repository();
    glob(pattern, &familiar) || glob(pattern, &repo) || glob(pattern, &r.to_string())
}

/// `path.Match`-style glob: `*` (not across `/`), `?`, literal otherwise.
/// An `until` filter of image list or prune, in nanoseconds since the epoch, or moby's 400
/// (`invalid value for 'until' filter: …`).
fn until_nanos(value: &str, now: SystemTime) -> Result<i128, ImageError> {
    parse_timestamp_or_error(value, now)
        .map(crate::util::time::unix_nanos)
        .map_err(|e| ImageError::invalid(format!("invalid value for 'until' filter: {e}")))
}

fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = s.chars().collect();
    fn m(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != '/')
                .any(|i| m(rest, &t[i..])),
            Some(('?', rest)) => t.first().is_some_and(|c| *c != '/') && m(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && m(rest, &t[1..]),
        }
    }
    m(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorKind;

    /// A child image's config made by `by` (its history's `created_by`).
    fn child(by: &str) -> super::super::commit::ChildConfig {
        super::super::commit::ChildConfig {
            container_id: None,
            author: None,
            comment: None,
            created_by: by.to_string(),
            config: Default::default(),
            container_config: None,
        }
    }

    #[test]
    fn a_second_prune_is_refused_while_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let svc = ImageService::new(store, Arc::new(EventBus::new()));
        assert!(svc.prune(&Filters::default()).is_ok());
        svc.pruning.store(true, std::sync::atomic::Ordering::SeqCst);
        let e = svc.prune(&Filters::default()).unwrap_err();
        assert_eq!(e.to_string(), "a prune operation is already running");
        svc.pruning
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(
            svc.prune(&Filters::default()).is_ok(),
            "the flag is cleared after a prune"
        );
    }

    #[test]
    fn legacy_container_config_defaults_to_go_zero_values() {
        let c = legacy_container_config(None);
        assert_eq!(c["Volumes"], Value::Null);
        assert_eq!(c["Hostname"], "");
        let stored = serde_json::json!({"Cmd": ["sh"], "Volumes": {"/data": {}}});
        let c = legacy_container_config(Some(&stored));
        assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
        assert_eq!(c["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(c["Tty"], false);
    }

    #[test]
    fn parent_links_list_history_and_delete_as_dockerd() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let svc = ImageService::new(store, Arc::new(EventBus::new()));
        let a = svc
            .commit_layer(None, None::<std::io::Empty>, child("a"))
            .unwrap();
        let b = svc
            .commit_layer(Some(&a.id), None::<std::io::Empty>, child("b"))
            .unwrap();
        let c = svc
            .commit_layer(Some(&b.id), None::<std::io::Empty>, child("c"))
            .unwrap();
        assert_eq!(c.parent.as_deref(), Some(b.id.as_str()));
        svc.tag(&c.id, "top", Some("1")).unwrap();
        // Intermediate images show with `all` only.
        let ids = |all: bool| -> Vec<String> {
            let opts = ListOptions {
                all,
                ..Default::default()
            };
            let mut v: Vec<String> = svc.list(&opts).unwrap().into_iter().map(|i| i.id).collect();
            v.sort();
            v
        };
        assert_eq!(ids(false), vec![c.id.clone()]);
        assert_eq!(ids(true).len(), 3);
        // History names each parent's entry.
        let h: Vec<String> = svc
            .history("top:1")
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(h, vec![c.id.clone(), b.id.clone(), a.id.clone()]);
        // The links survive a restart.
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(
            reopened.image(&b.id).unwrap().parent.as_deref(),
            Some(a.id.as_str())
        );
        // By ID, an image with children is refused; the top's delete takes its parents along.
        let e = svc.delete(&b.id, true, false).unwrap_err();
        assert!(
            e.to_string().contains("image has dependent child images"),
            "{e}"
        );
        let deleted: Vec<String> = svc
            .delete("top:1", false, false)
            .unwrap()
            .into_iter()
            .filter_map(|i| i.deleted)
            .collect();
        assert_eq!(deleted, vec![c.id.clone(), b.id.clone(), a.id.clone()]);
        assert!(svc.store().images().is_empty());
    }

    /// Images of every kind for the dangling filters: `base:1` with a child (`mid`, untagged)
    /// under `top:1`; `lone`, untagged without children; `digested`, named by a digest only.
    fn dangling_fixture() -> (
        tempfile::TempDir,
        ImageService,
        HashMap<&'static str, String>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let svc = ImageService::new(store, Arc::new(EventBus::new()));
        let mut ids = HashMap::new();
        let mut add = |name: &'static str, parent: Option<&str>| -> String {
            let img = svc
                .commit_layer(parent, None::<std::io::Empty>, child(name))
                .unwrap();
            ids.insert(name, img.id.clone());
            img.id
        };
        let base = add("base", None);
        let mid = add("mid", Some(&base));
        let top = add("top", Some(&mid));
        add("lone", None);
        let digested = add("digested", None);
        svc.tag(&base, "base", Some("1")).unwrap();
        svc.tag(&top, "top", Some("1")).unwrap();
        let r = Reference::parse(&format!("digested@sha256:{}", "1".repeat(64))).unwrap();
        svc.store().add_reference(&r, &digested).unwrap();
        (dir, svc, ids)
    }

    fn listed(svc: &ImageService, all: bool, filters: &str) -> Vec<String> {
        let opts = ListOptions {
            all,
            filters: Filters::parse(filters).unwrap(),
            ..Default::default()
        };
        let mut v: Vec<String> = svc.list(&opts).unwrap().into_iter().map(|i| i.id).collect();
        v.sort();
        v
    }

    #[test]
    fn dangling_filters_list_as_mobys_images() {
        let (_dir, svc, ids) = dangling_fixture();
        let want = |names: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = names.iter().map(|n| ids[n].clone()).collect();
            v.sort();
            v
        };
        // dangling=false: the images without any name are left out, `-a` or not; a digest
        // is a name.
        let f = r#"{"dangling":["false"]}"#;
        assert_eq!(listed(&svc, false, f), want(&["base", "top", "digested"]));
        assert_eq!(listed(&svc, true, f), want(&["base", "top", "digested"]));
        assert_eq!(
            listed(&svc, false, ""),
            want(&["base", "top", "lone", "digested"])
        );
        assert_eq!(
            listed(&svc, true, ""),
            want(&["base", "mid", "top", "lone", "digested"])
        );
        // dangling=true: untagged images without children (a digest is no tag), `-a` or not:
        // the intermediate `mid` is never one.
        let f = r#"{"dangling":["true"]}"#;
        assert_eq!(listed(&svc, false, f), want(&["lone", "digested"]));
        assert_eq!(listed(&svc, true, f), want(&["lone", "digested"]));
    }

    fn pruned(svc: &ImageService, filters: &str) -> (Vec<String>, Vec<String>) {
        let r = svc.prune(&Filters::parse(filters).unwrap()).unwrap();
        let items = r.images_deleted.unwrap_or_default();
        let untagged = items.iter().filter_map(|i| i.untagged.clone()).collect();
        let deleted = items.iter().filter_map(|i| i.deleted.clone()).collect();
        (untagged, deleted)
    }

    #[test]
    fn prune_of_dangling_images_deletes_heads_without_tags() {
        let (_dir, svc, ids) = dangling_fixture();
        let (untagged, deleted) = pruned(&svc, "");
        assert_eq!(
            untagged,
            vec![format!("digested@sha256:{}", "1".repeat(64))]
        );
        let mut deleted = deleted;
        deleted.sort();
        let mut want = vec![ids["lone"].clone(), ids["digested"].clone()];
        want.sort();
        assert_eq!(deleted, want);
        // The intermediate `mid` is no dangling image: it stays with its child.
        assert!(svc.store().image(&ids["mid"]).is_some());
        assert!(svc.store().image(&ids["base"]).is_some());
        // Nothing left to prune: moby's nil list.
        let r = svc.prune(&Filters::default()).unwrap();
        assert_eq!(r.images_deleted, None);
        assert_eq!(r.space_reclaimed, Some(0));
    }

    #[test]
    fn prune_all_deletes_by_name_without_force_as_moby() {
        let (_dir, svc, ids) = dangling_fixture();
        // `top` is used by a container; `lone` too, and has two tags.
        svc.tag(&ids["lone"], "multi", Some("1")).unwrap();
        svc.tag(&ids["lone"], "multi", Some("2")).unwrap();
        let used = [ids["top"].clone(), ids["lone"].clone()];
        svc.set_usage_check(Box::new(move |id| {
            used.contains(&id.to_string())
                .then(|| ("c0ffee".to_string(), false))
        }));
        let (mut untagged, deleted) = pruned(&svc, r#"{"dangling":["false"]}"#);
        untagged.sort();
        // `base:1` goes, its image stays for its child; `lone` keeps its last name; `top:1`
        // is its image's only name while a container uses it: a conflict, skipped.
        assert_eq!(
            untagged,
            vec![
                "base:1".to_string(),
                format!("digested@sha256:{}", "1".repeat(64)),
                "multi:1".to_string(),
            ]
        );
        assert_eq!(deleted, vec![ids["digested"].clone()]);
        let tags = |id: &str| -> Vec<String> {
            svc.store()
                .references_of(id)
                .iter()
                .map(Reference::familiar)
                .collect()
        };
        assert!(tags(&ids["base"]).is_empty());
        assert_eq!(tags(&ids["lone"]), vec!["multi:2".to_string()]);
        assert_eq!(tags(&ids["top"]), vec!["top:1".to_string()]);
        for kept in ["base", "mid", "top", "lone"] {
            assert!(svc.store().image(&ids[kept]).is_some(), "{kept}");
        }
        // Without users, the next prune takes everything, parents through their child.
        svc.set_usage_check(Box::new(|_| None));
        let (_, deleted) = pruned(&svc, r#"{"dangling":["false"]}"#);
        assert_eq!(deleted.len(), 4, "{deleted:?}");
        assert!(svc.store().images().is_empty());
    }

    #[test]
    fn bad_until_filters_are_mobys_400s() {
        let (_dir, svc, _) = dangling_fixture();
        let f = Filters::parse(r#"{"until":["xyz"]}"#).unwrap();
        let want = r#"invalid value for 'until' filter: failed to parse value as time or duration: invalid seconds "xyz": invalid syntax"#;
        let e = svc.prune(&f).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (ErrorKind::InvalidParameter, want)
        );
        let opts = ListOptions {
            filters: f,
            ..Default::default()
        };
        let e = svc.list(&opts).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (ErrorKind::InvalidParameter, want)
        );
        let f = Filters::parse(r#"{"until":["1h","2h"]}"#).unwrap();
        let e = svc.prune(&f).unwrap_err();
        assert_eq!(e.to_string(), "more than one until filter specified");
        // In the list, several `until` values are the earliest.
        let opts = ListOptions {
            filters: f,
            ..Default::default()
        };
        assert!(svc.list(&opts).unwrap().is_empty());
    }

    #[test]
    fn globs_like_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox:*", "busybox:latest"));
        assert!(!glob("busy*", "x/busybox"));
        assert!(glob("*/app", "user/app"));
        assert!(!glob("*", "user/app"));
        assert!(glob("b?sybox", "busybox"));
        let r = Reference::parse("localhost:5000/x/y:1").unwrap();
        assert!(reference_matches("localhost:5000/x/*", &r));
        assert!(reference_matches("localhost:5000/x/y:1", &r));
    }
}
