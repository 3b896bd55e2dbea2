//! Hostile input: malformed requests (regressions of what the spec-driven run in
//! `fuzz/api/run.sh` found), slow clients cut off by the header and body timeouts without
//! holding a container, hostile archives through `load`, `import`, `cp` and `build`, and a
//! registry that serves an oversized manifest.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use berth::server::ServerOptions;
use common::{berthd_with_busybox, docker_with_stdin, ok, stderr, Berthd, Conn, InProcess};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli()
}
const NOT_READY: &str = "needs root and the docker CLI";

/// Berthd's body idle timeout, shortened for every berthd this binary starts.
const BODY_IDLE_SECS: u64 = 3;

fn start(extra: &[&str]) -> Berthd {
    std::env::set_var("BERTH_TEST_BODY_IDLE_TIMEOUT", BODY_IDLE_SECS.to_string());
    Berthd::start(extra)
}

fn start_with_busybox() -> Berthd {
    std::env::set_var("BERTH_TEST_BODY_IDLE_TIMEOUT", BODY_IDLE_SECS.to_string());
    berthd_with_busybox(&[])
}

/// Every file under `dir` with its size and mtime, to see that nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, u64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.push((p.display().to_string(), m.len(), m.mtime()));
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Malformed requests

/// Send raw bytes on a fresh connection and read the status and the start of the answer.
fn raw_request(socket: &Path, raw: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer (and close) before it has read everything.
    let _ = s.write_all(raw);
    let mut c = Conn::new(s);
    let r = c.read_response(false);
    (r.status, r.text())
}

