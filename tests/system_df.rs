//! `GET /system/df` through `docker system df` and `docker system df -v` (the rows and numbers
//! the CLI prints from `Images[].Containers`, `SharedSize`, `SizeRw`, volume `RefCount`, ...)
//! and over raw HTTP with the `type` parameter.

mod common;

use common::{berthd_with_busybox, image_id, ok, Berthd, Conn};
use serde_json::Value;

fn ready() -> bool {
    common::is_root() && common::have_docker_cli() && common::have_busybox()
}
const NOT_READY: &str = "needs root, the docker CLI and Debian's busybox-static";

/// Go's `%.<precision>g` for the values go-units prints (below 1000 after scaling).
fn go_g(v: f64, precision: i32) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{:.*e}", (precision - 1) as usize, v);
    let exp: i32 = sci.split('e').nth(1).unwrap().parse().unwrap();
    let decimals = (precision - 1 - exp).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    s
}

/// go-units' `HumanSizeWithPrecision`: decimal units.
fn human(size: i64, precision: i32) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(v, precision), units[i])
}

/// go-units' `HumanSize`.
fn human4(size: i64) -> String {
    human(size, 4)
}

/// The CLI's RECLAIMABLE cell.
fn reclaimable(r: i64, total: i64) -> String {
    if total > 0 {
        format!("{} ({}%)", human4(r), r * 100 / total)
    } else {
        human4(r)
    }
}

/// Cells of a table line (the CLI pads columns with at least three spaces).
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

fn get(b: &Berthd, path: &str) -> (u16, Value) {
    let mut c = Conn::unix(&b.socket);
    let r = c.request("GET", path, None);
    (r.status, r.json())
}

/// Images busybox (used by one container) and dfimg:1 (its commit, sharing the busybox
/// layer), the exited container `dfc` that wrote 200000 bytes into its layer and 300000 into
/// the volume `dfvol`, an unused volume `dfidle` with 1000 bytes, and a tmpfs volume, which
/// dockerd leaves out of the disk usage.
fn setup() -> Berthd {
    let b = berthd_with_busybox(&[]);
    ok(b.docker_out(&["volume", "create", "dfvol"]));
    ok(b.docker_out(&[
        "run",
        "--name",
        "dfc",
        "-v",
        "dfvol:/data",
        "busybox",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /data/f; head -c 200000 /dev/zero > /big",
    ]));
    ok(b.docker_out(&["commit", "dfc", "dfimg:1"]));
    ok(b.docker_out(&["volume", "create", "dfidle"]));
    let idle = ok(b.docker_out(&["volume", "inspect", "--format", "{{.Mountpoint}}", "dfidle"]));
    std::fs::write(std::path::Path::new(idle.trim()).join("f"), vec![1u8; 1000]).unwrap();
    ok(b.docker_out(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "dftmp",
    ]));
    b
}

