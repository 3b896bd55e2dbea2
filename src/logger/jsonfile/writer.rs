//! The json-file writer, on the supervisor side: splits a container's output into entries,
//! appends them to the current file and rotates (and compresses) files as configured.
//! Single-threaded, plain std I/O.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use flate2::{Compression, GzBuilder};

use super::format::{encode_entry, gz_extra, parse_line, rotated_path, tail_scan, RangeReader};
use crate::logger::{Driver, LogConfig, Stream};

/// dockerd's copier buffer: a line longer than this is logged in pieces of exactly this size
/// (partial entries, without a trailing newline).
pub const BUF_SIZE: usize = 16 * 1024;

const FILE_MODE: u32 = 0o640;

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
    /// The attributes every entry carries, encoded; empty for none.
    attrs: Vec<u8>,
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
                attrs: Vec::new(),
                buf: Vec::with_capacity(256),
            })
        };
        Ok(Writer {
            sink,
            pending: Default::default(),
        })
    }

    /// Record `attrs` with every entry from now on (json-file's `attrs`); none when empty.
    pub fn with_attrs(mut self, attrs: &BTreeMap<String, String>) -> Writer {
        if let Some(sink) = self.sink.as_mut() {
            sink.attrs = crate::logger::attrs::encode(attrs);
        }
        self
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
        encode_entry(&mut self.buf, line, stream, &self.attrs, ts);
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
        let mut enc = GzBuilder::new()
            .extra(gz_extra(last_time))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logger::format_rfc3339_nano;
    use crate::logger::jsonfile::testutil::*;
    use crate::logger::jsonfile::{read, ReadOptions};
    use flate2::read::GzDecoder;
    use std::os::unix::fs::MetadataExt;

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
