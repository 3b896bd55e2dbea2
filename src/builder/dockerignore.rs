//! `.dockerignore` with moby's `patternmatcher` semantics: patterns cleaned and anchored at the
//! context root, `*` and `?` never match `/`, `**` spans directories, `\` escapes, the last
//! matching pattern wins and `!` re-includes (even under an excluded directory).
//!
//! Divergences from moby: a pattern that moby accepts in `New` but fails on at match time
//! (e.g. the reversed range in `[Local-Only]`) is refused here when parsing; inside `[...]`
//! every character is literal (moby feeds `*`, `.` and `\x` inside a class to the regexp as is).

use regex::Regex;

use super::BuilderError;
use crate::util::inroot::clean;

/// The patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    exclusion: bool,
    cleaned: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regexp(Regex),
}

impl Matcher {
    /// The patterns of a `.dockerignore` file's text (comments and blank lines skipped, as
    /// moby's `ignorefile.ReadAll`).
    pub fn parse(text: &str) -> Result<Matcher, BuilderError> {
        Matcher::new(&read_all(text))
    }

    /// A matcher over already-read patterns (moby's `patternmatcher.New`): each trimmed and
    /// cleaned, a leading `!` making it an exclusion.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Matcher, BuilderError> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean(p);
            let mut exclusion = false;
            if let Some(rest) = p.strip_prefix('!') {
                if rest.is_empty() {
                    return Err(BuilderError::invalid("illegal exclusion pattern: \"!\""));
                }
                exclusion = true;
                p = rest.to_string();
            }
            let kind = compile(&p).map_err(|e| {
                BuilderError::invalid(format!("invalid .dockerignore pattern {p:?}: {e}"))
            })?;
            out.push(Pattern {
                exclusion,
                cleaned: p,
                kind,
            });
        }
        Ok(Matcher { patterns: out })
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any pattern is a `!` exclusion (moby's `Exclusions`).
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded: moby's
    /// `MatchesOrParentMatches` (a path is also excluded when one of its parent directories
    /// matches; the last matching pattern wins). The root itself is never excluded.
    pub fn excluded(&self, path: &str) -> bool {
        let file = clean(path);
        if file == "." {
            return false;
        }
        let parent = match file.rfind('/') {
            Some(i) => clean(&file[..i.max(1)]),
            None => ".".to_string(),
        };
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change a match, an exclusion cannot change a non-match.
            if pattern.exclusion != matched {
                continue;
            }
            let mut m = pattern.matches(&file);
            if !m && parent != "." {
                for i in 0..parent_dirs.len() {
                    if pattern.matches(&parent_dirs[..=i].join("/")) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !pattern.exclusion;
            }
        }
        matched
    }
}

