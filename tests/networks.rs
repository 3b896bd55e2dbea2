//! Networks through the docker CLI, with berthd in a throwaway network namespace (so that its
//! bridges, nftables tables, veths and published ports never touch the host's network):
//! user-defined bridges with IPAM options, containers reaching each other by name, alias and
//! IP through the embedded DNS, forwarding to a fake upstream the test runs itself, published
//! ports through the proxy and with NAT only, connect/disconnect, internal networks, legacy
//! links, `host-gateway`, live restore after `kill -9`, and no leaks after many runs.
//!
//! Traffic goes only to 127.0.0.1 inside berthd's namespace and to containers on its bridges.

mod common;

use std::time::Duration;

use common::{inspect, ok, stderr, wait_for, Berthd};

fn ready() -> bool {
    common::is_root()
        && common::have_docker_cli()
        && common::have_busybox()
        && common::have_command("nft")
        && common::have_command("unshare")
        && common::have_command("nsenter")
        && common::have_command("curl")
}
const NOT_READY: &str =
    "needs root, the docker CLI, busybox-static, nftables (nft), util-linux (unshare, nsenter) and curl";

/// berthd in its own network namespace, with the busybox image imported.
fn berthd(extra: &[&str]) -> Berthd {
    let b = Berthd::start_netns(extra);
    let rootfs = common::busybox_rootfs_tar(b.dir.path());
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    b
}

/// A busybox web server answering `text` on port 80.
fn web(b: &Berthd, args: &[&str], text: &str) -> String {
    let script =
        format!("mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www");
    let mut a = vec!["run", "-d"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["busybox", "sh", "-c", &script]);
    ok(b.docker_out(&a)).trim().to_string()
}

/// `curl` from berthd's namespace, retried while the server starts.
fn curl(b: &Berthd, url: &str) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        let o = b.in_netns("curl", &["-s", "--max-time", "2", url]);
        if o.status.success() {
            return String::from_utf8_lossy(&o.stdout).into_owned();
        }
        last = format!("{o:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("curl {url} failed: {last}");
}

#[test]
fn network_create_inspect_list_remove_prune() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    let id = ok(b.docker_out(&[
        "network",
        "create",
        "--subnet",
        "10.201.0.0/24",
        "--ip-range",
        "10.201.0.128/25",
        "--gateway",
        "10.201.0.1",
        "--aux-address",
        "reserved=10.201.0.130",
        "--label",
        "team=a",
        "-o",
        "com.docker.network.bridge.name=brtest1",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "--attachable",
        "n1",
    ]))
    .trim()
    .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(b.docker_out(&["network", "inspect", "n1"]))).unwrap();
    let n = &v[0];
    assert_eq!(n["Name"], "n1");
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["Scope"], "local");
    assert_eq!(n["Attachable"], true);
    assert_eq!(n["Internal"], false);
    assert_eq!(n["Labels"]["team"], "a");
    assert_eq!(
        n["IPAM"]["Config"],
        serde_json::json!([{
            "Subnet": "10.201.0.0/24",
            "IPRange": "10.201.0.128/25",
            "Gateway": "10.201.0.1",
            "AuxiliaryAddresses": {"reserved": "10.201.0.130"}
        }])
    );
    assert_eq!(n["Options"]["com.docker.network.bridge.name"], "brtest1");
    // The bridge exists in berthd's namespace with the gateway address and the MTU.
    let link =
        String::from_utf8_lossy(&b.in_netns("ip", &["-o", "addr", "show", "brtest1"]).stdout)
            .into_owned();
    assert!(link.contains("10.201.0.1/24"), "{link}");
    let l = String::from_utf8_lossy(&b.in_netns("ip", &["-o", "link", "show", "brtest1"]).stdout)
        .into_owned();
    assert!(l.contains("mtu 1400"), "{l}");
    // The address comes from the range, skipping the auxiliary one.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "n1",
        "busybox",
        "sleep",
        "600",
    ]));
    let ip = inspect(&b, "c1", "{{.NetworkSettings.Networks.n1.IPAddress}}");
    assert_eq!(ip, "10.201.0.128");
    let addrs = ok(b.docker_out(&["exec", "c1", "ip", "-o", "addr", "show", "eth0"]));
    assert!(addrs.contains("10.201.0.128/24"), "{addrs}");
    // A duplicate name is a conflict; a predefined one cannot be made or removed.
    let o = b.docker_out(&["network", "create", "n1"]);
    assert!(
        stderr(&o).contains("network with name n1 already exists"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["network", "rm", "bridge"]);
    assert!(
        stderr(&o).contains("bridge is a pre-defined network and cannot be removed"),
        "{}",
        stderr(&o)
    );
    // In use.
    let o = b.docker_out(&["network", "rm", "n1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has active endpoints"),
        "{}",
        stderr(&o)
    );
    // Lists and filters.
    let names = ok(b.docker_out(&["network", "ls", "--format", "{{.Name}}"]));
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["bridge", "host", "n1", "none"]);
    let f = ok(b.docker_out(&["network", "ls", "-q", "--filter", "label=team=a"]));
    assert_eq!(f.trim(), &id[..12]);
    let f = ok(b.docker_out(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        "type=custom",
    ]));
    assert_eq!(f.trim(), "n1");
    let o = b.docker_out(&["network", "ls", "--filter", "nope=1"]);
    assert!(
        stderr(&o).contains("invalid filter 'nope'"),
        "{}",
        stderr(&o)
    );
    // Inspect's Containers.
    let c = inspect(
        &b,
        "n1",
        "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}",
    );
    assert_eq!(c, "c1 10.201.0.128/24");
    ok(b.docker_out(&["rm", "-f", "c1"]));
    ok(b.docker_out(&["network", "rm", "n1"]));
    let gone = b.in_netns("ip", &["link", "show", "brtest1"]);
    assert!(!gone.status.success(), "the bridge goes with the network");
    // A bridge that existed before is adopted, and left in place when the network goes.
    let o = b.in_netns("ip", &["link", "add", "bradopt", "type", "bridge"]);
    assert!(o.status.success(), "{o:?}");
    ok(b.docker_out(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.name=bradopt",
        "adopt",
    ]));
    ok(b.docker_out(&["network", "rm", "adopt"]));
    assert!(
        b.in_netns("ip", &["link", "show", "bradopt"])
            .status
            .success(),
        "adopted bridge kept"
    );
    // Prune takes unused user networks only, honouring label filters.
    ok(b.docker_out(&["network", "create", "--label", "keep=1", "p1"]));
    ok(b.docker_out(&["network", "create", "p2"]));
    let out = ok(b.docker_out(&["network", "prune", "-f", "--filter", "label!=keep=1"]));
    assert!(out.contains("p2") && !out.contains("p1"), "{out}");
    let o = b.docker_out(&["network", "inspect", "nope-net"]);
    assert!(
        stderr(&o).contains("network nope-net not found"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn containers_reach_each_other_by_name_alias_and_ip() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    ok(b.docker_out(&["network", "create", "--subnet", "10.202.0.0/24", "app"]));
    web(
        &b,
        &[
            "--name",
            "web",
            "--network",
            "app",
            "--network-alias",
            "svc",
        ],
        "hello",
    );
    let ip = inspect(&b, "web", "{{.NetworkSettings.Networks.app.IPAddress}}");
    assert_eq!(ip, "10.202.0.2");
    let dns = inspect(&b, "web", "{{json .NetworkSettings.Networks.app.DNSNames}}");
    let want = format!(
        "[\"web\",\"svc\",\"{}\"]",
        &inspect(&b, "web", "{{.Id}}")[..12]
    );
    assert_eq!(dns, want);
    for target in ["web", "svc", ip.as_str(), "web.app"] {
        let url = format!("http://{target}/");
        let mut got = String::new();
        for _ in 0..30 {
            // No `-T`: busybox-static's wget crashes when it sets its timer.
            let o = b.docker_out(&[
                "run",
                "--rm",
                "--network",
                "app",
                "busybox",
                "wget",
                "-qO-",
                &url,
            ]);
            if o.status.success() {
                got = String::from_utf8_lossy(&o.stdout).into_owned();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(got, "hello\n", "by {target}");
    }
    // The resolv.conf of a user network points at the embedded server.
    let resolv = ok(b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]));
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    assert!(resolv.contains("ndots:0"), "{resolv}");
    // A shared alias answers with every replica.
    for n in ["r1", "r2"] {
        ok(b.docker_out(&[
            "run",
            "-d",
            "--name",
            n,
            "--network",
            "app",
            "--network-alias",
            "rep",
            "busybox",
            "sleep",
            "600",
        ]));
    }
    let out = ok(b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "nslookup",
        "rep",
    ]));
    let r1 = inspect(&b, "r1", "{{.NetworkSettings.Networks.app.IPAddress}}");
    let r2 = inspect(&b, "r2", "{{.NetworkSettings.Networks.app.IPAddress}}");
    assert!(out.contains(&r1) && out.contains(&r2), "{out}");
    // PTR.
    let out = ok(b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "nslookup",
        &r1,
    ]));
    assert!(out.contains("r1.app"), "{out}");
    // The default bridge has no embedded DNS: names do not resolve there.
    let o = b.docker_out(&["run", "--rm", "busybox", "sh", "-c", "cat /etc/resolv.conf"]);
    assert!(!stdout_of(&o).contains("127.0.0.11"), "{}", stdout_of(&o));
    // Containers on different networks are isolated.
    ok(b.docker_out(&["network", "create", "--subnet", "10.203.0.0/24", "other"]));
    let o = b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "other",
        "busybox",
        "sh",
        "-c",
        // Under sh (and not its last command, which sh would exec): the command is not
        // PID 1, which ignores timeout's signal.
        &format!("timeout 3 wget -qO- http://{ip}/; exit $?"),
    ]);
    assert!(!o.status.success(), "another network must not reach {ip}");
    // ps filters by network.
    let names = ok(b.docker_out(&["ps", "--filter", "network=app", "--format", "{{.Names}}"]));
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["r1", "r2", "web"]);
}

