//! `--metrics-addr`: `GET /metrics` in the Prometheus text format, parsed by the Python
//! `prometheus_client` library; the refusal of a non-loopback address without TLS.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::pki::make_pki;
use common::{berthd_with_busybox, free_port, ok, Berthd, Conn, Resp};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

fn python() -> String {
    std::env::var("BERTH_TEST_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/berth-venv/bin/python".to_string())
}

/// Whether the venv has `prometheus_client` (.ci/run installs it).
fn have_prometheus_client() -> bool {
    let py = python();
    Path::new(&py).exists()
        && std::process::Command::new(&py)
            .args(["-c", "import prometheus_client"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

fn get(port: u16, method: &str, path: &str) -> Resp {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics address");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    Conn::new(s).request(method, path, None)
}

/// Parse an exposition with `prometheus_client.parser` and return, per family, its type and
/// samples as `[name, labels, value]`.
fn parse(text: &str) -> serde_json::Value {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new(python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn value(families: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families.as_object()?.values().find_map(|f| {
        f["samples"].as_array()?.iter().find_map(|s| {
            let matches = s[0] == name
                && labels
                    .iter()
                    .all(|(k, v)| s[1].get(*k).and_then(|x| x.as_str()) == Some(*v));
            if matches {
                s[2].as_f64()
            } else {
                None
            }
        })
    })
}

#[test]
fn metrics_expose_dockers_engine_series() {
    require!(ready(), NOT_READY);
    require!(
        have_prometheus_client(),
        "needs prometheus_client in the venv at /var/tmp/berth-venv (.ci/run installs it) or BERTH_TEST_PYTHON"
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let b = berthd_with_busybox(&["--metrics-addr", &addr]);
    assert!(
        b.log_text()
            .contains(&format!("metrics API listening on tcp://{addr}")),
        "{}",
        b.log_text()
    );
    let id = ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "metrics-up",
        "busybox",
        "sleep",
        "100",
    ]))
    .trim()
    .to_string();
    ok(b.docker_out(&["create", "--name", "metrics-idle", "busybox", "true"]));

    let resp = get(port, "GET", "/metrics");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = resp.text();
    let families = parse(&text);
    let types: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    for (name, kind) in [
        ("engine_daemon_engine_info", "gauge"),
        ("engine_daemon_engine_cpus_cpus", "gauge"),
        ("engine_daemon_engine_memory_bytes", "gauge"),
        ("engine_daemon_container_states_containers", "gauge"),
        ("engine_daemon_container_actions_seconds", "histogram"),
        ("engine_daemon_events_total", "counter"),
        ("engine_daemon_events_subscribers_total", "gauge"),
        ("engine_daemon_health_checks_total", "counter"),
        ("engine_daemon_health_checks_failed_total", "counter"),
    ] {
        assert!(
            types.contains(&(name.to_string(), kind.to_string())),
            "no {kind} {name}:\n{text}"
        );
    }
    let state = |s: &str| {
        value(
            &families,
            "engine_daemon_container_states_containers",
            &[("state", s)],
        )
    };
    assert_eq!(state("running"), Some(1.0), "{text}");
    assert_eq!(state("paused"), Some(0.0), "{text}");
    assert_eq!(state("stopped"), Some(1.0), "{text}");

    // The engine's facts are /info's.
    let info = ok(b.docker_out(&["info", "--format", "{{.ID}} {{.NCPU}} {{.MemTotal}}"]));
    let info: Vec<&str> = info.split_whitespace().collect();
    assert_eq!(
        value(
            &families,
            "engine_daemon_engine_info",
            &[
                ("daemon_id", info[0]),
                ("graphdriver", "overlay2"),
                ("os_type", "linux"),
                ("version", env!("CARGO_PKG_VERSION")),
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&families, "engine_daemon_engine_cpus_cpus", &[]),
        Some(info[1].parse().unwrap())
    );
    assert_eq!(
        value(&families, "engine_daemon_engine_memory_bytes", &[]),
        Some(info[2].parse().unwrap())
    );
    // dockerd's initial actions are there before any was observed.
    assert!(
        value(
            &families,
            "engine_daemon_container_actions_seconds_count",
            &[("action", "delete")]
        )
        .is_some(),
        "{text}"
    );
    // Every container has its restart count, labelled with name, ID and image.
    assert_eq!(
        value(
            &families,
            "berth_container_restarts",
            &[
                ("name", "metrics-up"),
                ("id", id.as_str()),
                ("image", "busybox")
            ]
        ),
        Some(0.0),
        "{text}"
    );

    // A running container's resource series, growing between scrapes; the action timings,
    // health checks and events counted by the managers.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "metrics-busy",
        "--cpus",
        "0.3",
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        "--tmpfs",
        "/t",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/t/fill bs=1M count=20 2>/dev/null; while :; do :; done",
    ]));
    std::thread::sleep(Duration::from_millis(1500));
    let busy = [("name", "metrics-busy"), ("image", "busybox")];
    let first = parse(&get(port, "GET", "/metrics").text());
    let cpu1 = value(&first, "berth_container_cpu_seconds_total", &busy).expect("cpu series");
    std::thread::sleep(Duration::from_millis(1500));
    let text = get(port, "GET", "/metrics").text();
    let second = parse(&text);
    let cpu2 = value(&second, "berth_container_cpu_seconds_total", &busy).unwrap();
    assert!(cpu2 > cpu1, "{cpu1} -> {cpu2}");
    let mem = value(&second, "berth_container_memory_usage_bytes", &busy).unwrap();
    assert!(mem >= 19.0 * 1024.0 * 1024.0, "{mem}\n{text}");
    assert!(value(&second, "berth_container_memory_limit_bytes", &busy).unwrap() > mem);
    // A container that is not running has no resource series.
    assert_eq!(
        value(
            &second,
            "berth_container_cpu_seconds_total",
            &[("name", "metrics-idle")]
        ),
        None
    );
    let count = |action: &str| {
        value(
            &second,
            "engine_daemon_container_actions_seconds_count",
            &[("action", action)],
        )
        .unwrap_or(0.0)
    };
    assert!(count("create") >= 3.0, "{text}");
    assert!(count("start") >= 2.0, "{text}");
    assert!(
        value(&second, "engine_daemon_health_checks_total", &[]).unwrap() >= 1.0,
        "{text}"
    );
    assert!(
        value(&second, "engine_daemon_events_total", &[]).unwrap() >= 6.0,
        "{text}"
    );

    // Only GET /metrics.
    let r = get(port, "GET", "/");
    assert_eq!(r.status, 404);
    assert_eq!(get(port, "GET", "/v1.51/info").status, 404);
    assert_eq!(get(port, "POST", "/metrics").status, 404);

    // A removed container's series are gone from the next scrape.
    ok(b.docker_out(&["rm", "-f", "metrics-up", "metrics-idle", "metrics-busy"]));
    let text = get(port, "GET", "/metrics").text();
    assert!(!text.contains("metrics-up"), "{text}");
    let families = parse(&text);
    assert_eq!(
        value(
            &families,
            "engine_daemon_container_states_containers",
            &[("state", "running")]
        ),
        Some(0.0)
    );
}

#[test]
fn metrics_off_loopback_need_tls() {
    require!(
        common::is_root() && common::have_docker_cli(),
        "needs root and the docker CLI"
    );
    let port = free_port();
    let mut b = Berthd::prepare();
    // Set in daemon.json, as dockerd's `metrics-addr` key.
    std::fs::write(
        b.config_file(),
        format!(r#"{{"metrics-addr": "0.0.0.0:{port}"}}"#),
    )
    .unwrap();
    let mut args = vec!["-H".to_string(), format!("unix://{}", b.socket.display())];
    args.extend(b.base_args());
    b.spawn_args(&args);
    assert_eq!(b.wait_exit(Duration::from_secs(30)).code(), Some(1));
    let log = b.log_text();
    assert!(
        log.contains(&format!(
            "failed to start metrics server: refusing to serve metrics on 0.0.0.0:{port} without --tlsverify"
        )),
        "{log}"
    );
    assert!(!b.socket.exists(), "a refused start leaves no API socket");

    // On loopback it serves.
    std::fs::write(
        b.config_file(),
        format!(r#"{{"metrics-addr": "127.0.0.1:{port}"}}"#),
    )
    .unwrap();
    b.spawn_with_host(&[]);
    let r = get(port, "GET", "/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("engine_daemon_engine_info{"),
        "{}",
        r.text()
    );
}

#[test]
fn metrics_speak_the_apis_tls_under_tlsverify() {
    require!(
        common::is_root() && common::have_command("curl"),
        "needs root and curl"
    );
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki(certs.path(), "metrics");
    let port = free_port();
    let s = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    // Off loopback is allowed under --tlsverify; the scrape goes to 127.0.0.1.
    let b = Berthd::start(&[
        "--metrics-addr",
        &format!("0.0.0.0:{port}"),
        "--tlsverify",
        "--tlscacert",
        &s(&pki.ca),
        "--tlscert",
        &s(&pki.server_cert),
        "--tlskey",
        &s(&pki.server_key),
    ]);
    assert!(
        b.log_text().contains(&format!(
            "metrics API listening on tcp+tls://0.0.0.0:{port}"
        )),
        "{}",
        b.log_text()
    );
    let url = format!("https://127.0.0.1:{port}/metrics");
    let curl = |extra: &[String]| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert", &s(&pki.ca)])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let out = curl(&[
        "--cert".to_string(),
        s(&pki.client_cert),
        "--key".to_string(),
        s(&pki.client_key),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("engine_daemon_engine_info{"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Without a client certificate the handshake fails.
    let out = curl(&[]);
    assert!(
        !out.status.success(),
        "a client without a certificate got in"
    );
    assert!(out.stdout.is_empty());
}
