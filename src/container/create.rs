//! Create-time rules: merging the user's config with the image's, Docker's defaults and the
//! validation dockerd does before anything is written.

use std::collections::HashMap;

use bollard_stubs::models::{
    ContainerConfig, ContainerCreateBody, HostConfig, HostConfigCgroupnsModeEnum,
    HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum,
};

use super::ContainerError;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::manager::{lock, ContainerManager};
use super::mounts::MountPoint;
use super::names;
use super::record::{Record, State};
use crate::image::config::RunConfig;
use crate::util::fs::{ensure_dir, replace_file};
use crate::util::rand::random_hex;
use crate::util::time::rfc3339_nano;
use crate::version::ApiVersion;

/// The default `/dev/shm` size (64 MiB), as dockerd stores it in `HostConfig.ShmSize`.
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// The runtime names a container may ask for in `HostConfig.Runtime`: berth's own (what
/// `/info` reports as `DefaultRuntime`, recorded when none is given) and dockerd's names for
/// its default runtime, which berth's runtime stands in for.
pub const RUNTIME_NAMES: &[&str] = &[
    crate::runtime::RUNTIME_NAME,
    "runc",
    "io.containerd.runc.v2",
];

/// Split the create body into the container config and the host config.
pub fn split_body(body: ContainerCreateBody) -> (ContainerConfig, HostConfig) {
    let host = body.host_config.unwrap_or_default();
    let config = ContainerConfig {
        hostname: body.hostname,
        domainname: body.domainname,
        user: body.user,
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        exposed_ports: body.exposed_ports,
        tty: body.tty,
        open_stdin: body.open_stdin,
        stdin_once: body.stdin_once,
        env: body.env,
        cmd: body.cmd,
        healthcheck: body.healthcheck,
        args_escaped: body.args_escaped,
        image: body.image,
        volumes: body.volumes,
        working_dir: body.working_dir,
        entrypoint: body.entrypoint,
        network_disabled: body.network_disabled,
        on_build: body.on_build,
        labels: body.labels,
        stop_signal: body.stop_signal,
        stop_timeout: body.stop_timeout,
        shell: body.shell,
    };
    (config, host)
}

/// The reverse of [`split_body`]: a create body of a container config and a host config (the
/// builder's step containers).
pub fn join_body(c: ContainerConfig, host: HostConfig) -> ContainerCreateBody {
    ContainerCreateBody {
        hostname: c.hostname,
        domainname: c.domainname,
        user: c.user,
        attach_stdin: c.attach_stdin,
        attach_stdout: c.attach_stdout,
        attach_stderr: c.attach_stderr,
        exposed_ports: c.exposed_ports,
        tty: c.tty,
        open_stdin: c.open_stdin,
        stdin_once: c.stdin_once,
        env: c.env,
        cmd: c.cmd,
        healthcheck: c.healthcheck,
        args_escaped: c.args_escaped,
        image: c.image,
        volumes: c.volumes,
        working_dir: c.working_dir,
        entrypoint: c.entrypoint,
        network_disabled: c.network_disabled,
        on_build: c.on_build,
        labels: c.labels,
        stop_signal: c.stop_signal,
        stop_timeout: c.stop_timeout,
        shell: c.shell,
        host_config: Some(host),
        networking_config: None,
    }
}

/// moby's `handleMACAddressBC`: the container-wide `MacAddress` of a create request
/// (deprecated since API 1.44; bollard's body has no field for it) moves to the endpoint
/// config of the container's main network. Below 1.44 it is the only way to set a MAC (an
/// endpoint's own is dropped); from 1.44 it must agree with the endpoint's, and the answer
/// carries dockerd's deprecation warning.
pub fn migrate_mac_address(
    body: &mut ContainerCreateBody,
    mac: Option<String>,
    version: ApiVersion,
) -> Result<MacMigration, ContainerError> {
    let mac = mac.filter(|m| !m.is_empty());
    let mode = body
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    let bridge_or_user =
        !matches!(mode.as_str(), "host" | "none") && !mode.starts_with("container:");
    let endpoints = body
        .networking_config
        .get_or_insert_with(Default::default)
        .endpoints_config
        .get_or_insert_with(HashMap::new);
    let old_api = version < ApiVersion::new(1, 44);
    let Some(mac) = mac else {
        if old_api {
            // The old API ignored endpoint MACs.
            for ep in endpoints.values_mut() {
                ep.mac_address = None;
            }
        }
        return Ok(MacMigration::default());
    };
    if !bridge_or_user {
        if old_api {
            return Err(ContainerError::invalid(
                "conflicting options: mac-address and the network mode",
            ));
        }
        return Ok(MacMigration {
            warning: Some(MAC_DEPRECATED.to_string()),
            kept: None,
        });
    }
    // moby's `epConfigForNetMode`.
    let name = if mode.is_empty() {
        "default".to_string()
    } else {
        mode.clone()
    };
    if endpoints.is_empty() {
        endpoints.insert(name.clone(), Default::default());
    }
    let key = if old_api {
        endpoints.keys().next().cloned()
    } else {
        // The CLI keys the default mode's endpoint `default`; create maps it to `bridge`.
        let names: &[&str] = match name.as_str() {
            "default" | "bridge" => &["default", "bridge"],
            n => &[n],
        };
        names
            .iter()
            .find(|k| endpoints.contains_key(**k))
            .map(|k| k.to_string())
    };
    let Some(ep) = key.and_then(|k| endpoints.get_mut(&k)) else {
        return Err(ContainerError::invalid(
            "unable to migrate container-wide MAC address to a specific network: HostConfig.NetworkMode must match the identity of a network in NetworkSettings.Networks",
        ));
    };
    match ep.mac_address.as_deref().filter(|m| !m.is_empty()) {
        None => ep.mac_address = Some(mac.clone()),
        Some(m) if old_api || m.eq_ignore_ascii_case(&mac) => {
            if old_api {
                ep.mac_address = Some(mac.clone());
            }
        }
        Some(_) => {
            return Err(ContainerError::invalid(
                "the container-wide MAC address must match the endpoint-specific MAC address for the main network, or be left empty",
            ))
        }
    }
    // The record keeps it as the main network's MAC: moby keeps it in `Config` below 1.44
    // and shows the main endpoint's there from 1.44; and compose 1.x disconnects and
    // reconnects the main network before the start, which drops the endpoint's (dockerd
    // before 25 applied the container-wide MAC at start).
    Ok(MacMigration {
        warning: (!old_api).then(|| MAC_DEPRECATED.to_string()),
        kept: Some(mac),
    })
}

