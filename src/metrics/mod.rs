//! Prometheus metrics: dockerd's engine series (`engine_daemon_*`) and berth's per-container
//! series (`berth_container_*`), encoded in the Prometheus text format (0.0.4) by
//! `prometheus-client`.
//!
//! [`Metrics`] (one per daemon, shared as `Arc<Metrics>`) owns what is counted as it happens:
//! container action durations ([`Metrics::observe_action`]), health
//! checks ([`Metrics::health_check`]) and published events ([`Metrics::event`]). Everything
//! else is a sample of live state taken at scrape time from a [`MetricsSource`] (the daemon):
//! [`Metrics::encode`] builds a fresh registry for each scrape, so a removed container's series
//! are gone from the next scrape.
//!
//! This module speaks no HTTP (`server/metrics.rs` serves it) and imports no other module of
//! berth, so any manager may hold an `Arc<Metrics>`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The buckets of `engine_daemon_container_actions_seconds`: client_golang's `DefBuckets`, which
/// dockerd's timers use.
const ACTION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The actions dockerd exposes from its start, before any happened.
const INITIAL_ACTIONS: [&str; 5] = ["start", "changes", "commit", "create", "delete"];

/// The engine's facts for `engine_daemon_engine_info` and its CPU and memory gauges: the values
/// `/version` and `/info` report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineInfo {
    pub version: String,
    pub commit: String,
    pub architecture: String,
    pub graphdriver: String,
    pub kernel: String,
    pub os: String,
    pub os_type: String,
    pub os_version: String,
    pub daemon_id: String,
    pub cpus: i64,
    pub memory_bytes: i64,
}

/// How many containers are in each of dockerd's three metric states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerStates {
    pub running: u64,
    pub paused: u64,
    pub stopped: u64,
}

/// One network interface's byte counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceSample {
    pub interface: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One container's values at scrape time. A field that is `None` (or an empty `networks`) has
/// no series: a stopped container has no memory usage, not a usage of zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSample {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    /// The image as the user named it (`Config.Image`).
    pub image: String,
    pub restart_count: u64,
    /// User plus system CPU time of the container's cgroup.
    pub cpu_seconds: Option<f64>,
    pub memory_usage: Option<u64>,
    pub memory_limit: Option<u64>,
    pub networks: Vec<InterfaceSample>,
    pub blkio_read: Option<u64>,
    pub blkio_write: Option<u64>,
}

