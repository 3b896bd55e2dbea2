//! Secure extraction of image layers into overlayfs "diff" directories.
//!
//! Containment does not rest on string checks. Names are cleaned lexically (a name that climbs
//! above the root is refused, as dockerd refuses "breakout" entries), and then every entry's
//! parent directory is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative
//! to a descriptor of the root, so symlinks created earlier in the same layer, absolute or
//! relative, resolve *inside* the root. Only the final component is then acted on, with `*at`
//! calls that never follow it (`O_NOFOLLOW | O_EXCL`, `AT_SYMLINK_NOFOLLOW`, `symlinkat`,
//! `mknodat`, `linkat` without `AT_SYMLINK_FOLLOW`). Hard-link targets are resolved the same way.
//!
//! Docker whiteouts become their overlayfs form: `.wh.<name>` a 0/0 character device `<name>`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
//!
//! The DiffID is the SHA-256 of the whole uncompressed stream, trailing blocks included.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::tarsplit::Recorder;
use crate::errors::{ErrorKind, Kinded};
use crate::util::ids::IdMap;
use crate::util::inroot::{self, join};

const BUF_SIZE: usize = 128 * 1024;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// What applying a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// "sha256:<hex>" of the *uncompressed* tar stream (the layer's DiffID).
    pub diff_id: String,
    /// Bytes of the uncompressed tar stream.
    pub tar_size: u64,
    /// Bytes of regular-file content written (the layer's size as `docker images` counts it).
    pub content_size: u64,
}

/// Why a layer could not be applied.
#[derive(Debug)]
pub enum ApplyError {
    /// The target directory could not be opened.
    Root { path: PathBuf, source: io::Error },
    /// The stream is compressed with a format berth does not decode.
    UnsupportedCompression(&'static str),
    /// The stream is not a (compressed) tar archive, or ends early.
    Malformed { context: String, source: io::Error },
    /// The source of the stream failed (not its content).
    Read { source: io::Error },
    /// An entry is refused: a breakout name, an unsupported type, a bad link.
    InvalidEntry { entry: String, reason: String },
    /// A filesystem operation for an entry failed.
    Fs {
        entry: String,
        op: &'static str,
        source: Errno,
    },
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Root { path, source } => {
                write!(f, "opening layer directory {}: {source}", path.display())
            }
            ApplyError::UnsupportedCompression(what) => {
                write!(f, "unsupported layer compression: {what}")
            }
            ApplyError::Malformed { context, source } => {
                // The tar parser quotes the offending bytes; keep garbage out of the message.
                let text: String = source
                    .to_string()
                    .chars()
                    .filter(|c| *c != char::REPLACEMENT_CHARACTER && !c.is_control())
                    .take(200)
                    .collect();
                write!(f, "invalid layer archive: {context}: {text}")
            }
            ApplyError::Read { source } => write!(f, "reading layer stream: {source}"),
            ApplyError::InvalidEntry { entry, reason } => {
                write!(f, "invalid layer entry {entry:?}: {reason}")
            }
            ApplyError::Fs { entry, op, source } => {
                write!(
                    f,
                    "applying layer entry {entry:?}: {op}: {}",
                    crate::errors::full_disk_text(*source as i32).unwrap_or(source.desc())
                )
            }
        }
    }
}

impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ApplyError::Root { source, .. }
            | ApplyError::Malformed { source, .. }
            | ApplyError::Read { source } => Some(source),
            ApplyError::Fs { source, .. } => Some(source),
            ApplyError::UnsupportedCompression(_) | ApplyError::InvalidEntry { .. } => None,
        }
    }
}

impl Kinded for ApplyError {
    fn kind(&self) -> ErrorKind {
        match self {
            ApplyError::Root { .. } | ApplyError::Read { .. } => ErrorKind::Internal,
            ApplyError::UnsupportedCompression(_) => ErrorKind::NotImplemented,
            ApplyError::Malformed { .. } | ApplyError::InvalidEntry { .. } => {
                ErrorKind::InvalidParameter
            }
            ApplyError::Fs { source, .. } if caused_by_archive(*source) => {
                ErrorKind::InvalidParameter
            }
            ApplyError::Fs { .. } => ErrorKind::Internal,
        }
    }
}

/// Errnos that an archive's content provokes (a name through a file, a dangling link, a loop,
/// an over-long name); anything else (ENOSPC, EIO, EACCES, ...) is the host's fault.
fn caused_by_archive(e: Errno) -> bool {
    matches!(
        e,
        Errno::ENOENT
            | Errno::EEXIST
            | Errno::ENOTDIR
            | Errno::EISDIR
            | Errno::ELOOP
            | Errno::EXDEV
            | Errno::ENAMETOOLONG
            | Errno::EINVAL
            | Errno::ENOTEMPTY
            | Errno::ERANGE
            | Errno::E2BIG
    )
}

/// Extract a layer tar (plain, gzip or zstd — detected from the magic bytes) into `root`, an
/// existing, empty directory that becomes an overlayfs lower/upper "diff" directory.
pub fn apply_layer<R: Read>(reader: R, root: &Path) -> Result<ApplyStats, ApplyError> {
    let (root, _) = open_root(root, false)?;
    detect_and_apply(reader, root, None, None, None)
}

/// How [`extract_at`] treats a `docker cp` archive (moby's `TarOptions` for `CopyToContainer`).
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// Owner of every entry (uid, gid) instead of the archive's (`copyUIDGID` unset).
    pub owner: Option<(u32, u32)>,
    /// The archive's ids as the host ids of a remapped container (`copyUIDGID` into a rootfs
    /// seen through its idmapped mount).
    pub shift: Option<IdMap>,
    /// Refuse to replace a directory with a non-directory and the reverse.
    pub no_overwrite_dir_non_dir: bool,
}

/// The host ids of container ids `uid`, `gid` under `map`; an id outside the mapping is
/// moby's `idtools` error.
fn host_ids(map: &IdMap, uid: u32, gid: u32) -> Result<(u32, u32), String> {
    let unmapped = |id: u32| format!("Container ID {id} cannot be mapped to a host ID");
    Ok((
        map.host_uid(uid).ok_or_else(|| unmapped(uid))?,
        map.host_gid(gid).ok_or_else(|| unmapped(gid))?,
    ))
}

/// Extract a (possibly compressed) tar into the open directory `root` for `docker cp`: the
/// same in-root extraction as layers, but whiteout names are ordinary files.
pub fn extract_at<R: Read>(
    reader: R,
    root: OwnedFd,
    opts: ExtractOptions,
) -> Result<ApplyStats, ApplyError> {
    detect_and_apply(reader, root, None, None, Some(opts))
}

/// Like [`extract_at`] for a stream that is already an uncompressed tar (no magic detection:
/// an entry whose name starts like a compression magic must not be mistaken for one).
pub fn extract_plain_at<R: Read>(
    reader: R,
    root: OwnedFd,
    opts: ExtractOptions,
    hook: Option<&mut dyn FileHook>,
) -> Result<ApplyStats, ApplyError> {
    let failed = Rc::new(Cell::new(false));
    let source = SourceReader {
        inner: reader,
        failed: Rc::clone(&failed),
    };
    let mut applier = Applier::new(root, None, None, Some(opts), hook);
    // No DiffID and no recorder: nothing between the parser and the source looks at content.
    applier.skip_copies = true;
    apply_stream(source, applier, &failed, false)
}

/// A regular file's identity in an archive: its header's size, mode, owner and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
}

/// What an extraction tells its caller about plain regular files without xattrs (the
/// builder's context cache); other entries never reach it.
pub trait FileHook {
    /// A file about to be written at `path` (cleaned, relative to the root): an existing file
    /// with the same content and [`FileKey`] to hard-link there instead, if the caller has one.
    /// The entry's content is then read and dropped.
    fn reuse(&mut self, path: &str, key: &FileKey) -> Option<PathBuf>;
    /// The content of the file being written, chunk by chunk (a reused file has none).
    fn content(&mut self, chunk: &[u8]);
    /// The file at `path` is complete: `written` is the new file (`None`: it was reused).
    fn finished(&mut self, path: &str, key: &FileKey, written: Option<&OwnedFd>);
}

