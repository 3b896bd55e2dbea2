//! `docker exec` inside the supervisor: a process started in the running container through
//! libcontainer's tenant builder, with its own stdio, and the fds a failed start leaks.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::unistd::Pid;

use super::clients::Kind;
use super::dispatch::failed;
use super::executor::{errno_text, BerthExecutor, Filter, UsernsJoin};
use super::reap::pidfd_open;
use super::stdio::{console_socket, pipe, Io};
use super::{lc, read_failure, Supervisor};
use crate::runtime::host;
use crate::runtime::proto::ExecRequest;
use crate::runtime::proto::Reply;
use crate::util::fs::replace_file;

/// A `docker exec` process.
pub(super) struct ExecProc {
    /// The supervisor's own number for it (clients refer to it).
    pub(super) id: u64,
    /// berthd's exec ID.
    pub(super) exec_id: String,
    pub(super) pid: Pid,
    pub(super) pidfd: Option<OwnedFd>,
    pub(super) io: Io,
}

impl Supervisor {
    /// `docker exec`: start `process` in the container through libcontainer's tenant builder.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn exec(&mut self, client: usize, req: ExecRequest) -> Reply {
        let ExecRequest {
            exec_id,
            mut process,
            tty,
            stdin: open_stdin,
            attach,
            console_size,
            add_caps,
            shed,
        } = req;
        // A killed init that is still inside its exit (or has the SIGKILL pending) would fail
        // the tenant build half-way: the container is not running any more.
        if self.exited() || !self.state.started || host::process_ending(self.init.as_raw()) {
            return Reply::error("container is not running");
        }
        if let Some(message) = self.missing_cwd(&process) {
            return failed(message, 126);
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let process_path = self.state_dir.join(format!("exec-{id}.json"));
        let userns = match self.userns_join(&mut process) {
            Ok(j) => j,
            Err(e) => return Reply::error(e),
        };
        let bytes = match serde_json::to_vec(&process) {
            Ok(b) => b,
            Err(e) => return Reply::error(format!("encode exec process: {e}")),
        };
        if let Err(e) = replace_file(&process_path, &bytes, 0o600) {
            return Reply::error(format!("write exec process: {e}"));
        }
        let result = self.exec_inner(
            id,
            &process_path,
            tty,
            open_stdin,
            console_size,
            add_caps,
            userns.as_ref().map(|(fd, j)| UsernsJoin {
                fd: fd.as_raw_fd(),
                ..j.clone()
            }),
            &shed,
        );
        drop(userns);
        let _ = std::fs::remove_file(&process_path);
        match result {
            Ok((pid, io)) => {
                self.execs.push(ExecProc {
                    id,
                    exec_id,
                    pid,
                    pidfd: pidfd_open(pid),
                    io,
                });
                if attach {
                    self.clients[client].kind = Kind::Exec {
                        id,
                        stdin: open_stdin,
                    };
                }
                Reply {
                    ok: true,
                    pid: pid.as_raw(),
                    ..Default::default()
                }
            }
            Err((message, code)) => {
                // libcontainer returns without reaping the processes of a build that failed
                // half-way, and they are not in `execs`.
                self.strays_until = Some(std::time::Instant::now() + super::STRAY_WINDOW);
                failed(message, code)
            }
        }
    }

    /// runc's words for an exec whose working directory is not in the container (`docker exec
    /// -w /nonexistent`): libcontainer's own failure at its `chdir` says only "failed to unix
    /// syscall". Looked up in the container's root as its init sees it, nothing followed out.
    fn missing_cwd(&self, process: &serde_json::Value) -> Option<String> {
        use nix::errno::Errno;
        let cwd = process.get("cwd")?.as_str()?;
        let root = std::fs::File::open(format!("/proc/{}/root", self.init)).ok()?;
        match crate::util::inroot::open_dir(&root, cwd.as_bytes()) {
            Err(e @ (Errno::ENOENT | Errno::ENOTDIR)) => Some(format!(
                "chdir to cwd ({cwd:?}) set in config.json failed: {}",
                errno_text(e)
            )),
            _ => None,
        }
    }

