//! Two directories whose mounts a container's create does not see.
//!
//! Every running container holds two mounts on the host: its overlay root filesystem
//! (`<data-root>/containers/<id>/layer/merged`) and its network namespace file
//! (`<exec-root>/netns/<id>`). libcontainer's create reads `/proc/self/mountinfo` whole about
//! ten times (libcgroups' v1 lookups of the controllers a host has not mounted, in two
//! processes, and the init's rootfs preparation), so a start slows as containers accumulate:
//! at 500 running, the create took 51 ms against 14 ms with none (docs/benchmarks.md).
//!
//! berthd makes each of the two directories a private bind mount of itself ([`own`], as `ip
//! netns` does for `/run/netns` and dockerd's overlay2 driver once did for its home), so that
//! every mount made below it hangs off that one mount. A supervisor that starts a container
//! while many run creates it in a copy of the host's mount namespace ([`Shed::enter`]): both
//! directories are detached from the copy with one `umount2` each (their own directories show
//! through, the same inodes, only the mounts below are gone), the mounts its own container needs
//! (its root filesystem, its network namespace file) are cloned back onto the same paths, and
//! the supervisor returns to the host's namespace once the container is created
//! ([`Shed::leave`]). The container's own mount namespace is made from the copy, so it no
//! longer starts as a copy of every other container's mounts either.
//!
//! Detaching costs an RCU grace period per `umount2` (0.2–6 ms measured), so it is done only
//! above [`SHED_ABOVE`] running containers, where the reads it saves cost more.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::host::{attach_mount, clone_mount};
use crate::util::fs::{ensure_dir, is_mount_point, MountEntry};

/// The number of running containers from which a start sheds the others' mounts.
pub const SHED_ABOVE: usize = 100;

/// Make `dir` (created with `mode` if missing) a private bind mount of itself, and return its
/// canonical path. `table` is the mount table ([`crate::util::fs::mount_table`], read once
/// for several calls: it is long on a host with many containers). `None` when `dir` stays as
/// it is:
/// - it is a mount point of another shape (the host's own mount, or a shared one);
/// - it is not a mount point but has mounts below it (left by a berthd from before this
///   existed, still in use): a bind over it would hide them.
///
/// A self-bind made by an earlier start is kept as it is (live restore); it stays mounted
/// when berthd stops, so that the containers' mounts below it keep working.
pub fn own(dir: &Path, mode: u32, table: &[MountEntry]) -> io::Result<Option<PathBuf>> {
    ensure_dir(dir, mode)?;
    let dir = fs::canonicalize(dir)?;
    if let Some(e) = table.iter().rev().find(|e| e.mount_point == dir) {
        return Ok(is_private_self_bind(table, e).then_some(dir));
    }
    if table.iter().any(|e| e.mount_point.starts_with(&dir)) {
        return Ok(None);
    }
    mount(
        Some(&dir),
        &dir,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("bind {} on itself: {e}", dir.display()),
        )
    })?;
    if let Err(e) = mount(
        None::<&str>,
        &dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        let _ = umount2(&dir, MntFlags::MNT_DETACH);
        return Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("make {} private: {e}", dir.display()),
        ));
    }
    Ok(Some(dir))
}

/// `e` shows the directory it is mounted on (the same file system and directory as the mount
/// below it has there), and propagates nothing.
fn is_private_self_bind(table: &[MountEntry], e: &MountEntry) -> bool {
    let Some(parent) = table.iter().find(|p| p.id == e.parent) else {
        return false;
    };
    let Ok(rel) = e.mount_point.strip_prefix(&parent.mount_point) else {
        return false;
    };
    e.private && e.dev == parent.dev && e.root == parent.root.join(rel)
}

/// A supervisor in a copy of the host's mount namespace without the subtrees' mounts.
#[derive(Debug)]
pub struct Shed {
    host: File,
    cwd: PathBuf,
    /// The paths whose mounts were cloned back into the copy.
    pub kept: Vec<PathBuf>,
}

