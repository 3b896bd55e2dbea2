//! Container log drivers: json-file (and local), written by the supervisor, read by berthd.
//!
//! [`LogConfig::from_docker`] validates a `HostConfig.LogConfig` the way dockerd does and yields
//! the small configuration handed to the supervisor (as JSON). The supervisor feeds the
//! container's output to a [`Writer`]; berthd answers `GET /containers/{id}/logs` with [`read`]
//! and, for `follow=1`, [`read_and_follow`] and [`Follower::poll`].
//!
//! Divergence from dockerd: the `local` driver is accepted with its own defaults and
//! validation, but berth stores its logs in the json-file format (dockerd uses a protobuf
//! based format there). Clients cannot tell: they only read logs through the API. As with
//! dockerd's `local` driver, its entries carry no attributes; json-file's do ([`attrs`]).

pub mod attrs;
pub mod jsonfile;

use std::collections::HashMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::util::strconv::parse_bool;

pub use jsonfile::{read, read_and_follow, Follower, LogEntry, ReadOptions, Writer};

crate::module_error! {
    /// A log configuration or log I/O failure, with dockerd's wording where clients see it.
    pub struct LogError;
}

/// The output stream a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// `"stdout"` or `"stderr"`, as in the log file and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// The log drivers berth implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Driver {
    /// Docker's default: one JSON object per line.
    #[serde(rename = "json-file")]
    JsonFile,
    /// Docker's `local` driver. Stored in the json-file format by berth (see the module docs).
    #[serde(rename = "local")]
    Local,
    /// No log is kept; `docker logs` is refused.
    #[serde(rename = "none")]
    None,
}

impl Driver {
    /// The driver's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::JsonFile => "json-file",
            Driver::Local => "local",
            Driver::None => "none",
        }
    }
}

/// The name of the daemon's default driver, used for an empty `LogConfig.Type`.
pub const DEFAULT_DRIVER: &str = "json-file";

/// The local driver's defaults (dockerd: 20 MiB, 5 files, compressed).
const LOCAL_DEFAULT_MAX_SIZE: u64 = 20 * 1024 * 1024;
const LOCAL_DEFAULT_MAX_FILE: u32 = 5;

/// Options every driver's validator accepts (dockerd's common attributes).
const COMMON_OPTS: &[&str] = &["labels", "labels-regex", "env", "env-regex", "tag"];

/// Options dockerd takes out before the driver's own validator runs.
const BUILTIN_OPTS: &[&str] = &["mode", "max-buffer-size", "cache-disabled"];

/// What the supervisor needs to write a container's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    pub driver: Driver,
    /// Rotate once the current file has reached this many bytes; `None`: never rotate.
    pub max_size: Option<u64>,
    /// Files kept in total, the current one included (at least 1; 1 = start afresh).
    pub max_file: u32,
    /// Gzip rotated files.
    pub compress: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            driver: Driver::JsonFile,
            max_size: None,
            max_file: 1,
            compress: false,
        }
    }
}

impl LogConfig {
    /// From `HostConfig.LogConfig` (`Type`, `Config`). An empty type means [`DEFAULT_DRIVER`];
    /// a daemon configured with another default substitutes it (and merges its default
    /// options) before calling this. Validates as dockerd does at create and at start.
    pub fn from_docker(
        driver: &str,
        opts: &HashMap<String, String>,
    ) -> Result<LogConfig, LogError> {
        let driver = if driver.is_empty() {
            DEFAULT_DRIVER
        } else {
            driver
        };
        if driver == "none" {
            // dockerd validates nothing for `none`.
            return Ok(LogConfig {
                driver: Driver::None,
                ..LogConfig::default()
            });
        }
        let mode = opts.get("mode").map(String::as_str).unwrap_or("");
        if !matches!(mode, "" | "blocking" | "non-blocking") {
            return Err(LogError::invalid(format!(
                "logger: logging mode not supported: {mode}"
            )));
        }
        if let Some(v) = opts.get("max-buffer-size") {
            if mode != "non-blocking" {
                return Err(LogError::invalid(
                    "logger: max-buffer-size option is only supported with 'mode=non-blocking'",
                ));
            }
            parse_size(v, 1024).map_err(|e| {
                LogError::invalid(format!("error parsing option max-buffer-size: {e}"))
            })?;
        }
        if let Some(v) = opts.get("cache-disabled") {
            if !v.is_empty() && parse_bool(v).is_err() {
                return Err(LogError::invalid(format!(
                    "invalid value for option cache-disabled: {v}"
                )));
            }
        }
        let driver = match driver {
            "json-file" => Driver::JsonFile,
            "local" => Driver::Local,
            other => {
                return Err(LogError::invalid(format!(
                    "logger: no log driver named '{other}' is registered"
                )))
            }
        };
        let mut keys: Vec<&str> = opts
            .keys()
            .map(String::as_str)
            .filter(|k| !is_builtin_opt(k))
            .collect();
        keys.sort_unstable();
        for key in keys {
            // The local driver's validator knows its three options only (dockerd 20.10 to 28:
            // `unknown log opt 'tag' for log driver local`).
            let common = driver == Driver::JsonFile && COMMON_OPTS.contains(&key);
            if !matches!(key, "max-size" | "max-file" | "compress") && !common {
                return Err(LogError::invalid(match driver {
                    Driver::Local => format!("unknown log opt '{key}' for log driver local"),
                    _ => format!("unknown log opt '{key}' for json-file log driver"),
                }));
            }
        }
        match driver {
            Driver::Local => local_config(opts),
            _ => json_file_config(opts),
        }
    }

