//! Host-side helpers around a container that do not need libcontainer: network namespace
//! files, the OOM counter, process identity and the overlay root filesystem.

use std::fs;
use std::io;
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
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether `pid` has ended: no such process, or a zombie its parent has not reaped yet.
pub fn process_ended(pid: i32) -> bool {
    pid <= 0 || proc_state(pid).is_none_or(|(state, _)| state == 'Z' || state == 'X')
}

/// Whether `pid` is still the process that started at `start_time`.
pub fn same_process(pid: i32, start_time: u64) -> bool {
    pid > 0 && proc_start_time(pid) == Some(start_time)
}

/// How many processes of the cgroup the kernel's OOM killer has killed (v2 `memory.events`,
/// v1 `memory.oom_control`), or 0 when unknown.
pub fn oom_kills(cgroup_path: &str) -> u64 {
    let rel = cgroup_path.trim_start_matches('/');
    let candidates = match crate::runtime::cgroup_version() {
        crate::runtime::CgroupVersion::V2 => {
            vec![Path::new("/sys/fs/cgroup").join(rel).join("memory.events")]
        }
        crate::runtime::CgroupVersion::V1 => {
            match crate::runtime::v1_mount_point(libcgroups::v1::ControllerType::Memory) {
                Some(mnt) => vec![mnt.join(rel).join("memory.oom_control")],
                None => Vec::new(),
            }
        }
    };
    for file in candidates {
        if let Ok(text) = fs::read_to_string(&file) {
            for line in text.lines() {
                if let Some(n) = line.strip_prefix("oom_kill ") {
                    return n.trim().parse().unwrap_or(0);
                }
            }
        }
    }
    0
}

/// Mount an overlay of `lowers` (top first) with `upper`/`work` on `merged`.
pub fn mount_overlay(
    lowers: &[std::path::PathBuf],
    upper: &Path,
    work: &Path,
    merged: &Path,
) -> io::Result<()> {
    let data = format!(
        "{},upperdir={},workdir={}",
        lowerdir(lowers),
        upper.display(),
        work.display()
    );
    overlay(&data, merged, MsFlags::empty())
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

/// Unmount `path` if it is a mount point (lazily: a process may still hold it).
pub fn unmount(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Whether `path` is a mount point (its device differs from its parent's, or mountinfo says so).
/// Every mount point (as mountinfo spells it), for many `is_mounted` questions at once.
pub fn mount_points() -> std::collections::HashSet<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect()
}

pub fn is_mounted(path: &Path) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.display().to_string();
    text.lines()
        .any(|l| l.split_whitespace().nth(4).is_some_and(|m| m == want))
}

/// Give back memory a long-lived process no longer needs: free heap pages, and the resident
/// pages of its read-only file mappings (code and constants: the kernel reads them again from
/// the file when they are next used). The supervisor calls this once its container runs, so
/// that libcontainer's code, used only to create the container, stops counting against every
/// container. A mapping with any private (copied-on-write) page, such as relocated data, is
/// left alone: the file does not hold what it holds.
pub fn shed_memory() {
    crate::util::mem::trim_heap();
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    // Each mapping: its header line, then its counters; a mapping qualifies when it is
    // read-only, file-backed and holds no private (copied-on-write) pages.
    let mut mappings: Vec<(String, String, u64)> = Vec::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let mut f = line.split_whitespace();
            let range = f.next().unwrap_or("").to_string();
            let perms = f.next().unwrap_or("").to_string();
            let path = f.nth(3).unwrap_or("");
            if path.starts_with('/') && (perms == "r-xp" || perms == "r--p") {
                mappings.push((range, perms, 0));
            } else {
                mappings.push((String::new(), String::new(), 0));
            }
        } else if let Some(v) = line.strip_prefix("Anonymous:") {
            if let Some(m) = mappings.last_mut() {
                m.2 = v
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(u64::MAX);
            }
        }
    }
    for (range, _perms, anonymous) in mappings {
        if range.is_empty() || anonymous != 0 {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: [start, end) is a read-only, file-backed private mapping of this process
        // without a single private (written) page: MADV_DONTNEED drops its resident pages,
        // which are faulted in again, unchanged, from the file on the next use.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
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
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let t = proc_start_time(me).expect("start time");
        assert!(same_process(me, t));
        assert!(!same_process(me, t + 1));
    }
}