fn stdout_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn dns_forwards_to_the_upstream_and_fails_without_one() {
    require!(ready(), NOT_READY);
    require!(
        common::have_command("python3"),
        "needs python3 for the fake upstream"
    );
    let b = berthd(&["--dns", "127.0.0.1"]);
    // A fake upstream on 127.0.0.1:53 in berthd's namespace: every A query gets 10.99.99.99.
    let server = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
answer = bytes(int(x) for x in sys.argv[2].split("."))
while True:
    q, a = s.recvfrom(512)
    i = 12
    while q[i] != 0:
        i += q[i] + 1
    qtype = q[i + 1:i + 3]
    question = q[12:i + 5]
    if qtype == b"\x00\x01":
        ans = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + answer
        r = q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + question + ans
    else:
        r = q[:2] + b"\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00" + question
    s.sendto(r, a)
"#;
    let mut fake = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", b.pid()))
        .args(["--", "python3", "-c", server, "127.0.0.1", "10.99.99.99"])
        .spawn()
        .unwrap();
    // A second upstream for a container's own `--dns`.
    let mut fake2 = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", b.pid()))
        .args(["--", "python3", "-c", server, "127.0.0.3", "10.88.88.88"])
        .spawn()
        .unwrap();
    ok(b.docker_out(&["network", "create", "--subnet", "10.204.0.0/24", "fw"]));
    let mut out = String::new();
    for _ in 0..30 {
        let o = b.docker_out(&[
            "run",
            "--rm",
            "--network",
            "fw",
            "busybox",
            "nslookup",
            "outside.example",
        ]);
        out = stdout_of(&o);
        if out.contains("10.99.99.99") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(out.contains("10.99.99.99"), "{out}");
    // The container's own --dns is its upstream on a user network (resolv.conf still names
    // the embedded server).
    let mut out = String::new();
    for _ in 0..30 {
        let o = b.docker_out(&[
            "run",
            "--rm",
            "--network",
            "fw",
            "--dns",
            "127.0.0.3",
            "busybox",
            "sh",
            "-c",
            "grep nameserver /etc/resolv.conf; nslookup other.example",
        ]);
        out = stdout_of(&o);
        if out.contains("10.88.88.88") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        out.starts_with("nameserver 127.0.0.11\n") && out.contains("10.88.88.88"),
        "{out}"
    );
    // An internal network forwards nothing.
    ok(b.docker_out(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.205.0.0/24",
        "inner",
    ]));
    let o = b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "inner",
        "busybox",
        "nslookup",
        "outside.example",
    ]);
    assert!(!stdout_of(&o).contains("10.99.99.99"), "{}", stdout_of(&o));
    for f in [&mut fake, &mut fake2] {
        let _ = f.kill();
        let _ = f.wait();
    }
}

