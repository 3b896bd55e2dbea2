//! The build-context cache: the files of recent build contexts, kept under
//! `<data-root>/buildcache` so that a context sent again does not cost a second write and a
//! second hash of every file (dockerd hashes each context in full on every build).
//!
//! - `files/<key>-<sha256>`: one file per (path, size, mode, owner, mtime) of a context entry,
//!   `key` the hash of those, `sha256` the hash of its content. An entry of a new context with
//!   the same header is hard-linked from here instead of being written, and its content hash
//!   is known without reading it.
//! - `records/<id>.json`: a record per context shape (its sorted paths), with the key of each
//!   file: what `GET /system/df` lists as `BuildCache` (type `source.local`) and
//!   `POST /build/prune` removes. A build replaces its record's files; files no record names
//!   are deleted.
//!
//! Everything is written atomically (a link is; records by rename, without fsync: a cache)
//! and rebuilt from the directory at start, so a crash leaves at worst an unreferenced file
//! or an unreadable record, deleted then.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
#[cfg(test)]
use std::time::Duration;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BuilderError;
use crate::filters::Filters;
use crate::image::apply::{FileHook, FileKey};
use crate::util::fs::{ensure_dir, replace_file};
use crate::util::time::{parse_timestamp, rfc3339_nano};

/// The most the cache keeps after a build (least recently used records go first).
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// One cached context shape, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    created_at: String,
    last_used_at: String,
    usage_count: i64,
    /// Path in the context -> file key.
    files: BTreeMap<String, String>,
}

/// A cached file: its name under `files/`, content hash and size.
#[derive(Debug, Clone)]
struct CachedFile {
    name: String,
    sha: String,
    size: u64,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<String, CachedFile>,
    records: BTreeMap<String, Record>,
    /// Records a running build uses.
    in_use: HashMap<String, usize>,
}

/// A `BuildCache` item of `/system/df`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CacheItem {
    #[serde(rename = "ID")]
    pub id: String,
    pub parents: Option<Vec<String>>,
    #[serde(rename = "Type")]
    pub typ: String,
    pub description: String,
    pub in_use: bool,
    pub shared: bool,
    pub size: i64,
    pub created_at: String,
    pub last_used_at: String,
    pub usage_count: i64,
}

/// What `POST /build/prune` removes.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    pub all: bool,
    /// Keep the most recently used records up to this many bytes (`keep-storage`,
    /// `reserved-space`).
    pub reserved_space: u64,
    /// Remove least recently used records until at most this many bytes remain.
    pub max_used_space: u64,
    pub filters: Filters,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub reclaimed: u64,
}

