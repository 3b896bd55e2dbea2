//! Resource usage of a running container (`docker stats`), read straight from its cgroup's
//! files (v1 controllers or the v2 unified directory) and from `/proc`.
//!
//! Every file is optional: a missing or unreadable one (no swap accounting, no CFQ blkio files,
//! a cgroup already gone) only leaves its fields out. libcgroups' `stats()` is not used because
//! it fails as a whole when one file is missing.
//!
//! A [`StatsSource`] is resolved once per stream (which directories, which blkio files exist);
//! each [`StatsSource::sample`] then reads a handful of small files. Blocking: call it from
//! `spawn_blocking`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libcgroups::common::DEFAULT_CGROUP_ROOT;
use libcgroups::v1::ControllerType;

use super::CgroupVersion;

/// One line of a blkio file: device, operation, value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// CPU time used by the cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuRaw {
    /// Nanoseconds.
    pub total: u64,
    pub kernel: u64,
    pub user: u64,
    /// Per CPU, nanoseconds (cgroup v1 only).
    pub percpu: Option<Vec<u64>>,
    pub periods: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
}

/// Memory of the cgroup. `limit` is already capped at the host's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryRaw {
    pub usage: Option<u64>,
    pub max_usage: Option<u64>,
    pub limit: Option<u64>,
    pub failcnt: Option<u64>,
    /// `memory.stat` as the kernel prints it.
    pub stats: HashMap<String, u64>,
}

/// Block I/O, in moby's field names. On v2 only `service_bytes` is filled (from `io.stat`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioRaw {
    pub service_bytes: Option<Vec<BlkioEntry>>,
    pub serviced: Option<Vec<BlkioEntry>>,
    pub queued: Option<Vec<BlkioEntry>>,
    pub service_time: Option<Vec<BlkioEntry>>,
    pub wait_time: Option<Vec<BlkioEntry>>,
    pub merged: Option<Vec<BlkioEntry>>,
    pub time: Option<Vec<BlkioEntry>>,
    pub sectors: Option<Vec<BlkioEntry>>,
}

/// Counters of one network interface (`/proc/<pid>/net/dev`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// One sample of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawStats {
    pub cgroup_version: Option<CgroupVersion>,
    pub cpu: CpuRaw,
    pub memory: MemoryRaw,
    pub blkio: BlkioRaw,
    pub pids_current: Option<u64>,
    pub pids_limit: Option<u64>,
    /// Per interface except `lo`, when asked for.
    pub networks: Option<Vec<(String, NetDev)>>,
    /// The host's CPU time in nanoseconds (`/proc/stat`), read right after the cgroup.
    pub system_cpu_usage: Option<u64>,
    pub online_cpus: Option<u32>,
}

/// Which blkio files of a v1 cgroup exist (probed once: the kernel's scheduler decides).
#[derive(Debug, Clone, Default)]
struct BlkioFiles {
    /// `(field, file)`: the throttle files stand in when the CFQ ones are missing.
    files: Vec<(BlkioField, PathBuf)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlkioField {
    ServiceBytes,
    Serviced,
    Queued,
    ServiceTime,
    WaitTime,
    Merged,
    Time,
    Sectors,
}

/// The directories of a v1 container's controllers.
#[derive(Debug, Clone, Default)]
pub struct V1Dirs {
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub blkio: Option<PathBuf>,
    pub pids: Option<PathBuf>,
}

#[derive(Debug, Clone)]
enum Layout {
    V1(V1Dirs, BlkioFiles),
    V2(PathBuf),
}

/// Where one container's figures are read from.
#[derive(Debug, Clone)]
pub struct StatsSource {
    layout: Layout,
    proc_root: PathBuf,
    host_memory: u64,
}

impl StatsSource {
    /// A v1 container whose controllers are at `dirs`.
    pub fn v1(dirs: V1Dirs) -> StatsSource {
        let blkio = probe_blkio(dirs.blkio.as_deref());
        StatsSource::v1_with(dirs, blkio)
    }

    fn v1_with(dirs: V1Dirs, blkio: BlkioFiles) -> StatsSource {
        StatsSource {
            layout: Layout::V1(dirs, blkio),
            proc_root: PathBuf::from("/proc"),
            host_memory: host_memory(),
        }
    }

    /// A v2 container whose cgroup directory is `dir`.
    pub fn v2(dir: PathBuf) -> StatsSource {
        StatsSource {
            layout: Layout::V2(dir),
            proc_root: PathBuf::from("/proc"),
            host_memory: host_memory(),
        }
    }

