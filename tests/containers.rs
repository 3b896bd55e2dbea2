//! Containers through the docker CLI: run, lifecycle, resources, logs, restart policies and
//! live restore, with a busybox-static image.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{berthd_with_busybox, inspect, mounts_below, ok, stderr, stdout, wait_for, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

/// berthd with busybox imported, under a cgroup parent of its own (so leaks can be checked).
fn daemon() -> (Berthd, CgroupParent) {
    let parent = format!("berth-test-{}", &uuid_like());
    let b = berthd_with_busybox(&["--cgroup-parent", &parent]);
    (b, CgroupParent(parent))
}

/// A test's cgroup parent; its (empty) directories are removed when the test ends.
struct CgroupParent(String);

impl std::ops::Deref for CgroupParent {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        let mut roots: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        roots.push(PathBuf::from("/sys/fs/cgroup"));
        for root in roots {
            let dir = root.join(&self.0);
            if let Ok(children) = std::fs::read_dir(&dir) {
                for c in children.flatten().filter(|c| c.path().is_dir()) {
                    let _ = std::fs::remove_dir(c.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// The container's cgroup directory for `controller` (v1) or the unified one (v2).
fn cgroup_dir(parent: &str, id: &str, controller: &str) -> PathBuf {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Path::new("/sys/fs/cgroup").join(parent).join(id)
    } else {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(parent)
            .join(id)
    }
}

/// A v1 container's `cpu.cfs_quota_us` (`cpu` co-mounted with `cpuacct` or alone).
fn v1_cfs_quota(parent: &str, id: &str) -> String {
    let cpu = cgroup_dir(parent, id, "cpu,cpuacct");
    let cpu = if cpu.exists() {
        cpu
    } else {
        cgroup_dir(parent, id, "cpu")
    };
    std::fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
        .unwrap()
        .trim()
        .to_string()
}

/// berthd's binds of its two directories on themselves (`runtime::subtree`).
fn own_binds(b: &Berthd) -> Vec<PathBuf> {
    vec![
        b.data_root().join("containers"),
        b.dir.path().join("exec").join("netns"),
    ]
}

fn mounts_mentioning(s: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(s))
        .map(str::to_string)
        .collect()
}

#[test]
fn run_prints_output_and_exit_codes() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    let o = b.docker_out(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(stdout(&o), "hi\n", "{}", stderr(&o));
    assert!(o.status.success());
    // Streams stay apart.
    let o = b.docker_out(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    let o = b.docker_out(&["run", "--name", "three", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(
        inspect(&b, "three", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 3"
    );
    let o = b.docker_out(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("exec: \"nosuchcmd\": executable file not found in $PATH"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    // A missing image: the CLI asks for a pull, which must fail without leaving this machine
    // (nothing listens on port 9 of 127.0.0.1; a bare `nosuchimage` would be looked up on
    // Docker Hub through the host's resolver).
    let o = b.docker_out(&["run", "--rm", "127.0.0.1:9/nosuchimage"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Unable to find image '127.0.0.1:9/nosuchimage:latest' locally"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["run", "--rm", "--pull", "never", "nosuchimage"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("No such image: nosuchimage:latest"),
        "{}",
        stderr(&o)
    );
    // --rm removed the containers above.
    let all = ok(b.docker_out(&["ps", "-aq"]));
    assert_eq!(all.lines().count(), 1, "{all}");

    // The daemon starts once, with the environment it was given: no glibc tunables of its own
    // (util::mem empties its threads' caches instead), and none reaches a container or a
    // supervisor.
    // The test's own GLIBC_TUNABLES, if any, is what berthd and its supervisors have.
    let ours = std::env::var("GLIBC_TUNABLES").ok();
    let tunables = |environ: &str| {
        environ
            .split('\0')
            .find_map(|v| v.strip_prefix("GLIBC_TUNABLES="))
            .map(str::to_string)
    };
    let environ = std::fs::read(format!("/proc/{}/environ", b.pid())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert_eq!(tunables(&environ), ours, "{environ}");
    assert!(!environ.contains("BERTH_GLIBC"), "{environ}");
    let env = ok(b.docker_out(&["run", "--rm", "busybox", "env"]));
    assert!(
        !env.contains("GLIBC_TUNABLES") && !env.contains("BERTH_"),
        "{env}"
    );
    ok(b.docker_out(&["run", "-d", "--name", "envsup", "busybox", "sleep", "60"]));
    let pid: i32 = inspect(&b, "envsup", "{{.State.Pid}}").parse().unwrap();
    let ppid = &stat_fields(pid).unwrap()[1];
    let sup = std::fs::read(format!("/proc/{ppid}/environ")).unwrap();
    let sup = String::from_utf8_lossy(&sup);
    assert_eq!(tunables(&sup), ours, "{sup}");
    assert!(!sup.contains("BERTH_"), "{sup}");
    ok(b.docker_out(&["rm", "-f", "envsup"]));
}

#[test]
fn detached_lifecycle_logs_and_signals() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    let script = "trap 'echo got usr1' USR1; trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.1; done";
    let id = ok(b.docker_out(&["run", "-d", "--name", "web", "busybox", "sh", "-c", script]));
    let id = id.trim();
    assert_eq!(id.len(), 64);
    wait_for("started in logs", Duration::from_secs(10), || {
        stdout(&b.docker_out(&["logs", "web"])).contains("started")
    });
    assert_eq!(inspect(&b, "web", "{{.State.Running}}"), "true");
    let pid: i32 = inspect(&b, "web", "{{.State.Pid}}").parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // logs -f follows until the container stops.
    let mut follow = b.docker();
    follow.args(["logs", "-f", "web"]);
    follow.stdout(std::process::Stdio::piped());
    let follower = follow.spawn().unwrap();
    ok(b.docker_out(&["kill", "-s", "USR1", "web"]));
    wait_for("usr1 in logs", Duration::from_secs(10), || {
        stdout(&b.docker_out(&["logs", "web"])).contains("got usr1")
    });
    assert_eq!(inspect(&b, "web", "{{.State.Running}}"), "true");
    ok(b.docker_out(&["stop", "web"]));
    assert_eq!(
        inspect(&b, "web", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    let followed = follower.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&followed.stdout);
    assert!(
        text.contains("started") && text.contains("got usr1") && text.contains("bye"),
        "{text}"
    );
    // start again, restart, then kill.
    ok(b.docker_out(&["start", "web"]));
    assert_eq!(inspect(&b, "web", "{{.State.Running}}"), "true");
    let first = inspect(&b, "web", "{{.State.StartedAt}}");
    ok(b.docker_out(&["restart", "-t", "5", "web"]));
    assert_ne!(inspect(&b, "web", "{{.State.StartedAt}}"), first);
    ok(b.docker_out(&["kill", "web"]));
    assert_eq!(
        inspect(&b, "web", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    let o = b.docker_out(&["stop", "nosuch"]);
    assert!(
        stderr(&o).contains("No such container: nosuch"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["kill", "web"]);
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    ok(b.docker_out(&["rm", "web"]));
    let o = b.docker_out(&["inspect", "web"]);
    assert!(!o.status.success());
}

/// Docker's whole signal table: real-time signals by name and number (an image's
/// `STOPSIGNAL SIGRTMIN+3`, as systemd images have), the aliases, and moby's answers for
/// signals it refuses.
#[test]
fn real_time_stop_signals_and_refused_signals() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    ok(b.docker_out(&["create", "--name", "base", "busybox", "true"]));
    ok(b.docker_out(&["commit", "-c", "STOPSIGNAL SIGRTMIN+3", "base", "rtstop:1"]));
    let script = "trap 'echo got 37; exit 0' 37; trap 'echo got 64' 64; echo started; while true; do sleep 0.1; done";
    ok(b.docker_out(&["run", "-d", "--name", "rt", "rtstop:1", "sh", "-c", script]));
    wait_for("started in logs", Duration::from_secs(10), || {
        stdout(&b.docker_out(&["logs", "rt"])).contains("started")
    });
    ok(b.docker_out(&["kill", "-s", "RTMAX", "rt"]));
    wait_for("rtmax in logs", Duration::from_secs(10), || {
        stdout(&b.docker_out(&["logs", "rt"])).contains("got 64")
    });
    ok(b.docker_out(&["stop", "rt"]));
    assert_eq!(inspect(&b, "rt", "{{.State.ExitCode}}"), "0");
    assert!(stdout(&b.docker_out(&["logs", "rt"])).contains("got 37"));

    // Refused: a number outside the table, a name that is not in it, a bad stop signal.
    ok(b.docker_out(&["start", "rt"]));
    let o = b.docker_out(&["kill", "-s", "32", "rt"]);
    assert!(
        stderr(&o)
            .contains("Cannot kill container: rt: the linux daemon does not support signal 32"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["kill", "-s", "RTMIN+16", "rt"]);
    assert!(
        stderr(&o).contains("Cannot kill container: rt: Invalid signal: RTMIN+16"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["kill", "nosuch"]);
    assert!(
        stderr(&o).contains("Cannot kill container: nosuch: No such container: nosuch"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["create", "--stop-signal", "BOGUS", "busybox", "true"]);
    assert!(
        stderr(&o).contains("Invalid signal: BOGUS"),
        "{}",
        stderr(&o)
    );
    // A stop signal the kernel refuses: SIGKILL after moby's two seconds, not the timeout.
    let started = std::time::Instant::now();
    ok(b.docker_out(&["stop", "-s", "99", "-t", "30", "rt"]));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(inspect(&b, "rt", "{{.State.ExitCode}}"), "137");
}

/// moby's `validateNetMode` for containers that share another's network namespace, the
/// shared namespace recorded by ID (a rename keeps the join), and `--add-host` on the host's
/// network.
#[test]
fn shared_network_namespace_rules_and_host_mode_hosts() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    ok(b.docker_out(&["run", "-d", "--name", "owner", "busybox", "sleep", "1000"]));
    let owner = inspect(&b, "owner", "{{.Id}}");
    for (flags, text) in [
        (
            &["-h", "x"][..],
            "conflicting options: hostname and the network mode",
        ),
        (
            &["--dns", "192.0.2.1"][..],
            "conflicting options: dns and the network mode",
        ),
        (
            &["--add-host", "a:192.0.2.1"][..],
            "conflicting options: custom host-to-IP mapping and the network mode",
        ),
        (
            &["-p", "8080:80"][..],
            "conflicting options: port publishing and the container type network mode",
        ),
        (
            &["--expose", "80"][..],
            "conflicting options: port exposing and the container type network mode",
        ),
    ] {
        let mut args = vec!["create", "--network", "container:owner"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "true"]);
        let o = b.docker_out(&args);
        assert!(
            !o.status.success() && stderr(&o).contains(text),
            "{flags:?}: {}",
            stderr(&o)
        );
    }
    let o = b.docker_out(&["create", "--uts", "host", "-h", "x", "busybox", "true"]);
    assert!(
        stderr(&o).contains("conflicting options: hostname and the UTS mode"),
        "{}",
        stderr(&o)
    );
    // Recorded by ID: the join survives a rename of the owner.
    ok(b.docker_out(&[
        "create",
        "--name",
        "joiner",
        "--network",
        "container:owner",
        "busybox",
        "sleep",
        "1000",
    ]));
    assert_eq!(
        inspect(&b, "joiner", "{{.HostConfig.NetworkMode}}"),
        format!("container:{owner}")
    );
    ok(b.docker_out(&["rename", "owner", "owner2"]));
    ok(b.docker_out(&["start", "joiner"]));
    let ns = |c: &str| {
        let pid = inspect(&b, c, "{{.State.Pid}}");
        std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap()
    };
    assert_eq!(ns("joiner"), ns("owner2"));
    ok(b.docker_out(&["rm", "-f", "joiner", "owner2"]));
    // The host's network: its own /etc/hosts, or with --add-host the default lines and those;
    // published ports are discarded with dockerd's warning.
    let hosts = ok(b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--add-host",
        "foo:192.0.2.7",
        "busybox",
        "cat",
        "/etc/hosts",
    ]));
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.contains("192.0.2.7\tfoo\n"), "{hosts}");
    let o = b.docker_out(&[
        "create",
        "--network",
        "host",
        "-p",
        "8080:80",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&o).contains("Published ports are discarded when using host network mode"),
        "{}",
        stderr(&o)
    );
}

/// Error texts clients show, as moby words them.
#[test]
fn dockerd_error_texts() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    ok(b.docker_out(&["run", "-d", "--name", "t1", "busybox", "sleep", "1000"]));
    ok(b.docker_out(&["create", "--name", "t2", "busybox", "true"]));
    let err = |args: &[&str]| {
        let o = b.docker_out(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        stderr(&o)
    };
    assert!(err(&["unpause", "t2"]).contains("is not paused"));
    assert!(err(&["rename", "t2", "t1"]).contains(
        "Error when allocating new name: Conflict. The container name \"/t1\" is already in use"
    ));
    assert!(err(&["rename", "t2", "bad name"]).contains(
        "Error when allocating new name: Invalid container name (/bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
    ));
    assert!(
        err(&["container", "prune", "-f", "--filter", "until=bogus"])
            .contains("failed to parse value as time or duration: \"bogus\"")
    );
    let e = err(&["update", "--restart", "bogus", "t1"]);
    assert!(
        e.contains("invalid restart policy: unknown policy 'bogus'"),
        "{e}"
    );
    // top: the first line of ps's complaint, not its usage text.
    let e = err(&["top", "t1", "-o", "bogus"]);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("Error response from daemon: "), "{e}");
    // The CLI's empty `CgroupnsMode` is recorded as the default it stands for.
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(
        inspect(&b, "t2", "{{.HostConfig.CgroupnsMode}}"),
        if v2 { "private" } else { "host" }
    );
    // moby records the CLI's swappiness of -1 as unset, and names a log file for json-file
    // only.
    ok(b.docker_out(&[
        "create",
        "--name",
        "t3",
        "--log-driver",
        "local",
        "busybox",
        "true",
    ]));
    assert_eq!(
        inspect(&b, "t3", "{{.HostConfig.MemorySwappiness}}|{{.LogPath}}"),
        "<nil>|"
    );
    // /info names the log drivers.
    assert_eq!(
        ok(b.docker_out(&["info", "-f", "{{json .Plugins.Log}}"])).trim(),
        r#"["json-file","local"]"#
    );
}

#[test]
fn ps_filters_formats_and_inspect() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    ok(b.docker_out(&[
        "run", "-d", "--name", "up", "--label", "tier=web", "busybox", "sleep", "100",
    ]));
    let o = b.docker_out(&[
        "run", "--name", "down", "--label", "tier=db", "busybox", "sh", "-c", "exit 2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    ok(b.docker_out(&["create", "--name", "fresh", "busybox", "true"]));
    let names = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ps", "--format", "{{.Names}}"];
        a.extend_from_slice(args);
        let mut v: Vec<String> = ok(b.docker_out(&a)).lines().map(str::to_string).collect();
        v.sort();
        v
    };
    assert_eq!(names(&[]), vec!["up"]);
    assert_eq!(names(&["-a"]), vec!["down", "fresh", "up"]);
    assert_eq!(names(&["-a", "--filter", "status=exited"]), vec!["down"]);
    assert_eq!(names(&["-a", "--filter", "exited=2"]), vec!["down"]);
    assert_eq!(names(&["-a", "--filter", "label=tier=web"]), vec!["up"]);
    assert_eq!(names(&["-a", "--filter", "name=fre"]), vec!["fresh"]);
    assert_eq!(names(&["-a", "--filter", "status=created"]), vec!["fresh"]);
    assert_eq!(
        names(&["-a", "--filter", "ancestor=busybox"]),
        vec!["down", "fresh", "up"]
    );
    assert_eq!(
        names(&["-a", "--filter", "before=fresh"]),
        vec!["down", "up"]
    );
    assert_eq!(
        names(&["-a", "--filter", "since=up"]),
        vec!["down", "fresh"]
    );
    assert_eq!(names(&["-a", "-n", "1"]), vec!["fresh"]);
    // moby's view of the command: arguments with a space quoted.
    assert_eq!(
        ok(b.docker_out(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            "name=down",
            "--format",
            "{{.Command}}"
        ])),
        "\"sh -c 'exit 2'\"\n"
    );
    // Exposed ports show (and match `expose=`) only while the container runs.
    ok(b.docker_out(&[
        "create", "--name", "exp", "--expose", "9999", "busybox", "true",
    ]));
    assert_eq!(
        ok(b.docker_out(&[
            "ps",
            "-a",
            "--filter",
            "name=exp",
            "--format",
            "[{{.Ports}}]"
        ])),
        "[]\n"
    );
    assert!(names(&["-a", "--filter", "expose=9999"]).is_empty());
    // `ancestor` takes images built on the named one; the `Image` column shows the image's ID
    // once the name the container was created with names another image (or none).
    ok(b.docker_out(&["commit", "exp", "child:1"]));
    ok(b.docker_out(&["create", "--name", "kid", "child:1", "true"]));
    assert_eq!(
        names(&["-a", "--filter", "ancestor=busybox"]),
        vec!["down", "exp", "fresh", "kid", "up"]
    );
    assert_eq!(names(&["-a", "--filter", "ancestor=child:1"]), vec!["kid"]);
    assert_eq!(
        ok(b.docker_out(&["ps", "-a", "--filter", "name=kid", "--format", "{{.Image}}"])),
        "child:1\n"
    );
    ok(b.docker_out(&["tag", "busybox", "child:1"]));
    let child_id = ok(b.docker_out(&["inspect", "-f", "{{.Image}}", "kid"]));
    assert_eq!(
        ok(b.docker_out(&["ps", "-a", "--filter", "name=kid", "--format", "{{.Image}}"])),
        format!("{}\n", &child_id.trim()[7..19])
    );
    ok(b.docker_out(&["rm", "kid", "exp"]));
    // A container that wrote nothing has a writable layer of 0 bytes (the runtime's
    // /etc/mtab link is not counted, as moby's init layer is not).
    let size = ok(b.docker_out(&["ps", "-s", "--format", "{{.Size}}", "--filter", "name=up"]));
    assert!(size.starts_with("0B "), "{size}");
    // The list leaves a zero `SizeRw` out, as moby's `omitempty` does.
    let list = common::Conn::unix(&b.socket)
        .request(
            "GET",
            "/v1.51/containers/json?size=1&filters=%7B%22name%22%3A%5B%22up%22%5D%7D",
            None,
        )
        .json();
    assert!(list[0].get("SizeRw").is_none(), "{list}");
    assert!(list[0]["SizeRootFs"].as_i64().unwrap() > 0, "{list}");
    // inspect shows the system paths recorded at create, as dockerd's does.
    let paths = inspect(
        &b,
        "up",
        "{{json .HostConfig.MaskedPaths}} {{json .HostConfig.ReadonlyPaths}}",
    );
    assert!(
        paths.contains("\"/proc/kcore\"") && paths.contains("\"/proc/sysrq-trigger\"]"),
        "{paths}"
    );
    let o = b.docker_out(&["ps", "--filter", "bogus=1"]);
    assert!(
        !o.status.success() && stderr(&o).contains("invalid filter"),
        "{}",
        stderr(&o)
    );
    let st = ok(b.docker_out(&[
        "ps",
        "-a",
        "--filter",
        "name=down",
        "--format",
        "{{.Status}}|{{.Command}}|{{.Image}}",
    ]));
    assert!(st.starts_with("Exited (2) "), "{st}");
    assert!(
        st.contains("|\"sh -c 'exit 2'\"|busybox") || st.contains("sh -c"),
        "{st}"
    );
    let up = ok(b.docker_out(&["ps", "--filter", "name=up", "--format", "{{.Status}}"]));
    assert!(up.starts_with("Up "), "{up}");
    // inspect.
    let v: serde_json::Value = serde_json::from_str(&ok(b.docker_out(&["inspect", "up"]))).unwrap();
    let c = &v[0];
    assert_eq!(c["Name"], "/up");
    assert_eq!(c["Path"], "sleep");
    assert_eq!(c["Args"][0], "100");
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(c["State"]["OOMKilled"], false);
    assert!(c["State"]["Pid"].as_i64().unwrap() > 0);
    assert_eq!(c["Config"]["Labels"]["tier"], "web");
    assert_eq!(c["Config"]["Image"], "busybox");
    assert_eq!(c["Driver"], "overlay2");
    assert_eq!(c["HostConfig"]["ShmSize"], 67108864);
    assert!(c["Image"].as_str().unwrap().starts_with("sha256:"));
    assert!(c["Created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["RestartCount"], 0);
    let hostname = inspect(&b, "up", "{{.Config.Hostname}}");
    let id = inspect(&b, "up", "{{.Id}}");
    assert_eq!(hostname, &id[..12]);
    // Conflicting names, running removal.
    let o = b.docker_out(&["create", "--name", "up", "busybox", "true"]);
    assert!(
        stderr(&o).contains("Conflict. The container name \"/up\" is already in use"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["rm", "up"]);
    assert!(
        stderr(&o).contains("container is running"),
        "{}",
        stderr(&o)
    );
    ok(b.docker_out(&["rm", "-f", "up"]));
}

/// `docker ps` answers from each container's cached entry: every change shows at once.
#[test]
fn ps_shows_each_change_after_it_was_listed() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "cache-a",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]));
    ok(b.docker_out(&["create", "--name", "cache-b", "busybox", "true"]));
    let ps = || {
        let mut v: Vec<String> = ok(b.docker_out(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}|{{.State}}|{{.Status}}|{{.Networks}}",
        ]))
        .lines()
        .map(str::to_string)
        .collect();
        v.sort();
        v
    };
    let first = ps();
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first[0].starts_with("cache-a|running|Up "), "{first:?}");
    assert!(
        first[1].starts_with("cache-b|created|Created|"),
        "{first:?}"
    );
    // Listed again unchanged: the same answer.
    assert_eq!(ps()[1], first[1]);
    ok(b.docker_out(&["rename", "cache-a", "cache-renamed"]));
    let v = ps();
    assert!(v[0].starts_with("cache-b|"), "{v:?}");
    assert!(v[1].starts_with("cache-renamed|running|Up "), "{v:?}");
    ok(b.docker_out(&["stop", "-t", "0", "cache-renamed"]));
    let v = ps();
    assert!(
        v[1].starts_with("cache-renamed|exited|Exited (137) "),
        "{v:?}"
    );
    ok(b.docker_out(&["start", "cache-b"]));
    wait_for("cache-b to exit", Duration::from_secs(10), || {
        ps()[0].starts_with("cache-b|exited|Exited (0) ")
    });
    // The running filter and the API's own JSON agree with the CLI's view; HostConfig's
    // Annotations only from API 1.46 on.
    assert_eq!(ok(b.docker_out(&["ps", "-q"])).trim(), "");
    let mut conn = common::Conn::unix(&b.socket);
    let all = conn
        .request("GET", "/v1.51/containers/json?all=1&limit=1", None)
        .json();
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["Names"][0], "/cache-b", "{all}");
    ok(b.docker_out(&["rm", "cache-b"]));
    ok(b.docker_out(&[
        "create",
        "--name",
        "cache-b",
        "--annotation",
        "k=v",
        "busybox",
        "true",
    ]));
    let new = conn
        .request("GET", "/v1.51/containers/json?all=1", None)
        .json();
    let old = conn
        .request("GET", "/v1.45/containers/json?all=1", None)
        .json();
    let b_of = |v: &serde_json::Value| {
        v.as_array()
            .and_then(|a| a.iter().find(|c| c["Names"][0] == "/cache-b").cloned())
            .unwrap_or_default()
    };
    assert_eq!(b_of(&new)["HostConfig"]["Annotations"]["k"], "v", "{new}");
    assert!(
        b_of(&old)["HostConfig"].get("Annotations").is_none(),
        "{old}"
    );
    ok(b.docker_out(&["rm", "-f", "cache-renamed", "cache-b"]));
    assert!(ps().is_empty());
}

#[test]
fn config_options_reach_the_process() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    let run = |args: &[&str]| -> String {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        let o = b.docker_out(&a);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(
        run(&["-u", "1000:1000", "busybox", "id"]),
        "uid=1000(user) gid=1000(user) groups=1000(user)\n"
    );
    assert_eq!(run(&["-u", "user", "busybox", "id", "-u"]), "1000\n");
    assert_eq!(run(&["-w", "/srv/app", "busybox", "pwd"]), "/srv/app\n");
    assert_eq!(
        run(&["-e", "FOO=bar", "busybox", "sh", "-c", "echo $FOO"]),
        "bar\n"
    );
    assert_eq!(
        run(&["--entrypoint", "echo", "busybox", "via", "entrypoint"]),
        "via entrypoint\n"
    );
    assert_eq!(run(&["busybox", "hostname"]).trim().len(), 12);
    assert_eq!(run(&["--hostname", "box", "busybox", "hostname"]), "box\n");
    // Read-only rootfs, tmpfs, bind mounts.
    let o = b.docker_out(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert!(
        !o.status.success() && stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        run(&[
            "--read-only",
            "--tmpfs",
            "/t",
            "busybox",
            "sh",
            "-c",
            "echo ok > /t/f && cat /t/f"
        ]),
        "ok\n"
    );
    let host = b.dir.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host\n").unwrap();
    let vol = format!("{}:/data", host.display());
    assert_eq!(
        run(&[
            "-v",
            &vol,
            "busybox",
            "sh",
            "-c",
            "cat /data/in.txt; echo back > /data/out.txt"
        ]),
        "from host\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "back\n"
    );
    // Capabilities.
    let eff = run(&["busybox", "sh", "-c", "grep CapEff /proc/self/status"]);
    assert!(eff.contains("00000000a80425fb"), "{eff}");
    let eff = run(&[
        "--cap-drop",
        "ALL",
        "busybox",
        "sh",
        "-c",
        "grep CapEff /proc/self/status",
    ]);
    assert!(eff.contains("0000000000000000"), "{eff}");
    let o = b.docker_out(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "busybox",
        "chown",
        "1:1",
        "/tmp",
    ]);
    assert!(!o.status.success());
    // --init: PID 1 is tini.
    if Path::new("/usr/bin/tini-static").exists() || common::have_command("docker-init") {
        let comm = run(&["--init", "busybox", "cat", "/proc/1/comm"]);
        assert!(
            comm.starts_with("tini") || comm.starts_with("docker-init"),
            "{comm}"
        );
    } else {
        eprintln!("skipping --init: tini-static is not installed");
    }
    // Network mode none still has loopback up.
    assert!(run(&[
        "--network",
        "none",
        "busybox",
        "cat",
        "/sys/class/net/lo/operstate"
    ])
    .contains("unknown"));
}

#[test]
fn resources_are_in_the_cgroup() {
    require!(ready(), NOT_READY);
    let (b, parent) = daemon();
    let id = ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "lim",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "busybox",
        "sleep",
        "100",
    ]))
    .trim()
    .to_string();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mem = cgroup_dir(&parent, &id, "memory");
    let pids = cgroup_dir(&parent, &id, "pids");
    let cpu = cgroup_dir(&parent, &id, "cpu,cpuacct");
    if v2 {
        assert_eq!(
            std::fs::read_to_string(mem.join("memory.max"))
                .unwrap()
                .trim(),
            "67108864"
        );
        assert_eq!(
            std::fs::read_to_string(pids.join("pids.max"))
                .unwrap()
                .trim(),
            "50"
        );
        assert_eq!(
            std::fs::read_to_string(cpu.join("cpu.max")).unwrap().trim(),
            "50000 100000"
        );
    } else {
        assert_eq!(
            std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            "67108864"
        );
        assert_eq!(
            std::fs::read_to_string(pids.join("pids.max"))
                .unwrap()
                .trim(),
            "50"
        );
        assert_eq!(v1_cfs_quota(&parent, &id), "50000");
    }
    assert_eq!(
        inspect(
            &b,
            "lim",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}"
        ),
        "67108864 50 500000000"
    );
    // update --memory applies live.
    ok(b.docker_out(&["update", "--memory", "96m", "--memory-swap", "-1", "lim"]));
    let limit = if v2 {
        mem.join("memory.max")
    } else {
        mem.join("memory.limit_in_bytes")
    };
    assert_eq!(std::fs::read_to_string(&limit).unwrap().trim(), "100663296");
    assert_eq!(inspect(&b, "lim", "{{.HostConfig.Memory}}"), "100663296");
    // update --pids-limit -1 lifts the limit (recorded as 0, as dockerd).
    ok(b.docker_out(&["update", "--pids-limit", "-1", "lim"]));
    assert_eq!(
        std::fs::read_to_string(pids.join("pids.max"))
            .unwrap()
            .trim(),
        "max"
    );
    assert_eq!(inspect(&b, "lim", "{{.HostConfig.PidsLimit}}"), "0");
    ok(b.docker_out(&["rm", "-f", "lim"]));
    // --oom-kill-disable reaches the v1 memory controller (v2 has no such switch).
    if !v2 {
        let o = b.docker_out(&[
            "run",
            "--rm",
            "--oom-kill-disable",
            "-m",
            "64m",
            "busybox",
            "cat",
            "/sys/fs/cgroup/memory/memory.oom_control",
        ]);
        assert!(ok(o).contains("oom_kill_disable 1"));
        let o = b.docker_out(&["create", "--oom-kill-disable", "busybox", "true"]);
        assert!(
            stderr(&o)
                .contains("OOM killer is disabled for the container, but no memory limit is set"),
            "{}",
            stderr(&o)
        );
    }
    assert!(!mem.exists(), "cgroup {} left behind", mem.display());
    // A process that allocates more than the limit is OOM-killed.
    let o = b.docker_out(&[
        "run", "--name", "oom", "--memory", "16m", "--memory-swap", "16m", "busybox", "sh", "-c",
        "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert_eq!(
        inspect(&b, "oom", "{{.State.OOMKilled}} {{.State.ExitCode}}"),
        "true 137"
    );
}

#[test]
fn restart_policy_on_failure_restarts_exactly_twice() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]));
    wait_for("three runs", Duration::from_secs(20), || {
        inspect(&b, "flaky", "{{.State.Status}} {{.RestartCount}}") == "exited 2"
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        inspect(
            &b,
            "flaky",
            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}"
        ),
        "exited 2 1"
    );
    assert_eq!(stdout(&b.docker_out(&["logs", "flaky"])), "run\nrun\nrun\n");
    // A policy that restarts forever is stopped by docker stop.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2; exit 0",
    ]));
    wait_for("a restart", Duration::from_secs(20), || {
        inspect(&b, "always", "{{.RestartCount}}")
            .parse::<i32>()
            .unwrap_or(0)
            >= 1
    });
    ok(b.docker_out(&["stop", "always"]));
    let n = inspect(&b, "always", "{{.RestartCount}}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        inspect(&b, "always", "{{.State.Status}} {{.RestartCount}}"),
        format!("exited {n}")
    );
}

