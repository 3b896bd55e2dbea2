//! Health checks through the docker CLI, docker-py and raw HTTP: passing, failing, start
//! period, timeout, output cap, image `HEALTHCHECK`, events, `ps`, stop/restart and live
//! restore.

mod common;

use std::time::Duration;

use common::{berthd_with_busybox, inspect, ok, stderr, stdout, wait_for, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

fn health(b: &Berthd, name: &str) -> serde_json::Value {
    let text = inspect(b, name, "{{json .State.Health}}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn status(b: &Berthd, name: &str) -> String {
    health(b, name)["Status"].as_str().unwrap_or("").to_string()
}

fn ps_status(b: &Berthd, name: &str) -> String {
    stdout(&b.docker_out(&[
        "ps",
        "-a",
        "--filter",
        &format!("name=^{name}$"),
        "--format",
        "{{.Status}}",
    ]))
    .trim()
    .to_string()
}

fn ps_names(b: &Berthd, filter: &str) -> Vec<String> {
    let mut v: Vec<String> =
        stdout(&b.docker_out(&["ps", "-a", "--filter", filter, "--format", "{{.Names}}"]))
            .lines()
            .map(str::to_string)
            .collect();
    v.sort();
    v
}

#[test]
fn passing_failing_and_start_period_checks() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let since = common::now_secs().to_string();
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "hc-ok",
        "--health-cmd",
        "echo fine; true",
        "--health-interval",
        "1s",
        "busybox",
        "sleep",
        "1000",
    ]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "hc-bad",
        "--health-cmd",
        "echo broken >&2; exit 1",
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "hc-slow",
        "--health-cmd",
        "exit 3",
        "--health-interval",
        "1s",
        "--health-start-period",
        "60s",
        "--health-start-interval",
        "1s",
        "busybox",
        "sleep",
        "1000",
    ]));
    ok(b.docker_out(&["run", "-d", "--name", "hc-none", "busybox", "sleep", "1000"]));
    // Right after the start every checked container is starting.
    assert_eq!(
        ps_status(&b, "hc-slow").split_once(" (").unwrap().1,
        "health: starting)"
    );

    wait_for("hc-ok healthy", Duration::from_secs(20), || {
        status(&b, "hc-ok") == "healthy"
    });
    wait_for("hc-bad unhealthy", Duration::from_secs(20), || {
        status(&b, "hc-bad") == "unhealthy"
    });
    let ok_h = health(&b, "hc-ok");
    assert_eq!(ok_h["FailingStreak"], 0);
    let log = ok_h["Log"].as_array().unwrap();
    assert_eq!(log[0]["ExitCode"], 0);
    assert_eq!(log[0]["Output"], "fine\n");
    assert!(log[0]["Start"].as_str().unwrap() <= log[0]["End"].as_str().unwrap());

    let bad_h = health(&b, "hc-bad");
    assert!(bad_h["FailingStreak"].as_i64().unwrap() >= 2, "{bad_h}");
    assert_eq!(bad_h["Log"][0]["ExitCode"], 1);
    assert_eq!(bad_h["Log"][0]["Output"], "broken\n");

    // Failures in the start period do not count; the start interval applies.
    wait_for("three probes of hc-slow", Duration::from_secs(20), || {
        health(&b, "hc-slow")["Log"]
            .as_array()
            .map_or(0, |l| l.len())
            >= 3
    });
    let slow = health(&b, "hc-slow");
    assert_eq!(slow["Status"], "starting");
    assert_eq!(slow["FailingStreak"], 0);
    assert_eq!(slow["Log"][0]["ExitCode"], 3);

    // `docker ps`: the status column and the health filter.
    assert!(
        ps_status(&b, "hc-ok").ends_with("(healthy)"),
        "{}",
        ps_status(&b, "hc-ok")
    );
    assert!(ps_status(&b, "hc-bad").ends_with("(unhealthy)"));
    assert!(ps_status(&b, "hc-slow").ends_with("(health: starting)"));
    assert!(!ps_status(&b, "hc-none").contains('('));
    assert_eq!(ps_names(&b, "health=healthy"), ["hc-ok"]);
    assert_eq!(ps_names(&b, "health=unhealthy"), ["hc-bad"]);
    assert_eq!(ps_names(&b, "health=starting"), ["hc-slow"]);
    assert_eq!(ps_names(&b, "health=none"), ["hc-none"]);
    let bad_filter = b.docker_out(&["ps", "--filter", "health=bogus"]);
    assert!(
        stderr(&bad_filter).contains("Unrecognised filter value for health: bogus"),
        "{}",
        stderr(&bad_filter)
    );
    // The check's config as the CLI set it.
    assert_eq!(
        inspect(&b, "hc-bad", "{{json .Config.Healthcheck}}"),
        r#"{"Test":["CMD-SHELL","echo broken >&2; exit 1"],"Interval":1000000000,"Retries":2}"#
    );

    // Events: the status changes, and the probes' execs as dockerd reports them.
    let events = common::events_text(&b, &since, &["container=hc-bad"], "{{.Action}}");
    let actions: Vec<&str> = events.lines().collect();
    assert!(actions.contains(&"health_status: unhealthy"), "{events}");
    assert!(!actions.contains(&"health_status: healthy"), "{events}");
    assert!(
        actions.contains(&"exec_create: /bin/sh -c echo broken >&2; exit 1"),
        "{events}"
    );
    assert!(
        actions.contains(&"exec_start: /bin/sh -c echo broken >&2; exit 1"),
        "{events}"
    );
    assert!(actions.contains(&"exec_die"), "{events}");
    let filtered = common::events_text(
        &b,
        &since,
        &["event=health_status"],
        "{{.Actor.Attributes.name}} {{.Action}}",
    );
    let mut lines: Vec<&str> = filtered.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "hc-bad health_status: unhealthy",
            "hc-ok health_status: healthy"
        ],
        "{filtered}"
    );
    // Probes leave no exec records behind.
    // (A probe running at that moment is listed, as dockerd lists it: between probes the
    // list is empty again, and ended probes never pile up.)
    wait_for("no probe exec listed", Duration::from_secs(10), || {
        inspect(&b, "hc-ok", "{{json .ExecIDs}}") == "null"
    });
    for _ in 0..20 {
        let ids = inspect(&b, "hc-ok", "{{json .ExecIDs}}");
        assert!(ids == "null" || ids.matches(',').count() == 0, "{ids}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Stopped, the check stops and the status is unhealthy (dockerd's); a start begins
    // again at starting.
    ok(b.docker_out(&["stop", "-t", "1", "hc-ok"]));
    assert_eq!(status(&b, "hc-ok"), "unhealthy");
    let probes = health(&b, "hc-ok")["Log"].as_array().unwrap().len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(health(&b, "hc-ok")["Log"].as_array().unwrap().len(), probes);
    ok(b.docker_out(&["start", "hc-ok"]));
    assert_eq!(status(&b, "hc-ok"), "starting");
    wait_for("hc-ok healthy again", Duration::from_secs(20), || {
        status(&b, "hc-ok") == "healthy"
    });
    // Paused, no probes run.
    ok(b.docker_out(&["pause", "hc-ok"]));
    let probes = health(&b, "hc-ok")["Log"].as_array().unwrap().clone();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(health(&b, "hc-ok")["Log"].as_array().unwrap(), &probes);
    ok(b.docker_out(&["unpause", "hc-ok"]));
    wait_for("probes after unpause", Duration::from_secs(20), || {
        health(&b, "hc-ok")["Log"].as_array().unwrap() != &probes
            && status(&b, "hc-ok") == "healthy"
    });
}

#[test]
fn a_hanging_probe_is_killed_at_its_timeout_and_output_is_capped() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "hang",
        "--health-cmd",
        "echo started; exec sleep 100",
        "--health-interval",
        "1s",
        "--health-timeout",
        "1s",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    ]));
    ok(b.docker_out(&[
        "run", "-d", "--name", "chatty", "--health-cmd",
        "i=0; while [ $i -lt 300 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done",
        "--health-interval", "1s", "busybox", "sleep", "1000",
    ]));
    wait_for("hang unhealthy", Duration::from_secs(20), || {
        status(&b, "hang") == "unhealthy"
    });
    let h = health(&b, "hang");
    assert_eq!(h["Log"][0]["ExitCode"], -1, "{h}");
    assert_eq!(
        h["Log"][0]["Output"], "Health check exceeded timeout (1s): started\n",
        "{h}"
    );
    // The killed probes are gone from the container.
    let top = stdout(&b.docker_out(&["top", "hang"]));
    assert!(!top.lines().any(|l| l.ends_with("sleep 100")), "{top}");

    wait_for("chatty healthy", Duration::from_secs(20), || {
        status(&b, "chatty") == "healthy"
    });
    let out = health(&b, "chatty")["Log"][0]["Output"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(out.len(), 4096 + 3);
    assert!(out.ends_with("..."));
    assert!(out.starts_with("0123456789"));
}

