//! The on-disk json-file format, shared by the writer (supervisor) and the reader (berthd):
//! encoding an entry byte for byte as dockerd, parsing one back, the names of rotated files
//! and finding the last complete lines of a file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use crate::logger::{format_rfc3339_nano, Stream};

/// Block size for scanning files backwards (tail).
const SCAN_BLOCK: usize = 64 * 1024;

/// Append one entry (with its trailing newline) to `buf`, byte for byte as dockerd's
/// `jsonlog.JSONLogs.MarshalJSONBuf` does (an empty `line` omits `"log"`). `attrs` is the
/// entry's attributes as [`crate::logger::attrs::encode`] gives them (empty for none).
pub fn encode_entry(
    buf: &mut Vec<u8>,
    line: &[u8],
    stream: Stream,
    attrs: &[u8],
    time: SystemTime,
) {
    buf.push(b'{');
    if !line.is_empty() {
        buf.extend_from_slice(b"\"log\":");
        write_json_string(buf, line, false);
        buf.push(b',');
    }
    buf.extend_from_slice(b"\"stream\":\"");
    buf.extend_from_slice(stream.as_str().as_bytes());
    buf.push(b'"');
    if !attrs.is_empty() {
        buf.extend_from_slice(b",\"attrs\":");
        buf.extend_from_slice(attrs);
    }
    buf.extend_from_slice(b",\"time\":\"");
    buf.extend_from_slice(format_rfc3339_nano(time).as_bytes());
    buf.extend_from_slice(b"\"}\n");
}

/// A JSON string as dockerd's `ffjsonWriteJSONBytesAsString`: `"`, `\` escaped; `\n`, `\r`
/// short; other control characters and `<`, `>`, `&` as `\u00XX`; U+2028/U+2029 escaped;
/// each byte that does not start a valid UTF-8 sequence becomes `\ufffd`. With `short_tab`, a
/// tab is `\t`: Go's `encoding/json`, which writes the same for a valid UTF-8 string otherwise
/// (the attributes, [`crate::logger::attrs::encode`]).
pub(in crate::logger) fn write_json_string(buf: &mut Vec<u8>, s: &[u8], short_tab: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b < 0x80 {
            if b >= 0x20 && !matches!(b, b'\\' | b'"' | b'<' | b'>' | b'&') {
                i += 1;
                continue;
            }
            buf.extend_from_slice(&s[start..i]);
            match b {
                b'\\' | b'"' => {
                    buf.push(b'\\');
                    buf.push(b);
                }
                b'\n' => buf.extend_from_slice(b"\\n"),
                b'\r' => buf.extend_from_slice(b"\\r"),
                b'\t' if short_tab => buf.extend_from_slice(b"\\t"),
                _ => {
                    buf.extend_from_slice(b"\\u00");
                    buf.push(HEX[usize::from(b >> 4)]);
                    buf.push(HEX[usize::from(b & 0xf)]);
                }
            }
            i += 1;
            start = i;
            continue;
        }
        match decode_utf8(&s[i..]) {
            None => {
                buf.extend_from_slice(&s[start..i]);
                buf.extend_from_slice(b"\\ufffd");
                i += 1;
                start = i;
            }
            Some((c, size)) if c == '\u{2028}' || c == '\u{2029}' => {
                buf.extend_from_slice(&s[start..i]);
                buf.extend_from_slice(b"\\u202");
                buf.push(HEX[(c as usize) & 0xf]);
                i += size;
                start = i;
            }
            Some((_, size)) => i += size,
        }
    }
    buf.extend_from_slice(&s[start..]);
    buf.push(b'"');
}

/// One non-ASCII UTF-8 character at the start of `s`, as Go's `utf8.DecodeRune` accepts it.
fn decode_utf8(s: &[u8]) -> Option<(char, usize)> {
    let width = match s.first()? {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let c = std::str::from_utf8(s.get(..width)?).ok()?.chars().next()?;
    Some((c, width))
}

/// One log entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    pub time: SystemTime,
    /// The output bytes (a complete line ends with `\n`; a partial piece does not).
    pub line: Vec<u8>,
    /// The entry's attributes (`labels`, `env`, `tag` log options); empty when it has none.
    pub attrs: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    log: String,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    attrs: BTreeMap<String, String>,
    time: String,
}

/// Parse one line of the file; `None` for anything that is not a complete entry.
pub(super) fn parse_line(line: &[u8]) -> Option<LogEntry> {
    let raw: RawEntry = serde_json::from_slice(line).ok()?;
    let stream = match raw.stream.as_str() {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    Some(LogEntry {
        stream,
        time: parse_time(&raw.time)?,
        line: raw.log.into_bytes(),
        attrs: raw.attrs,
    })
}

pub(super) fn parse_time(s: &str) -> Option<SystemTime> {
    let fmt = time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(s, &fmt)
        .ok()
        .map(SystemTime::from)
}

/// The gzip header extra of a compressed rotated file, as dockerd writes it:
/// `{"lastTime": ...}`, the time of its last entry.
pub(super) fn gz_extra(last_time: Option<SystemTime>) -> Vec<u8> {
    let last = last_time.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), format_rfc3339_nano);
    serde_json::json!({ "lastTime": last })
        .to_string()
        .into_bytes()
}

