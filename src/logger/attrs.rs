//! The attributes a json-file log records with every entry (`attrs`), from the `labels`,
//! `labels-regex`, `env`, `env-regex` and `tag` log options, as dockerd's
//! `logger.Info.ExtraAttributes` and `loggerutils.ParseLogTag` compute them when the logger
//! starts (at each container start, so a renamed container's tag shows its new name after its
//! next start). `docker logs --details` prints them before each line ([`details_prefix`]).
//!
//! The `tag` option is a Go template over the container (`{{.Name}}`, `{{.ID}}`, ...). berth
//! renders the forms Docker documents: text, `{{.Field}}` (with `-` trim markers) and the
//! `lower`, `upper` and `title` functions, piped (`{{.Name | upper}}`) or called
//! (`{{upper .Name}}`). A tag with any other template action is left out (with a warning):
//! the container still starts. What dockerd refuses (an unknown field or function, an
//! unclosed action, a bad regex) fails the start with dockerd's text.

use std::collections::{BTreeMap, HashMap};

use super::jsonfile::write_json_string;
use super::LogError;
use crate::errors::{ErrorKind, Kinded};

/// The container as its logger sees it (dockerd's `logger.Info`).
#[derive(Debug, Clone, Default)]
pub struct LogInfo<'a> {
    /// The full container ID.
    pub id: &'a str,
    /// The name, without a leading `/`.
    pub name: &'a str,
    /// The image ID (`sha256:…`).
    pub image_id: &'a str,
    /// The image as the user named it (`Config.Image`).
    pub image_name: &'a str,
    /// The process's path and its arguments.
    pub path: &'a str,
    pub args: &'a [String],
    pub labels: Option<&'a HashMap<String, String>>,
    /// `Config.Env`, `KEY=value` each.
    pub env: &'a [String],
}

