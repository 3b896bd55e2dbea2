//! Create-time validation through the docker CLI: what the runtime would refuse at start
//! (capabilities, security options, sysctls, mounts) fails `docker create` / `docker run` with
//! dockerd's 400 text and exit code 125, leaving no container behind; option-bearing binds show
//! as dockerd shows them in `docker inspect`.

mod common;

use common::{berthd_with_busybox, inspect, ok, stderr, stdout, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

/// `docker <args>` must fail at create with exit code 125 and `message` from the daemon.
fn refused(b: &Berthd, args: &[&str], message: &str) {
    let o = b.docker_out(args);
    assert_eq!(
        o.status.code(),
        Some(125),
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

#[test]
fn bad_settings_fail_at_create() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let cases: [(&[&str], &str); 7] = [
        (
            &["create", "--cap-add", "NOPE", "busybox"],
            "unknown capability: \"CAP_NOPE\"",
        ),
        (
            &["run", "--cap-drop", "bogus", "busybox", "true"],
            "unknown capability: \"CAP_BOGUS\"",
        ),
        (
            &["create", "--security-opt", "bogus", "busybox"],
            "invalid --security-opt 1: \"bogus\"",
        ),
        (
            &["create", "--security-opt", "seccomp:", "--security-opt", "nope=1", "busybox"],
            "invalid --security-opt 2: \"nope=1\"",
        ),
        (
            &["create", "--sysctl", "kernel.bogus=1", "busybox"],
            "sysctl \"kernel.bogus\" is not in a separate kernel namespace",
        ),
        (
            &[
                "create",
                "--mount",
                "type=bind,source=/nonexistent-berth-src,target=/data",
                "busybox",
            ],
            "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-berth-src",
        ),
        (
            &["create", "-v", "/tmp:relative", "busybox"],
            "invalid volume specification: '/tmp:relative': invalid mount config for type \"bind\": invalid mount path: 'relative' mount path must be absolute",
        ),
    ];
    for (args, message) in cases {
        refused(&b, args, message);
    }
    refused(
        &b,
        &["create", "-v", "myvol:/data", "busybox"],
        "named volumes are not supported yet: myvol",
    );
    let ps = ok(b.docker_out(&["ps", "-a", "-q"]));
    assert_eq!(ps.trim(), "", "no container is left behind");
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
