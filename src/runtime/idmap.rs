//! User-namespace remapping (`--userns-remap`) on the host side: the id ranges, a user
//! namespace that carries them, and idmapped mounts (`mount_setattr(MOUNT_ATTR_IDMAP)`,
//! Linux ≥ 5.12; overlayfs over idmapped layers since 5.19).
//!
//! The container's root file system stays as it is on disk: every lower layer, and the
//! directory holding the container's `diff` and `work`, is cloned as a detached idmapped
//! mount, and the overlay is mounted over those (`lowerdir=/proc/self/fd/N`, the detached
//! mounts closed right after). overlayfs does its own work in the upper directory (copy-up,
//! whiteouts, the work directory) with the credentials of whoever mounted it; the mount is
//! therefore made from a short-lived thread whose file-system ids are the remapped root's,
//! so that those writes map back to uid/gid 0 on disk too. Image layers are never copied nor
//! chowned, a container's `diff` holds the ids the container sees, and `commit`, `diff`
//! and `export` read it as for any container.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use crate::util::ids::IdMap;

impl IdMap {
    /// `/proc/<pid>/uid_map` text.
    fn uid_map(&self) -> String {
        map_text(&self.uids)
    }

    fn gid_map(&self) -> String {
        map_text(&self.gids)
    }
}

/// `container host size` lines (one write: the kernel takes a map once).
fn map_text(ranges: &[crate::util::ids::IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
        .collect()
}

/// A user namespace carrying `map`, held open by its descriptor: a child cloned into a new
/// user namespace, its maps written, its namespace opened, the child killed.
pub fn userns_fd(map: &IdMap) -> io::Result<OwnedFd> {
    let mut stack = vec![0u8; 64 * 1024];
    let parent = std::process::id() as libc::pid_t;
    let child = Box::new(move || -> isize {
        // SAFETY: close_range, prctl, getppid and pause are plain system calls
        // (async-signal-safe). The child closes its copies of the parent's descriptors (the
        // data root's and the PID file's locks among them: a child left behind by a daemon
        // killed right now must not hold them) and dies with the parent.
        unsafe {
            libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                return 0;
            }
            loop {
                // Killed by its parent once the namespace is open.
                libc::pause();
            }
        }
    });
    // SAFETY: the child runs only `child`, which makes async-signal-safe system calls on its
    // own stack and touches no memory shared with other threads of this process.
    let pid = unsafe {
        nix::sched::clone(
            child,
            &mut stack,
            nix::sched::CloneFlags::CLONE_NEWUSER,
            Some(libc::SIGCHLD),
        )
    }
    .map_err(io::Error::from)?;
    let result = (|| {
        std::fs::write(format!("/proc/{pid}/uid_map"), map.uid_map())?;
        std::fs::write(format!("/proc/{pid}/gid_map"), map.gid_map())?;
        let f = File::open(format!("/proc/{pid}/ns/user"))?;
        Ok(OwnedFd::from(f))
    })();
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    result
}

/// The names libcontainer looks for on `PATH` to write a map of more than one range (it writes
/// a single range itself). shadow's tools would check `/etc/subuid` against the caller, root,
/// which has no ranges; berth's own stand-ins (this binary under those names) write the map
/// directly, as root may.
pub const MAP_HELPERS: [&str; 2] = ["newuidmap", "newgidmap"];

