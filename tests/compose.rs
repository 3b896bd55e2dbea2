//! Debian's docker-compose 1.29 (Python, on docker-py) driving a four-service project against
//! berthd in a throwaway network namespace: a busybox web server with a health check and a
//! published port, an app that waits for it to be healthy and takes its environment from `.env`
//! and an `env_file`, a scaled worker, and a service built from a Dockerfile with build args;
//! two user networks with fixed subnets and a named volume.
//!
//! Traffic goes only to 127.0.0.1 inside berthd's namespace and to containers on its bridges.
//! Every image is local (busybox imported from busybox-static, the built one), so neither compose
//! nor the docker CLI ever pulls.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{inspect, ok, Berthd};

fn ready() -> bool {
    common::is_root()
        && common::have_docker_cli()
        && common::have_busybox()
        && common::have_command("docker-compose")
        && common::have_command("nft")
        && common::have_command("unshare")
        && common::have_command("nsenter")
        && common::have_command("curl")
}
const NOT_READY: &str = "needs root, the docker CLI, Debian's docker-compose and busybox-static, \
     nftables (nft), util-linux (unshare, nsenter) and curl";

const PROJECT: &str = "cp";
const WEB_PORT: &str = "18097";

const COMPOSE_FILE: &str = r#"version: "2.4"
services:
  web:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /www && echo hello-from-web > /www/index.html && httpd -f -p 80 -h /www & wait"]
    healthcheck:
      test: ["CMD-SHELL", "wget -qO- http://127.0.0.1/ | grep -q hello"]
      interval: 1s
      timeout: 2s
      retries: 30
    ports:
      - "127.0.0.1:${WEB_PORT}:80"
    mac_address: "02:42:0a:d4:01:99"
    networks:
      front:
        aliases: [site]
  app:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; trap 'echo got-usr1' USR1; echo app-start GREETING=$$GREETING LEVEL=$$LEVEL FROM_FILE=$$FROM_FILE; while :; do sleep 600 & wait $$!; done"]
    depends_on:
      web:
        condition: service_healthy
    environment:
      GREETING: "${GREETING}"
      LEVEL: "${LEVEL:-low}"
    env_file: app.env
    volumes:
      - data:/data
    networks: [front, back]
  worker:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; echo worker-boot; echo worker-up; sleep 600 & wait"]
    scale: 3
    networks: [back]
  built:
    build:
      context: ./built
      dockerfile: Dockerfile.custom
      args:
        FLAVOUR: spicy
    image: composeproj_built:v1
    command: ["sh", "-c", "trap 'exit 0' TERM; cat /flavour; sleep 600 & wait"]
    networks: [back]
networks:
  front:
    ipam:
      config:
        - subnet: 10.212.1.0/24
  back:
    ipam:
      config:
        - subnet: 10.212.2.0/24
volumes:
  data:
"#;

/// A berthd in its own namespace with busybox imported, and the project written beside it.
struct Project {
    b: Berthd,
    dir: PathBuf,
    /// A `docker` wrapper first on compose's PATH: it records each call, then runs the CLI.
    bin: PathBuf,
}

impl Project {
    fn new() -> Project {
        let b = Berthd::start_netns(&[]);
        let rootfs = common::busybox_rootfs_tar(b.dir.path());
        ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
        let dir = b.dir.path().join("proj");
        std::fs::create_dir_all(dir.join("built")).unwrap();
        std::fs::write(dir.join("docker-compose.yml"), COMPOSE_FILE).unwrap();
        std::fs::write(
            dir.join(".env"),
            format!("WEB_PORT={WEB_PORT}\nGREETING=hi-there\n"),
        )
        .unwrap();
        std::fs::write(dir.join("app.env"), "FROM_FILE=file-value\n").unwrap();
        std::fs::write(
            dir.join("built/Dockerfile.custom"),
            "FROM busybox:latest\nARG FLAVOUR=plain\nRUN echo \"$FLAVOUR\" > /flavour\n",
        )
        .unwrap();
        let bin = b.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let real = String::from_utf8_lossy(
            &Command::new("sh")
                .args(["-c", "command -v docker"])
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .to_string();
        let wrapper = bin.join("docker");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}\nexec {real} \"$@\"\n",
                b.dir.path().join("docker-calls").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Project { b, dir, bin }
    }

