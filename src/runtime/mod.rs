//! The container runtime: the only module that talks to youki's libcontainer and libcgroups,
//! and the only one that knows the supervisor's files and the OCI spec.
//!
//! - [`Runtime`] (`handle.rs`) is the container manager's handle: the exec-root layout, the
//!   bundle, and every call into a container's supervisor.
//! - `spec`, `user`, `seccomp`: Docker's configuration to an OCI spec.
//! - `supervisor/`: the per-container process (`berthd __supervise`); `proto.rs` its wire
//!   protocol, `client.rs` berthd's side of it.
//! - `host.rs`: host helpers (overlay mounts, network namespaces, process identity).
//! - `stats.rs`: a container's resource usage from its cgroup files and `/proc` (`docker stats`).
//! - This file: cgroup probing for `/info` and live resource updates.

mod client;
mod error;
mod handle;
pub mod host;
pub mod idmap;
pub mod proto;
pub mod seccomp;
mod seccomp_cache;
pub mod spec;
pub mod stats;
mod stdio;
pub mod subtree;
pub mod supervisor;
pub mod user;

pub use client::Watch;
pub use error::RuntimeError;
pub use handle::{ExecProcess, ExecStdio, LaunchOptions, PreparedExec, Runtime, RuntimeConfig};
pub use idmap::IdMap;
pub use proto::{Event, ExitStatus, ProcessIo, SupervisorState};
pub use stdio::{Output, Stdin, StdioConn};

use std::path::{Path, PathBuf};

use libcgroups::common::{get_cgroup_setup, CgroupSetup, DEFAULT_CGROUP_ROOT};
use libcgroups::v1::ControllerType;

/// The name berth reports for its OCI runtime.
pub const RUNTIME_NAME: &str = "libcontainer";

/// The libcontainer version berth is linked with.
pub fn version() -> &'static str {
    env!("BERTH_LIBCONTAINER_VERSION")
}

/// Which cgroup hierarchy controllers live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    /// As `/info` reports it: `"1"` or `"2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "1",
            CgroupVersion::V2 => "2",
        }
    }
}

/// What the host's cgroups can limit, read once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupInfo {
    pub version: CgroupVersion,
    pub memory_limit: bool,
    pub swap_limit: bool,
    pub kernel_memory_tcp: bool,
    pub oom_kill_disable: bool,
    pub cpu_cfs_quota: bool,
    pub cpu_cfs_period: bool,
    pub cpu_shares: bool,
    pub cpuset: bool,
    /// The CPUs and memory nodes a cpuset may name (the root cpuset's lists, as moby's
    /// `sysinfo` reads them), empty without the controller.
    pub cpus: String,
    pub mems: String,
    pub pids_limit: bool,
    pub freezer: bool,
    /// `BlkioWeight` (v1 `blkio.weight`, v2 the `io` controller).
    pub io_weight: bool,
    /// `BlkioWeightDevice` (v1 `blkio.weight_device`, v2 `io`).
    pub io_weight_device: bool,
    /// `BlkioDeviceReadBps`, `…WriteBps`, `…ReadIOps`, `…WriteIOps` (v1 the
    /// `blkio.throttle.*_device` files, v2 `io`).
    pub io_read_bps: bool,
    pub io_write_bps: bool,
    pub io_read_iops: bool,
    pub io_write_iops: bool,
}

