//! Docker's container `Config` + `HostConfig` → the OCI runtime `Spec` libcontainer runs.
//!
//! This follows moby's `daemon/oci_linux.go` (`createSpec` and its `With*` options), its
//! defaults (`daemon/pkg/oci/defaults.go`), the capability rules (`oci/caps`), the bind-mount
//! syntax (`volume/mounts/linux_parser.go`) and `parseSecurityOpt`, with the error messages
//! Docker clients show. On top of that it does what libcontainer 0.7 leaves to its caller (see
//! `docs/notes/libcontainer-0.7.md` §2): explicit `PATH` and `HOME`, explicit rlimits, an
//! absolute cgroups path, `noNewPrivileges` only when true, never an AppArmor profile.
//!
//! Decisions where Docker needs context berth does not have here:
//! - Named and anonymous volumes are refused (no volume store yet).
//! - `IpcMode` `shareable` / `container:<id>` get a private `/dev/shm` tmpfs: the namespace is
//!   joined by the caller, but the other container's `/dev/shm` is not shared.
//! - Per-mount propagation is passed through; moby's checks that the source is a shared or
//!   slave mount (and the matching `rootfsPropagation`) are not done.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bollard_stubs::models::{
    ContainerConfig, DeviceMapping, HostConfig, HostConfigCgroupnsModeEnum, Mount as ApiMount,
    MountType,
};
use oci_spec::runtime::{
    BoxBuilder, Capabilities, Capability, LinuxBlockIo, LinuxCapabilities, LinuxCpu, LinuxDevice,
    LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids,
    LinuxResources, LinuxSeccomp, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder, Mount,
    PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};
use serde::de::DeserializeOwned;

use super::{seccomp, user, CgroupVersion};
use crate::errors::{ErrorKind, Kinded};

// ---------------------------------------------------------------------------------------------
// Errors

/// A failure to turn a container's configuration into a runtime spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    kind: ErrorKind,
    message: String,
}

impl SpecError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SpecError {
            kind,
            message: message.into(),
        }
    }

    /// Bad user input (400).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameter, message)
    }

    /// A host failure or a bug (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// An I/O failure with what was being done.
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Self {
        Self::internal(format!("{context}: {e}"))
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

impl Kinded for SpecError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

// ---------------------------------------------------------------------------------------------
// Options

/// How the container gets one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace<'a> {
    /// A new namespace.
    Private,
    /// The host's (no entry in the spec).
    Host,
    /// Join the namespace bound at this path (e.g. `/proc/<pid>/ns/net` or a bind-mounted netns).
    Path(&'a Path),
}

/// Everything [`build`] needs.
pub struct SpecOptions<'a> {
    pub id: &'a str,
    /// Already merged with the image config (Cmd/Entrypoint/Env/WorkingDir/User final).
    pub config: &'a ContainerConfig,
    pub host_config: &'a HostConfig,
    /// The mounted, populated rootfs (absolute).
    pub rootfs: &'a Path,
    /// Files in the container's directory, bind-mounted on `/etc/hostname`, `/etc/hosts` and
    /// `/etc/resolv.conf` (each skipped, as by Docker, when the file does not exist).
    pub hostname_path: &'a Path,
    pub hosts_path: &'a Path,
    pub resolv_conf_path: &'a Path,
    pub network: Namespace<'a>,
    pub ipc: Namespace<'a>,
    pub pid: Namespace<'a>,
    pub uts: Namespace<'a>,
    /// Absolute, e.g. `/berth/<id>`.
    pub cgroup_path: String,
    pub cgroup_version: CgroupVersion,
    /// The host's init binary (tini) when `HostConfig.Init` is true; used only with a private
    /// pid namespace, as by Docker.
    pub init_path: Option<&'a Path>,
}

/// Docker's default `PATH`.
pub const DEFAULT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the init binary appears in the container.
pub const INIT_PATH_IN_CONTAINER: &str = "/sbin/docker-init";
/// `/dev/shm`'s size when `ShmSize` is unset: 64 MiB.
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;
/// `RLIMIT_NOFILE` when `Ulimits` does not set it (what dockerd's containers inherit).
pub const DEFAULT_NOFILE: u64 = 1 << 20;

/// Docker's default capabilities.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability oci-spec knows, by number (`CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE` = 40).
const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

// ---------------------------------------------------------------------------------------------
// Entry points

/// The OCI spec for the container's init process.
pub fn build(opts: &SpecOptions) -> Result<Spec, SpecError> {
    let cfg = opts.config;
    let hc = opts.host_config;
    let sec = SecurityOptions::parse(hc.security_opt.as_deref().unwrap_or_default())?;
    let privileged = hc.privileged.unwrap_or(false);
    let caps = capabilities(hc)?;
    let hostname = hostname(opts);

    // process
    let mut args: Vec<String> = cfg
        .entrypoint
        .iter()
        .flatten()
        .chain(cfg.cmd.iter().flatten())
        .cloned()
        .collect();
    if args.is_empty() {
        return Err(SpecError::invalid("no command specified"));
    }
    let init = opts
        .init_path
        .filter(|_| matches!(opts.pid, Namespace::Private));
    if init.is_some() {
        let mut wrapped = vec![INIT_PATH_IN_CONTAINER.to_string(), "--".to_string()];
        wrapped.append(&mut args);
        args = wrapped;
    }
    let tty = cfg.tty.unwrap_or(false);
    let env = daemon_env(cfg.env.as_deref().unwrap_or_default(), &hostname, tty);
    let working_dir = cfg.working_dir.as_deref().unwrap_or("");
    check_working_dir(working_dir)?;
    let console = match hc.console_size.as_deref() {
        Some([h, w]) if tty && (*h > 0 || *w > 0) => Some((*h as u64, *w as u64)),
        _ => None,
    };
    let process = make_process(
        opts,
        &sec,
        ProcessParts {
            args,
            env,
            user: cfg.user.as_deref().unwrap_or(""),
            cwd: working_dir,
            tty,
            console,
            caps: &caps,
        },
    )?;

    // mounts
    let mounts = mounts(opts, &sec, init)?;

    // linux
    let mut linux: oci_spec::runtime::Linux = empty(serde_json::json!({}))?;
    linux.set_cgroups_path(Some(PathBuf::from(&opts.cgroup_path)));
    linux.set_namespaces(Some(namespaces(opts)?));
    check_device_requests(hc)?;
    let (devices, device_rules) = devices(hc, privileged)?;
    if !devices.is_empty() {
        linux.set_devices(Some(devices));
    }
    let mut resources = resources(hc, opts.cgroup_version)?;
    resources.set_devices(Some(device_rules));
    linux.set_resources(Some(resources));
    let sysctls = sysctls(opts)?;
    if !sysctls.is_empty() {
        linux.set_sysctl(Some(sysctls));
    }
    let (masked, readonly) = system_paths(hc, &sec, privileged);
    if !masked.is_empty() {
        linux.set_masked_paths(Some(masked));
    }
    if !readonly.is_empty() {
        linux.set_readonly_paths(Some(readonly));
    }
    linux.set_seccomp(seccomp_profile(&sec, privileged, &caps)?);

    let mut spec: Spec = empty(serde_json::json!({ "ociVersion": "1.0.2" }))?;
    let mut root: Root = empty(serde_json::json!({}))?;
    root.set_path(opts.rootfs.to_path_buf());
    if hc.readonly_rootfs.unwrap_or(false) {
        root.set_readonly(Some(true));
    }
    spec.set_root(Some(root));
    if matches!(opts.uts, Namespace::Private) {
        spec.set_hostname(Some(hostname));
        if let Some(d) = cfg.domainname.as_deref().filter(|d| !d.is_empty()) {
            spec.set_domainname(Some(d.to_string()));
        }
    }
    spec.set_process(Some(process));
    spec.set_mounts(Some(mounts));
    spec.set_linux(Some(linux));
    if let Some(a) = hc.annotations.as_ref().filter(|a| !a.is_empty()) {
        spec.set_annotations(Some(a.clone()));
    }
    Ok(spec)
}

/// The process for `docker exec`, computed as [`build`] computes the init process: `cmd` with
/// the container's environment plus `env` (Docker's replace-or-append), `user` (or the
/// container's), `working_dir` (or the container's, or `/`), the container's capabilities (all
/// of them with `privileged`), rlimits, `noNewPrivileges` and `oomScoreAdj`.
pub fn exec_process(
    opts: &SpecOptions,
    cmd: &[String],
    env: &[String],
    user: &str,
    working_dir: &str,
    tty: bool,
    privileged: bool,
) -> Result<Process, SpecError> {
    if cmd.is_empty() {
        return Err(SpecError::invalid("No exec command specified"));
    }
    let cfg = opts.config;
    let hc = opts.host_config;
    let sec = SecurityOptions::parse(hc.security_opt.as_deref().unwrap_or_default())?;
    let caps = if privileged {
        all_capabilities().0
    } else {
        capabilities(hc)?
    };
    let base = daemon_env(cfg.env.as_deref().unwrap_or_default(), &hostname(opts), tty);
    let env = replace_or_append(base, env);
    let user = if user.is_empty() {
        cfg.user.as_deref().unwrap_or("")
    } else {
        user
    };
    let cwd = if working_dir.is_empty() {
        cfg.working_dir.as_deref().unwrap_or("")
    } else {
        working_dir
    };
    check_working_dir(cwd)?;
    make_process(
        opts,
        &sec,
        ProcessParts {
            args: cmd.to_vec(),
            env,
            user,
            cwd,
            tty,
            console: None,
            caps: &caps,
        },
    )
}

/// Create `WorkingDir` inside the rootfs if it is missing (0755, owned by root, like Docker),
/// resolving every component inside the root: no symlink or `..` leads outside it.
pub fn prepare_rootfs(rootfs: &Path, working_dir: &str) -> Result<(), SpecError> {
    if working_dir.is_empty() {
        return Ok(());
    }
    check_working_dir(working_dir)?;
    let comps: Vec<CString> = clean_path(working_dir)
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| CString::new(c).map_err(|_| SpecError::invalid("working directory contains NUL")))
        .collect::<Result<_, _>>()?;
    let context = || format!("creating working directory {working_dir}");
    let root = std::fs::File::open(rootfs).map_err(|e| SpecError::io(context(), e))?;
    let not_dir = || SpecError::invalid(format!("Cannot mkdir: {working_dir} is not a directory"));
    let errno = |e: nix::errno::Errno| match e {
        nix::errno::Errno::ENOTDIR => not_dir(),
        e => SpecError::io(context(), std::io::Error::from(e)),
    };
    let mut cur = resolve_dir(&root, &[]).map_err(errno)?;
    for i in 0..comps.len() {
        match resolve_dir(&root, &comps[..=i]) {
            Ok(fd) => {
                cur = fd;
                continue;
            }
            Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(errno(e)),
        }
        let name = comps[i].as_c_str();
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o755);
        match nix::sys::stat::mkdirat(Some(cur.as_raw_fd()), name, mode) {
            Ok(()) => {
                let root_id = (
                    Some(nix::unistd::Uid::from_raw(0)),
                    Some(nix::unistd::Gid::from_raw(0)),
                );
                nix::unistd::fchownat(
                    Some(cur.as_raw_fd()),
                    name,
                    root_id.0,
                    root_id.1,
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(errno)?;
                // Not the umask's mode; `name` was just created as a directory.
                nix::sys::stat::fchmodat(
                    Some(cur.as_raw_fd()),
                    name,
                    mode,
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(errno)?;
            }
            Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(errno(e)),
        }
        cur = resolve_dir(&root, &comps[..=i]).map_err(errno)?;
    }
    Ok(())
}

/// Docker's create-time checks of what [`build`] would refuse, for `config` already merged with
/// the image: security options, capabilities, the command, the working directory, mounts (bind
/// sources of `Mounts` must exist; nothing is created), resources, device cgroup rules and
/// ulimits. Namespace-dependent checks (sysctls) and user lookup happen in [`build`].
pub fn validate(config: &ContainerConfig, host_config: &HostConfig) -> Result<(), SpecError> {
    if config
        .entrypoint
        .iter()
        .chain(config.cmd.iter())
        .flatten()
        .next()
        .is_none()
    {
        return Err(SpecError::invalid("no command specified"));
    }
    SecurityOptions::parse(host_config.security_opt.as_deref().unwrap_or_default())?;
    capabilities(host_config)?;
    check_working_dir(config.working_dir.as_deref().unwrap_or(""))?;
    user_mounts(host_config, true)?;
    resources(host_config, CgroupVersion::V2)?;
    if let Some(rules) = &host_config.device_cgroup_rules {
        for r in rules {
            parse_device_cgroup_rule(r)?;
        }
    }
    rlimits(host_config)?;
    oom_score_adj(host_config)?;
    check_device_requests(host_config)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Security options

/// What `HostConfig.SecurityOpt` asks for (moby's `parseSecurityOpt`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct SecurityOptions {
    no_new_privileges: bool,
    /// `unconfined`, `builtin` or a JSON profile.
    seccomp: Option<String>,
    writable_cgroups: Option<bool>,
    /// `systempaths=unconfined` (the docker CLI turns it into empty Masked/ReadonlyPaths).
    systempaths_unconfined: bool,
}