    /// The container `cgroup_path` (e.g. `/berth/<id>`) on this host's hierarchy.
    pub fn for_cgroup(version: CgroupVersion, cgroup_path: &str) -> StatsSource {
        let rel = cgroup_path.trim_start_matches('/');
        match version {
            CgroupVersion::V2 => StatsSource::v2(Path::new(DEFAULT_CGROUP_ROOT).join(rel)),
            CgroupVersion::V1 => {
                let m = v1_mounts();
                let at = |p: &Option<PathBuf>| p.as_ref().map(|m| m.join(rel));
                let blkio_dir = at(&m.blkio);
                let blkio = host_blkio(blkio_dir.as_deref());
                StatsSource::v1_with(
                    V1Dirs {
                        cpu: at(&m.cpu),
                        cpuacct: at(&m.cpuacct),
                        memory: at(&m.memory),
                        blkio: blkio_dir,
                        pids: at(&m.pids),
                    },
                    blkio,
                )
            }
        }
    }

    /// Read `/proc` somewhere else (tests).
    pub fn with_proc_root(mut self, root: PathBuf) -> Self {
        self.proc_root = root;
        self
    }

    /// Cap unlimited memory at this much (tests).
    pub fn with_host_memory(mut self, bytes: u64) -> Self {
        self.host_memory = bytes;
        self
    }

    /// One sample; `net_pid` is a process in the container's network namespace whose
    /// interfaces are reported (`None`: no `networks`). Reads only files the kernel makes up
    /// on the spot (cgroup and `/proc`), never a disk: callers read it in async tasks.
    pub fn sample(&self, net_pid: Option<i32>) -> RawStats {
        let mut s = match &self.layout {
            Layout::V1(dirs, blkio) => sample_v1(dirs, blkio),
            Layout::V2(dir) => sample_v2(dir),
        };
        if let Some(limit) = s.memory.limit {
            if self.host_memory > 0 && limit > self.host_memory {
                s.memory.limit = Some(self.host_memory);
            }
        }
        if let Some((usage, cpus)) = system_cpu_usage_at(&self.proc_root.join("stat")) {
            s.system_cpu_usage = Some(usage);
            s.online_cpus = Some(cpus);
        }
        if let Some(pid) = net_pid {
            let path = self.proc_root.join(pid.to_string()).join("net/dev");
            s.networks = read(&path).map(|t| parse_net_dev(&t));
        }
        s
    }
}

/// The v1 controllers' mount points, found once.
#[derive(Debug, Default)]
struct V1Mounts {
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    memory: Option<PathBuf>,
    blkio: Option<PathBuf>,
    pids: Option<PathBuf>,
}

fn v1_mounts() -> &'static V1Mounts {
    static MOUNTS: OnceLock<V1Mounts> = OnceLock::new();
    MOUNTS.get_or_init(|| {
        let m = super::v1_mount_point;
        V1Mounts {
            cpu: m(ControllerType::Cpu),
            cpuacct: m(ControllerType::CpuAcct),
            memory: m(ControllerType::Memory),
            blkio: m(ControllerType::Blkio),
            pids: m(ControllerType::Pids),
        }
    })
}

/// The host's memory in bytes (`MemTotal`), read once.
pub fn host_memory() -> u64 {
    static MEM: OnceLock<u64> = OnceLock::new();
    *MEM.get_or_init(|| {
        read(Path::new("/proc/meminfo"))
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    })
}

/// The host's CPU time in nanoseconds and its number of online CPUs, from `/proc/stat` (as
/// moby: the first seven fields of the `cpu` line at 100 ticks a second; `cpuN` lines counted).
pub fn system_cpu_usage() -> Option<(u64, u32)> {
    system_cpu_usage_at(Path::new("/proc/stat"))
}

fn system_cpu_usage_at(path: &Path) -> Option<(u64, u32)> {
    parse_proc_stat(&read(path)?)
}

const NANOS_PER_TICK: u64 = 1_000_000_000 / 100;

fn parse_proc_stat(text: &str) -> Option<(u64, u32)> {
    let mut usage = None;
    let mut cpus = 0u32;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            break;
        };
        if rest.starts_with(' ') {
            let fields: Vec<u64> = rest
                .split_whitespace()
                .take(7)
                .filter_map(|f| f.parse().ok())
                .collect();
            if fields.len() < 7 {
                return None;
            }
            usage = Some(fields.iter().sum::<u64>() * NANOS_PER_TICK);
        } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
            cpus += 1;
        }
    }
    usage.map(|u| (u, cpus))
}