    /// Whether `docker logs` can read this log (false for `none`).
    pub fn readable(&self) -> bool {
        self.driver != Driver::None
    }
}

fn is_builtin_opt(key: &str) -> bool {
    if BUILTIN_OPTS.contains(&key) {
        return true;
    }
    // The log cache's options (`cache-max-size`, ...) are the local driver's, prefixed.
    key.strip_prefix("cache-").is_some_and(|k| {
        matches!(k, "max-size" | "max-file" | "compress") || COMMON_OPTS.contains(&k)
    })
}

fn json_file_config(opts: &HashMap<String, String>) -> Result<LogConfig, LogError> {
    let mut max_size = None;
    if let Some(v) = opts.get("max-size") {
        let n = parse_size(v, 1000).map_err(LogError::invalid)?;
        if n <= 0 {
            return Err(LogError::invalid("max-size must be a positive number"));
        }
        max_size = Some(n as u64);
    }
    let mut max_file = 1i64;
    if let Some(v) = opts.get("max-file") {
        max_file = parse_go_int(v).map_err(LogError::invalid)?;
        if max_file < 1 {
            return Err(LogError::invalid("max-file cannot be less than 1"));
        }
    }
    let mut compress = false;
    if let Some(v) = opts.get("compress") {
        compress = parse_bool(v).map_err(LogError::invalid)?;
        if compress && (max_file == 1 || max_size.is_none()) {
            return Err(LogError::invalid(
                "compress cannot be true when max-file is less than 2 or max-size is not set",
            ));
        }
    }
    Ok(LogConfig {
        driver: Driver::JsonFile,
        max_size,
        max_file: u32::try_from(max_file).unwrap_or(u32::MAX),
        compress,
    })
}

fn local_config(opts: &HashMap<String, String>) -> Result<LogConfig, LogError> {
    let mut max_size = LOCAL_DEFAULT_MAX_SIZE as i64;
    if let Some(v) = opts.get("max-size") {
        max_size = parse_size(v, 1000)
            .map_err(|e| LogError::invalid(format!("invalid value for max-size: {v}: {e}")))?;
    }
    let mut max_file = i64::from(LOCAL_DEFAULT_MAX_FILE);
    if let Some(v) = opts.get("max-file") {
        max_file = parse_go_int(v)
            .map_err(|e| LogError::invalid(format!("invalid value for max-file: {v}: {e}")))?;
    }
    let mut compress = true;
    if let Some(v) = opts.get("compress") {
        compress = parse_bool(v)
            .map_err(|e| LogError::invalid(format!("invalid boolean value for compress: {e}")))?;
    }
    if max_size < 0 {
        return Err(LogError::invalid("max-size must not be negative"));
    }
    if max_file < 0 {
        return Err(LogError::invalid("max-file must not be negative"));
    }
    if compress && max_file <= 1 {
        return Err(LogError::invalid(
            "compression cannot be enabled when max file count is 1",
        ));
    }
    Ok(LogConfig {
        driver: Driver::Local,
        max_size: Some(max_size as u64),
        max_file: u32::try_from(max_file.max(1)).unwrap_or(u32::MAX),
        compress,
    })
}

