//! Container security, verified from inside a container (issue #16): Docker's default seccomp
//! profile, masked and read-only system paths, the default capability set, `--privileged`,
//! `no-new-privileges`, no daemon or supervisor descriptor leaking in (CVE-2024-21626), and
//! `--userns-remap`.
//!
//! Syscalls busybox cannot make are tried by a small static C program
//! (`tests/security_probe.c`, built with `gcc -static`), baked into an image with its setuid
//! bit set.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{berthd_with_busybox, ok, stderr, stdout, Berthd};

fn ready() -> bool {
    common::is_root()
        && common::have_docker_cli()
        && common::have_busybox()
        && common::have_command("gcc")
}
const NOT_READY: &str =
    "needs root, the docker CLI, Debian's busybox-static and gcc (with a static libc)";

/// Build the probe into `dir` and an image `probe` (busybox + `/probe`, setuid root).
fn probe_image(b: &Berthd) {
    let ctx = b.dir.path().join("probe-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/security_probe.c");
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(ctx.join("probe"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "gcc: {}", stderr(&out));
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY probe /probe\nRUN chown 0:0 /probe && chmod 4755 /probe\n",
    )
    .unwrap();
    ok(b.docker_out(&["build", "-q", "-t", "probe", ctx.to_str().unwrap()]));
}

/// `name=RESULT` lines of the probe.
fn results(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn run(b: &Berthd, extra: &[&str], image: &str, cmd: &[&str]) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(extra);
    args.push(image);
    args.extend_from_slice(cmd);
    ok(b.docker_out(&args))
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim()
        .to_string()
}

/// Docker's 14 default capabilities as a mask (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
/// SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP).
const DEFAULT_CAPS: u64 = 0x0000_0000_a804_25fb;

/// What `--privileged` gets: every capability of the bounding set berthd runs with (the
/// kernel's, less what the host itself dropped).
fn caps_of_host() -> u64 {
    let st = std::fs::read_to_string("/proc/self/status").unwrap();
    hex(&status_field(&st, "CapBnd"))
}

fn hex(v: &str) -> u64 {
    u64::from_str_radix(v, 16).unwrap()
}

/// A host process for the probe to try to ptrace.
struct Sleeper(std::process::Child);
impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(
            std::process::Command::new("sleep")
                .arg("300")
                .spawn()
                .unwrap(),
        )
    }
}
impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn default_profile_blocks_dangerous_syscalls() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    probe_image(&b);
    let r = results(&run(&b, &[], "probe", &["/probe"]));
    // Docker's profile answers EPERM for what it refuses (its defaultErrnoRet).
    for name in [
        "unshare",
        "mount",
        "keyctl",
        "add_key",
        "reboot",
        "init_module",
        "clock_settime",
        "open_by_handle_at",
    ] {
        assert_eq!(
            r.get(name).map(String::as_str),
            Some("EPERM"),
            "{name}: {r:?}"
        );
    }
    // A process outside the container: invisible in its own pid namespace, and refused when
    // the host's pids are shared (no CAP_SYS_PTRACE over a process with more capabilities).
    let s = Sleeper::start();
    let pid = s.0.id().to_string();
    let r = results(&run(&b, &[], "probe", &["/probe", "ptrace", &pid]));
    assert!(
        matches!(r["ptrace"].as_str(), "ESRCH" | "EPERM"),
        "ptrace: {r:?}"
    );
    let r = results(&run(
        &b,
        &["--pid=host"],
        "probe",
        &["/probe", "ptrace", &pid],
    ));
    assert_eq!(r["ptrace"], "EPERM");

    // --privileged: every call reaches the kernel (the probe asks for what cannot change
    // the host: bad reboot magic, setting CLOCK_MONOTONIC, a NULL module, a bad handle).
    let r = results(&run(&b, &["--privileged"], "probe", &["/probe"]));
    for name in ["unshare", "mount", "keyctl", "add_key"] {
        assert_eq!(r[name], "OK", "{name}: {r:?}");
    }
    assert_eq!(r["reboot"], "EINVAL", "{r:?}");
    assert_eq!(r["clock_settime"], "EINVAL", "{r:?}");
    assert_ne!(r["init_module"], "EPERM", "{r:?}");
    assert_eq!(r["open_by_handle_at"], "EFAULT", "{r:?}");
    let r = results(&run(
        &b,
        &["--privileged", "--pid=host"],
        "probe",
        &["/probe", "ptrace", &pid],
    ));
    assert_eq!(r["ptrace"], "OK");
}

