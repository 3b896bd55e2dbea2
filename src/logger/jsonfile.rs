//! The json-file log format, as dockerd writes and reads it.
//!
//! One JSON object per line: `{"log":"hi\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`.
//! Rotation follows dockerd's `loggerutils.LogFile`: before an entry is written, a current file
//! that has reached `max-size` is renamed to `path.1` (older ones shift to `path.2` … and the
//! oldest beyond `max-file` is removed), and writing goes on in a new `path`; with `max-file`
//! 1 the current file is unlinked instead. With `compress`, every rotated file becomes
//! `path.N.gz`, whose gzip header carries `{"lastTime": ...}` (the time of its last entry).
//!
//! The writer lives in the supervisor (single-threaded, plain std I/O); readers are in berthd,
//! another process, so they cannot share dockerd's in-process locks. Instead a reader opens
//! the current file, then the rotated ones (ascending: files only move up), skips files it
//! already holds (same device and inode) and starts over if the current file was rotated
//! meanwhile. A follower keeps the current file open and, once the name points to a new file,
//! finishes the old one before opening the new one.
//!
//! Divergence from dockerd: compression of the just-rotated file happens synchronously in
//! the writer (dockerd uses a goroutine), at gzip's fast level.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use serde::Deserialize;

use super::{format_rfc3339_nano, Driver, LogConfig, Stream};

/// dockerd's copier buffer: a line longer than this is logged in pieces of exactly this size
/// (partial entries, without a trailing newline).
pub const BUF_SIZE: usize = 16 * 1024;

const FILE_MODE: u32 = 0o640;

/// Block size for scanning files backwards (tail).
const SCAN_BLOCK: usize = 64 * 1024;

/// Attempts at a consistent snapshot of the files when rotations keep racing the reader.
const SNAPSHOT_ATTEMPTS: usize = 8;

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Append one entry (with its trailing newline) to `buf`, byte for byte as dockerd's
/// `jsonlog.JSONLogs.MarshalJSONBuf` does (an empty `line` omits `"log"`).
pub fn encode_entry(buf: &mut Vec<u8>, line: &[u8], stream: Stream, time: SystemTime) {
    buf.push(b'{');
    if !line.is_empty() {
        buf.extend_from_slice(b"\"log\":");
        write_json_string(buf, line);
        buf.push(b',');
    }
    buf.extend_from_slice(b"\"stream\":\"");
    buf.extend_from_slice(stream.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"time\":\"");
    buf.extend_from_slice(format_rfc3339_nano(time).as_bytes());
    buf.extend_from_slice(b"\"}\n");
}

