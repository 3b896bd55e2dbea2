//! Timestamps in the forms Docker's API uses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RFC 3339 with nanoseconds, as Go's `time.RFC3339Nano` prints UTC times.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let odt = time::OffsetDateTime::from(t);
    let fmt = time::format_description::well_known::Rfc3339;
    odt.format(&fmt)
        .unwrap_or_else(|_| "0001-01-01T00:00:00Z".to_string())
}

/// Nanoseconds since the epoch (0 before it).
pub fn unix_nanos(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Parse a timestamp as Docker's `--since`/`--until` accept it: Unix seconds with an optional
/// fraction (`1700000000.5`), an RFC 3339 time, or a Go duration (`10m`, `1h30m`) meaning that long
/// before `now`. Returns `None` for anything else.
pub fn parse_timestamp(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Some(t) = parse_unix(value) {
        return Some(t);
    }
    let fmt = time::format_description::well_known::Rfc3339;
    if let Ok(odt) = time::OffsetDateTime::parse(value, &fmt) {
        let secs = odt.unix_timestamp();
        if secs < 0 {
            return Some(UNIX_EPOCH);
        }
        return UNIX_EPOCH.checked_add(Duration::new(secs as u64, odt.nanosecond()));
    }
    let d = parse_go_duration(value)?;
    now.checked_sub(d)
}

fn parse_unix(value: &str) -> Option<SystemTime> {
    let (secs, frac) = match value.split_once('.') {
        Some((s, f)) => (s, f),
        None => (value, ""),
    };
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let s: u64 = secs.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    UNIX_EPOCH.checked_add(Duration::new(s, nanos))
}

/// moby's `timestamp.ParseUnixTimestamp` (without its `invalid timestamp` prefix): signed
/// seconds, then optionally `.` and up to 20 digits of which the first 9 are nanoseconds.
pub fn parse_unix_timestamp(value: &str) -> Result<SystemTime, String> {
    let (s, n) = value.split_once('.').unwrap_or((value, ""));
    let sec: i64 = s.parse().map_err(|e: std::num::ParseIntError| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("invalid seconds {s:?}: {why}")
    })?;
    const MAX_FRAC_DIGITS: usize = 20;
    if n.len() > MAX_FRAC_DIGITS {
        return Err(format!(
            "invalid nanoseconds: length {} exceeds maximum {MAX_FRAC_DIGITS}",
            n.len()
        ));
    }
    if let Some((i, c)) = n.bytes().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(format!(
            "invalid nanoseconds: invalid character '{}' at position {i}",
            c.escape_ascii()
        ));
    }
    let digits = &n[..n.len().min(9)];
    let nanos: u32 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().unwrap_or(0)
    };
    let t = if sec >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(sec as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(sec.unsigned_abs()))
    };
    t.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
        .ok_or_else(|| format!("invalid seconds {s:?}: value out of range"))
}

/// moby's `timestamp.Parse` as the `until` filters of image list and prune report it: the
/// time, or moby's error text (`failed to parse value as time or duration: …`). The forms
/// accepted are [`parse_timestamp`]'s. A value with a `-` that is no RFC 3339 time fails as in
/// moby, but not in Go's words (`time.Parse`'s layout messages are not reproduced).
pub fn parse_timestamp_or_error(value: &str, now: SystemTime) -> Result<SystemTime, String> {
    if value.trim().is_empty() {
        return Err("failed to parse value as time or duration: value is empty".to_string());
    }
    if let Some(t) = parse_timestamp(value, now) {
        return Ok(t);
    }
    if value.contains('-') {
        return Err(format!("parsing time {value:?}: not a time berth reads"));
    }
    // moby's last resort: a Unix time in `ParseUnixTimestamp`'s wider forms (`+5`, more than
    // nine digits of fraction), or its error.
    parse_unix_timestamp(value)
        .map_err(|e| format!("failed to parse value as time or duration: {e}"))
}