/// For a supervisor about to create a container whose user namespace has maps of more than
/// one range: `dir` gets `newuidmap` and `newgidmap` as links to this binary, and becomes the
/// process's `PATH`. Call it only while the process has one thread (the supervisor's setup).
pub fn provide_map_helpers(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for name in MAP_HELPERS {
        let link = dir.join(name);
        match std::os::unix::fs::symlink("/proc/self/exe", &link) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    // Only the map helpers are looked up on this PATH: the container's own processes get the
    // spec's environment, not the supervisor's.
    std::env::set_var("PATH", dir);
    Ok(())
}

/// `newuidmap <pid> <container-id> <host-id> <count>…` (or `newgidmap`) as this binary: write
/// the ranges to `/proc/<pid>/uid_map` (`gid_map`) in one write. Returns the exit code.
pub fn map_helper_main(name: &str, args: &[String]) -> i32 {
    let file = if name == "newgidmap" {
        "gid_map"
    } else {
        "uid_map"
    };
    let parsed = (|| -> Result<(i32, String), String> {
        let (pid, rest) = args
            .split_first()
            .ok_or_else(|| format!("usage: {name} <pid> <id> <host id> <count>…"))?;
        let pid: i32 = pid
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid pid {pid:?}"))?;
        if rest.is_empty() || rest.len() % 3 != 0 || rest.len() / 3 > crate::util::ids::MAX_RANGES {
            return Err(format!(
                "expected 1 to {} triples of ids",
                crate::util::ids::MAX_RANGES
            ));
        }
        let mut text = String::new();
        for t in rest.chunks(3) {
            let n: Vec<u32> = t
                .iter()
                .map(|v| v.parse().map_err(|_| format!("invalid id {v:?}")))
                .collect::<Result<_, _>>()?;
            text.push_str(&format!("{} {} {}\n", n[0], n[1], n[2]));
        }
        Ok((pid, text))
    })();
    let (pid, text) = match parsed {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{name}: {e}");
            return 1;
        }
    };
    let path = format!("/proc/{pid}/{file}");
    match std::fs::write(&path, text) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: write {path}: {e}");
            1
        }
    }
}

/// A detached clone of the mount tree at `path`, idmapped through `userns`.
fn idmapped_clone(path: &Path, userns: &OwnedFd) -> io::Result<OwnedFd> {
    let tree = super::host::clone_mount(path, false)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: mount_setattr on the detached tree with a properly sized mount_attr.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("idmapped mount of {}: {e}", path.display()),
        ));
    }
    Ok(tree)
}

/// An idmapped bind mount of `source` on `target` (an existing directory or file): what a
/// volume or bind mount becomes for a remapped container.
pub fn bind_idmapped(source: &Path, target: &Path, map: &IdMap) -> io::Result<()> {
    let ns = userns_fd(map)?;
    let tree = idmapped_clone(source, &ns)?;
    super::host::attach_mount(&tree, target)
}

