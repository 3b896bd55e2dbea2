//! Device nodes and device cgroup rules (`Devices`, `DeviceCgroupRules`, privileged).

use super::*;

// ---------------------------------------------------------------------------------------------
// Devices

/// Docker's device cgroup rules (deny everything, then the default devices) and
/// `linux.devices` for `HostConfig.Devices`; every host device and `a *:* rwm` when privileged.
pub(super) fn devices(
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
pub(super) fn check_device_requests(hc: &HostConfig) -> Result<(), SpecError> {
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

pub(super) fn mapping_parts(m: &DeviceMapping) -> (&str, &str, &str) {
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

pub(super) fn device_rule(
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
pub(super) fn parse_device_cgroup_rule(rule: &str) -> Result<LinuxDeviceCgroup, SpecError> {
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

// ---------------------------------------------------------------------------------------------
// Host side effects: reading device nodes under /dev and the paths of `Devices`

/// A device node as `linux.devices` wants it, or `None` for anything else. Like moby, symlinks
/// are not followed here.
pub(super) fn device_from_path(path: &Path) -> std::io::Result<Option<LinuxDevice>> {
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
pub(super) fn devices_from_path(
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
pub(super) fn walk_devices(dir: &Path, out: &mut Vec<LinuxDevice>) {
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
pub(super) fn host_devices(dir: &Path, out: &mut Vec<LinuxDevice>) -> Result<(), SpecError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::test_support::*;

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
}
