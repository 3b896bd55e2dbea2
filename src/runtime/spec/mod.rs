//! Docker's container `Config` + `HostConfig` → the OCI runtime `Spec` libcontainer runs.
//!
//! This follows moby's `daemon/oci_linux.go` (`createSpec` and its `With*` options), its
//! defaults (`daemon/pkg/oci/defaults.go`), the capability rules (`oci/caps`) and
//! `parseSecurityOpt`, with the error messages Docker clients show. Docker's mount syntax
//! (`Binds`, `Mounts`, `Tmpfs`) is parsed by the container layer (`container::mounts`) into the
//! [`MountPoint`]s this module consumes.
//!
//! Layout: this file has the entry points ([`build`], [`exec_process`], [`validate`],
//! [`prepare_rootfs`]); `process`, `security` (capabilities, seccomp, `SecurityOpt`),
//! `namespaces` (and sysctls, system paths), `resources`, `devices` and `mounts` assemble
//! their part of the spec. What touches the host is kept in sections of its own: the rootfs
//! working directory here, bind sources in `mounts`, device nodes in `devices`. On top of that it does what libcontainer 0.7 leaves to its caller (see
//! `docs/notes/libcontainer-0.7.md` §2): explicit `PATH` and `HOME`, explicit rlimits, an
//! absolute cgroups path, `noNewPrivileges` only when true, never an AppArmor profile.
//!
//! Decisions where Docker needs context berth does not have here:
//! - Named and anonymous volumes are refused by the container layer (no volume store yet).
//! - `IpcMode` `shareable` / `container:<id>` get a private `/dev/shm` tmpfs: the namespace is
//!   joined by the caller, but the other container's `/dev/shm` is not shared.
//! - Per-mount propagation is passed through; moby's checks that the source is a shared or
//!   slave mount (and the matching `rootfsPropagation`) are not done.

use std::collections::HashMap;
use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bollard_stubs::models::{
    ContainerConfig, DeviceMapping, HostConfig, HostConfigCgroupnsModeEnum,
};
use oci_spec::runtime::{
    BoxBuilder, Capabilities, Capability, LinuxBlockIo, LinuxCapabilities, LinuxCpu, LinuxDevice,
    LinuxDeviceCgroup, LinuxDeviceType, LinuxIdMapping, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxPids, LinuxResources, LinuxSeccomp, LinuxThrottleDeviceBuilder,
    LinuxWeightDeviceBuilder, Mount, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process,
    Root, Spec, User,
};
use serde::de::DeserializeOwned;

use super::{seccomp, user, CgroupVersion};
#[cfg(test)]
use crate::errors::{ErrorKind, Kinded};
use crate::util::env::replace_or_append;
use crate::util::inroot;

mod devices;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod security;

use devices::*;
use mounts::*;
use namespaces::*;
use process::*;
use resources::*;
use security::*;

pub use mounts::{tmpfs_options, MountPoint};
pub use namespaces::{
    default_masked_paths, default_readonly_paths, DEFAULT_NET_SYSCTLS, NETNS_ANNOTATION,
};
pub use security::{capabilities, DEFAULT_CAPABILITIES};

// ---------------------------------------------------------------------------------------------
// Errors

crate::module_error! {
    /// A failure to turn a container's configuration into a runtime spec.
    pub struct SpecError;
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
    /// The user's mounts, resolved from `Binds`, `Mounts` and `Tmpfs` at create, or why they
    /// could not be (an old record whose `HostConfig` does not parse); only [`build`] needs them.
    pub mounts: Result<&'a [MountPoint], SpecError>,
    /// `--userns-remap`: the container gets a user namespace with these ids (`None`: the
    /// host's, as for `--userns=host`).
    pub userns: Option<super::IdMap>,
}

