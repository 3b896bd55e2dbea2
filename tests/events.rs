//! `GET /events` through the docker CLI (`docker events --since .. --until .. --filter ..
//! --format '{{json .}}'`) and raw HTTP: every object type's actions with dockerd's
//! attributes (containers, images, volumes, networks, the daemon's reload), each filter,
//! `since`/`until` over more than 1000 buffered events, unknown filters ignored, and the legacy
//! `status`/`id`/`from` fields.

mod common;

use std::time::Duration;

use common::{berthd_with_busybox, image_id, ok, stderr, stdout, Berthd, Conn};
use serde_json::Value;

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

/// Unix seconds with nanoseconds, as the API takes `since`/`until`.
fn now_nanos() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// `docker events --since since --until <now+1s> <filters>` as JSON objects.
fn events(b: &Berthd, since: &str, filters: &[&str]) -> Vec<Value> {
    common::events_text(b, since, filters, "{{json .}}")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `Type Action` of each event.
fn actions(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            format!(
                "{} {}",
                e["Type"].as_str().unwrap(),
                e["Action"].as_str().unwrap()
            )
        })
        .collect()
}

/// The first event of `action` (of any type), with a readable failure.
fn find<'a>(evs: &'a [Value], typ: &str, action: &str) -> &'a Value {
    evs.iter()
        .find(|e| e["Type"] == typ && e["Action"] == action)
        .unwrap_or_else(|| panic!("no {typ} {action} in {:?}", actions(evs)))
}

fn attr<'a>(e: &'a Value, key: &str) -> &'a str {
    e["Actor"]["Attributes"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no attribute {key} in {e}"))
}

/// Percent-encode a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET <path>` over raw HTTP: the status and the JSON lines of the body.
fn raw_events(b: &Berthd, path: &str) -> (u16, Vec<Value>, String) {
    let mut c = Conn::unix(&b.socket);
    let r = c.request("GET", path, None);
    let text = r.text();
    let lines = if r.status == 200 {
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    } else {
        Vec::new()
    };
    (r.status, lines, text)
}

