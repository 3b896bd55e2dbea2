//! A volume's `Subpath` (`--mount type=volume,volume-subpath=…`): the path below the volume's
//! data is opened with every component beneath it (a symlink or `..` that leads out is an
//! error, as moby's `safepath`), and that very descriptor is bind-mounted onto a private
//! mount point, which the container binds in turn. Nothing is looked up by name after the
//! check, so swapping a component for a symlink in between cannot redirect the mount.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, SFlag};

use super::{options, VolumeError};
use crate::util::inroot;

/// moby's check at create (`filepath.IsLocal`): non-empty, relative, never above the volume.
pub fn validate(subpath: &str) -> Result<(), String> {
    let clean = inroot::clean(subpath);
    if subpath.is_empty() || subpath.starts_with('/') || clean == ".." || clean.starts_with("../") {
        return Err("subpath must be a relative path within the volume".to_string());
    }
    Ok(())
}

/// Bind `subpath` below the volume data `base` onto `target` (created as a directory or an
/// empty file, as the subpath is). Errors use moby's texts: a missing path is "cannot access
/// path …" (not found), one that leads out "path concatenation escapes the base directory…"
/// (invalid).
pub fn bind(base: &Path, subpath: &str, target: &Path) -> Result<(), VolumeError> {
    let dir = File::open(base)
        .map_err(|e| VolumeError::internal(format!("open volume data {}: {e}", base.display())))?;
    let rel = inroot::clean(subpath);
    let fd = inroot::resolve_beneath(&dir, rel.as_bytes(), OFlag::O_PATH).map_err(|e| match e {
        Errno::EXDEV | Errno::ELOOP => VolumeError::invalid(format!(
            "path concatenation escapes the base directory, base: {}, subpath: {subpath}",
            base.display()
        )),
        e => VolumeError::not_found(format!(
            "cannot access path {}: {}",
            base.join(&rel).display(),
            e.desc().to_lowercase()
        )),
    })?;
    let st = fstat(fd.as_raw_fd())
        .map_err(|e| VolumeError::internal(format!("stat subpath {subpath}: {}", e.desc())))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| VolumeError::internal(format!("create {}: {e}", parent.display())))?;
    }
    let made = if is_dir {
        fs::create_dir(target).or_else(|e| exists_ok(e, target))
    } else {
        File::create(target).map(drop)
    };
    made.map_err(|e| VolumeError::internal(format!("create {}: {e}", target.display())))?;
    let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    mount(
        Some(&source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        VolumeError::internal(format!(
            "bind subpath {subpath} onto {}: {}",
            target.display(),
            e.desc()
        ))
    })?;
    Ok(())
}

fn exists_ok(e: std::io::Error, target: &Path) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::AlreadyExists && target.is_dir() {
        Ok(())
    } else {
        Err(e)
    }
}

/// Unmount and remove every subpath mount point below `dir`, then `dir` itself.
pub fn unbind_all(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if let Err(e) = options::unmount(&p) {
            tracing::warn!("{e}");
            continue;
        }
        let _ = fs::remove_dir(&p).or_else(|_| fs::remove_file(&p));
    }
    let _ = fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Kinded;

    #[test]
    fn validate_is_moby_is_local() {
        for ok in ["a", "a/b", "a/../b", "./a", "a/"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/a",
            "..",
            "../a",
            "a/../../b",
            "../../../../etc/passwd",
        ] {
            assert_eq!(
                validate(bad).unwrap_err(),
                "subpath must be a relative path within the volume",
                "{bad}"
            );
        }
    }

    #[test]
    fn bind_refuses_links_out_and_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("data");
        fs::create_dir_all(base.join("sub")).unwrap();
        fs::create_dir(base.join("hack")).unwrap();
        std::os::unix::fs::symlink("/", base.join("hack/root")).unwrap();
        std::os::unix::fs::symlink("root", base.join("hack/bad")).unwrap();
        std::os::unix::fs::symlink("../../..", base.join("hack/up")).unwrap();
        let t = dir.path().join("t");
        for p in ["hack/root", "hack/bad", "hack/up", "hack/root/etc"] {
            let e = bind(&base, p, &t).unwrap_err();
            assert_eq!(
                e.kind(),
                crate::errors::ErrorKind::InvalidParameter,
                "{p}: {e}"
            );
            assert!(
                e.to_string().starts_with("path concatenation escapes"),
                "{e}"
            );
        }
        let e = bind(&base, "nope", &t).unwrap_err();
        assert_eq!(e.kind(), crate::errors::ErrorKind::NotFound, "{e}");
        assert!(e.to_string().starts_with("cannot access path "), "{e}");
        assert!(!t.exists());
    }
}
