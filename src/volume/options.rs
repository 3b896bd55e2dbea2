//! The `local` driver's options (moby's `volume/local/local_unix.go`): validation with dockerd's
//! texts, and the mount they describe (`type`, `o`, `device`), with `o` split into `MS_*` flags
//! and file-system data the way moby's `mount.Mount` does.

use std::collections::HashMap;
use std::path::Path;

use nix::mount::MsFlags;

use super::VolumeError;

/// The options the `local` driver knows.
const VALID: &[&str] = &["type", "o", "device", "size"];

/// An option that requires others, checked in this order (moby's `mandatoryOpts`).
const MANDATORY: &[(&str, &[&str])] = &[
    ("device", &["type"]),
    ("type", &["device"]),
    ("o", &["device", "type"]),
];

/// Check driver options as moby's `validateOpts` does.
pub fn validate(opts: &HashMap<String, String>) -> Result<(), VolumeError> {
    if opts.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<&String> = opts.keys().collect();
    keys.sort();
    if let Some(bad) = keys.iter().find(|k| !VALID.contains(&k.as_str())) {
        return Err(VolumeError::invalid(format!("invalid option: {bad:?}")));
    }
    if let (Some("cifs"), Some(device)) = (
        opts.get("type").map(String::as_str),
        opts.get("device").filter(|d| !d.is_empty()),
    ) {
        if url_port(device).is_some_and(|p| !p.is_empty()) {
            return Err(VolumeError::invalid(
                "port not allowed in CIFS device URL, include 'port' in 'o='",
            ));
        }
    }
    if let Some(val) = opts.get("size") {
        let size = ram_in_bytes(val)?;
        // berth has no project quotas (moby's xfs quota control): as dockerd without them.
        if size > 0 {
            return Err(VolumeError::invalid(
                "quota size requested but no quota support",
            ));
        }
    }
    for (opt, required) in MANDATORY {
        if opts.contains_key(*opt) {
            if let Some(missing) = required.iter().find(|r| !opts.contains_key(**r)) {
                return Err(VolumeError::invalid(format!(
                    "missing required option: {missing:?}"
                )));
            }
        }
    }
    Ok(())
}

/// The port of a URL-ish device (`//server:445/share`, `smb://u@[::1]:445/s`), as Go's
/// `url.Port()`; `None` without an authority.
fn url_port(device: &str) -> Option<&str> {
    let rest = match device.find("://") {
        Some(i)
            if device[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            &device[i + 3..]
        }
        _ => device.strip_prefix("//")?,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(after) = host.strip_prefix('[') {
        return Some(after.split_once("]:").map_or("", |(_, p)| p));
    }
    Some(host.rsplit_once(':').map_or("", |(_, p)| p))
}

/// For nfs and cifs, an `addr=` host name in `o` is resolved to an address, as dockerd does
/// (the kernel wants an address).
pub fn resolve_addr(fstype: &str, o: &str) -> Result<String, VolumeError> {
    if fstype != "nfs" && fstype != "cifs" {
        return Ok(o.to_string());
    }
    let Some(addr) = o
        .split(',')
        .find_map(|s| s.strip_prefix("addr="))
        .filter(|a| !a.is_empty())
    else {
        return Ok(o.to_string());
    };
    if addr.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(o.to_string());
    }
    use std::net::ToSocketAddrs;
    let ip = (addr, 0)
        .to_socket_addrs()
        .map_err(|e| {
            VolumeError::internal(format!(
                "error resolving passed in network volume address: {e}"
            ))
        })?
        .next()
        .map(|sa| sa.ip())
        .ok_or_else(|| {
            VolumeError::internal(format!(
                "error resolving passed in network volume address: no address for {addr}"
            ))
        })?;
    Ok(o.replacen(&format!("addr={addr}"), &format!("addr={ip}"), 1))
}

/// Whether the options describe a mount (moby's `needsMount`).
pub fn needs_mount(opts: &HashMap<String, String>) -> bool {
    opts.get("type").is_some_and(|t| !t.is_empty())
        || opts.get("device").is_some_and(|d| !d.is_empty())
}

/// go-units' `RAMInBytes`: a number with an optional binary unit (`64m`, `1.5GiB`, `100`).
pub fn ram_in_bytes(s: &str) -> Result<i64, VolumeError> {
    let bad = || VolumeError::invalid(format!("invalid size: '{s}'"));
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    Ok((n * mult) as i64)
}

