//! Docker's variable expansion for Dockerfile words, a port of moby/buildkit's
//! `frontend/dockerfile/shell/lex.go` (the package both BuildKit and the classic builder use):
//!
//! - `$V` and `${V}` (unset: empty), positional (`$1`, `$001`) and special (`$@`, `$*`, `$#`,
//!   `$?`, `$-`, `$$`, `$!`, `$0`) parameters, which are looked up like any name;
//! - `${V:-w}` / `${V-w}` (default), `${V:+w}` / `${V+w}` (alternative), `${V:?w}` / `${V?w}`
//!   (error when empty or unset / unset);
//! - `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}` (shortest and longest prefix or suffix removal)
//!   and `${V/p/r}`, `${V//p/r}` (first or every match replaced), where the pattern `p` knows
//!   `*` (any run of characters but a newline), `?` (one character but a newline) and `\`
//!   escapes for `*`, `?`, `\`, `}` and `/` (no bracket expressions, as in BuildKit);
//! - single quotes (everything literal up to the next `'`), double quotes (expansion inside;
//!   the escape token escapes only `"`, `$` and itself there), and the escape token (`\` or
//!   `` ` ``) outside quotes, which takes the next character literally (a trailing one is
//!   dropped);
//! - [`ShellLex::process_words`] splits at unquoted white space after expansion (white space
//!   coming from a variable's value splits too, as the shell's field splitting).
//!
//! Errors carry BuildKit's texts, wrapped as it wraps them:
//! `failed to process "<word>": <reason>`.
//!
//! Divergences from the Go code, all on inputs no Dockerfile relies on:
//! - Go's `unicode.IsLetter` / `IsDigit` (variable names, `$0`-style templates) are
//!   approximated with Rust's `char::is_alphabetic` / `is_numeric`, which also accept letter-
//!   like numbers (`Ⅻ`, `²`) and combining vowel signs;
//! - since BuildKit v0.15 the Go code shares one word buffer between a word and the
//!   `${V:-w}`-style words nested in it, so `process_words("a${X:-b}c")` there gives `["bc"]`;
//!   here every nested word has its own buffer, giving `["abc"]` (the behaviour before v0.15);
//! - BuildKit's options `RawQuotes`, `RawEscapes`, `SkipProcessQuotes` and `SkipUnsetEnv`
//!   (used by BuildKit's own frontend, not by the classic builder) are not offered.

use super::BuilderError;

/// A lexer for one Dockerfile (its escape token: `\` or `` ` ``).
#[derive(Debug, Clone, Copy)]
pub struct ShellLex {
    pub escape: char,
}

impl ShellLex {
    pub fn new(escape: char) -> ShellLex {
        ShellLex { escape }
    }

