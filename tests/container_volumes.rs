//! Volumes in containers, through the docker CLI: named volumes created on demand and shared
//! between containers, anonymous volumes from `-v /path` and the image's `VOLUME` (copy-up
//! with owners and modes, `nocopy`), `--volumes-from` with `:ro`, `--mount type=volume` with
//! labels, `rm -v` and `--rm` removing anonymous volumes, "in use" and the `volume` filter.

mod common;

use common::{berthd_with_busybox, inspect, ok, stderr, stdout, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

fn volumes(b: &Berthd) -> Vec<String> {
    let mut v: Vec<String> = ok(b.docker_out(&["volume", "ls", "-q"]))
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// An image whose `/data` (owned 1000:1000, mode 750, holding `f` 640) is a `VOLUME`.
fn image_with_volume(b: &Berthd) {
    ok(b.docker_out(&[
        "run",
        "--name",
        "seed",
        "busybox",
        "sh",
        "-c",
        "mkdir /data && echo seeded > /data/f && chown -R 1000:1000 /data && chmod 750 /data && chmod 640 /data/f",
    ]));
    let tar = b.dir.path().join("seed.tar");
    ok(b.docker_out(&["export", "-o", tar.to_str().unwrap(), "seed"]));
    ok(b.docker_out(&[
        "import",
        "--change",
        "VOLUME /data",
        tar.to_str().unwrap(),
        "img:vol",
    ]));
    ok(b.docker_out(&["rm", "seed"]));
}

#[test]
fn named_volumes_keep_data_between_containers() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "run",
        "--rm",
        "-v",
        "vol1:/data",
        "busybox",
        "sh",
        "-c",
        "echo hi > /data/x",
    ]));
    assert_eq!(
        ok(b.docker_out(&[
            "run",
            "--rm",
            "-v",
            "vol1:/data",
            "busybox",
            "cat",
            "/data/x"
        ])),
        "hi\n"
    );
    assert_eq!(volumes(&b), vec!["vol1".to_string()]);
    ok(b.docker_out(&[
        "create",
        "--name",
        "c1",
        "-v",
        "vol1:/data:ro",
        "busybox",
        "true",
    ]));
    let m = inspect(
        &b,
        "c1",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Source}} {{.Destination}} {{.Driver}} {{.RW}}{{end}}",
    );
    let want_source = b.data_root().join("volumes/vol1/_data");
    assert_eq!(
        m,
        format!("volume vol1 {} /data local false", want_source.display())
    );
    // In use by c1: refused, with dockerd's words; the `volume` filter finds c1.
    let o = b.docker_out(&["volume", "rm", "vol1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    let ps = ok(b.docker_out(&[
        "ps",
        "-a",
        "--filter",
        "volume=vol1",
        "--format",
        "{{.Names}}",
    ]));
    assert_eq!(ps.trim(), "c1");
    let ps = ok(b.docker_out(&[
        "ps",
        "-a",
        "--filter",
        "volume=/data",
        "--format",
        "{{.Names}}",
    ]));
    assert_eq!(ps.trim(), "c1");
    // Read-only really is.
    let o = b.docker_out(&["start", "-a", "c1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.docker_out(&[
        "run",
        "--rm",
        "-v",
        "vol1:/data:ro",
        "busybox",
        "touch",
        "/data/y",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    ok(b.docker_out(&["rm", "c1"]));
    ok(b.docker_out(&["volume", "rm", "vol1"]));
    assert!(volumes(&b).is_empty());
}

#[test]
fn image_volumes_are_anonymous_copied_up_and_removed_with_the_container() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    image_with_volume(&b);
    let out = ok(b.docker_out(&[
        "run",
        "--name",
        "anon",
        "img:vol",
        "sh",
        "-c",
        "stat -c '%u:%g %a' /data /data/f && cat /data/f",
    ]));
    assert_eq!(out, "1000:1000 750\n1000:1000 640\nseeded\n");
    let name = inspect(&b, "anon", "{{range .Mounts}}{{.Name}}{{end}}");
    assert_eq!(name.len(), 64, "{name}");
    assert!(name.bytes().all(|c| c.is_ascii_hexdigit()), "{name}");
    let labels = ok(b.docker_out(&["volume", "inspect", "-f", "{{json .Labels}}", &name]));
    assert!(labels.contains("com.docker.volume.anonymous"), "{labels}");
    // The copy happens once: a second run sees what the first left.
    ok(b.docker_out(&["start", "-a", "anon"]));
    ok(b.docker_out(&["rm", "-v", "anon"]));
    assert!(volumes(&b).is_empty(), "rm -v removes the anonymous volume");
    // nocopy: the volume stays empty.
    let out = ok(b.docker_out(&[
        "run",
        "--rm",
        "-v",
        "nc:/data:nocopy",
        "img:vol",
        "ls",
        "-A",
        "/data",
    ]));
    assert_eq!(out, "");
    // --rm removes anonymous volumes, not named ones.
    ok(b.docker_out(&["run", "--rm", "-v", "/anon", "img:vol", "true"]));
    assert_eq!(volumes(&b), vec!["nc".to_string()]);

    // The copy is made at create (moby's `populateVolumes`): a created, never started
    // container's volume already holds the image's data, for another container through the
    // volume's name or `--volumes-from` (the data-container pattern).
    ok(b.docker_out(&[
        "create",
        "--name",
        "dc",
        "-v",
        "dcv:/data",
        "img:vol",
        "true",
    ]));
    let out = ok(b.docker_out(&["run", "--rm", "-v", "dcv:/x", "busybox", "cat", "/x/f"]));
    assert_eq!(out, "seeded\n");
    ok(b.docker_out(&["create", "--name", "holder", "img:vol", "true"]));
    let out = ok(b.docker_out(&[
        "run",
        "--rm",
        "--volumes-from",
        "holder",
        "busybox",
        "cat",
        "/data/f",
    ]));
    assert_eq!(out, "seeded\n");
    // And only then: a volume the container emptied stays empty at its next start.
    let out = ok(b.docker_out(&[
        "run",
        "--name",
        "emptier",
        "-v",
        "ev:/data",
        "img:vol",
        "sh",
        "-c",
        "ls /data; rm -rf /data/*",
    ]));
    assert_eq!(out, "f\n");
    let out = ok(b.docker_out(&["start", "-a", "emptier"]));
    assert_eq!(out, "");
}

