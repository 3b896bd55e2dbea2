//! Images through the docker CLI: import, images, inspect, history, tag, rmi, prune, save and
//! load, with busybox-static fixtures.

mod common;

use std::path::Path;

use common::{
    berthd_with_busybox, busybox_rootfs_tar, docker_with_stdin, image_id, ok, stderr, stdout,
    Berthd,
};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

/// `docker import <URL>`: berthd downloads the archive (here from a server of the test's own on
/// 127.0.0.1), with dockerd's messages, comment and errors.
#[test]
fn import_from_a_url() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let rootfs = std::fs::read(busybox_rootfs_tar(b.dir.path())).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            use std::io::{BufRead, Write};
            let mut conn = conn;
            let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            // The rest of the head.
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let (status, body): (&str, &[u8]) = if line.starts_with("GET /rootfs.tar ") {
                ("200 OK", &rootfs)
            } else {
                ("404 Not Found", b"no such file\n")
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(body);
        }
    });
    let url = format!("http://127.0.0.1:{port}/rootfs.tar");
    let out = ok(b.docker_out(&["import", &url, "fromurl:1"]));
    // As with dockerd: where it downloads from, then the ID.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], format!("Downloading from {url}"));
    let id = lines[1];
    assert!(id.starts_with("sha256:"), "{out}");
    assert_eq!(image_id(&b, "fromurl:1"), id);
    let ran = ok(b.docker_out(&["run", "--rm", "fromurl:1", "/bin/sh", "-c", "echo from-url"]));
    assert_eq!(ran.trim(), "from-url");
    let comment = ok(b.docker_out(&["history", "--format", "{{.Comment}}", "fromurl:1"]));
    assert_eq!(comment.trim(), format!("Imported from {url}"));

    // Not there: dockerd's error, and nothing imported.
    let before = ok(b.docker_out(&["images", "-q", "--no-trunc"]));
    let missing = format!("http://127.0.0.1:{port}/missing.tar");
    let out = b.docker_out(&["import", &missing, "missing:1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "failed to GET {missing} with status 404 Not Found: no such file"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(ok(b.docker_out(&["images", "-q", "--no-trunc"])), before);

    // Without a scheme (the API; the CLI takes such a name for a file): http, as dockerd.
    let mut conn = common::Conn::unix(&b.socket);
    let r = conn.request(
        "POST",
        &format!("/images/create?fromSrc=127.0.0.1:{port}/rootfs.tar&repo=bare&tag=1"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text()
            .contains(&format!("\"status\":\"Downloading from {url}\"")),
        "{}",
        r.text()
    );
    assert!(image_id(&b, "bare:1").starts_with("sha256:"));
    // A URL nothing listens on: a 500 that says why.
    let r = conn.request(
        "POST",
        "/images/create?fromSrc=http://127.0.0.1:1/x.tar",
        None,
    );
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(
        r.text().contains("http://127.0.0.1:1/x.tar"),
        "{}",
        r.text()
    );
}

#[test]
fn import_from_file_and_stdin_with_changes() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let rootfs = busybox_rootfs_tar(b.dir.path());
    let out = docker_with_stdin(
        &b,
        &[
            "import",
            "--change",
            "CMD [\"/bin/sh\", \"-c\", \"echo hi\"]",
            "--change",
            "ENV A=1 B=two",
            "--change",
            "WORKDIR /srv",
            "--change",
            "LABEL team=core",
            "--change",
            "EXPOSE 8080",
            "--message",
            "from stdin",
            "-",
            "myimg:1",
        ],
        &rootfs,
    );
    let id = ok(out).trim().to_string();
    assert!(id.starts_with("sha256:"));
    let fmt = "{{json .Config.Cmd}}|{{json .Config.Env}}|{{.Config.WorkingDir}}|{{index .Config.Labels \"team\"}}|{{json .Config.ExposedPorts}}|{{.Comment}}|{{.Os}}/{{.Architecture}}";
    let got = ok(b.docker_out(&["image", "inspect", "--format", fmt, "myimg:1"]));
    assert_eq!(
        got.trim(),
        format!(
            "[\"/bin/sh\",\"-c\",\"echo hi\"]|[\"A=1\",\"B=two\"]|/srv|core|{{\"8080/tcp\":{{}}}}|from stdin|linux/{}",
            if cfg!(target_arch = "x86_64") { "amd64" } else { "arm64" }
        )
    );
    assert_eq!(image_id(&b, "myimg:1"), id);
    // The layer holds the rootfs.
    let upper = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{.GraphDriver.Data.UpperDir}}",
        "myimg:1",
    ]));
    let upper = Path::new(upper.trim());
    assert_eq!(
        std::fs::read(upper.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(upper.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    // A bad change is refused with a clear message and nothing is added.
    let out = docker_with_stdin(
        &b,
        &["import", "--change", "RUN echo", "-", "bad:1"],
        &rootfs,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("run is not a valid change command"),
        "{}",
        stderr(&out)
    );
    assert!(!b
        .docker_out(&["image", "inspect", "bad:1"])
        .status
        .success());
}

#[test]
fn images_list_filters_digests_and_format() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let rootfs = busybox_rootfs_tar(b.dir.path());
    ok(docker_with_stdin(
        &b,
        &["import", "--change", "LABEL tier=web", "-", "web/app:2"],
        &rootfs,
    ));
    ok(docker_with_stdin(&b, &["import", "-"], &rootfs)); // dangling
    let all = ok(b.docker_out(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    let mut lines: Vec<&str> = all.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["<none>:<none>", "busybox:latest", "web/app:2"]);
    let f = ok(b.docker_out(&[
        "images",
        "--filter",
        "reference=busy*",
        "--format",
        "{{.Repository}}",
    ]));
    assert_eq!(f.trim(), "busybox");
    let f = ok(b.docker_out(&[
        "images",
        "--filter",
        "label=tier=web",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]));
    assert_eq!(f.trim(), "web/app:2");
    let f = ok(b.docker_out(&[
        "images",
        "--filter",
        "dangling=true",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]));
    assert_eq!(f.trim(), "<none>:<none>");
    // dangling=false leaves the untagged image out, as dockerd (moby's `Images`).
    let f = ok(b.docker_out(&[
        "images",
        "--filter",
        "dangling=false",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]));
    let mut lines: Vec<&str> = f.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["busybox:latest", "web/app:2"], "{f}");
    let f = ok(b.docker_out(&["images", "-a", "--filter", "dangling=false", "-q"]));
    assert_eq!(f.lines().count(), 2, "{f}");
    let newest = ok(b.docker_out(&[
        "images",
        "--filter",
        "since=busybox",
        "--format",
        "{{.Repository}}",
    ]));
    assert!(
        !newest.contains("busybox") && newest.contains("web/app"),
        "{newest}"
    );
    let q = ok(b.docker_out(&["images", "-q"]));
    assert_eq!(q.lines().count(), 3);
    let d = ok(b.docker_out(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}} {{.Digest}}",
        "busybox",
    ]));
    assert_eq!(d.trim(), "busybox <none>");
    let size = ok(b.docker_out(&["images", "--format", "{{.Size}}", "busybox"]));
    assert!(size.trim().ends_with("MB"), "{size}");
    let out = b.docker_out(&["images", "--filter", "bogus=1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid filter 'bogus'"),
        "{}",
        stderr(&out)
    );
    let info = ok(b.docker_out(&["info", "--format", "{{.Images}}"]));
    assert_eq!(info.trim(), "3");
    let df = ok(b.docker_out(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ]));
    assert!(df.lines().any(|l| l == "Images 3 0"), "{df}");
    let dfv = ok(b.docker_out(&["system", "df", "-v"]));
    assert!(dfv.contains("web/app"), "{dfv}");
}

