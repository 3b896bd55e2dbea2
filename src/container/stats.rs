//! `GET /containers/{id}/stats` (moby's `daemon/stats.go` and `daemon/stats/collector.go`):
//! one sampler per request reads the container's cgroup once a second and writes dockerd's
//! JSON lines, each carrying the previous sample's CPU figures as `precpu_stats`.
//!
//! - `stream` (default): a line a second until the client goes or the container is removed.
//!   While the container is not running the lines are dockerd's zeroed ones (name and ID only).
//! - `stream=false`: two samples a second apart, the second written (so `precpu_stats` is
//!   filled); a container that is not running gets one zeroed line at once.
//! - `one-shot` (with `stream=false`): one sample, `precpu_stats` zero.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard_stubs::models::{
    ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage,
    ContainerMemoryStats, ContainerNetworkStats, ContainerPidsStats, ContainerStatsResponse,
    ContainerStorageStats, ContainerThrottlingData,
};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::manager::{Container, ContainerManager};
use super::record::Status;
use super::ContainerError;
use crate::runtime::stats::{BlkioEntry, RawStats, StatsSource};
use crate::runtime::CgroupVersion;
use crate::util::io::ByteReceiver;
use crate::util::time::rfc3339_nano;

/// How often a stream samples (dockerd's collector interval).
const INTERVAL: Duration = Duration::from_secs(1);

/// Go's zero `time.Time` as JSON.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `GET /containers/{id}/stats` options.
#[derive(Debug, Clone, Copy)]
pub struct StatsOptions {
    pub stream: bool,
    /// Only honoured from API 1.41 (the handler passes `false` below).
    pub one_shot: bool,
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions {
            stream: true,
            one_shot: false,
        }
    }
}

/// What a sampler needs to know about its container at one tick.
struct Now {
    name: String,
    /// The init's pid while the container runs (paused included), else `None`.
    pid: Option<i32>,
}

fn now_of(c: &Container) -> Now {
    c.with_record(|r| Now {
        name: format!("/{}", r.name),
        pid: (matches!(r.state.status, Status::Running | Status::Paused) && r.state.pid > 0)
            .then_some(r.state.pid as i32),
    })
}

/// host and none report no interfaces, as dockerd's sandbox statistics; a `none` container
/// that was connected to a bridge network (after `network disconnect none`) has them.
fn reports_networks(c: &Container) -> bool {
    c.with_record(|r| {
        let mode = r.host_config.network_mode.as_deref().unwrap_or("");
        mode != "host" && (mode != "none" || r.networks.keys().any(|n| n != "none"))
    })
}