/// What a scrape reads from the daemon. Implementations must be cheap enough to run on every
/// scrape; [`Metrics::encode`] is called from a blocking thread, so file reads are fine.
pub trait MetricsSource: Send + Sync {
    fn engine_info(&self) -> EngineInfo;
    fn container_states(&self) -> ContainerStates;
    /// The clients subscribed to `/events` now.
    fn event_subscribers(&self) -> u64;
    fn container_samples(&self) -> Vec<ContainerSample>;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// dockerd's labels, in the (sorted) order its client library writes them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EngineLabels {
    architecture: String,
    commit: String,
    daemon_id: String,
    graphdriver: String,
    kernel: String,
    os: String,
    os_type: String,
    os_version: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    name: String,
    id: String,
    image: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabels {
    name: String,
    id: String,
    image: String,
    interface: String,
}

type ActionFamily = Family<ActionLabels, Histogram, fn() -> Histogram>;

fn action_histogram() -> Histogram {
    Histogram::new(ACTION_BUCKETS)
}

/// The daemon's metrics. Cheap to call from any thread; share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    container_actions: ActionFamily,
    health_checks: Counter,
    health_checks_failed: Counter,
    events: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let container_actions: ActionFamily = Family::new_with_constructor(action_histogram);
        for a in INITIAL_ACTIONS {
            drop(container_actions.get_or_create(&ActionLabels {
                action: a.to_string(),
            }));
        }
        Metrics {
            container_actions,
            health_checks: Counter::default(),
            health_checks_failed: Counter::default(),
            events: Counter::default(),
        }
    }

    /// A container action (`create`, `start`, `delete`, `commit`, `changes`, …) took `seconds`.
    pub fn observe_action(&self, action: &str, seconds: f64) {
        self.container_actions
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .observe(seconds);
    }

    /// A health check probe ran (and failed, if `failed`).
    pub fn health_check(&self, failed: bool) {
        self.health_checks.inc();
        if failed {
            self.health_checks_failed.inc();
        }
    }

    /// An event was published.
    pub fn event(&self) {
        self.events.inc();
    }

    /// The Prometheus text exposition of every series, with live values from `source`.
    pub fn encode(&self, source: &dyn MetricsSource) -> String {
        let registry = self.registry(source);
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
            // Only a failing writer errs, and a String does not fail.
            tracing::error!("encode metrics: {e}");
        }
        out
    }

    /// A registry for one scrape: the shared counters and histograms, and fresh families
    /// filled from `source`.
    fn registry(&self, source: &dyn MetricsSource) -> Registry {
        let mut root = Registry::default();
        let engine = root.sub_registry_with_prefix("engine_daemon");
        let info = source.engine_info();
        // Registered with the name's parts: prometheus-client appends the unit and the
        // `_total` of counters (and `_info` of info metrics) itself.
        engine.register(
            "engine",
            "The information related to the engine and the OS it is running on",
            Info::new(EngineLabels {
                architecture: info.architecture,
                commit: info.commit,
                daemon_id: info.daemon_id,
                graphdriver: info.graphdriver,
                kernel: info.kernel,
                os: info.os,
                os_type: info.os_type,
                os_version: info.os_version,
                version: info.version,
            }),
        );
        engine.register_with_unit(
            "engine_cpus",
            "The number of cpus that the host system of the engine has",
            Unit::Other("cpus".to_string()),
            gauge(info.cpus),
        );
        engine.register_with_unit(
            "engine_memory",
            "The number of bytes of memory that the host system of the engine has",
            Unit::Bytes,
            gauge(info.memory_bytes),
        );
        let states = source.container_states();
        let state_family = Family::<StateLabels, Gauge>::default();
        for (state, n) in [
            ("running", states.running),
            ("paused", states.paused),
            ("stopped", states.stopped),
        ] {
            state_family
                .get_or_create(&StateLabels { state })
                .set(saturate(n));
        }
        engine.register_with_unit(
            "container_states",
            "The count of containers in various states",
            Unit::Other("containers".to_string()),
            state_family,
        );
        engine.register_with_unit(
            "container_actions",
            "The number of seconds it takes to process each container action",
            Unit::Seconds,
            self.container_actions.clone(),
        );
        engine.register(
            "health_checks",
            "The total number of health checks",
            self.health_checks.clone(),
        );
        engine.register(
            "health_checks_failed",
            "The total number of failed health checks",
            self.health_checks_failed.clone(),
        );
        engine.register("events", "The number of events logged", self.events.clone());
        // A gauge, as in dockerd, whose unit is "total".
        engine.register_with_unit(
            "events_subscribers",
            "The number of current subscribers to events",
            Unit::Other("total".to_string()),
            gauge(saturate(source.event_subscribers())),
        );

        let containers = root.sub_registry_with_prefix("berth_container");
        register_samples(containers, &source.container_samples());
        root
    }
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