#[test]
fn published_ports_through_the_proxy_and_their_errors() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    web(&b, &["--name", "p1", "-p", "127.0.0.1:18080:80"], "proxied");
    assert_eq!(curl(&b, "http://127.0.0.1:18080/"), "proxied\n");
    // Through the bridge gateway (a host address) as well: NAT.
    let gw = inspect(&b, "bridge", "{{(index .IPAM.Config 0).Gateway}}");
    let _ = gw;
    assert_eq!(
        ok(b.docker_out(&["port", "p1"])).trim(),
        "80/tcp -> 127.0.0.1:18080"
    );
    let ps = ok(b.docker_out(&["ps", "--format", "{{.Ports}}", "--filter", "name=p1"]));
    assert_eq!(ps.trim(), "127.0.0.1:18080->80/tcp");
    let f = ok(b.docker_out(&["ps", "-q", "--filter", "publish=18080"]));
    assert_eq!(f.trim().len(), 12);
    // The same host port again: dockerd's text, and nothing is left of the failed start.
    let o = b.docker_out(&[
        "run",
        "-d",
        "--name",
        "p2",
        "-p",
        "127.0.0.1:18080:80",
        "busybox",
        "sleep",
        "600",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Bind for 127.0.0.1:18080 failed: port is already allocated"),
        "{}",
        stderr(&o)
    );
    assert_eq!(inspect(&b, "p2", "{{.State.Running}}"), "false");
    // -P: every exposed port on a port of the kernel's choice.
    web(&b, &["--name", "p3", "--expose", "80", "-P"], "random");
    let port = ok(b.docker_out(&["port", "p3", "80/tcp"]));
    let host_port = port.trim().rsplit(':').next().unwrap().to_string();
    assert!(host_port.parse::<u16>().unwrap() > 1024, "{port}");
    assert_eq!(
        curl(&b, &format!("http://127.0.0.1:{host_port}/")),
        "random\n"
    );
    // As dockerd with its proxy: a port published on every IPv4 address is on every IPv6
    // address too, the proxy forwarding to the container's IPv4 address.
    if std::path::Path::new("/proc/net/if_inet6").exists() {
        assert_eq!(
            port.trim(),
            format!("0.0.0.0:{host_port}\n[::]:{host_port}"),
            "{port}"
        );
        assert_eq!(curl(&b, &format!("http://[::1]:{host_port}/")), "random\n");
        let ps = ok(b.docker_out(&["ps", "--format", "{{.Ports}}", "--filter", "name=p3"]));
        assert_eq!(
            ps.trim(),
            format!("0.0.0.0:{host_port}->80/tcp, [::]:{host_port}->80/tcp")
        );
        // The same port for another container: dockerd 28's whole text.
        let o = b.docker_out(&[
            "run",
            "-d",
            "--name",
            "p4",
            "-p",
            &format!("{host_port}:80"),
            "busybox",
            "true",
        ]);
        assert!(
            stderr(&o).contains(
                "failed to set up container networking: driver failed programming external \
                 connectivity on endpoint p4 ("
            ) && stderr(&o).contains(&format!(
                "): Bind for 0.0.0.0:{host_port} failed: port is already allocated"
            )),
            "{}",
            stderr(&o)
        );
    }
    // Inspect's Ports.
    let ports = inspect(&b, "p1", "{{json .NetworkSettings.Ports}}");
    assert_eq!(
        ports,
        r#"{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"18080"}]}"#
    );
    // The binding goes with the container.
    ok(b.docker_out(&["rm", "-f", "p1"]));
    let o = b.in_netns(
        "curl",
        &["-s", "--max-time", "1", "http://127.0.0.1:18080/"],
    );
    assert!(!o.status.success(), "the port is closed after rm");
    // UDP: busybox has no UDP server, so the host's python3 (its /usr bound read-only)
    // echoes datagrams inside the container; the client runs in berthd's namespace.
    if std::path::Path::new("/usr/bin/python3").exists() {
        ok(b.docker_out(&[
            "run", "-d", "--name", "u1", "-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro",
            "-v", "/usr/lib64:/lib64:ro", "-p", "127.0.0.1:15353:53/udp", "busybox",
            "/usr/bin/python3", "-c",
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',53))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(d,a)",
        ]));
        let client = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(1)\ns.sendto(b'ping',('127.0.0.1',15353))\nprint(s.recvfrom(100)[0].decode())";
        let mut echoed = String::new();
        for _ in 0..30 {
            let o = b.in_netns("/usr/bin/python3", &["-c", client]);
            echoed = stdout_of(&o);
            if echoed.contains("ping") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(echoed.trim(), "ping", "udp echo through the proxy");
    } else {
        eprintln!("SKIP udp part: needs /usr/bin/python3");
    }
}

#[test]
fn published_ports_with_nat_only() {
    require!(ready(), NOT_READY);
    let b = berthd(&["--userland-proxy=false"]);
    web(&b, &["--name", "n1", "-p", "18081:80"], "natted");
    assert_eq!(curl(&b, "http://127.0.0.1:18081/"), "natted\n");
    // Hairpin: another container through the gateway address.
    let gw = inspect(&b, "bridge", "{{(index .IPAM.Config 0).Gateway}}");
    let o = b.docker_out(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        &format!("timeout 5 wget -qO- http://{gw}:18081/; exit $?"),
    ]);
    assert_eq!(stdout_of(&o), "natted\n", "{}", stderr(&o));
}

#[test]
fn connect_and_disconnect_live() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    ok(b.docker_out(&["network", "create", "--subnet", "10.206.0.0/24", "extra"]));
    ok(b.docker_out(&["run", "-d", "--name", "c1", "busybox", "sleep", "600"]));
    ok(b.docker_out(&[
        "network",
        "connect",
        "--alias",
        "xtra",
        "--ip",
        "10.206.0.50",
        "extra",
        "c1",
    ]));
    let addrs = ok(b.docker_out(&["exec", "c1", "ip", "-o", "addr"]));
    assert!(
        addrs.contains("eth1") && addrs.contains("10.206.0.50/24"),
        "{addrs}"
    );
    assert_eq!(
        inspect(&b, "c1", "{{.NetworkSettings.Networks.extra.IPAddress}}"),
        "10.206.0.50"
    );
    let o = b.docker_out(&["network", "connect", "extra", "c1"]);
    assert!(
        stderr(&o).contains("endpoint with name c1 already exists in network extra"),
        "{}",
        stderr(&o)
    );
    // A container on the same network reaches it by its alias.
    let o = b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "extra",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "xtra",
    ]);
    assert!(o.status.success(), "{}", stdout_of(&o));
    ok(b.docker_out(&["network", "disconnect", "extra", "c1"]));
    // The veth goes in the background, right after the answer.
    wait_for("eth1 to go", Duration::from_secs(5), || {
        !ok(b.docker_out(&["exec", "c1", "ip", "-o", "addr"])).contains("10.206.0.50")
    });
    let o = b.docker_out(&["network", "disconnect", "extra", "c1"]);
    assert!(
        stderr(&o).contains("is not connected to network extra"),
        "{}",
        stderr(&o)
    );
    // A stopped container is connected at its next start.
    ok(b.docker_out(&["create", "--name", "c2", "busybox", "sleep", "600"]));
    ok(b.docker_out(&["network", "connect", "extra", "c2"]));
    ok(b.docker_out(&["start", "c2"]));
    let addrs = ok(b.docker_out(&["exec", "c2", "ip", "-o", "addr"]));
    assert!(addrs.contains("10.206.0."), "{addrs}");
}

#[test]
fn links_add_host_and_hostnames_on_the_default_bridge() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "db",
        "--expose",
        "5432",
        "-e",
        "SECRET=s3",
        "busybox",
        "sleep",
        "600",
    ]));
    let db_ip = inspect(&b, "db", "{{.NetworkSettings.Networks.bridge.IPAddress}}");
    assert!(db_ip.starts_with("172."), "{db_ip}");
    // The deprecated top-level fields still answer for the default bridge.
    assert_eq!(inspect(&b, "db", "{{.NetworkSettings.IPAddress}}"), db_ip);
    let hosts = ok(b.docker_out(&[
        "run",
        "--rm",
        "--link",
        "db:database",
        "--add-host",
        "gw:host-gateway",
        "--hostname",
        "me",
        "busybox",
        "cat",
        "/etc/hosts",
    ]));
    let gw = inspect(&b, "bridge", "{{(index .IPAM.Config 0).Gateway}}");
    // moby's entry: alias, the linked container's hostname (its short ID), name.
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with(&format!("{db_ip}\tdatabase ")) && l.ends_with(" db")),
        "{hosts}"
    );
    assert!(hosts.contains(&format!("{gw}\tgw")), "{hosts}");
    assert!(
        hosts
            .lines()
            .any(|l| l.ends_with("\tme") && l.starts_with("172.")),
        "{hosts}"
    );
    let env = ok(b.docker_out(&[
        "run",
        "--rm",
        "--name",
        "app1",
        "--link",
        "db:database",
        "busybox",
        "env",
    ]));
    for want in [
        "DATABASE_NAME=/app1/database".to_string(),
        format!("DATABASE_PORT=tcp://{db_ip}:5432"),
        format!("DATABASE_PORT_5432_TCP=tcp://{db_ip}:5432"),
        format!("DATABASE_PORT_5432_TCP_ADDR={db_ip}"),
        "DATABASE_PORT_5432_TCP_PORT=5432".to_string(),
        "DATABASE_PORT_5432_TCP_PROTO=tcp".to_string(),
        "DATABASE_ENV_SECRET=s3".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in {env}");
    }
    let o = b.docker_out(&[
        "run", "--rm", "busybox", "ping", "-c", "1", "-W", "2", &db_ip,
    ]);
    assert!(
        o.status.success(),
        "icc on the default bridge: {}",
        stdout_of(&o)
    );
}

