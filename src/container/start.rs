//! Starting a container: mount its rootfs, write the OCI bundle, launch its supervisor, hand
//! waiting attach clients their streams and start the process; failed starts are recorded
//! with Docker's exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::manager::{lock, Container, ContainerManager};
use super::mounts::MountPoint;
use super::record::{Record, Status};
use super::ContainerError;
use crate::errors::ErrorKind;
use crate::runtime::{host, spec, LaunchOptions, ProcessIo, RuntimeError};
use crate::util::fs::ensure_dir;
use crate::util::time::rfc3339_nano;

/// How long a start waits for the cleanup of the container's previous run.
const EXIT_CLEANUP_WAIT: Duration = Duration::from_secs(10);

impl ContainerManager {
    /// The ids a container's root maps to: the daemon's `--userns-remap` unless the container
    /// opted out (`--userns=host`).
    pub(super) fn userns_of(&self, r: &Record) -> Option<crate::runtime::IdMap> {
        if r.host_config.userns_mode.as_deref() == Some("host") {
            return None;
        }
        self.cfg.userns_remap.clone()
    }

    /// Begin, on a blocking thread, the RCU grace period that libcontainer's first move of a
    /// process into a cgroup waits for (`Runtime::warm_cgroup_migration`): called where a
    /// container is created and where its start begins, so that the wait overlaps the work
    /// before the move. Outside a tokio runtime it does nothing. (An exec's move comes about
    /// 3 ms after its create: too soon for a warm-up to help, measured.)
    pub(super) fn warm_cgroup_migration(&self) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let runtime = self.runtime.clone();
            rt.spawn_blocking(move || runtime.warm_cgroup_migration());
        }
    }

    /// The run's cgroup: under the container's `CgroupParent`, else the daemon's.
    pub(super) fn cgroup_path(&self, r: &Record) -> String {
        self.runtime
            .cgroup_path(r.host_config.cgroup_parent.as_deref(), &r.id)
    }

    pub(super) fn spec_inputs(&self, r: &Record) -> SpecInputs {
        SpecInputs {
            userns: self.userns_of(r),
            rootfs: self.rootfs(&r.id),
            hostname: PathBuf::from(&r.hostname_path),
            hosts: PathBuf::from(&r.hosts_path),
            resolv_conf: PathBuf::from(&r.resolv_conf_path),
            cgroup_path: self.cgroup_path(r),
            cgroup_version: self.runtime.cgroup_version(),
            mounts: None,
        }
    }

    /// `POST /containers/{id}/start`: `Ok(false)` when it was already running (304).
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<bool, ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        match c.status() {
            Status::Running => return Ok(false),
            Status::Paused => {
                return Err(ContainerError::conflict(
                    "cannot start a paused container, try unpause instead",
                ))
            }
            Status::Removing | Status::Dead => {
                return Err(ContainerError::conflict(
                    "container is marked for removal and cannot be started",
                ))
            }
            _ => {}
        }
        // A manual start begins a fresh restart-policy history (moby's ResetRestartManager);
        // a record that has none (a new container's) is not written again for it.
        let r = c.record();
        if r.state.manually_stopped || r.state.paused_for_commit || r.restart_count != 0 {
            self.update(&c, |r| {
                r.state.manually_stopped = false;
                r.state.paused_for_commit = false;
                r.restart_count = 0;
            })?;
        }
        *lock(&c.backoff) = None;
        self.start_locked(&c).await.map(|_| true)
    }

    /// Mount the rootfs, join the networks, write the bundle, launch the supervisor and start
    /// the process. A failed start leaves its networks before the container's lock is let go,
    /// so that a next start cannot race the teardown.
    pub(super) async fn start_locked(
        self: &Arc<Self>,
        c: &Arc<Container>,
    ) -> Result<(), ContainerError> {
        let result = self.start_run(c).await;
        if result.is_err() {
            self.network_down(&c.id).await;
        }
        result
    }

    async fn start_run(self: &Arc<Self>, c: &Arc<Container>) -> Result<(), ContainerError> {
        // The previous run's exit may be recorded but its run not yet cleaned up (rootfs,
        // state directory): `on_exit` says it is done last, through the snapshot, and does not
        // take the container's lock. A start that came in between (another client's, after a
        // kill) waits for it rather than have its new run torn down by that cleanup.
        let mut snap = c.snapshot.subscribe();
        if tokio::time::timeout(EXIT_CLEANUP_WAIT, snap.wait_for(|s| !s.running))
            .await
            .is_err()
        {
            tracing::warn!("start {}: the previous run's cleanup is still going", c.id);
        }
        // Off the critical path: the grace period the container's first cgroup move waits for.
        self.warm_cgroup_migration();
        let mut record = c.record();
        let id = record.id.clone();
        // A supervisor left from a start berthd never recorded (it was killed meanwhile) would
        // hold the netns, the cgroup and libcontainer's state: end it first.
        self.reap_unstarted(&id).await;
        // A new run: the previous run's exec records go.
        self.drop_execs(&id);
        let t0 = Instant::now();
        if let Some(other) = record
            .host_config
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("container:"))
        {
            match self.share_network_files(c, other) {
                Ok(r) => record = r,
                Err(e) => {
                    self.fail_start(c, &e, 0);
                    return Err(e);
                }
            }
        }
        // Legacy links' variables join the process environment of this run only, before the
        // container's own (which override them, as moby's `CreateDaemonEnvironment`).
        let mut run_record = record.clone();
        match self.link_env(&record) {
            Ok(links) if !links.is_empty() => {
                let mut env = links;
                env.extend(run_record.config.env.take().unwrap_or_default());
                run_record.config.env = Some(env);
            }
            Ok(_) => {}
            Err(e) => {
                self.fail_start(c, &e, 0);
                return Err(e);
            }
        }
        let prepare = |joined: Option<PathBuf>| {
            let this = self.clone();
            let record = run_record.clone();
            tokio::task::spawn_blocking(move || this.prepare_start(&record, joined))
        };
        // A container that joins networks has its endpoints made (veth, addresses, routes,
        // ports) while its rootfs is mounted and its bundle written, and one with `none` its
        // empty namespace: the bundle needs only the namespace's path, where `network_up`
        // makes it, and the supervisor starts after both. Under a remapped root the prepare
        // gives the network files to that root, so it waits for them.
        let mode = record.host_config.network_mode.clone().unwrap_or_default();
        let overlap = super::network::owns_namespace(&mode) && self.userns_of(&record).is_none();
        let (joined, prepared) = if overlap {
            let task = prepare(Some(self.netns_file(&id)));
            let joined = self.network_up(&record).await.map(drop);
            (joined, task.await)
        } else {
            match self.network_up(&record).await {
                Ok(j) => (Ok(()), prepare(j).await),
                Err(e) => {
                    self.fail_start(c, &e, 0);
                    return Err(e);
                }
            }
        };
        let prepared = prepared
            .map_err(|e| ContainerError::internal(format!("prepare task: {e}")))
            .and_then(|p| p);
        let launch = match (joined, prepared) {
            (Ok(_), Ok(cfg)) => cfg,
            (Err(e), _) | (_, Err(e)) => {
                self.fail_start(c, &e, 0);
                return Err(e);
            }
        };
        let t1 = Instant::now();
        let launched = self.runtime.launch(&id, launch).await;
        let t2 = Instant::now();
        let pid = match launched {
            Ok(pid) => pid,
            Err(e) => return Err(self.start_error(c, e)),
        };
        // Watch first, so that an exit right after start is not missed; then hand the
        // waiting attach clients their streams; then start.
        let watch = match self.runtime.watch(&id).await {
            Ok(w) => w,
            Err(e) => return Err(self.start_error(c, e)),
        };
        let pending: Vec<_> = std::mem::take(&mut *lock(&c.pending_attach));
        for (stdin, stdout, stderr, tx) in pending {
            let stream = self.runtime.attach(&id, stdin, stdout, stderr).await.ok();
            let _ = tx.send(stream);
        }
        if let Err(e) = self.runtime.start(&id).await {
            // The process failed to exec: the supervisor reports its exit right after.
            return Err(self.start_error(c, e));
        }
        tracing::debug!(
            "start {id}: prepare {:?}, create {:?}, start {:?}",
            t1 - t0,
            t2 - t1,
            t2.elapsed()
        );
        let generation = {
            let mut g = lock(&c.generation);
            *g += 1;
            *g
        };
        *lock(&c.started) = Some(Instant::now());
        let now = rfc3339_nano(SystemTime::now());
        let saved = self.update(c, |r| {
            r.state.status = Status::Running;
            r.state.pid = pid as i64;
            // Into the buffer the record has: a start allocates nothing that outlives it.
            r.state.started_at.clone_from(&now);
            r.state.has_been_started = true;
            r.state.error.clear();
            r.state.exit_code = 0;
            r.state.oom_killed = false;
            r.state.restart_pending = false;
        });
        // The process runs whatever happened to the record: always watch it.
        if let Err(e) = saved {
            tracing::error!("record the start of {id}: {e}");
        }
        c.snapshot.send_modify(|s| {
            s.running = true;
            s.error.clear();
        });
        self.publish(&c.record(), "start");
        self.spawn_watcher(c.clone(), watch, generation);
        self.health_init(c);
        Ok(())
    }

    /// dockerd's `initializeNetworking` for `--network container:<other>`: the container uses
    /// the other's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` files and takes its host
    /// and domain names (recorded, as dockerd does, so inspect shows them).
    fn share_network_files(&self, c: &Container, other: &str) -> Result<Record, ContainerError> {
        let o = self.get(other)?.record();
        self.update(c, |r| {
            r.hostname_path = o.hostname_path.clone();
            r.hosts_path = o.hosts_path.clone();
            r.resolv_conf_path = o.resolv_conf_path.clone();
            r.config.hostname = o.config.hostname.clone();
            r.config.domainname = o.config.domainname.clone();
        })
    }

    /// Everything before the supervisor: rootfs, namespaces, the OCI bundle (written by the
    /// runtime), and how the supervisor is to run the container.
    pub(super) fn prepare_start(
        &self,
        r: &Record,
        joined_netns: Option<PathBuf>,
    ) -> Result<LaunchOptions, ContainerError> {
        let id = &r.id;
        // The logger's attributes first: a bad `tag` template or regex fails the start before
        // anything is mounted, as dockerd fails it when the logger starts.
        let log = r.log_config()?;
        let log_attrs = log_attributes(r, &log)?;
        self.mount_rootfs(r)?;
        let rootfs = self.rootfs(id);
        spec::prepare_rootfs_as(
            &rootfs,
            r.config.working_dir.as_deref().unwrap_or(""),
            self.userns_of(r),
        )?;
        let h = &r.host_config;
        let net_mode = h.network_mode.clone().unwrap_or_default();
        // berthd makes every private network namespace (network_up), with its endpoints if
        // the container joins networks; the supervisor only joins it by path.
        let network = if net_mode == "host" {
            NsChoice::Host
        } else if let Some(other) = net_mode.strip_prefix("container:") {
            NsChoice::Path(self.namespace_of(other, "net")?)
        } else if let Some(p) = joined_netns {
            NsChoice::Path(p)
        } else {
            return Err(ContainerError::internal(format!(
                "container {id} has no network namespace (network mode {net_mode:?})"
            )));
        };
        let ipc_mode = h.ipc_mode.clone().unwrap_or_default();
        let joined_ipc = match ipc_mode.strip_prefix("container:") {
            Some(other) => Some(self.namespace_of(other, "ipc")?),
            None => None,
        };
        let pid_mode = h.pid_mode.clone().unwrap_or_default();
        let joined_pid = match pid_mode.strip_prefix("container:") {
            Some(other) => Some(self.namespace_of(other, "pid")?),
            None => None,
        };
        let ns = |mode: &str, joined: &Option<PathBuf>| -> NsChoice {
            if mode == "host" {
                NsChoice::Host
            } else if let Some(p) = joined {
                NsChoice::Path(p.clone())
            } else {
                NsChoice::Private
            }
        };
        let ipc = ns(&ipc_mode, &joined_ipc);
        let pid = ns(&pid_mode, &joined_pid);
        let uts = if h.uts_mode.as_deref() == Some("host") {
            NsChoice::Host
        } else {
            NsChoice::Private
        };
        let init_path = if h.init == Some(true) {
            Some(self.init_binary()?)
        } else {
            None
        };
        let mut inputs = self.spec_inputs(r);
        // A failure from here on unmounts them again (`fail_start`).
        inputs.mounts = Some(self.mount_volumes(r)?);
        if let Some(map) = inputs.userns.as_ref() {
            // The container's root walks to its rootfs and files through these directories
            // (0710): their group becomes the remapped root's, as dockerd's remapped root dir.
            for dir in [
                self.cfg.data_root.join("containers"),
                self.container_dir(id),
            ] {
                std::os::unix::fs::chown(&dir, None, Some(map.root().1)).map_err(|e| {
                    ContainerError::io(format!("chgrp {} to the remapped root", dir.display()), e)
                })?;
            }
            remap_owned_files(r, inputs.mounts.as_deref().unwrap_or_default(), map)?;
        }
        let opts = inputs.options(
            r,
            [
                network.as_spec(),
                ipc.as_spec(),
                pid.as_spec(),
                uts.as_spec(),
            ],
            init_path.as_deref(),
        );
        self.runtime.prepare(id, &opts)?;
        let console_size = h
            .console_size
            .as_ref()
            .filter(|v| v.len() == 2 && v[0] > 0 && v[1] > 0)
            .map(|v| [v[0] as u16, v[1] as u16]);
        Ok(LaunchOptions {
            io: ProcessIo {
                log_path: PathBuf::from(&r.log_path),
                log,
                log_attrs,
                tty: r.config.tty.unwrap_or(false),
                open_stdin: r.config.open_stdin.unwrap_or(false),
                stdin_once: r.config.stdin_once.unwrap_or(false),
                console_size,
            },
            cgroup_path: self.cgroup_path(r),
            running: self.counts().1 as usize,
        })
    }

    /// `/proc/<pid>/ns/<kind>` of another running container (`--network container:x`).
    pub(super) fn namespace_of(&self, other: &str, kind: &str) -> Result<PathBuf, ContainerError> {
        let c = self.get(other)?;
        let r = c.record();
        if !r.state.status.is_running() {
            return Err(ContainerError::conflict(format!(
                "cannot join network of a non running container: {}",
                r.id
            )));
        }
        if kind == "net" {
            let p = self.runtime.netns_path(&r.id);
            if p.exists() {
                return Ok(p);
            }
        }
        Ok(PathBuf::from(format!("/proc/{}/ns/{kind}", r.state.pid)))
    }

    pub(super) fn init_binary(&self) -> Result<PathBuf, ContainerError> {
        if let Some(p) = &self.cfg.init_path {
            return if p.exists() {
                Ok(p.clone())
            } else {
                Err(ContainerError::invalid(format!(
                    "docker-init binary not found at {}",
                    p.display()
                )))
            };
        }
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        for name in ["docker-init", "tini-static", "tini"] {
            for dir in path.split(':').chain(["/usr/bin", "/usr/local/bin"]) {
                let p = Path::new(dir).join(name);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(ContainerError::invalid(
            "docker-init binary not found in PATH (install tini or set --init-path)",
        ))
    }

    pub(super) fn mount_rootfs(&self, r: &Record) -> Result<(), ContainerError> {
        let merged = self.rootfs(&r.id);
        if host::is_mounted(&merged) {
            return Ok(());
        }
        let layer = self.layer_dir(&r.id);
        for sub in ["diff", "work", "merged"] {
            ensure_dir(&layer.join(sub), 0o755)
                .map_err(|e| ContainerError::io(format!("create container layer {sub}"), e))?;
        }
        let lowers = match r.chain_id() {
            Some(chain) => self.images.store().lower_dirs(chain)?,
            None => {
                let empty = layer.join("empty");
                ensure_dir(&empty, 0o755)
                    .map_err(|e| ContainerError::io("create empty layer", e))?;
                vec![empty]
            }
        };
        match self.userns_of(r) {
            // Layers and the container's own directory seen through the remapping: nothing is
            // copied or chowned, and the container's writes land with its own ids on disk.
            Some(map) => crate::runtime::idmap::mount_overlay_idmapped(
                &lowers, &layer, "diff", "work", &merged, &map,
            ),
            None => host::mount_overlay(&lowers, &layer.join("diff"), &layer.join("work"), &merged),
        }
        .map_err(|e| ContainerError::io(format!("mount rootfs of {}", r.id), e))
    }

    pub(super) fn unmount_rootfs(&self, id: &str) {
        if let Err(e) = host::unmount(&self.rootfs(id)) {
            tracing::warn!("unmount rootfs of {id}: {e}");
        }
    }

    /// A start that failed before the process ran: record Docker's exit code and error.
    pub(super) fn start_error(
        self: &Arc<Self>,
        c: &Arc<Container>,
        e: RuntimeError,
    ) -> ContainerError {
        let code = e.exit_code();
        let message = if code != 0 {
            format!(
                "failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: {e}: unknown"
            )
        } else {
            format!("failed to create task for container: {e}")
        };
        let err = ContainerError::new(
            if code != 0 {
                ErrorKind::InvalidParameter
            } else {
                ErrorKind::Internal
            },
            message,
        );
        // A supervisor that got as far as the watch stays until its container exits; ask it
        // to finish.
        let runtime = self.runtime.clone();
        let id = c.id.clone();
        tokio::spawn(async move {
            let _ = runtime.signal(&id, 9).await;
        });
        self.fail_start(c, &err, if code != 0 { code as i64 } else { 128 });
        err
    }

    /// Record a start that failed and undo its mounts; its networks are left by
    /// [`ContainerManager::start_locked`], which can wait for that.
    pub(super) fn fail_start(
        self: &Arc<Self>,
        c: &Arc<Container>,
        err: &ContainerError,
        code: i64,
    ) {
        let id = c.id.clone();
        self.unmount_volumes(&c.record());
        self.unmount_rootfs(&id);
        let msg = err.to_string();
        let r = self.update(c, |r| {
            r.state.status = if r.state.has_been_started {
                Status::Exited
            } else {
                Status::Created
            };
            r.state.exit_code = code;
            r.state.error = msg.clone();
            r.state.pid = 0;
            r.state.restart_pending = false;
        });
        c.snapshot.send_modify(|s| {
            s.running = false;
            s.exits += 1;
            s.exit_code = code;
            s.error = msg.clone();
        });
        for (_, _, _, tx) in std::mem::take(&mut *lock(&c.pending_attach)) {
            let _ = tx.send(None);
        }
        if let Ok(r) = r {
            if r.host_config.auto_remove == Some(true) {
                self.spawn_auto_remove(c.clone());
            }
        }
    }
}

/// The host paths a container's OCI spec refers to (the spec options borrow them).
pub(super) struct SpecInputs {
    rootfs: PathBuf,
    hostname: PathBuf,
    hosts: PathBuf,
    resolv_conf: PathBuf,
    cgroup_path: String,
    cgroup_version: crate::runtime::CgroupVersion,
    /// This run's mount points, volumes mounted (else the record's).
    mounts: Option<Vec<MountPoint>>,
    userns: Option<crate::runtime::IdMap>,
}

impl SpecInputs {
    /// The options for `spec::build` / `spec::exec_process`; `ns` is network, ipc, pid, uts.
    pub(super) fn options<'a>(
        &'a self,
        r: &'a Record,
        ns: [spec::Namespace<'a>; 4],
        init_path: Option<&'a Path>,
    ) -> spec::SpecOptions<'a> {
        let [network, ipc, pid, uts] = ns;
        spec::SpecOptions {
            id: &r.id,
            config: &r.config,
            host_config: &r.host_config,
            rootfs: &self.rootfs,
            hostname_path: &self.hostname,
            hosts_path: &self.hosts,
            resolv_conf_path: &self.resolv_conf,
            network,
            ipc,
            pid,
            uts,
            cgroup_path: self.cgroup_path.clone(),
            cgroup_version: self.cgroup_version,
            mounts: match &self.mounts {
                Some(list) => Ok(list),
                None => r.spec_mounts(),
            },
            init_path,
            userns: self.userns.clone(),
        }
    }
}