#[test]
fn container_events_carry_dockerds_attributes() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let since = now_nanos();
    // A foreground run: create, attach, start, die with its exit code.
    let o = b.docker_out(&[
        "run", "--name", "evrun", "--label", "tier=web", "busybox", "sh", "-c", "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let id = ok(b.docker_out(&[
        "run",
        "-d",
        "-t",
        "--name",
        "evc",
        "--label",
        "tier=web",
        "--label",
        "name=label-loses",
        "busybox",
        "sleep",
        "1000",
    ]))
    .trim()
    .to_string();
    ok(b.docker_out(&["top", "evc"]));
    let mut c = Conn::unix(&b.socket);
    let r = c.request("POST", "/v1.51/containers/evc/resize?h=30&w=100", None);
    assert_eq!(r.status, 200, "{}", r.text());
    ok(b.docker_out(&["pause", "evc"]));
    ok(b.docker_out(&["unpause", "evc"]));
    ok(b.docker_out(&["rename", "evc", "evc2"]));
    ok(b.docker_out(&["update", "--restart", "on-failure:2", "evc2"]));
    let host_file = b.dir.path().join("cp-in.txt");
    std::fs::write(&host_file, "x").unwrap();
    ok(b.docker_out(&["cp", host_file.to_str().unwrap(), "evc2:/tmp/"]));
    let out_dir = b.dir.path().join("cp-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    ok(b.docker_out(&["cp", "evc2:/tmp/cp-in.txt", out_dir.to_str().unwrap()]));
    let tar = b.dir.path().join("export.tar");
    ok(b.docker_out(&["export", "-o", tar.to_str().unwrap(), "evc2"]));
    let img = ok(b.docker_out(&["commit", "-m", "ev commit", "evc2", "evimg:1"]))
        .trim()
        .to_string();
    // PID 1 ignores SIGUSR1 without a handler: the container keeps running.
    ok(b.docker_out(&["kill", "-s", "USR1", "evc2"]));
    ok(b.docker_out(&["restart", "-t", "0", "evc2"]));
    ok(b.docker_out(&["stop", "-t", "1", "evc2"]));
    ok(b.docker_out(&["rm", "evc2"]));
    ok(b.docker_out(&["container", "prune", "-f"]));

    let evs = events(&b, &since, &["type=container"]);
    let got = actions(&evs);
    for want in [
        "create",
        "attach",
        "start",
        "die",
        "top",
        "resize",
        "pause",
        "unpause",
        "rename",
        "update",
        "extract-to-dir",
        "archive-path",
        "export",
        "commit",
        "kill",
        "stop",
        "restart",
        "destroy",
        "prune",
    ] {
        assert!(
            got.contains(&format!("container {want}")),
            "{want} missing in {got:?}"
        );
    }
    // Every event about a container has its name, image and labels; `name` wins over a label.
    for e in evs.iter().filter(|e| e["Action"] != "prune") {
        assert_eq!(attr(e, "image"), "busybox", "{e}");
        assert_eq!(attr(e, "tier"), "web", "{e}");
        assert!(attr(e, "name").starts_with("ev"), "{e}");
        // The legacy fields (API < 1.52).
        assert_eq!(e["status"], e["Action"], "{e}");
        assert_eq!(e["id"], e["Actor"]["ID"], "{e}");
        assert_eq!(e["from"], "busybox", "{e}");
        assert_eq!(e["scope"], "local");
    }
    let die = evs
        .iter()
        .find(|e| e["Action"] == "die" && attr(e, "name") == "evrun")
        .unwrap();
    assert_eq!(attr(die, "exitCode"), "3");
    assert!(attr(die, "execDuration").parse::<u64>().is_ok());
    let resize = find(&evs, "container", "resize");
    assert_eq!(
        (attr(resize, "height"), attr(resize, "width")),
        ("30", "100")
    );
    let rename = find(&evs, "container", "rename");
    assert_eq!(attr(rename, "oldName"), "/evc");
    assert_eq!(attr(rename, "name"), "evc2");
    assert_eq!(rename["Actor"]["ID"], id.as_str());
    let commit = find(&evs, "container", "commit");
    assert_eq!(attr(commit, "imageID"), img);
    assert_eq!(attr(commit, "imageRef"), "evimg:1");
    assert_eq!(attr(commit, "comment"), "ev commit");
    let kills: Vec<&str> = evs
        .iter()
        .filter(|e| e["Action"] == "kill")
        .map(|e| attr(e, "signal"))
        .collect();
    assert!(kills.contains(&"10"), "{kills:?}"); // USR1
    assert!(kills.contains(&"9"), "{kills:?}"); // restart -t 0, and stop after 1s
    let prune = find(&evs, "container", "prune");
    assert_eq!(prune["Actor"]["ID"], "");
    assert!(attr(prune, "reclaimed").parse::<u64>().is_ok());
    // Ordering within one container's life.
    let pos = |a: &str| {
        got.iter()
            .position(|x| x == &format!("container {a}"))
            .unwrap()
    };
    assert!(
        pos("create") < pos("start") && pos("start") < pos("die"),
        "{got:?}"
    );

    // The commit made an image: `create` (API 1.46+) and `tag`.
    let ievs = events(&b, &since, &["type=image"]);
    let create = find(&ievs, "image", "create");
    assert_eq!(create["Actor"]["ID"], img.as_str());
    assert_eq!(attr(create, "name"), img);
    assert_eq!(attr(find(&ievs, "image", "tag"), "name"), "evimg:1");
}

