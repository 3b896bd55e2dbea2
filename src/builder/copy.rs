//! COPY and ADD (moby's `builder/dockerfile/copy.go`): sources resolved in a source root (the
//! context, or a stage's or image's root file system) with Go's `filepath.Match` wildcards,
//! turned into one tar that the builder extracts at `/` of the step's container, with dockerd's
//! directory and destination rules and `--chown`; ADD also unpacks local tar archives
//! (gzip/bzip2/xz/zstd) and downloads URLs. And the checksum a COPY/ADD step's cache key uses.
//!
//! Ownership as dockerd's classic builder: every copied entry gets the `--chown` pair, or
//! 0:0; [`Prepared::preserve_ownership`] (COPY `--from` without `--chown`) keeps the source's.
//! Entries unpacked from an ADD archive keep the archive's owners (dockerd does not apply
//! `--chown` to them). Parents created for a single file get the `--chown` pair; parents of a
//! directory's destination, and of archive entries, get 0:0; all are 0755.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use sha2::{Digest, Sha256};

use super::BuilderError;
use crate::util::inroot;

/// What a path in the destination image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    Missing,
    Dir,
    Other,
}

/// One COPY/ADD step's inputs, all words already expanded.
#[derive(Debug, Clone)]
pub struct CopyInput<'a> {
    /// As written: relative to the source root (a leading `/` too), with wildcards; for ADD
    /// also `http://`/`https://` URLs.
    pub srcs: &'a [String],
    pub dest: &'a str,
    /// The image's `WorkingDir` (a relative `dest` is under it).
    pub workdir: &'a str,
    /// The context directory, or a stage's or image's root file system.
    pub source_root: &'a Path,
    /// ADD: URLs are downloaded and local tar archives unpacked.
    pub add: bool,
    /// `--chown`, resolved (else files are owned by 0:0, as dockerd's COPY).
    pub chown: Option<(u32, u32)>,
    /// Where downloads go while the step runs.
    pub scratch: &'a Path,
    /// Content hashes already known (the context's, from its extraction), by real path.
    pub known: Option<&'a HashMap<PathBuf, String>>,
}

/// Content hashes known already, else computed.
#[derive(Debug, Clone, Copy)]
struct Known<'a>(Option<&'a HashMap<PathBuf, String>>);

impl Known<'_> {
    fn sha(&self, p: &Path) -> io::Result<String> {
        match self.0.and_then(|m| m.get(p)) {
            Some(sha) => Ok(sha.clone()),
            None => sha256_file(p),
        }
    }
}

/// What one source file system entry is.
#[derive(Debug, Clone)]
enum Node {
    File {
        host: PathBuf,
        size: u64,
        sha: String,
    },
    Dir,
    Symlink(PathBuf),
    /// A further name of a file met earlier in the same directory source (its `rel`).
    Hardlink(PathBuf),
    Device {
        kind: u8,
        major: u32,
        minor: u32,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    /// Relative to the source (empty for a single file).
    rel: PathBuf,
    node: Node,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

#[derive(Debug)]
enum Source {
    /// A file (a followed symlink, a download) placed by the destination rules as `name`.
    File {
        name: String,
        entry: Entry,
        /// Its path below the source root, symlinks resolved (what dockerd hashes it as).
        ctx_rel: String,
    },
    /// A directory: its contents go into the destination.
    Dir {
        entries: Vec<Entry>,
        /// As for `File`; empty for the source root itself.
        ctx_rel: String,
        /// The directory's own mode and owner (hashed as dockerd hashes it).
        own: Entry,
    },
    /// ADD: a local tar archive unpacked into the destination.
    Archive {
        host: PathBuf,
        /// The archive file, hashed as a file.
        entry: Entry,
        ctx_rel: String,
    },
}

/// The sources found, ready to be checksummed and written.
#[derive(Debug)]
pub struct Prepared {
    sources: Vec<Source>,
    /// Absolute and cleaned.
    dest: String,
    dest_slash: bool,
    chown: Option<(u32, u32)>,
    preserve: bool,
    cmd: &'static str,
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// moby's `containsWildcards`.
pub fn contains_wildcards(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// moby's `normalizeDest` then cleaned: (absolute clean path, ended with `/`).
fn normalize_dest(workdir: &str, dest: &str) -> (String, bool) {
    let slash = dest.ends_with('/');
    let full = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("/{workdir}/{dest}")
    };
    (inroot::clean(&full), slash)
}

/// Go's `filepath.Base`.
fn go_base(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return if p.is_empty() { ".".into() } else { "/".into() };
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// Resolve the sources (wildcards; a source that matches nothing is dockerd's error
/// `COPY failed: file not found in build context or excluded by .dockerignore: stat x: file does not exist`),
/// downloading URLs into `scratch`.
pub fn prepare(input: &CopyInput<'_>) -> Result<Prepared, BuilderError> {
    let cmd = if input.add { "ADD" } else { "COPY" };
    let root = File::open(input.source_root)
        .map_err(|e| BuilderError::io(format!("open {}", input.source_root.display()), e))?;
    let known = Known(input.known);
    let root_real = fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd()))
        .map_err(|e| BuilderError::io("resolve the source root", e))?;
    let mut sources = Vec::new();
    for (i, orig) in input.srcs.iter().enumerate() {
        if is_url(orig) {
            if !input.add {
                return Err(BuilderError::invalid(format!(
                    "{cmd} failed: source can't be a URL for COPY"
                )));
            }
            let dir = input.scratch.join(format!("download-{i}"));
            sources.push(download(orig, input.dest, &dir, cmd)?);
            continue;
        }
        let p = orig.strip_prefix('/').unwrap_or(orig);
        let p = p.strip_prefix("./").unwrap_or(p);
        if contains_wildcards(p) {
            for m in
                glob(&root_real, p).map_err(|e| BuilderError::io(format!("{cmd} failed"), e))?
            {
                sources.push(source_for(&root, &root_real, &m, input.add, cmd, known)?);
            }
        } else {
            sources.push(source_for(&root, &root_real, p, input.add, cmd, known)?);
        }
    }
    if sources.is_empty() {
        return Err(BuilderError::invalid(format!(
            "{cmd} failed: no source files were specified"
        )));
    }
    if sources.len() > 1 && !input.dest.ends_with('/') {
        return Err(BuilderError::invalid(format!(
            "When using {cmd} with more than one source file, the destination must be a directory and end with a /"
        )));
    }
    let (dest, dest_slash) = normalize_dest(input.workdir, input.dest);
    Ok(Prepared {
        sources,
        dest,
        dest_slash,
        chown: input.chown,
        preserve: false,
        cmd,
    })
}

/// The relative paths below `root` (a real directory) that match the wildcard `pattern` as
/// moby's walk with `filepath.Match` does: one component per level, directories entered only
/// when they are real directories (symlinks are not followed), names in lexical order.
fn glob(root: &Path, pattern: &str) -> io::Result<Vec<String>> {
    let comps: Vec<&str> = pattern.split('/').collect();
    let mut level: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    for (depth, comp) in comps.iter().enumerate() {
        let last = depth + 1 == comps.len();
        let mut next = Vec::new();
        for (dir, rel) in &level {
            let mut names: Vec<(Vec<u8>, bool)> = Vec::new();
            for e in fs::read_dir(dir)? {
                let e = e?;
                let is_dir = e.file_type()?.is_dir();
                if last || is_dir {
                    names.push((e.file_name().as_bytes().to_vec(), is_dir));
                }
            }
            names.sort();
            for (name, _) in names {
                let s = String::from_utf8_lossy(&name).into_owned();
                if go_match(comp, &s) {
                    let r = if rel.is_empty() {
                        s.clone()
                    } else {
                        format!("{rel}/{s}")
                    };
                    next.push((dir.join(std::ffi::OsStr::from_bytes(&name)), r));
                }
            }
        }
        level = next;
    }
    Ok(level.into_iter().map(|(_, r)| r).collect())
}

fn source_for(
    root: &File,
    root_real: &Path,
    p: &str,
    add: bool,
    cmd: &str,
    known: Known<'_>,
) -> Result<Source, BuilderError> {
    if inroot::components(p.as_bytes()).is_err() {
        return Err(BuilderError::forbidden(format!(
            "{cmd} failed: forbidden path outside the build context: {p} ()"
        )));
    }
    let fd = inroot::resolve(root, p.as_bytes(), OFlag::O_PATH).map_err(|e| match e {
        Errno::ENOENT => BuilderError::not_found(format!(
            "{cmd} failed: file not found in build context or excluded by .dockerignore: stat {p}: file does not exist"
        )),
        e => BuilderError::invalid(format!("{cmd} failed: stat {p}: {}", e.desc().to_lowercase())),
    })?;
    let real = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| BuilderError::io(format!("{cmd} failed: resolve {p}"), e))?;
    let meta =
        fs::metadata(&real).map_err(|e| BuilderError::io(format!("{cmd} failed: stat {p}"), e))?;
    let err = |e: io::Error| BuilderError::io(format!("{cmd} failed: read {p}"), e);
    // The resolved path below the root (the root's own path resolves to itself).
    let ctx_rel = real
        .strip_prefix(root_real)
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_default();
    if meta.is_dir() {
        let mut entries = Vec::new();
        let mut links = HashMap::new();
        walk(&real, Path::new(""), &mut entries, &mut links, known).map_err(err)?;
        let own = entry_for(&real, PathBuf::new(), &meta, known).map_err(err)?;
        return Ok(Source::Dir {
            entries,
            ctx_rel,
            own,
        });
    }
    let entry = entry_for(&real, PathBuf::new(), &meta, known).map_err(err)?;
    if add && meta.is_file() && is_archive(&real) {
        return Ok(Source::Archive {
            host: real,
            entry,
            ctx_rel,
        });
    }
    Ok(Source::File {
        name: go_base(p),
        entry,
        ctx_rel,
    })
}

fn sha256_file(p: &Path) -> io::Result<String> {
    hash_file(&[], p).map(hex::encode)
}

/// The sha256 of `prefix` followed by the content of the file `p` (not followed if it is a
/// symlink).
fn hash_file(prefix: &[u8], p: &Path) -> io::Result<[u8; 32]> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)?;
    let mut h = Sha256::new();
    h.update(prefix);
    io::copy(&mut f, &mut h)?;
    Ok(h.finalize().into())
}