/// `-a -f dangling=true` lists untagged images without children only (moby looks among the
/// image store's heads): an intermediate image is left out, so that `docker rmi $(docker
/// images -aqf dangling=true)` meets no conflict.
#[test]
fn dangling_with_all_leaves_intermediate_images_out() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let base = image_id(&b, "busybox");
    // busybox gets a child, then loses its name: an untagged image with a child.
    ok(b.docker_out(&["create", "--name", "cc", "busybox", "true"]));
    ok(b.docker_out(&["commit", "cc", "child:1"]));
    ok(b.docker_out(&["rm", "cc"]));
    let out = ok(b.docker_out(&["rmi", "busybox"]));
    assert_eq!(out.trim(), "Untagged: busybox:latest");
    // And one truly dangling image.
    let rootfs = busybox_rootfs_tar(b.dir.path());
    let dangling = ok(docker_with_stdin(&b, &["import", "-"], &rootfs))
        .trim()
        .to_string();
    let all = ok(b.docker_out(&["images", "-aq", "--no-trunc"]));
    assert_eq!(all.lines().count(), 3, "{all}");
    assert!(all.lines().any(|l| l == base), "{all}");
    for args in [
        &["images", "-q", "--no-trunc", "-f", "dangling=true"][..],
        &["images", "-aq", "--no-trunc", "-f", "dangling=true"][..],
    ] {
        let out = ok(b.docker_out(args));
        assert_eq!(out.trim(), dangling, "{args:?}");
    }
    let ids: Vec<String> = ok(b.docker_out(&["images", "-aqf", "dangling=true"]))
        .lines()
        .map(str::to_string)
        .collect();
    let mut rmi = vec!["rmi"];
    rmi.extend(ids.iter().map(String::as_str));
    ok(b.docker_out(&rmi));
    let left = ok(b.docker_out(&["images", "-aq", "--no-trunc"]));
    assert_eq!(left.lines().count(), 2, "{left}");
    assert!(left.lines().any(|l| l == base), "{left}");
}