#[test]
fn ports_and_dns_survive_kill_9_of_berthd() {
    require!(ready(), NOT_READY);
    let mut b = berthd(&["--live-restore"]);
    ok(b.docker_out(&["network", "create", "--subnet", "10.207.0.0/24", "keep"]));
    web(
        &b,
        &[
            "--name",
            "w1",
            "--network",
            "keep",
            "-p",
            "127.0.0.1:18082:80",
        ],
        "alive",
    );
    assert_eq!(curl(&b, "http://127.0.0.1:18082/"), "alive\n");
    let ip = inspect(&b, "w1", "{{.NetworkSettings.Networks.keep.IPAddress}}");
    // A process of the test's holds berthd's namespace, so that berthd can be killed and
    // started again inside it.
    let (hold, hold_ns) = hold_netns(&b);
    // A network whose record is lost (as if berthd died before writing it): its bridge goes
    // at the restart.
    let lost = ok(b.docker_out(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.name=brlost",
        "lost",
    ]));
    b.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = b.wait_exit(Duration::from_secs(10));
    // Published port still answers without berthd (the proxy is its own process).
    let o = std::process::Command::new("nsenter")
        .arg(format!("--net={hold_ns}"))
        .args([
            "--",
            "curl",
            "-s",
            "--max-time",
            "2",
            "http://127.0.0.1:18082/",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout_of(&o), "alive\n");
    std::fs::remove_file(b.data_root().join(format!("network/{}.json", lost.trim()))).unwrap();
    // The proxy dies too while berthd is away: the restart starts it again.
    let target_ns = std::fs::read_link(&hold_ns).unwrap();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let is_proxy =
            std::fs::read(p.join("cmdline")).is_ok_and(|c| c.windows(7).any(|w| w == b"__proxy"));
        if is_proxy && std::fs::read_link(p.join("ns/net")).ok().as_ref() == Some(&target_ns) {
            let pid: i32 = e.file_name().to_string_lossy().parse().unwrap();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    // Restart berthd in the same namespace.
    respawn_in_netns(&mut b, &hold_ns, &["--live-restore"]);
    assert_eq!(inspect(&b, "w1", "{{.State.Running}}"), "true");
    assert_eq!(
        inspect(&b, "w1", "{{.NetworkSettings.Networks.keep.IPAddress}}"),
        ip
    );
    assert_eq!(curl(&b, "http://127.0.0.1:18082/"), "alive\n");
    assert!(
        b.log_text().contains("is gone: starting it again"),
        "the proxy was restarted"
    );
    assert!(
        !b.in_netns("ip", &["link", "show", "brlost"])
            .status
            .success(),
        "orphan bridge removed"
    );
    let o = b.docker_out(&["network", "inspect", "lost"]);
    assert!(!o.status.success());
    // DNS answers for the restored container.
    let o = b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "keep",
        "busybox",
        "wget",
        "-qO-",
        "http://w1/",
    ]);
    assert_eq!(stdout_of(&o), "alive\n", "{}\n{}", stderr(&o), b.log_text());
    ok(b.docker_out(&["rm", "-f", "w1"]));
    let mut hold = hold;
    let _ = hold.kill();
    let _ = hold.wait();
}