fn entry_for(
    host: &Path,
    rel: PathBuf,
    meta: &fs::Metadata,
    known: Known<'_>,
) -> io::Result<Entry> {
    let ft = meta.file_type();
    let node = if ft.is_dir() {
        Node::Dir
    } else if ft.is_symlink() {
        Node::Symlink(fs::read_link(host)?)
    } else if ft.is_file() {
        Node::File {
            host: host.to_path_buf(),
            size: meta.len(),
            sha: known.sha(host)?,
        }
    } else {
        let kind = match meta.mode() & libc::S_IFMT {
            libc::S_IFCHR => b'3',
            libc::S_IFBLK => b'4',
            libc::S_IFIFO => b'6',
            _ => {
                return Err(io::Error::other(format!(
                    "{}: unsupported file type",
                    rel.display()
                )))
            }
        };
        let rdev = meta.rdev();
        Node::Device {
            kind,
            major: libc::major(rdev),
            minor: libc::minor(rdev),
        }
    };
    Ok(Entry {
        rel,
        node,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: u64::try_from(meta.mtime()).unwrap_or(0),
    })
}

/// A directory's entries (not itself), sorted, never following symlinks; sockets skipped,
/// further names of a file become hard links (as moby's tar).
fn walk(
    dir: &Path,
    rel: &Path,
    out: &mut Vec<Entry>,
    links: &mut HashMap<(u64, u64), PathBuf>,
    known: Known<'_>,
) -> io::Result<()> {
    let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let host = dir.join(&name);
        let r = rel.join(&name);
        let meta = fs::symlink_metadata(&host)?;
        if meta.mode() & libc::S_IFMT == libc::S_IFSOCK {
            continue;
        }
        if meta.is_file() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                out.push(Entry {
                    rel: r,
                    node: Node::Hardlink(first.clone()),
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: u64::try_from(meta.mtime()).unwrap_or(0),
                });
                continue;
            }
            links.insert((meta.dev(), meta.ino()), r.clone());
        }
        out.push(entry_for(&host, r.clone(), &meta, known)?);
        if meta.is_dir() {
            walk(&host, &r, out, links, known)?;
        }
    }
    Ok(())
}

/// A reader over `f` decompressed by its magic (gzip, bzip2, xz, zstd), as moby's
/// `DecompressStream`.
fn decompress(f: File) -> io::Result<Box<dyn Read>> {
    let mut r = BufReader::new(f);
    let head = {
        use std::io::BufRead;
        r.fill_buf()?.to_vec()
    };
    Ok(if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(r))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Box::new(lzma_rust2::XzReader::new(r, true))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else {
        Box::new(r)
    })
}

/// moby's `archive.IsArchivePath`: the (decompressed) content starts with a tar header.
fn is_archive(p: &Path) -> bool {
    let Ok(f) = File::open(p) else { return false };
    let Ok(r) = decompress(f) else { return false };
    let mut a = tar::Archive::new(r);
    let Ok(mut entries) = a.entries() else {
        return false;
    };
    matches!(entries.next(), Some(Ok(_)))
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) as seconds since the epoch.
fn parse_http_date(s: &str) -> Option<u64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.len() != 6 || f[5] != "GMT" {
        return None;
    }
    let day: i64 = f[1].parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == f[2])? as i64
        + 1;
    let year: i64 = f[3].parse().ok()?;
    let t: Vec<i64> = f[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if t.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + t[0] * 3600 + t[1] * 60 + t[2]).ok()
}

/// The `filename` parameter of a `Content-Disposition` header.
fn disposition_filename(v: &str) -> Option<String> {
    v.split(';').skip(1).find_map(|p| {
        let (k, val) = p.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("filename") {
            return None;
        }
        let val = val.trim().trim_matches('"');
        (!val.is_empty() && !val.ends_with('/')).then(|| go_base(val))
    })
}

