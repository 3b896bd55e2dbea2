//! What berth keeps about a container on disk: `<data-root>/containers/<id>/config.v2.json`,
//! written atomically on every change, and its state machine.

use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};

use super::mounts::{self, MountPoint};
use super::ContainerError;
use crate::logger::LogConfig;
use crate::runtime::spec::SpecError;
use crate::util::fs::atomic_write;

/// The container's lifecycle status, as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Whether a process is alive (running or paused).
    pub fn is_running(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// The `State` part of the record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub has_been_started: bool,
    /// Stopped by `docker stop`/`kill` (for `unless-stopped` and restart policies).
    pub manually_stopped: bool,
    /// A container being restarted by its policy (status restarting) or by `docker restart`.
    #[serde(default)]
    pub restart_pending: bool,
    /// The health check's state (`State.Health`), once a container with a check has started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health::HealthState>,
    /// A `commit` is about to pause (or has paused) the container and will unpause it. Set
    /// before the pause, cleared after the unpause: a daemon killed in between finds it at
    /// restore and thaws the container (dockerd leaves it paused). Not part of the API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused_for_commit: bool,
}

/// Everything berth persists about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    #[serde(rename = "ID")]
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub created: String,
    /// The image ID (`sha256:…`).
    pub image: String,
    /// Image layer chain IDs, bottom first (leased while the container exists).
    #[serde(default)]
    pub chain: Vec<String>,
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: State,
    pub restart_count: i64,
    pub log_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub resolv_conf_path: String,
    /// The log driver and options, parsed once at create (absent in records written before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogConfig>,
    /// The user's mounts resolved from `Binds`, `Mounts` and `Tmpfs` at create. `None` only
    /// for a record written before they were stored whose `HostConfig` no longer parses
    /// ([`Record::load`] resolves the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_points: Option<Vec<MountPoint>>,
    /// Why `mount_points` could not be resolved for an old record (not stored).
    #[serde(skip)]
    pub mount_error: Option<String>,
    /// The networks the container is on, by name, with the endpoint settings the user gave
    /// (`NetworkingConfig`); the live endpoint of a run is the network service's.
    #[serde(default)]
    pub networks: std::collections::BTreeMap<String, bollard_stubs::models::EndpointSettings>,
    /// The container-wide `MacAddress` of a create (deprecated from API 1.44): inspect shows
    /// it as `Config.MacAddress`, and the start gives it to the main network's endpoint when
    /// that has none, as dockerd before 25 did (compose 1.29 disconnects and reconnects that
    /// network before the start, which drops the endpoint's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

impl Record {
    /// `<data-root>/containers/<id>`.
    pub fn dir(data_root: &Path, id: &str) -> PathBuf {
        data_root.join("containers").join(id)
    }

    pub fn file(dir: &Path) -> PathBuf {
        dir.join("config.v2.json")
    }

    pub fn load(dir: &Path) -> Result<Record, ContainerError> {
        let path = Record::file(dir);
        let bytes = std::fs::read(&path)
            .map_err(|e| ContainerError::io(format!("read {}", path.display()), e))?;
        let mut r: Record = serde_json::from_slice(&bytes)
            .map_err(|e| ContainerError::internal(format!("decode {}: {e}", path.display())))?;
        if r.mount_points.is_none() {
            // A record from before mount points were stored: resolve them now.
            match mounts::of_record(None, &r.host_config) {
                Ok(list) => r.mount_points = Some(list),
                Err(e) => r.mount_error = Some(e.to_string()),
            }
        }
        Ok(r)
    }

    /// The resolved mounts for the runtime's spec, or (an old record whose `HostConfig` does
    /// not parse) the parse error, which fails the start as it did before.
    pub fn spec_mounts(&self) -> Result<&[MountPoint], SpecError> {
        match (&self.mount_points, &self.mount_error) {
            (Some(list), _) => Ok(list),
            (None, Some(e)) => Err(SpecError::invalid(e.clone())),
            (None, None) => Ok(&[]),
        }
    }

