//! Dockerfile instructions applied to an image config, as `docker import --change` and
//! `docker commit --change` send them.

use std::collections::HashMap;

use serde_json::Value;

use super::config::RunConfig;
use super::ImageError;

/// Apply `changes` (one instruction each) to `config`.
pub fn apply_changes(config: &mut RunConfig, changes: &[String]) -> Result<(), ImageError> {
    for change in changes {
        let change = change.trim();
        if change.is_empty() {
            continue;
        }
        let (instr, args) = match change.split_once(char::is_whitespace) {
            Some((i, a)) => (i, a.trim()),
            None => (change, ""),
        };
        let bad = |why: &str| ImageError::invalid(format!("invalid change {change:?}: {why}"));
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => config.cmd = Some(exec_or_shell(args)),
            "ENTRYPOINT" => config.entrypoint = Some(exec_or_shell(args)),
            "ENV" => {
                let pairs = key_values(args, true).map_err(|e| bad(&e))?;
                let env = config.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs {
                    let entry = format!("{k}={v}");
                    match env
                        .iter_mut()
                        .find(|e| e.split('=').next() == Some(k.as_str()))
                    {
                        Some(existing) => *existing = entry,
                        None => env.push(entry),
                    }
                }
            }
            "LABEL" => {
                let pairs = key_values(args, false).map_err(|e| bad(&e))?;
                config.labels.get_or_insert_with(HashMap::new).extend(pairs);
            }
            "EXPOSE" => {
                let ports = config.exposed_ports.get_or_insert_with(HashMap::new);
                for p in words(args).map_err(|e| bad(&e))? {
                    // dockerd's text alone, as its builder gives it for the same word.
                    for key in exposed_keys(&p).map_err(ImageError::invalid)? {
                        ports.insert(key, Value::Object(Default::default()));
                    }
                }
            }
            "VOLUME" => {
                let vols = config.volumes.get_or_insert_with(HashMap::new);
                let list = match serde_json::from_str::<Vec<String>>(args) {
                    Ok(v) => v,
                    Err(_) => words(args).map_err(|e| bad(&e))?,
                };
                for v in list {
                    vols.insert(v, Value::Object(Default::default()));
                }
            }
            "WORKDIR" => {
                if args.is_empty() {
                    return Err(bad("WORKDIR needs a path"));
                }
                let dir = if args.starts_with('/') {
                    args.to_string()
                } else {
                    let base = config
                        .working_dir
                        .clone()
                        .unwrap_or_else(|| "/".to_string());
                    format!("{}/{args}", base.trim_end_matches('/'))
                };
                config.working_dir = Some(dir);
            }
            "USER" => config.user = Some(args.to_string()),
            "STOPSIGNAL" => config.stop_signal = Some(args.to_string()),
            "HEALTHCHECK" => {
                config.healthcheck = Some(healthcheck(args).map_err(ImageError::invalid)?)
            }
            "ONBUILD" => config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(args.to_string()),
            other => {
                return Err(ImageError::invalid(format!(
                    "{} is not a valid change command",
                    other.to_ascii_lowercase()
                )))
            }
        }
    }
    Ok(())
}