#[test]
fn pause_rename_top_diff_export_prune() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "pz",
        "busybox",
        "sh",
        "-c",
        "echo x > /new.txt; rm /etc/group; sleep 100",
    ]));
    wait_for("the file", Duration::from_secs(10), || {
        stdout(&b.docker_out(&["diff", "pz"])).contains("/new.txt")
    });
    let diff = ok(b.docker_out(&["diff", "pz"]));
    assert!(diff.contains("A /new.txt"), "{diff}");
    assert!(diff.contains("D /etc/group"), "{diff}");
    assert!(diff.contains("C /etc"), "{diff}");
    // moby's init-layer files are there, and not changes of the container.
    assert_eq!(
        ok(b.docker_out(&[
            "exec",
            "pz",
            "sh",
            "-c",
            "stat -c '%A %s' /.dockerenv; readlink /etc/mtab"
        ])),
        "-rwxr-xr-x 0\n/proc/mounts\n"
    );
    assert!(
        !diff.contains("dockerenv") && !diff.contains("mtab"),
        "{diff}"
    );
    ok(b.docker_out(&["pause", "pz"]));
    assert_eq!(
        inspect(&b, "pz", "{{.State.Status}} {{.State.Paused}}"),
        "paused true"
    );
    ok(b.docker_out(&["unpause", "pz"]));
    assert_eq!(inspect(&b, "pz", "{{.State.Status}}"), "running");
    let top = ok(b.docker_out(&["top", "pz"]));
    assert!(top.contains("sleep 100"), "{top}");
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    ok(b.docker_out(&["rename", "pz", "qz"]));
    assert_eq!(inspect(&b, "qz", "{{.Name}}"), "/qz");
    assert!(!b.docker_out(&["inspect", "pz"]).status.success());
    let tar = b.dir.path().join("export.tar");
    ok(b.docker_out(&["export", "-o", tar.to_str().unwrap(), "qz"]));
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    for e in ar.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert!(names.iter().any(|n| n == "new.txt"), "{names:?}");
    assert!(names.iter().any(|n| n == "bin/busybox"), "{names:?}");
    assert!(!names.iter().any(|n| n == "etc/group"), "{names:?}");
    assert!(names.iter().any(|n| n == ".dockerenv"), "{names:?}");
    assert!(names.iter().any(|n| n == "etc/mtab"), "{names:?}");
    // As dockerd 28: stopping a paused container signals it and thaws it.
    ok(b.docker_out(&["pause", "qz"]));
    ok(b.docker_out(&["stop", "-t", "1", "qz"]));
    assert_eq!(inspect(&b, "qz", "{{.State.Status}}"), "exited");
    ok(b.docker_out(&["run", "--name", "gone1", "busybox", "true"]));
    ok(b.docker_out(&["create", "--name", "gone2", "busybox", "true"]));
    let out = ok(b.docker_out(&["container", "prune", "-f"]));
    assert!(out.contains("Deleted Containers:"), "{out}");
    let left = ok(b.docker_out(&["ps", "-a", "--format", "{{.Names}}"]));
    // qz was stopped above, so it went too.
    assert_eq!(left.trim(), "");
}

