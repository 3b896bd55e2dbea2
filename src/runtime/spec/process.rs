//! The OCI `process`: arguments, environment, user, working directory, rlimits.

use super::*;

// ---------------------------------------------------------------------------------------------
// Process

pub(super) struct ProcessParts<'a> {
    pub(super) args: Vec<String>,
    pub(super) env: Vec<String>,
    pub(super) user: &'a str,
    pub(super) cwd: &'a str,
    pub(super) tty: bool,
    pub(super) console: Option<(u64, u64)>,
    pub(super) caps: &'a [String],
}

pub(super) fn make_process(
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
        inroot::clean(parts.cwd)
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

pub(super) fn oom_score_adj(hc: &HostConfig) -> Result<i32, SpecError> {
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
pub(super) fn hostname(opts: &SpecOptions) -> String {
    match opts.config.hostname.as_deref() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => opts.id.chars().take(12).collect(),
    }
}

/// moby's `CreateDaemonEnvironment`: `PATH`, `HOSTNAME` and (with a TTY) `TERM`, overridden
/// by the container's `Env`.
pub(super) fn daemon_env(config_env: &[String], hostname: &str, tty: bool) -> Vec<String> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH_ENV}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".to_string());
    }
    replace_or_append(env, config_env)
}

pub(super) fn check_working_dir(wd: &str) -> Result<(), SpecError> {
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
pub(super) fn rlimits(hc: &HostConfig) -> Result<Vec<PosixRlimit>, SpecError> {
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

pub(super) fn rlimit(typ: PosixRlimitType, soft: u64, hard: u64) -> Result<PosixRlimit, SpecError> {
    PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(build_err)
}

pub(super) fn own_nofile_hard_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (r == 0).then_some(lim.rlim_max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::test_support::*;

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
}
