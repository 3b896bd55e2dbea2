//! Pull and push against a real registry (Debian's docker-registry on 127.0.0.1) through the
//! docker CLI: anonymous and with login, by tag and by digest, multi-platform indexes, mirrors,
//! and a crash in the middle of a pull.

mod common;

use std::time::Duration;

use common::{
    berthd_with_busybox, busybox_rootfs_tar, docker_with_stdin, image_id, ok, stderr, stdout,
    Berthd, Registry,
};

fn ready() -> bool {
    common::is_root()
        && common::have_docker_cli()
        && common::have_busybox()
        && Registry::available()
}
const NOT_READY: &str = "needs root, the docker CLI, busybox-static and docker-registry (Debian's docker-registry package)";

#[test]
fn push_rmi_pull_by_tag_and_by_digest() {
    require!(ready(), NOT_READY);
    let reg = Registry::start(None);
    let b = berthd_with_busybox(&[]);
    let id = image_id(&b, "busybox");
    let name = format!("{}/team/bb:1", reg.host());
    ok(b.docker_out(&["tag", "busybox", &name]));
    let out = ok(b.docker_out(&["push", &name]));
    assert!(
        out.contains(&format!(
            "The push refers to repository [{}/team/bb]",
            reg.host()
        )),
        "{out}"
    );
    assert!(out.contains(": Pushed"), "{out}");
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("1: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest line in {out}"))
        .to_string();
    // Pushing again: the registry has the layer.
    let out = ok(b.docker_out(&["push", &name]));
    assert!(out.contains(": Layer already exists"), "{out}");
    // A tag the repository does not have, and a repository without names: moby's texts,
    // after the line naming the repository (moby's `Push` and `pushRepository`).
    for (missing, repo, why) in [
        (
            format!("{}/team/bb:missing", reg.host()),
            format!("{}/team/bb", reg.host()),
            format!("tag does not exist: {}/team/bb:missing", reg.host()),
        ),
        (
            format!("{}/nothing/here:1", reg.host()),
            format!("{}/nothing/here", reg.host()),
            format!(
                "An image does not exist locally with the tag: {}/nothing/here",
                reg.host()
            ),
        ),
    ] {
        let out = b.docker_out(&["push", &missing]);
        assert!(!out.status.success());
        assert!(
            stdout(&out).contains(&format!("The push refers to repository [{repo}]")),
            "{}",
            stdout(&out)
        );
        assert!(stderr(&out).contains(&why), "{}", stderr(&out));
    }
    // Another repository of the same registry: mounted, not uploaded.
    let other = format!("{}/other/bb:2", reg.host());
    ok(b.docker_out(&["tag", "busybox", &other]));
    let out = ok(b.docker_out(&["push", &other]));
    assert!(out.contains(": Mounted from team/bb"), "{out}");

    ok(b.docker_out(&["rmi", "-f", &id]));
    assert_eq!(ok(b.docker_out(&["images", "-q"])).trim(), "");
    let out = ok(b.docker_out(&["pull", &name]));
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    assert_eq!(
        image_id(&b, &name),
        id,
        "the image ID survives the round trip"
    );
    let digests = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &name,
    ]));
    assert!(
        digests.contains(&format!("{}/team/bb@{digest}", reg.host())),
        "{digests}"
    );
    let out = ok(b.docker_out(&["pull", &name]));
    assert!(out.contains("Status: Image is up to date"), "{out}");
    // By digest, into a clean store.
    ok(b.docker_out(&["rmi", "-f", &id]));
    let by_digest = format!("{}/team/bb@{digest}", reg.host());
    ok(b.docker_out(&["pull", &by_digest]));
    assert_eq!(image_id(&b, &by_digest), id);
    // A tag that does not exist.
    let out = b.docker_out(&["pull", &format!("{}/team/bb:nope", reg.host())]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "manifest for {}/team/bb:nope not found: manifest unknown",
            reg.host()
        )),
        "{}",
        stderr(&out)
    );
    // A digest that does not exist: named `repo@digest`, as dockerd's `FamiliarString`.
    let missing = format!("{}/team/bb@sha256:{}", reg.host(), "0".repeat(64));
    let out = b.docker_out(&["pull", &missing]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "manifest for {missing} not found: manifest unknown"
        )),
        "{}",
        stderr(&out)
    );
    let mut c = common::Conn::unix(&b.socket);
    let r = c.request(
        "POST",
        &format!(
            "/v1.51/images/create?fromImage={}/team/bb&tag=nope",
            reg.host()
        ),
        None,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    // The layer on disk is the original content.
    let upper = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{.GraphDriver.Data.UpperDir}}",
        &by_digest,
    ]));
    assert_eq!(
        std::fs::read(std::path::Path::new(upper.trim()).join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    // /distribution answers from the registry.
    let mut c = common::Conn::unix(&b.socket);
    let r = c.request("GET", &format!("/v1.51/distribution/{name}/json"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Descriptor"]["digest"], digest.as_str());
    // Pull and push events.
    let ev = common::events_text(&b, "0", &["event=push", "event=pull"], "{{.Action}}");
    assert!(
        ev.lines().filter(|l| *l == "push").count() >= 3 && ev.lines().any(|l| l == "pull"),
        "{ev}"
    );
}

#[test]
fn login_push_and_pull_with_credentials() {
    require!(
        ready() && common::have_command("htpasswd"),
        "needs root, the docker CLI, busybox-static, docker-registry and htpasswd (apache2-utils)"
    );
    let reg = Registry::start(Some(("tester", "s3cret")));
    let b = berthd_with_busybox(&[]);
    let name = format!("{}/private/bb:1", reg.host());
    ok(b.docker_out(&["tag", "busybox", &name]));
    // Without credentials the registry refuses.
    let out = b.docker_out(&["push", &name]);
    assert!(!out.status.success(), "{}", stdout(&out));
    // A wrong password: dockerd's words.
    let out = b.docker_out(&["login", "-u", "tester", "-p", "wrong", &reg.host()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "login attempt to http://{}/v2/ failed with status: 401 Unauthorized",
            reg.host()
        )),
        "{}",
        stderr(&out)
    );
    let out = ok(b.docker_out(&["login", "-u", "tester", "-p", "s3cret", &reg.host()]));
    assert!(out.contains("Login Succeeded"), "{out}");
    ok(b.docker_out(&["push", &name]));
    let id = image_id(&b, &name);
    ok(b.docker_out(&["rmi", "-f", &id]));
    ok(b.docker_out(&["pull", &name]));
    assert_eq!(image_id(&b, &name), id);
    ok(b.docker_out(&["logout", &reg.host()]));
    ok(b.docker_out(&["rmi", &name]));
    let out = b.docker_out(&["pull", &name]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
}

/// `docker pull -a`: every tag the registry lists, each announced as dockerd does, then one
/// status line for the repository.
#[test]
fn pull_all_tags_of_a_repository() {
    require!(ready(), NOT_READY);
    let reg = Registry::start(None);
    let b = berthd_with_busybox(&[]);
    let repo = format!("{}/all/bb", reg.host());
    ok(b.docker_out(&["tag", "busybox", &format!("{repo}:1")]));
    ok(b.docker_out(&["tag", "busybox", &format!("{repo}:2")]));
    // A third tag naming another image.
    let rootfs = busybox_rootfs_tar(b.dir.path());
    ok(docker_with_stdin(
        &b,
        &["import", "--change", "ENV X=1", "-", &format!("{repo}:3")],
        &rootfs,
    ));
    let third = image_id(&b, &format!("{repo}:3"));
    ok(b.docker_out(&["push", "--all-tags", &repo]));
    ok(b.docker_out(&["rmi", "-f", &third]));
    ok(b.docker_out(&["rmi", &format!("{repo}:1"), &format!("{repo}:2")]));
    let tags = |b: &Berthd| {
        let mut t: Vec<String> = ok(b.docker_out(&["images", "--format", "{{.Tag}}", &repo]))
            .lines()
            .map(str::to_string)
            .collect();
        t.sort();
        t
    };
    assert!(tags(&b).is_empty());

    let out = ok(b.docker_out(&["pull", "-a", &repo]));
    for t in ["1", "2", "3"] {
        assert!(out.contains(&format!("{t}: Pulling from all/bb")), "{out}");
    }
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {repo}\n")),
        "{out}"
    );
    assert_eq!(tags(&b), ["1", "2", "3"]);
    assert_eq!(image_id(&b, &format!("{repo}:3")), third);
    let out = ok(b.docker_out(&["pull", "-a", &repo]));
    assert!(
        out.contains(&format!("Status: Image is up to date for {repo}\n")),
        "{out}"
    );
    // A repository the registry does not have: its error, nothing pulled.
    let out = b.docker_out(&["pull", "-a", &format!("{}/all/none", reg.host())]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

/// A manifest of the registry, by tag: (digest, bytes).
fn registry_manifest(reg: &Registry, repo: &str, tag: &str) -> (String, Vec<u8>) {
    let (status, body) = reg.request(
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    use sha2::Digest;
    (
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body))),
        body,
    )
}

#[test]
fn pull_of_a_multi_platform_index_picks_the_platform() {
    require!(ready(), NOT_READY);
    let reg = Registry::start(None);
    let b = Berthd::start(&[]);
    let rootfs = busybox_rootfs_tar(b.dir.path());
    let host_arch = if cfg!(target_arch = "x86_64") {
        "amd64"
    } else {
        "arm64"
    };
    let other_arch = if host_arch == "amd64" {
        "arm64"
    } else {
        "amd64"
    };
    let mut entries = Vec::new();
    let mut ids = std::collections::HashMap::new();
    for arch in [host_arch, other_arch] {
        let name = format!("{}/multi/bb:{arch}", reg.host());
        ok(docker_with_stdin(
            &b,
            &[
                "import",
                "--platform",
                &format!("linux/{arch}"),
                "--change",
                &format!("LABEL arch={arch}"),
                "-",
                &name,
            ],
            &rootfs,
        ));
        ids.insert(arch, image_id(&b, &name));
        ok(b.docker_out(&["push", &name]));
        let (digest, body) = registry_manifest(&reg, "multi/bb", arch);
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest, "size": body.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": entries,
    }))
    .unwrap();
    let (status, body) = reg.request(
        "PUT",
        "/v2/multi/bb/manifests/all",
        &[(
            "Content-Type",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        )],
        &index,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    ok(b.docker_out(&["rmi", "-f", &ids[host_arch], &ids[other_arch]]));
    let name = format!("{}/multi/bb:all", reg.host());
    ok(b.docker_out(&["pull", &name]));
    let got = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{.Architecture}} {{index .Config.Labels \"arch\"}}",
        &name,
    ]));
    assert_eq!(got.trim(), format!("{host_arch} {host_arch}"));
    assert_eq!(image_id(&b, &name), ids[host_arch]);
    ok(b.docker_out(&["rmi", &name]));
    ok(b.docker_out(&["pull", "--platform", &format!("linux/{other_arch}"), &name]));
    assert_eq!(image_id(&b, &name), ids[other_arch]);
    let out = b.docker_out(&["pull", "--platform", "linux/s390x", &name]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no matching manifest for linux/s390x"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pull_through_a_registry_mirror() {
    require!(ready(), NOT_READY);
    let reg = Registry::start(None);
    let seed = berthd_with_busybox(&[]);
    let id = image_id(&seed, "busybox");
    let mirrored = format!("{}/library/busybox:latest", reg.host());
    ok(seed.docker_out(&["tag", "busybox", &mirrored]));
    ok(seed.docker_out(&["push", &mirrored]));
    let b = Berthd::start(&["--registry-mirror", &format!("http://{}", reg.host())]);
    let out = ok(b.docker_out(&["pull", "busybox"]));
    assert!(
        out.contains("Status: Downloaded newer image for busybox:latest"),
        "{out}"
    );
    assert_eq!(image_id(&b, "busybox:latest"), id);
    assert_eq!(image_id(&b, "docker.io/library/busybox:latest"), id);
    // Search: this registry has no search API, and berth says so.
    let out = b.docker_out(&["search", &format!("{}/busybox", reg.host())]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has no search API"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn kill_9_during_a_pull_then_the_pull_succeeds() {
    require!(ready(), NOT_READY);
    let reg = Registry::start(None);
    let mut b = berthd_with_busybox(&[]);
    // A second layer of 64 MiB of incompressible data makes the pull take a moment.
    let big = b.dir.path().join("big.tar");
    {
        let mut t = tar::Builder::new(std::fs::File::create(&big).unwrap());
        let mut data = vec![0u8; 64 << 20];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        common::append_file(&mut t, "big.bin", &data, 0o644, 0);
        t.finish().unwrap();
    }
    let name = format!("{}/big/img:1", reg.host());
    ok(b.docker_out(&["import", big.to_str().unwrap(), &name]));
    ok(b.docker_out(&["push", &name]));
    let id = image_id(&b, &name);
    ok(b.docker_out(&["rmi", "-f", &id]));
    let mut pull = b
        .docker()
        .args(["pull", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit(Duration::from_secs(10));
    let _ = pull.wait();
    b.spawn_with_host(&[]);
    let root = b.data_root();
    assert_eq!(
        std::fs::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "no scratch files survive"
    );
    // Every layer directory belongs to a registered layer.
    let records = std::fs::read_dir(root.join("image/overlay2/layerdb/sha256"))
        .unwrap()
        .count();
    let dirs = std::fs::read_dir(root.join("overlay2")).unwrap().count() - 1;
    assert_eq!(records, dirs, "no orphan layer directories");
    ok(b.docker_out(&["pull", &name]));
    assert_eq!(image_id(&b, &name), id);
    let upper = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{.GraphDriver.Data.UpperDir}}",
        &name,
    ]));
    assert_eq!(
        std::fs::metadata(std::path::Path::new(upper.trim()).join("big.bin"))
            .unwrap()
            .len(),
        64 << 20
    );
}