#[test]
fn system_paths_are_masked_and_read_only() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let script = "for f in /proc/kcore /proc/keys /proc/timer_list; do \
                    echo $f $(stat -c %F $f) $(cat $f 2>/dev/null | wc -c); done; \
                  echo firmware $(ls -A /sys/firmware | wc -l); \
                  echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys writable || echo sys refused; \
                  grep ' /proc/sys ' /proc/self/mountinfo | cut -d' ' -f6";
    let out = run(&b, &[], "busybox", &["sh", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    // A file this kernel does not have (e.g. /proc/kcore without CONFIG_PROC_KCORE) is absent.
    let masked = |p: &str| {
        if Path::new(p).exists() {
            format!("{p} character special file 0")
        } else {
            format!("{p} 0")
        }
    };
    assert_eq!(lines[0], masked("/proc/kcore"), "{out}");
    assert_eq!(lines[1], masked("/proc/keys"), "{out}");
    assert_eq!(lines[2], masked("/proc/timer_list"), "{out}");
    assert_eq!(lines[3], "firmware 0", "{out}");
    assert_eq!(lines[4], "sys refused", "{out}");
    assert!(lines[5].split(',').any(|o| o == "ro"), "{out}");

    // --privileged: the real files, /proc/sys writable.
    let out = run(&b, &["--privileged"], "busybox", &["sh", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    if Path::new("/proc/kcore").exists() {
        assert!(lines[0].starts_with("/proc/kcore regular"), "{out}");
    }
    assert!(lines[1].starts_with("/proc/keys regular"), "{out}");
    let timer_list: u64 = lines[2].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(timer_list > 0, "{out}");
    assert_eq!(lines[4], "sys writable", "{out}");
    assert_eq!(lines.len(), 5, "/proc/sys is no mount of its own: {out}");
}

#[test]
fn capabilities_and_no_new_privileges() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    probe_image(&b);
    let st = run(&b, &[], "busybox", &["cat", "/proc/self/status"]);
    assert_eq!(hex(&status_field(&st, "CapEff")), DEFAULT_CAPS, "{st}");
    assert_eq!(hex(&status_field(&st, "CapBnd")), DEFAULT_CAPS, "{st}");
    assert_eq!(hex(&status_field(&st, "CapPrm")), DEFAULT_CAPS, "{st}");
    assert_eq!(status_field(&st, "NoNewPrivs"), "0");
    assert_eq!(status_field(&st, "Seccomp"), "2");
    // An exec gets the same set.
    ok(b.docker_out(&["run", "-d", "--name", "capsc", "busybox", "sleep", "300"]));
    let st = ok(b.docker_out(&["exec", "capsc", "cat", "/proc/self/status"]));
    assert_eq!(hex(&status_field(&st, "CapEff")), DEFAULT_CAPS, "{st}");
    assert_eq!(status_field(&st, "Seccomp"), "2");
    ok(b.docker_out(&["rm", "-f", "capsc"]));

    // --privileged: everything the kernel has, no seccomp.
    let st = run(
        &b,
        &["--privileged"],
        "busybox",
        &["cat", "/proc/self/status"],
    );
    assert_eq!(hex(&status_field(&st, "CapEff")), caps_of_host(), "{st}");
    assert_eq!(hex(&status_field(&st, "CapBnd")), caps_of_host(), "{st}");
    assert_eq!(status_field(&st, "Seccomp"), "0");

    // A setuid-root binary run by uid 1000 gains root, unless no-new-privileges.
    let out = run(&b, &["--user", "1000"], "probe", &["/probe", "ids"]);
    assert_eq!(out.trim(), "uid=1000 euid=0");
    let nnp = ["--user", "1000", "--security-opt", "no-new-privileges"];
    let out = run(&b, &nnp, "probe", &["/probe", "ids"]);
    assert_eq!(out.trim(), "uid=1000 euid=1000");
    let st = run(&b, &nnp, "probe", &["cat", "/proc/self/status"]);
    assert_eq!(status_field(&st, "NoNewPrivs"), "1");
    let st = run(
        &b,
        &["--security-opt", "no-new-privileges:true"],
        "probe",
        &["cat", "/proc/self/status"],
    );
    assert_eq!(status_field(&st, "NoNewPrivs"), "1");
}

/// `ls -l /proc/<pid>/fd` output → fd number → link target.
fn fds(listing: &str) -> BTreeMap<u32, String> {
    listing
        .lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let n = left.rsplit(' ').next()?.parse().ok()?;
            Some((n, target.to_string()))
        })
        .collect()
}

