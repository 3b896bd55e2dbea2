//! The build context: the request body (a tar, plain or gzip/bzip2/xz/zstd compressed, or a
//! bare Dockerfile) or a `remote` URL (a tar, a git repository, or a Dockerfile alone),
//! unpacked into a directory of its own; the Dockerfile located in it (moby's
//! `builder/remotecontext`).
//!
//! Divergences from dockerd: a body that is not a tar is taken as the Dockerfile itself (an
//! empty context) rather than refused; a git remote without `#ref` fetches the remote's HEAD
//! (moby fetches `master`); `file://` git URLs are accepted; a dumb-HTTP git server (no
//! shallow fetch) is not supported; an HTTP remote's Content-Type is not checked, its content
//! decides (tar or Dockerfile).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::cache::{ContextCache, RecordGuard};
use super::dockerignore::Matcher;
use super::BuilderError;
use crate::image::apply::{extract_plain_at, ApplyError, ExtractOptions};
use crate::util::inroot;

/// The largest Dockerfile read (buildkit's frontend refuses far smaller ones in practice).
pub const MAX_DOCKERFILE_SIZE: u64 = 16 << 20;

/// The default Dockerfile name (moby's `builder.DefaultDockerfileName`).
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";

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
    /// The content hash of each regular file the extraction wrote or reused, by real path.
    pub hashes: Arc<HashMap<PathBuf, String>>,
    /// The build cache's record of this context, in use while the context lives.
    _record: Option<RecordGuard>,
}

impl BuildContext {
    /// Blocking. Unpack `body` under `work_dir` and find the Dockerfile (`dockerfile`: the
    /// `dockerfile` parameter, empty for the default). A body that is not a tar (after
    /// decompression) is the Dockerfile itself, with an empty context.
    pub fn from_tar(
        body: impl Read,
        dockerfile: &str,
        work_dir: &Path,
        cache: Option<&Arc<ContextCache>>,
    ) -> Result<BuildContext, BuilderError> {
        let mut stream = decompress(body)?;
        // A tar starts with a 512-byte header whose checksum is valid (or, empty, with zeros).
        let mut head = Vec::with_capacity(512);
        (&mut stream)
            .take(512)
            .read_to_end(&mut head)
            .map_err(|e| read_error("reading the build context", e))?;
        if !head.is_empty() && !is_tar_header(&head) {
            let mut text = head;
            read_limited(&mut stream, &mut text, DEFAULT_DOCKERFILE)?;
            return BuildContext::from_dockerfile_bytes(text, work_dir);
        }
        let mut ctx = BuildContext::empty(work_dir)?;
        let root = open_dir_fd(&ctx.root)?;
        let reader = TarPad::new(io::Cursor::new(head).chain(stream));
        match cache {
            None => {
                extract_plain_at(reader, root, ExtractOptions::default(), None)
                    .map_err(apply_error)?;
            }
            Some(cache) => {
                let mut hook = cache.hook();
                extract_plain_at(reader, root, ExtractOptions::default(), Some(&mut hook))
                    .map_err(apply_error)?;
                let real = std::fs::canonicalize(&ctx.root)
                    .map_err(|e| BuilderError::io(format!("resolve {}", ctx.root.display()), e))?;
                ctx.hashes = Arc::new(
                    hook.hashes
                        .into_iter()
                        .map(|(rel, sha)| (real.join(rel), sha))
                        .collect(),
                );
                ctx._record = Some(cache.commit(hook.keys));
            }
        }
        ctx.locate(dockerfile)?;
        Ok(ctx)
    }

    /// Blocking. A context made of a bare Dockerfile (`docker build - < Dockerfile`): an empty
    /// directory under `work_dir` and `text` as the Dockerfile.
    pub fn from_dockerfile_text(text: &str, work_dir: &Path) -> Result<BuildContext, BuilderError> {
        BuildContext::from_dockerfile_bytes(text.as_bytes().to_vec(), work_dir)
    }