/// `--log-opt labels/labels-regex/env/env-regex/tag`: json-file records the attributes with
/// every entry as dockerd 20.10 does, and `docker logs --details` prints them.
#[test]
fn logs_record_labels_env_and_tag() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    ok(b.docker_out(&[
        "run",
        "--name",
        "lt",
        "--label",
        "com.x=1",
        "--label",
        "other=a b",
        "-e",
        "APP_A=a/b",
        "-e",
        "NOPE=1",
        "--log-opt",
        "labels=other",
        "--log-opt",
        "env=APP_A",
        "--log-opt",
        "labels-regex=^com",
        "--log-opt",
        "tag={{.ImageName}}/{{.Name}}/{{.ID}}",
        "busybox",
        "echo",
        "hi",
    ]));
    let id = inspect(&b, "lt", "{{.Id}}");
    let short = &id[..12];
    let path = inspect(&b, "lt", "{{.LogPath}}");
    let text = std::fs::read_to_string(&path).unwrap();
    let want = format!(
        "{{\"log\":\"hi\\n\",\"stream\":\"stdout\",\"attrs\":{{\"APP_A\":\"a/b\",\"com.x\":\"1\",\"other\":\"a b\",\"tag\":\"busybox/lt/{short}\"}},\"time\":\""
    );
    assert!(text.starts_with(&want), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    let details = format!("APP_A=a%2Fb,com.x=1,other=a+b,tag=busybox%2Flt%2F{short} hi\n");
    assert_eq!(ok(b.docker_out(&["logs", "--details", "lt"])), details);
    let t = ok(b.docker_out(&["logs", "-t", "--details", "lt"]));
    let (stamp, rest) = t.split_once(' ').unwrap();
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{t}");
    assert_eq!(rest, details);
    // Without --details the line is as written.
    assert_eq!(ok(b.docker_out(&["logs", "lt"])), "hi\n");
    // The tag is rendered when the logger starts: after a rename, the next start shows it.
    ok(b.docker_out(&["rename", "lt", "lt2"]));
    ok(b.docker_out(&["start", "-a", "lt2"]));
    let o = ok(b.docker_out(&["logs", "--details", "--tail", "1", "lt2"]));
    assert!(
        o.ends_with(&format!("tag=busybox%2Flt2%2F{short} hi\n")),
        "{o}"
    );
    // dockerd's errors, at start (the create succeeds).
    let o = b.docker_out(&["run", "--log-opt", "tag={{.Nope}}", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("failed to initialize logging driver: template: log-tag:1:2: executing \"log-tag\" at <.Nope>: can't evaluate field Nope in type *logger.Info"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["run", "--log-opt", "env-regex=(", "busybox", "true"]);
    assert!(
        stderr(&o).contains(
            "failed to initialize logging driver: error parsing regexp: missing closing ): `(`"
        ),
        "{}",
        stderr(&o)
    );
    // The local driver takes none of these options, as dockerd's.
    let o = b.docker_out(&[
        "run",
        "--log-driver",
        "local",
        "--log-opt",
        "tag=abc",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&o).contains("unknown log opt 'tag' for log driver local"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn logs_tail_since_timestamps_and_rotation() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    ok(b.docker_out(&[
        "run",
        "--name",
        "lg",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo line$i; done; sleep 0.3; echo oops >&2",
    ]));
    assert_eq!(
        stdout(&b.docker_out(&["logs", "--tail", "2", "lg"])),
        "line5\n"
    );
    let o = b.docker_out(&["logs", "--tail", "2", "lg"]);
    assert_eq!(stderr(&o), "oops\n");
    let t = ok(b.docker_out(&["logs", "-t", "lg"]));
    let first = t.lines().next().unwrap();
    assert!(
        first.ends_with(" line1") && first.contains('T') && first.contains("Z "),
        "{first}"
    );
    // --details: the line's attributes (none here) and a space, as dockerd writes it.
    let o = b.docker_out(&["logs", "--details", "--tail", "2", "lg"]);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        (" line5\n", " oops\n")
    );
    let o = b.docker_out(&["logs", "--since", "2000-01-01T00:00:00Z", "lg"]);
    assert!(stdout(&o).starts_with("line1\n"));
    let o = b.docker_out(&["logs", "--since", "2100-01-01T00:00:00Z", "lg"]);
    assert_eq!(stdout(&o), "");
    // json-file rotation.
    ok(b.docker_out(&[
        "run",
        "--name",
        "rot",
        "--log-opt",
        "max-size=10k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 2000 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done",
    ]));
    let log = inspect(&b, "rot", "{{.LogPath}}");
    let dir = Path::new(&log).parent().unwrap();
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-json.log"))
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(
            std::fs::metadata(dir.join(f)).unwrap().len() < 12 * 1024,
            "{f}"
        );
    }
    let out = stdout(&b.docker_out(&["logs", "rot"]));
    assert!(out.ends_with("line-1999-padding-padding-padding\n"));
}

#[test]
fn restore_thaws_a_container_a_crashed_commit_paused() {
    require!(ready(), NOT_READY);
    let (mut b, parent) = daemon();
    ok(b.docker_out(&["run", "-d", "--name", "cm", "busybox", "sleep", "300"]));
    let id = inspect(&b, "cm", "{{.Id}}");
    let record = b
        .data_root()
        .join("containers")
        .join(&id)
        .join("config.v2.json");
    let read = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap()
    };
    let crash = |b: &mut Berthd| {
        b.signal(nix::sys::signal::Signal::SIGKILL);
        b.wait_exit(Duration::from_secs(10));
    };
    // What a kill in the middle of `docker commit` leaves: the container paused by the
    // commit, its record marked before the pause.
    ok(b.docker_out(&["pause", "cm"]));
    crash(&mut b);
    let mut v = read();
    v["State"]["PausedForCommit"] = true.into();
    std::fs::write(&record, serde_json::to_vec(&v).unwrap()).unwrap();
    b.spawn_with_host(&["--cgroup-parent", &*parent]);
    assert_eq!(
        inspect(&b, "cm", "{{.State.Status}} {{.State.Paused}}"),
        "running false"
    );
    assert_eq!(
        stdout(&b.docker_out(&["exec", "cm", "echo", "thawed"])),
        "thawed\n"
    );
    assert!(
        read()["State"].get("PausedForCommit").is_none(),
        "{}",
        read()
    );
    // A container the user paused stays paused across a restart.
    ok(b.docker_out(&["pause", "cm"]));
    crash(&mut b);
    b.spawn_with_host(&["--cgroup-parent", &*parent]);
    assert_eq!(
        inspect(&b, "cm", "{{.State.Status}} {{.State.Paused}}"),
        "paused true"
    );
    // And a commit that completes leaves no mark and the container running.
    ok(b.docker_out(&["unpause", "cm"]));
    ok(b.docker_out(&["commit", "cm", "cm-image"]));
    assert_eq!(inspect(&b, "cm", "{{.State.Status}}"), "running");
    assert!(
        read()["State"].get("PausedForCommit").is_none(),
        "{}",
        read()
    );
    ok(b.docker_out(&["rm", "-f", "cm"]));
}

#[test]
fn live_restore_after_kill_9() {
    require!(ready(), NOT_READY);
    let (mut b, parent) = daemon();
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "survivor",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' TERM; echo before; while true; do sleep 0.1; done",
    ]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "ends",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 4",
    ]));
    let pid: i32 = inspect(&b, "survivor", "{{.State.Pid}}").parse().unwrap();
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit(Duration::from_secs(10));
    // The container keeps running while berthd is down; the other exits meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    b.spawn_with_host(&["--cgroup-parent", &*parent]);
    assert_eq!(
        inspect(&b, "survivor", "{{.State.Status}} {{.State.Pid}}"),
        format!("running {pid}")
    );
    wait_for("the exit seen while down", Duration::from_secs(10), || {
        inspect(&b, "ends", "{{.State.Status}} {{.State.ExitCode}}") == "exited 4"
    });
    assert!(stdout(&b.docker_out(&["logs", "survivor"])).contains("before"));
    ok(b.docker_out(&["stop", "survivor"]));
    assert_eq!(inspect(&b, "survivor", "{{.State.ExitCode}}"), "7");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn twenty_parallel_containers_leave_nothing_behind() {
    require!(ready(), NOT_READY);
    let (b, parent) = daemon();
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let mut cmd = b.docker();
            cmd.args([
                "run",
                "-d",
                "--name",
                &format!("par{i}"),
                "busybox",
                "sleep",
                "100",
            ]);
            std::thread::spawn(move || cmd.output().unwrap())
        })
        .collect();
    for h in handles {
        let o = h.join().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let running = ok(b.docker_out(&["ps", "-q"]));
    assert_eq!(running.lines().count(), 20, "{running}");
    let ids: Vec<String> = running.lines().map(str::to_string).collect();
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let mut cmd = b.docker();
            cmd.args(["rm", "-f", &format!("par{i}")]);
            std::thread::spawn(move || cmd.output().unwrap())
        })
        .collect();
    for h in handles {
        let o = h.join().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(ok(b.docker_out(&["ps", "-aq"])).trim(), "");
    let exec = b.dir.path().join("exec").display().to_string();
    assert_eq!(
        mounts_below(b.dir.path()),
        own_binds(&b),
        "only berthd's own binds stay"
    );
    let mem = cgroup_dir(&parent, "", "memory");
    let left: Vec<_> = std::fs::read_dir(&mem)
        .map(|d| d.flatten().filter(|e| e.path().is_dir()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "cgroups left: {left:?}");
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    for id in ids {
        assert!(!ps.contains(&id[..12]), "a process of {id} is left");
    }
    assert!(
        !ps.lines()
            .any(|l| l.contains("__supervise") && l.contains(&exec)),
        "{ps}"
    );
}

/// With containers running, a start creates its container in a copy of the host's mount
/// namespace without their mounts (`runtime::subtree`; the bar lowered from 100 to 1 here):
/// the container gets its own root, its namespace files and another container's network, the
/// host's mounts stay as they were, and berthd's two binds survive a `kill -9` unstacked.
#[test]
fn starts_among_running_containers_shed_their_mounts() {
    require!(ready(), NOT_READY);
    let parent = CgroupParent(format!("berth-test-{}", &uuid_like()));
    let mut b = Berthd::prepare();
    b.env
        .push(("BERTH_TEST_SHED_ABOVE".to_string(), "1".to_string()));
    b.spawn_with_host(&["--cgroup-parent", &parent]);
    let mut b = common::with_busybox(b);
    let exec = b.dir.path().join("exec");
    let sup_log = |id: &str| {
        std::fs::read_to_string(exec.join("c").join(id).join("supervisor.log")).unwrap_or_default()
    };
    let first = ok(b.docker_out(&["run", "-d", "--name", "first", "busybox", "sleep", "300"]));
    let first = first.trim().to_string();
    assert!(
        !sup_log(&first).contains("create in a mount namespace without"),
        "none ran before the first: {}",
        sup_log(&first)
    );
    assert_eq!(
        mounts_below(b.dir.path()).len(),
        4,
        "two binds, an overlay and a netns"
    );

    let second = ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "second",
        "--hostname",
        "two",
        "busybox",
        "sleep",
        "300",
    ]));
    let second = second.trim().to_string();
    let log = sup_log(&second);
    let rootfs = b
        .data_root()
        .join(format!("containers/{second}/layer/merged"));
    let netns = exec.join(format!("netns/{second}"));
    assert!(
        log.contains("create in a mount namespace without")
            && log.contains(&format!("keeping [{:?}, {:?}]", rootfs, netns)),
        "{log}"
    );
    // The container has its own root and network, and the host's table is as it was. Its
    // execs start without the others' mounts too.
    assert_eq!(
        ok(b.docker_out(&["exec", "second", "hostname"])).trim(),
        "two"
    );
    let log = sup_log(&second);
    assert!(
        log.contains("exec in a mount namespace without")
            && log.contains(&format!("keeping [{:?}, {:?}]", rootfs, netns)),
        "{log}"
    );
    ok(b.docker_out(&["exec", "second", "sh", "-c", "echo w > /written"]));
    assert_eq!(
        std::fs::read_to_string(
            b.data_root()
                .join(format!("containers/{second}/layer/diff/written"))
        )
        .unwrap(),
        "w\n"
    );
    let pid_of = |name: &str| inspect(&b, name, "{{.State.Pid}}");
    let net_of = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(net_of(&pid_of("first")), net_of(&pid_of("second")));
    for id in [&first, &second] {
        assert_eq!(
            mounts_mentioning(&format!("{id}/layer/merged")).len(),
            1,
            "{id}"
        );
    }
    // A third joins the second's network namespace, whose file was kept in the copy.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "third",
        "--network",
        "container:second",
        "busybox",
        "sleep",
        "300",
    ]));
    let third = inspect(&b, "third", "{{.Id}}");
    assert!(
        sup_log(&third).contains(&format!("{:?}]", netns)),
        "{}",
        sup_log(&third)
    );
    assert_eq!(net_of(&pid_of("third")), net_of(&pid_of("second")));
    assert_eq!(mounts_below(b.dir.path()).len(), 2 + 2 * 2 + 1);

    // A restart of berthd finds its binds and does not stack them; starts still shed.
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit(Duration::from_secs(10));
    b.spawn_with_host(&["--cgroup-parent", &parent]);
    ok(b.docker_out(&["restart", "-t", "1", "first"]));
    let log = sup_log(&first);
    assert!(log.contains("create in a mount namespace without"), "{log}");
    assert_eq!(
        ok(b.docker_out(&["exec", "first", "echo", "up"])).trim(),
        "up"
    );
    ok(b.docker_out(&["rm", "-f", "first", "second", "third"]));
    assert_eq!(mounts_below(b.dir.path()), own_binds(&b));
}