impl ContainerManager {
    /// `GET /containers/{id}/stats`: JSON lines on a channel.
    pub async fn stats(
        self: &Arc<Self>,
        name: &str,
        opts: StatsOptions,
    ) -> Result<ByteReceiver, ContainerError> {
        if opts.stream && opts.one_shot {
            return Err(ContainerError::invalid(
                "cannot have stream=true and one-shot=true".to_string(),
            ));
        }
        let c = self.get(name)?;
        let id = c.id.clone();
        let with_net = reports_networks(&c);
        let source = self
            .runtime
            .stats_source(&c.with_record(|r| self.cgroup_path(r)));
        let (tx, rx) = mpsc::channel(4);

        if !opts.stream {
            let line = once(&c, &id, &source, with_net, opts.one_shot).await?;
            let _ = tx.send(Ok(Bytes::from(line))).await;
            return Ok(rx);
        }

        let mut state = c.subscribe();
        tokio::spawn(async move {
            let mut prev: Option<Sampled> = None;
            let mut tick = tokio::time::interval(INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = tx.closed() => return,
                    changed = state.changed() => {
                        if changed.is_err() || state.borrow().removed {
                            return;
                        }
                        continue;
                    }
                }
                if state.borrow().removed {
                    return;
                }
                let now = now_of(&c);
                let line = match now.pid {
                    Some(pid) => {
                        let cur = sample(&source, pid, with_net);
                        let line = encode(&response(&now.name, &id, &cur, prev.as_ref()));
                        prev = Some(cur);
                        line
                    }
                    None => {
                        // dockerd's errNotRunning frame; the next sample's precpu is zero.
                        prev = None;
                        zero_line(&now.name, &id)
                    }
                };
                if tx.send(Ok(Bytes::from(line))).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// What `docker stats` shows of a running container, for the daemon's metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// User plus system CPU time of the cgroup.
    pub cpu_seconds: f64,
    /// As the CLI counts it: usage less the inactive page cache.
    pub memory_usage: Option<u64>,
    pub memory_limit: Option<u64>,
    /// `(interface, rx bytes, tx bytes)`, `lo` left out.
    pub networks: Vec<(String, u64, u64)>,
    /// Bytes of the block I/O entries whose operation starts with r / w (the CLI's rule).
    pub blkio_read: Option<u64>,
    pub blkio_write: Option<u64>,
}

impl ContainerManager {
    /// Blocking (a handful of cgroup and `/proc` reads). A running container's usage now, or
    /// `None` when it is not running.
    pub fn usage_blocking(&self, c: &Container) -> Option<Usage> {
        let pid = now_of(c).pid?;
        let with_net = reports_networks(c);
        let raw = self
            .runtime
            .stats_source(&c.with_record(|r| self.cgroup_path(r)))
            .sample(with_net.then_some(pid));
        Some(usage_of(&raw))
    }
}

fn usage_of(raw: &RawStats) -> Usage {
    let m = &raw.memory;
    let inactive = m
        .stats
        .get("total_inactive_file")
        .or_else(|| m.stats.get("inactive_file"))
        .copied();
    let memory_usage = m.usage.map(|u| match inactive {
        Some(i) if i < u => u - i,
        _ => u,
    });
    let sum = |first: char| {
        raw.blkio.service_bytes.as_ref().map(|v| {
            v.iter()
                .filter(|e| {
                    e.op.chars()
                        .next()
                        .is_some_and(|c| c.eq_ignore_ascii_case(&first))
                })
                .map(|e| e.value)
                .sum()
        })
    };
    Usage {
        cpu_seconds: raw.cpu.total as f64 / 1e9,
        memory_usage,
        memory_limit: m.limit,
        networks: raw
            .networks
            .iter()
            .flatten()
            .map(|(n, d)| (n.clone(), d.rx_bytes, d.tx_bytes))
            .collect(),
        blkio_read: sum('r'),
        blkio_write: sum('w'),
    }
}

/// The answer of `stream=false`: two samples a second apart (the first primes
/// `precpu_stats`), or one with `one_shot`; zeroed for a container that is not running.
async fn once(
    c: &Container,
    id: &str,
    source: &StatsSource,
    with_net: bool,
    one_shot: bool,
) -> Result<Vec<u8>, ContainerError> {
    let now = now_of(c);
    let Some(pid) = now.pid else {
        return Ok(zero_line(&now.name, id));
    };
    let first = sample(source, pid, with_net);
    if one_shot {
        return Ok(encode(&response(&now.name, id, &first, None)));
    }
    tokio::time::sleep(INTERVAL).await;
    let now = now_of(c);
    let Some(pid) = now.pid else {
        return Ok(zero_line(&now.name, id));
    };
    let second = sample(source, pid, with_net);
    Ok(encode(&response(&now.name, id, &second, Some(&first))))
}

/// A sample and when it was read.
struct Sampled {
    raw: RawStats,
    read: String,
}

/// Read in the calling task: a sample is a dozen reads of cgroup and `/proc` files, which the
/// kernel generates without waiting on a disk (tens of microseconds in all). Handing each to
/// the blocking pool cost more than the reads: `docker stats` asks for every container at
/// once, and 500 requests made hundreds of blocking threads that spent their time waking each
/// other (about 30% of berthd's CPU for the command at 500 containers).
fn sample(src: &StatsSource, pid: i32, with_net: bool) -> Sampled {
    let read = rfc3339_nano(SystemTime::now());
    Sampled {
        raw: src.sample(with_net.then_some(pid)),
        read,
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serialising these types cannot fail (string keys, no custom serialisers that error).
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// dockerd's answer for a container that is not running: Go's zero `StatsResponse` with only
/// the name and ID, exactly as `encoding/json` writes it.
fn zero_line(name: &str, id: &str) -> Vec<u8> {
    let cpu = serde_json::json!({
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
    });
    let v = serde_json::json!({
        "read": ZERO_TIME,
        "preread": ZERO_TIME,
        "pids_stats": {},
        "blkio_stats": {
            "io_service_bytes_recursive": null,
            "io_serviced_recursive": null,
            "io_queue_recursive": null,
            "io_service_time_recursive": null,
            "io_wait_time_recursive": null,
            "io_merged_recursive": null,
            "io_time_recursive": null,
            "sectors_recursive": null
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu,
        "precpu_stats": cpu,
        "memory_stats": {},
        "name": name,
        "id": id
    });
    encode(&v)
}

fn nonzero(v: Option<u64>) -> Option<u64> {
    v.filter(|x| *x != 0)
}

fn cpu_stats(raw: &RawStats) -> ContainerCpuStats {
    let c = &raw.cpu;
    ContainerCpuStats {
        cpu_usage: Some(ContainerCpuUsage {
            total_usage: Some(c.total),
            percpu_usage: c.percpu.clone().filter(|v| !v.is_empty()),
            usage_in_kernelmode: Some(c.kernel),
            usage_in_usermode: Some(c.user),
        }),
        system_cpu_usage: nonzero(raw.system_cpu_usage),
        online_cpus: raw.online_cpus.filter(|n| *n != 0),
        throttling_data: Some(ContainerThrottlingData {
            periods: Some(c.periods),
            throttled_periods: Some(c.throttled_periods),
            throttled_time: Some(c.throttled_time),
        }),
    }
}

/// Go's zero `CPUStats` (precpu of a first or one-shot sample).
fn zero_cpu() -> ContainerCpuStats {
    cpu_stats(&RawStats::default())
}

fn blkio(v: &Option<Vec<BlkioEntry>>) -> Option<Vec<ContainerBlkioStatEntry>> {
    v.as_ref().map(|v| {
        v.iter()
            .map(|e| ContainerBlkioStatEntry {
                major: Some(e.major),
                minor: Some(e.minor),
                op: Some(e.op.clone()),
                value: Some(e.value),
            })
            .collect()
    })
}

/// One line of the stream in dockerd's shape (`StatsResponse`).
fn response(name: &str, id: &str, cur: &Sampled, prev: Option<&Sampled>) -> ContainerStatsResponse {
    let raw = &cur.raw;
    let m = &raw.memory;
    let b = &raw.blkio;
    // dockerd writes all eight lists on v1, empty ones as `[]`.
    let v1 = raw.cgroup_version == Some(CgroupVersion::V1);
    let list = |e: &Option<Vec<BlkioEntry>>| match blkio(e) {
        None if v1 => Some(Vec::new()),
        l => l,
    };
    ContainerStatsResponse {
        id: Some(id.to_string()),
        name: Some(name.to_string()),
        os_type: None,
        read: Some(cur.read.clone()),
        preread: Some(prev.map_or_else(|| ZERO_TIME.to_string(), |p| p.read.clone())),
        cpu_stats: Some(cpu_stats(raw)),
        precpu_stats: Some(prev.map_or_else(zero_cpu, |p| cpu_stats(&p.raw))),
        memory_stats: Some(ContainerMemoryStats {
            usage: nonzero(m.usage),
            max_usage: nonzero(m.max_usage),
            stats: (!m.stats.is_empty()).then(|| m.stats.clone()),
            failcnt: nonzero(m.failcnt),
            limit: nonzero(m.limit),
            ..Default::default()
        }),
        networks: raw.networks.as_ref().filter(|n| !n.is_empty()).map(|n| {
            n.iter()
                .map(|(name, d)| {
                    (
                        name.clone(),
                        ContainerNetworkStats {
                            rx_bytes: Some(d.rx_bytes),
                            rx_packets: Some(d.rx_packets),
                            rx_errors: Some(d.rx_errors),
                            rx_dropped: Some(d.rx_dropped),
                            tx_bytes: Some(d.tx_bytes),
                            tx_packets: Some(d.tx_packets),
                            tx_errors: Some(d.tx_errors),
                            tx_dropped: Some(d.tx_dropped),
                            endpoint_id: None,
                            instance_id: None,
                        },
                    )
                })
                .collect::<HashMap<_, _>>()
        }),
        pids_stats: Some(ContainerPidsStats {
            current: nonzero(raw.pids_current),
            limit: nonzero(raw.pids_limit),
        }),
        blkio_stats: Some(ContainerBlkioStats {
            io_service_bytes_recursive: list(&b.service_bytes),
            io_serviced_recursive: list(&b.serviced),
            io_queue_recursive: list(&b.queued),
            io_service_time_recursive: list(&b.service_time),
            io_wait_time_recursive: list(&b.wait_time),
            io_merged_recursive: list(&b.merged),
            io_time_recursive: list(&b.time),
            sectors_recursive: list(&b.sectors),
        }),
        num_procs: Some(0),
        storage_stats: Some(ContainerStorageStats::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::stats::{CpuRaw, MemoryRaw, NetDev};

    fn sampled(total: u64, read: &str) -> Sampled {
        let mut raw = RawStats {
            cpu: CpuRaw {
                total,
                percpu: Some(vec![total]),
                ..CpuRaw::default()
            },
            memory: MemoryRaw {
                usage: Some(100),
                limit: Some(1000),
                ..MemoryRaw::default()
            },
            system_cpu_usage: Some(5000),
            online_cpus: Some(2),
            networks: Some(vec![(
                "eth0".into(),
                NetDev {
                    rx_bytes: 7,
                    ..NetDev::default()
                },
            )]),
            ..RawStats::default()
        };
        raw.memory.stats.insert("total_inactive_file".into(), 10);
        Sampled {
            raw,
            read: read.into(),
        }
    }

    #[test]
    fn shape_with_and_without_a_previous_sample() {
        let first = sampled(10, "2026-01-01T00:00:00Z");
        let second = sampled(30, "2026-01-01T00:00:01Z");
        let v: serde_json::Value =
            serde_json::from_slice(&encode(&response("/web", "abc", &second, Some(&first))))
                .unwrap();
        assert_eq!(v["name"], "/web");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["read"], "2026-01-01T00:00:01Z");
        assert_eq!(v["preread"], "2026-01-01T00:00:00Z");
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 30);
        assert_eq!(v["precpu_stats"]["cpu_usage"]["total_usage"], 10);
        assert_eq!(v["cpu_stats"]["online_cpus"], 2);
        assert_eq!(v["memory_stats"]["stats"]["total_inactive_file"], 10);
        assert_eq!(v["networks"]["eth0"]["rx_bytes"], 7);
        assert_eq!(v["networks"]["eth0"]["tx_bytes"], 0);
        assert_eq!(v["num_procs"], 0);
        assert_eq!(v["storage_stats"], serde_json::json!({}));
        assert!(
            v["blkio_stats"].get("sectors_recursive").is_none(),
            "not a v1 sample"
        );

        let v: serde_json::Value =
            serde_json::from_slice(&encode(&response("/web", "abc", &second, None))).unwrap();
        assert_eq!(v["preread"], ZERO_TIME);
        assert_eq!(v["precpu_stats"]["cpu_usage"]["total_usage"], 0);
        assert!(v["precpu_stats"].get("system_cpu_usage").is_none());
    }

    #[test]
    fn usage_counts_as_the_cli() {
        let mut s = sampled(2_500_000_000, "2026-01-01T00:00:00Z");
        s.raw.blkio.service_bytes = Some(vec![
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 10,
            },
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 20,
            },
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Total".into(),
                value: 30,
            },
            BlkioEntry {
                major: 8,
                minor: 16,
                op: "write".into(),
                value: 5,
            },
        ]);
        let u = usage_of(&s.raw);
        assert_eq!(u.cpu_seconds, 2.5);
        assert_eq!(u.memory_usage, Some(90), "usage less total_inactive_file");
        assert_eq!(u.memory_limit, Some(1000));
        assert_eq!(u.networks, vec![("eth0".to_string(), 7, 0)]);
        assert_eq!((u.blkio_read, u.blkio_write), (Some(10), Some(25)));
    }

    #[test]
    fn zero_line_is_gos_zero_value() {
        let line = zero_line("/web", "abc");
        assert_eq!(*line.last().unwrap(), b'\n');
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["read"], ZERO_TIME);
        assert_eq!(v["name"], "/web");
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 0);
        assert!(v["blkio_stats"]["io_service_bytes_recursive"].is_null());
        assert_eq!(v["memory_stats"], serde_json::json!({}));
        assert!(v.get("networks").is_none());
    }
}
