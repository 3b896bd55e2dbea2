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
        "mkdir -p /src/sub && echo one > /src/a && ln /src/a /src/hard && echo two > /src/sub/b && echo ready > /ready && sleep 1000",
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
    // Hard links stay hard links, to the first name archived.
    let o = cp(&b, &["c1:/src", "-"]);
    let mut ar = tar::Archive::new(o.stdout.as_slice());
    let mut kinds = std::collections::BTreeMap::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let link = e.link_name().unwrap().map(|l| l.display().to_string());
        kinds.insert(
            e.path().unwrap().display().to_string(),
            (e.header().entry_type(), link),
        );
    }
    assert_eq!(kinds["src/a"].0, tar::EntryType::Regular, "{kinds:?}");
    assert_eq!(
        kinds["src/hard"],
        (tar::EntryType::Link, Some("src/a".to_string()))
    );
    ok(cp(&b, &["c1:/src", d.join("linked").to_str().unwrap()]));
    assert_eq!(read(&d.join("linked/hard")), "one\n");
    // A missing path.
    let o = cp(&b, &["c1:/nope", d.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Could not find the file /nope in container c1"),
        "{}",
        stderr(&o)
    );
    // A trailing `/` is the directory too; `/` is everything.
    ok(cp(&b, &["c1:/src/", d.join("slash").to_str().unwrap()]));
    assert_eq!(read(&d.join("slash/sub/b")), "two\n");
    ok(cp(&b, &["c1:/", d.join("all").to_str().unwrap()]));
    assert_eq!(read(&d.join("all/src/sub/b")), "two\n");
    // The container's /proc and /sys are left empty (as moby's view of the rootfs).
    assert_eq!(std::fs::read_dir(d.join("all/proc")).unwrap().count(), 0);
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

#[test]
fn network_files_of_a_created_container() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    // The test image has no /etc/hosts or /etc/resolv.conf: dockerd's init layer gives every
    // container the three files from create on (dockerode's archive test reads one).
    ok(b.docker_out(&["create", "--name", "cr", "-h", "crhost", "busybox", "true"]));
    for (path, want) in [
        ("/etc/hostname", "crhost\n"),
        ("/etc/hosts", "localhost"),
        ("/etc/resolv.conf", "nameserver"),
    ] {
        let o = cp(&b, &[&format!("cr:{path}"), "-"]);
        assert!(o.status.success(), "{path}: {}", stderr(&o));
        let mut ar = tar::Archive::new(o.stdout.as_slice());
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut e, &mut text).unwrap();
        assert!(text.contains(want), "{path}: {text:?}");
    }
    // Not changes of the container's (dockerd's init layer is not in its diff either).
    assert_eq!(stdout(&b.docker_out(&["diff", "cr"])), "");
    ok(b.docker_out(&["start", "-a", "cr"]));
    assert_eq!(stdout(&b.docker_out(&["diff", "cr"])), "");
}

