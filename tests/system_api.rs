//! The API server in-process: headers, versions, routing, ping/version/info, events, keep-alive,
//! and bollard as a client.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use berth::server::ServerOptions;
use common::{Conn, InProcess};

fn assert_common_headers(r: &common::Resp) {
    assert_eq!(r.header("Api-Version"), Some("1.51"));
    assert_eq!(r.header("Ostype"), Some("linux"));
    assert_eq!(r.header("Docker-Experimental"), Some("false"));
    let server = r.header("Server").expect("Server header");
    assert!(
        server.starts_with("berth/") && server.ends_with(" (linux)"),
        "{server}"
    );
}

#[test]
fn ping_get_and_head() {
    let s = InProcess::start();
    let mut c = Conn::unix(&s.socket);
    let r = c.request("GET", "/_ping", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "OK");
    assert_eq!(r.header("Builder-Version"), Some("1"));
    assert_eq!(r.header("Swarm"), Some("inactive"));
    assert_eq!(
        r.header("Cache-Control"),
        Some("no-cache, no-store, must-revalidate")
    );
    assert_eq!(r.header("Pragma"), Some("no-cache"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_common_headers(&r);
    // HEAD on the same keep-alive connection.
    let r = c.request("HEAD", "/_ping", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("0"));
    assert_eq!(r.header("Swarm"), Some("inactive"));
    assert!(r.body.is_empty());
    // And versioned.
    let r = c.request("GET", "/v1.41/_ping", None);
    assert_eq!(r.status, 200);
}

#[test]
fn versions_in_the_path() {
    let s = InProcess::start();
    let mut c = Conn::unix(&s.socket);
    for path in [
        "/version",
        "/v1.51/version",
        "/v1.24/version",
        "/v1.41/version",
    ] {
        let r = c.request("GET", path, None);
        assert_eq!(r.status, 200, "{path}");
        assert_common_headers(&r);
        assert_eq!(r.json()["ApiVersion"], "1.51");
    }
    let r = c.request("GET", "/v1.12/version", None);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.json()["message"],
        "client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
    );
    assert_common_headers(&r);
    let r = c.request("GET", "/v1.52/info", None);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "client version 1.52 is too new. Maximum supported API version is 1.51"
    );
    let r = c.request("GET", "/v2/info", None);
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("is too new"));
}

#[test]
fn unknown_routes_are_404_page_not_found() {
    let s = InProcess::start();
    let mut c = Conn::unix(&s.socket);
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/v1.41/nope"),
        ("POST", "/_ping"),
        ("GET", "/v1.a/info"),
        ("GET", "/info/"),
        ("DELETE", "/version"),
    ] {
        let r = c.request(method, path, None);
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.json(), serde_json::json!({"message": "page not found"}));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_common_headers(&r);
    }
}

#[test]
fn version_has_dockers_shape() {
    let s = InProcess::start();
    let mut c = Conn::unix(&s.socket);
    let v = c.request("GET", "/version", None).json();
    assert_eq!(v["ApiVersion"], "1.51");
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
    assert!(v["GoVersion"].as_str().unwrap().starts_with("rustc "));
    assert!(!v["KernelVersion"].as_str().unwrap().is_empty());
    assert!(v["BuildTime"].as_str().unwrap().ends_with('Z'));
    assert!(v["Platform"]["Name"].as_str().unwrap().starts_with("berth"));
    let comps = v["Components"].as_array().unwrap();
    let names: Vec<&str> = comps.iter().map(|c| c["Name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Engine", "libcontainer"]);
    assert_eq!(comps[0]["Details"]["ApiVersion"], "1.51");
    assert!(!comps[1]["Version"].as_str().unwrap().is_empty());
    let uname = nix::sys::utsname::uname().unwrap();
    assert_eq!(v["KernelVersion"], uname.release().to_str().unwrap());
}