    /// `docker-compose -p cp args` in the project directory, on berthd's socket, with classic
    /// builds (through the API) and the docker CLI (for `exec` and `run`) on the same socket.
    fn cmd(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut c = Command::new("docker-compose");
        c.current_dir(&self.dir)
            .env("DOCKER_HOST", format!("unix://{}", self.b.socket.display()))
            .env("DOCKER_CONFIG", self.b.dir.path().join("docker-config"))
            .env("COMPOSE_DOCKER_CLI_BUILD", "0")
            .env("DOCKER_BUILDKIT", "0")
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env_remove("COMPOSE_API_VERSION")
            .env_remove("COMPOSE_INTERACTIVE_NO_CLI")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION")
            .stdin(Stdio::null())
            .args(["-p", PROJECT])
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let o = self.cmd(env, args).output().unwrap();
        eprintln!(
            "$ docker-compose {} (exit {})\n{}{}",
            args.join(" "),
            o.status,
            common::stdout(&o),
            common::stderr(&o)
        );
        o
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_env(&[], args)
    }

    /// A successful compose command: (stdout, stderr). Compose reports progress on stderr.
    #[track_caller]
    fn ok_env(&self, env: &[(&str, &str)], args: &[&str]) -> (String, String) {
        let o = self.run_env(env, args);
        assert!(
            o.status.success(),
            "docker-compose {args:?} failed ({}):\n{}{}",
            o.status,
            common::stdout(&o),
            common::stderr(&o)
        );
        (common::stdout(&o), common::stderr(&o))
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> (String, String) {
        self.ok_env(&[], args)
    }

    /// `exec -T app sh -c script` (through the docker CLI) and its stdout.
    #[track_caller]
    fn sh(&self, service: &str, script: &str) -> String {
        self.ok(&["exec", "-T", service, "sh", "-c", script]).0
    }

    fn docker_calls(&self) -> String {
        std::fs::read_to_string(self.b.dir.path().join("docker-calls")).unwrap_or_default()
    }

    /// Names of the project's containers, networks or volumes, by the project label.
    fn labelled(&self, kind: &str) -> BTreeSet<String> {
        let filter = format!("label=com.docker.compose.project={PROJECT}");
        let mut args = vec![kind, "ls", "--filter", &filter, "--format"];
        if kind == "container" {
            args.extend(["{{.Names}}", "-a"]);
        } else {
            args.push("{{.Name}}");
        }
        let names = ok(self.b.docker_out(&args));
        names.lines().map(str::to_string).collect()
    }

    /// `curl` to the published port from berthd's namespace, retried while the server starts.
    fn curl(&self) -> String {
        let url = format!("http://127.0.0.1:{WEB_PORT}/");
        let mut last = String::new();
        for _ in 0..50 {
            let o = self.b.in_netns("curl", &["-s", "--max-time", "2", &url]);
            if o.status.success() {
                return common::stdout(&o);
            }
            last = format!("{o:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("curl {url} failed: {last}");
    }

    /// The links and nftables tables of berthd's namespace, and whether any rule names the
    /// project's subnets.
    fn host_net_state(&self) -> (BTreeSet<String>, String, bool) {
        let links = common::stdout(&self.b.in_netns("ip", &["-o", "link"]))
            .lines()
            .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
            .collect();
        let tables = common::stdout(&self.b.in_netns("nft", &["list", "tables"]));
        let ruleset = common::stdout(&self.b.in_netns("nft", &["list", "ruleset"]));
        (links, tables, ruleset.contains("10.212."))
    }

    /// `down -v` and nothing of the project left: containers, networks, volumes by label;
    /// bridges, veths, nftables tables and rules in the namespace as before `up`.
    #[track_caller]
    fn down_and_check_clean(&self, before: &(BTreeSet<String>, String, bool)) {
        let (_, err) = self.ok(&["down", "-v"]);
        for what in [
            "Removing network cp_front",
            "Removing network cp_back",
            "Removing volume cp_data",
        ] {
            assert!(err.contains(what), "{what}: {err}");
        }
        for kind in ["container", "network", "volume"] {
            assert_eq!(self.labelled(kind), BTreeSet::new(), "{kind}s left");
        }
        let vols = ok(self.b.docker_out(&["volume", "ls", "-q"]));
        assert_eq!(vols.trim(), "", "no volume at all is left");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.host_net_state();
            if now == *before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the namespace still differs after down: {now:?} vs {before:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!before.2, "no rule names 10.212.x");
    }
}

/// The addresses busybox's nslookup printed for a name (not the server's).
fn addresses(nslookup: &str) -> BTreeSet<String> {
    nslookup
        .lines()
        .filter_map(|l| l.strip_prefix("Address: "))
        .map(|a| a.trim().to_string())
        .collect()
}

fn ip_on(b: &Berthd, container: &str, network: &str) -> String {
    inspect(
        b,
        container,
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
    )
}

fn labels(b: &Berthd, kind: &str, name: &str) -> serde_json::Value {
    let format = if kind == "container" {
        "{{json .Config.Labels}}"
    } else {
        "{{json .Labels}}"
    };
    let text = ok(b.docker_out(&[kind, "inspect", "--format", format, name]));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn compose_project_comes_up_wired_and_goes_without_a_trace() {
    require!(ready(), NOT_READY);
    let p = Project::new();
    let b = &p.b;
    let before = p.host_net_state();

    // config: .env substitution, the default, the env_file, the scale.
    let (config, _) = p.ok(&["config"]);
    for want in [
        "GREETING: hi-there",
        "LEVEL: low",
        "FROM_FILE: file-value",
        "127.0.0.1:18097:80/tcp",
        "scale: 3",
        "subnet: 10.212.1.0/24",
        "FLAVOUR: spicy",
    ] {
        assert!(config.contains(want), "{want} in:\n{config}");
    }
    let (services, _) = p.ok(&["config", "--services"]);
    let services: BTreeSet<&str> = services.lines().collect();
    assert_eq!(services, BTreeSet::from(["app", "built", "web", "worker"]));

    // build: through the API (classic builder), with the build arg; a second build is cached.
    let (out, _) = p.ok(&["build"]);
    assert!(
        out.contains("Successfully tagged composeproj_built:v1"),
        "{out}"
    );
    let (out, _) = p.ok(&["build"]);
    assert!(out.contains("Using cache"), "{out}");

    // up -d: networks, volume, and app only once web is healthy.
    let since = common::now_secs().to_string();
    let (_, err) = p.ok(&["up", "-d"]);
    for want in [
        "Creating network \"cp_front\" with the default driver",
        "Creating network \"cp_back\" with the default driver",
        "Creating volume \"cp_data\" with default driver",
        "Creating cp_web_1",
        "Creating cp_worker_3",
        "Creating cp_app_1",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    let events = common::events_text(
        b,
        &since,
        &[],
        "{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}}",
    );
    let at = |what: &str| -> u128 {
        events
            .lines()
            .find(|l| l.ends_with(what))
            .and_then(|l| l.split(' ').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no `{what}` event in:\n{events}"))
    };
    assert!(
        at("health_status: healthy cp_web_1") < at("create cp_app_1"),
        "app was created before web was healthy:\n{events}"
    );

    // A second up recreates nothing.
    let (_, err) = p.ok(&["up", "-d"]);
    for c in [
        "cp_web_1",
        "cp_app_1",
        "cp_built_1",
        "cp_worker_1",
        "cp_worker_2",
        "cp_worker_3",
    ] {
        assert!(err.contains(&format!("{c} is up-to-date")), "{c}: {err}");
    }
    assert!(!err.contains("Recreating"), "{err}");
    // compose compares the existing networks and volume with the file: nothing differs.
    assert!(!err.contains("WARNING"), "{err}");

    // ps: six containers up, web healthy with its port.
    let (ps, _) = p.ok(&["ps"]);
    let rows: Vec<&str> = ps.lines().filter(|l| l.starts_with("cp_")).collect();
    assert_eq!(rows.len(), 6, "{ps}");
    assert!(rows.iter().all(|r| r.contains(" Up")), "{ps}");
    let web_row = rows.iter().find(|r| r.starts_with("cp_web_1")).unwrap();
    assert!(web_row.contains("Up (healthy)"), "{web_row}");
    assert!(web_row.contains("127.0.0.1:18097->80/tcp"), "{web_row}");
    let (q, _) = p.ok(&["ps", "-q", "worker"]);
    assert_eq!(q.lines().count(), 3, "{q}");

    // The project's bridges, veths and rules exist now (and must go with `down`).
    let during = p.host_net_state();
    assert!(during.2, "no rule names the project's subnets");
    assert!(
        during.0.len() >= before.0.len() + 2 + 6,
        "two bridges and six veths: {:?}",
        during.0
    );

    // The published port, from berthd's namespace, and `port`.
    assert_eq!(p.curl(), "hello-from-web\n");
    let (port, _) = p.ok(&["port", "web", "80"]);
    assert_eq!(port.trim(), "127.0.0.1:18097");

    // The build arg reached the image.
    assert_eq!(
        ok(b.docker_out(&[
            "run",
            "--rm",
            "--network",
            "none",
            "composeproj_built:v1",
            "cat",
            "/flavour"
        ])),
        "spicy\n"
    );

    // compose's labels on containers, networks and the volume.
    let l = labels(b, "container", "cp_worker_2");
    assert_eq!(l["com.docker.compose.project"], PROJECT, "{l}");
    assert_eq!(l["com.docker.compose.service"], "worker", "{l}");
    assert_eq!(l["com.docker.compose.container-number"], "2", "{l}");
    assert_eq!(l["com.docker.compose.oneoff"], "False", "{l}");
    assert_eq!(l["com.docker.compose.version"], "1.29.2", "{l}");
    assert_eq!(
        l["com.docker.compose.project.working_dir"],
        p.dir.to_str().unwrap(),
        "{l}"
    );
    assert_eq!(
        l["com.docker.compose.config-hash"].as_str().map(str::len),
        Some(64),
        "{l}"
    );
    let l = labels(b, "network", "cp_back");
    assert_eq!(l["com.docker.compose.project"], PROJECT, "{l}");
    assert_eq!(l["com.docker.compose.network"], "back", "{l}");
    let l = labels(b, "volume", "cp_data");
    assert_eq!(l["com.docker.compose.project"], PROJECT, "{l}");
    assert_eq!(l["com.docker.compose.volume"], "data", "{l}");

    // Label filters select (podman ignores them on networks): an unlabelled network and
    // another project's are left out.
    ok(b.docker_out(&["network", "create", "--subnet", "10.213.0.0/24", "other"]));
    ok(b.docker_out(&[
        "network",
        "create",
        "--label",
        "com.docker.compose.project=elsewhere",
        "--subnet",
        "10.213.1.0/24",
        "elsewhere_default",
    ]));
    assert_eq!(
        p.labelled("network"),
        BTreeSet::from(["cp_back".to_string(), "cp_front".to_string()])
    );
    let front = ok(b.docker_out(&[
        "network",
        "ls",
        "--filter",
        "label=com.docker.compose.network=front",
        "--format",
        "{{.Name}}",
    ]));
    assert_eq!(front.trim(), "cp_front");
    assert_eq!(
        p.labelled("container").len(),
        6,
        "{:?}",
        p.labelled("container")
    );
    assert_eq!(
        p.labelled("volume"),
        BTreeSet::from(["cp_data".to_string()])
    );
    ok(b.docker_out(&["network", "rm", "other", "elsewhere_default"]));

    // The fixed subnets, and the endpoint's aliases (podman ignores them).
    assert_eq!(
        inspect(b, "cp_front", "{{(index .IPAM.Config 0).Subnet}}"),
        "10.212.1.0/24"
    );
    assert_eq!(
        inspect(b, "cp_back", "{{(index .IPAM.Config 0).Subnet}}"),
        "10.212.2.0/24"
    );
    let aliases = inspect(
        b,
        "cp_web_1",
        "{{json (index .NetworkSettings.Networks \"cp_front\").Aliases}}",
    );
    assert!(
        aliases.contains("\"web\"") && aliases.contains("\"site\""),
        "{aliases}"
    );
    let web_ip = ip_on(b, "cp_web_1", "cp_front");
    assert!(web_ip.starts_with("10.212.1."), "{web_ip}");
    // `mac_address:` holds though compose disconnects and reconnects the network before the
    // start (dockerd before 25 applied the container-wide MAC at start).
    assert_eq!(
        inspect(
            b,
            "cp_web_1",
            "{{(index .NetworkSettings.Networks \"cp_front\").MacAddress}} {{.Config.MacAddress}}"
        ),
        "02:42:0a:d4:01:99 02:42:0a:d4:01:99"
    );
    let link = p.sh("web", "cat /sys/class/net/eth0/address");
    assert_eq!(link, "02:42:0a:d4:01:99\n");

    // DNS between services on berth's bridges: by service name, alias and container name.
    for name in ["web", "site", "cp_web_1"] {
        let out = p.sh("app", &format!("nslookup {name}"));
        assert_eq!(
            addresses(&out),
            BTreeSet::from([web_ip.clone()]),
            "{name}: {out}"
        );
        assert_eq!(
            p.sh("app", &format!("wget -qO- http://{name}/")),
            "hello-from-web\n",
            "by {name}"
        );
    }
    // The scaled service's name is every replica.
    let workers: BTreeSet<String> = (1..=3)
        .map(|i| ip_on(b, &format!("cp_worker_{i}"), "cp_back"))
        .collect();
    assert_eq!(workers.len(), 3, "{workers:?}");
    let out = p.sh("app", "nslookup worker");
    assert_eq!(addresses(&out), workers, "{out}");
    let w2 = ip_on(b, "cp_worker_2", "cp_back");
    let out = p.sh("app", "ping -c1 -W1 cp_worker_2");
    assert!(out.contains(&format!("({w2})")), "{out}");
    assert!(out.contains("1 packets received"), "{out}");
    let out = p.sh("built", "ping -c1 -W1 worker");
    assert!(out.contains("1 packets received"), "{out}");
    // web is on front only, app on both, the others on back.
    assert_eq!(
        inspect(
            b,
            "cp_web_1",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}"
        ),
        "cp_front"
    );
    assert_eq!(
        inspect(
            b,
            "cp_app_1",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}"
        ),
        "cp_back cp_front"
    );

    // The environment: .env substitution, the default, the env_file.
    let env = p.sh("app", "env");
    for want in ["GREETING=hi-there", "LEVEL=low", "FROM_FILE=file-value"] {
        assert!(env.lines().any(|l| l == want), "{want} in {env}");
    }

    // logs: --tail, -t, -f.
    let (out, _) = p.ok(&["logs", "--no-color", "--tail", "1", "worker"]);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(" | ")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines.iter().all(|l| l.ends_with("| worker-up")), "{out}");
    let (out, _) = p.ok(&["logs", "--no-color", "worker"]);
    assert_eq!(out.matches("worker-boot").count(), 3, "{out}");
    let (out, _) = p.ok(&["logs", "--no-color", "-t", "built", "app"]);
    let stamped = |rest: &str| {
        out.lines().any(|l| {
            l.split_once(" | ").is_some_and(|(_, t)| {
                t.split_once(' ').is_some_and(|(ts, text)| {
                    text == rest && ts.ends_with('Z') && ts.len() >= 20 && ts.contains('T')
                })
            })
        })
    };
    assert!(stamped("spicy"), "{out}");
    assert!(
        stamped("app-start GREETING=hi-there LEVEL=low FROM_FILE=file-value"),
        "{out}"
    );
    // -f follows: a line written after it started arrives, then it is stopped.
    let mut follow = p
        .cmd(&[], &["logs", "-f", "--no-color", "--tail", "0", "app"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got = Vec::new();
    let mut signalled = 0;
    while !got.iter().any(|l: &String| l.ends_with("| got-usr1")) {
        assert!(Instant::now() < deadline, "logs -f did not follow: {got:?}");
        // Until the follower is attached, signal again.
        if signalled < 10 {
            p.ok(&["kill", "-s", "USR1", "app"]);
            signalled += 1;
        }
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            got.push(l);
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        !got.iter().any(|l| l.contains("app-start")),
        "--tail 0 replayed old lines: {got:?}"
    );

    // The deprecated image fields compose 1.29 reads on recreate: sent below v1.45 only, as
    // dockerd.
    let legacy = |v: &str| {
        let r = common::Conn::unix(&b.socket).request(
            "GET",
            &format!("/v{v}/images/busybox:latest/json"),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let old = legacy("1.44");
    assert_eq!(old["Container"], "", "{old}");
    assert_eq!(
        old["ContainerConfig"]["Volumes"],
        serde_json::Value::Null,
        "{old}"
    );
    assert_eq!(old["ContainerConfig"]["Hostname"], "", "{old}");
    // A built image's ContainerConfig is its last step's container config.
    let r = common::Conn::unix(&b.socket).request(
        "GET",
        "/v1.44/images/composeproj_built:v1/json",
        None,
    );
    let cc = &r.json()["ContainerConfig"];
    assert_eq!(
        cc["Cmd"],
        serde_json::json!([
            "|1",
            "FLAVOUR=spicy",
            "/bin/sh",
            "-c",
            "echo \"$FLAVOUR\" > /flavour"
        ]),
        "{cc}"
    );
    assert_eq!(cc["Tty"], false, "{cc}");
    let new = legacy("1.45");
    assert!(new.get("ContainerConfig").is_none(), "{new}");
    assert!(new.get("Container").is_none(), "{new}");

    p.down_and_check_clean(&before);
}

#[test]
fn compose_exec_run_lifecycle_and_scale() {
    require!(ready(), NOT_READY);
    let p = Project::new();
    let b = &p.b;
    let before = p.host_net_state();
    p.ok(&["build", "-q"]);
    p.ok(&["up", "-d"]);

    // exec, the default way: compose runs `docker exec` (DOCKER_HOST is berthd's).
    let o = p.run(&[
        "exec",
        "-T",
        "app",
        "sh",
        "-c",
        "echo out-$GREETING; echo err >&2",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(common::stdout(&o), "out-hi-there\n");
    assert_eq!(common::stderr(&o), "err\n");
    let calls = p.docker_calls();
    let app_id = inspect(b, "cp_app_1", "{{.Id}}");
    assert!(
        calls.contains(&format!("exec --interactive {app_id} sh -c")),
        "compose did not go through the CLI: {calls}"
    );
    let o = p.run(&["exec", "-T", "app", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    // Standard input reaches the command through the CLI.
    let mut child = p
        .cmd(&[], &["exec", "-T", "app", "sh", "-c", "cat; echo end"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"piped-in\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(common::stdout(&o), "piped-in\nend\n");

    // exec through the API (dockerpty demultiplexes both streams onto stdout).
    let calls_before = p.docker_calls();
    let api = [("COMPOSE_INTERACTIVE_NO_CLI", "1")];
    let o = p.run_env(
        &api,
        &[
            "exec",
            "-T",
            "app",
            "sh",
            "-c",
            "echo via-api; echo err-api >&2",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(common::stdout(&o), "via-api\nerr-api\n");
    let o = p.run_env(&api, &["exec", "-T", "app", "sh", "-c", "exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    let o = p.run_env(
        &api,
        &[
            "exec",
            "-T",
            "--user",
            "1000",
            "-e",
            "X=y",
            "app",
            "sh",
            "-c",
            "echo $(id -u) $X",
        ],
    );
    assert_eq!(common::stdout(&o), "1000 y\n", "{o:?}");
    assert_eq!(p.docker_calls(), calls_before, "the API path ran the CLI");

    // run --rm: a one-off container of app, on its networks, gone afterwards.
    let (out, _) = p.ok(&[
        "run",
        "--rm",
        "-T",
        "app",
        "sh",
        "-c",
        "echo run-$GREETING; wget -qO- http://site/; cat /data/missing 2>/dev/null || echo no-file",
    ]);
    assert_eq!(out, "run-hi-there\nhello-from-web\nno-file\n");
    let oneoff = ok(b.docker_out(&[
        "ps",
        "-a",
        "--filter",
        "label=com.docker.compose.oneoff=True",
        "-q",
    ]));
    assert_eq!(oneoff.trim(), "", "run --rm left its container");
    // Through the API, dockerpty attaches only after the start (its `sockets()` is a lazy `map`
    // under Python 3), with dockerd as with berth: the command waits for it before writing.
    let o = p.run_env(
        &api,
        &[
            "run",
            "--rm",
            "-T",
            "app",
            "sh",
            "-c",
            "sleep 1; echo api-run; exit 5",
        ],
    );
    assert_eq!(common::stdout(&o), "api-run\n", "{o:?}");
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    let oneoff = ok(b.docker_out(&[
        "ps",
        "-a",
        "--filter",
        "label=com.docker.compose.oneoff=True",
        "-q",
    ]));
    assert_eq!(oneoff.trim(), "", "run --rm left its container");

    // Data in the named volume survives a forced recreate. compose 1.29 reads the image's
    // ContainerConfig when it recreates, which dockerd sends only below API 1.45 and berth
    // to compose 1.x at every version (it talks the daemon's own, 1.51).
    p.sh("app", "echo persisted > /data/file");
    let old_id = inspect(b, "cp_app_1", "{{.Id}}");
    let (_, err) = p.ok(&["up", "-d", "--force-recreate"]);
    assert!(err.contains("Recreating cp_app_1"), "{err}");
    assert!(err.contains("Recreating cp_worker_3"), "{err}");
    let new_id = inspect(b, "cp_app_1", "{{.Id}}");
    assert_ne!(old_id, new_id, "app was not recreated");
    assert_eq!(p.sh("app", "cat /data/file"), "persisted\n");
    assert_eq!(
        inspect(b, "cp_app_1", "{{(index .Mounts 0).Name}}"),
        "cp_data"
    );
    assert_eq!(p.curl(), "hello-from-web\n");
    assert_eq!(
        p.labelled("container").len(),
        6,
        "{:?}",
        p.labelled("container")
    );

    // stop, start, restart.
    let (_, err) = p.ok(&["stop"]);
    assert!(err.contains("Stopping cp_web_1"), "{err}");
    let (ps, _) = p.ok(&["ps"]);
    let rows: Vec<&str> = ps.lines().filter(|l| l.starts_with("cp_")).collect();
    assert_eq!(rows.len(), 6, "{ps}");
    assert!(rows.iter().all(|r| r.contains("Exit 0")), "{ps}");
    let o = p.b.in_netns(
        "curl",
        &[
            "-s",
            "--max-time",
            "1",
            &format!("http://127.0.0.1:{WEB_PORT}/"),
        ],
    );
    assert!(!o.status.success(), "the port is still served: {o:?}");
    let (_, err) = p.ok(&["start"]);
    assert!(err.contains("Starting web"), "{err}");
    assert_eq!(p.curl(), "hello-from-web\n");
    assert_eq!(p.sh("app", "cat /data/file"), "persisted\n");
    let started = inspect(b, "cp_web_1", "{{.State.StartedAt}}");
    let (_, err) = p.ok(&["restart", "web"]);
    assert!(err.contains("Restarting cp_web_1"), "{err}");
    assert_ne!(inspect(b, "cp_web_1", "{{.State.StartedAt}}"), started);
    assert_eq!(p.curl(), "hello-from-web\n");
    assert_eq!(p.sh("app", "wget -qO- http://web/"), "hello-from-web\n");

    // scale down and up; the service name follows the replicas.
    let (_, err) = p.ok(&["up", "-d", "--scale", "worker=1"]);
    assert!(err.contains("Stopping and removing cp_worker_3"), "{err}");
    assert!(err.contains("cp_app_1 is up-to-date"), "{err}");
    let (q, _) = p.ok(&["ps", "-q", "worker"]);
    assert_eq!(q.lines().count(), 1, "{q}");
    let w1 = ip_on(b, "cp_worker_1", "cp_back");
    let out = p.sh("app", "nslookup worker");
    assert_eq!(addresses(&out), BTreeSet::from([w1]), "{out}");
    let (_, err) = p.ok(&["up", "-d", "--scale", "worker=4"]);
    assert!(err.contains("Creating cp_worker_4"), "{err}");
    let workers: BTreeSet<String> = (1..=4)
        .map(|i| ip_on(b, &format!("cp_worker_{i}"), "cp_back"))
        .collect();
    assert_eq!(workers.len(), 4);
    let out = p.sh("app", "nslookup worker");
    assert_eq!(addresses(&out), workers, "{out}");

    p.down_and_check_clean(&before);
}

#[test]
fn compose_sidecar_in_a_service_network_namespace() {
    require!(ready(), NOT_READY);
    // `network_mode: service:main` is `--network container:<main>`: as with dockerd, the
    // sidecar shares main's namespace and its hostname, hosts and resolv.conf files, so it
    // reaches main's server on 127.0.0.1 and resolves the project's names through 127.0.0.11.
    let b = Berthd::start_netns(&[]);
    let rootfs = common::busybox_rootfs_tar(b.dir.path());
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    let dir = b.dir.path().join("side");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        r#"version: "2.4"
services:
  main:
    image: busybox:latest
    hostname: mainhost
    domainname: example.test
    extra_hosts: ["gw.test:10.9.9.9"]
    command: ["sh", "-c", "trap 'exit 0' TERM; echo main-page > /index.html; httpd -f -p 8080 -h / & wait"]
    networks:
      default:
        ipv4_address: 10.214.0.50
  sidecar:
    image: busybox:latest
    network_mode: "service:main"
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
networks:
  default:
    ipam:
      config:
        - subnet: 10.214.0.0/24
"#,
    )
    .unwrap();
    let compose = |args: &[&str]| {
        let o = common::compose(&b, &dir, "side", args);
        assert!(
            o.status.success(),
            "docker-compose {args:?}: {}{}",
            common::stdout(&o),
            common::stderr(&o)
        );
        common::stdout(&o)
    };
    compose(&["up", "-d"]);
    let main_id = inspect(&b, "side_main_1", "{{.Id}}");
    assert_eq!(
        inspect(&b, "side_sidecar_1", "{{.HostConfig.NetworkMode}}"),
        format!("container:{main_id}")
    );
    let out = compose(&[
        "exec",
        "-T",
        "sidecar",
        "sh",
        "-c",
        "hostname; hostname -d; echo $HOSTNAME; grep gw.test /etc/hosts; \
         grep nameserver /etc/resolv.conf; wget -qO- http://127.0.0.1:8080/; \
         nslookup main | grep 'Address: '",
    ]);
    assert_eq!(
        out,
        "mainhost\nexample.test\nmainhost\n10.9.9.9\tgw.test\nnameserver 127.0.0.11\nmain-page\n\
         Address: 10.214.0.50\n"
    );
    for field in ["HostsPath", "ResolvConfPath", "HostnamePath"] {
        let f = format!("{{{{.{field}}}}}");
        assert_eq!(
            inspect(&b, "side_sidecar_1", &f),
            inspect(&b, "side_main_1", &f),
            "{field}"
        );
    }
    assert_eq!(
        inspect(&b, "side_sidecar_1", "{{.Config.Hostname}}"),
        "mainhost"
    );
    compose(&["down"]);
    assert_eq!(
        ok(b.docker_out(&["ps", "-aq"])).trim(),
        "",
        "down left containers"
    );
}