impl SecurityOptions {
    fn parse(opts: &[String]) -> Result<Self, SpecError> {
        let mut out = SecurityOptions::default();
        for opt in opts {
            match opt.as_str() {
                "no-new-privileges" => {
                    out.no_new_privileges = true;
                    continue;
                }
                "writable-cgroups" => {
                    out.writable_cgroups = Some(true);
                    continue;
                }
                "disable" => continue,
                _ => {}
            }
            let split = if opt.contains('=') {
                opt.split_once('=')
            } else {
                opt.split_once(':')
            };
            let Some((k, v)) = split else {
                return Err(SpecError::invalid(format!(
                    "invalid --security-opt 1: {}",
                    go_quote(opt)
                )));
            };
            let invalid =
                || SpecError::invalid(format!("invalid --security-opt 2: {}", go_quote(opt)));
            match k {
                // SELinux labels and AppArmor profiles: accepted, not applied (neither is
                // enabled for berth; libcontainer refuses a profile when AppArmor is off).
                "label" | "apparmor" => {}
                "seccomp" => out.seccomp = Some(v.to_string()),
                "no-new-privileges" => {
                    out.no_new_privileges = parse_go_bool(v).ok_or_else(invalid)?;
                }
                "writable-cgroups" => {
                    out.writable_cgroups = Some(parse_go_bool(v).ok_or_else(invalid)?);
                }
                "systempaths" if v == "unconfined" => out.systempaths_unconfined = true,
                _ => return Err(invalid()),
            }
        }
        Ok(out)
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `%q`, close enough for error messages.
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

fn seccomp_profile(
    sec: &SecurityOptions,
    privileged: bool,
    caps: &[String],
) -> Result<Option<LinuxSeccomp>, SpecError> {
    match sec.seccomp.as_deref().unwrap_or("") {
        "unconfined" => Ok(None),
        // Privileged containers run unconfined unless given a profile of their own (moby).
        "" | "builtin" if privileged => Ok(None),
        "" | "builtin" => seccomp::default_profile(caps).map(Some),
        json => seccomp::load_profile(json, caps),
    }
}

// ---------------------------------------------------------------------------------------------
// Capabilities

/// The container's capabilities (`CAP_…` names, in a stable order) from `Privileged`, `CapAdd`
/// and `CapDrop`, as moby's `TweakCapabilities`.
pub fn capabilities(hc: &HostConfig) -> Result<Vec<String>, SpecError> {
    let (all, unavailable) = all_capabilities();
    if hc.privileged.unwrap_or(false) {
        return Ok(all);
    }
    let adds = hc.cap_add.as_deref().unwrap_or_default();
    let drops = hc.cap_drop.as_deref().unwrap_or_default();
    if adds.is_empty() && drops.is_empty() {
        return Ok(DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect());
    }
    let drops = normalize_caps(drops, &unavailable)?;
    let adds = normalize_caps(adds, &unavailable)?;
    let has = |list: &[String], c: &str| list.iter().any(|x| x == c);
    let mut caps: Vec<String> = if has(&adds, "ALL") {
        all.into_iter().filter(|c| !has(&drops, c)).collect()
    } else if has(&drops, "ALL") {
        adds
    } else {
        let mut caps: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .filter(|c| !has(&drops, c))
            .map(|c| c.to_string())
            .collect();
        caps.extend(adds);
        caps
    };
    let mut seen = std::collections::HashSet::new();
    caps.retain(|c| c != "ALL" && seen.insert(c.clone()));
    Ok(caps)
}

/// `CAP_`-prefixed upper-case names; `ALL` kept as is.
fn normalize_caps(list: &[String], unavailable: &[String]) -> Result<Vec<String>, SpecError> {
    list.iter()
        .map(|c| {
            let mut c = c.to_uppercase();
            if c == "ALL" {
                return Ok(c);
            }
            if !c.starts_with("CAP_") {
                c = format!("CAP_{c}");
            }
            if !ALL_CAPABILITIES.contains(&c.as_str()) {
                return Err(SpecError::invalid(format!(
                    "unknown capability: {}",
                    go_quote(&c)
                )));
            }
            if unavailable.contains(&c) {
                return Err(SpecError::invalid(format!(
                    "capability not supported by your kernel or not available in the current environment: {}",
                    go_quote(&c)
                )));
            }
            Ok(c)
        })
        .collect()
}

/// The capabilities berth itself has (moby's `GetAllCapabilities`: the daemon's effective set)
/// and the known ones it lacks. When the effective set cannot be read every known capability
/// counts as available; when it is empty, none is granted by `ALL` but all are accepted by
/// name, as in moby.
fn all_capabilities() -> (Vec<String>, Vec<String>) {
    let mask = effective_cap_mask();
    let mut available = Vec::new();
    let mut unavailable = Vec::new();
    for (i, c) in ALL_CAPABILITIES.iter().enumerate() {
        match mask {
            None => available.push(c.to_string()),
            Some(0) => {}
            Some(m) if m & (1u64 << i) != 0 => available.push(c.to_string()),
            Some(_) => unavailable.push(c.to_string()),
        }
    }
    (available, unavailable)
}

/// `CapEff` of `/proc/self/status`.
fn effective_cap_mask() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

fn to_oci_caps(names: &[String]) -> Result<Capabilities, SpecError> {
    names
        .iter()
        .map(|n| {
            Capability::from_str(n.trim_start_matches("CAP_"))
                .map_err(|_| SpecError::invalid(format!("unknown capability: {}", go_quote(n))))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Process

struct ProcessParts<'a> {
    args: Vec<String>,
    env: Vec<String>,
    user: &'a str,
    cwd: &'a str,
    tty: bool,
    console: Option<(u64, u64)>,
    caps: &'a [String],
}

fn make_process(
    opts: &SpecOptions,
    sec: &SecurityOptions,
    parts: ProcessParts,
) -> Result<Process, SpecError> {
    let hc = opts.host_config;
    let exec_user = user::resolve(
        opts.rootfs,
        parts.user,
        hc.group_add.as_deref().unwrap_or_default(),
    )?;
    let mut env = parts.env;
    if !env.iter().any(|e| e.split('=').next() == Some("HOME")) {
        env.push(format!("HOME={}", exec_user.home));
    }
    // Docker lists the primary group among the additional ones.
    let mut gids = vec![exec_user.gid];
    for g in exec_user.additional_gids {
        if !gids.contains(&g) {
            gids.push(g);
        }
    }
    let mut user: User = empty(serde_json::json!({}))?;
    user.set_uid(exec_user.uid);
    user.set_gid(exec_user.gid);
    user.set_additional_gids(Some(gids));

    let set = to_oci_caps(parts.caps)?;
    let mut caps: LinuxCapabilities = empty(serde_json::json!({}))?;
    caps.set_bounding(Some(set.clone()));
    caps.set_permitted(Some(set.clone()));
    caps.set_effective(Some(set));
    caps.set_inheritable(Some(Capabilities::new()));
    caps.set_ambient(Some(Capabilities::new()));

    let mut p: Process = empty(serde_json::json!({ "user": {}, "cwd": "/" }))?;
    p.set_user(user);
    p.set_args(Some(parts.args));
    p.set_env(Some(env));
    p.set_cwd(PathBuf::from(if parts.cwd.is_empty() {
        "/".to_string()
    } else {
        clean_path(parts.cwd)
    }));
    p.set_terminal(Some(parts.tty));
    if let Some((h, w)) = parts.console {
        let b = BoxBuilder::default()
            .height(h)
            .width(w)
            .build()
            .map_err(build_err)?;
        p.set_console_size(Some(b));
    }
    p.set_capabilities(Some(caps));
    p.set_rlimits(Some(rlimits(hc)?));
    if sec.no_new_privileges {
        // Never Some(false): libcontainer then loads seccomp after dropping capabilities.
        p.set_no_new_privileges(Some(true));
    }
    let adj = oom_score_adj(hc)?;
    if adj != 0 {
        p.set_oom_score_adj(Some(adj));
    }
    Ok(p)
}

fn oom_score_adj(hc: &HostConfig) -> Result<i32, SpecError> {
    let adj = hc.oom_score_adj.unwrap_or(0);
    i32::try_from(adj)
        .ok()
        .filter(|a| (-1000..=1000).contains(a))
        .ok_or_else(|| {
            SpecError::invalid(format!(
                "Invalid value {adj}, range for oom score adj is [-1000, 1000]"
            ))
        })
}

/// The container's hostname: `Config.Hostname`, or the first 12 characters of the ID.
fn hostname(opts: &SpecOptions) -> String {
    match opts.config.hostname.as_deref() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => opts.id.chars().take(12).collect(),
    }
}

/// moby's `CreateDaemonEnvironment`: `PATH`, `HOSTNAME` and (with a TTY) `TERM`, overridden
/// by the container's `Env`.
fn daemon_env(config_env: &[String], hostname: &str, tty: bool) -> Vec<String> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH_ENV}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".to_string());
    }
    replace_or_append(env, config_env)
}

/// moby's `ReplaceOrAppendEnvValues`: `K=V` replaces `K` or is appended; a bare `K` removes it.
fn replace_or_append(mut defaults: Vec<String>, overrides: &[String]) -> Vec<String> {
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    let mut index: HashMap<String, usize> = defaults
        .iter()
        .enumerate()
        .map(|(i, e)| (key(e), i))
        .collect();
    let mut removed = vec![false; defaults.len()];
    for value in overrides {
        match value.split_once('=') {
            None => {
                if let Some(&i) = index.get(value.as_str()) {
                    removed[i] = true;
                }
            }
            Some((k, _)) => match index.get(k) {
                Some(&i) => {
                    defaults[i] = value.clone();
                    removed[i] = false;
                }
                None => {
                    index.insert(k.to_string(), defaults.len());
                    defaults.push(value.clone());
                    removed.push(false);
                }
            },
        }
    }
    defaults
        .into_iter()
        .zip(removed)
        .filter(|(_, r)| !r)
        .map(|(e, _)| e)
        .collect()
}

fn check_working_dir(wd: &str) -> Result<(), SpecError> {
    if !wd.is_empty() && !wd.starts_with('/') {
        return Err(SpecError::invalid(format!(
            "the working directory '{wd}' is invalid, it needs to be an absolute path"
        )));
    }
    Ok(())
}

/// `HostConfig.Ulimits` (`nofile` → `RLIMIT_NOFILE`), plus `RLIMIT_NOFILE` 1048576 when not
/// given: never the daemon's own limits. Without `CAP_SYS_RESOURCE` berth cannot raise its
/// hard limit, so the default is then capped at it.
fn rlimits(hc: &HostConfig) -> Result<Vec<PosixRlimit>, SpecError> {
    let mut out: Vec<PosixRlimit> = Vec::new();
    for ul in hc.ulimits.iter().flatten() {
        let name = ul.name.as_deref().unwrap_or("");
        let typ = PosixRlimitType::from_str(&format!("RLIMIT_{}", name.to_uppercase()))
            .map_err(|_| SpecError::invalid(format!("invalid ulimit type: {name}")))?;
        // Go's uint64(int64): -1 is RLIM_INFINITY.
        let soft = ul.soft.unwrap_or(0) as u64;
        let hard = ul.hard.unwrap_or(0) as u64;
        out.retain(|r| r.typ() != typ);
        out.push(rlimit(typ, soft, hard)?);
    }
    if !out.iter().any(|r| r.typ() == PosixRlimitType::RlimitNofile) {
        let mut n = DEFAULT_NOFILE;
        let sys_resource = 24;
        if effective_cap_mask().is_some_and(|m| m & (1 << sys_resource) == 0) {
            if let Some(hard) = own_nofile_hard_limit() {
                n = n.min(hard);
            }
        }
        out.push(rlimit(PosixRlimitType::RlimitNofile, n, n)?);
    }
    Ok(out)
}

fn rlimit(typ: PosixRlimitType, soft: u64, hard: u64) -> Result<PosixRlimit, SpecError> {
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(build_err)
}

fn own_nofile_hard_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (r == 0).then_some(lim.rlim_max)
}

// ---------------------------------------------------------------------------------------------
// Namespaces, sysctls, system paths

