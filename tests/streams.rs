//! Interactive streams through the docker CLI: piped stdin, TTYs driven through a real
//! pseudo-terminal, resize, attach and detach keys, exec, volume and disconnects.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{berthd_with_busybox, inspect, ok, stderr, stdout, wait_for, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

/// The docker CLI on a real pseudo-terminal of `rows` x `cols`, as its controlling terminal.
struct Pty {
    child: Child,
    master: File,
    seen: Vec<u8>,
}

impl Pty {
    fn spawn(b: &Berthd, args: &[&str], rows: u16, cols: u16) -> Pty {
        let ws = nix::pty::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let mut cmd = b.docker();
        cmd.args(args)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and TIOCSCTTY are async-signal-safe; the child makes the pty (its
        // stdin) its controlling terminal so that it gets SIGWINCH on resize.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn docker on a pty");
        let master = File::from(pty.master);
        let flags = nix::fcntl::fcntl(master.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        nix::fcntl::fcntl(
            master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(
                nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
            ),
        )
        .unwrap();
        Pty {
            child,
            master,
            seen: Vec::new(),
        }
    }

    fn pump(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.master.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.seen.extend_from_slice(&buf[..n]),
                Err(_) => return,
            }
        }
    }

    /// Wait until the terminal shows `text` (after what was already matched).
    fn expect(&mut self, text: &str) {
        let start = Instant::now();
        loop {
            self.pump();
            let hay = String::from_utf8_lossy(&self.seen).into_owned();
            if let Some(i) = hay.find(text) {
                let cut = i + text.len();
                self.seen.drain(..cut.min(self.seen.len()));
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "terminal never showed {text:?}; it showed {hay:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, text: &[u8]) {
        self.master.write_all(text).unwrap();
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize we own.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0);
    }

    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            self.pump();
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn piped_stdin_and_separate_streams() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let mut cmd = b.docker();
    cmd.args(["run", "-i", "--rm", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
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
}

#[test]
fn interactive_tty_shell_exit_code_and_resize() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let mut t = Pty::spawn(
        &b,
        &["run", "-it", "--name", "it", "busybox", "sh"],
        30,
        100,
    );
    t.expect("# ");
    t.send(b"echo $((6*7))\n");
    t.expect("42");
    t.send(b"stty size\n");
    t.expect("30 100");
    t.resize(40, 120);
    // The CLI forwards the new size; the shell sees it at its next command.
    let start = Instant::now();
    loop {
        t.send(b"stty size\n");
        std::thread::sleep(Duration::from_millis(200));
        t.pump();
        if String::from_utf8_lossy(&t.seen).contains("40 120") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "resize never arrived: {:?}",
            String::from_utf8_lossy(&t.seen)
        );
    }
    t.send(b"exit 5\n");
    assert_eq!(t.wait(Duration::from_secs(15)), Some(5));
    assert_eq!(
        inspect(&b, "it", "{{.State.ExitCode}} {{.Config.Tty}}"),
        "5 true"
    );
}

#[test]
fn attach_and_detach_with_ctrl_p_ctrl_q() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&["run", "-dit", "--name", "att", "busybox", "sh"]));
    let mut t = Pty::spawn(&b, &["attach", "att"], 24, 80);
    t.send(b"echo attached-$((1+1))\n");
    t.expect("attached-2");
    t.send(b"\x10\x11");
    // The CLI reports the detach as dockerd's does: "read escape sequence", status 1.
    let code = t.wait(Duration::from_secs(10));
    assert_eq!(code, Some(1), "{:?}", String::from_utf8_lossy(&t.seen));
    assert!(String::from_utf8_lossy(&t.seen).contains("read escape sequence"));
    assert_eq!(inspect(&b, "att", "{{.State.Running}}"), "true");
    // Attach again: the shell is still there.
    let mut t = Pty::spawn(&b, &["attach", "--detach-keys", "ctrl-a,x", "att"], 24, 80);
    t.send(b"echo again\n");
    t.expect("again");
    t.send(b"\x01x");
    assert_eq!(t.wait(Duration::from_secs(10)), Some(1));
    assert_eq!(inspect(&b, "att", "{{.State.Running}}"), "true");
    ok(b.docker_out(&["rm", "-f", "att"]));
    // Detaching from `docker run -it` leaves the container running too.
    let mut t = Pty::spawn(
        &b,
        &["run", "-it", "--name", "att2", "busybox", "sh"],
        24,
        80,
    );
    t.expect("# ");
    t.send(b"\x10\x11");
    // `docker run` (unlike `docker attach`) exits 0 after a detach.
    assert_eq!(t.wait(Duration::from_secs(10)), Some(0));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inspect(&b, "att2", "{{.State.Running}}"), "true");
    // The CLI detaches by itself (its own escape proxy: the keys never reach the daemon); a
    // client that sends the keys to an exec gets the `exec_detach` event, as from dockerd.
    let since = common::now_secs().to_string();
    let create = r#"{"AttachStdin":true,"AttachStdout":true,"Tty":true,"Cmd":["sh"]}"#;
    let resp = common::http(
        &b.socket,
        &format!(
            "POST /v1.51/containers/att2/exec HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{create}",
            create.len()
        ),
    )
    .unwrap();
    let exec_id = resp.split("\"Id\":\"").nth(1).unwrap()[..64].to_string();
    let mut conn = std::os::unix::net::UnixStream::connect(&b.socket).unwrap();
    let start = r#"{"Detach":false,"Tty":true}"#;
    write!(
        conn,
        "POST /v1.51/exec/{exec_id}/start HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{start}",
        start.len()
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = conn.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    std::thread::sleep(Duration::from_millis(300));
    conn.write_all(b"\x10\x11").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    let events = common::events_text(
        &b,
        &since,
        &["event=exec_detach"],
        "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.execID}}",
    );
    assert_eq!(
        events.trim(),
        format!("exec_detach att2 {exec_id}"),
        "{events}"
    );
    ok(b.docker_out(&["rm", "-f", "att2"]));
}

