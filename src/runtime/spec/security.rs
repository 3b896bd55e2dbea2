//! `SecurityOpt` (moby's `parseSecurityOpt`), seccomp and capabilities (moby's `oci/caps`).

use super::*;
use crate::util::strconv::parse_bool;

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
pub(super) const ALL_CAPABILITIES: [&str; 41] = [
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
// Security options

/// What `HostConfig.SecurityOpt` asks for (moby's `parseSecurityOpt`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SecurityOptions {
    pub(super) no_new_privileges: bool,
    /// `unconfined`, `builtin` or a JSON profile.
    pub(super) seccomp: Option<String>,
    pub(super) writable_cgroups: Option<bool>,
    /// `systempaths=unconfined` (the docker CLI turns it into empty Masked/ReadonlyPaths).
    pub(super) systempaths_unconfined: bool,
}

impl SecurityOptions {
    pub(super) fn parse(opts: &[String]) -> Result<Self, SpecError> {
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
                    out.no_new_privileges = parse_bool(v).ok().ok_or_else(invalid)?;
                }
                "writable-cgroups" => {
                    out.writable_cgroups = Some(parse_bool(v).ok().ok_or_else(invalid)?);
                }
                "systempaths" if v == "unconfined" => out.systempaths_unconfined = true,
                _ => return Err(invalid()),
            }
        }
        Ok(out)
    }
}

pub(super) fn seccomp_profile(
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
    // moby's `validateCapabilities`: the add list first, each failure named by its field.
    let named = |field: &'static str| {
        move |e: SpecError| {
            SpecError::new(
                crate::errors::Kinded::kind(&e),
                format!("invalid {field}: {}", e.message()),
            )
        }
    };
    let adds = normalize_caps(adds, &unavailable).map_err(named("CapAdd"))?;
    let drops = normalize_caps(drops, &unavailable).map_err(named("CapDrop"))?;
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
pub(super) fn normalize_caps(
    list: &[String],
    unavailable: &[String],
) -> Result<Vec<String>, SpecError> {
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
pub(super) fn all_capabilities() -> (Vec<String>, Vec<String>) {
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
pub(super) fn effective_cap_mask() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(line.trim(), 16).ok()
}

pub(super) fn to_oci_caps(names: &[String]) -> Result<Capabilities, SpecError> {
    names
        .iter()
        .map(|n| {
            Capability::from_str(n.trim_start_matches("CAP_"))
                .map_err(|_| SpecError::invalid(format!("unknown capability: {}", go_quote(n))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::test_support::*;

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
        assert_eq!(
            err.to_string(),
            r#"invalid CapAdd: unknown capability: "CAP_FOO""#
        );
        assert_eq!(err.kind(), ErrorKind::InvalidParameter);
        let err = with(&[], &["foo"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid CapDrop: unknown capability: "CAP_FOO""#
        );

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
}
