//! Host-side helpers around a container that do not need libcontainer: network namespace
//! files, the OOM counter, process identity and the overlay root filesystem.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), which tells a pid
/// apart from a later process that reuses it.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    proc_state(pid).map(|(_, start)| start)
}

/// The state letter (field 3: `R`, `S`, `Z`…) and the start time (field 22) of `pid` from
/// `/proc/<pid>/stat`.
pub fn proc_state(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat_fields(&stat)?;
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Make this process's command line read `argv[0] args…`, in the memory its arguments came
/// in (as `setproctitle` does): what `ps` and `/proc/<pid>/cmdline` show. The new line is
/// padded with NULs to the old one's length; one longer than that is not set. A spare
/// supervisor names the container it took this way.
pub fn set_cmdline(args: &[&str]) {
    let Some((start, end)) = fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| arg_area(&s))
    else {
        return;
    };
    let Ok(old) = fs::read("/proc/self/cmdline") else {
        return;
    };
    let argv0 = old.split(|b| *b == 0).next().unwrap_or_default();
    if let Some(line) = cmdline_bytes(argv0, args, end.saturating_sub(start)) {
        use std::os::unix::fs::FileExt;
        // The argument area is ordinary memory of this process; /proc/self/mem writes it
        // without any unsafe pointer.
        if let Ok(mem) = fs::OpenOptions::new().write(true).open("/proc/self/mem") {
            let _ = mem.write_all_at(&line, start);
        }
    }
}

/// The start and end of the argument area (fields 48 and 49 of `/proc/self/stat`).
fn arg_area(stat: &str) -> Option<(u64, u64)> {
    let mut fields = stat_fields(stat)?.skip(45);
    let start = fields.next()?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    (end > start).then_some((start, end))
}

/// `argv0` and `args`, each ended by a NUL, padded with NULs to `len`; `None` if longer.
fn cmdline_bytes(argv0: &[u8], args: &[&str], len: u64) -> Option<Vec<u8>> {
    let mut line = argv0.to_vec();
    line.push(0);
    for a in args {
        line.extend_from_slice(a.as_bytes());
        line.push(0);
    }
    let len = usize::try_from(len).ok()?;
    if line.len() > len {
        return None;
    }
    line.resize(len, 0);
    Some(line)
}

/// The fields of a `/proc/<pid>/stat` line from field 3 (the state) on. The command name
/// before them may contain spaces and parentheses: they start past the last ')'.
fn stat_fields(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat.get(stat.rfind(')')? + 2..)?.split_whitespace())
}

/// Whether `pid` has ended: no such process, or a zombie its parent has not reaped yet.
pub fn process_ended(pid: i32) -> bool {
    pid <= 0 || proc_state(pid).is_none_or(|(state, _)| state == 'Z' || state == 'X')
}

/// `PF_EXITING` among a task's flags (field 9 of `/proc/<pid>/stat`): it is inside the
/// kernel's `do_exit`.
const PF_EXITING: u64 = 0x4;

/// Whether `pid` has ended or is ending: [`process_ended`], or inside the kernel's exit, or
/// with a SIGKILL pending. An init killed while other processes of its pid namespace remain
/// waits inside its exit (`zap_pid_ns_processes`) until their parents reap them, which under
/// load can take longer than any fixed grace.
pub fn process_ending(pid: i32) -> bool {
    if pid <= 0 {
        return true;
    }
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let Some((state, flags)) = stat_state_flags(&stat) else {
        return true;
    };
    if state == 'Z' || state == 'X' || flags & PF_EXITING != 0 {
        return true;
    }
    fs::read_to_string(format!("/proc/{pid}/status")).map_or(true, |s| sigkill_pending(&s))
}

/// The state letter (field 3) and the flags (field 9) of a `/proc/<pid>/stat` line.
fn stat_state_flags(stat: &str) -> Option<(char, u64)> {
    let mut fields = stat_fields(stat)?;
    let state = fields.next()?.chars().next()?;
    let flags = fields.nth(5)?.parse().ok()?;
    Some((state, flags))
}

/// Whether a `/proc/<pid>/status` text shows a SIGKILL pending, for the thread (`SigPnd`) or
/// the process (`ShdPnd`).
fn sigkill_pending(status: &str) -> bool {
    let bit = 1u64 << (libc::SIGKILL - 1);
    status.lines().any(|line| {
        let mask = line
            .strip_prefix("SigPnd:")
            .or_else(|| line.strip_prefix("ShdPnd:"));
        mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & bit != 0)
    })
}