#[test]
fn copy_into_running_created_and_volume() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let d = b.dir.path();
    std::fs::write(d.join("f"), "hello\n").unwrap();
    std::fs::create_dir_all(d.join("tree/sub")).unwrap();
    std::fs::write(d.join("tree/sub/x"), "x\n").unwrap();
    nix::unistd::chown(&d.join("f"), Some(1234.into()), Some(5678.into())).unwrap();
    let f = d.join("f");
    let f = f.to_str().unwrap();

    run_bg(&b, "rr", &["-v", "vol:/data"], "sleep 1000");
    ok(cp(&b, &[f, "rr:/tmp/"]));
    ok(cp(&b, &[d.join("tree").to_str().unwrap(), "rr:/tmp/"]));
    assert_eq!(
        ok(b.docker_out(&["exec", "rr", "cat", "/tmp/f", "/tmp/tree/sub/x"])),
        "hello\nx\n"
    );
    // As dockerd does (whatever its docs say): the archive's owner, with or without -a when
    // the container has no configured user; with -a and `--user`, that user (a uid without a
    // passwd entry gets gid 0).
    assert_eq!(
        ok(b.docker_out(&["exec", "rr", "stat", "-c", "%u:%g", "/tmp/f"])).trim(),
        "1234:5678"
    );
    ok(cp(&b, &["-a", f, "rr:/tmp/g"]));
    assert_eq!(
        ok(b.docker_out(&["exec", "rr", "stat", "-c", "%u:%g", "/tmp/g"])).trim(),
        "1234:5678"
    );
    run_bg(&b, "ru", &["--user", "4242"], "sleep 1000");
    ok(cp(&b, &[f, "ru:/tmp/f"]));
    ok(cp(&b, &["-a", f, "ru:/tmp/g"]));
    assert_eq!(
        ok(b.docker_out(&["exec", "ru", "stat", "-c", "%u:%g", "/tmp/f", "/tmp/g"])),
        "1234:5678\n4242:0\n"
    );
    ok(b.docker_out(&["rm", "-f", "ru"]));
    // Through a named volume, seen by another container.
    ok(cp(&b, &[f, "rr:/data/"]));
    let o = b.docker_out(&["run", "--rm", "-v", "vol:/v", "busybox", "cat", "/v/f"]);
    assert_eq!(ok(o), "hello\n");
    // Into a non-directory.
    let o = cp(&b, &[d.join("tree").to_str().unwrap(), "rr:/tmp/f"]);
    assert!(!o.status.success());
    let o = cp(&b, &[f, "rr:/tmp/f/"]);
    assert!(!o.status.success(), "{}", stdout(&o));

    // Into a created, never started container; then run it.
    ok(b.docker_out(&[
        "create",
        "--name",
        "cr",
        "busybox",
        "cat",
        "/tmp/f",
        "/etc/added",
    ]));
    ok(cp(&b, &[f, "cr:/tmp/f"]));
    ok(cp(&b, &[f, "cr:/etc/added"]));
    ok(b.docker_out(&["start", "cr"]));
    ok(b.docker_out(&["wait", "cr"]));
    assert_eq!(ok(b.docker_out(&["logs", "cr"])), "hello\nhello\n");

    // Into a stopped container with a volume: the volume's data, not the layer.
    ok(b.docker_out(&["kill", "rr"]));
    ok(b.docker_out(&["wait", "rr"]));
    ok(cp(&b, &[d.join("tree").to_str().unwrap(), "rr:/data/"]));
    let o = b.docker_out(&[
        "run",
        "--rm",
        "-v",
        "vol:/v",
        "busybox",
        "cat",
        "/v/tree/sub/x",
    ]);
    assert_eq!(ok(o), "x\n");
    ok(cp(&b, &["rr:/data/f", d.join("back").to_str().unwrap()]));
    assert_eq!(read(&d.join("back")), "hello\n");

    // Read-only rootfs and read-only volumes.
    ok(b.docker_out(&[
        "create",
        "--name",
        "ro",
        "--read-only",
        "-v",
        "vol:/data:ro",
        "-v",
        "w:/w",
        "busybox",
        "true",
    ]));
    let o = cp(&b, &[f, "ro:/tmp/"]);
    assert!(
        stderr(&o).contains("container rootfs is marked read-only"),
        "{}",
        stderr(&o)
    );
    let o = cp(&b, &[f, "ro:/data/"]);
    assert!(
        stderr(&o).contains("mounted volume is marked read-only"),
        "{}",
        stderr(&o)
    );
}