/// A size as Docker's `go-units` parses it: a number (fraction allowed), an optional space and
/// an optional unit `b`, `k`, `m`, `g`, `t`, `p` (case-insensitive, optionally followed by `b`
/// or `ib`). `base` 1000 is `FromHumanSize` (log sizes), 1024 is `RAMInBytes`. Like Go, a
/// value beyond the range of an i64 comes out negative.
pub fn parse_size(s: &str, base: i64) -> Result<i64, String> {
    let Some(sep) = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        return Err(format!("invalid size: '{s}'"));
    };
    let (num, sfx) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    let size = parse_go_float(num)?;
    if size < 0.0 {
        return Err(format!("invalid size: '{s}'"));
    }
    if sfx.is_empty() {
        return Ok(go_f64_to_i64(size));
    }
    let bad = || format!("invalid suffix: '{}'", sfx.to_ascii_lowercase());
    if sfx.len() > 3 {
        return Err(format!("invalid suffix: '{sfx}'"));
    }
    let lower = sfx.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    if bytes[0] == b'b' {
        if bytes.len() > 1 {
            return Err(bad());
        }
        return Ok(go_f64_to_i64(size));
    }
    let exp = match bytes[0] {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        _ => return Err(bad()),
    };
    match bytes.len() {
        2 if bytes[1] != b'b' => return Err(bad()),
        3 if &bytes[1..] != b"ib" => return Err(bad()),
        _ => {}
    }
    Ok(go_f64_to_i64(size * (base as f64).powi(exp)))
}

/// Go's `int64(f)` on amd64: out of range gives the minimum value.
fn go_f64_to_i64(f: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if (-LIMIT..LIMIT).contains(&f) {
        f as i64
    } else {
        i64::MIN
    }
}

fn parse_go_float(s: &str) -> Result<f64, String> {
    let valid = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    match s.parse::<f64>() {
        Ok(f) if valid => Ok(f),
        _ => Err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
    }
}

fn parse_go_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

/// A timestamp as `docker logs --timestamps` prints it: Go's `2006-01-02T15:04:05.000000000Z07:00`
/// in UTC, always nine fraction digits (dockerd's `rfc3339NanoFixed`).
pub fn format_timestamp(t: SystemTime) -> String {
    let odt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        odt.year(),
        u8::from(odt.month()),
        odt.day(),
        odt.hour(),
        odt.minute(),
        odt.second(),
        odt.nanosecond()
    )
}

