//! What clients other than `docker run` meet (issue #15): the Swarm endpoints on a node that is
//! in no swarm, `HostConfig.Runtime`, `docker load` of something that is not an image archive,
//! and `GET /distribution/{name}/json` through a registry mirror — each through the docker CLI,
//! docker-py and raw HTTP, with dockerd's codes and texts.

mod common;

use common::{berthd_with_busybox, inspect, ok, stderr, stdout, Berthd, Conn, Registry};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

const NOT_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
const NO_SWARM: &str = "This node is not part of a swarm";
const NOT_SUPPORTED: &str =
    "this node cannot create or join a swarm: swarm mode is not supported by berth";

fn message(r: &common::Resp) -> String {
    r.json()["message"].as_str().unwrap_or("").to_string()
}

#[test]
fn swarm_endpoints_answer_as_dockerd_outside_a_swarm() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    // Every operation of the spec, with and without a version prefix.
    let cases: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("GET", "/swarm", None, 503, NOT_MANAGER),
        ("POST", "/swarm/init", Some("{}"), 503, NOT_SUPPORTED),
        ("POST", "/swarm/join", Some("{}"), 503, NOT_SUPPORTED),
        ("POST", "/swarm/leave", None, 503, NO_SWARM),
        ("POST", "/swarm/leave?force=1", None, 503, NO_SWARM),
        ("POST", "/swarm/update?version=1", Some("{}"), 503, NOT_MANAGER),
        ("GET", "/swarm/unlockkey", None, 503, NOT_MANAGER),
        ("POST", "/swarm/unlock", Some("{}"), 503, NOT_MANAGER),
        ("GET", "/nodes", None, 503, NOT_MANAGER),
        ("GET", "/nodes/n1", None, 503, NOT_MANAGER),
        ("DELETE", "/nodes/n1", None, 503, NOT_MANAGER),
        ("POST", "/nodes/n1/update?version=1", Some("{}"), 503, NOT_MANAGER),
        ("GET", "/services", None, 503, NOT_MANAGER),
        ("POST", "/services/create", Some("{}"), 503, NOT_MANAGER),
        ("GET", "/services/s1", None, 503, NOT_MANAGER),
        ("DELETE", "/services/s1", None, 503, NOT_MANAGER),
        ("POST", "/services/s1/update?version=1", Some("{}"), 503, NOT_MANAGER),
        ("GET", "/services/s1/logs?stdout=1", None, 503, NOT_MANAGER),
        ("GET", "/tasks", None, 503, NOT_MANAGER),
        ("GET", "/tasks/t1", None, 503, NOT_MANAGER),
        ("GET", "/tasks/t1/logs?stderr=1", None, 503, NOT_MANAGER),
        ("GET", "/secrets", None, 503, NOT_MANAGER),
        ("POST", "/secrets/create", Some("{}"), 503, NOT_MANAGER),
        ("GET", "/secrets/x1", None, 503, NOT_MANAGER),
        ("DELETE", "/secrets/x1", None, 503, NOT_MANAGER),
        ("POST", "/secrets/x1/update?version=1", Some("{}"), 503, NOT_MANAGER),
        ("GET", "/configs", None, 503, NOT_MANAGER),
        ("POST", "/configs/create", Some("{}"), 503, NOT_MANAGER),
        ("GET", "/configs/c1", None, 503, NOT_MANAGER),
        ("DELETE", "/configs/c1", None, 503, NOT_MANAGER),
        ("POST", "/configs/c1/update?version=1", Some("{}"), 503, NOT_MANAGER),
        // The request is checked first, as dockerd's handlers do.
        (
            "POST",
            "/swarm/update",
            Some("{}"),
            400,
            "invalid swarm version '': strconv.ParseUint: parsing \"\": invalid syntax",
        ),
        (
            "POST",
            "/swarm/update?version=1&rotateWorkerToken=maybe",
            Some("{}"),
            400,
            "invalid value for rotateWorkerToken: maybe",
        ),
        (
            "POST",
            "/nodes/n1/update?version=x",
            Some("{}"),
            400,
            "invalid node version 'x': strconv.ParseUint: parsing \"x\": invalid syntax",
        ),
        (
            "POST",
            "/services/s1/update?version=1&registryAuthFrom=elsewhere",
            Some("{}"),
            400,
            "invalid registryAuthFrom 'elsewhere'",
        ),
        (
            "POST",
            "/secrets/x1/update",
            Some("{}"),
            400,
            "invalid secret version",
        ),
        (
            "POST",
            "/configs/c1/update",
            Some("{}"),
            400,
            "invalid config version",
        ),
        (
            "GET",
            "/services?filters=%7B%22color%22%3A%5B%22red%22%5D%7D",
            None,
            400,
            "invalid filter 'color'",
        ),
        (
            "GET",
            "/nodes?filters=%7B%22role%22%3A%5B%22manager%22%5D%7D",
            None,
            503,
            NOT_MANAGER,
        ),
        (
            "GET",
            "/services?status=sometimes",
            None,
            400,
            "invalid value for status: sometimes: strconv.ParseBool: parsing \"sometimes\": invalid syntax",
        ),
        (
            "GET",
            "/services/s1/logs",
            None,
            400,
            "must specify at least one of 'stdout' or 'stderr'",
        ),
        (
            "POST",
            "/services/create",
            Some("{bad"),
            400,
            "invalid JSON: ",
        ),
    ];
    for prefix in ["", "/v1.51"] {
        for (method, path, body, status, text) in cases {
            let mut c = Conn::unix(&b.socket);
            let r = c.request(
                method,
                &format!("{prefix}{path}"),
                (*body).map(str::as_bytes),
            );
            assert_eq!(r.status, *status, "{method} {prefix}{path}: {}", r.text());
            assert!(
                message(&r).starts_with(text),
                "{method} {prefix}{path}: {} (want {text})",
                r.text()
            );
        }
    }
    // Secrets came with API 1.25, configs with 1.30, and templating with 1.37.
    let mut c = Conn::unix(&b.socket);
    let r = c.request("GET", "/v1.24/secrets", None);
    assert_eq!(r.status, 400);
    assert_eq!(
        message(&r),
        "GET /secrets requires minimum API version 1.25"
    );
    let r = c.request("POST", "/v1.29/configs/c1/update?version=1", Some(b"{}"));
    assert_eq!(r.status, 400);
    assert_eq!(
        message(&r),
        "POST /configs/{id}/update requires minimum API version 1.30"
    );
    let r = c.request(
        "POST",
        "/v1.36/secrets/create",
        Some(br#"{"Name":"s","Templating":{"Name":"golang"}}"#),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        message(&r),
        "secret templating is not supported on the specified API version: 1.36"
    );

    // The docker CLI prints dockerd's words.
    for args in [&["node", "ls"][..], &["service", "ls"], &["secret", "ls"]] {
        let out = b.docker_out(args);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(
            stderr(&out).trim(),
            format!("Error response from daemon: {NOT_MANAGER}"),
            "{args:?}"
        );
    }
    let out = b.docker_out(&["swarm", "leave", "--force"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        format!("Error response from daemon: {NO_SWARM}")
    );
    let out = b.docker_out(&["swarm", "init"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        format!("Error response from daemon: {NOT_SUPPORTED}")
    );
    // `docker info`: Swarm inactive.
    let info = ok(b.docker_out(&["info"]));
    assert!(info.contains("\n Swarm: inactive\n"), "{info}");
    assert_eq!(
        ok(b.docker_out(&["info", "--format", "{{.Swarm.LocalNodeState}}"])).trim(),
        "inactive"
    );
    // `/_ping` says so too.
    let r = c.request("GET", "/_ping", None);
    assert_eq!(r.header("swarm"), Some("inactive"));
}

#[test]
fn docker_py_outside_a_swarm() {
    require!(ready(), NOT_READY);
    let python = common::docker_py();
    require!(python.is_some(), common::DOCKER_PY_MISSING);
    let b = Berthd::start(&[]);
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
# The SDK takes a 503 on a forced leave for "nothing to leave".
assert c.swarm.leave(force=True) is True
for call in (c.services.list, c.nodes.list, c.secrets.list, c.configs.list):
    try:
        call()
    except docker.errors.APIError as e:
        assert e.status_code == 503, (call, e.status_code)
        assert "This node is not a swarm manager" in e.explanation, e.explanation
    else:
        raise AssertionError("%s did not fail" % call)
try:
    c.swarm.leave()
except docker.errors.APIError as e:
    assert e.status_code == 503 and e.explanation == "This node is not part of a swarm", e
else:
    raise AssertionError("leave without force did not fail")
try:
    c.swarm.init()
except docker.errors.APIError as e:
    assert e.status_code == 503, e
    assert "swarm mode is not supported by berth" in e.explanation, e.explanation
else:
    raise AssertionError("init did not fail")
assert c.info()["Swarm"]["LocalNodeState"] == "inactive"
print("ok")
"#;
    common::run_docker_py(python.as_deref().unwrap(), &b, script, &[]);
}

#[test]
fn host_config_runtime_is_checked_and_recorded() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let out = ok(b.docker_out(&[
        "run",
        "--runtime",
        "runc",
        "--name",
        "rt-runc",
        "busybox",
        "echo",
        "ran",
    ]));
    assert_eq!(out.trim(), "ran");
    assert_eq!(inspect(&b, "rt-runc", "{{.HostConfig.Runtime}}"), "runc");
    // No runtime: the default `docker info` reports.
    ok(b.docker_out(&["create", "--name", "rt-default", "busybox", "true"]));
    let default = ok(b.docker_out(&["info", "--format", "{{.DefaultRuntime}}"]));
    assert_eq!(default.trim(), "libcontainer");
    assert_eq!(
        inspect(&b, "rt-default", "{{.HostConfig.Runtime}}"),
        "libcontainer"
    );
    ok(b.docker_out(&[
        "create",
        "--runtime",
        "libcontainer",
        "--name",
        "rt-own",
        "busybox",
        "true",
    ]));
    assert_eq!(
        inspect(&b, "rt-own", "{{.HostConfig.Runtime}}"),
        "libcontainer"
    );
    // The names create accepts are the ones `docker info` lists.
    let runtimes = ok(b.docker_out(&[
        "info",
        "--format",
        "{{range $k, $v := .Runtimes}}{{$k}} {{end}}",
    ]));
    let mut names: Vec<&str> = runtimes.split_whitespace().collect();
    names.sort();
    assert_eq!(names, ["io.containerd.runc.v2", "libcontainer", "runc"]);
    // An unknown runtime: dockerd's 400, and nothing is created.
    let out = b.docker_out(&[
        "create",
        "--runtime",
        "kata",
        "--name",
        "rt-kata",
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "Error response from daemon: unknown or invalid runtime name: kata"
    );
    let all = ok(b.docker_out(&["ps", "-a", "--format", "{{.Names}}"]));
    assert!(!all.contains("rt-kata"), "{all}");

    let python = common::docker_py();
    require!(python.is_some(), common::DOCKER_PY_MISSING);
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
ct = c.containers.create("busybox", ["true"], runtime="runc", name="pyrt")
assert ct.attrs["HostConfig"]["Runtime"] == "runc", ct.attrs["HostConfig"]["Runtime"]
try:
    c.containers.create("busybox", ["true"], runtime="nope", name="pyrt2")
except docker.errors.APIError as e:
    assert e.status_code == 400, e.status_code
    assert e.explanation == "unknown or invalid runtime name: nope", e.explanation
else:
    raise AssertionError("an unknown runtime was accepted")
print("ok")
"#;
    common::run_docker_py(python.as_deref().unwrap(), &b, script, &[]);
}

#[test]
fn loading_what_is_not_an_image_archive_reports_in_the_stream() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let junk = b.dir.path().join("junk");
    std::fs::write(&junk, b"this is not an image archive\n").unwrap();
    // The CLI: the error from the stream, and a failure.
    let out = common::docker_with_stdin(&b, &["load"], &junk);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert_eq!(
        err.trim(),
        "invalid archive: reading first header (not a tar archive?): failed to read entire block"
    );
    assert!(!err.contains("Error response from daemon"), "{err}");
    // Raw: 200, JSON, and the error message as dockerd's stream formats it.
    let mut c = Conn::unix(&b.socket);
    let r = c.request("POST", "/images/load?quiet=0", Some(b"not a tar at all"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let last: serde_json::Value =
        serde_json::from_str(r.text().lines().last().unwrap_or("")).unwrap();
    let msg = last["error"].as_str().unwrap_or("").to_string();
    assert!(msg.starts_with("invalid archive"), "{last}");
    assert_eq!(last["errorDetail"]["message"], msg.as_str());
    // A good archive without `quiet`: dockerd's default is quiet, so only the result lines.
    let saved = b.dir.path().join("bb.tar");
    ok(b.docker_out(&["save", "-o", saved.to_str().unwrap(), "busybox"]));
    let r = c.request(
        "POST",
        "/images/load",
        Some(&std::fs::read(&saved).unwrap()),
    );
    assert_eq!(r.status, 200);
    let lines: Vec<serde_json::Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![serde_json::json!({"stream": "Loaded image: busybox:latest\n"})]
    );

    let python = common::docker_py();
    require!(python.is_some(), common::DOCKER_PY_MISSING);
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
try:
    c.images.load(b"this is not an image archive\n")
except docker.errors.ImageLoadError as e:
    assert "invalid archive" in str(e), str(e)
else:
    raise AssertionError("garbage loaded")
with open(sys.argv[2], "rb") as f:
    imgs = c.images.load(f.read())
assert [i.tags for i in imgs] == [["busybox:latest"]], [i.tags for i in imgs]
print("ok")
"#;
    common::run_docker_py(python.as_deref().unwrap(), &b, script, &[&saved]);
}

#[test]
fn distribution_inspect_uses_the_registry_mirror() {
    require!(ready() && Registry::available(), "needs root, the docker CLI, busybox-static and docker-registry (Debian's docker-registry package)");
    let reg = Registry::start(None);
    let b = berthd_with_busybox(&["--registry-mirror", &format!("http://{}", reg.host())]);
    // The mirror holds Docker Hub's `library/mirrored`.
    let mirrored = format!("{}/library/mirrored:latest", reg.host());
    ok(b.docker_out(&["tag", "busybox", &mirrored]));
    let out = ok(b.docker_out(&["push", &mirrored]));
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("latest: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line in {out}"))
        .to_string();
    let mut c = Conn::unix(&b.socket);
    for name in [
        "mirrored",
        "library/mirrored:latest",
        "docker.io/library/mirrored",
    ] {
        let r = c.request("GET", &format!("/distribution/{name}/json"), None);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let v = r.json();
        assert_eq!(v["Descriptor"]["digest"], digest.as_str(), "{v}");
        assert_eq!(v["Platforms"][0]["os"], "linux", "{v}");
        assert_eq!(v["Platforms"][0]["architecture"], common::go_arch(), "{v}");
    }

    let python = common::docker_py();
    require!(python.is_some(), common::DOCKER_PY_MISSING);
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
d = c.images.get_registry_data("mirrored")
assert d.id == sys.argv[2], d.id
assert d.has_platform("linux/" + sys.argv[3])
print("ok")
"#;
    let out = std::process::Command::new(python.as_deref().unwrap())
        .arg("-c")
        .arg(script)
        .arg(&b.socket)
        .arg(&digest)
        .arg(common::go_arch())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).trim(), "ok");
}
