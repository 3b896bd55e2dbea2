//! `docker commit` and `docker diff` through the docker CLI, with a busybox-static image.

mod common;

use common::{berthd_with_busybox, ok, stderr, stdout, Berthd};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

fn sha256_of_save(b: &Berthd, name: &str) -> String {
    let o = b.docker_out(&["save", name]);
    assert!(o.status.success(), "{}", stderr(&o));
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(&o.stdout))
}

#[test]
fn commit_a_stopped_container() {
    if !ready() {
        eprintln!("skipping: {NOT_READY}");
        return;
    }
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "run",
        "--name",
        "cc",
        "busybox",
        "sh",
        "-c",
        "echo hi > /f; rm /bin/true; mkdir -p /d/e; echo x > /d/e/g",
    ]));

    // The diff shows the changes and none of the runtime's placeholders.
    let diff = ok(b.docker_out(&["diff", "cc"]));
    for p in [
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
        "/.dockerenv",
        "/etc/mtab",
        "C /etc",
    ] {
        assert!(!diff.contains(p), "{p} in the diff:\n{diff}");
    }
    for line in ["A /f", "D /bin/true", "A /d", "A /d/e/g", "C /bin"] {
        assert!(diff.lines().any(|l| l == line), "no {line} in:\n{diff}");
    }

    let id = ok(b.docker_out(&[
        "commit",
        "--change",
        r#"CMD ["cat","/f"]"#,
        "--change",
        "ENV A=1",
        "-m",
        "msg",
        "-a",
        "me",
        "cc",
        "img:1",
    ]));
    assert!(id.trim().starts_with("sha256:"), "{id}");
    let out = ok(b.docker_out(&["run", "--rm", "img:1"]));
    assert_eq!(out, "hi\n");
    let o = b.docker_out(&["run", "--rm", "img:1", "ls", "/bin/true"]);
    assert!(!o.status.success(), "/bin/true is back: {}", stdout(&o));
    let out = ok(b.docker_out(&["run", "--rm", "img:1", "cat", "/d/e/g"]));
    assert_eq!(out, "x\n");
    let out = ok(b.docker_out(&["run", "--rm", "img:1", "sh", "-c", "echo $A"]));
    assert_eq!(out, "1\n");

    let fmt = "{{.Author}}|{{.Comment}}|{{json .Config.Cmd}}|{{len .RootFS.Layers}}";
    let out = ok(b.docker_out(&["image", "inspect", "--format", fmt, "img:1"]));
    assert_eq!(out.trim(), r#"me|msg|["cat","/f"]|2"#);
    let hist = ok(b.docker_out(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.Comment}}|{{.CreatedBy}}",
        "img:1",
    ]));
    let top = hist.lines().next().unwrap_or("");
    assert!(top.starts_with("msg|sh -c echo hi"), "{hist}");

    // A container of the committed image has the runtime's files (as under dockerd), and the
    // image's layers do not (checked in the saved archive below).
    ok(b.docker_out(&["create", "--name", "c2", "img:1"]));
    let out = ok(b.docker_out(&["run", "--rm", "img:1", "ls", "-a", "/"]));
    assert!(out.contains(".dockerenv"), "{out}");

    // save is byte-identical each time, and load round-trips.
    let a = sha256_of_save(&b, "img:1");
    let c = sha256_of_save(&b, "img:1");
    assert_eq!(a, c);
    let tar = b.dir.path().join("img.tar");
    ok(b.docker_out(&["save", "-o", tar.to_str().unwrap(), "img:1"]));
    let mut in_layers = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if !e.path().unwrap().starts_with("blobs") || e.header().entry_type().is_dir() {
            continue;
        }
        let mut blob = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut blob).unwrap();
        if let Ok(entries) = tar::Archive::new(&blob[..]).entries() {
            for f in entries.flatten() {
                if let Ok(p) = f.path() {
                    in_layers.push(p.display().to_string());
                }
            }
        }
    }
    assert!(in_layers.iter().any(|n| n == "f"), "{in_layers:?}");
    for p in [".dockerenv", "etc/mtab", "etc/hostname"] {
        assert!(!in_layers.iter().any(|n| n == p), "{p} in {in_layers:?}");
    }
    ok(b.docker_out(&["rm", "c2"]));
    ok(b.docker_out(&["rmi", "img:1"]));
    ok(b.docker_out(&["load", "-i", tar.to_str().unwrap()]));
    let out = ok(b.docker_out(&["run", "--rm", "img:1"]));
    assert_eq!(out, "hi\n");
    assert_eq!(sha256_of_save(&b, "img:1"), a);

    // An unchanged container adds no layer; its history line says so.
    ok(b.docker_out(&["create", "--name", "same", "busybox", "true"]));
    ok(b.docker_out(&["commit", "same", "same:1"]));
    let out = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}}",
        "same:1",
    ]));
    assert_eq!(out.trim(), "1");
}