#[test]
fn lifecycle_events_reach_the_event_stream() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    let since = common::now_secs();
    ok(b.docker_out(&["run", "-d", "--name", "ev", "busybox", "sleep", "100"]));
    ok(b.docker_out(&["pause", "ev"]));
    ok(b.docker_out(&["unpause", "ev"]));
    ok(b.docker_out(&["rename", "ev", "ev2"]));
    ok(b.docker_out(&["update", "--memory", "64m", "--memory-swap", "-1", "ev2"]));
    ok(b.docker_out(&["restart", "-t", "0", "ev2"]));
    ok(b.docker_out(&["kill", "ev2"]));
    ok(b.docker_out(&["rm", "ev2"]));
    let until = common::now_secs() + 1;
    let out = ok(b.docker_out(&[
        "events", "--since", &since.to_string(), "--until", &until.to_string(),
        "--filter", "type=container", "--format",
        "{{.Action}} {{.Actor.Attributes.name}} {{index .Actor.Attributes \"exitCode\"}}{{index .Actor.Attributes \"signal\"}}",
    ]));
    let actions: Vec<&str> = out.lines().map(|l| l.split(' ').next().unwrap()).collect();
    for want in [
        "create", "start", "pause", "unpause", "rename", "update", "kill", "die", "stop",
        "restart", "destroy",
    ] {
        assert!(actions.contains(&want), "{want} missing in {out}");
    }
    assert!(out.contains("die ev2 137"), "{out}");
    assert!(out.contains("kill ev2 9"), "{out}");
    let first = out.lines().next().unwrap();
    assert!(first.starts_with("create ev "), "{out}");
}

