//! Best-effort removal of files and directory trees.

use std::fs;
use std::path::Path;

/// Remove a file or directory tree, logging (not failing) on error.
pub fn remove_all(p: &Path) {
    if let Err(e) = remove_tree(p) {
        tracing::warn!("remove {}: {e}", p.display());
    }
}

/// Remove a file or directory tree; one that is not there is no error.
fn remove_tree(p: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => Ok(()),
    }
}

/// Take the tree at `p` out of its place at once: rename it into `trash` (a directory on the
/// same file system), where [`empty`] removes it later. The rename is one atomic step, so a
/// crash leaves either the whole tree in place or none of it there; the removal of its files,
/// which can take long for a large tree, is left to a background task. Fails (and leaves `p`)
/// when it cannot be renamed, such as across file systems.
pub fn move_to_trash(p: &Path, trash: &Path) -> std::io::Result<std::path::PathBuf> {
    fs::create_dir_all(trash)?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = p
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let to = trash.join(format!("{name}-{}-{n}", std::process::id()));
    fs::rename(p, &to)?;
    Ok(to)
}

/// Remove everything in `trash` ([`move_to_trash`]), logging what cannot be removed. A tree
/// that a removal of this process is deleting at the same time may vanish under it: that is
/// not an error.
pub fn empty(trash: &Path) {
    for e in fs::read_dir(trash).into_iter().flatten().flatten() {
        let p = e.path();
        match remove_tree(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!("remove {}: {e}", p.display());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_moved_to_the_trash_is_gone_at_once_and_removed_when_emptied() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("c1");
        fs::create_dir_all(tree.join("layer/diff/a")).unwrap();
        fs::write(tree.join("layer/diff/a/f"), b"x").unwrap();
        let trash = tmp.path().join("trash");
        let moved = move_to_trash(&tree, &trash).unwrap();
        assert!(!tree.exists());
        assert!(moved.starts_with(&trash));
        assert_eq!(fs::read(moved.join("layer/diff/a/f")).unwrap(), b"x");
        // The same name again (a new container reusing nothing but the name) gets its own slot.
        fs::create_dir_all(&tree).unwrap();
        let again = move_to_trash(&tree, &trash).unwrap();
        assert_ne!(again, moved);
        empty(&trash);
        assert_eq!(fs::read_dir(&trash).unwrap().count(), 0);
    }
}
