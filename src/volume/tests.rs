use super::*;

fn service() -> (tempfile::TempDir, Arc<VolumeService>, Arc<EventBus>) {
    let dir = tempfile::tempdir().unwrap();
    let events = Arc::new(EventBus::new());
    let s = VolumeService::open(dir.path(), events.clone()).unwrap();
    (dir, s, events)
}

fn named(name: &str) -> CreateOptions {
    CreateOptions {
        name: Some(name.to_string()),
        ..Default::default()
    }
}

#[test]
fn names_are_validated_with_dockerds_texts() {
    assert!(validate_name("ab").is_ok());
    assert!(validate_name("a1_.-b").is_ok());
    assert_eq!(
        validate_name("a").unwrap_err().message(),
        "volume name is too short, names should be at least two alphanumeric characters"
    );
    assert_eq!(
        validate_name("a/b").unwrap_err().message(),
        "\"a/b\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
    );
    assert!(validate_name("_ab").is_err());
    assert!(validate_name("..").is_err());
}

#[test]
fn create_lays_out_the_volume_and_is_idempotent() {
    let (dir, s, _) = service();
    let mut o = named("data");
    o.labels.insert("a".into(), "b".into());
    let v = s.create(o.clone()).unwrap();
    assert_eq!(v.name, "data");
    assert_eq!(v.driver, "local");
    assert_eq!(v.scope, Some(VolumeScopeEnum::LOCAL));
    assert_eq!(v.labels.get("a").map(String::as_str), Some("b"));
    assert!(v.options.is_empty());
    let data = dir.path().join("volumes/data/_data");
    assert_eq!(v.mountpoint, data.display().to_string());
    assert!(data.is_dir());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(v.created_at.as_deref().unwrap().ends_with('Z'));
    let again = s.create(o).unwrap();
    assert_eq!(again.created_at, v.created_at);
    assert_eq!(s.list_all().len(), 1);
    let mut other = named("data");
    other.driver = Some("nfs".into());
    let e = s.create(other).unwrap_err();
    assert_eq!(
        crate::errors::Kinded::kind(&e),
        crate::errors::ErrorKind::Conflict
    );
    assert_eq!(
        e.message(),
        "create data: driver 'local' already has volume 'data': volume name must be unique"
    );
}

#[test]
fn create_refuses_bad_names_drivers_and_options() {
    let (_d, s, _) = service();
    let e = s.create(named("a/b")).unwrap_err();
    assert!(e
        .message()
        .starts_with("create a/b: \"a/b\" includes invalid characters"));
    let mut o = named("xx");
    o.driver = Some("foo".into());
    let e = s.create(o).unwrap_err();
    assert_eq!(
        crate::errors::Kinded::kind(&e),
        crate::errors::ErrorKind::NotFound
    );
    assert_eq!(
        e.message(),
        "create xx: error looking up volume plugin foo: plugin \"foo\" not found"
    );
    let mut o = named("yy");
    o.driver_opts.insert("bogus".into(), "1".into());
    assert_eq!(
        s.create(o).unwrap_err().message(),
        "create yy: invalid option: \"bogus\""
    );
    assert!(s.list_all().is_empty());
}

