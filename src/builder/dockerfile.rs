//! A parsed Dockerfile (over `parse-dockerfile`): the `ARG`s before the first `FROM`, and the
//! stages with their instructions, words not yet expanded (the builder expands them with
//! `shell::ShellLex` as it dispatches, since values depend on earlier steps).

use std::collections::HashMap;

use parse_dockerfile as pd;

use super::BuilderError;

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The escape token (`\`, or `` ` `` from the `# escape=` directive).
    pub escape: char,
    /// `ARG`s before the first `FROM` (usable in `FROM` lines only).
    pub meta_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
}

/// One `FROM` and what follows it up to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The base image (or `scratch`, or an earlier stage's name), not expanded.
    pub base: String,
    /// `AS name`, lower-cased as dockerd does.
    pub name: Option<String>,
    /// `--platform=…`, not expanded.
    pub platform: Option<String>,
    /// The `FROM` line as dockerd prints it in `Step n/m : …`.
    pub original: String,
    pub instructions: Vec<Instruction>,
}

/// One instruction after `FROM`.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub kind: Kind,
    /// The instruction as dockerd prints it in `Step n/m : …` (moby's `node.Original`: the
    /// source text with line continuations joined).
    pub original: String,
    /// 1-based line of the instruction's start.
    pub line: usize,
}

/// The shell form (run through `SHELL`) or the JSON (exec) form.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopySpec {
    /// The sources, not expanded (JSON form: as written; shell form: the words).
    pub srcs: Vec<String>,
    /// The destination, not expanded.
    pub dest: String,
    /// `--from=<stage name|stage index|image>`.
    pub from: Option<String>,
    /// `--chown=user[:group]`, not expanded.
    pub chown: Option<String>,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD …`, durations in nanoseconds (0: unset).
#[derive(Debug, Clone, PartialEq)]
pub enum Healthcheck {
    None,
    Cmd {
        /// `["CMD", args…]` or `["CMD-SHELL", text]`.
        test: Vec<String>,
        interval: i64,
        timeout: i64,
        start_period: i64,
        start_interval: i64,
        retries: i64,
    },
}

/// What an instruction does. Words are as written (quotes kept where expansion needs them).
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Run(Command),
    Cmd(Command),
    Entrypoint(Command),
    /// `ENV k=v …` or the legacy `ENV k v`.
    Env(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Label(Vec<(String, String)>),
    /// The port words (`80/tcp`, `${P}`).
    Expose(Vec<String>),
    /// The paths (JSON or words).
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
    /// The trigger instruction's text (`RUN echo hi`), stored in the image's `OnBuild`.
    Onbuild(String),
    Maintainer(String),
    Copy(CopySpec),
    Add(CopySpec),
}

/// dockerd's text for a feature the classic builder leaves to BuildKit.
fn requires_buildkit(what: &str) -> BuilderError {
    BuilderError::invalid(format!(
        "the {what} requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled"
    ))
}

const INSTRUCTIONS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// One instruction as buildkit's line parser sees it (`node.Original` and where it starts).
#[derive(Debug)]
struct Logical {
    /// Byte offset of the instruction keyword in the (BOM-stripped) text.
    offset: usize,
    /// 1-based line of the instruction's start.
    line: usize,
    /// Continuations joined, comment and empty lines inside them dropped.
    original: String,
}

/// `cmd`, the `--flags` and the rest of a logical line (buildkit's `splitCommand`).
struct Split {
    cmd: String,
    flags: Vec<String>,
    rest: String,
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// buildkit's `lineContinuationRegex`: `([^\\])\\[ \t]*$|^\\[ \t]*$`.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

/// The escape directive (`# escape=\`` before any instruction or other comment).
fn escape_directive(text: &str) -> Result<char, BuilderError> {
    let mut escape = '\\';
    let mut seen = false;
    for line in text.lines() {
        let Some(body) = line.trim_start().strip_prefix('#') else {
            break;
        };
        let Some((name, value)) = body.split_once('=') else {
            break;
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            break;
        }
        if name.eq_ignore_ascii_case("escape") {
            let value = value.trim();
            if seen {
                return Err(BuilderError::invalid(
                    "only one escape parser directive can be used",
                ));
            }
            seen = true;
            escape = match value {
                "`" => '`',
                "\\" => '\\',
                _ => {
                    return Err(BuilderError::invalid(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    )))
                }
            };
        }
    }
    Ok(escape)
}

/// The logical lines of a Dockerfile, as buildkit's `parser.Parse` joins them.
fn logical_lines(text: &str, escape: char) -> Vec<Logical> {
    let mut lines = Vec::new();
    let mut off = 0;
    for raw in text.split_inclusive('\n') {
        lines.push((off, raw));
        off += raw.len();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (off, raw) = lines[i];
        i += 1;
        let t = trim_newline(raw);
        let lead = t.len() - t.trim_start().len();
        let t = t.trim_start();
        let t = if is_comment(t) { "" } else { t };
        let start_line = i;
        let (seg, mut eol) = trim_continuation(t, escape);
        if eol && seg.is_empty() {
            continue;
        }
        let mut buf = seg.to_string();
        while !eol && i < lines.len() {
            let raw = trim_newline(lines[i].1);
            i += 1;
            if is_comment(raw) || raw.trim_start().is_empty() {
                continue;
            }
            let (seg, e) = trim_continuation(raw, escape);
            eol = e;
            buf.push_str(seg);
        }
        out.push(Logical {
            offset: off + lead,
            line: start_line,
            original: buf,
        });
    }
    out
}

/// buildkit's `splitCommand` and `extractBuilderFlags`.
fn split_command(line: &str, escape: char) -> Split {
    let line = line.trim();
    let (cmd, rest) = match line.find(is_ws) {
        Some(i) => (&line[..i], line[i..].trim_start_matches(is_ws)),
        None => (line, ""),
    };
    let (rest, flags) = extract_flags(rest, escape);
    Split {
        cmd: cmd.to_string(),
        flags,
        rest: rest.trim().to_string(),
    }
}