#[test]
fn many_runs_leave_nothing_behind() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    ok(b.docker_out(&["network", "create", "--subnet", "10.208.0.0/24", "cyc"]));
    let links_before = String::from_utf8_lossy(&b.in_netns("ip", &["-o", "link"]).stdout)
        .lines()
        .count();
    // The issue's 500 create → start → rm cycles, half on each kind of network, each with a
    // published port (and so a proxy).
    for i in 0..500 {
        let net = if i % 2 == 0 { "bridge" } else { "cyc" };
        let port = format!("127.0.0.1:{}:80", 19000 + i);
        ok(b.docker_out(&[
            "run",
            "--rm",
            "--network",
            net,
            "-p",
            &port,
            "busybox",
            "true",
        ]));
    }
    wait_for("veths to go", Duration::from_secs(10), || {
        String::from_utf8_lossy(&b.in_netns("ip", &["-o", "link"]).stdout)
            .lines()
            .count()
            == links_before
    });
    let rules =
        String::from_utf8_lossy(&b.in_netns("nft", &["list", "table", "ip", "berth"]).stdout)
            .into_owned();
    assert!(!rules.contains("dnat to"), "no port rule is left: {rules}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(b.docker_out(&["network", "inspect", "cyc", "bridge"]))).unwrap();
    for n in v.as_array().unwrap() {
        assert_eq!(n["Containers"], serde_json::json!({}), "{n}");
    }
    // No proxy is left in berthd's namespace.
    let ns = std::fs::read_link(format!("/proc/{}/ns/net", b.pid())).unwrap();
    let proxies = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let p = e.path();
            std::fs::read(p.join("cmdline")).is_ok_and(|c| c.windows(7).any(|w| w == b"__proxy"))
                && std::fs::read_link(p.join("ns/net")).ok().as_ref() == Some(&ns)
        })
        .count();
    assert_eq!(proxies, 0, "no proxy is left");
    let netns = std::fs::read_dir(b.dir.path().join("exec/netns"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(netns, 0, "no namespace file is left");
}

#[test]
fn docker_py_networks() {
    require!(ready(), NOT_READY);
    let python = common::docker_py();
    require!(python.is_some(), common::DOCKER_PY_MISSING);
    let python = python.unwrap_or_default();
    let b = berthd(&[]);
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.210.0.0/24", gateway="10.210.0.1")])
n = c.networks.create("pynet", driver="bridge", ipam=ipam, labels={"k": "v"})
assert n.attrs["IPAM"]["Config"] == [{"Subnet": "10.210.0.0/24", "Gateway": "10.210.0.1"}], n.attrs
assert [x.name for x in c.networks.list(filters={"label": "k=v"})] == ["pynet"]
ctr = c.containers.run("busybox", "sleep 600", detach=True, name="py1")
n.connect(ctr, aliases=["pyalias"], ipv4_address="10.210.0.9")
ctr.reload()
s = ctr.attrs["NetworkSettings"]["Networks"]["pynet"]
assert s["IPAddress"] == "10.210.0.9", s
assert "pyalias" in s["Aliases"], s
n.reload()
assert list(n.attrs["Containers"]) == [ctr.id], n.attrs
out = c.containers.run("busybox", "nslookup pyalias", network="pynet", remove=True).decode()
assert "10.210.0.9" in out, out
try:
    c.networks.get("nope-net")
    raise SystemExit("expected NotFound")
except docker.errors.NotFound:
    pass
try:
    n.remove()
    raise SystemExit("expected APIError")
except docker.errors.APIError as e:
    assert e.status_code == 403, e
n.disconnect(ctr)
ctr.remove(force=True)
n.remove()
r = c.networks.prune()
assert r["NetworksDeleted"] is None or r["NetworksDeleted"] == [], r
print("ok")
"#;
    common::run_docker_py(&python, &b, script, &[]);
}

#[test]
fn docker_compose_services_find_each_other() {
    require!(ready(), NOT_READY);
    require!(
        common::have_command("docker-compose"),
        "needs Debian's docker-compose"
    );
    let b = berthd(&[]);
    let dir = b.dir.path().join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        r#"version: "2.4"
services:
  web:
    image: busybox
    command: sh -c "mkdir -p /www && echo from-web > /www/index.html && exec httpd -f -p 80 -h /www"
    networks:
      front:
        aliases: [site]
    ports:
      - "127.0.0.1:18090:80"
  client:
    image: busybox
    command: sleep 600
    networks: [front]
networks:
  front:
    ipam:
      config:
        - subnet: 10.211.0.0/24
"#,
    )
    .unwrap();
    let compose = |args: &[&str]| common::compose(&b, &dir, "proj", args);
    let o = compose(&["up", "-d"]);
    assert!(o.status.success(), "{}{}", stdout_of(&o), stderr(&o));
    let net = inspect(&b, "proj_front", "{{(index .IPAM.Config 0).Subnet}}");
    assert_eq!(net, "10.211.0.0/24");
    for target in ["web", "site", "proj_web_1"] {
        let mut got = String::new();
        for _ in 0..30 {
            let o = compose(&[
                "exec",
                "-T",
                "client",
                "wget",
                "-qO-",
                &format!("http://{target}/"),
            ]);
            got = stdout_of(&o);
            if got == "from-web\n" {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(got, "from-web\n", "by {target}");
    }
    assert_eq!(curl(&b, "http://127.0.0.1:18090/"), "from-web\n");
    let o = compose(&["port", "web", "80"]);
    assert_eq!(stdout_of(&o).trim(), "127.0.0.1:18090");
    let o = compose(&["down"]);
    assert!(o.status.success(), "{}{}", stdout_of(&o), stderr(&o));
    let nets = ok(b.docker_out(&["network", "ls", "--format", "{{.Name}}"]));
    assert!(!nets.contains("proj_front"), "{nets}");
}

#[test]
fn ipv6_events_and_a_container_on_port_53() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    let since = common::now_secs().to_string();
    ok(b.docker_out(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:77::/64",
        "--subnet",
        "10.212.0.0/24",
        "v6net",
    ]));
    // The CLI sends the pools in no fixed order.
    let cfg: serde_json::Value =
        serde_json::from_str(&inspect(&b, "v6net", "{{json .IPAM.Config}}")).unwrap();
    let mut subnets: Vec<String> = cfg
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    subnets.sort();
    assert_eq!(
        subnets,
        [
            r#"{"Subnet":"10.212.0.0/24"}"#,
            r#"{"Subnet":"fd00:77::/64"}"#
        ]
    );
    assert_eq!(inspect(&b, "v6net", "{{.EnableIPv6}}"), "true");
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "a6",
        "--network",
        "v6net",
        "busybox",
        "sleep",
        "600",
    ]));
    assert_eq!(
        inspect(
            &b,
            "a6",
            "{{.NetworkSettings.Networks.v6net.GlobalIPv6Address}}"
        ),
        "fd00:77::2"
    );
    assert_eq!(
        inspect(&b, "a6", "{{.NetworkSettings.Networks.v6net.IPv6Gateway}}"),
        "fd00:77::1"
    );
    let out = ok(b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "v6net",
        "busybox",
        "sh",
        "-c",
        "ping -6 -c1 -W2 a6 >/dev/null && echo pinged; nslookup -type=aaaa a6",
    ]));
    assert!(
        out.starts_with("pinged\n") && out.contains("fd00:77::2"),
        "{out}"
    );
    // The container's own port 53 does not clash with the embedded server.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "dns53",
        "--network",
        "v6net",
        "busybox",
        "sh",
        "-c",
        "nc -lk -p 53 -e true & sleep 600",
    ]));
    let out = ok(b.docker_out(&["exec", "dns53", "nslookup", "a6"]));
    assert!(out.contains("10.212.0.2"), "{out}");
    ok(b.docker_out(&["network", "disconnect", "-f", "v6net", "a6"]));
    ok(b.docker_out(&["rm", "-f", "a6", "dns53"]));
    ok(b.docker_out(&["network", "rm", "v6net"]));
    let ev = common::events_text(
        &b,
        &since,
        &["type=network"],
        "{{.Action}} {{.Actor.Attributes.name}}",
    );
    let actions: Vec<&str> = ev.lines().collect();
    assert_eq!(actions.first().copied(), Some("create v6net"), "{ev}");
    assert_eq!(actions.last().copied(), Some("destroy v6net"), "{ev}");
    assert!(
        actions.contains(&"connect v6net") && actions.contains(&"disconnect v6net"),
        "{ev}"
    );
}