/// A namespace choice owning its path (the spec options borrow it).
pub(super) enum NsChoice {
    Private,
    Host,
    Path(PathBuf),
}

impl NsChoice {
    pub(super) fn as_spec(&self) -> spec::Namespace<'_> {
        match self {
            NsChoice::Private => spec::Namespace::Private,
            NsChoice::Host => spec::Namespace::Host,
            NsChoice::Path(p) => spec::Namespace::Path(p),
        }
    }
}

/// For a remapped container, what berth made for it belongs to its root, as dockerd makes it
/// in its per-remapping data root: `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`, and the
/// top directory of a named volume still owned by the host's root. Bind-mounted host paths
/// keep their host owners (as with dockerd).
fn remap_owned_files(
    r: &Record,
    mounts: &[MountPoint],
    map: &crate::runtime::IdMap,
) -> Result<(), ContainerError> {
    use std::os::unix::fs::MetadataExt;
    let (uid, gid) = map.root();
    let chown = |p: &Path| -> Result<(), ContainerError> {
        match std::fs::metadata(p) {
            Ok(m) if m.uid() == 0 && m.gid() == 0 => {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| {
                    ContainerError::io(format!("chown {} to the remapped root", p.display()), e)
                })
            }
            _ => Ok(()),
        }
    };
    for f in [&r.hostname_path, &r.hosts_path, &r.resolv_conf_path] {
        if !f.is_empty() {
            chown(Path::new(f))?;
        }
    }
    for m in mounts.iter().filter(|m| m.is_volume()) {
        chown(Path::new(&m.source))?;
    }
    Ok(())
}

/// The attributes json-file records with each entry, from the container as it starts
/// (dockerd's `logger.Info` at the logger's start). The other drivers record none.
fn log_attributes(
    r: &Record,
    log: &crate::logger::LogConfig,
) -> Result<std::collections::BTreeMap<String, String>, ContainerError> {
    if log.driver != crate::logger::Driver::JsonFile {
        return Ok(Default::default());
    }
    let Some(opts) = r
        .host_config
        .log_config
        .as_ref()
        .and_then(|l| l.config.as_ref())
    else {
        return Ok(Default::default());
    };
    let info = crate::logger::attrs::LogInfo {
        id: &r.id,
        name: &r.name,
        image_id: &r.image,
        image_name: r.config.image.as_deref().unwrap_or(""),
        path: &r.path,
        args: &r.args,
        labels: r.config.labels.as_ref(),
        env: r.config.env.as_deref().unwrap_or_default(),
    };
    crate::logger::attrs::attributes(opts, &info)
        .map_err(|e| ContainerError::invalid(format!("failed to initialize logging driver: {e}")))
}