/// Mount the overlay of `lowers` (top first) with `upper` and `work` (both in `layer_dir`) on
/// `merged`, every layer seen through `map`.
pub fn mount_overlay_idmapped(
    lowers: &[PathBuf],
    layer_dir: &Path,
    upper: &str,
    work: &str,
    merged: &Path,
    map: &IdMap,
) -> io::Result<()> {
    let ns = userns_fd(map)?;
    let mut trees = Vec::with_capacity(lowers.len() + 1);
    for l in lowers {
        trees.push(idmapped_clone(l, &ns)?);
    }
    let rw = idmapped_clone(layer_dir, &ns)?;
    let lower = trees
        .iter()
        .map(|t| format!("/proc/self/fd/{}", t.as_raw_fd()))
        .collect::<Vec<_>>()
        .join(":");
    let rw_path = format!("/proc/self/fd/{}", rw.as_raw_fd());
    let data = format!("lowerdir={lower},upperdir={rw_path}/{upper},workdir={rw_path}/{work}");
    if data.len() >= 4096 {
        return Err(io::Error::other(format!(
            "overlay mount options are {} bytes, more than a page: too many layers",
            data.len()
        )));
    }
    let (uid, gid) = map.root();
    with_fs_ids(uid, gid, || {
        nix::mount::mount(
            Some("overlay"),
            merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(io::Error::from)
    })?
}

/// Run `f` on a thread of its own whose file-system ids are `uid`/`gid` (every capability
/// kept): what it creates through an idmapped mount of that mapping lands with the container's
/// ids. The ids die with the thread (setfsuid and capset are per thread).
pub fn with_fs_ids<T: Send>(uid: u32, gid: u32, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(move || -> io::Result<T> {
            let mut header = CapHeader {
                version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
                pid: 0,
            };
            let mut caps = [CapData::default(); 2];
            // SAFETY: capget with a v3 header and room for the two data structs it fills.
            if unsafe { libc::syscall(libc::SYS_capget, &mut header, caps.as_mut_ptr()) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: setfsgid/setfsuid change this thread's file-system ids only.
            unsafe {
                libc::setfsgid(gid);
                libc::setfsuid(uid);
            }
            // Leaving fsuid 0 clears the file-system capabilities from the effective set:
            // restore it (they are still permitted).
            // SAFETY: capset of this thread with the set capget returned.
            if unsafe { libc::syscall(libc::SYS_capset, &mut header, caps.as_ptr()) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("thread with remapped ids panicked")))
    })
}

// <linux/mount.h>
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn maps_ids() {
        let m = IdMap::single(100000, 65536, 200000, 10);
        assert_eq!(m.uid_map(), "0 100000 65536\n");
        assert_eq!(m.host_uid(0), Some(100000));
        assert_eq!(m.host_gid(10), None);
        let two = IdMap::from_ranges(&[(300000, 5), (100000, 10)], &[(7, 1)]).unwrap();
        assert_eq!(two.uid_map(), "0 100000 10\n10 300000 5\n");
        assert_eq!(two.gid_map(), "0 7 1\n");
    }

    #[test]
    fn map_helper_refuses_bad_arguments() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(map_helper_main("newuidmap", &[]), 1);
        assert_eq!(
            map_helper_main("newuidmap", &args(&["0", "0", "1", "1"])),
            1
        );
        assert_eq!(map_helper_main("newuidmap", &args(&["1", "0", "1"])), 1);
        assert_eq!(
            map_helper_main("newgidmap", &args(&["1", "0", "x", "1"])),
            1
        );
    }

    #[test]
    fn map_helper_writes_every_range_of_a_new_user_namespace() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let mut stack = vec![0u8; 64 * 1024];
        // SAFETY: the child only calls pause() in a loop on its own stack; it is killed below.
        let pid = unsafe {
            nix::sched::clone(
                Box::new(|| loop {
                    libc::pause();
                }),
                &mut stack,
                nix::sched::CloneFlags::CLONE_NEWUSER,
                Some(libc::SIGCHLD),
            )
        }
        .unwrap();
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let p = pid.to_string();
        let uid = map_helper_main(
            "newuidmap",
            &args(&[&p, "0", "300000", "10", "10", "400000", "5"]),
        );
        let gid = map_helper_main("newgidmap", &args(&[&p, "0", "300000", "15"]));
        let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
        let gid_map = std::fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap();
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        assert_eq!((uid, gid), (0, 0));
        let lines = |t: &str| -> Vec<Vec<String>> {
            t.lines()
                .map(|l| l.split_whitespace().map(String::from).collect())
                .collect()
        };
        assert_eq!(
            lines(&uid_map),
            [["0", "300000", "10"], ["10", "400000", "5"]]
        );
        assert_eq!(lines(&gid_map), [["0", "300000", "15"]]);
    }

    #[test]
    fn overlay_over_idmapped_layers_writes_unshifted_ids() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let lower = d.path().join("lower");
        let layer = d.path().join("layer");
        let merged = d.path().join("merged");
        for p in [&lower, &layer.join("diff"), &layer.join("work"), &merged] {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(lower.join("f"), "x").unwrap();
        let map = IdMap::single(300000, 65536, 300000, 65536);
        mount_overlay_idmapped(
            std::slice::from_ref(&lower),
            &layer,
            "diff",
            "work",
            &merged,
            &map,
        )
        .unwrap();
        // The host sees the layer's root-owned file as the remapped root's.
        assert_eq!(std::fs::metadata(merged.join("f")).unwrap().uid(), 300000);
        // A write by the remapped root lands as uid 0 in the upper directory.
        let st = std::process::Command::new("setpriv")
            .args([
                "--reuid",
                "300000",
                "--regid",
                "300000",
                "--clear-groups",
                "sh",
                "-c",
            ])
            .arg(format!("echo y > {0}/g && rm {0}/f", merged.display()))
            .status();
        let ran = matches!(st, Ok(s) if s.success());
        crate::runtime::host::unmount(&merged).unwrap();
        if ran {
            assert_eq!(std::fs::metadata(layer.join("diff/g")).unwrap().uid(), 0);
            let wh = std::fs::metadata(layer.join("diff/f")).unwrap();
            assert_eq!(wh.uid(), 0);
        }
    }
}