#[test]
fn internal_networks_and_disconnect_release_ports() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    ok(b.docker_out(&["network", "create", "--subnet", "10.213.0.0/24", "pub"]));
    ok(b.docker_out(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.214.0.0/24",
        "int",
    ]));
    web(
        &b,
        &["--name", "pw", "--network", "pub", "-p", "18095:80"],
        "public",
    );
    assert_eq!(curl(&b, "http://127.0.0.1:18095/"), "public\n");
    // From an internal network, another network's published port is out of reach, through
    // the internal gateway as through the other one.
    let pub_gw = inspect(&b, "pub", "{{(index .IPAM.Config 0).Gateway}}");
    for target in ["10.214.0.1", pub_gw.as_str()] {
        let o = b.docker_out(&[
            "run",
            "--rm",
            "--network",
            "int",
            "busybox",
            "sh",
            "-c",
            &format!("timeout 3 wget -qO- http://{target}:18095/; exit $?"),
        ]);
        assert!(
            !o.status.success(),
            "internal network reached {target}: {}",
            stdout_of(&o)
        );
    }
    // Disconnecting the network that carries the published ports releases them.
    ok(b.docker_out(&["network", "disconnect", "pub", "pw"]));
    wait_for("the port to close", Duration::from_secs(5), || {
        !b.in_netns(
            "curl",
            &["-s", "--max-time", "1", "http://127.0.0.1:18095/"],
        )
        .status
        .success()
    });
    let rules = stdout_of(&b.in_netns("nft", &["list", "table", "ip", "berth"]));
    assert!(!rules.contains("18095"), "{rules}");
    // As dockerd: a stopped container does not keep its network; its next start fails.
    ok(b.docker_out(&["network", "create", "gone-soon"]));
    ok(b.docker_out(&[
        "create",
        "--name",
        "st1",
        "--network",
        "gone-soon",
        "busybox",
        "true",
    ]));
    ok(b.docker_out(&["network", "rm", "gone-soon"]));
    let o = b.docker_out(&["start", "st1"]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("failed to set up container networking: network ")
            && stderr(&o).contains(" not found"),
        "{}",
        stderr(&o)
    );
    // moby's `validateNetworkingConfig`: a network that does not exist yet is no error at
    // create (compose 1.x creates containers before their networks at times), only at start.
    ok(b.docker_out(&[
        "create",
        "--name",
        "early",
        "--network",
        "later-net",
        "busybox",
        "true",
    ]));
    assert_eq!(
        inspect(
            &b,
            "early",
            "{{.HostConfig.NetworkMode}} {{json .NetworkSettings.Networks}}"
        )
        .split_once(' ')
        .map(|(m, n)| (m.to_string(), n.contains("\"later-net\""))),
        Some(("later-net".to_string(), true))
    );
    let o = b.docker_out(&["start", "early"]);
    assert!(
        stderr(&o).contains("network later-net not found"),
        "{}",
        stderr(&o)
    );
    ok(b.docker_out(&["network", "create", "later-net"]));
    let net_id = inspect(&b, "later-net", "{{.Id}}");
    ok(b.docker_out(&["start", "-a", "early"]));
    assert_eq!(
        inspect(
            &b,
            "early",
            "{{(index .NetworkSettings.Networks \"later-net\").NetworkID}}"
        ),
        net_id
    );
    // A user's address outside the subnet is refused.
    let o = b.docker_out(&["network", "connect", "--ip", "10.99.0.5", "pub", "pw"]);
    assert!(
        stderr(&o).contains("does not belong to any of this network's subnets"),
        "{}",
        stderr(&o)
    );
}

/// A process of the test's that holds berthd's network namespace, so that berthd can be
/// stopped (or killed) and started again inside it; returns the holder (to be killed at the
/// end) and its namespace's path.
fn hold_netns(b: &Berthd) -> (std::process::Child, String) {
    let netns = format!("/proc/{}/ns/net", b.pid());
    let target = std::fs::read_link(&netns).unwrap();
    let hold = std::process::Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["--", "sleep", "600"])
        .spawn()
        .unwrap();
    let hold_ns = format!("/proc/{}/ns/net", hold.id());
    wait_for(
        "the holder to enter the namespace",
        Duration::from_secs(10),
        || std::fs::read_link(&hold_ns).ok().as_ref() == Some(&target),
    );
    (hold, hold_ns)
}

/// Start berthd again on its roots inside the held namespace `hold_ns`, with `extra` flags.
fn respawn_in_netns(b: &mut Berthd, hold_ns: &str, extra: &[&str]) {
    let mut args = vec!["-H".to_string(), format!("unix://{}", b.socket.display())];
    args.extend(b.base_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(&b.log)
        .unwrap();
    let child = std::process::Command::new("nsenter")
        .arg(format!("--net={hold_ns}"))
        .arg("--")
        .arg(common::berthd_bin())
        .args(&args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    b.child = Some(child);
    b.wait_ready();
}

/// Stop berthd (SIGTERM: containers and proxies go on) and start it again in the same network
/// namespace, which a process of the test holds meanwhile; returns that holder, to be killed
/// at the end.
fn restart_in_same_netns(b: &mut Berthd, extra: &[&str]) -> std::process::Child {
    let (hold, hold_ns) = hold_netns(b);
    assert!(b.stop().success(), "{}", b.log_text());
    respawn_in_netns(b, &hold_ns, extra);
    hold
}

#[test]
fn ports_on_ipv6_host_addresses() {
    require!(ready(), NOT_READY);
    if !std::path::Path::new("/proc/net/if_inet6").exists() {
        eprintln!("SKIP: the host has no IPv6");
        return;
    }
    let mut b = berthd(&["--live-restore"]);
    // An IPv4-only container: the proxy listens on the IPv6 addresses and forwards to its
    // IPv4 address, as dockerd's.
    web(
        &b,
        &[
            "--name",
            "v6p",
            "-p",
            "[::1]:18091:80",
            "-p",
            "[::]:18092:80",
            "-p",
            "127.0.0.1:18093:80",
        ],
        "six",
    );
    let mut port: Vec<String> = ok(b.docker_out(&["port", "v6p"]))
        .lines()
        .map(str::to_string)
        .collect();
    port.sort();
    assert_eq!(
        port,
        [
            "80/tcp -> 127.0.0.1:18093",
            "80/tcp -> [::1]:18091",
            "80/tcp -> [::]:18092"
        ]
    );
    let ports: serde_json::Value =
        serde_json::from_str(&inspect(&b, "v6p", "{{json .NetworkSettings.Ports}}")).unwrap();
    let mut hosts: Vec<String> = ports["80/tcp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} {}", p["HostIp"].as_str().unwrap(), p["HostPort"]))
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        ["127.0.0.1 \"18093\"", ":: \"18092\"", "::1 \"18091\""]
    );
    assert_eq!(curl(&b, "http://[::1]:18091/"), "six\n");
    assert_eq!(curl(&b, "http://[::1]:18092/"), "six\n");
    // `[::]` is IPv6 only: the IPv4 loopback is not served on 18092.
    let o = b.in_netns(
        "curl",
        &["-s", "--max-time", "1", "http://127.0.0.1:18092/"],
    );
    assert!(!o.status.success(), "{o:?}");
    // A container on an IPv6 network: its IPv6 address is the target.
    ok(b.docker_out(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:91::/64",
        "--subnet",
        "10.215.0.0/24",
        "v6ports",
    ]));
    web(
        &b,
        &[
            "--name",
            "v6n",
            "--network",
            "v6ports",
            "-p",
            "[::1]:18094:80",
        ],
        "native",
    );
    assert_eq!(curl(&b, "http://[::1]:18094/"), "native\n");
    assert_eq!(
        ok(b.docker_out(&["port", "v6n"])).trim(),
        "80/tcp -> [::1]:18094"
    );
    // They survive a restart of berthd, as other published ports.
    let mut hold = restart_in_same_netns(&mut b, &["--live-restore"]);
    assert_eq!(curl(&b, "http://[::1]:18091/"), "six\n");
    assert_eq!(curl(&b, "http://[::1]:18094/"), "native\n");
    let mut again: Vec<String> = ok(b.docker_out(&["port", "v6p"]))
        .lines()
        .map(str::to_string)
        .collect();
    again.sort();
    assert_eq!(again, port);
    // They go with the container.
    ok(b.docker_out(&["rm", "-f", "v6p", "v6n"]));
    let o = b.in_netns("curl", &["-s", "--max-time", "1", "http://[::1]:18091/"]);
    assert!(!o.status.success(), "the port is closed after rm");
    let _ = hold.kill();
    let _ = hold.wait();
}

/// `docker exec NAME cat FILE`.
fn cat_in(b: &Berthd, name: &str, file: &str) -> String {
    ok(b.docker_out(&["exec", name, "cat", file]))
}