/// A registry that serves one hostile manifest: its layer "digest" is a path.
fn hostile_registry(target: &std::path::Path) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#.to_vec();
    use sha2::Digest;
    let cfg_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&config)));
    let evil = format!("sha256:../../../../../../../../..{}", target.display());
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": cfg_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 11, "digest": evil}],
    }))
    .unwrap();
    let handle = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        for stream in listener.incoming().take(20) {
            let Ok(mut s) = stream else { break };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (ct, body): (&str, Vec<u8>) = if path == "/v2/" {
                ("application/json", b"{}".to_vec())
            } else if path.contains("/manifests/") {
                (
                    "application/vnd.docker.distribution.manifest.v2+json",
                    manifest.clone(),
                )
            } else if path.contains("/blobs/") {
                (
                    "application/octet-stream",
                    if path.ends_with(&cfg_digest) {
                        config.clone()
                    } else {
                        b"EVIL CONTENT".to_vec()
                    },
                )
            } else {
                ("text/plain", b"not found".to_vec())
            };
            let head = line.starts_with("HEAD");
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            if !head {
                let _ = s.write_all(&body);
            }
        }
    });
    (port, handle)
}

#[test]
fn a_hostile_registry_cannot_write_outside_the_data_root() {
    require!(
        common::is_root() && common::have_docker_cli(),
        "needs root and the docker CLI"
    );
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("evil");
    let (port, _server) = hostile_registry(&target);
    let b = Berthd::start(&[]);
    let out = b.docker_out(&["pull", &format!("127.0.0.1:{port}/evil:1")]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("invalid layer digest"),
        "{}",
        stderr(&out)
    );
    assert!(!target.exists(), "the pull wrote outside the data root");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_build_pulls_its_missing_base_with_the_clis_credentials() {
    require!(
        ready() && common::have_command("htpasswd"),
        "needs root, the docker CLI, busybox-static, docker-registry and htpasswd (apache2-utils)"
    );
    let reg = Registry::start(Some(("builder", "s3cret")));
    let b = berthd_with_busybox(&[]);
    let name = format!("{}/private/base:1", reg.host());
    ok(b.docker_out(&["tag", "busybox", &name]));
    ok(b.docker_out(&["login", "-u", "builder", "-p", "s3cret", &reg.host()]));
    ok(b.docker_out(&["push", &name]));
    let id = image_id(&b, &name);
    ok(b.docker_out(&["rmi", "-f", &id]));
    // The build finds no base locally: it pulls it, with the credentials the CLI sends in
    // X-Registry-Config, and shows the pull's progress.
    let dir = b.dir.path().join("ctx");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {name}\nRUN echo on-pulled-base > /f\n"),
    )
    .unwrap();
    let out = b
        .docker()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-t", "from-registry:1"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Pull complete") || text.contains("Downloaded newer image"),
        "{text}"
    );
    assert_eq!(image_id(&b, &name), id);
    assert_eq!(
        ok(b.docker_out(&["run", "--rm", "from-registry:1", "cat", "/f"])),
        "on-pulled-base\n"
    );
    ok(b.docker_out(&["logout", &reg.host()]));
}