/// ADD of a URL (moby's `downloadSource`): into `dir`, mode 0600, the mtime from
/// `Last-Modified` (else the epoch), never unpacked.
fn download(url: &str, dest: &str, dir: &Path, cmd: &str) -> Result<Source, BuilderError> {
    let failed = |m: String| BuilderError::invalid(format!("{cmd} failed: {m}"));
    let parsed = url::Url::parse(url).map_err(|e| failed(format!("parse {url:?}: {e}")))?;
    let path = percent_encoding::percent_decode_str(parsed.path())
        .decode_utf8_lossy()
        .into_owned();
    fs::create_dir_all(dir).map_err(|e| BuilderError::io("create the download directory", e))?;
    let work = || -> Result<(String, PathBuf), BuilderError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BuilderError::io("start a download runtime", e))?;
        rt.block_on(async {
            use crate::util::http::GetError;
            let mut resp = crate::util::http::get(url).await.map_err(|e| match e {
                GetError::Status { code: 404, .. } => {
                    BuilderError::not_found(format!("{cmd} failed: {}", e.message()))
                }
                GetError::Status { code: 403, .. } => {
                    BuilderError::forbidden(format!("{cmd} failed: {}", e.message()))
                }
                e => failed(e.message().to_string()),
            })?;
            let mut name = String::new();
            if !path.is_empty() && !path.ends_with('/') {
                name = go_base(&path);
            }
            if name.is_empty() || name == "/" || name == "." {
                name = resp
                    .header("content-disposition")
                    .and_then(disposition_filename)
                    .unwrap_or_default();
            }
            if name.is_empty() || name == "/" || name == "." || name == ".." {
                if dest.ends_with('/') {
                    return Err(failed(format!(
                        "cannot determine filename for source {url}"
                    )));
                }
                name = "__unnamed__".into();
            }
            let mtime = resp
                .header("last-modified")
                .and_then(parse_http_date)
                .unwrap_or(0);
            let file_path = dir.join(&name);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file_path)
                .map_err(|e| BuilderError::io(format!("create {}", file_path.display()), e))?;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| failed(format!("read {url}: {e}")))?
            {
                f.write_all(&chunk)
                    .map_err(|e| BuilderError::io(format!("write {}", file_path.display()), e))?;
            }
            f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
                .map_err(|e| BuilderError::io("set the download's mtime", e))?;
            Ok((name, file_path))
        })
    };
    // A thread of its own: the caller may be inside a runtime.
    let (name, file_path) = std::thread::scope(|s| s.spawn(work).join())
        .map_err(|_| BuilderError::internal("download thread panicked"))??;
    let meta = fs::symlink_metadata(&file_path)
        .map_err(|e| BuilderError::io(format!("stat {}", file_path.display()), e))?;
    let entry = entry_for(&file_path, PathBuf::new(), &meta, Known(None))
        .map_err(|e| BuilderError::io(format!("read {}", file_path.display()), e))?;
    Ok(Source::File {
        ctx_rel: name.clone(),
        name,
        entry,
    })
}

/// Go's `filepath.Match` (Unix) of one name against one pattern; a bad pattern matches
/// nothing (moby ignores the error).
pub fn go_match(pattern: &str, name: &str) -> bool {
    let mut pattern = pattern;
    let mut name = name;
    'outer: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return !name.contains('/');
        }
        match match_chunk(chunk, name) {
            Err(()) => return false,
            Ok(Some(t)) if t.is_empty() || !pattern.is_empty() => {
                name = t;
                continue;
            }
            Ok(_) => {}
        }
        if star {
            for (i, c) in name.char_indices() {
                if c == '/' {
                    break;
                }
                let after = &name[i + c.len_utf8()..];
                match match_chunk(chunk, after) {
                    Err(()) => return false,
                    Ok(Some(t)) => {
                        if pattern.is_empty() && !t.is_empty() {
                            continue;
                        }
                        name = t;
                        continue 'outer;
                    }
                    Ok(None) => {}
                }
            }
        }
        return false;
    }
    name.is_empty()
}

fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let b = pattern.as_bytes();
    let mut start = 0;
    let mut star = false;
    while start < b.len() && b[start] == b'*' {
        start += 1;
        star = true;
    }
    let mut inrange = false;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => i += 1,
            b'[' => inrange = true,
            b']' => inrange = false,
            b'*' if !inrange => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[start..i], &pattern[i..])
}

