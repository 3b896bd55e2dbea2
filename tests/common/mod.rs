//! Test harness: start berthd (as a process or in-process) on a temporary socket and data root,
//! and talk to it through the docker CLI, raw HTTP or bollard.
#![allow(dead_code)]

pub mod pki;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::api::Api;
use berth::config::{Config, Flags};
use berth::daemon::Daemon;
use berth::server::{self, Listener, ServerOptions};
use clap::Parser;

/// The berthd binary under test.
pub fn berthd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berthd")
}

/// Whether this process may start berthd (it needs root).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skip the current test with a message when `cond` is false.
#[macro_export]
macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            eprintln!("SKIP {}: {}", module_path!(), $why);
            return;
        }
    };
}

/// Whether the docker CLI is on PATH.
pub fn have_docker_cli() -> bool {
    have_command("docker")
}

pub fn have_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A berthd process with its own socket, data root, exec root, pidfile and config file.
pub struct Berthd {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub child: Option<Child>,
    pub log: PathBuf,
    /// Runs in a network namespace of its own (`unshare --net`, `lo` up) with networking on;
    /// otherwise in the host's, with `--bridge=none --iptables=false` so that it touches no
    /// host network state.
    pub netns: bool,
    /// The binary started (the build's berthd unless a test swaps it).
    pub bin: PathBuf,
    /// Variables added to berthd's environment.
    pub env: Vec<(String, String)>,
}