impl Shed {
    /// Enter a copy of the mount namespace from which every mount below `subtrees` (each a
    /// private self-bind made by [`own`]) is gone but those at `keep` (paths under them that
    /// are mount points: the container's root filesystem, its namespace files, the sources of
    /// its mounts; other paths are ignored). The process must be single-threaded
    /// (`unshare(CLONE_NEWNS)` and `setns` refuse otherwise). On an error the process is back
    /// in the host's namespace, nothing on the host changed, and the caller goes on without.
    pub fn enter(subtrees: &[PathBuf], keep: &[PathBuf]) -> Result<Shed, String> {
        let subtrees: Vec<(&PathBuf, (u64, u64))> = subtrees
            .iter()
            .filter(|s| is_mount_point(s))
            .filter_map(|s| Some((s, dev_ino(s)?)))
            .collect();
        if subtrees.is_empty() {
            return Err("no subtree is mounted".to_string());
        }
        let kept = mounts_to_keep(keep, subtrees.iter().map(|(s, _)| s.as_path()));
        // An unmount below a shared mount propagates to its peers, the host's mounts among
        // them: the mounts the subtrees sit on become slaves in the copy first.
        let parents: Vec<PathBuf> = subtrees
            .iter()
            .filter_map(|(s, _)| mount_root_above(s))
            .collect();
        let host = File::open("/proc/self/ns/mnt")
            .map_err(|e| format!("open the mount namespace: {e}"))?;
        let cwd = std::env::current_dir().map_err(|e| format!("working directory: {e}"))?;
        nix::sched::unshare(CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("copy the mount namespace: {e}"))?;
        let shed = Shed { host, cwd, kept };
        match shed.shed(&subtrees, &parents) {
            Ok(()) => Ok(shed),
            Err(e) => Err(match shed.leave() {
                Ok(()) => e,
                Err(back) => format!("{e}; {back}"),
            }),
        }
    }