/// Whether `pid` is still the process that started at `start_time`.
pub fn same_process(pid: i32, start_time: u64) -> bool {
    pid > 0 && proc_start_time(pid) == Some(start_time)
}

/// How many processes of a cgroup the kernel's OOM killer has killed, from its `oom_file`
/// (v2 `memory.events`, v1 `memory.oom_control`: both have an `oom_kill` line), or 0 when
/// unknown.
pub fn oom_kills(oom_file: &Path) -> u64 {
    let Ok(text) = fs::read_to_string(oom_file) else {
        return 0;
    };
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Mount an overlay of `lowers` (top first) with `upper`/`work` on `merged`.
///
/// When `upper` and `work` sit in one directory (a container's layer directory), they are
/// named relative to it, and the mount is made from a thread of its own whose working
/// directory that is: `/proc/self/mountinfo` shows the options as given, and libcontainer
/// reads every running container's line several times per container start (docs/benchmarks.md),
/// so each line is about 230 bytes instead of 430.
pub fn mount_overlay(
    lowers: &[std::path::PathBuf],
    upper: &Path,
    work: &Path,
    merged: &Path,
) -> io::Result<()> {
    // (directory, upper's name, work's name) when both sit in one directory.
    let relative = match (upper.parent(), upper.file_name(), work.file_name()) {
        (Some(dir), Some(u), Some(w))
            if !dir.as_os_str().is_empty()
                && work.parent() == Some(dir)
                && merged.is_absolute()
                && lowers.iter().all(|l| l.is_absolute()) =>
        {
            Some((dir, Path::new(u), Path::new(w)))
        }
        _ => None,
    };
    let (u, w) = relative.map_or((upper, work), |(_, u, w)| (u, w));
    let data = format!(
        "{},upperdir={},workdir={}",
        lowerdir(lowers),
        u.display(),
        w.display()
    );
    match relative {
        Some((dir, ..)) => in_dir(dir, || overlay(&data, merged, MsFlags::empty())),
        None => overlay(&data, merged, MsFlags::empty()),
    }
}

/// `f` on a thread of its own whose working directory is `dir` (`unshare(CLONE_FS)`: the
/// process's own working directory never changes).
fn in_dir<T: Send>(dir: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(io::Error::from)?;
            std::env::set_current_dir(dir)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("mount thread panicked")))
    })
}

/// Mount a read-only overlay of `lowers` (top first, at least two) on `merged`: an image's
/// file system as it is (the builder's view of a stage or a parent image).
pub fn mount_overlay_ro(lowers: &[std::path::PathBuf], merged: &Path) -> io::Result<()> {
    overlay(&lowerdir(lowers), merged, MsFlags::MS_RDONLY)
}

fn lowerdir(lowers: &[std::path::PathBuf]) -> String {
    let lower = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    format!("lowerdir={lower}")
}

fn overlay(data: &str, merged: &Path, flags: MsFlags) -> io::Result<()> {
    if data.len() >= 4096 {
        return Err(io::Error::other(format!(
            "overlay mount options are {} bytes, more than a page: too many layers",
            data.len()
        )));
    }
    mount(Some("overlay"), merged, Some("overlay"), flags, Some(data)).map_err(io::Error::from)
}

/// Write `sysctls` (`net.…` names) in the network namespace bound at `netns`, from a thread of
/// its own that joins it (never a tokio worker) and ends with the write; a sysctl the kernel
/// does not have is skipped.
pub fn set_netns_sysctls(netns: &Path, sysctls: &[(&str, &str)]) -> io::Result<()> {
    let ns = fs::File::open(netns)?;
    let sysctls: Vec<(String, String)> = sysctls
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    std::thread::scope(|s| {
        s.spawn(move || -> io::Result<()> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)?;
            for (k, v) in sysctls {
                let path = Path::new("/proc/sys").join(k.replace('.', "/"));
                match fs::write(&path, &v) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io::Error::new(e.kind(), format!("{k}: {e}"))),
                }
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("sysctl thread panicked")))
    })
}

// <linux/mount.h>
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn c_path(p: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("path contains NUL"))
}