#[test]
fn hot_plug_rewrites_resolv_conf_and_hosts() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    ok(b.docker_out(&["network", "create", "--subnet", "10.216.0.0/24", "hp1"]));
    ok(b.docker_out(&["run", "-d", "--name", "hb", "busybox", "sleep", "600"]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "hp1",
        "busybox",
        "sleep",
        "600",
    ]));
    let before = cat_in(&b, "hb", "/etc/resolv.conf");
    assert!(!before.contains("127.0.0.11"), "{before}");
    let bridge_ip = inspect(&b, "hb", "{{.NetworkSettings.Networks.bridge.IPAddress}}");
    // Connected while running: the embedded DNS at once, as dockerd's `rebuildDNS`, and the
    // new address in /etc/hosts (`addHostsEntries`).
    ok(b.docker_out(&["network", "connect", "hp1", "hb"]));
    let resolv = cat_in(&b, "hb", "/etc/resolv.conf");
    assert!(
        resolv.contains("nameserver 127.0.0.11\n") && resolv.contains("ndots:0"),
        "{resolv}"
    );
    let ip = inspect(&b, "hb", "{{.NetworkSettings.Networks.hp1.IPAddress}}");
    let hosts = cat_in(&b, "hb", "/etc/hosts");
    assert!(
        hosts.contains(&format!("{ip}\t")) && hosts.contains(&format!("{bridge_ip}\t")),
        "{hosts}"
    );
    let peer_ip = inspect(&b, "peer", "{{.NetworkSettings.Networks.hp1.IPAddress}}");
    let out = ok(b.docker_out(&["exec", "hb", "nslookup", "peer"]));
    assert!(out.contains(&peer_ip), "{out}");
    // Disconnected: its address leaves /etc/hosts; without a user network left, the embedded
    // resolver stops and /etc/resolv.conf is the default bridge's again.
    ok(b.docker_out(&["network", "disconnect", "hp1", "hb"]));
    let hosts = cat_in(&b, "hb", "/etc/hosts");
    assert!(
        !hosts.contains(&format!("{ip}\t")) && hosts.contains(&format!("{bridge_ip}\t")),
        "{hosts}"
    );
    let resolv = cat_in(&b, "hb", "/etc/resolv.conf");
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
}

#[test]
fn rename_updates_the_embedded_dns() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    // Internal: a name the embedded server does not know is never forwarded anywhere.
    ok(b.docker_out(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.217.0.0/24",
        "rn",
    ]));
    let id = ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "r2",
        "--network",
        "rn",
        "--network-alias",
        "al",
        "busybox",
        "sleep",
        "600",
    ]))
    .trim()
    .to_string();
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "asker",
        "--network",
        "rn",
        "--link",
        "r2:lnk",
        "busybox",
        "sleep",
        "600",
    ]));
    let ip = inspect(&b, "r2", "{{.NetworkSettings.Networks.rn.IPAddress}}");
    let lookup = |name: &str| b.docker_out(&["exec", "asker", "nslookup", name]);
    assert!(stdout_of(&lookup("r2")).contains(&ip));
    ok(b.docker_out(&["rename", "r2", "r2b"]));
    // At once, as dockerd's `ContainerRename` (`Sandbox.Rename`, `UpdateDNSNames`).
    let out = lookup("r2b");
    assert!(
        out.status.success() && stdout_of(&out).contains(&ip),
        "{out:?}"
    );
    let out = lookup("r2");
    assert!(
        !stdout_of(&out).contains(&ip),
        "the old name still answers: {out:?}"
    );
    // The alias and the short ID stay; the link alias named the old name, as dockerd's
    // (`CreateOptionAlias` keeps the name given), and no longer resolves.
    assert!(stdout_of(&lookup("al")).contains(&ip));
    assert!(stdout_of(&lookup(&id[..12])).contains(&ip));
    assert!(!stdout_of(&lookup("lnk")).contains(&ip));
    assert_eq!(
        inspect(&b, "r2b", "{{json .NetworkSettings.Networks.rn.DNSNames}}"),
        format!("[\"r2b\",\"al\",\"{}\"]", &id[..12])
    );
    assert!(stdout_of(&lookup(&ip)).contains("r2b.rn"));
    // And after a restart of the container, the same.
    ok(b.docker_out(&["restart", "-t", "0", "r2b"]));
    let ip = inspect(&b, "r2b", "{{.NetworkSettings.Networks.rn.IPAddress}}");
    assert!(stdout_of(&lookup("r2b")).contains(&ip));
}

#[test]
fn none_network_disconnect_and_connect() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    ok(b.docker_out(&["network", "create", "--subnet", "10.218.0.0/24", "nn1"]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "nn",
        "--network",
        "none",
        "busybox",
        "sleep",
        "600",
    ]));
    const PRIVATE: &str = "container cannot be connected to multiple networks with one of the networks in private (none) mode";
    let o = b.docker_out(&["network", "connect", "nn1", "nn"]);
    assert!(
        !o.status.success() && stderr(&o).contains(PRIVATE),
        "{}",
        stderr(&o)
    );
    // dockerd's none → disconnect → connect.
    ok(b.docker_out(&["network", "disconnect", "none", "nn"]));
    assert_eq!(
        inspect(&b, "nn", "{{json .NetworkSettings.Networks}}"),
        "{}"
    );
    ok(b.docker_out(&["network", "connect", "nn1", "nn"]));
    let ip = inspect(&b, "nn", "{{.NetworkSettings.Networks.nn1.IPAddress}}");
    assert!(ip.starts_with("10.218.0."), "{ip}");
    let addrs = ok(b.docker_out(&["exec", "nn", "ip", "-o", "addr"]));
    assert!(
        addrs.contains("eth0") && addrs.contains(&format!("inet {ip}/24")),
        "{addrs}"
    );
    assert_eq!(inspect(&b, "nn", "{{.HostConfig.NetworkMode}}"), "none");
    // Its statistics list the interface, as dockerd's sandbox statistics.
    let stats = common::http(
        &b.socket,
        "GET /containers/nn/stats?stream=false&one-shot=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(stats.contains("\"networks\":{\"eth0\":"), "{stats}");
    // Its next start joins the network it is on now.
    ok(b.docker_out(&["restart", "-t", "0", "nn"]));
    let addrs = ok(b.docker_out(&["exec", "nn", "ip", "-o", "addr"]));
    assert!(addrs.contains("inet 10.218.0."), "{addrs}");
    // `none` for a container on another network: the same text.
    ok(b.docker_out(&["run", "-d", "--name", "c2", "busybox", "sleep", "600"]));
    let o = b.docker_out(&["network", "connect", "none", "c2"]);
    assert!(
        !o.status.success() && stderr(&o).contains(PRIVATE),
        "{}",
        stderr(&o)
    );
    // A stopped one's texts.
    ok(b.docker_out(&[
        "create",
        "--name",
        "c3",
        "--network",
        "none",
        "busybox",
        "true",
    ]));
    let o = b.docker_out(&["network", "connect", "nn1", "c3"]);
    assert!(stderr(&o).contains(PRIVATE), "{}", stderr(&o));
    ok(b.docker_out(&["network", "disconnect", "none", "c3"]));
    let o = b.docker_out(&["network", "disconnect", "none", "c3"]);
    assert!(
        stderr(&o).contains("is not connected to the network none"),
        "{}",
        stderr(&o)
    );
    // `host`: dockerd's texts.
    let o = b.docker_out(&["network", "connect", "host", "c2"]);
    assert!(
        stderr(&o).contains(
            "cannot connect container to host network - container must be created in host network mode"
        ),
        "{}",
        stderr(&o)
    );
}

