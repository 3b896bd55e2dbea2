//! The workload executor berth gives libcontainer: Go's `exec.LookPath` with runc's words, so
//! that a missing or non-executable command becomes Docker's 127 / 126, reported to the
//! supervisor on a pipe instead of being parsed out of libcontainer's error text.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::unistd::{faccessat, AccessFlags};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

/// What the executor reports when the command cannot run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecFailure {
    /// 127 (not found) or 126 (not executable).
    pub code: i32,
    pub message: String,
}

/// Runs in the container's init (after pivot_root and the user switch): validate looks the
/// command up, exec replaces the process. `report_fd` is the write end of a close-on-exec pipe
/// the supervisor reads to EOF.
#[derive(Clone)]
pub struct BerthExecutor {
    pub report_fd: RawFd,
    /// The container's seccomp filter when libcontainer does not load it: for `docker exec`
    /// (libcontainer's tenant path does not apply the profile) and for the init of a bundle
    /// whose profile was compiled in advance (`runtime/seccomp_cache.rs`). Loaded right before
    /// exec while the process still holds the capabilities listed in `drop_caps`, which are
    /// then given up (as runc orders it).
    pub seccomp: Option<Filter>,
    pub drop_caps: Vec<caps::Capability>,
    /// For `docker exec` in a container with its own user namespace (`--userns-remap`):
    /// libcontainer's tenant path does not join it, so the process is started as host root
    /// and the executor joins it itself before anything else (see [`UsernsJoin`]).
    pub userns: Option<UsernsJoin>,
    /// With a TTY, the size the client asked for (height, width): set on the terminal right
    /// before exec, as runc's init sets it, so that the process never sees it unset (the
    /// supervisor sets it on the master too, but only once libcontainer has handed it over).
    pub console_size: Option<[u16; 2]>,
}

/// The container's user namespace and the exec's real user (ids as seen inside it).
/// libcontainer runs the tenant as host root (uid 0, which owns the namespace and so may join
/// it); the executor then joins, switches to these ids, loads seccomp and sets the process's
/// capability sets, the order runc's setns path uses.
#[derive(Clone)]
pub struct UsernsJoin {
    /// `/proc/<init>/ns/user`, opened by the supervisor (inherited across the fork).
    pub fd: RawFd,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The host uid of the container's root: the owner given to an exec's terminal, which
    /// libcontainer opened as host root (unmapped: `nobody` inside) before the join.
    pub root_host_uid: Option<u32>,
}

/// A seccomp filter the executor loads.
#[derive(Clone)]
pub enum Filter {
    /// An OCI profile, compiled by libcontainer (libseccomp) in the process.
    Profile(oci_spec::runtime::LinuxSeccomp),
    /// A compiled BPF program (`runtime/seccomp_cache.rs`).
    Program(std::sync::Arc<[u8]>),
}

impl BerthExecutor {
    fn report(&self, failure: &ExecFailure) {
        if let Ok(mut line) = serde_json::to_vec(failure) {
            line.push(b'\n');
            // SAFETY: report_fd is a pipe the supervisor created for this container; writing a
            // few bytes to it cannot violate memory safety, and a failure only loses the report.
            unsafe {
                libc::write(self.report_fd, line.as_ptr().cast(), line.len());
            }
        }
    }
}

fn args_and_path(spec: &Spec) -> (Vec<String>, String) {
    let process = spec.process().as_ref();
    let args = process.and_then(|p| p.args().clone()).unwrap_or_default();
    let path = process
        .and_then(|p| p.env().as_ref())
        .and_then(|env| {
            env.iter()
                .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
        })
        .unwrap_or_default();
    (args, path)
}