/// A detached copy of the mount at `path` (`open_tree(OPEN_TREE_CLONE)`), with the mounts
/// below it when `recursive`.
pub fn clone_mount(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    let flags = OPEN_TREE_CLONE
        | if recursive { AT_RECURSIVE } else { 0 }
        | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree with a NUL-terminated path; the returned fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open_tree returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Attach the detached mount tree `tree` (from [`clone_mount`]) at `target`, an existing
/// directory or file (`move_mount`).
pub fn attach_mount(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let t = c_path(target)?;
    let empty = c"";
    // SAFETY: move_mount of a detached tree by fd onto a NUL-terminated path.
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

/// Unmount `path` if it is a mount point (lazily: a process may still hold it).
pub fn unmount(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Whether `path` is a mount point ([`crate::util::fs::is_mount_point`]).
pub fn is_mounted(path: &Path) -> bool {
    crate::util::fs::is_mount_point(path)
}

/// Give back memory a long-lived process no longer needs: free heap pages, the resident pages
/// of its read-only file mappings (code and constants: the kernel reads them again from the
/// file when they are next used), and the dead part of the main thread's stack. The supervisor
/// calls this once its container runs, so that libcontainer's code, used only to create the
/// container, stops counting against every container.
///
/// A read-only mapping may hold private (copied-on-write) pages, such as the global offset
/// table the dynamic loader filled in: the file does not hold what they hold, so those pages
/// stay, and only the others are dropped (`/proc/self/pagemap` tells them apart). Writable
/// mappings are left alone: a page written between the look and the drop would be lost.
///
/// Never inlined: the stack below a local of its own frame, past a margin, holds no live
/// frame (a caller's locals would be above it).
#[inline(never)]
pub fn shed_memory() {
    crate::util::mem::trim_heap();
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let on_main_thread = nix::unistd::gettid() == nix::unistd::getpid();
    for m in parse_smaps(&smaps) {
        match m.kind {
            MappingKind::ReadOnlyFile if m.anonymous_kb == 0 => drop_pages(m.start, m.end),
            MappingKind::ReadOnlyFile => drop_file_pages(m.start, m.end),
            MappingKind::MainStack if on_main_thread => {
                let here = 0u8;
                let sp = std::hint::black_box(&here) as *const u8 as usize;
                if let Some((start, end)) = dead_stack(m.start, sp) {
                    drop_pages(start, end);
                }
            }
            _ => {}
        }
    }
}

const PAGE: usize = 4096;

/// How far below a local of `shed_memory` the stack stays untouched: the rest of its frame
/// (a few hundred bytes) and those of the calls made while the pages below are dropped
/// (`madvise` and the code around it) live there.
const STACK_MARGIN: usize = 16 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MappingKind {
    /// A private, read-only mapping of a file (`r--p` or `r-xp`).
    ReadOnlyFile,
    /// `[stack]`: the main thread's stack.
    MainStack,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    kind: MappingKind,
    /// The `Anonymous:` counter: pages of this mapping that are private copies.
    anonymous_kb: u64,
}

/// The mappings of an smaps text (`/proc/<pid>/smaps`): each is a header line, then its
/// counters. A mapping whose counters cannot be read counts as holding private pages.
fn parse_smaps(smaps: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let mut f = line.split_whitespace();
            let range = f.next().unwrap_or("");
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            let (start, end) = range
                .split_once('-')
                .and_then(|(a, b)| {
                    Some((
                        usize::from_str_radix(a, 16).ok()?,
                        usize::from_str_radix(b, 16).ok()?,
                    ))
                })
                .unwrap_or((0, 0));
            let kind = if path.starts_with('/') && (perms == "r-xp" || perms == "r--p") {
                MappingKind::ReadOnlyFile
            } else if path == "[stack]" && perms == "rw-p" {
                MappingKind::MainStack
            } else {
                MappingKind::Other
            };
            mappings.push(Mapping {
                start,
                end,
                kind: if start < end {
                    kind
                } else {
                    MappingKind::Other
                },
                anonymous_kb: u64::MAX,
            });
        } else if let Some(v) = line.strip_prefix("Anonymous:") {
            if let Some(m) = mappings.last_mut() {
                m.anonymous_kb = v
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(u64::MAX);
            }
        }
    }
    mappings
}

/// Drop the resident pages of [start, end).
fn drop_pages(start: usize, end: usize) {
    // SAFETY: every caller passes either pages of a private, read-only file mapping that hold
    // the file's content (faulted in again, unchanged, on the next use), or pages of the main
    // thread's stack below its live frames (zero-filled on the next use, and unused until
    // written again).
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
    }
}