    /// moby's `ProcessWord`: `word` with its variables expanded from `env` (`None`: unset)
    /// and its quotes and escapes removed, as one word.
    pub fn process_word(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, BuilderError> {
        self.process(word, env).map(|(result, _)| result)
    }

    /// moby's `ProcessWords`: like [`ShellLex::process_word`], split into words at unquoted
    /// white space (for EXPOSE, VOLUME's and ADD/COPY's shell form, …).
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, BuilderError> {
        self.process(word, env).map(|(_, words)| words)
    }

    /// Both forms of `word` at once; errors wrapped as BuildKit's `process` wraps them.
    fn process(
        &self,
        word: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, Vec<String>), BuilderError> {
        let mut sw = ShellWord {
            escape: self.escape,
            env,
            scanner: Scanner::new(word),
            raw_escapes: false,
        };
        sw.process_stop_on(None, false).map_err(|e| {
            BuilderError::invalid(format!(
                "failed to process {}: {}",
                go_quote(word),
                e.message
            ))
        })
    }
}

/// An expansion failure before [`ShellLex::process`] wraps it with the word.
#[derive(Debug)]
struct LexError {
    message: String,
}

fn lex_err(message: impl Into<String>) -> LexError {
    LexError {
        message: message.into(),
    }
}

/// What Go prints for `string(rune)` of the scanner's EOF (-1): the replacement character.
const EOF_TEXT: char = '\u{FFFD}';

/// The longest result of a `${NAME//pattern/replacement}` (bytes). The replacement is itself
/// expanded and lands at every match, so nesting multiplies the length at each level: a
/// 300-byte word reached gigabytes (found by the `shell` fuzz target). BuildKit has no bound.
const MAX_REPLACEMENT_RESULT: usize = 1 << 20;

/// The longest expanded word (bytes). `ENV A=$A$A` doubles a value at each line, and a word
/// of many `$A` repeats it: a Dockerfile of a few hundred bytes reached gigabytes (found by
/// the `dockerfile` fuzz target). BuildKit has no bound.
const MAX_WORD: usize = 1 << 20;

/// `piece` appended to `result`, unless the word grows past [`MAX_WORD`].
fn grow(result: &mut String, piece: &str) -> Result<(), LexError> {
    if result.len() + piece.len() > MAX_WORD {
        return Err(lex_err(format!(
            "the expanded word is longer than {MAX_WORD} bytes"
        )));
    }
    result.push_str(piece);
    Ok(())
}

/// A character reader with one character of look-ahead, like Go's `text/scanner` as lex.go
/// uses it (`Peek`/`Next` only; a leading byte order mark is skipped as that scanner does).
struct Scanner {
    chars: Vec<char>,
    pos: usize,
}

impl Scanner {
    fn new(text: &str) -> Scanner {
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
        Scanner {
            chars: text.chars().collect(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }
}

/// The white-space splitting of `ProcessWords` (BuildKit's `wordsStruct`).
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    /// An unquoted character: white space ends the current word, anything else extends it.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    /// A quoted or escaped character: always part of the word.
    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    /// An expanded variable's value: split like unquoted text.
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    /// A quoted string: part of the word as a whole (even when empty: `""` starts a word,
    /// though an empty word is never emitted).
    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn into_words(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

/// One word being processed (BuildKit's `shellWord`).
struct ShellWord<'a> {
    escape: char,
    env: &'a dyn Fn(&str) -> Option<String>,
    scanner: Scanner,
    /// Keep escape tokens in the output (inside `${V#p}`, `${V%p}` and `${V/p/r}`, whose
    /// patterns then see the escapes).
    raw_escapes: bool,
}

impl ShellWord<'_> {
    /// The word from the scanner's position up to `stop` (consumed) or the end when `stop`
    /// is `None`, as one string and split into words. `raw_escapes` applies to this word and
    /// whatever is nested in it.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), LexError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), LexError> {
        let mut result = String::new();
        let mut words = Words::default();

        while let Some(ch) = self.scanner.peek() {
            if stop == Some(ch) {
                self.scanner.next();
                return Ok((result, words.into_words()));
            }
            match ch {
                '$' => {
                    // An expanded value is split like unquoted text.
                    let value = self.process_dollar()?;
                    grow(&mut result, &value)?;
                    words.add_string(&value);
                    continue;
                }
                '<' | '\'' | '"' => {
                    // Quoted text (and a heredoc marker) stays in the current word.
                    let text = match ch {
                        '<' => self.process_possible_heredoc(),
                        '\'' => self.process_single_quote()?,
                        _ => self.process_double_quote()?,
                    };
                    grow(&mut result, &text)?;
                    words.add_raw_string(&text);
                    continue;
                }
                _ => {}
            }

            self.scanner.next();
            if ch == self.escape {
                if self.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                // The escape token takes the next character literally; a trailing one is
                // dropped.
                let Some(escaped) = self.scanner.next() else {
                    break;
                };
                words.add_raw_char(escaped);
                result.push(escaped);
            } else {
                words.add_char(ch);
                result.push(ch);
            }
        }

        if let Some(stop) = stop {
            return Err(lex_err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )));
        }
        Ok((result, words.into_words()))
    }

    /// `'…'`: every character up to the next `'` as is (a `'` can't be escaped in there).
    fn process_single_quote(&mut self) -> Result<String, LexError> {
        self.scanner.next();
        let mut result = String::new();
        loop {
            match self.scanner.next() {
                None => {
                    return Err(lex_err(
                        "unexpected end of statement while looking for matching single-quote",
                    ))
                }
                Some('\'') => return Ok(result),
                Some(ch) => result.push(ch),
            }
        }
    }

    /// `"…"`: variables expanded; the escape token escapes only `"`, `$` and itself and is
    /// kept before anything else.
    fn process_double_quote(&mut self) -> Result<String, LexError> {
        self.scanner.next();
        let mut result = String::new();
        loop {
            match self.scanner.peek() {
                None => {
                    return Err(lex_err(
                        "unexpected end of statement while looking for matching double-quote",
                    ))
                }
                Some('"') => {
                    self.scanner.next();
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    grow(&mut result, &value)?;
                }
                Some(mut ch) => {
                    self.scanner.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.scanner.peek() {
                            // An escape token right before the end: dropped (the missing
                            // closing quote is reported next round).
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.scanner.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `$…` at the scanner's position: the expansion's value.
    fn process_dollar(&mut self) -> Result<String, LexError> {
        self.scanner.next();

        // $NAME
        if self.scanner.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.get_env(&name).unwrap_or_default());
        }

        // ${…}
        self.scanner.next();
        match self.scanner.peek() {
            None => return Err(lex_err("syntax error: missing '}'")),
            Some('{' | '}' | ':') => return Err(lex_err("syntax error: bad substitution")),
            Some(_) => {}
        }
        let name = self.process_name();
        let ch = self.scanner.next();
        let mut modifier = String::from(ch.unwrap_or(EOF_TEXT));

        match ch {
            Some('}') => Ok(self.get_env(&name).unwrap_or_default()),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let null_is_unset = ch == Some(':');
                let mut op = ch;
                if null_is_unset {
                    op = self.scanner.next();
                    modifier.push(op.unwrap_or(EOF_TEXT));
                }
                self.process_modifier(&name, op, null_is_unset, &modifier)
            }
            Some('/') => self.process_replacement(&name),
            _ => Err(unsupported_modifier(&modifier)),
        }
    }

    /// `${NAME<modifier>word}` after the modifier (`op` the modifier's last character).
    fn process_modifier(
        &mut self,
        name: &str,
        op: Option<char>,
        null_is_unset: bool,
        modifier: &str,
    ) -> Result<String, LexError> {
        let is_trim = matches!(op, Some('#' | '%'));
        if null_is_unset && is_trim {
            return Err(unsupported_modifier(modifier));
        }
        let (mut word, _) = self.process_until_brace(is_trim)?;

        let value = self.get_env(name);
        let null = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };

        match op {
            Some('-') => Ok(if null {
                word
            } else {
                value.unwrap_or_default()
            }),
            Some('+') => Ok(if null { String::new() } else { word }),
            Some('?') => match value {
                None => Err(lex_err(format!(
                    "{name}: {}",
                    message_or(word, "is not allowed to be unset")
                ))),
                Some(v) if null_is_unset && v.is_empty() => Err(lex_err(format!(
                    "{name}: {}",
                    message_or(word, "is not allowed to be empty")
                ))),
                Some(v) => Ok(v),
            },
            Some(trim @ ('#' | '%')) => {
                // #/% remove the shortest match, ##/%% the longest.
                let greedy = word.starts_with(trim);
                if greedy {
                    word.remove(0);
                }
                let value = value.unwrap_or_default();
                if trim == '%' {
                    trim_suffix(&word, &value, greedy)
                } else {
                    trim_prefix(&word, &value, greedy)
                }
            }
            _ => Err(unsupported_modifier(modifier)),
        }
    }

    /// `${NAME/pattern/replacement}` or `${NAME//pattern/replacement}` after the first `/`.
    fn process_replacement(&mut self, name: &str) -> Result<String, LexError> {
        let replace_all = self.scanner.peek() == Some('/');
        if replace_all {
            self.scanner.next();
        }

        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((pattern, _)) => pattern,
            Err(_) if self.scanner.peek().is_none() => {
                return Err(lex_err("syntax error: missing '/' in ${}"))
            }
            Err(e) => return Err(e),
        };
        let (replacement, _) = self.process_until_brace(true)?;

        let value = self.get_env(name).unwrap_or_default();
        let pattern_tokens = parse_pattern(&pattern).map_err(|e| invalid_pattern(&pattern, &e))?;
        let value: Vec<char> = value.chars().collect();
        let mut matcher = Matcher::new(&pattern_tokens, &value, true);
        let result = if replace_all {
            matcher.replace_all(&replacement, MAX_REPLACEMENT_RESULT)
        } else {
            Some(matcher.replace_first(&replacement))
        };
        match result {
            Some(r) if r.len() <= MAX_REPLACEMENT_RESULT => Ok(r),
            _ => Err(lex_err(format!(
                "{name}: the replacement's result is longer than {MAX_REPLACEMENT_RESULT} bytes"
            ))),
        }
    }

    /// The word up to the closing `}` of a `${…}`, with BuildKit's error when it's missing.
    fn process_until_brace(
        &mut self,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), LexError> {
        match self.process_stop_on(Some('}'), raw_escapes) {
            Err(_) if self.scanner.peek().is_none() => Err(lex_err("syntax error: missing '}'")),
            other => other,
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits (a positional
    /// parameter); or one special parameter character. Empty when none of these follows.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.scanner.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(digit) = self.scanner.peek().filter(|c| is_digit(*c)) {
                    self.scanner.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.scanner.next();
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.scanner.next();
            name.push(ch);
        }
        name
    }

    /// `<` at the scanner's position: `<<` and the white space after it stay together (a
    /// heredoc marker), a lone `<` is itself.
    fn process_possible_heredoc(&mut self) -> String {
        self.scanner.next();
        if self.scanner.peek() != Some('<') {
            return "<".to_string();
        }
        self.scanner.next();
        let mut result = String::from("<<");
        while let Some(ch) = self
            .scanner
            .peek()
            .filter(|c| matches!(c, '\t' | '\r' | ' '))
        {
            self.scanner.next();
            result.push(ch);
        }
        result
    }

    fn get_env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }
}

