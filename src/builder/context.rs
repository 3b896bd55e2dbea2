//! The build context: the request body (a tar, plain or gzip/bzip2/xz compressed) or a
//! `remote` URL (a tar, a git repository, or a Dockerfile alone), unpacked into a directory
//! of its own; the Dockerfile located in it (moby's `builder/remotecontext`).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::BuilderError;

/// An unpacked context. The directory is removed when it is dropped.
#[derive(Debug)]
pub struct BuildContext {
    /// The context's root.
    pub root: PathBuf,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Its path inside the context, as found (`Dockerfile`, `dockerfile`, or the `dockerfile`
    /// parameter).
    pub dockerfile_path: String,
}

impl BuildContext {
    /// Blocking. Unpack `body` under `work_dir` and find the Dockerfile (`dockerfile`: the
    /// `dockerfile` parameter, empty for the default).
    pub fn from_tar(
        body: impl Read,
        dockerfile: &str,
        work_dir: &Path,
    ) -> Result<BuildContext, BuilderError> {
        let _ = (body, dockerfile, work_dir);
        Err(BuilderError::internal("build context not implemented"))
    }
}

impl Drop for BuildContext {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