/// What the spec-driven run and the hand-made probes sent, answered with 4xx and dockerd's
/// texts; nothing is written to the data root.
#[test]
fn malformed_requests_get_4xx_and_change_nothing() {
    require!(ready(), NOT_READY);
    let b = start(&[]);
    // One volume and one container-less state to compare against.
    let mut c = Conn::unix(&b.socket);
    let r = c.request("POST", "/volumes/create", Some(br#"{"Name":"keep"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let before = snapshot(&b.data_root());
    let json = |path: &str, body: &[u8]| {
        let mut c = Conn::unix(&b.socket);
        let r = c.request("POST", path, Some(body));
        (r.status, r.text())
    };
    let cases: Vec<(&str, (u16, String), u16, &str)> = vec![
        (
            "malformed JSON",
            json("/containers/create", b"{bad"),
            400,
            "invalid JSON: ",
        ),
        (
            "wrong type",
            json("/containers/create", br#"{"Image":3}"#),
            400,
            "invalid type: integer `3`, expected a string",
        ),
        (
            "unknown enum value",
            json(
                "/containers/create",
                br#"{"Image":"x","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#,
            ),
            400,
            "invalid restart policy: unknown policy 'sometimes'; use one of",
        ),
        (
            "null body",
            json("/networks/create", b"null"),
            400,
            "invalid JSON: ",
        ),
        (
            "bad volume name",
            json("/volumes/create", br#"{"Name":"../v1"}"#),
            400,
            "includes invalid characters for a local volume name",
        ),
        (
            "unknown volume driver",
            json("/volumes/create", br#"{"Name":"v1","Driver":"nosuch"}"#),
            404,
            "error looking up volume plugin nosuch",
        ),
        (
            "bad subnet",
            json(
                "/networks/create",
                br#"{"Name":"n1","IPAM":{"Config":[{"Subnet":"999.1.1.0/24"}]}}"#,
            ),
            400,
            "invalid subnet",
        ),
        (
            "oversized JSON body",
            raw_request(&b.socket, &{
                let mut v = format!(
                    "POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    (9 << 20) + 12
                )
                .into_bytes();
                v.extend_from_slice(br#"{"Image":""#);
                v.extend(std::iter::repeat_n(b'a', 9 << 20));
                v.extend_from_slice(b"\"}");
                v
            }),
            413,
            "request body is too large",
        ),
        (
            "bad filters",
            raw_request(
                &b.socket,
                b"GET /containers/json?filters=%7Bbad HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
            400,
            "invalid filter",
        ),
        (
            "unknown filter",
            raw_request(
                &b.socket,
                b"GET /containers/json?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
            400,
            "invalid filter 'bogus'",
        ),
        (
            "bad integer",
            raw_request(
                &b.socket,
                b"GET /containers/json?limit=-99999999999999999999 HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
            400,
            "limit",
        ),
        (
            "bad reference",
            json("/images/create?fromSrc=-&repo=UPPER", b""),
            400,
            "must be lowercase",
        ),
        (
            "NUL in an ID",
            raw_request(&b.socket, b"GET /containers/%00/json HTTP/1.1\r\nHost: x\r\n\r\n"),
            404,
            "No such container",
        ),
        (
            "bad UTF-8 in an ID",
            raw_request(&b.socket, b"GET /containers/%ff%fe/json HTTP/1.1\r\nHost: x\r\n\r\n"),
            404,
            "No such container",
        ),
        (
            // Found by schemathesis: a 501 before the container was even looked up.
            "rm --link of a missing container",
            raw_request(
                &b.socket,
                b"DELETE /v1.51/containers/nosuch?v=true&force=true&link=true HTTP/1.1\r\nHost: x\r\n\r\n",
            ),
            404,
            "No such container: nosuch",
        ),
    ];
    for (what, (status, text), want, needle) in cases {
        assert_eq!(status, want, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }
    // Huge request lines and headers: refused by the HTTP layer (dockerd: 431 past 1 MiB).
    let mut long = b"GET /containers/json?filters=".to_vec();
    long.extend(std::iter::repeat_n(b'a', 300_000));
    long.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let (status, _) = raw_request(&b.socket, &long);
    assert!(status == 414 || status == 431, "{status}");
    let mut many = b"GET /containers/json HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..500 {
        many.extend_from_slice(format!("X-H{i}: {}\r\n", "v".repeat(1000)).as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(raw_request(&b.socket, &many).0, 431);
    let (status, _) = raw_request(
        &b.socket,
        b"POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
    );
    assert_eq!(status, 400);
    assert_eq!(
        snapshot(&b.data_root()),
        before,
        "a refused request changed the data root"
    );

    // `rm --link` of a container that is no link: dockerd's conflict, and it stays.
    if common::have_busybox() {
        let rootfs = common::busybox_rootfs_tar(b.dir.path());
        ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
        ok(b.docker_out(&["create", "--name", "nolink", "busybox", "true"]));
        let (status, text) = raw_request(
            &b.socket,
            b"DELETE /containers/nolink?link=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert_eq!(status, 409, "{text}");
        assert!(
            text.contains("Conflict, cannot remove the default link name of the container"),
            "{text}"
        );
        ok(b.docker_out(&["inspect", "nolink"]));
    }
}

// ---------------------------------------------------------------------------------------------
// Slow clients

/// Headers trickled one byte at a time (slowloris) are cut off by the header read timeout, a
/// body that stops coming by the body idle timeout; the server keeps answering others.
#[test]
fn slowloris_headers_and_stalled_bodies_are_cut_off() {
    let s = InProcess::start_with(ServerOptions {
        header_read_timeout: Duration::from_millis(1500),
        body_idle_timeout: Duration::from_millis(1500),
        ..ServerOptions::default()
    });
    // Slowloris: a byte every 200 ms keeps the connection busy but never finishes the head.
    let mut raw = UnixStream::connect(&s.socket).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    let head = b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for b in head.iter() {
        if raw.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if t0.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    if !cut {
        // The server closed its side: reading gives EOF (or a 408) well before 8 s.
        let mut buf = Vec::new();
        let _ = raw.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            buf.is_empty() || text.starts_with("HTTP/1.1 408"),
            "unexpected answer to slow headers: {text}"
        );
    }
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "slow headers were not cut off: {:?}",
        t0.elapsed()
    );

    // A JSON body that promises 100 bytes and sends 10: 400 with the reason, then the
    // connection closes.
    let mut raw = UnixStream::connect(&s.socket).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    raw.write_all(
        b"POST /volumes/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Name\":\"s",
    )
    .unwrap();
    let mut c = Conn::new(raw);
    let r = c.read_response(false);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("timed out"), "{}", r.text());
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    // Nothing was created, and the server still answers.
    let mut c = Conn::unix(&s.socket);
    let r = c.request("GET", "/volumes", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["Volumes"].as_array().map(Vec::len).unwrap_or(0), 0);
}

/// A `docker cp` upload into a running container that stalls holds no lock on the container:
/// `docker stop` and `docker rm` go through at once, and the stalled request is cut off by the
/// body idle timeout.
#[test]
fn a_stalled_upload_does_not_block_stop_or_rm() {
    require!(
        ready() && common::have_busybox(),
        "needs root, the docker CLI and busybox-static"
    );
    let b = start_with_busybox();
    ok(b.docker_out(&["run", "-d", "--name", "stall1", "busybox", "sleep", "1000"]));
    // A tar header promising a 1 MiB file, a little of its content, and then nothing.
    let mut h = tar::Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(1 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    let mut raw = UnixStream::connect(&b.socket).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    raw.write_all(
        format!(
            "PUT /containers/stall1/archive?path=/tmp HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
            2 << 20
        )
        .as_bytes(),
    )
    .unwrap();
    raw.write_all(h.as_bytes()).unwrap();
    raw.write_all(&[b'x'; 4096]).unwrap();
    let stalled_at = Instant::now();
    std::thread::sleep(Duration::from_millis(300));

    let t0 = Instant::now();
    ok(b.docker_out(&["stop", "-t", "1", "stall1"]));
    assert!(
        t0.elapsed() < Duration::from_secs(BODY_IDLE_SECS),
        "stop waited for the stalled upload: {:?}",
        t0.elapsed()
    );
    assert_eq!(
        common::inspect(&b, "stall1", "{{.State.Status}}").trim(),
        "exited"
    );
    // The stalled request ends by itself (an error or a cut connection) after the timeout.
    let mut c = Conn::new(raw);
    let mut buf = [0u8; 512];
    let n = c.stream_mut().read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        stalled_at.elapsed() < Duration::from_secs(BODY_IDLE_SECS + 10),
        "the stalled upload was not cut off: {:?}",
        stalled_at.elapsed()
    );
    assert!(
        n == 0 || answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
        "{answer}"
    );
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    ok(b.docker_out(&["rm", "stall1"]));

    // The same against a stopped container (the upload goes through a helper's view of it):
    // `docker rm` is not held up either.
    ok(b.docker_out(&["create", "--name", "stall2", "busybox", "true"]));
    let mut raw = UnixStream::connect(&b.socket).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    raw.write_all(
        b"PUT /containers/stall2/archive?path=/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: 2000000\r\n\r\n",
    )
    .unwrap();
    raw.write_all(h.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    ok(b.docker_out(&["start", "stall2"]));
    ok(b.docker_out(&["wait", "stall2"]));
    assert!(
        t0.elapsed() < Duration::from_secs(BODY_IDLE_SECS),
        "{:?}",
        t0.elapsed()
    );
    let mut buf = [0u8; 512];
    let _ = raw.read(&mut buf);
    ok(b.docker_out(&["rm", "stall2"]));
    let left = ok(b.docker_out(&["ps", "-aq"]));
    assert!(left.trim().is_empty(), "{left}");
}

// ---------------------------------------------------------------------------------------------
// Archives

fn header(name: &str, typ: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_entry_type(typ);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// A PAX header declaring `size` bytes, with `send` bytes of it actually present, then the end.
fn huge_pax_tar(size: u64, send: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let f = header("ok", tar::EntryType::Regular, 2, 0o644);
    out.extend_from_slice(f.as_bytes());
    out.extend_from_slice(b"ok");
    out.resize(1024, 0);
    let p = header("PaxHeaders/x", tar::EntryType::XHeader, size, 0o644);
    out.extend_from_slice(p.as_bytes());
    out.extend(std::iter::repeat_n(b'a', send));
    out
}

/// A huge PAX header (or GNU long name) is refused with Go's error as soon as its header goes
/// by — it is never read into memory — through `import`, `load` and `cp`.
#[test]
fn huge_pax_headers_are_refused_at_the_header() {
    require!(
        ready() && common::have_busybox(),
        "needs root, the docker CLI and busybox-static"
    );
    let b = start_with_busybox();
    let before_images = ok(b.docker_out(&["images", "-q"]));
    let p = b.dir.path().join("pax.tar");
    // 1 GiB declared, 8 MiB sent: the answer must name the header, not an early EOF.
    std::fs::write(&p, huge_pax_tar(1 << 30, 8 << 20)).unwrap();
    let t0 = Instant::now();
    let imp = docker_with_stdin(&b, &["import", "-", "pax:1"], &p);
    assert!(!imp.status.success());
    assert!(
        stderr(&imp).contains("archive/tar: header field too long"),
        "{}",
        stderr(&imp)
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    // `docker load` reads the outer archive with the same guard.
    let load = b.docker_out(&["load", "-i", p.to_str().unwrap()]);
    assert!(!load.status.success());
    assert!(
        common::stdout(&load).contains("header field too long")
            || stderr(&load).contains("header field too long"),
        "{}{}",
        common::stdout(&load),
        stderr(&load)
    );
    // `docker cp` into a container.
    ok(b.docker_out(&["create", "--name", "paxc", "busybox", "true"]));
    let mut cmd = b.docker();
    cmd.args(["cp", "-", "paxc:/tmp"])
        .stdin(std::fs::File::open(&p).unwrap());
    let cp = cmd.output().unwrap();
    assert!(!cp.status.success());
    assert!(
        stderr(&cp).contains("header field too long"),
        "{}",
        stderr(&cp)
    );
    assert_eq!(ok(b.docker_out(&["images", "-q"])), before_images);
    // berthd is fine.
    ok(b.docker_out(&["version"]));
}

/// A GNU sparse entry of 4 GiB with one block of data: extracted as a sparse file that takes
/// the disk space of its data; device nodes and setuid files stay inside the layer.
#[test]
fn sparse_entries_device_nodes_and_setuid_files_are_contained() {
    require!(ready(), NOT_READY);
    let b = start(&[]);
    let mut out = Vec::new();
    // Old GNU sparse: one 512-byte data block at offset 0, real size 4 GiB.
    let mut h = tar::Header::new_gnu();
    h.set_path("sparse").unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(512);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    {
        let g = h.as_gnu_mut().unwrap();
        g.sparse[0].offset = *b"00000000000\0";
        g.sparse[0].numbytes = *b"00000001000\0";
        // 4 GiB: a last, empty chunk at the end makes the trailing hole.
        g.realsize = *b"40000000000\0";
        g.sparse[1].offset = *b"40000000000\0";
        g.sparse[1].numbytes = *b"00000000000\0";
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&[b'D'; 512]);
    let dev = header("dev/evil-null", tar::EntryType::Char, 0, 0o666);
    let mut dev = dev;
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    dev.set_cksum();
    out.extend_from_slice(dev.as_bytes());
    let suid = header("bin/suid", tar::EntryType::Regular, 3, 0o4755);
    out.extend_from_slice(suid.as_bytes());
    out.extend_from_slice(b"#!\n");
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    let p = b.dir.path().join("sparse.tar");
    std::fs::write(&p, &out).unwrap();
    let t0 = Instant::now();
    let imp = docker_with_stdin(&b, &["import", "-", "sparse:1"], &p);
    assert!(imp.status.success(), "{}", stderr(&imp));
    assert!(
        t0.elapsed() < Duration::from_secs(120),
        "{:?}",
        t0.elapsed()
    );
    let upper = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{.GraphDriver.Data.UpperDir}}",
        "sparse:1",
    ]));
    let upper = Path::new(upper.trim());
    assert!(upper.starts_with(b.data_root()), "{}", upper.display());
    let m = std::fs::metadata(upper.join("sparse")).unwrap();
    assert_eq!(m.len(), 4 << 30);
    assert!(
        m.blocks() * 512 < 16 << 20,
        "the holes were written: {} blocks",
        m.blocks()
    );
    let mut first = [0u8; 4];
    std::fs::File::open(upper.join("sparse"))
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert_eq!(&first, b"DDDD");
    // As dockerd (running as root): the device node and the setuid bit are kept, inside the
    // layer, where nothing on the host uses them.
    let d = std::fs::symlink_metadata(upper.join("dev/evil-null")).unwrap();
    assert_eq!(d.mode() & 0o170000, 0o020000);
    let s = std::fs::metadata(upper.join("bin/suid")).unwrap();
    assert_eq!(s.mode() & 0o7777, 0o4755);
    // The image saves back to the same DiffID (the sparse entry's stream kept compact).
    let saved = b.dir.path().join("saved.tar");
    ok(b.docker_out(&["save", "-o", saved.to_str().unwrap(), "sparse:1"]));
    assert!(std::fs::metadata(&saved).unwrap().len() < 1 << 20);
}

/// Build contexts with `..`, absolute names and symlink escapes write nothing outside.
/// A tar entry to craft: name, type, link target, content.
type TarEntry = (String, tar::EntryType, String, Vec<u8>);

#[test]
fn hostile_build_contexts_stay_inside() {
    require!(ready(), NOT_READY);
    let b = start(&[]);
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("evil");
    let tpath = target.to_str().unwrap().trim_start_matches('/').to_string();
    let df = b"FROM scratch\nCOPY . /\n";
    let cases: Vec<(&str, Vec<TarEntry>)> = vec![
        (
            "dotdot",
            vec![(
                format!("../../../../../../../../{tpath}"),
                tar::EntryType::Regular,
                String::new(),
                b"x".to_vec(),
            )],
        ),
        (
            "absolute",
            vec![(
                format!("/{tpath}"),
                tar::EntryType::Regular,
                String::new(),
                b"x".to_vec(),
            )],
        ),
        (
            "symlink then file",
            vec![
                (
                    "l".into(),
                    tar::EntryType::Symlink,
                    outside.path().display().to_string(),
                    vec![],
                ),
                (
                    "l/evil".into(),
                    tar::EntryType::Regular,
                    String::new(),
                    b"x".to_vec(),
                ),
            ],
        ),
        (
            "hard link to /etc/shadow",
            vec![(
                "h".into(),
                tar::EntryType::Link,
                "/etc/shadow".into(),
                vec![],
            )],
        ),
    ];
    let shadow = std::fs::read("/etc/shadow").ok();
    for (what, entries) in cases {
        let mut raw = Vec::new();
        let mut push = |name: &str, typ: tar::EntryType, link: &str, data: &[u8]| {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_entry_type(typ);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(0);
            h.set_cksum();
            raw.extend_from_slice(h.as_bytes());
            raw.extend_from_slice(data);
            raw.resize(raw.len().div_ceil(512) * 512, 0);
        };
        push("Dockerfile", tar::EntryType::Regular, "", df);
        for (n, t, l, d) in &entries {
            push(n, *t, l, d);
        }
        raw.resize(raw.len() + 1024, 0);
        let mut c = Conn::unix(&b.socket);
        let req = format!(
            "POST /build?t=ctx:1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
            raw.len()
        );
        c.stream_mut().write_all(req.as_bytes()).unwrap();
        c.stream_mut().write_all(&raw).unwrap();
        let r = c.read_response(false);
        assert!(r.status < 500, "{what}: {} {}", r.status, r.text());
        assert!(!target.exists(), "{what}: wrote outside");
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "{what}"
        );
        let _ = b.docker_out(&["rmi", "-f", "ctx:1"]);
    }
    assert_eq!(std::fs::read("/etc/shadow").ok(), shadow);
}

// ---------------------------------------------------------------------------------------------
// Registries

/// A registry that answers every manifest with `size` bytes (Content-Length or chunked).
fn fake_registry(size: usize, chunked: bool) -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        l.set_nonblocking(false).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        for s in l.incoming() {
            if Instant::now() > deadline {
                break;
            }
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                let mut buf = vec![0u8; 8192];
                let mut head = Vec::new();
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    head.extend_from_slice(&buf[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                if !text.starts_with("GET ") && !text.starts_with("HEAD ") {
                    // A TLS hello: not spoken here.
                    return;
                }
                let path = text.split(' ').nth(1).unwrap_or("").to_string();
                if path == "/v2/" {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    );
                    return;
                }
                let ct = "application/vnd.docker.distribution.manifest.v2+json";
                let fill = b"{\"schemaVersion\":2,\"x\":\"";
                if chunked {
                    let _ = s.write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").as_bytes(),
                    );
                    let mut sent = 0;
                    let chunk = vec![b'a'; 64 << 10];
                    let _ = s.write_all(format!("{:x}\r\n", fill.len()).as_bytes());
                    let _ = s.write_all(fill);
                    let _ = s.write_all(b"\r\n");
                    while sent < size {
                        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                            .is_err()
                            || s.write_all(&chunk).is_err()
                            || s.write_all(b"\r\n").is_err()
                        {
                            return;
                        }
                        sent += chunk.len();
                    }
                    let _ = s.write_all(b"0\r\n\r\n");
                } else {
                    let _ = s.write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n").as_bytes(),
                    );
                    let _ = s.write_all(fill);
                    let chunk = vec![b'a'; 64 << 10];
                    let mut sent = fill.len();
                    while sent < size {
                        let n = chunk.len().min(size - sent);
                        if s.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        sent += n;
                    }
                }
            });
        }
    });
    (port, h)
}

/// A manifest over containerd's 4 MiB cap is refused, whether its size is announced or not.
#[test]
fn oversized_manifests_are_refused() {
    require!(ready(), NOT_READY);
    let b = start(&[]);
    for chunked in [false, true] {
        let (port, _h) = fake_registry(64 << 20, chunked);
        let t0 = Instant::now();
        let o = b.docker_out(&["pull", &format!("127.0.0.1:{port}/big:latest")]);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains("rejecting"), "chunked={chunked}: {err}");
        assert!(err.contains("manifest"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    }
    // Under the cap: not refused for its size (the fake manifest is not a valid one).
    let (port, _h) = fake_registry(1 << 20, false);
    let o = b.docker_out(&["pull", &format!("127.0.0.1:{port}/small:latest")]);
    assert!(!o.status.success());
    assert!(!stderr(&o).contains("rejecting"), "{}", stderr(&o));
    ok(b.docker_out(&["version"]));
}
