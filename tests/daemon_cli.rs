//! berthd as a process, driven through the real docker CLI: start-up, options, the config
//! file, signals, sockets and pid files.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{free_port, stderr, stdout, Berthd, Conn};
use nix::sys::signal::Signal;

fn ready() -> bool {
    common::is_root() && common::have_docker_cli()
}

const NOT_READY: &str = "needs root and the docker CLI on PATH";

#[test]
fn docker_version_and_info_print_berths_values() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let out = b.docker_out(&["version"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "docker version failed: {}{}",
        text,
        stderr(&out)
    );
    assert!(text.contains("Server: berth "), "{text}");
    assert!(
        text.contains("API version:      1.51 (minimum version 1.24)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("Version:          {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("Go version:       rustc "), "{text}");
    assert!(text.contains(" libcontainer:"), "{text}");

    let out = b.docker_out(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}",
    ]);
    assert_eq!(stdout(&out).trim(), "1.51 1.24 linux");

    let out = b.docker_out(&["info"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "docker info failed: {}{}",
        text,
        stderr(&out)
    );
    let id = common::read_when_written(&b.data_root().join("engine-id"));
    for want in [
        format!("Server Version: {}", env!("CARGO_PKG_VERSION")),
        format!("Docker Root Dir: {}", b.data_root().display()),
        format!("ID: {}", id.trim()),
        "Storage Driver: overlay2".to_string(),
        "Cgroup Driver: cgroupfs".to_string(),
        "Logging Driver: json-file".to_string(),
        "Swarm: inactive".to_string(),
        "Default Runtime: libcontainer".to_string(),
        format!(
            "CPUs: {}",
            std::thread::available_parallelism().unwrap().get()
        ),
    ] {
        assert!(text.contains(&want), "docker info lacks {want:?}:\n{text}");
    }
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert!(
        text.contains(&format!("Cgroup Version: {}", if v2 { 2 } else { 1 })),
        "{text}"
    );

    // The unversioned and an old versioned path both work through curl-like raw HTTP.
    let mut c = Conn::unix(&b.socket);
    let info = c.request("GET", "/v1.41/info", None);
    assert_eq!(info.status, 200);
    assert_eq!(info.json()["ID"], id.trim());
}

#[test]
fn engine_id_survives_a_restart() {
    require!(ready(), NOT_READY);
    let mut b = Berthd::start(&[]);
    let first = stdout(&b.docker_out(&["info", "--format", "{{.ID}}"]))
        .trim()
        .to_string();
    assert_eq!(first.len(), 36, "{first}");
    assert!(b.stop().success());
    b.spawn_with_host(&[]);
    let second = stdout(&b.docker_out(&["info", "--format", "{{.ID}}"]))
        .trim()
        .to_string();
    assert_eq!(first, second);
}

#[test]
fn a_second_daemon_on_a_live_socket_refuses_to_start() {
    require!(ready(), NOT_READY);
    let a = Berthd::start(&[]);
    let mut b = Berthd::prepare();
    let mut args = vec!["-H".to_string(), format!("unix://{}", a.socket.display())];
    args.extend(b.base_args());
    b.spawn_args(&args);
    let status = b.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let log = b.log_text();
    assert!(log.contains("already listening"), "{log}");
    // The first daemon still serves.
    let out = a.docker_out(&["version", "--format", "{{.Server.Version}}"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_stale_socket_file_is_replaced() {
    require!(ready(), NOT_READY);
    let mut b = Berthd::prepare();
    {
        let l = std::os::unix::net::UnixListener::bind(&b.socket).unwrap();
        drop(l); // leaves the socket file with nobody behind it
    }
    assert!(b.socket.exists());
    b.spawn_with_host(&[]);
    let out = b.docker_out(&["version"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::fs::metadata(&b.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_and_exits_0() {
    require!(
        ready() && common::have_busybox(),
        "needs root, the docker CLI and busybox-static"
    );
    let mut b = Berthd::start(&[]);
    let pidfile = b.dir.path().join("berthd.pid");
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        b.pid().to_string()
    );
    let rootfs = std::fs::read(common::busybox_rootfs_tar(b.dir.path())).unwrap();
    let mut c = Conn::unix(&b.socket);
    // An import whose body is still arriving when SIGTERM comes.
    let head = format!(
        "POST /v1.51/images/create?fromSrc=-&repo=inflight&tag=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        rootfs.len()
    );
    c.stream_mut().write_all(head.as_bytes()).unwrap();
    let half = rootfs.len() / 2;
    c.stream_mut().write_all(&rootfs[..half]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    b.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    c.stream_mut().write_all(&rootfs[half..]).unwrap();
    let r = c.read_response(false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"status\":\"sha256:"), "{}", r.text());
    let exit = b.wait_exit(Duration::from_secs(20));
    assert_eq!(exit.code(), Some(0), "log:\n{}", b.log_text());
    assert!(!b.socket.exists(), "the socket file is removed");
    assert!(!pidfile.exists(), "the pid file is removed");
    // The import finished and was kept.
    b.spawn_with_host(&[]);
    let out = b.docker_out(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(stdout(&out).trim(), "inflight:1");
}

#[test]
fn sigterm_ends_endless_event_streams_at_once() {
    require!(ready(), NOT_READY);
    let mut b = Berthd::start(&[]);
    let mut c = Conn::unix(&b.socket);
    c.stream_mut()
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, headers) = c.read_head();
    assert_eq!(status, 200);
    let started = Instant::now();
    b.signal(Signal::SIGTERM);
    let body = c.read_body(&headers, false);
    assert!(body.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stream ended with the shutdown"
    );
    assert_eq!(b.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn bad_flags_give_one_line_and_status_1() {
    require!(common::is_root(), "needs root");
    for (args, want) in [
        (vec!["--bogus"], "--bogus"),
        (vec!["-H", "udp://127.0.0.1:1"], "invalid bind address"),
        (
            vec!["--log-level", "loud"],
            "unable to parse logging level: loud",
        ),
        (vec!["--registry-mirror", "nope"], "invalid mirror"),
        (
            vec!["--config-file", "/nonexistent/berth.json"],
            "/nonexistent/berth.json",
        ),
    ] {
        let out = std::process::Command::new(common::berthd_bin())
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = std::process::Command::new(common::berthd_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stdout(&out).starts_with("berthd version "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn config_file_errors_name_the_key() {
    require!(common::is_root(), "needs root");
    let cases = [
        (r#"{"bogus-key": 1}"#, "the following directives don't match any configuration option: bogus-key"),
        (
            r#"{"data-root": "/elsewhere"}"#,
            "the following directives are specified both as a flag and in the configuration file: data-root",
        ),
        (r#"{"debug": "very"}"#, "invalid value for debug"),
        (r#"{"debug": tru"#, "unable to configure the daemon with file"),
    ];
    for (text, want) in cases {
        let mut b = Berthd::prepare();
        std::fs::write(b.config_file(), text).unwrap();
        let mut args = vec!["-H".to_string(), format!("unix://{}", b.socket.display())];
        args.extend(b.base_args());
        b.spawn_args(&args);
        let status = b.wait_exit(Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{text}");
        let log = b.log_text();
        assert!(log.contains(want), "{text}: {log}");
        assert_eq!(log.trim_end().lines().count(), 1, "{log}");
    }
}

#[test]
fn config_file_values_apply() {
    require!(ready(), NOT_READY);
    let mut b = Berthd::prepare();
    std::fs::write(
        b.config_file(),
        r#"{"debug": true, "live-restore": true, "insecure-registries": ["myreg.example:5000"], "registry-mirrors": ["https://mirror.example"]}"#,
    )
    .unwrap();
    b.spawn_with_host(&[]);
    let out = b.docker_out(&[
        "info",
        "--format",
        "{{.Debug}} {{.LiveRestoreEnabled}} {{json .RegistryConfig.Mirrors}}",
    ]);
    assert_eq!(
        stdout(&out).trim(),
        "true true [\"https://mirror.example/\"]",
        "{}",
        stderr(&out)
    );
    let out = b.docker_out(&["info"]);
    let text = stdout(&out);
    assert!(text.contains("myreg.example:5000"), "{text}");
    assert!(
        text.contains("Registry Mirrors:\n  https://mirror.example/"),
        "{text}"
    );
}

#[test]
fn sighup_reloads_the_config_file_and_emits_an_event() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let debug = || {
        stdout(&b.docker_out(&["info", "--format", "{{.Debug}}"]))
            .trim()
            .to_string()
    };
    assert_eq!(debug(), "false");
    std::fs::write(b.config_file(), r#"{"debug": true}"#).unwrap();
    b.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while debug() != "true" {
        assert!(
            Instant::now() < deadline,
            "debug was not reloaded; log:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let until = (common::now_secs() + 1).to_string();
    let out = b.docker_out(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        "type=daemon",
        "--format",
        "{{.Type}} {{.Action}} {{index .Actor.Attributes \"debug\"}}",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "daemon reload true");
    // A bad file on reload is logged and changes nothing.
    std::fs::write(b.config_file(), r#"{"nope": 1}"#).unwrap();
    b.signal(Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(debug(), "true");
    assert!(
        b.log_text().contains("error reloading configuration"),
        "{}",
        b.log_text()
    );
}

#[test]
fn tcp_without_tlsverify_is_refused_off_loopback_unless_tls_false() {
    require!(ready(), NOT_READY);
    let port = free_port();
    let host = format!("tcp://0.0.0.0:{port}");
    let mut b = Berthd::prepare();
    let mut args = vec!["-H".to_string(), host.clone()];
    args.extend(b.base_args());
    b.spawn_args(&args);
    assert_eq!(b.wait_exit(Duration::from_secs(20)).code(), Some(1));
    assert!(b.log_text().contains("--tlsverify"), "{}", b.log_text());

    // With --tls=false it starts, warns, and says so in /info.
    let mut args = vec![
        "-H".to_string(),
        host,
        "-H".to_string(),
        format!("unix://{}", b.socket.display()),
        "--tls=false".to_string(),
    ];
    args.extend(b.base_args());
    b.spawn_args(&args);
    b.wait_ready();
    let out = common::docker_cli(&format!("tcp://127.0.0.1:{port}"), b.dir.path())
        .args(["info", "--format", "{{json .Warnings}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings = stdout(&out);
    assert!(
        warnings.contains(&format!(
            "API is accessible on http://0.0.0.0:{port} without encryption"
        )),
        "{warnings}"
    );
    assert!(
        b.log_text().contains("without --tlsverify is insecure"),
        "{}",
        b.log_text()
    );
}

#[test]
fn plain_tcp_on_loopback_serves_the_cli() {
    require!(ready(), NOT_READY);
    let port = free_port();
    let b = Berthd::start(&["-H", &format!("tcp://127.0.0.1:{port}")]);
    let out = common::docker_cli(&format!("tcp://127.0.0.1:{port}"), b.dir.path())
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "1.51", "{}", stderr(&out));
    // The unix socket keeps working beside it.
    assert!(b.docker_out(&["info"]).status.success());
}

#[test]
fn a_live_pid_file_or_locked_data_root_refuses_a_second_daemon() {
    require!(ready(), NOT_READY);
    let a = Berthd::start(&[]);
    // Same pid file, own socket and data root.
    let mut b = Berthd::prepare();
    let pidfile = a.dir.path().join("berthd.pid");
    let mut args = vec!["-H".to_string(), format!("unix://{}", b.socket.display())];
    args.extend(b.base_args_with("--pidfile", &pidfile));
    b.spawn_args(&args);
    assert_eq!(b.wait_exit(Duration::from_secs(20)).code(), Some(1));
    assert!(
        b.log_text()
            .contains(&format!("process with PID {} is still running", a.pid())),
        "{}",
        b.log_text()
    );

    // Same data root, own socket and pid file.
    let mut c = Berthd::prepare();
    let mut args = vec!["-H".to_string(), format!("unix://{}", c.socket.display())];
    args.extend(c.base_args_with("--data-root", &a.data_root()));
    c.spawn_args(&args);
    assert_eq!(c.wait_exit(Duration::from_secs(20)).code(), Some(1));
    assert!(
        c.log_text().contains("is another berthd using it?"),
        "{}",
        c.log_text()
    );
    assert!(a.docker_out(&["info"]).status.success());
}

#[test]
fn socket_group_is_applied_or_refused() {
    require!(ready(), NOT_READY);
    let mut b = Berthd::prepare();
    let mut args = vec![
        "-H".to_string(),
        format!("unix://{}", b.socket.display()),
        "--group".to_string(),
        "no-such-group-berth".to_string(),
    ];
    args.extend(b.base_args());
    b.spawn_args(&args);
    assert_eq!(b.wait_exit(Duration::from_secs(20)).code(), Some(1));
    assert!(
        b.log_text().contains("group no-such-group-berth not found"),
        "{}",
        b.log_text()
    );

    let b = Berthd::start(&["--group", "12345"]);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&b.socket).unwrap();
    assert_eq!(meta.gid(), 12345);
    assert_eq!(meta.uid(), 0);
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
}

/// A first start saves its engine ID and its `host` and `none` networks while it already
/// serves: a stop right after its first `/_ping` still leaves them on disk, and the next start
/// has the same ones.
#[test]
fn a_first_start_stopped_at_once_keeps_its_id_and_networks() {
    if !ready() {
        eprintln!("skipped: {NOT_READY}");
        return;
    }
    let mut b = Berthd::start(&[]);
    assert!(b.stop().success(), "{}", b.log_text());
    let id = std::fs::read_to_string(b.data_root().join("engine-id")).unwrap();
    assert_eq!(id.trim().len(), 36, "{id:?}");
    let mut saved = Vec::new();
    for e in std::fs::read_dir(b.data_root().join("network")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".json") && name != "bridges.json" {
            let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            saved.push(format!(
                "{} {}",
                &r["id"].as_str().unwrap()[..12],
                r["name"].as_str().unwrap()
            ));
        } else {
            assert!(
                !name.starts_with(".tmp-"),
                "a temporary file was left: {name}"
            );
        }
    }
    saved.sort();
    assert_eq!(saved.len(), 2, "{saved:?}");
    b.spawn_with_host(&[]);
    let out = b.docker_out(&["info", "--format", "{{.ID}}"]);
    assert_eq!(stdout(&out).trim(), id.trim(), "{}", stderr(&out));
    let out = b.docker_out(&["network", "ls", "--format", "{{.ID}} {{.Name}}"]);
    let mut listed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    listed.sort();
    assert_eq!(listed, saved, "{}", stderr(&out));
    b.stop();
}
