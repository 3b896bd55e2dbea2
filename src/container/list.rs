//! `GET /containers/json` and `POST /containers/prune` filters.

use std::time::SystemTime;

use bollard_stubs::models::{
    ContainerSummary, ContainerSummaryHostConfig, ContainerSummaryNetworkSettings,
    ContainerSummaryStateEnum,
};

use super::inspect::{record_mount_points, status_text, StatusBase};
use super::record::{Record, Status};
use super::ContainerError;
use crate::filters::Filters;
use crate::util::time::parse_timestamp;

pub const LIST_FILTERS: &[&str] = &[
    "id", "name", "label", "status", "exited", "ancestor", "before", "since", "volume", "network",
    "health", "expose", "publish", "is-task",
];

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub all: bool,
    pub limit: Option<usize>,
    pub size: bool,
    pub filters: Filters,
    /// The form the client's API version gets.
    pub variant: Variant,
}

/// The forms of a summary that differ by API version: part of the cache key of a
/// [`Fragment`]. dockerd shows `HostConfig.Annotations` from API 1.46 on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Current,
    /// API < 1.46: no `HostConfig.Annotations`.
    Before146,
}

/// How many [`Variant`]s there are (the slots of each record's summary cache).
pub const VARIANTS: usize = 2;

impl Variant {
    pub fn for_version(v: crate::version::ApiVersion) -> Self {
        if v < crate::version::ApiVersion::new(1, 46) {
            Variant::Before146
        } else {
            Variant::Current
        }
    }

    pub fn index(self) -> usize {
        match self {
            Variant::Current => 0,
            Variant::Before146 => 1,
        }
    }
}

/// One container's serialised `docker ps` entry, without its `Status` (which says how long
/// ago, so changes by itself): `bytes[..split]` is `{"Id":…,"State":"…"`, `bytes[split..]` is
/// `,"HostConfig":…}`. Kept per record generation and variant (`RecordRead::cached_summary`),
/// so it is rebuilt after any change of the record or of its endpoints. One buffer, not two:
/// fragments rebuilt during a busy period outlive it, and each object made then keeps a page
/// of the heap resident (docs/hardening.md, *Load and leaks*).
#[derive(Debug)]
pub struct Fragment {
    bytes: Box<[u8]>,
    split: usize,
    /// The `Status` but for the time passed since (parsed from the record once).
    status: StatusBase,
}

impl Fragment {
    /// Split a summary (its `Status`, `SizeRw` and `SizeRootFs` are not part of it; `status`
    /// is the record's, written at each [`write`](Self::write)).
    pub fn new(s: ContainerSummary, status: StatusBase) -> Result<Fragment, ContainerError> {
        let head = ContainerSummary {
            id: s.id,
            names: s.names,
            image: s.image,
            image_id: s.image_id,
            image_manifest_descriptor: s.image_manifest_descriptor,
            command: s.command,
            created: s.created,
            ports: s.ports,
            labels: s.labels,
            state: s.state,
            ..Default::default()
        };
        let tail = ContainerSummary {
            host_config: s.host_config,
            network_settings: s.network_settings,
            mounts: s.mounts,
            health: s.health,
            ..Default::default()
        };
        let enc = |out: &mut Vec<u8>, v: &ContainerSummary| {
            serde_json::to_writer(out, v)
                .map_err(|e| ContainerError::internal(format!("encode container summary: {e}")))
        };
        // `{…}` minus its closing brace, then `{…}` minus its opening one: the `Id` and the
        // `HostConfig` are always there, so neither object is empty.
        let mut bytes = Vec::with_capacity(1024);
        enc(&mut bytes, &head)?;
        bytes.pop();
        let split = bytes.len();
        enc(&mut bytes, &tail)?;
        bytes.remove(split);
        Ok(Fragment {
            bytes: bytes.into_boxed_slice(),
            split,
            status,
        })
    }

    /// Append the entry with its `Status` at `now` (made in `scratch`, a buffer the caller
    /// reuses across entries).
    pub fn write(&self, out: &mut Vec<u8>, now: SystemTime, scratch: &mut String) {
        let (head, tail) = self.bytes.split_at(self.split);
        out.extend_from_slice(head);
        out.extend_from_slice(b",\"Status\":");
        scratch.clear();
        self.status.write(scratch, now);
        // A string always encodes.
        let _ = serde_json::to_writer(&mut *out, scratch.as_str());
        out.push(b',');
        out.extend_from_slice(tail);
    }
}

