//! Network namespaces, kept as bind-mounted files (`<exec-root>/netns/<id>`), created and
//! entered only on short-lived dedicated OS threads: `setns`/`unshare` change the calling
//! thread, which must never be a tokio worker.

use std::path::Path;

use super::NetworkError;

/// Create a new network namespace with `lo` up and bind-mount it on `path` (an empty file is
/// created first). Runs on its own OS thread, which unshares and then exits.
pub fn create(path: &Path) -> Result<(), NetworkError> {
    let _ = path;
    Err(NetworkError::internal(
        "netns::create is not implemented yet",
    ))
}

/// Unmount and remove a namespace file; a missing one is fine.
pub fn remove(path: &Path) -> Result<(), NetworkError> {
    let _ = path;
    Err(NetworkError::internal(
        "netns::remove is not implemented yet",
    ))
}

/// Run `f` on a new OS thread that has joined the namespace at `path`, and return its result.
/// Sockets made inside `f` stay in that namespace after the thread ends.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let _ = (path, f);
    Err(NetworkError::internal(
        "netns::run_in is not implemented yet",
    ))
}