    /// A `remote=` context: a git repository (`git://`, `git@`, `github.com/…`, `file://`, or
    /// an `http(s)://` URL ending in `.git`, with an optional `#ref:subdir`) cloned with the
    /// host's `git`, else an `http(s)://` URL whose body is a (compressed) tar or a Dockerfile.
    /// Async: the download and `git` run on the runtime, the unpacking in `spawn_blocking`.
    pub async fn from_remote(
        url: &str,
        dockerfile: &str,
        work_dir: &Path,
    ) -> Result<BuildContext, BuilderError> {
        if is_git_url(url) {
            let root = clone_git(url, work_dir).await?;
            let dockerfile = dockerfile.to_string();
            return blocking(move || {
                let mut ctx = BuildContext {
                    root,
                    dockerfile: String::new(),
                    dockerfile_path: String::new(),
                    hashes: Arc::default(),
                    _record: None,
                };
                ctx.locate(&dockerfile)?;
                Ok(ctx)
            })
            .await;
        }
        if !is_url(url) {
            return Err(BuilderError::invalid(format!(
                "remoteURL ({url}) could not be recognized as URL"
            )));
        }
        let file = download(url, work_dir).await?;
        let (dockerfile, work_dir) = (dockerfile.to_string(), work_dir.to_path_buf());
        blocking(move || {
            let (file, path) = file;
            let _ = std::fs::remove_file(&path);
            BuildContext::from_tar(BufReader::new(file), &dockerfile, &work_dir, None)
        })
        .await
    }

    fn from_dockerfile_bytes(text: Vec<u8>, work_dir: &Path) -> Result<BuildContext, BuilderError> {
        let mut ctx = BuildContext::empty(work_dir)?;
        ctx.dockerfile = dockerfile_text(text, DEFAULT_DOCKERFILE)?;
        ctx.dockerfile_path = DEFAULT_DOCKERFILE.to_string();
        Ok(ctx)
    }

    /// A new, empty context directory under `work_dir` (removed on drop).
    fn empty(work_dir: &Path) -> Result<BuildContext, BuilderError> {
        let root = new_dir(work_dir, "context")?;
        Ok(BuildContext {
            root,
            dockerfile: String::new(),
            dockerfile_path: String::new(),
            hashes: Arc::default(),
            _record: None,
        })
    }

    /// moby's `withDockerfileFromContext`: find and read the Dockerfile, then apply
    /// `removeDockerfile`.
    fn locate(&mut self, dockerfile: &str) -> Result<(), BuilderError> {
        let name = if dockerfile.is_empty() {
            DEFAULT_DOCKERFILE
        } else {
            dockerfile
        };
        let rel = inside(name)?;
        let (file, rel) = match inroot::open_file(&self.root, &rel) {
            Ok(f) => (f, rel),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let lower = name.to_lowercase();
                let alt = if name == DEFAULT_DOCKERFILE {
                    inroot::open_file(&self.root, &lower).ok()
                } else {
                    None
                };
                match alt {
                    Some(f) => (f, lower),
                    None => {
                        return Err(BuilderError::invalid(format!(
                            "Cannot locate specified Dockerfile: {name}"
                        )))
                    }
                }
            }
            Err(e) => {
                return Err(BuilderError::invalid(format!(
                    "opening the Dockerfile ({name}): {e}"
                )))
            }
        };
        let mut text = Vec::new();
        read_limited(file, &mut text, name)?;
        self.dockerfile = dockerfile_text(text, name)?;
        self.dockerfile_path = rel;
        self.remove_ignored()
    }

    /// moby's `removeDockerfile`: `.dockerignore` and the Dockerfile leave the context when
    /// `.dockerignore` excludes them (the client already left out everything else).
    fn remove_ignored(&self) -> Result<(), BuilderError> {
        let mut text = String::new();
        match inroot::open_file(&self.root, ".dockerignore") {
            Ok(f) => {
                f.take(MAX_DOCKERFILE_SIZE)
                    .read_to_string(&mut text)
                    .map_err(|e| {
                        BuilderError::invalid(format!("error reading .dockerignore: {e}"))
                    })?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(BuilderError::io("opening .dockerignore", e)),
        }
        let matcher = match Matcher::parse(&text) {
            Ok(m) => m,
            Err(e) => {
                // moby ignores match errors here.
                tracing::warn!("build context .dockerignore: {e}");
                return Ok(());
            }
        };
        for rel in [".dockerignore", self.dockerfile_path.as_str()] {
            if matcher.excluded(rel) {
                if let Err(e) = remove_in_root(&self.root, rel) {
                    tracing::warn!("failed to remove {rel} from the build context: {e}");
                }
            }
        }
        Ok(())
    }
}

impl Drop for BuildContext {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The body, decompressed by its magic (moby's `compression.DecompressStream`).
fn decompress<'a>(mut body: impl Read + 'a) -> Result<Box<dyn Read + 'a>, BuilderError> {
    let mut magic = [0u8; 6];
    let mut have = 0;
    while have < magic.len() {
        match body.read(&mut magic[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error("reading the build context", e)),
        }
    }
    let head = magic[..have].to_vec();
    let reader = BufReader::new(io::Cursor::new(head.clone()).chain(body));
    decompress_with(head, reader)
}

