//! Crash consistency (issue 16): `kill -9` of berthd, of supervisors and of container init
//! processes while clients drive it, with the invariants checked after each restart; `--rm`
//! containers at restore; a data root that fills up.
//!
//! The crash loop runs in a short form by default (a few clients, a few kills). The long form
//! is the same test with `BERTH_CRASH_KILLS=50 BERTH_CRASH_CLIENTS=16` (see docs/hardening.md).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{busybox_rootfs_tar, inspect, ok, processes, stderr, stdout, wait_for, Berthd, Conn};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::Digest;

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

fn net_ready() -> bool {
    ready() && common::have_command("unshare") && common::have_command("nsenter")
}

/// A small, non-cryptographic random source (xorshift) seeded from the clock.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng((t ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A process that holds a throwaway network namespace (`lo` up) for berthd and its restarts.
struct NetnsHolder(Child);

impl NetnsHolder {
    fn start() -> NetnsHolder {
        let child = Command::new("unshare")
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec sleep 100000",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let me = NetnsHolder(child);
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        wait_for("the holder's namespace", Duration::from_secs(10), || {
            std::fs::read_link(me.ns()).is_ok_and(|l| l != own)
                && std::fs::read_to_string(format!("/proc/{}/cmdline", me.0.id()))
                    .is_ok_and(|c| c.starts_with("sleep"))
        });
        me
    }
    fn ns(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// berthd in the holder's namespace (networking on) under a cgroup parent of its own.
struct Daemon {
    b: Berthd,
    holder: NetnsHolder,
    parent: String,
}

impl Daemon {
    fn start(networking: bool) -> Daemon {
        let mut b = Berthd::prepare();
        b.netns = networking;
        let d = Daemon {
            b,
            holder: NetnsHolder::start(),
            parent: format!("berth-crash-{}", std::process::id()),
        };
        let mut d = d;
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let mut args = vec![
            "-H".to_string(),
            format!("unix://{}", self.b.socket.display()),
        ];
        args.extend(self.b.base_args());
        args.extend(["--cgroup-parent".to_string(), self.parent.clone()]);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.b.log)
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.holder.ns()))
            .arg("--")
            .arg(common::berthd_bin())
            .args(&args)
            // Starts with three or more running create in a copy of the mount namespace
            // without the others' mounts (`runtime::subtree`): both ways are killed at random.
            .env("BERTH_TEST_SHED_ABOVE", "3")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.b.child = Some(child);
        self.b.wait_ready();
    }

    fn kill9(&mut self) {
        self.b.signal(Signal::SIGKILL);
        self.b.wait_exit(Duration::from_secs(20));
    }

    fn exec_root(&self) -> PathBuf {
        self.b.dir.path().join("exec")
    }

    fn in_netns(&self, program: &str, args: &[&str]) -> String {
        let o = Command::new("nsenter")
            .arg(format!("--net={}", self.holder.ns()))
            .arg("--")
            .arg(program)
            .args(args)
            .output()
            .unwrap();
        stdout(&o)
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let r = Conn::unix(&self.b.socket).request("GET", path, None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Containers outlive berthd: remove them while it runs, then the cgroup parent.
        if self.b.child.is_some() {
            let ids = stdout(&self.b.docker_out(&["ps", "-aq"]));
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self.b.docker().arg("rm").arg("-f").args(&ids).output();
            }
            let _ = self.b.stop();
        }
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(e.path().join(&self.parent));
        }
    }
}

/// Every file under `dir` (recursively, not following symlinks), skipping `skip` subtrees.
fn walk(dir: &Path, skip: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if skip(&p) {
            continue;
        }
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(&p, skip, out);
        } else {
            out.push(p);
        }
    }
}