#[test]
fn image_events_and_the_image_filter() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let bb = image_id(&b, "busybox");
    let since = now_nanos();
    ok(b.docker_out(&["tag", "busybox", "evi:1"]));
    ok(b.docker_out(&["create", "--name", "evl", "busybox", "true"]));
    let labelled = ok(b.docker_out(&["commit", "--change", "LABEL app=ev", "evl", "evl:1"]))
        .trim()
        .to_string();
    ok(b.docker_out(&["rm", "evl"]));
    let tar = b.dir.path().join("save.tar");
    ok(b.docker_out(&["save", "-o", tar.to_str().unwrap(), "evi:1"]));
    ok(b.docker_out(&["rmi", "evi:1"]));
    ok(b.docker_out(&["load", "-i", tar.to_str().unwrap()]));
    ok(b.docker_out(&["rmi", "evl:1"]));
    ok(b.docker_out(&["image", "prune", "-f"]));

    let evs = events(&b, &since, &["type=image"]);
    let got = actions(&evs);
    let tags: Vec<&str> = evs
        .iter()
        .filter(|e| e["Action"] == "tag")
        .map(|e| attr(e, "name"))
        .collect();
    assert_eq!(tags, vec!["evi:1", "evl:1"], "{got:?}");
    for action in ["untag", "save", "load"] {
        let e = evs
            .iter()
            .find(|e| e["Action"] == action && e["Actor"]["ID"] == bb.as_str())
            .unwrap_or_else(|| panic!("no {action} of busybox in {got:?}"));
        // As dockerd: these name the image ID itself.
        assert_eq!(attr(e, "name"), bb, "{e}");
        assert_eq!(e["status"], action);
        assert_eq!(e["id"], bb.as_str());
        assert!(e.get("from").is_none(), "{e}");
    }
    // The labelled image's events carry its labels while it exists, not after `delete`.
    let untag = evs
        .iter()
        .find(|e| e["Action"] == "untag" && e["Actor"]["ID"] == labelled.as_str())
        .unwrap();
    assert_eq!(attr(untag, "app"), "ev");
    let delete = find(&evs, "image", "delete");
    assert_eq!(delete["Actor"]["ID"], labelled.as_str());
    assert_eq!(attr(delete, "name"), labelled);
    assert!(
        delete["Actor"]["Attributes"].get("app").is_none(),
        "{delete}"
    );
    let prune = find(&evs, "image", "prune");
    assert!(attr(prune, "reclaimed").parse::<u64>().is_ok());

    // `image=` matches the name with or without its tag, or the ID; container events by
    // their `image`.
    let by_repo = actions(&events(&b, &since, &["image=evl"]));
    assert_eq!(by_repo, vec!["image tag"], "{by_repo:?}");
    let by_ref = actions(&events(&b, &since, &["image=evl:1"]));
    assert_eq!(by_ref, vec!["image tag"], "{by_ref:?}");
    let by_id = events(&b, &since, &[&format!("image={labelled}")]);
    assert!(
        actions(&by_id).contains(&"image delete".to_string()),
        "{:?}",
        actions(&by_id)
    );
    let containers = actions(&events(&b, &since, &["image=busybox", "type=container"]));
    assert_eq!(
        containers,
        vec!["container create", "container commit", "container destroy"]
    );
    // `label=` on image events.
    let labelled_evs = actions(&events(&b, &since, &["label=app=ev"]));
    assert!(
        labelled_evs.contains(&"image untag".to_string())
            && !labelled_evs.contains(&"image delete".to_string()),
        "{labelled_evs:?}"
    );
}

#[test]
fn volume_events_and_the_volume_filter() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let since = now_nanos();
    ok(b.docker_out(&["volume", "create", "evv"]));
    let cid = ok(b.docker_out(&["run", "-d", "-v", "evv:/data:ro", "busybox", "true"]))
        .trim()
        .to_string();
    ok(b.docker_out(&["wait", &cid]));
    ok(b.docker_out(&["rm", &cid]));
    ok(b.docker_out(&["volume", "rm", "evv"]));
    ok(b.docker_out(&["volume", "create", "evp"]));
    ok(b.docker_out(&["volume", "prune", "-a", "-f"]));

    let evs = events(&b, &since, &["type=volume"]);
    assert_eq!(
        actions(&evs),
        vec![
            "volume create",
            "volume mount",
            "volume unmount",
            "volume destroy",
            "volume create",
            "volume destroy",
            "volume prune",
        ]
    );
    let mount = find(&evs, "volume", "mount");
    assert_eq!(mount["Actor"]["ID"], "evv");
    assert_eq!(attr(mount, "container"), cid);
    assert_eq!(attr(mount, "destination"), "/data");
    assert_eq!(attr(mount, "driver"), "local");
    assert_eq!(attr(mount, "read/write"), "false");
    assert_eq!(attr(mount, "propagation"), "");
    let unmount = find(&evs, "volume", "unmount");
    assert_eq!(attr(unmount, "container"), cid);
    assert_eq!(attr(unmount, "driver"), "local");
    assert_eq!(attr(find(&evs, "volume", "create"), "driver"), "local");
    let prune = find(&evs, "volume", "prune");
    assert_eq!(prune["Actor"]["ID"], "");
    assert_eq!(attr(prune, "reclaimed"), "0");
    // No legacy fields on volume events.
    assert!(mount.get("status").is_none(), "{mount}");

    let only = actions(&events(&b, &since, &["volume=evv"]));
    assert_eq!(
        only,
        vec![
            "volume create",
            "volume mount",
            "volume unmount",
            "volume destroy"
        ]
    );
    // Two values of one filter are alternatives; two filters must both match.
    let both = events(&b, &since, &["volume=evv", "volume=evp", "event=destroy"]);
    assert_eq!(actions(&both), vec!["volume destroy", "volume destroy"]);
}