/// The `ExposedPorts` keys of one EXPOSE word, as go-connections' `nat.ParsePortSpecs` reads
/// it (dockerd's `dispatchExpose`, for a build's EXPOSE and for a `--change` alike):
/// `[ip:[hostPort]:]port[-end][/proto]`, each port of a range its own `port/proto` key, the
/// protocol `tcp`, `udp` or `sctp` (any case).
pub fn exposed_keys(word: &str) -> Result<Vec<String>, String> {
    // splitParts: the container port is the last of up to three `:`-separated parts.
    let container = word.rsplit(':').next().unwrap_or(word);
    // SplitProtoPort.
    let mut parts = container.split('/');
    let port = parts.next().unwrap_or("");
    let written = match parts.next() {
        None | Some("") => "tcp",
        Some(p) => p,
    };
    if port.is_empty() {
        return Err(format!("No port specified: {word}<empty>"));
    }
    let bad_port = || format!("Invalid containerPort: {port}");
    let (start, end) = match port.split_once('-') {
        None => {
            let p: u16 = port.parse().map_err(|_| bad_port())?;
            (p, p)
        }
        Some((a, b)) => {
            let a: u16 = a.parse().map_err(|_| bad_port())?;
            let b: u16 = b.parse().map_err(|_| bad_port())?;
            if b < a {
                return Err(bad_port());
            }
            (a, b)
        }
    };
    let proto = written.to_lowercase();
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("Invalid proto: {written}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// moby's `parseHealthcheck`: `NONE`, or `[--interval=D] [--timeout=D] [--start-period=D]
/// [--start-interval=D] [--retries=N] CMD command` (exec form `CMD`, shell form `CMD-SHELL`).
fn healthcheck(args: &str) -> Result<Value, String> {
    let mut rest = args.trim();
    let mut flags: Vec<(String, String)> = Vec::new();
    while let Some(f) = rest.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let (name, value) = f[..end].split_once('=').unwrap_or((&f[..end], ""));
        flags.push((name.to_string(), value.to_string()));
        rest = f[end..].trim_start();
    }
    if rest.is_empty() {
        return Err("HEALTHCHECK requires at least one argument".to_string());
    }
    let (typ, cmd) = match rest.split_once(char::is_whitespace) {
        Some((t, c)) => (t.to_ascii_uppercase(), c.trim()),
        None => (rest.to_ascii_uppercase(), ""),
    };
    let mut h = serde_json::Map::new();
    if typ == "NONE" {
        if !cmd.is_empty() || !flags.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".to_string());
        }
        h.insert("Test".to_string(), serde_json::json!(["NONE"]));
        return Ok(Value::Object(h));
    }
    if typ != "CMD" {
        return Err(format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"));
    }
    if cmd.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".to_string());
    }
    let test: Vec<String> = match serde_json::from_str::<Vec<String>>(cmd) {
        Ok(v) if cmd.starts_with('[') => std::iter::once("CMD".to_string()).chain(v).collect(),
        _ => vec!["CMD-SHELL".to_string(), cmd.to_string()],
    };
    h.insert("Test".to_string(), serde_json::json!(test));
    for (name, value) in flags {
        let key = match name.as_str() {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                let n: i32 = value
                    .parse()
                    .map_err(|_| format!("strconv.ParseInt: parsing {value:?}: invalid syntax"))?;
                if n < 0 {
                    return Err(format!("--retries cannot be negative ({n})"));
                }
                if n > 0 {
                    h.insert("Retries".to_string(), serde_json::json!(n));
                }
                continue;
            }
            other => return Err(format!("Unknown flag: {other}")),
        };
        if value.is_empty() {
            continue;
        }
        let ns = go_duration(&value).ok_or_else(|| format!("time: invalid duration {value:?}"))?;
        if ns == 0 {
            continue;
        }
        if ns < 1_000_000 {
            return Err(format!("Interval {name:?} cannot be less than 1ms"));
        }
        h.insert(key.to_string(), serde_json::json!(ns));
    }
    Ok(Value::Object(h))
}

/// Go's `time.ParseDuration` (`1m30s`, `500ms`, `1.5h`), in nanoseconds; negative is refused.
fn go_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(total as i64)
}

/// `["a","b"]` is the exec form; anything else runs through `/bin/sh -c`.
fn exec_or_shell(args: &str) -> Vec<String> {
    if args.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(args) {
            return v;
        }
    }
    vec!["/bin/sh".to_string(), "-c".to_string(), args.to_string()]
}

/// Split on white space, honouring quotes and backslash escapes.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => cur.push('\\'),
                }
            }
            (_, c) => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".to_string());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `k=v k2="v 2"`, or the legacy `k v w` (value is the rest) when `legacy` allows it.