fn open_root(root: &Path, recording: bool) -> Result<(OwnedFd, Option<PathBuf>), ApplyError> {
    let root_file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(root)
        .map_err(|source| ApplyError::Root {
            path: root.to_path_buf(),
            source,
        })?;
    let fd = OwnedFd::from(root_file);
    let path = if recording {
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        Some(std::fs::read_link(link).map_err(|source| ApplyError::Root {
            path: root.to_path_buf(),
            source,
        })?)
    } else {
        None
    };
    Ok((fd, path))
}

/// Like apply_layer, and also records the uncompressed stream's tar-split (headers, padding and
/// trailer kept; each regular file's content a reference to the file by its cleaned name) so
/// the tar can be reassembled from `root` later.
pub fn apply_layer_recorded<R: Read>(
    reader: R,
    root: &Path,
    recorder: Recorder,
) -> Result<(ApplyStats, Recorder), ApplyError> {
    let recorder = RefCell::new(recorder);
    let (root, root_path) = open_root(root, true)?;
    let stats = detect_and_apply(reader, root, root_path, Some(&recorder), None)?;
    Ok((stats, recorder.into_inner()))
}

fn detect_and_apply<R: Read>(
    reader: R,
    root: OwnedFd,
    root_path: Option<PathBuf>,
    recorder: Option<&RefCell<Recorder>>,
    cp: Option<ExtractOptions>,
) -> Result<ApplyStats, ApplyError> {
    let failed = Rc::new(Cell::new(false));
    let mut source = SourceReader {
        inner: reader,
        failed: Rc::clone(&failed),
    };
    let mut magic = [0u8; 6];
    let mut have = 0;
    while have < magic.len() {
        match source.read(&mut magic[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ApplyError::Read { source: e }),
        }
    }
    let head = &magic[..have];
    let stream = BufReader::with_capacity(
        BUF_SIZE,
        io::Cursor::new(magic).take(have as u64).chain(source),
    );
    let decoded: Box<dyn Read + '_> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(stream))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(stream)
                .map_err(|e| ApplyError::Read { source: e })?,
        )
    } else if head.starts_with(b"BZh") {
        return Err(ApplyError::UnsupportedCompression("bzip2"));
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Err(ApplyError::UnsupportedCompression("xz"));
    } else {
        Box::new(stream)
    };
    let digest = cp.is_none();
    let applier = Applier::new(root, root_path, recorder, cp, None);
    apply_stream(decoded, applier, &failed, digest)
}

/// Like apply_layer but without decompression detection: `reader` is already an uncompressed tar.
pub fn apply_tar<R: Read>(reader: R, root: &Path) -> Result<ApplyStats, ApplyError> {
    plain_tar(reader, root, true)
}

/// Like [`apply_tar`] without the DiffID (`ApplyStats::diff_id` comes back empty): an archive
/// unpacked to read its files (`docker load`), where hashing it would be wasted work.
pub fn unpack_tar<R: Read>(reader: R, root: &Path) -> Result<ApplyStats, ApplyError> {
    plain_tar(reader, root, false)
}

fn plain_tar<R: Read>(reader: R, root: &Path, digest: bool) -> Result<ApplyStats, ApplyError> {
    let failed = Rc::new(Cell::new(false));
    let source = SourceReader {
        inner: reader,
        failed: Rc::clone(&failed),
    };
    let (root, _) = open_root(root, false)?;
    apply_stream(
        source,
        Applier::new(root, None, None, None, None),
        &failed,
        digest,
    )
}

/// Records whether the caller's reader itself failed, so that an error surfacing through the
/// decompressor or the tar parser can be told apart from malformed content.
struct SourceReader<R> {
    inner: R,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for SourceReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let res = self.inner.read(buf);
        if let Err(e) = &res {
            if e.kind() != io::ErrorKind::Interrupted {
                self.failed.set(true);
            }
        }
        res
    }
}

/// Hashes, counts and (optionally) records every byte the tar parser consumes. It sits right
/// under the parser, which never reads ahead, so a file's content range is announced to the
/// recorder before its bytes go by.
struct HashingReader<'a, R> {
    inner: R,
    /// `None` for an extraction (`docker cp`, a build context): no DiffID is wanted.
    hasher: Option<Sha256>,
    count: u64,
    recorder: Option<&'a RefCell<Recorder>>,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        if let Some(recorder) = self.recorder {
            recorder.borrow_mut().observe(&buf[..n]);
        }
        Ok(n)
    }
}

fn stream_error(source: io::Error, context: String, failed: &Cell<bool>) -> ApplyError {
    if failed.get() {
        ApplyError::Read { source }
    } else {
        ApplyError::Malformed { context, source }
    }
}

impl<'a> Applier<'a> {
    fn new(
        root: OwnedFd,
        root_path: Option<PathBuf>,
        recorder: Option<&'a RefCell<Recorder>>,
        cp: Option<ExtractOptions>,
        hook: Option<&'a mut dyn FileHook>,
    ) -> Self {
        Applier {
            root,
            root_path,
            cp,
            dirs: Vec::new(),
            content_size: 0,
            buf: vec![0u8; BUF_SIZE],
            recorder,
            hook,
            skip_copies: false,
        }
    }
}

/// Apply the tar `reader` with `applier`; `digest` asks for the stream's sha256 (the DiffID).
fn apply_stream<R: Read>(
    reader: R,
    mut applier: Applier<'_>,
    failed: &Cell<bool>,
    digest: bool,
) -> Result<ApplyStats, ApplyError> {
    let recorder = applier.recorder;
    let hashing = HashingReader {
        inner: BufReader::with_capacity(BUF_SIZE, reader),
        hasher: digest.then(Sha256::new),
        count: 0,
        recorder,
    };
    // Special members (PAX headers, GNU long names) above Go's 1 MiB are refused before the
    // tar crate reads one whole into memory.
    let mut archive = tar::Archive::new(crate::util::targuard::HeaderGuard::new(hashing));
    let entries = archive
        .entries()
        .map_err(|e| stream_error(e, "reading entries".into(), failed))?;
    let mut seen = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            let context = if seen {
                "reading entry header"
            } else {
                "reading first header (not a tar archive?)"
            };
            stream_error(e, context.into(), failed)
        })?;
        seen = true;
        applier.apply_entry(&mut entry, failed)?;
    }
    let mut rest = archive.into_inner();
    loop {
        match rest.read(&mut applier.buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(stream_error(e, "reading trailing data".into(), failed)),
        }
    }
    applier.finish_dirs()?;
    let rest = rest.into_inner();
    Ok(ApplyStats {
        diff_id: rest
            .hasher
            .map(|h| format!("sha256:{}", hex::encode(h.finalize())))
            .unwrap_or_default(),
        tar_size: rest.count,
        content_size: applier.content_size,
    })
}

/// Metadata of an entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: Uid,
    gid: Gid,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

struct Applier<'a> {
    root: OwnedFd,
    /// Directories whose times are set at the end, with their cleaned path.
    dirs: Vec<(Vec<CString>, TimeSpec)>,
    content_size: u64,
    buf: Vec<u8>,
    recorder: Option<&'a RefCell<Recorder>>,
    /// The root's absolute path, when recording.
    root_path: Option<PathBuf>,
    /// Set for a `docker cp` archive: no whiteouts, owner and overwrite rules.
    cp: Option<ExtractOptions>,
    /// Sees regular files' content, or supplies an identical file to link.
    hook: Option<&'a mut dyn FileHook>,
    /// Nothing between the parser and the source looks at content bytes (no DiffID, no
    /// recorder): a reused file's content is read past without being copied (a source that
    /// can, [`crate::util::io::ChannelReader`], only advances).
    skip_copies: bool,
}