/// What [`migrate_mac_address`] leaves: the deprecation warning (from API 1.44), and the
/// container-wide MAC the record keeps for the main network.
#[derive(Debug, Default)]
pub struct MacMigration {
    pub warning: Option<String>,
    pub kept: Option<String>,
}

/// moby's router: clients below API 1.40 expect the IPC mode `shareable` when they give none.
pub fn old_client_ipc_mode(body: &mut ContainerCreateBody, version: ApiVersion) {
    if version < ApiVersion::new(1, 40) {
        let hc = body.host_config.get_or_insert_with(Default::default);
        if hc.ipc_mode.as_deref().unwrap_or("").is_empty() {
            hc.ipc_mode = Some("shareable".to_string());
        }
    }
}

const MAC_DEPRECATED: &str =
    "The container-wide MacAddress field is now deprecated. It should be specified in EndpointsConfig instead.";

/// What dockerd refuses when `--userns-remap` is on and the container does not opt out with
/// `--userns=host` (moby's `verifyPlatformContainerSettings`): `UsernsMode` other than `host`
/// or empty, and privileged or host-namespace containers in the remapped namespace.
fn check_userns(hc: &HostConfig) -> Result<(), ContainerError> {
    let mode = hc.userns_mode.as_deref().unwrap_or("");
    match mode {
        "host" => return Ok(()),
        "" => {}
        other => {
            return Err(ContainerError::invalid(format!(
                "invalid USER mode: {other}"
            )))
        }
    }
    if hc.privileged == Some(true) {
        return Err(ContainerError::invalid(
            "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode",
        ));
    }
    if hc.network_mode.as_deref() == Some("host") {
        return Err(ContainerError::invalid(
            "cannot share the host's network namespace when user namespaces are enabled",
        ));
    }
    if hc.pid_mode.as_deref() == Some("host") {
        return Err(ContainerError::invalid(
            "cannot share the host PID namespace when user namespaces are enabled",
        ));
    }
    Ok(())
}

/// moby's `validateNetMode` (run when a create request is decoded): what a container that
/// shares another's network namespace (`container:<name|id>`) cannot set, and a hostname
/// with the host's UTS namespace. Checked on the request, before the image's config merges.
fn validate_net_mode(c: &ContainerConfig, hc: &HostConfig) -> Result<(), ContainerError> {
    let bad = |m: &str| Err(ContainerError::invalid(m.to_string()));
    let mode = hc.network_mode.as_deref().unwrap_or("");
    let hostname = !c.hostname.as_deref().unwrap_or("").is_empty();
    let given = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    if mode == "container" || mode.starts_with("container:") {
        if mode.strip_prefix("container:").unwrap_or("").is_empty() {
            return bad("invalid network mode: invalid container format container:<name|id>");
        }
        if hostname {
            return bad("conflicting options: hostname and the network mode");
        }
        if given(&hc.links) {
            return bad("conflicting options: container type network can't be used with links. This would result in undefined behavior");
        }
        if given(&hc.dns) {
            return bad("conflicting options: dns and the network mode");
        }
        if given(&hc.extra_hosts) {
            return bad("conflicting options: custom host-to-IP mapping and the network mode");
        }
        if hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty())
            || hc.publish_all_ports == Some(true)
        {
            return bad("conflicting options: port publishing and the container type network mode");
        }
        if c.exposed_ports.as_ref().is_some_and(|p| !p.is_empty()) {
            return bad("conflicting options: port exposing and the container type network mode");
        }
    }
    if hc.uts_mode.as_deref() == Some("host") && hostname {
        return bad("conflicting options: hostname and the UTS mode");
    }
    Ok(())
}

/// moby's `adaptSharedNamespaceContainer`: `container:<name>` network, IPC and PID modes are
/// recorded with the other container's ID, so that a rename (or a new container taking the
/// name) does not change whose namespaces this one joins. A name that finds no container is
/// left as it is, for the checks that follow.
fn adapt_shared_namespaces(hc: &mut HostConfig, id_of: impl Fn(&str) -> Option<String>) {
    for mode in [&mut hc.network_mode, &mut hc.ipc_mode, &mut hc.pid_mode] {
        if let Some(other) = mode.as_deref().and_then(|m| m.strip_prefix("container:")) {
            if let Some(id) = id_of(other) {
                *mode = Some(format!("container:{id}"));
            }
        }
    }
}

/// An OCI platform as containerd's `platforms.Parse` reads a create's `platform`: `os`,
/// `os/arch`, `os/arch/variant` or a lone architecture (this host's OS), with the usual
/// architecture aliases normalized (`x86_64` is `amd64`, `aarch64` `arm64`, `armhf` `arm/v7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Platform {
    os: String,
    arch: String,
    variant: Option<String>,
}

/// Known operating systems (Go's `GOOS` list, as containerd checks them).
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

/// An architecture's normalized name and the variant its alias implies.
fn normalize_arch(arch: &str) -> (String, Option<String>) {
    let a = arch.to_ascii_lowercase();
    let (name, variant) = match a.as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64", None),
        "aarch64" | "arm64" => ("arm64", None),
        "armhf" => ("arm", Some("v7")),
        "armel" => ("arm", Some("v6")),
        "i386" | "i486" | "i586" | "i686" | "386" => ("386", None),
        other => return (other.to_string(), None),
    };
    (name.to_string(), variant.map(str::to_string))
}

impl Platform {
    pub(super) fn parse(p: &str) -> Result<Platform, ContainerError> {
        let bad = || {
            ContainerError::invalid(format!(
                "{p:?}: unknown operating system or architecture: invalid argument"
            ))
        };
        let parts: Vec<&str> = p.split('/').collect();
        if parts.iter().any(|x| x.is_empty()) || parts.len() > 3 {
            return Err(bad());
        }
        let os_known = |o: &str| KNOWN_OS.contains(&o.to_ascii_lowercase().as_str());
        let (os, arch, variant) = match parts[..] {
            [one] if os_known(one) => (one, crate::version::go_arch(), None),
            [one] => ("linux", one, None),
            [os, arch] if os_known(os) => (os, arch, None),
            [os, arch, variant] if os_known(os) => (os, arch, Some(variant)),
            _ => return Err(bad()),
        };
        let (arch, implied) = normalize_arch(arch);
        Ok(Platform {
            os: os.to_ascii_lowercase(),
            arch,
            variant: variant.map(|v| v.to_ascii_lowercase()).or(implied),
        })
    }

