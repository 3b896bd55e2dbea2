//! Docker's shapes for a container: inspect, the `Status` text of `docker ps`, `docker top`'s
//! table and `docker update`'s merge.

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use bollard_stubs::models::{
    ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, ContainerUpdateBody,
    DriverData, EndpointSettings, HostConfig, MountPoint, NetworkSettings, RestartPolicy,
};
use serde_json::Value;

use super::mounts;
use super::record::{Record, Status};
use super::ContainerError;
use crate::util::time::parse_timestamp;

/// Go's zero time, which Docker prints for times that never happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn or_zero(s: &str) -> String {
    if s.is_empty() {
        ZERO_TIME.to_string()
    } else {
        s.to_string()
    }
}

pub fn state_enum(s: Status) -> ContainerStateStatusEnum {
    match s {
        Status::Created => ContainerStateStatusEnum::CREATED,
        Status::Running => ContainerStateStatusEnum::RUNNING,
        Status::Paused => ContainerStateStatusEnum::PAUSED,
        Status::Restarting => ContainerStateStatusEnum::RESTARTING,
        Status::Removing => ContainerStateStatusEnum::REMOVING,
        Status::Exited => ContainerStateStatusEnum::EXITED,
        Status::Dead => ContainerStateStatusEnum::DEAD,
    }
}

/// A resolved mount point in the API's shape.
fn api_mount_point(m: &mounts::MountPoint) -> MountPoint {
    MountPoint {
        typ: Some(m.typ.clone()),
        source: Some(m.source.clone()),
        destination: Some(m.destination.clone()),
        mode: Some(m.mode.clone()),
        rw: Some(m.rw),
        propagation: Some(m.propagation.clone()),
        name: Some(m.name.clone()).filter(|n| !n.is_empty()),
        driver: Some(m.driver.clone()).filter(|d| !d.is_empty()),
    }
}

/// The mounts of a container's `HostConfig` as `MountPoint`s, parsed by
/// [`mounts::resolve`]; an entry that does not parse (possible only in a record written
/// before create checked them) is left out.
pub fn mount_points(h: &HostConfig) -> Vec<MountPoint> {
    let list = match mounts::resolve(h, false) {
        Ok(list) => list,
        Err(_) => {
            let binds = h.binds.iter().flatten().map(|b| mounts::parse_bind(b));
            let specs = h
                .mounts
                .iter()
                .flatten()
                .map(|m| mounts::parse_mount_spec(m, false));
            let tmpfs = HostConfig {
                tmpfs: h.tmpfs.clone(),
                ..Default::default()
            };
            let tmpfs = mounts::resolve(&tmpfs, false).unwrap_or_default();
            binds
                .chain(specs)
                .filter_map(Result::ok)
                .chain(tmpfs)
                .collect()
        }
    };
    list.iter().map(api_mount_point).collect()
}

/// A container's mounts for inspect: the mount points stored at create, or for an older
/// record its `HostConfig` parsed again.
pub fn record_mount_points(r: &Record) -> Vec<MountPoint> {
    // `HostConfig.Tmpfs` entries are no mount points of moby's (only `Mounts` of type tmpfs).
    let legacy_tmpfs = |dest: &str| {
        r.host_config
            .tmpfs
            .as_ref()
            .is_some_and(|t| t.contains_key(dest))
    };
    let all = match &r.mount_points {
        Some(list) => list.iter().map(api_mount_point).collect(),
        None => mount_points(&r.host_config),
    };
    all.into_iter()
        .filter(|m| {
            !(m.typ.as_deref() == Some("tmpfs")
                && legacy_tmpfs(m.destination.as_deref().unwrap_or("")))
        })
        .collect()
}

/// Inputs computed by the manager for inspect.
pub struct InspectExtras {
    pub upper_dir: String,
    pub merged_dir: String,
    pub work_dir: String,
    pub lower_dirs: Vec<String>,
    pub sandbox_key: String,
    pub size_rw: Option<i64>,
    pub size_root_fs: Option<i64>,
    /// `NetworkSettings.Networks` and `Ports` (the network service's view of the run).
    pub networks: HashMap<String, EndpointSettings>,
    pub ports: HashMap<String, Option<Vec<bollard_stubs::models::PortBinding>>>,
}

