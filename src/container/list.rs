//! `GET /containers/json` and `POST /containers/prune` filters.

use std::time::SystemTime;

use bollard_stubs::models::{
    ContainerSummary, ContainerSummaryHostConfig, ContainerSummaryNetworkSettings,
    ContainerSummaryStateEnum,
};

use super::inspect::{record_mount_points, status_text};
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

pub fn summary(r: &Record, now: SystemTime) -> ContainerSummary {
    let created = parse_timestamp(&r.created, now)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut command = r.path.clone();
    for a in &r.args {
        command.push(' ');
        command.push_str(a);
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
            ..Default::default()
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
    let name = format!("/{}", r.name);
    if f.contains("id") && !f.get("id").any(|v| r.id.starts_with(v)) {
        return false;
    }
    if f.contains("name")
        && !f
            .get("name")
            .any(|v| name.contains(v.trim_start_matches('/')) || regex_like(&name, v))
    {
        return false;
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
        let ports = r.config.exposed_ports.clone().unwrap_or_default();
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
    let limit = parse_timestamp(until, now)
        .ok_or_else(|| ContainerError::invalid(format!("invalid filter 'until={until}'")))?;
    Ok(parse_timestamp(&r.created, now).is_some_and(|c| c < limit))
}

#[cfg(test)]
mod tests {
    use super::*;

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
