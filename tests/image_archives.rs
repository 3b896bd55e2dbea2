//! Archives from elsewhere: hand-built multi-layer images with whiteouts, OCI layouts with a
//! multi-platform index and gzip layers, skopeo's output, hostile archives, and a crash in the
//! middle of a load.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{busybox_rootfs_tar, docker_with_stdin, go_arch, ok, stderr, Berthd, Conn};
use sha2::{Digest, Sha256};

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Tar entries: (path, kind, content) with kind 'f' file, 'd' dir.
fn layer_tar(entries: &[(&str, char, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, content) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match kind {
            'd' => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            _ => common::append_file(&mut b, path, content.as_bytes(), 0o644, 1_700_000_000),
        }
    }
    b.into_inner().unwrap()
}

fn config_json(arch: &str, diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": diff_ids.iter().map(|_| serde_json::json!({"created": "2024-01-01T00:00:00Z", "created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

fn add_file(t: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    common::append_file(t, path, data, 0o644, 0);
}

fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 64];
    // SAFETY: both strings are NUL-terminated and buf is valid for its length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

#[test]
fn multi_layer_docker_archive_with_whiteouts_and_an_opaque_dir() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let l1 = layer_tar(&[
        ("a/", 'd', ""),
        ("a/f", 'f', "one"),
        ("a/keep", 'f', "k"),
        ("b/", 'd', ""),
        ("b/x", 'f', "x"),
    ]);
    let l2 = layer_tar(&[
        ("a/", 'd', ""),
        ("a/.wh.f", 'f', ""),
        ("b/", 'd', ""),
        ("b/.wh..wh..opq", 'f', ""),
        ("b/y", 'f', "y"),
    ]);
    let diffs = vec![digest(&l1), digest(&l2)];
    let cfg = config_json(go_arch(), &diffs);
    let mut t = tar::Builder::new(Vec::new());
    add_file(
        &mut t,
        &format!("blobs/sha256/{}", &digest(&cfg)[7..]),
        &cfg,
    );
    add_file(&mut t, &format!("blobs/sha256/{}", &diffs[0][7..]), &l1);
    add_file(&mut t, &format!("blobs/sha256/{}", &diffs[1][7..]), &l2);
    let manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", &digest(&cfg)[7..]),
        "RepoTags": ["ml:1"],
        "Layers": [format!("blobs/sha256/{}", &diffs[0][7..]), format!("blobs/sha256/{}", &diffs[1][7..])],
    }]);
    add_file(&mut t, "manifest.json", manifest.to_string().as_bytes());
    let path = b.dir.path().join("ml.tar");
    std::fs::write(&path, t.into_inner().unwrap()).unwrap();
    let out = ok(b.docker_out(&["load", "-i", path.to_str().unwrap()]));
    assert!(out.contains("Loaded image: ml:1"), "{out}");
    assert_eq!(
        ok(b.docker_out(&["image", "inspect", "--format", "{{.Id}}", "ml:1"])).trim(),
        digest(&cfg)
    );
    let upper = PathBuf::from(
        ok(b.docker_out(&[
            "image",
            "inspect",
            "--format",
            "{{.GraphDriver.Data.UpperDir}}",
            "ml:1",
        ]))
        .trim(),
    );
    let lower = PathBuf::from(
        ok(b.docker_out(&[
            "image",
            "inspect",
            "--format",
            "{{.GraphDriver.Data.LowerDir}}",
            "ml:1",
        ]))
        .trim(),
    );
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let wh = std::fs::symlink_metadata(upper.join("a/f")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "a whiteout is a 0/0 char device"
    );
    assert!(!upper.join("a/.wh.f").exists());
    assert!(!upper.join("b/.wh..wh..opq").exists());
    match lgetxattr(&upper.join("b"), "trusted.overlay.opaque") {
        Some(v) => assert_eq!(v, b"y"),
        None => eprintln!(
            "note: the data root's filesystem keeps no trusted xattrs; opaque marker not checked"
        ),
    }
    assert_eq!(std::fs::read_to_string(lower.join("a/f")).unwrap(), "one");
    assert_eq!(std::fs::read_to_string(upper.join("b/y")).unwrap(), "y");
    // Save reproduces both layers exactly: the saved blobs have the same digests.
    let saved = b.dir.path().join("ml-saved.tar");
    ok(b.docker_out(&["save", "-o", saved.to_str().unwrap(), "ml:1"]));
    let mut ar = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    let mut found = 0;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            assert_eq!(digest(&data)[7..], *hex, "blob {name} matches its name");
            if diffs.iter().any(|d| &d[7..] == hex) {
                found += 1;
            }
        }
    }
    assert_eq!(found, 2);
    // A layer whose files changed on disk (same size, other bytes) no longer hashes to its
    // DiffID: the save fails rather than pass the layer off as whole.
    std::fs::write(upper.join("b/y"), "z").unwrap();
    let o = b.docker_out(&["save", "-o", saved.to_str().unwrap(), "ml:1"]);
    assert!(!o.status.success(), "a tampered layer was saved");
    assert!(
        b.log_text()
            .contains(&format!("layer {} cannot be reproduced exactly", diffs[1])),
        "{}",
        b.log_text()
    );
    std::fs::write(upper.join("b/y"), "y").unwrap();
    ok(b.docker_out(&["save", "-o", saved.to_str().unwrap(), "ml:1"]));
}