fn invalid(entry: &str, reason: impl Into<String>) -> ApplyError {
    ApplyError::InvalidEntry {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

fn fs_err<'a>(entry: &'a str, op: &'static str) -> impl FnOnce(Errno) -> ApplyError + 'a {
    move |source| ApplyError::Fs {
        entry: entry.to_string(),
        op,
        source,
    }
}

fn io_errno(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// An entry's content must be as long as its header says.
fn check_length(name: &str, got: u64, expected: u64) -> Result<(), ApplyError> {
    if got == expected {
        return Ok(());
    }
    Err(ApplyError::Malformed {
        context: format!("reading content of {name:?}"),
        source: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("archive ends after {got} of {expected} bytes"),
        ),
    })
}

/// Take ownership of a descriptor a syscall just returned.
fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Clean a tar name into components under the root: leading `/` and `.` components go, `..`
/// pops a component and is refused where it would climb above the root.
fn clean_name(raw: &[u8]) -> Result<Vec<CString>, &'static str> {
    inroot::components(raw).map_err(|e| match e {
        inroot::ComponentsError::Escapes => "path escapes the layer root",
        e => e.as_str(),
    })
}

/// `/proc/self/fd/<dir>/<name>`: a path to `name` in an open directory, for calls without an
/// `*at` form. Only the magic link to `dir` is followed, never `name`'s own symlink.
fn proc_path(dir: &OwnedFd, name: &CStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(OsStr::from_bytes(name.to_bytes()));
    p
}

/// Parse a PAX time ("1700000000.5"); negative or odd values fall back to the header's.
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if secs < 0 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: i64 = digits.parse().ok()?;
    Some(TimeSpec::new(secs, nanos))
}

/// Remove whatever is at `name` in `dir` (recursively for a directory), unless it is a
/// directory and `keep_dir` is set. Returns whether a directory was kept.
fn remove_existing(dir: &OwnedFd, name: &CStr, keep_dir: bool) -> Result<bool, Errno> {
    let st = match fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)?;
        return Ok(false);
    }
    if keep_dir {
        return Ok(true);
    }
    // std's remove_dir_all opens every level with O_NOFOLLOW and never follows symlinks.
    std::fs::remove_dir_all(proc_path(dir, name)).map_err(|e| io_errno(&e))?;
    Ok(false)
}

