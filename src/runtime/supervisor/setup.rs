//! Starting: the hidden subcommand's entry point, daemonising (`setsid` and a fork), entering
//! the state dir, binding the control socket and creating the container through libcontainer
//! (still single-threaded: it forks), then reporting the outcome to berthd on the status fd.

use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

use libcontainer::container::Container;
use nix::fcntl::{fcntl, FcntlArg};
use nix::unistd::Pid;

use super::executor::{BerthExecutor, Filter};
use super::reap::pidfd_open;
use super::stdio::{console_socket, nonblocking, pipe, Io};
use super::{config_path, lc, read_failure, socket_path, Supervisor, SPARE_SUBCOMMAND, SUBCOMMAND};
use crate::logger;
use crate::runtime::host;
use crate::runtime::proto::{Created, SupervisorConfig, SupervisorState};

/// The fd on which berthd reads the [`Created`] line.
const STATUS_FD: i32 = 3;

/// The fd on which a spare supervisor reads its state dir.
const GO_FD: i32 = 4;

/// Entry point of the hidden subcommand; called by `main` before any thread exists.
pub fn main(args: &[String]) -> i32 {
    let Some(dir) = args.first() else {
        eprintln!("usage: berthd {SUBCOMMAND} <state-dir>");
        return 2;
    };
    let status = inherited(STATUS_FD);
    match detach() {
        Ok(true) => serve(&PathBuf::from(dir), status),
        Ok(false) => 0,
        Err(e) => {
            report_created(
                status,
                Created {
                    error: e,
                    ..Default::default()
                },
            );
            1
        }
    }
}

/// Entry point of a spare supervisor (`berthd __spare <exec-root>/c/<placeholder>`), started
/// before any container needs it so that a start skips the `execve` and start-up of a new
/// one: detached like a supervisor, it waits for berthd to write a state dir on [`GO_FD`] and
/// then becomes that container's supervisor. The end of berthd closes the pipe, and a spare
/// nobody took just exits.
pub fn spare_main(args: &[String]) -> i32 {
    if args.is_empty() {
        eprintln!("usage: berthd {SPARE_SUBCOMMAND} <placeholder>");
        return 2;
    }
    let status = inherited(STATUS_FD);
    let go = inherited(GO_FD);
    match detach() {
        Ok(true) => {}
        Ok(false) => return 0,
        Err(_) => return 1,
    }
    let Some(dir) = go.and_then(read_assignment) else {
        return 0;
    };
    host::set_cmdline(&[SUBCOMMAND, &dir]);
    serve(&PathBuf::from(dir), status)
}

/// The spare's assignment: one line naming the state dir; `None` at EOF (berthd went).
fn read_assignment(go: File) -> Option<String> {
    let mut line = String::new();
    std::io::BufReader::new(go).read_line(&mut line).ok()?;
    let dir = line.strip_suffix('\n')?;
    (!dir.is_empty()).then(|| dir.to_string())
}

/// A pipe berthd passed as `fd` (the status pipe berthd reads the [`Created`] line from, a
/// spare's assignment pipe), close-on-exec from here on; `None` if it is not open.
fn inherited(fd: i32) -> Option<File> {
    fcntl(fd, FcntlArg::F_GETFD).ok()?;
    let _ = fcntl(fd, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    // SAFETY: `fd` is open (fcntl just answered for it) and was passed to this process by
    // berthd for it alone: nothing else here owns or closes it.
    Some(unsafe { File::from_raw_fd(fd) })
}

/// A new session, and a fork so that the supervisor is no child of berthd: `Ok(true)` in the
/// child, which goes on; `Ok(false)` in the parent, which only exits.
fn detach() -> Result<bool, String> {
    let _ = nix::unistd::setsid();
    // SAFETY: single-threaded here (no runtime has been built); the parent only exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => Ok(false),
        Ok(nix::unistd::ForkResult::Child) => Ok(true),
        Err(e) => Err(format!("fork supervisor: {e}")),
    }
}