impl CgroupInfo {
    /// The `/info` warnings for what is missing, in dockerd's order and words.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let mut check = |ok: bool, text: &str| {
            if !ok {
                w.push(format!("WARNING: {text}"));
            }
        };
        check(self.memory_limit, "No memory limit support");
        check(self.swap_limit, "No swap limit support");
        if self.version == CgroupVersion::V1 {
            check(self.kernel_memory_tcp, "No kernel memory TCP limit support");
            check(self.oom_kill_disable, "No oom kill disable support");
        }
        check(self.cpu_cfs_quota, "No cpu cfs quota support");
        check(self.cpu_cfs_period, "No cpu cfs period support");
        check(self.cpu_shares, "No cpu shares support");
        check(self.cpuset, "No cpuset support");
        // Missing blkio weights are reported on v2 only: on v1 the kernel has lacked them since
        // 5.0 and a user can do nothing about it, so dockerd says nothing.
        let v2 = self.version == CgroupVersion::V2;
        if v2 {
            check(self.io_weight, "No io.weight support");
            check(self.io_weight_device, "No io.weight (per device) support");
        }
        let throttles = [
            (
                self.io_read_bps,
                "io.max (rbps)",
                "blkio throttle.read_bps_device",
            ),
            (
                self.io_write_bps,
                "io.max (wbps)",
                "blkio throttle.write_bps_device",
            ),
            (
                self.io_read_iops,
                "io.max (riops)",
                "blkio throttle.read_iops_device",
            ),
            (
                self.io_write_iops,
                "io.max (wiops)",
                "blkio throttle.write_iops_device",
            ),
        ];
        for (ok, on_v2, on_v1) in throttles {
            check(
                ok,
                &format!("No {} support", if v2 { on_v2 } else { on_v1 }),
            );
        }
        w
    }
}

fn cgroup_manager(cgroup_path: &str) -> Result<libcgroups::common::AnyCgroupManager, String> {
    libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
        cgroup_path: PathBuf::from(cgroup_path),
        systemd_cgroup: false,
        container_name: String::new(),
    })
    .map_err(|e| format!("open cgroup {cgroup_path}: {e}"))
}

/// Apply the resources of `spec` to a running container's cgroup (`docker update`). Only file
/// writes: safe from berthd's threads.
fn update_resources(cgroup_path: &str, spec: &oci_spec::runtime::Spec) -> Result<(), String> {
    use libcgroups::common::{CgroupManager, ControllerOpt};
    let Some(resources) = spec.linux().as_ref().and_then(|l| l.resources().clone()) else {
        return Ok(());
    };
    let disable_oom_killer = resources
        .memory()
        .as_ref()
        .and_then(|m| m.disable_oom_killer())
        .unwrap_or(false);
    cgroup_manager(cgroup_path)?
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer,
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| format!("update cgroup {cgroup_path}: {e}"))
}

/// The pids in a container's cgroup and the cgroups below it (`docker top`), read from the
/// `cgroup.procs` files of one hierarchy (v1: the devices controller's, as libcgroups reads
/// them). Found from the mount points read once per process: a libcgroups manager would read
/// the whole mount table for every controller, per call.
fn cgroup_pids(cgroup_path: &str) -> Vec<i32> {
    let rel = cgroup_path.trim_start_matches('/');
    let dir = match cgroup_version() {
        CgroupVersion::V2 => Some(Path::new(DEFAULT_CGROUP_ROOT).join(rel)),
        CgroupVersion::V1 => [
            ControllerType::Devices,
            ControllerType::Pids,
            ControllerType::Memory,
        ]
        .into_iter()
        .find_map(v1_mount_point)
        .map(|m| m.join(rel)),
    };
    let mut pids = Vec::new();
    if let Some(dir) = dir {
        procs_below(&dir, &mut pids, 0);
    }
    pids
}

/// Append the pids of `dir`'s `cgroup.procs` and of every cgroup below it.
fn procs_below(dir: &Path, out: &mut Vec<i32>, depth: usize) {
    // Nesting is bounded by the kernel's own limits; this only guards the recursion.
    if depth > 64 {
        return;
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            procs_below(&e.path(), out, depth + 1);
        }
    }
}

/// Remove what a supervisor that died left of a container: libcontainer's record and the
/// cgroup (killing what is left in it). No process is cloned, so berthd may call this.
fn remove_stale_container(lc_root: &Path, id: &str) -> Result<(), String> {
    supervisor::lc::delete_stale(lc_root, id)
}