#[test]
fn prune_takes_networks_of_stopped_containers() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    ok(b.docker_out(&["network", "create", "pr1"]));
    ok(b.docker_out(&["network", "create", "pr2"]));
    ok(b.docker_out(&[
        "create",
        "--name",
        "st",
        "--network",
        "pr1",
        "busybox",
        "true",
    ]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "up",
        "--network",
        "pr2",
        "busybox",
        "sleep",
        "600",
    ]));
    // As moby's `localNetworkPrune`: only endpoints keep a network.
    let out = ok(b.docker_out(&["network", "prune", "-f"]));
    assert!(out.contains("pr1") && !out.contains("pr2"), "{out}");
    assert!(!b
        .docker_out(&["network", "inspect", "pr1"])
        .status
        .success());
    // The stopped container still names it and fails its start, as dockerd's.
    assert_eq!(
        inspect(
            &b,
            "st",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}"
        ),
        "pr1"
    );
    let o = b.docker_out(&["start", "st"]);
    assert!(
        !o.status.success() && stderr(&o).contains("not found"),
        "{}",
        stderr(&o)
    );
    // Nothing deleted: `null`, as dockerd's nil slice.
    let resp = common::http(
        &b.socket,
        "POST /networks/prune HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("{\"NetworksDeleted\":null}\n"), "{resp}");
}

#[test]
fn network_create_refuses_what_the_bridge_driver_refuses() {
    require!(ready(), NOT_READY);
    let b = berthd(&[]);
    let refused = |args: &[&str], text: &str| {
        let mut a = vec!["network", "create"];
        a.extend_from_slice(args);
        let o = b.docker_out(&a);
        assert!(
            !o.status.success() && stderr(&o).contains(text),
            "{args:?}: {}",
            stderr(&o)
        );
    };
    refused(
        &[
            "--subnet",
            "10.219.0.0/24",
            "--subnet",
            "10.219.1.0/24",
            "two",
        ],
        "bridge driver doesn't support multiple subnets",
    );
    refused(
        &["--subnet", "10.73.0.0/24", "--gateway", "10.73.0.0", "gw0"],
        "failed to allocate gateway (10.73.0.0): Address already in use",
    );
    refused(
        &[
            "--subnet",
            "10.73.0.0/24",
            "--gateway",
            "10.73.0.255",
            "gw255",
        ],
        "failed to allocate gateway (10.73.0.255): Address already in use",
    );
    refused(&["--config-only", "co"], "configuration-only networks");
    refused(
        &["--scope", "swarm", "sw"],
        "cannot create a swarm scoped network when swarm is not active",
    );
    refused(
        &["--scope", "global", "gl"],
        "datastore for scope \"global\" is not initialized",
    );
    refused(
        &["--driver", "overlay", "ov"],
        "This node is not a swarm manager.",
    );
    let names = ok(b.docker_out(&["network", "ls", "--format", "{{.Name}}"]));
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["bridge", "host", "none"]);
    // The first and last usable addresses are fine, and `--scope local`.
    ok(b.docker_out(&[
        "network",
        "create",
        "--scope",
        "local",
        "--subnet",
        "10.73.0.0/24",
        "--gateway",
        "10.73.0.254",
        "gwok",
    ]));
    assert_eq!(inspect(&b, "gwok", "{{.Scope}}"), "local");
    // moby's `createNetwork`: without the request's flag, the driver option switches IPv6 on
    // (compose files set it so), and must be a Go bool.
    ok(b.docker_out(&[
        "network",
        "create",
        "-o",
        "com.docker.network.enable_ipv6=true",
        "--subnet",
        "fd00:73::/64",
        "v6opt",
    ]));
    assert_eq!(inspect(&b, "v6opt", "{{.EnableIPv6}}"), "true");
    // Without an IPv6 subnet (berth has no default IPv6 pool) the option leaves the network
    // IPv4-only, as on dockerd before 27 (compose's static-address tests rely on it).
    ok(b.docker_out(&[
        "network",
        "create",
        "-o",
        "com.docker.network.enable_ipv6=true",
        "v6nopool",
    ]));
    assert_eq!(inspect(&b, "v6nopool", "{{.EnableIPv6}}"), "false");
    refused(
        &["-o", "com.docker.network.enable_ipv6=maybe", "v6bad"],
        "driver-opt \"com.docker.network.enable_ipv6\" is not a valid bool",
    );
}

#[test]
fn interfaces_of_ipv4_only_networks_have_no_ipv6() {
    require!(ready(), NOT_READY);
    if !std::path::Path::new("/proc/net/if_inet6").exists() {
        eprintln!("SKIP: the host has no IPv6");
        return;
    }
    let b = berthd(&[]);
    ok(b.docker_out(&["network", "create", "--subnet", "10.220.0.0/24", "v4only"]));
    ok(b.docker_out(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd00:220::/64",
        "--subnet",
        "10.221.0.0/24",
        "dual",
    ]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "d4",
        "--network",
        "v4only",
        "busybox",
        "sleep",
        "600",
    ]));
    let flag = |name: &str, iface: &str| {
        cat_in(
            &b,
            name,
            &format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"),
        )
        .trim()
        .to_string()
    };
    // As moby's `setIPv6`: the interface only; `all`, `default` and `lo` are left alone.
    assert_eq!(flag("d4", "eth0"), "1");
    assert_eq!(flag("d4", "all"), "0");
    assert_eq!(flag("d4", "default"), "0");
    assert_eq!(flag("d4", "lo"), "0");
    let addrs = ok(b.docker_out(&["exec", "d4", "ip", "-o", "addr", "show", "eth0"]));
    assert!(!addrs.contains("inet6"), "{addrs}");
    // The default bridge likewise, and a hot-plugged interface: eth1 of an IPv6 network
    // has it, eth0 still not.
    ok(b.docker_out(&["run", "-d", "--name", "db", "busybox", "sleep", "600"]));
    assert_eq!(flag("db", "eth0"), "1");
    ok(b.docker_out(&["network", "connect", "dual", "d4"]));
    assert_eq!(flag("d4", "eth1"), "0");
    assert_eq!(flag("d4", "eth0"), "1");
    let addrs = ok(b.docker_out(&["exec", "d4", "ip", "-o", "addr", "show", "eth1"]));
    assert!(addrs.contains("inet6 fd00:220::"), "{addrs}");
    // An IPv6 network's container keeps it.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "d6",
        "--network",
        "dual",
        "busybox",
        "sleep",
        "600",
    ]));
    assert_eq!(flag("d6", "eth0"), "0");
    // The container's own sysctl, applied after the network is set up, wins.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "dy",
        "--network",
        "v4only",
        "--sysctl",
        "net.ipv6.conf.all.disable_ipv6=0",
        "busybox",
        "sleep",
        "600",
    ]));
    assert_eq!(flag("dy", "eth0"), "0");
}