/// The attributes for a log with options `opts` (`HostConfig.LogConfig.Config`): the chosen
/// labels and environment variables, and `tag` when the option renders non-empty.
pub fn attributes(
    opts: &HashMap<String, String>,
    info: &LogInfo<'_>,
) -> Result<BTreeMap<String, String>, LogError> {
    let mut extra = BTreeMap::new();
    let labels: HashMap<&str, &str> = info
        .labels
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pick(&mut extra, opts, "labels", "labels-regex", &labels)?;
    // The last of repeated keys wins, as in Go's map.
    let env: HashMap<&str, &str> = info.env.iter().filter_map(|e| e.split_once('=')).collect();
    pick(&mut extra, opts, "env", "env-regex", &env)?;
    // json-file has no default tag: only one the user asked for.
    if let Some(t) = opts.get("tag").filter(|s| !s.is_empty()) {
        match render_tag(t, info) {
            Ok(tag) if !tag.is_empty() => {
                extra.insert("tag".to_string(), tag);
            }
            Ok(_) => {}
            // A template dockerd would render but berth cannot: the log goes on without the
            // tag rather than the container not starting.
            Err(e) if e.kind() == ErrorKind::NotImplemented => {
                tracing::warn!(container = info.id, "log tag left out: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(extra)
}

/// Into `extra`: the entries of `from` named in the comma-separated option `list`, then those
/// whose names match the option `regex` (dockerd's order: a later one overwrites).
fn pick(
    extra: &mut BTreeMap<String, String>,
    opts: &HashMap<String, String>,
    list: &str,
    regex: &str,
    from: &HashMap<&str, &str>,
) -> Result<(), LogError> {
    if let Some(names) = opts.get(list).filter(|s| !s.is_empty()) {
        for key in names.split(',') {
            if let Some(v) = from.get(key) {
                extra.insert(key.to_string(), v.to_string());
            }
        }
    }
    if let Some(re) = opts.get(regex).filter(|s| !s.is_empty()) {
        let re = compile(re)?;
        for (k, v) in from {
            if re.is_match(k) {
                extra.insert(k.to_string(), v.to_string());
            }
        }
    }
    Ok(())
}

/// A Go `regexp` (RE2 syntax, which the `regex` crate shares), with Go's error prefix.
fn compile(re: &str) -> Result<regex::Regex, LogError> {
    regex::Regex::new(re).map_err(|e| {
        // The crate's syntax errors draw the pattern and a caret over several lines; the
        // last one says what is wrong.
        let text = e.to_string();
        let what = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid pattern")
            .trim()
            .trim_start_matches("error: ");
        // Go's words for the most common mistakes.
        let what = match what {
            "unclosed group" => "missing closing )",
            "unopened group" => "unexpected )",
            "unclosed character class" => "missing closing ]",
            other => other,
        };
        LogError::invalid(format!("error parsing regexp: {what}: `{re}`"))
    })
}

/// The `tag` template rendered for `info` (see the module docs for what is understood).
pub fn render_tag(template: &str, info: &LogInfo<'_>) -> Result<String, LogError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        let after = &rest[open + 2..];
        let (trim_left, after) = match after.strip_prefix("- ") {
            Some(a) => (true, a),
            None => (false, after),
        };
        if trim_left {
            text = text.trim_end();
        }
        out.push_str(text);
        let Some(close) = after.find("}}") else {
            let (line, _) = position(template, after);
            return Err(tag_error(format!("log-tag:{line}: unclosed action")));
        };
        let mut action = &after[..close];
        let mut trim_right = false;
        if let Some(a) = action.strip_suffix(" -") {
            action = a;
            trim_right = true;
        }
        out.push_str(&eval_action(template, action.trim(), info)?);
        rest = &after[close + 2..];
        if trim_right {
            rest = rest.trim_start();
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The line (from 1) and the byte column (from 0) where `part`, a slice of `template`,
/// starts: how Go's template errors name a place.
fn position(template: &str, part: &str) -> (usize, usize) {
    let at = (part.as_ptr() as usize)
        .saturating_sub(template.as_ptr() as usize)
        .min(template.len());
    let before = &template[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |n| n + 1);
    (line, col)
}

fn tag_error(what: String) -> LogError {
    LogError::invalid(format!("template: {what}"))
}

/// One `{{...}}`: a field, optionally through `lower`/`upper`/`title`.
fn eval_action(template: &str, action: &str, info: &LogInfo<'_>) -> Result<String, LogError> {
    let line = position(template, action).0;
    if action.is_empty() {
        return Err(tag_error(format!(
            "log-tag:{line}: missing value for command"
        )));
    }
    let mut stages = action.split('|').map(str::trim);
    let first = stages.next().unwrap_or("");
    let mut words = first.split_whitespace();
    let head = words.next().unwrap_or("");
    let mut value = if head.starts_with('.') {
        if words.next().is_some() {
            return Err(unsupported(action));
        }
        field(template, head, info)?
    } else {
        // `{{upper .Name}}`: a function applied to one field.
        let (Some(arg), None) = (words.next(), words.next()) else {
            return Err(unsupported(action));
        };
        if !arg.starts_with('.') {
            return Err(unsupported(action));
        }
        apply(head, field(template, arg, info)?, action, line)?
    };
    for stage in stages {
        if stage.contains(char::is_whitespace) {
            return Err(unsupported(action));
        }
        value = apply(stage, value, action, line)?;
    }
    Ok(value)
}

fn field(template: &str, name: &str, info: &LogInfo<'_>) -> Result<String, LogError> {
    let short = |s: &str| s.get(..12).unwrap_or(s).to_string();
    Ok(match name {
        ".ID" => short(info.id),
        ".FullID" | ".ContainerID" => info.id.to_string(),
        ".Name" => info.name.trim_start_matches('/').to_string(),
        ".ContainerName" => format!("/{}", info.name.trim_start_matches('/')),
        ".ImageID" => short(info.image_id),
        ".ImageFullID" | ".ContainerImageID" => info.image_id.to_string(),
        ".ImageName" | ".ContainerImageName" => info.image_name.to_string(),
        ".DaemonName" => "docker".to_string(),
        ".Hostname" => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .map_err(|e| LogError::invalid(format!("logger: can not resolve hostname: {e}")))?,
        ".Command" => std::iter::once(info.path)
            .chain(info.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        ".ContainerEntrypoint" => info.path.to_string(),
        other => {
            let f = other.trim_start_matches('.');
            let (line, col) = position(template, name);
            return Err(tag_error(format!(
                "log-tag:{line}:{col}: executing \"log-tag\" at <{other}>: can't evaluate field {f} in type *logger.Info"
            )));
        }
    })
}

fn apply(func: &str, v: String, action: &str, line: usize) -> Result<String, LogError> {
    Ok(match func {
        "lower" => v.to_lowercase(),
        "upper" => v.to_uppercase(),
        "title" => title(&v),
        // Docker's other template functions, Go's built-in ones and its keywords.
        "json" | "split" | "join" | "pad" | "truncate" | "if" | "else" | "end" | "range"
        | "with" | "define" | "template" | "block" | "break" | "continue" | "and" | "or"
        | "not" | "len" | "index" | "slice" | "print" | "printf" | "println" | "html" | "js"
        | "urlquery" | "call" | "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
            return Err(unsupported(action))
        }
        other if other.starts_with('.') || other.is_empty() => return Err(unsupported(action)),
        other => {
            return Err(tag_error(format!(
                "log-tag:{line}: function \"{other}\" not defined"
            )))
        }
    })
}

/// Go's `strings.Title`: the first letter of each word upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if prev_letter {
            out.push(c);
        } else {
            out.extend(c.to_uppercase());
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    out
}

/// A template action dockerd knows and berth does not render ([`ErrorKind::NotImplemented`]).
fn unsupported(action: &str) -> LogError {
    LogError::new(
        ErrorKind::NotImplemented,
        format!(
            "template: log-tag: {{{{{action}}}}} is not supported by berth: a log tag may use {{{{.Field}}}} and the lower, upper and title functions"
        ),
    )
}

/// The attributes as dockerd's json-file logger stores them: Go's `json.Marshal` of the map
/// (keys sorted; `<`, `>`, `&` escaped), or nothing at all when there are none (dockerd writes
/// no `attrs` then).
pub fn encode(attrs: &BTreeMap<String, String>) -> Vec<u8> {
    if attrs.is_empty() {
        return Vec::new();
    }
    let mut buf = Vec::with_capacity(64);
    buf.push(b'{');
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_json_string(&mut buf, k.as_bytes(), true);
        buf.push(b':');
        write_json_string(&mut buf, v.as_bytes(), true);
    }
    buf.push(b'}');
    buf
}

/// What `docker logs --details` prints before a line (dockerd's `attrsByteSlice` and the
/// space after it): `key=value` pairs sorted by key, query-escaped, joined by commas.
pub fn details_prefix(attrs: &BTreeMap<String, String>, out: &mut Vec<u8>) {
    for (i, (k, v)) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        query_escape(k, out);
        out.push(b'=');
        query_escape(v, out);
    }
    out.push(b' ');
}

/// Go's `url.QueryEscape`: letters, digits and `-_.~` kept, a space as `+`, every other byte
/// `%XX`.
fn query_escape(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => {
                out.push(b'%');
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logger::tests::opts;

    fn info<'a>(labels: &'a HashMap<String, String>, env: &'a [String]) -> LogInfo<'a> {
        LogInfo {
            id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            name: "web",
            image_id: "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
            image_name: "busybox:latest",
            path: "/bin/sh",
            args: &[],
            labels: Some(labels),
            env,
        }
    }

    #[test]
    fn labels_env_and_their_regexes() {
        let labels = opts(&[("com.x", "1"), ("com.y", "2"), ("other", "3")]);
        let env = vec![
            "PATH=/bin".to_string(),
            "APP_A=a".to_string(),
            "APP_B=b=c".to_string(),
            "NOVALUE".to_string(),
        ];
        let i = info(&labels, &env);
        let a = attributes(
            &opts(&[("labels", "other,missing"), ("env", "PATH,NOVALUE")]),
            &i,
        )
        .unwrap();
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            [
                ("PATH".to_string(), "/bin".to_string()),
                ("other".to_string(), "3".to_string())
            ]
        );
        let a = attributes(
            &opts(&[("labels-regex", "^com\\."), ("env-regex", "^APP_")]),
            &i,
        )
        .unwrap();
        assert_eq!(
            a.keys().map(String::as_str).collect::<Vec<_>>(),
            ["APP_A", "APP_B", "com.x", "com.y"]
        );
        assert_eq!(a["APP_B"], "b=c");
        // No options: nothing at all.
        assert!(attributes(&HashMap::new(), &i).unwrap().is_empty());
        let e = attributes(&opts(&[("env-regex", "(")]), &i).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error parsing regexp: missing closing ): `(`"
        );
        let e = attributes(&opts(&[("labels-regex", "a{2")]), &i).unwrap_err();
        assert!(e.to_string().starts_with("error parsing regexp: "), "{e}");
    }

    #[test]
    fn tags_render_as_go_templates_do() {
        let labels = HashMap::new();
        let i = info(&labels, &[]);
        let tag = |t: &str| render_tag(t, &i).map_err(|e| e.to_string());
        assert_eq!(tag("mailer").unwrap(), "mailer");
        assert_eq!(
            tag("{{.ImageName}}/{{.Name}}/{{.ID}}").unwrap(),
            "busybox:latest/web/0123456789ab"
        );
        assert_eq!(tag("{{ .FullID }}").unwrap(), i.id);
        // dockerd shortens the ID with its `sha256:` prefix.
        assert_eq!(tag("{{.ImageID}}").unwrap(), "sha256:fedcb");
        assert_eq!(
            tag("{{.DaemonName}}-{{.Command}}").unwrap(),
            "docker-/bin/sh"
        );
        assert_eq!(tag("{{.Name | upper}}").unwrap(), "WEB");
        assert_eq!(tag("{{upper .Name}}").unwrap(), "WEB");
        assert_eq!(tag("{{title .Name}} x").unwrap(), "Web x");
        assert_eq!(tag("a  {{- .Name -}}  b").unwrap(), "awebb");
        assert_eq!(
            tag("{{.Nope}}").unwrap_err(),
            "template: log-tag:1:2: executing \"log-tag\" at <.Nope>: can't evaluate field Nope in type *logger.Info"
        );
        assert_eq!(
            tag("{{shout .Name}}").unwrap_err(),
            "template: log-tag:1: function \"shout\" not defined"
        );
        assert_eq!(
            tag("x\n {{.Name}} {{.Bad}}").unwrap_err(),
            "template: log-tag:2:13: executing \"log-tag\" at <.Bad>: can't evaluate field Bad in type *logger.Info"
        );
        assert!(tag("{{.Name").unwrap_err().contains("unclosed action"));
        assert!(tag("{{if .Name}}x{{end}}")
            .unwrap_err()
            .contains("is not supported by berth"));
        let a = attributes(&opts(&[("tag", "{{.Name}}")]), &i).unwrap();
        assert_eq!(a["tag"], "web");
        // What berth cannot render leaves the tag out; what dockerd refuses fails.
        let a = attributes(&opts(&[("tag", "{{if .Name}}x{{end}}"), ("env", "")]), &i).unwrap();
        assert!(a.is_empty(), "{a:?}");
        assert!(attributes(&opts(&[("tag", "{{.Nope}}")]), &i).is_err());
    }

    #[test]
    fn encoded_as_dockerd_stores_and_prints_them() {
        let mut a = BTreeMap::new();
        a.insert("tag".to_string(), "a<b>&\"c\"\t\u{1}é".to_string());
        a.insert("A".to_string(), "x y/z,=".to_string());
        assert_eq!(
            String::from_utf8(encode(&a)).unwrap(),
            "{\"A\":\"x y/z,=\",\"tag\":\"a\\u003cb\\u003e\\u0026\\\"c\\\"\\t\\u0001é\"}"
        );
        let mut out = Vec::new();
        details_prefix(&a, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A=x+y%2Fz%2C%3D,tag=a%3Cb%3E%26%22c%22%09%01%C3%A9 "
        );
        let mut out = Vec::new();
        details_prefix(&BTreeMap::new(), &mut out);
        assert_eq!(out, b" ");
        assert_eq!(encode(&BTreeMap::new()), b"");
    }
}
