//! The spec's `mounts`: Docker's defaults, the container's resolved mount points (parsed from
//! `Binds`, `Mounts` and `Tmpfs` by the container layer), network files and IPC, in Docker's
//! order. Creating or checking bind sources on the host is kept apart in [`prepare_sources`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

// ---------------------------------------------------------------------------------------------
// Resolved mount points

/// One user mount, resolved from the container's `HostConfig` at create and stored in its
/// record (like dockerd's `MountPoint` in `config.v2.json`). The runtime builds the spec from
/// these, never from `Binds` / `Mounts` / `Tmpfs` themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub typ: String,
    /// A volume's name (empty for an anonymous volume until create names it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A volume's driver (`local`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// The host path of a bind (cleaned) or a volume's mount point; empty for tmpfs.
    pub source: String,
    /// The path in the container (cleaned, absolute).
    pub destination: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    /// The mode of a `Binds` entry as given (`ro,rprivate`), or the data of a `Tmpfs` entry.
    pub mode: String,
    /// Bind propagation (`rprivate` by default); empty for tmpfs.
    pub propagation: String,
    /// `BindOptions.NonRecursive`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_recursive: bool,
    /// `BindOptions.ReadOnlyNonRecursive`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_non_recursive: bool,
    /// Create a missing bind source directory at start (`-v`, `CreateMountpoint`); without it
    /// a missing source is an error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create_source: bool,
    /// tmpfs data options (`size=64m,mode=1777`), checked by [`tmpfs_options`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tmpfs_options: String,
    /// A volume: copy the image's content at the destination into it while it is empty (not
    /// `nocopy`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub copy_data: bool,
    /// A volume created on demand: its driver options and labels (`Mounts` `VolumeOptions`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A volume's `VolumeOptions.Subpath`: only this path below its data is mounted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subpath: String,
}

impl MountPoint {
    pub fn is_tmpfs(&self) -> bool {
        self.typ == "tmpfs"
    }

    pub fn is_volume(&self) -> bool {
        self.typ == "volume"
    }
}

/// A mount of the spec before it becomes an OCI `Mount`: a user's or an implied one (network
/// files, host IPC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UserMount {
    pub(super) destination: String,
    pub(super) kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MountKind {
    Bind {
        source: String,
        rw: bool,
        propagation: String,
        non_recursive: bool,
        read_only_non_recursive: bool,
        /// Create a missing source directory (`-v`, `CreateMountpoint`).
        create_source: bool,
        /// A user mount whose missing source is an error (not created).
        check_source: bool,
    },
    Tmpfs {
        data: String,
    },
}