/// A timestamp as the json-file `time` field holds it: Go's RFC3339Nano in UTC (trailing
/// zeros of the fraction trimmed).
pub fn format_rfc3339_nano(t: SystemTime) -> String {
    crate::util::time::rfc3339_nano(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::{ErrorKind, Kinded};
    use std::time::{Duration, UNIX_EPOCH};

    /// Log options from pairs (shared with the `attrs` tests).
    pub(super) fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(driver: &str, pairs: &[(&str, &str)]) -> String {
        match LogConfig::from_docker(driver, &opts(pairs)) {
            Ok(c) => panic!("accepted {c:?}"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidParameter);
                e.to_string()
            }
        }
    }

    #[test]
    fn json_file_defaults_and_options() {
        let c = LogConfig::from_docker("", &HashMap::new()).unwrap();
        assert_eq!(c, LogConfig::default());
        assert!(c.readable());
        let c = LogConfig::from_docker(
            "json-file",
            &opts(&[
                ("max-size", "10m"),
                ("max-file", "3"),
                ("compress", "true"),
                ("labels", "a"),
                ("tag", "{{.Name}}"),
                ("env-regex", "^X"),
                ("mode", "non-blocking"),
                ("max-buffer-size", "4m"),
                ("cache-disabled", "true"),
                ("cache-max-size", "1m"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c,
            LogConfig {
                driver: Driver::JsonFile,
                max_size: Some(10_000_000),
                max_file: 3,
                compress: true
            }
        );
        // max-file without max-size is accepted (and has no effect), as in dockerd.
        let c = LogConfig::from_docker("json-file", &opts(&[("max-file", "4")])).unwrap();
        assert_eq!((c.max_size, c.max_file), (None, 4));
    }

    #[test]
    fn validation_messages() {
        assert_eq!(
            err("syslog", &[]),
            "logger: no log driver named 'syslog' is registered"
        );
        assert_eq!(
            err("json-file", &[("foo", "1")]),
            "unknown log opt 'foo' for json-file log driver"
        );
        assert_eq!(
            err("local", &[("foo", "1")]),
            "unknown log opt 'foo' for log driver local"
        );
        assert_eq!(
            err("local", &[("tag", "x")]),
            "unknown log opt 'tag' for log driver local"
        );
        assert_eq!(
            err("json-file", &[("max-file", "0"), ("max-size", "1k")]),
            "max-file cannot be less than 1"
        );
        assert_eq!(
            err("json-file", &[("max-file", "x")]),
            "strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            err("json-file", &[("max-size", "10q")]),
            "invalid suffix: 'q'"
        );
        assert_eq!(err("json-file", &[("max-size", "m")]), "invalid size: 'm'");
        assert_eq!(
            err("json-file", &[("max-size", "0")]),
            "max-size must be a positive number"
        );
        assert_eq!(
            err("json-file", &[("compress", "yes")]),
            "strconv.ParseBool: parsing \"yes\": invalid syntax"
        );
        assert_eq!(
            err("json-file", &[("compress", "true"), ("max-size", "1m")]),
            "compress cannot be true when max-file is less than 2 or max-size is not set"
        );
        assert_eq!(
            err("json-file", &[("mode", "fast")]),
            "logger: logging mode not supported: fast"
        );
        assert_eq!(
            err("json-file", &[("max-buffer-size", "1m")]),
            "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
        );
        assert_eq!(
            err("local", &[("max-file", "1")]),
            "compression cannot be enabled when max file count is 1"
        );
        assert_eq!(
            err("local", &[("max-size", "-1")]),
            "invalid value for max-size: -1: invalid size: '-1'"
        );
    }

    #[test]
    fn local_and_none() {
        let c = LogConfig::from_docker("local", &HashMap::new()).unwrap();
        assert_eq!(
            c,
            LogConfig {
                driver: Driver::Local,
                max_size: Some(20 * 1024 * 1024),
                max_file: 5,
                compress: true
            }
        );
        let c = LogConfig::from_docker("local", &opts(&[("max-file", "1"), ("compress", "0")]))
            .unwrap();
        assert_eq!((c.max_file, c.compress), (1, false));
        // `none` takes anything.
        let c = LogConfig::from_docker("none", &opts(&[("whatever", "x")])).unwrap();
        assert_eq!(c.driver, Driver::None);
        assert!(!c.readable());
    }

    #[test]
    fn config_round_trips_as_json() {
        let c = LogConfig {
            driver: Driver::Local,
            max_size: Some(5),
            max_file: 2,
            compress: true,
        };
        let s = serde_json::to_string(&c).unwrap();
        assert!(s.contains("\"local\""), "{s}");
        assert_eq!(serde_json::from_str::<LogConfig>(&s).unwrap(), c);
    }

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(parse_size("10", 1000), Ok(10));
        assert_eq!(parse_size("10b", 1000), Ok(10));
        assert_eq!(parse_size("10k", 1000), Ok(10_000));
        assert_eq!(parse_size("10K", 1000), Ok(10_000));
        assert_eq!(parse_size("10kb", 1000), Ok(10_000));
        assert_eq!(parse_size("10KiB", 1000), Ok(10_000));
        assert_eq!(parse_size("1.5m", 1000), Ok(1_500_000));
        assert_eq!(parse_size("1 g", 1000), Ok(1_000_000_000));
        assert_eq!(parse_size("2m", 1024), Ok(2 * 1024 * 1024));
        assert!(parse_size("10kk", 1000).is_err());
        assert!(parse_size("10mbb", 1000).is_err());
        assert!(parse_size("1.2.3k", 1000).is_err());
        assert!(parse_size("", 1000).is_err());
        assert!(parse_size("99999999999p", 1000).unwrap() < 0);
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::new(1_704_164_645, 120_000_000);
        assert_eq!(format_timestamp(t), "2024-01-02T03:04:05.120000000Z");
        assert_eq!(format_rfc3339_nano(t), "2024-01-02T03:04:05.12Z");
        let t = UNIX_EPOCH + Duration::new(1_704_164_645, 0);
        assert_eq!(format_rfc3339_nano(t), "2024-01-02T03:04:05Z");
        assert_eq!(format_timestamp(t), "2024-01-02T03:04:05.000000000Z");
    }
}