/// `GET /containers/{id}/json` in Docker's exact shape.
pub fn inspect(r: &Record, x: &InspectExtras) -> Value {
    let s = &r.state;
    let running = s.status.is_running() || s.status == Status::Restarting;
    let state = ContainerState {
        status: Some(state_enum(s.status)),
        running: Some(running),
        paused: Some(s.status == Status::Paused),
        restarting: Some(s.status == Status::Restarting),
        oom_killed: Some(s.oom_killed),
        dead: Some(s.status == Status::Dead),
        pid: Some(if s.status.is_running() { s.pid } else { 0 }),
        exit_code: Some(s.exit_code),
        error: Some(s.error.clone()),
        started_at: Some(or_zero(&s.started_at)),
        finished_at: Some(or_zero(&s.finished_at)),
        health: None,
    };
    let mut data = HashMap::new();
    if !x.lower_dirs.is_empty() {
        data.insert("LowerDir".to_string(), x.lower_dirs.join(":"));
    }
    data.insert("UpperDir".to_string(), x.upper_dir.clone());
    data.insert("MergedDir".to_string(), x.merged_dir.clone());
    data.insert("WorkDir".to_string(), x.work_dir.clone());
    let net = NetworkSettings {
        sandbox_id: Some(String::new()),
        sandbox_key: Some(x.sandbox_key.clone()),
        ports: Some(x.ports.clone()),
        networks: Some(x.networks.clone()),
    };
    let resp = ContainerInspectResponse {
        id: Some(r.id.clone()),
        created: None,
        path: Some(r.path.clone()),
        args: Some(r.args.clone()),
        state: Some(state),
        image: Some(r.image.clone()),
        resolv_conf_path: Some(r.resolv_conf_path.clone()),
        hostname_path: Some(r.hostname_path.clone()),
        hosts_path: Some(r.hosts_path.clone()),
        // moby names a file for json-file only (berth keeps `local` logs in the same form).
        log_path: Some(match r.log.as_ref().map(|l| l.driver) {
            None | Some(crate::logger::Driver::JsonFile) => r.log_path.clone(),
            Some(_) => String::new(),
        }),
        name: Some(format!("/{}", r.name)),
        restart_count: Some(r.restart_count),
        driver: Some("overlay2".to_string()),
        platform: Some("linux".to_string()),
        mount_label: Some(String::new()),
        process_label: Some(String::new()),
        app_armor_profile: Some(String::new()),
        exec_ids: None,
        host_config: Some(r.host_config.clone()),
        graph_driver: Some(DriverData {
            name: "overlay2".to_string(),
            data,
        }),
        size_rw: x.size_rw,
        size_root_fs: x.size_root_fs,
        mounts: Some(record_mount_points(r)),
        config: Some(r.config.clone()),
        network_settings: Some(net),
        ..Default::default()
    };
    let mut v = serde_json::to_value(&resp).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        // Built here because the model's date type depends on bollard's features.
        m.insert("Created".to_string(), Value::String(r.created.clone()));
        if let Some(Value::Object(ns)) = m.get_mut("NetworkSettings") {
            legacy_network_fields(ns, x.networks.get("bridge"));
            if let Some(Value::Object(nets)) = ns.get_mut("Networks") {
                for e in nets.values_mut() {
                    endpoint_nulls(e);
                }
            }
        }
        m.entry("ExecIDs").or_insert(Value::Null);
        if let Some(Value::Object(hc)) = m.get_mut("HostConfig") {
            host_config_zeros(hc);
        }
        if let Some(Value::Object(c)) = m.get_mut("Config") {
            config_zeros(c);
            // The deprecated container-wide MAC, kept as moby keeps `Config.MacAddress`.
            if let Some(mac) = &r.mac_address {
                c.insert("MacAddress".to_string(), Value::String(mac.clone()));
            }
        }
        // `State.Health`, likewise (its results carry dates).
        if let (Some(h), Some(Value::Object(st))) = (&r.state.health, m.get_mut("State")) {
            st.insert(
                "Health".to_string(),
                serde_json::to_value(h).unwrap_or(Value::Null),
            );
        }
    }
    v
}