/// Go's `exec.LookPath` as runc runs it: the resolved path, or the failure Docker reports.
pub fn look_path(cmd: &str, path_var: &str) -> Result<String, ExecFailure> {
    let fail = |code: i32, what: String| ExecFailure {
        code,
        message: format!("exec: {cmd:?}: {what}"),
    };
    if cmd.is_empty() {
        return Err(fail(127, "executable file not found in $PATH".into()));
    }
    if cmd.contains('/') {
        return match check_executable(cmd) {
            Ok(()) => Ok(cmd.to_string()),
            Err(e) => Err(fail(code_for(&e), describe(cmd, &e))),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(cmd);
        let candidate = candidate.to_string_lossy().into_owned();
        match check_executable(&candidate) {
            Ok(()) => return Ok(candidate),
            // Go keeps looking after ENOENT and after a permission failure.
            Err(_) => continue,
        }
    }
    Err(fail(127, "executable file not found in $PATH".into()))
}

fn check_executable(file: &str) -> Result<(), nix::errno::Errno> {
    let md = std::fs::metadata(file)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
    if md.is_dir() {
        return Err(nix::errno::Errno::EISDIR);
    }
    match faccessat(
        None,
        file,
        AccessFlags::X_OK,
        nix::fcntl::AtFlags::AT_EACCESS,
    ) {
        Ok(()) => Ok(()),
        Err(e) if e != nix::errno::Errno::ENOSYS && e != nix::errno::Errno::EPERM => Err(e),
        Err(_) if md.mode() & 0o111 != 0 => Ok(()),
        Err(_) => Err(nix::errno::Errno::EACCES),
    }
}

fn code_for(e: &nix::errno::Errno) -> i32 {
    match e {
        nix::errno::Errno::EACCES | nix::errno::Errno::EISDIR | nix::errno::Errno::EPERM => 126,
        _ => 127,
    }
}

/// Go's wording: a missing path reads `stat /x: no such file or directory`, others the
/// bare errno text.
fn describe(cmd: &str, e: &nix::errno::Errno) -> String {
    match e {
        nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => {
            format!("stat {cmd}: {}", errno_text(*e))
        }
        _ => errno_text(*e),
    }
}

/// The lower-case errno text Go prints (`no such file or directory`).
pub fn errno_text(e: nix::errno::Errno) -> String {
    let s = e.desc();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

impl BerthExecutor {
    /// Load the container's seccomp filter into an exec'd process, then drop the capabilities
    /// that were only granted to make that possible.
    fn apply_exec_seccomp(&self, filter: &Filter) -> Result<(), String> {
        use caps::CapSet;
        match filter {
            Filter::Profile(profile) => {
                libcontainer::seccomp::initialize_seccomp(profile)
                    .map_err(|e| format!("load seccomp profile: {e}"))?;
            }
            Filter::Program(program) => crate::runtime::seccomp_cache::load(program)?,
        }
        // Bounding first (needs CAP_SETPCAP in the effective set), then the other sets.
        let mut ordered = self.drop_caps.clone();
        ordered.sort_by_key(|c| *c == caps::Capability::CAP_SETPCAP);
        for c in &ordered {
            caps::drop(None, CapSet::Bounding, *c)
                .map_err(|e| format!("drop {c} from the bounding set: {e}"))?;
        }
        for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
            for c in &ordered {
                caps::drop(None, set, *c).map_err(|e| format!("drop {c}: {e}"))?;
            }
        }
        Ok(())
    }
}

impl BerthExecutor {
    /// Join the container's user namespace and become the exec's user there, with the
    /// container's seccomp filter and the process's capabilities (those of `spec`, minus the
    /// ones only added to load seccomp).
    fn enter_userns(&self, join: &UsernsJoin, spec: &Spec) -> Result<(), String> {
        use caps::CapSet;
        use libcontainer::capabilities::CapabilityExt;
        use nix::unistd::{Gid, Uid};
        if let Some(owner) = join.root_host_uid {
            for fd in 0..=2 {
                if nix::unistd::isatty(fd).unwrap_or(false) {
                    // Best effort (needs CAP_CHOWN, which the exec may have dropped).
                    let _ = nix::unistd::fchown(fd, Some(Uid::from_raw(owner)), None);
                }
            }
        }
        // SAFETY: the fd is the namespace file the supervisor opened for this exec and keeps
        // open until the process has started; it is only borrowed for the call.
        let ns = unsafe { std::os::fd::BorrowedFd::borrow_raw(join.fd) };
        // Host root owns the namespace: it holds CAP_SYS_ADMIN there whatever its own
        // capability sets. The joiner gets every capability inside, nothing outside.
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| format!("join the container's user namespace: {}", errno_text(e)))?;
        // Keep the permitted set across the switch to a non-zero uid: seccomp and the
        // capability sets below still need it.
        // SAFETY: prctl with integer arguments only changes this thread's flags.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
            return Err(format!(
                "set keep capabilities: {}",
                errno_text(nix::errno::Errno::last())
            ));
        }
        let groups: Vec<Gid> = join
            .additional_gids
            .iter()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups)
            .map_err(|e| format!("set supplementary groups {groups:?}: {}", errno_text(e)))?;
        let gid = Gid::from_raw(join.gid);
        nix::unistd::setresgid(gid, gid, gid)
            .map_err(|e| format!("set gid {gid}: {}", errno_text(e)))?;
        let uid = Uid::from_raw(join.uid);
        nix::unistd::setresuid(uid, uid, uid)
            .map_err(|e| format!("set uid {uid}: {}", errno_text(e)))?;
        let permitted =
            caps::read(None, CapSet::Permitted).map_err(|e| format!("read capabilities: {e}"))?;
        caps::set(None, CapSet::Effective, &permitted)
            .map_err(|e| format!("raise effective capabilities: {e}"))?;
        match &self.seccomp {
            Some(Filter::Profile(profile)) => {
                libcontainer::seccomp::initialize_seccomp(profile)
                    .map_err(|e| format!("load seccomp profile: {e}"))?;
            }
            Some(Filter::Program(program)) => crate::runtime::seccomp_cache::load(program)?,
            None => {}
        }
        let wanted = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().clone());
        let set_of = |list: Option<&oci_spec::runtime::Capabilities>| -> caps::CapsHashSet {
            list.into_iter()
                .flatten()
                .map(|c| c.to_cap())
                .filter(|c| !self.drop_caps.contains(c))
                .collect()
        };
        let w = wanted.as_ref();
        let bounding = set_of(w.and_then(|c| c.bounding().as_ref()));
        // Bounding first (needs CAP_SETPCAP in the effective set, so it goes last).
        let mut drop: Vec<caps::Capability> = caps::all().difference(&bounding).copied().collect();
        drop.sort_by_key(|c| *c == caps::Capability::CAP_SETPCAP);
        for c in drop {
            // Capabilities newer than the running kernel are not in its bounding set.
            if caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, c)
                    .map_err(|e| format!("drop {c} from the bounding set: {e}"))?;
            }
        }
        let effective = set_of(w.and_then(|c| c.effective().as_ref()));
        let permitted = set_of(w.and_then(|c| c.permitted().as_ref()));
        let inheritable = set_of(w.and_then(|c| c.inheritable().as_ref()));
        let ambient = set_of(w.and_then(|c| c.ambient().as_ref()));
        caps::set(None, CapSet::Effective, &effective)
            .map_err(|e| format!("set effective capabilities: {e}"))?;
        caps::set(None, CapSet::Permitted, &permitted)
            .map_err(|e| format!("set permitted capabilities: {e}"))?;
        caps::set(None, CapSet::Inheritable, &inheritable)
            .map_err(|e| format!("set inheritable capabilities: {e}"))?;
        caps::clear(None, CapSet::Ambient)
            .map_err(|e| format!("clear ambient capabilities: {e}"))?;
        for c in ambient {
            caps::raise(None, CapSet::Ambient, c).map_err(|e| format!("raise ambient {c}: {e}"))?;
        }
        Ok(())
    }
}