fn extract_flags(line: &str, escape: char) -> (&str, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= chars.len() {
        let end = pos == chars.len();
        let ch = if end { '\0' } else { chars[pos].1 };
        if phase == Phase::Spaces {
            if end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            if ch != '-' || pos + 1 == chars.len() || chars[pos + 1].1 != '-' {
                return (&line[chars[pos].0..], words);
            }
            phase = Phase::Word;
        }
        if end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return ("", words);
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (&line[chars[pos].0..], words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut ch = ch;
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = chars[pos].1;
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // in quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut ch = ch;
        if ch == escape {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = chars[pos].1;
        }
        word.push(ch);
        pos += 1;
    }
    ("", words)
}

/// buildkit's `parseWords`: whitespace-separated words, quotes and escapes kept.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let (mut in_word, mut in_quote) = (false, false);
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut pos = 0;
    while pos <= chars.len() {
        let end = pos == chars.len();
        let ch = if end { '\0' } else { chars[pos] };
        if !in_word && !in_quote {
            if end {
                break;
            }
            if ch.is_whitespace() {
                pos += 1;
                continue;
            }
            in_word = true;
        }
        if end {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        }
        if in_word {
            if ch.is_whitespace() {
                in_word = false;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                in_word = false;
                in_quote = true;
            }
            if in_word && ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                word.push(chars[pos]);
                pos += 1;
                continue;
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // in quote (the opening quote itself was pushed above)
        if ch == quote {
            in_quote = false;
            in_word = true;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                in_quote = false;
                in_word = true;
                pos += 1;
                continue;
            }
            word.push(ch);
            pos += 1;
            word.push(chars[pos]);
            pos += 1;
            continue;
        }
        word.push(ch);
        pos += 1;
    }
    words
}

/// buildkit's `parseNameVal` (ENV, LABEL): `k=v …` words (quotes kept) or the legacy `k v`.
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Err(format!("{key} requires at least one argument"));
    }
    if !words[0].contains('=') {
        let Some(i) = rest.find(is_ws) else {
            return Err(format!("{key} must have two arguments"));
        };
        let name = &rest[..i];
        let value = rest[i..].trim_start_matches(is_ws);
        return Ok(vec![(name.to_string(), value.to_string())]);
    }
    let mut out = Vec::new();
    for word in words {
        let Some((name, value)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
            ));
        };
        if name.is_empty() {
            return Err(format!("{key} names can not be blank"));
        }
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

fn parse_args(rest: &str, escape: char) -> Result<Vec<ArgDecl>, String> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Err("ARG requires at least one argument".into());
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err("ARG names can not be blank".to_string()),
            Some((k, v)) => Ok(ArgDecl {
                name: k.to_string(),
                default: Some(v.to_string()),
            }),
            None => Ok(ArgDecl {
                name: w,
                default: None,
            }),
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum FlagType {
    Bool,
    Str,
    Strs,
}

/// buildkit's `BFlags.Parse`: the used flags in order, with their values.
fn parse_flags(
    flags: &[String],
    known: &[(&str, FlagType)],
) -> Result<Vec<(String, String)>, String> {
    let mut used: Vec<(String, String)> = Vec::new();
    for a in flags {
        if a == "--" {
            break;
        }
        let Some(stripped) = a.strip_prefix("--") else {
            return Err(format!("arg should start with -- : {a}"));
        };
        let (name, value) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (stripped, None),
        };
        let flag_name = format!("--{name}");
        let Some(&(_, ty)) = known.iter().find(|(k, _)| *k == name) else {
            return Err(format!("unknown flag: {flag_name}"));
        };
        if ty != FlagType::Strs && used.iter().any(|(n, _)| n == name) {
            return Err(format!("duplicate flag specified: {flag_name}"));
        }
        let value = match ty {
            FlagType::Bool => match value.map(str::to_ascii_lowercase).as_deref() {
                Some("") => return Err(format!("missing a value on flag: {flag_name}")),
                None | Some("true") => "true".to_string(),
                Some("false") => "false".to_string(),
                Some(_) => {
                    return Err(format!(
                        "expecting boolean value for flag {flag_name}, not: {}",
                        value.unwrap_or_default()
                    ))
                }
            },
            FlagType::Str | FlagType::Strs => match value {
                Some(v) => v.to_string(),
                None => return Err(format!("missing a value on flag: {flag_name}")),
            },
        };
        used.push((name.to_string(), value));
    }
    Ok(used)
}

fn flag<'a>(used: &'a [(String, String)], name: &str) -> Option<&'a str> {
    used.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Go's `strconv.Quote` for the texts that quote a value (`%q`).
fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// Go's `time.ParseDuration`, in nanoseconds, with its error texts.
fn go_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !s.is_empty() {
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(r) = s.strip_prefix('.') {
            let l = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac_part = &r[..l];
            s = &r[l..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let mult: i128 = match unit {
            "" => return Err(format!("time: missing unit in duration {}", go_quote(orig))),
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit),
                    go_quote(orig)
                ))
            }
        };
        let int: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut v = int.checked_mul(mult).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            let mut scale: i128 = 1;
            let mut frac: i128 = 0;
            for d in frac_part.bytes().take(30) {
                frac = frac * 10 + i128::from(d - b'0');
                scale *= 10;
            }
            v += frac * mult / scale;
        }
        total = total.checked_add(v).ok_or_else(invalid)?;
        if total > i128::from(i64::MAX) {
            return Err(invalid());
        }
    }
    let total = i64::try_from(total).map_err(|_| invalid())?;
    Ok(if neg { -total } else { total })
}

/// buildkit's `parseOptInterval`: 0 if unset, at least 1ms otherwise.
fn parse_interval(name: &str, value: Option<&str>) -> Result<i64, String> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let d = go_duration(v)?;
    if d != 0 && d < 1_000_000 {
        return Err(format!(
            "Interval {} cannot be less than 1ms",
            go_quote(name)
        ));
    }
    Ok(d)
}

/// buildkit's `parseJSON`: `Some` for a JSON array of strings, `Err` for a JSON array of other
/// values, `None` for anything else (shell form).
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(
                "when using JSON array syntax, arrays must be comprised of strings only"
                    .to_string(),
            ),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Whether a word is a heredoc opener (buildkit's `^(\d*)<<(-?)\s*([^<]*)$` with a name).
fn is_heredoc_word(word: &str) -> bool {
    let w = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(w) = w.strip_prefix("<<") else {
        return false;
    };
    let w = w.strip_prefix('-').unwrap_or(w).trim_start();
    let name = w.trim_matches(|c| c == '"' || c == '\'');
    !name.is_empty() && !w.contains('<')
}

/// What one logical line becomes.
enum Item {
    From {
        base: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Instr(Kind),
}

/// The keyword offset of a `parse-dockerfile` instruction (to pair it with its logical line).
fn keyword_start(i: &pd::Instruction<'_>) -> Option<usize> {
    use pd::Instruction as I;
    let span = match i {
        I::Add(x) => &x.add.span,
        I::Arg(x) => &x.arg.span,
        I::Cmd(x) => &x.cmd.span,
        I::Copy(x) => &x.copy.span,
        I::Entrypoint(x) => &x.entrypoint.span,
        I::Env(x) => &x.env.span,
        I::Expose(x) => &x.expose.span,
        I::From(x) => &x.from.span,
        I::Healthcheck(x) => &x.healthcheck.span,
        I::Label(x) => &x.label.span,
        I::Maintainer(x) => &x.maintainer.span,
        I::Onbuild(x) => &x.onbuild.span,
        I::Run(x) => &x.run.span,
        I::Shell(x) => &x.shell.span,
        I::Stopsignal(x) => &x.stopsignal.span,
        I::User(x) => &x.user.span,
        I::Volume(x) => &x.volume.span,
        I::Workdir(x) => &x.workdir.span,
        _ => return None,
    };
    Some(span.start)
}

fn exec_values<'a>(a: &pd::Spanned<impl AsRef<[pd::UnescapedString<'a>]>>) -> Vec<String> {
    a.value
        .as_ref()
        .iter()
        .map(|u| u.value.to_string())
        .collect()
}