/// Parse a Go duration string such as `300ms`, `1.5h` or `2h45m`.
pub fn parse_go_duration(value: &str) -> Option<Duration> {
    let mut rest = value;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let num: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += num * unit;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A duration as Go's `time.Duration.String` prints it: `1s`, `500ms`, `1m30s`, `1.5s`.
pub fn go_duration_string(d: Duration) -> String {
    let ns = d.as_nanos();
    // The whole part and the trimmed fraction of `v` in `unit`s (`unit` a power of ten).
    fn frac(v: u128, unit: u128) -> String {
        let (whole, rest) = (v / unit, v % unit);
        if rest == 0 {
            return whole.to_string();
        }
        let width = unit.to_string().len() - 1;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
    const S: u128 = 1_000_000_000;
    match ns {
        0 => "0s".to_string(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", frac(n, 1_000)),
        n if n < S => format!("{}ms", frac(n, 1_000_000)),
        n => {
            let (h, m) = (n / (3600 * S), n % (3600 * S) / (60 * S));
            let s = format!("{}s", frac(n % (60 * S), S));
            match (h, m) {
                (0, 0) => s,
                (0, m) => format!("{m}m{s}"),
                (h, m) => format!("{h}h{m}m{s}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_values_fail_with_mobys_words() {
        let now = SystemTime::now();
        let e = |v: &str| parse_timestamp_or_error(v, now).unwrap_err();
        assert_eq!(
            e("xyz"),
            r#"failed to parse value as time or duration: invalid seconds "xyz": invalid syntax"#
        );
        assert_eq!(
            e("1.x"),
            "failed to parse value as time or duration: invalid nanoseconds: invalid character 'x' at position 0"
        );
        assert_eq!(
            e(" "),
            "failed to parse value as time or duration: value is empty"
        );
        assert!(e("2020-13-99").starts_with(r#"parsing time "2020-13-99""#));
        let at = |v: &str| unix_nanos(parse_timestamp_or_error(v, now).unwrap());
        assert_eq!(at("1700000000.5"), 1_700_000_000_500_000_000);
        assert_eq!(at("+5"), 5_000_000_000);
        assert_eq!(at("1.1234567891"), 1_123_456_789);
        assert_eq!(at("10m"), unix_nanos(now) - 600_000_000_000);
    }

    #[test]
    fn go_duration_strings() {
        let f = |ms: u64| go_duration_string(Duration::from_millis(ms));
        assert_eq!(f(0), "0s");
        assert_eq!(f(1000), "1s");
        assert_eq!(f(500), "500ms");
        assert_eq!(f(1500), "1.5s");
        assert_eq!(f(90_000), "1m30s");
        assert_eq!(f(60_000), "1m0s");
        assert_eq!(f(3_600_000), "1h0m0s");
        assert_eq!(go_duration_string(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration_string(Duration::from_nanos(12)), "12ns");
    }

    #[test]
    fn parses_docker_timestamps() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            parse_timestamp("1700000000", now),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            parse_timestamp("1700000000.25", now),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 250_000_000))
        );
        assert_eq!(
            parse_timestamp("1970-01-01T00:00:10Z", now),
            Some(UNIX_EPOCH + Duration::from_secs(10))
        );
        assert_eq!(
            parse_timestamp("10m", now),
            Some(UNIX_EPOCH + Duration::from_secs(9_400))
        );
        assert_eq!(
            parse_timestamp("1h1m", now),
            Some(UNIX_EPOCH + Duration::from_secs(6_340))
        );
        assert_eq!(parse_timestamp("yesterday", now), None);
        assert_eq!(parse_timestamp("12x", now), None);
        assert_eq!(parse_timestamp("", now), None);
        // Out of range: refused, never a panic or a wrapped time.
        assert_eq!(parse_timestamp("18446744073709551615", now), None);
        assert_eq!(parse_timestamp("9223372036854775808", now), None);
        let far = parse_timestamp("9999-12-31T23:59:59Z", now).unwrap();
        assert!(far > UNIX_EPOCH + Duration::from_secs(253_000_000_000));
    }

    #[test]
    fn formats_rfc3339() {
        let t = UNIX_EPOCH + Duration::new(1, 5);
        assert_eq!(rfc3339_nano(t), "1970-01-01T00:00:01.000000005Z");
    }
}