#[test]
fn network_none_gets_a_namespace_of_its_own_with_loopback_only() {
    require!(ready(), NOT_READY);
    let (b, _parent) = daemon();
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "isolated",
        "--network",
        "none",
        "busybox",
        "sleep",
        "100",
    ]));
    let pid = inspect(&b, "isolated", "{{.State.Pid}}");
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(ns, host_ns);
    // berthd made it, bind-mounted under the exec root, with `lo` up and nothing else.
    let file = b
        .dir
        .path()
        .join("exec/netns")
        .join(inspect(&b, "isolated", "{{.Id}}"));
    assert!(file.exists(), "{}", file.display());
    let links = ok(b.docker_out(&["exec", "isolated", "ip", "-o", "link"]));
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
    ok(b.docker_out(&["rm", "-f", "isolated"]));
    assert!(!file.exists(), "{}", file.display());
}

/// A package upgrade replaces berthd's binary while it runs: containers still start and
/// `docker cp` still works, because the helpers (supervisors, archive helpers) run the binary
/// the daemon runs (`/proc/self/exe`), not whatever its path names now.
#[test]
fn helpers_run_even_when_the_binary_file_is_gone() {
    require!(
        common::is_root() && common::have_docker_cli() && common::have_busybox(),
        "needs root, the docker CLI and Debian's busybox-static"
    );
    let mut b = Berthd::prepare();
    let copy = b.dir.path().join("berthd-copy");
    std::fs::copy(common::berthd_bin(), &copy).unwrap();
    b.bin = copy.clone();
    b.spawn_with_host(&[]);
    let rootfs = common::busybox_rootfs_tar(b.dir.path());
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    std::fs::remove_file(&copy).unwrap();
    assert_eq!(
        ok(b.docker_out(&["run", "--rm", "busybox", "echo", "still-runs"])),
        "still-runs\n"
    );
    ok(b.docker_out(&["run", "-d", "--name", "gone-bin", "busybox", "sleep", "30"]));
    let file = b.dir.path().join("in.txt");
    std::fs::write(&file, "copied\n").unwrap();
    ok(b.docker_out(&["cp", file.to_str().unwrap(), "gone-bin:/in.txt"]));
    assert_eq!(
        ok(b.docker_out(&["exec", "gone-bin", "cat", "/in.txt"])),
        "copied\n"
    );
    ok(b.docker_out(&["rm", "-f", "gone-bin"]));
}