#[test]
fn volumes_from_and_mount_type_volume() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "create",
        "--name",
        "src",
        "-v",
        "vf:/shared",
        "busybox",
        "true",
    ]));
    let o = b.docker_out(&[
        "run",
        "--rm",
        "--volumes-from",
        "src:ro",
        "busybox",
        "touch",
        "/shared/x",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        ok(b.docker_out(&[
            "run",
            "--rm",
            "--volumes-from",
            "src",
            "busybox",
            "sh",
            "-c",
            "echo v > /shared/y && cat /shared/y",
        ])),
        "v\n"
    );
    // A missing source container is dockerd's 400, not a 404 the CLI would take for a
    // missing image and pull (the image is named after a closed port on 127.0.0.1, so that
    // even then nothing would leave this machine).
    ok(b.docker_out(&["tag", "busybox", "127.0.0.1:9/bb"]));
    let o = b.docker_out(&[
        "run",
        "--rm",
        "--volumes-from",
        "nosuch",
        "127.0.0.1:9/bb",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("No such container: nosuch")
            && !stderr(&o).contains("Unable to find image"),
        "{}",
        stderr(&o)
    );
    // Unknown enumeration values: dockerd's words.
    let o = b.docker_out(&[
        "run",
        "--rm",
        "--mount",
        "type=bogus,dst=/x",
        "busybox",
        "true",
    ]);
    assert!(
        stderr(&o).contains("invalid mount config for type \"bogus\": mount type unknown"),
        "{}",
        stderr(&o)
    );
    ok(b.docker_out(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=mv,dst=/m,volume-label=team=a",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=1048576",
        "busybox",
        "sh",
        "-c",
        "echo x > /m/f && grep ' /t ' /proc/mounts",
    ]))
    .contains("tmpfs")
    .then_some(())
    .expect("the tmpfs mount is a tmpfs");
    let labels = ok(b.docker_out(&["volume", "inspect", "-f", "{{json .Labels}}", "mv"]));
    assert!(labels.contains("\"team\":\"a\""), "{labels}");
    assert_eq!(
        stdout(&b.docker_out(&["run", "--rm", "-v", "mv:/m", "busybox", "cat", "/m/f"])),
        "x\n"
    );
}

