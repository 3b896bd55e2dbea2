//! Paths resolved inside a root directory, as if it were `/`.
//!
//! Every lookup goes through `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: `..`
//! stops at the root, absolute symlinks are resolved from the root, and no symlink or `..` can
//! lead outside it, whatever the tree holds (an image layer, a container's rootfs). The kernel
//! returns `EAGAIN` when a concurrent rename races a `..` lookup; [`resolve`] retries.
//!
//! - [`resolve`]: any `openat2` open of a path in a root, the descriptor owned.
//! - [`resolve_beneath`]: the same below a base, where leading out is an error.
//! - [`open_dir`] / [`open_file`]: a directory (`O_PATH`) or a file (read-only) in a root.
//! - [`clean`] / [`clean_bytes`]: Go's `path.Clean`, lexical only.
//! - [`components`]: a path as components below the root, refusing one that climbs above it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};

/// How often [`resolve`] retries an `openat2` that failed with `EAGAIN` or `EINTR`.
pub const RETRIES: usize = 32;

/// Open `rel` (relative or absolute, both taken from the root) inside the directory `root`
/// with `flags` (`O_CLOEXEC` is added), every component resolved inside the root. An empty
/// `rel` is the root itself.
pub fn resolve(root: impl AsFd, rel: &[u8], flags: OFlag) -> Result<OwnedFd, Errno> {
    open_how(root, rel, flags, ResolveFlag::RESOLVE_IN_ROOT)
}

/// Open the relative path `rel` below the directory `base` with `flags` (`O_CLOEXEC` is
/// added). Unlike [`resolve`], a symlink or `..` that would lead out of `base` (an absolute
/// link among them) is an error, `EXDEV`, not re-rooted: a volume's `Subpath`.
pub fn resolve_beneath(base: impl AsFd, rel: &[u8], flags: OFlag) -> Result<OwnedFd, Errno> {
    open_how(base, rel, flags, ResolveFlag::RESOLVE_BENEATH)
}