#[test]
fn exec_variants() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&["run", "-d", "--name", "ex", "busybox", "sleep", "1000"]));
    assert_eq!(ok(b.docker_out(&["exec", "ex", "echo", "hi"])), "hi\n");
    let o = b.docker_out(&["exec", "ex", "false"]);
    assert_eq!(o.status.code(), Some(1));
    let o = b.docker_out(&["exec", "ex", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = b.docker_out(&[
        "exec",
        "-u",
        "1000:1000",
        "-e",
        "A=b",
        "-w",
        "/tmp",
        "ex",
        "sh",
        "-c",
        "id -u; echo $A; pwd",
    ]);
    assert_eq!(stdout(&o), "1000\nb\n/tmp\n", "{}", stderr(&o));
    let o = b.docker_out(&["exec", "ex", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(
        (stdout(&o).as_str(), stderr(&o).as_str()),
        ("out\n", "err\n")
    );
    let o = b.docker_out(&["exec", "ex", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}{}", stdout(&o), stderr(&o));
    assert!(format!("{}{}", stdout(&o), stderr(&o)).contains("executable file not found"));
    // A working directory that is not in the container: runc's words (libcontainer's own are
    // "failed to unix syscall") and 126.
    let o = b.docker_out(&["exec", "-w", "/nonexistent", "ex", "pwd"]);
    assert_eq!(o.status.code(), Some(126), "{}{}", stdout(&o), stderr(&o));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        said.contains(
            "chdir to cwd (\"/nonexistent\") set in config.json failed: no such file or directory"
        ),
        "{said}"
    );
    // -i with piped stdin.
    let mut cmd = b.docker();
    cmd.args(["exec", "-i", "ex", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\ndone\n");
    // -t on a pty.
    let mut t = Pty::spawn(
        &b,
        &["exec", "-it", "ex", "sh", "-c", "tty; stty size; exit 3"],
        25,
        90,
    );
    t.expect("/dev/pts/");
    t.expect("25 90");
    assert_eq!(t.wait(Duration::from_secs(10)), Some(3));
    // The container's ExecIDs: as dockerd's, the execs that have not ended (a detached one
    // still running), not the seven that ran to their end.
    ok(b.docker_out(&["exec", "-d", "ex", "sleep", "30"]));
    let ids = inspect(&b, "ex", "{{json .ExecIDs}}");
    assert_eq!(ids.matches(',').count(), 0, "{ids}");
    assert_eq!(ids.len(), "[\"\"]".len() + 64, "{ids}");
    // The container's seccomp profile applies to exec'd processes too.
    let st = ok(b.docker_out(&["exec", "ex", "grep", "Seccomp:", "/proc/self/status"]));
    assert!(st.contains("2"), "{st}");
    // An exec created and not started when its container stops: as in moby it keeps no exit
    // code, and its start is refused because the container is not running (not "has
    // already run").
    let mut conn = common::Conn::unix(&b.socket);
    let created = conn.request(
        "POST",
        "/v1.51/containers/ex/exec",
        Some(br#"{"Cmd":["true"]}"#),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let pending = created.json()["Id"].as_str().unwrap().to_string();
    // Into a stopped container.
    ok(b.docker_out(&["stop", "-t", "1", "ex"]));
    let o = b.docker_out(&["exec", "ex", "true"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    let mut conn = common::Conn::unix(&b.socket);
    let seen = conn.request("GET", &format!("/v1.51/exec/{pending}/json"), None);
    assert_eq!(seen.status, 200);
    assert_eq!(
        seen.json()["ExitCode"],
        serde_json::Value::Null,
        "{}",
        seen.text()
    );
    assert_eq!(seen.json()["Running"], false);
    let start = conn.request(
        "POST",
        &format!("/v1.51/exec/{pending}/start"),
        Some(br#"{"Detach":true}"#),
    );
    assert_eq!(start.status, 409, "{}", start.text());
    assert!(
        start.json()["message"]
            .as_str()
            .unwrap()
            .ends_with("is not running"),
        "{}",
        start.text()
    );
    ok(b.docker_out(&["run", "-d", "--name", "pz", "busybox", "sleep", "100"]));
    ok(b.docker_out(&["pause", "pz"]));
    let o = b.docker_out(&["exec", "pz", "true"]);
    assert!(stderr(&o).contains("is paused"), "{}", stderr(&o));
    ok(b.docker_out(&["rm", "-f", "pz", "ex"]));
}

/// A fast deterministic byte stream (xorshift) for the volume test.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

#[test]
fn one_gigabyte_through_cat_arrives_intact() {
    use sha2::Digest;
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let mut cmd = b.docker();
    // The stream path under test is attach; `--log-driver none` keeps the gigabyte out of
    // the json-file log (which would store it, escaped, a second and third time on disk).
    cmd.args([
        "run",
        "-i",
        "--rm",
        "--log-driver",
        "none",
        "busybox",
        "cat",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut h = sha2::Sha256::new();
        let mut noise = Noise(0x9e3779b97f4a7c15);
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            noise.fill(&mut buf);
            h.update(&buf);
            input.write_all(&buf).unwrap();
        }
        drop(input);
        h.finalize()
    });
    let mut output = child.stdout.take().unwrap();
    let mut h = sha2::Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = output.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    let sent = writer.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_eq!(total, 1 << 30);
    assert_eq!(h.finalize(), sent);
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn disconnected_clients_leak_nothing() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "chatty",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.05; done",
    ]));
    // And one that writes nothing while its clients go away.
    ok(b.docker_out(&[
        "run",
        "-d",
        "-i",
        "--name",
        "idle",
        "busybox",
        "sh",
        "-c",
        "echo once; cat",
    ]));
    std::thread::sleep(Duration::from_millis(300));
    let pid = b.pid();
    let baseline = fd_count(pid);
    for round in 0..4 {
        let target = if round % 2 == 0 { "chatty" } else { "idle" };
        let mut attach = b.docker();
        attach
            .args(["attach", target])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut attach = attach.spawn().unwrap();
        let mut logs = b.docker();
        logs.args(["logs", "-f", target]).stdout(Stdio::null());
        let mut logs = logs.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert!(
            fd_count(pid) > baseline,
            "round {round}: no connections seen"
        );
        attach.kill().unwrap();
        logs.kill().unwrap();
        let _ = attach.wait();
        let _ = logs.wait();
    }
    wait_for(
        "berthd's fds back to the baseline",
        Duration::from_secs(10),
        || fd_count(pid) <= baseline,
    );
    assert_eq!(inspect(&b, "chatty", "{{.State.Running}}"), "true");
    assert_eq!(inspect(&b, "idle", "{{.State.Running}}"), "true");
    assert!(stdout(&b.docker_out(&["logs", "--tail", "1", "chatty"])).contains("tick"));
    ok(b.docker_out(&["rm", "-f", "chatty", "idle"]));
}

#[test]
fn docker_py_streams() {
    require!(ready(), NOT_READY);
    let python = common::docker_py();
    require!(python.is_some(), common::DOCKER_PY_MISSING);
    let python = python.unwrap_or_default();
    let b = berthd_with_busybox(&[]);
    let script = r#"
import docker, os, socket, sys, time
c = docker.DockerClient(base_url="unix://" + sys.argv[1], version="1.41")
# run with stdin_open and a raw attach socket
ctr = c.containers.run("busybox", ["cat"], stdin_open=True, detach=True)
sock = c.api.attach_socket(ctr.id, params={"stdin": 1, "stdout": 1, "stream": 1})
raw = sock._sock
raw.sendall(b"ping\n")
buf = b""
deadline = time.time() + 10
while b"ping" not in buf and time.time() < deadline:
    buf += raw.recv(4096)
assert b"ping" in buf, buf
# Without StdinOnce, closing our stdin leaves the container's open (as in dockerd).
raw.shutdown(socket.SHUT_WR)
time.sleep(0.3)
ctr.reload()
assert ctr.status == "running", ctr.status
ctr.kill()
assert ctr.wait(timeout=10)["StatusCode"] == 137
ctr.remove()
# attach(stream=True)
ctr = c.containers.run("busybox", ["sh", "-c", "sleep 0.5; echo one; echo two"], detach=True)
lines = b"".join(ctr.attach(stream=True, stdout=True, stderr=True))
assert lines == b"one\ntwo\n", lines
ctr.remove()
# exec_run with demux
ctr = c.containers.run("busybox", ["sleep", "100"], detach=True)
code, (out, err) = ctr.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"], demux=True)
assert code == 3, code
assert out == b"out\n" and err == b"err\n", (out, err)
code, out = ctr.exec_run("echo plain")
assert code == 0 and out == b"plain\n", (code, out)
ctr.remove(force=True)
print("ok")
"#;
    common::run_docker_py(&python, &b, script, &[]);
}

#[test]
fn stream_events() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let since = common::now_secs();
    ok(b.docker_out(&["run", "--name", "se", "busybox", "true"]));
    ok(b.docker_out(&["run", "-d", "--name", "se2", "busybox", "sleep", "100"]));
    let o = b.docker_out(&["exec", "se2", "sh", "-c", "exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    // An exec that cannot start: created and started, but no process died (moby's
    // `setExitCodeFromError` records 127 without an `exec_die`).
    let o = b.docker_out(&["exec", "se2", "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    ok(b.docker_out(&["rm", "-f", "se2"]));
    let out = common::events_text(
        &b,
        since,
        &["type=container"],
        "{{.Action}} {{index .Actor.Attributes \"exitCode\"}}",
    );
    assert!(out.contains("attach "), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("exec_create: sh -c exit 4")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("exec_start: sh -c exit 4")),
        "{out}"
    );
    assert!(out.contains("exec_die 4"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("exec_start: no-such-command")),
        "{out}"
    );
    assert_eq!(out.matches("exec_die").count(), 1, "{out}");
}

#[test]
fn attach_logs_replay_and_websocket() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let id = ok(b.docker_out(&[
        "run",
        "-di",
        "--name",
        "wsc",
        "busybox",
        "sh",
        "-c",
        "echo hello-logs; cat",
    ]));
    let id = id.trim().to_string();
    wait_for("the first line", Duration::from_secs(10), || {
        stdout(&b.docker_out(&["logs", "wsc"])).contains("hello-logs")
    });
    // logs=1 without stream: the log, multiplexed, then the end.
    let mut conn = common::Conn::unix(&b.socket);
    let resp = conn.request("POST", "/v1.45/containers/wsc/attach?logs=1&stdout=1", None);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body[0], 1, "{:?}", resp.body);
    assert!(String::from_utf8_lossy(&resp.body).contains("hello-logs"));
    // Hijacked, the log follows the 101 only once the client has read its head: clients
    // that parse the head with a buffered reader and then read the raw socket (docker-py's
    // `attach(stream=False, logs=True)`) lost a log that came with it.
    {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&b.socket).unwrap();
        s.write_all(
            b"POST /v1.45/containers/wsc/attach?logs=1&stdout=1 HTTP/1.1\r\nHost: x\r\n\
              Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(40));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.ends_with("\r\n\r\n"),
            "the head came with more: {head:?}"
        );
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert_eq!(rest[0], 1, "{rest:?}");
        assert!(String::from_utf8_lossy(&rest).contains("hello-logs"));
    }
    // The websocket: the log replayed, then stdin echoed back by cat.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sock = tokio::net::UnixStream::connect(&b.socket).await.unwrap();
        let url = format!("ws://localhost/v1.45/containers/{id}/attach/ws?logs=1&stream=1&stdin=1&stdout=1&stderr=1");
        let (mut ws, resp) = tokio_tungstenite::client_async(url, sock).await.unwrap();
        assert_eq!(resp.status().as_u16(), 101);
        let mut seen = Vec::new();
        read_until(&mut ws, &mut seen, "hello-logs").await;
        ws.send(Message::Binary(b"over-ws\n".to_vec().into())).await.unwrap();
        read_until(&mut ws, &mut seen, "over-ws").await;
        let _ = ws.close(None).await;
    });
    assert_eq!(inspect(&b, "wsc", "{{.State.Running}}"), "true");
    ok(b.docker_out(&["rm", "-f", "wsc"]));
}

/// Read websocket messages into `seen` until it contains `want` (10 s at most).
async fn read_until(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::UnixStream>,
    seen: &mut Vec<u8>,
    want: &str,
) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let fut = async {
        loop {
            if String::from_utf8_lossy(seen).contains(want) {
                return;
            }
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => seen.extend_from_slice(&b),
                Some(Ok(Message::Text(t))) => seen.extend_from_slice(t.as_bytes()),
                Some(Ok(_)) => {}
                other => panic!("websocket ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("never saw {want:?}: {:?}", String::from_utf8_lossy(seen)));
}