/// A container's rootfs overlay names its upper and work directories relative to its layer
/// directory (`runtime::host::mount_overlay`), so each running container adds a short line to
/// the mount table that libcontainer reads at every container start; the overlay works as
/// before.
#[test]
fn a_running_containers_overlay_has_short_options() {
    require!(ready(), NOT_READY);
    let (b, _cg) = daemon();
    let id = ok(b.docker_out(&["run", "-d", "--name", "short", "busybox", "sleep", "600"]));
    let id = id.trim();
    let lines = mounts_mentioning(&format!("{id}/layer/merged"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(",upperdir=diff,workdir=work"),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains("upperdir=/"), "{}", lines[0]);
    ok(b.docker_out(&["exec", "short", "sh", "-c", "echo w > /written"]));
    let diff = ok(b.docker_out(&["diff", "short"]));
    assert!(diff.lines().any(|l| l == "A /written"), "{diff}");
    assert_eq!(
        ok(b.docker_out(&["exec", "short", "cat", "/written"])),
        "w\n"
    );
    ok(b.docker_out(&["rm", "-f", "short"]));
    assert!(mounts_mentioning(id).is_empty());
}

#[test]
fn an_ended_containers_cgroup_goes_from_every_hierarchy() {
    require!(ready(), NOT_READY);
    let (b, parent) = daemon();
    // Every cgroup directory the container could have: each v1 hierarchy's, or the v2 one.
    let dirs_of = |id: &str| -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        roots.push(PathBuf::from("/sys/fs/cgroup"));
        roots.iter().map(|r| r.join(&*parent).join(id)).collect()
    };
    // An ordinary container, stopped while it runs.
    let id = ok(b.docker_out(&["run", "-d", "--name", "plain", "busybox", "sleep", "100"]))
        .trim()
        .to_string();
    let present: Vec<PathBuf> = dirs_of(&id).into_iter().filter(|d| d.exists()).collect();
    assert!(!present.is_empty(), "no cgroup for {id}");
    ok(b.docker_out(&["stop", "-t", "0", "plain"]));
    let left: Vec<_> = present.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
    assert_eq!(inspect(&b, "plain", "{{.State.Status}}"), "exited");
    // A container in the host's pid namespace whose init leaves a child behind: the child
    // stays in the cgroup after the init ends, and goes with it, as with libcontainer's delete.
    let o = b.docker_out(&[
        "run",
        "--name",
        "leaver",
        "--pid",
        "host",
        "busybox",
        "sh",
        "-c",
        "sleep 7654321 >/dev/null 2>&1 & echo left",
    ]);
    assert_eq!(stdout(&o).trim(), "left", "{}", stderr(&o));
    let id = inspect(&b, "leaver", "{{.Id}}");
    common::wait_for("the cgroup to go", Duration::from_secs(10), || {
        dirs_of(&id).iter().all(|d| !d.exists())
    });
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains("sleep 7654321"),
        "the container's child outlived it"
    );
    assert_eq!(
        inspect(&b, "leaver", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    // The supervisors removed libcontainer's records too.
    let runtime = b.dir.path().join("exec/runtime");
    let records: Vec<_> = std::fs::read_dir(&runtime)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(records.is_empty(), "{records:?}");
}

#[test]
fn a_containers_own_cgroup_parent_is_used() {
    require!(ready(), NOT_READY);
    let (b, _parent) = daemon();
    let own = CgroupParent(format!("berth-test-own-{}", uuid_like()));
    let id = ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "own",
        "--cgroup-parent",
        &format!("/{}", &*own),
        "--memory",
        "32m",
        "busybox",
        "sleep",
        "100",
    ]))
    .trim()
    .to_string();
    assert_eq!(
        inspect(&b, "own", "{{.HostConfig.CgroupParent}}"),
        format!("/{}", &*own)
    );
    // The container's processes are in the cgroup under its own parent, with its limits.
    let mem = cgroup_dir(&own, &id, "memory");
    let limit = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        mem.join("memory.max")
    } else {
        mem.join("memory.limit_in_bytes")
    };
    assert_eq!(std::fs::read_to_string(&limit).unwrap().trim(), "33554432");
    let cgroup = ok(b.docker_out(&["exec", "own", "cat", "/proc/1/cgroup"]));
    assert!(cgroup.contains(&format!("/{}/{id}", &*own)), "{cgroup}");
    // top, stats and update find it there.
    let top = ok(b.docker_out(&["top", "own"]));
    assert!(top.contains("sleep 100"), "{top}");
    let stats = ok(b.docker_out(&["stats", "--no-stream", "--format", "{{.MemUsage}}", "own"]));
    assert!(stats.contains("/ 32MiB"), "{stats}");
    ok(b.docker_out(&["update", "--memory", "48m", "--memory-swap", "-1", "own"]));
    assert_eq!(std::fs::read_to_string(&limit).unwrap().trim(), "50331648");
    ok(b.docker_out(&["rm", "-f", "own"]));
    assert!(!mem.exists(), "cgroup {} left behind", mem.display());
    // A parent that climbs out of the hierarchy is refused at create.
    let o = b.docker_out(&["create", "--cgroup-parent", "a/../../x", "busybox"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid cgroup parent \"a/../../x\": it must not contain \"..\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn update_changes_only_what_it_sets() {
    require!(ready(), NOT_READY);
    let (b, parent) = daemon();
    let id = ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "upd",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--memory",
        "32m",
        "--restart",
        "on-failure:3",
        "busybox",
        "sleep",
        "100",
    ]))
    .trim()
    .to_string();
    // The CLI sends every resource, the unset ones as zero: they stay as they were.
    ok(b.docker_out(&["update", "--memory", "64m", "--memory-swap", "-1", "upd"]));
    assert_eq!(
        inspect(
            &b,
            "upd",
            "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}} [{{.HostConfig.CgroupParent}}]"
        ),
        "500000000 512 67108864 -1 on-failure:3 []"
    );
    // What dockerd refuses, with its texts (409).
    let refused = [
        (
            &["update", "--cpu-quota", "40000", "upd"][..],
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set",
        ),
        (
            &["update", "--cpu-period", "50000", "upd"][..],
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set",
        ),
        (
            &["update", "--memory", "128m", "upd"][..],
            "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
        ),
    ];
    for (args, text) in refused {
        let o = b.docker_out(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            stderr(&o).contains(&format!("Cannot update container {id}: {text}")),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // Nothing of the refused updates was kept.
    assert_eq!(
        inspect(&b, "upd", "{{.HostConfig.Memory}} {{.HostConfig.CpuQuota}}"),
        "67108864 0"
    );
    // The CPU limit is still in the cgroup after a restart.
    ok(b.docker_out(&["restart", "-t", "0", "upd"]));
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert_eq!(v1_cfs_quota(&parent, &id), "50000");
    }
    // With --rm, the restart policy cannot become one that restarts.
    ok(b.docker_out(&[
        "run", "-d", "--rm", "--name", "gone", "busybox", "sleep", "100",
    ]));
    let rm_id = inspect(&b, "gone", "{{.Id}}");
    let o = b.docker_out(&["update", "--restart", "always", "gone"]);
    assert!(
        stderr(&o).contains(&format!(
            "Cannot update container {rm_id}: Restart policy cannot be updated because AutoRemove is enabled for the container"
        )),
        "{}",
        stderr(&o)
    );
    ok(b.docker_out(&["rm", "-f", "upd", "gone"]));
}