fn summary_state(s: Status) -> ContainerSummaryStateEnum {
    match s {
        Status::Created => ContainerSummaryStateEnum::CREATED,
        Status::Running => ContainerSummaryStateEnum::RUNNING,
        Status::Paused => ContainerSummaryStateEnum::PAUSED,
        Status::Restarting => ContainerSummaryStateEnum::RESTARTING,
        Status::Removing => ContainerSummaryStateEnum::REMOVING,
        Status::Exited => ContainerSummaryStateEnum::EXITED,
        Status::Dead => ContainerSummaryStateEnum::DEAD,
    }
}

/// A container's `docker ps` entry from its record alone (`Status` for `now`; the caller adds
/// links' names, ports, live endpoints and sizes).
pub fn summary(r: &Record, now: SystemTime, variant: Variant) -> ContainerSummary {
    let created = parse_timestamp(&r.created, now)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // moby's view: arguments with a space in single quotes.
    let mut command = r.path.clone();
    for a in &r.args {
        command.push(' ');
        if a.contains(' ') {
            command.push('\'');
            command.push_str(a);
            command.push('\'');
        } else {
            command.push_str(a);
        }
    }
    let net_mode = r.host_config.network_mode.clone().unwrap_or_default();
    ContainerSummary {
        id: Some(r.id.clone()),
        names: Some(vec![format!("/{}", r.name)]),
        image: Some(r.config.image.clone().unwrap_or_else(|| r.image.clone())),
        image_id: Some(r.image.clone()),
        command: Some(command),
        created: Some(created),
        ports: Some(Vec::new()),
        labels: Some(r.config.labels.clone().unwrap_or_default()),
        state: Some(summary_state(r.state.status)),
        status: Some(status_text(r, now)),
        host_config: Some(ContainerSummaryHostConfig {
            network_mode: Some(net_mode),
            annotations: match variant {
                Variant::Current => r.host_config.annotations.clone().filter(|a| !a.is_empty()),
                Variant::Before146 => None,
            },
        }),
        network_settings: Some(ContainerSummaryNetworkSettings {
            networks: Some(Default::default()),
        }),
        mounts: Some(record_mount_points(r)),
        ..Default::default()
    }
}

/// Check the filters' names and values before listing.
pub fn validate(f: &Filters) -> Result<(), ContainerError> {
    f.validate(LIST_FILTERS)
        .map_err(|e| ContainerError::invalid(e.to_string()))?;
    for s in f.get("status") {
        if !matches!(
            s,
            "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
        ) {
            return Err(ContainerError::invalid(format!(
                "invalid filter 'status={s}'"
            )));
        }
    }
    for e in f.get("exited") {
        if e.parse::<i64>().is_err() {
            return Err(ContainerError::invalid(format!(
                "invalid filter 'exited={e}'"
            )));
        }
    }
    for h in f.get("health") {
        if !matches!(h, "starting" | "healthy" | "unhealthy" | "none") {
            return Err(ContainerError::invalid(format!(
                "Unrecognised filter value for health: {h}"
            )));
        }
    }
    Ok(())
}