#[test]
fn no_daemon_descriptor_leaks_in() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    // The init process (sh, PID 1) and what it sees of itself.
    let out = run(
        &b,
        &[],
        "busybox",
        &[
            "sh",
            "-c",
            "ls -l /proc/1/fd; echo cwd $(readlink /proc/1/cwd)",
        ],
    );
    let f = fds(&out);
    assert_eq!(f.keys().copied().collect::<Vec<_>>(), [0, 1, 2], "{out}");
    assert!(out.contains("cwd /\n"), "{out}");
    let out = run(
        &b,
        &["-w", "/tmp"],
        "busybox",
        &[
            "sh",
            "-c",
            "ls -l /proc/$$/fd; echo cwd $(readlink /proc/$$/cwd)",
        ],
    );
    assert_eq!(
        fds(&out).keys().copied().collect::<Vec<_>>(),
        [0, 1, 2],
        "{out}"
    );
    assert!(out.contains("cwd /tmp\n"), "{out}");
    // With a tty too.
    let o = b.docker_out(&[
        "run",
        "--rm",
        "-t",
        "busybox",
        "sh",
        "-c",
        "ls -l /proc/1/fd",
    ]);
    let out = stdout(&o).replace('\r', "");
    assert_eq!(
        fds(&out).keys().copied().collect::<Vec<_>>(),
        [0, 1, 2],
        "{out}"
    );

    // An exec, and PID 1 seen from an exec; a file the container opened itself is listed.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "fdleak",
        "busybox",
        "sh",
        "-c",
        "exec 7>/tmp/mine; exec sleep 300",
    ]));
    common::wait_for("fd 7", std::time::Duration::from_secs(10), || {
        stdout(&b.docker_out(&["exec", "fdleak", "ls", "/proc/1/fd"])).contains('7')
    });
    let out = ok(b.docker_out(&["exec", "fdleak", "ls", "-l", "/proc/1/fd"]));
    let f = fds(&out);
    assert_eq!(f.keys().copied().collect::<Vec<_>>(), [0, 1, 2, 7], "{out}");
    assert_eq!(f[&7], "/tmp/mine");
    let out = ok(b.docker_out(&[
        "exec",
        "fdleak",
        "sh",
        "-c",
        "ls -l /proc/$$/fd; echo cwd $(readlink /proc/$$/cwd)",
    ]));
    assert_eq!(
        fds(&out).keys().copied().collect::<Vec<_>>(),
        [0, 1, 2],
        "{out}"
    );
    assert!(out.contains("cwd /\n"), "{out}");
    let o = b.docker_out(&["exec", "-t", "fdleak", "sh", "-c", "ls -l /proc/$$/fd"]);
    let out = stdout(&o).replace('\r', "");
    assert_eq!(
        fds(&out).keys().copied().collect::<Vec<_>>(),
        [0, 1, 2],
        "{out}"
    );
    // No stdio target is a host path: pipes, /dev/null or a pty.
    for target in fds(&ok(b.docker_out(&[
        "exec",
        "fdleak",
        "ls",
        "-l",
        "/proc/1/fd",
    ])))
    .values()
    {
        assert!(
            target.starts_with("pipe:")
                || target.starts_with("/dev/")
                || target.starts_with("socket:")
                || target == "/tmp/mine",
            "{target}"
        );
    }

    // CVE-2024-21626: a working directory through a leaked descriptor never lands outside.
    let root = b.data_root();
    for n in 3..=12 {
        let w = format!("/proc/self/fd/{n}");
        for (what, o) in [
            (
                "run",
                b.docker_out(&[
                    "run",
                    "--rm",
                    "-w",
                    &w,
                    "busybox",
                    "sh",
                    "-c",
                    "readlink /proc/self/cwd; ls ../../.. | head -50",
                ]),
            ),
            (
                "exec",
                b.docker_out(&[
                    "exec",
                    "-w",
                    &w,
                    "fdleak",
                    "sh",
                    "-c",
                    "readlink /proc/self/cwd; ls ../../.. | head -50",
                ]),
            ),
        ] {
            if o.status.success() {
                let out = stdout(&o);
                assert!(
                    !out.contains(root.to_str().unwrap()) && !out.contains("unreachable"),
                    "{what} -w {w}: {out}"
                );
            }
        }
    }
    ok(b.docker_out(&["rm", "-f", "fdleak"]));
}

