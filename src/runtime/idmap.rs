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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

pub use crate::util::ids::IdMap;

impl IdMap {
    /// `/proc/<pid>/uid_map` text.
    fn uid_map(&self) -> String {
        format!("0 {} {}\n", self.uid, self.uid_size)
    }

    fn gid_map(&self) -> String {
        format!("0 {} {}\n", self.gid, self.gid_size)
    }
}

/// A user namespace carrying `map`, held open by its descriptor: a child cloned into a new
/// user namespace, its maps written, its namespace opened, the child killed.
pub fn userns_fd(map: &IdMap) -> io::Result<OwnedFd> {
    let mut stack = vec![0u8; 64 * 1024];
    let child = Box::new(|| -> isize {
        loop {
            // SAFETY: pause() only waits for a signal; the child is killed by its parent.
            unsafe {
                libc::pause();
            }
        }
    });
    // SAFETY: the child runs only `child`, which calls pause() (async-signal-safe) in a loop on
    // its own stack, and touches no memory shared with other threads of this process.
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

/// A detached clone of the mount tree at `path`, idmapped through `userns`.
fn idmapped_clone(path: &Path, userns: &OwnedFd) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("path contains NUL"))?;
    // SAFETY: open_tree with a valid C string; the returned fd is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new descriptor this function now owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
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
    let t = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("path contains NUL"))?;
    let empty = c"";
    // SAFETY: move_mount of the detached tree onto a path given as a C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
    with_fs_ids(map.uid, map.gid, || {
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
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
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
        let m = IdMap {
            uid: 100000,
            uid_size: 65536,
            gid: 200000,
            gid_size: 10,
        };
        assert_eq!(m.uid_map(), "0 100000 65536\n");
        assert_eq!(m.host_uid(0), Some(100000));
        assert_eq!(m.host_gid(10), None);
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
        let map = IdMap {
            uid: 300000,
            uid_size: 65536,
            gid: 300000,
            gid_size: 65536,
        };
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