    /// Write the record atomically (temp file, fsync, rename).
    pub fn save(&self, dir: &Path) -> Result<(), ContainerError> {
        self.write_to(dir, true)
    }

    /// Write the record, replacing the old one whole; with `durable`, fsynced (file and
    /// directory) as well.
    pub fn write_to(&self, dir: &Path, durable: bool) -> Result<(), ContainerError> {
        let bytes = serde_json::to_vec(self)
            .map_err(|e| ContainerError::internal(format!("encode container record: {e}")))?;
        let path = Record::file(dir);
        if durable {
            atomic_write(&path, &bytes, 0o600)
        } else {
            crate::util::fs::replace_file(&path, &bytes, 0o600)
        }
        .map_err(|e| ContainerError::io(format!("write {}", path.display()), e))
    }

    /// The top layer's chain ID (the overlay's upper lower dir); `None` for an image without
    /// layers.
    pub fn chain_id(&self) -> Option<&String> {
        self.chain.last()
    }

    /// The container's log configuration: as parsed at create, or (for a record from before
    /// that) parsed from its host config.
    pub fn log_config(&self) -> Result<LogConfig, ContainerError> {
        if let Some(log) = &self.log {
            return Ok(log.clone());
        }
        let lc = self.host_config.log_config.clone().unwrap_or_default();
        LogConfig::from_docker(
            lc.typ.as_deref().unwrap_or("json-file"),
            &lc.config.unwrap_or_default(),
        )
        .map_err(|e| ContainerError::invalid(e.to_string()))
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// The restart policy's name ("no" when unset).
    pub fn restart_policy(&self) -> (String, i64) {
        let p = self.host_config.restart_policy.as_ref();
        let name = p
            .and_then(|p| p.name.as_ref())
            .map(|n| n.to_string())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "no".to_string());
        let max = p.and_then(|p| p.maximum_retry_count).unwrap_or(0);
        (name, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let r = Record {
            id: "a".repeat(64),
            name: "x".into(),
            created: "2024-01-01T00:00:00Z".into(),
            image: "sha256:b".into(),
            chain: vec![],
            path: "sh".into(),
            args: vec![],
            config: ContainerConfig::default(),
            host_config: HostConfig::default(),
            state: State {
                status: Status::Exited,
                exit_code: 3,
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
        };
        r.save(dir.path()).unwrap();
        let back = Record::load(dir.path()).unwrap();
        assert_eq!(back.state, r.state);
        let text = std::fs::read_to_string(Record::file(dir.path())).unwrap();
        assert!(text.contains("\"Status\":\"exited\""), "{text}");
    }

    #[test]
    fn old_records_get_their_mount_points_resolved_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let record = |binds: &str| {
            format!(
                r#"{{"ID":"a","Name":"x","Created":"","Image":"sha256:b","Path":"sh","Args":[],
                "Config":{{}},"HostConfig":{{"Binds":[{binds}]}},"State":{{"Status":"exited",
                "Pid":0,"ExitCode":0,"Error":"","StartedAt":"","FinishedAt":"","OOMKilled":false,
                "HasBeenStarted":false,"ManuallyStopped":false}},"RestartCount":0,"LogPath":"",
                "HostnamePath":"","HostsPath":"","ResolvConfPath":""}}"#
            )
        };
        std::fs::write(Record::file(dir.path()), record(r#""/src:/data:ro""#)).unwrap();
        let r = Record::load(dir.path()).unwrap();
        let m = r.spec_mounts().unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].source.as_str(), m[0].destination.as_str()),
            ("/src", "/data")
        );
        assert!(!m[0].rw);
        std::fs::write(Record::file(dir.path()), record(r#""vol:/data""#)).unwrap();
        let r = Record::load(dir.path()).unwrap();
        let m = r.spec_mounts().unwrap();
        assert_eq!((m[0].typ.as_str(), m[0].name.as_str()), ("volume", "vol"));
    }
}