/// A legacy docker-archive (`<id>/layer.tar`, as dockerd before 25 writes it) where one blob
/// is two layers of the image (the second a symlink to the first, on another parent), with a
/// broken gzip blob no image uses: it fails only a manifest that uses it, naming it.
#[test]
fn a_legacy_archive_with_one_blob_used_twice() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let l1 = layer_tar(&[("a/", 'd', ""), ("a/f", 'f', "one")]);
    let l2 = layer_tar(&[("a/", 'd', ""), ("a/f", 'f', "two")]);
    let diffs = vec![digest(&l1), digest(&l2), digest(&l1)];
    let cfg = config_json(go_arch(), &diffs);
    let cfg_name = format!("{}.json", &digest(&cfg)[7..]);
    let mut t = tar::Builder::new(Vec::new());
    t.mode(tar::HeaderMode::Deterministic);
    let dir = |t: &mut tar::Builder<Vec<u8>>, name: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        t.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    for (d, data) in [("l1", &l1), ("l2", &l2)] {
        dir(&mut t, &format!("{d}/"));
        add_file(&mut t, &format!("{d}/VERSION"), b"1.0");
        add_file(&mut t, &format!("{d}/layer.tar"), data);
    }
    dir(&mut t, "l3/");
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    t.append_link(&mut h, "l3/layer.tar", "../l1/layer.tar")
        .unwrap();
    add_file(
        &mut t,
        "unused.gz",
        &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff],
    );
    add_file(&mut t, &cfg_name, &cfg);
    let manifest = serde_json::json!([{
        "Config": cfg_name,
        "RepoTags": ["twice:1"],
        "Layers": ["l1/layer.tar", "l2/layer.tar", "l3/layer.tar"],
    }]);
    add_file(&mut t, "manifest.json", manifest.to_string().as_bytes());
    // dockerd before 25 names the top layer's v1 directory here; load ignores the file when
    // there is a manifest.json, as moby's.
    add_file(&mut t, "repositories", b"{\"twice\":{\"1\":\"l3\"}}\n");
    let path = b.dir.path().join("twice.tar");
    std::fs::write(&path, t.into_inner().unwrap()).unwrap();
    let out = ok(b.docker_out(&["load", "-i", path.to_str().unwrap()]));
    assert!(out.contains("Loaded image: twice:1"), "{out}");
    let inspect = |f: &str| ok(b.docker_out(&["image", "inspect", "--format", f, "twice:1"]));
    assert_eq!(inspect("{{.Id}}").trim(), digest(&cfg));
    assert_eq!(
        inspect("{{range .RootFS.Layers}}{{.}} {{end}}").trim(),
        diffs.join(" ")
    );
    // The top layer is the first blob again, with its own directory.
    let upper = PathBuf::from(inspect("{{.GraphDriver.Data.UpperDir}}").trim());
    assert_eq!(std::fs::read_to_string(upper.join("a/f")).unwrap(), "one");
    let lowers = inspect("{{.GraphDriver.Data.LowerDir}}");
    let lowers: Vec<&str> = lowers.trim().split(':').collect();
    assert_eq!(lowers.len(), 2);
    assert_ne!(Path::new(lowers[1]), upper);
    assert_eq!(
        std::fs::read_to_string(Path::new(lowers[0]).join("a/f")).unwrap(),
        "two"
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(lowers[1]).join("a/f")).unwrap(),
        "one"
    );
    // Saved and loaded again under another name: the same image, every layer intact.
    let saved = b.dir.path().join("twice-saved.tar");
    ok(b.docker_out(&["save", "-o", saved.to_str().unwrap(), "twice:1"]));
    ok(b.docker_out(&["rmi", "twice:1"]));
    let out = ok(b.docker_out(&["load", "-i", saved.to_str().unwrap()]));
    assert!(out.contains("Loaded image: twice:1"), "{out}");
    assert_eq!(inspect("{{.Id}}").trim(), digest(&cfg));
    // A manifest that uses the broken blob fails with the archive's fault (its layers not in
    // the store any more: a layer present is not read again).
    ok(b.docker_out(&["rmi", "twice:1"]));
    let bad = serde_json::json!([{"Config": cfg_name, "RepoTags": ["bad:1"],
        "Layers": ["l1/layer.tar", "l2/layer.tar", "unused.gz"]}]);
    let mut t = tar::Builder::new(Vec::new());
    add_file(
        &mut t,
        "unused.gz",
        &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff],
    );
    add_file(&mut t, "l1/layer.tar", &l1);
    add_file(&mut t, "l2/layer.tar", &l2);
    add_file(&mut t, &cfg_name, &cfg);
    add_file(&mut t, "manifest.json", bad.to_string().as_bytes());
    let path = b.dir.path().join("bad.tar");
    std::fs::write(&path, t.into_inner().unwrap()).unwrap();
    let out = b.docker_out(&["load", "-i", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(text.contains("unused.gz"), "{text}");
    assert!(
        b.docker_out(&["image", "inspect", "bad:1"]).status.code() != Some(0),
        "nothing is tagged"
    );
}

/// The format of `docker save` before Docker 1.10 (as dockerode's `test-load.tar`): a
/// directory per v1 image naming its parent, `repositories` for the names, no manifest.json.
#[test]
fn the_pre_1_10_save_format_loads() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let base = std::fs::read(busybox_rootfs_tar(b.dir.path())).unwrap();
    let top = layer_tar(&[("etc/", 'd', ""), ("etc/motd", 'f', "legacy\n")]);
    let (base_id, top_id) = ("a".repeat(64), "b".repeat(64));
    let v1 = |id: &str, parent: Option<&str>, cmd: &str, run: &str| {
        let mut j = serde_json::json!({
            "id": id, "created": "2015-10-13T23:47:48.522046233Z", "docker_version": "1.8.2",
            "container_config": {"Cmd": ["/bin/sh", "-c", run]},
            "config": {"Cmd": [cmd], "Env": ["PATH=/bin"]},
            "architecture": go_arch(), "os": "linux", "Size": 12,
        });
        if let Some(p) = parent {
            j["parent"] = serde_json::json!(p);
        }
        j.to_string()
    };
    let mut t = tar::Builder::new(Vec::new());
    for (id, json, layer) in [
        (
            &base_id,
            v1(&base_id, None, "sh", "#(nop) ADD file:x in /"),
            &base,
        ),
        (
            &top_id,
            v1(&top_id, Some(&base_id), "cat", "echo legacy > /etc/motd"),
            &top,
        ),
    ] {
        add_file(&mut t, &format!("{id}/VERSION"), b"1.0");
        add_file(&mut t, &format!("{id}/json"), json.as_bytes());
        add_file(&mut t, &format!("{id}/layer.tar"), layer);
    }
    let repos = serde_json::json!({"old/legacy": {"v1": top_id}});
    add_file(&mut t, "repositories", repos.to_string().as_bytes());
    let path = b.dir.path().join("legacy.tar");
    std::fs::write(&path, t.into_inner().unwrap()).unwrap();

    let out = ok(b.docker_out(&["load", "-i", path.to_str().unwrap()]));
    assert_eq!(out.trim(), "Loaded image: old/legacy:v1");
    // Both layers, the v1 config kept (without the v1 bookkeeping), one history entry per v1
    // image, and the parent's image as the parent link.
    let f = "{{len .RootFS.Layers}} {{.Config.Cmd}} {{.DockerVersion}} {{.Created}}";
    assert_eq!(
        common::inspect(&b, "old/legacy:v1", f),
        "2 [cat] 1.8.2 2015-10-13T23:47:48.522046233Z"
    );
    let parent = common::inspect(&b, "old/legacy:v1", "{{.Parent}}");
    assert!(parent.starts_with("sha256:"), "{parent}");
    assert_eq!(common::inspect(&b, &parent, "{{len .RootFS.Layers}}"), "1");
    let history = ok(b.docker_out(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "old/legacy:v1",
    ]));
    assert_eq!(
        history.lines().collect::<Vec<_>>(),
        [
            "/bin/sh -c echo legacy > /etc/motd",
            "/bin/sh -c #(nop) ADD file:x in /"
        ]
    );
    let o = ok(b.docker_out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "cat",
        "old/legacy:v1",
        "/etc/motd",
    ]));
    assert_eq!(o, "legacy\n");

    // A name in `repositories` that no directory has: moby's words.
    let mut t = tar::Builder::new(Vec::new());
    add_file(&mut t, "repositories", br#"{"x":{"y":"nope"}}"#);
    std::fs::write(&path, t.into_inner().unwrap()).unwrap();
    let o = b.docker_out(&["load", "-i", path.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid target ID: nope"),
        "{}",
        stderr(&o)
    );
    // A parent that leads out of the archive is refused.
    let mut t = tar::Builder::new(Vec::new());
    let evil = v1(&top_id, Some("../../etc"), "cat", "x");
    add_file(&mut t, &format!("{top_id}/json"), evil.as_bytes());
    add_file(&mut t, &format!("{top_id}/layer.tar"), &top);
    add_file(&mut t, "repositories", repos.to_string().as_bytes());
    std::fs::write(&path, t.into_inner().unwrap()).unwrap();
    let o = b.docker_out(&["load", "-i", path.to_str().unwrap()]);
    assert!(stderr(&o).contains("invalid image ID"), "{}", stderr(&o));
}

#[test]
fn oci_layout_with_a_two_platform_index_and_gzip_layers() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let mut t = tar::Builder::new(Vec::new());
    let mut manifests = Vec::new();
    let mut host_cfg = String::new();
    for arch in [
        go_arch(),
        if go_arch() == "amd64" {
            "arm64"
        } else {
            "amd64"
        },
    ] {
        let layer = layer_tar(&[("etc/", 'd', ""), ("etc/arch", 'f', arch)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&layer).unwrap();
        let gz = gz.finish().unwrap();
        let cfg = config_json(arch, &[digest(&layer)]);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&cfg), "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&gz), "size": gz.len()}],
        }))
        .unwrap();
        for blob in [&cfg, &gz, &manifest] {
            add_file(
                &mut t,
                &format!("blobs/sha256/{}", &digest(blob)[7..]),
                blob,
            );
        }
        if arch == go_arch() {
            host_cfg = digest(&cfg);
        }
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest), "size": manifest.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let nested = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests})).unwrap();
    add_file(
        &mut t,
        &format!("blobs/sha256/{}", &digest(&nested)[7..]),
        &nested,
    );
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest(&nested), "size": nested.len(),
        "annotations": {"io.containerd.image.name": "docker.io/library/multi:1", "org.opencontainers.image.ref.name": "1"},
    }]});
    add_file(&mut t, "index.json", index.to_string().as_bytes());
    add_file(&mut t, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let path = b.dir.path().join("oci.tar");
    std::fs::write(&path, t.into_inner().unwrap()).unwrap();
    let out = ok(b.docker_out(&["load", "-i", path.to_str().unwrap()]));
    assert!(out.contains("Loaded image: multi:1"), "{out}");
    let got = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Architecture}}",
        "multi:1",
    ]));
    assert_eq!(got.trim(), format!("{host_cfg} {}", go_arch()));
    let upper = ok(b.docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{.GraphDriver.Data.UpperDir}}",
        "multi:1",
    ]));
    assert_eq!(
        std::fs::read_to_string(Path::new(upper.trim()).join("etc/arch")).unwrap(),
        go_arch()
    );
}