/// moby's `HostConfig` (and its `Resources`) serialise every field but a few `omitempty`
/// ones: a field the create body did not set shows Go's zero value (scripts read, say,
/// `attrs['HostConfig']['Memory']` of a container docker-py created with a sparse body).
fn host_config_zeros(hc: &mut serde_json::Map<String, Value>) {
    const STRINGS: &[&str] = &[
        "ContainerIDFile",
        "NetworkMode",
        "VolumeDriver",
        "CgroupnsMode",
        "IpcMode",
        "Cgroup",
        "PidMode",
        "UTSMode",
        "UsernsMode",
        "Isolation",
        "CgroupParent",
        "CpusetCpus",
        "CpusetMems",
    ];
    const NUMBERS: &[&str] = &[
        "OomScoreAdj",
        "ShmSize",
        "CpuShares",
        "Memory",
        "NanoCpus",
        "BlkioWeight",
        "CpuPeriod",
        "CpuQuota",
        "CpuRealtimePeriod",
        "CpuRealtimeRuntime",
        "MemoryReservation",
        "MemorySwap",
        "CpuCount",
        "CpuPercent",
        "IOMaximumIOps",
        "IOMaximumBandwidth",
    ];
    const BOOLS: &[&str] = &[
        "AutoRemove",
        "Privileged",
        "PublishAllPorts",
        "ReadonlyRootfs",
        "OomKillDisable",
    ];
    const NULLS: &[&str] = &[
        "Binds",
        "PortBindings",
        "VolumesFrom",
        "CapAdd",
        "CapDrop",
        "Dns",
        "DnsOptions",
        "DnsSearch",
        "ExtraHosts",
        "GroupAdd",
        "Links",
        "SecurityOpt",
        "BlkioWeightDevice",
        "BlkioDeviceReadBps",
        "BlkioDeviceWriteBps",
        "BlkioDeviceReadIOps",
        "BlkioDeviceWriteIOps",
        "Devices",
        "DeviceCgroupRules",
        "DeviceRequests",
        "MemorySwappiness",
        "PidsLimit",
        "Ulimits",
        "MaskedPaths",
        "ReadonlyPaths",
    ];
    for k in STRINGS {
        hc.entry(*k).or_insert_with(|| Value::String(String::new()));
    }
    for k in NUMBERS {
        hc.entry(*k).or_insert_with(|| Value::from(0));
    }
    for k in BOOLS {
        hc.entry(*k).or_insert(Value::Bool(false));
    }
    for k in NULLS {
        hc.entry(*k).or_insert(Value::Null);
    }
    hc.entry("ConsoleSize")
        .or_insert_with(|| serde_json::json!([0, 0]));
    hc.entry("RestartPolicy")
        .or_insert_with(|| serde_json::json!({"Name": "no", "MaximumRetryCount": 0}));
}

/// moby's container `Config`, likewise: the fields without `omitempty` are always there
/// (docker-py reads `attrs['Config']['Env']` of a container whose image has no environment).
fn config_zeros(c: &mut serde_json::Map<String, Value>) {
    for k in ["Hostname", "Domainname", "User", "Image", "WorkingDir"] {
        c.entry(k).or_insert_with(|| Value::String(String::new()));
    }
    for k in [
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "Tty",
        "OpenStdin",
        "StdinOnce",
    ] {
        c.entry(k).or_insert(Value::Bool(false));
    }
    for k in ["Env", "Cmd", "Volumes", "Entrypoint", "OnBuild"] {
        c.entry(k).or_insert(Value::Null);
    }
    // moby makes the map at create: `{}`, never `null`.
    c.entry("Labels")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
}

/// Go's `EndpointSettings` has no `omitempty`: every field is there, unset lists and maps as
/// `null` (docker-py reads `Networks[n]['Aliases']` of a created container).
fn endpoint_nulls(e: &mut Value) {
    if let Value::Object(m) = e {
        for k in ["IPAMConfig", "Links", "Aliases", "DriverOpts", "DNSNames"] {
            m.entry(k).or_insert(Value::Null);
        }
    }
}

