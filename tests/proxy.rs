//! The port proxy as a real process: `berthd __proxy` started by `proxy::spawn` with sockets
//! bound by `proxy::bind`, in front of echo servers on 127.0.0.1. Needs no root and no
//! container.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use berth::network::firewall::Proto;
use berth::network::proxy::{self, PortSpec};

fn spec(proto: Proto, container_port: u16) -> PortSpec {
    PortSpec {
        proto,
        host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        host_port: 0,
        container_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        container_port,
    }
}

fn tcp_echo() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            std::thread::spawn(move || {
                let mut r = c.try_clone().expect("clone");
                let _ = std::io::copy(&mut r, &mut c);
                let _ = c.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

fn udp_echo() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind udp echo");
    let port = s.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65535];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    port
}

fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_spawned_proxy_serves_until_stopped_and_frees_its_ports() {
    let exe = Path::new(env!("CARGO_BIN_EXE_berthd"));
    let tcp = spec(Proto::Tcp, tcp_echo());
    let udp = spec(Proto::Udp, udp_echo());
    let (tcp_fd, tcp_port) = proxy::bind(&tcp).expect("bind tcp");
    let (udp_fd, udp_port) = proxy::bind(&udp).expect("bind udp");
    let p = proxy::spawn(
        exe,
        vec![
            (
                PortSpec {
                    host_port: tcp_port,
                    ..tcp.clone()
                },
                tcp_fd,
            ),
            (
                PortSpec {
                    host_port: udp_port,
                    ..udp.clone()
                },
                udp_fd,
            ),
        ],
    )
    .expect("spawn");
    assert!(proxy::alive(&p));

    // TCP round trip right after spawn returned.
    let mut c = TcpStream::connect(("127.0.0.1", tcp_port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c.write_all(b"hello proxy").expect("write");
    c.shutdown(Shutdown::Write).expect("half close");
    let mut back = String::new();
    c.read_to_string(&mut back).expect("read");
    assert_eq!(back, "hello proxy");

    // UDP round trip.
    let u = UdpSocket::bind("127.0.0.1:0").expect("client");
    u.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    u.send_to(b"dgram", ("127.0.0.1", udp_port)).expect("send");
    let mut buf = [0u8; 16];
    let (n, from) = u.recv_from(&mut buf).expect("recv");
    assert_eq!(&buf[..n], b"dgram");
    assert_eq!(from.port(), udp_port);

    if let Some(kib) = rss_kib(p.pid) {
        eprintln!("proxy RSS: {kib} KiB");
    }

    // The proxy lives in its own session.
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(p.pid))).expect("getsid");
    assert_eq!(sid.as_raw(), p.pid);

    let t = Instant::now();
    proxy::stop(&p);
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "SIGTERM should end it at once"
    );
    assert!(!proxy::alive(&p));
    // Reaped: no zombie left behind.
    assert_eq!(
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p.pid), None),
        Err(nix::errno::Errno::ECHILD)
    );
    // Both ports are free again.
    let (_t, again) = proxy::bind(&PortSpec {
        host_port: tcp_port,
        ..tcp
    })
    .expect("tcp port free again");
    assert_eq!(again, tcp_port);
    let (_u, again) = proxy::bind(&PortSpec {
        host_port: udp_port,
        ..udp
    })
    .expect("udp port free again");
    assert_eq!(again, udp_port);
    // Stopping again is harmless.
    proxy::stop(&p);
}

#[test]
fn a_proxy_that_cannot_start_is_an_error() {
    // Not the berthd binary: nothing reports readiness.
    let s = spec(Proto::Tcp, 1);
    let (fd, _port) = proxy::bind(&s).expect("bind");
    let e = proxy::spawn(Path::new("/bin/true"), vec![(s, fd)]).expect_err("spawn");
    assert!(e.message().starts_with("start the port proxy: "), "{e}");
}