/// Split a mount's `o` option into flags and the data passed to the file system (moby/sys
/// `mount.parseOptions`).
pub fn parse_mount_options(o: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|s| !s.is_empty()) {
        let (clear, f) = match opt {
            "defaults" => (false, MsFlags::empty()),
            "ro" => (false, MsFlags::MS_RDONLY),
            "rw" => (true, MsFlags::MS_RDONLY),
            "suid" => (true, MsFlags::MS_NOSUID),
            "nosuid" => (false, MsFlags::MS_NOSUID),
            "dev" => (true, MsFlags::MS_NODEV),
            "nodev" => (false, MsFlags::MS_NODEV),
            "exec" => (true, MsFlags::MS_NOEXEC),
            "noexec" => (false, MsFlags::MS_NOEXEC),
            "sync" => (false, MsFlags::MS_SYNCHRONOUS),
            "async" => (true, MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (false, MsFlags::MS_DIRSYNC),
            "remount" => (false, MsFlags::MS_REMOUNT),
            "mand" => (false, MsFlags::MS_MANDLOCK),
            "nomand" => (true, MsFlags::MS_MANDLOCK),
            "atime" => (true, MsFlags::MS_NOATIME),
            "noatime" => (false, MsFlags::MS_NOATIME),
            "diratime" => (true, MsFlags::MS_NODIRATIME),
            "nodiratime" => (false, MsFlags::MS_NODIRATIME),
            "bind" => (false, MsFlags::MS_BIND),
            "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
            "unbindable" => (false, MsFlags::MS_UNBINDABLE),
            "runbindable" => (false, MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            "private" => (false, MsFlags::MS_PRIVATE),
            "rprivate" => (false, MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "shared" => (false, MsFlags::MS_SHARED),
            "rshared" => (false, MsFlags::MS_SHARED | MsFlags::MS_REC),
            "slave" => (false, MsFlags::MS_SLAVE),
            "rslave" => (false, MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "relatime" => (false, MsFlags::MS_RELATIME),
            "norelatime" => (true, MsFlags::MS_RELATIME),
            "strictatime" => (false, MsFlags::MS_STRICTATIME),
            "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
            other => {
                data.push(other);
                continue;
            }
        };
        if clear {
            flags.remove(f);
        } else {
            flags.insert(f);
        }
    }
    (flags, data.join(","))
}

/// Mount `device` of `fstype` at `target` with the `o` options (moby/sys `mount.Mount`:
/// propagation flags in a second call, read-only binds by a remount).
pub fn mount(device: &str, target: &Path, fstype: &str, o: &str) -> Result<(), VolumeError> {
    let (flags, data) = parse_mount_options(o);
    let propagation =
        MsFlags::MS_SHARED | MsFlags::MS_PRIVATE | MsFlags::MS_SLAVE | MsFlags::MS_UNBINDABLE;
    let oflags = flags - propagation;
    let fail = |e: nix::Error| {
        let mut data_shown = data.clone();
        if let Some(pw) = data
            .split(',')
            .find_map(|s| s.strip_prefix("password="))
            .filter(|p| !p.is_empty())
        {
            data_shown = data_shown.replace(&format!("password={pw}"), "password=********");
        }
        // moby/sys mountError's text.
        let mut msg = format!(
            "failed to mount local volume: mount {device}:{}",
            target.display()
        );
        if !oflags.is_empty() {
            msg.push_str(&format!(", flags: {:#x}", oflags.bits()));
        }
        if !data_shown.is_empty() {
            msg.push_str(&format!(", data: {data_shown}"));
        }
        msg.push_str(&format!(": {}", e.desc().to_lowercase()));
        VolumeError::internal(msg)
    };
    let fstype_opt = (!fstype.is_empty() && fstype != "none").then_some(fstype);
    let data_opt = (!data.is_empty()).then_some(data.as_str());
    if !oflags.contains(MsFlags::MS_REMOUNT) || data_opt.is_some() {
        nix::mount::mount(Some(device), target, fstype_opt, oflags, data_opt).map_err(fail)?;
    }
    if flags.intersects(propagation) {
        let pflags = flags & (propagation | MsFlags::MS_REC | MsFlags::MS_SILENT);
        nix::mount::mount(None::<&str>, target, None::<&str>, pflags, None::<&str>)
            .map_err(fail)?;
    }
    if oflags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY) {
        nix::mount::mount(
            None::<&str>,
            target,
            None::<&str>,
            oflags | MsFlags::MS_REMOUNT,
            None::<&str>,
        )
        .map_err(fail)?;
    }
    Ok(())
}

/// Unmount `target`; fine when nothing is mounted there.
pub fn unmount(target: &Path) -> Result<(), VolumeError> {
    match nix::mount::umount2(target, nix::mount::MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) if !is_mounted(target) => Ok(()),
        Err(nix::Error::EBUSY) => nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| {
                VolumeError::internal(format!("unmount {}: {}", target.display(), e.desc()))
            }),
        Err(e) if is_mounted(target) => Err(VolumeError::internal(format!(
            "unmount {}: {}",
            target.display(),
            e.desc()
        ))),
        Err(_) => Ok(()),
    }
}