/// A JSON string as dockerd's `ffjsonWriteJSONBytesAsString`: `"`, `\` escaped; `\n`, `\r`
/// short; other control characters and `<`, `>`, `&` as `\u00XX`; U+2028/U+2029 escaped;
/// each byte that does not start a valid UTF-8 sequence becomes `\ufffd`.
fn write_json_string(buf: &mut Vec<u8>, s: &[u8]) {
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

// ---------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------

/// Writes a container's output to its log file, rotating it as configured.
pub struct Writer {
    /// `None` for the `none` driver: everything is discarded.
    sink: Option<Sink>,
    /// The incomplete line of each stream (stdout, stderr).
    pending: [Pending; 2],
}

#[derive(Default)]
struct Pending {
    data: Vec<u8>,
    /// The time of the first piece of a line logged in pieces; its other pieces share it.
    partial_ts: Option<SystemTime>,
}

struct Sink {
    path: PathBuf,
    max_size: Option<u64>,
    max_file: u32,
    compress: bool,
    file: Option<File>,
    size: u64,
    last_time: Option<SystemTime>,
    buf: Vec<u8>,
}

impl Writer {
    /// Open (append to, or create with mode 0640) the log at `path`.
    pub fn open(path: &Path, cfg: &LogConfig) -> io::Result<Writer> {
        let sink = if cfg.driver == Driver::None {
            None
        } else {
            let file = open_append(path)?;
            let size = file.metadata()?.len();
            let last_time = last_entry_time(&file, size);
            Some(Sink {
                path: path.to_path_buf(),
                max_size: cfg.max_size,
                max_file: cfg.max_file.max(1),
                compress: cfg.compress,
                file: Some(file),
                size,
                last_time,
                buf: Vec::with_capacity(256),
            })
        };
        Ok(Writer {
            sink,
            pending: Default::default(),
        })
    }

    /// Log raw output of one stream: one entry per line (its `log` ends with the newline).
    /// An incomplete line waits for the rest, or is logged in pieces of [`BUF_SIZE`] bytes
    /// (without newline) once it reaches that size. A failure to write one entry does not stop
    /// the others; the first failure is returned.
    pub fn write(&mut self, stream: Stream, data: &[u8], now: SystemTime) -> io::Result<()> {
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        let pending = &mut self.pending[stream.index()];
        let mut first_err = None;
        let mut note = |r: io::Result<()>| {
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        };
        let mut rest = data;
        loop {
            let newline = rest.iter().position(|&b| b == b'\n');
            let seg_len = newline.unwrap_or(rest.len());
            let mut seg = &rest[..seg_len];
            while pending.data.len() + seg.len() >= BUF_SIZE {
                let take = BUF_SIZE - pending.data.len();
                let ts = *pending.partial_ts.get_or_insert(now);
                if pending.data.is_empty() {
                    note(sink.emit(stream, &seg[..take], ts));
                } else {
                    pending.data.extend_from_slice(&seg[..take]);
                    note(sink.emit(stream, &pending.data, ts));
                    pending.data.clear();
                }
                seg = &seg[take..];
            }
            let Some(nl) = newline else {
                pending.data.extend_from_slice(seg);
                break;
            };
            let ts = pending.partial_ts.take().unwrap_or(now);
            if pending.data.is_empty() {
                // `seg` and its newline are contiguous at the end of rest[..=nl].
                note(sink.emit(stream, &rest[nl - seg.len()..=nl], ts));
            } else {
                pending.data.extend_from_slice(seg);
                pending.data.push(b'\n');
                note(sink.emit(stream, &pending.data, ts));
                pending.data.clear();
            }
            rest = &rest[nl + 1..];
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Log the incomplete lines now, as partial entries (no trailing newline): at the end of
    /// the output, as dockerd does at EOF.
    pub fn flush(&mut self, now: SystemTime) -> io::Result<()> {
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        let mut first_err = None;
        for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            let pending = &mut self.pending[i];
            if pending.data.is_empty() {
                continue;
            }
            let ts = *pending.partial_ts.get_or_insert(now);
            if let Err(e) = sink.emit(stream, &pending.data, ts) {
                first_err.get_or_insert(e);
            }
            pending.data.clear();
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Sink {
    /// Encode and append one entry, rotating first if the current file is full.
    fn emit(&mut self, stream: Stream, line: &[u8], ts: SystemTime) -> io::Result<()> {
        self.buf.clear();
        encode_entry(&mut self.buf, line, stream, ts);
        if let Some(max) = self.max_size {
            if self.size >= max && self.size > 0 {
                self.rotate()?;
            }
        }
        let file = match self.file.as_mut() {
            Some(f) => f,
            None => {
                let f = open_append(&self.path)?;
                self.size = f.metadata()?.len();
                self.file.insert(f)
            }
        };
        match file.write_all(&self.buf) {
            Ok(()) => {
                self.size += self.buf.len() as u64;
                self.last_time = Some(ts);
                Ok(())
            }
            Err(e) => {
                if let Ok(m) = file.metadata() {
                    self.size = m.len();
                }
                Err(e)
            }
        }
    }

    /// dockerd's rotation. Failures to move old files are logged, not returned (as dockerd);
    /// only a failure to open the new current file is an error.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let path = self.path.clone();
        if self.max_file < 2 {
            // Readers may still be reading the current file: unlink it rather than truncate.
            if let Err(e) = fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), "error unlinking current log file: {e}");
                }
            }
        } else if let Err(e) = self.shift_rotated() {
            tracing::warn!(path = %path.display(), "error rotating log file, log data may have been lost: {e}");
        } else if let Err(e) = fs::rename(&path, rotated_path(&path, 1, "")) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), "error renaming current log file: {e}");
            }
        }
        let file = open_append(&path)?;
        // In case the rotation did not work out: start afresh anyway.
        file.set_len(0)?;
        self.file = Some(file);
        self.size = 0;
        if self.compress && self.max_file >= 2 {
            let rotated = rotated_path(&path, 1, "");
            if let Err(e) = compress_file(&rotated, self.last_time) {
                tracing::warn!(path = %rotated.display(), "error compressing log file after rotation: {e}");
            }
        }
        Ok(())
    }

    /// Remove the oldest rotated file and move `path.N` to `path.N+1`.
    fn shift_rotated(&self) -> io::Result<()> {
        let ext = if self.compress { ".gz" } else { "" };
        let last = rotated_path(&self.path, self.max_file - 1, ext);
        match fs::remove_file(&last) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("error removing oldest log file: {e}"),
                ))
            }
            _ => {}
        }
        for i in (2..self.max_file).rev() {
            let from = rotated_path(&self.path, i - 1, ext);
            let to = rotated_path(&self.path, i, ext);
            match fs::rename(&from, &to) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Opened for reading too: [`Writer::open`] reads the time of the last entry.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(path)
}

/// `path.N` + `ext`.
fn rotated_path(path: &Path, n: u32, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}{ext}"));
    PathBuf::from(s)
}

/// Gzip `src` to `src.gz` (header extra `{"lastTime": ...}` as dockerd), then remove `src`.
/// Readers try `src` before `src.gz`, so they always find a complete copy.
fn compress_file(src: &Path, last_time: Option<SystemTime>) -> io::Result<()> {
    let mut input = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut gz_name = src.as_os_str().to_owned();
    gz_name.push(".gz");
    let gz_path = PathBuf::from(gz_name);
    let result = (|| {
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&gz_path)?;
        let last =
            last_time.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), format_rfc3339_nano);
        let extra = serde_json::json!({ "lastTime": last }).to_string();
        let mut enc = GzBuilder::new()
            .extra(extra.into_bytes())
            .write(out, Compression::fast());
        io::copy(&mut input, &mut enc)?;
        enc.finish()?;
        Ok(())
    })();
    match result {
        Ok(()) => fs::remove_file(src),
        Err(e) => {
            let _ = fs::remove_file(&gz_path);
            Err(e)
        }
    }
}