fn unsupported_modifier(modifier: &str) -> LexError {
    lex_err(format!("unsupported modifier ({modifier}) in substitution"))
}

fn invalid_pattern(pattern: &str, reason: &str) -> LexError {
    lex_err(format!(
        "invalid pattern ({pattern}) in substitution: {reason}"
    ))
}

fn message_or(word: String, default: &str) -> String {
    if word.is_empty() {
        default.to_string()
    } else {
        word
    }
}

/// Go's `unicode.IsLetter`, approximated (see the module notes).
fn is_letter(ch: char) -> bool {
    ch.is_alphabetic()
}

/// Go's `unicode.IsDigit`, approximated (see the module notes).
fn is_digit(ch: char) -> bool {
    ch.is_numeric()
}

/// POSIX's special parameters (`$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`, `$0`).
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// One element of a `${V#pattern}`-style pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternToken {
    /// `*`: any run of characters but a newline (Go's `.*` or `.*?`).
    Star,
    /// `?`: one character but a newline (Go's `.`).
    Any,
    Literal(char),
}

/// BuildKit's `convertShellPatternToRegex`, to tokens: `*`, `?`, and `\` escaping `*`, `?`
/// or `\`; a `\` before `}` or `/` (escaped for the `${}` syntax) is dropped. Any other
/// escape is an error with Go's text.
fn parse_pattern(pattern: &str) -> Result<Vec<PatternToken>, String> {
    let mut scanner = Scanner::new(pattern);
    let mut tokens = Vec::new();
    while let Some(ch) = scanner.next() {
        tokens.push(match ch {
            '*' => PatternToken::Star,
            '?' => PatternToken::Any,
            '\\' => {
                if matches!(scanner.peek(), Some('}' | '/')) {
                    continue;
                }
                match scanner.next() {
                    Some(escaped @ ('*' | '?' | '\\')) => PatternToken::Literal(escaped),
                    other => {
                        return Err(format!("invalid escape '\\{}'", other.unwrap_or(EOF_TEXT)))
                    }
                }
            }
            other => PatternToken::Literal(other),
        });
    }
    Ok(tokens)
}

/// Matches a pattern against a value with the preferences of Go's (leftmost-first) regular
/// expressions: a `*` tries its longest run first when greedy and its shortest otherwise,
/// and the first successful combination wins. Results per (token, position) are memoized,
/// so a match costs at most tokens × characters steps.
struct Matcher<'a> {
    tokens: &'a [PatternToken],
    text: &'a [char],
    greedy: bool,
    /// `memo[token * (len + 1) + position]`: `None` not computed yet, `Some(end)` the
    /// preferred end of matching `tokens[token..]` from `position` (`Some(None)`: no match).
    memo: Vec<Option<Option<usize>>>,
}

impl<'a> Matcher<'a> {
    fn new(tokens: &'a [PatternToken], text: &'a [char], greedy: bool) -> Matcher<'a> {
        Matcher {
            tokens,
            text,
            greedy,
            memo: vec![None; (tokens.len() + 1) * (text.len() + 1)],
        }
    }

    /// The end of the preferred match of `tokens[token..]` starting exactly at `pos`.
    fn match_from(&mut self, token: usize, pos: usize) -> Option<usize> {
        let Some(&tok) = self.tokens.get(token) else {
            return Some(pos);
        };
        let slot = token * (self.text.len() + 1) + pos;
        if let Some(known) = self.memo[slot] {
            return known;
        }
        let here = self.text.get(pos).copied();
        let end = match tok {
            PatternToken::Literal(ch) if here == Some(ch) => self.match_from(token + 1, pos + 1),
            PatternToken::Any if here.is_some_and(|c| c != '\n') => {
                self.match_from(token + 1, pos + 1)
            }
            PatternToken::Star => {
                // The longest run a `*` can take from here: up to the next newline.
                let run_end = self.text[pos..]
                    .iter()
                    .position(|c| *c == '\n')
                    .map_or(self.text.len(), |n| pos + n);
                if self.greedy {
                    (pos..=run_end)
                        .rev()
                        .find_map(|p| self.match_from(token + 1, p))
                } else {
                    (pos..=run_end).find_map(|p| self.match_from(token + 1, p))
                }
            }
            _ => None,
        };
        self.memo[slot] = Some(end);
        end
    }

    /// The leftmost match starting at or after `from`: `(start, end)`.
    fn find(&mut self, from: usize) -> Option<(usize, usize)> {
        (from..=self.text.len()).find_map(|start| self.match_from(0, start).map(|end| (start, end)))
    }

    /// Go's `Regexp.FindStringIndex` then splicing in `replacement` (taken literally).
    fn replace_first(&mut self, replacement: &str) -> String {
        let text = self.text;
        match self.find(0) {
            Some((start, end)) => {
                let mut out: String = text[..start].iter().collect();
                out.push_str(replacement);
                out.extend(&text[end..]);
                out
            }
            None => text.iter().collect(),
        }
    }

    /// Go's `Regexp.ReplaceAllString`: every non-overlapping match replaced by `template`
    /// expanded (`$0` is the match, `$$` a `$`), an empty match right after another match
    /// ignored, and the search always advancing by at least one character. `None` once the
    /// result is longer than `max` bytes.
    fn replace_all(&mut self, template: &str, max: usize) -> Option<String> {
        let text = self.text;
        let mut out = String::new();
        let mut last_match_end = 0;
        let mut search_pos = 0;
        while search_pos <= text.len() {
            let Some((start, end)) = self.find(search_pos) else {
                break;
            };
            out.extend(&text[last_match_end..start]);
            if end > last_match_end || start == 0 {
                expand_template(&mut out, template, &text[start..end]);
            }
            if out.len() > max {
                return None;
            }
            last_match_end = end;
            let width = usize::from(search_pos < text.len());
            if search_pos + width > end {
                search_pos += width;
            } else if search_pos + 1 > end {
                search_pos += 1;
            } else {
                search_pos = end;
            }
        }
        out.extend(&text[last_match_end.min(text.len())..]);
        Some(out)
    }
}