/// The whole of a small pseudo-file. Read through a plain `Read` (no size hint): `fs::read`
/// would first `statx` the file and seek in it, and cgroup and `/proc` files report no useful
/// size. With `docker stats` asking for hundreds of containers at once, those were a third of
/// a sample's system calls.
fn read(path: &Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut buf = Vec::with_capacity(4096);
    f.take(MAX_FILE).read_to_end(&mut buf).ok()?;
    String::from_utf8(buf).ok()
}

/// Larger than any cgroup or `/proc` file read here (`memory.stat` is about 1.5 KB).
const MAX_FILE: u64 = 1 << 20;

/// A file holding one number; `max` (v2's "no limit") is `max_value`.
fn read_u64(path: &Path, max_value: u64) -> Option<u64> {
    let t = read(path)?;
    let t = t.trim();
    if t == "max" {
        return Some(max_value);
    }
    t.parse().ok()
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `cpuacct.stat`).
fn parse_flat_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let k = f.next()?;
            let v = f.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

fn read_keyed(path: &Path) -> Option<HashMap<String, u64>> {
    read(path).map(|t| parse_flat_keyed(&t))
}

/// The blkio files in `dir`.
fn probe_blkio(dir: Option<&Path>) -> BlkioFiles {
    let Some(dir) = dir else {
        return BlkioFiles::default();
    };
    blkio_files(dir, &probe_blkio_names(dir))
}

/// The host's blkio files (the same in every blkio cgroup of the hierarchy: which ones
/// depends on the kernel's I/O schedulers), probed in the first container's directory that has
/// any, then kept: a probe per `docker stats` request was 8 `statx` calls, most of them
/// failing. A scheduler module loaded later shows its files after berthd's next start.
fn host_blkio(dir: Option<&Path>) -> BlkioFiles {
    static NAMES: OnceLock<Vec<(BlkioField, &'static str)>> = OnceLock::new();
    let Some(dir) = dir else {
        return BlkioFiles::default();
    };
    if let Some(names) = NAMES.get() {
        return blkio_files(dir, names);
    }
    let found = probe_blkio_names(dir);
    // A directory already gone (the container ended) has none: not kept.
    if found.is_empty() {
        return BlkioFiles::default();
    }
    blkio_files(dir, NAMES.get_or_init(|| found))
}

fn blkio_files(dir: &Path, names: &[(BlkioField, &'static str)]) -> BlkioFiles {
    BlkioFiles {
        files: names.iter().map(|(f, n)| (*f, dir.join(n))).collect(),
    }
}

fn probe_blkio_names(dir: &Path) -> Vec<(BlkioField, &'static str)> {
    // The CFQ files are there only with that scheduler; the throttle ones always count.
    let candidates: &[(BlkioField, &[&str])] = &[
        (
            BlkioField::ServiceBytes,
            &[
                "blkio.io_service_bytes_recursive",
                "blkio.throttle.io_service_bytes_recursive",
            ],
        ),
        (
            BlkioField::Serviced,
            &[
                "blkio.io_serviced_recursive",
                "blkio.throttle.io_serviced_recursive",
            ],
        ),
        (BlkioField::Queued, &["blkio.io_queued_recursive"]),
        (
            BlkioField::ServiceTime,
            &["blkio.io_service_time_recursive"],
        ),
        (BlkioField::WaitTime, &["blkio.io_wait_time_recursive"]),
        (BlkioField::Merged, &["blkio.io_merged_recursive"]),
        (BlkioField::Time, &["blkio.time_recursive"]),
        (BlkioField::Sectors, &["blkio.sectors_recursive"]),
    ];
    let mut found = Vec::new();
    for (field, names) in candidates {
        if let Some(n) = names.iter().find(|n| dir.join(n).exists()) {
            found.push((*field, *n));
        }
    }
    found
}

/// A v1 blkio file: `MAJ:MIN Op value` lines (`Total` lines skipped), or `MAJ:MIN value` for
/// the files without an operation (`time`, `sectors`).
fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, value) = match f.as_slice() {
            [dev, op, value] => (*dev, *op, *value),
            [dev, value] if *dev != "Total" => (*dev, "", *value),
            _ => continue,
        };
        let Some((major, minor)) = parse_dev(dev) else {
            continue;
        };
        let Ok(value) = value.parse() else { continue };
        out.push(BlkioEntry {
            major,
            minor,
            op: op.to_string(),
            value,
        });
    }
    out
}