/// The time of the last complete entry of a file of `len` bytes, if any.
fn last_entry_time(file: &File, len: u64) -> Option<SystemTime> {
    let scan = tail_scan(file, len, 1).ok()?;
    let mut line = Vec::new();
    RangeReader::new(file, scan.start, scan.complete_end)
        .read_to_end(&mut line)
        .ok()?;
    parse_line(&line).map(|e| e.time)
}

// ---------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------

/// One log entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    pub time: SystemTime,
    /// The output bytes (a complete line ends with `\n`; a partial piece does not).
    pub line: Vec<u8>,
}

/// What `GET /containers/{id}/logs` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    pub stdout: bool,
    pub stderr: bool,
    /// Entries at or after this time (once one qualifies, later ones are not checked: dockerd).
    pub since: Option<SystemTime>,
    /// Entries at or before this time; reading stops at the first later one (dockerd).
    pub until: Option<SystemTime>,
    /// The last N entries, counted as dockerd does: over both streams, before `since`,
    /// `until` and the stream selection apply. `None` = all; `Some(0)` = none.
    pub tail: Option<usize>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            stdout: true,
            stderr: true,
            since: None,
            until: None,
            tail: None,
        }
    }
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    log: String,
    #[serde(default)]
    stream: String,
    time: String,
}

/// Parse one line of the file; `None` for anything that is not a complete entry.
fn parse_line(line: &[u8]) -> Option<LogEntry> {
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
    })
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let fmt = time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(s, &fmt)
        .ok()
        .map(SystemTime::from)
}

/// dockerd's forwarder (since/until) followed by the stream selection of the API.
#[derive(Debug, Clone)]
struct Filter {
    stdout: bool,
    stderr: bool,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
}

enum Step {
    Skip,
    Take,
    Stop,
}

impl Filter {
    fn new(opts: &ReadOptions) -> Filter {
        Filter {
            stdout: opts.stdout,
            stderr: opts.stderr,
            since: opts.since,
            until: opts.until,
        }
    }

    fn step(&mut self, e: &LogEntry) -> Step {
        if let Some(since) = self.since {
            if e.time < since {
                return Step::Skip;
            }
            // Timestamps may not be monotonic: once one entry qualifies, all later ones do.
            self.since = None;
        }
        if self.until.is_some_and(|until| e.time > until) {
            return Step::Stop;
        }
        let wanted = match e.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        if wanted {
            Step::Take
        } else {
            Step::Skip
        }
    }

    /// Parse and filter one line into `out`; false once reading must stop.
    fn feed(&mut self, line: &[u8], out: &mut Vec<LogEntry>) -> bool {
        let Some(entry) = parse_line(line) else {
            return true;
        };
        match self.step(&entry) {
            Step::Skip => true,
            Step::Take => {
                out.push(entry);
                true
            }
            Step::Stop => false,
        }
    }
}

/// A `Read` over `[pos, end)` of a file, by offset (the file's own position is not used).
struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> RangeReader<'a> {
    fn new(file: &'a File, pos: u64, end: u64) -> Self {
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

/// Call `f` with each complete (newline-terminated) line until it returns false. Returns the
/// number of bytes of the complete lines passed to `f` (an incomplete last line is not).
fn for_each_line<R: BufRead>(mut reader: R, mut f: impl FnMut(&[u8]) -> bool) -> io::Result<u64> {
    let mut line = Vec::new();
    let mut consumed = 0u64;
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(consumed);
        }
        consumed += n as u64;
        if !f(&line) {
            return Ok(consumed);
        }
    }
}

/// Where the last `n` complete lines of `[0, end)` start.
struct TailScan {
    start: u64,
    /// Just after the last newline (0 if none).
    complete_end: u64,
}