    /// containerd's `platforms.Only` for one image: the same OS and architecture, and a
    /// variant that the wanted one runs (an `arm/v7` host runs `v6` and `v5` images; an image
    /// without a variant matches any).
    fn matches(&self, image: &Platform) -> bool {
        if self.os != image.os || self.arch != image.arch {
            return false;
        }
        match (&self.variant, &image.variant) {
            (Some(w), Some(i)) if w != i => {
                let level = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
                self.arch == "arm" && matches!((level(w), level(i)), (Some(w), Some(i)) if i <= w)
            }
            _ => true,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn env_key(e: &str) -> &str {
    e.split_once('=').map(|(k, _)| k).unwrap_or(e)
}

fn empty(s: &Option<String>) -> bool {
    s.as_deref().unwrap_or("").is_empty()
}

/// moby's `merge(userConf, imageConf)`: the image supplies what the user left out.
pub fn merge_image_config(c: &mut ContainerConfig, img: &RunConfig) {
    if empty(&c.user) {
        c.user = img.user.clone();
    }
    if let Some(ports) = &img.exposed_ports {
        let mine = c.exposed_ports.get_or_insert_with(Vec::new);
        for p in ports.keys() {
            if !mine.contains(p) {
                mine.push(p.clone());
            }
        }
        mine.sort();
    }
    match (&mut c.env, &img.env) {
        (None, Some(ie)) => c.env = Some(ie.clone()),
        (Some(ue), Some(ie)) if ue.is_empty() => *ue = ie.clone(),
        (Some(ue), Some(ie)) => {
            for e in ie {
                if !ue.iter().any(|u| env_key(u) == env_key(e)) {
                    ue.push(e.clone());
                }
            }
        }
        _ => {}
    }
    if let Some(il) = &img.labels {
        let mut labels = il.clone();
        labels.extend(c.labels.take().unwrap_or_default());
        c.labels = Some(labels);
    }
    // `--entrypoint ""` arrives as [""]: reset to no entrypoint at all (moby's
    // `mergeAndVerifyConfig`). As in moby's `merge`, [""] is an entrypoint the user gave, so
    // the image's `Cmd` is not taken either: without a command of its own, the create fails
    // with `no command specified`.
    let reset = c
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.len() == 1 && e[0].is_empty());
    if reset {
        c.entrypoint = None;
    } else if c.entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
        if c.cmd.as_ref().is_none_or(|v| v.is_empty()) {
            c.cmd = img.cmd.clone();
            c.args_escaped = img.args_escaped;
        }
        if c.entrypoint.is_none() || c.entrypoint.as_ref().is_some_and(|e| e.is_empty()) {
            c.entrypoint = img.entrypoint.clone();
        }
    }
    if empty(&c.working_dir) {
        c.working_dir = img.working_dir.clone();
    }
    if let Some(iv) = &img.volumes {
        let mine = c.volumes.get_or_insert_with(Vec::new);
        for v in iv.keys() {
            if !mine.contains(v) {
                mine.push(v.clone());
            }
        }
        mine.sort();
    }
    if empty(&c.stop_signal) {
        c.stop_signal = img.stop_signal.clone();
    }
    if c.on_build.is_none() {
        c.on_build = img.on_build.clone();
    }
    if c.shell.is_none() {
        c.shell = img.shell.clone();
    }
    super::health::merge(
        &mut c.healthcheck,
        img.healthcheck
            .clone()
            .and_then(|h| serde_json::from_value(h).ok()),
    );
}

/// `Path` and `Args` of the container's process.
pub fn path_and_args(c: &ContainerConfig) -> Result<(String, Vec<String>), ContainerError> {
    let mut all: Vec<String> = c.entrypoint.clone().unwrap_or_default();
    all.extend(c.cmd.clone().unwrap_or_default());
    if all.is_empty() {
        return Err(ContainerError::invalid("no command specified"));
    }
    let path = all.remove(0);
    Ok((path, all))
}

/// moby's `parsers.ParseUintList`: `0-2,4` as ranges; `None` for a malformed list.
fn parse_uint_list(list: &str) -> Option<Vec<(u64, u64)>> {
    if list.is_empty() {
        return Some(Vec::new());
    }
    list.split(',')
        .map(|part| match part.split_once('-') {
            None => part.parse().ok().map(|v| (v, v)),
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
                (a <= b).then_some((a, b))
            }
        })
        .collect()
}

/// The cpuset part of moby's `verifyPlatformContainerResources`: `CpusetCpus` and
/// `CpusetMems` must parse and name only CPUs and memory nodes the host's cpuset offers (a
/// bad list would otherwise surface as a raw cgroup write error at start).
pub(super) fn check_cpuset(
    h: &HostConfig,
    caps: &crate::runtime::CgroupInfo,
) -> Result<(), ContainerError> {
    for (given, avail, what, nodes) in [
        (&h.cpuset_cpus, &caps.cpus, "cpus", "CPUs"),
        (&h.cpuset_mems, &caps.mems, "mems", "memory nodes"),
    ] {
        let given = given.as_deref().unwrap_or("");
        if given.is_empty() {
            continue;
        }
        let Some(wanted) = parse_uint_list(given) else {
            return Err(ContainerError::invalid(format!(
                "Invalid value {given} for cpuset {what}: invalid format: {given}"
            )));
        };
        // An unreadable host list leaves the check to the kernel.
        let Some(offered) = parse_uint_list(avail).filter(|o| !o.is_empty()) else {
            continue;
        };
        let has = |v: u64| offered.iter().any(|(a, b)| (*a..=*b).contains(&v));
        let missing = wanted.iter().any(|(a, b)| (*a..=*b).any(|v| !has(v)));
        if missing {
            return Err(ContainerError::invalid(format!(
                "Requested {nodes} are not available - requested {given}, available: {avail}"
            )));
        }
    }
    Ok(())
}

