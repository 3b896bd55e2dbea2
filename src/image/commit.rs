//! A new image from a writable layer: the walk of an overlay upper directory (what `docker
//! diff` lists and `docker commit` archives), its Docker layer tar (whiteouts as `.wh.<name>`,
//! opaque directories as `.wh..wh..opq`, moby's overlay whiteout converter), and
//! [`ImageService::commit_layer`], which registers that tar like a loaded layer (tar-split
//! kept) under a child config of the parent image (moby's `CommitImage` and
//! `image.NewChildImage`). The builder's steps come through here too.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::Metadata;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use super::config::{History, ImageConfigFile, RootFs, RunConfig};
use super::reference::Reference;
use super::store::Image;
use super::{ImageError, ImageService};
use crate::util::time::rfc3339_nano;

/// The DiffID of an empty tar (1024 zero bytes): a commit without changes adds no layer.
pub const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// What the child image records besides its layer.
#[derive(Debug, Clone, Default)]
pub struct ChildConfig {
    /// `container`: the committed container's ID.
    pub container_id: Option<String>,
    pub author: Option<String>,
    pub comment: Option<String>,
    /// The history entry's `created_by` (dockerd's commit: the container's `Cmd` joined).
    pub created_by: String,
    /// The new image's `config`.
    pub config: RunConfig,
    /// `container_config`: the container's own config.
    pub container_config: Option<Value>,
}

/// moby's `RepoTagReference`: no repository, no name (a tag alone is ignored); the tag
/// defaults to `latest`; digests are refused.
pub fn commit_reference(repo: &str, tag: &str) -> Result<Option<Reference>, ImageError> {
    if repo.is_empty() {
        return Ok(None);
    }
    let r = Reference::parse_any(repo)?;
    if r.digest.is_some() {
        return Err(ImageError::invalid("cannot import digest reference"));
    }
    if !tag.is_empty() {
        super::reference::validate_tag(tag)
            .map_err(|_| ImageError::invalid("invalid tag format"))?;
        return Ok(Some(r.with_tag(tag)));
    }
    Ok(Some(match r.tag {
        Some(_) => r,
        None => r.with_tag(super::reference::DEFAULT_TAG),
    }))
}

impl ImageService {
    /// Register `layer` (an uncompressed Docker layer tar; `None` for a step that changes no
    /// file) on top of the image `parent` (an image ID; `None` for scratch), and an image whose
    /// config is the parent's extended with `child`: `rootfs.diff_ids` gains the layer (not an
    /// empty one, as dockerd), `history` an entry. Blocking: call it from a blocking thread.
    pub fn commit_layer<R: Read>(
        &self,
        parent: Option<&str>,
        layer: Option<R>,
        child: ChildConfig,
    ) -> Result<Image, ImageError> {
        let parent = match parent {
            Some(id) => Some(
                self.store()
                    .image(id)
                    .ok_or_else(|| ImageError::no_such_image(id))?,
            ),
            None => None,
        };
        let parent_id = parent.as_ref().map(|p| p.id.clone());
        let top = parent.as_ref().and_then(|p| p.chain.last().cloned());
        let registered = match layer {
            Some(tar) => Some(self.store().register_layer(top.as_deref(), tar, None)?),
            None => None,
        };
        let diff_id = registered.as_ref().map(|(l, _)| l.diff_id.clone());
        let empty_layer = diff_id.as_deref().is_none_or(|d| d == EMPTY_LAYER_DIFF_ID);
        let base = parent.map(|p| p.config).unwrap_or_else(|| ImageConfigFile {
            architecture: crate::version::go_arch().to_string(),
            os: "linux".to_string(),
            rootfs: RootFs {
                typ: "layers".to_string(),
                diff_ids: Vec::new(),
            },
            ..Default::default()
        });
        let now = rfc3339_nano(SystemTime::now());
        let mut diff_ids = base.rootfs.diff_ids.clone();
        if let (false, Some(d)) = (empty_layer, diff_id) {
            diff_ids.push(d);
        }
        let mut history = base.history.clone();
        history.push(History {
            created: Some(now.clone()),
            created_by: Some(child.created_by.clone()).filter(|s| !s.is_empty()),
            author: child.author.clone().filter(|s| !s.is_empty()),
            comment: child.comment.clone().filter(|s| !s.is_empty()),
            empty_layer,
        });
        let mut other: HashMap<String, Value> = HashMap::new();
        for key in ["os.features", "moby.buildkit.buildinfo.v1"] {
            if let Some(v) = base.other.get(key) {
                other.insert(key.to_string(), v.clone());
            }
        }
        if let Some(id) = &child.container_id {
            other.insert("container".to_string(), Value::String(id.clone()));
        }
        if let Some(cc) = &child.container_config {
            other.insert("container_config".to_string(), cc.clone());
        }
        let config = ImageConfigFile {
            architecture: base.architecture.clone(),
            os: base.os.clone(),
            os_version: base.os_version.clone(),
            variant: base.variant.clone(),
            created: Some(now),
            author: child.author.clone().filter(|s| !s.is_empty()),
            comment: child.comment.clone().filter(|s| !s.is_empty()),
            docker_version: Some(crate::version::VERSION.to_string()),
            config: Some(child.config),
            rootfs: RootFs {
                typ: "layers".to_string(),
                diff_ids,
            },
            history,
            other,
        };
        let raw = serde_json::to_vec(&config)
            .map_err(|e| ImageError::internal(format!("encode config: {e}")))?;
        let (mut img, _) = self.store().register_image(raw)?;
        // The lease on the new layer ends only now that an image holds it.
        drop(registered);
        if let Some(p) = &parent_id {
            self.store().set_parent(&img.id, p)?;
            img.parent = Some(p.clone());
        }
        self.store().set_built_locally(&img.id)?;
        img.built_locally = true;
        // moby's `CommitImage` (commit and each build step): an image `create` event.
        self.event("create", &img.id, Some(&img.id), Some(&img));
        Ok(img)
    }
}