/// `Ok(Some(rest))` on a match, `Ok(None)` on none, `Err` on a bad pattern.
fn match_chunk<'a>(chunk: &str, s: &'a str) -> Result<Option<&'a str>, ()> {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some(c0) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c0 {
            '[' => {
                let mut r = '\0';
                if !failed {
                    if let Some(c) = s.chars().next() {
                        r = c;
                        s = &s[c.len_utf8()..];
                    }
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if chunk.starts_with('^') {
                    negated = true;
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.starts_with(']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if let Some(rest) = chunk.strip_prefix('-') {
                        let (h, rest) = get_esc(rest)?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if let Some(c) = s.chars().next() {
                        if c == '/' {
                            failed = true;
                        }
                        s = &s[c.len_utf8()..];
                    }
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c0 == '\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(());
                    }
                }
                let c = chunk.chars().next().ok_or(())?;
                if !failed {
                    match s.chars().next() {
                        Some(sc) if sc == c => s = &s[sc.len_utf8()..],
                        Some(sc) => {
                            failed = true;
                            s = &s[sc.len_utf8()..];
                        }
                        None => failed = true,
                    }
                }
                chunk = &chunk[c.len_utf8()..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

fn get_esc(chunk: &str) -> Result<(char, &str), ()> {
    let mut chunk = chunk;
    if chunk.is_empty() || chunk.starts_with('-') || chunk.starts_with(']') {
        return Err(());
    }
    if let Some(rest) = chunk.strip_prefix('\\') {
        chunk = rest;
        if chunk.is_empty() {
            return Err(());
        }
    }
    let c = chunk.chars().next().ok_or(())?;
    let rest = &chunk[c.len_utf8()..];
    if rest.is_empty() {
        return Err(());
    }
    Ok((c, rest))
}

/// Joins an absolute directory and a relative name.
fn join_abs(dir: &str, rel: &Path) -> String {
    let rel = rel.to_string_lossy();
    if rel.is_empty() {
        dir.to_string()
    } else if dir == "/" {
        format!("/{rel}")
    } else {
        format!("{dir}/{rel}")
    }
}

/// The tar being written and the directories it already creates.
struct TarOut<'w, 'k> {
    b: tar::Builder<&'w mut dyn Write>,
    made: HashSet<String>,
    kind: &'k dyn Fn(&str) -> DestKind,
    now: u64,
}

fn tar_err(e: io::Error) -> BuilderError {
    BuilderError::io("failed to copy files", e)
}

impl TarOut<'_, '_> {
    fn kind(&self, p: &str) -> DestKind {
        if self.made.contains(p) {
            DestKind::Dir
        } else {
            (self.kind)(p)
        }
    }

    fn header(kind: tar::EntryType, mode: u32, (uid, gid): (u32, u32), mtime: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(mtime);
        h.set_size(0);
        h
    }

    fn dir(&mut self, path: &str, mode: u32, owner: (u32, u32), mtime: u64) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        if name.is_empty() {
            return Ok(());
        }
        let mut h = Self::header(tar::EntryType::Directory, mode, owner, mtime);
        self.b
            .append_data(&mut h, format!("{name}/"), io::empty())?;
        self.made.insert(path.to_string());
        Ok(())
    }

    /// The missing parents of `path` (not `path`), 0755 and `owner`.
    fn parents(&mut self, path: &str, owner: (u32, u32)) -> Result<(), BuilderError> {
        let mut cur = String::new();
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            cur.push('/');
            cur.push_str(c);
            match self.kind(&cur) {
                DestKind::Dir => {}
                DestKind::Missing => self
                    .dir(&cur.clone(), 0o755, owner, self.now)
                    .map_err(tar_err)?,
                DestKind::Other => {
                    return Err(BuilderError::invalid(format!(
                        "failed to copy files: mkdir {cur}: not a directory"
                    )))
                }
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        path: &str,
        e: &Entry,
        owner: (u32, u32),
        link_base: &str,
    ) -> io::Result<()> {
        let name = path.trim_start_matches('/').to_string();
        match &e.node {
            Node::Dir => return self.dir(path, e.mode, owner, e.mtime),
            Node::File { host, .. } => {
                let f = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(host)?;
                let size = f.metadata()?.len();
                let mut h = Self::header(tar::EntryType::Regular, e.mode, owner, e.mtime);
                h.set_size(size);
                self.b.append_data(&mut h, &name, f.take(size))?;
            }
            Node::Symlink(target) => {
                let mut h = Self::header(tar::EntryType::Symlink, e.mode, owner, e.mtime);
                self.b.append_link(&mut h, &name, target)?;
            }
            Node::Hardlink(first) => {
                let target = join_abs(link_base, first);
                let mut h = Self::header(tar::EntryType::Link, e.mode, owner, e.mtime);
                self.b
                    .append_link(&mut h, &name, target.trim_start_matches('/'))?;
            }
            Node::Device { kind, major, minor } => {
                let mut h = Self::header(tar::EntryType::new(*kind), e.mode, owner, e.mtime);
                h.set_device_major(*major)?;
                h.set_device_minor(*minor)?;
                self.b.append_data(&mut h, &name, io::empty())?;
            }
        }
        self.made.remove(path);
        Ok(())
    }

    /// ADD of a local archive: its entries below `dest`, owners and modes as in the archive.
    fn unpack(&mut self, host: &Path, dest: &str, cmd: &str) -> Result<(), BuilderError> {
        let f = File::open(host).map_err(tar_err)?;
        let mut a = tar::Archive::new(decompress(f).map_err(tar_err)?);
        for ent in a.entries().map_err(tar_err)? {
            let mut ent = ent.map_err(tar_err)?;
            let raw = ent.path_bytes().into_owned();
            let comps = inroot::components(&raw).map_err(|_| {
                BuilderError::invalid(format!(
                    "failed to copy files: {:?} is outside of {dest:?}",
                    String::from_utf8_lossy(&raw)
                ))
            })?;
            let rel = PathBuf::from(std::ffi::OsStr::from_bytes(&inroot::join(&comps)));
            let path = join_abs(dest, &rel);
            let h = ent.header();
            // Lenient with empty numeric fields, as Go's tar reader.
            let mode = h.mode().unwrap_or(0o644) & 0o7777;
            let owner = (
                h.uid()
                    .ok()
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0),
                h.gid()
                    .ok()
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(0),
            );
            let mtime = h.mtime().unwrap_or(0);
            let kind = h.entry_type();
            self.parents(&path, (0, 0))?;
            let name = path.trim_start_matches('/').to_string();
            let res = match kind {
                tar::EntryType::Directory => self.dir(&path, mode, owner, mtime),
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut nh = Self::header(tar::EntryType::Regular, mode, owner, mtime);
                    nh.set_size(ent.size());
                    self.b.append_data(&mut nh, &name, &mut ent)
                }
                tar::EntryType::Symlink => {
                    let target = ent
                        .link_name_bytes()
                        .map(|b| b.into_owned())
                        .unwrap_or_default();
                    let mut nh = Self::header(tar::EntryType::Symlink, mode, owner, mtime);
                    self.b
                        .append_link(&mut nh, &name, std::ffi::OsStr::from_bytes(&target))
                }
                tar::EntryType::Link => {
                    let target = ent
                        .link_name_bytes()
                        .map(|b| b.into_owned())
                        .unwrap_or_default();
                    let comps = inroot::components(&target).map_err(|_| {
                        BuilderError::invalid(format!("{cmd} failed: invalid hardlink in archive"))
                    })?;
                    let t = PathBuf::from(std::ffi::OsStr::from_bytes(&inroot::join(&comps)));
                    let t = join_abs(dest, &t);
                    let mut nh = Self::header(tar::EntryType::Link, mode, owner, mtime);
                    self.b
                        .append_link(&mut nh, &name, t.trim_start_matches('/'))
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let mut nh = Self::header(kind, mode, owner, mtime);
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    nh.set_device_major(major)
                        .and_then(|_| nh.set_device_minor(minor))
                        .and_then(|_| self.b.append_data(&mut nh, &name, io::empty()))
                }
                _ => Ok(()),
            };
            res.map_err(tar_err)?;
        }
        Ok(())
    }
}

impl Prepared {
    /// COPY `--from` without `--chown`: entries keep the source's uid/gid (dockerd's
    /// `preserveOwnership`).
    pub fn preserve_ownership(mut self) -> Self {
        self.preserve = true;
        self
    }

    /// The absolute, cleaned destination.
    pub fn dest(&self) -> &str {
        &self.dest
    }

    fn owner(&self, e: &Entry) -> (u32, u32) {
        if self.preserve {
            (e.uid, e.gid)
        } else {
            self.chown.unwrap_or((0, 0))
        }
    }

    /// The sources named as dockerd names them in a COPY/ADD step's `#(nop)` comment, which
    /// is the step's cache key: `file:<hex>` for one file (an ADD archive is one), `dir:<hex>`
    /// for one directory, `multi:<hex>` for several sources (moby's `calcCopyInfo`,
    /// `walkSource`, `hashStringSlice` and `getSourceHashFromInfos`). Each entry is hashed as
    /// moby's build context hashes it ([`entry_tarsum`]), so an image dockerd built from the same
    /// files hits the cache (`--cache-from`). Content and metadata count, mtimes do not.
    pub fn source_hash(&self) -> Result<String, BuilderError> {
        let io =
            |e: io::Error| BuilderError::io(format!("{} failed: hash the sources", self.cmd), e);
        let mut infos = Vec::with_capacity(self.sources.len());
        for src in &self.sources {
            infos.push(match src {
                Source::File { entry, ctx_rel, .. } | Source::Archive { entry, ctx_rel, .. } => {
                    format!("file:{}", entry_tarsum(ctx_rel, entry, &[]).map_err(io)?)
                }
                Source::Dir {
                    entries,
                    ctx_rel,
                    own,
                } => {
                    let mut sums = Vec::with_capacity(entries.len() + 1);
                    // The directory itself, unless it is the root (moby skips `.`).
                    if !ctx_rel.is_empty() {
                        sums.push(entry_tarsum(ctx_rel, own, &[]).map_err(io)?);
                    }
                    for e in entries {
                        let name = if ctx_rel.is_empty() {
                            e.rel.to_string_lossy().into_owned()
                        } else {
                            format!("{ctx_rel}/{}", e.rel.to_string_lossy())
                        };
                        sums.push(entry_tarsum(&name, e, entries).map_err(io)?);
                    }
                    sums.sort();
                    hash_string_slice("dir", &sums)
                }
            });
        }
        Ok(match infos.len() {
            1 => infos.pop().unwrap_or_default(),
            _ => hash_string_slice("multi", &infos),
        })
    }

    /// The tar to extract at `/` in the step's container: parents of the destination,
    /// then each source placed by dockerd's rules (`dest_kind` says what a destination path is
    /// in the parent image).
    pub fn write_tar(
        &self,
        dest_kind: &dyn Fn(&str) -> DestKind,
        out: &mut dyn Write,
    ) -> Result<(), BuilderError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut t = TarOut {
            b: tar::Builder::new(out),
            made: HashSet::new(),
            kind: dest_kind,
            now,
        };
        let ident = if self.preserve {
            (0, 0)
        } else {
            self.chown.unwrap_or((0, 0))
        };
        for s in &self.sources {
            match s {
                Source::File { name, entry, .. } => {
                    let target = if self.dest_slash || t.kind(&self.dest) == DestKind::Dir {
                        join_abs(&self.dest, Path::new(name))
                    } else {
                        self.dest.clone()
                    };
                    t.parents(&target, ident)?;
                    t.entry(&target, entry, self.owner(entry), &self.dest)
                        .map_err(tar_err)?;
                }
                Source::Dir { entries, .. } => {
                    t.parents(&self.dest, (0, 0))?;
                    match t.kind(&self.dest) {
                        DestKind::Dir => {}
                        DestKind::Missing => {
                            t.dir(&self.dest, 0o755, ident, now).map_err(tar_err)?
                        }
                        DestKind::Other => {
                            return Err(BuilderError::invalid(format!(
                                "failed to copy files: failed to copy directory: mkdir {}: not a directory",
                                self.dest
                            )))
                        }
                    }
                    for e in entries {
                        let path = join_abs(&self.dest, &e.rel);
                        t.entry(&path, e, self.owner(e), &self.dest)
                            .map_err(tar_err)?;
                    }
                }
                Source::Archive { host, .. } => t.unpack(host, &self.dest, self.cmd)?,
            }
        }
        t.b.finish().map_err(tar_err)?;
        Ok(())
    }
}