#[test]
fn system_df_json_and_type_filter() {
    require!(ready(), NOT_READY);
    let b = setup();
    let bb = image_id(&b, "busybox");
    let dfimg = image_id(&b, "dfimg:1");
    let (status, du) = get(&b, "/v1.51/system/df");
    assert_eq!(status, 200, "{du}");

    let images = du["Images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{du}");
    let img = |id: &str| images.iter().find(|i| i["Id"] == id).unwrap().clone();
    let (busybox, committed) = (img(&bb), img(&dfimg));
    let bb_size = busybox["Size"].as_i64().unwrap();
    assert!(bb_size > 0);
    assert_eq!(busybox["Containers"], 1);
    assert_eq!(committed["Containers"], 0);
    // The busybox layer is shared by both images.
    assert_eq!(busybox["SharedSize"], bb_size);
    assert_eq!(committed["SharedSize"], bb_size);
    let layer = committed["Size"].as_i64().unwrap() - bb_size;
    assert!(layer >= 200_000, "{committed}");
    assert_eq!(du["LayersSize"], bb_size + layer);
    assert!(busybox.get("VirtualSize").is_none());

    let containers = du["Containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["Names"][0], "/dfc");
    assert_eq!(c["State"], "exited");
    let size_rw = c["SizeRw"].as_i64().unwrap();
    assert!((200_000..210_000).contains(&size_rw), "{c}");
    assert_eq!(c["SizeRootFs"], size_rw + bb_size);
    assert_eq!(c["Mounts"][0]["Driver"], "local");

    let vols = du["Volumes"].as_array().unwrap();
    let mut names: Vec<&str> = vols.iter().map(|v| v["Name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        vec!["dfidle", "dfvol"],
        "tmpfs volumes are left out: {du}"
    );
    let vol = |n: &str| vols.iter().find(|v| v["Name"] == n).unwrap()["UsageData"].clone();
    assert_eq!(
        vol("dfvol"),
        serde_json::json!({"Size": 300000, "RefCount": 1})
    );
    assert_eq!(
        vol("dfidle"),
        serde_json::json!({"Size": 1000, "RefCount": 0})
    );
    assert_eq!(du["BuildCache"], serde_json::json!([]));

    // `type` picks kinds; the others are null, `LayersSize` 0.
    let (_, v) = get(&b, "/v1.51/system/df?type=volume");
    assert_eq!(v["Volumes"].as_array().unwrap().len(), 2);
    assert!(v["Images"].is_null() && v["Containers"].is_null() && v["BuildCache"].is_null());
    assert_eq!(v["LayersSize"], 0);
    let (_, v) = get(&b, "/v1.51/system/df?type=image&type=build-cache");
    assert_eq!(v["Images"].as_array().unwrap().len(), 2);
    assert_eq!(v["LayersSize"], bb_size + layer);
    assert_eq!(v["BuildCache"], serde_json::json!([]));
    assert!(v["Volumes"].is_null() && v["Containers"].is_null());
    let (_, v) = get(&b, "/v1.51/system/df?type=container");
    assert_eq!(v["Containers"][0]["SizeRw"], size_rw);
    let (status, v) = get(&b, "/v1.51/system/df?type=bogus");
    assert_eq!(status, 400);
    assert_eq!(v["message"], "unknown object type: bogus");
    // Before API 1.42 `type` is ignored; before 1.44 images carry `VirtualSize`.
    let (status, v) = get(&b, "/v1.41/system/df?type=bogus");
    assert_eq!(status, 200);
    assert_eq!(v["Volumes"].as_array().unwrap().len(), 2);
    assert_eq!(v["Containers"].as_array().unwrap().len(), 1);
    let old = v["Images"].as_array().unwrap();
    assert!(old.iter().all(|i| i["VirtualSize"] == i["Size"]), "{v}");
}

#[test]
fn docker_system_df_prints_dockers_rows() {
    require!(ready(), NOT_READY);
    let b = setup();
    let (_, du) = get(&b, "/v1.51/system/df");
    let layers = du["LayersSize"].as_i64().unwrap();
    let size_rw = du["Containers"][0]["SizeRw"].as_i64().unwrap();

    let rows = ok(b.docker_out(&[
        "system",
        "df",
        "--format",
        "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}|{{.Reclaimable}}",
    ]));
    let want = [
        format!(
            "Images|2|1|{}|{}",
            human4(layers),
            reclaimable(layers, layers)
        ),
        format!(
            "Containers|1|0|{}|{}",
            human4(size_rw),
            reclaimable(size_rw, size_rw)
        ),
        format!(
            "Local Volumes|2|1|{}|{}",
            human4(301_000),
            reclaimable(1000, 301_000)
        ),
        "Build Cache|0|0|0B|0B".to_string(),
    ];
    assert_eq!(rows.lines().collect::<Vec<_>>(), want, "{rows}");
    assert_eq!(want[2], "Local Volumes|2|1|301kB|1kB (0%)");

    // The default table: the same cells under dockerd's headers.
    let table = ok(b.docker_out(&["system", "df"]));
    let lines: Vec<Vec<String>> = table.lines().map(cells).collect();
    assert_eq!(
        lines[0],
        vec!["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{table}"
    );
    for (line, w) in lines[1..].iter().zip(&want) {
        assert_eq!(line.join("|"), *w, "{table}");
    }
}

#[test]
fn docker_system_df_verbose_lists_each_object() {
    require!(ready(), NOT_READY);
    let b = setup();
    let (_, du) = get(&b, "/v1.51/system/df");
    let bb = image_id(&b, "busybox");
    let dfimg = image_id(&b, "dfimg:1");
    let img = |id: &str| {
        du["Images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["Id"] == id)
            .unwrap()
            .clone()
    };
    let out = ok(b.docker_out(&["system", "df", "-v"]));
    let section = |title: &str| -> Vec<Vec<String>> {
        let start = out
            .find(title)
            .unwrap_or_else(|| panic!("no {title} in {out}"));
        out[start + title.len()..]
            .lines()
            .skip_while(|l| l.trim().is_empty())
            .take_while(|l| !l.trim().is_empty())
            .map(cells)
            .collect()
    };

    let images = section("Images space usage:");
    assert_eq!(
        images[0],
        vec![
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "SHARED SIZE",
            "UNIQUE SIZE",
            "CONTAINERS"
        ],
        "{out}"
    );
    for (repo, tag, id, used) in [("busybox", "latest", &bb, "1"), ("dfimg", "1", &dfimg, "0")] {
        let i = img(id);
        let (size, shared) = (
            i["Size"].as_i64().unwrap(),
            i["SharedSize"].as_i64().unwrap(),
        );
        let row = images
            .iter()
            .find(|r| r[0] == repo)
            .unwrap_or_else(|| panic!("no {repo} row in {out}"));
        assert_eq!(row[1], tag);
        assert_eq!(row[2], id[7..19]);
        assert_eq!(
            row[4..].to_vec(),
            vec![
                human(size, 3),
                human4(shared),
                human4(size - shared),
                used.to_string()
            ],
            "{out}"
        );
    }

    let containers = section("Containers space usage:");
    assert_eq!(
        containers[0],
        vec![
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "LOCAL VOLUMES",
            "SIZE",
            "CREATED",
            "STATUS",
            "NAMES"
        ],
        "{out}"
    );
    let c = &du["Containers"][0];
    let row = &containers[1];
    assert_eq!(row[0], c["Id"].as_str().unwrap()[..12]);
    assert_eq!(row[1], "busybox");
    assert_eq!(row[3], "1");
    assert_eq!(row[4], human(c["SizeRw"].as_i64().unwrap(), 3));
    assert!(row[6].starts_with("Exited (0)"), "{out}");
    assert_eq!(row[7], "dfc");

    let volumes = section("Local Volumes space usage:");
    assert_eq!(volumes[0], vec!["VOLUME NAME", "LINKS", "SIZE"], "{out}");
    let mut rows: Vec<String> = volumes[1..].iter().map(|r| r.join("|")).collect();
    rows.sort();
    assert_eq!(rows, vec!["dfidle|0|1kB", "dfvol|1|300kB"], "{out}");

    assert!(out.contains("Build cache usage: 0B"), "{out}");
}