/// Which hierarchy holds the controllers on this host.
pub fn cgroup_version() -> CgroupVersion {
    match get_cgroup_setup() {
        Ok(CgroupSetup::Unified) => CgroupVersion::V2,
        _ => CgroupVersion::V1,
    }
}

/// Probe the host's cgroups.
pub fn probe_cgroups() -> CgroupInfo {
    match get_cgroup_setup() {
        Ok(CgroupSetup::Unified) => probe_v2(Path::new(DEFAULT_CGROUP_ROOT)),
        // Hybrid hosts keep their controllers on v1, as dockerd treats them.
        Ok(CgroupSetup::Legacy) | Ok(CgroupSetup::Hybrid) | Err(_) => probe_v1(),
    }
}

/// The v1 controllers' mount points, from one read of `/proc/self/mountinfo` for them all
/// (libcgroups' `get_subsystem_mount_point` reads and parses the whole file per controller,
/// which was half of berthd's start-up instructions). Read once per process.
pub(crate) fn v1_mount_point(c: ControllerType) -> Option<PathBuf> {
    v1_mount_point_named(c.as_ref())
}

fn v1_mount_point_named(name: &str) -> Option<PathBuf> {
    v1_mount_points()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.clone())
}

/// Every v1 controller berth knows with its mount point, in [`V1_CONTROLLERS`]' order.
fn v1_mount_points() -> &'static [(String, PathBuf)] {
    static MOUNTS: std::sync::OnceLock<Vec<(String, PathBuf)>> = std::sync::OnceLock::new();
    MOUNTS.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let cgroups = cgroup_v1_mounts(&text);
        V1_CONTROLLERS
            .iter()
            .filter_map(|name| Some((name.to_string(), pick_v1_mount(&cgroups, name)?)))
            .collect()
    })
}

/// Start the kernel's wait for an RCU grace period that the first move of a process into a
/// cgroup pays, so that it overlaps berthd's and the supervisor's work before libcontainer's
/// move of the new container's process instead of following it.
///
/// A write into a `cgroup.procs` file takes the cgroup threadgroup semaphore for writing; a
/// writer that finds it idle first waits for a full RCU grace period (`rcu_sync_enter`, 8–17
/// ms on the test machine), and writers that follow within about one more grace period do not
/// (docs/benchmarks.md, *Where a container's create goes now*). This writes berthd's own pid
/// into the `cgroup.procs` of the cgroup it is already in: a move to where it is, which
/// changes nothing but takes the semaphore. Blocking for that grace period: run it on a
/// thread of its own, when a container is created and when its start begins. A failure
/// changes nothing and is ignored.
pub fn warm_cgroup_migration() {
    if let Some(p) = own_procs() {
        let _ = std::fs::write(p, std::process::id().to_string());
    }
}

/// The `cgroup.procs` of berthd's own cgroup, found once.
fn own_procs() -> Option<&'static PathBuf> {
    static OWN_PROCS: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    OWN_PROCS
        .get_or_init(|| {
            let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            own_procs_file(&own, cgroup_version(), v1_mount_point_named)
        })
        .as_ref()
}

/// The `cgroup.procs` of the process's own cgroup, from its `/proc/self/cgroup`: the v2 one, or
/// the memory controller's (any v1 hierarchy would do: the semaphore is global).
fn own_procs_file(
    own: &str,
    version: CgroupVersion,
    mount_of: impl Fn(&str) -> Option<PathBuf>,
) -> Option<PathBuf> {
    let dir = match version {
        CgroupVersion::V2 => {
            Path::new(DEFAULT_CGROUP_ROOT).join(own_cgroup_in(own, str::is_empty)?)
        }
        CgroupVersion::V1 => {
            let rel = own_cgroup_in(own, |c| c.split(',').any(|c| c == "memory"))?;
            mount_of("memory")?.join(rel)
        }
    };
    Some(dir.join("cgroup.procs"))
}