    fn shed(&self, subtrees: &[(&PathBuf, (u64, u64))], parents: &[PathBuf]) -> Result<(), String> {
        for p in parents {
            mount(
                None::<&str>,
                p,
                None::<&str>,
                MsFlags::MS_SLAVE,
                None::<&str>,
            )
            .map_err(|e| format!("make {} a slave: {e}", p.display()))?;
        }
        let clones = self
            .kept
            .iter()
            .map(|k| {
                clone_mount(k, true).map_err(|e| format!("clone the mount at {}: {e}", k.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (s, id) in subtrees {
            umount2(s.as_path(), MntFlags::MNT_DETACH)
                .map_err(|e| format!("detach {}: {e}", s.display()))?;
            if dev_ino(s) != Some(*id) {
                return Err(format!("{} is not a bind mount of itself", s.display()));
            }
        }
        for (k, tree) in self.kept.iter().zip(clones) {
            attach_mount(&tree, k).map_err(|e| format!("mount {} again: {e}", k.display()))?;
        }
        Ok(())
    }

    /// Back to the host's mount namespace (and working directory); the copy goes with its
    /// last process.
    pub fn leave(self) -> Result<(), String> {
        nix::sched::setns(&self.host, CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("return to the host's mount namespace: {e}"))?;
        std::env::set_current_dir(&self.cwd)
            .map_err(|e| format!("enter {}: {e}", self.cwd.display()))
    }
}

/// The mounts below one of `subtrees` that hold a path of `keep` (the path itself if it is a
/// mount point, else the nearest mount above it below the subtree: a file inside another
/// container's root), by their canonical paths, without those below another one (a recursive
/// clone takes them along).
fn mounts_to_keep<'a>(
    keep: &[PathBuf],
    subtrees: impl Iterator<Item = &'a Path> + Clone,
) -> Vec<PathBuf> {
    let mut kept: Vec<PathBuf> = keep
        .iter()
        .filter_map(|k| fs::canonicalize(k).ok())
        .filter_map(|k| {
            let s = subtrees.clone().find(|s| k.starts_with(s) && k != *s)?;
            k.ancestors()
                .take_while(|a| *a != s)
                .find(|a| is_mount_point(a))
                .map(Path::to_path_buf)
        })
        .collect();
    kept.sort();
    kept.dedup();
    let outer: Vec<PathBuf> = kept.clone();
    kept.retain(|k| !outer.iter().any(|o| o != k && k.starts_with(o)));
    kept
}

/// The mount point of the mount `path` sits on: its nearest ancestor that is a mount root.
fn mount_root_above(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .find(|a| is_mount_point(a))
        .map(Path::to_path_buf)
}

fn dev_ino(p: &Path) -> Option<(u64, u64)> {
    fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::fs::mount_table;

    fn entry(id: u32, parent: u32, dev: &str, root: &str, at: &str, private: bool) -> MountEntry {
        MountEntry {
            id,
            parent,
            dev: dev.to_string(),
            root: PathBuf::from(root),
            mount_point: PathBuf::from(at),
            private,
        }
    }

    #[test]
    fn a_self_bind_is_told_from_other_mounts() {
        let table = vec![
            entry(1, 0, "8:1", "/", "/", false),
            entry(2, 1, "0:30", "/", "/run", false),
            entry(
                3,
                1,
                "8:1",
                "/var/lib/b/containers",
                "/var/lib/b/containers",
                true,
            ),
            entry(4, 2, "0:30", "/b/netns", "/run/b/netns", true),
            entry(5, 2, "0:30", "/b/netns", "/run/b/netns", false),
            entry(6, 1, "0:40", "/", "/srv/c", true),
            entry(7, 1, "8:1", "/elsewhere", "/srv/d", true),
        ];
        assert!(is_private_self_bind(&table, &table[2]));
        // The directory of `/run`'s file system shows at `/run/b/netns`.
        assert!(is_private_self_bind(&table, &table[3]));
        assert!(!is_private_self_bind(&table, &table[4]), "shared");
        assert!(
            !is_private_self_bind(&table, &table[5]),
            "another file system"
        );
        assert!(
            !is_private_self_bind(&table, &table[6]),
            "another directory"
        );
    }

    #[test]
    fn kept_mounts_are_those_below_a_subtree_and_outermost() {
        // `/proc` is a mount point here; `/proc/self/status` is a file inside it.
        let keep = vec![
            PathBuf::from("/proc"),
            PathBuf::from("/proc"),
            PathBuf::from("/proc/self/.."),
            PathBuf::from("/proc/self/status"),
            PathBuf::from("/"),
            PathBuf::from("/no/such/path"),
        ];
        let kept = mounts_to_keep(&keep, [Path::new("/")].into_iter());
        assert_eq!(kept, vec![PathBuf::from("/proc")]);
        let kept = mounts_to_keep(&keep, [Path::new("/sys")].into_iter());
        assert!(kept.is_empty(), "{kept:?}");
    }

    #[test]
    fn own_binds_a_directory_on_itself_once() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to mount");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("containers");
        let got = own(&dir, 0o710, &mount_table()).unwrap().expect("owned");
        assert_eq!(got, fs::canonicalize(&dir).unwrap());
        assert!(is_mount_point(&dir));
        let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o710);
        // Again: kept, not stacked.
        assert_eq!(own(&dir, 0o710, &mount_table()).unwrap(), Some(got.clone()));
        let n = mount_table()
            .iter()
            .filter(|e| e.mount_point == got)
            .count();
        assert_eq!(n, 1);
        // A directory with a mount below it and none of its own is left alone.
        let other = tmp.path().join("old");
        fs::create_dir_all(other.join("m")).unwrap();
        mount(
            Some("tmpfs"),
            &other.join("m"),
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        assert_eq!(own(&other, 0o700, &mount_table()).unwrap(), None);
        assert!(!is_mount_point(&other));
        umount2(&other.join("m"), MntFlags::MNT_DETACH).unwrap();
        umount2(&got, MntFlags::MNT_DETACH).unwrap();
    }
}