/// go-units' `HumanDuration`, as `docker ps` prints it, appended to `out`.
fn write_human_duration(out: &mut String, secs: u64) {
    use std::fmt::Write;
    let minutes = secs / 60;
    let hours = minutes / 60;
    // Writing into a String cannot fail.
    let _ = match () {
        _ if secs < 1 => out.write_str("Less than a second"),
        _ if secs == 1 => out.write_str("1 second"),
        _ if secs < 60 => write!(out, "{secs} seconds"),
        _ if minutes == 1 => out.write_str("About a minute"),
        _ if minutes < 60 => write!(out, "{minutes} minutes"),
        _ if hours == 1 => out.write_str("About an hour"),
        _ if hours < 48 => write!(out, "{hours} hours"),
        _ if hours < 24 * 7 * 2 => write!(out, "{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => write!(out, "{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => write!(out, "{} months", hours / 24 / 30),
        _ => write!(out, "{} years", hours / 24 / 365),
    };
}

/// What the `Status` column of `docker ps` says of a record, but for the time that passes: a
/// fixed text, or a text around the time since a moment, parsed from the record once (a list
/// of many containers keeps it with each one's cached entry, `list::Fragment`).
#[derive(Debug)]
pub enum StatusBase {
    Fixed(&'static str),
    Since {
        head: String,
        at: Option<SystemTime>,
        tail: String,
    },
}

impl StatusBase {
    pub fn of(r: &Record) -> StatusBase {
        let s = &r.state;
        let since = |head: String, ts: &str, tail: String| StatusBase::Since {
            head,
            at: parse_timestamp(ts, SystemTime::now()),
            tail,
        };
        match s.status {
            Status::Created => StatusBase::Fixed("Created"),
            Status::Running => since(
                "Up ".into(),
                &s.started_at,
                s.health
                    .as_ref()
                    .map(|h| format!(" ({})", super::health::status_suffix(h)))
                    .unwrap_or_default(),
            ),
            Status::Paused => since("Up ".into(), &s.started_at, " (Paused)".into()),
            Status::Restarting => since(
                format!("Restarting ({}) ", s.exit_code),
                &s.finished_at,
                " ago".into(),
            ),
            Status::Removing => StatusBase::Fixed("Removal In Progress"),
            Status::Exited => since(
                format!("Exited ({}) ", s.exit_code),
                &s.finished_at,
                " ago".into(),
            ),
            Status::Dead => StatusBase::Fixed("Dead"),
        }
    }

    /// The text at `now`, appended to `out`.
    pub fn write(&self, out: &mut String, now: SystemTime) {
        match self {
            StatusBase::Fixed(t) => out.push_str(t),
            StatusBase::Since { head, at, tail } => {
                let secs = at
                    .and_then(|t| now.duration_since(t).ok())
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                out.push_str(head);
                write_human_duration(out, secs);
                out.push_str(tail);
            }
        }
    }
}

/// The `Status` column of `docker ps`.
pub fn status_text(r: &Record, now: SystemTime) -> String {
    let mut out = String::new();
    StatusBase::of(r).write(&mut out, now);
    out
}

/// `docker update`, as moby's `Container.UpdateContainer`: the update's non-zero resources
/// (and its restart policy) replace the host config's; clients send every resource field, the
/// unset ones as zero, so a zero never clears a limit. `CgroupParent` and `OomKillDisable` are
/// not updatable. NanoCpus and CpuPeriod/CpuQuota exclude each other across updates, and a
/// memory limit above the swap limit already set needs the swap limit in the same update
/// (409s with dockerd's texts; the caller adds `Cannot update container <id>: `).
pub fn apply_update(h: &mut HostConfig, u: &ContainerUpdateBody) -> Result<(), ContainerError> {
    let set = |v: Option<i64>| v.filter(|v| *v != 0);
    let positive = |v: Option<i64>| v.unwrap_or(0) > 0;
    let conflicts = [
        (
            positive(u.nano_cpus) && positive(h.cpu_period),
            "Nano CPUs cannot be updated as CPU Period has already been set",
        ),
        (
            positive(u.nano_cpus) && positive(h.cpu_quota),
            "Nano CPUs cannot be updated as CPU Quota has already been set",
        ),
        (
            positive(u.cpu_period) && positive(h.nano_cpus),
            "CPU Period cannot be updated as NanoCPUs has already been set",
        ),
        (
            positive(u.cpu_quota) && positive(h.nano_cpus),
            "CPU Quota cannot be updated as NanoCPUs has already been set",
        ),
    ];
    if let Some((_, text)) = conflicts.iter().find(|(hit, _)| *hit) {
        return Err(ContainerError::conflict(format!(
            "Conflicting options: {text}"
        )));
    }
    if let Some(w) = u.blkio_weight.filter(|w| *w != 0) {
        h.blkio_weight = Some(w);
    }
    macro_rules! lists {
        ($($f:ident),*) => { $( if u.$f.is_some() { h.$f = u.$f.clone(); } )* };
    }
    lists!(
        blkio_weight_device,
        blkio_device_read_bps,
        blkio_device_write_bps,
        blkio_device_read_iops,
        blkio_device_write_iops
    );
    macro_rules! numbers {
        ($($f:ident),*) => { $( if let Some(v) = set(u.$f) { h.$f = Some(v); } )* };
    }
    numbers!(cpu_shares, nano_cpus, cpu_period, cpu_quota);
    if let Some(c) = u.cpuset_cpus.as_ref().filter(|c| !c.is_empty()) {
        h.cpuset_cpus = Some(c.clone());
    }
    if let Some(m) = u.cpuset_mems.as_ref().filter(|m| !m.is_empty()) {
        h.cpuset_mems = Some(m.clone());
    }
    if let Some(memory) = set(u.memory) {
        if memory > h.memory_swap.unwrap_or(0) && set(u.memory_swap).is_none() {
            return Err(ContainerError::conflict(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
            ));
        }
        h.memory = Some(memory);
    }
    numbers!(
        memory_swap,
        memory_reservation,
        cpu_realtime_period,
        cpu_realtime_runtime
    );
    if u.pids_limit.is_some() {
        // moby's router: 0 or negative lifts the limit, recorded as 0.
        h.pids_limit = u.pids_limit.map(|n| n.max(0));
    }
    let name = |p: &RestartPolicy| p.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
    if let Some(p) = u.restart_policy.as_ref().filter(|p| !name(p).is_empty()) {
        if h.auto_remove == Some(true) && name(p) != "no" {
            return Err(ContainerError::conflict(
                "Restart policy cannot be updated because AutoRemove is enabled for the container",
            ));
        }
        h.restart_policy = Some(p.clone());
    }
    Ok(())
}

/// `docker top`: the `ps` output limited to `pids`, with the header split as dockerd does.
pub fn parse_ps(
    out: &str,
    pids: &[i32],
) -> Result<(Vec<String>, Vec<Vec<String>>), ContainerError> {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| ContainerError::invalid("Couldn't find PID field in ps output"))?;
    let mut procs = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !pids.contains(&pid) {
            continue;
        }
        // The last column (the command) keeps its spaces.
        let n = titles.len();
        let mut row: Vec<String> = fields.iter().take(n - 1).map(|s| s.to_string()).collect();
        row.push(
            fields
                .iter()
                .skip(n - 1)
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
        );
        procs.push(row);
    }
    Ok((titles, procs))
}

/// `SizeRw`: the bytes of a container's writable layer `upper`, without the `/etc/mtab` link
/// the runtime puts there (moby keeps it in its init layer, which the size leaves out).
pub fn rw_size(upper: &Path) -> i64 {
    let mut total = dir_size(upper);
    let mtab = upper.join("etc/mtab");
    if crate::image::commit::is_mtab_link(&mtab) {
        if let Ok(md) = mtab.symlink_metadata() {
            total -= md.len() as i64;
        }
    }
    total.max(0)
}

/// Bytes in a directory tree (regular files and symlinks, each inode once).
pub fn dir_size(root: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0i64;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            if md.is_dir() {
                stack.push(e.path());
            } else if seen.insert((md.dev(), md.ino())) {
                total += md.len() as i64;
            }
        }
    }
    total
}

