//! `docker cp` through the docker CLI: HEAD, GET and PUT `/containers/{id}/archive` on
//! running, stopped and created containers, through volumes, and hostile paths (symlinks to
//! the host's files, `..` entries, a symlink swapped in a loop).

mod common;

use std::path::Path;

use common::{berthd_with_busybox, ok, stderr, stdout, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

fn cp(b: &Berthd, args: &[&str]) -> std::process::Output {
    let mut all = vec!["cp"];
    all.extend_from_slice(args);
    b.docker_out(&all)
}

fn run_bg(b: &Berthd, name: &str, extra: &[&str], script: &str) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    ok(b.docker_out(&args));
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn copy_out_of_running_and_stopped_containers() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let d = b.dir.path();
    run_bg(
        &b,
        "c1",
        &[],
        "mkdir -p /src/sub && echo one > /src/a && echo two > /src/sub/b && echo ready > /ready && sleep 1000",
    );
    common::wait_for("c1 ready", std::time::Duration::from_secs(10), || {
        b.docker_out(&["exec", "c1", "cat", "/ready"])
            .status
            .success()
    });
    // A file.
    ok(cp(&b, &["c1:/src/a", d.join("a").to_str().unwrap()]));
    assert_eq!(read(&d.join("a")), "one\n");
    // A directory, under its base name.
    ok(cp(&b, &["c1:/src", d.to_str().unwrap()]));
    assert_eq!(read(&d.join("src/sub/b")), "two\n");
    // `dir/.`: the content only.
    std::fs::create_dir(d.join("only")).unwrap();
    ok(cp(&b, &["c1:/src/.", d.join("only").to_str().unwrap()]));
    assert_eq!(read(&d.join("only/sub/b")), "two\n");
    assert!(!d.join("only/src").exists());
    // To stdout: a tar.
    let o = cp(&b, &["c1:/src/a", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut ar = tar::Archive::new(o.stdout.as_slice());
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a"]);
    // A missing path.
    let o = cp(&b, &["c1:/nope", d.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Could not find the file /nope in container c1"),
        "{}",
        stderr(&o)
    );
    // Stopped.
    ok(b.docker_out(&["kill", "c1"]));
    ok(b.docker_out(&["wait", "c1"]));
    ok(cp(&b, &["c1:/src/sub/b", d.join("b2").to_str().unwrap()]));
    assert_eq!(read(&d.join("b2")), "two\n");
    ok(cp(&b, &["c1:/src", d.join("stopped").to_str().unwrap()]));
    assert_eq!(read(&d.join("stopped/a")), "one\n");
    let o = cp(&b, &["c1:/nope", d.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("Could not find the file /nope in container c1"),
        "{}",
        stderr(&o)
    );
}