// ---------------------------------------------------------------------------------------------
// --userns-remap

/// The first range of `name` in `/etc/subuid` or `/etc/subgid`.
fn sub_range(file: &str, name: &str) -> (u32, u32) {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name).then(|| {
                (
                    f.next().unwrap().parse().unwrap(),
                    f.next().unwrap().parse().unwrap(),
                )
            })
        })
        .unwrap_or_else(|| panic!("no range for {name} in {file}: {text}"))
}

fn file_uid(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .uid()
}

/// Files named `name` anywhere under `dir` whose path contains `part`.
fn find_under(dir: &Path, part: &str, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) && p.to_string_lossy().contains(part)
            {
                out.push(p);
            }
        }
    }
    out
}

/// The host pid of a `sleep <tag>` process, if one runs.
fn sleeping(tag: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (cmd == format!("sleep\0{tag}\0").as_bytes()).then_some(pid)
    })
}

fn nix_kill(pid: i32) -> std::io::Result<()> {
    let st = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()?;
    if st.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}

/// The tests that read or write `/etc/subuid` and `/etc/subgid` (through berthd or directly)
/// take turns.
static USERNS_FILES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A berthd with `--userns-remap=<remap>` and busybox imported. The remapped root walks from
/// / to the data root (as with dockerd, whose remapped root needs traversable ancestors): the
/// test's directory may not be 0700.
fn remapped_berthd(remap: &str) -> Berthd {
    let mut b = Berthd::prepare();
    std::fs::set_permissions(
        b.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    b.spawn_with_host(&[&format!("--userns-remap={remap}")]);
    let rootfs = common::busybox_rootfs_tar(b.dir.path());
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    b
}

/// `docker cp` a host file owned by `ids` into `container`, with `-a` to `with_a` and without
/// to `plain`; the two files' `uid:gid` as the container sees them, one line each.
fn cp_owned_file(
    b: &Berthd,
    container: &str,
    with_a: &str,
    plain: &str,
    ids: (u32, u32),
) -> String {
    let src = b.dir.path().join(format!("owned-{container}"));
    std::fs::write(&src, "o").unwrap();
    std::os::unix::fs::chown(&src, Some(ids.0), Some(ids.1)).unwrap();
    let src = src.to_str().unwrap();
    ok(b.docker_out(&["cp", "-a", src, &format!("{container}:{with_a}")]));
    ok(b.docker_out(&["cp", src, &format!("{container}:{plain}")]));
    ok(b.docker_out(&["exec", container, "stat", "-c", "%u:%g", with_a, plain]))
}

/// A system user with subordinate ranges of the test's own, removed (user and lines) on drop.
struct RangedUser {
    name: &'static str,
}

impl RangedUser {
    fn create(name: &'static str, uids: &[(u64, u64)], gids: &[(u64, u64)]) -> RangedUser {
        let exists = std::process::Command::new("id")
            .arg(name)
            .output()
            .unwrap()
            .status
            .success();
        if !exists {
            let st = std::process::Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--user-group",
                    "-s",
                    "/bin/false",
                    name,
                ])
                .status()
                .unwrap();
            assert!(st.success(), "useradd {name}");
        }
        let user = RangedUser { name };
        user.set_lines("/etc/subuid", uids);
        user.set_lines("/etc/subgid", gids);
        user
    }

    /// Replace this user's lines of `file` with `ranges` (temp file and rename, as shadow's
    /// tools do).
    fn set_lines(&self, file: &str, ranges: &[(u64, u64)]) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let prefix = format!("{}:", self.name);
        let mut out: String = text
            .lines()
            .filter(|l| !l.starts_with(&prefix))
            .map(|l| format!("{l}\n"))
            .collect();
        for (start, count) in ranges {
            out.push_str(&format!("{}{start}:{count}\n", prefix));
        }
        let tmp = format!("{file}.berth-test");
        std::fs::write(&tmp, out).unwrap();
        std::fs::rename(&tmp, file).unwrap();
    }
}