/// Set the container up in `state_dir` and supervise it until the end.
fn serve(state_dir: &Path, status: Option<File>) -> i32 {
    match Supervisor::setup(state_dir, status) {
        Ok(mut sup) => {
            sup.run();
            0
        }
        Err(()) => 1,
    }
}

fn report_created(status: Option<File>, created: Created) {
    if let Some(mut f) = status {
        if let Ok(mut line) = serde_json::to_vec(&created) {
            line.push(b'\n');
            let _ = f.write_all(&line);
        }
    }
}

/// Why the setup failed, as berthd is told: the message, and Docker's exit code for it (0 if
/// none).
struct SetupError {
    message: String,
    exit_code: i32,
}

impl From<String> for SetupError {
    fn from(message: String) -> Self {
        SetupError {
            message,
            exit_code: 0,
        }
    }
}

/// A container libcontainer just created, and the init's side of the setup so far.
struct NewContainer {
    container: Container,
    io: Io,
    /// With a TTY: where the pty master is still to be received.
    console: Option<UnixListener>,
    /// The executor's report pipe (read at the start).
    report: File,
    /// What a process started in a copy of the mount namespace keeps ([`mounts_to_keep`]).
    keep: Option<Vec<PathBuf>>,
}

impl Supervisor {
    /// Everything that can fail before the container runs; berthd learns the outcome on
    /// `status` either way.
    pub(super) fn setup(state_dir: &Path, status: Option<File>) -> Result<Supervisor, ()> {
        match Self::build(state_dir) {
            Ok(sup) => {
                sup.save_state();
                report_created(
                    status,
                    Created {
                        ok: true,
                        pid: sup.init.as_raw(),
                        ..Default::default()
                    },
                );
                Ok(sup)
            }
            Err(SetupError { message, exit_code }) => {
                tracing::error!("{message}");
                report_created(
                    status,
                    Created {
                        error: message,
                        exit_code,
                        ..Default::default()
                    },
                );
                Err(())
            }
        }
    }

    /// The setup's steps; on failure, what was made so far is undone (the container deleted).
    fn build(state_dir: &Path) -> Result<Supervisor, SetupError> {
        enter_state_dir(state_dir)?;
        init_logging(&state_dir.join("supervisor.log"));
        let cfg = read_config(state_dir)?;
        let listener = bind_socket(state_dir)?;
        let NewContainer {
            mut container,
            mut io,
            console,
            report,
            keep,
        } = create_container(&cfg, state_dir)?;
        let (init, log) = match finish_init(&cfg, state_dir, &container, console, &mut io) {
            Ok(done) => done,
            Err(e) => {
                let _ = lc::delete(&mut container);
                return Err(e.into());
            }
        };
        let state = SupervisorState {
            supervisor_pid: std::process::id() as i32,
            pid: init.as_raw(),
            start_time: host::proc_start_time(init.as_raw()).unwrap_or(0),
            ..Default::default()
        };
        Ok(Supervisor {
            pidfd: pidfd_open(init),
            cfg,
            state_dir: state_dir.to_path_buf(),
            container,
            init,
            listener,
            clients: Vec::new(),
            io,
            execs: Vec::new(),
            seccomp: None,
            log,
            state,
            report: Some(report),
            exited_at: None,
            strays_until: None,
            shed_at: None,
            last_progress: Instant::now(),
            readbuf: None,
            keep,
        })
    }
}

/// Become the subreaper of the container's processes and work in the state dir.
fn enter_state_dir(state_dir: &Path) -> Result<(), String> {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    std::env::set_current_dir(state_dir)
        .map_err(|e| format!("enter state dir {}: {e}", state_dir.display()))
}

fn read_config(state_dir: &Path) -> Result<SupervisorConfig, String> {
    std::fs::read(config_path(state_dir))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("read supervisor config: {e}"))
}