/// Whether something is mounted at `path`.
pub fn is_mounted(path: &Path) -> bool {
    crate::util::fs::is_mount_point(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validation_uses_dockerds_texts() {
        assert!(validate(&opts(&[])).is_ok());
        assert_eq!(
            validate(&opts(&[("foo", "bar")])).unwrap_err().message(),
            "invalid option: \"foo\""
        );
        assert_eq!(
            validate(&opts(&[("type", "tmpfs")])).unwrap_err().message(),
            "missing required option: \"device\""
        );
        assert_eq!(
            validate(&opts(&[("device", "tmpfs")]))
                .unwrap_err()
                .message(),
            "missing required option: \"type\""
        );
        assert_eq!(
            validate(&opts(&[("o", "size=1m")])).unwrap_err().message(),
            "missing required option: \"device\""
        );
        assert!(validate(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=1m")
        ]))
        .is_ok());
        assert_eq!(
            validate(&opts(&[("size", "10m")])).unwrap_err().message(),
            "quota size requested but no quota support"
        );
        assert_eq!(
            validate(&opts(&[("size", "lots")])).unwrap_err().message(),
            "invalid size: 'lots'"
        );
        assert!(validate(&opts(&[("size", "0")])).is_ok());
    }

    #[test]
    fn cifs_devices_may_not_carry_a_port() {
        let cifs = |dev: &str| validate(&opts(&[("type", "cifs"), ("device", dev)]));
        assert_eq!(
            cifs("//server:445/share").unwrap_err().message(),
            "port not allowed in CIFS device URL, include 'port' in 'o='"
        );
        assert!(cifs("//server/share").is_ok());
        assert!(cifs("//user@server/share").is_ok());
        assert!(cifs("smb://[::1]:445/s").is_err());
        assert!(cifs("//[::1]/s").is_ok());
    }

    #[test]
    fn nfs_addresses_are_resolved() {
        assert_eq!(
            resolve_addr("nfs", "addr=10.0.0.1,rw").unwrap(),
            "addr=10.0.0.1,rw"
        );
        assert_eq!(
            resolve_addr("ext4", "addr=localhost").unwrap(),
            "addr=localhost"
        );
        let r = resolve_addr("nfs", "addr=localhost,nfsvers=4").unwrap();
        assert!(
            r == "addr=127.0.0.1,nfsvers=4" || r == "addr=::1,nfsvers=4",
            "{r}"
        );
    }

    #[test]
    fn sizes_parse_like_go_units() {
        assert_eq!(ram_in_bytes("100").unwrap(), 100);
        assert_eq!(ram_in_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(ram_in_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(ram_in_bytes("2kb").unwrap(), 2048);
        assert!(ram_in_bytes("1x").is_err());
    }

    #[test]
    fn mount_options_split_into_flags_and_data() {
        let (f, d) = parse_mount_options("ro,nosuid,size=1m,noexec,uid=1000");
        assert_eq!(
            f,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC
        );
        assert_eq!(d, "size=1m,uid=1000");
        let (f, d) = parse_mount_options("bind,rw");
        assert_eq!(f, MsFlags::MS_BIND);
        assert_eq!(d, "");
        let (f, _) = parse_mount_options("rbind,rprivate");
        assert_eq!(f, MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_PRIVATE);
    }

    #[test]
    fn needs_mount_only_with_type_or_device() {
        assert!(!needs_mount(&opts(&[])));
        assert!(needs_mount(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs")
        ])));
    }
}
