//! Layering rules, checked by scanning `src/` (no daemon, no root): run them with
//! `cargo test --test layering`.
//!
//! - no import cycle between files of different top-level modules (a file-level graph built
//!   from `use crate::…`, `use super::…` and inline `crate::…` paths, each resolved to the file
//!   that defines the module);
//! - only `src/runtime/` knows the supervisor's files (`exit.json`, `state.json`) and the OCI
//!   spec types (`oci_spec::`);
//! - only the API layer (`src/api/`, `src/server/`, `main.rs`, `lib.rs`, `daemon.rs`) speaks HTTP
//!   (`hyper::`, `http::`, `hyper_util::`);
//! - only `src/runtime/` uses libcontainer and libcgroups.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;

/// One source file.
struct SrcFile {
    /// Path under `src/`, e.g. `image/store.rs`.
    rel: String,
    /// Its module path, e.g. `["image", "store"]` (empty for the crate roots).
    module: Vec<String>,
    /// The text with comments blanked (string literals kept).
    no_comments: String,
    /// The text with comments and string and character literals blanked.
    code: String,
}

impl SrcFile {
    fn top(&self) -> &str {
        self.module.first().map(String::as_str).unwrap_or("")
    }
}

fn src_files() -> Vec<SrcFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let rel = path
                    .strip_prefix(&root)
                    .expect("under src")
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                let (no_comments, code) = blank(&text);
                out.push(SrcFile {
                    module: module_of(&rel),
                    rel,
                    no_comments,
                    code,
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

/// `image/store.rs` is `image::store`, `runtime/supervisor/mod.rs` is `runtime::supervisor`.
fn module_of(rel: &str) -> Vec<String> {
    if rel == "lib.rs" || rel == "main.rs" {
        return Vec::new();
    }
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Blank comments (first result), and comments plus string and character literals (second),
/// keeping line breaks and lengths.
fn blank(text: &str) -> (String, String) {
    let s: Vec<char> = text.chars().collect();
    let mut no_comments = String::with_capacity(text.len());
    let mut code = String::with_capacity(text.len());
    let space = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let next = s.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < s.len() && s[i] != '\n' {
                no_comments.push(' ');
                code.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < s.len() {
                if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                    depth += 1;
                    no_comments.push_str("  ");
                    code.push_str("  ");
                    i += 2;
                } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    no_comments.push_str("  ");
                    code.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    no_comments.push(space(s[i]));
                    code.push(space(s[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (i == 0
                || !is_ident(s[i - 1])
                || (s[i - 1] == 'b' && (i < 2 || !is_ident(s[i - 2]))))
            && matches!(next, Some('#') | Some('"'))
        {
            // A raw string, if `r#*"` follows.
            let mut j = i + 1;
            while j < s.len() && s[j] == '#' {
                j += 1;
            }
            if j < s.len() && s[j] == '"' {
                let hashes = j - i - 1;
                let closing: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let body_start = j + 1;
                let rest: String = s[body_start..].iter().collect();
                let len = rest
                    .find(&closing)
                    .map(|k| rest[..k].chars().count())
                    .unwrap_or(s.len() - body_start);
                for &ch in &s[i..body_start] {
                    no_comments.push(ch);
                    code.push(ch);
                }
                for &ch in &s[body_start..body_start + len] {
                    no_comments.push(ch);
                    code.push(space(ch));
                }
                i = body_start + len;
            } else {
                no_comments.push(c);
                code.push(c);
                i += 1;
            }
        } else if c == '"' {
            no_comments.push('"');
            code.push('"');
            i += 1;
            while i < s.len() && s[i] != '"' {
                let n = if s[i] == '\\' { 2 } else { 1 };
                for &ch in &s[i..(i + n).min(s.len())] {
                    no_comments.push(ch);
                    code.push(space(ch));
                }
                i += n;
            }
            if i < s.len() {
                no_comments.push('"');
                code.push('"');
                i += 1;
            }
        } else if c == '\'' {
            // A character literal (`'x'`, `'\n'`, `'\u{1F}'`) or a lifetime (`'a`).
            let end = if next == Some('\\') {
                (i + 2..s.len()).find(|&k| s[k] == '\'')
            } else if s.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &ch in &s[i..=end] {
                        no_comments.push(ch);
                        code.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    no_comments.push(c);
                    code.push(c);
                    i += 1;
                }
            }
        } else {
            no_comments.push(c);
            code.push(c);
            i += 1;
        }
    }
    (no_comments, code)
}

/// Whether `word` occurs in `text` as a path root: `word` then `::`, not preceded by an
/// identifier character (or by `::`, which would make it a segment of another path).
fn mentions_path(text: &str, word: &str) -> bool {
    let pat = format!("{word}::");
    text.match_indices(&pat).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        !before.is_some_and(|c| is_ident(c) || c == ':' || c == '$')
    })
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Sep,
    Open,
    Close,
    Comma,
    Star,
}

fn tokenize(s: &str) -> Vec<Tok> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if is_ident(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
            continue;
        }
        match c {
            ':' if chars.get(i + 1) == Some(&':') => {
                out.push(Tok::Sep);
                i += 1;
            }
            '{' => out.push(Tok::Open),
            '}' => out.push(Tok::Close),
            ',' => out.push(Tok::Comma),
            '*' => out.push(Tok::Star),
            _ => {}
        }
        i += 1;
    }
    out
}

/// Expand a use tree (`crate::a::{b, c::{self, d as e}}`) into its leaf paths.
fn expand(toks: &[Tok], pos: &mut usize, prefix: Vec<String>) -> Vec<Vec<String>> {
    let mut path = prefix;
    while let Some(t) = toks.get(*pos) {
        match t {
            Tok::Ident(s) if s == "as" => {
                *pos += 2;
                break;
            }
            Tok::Ident(s) => {
                path.push(s.clone());
                *pos += 1;
            }
            Tok::Sep => *pos += 1,
            Tok::Open => {
                *pos += 1;
                let mut out = Vec::new();
                while let Some(t) = toks.get(*pos) {
                    match t {
                        Tok::Close => {
                            *pos += 1;
                            break;
                        }
                        Tok::Comma => *pos += 1,
                        _ => out.extend(expand(toks, pos, path.clone())),
                    }
                }
                return out;
            }
            Tok::Star => {
                *pos += 1;
                break;
            }
            Tok::Comma | Tok::Close => break,
        }
    }
    vec![path]
}

/// The use declarations of a file (as leaf paths) and its text with them blanked.
fn use_paths(code: &str) -> (Vec<Vec<String>>, String) {
    let mut paths = Vec::new();
    let mut rest = code.to_string();
    let mut from = 0;
    while let Some(k) = code[from..].find("use") {
        let i = from + k;
        from = i + 3;
        let before = code[..i].chars().next_back();
        let after = code[i + 3..].chars().next();
        if before.is_some_and(is_ident) || !after.is_some_and(char::is_whitespace) {
            continue;
        }
        // A declaration follows `;`, a brace, an attribute, `pub` or `pub(...)`.
        let prev = code[..i].trim_end();
        let declaration = prev.is_empty()
            || prev.ends_with([';', '{', '}', ']', ')'])
            || prev.ends_with("pub") && !prev[..prev.len() - 3].ends_with(is_ident);
        if !declaration {
            continue;
        }
        let Some(end) = code[i..].find(';') else {
            continue;
        };
        let tree = &code[i + 3..i + end];
        let toks = tokenize(tree);
        let mut pos = 0;
        paths.extend(expand(&toks, &mut pos, Vec::new()));
        rest.replace_range(i..i + end, &" ".repeat(end));
    }
    (paths, rest)
}

/// Inline paths rooted at `crate`, `super` or `self`: `crate::image::store::remove_all(..)`.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for root in ["crate", "super", "self"] {
        let pat = format!("{root}::");
        for (i, _) in code.match_indices(&pat) {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| is_ident(c) || c == ':' || c == '$') {
                continue;
            }
            let mut path = vec![root.to_string()];
            let mut j = i + pat.len();
            loop {
                let seg: String = code[j..].chars().take_while(|&c| is_ident(c)).collect();
                if seg.is_empty() {
                    break;
                }
                j += seg.len();
                path.push(seg);
                if code[j..].starts_with("::") {
                    j += 2;
                } else {
                    break;
                }
            }
            out.push(path);
        }
    }
    out
}

