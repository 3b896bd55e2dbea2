//! Namespaces, sysctls and the masked / read-only system paths.

use super::*;

// ---------------------------------------------------------------------------------------------
// Namespaces, sysctls, system paths

/// The annotation naming the network namespace the supervisor joins itself before it creates
/// a container with a user namespace (the spec then has no network namespace entry).
pub const NETNS_ANNOTATION: &str = "io.berth.netns";

/// The network namespace a user-namespaced container gets through its supervisor, if any.
pub(super) fn supervisor_netns(opts: &SpecOptions) -> Option<PathBuf> {
    match (opts.userns.as_ref(), opts.network) {
        (Some(_), Namespace::Path(p)) => Some(p.to_path_buf()),
        _ => None,
    }
}

pub(super) fn namespaces(opts: &SpecOptions) -> Result<Vec<LinuxNamespace>, SpecError> {
    let cgroup_private = match opts.host_config.cgroupns_mode {
        Some(HostConfigCgroupnsModeEnum::PRIVATE) => true,
        Some(HostConfigCgroupnsModeEnum::HOST) => false,
        _ => opts.cgroup_version == CgroupVersion::V2,
    };
    let cgroup = if cgroup_private {
        Namespace::Private
    } else {
        Namespace::Host
    };
    let mut out = Vec::new();
    if opts.userns.is_some() {
        let mut n: LinuxNamespace = empty(serde_json::json!({ "type": "user" }))?;
        n.set_typ(LinuxNamespaceType::User);
        out.push(n);
    }
    for (typ, ns) in [
        (LinuxNamespaceType::Mount, Namespace::Private),
        (LinuxNamespaceType::Network, opts.network),
        (LinuxNamespaceType::Uts, opts.uts),
        (LinuxNamespaceType::Pid, opts.pid),
        (LinuxNamespaceType::Ipc, opts.ipc),
        (LinuxNamespaceType::Cgroup, cgroup),
    ] {
        // libcontainer enters a new user namespace before it joins namespaces by path, and a
        // network namespace berthd made belongs to the host's user namespace: from inside the
        // container's it cannot be joined (EPERM). The supervisor joins it instead, before
        // libcontainer clones the container, which inherits it (see [`NETNS_ANNOTATION`]).
        if typ == LinuxNamespaceType::Network
            && opts.userns.is_some()
            && matches!(ns, Namespace::Path(_))
        {
            continue;
        }
        let path = match ns {
            Namespace::Host => continue,
            Namespace::Private => None,
            Namespace::Path(p) => Some(p.to_path_buf()),
        };
        let mut n: LinuxNamespace = empty(serde_json::json!({ "type": "pid" }))?;
        n.set_typ(typ);
        n.set_path(path);
        out.push(n);
    }
    Ok(out)
}

/// Docker's default network sysctls of a container's own network namespace.
pub const DEFAULT_NET_SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.ping_group_range", "0 2147483647"),
    ("net.ipv4.ip_unprivileged_port_start", "0"),
];

