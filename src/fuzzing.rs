//! Entry points for the coverage-guided fuzz targets under `fuzz/` (cargo-fuzz, libFuzzer) and
//! for `tests/fuzz_corpus.rs`, which replays every committed corpus file and regression input
//! through the same functions without a fuzzer.
//!
//! Each `pub fn <target>(data: &[u8])` feeds the bytes to the real parser or extractor and
//! asserts its invariants: a panic (an assertion or a bug in the code under test) is a finding.
//! Not part of berth's API (`#[doc(hidden)]`); the functions do nothing a fuzzer could not do
//! through berthd's own inputs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

/// Every route pattern berthd serves (`src/api/*.rs` `Route::new`), for the router target.
const ROUTES: &[&str] = &[
    "/_ping",
    "/auth",
    "/build",
    "/build/prune",
    "/commit",
    "/containers/create",
    "/containers/json",
    "/containers/prune",
    "/containers/{name}",
    "/containers/{name}/archive",
    "/containers/{name}/attach",
    "/containers/{name}/attach/ws",
    "/containers/{name}/changes",
    "/containers/{name}/exec",
    "/containers/{name}/export",
    "/containers/{name}/json",
    "/containers/{name}/kill",
    "/containers/{name}/logs",
    "/containers/{name}/pause",
    "/containers/{name}/rename",
    "/containers/{name}/resize",
    "/containers/{name}/restart",
    "/containers/{name}/start",
    "/containers/{name}/stats",
    "/containers/{name}/stop",
    "/containers/{name}/top",
    "/containers/{name}/unpause",
    "/containers/{name}/update",
    "/containers/{name}/wait",
    "/distribution/{name:.*}/json",
    "/events",
    "/exec/{id}/json",
    "/exec/{id}/resize",
    "/exec/{id}/start",
    "/images/create",
    "/images/get",
    "/images/json",
    "/images/load",
    "/images/prune",
    "/images/search",
    "/images/{name:.*}",
    "/images/{name:.*}/get",
    "/images/{name:.*}/history",
    "/images/{name:.*}/json",
    "/images/{name:.*}/push",
    "/images/{name:.*}/tag",
    "/info",
    "/networks",
    "/networks/",
    "/networks/create",
    "/networks/prune",
    "/networks/{id:.*}",
    "/networks/{id}/connect",
    "/networks/{id}/disconnect",
    "/nodes",
    "/nodes/{id}",
    "/nodes/{id}/update",
    "/services",
    "/services/create",
    "/services/{id}",
    "/services/{id}/logs",
    "/services/{id}/update",
    "/session",
    "/swarm",
    "/swarm/init",
    "/swarm/join",
    "/swarm/leave",
    "/swarm/unlock",
    "/swarm/unlockkey",
    "/swarm/update",
    "/system/df",
    "/tasks",
    "/tasks/{id}",
    "/tasks/{id}/logs",
    "/version",
    "/volumes",
    "/volumes/create",
    "/volumes/prune",
    "/volumes/{name:.*}",
];