/// A process's cgroup (without the leading `/`) in the hierarchy whose controller list
/// `controllers` accepts, from its `/proc/<pid>/cgroup` text (`id:controllers:path` lines; the
/// v2 hierarchy's list is empty).
fn own_cgroup_in(text: &str, controllers: impl Fn(&str) -> bool) -> Option<&str> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers(list).then(|| path.trim_start_matches('/'))
    })
}

/// The directories of the cgroup `cgroup_path` (absolute, e.g. `/berth/<id>`): the v2 one, or
/// one in each v1 hierarchy libcgroups makes it in (every controller's mount, co-mounted
/// controllers once). The supervisor removes them when its container ends, without reading
/// the mount table (see `supervisor::lc::release`).
pub(crate) fn cgroup_dirs(version: CgroupVersion, cgroup_path: &str) -> Vec<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    match version {
        CgroupVersion::V2 => vec![Path::new(DEFAULT_CGROUP_ROOT).join(rel)],
        CgroupVersion::V1 => dirs_under(v1_mount_points().iter().map(|(_, m)| m), rel),
    }
}

/// `rel` under each of `mounts`, each directory once.
fn dirs_under<'a>(mounts: impl Iterator<Item = &'a PathBuf>, rel: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for m in mounts {
        let dir = m.join(rel);
        if !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

/// The file that counts the cgroup's OOM kills: v2 `memory.events`, v1 `memory.oom_control`.
pub(crate) fn oom_file(version: CgroupVersion, cgroup_path: &str) -> Option<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    match version {
        CgroupVersion::V2 => Some(
            Path::new(DEFAULT_CGROUP_ROOT)
                .join(rel)
                .join("memory.events"),
        ),
        CgroupVersion::V1 => {
            v1_mount_point(ControllerType::Memory).map(|m| m.join(rel).join("memory.oom_control"))
        }
    }
}

/// The controllers berth looks up (libcgroups' names).
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "pids",
    "freezer",
    "blkio",
    "devices",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
];

/// The mount points of the `cgroup` (v1) file systems, in mountinfo's order: one pass.
fn cgroup_v1_mounts(mountinfo: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // `id parent major:minor root mount-point options [optional…] - fstype source super`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split(' ').next() != Some("cgroup") {
            continue;
        }
        if let Some(point) = left.split(' ').nth(4) {
            out.push(PathBuf::from(crate::util::fs::unescape_mountinfo(point)));
        }
    }
    out
}

/// libcgroups' `get_subsystem_mount_point` over the cgroup mounts: the first whose mount
/// point's last component names the controller (`cpu` and `cpuacct` also in `cpu,cpuacct`,
/// `net_cls`/`net_prio` also in either pairing).
fn pick_v1_mount(cgroups: &[PathBuf], controller: &str) -> Option<PathBuf> {
    let names: &[&str] = match controller {
        "net_cls" => &["net_cls,net_prio", "net_prio,net_cls", "net_cls"],
        "net_prio" => &["net_cls,net_prio", "net_prio,net_cls", "net_prio"],
        "cpu" => &["cpu,cpuacct", "cpu"],
        "cpuacct" => &["cpu,cpuacct", "cpuacct"],
        _ => &[],
    };
    cgroups
        .iter()
        .find(|point| {
            if names.is_empty() {
                point.ends_with(controller)
            } else {
                names.iter().any(|n| point.ends_with(n))
            }
        })
        .cloned()
}