#[test]
fn blkio_limits_the_host_cannot_apply_are_discarded_with_dockerds_warning() {
    require!(ready(), NOT_READY);
    let (b, parent) = daemon();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let weight_supported = if v2 {
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == "io")
    } else {
        Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists()
    };
    let o = b.docker_out(&[
        "create",
        "--name",
        "weighted",
        "--blkio-weight",
        "300",
        "busybox",
        "true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let warning = "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.";
    if weight_supported {
        assert!(!stderr(&o).contains(warning), "{}", stderr(&o));
        assert_eq!(
            inspect(&b, "weighted", "{{.HostConfig.BlkioWeight}}"),
            "300"
        );
        // Out of range is refused where the weight applies.
        let o = b.docker_out(&["create", "--blkio-weight", "5", "busybox", "true"]);
        assert!(
            stderr(&o).contains("Range of blkio weight is from 10 to 1000"),
            "{}",
            stderr(&o)
        );
    } else {
        // As dockerd: discarded with its warning, so the container starts.
        assert!(
            stderr(&o).contains(&format!("WARNING: {warning}")),
            "{}",
            stderr(&o)
        );
        assert_eq!(inspect(&b, "weighted", "{{.HostConfig.BlkioWeight}}"), "0");
        let o = b.docker_out(&["start", "-a", "weighted"]);
        assert!(o.status.success(), "{}", stderr(&o));
        // The same on update, with the warning in the answer.
        ok(b.docker_out(&["run", "-d", "--name", "running", "busybox", "sleep", "100"]));
        let o = b.docker_out(&["update", "--blkio-weight", "300", "running"]);
        assert!(o.status.success(), "{}", stderr(&o));
        // The CLI prints an update's warnings on stdout.
        assert!(stdout(&o).contains(warning), "{}", stdout(&o));
        assert_eq!(inspect(&b, "running", "{{.HostConfig.BlkioWeight}}"), "0");
        ok(b.docker_out(&["rm", "-f", "running"]));
    }
    // A throttle the host has reaches the cgroup (v1 here: blkio.throttle.*).
    if !v2 && Path::new("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device").exists() {
        let dev = std::fs::read_dir("/sys/block")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"));
        if let Some(dev) = dev {
            let id = ok(b.docker_out(&[
                "run",
                "-d",
                "--device-read-bps",
                &format!("/dev/{dev}:1mb"),
                "busybox",
                "sleep",
                "100",
            ]))
            .trim()
            .to_string();
            let file = cgroup_dir(&parent, &id, "blkio").join("blkio.throttle.read_bps_device");
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.contains(" 1048576"), "{text}");
            ok(b.docker_out(&["rm", "-f", &id]));
        }
    }
    ok(b.docker_out(&["rm", "-f", "weighted"]));
}

