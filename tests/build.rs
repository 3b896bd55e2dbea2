//! The classic builder through the docker CLI (`DOCKER_BUILDKIT=0`) and docker-py: every
//! instruction, the cache, multi-stage builds, build args, `.dockerignore`, failures, `-q`,
//! Dockerfiles from stdin and outside the context.

mod common;

use std::path::Path;
use std::process::Output;

use common::{berthd_with_busybox, inspect, ok, stderr, stdout, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

/// `docker build` with the classic builder.
fn build(b: &Berthd, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = b.docker();
    cmd.env("DOCKER_BUILDKIT", "0")
        .arg("build")
        .args(args)
        .arg(dir);
    cmd.output().unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn built(o: &Output) -> String {
    assert!(
        o.status.success(),
        "build failed:\n{}{}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

#[test]
fn every_instruction_and_the_cache() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let dir = b.dir.path().join("ctx");
    write(&dir, "hello.txt", "hello from the context\n");
    write(&dir, "sub/a.txt", "a\n");
    write(&dir, "sub/b.txt", "b\n");
    write(
        &dir,
        "Dockerfile",
        r#"ARG BASE=busybox
FROM ${BASE} AS base
LABEL org.example.tier="web" other=x
ENV GREETING=hi \
    TARGET=/app
ARG VERSION=1.0
ARG FROM_CLI
WORKDIR $TARGET
COPY hello.txt .
COPY sub/ ./sub/
RUN echo "$GREETING $VERSION $FROM_CLI" > built.txt && echo to-stderr >&2
EXPOSE 8080 53/udp
VOLUME ["/data"]
USER 1000:1000
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered > /tmp/onbuild
MAINTAINER someone@example.com
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/built.txt"]
"#,
    );
    let o = build(
        &b,
        &dir,
        &[
            "-t",
            "built:1",
            "--build-arg",
            "FROM_CLI=cli",
            "--build-arg",
            "UNUSED=1",
        ],
    );
    let out = built(&o);
    assert!(out.contains("Step 1/20 : ARG BASE=busybox"), "{out}");
    assert!(out.contains("Step 2/20 : FROM ${BASE} AS base"), "{out}");
    assert!(out.contains(" ---> Running in "), "{out}");
    assert!(out.contains("to-stderr"), "{out}");
    assert!(
        out.contains(" ---> Removed intermediate container "),
        "{out}"
    );
    assert!(
        out.contains("[Warning] One or more build-args [UNUSED] were not consumed"),
        "{out}"
    );
    assert!(out.contains("Successfully tagged built:1"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("Successfully built "))
        .unwrap()
        .to_string();
    assert_eq!(common::image_id(&b, "built:1")[7..19], id);

    let cfg = |f: &str| inspect(&b, "built:1", f);
    assert_eq!(
        cfg("{{json .Config.Labels}}"),
        r#"{"org.example.tier":"web","other":"x"}"#
    );
    let env = cfg("{{json .Config.Env}}");
    assert!(
        env.contains(r#""GREETING=hi""#) && env.contains(r#""TARGET=/app""#),
        "{env}"
    );
    assert!(
        !env.contains("VERSION"),
        "build args stay out of the image: {env}"
    );
    assert_eq!(cfg("{{.Config.WorkingDir}}"), "/app");
    assert_eq!(cfg("{{.Config.User}}"), "1000:1000");
    assert_eq!(cfg("{{.Config.StopSignal}}"), "SIGUSR1");
    assert_eq!(
        cfg("{{json .Config.ExposedPorts}}"),
        r#"{"53/udp":{},"8080/tcp":{}}"#
    );
    assert_eq!(cfg("{{json .Config.Volumes}}"), r#"{"/data":{}}"#);
    assert_eq!(
        cfg("{{json .Config.Healthcheck}}"),
        r#"{"Test":["CMD","true"],"Interval":5000000000,"Retries":2}"#
    );
    assert_eq!(cfg("{{json .Config.Shell}}"), r#"["/bin/sh","-ec"]"#);
    assert_eq!(cfg("{{json .Config.Entrypoint}}"), r#"["/bin/sh","-c"]"#);
    assert_eq!(cfg("{{json .Config.Cmd}}"), r#"["cat /app/built.txt"]"#);
    assert_eq!(
        cfg("{{json .Config.OnBuild}}"),
        r#"["RUN echo triggered > /tmp/onbuild"]"#
    );
    assert_eq!(cfg("{{.Author}}"), "someone@example.com");

    // The image runs: the RUN saw the ENV, the ARG default and the CLI's build arg.
    let run = ok(b.docker_out(&["run", "--rm", "--user", "0", "built:1"]));
    assert_eq!(run, "hi 1.0 cli\n");
    let files = ok(b.docker_out(&[
        "run",
        "--rm",
        "--user",
        "0",
        "--entrypoint",
        "cat",
        "built:1",
        "/app/hello.txt",
        "/app/sub/a.txt",
        "/app/sub/b.txt",
    ]));
    assert_eq!(files, "hello from the context\na\nb\n");
    // A container of the image gets its health check.
    ok(b.docker_out(&["create", "--name", "hc", "built:1"]));
    assert_eq!(
        inspect(&b, "hc", "{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","true"]"#
    );

    // History: one entry per step, the metadata ones empty, with dockerd's `#(nop)` form.
    let history = ok(b.docker_out(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}|{{.Size}}",
        "built:1",
    ]));
    assert!(
        history
            .lines()
            .any(|l| l.starts_with("/bin/sh -c #(nop)  ENV GREETING=hi TARGET=/app|0B")),
        "{history}"
    );
    assert!(
        history
            .lines()
            .any(|l| l.starts_with("|2 FROM_CLI=cli VERSION=1.0 /bin/sh -c echo")),
        "{history}"
    );
    // WORKDIR, COPY and ADD keep moby's one-argument comment (one space): it is their cache
    // key, which images dockerd built must match.
    for want in [
        "/bin/sh -c #(nop) WORKDIR /app|",
        "/bin/sh -c #(nop) COPY file:",
        "/bin/sh -c #(nop) COPY dir:",
    ] {
        assert!(
            history.lines().any(|l| l.starts_with(want)),
            "no {want} in {history}"
        );
    }
    let ids = ok(b.docker_out(&["history", "-q", "built:1"]));
    assert!(!ids.lines().next().unwrap().contains("missing"), "{ids}");

    // The same build again: every step from the cache, the same image.
    let again = built(&build(
        &b,
        &dir,
        &[
            "-t",
            "built:1",
            "--build-arg",
            "FROM_CLI=cli",
            "--build-arg",
            "UNUSED=1",
        ],
    ));
    let steps = again.matches("Step ").count();
    let cached = again.matches(" ---> Using cache").count();
    assert_eq!(steps - 2, cached, "{again}");
    assert!(
        again.contains(&format!("Successfully built {id}")),
        "{again}"
    );

    // A changed file busts the cache from its COPY on.
    write(&dir, "sub/b.txt", "b changed\n");
    let changed = built(&build(
        &b,
        &dir,
        &["-t", "built:2", "--build-arg", "FROM_CLI=cli"],
    ));
    let copy_sub = changed.find("COPY sub/ ./sub/").unwrap();
    assert!(!changed[copy_sub..].contains("Using cache"), "{changed}");
    assert!(changed[..copy_sub].contains("Using cache"), "{changed}");

    // ONBUILD triggers run in a build FROM the image.
    let child = b.dir.path().join("child");
    write(
        &child,
        "Dockerfile",
        "FROM built:1\nUSER 0\nRUN cat /tmp/onbuild\n",
    );
    let out = built(&build(&b, &child, &["-t", "child:1"]));
    assert!(out.contains("# Executing 1 build trigger"), "{out}");
    assert!(out.contains("triggered"), "{out}");
    assert_eq!(inspect(&b, "child:1", "{{json .Config.OnBuild}}"), "null");
}

#[test]
fn multi_stage_target_failures_quiet_and_tags() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let dir = b.dir.path().join("ms");
    write(
        &dir,
        "Dockerfile",
        "FROM busybox AS builder\nRUN mkdir -p /out && echo artifact > /out/thing\n\
         FROM busybox AS final\nCOPY --from=builder /out/thing /thing\nCMD [\"cat\", \"/thing\"]\n\
         FROM busybox AS never\nRUN exit 9\n",
    );
    let out = built(&build(
        &b,
        &dir,
        &["--target", "final", "-t", "a:1", "-t", "b:1"],
    ));
    assert!(out.contains("Successfully tagged a:1") && out.contains("Successfully tagged b:1"));
    assert!(!out.contains("exit 9"), "{out}");
    assert_eq!(ok(b.docker_out(&["run", "--rm", "a:1"])), "artifact\n");
    assert_eq!(common::image_id(&b, "a:1"), common::image_id(&b, "b:1"));

    // An unknown target.
    let o = build(&b, &dir, &["--target", "nope"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("target stage \"nope\" could not be found"),
        "{}",
        stderr(&o)
    );

    // A failing RUN: dockerd's message with the exit code.
    let o = build(&b, &dir, &[]);
    assert!(!o.status.success());
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("The command '/bin/sh -c exit 9' returned a non-zero code: 9"),
        "{text}"
    );
    // The failed step's container is gone (rm) only with forcerm; without it, it stays.
    let left = ok(b.docker_out(&["ps", "-aq", "--filter", "status=exited"]));
    assert_eq!(left.lines().count(), 1, "{left}");

    // -q: only the ID.
    let q = built(&build(&b, &dir, &["-q", "--target", "final"]));
    assert_eq!(q.trim(), common::image_id(&b, "a:1"), "{q}");

    // EXPOSE as dockerd parses it: a range is one port each, a protocol is checked.
    let ex = b.dir.path().join("ex");
    write(&ex, "Dockerfile", "FROM busybox\nEXPOSE 8000-8002 53/UDP\n");
    built(&build(&b, &ex, &["-t", "ex:1"]));
    assert_eq!(
        ok(b.docker_out(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.ExposedPorts}}",
            "ex:1"
        ]))
        .trim(),
        r#"{"53/udp":{},"8000/tcp":{},"8001/tcp":{},"8002/tcp":{}}"#
    );
    write(&ex, "Dockerfile", "FROM busybox\nEXPOSE 80/tcp 90/bogus\n");
    let o = build(&b, &ex, &[]);
    assert!(!o.status.success());
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(text.contains("Invalid proto: bogus"), "{text}");
}

/// Owners as dockerd's classic builder leaves them: COPY from the context is root's unless
/// `--chown`, `COPY --from` keeps the stage's owners (the directory it creates for a copied
/// directory's content is root's, as moby's `CopyWithTar` makes it), ADD of a local tar keeps
/// the archive's.
#[test]
fn copied_files_keep_their_owners() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let dir = b.dir.path().join("own");
    write(&dir, "f", "f\n");
    write(&dir, "o/f", "in the tar\n");
    nix::unistd::chown(&dir.join("f"), Some(77.into()), Some(88.into())).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["--owner=1234", "--group=4321", "-cf", "own.tar", "o"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(tar.success());
    write(
        &dir,
        "Dockerfile",
        "FROM busybox AS a\nRUN mkdir /s && echo s > /s/f && chown -R 555:666 /s\n\
         FROM busybox\nCOPY --chown=1000:1001 f /f\nCOPY f /plain\nCOPY --from=a /s /s\n\
         ADD own.tar /t/\nRUN stat -c '%n %u:%g' /f /plain /s /s/f /t/o/f > /owners\n\
         CMD [\"cat\", \"/owners\"]\n",
    );
    built(&build(&b, &dir, &["-t", "owners:1"]));
    // A COPY shows no container, as dockerd copies into a layer without one.
    let copy_only = b.dir.path().join("copy-only");
    write(&copy_only, "f", "f\n");
    write(&copy_only, "Dockerfile", "FROM busybox\nCOPY f /f\n");
    let out = built(&build(&b, &copy_only, &[]));
    assert!(
        !out.contains("Running in") && !out.contains("Removed intermediate"),
        "{out}"
    );
    assert_eq!(ok(b.docker_out(&["ps", "-aq"])), "");
    assert_eq!(
        ok(b.docker_out(&["run", "--rm", "owners:1"])),
        "/f 1000:1001\n/plain 0:0\n/s 0:0\n/s/f 555:666\n/t/o/f 1234:4321\n"
    );
}

#[test]
fn stdin_dockerfile_outside_context_and_dockerignore() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    // A Dockerfile alone on stdin: no context.
    let df = b.dir.path().join("Dockerfile.stdin");
    std::fs::write(&df, "FROM busybox\nRUN echo from-stdin > /f\n").unwrap();
    let o = b
        .docker()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-t", "stdin:1", "-"])
        .stdin(std::fs::File::open(&df).unwrap())
        .output()
        .unwrap();
    built(&o);
    assert_eq!(
        ok(b.docker_out(&["run", "--rm", "stdin:1", "cat", "/f"])),
        "from-stdin\n"
    );

    // A context with a .dockerignore (exceptions, **), and -f from outside it.
    let dir = b.dir.path().join("ign");
    write(&dir, "keep.txt", "keep\n");
    write(&dir, "secret.key", "no\n");
    write(&dir, "logs/a.log", "no\n");
    write(&dir, "logs/deep/b.log", "no\n");
    write(&dir, "logs/important.log", "yes\n");
    write(
        &dir,
        ".dockerignore",
        "*.key\n**/*.log\n!logs/important.log\n",
    );
    let outside = b.dir.path().join("elsewhere.Dockerfile");
    std::fs::write(
        &outside,
        "FROM busybox\nCOPY . /ctx/\nRUN find /ctx -type f | sort > /list\nCMD [\"cat\", \"/list\"]\n",
    )
    .unwrap();
    built(&build(
        &b,
        &dir,
        &["-t", "ign:1", "-f", outside.to_str().unwrap()],
    ));
    let list = ok(b.docker_out(&["run", "--rm", "ign:1"]));
    // The .dockerignore itself is sent and kept unless it ignores itself, as with dockerd.
    assert_eq!(
        list, "/ctx/.dockerignore\n/ctx/keep.txt\n/ctx/logs/important.log\n",
        "{list}"
    );
}

#[test]
fn docker_py_builds() {
    require!(ready(), NOT_READY);
    let python = common::docker_py();
    require!(python.is_some(), common::DOCKER_PY_MISSING);
    let b = berthd_with_busybox(&[]);
    let dir = b.dir.path().join("py");
    write(
        &dir,
        "Dockerfile",
        "FROM busybox\nARG WHO=nobody\nRUN echo built-by-$WHO > /who\n",
    );
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url="unix://" + sys.argv[1])
img, logs = c.images.build(path=sys.argv[2], tag="py:1", buildargs={"WHO": "py"}, rm=True)
text = "".join(l.get("stream", "") for l in logs)
assert "Successfully built" in text, text
assert "py:1" in img.tags, img.tags
out = c.containers.run("py:1", ["cat", "/who"], remove=True)
assert out == b"built-by-py\n", out
print("ok")
"#;
    common::run_docker_py(python.as_deref().unwrap(), &b, script, &[&dir]);
}

#[test]
fn compose_builds_with_build_args() {
    require!(ready(), NOT_READY);
    require!(
        common::have_command("docker-compose"),
        "needs Debian's docker-compose"
    );
    let b = berthd_with_busybox(&[]);
    let dir = b.dir.path().join("proj");
    write(
        &dir,
        "app/Dockerfile",
        "FROM busybox\nARG FLAVOUR=plain\nRUN echo $FLAVOUR > /flavour\nCMD [\"cat\", \"/flavour\"]\n",
    );
    write(
        &dir,
        "docker-compose.yml",
        "version: \"2.4\"\nservices:\n  app:\n    build:\n      context: ./app\n      args:\n        FLAVOUR: spicy\n    image: composed:1\n    network_mode: none\n",
    );
    let compose = |args: &[&str]| common::compose(&b, &dir, "bp", args);
    let o = compose(&["build"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        ok(b.docker_out(&["run", "--rm", "--network", "none", "composed:1"])),
        "spicy\n"
    );
}

#[test]
fn scratch_add_archives_urls_and_network_options() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let dir = b.dir.path().join("add");
    // A local archive (gzip) that ADD unpacks, and a URL it downloads from 127.0.0.1.
    let staging = b.dir.path().join("staging");
    write(&staging, "inner/one.txt", "one\n");
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("tar")
        .args(["-czf", dir.join("bundle.tar.gz").to_str().unwrap(), "-C"])
        .arg(&staging)
        .arg("inner")
        .status()
        .unwrap();
    assert!(status.success());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten().take(4) {
            use std::io::{Read, Write};
            let mut conn = conn;
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = "downloaded\n";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    write(
        &dir,
        "Dockerfile",
        &format!(
            "FROM busybox\nADD bundle.tar.gz /unpacked/\nADD http://127.0.0.1:{port}/remote.txt /fetched/\n\
             RUN cat /etc/hosts > /hosts.txt; ip -o link | wc -l > /links.txt\n\
             FROM scratch\nCOPY --from=0 /unpacked/inner/one.txt /fetched/remote.txt /hosts.txt /links.txt /\n"
        ),
    );
    built(&build(
        &b,
        &dir,
        &[
            "-t",
            "added:1",
            "--network",
            "none",
            "--add-host",
            "buildhost:10.1.2.3",
        ],
    ));
    // The final image is a scratch one: no parent layers, just the copied files.
    assert_eq!(inspect(&b, "added:1", "{{len .RootFS.Layers}}"), "1");
    ok(b.docker_out(&["create", "--name", "out", "added:1", "x"]));
    let tar = b.docker().args(["cp", "out:/", "-"]).output().unwrap();
    assert!(tar.status.success(), "{}", stderr(&tar));
    let mut archive = tar::Archive::new(&tar.stdout[..]);
    let mut files = std::collections::BTreeMap::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut text = String::new();
        if e.header().entry_type().is_file() {
            std::io::Read::read_to_string(&mut e, &mut text).unwrap();
            files.insert(path, text);
        }
    }
    assert_eq!(
        files.get("/one.txt").map(String::as_str),
        Some("one\n"),
        "{files:?}"
    );
    assert_eq!(
        files.get("/remote.txt").map(String::as_str),
        Some("downloaded\n"),
        "{files:?}"
    );
    assert!(
        files["/hosts.txt"].contains("10.1.2.3\tbuildhost"),
        "{files:?}"
    );
    // --network none: only lo.
    assert_eq!(files["/links.txt"].trim(), "1", "{files:?}");
}

#[test]
fn a_client_that_goes_away_cancels_the_build() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    // The context: a tar with a Dockerfile whose RUN would take long.
    let mut tar = tar::Builder::new(Vec::new());
    let df = b"FROM busybox\nRUN echo started; sleep 300\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(df.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "Dockerfile", &df[..]).unwrap();
    let body = tar.into_inner().unwrap();
    let mut conn = std::os::unix::net::UnixStream::connect(&b.socket).unwrap();
    use std::io::{Read, Write};
    write!(
        conn,
        "POST /v1.51/build?t=never:1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    conn.write_all(&body).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The RUN's own output (not the Step line that shows the command).
    while !String::from_utf8_lossy(&seen).contains(r#"{"stream":"started\n"}"#) {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(ok(b.docker_out(&["ps", "-q"])).lines().count(), 1);
    drop(conn);
    // The step's container is killed and removed; no image is tagged.
    common::wait_for(
        "the step container to go",
        std::time::Duration::from_secs(20),
        || ok(b.docker_out(&["ps", "-aq"])).trim().is_empty(),
    );
    let o = b.docker_out(&["image", "inspect", "never:1"]);
    assert!(!o.status.success());
}

/// `--cache-from`: an image that came from elsewhere (`docker save`/`load`, so it has no
/// parent links and was not built here) serves as the cache only when named, and then every
/// step hits and the build ends at that very image, as dockerd's `ImageCache` does.
#[test]
fn cache_from_a_loaded_image() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let dir = b.dir.path().join("ctx");
    write(&dir, "a.txt", "content a\n");
    write(
        &dir,
        "Dockerfile",
        "FROM busybox\nENV STAGE=one\nCOPY a.txt /a.txt\nRUN echo built > /b.txt\nWORKDIR /w\nCMD [\"cat\", \"/b.txt\"]\n",
    );
    let first = built(&build(&b, &dir, &["-t", "cached:src"]));
    assert!(!first.contains("Using cache"), "{first}");
    let src = common::image_id(&b, "cached:src");
    let tar = b.dir.path().join("src.tar");
    ok(b.docker_out(&["save", "-o", tar.to_str().unwrap(), "cached:src"]));
    ok(b.docker_out(&["rmi", "cached:src"]));
    // The intermediate images went with it: nothing of the first build is left.
    let left = ok(b.docker_out(&["images", "-aq"]));
    assert_eq!(left.lines().count(), 1, "{left}");
    ok(b.docker_out(&["load", "-i", tar.to_str().unwrap()]));

    // Without --cache-from the loaded image is no cache (it was not built here).
    let o = built(&build(&b, &dir, &["-t", "cached:plain"]));
    assert!(!o.contains("Using cache"), "{o}");
    assert_ne!(common::image_id(&b, "cached:plain"), src);
    ok(b.docker_out(&["rmi", "cached:plain"]));

    // With it: every step hits, and the result is the loaded image itself.
    let o = built(&build(
        &b,
        &dir,
        &["--cache-from", "cached:src", "-t", "cached:again"],
    ));
    assert_eq!(o.matches(" ---> Using cache").count(), 5, "{o}");
    assert_eq!(common::image_id(&b, "cached:again"), src);
    // Linked now: the image's parent is a restored image of the same history.
    let parent = inspect(&b, "cached:again", "{{.Parent}}");
    assert!(parent.starts_with("sha256:"), "{parent}");
    let history = ok(b.docker_out(&["history", "-q", "cached:again"]));
    assert!(
        history.lines().nth(1).is_some_and(|l| l.len() == 12),
        "{history}"
    );

    // A changed file: the steps before the COPY still hit, the COPY and all after run.
    write(&dir, "a.txt", "content b\n");
    let o = built(&build(
        &b,
        &dir,
        &["--cache-from", "cached:src", "-t", "cached:changed"],
    ));
    assert_eq!(o.matches(" ---> Using cache").count(), 1, "{o}");
    assert!(o.contains(" ---> Running in "), "{o}");
    let out = ok(b.docker_out(&["run", "--rm", "cached:changed", "cat", "/a.txt"]));
    assert_eq!(out, "content b\n");

    // A --cache-from that names nothing: no cache at all, not even the local one (moby).
    let o = built(&build(
        &b,
        &dir,
        &["--cache-from", "nothing:here", "-t", "cached:none"],
    ));
    assert!(!o.contains("Using cache"), "{o}");
}

/// The build-context cache: a second build of the same context reuses its files (one
/// `source.local` record, used twice, in `/system/df`), `docker builder prune` empties it, and
/// a bad filter gets dockerd's text.
#[test]
fn context_cache_in_df_and_builder_prune() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let dir = b.dir.path().join("ctx");
    write(&dir, "a.txt", "cached content\n");
    write(&dir, "Dockerfile", "FROM busybox\nCOPY a.txt /a.txt\n");
    // Files of this very second are never cached (their header could stay the same through
    // a change): these are an hour old.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for f in ["a.txt", "Dockerfile"] {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(f))
            .unwrap();
        file.set_modified(old).unwrap();
    }
    built(&build(&b, &dir, &["-t", "ctxcache:1"]));
    let o = built(&build(&b, &dir, &["-t", "ctxcache:1"]));
    assert!(o.contains(" ---> Using cache"), "{o}");
    let files = b.data_root().join("buildcache/files");
    assert_eq!(std::fs::read_dir(&files).unwrap().count(), 2);

    let mut c = common::Conn::unix(&b.socket);
    let df = c.request("GET", "/v1.51/system/df", None).json();
    let cache = df["BuildCache"].as_array().unwrap();
    assert_eq!(cache.len(), 1, "{df}");
    assert_eq!(cache[0]["Type"], "source.local");
    assert_eq!(cache[0]["UsageCount"], 2);
    assert_eq!(cache[0]["InUse"], false);
    assert_eq!(cache[0]["Size"], 15 + 31);
    let id = cache[0]["ID"].as_str().unwrap().to_string();
    let old_df = c.request("GET", "/v1.41/system/df", None).json();
    assert_eq!(old_df["BuilderSize"], 46, "{old_df}");
    let text = ok(b.docker_out(&["system", "df"]));
    assert!(
        text.lines()
            .any(|l| l.starts_with("Build Cache") && l.contains(" 1 ")),
        "{text}"
    );

    let o = b.docker_out(&["builder", "prune", "-f", "--filter", "until=soon"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("\"until\" filter expects a duration (e.g., '24h') or a timestamp"),
        "{}",
        stderr(&o)
    );
    // Used just now: an `until` of an hour keeps it.
    let o = ok(b.docker_out(&["builder", "prune", "-f", "--filter", "until=1h"]));
    assert!(o.contains("Total reclaimed space: 0B"), "{o}");
    let o = ok(b.docker_out(&["builder", "prune", "-f"]));
    assert!(o.contains(&id), "{o}");
    assert!(o.contains("Total reclaimed space: 46B"), "{o}");
    let df = c.request("GET", "/v1.51/system/df", None).json();
    assert_eq!(df["BuildCache"], serde_json::json!([]));
    assert_eq!(std::fs::read_dir(&files).unwrap().count(), 0);
    // The image cache is not the context cache: the next build still hits its steps.
    let o = built(&build(&b, &dir, &["-t", "ctxcache:1"]));
    assert!(o.contains(" ---> Using cache"), "{o}");
}

