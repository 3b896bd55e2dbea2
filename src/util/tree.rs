//! Best-effort removal of files and directory trees.

use std::fs;
use std::path::Path;

/// Remove a file or directory tree, logging (not failing) on error.
pub fn remove_all(p: &Path) {
    let r = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(_) => Ok(()),
    };
    if let Err(e) = r {
        tracing::warn!("remove {}: {e}", p.display());
    }
}