fn key_values(s: &str, legacy: bool) -> Result<Vec<(String, String)>, String> {
    let w = words(s)?;
    if w.is_empty() {
        return Err("needs at least one argument".to_string());
    }
    if !w[0].contains('=') {
        if legacy && w.len() >= 2 {
            let value = s.trim()[w[0].len()..].trim().to_string();
            return Ok(vec![(w[0].clone(), value)]);
        }
        return Err(format!("{:?} is not of the form key=value", w[0]));
    }
    w.into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{kv:?} is not of the form key=value")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Result<RunConfig, ImageError> {
        let mut c = RunConfig::default();
        apply_changes(
            &mut c,
            &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        Ok(c)
    }

    #[test]
    fn applies_dockerfile_instructions() {
        let c = apply(&[
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "ENTRYPOINT echo x",
            "ENV A=1 B=\"two words\"",
            "ENV C 3 4",
            "ENV A=override",
            "LABEL org.x=y z=\"q r\"",
            "EXPOSE 80 53/UDP 8000-8001 127.0.0.1::90/sctp",
            "VOLUME /data /logs",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER 1000:1000",
            "STOPSIGNAL SIGINT",
        ])
        .unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.unwrap(), vec!["/bin/sh", "-c", "echo x"]);
        assert_eq!(c.env.unwrap(), vec!["A=override", "B=two words", "C=3 4"]);
        let labels = c.labels.unwrap();
        assert_eq!(labels["org.x"], "y");
        assert_eq!(labels["z"], "q r");
        let ports = c.exposed_ports.unwrap();
        let mut keys: Vec<&String> = ports.keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "90/sctp"]
        );
        assert_eq!(c.volumes.unwrap().len(), 2);
        assert_eq!(c.working_dir.unwrap(), "/srv/app");
        assert_eq!(c.user.unwrap(), "1000:1000");
        assert_eq!(c.stop_signal.unwrap(), "SIGINT");
    }

    #[test]
    fn refuses_bad_changes() {
        assert_eq!(
            apply(&["RUN echo"]).unwrap_err().to_string(),
            "run is not a valid change command"
        );
        assert_eq!(
            apply(&["EXPOSE abc"]).unwrap_err().to_string(),
            "Invalid containerPort: abc"
        );
        assert!(apply(&["ENV"]).is_err());
        assert!(apply(&["LABEL novalue"]).is_err());
        assert!(apply(&["ENV A=\"open"]).is_err());
        assert_eq!(
            apply(&["HEALTHCHECK CMD"]).unwrap_err().to_string(),
            "Missing command after HEALTHCHECK CMD"
        );
        assert!(apply(&["HEALTHCHECK --interval=1us CMD true"]).is_err());
        assert!(apply(&["HEALTHCHECK SHELL true"]).is_err());
    }

    #[test]
    fn expose_words_as_go_connections_reads_them() {
        assert_eq!(exposed_keys("80").unwrap(), ["80/tcp"]);
        assert_eq!(exposed_keys("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(exposed_keys("80/").unwrap(), ["80/tcp"]);
        assert_eq!(
            exposed_keys("8000-8002/tcp").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(exposed_keys("127.0.0.1:80:90/sctp").unwrap(), ["90/sctp"]);
        assert_eq!(
            exposed_keys("90/bogus").unwrap_err(),
            "Invalid proto: bogus"
        );
        assert_eq!(
            exposed_keys("abc").unwrap_err(),
            "Invalid containerPort: abc"
        );
        assert_eq!(
            exposed_keys("9-8").unwrap_err(),
            "Invalid containerPort: 9-8"
        );
    }

    #[test]
    fn healthchecks_as_moby_parses_them() {
        let c = apply(&["HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://x/"]).unwrap();
        assert_eq!(
            c.healthcheck.unwrap(),
            serde_json::json!({"Test": ["CMD-SHELL", "curl -f http://x/"], "Interval": 90_000_000_000i64, "Retries": 3})
        );
        let c = apply(&[r#"HEALTHCHECK --timeout=500ms CMD ["true"]"#]).unwrap();
        assert_eq!(
            c.healthcheck.unwrap(),
            serde_json::json!({"Test": ["CMD", "true"], "Timeout": 500_000_000})
        );
        let c = apply(&["HEALTHCHECK NONE"]).unwrap();
        assert_eq!(
            c.healthcheck.unwrap(),
            serde_json::json!({"Test": ["NONE"]})
        );
    }
}