/// Resolve a path used in the file of module `current` to the file defining the module it
/// names (the longest module prefix), if it names one of this crate's modules.
fn resolve(
    path: &[String],
    current: &[String],
    modules: &HashMap<Vec<String>, usize>,
) -> Option<usize> {
    let first = path.first()?;
    // `self` and `super` are relative to the file's module (`a/mod.rs` and `a.rs` are both `a`).
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => current.to_vec(),
        child => {
            let mut m = current.to_vec();
            m.push(child.to_string());
            if !modules.contains_key(&m) {
                return None; // an external crate
            }
            current.to_vec()
        }
    };
    let mut segs = path;
    if first == "crate" || first == "self" {
        segs = &path[1..];
    }
    while segs.first().is_some_and(|s| s == "super") {
        base.pop()?;
        segs = &segs[1..];
    }
    let mut full = base;
    full.extend(segs.iter().filter(|s| *s != "self").cloned());
    (1..=full.len())
        .rev()
        .find_map(|n| modules.get(&full[..n]).copied())
}

/// The file graph: `edges[i]` are the files file `i` imports from.
fn graph(files: &[SrcFile]) -> Vec<BTreeSet<usize>> {
    let modules: HashMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.rel != "main.rs" && !f.module.is_empty())
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if f.rel == "main.rs" {
                // The binary crate: its `crate::` is not the library's.
                return BTreeSet::new();
            }
            let (mut paths, rest) = use_paths(&f.code);
            paths.extend(inline_paths(&rest));
            paths
                .iter()
                .filter_map(|p| resolve(p, &f.module, &modules))
                .filter(|&j| j != i)
                .collect()
        })
        .collect()
}