#[test]
fn commit_errors_and_a_running_container() {
    if !ready() {
        eprintln!("skipping: {NOT_READY}");
        return;
    }
    let b = berthd_with_busybox(&[]);
    let o = b.docker_out(&["commit", "nosuch"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("No such container: nosuch"),
        "{}",
        stderr(&o)
    );

    ok(b.docker_out(&[
        "run",
        "-d",
        "--name",
        "rr",
        "busybox",
        "sh",
        "-c",
        "echo run > /r; sleep 600",
    ]));
    // Wait for the file to be written.
    for _ in 0..50 {
        if ok(b.docker_out(&["diff", "rr"])).contains("A /r") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let o = b.docker_out(&["commit", "--change", "RUN x", "rr"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("run is not a valid change command"),
        "{}",
        stderr(&o)
    );
    // EXPOSE as dockerd's builder reads it: ranges, any-case protocols, `ip:host:port`.
    let o = b.docker_out(&["commit", "--change", "EXPOSE abc", "rr"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Error response from daemon: Invalid containerPort: abc"),
        "{}",
        stderr(&o)
    );
    let o = b.docker_out(&["commit", "--change", "EXPOSE 90/bogus", "rr"]);
    assert!(
        stderr(&o).contains("Invalid proto: bogus"),
        "{}",
        stderr(&o)
    );
    ok(b.docker_out(&[
        "commit",
        "--change",
        "EXPOSE 8000-8002/tcp 53/UDP 127.0.0.1:80:90/sctp",
        "rr",
        "exposed:1",
    ]));
    let out = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.ExposedPorts}}",
        "exposed:1",
    ]));
    assert_eq!(
        out.trim(),
        r#"{"53/udp":{},"8000/tcp":{},"8001/tcp":{},"8002/tcp":{},"90/sctp":{}}"#
    );
    let o = b.docker_out(&["commit", "rr", "Bad"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid reference format"),
        "{}",
        stderr(&o)
    );

    // A running container is paused for the commit and keeps running.
    let id = ok(b.docker_out(&["commit", "rr", "run:1"]));
    assert!(id.trim().starts_with("sha256:"));
    let status = ok(b.docker_out(&["inspect", "--format", "{{.State.Status}}", "rr"]));
    assert_eq!(status.trim(), "running");
    let out = ok(b.docker_out(&["run", "--rm", "run:1", "cat", "/r"]));
    assert_eq!(out, "run\n");

    // A paused container stays paused; --pause=false works on a running one.
    ok(b.docker_out(&["pause", "rr"]));
    ok(b.docker_out(&["commit", "rr", "run:2"]));
    let status = ok(b.docker_out(&["inspect", "--format", "{{.State.Status}}", "rr"]));
    assert_eq!(status.trim(), "paused");
    ok(b.docker_out(&["unpause", "rr"]));
    ok(b.docker_out(&["commit", "--pause=false", "rr", "run:3"]));

    // The commit events carry the image (`--until` has a resolution of seconds).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let events = b.docker_out(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "event=commit",
        "--format",
        "{{.Action}} {{.Actor.Attributes.imageRef}}",
    ]);
    let text = stdout(&events);
    for r in ["run:1", "run:2", "run:3"] {
        assert!(text.lines().any(|l| l == format!("commit {r}")), "{text}");
    }
    ok(b.docker_out(&["rm", "-f", "rr"]));
}