/// Drop the pages of a read-only file mapping [start, end) that hold the file's content,
/// keeping its private copies.
fn drop_file_pages(start: usize, end: usize) {
    use std::os::unix::fs::FileExt;
    let Ok(pagemap) = fs::File::open("/proc/self/pagemap") else {
        return;
    };
    let pages = (end - start) / PAGE;
    let mut raw = vec![0u8; pages * 8];
    if pagemap
        .read_exact_at(&mut raw, (start / PAGE * 8) as u64)
        .is_err()
    {
        return;
    }
    let entries: Vec<u64> = raw
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    for (s, e) in file_page_runs(start, &entries) {
        drop_pages(s, e);
    }
}

/// The runs of pages, from `start`, that may be dropped given their pagemap entries
/// (`Documentation/admin-guide/mm/pagemap.rst`): all but the private copies, which are pages
/// present and not file pages (bit 63 set, bit 61 clear) or swapped out (bit 62).
fn file_page_runs(start: usize, entries: &[u64]) -> Vec<(usize, usize)> {
    const PRESENT: u64 = 1 << 63;
    const SWAPPED: u64 = 1 << 62;
    const FILE: u64 = 1 << 61;
    let private = |e: u64| e & SWAPPED != 0 || (e & PRESENT != 0 && e & FILE == 0);
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, &e) in entries.iter().enumerate() {
        if private(e) {
            continue;
        }
        let page = start + i * PAGE;
        match runs.last_mut() {
            Some(run) if run.1 == page => run.1 = page + PAGE,
            _ => runs.push((page, page + PAGE)),
        }
    }
    runs
}