fn open_how(
    root: impl AsFd,
    rel: &[u8],
    flags: OFlag,
    scope: ResolveFlag,
) -> Result<OwnedFd, Errno> {
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(scope | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let root = root.as_fd();
    let mut last = Errno::EAGAIN;
    for _ in 0..RETRIES {
        match openat2(root.as_raw_fd(), rel, how) {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(e @ (Errno::EAGAIN | Errno::EINTR)) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Open the directory `rel` inside `root` as an `O_PATH` descriptor (for `*at` calls).
pub fn open_dir(root: impl AsFd, rel: &[u8]) -> Result<OwnedFd, Errno> {
    resolve(root, rel, OFlag::O_PATH | OFlag::O_DIRECTORY)
}

/// Open the file `rel` for reading, resolving every component inside the directory `root`.
pub fn open_file(root: &Path, rel: &str) -> io::Result<File> {
    let dir = File::open(root)?;
    let fd = resolve(&dir, rel.as_bytes(), OFlag::O_RDONLY).map_err(io::Error::from)?;
    Ok(File::from(fd))
}

/// Go's `path.Clean` on bytes: the shortest lexically equal path (`.` for an empty one). A
/// rooted path never climbs above `/`; a relative one keeps its leading `..`.
pub fn clean_bytes(p: &[u8]) -> Vec<u8> {
    if p.is_empty() {
        return b".".to_vec();
    }
    let rooted = p.starts_with(b"/");
    let mut out: Vec<&[u8]> = Vec::new();
    for comp in p.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.last().is_some_and(|l| *l != b"..") {
                    out.pop();
                } else if !rooted {
                    out.push(b"..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join(&b'/');
    if rooted {
        let mut r = b"/".to_vec();
        r.extend_from_slice(&joined);
        r
    } else if joined.is_empty() {
        b".".to_vec()
    } else {
        joined
    }
}

/// Go's `path.Clean`, e.g. `/a/./b/../c/` → `/a/c`, `a/../..` → `..`, `` → `.`.
pub fn clean(p: &str) -> String {
    // Only whole components are dropped at `/` boundaries, so the result stays UTF-8.
    String::from_utf8_lossy(&clean_bytes(p.as_bytes())).into_owned()
}

/// Why [`components`] refused a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentsError {
    /// A `..` climbs above the root (`a/../..`, `/../x`).
    Escapes,
    /// A component contains a NUL byte.
    Nul,
}

impl ComponentsError {
    /// A lower-case description.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentsError::Escapes => "path escapes the root",
            ComponentsError::Nul => "name contains a nul byte",
        }
    }
}

/// `p` (a leading `/` ignored) as cleaned components below the root; empty for the root
/// itself. Unlike [`clean`] of a rooted path, a `..` above the root is refused, not dropped.
pub fn components(p: &[u8]) -> Result<Vec<CString>, ComponentsError> {
    let mut start = 0;
    while p.get(start) == Some(&b'/') {
        start += 1;
    }
    let cleaned = clean_bytes(&p[start..]);
    if cleaned == b"." {
        return Ok(Vec::new());
    }
    if cleaned == b".." || cleaned.starts_with(b"../") {
        return Err(ComponentsError::Escapes);
    }
    cleaned
        .split(|b| *b == b'/')
        .map(|c| CString::new(c).map_err(|_| ComponentsError::Nul))
        .collect()
}

/// Components joined with `/` (the root for none).
pub fn join(comps: &[CString]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Read;

    #[test]
    fn clean_is_go_path_clean() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/b", "a/b"),
            ("/a/./b/../c/", "/a/c"),
            ("//a//b//", "/a/b"),
            ("/..", "/"),
            ("/../a", "/a"),
            ("..", ".."),
            ("a/../..", ".."),
            ("../../a", "../../a"),
            ("a/..", "."),
            ("./", "."),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn components_refuse_escapes() {
        let names = |p: &[u8]| -> Vec<String> {
            components(p)
                .unwrap()
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(b"/a/./b//c/"), ["a", "b", "c"]);
        assert_eq!(names(b"a/../b"), ["b"]);
        assert!(names(b"./").is_empty());
        assert_eq!(components(b"a/../.."), Err(ComponentsError::Escapes));
        assert_eq!(components(b"/../x"), Err(ComponentsError::Escapes));
        assert_eq!(components(b"a\0b"), Err(ComponentsError::Nul));
        assert_eq!(join(&components(b"/x/y").unwrap()), b"x/y");
    }

    fn read(root: &Path, rel: &str) -> String {
        let mut s = String::new();
        open_file(root, rel)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn open_file_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(dir.path().join("secret"), b"outside").unwrap();
        fs::write(root.join("secret"), b"inside").unwrap();
        // Absolute symlinks resolve from the root.
        std::os::unix::fs::symlink("/secret", root.join("abs")).unwrap();
        // Relative symlinks that climb out stop at the root.
        std::os::unix::fs::symlink("../../secret", root.join("etc/rel")).unwrap();
        std::os::unix::fs::symlink("/../secret", root.join("escape")).unwrap();
        assert_eq!(read(&root, "secret"), "inside");
        assert_eq!(read(&root, "/secret"), "inside");
        assert_eq!(read(&root, "../secret"), "inside");
        assert_eq!(read(&root, "etc/../../secret"), "inside");
        assert_eq!(read(&root, "abs"), "inside");
        assert_eq!(read(&root, "etc/rel"), "inside");
        assert_eq!(read(&root, "escape"), "inside");
        let e = open_file(&root, "missing").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn open_dir_follows_symlinks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("real/sub")).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../..", root.join("real/up")).unwrap();
        let r = File::open(&root).unwrap();
        assert!(open_dir(&r, b"").is_ok());
        assert!(open_dir(&r, b"link/sub").is_ok());
        // `real/up` is the root, not the tempdir: its `sub` is missing.
        assert_eq!(open_dir(&r, b"real/up/sub").unwrap_err(), Errno::ENOENT);
        assert!(open_dir(&r, b"real/up/real/sub").is_ok());
        fs::write(root.join("file"), b"").unwrap();
        assert_eq!(open_dir(&r, b"file").unwrap_err(), Errno::ENOTDIR);
    }
}