/// The shell or exec form: `parse-dockerfile`'s verdict where it has one, buildkit's
/// `parseMaybeJSON` otherwise; the shell text is the joined line's rest (as dockerd runs it).
fn command(ci: Option<&pd::Command<'_>>, rest: &str) -> Result<Command, String> {
    match ci {
        Some(pd::Command::Exec(a)) => return Ok(Command::Exec(exec_values(a))),
        Some(pd::Command::Shell(_)) => return Ok(Command::Shell(rest.to_string())),
        _ => {}
    }
    Ok(match parse_json(rest)? {
        Some(v) => Command::Exec(v),
        None => Command::Shell(rest.to_string()),
    })
}

const COPY_FLAGS: &[(&str, FlagType)] = &[
    ("chown", FlagType::Str),
    ("from", FlagType::Str),
    ("chmod", FlagType::Str),
    ("link", FlagType::Bool),
    ("exclude", FlagType::Strs),
    ("parents", FlagType::Bool),
];
const ADD_FLAGS: &[(&str, FlagType)] = &[
    ("chown", FlagType::Str),
    ("chmod", FlagType::Str),
    ("link", FlagType::Bool),
    ("keep-git-dir", FlagType::Bool),
    ("checksum", FlagType::Str),
    ("unpack", FlagType::Bool),
    ("exclude", FlagType::Strs),
];
const RUN_FLAGS: &[(&str, FlagType)] = &[
    ("mount", FlagType::Strs),
    ("network", FlagType::Str),
    ("security", FlagType::Str),
    ("device", FlagType::Strs),
];
const HEALTHCHECK_FLAGS: &[(&str, FlagType)] = &[
    ("interval", FlagType::Str),
    ("timeout", FlagType::Str),
    ("start-period", FlagType::Str),
    ("start-interval", FlagType::Str),
    ("retries", FlagType::Str),
];

/// Checks dockerd makes before the instruction's own parsing, in file order: the instruction
/// is known, not a heredoc, and after a `FROM` (unless an `ARG`).
fn precheck(lg: &Logical, escape: char, seen_from: &mut bool) -> Result<(), BuilderError> {
    let sp = split_command(&lg.original, escape);
    let cmd = sp.cmd.to_ascii_lowercase();
    if !INSTRUCTIONS.contains(&cmd.as_str()) {
        return Err(BuilderError::invalid(format!(
            "dockerfile parse error on line {}: unknown instruction: {}",
            lg.line, sp.cmd
        )));
    }
    let (hcmd, hrest) = if cmd == "onbuild" {
        let t = split_command(&sp.rest, escape);
        (t.cmd.to_ascii_lowercase(), t.rest)
    } else {
        (cmd.clone(), sp.rest.clone())
    };
    if matches!(hcmd.as_str(), "run" | "copy" | "add")
        && hrest.contains("<<")
        && !matches!(parse_json(&hrest), Ok(Some(_)))
        && hrest.split_whitespace().any(is_heredoc_word)
    {
        return Err(requires_buildkit("heredoc syntax"));
    }
    match cmd.as_str() {
        "from" => *seen_from = true,
        "arg" => {}
        _ if !*seen_from => {
            return Err(BuilderError::invalid("no build stage in current context"));
        }
        _ => {}
    }
    Ok(())
}