impl Drop for RangedUser {
    fn drop(&mut self) {
        self.set_lines("/etc/subuid", &[]);
        self.set_lines("/etc/subgid", &[]);
        let _ = std::process::Command::new("userdel")
            .arg(self.name)
            .status();
    }
}

#[test]
fn userns_remap_maps_every_subordinate_range() {
    require!(ready(), NOT_READY);
    require!(
        common::have_command("useradd") && common::have_command("userdel"),
        "needs useradd and userdel (a user with subordinate ranges of its own)"
    );
    let _serial = USERNS_FILES.lock().unwrap_or_else(|e| e.into_inner());
    // Two uid ranges, listed out of order: container root is the lowest, and the container's
    // ids follow on into the second (moby's createIDMap). Far above any range useradd hands out.
    let _user = RangedUser::create(
        "berthranges",
        &[(3_000_000_000, 1000), (2_900_000_000, 65536)],
        &[(2_900_000_000, 65536), (3_000_000_000, 1000)],
    );
    let b = remapped_berthd("berthranges");
    ok(b.docker_out(&["run", "-d", "--name", "ranges", "busybox", "sleep", "300"]));
    let out = ok(b.docker_out(&[
        "exec",
        "ranges",
        "cat",
        "/proc/self/uid_map",
        "/proc/self/gid_map",
    ]));
    let maps: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let want = [
        ["0", "2900000000", "65536"],
        ["65536", "3000000000", "1000"],
    ];
    assert_eq!(maps[..2], want, "{out}");
    assert_eq!(maps[2..], want, "{out}");
    // An id of the second range runs as that range's host id.
    ok(b.docker_out(&["exec", "-d", "-u", "65600:65600", "ranges", "sleep", "3133"]));
    let mut found = None;
    common::wait_for(
        "the exec'd sleep",
        std::time::Duration::from_secs(10),
        || {
            found = sleeping("3133");
            found.is_some()
        },
    );
    let st = std::fs::read_to_string(format!("/proc/{}/status", found.unwrap())).unwrap();
    assert_eq!(
        status_field(&st, "Uid").split_whitespace().next(),
        Some("3000000064"),
        "{st}"
    );
    assert_eq!(
        status_field(&st, "Gid").split_whitespace().next(),
        Some("3000000064"),
        "{st}"
    );
    // `docker cp` keeps an id of the second range, with -a or without (as dockerd).
    let out = cp_owned_file(&b, "ranges", "/owned.txt", "/plain.txt", (65600, 65601));
    assert_eq!(out, "65600:65601\n65600:65601\n");
    // And `docker export` of the running container gives the container's ids back.
    let tar = b.dir.path().join("export.tar");
    ok(b.docker_out(&["export", "-o", tar.to_str().unwrap(), "ranges"]));
    let listing = std::process::Command::new("tar")
        .args([
            "-tvf",
            tar.to_str().unwrap(),
            "--numeric-owner",
            "owned.txt",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    assert!(listing.contains("65600/65601"), "{listing}");
    ok(b.docker_out(&["rm", "-f", "ranges"]));
}

#[test]
fn userns_remap_runs_root_as_an_unprivileged_host_uid() {
    require!(ready(), NOT_READY);
    require!(
        common::have_command("useradd"),
        "needs useradd (userns-remap=default creates dockremap)"
    );
    let _serial = USERNS_FILES.lock().unwrap_or_else(|e| e.into_inner());
    let b = remapped_berthd("default");
    let (uid, uid_size) = sub_range("/etc/subuid", "dockremap");
    let (gid, gid_size) = sub_range("/etc/subgid", "dockremap");
    assert!(uid > 0 && uid_size >= 65536, "{uid} {uid_size}");

    let sec = ok(b.docker_out(&["info", "--format", "{{json .SecurityOptions}}"]));
    assert!(sec.contains("name=userns"), "{sec}");

    ok(b.docker_out(&["run", "-d", "--name", "remapped", "busybox", "sleep", "300"]));
    let pid = common::inspect(&b, "remapped", "{{.State.Pid}}");
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let host_uids = status_field(&st, "Uid");
    let want = uid.to_string();
    assert_eq!(
        host_uids.split_whitespace().collect::<Vec<_>>(),
        [want.as_str(); 4],
        "{st}"
    );
    assert_eq!(
        status_field(&st, "Gid").split_whitespace().next().unwrap(),
        gid.to_string()
    );
    // Exec joins the container's user namespace: root inside, the remapped uid outside, with
    // the init's capabilities and seccomp filter.
    let init_st = st.clone();
    let out = ok(b.docker_out(&[
        "exec",
        "remapped",
        "sh",
        "-c",
        "id -u; id -g; cat /proc/self/uid_map; grep -E '^(Cap|Seccomp:|NoNewPrivs)' /proc/self/status",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert_eq!(lines[1], "0", "{out}");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["0", &uid.to_string(), &uid_size.to_string()],
        "{out}"
    );
    for field in [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "Seccomp",
        "NoNewPrivs",
    ] {
        assert_eq!(
            status_field(&out, field),
            status_field(&init_st, field),
            "{field}: {out}"
        );
    }
    assert_eq!(hex(&status_field(&out, "CapEff")), DEFAULT_CAPS, "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    // Seen from the host: the remapped uid, in the init's user namespace.
    let init_ns = std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    let host_view = |user: &[&str], tag: &str| -> (String, std::path::PathBuf) {
        let mut args = vec!["exec", "-d"];
        args.extend_from_slice(user);
        args.extend_from_slice(&["remapped", "sleep", tag]);
        ok(b.docker_out(&args));
        let mut found = None;
        common::wait_for(
            "the exec'd sleep",
            std::time::Duration::from_secs(10),
            || {
                found = sleeping(tag);
                found.is_some()
            },
        );
        let p = found.unwrap();
        let st = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap();
        let ns = std::fs::read_link(format!("/proc/{p}/ns/user")).unwrap();
        let _ = nix_kill(p);
        (status_field(&st, "Uid"), ns)
    };
    let (uids, ns) = host_view(&[], "3131");
    assert_eq!(
        uids.split_whitespace().collect::<Vec<_>>(),
        [uid.to_string().as_str(); 4]
    );
    assert_eq!(ns, init_ns);
    // --user: the given ids inside the namespace, start+1000 outside, no capabilities.
    let out = ok(b.docker_out(&[
        "exec",
        "--user",
        "1000:1000",
        "remapped",
        "sh",
        "-c",
        "id -u; id -g; grep -E '^(CapEff|Seccomp):' /proc/self/status",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["1000", "1000"], "{out}");
    assert_eq!(hex(&status_field(&out, "CapEff")), 0, "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    let (uids, ns) = host_view(&["--user", "1000"], "3132");
    let want_user = (uid + 1000).to_string();
    assert_eq!(
        uids.split_whitespace().collect::<Vec<_>>(),
        [want_user.as_str(); 4]
    );
    assert_eq!(ns, init_ns);
    // A terminal belongs to container root, as without remapping.
    let out = ok(b.docker_out(&["exec", "-t", "remapped", "sh", "-c", "stat -c %u:%g $(tty)"]));
    assert_eq!(out.trim(), "0:5", "{out}");
    // A failing command keeps Docker's exit codes.
    let o = b.docker_out(&["exec", "remapped", "nosuchcmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    // --privileged: every capability, inside the namespace only.
    let out = ok(b.docker_out(&[
        "exec",
        "--privileged",
        "remapped",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]));
    assert_eq!(hex(&status_field(&out, "CapEff")), caps_of_host(), "{out}");
    // Health checks run through exec.
    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "remaphealth",
        "--health-cmd",
        "id -u",
        "--health-interval",
        "1s",
        "busybox",
        "sleep",
        "300",
    ]));
    common::wait_for("healthy", std::time::Duration::from_secs(30), || {
        common::inspect(&b, "remaphealth", "{{.State.Health.Status}}") == "healthy"
    });
    let log = common::inspect(
        &b,
        "remaphealth",
        "{{(index .State.Health.Log 0).ExitCode}} {{(index .State.Health.Log 0).Output}}",
    );
    assert_eq!(log, "0 0", "{log}");
    ok(b.docker_out(&["rm", "-f", "remaphealth"]));
    let maps = run(
        &b,
        &[],
        "busybox",
        &["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map"],
    );
    let maps: Vec<&str> = maps.split_whitespace().collect();
    assert_eq!(
        maps,
        [
            "0",
            &uid.to_string(),
            &uid_size.to_string(),
            "0",
            &gid.to_string(),
            &gid_size.to_string()
        ]
    );
    // Root inside: the image's files are root's, and root can write them.
    let out = ok(b.docker_out(&["run", "--name", "writer", "busybox",
        "sh", "-c",
        "id -u; stat -c %u:%g /bin/busybox /etc; echo new > /etc/remapped-file && cat /etc/remapped-file; echo more >> /etc/passwd && echo appended",
    ]));
    assert_eq!(out, "0\n0:0\n0:0\nnew\nappended\n");
    // On disk: the container's writes carry the container's ids (0), the image's layers were
    // neither copied nor chowned.
    let data = b.data_root();
    let written = find_under(&data, "/layer/diff/", "remapped-file");
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(file_uid(&written[0]), 0);
    let copied_up = find_under(&data, "/layer/diff/etc/", "passwd");
    assert_eq!(copied_up.len(), 1, "{copied_up:?}");
    assert_eq!(file_uid(&copied_up[0]), 0);
    let layers: Vec<_> = find_under(&data, "", "busybox")
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/merged/"))
        .collect();
    assert!(!layers.is_empty());
    for p in layers {
        assert_eq!(file_uid(&p), 0, "{}", p.display());
    }
    assert!(!data.join(format!("{uid}.{gid}")).exists());
    // The host sees a running rootfs through the remapping.
    let merged = find_under(&data, "/merged/bin", "busybox");
    assert_eq!(merged.len(), 1, "{merged:?}");
    assert_eq!(file_uid(&merged[0]), uid);
    // docker export gives the container's ids, running (that remapped view) or not.
    for (name, file) in [("remapped", "bin/busybox"), ("writer", "etc/remapped-file")] {
        let o = b.docker_out(&["export", name]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut owners = std::collections::HashMap::new();
        for e in tar::Archive::new(&o.stdout[..]).entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            owners.insert(
                e.path().unwrap().display().to_string(),
                (h.uid().unwrap(), h.gid().unwrap()),
            );
        }
        for p in [file, "etc", "bin/sh"] {
            assert_eq!(owners.get(p), Some(&(0, 0)), "{name}: {p}: {owners:?}");
        }
        assert!(
            owners.values().all(|(u, _)| *u < 65536),
            "{name}: {owners:?}"
        );
    }
    // docker cp into the running remapped container keeps the archive's ids, with -a or
    // without (as dockerd; the host sees them shifted).
    let out = cp_owned_file(
        &b,
        "remapped",
        "/tmp/owned-a",
        "/tmp/owned-plain",
        (1000, 1001),
    );
    assert_eq!(out, "1000:1001\n1000:1001\n");
    let on_host = find_under(&data, "/merged/tmp", "owned-a");
    assert_eq!(on_host.len(), 1, "{on_host:?}");
    assert_eq!(file_uid(&on_host[0]), uid + 1000);

    // Root in the container is nobody special on the host: a root-only host file bound in
    // cannot be read, and what it writes to a bound host directory is owned by the remapped uid.
    let dir = b.dir.path().join("bind");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("secret"), "s").unwrap();
    std::fs::set_permissions(
        dir.join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let bind = format!("{}:/b", dir.display());
    let o = b.docker_out(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "cat /b/secret; echo w > /b/written",
    ]);
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    assert_eq!(file_uid(&dir.join("written")), uid);

    // Named volumes: written by one container, read by the next.
    ok(b.docker_out(&[
        "run",
        "--rm",
        "-v",
        "remapvol:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]));
    let out = ok(b.docker_out(&[
        "run",
        "--rm",
        "-v",
        "remapvol:/data",
        "busybox",
        "sh",
        "-c",
        "cat /data/f; stat -c %u /data/f",
    ]));
    assert_eq!(out, "kept\n0\n");

    // docker cp in and out, and logs.
    let src = b.dir.path().join("in.txt");
    std::fs::write(&src, "copied in\n").unwrap();
    ok(b.docker_out(&["cp", src.to_str().unwrap(), "remapped:/tmp/in.txt"]));
    let dst = b.dir.path().join("out.txt");
    ok(b.docker_out(&["cp", "remapped:/tmp/in.txt", dst.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), "copied in\n");
    // Owned by container root, inside and in the archive.
    let o = b.docker_out(&["cp", "remapped:/tmp/in.txt", "-"]);
    let mut ar = tar::Archive::new(o.stdout.as_slice());
    let e = ar.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (e.header().uid().unwrap(), e.header().gid().unwrap()),
        (0, 0)
    );
    let in_diff = find_under(&data, "/layer/diff/tmp", "in.txt");
    assert_eq!(in_diff.len(), 1, "{in_diff:?}");
    assert_eq!(file_uid(&in_diff[0]), 0);
    // Out of a stopped remapped container.
    ok(b.docker_out(&["cp", "writer:/etc/remapped-file", dst.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&dst).unwrap(), "new\n");
    ok(b.docker_out(&[
        "run",
        "--name",
        "remaplogs",
        "busybox",
        "sh",
        "-c",
        "echo to-logs; id -u",
    ]));
    assert_eq!(ok(b.docker_out(&["logs", "remaplogs"])), "to-logs\n0\n");

    // --userns=host opts out; privileged needs it.
    let map = run(
        &b,
        &["--userns=host"],
        "busybox",
        &["cat", "/proc/self/uid_map"],
    );
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
    let o = b.docker_out(&["run", "--rm", "--privileged", "busybox", "true"]);
    assert!(
        stderr(&o).contains("privileged mode is incompatible with user namespaces"),
        "{}",
        stderr(&o)
    );
    let map = run(
        &b,
        &["--userns=host", "--privileged"],
        "busybox",
        &["cat", "/proc/self/uid_map"],
    );
    assert!(map.contains("4294967295"), "{map}");
    ok(b.docker_out(&["rm", "-f", "remapped", "remaplogs", "writer"]));
}
