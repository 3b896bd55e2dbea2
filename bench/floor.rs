//! The container floor (issue 17): a bare create → start → wait → delete of one OCI bundle with
//! libcontainer alone, no daemon, no supervisor, no API.
//!
//! Usage (root): `container-floor <bundle-dir> <count>`
//!
//! The bundle is a `config.json` plus whatever it names (`bench/run.py` copies the one berth
//! generated for a running busybox container, with `true` as its command; see
//! docs/benchmarks.md). Each iteration builds a container of its own id, starts it, waits for
//! its exit and deletes it (cgroup and libcontainer's record). Prints one line per iteration:
//! `total create start wait delete`, in milliseconds.
//!
//! This is a bench tool, not part of berthd: it panics with a message on any failure.

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitStatus};

fn ms(a: Instant, b: Instant) -> f64 {
    (b - a).as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: container-floor <bundle-dir> <count>");
        std::process::exit(2);
    }
    let bundle = PathBuf::from(&args[1]);
    let count: usize = args[2].parse().expect("count: a number");
    let root = std::env::temp_dir().join(format!("berth-floor-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("create the libcontainer root");
    for i in 0..count {
        let id = format!("berth-floor-{}-{i}", std::process::id());
        let null = |w: bool| {
            File::options()
                .read(!w)
                .write(w)
                .open("/dev/null")
                .expect("open /dev/null")
        };
        let t0 = Instant::now();
        let mut c = ContainerBuilder::new(id.clone(), SyscallType::Linux)
            .with_root_path(&root)
            .expect("libcontainer root")
            .with_stdin(null(false))
            .with_stdout(null(true))
            .with_stderr(null(true))
            .validate_id()
            .expect("container id")
            .as_init(&bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .unwrap_or_else(|e| panic!("create {id}: {e}"));
        let t1 = Instant::now();
        c.start().unwrap_or_else(|e| panic!("start {id}: {e}"));
        let t2 = Instant::now();
        let pid = c.pid().expect("the container's pid");
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => {}
            other => panic!("{id} ended with {other:?}"),
        }
        let t3 = Instant::now();
        let _ = c.refresh_status();
        c.delete(true)
            .unwrap_or_else(|e| panic!("delete {id}: {e}"));
        let t4 = Instant::now();
        println!(
            "{:.2} {:.2} {:.2} {:.2} {:.2}",
            ms(t0, t4),
            ms(t0, t1),
            ms(t1, t2),
            ms(t2, t3),
            ms(t3, t4)
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