/// One logical line to berth's model, with `parse-dockerfile`'s node where paired.
fn convert(
    lg: &Logical,
    ci: Option<&pd::Instruction<'_>>,
    escape: char,
) -> Result<Item, BuilderError> {
    let line = lg.line;
    let perr =
        |m: String| BuilderError::invalid(format!("dockerfile parse error on line {line}: {m}"));
    let sp = split_command(&lg.original, escape);
    let cmd = sp.cmd.to_ascii_lowercase();
    let rest = sp.rest.as_str();
    let no_flags = |sp: &Split| parse_flags(&sp.flags, &[]).map(|_| ()).map_err(perr);
    let exactly_one = |name: &str| -> Result<String, BuilderError> {
        if rest.is_empty() {
            return Err(perr(format!("{name} requires exactly one argument")));
        }
        Ok(rest.to_string())
    };
    let kind = match cmd.as_str() {
        "from" => {
            let used = parse_flags(&sp.flags, &[("platform", FlagType::Str)]).map_err(perr)?;
            let args: Vec<&str> = rest.split_whitespace().collect();
            let name = match args.len() {
                3 if args[1].eq_ignore_ascii_case("as") => {
                    let name = args[2].to_ascii_lowercase();
                    let mut chars = name.chars();
                    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                        && chars.all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !ok {
                        return Err(perr(format!(
                            "invalid name for build stage: {}, name can't start with a number or contain symbols",
                            go_quote(args[2])
                        )));
                    }
                    Some(name)
                }
                1 => None,
                _ => return Err(perr("FROM requires either one or three arguments".into())),
            };
            return Ok(Item::From {
                base: args[0].to_string(),
                name,
                platform: flag(&used, "platform").map(str::to_string),
            });
        }
        "env" | "label" => {
            no_flags(&sp)?;
            let key = cmd.to_ascii_uppercase();
            let pairs = parse_name_val(rest, &key, escape).map_err(perr)?;
            if cmd == "env" {
                Kind::Env(pairs)
            } else {
                Kind::Label(pairs)
            }
        }
        "arg" => Kind::Arg(parse_args(rest, escape).map_err(perr)?),
        "maintainer" => {
            let v = exactly_one("MAINTAINER")?;
            no_flags(&sp)?;
            Kind::Maintainer(v)
        }
        "user" => {
            let v = exactly_one("USER")?;
            no_flags(&sp)?;
            Kind::User(v)
        }
        "workdir" => {
            let v = exactly_one("WORKDIR")?;
            no_flags(&sp)?;
            Kind::Workdir(v)
        }
        "stopsignal" => {
            let v = exactly_one("STOPSIGNAL")?;
            no_flags(&sp)?;
            Kind::StopSignal(v)
        }
        "expose" => {
            let mut ports: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
            if ports.is_empty() {
                return Err(perr("EXPOSE requires at least one argument".into()));
            }
            no_flags(&sp)?;
            ports.sort();
            Kind::Expose(ports)
        }
        "volume" => {
            no_flags(&sp)?;
            let list = match ci {
                Some(pd::Instruction::Volume(v)) => match &v.arguments {
                    pd::JsonOrStringArray::Json(a) => Some(exec_values(a)),
                    pd::JsonOrStringArray::String(_) => None,
                },
                _ => parse_json(rest).map_err(perr)?,
            };
            let list =
                list.unwrap_or_else(|| rest.split_whitespace().map(str::to_string).collect());
            if list.is_empty() {
                return Err(perr("VOLUME requires at least one argument".into()));
            }
            let mut vols = Vec::new();
            for v in list {
                let v = v.trim();
                if v.is_empty() {
                    return Err(perr("VOLUME specified can not be an empty string".into()));
                }
                vols.push(v.to_string());
            }
            Kind::Volume(vols)
        }
        "shell" => {
            no_flags(&sp)?;
            let json = match ci {
                Some(pd::Instruction::Shell(s)) => {
                    Some(s.arguments.iter().map(|u| u.value.to_string()).collect())
                }
                _ => parse_json(rest).map_err(perr)?,
            };
            match json {
                Some(v) if !v.is_empty() => Kind::Shell(v),
                Some(_) => return Err(perr("SHELL requires at least one argument".into())),
                None => {
                    return Err(perr(
                        "SHELL requires the arguments to be in JSON form".into(),
                    ))
                }
            }
        }
        "run" => {
            let used = parse_flags(&sp.flags, RUN_FLAGS).map_err(perr)?;
            let c = match ci {
                Some(pd::Instruction::Run(r)) => Some(&r.arguments),
                _ => None,
            };
            let c = command(c, rest).map_err(perr)?;
            if let Some((name, _)) = used.first() {
                return Err(requires_buildkit(&format!("--{name} option")));
            }
            Kind::Run(c)
        }
        "cmd" | "entrypoint" => {
            no_flags(&sp)?;
            let c = match ci {
                Some(pd::Instruction::Cmd(r)) => Some(&r.arguments),
                Some(pd::Instruction::Entrypoint(r)) => Some(&r.arguments),
                _ => None,
            };
            let c = command(c, rest).map_err(perr)?;
            if cmd == "cmd" {
                Kind::Cmd(c)
            } else {
                Kind::Entrypoint(c)
            }
        }
        "copy" | "add" => {
            let name = cmd.to_ascii_uppercase();
            let mut args = match parse_json(rest).map_err(perr)? {
                Some(v) => v,
                None => rest.split_whitespace().map(str::to_string).collect(),
            };
            if args.len() < 2 {
                return Err(perr(format!(
                    "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
                )));
            }
            let known = if cmd == "copy" { COPY_FLAGS } else { ADD_FLAGS };
            let used = parse_flags(&sp.flags, known).map_err(perr)?;
            // dockerd refuses --chmod; the other BuildKit-only flags change what is copied
            // (or verified) and are refused too rather than silently ignored; --link only
            // affects layer reuse and is accepted as dockerd does.
            for (f, _) in &used {
                if !matches!(f.as_str(), "chown" | "from" | "link") {
                    return Err(requires_buildkit(&format!("--{f} option")));
                }
            }
            let dest = args.pop().unwrap_or_default();
            let spec = CopySpec {
                srcs: args,
                dest,
                from: flag(&used, "from").map(str::to_string),
                chown: flag(&used, "chown").map(str::to_string),
            };
            if cmd == "copy" {
                Kind::Copy(spec)
            } else {
                Kind::Add(spec)
            }
        }
        "healthcheck" => {
            if rest.is_empty() {
                return Err(perr("HEALTHCHECK requires at least one argument".into()));
            }
            let (typ, args) = match rest.find(is_ws) {
                Some(i) => (&rest[..i], rest[i..].trim_start_matches(is_ws)),
                None => (rest, ""),
            };
            let typ = typ.to_ascii_uppercase();
            if typ == "NONE" {
                if !args.is_empty() {
                    return Err(perr("HEALTHCHECK NONE takes no arguments".into()));
                }
                Kind::Healthcheck(Healthcheck::None)
            } else {
                let used = parse_flags(&sp.flags, HEALTHCHECK_FLAGS).map_err(perr)?;
                if typ != "CMD" {
                    return Err(perr(format!(
                        "Unknown type {} in HEALTHCHECK (try CMD)",
                        go_quote(&typ)
                    )));
                }
                let c = match ci {
                    Some(pd::Instruction::Healthcheck(h)) => match &h.arguments {
                        pd::HealthcheckArguments::Cmd { arguments, .. } => Some(arguments),
                        _ => None,
                    },
                    _ => None,
                };
                let test = match command(c, args).map_err(perr)? {
                    Command::Exec(v) if !v.is_empty() => {
                        std::iter::once("CMD".to_string()).chain(v).collect()
                    }
                    Command::Shell(s) if !s.is_empty() => vec!["CMD-SHELL".to_string(), s],
                    _ => return Err(perr("Missing command after HEALTHCHECK CMD".into())),
                };
                let interval = parse_interval("interval", flag(&used, "interval")).map_err(perr)?;
                let timeout = parse_interval("timeout", flag(&used, "timeout")).map_err(perr)?;
                let start_period =
                    parse_interval("start-period", flag(&used, "start-period")).map_err(perr)?;
                let start_interval =
                    parse_interval("start-interval", flag(&used, "start-interval"))
                        .map_err(perr)?;
                let retries = match flag(&used, "retries").filter(|v| !v.is_empty()) {
                    None => 0,
                    Some(v) => {
                        let r: i64 = match v.parse::<i64>() {
                            Ok(r) if i32::try_from(r).is_ok() => r,
                            Ok(_) => {
                                return Err(perr(format!(
                                    "strconv.ParseInt: parsing {}: value out of range",
                                    go_quote(v)
                                )))
                            }
                            Err(_) => {
                                return Err(perr(format!(
                                    "strconv.ParseInt: parsing {}: invalid syntax",
                                    go_quote(v)
                                )))
                            }
                        };
                        if r < 0 {
                            return Err(perr(format!("--retries cannot be negative ({r})")));
                        }
                        r
                    }
                };
                Kind::Healthcheck(Healthcheck::Cmd {
                    test,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                })
            }
        }
        "onbuild" => {
            if rest.is_empty() {
                return Err(perr("ONBUILD requires at least one argument".into()));
            }
            no_flags(&sp)?;
            let trigger = split_command(rest, escape).cmd.to_ascii_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err(perr(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                    ))
                }
                "MAINTAINER" | "FROM" => {
                    return Err(perr(format!(
                        "{trigger} isn't allowed as an ONBUILD trigger"
                    )))
                }
                _ => {}
            }
            // moby: `(?i)^\s*ONBUILD\s*` removed from the original.
            let o = lg.original.trim_start();
            let text = o.get(7..).unwrap_or_default().trim_start();
            Kind::Onbuild(text.to_string())
        }
        _ => return Err(perr(format!("unknown instruction: {}", sp.cmd))),
    };
    Ok(Item::Instr(kind))
}

