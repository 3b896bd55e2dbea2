//! `docker cp`: `HEAD`, `GET` and `PUT /containers/{id}/archive?path=` (moby's
//! `daemon/archive.go`, `pkg/archive/copy.go`).
//!
//! Every path is resolved inside the container's root with `openat2(RESOLVE_IN_ROOT)`
//! ([`crate::util::inroot`]); archives are written by walking descriptors (`openat`,
//! `fstatat` with `AT_SYMLINK_NOFOLLOW`), never by re-resolving string paths, and extracted by
//! the layer extractor's in-root `*at` calls ([`crate::image::apply::extract_at`]), rooted at
//! the extraction directory. The root is:
//!
//! - a **running** container: `/proc/<pid>/root`, its own mount namespace's root, so the
//!   container's volumes and binds are crossed as the container sees them;
//! - a **stopped or created** container: the root of a private mount namespace built by
//!   `berthd __archive` ([`super::archive_helper`]), which mounts the overlay rootfs and binds
//!   every mount point's source at its destination. For `HEAD` and `GET` it serves the
//!   request on stdout; for `PUT` it holds the view while berthd extracts into it through the
//!   view root's descriptor (`/proc/<helper>/fd/<n>`, no copy through a pipe). It exits when
//!   done, its mounts gone with its namespace.
//!
//! Tar headers carry numbers only, and no name service code runs (CVE-2019-14271): `cp -a`
//! into a container with a configured user reads its `/etc/passwd` and `/etc/group` as plain
//! files inside its root.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::archive_helper::{Helper, HelperMount, HelperRequest};
use super::manager::ContainerManager;
use super::record::Record;
use super::ContainerError;
use crate::errors::{ErrorKind, Kinded};
use crate::image::apply::{extract_at, ExtractOptions};
use crate::util::inroot;
use crate::util::io::{BodyReceiver, ByteReceiver, ChannelReader, ChannelWriter};

/// moby's `container.PathStat`, the JSON in `X-Docker-Container-Path-Stat`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's `os.FileMode` bits.
    pub mode: u32,
    pub mtime: String,
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl PathStat {
    /// The header value: standard base64 of the JSON.
    pub fn header_value(&self) -> String {
        use base64::Engine;
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }
}

/// `PUT` options (moby's `noOverwriteDirNonDir`, `copyUIDGID`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PutOptions {
    pub no_overwrite_dir_non_dir: bool,
    pub copy_uid_gid: bool,
}

/// What a request path names: `name` in the directory `dir` (`.` for the directory itself).
pub(crate) struct Target {
    dir: OwnedFd,
    name: CString,
    st: FileStat,
    /// The entry name of the archive's top entry (moby's rebase name).
    rebase: String,
}

fn not_found(path: &str, container: &str) -> ContainerError {
    ContainerError::not_found(format!(
        "Could not find the file {path} in container {container}"
    ))
}

fn errno_error(e: Errno, path: &str, container: &str) -> ContainerError {
    match e {
        Errno::ENOENT => not_found(path, container),
        Errno::ENOTDIR => ContainerError::invalid(format!("{path}: not a directory")),
        Errno::ELOOP | Errno::ENAMETOOLONG | Errno::EXDEV => {
            ContainerError::invalid(format!("{path}: {}", e.desc()))
        }
        e => ContainerError::internal(format!("{path}: {}", e.desc())),
    }
}

/// The error for an empty `path` query parameter (moby's `badParameterError`).
pub fn empty_path() -> ContainerError {
    ContainerError::invalid("bad parameter: path cannot be empty")
}

/// Whether `path` (as given) asks for the directory itself, its last symlink followed:
/// a trailing `/` or `/.` (moby's `PreserveTrailingDotOrSeparator`).
fn follows_last(path: &str) -> bool {
    path.ends_with('/') || path.ends_with("/.") || path == "."
}