/// Go's `Regexp.expand` for a pattern without groups: `$$` is `$`, `$0` / `${0}` the match,
/// any other `$name` / `${name}` (a group that doesn't exist) nothing, and a `$` not
/// followed by a valid name itself.
fn expand_template(out: &mut String, template: &str, matched: &[char]) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match extract_group_name(rest) {
            Some((name, after)) => {
                if is_group_zero(name) {
                    out.extend(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Go's `extract`: the name after a `$` (`name` or `{name}`, letters, digits and `_`) and
/// the text after it; `None` when malformed.
fn extract_group_name(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let len = body
        .char_indices()
        .find(|(_, c)| !is_letter(*c) && !is_digit(*c) && *c != '_')
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        return after.strip_prefix('}').map(|after| (name, after));
    }
    Some((name, after))
}

/// Whether a template name refers to group 0 (the whole match): `0` only (Go rejects
/// leading zeros, so `00` is a name, and names match no group here).
fn is_group_zero(name: &str) -> bool {
    name == "0"
}

/// `${V#pattern}`: `value` without the shortest (longest when `greedy`) prefix matching
/// `pattern`.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, LexError> {
    let tokens = parse_pattern(pattern).map_err(|e| invalid_pattern(pattern, &e))?;
    let text: Vec<char> = value.chars().collect();
    let mut matcher = Matcher::new(&tokens, &text, greedy);
    Ok(match matcher.match_from(0, 0) {
        Some(end) => text[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// `${V%pattern}`: `value` without the shortest (longest when `greedy`) suffix matching
/// `pattern`, found as BuildKit does, by trimming the reversed pattern from the reversed
/// value.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, LexError> {
    let reversed = trim_prefix(&reverse_pattern(pattern), &reverse_string(value), greedy)?;
    Ok(reverse_string(&reversed))
}

/// `pattern` reversed, keeping each `\` before the character it escapes (`a\*c` → `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            out.push(chars[i + 1]);
            out.push('\\');
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out.iter().rev().collect()
}

fn reverse_string(s: &str) -> String {
    s.chars().rev().collect()
}

/// `s` quoted as Go's `%q` does (`strconv.Quote`): `"` and `\` escaped, the usual C escapes,
/// `\xNN` / `\uNNNN` / `\UNNNNNNNN` for characters that aren't printable (approximated as
/// controls, white space other than the space and the common format characters).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn is_printable(ch: char) -> bool {
    let format_char = matches!(ch,
        '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}' | '\u{180e}'
        | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffb}');
    ch == ' ' || !(ch.is_control() || ch.is_whitespace() || format_char)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Kinded;
    use std::collections::HashMap;

    /// BuildKit's `frontend/dockerfile/shell/envVarTest`, verbatim: `platform|word|expected`
    /// (`A` all, `U` Unix, `W` Windows only; `error` expects a failure).
    const ENV_VAR_TEST: &str = r##"A|hello                    |     hello
A|he'll'o                  |     hello
A|he'llo                   |     error
A|he\'llo                  |     he'llo
A|he\\'llo                 |     error
A|abc\tdef                 |     abctdef
A|"abc\tdef"               |     abc\tdef
A|"abc\\tdef"              |     abc\tdef
A|'abc\tdef'               |     abc\tdef
A|hello\                   |     hello
A|hello\\                  |     hello\
A|"hello                   |     error
A|"hello\"                 |     error
A|"hel'lo"                 |     hel'lo
A|'hello                   |     error
A|'hello\'                 |     hello\
A|'hello\there'            |     hello\there
A|'hello\\there'           |     hello\\there
A|"''"                     |     ''
A|$.                       |     $.
A|he$1x                    |     hex
A|he$.x                    |     he$.x
# Next one is different on Windows as $pwd==$PWD
U|he$pwd.                  |     he.
W|he$pwd.                  |     he/home.
A|he$PWD                   |     he/home
A|he\$PWD                  |     he$PWD
A|he\\$PWD                 |     he\/home
A|"he\$PWD"                |     he$PWD
A|"he\\$PWD"               |     he\/home
A|\${}                     |     ${}
A|\${}aaa                  |     ${}aaa
A|he\${}                   |     he${}
A|he\${}xx                 |     he${}xx
A|${}                      |     error
A|${}aaa                   |     error
A|he${}                    |     error
A|he${}xx                  |     error
A|he${hi}                  |     he
A|he${hi}xx                |     hexx
A|he${PWD}                 |     he/home
A|he${.}                   |     error
A|he${XXX:-000}xx          |     he000xx
A|he${PWD:-000}xx          |     he/homexx
A|he${XXX:-$PWD}xx         |     he/homexx
A|he${XXX:-${PWD:-yyy}}xx  |     he/homexx
A|he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
A|he${XXX:YYY}             |     error
A|he${XXX?}                |     error
A|he${XXX:?}               |     error
A|he${PWD?}                |     he/home
A|he${PWD:?}               |     he/home
A|he${NULL?}               |     he
A|he${NULL:?}              |     error
A|he${XXX:+${PWD}}xx       |     hexx
A|he${PWD:+${XXX}}xx       |     hexx
A|he${PWD:+${SHELL}}xx     |     hebashxx
A|he${XXX:+000}xx          |     hexx
A|he${PWD:+000}xx          |     he000xx
A|'he${XX}'                |     he${XX}
A|"he${PWD}"               |     he/home
A|"he'$PWD'"               |     he'/home'
A|"$PWD"                   |     /home
A|'$PWD'                   |     $PWD
A|'\$PWD'                  |     \$PWD
A|'"hello"'                |     "hello"
A|he\$PWD                  |     he$PWD
A|"he\$PWD"                |     he$PWD
A|'he\$PWD'                |     he\$PWD
A|he${PWD                  |     error
A|he${PWD:=000}xx          |     error
A|he${PWD:+${PWD}:}xx      |     he/home:xx
A|he${XXX:-\$PWD:}xx       |     he$PWD:xx
A|he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
A|안녕하세요                 |     안녕하세요
A|안'녕'하세요               |     안녕하세요
A|안'녕하세요                |     error
A|안녕\'하세요               |     안녕'하세요
A|안\\'녕하세요              |     error
A|안녕\t하세요               |     안녕t하세요
A|"안녕\t하세요"             |     안녕\t하세요
A|'안녕\t하세요              |     error
A|안녕하세요\                |     안녕하세요
A|안녕하세요\\               |     안녕하세요\
A|"안녕하세요                |     error
A|"안녕하세요\"              |     error
A|"안녕'하세요"              |     안녕'하세요
A|'안녕하세요                |     error
A|'안녕하세요\'              |     안녕하세요\
A|안녕$1x                    |     안녕x
A|안녕$.x                    |     안녕$.x
# Next one is different on Windows as $pwd==$PWD
U|안녕$pwd.                  |     안녕.
W|안녕$pwd.                  |     안녕/home.
A|안녕$PWD                   |     안녕/home
A|안녕\$PWD                  |     안녕$PWD
A|안녕\\$PWD                 |     안녕\/home
A|안녕\${}                   |     안녕${}
A|안녕\${}xx                 |     안녕${}xx
A|안녕${}                    |     error
A|안녕${}xx                  |     error
A|안녕${hi}                  |     안녕
A|안녕${hi}xx                |     안녕xx
A|안녕${PWD}                 |     안녕/home
A|안녕${.}                   |     error
A|안녕${XXX:-000}xx          |     안녕000xx
A|안녕${PWD:-000}xx          |     안녕/homexx
A|안녕${XXX:-$PWD}xx         |     안녕/homexx
A|안녕${XXX:-${PWD:-yyy}}xx  |     안녕/homexx
A|안녕${XXX:-${YYY:-yyy}}xx  |     안녕yyyxx
A|안녕${XXX:YYY}             |     error
A|안녕${XXX:+${PWD}}xx       |     안녕xx
A|안녕${PWD:+${XXX}}xx       |     안녕xx
A|안녕${PWD:+${SHELL}}xx     |     안녕bashxx
A|안녕${XXX:+000}xx          |     안녕xx
A|안녕${PWD:+000}xx          |     안녕000xx
A|'안녕${XX}'                |     안녕${XX}
A|"안녕${PWD}"               |     안녕/home
A|"안녕'$PWD'"               |     안녕'/home'
A|'"안녕"'                   |     "안녕"
A|안녕\$PWD                  |     안녕$PWD
A|"안녕\$PWD"                |     안녕$PWD
A|'안녕\$PWD'                |     안녕\$PWD
A|안녕${PWD                  |     error
A|안녕${PWD:=000}xx          |     error
A|안녕${PWD:+${PWD}:}xx      |     안녕/home:xx
A|안녕${XXX:-\$PWD:}xx       |     안녕$PWD:xx
A|안녕${XXX:-\${PWD}z}xx     |     안녕${PWDz}xx
A|$KOREAN                    |     한국어
A|안녕$KOREAN                |     안녕한국어
A|${{aaa}                   |     error
A|${aaa}}                   |     }
A|${aaa                     |     error
A|${{aaa:-bbb}              |     error
A|${aaa:-bbb}}              |     bbb}
A|${aaa:-bbb                |     error
A|${aaa:-bbb}               |     bbb
A|${aaa:-${bbb:-ccc}}       |     ccc
A|${aaa:-bbb ${foo}         |     error
A|${aaa:-bbb {foo}          |     bbb {foo
A|${:}                      |     error
A|${:-bbb}                  |     error
A|${:+bbb}                  |     error

# Positional parameters won't be set:
# http://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_01
A|$1                        |
A|${1}                      |
A|${1:+bbb}                 |
A|${1:-bbb}                 |     bbb
A|$2                        |
A|${2}                      |
A|${2:+bbb}                 |
A|${2:-bbb}                 |     bbb
A|$3                        |
A|${3}                      |
A|${3:+bbb}                 |
A|${3:-bbb}                 |     bbb
A|$4                        |
A|${4}                      |
A|${4:+bbb}                 |
A|${4:-bbb}                 |     bbb
A|$5                        |
A|${5}                      |
A|${5:+bbb}                 |
A|${5:-bbb}                 |     bbb
A|$6                        |
A|${6}                      |
A|${6:+bbb}                 |
A|${6:-bbb}                 |     bbb
A|$7                        |
A|${7}                      |
A|${7:+bbb}                 |
A|${7:-bbb}                 |     bbb
A|$8                        |
A|${8}                      |
A|${8:+bbb}                 |
A|${8:-bbb}                 |     bbb
A|$9                        |
A|${9}                      |
A|${9:+bbb}                 |
A|${9:-bbb}                 |     bbb
A|$999                      |
A|${999}                    |
A|${999:+bbb}               |
A|${999:-bbb}               |     bbb
A|$999aaa                   |     aaa
A|${999}aaa                 |     aaa
A|${999:+bbb}aaa            |     aaa
A|${999:-bbb}aaa            |     bbbaaa
A|$001                      |
A|${001}                    |
A|${001:+bbb}               |
A|${001:-bbb}               |     bbb
A|$001aaa                   |     aaa
A|${001}aaa                 |     aaa
A|${001:+bbb}aaa            |     aaa
A|${001:-bbb}aaa            |     bbbaaa

# Special parameters won't be set in the Dockerfile:
# http://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_02
A|$@                        |
A|${@}                      |
A|${@:+bbb}                 |
A|${@:-bbb}                 |     bbb
A|$@@@                      |     @@
A|$@aaa                     |     aaa
A|${@}aaa                   |     aaa
A|${@:+bbb}aaa              |     aaa
A|${@:-bbb}aaa              |     bbbaaa
A|$*                        |
A|${*}                      |
A|${*:+bbb}                 |
A|${*:-bbb}                 |     bbb
A|$#                        |
A|${#}                      |
A|${#:+bbb}                 |
A|${#:-bbb}                 |     bbb
A|$?                        |
A|${?}                      |
A|${?:+bbb}                 |
A|${?:-bbb}                 |     bbb
A|$-                        |
A|${-}                      |
A|${-:+bbb}                 |
A|${-:-bbb}                 |     bbb
A|$$                        |
A|${$}                      |
A|${$:+bbb}                 |
A|${$:-bbb}                 |     bbb
A|$!                        |
A|${!}                      |
A|${!:+bbb}                 |
A|${!:-bbb}                 |     bbb
A|$0                        |
A|${0}                      |
A|${0:+bbb}                 |
A|${0:-bbb}                 |     bbb
"##;

    /// BuildKit's `frontend/dockerfile/shell/wordsTest`, verbatim: `ENV k=v` lines add to the
    /// environment, others are `word | expected,words` (`error` expects a failure). Three
    /// lines end in significant spaces.
    const WORDS_TEST: &str = r##"hello | hello
hello${hi}bye | hellobye
ENV hi=hi
hello${hi}bye | hellohibye
ENV space=abc  def
hello${space}bye | helloabc,defbye
hello"${space}"bye | helloabc  defbye
hello "${space}"bye | hello,abc  defbye
ENV leading=  ab c
hello${leading}def | hello,ab,cdef
hello"${leading}" def | hello  ab c,def
hello"${leading}" | hello  ab c
hello${leading} | hello,ab,c
# next line MUST have 3 trailing spaces, don't erase them!
ENV trailing=ab c   
hello${trailing} | helloab,c
hello${trailing}d | helloab,c,d
hello"${trailing}"d | helloab c   d
# next line MUST have 3 trailing spaces, don't erase them!
hel"lo${trailing}" | helloab c   
hello" there  " | hello there  
hello there     | hello,there
hello\ there | hello there
hello" there | error
hello\" there | hello",there
hello"\\there" | hello\there
hello"\there" | hello\there
hello'\\there' | hello\\there
hello'\there' | hello\there
hello'$there' | hello$there
"##;

    /// BuildKit's `EnvsFromSlice`: `k=v` entries (a later one wins; `k` alone is empty).
    fn envs_from_slice(entries: &[&str]) -> HashMap<String, String> {
        let mut envs = HashMap::new();
        for entry in entries {
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            envs.insert(k.to_string(), v.to_string());
        }
        envs
    }

    fn word(input: &str, envs: &HashMap<String, String>) -> Result<String, BuilderError> {
        ShellLex::new('\\').process_word(input, &|k| envs.get(k).cloned())
    }

    fn words(input: &str, envs: &HashMap<String, String>) -> Result<Vec<String>, BuilderError> {
        ShellLex::new('\\').process_words(input, &|k| envs.get(k).cloned())
    }

    fn message(result: Result<String, BuilderError>) -> String {
        result.expect_err("expected an error").to_string()
    }

    #[test]
    fn buildkit_env_var_table() {
        let envs = envs_from_slice(&["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
        let mut checked = 0;
        let mut windows_only = 0;
        for (n, line) in ENV_VAR_TEST.lines().enumerate() {
            let line_no = n + 1;
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.trim().split('|').collect();
            assert_eq!(fields.len(), 3, "line {line_no}: {line:?}");
            let (platform, source, expected) =
                (fields[0].trim(), fields[1].trim(), fields[2].trim());
            match platform {
                "A" | "U" => {}
                // Windows compares variable names case-insensitively ($pwd is $PWD there).
                "W" => {
                    windows_only += 1;
                    continue;
                }
                other => panic!("line {line_no}: bad platform {other:?}"),
            }
            let result = word(source, &envs);
            if expected == "error" {
                assert!(
                    result.is_err(),
                    "line {line_no}: {source:?} gave {result:?}"
                );
            } else {
                assert_eq!(
                    result.as_deref(),
                    Ok(expected),
                    "line {line_no}: {source:?}"
                );
            }
            checked += 1;
        }
        assert_eq!(windows_only, 2);
        assert_eq!(checked, 228);
    }

    #[test]
    fn buildkit_words_table() {
        // The table's significant trailing spaces must have survived editing.
        assert_eq!(
            WORDS_TEST.lines().filter(|l| l.ends_with("   ")).count(),
            2,
            "wordsTest lost its trailing spaces"
        );
        let mut env_entries: Vec<String> = Vec::new();
        let mut checked = 0;
        for (n, line) in WORDS_TEST.lines().enumerate() {
            let line_no = n + 1;
            if line.starts_with('#') {
                continue;
            }
            if let Some(entry) = line.strip_prefix("ENV ") {
                env_entries.push(entry.trim_start_matches(' ').to_string());
                continue;
            }
            let fields: Vec<&str> = line.split('|').collect();
            assert_eq!(fields.len(), 2, "line {line_no}: {line:?}");
            let test = fields[0].trim();
            let expected: Vec<&str> = fields[1].trim_start_matches(' ').split(',').collect();
            let entries: Vec<&str> = env_entries.iter().map(String::as_str).collect();
            let envs = envs_from_slice(&entries);
            let result = words(test, &envs).unwrap_or_else(|_| vec!["error".to_string()]);
            assert_eq!(result, expected, "line {line_no}: {test:?}");
            checked += 1;
        }
        assert_eq!(checked, 24);
    }

    #[test]
    fn mandatory_env_vars() {
        let set = envs_from_slice(&["VAR=plain", "ARG=x"]);
        let empty = envs_from_slice(&["VAR=", "ARG=x"]);
        let unset = envs_from_slice(&["ARG=x"]);
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";

        assert_eq!(word(no_empty, &set).as_deref(), Ok("plain"));
        assert_eq!(
            message(word(no_empty, &empty)),
            "failed to process \"${VAR:?message here$ARG}\": VAR: message herex"
        );
        assert!(message(word(no_empty, &unset)).ends_with("VAR: message herex"));

        assert_eq!(word(no_unset, &set).as_deref(), Ok("plain"));
        assert_eq!(word(no_unset, &empty).as_deref(), Ok(""));
        assert!(message(word(no_unset, &unset)).ends_with("VAR: message herex"));

        let none = HashMap::new();
        assert!(message(word("${X?}", &none)).ends_with(": X: is not allowed to be unset"));
        assert!(message(word("${NULL:?}", &envs_from_slice(&["NULL="])))
            .ends_with(": NULL: is not allowed to be empty"));
    }

    /// BuildKit's `TestProcessWithMatches` cases (without the matched-names bookkeeping,
    /// which this port doesn't offer): `(input, env, Some(expected) | None for an error)`.
    #[test]
    fn process_with_matches_cases() {
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("x", &["DUMMY=dummy"], Some("x")),
            ("x ${UNUSED}", &["DUMMY=dummy"], Some("x ")),
            ("x ${FOO}", &["FOO=y"], Some("x y")),
            (
                "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
                &["FOO=xxx", "BAR="],
                Some("xxx  ccc"),
            ),
            (
                "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
                &["FOO=xxx", "BAR="],
                Some("xxx bbb ccc"),
            ),
            ("${FOO:-}", &["FOO=xxx", "BAR="], Some("xxx")),
            ("${FOO:-}", &[], Some("")),
            (
                "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
                &["FOO=xxx", "BAR="],
                Some("aaa bbb "),
            ),
            (
                "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
                &["FOO=xxx", "BAR="],
                Some("aaa  "),
            ),
            ("${FOO?aaa}", &["FOO=xxx", "BAR="], Some("xxx")),
            ("${BAR?bbb}", &["FOO=xxx", "BAR="], Some("")),
            ("${BAZ?ccc}", &["FOO=xxx", "BAR="], None),
            ("${FOO:?aaa}", &["FOO=xxx", "BAR="], Some("xxx")),
            ("${BAR:?bbb}", &["FOO=xxx", "BAR="], None),
            ("${BAZ:?ccc}", &["FOO=xxx", "BAR="], None),
            ("${BAZ:?}", &["FOO=xxx", "BAR="], None),
            ("${FOO=aaa}", &["FOO=xxx", "BAR="], None),
            ("${FOO=:aaa}", &["FOO=xxx", "BAR="], None),
            ("${FOO=}", &[], None),
            (
                r"${FOO#()[]{\}^$.\*\?|\\}",
                &[r"FOO=()[]{}^$.*?|\x"],
                Some("x"),
            ),
            (r"${FOO%%\**}", &["FOO=xx**"], Some("xx")),
            ("${FOO#*x*y}", &["FOO=xxyy"], Some("y")),
            ("${FOO#*}", &["FOO=xxyy"], Some("xxyy")),
            ("${FOO#$BAR}", &["FOO=xxyy", "BAR=x"], Some("xyy")),
            ("${FOO#$BAR}", &["FOO=xxyy", "BAR="], Some("xxyy")),
            ("${FOO#}", &["FOO=xxyy"], Some("xxyy")),
            ("${FOO##*x}", &["FOO=xxyy"], Some("yy")),
            ("${FOO##}", &["FOO=xxyy"], Some("xxyy")),
            (r"${FOO#?\?}", &["FOO=???y"], Some("?y")),
            ("${ABC:-.}${FOO%x}${ABC:-.}", &["FOO=xxyy"], Some(".xxyy.")),
            (r"${FOO%%\**\*}", &["FOO=a***yy*"], Some("a")),
            ("${FOO%}", &["FOO=xxyy"], Some("xxyy")),
            ("${FOO%%$BAR}", &["FOO=xxyy", "BAR="], Some("xxyy")),
            ("${FOO:#}", &[], None),
            ("${FOO:##}", &[], None),
            ("${FOO:%}", &[], None),
            ("${FOO:%%}", &[], None),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &["FOO=/foo*/*/*.txt", r"NEEDLE=\*/"],
                Some("/foo.*/*.txt - /foo..*.txt"),
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &["FOO=/tmp/tmp/bar.txt", "NEEDLE=/tmp"],
                Some("/tmp/bar.txt - /bar.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &["FOO=/a/foo/b/c.txt", "NEEDLE=/?/", "REPLACEMENT=/"],
                Some("/foo/b/c.txt - /foo/c.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    "FOO=http://google.de",
                    "NEEDLE=http://",
                    "REPLACEMENT=https://",
                ],
                Some("https://google.de"),
            ),
            (
                r"${FOO//\//\/}",
                &["FOO=/tmp/foo.txt"],
                Some(r"\/tmp\/foo.txt"),
            ),
            ("${FOO/$BAR/ww}", &["FOO=xxyy", "BAR="], Some("wwxxyy")),
            ("${FOO//ww}", &["FOO=xxyy"], None),
            ("${FOO//}", &["FOO=xxyy"], None),
            ("${FOO///}", &["FOO=xxyy"], Some("xxyy")),
            ("${FOO///}", &[], Some("")),
        ];
        for (input, env, expected) in cases {
            let result = word(input, &envs_from_slice(env));
            match expected {
                Some(expected) => assert_eq!(result.as_deref(), Ok(*expected), "{input:?}"),
                None => assert!(result.is_err(), "{input:?} gave {result:?}"),
            }
        }
    }

    #[test]
    fn process_with_matches_platform() {
        let release = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let env = [
            "VERSION=v1.2.3",
            "TARGETOS=linux",
            "TARGETARCH=arm",
            "TARGETVARIANT=v7",
        ];
        assert_eq!(
            word(release, &envs_from_slice(&env)).as_deref(),
            Ok("something-v1.2.3.linux-arm-v7.tar.gz")
        );
        let env = [
            "VERSION=v1.2.3",
            "TARGETOS=linux",
            "TARGETARCH=arm64",
            "TARGETVARIANT=",
        ];
        assert_eq!(
            word(release, &envs_from_slice(&env)).as_deref(),
            Ok("something-v1.2.3.linux-arm64.tar.gz")
        );
        let env = ["VERSION=v1.2.3", "TARGETOS=linux", "TARGETARCH=arm64"];
        assert_eq!(
            word(release, &envs_from_slice(&env)).as_deref(),
            Ok("something-v1.2.3.linux-arm64.tar.gz")
        );
    }

    /// BuildKit's `TestConvertShellPatternToRegex`, on the tokens instead of a regex text.
    #[test]
    fn pattern_parsing() {
        use PatternToken::{Any, Literal, Star};
        assert_eq!(parse_pattern("*"), Ok(vec![Star]));
        assert_eq!(parse_pattern("?"), Ok(vec![Any]));
        assert_eq!(parse_pattern(r"\*"), Ok(vec![Literal('*')]));
        let literals: Vec<PatternToken> = r"(()[]{}^$.*?|\".chars().map(Literal).collect();
        assert_eq!(parse_pattern(r"(()[]{\}^$.\*\?|\\"), Ok(literals));
        assert_eq!(
            parse_pattern(r"a\/b"),
            Ok("a/b".chars().map(Literal).collect())
        );
        for invalid in [r"\", r"\x", r"\\\"] {
            assert!(parse_pattern(invalid).is_err(), "{invalid:?}");
        }
        assert_eq!(
            parse_pattern(r"\x"),
            Err(r"invalid escape '\x'".to_string())
        );
    }

    #[test]
    fn reversing() {
        assert_eq!(reverse_string("54321"), "12345");
        assert_eq!(reverse_string("🖖🚀👽"), "👽🚀🖖");
        for (pattern, expected) in [
            (r"a\*c", r"c\*a"),
            (r"\\\ab", r"b\a\\"),
            (r"ab\", r"\ba"),
            (r"👽\🚀🖖", r"🖖\🚀👽"),
            (r"\\b", r"b\\"),
        ] {
            assert_eq!(reverse_pattern(pattern), expected, "{pattern:?}");
        }
    }

    /// Error texts are BuildKit's, wrapped with the word as Go's `%q` prints it.
    #[test]
    fn error_texts() {
        let none = HashMap::new();
        let cases = [
            (
                "he'llo",
                "unexpected end of statement while looking for matching single-quote",
            ),
            (
                "\"hello",
                "unexpected end of statement while looking for matching double-quote",
            ),
            ("${}", "syntax error: bad substitution"),
            ("${:-x}", "syntax error: bad substitution"),
            ("${", "syntax error: missing '}'"),
            ("${aaa:-bbb", "syntax error: missing '}'"),
            ("${aaa", "unsupported modifier (\u{FFFD}) in substitution"),
            ("${X:=y}", "unsupported modifier (:=) in substitution"),
            ("${X=y}", "unsupported modifier (=) in substitution"),
            ("${X:#y}", "unsupported modifier (:#) in substitution"),
            ("${X/a}", "syntax error: missing '/' in ${}"),
            ("${X/a/b", "syntax error: missing '}'"),
            // The quote's own error gives way to the missing `}` at the end.
            ("${X:-'a}", "syntax error: missing '}'"),
            ("${X:-'a'", "syntax error: missing '}'"),
            (
                "${X:-'a'}'",
                "unexpected end of statement while looking for matching single-quote",
            ),
            (
                r"${X#\x}",
                r"invalid pattern (\x) in substitution: invalid escape '\x'",
            ),
            (r"${X/a\/b}", "syntax error: missing '/' in ${}"),
        ];
        for (input, reason) in cases {
            let err = word(input, &none).expect_err(input);
            assert_eq!(err.kind(), crate::errors::ErrorKind::InvalidParameter);
            assert_eq!(
                err.to_string(),
                format!("failed to process {}: {reason}", go_quote(input)),
                "{input:?}"
            );
        }
        assert_eq!(
            message(word("\"a\\\tb", &none)),
            "failed to process \"\\\"a\\\\\\tb\": unexpected end of statement while looking for matching double-quote"
        );
        assert_eq!(go_quote("a\u{a0}b\u{1}"), "\"a\\u00a0b\\x01\"");
    }

    #[test]
    fn nested_replacements_are_bounded() {
        let lex = ShellLex::new('\\');
        let envs = envs_from_slice(&["B=b e t a"]);
        let env = |k: &str| envs.get(k).cloned();
        // An empty pattern matches at each of the 8 positions: every level multiplies by 8.
        let mut word = "x".to_string();
        for _ in 0..3 {
            word = format!("${{B///{word}}}");
        }
        assert_eq!(
            lex.process_word(&word, &env).map(|w| w.len()),
            Ok(7 + 8 * (7 + 8 * 15))
        );
        for _ in 0..6 {
            word = format!("${{B///{word}}}");
        }
        let start = std::time::Instant::now();
        let e = lex.process_word(&word, &env).unwrap_err();
        assert!(e.to_string().contains("longer than 1048576 bytes"), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // A word repeating a long value, bare or quoted.
        let big = "v".repeat(300_000);
        let env = |k: &str| (k == "V").then(|| big.clone());
        assert_eq!(
            lex.process_word("$V$V$V", &env).map(|w| w.len()),
            Ok(900_000)
        );
        for word in ["$V$V$V$V", "\"$V$V$V$V\"", "a${V}b${V}c${V}d${V}"] {
            let e = lex.process_word(word, &env).unwrap_err();
            assert!(e.to_string().contains("longer than 1048576 bytes"), "{e}");
        }
    }

    #[test]
    fn backtick_escape() {
        let lex = ShellLex::new('`');
        let envs = envs_from_slice(&["V=val"]);
        let env = |k: &str| envs.get(k).cloned();
        assert_eq!(
            lex.process_word(r"C:\dir\$V", &env).as_deref(),
            Ok(r"C:\dir\val")
        );
        assert_eq!(lex.process_word("a`$V", &env).as_deref(), Ok("a$V"));
        assert_eq!(lex.process_word("\"a`\"b\"", &env).as_deref(), Ok("a\"b"));
        assert_eq!(lex.process_word("\"a`b\"", &env).as_deref(), Ok("a`b"));
        assert_eq!(
            lex.process_words("a` b c", &env),
            Ok(vec!["a b".to_string(), "c".to_string()])
        );
    }

    #[test]
    fn patterns_and_replacement() {
        let envs = envs_from_slice(&[
            "P=/usr/local/lib/file.tar.gz",
            "ML=ab\nab",
            "DOLLAR=x${0}y",
            "NAMED=x$0y$$",
        ]);
        let cases = [
            ("${P#*/}", "usr/local/lib/file.tar.gz"),
            ("${P##*/}", "file.tar.gz"),
            ("${P%.*}", "/usr/local/lib/file.tar"),
            ("${P%%.*}", "/usr/local/lib/file"),
            ("${P%/*}", "/usr/local/lib"),
            ("${P/l?b/LIB}", "/usr/local/LIB/file.tar.gz"),
            ("${P//l*/X}", "/usr/X"),
            ("${P//o/0}", "/usr/l0cal/lib/file.tar.gz"),
            ("${P/#/X}", "/usr/local/lib/file.tar.gz"),
            ("${P/nomatch/X}", "/usr/local/lib/file.tar.gz"),
            // `*` and `?` don't cross a newline (Go's `.`).
            ("${ML#*b}", "\nab"),
            ("${ML##*b}", "\nab"),
            ("${ML/b?a/X}", "ab\nab"),
            // Replace-all expands Go's `$0` (the match) in the replacement; replace-first
            // takes it literally.
            ("${P//lib/[$DOLLAR]}", "/usr/local/[xliby]/file.tar.gz"),
            ("${P/lib/[$DOLLAR]}", "/usr/local/[x${0}y]/file.tar.gz"),
            // `$0y` names a group `0y`, which doesn't exist; `$$` is `$`.
            ("${P//lib/[$NAMED]}", "/usr/local/[x$]/file.tar.gz"),
            // Empty matches between characters.
            ("${ML//*/-}", "-\n-"),
        ];
        for (input, expected) in cases {
            assert_eq!(word(input, &envs).as_deref(), Ok(expected), "{input:?}");
        }
        let abc = envs_from_slice(&["V=abc"]);
        assert_eq!(word("${V//x*/-}", &abc).as_deref(), Ok("abc"));
        assert_eq!(word("${V//?*/-}", &abc).as_deref(), Ok("-"));
    }

    #[test]
    fn words_splitting() {
        let envs = envs_from_slice(&["X=1 2", "E="]);
        let cases: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("  a  ", &["a"]),
            ("a${X}b", &["a1", "2b"]),
            ("\"a${X}b\"", &["a1 2b"]),
            ("'a b' c", &["a b", "c"]),
            ("\"\" a", &["a"]),
            ("$E a", &["a"]),
            ("a${E:-b c}d", &["ab", "cd"]),
            // A default's value is split like any expansion, quoted or not (as BuildKit).
            ("a${E:-\"b c\"}d", &["ab", "cd"]),
            ("<< EOF x", &["<< EOF", "x"]),
            ("a<b", &["a<b"]),
            ("", &[]),
        ];
        for (input, expected) in cases {
            let expected: Vec<String> = expected.iter().map(|w| w.to_string()).collect();
            assert_eq!(words(input, &envs), Ok(expected), "{input:?}");
        }
        assert_eq!(word("  a  b  ", &envs).as_deref(), Ok("  a  b  "));
    }
}