impl Berthd {
    /// Paths inside the test's directory.
    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("daemon.json")
    }

    /// A directory and an empty config file, without starting anything.
    pub fn prepare() -> Berthd {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::write(dir.path().join("daemon.json"), "{}").expect("write config");
        let socket = dir.path().join("berth.sock");
        let log = dir.path().join("berthd.log");
        Berthd {
            dir,
            socket,
            child: None,
            log,
            netns: false,
            bin: PathBuf::from(berthd_bin()),
            env: Vec::new(),
        }
    }

    /// The standard arguments for this test's paths.
    pub fn base_args(&self) -> Vec<String> {
        let d = self.dir.path();
        let mut args: Vec<String> = if self.netns {
            Vec::new()
        } else {
            vec!["--bridge=none".into(), "--iptables=false".into()]
        };
        args.extend([
            "--data-root".into(),
            d.join("data").display().to_string(),
            "--exec-root".into(),
            d.join("exec").display().to_string(),
            "--pidfile".into(),
            d.join("berthd.pid").display().to_string(),
            "--config-file".into(),
            d.join("daemon.json").display().to_string(),
        ]);
        args
    }

    /// The standard arguments with one option's value replaced.
    pub fn base_args_with(&self, option: &str, value: &Path) -> Vec<String> {
        let mut args = self.base_args();
        if let Some(i) = args.iter().position(|a| a == option) {
            args[i + 1] = value.display().to_string();
        }
        args
    }

    /// Start berthd on the test socket with extra arguments and wait for `/_ping`.
    pub fn start(extra: &[&str]) -> Berthd {
        let mut b = Berthd::prepare();
        b.spawn_with_host(extra);
        b
    }

    /// Start berthd in a throwaway network namespace with networking on (bridges, nftables,
    /// published ports, DNS): nothing it does reaches the host's network, and everything goes
    /// with the namespace even after `kill -9`. Reach it with [`Berthd::in_netns`].
    pub fn start_netns(extra: &[&str]) -> Berthd {
        let mut b = Berthd::prepare();
        b.netns = true;
        b.spawn_with_host(extra);
        b
    }

    /// A command run in berthd's network namespace (e.g. `curl` to a published port on
    /// `127.0.0.1`).
    pub fn in_netns(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .arg("--")
            .arg(program)
            .args(args)
            .output()
            .expect("run nsenter")
    }

    /// (Re)start on the same directory.
    pub fn spawn_with_host(&mut self, extra: &[&str]) {
        let mut args = vec![
            "-H".to_string(),
            format!("unix://{}", self.socket.display()),
        ];
        args.extend(self.base_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn_args(&args);
        self.wait_ready();
    }

    /// Start berthd with exactly `args` (no waiting).
    pub fn spawn_args(&mut self, args: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let mut cmd = if self.netns {
            let mut c = Command::new("unshare");
            c.args([
                "--net",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(&self.bin);
            c
        } else {
            Command::new(&self.bin)
        };
        let child = cmd
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
    }

    /// Wait until the socket answers `/_ping`.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(resp) = http(
                &self.socket,
                "GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ) {
                if resp.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "berthd exited with {status} before it was ready; log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not become ready; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    /// Signal berthd. A berthd that already exited (one that failed to start, say) is not an
    /// error here: clean-up code signals it too, and a panic there would abort the test run
    /// and leave its containers behind.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// Wait for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                self.child = None;
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not exit; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }

    /// The docker CLI pointed at this daemon.
    pub fn docker(&self) -> Command {
        docker_cli(
            &format!("unix://{}", self.socket.display()),
            self.dir.path(),
        )
    }

    /// Run the docker CLI and return its output.
    pub fn docker_out(&self, args: &[&str]) -> Output {
        self.docker().args(args).output().expect("run docker")
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        // A failed test shows what berthd logged: its directory goes with it.
        if std::thread::panicking() {
            if let Ok(text) = std::fs::read_to_string(&self.log) {
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(80);
                eprintln!(
                    "--- the end of berthd's log ({}) ---\n{}\n---",
                    self.log.display(),
                    lines[from..].join("\n")
                );
            }
        }
        // Containers outlive berthd (live restore): remove what a test left running.
        let has_containers = std::fs::read_dir(self.data_root().join("containers"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if self.child.is_some() && has_containers {
            if let Ok(o) = self.docker().args(["ps", "-aq"]).output() {
                let ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect();
                if !ids.is_empty() {
                    let _ = self.docker().arg("rm").arg("-f").args(&ids).output();
                }
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        unmount_below(self.dir.path());
    }
}

/// A file a first start writes while berthd already serves (its engine ID, its predefined
/// networks): its contents once they are there.
pub fn read_when_written(path: &Path) -> String {
    let mut text = String::new();
    wait_for(
        &format!("{} to be written", path.display()),
        Duration::from_secs(10),
        || {
            text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim().is_empty()
        },
    );
    text
}

/// The mount points at or below `dir` (canonicalised), in the kernel's order.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    berth::util::fs::mount_table()
        .into_iter()
        .map(|e| e.mount_point)
        .filter(|p| p.starts_with(&dir))
        .collect()
}

/// Lazily unmount every mount below `dir`, deepest first: berthd leaves its own bind mounts of
/// `<data-root>/containers` and `<exec-root>/netns` in place when it stops (live restore), and
/// a test's directory cannot be removed under them.
pub fn unmount_below(dir: &Path) {
    let mut points = mounts_below(dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A docker CLI command with a private config dir and the given host.
pub fn docker_cli(host: &str, dir: &Path) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env_remove("DOCKER_API_VERSION")
        .stdin(Stdio::null());
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// How long a test's connection waits for the next bytes of a response.
pub const CONN_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Send raw bytes on a new connection and read until the server closes it.
pub fn http(socket: &Path, request: &str) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// A keep-alive connection that sends requests one after another.
pub struct Conn<S: Read + Write> {
    stream: S,
    buf: Vec<u8>,
}

impl Conn<UnixStream> {
    pub fn unix(socket: &Path) -> Self {
        let s = UnixStream::connect(socket).expect("connect");
        s.set_read_timeout(Some(CONN_READ_TIMEOUT))
            .expect("timeout");
        Conn {
            stream: s,
            buf: Vec::new(),
        }
    }
}

impl<S: Read + Write> Conn<S> {
    pub fn new(stream: S) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Send `method path` with optional body and read one response.
    pub fn request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        // Head and body in one write: a server that answers from the head alone (a refusal)
        // must not race a second write.
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        self.stream.write_all(&bytes).expect("write request");
        self.read_response(method == "HEAD")
    }

    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Read more of the response, which must come: a close and a read timeout (a daemon that
    /// answers slowly, say while a loaded machine restores containers) panic with different
    /// texts.
    fn must_fill(&mut self, what: &str) {
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("connection closed {what}"),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("no more of the response {what} after the read timeout: {e}"),
            }
        }
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Read the status line and headers only.
    pub fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 4);
                let mut lines = head.split("\r\n");
                let status = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .and_then(|s| s.parse().ok())
                    .expect("status line");
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                return (status, headers);
            }
            self.must_fill("before the response head");
        }
    }

    /// Read a body framed by Content-Length or chunked encoding.
    pub fn read_body(&mut self, headers: &[(String, String)], head_request: bool) -> Vec<u8> {
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        if head_request {
            return Vec::new();
        }
        if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < len {
                self.must_fill("inside the body");
            }
            return self.buf.drain(..len).collect();
        }
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf, b"\r\n") {
                        break p;
                    }
                    self.must_fill("inside a chunk header");
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .expect("chunk size");
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    self.must_fill("inside a chunk");
                }
                body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    return body;
                }
            }
        }
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    pub fn read_response(&mut self, head_request: bool) -> Resp {
        let (status, headers) = self.read_head();
        let body = self.read_body(&headers, head_request);
        Resp {
            status,
            headers,
            body,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A server running inside the test process on a temporary socket.
pub struct InProcess {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub daemon: Arc<Daemon>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub done: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    pub fn start() -> InProcess {
        Self::start_with(ServerOptions::default())
    }

    pub fn start_with(opts: ServerOptions) -> InProcess {
        let dir = tempfile::Builder::new()
            .prefix("berth-inproc-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("api.sock");
        let flags = Flags::try_parse_from([
            "berthd",
            "--data-root",
            dir.path().join("data").to_str().expect("utf8"),
            "--exec-root",
            dir.path().join("exec").to_str().expect("utf8"),
            "--config-file",
            "/dev/null",
            "-H",
            &format!("unix://{}", socket.display()),
            // No bridge and no firewall: nothing on the host's network.
            "--bridge=none",
            "--iptables=false",
        ])
        .expect("flags");
        let config = Config::load(&flags).expect("config");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sock = socket.clone();
        // The daemon is made on the server's own runtime (its network service keeps a netlink
        // task there), on a thread of its own: the caller may be inside a runtime already.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let d = Daemon::new(flags, config, None).await.expect("daemon");
                let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
                ready_tx.send(d.clone()).expect("ready");
                server::run(
                    vec![Listener::unix(listener)],
                    Api::new(d.backends()),
                    async {
                        let _ = stop_rx.await;
                    },
                    opts,
                )
                .await;
            });
        });
        let daemon = ready_rx.recv().expect("server thread started");
        InProcess {
            dir,
            socket,
            daemon,
            stop: Some(stop_tx),
            done: Some(done),
        }
    }

    /// Begin shutdown without waiting.
    pub fn shutdown_async(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Begin shutdown and wait for the server to return.
    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            d.join().expect("server thread");
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        unmount_below(self.dir.path());
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Whether Debian's busybox-static is installed (the fixture images are made from it).
pub fn have_busybox() -> bool {
    std::path::Path::new("/bin/busybox").exists()
}

/// Append a regular file owned by root to a tar being built.
pub fn append_file<W: Write>(
    t: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mode: u32,
    mtime: u64,
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    t.append_data(&mut h, path, data).unwrap();
}

/// A rootfs tar of busybox-static and its applet links, with /etc/passwd and /etc/group.
pub fn busybox_rootfs_tar(dir: &Path) -> PathBuf {
    let out = dir.join("busybox-rootfs.tar");
    if out.exists() {
        return out;
    }
    let mut b = tar::Builder::new(Vec::new());
    let mtime = 1_700_000_000;
    let dir_entry = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_mtime(mtime);
        h.set_size(0);
        b.append_data(&mut h, path, std::io::empty()).unwrap();
    };
    for (d, m) in [
        ("bin/", 0o755),
        ("etc/", 0o755),
        ("tmp/", 0o1777),
        ("root/", 0o700),
        ("proc/", 0o755),
        ("sys/", 0o755),
        ("dev/", 0o755),
    ] {
        dir_entry(&mut b, d, m);
    }
    let bin = std::fs::read("/bin/busybox").unwrap();
    append_file(&mut b, "bin/busybox", &bin, 0o755, mtime);
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet == "busybox" || applet.is_empty() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_mtime(mtime);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    for (path, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser:x:1000:1000:user:/tmp:/bin/sh\n"),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\nuser:x:1000:\n"),
    ] {
        append_file(&mut b, path, text.as_bytes(), 0o644, mtime);
    }
    std::fs::write(&out, b.into_inner().unwrap()).unwrap();
    out
}

