//! [`Runtime`]: the container manager's one handle on the runtime. It owns the exec-root
//! layout (`<exec-root>/c/<id>` per run, libcontainer's `<exec-root>/runtime`, network
//! namespaces under `<exec-root>/netns`), writes the OCI bundle, and makes every call into a
//! container's supervisor: launch, start, signal, pause, resize, attach, exec, watch, read the
//! recorded exit, and clean up after a run. Nothing outside `runtime/` knows these paths, the
//! supervisor's files or the OCI types.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::client::{self, Watch};
use super::error::RuntimeError;
use super::proto::{
    ExecRequest, ExitStatus, ProcessIo, Request, SupervisorConfig, SupervisorState,
};
use super::stdio::StdioConn;
use super::{host, seccomp_cache, spec, supervisor, CgroupInfo, CgroupVersion};
use crate::util::fs::{ensure_dir, replace_file};
use crate::util::time::rfc3339_nano;

/// What the runtime needs from the daemon's configuration.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub exec_root: PathBuf,
    /// Absolute cgroup parent, e.g. `/berth`.
    pub cgroup_parent: String,
    /// The binary that runs `__supervise` (berthd itself).
    pub supervisor_exe: PathBuf,
    /// The host's cgroups, probed once by the daemon.
    pub cgroups: CgroupInfo,
    /// The directories made private bind mounts of themselves ([`super::subtree::own`]) that
    /// a container's create sheds when many run.
    pub subtrees: Vec<PathBuf>,
    /// The number of running containers from which a create sheds them
    /// ([`super::subtree::SHED_ABOVE`]; `BERTH_TEST_SHED_ABOVE` for tests).
    pub shed_above: usize,
}

/// How a container's supervisor runs it (besides the bundle written by [`Runtime::prepare`]).
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    pub io: ProcessIo,
    /// The run's cgroup ([`Runtime::cgroup_path`]), as in the bundle.
    pub cgroup_path: String,
    /// How many containers run already: each holds mounts that libcontainer's create reads
    /// through, shed above [`RuntimeConfig::shed_above`].
    pub running: usize,
}

/// The process of a `docker exec`, before [`Runtime::exec_process`] resolves it.
#[derive(Debug, Clone, Default)]
pub struct ExecProcess<'a> {
    pub cmd: &'a [String],
    pub env: &'a [String],
    pub user: &'a str,
    pub working_dir: &'a str,
    pub tty: bool,
    pub privileged: bool,
}

/// An exec process resolved against the container's spec, ready for [`Runtime::exec`].
#[derive(Debug, Clone)]
pub struct PreparedExec {
    process: serde_json::Value,
    add_caps: Vec<String>,
}

/// How an exec's streams are wired.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecStdio {
    pub tty: bool,
    pub stdin: bool,
    /// Keep the connection for the process's output frames (not `detach`).
    pub attach: bool,
    pub console_size: Option<[u16; 2]>,
}

/// The handle: cheap to share (`Arc`); its state beyond the configuration is the spare
/// supervisor ([`client::Spares`]).
#[derive(Debug)]
pub struct Runtime {
    cfg: RuntimeConfig,
    spares: Arc<client::Spares>,
}

impl Runtime {
    pub fn new(cfg: RuntimeConfig) -> Runtime {
        let spares = Arc::new(client::Spares::new(
            cfg.supervisor_exe.clone(),
            cfg.exec_root.clone(),
        ));
        Runtime { cfg, spares }
    }

    /// The host's cgroups as probed at start.
    pub fn cgroups(&self) -> &CgroupInfo {
        &self.cfg.cgroups
    }

    pub fn cgroup_version(&self) -> CgroupVersion {
        self.cfg.cgroups.version
    }

    /// A container's cgroup: `<parent>/<id>` under its own `HostConfig.CgroupParent`, or the
    /// daemon's (`/berth/<id>` by default). A parent without a leading `/` is taken from the
    /// root of each hierarchy, as the daemon's `--cgroup-parent` is.
    pub fn cgroup_path(&self, parent: Option<&str>, id: &str) -> String {
        let parent = parent
            .filter(|p| !p.is_empty())
            .unwrap_or(&self.cfg.cgroup_parent);
        format!("{}/{id}", parent.trim_end_matches('/'))
    }

    /// Blocking for up to an RCU grace period: see [`super::warm_cgroup_migration`]. Call it on
    /// a thread of its own when a container's start begins.
    pub fn warm_cgroup_migration(&self) {
        super::warm_cgroup_migration();
    }

    /// Where a container's resource usage is read from (`docker stats`): resolved once per
    /// stream, then [`super::stats::StatsSource::sample`] each second.
    pub fn stats_source(&self, cgroup_path: &str) -> super::stats::StatsSource {
        super::stats::StatsSource::for_cgroup(self.cgroup_version(), cgroup_path)
    }