impl ImageService {
    /// moby's `restoreCachedImage`, for a `cachefrom` hit inside `target`'s history: an image
    /// made of `parent` (`None`: scratch) and the next entry of `target`'s history with its
    /// layer (registered already: it is in `target`'s chain), `config` as its config. Linked to
    /// `parent`; not marked built locally. Blocking.
    pub fn restore_cached(
        &self,
        parent: Option<&Image>,
        target: &Image,
        config: RunConfig,
    ) -> Result<Image, ImageError> {
        let (mut history, mut diff_ids) = match parent {
            Some(p) => (p.config.history.clone(), p.config.rootfs.diff_ids.clone()),
            None => (Vec::new(), Vec::new()),
        };
        let index = history.len();
        let missing = || {
            ImageError::internal(format!(
                "image {} has no history entry {index} to restore",
                target.id
            ))
        };
        let entry = target
            .config
            .history
            .get(index)
            .ok_or_else(missing)?
            .clone();
        if !entry.empty_layer {
            // The layer of entry `index`: one per earlier entry that has a layer.
            let layer = target.config.history[..index]
                .iter()
                .filter(|h| !h.empty_layer)
                .count();
            diff_ids.push(
                target
                    .config
                    .rootfs
                    .diff_ids
                    .get(layer)
                    .ok_or_else(missing)?
                    .clone(),
            );
        }
        let created = entry.created.clone();
        history.push(entry);
        let restored = ImageConfigFile {
            architecture: target.config.architecture.clone(),
            os: target.config.os.clone(),
            os_version: target.config.os_version.clone(),
            variant: target.config.variant.clone(),
            created,
            author: target.config.author.clone(),
            config: Some(config),
            rootfs: RootFs {
                typ: "layers".to_string(),
                diff_ids,
            },
            history,
            other: target
                .config
                .other
                .get("os.features")
                .map(|v| HashMap::from([("os.features".to_string(), v.clone())]))
                .unwrap_or_default(),
            ..Default::default()
        };
        let raw = serde_json::to_vec(&restored)
            .map_err(|e| ImageError::internal(format!("encode config: {e}")))?;
        let (mut img, _) = self.store().register_image(raw)?;
        if let Some(p) = parent {
            self.store().set_parent(&img.id, &p.id)?;
            img.parent = Some(p.id.clone());
        }
        Ok(img)
    }
}

/// One entry of a writable layer, in archive order (a directory before what it holds).
#[derive(Debug)]
pub struct UpperEntry {
    /// Relative to the layer root.
    pub rel: PathBuf,
    pub md: Metadata,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// An overlay whiteout (a 0/0 character device): the name was deleted.
    Whiteout,
    /// A directory; `opaque` hides everything below it in the lower layers.
    Dir { opaque: bool },
    /// Anything else (file, link, device, fifo, socket).
    Other,
}

/// Walk the overlay upper dir `upper` over `lowers` (top first), leaving out `placeholders`
/// (relative paths: the files, links and mount points the runtime creates) when they are
/// empty files or the `/proc/mounts` link and not in the image, and directories that hold
/// nothing else and exist only because of them (not in the image, or copied up with their
/// mode and owner unchanged).
pub fn upper_entries(
    upper: &Path,
    lowers: &[PathBuf],
    placeholders: &HashSet<PathBuf>,
) -> io::Result<Vec<UpperEntry>> {
    let mut out = Vec::new();
    match walk(upper, Path::new(""), lowers, placeholders, &mut out) {
        // A layer directory that was never created has no changes.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !upper.exists() => Ok(Vec::new()),
        Err(e) => Err(e),
        Ok(()) => Ok(out),
    }
}