/// Docker's default network sysctls for a container with its own network namespace, then
/// `HostConfig.Sysctls`, checked as runc checks them.
pub(super) fn sysctls(opts: &SpecOptions) -> Result<HashMap<String, String>, SpecError> {
    let hc = opts.host_config;
    let mut out = HashMap::new();
    let own_netns = !matches!(opts.network, Namespace::Host)
        && !hc
            .network_mode
            .as_deref()
            .unwrap_or("")
            .starts_with("container:");
    // In a user namespace the container cannot write the sysctls of a network namespace
    // berthd made (it belongs to the host's user namespace): the runtime writes the defaults
    // from the host (`host::set_netns_sysctls`).
    let netns_from_host = opts.userns.is_some() && matches!(opts.network, Namespace::Path(_));
    if own_netns && !netns_from_host {
        let exists = |k: &str| Path::new("/proc/sys").join(k.replace('.', "/")).exists();
        for (k, v) in DEFAULT_NET_SYSCTLS {
            if exists(k) {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    for (k, v) in hc.sysctls.iter().flatten() {
        check_sysctl(&k.replace('/', "."), opts.network, opts.ipc, opts.uts)?;
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// runc's sysctl validation: only namespaced sysctls, in namespaces the container owns.
pub(super) fn check_sysctl(
    s: &str,
    network: Namespace,
    ipc: Namespace,
    uts: Namespace,
) -> Result<(), SpecError> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let q = go_quote(s);
    if IPC.contains(&s) || s.starts_with("fs.mqueue.") {
        if matches!(ipc, Namespace::Host) {
            return Err(SpecError::invalid(format!(
                "sysctl {q} is not allowed in the hosts ipc namespace"
            )));
        }
        return Ok(());
    }
    if s.starts_with("net.") {
        if matches!(network, Namespace::Host) {
            return Err(SpecError::invalid(format!(
                "sysctl {q} not allowed in host network namespace"
            )));
        }
        return Ok(());
    }
    if !matches!(uts, Namespace::Host) {
        if s == "kernel.domainname" {
            return Ok(());
        }
        if s == "kernel.hostname" {
            return Err(SpecError::invalid(format!(
                "sysctl {q} is not allowed as it conflicts with the OCI \"hostname\" field"
            )));
        }
    }
    Err(SpecError::invalid(format!(
        "sysctl {q} is not in a separate kernel namespace"
    )))
}

/// [`check_sysctl`] at create, with the namespaces `NetworkMode`, `IpcMode` and `UTSMode` ask
/// for (`host` or not).
pub(super) fn check_sysctls(hc: &HostConfig) -> Result<(), SpecError> {
    let ns = |mode: &Option<String>| {
        if mode.as_deref() == Some("host") {
            Namespace::Host
        } else {
            Namespace::Private
        }
    };
    let (network, ipc, uts) = (ns(&hc.network_mode), ns(&hc.ipc_mode), ns(&hc.uts_mode));
    for k in hc.sysctls.iter().flatten().map(|(k, _)| k) {
        check_sysctl(&k.replace('/', "."), network, ipc, uts)?;
    }
    Ok(())
}

/// `linux.maskedPaths` and `linux.readonlyPaths`: explicit ones from the HostConfig, none for
/// privileged containers or `systempaths=unconfined`, else Docker's defaults.
pub(super) fn system_paths(
    hc: &HostConfig,
    sec: &SecurityOptions,
    privileged: bool,
) -> (Vec<String>, Vec<String>) {
    if sec.systempaths_unconfined {
        return (Vec::new(), Vec::new());
    }
    let masked = match &hc.masked_paths {
        Some(p) => p.clone(),
        None if privileged => Vec::new(),
        None => default_masked_paths(),
    };
    let readonly = match &hc.readonly_paths {
        Some(p) => p.clone(),
        None if privileged => Vec::new(),
        None => default_readonly_paths(),
    };
    (masked, readonly)
}

/// Docker's default read-only paths.
pub fn default_readonly_paths() -> Vec<String> {
    DEFAULT_READONLY_PATHS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Docker's default masked paths, with each CPU's `thermal_throttle` directory the host has.
pub fn default_masked_paths() -> Vec<String> {
    let mut out: Vec<String> = DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect();
    let mut cpus: Vec<u32> = std::fs::read_dir("/sys/devices/system/cpu")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok())
        .collect();
    cpus.sort_unstable();
    for cpu in cpus {
        let p = format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle");
        if Path::new(&p).exists() {
            out.push(p);
        }
    }
    out
}

pub(super) const DEFAULT_MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

pub(super) const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// `linux.uidMappings` and `linux.gidMappings` for a remapped container: one per range.
pub(super) fn id_mappings(
    map: &super::super::IdMap,
) -> Result<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>), SpecError> {
    let all = |ranges: &[crate::util::ids::IdRange]| -> Result<Vec<LinuxIdMapping>, SpecError> {
        ranges
            .iter()
            .map(|r| {
                empty(serde_json::json!({
                    "containerID": r.container,
                    "hostID": r.host,
                    "size": r.size,
                }))
            })
            .collect()
    };
    Ok((all(&map.uids)?, all(&map.gids)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::test_support::*;

    #[test]
    fn remapped_container_gets_a_user_namespace_and_sys_bound() {
        let fx = fixture();
        let cfg = sh();
        let hc = HostConfig::default();
        let mut opts = options(&fx, &cfg, &hc);
        opts.userns = Some(crate::runtime::IdMap::single(100000, 65536, 200000, 1000));
        let spec = build(&opts).unwrap();
        let l = linux(&spec);
        let ns = l.namespaces().as_ref().unwrap();
        assert_eq!(ns[0].typ(), LinuxNamespaceType::User);
        let u = &l.uid_mappings().as_ref().unwrap()[0];
        assert_eq!(
            (u.container_id(), u.host_id(), u.size()),
            (0, 100000, 65536)
        );
        let g = &l.gid_mappings().as_ref().unwrap()[0];
        assert_eq!((g.container_id(), g.host_id(), g.size()), (0, 200000, 1000));
        let sys = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert_eq!(sys.typ().as_deref(), Some("bind"));
        assert!(sys.options().as_ref().unwrap().iter().any(|o| o == "ro"));
        // Without remapping: no user namespace, sysfs.
        let spec = build(&options(&fx, &cfg, &hc)).unwrap();
        let ns = linux(&spec).namespaces().as_ref().unwrap();
        assert!(ns.iter().all(|n| n.typ() != LinuxNamespaceType::User));
        assert!(linux(&spec).uid_mappings().is_none());
    }

    #[test]
    fn namespaces_hostname_and_sysctls() {
        let fx = fixture();
        let cfg = ContainerConfig {
            hostname: Some("web".into()),
            domainname: Some("example.org".into()),
            ..sh()
        };
        let hc = HostConfig {
            sysctls: Some(HashMap::from([(
                "net.ipv4.ip_forward".to_string(),
                "1".to_string(),
            )])),
            ..Default::default()
        };
        let spec = build(&options(&fx, &cfg, &hc)).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("web"));
        assert_eq!(spec.domainname().as_deref(), Some("example.org"));
        assert!(env(&spec).contains(&"HOSTNAME=web".to_string()));
        assert_eq!(
            linux(&spec)
                .sysctl()
                .as_ref()
                .unwrap()
                .get("net.ipv4.ip_forward"),
            Some(&"1".to_string())
        );
        libcontainer::validator::Validator::validate_spec(&spec).unwrap();

        // Host namespaces: no entries, no hostname.
        let mut o = options(&fx, &cfg, &hc);
        o.network = Namespace::Host;
        assert_eq!(
            err_text(build(&o)),
            "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace"
        );
        let plain = HostConfig::default();
        let mut o = options(&fx, &cfg, &plain);
        o.network = Namespace::Host;
        o.uts = Namespace::Host;
        o.pid = Namespace::Host;
        o.cgroup_version = CgroupVersion::V1;
        let spec = build(&o).unwrap();
        assert_eq!(
            ns_types(&spec),
            vec![LinuxNamespaceType::Mount, LinuxNamespaceType::Ipc]
        );
        assert_eq!(spec.hostname(), &None);
        assert_eq!(spec.domainname(), &None);
        assert_eq!(
            linux(&spec).sysctl(),
            &None,
            "no default net sysctls on the host netns"
        );
        libcontainer::validator::Validator::validate_spec(&spec).unwrap();

        // cgroupns: private by default on v2 only; CgroupnsMode overrides.
        let private = HostConfig {
            cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
            ..Default::default()
        };
        let mut o = options(&fx, &cfg, &private);
        o.cgroup_version = CgroupVersion::V1;
        assert!(ns_types(&build(&o).unwrap()).contains(&LinuxNamespaceType::Cgroup));
        let host = HostConfig {
            cgroupns_mode: Some(HostConfigCgroupnsModeEnum::HOST),
            ..Default::default()
        };
        assert!(!ns_types(&build(&options(&fx, &cfg, &host)).unwrap())
            .contains(&LinuxNamespaceType::Cgroup));

        // Joined namespaces keep their path; no default net sysctls for container:<id>.
        let joined = HostConfig {
            network_mode: Some("container:abc".into()),
            ..Default::default()
        };
        let other = fx.dir.path().join("other-pid-ns");
        fs::write(&other, "").unwrap();
        let mut o = options(&fx, &cfg, &joined);
        o.pid = Namespace::Path(&other);
        let spec = build(&o).unwrap();
        let pid = linux(&spec)
            .namespaces()
            .iter()
            .flatten()
            .find(|n| n.typ() == LinuxNamespaceType::Pid)
            .unwrap();
        assert_eq!(pid.path().as_deref(), Some(other.as_path()));
        assert_eq!(linux(&spec).sysctl(), &None);

        let bad = |k: &str| {
            let hc = HostConfig {
                sysctls: Some(HashMap::from([(k.to_string(), "1".to_string())])),
                ..Default::default()
            };
            err_text(build(&options(&fx, &cfg, &hc)))
        };
        assert_eq!(
            bad("kernel.hostname"),
            "sysctl \"kernel.hostname\" is not allowed as it conflicts with the OCI \"hostname\" field"
        );
        assert_eq!(
            bad("vm.swappiness"),
            "sysctl \"vm.swappiness\" is not in a separate kernel namespace"
        );
    }
}