impl UserMount {
    fn from_point(m: &MountPoint) -> Self {
        let kind = if m.is_tmpfs() {
            MountKind::Tmpfs {
                data: m.tmpfs_options.clone(),
            }
        } else {
            MountKind::Bind {
                source: m.source.clone(),
                rw: m.rw,
                propagation: if m.propagation.is_empty() {
                    "rprivate".to_string()
                } else {
                    m.propagation.clone()
                },
                non_recursive: m.non_recursive,
                read_only_non_recursive: m.read_only_non_recursive,
                create_source: m.create_source,
                check_source: !m.create_source,
            }
        };
        UserMount {
            destination: m.destination.clone(),
            kind,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Assembling

pub fn tmpfs_options(data: &str) -> Result<Vec<String>, SpecError> {
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
pub(super) fn mounts(
    opts: &SpecOptions,
    sec: &SecurityOptions,
    init: Option<&Path>,
) -> Result<Vec<Mount>, SpecError> {
    let hc = opts.host_config;
    let privileged = hc.privileged.unwrap_or(false);
    let readonly_rootfs = hc.readonly_rootfs.unwrap_or(false);
    let ipc_mode = hc.ipc_mode.as_deref().unwrap_or("");
    let mut user: Vec<UserMount> = opts
        .mounts
        .clone()?
        .iter()
        .map(UserMount::from_point)
        .collect();
    prepare_sources(&user)?;

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
    for mut m in defaults {
        let dest = m.destination().to_string_lossy().into_owned();
        // In a user namespace sysfs can only be mounted by the owner of the network namespace,
        // and berthd makes that namespace before the container's user namespace exists: the
        // host's /sys is bound read-only instead (as runc does when the mount is refused).
        if dest == "/sys" && opts.userns.is_some() {
            m = oci_mount(
                "/sys",
                "bind",
                "/sys",
                &["rbind", "nosuid", "noexec", "nodev", "ro"],
            );
        }
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

pub(super) fn bind_kind(source: &str, rw: bool) -> MountKind {
    MountKind::Bind {
        source: source.to_string(),
        rw,
        propagation: "rprivate".into(),
        non_recursive: false,
        read_only_non_recursive: false,
        create_source: false,
        check_source: false,
    }
}

pub(super) fn user_mount_to_oci(m: &UserMount) -> Result<Mount, SpecError> {
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
            ..
        } => {
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

/// Docker's default mounts, `/dev/shm` sized.
pub(super) fn default_mounts(shm_size: i64) -> Vec<Mount> {
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

pub(super) fn oci_mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

pub(super) fn add_option(m: &mut Mount, opt: &str) {
    let mut options = m.options().clone().unwrap_or_default();
    if !options.iter().any(|o| o == opt) {
        options.push(opt.to_string());
    }
    m.set_options(Some(options));
}

pub(super) fn remove_option(m: &mut Mount, opt: &str) {
    let mut options = m.options().clone().unwrap_or_default();
    options.retain(|o| o != opt);
    m.set_options(Some(options));
}

// ---------------------------------------------------------------------------------------------
// Host side effects

/// Bind sources on the host: a missing one is created (as a directory) where the mount allows
/// it (`-v`, `CreateMountpoint`) and an error where it does not (`--mount type=bind`).
pub(super) fn prepare_sources(mounts: &[UserMount]) -> Result<(), SpecError> {
    for m in mounts {
        let MountKind::Bind {
            source,
            create_source,
            check_source,
            ..
        } = &m.kind
        else {
            continue;
        };
        if std::fs::symlink_metadata(source).is_ok() {
            continue;
        }
        if *create_source {
            create_host_dir(source)?;
        } else if *check_source {
            return Err(SpecError::invalid(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {source}"
            )));
        }
    }
    Ok(())
}

/// Docker creates a missing bind source as a directory, 0755, owned by root.
pub(super) fn create_host_dir(path: &str) -> Result<(), SpecError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::test_support::*;

    #[test]
    fn stored_mount_points_and_their_sources() {
        let fx = fixture();
        let cfg = sh();
        let hc = HostConfig::default();
        let missing = fx.dir.path().join("missing");
        let point = |create_source: bool| MountPoint {
            typ: "bind".into(),
            source: missing.to_string_lossy().into_owned(),
            destination: "/m".into(),
            rw: true,
            create_source,
            ..Default::default()
        };
        let build_with_points = |points: &[MountPoint]| {
            let mut o = options(&fx, &cfg, &hc);
            o.mounts = Ok(points);
            build(&o)
        };
        assert_eq!(
            err_text(build_with_points(&[point(false)])),
            format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                missing.display()
            )
        );
        let spec = build_with_points(&[point(true)]).unwrap();
        assert!(missing.is_dir(), "created at start");
        // An old record whose HostConfig does not parse fails the start with the parse error.
        let mut o = options(&fx, &cfg, &hc);
        o.mounts = Err(SpecError::invalid("named volumes are not supported yet: v"));
        assert_eq!(
            err_text(build(&o)),
            "named volumes are not supported yet: v"
        );
        assert_eq!(mount_options(&spec, "/m"), strings(&["rbind", "rprivate"]));
    }

    #[test]
    fn user_mounts_replace_defaults_and_network_files() {
        let fx = fixture();
        let src = fx.dir.path().join("src");
        fs::create_dir(&src).unwrap();
        let my_hosts = fx.dir.path().join("my-hosts");
        fs::write(&my_hosts, "").unwrap();
        let cfg = sh();
        let hc = HostConfig::default();
        // `Binds` entries `<path>:<dest>[:ro]`, as the container layer resolves them.
        let bind = |source: &Path, destination: &str, rw: bool| MountPoint {
            typ: "bind".into(),
            source: source.to_string_lossy().into_owned(),
            destination: destination.into(),
            rw,
            mode: if rw { "" } else { "ro" }.into(),
            propagation: "rprivate".into(),
            create_source: true,
            ..Default::default()
        };
        let points = vec![
            bind(&my_hosts, "/etc/hosts", false),
            bind(&src, "/dev/shm", true),
        ];
        let spec = build_with_mounts(&fx, &cfg, &hc, Ok(points)).unwrap();
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
        let spec = build_with_mounts(&fx, &cfg, &hc, Ok(vec![bind(&src, "/dev", true)])).unwrap();
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
}