fn lower_meta(lowers: &[PathBuf], rel: &Path) -> Option<Metadata> {
    lowers
        .iter()
        .find_map(|l| l.join(rel).symlink_metadata().ok())
}

fn walk(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    ph: &HashSet<PathBuf>,
    out: &mut Vec<UpperEntry>,
) -> io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(upper.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let child = rel.join(&name);
        let path = upper.join(&child);
        let md = path.symlink_metadata()?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            out.push(UpperEntry {
                rel: child,
                md,
                kind: EntryKind::Whiteout,
            });
            continue;
        }
        if ft.is_dir() {
            let opaque = getxattr(&path, OPAQUE_XATTR).is_some_and(|v| v == b"y");
            let mark = out.len();
            out.push(UpperEntry {
                rel: child.clone(),
                md,
                kind: EntryKind::Dir { opaque },
            });
            walk(upper, &child, lowers, ph, out)?;
            if out.len() == mark + 1 && !opaque && ph.iter().any(|p| p.starts_with(&child)) {
                let unchanged = match lower_meta(lowers, &child) {
                    None => true,
                    Some(l) => {
                        let u = &out[mark].md;
                        l.is_dir()
                            && l.mode() == u.mode()
                            && l.uid() == u.uid()
                            && l.gid() == u.gid()
                    }
                };
                if unchanged {
                    out.truncate(mark);
                }
            }
            continue;
        }
        // The runtime's placeholders: empty files (mount targets, `/.dockerenv`) and the
        // `/etc/mtab` link to `/proc/mounts`.
        if ph.contains(&child)
            && ((ft.is_file() && md.len() == 0) || (ft.is_symlink() && is_mtab_link(&path)))
            && lower_meta(lowers, &child).is_none()
        {
            continue;
        }
        out.push(UpperEntry {
            rel: child,
            md,
            kind: EntryKind::Other,
        });
    }
    Ok(())
}

/// Whether `path` is the `/etc/mtab` link the runtime puts in every container (to
/// `/proc/mounts`, moby's init layer's).
pub fn is_mtab_link(path: &Path) -> bool {
    std::fs::read_link(path).is_ok_and(|t| t == Path::new("/proc/mounts"))
}

fn getxattr(path: &Path, key: &CStr) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = vec![0u8; 16];
    // SAFETY: `p` and `key` are NUL-terminated; `buf` is valid for its length.
    let n =
        unsafe { libc::lgetxattr(p.as_ptr(), key.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// Write `entries` of the layer at `upper` as a Docker layer tar: whiteouts become empty
/// `.wh.<name>` files (mode 0600), an opaque directory is followed by `.wh..wh..opq`, files
/// with several links in the layer become hard links to the first one.
pub fn write_layer_tar<W: Write>(w: W, upper: &Path, entries: &[UpperEntry]) -> io::Result<W> {
    let mut b = tar::Builder::new(w);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for e in entries {
        let path = upper.join(&e.rel);
        let mut h = tar::Header::new_ustar();
        h.set_metadata_in_mode(&e.md, tar::HeaderMode::Complete);
        match e.kind {
            EntryKind::Whiteout => {
                let name = e
                    .rel
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_default();
                let mut wh = std::ffi::OsString::from(".wh.");
                wh.push(name);
                let rel = e.rel.with_file_name(wh);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o600);
                h.set_size(0);
                h.set_device_major(0)?;
                h.set_device_minor(0)?;
                b.append_data(&mut h, &rel, io::empty())?;
            }
            EntryKind::Dir { opaque } => {
                h.set_size(0);
                b.append_data(&mut h, dir_name(&e.rel), io::empty())?;
                if opaque {
                    let mut o = tar::Header::new_ustar();
                    o.set_entry_type(tar::EntryType::Regular);
                    o.set_mode(e.md.mode() & 0o777);
                    o.set_uid(e.md.uid() as u64);
                    o.set_gid(e.md.gid() as u64);
                    o.set_mtime(e.md.mtime().max(0) as u64);
                    o.set_size(0);
                    b.append_data(&mut o, e.rel.join(".wh..wh..opq"), io::empty())?;
                }
            }
            EntryKind::Other => {
                let ft = e.md.file_type();
                if ft.is_file() && e.md.nlink() > 1 {
                    let key = (e.md.dev(), e.md.ino());
                    if let Some(target) = links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        h.set_size(0);
                        b.append_link(&mut h, &e.rel, target)?;
                        continue;
                    }
                    links.insert(key, e.rel.clone());
                }
                if ft.is_symlink() {
                    let target = std::fs::read_link(&path)?;
                    h.set_size(0);
                    b.append_link(&mut h, &e.rel, target)?;
                } else if ft.is_file() {
                    // Exactly the size the header announces, even if the file changes under
                    // a container that was not paused.
                    let size = e.md.len();
                    let f = std::fs::File::open(&path)?;
                    let data = f.take(size).chain(io::repeat(0)).take(size);
                    b.append_data(&mut h, &e.rel, data)?;
                } else if ft.is_socket() {
                    // Not archivable; moby's archive skips them too.
                    continue;
                } else {
                    // Devices, fifos, sockets: the header says it all.
                    h.set_size(0);
                    b.append_data(&mut h, &e.rel, io::empty())?;
                }
            }
        }
    }
    b.finish()?;
    b.into_inner()
}