/// The control socket, non-blocking.
fn bind_socket(state_dir: &Path) -> Result<UnixListener, String> {
    let sock = socket_path(state_dir);
    let _ = std::fs::remove_file(&sock);
    // Bound relative to the state dir: the absolute path may exceed sun_path.
    let listener =
        UnixListener::bind("sup.sock").map_err(|e| format!("bind {}: {e}", sock.display()))?;
    nonblocking(&listener);
    Ok(listener)
}

/// The init's stdio (pipes, or a console socket with a TTY) and the container created with it.
fn create_container(cfg: &SupervisorConfig, state_dir: &Path) -> Result<NewContainer, SetupError> {
    let spec = oci_spec::runtime::Spec::load(state_dir.join("config.json")).ok();
    let (seccomp, drop_caps) = match spec.as_ref().map(seccomp_program).transpose()?.flatten() {
        Some((program, drop_caps)) => (Some(Filter::Program(program)), drop_caps),
        None => (None, Vec::new()),
    };
    let (report_r, report_w) = pipe()?;
    let executor = BerthExecutor {
        report_fd: report_w.as_raw_fd(),
        seccomp,
        drop_caps,
        userns: None,
        console_size: cfg.io.console_size.filter(|_| cfg.io.tty),
    };
    let mut io = Io::new(cfg.io.stdin_once);
    let mut console = None;
    let stdio = if cfg.io.tty {
        let path = state_dir.join("console.sock");
        console = Some(console_socket(&path)?);
        lc::Stdio::Console(path)
    } else {
        io.pipes(cfg.io.open_stdin)?
    };
    if let Some(spec) = &spec {
        join_netns_of_bundle(spec)?;
        let ranges =
            |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| m.as_ref().map_or(0, Vec::len);
        let linux = spec.linux().as_ref();
        if linux.is_some_and(|l| ranges(l.uid_mappings()) > 1 || ranges(l.gid_mappings()) > 1) {
            // The supervisor is still single-threaded here (PATH is set for it).
            crate::runtime::idmap::provide_map_helpers(&state_dir.join("idmap-bin"))
                .map_err(|e| SetupError::from(format!("prepare the id map helpers: {e}")))?;
        }
    }
    let keep = spec.as_ref().and_then(|s| mounts_to_keep(state_dir, s));
    let shed = shed_mounts(&cfg.shed, keep.as_deref(), "create");
    let created = lc::create(&cfg.id, &cfg.lc_root, state_dir, executor, stdio);
    if let Some(shed) = shed {
        if let Err(e) = shed.leave() {
            tracing::warn!("{e}");
        }
    }
    drop(report_w);
    let created = created.and_then(|mut c| match spec.as_ref().map(disable_oom_killer) {
        Some(Err(e)) => {
            let _ = lc::delete(&mut c);
            Err(e)
        }
        _ => Ok(c),
    });
    match created {
        Ok(container) => Ok(NewContainer {
            container,
            io,
            console,
            report: File::from(report_r),
            keep,
        }),
        Err(e) => {
            // The executor's report, if any, names Docker's exit code and words.
            let failure = read_failure(File::from(report_r));
            let _ = lc::delete_stale(&cfg.lc_root, &cfg.id);
            Err(match failure {
                Some(f) => SetupError {
                    message: f.message,
                    exit_code: f.code,
                },
                None => e.into(),
            })
        }
    }
}

/// `--oom-kill-disable` on cgroup v1 (the spec asks for it only there): libcontainer's create
/// passes its cgroup managers `disable_oom_killer: false` whatever the spec says, so the
/// created container's `memory.oom_control` is written here, before its start, as runc does.
fn disable_oom_killer(spec: &oci_spec::runtime::Spec) -> Result<(), String> {
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(());
    };
    let wanted = linux
        .resources()
        .as_ref()
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.disable_oom_killer())
        == Some(true);
    let (true, Some(path)) = (wanted, linux.cgroups_path().as_ref()) else {
        return Ok(());
    };
    let Some(mount) = crate::runtime::v1_mount_point(libcgroups::v1::ControllerType::Memory) else {
        return Err("disable the oom killer: no memory cgroup hierarchy".to_string());
    };
    let file = mount
        .join(path.strip_prefix("/").unwrap_or(path))
        .join("memory.oom_control");
    std::fs::write(&file, "1")
        .map_err(|e| format!("disable the oom killer: write {}: {e}", file.display()))
}