#[test]
fn a_mounted_volume_stays_in_use_across_kill_9_of_berthd() {
    require!(ready(), NOT_READY);
    let mut b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "tv",
    ]));
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "user",
        "-v",
        "tv:/t",
        "busybox",
        "sh",
        "-c",
        "echo kept > /t/f; while true; do sleep 0.1; done",
    ]));
    let data = b.data_root().join("volumes/tv/_data");
    let mounted = || {
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .any(|l| l.split(' ').nth(1) == Some(data.to_str().unwrap()))
    };
    assert!(
        mounted(),
        "the tmpfs volume is mounted while its container runs"
    );
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit(std::time::Duration::from_secs(10));
    b.spawn_with_host(&[]);
    let o = b.docker_out(&["volume", "rm", "tv"]);
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    assert_eq!(ok(b.docker_out(&["exec", "user", "cat", "/t/f"])), "kept\n");
    ok(b.docker_out(&["rm", "-f", "user"]));
    assert!(!mounted(), "unmounted with its last user");
    ok(b.docker_out(&["volume", "rm", "tv"]));
}

#[test]
fn system_df_counts_containers_and_volumes() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "run",
        "--name",
        "w1",
        "-v",
        "dfv:/d",
        "busybox",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /d/f; head -c 50000 /dev/zero > /layer",
    ]));
    ok(b.docker_out(&["create", "--name", "w2", "busybox", "true"]));
    let summary = ok(b.docker_out(&[
        "system",
        "df",
        "--format",
        "{{.Type}}={{.TotalCount}}/{{.Active}}",
    ]));
    assert!(summary.contains("Containers=2/0"), "{summary}");
    assert!(summary.contains("Local Volumes=1/1"), "{summary}");
    let verbose = ok(b.docker_out(&["system", "df", "-v"]));
    assert!(
        verbose.contains("w1") && verbose.contains("w2"),
        "{verbose}"
    );
    assert!(verbose.contains("dfv"), "{verbose}");
}

/// A create/remove loop with volumes while berthd is killed with SIGKILL: after each restart
/// every record loads, every container's volume exists, and everything can still be removed.
#[test]
fn volumes_and_containers_survive_kill_9_during_a_create_remove_loop() {
    require!(ready(), NOT_READY);
    let mut b = berthd_with_busybox(&[]);
    for round in 0..3 {
        let host = format!("unix://{}", b.socket.display());
        let dir = b.dir.path().to_path_buf();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                let mut created = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = format!("loop{round}x{i}");
                    let vol = format!("v{round}x{i}:/d");
                    let run = |args: &[&str]| {
                        common::docker_cli(&host, &dir)
                            .args(args)
                            .output()
                            .is_ok_and(|o| o.status.success())
                    };
                    if run(&[
                        "run", "-d", "--name", &name, "-v", &vol, "-v", "/anon", "busybox",
                        "sleep", "30",
                    ]) {
                        created += 1;
                    }
                    if i % 2 == 0 {
                        run(&["rm", "-f", "-v", &name]);
                    }
                    i += 1;
                }
                created
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(700 + 300 * round));
        b.signal(nix::sys::signal::Signal::SIGKILL);
        b.wait_exit(std::time::Duration::from_secs(10));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let created = worker.join().unwrap_or(0);
        assert!(created > 0, "the loop ran containers before the kill");
        b.spawn_with_host(&[]);
        // Every container inspects, and its volumes exist.
        let ids = ok(b.docker_out(&["ps", "-aq"]));
        for id in ids.lines() {
            let names = inspect(&b, id, "{{range .Mounts}}{{.Name}} {{end}}");
            for v in names.split_whitespace() {
                ok(b.docker_out(&["volume", "inspect", v]));
            }
        }
        for v in volumes(&b) {
            ok(b.docker_out(&["volume", "inspect", &v]));
        }
    }
    // Everything can still go.
    let ids = ok(b.docker_out(&["ps", "-aq"]));
    let mut args = vec!["rm", "-f", "-v"];
    args.extend(ids.lines());
    if args.len() > 3 {
        ok(b.docker_out(&args));
    }
    ok(b.docker_out(&["volume", "prune", "-a", "-f"]));
    assert!(volumes(&b).is_empty(), "{:?}", volumes(&b));
    let left = std::fs::read_dir(b.data_root().join("volumes"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "no volume directory is left behind");
}