#[test]
fn inspect_history_and_missing_images() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let got = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}} {{.RootFS.Type}} {{.GraphDriver.Name}} {{json .RepoTags}}",
        "busybox",
    ]));
    assert_eq!(got.trim(), "1 layers overlay2 [\"busybox:latest\"]");
    let id = image_id(&b, "busybox");
    // By ID, by short ID, by full reference.
    assert_eq!(image_id(&b, &id[7..19]), id);
    assert_eq!(image_id(&b, "docker.io/library/busybox:latest"), id);
    let h = ok(b.docker_out(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.Comment}}|{{.Size}}",
        "busybox",
    ]));
    let line = h.lines().next().unwrap();
    assert!(line.starts_with(&format!("{id}|Imported from -|")), "{h}");
    let out = b.docker_out(&["image", "inspect", "nosuch"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such image: nosuch"),
        "{}",
        stderr(&out)
    );
    let out = b.docker_out(&["rmi", "nosuch"]);
    assert!(
        stderr(&out).contains("No such image: nosuch:latest"),
        "{}",
        stderr(&out)
    );
    let out = b.docker_out(&["image", "inspect", "Bad:Name"]);
    assert!(!out.status.success());
}

#[test]
fn tag_and_rmi_untag_versus_delete() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let id = image_id(&b, "busybox");
    ok(b.docker_out(&["tag", "busybox", "localhost:5000/team/bb:v1"]));
    ok(b.docker_out(&["tag", "busybox:latest", "other"]));
    assert_eq!(image_id(&b, "localhost:5000/team/bb:v1"), id);
    let tags = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoTags}}",
        "busybox",
    ]));
    assert!(
        tags.contains("localhost:5000/team/bb:v1") && tags.contains("other:latest"),
        "{tags}"
    );
    // By ID while in several repositories: refused without -f.
    let out = b.docker_out(&["rmi", &id[7..19]]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories", &id[7..19])),
        "{}",
        stderr(&out)
    );
    // By name: untag only.
    let out = ok(b.docker_out(&["rmi", "other"]));
    assert_eq!(out.trim(), "Untagged: other:latest");
    let out = ok(b.docker_out(&["rmi", "localhost:5000/team/bb:v1"]));
    assert_eq!(out.trim(), "Untagged: localhost:5000/team/bb:v1");
    // The last name: untag and delete, layers too.
    let upper = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{.GraphDriver.Data.UpperDir}}",
        "busybox",
    ]));
    let out = ok(b.docker_out(&["rmi", "busybox"]));
    assert!(
        out.starts_with("Untagged: busybox:latest\nDeleted: sha256:"),
        "{out}"
    );
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert!(
        !Path::new(upper.trim()).exists(),
        "the layer directory is gone"
    );
    assert_eq!(ok(b.docker_out(&["images", "-q"])).trim(), "");
    // -f by ID removes every name.
    let rootfs = busybox_rootfs_tar(b.dir.path());
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "a:1"]));
    ok(b.docker_out(&["tag", "a:1", "b:2"]));
    let id = image_id(&b, "a:1");
    let out = ok(b.docker_out(&["rmi", "-f", &id]));
    assert!(
        out.contains("Untagged: a:1")
            && out.contains("Untagged: b:2")
            && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
    // Tagging something that does not exist, or with a bad name.
    let out = b.docker_out(&["tag", "nosuch", "x:1"]);
    assert!(
        stderr(&out).contains("No such image: nosuch:latest"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn prune_dangling_all_and_by_label() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let rootfs = busybox_rootfs_tar(b.dir.path());
    ok(docker_with_stdin(&b, &["import", "-"], &rootfs));
    ok(docker_with_stdin(
        &b,
        &["import", "--change", "LABEL keep=no", "-", "labelled:1"],
        &rootfs,
    ));
    let out = ok(b.docker_out(&["image", "prune", "-f"]));
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert_eq!(ok(b.docker_out(&["images", "-q"])).lines().count(), 2);
    let out = ok(b.docker_out(&["image", "prune", "-a", "-f", "--filter", "label=keep=no"]));
    assert!(out.contains("untagged: labelled:1"), "{out}");
    let left = ok(b.docker_out(&["images", "--format", "{{.Repository}}"]));
    assert_eq!(left.trim(), "busybox");
    let out = ok(b.docker_out(&["image", "prune", "-a", "-f"]));
    assert!(
        out.contains("Total reclaimed space: ") && !out.contains("Total reclaimed space: 0B"),
        "{out}"
    );
    assert_eq!(ok(b.docker_out(&["images", "-q"])).trim(), "");
    // Every layer directory is gone with its images.
    let dirs: Vec<_> = std::fs::read_dir(b.data_root().join("overlay2"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(dirs, vec![std::ffi::OsString::from("l")], "{dirs:?}");
}

/// `image prune -a` removes each image by its names without force, as moby's `ImagePrune`:
/// a tagged image with children is untagged and kept, an image a container uses loses all its
/// names but the last, and the conflicts are no errors.
#[test]
fn prune_all_untags_what_it_cannot_delete() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let base = image_id(&b, "busybox");
    ok(b.docker_out(&["create", "--name", "cc", "busybox", "true"]));
    ok(b.docker_out(&["commit", "cc", "child:1"]));
    ok(b.docker_out(&["rm", "cc"]));
    ok(b.docker_out(&["create", "--name", "uses-child", "child:1", "true"]));
    let rootfs = busybox_rootfs_tar(b.dir.path());
    ok(docker_with_stdin(&b, &["import", "-", "multi:1"], &rootfs));
    ok(b.docker_out(&["tag", "multi:1", "multi:2"]));
    let multi = image_id(&b, "multi:1");
    ok(b.docker_out(&["create", "--name", "uses-multi", "multi:1", "true"]));
    let out = ok(b.docker_out(&["image", "prune", "-a", "-f"]));
    let mut untagged: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("untagged: "))
        .collect();
    untagged.sort();
    assert_eq!(untagged.len(), 2, "{out}");
    assert_eq!(untagged[0], "busybox:latest", "{out}");
    assert!(untagged[1].starts_with("multi:"), "{out}");
    assert!(!out.contains("deleted: "), "{out}");
    assert!(out.contains("Total reclaimed space: 0B"), "{out}");
    // Every image is still there; busybox's is an untagged parent now.
    let all = ok(b.docker_out(&[
        "images",
        "-a",
        "--format",
        "{{.ID}} {{.Repository}}:{{.Tag}}",
    ]));
    assert_eq!(all.lines().count(), 3, "{all}");
    assert!(
        all.lines()
            .any(|l| l == format!("{} <none>:<none>", &base[7..19])),
        "{all}"
    );
    assert!(all.lines().any(|l| l.ends_with(" child:1")), "{all}");
    let multi_tags =
        ok(b.docker_out(&["image", "inspect", "--format", "{{len .RepoTags}}", &multi]));
    assert_eq!(multi_tags.trim(), "1");
    // Without the containers, the next prune takes everything, the parent with its child.
    ok(b.docker_out(&["rm", "uses-child", "uses-multi"]));
    let out = ok(b.docker_out(&["image", "prune", "-a", "-f"]));
    assert!(out.contains(&format!("deleted: {base}")), "{out}");
    assert!(out.contains(&format!("deleted: {multi}")), "{out}");
    assert!(!out.contains("Total reclaimed space: 0B"), "{out}");
    assert_eq!(ok(b.docker_out(&["images", "-aq"])).trim(), "");
    // Nothing to prune: moby's `null` list.
    let mut conn = common::Conn::unix(&b.socket);
    let r = conn.request("POST", "/images/prune", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"ImagesDeleted": null, "SpaceReclaimed": 0})
    );
}