#[test]
fn skopeo_archives_load_with_their_digests() {
    require!(
        ready() && common::have_command("skopeo"),
        "needs root, the docker CLI, busybox-static and skopeo"
    );
    let b = Berthd::start(&[]);
    let rootfs = busybox_rootfs_tar(b.dir.path());
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    let id = ok(b.docker_out(&["image", "inspect", "--format", "{{.Id}}", "busybox"]))
        .trim()
        .to_string();
    let saved = b.dir.path().join("saved.tar");
    ok(b.docker_out(&["save", "-o", saved.to_str().unwrap(), "busybox:latest"]));
    let d = b.dir.path();
    for (dest, name) in [
        (
            format!(
                "docker-archive:{}:skopeo/bb:1",
                d.join("s-docker.tar").display()
            ),
            "skopeo/bb:1",
        ),
        (
            format!("oci-archive:{}:skopeo/bb:2", d.join("s-oci.tar").display()),
            "skopeo/bb:2",
        ),
    ] {
        let out = std::process::Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "-q",
                &format!("docker-archive:{}", saved.display()),
                &dest,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo {dest}: {}", stderr(&out));
        let file = dest.split(':').nth(1).unwrap();
        let out = ok(b.docker_out(&["load", "-i", file]));
        assert!(out.contains("Loaded image"), "{out}");
        if name.ends_with(":1") {
            assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
            let got = ok(b.docker_out(&["image", "inspect", "--format", "{{.Id}}", name]));
            assert_eq!(
                got.trim(),
                id,
                "skopeo's docker-archive keeps the config digest"
            );
        } else {
            // skopeo converts the config to OCI's media type, which may change its bytes: the
            // loaded image must have the config digest that skopeo's manifest names.
            let cfg = oci_archive_config_digest(Path::new(file));
            assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
            let got = ok(b.docker_out(&["image", "inspect", "--format", "{{.Id}}", name]));
            assert_eq!(got.trim(), cfg);
        }
    }
}