fn tail_scan(file: &File, end: u64, n: usize) -> io::Result<TailScan> {
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

/// The current log file as a reader found it.
struct Current {
    file: File,
    id: (u64, u64),
    /// Its size when opened: what a read returns ends here; a follower goes on from there.
    end: u64,
}

enum Rotated {
    Plain(File, u64),
    Gz(File),
}

fn file_id(m: &Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

/// Open the current file and the rotated ones (newest first), consistently.
fn open_snapshot(path: &Path) -> io::Result<(Option<Current>, Vec<Rotated>)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = match File::open(path) {
            Ok(file) => {
                let m = file.metadata()?;
                Some(Current {
                    id: file_id(&m),
                    end: m.len(),
                    file,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut seen = HashSet::new();
        if let Some(c) = &current {
            seen.insert(c.id);
        }
        let rotated = open_rotated(path, &mut seen)?;
        let now = match fs::metadata(path) {
            Ok(m) => Some(file_id(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if now == current.as_ref().map(|c| c.id) || attempt >= SNAPSHOT_ATTEMPTS {
            return Ok((current, rotated));
        }
    }
}

/// Open `path.1`, `path.2`, … (each plain if present, else `.gz`), skipping files in `seen`.
fn open_rotated(path: &Path, seen: &mut HashSet<(u64, u64)>) -> io::Result<Vec<Rotated>> {
    let max = max_rotated_index(path)?;
    let mut out = Vec::new();
    let mut i = 1u32;
    loop {
        let mut present = false;
        match File::open(rotated_path(path, i, "")) {
            Ok(f) => {
                present = true;
                let m = f.metadata()?;
                if seen.insert(file_id(&m)) {
                    out.push(Rotated::Plain(f, m.len()));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match File::open(rotated_path(path, i, ".gz")) {
                    Ok(f) => {
                        present = true;
                        let m = f.metadata()?;
                        if seen.insert(file_id(&m)) {
                            out.push(Rotated::Gz(f));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        // Files only move up while we look: go on past the listed maximum while they exist.
        if i >= max && !present {
            return Ok(out);
        }
        i = i.saturating_add(1);
        if i == u32::MAX {
            return Ok(out);
        }
    }
}

/// The highest N of `path.N` / `path.N.gz` in the directory (0 if none).
fn max_rotated_index(path: &Path) -> io::Result<u32> {
    let Some(name) = path.file_name() else {
        return Ok(0);
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let prefix = name.as_bytes();
    let mut max = 0;
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .as_bytes()
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(b"."))
        else {
            continue;
        };
        let digits = rest.strip_suffix(b".gz").unwrap_or(rest);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            continue;
        }
        if let Some(n) = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u32>().ok())
        {
            max = max.max(n);
        }
    }
    Ok(max)
}

/// Whether a compressed file's header says all its entries are before `since`.
fn gz_before(dec: &GzDecoder<&File>, since: Option<SystemTime>) -> bool {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "lastTime")]
        last_time: String,
    }
    let Some(since) = since else {
        return false;
    };
    let Some(extra) = dec.header().and_then(|h| h.extra()) else {
        return false;
    };
    let Ok(meta) = serde_json::from_slice::<Meta>(extra) else {
        return false;
    };
    parse_time(&meta.last_time).is_some_and(|t| t > UNIX_EPOCH && t < since)
}

/// Feed the lines of a compressed file; a corrupt file ends early (logged, as dockerd).
fn gz_lines(file: &File, since: Option<SystemTime>, f: impl FnMut(&[u8]) -> bool) {
    let dec = GzDecoder::new(file);
    if gz_before(&dec, since) {
        return;
    }
    if let Err(e) = for_each_line(BufReader::new(dec), f) {
        tracing::warn!("error decoding compressed log file: {e}");
    }
}

/// All matching entries across the rotated files and the current one, oldest first.
pub fn read(path: &Path, opts: &ReadOptions) -> io::Result<Vec<LogEntry>> {
    read_and_follow(path, opts).map(|(entries, _)| entries)
}

/// [`read`], and a [`Follower`] that returns the entries written after those.
pub fn read_and_follow(path: &Path, opts: &ReadOptions) -> io::Result<(Vec<LogEntry>, Follower)> {
    let (current, rotated) = open_snapshot(path)?;
    let mut filter = Filter::new(opts);
    let mut out = Vec::new();
    let mut go_on = true;
    let mut follow_offset = 0u64;
    match opts.tail {
        Some(0) => {
            if let Some(c) = &current {
                follow_offset = tail_scan(&c.file, c.end, 0)?.complete_end;
            }
        }
        Some(n) => {
            // Newest source first, each holding its last lines oldest first.
            let mut sources: Vec<Vec<Vec<u8>>> = Vec::new();
            let mut need = n;
            if let Some(c) = &current {
                let scan = tail_scan(&c.file, c.end, need)?;
                follow_offset = scan.complete_end;
                let lines = collect_lines(&c.file, scan.start, scan.complete_end)?;
                need = need.saturating_sub(lines.len());
                sources.push(lines);
            }
            for r in &rotated {
                if need == 0 {
                    break;
                }
                let lines = match r {
                    Rotated::Plain(f, len) => {
                        let scan = tail_scan(f, *len, need)?;
                        collect_lines(f, scan.start, scan.complete_end)?
                    }
                    Rotated::Gz(f) => {
                        let mut ring: VecDeque<Vec<u8>> = VecDeque::new();
                        gz_lines(f, opts.since, |l| {
                            if ring.len() == need {
                                ring.pop_front();
                            }
                            ring.push_back(l.to_vec());
                            true
                        });
                        ring.into()
                    }
                };
                need = need.saturating_sub(lines.len());
                sources.push(lines);
            }
            'outer: for lines in sources.iter().rev() {
                for line in lines {
                    if !filter.feed(line, &mut out) {
                        go_on = false;
                        break 'outer;
                    }
                }
            }
        }
        None => {
            for r in rotated.iter().rev() {
                if !go_on {
                    break;
                }
                let feed = |l: &[u8]| {
                    go_on = filter.feed(l, &mut out);
                    go_on
                };
                match r {
                    Rotated::Plain(f, len) => {
                        for_each_line(BufReader::new(RangeReader::new(f, 0, *len)), feed)?;
                    }
                    Rotated::Gz(f) => gz_lines(f, opts.since, feed),
                }
            }
            if let Some(c) = &current {
                if go_on {
                    follow_offset =
                        for_each_line(BufReader::new(RangeReader::new(&c.file, 0, c.end)), |l| {
                            go_on = filter.feed(l, &mut out);
                            go_on
                        })?;
                }
            }
        }
    }
    let follower = Follower {
        path: path.to_path_buf(),
        file: current.map(|c| (c.file, c.id)),
        offset: follow_offset,
        filter,
        done: !go_on,
    };
    Ok((out, follower))
}

fn collect_lines(file: &File, start: u64, end: u64) -> io::Result<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    for_each_line(BufReader::new(RangeReader::new(file, start, end)), |l| {
        lines.push(l.to_vec());
        true
    })?;
    Ok(lines)
}

/// Follows a log after [`read_and_follow`]: each [`poll`](Follower::poll) returns the complete
/// entries written since, through rotations and truncations of the file. The same filters
/// apply (`until` ends the following: see [`finished`](Follower::finished)). Poll often: a
/// file rotated in and out again between two polls is skipped, as dockerd does when a
/// follower misses rotations.
pub struct Follower {
    path: PathBuf,
    /// The file being followed and its identity.
    file: Option<(File, (u64, u64))>,
    /// Where the next entry starts.
    offset: u64,
    filter: Filter,
    done: bool,
}

impl Follower {
    /// New complete entries since the last call (possibly none).
    pub fn poll(&mut self) -> io::Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        if self.done {
            return Ok(out);
        }
        // Look at the name before reading: if it already names another file, the old one was
        // complete before this read began.
        let named = match fs::metadata(&self.path) {
            Ok(m) => Some(file_id(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let followed = self.file.as_ref().map(|(_, id)| *id);
        if followed.is_some() {
            self.read_new(&mut out)?;
        }
        if self.done || named.is_none() || named == followed {
            return Ok(out);
        }
        // Rotated (or not there before): go on with the file the name points to now.
        match File::open(&self.path) {
            Ok(file) => {
                let id = file_id(&file.metadata()?);
                self.file = Some((file, id));
                self.offset = 0;
                self.read_new(&mut out)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(out)
    }

    /// True once an entry after `until` was seen: nothing more will be returned.
    pub fn finished(&self) -> bool {
        self.done
    }

    fn read_new(&mut self, out: &mut Vec<LogEntry>) -> io::Result<()> {
        let Some((file, _)) = self.file.as_ref() else {
            return Ok(());
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            // Truncated in place: start again from the top.
            self.offset = 0;
        }
        if len == self.offset {
            return Ok(());
        }
        let filter = &mut self.filter;
        let mut go_on = true;
        let consumed = for_each_line(
            BufReader::new(RangeReader::new(file, self.offset, len)),
            |l| {
                go_on = filter.feed(l, out);
                go_on
            },
        )?;
        self.offset += consumed;
        if !go_on {
            self.done = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(1_704_164_645 + secs, nanos)
    }

    fn json_cfg() -> LogConfig {
        LogConfig::default()
    }

    fn rot_cfg(max_size: u64, max_file: u32, compress: bool) -> LogConfig {
        LogConfig {
            driver: Driver::JsonFile,
            max_size: Some(max_size),
            max_file,
            compress,
        }
    }

    fn entry(line: &[u8], stream: Stream, time: SystemTime) -> String {
        let mut buf = Vec::new();
        encode_entry(&mut buf, line, stream, time);
        String::from_utf8(buf).unwrap()
    }

    fn lines_of(entries: &[LogEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8(e.line.clone()).unwrap())
            .collect()
    }

    fn all(path: &Path) -> Vec<LogEntry> {
        read(path, &ReadOptions::default()).unwrap()
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

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
        // What we write parses back to the same bytes (modulo U+FFFD replacement).
        let back = parse_line(entry(&raw, Stream::Stdout, t(1, 2)).as_bytes()).unwrap();
        assert_eq!(back.time, t(1, 2));
        assert_eq!(back.stream, Stream::Stdout);
        assert!(back.line.starts_with(b"<a&b>\"q\"\\\t\r\x01\x7f"));
    }

    #[test]
    fn writer_splits_lines_and_keeps_partials() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, &json_cfg()).unwrap();
        w.write(Stream::Stdout, b"ab", t(1, 0)).unwrap();
        w.write(Stream::Stderr, b"err1\nerr", t(2, 0)).unwrap();
        w.write(Stream::Stdout, b"c\nd\n\ne", t(3, 0)).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            [
                entry(b"err1\n", Stream::Stderr, t(2, 0)),
                entry(b"abc\n", Stream::Stdout, t(3, 0)),
                entry(b"d\n", Stream::Stdout, t(3, 0)),
                entry(b"\n", Stream::Stdout, t(3, 0)),
            ]
            .concat()
        );
        w.flush(t(4, 0)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(
            &[
                entry(b"e", Stream::Stdout, t(4, 0)),
                entry(b"err", Stream::Stderr, t(4, 0)),
            ]
            .concat()
        ));
        // Nothing left to flush.
        w.flush(t(5, 0)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        let mode = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    }

    #[test]
    fn long_lines_are_logged_in_16k_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, &json_cfg()).unwrap();
        let long = vec![b'a'; BUF_SIZE * 2 + 10];
        // Arrives in odd chunks; all pieces take the time of the first piece logged.
        w.write(Stream::Stdout, &long[..100], t(1, 0)).unwrap();
        w.write(Stream::Stdout, &long[100..20_000], t(2, 0))
            .unwrap();
        w.write(Stream::Stdout, &long[20_000..], t(3, 0)).unwrap();
        w.write(Stream::Stdout, b"\nnext\n", t(4, 0)).unwrap();
        // Exactly 16 KiB then a newline: a full piece, then the newline alone.
        let exact = vec![b'b'; BUF_SIZE];
        w.write(Stream::Stdout, &exact, t(5, 0)).unwrap();
        w.write(Stream::Stdout, b"\n", t(6, 0)).unwrap();
        // One byte less fits in one entry.
        let mut fits = vec![b'c'; BUF_SIZE - 1];
        fits.push(b'\n');
        w.write(Stream::Stdout, &fits, t(7, 0)).unwrap();

        let got = all(&path);
        let want: Vec<(Vec<u8>, SystemTime)> = vec![
            (vec![b'a'; BUF_SIZE], t(2, 0)),
            (vec![b'a'; BUF_SIZE], t(2, 0)),
            ([vec![b'a'; 10], b"\n".to_vec()].concat(), t(2, 0)),
            (b"next\n".to_vec(), t(4, 0)),
            (vec![b'b'; BUF_SIZE], t(5, 0)),
            (b"\n".to_vec(), t(5, 0)),
            (fits.clone(), t(7, 0)),
        ];
        let got: Vec<(Vec<u8>, SystemTime)> = got.into_iter().map(|e| (e.line, e.time)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn none_driver_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let cfg = LogConfig {
            driver: Driver::None,
            ..LogConfig::default()
        };
        let mut w = Writer::open(&path, &cfg).unwrap();
        w.write(Stream::Stdout, b"hello\n", t(0, 0)).unwrap();
        w.flush(t(0, 0)).unwrap();
        assert!(!path.exists());
        assert!(all(&path).is_empty());
    }

    /// Entries whose number is a multiple of 3 go to stderr.
    fn stream_of(i: usize) -> Stream {
        if i % 3 == 0 {
            Stream::Stderr
        } else {
            Stream::Stdout
        }
    }

    fn write_numbered(w: &mut Writer, from: usize, to: usize) {
        for i in from..to {
            w.write(
                stream_of(i),
                format!("line {i}\n").as_bytes(),
                t(i as u64, 0),
            )
            .unwrap();
        }
    }

    fn numbers(entries: &[LogEntry]) -> Vec<usize> {
        lines_of(entries)
            .iter()
            .map(|l| l.trim_end().trim_start_matches("line ").parse().unwrap())
            .collect()
    }

    #[test]
    fn rotation_keeps_max_file_files_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let one = entry(b"line 10\n", Stream::Stdout, t(10, 0)).len() as u64;
        // Four entries per file: rotation once a file has reached 3.5 entries' size.
        let mut w = Writer::open(&path, &rot_cfg(one * 7 / 2, 3, false)).unwrap();
        write_numbered(&mut w, 10, 50);
        assert_eq!(
            files_in(dir.path()),
            ["c-json.log", "c-json.log.1", "c-json.log.2"]
        );
        let got = numbers(&all(&path));
        assert_eq!(got, (38..50).collect::<Vec<_>>());
        // Files reach max-size, then take one more entry (dockerd's rule).
        assert_eq!(
            fs::metadata(rotated_path(&path, 1, "")).unwrap().len(),
            one * 4
        );

        // With room for every file, nothing is lost.
        let path2 = dir.path().join("d-json.log");
        let mut w = Writer::open(&path2, &rot_cfg(one * 7 / 2, 100, false)).unwrap();
        write_numbered(&mut w, 10, 50);
        assert_eq!(numbers(&all(&path2)), (10..50).collect::<Vec<_>>());

        // Reopening (a restarted container) appends and rotates on.
        let mut w = Writer::open(&path, &rot_cfg(one * 7 / 2, 3, false)).unwrap();
        write_numbered(&mut w, 50, 52);
        assert_eq!(numbers(&all(&path)), (42..52).collect::<Vec<_>>());
    }

    #[test]
    fn max_file_one_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let one = entry(b"line 10\n", Stream::Stdout, t(10, 0)).len() as u64;
        let mut w = Writer::open(&path, &rot_cfg(one * 2, 1, false)).unwrap();
        write_numbered(&mut w, 10, 15);
        assert_eq!(files_in(dir.path()), ["c-json.log"]);
        assert_eq!(numbers(&all(&path)), vec![14]);
    }

    #[test]
    fn compressed_rotation_is_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let one = entry(b"line 10\n", Stream::Stdout, t(10, 0)).len() as u64;
        let mut w = Writer::open(&path, &rot_cfg(one * 2, 4, true)).unwrap();
        write_numbered(&mut w, 10, 30);
        assert_eq!(
            files_in(dir.path()),
            [
                "c-json.log",
                "c-json.log.1.gz",
                "c-json.log.2.gz",
                "c-json.log.3.gz"
            ]
        );
        // A plain gzip stream, with dockerd's header.
        let gz = File::open(rotated_path(&path, 1, ".gz")).unwrap();
        let mut dec = GzDecoder::new(&gz);
        let extra = dec.header().unwrap().extra().unwrap().to_vec();
        assert_eq!(
            String::from_utf8(extra).unwrap(),
            format!("{{\"lastTime\":\"{}\"}}", format_rfc3339_nano(t(27, 0)))
        );
        let mut text = String::new();
        dec.read_to_string(&mut text).unwrap();
        assert_eq!(
            text,
            [
                entry(b"line 26\n", Stream::Stdout, t(26, 0)),
                entry(b"line 27\n", stream_of(27), t(27, 0)),
            ]
            .concat()
        );
        assert_eq!(numbers(&all(&path)), (22..30).collect::<Vec<_>>());
        // Tail reaches into compressed files; since skips files by their header.
        let opts = ReadOptions {
            tail: Some(5),
            ..ReadOptions::default()
        };
        assert_eq!(
            numbers(&read(&path, &opts).unwrap()),
            (25..30).collect::<Vec<_>>()
        );
        let opts = ReadOptions {
            since: Some(t(25, 0)),
            ..ReadOptions::default()
        };
        assert_eq!(
            numbers(&read(&path, &opts).unwrap()),
            (25..30).collect::<Vec<_>>()
        );
    }

    #[test]
    fn read_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, &json_cfg()).unwrap();
        write_numbered(&mut w, 0, 10); // stderr: 0, 3, 6, 9
        let read_with = |o: ReadOptions| numbers(&read(&path, &o).unwrap());
        let d = ReadOptions::default;
        assert_eq!(read_with(d()), (0..10).collect::<Vec<_>>());
        assert_eq!(
            read_with(ReadOptions {
                stdout: false,
                ..d()
            }),
            vec![0, 3, 6, 9]
        );
        assert_eq!(
            read_with(ReadOptions {
                stderr: false,
                ..d()
            }),
            vec![1, 2, 4, 5, 7, 8]
        );
        // since is inclusive, until is inclusive.
        assert_eq!(
            read_with(ReadOptions {
                since: Some(t(4, 0)),
                until: Some(t(6, 0)),
                ..d()
            }),
            vec![4, 5, 6]
        );
        assert_eq!(
            read_with(ReadOptions {
                since: Some(t(4, 1)),
                ..d()
            }),
            (5..10).collect::<Vec<_>>()
        );
        // tail counts both streams before the stream selection (dockerd).
        assert_eq!(
            read_with(ReadOptions {
                tail: Some(3),
                ..d()
            }),
            vec![7, 8, 9]
        );
        assert_eq!(
            read_with(ReadOptions {
                tail: Some(3),
                stderr: false,
                ..d()
            }),
            vec![7, 8]
        );
        assert_eq!(
            read_with(ReadOptions {
                tail: Some(3),
                since: Some(t(8, 0)),
                ..d()
            }),
            vec![8, 9]
        );
        assert_eq!(
            read_with(ReadOptions {
                tail: Some(0),
                ..d()
            }),
            Vec::<usize>::new()
        );
        assert_eq!(
            read_with(ReadOptions {
                tail: Some(100),
                ..d()
            }),
            (0..10).collect::<Vec<_>>()
        );
        // A missing log reads as empty.
        assert!(all(&dir.path().join("nope.log")).is_empty());
    }

    #[test]
    fn half_written_last_line_waits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = Writer::open(&path, &json_cfg()).unwrap();
        write_numbered(&mut w, 0, 2);
        let next = entry(b"line 2\n", Stream::Stdout, t(2, 0));
        let (head, tail) = next.as_bytes().split_at(20);
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(head).unwrap();
        assert_eq!(numbers(&all(&path)), vec![0, 1]);
        let tail_opts = ReadOptions {
            tail: Some(1),
            ..ReadOptions::default()
        };
        assert_eq!(numbers(&read(&path, &tail_opts).unwrap()), vec![1]);
        let (got, mut f) = read_and_follow(&path, &ReadOptions::default()).unwrap();
        assert_eq!(numbers(&got), vec![0, 1]);
        assert!(f.poll().unwrap().is_empty());
        raw.write_all(tail).unwrap();
        assert_eq!(numbers(&f.poll().unwrap()), vec![2]);
        assert!(f.poll().unwrap().is_empty());
        // A corrupt line in the middle is skipped.
        raw.write_all(b"{not json\n").unwrap();
        write_numbered(&mut w, 3, 4);
        assert_eq!(numbers(&f.poll().unwrap()), vec![3]);
        assert_eq!(numbers(&all(&path)), vec![0, 1, 2, 3]);
    }

    #[test]
    fn follow_across_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let one = entry(b"line 10\n", Stream::Stdout, t(10, 0)).len() as u64;
        let mut w = Writer::open(&path, &rot_cfg(one * 2, 3, false)).unwrap();
        write_numbered(&mut w, 10, 13);
        let (got, mut f) = read_and_follow(&path, &ReadOptions::default()).unwrap();
        assert_eq!(numbers(&got), vec![10, 11, 12]);
        assert!(f.poll().unwrap().is_empty());
        // 13 lands in the old file, which then rotates; 14 in the new one.
        write_numbered(&mut w, 13, 15);
        assert_eq!(numbers(&f.poll().unwrap()), vec![13, 14]);
        write_numbered(&mut w, 15, 17);
        assert_eq!(numbers(&f.poll().unwrap()), vec![15, 16]);
        // Two rotations between polls: the intermediate file's entries are missed (dockerd
        // warns of the same), but nothing is duplicated and the order holds.
        write_numbered(&mut w, 17, 21);
        assert_eq!(numbers(&f.poll().unwrap()), vec![17, 20]);

        // Truncated in place (e.g. `truncate -s 0`): start again from the top.
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert!(f.poll().unwrap().is_empty());
        let mut w2 = Writer::open(&path, &json_cfg()).unwrap();
        write_numbered(&mut w2, 30, 32);
        assert_eq!(numbers(&f.poll().unwrap()), vec![30, 31]);

        // max-file 1: the file is replaced; the follower moves on to the new one.
        let path2 = dir.path().join("e-json.log");
        let mut w = Writer::open(&path2, &rot_cfg(one, 1, false)).unwrap();
        write_numbered(&mut w, 10, 11);
        let (got, mut f) = read_and_follow(&path2, &ReadOptions::default()).unwrap();
        assert_eq!(numbers(&got), vec![10]);
        write_numbered(&mut w, 11, 12);
        assert_eq!(numbers(&f.poll().unwrap()), vec![11]);
        assert_eq!(numbers(&all(&path2)), vec![11]);
    }

    #[test]
    fn follow_with_compression_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let one = entry(b"line 10\n", Stream::Stdout, t(10, 0)).len() as u64;
        let opts = ReadOptions {
            stderr: false,
            until: Some(t(16, 0)),
            ..ReadOptions::default()
        };
        // Before the container starts, the log may not exist yet.
        let (got, mut f) = read_and_follow(&path, &opts).unwrap();
        assert!(got.is_empty());
        assert!(f.poll().unwrap().is_empty());
        let mut w = Writer::open(&path, &rot_cfg(one, 3, true)).unwrap();
        let mut seen = Vec::new();
        let mut finished_at = None;
        for i in 10..20 {
            write_numbered(&mut w, i, i + 1);
            seen.extend(numbers(&f.poll().unwrap()));
            if f.finished() && finished_at.is_none() {
                finished_at = Some(i);
            }
        }
        assert_eq!(seen, vec![10, 11, 13, 14, 16]);
        assert_eq!(finished_at, Some(17));
        assert!(f.poll().unwrap().is_empty());
        assert_eq!(
            files_in(dir.path()),
            ["c-json.log", "c-json.log.1.gz", "c-json.log.2.gz"]
        );
        assert_eq!(numbers(&all(&path)), vec![17, 18, 19]);
    }

    #[test]
    fn tail_scan_counts_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let mut body = Vec::new();
        for i in 0..10_000 {
            body.extend_from_slice(format!("{i}\n").as_bytes());
        }
        body.extend_from_slice(b"partial");
        fs::write(&path, &body).unwrap();
        let f = File::open(&path).unwrap();
        let len = body.len() as u64;
        let s = tail_scan(&f, len, 3).unwrap();
        let lines = collect_lines(&f, s.start, s.complete_end).unwrap();
        assert_eq!(
            lines,
            vec![b"9997\n".to_vec(), b"9998\n".to_vec(), b"9999\n".to_vec()]
        );
        assert_eq!(s.complete_end, len - 7);
        let s = tail_scan(&f, len, 20_000).unwrap();
        assert_eq!(s.start, 0);
        assert_eq!(
            collect_lines(&f, s.start, s.complete_end).unwrap().len(),
            10_000
        );
        let s = tail_scan(&f, len, 0).unwrap();
        assert_eq!((s.start, s.complete_end), (len - 7, len - 7));
    }

    #[test]
    fn writer_remembers_last_time_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let one = entry(b"line 10\n", Stream::Stdout, t(10, 0)).len() as u64;
        let mut w = Writer::open(&path, &rot_cfg(one, 2, true)).unwrap();
        write_numbered(&mut w, 10, 11);
        drop(w);
        let mut w = Writer::open(&path, &rot_cfg(one, 2, true)).unwrap();
        write_numbered(&mut w, 11, 12);
        let gz = File::open(rotated_path(&path, 1, ".gz")).unwrap();
        let dec = GzDecoder::new(&gz);
        let extra = dec.header().unwrap().extra().unwrap().to_vec();
        assert!(String::from_utf8(extra)
            .unwrap()
            .contains(&format_rfc3339_nano(t(10, 0))));
    }
}