/// Where an xattr goes: an open file or directory, or a path that must not be followed.
enum XattrTarget<'a> {
    Fd(&'a OwnedFd),
    NoFollow(&'a Path),
}

fn set_xattr(target: &XattrTarget<'_>, key: &CStr, value: &[u8]) -> Result<(), Errno> {
    let res = match target {
        // SAFETY: `key` is NUL-terminated and `value` is valid for `value.len()` bytes.
        XattrTarget::Fd(fd) => unsafe {
            libc::fsetxattr(
                fd.as_raw_fd(),
                key.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        },
        XattrTarget::NoFollow(path) => {
            let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
            // SAFETY: `path` and `key` are NUL-terminated and `value` is valid for its length.
            unsafe {
                libc::lsetxattr(
                    path.as_ptr(),
                    key.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            }
        }
    };
    Errno::result(res).map(drop)
}

impl Applier<'_> {
    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        failed: &Cell<bool>,
    ) -> Result<(), ApplyError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            tracing::debug!("ignoring pax global header {name:?}");
            return Ok(());
        }
        let comps = clean_name(&raw).map_err(|r| invalid(&name, r))?;
        let mut meta = read_meta(entry, &name)?;
        if let Some((uid, gid)) = self.cp.as_ref().and_then(|o| o.owner) {
            meta.uid = Uid::from_raw(uid);
            meta.gid = Gid::from_raw(gid);
        } else if let Some(map) = self.cp.as_ref().and_then(|o| o.shift.as_ref()) {
            let (uid, gid) = host_ids(map, meta.uid.as_raw(), meta.gid.as_raw())
                .map_err(|r| invalid(&name, r))?;
            meta.uid = Uid::from_raw(uid);
            meta.gid = Gid::from_raw(gid);
        }
        // `docker cp`: the extraction directory itself is kept as it is (moby skips `.`).
        if self.cp.is_some() && comps.is_empty() && kind == EntryType::Directory {
            return Ok(());
        }
        if self.cp.as_ref().is_some_and(|o| o.no_overwrite_dir_non_dir) {
            self.check_overwrite(&comps, kind == EntryType::Directory, &name)?;
        }

        if let (Some((last, parents)), None) = (comps.split_last(), self.cp.as_ref()) {
            if last.as_bytes() == WHITEOUT_OPAQUE {
                return self.opaque(parents, &name);
            }
            if comps
                .iter()
                .any(|c| c.as_bytes().starts_with(WHITEOUT_META_PREFIX))
            {
                tracing::debug!("skipping aufs metadata entry {name:?}");
                return Ok(());
            }
            if let Some(hidden) = last.as_bytes().strip_prefix(WHITEOUT_PREFIX) {
                return self.whiteout(parents, hidden, &meta, &name);
            }
        }

        match kind {
            EntryType::Directory => self.directory(&comps, &meta, &name),
            _ if comps.is_empty() => Err(invalid(&name, "a non-directory names the layer root")),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular(entry, &comps, &meta, &name, failed)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid(&name, "symlink without a target"))?;
                let target = CString::new(target.into_owned())
                    .map_err(|_| invalid(&name, "symlink target contains a nul byte"))?;
                let (dir, last) = self.parent(&comps, &name)?;
                remove_existing(&dir, last, false)
                    .map_err(fs_err(&name, "removing existing entry"))?;
                symlinkat(target.as_c_str(), Some(dir.as_raw_fd()), last)
                    .map_err(fs_err(&name, "creating symlink"))?;
                self.set_at_meta(&dir, last, &meta, &name, false)
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid(&name, "hard link without a target"))?
                    .into_owned();
                self.hard_link(&comps, &target, &name)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let (major, minor) = match (header.as_ustar(), header.as_gnu()) {
                    (Some(u), _) => (u.dev_major, u.dev_minor),
                    (None, Some(g)) => (g.dev_major, g.dev_minor),
                    (None, None) => ([0; 8], [0; 8]),
                };
                let number = |v: io::Result<Option<u32>>, field: &[u8]| {
                    lenient(v, field)
                        .map(|n| u64::from(n.unwrap_or(0)))
                        .map_err(|source| ApplyError::Malformed {
                            context: format!("reading device number of {name:?}"),
                            source,
                        })
                };
                let (sflag, dev) = match kind {
                    EntryType::Char => (SFlag::S_IFCHR, None),
                    EntryType::Block => (SFlag::S_IFBLK, None),
                    _ => (SFlag::S_IFIFO, Some(0)),
                };
                let dev = match dev {
                    Some(d) => d,
                    None => makedev(
                        number(header.device_major(), &major)?,
                        number(header.device_minor(), &minor)?,
                    ),
                };
                let (dir, last) = self.parent(&comps, &name)?;
                remove_existing(&dir, last, false)
                    .map_err(fs_err(&name, "removing existing entry"))?;
                mknodat(Some(dir.as_raw_fd()), last, sflag, Mode::empty(), dev)
                    .map_err(fs_err(&name, "creating device node"))?;
                self.set_at_meta(&dir, last, &meta, &name, true)
            }
            other => Err(invalid(&name, format!("unsupported entry type {other:?}"))),
        }
    }

    /// moby's `NoOverwriteDirNonDir`: an existing directory is not replaced by a non-directory,
    /// nor an existing non-directory by a directory.
    fn check_overwrite(&self, comps: &[CString], dir: bool, name: &str) -> Result<(), ApplyError> {
        let Some((last, parents)) = comps.split_last() else {
            return Ok(());
        };
        let Ok(parent) = self.resolve(parents) else {
            return Ok(());
        };
        let Ok(st) = fstatat(
            Some(parent.as_raw_fd()),
            last.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) else {
            return Ok(());
        };
        let existing_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let path = format!("/{}", String::from_utf8_lossy(&join(comps)));
        if existing_dir && !dir {
            return Err(invalid(
                name,
                format!("cannot overwrite directory {path:?} with non-directory {name:?}"),
            ));
        }
        if !existing_dir && dir {
            return Err(invalid(
                name,
                format!("cannot overwrite non-directory {path:?} with directory {name:?}"),
            ));
        }
        Ok(())
    }

    /// Open a directory of the layer (`comps` from the root) as an O_PATH descriptor, resolving
    /// every component, symlinks included, inside the root.
    fn resolve(&self, comps: &[CString]) -> Result<OwnedFd, Errno> {
        inroot::open_dir(&self.root, &join(comps))
    }

    /// Like `resolve`, creating missing directories (0755, owned by the daemon) on the way.
    fn ensure_dir(&self, comps: &[CString]) -> Result<OwnedFd, Errno> {
        match self.resolve(comps) {
            Err(Errno::ENOENT) => {}
            other => return other,
        }
        let mut cur = self.resolve(&[])?;
        for i in 0..comps.len() {
            match self.resolve(&comps[..=i]) {
                Ok(fd) => {
                    cur = fd;
                    continue;
                }
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
            let name = comps[i].as_c_str();
            match mkdirat(Some(cur.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
                Ok(()) => {
                    // Not the group or set-gid bit of a set-gid parent, nor the umask's mode.
                    let (uid, gid) = (Uid::effective(), Gid::effective());
                    let nofollow = AtFlags::AT_SYMLINK_NOFOLLOW;
                    fchownat(Some(cur.as_raw_fd()), name, Some(uid), Some(gid), nofollow)?;
                    // We just created `name` as a directory; nothing else writes this tree.
                    let mode = Mode::from_bits_truncate(0o755);
                    let follow = FchmodatFlags::FollowSymlink;
                    fchmodat(Some(cur.as_raw_fd()), name, mode, follow)?;
                }
                // A dangling symlink: the lookup below fails with ENOENT.
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
            cur = self.resolve(&comps[..=i])?;
        }
        Ok(cur)
    }

    /// The parent directory of a (non-root) entry, created if missing, and its final component.
    fn parent<'c>(
        &self,
        comps: &'c [CString],
        name: &str,
    ) -> Result<(OwnedFd, &'c CStr), ApplyError> {
        let (last, parents) = comps
            .split_last()
            .ok_or_else(|| invalid(name, "entry names the layer root"))?;
        let dir = self
            .ensure_dir(parents)
            .map_err(fs_err(name, "opening parent directory"))?;
        Ok((dir, last.as_c_str()))
    }

    fn directory(&mut self, comps: &[CString], meta: &Meta, name: &str) -> Result<(), ApplyError> {
        let fd = match comps.split_last() {
            None => self
                .root
                .try_clone()
                .map_err(|e| fs_err(name, "opening layer root")(io_errno(&e)))?,
            Some(_) => {
                let (dir, last) = self.parent(comps, name)?;
                let kept = remove_existing(&dir, last, true)
                    .map_err(fs_err(name, "removing existing entry"))?;
                if !kept {
                    mkdirat(Some(dir.as_raw_fd()), last, Mode::from_bits_truncate(0o700))
                        .map_err(fs_err(name, "creating directory"))?;
                }
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                own(openat(Some(dir.as_raw_fd()), last, flags, Mode::empty())
                    .map_err(fs_err(name, "opening directory"))?)
            }
        };
        self.set_fd_meta(&fd, meta, name)?;
        self.dirs.push((comps.to_vec(), meta.mtime));
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        comps: &[CString],
        meta: &Meta,
        name: &str,
        failed: &Cell<bool>,
    ) -> Result<(), ApplyError> {
        let (dir, last) = self.parent(comps, name)?;
        remove_existing(&dir, last, false).map_err(fs_err(name, "removing existing entry"))?;
        let expected = entry.size();
        // Plain files without xattrs go by the hook, which may have the same file already.
        let plain = entry.header().entry_type() != EntryType::GNUSparse;
        let hooked = match &mut self.hook {
            Some(_) if plain && meta.xattrs.is_empty() => {
                let key = FileKey {
                    size: expected,
                    mode: meta.mode,
                    uid: meta.uid.as_raw(),
                    gid: meta.gid.as_raw(),
                    mtime: (meta.mtime.tv_sec(), meta.mtime.tv_nsec()),
                };
                let rel = comps
                    .iter()
                    .map(|c| String::from_utf8_lossy(c.as_bytes()))
                    .collect::<Vec<_>>()
                    .join("/");
                Some((rel, key))
            }
            _ => None,
        };
        if let (Some((rel, key)), Some(hook)) = (&hooked, &mut self.hook) {
            let existing = hook
                .reuse(rel, key)
                .and_then(|p| CString::new(p.into_os_string().into_vec()).ok());
            if let Some(existing) = existing {
                let linked = linkat(
                    None,
                    existing.as_c_str(),
                    Some(dir.as_raw_fd()),
                    last,
                    AtFlags::empty(),
                );
                if linked.is_ok() {
                    // The content is read past in whole buffers (io::copy's are 8 KiB), and
                    // not even copied into them where the source can skip.
                    let _skip = self
                        .skip_copies
                        .then(|| crate::util::io::Discarding::new(&mut self.buf));
                    let mut n = 0u64;
                    loop {
                        match entry.read(&mut self.buf) {
                            Ok(0) => break,
                            Ok(k) => n += k as u64,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                return Err(stream_error(
                                    e,
                                    format!("reading content of {name:?}"),
                                    failed,
                                ))
                            }
                        }
                    }
                    check_length(name, n, expected)?;
                    hook.finished(rel, key, None);
                    self.content_size += n;
                    return Ok(());
                }
            }
        }
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(
            Some(dir.as_raw_fd()),
            last,
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(fs_err(name, "creating file"))?;
        let mut file = File::from(own(fd));
        // Sparse entries keep their (compact) stream bytes in the tar-split, and so do files
        // whose place cannot be named in UTF-8.
        if let (Some(recorder), true) = (self.recorder, plain) {
            if let Some(path) = self.real_path(&dir, last) {
                recorder
                    .borrow_mut()
                    .file(&path, entry.raw_file_position(), expected);
            }
        }
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(stream_error(
                        e,
                        format!("reading content of {name:?}"),
                        failed,
                    ))
                }
            };
            // A sparse entry's holes stay holes: a huge sparse file takes the disk space of
            // its data, not of its size.
            if !plain && self.buf[..n].iter().all(|b| *b == 0) {
                io::Seek::seek(&mut file, io::SeekFrom::Current(n as i64))
                    .map_err(|e| fs_err(name, "writing file")(io_errno(&e)))?;
            } else {
                file.write_all(&self.buf[..n])
                    .map_err(|e| fs_err(name, "writing file")(io_errno(&e)))?;
            }
            if let (Some(hook), Some(_)) = (&mut self.hook, &hooked) {
                hook.content(&self.buf[..n]);
            }
            written += n as u64;
        }
        check_length(name, written, expected)?;
        if !plain {
            file.set_len(written)
                .map_err(|e| fs_err(name, "writing file")(io_errno(&e)))?;
        }
        let fd = OwnedFd::from(file);
        self.set_fd_meta(&fd, meta, name)?;
        futimens(fd.as_raw_fd(), &meta.mtime, &meta.mtime)
            .map_err(fs_err(name, "setting times"))?;
        if let (Some(hook), Some((rel, key))) = (&mut self.hook, &hooked) {
            hook.finished(rel, key, Some(&fd));
        }
        self.content_size += written;
        Ok(())
    }

    fn hard_link(
        &mut self,
        comps: &[CString],
        target: &[u8],
        name: &str,
    ) -> Result<(), ApplyError> {
        let shown = String::from_utf8_lossy(target);
        let tcomps = clean_name(target)
            .map_err(|r| invalid(name, format!("hard link target {shown:?}: {r}")))?;
        let (tlast, tparents) = tcomps
            .split_last()
            .ok_or_else(|| invalid(name, "hard link target is the layer root"))?;
        let tdir = self
            .resolve(tparents)
            .map_err(fs_err(name, "resolving hard link target"))?;
        let tst = fstatat(
            Some(tdir.as_raw_fd()),
            tlast.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(fs_err(name, "resolving hard link target"))?;
        if tst.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return Err(invalid(
                name,
                format!("hard link target {shown:?} is a directory"),
            ));
        }
        let (dir, last) = self.parent(comps, name)?;
        if let Ok(st) = fstatat(Some(dir.as_raw_fd()), last, AtFlags::AT_SYMLINK_NOFOLLOW) {
            if st.st_dev == tst.st_dev && st.st_ino == tst.st_ino {
                return Ok(()); // already that file
            }
        }
        remove_existing(&dir, last, false).map_err(fs_err(name, "removing existing entry"))?;
        linkat(
            Some(tdir.as_raw_fd()),
            tlast.as_c_str(),
            Some(dir.as_raw_fd()),
            last,
            AtFlags::empty(),
        )
        .map_err(fs_err(name, "creating hard link"))
    }

    fn whiteout(
        &mut self,
        parents: &[CString],
        hidden: &[u8],
        meta: &Meta,
        name: &str,
    ) -> Result<(), ApplyError> {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(invalid(name, "whiteout names no file"));
        }
        let hidden = CString::new(hidden).map_err(|_| invalid(name, "name contains a nul byte"))?;
        let dir = self
            .ensure_dir(parents)
            .map_err(fs_err(name, "opening parent directory"))?;
        remove_existing(&dir, &hidden, false).map_err(fs_err(name, "removing whited-out entry"))?;
        mknodat(
            Some(dir.as_raw_fd()),
            hidden.as_c_str(),
            SFlag::S_IFCHR,
            Mode::empty(),
            0,
        )
        .map_err(fs_err(name, "creating whiteout device"))?;
        fchownat(
            Some(dir.as_raw_fd()),
            hidden.as_c_str(),
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(fs_err(name, "changing owner"))
    }

    fn opaque(&mut self, parents: &[CString], name: &str) -> Result<(), ApplyError> {
        let dir = self
            .ensure_dir(parents)
            .map_err(fs_err(name, "opening parent directory"))?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let fd = own(openat(Some(dir.as_raw_fd()), ".", flags, Mode::empty())
            .map_err(fs_err(name, "opening directory"))?);
        match set_xattr(&XattrTarget::Fd(&fd), OPAQUE_XATTR, b"y") {
            Ok(()) => Ok(()),
            Err(Errno::EOPNOTSUPP) => {
                tracing::warn!(
                    "layer entry {name:?}: no trusted xattrs on this filesystem, \
                     directory not marked opaque"
                );
                Ok(())
            }
            Err(e) => Err(fs_err(name, "marking directory opaque")(e)),
        }
    }

    /// Where `last` in `dir` really is, relative to the root: symlinks in the entry's name
    /// resolved (as they were on extraction), so the tar-split never names a path through one.
    fn real_path(&self, dir: &OwnedFd, last: &CStr) -> Option<String> {
        let root = self.root_path.as_ref()?;
        let dir = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok()?;
        let path = dir
            .strip_prefix(root)
            .ok()?
            .join(OsStr::from_bytes(last.to_bytes()));
        path.to_str().map(str::to_string)
    }

    /// Owner, mode and xattrs of an open file or directory (owner first: chown clears set-id bits).
    fn set_fd_meta(&self, fd: &OwnedFd, meta: &Meta, name: &str) -> Result<(), ApplyError> {
        fchown(fd.as_raw_fd(), Some(meta.uid), Some(meta.gid))
            .map_err(fs_err(name, "changing owner"))?;
        fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(meta.mode))
            .map_err(fs_err(name, "changing mode"))?;
        set_xattrs(&XattrTarget::Fd(fd), meta, name)
    }

    /// Owner, mode (unless a symlink), xattrs and times of `last` in `dir`, never following it.
    fn set_at_meta(
        &self,
        dir: &OwnedFd,
        last: &CStr,
        meta: &Meta,
        name: &str,
        chmod: bool,
    ) -> Result<(), ApplyError> {
        let dfd = Some(dir.as_raw_fd());
        fchownat(
            dfd,
            last,
            Some(meta.uid),
            Some(meta.gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(fs_err(name, "changing owner"))?;
        if chmod {
            // `last` is a device node or fifo this call just made, not a symlink.
            fchmodat(
                dfd,
                last,
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(fs_err(name, "changing mode"))?;
        }
        if !meta.xattrs.is_empty() {
            let path = proc_path(dir, last);
            set_xattrs(&XattrTarget::NoFollow(&path), meta, name)?;
        }
        utimensat(
            dfd,
            last,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(fs_err(name, "setting times"))
    }

    /// Directory times last, deepest first: creating entries changes them.
    fn finish_dirs(&mut self) -> Result<(), ApplyError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|(comps, _)| Reverse(comps.len()));
        for (comps, t) in dirs {
            let name = String::from_utf8_lossy(&join(&comps)).into_owned();
            let Some((last, parents)) = comps.split_last() else {
                futimens(self.root.as_raw_fd(), &t, &t).map_err(fs_err(&name, "setting times"))?;
                continue;
            };
            // Skip paths a later entry removed or replaced with a non-directory.
            let gone = |e| matches!(e, Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP);
            let dir = match self.resolve(parents) {
                Ok(dir) => dir,
                Err(e) if gone(e) => continue,
                Err(e) => return Err(fs_err(&name, "opening parent directory")(e)),
            };
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = match openat(Some(dir.as_raw_fd()), last.as_c_str(), flags, Mode::empty()) {
                Ok(fd) => own(fd),
                Err(e) if gone(e) => continue,
                Err(e) => return Err(fs_err(&name, "opening directory")(e)),
            };
            futimens(fd.as_raw_fd(), &t, &t).map_err(fs_err(&name, "setting times"))?;
        }
        Ok(())
    }
}

fn set_xattrs(target: &XattrTarget<'_>, meta: &Meta, name: &str) -> Result<(), ApplyError> {
    for (key, value) in &meta.xattrs {
        match set_xattr(target, key, value) {
            Ok(()) => {}
            // As dockerd: not every filesystem supports every namespace.
            Err(e @ (Errno::EOPNOTSUPP | Errno::EPERM)) => {
                tracing::warn!("layer entry {name:?}: xattr {key:?} not set: {}", e.desc());
            }
            Err(e) => return Err(fs_err(name, "setting xattr")(e)),
        }
    }
    Ok(())
}

/// A numeric header field as Go's archive/tar (and so dockerd) reads it: one holding only NULs
/// and spaces is 0, which the tar crate refuses.
fn lenient<T: Default>(parsed: io::Result<T>, field: &[u8]) -> io::Result<T> {
    match parsed {
        Err(_) if field.iter().all(|b| *b == 0 || *b == b' ') => Ok(T::default()),
        other => other,
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, ApplyError> {
    let malformed = |source| ApplyError::Malformed {
        context: format!("reading header of {name:?}"),
        source,
    };
    let header = entry.header();
    let old = header.as_old();
    let mode = lenient(header.mode(), &old.mode).map_err(malformed)? & 0o7777;
    let uid = lenient(header.uid(), &old.uid).map_err(malformed)?;
    let gid = lenient(header.gid(), &old.gid).map_err(malformed)?;
    let uid = u32::try_from(uid).map_err(|_| invalid(name, format!("uid {uid} out of range")))?;
    let gid = u32::try_from(gid).map_err(|_| invalid(name, format!("gid {gid} out of range")))?;
    let secs = lenient(header.mtime(), &old.mtime).map_err(malformed)?;
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let mut mtime = TimeSpec::new(secs, 0);
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(malformed)? {
        for ext in exts {
            let ext = ext.map_err(malformed)?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                mtime = parse_pax_time(ext.value_bytes()).unwrap_or(mtime);
            } else if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") {
                if xattr.starts_with(b"trusted.") {
                    tracing::debug!(
                        "layer entry {name:?}: ignoring xattr {}",
                        String::from_utf8_lossy(xattr)
                    );
                    continue;
                }
                let xattr = CString::new(xattr)
                    .map_err(|_| invalid(name, "xattr name contains a nul byte"))?;
                xattrs.push((xattr, ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta {
        mode,
        uid: Uid::from_raw(uid),
        gid: Gid::from_raw(gid),
        mtime,
        xattrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_ids_stay_in_the_mapping() {
        let s = IdMap::single(100_000, 65536, 200_000, 1000);
        assert_eq!(host_ids(&s, 0, 0), Ok((100_000, 200_000)));
        assert_eq!(host_ids(&s, 1000, 999), Ok((101_000, 200_999)));
        assert_eq!(
            host_ids(&s, 1000, 1000),
            Err("Container ID 1000 cannot be mapped to a host ID".to_string())
        );
        assert!(host_ids(&s, 65536, 0).is_err());
    }
    use std::collections::BTreeMap;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    use tar::{Builder, Header};

    const MTIME: u64 = 1_600_000_000;

    fn header(name: &[u8], kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        // Raw name bytes: tar's set_path refuses the hostile names these tests need.
        let slot = &mut h.as_old_mut().name;
        slot.fill(0);
        slot[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h
    }

    #[derive(Default)]
    struct Layer(Vec<(Header, Vec<u8>)>);

    impl Layer {
        fn dir(mut self, name: &str, mode: u32) -> Self {
            self.0.push((
                header(name.as_bytes(), EntryType::Directory, mode, 0),
                vec![],
            ));
            self
        }
        fn file(mut self, name: &str, mode: u32, data: &[u8]) -> Self {
            let h = header(name.as_bytes(), EntryType::Regular, mode, data.len() as u64);
            self.0.push((h, data.to_vec()));
            self
        }
        fn link(mut self, name: &str, kind: EntryType, target: &str) -> Self {
            let mut h = header(name.as_bytes(), kind, 0o777, 0);
            h.set_link_name(target).unwrap();
            self.0.push((h, vec![]));
            self
        }
        fn with(mut self, f: impl FnOnce(&mut Header)) -> Self {
            f(&mut self.0.last_mut().unwrap().0);
            self
        }
        fn build(self) -> Vec<u8> {
            let mut b = Builder::new(Vec::new());
            for (mut h, data) in self.0 {
                h.set_cksum();
                b.append(&h, data.as_slice()).unwrap();
            }
            b.into_inner().unwrap()
        }
    }

    fn sha(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    fn xattr(path: &Path, key: &CStr) -> Result<Vec<u8>, Errno> {
        let p = CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut buf = vec![0u8; 256];
        // SAFETY: `p` and `key` are NUL-terminated; `buf` is valid for its length.
        let n = unsafe {
            libc::lgetxattr(p.as_ptr(), key.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        buf.truncate(Errno::result(n)? as usize);
        Ok(buf)
    }

    /// A hook that offers `have` for the path `a/reused` and records what it is told.
    struct TestHook {
        have: PathBuf,
        content: Vec<u8>,
        finished: Vec<(String, FileKey, bool)>,
    }

    impl FileHook for TestHook {
        fn reuse(&mut self, path: &str, _key: &FileKey) -> Option<PathBuf> {
            (path == "a/reused").then(|| self.have.clone())
        }
        fn content(&mut self, chunk: &[u8]) {
            self.content.extend_from_slice(chunk);
        }
        fn finished(&mut self, path: &str, key: &FileKey, written: Option<&OwnedFd>) {
            self.finished
                .push((path.to_string(), *key, written.is_some()));
        }
    }

    #[test]
    fn file_hook_links_offered_files_and_sees_written_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let have = tmp.path().join("have");
        std::fs::write(&have, b"cached").unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let tar = Layer::default()
            .dir("a", 0o755)
            .file("a/reused", 0o644, b"sent!!")
            .file("./a/../a/new", 0o600, b"fresh data")
            .build();
        let mut hook = TestHook {
            have: have.clone(),
            content: Vec::new(),
            finished: Vec::new(),
        };
        let fd = OwnedFd::from(File::open(&root).unwrap());
        let stats =
            extract_plain_at(&tar[..], fd, ExtractOptions::default(), Some(&mut hook)).unwrap();
        // The offered file is linked (the stream's bytes are read past), the other written.
        let reused = std::fs::metadata(root.join("a/reused")).unwrap();
        assert_eq!(reused.ino(), std::fs::metadata(&have).unwrap().ino());
        assert_eq!(std::fs::read(root.join("a/new")).unwrap(), b"fresh data");
        assert_eq!(hook.content, b"fresh data");
        let key = |size, mode| FileKey {
            size,
            mode,
            uid: 0,
            gid: 0,
            mtime: (MTIME as i64, 0),
        };
        assert_eq!(
            hook.finished,
            [
                ("a/reused".to_string(), key(6, 0o644), false),
                ("a/new".to_string(), key(10, 0o600), true),
            ]
        );
        // An extraction wants no DiffID: the stream is not hashed.
        assert_eq!(stats.diff_id, "");
        assert_eq!(stats.content_size, 16);
    }

    #[test]
    fn normal_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let long = format!("usr/{}/long-file-name", "x".repeat(120));
        let tar = Layer::default()
            .dir("./", 0o755)
            .dir("usr/", 0o755)
            .with(|h| h.set_mtime(1_000_000))
            .dir("usr/bin/", 0o711)
            .with(|h| h.set_mtime(2_000_000))
            .file("usr/bin/tool", 0o755, b"#!/bin/sh\n")
            .with(|h| {
                h.set_uid(1000);
                h.set_gid(1000);
            })
            .file("usr/bin/suid", 0o4755, b"s")
            .file("etc/config", 0o644, &[7u8; 300_000])
            .with(|h| h.set_mtime(123_456))
            .link("usr/bin/sh", EntryType::Symlink, "tool")
            .with(|h| {
                h.set_uid(1000);
                h.set_gid(1000);
            })
            .link("usr/bin/tool2", EntryType::Link, "/usr/bin/tool")
            .dir("srv/", 0o2775)
            .with(|h| h.set_gid(1000))
            .file("srv/a/b", 0o644, b"")
            .file("run/fifo", 0o600, b"")
            .with(|h| h.set_entry_type(EntryType::Fifo))
            .file("dev/null", 0o666, b"")
            .with(|h| {
                h.set_entry_type(EntryType::Char);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
            })
            .build();
        // A long name (GNU 'L' record) and a PAX xattr, appended with the tar crate's helpers.
        let mut b = Builder::new(tar[..tar.len() - 1024].to_vec());
        let mut h = header(b"", EntryType::Regular, 0o644, 2);
        b.append_data(&mut h, &long, &b"ok"[..]).unwrap();
        b.append_pax_extensions([
            ("SCHILY.xattr.user.test", &b"v"[..]),
            ("SCHILY.xattr.trusted.no", &b"x"[..]),
        ])
        .unwrap();
        let mut h = Header::new_ustar();
        h.set_metadata_in_mode(
            &std::fs::metadata("/").unwrap(),
            tar::HeaderMode::Deterministic,
        );
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(0);
        b.append_data(&mut h, "etc/xattr", io::empty()).unwrap();
        let mut tar = b.into_inner().unwrap();
        tar.extend_from_slice(&[0u8; 8192]); // record padding after the end blocks

        let stats = apply_tar(tar.as_slice(), tmp.path()).unwrap();
        assert_eq!(stats.diff_id, sha(&tar));
        assert_eq!(stats.tar_size, tar.len() as u64);
        assert_eq!(stats.content_size, 10 + 1 + 300_000 + 2);

        let r = tmp.path();
        let md = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap();
        assert_eq!(md("usr/bin/tool").mode() & 0o7777, 0o755);
        assert_eq!(
            (md("usr/bin/tool").uid(), md("usr/bin/tool").gid()),
            (1000, 1000)
        );
        assert_eq!(md("usr/bin/suid").mode() & 0o7777, 0o4755);
        assert_eq!(md("etc/config").mode() & 0o7777, 0o644);
        assert_eq!(md("etc/config").mtime(), 123_456);
        assert_eq!(md("usr/bin/tool").mtime(), MTIME as i64);
        assert_eq!(
            std::fs::read(r.join("etc/config")).unwrap(),
            vec![7u8; 300_000]
        );
        assert_eq!(md("etc").mode() & 0o7777, 0o755, "implicit parent");
        assert_eq!((md("srv/a").mode() & 0o7777, md("srv/a").gid()), (0o755, 0));
        assert_eq!(md("usr").mtime(), 1_000_000);
        assert_eq!(md("usr/bin").mtime(), 2_000_000);
        assert_eq!(md("usr/bin").mode() & 0o7777, 0o711);
        assert!(md("usr/bin/sh").file_type().is_symlink());
        assert_eq!(
            std::fs::read_link(r.join("usr/bin/sh")).unwrap(),
            Path::new("tool")
        );
        assert_eq!(
            (md("usr/bin/sh").uid(), md("usr/bin/sh").mtime()),
            (1000, MTIME as i64)
        );
        assert_eq!(md("usr/bin/tool2").ino(), md("usr/bin/tool").ino());
        assert!(md("run/fifo").file_type().is_fifo());
        assert_eq!(md("run/fifo").mode() & 0o7777, 0o600);
        assert!(md("dev/null").file_type().is_char_device());
        assert_eq!(md("dev/null").rdev(), makedev(1, 3));
        assert_eq!(std::fs::read(r.join(&long)).unwrap(), b"ok");
        assert_eq!(xattr(&r.join("etc/xattr"), c"user.test").unwrap(), b"v");
        assert!(xattr(&r.join("etc/xattr"), c"trusted.no").is_err());
    }

    #[test]
    fn compressed_layers_share_the_diff_id() {
        let tar = Layer::default()
            .dir("a/", 0o755)
            .file("a/b", 0o644, &[1u8; 100_000])
            .build();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(tar.as_slice(), 3).unwrap();
        for (what, bytes) in [("plain", &tar), ("gzip", &gz), ("zstd", &zst)] {
            let tmp = tempfile::tempdir().unwrap();
            let stats = apply_layer(bytes.as_slice(), tmp.path()).unwrap();
            assert_eq!(stats.diff_id, sha(&tar), "{what}");
            assert_eq!(
                (stats.tar_size, stats.content_size),
                (tar.len() as u64, 100_000),
                "{what}"
            );
            assert_eq!(
                std::fs::read(tmp.path().join("a/b")).unwrap().len(),
                100_000,
                "{what}"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let err = apply_layer(&gz[..gz.len() / 2], tmp.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter, "{err}");
    }

    #[test]
    fn whiteouts_become_overlay_form() {
        let tmp = tempfile::tempdir().unwrap();
        let tar = Layer::default()
            .file("d/foo", 0o644, b"gone")
            .file("d/.wh.foo", 0o644, b"")
            .file("e/.wh.bar", 0o644, b"")
            .dir("o/", 0o755)
            .file("o/.wh..wh..opq", 0o644, b"")
            .build();
        apply_tar(tar.as_slice(), tmp.path()).unwrap();
        let r = tmp.path();
        for p in ["d/foo", "e/bar"] {
            let md = std::fs::symlink_metadata(r.join(p)).unwrap();
            assert!(md.file_type().is_char_device(), "{p}");
            assert_eq!(md.rdev(), 0, "{p}");
        }
        for p in ["d/.wh.foo", "e/.wh.bar", "o/.wh..wh..opq"] {
            assert!(std::fs::symlink_metadata(r.join(p)).is_err(), "{p} written");
        }
        match xattr(&r.join("o"), OPAQUE_XATTR) {
            Ok(v) => assert_eq!(v, b"y"),
            Err(Errno::EOPNOTSUPP) => eprintln!("skipping opaque check: no trusted xattrs here"),
            Err(e) => panic!("reading opaque xattr: {e}"),
        }
        let bad = Layer::default().file("d/.wh..", 0o644, b"").build();
        let err = apply_tar(bad.as_slice(), tmp.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    }

    #[test]
    fn empty_numeric_fields_read_as_zero() {
        // As Go's archive/tar: uid, gid, mtime and device fields left as NULs mean 0.
        let tmp = tempfile::tempdir().unwrap();
        let blank = |h: &mut Header| {
            let old = h.as_old_mut();
            old.uid.fill(0);
            old.gid.fill(0);
            old.mtime.fill(0);
            h.as_gnu_mut().unwrap().dev_major.fill(0);
        };
        let tar = Layer::default()
            .file("f", 0o644, b"x")
            .with(blank)
            .file("c", 0o600, b"")
            .with(|h| {
                h.set_entry_type(EntryType::Char);
                blank(h);
            })
            .build();
        apply_tar(tar.as_slice(), tmp.path()).unwrap();
        let md = std::fs::symlink_metadata(tmp.path().join("f")).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mtime()), (0, 0, 0));
        let md = std::fs::symlink_metadata(tmp.path().join("c")).unwrap();
        assert_eq!(md.rdev(), 0);
        let mut bad = Layer::default().file("f", 0o644, b"x").build();
        bad[108..116].copy_from_slice(b"zz\0\0\0\0\0\0"); // uid
        bad[148..156].fill(b' ');
        let sum: u32 = bad[..512].iter().map(|b| u32::from(*b)).sum();
        bad[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let err = apply_tar(bad.as_slice(), tmp.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter, "{err}");
    }

    /// Every path under `base` outside `root`, with its type, mode, owner, size and link count.
    fn snapshot(base: &Path, root: &Path, out: &mut BTreeMap<PathBuf, (u32, u32, u64, u64)>) {
        for e in std::fs::read_dir(base).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if p != root {
                out.insert(p.clone(), (md.mode(), md.uid(), md.size(), md.nlink()));
                if md.is_dir() {
                    snapshot(&p, root, out);
                }
            }
        }
    }

    #[test]
    fn hostile_layers_stay_inside_root() {
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("r1/outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"keep").unwrap();
        let out = outside.to_str().unwrap().to_string();
        let keep = format!("{out}/keep");
        let host = ["/escape", "/x", "/evil", "/etc/evil", "/abs", "/f"];
        let etc = |p: &str| {
            std::fs::symlink_metadata(p)
                .map(|m| (m.nlink(), m.mode(), m.size()))
                .ok()
        };
        let host_before: Vec<_> = ["/etc/passwd", "/etc/shadow"]
            .iter()
            .map(|p| etc(p))
            .collect();

        type Case = (&'static str, Layer, Option<&'static str>);
        let cases: Vec<Case> = vec![
            (
                "dotdot",
                Layer::default().file("../../escape", 0o644, b"x"),
                None,
            ),
            (
                "abs-dotdot",
                Layer::default().file("/abs/../../x", 0o644, b"x"),
                None,
            ),
            (
                "dotdot-mid",
                Layer::default().file("a/../../../x", 0o644, b"x"),
                None,
            ),
            (
                "symlink-root",
                Layer::default().link("link", EntryType::Symlink, "/").file(
                    "link/etc/evil",
                    0o644,
                    b"x",
                ),
                Some("etc/evil"),
            ),
            (
                "symlink-up",
                Layer::default()
                    .link("l", EntryType::Symlink, "../../..")
                    .file("l/x", 0o644, b"x"),
                Some("x"),
            ),
            (
                "symlink-deep",
                Layer::default()
                    .dir("a/b/", 0o755)
                    .link("a/b/c", EntryType::Symlink, "../../../../../..")
                    .link("a/b/c/d", EntryType::Symlink, "../..")
                    .file("a/b/c/d/evil", 0o644, b"x"),
                Some("evil"),
            ),
            (
                "symlink-outside-dir",
                Layer::default()
                    .link("o", EntryType::Symlink, &out)
                    .file("o/f", 0o644, b"x"),
                None,
            ),
            (
                "symlink-replaced-by-file",
                Layer::default()
                    .link("p", EntryType::Symlink, &keep)
                    .file("p", 0o666, b"evil"),
                Some("p"),
            ),
            (
                "symlink-replaced-by-dir",
                Layer::default()
                    .link("s", EntryType::Symlink, &out)
                    .dir("s", 0o777)
                    .with(|h| h.set_uid(1000)),
                Some("s"),
            ),
            (
                "whiteout-through-symlink",
                Layer::default()
                    .link("w", EntryType::Symlink, &out)
                    .file("w/.wh.keep", 0o644, b""),
                None,
            ),
            (
                "device-through-symlink",
                Layer::default()
                    .link("dv", EntryType::Symlink, &keep)
                    .file("dv", 0o666, b"")
                    .with(|h| {
                        h.set_entry_type(EntryType::Fifo);
                    }),
                Some("dv"),
            ),
            (
                "hardlink-abs",
                Layer::default().link("h", EntryType::Link, "/etc/shadow"),
                None,
            ),
            (
                "hardlink-dotdot",
                Layer::default().link("h", EntryType::Link, "../../../etc/passwd"),
                None,
            ),
            (
                "hardlink-via-symlink",
                Layer::default().link("e", EntryType::Symlink, "/etc").link(
                    "h",
                    EntryType::Link,
                    "e/passwd",
                ),
                None,
            ),
            (
                "hardlink-to-outside-symlink",
                Layer::default().link("k", EntryType::Symlink, &keep).link(
                    "h",
                    EntryType::Link,
                    "k",
                ),
                Some("h"),
            ),
        ];
        for (i, (what, layer, expect)) in cases.into_iter().enumerate() {
            let root = base.path().join(format!("r1/r2/root{i}"));
            std::fs::create_dir_all(&root).unwrap();
            let mut before = BTreeMap::new();
            snapshot(base.path(), &root, &mut before);
            let res = apply_tar(layer.build().as_slice(), &root);
            let mut after = BTreeMap::new();
            snapshot(base.path(), &root, &mut after);
            assert_eq!(
                before, after,
                "{what}: something changed outside root ({res:?})"
            );
            assert_eq!(
                std::fs::read(outside.join("keep")).unwrap(),
                b"keep",
                "{what}"
            );
            for p in host {
                assert!(std::fs::symlink_metadata(p).is_err(), "{what}: {p} exists");
            }
            match expect {
                Some(inside) => {
                    res.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert!(
                        std::fs::symlink_metadata(root.join(inside)).is_ok(),
                        "{what}: {inside}"
                    );
                }
                None => {
                    if let Err(e) = res {
                        assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{what}: {e}");
                    }
                }
            }
        }
        let host_after: Vec<_> = ["/etc/passwd", "/etc/shadow"]
            .iter()
            .map(|p| etc(p))
            .collect();
        assert_eq!(host_before, host_after);

        // The breakout names are refused outright, with the entry named.
        for name in ["../../escape", "/abs/../../x"] {
            let tar = Layer::default().file(name, 0o644, b"x").build();
            let root = tempfile::tempdir().unwrap();
            let err = apply_tar(tar.as_slice(), root.path()).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
            assert_eq!(err.kind(), ErrorKind::InvalidParameter);
        }
        for target in ["/etc/shadow", "../../../etc/passwd"] {
            let tar = Layer::default().link("h", EntryType::Link, target).build();
            let root = tempfile::tempdir().unwrap();
            let err = apply_tar(tar.as_slice(), root.path()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidParameter, "{err}");
        }
    }

    #[test]
    fn garbage_and_truncation_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let err = apply_layer(&[0xABu8; 1024][..], root.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter, "{err}");
        let err = apply_tar(&[0xABu8; 100][..], root.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter, "{err}");

        let tar = Layer::default()
            .file("big", 0o644, &[1u8; 10_000])
            .file("next", 0o644, b"n")
            .build();
        for cut in [3000, 512 + 10_000 + 100, 512 * 2 + 10_240 + 100] {
            let root = tempfile::tempdir().unwrap();
            let err = apply_tar(&tar[..cut], root.path()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidParameter, "cut {cut}: {err}");
        }

        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = apply_layer(Failing, root.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
        let err = apply_tar(Failing, root.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    }

    #[test]
    fn recorded_layers_reassemble() {
        let tmp = tempfile::tempdir().unwrap();
        let mut tar = Layer::default()
            .dir("d/", 0o755)
            .file("d/a", 0o644, &[3u8; 70_000])
            .file("d/empty", 0o644, b"")
            .link("d/h", EntryType::Link, "d/a")
            .link("up", EntryType::Symlink, "/")
            .file("up/d/through", 0o644, b"via a symlink")
            .file("d/.wh.gone", 0o644, b"whiteout with data")
            .build();
        let mut raw = header(b"d/\xff\xfe", EntryType::Regular, 0o644, 4);
        raw.set_cksum();
        let mut b = Builder::new(tar[..tar.len() - 1024].to_vec());
        b.append(&raw, &b"odd!"[..]).unwrap();
        let mut h = header(b"", EntryType::Regular, 0o644, 5);
        b.append_data(&mut h, format!("d/{}", "n".repeat(150)), &b"long!"[..])
            .unwrap();
        tar = b.into_inner().unwrap();
        tar.extend_from_slice(&[0u8; 4096]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let (stats, rec) =
            apply_layer_recorded(gz.finish().unwrap().as_slice(), tmp.path(), Recorder::new())
                .unwrap();
        assert_eq!(stats.diff_id, sha(&tar));
        let segments = super::super::tarsplit::decode(&rec.finish().unwrap()).unwrap();
        let files: Vec<_> = segments
            .iter()
            .filter_map(|s| match s {
                super::super::tarsplit::Segment::File { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        let long = format!("d/{}", "n".repeat(150));
        assert_eq!(files, ["d/a", "d/through", long.as_str()]);
        let mut out = Vec::new();
        super::super::tarsplit::assemble(tmp.path(), segments)
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == tar, "reassembled tar differs");
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let tar = Layer::default()
            .file("a", 0o644, b"one")
            .file("a", 0o600, b"two")
            .dir("d/", 0o755)
            .file("d/child", 0o644, b"c")
            .dir("d/", 0o700)
            .dir("gone/sub/", 0o755)
            .file("gone/sub/f", 0o644, b"f")
            .file("gone", 0o644, b"now a file")
            .file("wasfile", 0o644, b"f")
            .dir("wasfile/", 0o750)
            .dir("wasdir/", 0o755)
            .with(|h| h.set_mtime(5))
            .file("wasdir", 0o644, b"")
            .build();
        let stats = apply_tar(tar.as_slice(), tmp.path()).unwrap();
        let r = tmp.path();
        assert_eq!(std::fs::read(r.join("a")).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(r.join("a")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(r.join("d/child")).unwrap(), b"c");
        assert_eq!(
            std::fs::metadata(r.join("d")).unwrap().mode() & 0o777,
            0o700
        );
        assert_eq!(std::fs::read(r.join("gone")).unwrap(), b"now a file");
        assert!(std::fs::metadata(r.join("wasfile")).unwrap().is_dir());
        assert_eq!(
            std::fs::metadata(r.join("wasdir")).unwrap().mtime(),
            MTIME as i64
        );
        assert_eq!(stats.content_size, 3 + 3 + 1 + 1 + 10 + 1);
    }
}