#[test]
fn image_healthcheck_no_healthcheck_and_bad_configs() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&["create", "--name", "base", "busybox", "true"]));
    ok(b.docker_out(&[
        "commit",
        "--change",
        "HEALTHCHECK --interval=1s --retries=4 CMD [\"true\"]",
        "base",
        "checked:1",
    ]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "from-image",
        "checked:1",
        "sleep",
        "1000",
    ]));
    wait_for("from-image healthy", Duration::from_secs(20), || {
        status(&b, "from-image") == "healthy"
    });
    assert_eq!(
        inspect(&b, "from-image", "{{json .Config.Healthcheck}}"),
        r#"{"Test":["CMD","true"],"Interval":1000000000,"Retries":4}"#
    );
    // The user's settings override the image's field by field.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "merged",
        "--health-retries",
        "9",
        "checked:1",
        "sleep",
        "1000",
    ]));
    assert_eq!(
        inspect(&b, "merged", "{{json .Config.Healthcheck}}"),
        r#"{"Test":["CMD","true"],"Interval":1000000000,"Retries":9}"#
    );
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "off",
        "--no-healthcheck",
        "checked:1",
        "sleep",
        "1000",
    ]));
    assert_eq!(
        inspect(&b, "off", "{{json .Config.Healthcheck.Test}}"),
        r#"["NONE"]"#
    );
    assert_eq!(inspect(&b, "off", "{{json .State.Health}}"), "null");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!ps_status(&b, "off").contains('('));

    // dockerd's create-time checks.
    let resp = common::http(
        &b.socket,
        &create_request(
            r#"{"Image":"busybox","Healthcheck":{"Test":["CMD","true"],"Interval":5}}"#,
        ),
    )
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(
        resp.contains("Interval in Healthcheck cannot be less than 1ms"),
        "{resp}"
    );
    let resp = common::http(
        &b.socket,
        &create_request(
            r#"{"Image":"busybox","Healthcheck":{"Test":["CMD","true"],"Retries":-1}}"#,
        ),
    )
    .unwrap();
    assert!(
        resp.contains("Retries in Healthcheck cannot be negative"),
        "{resp}"
    );
}