impl Executor for BerthExecutor {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let (args, path) = args_and_path(spec);
        let Some(cmd) = args.first() else {
            let f = ExecFailure {
                code: 127,
                message: "exec: no command specified".into(),
            };
            self.report(&f);
            return Err(ExecutorValidationError::ArgValidationError(f.message));
        };
        match look_path(cmd, &path) {
            Ok(_) => Ok(()),
            Err(f) => {
                self.report(&f);
                Err(ExecutorValidationError::ArgValidationError(f.message))
            }
        }
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some([h, w]) = self.console_size {
            if nix::unistd::isatty(0).unwrap_or(false) {
                let _ = super::lc::resize(0, h, w);
            }
        }
        let prepared = match (&self.userns, &self.seccomp) {
            (Some(join), _) => self.enter_userns(join, spec),
            (None, Some(profile)) => self.apply_exec_seccomp(profile),
            (None, None) => Ok(()),
        };
        {
            if let Err(e) = prepared {
                let failure = ExecFailure {
                    code: 0,
                    message: e.clone(),
                };
                self.report(&failure);
                return Err(ExecutorError::Other(e));
            }
        }
        let (args, path) = args_and_path(spec);
        let cmd = args.first().cloned().unwrap_or_default();
        let resolved = look_path(&cmd, &path).unwrap_or_else(|_| cmd.clone());
        let c_path = CString::new(resolved.as_bytes()).map_err(|_| ExecutorError::InvalidArg)?;
        let c_args: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
            .collect();
        // execv with the resolved path; the environment was set by setup_envs.
        let err = match nix::unistd::execv(&c_path, &c_args) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let failure = ExecFailure {
            code: code_for(&err),
            message: format!("exec {resolved}: {}", errno_text(err)),
        };
        // runc writes this to the container's stderr as well, so `docker logs` shows it.
        let line = format!("{}\n", failure.message);
        // SAFETY: writing bytes to fd 2 of this process.
        unsafe {
            libc::write(2, line.as_ptr().cast(), line.len());
        }
        self.report(&failure);
        Err(ExecutorError::Other(failure.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_path_finds_and_fails_like_go() {
        assert_eq!(look_path("sh", "/nonexistent:/bin").unwrap(), "/bin/sh");
        let e = look_path("nosuchcmd", "/bin:/usr/bin").unwrap_err();
        assert_eq!(e.code, 127);
        assert_eq!(
            e.message,
            "exec: \"nosuchcmd\": executable file not found in $PATH"
        );
        let e = look_path("/etc", "/bin").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (126, "exec: \"/etc\": is a directory")
        );
        let e = look_path("/nonexistent/x", "/bin").unwrap_err();
        assert_eq!(e.code, 127);
        assert!(e
            .message
            .ends_with("stat /nonexistent/x: no such file or directory"));
    }
}