/// Docker's default `PATH`.
pub const DEFAULT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the init binary appears in the container.
pub const INIT_PATH_IN_CONTAINER: &str = "/sbin/docker-init";
/// `/dev/shm`'s size when `ShmSize` is unset: 64 MiB.
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;
/// `RLIMIT_NOFILE` when `Ulimits` does not set it (what dockerd's containers inherit).
pub const DEFAULT_NOFILE: u64 = 1 << 20;

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
    if let Some(map) = &opts.userns {
        let (uids, gids) = id_mappings(map)?;
        linux.set_uid_mappings(Some(uids));
        linux.set_gid_mappings(Some(gids));
    }
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
    let mut annotations = hc.annotations.clone().unwrap_or_default();
    if let Some(p) = supervisor_netns(opts) {
        annotations.insert(NETNS_ANNOTATION.to_string(), p.display().to_string());
    }
    if !annotations.is_empty() {
        spec.set_annotations(Some(annotations));
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

/// Docker's create-time checks of what [`build`] would refuse, for `config` already merged with
/// the image: security options, capabilities, the command, the working directory, resources,
/// device cgroup rules, ulimits and sysctls (against the namespaces the modes ask for). Mounts
/// are parsed and checked by the container layer; user lookup happens in [`build`].
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
    resources(host_config, CgroupVersion::V2)?;
    if let Some(rules) = &host_config.device_cgroup_rules {
        for r in rules {
            parse_device_cgroup_rule(r)?;
        }
    }
    rlimits(host_config)?;
    oom_score_adj(host_config)?;
    check_device_requests(host_config)?;
    check_sysctls(host_config)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Host side effects: the rootfs

/// Create `WorkingDir` inside the rootfs if it is missing (0755, owned by root, like Docker),
/// resolving every component inside the root: no symlink or `..` leads outside it.
pub fn prepare_rootfs(rootfs: &Path, working_dir: &str) -> Result<(), SpecError> {
    prepare_rootfs_as(rootfs, working_dir, None)
}

/// [`prepare_rootfs`] for a rootfs mounted with `userns` (`--userns-remap`): the directories
/// are made by, and owned by, the remapped root, the only ids such a mount takes.
pub fn prepare_rootfs_as(
    rootfs: &Path,
    working_dir: &str,
    userns: Option<super::IdMap>,
) -> Result<(), SpecError> {
    match userns {
        None => {
            make_init_files(rootfs)?;
            make_working_dir(rootfs, working_dir, (0, 0))
        }
        Some(m) => {
            let (uid, gid) = m.root();
            super::idmap::with_fs_ids(uid, gid, || {
                make_init_files(rootfs)?;
                make_working_dir(rootfs, working_dir, (uid, gid))
            })
        }
        .map_err(|e| SpecError::io("creating the working directory as the remapped root", e))?,
    }
}

/// The files moby's init layer gives every container, when the image has none there: an
/// empty `/.dockerenv` (mode 0755; programs test for it to know they run in a container) and
/// `/etc/mtab` as a link to `/proc/mounts`. Made by the caller's ids in the mounted rootfs,
/// through descriptors resolved inside it; `docker diff` and `commit` leave them out
/// (`container::commit::placeholders`).
fn make_init_files(rootfs: &Path) -> Result<(), SpecError> {
    use nix::errno::Errno;
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let context = |what: &str| format!("creating {what} in the container's root");
    let io = |what: &str, e: Errno| SpecError::io(context(what), std::io::Error::from(e));
    let root = std::fs::File::open(rootfs).map_err(|e| SpecError::io(context("/.dockerenv"), e))?;
    let root_dir = resolve_dir(&root, &[]).map_err(|e| io("/.dockerenv", e))?;
    match nix::fcntl::openat(
        Some(root_dir.as_raw_fd()),
        ".dockerenv",
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o755),
    ) {
        Ok(fd) => {
            // SAFETY: openat returned a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // Not the umask's mode.
            nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(0o755))
                .map_err(|e| io("/.dockerenv", e))?;
        }
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(io("/.dockerenv", e)),
    }
    let etc = match resolve_dir(&root, &[c"etc".to_owned()]) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            match nix::sys::stat::mkdirat(
                Some(root_dir.as_raw_fd()),
                "etc",
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io("/etc", e)),
            }
            resolve_dir(&root, &[c"etc".to_owned()]).map_err(|e| io("/etc", e))?
        }
        // `/etc` is not a directory in this image: nothing to add there.
        Err(Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(io("/etc", e)),
    };
    match nix::unistd::symlinkat("/proc/mounts", Some(etc.as_raw_fd()), "mtab") {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(io("/etc/mtab", e)),
    }
}