#[test]
fn info_reads_the_host() {
    let s = InProcess::start();
    let mut c = Conn::unix(&s.socket);
    let info = c.request("GET", "/v1.41/info", None).json();
    let id = info["ID"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    assert_eq!(
        common::read_when_written(&s.dir.path().join("data/engine-id")).trim(),
        id,
        "the ID is persisted in the data root"
    );
    assert_eq!(
        info["NCPU"].as_i64().unwrap(),
        std::thread::available_parallelism().unwrap().get() as i64
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: i64 = meminfo
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(info["MemTotal"].as_i64().unwrap(), kb * 1024);
    assert_eq!(info["OSType"], "linux");
    assert_eq!(info["Architecture"], std::env::consts::ARCH);
    assert_eq!(info["CgroupDriver"], "cgroupfs");
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(info["CgroupVersion"], if v2 { "2" } else { "1" });
    assert_eq!(info["Driver"], "overlay2");
    assert_eq!(info["LoggingDriver"], "json-file");
    assert_eq!(
        info["DockerRootDir"],
        s.dir.path().join("data").display().to_string()
    );
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive");
    assert_eq!(info["DefaultRuntime"], "libcontainer");
    assert!(info["Runtimes"]["libcontainer"].is_object());
    assert_eq!(info["ServerVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["Containers"], 0);
    assert_eq!(info["Images"], 0);
    assert_eq!(info["LiveRestoreEnabled"], false);
    assert_eq!(
        info["RegistryConfig"]["InsecureRegistryCIDRs"],
        serde_json::json!(["::1/128", "127.0.0.0/8"])
    );
    assert_eq!(
        info["RegistryConfig"]["IndexConfigs"]["docker.io"]["Official"],
        true
    );
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if let Some(pretty) = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
    {
        assert_eq!(info["OperatingSystem"], pretty.trim_matches('"'));
    }
    assert!(info["Warnings"].is_array());
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let s = InProcess::start();
    let mut c = Conn::unix(&s.socket);
    for i in 0..50 {
        let path = if i % 2 == 0 {
            "/_ping"
        } else {
            "/v1.44/version"
        };
        let r = c.request("GET", path, None);
        assert_eq!(r.status, 200, "request {i}");
    }
}

#[test]
fn slow_headers_are_cut_off() {
    let s = InProcess::start_with(ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    });
    let mut raw = UnixStream::connect(&s.socket).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = raw.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the server closed the connection instead of waiting forever"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(!text.contains("200 OK"), "{text}");
}

#[test]
fn events_validate_their_query() {
    let s = InProcess::start();
    let mut c = Conn::unix(&s.socket);
    let r = c.request("GET", "/events?since=garbage", None);
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("since"));
    let r = c.request("GET", "/events?filters=%7Bbad", None);
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("invalid filter"));
    // Unknown filter names are ignored, as dockerd does (the stream ends at `until`).
    let r = c.request(
        "GET",
        "/events?since=0&until=1&filters=%7B%22nope%22%3A%5B%22x%22%5D%7D",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.request("GET", "/events?since=20&until=10", None);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "`since` time (20) cannot be after `until` time (10)"
    );
}

#[test]
fn events_stream_until_the_deadline() {
    let s = InProcess::start();
    s.daemon.events().publish(
        berth::events::Event::new("image", "tag", "sha256:abc").attribute("name", "busybox:latest"),
    );
    let until = common::now_secs() + 1;
    let mut c = Conn::unix(&s.socket);
    let started = Instant::now();
    let r = c.request(
        "GET",
        &format!("/events?since=0&until={until}&filters=%7B%22type%22%3A%5B%22image%22%5D%7D"),
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    let lines: Vec<serde_json::Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.text());
    assert_eq!(lines[0]["Type"], "image");
    assert_eq!(lines[0]["Action"], "tag");
    assert_eq!(lines[0]["Actor"]["Attributes"]["name"], "busybox:latest");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn bollard_negotiates_and_reads_system_endpoints() {
    let s = InProcess::start();
    let docker = bollard::Docker::connect_with_unix(
        s.socket.to_str().unwrap(),
        30,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap()
    .negotiate_version()
    .await
    .unwrap();
    assert_eq!(docker.ping().await.unwrap(), "OK");
    let v = docker.version().await.unwrap();
    assert_eq!(v.api_version.as_deref(), Some("1.51"));
    assert_eq!(v.min_api_version.as_deref(), Some("1.24"));
    assert_eq!(v.os.as_deref(), Some("linux"));
    let info = docker.info().await.unwrap();
    assert_eq!(info.os_type.as_deref(), Some("linux"));
    assert_eq!(
        info.docker_root_dir.as_deref(),
        Some(s.dir.path().join("data").to_str().unwrap())
    );
    assert_eq!(info.id.as_deref().map(|i| i.len()), Some(36));
    assert!(info.ncpu.unwrap() >= 1);
}

#[test]
fn shutdown_completes_a_request_in_flight() {
    let mut s = InProcess::start_with(ServerOptions {
        drain_timeout: Duration::from_secs(10),
        ..ServerOptions::default()
    });
    let until = common::now_secs() + 2;
    let mut c = Conn::unix(&s.socket);
    c.stream_mut()
        .write_all(format!("GET /events?until={until} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let (status, headers) = c.read_head();
    assert_eq!(status, 200);
    let started = Instant::now();
    s.shutdown_async();
    // The in-flight stream still ends normally at `until`.
    let body = c.read_body(&headers, false);
    assert!(body.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the request was allowed to finish"
    );
    s.shutdown();
    assert!(
        UnixStream::connect(&s.socket).is_err(),
        "nothing listens after shutdown"
    );
}