/// The part of the main thread's stack [stack_start, …) that holds no live frame, given a
/// stack pointer: every page from more than [`STACK_MARGIN`] below it down to the bottom.
fn dead_stack(stack_start: usize, sp: usize) -> Option<(usize, usize)> {
    let end = (sp & !(PAGE - 1)).checked_sub(STACK_MARGIN)?;
    (end > stack_start).then_some((stack_start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_has_ended_when_it_has_exited_or_is_a_zombie() {
        assert!(!process_ended(std::process::id() as i32));
        assert!(process_ended(0));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Exited, not yet reaped: a zombie.
        for _ in 0..200 {
            if process_ended(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(process_ended(pid));
        child.wait().unwrap();
        assert!(process_ended(pid));
    }

    #[test]
    fn a_process_is_ending_inside_its_exit_or_with_a_sigkill_pending() {
        assert!(!process_ending(std::process::id() as i32));
        assert!(process_ending(0));
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0";
        assert_eq!(stat_state_flags(stat), Some(('S', 4194564)));
        assert_ne!(4194564 & PF_EXITING, 0);
        assert_eq!(stat_state_flags("42 (x) R 1 42"), None);
        let status = |sig: &str, shd: &str| {
            format!("Name:\tsh\nSigPnd:\t{sig}\nShdPnd:\t{shd}\nSigBlk:\t0000000000000100\n")
        };
        assert!(!sigkill_pending(&status(
            "0000000000000000",
            "0000000000000000"
        )));
        assert!(sigkill_pending(&status(
            "0000000000000000",
            "0000000000000100"
        )));
        assert!(sigkill_pending(&status(
            "0000000000000102",
            "0000000000000000"
        )));
        assert!(!sigkill_pending(&status(
            "0000000000000002",
            "0000000000004000"
        )));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        assert!(process_ending(child.id() as i32));
    }

    /// The state an exec racing a kill leaves: the container's init, killed, waits inside its
    /// exit for a process that joined its pid namespace from outside (setns, fork) until that
    /// process's parent reaps it. It is neither gone nor a zombie then, but it is ending.
    #[test]
    fn a_killed_init_waiting_for_its_namespace_is_ending() {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: a pid namespace needs root");
            return;
        }
        let Ok(mut holder) = std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "sleep", "1000"])
            .stderr(std::process::Stdio::null())
            .spawn()
        else {
            eprintln!("skipped: no unshare");
            return;
        };
        let children = format!("/proc/{0}/task/{0}/children", holder.id());
        let mut init = 0;
        for _ in 0..400 {
            let text = fs::read_to_string(&children).unwrap_or_default();
            if let Some(pid) = text.split_whitespace().next() {
                // The forked child execs `sleep` after unshare's own setup.
                let pid: i32 = pid.parse().unwrap();
                if fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() == "sleep\n"
                {
                    init = pid;
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(init > 0, "no init under unshare");
        // Join its pid namespace from a thread of our own (the setns changes only that
        // thread's children) and fork a process into it that only waits.
        let ns = fs::File::open(format!("/proc/{init}/ns/pid")).unwrap();
        let joined = std::thread::spawn(move || {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWPID).unwrap();
            // SAFETY: the child calls only async-signal-safe functions (pause, _exit).
            match unsafe { nix::unistd::fork() }.unwrap() {
                // SAFETY: pause and _exit take no pointers and are async-signal-safe.
                nix::unistd::ForkResult::Child => unsafe {
                    libc::pause();
                    libc::_exit(0)
                },
                nix::unistd::ForkResult::Parent { child } => child,
            }
        })
        .join()
        .unwrap();
        assert!(!process_ending(init));
        kill(Pid::from_raw(init), Signal::SIGKILL).unwrap();
        // The joined process dies with the namespace and stays a zombie of ours; the init
        // waits for it inside its exit.
        for _ in 0..400 {
            if process_ended(joined.as_raw()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(process_ended(joined.as_raw()));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !process_ended(init),
            "the init ended before its namespace emptied"
        );
        assert!(process_ending(init));
        nix::sys::wait::waitpid(joined, None).unwrap();
        holder.wait().unwrap();
        assert!(process_ended(init));
    }

    #[test]
    fn shedding_code_pages_keeps_the_process_working() {
        let rss = || {
            fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find(|l| l.starts_with("RssFile"))
                .unwrap()
                .to_string()
        };
        eprintln!("before {}", rss());
        shed_memory();
        eprintln!("after {}", rss());
        // Code runs again after its pages were dropped.
        assert_eq!(format!("{}", 6 * 7), "42");
        assert!(proc_start_time(std::process::id() as i32).is_some());
    }

    #[test]
    fn a_containers_overlay_names_its_upper_and_work_relative_to_their_directory() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting an overlay needs root");
            return;
        }
        let base = std::env::temp_dir().join(format!("berth-ovl-{}", std::process::id()));
        let layer = base.join("layer");
        for d in ["low", "layer/diff", "layer/work", "layer/merged"] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        fs::write(base.join("low/from-lower"), "l").unwrap();
        let cwd = std::env::current_dir().unwrap();
        let merged = layer.join("merged");
        mount_overlay(
            &[base.join("low")],
            &layer.join("diff"),
            &layer.join("work"),
            &merged,
        )
        .unwrap();
        let line = fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(&*merged.to_string_lossy()))
            .map(str::to_string)
            .unwrap_or_default();
        let wrote = fs::write(merged.join("written"), "w").is_ok();
        let seen = fs::read_to_string(merged.join("from-lower")).unwrap_or_default();
        let landed = layer.join("diff/written").exists();
        unmount(&merged).unwrap();
        let _ = fs::remove_dir_all(&base);
        assert!(line.contains(",upperdir=diff,workdir=work"), "{line}");
        assert_eq!(seen, "l");
        assert!(wrote && landed, "a write lands in the upper directory");
        // The process's working directory is untouched.
        assert_eq!(std::env::current_dir().unwrap(), cwd);
    }

    #[test]
    fn a_command_line_is_rewritten_in_place_within_its_old_length() {
        let b = cmdline_bytes(b"/usr/bin/berthd", &["__supervise", "/run/c/ab"], 40).unwrap();
        assert_eq!(b.len(), 40);
        assert!(b.starts_with(b"/usr/bin/berthd\0__supervise\0/run/c/ab\0"));
        assert!(b[38..].iter().all(|c| *c == 0));
        assert_eq!(
            cmdline_bytes(b"/usr/bin/berthd", &["__supervise", "/run/c/ab"], 37),
            None
        );
        // Fields 48 and 49 of a real stat line: the argument area.
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (start, end) = arg_area(&stat).unwrap();
        let cmdline = std::fs::read("/proc/self/cmdline").unwrap();
        assert_eq!((end - start) as usize, cmdline.len());
    }

    #[test]
    fn smaps_mappings_are_classified() {
        let smaps = "\
00200000-0055f000 r--p 00000000 fe:00 12 /usr/bin/berthd
Rss:                 128 kB
Anonymous:             0 kB
016c4000-0173a000 r--p 014c2000 fe:00 12 /usr/bin/berthd
Anonymous:             8 kB
0173a000-01740000 rw-p 01538000 fe:00 12 /usr/bin/berthd
Anonymous:            12 kB
13780000-13796000 rw-p 00000000 00:00 0                                  [heap]
Anonymous:            84 kB
7ffc2dd8a000-7ffc2ddab000 rw-p 00000000 00:00 0                          [stack]
Anonymous:           104 kB
7f5148fd7000-7f514912d000 r-xp 00028000 fe:00 34 /usr/lib/x86_64-linux-gnu/libc.so.6
";
        let m = parse_smaps(smaps);
        let got: Vec<_> = m
            .iter()
            .map(|m| (m.start, m.kind, m.anonymous_kb))
            .collect();
        assert_eq!(
            got,
            vec![
                (0x200000, MappingKind::ReadOnlyFile, 0),
                (0x16c4000, MappingKind::ReadOnlyFile, 8),
                (0x173a000, MappingKind::Other, 12),
                (0x13780000, MappingKind::Other, 84),
                (0x7ffc2dd8a000, MappingKind::MainStack, 104),
                // No counters read: counted as holding private pages.
                (0x7f5148fd7000, MappingKind::ReadOnlyFile, u64::MAX),
            ]
        );
        assert_eq!(m[0].end, 0x55f000);
    }

    #[test]
    fn only_pages_holding_the_files_content_are_dropped() {
        const PRESENT: u64 = 1 << 63;
        const SWAPPED: u64 = 1 << 62;
        const FILE: u64 = 1 << 61;
        let entries = [
            PRESENT | FILE, // the file's page
            0,              // not resident
            PRESENT,        // a private copy (the loader wrote it)
            PRESENT | FILE,
            SWAPPED, // a private copy, swapped out
            PRESENT | FILE,
            PRESENT | FILE,
        ];
        assert_eq!(
            file_page_runs(0x1000, &entries),
            vec![(0x1000, 0x3000), (0x4000, 0x5000), (0x6000, 0x8000)]
        );
        assert_eq!(file_page_runs(0x1000, &[PRESENT]), vec![]);
    }

    #[test]
    fn the_stack_is_dropped_only_below_the_live_frames() {
        let bottom = 0x7ff0_0000_0000;
        let sp = bottom + (200 << 10) + 0x123;
        assert_eq!(
            dead_stack(bottom, sp),
            Some((bottom, bottom + (200 << 10) - STACK_MARGIN))
        );
        // Less than the margin in use below the stack pointer: nothing.
        assert_eq!(dead_stack(bottom, bottom + STACK_MARGIN), None);
        assert_eq!(dead_stack(bottom, 100), None);
    }

    #[test]
    fn shedding_a_private_copy_keeps_its_content() {
        // A private, read-only mapping of a file with one page changed after mapping (as the
        // dynamic loader changes relocated data): the changed page survives the shedding.
        let dir = std::env::temp_dir().join(format!("berth-shed-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        fs::write(&path, vec![7u8; 4 * PAGE]).unwrap();
        let file = fs::File::open(&path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh private mapping of a file this test owns, unmapped at the end.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let bytes = base as *mut u8;
        // SAFETY: within the mapping; then made read-only, as RELRO is.
        unsafe {
            *bytes.add(PAGE) = 42;
            let _ = std::ptr::read_volatile(bytes.add(2 * PAGE));
            assert_eq!(libc::mprotect(base, 4 * PAGE, libc::PROT_READ), 0);
        }
        shed_memory();
        // SAFETY: within the mapping, which is still mapped.
        unsafe {
            assert_eq!(*bytes.add(PAGE), 42);
            assert_eq!(*bytes.add(PAGE + 1), 7);
            assert_eq!(*bytes.add(2 * PAGE), 7);
            libc::munmap(base, 4 * PAGE);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let t = proc_start_time(me).expect("start time");
        assert!(same_process(me, t));
        assert!(!same_process(me, t + 1));
    }
}