/// The request target: a path, then `?` and a query string, as hyper hands them over.
pub fn router(data: &[u8]) {
    use crate::api::router::{check_version, match_segments, parse_pattern, split_version, Seg};
    use crate::version::{API_VERSION, MIN_API_VERSION};

    let text = String::from_utf8_lossy(data);
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (&*text, None),
    };

    let (version, rest) = split_version(path);
    match version {
        Some(v) => {
            assert!(!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
            assert_eq!(format!("v{v}{rest}"), path.trim_start_matches('/'));
            if let Ok(parsed) = check_version(v) {
                assert!(parsed >= MIN_API_VERSION && parsed <= API_VERSION, "{v}");
            }
        }
        None => assert_eq!(rest, path),
    }

    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    for route in ROUTES {
        let pattern = parse_pattern(route);
        let mut params = HashMap::new();
        if !match_segments(&pattern, &segments, &mut params) {
            continue;
        }
        let names: BTreeSet<&str> = pattern
            .iter()
            .filter_map(|s| match s {
                Seg::Param(n) | Seg::Rest(n) => Some(*n),
                Seg::Lit(_) => None,
            })
            .collect();
        assert_eq!(
            params.keys().copied().collect::<BTreeSet<_>>(),
            names,
            "{route}"
        );
        for (name, value) in &params {
            assert!(!value.is_empty(), "{route}: empty {name}");
        }
        // The literal segments of the route appear in the path in order.
        let lits = pattern.iter().filter(|s| matches!(s, Seg::Lit(_))).count();
        assert!(segments.len() >= lits, "{route}");
        if !pattern.iter().any(|s| matches!(s, Seg::Rest(_))) {
            assert_eq!(segments.len(), pattern.len(), "{route}");
        }
    }

    let q = crate::api::query::Query::parse(query);
    for key in ["all", "filters", "t", "since", "tail", "force", "v", ""] {
        let first = q.get(key);
        let all: Vec<&str> = q.get_all(key).collect();
        assert_eq!(first, all.first().copied());
        let b = q.bool(key);
        assert_eq!(q.bool_or(key, b), b);
        if first.is_none() {
            assert!(!b);
            assert!(q.bool_or(key, true));
        }
        if let Ok(Some(n)) = q.int(key) {
            assert_eq!(first.map(str::trim).map(str::parse::<i64>), Some(Ok(n)));
        }
    }
}

/// The `filters` parameter: JSON text in either encoding.
pub fn filters(data: &[u8]) {
    use crate::filters::Filters;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(f) = Filters::parse(text) else {
        return;
    };
    // Both encodings of what was parsed give the same filters back.
    let mut legacy = serde_json::Map::new();
    let mut current = serde_json::Map::new();
    let keys: Vec<String> = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    for k in &keys {
        let values: Vec<&str> = f.get(k).collect();
        legacy.insert(k.clone(), serde_json::json!(values));
        let flags: serde_json::Map<String, serde_json::Value> = values
            .iter()
            .map(|v| (v.to_string(), serde_json::Value::Bool(true)))
            .collect();
        current.insert(k.clone(), serde_json::Value::Object(flags));
        assert_eq!(f.contains(k), !values.is_empty());
        for v in &values {
            assert!(f.exact_match(k, v));
            assert!(f.fuzzy_match(k, &format!("{v}suffix")));
        }
    }
    let a = Filters::parse(&serde_json::Value::Object(legacy).to_string()).unwrap();
    let b = Filters::parse(&serde_json::Value::Object(current).to_string()).unwrap();
    assert_eq!(a, f);
    assert_eq!(b, f);
    assert!(f
        .validate(&keys.iter().map(String::as_str).collect::<Vec<_>>())
        .is_ok());
    let labels: HashMap<String, String> = HashMap::new();
    let _ = f.match_kv_list("label", &labels);
}

/// `X-Registry-Auth` (one credential) and `X-Registry-Config` (credentials by registry): the
/// header value as the client sends it. The first byte picks which.
pub fn registry_auth(data: &[u8]) {
    use crate::registry::client::{decode_header_base64, AuthConfig};
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    if let Some(bytes) = decode_header_base64(value) {
        // Whatever decodes re-encodes (standard, padded) to the same bytes.
        use base64::Engine;
        let again = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(decode_header_base64(&again).as_deref(), Some(&bytes[..]));
    }
    if which & 1 == 0 {
        if let Ok(a) = AuthConfig::from_header(value) {
            let mut b = a.clone();
            b.fill_from_auth();
            assert_eq!(a.username, b.username);
            assert_eq!(a.password, b.password);
        }
    } else {
        // api/build.rs `registry_config`.
        if let Some(m) = decode_header_base64(value)
            .and_then(|b| serde_json::from_slice::<HashMap<String, AuthConfig>>(&b).ok())
        {
            for mut a in m.into_values() {
                a.fill_from_auth();
            }
        }
    }
}