#[test]
fn network_events_and_the_network_filter() {
    require!(
        ready() && common::have_command("nft") && common::have_command("unshare"),
        "needs root, the docker CLI, busybox-static, nftables and unshare"
    );
    let b = Berthd::start_netns(&[]);
    let rootfs = common::busybox_rootfs_tar(b.dir.path());
    ok(b.docker_out(&["import", rootfs.to_str().unwrap(), "busybox:latest"]));
    let since = now_nanos();
    let net = ok(b.docker_out(&["network", "create", "evn"]))
        .trim()
        .to_string();
    let cid = ok(b.docker_out(&["run", "-d", "--network", "evn", "busybox", "sleep", "1000"]))
        .trim()
        .to_string();
    ok(b.docker_out(&["network", "disconnect", "evn", &cid]));
    ok(b.docker_out(&["network", "connect", "evn", &cid]));
    ok(b.docker_out(&["rm", "-f", &cid]));
    ok(b.docker_out(&["network", "rm", "evn"]));
    ok(b.docker_out(&["network", "create", "evp"]));
    ok(b.docker_out(&["network", "prune", "-f"]));

    let evs = events(&b, &since, &["type=network"]);
    let mine: Vec<&Value> = evs
        .iter()
        .filter(|e| e["Actor"]["ID"] == net.as_str())
        .collect();
    let got: Vec<String> = mine
        .iter()
        .map(|e| e["Action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        got,
        vec![
            "create",
            "connect",
            "disconnect",
            "connect",
            "disconnect",
            "destroy"
        ],
        "{:?}",
        actions(&evs)
    );
    for e in &mine {
        assert_eq!(attr(e, "name"), "evn");
        assert_eq!(attr(e, "type"), "bridge");
        if e["Action"] == "connect" || e["Action"] == "disconnect" {
            assert_eq!(attr(e, "container"), cid);
        }
        assert!(e.get("status").is_none(), "{e}");
    }
    let prune = find(&evs, "network", "prune");
    assert_eq!(attr(prune, "reclaimed"), "0");
    assert!(evs
        .iter()
        .any(|e| e["Action"] == "destroy" && attr(e, "name") == "evp"));
    let only = events(&b, &since, &["network=evn"]);
    assert_eq!(only.len(), 6, "{:?}", actions(&only));
    let by_id = events(&b, &since, &[&format!("network={}", &net[..12])]);
    assert_eq!(by_id.len(), 6, "{:?}", actions(&by_id));

    // The predefined `none` and `host` networks: connect and disconnect as well.
    let since = now_nanos();
    ok(b.docker_out(&["run", "--rm", "--network", "none", "busybox", "true"]));
    ok(b.docker_out(&["run", "--rm", "--network", "host", "busybox", "true"]));
    let evs = events(&b, &since, &["type=network"]);
    let got: Vec<String> = evs
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["Action"].as_str().unwrap(),
                attr(e, "name"),
                attr(e, "type")
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            "connect none null",
            "disconnect none null",
            "connect host host",
            "disconnect host host"
        ]
    );
}

