//! Volumes through the docker CLI (and docker-py): create with labels and options, ls filters,
//! inspect, idempotent create, errors, rm, prune, /system/df, and persistence across a restart.

mod common;

use std::path::Path;

use common::{ok, stderr, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli()
}
const NOT_READY: &str = "needs root and the docker CLI";

fn lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

fn inspect(b: &Berthd, name: &str) -> serde_json::Value {
    let out = ok(b.docker_out(&["volume", "inspect", name]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

fn is_mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path))
}

#[test]
fn create_inspect_list_remove() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    assert_eq!(
        ok(b.docker_out(&["volume", "create", "--label", "tier=db", "--label", "solo", "data1"]))
            .trim(),
        "data1"
    );
    let v = inspect(&b, "data1");
    assert_eq!(v["Name"], "data1");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["tier"], "db");
    assert_eq!(v["Labels"]["solo"], "");
    assert_eq!(v["Options"], serde_json::json!({}));
    assert!(v.get("Status").is_none());
    let mp = v["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(
        mp,
        b.data_root()
            .join("volumes/data1/_data")
            .display()
            .to_string()
    );
    assert!(Path::new(&mp).is_dir());
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'));

    // Create is idempotent.
    ok(b.docker_out(&[
        "volume", "create", "--label", "tier=db", "--label", "solo", "data1",
    ]));
    assert_eq!(inspect(&b, "data1")["CreatedAt"], v["CreatedAt"]);

    ok(b.docker_out(&["volume", "create", "other"]));
    let anon = ok(b.docker_out(&["volume", "create"])).trim().to_string();
    assert_eq!(anon.len(), 64);
    assert_eq!(
        inspect(&b, &anon)["Labels"]["com.docker.volume.anonymous"],
        ""
    );

    assert_eq!(
        lines(&ok(b.docker_out(&["volume", "ls", "-q"]))),
        lines(&format!("{anon}\ndata1\nother\n"))
    );
    assert_eq!(
        lines(&ok(
            b.docker_out(&["volume", "ls", "-q", "--filter", "name=ata"])
        )),
        vec!["data1"]
    );
    assert_eq!(
        lines(&ok(b.docker_out(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=tier=db"
        ]))),
        vec!["data1"]
    );
    assert_eq!(
        lines(&ok(b.docker_out(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=solo"
        ]))),
        vec!["data1"]
    );
    assert_eq!(
        lines(&ok(b.docker_out(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "dangling=true"
        ])))
        .len(),
        3
    );
    assert!(
        ok(b.docker_out(&["volume", "ls", "-q", "--filter", "dangling=false"]))
            .trim()
            .is_empty()
    );
    let table = ok(b.docker_out(&["volume", "ls"]));
    assert!(
        table.contains("DRIVER") && table.contains("local     data1"),
        "{table}"
    );
    let bad = b.docker_out(&["volume", "ls", "--filter", "colour=red"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("invalid filter 'colour'"),
        "{}",
        stderr(&bad)
    );

    // /system/df lists volumes with their usage.
    std::fs::write(Path::new(&mp).join("f"), vec![0u8; 1000]).unwrap();
    let df = ok(b.docker_out(&["system", "df", "-v", "--format", "{{json .Volumes}}"]));
    assert!(df.contains("data1"), "{df}");
    let df = ok(b.docker_out(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}} {{.Size}}",
    ]));
    assert!(df.lines().any(|l| l == "Local Volumes 3 0 1kB"), "{df}");
    let info = ok(b.docker_out(&["info", "--format", "{{json .Plugins.Volume}}"]));
    assert_eq!(info.trim(), r#"["local"]"#);

    ok(b.docker_out(&["volume", "rm", "data1"]));
    assert!(!b.data_root().join("volumes/data1").exists());
    let o = b.docker_out(&["volume", "rm", "data1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("get data1: no such volume"),
        "{}",
        stderr(&o)
    );
    ok(b.docker_out(&["volume", "rm", "-f", "data1"]));
    let o = b.docker_out(&["volume", "inspect", "nope"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no such volume"), "{}", stderr(&o));
}

#[test]
fn options_and_errors() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let o = b.docker_out(&["volume", "create", "-o", "colour=red", "bad1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("invalid option: \"colour\""),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["volume", "create", "-o", "type=tmpfs", "bad2"]);
    assert!(
        stderr(&o).contains("missing required option: \"device\""),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["volume", "create", "a/b"]);
    assert!(
        stderr(&o).contains("\"a/b\" includes invalid characters for a local volume name"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["volume", "create", "-d", "nfsplugin", "v9"]);
    assert!(
        stderr(&o)
            .contains("error looking up volume plugin nfsplugin: plugin \"nfsplugin\" not found"),
        "{}",
        stderr(&o)
    );
    assert!(ok(b.docker_out(&["volume", "ls", "-q"])).trim().is_empty());

    ok(b.docker_out(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "tmpv",
    ]));
    let v = inspect(&b, "tmpv");
    assert_eq!(
        v["Options"],
        serde_json::json!({"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    );
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("hello"), "hi").unwrap();
    let dev = format!("device={}", host.path().display());
    ok(b.docker_out(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &dev,
        "bindv",
    ]));
    let v = inspect(&b, "bindv");
    assert_eq!(v["Options"]["o"], "bind");
    // Not mounted until a container uses it; removing it never touches the device.
    let mp = v["Mountpoint"].as_str().unwrap().to_string();
    assert!(!is_mounted(&mp));
    ok(b.docker_out(&["volume", "rm", "bindv", "tmpv"]));
    assert!(host.path().join("hello").exists());

    // An empty body creates an anonymous volume, as dockerd.
    let r = common::http(
        &b.socket,
        "POST /v1.51/volumes/create HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    assert!(r.contains("\"com.docker.volume.anonymous\":\"\""), "{r}");

    // PUT /volumes/{name} is for Swarm cluster volumes.
    let r = common::http(
        &b.socket,
        "PUT /v1.51/volumes/x?version=1 HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("volume update only valid for cluster volumes, but swarm is unavailable"));
}

#[test]
fn prune_anonymous_by_default_and_all() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    ok(b.docker_out(&["volume", "create", "named1"]));
    ok(b.docker_out(&["volume", "create", "--label", "keep=yes", "named2"]));
    let anon = ok(b.docker_out(&["volume", "create"])).trim().to_string();
    let out = ok(b.docker_out(&["volume", "prune", "-f"]));
    assert!(out.contains(&anon), "{out}");
    assert!(!out.contains("named1"), "{out}");
    assert_eq!(
        lines(&ok(b.docker_out(&["volume", "ls", "-q"]))),
        vec!["named1", "named2"]
    );
    let out = ok(b.docker_out(&[
        "volume",
        "prune",
        "-f",
        "--all",
        "--filter",
        "label!=keep=yes",
    ]));
    assert!(out.contains("named1") && !out.contains("named2"), "{out}");
    let out = ok(b.docker_out(&["volume", "prune", "-af"]));
    assert!(out.contains("named2"), "{out}");
    assert!(ok(b.docker_out(&["volume", "ls", "-q"])).trim().is_empty());
    // Clients before API 1.42 prune every unused volume.
    ok(b.docker_out(&["volume", "create", "old1"]));
    let r = common::http(
        &b.socket,
        "POST /v1.41/volumes/prune HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("\"VolumesDeleted\":[\"old1\"]"), "{r}");
}

#[test]
fn volumes_survive_a_restart() {
    require!(ready(), NOT_READY);
    let mut b = Berthd::start(&[]);
    ok(b.docker_out(&["volume", "create", "--label", "a=b", "kept"]));
    let before = inspect(&b, "kept");
    std::fs::write(
        Path::new(before["Mountpoint"].as_str().unwrap()).join("data"),
        "x",
    )
    .unwrap();
    // A half-created volume (no metadata) is cleaned up at start.
    std::fs::create_dir_all(b.data_root().join("volumes/half/_data")).unwrap();
    b.stop();
    b.spawn_with_host(&[]);
    assert_eq!(
        lines(&ok(b.docker_out(&["volume", "ls", "-q"]))),
        vec!["kept"]
    );
    let after = inspect(&b, "kept");
    assert_eq!(after, before);
    assert!(Path::new(after["Mountpoint"].as_str().unwrap())
        .join("data")
        .exists());
    assert!(!b.data_root().join("volumes/half").exists());
}

#[test]
fn events_for_volumes() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let since = common::now_secs();
    ok(b.docker_out(&["volume", "create", "ev1"]));
    ok(b.docker_out(&["volume", "rm", "ev1"]));
    ok(b.docker_out(&["volume", "prune", "-f"]));
    let out = common::events_text(
        &b,
        since,
        &["type=volume"],
        "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}}",
    );
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got[0], "create ev1 local", "{out}");
    assert_eq!(got[1], "destroy ev1 local", "{out}");
    assert!(got[2].starts_with("prune "), "{out}");
}

#[test]
fn docker_py_volumes() {
    require!(ready(), NOT_READY);
    let python = common::docker_py();
    require!(python.is_some(), common::DOCKER_PY_MISSING);
    let python = python.unwrap_or_default();
    let b = Berthd::start(&[]);
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
v = c.volumes.create(name="pyvol", labels={"k": "v"})
assert v.name == "pyvol", v.name
assert v.attrs["Labels"] == {"k": "v"}, v.attrs
assert [x.name for x in c.volumes.list(filters={"label": "k=v"})] == ["pyvol"]
assert c.volumes.get("pyvol").attrs["Driver"] == "local"
try:
    c.volumes.get("missing")
    raise SystemExit("expected NotFound")
except docker.errors.NotFound:
    pass
anon = c.volumes.create()
r = c.volumes.prune()
assert r["VolumesDeleted"] == [anon.name], r
v.remove()
assert c.volumes.list() == []
print("ok")
"#;
    common::run_docker_py(&python, &b, script, &[]);
}