#[test]
fn ulimits_and_the_parameters_dockerd_refuses_on_linux() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let dir = b.dir.path().join("limits");
    write(
        &dir,
        "Dockerfile",
        "FROM busybox\nRUN echo \"nofile $(ulimit -S -n) $(ulimit -H -n)\" > /limits.txt\n",
    );
    // `--ulimit` reaches every RUN container.
    built(&build(
        &b,
        &dir,
        &["-t", "limited:1", "--ulimit", "nofile=1024:2048"],
    ));
    let out = ok(b.docker_out(&["run", "--rm", "limited:1", "cat", "/limits.txt"]));
    assert_eq!(out.trim(), "nofile 1024 2048");

    // What dockerd refuses on Linux, with its texts, before any output.
    for (args, text) in [
        (
            &["--security-opt", "seccomp=unconfined"][..],
            "security options are not supported on linux",
        ),
        (
            &["--isolation", "hyperv"][..],
            "unsupported isolation: \"hyperv\"",
        ),
    ] {
        let o = build(&b, &dir, args);
        assert!(!o.status.success(), "{args:?} built:\n{}", stdout(&o));
        assert!(
            stderr(&o).contains(&format!("Error response from daemon: {text}")),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!stdout(&o).contains("Step 1/"), "{}", stdout(&o));
    }
    // The default isolation, in any case, builds.
    let o = built(&build(&b, &dir, &["-q", "--isolation", "Default"]));
    assert!(o.trim().starts_with("sha256:"), "{o}");

    // The parameters the CLI's classic builder never sends, over the API.
    let mut c = common::Conn::unix(&b.socket);
    for (query, text) in [
        ("version=2", "buildkit is not enabled on daemon".to_string()),
        ("version=3", "invalid version \"3\"".to_string()),
        (
            "outputs=%7Bnot-json",
            "invalid outputs specified: ".to_string(),
        ),
        (
            "outputs=%5B%7B%22Type%22%3A1%7D%5D",
            "invalid outputs specified: ".to_string(),
        ),
        (
            "ulimits=%5B1%5D",
            "error reading ulimit settings: ".to_string(),
        ),
        ("buildargs=%5B%5D", "error reading build args: ".to_string()),
        ("labels=x", "error reading labels: ".to_string()),
        ("cachefrom=%7B%7D", "error reading cache-from: ".to_string()),
    ] {
        let r = c.request("POST", &format!("/v1.51/build?{query}"), Some(b""));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        let message = r.json()["message"].as_str().unwrap_or("").to_string();
        assert!(message.starts_with(&text), "{query}: {message}");
    }
    // Valid outputs are read and ignored by the classic builder, as dockerd's.
    let tar = {
        let mut t = tar::Builder::new(Vec::new());
        let df = b"FROM busybox\nLABEL built=with-outputs\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(df.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, "Dockerfile", &df[..]).unwrap();
        t.into_inner().unwrap()
    };
    let r = c.request(
        "POST",
        "/v1.51/build?t=outputs:1&version=1&outputs=%5B%7B%22Type%22%3A%22local%22%2C%22Attrs%22%3A%7B%22dest%22%3A%22%2Ftmp%2Fx%22%7D%7D%5D",
        Some(&tar),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("Successfully tagged outputs:1"),
        "{}",
        r.text()
    );
    assert_eq!(
        inspect(&b, "outputs:1", "{{index .Config.Labels \"built\"}}"),
        "with-outputs"
    );
}
