//! Create-time validation through the docker CLI: what the runtime would refuse at start
//! (capabilities, security options, sysctls, mounts) fails `docker create` / `docker run` with
//! dockerd's 400 text (exit code 125 for `docker run`, 1 for `docker create`), leaving no
//! container behind; option-bearing binds show as dockerd shows them in `docker inspect`;
//! records written before mount points were stored still inspect and start.

mod common;

use common::{berthd_with_busybox, inspect, ok, stderr, stdout, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

/// `docker <args> busybox true` must fail at create with `message` from the daemon: exit code
/// 125 for `docker run` (the CLI's code for a daemon error there), 1 for `docker create`.
fn refused(b: &Berthd, args: &[&str], message: &str) {
    let mut args = args.to_vec();
    args.extend(["busybox", "true"]);
    let o = b.docker_out(&args);
    let code = if args[0] == "run" { 125 } else { 1 };
    assert_eq!(
        o.status.code(),
        Some(code),
        "docker {args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains(&format!("Error response from daemon: {message}")),
        "docker {args:?}: {err}"
    );
}

/// `POST /containers/create` with `host_config` (JSON members) must answer 400 with `message`
/// (as it appears JSON-encoded).
fn api_refused(b: &Berthd, host_config: &str, message: &str) {
    let body = format!(r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{{host_config}}}}}"#);
    let resp = common::http(
        &b.socket,
        &format!(
            "POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains(message), "{resp}");
}

#[test]
fn bad_settings_fail_at_create() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let cases: [(&[&str], &str); 8] = [
        (
            &["create", "--cpuset-cpus", "abc"],
            "Invalid value abc for cpuset cpus: invalid format: abc",
        ),
        (
            &["create", "--cpuset-cpus", "9999"],
            "Requested CPUs are not available - requested 9999, available: ",
        ),
        (
            &["create", "--cap-add", "NOPE"],
            "invalid CapAdd: unknown capability: \"CAP_NOPE\"",
        ),
        (
            &["create", "--cap-drop", "bogus"],
            "invalid CapDrop: unknown capability: \"CAP_BOGUS\"",
        ),
        (
            &["create", "--security-opt", "nope=1"],
            "invalid --security-opt 2: \"nope=1\"",
        ),
        (
            &["create", "--network", "host", "--sysctl", "net.ipv4.ip_forward=1"],
            "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace",
        ),
        (
            &[
                "create",
                "--mount",
                "type=bind,source=/nonexistent-berth-src,target=/data",
            ],
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-berth-src",
        ),
        (
            &["create", "-v", "/tmp:relative"],
            "invalid volume specification: '/tmp:relative': invalid mount config for type \"bind\": invalid mount path: 'relative' mount path must be absolute",
        ),
    ];
    for (args, message) in cases {
        refused(&b, args, message);
        let mut run = args.to_vec();
        run[0] = "run";
        refused(&b, &run, message);
    }
    // Through the API as well: dockerd's 400 (moby wraps the lookup in `InvalidParameter`);
    // a 404 would make the CLI take it for a missing image and pull.
    let body =
        r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"VolumesFrom":["nosuch-berth"]}}"#;
    let resp = common::http(
        &b.socket,
        &format!(
            "POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("No such container: nosuch-berth"), "{resp}");
    // The CLI itself refuses `--security-opt bogus` and sysctls outside its list; the API
    // gets dockerd's texts.
    api_refused(
        &b,
        r#""SecurityOpt":["bogus"]"#,
        r#"invalid --security-opt 1: \"bogus\""#,
    );
    api_refused(
        &b,
        r#""Sysctls":{"kernel.bogus":"1"}"#,
        r#"sysctl \"kernel.bogus\" is not in a separate kernel namespace"#,
    );
    // `--entrypoint ""` resets the image's entrypoint and does not take its Cmd (moby's
    // `merge`): without a command of its own the create fails.
    ok(b.docker_out(&["create", "--name", "base", "busybox", "true"]));
    ok(b.docker_out(&[
        "commit",
        "-c",
        "ENTRYPOINT [\"echo\"]",
        "-c",
        "CMD [\"from-image\"]",
        "base",
        "withcmd",
    ]));
    ok(b.docker_out(&["rm", "base"]));
    assert_eq!(
        ok(b.docker_out(&["run", "--rm", "withcmd"])),
        "from-image\n"
    );
    let o = b.docker_out(&["create", "--entrypoint", "", "withcmd"]);
    assert!(
        !o.status.success() && stderr(&o).contains("no command specified"),
        "{}",
        stderr(&o)
    );
    // `platform`: the image's own is fine; another is moby's 404 (through the API: the CLI
    // would go and pull). A malformed one is a 400.
    let arch = ok(b.docker_out(&["image", "inspect", "-f", "{{.Architecture}}", "busybox"]));
    let o = b.docker_out(&[
        "create",
        "--platform",
        &format!("linux/{}", arch.trim()),
        "busybox",
        "true",
    ]);
    let made = ok(o);
    ok(b.docker_out(&["rm", made.trim()]));
    let other = if arch.trim() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let resp = common::http(
        &b.socket,
        &format!(
            "POST /v1.51/containers/create?platform=linux/{other} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 34\r\nConnection: close\r\n\r\n{{\"Image\":\"busybox\",\"Cmd\":[\"true\"]}}"
        ),
    )
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(
        resp.contains(&format!(
            "image with reference busybox was found but does not match the specified platform: wanted linux/{other}, actual: linux/{}",
            arch.trim()
        )),
        "{resp}"
    );
    let resp = common::http(
        &b.socket,
        "POST /v1.51/containers/create?platform=linux/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 34\r\nConnection: close\r\n\r\n{\"Image\":\"busybox\",\"Cmd\":[\"true\"]}",
    )
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let ps = ok(b.docker_out(&["ps", "-a", "-q"]));
    assert_eq!(ps.trim(), "", "no container is left behind");
    let out = ok(b.docker_out(&["run", "--rm", "--entrypoint", "", "withcmd", "echo", "hi"]));
    assert_eq!(out, "hi\n");
}

#[test]
fn binds_with_options_show_in_inspect() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let src = b.dir.path().join("bind-src");
    std::fs::create_dir(&src).unwrap();
    let bind = format!("{}:/data:ro,rprivate", src.display());
    let id = ok(b.docker_out(&["create", "-v", &bind, "busybox", "true"]));
    let id = id.trim();
    let mounts: serde_json::Value =
        serde_json::from_str(&inspect(&b, id, "{{json .Mounts}}")).unwrap();
    assert_eq!(
        mounts,
        serde_json::json!([{
            "Type": "bind",
            "Source": src.to_string_lossy(),
            "Destination": "/data",
            "Mode": "ro,rprivate",
            "RW": false,
            "Propagation": "rprivate",
        }])
    );
    // The container starts with it, read-only.
    let o = b.docker_out(&["start", "-a", id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = ok(b.docker_out(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "touch /data/x 2>/dev/null && echo writable || echo read-only",
    ]));
    assert_eq!(out, "read-only\n");
}

#[test]
fn records_without_mount_points_keep_working() {
    require!(ready(), NOT_READY);
    let mut b = berthd_with_busybox(&[]);
    let src = b.dir.path().join("old-src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"old\n").unwrap();
    let bind = format!("{}:/data:ro", src.display());
    let id = ok(b.docker_out(&[
        "create", "--name", "old", "-v", &bind, "busybox", "cat", "/data/f",
    ]));
    let id = id.trim().to_string();
    let before = inspect(&b, "old", "{{json .Mounts}}");
    // Make it a record written before mount points were stored.
    b.stop();
    let path = b
        .data_root()
        .join("containers")
        .join(&id)
        .join("config.v2.json");
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(record.get("MountPoints").is_some(), "{record}");
    record.as_object_mut().unwrap().remove("MountPoints");
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    b.spawn_with_host(&[]);
    assert_eq!(inspect(&b, "old", "{{json .Mounts}}"), before);
    let o = b.docker_out(&["start", "-a", "old"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "old\n");
}

#[test]
fn a_sparse_create_body_inspects_with_every_host_config_field() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    // As docker-py sends it: only what was asked for, keys in any case, `Cmd` as a string.
    let body = r#"{"image":"busybox","Cmd":"true","HostConfig":{"memory":67108864}}"#;
    let resp = common::http(
        &b.socket,
        &format!(
            "POST /containers/create?name=sparse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let hc: serde_json::Value =
        serde_json::from_str(&inspect(&b, "sparse", "{{json .HostConfig}}")).unwrap();
    // Set, recorded at create, and Go's zero values for the rest (moby's HostConfig has
    // no `omitempty` on these).
    assert_eq!(hc["Memory"], 67108864, "{hc}");
    assert_eq!(hc["IpcMode"], "private", "{hc}");
    assert!(
        hc["CgroupnsMode"] == "host" || hc["CgroupnsMode"] == "private",
        "{hc}"
    );
    assert_eq!(hc["CpuShares"], 0, "{hc}");
    assert_eq!(hc["Privileged"], false, "{hc}");
    assert_eq!(hc["OomKillDisable"], false, "{hc}");
    assert_eq!(hc["ConsoleSize"], serde_json::json!([0, 0]), "{hc}");
    for k in [
        "Binds",
        "PortBindings",
        "CapAdd",
        "Dns",
        "Devices",
        "Ulimits",
        "PidsLimit",
    ] {
        assert!(hc.get(k).is_some_and(|v| v.is_null()), "{k}: {hc}");
    }
    assert_eq!(inspect(&b, "sparse", "{{json .Config.Cmd}}"), r#"["true"]"#);
    // The container's Config likewise.
    let c: serde_json::Value =
        serde_json::from_str(&inspect(&b, "sparse", "{{json .Config}}")).unwrap();
    assert_eq!(c["Tty"], false, "{c}");
    assert_eq!(c["Domainname"], "", "{c}");
    assert!(c.get("Entrypoint").is_some_and(|v| v.is_null()), "{c}");
    assert!(c.get("Labels").is_some_and(|v| v.is_object()), "{c}");
    // No change yet: Go's nil slice, `null`.
    let resp = common::http(
        &b.socket,
        "GET /containers/sparse/changes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.trim_end().ends_with("null"),
        "{resp}"
    );
}

/// What compose 1.29's suite found against dockerd 20.10: old clients' IPC default, the
/// container-wide MAC kept in `Config`, `--tmpfs` not listed in `Mounts`, storage options
/// refused rather than ignored.
#[test]
fn old_clients_defaults_and_what_inspect_lists() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let create = |version: &str, body: &str| -> serde_json::Value {
        let resp = common::http(
            &b.socket,
            &format!(
                "POST /{version}/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
        .unwrap();
        assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
        let json = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
        serde_json::from_str(json.trim()).unwrap()
    };
    // moby's router: below API 1.40 an empty IPC mode is `shareable`, from 1.40 `private`.
    let old = create(
        "v1.39",
        r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{}}"#,
    );
    let new = create(
        "v1.40",
        r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{}}"#,
    );
    assert_eq!(
        inspect(&b, old["Id"].as_str().unwrap(), "{{.HostConfig.IpcMode}}"),
        "shareable"
    );
    assert_eq!(
        inspect(&b, new["Id"].as_str().unwrap(), "{{.HostConfig.IpcMode}}"),
        "private"
    );
    // The container-wide MAC (API 1.38, as compose 1.29 sends it) shows in `Config`.
    let mac = create(
        "v1.38",
        r#"{"Image":"busybox","Cmd":["true"],"MacAddress":"02:42:ac:11:65:43","HostConfig":{}}"#,
    );
    let id = mac["Id"].as_str().unwrap();
    assert_eq!(
        inspect(&b, id, "{{.Config.MacAddress}}"),
        "02:42:ac:11:65:43"
    );
    // `--tmpfs` is no mount point of dockerd's; `--mount type=tmpfs` is.
    ok(b.docker_out(&[
        "create",
        "--name",
        "tm",
        "--tmpfs",
        "/x",
        "--mount",
        "type=tmpfs,dst=/y",
        "busybox",
        "true",
    ]));
    assert_eq!(
        inspect(
            &b,
            "tm",
            "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}"
        ),
        "tmpfs:/y"
    );
    assert_eq!(
        inspect(&b, "tm", "{{json .HostConfig.Tmpfs}}"),
        r#"{"/x":""}"#
    );
    // A size limit berth cannot apply is refused, as dockerd's overlay2 without project quotas.
    refused(
        &b,
        &["create", "--storage-opt", "size=1G"],
        "--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
    );
}
