//! Exec streams and legacy links as dockerd has them (issue 15): the framing of an exec's
//! output follows the start request's `Tty` (the process's TTY the create's), `DetachKeys` at
//! exec create (docker-py's `detachKeys` spelling and its config file's default), and
//! `--link` on the default bridge (environment, `/etc/hosts`, inspect) and on user networks
//! (aliases of the embedded DNS).
//!
//! The link tests run berthd in a throwaway network namespace: traffic stays on its bridges.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{berthd_with_busybox, inspect, ok, stderr, stdout, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

fn net_ready() -> bool {
    ready()
        && common::have_command("nft")
        && common::have_command("unshare")
        && common::have_command("nsenter")
}
const NET_NOT_READY: &str =
    "needs root, the docker CLI, busybox-static, nftables (nft) and util-linux (unshare, nsenter)";

/// One HTTP request on its own connection (`Connection: close`): status, head and body.
fn request(b: &Berthd, method: &str, path: &str, body: &str) -> (u16, String, Vec<u8>) {
    let mut conn = UnixStream::connect(&b.socket).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut all = Vec::new();
    let _ = conn.read_to_end(&mut all);
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    let mut rest = all[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        rest = dechunk(&rest);
    }
    (status, head, rest)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// `POST /containers/{c}/exec` with `body`: the exec's ID.
fn exec_create(b: &Berthd, c: &str, body: &str) -> String {
    let (status, _, resp) = request(b, "POST", &format!("/v1.51/containers/{c}/exec"), body);
    let text = String::from_utf8_lossy(&resp).into_owned();
    assert_eq!(status, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["Id"].as_str().unwrap().to_string()
}

/// A hijacked `POST /exec/{id}/start` with `body`: the response head and the connection.
fn exec_hijack(b: &Berthd, id: &str, body: &str) -> (String, UnixStream) {
    let mut conn = UnixStream::connect(&b.socket).unwrap();
    write!(
        conn,
        "POST /v1.51/exec/{id}/start HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).unwrap(),
            1,
            "head ended early: {head:?}"
        );
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).into_owned(), conn)
}

/// Split stdcopy frames into (stream, payload) pairs; panics on a malformed stream.
fn frames(mut data: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !data.is_empty() {
        assert!(data.len() >= 8, "a partial frame header: {data:?}");
        assert!(
            data[0] <= 2 && data[1..4] == [0, 0, 0],
            "not a frame: {data:?}"
        );
        let n = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        out.push((data[0], data[8..8 + n].to_vec()));
        data = &data[8 + n..];
    }
    out
}

