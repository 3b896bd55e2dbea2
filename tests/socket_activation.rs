//! systemd socket activation: berthd serves sockets handed to it through LISTEN_FDS.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{stderr, stdout, Berthd};

/// Start berthd with `listener` as fd 3 and the activation environment set for its own PID.
fn spawn_activated(
    b: &mut Berthd,
    listener: &std::os::unix::net::UnixListener,
    host: &str,
    names: &str,
) {
    let fd = listener.as_raw_fd();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&b.log)
        .unwrap();
    let mut cmd = Command::new("sh");
    // `exec` keeps the shell's PID, which is what LISTEN_PID must name.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=\"$BERTH_TEST_FDNAMES\" exec \"$0\" \"$@\"")
        .arg(common::berthd_bin())
        .arg("-H")
        .arg(host)
        .args(b.base_args())
        .env("BERTH_TEST_FDNAMES", names)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    // SAFETY: dup2 and fcntl are async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // Already in place: only drop close-on-exec.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    b.child = Some(cmd.spawn().unwrap());
}

#[test]
fn serves_an_activated_unix_socket() {
    require!(
        common::is_root() && common::have_docker_cli(),
        "needs root and the docker CLI"
    );
    for (host, names) in [
        ("fd://", "berth.socket"),
        ("fd://api", "api"),
        ("fd://3", ""),
    ] {
        let mut b = Berthd::prepare();
        let listener = std::os::unix::net::UnixListener::bind(&b.socket).unwrap();
        spawn_activated(&mut b, &listener, host, names);
        drop(listener);
        b.wait_ready();
        let out = b.docker_out(&["version", "--format", "{{.Server.APIVersion}}"]);
        assert_eq!(stdout(&out).trim(), "1.51", "{host}: {}", stderr(&out));
        assert!(b.stop().success(), "{host}");
        // An activated socket belongs to systemd: berthd leaves its file alone.
        assert!(b.socket.exists(), "{host}");
    }
}

#[test]
fn an_unknown_socket_name_or_no_activation_is_an_error() {
    require!(common::is_root(), "needs root");
    let mut b = Berthd::prepare();
    let listener = std::os::unix::net::UnixListener::bind(&b.socket).unwrap();
    spawn_activated(&mut b, &listener, "fd://other", "api");
    assert_eq!(b.wait_exit(Duration::from_secs(20)).code(), Some(1));
    assert!(
        b.log_text().contains("no socket named \"other\""),
        "{}",
        b.log_text()
    );

    let mut b = Berthd::prepare();
    let mut args = vec!["-H".to_string(), "fd://".to_string()];
    args.extend(b.base_args());
    b.spawn_args(&args);
    assert_eq!(b.wait_exit(Duration::from_secs(20)).code(), Some(1));
    assert!(
        b.log_text()
            .contains("no sockets found via socket activation"),
        "{}",
        b.log_text()
    );
}

#[test]
fn systemd_socket_activate_starts_berthd() {
    require!(
        common::is_root()
            && common::have_docker_cli()
            && common::have_command("systemd-socket-activate"),
        "needs root, the docker CLI and systemd-socket-activate (Debian's systemd package)"
    );
    let mut b = Berthd::prepare();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&b.log)
        .unwrap();
    let child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&b.socket)
        .arg("--fdname=berth")
        .arg(common::berthd_bin())
        .args(["-H", "fd://berth"])
        .args(b.base_args())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    b.child = Some(child);
    // The socket exists before berthd runs; the first connection starts it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !b.socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "systemd-socket-activate did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    b.wait_ready();
    let out = b.docker_out(&["info", "--format", "{{.OSType}}"]);
    assert_eq!(stdout(&out).trim(), "linux", "{}", stderr(&out));
    assert!(b.stop().success(), "{}", b.log_text());
}