/// Bad filter values of image list and prune: moby's texts, as 400s.
#[test]
fn bad_filter_values_are_mobys_errors() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let until = r#"invalid value for 'until' filter: failed to parse value as time or duration: invalid seconds "xyz": invalid syntax"#;
    for args in [
        &["image", "prune", "-f", "--filter", "until=xyz"][..],
        &["images", "--filter", "until=xyz"][..],
    ] {
        let out = b.docker_out(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(until), "{args:?}: {}", stderr(&out));
    }
    let out = b.docker_out(&[
        "image", "prune", "-f", "--filter", "until=1h", "--filter", "until=2h",
    ]);
    assert!(
        stderr(&out).contains("more than one until filter specified"),
        "{}",
        stderr(&out)
    );
    // moby's `GetBoolOrDefault`: Go's rendering of the values. (`docker image prune` adds
    // `dangling=true`, or `false` with `-a`, to what it is given, which then decides: the API
    // below shows prune's error.)
    let out = b.docker_out(&["images", "--filter", "dangling=x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid filter 'dangling=[x]'"),
        "{}",
        stderr(&out)
    );
    let mut conn = common::Conn::unix(&b.socket);
    for (path, want) in [
        (
            "/images/prune?filters=%7B%22until%22%3A%7B%22xyz%22%3Atrue%7D%7D",
            until,
        ),
        (
            "/images/json?filters=%7B%22dangling%22%3A%5B%22true%22%2C%22false%22%5D%7D",
            "invalid filter 'dangling=[false true]'",
        ),
        (
            "/images/prune?filters=%7B%22dangling%22%3A%5B%22x%22%5D%7D",
            "invalid filter 'dangling=[x]'",
        ),
    ] {
        let r = conn.request(
            if path.contains("prune") {
                "POST"
            } else {
                "GET"
            },
            path,
            None,
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.json()["message"], want);
    }
}