/// The build-context cache.
#[derive(Debug)]
pub struct ContextCache {
    root: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn key_of(path: &str, k: &FileKey) -> String {
    let mut h = Sha256::new();
    h.update(path.as_bytes());
    h.update(
        format!(
            "\0{}\0{:o}\0{}\0{}\0{}.{}",
            k.size, k.mode, k.uid, k.gid, k.mtime.0, k.mtime.1
        )
        .as_bytes(),
    );
    hex::encode(&h.finalize()[..20])
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> BuilderError {
    move |e| BuilderError::io(what, e)
}

impl ContextCache {
    /// Open (and create) the cache under `root`: files no record names are deleted.
    pub fn open(root: &Path, max_bytes: u64) -> Result<Arc<ContextCache>, BuilderError> {
        for d in [root.join("files"), root.join("records")] {
            ensure_dir(&d, 0o700).map_err(io_err(format!("create {}", d.display())))?;
        }
        let mut state = State::default();
        for e in fs::read_dir(root.join("records"))
            .map_err(io_err(format!("read {}", root.display())))?
            .flatten()
        {
            let p = e.path();
            let record = fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
            match record {
                Some(r) if p.extension().is_some_and(|x| x == "json") => {
                    state.records.insert(r.id.clone(), r);
                }
                _ => {
                    // A temporary file of an interrupted write, or garbage.
                    let _ = fs::remove_file(&p);
                }
            }
        }
        for e in fs::read_dir(root.join("files"))
            .map_err(io_err(format!("read {}", root.display())))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let (Some((key, sha)), Ok(md)) = (name.split_once('-'), e.metadata()) else {
                let _ = fs::remove_file(e.path());
                continue;
            };
            state.files.insert(
                key.to_string(),
                CachedFile {
                    name: name.clone(),
                    sha: sha.to_string(),
                    size: md.len(),
                },
            );
        }
        let cache = Arc::new(ContextCache {
            root: root.to_path_buf(),
            max_bytes,
            state: Mutex::new(state),
        });
        cache.collect(&mut lock(&cache.state));
        Ok(cache)
    }

    fn file_path(&self, name: &str) -> PathBuf {
        self.root.join("files").join(name)
    }

    /// Delete the files no record names.
    fn collect(&self, st: &mut State) {
        let named: HashSet<&String> = st.records.values().flat_map(|r| r.files.values()).collect();
        let gone: Vec<String> = st
            .files
            .keys()
            .filter(|k| !named.contains(k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(f) = st.files.remove(&k) {
                let _ = fs::remove_file(self.file_path(&f.name));
            }
        }
    }

    /// The hook an extraction of a context uses.
    pub fn hook(self: &Arc<Self>) -> ContextHook {
        ContextHook {
            cache: self.clone(),
            hasher: Sha256::new(),
            hashes: HashMap::new(),
            keys: BTreeMap::new(),
        }
    }

    /// Record a context's files (from its hook) and mark the record in use until the returned
    /// guard is dropped; then trim the cache to its size.
    pub fn commit(self: &Arc<Self>, keys: BTreeMap<String, String>) -> RecordGuard {
        let mut paths = Sha256::new();
        for p in keys.keys() {
            paths.update(p.as_bytes());
            paths.update(b"\n");
        }
        let id = hex::encode(&paths.finalize()[..13]);
        let now = rfc3339_nano(SystemTime::now());
        let mut st = lock(&self.state);
        let record = match st.records.get(&id) {
            Some(r) => Record {
                last_used_at: now,
                usage_count: r.usage_count + 1,
                files: keys,
                ..r.clone()
            },
            None => Record {
                id: id.clone(),
                created_at: now.clone(),
                last_used_at: now,
                usage_count: 1,
                files: keys,
            },
        };
        // Renamed into place but not fsynced: after a power loss a record may be empty or
        // missing, which `open` treats as no record (its files are then deleted): a cache
        // miss, never a wrong hit. Every build rewrites its record (last use, count).
        let written = serde_json::to_vec(&record)
            .map_err(std::io::Error::other)
            .and_then(|b| {
                replace_file(
                    &self.root.join("records").join(format!("{id}.json")),
                    &b,
                    0o600,
                )
            });
        if let Err(e) = written {
            // The build goes on; the files of this context are simply not kept.
            tracing::warn!("build cache: write record {id}: {e}");
        } else {
            st.records.insert(id.clone(), record);
        }
        *st.in_use.entry(id.clone()).or_default() += 1;
        self.collect(&mut st);
        if self.max_bytes > 0 {
            self.trim(&mut st, self.max_bytes, &|_| true);
        }
        RecordGuard {
            cache: self.clone(),
            id,
        }
    }

    fn size_of(st: &State, r: &Record) -> u64 {
        let unique: HashSet<&String> = r.files.values().collect();
        unique
            .into_iter()
            .filter_map(|k| st.files.get(k))
            .map(|f| f.size)
            .sum()
    }

    fn total(st: &State) -> u64 {
        st.files.values().map(|f| f.size).sum()
    }

    /// Remove least recently used records (not in use, accepted by `ok`) until at most `max`
    /// bytes remain.
    fn trim(&self, st: &mut State, max: u64, ok: &dyn Fn(&Record) -> bool) -> PruneReport {
        let mut report = PruneReport::default();
        let mut order: Vec<(String, String)> = st
            .records
            .values()
            .filter(|r| !st.in_use.contains_key(&r.id) && ok(r))
            .map(|r| (r.last_used_at.clone(), r.id.clone()))
            .collect();
        order.sort();
        for (_, id) in order {
            let before = Self::total(st);
            if before <= max {
                break;
            }
            self.remove_record(st, &id);
            report.reclaimed += before - Self::total(st);
            report.deleted.push(id);
        }
        report
    }

    fn remove_record(&self, st: &mut State, id: &str) {
        st.records.remove(id);
        let _ = fs::remove_file(self.root.join("records").join(format!("{id}.json")));
        self.collect(st);
    }

    /// `BuildCache` of `/system/df`.
    pub fn usage(&self) -> Vec<CacheItem> {
        let st = lock(&self.state);
        let mut users: HashMap<&String, usize> = HashMap::new();
        for r in st.records.values() {
            let unique: HashSet<&String> = r.files.values().collect();
            for k in unique {
                *users.entry(k).or_default() += 1;
            }
        }
        st.records
            .values()
            .map(|r| CacheItem {
                id: r.id.clone(),
                parents: None,
                typ: "source.local".to_string(),
                description: "local source for context".to_string(),
                in_use: st.in_use.contains_key(&r.id),
                shared: r
                    .files
                    .values()
                    .any(|k| users.get(k).copied().unwrap_or(0) > 1),
                size: Self::size_of(&st, r) as i64,
                created_at: r.created_at.clone(),
                last_used_at: r.last_used_at.clone(),
                usage_count: r.usage_count,
            })
            .collect()
    }

    /// `POST /build/prune`: records not in use that the filters accept; with `reserved_space`
    /// the most recently used of them are kept up to that size, with `max_used_space` only
    /// as many go as bring the cache under it.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport, BuilderError> {
        let f = &opts.filters;
        let until = f
            .get("until")
            .chain(f.get("unused-for"))
            .collect::<Vec<_>>();
        if f.contains("until") && f.contains("unused-for") {
            return Err(BuilderError::invalid(
                "conflicting filters: \"until\" and \"unused-for\"",
            ));
        }
        let one = |key: &str| -> Result<Option<String>, BuilderError> {
            let v: Vec<&str> = f.get(key).collect();
            match v.len() {
                0 => Ok(None),
                1 => Ok(Some(v[0].to_string())),
                _ => Err(BuilderError::invalid("filters expect only one value")),
            }
        };
        let now = SystemTime::now();
        let cutoff = match until.as_slice() {
            [] => None,
            [v] => {
                let key = if f.contains("until") {
                    "until"
                } else {
                    "unused-for"
                };
                let t = parse_timestamp(v, now).ok_or_else(|| {
                    BuilderError::invalid(format!(
                        "{key:?} filter expects a duration (e.g., '24h') or a timestamp"
                    ))
                })?;
                Some(rfc3339_nano(t))
            }
            _ => return Err(BuilderError::invalid("filters expect only one value")),
        };
        let id = one("id")?;
        let typ = one("type")?;
        let description = one("description")?;
        let inuse = one("inuse")?;
        let shared = one("shared")?;
        let private = one("private")?;
        for k in ["parent", "mutable", "immutable"] {
            one(k)?;
        }
        let items: HashMap<String, CacheItem> = self
            .usage()
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        let truthy = |v: &Option<String>| v.as_deref().map(|s| s != "false" && s != "0");
        let accept = |r: &Record| -> bool {
            let Some(i) = items.get(&r.id) else {
                return false;
            };
            if let Some(c) = &cutoff {
                // Kept: used after the cutoff.
                if r.last_used_at.as_str() > c.as_str() {
                    return false;
                }
            }
            id.as_deref().is_none_or(|v| i.id.starts_with(v))
                && typ.as_deref().is_none_or(|v| v == i.typ)
                && description.as_deref().is_none_or(|v| v == i.description)
                && truthy(&inuse).is_none_or(|v| v == i.in_use)
                && truthy(&shared).is_none_or(|v| v == i.shared)
                && truthy(&private).is_none_or(|v| v != i.shared)
        };
        let mut st = lock(&self.state);
        let limit = match (opts.reserved_space, opts.max_used_space) {
            (0, 0) => 0,
            (0, m) => m,
            (r, 0) => r,
            (r, m) => r.min(m),
        };
        if limit > 0 {
            return Ok(self.trim(&mut st, limit, &accept));
        }
        let mut report = PruneReport::default();
        let ids: Vec<String> = st
            .records
            .values()
            .filter(|r| !st.in_use.contains_key(&r.id) && accept(r))
            .map(|r| r.id.clone())
            .collect();
        for id in ids {
            let before = Self::total(&st);
            self.remove_record(&mut st, &id);
            report.reclaimed += before.saturating_sub(Self::total(&st));
            report.deleted.push(id);
        }
        Ok(report)
    }

    /// How long ago `t` (RFC 3339) was; for tests.
    #[cfg(test)]
    fn age(t: &str) -> Option<Duration> {
        let t = parse_timestamp(t, SystemTime::now())?;
        SystemTime::now().duration_since(t).ok()
    }
}

/// Keeps a record marked in use while a build runs.
#[derive(Debug)]
pub struct RecordGuard {
    cache: Arc<ContextCache>,
    id: String,
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        let mut st = lock(&self.cache.state);
        if let Some(n) = st.in_use.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                st.in_use.remove(&self.id);
            }
        }
    }
}