/// Whether one container passes the filters (`before`/`since` are applied by the caller).
/// `ancestor` holds image IDs already resolved by the caller.
pub fn matches(r: &Record, f: &Filters, ancestors: &[String]) -> bool {
    if f.is_empty() {
        return true;
    }
    if f.contains("id") && !f.get("id").any(|v| r.id.starts_with(v)) {
        return false;
    }
    if f.contains("name") {
        let name = format!("/{}", r.name);
        if !f
            .get("name")
            .any(|v| name.contains(v.trim_start_matches('/')) || regex_like(&name, v))
        {
            return false;
        }
    }
    if f.contains("label")
        && !f.match_kv_list("label", &r.config.labels.clone().unwrap_or_default())
    {
        return false;
    }
    if f.contains("status") && !f.get("status").any(|s| s == r.state.status.as_str()) {
        return false;
    }
    if f.contains("exited") {
        if r.state.status != Status::Exited {
            return false;
        }
        if !f
            .get("exited")
            .any(|e| e.parse::<i64>().ok() == Some(r.state.exit_code))
        {
            return false;
        }
    }
    if f.contains("ancestor") && !ancestors.contains(&r.image) {
        return false;
    }
    if f.contains("volume") {
        let mounts = record_mount_points(r);
        if !f.get("volume").any(|v| {
            mounts.iter().any(|m| {
                m.destination.as_deref() == Some(v)
                    || m.source.as_deref() == Some(v)
                    || m.name.as_deref() == Some(v)
            })
        }) {
            return false;
        }
    }
    if f.contains("network") {
        let mode = r.host_config.network_mode.clone().unwrap_or_default();
        if !f.get("network").any(|n| {
            n == mode
                || r.networks.iter().any(|(name, s)| {
                    name == n
                        || s.network_id
                            .as_deref()
                            .is_some_and(|id| !n.is_empty() && id.starts_with(n))
                })
        }) {
            return false;
        }
    }
    if f.contains("health") {
        let health = r
            .state
            .health
            .as_ref()
            .map_or("none", |h| h.status.as_str());
        if !f.get("health").any(|h| h == health) {
            return false;
        }
    }
    if f.contains("expose") {
        // moby matches the summary's ports, which only a running container has.
        let ports = if r.state.status.is_running() {
            r.config.exposed_ports.clone().unwrap_or_default()
        } else {
            Vec::new()
        };
        if !f.get("expose").any(|p| {
            let p = if p.contains('/') {
                p.to_string()
            } else {
                format!("{p}/tcp")
            };
            ports.contains(&p)
        }) {
            return false;
        }
    }
    // `publish` is matched against the live bindings by the manager (ops.rs).
    if f.contains("is-task") && f.get("is-task").any(|v| v == "true") {
        return false;
    }
    true
}

/// moby matches `name` filters as regular expressions; berth supports the common anchors.
fn regex_like(name: &str, pattern: &str) -> bool {
    let starts = pattern.starts_with('^');
    let ends = pattern.ends_with('$');
    let core = pattern.trim_start_matches('^').trim_end_matches('$');
    let core_slash = if starts && !core.starts_with('/') {
        format!("/{core}")
    } else {
        core.to_string()
    };
    match (starts, ends) {
        (true, true) => name == core_slash || name == core,
        (true, false) => name.starts_with(&core_slash) || name.starts_with(core),
        (false, true) => name.ends_with(core),
        (false, false) => name.contains(core),
    }
}