#[test]
fn anonymous_volumes_get_a_random_name_and_the_label() {
    let (_d, s, _) = service();
    let v = s.create(CreateOptions::default()).unwrap();
    assert_eq!(v.name.len(), 64);
    assert!(v.name.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(v.labels.get(ANONYMOUS_LABEL).map(String::as_str), Some(""));
}

#[test]
fn references_block_removal_and_dangling_follows_them() {
    let (_d, s, _) = service();
    s.create(named("v1")).unwrap();
    s.create(named("v2")).unwrap();
    s.reference("v1", "c1").unwrap();
    s.reference("v1", "c2").unwrap();
    assert!(s.reference("nope", "c1").is_err());
    let e = s.remove("v1", false).unwrap_err();
    assert_eq!(
        crate::errors::Kinded::kind(&e),
        crate::errors::ErrorKind::Conflict
    );
    assert_eq!(e.message(), "remove v1: volume is in use - [c1, c2]");
    // force does not override references (as dockerd)
    assert!(s.remove("v1", true).is_err());
    let dangling = Filters::parse(r#"{"dangling":["true"]}"#).unwrap();
    let names: Vec<String> = s
        .list(&dangling)
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, vec!["v2"]);
    s.dereference("v1", "c1");
    s.dereference("v1", "c2");
    s.remove("v1", false).unwrap();
    assert_eq!(s.get("v1").unwrap_err().message(), "get v1: no such volume");
    assert_eq!(
        s.remove("v1", false).unwrap_err().message(),
        "get v1: no such volume"
    );
    s.remove("v1", true).unwrap();
}

#[test]
fn list_filters() {
    let (_d, s, _) = service();
    let mut o = named("alpha");
    o.labels.insert("tier".into(), "db".into());
    s.create(o).unwrap();
    s.create(named("beta")).unwrap();
    let names = |f: &str| -> Vec<String> {
        s.list(&Filters::parse(f).unwrap())
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect()
    };
    assert_eq!(names(r#"{"name":["lph"]}"#), vec!["alpha"]);
    assert_eq!(names(r#"{"name":["^al"]}"#), vec!["alpha"]);
    assert_eq!(names(r#"{"name":["ta$"]}"#), vec!["beta"]);
    assert_eq!(names(r#"{"name":["^alpha$"]}"#), vec!["alpha"]);
    assert_eq!(names(r#"{"name":["^lph"]}"#), Vec::<String>::new());
    assert_eq!(names(r#"{"label":["tier"]}"#), vec!["alpha"]);
    assert_eq!(names(r#"{"label":["tier=web"]}"#), Vec::<String>::new());
    assert_eq!(names(r#"{"driver":["local"]}"#).len(), 2);
    assert_eq!(names(r#"{"dangling":["0"]}"#), Vec::<String>::new());
    assert_eq!(names(r#"{"dangling":["TRUE"]}"#).len(), 2);
    let bad = s
        .list(&Filters::parse(r#"{"colour":["x"]}"#).unwrap())
        .unwrap_err();
    assert_eq!(bad.message(), "invalid filter 'colour'");
    let bad = s
        .list(&Filters::parse(r#"{"dangling":["maybe"]}"#).unwrap())
        .unwrap_err();
    assert_eq!(bad.message(), "invalid filter 'dangling=maybe'");
}

#[test]
fn prune_takes_anonymous_volumes_unless_all() {
    let (_d, s, _) = service();
    let anon = s.create(CreateOptions::default()).unwrap().name;
    s.create(named("keep")).unwrap();
    let used = s.create(CreateOptions::default()).unwrap().name;
    s.reference(&used, "c1").unwrap();
    fs::write(
        Path::new(&s.get(&anon).unwrap().mountpoint).join("f"),
        b"12345",
    )
    .unwrap();
    let r = s.prune(&Filters::default(), false).unwrap();
    assert_eq!(r.volumes_deleted, Some(vec![anon]));
    assert_eq!(r.space_reclaimed, Some(5));
    let r = s
        .prune(&Filters::parse(r#"{"all":["true"]}"#).unwrap(), false)
        .unwrap();
    assert_eq!(r.volumes_deleted, Some(vec!["keep".to_string()]));
    assert_eq!(s.list_all().len(), 1);
    assert!(s
        .prune(&Filters::parse(r#"{"dangling":["true"]}"#).unwrap(), false)
        .is_err());
    assert_eq!(
        s.prune(&Filters::parse(r#"{"all":["maybe"]}"#).unwrap(), false)
            .unwrap_err()
            .message(),
        "invalid filter 'all': strconv.ParseBool: parsing \"maybe\": invalid syntax"
    );
}

#[test]
fn prune_label_filters() {
    let (_d, s, _) = service();
    for (n, l) in [("a1", "x"), ("a2", "y")] {
        let mut o = named(n);
        o.labels.insert("k".into(), l.into());
        s.create(o).unwrap();
    }
    let r = s
        .prune(&Filters::parse(r#"{"label!":["k=x"]}"#).unwrap(), true)
        .unwrap();
    assert_eq!(r.volumes_deleted, Some(vec!["a2".to_string()]));
}

#[test]
fn mount_counts_users_and_persists_them_across_open() {
    let (dir, s, _) = service();
    s.create(named("vol")).unwrap();
    s.reference("vol", "c1").unwrap();
    let p = s.mount("vol", "c1", "/data", true).unwrap();
    assert_eq!(p, dir.path().join("volumes/vol/_data"));
    s.mount("vol", "c2", "/data", false).unwrap();
    drop(s);
    // berthd restarts: the active users come back, references come from the container restore.
    let s = VolumeService::open(dir.path(), Arc::new(EventBus::new())).unwrap();
    let e = s.remove("vol", false).unwrap_err();
    assert_eq!(e.message(), "remove vol: volume is in use - [c1, c2]");
    s.unmount("vol", "c1");
    s.unmount("vol", "c2");
    s.unmount("vol", "c2");
    s.remove("vol", false).unwrap();
    assert!(!dir.path().join("volumes/vol").exists());
}

#[test]
fn open_removes_half_created_volumes() {
    let (dir, s, _) = service();
    s.create(named("whole")).unwrap();
    drop(s);
    fs::create_dir_all(dir.path().join("volumes/half/_data")).unwrap();
    let s = VolumeService::open(dir.path(), Arc::new(EventBus::new())).unwrap();
    assert!(s.get("whole").is_ok());
    assert!(s.get("half").is_err());
    assert!(!dir.path().join("volumes/half").exists());
}

#[test]
fn disk_usage_reports_size_and_refcount() {
    let (_d, s, _) = service();
    let v = s.create(named("du")).unwrap();
    fs::write(Path::new(&v.mountpoint).join("f"), vec![0u8; 100]).unwrap();
    s.reference("du", "c1").unwrap();
    let du = s.disk_usage();
    let u = du[0].usage_data.as_ref().unwrap();
    assert_eq!((u.size, u.ref_count), (100, 1));
}

#[test]
fn disk_usage_leaves_out_volumes_with_options() {
    let (_d, s, _) = service();
    s.create(named("plain")).unwrap();
    let mut o = named("opts");
    for (k, v) in [("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")] {
        o.driver_opts.insert(k.into(), v.into());
    }
    s.create(o).unwrap();
    let names: Vec<String> = s.disk_usage().into_iter().map(|v| v.name).collect();
    assert_eq!(names, vec!["plain".to_string()]);
}

#[test]
fn tmpfs_volume_mounts_at_first_user_and_unmounts_at_last() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root");
        return;
    }
    let (_d, s, _) = service();
    let mut o = named("tmp");
    for (k, v) in [("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")] {
        o.driver_opts.insert(k.into(), v.into());
    }
    let v = s.create(o).unwrap();
    assert_eq!(v.options.get("o").map(String::as_str), Some("size=1m"));
    let data = PathBuf::from(&v.mountpoint);
    assert!(!options::is_mounted(&data));
    s.mount("tmp", "c1", "/d", true).unwrap();
    assert!(options::is_mounted(&data));
    s.mount("tmp", "c2", "/d", true).unwrap();
    s.unmount("tmp", "c1");
    assert!(options::is_mounted(&data));
    s.unmount("tmp", "c2");
    assert!(!options::is_mounted(&data));
    s.remove("tmp", false).unwrap();
}

#[test]
fn bind_volume_shows_the_device_and_removal_spares_it() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root");
        return;
    }
    let (_d, s, _) = service();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("hello"), b"hi").unwrap();
    let mut o = named("bound");
    for (k, v) in [
        ("type", "none"),
        ("o", "bind"),
        ("device", &host.path().display().to_string()),
    ] {
        o.driver_opts.insert(k.into(), v.to_string());
    }
    s.create(o).unwrap();
    let p = s.mount("bound", "c1", "/d", true).unwrap();
    assert_eq!(fs::read(p.join("hello")).unwrap(), b"hi");
    // In use while mounted, even without a reference.
    assert!(s.remove("bound", false).is_err());
    s.unmount("bound", "c1");
    assert!(!options::is_mounted(&p));
    s.remove("bound", false).unwrap();
    assert_eq!(fs::read(host.path().join("hello")).unwrap(), b"hi");
}

#[test]
fn a_failed_mount_leaves_no_active_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root");
        return;
    }
    let (_d, s, _) = service();
    let mut o = named("broken");
    for (k, v) in [
        ("type", "none"),
        ("o", "bind"),
        ("device", "/nonexistent/berth"),
    ] {
        o.driver_opts.insert(k.into(), v.into());
    }
    s.create(o).unwrap();
    let e = s.mount("broken", "c1", "/d", true).unwrap_err();
    assert!(
        e.message()
            .starts_with("failed to mount local volume: mount /nonexistent/berth:"),
        "{e}"
    );
    assert!(
        e.message()
            .ends_with("_data, flags: 0x1000: no such file or directory"),
        "{e}"
    );
    s.remove("broken", false).unwrap();
}

#[tokio::test]
async fn events_carry_dockerds_attributes() {
    let (_d, s, events) = service();
    let mut sub = events.subscribe(
        crate::events::EventQuery::parse(Some("0"), None, Some(r#"{"type":["volume"]}"#)).unwrap(),
    );
    s.create(named("ev")).unwrap();
    s.mount("ev", "c1", "/data", false).unwrap();
    s.unmount("ev", "c1");
    s.remove("ev", false).unwrap();
    s.prune(&Filters::default(), false).unwrap();
    let e = sub.next().await.unwrap();
    assert_eq!((e.action.as_str(), e.actor_id.as_str()), ("create", "ev"));
    assert_eq!(e.attributes.get("driver"), Some("local"));
    let e = sub.next().await.unwrap();
    assert_eq!(e.action, "mount");
    assert_eq!(e.attributes.get("container"), Some("c1"));
    assert_eq!(e.attributes.get("destination"), Some("/data"));
    assert_eq!(e.attributes.get("read/write"), Some("false"));
    assert_eq!(e.attributes.get("driver"), Some("local"));
    let e = sub.next().await.unwrap();
    assert_eq!(e.action, "unmount");
    assert_eq!(e.attributes.get("container"), Some("c1"));
    let e = sub.next().await.unwrap();
    assert_eq!((e.action.as_str(), e.actor_id.as_str()), ("destroy", "ev"));
    let e = sub.next().await.unwrap();
    assert_eq!(e.action, "prune");
    assert_eq!(e.attributes.get("reclaimed"), Some("0"));
}

#[test]
fn retain_active_drops_users_that_no_longer_run() {
    let (_d, s, _) = service();
    s.create(named("r1")).unwrap();
    s.mount("r1", "gone", "/d", true).unwrap();
    s.mount("r1", "alive", "/d", true).unwrap();
    let running: std::collections::HashSet<String> = ["alive".to_string()].into();
    assert_eq!(s.retain_active(&running), 1);
    assert_eq!(
        s.remove("r1", false).unwrap_err().message(),
        "remove r1: volume is in use - [alive]"
    );
    assert_eq!(s.retain_active(&Default::default()), 1);
    s.remove("r1", false).unwrap();
}