fn probe_v1() -> CgroupInfo {
    let mount = v1_mount_point;
    let has = |c: ControllerType, file: &str| mount(c).is_some_and(|m| m.join(file).exists());
    CgroupInfo {
        version: CgroupVersion::V1,
        memory_limit: has(ControllerType::Memory, "memory.limit_in_bytes"),
        swap_limit: has(ControllerType::Memory, "memory.memsw.limit_in_bytes"),
        kernel_memory_tcp: has(ControllerType::Memory, "memory.kmem.tcp.limit_in_bytes"),
        oom_kill_disable: has(ControllerType::Memory, "memory.oom_control"),
        cpu_cfs_quota: has(ControllerType::Cpu, "cpu.cfs_quota_us"),
        cpu_cfs_period: has(ControllerType::Cpu, "cpu.cfs_period_us"),
        cpu_shares: has(ControllerType::Cpu, "cpu.shares"),
        cpuset: has(ControllerType::CpuSet, "cpuset.cpus"),
        cpus: read_list(mount(ControllerType::CpuSet).map(|m| m.join("cpuset.cpus"))),
        mems: read_list(mount(ControllerType::CpuSet).map(|m| m.join("cpuset.mems"))),
        pids_limit: mount(ControllerType::Pids).is_some(),
        freezer: has(ControllerType::Freezer, "freezer.state")
            || mount(ControllerType::Freezer).is_some(),
        io_weight: has(ControllerType::Blkio, "blkio.weight"),
        io_weight_device: has(ControllerType::Blkio, "blkio.weight_device"),
        io_read_bps: has(ControllerType::Blkio, "blkio.throttle.read_bps_device"),
        io_write_bps: has(ControllerType::Blkio, "blkio.throttle.write_bps_device"),
        io_read_iops: has(ControllerType::Blkio, "blkio.throttle.read_iops_device"),
        io_write_iops: has(ControllerType::Blkio, "blkio.throttle.write_iops_device"),
    }
}

fn probe_v2(root: &Path) -> CgroupInfo {
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    // The root cgroup has no interface files of its own: look at a child for memory.swap.max.
    let swap = own_v2_cgroup(root)
        .into_iter()
        .chain(first_child(root))
        .any(|dir| dir.join("memory.swap.max").exists());
    CgroupInfo {
        version: CgroupVersion::V2,
        memory_limit: has("memory"),
        swap_limit: has("memory") && swap,
        kernel_memory_tcp: false,
        oom_kill_disable: false,
        cpu_cfs_quota: has("cpu"),
        cpu_cfs_period: has("cpu"),
        cpu_shares: has("cpu"),
        cpuset: has("cpuset"),
        cpus: read_list(Some(root.join("cpuset.cpus.effective"))),
        mems: read_list(Some(root.join("cpuset.mems.effective"))),
        pids_limit: has("pids"),
        freezer: true,
        io_weight: has("io"),
        io_weight_device: has("io"),
        io_read_bps: has("io"),
        io_write_bps: has("io"),
        io_read_iops: has("io"),
        io_write_iops: has("io"),
    }
}