/// An image reference as the CLI or an API parameter gives it.
pub fn reference(data: &[u8]) {
    use crate::image::reference::{familiar_repository, is_id_prefix, Reference};
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = is_id_prefix(s);
    let _ = familiar_repository(s);
    let _ = Reference::parse_repository(s);
    let Ok(r) = Reference::parse(s) else {
        return;
    };
    assert!(r.tag.is_some() || r.digest.is_some());
    // The fully qualified and the familiar forms name the same reference.
    let full = r.to_string();
    let back = Reference::parse(&full).unwrap_or_else(|e| panic!("{s:?} -> {full:?}: {e}"));
    assert_eq!(back, r, "{s:?} -> {full:?}");
    // Docker's familiar form is ambiguous for `docker.io/<host-like>/…` (`docker.io/a.io/b` is
    // shown as `a.io/b`, which names the registry a.io): distribution/reference's
    // `FamiliarName` does the same, so those are not checked.
    let familiar = r.familiar();
    let first = familiar.split('/').next().unwrap_or("");
    let host_like = familiar.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if r.domain != crate::image::reference::DEFAULT_DOMAIN || !host_like {
        let back =
            Reference::parse(&familiar).unwrap_or_else(|e| panic!("{s:?} -> {familiar:?}: {e}"));
        assert_eq!(back, r, "{s:?} -> {familiar:?}");
        assert_eq!(
            Reference::parse_repository(&r.familiar_repository())
                .map(|x| x.repository())
                .ok(),
            Some(r.repository())
        );
    }
}

/// A scratch area for the extraction targets: `<tmp>/berth-fuzz-<pid>-<what>/` holding the
/// extraction `root/`, an empty `sentinel/` and a file `outside` with [`MARKER`].
struct Scratch {
    base: PathBuf,
}

const MARKER: &[u8] = b"BERTH-FUZZ-OUTSIDE-MARKER-7f3c";