#[test]
fn daemon_reload_event_and_the_daemon_filter() {
    require!(ready(), NOT_READY);
    let b = Berthd::start(&[]);
    let since = now_nanos();
    std::fs::write(
        b.config_file(),
        r#"{"debug": true, "registry-mirrors": ["https://mirror.example"]}"#,
    )
    .unwrap();
    b.signal(nix::sys::signal::Signal::SIGHUP);
    common::wait_for("the reload", Duration::from_secs(10), || {
        stdout(&b.docker_out(&["info", "--format", "{{.Debug}}"])).trim() == "true"
    });
    let info = ok(b.docker_out(&["info", "--format", "{{.ID}} {{.Name}}"]));
    let (engine, host) = info.trim().split_once(' ').unwrap();
    let evs = events(&b, &since, &["type=daemon"]);
    assert_eq!(actions(&evs), vec!["daemon reload"]);
    let e = &evs[0];
    assert_eq!(e["Actor"]["ID"], engine);
    assert_eq!(attr(e, "name"), host);
    assert_eq!(attr(e, "debug"), "true");
    assert_eq!(attr(e, "live-restore"), "false");
    assert_eq!(
        attr(e, "registry-mirrors"),
        r#"["https://mirror.example/"]"#
    );
    assert_eq!(attr(e, "insecure-registries"), "[]");
    assert_eq!(attr(e, "labels"), "[]");
    assert!(e.get("status").is_none(), "{e}");
    // `daemon=` by ID prefix or by name.
    assert_eq!(
        events(&b, &since, &[&format!("daemon={}", &engine[..8])]).len(),
        1
    );
    assert_eq!(events(&b, &since, &[&format!("daemon={host}")]).len(), 1);
    assert_eq!(events(&b, &since, &["daemon=nomatch"]).len(), 0);
}