/// `ln -s /etc /escape`, `ln -s ../../../../etc/shadow /leak`: always the container's files.
#[test]
fn symlinks_resolve_inside_the_container() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let d = b.dir.path();
    run_bg(
        &b,
        "hs",
        &["--hostname", "inside-host"],
        "mkdir -p /etc && echo inside-shadow > /etc/shadow && ln -s /etc /escape && ln -s ../../../../etc/shadow /leak && echo ready > /ready && sleep 1000",
    );
    common::wait_for("h ready", std::time::Duration::from_secs(10), || {
        b.docker_out(&["exec", "hs", "cat", "/ready"])
            .status
            .success()
    });
    for state in ["running", "stopped"] {
        let out = d.join(format!("hostname-{state}"));
        ok(cp(&b, &["hs:/escape/hostname", out.to_str().unwrap()]));
        assert_eq!(read(&out), "inside-host\n", "{state}");
        // The symlink itself, not followed.
        let o = cp(&b, &["hs:/leak", "-"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut ar = tar::Archive::new(o.stdout.as_slice());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
        }
        // Followed with -L: the container's shadow.
        let out = d.join(format!("shadow-{state}"));
        ok(cp(&b, &["-L", "hs:/leak", out.to_str().unwrap()]));
        assert_eq!(read(&out), "inside-shadow\n", "{state}");
        let out = d.join(format!("dotdot-{state}"));
        ok(cp(
            &b,
            &["hs:/../../../../etc/shadow", out.to_str().unwrap()],
        ));
        assert_eq!(read(&out), "inside-shadow\n", "{state}");
        if state == "running" {
            ok(b.docker_out(&["kill", "hs"]));
            ok(b.docker_out(&["wait", "hs"]));
        }
    }
}

/// (name, type, link target, content) of a raw tar entry.
type RawEntry<'a> = (&'a [u8], tar::EntryType, Option<&'a [u8]>, &'a [u8]);

fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        let slot = &mut h.as_old_mut().name;
        slot[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
        }
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        t.append(&h, *data).unwrap();
    }
    t.into_inner().unwrap()
}

fn cp_in(b: &Berthd, dest: &str, tar: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut cmd = b.docker();
    cmd.args(["cp", "-", dest]);
    cmd.stdin(std::process::Stdio::piped());
    cmd.stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    child.wait_with_output().unwrap()
}

/// A tar with `..` entries or an absolute symlink followed by a file through it writes nothing
/// outside the container.
#[test]
fn hostile_archives_stay_inside() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let d = b.dir.path();
    let canary_dir = d.join("canary");
    std::fs::create_dir(&canary_dir).unwrap();
    let canary = canary_dir.to_str().unwrap().as_bytes();
    let through_link = raw_tar(&[
        (b"abs", tar::EntryType::Symlink, Some(canary), b""),
        (b"abs/canary-abs", tar::EntryType::Regular, None, b"evil"),
    ]);
    let dotdot = raw_tar(&[(
        b"../../../../../../../../tmp/berth-cp-evil",
        tar::EntryType::Regular,
        None,
        b"evil",
    )]);
    run_bg(&b, "tt", &[], "sleep 1000");
    ok(b.docker_out(&["create", "--name", "t2", "busybox", "true"]));
    for c in ["tt", "t2"] {
        let dest = format!("{c}:/tmp");
        let o = cp_in(&b, &dest, &through_link);
        assert!(
            !canary_dir.join("canary-abs").exists(),
            "{c}: {}",
            stderr(&o)
        );
        let o = cp_in(&b, &dest, &dotdot);
        assert!(!o.status.success(), "{c}");
        assert!(stderr(&o).contains("path escapes"), "{c}: {}", stderr(&o));
        assert!(!Path::new("/tmp/berth-cp-evil").exists(), "{c}");
    }
}