impl Scratch {
    fn new(what: &str) -> Scratch {
        let base = std::env::temp_dir().join(format!("berth-fuzz-{}-{what}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("sentinel")).unwrap();
        fs::write(base.join("outside"), MARKER).unwrap();
        Scratch { base }
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    fn fresh_root(&self) -> PathBuf {
        let root = self.root();
        let _ = fs::remove_dir_all(&root);
        assert!(!root.exists(), "cannot clean {}", root.display());
        fs::create_dir(&root).unwrap();
        root
    }

    /// Nothing was written beside the root: the base holds exactly what [`Scratch::new`]
    /// made, the sentinel is empty and the outside file unchanged.
    fn check_contained(&self) {
        let mut names: Vec<String> = fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["outside", "root", "sentinel"],
            "write outside the root"
        );
        assert_eq!(
            fs::read_dir(self.base.join("sentinel")).unwrap().count(),
            0,
            "write into the sentinel directory"
        );
        let meta = fs::symlink_metadata(self.base.join("outside")).unwrap();
        assert!(meta.file_type().is_file(), "outside file replaced");
        assert_eq!(fs::read(self.base.join("outside")).unwrap(), MARKER);
        let sentinel = fs::symlink_metadata(self.base.join("sentinel")).unwrap();
        assert!(sentinel.file_type().is_dir(), "sentinel replaced");
    }
}

fn scratch(cell: &'static OnceLock<Scratch>, what: &str) -> &'static Scratch {
    cell.get_or_init(|| Scratch::new(what))
}

/// A layer tar (uncompressed) extracted into a scratch root, as a layer (`apply_tar`) or as a
/// `docker cp` archive (`extract_plain_at`); the first byte picks the mode. Nothing may be
/// written outside the root.
pub fn apply_tar(data: &[u8]) {
    use crate::image::apply::{self, ExtractOptions};
    static S: OnceLock<Scratch> = OnceLock::new();
    let s = scratch(&S, "apply");
    let Some((&mode, tar)) = data.split_first() else {
        return;
    };
    let root = s.fresh_root();
    if mode & 1 == 0 {
        let _ = apply::apply_tar(tar, &root);
    } else {
        let dir = fs::File::open(&root).unwrap();
        let opts = ExtractOptions {
            owner: (mode & 2 != 0).then_some((1000, 1000)),
            shift: (mode & 8 != 0)
                .then(|| crate::util::ids::IdMap::single(100_000, 65536, 100_000, 65536)),
            no_overwrite_dir_non_dir: mode & 4 != 0,
        };
        let _ = apply::extract_plain_at(tar, dir.into(), opts, None);
    }
    s.check_contained();
}

/// The tar-split record: the first byte picks the mode.
/// - even: a tar is extracted with recording, the record finished and decoded, and the stream
///   reassembled from the extracted files must be byte for byte the input;
/// - odd: the rest is a (hostile) uncompressed record, gzip-compressed as stored, decoded and
///   reassembled against a scratch layer: it must not read files outside the layer.
pub fn tarsplit(data: &[u8]) {
    use crate::image::{apply, tarsplit};
    static S: OnceLock<Scratch> = OnceLock::new();
    let s = scratch(&S, "tarsplit");
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let root = s.fresh_root();
    if mode & 1 == 0 {
        let recorded = apply::apply_layer_recorded(rest, &root, tarsplit::Recorder::new());
        if let Ok((stats, rec)) = recorded {
            s.check_contained();
            let encoded = rec.finish().unwrap();
            let segments = tarsplit::decode(&encoded).unwrap();
            let mut out = Vec::new();
            tarsplit::assemble(&root, segments)
                .read_to_end(&mut out)
                .expect("reassembling an extracted layer");
            assert_eq!(out.len() as u64, stats.tar_size);
            let (digest, _) = tarsplit::digest_of(&out[..]).unwrap();
            if out != rest {
                // A layer that writes the same file twice cannot be reassembled: the first
                // entry's content is gone once the second is extracted (so with moby's
                // tar-split). What matters is that it is caught: the stream no longer has
                // the DiffID, which `Verified` checks on every save and push.
                assert!(
                    has_duplicate_file(rest),
                    "reassembled tar differs from the input"
                );
                assert_ne!(digest, stats.diff_id);
            } else {
                assert_eq!(digest, stats.diff_id);
            }
        }
    } else {
        // A layer with a file, a directory, and links pointing out of it.
        fs::write(root.join("file"), b"content of file\n").unwrap();
        fs::create_dir(root.join("dir")).unwrap();
        fs::write(root.join("dir/inner"), b"inner\n").unwrap();
        std::os::unix::fs::symlink("../outside", root.join("up")).unwrap();
        std::os::unix::fs::symlink(s.base.join("outside"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("..", root.join("dotdot")).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(rest).unwrap();
        let gz = enc.finish().unwrap();
        if let Ok(segments) = tarsplit::decode(&gz) {
            let want: u64 = segments
                .iter()
                .map(|s| match s {
                    tarsplit::Segment::Raw(b) => b.len() as u64,
                    tarsplit::Segment::File { size, .. } => *size,
                })
                .fold(0u64, u64::saturating_add);
            // Read at most a bounded amount: sizes are the record's word.
            let mut out = Vec::new();
            let got = tarsplit::assemble(&root, segments)
                .take(1 << 20)
                .read_to_end(&mut out);
            if got.is_ok() && out.len() < 1 << 20 {
                assert_eq!(out.len() as u64, want);
            }
            if !contains(rest, MARKER) {
                assert!(!contains(&out, MARKER), "read a file outside the layer");
            }
        }
        s.check_contained();
    }
}

/// Whether a tar names the same path twice (an entry written over by a later one).
fn has_duplicate_file(tar: &[u8]) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut archive = tar::Archive::new(tar);
    let Ok(entries) = archive.entries() else {
        return false;
    };
    for e in entries {
        let Ok(e) = e else { return false };
        let path = e.path_bytes();
        let path = path.strip_prefix(b"./").unwrap_or(&path);
        if !seen.insert(path.strip_suffix(b"/").unwrap_or(path).to_vec()) {
            return true;
        }
    }
    false
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A Dockerfile: parsed, then every instruction's text expanded as the builder does (with the
/// Dockerfile's escape token, ARG/ENV values in scope).
pub fn dockerfile(data: &[u8]) {
    use crate::builder::dockerfile::{self, Kind};
    use crate::builder::shell::ShellLex;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(df) = dockerfile::parse(text) else {
        return;
    };
    assert!(!df.stages.is_empty());
    let lex = ShellLex::new(df.escape);
    let mut env: HashMap<String, String> = HashMap::new();
    for a in &df.meta_args {
        assert!(!a.name.is_empty());
        if let Some(d) = &a.default {
            env.insert(a.name.clone(), d.clone());
        }
    }
    let mut last_line = 0;
    for stage in &df.stages {
        let lookup = |n: &str| env.get(n).cloned();
        let _ = lex.process_word(&stage.base, &lookup);
        let mut stage_env = env.clone();
        for i in &stage.instructions {
            assert!(i.line >= 1 && i.line >= last_line, "lines out of order");
            last_line = i.line;
            let lookup = |n: &str| stage_env.get(n).cloned();
            let mut words: Vec<String> = Vec::new();
            match &i.kind {
                Kind::Env(kv) | Kind::Label(kv) => {
                    for (k, v) in kv {
                        words.push(k.clone());
                        words.push(v.clone());
                    }
                }
                Kind::Arg(args) => {
                    for a in args {
                        words.push(a.name.clone());
                        words.extend(a.default.clone());
                    }
                }
                Kind::Expose(w) | Kind::Volume(w) | Kind::Shell(w) => words.extend(w.clone()),
                Kind::User(w) | Kind::Workdir(w) | Kind::StopSignal(w) => words.push(w.clone()),
                Kind::Copy(c) | Kind::Add(c) => {
                    words.extend(c.srcs.clone());
                    words.push(c.dest.clone());
                    words.extend(c.chown.clone());
                    words.extend(c.from.clone());
                }
                Kind::Onbuild(t) => {
                    let _ = dockerfile::parse_instruction(t, df.escape);
                }
                _ => {}
            }
            for w in &words {
                if let Ok(one) = lex.process_word(w, &lookup) {
                    let many = lex.process_words(w, &lookup).expect("word expanded once");
                    // Words split at white space the expansion produced too (moby).
                    if !one.contains(char::is_whitespace) && !one.is_empty() {
                        assert_eq!(many[0], one, "{w:?}");
                    }
                }
            }
            let values: Vec<(String, String)> = match &i.kind {
                Kind::Env(kv) => kv.clone(),
                Kind::Arg(args) => args
                    .iter()
                    .map(|a| (a.name.clone(), a.default.clone().unwrap_or_default()))
                    .collect(),
                _ => Vec::new(),
            };
            let expanded: Vec<(String, String)> = values
                .into_iter()
                .map(|(k, v)| (k, lex.process_word(&v, &lookup).unwrap_or(v)))
                .collect();
            stage_env.extend(expanded);
        }
    }
}

/// A word expanded by the builder's shell lexer: the first byte picks the escape token, the
/// variables `A`, `B`, `EMPTY` are set and everything else is unset.
pub fn shell(data: &[u8]) {
    use crate::builder::shell::ShellLex;
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(word) = std::str::from_utf8(rest) else {
        return;
    };
    let lex = ShellLex::new(if which & 1 == 0 { '\\' } else { '`' });
    let env = |n: &str| match n {
        "A" => Some("alpha".to_string()),
        "B" => Some("b e t a".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let one = lex.process_word(word, &env);
    let many = lex.process_words(word, &env);
    assert_eq!(one.is_ok(), many.is_ok(), "{word:?}");
    // Without anything to expand, quote or escape, a word is itself.
    let special = |c: char| matches!(c, '$' | '\'' | '"' | '\\' | '`') || c.is_whitespace();
    if !word.chars().any(special) {
        assert_eq!(one.unwrap(), word);
        let many = many.unwrap();
        if word.is_empty() {
            assert!(many.is_empty());
        } else {
            assert_eq!(many, [word]);
        }
    }
}

/// A `.dockerignore` file and paths to match: the text up to the first NUL is the file, the
/// rest are NUL-separated context paths.
pub fn dockerignore(data: &[u8]) {
    use crate::builder::dockerignore::{read_all, Matcher};
    let text = String::from_utf8_lossy(data);
    let (file, paths) = text.split_once('\0').unwrap_or((&text, ""));
    let Ok(m) = Matcher::parse(file) else {
        return;
    };
    let patterns = read_all(file);
    let m2 = Matcher::new(&patterns).expect("read_all's patterns compile again");
    assert_eq!(m.is_empty(), patterns.is_empty());
    for p in paths.split('\0').chain(["", ".", "a", "a/b/c"]) {
        let e = m.excluded(p);
        assert_eq!(e, m2.excluded(p), "{p:?}");
        if p.is_empty() || p == "." {
            assert!(!e, "the context root is never excluded");
        }
        if !m.has_exclusions() && e && !p.is_empty() && !p.starts_with('/') {
            // Without `!` patterns, anything under an excluded path is excluded too. (Context
            // paths are relative: `/` as a pattern matches an absolute path, not its
            // children; no context path is absolute.)
            assert!(m.excluded(&format!("{p}/x")), "{p:?}");
        }
    }
}

/// The json-file log reader: the first byte holds read options (streams, tail, since and
/// until), the rest is split at the first NUL into a rotated file (`.1`) and the current file.
pub fn jsonfile(data: &[u8]) {
    use crate::logger::jsonfile::{encode_entry, read, ReadOptions};
    use crate::logger::Stream;
    static S: OnceLock<Scratch> = OnceLock::new();
    let s = scratch(&S, "jsonfile");
    let Some((&o, rest)) = data.split_first() else {
        return;
    };
    let root = s.fresh_root();
    let path = root.join("c-json.log");
    let (rotated, current) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    fs::write(&path, current).unwrap();
    if let Some(r) = rotated {
        fs::write(root.join("c-json.log.1"), r).unwrap();
    }
    let t = |n: u8| UNIX_EPOCH + Duration::from_secs(1_700_000_000 + u64::from(n) * 3600);
    let opts = ReadOptions {
        stdout: o & 1 == 0,
        stderr: o & 2 == 0,
        tail: (o & 4 != 0).then_some(usize::from(o >> 5)),
        since: (o & 8 != 0).then(|| t(o >> 4)),
        until: (o & 16 != 0).then(|| t(o >> 3)),
    };
    let entries = read(&path, &opts).expect("reading a log file");
    let lines = rest.iter().filter(|&&b| b == b'\n').count();
    assert!(entries.len() <= lines);
    if let Some(n) = opts.tail {
        assert!(entries.len() <= n);
    }
    for e in &entries {
        match e.stream {
            Stream::Stdout => assert!(opts.stdout),
            Stream::Stderr => assert!(opts.stderr),
        }
        if let Some(until) = opts.until {
            assert!(e.time <= until);
        }
        // An entry written again reads back the same.
        let mut buf = Vec::new();
        let attrs = crate::logger::attrs::encode(&e.attrs);
        encode_entry(&mut buf, &e.line, e.stream, &attrs, e.time);
        fs::write(&path, &buf).unwrap();
        let _ = fs::remove_file(root.join("c-json.log.1"));
        let back = read(&path, &ReadOptions::default()).unwrap();
        if e.line.is_empty() || std::str::from_utf8(&e.line).is_ok() {
            assert_eq!(
                back,
                std::slice::from_ref(e),
                "{}",
                String::from_utf8_lossy(&buf)
            );
        }
    }
    s.check_contained();
}

/// The supervisor protocol as either side reads it: the first byte picks the message (a
/// request line, a reply line, an event frame's JSON, the status pipe's first line, the
/// supervisor's config, an exec request) or, for the rest, a stream of frames.
pub fn proto(data: &[u8]) {
    use crate::runtime::proto::{
        self, Created, Event, ExecRequest, Reply, Request, SupervisorConfig,
    };
    fn round<T: serde::Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) {
        if let Ok(v) = serde_json::from_slice::<T>(bytes) {
            let a = serde_json::to_vec(&v).expect("serialising a decoded message");
            let back: T = serde_json::from_slice(&a).expect("decoding what was encoded");
            let b = serde_json::to_vec(&back).unwrap();
            assert_eq!(a, b, "{}", String::from_utf8_lossy(bytes));
        }
    }
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => round::<Request>(rest),
        1 => round::<Reply>(rest),
        2 => {
            round::<Event>(rest);
            if let Ok(e) = serde_json::from_slice::<Event>(rest) {
                let again: Event =
                    serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
                assert_eq!(again, e);
            }
        }
        3 => round::<Created>(rest),
        4 => round::<SupervisorConfig>(rest),
        5 => round::<ExecRequest>(rest),
        _ => {
            // The supervisor's reading loop (supervisor/clients.rs) and berthd's (client.rs).
            let mut off = 0;
            let mut frames = Vec::new();
            while let Some((kind, len)) = proto::frame_len(&rest[off..]) {
                let payload = &rest[off + proto::HEADER..off + proto::HEADER + len];
                off += proto::HEADER + len;
                if kind == proto::EVENT {
                    round::<Event>(payload);
                }
                frames.push((kind, payload));
            }
            assert!(off <= rest.len());
            let mut again = Vec::new();
            for (kind, payload) in &frames {
                proto::put_frame(&mut again, *kind, payload);
            }
            // Frames re-encode to their bytes, except the three bytes after the kind, which
            // readers ignore.
            assert_eq!(again.len(), off);
        }
    }
}

/// A byte stream in Docker's stdcopy framing, as a client's output buffer sees it: fed in
/// pieces (the first byte is the piece size), raw or multiplexed (its low bit).
pub fn stdcopy(data: &[u8]) {
    use crate::util::stdcopy::{frame, frame_len, take_output, HEADER, STDERR, STDOUT};
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let raw = first & 1 == 1;
    let piece = usize::from(first >> 1).max(1);
    let mut pending = Vec::new();
    let mut out = Vec::new();
    for chunk in rest.chunks(piece) {
        pending.extend_from_slice(chunk);
        out.extend(take_output(&mut pending, raw));
        assert!(frame_len(&pending).is_none(), "a whole frame left behind");
    }
    // The same, at once.
    let mut all = rest.to_vec();
    let at_once = take_output(&mut all, raw);
    assert_eq!(at_once, out);
    assert_eq!(all, pending);
    // What a multiplexed client gets parses as stdout/stderr frames covering it exactly.
    if !raw {
        let mut off = 0;
        while let Some((kind, len)) = frame_len(&out[off..]) {
            assert!(kind == STDOUT || kind == STDERR);
            off += HEADER + len;
        }
        assert_eq!(off, out.len());
    }
    let f = frame(STDOUT, rest);
    assert_eq!(frame_len(&f), Some((STDOUT, rest.len())));
}

/// A fuzz target: its name and the function that takes one input.
pub type Target = (&'static str, fn(&[u8]));

/// The names of the targets, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: &[Target] = &[
    ("router", router),
    ("filters", filters),
    ("registry_auth", registry_auth),
    ("reference", reference),
    ("apply_tar", apply_tar),
    ("tarsplit", tarsplit),
    ("dockerfile", dockerfile),
    ("shell", shell),
    ("dockerignore", dockerignore),
    ("jsonfile", jsonfile),
    ("proto", proto),
    ("stdcopy", stdcopy),
];

/// The scratch directories are per process; drop them (tests call this at the end).
pub fn cleanup() {
    for what in ["apply", "tarsplit", "jsonfile"] {
        let base: PathBuf =
            std::env::temp_dir().join(format!("berth-fuzz-{}-{what}", std::process::id()));
        let _ = fs::remove_dir_all(Path::new(&base));
    }
}