fn dir_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The invariants after a restart, with berthd idle (no client running). Returns the names of
/// the running containers it checked.
fn check_invariants(d: &Daemon, round: usize) -> usize {
    let data = d.b.data_root();
    let ctx = format!("after restart {round}");
    // Auto-removals and restarts spawned by the restore settle first.
    std::thread::sleep(Duration::from_millis(300));
    wait_for("removals to settle", Duration::from_secs(20), || {
        let list = d.get("/containers/json?all=1");
        list.as_array().unwrap().iter().all(|c| {
            let s = c["State"].as_str().unwrap_or("");
            s != "removing" && s != "restarting"
        })
    });

    // Every record loads: the API's lists match the directories under the data root.
    let containers = d.get("/containers/json?all=1");
    let api_ids: BTreeSet<String> = containers
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Id"].as_str().unwrap().to_string())
        .collect();
    // `.trash` holds removed containers' files until they are deleted.
    let mut disk_ids = dir_names(&data.join("containers"));
    disk_ids.remove(".trash");
    assert_eq!(api_ids, disk_ids, "{ctx}: containers listed vs on disk");

    let images = d.get("/images/json?all=1");
    let api_images: BTreeSet<String> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["Id"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string()
        })
        .collect();
    let disk_images = dir_names(&data.join("image/overlay2/imagedb/content/sha256"));
    assert_eq!(api_images, disk_images, "{ctx}: images listed vs on disk");

    let volumes = d.get("/volumes");
    let api_vols: BTreeSet<String> = volumes["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Name"].as_str().unwrap().to_string())
        .collect();
    let disk_vols: BTreeSet<String> = std::fs::read_dir(data.join("volumes"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(api_vols, disk_vols, "{ctx}: volumes listed vs on disk");

    let networks = d.get("/networks");
    let api_nets: BTreeSet<String> = networks
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Id"].as_str().unwrap().to_string())
        .collect();
    let disk_nets: BTreeSet<String> = dir_names(&data.join("network"))
        .into_iter()
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    assert!(
        disk_nets.is_subset(&api_nets),
        "{ctx}: network records not listed: {:?}",
        disk_nets.difference(&api_nets).collect::<Vec<_>>()
    );
    for n in networks.as_array().unwrap() {
        let name = n["Name"].as_str().unwrap();
        let id = n["Id"].as_str().unwrap();
        if !["bridge", "host", "none"].contains(&name) {
            assert!(
                disk_nets.contains(id),
                "{ctx}: network {name} has no record: {n}"
            );
        }
    }

    // No half-written files: no temporary files are left after the start, and every JSON
    // record parses.
    let mut files = Vec::new();
    let skip = |p: &Path| {
        let s = p.to_string_lossy();
        // Layer contents and volume data are the containers' own files.
        (s.contains("/overlay2/") && !s.contains("/image/overlay2"))
            || s.ends_with("/_data")
            || s.contains("/builder/")
    };
    walk(&data, &skip, &mut files);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(
            !name.starts_with(".tmp-"),
            "{ctx}: temporary file left: {}",
            f.display()
        );
        if name.ends_with(".json") {
            let bytes = std::fs::read(f).unwrap();
            assert!(
                serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
                "{ctx}: {} does not parse: {:?}",
                f.display(),
                String::from_utf8_lossy(&bytes)
            );
        }
    }
    let layer_tmp = data.join("image/overlay2/layerdb/tmp");
    assert!(
        dir_names(&layer_tmp).is_empty(),
        "{ctx}: half-written layer records: {:?}",
        dir_names(&layer_tmp)
    );

    // Every image's layers verify against their DiffIDs: the layers of `docker save` hash to
    // the DiffIDs of its config.
    for id in &api_images {
        verify_image(d, id, &ctx);
    }

    // Every running container runs and is reattached: exec works and its log grows.
    let running: Vec<serde_json::Value> = containers
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["State"] == "running")
        .cloned()
        .collect();
    let log_len = |id: &str| {
        let r = Conn::unix(&d.b.socket).request(
            "GET",
            &format!("/containers/{id}/logs?stdout=1"),
            None,
        );
        r.body.len()
    };
    let before: BTreeMap<String, usize> = running
        .iter()
        .map(|c| {
            let id = c["Id"].as_str().unwrap().to_string();
            let n = log_len(&id);
            (id, n)
        })
        .collect();
    for id in before.keys() {
        let o = d.b.docker_out(&["exec", id, "true"]);
        assert!(
            o.status.success(),
            "{ctx}: exec in {id}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    for (id, n) in &before {
        let now = log_len(id);
        assert!(
            now > *n,
            "{ctx}: the log of {id} does not grow ({n} -> {now})"
        );
    }

    // No client pauses containers: a commit interrupted by the kill paused its container,
    // and the restore thawed it (dockerd leaves it paused).
    let paused: Vec<&str> = containers
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["State"] == "paused")
        .filter_map(|c| c["Id"].as_str())
        .collect();
    assert!(
        paused.is_empty(),
        "{ctx}: containers left paused: {paused:?}"
    );

    // Nothing leaked, counted against the records (a paused container would hold its run's
    // resources too).
    let running_ids: BTreeSet<String> = containers
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["State"] == "running" || c["State"] == "paused")
        .map(|c| c["Id"].as_str().unwrap().to_string())
        .collect();
    let data_s = data.display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let overlays: BTreeSet<String> = mountinfo
        .lines()
        .filter(|l| l.contains(" - overlay ") && l.contains(&data_s))
        .filter_map(|l| l.split(' ').nth(4))
        .map(str::to_string)
        .collect();
    let expected: BTreeSet<String> = running_ids
        .iter()
        .map(|id| format!("{data_s}/containers/{id}/layer/merged"))
        .collect();
    // berthd's binds of its two directories on themselves: one each, however often it died.
    for own in [
        format!("{data_s}/containers"),
        d.exec_root().join("netns").display().to_string(),
    ] {
        let n = mountinfo
            .lines()
            .filter(|l| l.split(' ').nth(4) == Some(own.as_str()))
            .count();
        assert_eq!(n, 1, "{ctx}: mounts on {own}");
    }
    let stray: Vec<&String> = overlays.difference(&expected).collect();
    if !stray.is_empty() {
        let states: Vec<String> = stray
            .iter()
            .filter_map(|m| m.split('/').rev().nth(2))
            .map(|id| {
                format!(
                    "{id}: {}",
                    d.get(&format!("/containers/{id}/json"))["State"]
                )
            })
            .collect();
        let log = d.b.log_text();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                stray.iter().any(|m| {
                    m.split('/')
                        .rev()
                        .nth(2)
                        .is_some_and(|id| l.contains(&id[..12]))
                })
            })
            .collect();
        panic!(
            "{ctx}: overlay mounts without a running container: {stray:?} {states:?}\n{}",
            lines.join("\n")
        );
    }

    let exec_s = d.exec_root().display().to_string();
    let supervisors: BTreeSet<String> = processes("__supervise", &exec_s)
        .into_iter()
        .filter_map(|(_, c)| {
            c.split_whitespace()
                .find(|a| a.starts_with(&exec_s))
                .and_then(|a| {
                    Path::new(a)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                })
        })
        .collect();
    assert_eq!(
        supervisors, running_ids,
        "{ctx}: supervisors vs running containers"
    );

    let netns = dir_names(&d.exec_root().join("netns"));
    assert!(
        netns.is_subset(&running_ids),
        "{ctx}: namespace files of containers not running: {:?}",
        netns.difference(&running_ids).collect::<Vec<_>>()
    );

    for ctl in ["memory", "pids", "unified"] {
        let dir = Path::new("/sys/fs/cgroup").join(ctl).join(&d.parent);
        let cg: BTreeSet<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            cg.is_subset(&running_ids),
            "{ctx}: {ctl} cgroups of containers not running: {:?}",
            cg.difference(&running_ids).collect::<Vec<_>>()
        );
    }

    if d.b.netns {
        // One veth per endpoint of a running container.
        let mut endpoints = 0;
        for id in &running_ids {
            let c = d.get(&format!("/containers/{id}/json"));
            endpoints += c["NetworkSettings"]["Networks"]
                .as_object()
                .map(|m| {
                    m.values()
                        .filter(|e| !e["IPAddress"].as_str().unwrap_or("").is_empty())
                        .count()
                })
                .unwrap_or(0);
        }
        let links = d.in_netns("ip", &["-o", "link", "show", "type", "veth"]);
        assert_eq!(
            links.lines().count(),
            endpoints,
            "{ctx}: veths vs endpoints of running containers:\n{links}\n{:?}",
            running_ids
                .iter()
                .map(
                    |id| d.get(&format!("/containers/{id}/json"))["NetworkSettings"]["Networks"]
                        .to_string()
                )
                .collect::<Vec<_>>()
        );
        // One proxy per running container with published ports, in berthd's namespace.
        let ns = std::fs::read_link(d.holder.ns()).unwrap();
        let proxies = processes("__proxy", "")
            .into_iter()
            .filter(|(pid, _)| {
                std::fs::read_link(format!("/proc/{pid}/ns/net"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
            })
            .count();
        let mut published = 0;
        for id in &running_ids {
            let c = d.get(&format!("/containers/{id}/json"));
            if c["NetworkSettings"]["Ports"]
                .as_object()
                .is_some_and(|m| m.values().any(|v| v.is_array()))
            {
                published += 1;
            }
        }
        assert_eq!(
            proxies, published,
            "{ctx}: proxies vs containers publishing ports"
        );
        // Every container address in the nft ruleset belongs to a running container.
        let rules = d.in_netns("nft", &["list", "table", "ip", "berth"]);
        let mut ips = BTreeSet::new();
        for id in &running_ids {
            let c = d.get(&format!("/containers/{id}/json"));
            for e in c["NetworkSettings"]["Networks"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                if let Some(ip) = e["IPAddress"].as_str() {
                    ips.insert(ip.to_string());
                }
            }
        }
        for l in rules.lines().filter(|l| l.contains("dnat")) {
            let target = l.split("dnat to ").nth(1).and_then(|t| t.split(':').next());
            if let Some(ip) = target {
                assert!(
                    ips.contains(ip.trim()),
                    "{ctx}: a DNAT rule to a gone address: {l}"
                );
            }
        }
    }
    running_ids.len()
}

/// `docker save` of an image by ID; every layer in the archive hashes to its DiffID.
fn verify_image(d: &Daemon, id: &str, ctx: &str) {
    let mut conn = Conn::unix(&d.b.socket);
    let r = conn.request("GET", &format!("/images/sha256:{id}/get"), None);
    assert_eq!(r.status, 200, "{ctx}: save {id}: {}", r.text());
    let mut config = None;
    let mut layers = BTreeSet::new();
    let mut ar = tar::Archive::new(&r.body[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            let sum = hex::encode(sha2::Sha256::digest(&buf));
            assert_eq!(
                sum, hex,
                "{ctx}: image {id}: blob {path} does not match its digest"
            );
            if hex == id {
                config = Some(buf);
            } else {
                layers.insert(format!("sha256:{hex}"));
            }
        }
    }
    let config: serde_json::Value =
        serde_json::from_slice(&config.expect("the config is in the archive")).unwrap();
    for diff in config["rootfs"]["diff_ids"].as_array().unwrap() {
        assert!(
            layers.contains(diff.as_str().unwrap()),
            "{ctx}: image {id}: layer {diff} missing from its archive"
        );
    }
}

/// What the crash loop's clients share with it: the gate a kill holds for writing, the flag
/// that stops them, and the count of operations done.
#[derive(Clone)]
struct Shared {
    gate: Arc<RwLock<()>>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
}

/// One client's loop: a random mix of lifecycle, volume, network, load, build and commit
/// operations on its own names. Failures are expected (berthd is killed under it).
fn client(k: usize, host: String, dir: PathBuf, files: PathBuf, shared: Shared, networking: bool) {
    let Shared { gate, stop, done } = shared;
    let mut rng = Rng::new(k as u64 + 1);
    let mut mine: Vec<String> = Vec::new();
    let mut vols: Vec<String> = Vec::new();
    let mut nets: Vec<String> = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let _g = gate.read().unwrap_or_else(|e| e.into_inner());
        i += 1;
        let name = format!("cr{k}x{i}");
        let run = |args: &[&str]| {
            common::docker_cli(&host, &dir)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let pick = |rng: &mut Rng, v: &Vec<String>| -> Option<String> {
            (!v.is_empty()).then(|| v[rng.below(v.len() as u64) as usize].clone())
        };
        let looping = "while true; do echo tick; sleep 0.1; done";
        match rng.below(14) {
            0 | 1 => {
                let mut args = vec!["run", "-d", "--name", &name];
                let vol = format!("crv{k}x{i}:/data");
                if rng.below(3) == 0 {
                    args.extend(["-v", &vol]);
                }
                if networking && rng.below(3) == 0 {
                    args.extend(["-p", "127.0.0.1::80"]);
                }
                args.extend(["busybox", "sh", "-c", looping]);
                if run(&args) {
                    mine.push(name.clone());
                }
            }
            2 => {
                if run(&["create", "--name", &name, "busybox", "sh", "-c", looping]) {
                    mine.push(name.clone());
                    run(&["start", &name]);
                }
            }
            3 => {
                run(&["run", "--rm", "busybox", "true"]);
            }
            4 => {
                if let Some(c) = pick(&mut rng, &mine) {
                    run(&["exec", &c, "sh", "-c", "echo hi"]);
                }
            }
            5 => {
                if let Some(c) = pick(&mut rng, &mine) {
                    run(&["stop", "-t", "1", &c]);
                }
            }
            6 => {
                if let Some(c) = pick(&mut rng, &mine) {
                    if run(&["rm", "-f", "-v", &c]) {
                        mine.retain(|m| *m != c);
                    }
                }
            }
            7 => {
                let v = format!("crvol{k}x{i}");
                if run(&["volume", "create", &v]) {
                    vols.push(v);
                }
                if let Some(v) = pick(&mut rng, &vols) {
                    if run(&["volume", "rm", &v]) {
                        vols.retain(|m| *m != v);
                    }
                }
            }
            8 if networking => {
                let n = format!("crnet{k}x{i}");
                if run(&["network", "create", &n]) {
                    nets.push(n.clone());
                }
                if let (Some(n), Some(c)) = (pick(&mut rng, &nets), pick(&mut rng, &mine)) {
                    run(&["network", "connect", &n, &c]);
                }
                if rng.below(2) == 0 {
                    if let Some(n) = pick(&mut rng, &nets) {
                        if run(&["network", "rm", &n]) {
                            nets.retain(|m| *m != n);
                        }
                    }
                }
            }
            9 => {
                let f = files.join("busybox-saved.tar");
                run(&["load", "-q", "-i", f.to_str().unwrap()]);
            }
            10 => {
                let tag = format!("crbuild{k}:{i}");
                let arg = format!("N={k}x{i}");
                run(&[
                    "build",
                    "-q",
                    "--build-arg",
                    &arg,
                    "-t",
                    &tag,
                    files.join("ctx").to_str().unwrap(),
                ]);
            }
            11 => {
                if let Some(c) = pick(&mut rng, &mine) {
                    let tag = format!("crcommit{k}:{i}");
                    run(&["commit", &c, &tag]);
                }
            }
            12 => {
                // Images made here go again (keeping the store small).
                let o = common::docker_cli(&host, &dir)
                    .args(["images", "-q", "--filter", &format!("reference=cr*{k}")])
                    .output();
                if let Ok(o) = o {
                    let ids = stdout(&o);
                    if let Some(id) = ids.split_whitespace().next() {
                        run(&["rmi", "-f", id]);
                    }
                }
            }
            _ => {
                if let Some(c) = pick(&mut rng, &mine) {
                    run(&["start", &c]);
                }
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The crash loop: clients drive berthd while it is killed with SIGKILL at random moments
/// (and, in between, individual supervisors and container init processes are), restarted, and
/// checked against the invariants.
#[test]
fn crash_consistency_under_load() {
    require!(net_ready(), NOT_READY);
    let kills = env_usize("BERTH_CRASH_KILLS", 4);
    let clients = env_usize("BERTH_CRASH_CLIENTS", 4);
    let networking = std::env::var("BERTH_CRASH_NO_NET").is_err();
    let mut d = Daemon::start(networking);
    let files = d.b.dir.path().join("files");
    std::fs::create_dir_all(files.join("ctx")).unwrap();
    let rootfs = busybox_rootfs_tar(d.b.dir.path());
    ok(d.b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    let saved = files.join("busybox-saved.tar");
    ok(d.b.docker_out(&["save", "-o", saved.to_str().unwrap(), "busybox:latest"]));
    std::fs::write(
        files.join("ctx/Dockerfile"),
        "FROM busybox\nARG N\nRUN echo $N > /n && echo built\nCOPY Dockerfile /\n",
    )
    .unwrap();

    let gate = Arc::new(RwLock::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let host = format!("unix://{}", d.b.socket.display());
    let workers: Vec<_> = (0..clients)
        .map(|k| {
            let (host, dir, files) = (host.clone(), d.b.dir.path().to_path_buf(), files.clone());
            let shared = Shared {
                gate: gate.clone(),
                stop: stop.clone(),
                done: done.clone(),
            };
            std::thread::spawn(move || client(k, host, dir, files, shared, networking))
        })
        .collect();
    // A failing check stops the clients before the daemon's clean-up runs.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let _stop_guard = StopOnDrop(stop.clone());
    let mut rng = Rng::new(99);
    let started = Instant::now();
    let mut max_running = 0;
    let mut small_kills = 0;
    for round in 0..kills {
        std::thread::sleep(Duration::from_millis(300 + rng.below(2500)));
        // Every third round, a supervisor or a container's init dies first.
        if round % 3 == 2 {
            let exec_s = d.exec_root().display().to_string();
            let sups = processes("__supervise", &exec_s);
            if !sups.is_empty() {
                let (pid, _) = sups[rng.below(sups.len() as u64) as usize];
                let victim = if rng.below(2) == 0 {
                    pid
                } else {
                    // The container's init: the supervisor's child.
                    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                        .ok()
                        .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
                        .unwrap_or(pid)
                };
                let _ = kill(Pid::from_raw(victim), Signal::SIGKILL);
                small_kills += 1;
                std::thread::sleep(Duration::from_millis(200 + rng.below(500)));
            }
        }
        d.kill9();
        // Clients see the socket gone; the checks run with every client paused.
        let g = gate.write().unwrap();
        d.spawn();
        max_running = max_running.max(check_invariants(&d, round));
        drop(g);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    // A last restart without a kill: the same invariants.
    check_invariants(&d, kills);
    eprintln!(
        "crash loop: {kills} kills of berthd, {small_kills} of supervisors or inits, {clients} \
         clients, {} operations, at most {max_running} running containers at a check, {:.0?}",
        done.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert!(
        done.load(Ordering::Relaxed) > kills,
        "the clients ran operations"
    );
}

/// dockerd's `restore` removes the `AutoRemove` containers that are not running: one created
/// and never started goes at the restart; a running one survives and is removed when it exits.
#[test]
fn auto_remove_containers_at_restore() {
    require!(ready(), NOT_READY);
    let mut b = common::berthd_with_busybox(&[]);
    ok(b.docker_out(&["create", "--rm", "--name", "rm-created", "busybox", "true"]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "rm-running",
        "busybox",
        "sh",
        "-c",
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 3",
    ]));
    ok(b.docker_out(&["create", "--name", "kept-created", "busybox", "true"]));
    let created_id = inspect(&b, "rm-created", "{{.Id}}");
    b.signal(Signal::SIGKILL);
    b.wait_exit(Duration::from_secs(10));
    b.spawn_with_host(&[]);
    wait_for(
        "the created --rm container to go",
        Duration::from_secs(10),
        || !b.docker_out(&["inspect", "rm-created"]).status.success(),
    );
    assert!(
        !b.data_root().join("containers").join(&created_id).exists(),
        "its directory is gone too"
    );
    assert_eq!(inspect(&b, "rm-running", "{{.State.Status}}"), "running");
    assert_eq!(inspect(&b, "kept-created", "{{.State.Status}}"), "created");
    ok(b.docker_out(&["exec", "rm-running", "touch", "/tmp/go"]));
    wait_for(
        "the running --rm container to go at its exit",
        Duration::from_secs(10),
        || !b.docker_out(&["inspect", "rm-running"]).status.success(),
    );
    let names = ok(b.docker_out(&["ps", "-a", "--format", "{{.Names}}"]));
    assert_eq!(names.trim(), "kept-created");
}

/// A data root on a 64 MiB tmpfs: once it is full, loads, imports, commits, builds and creates
/// fail with a 500 that says "no space left on device" (and what was being done), nothing
/// panics and no record is left half-written; once space is freed, everything works again.
#[test]
fn disk_full_fails_cleanly_and_recovers() {
    require!(ready(), NOT_READY);
    let mut b = Berthd::prepare();
    let data = b.data_root();
    std::fs::create_dir_all(&data).unwrap();
    let m = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "berth-diskfull"])
        .arg(&data)
        .status()
        .unwrap();
    require!(m.success(), "cannot mount a tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(data.clone());
    b.spawn_with_host(&[]);
    let rootfs = busybox_rootfs_tar(b.dir.path());
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    ok(b.docker_out(&[
        "run",
        "--name",
        "writer",
        "busybox",
        "sh",
        "-c",
        "echo x > /f",
    ]));
    ok(b.docker_out(&["create", "--name", "before", "busybox", "true"]));
    // An image of its own layer (4 MiB of varied bytes), saved and removed: loading it needs
    // space.
    let big = b.dir.path().join("big-rootfs.tar");
    {
        let mut t = tar::Builder::new(Vec::new());
        let mut rng = Rng::new(7);
        let bytes: Vec<u8> = (0..4 << 20).map(|_| rng.next() as u8).collect();
        common::append_file(&mut t, "big", &bytes, 0o644, 1_700_000_000);
        std::fs::write(&big, t.into_inner().unwrap()).unwrap();
    }
    ok(b.docker_out(&["import", big.to_str().unwrap(), "big:1"]));
    let big_saved = b.dir.path().join("big-saved.tar");
    ok(b.docker_out(&["save", "-o", big_saved.to_str().unwrap(), "big:1"]));
    ok(b.docker_out(&["rmi", "big:1"]));

    // Fill the file system.
    let filler = data.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=100"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let full = |o: &std::process::Output, what: &str| {
        assert!(!o.status.success(), "{what} succeeded on a full disk");
        let e = stderr(o);
        assert!(
            e.contains("no space left on device"),
            "{what}: the error says why: {e}"
        );
        assert!(!e.contains("panic"), "{what}: {e}");
        eprintln!("{what}: {}", e.trim());
    };
    // Raw API: a 500 with the message.
    let mut conn = Conn::unix(&b.socket);
    let r = conn.request(
        "POST",
        "/containers/create?name=nospace",
        Some(br#"{"Image":"busybox","Cmd":["true"]}"#),
    );
    assert_eq!(r.status, 500, "create on a full disk: {}", r.text());
    assert!(
        r.text().contains("no space left on device"),
        "create: {}",
        r.text()
    );
    full(
        &b.docker_out(&["import", rootfs.to_str().unwrap(), "other:latest"]),
        "import",
    );
    let load = b.docker_out(&["load", "-i", big_saved.to_str().unwrap()]);
    full(&load, "load");
    // The host's fault, not the archive's.
    assert!(
        !stderr(&load).contains("invalid archive"),
        "load: {}",
        stderr(&load)
    );
    full(
        &b.docker_out(&["commit", "writer", "committed:1"]),
        "commit",
    );
    let ctx = b.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo hi > /hi\n").unwrap();
    full(
        &b.docker_out(&["build", "-q", "-t", "built:1", ctx.to_str().unwrap()]),
        "build",
    );
    full(
        &b.docker_out(&["volume", "create", "fullvol"]),
        "volume create",
    );

    // berthd still answers, and nothing half-made is listed.
    let names = ok(b.docker_out(&["ps", "-a", "--format", "{{.Names}}"]));
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, ["before", "writer"]);
    let images = ok(b.docker_out(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert_eq!(images.trim(), "busybox:latest");

    // Free the space: everything works again, also after a restart.
    std::fs::remove_file(&filler).unwrap();
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "other:latest"]));
    ok(b.docker_out(&["load", "-i", big_saved.to_str().unwrap()]));
    ok(b.docker_out(&["commit", "writer", "committed:1"]));
    ok(b.docker_out(&["build", "-q", "-t", "built:1", ctx.to_str().unwrap()]));
    ok(b.docker_out(&["volume", "create", "fullvol"]));
    assert_eq!(
        stdout(&b.docker_out(&["run", "--rm", "committed:1", "cat", "/f"])),
        "x\n"
    );
    assert_eq!(
        stdout(&b.docker_out(&["run", "--rm", "built:1", "cat", "/hi"])),
        "hi\n"
    );
    b.stop();
    b.spawn_with_host(&[]);
    let images = ok(b.docker_out(&["images", "--format", "{{.Repository}}"]));
    let mut images: Vec<&str> = images.lines().collect();
    images.sort();
    assert_eq!(images, ["big", "built", "busybox", "committed", "other"]);
    ok(b.docker_out(&["rm", "-f", "before", "writer"]));
}