fn decompress_with<'a, R: BufRead + 'a>(
    head: Vec<u8>,
    reader: R,
) -> Result<Box<dyn Read + 'a>, BuilderError> {
    Ok(if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(reader))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Box::new(lzma_rust2::XzReader::new(reader, true))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|e| read_error("reading the build context", e))?,
        )
    } else {
        Box::new(reader)
    })
}

/// The docker CLI's `-f` from outside the context (`ReplaceFileTarWrapper`) ends the tar right
/// after the last entry's data: no padding, no end-of-archive blocks. Go's tar reader takes
/// that as the end; for the tar parser, the stream is completed with zeros to the next block
/// plus the two end blocks.
struct TarPad<R> {
    inner: R,
    total: u64,
    padding: Option<u64>,
}

impl<R: Read> TarPad<R> {
    fn new(inner: R) -> Self {
        TarPad {
            inner,
            total: 0,
            padding: None,
        }
    }
}

impl<R: Read> Read for TarPad<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.padding.is_none() {
            let n = self.inner.read(buf)?;
            if n > 0 {
                self.total += n as u64;
                return Ok(n);
            }
            let unaligned = (512 - self.total % 512) % 512;
            self.padding = Some(unaligned + 1024);
        }
        let left = self.padding.unwrap_or(0);
        let n = (left.min(buf.len() as u64)) as usize;
        buf[..n].fill(0);
        self.padding = Some(left - n as u64);
        Ok(n)
    }
}

/// Whether `head` is a tar header block: all zeros (an empty archive) or a header whose
/// checksum (bytes 148..156, octal) is the sum of its bytes with the checksum field as spaces.
fn is_tar_header(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if head.iter().all(|b| *b == 0) {
        return true;
    }
    let field = &head[148..156];
    let digits: String = field
        .iter()
        .map(|b| *b as char)
        .filter(|c| c.is_ascii_digit())
        .collect();
    let text = String::from_utf8_lossy(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() || digits.len() != text.len() {
        return false;
    }
    let Ok(want) = u32::from_str_radix(&digits, 8) else {
        return false;
    };
    let unsigned: u32 = head[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    let signed: i64 = head[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as i8 as i64
            }
        })
        .sum();
    want == unsigned || i64::from(want) == signed
}

fn read_limited(r: impl Read, out: &mut Vec<u8>, name: &str) -> Result<(), BuilderError> {
    let already = out.len() as u64;
    r.take(MAX_DOCKERFILE_SIZE + 1 - already.min(MAX_DOCKERFILE_SIZE))
        .read_to_end(out)
        .map_err(|e| BuilderError::invalid(format!("unexpected error reading Dockerfile: {e}")))?;
    if out.len() as u64 > MAX_DOCKERFILE_SIZE {
        return Err(BuilderError::invalid(format!(
            "the Dockerfile ({name}) is larger than {MAX_DOCKERFILE_SIZE} bytes"
        )));
    }
    Ok(())
}

fn dockerfile_text(text: Vec<u8>, name: &str) -> Result<String, BuilderError> {
    if text.is_empty() {
        return Err(BuilderError::invalid(format!(
            "the Dockerfile ({name}) cannot be empty"
        )));
    }
    String::from_utf8(text).map_err(|_| {
        BuilderError::invalid(format!(
            "failed to parse {name}: the Dockerfile is not UTF-8"
        ))
    })
}

/// `name` cleaned and made relative to the context root; refused if it climbs out.
fn inside(name: &str) -> Result<String, BuilderError> {
    let cleaned = inroot::clean(&format!("/{name}"));
    let rel = cleaned.trim_start_matches('/');
    let lexical = inroot::clean(name);
    if lexical == ".." || lexical.starts_with("../") {
        return Err(BuilderError::invalid(format!(
            "forbidden path outside the build context: {name} ()"
        )));
    }
    if rel.is_empty() {
        return Err(BuilderError::invalid(format!(
            "Cannot locate specified Dockerfile: {name}"
        )));
    }
    Ok(rel.to_string())
}

/// Unlink `rel` (a file, or an empty directory) with every parent resolved inside `root`.
fn remove_in_root(root: &Path, rel: &str) -> io::Result<()> {
    let (parent, base) = match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    };
    let dir = File::open(root)?;
    let parent_fd = inroot::open_dir(&dir, parent.as_bytes()).map_err(io::Error::from)?;
    match nix::unistd::unlinkat(
        Some(parent_fd.as_raw_fd()),
        base,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Err(nix::errno::Errno::EISDIR) => nix::unistd::unlinkat(
            Some(parent_fd.as_raw_fd()),
            base,
            nix::unistd::UnlinkatFlags::RemoveDir,
        )
        .map_err(io::Error::from),
        r => r.map_err(io::Error::from),
    }
}