#[test]
fn save_rmi_load_round_trip() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&["tag", "busybox", "busybox:second"]));
    let id = image_id(&b, "busybox");
    let archive = b.dir.path().join("saved.tar");
    ok(b.docker_out(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "busybox:latest",
        "busybox:second",
    ]));
    // The archive has both formats, and moby's legacy `repositories` file.
    let list = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()
        .unwrap();
    let names = stdout(&list);
    for want in [
        "manifest.json",
        "index.json",
        "oci-layout",
        "repositories",
        &format!("blobs/sha256/{}", &id[7..]),
    ] {
        assert!(
            names.lines().any(|l| l == want),
            "{want} missing from {names}"
        );
    }
    // As moby's save: familiar repository -> tag -> the top layer's DiffID (hex), one line.
    let top = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{index .RootFS.Layers 0}}",
        "busybox",
    ]));
    let top = top.trim().strip_prefix("sha256:").unwrap();
    assert_eq!(
        archive_file(&archive, "repositories").as_deref(),
        Some(format!("{{\"busybox\":{{\"latest\":\"{top}\",\"second\":\"{top}\"}}}}\n").as_bytes()),
    );
    ok(b.docker_out(&["rmi", "busybox:latest", "busybox:second"]));
    assert_eq!(ok(b.docker_out(&["images", "-q"])).trim(), "");
    let out = ok(b.docker_out(&["load", "-i", archive.to_str().unwrap()]));
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
    assert!(out.contains("Loaded image: busybox:second"), "{out}");
    assert_eq!(image_id(&b, "busybox:latest"), id);
    assert_eq!(image_id(&b, "busybox:second"), id);
    // Saving again gives the same bytes for the layer (tar-split reproduces the layer exactly).
    let again = b.dir.path().join("again.tar");
    ok(b.docker_out(&["save", "-o", again.to_str().unwrap(), "busybox:latest"]));
    // `docker save` to stdout, `docker load` from stdin, by ID (no names).
    let out = b.docker().args(["save", &id]).output().unwrap();
    assert!(out.status.success());
    let by_id = b.dir.path().join("by-id.tar");
    std::fs::write(&by_id, &out.stdout).unwrap();
    // Without a tag saved there is no `repositories` file, as with moby.
    assert_eq!(archive_file(&by_id, "repositories"), None);
    ok(b.docker_out(&["rmi", "-f", &id]));
    let out = ok(docker_with_stdin(&b, &["load"], &by_id));
    assert!(out.contains(&format!("Loaded image ID: {id}")), "{out}");
    let out = b.docker_out(&["save", "nosuch:1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No such image: nosuch:1"),
        "{}",
        stderr(&out)
    );
}

