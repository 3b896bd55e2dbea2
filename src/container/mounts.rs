//! Docker's mount syntax, parsed once: `HostConfig.Binds` (`src:dst[:opts]`), `Mounts` (bind,
//! tmpfs, volume) and `Tmpfs` become the container's resolved [`MountPoint`]s, stored in its
//! record at create; the runtime builds the spec from those. This follows moby's
//! `volume/mounts/linux_parser.go` (`ParseMountRaw`, `ParseMountSpec`, `linuxValidMountMode`)
//! and `ConvertTmpfsOptions`, with dockerd's error texts.
//!
//! Named and anonymous volumes, image mounts and `VolumesFrom` are refused (no volume store
//! yet); they will hook into [`resolve`].

use std::collections::BTreeMap;
use std::fmt;

use bollard_stubs::models::{ContainerConfig, HostConfig, Mount as ApiMount, MountType};

use crate::runtime::spec::tmpfs_options;
pub use crate::runtime::spec::MountPoint;
use crate::util::inroot;

use super::ContainerError;

/// Go's `%q`, close enough for error messages.
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

fn mount_config_err(typ: &str, msg: impl fmt::Display) -> ContainerError {
    ContainerError::invalid(format!(
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
    if inroot::clean(target) == "/" {
        return Err(ROOT_TARGET.to_string());
    }
    if !target.starts_with('/') {
        return Err(invalid_mount_path(target));
    }
    Ok(())
}

/// One `HostConfig.Binds` entry, `[src:]dst[:mode]` (moby's `ParseMountRaw`).
pub fn parse_bind(raw: &str) -> Result<MountPoint, ContainerError> {
    let invalid_spec = || ContainerError::invalid(format!("invalid volume specification: '{raw}'"));
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
        return Err(ContainerError::invalid(format!("invalid mode: {mode}")));
    }
    let is_bind = source.starts_with('/');
    let typ = if is_bind { "bind" } else { "volume" };
    let wrap = |msg: String| {
        ContainerError::invalid(format!(
            "invalid volume specification: '{raw}': invalid mount config for type {}: {msg}",
            go_quote(typ)
        ))
    };
    check_target(target).map_err(wrap)?;
    let destination = inroot::clean(target);
    if !is_bind {
        return Err(if source.is_empty() {
            ContainerError::invalid(format!(
                "anonymous volumes are not supported yet: {destination}"
            ))
        } else {
            ContainerError::invalid(format!("named volumes are not supported yet: {source}"))
        });
    }
    let modes: Vec<&str> = mode.split(',').collect();
    let propagation = modes
        .iter()
        .find(|m| PROPAGATION_MODES.contains(m))
        .unwrap_or(&"rprivate")
        .to_string();
    Ok(MountPoint {
        typ: "bind".to_string(),
        source: inroot::clean(source),
        destination,
        rw: !modes.contains(&"ro"),
        mode: mode.to_string(),
        propagation,
        create_source: true,
        ..Default::default()
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
pub fn parse_mount_spec(m: &ApiMount, check_source: bool) -> Result<MountPoint, ContainerError> {
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
    let destination = inroot::clean(target);
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
                return Err(ContainerError::invalid(
                    "mount options conflict: !ReadOnly && BindOptions.ReadOnlyNonRecursive",
                ));
            }
            if !read_only && bo.read_only_force_recursive.unwrap_or(false) {
                return Err(ContainerError::invalid(
                    "mount options conflict: !ReadOnly && BindOptions.ReadOnlyForceRecursive",
                ));
            }
            let propagation = bo
                .propagation
                .map(|p| p.to_string())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "rprivate".to_string());
            Ok(MountPoint {
                typ: "bind".to_string(),
                source: inroot::clean(source),
                destination,
                rw: !read_only,
                propagation,
                non_recursive: bo.non_recursive.unwrap_or(false),
                read_only_non_recursive: ro_non_recursive,
                create_source: create,
                ..Default::default()
            })
        }
        Some(MountType::TMPFS) => {
            if !source.is_empty() {
                return Err(extra("Source"));
            }
            let data = tmpfs_data(m.tmpfs_options.as_ref(), read_only).map_err(err)?;
            Ok(MountPoint {
                typ: "tmpfs".to_string(),
                destination,
                rw: !read_only,
                tmpfs_options: data,
                ..Default::default()
            })
        }
        Some(MountType::VOLUME) => Err(if source.is_empty() {
            ContainerError::invalid(format!(
                "anonymous volumes are not supported yet: {destination}"
            ))
        } else {
            ContainerError::invalid(format!("named volumes are not supported yet: {source}"))
        }),
        Some(MountType::IMAGE) => Err(ContainerError::invalid(format!(
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
/// Docker's duplicate check.
pub fn resolve(hc: &HostConfig, check_source: bool) -> Result<Vec<MountPoint>, ContainerError> {
    let mut out: Vec<MountPoint> = Vec::new();
    let dup = |d: &str| ContainerError::invalid(format!("Duplicate mount point: {d}"));
    let tmpfs: BTreeMap<String, String> = hc
        .tmpfs
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut tmpfs_dests = Vec::new();
    for dest in tmpfs.keys() {
        check_target(dest).map_err(ContainerError::invalid)?;
        tmpfs_dests.push(inroot::clean(dest));
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
        tmpfs_options(data).map_err(ContainerError::from)?;
        out.push(MountPoint {
            typ: "tmpfs".to_string(),
            destination: dest,
            rw: !data.split(',').any(|o| o == "ro"),
            mode: data.clone(),
            tmpfs_options: data.clone(),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Every mount of the spec, in Docker's order: the defaults (minus those a user mount replaces)
/// and the init binary, then the user's, network files and IPC mounts sorted by depth.
/// Everything `POST /containers/create` refuses before writing anything, for `config` merged
/// with the image: the runtime's checks (capabilities, security options, sysctls, …), then the
/// mounts (bind sources of `Mounts` must exist) and `VolumesFrom`.
pub fn validate_create(
    config: &ContainerConfig,
    hc: &HostConfig,
) -> Result<Vec<MountPoint>, ContainerError> {
    crate::runtime::spec::validate(config, hc)?;
    check_volumes_from(hc)?;
    resolve(hc, true)
}

/// The container's mount points: those stored in its record, or, for a record written before
/// mount points were stored, `HostConfig` parsed again (sources not checked).
pub fn of_record(
    stored: Option<&[MountPoint]>,
    hc: &HostConfig,
) -> Result<Vec<MountPoint>, ContainerError> {
    match stored {
        Some(list) => Ok(list.to_vec()),
        None => resolve(hc, false),
    }
}

/// `VolumesFrom` needs volumes, which berth does not have yet.
pub fn check_volumes_from(hc: &HostConfig) -> Result<(), ContainerError> {
    match hc.volumes_from.iter().flatten().next() {
        Some(v) => Err(ContainerError::invalid(format!(
            "volumes-from is not supported yet: {v}"
        ))),
        None => Ok(()),
    }
}