/// The config digest of the (single) image in an OCI archive.
fn oci_archive_config_digest(path: &Path) -> String {
    let mut files = std::collections::HashMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        files.insert(name, data);
    }
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&files[&format!("blobs/sha256/{}", &m[7..])]).unwrap();
    manifest["config"]["digest"].as_str().unwrap().to_string()
}

/// A tar with raw entry names (the tar crate refuses `..` in set_path).
fn raw_tar(entries: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, typ, link, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.as_old_mut().linkflag[0] = *typ;
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn hostile_archives_are_refused_and_write_nothing_outside() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("evil");
    let tpath = target.to_str().unwrap().trim_start_matches('/').to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            raw_tar(&[(&format!("../../../../../../../../{tpath}"), b'0', "", b"x")]),
        ),
        (
            "symlink then file",
            raw_tar(&[
                ("l", b'2', outside.path().to_str().unwrap(), b""),
                ("l/evil", b'0', "", b"x"),
            ]),
        ),
        (
            "relative symlink then file",
            raw_tar(&[
                ("r", b'2', "../../../../../../../../../../", b""),
                (&format!("r/{tpath}"), b'0', "", b"x"),
            ]),
        ),
        (
            "hard link to /etc/shadow",
            raw_tar(&[("h", b'1', "/etc/shadow", b"")]),
        ),
    ];
    let shadow = std::fs::read("/etc/shadow").ok();
    for (what, data) in cases {
        let p = b.dir.path().join("hostile.tar");
        std::fs::write(&p, &data).unwrap();
        let imp = docker_with_stdin(&b, &["import", "-", "hostile:1"], &p);
        let load = b.docker_out(&["load", "-i", p.to_str().unwrap()]);
        assert!(!target.exists(), "{what}: wrote outside the data root");
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "{what}"
        );
        assert!(!load.status.success(), "{what}: load must fail");
        if !imp.status.success() {
            let err = stderr(&imp);
            assert!(!err.is_empty(), "{what}");
        } else {
            // Contained: whatever was created lives inside the layer.
            let upper = ok(b.docker_out(&[
                "image",
                "inspect",
                "--format",
                "{{.GraphDriver.Data.UpperDir}}",
                "hostile:1",
            ]));
            assert!(Path::new(upper.trim()).starts_with(b.data_root()), "{what}");
            ok(b.docker_out(&["rmi", "hostile:1"]));
        }
    }
    assert_eq!(std::fs::read("/etc/shadow").ok(), shadow);
    // A link to /etc/shadow is refused outright.
    let p = b.dir.path().join("shadow.tar");
    std::fs::write(&p, raw_tar(&[("h", b'1', "/etc/shadow", b"")])).unwrap();
    let out = docker_with_stdin(&b, &["import", "-", "shadow:1"], &p);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("h"), "{}", stderr(&out));
}