/// moby's `ignorefile.ReadAll`: a UTF-8 BOM stripped, `#` lines skipped, each pattern trimmed,
/// cleaned and its leading `/` removed (keeping a `!`).
pub fn read_all(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut p = String::new();
        if !pattern.is_empty() {
            let c = clean(pattern);
            p = match c.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => c,
            };
        }
        if invert {
            p.insert(0, '!');
        }
        out.push(p);
    }
    out
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            Kind::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Kind::Regexp(re) => re.is_match(path),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Detected {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

/// moby's `Pattern.compile`, with Go's `filepath.Match` syntax checks (unterminated or empty
/// classes, a trailing `\`).
fn compile(pattern: &str) -> Result<Kind, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut detected = Detected::Exact;
    let mut pos = 0;
    let mut iteration = 0usize;
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        match ch {
            '*' => {
                if chars.get(pos) == Some(&'*') {
                    pos += 1;
                    // `**/` is `**`.
                    if chars.get(pos) == Some(&'/') {
                        pos += 1;
                    }
                    if pos >= chars.len() {
                        // `**` at the end: everything (as .gitignore).
                        if detected == Detected::Exact {
                            detected = Detected::Prefix;
                        } else {
                            re.push_str(".*");
                            detected = Detected::Regexp;
                        }
                    } else {
                        re.push_str("(.*/)?");
                        detected = Detected::Regexp;
                    }
                    if iteration == 0 {
                        detected = Detected::Suffix;
                    }
                } else {
                    re.push_str("[^/]*");
                    detected = Detected::Regexp;
                }
            }
            '?' => {
                re.push_str("[^/]");
                detected = Detected::Regexp;
            }
            '\\' => {
                let Some(&next) = chars.get(pos) else {
                    return Err("syntax error in pattern (trailing \\)".into());
                };
                pos += 1;
                re.push_str(&regex::escape(&next.to_string()));
                detected = Detected::Regexp;
            }
            '[' => {
                pos = class(&chars, pos, &mut re)?;
                detected = Detected::Regexp;
            }
            ']' => {
                re.push_str("\\]");
                detected = Detected::Regexp;
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        iteration += 1;
    }
    Ok(match detected {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix,
        Detected::Suffix => Kind::Suffix,
        Detected::Regexp => {
            re.push('$');
            Kind::Regexp(Regex::new(&re).map_err(|e| e.to_string())?)
        }
    })
}

/// One `[...]` class starting after its `[` at `pos`, with `filepath.Match`'s rules: an
/// optional `^`, then at least one character or `lo-hi` range, `\` escaping; an unescaped `-`
/// or `]` where a character is expected is an error. Returns the position after the `]`.
fn class(chars: &[char], mut pos: usize, re: &mut String) -> Result<usize, String> {
    const BAD: &str = "syntax error in pattern";
    re.push('[');
    if chars.get(pos) == Some(&'^') {
        re.push('^');
        pos += 1;
    }
    let get_esc = |pos: &mut usize| -> Result<char, String> {
        match chars.get(*pos) {
            None | Some('-') | Some(']') => Err(BAD.into()),
            Some('\\') => {
                let c = chars
                    .get(*pos + 1)
                    .copied()
                    .ok_or_else(|| BAD.to_string())?;
                *pos += 2;
                Ok(c)
            }
            Some(&c) => {
                *pos += 1;
                Ok(c)
            }
        }
    };
    let mut nrange = 0;
    loop {
        match chars.get(pos) {
            None => return Err(BAD.into()),
            Some(']') if nrange > 0 => {
                re.push(']');
                return Ok(pos + 1);
            }
            _ => {}
        }
        let lo = get_esc(&mut pos)?;
        re.push_str(&regex::escape(&lo.to_string()));
        if chars.get(pos) == Some(&'-') {
            pos += 1;
            let hi = get_esc(&mut pos)?;
            re.push('-');
            re.push_str(&regex::escape(&hi.to_string()));
        }
        nrange += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(pattern: &str, text: &str) -> bool {
        Matcher::new(&[pattern]).unwrap().excluded(text)
    }

    // patternmatcher_test.go TestMatches (MatchesOrParentMatches), Linux cases.
    #[test]
    fn moby_matches_table() {
        let tests: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\*b", "a*b", true),
        ];
        for (pattern, text, pass) in tests {
            assert_eq!(
                one(pattern, text),
                *pass,
                "pattern={pattern:?} text={text:?}"
            );
        }
        let multi: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &[
                    "**",
                    "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                ],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            (
                &["**", "!dist/*.whl"],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
        ];
        for (patterns, text, pass) in multi {
            let m = Matcher::new(patterns).unwrap();
            assert_eq!(
                m.excluded(text),
                *pass,
                "patterns={patterns:?} text={text:?}"
            );
        }
    }

    // patternmatcher_test.go: the small Test* functions.
    #[test]
    fn moby_simple_cases() {
        assert!(one("*", "fileutils.go"));
        assert!(one("*.go", "fileutils.go"));
        let m = |p: &[&str], t: &str| Matcher::new(p).unwrap().excluded(t);
        assert!(m(&["!fileutils.go", "*.go"], "fileutils.go"));
        assert!(!m(&["docs", "!docs/README.md"], "docs/README.md"));
        assert!(!m(&["docs/", "!docs/README.md"], "docs/README.md"));
        assert!(!m(&["docs/*", "!docs/README.md"], "docs/README.md"));
        assert!(!m(&["*.go", "!fileutils.go"], "fileutils.go"));
        assert!(!m(&["*.go"], "."));
        assert!(Matcher::new(&["!"]).is_err());
        assert!(!m(&[], "/any/path/there"));
        assert!(Matcher::new(&["["]).is_err());
        assert!(
            Matcher::new(&["docs", "config", ""])
                .unwrap()
                .patterns
                .len()
                == 2
        );
        assert!(Matcher::new(&["docs", "  !docs/README.md"])
            .unwrap()
            .has_exclusions());
        assert!(Matcher::new(&["docs", "!docs/README.md  "])
            .unwrap()
            .has_exclusions());
    }

    // patternmatcher_test.go TestMatch (Go's filepath.Match table through Matches).
    #[test]
    fn moby_filepath_match_table() {
        let ok: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", true),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
        ];
        for (pattern, text, pass) in ok {
            assert_eq!(
                one(pattern, text),
                *pass,
                "pattern={pattern:?} text={text:?}"
            );
        }
        for bad in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[",
        ] {
            assert!(
                Matcher::new(&[bad]).is_err(),
                "pattern {bad:?} should be refused"
            );
        }
    }

    #[test]
    fn compile_kinds() {
        let kind = |p: &str| match compile(&clean(p)).unwrap() {
            Kind::Exact => "exact".to_string(),
            Kind::Prefix => "prefix".to_string(),
            Kind::Suffix => "suffix".to_string(),
            Kind::Regexp(re) => re.as_str().to_string(),
        };
        assert_eq!(kind("*"), "^[^/]*$");
        assert_eq!(kind("a*/b"), "^a[^/]*/b$");
        assert_eq!(kind("**"), "suffix");
        assert_eq!(kind("**/**"), "^(.*/)?.*$");
        assert_eq!(kind("dir/**"), "prefix");
        assert_eq!(kind("**/dir"), "suffix");
        assert_eq!(kind("**/dir2/**"), "^(.*/)?dir2/.*$");
        assert_eq!(kind("**/**/*.txt"), "^(.*/)?(.*/)?[^/]*\\.txt$");
        assert_eq!(kind("abc.def"), "exact");
        assert_eq!(kind("a(b)c/def"), "exact");
        assert_eq!(kind("**/foo/bar"), "suffix");
    }

    #[test]
    fn read_all_like_ignorefile() {
        let text = "\u{feff}# comment\n\n  /foo/../bar/  \n! /baz\n#x\n./qux\n/\n";
        assert_eq!(read_all(text), vec!["bar", "!baz", "qux", "/"]);
    }

    #[test]
    fn parse_and_reinclude_under_excluded_dir() {
        let m = Matcher::parse("# c\nbuild\n!build/keep.txt\n*.log\n").unwrap();
        assert!(m.excluded("build"));
        assert!(m.excluded("build/x/y"));
        assert!(!m.excluded("build/keep.txt"));
        assert!(m.excluded("a.log"));
        assert!(!m.excluded("sub/a.log"));
        assert!(!m.excluded("Dockerfile"));
        assert!(!m.excluded("./"));
    }
}