/// The time in a header extra written by [`gz_extra`], if it parses.
pub(super) fn gz_last_time(extra: &[u8]) -> Option<SystemTime> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "lastTime")]
        last_time: String,
    }
    let meta = serde_json::from_slice::<Meta>(extra).ok()?;
    parse_time(&meta.last_time)
}

/// `path.N` + `ext`.
pub(super) fn rotated_path(path: &Path, n: u32, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}{ext}"));
    PathBuf::from(s)
}

/// A `Read` over `[pos, end)` of a file, by offset (the file's own position is not used).
pub(super) struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> RangeReader<'a> {
    pub(super) fn new(file: &'a File, pos: u64, end: u64) -> Self {
        RangeReader { file, pos, end }
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

/// Where the last `n` complete lines of `[0, end)` start.
pub(super) struct TailScan {
    pub(super) start: u64,
    /// Just after the last newline (0 if none).
    pub(super) complete_end: u64,
}

pub(super) fn tail_scan(file: &File, end: u64, n: usize) -> io::Result<TailScan> {
    let mut buf = vec![0u8; SCAN_BLOCK];
    let mut pos = end;
    let mut found = 0usize;
    let mut complete_end = 0u64;
    while pos > 0 {
        let len = (SCAN_BLOCK as u64).min(pos) as usize;
        let off = pos - len as u64;
        match file.read_exact_at(&mut buf[..len], off) {
            Ok(()) => {}
            // Truncated meanwhile: nothing complete to offer.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(TailScan {
                    start: 0,
                    complete_end: 0,
                })
            }
            Err(e) => return Err(e),
        }
        for j in (0..len).rev() {
            if buf[j] != b'\n' {
                continue;
            }
            let at = off + j as u64 + 1;
            found += 1;
            if found == 1 {
                complete_end = at;
            }
            if found == n + 1 {
                return Ok(TailScan {
                    start: at,
                    complete_end,
                });
            }
        }
        pos = off;
    }
    Ok(TailScan {
        start: 0,
        complete_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logger::jsonfile::testutil::*;

    #[test]
    fn entry_json_is_dockers() {
        assert_eq!(
            entry(b"hi\n", Stream::Stdout, t(0, 123_456_789)),
            "{\"log\":\"hi\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:05.123456789Z\"}\n"
        );
        assert_eq!(
            entry(b"x", Stream::Stderr, t(0, 500_000_000)),
            "{\"log\":\"x\",\"stream\":\"stderr\",\"time\":\"2024-01-02T03:04:05.5Z\"}\n"
        );
        let mut raw = b"<a&b>\"q\"\\\t\r\x01\x7f".to_vec();
        raw.extend_from_slice("é\u{2028}\u{2029}😀".as_bytes());
        raw.extend_from_slice(&[0xff, b'z', 0xf0, 0x9f, 0x98, b'\n']);
        assert_eq!(
            entry(&raw, Stream::Stdout, t(0, 0)),
            "{\"log\":\"\\u003ca\\u0026b\\u003e\\\"q\\\"\\\\\\u0009\\r\\u0001\u{7f}é\\u2028\\u2029😀\\ufffdz\\ufffd\\ufffd\\ufffd\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:05Z\"}\n"
        );
        // Surrogates and overlong forms are invalid in Go too.
        assert_eq!(
            entry(&[0xed, 0xa0, 0x80, 0xc0, 0xaf], Stream::Stdout, t(0, 0)),
            "{\"log\":\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\",\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:05Z\"}\n"
        );
        // An empty line (never produced by the writer) omits "log", as dockerd.
        assert_eq!(
            entry(b"", Stream::Stdout, t(0, 0)),
            "{\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:05Z\"}\n"
        );
        // Attributes sit between the stream and the time, and read back.
        let mut buf = Vec::new();
        encode_entry(&mut buf, b"a\n", Stream::Stdout, b"{\"k\":\"v\"}", t(0, 0));
        assert_eq!(
            String::from_utf8(buf.clone()).unwrap(),
            "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"attrs\":{\"k\":\"v\"},\"time\":\"2024-01-02T03:04:05Z\"}\n"
        );
        let back = parse_line(&buf).unwrap();
        assert_eq!(back.attrs.get("k").map(String::as_str), Some("v"));
        assert!(
            parse_line(entry(b"a\n", Stream::Stdout, t(0, 0)).as_bytes())
                .unwrap()
                .attrs
                .is_empty()
        );
        // What we write parses back to the same bytes (modulo U+FFFD replacement).
        let back = parse_line(entry(&raw, Stream::Stdout, t(1, 2)).as_bytes()).unwrap();
        assert_eq!(back.time, t(1, 2));
        assert_eq!(back.stream, Stream::Stdout);
        assert!(back.line.starts_with(b"<a&b>\"q\"\\\t\r\x01\x7f"));
    }
}