fn namespaces(opts: &SpecOptions) -> Result<Vec<LinuxNamespace>, SpecError> {
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
    for (typ, ns) in [
        (LinuxNamespaceType::Mount, Namespace::Private),
        (LinuxNamespaceType::Network, opts.network),
        (LinuxNamespaceType::Uts, opts.uts),
        (LinuxNamespaceType::Pid, opts.pid),
        (LinuxNamespaceType::Ipc, opts.ipc),
        (LinuxNamespaceType::Cgroup, cgroup),
    ] {
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

/// Docker's default network sysctls for a container with its own network namespace, then
/// `HostConfig.Sysctls`, checked as runc checks them.
fn sysctls(opts: &SpecOptions) -> Result<HashMap<String, String>, SpecError> {
    let hc = opts.host_config;
    let mut out = HashMap::new();
    let own_netns = !matches!(opts.network, Namespace::Host)
        && !hc
            .network_mode
            .as_deref()
            .unwrap_or("")
            .starts_with("container:");
    if own_netns {
        let exists = |k: &str| Path::new("/proc/sys").join(k.replace('.', "/")).exists();
        for (k, v) in [
            ("net.ipv4.ping_group_range", "0 2147483647"),
            ("net.ipv4.ip_unprivileged_port_start", "0"),
        ] {
            if exists(k) {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    for (k, v) in hc.sysctls.iter().flatten() {
        check_sysctl(&k.replace('/', "."), opts)?;
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// runc's sysctl validation: only namespaced sysctls, in namespaces the container owns.
fn check_sysctl(s: &str, opts: &SpecOptions) -> Result<(), SpecError> {
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
        if matches!(opts.ipc, Namespace::Host) {
            return Err(SpecError::invalid(format!(
                "sysctl {q} is not allowed in the hosts ipc namespace"
            )));
        }
        return Ok(());
    }
    if s.starts_with("net.") {
        if matches!(opts.network, Namespace::Host) {
            return Err(SpecError::invalid(format!(
                "sysctl {q} not allowed in host network namespace"
            )));
        }
        return Ok(());
    }
    if !matches!(opts.uts, Namespace::Host) {
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

/// `linux.maskedPaths` and `linux.readonlyPaths`: explicit ones from the HostConfig, none for
/// privileged containers or `systempaths=unconfined`, else Docker's defaults.
fn system_paths(
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
        None => DEFAULT_READONLY_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    (masked, readonly)
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

const DEFAULT_MASKED_PATHS: [&str; 12] = [
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

const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

// ---------------------------------------------------------------------------------------------
// Resources

fn resources(hc: &HostConfig, version: CgroupVersion) -> Result<LinuxResources, SpecError> {
    let mut r = LinuxResources::default();
    let pos = |v: Option<i64>| v.filter(|v| *v > 0);

    // memory
    let memory = pos(hc.memory);
    let swap = hc.memory_swap.unwrap_or(0);
    if let (Some(m), true) = (memory, swap > 0) {
        if swap < m {
            return Err(SpecError::invalid(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
    }
    if memory.is_none() && swap > 0 {
        return Err(SpecError::invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    let mut mem = LinuxMemory::default();
    mem.set_limit(memory);
    mem.set_reservation(pos(hc.memory_reservation));
    mem.set_swap(pos(hc.memory_swap));
    match hc.memory_swappiness {
        None | Some(-1) => {}
        Some(s) if !(0..=100).contains(&s) => {
            return Err(SpecError::invalid(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            )))
        }
        // cgroup v2 has no swappiness; Docker drops it there.
        Some(s) if version == CgroupVersion::V1 => {
            mem.set_swappiness(Some(s as u64));
        }
        Some(_) => {}
    };
    if hc.oom_kill_disable == Some(true) && version == CgroupVersion::V1 {
        mem.set_disable_oom_killer(Some(true));
    }
    if mem != LinuxMemory::default() {
        r.set_memory(Some(mem));
    }

    // cpu
    let nano = hc.nano_cpus.unwrap_or(0);
    let period = hc.cpu_period.unwrap_or(0);
    let quota = hc.cpu_quota.unwrap_or(0);
    if nano > 0 && period > 0 {
        return Err(SpecError::invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if nano > 0 && quota > 0 {
        return Err(SpecError::invalid(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    if nano != 0 {
        let n = online_cpus();
        if nano < 0 || nano > n * 1_000_000_000 {
            return Err(SpecError::invalid(format!(
                "range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
            )));
        }
    }
    let mut cpu = LinuxCpu::default();
    match hc.cpu_shares.unwrap_or(0) {
        0 => {}
        s if s < 0 => {
            return Err(SpecError::invalid(format!(
                "invalid CPU shares ({s}): value must be a positive integer"
            )))
        }
        s => {
            cpu.set_shares(Some(s as u64));
        }
    }
    if let Some(c) = hc.cpuset_cpus.as_ref().filter(|c| !c.is_empty()) {
        cpu.set_cpus(Some(c.clone()));
    }
    if let Some(m) = hc.cpuset_mems.as_ref().filter(|m| !m.is_empty()) {
        cpu.set_mems(Some(m.clone()));
    }
    if nano > 0 {
        const PERIOD: i64 = 100_000;
        cpu.set_period(Some(PERIOD as u64));
        cpu.set_quota(Some(nano * PERIOD / 1_000_000_000));
    }
    if period != 0 {
        cpu.set_period(Some(period as u64));
    }
    if quota != 0 {
        cpu.set_quota(Some(quota));
    }
    if let Some(p) = hc.cpu_realtime_period.filter(|p| *p != 0) {
        cpu.set_realtime_period(Some(p as u64));
    }
    if let Some(rt) = hc.cpu_realtime_runtime.filter(|r| *r != 0) {
        cpu.set_realtime_runtime(Some(rt));
    }
    if cpu != LinuxCpu::default() {
        r.set_cpu(Some(cpu));
    }

    // pids: 0 and negative values mean unlimited, which is also the default.
    if let Some(limit) = pos(hc.pids_limit) {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        r.set_pids(Some(pids));
    }

    // block I/O
    let mut bio = LinuxBlockIo::default();
    if let Some(w) = hc.blkio_weight.filter(|w| *w != 0) {
        bio.set_weight(Some(w));
    }
    let mut weights = Vec::new();
    for d in hc.blkio_weight_device.iter().flatten() {
        let (major, minor) = block_device_numbers(d.path.as_deref().unwrap_or(""))?;
        let mut w = LinuxWeightDeviceBuilder::default()
            .major(major)
            .minor(minor);
        if let Some(weight) = d.weight {
            w = w.weight(weight.min(u16::MAX as usize) as u16);
        }
        weights.push(w.build().map_err(build_err)?);
    }
    if !weights.is_empty() {
        bio.set_weight_device(Some(weights));
    }
    let throttle = |list: &Option<Vec<bollard_stubs::models::ThrottleDevice>>| {
        list.iter()
            .flatten()
            .map(|d| {
                let (major, minor) = block_device_numbers(d.path.as_deref().unwrap_or(""))?;
                LinuxThrottleDeviceBuilder::default()
                    .major(major)
                    .minor(minor)
                    .rate(d.rate.unwrap_or(0).max(0) as u64)
                    .build()
                    .map_err(build_err)
            })
            .collect::<Result<Vec<_>, SpecError>>()
            .map(|v| (!v.is_empty()).then_some(v))
    };
    bio.set_throttle_read_bps_device(throttle(&hc.blkio_device_read_bps)?);
    bio.set_throttle_write_bps_device(throttle(&hc.blkio_device_write_bps)?);
    bio.set_throttle_read_iops_device(throttle(&hc.blkio_device_read_iops)?);
    bio.set_throttle_write_iops_device(throttle(&hc.blkio_device_write_iops)?);
    if bio != LinuxBlockIo::default() {
        r.set_block_io(Some(bio));
    }
    Ok(r)
}

/// The CPUs berth may run on (Go's `runtime.NumCPU`).
fn online_cpus() -> i64 {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
    }
    // SAFETY: `set` was filled in by sched_getaffinity.
    i64::from(unsafe { libc::CPU_COUNT(&set) })
}

fn block_device_numbers(path: &str) -> Result<(i64, i64), SpecError> {
    let st = nix::sys::stat::stat(path)
        .map_err(|e| SpecError::invalid(format!("stat {path}: {}", std::io::Error::from(e))))?;
    Ok((
        nix::sys::stat::major(st.st_rdev) as i64,
        nix::sys::stat::minor(st.st_rdev) as i64,
    ))
}

// ---------------------------------------------------------------------------------------------
// Devices

/// Docker's device cgroup rules (deny everything, then the default devices) and
/// `linux.devices` for `HostConfig.Devices`; every host device and `a *:* rwm` when privileged.
fn devices(
    hc: &HostConfig,
    privileged: bool,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut devs = Vec::new();
    let mut rules = Vec::new();
    let mappings = hc.devices.as_deref().unwrap_or_default();
    if privileged {
        host_devices(Path::new("/dev"), &mut devs)?;
        for m in mappings {
            let (on_host, in_container, _) = mapping_parts(m);
            if on_host == in_container {
                continue;
            }
            let (d, _) = devices_from_path(on_host, in_container, "rwm")?;
            devs.extend(d);
        }
        rules.push(device_rule(true, LinuxDeviceType::A, None, None, "rwm"));
    } else {
        rules.push(device_rule(false, LinuxDeviceType::A, None, None, "rwm"));
        for (major, minor) in [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)] {
            rules.push(device_rule(
                true,
                LinuxDeviceType::C,
                Some(major),
                Some(minor),
                "rwm",
            ));
        }
        rules.push(device_rule(
            false,
            LinuxDeviceType::C,
            Some(10),
            Some(229),
            "rwm",
        ));
        for m in mappings {
            let (on_host, in_container, perms) = mapping_parts(m);
            let (d, r) = devices_from_path(on_host, in_container, perms)?;
            devs.extend(d);
            rules.extend(r);
        }
        for r in hc.device_cgroup_rules.iter().flatten() {
            rules.push(parse_device_cgroup_rule(r)?);
        }
    }
    // libcontainer creates each node once; a second one at the same path would fail.
    let mut seen = std::collections::HashSet::new();
    devs.retain(|d: &LinuxDevice| seen.insert(d.path().clone()));
    Ok((devs, rules))
}

/// Berth has no device drivers (e.g. NVIDIA's): `DeviceRequests` fail as on a Docker host
/// without one.
fn check_device_requests(hc: &HostConfig) -> Result<(), SpecError> {
    let Some(req) = hc.device_requests.iter().flatten().next() else {
        return Ok(());
    };
    let caps: Vec<String> = req
        .capabilities
        .iter()
        .flatten()
        .map(|group| format!("[{}]", group.join(" ")))
        .collect();
    Err(SpecError::invalid(format!(
        "could not select device driver {} with capabilities: [{}]",
        go_quote(req.driver.as_deref().unwrap_or("")),
        caps.join(" ")
    )))
}

fn mapping_parts(m: &DeviceMapping) -> (&str, &str, &str) {
    let on_host = m.path_on_host.as_deref().unwrap_or("");
    let in_container = m
        .path_in_container
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or(on_host);
    let perms = m
        .cgroup_permissions
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or("rwm");
    (on_host, in_container, perms)
}

fn device_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// `type major:minor access`, e.g. `c 1:3 rwm` or `b *:* m` (moby's
/// `AppendDevicePermissionsFromCgroupRules`).
fn parse_device_cgroup_rule(rule: &str) -> Result<LinuxDeviceCgroup, SpecError> {
    let bad = || SpecError::invalid(format!("invalid device cgroup rule format: '{rule}'"));
    let parts: Vec<&str> = rule.split(' ').collect();
    let [typ, numbers, access] = parts.as_slice() else {
        return Err(bad());
    };
    let typ = match *typ {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let number = |s: &str, what: &str| -> Result<Option<i64>, SpecError> {
        if s == "*" {
            return Ok(None);
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map(Some).map_err(|_| {
            SpecError::invalid(format!(
                "invalid {what} value in device cgroup rule format: '{rule}'"
            ))
        })
    };
    let (major, minor) = (number(major, "major")?, number(minor, "minor")?);
    if access.is_empty() || access.len() > 3 || !access.bytes().all(|b| b"rwm".contains(&b)) {
        return Err(bad());
    }
    Ok(device_rule(true, typ, major, minor, access))
}

/// A device node as `linux.devices` wants it, or `None` for anything else. Like moby, symlinks
/// are not followed here.
fn device_from_path(path: &Path) -> std::io::Result<Option<LinuxDevice>> {
    let meta = std::fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    let typ = if ft.is_block_device() {
        LinuxDeviceType::B
    } else if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_fifo() {
        LinuxDeviceType::P
    } else {
        return Ok(None);
    };
    let mut d = LinuxDevice::default();
    d.set_path(path.to_path_buf());
    d.set_typ(typ);
    d.set_major(nix::sys::stat::major(meta.rdev()) as i64);
    d.set_minor(nix::sys::stat::minor(meta.rdev()) as i64);
    d.set_file_mode(Some(meta.mode() & 0o7777));
    d.set_uid(Some(meta.uid()));
    d.set_gid(Some(meta.gid()));
    Ok(Some(d))
}

/// moby's `DevicesFromPath`: one device, or every device below a directory.
fn devices_from_path(
    on_host: &str,
    in_container: &str,
    perms: &str,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut resolved = PathBuf::from(on_host);
    if std::fs::symlink_metadata(on_host).is_ok_and(|m| m.file_type().is_symlink()) {
        if let Ok(p) = std::fs::canonicalize(on_host) {
            resolved = p;
        }
    }
    let rule =
        |d: &LinuxDevice| device_rule(true, d.typ(), Some(d.major()), Some(d.minor()), perms);
    let err = match device_from_path(&resolved) {
        Ok(Some(mut d)) => {
            d.set_path(PathBuf::from(in_container));
            let r = rule(&d);
            return Ok((vec![d], vec![r]));
        }
        Ok(None) => "not a device node".to_string(),
        Err(e) => e
            .raw_os_error()
            .map(|n| nix::errno::Errno::from_raw(n).desc().to_lowercase())
            .unwrap_or_else(|| e.to_string()),
    };
    let mut devs = Vec::new();
    if resolved.is_dir() {
        let mut found = Vec::new();
        walk_devices(&resolved, &mut found);
        for mut d in found {
            let rel = d
                .path()
                .strip_prefix(&resolved)
                .unwrap_or(d.path())
                .to_path_buf();
            d.set_path(Path::new(in_container).join(rel));
            devs.push(d);
        }
    }
    if devs.is_empty() {
        return Err(SpecError::invalid(format!(
            "error gathering device information while adding custom device {}: {err}",
            go_quote(on_host)
        )));
    }
    let rules = devs.iter().map(rule).collect();
    Ok((devs, rules))
}

/// Every device node below `dir` (symlinks not followed), errors ignored.
fn walk_devices(dir: &Path, out: &mut Vec<LinuxDevice>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        match e.file_type() {
            Ok(ft) if ft.is_dir() => walk_devices(&path, out),
            Ok(_) => {
                if let Ok(Some(d)) = device_from_path(&path) {
                    out.push(d);
                }
            }
            Err(_) => {}
        }
    }
}

/// containerd's `HostDevices`: the devices under `/dev`, except `/dev/pts`, `/dev/shm`,
/// `/dev/mqueue` and similar, `/dev/console` and FIFOs.
fn host_devices(dir: &Path, out: &mut Vec<LinuxDevice>) -> Result<(), SpecError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SpecError::io(format!("reading {}", dir.display()), e))?;
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            let skip = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
            if !skip.iter().any(|s| name == *s) {
                host_devices(&path, out)?;
            }
            continue;
        }
        if name == "console" {
            continue;
        }
        match device_from_path(&path) {
            Ok(Some(d)) if d.typ() != LinuxDeviceType::P => out.push(d),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpecError::io(format!("reading {}", path.display()), e)),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Mounts

/// A mount requested by the user (Binds, Mounts, Tmpfs) or implied (network files, host IPC).
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserMount {
    destination: String,
    kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MountKind {
    Bind {
        source: String,
        rw: bool,
        propagation: String,
        non_recursive: bool,
        read_only_non_recursive: bool,
        /// Create a missing source directory (`-v`, `CreateMountpoint`).
        create_source: bool,
    },
    Tmpfs {
        data: String,
    },
}

fn mount_config_err(typ: &str, msg: impl fmt::Display) -> SpecError {
    SpecError::invalid(format!(
        "invalid mount config for type {}: {msg}",
        go_quote(typ)
    ))
}

fn invalid_mount_path(p: &str) -> String {
    format!("invalid mount path: '{p}' mount path must be absolute")
}

const ROOT_TARGET: &str = "invalid specification: destination can't be '/'";

/// moby's `ValidateTmpfsMountDestination` and the target checks of `validateMountConfigImpl`.
fn check_target(target: &str) -> Result<(), String> {
    if clean_path(target) == "/" {
        return Err(ROOT_TARGET.to_string());
    }
    if !target.starts_with('/') {
        return Err(invalid_mount_path(target));
    }
    Ok(())
}

/// One `HostConfig.Binds` entry, `[src:]dst[:mode]` (moby's `ParseMountRaw`).
fn parse_bind(raw: &str) -> Result<UserMount, SpecError> {
    let invalid_spec = || SpecError::invalid(format!("invalid volume specification: '{raw}'"));
    let arr: Vec<&str> = raw.splitn(4, ':').collect();
    if arr[0].is_empty() {
        return Err(invalid_spec());
    }
    let (source, target, mode) = match arr.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => {
            if valid_mount_mode(target) {
                return Err(invalid_spec());
            }
            (*source, *target, "")
        }
        [source, target, mode] => (*source, *target, *mode),
        _ => return Err(invalid_spec()),
    };
    if !valid_mount_mode(mode) {
        return Err(SpecError::invalid(format!("invalid mode: {mode}")));
    }
    let is_bind = source.starts_with('/');
    let typ = if is_bind { "bind" } else { "volume" };
    let wrap = |msg: String| {
        SpecError::invalid(format!(
            "invalid volume specification: '{raw}': invalid mount config for type {}: {msg}",
            go_quote(typ)
        ))
    };
    check_target(target).map_err(wrap)?;
    let destination = clean_path(target);
    if !is_bind {
        return Err(if source.is_empty() {
            SpecError::invalid(format!(
                "anonymous volumes are not supported yet: {destination}"
            ))
        } else {
            SpecError::invalid(format!("named volumes are not supported yet: {source}"))
        });
    }
    let modes: Vec<&str> = mode.split(',').collect();
    let propagation = modes
        .iter()
        .find(|m| PROPAGATION_MODES.contains(m))
        .unwrap_or(&"rprivate")
        .to_string();
    Ok(UserMount {
        destination,
        kind: MountKind::Bind {
            source: clean_path(source),
            rw: !modes.contains(&"ro"),
            propagation,
            non_recursive: false,
            read_only_non_recursive: false,
            create_source: true,
        },
    })
}

const PROPAGATION_MODES: [&str; 6] = [
    "private", "rprivate", "slave", "rslave", "shared", "rshared",
];

/// moby's `linuxValidMountMode`: at most one of each kind of mode.
fn valid_mount_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0u8; 5];
    for o in mode.split(',') {
        let kind = match o {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            o if PROPAGATION_MODES.contains(&o) => 2,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        counts[kind] += 1;
    }
    counts.iter().all(|c| *c <= 1)
}

/// One `HostConfig.Mounts` entry (moby's `ParseMountSpec`); bind sources must exist unless
/// `CreateMountpoint` is set (checked only with `check_source`).
fn parse_mount_spec(m: &ApiMount, check_source: bool) -> Result<UserMount, SpecError> {
    let typ_name = m.typ.map(|t| t.to_string()).unwrap_or_default();
    let err = |msg: String| mount_config_err(&typ_name, msg);
    let extra = |name: &str| err(format!("field {name} must not be specified"));
    let typ = m.typ;
    if typ != Some(MountType::BIND) && m.bind_options.is_some() {
        return Err(extra("BindOptions"));
    }
    if typ != Some(MountType::VOLUME) && m.volume_options.is_some() {
        return Err(extra("VolumeOptions"));
    }
    if typ != Some(MountType::IMAGE) && m.image_options.is_some() {
        return Err(extra("ImageOptions"));
    }
    if typ != Some(MountType::TMPFS) && m.tmpfs_options.is_some() {
        return Err(extra("TmpfsOptions"));
    }
    let target = m.target.as_deref().unwrap_or("");
    if target.is_empty() {
        return Err(err("field Target must not be empty".into()));
    }
    check_target(target).map_err(err)?;
    let destination = clean_path(target);
    let source = m.source.as_deref().unwrap_or("");
    let read_only = m.read_only.unwrap_or(false);
    match typ {
        Some(MountType::BIND) => {
            if source.is_empty() {
                return Err(err("field Source must not be empty".into()));
            }
            if !source.starts_with('/') {
                return Err(err(invalid_mount_path(source)));
            }
            let bo = m.bind_options.clone().unwrap_or_default();
            let create = bo.create_mountpoint.unwrap_or(false);
            if check_source && !create && std::fs::symlink_metadata(source).is_err() {
                return Err(err(format!("bind source path does not exist: {source}")));
            }
            let ro_non_recursive = bo.read_only_non_recursive.unwrap_or(false);
            if !read_only && ro_non_recursive {
                return Err(SpecError::invalid(
                    "mount options conflict: !ReadOnly && BindOptions.ReadOnlyNonRecursive",
                ));
            }
            if !read_only && bo.read_only_force_recursive.unwrap_or(false) {
                return Err(SpecError::invalid(
                    "mount options conflict: !ReadOnly && BindOptions.ReadOnlyForceRecursive",
                ));
            }
            let propagation = bo
                .propagation
                .map(|p| p.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rprivate".to_string());
            Ok(UserMount {
                destination,
                kind: MountKind::Bind {
                    source: clean_path(source),
                    rw: !read_only,
                    propagation,
                    non_recursive: bo.non_recursive.unwrap_or(false),
                    read_only_non_recursive: ro_non_recursive,
                    create_source: create,
                },
            })
        }
        Some(MountType::TMPFS) => {
            if !source.is_empty() {
                return Err(extra("Source"));
            }
            let data = tmpfs_data(m.tmpfs_options.as_ref(), read_only).map_err(err)?;
            Ok(UserMount {
                destination,
                kind: MountKind::Tmpfs { data },
            })
        }
        Some(MountType::VOLUME) => Err(if source.is_empty() {
            SpecError::invalid(format!(
                "anonymous volumes are not supported yet: {destination}"
            ))
        } else {
            SpecError::invalid(format!("named volumes are not supported yet: {source}"))
        }),
        Some(MountType::IMAGE) => Err(SpecError::invalid(format!(
            "image mounts are not supported yet: {destination}"
        ))),
        _ => Err(err("mount type unknown".into())),
    }
}

/// moby's `ConvertTmpfsOptions`.
fn tmpfs_data(
    opts: Option<&bollard_stubs::models::MountTmpfsOptions>,
    read_only: bool,
) -> Result<String, String> {
    let mut raw = Vec::new();
    if read_only {
        raw.push("ro".to_string());
    }
    if let Some(o) = opts {
        if let Some(mode) = o.mode.filter(|m| *m != 0) {
            raw.push(format!("mode={mode:o}"));
        }
        if let Some(size) = o.size_bytes.filter(|s| *s != 0) {
            let (n, suffix) = [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)]
                .iter()
                .find(|(_, d)| size % d == 0)
                .map(|(s, d)| (size / d, *s))
                .unwrap_or((size, ""));
            raw.push(format!("size={n}{suffix}"));
        }
        for opt in o.options.iter().flatten() {
            match opt.as_slice() {
                [k] | [k, _] if k != "exec" && k != "noexec" => {
                    return Err(format!("invalid option: {k}"));
                }
                [k] => raw.push(k.clone()),
                [k, v] => raw.push(format!("{k}={v}")),
                _ => return Err("invalid option array length".to_string()),
            }
        }
    }
    Ok(raw.join(","))
}

/// The tmpfs options Docker mounts with: `noexec,nosuid,nodev,rprivate` merged with `data`
/// (moby's `MergeTmpfsOptions`: later options win over earlier ones of the same kind).
fn tmpfs_options(data: &str) -> Result<Vec<String>, SpecError> {
    let mut options: Vec<&str> = vec!["noexec", "nosuid", "nodev", "rprivate"];
    if !data.is_empty() {
        options.extend(data.split(','));
    }
    // The kind of a flag option: options of one kind replace each other.
    fn flag_kind(o: &str) -> Option<&'static str> {
        Some(match o {
            "ro" | "rw" => "rdonly",
            "suid" | "nosuid" => "nosuid",
            "dev" | "nodev" => "nodev",
            "exec" | "noexec" => "noexec",
            "sync" | "async" => "sync",
            "dirsync" => "dirsync",
            "remount" => "remount",
            "mand" | "nomand" => "mand",
            "atime" | "noatime" => "noatime",
            "diratime" | "nodiratime" => "nodiratime",
            "relatime" | "norelatime" => "relatime",
            "strictatime" | "nostrictatime" => "strictatime",
            "bind" | "rbind" | "unbindable" | "runbindable" | "private" | "rprivate" | "shared"
            | "rshared" | "slave" | "rslave" => "propagation",
            _ => return None,
        })
    }
    const DATA_KEYS: [&str; 8] = [
        "",
        "size",
        "mode",
        "uid",
        "gid",
        "nr_inodes",
        "nr_blocks",
        "mpol",
    ];
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for o in options.iter().rev() {
        if *o == "defaults" {
            continue;
        }
        let kind = match flag_kind(o) {
            Some(k) => k.to_string(),
            None => match o.split_once('=') {
                Some((k, _)) if DATA_KEYS.contains(&k) => format!("data:{k}"),
                _ => {
                    let k = o.split('=').next().unwrap_or("");
                    return Err(SpecError::invalid(format!(
                        "invalid tmpfs option {}",
                        go_quote(k)
                    )));
                }
            },
        };
        if seen.insert(kind) {
            out.push(o.to_string());
        }
    }
    out.reverse();
    Ok(out)
}

/// The user's mounts in HostConfig order: Binds, Mounts, then Tmpfs (sorted by path), with
/// Docker's duplicate check.
fn user_mounts(hc: &HostConfig, check_source: bool) -> Result<Vec<UserMount>, SpecError> {
    let mut out: Vec<UserMount> = Vec::new();
    let dup = |d: &str| SpecError::invalid(format!("Duplicate mount point: {d}"));
    let tmpfs: BTreeMap<String, String> = hc
        .tmpfs
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut tmpfs_dests = Vec::new();
    for dest in tmpfs.keys() {
        check_target(dest).map_err(SpecError::invalid)?;
        tmpfs_dests.push(clean_path(dest));
    }
    for raw in hc.binds.iter().flatten() {
        let m = parse_bind(raw)?;
        if out.iter().any(|o| o.destination == m.destination)
            || tmpfs_dests.contains(&m.destination)
        {
            return Err(dup(&m.destination));
        }
        out.push(m);
    }
    for spec in hc.mounts.iter().flatten() {
        let m = parse_mount_spec(spec, check_source)?;
        if out.iter().any(|o| o.destination == m.destination)
            || tmpfs_dests.contains(&m.destination)
        {
            return Err(dup(spec.target.as_deref().unwrap_or("")));
        }
        out.push(m);
    }
    for ((_, data), dest) in tmpfs.iter().zip(tmpfs_dests) {
        tmpfs_options(data)?;
        out.push(UserMount {
            destination: dest,
            kind: MountKind::Tmpfs { data: data.clone() },
        });
    }
    Ok(out)
}

/// Every mount of the spec, in Docker's order: the defaults (minus those a user mount replaces)
/// and the init binary, then the user's, network files and IPC mounts sorted by depth.
fn mounts(
    opts: &SpecOptions,
    sec: &SecurityOptions,
    init: Option<&Path>,
) -> Result<Vec<Mount>, SpecError> {
    let hc = opts.host_config;
    let privileged = hc.privileged.unwrap_or(false);
    let readonly_rootfs = hc.readonly_rootfs.unwrap_or(false);
    let ipc_mode = hc.ipc_mode.as_deref().unwrap_or("");
    let mut user = user_mounts(hc, true)?;

    // IPC: the host's /dev/shm, unless the user mounts something there.
    let mut extra = Vec::new();
    if ipc_mode == "host" && !user.iter().any(|m| m.destination == "/dev/shm") {
        extra.push(UserMount {
            destination: "/dev/shm".into(),
            kind: bind_kind("/dev/shm", true),
        });
    }
    // Network files: a user bind at the same place provides the file instead (moby's
    // TrySetNetworkMount); they are mounted last.
    let mut network = Vec::new();
    for (dest, path) in [
        ("/etc/resolv.conf", opts.resolv_conf_path),
        ("/etc/hostname", opts.hostname_path),
        ("/etc/hosts", opts.hosts_path),
    ] {
        if let Some(i) = user
            .iter()
            .position(|m| m.destination == dest && matches!(m.kind, MountKind::Bind { .. }))
        {
            network.push(user.remove(i));
        } else if path.exists() {
            network.push(UserMount {
                destination: dest.to_string(),
                kind: bind_kind(&path.to_string_lossy(), !readonly_rootfs),
            });
        }
    }
    let (tmpfs, binds): (Vec<_>, Vec<_>) = user
        .into_iter()
        .partition(|m| matches!(m.kind, MountKind::Tmpfs { .. }));
    let mut all: Vec<UserMount> = extra;
    all.extend(tmpfs);
    all.extend(binds);
    all.extend(network);
    all.sort_by_key(|m| m.destination.matches('/').count());

    let user_dests: Vec<&str> = all.iter().map(|m| m.destination.as_str()).collect();
    let mount_dev = user_dests.contains(&"/dev");
    let mut out = Vec::new();
    let shm_size = hc.shm_size.filter(|s| *s > 0).unwrap_or(DEFAULT_SHM_SIZE);
    let mut defaults = default_mounts(shm_size);
    if let Some(init) = init {
        defaults.push(oci_mount(
            INIT_PATH_IN_CONTAINER,
            "bind",
            &init.to_string_lossy(),
            &["bind", "ro"],
        ));
    }
    for m in defaults {
        let dest = m.destination().to_string_lossy().into_owned();
        if user_dests.contains(&dest.as_str())
            || (mount_dev && dest.starts_with("/dev/"))
            || (dest == "/dev/shm" && ipc_mode == "none")
        {
            continue;
        }
        out.push(m);
    }
    if readonly_rootfs {
        for m in &mut out {
            let dest = m.destination().to_string_lossy().into_owned();
            if ["/proc", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev"].contains(&dest.as_str()) {
                continue;
            }
            add_option(m, "ro");
        }
    }
    for m in &all {
        out.push(user_mount_to_oci(m)?);
    }
    if privileged {
        for m in &mut out {
            if m.destination() == Path::new("/sys") {
                remove_option(m, "ro");
            }
        }
    }
    if sec.writable_cgroups.unwrap_or(privileged) {
        for m in &mut out {
            if m.typ().as_deref() == Some("cgroup") {
                remove_option(m, "ro");
            }
        }
    }
    Ok(out)
}

fn bind_kind(source: &str, rw: bool) -> MountKind {
    MountKind::Bind {
        source: source.to_string(),
        rw,
        propagation: "rprivate".into(),
        non_recursive: false,
        read_only_non_recursive: false,
        create_source: false,
    }
}

fn user_mount_to_oci(m: &UserMount) -> Result<Mount, SpecError> {
    match &m.kind {
        MountKind::Tmpfs { data } => {
            let options = tmpfs_options(data)?;
            let refs: Vec<&str> = options.iter().map(String::as_str).collect();
            Ok(oci_mount(&m.destination, "tmpfs", "tmpfs", &refs))
        }
        MountKind::Bind {
            source,
            rw,
            propagation,
            non_recursive,
            read_only_non_recursive,
            create_source,
        } => {
            if *create_source && std::fs::symlink_metadata(source).is_err() {
                create_host_dir(source)?;
            }
            let mut options = vec![if *non_recursive { "bind" } else { "rbind" }];
            if !rw {
                options.push(if *read_only_non_recursive {
                    "ro"
                } else {
                    "rro"
                });
            }
            options.push(propagation);
            Ok(oci_mount(&m.destination, "bind", source, &options))
        }
    }
}

/// Docker creates a missing bind source as a directory, 0755, owned by root.
fn create_host_dir(path: &str) -> Result<(), SpecError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|e| {
            SpecError::io(
                format!("error while creating mount source path '{path}'"),
                e,
            )
        })
}

/// Docker's default mounts, `/dev/shm` sized.
fn default_mounts(shm_size: i64) -> Vec<Mount> {
    let shm_opt = format!("size={shm_size}");
    let table: [(&str, &str, &str, Vec<&str>); 7] = [
        ("/proc", "proc", "proc", vec!["nosuid", "noexec", "nodev"]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            vec!["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            vec![
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            vec!["nosuid", "noexec", "nodev", "ro"],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            vec!["ro", "nosuid", "noexec", "nodev"],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            vec!["nosuid", "noexec", "nodev"],
        ),
        (
            "/dev/shm",
            "tmpfs",
            "shm",
            vec!["nosuid", "noexec", "nodev", "mode=1777", &shm_opt],
        ),
    ];
    table
        .into_iter()
        .map(|(dest, typ, source, options)| oci_mount(dest, typ, source, &options))
        .collect()
}

fn oci_mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

fn add_option(m: &mut Mount, opt: &str) {
    let mut options = m.options().clone().unwrap_or_default();
    if !options.iter().any(|o| o == opt) {
        options.push(opt.to_string());
    }
    m.set_options(Some(options));
}

fn remove_option(m: &mut Mount, opt: &str) {
    let mut options = m.options().clone().unwrap_or_default();
    options.retain(|o| o != opt);
    m.set_options(Some(options));
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Go's `path.Clean`.
fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// An oci-spec value with every optional field unset. Several oci-spec types have a `Default`
/// (and builders using it) full of example values, e.g. `Process` with `noNewPrivileges: true`.
fn build_err(e: impl fmt::Display) -> SpecError {
    SpecError::internal(format!("building the spec: {e}"))
}

fn empty<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, SpecError> {
    serde_json::from_value(v).map_err(|e| SpecError::internal(format!("building the spec: {e}")))
}

/// Open a directory of the rootfs (`comps` from its root) as an O_PATH descriptor, every
/// component resolved inside the root.
fn resolve_dir(root: &std::fs::File, comps: &[CString]) -> Result<OwnedFd, nix::errno::Errno> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let path = if comps.is_empty() {
        ".".to_string()
    } else {
        comps
            .iter()
            .map(|c| c.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut last = nix::errno::Errno::EAGAIN;
    for _ in 0..16 {
        match openat2(root.as_raw_fd(), path.as_str(), how) {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(e @ (nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR)) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Kinded;
    use bollard_stubs::models::{MountBindOptions, MountTmpfsOptions, ResourcesUlimits};
    use std::fs;

    const ID: &str = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa00";

    struct Fixture {
        dir: tempfile::TempDir,
        rootfs: PathBuf,
        hostname: PathBuf,
        hosts: PathBuf,
        resolv: PathBuf,
        netns: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\nwheel:x:10:alice\naudio:x:29:\nalice:x:1000:\n",
        )
        .unwrap();
        let file = |name: &str| {
            let p = dir.path().join(name);
            fs::write(&p, "x\n").unwrap();
            p
        };
        Fixture {
            hostname: file("hostname"),
            hosts: file("hosts"),
            resolv: file("resolv.conf"),
            // Stands in for a bind-mounted netns (libcontainer's validator stats it).
            netns: file("netns"),
            rootfs,
            dir,
        }
    }

    fn options<'a>(
        fx: &'a Fixture,
        cfg: &'a ContainerConfig,
        hc: &'a HostConfig,
    ) -> SpecOptions<'a> {
        SpecOptions {
            id: ID,
            config: cfg,
            host_config: hc,
            rootfs: &fx.rootfs,
            hostname_path: &fx.hostname,
            hosts_path: &fx.hosts,
            resolv_conf_path: &fx.resolv,
            network: Namespace::Path(&fx.netns),
            ipc: Namespace::Private,
            pid: Namespace::Private,
            uts: Namespace::Private,
            cgroup_path: format!("/berth/{ID}"),
            cgroup_version: CgroupVersion::V2,
            init_path: None,
        }
    }

    fn sh() -> ContainerConfig {
        ContainerConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["FOO=bar".into()]),
            ..Default::default()
        }
    }

    fn build_with(cfg: &ContainerConfig, hc: &HostConfig) -> Result<Spec, SpecError> {
        let fx = fixture();
        build(&options(&fx, cfg, hc))
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn process(spec: &Spec) -> &Process {
        spec.process().as_ref().unwrap()
    }

    fn linux(spec: &Spec) -> &oci_spec::runtime::Linux {
        spec.linux().as_ref().unwrap()
    }

    fn env(spec: &Spec) -> Vec<String> {
        process(spec).env().clone().unwrap()
    }

    fn caps(spec: &Spec) -> &LinuxCapabilities {
        process(spec).capabilities().as_ref().unwrap()
    }

    fn has_cap(spec: &Spec, c: Capability) -> bool {
        caps(spec).bounding().as_ref().unwrap().contains(&c)
    }

    fn mount<'s>(spec: &'s Spec, dest: &str) -> Option<&'s Mount> {
        spec.mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == Path::new(dest))
    }

    fn mount_options(spec: &Spec, dest: &str) -> Vec<String> {
        mount(spec, dest)
            .unwrap_or_else(|| panic!("no mount at {dest}"))
            .options()
            .clone()
            .unwrap_or_default()
    }

    fn destinations(spec: &Spec) -> Vec<String> {
        spec.mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().to_string_lossy().into_owned())
            .collect()
    }

    fn ns_types(spec: &Spec) -> Vec<LinuxNamespaceType> {
        linux(spec)
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect()
    }

    fn err_text(r: Result<Spec, SpecError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{e}");
        e.to_string()
    }

    #[test]
    fn default_busybox_like_container() {
        let fx = fixture();
        let cfg = sh();
        let hc = HostConfig::default();
        let spec = build(&options(&fx, &cfg, &hc)).unwrap();

        assert!(spec.version().starts_with("1."));
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), &fx.rootfs);
        assert_eq!(root.readonly(), None);
        assert_eq!(spec.hostname().as_deref(), Some(&ID[..12]));

        let p = process(&spec);
        assert_eq!(p.args().as_deref(), Some(&strings(&["sh"])[..]));
        assert_eq!(
            env(&spec),
            strings(&[
                &format!("PATH={DEFAULT_PATH_ENV}"),
                &format!("HOSTNAME={}", &ID[..12]),
                "FOO=bar",
                "HOME=/root",
            ])
        );
        assert_eq!(p.cwd(), Path::new("/"));
        assert_eq!(p.terminal(), Some(false));
        assert_eq!(p.user().uid(), 0);
        assert_eq!(p.user().gid(), 0);
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[0][..]));
        assert_eq!(p.no_new_privileges(), None, "never Some(false)");
        assert_eq!(p.apparmor_profile(), &None);
        assert_eq!(p.oom_score_adj(), None);
        let rl = p.rlimits().as_ref().unwrap();
        assert_eq!(rl.len(), 1);
        assert_eq!(rl[0].typ(), PosixRlimitType::RlimitNofile);
        assert!(rl[0].hard() > 0 && rl[0].hard() <= DEFAULT_NOFILE);

        let c = caps(&spec);
        let expected = to_oci_caps(&strings(&DEFAULT_CAPABILITIES)).unwrap();
        assert_eq!(c.bounding().as_ref(), Some(&expected));
        assert_eq!(c.effective().as_ref(), Some(&expected));
        assert_eq!(c.permitted().as_ref(), Some(&expected));
        assert_eq!(c.inheritable().as_ref(), Some(&Capabilities::new()));
        assert_eq!(c.ambient().as_ref(), Some(&Capabilities::new()));
        assert!(!has_cap(&spec, Capability::SysAdmin));

        assert_eq!(
            destinations(&spec),
            strings(&[
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/resolv.conf",
                "/etc/hostname",
                "/etc/hosts",
            ])
        );
        assert_eq!(
            mount_options(&spec, "/dev/shm"),
            strings(&["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"])
        );
        assert!(mount_options(&spec, "/sys").contains(&"ro".to_string()));
        assert!(mount_options(&spec, "/sys/fs/cgroup").contains(&"ro".to_string()));
        let hosts = mount(&spec, "/etc/hosts").unwrap();
        assert_eq!(hosts.source().as_deref(), Some(fx.hosts.as_path()));
        assert_eq!(hosts.typ().as_deref(), Some("bind"));
        assert_eq!(
            hosts.options().clone().unwrap(),
            strings(&["rbind", "rprivate"])
        );

        let l = linux(&spec);
        assert_eq!(
            l.cgroups_path().as_deref(),
            Some(Path::new(&format!("/berth/{ID}")))
        );
        assert_eq!(
            ns_types(&spec),
            vec![
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Uts,
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Ipc,
                LinuxNamespaceType::Cgroup,
            ]
        );
        let net = l.namespaces().iter().flatten().nth(1).unwrap();
        assert_eq!(net.path().as_deref(), Some(fx.netns.as_path()));

        let seccomp = l.seccomp().as_ref().unwrap();
        assert_eq!(
            seccomp.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
        );
        let masked = l.masked_paths().clone().unwrap();
        for p in [
            "/proc/kcore",
            "/proc/keys",
            "/proc/interrupts",
            "/sys/firmware",
        ] {
            assert!(masked.contains(&p.to_string()), "{p}");
        }
        assert_eq!(
            l.readonly_paths().clone().unwrap(),
            strings(&DEFAULT_READONLY_PATHS)
        );
        let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert!(!rules[0].allow());
        assert!(rules
            .iter()
            .any(|r| r.allow() && r.to_string() == "c 1:3 rwm"));
        assert_eq!(l.devices(), &None);
        if Path::new("/proc/sys/net/ipv4/ping_group_range").exists() {
            let sysctl = l.sysctl().as_ref().unwrap();
            assert_eq!(
                sysctl.get("net.ipv4.ping_group_range").map(String::as_str),
                Some("0 2147483647")
            );
        }
        assert_eq!(l.resources().as_ref().unwrap().memory(), &None);
        assert_eq!(l.resources().as_ref().unwrap().pids(), &None);

        libcontainer::validator::Validator::validate_spec(&spec).unwrap();
        // The spec survives config.json.
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("apparmorProfile"));
        assert!(!json.contains("noNewPrivileges"));
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn privileged() {
        let hc = HostConfig {
            privileged: Some(true),
            ..Default::default()
        };
        let spec = build_with(&sh(), &hc).unwrap();
        let (available, _) = all_capabilities();
        assert_eq!(
            caps(&spec).bounding().as_ref().unwrap(),
            &to_oci_caps(&available).unwrap()
        );
        if available.contains(&"CAP_SYS_ADMIN".to_string()) {
            assert!(has_cap(&spec, Capability::SysAdmin));
        }
        let l = linux(&spec);
        assert_eq!(l.seccomp(), &None);
        assert_eq!(l.masked_paths(), &None);
        assert_eq!(l.readonly_paths(), &None);
        assert!(!mount_options(&spec, "/sys").contains(&"ro".to_string()));
        assert!(!mount_options(&spec, "/sys/fs/cgroup").contains(&"ro".to_string()));
        let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        let devices = l.devices().clone().unwrap_or_default();
        if fs::symlink_metadata("/dev/null").is_ok_and(|m| m.file_type().is_char_device()) {
            assert!(devices.iter().any(|d| d.path() == Path::new("/dev/null")));
        }
        assert!(devices
            .iter()
            .all(|d| !d.path().starts_with("/dev/pts") && d.path() != Path::new("/dev/console")));
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), spec);

        // A privileged container still gets a profile it asks for.
        let hc = HostConfig {
            privileged: Some(true),
            security_opt: Some(strings(&[
                r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}"#,
            ])),
            ..Default::default()
        };
        let spec = build_with(&sh(), &hc).unwrap();
        assert!(linux(&spec).seccomp().is_some());
    }

    #[test]
    fn cap_add_and_drop() {
        let with = |add: &[&str], drop: &[&str]| {
            let hc = HostConfig {
                cap_add: Some(strings(add)),
                cap_drop: Some(strings(drop)),
                ..Default::default()
            };
            capabilities(&hc)
        };
        let caps = with(&["sys_admin", "CAP_NET_ADMIN"], &["CAP_NET_RAW", "mknod"]).unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(caps.len(), 14);

        assert_eq!(
            with(&["net_bind_service"], &["ALL"]).unwrap(),
            strings(&["CAP_NET_BIND_SERVICE"])
        );
        assert!(with(&[], &["all"]).unwrap().is_empty());
        let all = with(&["ALL"], &["chown"]).unwrap();
        assert!(!all.contains(&"CAP_CHOWN".to_string()));
        assert_eq!(all.len(), all_capabilities().0.len() - 1);
        // Duplicates collapse.
        assert_eq!(with(&["KILL"], &[]).unwrap().len(), 14);

        let err = with(&["CAP_FOO"], &[]).unwrap_err();
        assert_eq!(err.to_string(), r#"unknown capability: "CAP_FOO""#);
        assert_eq!(err.kind(), ErrorKind::InvalidParameter);
        let err = with(&[], &["foo"]).unwrap_err();
        assert_eq!(err.to_string(), r#"unknown capability: "CAP_FOO""#);

        // The seccomp profile follows the capabilities.
        let hc = HostConfig {
            cap_add: Some(strings(&["SYS_ADMIN"])),
            ..Default::default()
        };
        if all_capabilities().0.contains(&"CAP_SYS_ADMIN".to_string()) {
            let spec = build_with(&sh(), &hc).unwrap();
            let seccomp = linux(&spec).seccomp().clone().unwrap();
            assert!(seccomp
                .syscalls()
                .iter()
                .flatten()
                .any(|s| s.names().contains(&"mount".to_string())));
        }
    }

    #[test]
    fn users_and_groups() {
        let cfg = ContainerConfig {
            user: Some("alice".into()),
            ..sh()
        };
        let hc = HostConfig {
            group_add: Some(strings(&["audio", "4242"])),
            ..Default::default()
        };
        let spec = build_with(&cfg, &hc).unwrap();
        let u = process(&spec).user();
        assert_eq!((u.uid(), u.gid()), (1000, 1000));
        assert_eq!(
            u.additional_gids().as_deref(),
            Some(&[1000, 10, 29, 4242][..])
        );
        assert!(env(&spec).contains(&"HOME=/home/alice".to_string()));

        // An explicit HOME wins; numeric ids need no passwd entry.
        let cfg = ContainerConfig {
            user: Some("4000:4001".into()),
            env: Some(strings(&["HOME=/data"])),
            ..sh()
        };
        let spec = build_with(&cfg, &HostConfig::default()).unwrap();
        let u = process(&spec).user();
        assert_eq!((u.uid(), u.gid()), (4000, 4001));
        let e = env(&spec);
        assert!(e.contains(&"HOME=/data".to_string()));
        assert_eq!(e.iter().filter(|v| v.starts_with("HOME=")).count(), 1);

        let cfg = ContainerConfig {
            user: Some("nosuch".into()),
            ..sh()
        };
        assert_eq!(
            err_text(build_with(&cfg, &HostConfig::default())),
            "unable to find user nosuch: no matching entries in passwd file"
        );
    }

    #[test]
    fn binds() {
        let fx = fixture();
        let src = fx.dir.path().join("src");
        fs::create_dir(&src).unwrap();
        let created = fx.dir.path().join("made/by/bind");
        let cfg = sh();
        let hc = HostConfig {
            binds: Some(vec![
                format!("{}:/data:ro", src.display()),
                format!("{}:/new/", created.display()),
                format!("{}:/a/b/c:rshared,z", src.display()),
                format!("{}:/a", src.display()),
            ]),
            ..Default::default()
        };
        let spec = build(&options(&fx, &cfg, &hc)).unwrap();
        assert!(created.is_dir(), "a missing -v source is created");
        assert_eq!(
            mount_options(&spec, "/data"),
            strings(&["rbind", "rro", "rprivate"])
        );
        assert_eq!(
            mount_options(&spec, "/new"),
            strings(&["rbind", "rprivate"])
        );
        assert_eq!(
            mount_options(&spec, "/a/b/c"),
            strings(&["rbind", "rshared"])
        );
        let d = destinations(&spec);
        let pos = |p: &str| d.iter().position(|x| x == p).unwrap();
        assert!(pos("/a") < pos("/a/b/c"), "parents first: {d:?}");
        assert!(pos("/dev/shm") < pos("/data"), "defaults first: {d:?}");
        assert_eq!(
            mount(&spec, "/data").unwrap().source().as_deref(),
            Some(src.as_path())
        );

        let bind = |b: &str| {
            let hc = HostConfig {
                binds: Some(strings(&[b])),
                ..Default::default()
            };
            build(&options(&fx, &cfg, &hc))
        };
        assert_eq!(
            err_text(bind("myvol:/data")),
            "named volumes are not supported yet: myvol"
        );
        assert_eq!(
            err_text(bind("/data")),
            "anonymous volumes are not supported yet: /data"
        );
        assert_eq!(
            err_text(bind("/src:relative")),
            "invalid volume specification: '/src:relative': invalid mount config for type \"bind\": invalid mount path: 'relative' mount path must be absolute"
        );
        assert_eq!(
            err_text(bind("/src:/")),
            "invalid volume specification: '/src:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"
        );
        assert_eq!(err_text(bind("/src:/x:xyz")), "invalid mode: xyz");
        assert_eq!(err_text(bind("/src:/x:ro,rw")), "invalid mode: ro,rw");
        assert_eq!(
            err_text(bind("/x:rw")),
            "invalid volume specification: '/x:rw'"
        );
        assert_eq!(
            err_text(bind("/a:/b:ro:x")),
            "invalid volume specification: '/a:/b:ro:x'"
        );

        let hc = HostConfig {
            binds: Some(vec![
                format!("{}:/data", src.display()),
                format!("{}:/data/", src.display()),
            ]),
            ..Default::default()
        };
        assert_eq!(
            err_text(build(&options(&fx, &cfg, &hc))),
            "Duplicate mount point: /data"
        );
        let hc = HostConfig {
            binds: Some(vec![format!("{}:/run", src.display())]),
            tmpfs: Some(HashMap::from([("/run".to_string(), String::new())])),
            ..Default::default()
        };
        assert_eq!(
            err_text(build(&options(&fx, &cfg, &hc))),
            "Duplicate mount point: /run"
        );
    }

    #[test]
    fn mounts_and_tmpfs() {
        let fx = fixture();
        let src = fx.dir.path().join("src");
        fs::create_dir(&src).unwrap();
        let cfg = sh();
        let hc = HostConfig {
            mounts: Some(vec![
                ApiMount {
                    target: Some("/ro".into()),
                    source: Some(src.to_string_lossy().into_owned()),
                    typ: Some(MountType::BIND),
                    read_only: Some(true),
                    ..Default::default()
                },
                ApiMount {
                    target: Some("/cache".into()),
                    typ: Some(MountType::TMPFS),
                    tmpfs_options: Some(MountTmpfsOptions {
                        size_bytes: Some(64 << 20),
                        mode: Some(0o1777),
                        options: Some(vec![strings(&["exec"])]),
                    }),
                    ..Default::default()
                },
            ]),
            tmpfs: Some(HashMap::from([
                ("/run".to_string(), "rw,size=64m,noexec".to_string()),
                ("/tmp".to_string(), String::new()),
            ])),
            ..Default::default()
        };
        let spec = build(&options(&fx, &cfg, &hc)).unwrap();
        assert_eq!(
            mount_options(&spec, "/ro"),
            strings(&["rbind", "rro", "rprivate"])
        );
        let cache = mount(&spec, "/cache").unwrap();
        assert_eq!(cache.typ().as_deref(), Some("tmpfs"));
        assert_eq!(
            mount_options(&spec, "/cache"),
            strings(&[
                "nosuid",
                "nodev",
                "rprivate",
                "mode=1777",
                "size=64m",
                "exec"
            ])
        );
        assert_eq!(
            mount_options(&spec, "/run"),
            strings(&["nosuid", "nodev", "rprivate", "rw", "size=64m", "noexec"])
        );
        assert_eq!(
            mount_options(&spec, "/tmp"),
            strings(&["noexec", "nosuid", "nodev", "rprivate"])
        );

        let with_mount = |m: ApiMount| {
            let hc = HostConfig {
                mounts: Some(vec![m]),
                ..Default::default()
            };
            build(&options(&fx, &cfg, &hc))
        };
        let bind = |src: &str, dst: &str| ApiMount {
            target: Some(dst.into()),
            source: Some(src.into()),
            typ: Some(MountType::BIND),
            ..Default::default()
        };
        assert_eq!(
            err_text(with_mount(bind("/nonexistent-berth", "/x"))),
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-berth"
        );
        let missing = fx.dir.path().join("created");
        let spec = with_mount(ApiMount {
            bind_options: Some(MountBindOptions {
                create_mountpoint: Some(true),
                ..Default::default()
            }),
            ..bind(&missing.to_string_lossy(), "/x")
        })
        .unwrap();
        assert!(mount(&spec, "/x").is_some());
        assert!(missing.is_dir());
        assert_eq!(
            err_text(with_mount(bind(&src.to_string_lossy(), "x"))),
            "invalid mount config for type \"bind\": invalid mount path: 'x' mount path must be absolute"
        );
        assert_eq!(
            err_text(with_mount(bind("rel", "/x"))),
            "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            err_text(with_mount(ApiMount {
                target: Some("/v".into()),
                source: Some("vol".into()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            })),
            "named volumes are not supported yet: vol"
        );
        assert_eq!(
            err_text(with_mount(ApiMount {
                target: Some("/t".into()),
                typ: Some(MountType::TMPFS),
                bind_options: Some(MountBindOptions::default()),
                ..Default::default()
            })),
            "invalid mount config for type \"tmpfs\": field BindOptions must not be specified"
        );
        assert_eq!(
            err_text(with_mount(ApiMount {
                target: Some("/t".into()),
                typ: Some(MountType::TMPFS),
                tmpfs_options: Some(MountTmpfsOptions {
                    options: Some(vec![strings(&["nosuid"])]),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            "invalid mount config for type \"tmpfs\": invalid option: nosuid"
        );
        let hc = HostConfig {
            tmpfs: Some(HashMap::from([("/t".to_string(), "bogus=1".to_string())])),
            ..Default::default()
        };
        assert_eq!(
            err_text(build(&options(&fx, &cfg, &hc))),
            "invalid tmpfs option \"bogus\""
        );
        let hc = HostConfig {
            tmpfs: Some(HashMap::from([("t".to_string(), String::new())])),
            ..Default::default()
        };
        assert_eq!(
            err_text(build(&options(&fx, &cfg, &hc))),
            "invalid mount path: 't' mount path must be absolute"
        );
        let hc = HostConfig {
            binds: Some(vec![format!("{}:/m", src.display())]),
            mounts: Some(vec![bind(&src.to_string_lossy(), "/m/")]),
            ..Default::default()
        };
        assert_eq!(
            err_text(build(&options(&fx, &cfg, &hc))),
            "Duplicate mount point: /m/"
        );
    }

    #[test]
    fn user_mounts_replace_defaults_and_network_files() {
        let fx = fixture();
        let src = fx.dir.path().join("src");
        fs::create_dir(&src).unwrap();
        let my_hosts = fx.dir.path().join("my-hosts");
        fs::write(&my_hosts, "").unwrap();
        let cfg = sh();
        let hc = HostConfig {
            binds: Some(vec![
                format!("{}:/etc/hosts:ro", my_hosts.display()),
                format!("{}:/dev/shm", src.display()),
            ]),
            ..Default::default()
        };
        let spec = build(&options(&fx, &cfg, &hc)).unwrap();
        let shm: Vec<_> = spec
            .mounts()
            .iter()
            .flatten()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
            .collect();
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0].typ().as_deref(), Some("bind"));
        let hosts = mount(&spec, "/etc/hosts").unwrap();
        assert_eq!(hosts.source().as_deref(), Some(my_hosts.as_path()));
        assert!(hosts
            .options()
            .as_ref()
            .unwrap()
            .contains(&"rro".to_string()));
        assert_eq!(
            destinations(&spec).last().map(String::as_str),
            Some("/etc/hosts")
        );

        // A user /dev replaces every default mount below it.
        let hc = HostConfig {
            binds: Some(vec![format!("{}:/dev", src.display())]),
            ..Default::default()
        };
        let spec = build(&options(&fx, &cfg, &hc)).unwrap();
        let d = destinations(&spec);
        assert!(!d.iter().any(|x| x.starts_with("/dev/")), "{d:?}");

        // A missing network file is skipped, as Docker does.
        fs::remove_file(&fx.resolv).unwrap();
        let spec = build(&options(&fx, &cfg, &HostConfig::default())).unwrap();
        assert!(mount(&spec, "/etc/resolv.conf").is_none());
    }

    #[test]
    fn readonly_rootfs() {
        let hc = HostConfig {
            readonly_rootfs: Some(true),
            ..Default::default()
        };
        let spec = build_with(&sh(), &hc).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        for dest in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"] {
            assert!(
                !mount_options(&spec, dest).contains(&"ro".to_string()),
                "{dest}"
            );
        }
        assert!(mount_options(&spec, "/sys").contains(&"ro".to_string()));
        // Docker mounts the network files read-only with a read-only rootfs.
        assert_eq!(
            mount_options(&spec, "/etc/hosts"),
            strings(&["rbind", "rro", "rprivate"])
        );
    }

    #[test]
    fn ipc_modes() {
        let hc = HostConfig {
            ipc_mode: Some("host".into()),
            ..Default::default()
        };
        let fx = fixture();
        let cfg = sh();
        let mut o = options(&fx, &cfg, &hc);
        o.ipc = Namespace::Host;
        let spec = build(&o).unwrap();
        let shm = mount(&spec, "/dev/shm").unwrap();
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        assert_eq!(shm.source().as_deref(), Some(Path::new("/dev/shm")));
        assert!(!ns_types(&spec).contains(&LinuxNamespaceType::Ipc));

        let hc = HostConfig {
            ipc_mode: Some("none".into()),
            shm_size: Some(1 << 20),
            ..Default::default()
        };
        let spec = build_with(&cfg, &hc).unwrap();
        assert!(mount(&spec, "/dev/shm").is_none());
        let hc = HostConfig {
            shm_size: Some(1 << 20),
            ..Default::default()
        };
        let spec = build_with(&cfg, &hc).unwrap();
        assert!(mount_options(&spec, "/dev/shm").contains(&"size=1048576".to_string()));
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

    #[test]
    fn init_process() {
        let fx = fixture();
        let tini = fx.dir.path().join("tini");
        fs::write(&tini, "").unwrap();
        let cfg = ContainerConfig {
            entrypoint: Some(strings(&["/entry"])),
            cmd: Some(strings(&["a", "b"])),
            ..Default::default()
        };
        let hc = HostConfig::default();
        let mut o = options(&fx, &cfg, &hc);
        o.init_path = Some(&tini);
        let spec = build(&o).unwrap();
        assert_eq!(
            process(&spec).args().clone().unwrap(),
            strings(&["/sbin/docker-init", "--", "/entry", "a", "b"])
        );
        let m = mount(&spec, "/sbin/docker-init").unwrap();
        assert_eq!(m.source().as_deref(), Some(tini.as_path()));
        assert_eq!(m.options().clone().unwrap(), strings(&["bind", "ro"]));

        // Not in the host's (or another container's) pid namespace.
        o.pid = Namespace::Host;
        let spec = build(&o).unwrap();
        assert_eq!(
            process(&spec).args().clone().unwrap(),
            strings(&["/entry", "a", "b"])
        );
        assert!(mount(&spec, "/sbin/docker-init").is_none());

        let empty_cfg = ContainerConfig::default();
        assert_eq!(
            err_text(build(&options(&fx, &empty_cfg, &hc))),
            "no command specified"
        );
    }

    #[test]
    fn process_options() {
        let cfg = ContainerConfig {
            tty: Some(true),
            working_dir: Some("/srv/app/".into()),
            env: Some(strings(&["PATH=/custom", "HOSTNAME"])),
            ..sh()
        };
        let hc = HostConfig {
            console_size: Some(vec![40, 120]),
            oom_score_adj: Some(-500),
            ulimits: Some(vec![
                ResourcesUlimits {
                    name: Some("nofile".into()),
                    soft: Some(1024),
                    hard: Some(2048),
                },
                ResourcesUlimits {
                    name: Some("core".into()),
                    soft: Some(-1),
                    hard: Some(-1),
                },
            ]),
            ..Default::default()
        };
        let spec = build_with(&cfg, &hc).unwrap();
        let p = process(&spec);
        assert_eq!(p.terminal(), Some(true));
        let size = p.console_size().unwrap();
        assert_eq!((size.height(), size.width()), (40, 120));
        assert_eq!(p.cwd(), Path::new("/srv/app"));
        assert_eq!(p.oom_score_adj(), Some(-500));
        assert_eq!(
            env(&spec),
            strings(&["PATH=/custom", "TERM=xterm", "HOME=/root"])
        );
        let rl = p.rlimits().clone().unwrap();
        assert_eq!(rl.len(), 2);
        assert_eq!(rl[0].typ(), PosixRlimitType::RlimitNofile);
        assert_eq!((rl[0].soft(), rl[0].hard()), (1024, 2048));
        assert_eq!(rl[1].typ(), PosixRlimitType::RlimitCore);
        assert_eq!(rl[1].soft(), u64::MAX);

        let bad = HostConfig {
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("bogus".into()),
                soft: Some(1),
                hard: Some(1),
            }]),
            ..Default::default()
        };
        assert_eq!(
            err_text(build_with(&sh(), &bad)),
            "invalid ulimit type: bogus"
        );
        let bad = HostConfig {
            oom_score_adj: Some(1001),
            ..Default::default()
        };
        assert_eq!(
            err_text(build_with(&sh(), &bad)),
            "Invalid value 1001, range for oom score adj is [-1000, 1000]"
        );
        let rel = ContainerConfig {
            working_dir: Some("srv".into()),
            ..sh()
        };
        assert_eq!(
            err_text(build_with(&rel, &HostConfig::default())),
            "the working directory 'srv' is invalid, it needs to be an absolute path"
        );
        // Without a TTY, no console size.
        let spec = build_with(&sh(), &hc).unwrap();
        assert_eq!(process(&spec).console_size(), None);
    }

    #[test]
    fn security_options() {
        let nnp = |opt: &str| {
            let hc = HostConfig {
                security_opt: Some(strings(&[opt])),
                ..Default::default()
            };
            build_with(&sh(), &hc).map(|s| process(&s).no_new_privileges())
        };
        for opt in [
            "no-new-privileges",
            "no-new-privileges:true",
            "no-new-privileges=true",
            "no-new-privileges=1",
        ] {
            assert_eq!(nnp(opt).unwrap(), Some(true), "{opt}");
        }
        assert_eq!(nnp("no-new-privileges=false").unwrap(), None);
        assert_eq!(
            err_text(nnp("no-new-privileges=maybe").map(|_| Spec::default())),
            r#"invalid --security-opt 2: "no-new-privileges=maybe""#
        );
        assert_eq!(
            err_text(nnp("foo=bar").map(|_| Spec::default())),
            r#"invalid --security-opt 2: "foo=bar""#
        );
        assert_eq!(
            err_text(nnp("bogus").map(|_| Spec::default())),
            r#"invalid --security-opt 1: "bogus""#
        );

        let with = |opts: &[&str]| {
            let hc = HostConfig {
                security_opt: Some(strings(opts)),
                ..Default::default()
            };
            build_with(&sh(), &hc).unwrap()
        };
        let spec = with(&["apparmor=docker-default", "label=disable", "label:type:x"]);
        assert_eq!(process(&spec).apparmor_profile(), &None);
        assert!(linux(&spec).seccomp().is_some());
        for opt in ["seccomp=unconfined", "seccomp:unconfined"] {
            assert_eq!(linux(&with(&[opt])).seccomp(), &None, "{opt}");
        }
        let spec = with(&[
            r#"seccomp={"defaultAction":"SCMP_ACT_LOG","syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]}"#,
        ]);
        let s = linux(&spec).seccomp().clone().unwrap();
        assert_eq!(
            s.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActLog
        );
        assert_eq!(s.syscalls().as_ref().unwrap().len(), 1);
        assert_eq!(linux(&with(&["seccomp={}"])).seccomp(), &None);

        let spec = with(&["systempaths=unconfined"]);
        assert_eq!(linux(&spec).masked_paths(), &None);
        assert_eq!(linux(&spec).readonly_paths(), &None);
        let spec = with(&["writable-cgroups=true"]);
        assert!(!mount_options(&spec, "/sys/fs/cgroup").contains(&"ro".to_string()));

        // Explicit masked paths win over the defaults.
        let hc = HostConfig {
            masked_paths: Some(strings(&["/proc/secret"])),
            readonly_paths: Some(vec![]),
            ..Default::default()
        };
        let spec = build_with(&sh(), &hc).unwrap();
        assert_eq!(
            linux(&spec).masked_paths().clone().unwrap(),
            strings(&["/proc/secret"])
        );
        assert_eq!(linux(&spec).readonly_paths(), &None);
    }

    #[test]
    fn resources_mapping() {
        let hc = HostConfig {
            memory: Some(128 << 20),
            memory_swap: Some(256 << 20),
            memory_reservation: Some(64 << 20),
            memory_swappiness: Some(10),
            oom_kill_disable: Some(true),
            nano_cpus: Some(1_500_000_000),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            cpuset_mems: Some("0".into()),
            pids_limit: Some(100),
            blkio_weight: Some(300),
            ..Default::default()
        };
        let r = resources(&hc, CgroupVersion::V2).unwrap();
        let m = r.memory().unwrap();
        assert_eq!(m.limit(), Some(128 << 20));
        assert_eq!(m.swap(), Some(256 << 20));
        assert_eq!(m.reservation(), Some(64 << 20));
        assert_eq!(m.swappiness(), None, "no swappiness on cgroup v2");
        assert_eq!(m.disable_oom_killer(), None);
        let c = r.cpu().as_ref().unwrap();
        assert_eq!(c.period(), Some(100_000));
        assert_eq!(c.quota(), Some(150_000));
        assert_eq!(c.shares(), Some(512));
        assert_eq!(c.cpus().as_deref(), Some("0"));
        assert_eq!(c.mems().as_deref(), Some("0"));
        assert_eq!(r.pids().unwrap().limit(), 100);
        assert_eq!(r.block_io().as_ref().unwrap().weight(), Some(300));

        let v1 = resources(&hc, CgroupVersion::V1).unwrap();
        assert_eq!(v1.memory().unwrap().swappiness(), Some(10));
        assert_eq!(v1.memory().unwrap().disable_oom_killer(), Some(true));

        for limit in [0, -1] {
            let hc = HostConfig {
                pids_limit: Some(limit),
                ..Default::default()
            };
            assert_eq!(resources(&hc, CgroupVersion::V2).unwrap().pids(), &None);
        }
        let r = resources(
            &HostConfig {
                cpu_quota: Some(50_000),
                cpu_period: Some(200_000),
                ..Default::default()
            },
            CgroupVersion::V2,
        )
        .unwrap();
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(r.cpu().as_ref().unwrap().period(), Some(200_000));
        assert_eq!(
            resources(&HostConfig::default(), CgroupVersion::V2).unwrap(),
            LinuxResources::default()
        );

        let err = |hc: HostConfig| resources(&hc, CgroupVersion::V2).unwrap_err().to_string();
        assert_eq!(
            err(HostConfig {
                nano_cpus: Some(1_000_000_000),
                cpu_quota: Some(50_000),
                ..Default::default()
            }),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
        assert_eq!(
            err(HostConfig {
                nano_cpus: Some(1_000_000_000),
                cpu_period: Some(50_000),
                ..Default::default()
            }),
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
        );
        assert_eq!(
            err(HostConfig {
                memory: Some(256 << 20),
                memory_swap: Some(128 << 20),
                ..Default::default()
            }),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert_eq!(
            err(HostConfig {
                memory_swappiness: Some(101),
                ..Default::default()
            }),
            "Invalid value: 101, valid memory swappiness range is 0-100"
        );
        assert!(err(HostConfig {
            nano_cpus: Some(1_000_000_000_000),
            ..Default::default()
        })
        .starts_with("range of CPUs is from 0.01 to"));
    }

    #[test]
    fn devices_and_rules() {
        let fx = fixture();
        let cfg = sh();
        let hc = HostConfig {
            devices: Some(vec![DeviceMapping {
                path_on_host: Some("/dev/null".into()),
                path_in_container: Some("/dev/mynull".into()),
                cgroup_permissions: Some("rw".into()),
            }]),
            device_cgroup_rules: Some(strings(&["c 42:* rmw", "b *:* m"])),
            ..Default::default()
        };
        if fs::symlink_metadata("/dev/null").is_ok_and(|m| m.file_type().is_char_device()) {
            let spec = build(&options(&fx, &cfg, &hc)).unwrap();
            let l = linux(&spec);
            let devs = l.devices().clone().unwrap();
            assert_eq!(devs.len(), 1);
            assert_eq!(devs[0].path(), Path::new("/dev/mynull"));
            assert_eq!(devs[0].typ(), LinuxDeviceType::C);
            assert_eq!((devs[0].major(), devs[0].minor()), (1, 3));
            let rules: Vec<String> = l
                .resources()
                .as_ref()
                .unwrap()
                .devices()
                .iter()
                .flatten()
                .map(|r| r.to_string())
                .collect();
            assert!(rules.contains(&"c 1:3 rw".to_string()), "{rules:?}");
            assert!(rules.contains(&"c 42:* rmw".to_string()), "{rules:?}");
            assert!(rules.contains(&"b *:* m".to_string()), "{rules:?}");
        }
        let hc = HostConfig {
            devices: Some(vec![DeviceMapping {
                path_on_host: Some("/dev/nosuch-berth".into()),
                path_in_container: Some("/dev/x".into()),
                cgroup_permissions: Some("rwm".into()),
            }]),
            ..Default::default()
        };
        assert_eq!(
            err_text(build(&options(&fx, &cfg, &hc))),
            "error gathering device information while adding custom device \"/dev/nosuch-berth\": no such file or directory"
        );
        let hc = HostConfig {
            devices: Some(vec![DeviceMapping {
                path_on_host: Some(fx.hosts.to_string_lossy().into_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert!(err_text(build(&options(&fx, &cfg, &hc))).ends_with(": not a device node"));
        let hc = HostConfig {
            device_requests: Some(vec![bollard_stubs::models::DeviceRequest {
                count: Some(-1),
                capabilities: Some(vec![strings(&["gpu"])]),
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            err_text(build(&options(&fx, &cfg, &hc))),
            "could not select device driver \"\" with capabilities: [[gpu]]"
        );
        for bad in ["c 1:3", "x 1:3 rwm", "c 1:3 rwx", "c a:3 r"] {
            assert_eq!(
                parse_device_cgroup_rule(bad).unwrap_err().to_string(),
                format!("invalid device cgroup rule format: '{bad}'")
            );
        }
    }

    #[test]
    fn exec_processes() {
        let fx = fixture();
        let cfg = ContainerConfig {
            user: Some("alice".into()),
            working_dir: Some("/work".into()),
            ..sh()
        };
        let hc = HostConfig {
            security_opt: Some(strings(&["no-new-privileges"])),
            ..Default::default()
        };
        let o = options(&fx, &cfg, &hc);
        let p = exec_process(
            &o,
            &strings(&["ls", "-l"]),
            &strings(&["FOO=baz", "X=1"]),
            "",
            "",
            true,
            false,
        )
        .unwrap();
        assert_eq!(p.args().clone().unwrap(), strings(&["ls", "-l"]));
        assert_eq!(
            p.env().clone().unwrap(),
            strings(&[
                &format!("PATH={DEFAULT_PATH_ENV}"),
                &format!("HOSTNAME={}", &ID[..12]),
                "TERM=xterm",
                "FOO=baz",
                "X=1",
                "HOME=/home/alice",
            ])
        );
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.cwd(), Path::new("/work"));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(
            p.capabilities().as_ref().unwrap().bounding(),
            &Some(to_oci_caps(&strings(&DEFAULT_CAPABILITIES)).unwrap())
        );

        let p = exec_process(&o, &strings(&["id"]), &[], "0:0", "/tmp", false, true).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(
            p.capabilities().as_ref().unwrap().bounding(),
            &Some(to_oci_caps(&all_capabilities().0).unwrap())
        );
        let err = exec_process(&o, &[], &[], "", "", false, false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter);
        let err = exec_process(&o, &strings(&["x"]), &[], "nosuch", "", false, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user nosuch: no matching entries in passwd file"
        );
    }

    #[test]
    fn env_replace_or_append() {
        let base = strings(&["PATH=/bin", "HOSTNAME=h", "TERM=xterm"]);
        assert_eq!(
            replace_or_append(base.clone(), &strings(&["TERM", "A=1", "PATH=/x", "A=2"])),
            strings(&["PATH=/x", "HOSTNAME=h", "A=2"])
        );
        assert_eq!(replace_or_append(base.clone(), &[]), base);
    }

    #[test]
    fn working_dir_is_created_inside_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir(&root).unwrap();
        prepare_rootfs(&root, "/srv/app/data").unwrap();
        let meta = fs::metadata(root.join("srv/app/data")).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        assert_eq!(meta.uid(), 0);
        prepare_rootfs(&root, "/srv/app/data").unwrap();
        prepare_rootfs(&root, "").unwrap();

        // A symlink pointing outside resolves inside the root.
        fs::create_dir(tmp.path().join("outside")).unwrap();
        std::os::unix::fs::symlink("/../../outside", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("escape2")).unwrap();
        fs::create_dir(root.join("outside")).unwrap();
        prepare_rootfs(&root, "/escape/sub").unwrap();
        prepare_rootfs(&root, "/escape2/sub2").unwrap();
        assert!(root.join("outside/sub").is_dir());
        assert!(root.join("outside/sub2").is_dir());
        assert!(!tmp.path().join("outside/sub").exists());
        assert!(!tmp.path().join("outside/sub2").exists());

        fs::write(root.join("file"), "").unwrap();
        let err = prepare_rootfs(&root, "/file/x").unwrap_err();
        assert_eq!(err.to_string(), "Cannot mkdir: /file/x is not a directory");
        let err = prepare_rootfs(&root, "rel").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidParameter);
    }

    #[test]
    fn validate_catches_create_time_errors() {
        let ok = validate(&sh(), &HostConfig::default());
        assert!(ok.is_ok());
        let hc = HostConfig {
            binds: Some(strings(&["vol:/data"])),
            ..Default::default()
        };
        assert_eq!(
            validate(&sh(), &hc).unwrap_err().to_string(),
            "named volumes are not supported yet: vol"
        );
        let hc = HostConfig {
            cap_add: Some(strings(&["nope"])),
            ..Default::default()
        };
        assert!(validate(&sh(), &hc).is_err());
        let hc = HostConfig {
            security_opt: Some(strings(&["x"])),
            ..Default::default()
        };
        assert!(validate(&sh(), &hc).is_err());
    }

    #[test]
    fn clean_paths() {
        for (i, o) in [
            ("/a/b/../c/", "/a/c"),
            ("/../x", "/x"),
            ("a/../../b", "../b"),
            ("//a//b/.", "/a/b"),
            ("", "."),
            ("/", "/"),
        ] {
            assert_eq!(clean_path(i), o, "{i}");
        }
    }

    /// Runs `script` with busybox `sh` in a real container built from `build()`'s spec
    /// (libcontainer, this host's cgroups) and returns (exit code, output).
    fn run_busybox(script: &str, hc: HostConfig, user: &str) -> (i32, String) {
        use libcontainer::container::builder::ContainerBuilder;
        use libcontainer::syscall::syscall::SyscallType;
        use std::io::Read;

        let fx = fixture();
        let bin = fx.rootfs.join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
        for tool in [
            "sh", "id", "cat", "ls", "grep", "mount", "unshare", "touch", "echo", "hostname",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
        }
        let id = format!("berth-e2e-{}", std::process::id());
        let cfg = ContainerConfig {
            cmd: Some(strings(&["sh", "-c", script])),
            user: Some(user.into()),
            working_dir: Some("/work/dir".into()),
            ..Default::default()
        };
        let mut o = options(&fx, &cfg, &hc);
        o.id = &id;
        o.network = Namespace::Private;
        o.cgroup_path = format!("/{id}");
        o.cgroup_version = crate::runtime::probe_cgroups().version;
        prepare_rootfs(&fx.rootfs, "/work/dir").unwrap();
        let spec = build(&o).unwrap();
        let bundle = fx.dir.path().join("bundle");
        fs::create_dir(&bundle).unwrap();
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();

        let (r, w) = nix::unistd::pipe().unwrap();
        let w2 = w.try_clone().unwrap();
        let null = fs::File::open("/dev/null").unwrap();
        let mut c = ContainerBuilder::new(id.clone(), SyscallType::Linux)
            .with_root_path(fx.dir.path().join("lc"))
            .unwrap()
            .with_stdin(null)
            .with_stdout(w)
            .with_stderr(w2)
            .validate_id()
            .unwrap()
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .unwrap();
        c.start().unwrap();
        let pid = c.pid().unwrap();
        let status = nix::sys::wait::waitpid(pid, None).unwrap();
        let code = match status {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("{other:?}"),
        };
        let mut out = String::new();
        fs::File::from(r).read_to_string(&mut out).unwrap();
        c.refresh_status().unwrap();
        c.delete(true).unwrap();
        (code, out)
    }

    /// Runs the container tests below in a child test process: libcontainer clones, which
    /// wants a caller with as few threads as possible.
    fn run_e2e_child(name: &str) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                &format!("runtime::spec::tests::{name}"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BERTH_E2E_CHILD", "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("E2E-OK"), "{text}");
    }

    fn e2e_possible() -> bool {
        let ok = nix::unistd::Uid::effective().is_root() && Path::new("/usr/bin/busybox").exists();
        if !ok {
            eprintln!("skipped: needs root and a static /usr/bin/busybox");
        }
        ok
    }

    #[test]
    #[ignore = "runs real containers; cargo test --lib runtime::spec::tests::e2e -- --ignored"]
    fn e2e_containers() {
        if !e2e_possible() {
            return;
        }
        run_e2e_child("e2e_child");
    }

    #[test]
    #[ignore = "helper, run in a child process by e2e_containers"]
    fn e2e_child() {
        if std::env::var_os("BERTH_E2E_CHILD").is_none() {
            return;
        }
        let script = "id; echo HOME=$HOME; pwd; hostname; grep CapEff /proc/self/status; \
                      cat /proc/kcore >/dev/null 2>&1 && echo KCORE-READABLE; \
                      touch /proc/sys/kernel/x 2>/dev/null || echo PROC-SYS-RO; \
                      unshare -U true 2>/dev/null || echo UNSHARE-DENIED; \
                      (true) && echo FORK-OK; ls /dev; exit 3";
        let (code, out) = run_busybox(script, HostConfig::default(), "");
        println!("{out}");
        assert_eq!(code, 3, "{out}");
        assert!(out.contains("uid=0(root) gid=0(root)"), "{out}");
        assert!(out.contains("HOME=/root"), "{out}");
        assert!(out.contains("/work/dir"), "{out}");
        assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
        assert!(!out.contains("KCORE-READABLE"), "{out}");
        assert!(out.contains("PROC-SYS-RO"), "{out}");
        assert!(out.contains("UNSHARE-DENIED"), "{out}");
        assert!(out.contains("FORK-OK"), "{out}");
        assert!(out.contains("shm"), "{out}");

        let hc = HostConfig {
            cap_drop: Some(strings(&["ALL"])),
            security_opt: Some(strings(&["no-new-privileges"])),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/scratch".to_string(),
                "size=1m".to_string(),
            )])),
            ..Default::default()
        };
        let script = "id; grep -E 'CapEff|NoNewPrivs' /proc/self/status; \
                      touch /x 2>/dev/null || echo ROOTFS-RO; touch /scratch/x && echo TMPFS-RW";
        let (code, out) = run_busybox(script, hc, "alice");
        println!("{out}");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("uid=1000(alice) gid=1000"), "{out}");
        assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        assert!(out.contains("ROOTFS-RO"), "{out}");
        assert!(out.contains("TMPFS-RW"), "{out}");

        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("f"), "from-host").unwrap();
        let hc = HostConfig {
            privileged: Some(true),
            binds: Some(vec![format!("{}:/host:ro", src.path().display())]),
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            pids_limit: Some(50),
            ulimits: Some(vec![ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(512),
                hard: Some(1024),
            }]),
            ..Default::default()
        };
        let script = "cat /host/f; echo; touch /host/g 2>/dev/null || echo BIND-RO; \
                      mkdir -p /mnt && mount -t tmpfs x /mnt && echo MOUNT-OK; \
                      ulimit -n; ls /dev | grep -c .";
        let (code, out) = run_busybox(script, hc, "");
        println!("{out}");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("from-host"), "{out}");
        assert!(out.contains("BIND-RO"), "{out}");
        assert!(out.contains("MOUNT-OK"), "{out}");
        assert!(out.contains("\n512\n"), "{out}");
        println!("E2E-OK");
    }
}