fn crate_error(e: &pd::Error, line_shift: usize) -> BuilderError {
    BuilderError::invalid(format!(
        "dockerfile parse error on line {}: {e:#}",
        e.line().saturating_sub(line_shift)
    ))
}

/// Parse a Dockerfile's text. Errors carry dockerd's texts: `dockerfile parse error on line N:
/// unknown instruction: FOO` (and the other `instructions.Parse` texts, with that prefix),
/// BuildKit-only flags (`RUN --mount/--network/--security/--device`, `COPY/ADD --chmod`, and —
/// where dockerd silently ignores them — `--exclude`, `--parents`, `ADD --checksum/
/// --keep-git-dir/--unpack`) and heredocs: "the --mount option requires BuildKit…" (unprefixed,
/// as dockerd reports it at dispatch), an instruction before the first `FROM`: "no build stage
/// in current context", only `ARG`s: "No image was generated. Is your Dockerfile empty?", an
/// empty file: "file with no instructions". `COPY --link` is accepted and ignored, as dockerd.
///
/// The lines are joined as buildkit's `parser.Parse` does (that gives `original`); the
/// `parse-dockerfile` AST gives the exec/shell verdicts and exec arrays, and its own errors are
/// reported (prefixed) when the moby-derived checks pass.
pub fn parse(text: &str) -> Result<Dockerfile, BuilderError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let escape = escape_directive(text)?;
    let logical = logical_lines(text, escape);
    let mut seen_from = false;
    for lg in &logical {
        precheck(lg, escape, &mut seen_from)?;
    }
    if logical.is_empty() {
        return Err(BuilderError::invalid("file with no instructions"));
    }
    if !seen_from {
        return Err(BuilderError::invalid(
            "No image was generated. Is your Dockerfile empty?",
        ));
    }
    // dockerd's own texts win: parse-dockerfile's error is reported only when berth's
    // moby-derived checks pass (then converting without its nodes).
    let ast = pd::parse(text);
    let by_offset: HashMap<usize, &pd::Instruction<'_>> = ast
        .as_ref()
        .map(|ast| {
            ast.instructions
                .iter()
                .filter_map(|i| keyword_start(i).map(|o| (o, i)))
                .collect()
        })
        .unwrap_or_default();
    let mut df = Dockerfile {
        escape,
        meta_args: Vec::new(),
        stages: Vec::new(),
    };
    let mut empty_exec_lines = std::collections::HashSet::new();
    for lg in &logical {
        let ci = by_offset.get(&lg.offset).copied();
        match convert(lg, ci, escape)? {
            Item::From {
                base,
                name,
                platform,
            } => df.stages.push(Stage {
                base,
                name,
                platform,
                original: lg.original.trim().to_string(),
                instructions: Vec::new(),
            }),
            Item::Instr(kind) => match df.stages.last_mut() {
                Some(stage) => {
                    if matches!(
                        &kind,
                        Kind::Run(Command::Exec(v)) | Kind::Cmd(Command::Exec(v))
                            | Kind::Entrypoint(Command::Exec(v)) if v.is_empty()
                    ) {
                        empty_exec_lines.insert(lg.line);
                    }
                    stage.instructions.push(Instruction {
                        kind,
                        original: lg.original.trim().to_string(),
                        line: lg.line,
                    })
                }
                None => match kind {
                    Kind::Arg(decls) => df.meta_args.extend(decls),
                    _ => return Err(BuilderError::invalid("no build stage in current context")),
                },
            },
        }
    }
    let mut names = std::collections::HashSet::new();
    for name in df.stages.iter().filter_map(|s| s.name.as_deref()) {
        if !names.insert(name) {
            return Err(BuilderError::invalid(format!(
                "{name} stage name already used"
            )));
        }
    }
    if let Err(e) = ast {
        // parse-dockerfile refuses an empty exec form (`ENTRYPOINT []` clears the entrypoint),
        // which dockerd accepts.
        if !empty_exec_lines.contains(&e.line()) {
            return Err(crate_error(&e, 0));
        }
    }
    Ok(df)
}