/// The deprecated top-level `NetworkSettings` fields the v1.51 spec still has (and clients
/// such as docker-py scripts still read): the default bridge's endpoint, empty otherwise.
fn legacy_network_fields(
    ns: &mut serde_json::Map<String, Value>,
    bridge: Option<&EndpointSettings>,
) {
    let text = |v: Option<&String>| Value::String(v.cloned().unwrap_or_default());
    let e = bridge.cloned().unwrap_or_default();
    let fields = [
        ("Bridge", Value::String(String::new())),
        ("HairpinMode", Value::Bool(false)),
        ("LinkLocalIPv6Address", Value::String(String::new())),
        ("LinkLocalIPv6PrefixLen", Value::from(0)),
        ("SecondaryIPAddresses", Value::Null),
        ("SecondaryIPv6Addresses", Value::Null),
        ("EndpointID", text(e.endpoint_id.as_ref())),
        ("Gateway", text(e.gateway.as_ref())),
        ("GlobalIPv6Address", text(e.global_ipv6_address.as_ref())),
        (
            "GlobalIPv6PrefixLen",
            Value::from(e.global_ipv6_prefix_len.unwrap_or(0)),
        ),
        ("IPAddress", text(e.ip_address.as_ref())),
        ("IPPrefixLen", Value::from(e.ip_prefix_len.unwrap_or(0))),
        ("IPv6Gateway", text(e.ipv6_gateway.as_ref())),
        ("MacAddress", text(e.mac_address.as_ref())),
    ];
    for (k, v) in fields {
        ns.entry(k).or_insert(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_of_binds_with_options() {
        let h = HostConfig {
            binds: Some(vec![
                "/tmp/x:/data:ro,rprivate".into(),
                "/src/:/a/b/:rshared".into(),
                "vol:/v".into(),
            ]),
            tmpfs: Some(HashMap::from([("/run".into(), "size=1m".into())])),
            ..Default::default()
        };
        let m = mount_points(&h);
        let show = |p: &MountPoint| {
            (
                p.typ.clone().unwrap(),
                p.source.clone().unwrap(),
                p.destination.clone().unwrap(),
                p.mode.clone().unwrap(),
                p.rw.unwrap(),
                p.propagation.clone().unwrap(),
            )
        };
        let s = |v: &str| v.to_string();
        assert_eq!(
            m.iter().map(show).collect::<Vec<_>>(),
            vec![
                (
                    s("bind"),
                    s("/tmp/x"),
                    s("/data"),
                    s("ro,rprivate"),
                    false,
                    s("rprivate")
                ),
                (
                    s("bind"),
                    s("/src"),
                    s("/a/b"),
                    s("rshared"),
                    true,
                    s("rshared")
                ),
                (s("volume"), s(""), s("/v"), s("z"), true, s("")),
                (s("tmpfs"), s(""), s("/run"), s("size=1m"), true, s("")),
            ],
            "a named volume is a volume mount point (named and sourced at create)"
        );
    }

    #[test]
    fn human_durations() {
        let human_duration = |secs| {
            let mut s = String::new();
            write_human_duration(&mut s, secs);
            s
        };
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }

    #[test]
    fn ps_is_filtered_by_pid() {
        let out = "UID   PID  PPID  C STIME TTY TIME CMD\nroot  10   1  0 10:00 ? 00:00:00 sleep 100\nroot  11   1  0 10:00 ? 00:00:00 other\n";
        let (t, p) = parse_ps(out, &[10]).unwrap();
        assert_eq!(t.len(), 8);
        assert_eq!(
            p,
            vec![vec![
                "root",
                "10",
                "1",
                "0",
                "10:00",
                "?",
                "00:00:00",
                "sleep 100"
            ]]
        );
        assert!(parse_ps("A B\n", &[]).is_err());
    }
}
