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
    write_and_rename(path, data, mode, true)
}

/// Replace `path` with `data` (temporary file and rename, no fsync): for files that are
/// remade at every start (a run's `/etc/hosts`), where a `kill -9` must not tear them but
/// durability across a power loss buys nothing.
pub fn replace_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_and_rename(path, data, mode, false)
}

/// A temporary file beside `path`, renamed over it; with `durable`, the file and then the
/// directory are fsynced as well.
fn write_and_rename(path: &Path, data: &[u8], mode: u32, durable: bool) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent directory", path.display()),
        )
    })?;
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
        fs::rename(&tmp, path)?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