/// Run the docker CLI with a file as its standard input.
pub fn docker_with_stdin(b: &Berthd, args: &[&str], input: &Path) -> Output {
    b.docker()
        .args(args)
        .stdin(std::fs::File::open(input).unwrap())
        .output()
        .expect("run docker")
}

/// Assert a docker command succeeded and return its stdout.
#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "docker failed ({}): {}{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A Debian `docker-registry` on 127.0.0.1 with temporary storage, optionally with htpasswd
/// authentication. Killed when dropped.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Registry {
    pub fn available() -> bool {
        have_command("docker-registry")
    }

    /// Start a registry; `auth` is (user, password) for htpasswd authentication.
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("htpasswd").display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let r = Registry { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.1 401") {
                    return r;
                }
            }
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A raw HTTP request to the registry; returns (status, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.host(),
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut conn = Conn::new(s);
        let r = conn.read_response(method == "HEAD");
        (r.status, r.body)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A berthd (with `extra` flags) that has `busybox:latest` imported from busybox-static.
pub fn berthd_with_busybox(extra: &[&str]) -> Berthd {
    with_busybox(Berthd::start(extra))
}

/// Import busybox into a started berthd.
pub fn with_busybox(b: Berthd) -> Berthd {
    let rootfs = busybox_rootfs_tar(b.dir.path());
    let id = ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    assert!(id.trim().starts_with("sha256:"), "{id}");
    b
}

/// The ID of an image, through `docker image inspect`.
pub fn image_id(b: &Berthd, name: &str) -> String {
    ok(b.docker_out(&["image", "inspect", "--format", "{{.Id}}", name]))
        .trim()
        .to_string()
}

/// Go's name for this machine's architecture.
pub fn go_arch() -> &'static str {
    if cfg!(target_arch = "x86_64") {
        "amd64"
    } else {
        "arm64"
    }
}