/// moby's `hashStringSlice`: `<prefix>:` and the sha256 of the items joined by commas.
fn hash_string_slice(prefix: &str, items: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(items.join(",").as_bytes());
    format!("{prefix}:{}", hex::encode(h.finalize()))
}

/// The hash moby's build context gives one entry named `name` (relative to the source root):
/// tarsum version 1 (moby's `tarsumHash`), the sha256 of the selected fields of the header
/// dockerd's `archive.FileInfoHeader` makes for it (`name`, `mode`, `uid`, `gid`, `size`,
/// `typeflag`, `linkname`, `uname`, `gname`, `devmajor`, `devminor`, each key then its
/// value, no mtime), then the content of a regular file. A further link to a file met earlier
/// in a directory source (`siblings`) is hashed as that file, as a `Lstat` sees it.
fn entry_tarsum(name: &str, e: &Entry, siblings: &[Entry]) -> io::Result<String> {
    let mut node = &e.node;
    if let Node::Hardlink(first) = node {
        if let Some(f) = siblings.iter().find(|s| &s.rel == first) {
            node = &f.node;
        }
    }
    let mode = u64::from(e.mode & 0o7777);
    let (typeflag, size, link, dev, content) = match node {
        Node::File { host, size, sha } => (b'0', *size, Vec::new(), (0, 0), Some((host, sha))),
        Node::Dir => (b'5', 0, Vec::new(), (0, 0), None),
        Node::Symlink(t) => (b'2', 0, t.as_os_str().as_bytes().to_vec(), (0, 0), None),
        Node::Hardlink(_) => (b'0', 0, Vec::new(), (0, 0), None),
        Node::Device { kind, major, minor } => (*kind, 0, Vec::new(), (*major, *minor), None),
    };
    let name = if matches!(node, Node::Dir) && !name.ends_with('/') {
        format!("{name}/")
    } else {
        name.to_string()
    };
    let mut header = Vec::with_capacity(128 + name.len() + link.len());
    header.extend_from_slice(b"name");
    header.extend_from_slice(name.as_bytes());
    header.extend_from_slice(
        format!(
            "mode{mode}uid{}gid{}size{size}typeflag{}linkname",
            e.uid, e.gid, typeflag as char
        )
        .as_bytes(),
    );
    header.extend_from_slice(&link);
    header.extend_from_slice(format!("unamegnamedevmajor{}devminor{}", dev.0, dev.1).as_bytes());
    match content {
        None => {
            let mut h = Sha256::new();
            h.update(&header);
            Ok(hex::encode(h.finalize()))
        }
        Some((host, sha)) => tarsum_memo(&header, sha, host),
    }
}

/// The tarsum of a file's header and content, remembered by the header and the content's
/// own sha256 (which the context cache already knows): a cached build reads no file again.
fn tarsum_memo(header: &[u8], content_sha: &str, host: &Path) -> io::Result<String> {
    use std::sync::{Mutex, OnceLock};
    // 64 bytes and the table's overhead per file; emptied when it reaches MAX (a miss only
    // costs a read of the file).
    static MEMO: OnceLock<Mutex<HashMap<[u8; 32], [u8; 32]>>> = OnceLock::new();
    const MAX: usize = 1 << 16;
    let memo = MEMO.get_or_init(|| Mutex::new(HashMap::new()));
    let key: [u8; 32] = {
        let mut h = Sha256::new();
        h.update(header);
        h.update(b"\0");
        h.update(content_sha.as_bytes());
        h.finalize().into()
    };
    if let Some(v) = memo.lock().ok().and_then(|m| m.get(&key).copied()) {
        return Ok(hex::encode(v));
    }
    // tarsum version 1 of one entry, as moby's `tarsumHash` computes it: the sha256 of the
    // selected header fields, then the content.
    let sum = hash_file(header, host)?;
    if let Ok(mut m) = memo.lock() {
        if m.len() >= MAX {
            m.clear();
        }
        m.insert(key, sum);
    }
    Ok(hex::encode(sum))
}