fn make_working_dir(rootfs: &Path, working_dir: &str, owner: (u32, u32)) -> Result<(), SpecError> {
    if working_dir.is_empty() {
        return Ok(());
    }
    check_working_dir(working_dir)?;
    let comps = inroot::components(inroot::clean(working_dir).as_bytes())
        .map_err(|_| SpecError::invalid("working directory contains NUL"))?;
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
                    Some(nix::unistd::Uid::from_raw(owner.0)),
                    Some(nix::unistd::Gid::from_raw(owner.1)),
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

/// Open a directory of the rootfs (`comps` from its root) as an O_PATH descriptor, every
/// component resolved inside the root.
fn resolve_dir(root: &std::fs::File, comps: &[CString]) -> Result<OwnedFd, nix::errno::Errno> {
    inroot::open_dir(root, &inroot::join(comps))
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Go's `%q`, close enough for error messages.
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// An oci-spec value with every optional field unset. Several oci-spec types have a `Default`
/// (and builders using it) full of example values, e.g. `Process` with `noNewPrivileges: true`.
fn build_err(e: impl fmt::Display) -> SpecError {
    SpecError::internal(format!("building the spec: {e}"))
}

fn empty<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, SpecError> {
    serde_json::from_value(v).map_err(|e| SpecError::internal(format!("building the spec: {e}")))
}

#[cfg(test)]
pub(crate) mod test_support {
    pub(crate) use super::*;
    pub(crate) use bollard_stubs::models::ResourcesUlimits;
    pub(crate) use std::fs;

    pub(crate) const ID: &str = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa00";

    pub(crate) struct Fixture {
        pub(crate) dir: tempfile::TempDir,
        pub(crate) rootfs: PathBuf,
        pub(crate) hostname: PathBuf,
        pub(crate) hosts: PathBuf,
        pub(crate) resolv: PathBuf,
        pub(crate) netns: PathBuf,
    }

    pub(crate) fn fixture() -> Fixture {
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

    pub(crate) fn options<'a>(
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
            // No user mounts: tests that need some set `mounts` to literal `MountPoint`s (the
            // runtime never sees `Binds` / `Mounts` / `Tmpfs`).
            mounts: Ok(&[]),
            userns: None,
        }
    }

    /// [`build`] with `mounts` as the user's mounts (an error stands for mounts that did not
    /// resolve).
    pub(crate) fn build_with_mounts(
        fx: &Fixture,
        cfg: &ContainerConfig,
        hc: &HostConfig,
        mounts: Result<Vec<MountPoint>, SpecError>,
    ) -> Result<Spec, SpecError> {
        let mut o = options(fx, cfg, hc);
        o.mounts = mounts.as_deref().map_err(Clone::clone);
        build(&o)
    }

    pub(crate) fn sh() -> ContainerConfig {
        ContainerConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["FOO=bar".into()]),
            ..Default::default()
        }
    }

    pub(crate) fn build_with(cfg: &ContainerConfig, hc: &HostConfig) -> Result<Spec, SpecError> {
        let fx = fixture();
        build(&options(&fx, cfg, hc))
    }

    pub(crate) fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    pub(crate) fn process(spec: &Spec) -> &Process {
        spec.process().as_ref().unwrap()
    }

    pub(crate) fn linux(spec: &Spec) -> &oci_spec::runtime::Linux {
        spec.linux().as_ref().unwrap()
    }

    pub(crate) fn env(spec: &Spec) -> Vec<String> {
        process(spec).env().clone().unwrap()
    }

    pub(crate) fn caps(spec: &Spec) -> &LinuxCapabilities {
        process(spec).capabilities().as_ref().unwrap()
    }

    pub(crate) fn has_cap(spec: &Spec, c: Capability) -> bool {
        caps(spec).bounding().as_ref().unwrap().contains(&c)
    }

    pub(crate) fn mount<'s>(spec: &'s Spec, dest: &str) -> Option<&'s Mount> {
        spec.mounts()
            .iter()
            .flatten()
            .find(|m| m.destination() == Path::new(dest))
    }

    pub(crate) fn mount_options(spec: &Spec, dest: &str) -> Vec<String> {
        mount(spec, dest)
            .unwrap_or_else(|| panic!("no mount at {dest}"))
            .options()
            .clone()
            .unwrap_or_default()
    }

    pub(crate) fn destinations(spec: &Spec) -> Vec<String> {
        spec.mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().to_string_lossy().into_owned())
            .collect()
    }

    pub(crate) fn ns_types(spec: &Spec) -> Vec<LinuxNamespaceType> {
        linux(spec)
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect()
    }

    pub(crate) fn err_text(r: Result<Spec, SpecError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{e}");
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;

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
            sysctls: Some(HashMap::from([("kernel.bogus".into(), "1".into())])),
            ..Default::default()
        };
        assert_eq!(
            validate(&sh(), &hc).unwrap_err().to_string(),
            "sysctl \"kernel.bogus\" is not in a separate kernel namespace"
        );
        let hc = HostConfig {
            network_mode: Some("host".into()),
            sysctls: Some(HashMap::from([("net.ipv4.ip_forward".into(), "1".into())])),
            ..Default::default()
        };
        assert_eq!(
            validate(&sh(), &hc).unwrap_err().to_string(),
            "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace"
        );
        let hc = HostConfig {
            sysctls: Some(HashMap::from([("net.ipv4.ip_forward".into(), "1".into())])),
            ..Default::default()
        };
        assert!(validate(&sh(), &hc).is_ok());
        // Mounts are the container layer's (`container::mounts`), not checked here.
        let hc = HostConfig {
            binds: Some(strings(&["vol:/data"])),
            ..Default::default()
        };
        assert!(validate(&sh(), &hc).is_ok());
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

    /// Runs `script` with busybox `sh` in a real container built from `build()`'s spec, with
    /// `mounts` as the user's mounts (libcontainer, this host's cgroups), and returns (exit
    /// code, output).
    fn run_busybox(
        script: &str,
        hc: HostConfig,
        mounts: &[MountPoint],
        user: &str,
    ) -> (i32, String) {
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
        o.mounts = Ok(mounts);
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
        let (code, out) = run_busybox(script, HostConfig::default(), &[], "");
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
            ..Default::default()
        };
        // `Tmpfs: {"/scratch": "size=1m"}`, as the container layer resolves it.
        let scratch = MountPoint {
            typ: "tmpfs".into(),
            destination: "/scratch".into(),
            rw: true,
            mode: "size=1m".into(),
            tmpfs_options: "size=1m".into(),
            ..Default::default()
        };
        let script = "id; grep -E 'CapEff|NoNewPrivs' /proc/self/status; \
                      touch /x 2>/dev/null || echo ROOTFS-RO; touch /scratch/x && echo TMPFS-RW";
        let (code, out) = run_busybox(script, hc, &[scratch], "alice");
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
        // `Binds: ["<src>:/host:ro"]`, as the container layer resolves it.
        let host = MountPoint {
            typ: "bind".into(),
            source: src.path().to_string_lossy().into_owned(),
            destination: "/host".into(),
            rw: false,
            mode: "ro".into(),
            propagation: "rprivate".into(),
            create_source: true,
            ..Default::default()
        };
        let script = "cat /host/f; echo; touch /host/g 2>/dev/null || echo BIND-RO; \
                      mkdir -p /mnt && mount -t tmpfs x /mnt && echo MOUNT-OK; \
                      ulimit -n; ls /dev | grep -c .";
        let (code, out) = run_busybox(script, hc, &[host], "");
        println!("{out}");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("from-host"), "{out}");
        assert!(out.contains("BIND-RO"), "{out}");
        assert!(out.contains("MOUNT-OK"), "{out}");
        assert!(out.contains("\n512\n"), "{out}");
        println!("E2E-OK");
    }
}