/// The fields of `/proc/<pid>/stat` after the command name (the state first, then the
/// parent's pid); `None` once the process is gone.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit(')').next()?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// After a start, berthd keeps a spare supervisor (`__spare`) ready; the next start hands it
/// its container, and from then on it is that container's supervisor, named so in `ps`. A
/// spare goes with berthd, even killed.
#[test]
fn a_spare_supervisor_takes_the_next_start_and_goes_with_berthd() {
    require!(ready(), NOT_READY);
    let (mut b, _parent) = daemon();
    let exec = b.dir.path().join("exec").display().to_string();
    ok(b.docker_out(&["run", "-d", "--name", "s1", "busybox", "sleep", "100"]));
    let mut spare = 0;
    wait_for("a spare supervisor", Duration::from_secs(10), || {
        let found = common::processes("__spare", &exec);
        spare = found.first().map_or(0, |p| p.0);
        found.len() == 1
    });
    ok(b.docker_out(&["run", "-d", "--name", "s2", "busybox", "sleep", "100"]));
    let id = inspect(&b, "s2", "{{.Id}}");
    let pid: i32 = inspect(&b, "s2", "{{.State.Pid}}").parse().unwrap();
    let ppid: i32 = stat_fields(pid).unwrap()[1].parse().unwrap();
    assert_eq!(ppid, spare, "s2's init is the spare's child");
    let cmd = String::from_utf8(std::fs::read(format!("/proc/{spare}/cmdline")).unwrap()).unwrap();
    let args: Vec<&str> = cmd.split('\0').filter(|a| !a.is_empty()).collect();
    assert_eq!(
        &args[1..],
        ["__supervise", &format!("{exec}/c/{id}")],
        "{cmd:?}"
    );
    assert_eq!(inspect(&b, "s2", "{{.State.Status}}"), "running");
    ok(b.docker_out(&["exec", "s2", "true"]));
    ok(b.docker_out(&["stop", "-t", "1", "s2"]));
    assert_eq!(inspect(&b, "s2", "{{.State.ExitCode}}"), "137");
    // A new spare for the start after.
    let mut next = 0;
    wait_for("the next spare", Duration::from_secs(10), || {
        let found = common::processes("__spare", &exec);
        next = found.first().map_or(0, |p| p.0);
        found.len() == 1 && next != spare
    });
    ok(b.docker_out(&["rm", "-f", "s1", "s2"]));
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit(Duration::from_secs(10));
    wait_for(
        "the spare to go with berthd",
        Duration::from_secs(5),
        || stat_fields(next).is_none_or(|f| f[0] == "Z"),
    );
    assert!(common::processes("__spare", &exec).is_empty());
}

/// The top-level keys of the first object `docker inspect` printed (the CLI indents the
/// daemon's bytes and keeps their order: 8 spaces in, inside the list).
fn printed_keys(text: &str, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    text.lines()
        .filter_map(|l| l.strip_prefix(&pad))
        .filter(|l| l.starts_with('"'))
        .filter_map(|l| l[1..].split_once('"').map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn inspect_prints_dockerds_key_order() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "ko",
        "--network",
        "none",
        "-v",
        "kov:/data",
        "--mount",
        "type=volume,src=kov2,dst=/d2",
        "-v",
        "/anon",
        "busybox",
        "sleep",
        "600",
    ]));
    let text = ok(b.docker_out(&["inspect", "ko"]));
    assert_eq!(
        printed_keys(&text, 8),
        [
            "Id",
            "Created",
            "Path",
            "Args",
            "State",
            "Image",
            "ResolvConfPath",
            "HostnamePath",
            "HostsPath",
            "LogPath",
            "Name",
            "RestartCount",
            "Driver",
            "Platform",
            "MountLabel",
            "ProcessLabel",
            "AppArmorProfile",
            "ExecIDs",
            "HostConfig",
            "GraphDriver",
            "Mounts",
            "Config",
            "NetworkSettings",
        ],
        "{text}"
    );
    // Structs inside keep moby's order too; Go maps (labels, ports) stay sorted.
    let state = text.split("\"State\": {").nth(1).unwrap();
    assert!(
        state.trim_start().starts_with("\"Status\": \"running\",\n"),
        "{state}"
    );
    let config = text.split("\"Config\": {").last().unwrap();
    assert!(
        config.trim_start().starts_with("\"Hostname\": "),
        "{config}"
    );
    // moby's setBindModeIfNull: local volumes from -v and --mount show the mode `z`,
    // an anonymous one from the image's or -v's VOLUME none.
    let modes = inspect(
        &b,
        "ko",
        "{{range .Mounts}}{{.Destination}}={{.Mode}} {{end}}",
    );
    let mut modes: Vec<&str> = modes.split_whitespace().collect();
    modes.sort();
    assert_eq!(modes, ["/anon=", "/d2=z", "/data=z"]);
    let text = ok(b.docker_out(&["image", "inspect", "busybox"]));
    let keys = printed_keys(&text, 8);
    assert_eq!(keys.first().map(String::as_str), Some("Id"), "{text}");
    assert_eq!(keys.last().map(String::as_str), Some("Config"), "{text}");
    let text = ok(b.docker_out(&["network", "inspect", "none"]));
    assert_eq!(
        printed_keys(&text, 8)[..5],
        ["Name", "Id", "Created", "Scope", "Driver"],
        "{text}"
    );
    ok(b.docker_out(&["rm", "-f", "ko"]));
}