fn create_request(body: &str) -> String {
    format!(
        "POST /v1.51/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn probes_resume_after_a_berthd_restart() {
    require!(ready(), NOT_READY);
    let mut b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "kept",
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        "busybox",
        "sleep",
        "1000",
    ]));
    wait_for("kept healthy", Duration::from_secs(20), || {
        status(&b, "kept") == "healthy"
    });
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit(Duration::from_secs(10));
    b.spawn_with_host(&[]);
    // Restored: the check starts over and passes again.
    wait_for(
        "kept healthy after restore",
        Duration::from_secs(20),
        || status(&b, "kept") == "healthy",
    );
    let before = health(&b, "kept")["Log"].as_array().unwrap().clone();
    wait_for("new probes", Duration::from_secs(20), || {
        health(&b, "kept")["Log"].as_array().unwrap() != &before
    });
}

#[test]
fn docker_py_sees_health() {
    require!(ready(), NOT_READY);
    let python = common::docker_py();
    require!(python.is_some(), common::DOCKER_PY_MISSING);
    let b = berthd_with_busybox(&[]);
    let script = r#"
import docker, sys, time
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
ct = c.containers.run("busybox", ["sleep", "1000"], detach=True, name="pyhc",
    healthcheck={"test": ["CMD", "true"], "interval": 1000000000})
ct.reload()
assert ct.health in ("starting", "healthy"), ct.health
for _ in range(100):
    ct.reload()
    if ct.health == "healthy":
        break
    time.sleep(0.2)
assert ct.health == "healthy", ct.attrs["State"]
assert ct.attrs["State"]["Health"]["Log"][0]["ExitCode"] == 0
assert [x.name for x in c.containers.list(filters={"health": "healthy"})] == ["pyhc"]
print("ok")
"#;
    common::run_docker_py(python.as_deref().unwrap(), &b, script, &[]);
}

#[test]
fn compose_waits_for_a_healthy_dependency() {
    require!(ready(), NOT_READY);
    require!(
        common::have_command("docker-compose"),
        "needs Debian's docker-compose"
    );
    let b = berthd_with_busybox(&[]);
    let dir = b.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        r#"version: "2.4"
services:
  db:
    image: busybox
    command: ["sh", "-c", "sleep 2; touch /ready; exec sleep 1000"]
    network_mode: none
    healthcheck:
      test: ["CMD-SHELL", "[ -f /ready ]"]
      interval: 1s
      retries: 30
  app:
    image: busybox
    command: ["sleep", "1000"]
    network_mode: none
    depends_on:
      db:
        condition: service_healthy
"#,
    )
    .unwrap();
    let compose = |args: &[&str]| common::compose(&b, &dir, "hc", args);
    let o = compose(&["up", "-d"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // app was created only once db had passed its check.
    let db = health(&b, "hc_db_1");
    assert_eq!(db["Status"], "healthy", "{db}");
    let passed = db["Log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ExitCode"] == 0)
        .map(|r| r["End"].as_str().unwrap().to_string())
        .unwrap();
    let app_created = inspect(&b, "hc_app_1", "{{.Created}}");
    assert!(app_created > passed, "{app_created} <= {passed}");
    assert!(ps_status(&b, "hc_app_1").starts_with("Up"));
    let o = compose(&["down"]);
    assert!(o.status.success(), "{}", stderr(&o));
}