/// The mounts this container needs when it is created, or one of its processes started, in a
/// copy of the mount namespace without the other containers' mounts
/// ([`crate::runtime::subtree`]): its root, its namespace files, its mounts' sources. `None`
/// when it must see the host's own (a mount propagating back to the host through the copy).
pub(super) fn mounts_to_keep(
    state_dir: &Path,
    spec: &oci_spec::runtime::Spec,
) -> Option<Vec<PathBuf>> {
    let shared = |o: &str| matches!(o, "shared" | "rshared");
    if spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .is_some_and(shared)
    {
        return None;
    }
    let mut keep = Vec::new();
    if let Some(root) = spec.root() {
        keep.push(state_dir.join(root.path()));
    }
    if let Some(linux) = spec.linux() {
        keep.extend(
            linux
                .namespaces()
                .iter()
                .flatten()
                .filter_map(|n| n.path().clone()),
        );
    }
    for m in spec.mounts().iter().flatten() {
        if m.options().iter().flatten().any(|o| shared(o)) {
            // Its propagation back to the host would go through the copy.
            return None;
        }
        keep.extend(m.source().clone().filter(|s| s.is_absolute()));
    }
    Some(keep)
}

/// Enter a copy of the mount namespace without the mounts below `shed` for `what` (a create,
/// an exec), keeping `keep`. Without one (few containers running, or the copy failed), `what`
/// runs in the host's namespace, as it always can.
pub(super) fn shed_mounts(
    shed: &[PathBuf],
    keep: Option<&[PathBuf]>,
    what: &str,
) -> Option<crate::runtime::subtree::Shed> {
    let keep = keep?;
    if shed.is_empty() {
        return None;
    }
    match crate::runtime::subtree::Shed::enter(shed, keep) {
        Ok(s) => {
            tracing::info!(
                "{what} in a mount namespace without {shed:?}, keeping {:?}",
                s.kept
            );
            Some(s)
        }
        Err(e) => {
            tracing::warn!("{what} with every mount: {e}");
            None
        }
    }
}

/// After the create: the pty (with a TTY), the init's pid, non-blocking stdio and the log.
fn finish_init(
    cfg: &SupervisorConfig,
    state_dir: &Path,
    container: &Container,
    console: Option<UnixListener>,
    io: &mut Io,
) -> Result<(Pid, Option<logger::jsonfile::Writer>), String> {
    if let Some(l) = console {
        lc::receive_console(&l).and_then(|fd| io.attach_console(fd, cfg.io.console_size))?;
        let _ = std::fs::remove_file(state_dir.join("console.sock"));
    }
    let Some(init) = container.pid() else {
        return Err("container has no init process".to_string());
    };
    io.set_nonblocking();
    let log = if cfg.io.log.readable() {
        let w = logger::jsonfile::Writer::open(&cfg.io.log_path, &cfg.io.log)
            .map_err(|e| format!("open log {}: {e}", cfg.io.log_path.display()))?;
        Some(w.with_attrs(&cfg.io.log_attrs))
    } else {
        None
    };
    Ok((init, log))
}