/// The block I/O part of moby's `verifyPlatformContainerResources`: a limit the host's cgroups
/// cannot apply is discarded with dockerd's warning (libcontainer would fail the start on the
/// missing file), and a weight outside 10–1000 is refused.
pub(super) fn check_blkio(
    h: &mut HostConfig,
    caps: &crate::runtime::CgroupInfo,
) -> Result<Vec<String>, ContainerError> {
    let mut warnings = Vec::new();
    if h.blkio_weight.unwrap_or(0) > 0 && !caps.io_weight {
        warnings.push("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.".to_string());
        h.blkio_weight = Some(0);
    }
    if let Some(w) = h.blkio_weight.filter(|w| *w > 0) {
        if !(10..=1000).contains(&w) {
            return Err(ContainerError::invalid(
                "Range of blkio weight is from 10 to 1000",
            ));
        }
    }
    if h.io_maximum_bandwidth.unwrap_or(0) != 0 || h.io_maximum_iops.unwrap_or(0) != 0 {
        return Err(ContainerError::invalid(
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps",
        ));
    }
    if h.blkio_weight_device
        .as_ref()
        .is_some_and(|d| !d.is_empty())
        && !caps.io_weight_device
    {
        warnings.push("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.".to_string());
        h.blkio_weight_device = Some(Vec::new());
    }
    let throttles = [
        (
            &mut h.blkio_device_read_bps,
            caps.io_read_bps,
            "BPS Block I/O read limit or the cgroup is not mounted. Block I/O BPS read limit",
        ),
        (
            &mut h.blkio_device_write_bps,
            caps.io_write_bps,
            "BPS Block I/O write limit or the cgroup is not mounted. Block I/O BPS write limit",
        ),
        (
            &mut h.blkio_device_read_iops,
            caps.io_read_iops,
            "IOPS Block read limit or the cgroup is not mounted. Block I/O IOPS read limit",
        ),
        (
            &mut h.blkio_device_write_iops,
            caps.io_write_iops,
            "IOPS Block write limit or the cgroup is not mounted. Block I/O IOPS write limit",
        ),
    ];
    for (limits, ok, what) in throttles {
        if limits.as_ref().is_some_and(|l| !l.is_empty()) && !ok {
            warnings.push(format!("Your kernel does not support {what} discarded."));
            *limits = Some(Vec::new());
        }
    }
    Ok(warnings)
}

/// A `RestartPolicy.Name` dockerd knows, or its 400. The API checks the raw name with it too,
/// since the typed body cannot hold an unknown one.
pub fn check_restart_policy_name(name: &str) -> Result<(), ContainerError> {
    match name {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => Ok(()),
        other => Err(ContainerError::invalid(format!(
            "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
        ))),
    }
}