/// moby's `parseChownFlag`: `user[:group]` as names or numbers, names looked up in the
/// image's `/etc/passwd` and `/etc/group` texts (`None`: the file is absent). As dockerd, a
/// lone `user` is also looked up as the group (`--chown=1000` is 1000:1000, `--chown=app` is
/// the uid of user `app` and the gid of group `app`).
pub fn resolve_chown(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u32, u32), BuilderError> {
    const PREFIX: &str = "unable to convert uid/gid chown string to host mapping";
    let parts: Vec<&str> = spec.split(':').collect();
    let (u, g) = match parts.as_slice() {
        [u] => (*u, *u),
        [u, g] => (*u, *g),
        _ => {
            return Err(BuilderError::invalid(format!(
                "{PREFIX}: invalid chown string format: {spec}"
            )))
        }
    };
    let lookup = |name: &str, text: Option<&str>, file: &str, what: &str, idx: usize| {
        if let Ok(n) = name.parse::<u32>() {
            return Ok(n);
        }
        let which = if what == "user" { "uid" } else { "gid" };
        let text = text.ok_or_else(|| {
            BuilderError::invalid(format!(
                "{PREFIX}: can't find {which} for {what} {name}: open {file}: no such file or directory"
            ))
        })?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name))
                    .then(|| f.get(idx).and_then(|v| v.parse::<u32>().ok()))?
            })
            .ok_or_else(|| {
                BuilderError::invalid(format!(
                    "{PREFIX}: can't find {which} for {what} {name}: no such {what}: {name}"
                ))
            })
    };
    let uid = lookup(u, passwd, "/etc/passwd", "user", 2)?;
    let gid = lookup(g, group, "/etc/group", "group", 2)?;
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader as StdBufReader};
    use std::net::TcpListener;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[derive(Debug, PartialEq)]
    struct Got {
        path: String,
        kind: char,
        mode: u32,
        uid: u64,
        gid: u64,
        data: String,
        mtime: u64,
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::write(r.join("a.txt"), "A").unwrap();
        fs::set_permissions(r.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::write(r.join("b.txt"), "B").unwrap();
        fs::write(r.join("c.md"), "C").unwrap();
        fs::create_dir_all(r.join("d/sub")).unwrap();
        fs::write(r.join("d/f1"), "one").unwrap();
        fs::write(r.join("d/sub/f2"), "two").unwrap();
        fs::set_permissions(r.join("d/sub"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("f1", r.join("d/ln")).unwrap();
        d
    }

    fn input<'a>(
        srcs: &'a [String],
        dest: &'a str,
        root: &'a Path,
        scratch: &'a Path,
    ) -> CopyInput<'a> {
        CopyInput {
            srcs,
            dest,
            workdir: "/",
            source_root: root,
            add: false,
            chown: None,
            scratch,
            known: None,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// Only `/` and the given paths exist as directories in the "image".
    fn dirs(list: &'static [&'static str]) -> impl Fn(&str) -> DestKind {
        move |p: &str| {
            if p == "/" || list.contains(&p) {
                DestKind::Dir
            } else {
                DestKind::Missing
            }
        }
    }

    fn tar_of(p: &Prepared, kind: &dyn Fn(&str) -> DestKind) -> Vec<Got> {
        let mut out = Vec::new();
        p.write_tar(kind, &mut out).unwrap();
        let mut a = tar::Archive::new(&out[..]);
        let mut v = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                _ => 'f',
            };
            let data = if kind == 'l' || kind == 'h' {
                e.link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            } else {
                let mut raw = Vec::new();
                e.read_to_end(&mut raw).unwrap();
                String::from_utf8_lossy(&raw).into_owned()
            };
            v.push(Got {
                path: e
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string(),
                kind,
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                data,
                mtime: h.mtime().unwrap(),
            });
        }
        v
    }

    fn names(v: &[Got]) -> Vec<String> {
        v.iter().map(|g| format!("{}{}", g.kind, g.path)).collect()
    }

    fn err(i: &CopyInput<'_>) -> String {
        prepare(i).unwrap_err().message().to_string()
    }

    #[test]
    fn single_file_to_new_path_creates_parents() {
        let t = tree();
        let srcs = s(&["a.txt"]);
        let p = prepare(&input(&srcs, "/dst/sub/b.txt", t.path(), t.path())).unwrap();
        let got = tar_of(&p, &dirs(&[]));
        assert_eq!(names(&got), ["ddst", "ddst/sub", "fdst/sub/b.txt"]);
        assert_eq!((got[0].mode, got[0].uid, got[0].gid), (0o755, 0, 0));
        let f = &got[2];
        assert_eq!((f.mode, f.uid, f.gid, f.data.as_str()), (0o640, 0, 0, "A"));
        let mt = fs::metadata(t.path().join("a.txt")).unwrap().mtime() as u64;
        assert_eq!(f.mtime, mt);
    }

    #[test]
    fn file_into_existing_dir_or_trailing_slash() {
        let t = tree();
        let srcs = s(&["/a.txt"]);
        let p = prepare(&input(&srcs, "/app", t.path(), t.path())).unwrap();
        assert_eq!(names(&tar_of(&p, &dirs(&["/app"]))), ["fapp/a.txt"]);
        // Missing and no slash: the file becomes /app.
        assert_eq!(names(&tar_of(&p, &dirs(&[]))), ["fapp"]);
        let p = prepare(&input(&srcs, "/new/", t.path(), t.path())).unwrap();
        assert_eq!(names(&tar_of(&p, &dirs(&[]))), ["dnew", "fnew/a.txt"]);
        // Relative destinations are under the working directory.
        let mut i = input(&srcs, "rel/", t.path(), t.path());
        i.workdir = "/work";
        let p = prepare(&i).unwrap();
        assert_eq!(p.dest(), "/work/rel");
        assert_eq!(
            names(&tar_of(&p, &dirs(&["/work"]))),
            ["dwork/rel", "fwork/rel/a.txt"]
        );
        let i = CopyInput {
            dest: ".",
            workdir: "/work",
            ..input(&srcs, ".", t.path(), t.path())
        };
        let p = prepare(&i).unwrap();
        assert_eq!(names(&tar_of(&p, &dirs(&["/work"]))), ["fwork/a.txt"]);
    }

    #[test]
    fn directory_copies_its_contents() {
        let t = tree();
        let srcs = s(&["./d"]);
        let p = prepare(&input(&srcs, "/out", t.path(), t.path())).unwrap();
        let got = tar_of(&p, &dirs(&[]));
        assert_eq!(
            names(&got),
            ["dout", "ffout/f1", "lout/ln", "dout/sub", "fout/sub/f2"]
                .map(|x| x.replacen("ff", "f", 1))
        );
        assert_eq!(got[2].data, "f1");
        assert_eq!(got[3].mode, 0o750);
        assert!(got.iter().all(|g| g.uid == 0 && g.gid == 0));
        // An existing destination directory is left as it is.
        assert_eq!(names(&tar_of(&p, &dirs(&["/out"])))[0], "fout/f1");
        // A file in the way.
        let e = p
            .write_tar(
                &|x: &str| {
                    if x == "/out" {
                        DestKind::Other
                    } else {
                        DestKind::Dir
                    }
                },
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(e.message().contains("not a directory"), "{e}");
    }

    #[test]
    fn hard_links_in_a_directory_stay_links() {
        let t = tree();
        fs::hard_link(t.path().join("d/f1"), t.path().join("d/zz")).unwrap();
        let srcs = s(&["d"]);
        let p = prepare(&input(&srcs, "/o/", t.path(), t.path())).unwrap();
        let got = tar_of(&p, &dirs(&[]));
        let zz = got.iter().find(|g| g.path == "o/zz").unwrap();
        assert_eq!((zz.kind, zz.data.as_str()), ('h', "o/f1"));
    }

    #[test]
    fn wildcards_match_like_go() {
        assert!(go_match("*.txt", "a.txt"));
        assert!(!go_match("*.txt", "a.md"));
        assert!(go_match("[a-b]?txt", "b.txt"));
        assert!(!go_match("[^a-b].txt", "a.txt"));
        assert!(go_match("\\*", "*"));
        assert!(!go_match("\\*", "x"));
        assert!(go_match("a*b*c", "axxbyyc"));
        assert!(!go_match("[", "["));
        assert!(contains_wildcards("a*"));
        assert!(!contains_wildcards("a\\*"));
        let t = tree();
        let srcs = s(&["*.txt"]);
        let p = prepare(&input(&srcs, "/w/", t.path(), t.path())).unwrap();
        assert_eq!(
            names(&tar_of(&p, &dirs(&[]))),
            ["dw", "fw/a.txt", "fw/b.txt"]
        );
        let srcs = s(&["d/s?b/*"]);
        let p = prepare(&input(&srcs, "/w", t.path(), t.path())).unwrap();
        // One match: no trailing slash needed (dockerd checks the number of sources).
        assert_eq!(names(&tar_of(&p, &dirs(&[]))), ["fw"]);
        // Several matches need a directory destination.
        let srcs = s(&["*.txt"]);
        assert_eq!(
            err(&input(&srcs, "/w", t.path(), t.path())),
            "When using COPY with more than one source file, the destination must be a directory and end with a /"
        );
        let srcs = s(&["*.nothing"]);
        assert_eq!(
            err(&input(&srcs, "/w/", t.path(), t.path())),
            "COPY failed: no source files were specified"
        );
    }

    #[test]
    fn several_sources_need_a_slash() {
        let t = tree();
        let srcs = s(&["a.txt", "b.txt"]);
        assert_eq!(
            err(&input(&srcs, "/x", t.path(), t.path())),
            "When using COPY with more than one source file, the destination must be a directory and end with a /"
        );
        let mut i = input(&srcs, "/x", t.path(), t.path());
        i.add = true;
        assert!(err(&i).starts_with("When using ADD with more"));
        let p = prepare(&input(&srcs, "/x/", t.path(), t.path())).unwrap();
        assert_eq!(
            names(&tar_of(&p, &dirs(&[]))),
            ["dx", "fx/a.txt", "fx/b.txt"]
        );
    }

    #[test]
    fn missing_source_and_escapes() {
        let t = tree();
        let srcs = s(&["nope.txt"]);
        let e = prepare(&input(&srcs, "/x", t.path(), t.path())).unwrap_err();
        assert_eq!(
            e.message(),
            "COPY failed: file not found in build context or excluded by .dockerignore: stat nope.txt: file does not exist"
        );
        assert_eq!(
            crate::errors::Kinded::kind(&e),
            crate::errors::ErrorKind::NotFound
        );
        for bad in ["../x", "/../x", "d/../../x"] {
            let srcs = s(&[bad]);
            let m = err(&input(&srcs, "/x", t.path(), t.path()));
            assert!(
                m.starts_with("COPY failed: forbidden path outside the build context"),
                "{bad}: {m}"
            );
        }
        // An absolute symlink resolves inside the root: no /etc/passwd there.
        symlink("/etc/passwd", t.path().join("pw")).unwrap();
        let srcs = s(&["pw"]);
        assert!(
            err(&input(&srcs, "/x", t.path(), t.path())).contains("stat pw: file does not exist")
        );
        fs::create_dir(t.path().join("etc")).unwrap();
        fs::write(t.path().join("etc/passwd"), "inside").unwrap();
        symlink("../../../../etc/passwd", t.path().join("d/up")).unwrap();
        for src in ["pw", "d/up"] {
            let srcs = s(&[src]);
            let p = prepare(&input(&srcs, "/x", t.path(), t.path())).unwrap();
            let got = tar_of(&p, &dirs(&[]));
            assert_eq!(
                (got[0].path.as_str(), got[0].data.as_str()),
                ("x", "inside")
            );
        }
        // A followed symlink keeps the link's name.
        let srcs = s(&["pw"]);
        let p = prepare(&input(&srcs, "/x/", t.path(), t.path())).unwrap();
        assert_eq!(names(&tar_of(&p, &dirs(&["/x"]))), ["fx/pw"]);
        let srcs = s(&["http://127.0.0.1:1/x"]);
        assert_eq!(
            err(&input(&srcs, "/x", t.path(), t.path())),
            "COPY failed: source can't be a URL for COPY"
        );
    }

    #[test]
    fn chown_numbers_and_names() {
        let passwd = "root:x:0:0::/root:/bin/sh\nbin:x:1:1::/bin:/bin/false\nunicorn:x:1001:1002::/:/bin/false\n";
        let group = "root:x:0:\nunicorn:x:1002:\nsomegrp:x:5555:\n";
        let ok = |spec| resolve_chown(spec, Some(passwd), Some(group)).unwrap();
        assert_eq!(ok("1"), (1, 1));
        assert_eq!(ok("0:1"), (0, 1));
        assert_eq!(ok("bin:5555"), (1, 5555));
        assert_eq!(ok("0:unicorn"), (0, 1002));
        assert_eq!(ok("unicorn"), (1001, 1002));
        assert_eq!(ok("unicorn:somegrp"), (1001, 5555));
        assert_eq!(resolve_chown("7:8", None, None).unwrap(), (7, 8));
        let bad = |spec, p, g| resolve_chown(spec, p, g).unwrap_err().message().to_string();
        assert_eq!(
            bad("bob:1:555", Some(passwd), Some(group)),
            "unable to convert uid/gid chown string to host mapping: invalid chown string format: bob:1:555"
        );
        assert_eq!(
            bad("bob", Some(passwd), Some(group)),
            "unable to convert uid/gid chown string to host mapping: can't find uid for user bob: no such user: bob"
        );
        assert_eq!(
            bad("root:bob", Some(passwd), Some(group)),
            "unable to convert uid/gid chown string to host mapping: can't find gid for group bob: no such group: bob"
        );
        // dockerd looks a lone user name up as the group too.
        assert!(bad("bin", Some(passwd), Some(group)).ends_with("no such group: bin"));
        assert!(bad("app", None, None).contains("can't find uid for user app: open /etc/passwd"));
    }

    #[test]
    fn chown_applies_to_entries_and_new_parents() {
        let t = tree();
        let srcs = s(&["a.txt"]);
        let mut i = input(&srcs, "/p/q/", t.path(), t.path());
        i.chown = Some((7, 8));
        let got = tar_of(&prepare(&i).unwrap(), &dirs(&[]));
        assert_eq!(names(&got), ["dp", "dp/q", "fp/q/a.txt"]);
        assert!(got.iter().all(|g| (g.uid, g.gid) == (7, 8)));
        // A directory: the new destination gets the pair, its parents 0:0.
        let srcs = s(&["d"]);
        let mut i = input(&srcs, "/p/q", t.path(), t.path());
        i.chown = Some((7, 8));
        let got = tar_of(&prepare(&i).unwrap(), &dirs(&[]));
        assert_eq!((got[0].path.as_str(), got[0].uid), ("p", 0));
        assert_eq!(
            (got[1].path.as_str(), got[1].uid, got[1].gid),
            ("p/q", 7, 8)
        );
        assert!(got[2..].iter().all(|g| (g.uid, g.gid) == (7, 8)));
        // COPY --from without --chown keeps the source's owners.
        let srcs = s(&["a.txt"]);
        let p = prepare(&input(&srcs, "/z", t.path(), t.path()))
            .unwrap()
            .preserve_ownership();
        let got = tar_of(&p, &dirs(&[]));
        let m = fs::metadata(t.path().join("a.txt")).unwrap();
        assert_eq!(
            (got[0].uid, got[0].gid),
            (u64::from(m.uid()), u64::from(m.gid()))
        );
    }

    fn archive_bytes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o700);
        h.set_uid(5);
        h.set_gid(6);
        h.set_size(0);
        b.append_data(&mut h, "top/", io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(5);
        h.set_gid(6);
        h.set_size(5);
        b.append_data(&mut h, "top/hello", &b"hello"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_uid(5);
        h.set_gid(6);
        h.set_mtime(0);
        h.set_size(0);
        b.append_link(&mut h, "top/ln", "hello").unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn add_unpacks_local_archives() {
        let t = tree();
        let raw = archive_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw).unwrap();
        fs::write(t.path().join("x.tar.gz"), gz.finish().unwrap()).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&raw).unwrap();
        fs::write(t.path().join("x.tar.bz2"), bz.finish().unwrap()).unwrap();
        fs::write(t.path().join("x.tar"), &raw).unwrap();
        let mut srcs_all = vec!["x.tar.gz", "x.tar.bz2", "x.tar"];
        // xz and zstd archives made by the tools, where installed.
        for (tool, ext) in [("xz", "xz"), ("zstd", "zst")] {
            let out = std::process::Command::new(tool)
                .args(["-q", "-k", "-f"])
                .arg(t.path().join("x.tar"))
                .status();
            if out.is_ok_and(|s| s.success()) {
                srcs_all.push(if ext == "xz" { "x.tar.xz" } else { "x.tar.zst" });
            } else {
                eprintln!("skipping the {ext} archive: no {tool} tool");
            }
        }
        for src in srcs_all {
            let srcs = s(&[src]);
            let mut i = input(&srcs, "/opt/", t.path(), t.path());
            i.add = true;
            i.chown = Some((9, 9));
            let got = tar_of(&prepare(&i).unwrap(), &dirs(&[]));
            assert_eq!(
                names(&got),
                ["dopt", "dopt/top", "fopt/top/hello", "lopt/top/ln"],
                "{src}"
            );
            assert_eq!((got[0].uid, got[0].mode), (0, 0o755));
            assert_eq!((got[1].uid, got[1].gid, got[1].mode), (5, 6, 0o700));
            assert_eq!(got[2].data, "hello");
        }
        // COPY does not unpack; nor is a text file an archive.
        let srcs = s(&["x.tar.gz", "a.txt"]);
        let p = prepare(&input(&srcs, "/opt/", t.path(), t.path())).unwrap();
        assert_eq!(
            names(&tar_of(&p, &dirs(&["/opt"]))),
            ["fopt/x.tar.gz", "fopt/a.txt"]
        );
        let mut i = input(&srcs, "/opt/", t.path(), t.path());
        i.add = true;
        let got = names(&tar_of(&prepare(&i).unwrap(), &dirs(&["/opt"])));
        assert_eq!(
            got,
            ["dopt/top", "fopt/top/hello", "lopt/top/ln", "fopt/a.txt"]
        );
    }

    /// Serves each response once on 127.0.0.1; returns the base URL.
    fn serve(responses: Vec<String>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for resp in responses {
                let (mut c, _) = l.accept().unwrap();
                let mut r = StdBufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 0 {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                c.write_all(resp.as_bytes()).unwrap();
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn add_downloads_urls() {
        let t = tree();
        let scratch = tempfile::tempdir().unwrap();
        let body = "payload";
        let ok = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let missing =
            "HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n"
                .to_string();
        let base = serve(vec![ok.clone(), missing, ok]);
        let srcs = vec![format!("{base}/files/data.bin")];
        let mut i = input(&srcs, "/dl/", t.path(), scratch.path());
        i.add = true;
        let p = prepare(&i).unwrap();
        let got = tar_of(&p, &dirs(&[]));
        assert_eq!(names(&got), ["ddl", "fdl/data.bin"]);
        assert_eq!(
            (got[1].mode, got[1].uid, got[1].data.as_str()),
            (0o600, 0, body)
        );
        assert_eq!(got[1].mtime, 784111777);
        let srcs = vec![format!("{base}/missing")];
        let mut i = input(&srcs, "/dl/", t.path(), scratch.path());
        i.add = true;
        let e = prepare(&i).unwrap_err();
        assert_eq!(
            e.message(),
            format!("ADD failed: failed to GET {base}/missing with status 404 Not Found: nope")
        );
        // No name in the URL and a directory destination.
        let srcs = vec![format!("{base}/")];
        let scratch2 = tempfile::tempdir().unwrap();
        let mut i = input(&srcs, "/dl/", t.path(), scratch2.path());
        i.add = true;
        assert_eq!(
            err(&i),
            format!("ADD failed: cannot determine filename for source {base}/")
        );
    }

    #[test]
    fn checksum_follows_content_not_mtime() {
        let t = tree();
        let srcs = s(&["d", "a.txt"]);
        let sum = || {
            prepare(&input(&srcs, "/x/", t.path(), t.path()))
                .unwrap()
                .source_hash()
                .unwrap()
        };
        let first = sum();
        assert!(first.starts_with("multi:") && first.len() == 70, "{first}");
        let one = s(&["d"]);
        let p = prepare(&input(&one, "/x/", t.path(), t.path())).unwrap();
        assert!(p.source_hash().unwrap().starts_with("dir:"));
        let one = s(&["a.txt"]);
        let p = prepare(&input(&one, "/x/", t.path(), t.path())).unwrap();
        assert!(p.source_hash().unwrap().starts_with("file:"));
        assert_eq!(first, sum());
        let f = File::options()
            .write(true)
            .open(t.path().join("d/f1"))
            .unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(1000))
            .unwrap();
        assert_eq!(first, sum(), "mtime is not part of the checksum");
        fs::write(t.path().join("d/sub/f2"), "TWO").unwrap();
        let second = sum();
        assert_ne!(first, second);
        fs::set_permissions(t.path().join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        let third = sum();
        assert_ne!(second, third);
        // --chown is in the step's comment beside the hash, not in it (moby's `performCopy`).
        let mut i = input(&srcs, "/x/", t.path(), t.path());
        i.chown = Some((1, 1));
        assert_eq!(prepare(&i).unwrap().source_hash().unwrap(), third);
        fs::remove_file(t.path().join("d/ln")).unwrap();
        symlink("sub", t.path().join("d/ln")).unwrap();
        assert_ne!(sum(), third);
    }

    #[test]
    fn sources_hash_as_dockerd_hashes_its_context() {
        // Hashes dockerd (20.10, whose build context hashing is moby 28's) printed in the
        // history of `COPY a.txt /x` and `COPY sub /y/` for these files, owned by root.
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("a.txt"), "hello\n").unwrap();
        fs::create_dir(t.path().join("sub")).unwrap();
        fs::write(t.path().join("sub/s.txt"), "s\n").unwrap();
        fs::set_permissions(t.path().join("a.txt"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(t.path().join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(
            t.path().join("sub/s.txt"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        for p in ["a.txt", "sub", "sub/s.txt"] {
            std::os::unix::fs::lchown(t.path().join(p), Some(0), Some(0)).unwrap();
        }
        let hash = |srcs: &[&str], dest: &str| {
            let srcs = s(srcs);
            prepare(&input(&srcs, dest, t.path(), t.path()))
                .unwrap()
                .source_hash()
                .unwrap()
        };
        assert_eq!(
            hash(&["a.txt"], "/x"),
            "file:00ec16333078d287782d462baefc8bb9eb0231dc3aefba3ca3e2f7e5cf0cadda"
        );
        assert_eq!(
            hash(&["sub"], "/y/"),
            "dir:8e432a8215162bdfe06a27645da8f5533f6fedd42fb8024177f35ea42369bccf"
        );
        // A wildcard and `./` name the same file.
        assert_eq!(hash(&["./a.t?t"], "/x"), hash(&["a.txt"], "/x"));
    }

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("garbage"), None);
        assert_eq!(
            disposition_filename("attachment; filename=\"x.bin\""),
            Some("x.bin".into())
        );
    }
}