#[test]
fn kill_9_in_the_middle_of_a_load_leaves_a_consistent_store() {
    require!(ready(), NOT_READY);
    let mut b = Berthd::start(&[]);
    let rootfs = busybox_rootfs_tar(b.dir.path());
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    let saved = b.dir.path().join("saved.tar");
    ok(b.docker_out(&["save", "-o", saved.to_str().unwrap(), "busybox:latest"]));
    ok(b.docker_out(&["rmi", "busybox"]));
    let data = std::fs::read(&saved).unwrap();
    let mut c = Conn::unix(&b.socket);
    let head = format!(
        "POST /v1.51/images/load?quiet=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    c.stream_mut().write_all(head.as_bytes()).unwrap();
    c.stream_mut()
        .write_all(&data[..data.len() * 2 / 3])
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit(Duration::from_secs(10));
    drop(c);
    b.spawn_with_host(&[]);
    // Nothing half-registered: no images, no layer records, no layer dirs, an empty scratch.
    assert_eq!(ok(b.docker_out(&["images", "-q"])).trim(), "");
    let root = b.data_root();
    let overlay: Vec<_> = std::fs::read_dir(root.join("overlay2"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(overlay, vec![std::ffi::OsString::from("l")]);
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(root.join("image/overlay2/layerdb/sha256"))
            .unwrap()
            .count(),
        0
    );
    // And the load succeeds when repeated.
    let out = ok(b.docker_out(&["load", "-i", saved.to_str().unwrap()]));
    assert!(out.contains("Loaded image: busybox:latest"), "{out}");
}