#[test]
fn filters_since_until_and_legacy_fields_over_raw_http() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let t0 = now_nanos();
    ok(b.docker_out(&[
        "create", "--name", "evf1", "--label", "tier=web", "busybox", "true",
    ]));
    std::thread::sleep(Duration::from_millis(20));
    let t1 = now_nanos();
    ok(b.docker_out(&[
        "create", "--name", "evf2", "--label", "tier=db", "busybox", "true",
    ]));
    ok(b.docker_out(&["tag", "busybox", "evf:1"]));
    ok(b.docker_out(&["volume", "create", "evf1-vol"]));
    let t2 = now_nanos();
    std::thread::sleep(Duration::from_millis(20));
    ok(b.docker_out(&["rm", "evf1", "evf2"]));

    // since/until with nanoseconds.
    let between = format!("/v1.51/events?since={t0}&until={t1}");
    let (status, evs, _) = raw_events(&b, &between);
    assert_eq!(status, 200);
    assert_eq!(actions(&evs), vec!["container create"]);
    assert_eq!(attr(&evs[0], "name"), "evf1");
    let (_, evs, _) = raw_events(&b, &format!("/v1.51/events?since={t1}&until={t2}"));
    assert_eq!(
        actions(&evs),
        vec!["container create", "image tag", "volume create"]
    );

    let q = |filters: &str| -> Vec<Value> {
        let (status, evs, text) = raw_events(
            &b,
            &format!(
                "/v1.51/events?since={t0}&until={t2}&filters={}",
                enc(filters)
            ),
        );
        assert_eq!(status, 200, "{filters}: {text}");
        evs
    };
    // Unknown filter names are ignored (`action` is not a filter of dockerd's); an unknown
    // type is accepted and matches nothing.
    assert_eq!(q(r#"{"bogus":["x"]}"#).len(), 4);
    assert_eq!(q(r#"{"action":["tag"]}"#).len(), 4);
    assert_eq!(q(r#"{"type":["bogus"]}"#).len(), 0);
    assert_eq!(q(r#"{"type":["container","volume"]}"#).len(), 3);
    assert_eq!(actions(&q(r#"{"event":["tag"]}"#)), vec!["image tag"]);
    assert_eq!(q(r#"{"container":["evf2"]}"#).len(), 1);
    // A kind's filter matches any event whose ID or name starts with it (moby's
    // fuzzyMatchName): `evf1` is the container and the volume `evf1-vol`.
    assert_eq!(
        actions(&q(r#"{"container":["evf1"]}"#)),
        vec!["container create", "volume create"]
    );
    assert_eq!(q(r#"{"label":["tier=web"]}"#).len(), 1);
    assert_eq!(q(r#"{"label":["tier"]}"#).len(), 2);
    assert_eq!(q(r#"{"scope":["local"]}"#).len(), 4);
    assert_eq!(q(r#"{"scope":["swarm"]}"#).len(), 0);
    assert_eq!(
        actions(&q(r#"{"volume":["evf1-vol"]}"#)),
        vec!["volume create"]
    );
    // Both encodings of `filters`.
    assert_eq!(q(r#"{"type":{"image":true}}"#).len(), 1);

    // Malformed filters and times stay 400s with dockerd's texts.
    let (status, _, text) = raw_events(&b, "/v1.51/events?filters=%7Bbad");
    assert_eq!(status, 400, "{text}");
    let (status, _, text) = raw_events(&b, "/v1.51/events?since=yesterday");
    assert_eq!(status, 400);
    assert!(
        text.contains(r#"invalid value for 'since': invalid timestamp \"yesterday\": invalid seconds \"yesterday\": invalid syntax"#),
        "{text}"
    );
    let (status, _, text) = raw_events(&b, "/v1.51/events?since=20&until=10");
    assert_eq!(status, 400);
    assert!(
        text.contains("`since` time (20) cannot be after `until` time (10)"),
        "{text}"
    );

    // Legacy fields: container events `status`, `id`, `from`; image events `status`, `id`.
    let (_, evs, _) = raw_events(&b, &format!("/v1.24/events?since={t0}&until={t2}"));
    let c = &evs[0];
    assert_eq!(
        (c["status"].as_str(), c["from"].as_str()),
        (Some("create"), Some("busybox"))
    );
    assert_eq!(c["id"], c["Actor"]["ID"]);
    let i = evs.iter().find(|e| e["Type"] == "image").unwrap();
    assert_eq!(i["status"], "tag");
    assert!(i.get("from").is_none());
    let v = evs.iter().find(|e| e["Type"] == "volume").unwrap();
    assert!(v.get("status").is_none() && v.get("id").is_none());

    // Image `create` (a commit) exists from API 1.46 on.
    let t3 = now_nanos();
    ok(b.docker_out(&["create", "--name", "evf3", "busybox", "true"]));
    ok(b.docker_out(&["commit", "evf3"]));
    let img_filter = enc(r#"{"type":["image"]}"#);
    let until = common::now_secs() + 1;
    let (_, old, _) = raw_events(
        &b,
        &format!("/v1.45/events?since={t3}&until={until}&filters={img_filter}"),
    );
    let (_, new, _) = raw_events(
        &b,
        &format!("/v1.46/events?since={t3}&until={until}&filters={img_filter}"),
    );
    assert_eq!(actions(&old), Vec::<String>::new());
    assert_eq!(actions(&new), vec!["image create"]);
}

#[test]
fn since_replays_more_than_a_thousand_events() {
    require!(ready(), NOT_READY);
    let b = berthd_with_busybox(&[]);
    let id = ok(b.docker_out(&[
        "run", "-d", "-t", "--name", "ring", "busybox", "sleep", "1000",
    ]))
    .trim()
    .to_string();
    let since = now_nanos();
    // 1100 cheap events: TTY resizes.
    let mut c = Conn::unix(&b.socket);
    for i in 0..1100 {
        let r = c.request(
            "POST",
            &format!("/v1.51/containers/{id}/resize?h=10&w={}", 10 + i),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let evs = events(&b, &since, &["event=resize"]);
    assert!(evs.len() >= 1000, "only {} events replayed", evs.len());
    // The newest are all there, in order.
    let widths: Vec<u64> = evs
        .iter()
        .map(|e| attr(e, "width").parse().unwrap())
        .collect();
    assert_eq!(*widths.last().unwrap(), 10 + 1099);
    assert!(widths.windows(2).all(|w| w[1] == w[0] + 1), "out of order");
    ok(b.docker_out(&["rm", "-f", "ring"]));
}