fn content_type(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn exec_inspect(b: &Berthd, id: &str) -> serde_json::Value {
    let (status, _, body) = request(b, "GET", &format!("/v1.51/exec/{id}/json"), "");
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn exec_output_framing_follows_the_start_requests_tty() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&["run", "-d", "--name", "frm", "busybox", "sleep", "600"]));
    let probe =
        r#"["sh","-c","if [ -t 1 ]; then echo tty-yes; else echo tty-no; fi; echo to-stderr >&2"]"#;

    // Created with a TTY, started without (docker-py's exec_start(tty=False)): the process
    // has its TTY, the stream is multiplexed (one stdout frame stream, the pty merges both).
    let id = exec_create(
        &b,
        "frm",
        &format!(r#"{{"AttachStdout":true,"AttachStderr":true,"Tty":true,"Cmd":{probe}}}"#),
    );
    let (head, mut conn) = exec_hijack(&b, &id, r#"{"Detach":false,"Tty":false}"#);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(
        content_type(&head),
        "application/vnd.docker.multiplexed-stream"
    );
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    let f = frames(&out);
    assert!(f.iter().all(|(s, _)| *s == 1), "{f:?}");
    let text: Vec<u8> = f.into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(String::from_utf8_lossy(&text), "tty-yes\r\nto-stderr\r\n");

    // Created without a TTY, started with `Tty: true`: no TTY for the process, the stream is
    // raw (stdout and stderr unframed on one connection).
    let id = exec_create(
        &b,
        "frm",
        &format!(r#"{{"AttachStdout":true,"AttachStderr":true,"Tty":false,"Cmd":{probe}}}"#),
    );
    let (head, mut conn) = exec_hijack(&b, &id, r#"{"Detach":false,"Tty":true}"#);
    assert_eq!(content_type(&head), "application/vnd.docker.raw-stream");
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text == "tty-no\nto-stderr\n" || text == "to-stderr\ntty-no\n",
        "{text:?}"
    );

    // Both without: frames of each stream.
    let id = exec_create(
        &b,
        "frm",
        &format!(r#"{{"AttachStdout":true,"AttachStderr":true,"Cmd":{probe}}}"#),
    );
    let (head, mut conn) = exec_hijack(&b, &id, r#"{"Detach":false,"Tty":false}"#);
    assert_eq!(
        content_type(&head),
        "application/vnd.docker.multiplexed-stream"
    );
    let mut out = Vec::new();
    let _ = conn.read_to_end(&mut out);
    let mut f = frames(&out);
    f.sort();
    assert_eq!(
        f,
        vec![(1, b"tty-no\n".to_vec()), (2, b"to-stderr\n".to_vec())]
    );

    // Without `Upgrade`, dockerd names the body raw whatever its framing; a TTY exec started
    // with `Tty: false` is still framed.
    let id = exec_create(
        &b,
        "frm",
        r#"{"AttachStdout":true,"Tty":true,"Cmd":["echo","plain-body"]}"#,
    );
    let (status, head, body) = request(
        &b,
        "POST",
        &format!("/v1.51/exec/{id}/start"),
        r#"{"Detach":false,"Tty":false}"#,
    );
    assert_eq!(status, 200, "{head}");
    assert_eq!(content_type(&head), "application/vnd.docker.raw-stream");
    let text: Vec<u8> = frames(&body).into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(text, b"plain-body\r\n");

    // The docker CLI starts with its create's TTY: unchanged for it.
    assert_eq!(
        ok(b.docker_out(&["exec", "frm", "echo", "cli-plain"])),
        "cli-plain\n"
    );
    let o = b.docker_out(&["exec", "-t", "frm", "sh", "-c", "[ -t 1 ] && echo cli-tty"]);
    assert_eq!(stdout(&o), "cli-tty\r\n", "{}", stderr(&o));

    // docker-py: exec_run(tty=True), and the low-level create with a TTY started without one,
    // whose output it demultiplexes (the first 8 bytes were eaten as a header before).
    let Some(python) = common::docker_py() else {
        eprintln!("SKIP docker-py part: {}", common::DOCKER_PY_MISSING);
        return;
    };
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
ct = c.containers.get("frm")
r = ct.exec_run("echo abcdefghijklmnop", tty=True)
assert r.exit_code == 0 and r.output == b"abcdefghijklmnop\r\n", r
r = ct.exec_run("sh -c 'echo out; echo err >&2'", demux=True)
assert r.output == (b"out\n", b"err\n"), r
api = c.api
e = api.exec_create("frm", "echo abcdefghijklmnop", tty=True)
out = api.exec_start(e["Id"], tty=False)
assert out == b"abcdefghijklmnop\r\n", out
e = api.exec_create("frm", "echo 0123456789", tty=True)
out = api.exec_start(e["Id"], tty=False, demux=True)
assert out == (b"0123456789\r\n", None), out
assert api.exec_inspect(e["Id"])["ProcessConfig"]["tty"] is True
print("ok")
"#;
    common::run_docker_py(&python, &b, script, &[]);
}

#[test]
fn exec_detach_keys_from_create() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&["run", "-d", "--name", "dk", "busybox", "sleep", "600"]));

    // A single key, `ctrl-p`, spelled `detachKeys` as docker-py sends it (Go's JSON matches
    // field names without regard to case).
    let since = common::now_secs().to_string();
    let id = exec_create(
        &b,
        "dk",
        r#"{"AttachStdin":true,"AttachStdout":true,"Tty":true,"Cmd":["cat"],"detachKeys":"ctrl-p"}"#,
    );
    // dockerd keeps the parsed bytes, shown as Go shows a []byte.
    assert_eq!(exec_inspect(&b, &id)["DetachKeys"], "EA==");
    let (head, mut conn) = exec_hijack(&b, &id, r#"{"Detach":false,"Tty":true}"#);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    conn.write_all(b"hello-cat\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("hello-cat\r\nhello-cat") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "{:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    conn.write_all(b"\x10").unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    // The stream ended, the process runs on, and the detach is an event.
    std::thread::sleep(Duration::from_millis(300));
    let i = exec_inspect(&b, &id);
    assert_eq!(i["Running"], true, "{i}");
    let events = common::events_text(
        &b,
        &since,
        &["event=exec_detach"],
        "{{.Action}} {{.Actor.Attributes.execID}}",
    );
    assert_eq!(events.trim(), format!("exec_detach {id}"));

    // Without keys, the default ctrl-p ctrl-q; a ctrl-p that is not followed by ctrl-q is
    // input (cat echoes it back).
    let id = exec_create(
        &b,
        "dk",
        r#"{"AttachStdin":true,"AttachStdout":true,"Tty":true,"Cmd":["cat"]}"#,
    );
    assert_eq!(exec_inspect(&b, &id)["DetachKeys"], "");
    let (_, mut conn) = exec_hijack(&b, &id, r#"{"Detach":false,"Tty":true}"#);
    conn.write_all(b"a\x10b\n").unwrap();
    let mut seen = Vec::new();
    while !seen.windows(3).any(|w| w == b"a^P" || w == b"a\x10b") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "{seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    conn.write_all(b"\x10\x11").unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert_eq!(exec_inspect(&b, &id)["Running"], true);

    // Keys apply to the process's TTY (the create's), not the start request's.
    let id = exec_create(
        &b,
        "dk",
        r#"{"AttachStdin":true,"AttachStdout":true,"Tty":true,"Cmd":["cat"],"DetachKeys":"ctrl-x"}"#,
    );
    let (head, mut conn) = exec_hijack(&b, &id, r#"{"Detach":false,"Tty":false}"#);
    assert_eq!(
        content_type(&head),
        "application/vnd.docker.multiplexed-stream"
    );
    conn.write_all(b"\x18").unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert_eq!(exec_inspect(&b, &id)["Running"], true);

    // Invalid keys: dockerd's text at create, a plain (500) error there.
    for bad in ["ctrl-P", "ctrl-p, ctrl-q", "ab"] {
        let body = format!(r#"{{"Tty":true,"Cmd":["true"],"DetachKeys":"{bad}"}}"#);
        let (status, _, resp) = request(&b, "POST", "/v1.51/containers/dk/exec", &body);
        assert_eq!(status, 500);
        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
        assert_eq!(
            v["message"],
            format!("Invalid escape keys ({bad}) provided")
        );
    }
    let o = b.docker_out(&["exec", "--detach-keys", "ctrl-1", "dk", "true"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("Invalid escape keys (ctrl-1) provided"),
        "{}",
        stderr(&o)
    );

    // docker-py's own tests: the config file's `detachKeys` and the argument.
    let Some(python) = common::docker_py() else {
        eprintln!("SKIP docker-py part: {}", common::DOCKER_PY_MISSING);
        return;
    };
    let script = r#"
import docker, sys, time, socket
api = docker.APIClient(base_url="unix://" + sys.argv[1])

def detached_with(sock, keys):
    s = sock._sock if hasattr(sock, "_sock") else sock
    for k in keys:
        s.sendall(k)
        time.sleep(0.5)
    s.settimeout(10)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return True
        data += chunk

api._general_configs["detachKeys"] = "ctrl-p"
e = api.exec_create("dk", "cat", stdin=True, tty=True, stdout=True)
assert api.exec_inspect(e["Id"])["DetachKeys"] == "EA==", api.exec_inspect(e["Id"])
sock = api.exec_start(e["Id"], tty=True, socket=True)
assert detached_with(sock, [b"\x10"])
sock.close()
assert api.exec_inspect(e["Id"])["Running"] is True

e = api.exec_create("dk", "cat", stdin=True, tty=True, stdout=True, detach_keys="ctrl-x")
sock = api.exec_start(e["Id"], tty=True, socket=True)
assert detached_with(sock, [b"\x18"])
sock.close()
assert api.exec_inspect(e["Id"])["Running"] is True
print("ok")
"#;
    common::run_docker_py(&python, &b, script, &[]);
}

/// berthd in its own network namespace, with the busybox image imported.
fn net_berthd() -> Berthd {
    let b = Berthd::start_netns(&[]);
    let rootfs = common::busybox_rootfs_tar(b.dir.path());
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    b
}

#[test]
fn legacy_links_on_the_default_bridge() {
    require!(net_ready(), NET_NOT_READY);
    let b = net_berthd();
    let db_id = ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "db",
        "--expose",
        "5432",
        "--expose",
        "5433",
        "--expose",
        "53/udp",
        "-e",
        "SECRET=s3",
        "-e",
        "HOME=/h",
        "busybox",
        "sleep",
        "600",
    ]))
    .trim()
    .to_string();
    let ip = inspect(&b, "db", "{{.NetworkSettings.Networks.bridge.IPAddress}}");
    assert!(ip.starts_with("172."), "{ip}");
    let short = &db_id[..12];

    let out = ok(b.docker_out(&[
        "run",
        "--name",
        "web",
        "--link",
        "db:my-db",
        "busybox",
        "sh",
        "-c",
        "env; echo ===; cat /etc/hosts",
    ]));
    let (env, hosts) = out.split_once("===\n").unwrap();
    let mut links: Vec<&str> = env.lines().filter(|l| l.starts_with("MY_DB_")).collect();
    links.sort();
    let mut want = vec![
        format!("MY_DB_PORT=tcp://{ip}:5432"),
        format!("MY_DB_PORT_5432_TCP=tcp://{ip}:5432"),
        format!("MY_DB_PORT_5432_TCP_ADDR={ip}"),
        "MY_DB_PORT_5432_TCP_PORT=5432".to_string(),
        "MY_DB_PORT_5432_TCP_PROTO=tcp".to_string(),
        format!("MY_DB_PORT_5433_TCP=tcp://{ip}:5433"),
        format!("MY_DB_PORT_5433_TCP_ADDR={ip}"),
        "MY_DB_PORT_5433_TCP_PORT=5433".to_string(),
        "MY_DB_PORT_5433_TCP_PROTO=tcp".to_string(),
        format!("MY_DB_PORT_5432_TCP_START=tcp://{ip}:5432"),
        "MY_DB_PORT_5432_TCP_PORT_START=5432".to_string(),
        format!("MY_DB_PORT_5432_TCP_END=tcp://{ip}:5433"),
        "MY_DB_PORT_5432_TCP_PORT_END=5433".to_string(),
        format!("MY_DB_PORT_53_UDP=udp://{ip}:53"),
        format!("MY_DB_PORT_53_UDP_ADDR={ip}"),
        "MY_DB_PORT_53_UDP_PORT=53".to_string(),
        "MY_DB_PORT_53_UDP_PROTO=udp".to_string(),
        "MY_DB_NAME=/web/my-db".to_string(),
        "MY_DB_ENV_SECRET=s3".to_string(),
    ];
    want.sort();
    assert_eq!(links, want, "{env}");
    // moby's hosts entry: alias, the linked container's hostname, then its name.
    assert!(
        hosts
            .lines()
            .any(|l| l == format!("{ip}\tmy-db {short} db")),
        "{hosts}"
    );
    // Inspect shows dockerd's link index, not what was sent.
    assert_eq!(
        inspect(&b, "web", "{{json .HostConfig.Links}}"),
        r#"["/db:/web/my-db"]"#
    );
    assert_eq!(inspect(&b, "db", "{{json .HostConfig.Links}}"), "null");
    // The linked container's names in the API's list (the CLI shows the plain one).
    let (_, _, list) = request(
        &b,
        "GET",
        "/v1.51/containers/json?filters=%7B%22name%22%3A%5B%22%5Edb%24%22%5D%7D",
        "",
    );
    let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
    assert_eq!(
        list[0]["Names"],
        serde_json::json!(["/db", "/web/my-db"]),
        "{list}"
    );
    assert_eq!(
        ok(b.docker_out(&["ps", "--filter", "name=^db$", "--format", "{{.Names}}"])),
        "db\n"
    );

    // Without an alias: the name once.
    let hosts = ok(b.docker_out(&[
        "run",
        "--rm",
        "--link",
        "db",
        "busybox",
        "cat",
        "/etc/hosts",
    ]));
    assert!(
        hosts.lines().any(|l| l == format!("{ip}\tdb {short}")),
        "{hosts}"
    );

    // Execs get the links' variables too (moby's ContainerExecCreate), and the container's
    // own variables override them.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "web2",
        "--link",
        "db:dbx",
        "-e",
        "DBX_ENV_SECRET=mine",
        "busybox",
        "sleep",
        "600",
    ]));
    let env = ok(b.docker_out(&["exec", "web2", "env"]));
    assert!(env.lines().any(|l| l == "DBX_NAME=/web2/dbx"), "{env}");
    assert!(env.lines().any(|l| l == "DBX_ENV_SECRET=mine"), "{env}");
    assert!(!env.lines().any(|l| l == "DBX_ENV_SECRET=s3"), "{env}");

    // The linked container restarts on a new address: the running parent's /etc/hosts
    // follows (moby's UpdateHostsEntry).
    ok(b.docker_out(&["stop", "-t", "0", "db"]));
    ok(b.docker_out(&["run", "-d", "--name", "taker", "busybox", "sleep", "600"]));
    ok(b.docker_out(&["start", "db"]));
    let ip2 = inspect(&b, "db", "{{.NetworkSettings.Networks.bridge.IPAddress}}");
    assert_ne!(ip2, ip);
    let hosts = ok(b.docker_out(&["exec", "web2", "cat", "/etc/hosts"]));
    assert!(
        hosts.lines().any(|l| l == format!("{ip2}\tdbx {short} db")),
        "{hosts}"
    );

    // A link to a missing container: dockerd's 400 (not a 404, which makes the CLI pull).
    let o = b.docker_out(&["run", "--rm", "--link", "nosuch:x", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("could not get container for nosuch: No such container: nosuch"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("Unable to find image"),
        "{}",
        stderr(&o)
    );
    // With host networking: dockerd's conflict.
    let o = b.docker_out(&[
        "create",
        "--network",
        "host",
        "--link",
        "db",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&o).contains("conflicting options: host type networking can't be used with links. This would result in undefined behavior"),
        "{}",
        stderr(&o)
    );
    // A linked container that is not running fails the start.
    ok(b.docker_out(&[
        "create", "--name", "web3", "--link", "db:d3", "busybox", "true",
    ]));
    ok(b.docker_out(&["stop", "-t", "0", "db"]));
    let o = b.docker_out(&["start", "web3"]);
    assert!(
        stderr(&o).contains("Cannot link to a non running container: /db AS /web3/d3"),
        "{}",
        stderr(&o)
    );

    // docker-py's test_create_with_links.
    let Some(python) = common::docker_py() else {
        eprintln!("SKIP docker-py part: {}", common::DOCKER_PY_MISSING);
        return;
    };
    let script = r#"
import docker, sys
api = docker.APIClient(base_url="unix://" + sys.argv[1])
ids = []
for n in ("pyl1", "pyl2"):
    r = api.create_container("busybox", "cat", detach=True, stdin_open=True,
                             environment={"FOO": "1"}, name=n)
    api.start(r["Id"])
    ids.append(r["Id"])
hc = api.create_host_config(links={"pyl1": "mylink1", "/pyl2": "mylink2"})
r = api.create_container("busybox", "env", host_config=hc, name="pyparent")
api.start(r["Id"])
assert api.wait(r["Id"])["StatusCode"] == 0
links = api.inspect_container(r["Id"])["HostConfig"]["Links"]
assert sorted(links) == ["/pyl1:/pyparent/mylink1", "/pyl2:/pyparent/mylink2"], links
logs = api.logs(r["Id"]).decode()
for p in ("MYLINK1", "MYLINK2"):
    assert p + "_NAME=/pyparent/" + p.lower() in logs, logs
    assert p + "_ENV_FOO=1" in logs, logs
try:
    api.create_container("busybox", "true", host_config=api.create_host_config(links={"gone": "x"}))
    raise SystemExit("expected an error")
except docker.errors.APIError as e:
    assert e.status_code == 400, e
    assert "could not get container for gone" in e.explanation, e.explanation
print("ok")
"#;
    common::run_docker_py(&python, &b, script, &[]);
}

#[test]
fn removing_a_legacy_link() {
    require!(net_ready(), NET_NOT_READY);
    let b = net_berthd();
    ok(b.docker_out(&["run", "-d", "--name", "db", "busybox", "sleep", "600"]));
    let db_id = inspect(&b, "db", "{{.Id}}");
    ok(b.docker_out(&[
        "run", "-d", "--name", "app", "--link", "db:my-db", "busybox", "sleep", "600",
    ]));
    let hosts = ok(b.docker_out(&["exec", "app", "cat", "/etc/hosts"]));
    assert!(hosts.contains("\tmy-db "), "{hosts}");
    // The link's name is one of the linked container's names (moby's name registry).
    assert_eq!(inspect(&b, "app/my-db", "{{.Id}}"), db_id);
    assert_eq!(inspect(&b, "/app/my-db", "{{.Name}}"), "/db");
    let names = ok(b.docker_out(&["ps", "--no-trunc", "--format", "{{.Names}}"]));
    assert!(names.contains("app/my-db"), "{names}");

    // `docker rm --link parent/alias`: the link goes, both containers stay.
    ok(b.docker_out(&["rm", "--link", "app/my-db"]));
    assert_eq!(inspect(&b, "app", "{{json .HostConfig.Links}}"), "null");
    let hosts = ok(b.docker_out(&["exec", "app", "cat", "/etc/hosts"]));
    assert!(!hosts.contains("my-db"), "{hosts}");
    let names = ok(b.docker_out(&["ps", "--no-trunc", "--format", "{{.Names}}"]));
    assert!(!names.contains("app/my-db"), "{names}");
    assert_eq!(inspect(&b, "db", "{{.State.Running}}"), "true");
    let ids = ok(b.docker_out(&["ps", "-q"]));
    assert_eq!(ids.lines().count(), 2, "{ids}");

    // dockerd's refusals.
    let o = b.docker_out(&["rm", "--link", "app/my-db"]);
    assert!(
        stderr(&o).contains("No such container: app/my-db"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["rm", "--link", "db"]);
    assert!(
        stderr(&o).contains("Conflict, cannot remove the default link name of the container"),
        "{}",
        stderr(&o)
    );
    ok(b.docker_out(&["rm", "-f", "app", "db"]));
}

#[test]
fn links_on_a_user_network_are_dns_aliases() {
    require!(net_ready(), NET_NOT_READY);
    let b = net_berthd();
    ok(b.docker_out(&["network", "create", "--subnet", "10.231.0.0/24", "lnet"]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "target",
        "--network",
        "lnet",
        "busybox",
        "sleep",
        "600",
    ]));
    let ip = inspect(&b, "target", "{{.NetworkSettings.Networks.lnet.IPAddress}}");
    // dockerd registers no legacy link there (no check, no variables, no hosts line); the
    // CLI sends the link as the endpoint's `Links`, an alias for this container's lookups.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "asker",
        "--network",
        "lnet",
        "--link",
        "target:tgt",
        "busybox",
        "sleep",
        "600",
    ]));
    let out = ok(b.docker_out(&["exec", "asker", "nslookup", "tgt"]));
    assert!(out.contains(&ip), "{out}");
    let env = ok(b.docker_out(&["exec", "asker", "env"]));
    assert!(!env.contains("TGT_"), "{env}");
    let hosts = ok(b.docker_out(&["exec", "asker", "cat", "/etc/hosts"]));
    assert!(!hosts.contains("tgt"), "{hosts}");
    assert_eq!(inspect(&b, "asker", "{{json .HostConfig.Links}}"), "null");
    assert_eq!(
        inspect(&b, "asker", "{{json .NetworkSettings.Networks.lnet.Links}}"),
        r#"["target:tgt"]"#
    );
    // The alias is the asker's alone.
    let o = b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "lnet",
        "busybox",
        "nslookup",
        "tgt",
    ]);
    assert!(!stdout(&o).contains(&ip), "{}", stdout(&o));
    // A link to a container that does not exist is no error there, as with dockerd.
    ok(b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "lnet",
        "--link",
        "nothere:nh",
        "busybox",
        "true",
    ]));
}