#[test]
fn mount_points_are_not_changes() {
    if !ready() {
        eprintln!("skipping: {NOT_READY}");
        return;
    }
    let b = berthd_with_busybox(&[]);
    let host = b.dir.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    let bind = format!("{}:/mnt/deep/data", host.display());
    ok(b.docker_out(&[
        "run",
        "--name",
        "mm",
        "-v",
        &bind,
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "echo in > /mnt/deep/data/f; echo out > /kept",
    ]));
    let id = ok(b.docker_out(&["inspect", "--format", "{{.Id}}", "mm"]));
    let upper = b
        .data_root()
        .join("containers")
        .join(id.trim())
        .join("layer/diff");
    // The runtime did create its placeholders in the writable layer ...
    assert!(upper.join("etc/hosts").exists());
    assert!(upper.join("mnt/deep/data").is_dir());
    // ... and neither diff nor commit shows them.
    let diff = ok(b.docker_out(&["diff", "mm"]));
    assert_eq!(diff, "A /kept\n");
    ok(b.docker_out(&["commit", "mm", "mm:1"]));
    let layer = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{.GraphDriver.Data.UpperDir}}",
        "mm:1",
    ]));
    let mut names: Vec<String> = std::fs::read_dir(layer.trim())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["kept"]);
    let out = ok(b.docker_out(&["run", "--rm", "mm:1", "cat", "/kept"]));
    assert_eq!(out, "out\n");
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "in\n");
}

#[test]
fn opaque_directories_and_hard_links() {
    if !ready() {
        eprintln!("skipping: {NOT_READY}");
        return;
    }
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "run",
        "--name",
        "o1",
        "busybox",
        "sh",
        "-c",
        "mkdir /o; echo a > /o/a; echo l > /l1; ln /l1 /l2",
    ]));
    ok(b.docker_out(&["commit", "o1", "o:1"]));
    ok(b.docker_out(&[
        "run",
        "--name",
        "o2",
        "o:1",
        "sh",
        "-c",
        "rm -rf /o; mkdir /o; echo b > /o/b",
    ]));
    let diff = ok(b.docker_out(&["diff", "o2"]));
    assert!(diff.lines().any(|l| l == "C /o"), "{diff}");
    ok(b.docker_out(&["commit", "o2", "o:2"]));
    let out = ok(b.docker_out(&[
        "run",
        "--rm",
        "o:2",
        "sh",
        "-c",
        "ls /o; stat -c %h /l1; cat /l2",
    ]));
    assert_eq!(out, "b\n2\nl\n");
    // The hard link survives save and load too.
    let tar = b.dir.path().join("o.tar");
    ok(b.docker_out(&["save", "-o", tar.to_str().unwrap(), "o:2"]));
    ok(b.docker_out(&["rm", "o1", "o2"]));
    ok(b.docker_out(&["rmi", "o:2", "o:1"]));
    ok(b.docker_out(&["load", "-i", tar.to_str().unwrap()]));
    let out = ok(b.docker_out(&["run", "--rm", "o:2", "sh", "-c", "ls /o; stat -c %h /l1"]));
    assert_eq!(out, "b\n2\n");
}

#[test]
fn the_api_merges_a_body_config() {
    if !ready() {
        eprintln!("skipping: {NOT_READY}");
        return;
    }
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&[
        "create", "--name", "api", "-e", "KEEP=1", "-w", "/tmp", "busybox", "sh",
    ]));
    let mut c = common::Conn::unix(&b.socket);
    let r = c.request("POST", "/v1.51/commit?container=nosuch", None);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["message"], "No such container: nosuch");
    let r = c.request("POST", "/v1.51/commit?container=api&repo=a%40b", None);
    assert_eq!(r.status, 400, "{}", r.text());

    // A tag without a repository names nothing; the body is merged over the container's
    // config; changes apply over the body.
    let body = br#"{"Cmd":["echo","body"],"Env":["NEW=2"],"Labels":{"a":"b"}}"#;
    let r = c.request(
        "POST",
        "/v1.51/commit?container=api&tag=x&author=au&changes=EXPOSE%2080&changes=LABEL%20c%3Dd",
        Some(body),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["Id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    let img = c
        .request("GET", &format!("/v1.51/images/{id}/json"), None)
        .json();
    assert_eq!(img["RepoTags"], serde_json::json!([]));
    assert_eq!(img["Author"], "au");
    let cfg = &img["Config"];
    assert_eq!(cfg["Cmd"], serde_json::json!(["echo", "body"]));
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"NEW=2") && env.contains(&"KEEP=1"), "{env:?}");
    assert_eq!(cfg["WorkingDir"], "/tmp");
    assert_eq!(cfg["Labels"], serde_json::json!({"a": "b", "c": "d"}));
    assert_eq!(cfg["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
}