/// `until` for prune: keep containers created after the given time.
pub fn created_before(r: &Record, until: &str, now: SystemTime) -> Result<bool, ContainerError> {
    let limit = parse_timestamp(until, now).ok_or_else(|| {
        ContainerError::invalid(format!(
            "failed to parse value as time or duration: \"{until}\""
        ))
    })?;
    Ok(parse_timestamp(&r.created, now).is_some_and(|c| c < limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::manager::RecordCell;
    use crate::container::record::State;
    use bollard_stubs::models::{ContainerConfig, HostConfig};

    fn record() -> Record {
        Record {
            id: "c".repeat(64),
            name: "web".into(),
            created: "2024-01-01T00:00:00Z".into(),
            image: "sha256:b".into(),
            chain: vec![],
            path: "sleep".into(),
            args: vec!["60".into()],
            config: ContainerConfig {
                image: Some("busybox".into()),
                ..Default::default()
            },
            host_config: HostConfig {
                network_mode: Some("bridge".into()),
                ..Default::default()
            },
            state: State {
                status: Status::Created,
                ..Default::default()
            },
            restart_count: 0,
            log_path: String::new(),
            hostname_path: String::new(),
            hosts_path: String::new(),
            resolv_conf_path: String::new(),
            log: None,
            mount_points: Some(vec![]),
            mount_error: None,
            networks: Default::default(),
            mac_address: None,
        }
    }

    /// What `list_json` does for one entry: the cached fragment if the generation still
    /// holds, else a new one, stored.
    fn entry(cell: &RecordCell, variant: Variant, now: SystemTime) -> (String, bool) {
        let mut rd = cell.read();
        let (frag, hit) = match rd.cached_summary(variant.index(), 0) {
            Some(f) => (f, true),
            None => {
                let mut s = summary(&rd, now, variant);
                s.status = None;
                // As the manager shows them (without live endpoints here).
                s.network_settings = Some(ContainerSummaryNetworkSettings {
                    networks: Some(rd.networks.clone().into_iter().collect()),
                });
                let f = std::sync::Arc::new(Fragment::new(s, StatusBase::of(&rd)).unwrap());
                rd.store_summary(variant.index(), 0, f.clone());
                (f, false)
            }
        };
        let mut out = Vec::new();
        frag.write(&mut out, now, &mut String::new());
        (String::from_utf8(out).unwrap(), hit)
    }

    #[test]
    fn fragment_bytes_are_the_whole_summary() {
        let now = SystemTime::now();
        let mut r = record();
        r.config.labels = Some([("a\"b".to_string(), "\"Status\":".to_string())].into());
        r.host_config.annotations = Some([("k".to_string(), "v".to_string())].into());
        for v in [Variant::Current, Variant::Before146] {
            let whole = serde_json::to_string(&summary(&r, now, v)).unwrap();
            let cell = RecordCell::new(r.clone());
            assert_eq!(entry(&cell, v, now).0, whole);
            let parsed: serde_json::Value = serde_json::from_str(&whole).unwrap();
            assert_eq!(parsed["Status"], "Created");
            assert_eq!(
                parsed["HostConfig"]["Annotations"].is_null(),
                v == Variant::Before146
            );
        }
    }

    #[test]
    fn cached_until_the_record_changes() {
        let now = SystemTime::now();
        let cell = RecordCell::new(record());
        let (first, hit) = entry(&cell, Variant::Current, now);
        assert!(!hit);
        let (again, hit) = entry(&cell, Variant::Current, now);
        assert!(hit);
        assert_eq!(first, again);
        // Each variant is its own entry.
        assert!(!entry(&cell, Variant::Before146, now).1);
        assert!(entry(&cell, Variant::Before146, now).1);

        let step = |change: &dyn Fn(&mut Record), expect: &str| {
            let g = cell.generation();
            change(&mut cell.write());
            assert!(cell.generation() > g);
            let (text, hit) = entry(&cell, Variant::Current, now);
            assert!(!hit, "stale entry after a change to show {expect}");
            assert!(text.contains(expect), "{expect} not in {text}");
            assert!(entry(&cell, Variant::Current, now).1);
        };
        // rename
        step(&|r| r.name = "renamed".into(), "\"/renamed\"");
        // start, then stop
        step(
            &|r| {
                r.state.status = Status::Running;
                r.state.started_at = "2024-01-01T00:00:00Z".into();
            },
            "\"State\":\"running\"",
        );
        step(
            &|r| {
                r.state.status = Status::Exited;
                r.state.exit_code = 137;
                r.state.finished_at = "2024-01-01T00:01:00Z".into();
            },
            "Exited (137)",
        );
        // network connect
        step(
            &|r| {
                r.networks.insert(
                    "backend".into(),
                    bollard_stubs::models::EndpointSettings::default(),
                );
            },
            "\"backend\"",
        );
        // a label
        step(
            &|r| {
                r.config.labels = Some([("tier".to_string(), "db".to_string())].into());
            },
            "\"tier\":\"db\"",
        );
        // Something kept outside the record (the run's endpoints) changed.
        let g = cell.generation();
        cell.touch();
        assert!(cell.generation() > g);
        assert!(!entry(&cell, Variant::Current, now).1);
    }

    #[test]
    fn name_patterns() {
        assert!(regex_like("/web_1", "^web"));
        assert!(regex_like("/web_1", "^/web_1$"));
        assert!(!regex_like("/web_1", "^eb"));
        assert!(regex_like("/web_1", "_1$"));
    }

    #[test]
    fn validation_errors() {
        let f = Filters::parse(r#"{"status":["bogus"]}"#).unwrap();
        assert!(validate(&f).is_err());
        let f = Filters::parse(r#"{"nope":["x"]}"#).unwrap();
        assert!(validate(&f).is_err());
        let f = Filters::parse(r#"{"status":["exited"],"exited":["0"]}"#).unwrap();
        assert!(validate(&f).is_ok());
    }
}
