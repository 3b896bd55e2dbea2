//! Network namespaces, kept as bind-mounted files (`<exec-root>/netns/<id>`), created and
//! entered only on short-lived dedicated OS threads: `setns`/`unshare` change the calling
//! thread, which must never be a tokio worker.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::NetworkError;

/// Create a new network namespace with `lo` up and bind-mount it on `path` (an empty file is
/// created first). Runs on its own OS thread, which unshares and then exits.
pub fn create(path: &Path) -> Result<(), NetworkError> {
    let shown = path.display().to_string();
    let fail = |e: &dyn std::fmt::Display| {
        NetworkError::internal(format!("create network namespace {shown}: {e}"))
    };
    if path.exists() {
        // A leftover of an earlier run: never stack a second bind mount on it.
        let _ = umount2(path, MntFlags::MNT_DETACH);
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| fail(&e))?;
    let target = path.to_path_buf();
    let result = std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            loopback_up()?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(io::Error::from)
        })
        .map_err(|e| fail(&e))
        .and_then(|thread| {
            thread
                .join()
                .map_err(|_| fail(&"namespace thread panicked"))?
                .map_err(|e| fail(&e))
        });
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Unmount and remove a namespace file; a missing one is fine.
pub fn remove(path: &Path) -> Result<(), NetworkError> {
    // EINVAL (not a mount point) and ENOENT are both fine here.
    let _ = umount2(path, MntFlags::MNT_DETACH);
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(NetworkError::io(
            format!("remove network namespace {}", path.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// Run `f` on a new OS thread that has joined the namespace at `path`, and return its result.
/// Sockets made inside `f` stay in that namespace after the thread ends.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let shown = path.display().to_string();
    let fail = |e: &dyn std::fmt::Display| {
        NetworkError::internal(format!("enter network namespace {shown}: {e}"))
    };
    // Opened here, so that a missing namespace is reported before a thread is made.
    let file = File::open(path).map_err(|e| fail(&e))?;
    let thread = std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || -> io::Result<T> {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            drop(file);
            Ok(f())
        })
        .map_err(|e| fail(&e))?;
    thread
        .join()
        .map_err(|_| fail(&"namespace thread panicked"))?
        .map_err(|e| fail(&e))
}

/// Bring `lo` up in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    let sock = inet_socket()?;
    let mut ifr = ifreq("lo")?;
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the ifreq we own, whose name is
    // NUL-terminated; `ifru_flags` is the union member both requests use.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The flags (`IFF_*`) of a link of the calling thread's namespace.
#[cfg(test)]
fn link_flags(name: &str) -> io::Result<libc::c_int> {
    let sock = inet_socket()?;
    let mut ifr = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS writes into the ifreq we own, whose name is NUL-terminated;
    // `ifru_flags` is the member it fills.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(libc::c_int::from(ifr.ifr_ifru.ifru_flags) & 0xffff)
    }
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain socket(2) call without pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data, for which all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() || name.as_bytes().contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    Ok(ifr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `f` on a thread in a throwaway network namespace; false when not root.
    pub(crate) fn in_throwaway_netns<F: FnOnce() + Send + 'static>(f: F) -> bool {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return false;
        }
        let thread = std::thread::spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare a throwaway network namespace");
            f();
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
        true
    }

    fn ns_inode(path: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).expect("stat namespace").ino()
    }

    #[test]
    fn create_run_in_remove() {
        in_throwaway_netns(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("ns1");
            let outer = ns_inode("/proc/thread-self/ns/net");

            create(&path).expect("create");
            let inside = run_in(&path, || {
                (
                    ns_inode("/proc/thread-self/ns/net"),
                    link_flags("lo").expect("lo flags"),
                )
            })
            .expect("run_in");
            assert_ne!(inside.0, outer, "run_in must enter another namespace");
            assert_eq!(ns_inode(path.to_str().expect("utf-8")), inside.0);
            assert_ne!(inside.1 & libc::IFF_UP, 0, "lo must be up");
            // The caller's thread never changes namespace.
            assert_eq!(ns_inode("/proc/thread-self/ns/net"), outer);

            // A second run_in sees the same namespace.
            let again = run_in(&path, || ns_inode("/proc/thread-self/ns/net")).expect("run_in");
            assert_eq!(again, inside.0);

            remove(&path).expect("remove");
            assert!(!path.exists());
            remove(&path).expect("removing a missing namespace is fine");

            let err = run_in(&path, || ()).expect_err("missing namespace");
            assert!(
                err.message().starts_with("enter network namespace "),
                "{err}"
            );
        });
    }

    #[test]
    fn create_fails_cleanly_without_parent() {
        in_throwaway_netns(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("missing").join("ns");
            let err = create(&path).expect_err("no parent directory");
            assert!(
                err.message().starts_with("create network namespace "),
                "{err}"
            );
            assert!(!path.exists());
        });
    }

    #[test]
    fn create_over_a_leftover_does_not_stack_mounts() {
        in_throwaway_netns(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("ns");
            create(&path).expect("create");
            let first = run_in(&path, || ns_inode("/proc/thread-self/ns/net")).expect("run_in");
            create(&path).expect("create again");
            let second = run_in(&path, || ns_inode("/proc/thread-self/ns/net")).expect("run_in");
            assert_ne!(first, second);
            remove(&path).expect("remove");
            // Only one mount was there: the file is gone, not uncovered.
            assert!(!path.exists());
        });
    }
}