/// Strongly connected components (Tarjan), each a list of file indexes.
fn components(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(st: &mut State, v: usize) {
        st.index[v] = Some(st.next);
        st.low[v] = st.next;
        st.next += 1;
        st.stack.push(v);
        st.on_stack[v] = true;
        for &w in st.edges[v].iter() {
            match st.index[w] {
                None => {
                    visit(st, w);
                    st.low[v] = st.low[v].min(st.low[w]);
                }
                Some(iw) if st.on_stack[w] => st.low[v] = st.low[v].min(iw),
                _ => {}
            }
        }
        if Some(st.low[v]) == st.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = st.stack.pop() {
                st.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            st.out.push(comp);
        }
    }
    let n = edges.len();
    let mut st = State {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if st.index[v].is_none() {
            visit(&mut st, v);
        }
    }
    st.out
}

/// A shortest path from `from` to `to` inside `comp`.
fn path_within(
    edges: &[BTreeSet<usize>],
    comp: &BTreeSet<usize>,
    from: usize,
    to: usize,
) -> Vec<usize> {
    let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    let mut seen = BTreeSet::from([from]);
    while let Some(v) = queue.pop_front() {
        if v == to {
            break;
        }
        for &w in &edges[v] {
            if comp.contains(&w) && seen.insert(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    let mut path = vec![to];
    let mut v = to;
    while v != from {
        match prev.get(&v) {
            Some(&p) => {
                path.push(p);
                v = p;
            }
            None => break,
        }
    }
    path.reverse();
    path
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let files = src_files();
    let edges = graph(&files);
    let mut cycles = Vec::new();
    for comp in components(&edges) {
        let tops: BTreeSet<&str> = comp.iter().map(|&i| files[i].top()).collect();
        if comp.len() < 2 || tops.len() < 2 {
            continue;
        }
        let set: BTreeSet<usize> = comp.iter().copied().collect();
        // Show one cycle through an edge that crosses modules.
        let (u, v) = comp
            .iter()
            .flat_map(|&u| edges[u].iter().map(move |&v| (u, v)))
            .find(|&(u, v)| set.contains(&v) && files[u].top() != files[v].top())
            .expect("a crossing edge in a multi-module component");
        let mut cycle = vec![u];
        cycle.extend(path_within(&edges, &set, v, u));
        let names: Vec<&str> = cycle.iter().map(|&i| files[i].rel.as_str()).collect();
        let members: Vec<&str> = comp.iter().map(|&i| files[i].rel.as_str()).collect();
        cycles.push(format!(
            "  src/{}\n    (all files in this cycle: {})",
            names.join(" -> src/"),
            members.join(", ")
        ));
    }
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules (break each by moving the shared piece down or \
         inverting one dependency):\n{}",
        cycles.join("\n")
    );
}

/// The files outside `allowed` whose text (`pick`) mentions any of `words` (`check`).
fn offenders(
    allowed: &[&str],
    words: &[&str],
    pick: impl Fn(&SrcFile) -> &str,
    check: impl Fn(&str, &str) -> bool,
) -> Vec<String> {
    src_files()
        .iter()
        .filter(|f| {
            !allowed
                .iter()
                .any(|a| f.rel == *a || (a.ends_with('/') && f.rel.starts_with(a)))
        })
        .filter_map(|f| {
            let hits: Vec<&str> = words
                .iter()
                .copied()
                .filter(|w| check(pick(f), w))
                .collect();
            (!hits.is_empty()).then(|| format!("  src/{} ({})", f.rel, hits.join(", ")))
        })
        .collect()
}

#[test]
fn only_the_runtime_knows_supervisor_files_and_oci_spec() {
    let bad = offenders(
        &["runtime/"],
        &["exit.json", "state.json", "oci_spec::"],
        |f| f.no_comments.as_str(),
        |text, w| {
            if w.ends_with("::") {
                mentions_path(text, w.trim_end_matches("::"))
            } else {
                text.contains(w)
            }
        },
    );
    assert!(
        bad.is_empty(),
        "only src/runtime/ may know the supervisor's files and the OCI spec; these files do:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_the_api_layer_speaks_http() {
    let bad = offenders(
        &["api/", "server/", "main.rs", "lib.rs", "daemon.rs"],
        &["hyper", "http", "hyper_util"],
        |f| f.code.as_str(),
        mentions_path,
    );
    assert!(
        bad.is_empty(),
        "only src/api/, src/server/, main.rs, lib.rs and daemon.rs may use hyper or http; these \
         files do:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_the_runtime_uses_libcontainer() {
    let bad = offenders(
        &["runtime/"],
        &["libcontainer", "libcgroups"],
        |f| f.code.as_str(),
        mentions_path,
    );
    assert!(
        bad.is_empty(),
        "only src/runtime/ may use libcontainer or libcgroups; these files do:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_scanner_reads_use_trees_and_skips_comments_and_strings() {
    let (_, code) = blank(
        "use crate::a::{b, c::{self, d as e}};\n// crate::x::y\nlet s = \"crate::z\"; let c = '\"';\nf(crate::q::r());",
    );
    let (paths, rest) = use_paths(&code);
    let want: Vec<Vec<String>> = [
        vec!["crate", "a", "b"],
        vec!["crate", "a", "c", "self"],
        vec!["crate", "a", "c", "d"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(paths, want);
    let inline = inline_paths(&rest);
    assert_eq!(
        inline,
        vec![vec!["crate".to_string(), "q".into(), "r".into()]]
    );
}