/// The extraction hook of one context: reuses cached files, caches new ones, and collects
/// each file's content hash.
pub struct ContextHook {
    cache: Arc<ContextCache>,
    hasher: Sha256,
    /// Path in the context -> sha256 of the content (hex).
    pub hashes: HashMap<String, String>,
    /// Path in the context -> file key (for the record).
    pub keys: BTreeMap<String, String>,
}

impl FileHook for ContextHook {
    fn reuse(&mut self, path: &str, key: &FileKey) -> Option<PathBuf> {
        let k = key_of(path, key);
        let f = lock(&self.cache.state).files.get(&k).cloned()?;
        let p = self.cache.file_path(&f.name);
        // A file cut short (a crash before its data reached the disk) is not reused.
        if fs::symlink_metadata(&p).ok()?.len() != key.size {
            return None;
        }
        self.hashes.insert(path.to_string(), f.sha);
        self.keys.insert(path.to_string(), k);
        Some(p)
    }

    fn content(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
    }

    fn finished(&mut self, path: &str, key: &FileKey, written: Option<&OwnedFd>) {
        let Some(fd) = written else { return };
        let sha = hex::encode(self.hasher.finalize_reset());
        self.hashes.insert(path.to_string(), sha.clone());
        // git's "racy" rule: a file whose time is not at least a whole second in the past may
        // still change without its header changing (same size, same second). Not cached.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if key.mtime.0 + 1 >= now {
            return;
        }
        let k = key_of(path, key);
        let name = format!("{k}-{sha}");
        let dest = self.cache.file_path(&name);
        let from = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let linked = nix::unistd::linkat(
            None,
            from.as_path(),
            None,
            dest.as_path(),
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        );
        match linked {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {
                lock(&self.cache.state).files.insert(
                    k.clone(),
                    CachedFile {
                        name,
                        sha,
                        size: key.size,
                    },
                );
                self.keys.insert(path.to_string(), k);
            }
            Err(e) => tracing::debug!("build cache: link {}: {e}", dest.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(size: u64, mtime: i64) -> FileKey {
        FileKey {
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: (mtime, 0),
        }
    }

    /// Write `data` as a context file through the hook, as an extraction would.
    fn extract(hook: &mut ContextHook, dir: &Path, path: &str, k: &FileKey, data: &[u8]) {
        let dest = dir.join(path);
        let _ = fs::remove_file(&dest);
        if let Some(src) = hook.reuse(path, k) {
            fs::hard_link(src, &dest).unwrap();
            hook.finished(path, k, None);
            return;
        }
        fs::write(&dest, data).unwrap();
        hook.content(data);
        let f = fs::File::open(&dest).unwrap();
        hook.finished(path, k, Some(&OwnedFd::from(f)));
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    #[test]
    fn reuses_by_header_records_and_prunes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cache");
        let ctx = tmp.path().join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        let cache = ContextCache::open(&root, 0).unwrap();

        let mut h = cache.hook();
        extract(&mut h, &ctx, "a", &key(5, 1), b"hello");
        extract(&mut h, &ctx, "b", &key(3, 1), b"abc");
        assert_eq!(h.hashes["a"], sha(b"hello"));
        let guard = cache.commit(h.keys.clone());
        let items = cache.usage();
        assert_eq!(items.len(), 1);
        assert!(items[0].in_use && !items[0].shared);
        assert_eq!(items[0].size, 8);
        assert_eq!(items[0].typ, "source.local");
        // In use: not pruned.
        assert!(cache
            .prune(&PruneOptions::default())
            .unwrap()
            .deleted
            .is_empty());
        drop(guard);

        // The same header again: linked, its hash known; a changed one is written anew.
        let mut h = cache.hook();
        extract(&mut h, &ctx, "a", &key(5, 1), b"XXXXX");
        extract(&mut h, &ctx, "b", &key(3, 2), b"xyz");
        assert_eq!(h.hashes["a"], sha(b"hello"), "reused by its header");
        assert_eq!(fs::read(ctx.join("a")).unwrap(), b"hello");
        assert_eq!(h.hashes["b"], sha(b"xyz"));
        drop(cache.commit(h.keys.clone()));
        let items = cache.usage();
        assert_eq!(items.len(), 1, "same paths, same record");
        assert_eq!(items[0].usage_count, 2);
        // The old `b` is gone from the cache.
        assert_eq!(fs::read_dir(root.join("files")).unwrap().count(), 2);

        // Reopened: the same state.
        let cache = ContextCache::open(&root, 0).unwrap();
        assert_eq!(cache.usage().len(), 1);
        assert!(
            ContextCache::age(&cache.usage()[0].last_used_at).unwrap() < Duration::from_secs(60)
        );

        // Filters: a bad one, one that matches nothing, then all.
        let mut opts = PruneOptions {
            filters: Filters::parse(r#"{"until":["x"]}"#).unwrap(),
            ..Default::default()
        };
        assert!(cache.prune(&opts).is_err());
        opts.filters = Filters::parse(r#"{"until":["1h"]}"#).unwrap();
        assert!(cache.prune(&opts).unwrap().deleted.is_empty());
        opts.filters = Filters::parse(r#"{"type":["source.local"]}"#).unwrap();
        let report = cache.prune(&opts).unwrap();
        assert_eq!(report.deleted.len(), 1);
        assert_eq!(report.reclaimed, 8);
        assert!(cache.usage().is_empty());
        assert_eq!(fs::read_dir(root.join("files")).unwrap().count(), 0);
    }

    #[test]
    fn files_of_this_second_are_not_cached() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = tmp.path().join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        let cache = ContextCache::open(&tmp.path().join("cache"), 0).unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut h = cache.hook();
        extract(&mut h, &ctx, "fresh", &key(3, now), b"one");
        assert_eq!(h.hashes["fresh"], sha(b"one"));
        drop(cache.commit(h.keys.clone()));
        // Changed within the same second, same size: hashed again, not taken from the cache.
        let mut h = cache.hook();
        extract(&mut h, &ctx, "fresh", &key(3, now), b"two");
        assert_eq!(h.hashes["fresh"], sha(b"two"));
    }

    #[test]
    fn size_limit_drops_least_recently_used() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = tmp.path().join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        let cache = ContextCache::open(&tmp.path().join("cache"), 10).unwrap();
        let mut h = cache.hook();
        extract(&mut h, &ctx, "one", &key(8, 1), b"11111111");
        drop(cache.commit(h.keys.clone()));
        std::thread::sleep(Duration::from_millis(5));
        let mut h = cache.hook();
        extract(&mut h, &ctx, "two", &key(8, 1), b"22222222");
        drop(cache.commit(h.keys.clone()));
        let items = cache.usage();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0].size, 8);
    }
}
