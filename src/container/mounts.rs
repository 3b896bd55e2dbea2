//! Docker's mount syntax, parsed once: `HostConfig.Binds` (`src:dst[:opts]`), `Mounts` (bind,
//! tmpfs, volume) and `Tmpfs` become the container's resolved [`MountPoint`]s, stored in its
//! record at create; the runtime builds the spec from those. This follows moby's
//! `volume/mounts/linux_parser.go` (`ParseMountRaw`, `ParseMountSpec`, `linuxValidMountMode`)
//! and `ConvertTmpfsOptions`, with dockerd's error texts.
//!
//! Volumes come out as mount points of type `volume` whose name (empty: anonymous) the
//! container manager resolves against the volume store at create; image `VOLUME`s and
//! `VolumesFrom` are added there too. Image mounts are refused.

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

/// A `Mounts[].Type` dockerd knows, or its 400 (`mount type unknown`). The API checks the raw
/// type with it, since the typed body cannot hold an unknown one.
pub fn check_mount_type(typ: &str) -> Result<(), ContainerError> {
    match typ {
        "bind" | "volume" | "tmpfs" | "npipe" | "cluster" | "image" => Ok(()),
        other => Err(mount_config_err(other, "mount type unknown")),
    }
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
    let modes: Vec<&str> = mode.split(',').collect();
    if !is_bind {
        return Ok(MountPoint {
            typ: "volume".to_string(),
            name: source.to_string(),
            driver: "local".to_string(),
            destination,
            rw: !modes.contains(&"ro"),
            mode: local_volume_mode(mode),
            copy_data: !modes.contains(&"nocopy"),
            ..Default::default()
        });
    }
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

/// moby's `setBindModeIfNull`: a local volume from `Binds` or `Mounts` is shown with the
/// SELinux relabel mode `z` when none was given (berth relabels nothing).
fn local_volume_mode(mode: &str) -> String {
    if mode.is_empty() { "z" } else { mode }.to_string()
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
        Some(MountType::VOLUME) => {
            let vo = m.volume_options.clone().unwrap_or_default();
            let subpath = vo.subpath.clone().unwrap_or_default();
            if !subpath.is_empty() {
                crate::volume::subpath::validate(&subpath).map_err(err)?;
            }
            let driver = vo.driver_config.clone().unwrap_or_default();
            Ok(MountPoint {
                typ: "volume".to_string(),
                mode: local_volume_mode(""),
                name: source.to_string(),
                driver: driver
                    .name
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| "local".to_string()),
                destination,
                rw: !read_only,
                copy_data: !vo.no_copy.unwrap_or(false),
                driver_opts: driver.options.unwrap_or_default().into_iter().collect(),
                labels: vo.labels.unwrap_or_default().into_iter().collect(),
                subpath,
                ..Default::default()
            })
        }
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

/// `Binds`, `Mounts` and `Tmpfs` as mount points, with Docker's duplicate check; bind sources
/// of `Mounts` must exist with `check_source`.
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

/// Everything `POST /containers/create` refuses before writing anything, for `config` merged
/// with the image: the runtime's checks (capabilities, security options, sysctls, …), then the
/// mounts (bind sources of `Mounts` must exist). Returns the user's mount points.
pub fn validate_create(
    config: &ContainerConfig,
    hc: &HostConfig,
) -> Result<Vec<MountPoint>, ContainerError> {
    crate::runtime::spec::validate(config, hc)?;
    resolve(hc, true)
}

/// The image's `VOLUME`s that no user mount covers, as anonymous volumes (copied up).
pub fn add_image_volumes(points: &mut Vec<MountPoint>, config: &ContainerConfig) {
    let mut dests: Vec<&String> = config.volumes.iter().flatten().collect();
    dests.sort();
    for d in dests {
        let destination = inroot::clean(d);
        if check_target(&destination).is_err()
            || points.iter().any(|p| p.destination == destination)
        {
            continue;
        }
        points.push(MountPoint {
            typ: "volume".to_string(),
            driver: "local".to_string(),
            destination,
            rw: true,
            copy_data: true,
            ..Default::default()
        });
    }
}

/// One `VolumesFrom` entry, `container[:ro|:rw]` (moby's `ParseVolumesFrom`): the container
/// and the read-write override.
pub fn parse_volumes_from(spec: &str) -> Result<(&str, Option<bool>), ContainerError> {
    match spec.split_once(':') {
        None => Ok((spec, None)),
        Some((id, mode)) => match mode {
            "rw" => Ok((id, Some(true))),
            "ro" => Ok((id, Some(false))),
            _ => Err(ContainerError::invalid(format!(
                "invalid mode for volumes-from: {mode}"
            ))),
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::{ErrorKind, Kinded};
    use crate::runtime::spec::test_support as support;
    use crate::runtime::spec::SpecError;
    use bollard_stubs::models::{MountBindOptions, MountTmpfsOptions};
    use std::collections::HashMap;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T, ContainerError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidParameter, "{e}");
        e.to_string()
    }

    /// `hc`'s mounts resolved as at create (sources checked), as the runtime gets them.
    fn resolved(hc: &HostConfig) -> Result<Vec<MountPoint>, SpecError> {
        resolve(hc, true).map_err(|e| SpecError::new(e.kind(), e.to_string()))
    }

    // End to end: Docker's mount syntax parsed here, then the runtime's spec built from it.

    #[test]
    fn binds_in_the_spec() {
        let fx = support::fixture();
        let src = fx.dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let created = fx.dir.path().join("made/by/bind");
        let cfg = support::sh();
        let hc = HostConfig {
            binds: Some(vec![
                format!("{}:/data:ro", src.display()),
                format!("{}:/new/", created.display()),
                format!("{}:/a/b/c:rshared,z", src.display()),
                format!("{}:/a", src.display()),
            ]),
            ..Default::default()
        };
        let spec = support::build_with_mounts(&fx, &cfg, &hc, resolved(&hc)).unwrap();
        assert!(created.is_dir(), "a missing -v source is created");
        assert_eq!(
            support::mount_options(&spec, "/data"),
            strings(&["rbind", "rro", "rprivate"])
        );
        assert_eq!(
            support::mount_options(&spec, "/new"),
            strings(&["rbind", "rprivate"])
        );
        assert_eq!(
            support::mount_options(&spec, "/a/b/c"),
            strings(&["rbind", "rshared"])
        );
        let d = support::destinations(&spec);
        let pos = |p: &str| d.iter().position(|x| x == p).unwrap();
        assert!(pos("/a") < pos("/a/b/c"), "parents first: {d:?}");
        assert!(pos("/dev/shm") < pos("/data"), "defaults first: {d:?}");
        assert_eq!(
            support::mount(&spec, "/data").unwrap().source().as_deref(),
            Some(src.as_path())
        );
    }

    #[test]
    fn mounts_and_tmpfs_in_the_spec() {
        let fx = support::fixture();
        let src = fx.dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let cfg = support::sh();
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
        let spec = support::build_with_mounts(&fx, &cfg, &hc, resolved(&hc)).unwrap();
        assert_eq!(
            support::mount_options(&spec, "/ro"),
            strings(&["rbind", "rro", "rprivate"])
        );
        let cache = support::mount(&spec, "/cache").unwrap();
        assert_eq!(cache.typ().as_deref(), Some("tmpfs"));
        assert_eq!(
            support::mount_options(&spec, "/cache"),
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
            support::mount_options(&spec, "/run"),
            strings(&["nosuid", "nodev", "rprivate", "rw", "size=64m", "noexec"])
        );
        assert_eq!(
            support::mount_options(&spec, "/tmp"),
            strings(&["noexec", "nosuid", "nodev", "rprivate"])
        );

        let with_mount = |m: ApiMount| {
            let hc = HostConfig {
                mounts: Some(vec![m]),
                ..Default::default()
            };
            support::build_with_mounts(&fx, &cfg, &hc, resolved(&hc))
        };
        let bind = |src: &str, dst: &str| ApiMount {
            target: Some(dst.into()),
            source: Some(src.into()),
            typ: Some(MountType::BIND),
            ..Default::default()
        };
        assert_eq!(
            support::err_text(with_mount(bind("/nonexistent-berth", "/x"))),
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
        assert!(support::mount(&spec, "/x").is_some());
        assert!(missing.is_dir());
    }

    #[test]
    fn binds_resolve_like_dockerd() {
        let hc = HostConfig {
            binds: Some(strings(&[
                "/tmp/x/:/data:ro,rprivate",
                "/src:/a/b/:rshared,z",
            ])),
            tmpfs: Some(HashMap::from([(
                "/run/".to_string(),
                "size=1m,ro".to_string(),
            )])),
            ..Default::default()
        };
        let m = resolve(&hc, true).unwrap();
        assert_eq!(
            m,
            vec![
                MountPoint {
                    typ: "bind".into(),
                    source: "/tmp/x".into(),
                    destination: "/data".into(),
                    rw: false,
                    mode: "ro,rprivate".into(),
                    propagation: "rprivate".into(),
                    create_source: true,
                    ..Default::default()
                },
                MountPoint {
                    typ: "bind".into(),
                    source: "/src".into(),
                    destination: "/a/b".into(),
                    rw: true,
                    mode: "rshared,z".into(),
                    propagation: "rshared".into(),
                    create_source: true,
                    ..Default::default()
                },
                MountPoint {
                    typ: "tmpfs".into(),
                    destination: "/run".into(),
                    rw: false,
                    mode: "size=1m,ro".into(),
                    tmpfs_options: "size=1m,ro".into(),
                    ..Default::default()
                },
            ]
        );
        // Stored in the record as JSON and read back.
        let json = serde_json::to_string(&m[0]).unwrap();
        assert_eq!(
            json,
            r#"{"Type":"bind","Source":"/tmp/x","Destination":"/data","RW":false,"Mode":"ro,rprivate","Propagation":"rprivate","CreateSource":true}"#
        );
        assert_eq!(serde_json::from_str::<MountPoint>(&json).unwrap(), m[0]);
    }

    #[test]
    fn bind_errors() {
        let src = std::path::Path::new("/src");
        let bind = |b: &str| {
            resolve(
                &HostConfig {
                    binds: Some(strings(&[b])),
                    ..Default::default()
                },
                true,
            )
        };
        let v = bind("myvol:/data").unwrap();
        assert_eq!(
            (
                v[0].typ.as_str(),
                v[0].name.as_str(),
                v[0].destination.as_str()
            ),
            ("volume", "myvol", "/data")
        );
        assert!(v[0].rw && v[0].copy_data);
        let v = bind("myvol:/data:ro,nocopy").unwrap();
        assert!(!v[0].rw && !v[0].copy_data);
        let v = bind("/data").unwrap();
        assert_eq!(
            (
                v[0].typ.as_str(),
                v[0].name.as_str(),
                v[0].destination.as_str()
            ),
            ("volume", "", "/data"),
            "an anonymous volume is named at create"
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
        assert_eq!(err_text(resolve(&hc, true)), "Duplicate mount point: /data");
        let hc = HostConfig {
            binds: Some(vec![format!("{}:/run", src.display())]),
            tmpfs: Some(HashMap::from([("/run".to_string(), String::new())])),
            ..Default::default()
        };
        assert_eq!(err_text(resolve(&hc, true)), "Duplicate mount point: /run");
    }

    #[test]
    fn mount_errors() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        let with_mount = |m: ApiMount| {
            resolve(
                &HostConfig {
                    mounts: Some(vec![m]),
                    ..Default::default()
                },
                true,
            )
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
        // Not checked for an old record's mounts, nor with CreateMountpoint.
        assert!(resolve(
            &HostConfig {
                mounts: Some(vec![bind("/nonexistent-berth", "/x")]),
                ..Default::default()
            },
            false
        )
        .is_ok());
        let created = with_mount(ApiMount {
            bind_options: Some(MountBindOptions {
                create_mountpoint: Some(true),
                ..Default::default()
            }),
            ..bind("/nonexistent-berth", "/x")
        })
        .unwrap();
        assert!(created[0].create_source);
        assert_eq!(
            err_text(with_mount(bind(&src.to_string_lossy(), "x"))),
            "invalid mount config for type \"bind\": invalid mount path: 'x' mount path must be absolute"
        );
        assert_eq!(
            err_text(with_mount(bind("rel", "/x"))),
            "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"
        );
        let v = with_mount(ApiMount {
            target: Some("/v".into()),
            source: Some("vol".into()),
            typ: Some(MountType::VOLUME),
            read_only: Some(true),
            volume_options: Some(bollard_stubs::models::MountVolumeOptions {
                no_copy: Some(true),
                labels: Some(HashMap::from([("a".to_string(), "b".to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((v[0].typ.as_str(), v[0].name.as_str()), ("volume", "vol"));
        assert!(!v[0].rw && !v[0].copy_data);
        assert_eq!(v[0].labels.get("a").map(String::as_str), Some("b"));
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
            err_text(resolve(&hc, true)),
            "invalid tmpfs option \"bogus\""
        );
        let hc = HostConfig {
            tmpfs: Some(HashMap::from([("t".to_string(), String::new())])),
            ..Default::default()
        };
        assert_eq!(
            err_text(resolve(&hc, true)),
            "invalid mount path: 't' mount path must be absolute"
        );
        let hc = HostConfig {
            binds: Some(vec![format!("{}:/m", src.display())]),
            mounts: Some(vec![bind(&src.to_string_lossy(), "/m/")]),
            ..Default::default()
        };
        assert_eq!(err_text(resolve(&hc, true)), "Duplicate mount point: /m/");
    }

    #[test]
    fn volumes_from_and_image_volumes() {
        assert_eq!(parse_volumes_from("other").unwrap(), ("other", None));
        assert_eq!(
            parse_volumes_from("other:ro").unwrap(),
            ("other", Some(false))
        );
        assert_eq!(
            parse_volumes_from("other:rw").unwrap(),
            ("other", Some(true))
        );
        assert_eq!(
            err_text(parse_volumes_from("other:x")),
            "invalid mode for volumes-from: x"
        );
        let mut points = resolve(
            &HostConfig {
                binds: Some(strings(&["/src:/data"])),
                ..Default::default()
            },
            false,
        )
        .unwrap();
        add_image_volumes(
            &mut points,
            &ContainerConfig {
                volumes: Some(strings(&["/data", "/var/lib/x/"])),
                ..Default::default()
            },
        );
        assert_eq!(points.len(), 2, "a user mount covers /data");
        assert_eq!(
            (
                points[1].typ.as_str(),
                points[1].name.as_str(),
                points[1].destination.as_str()
            ),
            ("volume", "", "/var/lib/x")
        );
        assert!(points[1].copy_data);
    }
}