/// A field of `docker inspect`, formatted.
pub fn inspect(b: &Berthd, name: &str, format: &str) -> String {
    ok(b.docker_out(&["inspect", "--format", format, name]))
        .trim()
        .to_string()
}

/// Poll `f` every 50 ms until it holds, failing the test after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The python of the docker-py venv (`BERTH_TEST_PYTHON`, else `/var/tmp/berth-venv`), if it
/// exists; tests that need it skip with [`DOCKER_PY_MISSING`] otherwise.
pub fn docker_py() -> Option<String> {
    let python = std::env::var("BERTH_TEST_PYTHON")
        .unwrap_or_else(|_| "/var/tmp/berth-venv/bin/python".to_string());
    Path::new(&python).exists().then_some(python)
}

pub const DOCKER_PY_MISSING: &str =
    "needs docker-py in a venv at /var/tmp/berth-venv (.ci/run makes it) or BERTH_TEST_PYTHON";

/// Run a docker-py `script` with berthd's socket and `args` as its arguments; the script must
/// print `ok`.
pub fn run_docker_py(python: &str, b: &Berthd, script: &str, args: &[&Path]) {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&b.socket)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).trim(), "ok");
}

/// `docker-compose -p project args` in `dir`, on berthd's socket (classic builds).
pub fn compose(b: &Berthd, dir: &Path, project: &str, args: &[&str]) -> Output {
    Command::new("docker-compose")
        .current_dir(dir)
        .env("DOCKER_HOST", format!("unix://{}", b.socket.display()))
        .env("COMPOSE_DOCKER_CLI_BUILD", "0")
        .env("DOCKER_BUILDKIT", "0")
        .args(["-p", project])
        .args(args)
        .output()
        .unwrap()
}

/// `docker events --since <since> --until <now + 1 s> --filter … --format <format>`: its
/// output, the command having succeeded.
#[allow(dead_code)]
pub fn events_text(
    b: &Berthd,
    since: impl std::fmt::Display,
    filters: &[&str],
    format: &str,
) -> String {
    let since = since.to_string();
    let until = (now_secs() + 1).to_string();
    let mut args = vec!["events", "--since", &since, "--until", &until];
    for f in filters {
        args.extend_from_slice(&["--filter", f]);
    }
    args.extend_from_slice(&["--format", format]);
    ok(b.docker_out(&args))
}

/// Processes whose command line contains `needle` and `also` (NUL-separated arguments joined
/// by spaces), as `(pid, cmdline)`.
pub fn processes(needle: &str, also: &str) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(c) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let c = String::from_utf8_lossy(&c).replace('\0', " ");
        if c.contains(needle) && c.contains(also) {
            out.push((pid, c));
        }
    }
    out
}