fn parse_dev(dev: &str) -> Option<(u64, u64)> {
    let (a, b) = dev.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. ...`, mapped as moby does: a `read` and a
/// `write` entry per device.
fn parse_io_stat(text: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(parse_dev) else {
            continue;
        };
        let (mut r, mut w) = (0, 0);
        for kv in f {
            match kv.split_once('=') {
                Some(("rbytes", v)) => r = v.parse().unwrap_or(0),
                Some(("wbytes", v)) => w = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        for (op, value) in [("read", r), ("write", w)] {
            out.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    out
}

/// `/proc/<pid>/net/dev`: every interface but `lo`.
fn parse_net_dev(text: &str) -> Vec<(String, NetDev)> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" || name.is_empty() {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if v.len() < 12 {
            continue;
        }
        out.push((
            name.to_string(),
            NetDev {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            },
        ));
    }
    out
}

fn sample_v1(d: &V1Dirs, blkio: &BlkioFiles) -> RawStats {
    let mut s = RawStats {
        cgroup_version: Some(CgroupVersion::V1),
        ..RawStats::default()
    };
    if let Some(dir) = &d.cpuacct {
        s.cpu.total = read_u64(&dir.join("cpuacct.usage"), 0).unwrap_or(0);
        s.cpu.percpu = read(&dir.join("cpuacct.usage_percpu")).map(|t| {
            t.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        });
        if let Some(st) = read_keyed(&dir.join("cpuacct.stat")) {
            s.cpu.user = st.get("user").copied().unwrap_or(0) * NANOS_PER_TICK;
            s.cpu.kernel = st.get("system").copied().unwrap_or(0) * NANOS_PER_TICK;
        }
    }
    if let Some(st) = d
        .cpu
        .as_ref()
        .and_then(|dir| read_keyed(&dir.join("cpu.stat")))
    {
        s.cpu.periods = st.get("nr_periods").copied().unwrap_or(0);
        s.cpu.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
        s.cpu.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
    }
    if let Some(dir) = &d.memory {
        s.memory.usage = read_u64(&dir.join("memory.usage_in_bytes"), u64::MAX);
        s.memory.max_usage = read_u64(&dir.join("memory.max_usage_in_bytes"), u64::MAX);
        s.memory.limit = read_u64(&dir.join("memory.limit_in_bytes"), u64::MAX);
        s.memory.failcnt = read_u64(&dir.join("memory.failcnt"), 0);
        s.memory.stats = read_keyed(&dir.join("memory.stat")).unwrap_or_default();
    }
    for (field, path) in &blkio.files {
        let Some(text) = read(path) else { continue };
        let entries = Some(parse_blkio_v1(&text));
        let b = &mut s.blkio;
        match field {
            BlkioField::ServiceBytes => b.service_bytes = entries,
            BlkioField::Serviced => b.serviced = entries,
            BlkioField::Queued => b.queued = entries,
            BlkioField::ServiceTime => b.service_time = entries,
            BlkioField::WaitTime => b.wait_time = entries,
            BlkioField::Merged => b.merged = entries,
            BlkioField::Time => b.time = entries,
            BlkioField::Sectors => b.sectors = entries,
        }
    }
    if let Some(dir) = &d.pids {
        s.pids_current = read_u64(&dir.join("pids.current"), 0);
        // containerd's v1 reader: "max" is no limit, 0.
        s.pids_limit = read_u64(&dir.join("pids.max"), 0);
    }
    s
}

fn sample_v2(dir: &Path) -> RawStats {
    let mut s = RawStats {
        cgroup_version: Some(CgroupVersion::V2),
        ..RawStats::default()
    };
    if let Some(st) = read_keyed(&dir.join("cpu.stat")) {
        let g = |k: &str| st.get(k).copied().unwrap_or(0);
        s.cpu.total = g("usage_usec") * 1000;
        s.cpu.user = g("user_usec") * 1000;
        s.cpu.kernel = g("system_usec") * 1000;
        s.cpu.periods = g("nr_periods");
        s.cpu.throttled_periods = g("nr_throttled");
        s.cpu.throttled_time = g("throttled_usec") * 1000;
    }
    s.memory.usage = read_u64(&dir.join("memory.current"), u64::MAX);
    s.memory.limit = read_u64(&dir.join("memory.max"), u64::MAX);
    s.memory.stats = read_keyed(&dir.join("memory.stat")).unwrap_or_default();
    // moby: failcnt is the "oom" count of memory.events.
    s.memory.failcnt = read_keyed(&dir.join("memory.events")).and_then(|e| e.get("oom").copied());
    s.blkio.service_bytes = read(&dir.join("io.stat")).map(|t| parse_io_stat(&t));
    s.pids_current = read_u64(&dir.join("pids.current"), 0);
    // containerd's v2 reader reports "max" as the largest value.
    s.pids_limit = read_u64(&dir.join("pids.max"), u64::MAX);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    fn fake_proc(root: &Path) {
        write(
            root,
            "stat",
            "cpu  100 0 50 800 10 0 40 0 0 0\ncpu0 50 0 25 400 5 0 20 0 0 0\ncpu1 50 0 25 400 5 0 20 0 0 0\nintr 1 2 3\n",
        );
        write(
            &root.join("42/net"),
            "dev",
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
             eth0:    1500      12    1    2    0     0          0         0      900       7    3    4    0     0       0          0\n",
        );
    }

    #[test]
    fn v1_tree() {
        let t = tempfile::tempdir().unwrap();
        let cg = |c: &str| t.path().join(c).join("berth/abc");
        write(&cg("cpuacct"), "cpuacct.usage", "123456789\n");
        write(
            &cg("cpuacct"),
            "cpuacct.usage_percpu",
            "100000000 23456789 \n",
        );
        write(&cg("cpuacct"), "cpuacct.stat", "user 7\nsystem 3\n");
        write(
            &cg("cpu"),
            "cpu.stat",
            "nr_periods 5\nnr_throttled 2\nthrottled_time 999\n",
        );
        write(&cg("memory"), "memory.usage_in_bytes", "52428800\n");
        write(&cg("memory"), "memory.max_usage_in_bytes", "60000000\n");
        write(
            &cg("memory"),
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(&cg("memory"), "memory.failcnt", "0\n");
        write(
            &cg("memory"),
            "memory.stat",
            "cache 100\nrss 200\ntotal_inactive_file 4096\ntotal_rss 200\n",
        );
        // No CFQ: only the throttle files, as on this host.
        write(
            &cg("blkio"),
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n",
        );
        write(&cg("pids"), "pids.current", "3\n");
        write(&cg("pids"), "pids.max", "max\n");
        fake_proc(&t.path().join("proc"));

        let src = StatsSource::v1(V1Dirs {
            cpu: Some(cg("cpu")),
            cpuacct: Some(cg("cpuacct")),
            memory: Some(cg("memory")),
            blkio: Some(cg("blkio")),
            pids: Some(cg("pids")),
        })
        .with_proc_root(t.path().join("proc"))
        .with_host_memory(1 << 30);
        let s = src.sample(Some(42));
        assert_eq!(s.cpu.total, 123456789);
        assert_eq!(s.cpu.percpu, Some(vec![100000000, 23456789]));
        assert_eq!(s.cpu.user, 70_000_000);
        assert_eq!(s.cpu.kernel, 30_000_000);
        assert_eq!(
            (s.cpu.periods, s.cpu.throttled_periods, s.cpu.throttled_time),
            (5, 2, 999)
        );
        assert_eq!(s.memory.usage, Some(52428800));
        assert_eq!(s.memory.max_usage, Some(60000000));
        assert_eq!(
            s.memory.limit,
            Some(1 << 30),
            "unlimited is capped at the host's memory"
        );
        assert_eq!(s.memory.failcnt, Some(0));
        assert_eq!(s.memory.stats.get("total_inactive_file"), Some(&4096));
        let sb = s.blkio.service_bytes.unwrap();
        assert_eq!(sb.len(), 6, "the Total line is skipped: {sb:?}");
        assert_eq!(
            sb[0],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
        assert_eq!(sb[1].op, "Write");
        assert!(s.blkio.serviced.is_none() && s.blkio.queued.is_none());
        assert_eq!(s.pids_current, Some(3));
        assert_eq!(s.pids_limit, Some(0));
        assert_eq!(s.system_cpu_usage, Some(1000 * NANOS_PER_TICK));
        assert_eq!(s.online_cpus, Some(2));
        let nets = s.networks.unwrap();
        assert_eq!(nets.len(), 1, "lo is skipped");
        assert_eq!(nets[0].0, "eth0");
        assert_eq!(
            nets[0].1,
            NetDev {
                rx_bytes: 1500,
                rx_packets: 12,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 900,
                tx_packets: 7,
                tx_errors: 3,
                tx_dropped: 4
            }
        );
    }

    #[test]
    fn v1_prefers_cfq_files_and_tolerates_missing_ones() {
        let t = tempfile::tempdir().unwrap();
        let blk = t.path().join("blkio");
        write(
            &blk,
            "blkio.io_service_bytes_recursive",
            "8:16 Read 1\n8:16 Write 2\nTotal 3\n",
        );
        write(
            &blk,
            "blkio.throttle.io_service_bytes_recursive",
            "8:16 Read 100\n",
        );
        write(&blk, "blkio.sectors_recursive", "8:16 77\n");
        let mem = t.path().join("memory");
        write(&mem, "memory.usage_in_bytes", "4096\n");
        // Everything else is missing: no cpu, no pids, no memory.stat.
        let src = StatsSource::v1(V1Dirs {
            memory: Some(mem),
            blkio: Some(blk),
            cpuacct: Some(t.path().join("gone")),
            ..V1Dirs::default()
        })
        .with_proc_root(t.path().join("noproc"));
        let s = src.sample(Some(1));
        assert_eq!(s.blkio.service_bytes.as_ref().unwrap()[0].value, 1);
        assert_eq!(
            s.blkio.sectors,
            Some(vec![BlkioEntry {
                major: 8,
                minor: 16,
                op: String::new(),
                value: 77
            }])
        );
        assert_eq!(s.memory.usage, Some(4096));
        assert_eq!(s.memory.limit, None);
        assert!(s.memory.stats.is_empty());
        assert_eq!(s.cpu, CpuRaw::default());
        assert_eq!(s.cpu.percpu, None);
        assert_eq!(s.pids_current, None);
        assert_eq!(s.system_cpu_usage, None);
        assert_eq!(s.networks, None);
    }

    #[test]
    fn v2_tree() {
        let t = tempfile::tempdir().unwrap();
        let cg = t.path().join("berth/abc");
        write(
            &cg,
            "cpu.stat",
            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 30\n",
        );
        write(&cg, "memory.current", "52428800\n");
        write(&cg, "memory.max", "max\n");
        write(
            &cg,
            "memory.stat",
            "anon 1000\nfile 2000\ninactive_file 512\n",
        );
        write(
            &cg,
            "memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        );
        write(
            &cg,
            "io.stat",
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        write(&cg, "pids.current", "2\n");
        write(&cg, "pids.max", "100\n");
        fake_proc(&t.path().join("proc"));
        let s = StatsSource::v2(cg)
            .with_proc_root(t.path().join("proc"))
            .with_host_memory(1 << 30)
            .sample(None);
        assert_eq!(s.cpu.total, 2_000_000);
        assert_eq!(s.cpu.user, 1_500_000);
        assert_eq!(s.cpu.kernel, 500_000);
        assert_eq!(s.cpu.percpu, None);
        assert_eq!(s.cpu.throttled_time, 30_000);
        assert_eq!(s.memory.usage, Some(52428800));
        assert_eq!(s.memory.limit, Some(1 << 30));
        assert_eq!(s.memory.max_usage, None);
        assert_eq!(s.memory.failcnt, Some(1));
        assert_eq!(s.memory.stats.get("inactive_file"), Some(&512));
        assert_eq!(
            s.blkio.service_bytes,
            Some(vec![
                BlkioEntry {
                    major: 8,
                    minor: 0,
                    op: "read".into(),
                    value: 4096
                },
                BlkioEntry {
                    major: 8,
                    minor: 0,
                    op: "write".into(),
                    value: 8192
                },
            ])
        );
        assert_eq!((s.pids_current, s.pids_limit), (Some(2), Some(100)));
        assert_eq!(s.networks, None);
        assert_eq!(s.online_cpus, Some(2));
    }

    #[test]
    fn v2_missing_files() {
        let t = tempfile::tempdir().unwrap();
        let cg = t.path().join("empty");
        fs::create_dir_all(&cg).unwrap();
        write(&cg, "memory.current", "10\n");
        let s = StatsSource::v2(cg).sample(None);
        assert_eq!(s.memory.usage, Some(10));
        assert_eq!(s.memory.failcnt, None);
        assert_eq!(s.blkio.service_bytes, None);
        assert_eq!(s.cpu, CpuRaw::default());
        assert_eq!(s.pids_current, None);
    }

    #[test]
    fn proc_stat_of_this_host() {
        let (usage, cpus) = system_cpu_usage().unwrap();
        assert!(usage > 0);
        assert!(cpus >= 1);
        assert!(host_memory() > 0);
    }
}