/// The content of the entry `name` of the tar at `path`.
fn archive_file(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            return Some(data);
        }
    }
    None
}

#[test]
fn load_refuses_garbage_and_bad_digests() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let junk = b.dir.path().join("junk.tar");
    std::fs::write(&junk, vec![0xabu8; 4096]).unwrap();
    let out = b.docker_out(&["load", "-i", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("invalid archive"), "{}", stderr(&out));
    // An archive whose config does not match its name.
    let mut t = tar::Builder::new(Vec::new());
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let name = format!("blobs/sha256/{}", "0".repeat(64));
    common::append_file(&mut t, &name, cfg, 0o644, 0);
    let manifest = format!(r#"[{{"Config":"{name}","RepoTags":["x:1"],"Layers":[]}}]"#);
    common::append_file(&mut t, "manifest.json", manifest.as_bytes(), 0o644, 0);
    let bad = b.dir.path().join("bad.tar");
    std::fs::write(&bad, t.into_inner().unwrap()).unwrap();
    let out = b.docker_out(&["load", "-i", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has digest"), "{}", stderr(&out));
    assert_eq!(ok(b.docker_out(&["images", "-q"])).trim(), "");
    // Nothing is left in the scratch area.
    assert_eq!(
        std::fs::read_dir(b.data_root().join("tmp"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn image_events_are_published() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&["tag", "busybox", "ev:1"]));
    ok(b.docker_out(&["rmi", "ev:1"]));
    let out = common::events_text(
        &b,
        "0",
        &["type=image"],
        "{{.Action}} {{index .Actor.Attributes \"name\"}}",
    );
    let lines: Vec<&str> = out.lines().collect();
    // As dockerd: only `tag` names the reference; import and untag name the image ID.
    let id = image_id(&b, "busybox");
    assert_eq!(
        lines,
        vec![
            "tag busybox:latest".to_string(),
            format!("import {id}"),
            "tag ev:1".to_string(),
            format!("untag {id}"),
        ],
        "{out}"
    );
}