/// Parse one instruction line (an `ONBUILD` trigger, with the Dockerfile's escape token).
pub fn parse_instruction(text: &str, escape: char) -> Result<Instruction, BuilderError> {
    let logical = logical_lines(text, escape);
    let Some(lg) = logical.first() else {
        return Err(BuilderError::invalid("file with no instructions"));
    };
    let mut seen_from = true;
    precheck(lg, escape, &mut seen_from)?;
    // parse-dockerfile wants a stage: parse the line after a `FROM`, then shift back.
    let mut prefix = String::new();
    if escape == '`' {
        prefix.push_str("# escape=`\n");
    }
    prefix.push_str("FROM scratch\n");
    let shift = prefix.matches('\n').count();
    let full = format!("{prefix}{text}");
    let ast = pd::parse(&full);
    let ci = ast.as_ref().ok().and_then(|ast| {
        ast.instructions
            .iter()
            .find(|i| keyword_start(i) == Some(prefix.len() + lg.offset))
    });
    let kind = match convert(lg, ci, escape)? {
        Item::From { .. } => {
            return Err(BuilderError::invalid(
                "*instructions.Stage is not a command type",
            ))
        }
        Item::Instr(kind) => kind,
    };
    if let Err(e) = ast {
        let empty_exec = matches!(
            &kind,
            Kind::Run(Command::Exec(v)) | Kind::Cmd(Command::Exec(v))
                | Kind::Entrypoint(Command::Exec(v)) if v.is_empty()
        );
        if !empty_exec {
            return Err(crate_error(&e, shift));
        }
    }
    Ok(Instruction {
        kind,
        original: lg.original.trim().to_string(),
        line: lg.line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instrs(text: &str) -> Vec<Instruction> {
        let df = parse(text).unwrap();
        df.stages.into_iter().flat_map(|s| s.instructions).collect()
    }

    fn kinds(text: &str) -> Vec<Kind> {
        instrs(text).into_iter().map(|i| i.kind).collect()
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().message().to_string()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BK: &str = "requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled";

    #[test]
    fn env_label_pairs() {
        let k = kinds(
            "FROM scratch\nENV A=1 B=\"two words\" C='x y' D=a\\ b\nENV LEGACY value with  spaces\nLABEL \"com.x\"=\"v\" k=v\n",
        );
        assert_eq!(
            k[0],
            Kind::Env(kv(&[
                ("A", "1"),
                ("B", "\"two words\""),
                ("C", "'x y'"),
                ("D", "a\\ b")
            ]))
        );
        assert_eq!(k[1], Kind::Env(kv(&[("LEGACY", "value with  spaces")])));
        assert_eq!(k[2], Kind::Label(kv(&[("\"com.x\"", "\"v\""), ("k", "v")])));
        assert!(err("FROM scratch\nENV A=1 B\n").contains("Syntax error - can't find = in \"B\""));
        assert_eq!(
            err("FROM scratch\nENV ONLY\n"),
            "dockerfile parse error on line 2: ENV must have two arguments"
        );
        assert_eq!(
            err("FROM scratch\nLABEL =x\n"),
            "dockerfile parse error on line 2: LABEL names can not be blank"
        );
    }

    #[test]
    fn args_and_meta_args() {
        let df = parse("ARG V=1\nARG X\nFROM busybox:${V} AS Build\nARG Y=\"a b\" Z\n").unwrap();
        assert_eq!(
            df.meta_args,
            vec![
                ArgDecl {
                    name: "V".into(),
                    default: Some("1".into())
                },
                ArgDecl {
                    name: "X".into(),
                    default: None
                }
            ]
        );
        assert_eq!(df.stages[0].base, "busybox:${V}");
        assert_eq!(df.stages[0].name.as_deref(), Some("build"));
        assert_eq!(df.stages[0].original, "FROM busybox:${V} AS Build");
        assert_eq!(
            df.stages[0].instructions[0].kind,
            Kind::Arg(vec![
                ArgDecl {
                    name: "Y".into(),
                    default: Some("\"a b\"".into())
                },
                ArgDecl {
                    name: "Z".into(),
                    default: None
                }
            ])
        );
    }

    #[test]
    fn original_joins_continuations_and_drops_comments() {
        let text = "FROM busybox\nRUN echo a \\\n    b \\\n# a comment\n\n    c\n  RUN echo \\\\\nLABEL x=y\n";
        let i = instrs(text);
        assert_eq!(i[0].original, "RUN echo a     b     c");
        assert_eq!(i[0].line, 2);
        assert_eq!(
            i[0].kind,
            Kind::Run(Command::Shell("echo a     b     c".into()))
        );
        // an escaped escape at the end is not a continuation
        assert_eq!(i[1].original, "RUN echo \\\\");
        assert_eq!(i[1].line, 7);
        assert_eq!(i[2].line, 8);
        let df = parse("FROM \\\n  busybox \\\n  AS b\n").unwrap();
        assert_eq!(df.stages[0].original, "FROM   busybox   AS b");
        assert_eq!(df.stages[0].base, "busybox");
    }

    #[test]
    fn escape_directive_backtick() {
        let df = parse("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  && echo\n").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(
            df.stages[0].instructions[0].original,
            "RUN dir c:\\   && echo"
        );
    }

    #[test]
    fn json_and_shell_forms() {
        let k = kinds(
            "FROM scratch\nRUN [\"echo\", \"a b\"]\nRUN echo [x]\nCMD [\"sh\"]\nCMD sleep 1\nENTRYPOINT [\"/bin/e\",\"-x\"]\nSHELL [\"/bin/bash\", \"-c\"]\nVOLUME [\"/a\", \"/b\"]\nVOLUME /c /d\nRUN [not json\n",
        );
        assert_eq!(
            k[0],
            Kind::Run(Command::Exec(vec!["echo".into(), "a b".into()]))
        );
        assert_eq!(k[1], Kind::Run(Command::Shell("echo [x]".into())));
        assert_eq!(k[2], Kind::Cmd(Command::Exec(vec!["sh".into()])));
        assert_eq!(k[3], Kind::Cmd(Command::Shell("sleep 1".into())));
        assert_eq!(
            k[4],
            Kind::Entrypoint(Command::Exec(vec!["/bin/e".into(), "-x".into()]))
        );
        assert_eq!(k[5], Kind::Shell(vec!["/bin/bash".into(), "-c".into()]));
        assert_eq!(k[6], Kind::Volume(vec!["/a".into(), "/b".into()]));
        assert_eq!(k[7], Kind::Volume(vec!["/c".into(), "/d".into()]));
        assert_eq!(k[8], Kind::Run(Command::Shell("[not json".into())));
        assert_eq!(
            err("FROM scratch\nSHELL /bin/sh -c\n"),
            "dockerfile parse error on line 2: SHELL requires the arguments to be in JSON form"
        );
    }

    #[test]
    fn copy_add() {
        let k = kinds(
            "FROM scratch\nCOPY --from=build --chown=1:2 a b /dst/\nADD [\"x y\", \"/d\"]\nCOPY --link a /b\n",
        );
        assert_eq!(
            k[0],
            Kind::Copy(CopySpec {
                srcs: vec!["a".into(), "b".into()],
                dest: "/dst/".into(),
                from: Some("build".into()),
                chown: Some("1:2".into()),
            })
        );
        assert_eq!(
            k[1],
            Kind::Add(CopySpec {
                srcs: vec!["x y".into()],
                dest: "/d".into(),
                ..Default::default()
            })
        );
        assert!(matches!(&k[2], Kind::Copy(c) if c.dest == "/b"));
        assert_eq!(
            err("FROM scratch\nCOPY onlyone\n"),
            "dockerfile parse error on line 2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"
        );
        assert_eq!(
            err("FROM scratch\nCOPY --bogus a b\n"),
            "dockerfile parse error on line 2: unknown flag: --bogus"
        );
        assert_eq!(
            err("FROM scratch\nCOPY --from a b\n"),
            "dockerfile parse error on line 2: missing a value on flag: --from"
        );
        for (line, flag) in [
            ("COPY --chmod=755 a b", "--chmod"),
            ("COPY --exclude=*.md a b", "--exclude"),
            ("COPY --parents a b", "--parents"),
            ("ADD --checksum=sha256:00 http://x/y /z", "--checksum"),
            ("ADD --keep-git-dir=true git@x:y /z", "--keep-git-dir"),
        ] {
            assert_eq!(
                err(&format!("FROM scratch\n{line}\n")),
                format!("the {flag} option {BK}")
            );
        }
    }

    #[test]
    fn run_flags_require_buildkit() {
        for f in [
            "mount=type=cache,target=/x",
            "network=none",
            "security=insecure",
        ] {
            let name = f.split('=').next().unwrap();
            assert_eq!(
                err(&format!("FROM scratch\nRUN --{f} echo\n")),
                format!("the --{name} option {BK}")
            );
        }
        assert_eq!(
            err("FROM scratch\nRUN --mount=type=cache,target=/x echo\n"),
            "the --mount option requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled"
        );
    }

    #[test]
    fn heredoc_requires_buildkit() {
        assert_eq!(
            err("FROM scratch\nRUN <<EOF\necho hi\nEOF\n"),
            format!("the heredoc syntax {BK}")
        );
        assert_eq!(
            err("FROM scratch\nCOPY <<-\"EOT\" /x\nhello\nEOT\n"),
            format!("the heredoc syntax {BK}")
        );
        // a redirection inside the shell text is not a heredoc opener
        assert_eq!(
            kinds("FROM scratch\nRUN cat <<<x\n")[0],
            Kind::Run(Command::Shell("cat <<<x".into()))
        );
    }

    #[test]
    fn from_forms() {
        let df = parse(
            "FROM --platform=linux/amd64 busybox AS One\nFROM one\nFROM scratch as x.y-z_1\n",
        )
        .unwrap();
        assert_eq!(df.stages.len(), 3);
        assert_eq!(df.stages[0].platform.as_deref(), Some("linux/amd64"));
        assert_eq!(df.stages[0].name.as_deref(), Some("one"));
        assert_eq!(
            df.stages[0].original,
            "FROM --platform=linux/amd64 busybox AS One"
        );
        assert_eq!(df.stages[1].name, None);
        assert_eq!(df.stages[2].name.as_deref(), Some("x.y-z_1"));
        assert_eq!(
            err("FROM busybox AS 1x\n"),
            "dockerfile parse error on line 1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
        );
        assert_eq!(
            err("FROM busybox AS\n"),
            "dockerfile parse error on line 1: FROM requires either one or three arguments"
        );
    }

    #[test]
    fn healthcheck() {
        let k = kinds(
            "FROM scratch\nHEALTHCHECK NONE\nHEALTHCHECK --interval=5s --timeout=1m30s --start-period=1.5s --start-interval=300ms --retries=3 CMD curl -f http://x/ || exit 1\nHEALTHCHECK CMD [\"/bin/check\", \"-v\"]\n",
        );
        assert_eq!(k[0], Kind::Healthcheck(Healthcheck::None));
        assert_eq!(
            k[1],
            Kind::Healthcheck(Healthcheck::Cmd {
                test: vec!["CMD-SHELL".into(), "curl -f http://x/ || exit 1".into()],
                interval: 5_000_000_000,
                timeout: 90_000_000_000,
                start_period: 1_500_000_000,
                start_interval: 300_000_000,
                retries: 3,
            })
        );
        assert_eq!(
            k[2],
            Kind::Healthcheck(Healthcheck::Cmd {
                test: vec!["CMD".into(), "/bin/check".into(), "-v".into()],
                interval: 0,
                timeout: 0,
                start_period: 0,
                start_interval: 0,
                retries: 0,
            })
        );
        let e = |l: &str| err(&format!("FROM scratch\n{l}\n"));
        let p = "dockerfile parse error on line 2: ";
        assert_eq!(
            e("HEALTHCHECK NONE x"),
            format!("{p}HEALTHCHECK NONE takes no arguments")
        );
        assert_eq!(
            e("HEALTHCHECK CMD"),
            format!("{p}Missing command after HEALTHCHECK CMD")
        );
        assert_eq!(
            e("HEALTHCHECK RUN x"),
            format!("{p}Unknown type \"RUN\" in HEALTHCHECK (try CMD)")
        );
        assert_eq!(
            e("HEALTHCHECK --interval=xyz CMD true"),
            format!("{p}time: invalid duration \"xyz\"")
        );
        assert_eq!(
            e("HEALTHCHECK --interval=5 CMD true"),
            format!("{p}time: missing unit in duration \"5\"")
        );
        assert_eq!(
            e("HEALTHCHECK --timeout=10us CMD true"),
            format!("{p}Interval \"timeout\" cannot be less than 1ms")
        );
        assert_eq!(
            e("HEALTHCHECK --retries=-1 CMD true"),
            format!("{p}--retries cannot be negative (-1)")
        );
        assert_eq!(
            e("HEALTHCHECK --retries=x CMD true"),
            format!("{p}strconv.ParseInt: parsing \"x\": invalid syntax")
        );
        assert_eq!(
            e("HEALTHCHECK --foo=1 CMD true"),
            format!("{p}unknown flag: --foo")
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("0"), Ok(0));
        assert_eq!(go_duration("1h2m3s"), Ok(3_723_000_000_000));
        assert_eq!(go_duration("2.5ms"), Ok(2_500_000));
        assert_eq!(go_duration("1µs"), Ok(1_000));
        assert_eq!(go_duration("-1s"), Ok(-1_000_000_000));
        assert_eq!(go_duration(".5s"), Ok(500_000_000));
        assert_eq!(
            go_duration("1x"),
            Err("time: unknown unit \"x\" in duration \"1x\"".into())
        );
        assert!(go_duration("").is_err());
        assert!(go_duration("s").is_err());
    }

    #[test]
    fn onbuild() {
        let k = kinds("FROM scratch\nONBUILD RUN echo hi\nonbuild  ADD . /app\n");
        assert_eq!(k[0], Kind::Onbuild("RUN echo hi".into()));
        assert_eq!(k[1], Kind::Onbuild("ADD . /app".into()));
        let p = "dockerfile parse error on line 2: ";
        assert_eq!(
            err("FROM scratch\nONBUILD ONBUILD RUN x\n"),
            format!("{p}Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        );
        assert_eq!(
            err("FROM scratch\nONBUILD FROM x\n"),
            format!("{p}FROM isn't allowed as an ONBUILD trigger")
        );
        assert_eq!(
            err("FROM scratch\nONBUILD maintainer me\n"),
            format!("{p}MAINTAINER isn't allowed as an ONBUILD trigger")
        );
    }

    #[test]
    fn parse_one_instruction() {
        let i = parse_instruction("RUN echo hi", '\\').unwrap();
        assert_eq!(i.kind, Kind::Run(Command::Shell("echo hi".into())));
        assert_eq!(i.original, "RUN echo hi");
        assert_eq!(i.line, 1);
        let i = parse_instruction("ENV A=1 B=2", '`').unwrap();
        assert_eq!(i.kind, Kind::Env(kv(&[("A", "1"), ("B", "2")])));
        let i = parse_instruction("COPY [\"a\", \"/b\"]", '\\').unwrap();
        assert!(matches!(i.kind, Kind::Copy(c) if c.srcs == ["a"] && c.dest == "/b"));
        assert_eq!(
            parse_instruction("FOO bar", '\\').unwrap_err().message(),
            "dockerfile parse error on line 1: unknown instruction: FOO"
        );
    }

    #[test]
    fn structure_errors() {
        assert_eq!(
            err("FROM scratch\nFOO bar\n"),
            "dockerfile parse error on line 2: unknown instruction: FOO"
        );
        assert_eq!(
            err("RUN echo\nFROM scratch\n"),
            "no build stage in current context"
        );
        assert_eq!(err("# only a comment\n\n"), "file with no instructions");
        assert_eq!(
            err("ARG X=1\n"),
            "No image was generated. Is your Dockerfile empty?"
        );
        assert_eq!(
            err("FROM scratch\nWORKDIR\n"),
            "dockerfile parse error on line 2: WORKDIR requires exactly one argument"
        );
    }

    #[test]
    fn misc_instructions() {
        let k = kinds(
            "\u{feff}FROM scratch\nEXPOSE 8080/tcp 80 ${P}\nUSER app:app\nWORKDIR /srv/app\nSTOPSIGNAL SIGKILL\nMAINTAINER me <me@x>\n",
        );
        assert_eq!(
            k[0],
            Kind::Expose(vec!["${P}".into(), "80".into(), "8080/tcp".into()])
        );
        assert_eq!(k[1], Kind::User("app:app".into()));
        assert_eq!(k[2], Kind::Workdir("/srv/app".into()));
        assert_eq!(k[3], Kind::StopSignal("SIGKILL".into()));
        assert_eq!(k[4], Kind::Maintainer("me <me@x>".into()));
    }

    /// buildkit's parser testfiles/brimstone-consuldock (continuations, JSON, ENV forms).
    #[test]
    fn buildkit_testfile_consuldock() {
        let text = r#"#escape=\
FROM brimstone/ubuntu:14.04

MAINTAINER brimstone@the.narro.ws

# TORUN -v /var/run/docker.sock:/var/run/docker.sock

ENV GOPATH /go

# Set our command
ENTRYPOINT ["/usr/local/bin/consuldock"]

# Install the packages we need, clean up after them and us
RUN apt-get update \
	&& dpkg -l | awk '/^ii/ {print $2}' > /tmp/dpkg.clean \
    && apt-get install -y --no-install-recommends git golang ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists \

	&& go get -v github.com/brimstone/consuldock \
    && mv $GOPATH/bin/consuldock /usr/local/bin/consuldock \

	&& dpkg -l | awk '/^ii/ {print $2}' > /tmp/dpkg.dirty \
	&& apt-get remove --purge -y $(diff /tmp/dpkg.clean /tmp/dpkg.dirty | awk '/^>/ {print $2}') \
	&& rm /tmp/dpkg.* \
	&& rm -rf $GOPATH
"#;
        let df = parse(text).unwrap();
        let i = &df.stages[0].instructions;
        assert_eq!(i.len(), 4);
        assert_eq!(i[1].kind, Kind::Env(kv(&[("GOPATH", "/go")])));
        assert_eq!(
            i[2].kind,
            Kind::Entrypoint(Command::Exec(vec!["/usr/local/bin/consuldock".into()]))
        );
        assert!(i[3].original.starts_with("RUN apt-get update \t&& dpkg -l"));
        assert!(i[3].original.contains("/var/lib/apt/lists \t&& go get"));
        assert!(i[3].original.ends_with("&& rm -rf $GOPATH"));
        assert_eq!(i[3].line, 14);
    }

    /// buildkit's parser testfiles/env and its result (the values as the AST holds them).
    #[test]
    fn buildkit_testfile_env() {
        let text = r#"FROM ubuntu
ENV name value
ENV name=value
ENV name=value name2=value2
ENV name="value value1"
ENV name=value\ value2
ENV name="value'quote space'value2"
ENV name='value"double quote"value2'
ENV name=value\ value2 name2=value2\ value3
ENV name="a\"b"
ENV name="a\'b"
ENV name='a\'b'
ENV name='a\'b''
ENV name='a\"b'
ENV name="''"
# don't put anything after the next line - it must be the last line of the
# Dockerfile and it must end with \
ENV name=value \
    name1=value1 \
    name2="value2a \
           value2b" \
    name3="value3a\n\"value3b\"" \
	name4="value4a\\nvalue4b" \
"#;
        let expected: Vec<Vec<(&str, &str)>> = vec![
            vec![(r#"name"#, r#"value"#)],
            vec![(r#"name"#, r#"value"#)],
            vec![(r#"name"#, r#"value"#), (r#"name2"#, r#"value2"#)],
            vec![(r#"name"#, r#""value value1""#)],
            vec![(r#"name"#, r#"value\ value2"#)],
            vec![(r#"name"#, r#""value'quote space'value2""#)],
            vec![(r#"name"#, r#"'value"double quote"value2'"#)],
            vec![
                (r#"name"#, r#"value\ value2"#),
                (r#"name2"#, r#"value2\ value3"#),
            ],
            vec![(r#"name"#, r#""a\"b""#)],
            vec![(r#"name"#, r#""a\'b""#)],
            vec![(r#"name"#, r#"'a\'b'"#)],
            vec![(r#"name"#, r#"'a\'b''"#)],
            vec![(r#"name"#, r#"'a\"b'"#)],
            vec![(r#"name"#, r#""''""#)],
            vec![
                (r#"name"#, r#"value"#),
                (r#"name1"#, r#"value1"#),
                (r#"name2"#, r#""value2a            value2b""#),
                (r#"name3"#, r#""value3a\n\"value3b\"""#),
                (r#"name4"#, r#""value4a\\nvalue4b""#),
            ],
        ];
        let got: Vec<Kind> = kinds(text);
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert_eq!(g, &Kind::Env(kv(&e)));
        }
    }

    #[test]
    fn empty_exec_and_duplicate_stage() {
        let k = kinds("FROM scratch\nENTRYPOINT []\nCMD []\n");
        assert_eq!(k[0], Kind::Entrypoint(Command::Exec(vec![])));
        assert_eq!(k[1], Kind::Cmd(Command::Exec(vec![])));
        assert_eq!(
            err("FROM scratch AS a\nFROM busybox AS A\n"),
            "a stage name already used"
        );
        assert_eq!(
            parse_instruction("ENTRYPOINT []", '\\').unwrap().kind,
            Kind::Entrypoint(Command::Exec(vec![]))
        );
    }
}