/// dockerd's host config checks and defaults.
pub fn verify_host_config(
    h: &mut HostConfig,
    ncpu: i64,
    default_log: &(String, HashMap<String, String>),
) -> Result<crate::logger::LogConfig, ContainerError> {
    // A cgroup parent may not climb out of the hierarchy (dockerd leaves it to runc).
    if let Some(parent) = h.cgroup_parent.as_deref() {
        if parent.split('/').any(|c| c == "..") {
            return Err(ContainerError::invalid(format!(
                "invalid cgroup parent {parent:?}: it must not contain \"..\""
            )));
        }
    }
    // Restart policy.
    let policy = h.restart_policy.clone().unwrap_or_default();
    let name = policy.name.map(|n| n.to_string()).unwrap_or_default();
    let max = policy.maximum_retry_count.unwrap_or(0);
    check_restart_policy_name(&name)?;
    match name.as_str() {
        "on-failure" if max < 0 => {
            return Err(ContainerError::invalid(
                "invalid restart policy: maximum retry count cannot be negative",
            ));
        }
        "on-failure" => {}
        // The other known names (an unknown one was refused above) take no retry count.
        _ if max != 0 => {
            return Err(ContainerError::invalid(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            ));
        }
        _ => {}
    }
    if h.auto_remove == Some(true) && !matches!(name.as_str(), "" | "no") {
        return Err(ContainerError::invalid(
            "can't create 'AutoRemove' container with restart policy",
        ));
    }
    if name.is_empty() {
        h.restart_policy = Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: Some(0),
        });
    }
    // Resources.
    let memory = h.memory.unwrap_or(0);
    if memory > 0 && memory < 6 * 1024 * 1024 {
        return Err(ContainerError::invalid(
            "Minimum memory limit allowed is 6MB",
        ));
    }
    let swap = h.memory_swap.unwrap_or(0);
    if memory > 0 && swap > 0 && swap < memory {
        return Err(ContainerError::invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if memory > 0 && swap == 0 {
        // dockerd: without --memory-swap, as much swap as memory.
        h.memory_swap = Some(memory * 2);
    }
    if memory == 0 && swap > 0 {
        return Err(ContainerError::invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    let nano = h.nano_cpus.unwrap_or(0);
    if nano < 0 || nano > ncpu * 1_000_000_000 || (nano > 0 && nano < 10_000_000) {
        return Err(ContainerError::invalid(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    if nano > 0 && h.cpu_period.unwrap_or(0) > 0 {
        return Err(ContainerError::invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if nano > 0 && h.cpu_quota.unwrap_or(0) > 0 {
        return Err(ContainerError::invalid(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    if let Some(s) = h.memory_swappiness {
        if s != -1 && !(0..=100).contains(&s) {
            return Err(ContainerError::invalid(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            )));
        }
    }
    // moby's `fixMemorySwappiness`: the CLI's -1 (the kernel's default) is recorded as unset.
    if h.memory_swappiness == Some(-1) {
        h.memory_swappiness = None;
    }
    if h.shm_size.unwrap_or(0) < 0 {
        return Err(ContainerError::invalid("SHM size can not be less than 0"));
    }
    if h.shm_size.unwrap_or(0) == 0 {
        h.shm_size = Some(DEFAULT_SHM_SIZE);
    }
    // As moby's `adaptContainerSettings`: the namespace modes the container gets by default
    // are recorded (inspect shows them): a private IPC namespace, and the cgroup namespace
    // of the host on cgroup v1, a private one on v2 (what the spec builder does for none).
    if h.ipc_mode.as_deref().unwrap_or("").is_empty() {
        h.ipc_mode = Some("private".to_string());
    }
    // The CLI sends `"CgroupnsMode": ""` when the flag is not given: the same as none.
    if matches!(
        h.cgroupns_mode,
        None | Some(HostConfigCgroupnsModeEnum::EMPTY)
    ) {
        h.cgroupns_mode = Some(match crate::runtime::cgroup_version() {
            crate::runtime::CgroupVersion::V2 => HostConfigCgroupnsModeEnum::PRIVATE,
            crate::runtime::CgroupVersion::V1 => HostConfigCgroupnsModeEnum::HOST,
        });
    }
    // As moby's `createContainerOSSpecificSettings`: the defaults are recorded (and shown by
    // inspect) unless the container is privileged or names its own.
    if !h.privileged.unwrap_or(false) {
        if h.masked_paths.is_none() {
            h.masked_paths = Some(crate::runtime::spec::default_masked_paths());
        }
        if h.readonly_paths.is_none() {
            h.readonly_paths = Some(crate::runtime::spec::default_readonly_paths());
        }
    }
    if let Some(a) = h.oom_score_adj {
        if !(-1000..=1000).contains(&a) {
            return Err(ContainerError::invalid(format!(
                "Invalid value {a}, range for oom score adj is [-1000, 1000]"
            )));
        }
    }
    // Runtime: recorded as given, berth's own name when none is.
    match h.runtime.as_deref().unwrap_or("") {
        "" => h.runtime = Some(crate::runtime::RUNTIME_NAME.to_string()),
        name if RUNTIME_NAMES.contains(&name) => {}
        name => {
            return Err(ContainerError::invalid(format!(
                "unknown or invalid runtime name: {name}"
            )))
        }
    }
    // Network mode.
    let mode = h.network_mode.clone().unwrap_or_default();
    if mode.is_empty() || mode == "default" {
        h.network_mode = Some("bridge".to_string());
    }
    // Logging.
    let lc = h
        .log_config
        .get_or_insert_with(HostConfigLogConfig::default);
    if lc.typ.as_deref().unwrap_or("").is_empty() {
        lc.typ = Some(default_log.0.clone());
        if lc.config.as_ref().is_none_or(|c| c.is_empty()) {
            lc.config = Some(default_log.1.clone());
        }
    }
    let driver = lc.typ.clone().unwrap_or_default();
    let opts = lc.config.clone().unwrap_or_default();
    lc.config.get_or_insert_with(HashMap::new);
    crate::logger::LogConfig::from_docker(&driver, &opts)
        .map_err(|e| ContainerError::invalid(e.to_string()))
}

/// `/etc/hosts` for a container with its own network namespace.
pub fn hosts_file(hostname: &str, extra: &[String]) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for e in extra {
        // --add-host name:ip
        if let Some((name, ip)) = e.split_once(':') {
            s.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    let _ = hostname;
    s
}

/// `/etc/resolv.conf`: the host's, without loopback name servers (unreachable from another
/// network namespace); `Dns`, `DnsSearch` and `DnsOptions` replace the host's entries.
pub fn resolv_conf(
    host: &str,
    host_network: bool,
    dns: &[String],
    search: &[String],
    options: &[String],
) -> String {
    let mut servers = Vec::new();
    let mut searches = Vec::new();
    let mut opts = Vec::new();
    let mut other = Vec::new();
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            let loopback = ns.starts_with("127.") || ns == "::1";
            if host_network || !loopback {
                servers.push(ns.to_string());
            }
        } else if let Some(s) = t.strip_prefix("search") {
            searches.extend(s.split_whitespace().map(str::to_string));
        } else if let Some(o) = t.strip_prefix("options") {
            opts.extend(o.split_whitespace().map(str::to_string));
        } else if !t.is_empty() && !t.starts_with('#') && !t.starts_with(';') {
            other.push(t.to_string());
        }
    }
    if !dns.is_empty() {
        servers = dns.to_vec();
    }
    if !search.is_empty() {
        searches = search.iter().filter(|s| *s != ".").cloned().collect();
    }
    if !options.is_empty() {
        opts = options.to_vec();
    }
    if servers.is_empty() && !host_network {
        // dockerd's fallback when the host only has local resolvers.
        servers = vec!["8.8.8.8".to_string(), "8.8.4.4".to_string()];
    }
    let mut s = String::new();
    if !searches.is_empty() {
        s.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for ns in servers {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    if !opts.is_empty() {
        s.push_str(&format!("options {}\n", opts.join(" ")));
    }
    for o in other {
        s.push_str(&o);
        s.push('\n');
    }
    s
}

impl ContainerManager {
    /// `POST /containers/create`: returns the ID and warnings.
    pub async fn create(
        self: &Arc<Self>,
        name: Option<String>,
        platform: Option<String>,
        body: ContainerCreateBody,
        container_mac: Option<String>,
    ) -> Result<(String, Vec<String>), ContainerError> {
        let image_name = body.image.clone().unwrap_or_default();
        if image_name.is_empty() {
            return Err(ContainerError::invalid(
                "config cannot be empty in order to create a container",
            ));
        }
        super::health::validate(body.healthcheck.as_ref())?;
        // The image side's `No such image: name:latest` (moby's `ErrImageDoesNotExist` names
        // the reference with its tag), which the CLI prints before pulling.
        let wanted = platform
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(Platform::parse)
            .transpose()?;
        let image = self
            .images
            .get_image(&image_name)
            .map_err(ContainerError::from)?;
        if let Some(wanted) = wanted {
            let c = &image.config;
            let actual = Platform {
                os: c.os.clone(),
                arch: normalize_arch(&c.architecture).0,
                variant: c.variant.clone().filter(|v| !v.is_empty()),
            };
            if !wanted.matches(&actual) {
                // A 404, as moby's: the CLI then tries to pull the platform's image.
                return Err(ContainerError::not_found(format!(
                    "image with reference {image_name} was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
                )));
            }
        }
        self.create_with(name, body, image, container_mac).await
    }

    /// A build step's container on no image at all (`FROM scratch`): an empty root file
    /// system, no parent for its commit.
    pub async fn create_scratch(
        self: &Arc<Self>,
        body: ContainerCreateBody,
    ) -> Result<(String, Vec<String>), ContainerError> {
        let config = crate::image::config::ImageConfigFile {
            architecture: crate::version::go_arch().to_string(),
            os: "linux".to_string(),
            ..Default::default()
        };
        let image = crate::image::store::Image {
            id: String::new(),
            config,
            raw_config: Arc::new(Vec::new()),
            chain: Vec::new(),
            last_tag_time: None,
            parent: None,
            built_locally: false,
        };
        self.create_with(None, body, image, None).await
    }

    async fn create_with(
        self: &Arc<Self>,
        name: Option<String>,
        body: ContainerCreateBody,
        image: crate::image::store::Image,
        container_mac: Option<String>,
    ) -> Result<(String, Vec<String>), ContainerError> {
        // A start usually follows at once (`docker run`): begin the grace period its first
        // cgroup move waits for; the start begins another, which keeps the window open if this
        // one has passed.
        self.warm_cgroup_migration();
        // A first start's `host` and `none` networks are written in the background: the
        // record made below may name them.
        self.network.predefined_saved().await;
        let networking = body.networking_config.clone();
        let (mut config, mut host) = split_body(body);
        super::health::validate(config.healthcheck.as_ref())?;
        // moby's `verifyContainerSettings`: the request's stop signal must parse (the image's
        // is not checked; a stop falls back to SIGTERM when it does not).
        if let Some(sig) = config.stop_signal.as_deref().filter(|s| !s.is_empty()) {
            super::stop::parse_signal(sig)?;
        }
        validate_net_mode(&config, &host)?;
        adapt_shared_namespaces(&mut host, |name| self.get(name).ok().map(|c| c.id.clone()));
        // moby's router: a pids limit of 0 or less is no limit, recorded as none.
        if host.pids_limit.is_some_and(|n| n <= 0) {
            host.pids_limit = None;
        }
        let log = verify_host_config(&mut host, self.cfg.ncpu, &self.cfg.default_log)?;
        check_cpuset(&host, self.runtime.cgroups())?;
        let blkio_warnings = check_blkio(&mut host, self.runtime.cgroups())?;
        if self.cfg.userns_remap.is_some() {
            check_userns(&host)?;
        }
        // moby's overlay2 driver takes storage options only with project quotas (xfs with
        // `pquota`); berth applies none, so it refuses them rather than ignore a size limit.
        if host.storage_opt.as_ref().is_some_and(|o| !o.is_empty()) {
            return Err(ContainerError::invalid(
                "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
            ));
        }
        if let Some(run) = &image.config.config {
            merge_image_config(&mut config, run);
        }
        let (path, args) = path_and_args(&config)?;
        let networks = self.networks_at_create(&host, networking.as_ref())?;
        let links = self.register_links(&host)?;
        let mut points = super::mounts::validate_create(&config, &host)?;
        self.add_volumes_from(&mut points, &host)?;
        super::mounts::add_image_volumes(&mut points, &config);
        let mut warnings = Vec::new();
        if host.memory.unwrap_or(0) > 0
            && !self.runtime.cgroups().swap_limit
            && host.memory_swap.unwrap_or(0) > 0
        {
            warnings.push("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.".to_string());
        }
        if host.network_mode.as_deref() == Some("host")
            && host.port_bindings.as_ref().is_some_and(|p| !p.is_empty())
        {
            warnings.push("Published ports are discarded when using host network mode".to_string());
        }
        if host.oom_kill_disable == Some(true) && host.memory.unwrap_or(0) == 0 {
            warnings.push("OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.".to_string());
        }
        warnings.extend(blkio_warnings);
        let id = loop {
            let id = random_hex(64);
            // Like dockerd: a short ID that parses as a number would be ambiguous.
            if id[..12].parse::<u64>().is_err() {
                break id;
            }
        };
        let name = self.reserve_name(name, &id)?;
        if !links.is_empty() {
            host.links = Some(super::network::stored_links(&links, &name));
        }
        if let Err(e) = self.attach_volumes(&id, &mut points) {
            lock(&self.names).remove(&name);
            return Err(e);
        }
        let volumes: Vec<MountPoint> = points.iter().filter(|p| p.is_volume()).cloned().collect();
        let result = self.create_files(
            &id,
            &name,
            config,
            host,
            (path, args),
            log,
            points,
            &image,
            networks,
            container_mac,
        );
        match result {
            Ok(record) => {
                let c = self.new_container(record.clone());
                self.insert(c);
                self.publish(&record, "create");
                Ok((id, warnings))
            }
            Err(e) => {
                lock(&self.names).remove(&name);
                self.detach_volumes(&id, &volumes, true);
                let _ = std::fs::remove_dir_all(self.container_dir(&id));
                Err(e)
            }
        }
    }

    /// Take a name (given or generated) for `id`, or Docker's conflict error.
    pub(super) fn reserve_name(
        &self,
        name: Option<String>,
        id: &str,
    ) -> Result<String, ContainerError> {
        let mut names_map = lock(&self.names);
        match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let bare = n.strip_prefix('/').unwrap_or(&n).to_string();
                if !names::valid(&bare) {
                    return Err(ContainerError::invalid(format!(
                        "Invalid container name ({bare}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                if let Some(other) = names_map.get(&bare) {
                    return Err(ContainerError::conflict(format!(
                        "Conflict. The container name \"/{bare}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                    )));
                }
                names_map.insert(bare.clone(), id.to_string());
                Ok(bare)
            }
            None => {
                for retry in 0..10 {
                    let n = names::generate(retry);
                    if !names_map.contains_key(&n) {
                        names_map.insert(n.clone(), id.to_string());
                        return Ok(n);
                    }
                }
                let n = format!("{}_{}", names::generate(1), &id[..6]);
                names_map.insert(n.clone(), id.to_string());
                Ok(n)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_files(
        &self,
        id: &str,
        name: &str,
        mut config: bollard_stubs::models::ContainerConfig,
        host: HostConfig,
        (path, args): (String, Vec<String>),
        log: crate::logger::LogConfig,
        mount_points: Vec<MountPoint>,
        image: &crate::image::store::Image,
        networks: std::collections::BTreeMap<String, bollard_stubs::models::EndpointSettings>,
        mac_address: Option<String>,
    ) -> Result<Record, ContainerError> {
        let dir = self.container_dir(id);
        ensure_dir(&self.cfg.data_root.join("containers"), 0o710)
            .map_err(|e| ContainerError::io("create containers dir", e))?;
        ensure_dir(&dir, 0o710)
            .map_err(|e| ContainerError::io(format!("create {}", dir.display()), e))?;
        let layer = self.layer_dir(id);
        for sub in ["diff", "work", "merged"] {
            ensure_dir(&layer.join(sub), 0o755)
                .map_err(|e| ContainerError::io(format!("create container layer {sub}"), e))?;
        }
        let net = host.network_mode.clone().unwrap_or_default();
        if config.hostname.as_deref().unwrap_or("").is_empty() {
            config.hostname = Some(if net == "host" {
                nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| id[..12].to_string())
            } else {
                id[..12].to_string()
            });
        }
        let hostname = config.hostname.clone().unwrap_or_default();
        let hostname_path = dir.join("hostname");
        let hosts_path = dir.join("hosts");
        let resolv_path = dir.join("resolv.conf");
        // Replaced atomically but not fsynced, as dockerd writes them: the record's fsync
        // below, on a journaled file system, commits them too; a start on a network remakes
        // `hosts` and `resolv.conf` anyway.
        let write = |p: &Path, s: &str| {
            replace_file(p, s.as_bytes(), 0o644)
                .map_err(|e| ContainerError::io(format!("write {}", p.display()), e))
        };
        write(&hostname_path, &format!("{hostname}\n"))?;
        let host_net = net == "host";
        let extra = host.extra_hosts.as_deref().unwrap_or(&[]);
        // The host's own file on the host's network, unless `--add-host` entries are given:
        // then the default lines and those (moby's `buildHostsFile`).
        let hosts = if host_net && extra.is_empty() {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else if host_net {
            let gw = self
                .host_gateway()
                .map(|g| g.to_string())
                .unwrap_or_default();
            let extra: Vec<String> = extra
                .iter()
                .filter_map(|e| match e.split_once(':') {
                    Some((_, "host-gateway")) if gw.is_empty() => None,
                    Some((name, "host-gateway")) => Some(format!("{name}:{gw}")),
                    _ => Some(e.clone()),
                })
                .collect();
            hosts_file(&hostname, &extra)
        } else {
            hosts_file(&hostname, extra)
        };
        write(&hosts_path, &hosts)?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        write(
            &resolv_path,
            &resolv_conf(
                &host_resolv,
                host_net,
                host.dns.as_deref().unwrap_or(&[]),
                host.dns_search.as_deref().unwrap_or(&[]),
                host.dns_options.as_deref().unwrap_or(&[]),
            ),
        )?;
        let mut record = Record {
            id: id.to_string(),
            name: name.to_string(),
            created: rfc3339_nano(SystemTime::now()),
            image: image.id.clone(),
            chain: image.chain.clone(),
            path,
            args,
            config,
            host_config: host,
            state: State::default(),
            restart_count: 0,
            log_path: dir.join(format!("{id}-json.log")).display().to_string(),
            hostname_path: hostname_path.display().to_string(),
            hosts_path: hosts_path.display().to_string(),
            resolv_conf_path: resolv_path.display().to_string(),
            log: Some(log),
            mount_points: Some(mount_points),
            mount_error: None,
            networks,
            mac_address,
        };
        self.populate_volumes(&mut record)?;
        record.save(&dir)?;
        Ok(record)
    }
}

#[cfg(test)]
mod mac_tests {
    use super::*;

    fn body(mode: &str) -> ContainerCreateBody {
        ContainerCreateBody {
            host_config: Some(HostConfig {
                network_mode: Some(mode.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn mac_of(b: &ContainerCreateBody, key: &str) -> Option<String> {
        b.networking_config
            .as_ref()?
            .endpoints_config
            .as_ref()?
            .get(key)?
            .mac_address
            .clone()
    }

    #[test]
    fn container_wide_mac_moves_to_the_main_endpoint() {
        let v151 = ApiVersion::new(1, 51);
        let mac = Some("02:42:ac:11:00:0a".to_string());
        let mut b = body("");
        let w = migrate_mac_address(&mut b, mac.clone(), v151).unwrap();
        assert!(w.warning.unwrap().contains("deprecated"));
        assert_eq!(w.kept, mac);
        assert_eq!(mac_of(&b, "default"), mac);
        let mut b = body("mynet");
        let w = migrate_mac_address(&mut b, mac.clone(), ApiVersion::new(1, 43)).unwrap();
        assert_eq!(mac_of(&b, "mynet"), mac);
        // The record keeps it too (moby's `Config.MacAddress`).
        assert_eq!((w.warning, w.kept), (None, mac.clone()));
        // A different endpoint MAC is refused from 1.44; host networking takes none below it.
        let mut b = body("mynet");
        migrate_mac_address(&mut b, Some("02:00:00:00:00:01".into()), v151).unwrap();
        assert!(migrate_mac_address(&mut b, mac.clone(), v151).is_err());
        assert!(migrate_mac_address(&mut body("host"), mac, ApiVersion::new(1, 43)).is_err());
        // Below 1.44 without one, endpoint MACs are dropped.
        let mut b = body("mynet");
        migrate_mac_address(&mut b, Some("02:00:00:00:00:01".into()), v151).unwrap();
        migrate_mac_address(&mut b, None, ApiVersion::new(1, 43)).unwrap();
        assert_eq!(mac_of(&b, "mynet"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::{ErrorKind, Kinded};

    fn img() -> RunConfig {
        RunConfig {
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            cmd: Some(vec!["sh".into()]),
            entrypoint: None,
            working_dir: Some("/w".into()),
            labels: Some(HashMap::from([
                ("a".into(), "1".into()),
                ("b".into(), "1".into()),
            ])),
            ..Default::default()
        }
    }

    #[test]
    fn merge_follows_moby() {
        let mut c = ContainerConfig {
            env: Some(vec!["A=user".into()]),
            labels: Some(HashMap::from([("b".into(), "2".into())])),
            ..Default::default()
        };
        merge_image_config(&mut c, &img());
        assert_eq!(c.env.unwrap(), vec!["A=user", "PATH=/bin"]);
        assert_eq!(c.cmd.unwrap(), vec!["sh"]);
        assert_eq!(c.working_dir.as_deref(), Some("/w"));
        let l = c.labels.unwrap();
        assert_eq!((l["a"].as_str(), l["b"].as_str()), ("1", "2"));
    }

    #[test]
    fn cpuset_lists_as_moby_checks_them() {
        assert_eq!(parse_uint_list("0-2,4"), Some(vec![(0, 2), (4, 4)]));
        assert_eq!(parse_uint_list(""), Some(vec![]));
        for bad in ["abc", "2-1", "1,", "-1", "1-"] {
            assert_eq!(parse_uint_list(bad), None, "{bad}");
        }
        let caps = crate::runtime::CgroupInfo {
            cpus: "0-1".into(),
            mems: "0".into(),
            ..crate::runtime::probe_cgroups()
        };
        let hc = |cpus: &str, mems: &str| HostConfig {
            cpuset_cpus: Some(cpus.into()),
            cpuset_mems: Some(mems.into()),
            ..Default::default()
        };
        assert!(check_cpuset(&hc("0,1", "0"), &caps).is_ok());
        assert_eq!(
            check_cpuset(&hc("7", ""), &caps).unwrap_err().to_string(),
            "Requested CPUs are not available - requested 7, available: 0-1"
        );
        assert_eq!(
            check_cpuset(&hc("abc", ""), &caps).unwrap_err().to_string(),
            "Invalid value abc for cpuset cpus: invalid format: abc"
        );
        assert_eq!(
            check_cpuset(&hc("", "1"), &caps).unwrap_err().to_string(),
            "Requested memory nodes are not available - requested 1, available: 0"
        );
    }

    #[test]
    fn platforms_parse_and_match_as_containerd() {
        let p = |s: &str| Platform::parse(s).unwrap();
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("LINUX/ARM/V6").to_string(), "linux/arm/v6");
        for bad in ["linux/", "/amd64", "a/b/c/d", "bogus/amd64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert!(p("linux/amd64").matches(&p("linux/amd64")));
        assert!(!p("linux/arm64").matches(&p("linux/amd64")));
        assert!(!p("windows/amd64").matches(&p("linux/amd64")));
        assert!(p("linux/arm/v7").matches(&p("linux/arm/v6")));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
        assert!(p("linux/arm/v7").matches(&p("linux/arm")));
    }

    #[test]
    fn user_cmd_and_entrypoint_reset() {
        let mut c = ContainerConfig {
            cmd: Some(vec!["echo".into(), "hi".into()]),
            ..Default::default()
        };
        merge_image_config(&mut c, &img());
        assert_eq!(
            path_and_args(&c).unwrap(),
            ("echo".to_string(), vec!["hi".to_string()])
        );
        let mut c = ContainerConfig {
            entrypoint: Some(vec!["".into()]),
            ..Default::default()
        };
        let mut i = img();
        i.entrypoint = Some(vec!["/init".into()]);
        merge_image_config(&mut c, &i);
        assert_eq!(c.entrypoint, None);
        assert_eq!(c.cmd, None);
        assert_eq!(
            path_and_args(&c).unwrap_err().to_string(),
            "no command specified"
        );
        let mut c = ContainerConfig {
            entrypoint: Some(vec!["".into()]),
            cmd: Some(vec!["ls".into()]),
            ..Default::default()
        };
        merge_image_config(&mut c, &i);
        assert_eq!(path_and_args(&c).unwrap().0, "ls");
        let c = ContainerConfig::default();
        assert!(path_and_args(&c).is_err());
    }

    #[test]
    fn host_config_checks() {
        let log = ("json-file".to_string(), HashMap::new());
        let mut h = HostConfig {
            memory: Some(1024),
            ..Default::default()
        };
        assert!(verify_host_config(&mut h, 2, &log)
            .unwrap_err()
            .to_string()
            .contains("Minimum memory limit"));
        let mut h = HostConfig {
            auto_remove: Some(true),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ALWAYS),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        assert!(verify_host_config(&mut h, 2, &log).is_err());
        let mut h = HostConfig::default();
        verify_host_config(&mut h, 2, &log).unwrap();
        assert_eq!(h.shm_size, Some(DEFAULT_SHM_SIZE));
        assert_eq!(h.network_mode.as_deref(), Some("bridge"));
        assert_eq!(h.log_config.unwrap().typ.as_deref(), Some("json-file"));
        assert_eq!(h.runtime.as_deref(), Some(crate::runtime::RUNTIME_NAME));
        // The system paths are recorded as moby records them: the defaults unless privileged.
        let masked = h.masked_paths.clone().unwrap();
        assert!(masked.iter().any(|p| p == "/proc/kcore"), "{masked:?}");
        assert!(h.readonly_paths.unwrap().iter().any(|p| p == "/proc/sys"));
        let mut h = HostConfig {
            privileged: Some(true),
            ..Default::default()
        };
        verify_host_config(&mut h, 2, &log).unwrap();
        assert_eq!((h.masked_paths, h.readonly_paths), (None, None));
    }

    #[test]
    fn runtime_names_are_recorded_or_refused() {
        let log = ("json-file".to_string(), HashMap::new());
        for name in [
            "runc",
            "io.containerd.runc.v2",
            crate::runtime::RUNTIME_NAME,
        ] {
            let mut h = HostConfig {
                runtime: Some(name.to_string()),
                ..Default::default()
            };
            verify_host_config(&mut h, 2, &log).unwrap();
            assert_eq!(h.runtime.as_deref(), Some(name));
        }
        let mut h = HostConfig {
            runtime: Some("kata".to_string()),
            ..Default::default()
        };
        let e = verify_host_config(&mut h, 2, &log).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter);
        assert_eq!(e.to_string(), "unknown or invalid runtime name: kata");
    }

    #[test]
    fn resolv_conf_drops_loopback() {
        let host =
            "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.com\noptions edns0\n";
        let s = resolv_conf(host, false, &[], &[], &[]);
        assert_eq!(
            s,
            "search example.com\nnameserver 10.0.0.2\noptions edns0\n"
        );
        let s = resolv_conf("nameserver 127.0.0.1\n", false, &[], &[], &[]);
        assert!(s.contains("nameserver 8.8.8.8"));
        let s = resolv_conf(host, false, &["1.1.1.1".into()], &[], &[]);
        assert!(s.contains("nameserver 1.1.1.1\n") && !s.contains("10.0.0.2"));
    }
}
