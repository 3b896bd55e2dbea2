//! COPY and ADD (moby's `builder/dockerfile/copy.go`): sources resolved in a source root (the
//! context, or a stage's or image's root file system) with Go's `filepath.Match` wildcards,
//! turned into one tar that the builder extracts at `/` of the step's container, with dockerd's
//! directory and destination rules and `--chown`; ADD also unpacks local tar archives
//! (gzip/bzip2/xz) and downloads URLs. And the checksum a COPY/ADD step's cache key uses.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::BuilderError;

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
}

/// The sources found, ready to be checksummed and written.
#[derive(Debug)]
pub struct Prepared {
    _files: Vec<PathBuf>,
}

/// Resolve the sources (wildcards; a source that matches nothing is dockerd's error
/// `COPY failed: file not found in build context or excluded by .dockerignore: stat x: file does not exist`),
/// downloading URLs into `scratch`.
pub fn prepare(input: &CopyInput<'_>) -> Result<Prepared, BuilderError> {
    let _ = input;
    Err(BuilderError::internal("copy not implemented"))
}

impl Prepared {
    /// A digest of the sources' content and metadata (names, modes, ownership, link targets;
    /// not mtimes): the same files give the same checksum.
    pub fn checksum(&self) -> String {
        String::new()
    }

    /// The tar to extract at `/` in the step's container: parents of the destination,
    /// then each source placed by dockerd's rules (`dest_kind` says what a destination path is
    /// in the parent image).
    pub fn write_tar(
        &self,
        dest_kind: &dyn Fn(&str) -> DestKind,
        out: &mut dyn Write,
    ) -> Result<(), BuilderError> {
        let _ = (dest_kind, out);
        Err(BuilderError::internal("copy not implemented"))
    }
}

/// moby's `parseChownFlag`: `user[:group]` as names or numbers, names looked up in the
/// image's `/etc/passwd` and `/etc/group` texts (`None`: the file is absent).
pub fn resolve_chown(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u32, u32), BuilderError> {
    let _ = (spec, passwd, group);
    Err(BuilderError::internal("chown not implemented"))
}