    /// For a container with its own user namespace (`--userns-remap`): libcontainer's tenant
    /// builder joins every namespace but that one, so the process is started as host root
    /// (which owns the namespace) and its executor joins the namespace and becomes the exec's
    /// user there. Rewrites `process`'s user to 0:0 and returns the namespace (open) and the
    /// real user; `None` for a container in the host's user namespace.
    fn userns_join(
        &self,
        process: &mut serde_json::Value,
    ) -> Result<Option<(OwnedFd, UsernsJoin)>, String> {
        use std::os::unix::fs::MetadataExt;
        let ns_path = format!("/proc/{}/ns/user", self.init);
        let theirs = std::fs::metadata(&ns_path).map_err(|e| format!("stat {ns_path}: {e}"))?;
        let ours = std::fs::metadata("/proc/self/ns/user")
            .map_err(|e| format!("stat /proc/self/ns/user: {e}"))?;
        if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
            return Ok(None);
        }
        let user = process
            .get_mut("user")
            .and_then(|u| u.as_object_mut())
            .ok_or("exec process without a user")?;
        let id = |v: Option<&serde_json::Value>| {
            v.and_then(|v| v.as_u64())
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0)
        };
        let join_uid = id(user.get("uid"));
        let join_gid = id(user.get("gid"));
        let additional_gids = user
            .get("additionalGids")
            .and_then(|g| g.as_array())
            .map(|a| a.iter().map(|g| id(Some(g))).collect())
            .unwrap_or_default();
        user.clear();
        user.insert("uid".into(), 0.into());
        user.insert("gid".into(), 0.into());
        let fd: OwnedFd = File::open(&ns_path)
            .map_err(|e| format!("open {ns_path}: {e}"))?
            .into();
        let uid_map = format!("/proc/{}/uid_map", self.init);
        let root_host_uid = std::fs::read_to_string(&uid_map)
            .map_err(|e| format!("read {uid_map}: {e}"))?
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace().map(|v| v.parse::<u32>().ok());
                match (f.next()??, f.next()??) {
                    (0, outside) => Some(outside),
                    _ => None,
                }
            });
        Ok(Some((
            fd,
            UsernsJoin {
                fd: -1,
                uid: join_uid,
                gid: join_gid,
                additional_gids,
                root_host_uid,
            },
        )))
    }

    #[allow(clippy::too_many_arguments)]
    fn exec_inner(
        &mut self,
        id: u64,
        process_path: &Path,
        tty: bool,
        open_stdin: bool,
        console_size: Option<[u16; 2]>,
        add_caps: Vec<String>,
        userns: Option<UsernsJoin>,
        shed: &[std::path::PathBuf],
    ) -> Result<(Pid, Io), (String, i32)> {
        let plain = |e: String| (e, 0);
        let (report_r, report_w) = pipe().map_err(plain)?;
        let drop_caps = add_caps
            .iter()
            .filter_map(|c| c.parse::<caps::Capability>().ok())
            .collect();
        let seccomp = match &self.seccomp {
            Some(f) => f.clone(),
            None => {
                let f = load_seccomp(&self.state_dir).map_err(plain)?;
                self.seccomp = Some(f.clone());
                f
            }
        };
        let executor = BerthExecutor {
            report_fd: report_w.as_raw_fd(),
            seccomp,
            drop_caps,
            userns,
            console_size: console_size.filter(|_| tty),
        };
        let mut io = Io::new(true);
        let mut console = None;
        let console_path = self.state_dir.join(format!("exec-{id}.sock"));
        let stdio = if tty {
            console = Some(console_socket(&console_path).map_err(plain)?);
            lc::Stdio::Console(console_path.clone())
        } else {
            io.pipes(open_stdin).map_err(plain)?
        };
        let fds_before = open_fds();
        let shed = super::setup::shed_mounts(shed, self.keep.as_deref(), "exec");
        let started = lc::exec(
            &self.cfg.id,
            &self.cfg.lc_root,
            process_path,
            executor,
            stdio,
        );
        if let Some(shed) = shed {
            if let Err(e) = shed.leave() {
                tracing::warn!("{e}");
            }
        }
        drop(report_w);
        if started.is_err() {
            // libcontainer 0.7 leaks its channel fds when a tenant build fails half-way.
            close_new_fds(&fds_before);
            let _ = std::fs::remove_file(&console_path);
        }
        let failure = read_failure(File::from(report_r));
        let pid = match (started, failure) {
            (_, Some(f)) if f.code != 0 => return Err((f.message, f.code)),
            (Ok(pid), _) => pid,
            (Err(e), Some(f)) => return Err((format!("{e}: {}", f.message), 0)),
            (Err(e), None) => return Err((e, 0)),
        };
        if let Some(l) = console {
            let fd = lc::receive_console(&l).map_err(plain)?;
            let _ = std::fs::remove_file(&console_path);
            io.attach_console(fd, console_size).map_err(plain)?;
        }
        io.set_nonblocking();
        Ok((pid, io))
    }
}

/// The fds open in this process.
fn open_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Close the fds that were not open before (what a failed libcontainer call left behind).
/// The supervisor is single-threaded, so nothing else opened them meanwhile.
fn close_new_fds(before: &[i32]) {
    for fd in open_fds() {
        if !before.contains(&fd) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// The container's seccomp filter, from the bundle: its profile, or the compiled program it
/// names. A program that cannot be read fails the exec (never an exec without the filter).
fn load_seccomp(state_dir: &Path) -> Result<Option<Filter>, String> {
    let Ok(spec) = oci_spec::runtime::Spec::load(state_dir.join("config.json")) else {
        return Ok(None);
    };
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
        return Ok(Some(Filter::Profile(p)));
    }
    super::setup::seccomp_program(&spec).map(|p| p.map(|(program, _)| Filter::Program(program)))
}