/// A cpuset list file's content (`0-1`), empty when it cannot be read.
fn read_list(path: Option<PathBuf>) -> String {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn own_v2_cgroup(root: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own_cgroup_in(&text, str::is_empty)?;
    (!rel.is_empty()).then(|| root.join(rel))
}

fn first_child(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_procs_file_is_the_memory_or_unified_cgroups() {
        let v1 =
            "12:pids:/user.slice\n4:memory:/system.slice/berth.service\n1:name=systemd:/x\n0::/y\n";
        let mount = |c: &str| Some(PathBuf::from(format!("/sys/fs/cgroup/{c}")));
        assert_eq!(
            own_procs_file(v1, CgroupVersion::V1, mount),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/system.slice/berth.service/cgroup.procs"
            ))
        );
        assert_eq!(own_procs_file(v1, CgroupVersion::V1, |_| None), None);
        assert_eq!(
            own_procs_file("0::/system.slice/berth.service\n", CgroupVersion::V2, mount),
            Some(PathBuf::from(
                "/sys/fs/cgroup/system.slice/berth.service/cgroup.procs"
            ))
        );
        assert_eq!(own_procs_file("", CgroupVersion::V2, mount), None);
        // On this host: the file exists and lists this process, and the warm-up's write of
        // our own pid leaves us where we were.
        if let Some(p) = own_procs() {
            let me = std::process::id().to_string();
            let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
            assert!(std::fs::read_to_string(p).unwrap().lines().any(|l| l == me));
            warm_cgroup_migration();
            assert_eq!(
                std::fs::read_to_string("/proc/self/cgroup").unwrap(),
                before
            );
        }
    }

    #[test]
    fn cgroup_dirs_name_each_hierarchy_once() {
        let mounts = [
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
            PathBuf::from("/sys/fs/cgroup/memory"),
        ];
        assert_eq!(
            dirs_under(mounts.iter(), "berth/abc"),
            [
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/berth/abc"),
                PathBuf::from("/sys/fs/cgroup/memory/berth/abc"),
            ]
        );
        let v2 = cgroup_dirs(CgroupVersion::V2, "/berth/abc");
        assert_eq!(v2, [PathBuf::from("/sys/fs/cgroup/berth/abc")]);
        assert_eq!(
            oom_file(CgroupVersion::V2, "/berth/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/berth/abc/memory.events"))
        );
        // On this host: the memory controller's directory is among the dirs, and the OOM
        // counter lives in it.
        if probe_cgroups().version == CgroupVersion::V1 {
            if let Some(oom) = oom_file(CgroupVersion::V1, "/berth/abc") {
                let dirs = cgroup_dirs(CgroupVersion::V1, "/berth/abc");
                assert!(
                    dirs.iter().any(|d| oom.parent() == Some(d.as_path())),
                    "{dirs:?}"
                );
            }
        }
    }

    #[test]
    fn probes_this_host() {
        let info = probe_cgroups();
        // Every Linux host we run on has at least the memory controller in some form.
        let expect = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        };
        assert_eq!(info.version, expect);
        assert!(!version().is_empty());
    }

    #[test]
    fn v1_mounts_from_one_pass() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
37 31 0:34 / /mnt/my\\040cg/pids rw - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let mounts = cgroup_v1_mounts(text);
        let p = |c| pick_v1_mount(&mounts, c).map(|p| p.display().to_string());
        assert_eq!(p("cpu").as_deref(), Some("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(p("cpuacct").as_deref(), Some("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(p("memory").as_deref(), Some("/sys/fs/cgroup/memory"));
        assert_eq!(
            p("net_prio").as_deref(),
            Some("/sys/fs/cgroup/net_cls,net_prio")
        );
        assert_eq!(p("pids").as_deref(), Some("/mnt/my cg/pids"));
        assert_eq!(p("blkio"), None);
        // The same answers as libcgroups' own lookup on this host.
        for c in [
            ControllerType::Cpu,
            ControllerType::CpuAcct,
            ControllerType::Memory,
            ControllerType::Pids,
            ControllerType::Blkio,
            ControllerType::Freezer,
            ControllerType::CpuSet,
        ] {
            assert_eq!(
                v1_mount_point(c),
                libcgroups::v1::util::get_subsystem_mount_point(&c).ok(),
                "{c}"
            );
        }
    }

    #[test]
    fn warnings_follow_dockerd() {
        let info = CgroupInfo {
            version: CgroupVersion::V1,
            memory_limit: true,
            swap_limit: false,
            kernel_memory_tcp: true,
            oom_kill_disable: true,
            cpu_cfs_quota: true,
            cpu_cfs_period: true,
            cpu_shares: true,
            cpuset: false,
            cpus: String::new(),
            mems: String::new(),
            pids_limit: true,
            freezer: true,
            io_weight: false,
            io_weight_device: false,
            io_read_bps: true,
            io_write_bps: false,
            io_read_iops: true,
            io_write_iops: true,
        };
        assert_eq!(
            info.warnings(),
            vec![
                "WARNING: No swap limit support",
                "WARNING: No cpuset support",
                "WARNING: No blkio throttle.write_bps_device support",
            ]
        );
    }
}