/// Resolve `path` in `root` as moby's `ResolvePath` + `Lstat`: every directory component is
/// followed inside the root, the last one only with a trailing `/` or `/.`.
pub(crate) fn resolve(
    root: &OwnedFd,
    path: &str,
    container: &str,
) -> Result<Target, ContainerError> {
    let err = |e| errno_error(e, path, container);
    let cleaned = inroot::clean(&format!("/{path}"));
    let dot = path.ends_with("/.") || path == ".";
    let (dir, name, rebase) = if follows_last(path) || cleaned == "/" {
        let dir = inroot::resolve(
            root,
            format!("{cleaned}/.").as_bytes(),
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )
        .map_err(err)?;
        let base = cleaned.rsplit('/').next().unwrap_or("").to_string();
        // `/` is archived as `/`, `/bin/`, ...: the CLI prefixes its destination to names
        // when the source base is `/`.
        let rebase = if dot {
            ".".to_string()
        } else if base.is_empty() {
            "/".to_string()
        } else {
            base
        };
        (dir, c".".to_owned(), rebase)
    } else {
        let (parent, base) = cleaned.rsplit_once('/').unwrap_or(("", cleaned.as_str()));
        let dir = inroot::open_dir(root, parent.as_bytes()).map_err(err)?;
        let name =
            CString::new(base).map_err(|_| ContainerError::invalid("path contains a nul byte"))?;
        (dir, name, base.to_string())
    };
    let st = fstatat(
        Some(dir.as_raw_fd()),
        name.as_c_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(err)?;
    Ok(Target {
        dir,
        name,
        st,
        rebase,
    })
}

/// Go's `os.FileMode` of a `stat` mode.
pub fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    match st_mode & libc::S_IFMT {
        libc::S_IFDIR => m |= 1 << 31,
        libc::S_IFLNK => m |= 1 << 27,
        libc::S_IFIFO => m |= 1 << 25,
        libc::S_IFSOCK => m |= 1 << 24,
        libc::S_IFBLK => m |= 1 << 26,
        libc::S_IFCHR => m |= (1 << 26) | (1 << 21),
        _ => {}
    }
    if st_mode & libc::S_ISUID != 0 {
        m |= 1 << 23;
    }
    if st_mode & libc::S_ISGID != 0 {
        m |= 1 << 22;
    }
    if st_mode & libc::S_ISVTX != 0 {
        m |= 1 << 20;
    }
    m
}

fn rfc3339(secs: i64, nanos: i64) -> String {
    let t = if secs >= 0 {
        std::time::UNIX_EPOCH
            + std::time::Duration::new(secs as u64, nanos.clamp(0, 999_999_999) as u32)
    } else {
        std::time::UNIX_EPOCH
    };
    crate::util::time::rfc3339_nano(t)
}

/// The stat of a resolved target, for `path` as requested.
pub(crate) fn stat_of(t: &Target, path: &str) -> PathStat {
    let cleaned = inroot::clean(&format!("/{path}"));
    let name = match cleaned.rsplit('/').next() {
        Some("") | None => "/".to_string(),
        Some(b) => b.to_string(),
    };
    let mut link_target = String::new();
    if t.st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        if let Ok(target) = readlinkat(Some(t.dir.as_raw_fd()), t.name.as_c_str()) {
            let target = target.to_string_lossy().into_owned();
            let parent = cleaned.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            link_target = if target.starts_with('/') {
                inroot::clean(&target)
            } else {
                inroot::clean(&format!("{parent}/{target}"))
            };
        }
    }
    PathStat {
        name,
        size: t.st.st_size,
        mode: go_mode(t.st.st_mode),
        mtime: rfc3339(t.st.st_mtime, t.st.st_mtime_nsec),
        link_target,
    }
}

/// Stat `path` in `root`.
pub(crate) fn stat_path(
    root: &OwnedFd,
    path: &str,
    container: &str,
) -> Result<(Target, PathStat), ContainerError> {
    let t = resolve(root, path, container)?;
    let stat = stat_of(&t, path);
    Ok((t, stat))
}

