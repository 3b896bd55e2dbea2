//! Crash-safe file writes.
//!
//! Every piece of state under `--data-root` is written through [`atomic_write`]: the bytes go to a
//! temporary file in the same directory, the file is fsynced, renamed over the target and the
//! directory is fsynced. A `kill -9` at any moment leaves either the old or the new content,
//! never a torn file; leftover temporary files are ignored and removed by [`remove_temp_files`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The prefix of the temporary files written by [`atomic_write`].
pub const TEMP_PREFIX: &str = ".tmp-";

/// Write `data` to `path` atomically with the given mode.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_and_rename(path, data, mode, true)?;
    sync_dir(parent_of(path)?)
}

/// Write several files as [`atomic_write`] does, each fsynced before its rename, with one
/// fsync of each directory for the lot instead of one per file.
pub fn atomic_write_all(files: &[(PathBuf, Vec<u8>)], mode: u32) -> io::Result<()> {
    let mut dirs = std::collections::BTreeSet::new();
    for (path, data) in files {
        write_and_rename(path, data, mode, true)?;
        dirs.insert(parent_of(path)?);
    }
    dirs.into_iter().try_for_each(sync_dir)
}

/// Replace `path` with `data` (temporary file and rename, no fsync): for files that are
/// remade at every start (a run's `/etc/hosts`), where a `kill -9` must not tear them but
/// durability across a power loss buys nothing.
pub fn replace_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_and_rename(path, data, mode, false)
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent directory", path.display()),
        )
    })
}

/// A temporary file beside `path`, renamed over it; with `durable`, the file is fsynced before
/// the rename (the caller fsyncs the directory).
fn write_and_rename(path: &Path, data: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = parent_of(path)?;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        "{TEMP_PREFIX}{}-{}-{n}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsync a directory so that a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create `dir` (and its parents) with `mode` if it does not exist yet.
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        }
        Err(e) => Err(e),
    }
}

/// Open `rel` for reading inside `root`; see [`crate::util::inroot::open_file`].
pub use super::inroot::open_file as open_in_root;

/// Remove the temporary files that an interrupted [`atomic_write`] left in `dir`.
pub fn remove_temp_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// Whether `path` (a final symlink not followed) is the root of a mount, in this process's
/// mount namespace. One `statx` (`STATX_ATTR_MOUNT_ROOT`, Linux 5.8), whatever the number of
/// mounts; on an older kernel, a look through `/proc/self/mountinfo`, which every running
/// container makes longer (about 280 KiB with 500 running).
pub fn is_mount_point(path: &Path) -> bool {
    match statx_mount_root(path) {
        Some(root) => root,
        None => mountinfo_mount_points().iter().any(|p| p.as_path() == path),
    }
}

/// `STATX_ATTR_MOUNT_ROOT` of `path`; `None` when the kernel cannot tell.
fn statx_mount_root(path: &Path) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` a buffer of the type statx fills.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            0,
            st.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => Some(false),
            _ => None,
        };
    }
    // SAFETY: statx succeeded, so it filled `st` (and it started zeroed).
    let st = unsafe { st.assume_init() };
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    (st.stx_attributes_mask & bit != 0).then_some(st.stx_attributes & bit != 0)
}

/// Every mount point of this process's mount namespace, from `/proc/self/mountinfo`.
fn mountinfo_mount_points() -> Vec<PathBuf> {
    mount_table().into_iter().map(|e| e.mount_point).collect()
}

/// One line of `/proc/self/mountinfo`, the fields berth reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u32,
    /// The id of the mount this one sits on.
    pub parent: u32,
    /// `major:minor` of the file system.
    pub dev: String,
    /// The directory of the file system this mount shows (`/` for a whole file system).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// No `shared:` or `master:` tag: mounts under it propagate nowhere and nothing
    /// propagates into it.
    pub private: bool,
}

/// The mount table of berth's own mount namespace, in the kernel's order (a mount over
/// another comes after it). Lines that do not parse are skipped.
pub fn mount_table() -> Vec<MountEntry> {
    parse_mount_table(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

fn parse_mount_table(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|l| {
            let (before, _) = l.split_once(" - ")?;
            let f: Vec<&str> = before.split(' ').collect();
            if f.len() < 6 {
                return None;
            }
            Some(MountEntry {
                id: f[0].parse().ok()?,
                parent: f[1].parse().ok()?,
                dev: f[2].to_string(),
                root: PathBuf::from(unescape_mountinfo(f[3])),
                mount_point: PathBuf::from(unescape_mountinfo(f[4])),
                private: !f[6..]
                    .iter()
                    .any(|t| t.starts_with("shared:") || t.starts_with("master:")),
            })
        })
        .collect()
}

/// mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
pub fn unescape_mountinfo(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_files_are_written_whole_with_their_mode_and_no_temporaries_left() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(dir.path().join("a"), "old").unwrap();
        let files = vec![
            (dir.path().join("a"), b"one".to_vec()),
            (sub.join("b"), b"two".to_vec()),
        ];
        atomic_write_all(&files, 0o600).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "one");
        assert_eq!(fs::read_to_string(sub.join("b")).unwrap(), "two");
        let mode = fs::metadata(sub.join("b")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        for d in [dir.path(), sub.as_path()] {
            assert!(remove_temp_files(d).unwrap().is_empty());
        }
        atomic_write_all(&[], 0o600).unwrap();
    }

    #[test]
    fn mount_table_lines_are_read() {
        let text = "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    90 22 253:0 /var/lib/b\\040x/containers /var/lib/b\\040x/containers rw - ext4 /dev/vda rw\n\
                    91 90 0:4 net:[4026532] /run/b/netns/a rw master:3 - nsfs nsfs rw\n\
                    bad line\n";
        let t = parse_mount_table(text);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].mount_point, Path::new("/"));
        assert!(!t[0].private);
        assert_eq!(t[1].root, Path::new("/var/lib/b x/containers"));
        assert_eq!(t[1].mount_point, Path::new("/var/lib/b x/containers"));
        assert_eq!(t[1].dev, "253:0");
        assert_eq!((t[1].id, t[1].parent), (90, 22));
        assert!(t[1].private);
        assert!(!t[2].private);
        assert_eq!(t[2].root, Path::new("net:[4026532]"));
    }

    #[test]
    fn mount_points_are_told_by_statx_as_by_mountinfo() {
        let listed = mountinfo_mount_points();
        // `/proc` and `/` are mount points here; a plain directory and a missing path are not.
        for p in ["/", "/proc"] {
            assert!(is_mount_point(Path::new(p)), "{p}");
            assert!(listed.iter().any(|l| l == Path::new(p)), "{p}");
        }
        let dir = std::env::temp_dir().join(format!("berth-mp-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(!is_mount_point(&dir));
        assert!(!is_mount_point(&dir.join("missing")));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/t\\011ab\\134x"), "/t\tab\\x");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/bad\\09"), "/bad\\09");
    }

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("record.json");
        atomic_write(&p, b"one", 0o600).unwrap();
        atomic_write(&p, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn leftover_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".tmp-x-1"), b"half").unwrap();
        fs::write(dir.path().join("keep"), b"k").unwrap();
        let removed = remove_temp_files(dir.path()).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(dir.path().join("keep").exists());
    }

    #[test]
    fn ensure_dir_refuses_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"").unwrap();
        assert!(ensure_dir(&f, 0o700).is_err());
        let d = dir.path().join("a/b");
        ensure_dir(&d, 0o711).unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o711
        );
    }
}