#[test]
fn bind_and_tmpfs_volumes_in_a_container() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("from-host"), "host data\n").unwrap();
    let device = format!("device={}", host.path().display());
    ok(b.docker_out(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &device,
        "hb",
    ]));
    assert_eq!(
        ok(b.docker_out(&[
            "run",
            "--rm",
            "-v",
            "hb:/h",
            "busybox",
            "cat",
            "/h/from-host"
        ])),
        "host data\n"
    );
    ok(b.docker_out(&[
        "run",
        "--rm",
        "-v",
        "hb:/h",
        "busybox",
        "sh",
        "-c",
        "echo back > /h/from-container",
    ]));
    assert_eq!(
        std::fs::read_to_string(host.path().join("from-container")).unwrap(),
        "back\n",
        "the bind volume is the host directory"
    );
    ok(b.docker_out(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=3m",
        "tv2",
    ]));
    let mounts = ok(b.docker_out(&[
        "run",
        "--rm",
        "-v",
        "tv2:/t",
        "busybox",
        "grep",
        " /t ",
        "/proc/mounts",
    ]));
    assert!(mounts.starts_with("tmpfs /t tmpfs "), "{mounts}");
    assert!(mounts.contains("size=3072k"), "{mounts}");
    ok(b.docker_out(&["volume", "rm", "hb", "tv2"]));
    assert!(
        host.path().join("from-host").exists(),
        "removing the volume keeps the host directory"
    );
}

/// `--mount …,volume-subpath=` (moby's `TestRunMountVolumeSubdir` table): a directory, a
/// symlink that stays inside, a file, copy-up into an empty subpath; `..` refused at create;
/// a missing path and symlinks that lead out refused at start; nothing is left mounted.
#[test]
fn volume_subpaths() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "run",
        "--rm",
        "-v",
        "sp:/volume",
        "busybox",
        "sh",
        "-c",
        "echo foo > /volume/bar.txt && mkdir /volume/bin /volume/subdir /volume/hack && \
         echo world > /volume/subdir/hello.txt && ln -s / /volume/hack/root && \
         ln -s ../subdir /volume/hack/good && ln -s root /volume/hack/bad",
    ]));
    let run = |sub: &str, target: &str, cmd: &[&str]| {
        let m = format!("type=volume,src=sp,dst={target},volume-subpath={sub}");
        let mut args = vec!["run", "--rm", "--mount", &m, "busybox"];
        args.extend_from_slice(cmd);
        b.docker_out(&args)
    };
    assert_eq!(
        ok(run("subdir", "/volume", &["ls", "/volume"])),
        "hello.txt\n"
    );
    assert_eq!(
        ok(run("hack/good", "/volume", &["ls", "/volume"])),
        "hello.txt\n"
    );
    assert_eq!(ok(run("bar.txt", "/volume", &["cat", "/volume"])), "foo\n");
    assert_eq!(
        ok(run("bin", "/bin", &["ls", "/bin/busybox"])),
        "/bin/busybox\n",
        "copy-up fills an empty subpath"
    );
    // Written through a subpath, seen in the volume.
    ok(run("subdir", "/s", &["sh", "-c", "echo new > /s/n"]));
    assert_eq!(ok(run("subdir/n", "/n", &["cat", "/n"])), "new\n");
    // Read-only.
    let m = "type=volume,src=sp,dst=/r,volume-subpath=subdir,readonly";
    let o = b.docker_out(&["run", "--rm", "--mount", m, "busybox", "touch", "/r/x"]);
    assert!(
        !o.status.success() && stderr(&o).contains("Read-only"),
        "{}",
        stderr(&o)
    );

    let o = run(
        "../../../../../../etc/passwd",
        "/volume",
        &["cat", "/volume"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("subpath must be a relative path within the volume"),
        "{}",
        stderr(&o)
    );
    let o = run("not-existing-path", "/volume", &["cat", "/volume"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot access path "), "{}", stderr(&o));
    for bad in ["hack/root", "hack/bad"] {
        let o = run(bad, "/volume", &["ls", "/volume"]);
        assert!(!o.status.success(), "{bad}");
        assert!(
            stderr(&o).contains("path concatenation escapes the base directory"),
            "{bad}: {}",
            stderr(&o)
        );
    }
    // A running container's subpath mount goes with its run.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "sp-run",
        "--mount",
        "type=volume,src=sp,dst=/s,volume-subpath=subdir",
        "busybox",
        "sleep",
        "60",
    ]));
    assert_eq!(
        ok(b.docker_out(&["exec", "sp-run", "cat", "/s/hello.txt"])),
        "world\n"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let here = b.dir.path().display().to_string();
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&here) && l.contains("/mounts/")),
        "subpath bind while running"
    );
    ok(b.docker_out(&["rm", "-f", "sp-run"]));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(&here) && l.contains("/mounts/")),
        "no subpath bind is left: {mounts}"
    );
    ok(b.docker_out(&["volume", "rm", "sp"]));
}