fn own(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Append a raw header with `name` (and `link`), using GNU long-name records when needed, so
/// that names keep moby's form (`./x`, `dir/`) byte for byte.
fn append_raw<W: Write>(
    b: &mut tar::Builder<W>,
    mut h: tar::Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: impl Read,
) -> io::Result<()> {
    let long = |b: &mut tar::Builder<W>, kind: u8, value: &[u8]| -> io::Result<()> {
        let mut lh = tar::Header::new_gnu();
        let slot = &mut lh.as_old_mut().name;
        slot[..13].copy_from_slice(b"././@LongLink");
        lh.set_mode(0o644);
        lh.set_entry_type(tar::EntryType::new(kind));
        lh.set_size(value.len() as u64 + 1);
        lh.set_cksum();
        let mut v = value.to_vec();
        v.push(0);
        b.append(&lh, v.as_slice())
    };
    if name.len() > 100 {
        long(b, b'L', name)?;
    }
    let n = name.len().min(100);
    let slot = &mut h.as_old_mut().name;
    slot.fill(0);
    slot[..n].copy_from_slice(&name[..n]);
    if let Some(link) = link {
        if link.len() > 100 {
            long(b, b'K', link)?;
        }
        let n = link.len().min(100);
        let slot = &mut h.as_old_mut().linkname;
        slot.fill(0);
        slot[..n].copy_from_slice(&link[..n]);
    }
    h.set_cksum();
    b.append(&h, data)
}

/// A reader that yields exactly `len` bytes: a file that shrank while being read is padded
/// with zeros, one that grew is cut (the header's size is already written).
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let read = match self.inner.read(&mut buf[..want]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            // The header is out: a file that fails mid-way is padded, the archive stays whole.
            Err(_) => Ok(0),
            r => r,
        };
        let n = match read? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Whether an open directory is on a kernel pseudo-filesystem (`/proc`, `/sys`, cgroups,
/// `devpts`, `mqueue`, ...) of a running container: archived as an empty directory, as moby's
/// view of the rootfs and volumes has none of them.
fn pseudo_fs(fd: &OwnedFd) -> bool {
    const MAGICS: [i64; 9] = [
        0x9fa0,      // proc
        0x6265_6572, // sysfs
        0x0027_e0eb, // cgroup
        0x6367_7270, // cgroup2
        0x1cd1,      // devpts
        0x1980_0202, // mqueue
        0x7363_6673, // securityfs
        0x6462_6720, // debugfs
        0xcafe_4a11, // bpf
    ];
    match nix::sys::statfs::fstatfs(fd) {
        Ok(s) => MAGICS.contains(&s.filesystem_type().0),
        Err(_) => false,
    }
}

thread_local! {
    /// Set while archiving a remapped container's running rootfs (seen from the host with the
    /// remapped ids): headers carry the container's ids.
    static ID_SHIFT: std::cell::RefCell<Option<crate::runtime::IdMap>> =
        const { std::cell::RefCell::new(None) };
}

fn header_for(st: &FileStat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    let (mut uid, mut gid) = (st.st_uid, st.st_gid);
    ID_SHIFT.with(|s| {
        if let Some(m) = s.borrow().as_ref() {
            uid = m.container_uid(uid).unwrap_or(uid);
            gid = m.container_gid(gid).unwrap_or(gid);
        }
    });
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// Archive `name` in `dir` (already `fstatat`ed as `st`) under the entry name `entry`, and
/// everything below it, never following a symlink.
/// Files with several links already archived: (device, inode) → their entry name, so that
/// later names become hard-link entries (as moby's tar).
type Links = HashMap<(u64, u64), Vec<u8>>;

fn append_at<W: Write>(
    b: &mut tar::Builder<W>,
    links: &mut Links,
    dir: &OwnedFd,
    name: &std::ffi::CStr,
    st: &FileStat,
    entry: &[u8],
) -> io::Result<()> {
    let mut h = header_for(st);
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG if st.st_nlink > 1 && links.contains_key(&(st.st_dev, st.st_ino)) => {
            let target = links[&(st.st_dev, st.st_ino)].clone();
            h.set_entry_type(tar::EntryType::Link);
            append_raw(b, h, entry, Some(&target), io::empty())
        }
        libc::S_IFREG => {
            let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
            let fd = own(openat(Some(dir.as_raw_fd()), name, flags, Mode::empty())?);
            let file = File::from(fd);
            let fst = nix::sys::stat::fstat(file.as_raw_fd())?;
            if fst.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Ok(()); // replaced meanwhile
            }
            if fst.st_nlink > 1 {
                links.insert((fst.st_dev, fst.st_ino), entry.to_vec());
            }
            h = header_for(&fst);
            h.set_entry_type(tar::EntryType::Regular);
            let size = fst.st_size.max(0) as u64;
            h.set_size(size);
            append_raw(
                b,
                h,
                entry,
                None,
                Exact {
                    inner: file,
                    left: size,
                },
            )
        }
        libc::S_IFLNK => {
            let target = readlinkat(Some(dir.as_raw_fd()), name)?;
            h.set_entry_type(tar::EntryType::Symlink);
            use std::os::unix::ffi::OsStrExt;
            append_raw(b, h, entry, Some(target.as_bytes()), io::empty())
        }
        libc::S_IFDIR => {
            h.set_entry_type(tar::EntryType::Directory);
            let mut dname = entry.to_vec();
            if !dname.ends_with(b"/") {
                dname.push(b'/');
            }
            append_raw(b, h, &dname, None, io::empty())?;
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let sub = own(openat(Some(dir.as_raw_fd()), name, flags, Mode::empty())?);
            if pseudo_fs(&sub) {
                return Ok(());
            }
            let mut d = nix::dir::Dir::openat(
                Some(sub.as_raw_fd()),
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let mut names: Vec<CString> = d
                .iter()
                .flatten()
                .map(|e| e.file_name().to_owned())
                .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
                .collect();
            names.sort();
            for child in names {
                let cst = match fstatat(
                    Some(sub.as_raw_fd()),
                    child.as_c_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(s) => s,
                    Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(e.into()),
                };
                let mut cname = dname.clone();
                cname.extend_from_slice(child.as_bytes());
                match append_at(b, links, &sub, child.as_c_str(), &cst, &cname) {
                    Ok(()) => {}
                    // The client went away: stop.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err(e),
                    // As moby: an entry that cannot be read is left out, the rest goes on.
                    Err(e) => tracing::warn!(
                        "docker cp: skipping {}: {e}",
                        String::from_utf8_lossy(&cname)
                    ),
                }
            }
            Ok(())
        }
        libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => {
            let kind = match st.st_mode & libc::S_IFMT {
                libc::S_IFIFO => tar::EntryType::Fifo,
                libc::S_IFCHR => tar::EntryType::Char,
                _ => tar::EntryType::Block,
            };
            h.set_entry_type(kind);
            if kind != tar::EntryType::Fifo {
                h.set_device_major(nix::sys::stat::major(st.st_rdev) as u32)?;
                h.set_device_minor(nix::sys::stat::minor(st.st_rdev) as u32)?;
            }
            append_raw(b, h, entry, None, io::empty())
        }
        // Sockets are not archived (as moby).
        _ => Ok(()),
    }
}

/// Write the tar of a resolved target (moby's `TarResourceRebase`).
pub(crate) fn write_archive(t: &Target, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    let is_dir = t.st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let entry = if t.rebase == "." && is_dir {
        b"./".to_vec()
    } else {
        t.rebase.clone().into_bytes()
    };
    if t.rebase == "." && is_dir {
        // moby names the content `./x`: the CLI rebases on the `.` prefix.
        append_dot(&mut b, t)?;
    } else {
        append_at(
            &mut b,
            &mut Links::new(),
            &t.dir,
            t.name.as_c_str(),
            &t.st,
            &entry,
        )?;
    }
    b.finish()?;
    b.into_inner()?.flush()
}

fn append_dot<W: Write>(b: &mut tar::Builder<W>, t: &Target) -> io::Result<()> {
    // The directory itself as `./`, its children as `./child`.
    append_at(b, &mut Links::new(), &t.dir, t.name.as_c_str(), &t.st, b".")
}

/// Extract `input` into the directory `path` of `root` (moby's `containerExtractToDir`):
/// the entries keep the archive's owners, or with `copyUIDGID` and a configured user
/// (`Config.User`), that user's.
pub(crate) fn extract(
    root: &OwnedFd,
    path: &str,
    container: &str,
    input: impl Read,
    opts: PutOptions,
    user: &str,
) -> Result<(), ContainerError> {
    let eopts = ExtractOptions {
        owner: copy_owner(root, &opts, user)?,
        shift: None,
        no_overwrite_dir_non_dir: opts.no_overwrite_dir_non_dir,
    };
    extract_with(root, path, container, input, eopts)
}

/// The owner of every extracted entry: with `copyUIDGID` (`docker cp -a`) and a configured
/// user, that user and group as the container's `/etc/passwd` and `/etc/group` resolve them
/// (moby's `applyTarCopyUserOptions`: a uid without an entry keeps gid 0); else `None`, the
/// archive's own ids. Both files are plain files read inside the root: no name service code
/// runs (CVE-2019-14271).
fn copy_owner(
    root: &OwnedFd,
    opts: &PutOptions,
    user: &str,
) -> Result<Option<(u32, u32)>, ContainerError> {
    if !opts.copy_uid_gid || user.is_empty() {
        return Ok(None);
    }
    let at = std::path::PathBuf::from(format!("/proc/self/fd/{}", root.as_raw_fd()));
    let u = crate::runtime::user::resolve(&at, user, &[]).map_err(|e| {
        ContainerError::invalid(format!("failed to look up user {user:?} in container: {e}"))
    })?;
    Ok(Some((u.uid, u.gid)))
}

/// [`extract`] with the extractor's options (who owns the entries).
fn extract_with(
    root: &OwnedFd,
    path: &str,
    container: &str,
    input: impl Read,
    eopts: ExtractOptions,
) -> Result<(), ContainerError> {
    let cleaned = inroot::clean(&format!("/{path}"));
    let dir = match inroot::resolve(
        root,
        cleaned.as_bytes(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
    ) {
        Ok(d) => d,
        Err(Errno::ENOTDIR) => {
            return Err(ContainerError::invalid(
                "extraction point is not a directory",
            ))
        }
        Err(e) => return Err(errno_error(e, path, container)),
    };
    extract_at(input, dir, eopts).map_err(|e| {
        // The extractor speaks of layers; here it is the client's archive.
        let text = e
            .to_string()
            .replace("layer archive", "archive")
            .replace("layer entry", "archive entry")
            .replace("layer root", "extraction directory");
        ContainerError::new(e.kind(), text)
    })?;
    Ok(())
}

/// A kind as a word (the helper's reply), and back.
pub(crate) fn kind_word(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::NotFound => "notfound",
        ErrorKind::InvalidParameter => "invalid",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Forbidden => "forbidden",
        _ => "internal",
    }
}

pub(crate) fn word_kind(w: &str) -> ErrorKind {
    match w {
        "notfound" => ErrorKind::NotFound,
        "invalid" => ErrorKind::InvalidParameter,
        "conflict" => ErrorKind::Conflict,
        "forbidden" => ErrorKind::Forbidden,
        _ => ErrorKind::Internal,
    }
}

/// Where a request's root comes from.
enum Source {
    /// A running container's init: `/proc/<pid>/root`, and its mounted rootfs.
    /// With the remapping the rootfs is mounted with (`--userns-remap`), if any.
    Proc(i64, std::path::PathBuf, Option<crate::runtime::IdMap>),
    /// A stopped or created container: the helper's private view.
    Helper(Box<HelperRequest>),
}

/// The root of a running container's mount namespace. The process behind `pid` is checked to
/// be the container's: its root must be the container's overlay (same device and inode as the
/// mounted `merged`), so a pid reused by a host process after the container exited is refused.
fn open_proc_root(pid: i64, merged: &std::path::Path) -> Result<OwnedFd, ContainerError> {
    let root = std::fs::File::open(format!("/proc/{pid}/root"))
        .map_err(|e| ContainerError::io("open the container's root", e))?;
    let ours = std::fs::metadata(merged)
        .map_err(|e| ContainerError::io("stat the container's rootfs", e))?;
    let theirs = root
        .metadata()
        .map_err(|e| ContainerError::io("stat the container's root", e))?;
    use std::os::unix::fs::MetadataExt;
    if (ours.dev(), ours.ino()) != (theirs.dev(), theirs.ino()) {
        return Err(ContainerError::conflict(
            "the container's process is gone (it exited meanwhile); try again",
        ));
    }
    Ok(OwnedFd::from(root))
}

fn joined<T>(
    r: Result<Result<T, ContainerError>, tokio::task::JoinError>,
) -> Result<T, ContainerError> {
    r.map_err(|e| ContainerError::internal(format!("archive task: {e}")))?
}

impl ContainerManager {
    fn archive_source(
        &self,
        name: &str,
        op: &str,
        path: &str,
        opts: PutOptions,
    ) -> Result<(Record, Source), ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        if c.status().is_running() && r.state.pid > 0 {
            let merged = self.rootfs(&r.id);
            return Ok((
                r.clone(),
                Source::Proc(r.state.pid, merged, self.userns_of(&r)),
            ));
        }
        let layer = self.layer_dir(&r.id);
        for sub in ["diff", "work", "merged"] {
            crate::util::fs::ensure_dir(&layer.join(sub), 0o755)
                .map_err(|e| ContainerError::io(format!("create container layer {sub}"), e))?;
        }
        let lowers = match r.chain_id() {
            Some(chain) => self.images.store().lower_dirs(chain)?,
            None => {
                let empty = layer.join("empty");
                crate::util::fs::ensure_dir(&empty, 0o755)
                    .map_err(|e| ContainerError::io("create empty layer", e))?;
                vec![empty]
            }
        };
        let mounts = r
            .mount_points
            .iter()
            .flatten()
            .filter(|m| !m.source.is_empty() && m.typ != "tmpfs")
            .map(|m| HelperMount {
                source: m.source.clone().into(),
                destination: m.destination.clone(),
                rw: m.rw,
                create: true,
            })
            .collect::<Vec<_>>();
        // The network files, as the running container has them (moby's `NetworkMounts`),
        // unless a user mount provides them. An image without them gets the mount points
        // a start would make (dockerd's init layer has them from create on).
        let mut mounts = mounts;
        for (dest, file) in [
            ("/etc/resolv.conf", &r.resolv_conf_path),
            ("/etc/hostname", &r.hostname_path),
            ("/etc/hosts", &r.hosts_path),
        ] {
            let taken = mounts.iter().any(|m| m.destination == dest);
            if !taken && !file.is_empty() && std::path::Path::new(file).exists() {
                mounts.push(HelperMount {
                    source: file.into(),
                    destination: dest.to_string(),
                    rw: true,
                    create: true,
                });
            }
        }
        let req = HelperRequest {
            op: op.to_string(),
            path: path.to_string(),
            container: name.to_string(),
            opts,
            lowers,
            upper: layer.join("diff"),
            work: layer.join("work"),
            merged: layer.join("merged"),
            mounts,
        };
        Ok((r, Source::Helper(Box::new(req))))
    }

    /// `HEAD /containers/{name}/archive`.
    pub async fn archive_stat(
        self: &Arc<Self>,
        name: &str,
        path: &str,
    ) -> Result<PathStat, ContainerError> {
        if path.is_empty() {
            return Err(empty_path());
        }
        let (_, source) = self.archive_source(name, "stat", path, PutOptions::default())?;
        let (name, path) = (name.to_string(), path.to_string());
        joined(
            tokio::task::spawn_blocking(move || match source {
                Source::Proc(pid, merged, _) => {
                    let root = open_proc_root(pid, &merged)?;
                    stat_path(&root, &path, &name).map(|(_, s)| s)
                }
                Source::Helper(req) => {
                    let mut h = Helper::spawn(&req)?;
                    let out = h.child.stdout.take();
                    let r = match out {
                        Some(out) => Helper::read_reply(&mut BufReader::new(out)),
                        None => Err(ContainerError::internal("archive helper without stdout")),
                    };
                    h.finish();
                    r?.ok_or_else(|| ContainerError::internal("archive helper: no stat"))
                }
            })
            .await,
        )
    }

    /// `GET /containers/{name}/archive`: the stat and the tar stream.
    pub async fn archive_get(
        self: &Arc<Self>,
        name: &str,
        path: &str,
    ) -> Result<(PathStat, ByteReceiver), ContainerError> {
        if path.is_empty() {
            return Err(empty_path());
        }
        let (r, source) = self.archive_source(name, "get", path, PutOptions::default())?;
        let (name, path) = (name.to_string(), path.to_string());
        let (tx, rx) = mpsc::channel(16);
        let (stat_tx, stat_rx) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter::new(tx);
            match source {
                Source::Proc(pid, merged, map) => {
                    // The host sees a remapped rootfs with host ids: the archive gets the
                    // container's.
                    ID_SHIFT.with(|s| s.replace(map));
                    let t = open_proc_root(pid, &merged)
                        .and_then(|root| stat_path(&root, &path, &name));
                    let t = match t {
                        Ok((t, s)) => {
                            let _ = stat_tx.send(Ok(s));
                            t
                        }
                        Err(e) => {
                            let _ = stat_tx.send(Err(e));
                            return;
                        }
                    };
                    if let Err(e) = write_archive(&t, &mut w) {
                        w.fail(e);
                    }
                    ID_SHIFT.with(|s| s.replace(None));
                }
                Source::Helper(req) => {
                    let mut h = match Helper::spawn(&req) {
                        Ok(h) => h,
                        Err(e) => {
                            let _ = stat_tx.send(Err(e));
                            return;
                        }
                    };
                    let Some(out) = h.child.stdout.take() else {
                        let _ = stat_tx.send(Err(ContainerError::internal(
                            "archive helper without stdout",
                        )));
                        h.finish();
                        return;
                    };
                    let mut out = BufReader::with_capacity(128 * 1024, out);
                    match Helper::read_reply(&mut out) {
                        Ok(Some(s)) => {
                            let _ = stat_tx.send(Ok(s));
                        }
                        Ok(None) => {
                            let _ = stat_tx
                                .send(Err(ContainerError::internal("archive helper: no stat")));
                            h.finish();
                            return;
                        }
                        Err(e) => {
                            let _ = stat_tx.send(Err(e));
                            h.finish();
                            return;
                        }
                    }
                    let copied = io::copy(&mut out, &mut w).and_then(|_| w.flush());
                    match copied {
                        Ok(()) => h.wait(),
                        Err(e) => {
                            h.finish();
                            w.fail(e);
                        }
                    }
                }
            }
        });
        let stat = stat_rx
            .await
            .map_err(|_| ContainerError::internal("archive task ended early"))??;
        self.events.publish(self.event_for(&r, "archive-path"));
        Ok((stat, rx))
    }

    /// `PUT /containers/{name}/archive`: extract `body` into the directory `path`.
    pub async fn archive_put(
        self: &Arc<Self>,
        name: &str,
        path: &str,
        opts: PutOptions,
        body: BodyReceiver,
    ) -> Result<(), ContainerError> {
        if path.is_empty() {
            return Err(empty_path());
        }
        let (r, source) = self.archive_source(name, "put", path, opts)?;
        check_writable(&r, path)?;
        let (name, path) = (name.to_string(), path.to_string());
        let user = r.config.user.clone().unwrap_or_default();
        let done = joined(
            tokio::task::spawn_blocking(move || {
                let input = ChannelReader::new(body);
                match source {
                    Source::Proc(pid, merged, None) => {
                        let root = open_proc_root(pid, &merged)?;
                        extract(&root, &path, &name, input, opts, &user)
                    }
                    // A remapped rootfs takes writes only from ids the remapping knows: extract
                    // as the remapped root, the archive's ids taken as container ids and
                    // written as the mapping's host ids (moby's `IDMap`), or with `-a` and a
                    // configured user, that user's host ids.
                    Source::Proc(pid, merged, Some(map)) => {
                        let root = open_proc_root(pid, &merged)?;
                        let (uid, gid) = map.root();
                        let owner = match copy_owner(&root, &opts, &user)? {
                            Some((u, g)) => {
                                Some(map.host_uid(u).zip(map.host_gid(g)).ok_or_else(|| {
                                    ContainerError::invalid(format!(
                                        "Container ID {u}:{g} cannot be mapped to a host ID"
                                    ))
                                })?)
                            }
                            None => None,
                        };
                        let eopts = ExtractOptions {
                            owner,
                            shift: owner.is_none().then_some(map),
                            no_overwrite_dir_non_dir: opts.no_overwrite_dir_non_dir,
                        };
                        crate::runtime::idmap::with_fs_ids(uid, gid, || {
                            extract_with(&root, &path, &name, input, eopts)
                        })
                        .map_err(|e| ContainerError::io("extract as the remapped root", e))?
                    }
                    Source::Helper(mut req) => {
                        put_in_held_view(&mut req, input, &name, &path, opts, &user)
                    }
                }
            })
            .await,
        );
        if done.is_ok() {
            self.events.publish(self.event_for(&r, "extract-to-dir"));
        }
        done
    }
}