    /// The state directory of a container's current run: bundle, supervisor socket and files.
    fn state_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("c").join(id)
    }

    /// libcontainer's own state root.
    fn lc_root(&self) -> PathBuf {
        self.cfg.exec_root.join("runtime")
    }

    /// Where a container's volume subpaths are bind-mounted while it runs (kept apart from the
    /// state directory, which a new run removes).
    pub fn subpath_mounts_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("mounts").join(id)
    }

    /// Where a container's own network namespace is bind-mounted while it runs.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("netns").join(id)
    }

    /// The network namespace file of a running container, or `""` (inspect's `SandboxKey`).
    pub fn sandbox_key(&self, id: &str) -> String {
        let p = self.netns_path(id);
        if p.exists() {
            p.display().to_string()
        } else {
            String::new()
        }
    }

    /// Blocking. A fresh state directory for a new run and the OCI bundle built from `opts`.
    /// Whatever a previous run left (its state directory, libcontainer's record) goes first:
    /// libcontainer would refuse a second record.
    pub fn prepare(&self, id: &str, opts: &spec::SpecOptions) -> Result<(), RuntimeError> {
        let io = |what: &str, e: std::io::Error| RuntimeError::failed(format!("{what}: {e}"));
        let state_dir = self.state_dir(id);
        let _ = std::fs::remove_dir_all(&state_dir);
        ensure_dir(&self.cfg.exec_root.join("c"), 0o700).map_err(|e| io("create exec root", e))?;
        ensure_dir(&state_dir, 0o700).map_err(|e| io("create state dir", e))?;
        ensure_dir(&self.cfg.exec_root.join("netns"), 0o700)
            .map_err(|e| io("create netns dir", e))?;
        ensure_dir(&self.lc_root(), 0o700).map_err(|e| io("create runtime dir", e))?;
        if self.lc_root().join(id).exists() {
            let _ = std::fs::remove_dir_all(self.lc_root().join(id));
        }
        let mut oci = spec::build(opts)?;
        self.use_seccomp_program(&mut oci)?;
        if let (Some(_), spec::Namespace::Path(netns)) = (&opts.userns, opts.network) {
            if opts
                .host_config
                .network_mode
                .as_deref()
                .unwrap_or("")
                .starts_with("container:")
            {
                // The other container's namespace has its settings already.
            } else {
                super::host::set_netns_sysctls(netns, &spec::DEFAULT_NET_SYSCTLS)
                    .map_err(|e| io("set the network namespace's sysctls", e))?;
            }
        }
        let json = serde_json::to_vec(&oci)
            .map_err(|e| RuntimeError::failed(format!("encode OCI spec: {e}")))?;
        replace_file(&state_dir.join("config.json"), &json, 0o600)
            .map_err(|e| io("write config.json", e))
    }

    /// Blocking. Replace the bundle's seccomp profile by its compiled program (see
    /// [`seccomp_cache`]): the init loads it right before exec instead of libcontainer
    /// compiling the profile in every container. Without `no_new_privileges` that load needs
    /// CAP_SYS_ADMIN, so the init keeps it (and CAP_SETPCAP, to take it out of the bounding set
    /// again) until then, as an exec'd process does.
    fn use_seccomp_program(&self, oci: &mut oci_spec::runtime::Spec) -> Result<(), RuntimeError> {
        use oci_spec::runtime::Capability;
        let Some(linux) = oci.linux_mut() else {
            return Ok(());
        };
        let Some(profile) = linux.seccomp().as_ref() else {
            return Ok(());
        };
        if !seccomp_cache::cacheable(profile) {
            return Ok(());
        }
        let program = seccomp_cache::program(&self.cfg.exec_root.join("seccomp"), profile)
            .map_err(RuntimeError::failed)?;
        linux.set_seccomp(None);
        let mut added = Vec::new();
        if let Some(process) = oci.process_mut() {
            if process.no_new_privileges() != Some(true) {
                let mut caps = process.capabilities().clone().unwrap_or_default();
                for (cap, name) in [
                    (Capability::SysAdmin, "CAP_SYS_ADMIN"),
                    (Capability::Setpcap, "CAP_SETPCAP"),
                ] {
                    if caps.bounding().as_ref().is_some_and(|b| b.contains(&cap)) {
                        continue;
                    }
                    added.push(name);
                    let with = |set: &Option<oci_spec::runtime::Capabilities>| {
                        let mut set = set.clone().unwrap_or_default();
                        set.insert(cap);
                        Some(set)
                    };
                    caps.set_bounding(with(caps.bounding()));
                    caps.set_effective(with(caps.effective()));
                    caps.set_permitted(with(caps.permitted()));
                }
                process.set_capabilities(Some(caps));
            }
        }
        let annotations = oci.annotations_mut().get_or_insert_with(Default::default);
        annotations.insert(
            seccomp_cache::PROGRAM_ANNOTATION.to_string(),
            program.display().to_string(),
        );
        if !added.is_empty() {
            annotations.insert(
                seccomp_cache::DROP_CAPS_ANNOTATION.to_string(),
                added.join(","),
            );
        }
        Ok(())
    }

    /// Start the supervisor of a prepared container and wait until the container is created.
    /// Returns its init's pid.
    pub async fn launch(&self, id: &str, opts: LaunchOptions) -> Result<i32, RuntimeError> {
        let cgroup_path = opts.cgroup_path;
        let version = self.cgroup_version();
        let cfg = SupervisorConfig {
            id: id.to_string(),
            lc_root: self.lc_root(),
            io: opts.io,
            cgroup_dirs: Some(super::cgroup_dirs(version, &cgroup_path)),
            oom_file: super::oom_file(version, &cgroup_path),
            cgroup_path,
            shed: self.shed_list(opts.running),
        };
        client::launch(
            self.cfg.supervisor_exe.clone(),
            self.state_dir(id),
            cfg,
            self.spares.clone(),
        )
        .await
    }

    /// The directories whose mounts a supervisor sheds to create a container or start an exec
    /// while `running` containers run ([`super::subtree`]).
    fn shed_list(&self, running: usize) -> Vec<PathBuf> {
        if running >= self.cfg.shed_above {
            self.cfg.subtrees.clone()
        } else {
            Vec::new()
        }
    }

    /// The supervisor's events (exits of the container and its execs) until it goes.
    pub async fn watch(&self, id: &str) -> Result<Watch, RuntimeError> {
        client::watch(&self.state_dir(id)).await
    }

    /// Start the created container's process.
    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        client::request_ok(&self.state_dir(id), Request::Start)
            .await
            .map(drop)
    }

    /// Send `signal` to the container's init.
    pub async fn signal(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        client::request_ok(&self.state_dir(id), Request::Kill { signal })
            .await
            .map(drop)
    }

    /// Send `signal` to one of the container's exec processes.
    pub async fn signal_exec(
        &self,
        id: &str,
        exec_id: &str,
        signal: i32,
    ) -> Result<(), RuntimeError> {
        let req = Request::KillExec {
            exec_id: exec_id.to_string(),
            signal,
        };
        client::request_ok(&self.state_dir(id), req).await.map(drop)
    }

    /// Freeze the container's processes.
    pub async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        client::request_ok(&self.state_dir(id), Request::Pause)
            .await
            .map(drop)
    }

    /// Thaw them.
    pub async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        client::request_ok(&self.state_dir(id), Request::Resume)
            .await
            .map(drop)
    }

    /// A new size for the container's TTY, or for exec `exec`'s.
    pub async fn resize(
        &self,
        id: &str,
        height: u16,
        width: u16,
        exec: Option<&str>,
    ) -> Result<(), RuntimeError> {
        let req = Request::Resize {
            height,
            width,
            exec: exec.map(str::to_string),
        };
        client::request_ok(&self.state_dir(id), req).await.map(drop)
    }

    /// The supervisor's view of a running container (pid, paused).
    pub async fn state(&self, id: &str) -> Option<SupervisorState> {
        client::request(&self.state_dir(id), Request::State)
            .await
            .ok()
            .and_then(|r| r.state)
    }

    /// A connection carrying the container's output frames (and stdin frames back).
    pub async fn attach(
        &self,
        id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<StdioConn, RuntimeError> {
        client::attach(&self.state_dir(id), stdin, stdout, stderr)
            .await
            .map(StdioConn::new)
    }

    /// Blocking. Resolve an exec's process against the container's spec (user, environment,
    /// capabilities). libcontainer's tenant path drops the container's seccomp profile, so the
    /// exec'd process loads it itself: it gets CAP_SYS_ADMIN (and CAP_SETPCAP, to drop it from
    /// the bounding set again) just long enough, the order runc uses.
    pub fn exec_process(
        &self,
        id: &str,
        opts: &spec::SpecOptions,
        p: &ExecProcess,
    ) -> Result<PreparedExec, RuntimeError> {
        let process = spec::exec_process(
            opts,
            p.cmd,
            p.env,
            p.user,
            p.working_dir,
            p.tty,
            p.privileged,
        )?;
        let mut value = serde_json::to_value(&process)
            .map_err(|e| RuntimeError::failed(format!("encode exec process: {e}")))?;
        let mut add_caps = Vec::new();
        if self.has_seccomp(id) {
            if let Some(caps) = value
                .get_mut("capabilities")
                .and_then(|c| c.as_object_mut())
            {
                for cap in ["CAP_SYS_ADMIN", "CAP_SETPCAP"] {
                    let present = caps
                        .get("bounding")
                        .and_then(|b| b.as_array())
                        .is_some_and(|b| b.iter().any(|x| x == cap));
                    if present {
                        continue;
                    }
                    add_caps.push(cap.to_string());
                    for set in ["bounding", "effective", "permitted"] {
                        let list = caps
                            .entry(set)
                            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                        if let Some(a) = list.as_array_mut() {
                            a.push(serde_json::Value::String(cap.to_string()));
                        }
                    }
                }
            }
        }
        Ok(PreparedExec {
            process: value,
            add_caps,
        })
    }

    /// Whether the running container's bundle has a seccomp profile.
    fn has_seccomp(&self, id: &str) -> bool {
        oci_spec::runtime::Spec::load(self.state_dir(id).join("config.json"))
            .ok()
            .is_some_and(|s| {
                s.linux().as_ref().is_some_and(|l| l.seccomp().is_some())
                    || s.annotations()
                        .as_ref()
                        .is_some_and(|a| a.contains_key(seccomp_cache::PROGRAM_ANNOTATION))
            })
    }

    /// Start an exec process in the running container: its pid, and the connection that
    /// carries its output frames (with `stdio.attach`) and its exit.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        prepared: PreparedExec,
        stdio: ExecStdio,
        running: usize,
    ) -> Result<(i32, StdioConn), RuntimeError> {
        let req = Request::Exec(ExecRequest {
            shed: self.shed_list(running),
            exec_id: exec_id.to_string(),
            process: prepared.process,
            tty: stdio.tty,
            stdin: stdio.stdin,
            attach: stdio.attach,
            console_size: stdio.console_size,
            add_caps: prepared.add_caps,
        });
        let (reply, stream) = client::exec(&self.state_dir(id), req).await?;
        Ok((reply.pid, StdioConn::new(stream)))
    }

    /// Blocking. Apply the resources of `opts` to a running container's cgroup (`docker
    /// update`); only file writes, so safe on berthd's threads.
    pub fn update_resources(&self, opts: &spec::SpecOptions) -> Result<(), RuntimeError> {
        let oci = spec::build(opts)?;
        super::update_resources(&opts.cgroup_path, &oci).map_err(RuntimeError::Failed)
    }

    /// The pids in a container's cgroup (`docker top`).
    pub fn pids(&self, cgroup_path: &str) -> Vec<i32> {
        super::cgroup_pids(cgroup_path)
    }

    /// The exit the supervisor recorded, if it did.
    pub fn read_exit(&self, id: &str) -> Option<ExitStatus> {
        let b = std::fs::read(supervisor::exit_path(&self.state_dir(id))).ok()?;
        serde_json::from_slice(&b).ok()
    }

    fn read_state(&self, id: &str) -> Option<SupervisorState> {
        let b = std::fs::read(supervisor::state_path(&self.state_dir(id))).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Blocking. What a finished run leaves: its state directory (only once its exit is
    /// recorded elsewhere: `exit.json` goes with it). Its network namespace is the container
    /// manager's (`network_down`).
    pub fn cleanup(&self, id: &str) {
        let _ = std::fs::remove_dir_all(self.state_dir(id));
    }

    /// How a run whose supervisor is gone ended: the exit it recorded, or, if it died without
    /// recording one, 137 with `why` once its container is ended ([`Runtime::end_orphan`]).
    pub async fn exit_of_gone(&self, id: &str, why: &str) -> ExitStatus {
        if let Some(s) = self.read_exit(id) {
            return s;
        }
        self.end_orphan(id).await;
        ExitStatus {
            exit_code: 137,
            oom_killed: false,
            finished_at: rfc3339_nano(SystemTime::now()),
            error: why.to_string(),
        }
    }

    /// A supervisor that died without recording an exit: kill its container if the recorded
    /// pid is still that process, and clear libcontainer's state and the cgroup.
    async fn end_orphan(&self, id: &str) {
        if let Some(st) = self.read_state(id) {
            if host::same_process(st.pid, st.start_time) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(st.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let lc_root = self.lc_root();
        let id = id.to_string();
        let _ =
            tokio::task::spawn_blocking(move || super::remove_stale_container(&lc_root, &id)).await;
    }

    /// A container recorded as not running may still have a supervisor: berthd died between
    /// launching it and recording the start. End it (its init never ran the command) and
    /// remove its state directory.
    pub async fn reap_unstarted(&self, id: &str) {
        let state_dir = self.state_dir(id);
        if !state_dir.exists() {
            return;
        }
        if client::request(&state_dir, Request::Kill { signal: 9 })
            .await
            .is_ok()
        {
            for _ in 0..50 {
                if self.read_exit(id).is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
        let _ = std::fs::remove_dir_all(&state_dir);
    }
}
