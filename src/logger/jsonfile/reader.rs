//! The json-file reader, on the berthd side: reading the rotated files and the current one
//! (`docker logs`, with `tail`, `since`, `until` and the stream selection), and following the
//! current file through rotations and truncations (`--follow`).

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, Metadata};
use std::io::{self, BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::read::GzDecoder;

use super::format::{gz_last_time, parse_line, rotated_path, tail_scan, LogEntry, RangeReader};
use crate::logger::Stream;

/// Attempts at a consistent snapshot of the files when rotations keep racing the reader.
const SNAPSHOT_ATTEMPTS: usize = 8;

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

/// [`for_each_line`] over `[start, end)` of a file.
fn lines_in(file: &File, start: u64, end: u64, f: impl FnMut(&[u8]) -> bool) -> io::Result<u64> {
    for_each_line(BufReader::new(RangeReader::new(file, start, end)), f)
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

/// `path` opened for reading; `None` if there is no such file.
fn open_existing(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The identity of the file `path` names now; `None` if there is none.
fn named_id(path: &Path) -> io::Result<Option<(u64, u64)>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(file_id(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Open the current file and the rotated ones (newest first), consistently.
fn open_snapshot(path: &Path) -> io::Result<(Option<Current>, Vec<Rotated>)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = match open_existing(path)? {
            Some(file) => {
                let m = file.metadata()?;
                Some(Current {
                    id: file_id(&m),
                    end: m.len(),
                    file,
                })
            }
            None => None,
        };
        let mut seen = HashSet::new();
        if let Some(c) = &current {
            seen.insert(c.id);
        }
        let rotated = open_rotated(path, &mut seen)?;
        let now = named_id(path)?;
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
        let found = match open_existing(&rotated_path(path, i, ""))? {
            Some(f) => Some((f, false)),
            None => open_existing(&rotated_path(path, i, ".gz"))?.map(|f| (f, true)),
        };
        let present = found.is_some();
        if let Some((f, gz)) = found {
            let m = f.metadata()?;
            if seen.insert(file_id(&m)) {
                out.push(if gz {
                    Rotated::Gz(f)
                } else {
                    Rotated::Plain(f, m.len())
                });
            }
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
    let Some(since) = since else {
        return false;
    };
    let Some(extra) = dec.header().and_then(|h| h.extra()) else {
        return false;
    };
    gz_last_time(extra).is_some_and(|t| t > UNIX_EPOCH && t < since)
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
                        lines_in(f, 0, *len, feed)?;
                    }
                    Rotated::Gz(f) => gz_lines(f, opts.since, feed),
                }
            }
            if let Some(c) = &current {
                if go_on {
                    follow_offset = lines_in(&c.file, 0, c.end, |l| {
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
    lines_in(file, start, end, |l| {
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
        let named = named_id(&self.path)?;
        let followed = self.file.as_ref().map(|(_, id)| *id);
        if followed.is_some() {
            self.read_new(&mut out)?;
        }
        if self.done || named.is_none() || named == followed {
            return Ok(out);
        }
        // Rotated (or not there before): go on with the file the name points to now.
        if let Some(file) = open_existing(&self.path)? {
            let id = file_id(&file.metadata()?);
            self.file = Some((file, id));
            self.offset = 0;
            self.read_new(&mut out)?;
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
        let consumed = lines_in(file, self.offset, len, |l| {
            go_on = filter.feed(l, out);
            go_on
        })?;
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
    use crate::logger::jsonfile::testutil::*;
    use crate::logger::jsonfile::Writer;
    use std::fs::OpenOptions;
    use std::io::Write;

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
}