/// A symlink swapped between `/` and `/tmp` in a loop while `docker cp` reads through it.
#[test]
fn symlink_exchange_race_stays_inside() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let d = b.dir.path();
    run_bg(
        &b,
        "race",
        &["--hostname", "race-inside"],
        "mkdir -p /tmp/etc && echo tmp-side > /tmp/etc/hostname; while true; do ln -sfn / /swap; ln -sfn /tmp /swap; done",
    );
    let out = d.join("got");
    let mut seen = 0;
    for _ in 0..40 {
        let _ = std::fs::remove_file(&out);
        let o = cp(&b, &["race:/swap/etc/hostname", out.to_str().unwrap()]);
        if !o.status.success() {
            continue; // between unlink and symlink
        }
        let got = read(&out);
        assert!(got == "race-inside\n" || got == "tmp-side\n", "{got:?}");
        seen += 1;
    }
    assert!(seen > 0);
    // Writing through the swapped link lands in the container, never on the host.
    let canary = d.join("berth-race-canary");
    std::fs::write(&canary, "x").unwrap();
    for _ in 0..20 {
        let _ = cp(&b, &[canary.to_str().unwrap(), "race:/swap/"]);
        assert!(!Path::new("/berth-race-canary").exists());
        assert!(!Path::new("/tmp/berth-race-canary").exists());
    }
    let o = b.docker_out(&[
        "exec",
        "race",
        "sh",
        "-c",
        "ls /berth-race-canary /tmp/berth-race-canary 2>/dev/null",
    ]);
    assert!(
        !stdout(&o).trim().is_empty(),
        "no copy landed in the container"
    );
}

/// The API directly: the stat header, an empty path, a bad tar, a file through a directory,
/// and `noOverwriteDirNonDir`.
#[test]
fn archive_api_statuses_and_stat_header() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&["create", "--name", "api", "busybox", "true"]));
    let mut c = common::Conn::unix(&b.socket);
    let r = c.request("HEAD", "/containers/api/archive?path=/etc", None);
    assert_eq!(r.status, 200);
    let header = r
        .header("X-Docker-Container-Path-Stat")
        .expect("stat header");
    use base64::Engine;
    let json = base64::engine::general_purpose::STANDARD
        .decode(header)
        .unwrap();
    let stat: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(stat["name"], "etc");
    let mode = stat["mode"].as_u64().unwrap();
    assert_ne!(mode & (1 << 31), 0, "{stat}");
    assert!(stat["mtime"].as_str().unwrap().contains('T'), "{stat}");
    assert_eq!(stat["linkTarget"], "");

    let r = c.request("HEAD", "/containers/api/archive?path=/nope", None);
    assert_eq!(r.status, 404);
    let r = c.request("GET", "/containers/api/archive?path=/nope", None);
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["message"],
        "Could not find the file /nope in container api"
    );
    let r = c.request("GET", "/containers/api/archive?path=", None);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = c.request("GET", "/containers/nobody/archive?path=/", None);
    assert_eq!(r.status, 404);

    // A file through a non-directory.
    let r = c.request("GET", "/containers/api/archive?path=/etc/passwd/", None);
    assert!(
        r.status == 400 || r.status == 404,
        "{} {}",
        r.status,
        r.text()
    );
    // PUT into a file, a missing directory, a bad tar.
    let tar = raw_tar(&[(b"x", tar::EntryType::Regular, None, b"x")]);
    let r = c.request(
        "PUT",
        "/containers/api/archive?path=/etc/passwd",
        Some(&tar),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["message"], "extraction point is not a directory");
    let r = c.request("PUT", "/containers/api/archive?path=/missing", Some(&tar));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = c.request(
        "PUT",
        "/containers/api/archive?path=/tmp",
        Some(&[7u8; 1024]),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // A directory is not replaced by a file with noOverwriteDirNonDir.
    let dir = raw_tar(&[(b"d/", tar::EntryType::Directory, None, b"")]);
    let r = c.request("PUT", "/containers/api/archive?path=/tmp", Some(&dir));
    assert_eq!(r.status, 200, "{}", r.text());
    let file = raw_tar(&[(b"d", tar::EntryType::Regular, None, b"x")]);
    let r = c.request(
        "PUT",
        "/containers/api/archive?path=/tmp&noOverwriteDirNonDir=1",
        Some(&file),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("cannot overwrite directory"),
        "{}",
        r.text()
    );
    let r = c.request("PUT", "/containers/api/archive?path=/tmp", Some(&file));
    assert_eq!(r.status, 200, "{}", r.text());
}