fn saturate(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

type FloatCounter = Counter<f64, AtomicU64>;

/// berth's per-container series (see docs/api-compat.md, "Metrics").
fn register_samples(reg: &mut Registry, samples: &[ContainerSample]) {
    let cpu = Family::<ContainerLabels, FloatCounter>::default();
    let mem_usage = Family::<ContainerLabels, Gauge>::default();
    let mem_limit = Family::<ContainerLabels, Gauge>::default();
    let rx = Family::<InterfaceLabels, Counter>::default();
    let tx = Family::<InterfaceLabels, Counter>::default();
    let blk_read = Family::<ContainerLabels, Counter>::default();
    let blk_write = Family::<ContainerLabels, Counter>::default();
    let restarts = Family::<ContainerLabels, Gauge>::default();
    for s in samples {
        let l = ContainerLabels {
            name: s.name.clone(),
            id: s.id.clone(),
            image: s.image.clone(),
        };
        restarts.get_or_create(&l).set(saturate(s.restart_count));
        if let Some(v) = s.cpu_seconds {
            cpu.get_or_create(&l).inc_by(v);
        }
        if let Some(v) = s.memory_usage {
            mem_usage.get_or_create(&l).set(saturate(v));
        }
        if let Some(v) = s.memory_limit {
            mem_limit.get_or_create(&l).set(saturate(v));
        }
        if let Some(v) = s.blkio_read {
            blk_read.get_or_create(&l).inc_by(v);
        }
        if let Some(v) = s.blkio_write {
            blk_write.get_or_create(&l).inc_by(v);
        }
        for n in &s.networks {
            let il = InterfaceLabels {
                name: s.name.clone(),
                id: s.id.clone(),
                image: s.image.clone(),
                interface: n.interface.clone(),
            };
            rx.get_or_create(&il).inc_by(n.rx_bytes);
            tx.get_or_create(&il).inc_by(n.tx_bytes);
        }
    }
    reg.register_with_unit(
        "cpu",
        "CPU time (user and system) the container has used, in seconds",
        Unit::Seconds,
        cpu,
    );
    reg.register_with_unit(
        "memory_usage",
        "Memory the container uses now, as docker stats counts it (without the page cache)",
        Unit::Bytes,
        mem_usage,
    );
    reg.register_with_unit(
        "memory_limit",
        "The container's memory limit (the host's memory when it has none)",
        Unit::Bytes,
        mem_limit,
    );
    reg.register_with_unit(
        "network_receive",
        "Bytes the container has received on an interface",
        Unit::Bytes,
        rx,
    );
    reg.register_with_unit(
        "network_transmit",
        "Bytes the container has sent on an interface",
        Unit::Bytes,
        tx,
    );
    reg.register_with_unit(
        "blkio_read",
        "Bytes the container has read from block devices",
        Unit::Bytes,
        blk_read,
    );
    reg.register_with_unit(
        "blkio_write",
        "Bytes the container has written to block devices",
        Unit::Bytes,
        blk_write,
    );
    reg.register(
        "restarts",
        "How many times the restart policy has restarted the container (RestartCount)",
        restarts,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        samples: Vec<ContainerSample>,
    }

    impl MetricsSource for Fake {
        fn engine_info(&self) -> EngineInfo {
            EngineInfo {
                version: "0.1.0".into(),
                commit: "abc".into(),
                architecture: "x86_64".into(),
                graphdriver: "overlay2".into(),
                kernel: "6.1.0".into(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                os_type: "linux".into(),
                os_version: "12".into(),
                daemon_id: "id-1".into(),
                cpus: 4,
                memory_bytes: 8 << 30,
            }
        }
        fn container_states(&self) -> ContainerStates {
            ContainerStates {
                running: 2,
                paused: 1,
                stopped: 3,
            }
        }
        fn event_subscribers(&self) -> u64 {
            5
        }
        fn container_samples(&self) -> Vec<ContainerSample> {
            self.samples.clone()
        }
    }

    fn sample() -> ContainerSample {
        ContainerSample {
            id: "c0ffee".into(),
            name: "web".into(),
            image: "busybox:latest".into(),
            restart_count: 2,
            cpu_seconds: Some(1.5),
            memory_usage: Some(4096),
            memory_limit: Some(1 << 20),
            networks: vec![InterfaceSample {
                interface: "eth0".into(),
                rx_bytes: 100,
                tx_bytes: 200,
            }],
            blkio_read: Some(10),
            blkio_write: Some(20),
        }
    }

    /// The metric names of every `# TYPE` line, with their types.
    fn types(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let (n, t) = l.split_once(' ').unwrap();
                (n.to_string(), t.to_string())
            })
            .collect()
    }

    #[test]
    fn engine_names_are_dockerds() {
        let m = Metrics::new();
        m.observe_action("start", 0.02);
        m.health_check(false);
        m.health_check(true);
        m.event();
        m.event();
        m.event();
        let text = m.encode(&Fake { samples: vec![] });
        let t = types(&text);
        for (name, kind) in [
            ("engine_daemon_engine_info", "gauge"),
            ("engine_daemon_engine_cpus_cpus", "gauge"),
            ("engine_daemon_engine_memory_bytes", "gauge"),
            ("engine_daemon_container_states_containers", "gauge"),
            ("engine_daemon_container_actions_seconds", "histogram"),
            ("engine_daemon_health_checks_total", "counter"),
            ("engine_daemon_health_checks_failed_total", "counter"),
            ("engine_daemon_events_total", "counter"),
            ("engine_daemon_events_subscribers_total", "gauge"),
        ] {
            assert!(
                t.contains(&(name.to_string(), kind.to_string())),
                "no {kind} {name} in:\n{text}"
            );
        }
        for line in [
            "engine_daemon_engine_info{architecture=\"x86_64\",commit=\"abc\",daemon_id=\"id-1\",graphdriver=\"overlay2\",kernel=\"6.1.0\",os=\"Debian GNU/Linux 12 (bookworm)\",os_type=\"linux\",os_version=\"12\",version=\"0.1.0\"} 1",
            "engine_daemon_engine_cpus_cpus 4",
            "engine_daemon_engine_memory_bytes 8589934592",
            "engine_daemon_container_states_containers{state=\"running\"} 2",
            "engine_daemon_container_states_containers{state=\"paused\"} 1",
            "engine_daemon_container_states_containers{state=\"stopped\"} 3",
            "engine_daemon_container_actions_seconds_bucket{action=\"start\",le=\"0.025\"} 1",
            "engine_daemon_container_actions_seconds_bucket{action=\"start\",le=\"0.01\"} 0",
            "engine_daemon_container_actions_seconds_count{action=\"start\"} 1",
            "engine_daemon_container_actions_seconds_count{action=\"create\"} 0",
            "engine_daemon_container_actions_seconds_count{action=\"delete\"} 0",
            "engine_daemon_health_checks_total 2",
            "engine_daemon_health_checks_failed_total 1",
            "engine_daemon_events_total 3",
            "engine_daemon_events_subscribers_total 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn container_series_follow_the_samples() {
        let m = Metrics::new();
        let mut src = Fake {
            samples: vec![sample()],
        };
        let text = m.encode(&src);
        let l = "name=\"web\",id=\"c0ffee\",image=\"busybox:latest\"";
        for line in [
            format!("berth_container_cpu_seconds_total{{{l}}} 1.5"),
            format!("berth_container_memory_usage_bytes{{{l}}} 4096"),
            format!("berth_container_memory_limit_bytes{{{l}}} 1048576"),
            format!("berth_container_network_receive_bytes_total{{{l},interface=\"eth0\"}} 100"),
            format!("berth_container_network_transmit_bytes_total{{{l},interface=\"eth0\"}} 200"),
            format!("berth_container_blkio_read_bytes_total{{{l}}} 10"),
            format!("berth_container_blkio_write_bytes_total{{{l}}} 20"),
            format!("berth_container_restarts{{{l}}} 2"),
        ] {
            assert!(
                text.lines().any(|x| x == line),
                "no line {line:?} in:\n{text}"
            );
        }
        // A stopped container: only its restart count; a removed one: nothing.
        src.samples[0].cpu_seconds = None;
        src.samples[0].memory_usage = None;
        src.samples[0].networks.clear();
        let text = m.encode(&src);
        assert!(
            !text.contains("berth_container_cpu_seconds_total{"),
            "{text}"
        );
        assert!(
            !text.contains("berth_container_memory_usage_bytes{"),
            "{text}"
        );
        assert!(text.contains("berth_container_restarts{"), "{text}");
        src.samples.clear();
        let text = m.encode(&src);
        assert!(!text.contains("c0ffee"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        let mut s = sample();
        s.name = "a\"b\\c".into();
        let text = m.encode(&Fake { samples: vec![s] });
        assert!(text.contains(r#"name="a\"b\\c""#), "{text}");
    }

    #[test]
    fn observed_actions_are_counted() {
        let m = Metrics::new();
        m.observe_action("commit", 0.25);
        let text = m.encode(&Fake { samples: vec![] });
        assert!(
            text.lines()
                .any(|l| l == "engine_daemon_container_actions_seconds_count{action=\"commit\"} 1"),
            "{text}"
        );
    }
}