/// The supervisor's own log (libcontainer logs through `tracing` too): never fd 2, which the
/// container's init would inherit.
fn init_logging(path: &Path) {
    // libcgroups' notes on every create (which cgroup version it uses, controllers this host
    // lacks) say nothing about the container; its errors still come.
    let filter = tracing_subscriber::EnvFilter::new("info,libcgroups=error");
    let _ = tracing_subscriber::fmt()
        .with_writer(LazyLog {
            path: path.to_path_buf(),
            file: std::sync::Mutex::new(None),
        })
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

/// The supervisor's log file, made at the first line written: a container whose supervisor
/// has nothing to say costs no file. It is opened by its absolute path, never through a
/// descriptor of the state dir: libcontainer's processes log through the same subscriber after
/// their fork, and a directory descriptor open in the container's init before its `execve`
/// is the way out of the container runc's CVE-2024-21626 took (`process.cwd` set to
/// `/proc/self/fd/N`). A line the init logs after its `pivot_root`, when the supervisor had
/// logged nothing before, is lost (its errors also reach the supervisor, which logs them).
struct LazyLog {
    path: PathBuf,
    file: std::sync::Mutex<Option<File>>,
}

impl std::io::Write for &LazyLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            *file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        match file.as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LazyLog {
    type Writer = &'a LazyLog;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// A container with a user namespace cannot join a network namespace of the host's user
/// namespace itself: the supervisor (single-threaded) joins the one the bundle names, and the
/// container, and every exec libcontainer starts from here, inherit it.
fn join_netns_of_bundle(spec: &oci_spec::runtime::Spec) -> Result<(), String> {
    let Some(path) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::runtime::spec::NETNS_ANNOTATION))
    else {
        return Ok(());
    };
    let f = std::fs::File::open(path).map_err(|e| format!("open network namespace {path}: {e}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("join network namespace {path}: {e}"))
}

/// A compiled seccomp program and the capabilities held only to load it.
pub(super) type Program = (std::sync::Arc<[u8]>, Vec<caps::Capability>);

/// The compiled seccomp program the bundle names (`runtime/seccomp_cache.rs`), and the
/// capabilities the init holds only to load it. A named program that cannot be read is an
/// error: the container never runs without its filter.
pub(super) fn seccomp_program(spec: &oci_spec::runtime::Spec) -> Result<Option<Program>, String> {
    use crate::runtime::seccomp_cache::{DROP_CAPS_ANNOTATION, PROGRAM_ANNOTATION};
    let Some(a) = spec.annotations().as_ref() else {
        return Ok(None);
    };
    let Some(path) = a.get(PROGRAM_ANNOTATION) else {
        return Ok(None);
    };
    let program = std::fs::read(path).map_err(|e| format!("read seccomp program {path}: {e}"))?;
    let mut drop_caps = Vec::new();
    for name in a
        .get(DROP_CAPS_ANNOTATION)
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|n| !n.is_empty())
    {
        drop_caps.push(
            name.parse::<caps::Capability>()
                .map_err(|e| format!("capability {name}: {e}"))?,
        );
    }
    Ok(Some((program.into(), drop_caps)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> oci_spec::runtime::Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn kept_are_the_root_namespace_files_and_mount_sources() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "linux": {"namespaces": [
                {"type": "network", "path": "/run/b/netns/x"},
                {"type": "mount"}
            ]},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/d/containers/x/hosts",
                 "options": ["rbind", "rprivate"]}
            ]
        }));
        let keep = mounts_to_keep(Path::new("/run/b/c/x"), &s).unwrap();
        assert_eq!(
            keep,
            vec![
                PathBuf::from("/run/b/c/x/rootfs"),
                PathBuf::from("/run/b/netns/x"),
                PathBuf::from("/d/containers/x/hosts"),
            ]
        );
    }

    #[test]
    fn shared_propagation_keeps_the_hosts_mounts() {
        let bind = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "/r"},
            "mounts": [{"destination": "/m", "type": "bind", "source": "/srv/m",
                        "options": ["rbind", "rshared"]}]
        }));
        assert_eq!(mounts_to_keep(Path::new("/b"), &bind), None);
        let rootfs = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "/r"},
            "linux": {"rootfsPropagation": "shared"}
        }));
        assert_eq!(mounts_to_keep(Path::new("/b"), &rootfs), None);
    }
}