/// Directories are named with a trailing `/`, as Go's archive/tar writes them.
fn dir_name(rel: &Path) -> PathBuf {
    let mut s = rel.as_os_str().to_os_string();
    s.push("/");
    PathBuf::from(s)
}

/// The tar of a writable layer as a reader: written by a thread into a socket pair; a failed write
/// surfaces as an error at the reader's end of file, so that a truncated archive is never
/// taken for a whole one.
pub fn layer_tar_reader(upper: PathBuf, entries: Vec<UpperEntry>) -> io::Result<LayerTarReader> {
    // A socket pair as the pipe (`std::io::pipe` is newer than the MSRV).
    let (reader, writer) = std::os::unix::net::UnixStream::pair()?;
    let failed = Arc::new(AtomicBool::new(false));
    let flag = failed.clone();
    let thread = std::thread::Builder::new()
        .name("layer-tar".to_string())
        .spawn(move || {
            if let Err(e) = write_layer_tar(writer, &upper, &entries) {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    tracing::warn!("writing the layer tar of {}: {e}", upper.display());
                }
                flag.store(true, Ordering::SeqCst);
            }
            // The writer is dropped here, after the flag is set.
        })?;
    Ok(LayerTarReader {
        inner: reader,
        failed,
        thread: Some(thread),
    })
}

pub struct LayerTarReader {
    inner: std::os::unix::net::UnixStream,
    failed: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Read for LayerTarReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            if self.failed.load(Ordering::SeqCst) {
                return Err(io::Error::other("the layer tar could not be written"));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_repo_tag_reference() {
        assert!(commit_reference("", "x").unwrap().is_none());
        assert_eq!(
            commit_reference("img", "").unwrap().unwrap().familiar(),
            "img:latest"
        );
        assert_eq!(
            commit_reference("img", "1").unwrap().unwrap().familiar(),
            "img:1"
        );
        assert_eq!(
            commit_reference("Img", "").unwrap_err().to_string(),
            "invalid reference format: repository name (library/Img) must be lowercase"
        );
        assert!(commit_reference("img", "bad tag").is_err());
    }

    #[test]
    fn walks_and_archives_an_upper_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let upper = tmp.path().join("upper");
        let lower = tmp.path().join("lower");
        for d in [&upper, &lower] {
            std::fs::create_dir_all(d.join("etc")).unwrap();
        }
        std::fs::write(lower.join("etc/passwd"), "x").unwrap();
        std::fs::write(upper.join("etc/hosts"), "").unwrap();
        std::fs::write(upper.join("f"), "hi").unwrap();
        std::fs::hard_link(upper.join("f"), upper.join("g")).unwrap();
        std::fs::create_dir_all(upper.join("mnt/data")).unwrap();
        std::fs::create_dir_all(upper.join("kept/data2")).unwrap();
        std::fs::write(upper.join("kept/x"), "").unwrap();
        let ph: HashSet<PathBuf> = ["etc/hosts", "mnt/data", "kept/data2"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let entries = upper_entries(&upper, &[lower], &ph).unwrap();
        let names: Vec<String> = entries
            .iter()
            .map(|e| e.rel.display().to_string())
            .collect();
        assert_eq!(names, vec!["f", "g", "kept", "kept/x"]);
        let tar = write_layer_tar(Vec::new(), &upper, &entries).unwrap();
        let mut a = tar::Archive::new(&tar[..]);
        let got: Vec<(String, tar::EntryType)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("f".to_string(), tar::EntryType::Regular),
                ("g".to_string(), tar::EntryType::Link),
                ("kept/".to_string(), tar::EntryType::Directory),
                ("kept/x".to_string(), tar::EntryType::Regular),
            ]
        );
    }
}
