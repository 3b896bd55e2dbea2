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

mod format;
mod reader;
mod writer;

pub(in crate::logger) use format::write_json_string;
pub use format::{encode_entry, LogEntry};
pub use reader::{read, read_and_follow, Follower, ReadOptions};
pub use writer::{Writer, BUF_SIZE};

/// Helpers shared by the tests of the writer and the reader.
#[cfg(test)]
mod testutil {
    use std::fs;
    use std::path::Path;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::format::encode_entry;
    use super::reader::{read, ReadOptions};
    use super::writer::Writer;
    use super::LogEntry;
    use crate::logger::{Driver, LogConfig, Stream};

    pub(super) fn t(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(1_704_164_645 + secs, nanos)
    }

    pub(super) fn json_cfg() -> LogConfig {
        LogConfig::default()
    }

    pub(super) fn rot_cfg(max_size: u64, max_file: u32, compress: bool) -> LogConfig {
        LogConfig {
            driver: Driver::JsonFile,
            max_size: Some(max_size),
            max_file,
            compress,
        }
    }

    pub(super) fn entry(line: &[u8], stream: Stream, time: SystemTime) -> String {
        let mut buf = Vec::new();
        encode_entry(&mut buf, line, stream, &[], time);
        String::from_utf8(buf).unwrap()
    }

    pub(super) fn lines_of(entries: &[LogEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8(e.line.clone()).unwrap())
            .collect()
    }

    pub(super) fn all(path: &Path) -> Vec<LogEntry> {
        read(path, &ReadOptions::default()).unwrap()
    }

    pub(super) fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Entries whose number is a multiple of 3 go to stderr.
    pub(super) fn stream_of(i: usize) -> Stream {
        if i.is_multiple_of(3) {
            Stream::Stderr
        } else {
            Stream::Stdout
        }
    }

    pub(super) fn write_numbered(w: &mut Writer, from: usize, to: usize) {
        for i in from..to {
            w.write(
                stream_of(i),
                format!("line {i}\n").as_bytes(),
                t(i as u64, 0),
            )
            .unwrap();
        }
    }

    pub(super) fn numbers(entries: &[LogEntry]) -> Vec<usize> {
        lines_of(entries)
            .iter()
            .map(|l| l.trim_end().trim_start_matches("line ").parse().unwrap())
            .collect()
    }
}