/// Work in a stopped container's view: the helper builds it in its own mount namespace and
/// holds it while berthd extracts into it through the view root's descriptor (opened by
/// `/proc/<helper>/fd/<n>`, which crosses into the helper's mounts) — no copy through a pipe.
fn put_in_held_view(
    req: &mut HelperRequest,
    input: impl Read,
    name: &str,
    path: &str,
    opts: PutOptions,
    user: &str,
) -> Result<(), ContainerError> {
    req.op = "hold".to_string();
    let mut h = Helper::spawn(req)?;
    let (Some(stdin), Some(out)) = (h.child.stdin.take(), h.child.stdout.take()) else {
        h.finish();
        return Err(ContainerError::internal("archive helper without pipes"));
    };
    let root = match Helper::read_root(&mut BufReader::new(out), h.child.id()) {
        Ok(root) => root,
        Err(e) => {
            h.finish();
            return Err(e);
        }
    };
    let r = extract(&root, path, name, input, opts, user);
    drop(root);
    // Closing its stdin lets the helper exit; its mounts go with its namespace.
    drop(stdin);
    h.wait();
    r
}

/// moby's `checkIfPathIsInAVolume` and the read-only rootfs check (lexical, on the cleaned
/// absolute path).
fn check_writable(r: &Record, path: &str) -> Result<(), ContainerError> {
    let abs = inroot::clean(&format!("/{path}"));
    let mut in_volume = false;
    for m in r.mount_points.iter().flatten() {
        let dest = inroot::clean(&m.destination);
        let under = abs == dest || dest == "/" || abs.starts_with(&format!("{dest}/"));
        if under {
            if !m.rw {
                return Err(ContainerError::invalid(
                    "mounted volume is marked read-only",
                ));
            }
            in_volume = true;
            break;
        }
    }
    if !in_volume && r.host_config.readonly_rootfs.unwrap_or(false) {
        return Err(ContainerError::invalid(
            "container rootfs is marked read-only",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modes() {
        assert_eq!(go_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(go_mode(libc::S_IFREG | 0o4755), (1 << 23) | 0o755);
        assert_eq!(
            go_mode(libc::S_IFCHR | 0o666),
            (1 << 26) | (1 << 21) | 0o666
        );
    }
}