fn new_dir(work_dir: &Path, prefix: &str) -> Result<PathBuf, BuilderError> {
    std::fs::create_dir_all(work_dir)
        .map_err(|e| BuilderError::io(format!("creating {}", work_dir.display()), e))?;
    let dir = work_dir.join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir)
        .map_err(|e| BuilderError::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

fn open_dir_fd(dir: &Path) -> Result<OwnedFd, BuilderError> {
    File::open(dir)
        .map(OwnedFd::from)
        .map_err(|e| BuilderError::io(format!("opening {}", dir.display()), e))
}

fn read_error(context: &str, e: io::Error) -> BuilderError {
    BuilderError::invalid(format!("{context}: {e}"))
}

fn apply_error(e: ApplyError) -> BuilderError {
    // A context whose entries cannot be placed (a file through a symlink out of the context,
    // a dangling hard link) is the client's fault: a 400, as the layer code classifies it.
    // A failed read of the context is the client's too.
    let client = matches!(e, ApplyError::Read { .. })
        || matches!(
            crate::errors::Kinded::kind(&e),
            crate::errors::ErrorKind::InvalidParameter | crate::errors::ErrorKind::NotImplemented
        );
    if client {
        BuilderError::invalid(format!("unpacking the build context: {e}"))
    } else {
        BuilderError::internal(format!("unpacking the build context: {e}"))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BuilderError> + Send + 'static,
) -> Result<T, BuilderError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BuilderError::internal(format!("build context task: {e}")))?
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// moby's `urlutil.IsGitURL`, plus `file://`.
pub fn is_git_url(s: &str) -> bool {
    if is_url(s) {
        let path = s.split('#').next().unwrap_or(s);
        if path.ends_with(".git") {
            return true;
        }
    }
    ["git://", "github.com/", "git@", "file://"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// A git URL split as moby's `parseRemoteURL`: the remote, the ref (empty: the remote's
/// HEAD) and the sub-directory of the `#ref:subdir` fragment.
pub fn parse_git_url(url: &str) -> Result<(String, String, String), BuilderError> {
    let transport = url.starts_with("git@")
        || ["git://", "http://", "https://", "ssh://", "file://"]
            .iter()
            .any(|p| url.to_ascii_lowercase().starts_with(p));
    let url = if transport {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let (remote, fragment) = match url.split_once('#') {
        Some((r, f)) => (r.to_string(), f.to_string()),
        None => (url.clone(), String::new()),
    };
    let (reference, subdir) = match fragment.split_once(':') {
        Some((r, s)) => (r.to_string(), s.to_string()),
        None => (fragment, String::new()),
    };
    if reference.starts_with('-') {
        return Err(BuilderError::invalid(format!(
            "invalid refspec: {reference}"
        )));
    }
    Ok((remote, reference, subdir))
}

/// moby's `git.Clone`: init, fetch `--depth 1` the ref, check it out, update submodules; the
/// directory returned is the clone or its `subdir`, moved to a directory of its own.
async fn clone_git(url: &str, work_dir: &Path) -> Result<PathBuf, BuilderError> {
    let (remote, reference, subdir) = parse_git_url(url)?;
    let work_dir = work_dir.to_path_buf();
    let clone = blocking(move || new_dir(&work_dir, "git")).await?;
    let result = clone_into(&clone, url, &remote, &reference, &subdir).await;
    match result {
        Ok(Some(dir)) => {
            let _ = tokio::fs::remove_dir_all(&clone).await;
            Ok(dir)
        }
        Ok(None) => Ok(clone),
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&clone).await;
            Err(e)
        }
    }
}

async fn clone_into(
    root: &Path,
    url: &str,
    remote: &str,
    reference: &str,
    subdir: &str,
) -> Result<Option<PathBuf>, BuilderError> {
    // The remote given by the client may be a local repository; submodules never.
    let file_ok = remote.starts_with("file://");
    git(root, false, &["init", "-q"]).await.map_err(|e| {
        BuilderError::internal(format!("failed to init repo at {}: {e}", root.display()))
    })?;
    git(root, false, &["remote", "add", "origin", remote])
        .await
        .map_err(|e| BuilderError::internal(format!("failed add origin repo at {remote}: {e}")))?;
    let fetch_ref = if reference.is_empty() {
        "HEAD"
    } else {
        reference
    };
    git(
        root,
        file_ok,
        &["fetch", "-q", "--depth", "1", "origin", "--", fetch_ref],
    )
    .await
    .map_err(|e| BuilderError::invalid(format!("error fetching: {e}")))?;
    let checked_out = if reference.is_empty() {
        git(root, false, &["checkout", "-q", "FETCH_HEAD"]).await
    } else {
        match git(root, false, &["checkout", "-q", reference]).await {
            Ok(o) => Ok(o),
            Err(e) => git(root, false, &["checkout", "-q", "FETCH_HEAD"])
                .await
                .map_err(|_| e),
        }
    };
    checked_out
        .map_err(|e| BuilderError::invalid(format!("error checking out {fetch_ref}: {e}")))?;
    git(
        root,
        false,
        &["submodule", "update", "--init", "--recursive", "--depth=1"],
    )
    .await
    .map_err(|e| BuilderError::invalid(format!("error initializing submodules: {e}")))?;
    if subdir.is_empty() {
        return Ok(None);
    }
    let sub = inroot::clean(subdir);
    let base = root
        .canonicalize()
        .map_err(|e| BuilderError::io("resolving the git context", e))?;
    let full = base.join(sub.trim_start_matches('/')).canonicalize();
    let full = match full {
        Ok(p) if p.starts_with(&base) => p,
        _ => {
            return Err(BuilderError::invalid(format!(
                "error setting git context, {subdir:?} not within git root ({url})"
            )))
        }
    };
    if !full.is_dir() {
        return Err(BuilderError::invalid(format!(
            "error setting git context, not a directory: {subdir}"
        )));
    }
    let parent = root.parent().unwrap_or(root);
    let dest = parent.join(format!("context-{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::rename(&full, &dest)
        .await
        .map_err(|e| BuilderError::io("moving the git context", e))?;
    Ok(Some(dest))
}

/// Run the host's `git` in `dir` with moby's hardening (no system or user config, no
/// `file://` submodules, no prompts); its combined output as the error.
async fn git(dir: &Path, allow_file: bool, args: &[&str]) -> Result<(), String> {
    let policy = if allow_file {
        "protocol.file.allow=always"
    } else {
        "protocol.file.allow=never"
    };
    let out = tokio::process::Command::new("git")
        .arg("-c")
        .arg(policy)
        .args(args)
        .current_dir(dir)
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env(
            "GIT_SSH_COMMAND",
            std::env::var("GIT_SSH_COMMAND").unwrap_or_else(|_| "ssh -o BatchMode=yes".into()),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(
                "git is not installed on the daemon host (needed for a git build context)".into(),
            )
        }
        Err(e) => return Err(format!("running git: {e}")),
    };
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(format!("{} ({})", text.trim(), out.status))
}

/// GET `url` into a new (unlinked on use) file under `work_dir` (moby's `downloadRemote`).
async fn download(url: &str, work_dir: &Path) -> Result<(File, PathBuf), BuilderError> {
    use tokio::io::AsyncWriteExt;

    let wrap = |e: &str| format!("error downloading remote context {url}: {e}");
    let mut resp = crate::util::http::get(url)
        .await
        .map_err(|e| BuilderError::new(e.kind(), wrap(e.message())))?;
    let work = work_dir.to_path_buf();
    tokio::fs::create_dir_all(&work)
        .await
        .map_err(|e| BuilderError::io(format!("creating {}", work.display()), e))?;
    let path = work.join(format!("remote-{}", uuid::Uuid::new_v4().simple()));
    let mut out = tokio::fs::File::create(&path)
        .await
        .map_err(|e| BuilderError::io(format!("creating {}", path.display()), e))?;
    let mut total = 0u64;
    let fail = |e: String, path: &Path| {
        let _ = std::fs::remove_file(path);
        BuilderError::invalid(wrap(&e))
    };
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e, &path))? {
        total += chunk.len() as u64;
        out.write_all(&chunk)
            .await
            .map_err(|e| fail(e.to_string(), &path))?;
    }
    if total == 0 {
        return Err(fail("empty response".into(), &path));
    }
    out.flush().await.map_err(|e| fail(e.to_string(), &path))?;
    drop(out);
    let file = File::open(&path).map_err(|e| fail(e.to_string(), &path))?;
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorKind;
    use crate::errors::Kinded as _;
    use std::io::Write;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            if name.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).unwrap();
            } else {
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, *data).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    /// A tar with a raw entry name (bypassing the tar crate's `..` checks).
    fn raw_tar(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(512 + data.len().div_ceil(512) * 512, 0);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn work() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn cached_files_reused_from_a_streamed_body_plain_or_compressed() {
        use std::os::unix::fs::MetadataExt;
        let w = work();
        let cache = ContextCache::open(&w.path().join("cache"), 0).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let tar = tar_of(&[
            ("Dockerfile", b"FROM scratch\n"),
            ("big", &big),
            ("small", b"hi"),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        // The first build fills the cache; the others reuse its files, reading their content
        // past (without a copy when nothing but the tar parser stands between, as in the
        // plain tar; through the decompressor's own buffers for the gzip one).
        let mut first = None;
        for (i, body) in [&tar, &tar, &gz, &gz].into_iter().enumerate() {
            let frames = body
                .chunks(32 * 1024)
                .map(bytes::Bytes::copy_from_slice)
                .collect();
            let reader = crate::util::io::ChannelReader::new(crate::util::io::body_of(frames));
            let ctx = BuildContext::from_tar(reader, "", w.path(), Some(&cache)).unwrap();
            assert_eq!(
                std::fs::read(ctx.root.join("big")).unwrap(),
                big,
                "build {i}"
            );
            assert_eq!(std::fs::read(ctx.root.join("small")).unwrap(), b"hi");
            assert_eq!(ctx.dockerfile, "FROM scratch\n");
            // The first build's file went into the cache: the others link that same inode.
            let ino = std::fs::metadata(ctx.root.join("big")).unwrap().ino();
            assert_eq!(*first.get_or_insert(ino), ino, "build {i}");
        }
    }

    #[test]
    fn plain_tar_with_nested_dirs() {
        let w = work();
        let body = tar_of(&[
            ("Dockerfile", b"FROM scratch\nCOPY . /\n"),
            ("a/", b""),
            ("a/b/", b""),
            ("a/b/c.txt", b"hello"),
        ]);
        let ctx = BuildContext::from_tar(&body[..], "", w.path(), None).unwrap();
        assert_eq!(ctx.dockerfile, "FROM scratch\nCOPY . /\n");
        assert_eq!(ctx.dockerfile_path, "Dockerfile");
        assert!(ctx.root.starts_with(w.path()));
        assert_eq!(std::fs::read(ctx.root.join("a/b/c.txt")).unwrap(), b"hello");
        let root = ctx.root.clone();
        drop(ctx);
        assert!(!root.exists(), "context removed on drop");
    }

    #[test]
    fn compressed_tars() {
        let body = tar_of(&[("dockerfile", b"FROM x\n"), ("d/e", b"e")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body).unwrap();
        let gz = gz.finish().unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&body).unwrap();
        let bz = bz.finish().unwrap();
        let zs = zstd::encode_all(&body[..], 3).unwrap();
        for data in [gz, bz, zs] {
            let w = work();
            let ctx = BuildContext::from_tar(&data[..], "", w.path(), None).unwrap();
            // Only `Dockerfile` falls back to the lower-case name.
            assert_eq!(ctx.dockerfile_path, "dockerfile");
            assert_eq!(ctx.dockerfile, "FROM x\n");
            assert_eq!(std::fs::read(ctx.root.join("d/e")).unwrap(), b"e");
        }
    }

    #[test]
    fn xz_tar() {
        // xz magic detection; a real xz stream is made by the xz tool when present.
        let body = tar_of(&[("Dockerfile", b"FROM x\n")]);
        let Ok(mut child) = std::process::Command::new("xz")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("skipping: xz not installed");
            return;
        };
        child.stdin.take().unwrap().write_all(&body).unwrap();
        let out = child.wait_with_output().unwrap();
        let w = work();
        let ctx = BuildContext::from_tar(&out.stdout[..], "", w.path(), None).unwrap();
        assert_eq!(ctx.dockerfile, "FROM x\n");
    }

    #[test]
    fn bare_dockerfile_body() {
        let w = work();
        let ctx =
            BuildContext::from_tar(&b"FROM busybox\nRUN true\n"[..], "", w.path(), None).unwrap();
        assert_eq!(ctx.dockerfile, "FROM busybox\nRUN true\n");
        assert_eq!(ctx.dockerfile_path, "Dockerfile");
        assert_eq!(std::fs::read_dir(&ctx.root).unwrap().count(), 0);
        // Compressed too.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"FROM a\n").unwrap();
        let gz = gz.finish().unwrap();
        let ctx = BuildContext::from_tar(&gz[..], "", w.path(), None).unwrap();
        assert_eq!(ctx.dockerfile, "FROM a\n");
        let ctx = BuildContext::from_dockerfile_text("FROM b\n", w.path()).unwrap();
        assert_eq!(ctx.dockerfile, "FROM b\n");
        let e = BuildContext::from_dockerfile_text("", w.path()).unwrap_err();
        assert_eq!(e.message(), "the Dockerfile (Dockerfile) cannot be empty");
    }

    #[test]
    fn dockerfile_parameter_and_missing() {
        let w = work();
        let body = tar_of(&[("sub/Dockerfile.dev", b"FROM dev\n"), ("x", b"x")]);
        let ctx = BuildContext::from_tar(&body[..], "sub/Dockerfile.dev", w.path(), None).unwrap();
        assert_eq!(ctx.dockerfile, "FROM dev\n");
        assert_eq!(ctx.dockerfile_path, "sub/Dockerfile.dev");
        let ctx2 = BuildContext::from_tar(&body[..], "./sub/../sub/Dockerfile.dev", w.path(), None)
            .unwrap();
        assert_eq!(ctx2.dockerfile_path, "sub/Dockerfile.dev");
        drop((ctx, ctx2));
        let e = BuildContext::from_tar(&body[..], "", w.path(), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
        assert_eq!(
            e.message(),
            "Cannot locate specified Dockerfile: Dockerfile"
        );
        let e = BuildContext::from_tar(&body[..], "nope", w.path(), None).unwrap_err();
        assert_eq!(e.message(), "Cannot locate specified Dockerfile: nope");
        let e = BuildContext::from_tar(&body[..], "../x", w.path(), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
        // Every failed context is cleaned up.
        assert_eq!(std::fs::read_dir(w.path()).unwrap().count(), 0);
    }

    #[test]
    fn escaping_entries_refused() {
        let w = work();
        let outside = w.path().join("escaped");
        for name in ["../escaped", "/../escaped"] {
            let body = raw_tar(name, b"bad");
            let r = BuildContext::from_tar(&body[..], "", w.path(), None);
            assert!(r.is_err(), "{name} should fail");
            assert!(!outside.exists(), "{name} escaped the context");
        }
        // A symlink pointing out, then a file through it.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", w.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "link/escaped", &b"bad"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(7);
        h.set_mode(0o644);
        b.append_data(&mut h, "Dockerfile", &b"FROM x\n"[..])
            .unwrap();
        let body = b.into_inner().unwrap();
        let _ = BuildContext::from_tar(&body[..], "", w.path(), None);
        assert!(!outside.exists(), "symlink escape");
    }

    #[test]
    fn dockerignore_removes_dockerfile_and_itself() {
        let w = work();
        let body = tar_of(&[
            ("Dockerfile", b"FROM x\n"),
            (".dockerignore", b"Dockerfile\n.dockerignore\n"),
            ("keep", b"k"),
        ]);
        let ctx = BuildContext::from_tar(&body[..], "", w.path(), None).unwrap();
        assert_eq!(ctx.dockerfile, "FROM x\n");
        assert!(!ctx.root.join("Dockerfile").exists());
        assert!(!ctx.root.join(".dockerignore").exists());
        assert!(ctx.root.join("keep").exists());
        // Not excluded: both stay.
        let body = tar_of(&[("Dockerfile", b"FROM x\n"), (".dockerignore", b"*.log\n")]);
        let ctx = BuildContext::from_tar(&body[..], "", w.path(), None).unwrap();
        assert!(ctx.root.join("Dockerfile").exists());
        assert!(ctx.root.join(".dockerignore").exists());
        // Excluded through its directory, re-included file stays.
        let body = tar_of(&[
            ("sub/Dockerfile", b"FROM y\n"),
            ("sub/keep", b"k"),
            (".dockerignore", b"sub\n!sub/keep\n"),
        ]);
        let ctx = BuildContext::from_tar(&body[..], "sub/Dockerfile", w.path(), None).unwrap();
        assert_eq!(ctx.dockerfile, "FROM y\n");
        assert!(!ctx.root.join("sub/Dockerfile").exists());
        assert!(ctx.root.join("sub/keep").exists());
        assert!(ctx.root.join(".dockerignore").exists());
    }

    #[test]
    fn out_of_context_dockerfile_from_cli() {
        // docker/cli AddDockerfileToBuildContext: `.dockerfile.<random>` plus a `.dockerignore`
        // (".dockerignore" when there was none) listing it.
        let w = work();
        let name = ".dockerfile.0123456789abcdefghij";
        let ignore = format!(".dockerignore\n{name}\n");
        let body = tar_of(&[
            ("app.txt", b"a"),
            (name, b"FROM outside\n"),
            (".dockerignore", ignore.as_bytes()),
        ]);
        let ctx = BuildContext::from_tar(&body[..], name, w.path(), None).unwrap();
        assert_eq!(ctx.dockerfile, "FROM outside\n");
        assert_eq!(ctx.dockerfile_path, name);
        assert!(!ctx.root.join(name).exists());
        assert!(!ctx.root.join(".dockerignore").exists());
        assert!(ctx.root.join("app.txt").exists());
    }

    #[test]
    fn unterminated_tar_from_cli() {
        // As the docker CLI sends it with `-f` outside the context: the last entry unpadded,
        // no end blocks.
        let w = work();
        let name = ".dockerfile.abc";
        let mut body = tar_of(&[("keep", b"k"), (".dockerignore", b".dockerfile.abc\n")]);
        body.truncate(body.len() - 1024);
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(7);
        h.set_mode(0o600);
        h.set_cksum();
        body.extend_from_slice(h.as_bytes());
        body.extend_from_slice(b"FROM x\n");
        let ctx = BuildContext::from_tar(&body[..], name, w.path(), None).unwrap();
        assert_eq!(ctx.dockerfile, "FROM x\n");
        assert!(!ctx.root.join(name).exists());
        assert!(ctx.root.join("keep").exists());
    }

    #[test]
    fn git_url_parsing() {
        assert!(is_git_url("git://h/r"));
        assert!(is_git_url("git@github.com:a/b.git"));
        assert!(is_git_url("github.com/a/b"));
        assert!(is_git_url("https://h/a/b.git#main:sub"));
        assert!(!is_git_url("https://h/a/b.tar"));
        assert_eq!(
            parse_git_url("github.com/a/b#v1:dir").unwrap(),
            ("https://github.com/a/b".into(), "v1".into(), "dir".into())
        );
        assert_eq!(
            parse_git_url("git@h:a/b.git#:sub").unwrap(),
            ("git@h:a/b.git".into(), "".into(), "sub".into())
        );
        assert!(parse_git_url("https://h/a.git#-x").is_err());
    }

    fn has_git() -> bool {
        std::process::Command::new("git")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn run_git(dir: &Path, args: &[&str]) {
        let st = std::process::Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", "/dev/null")
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    }

    #[tokio::test]
    async fn remote_git_file_url() {
        if !has_git() {
            eprintln!("skipping: git not installed");
            return;
        }
        let src = work();
        let s = src.path();
        std::fs::write(s.join("Dockerfile"), "FROM top\n").unwrap();
        std::fs::create_dir(s.join("sub")).unwrap();
        std::fs::write(s.join("sub/Dockerfile"), "FROM sub\n").unwrap();
        std::fs::write(s.join("sub/f"), "f").unwrap();
        run_git(s, &["init", "-q"]);
        run_git(s, &["add", "."]);
        run_git(s, &["commit", "-q", "-m", "x"]);
        run_git(s, &["tag", "v1"]);
        let url = format!("file://{}", s.display());
        let w = work();
        let ctx = BuildContext::from_remote(&url, "", w.path()).await.unwrap();
        assert_eq!(ctx.dockerfile, "FROM top\n");
        assert!(ctx.root.join("sub/f").exists());
        let ctx2 = BuildContext::from_remote(&format!("{url}#v1:sub"), "", w.path())
            .await
            .unwrap();
        assert_eq!(ctx2.dockerfile, "FROM sub\n");
        assert!(ctx2.root.join("f").exists());
        let e = BuildContext::from_remote(&format!("{url}#nosuchref"), "", w.path())
            .await
            .unwrap_err();
        assert!(e.message().starts_with("error fetching"), "{}", e.message());
        drop((ctx, ctx2));
        assert_eq!(std::fs::read_dir(w.path()).unwrap().count(), 0);
    }

    fn serve_once(body: Vec<u8>, status: &'static str) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body).unwrap();
        });
        format!("http://{addr}/ctx")
    }

    #[tokio::test]
    async fn remote_http_tar_and_dockerfile() {
        let w = work();
        let body = tar_of(&[("Dockerfile", b"FROM http\n"), ("f", b"f")]);
        let url = serve_once(body, "200 OK");
        let ctx = BuildContext::from_remote(&url, "", w.path()).await.unwrap();
        assert_eq!(ctx.dockerfile, "FROM http\n");
        assert!(ctx.root.join("f").exists());
        let url = serve_once(b"FROM plain\n".to_vec(), "200 OK");
        let ctx2 = BuildContext::from_remote(&url, "", w.path()).await.unwrap();
        assert_eq!(ctx2.dockerfile, "FROM plain\n");
        let url = serve_once(b"gone".to_vec(), "404 Not Found");
        let e = BuildContext::from_remote(&url, "", w.path())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("404"), "{}", e.message());
        let e = BuildContext::from_remote("ftp://x/y", "", w.path())
            .await
            .unwrap_err();
        assert_eq!(
            e.message(),
            "remoteURL (ftp://x/y) could not be recognized as URL"
        );
        drop((ctx, ctx2));
        assert_eq!(std::fs::read_dir(w.path()).unwrap().count(), 0);
    }
}
