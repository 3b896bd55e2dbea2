//! Reproducing a layer's tar stream byte for byte without keeping a copy of it.
//!
//! While a layer is extracted, a [`Recorder`] sees every byte of the uncompressed tar. It keeps
//! headers, padding and trailer bytes, and replaces each regular file's content by a reference
//! to the extracted file. [`assemble`] later interleaves the kept bytes with the files' content
//! from the layer's `diff/` directory, which gives back the original tar, so its digest (the
//! layer's DiffID) is unchanged — the idea of dockerd's tar-split, in a compact format.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// One piece of a tar stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Bytes kept as they were.
    Raw(Vec<u8>),
    /// `size` bytes of content of the file at `path` (relative to the layer root).
    File { path: String, size: u64 },
}

/// Kept bytes are written out in records of at most this size, so neither recording nor
/// reassembly holds more than this of them in memory, whatever the layer (a huge PAX header,
/// millions of entries).
const RAW_CHUNK: usize = 64 << 10;

/// The longest file path a record may name.
const MAX_PATH: u64 = 1 << 20;

/// Where the encoded record goes.
enum Sink {
    Mem(Vec<u8>),
    File(io::BufWriter<std::fs::File>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Mem(v) => v.write(buf),
            Sink::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Mem(_) => Ok(()),
            Sink::File(f) => f.flush(),
        }
    }
}

/// Records the segments of a tar stream as it passes by, writing them out (gzip-compressed)
/// as it goes: to memory ([`Recorder::new`]) or to a file ([`Recorder::to_file`]).
pub struct Recorder {
    out: GzEncoder<Sink>,
    /// Kept bytes not written out yet (at most [`RAW_CHUNK`]).
    pending: Vec<u8>,
    /// Stream offset of the next byte.
    pos: u64,
    /// The content range being skipped: `[start, end)`.
    skip: Option<(u64, u64)>,
    /// The first write error; [`Recorder::finish`] reports it.
    err: Option<io::Error>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("pos", &self.pos).finish()
    }
}

impl Recorder {
    /// A recorder that keeps its (compressed) record in memory.
    pub fn new() -> Self {
        Self::with_sink(Sink::Mem(Vec::new()))
    }

    /// A recorder that streams its record into `file`.
    pub fn to_file(file: std::fs::File) -> Self {
        Self::with_sink(Sink::File(io::BufWriter::new(file)))
    }

    fn with_sink(sink: Sink) -> Self {
        Recorder {
            out: GzEncoder::new(sink, flate2::Compression::fast()),
            pending: Vec::new(),
            pos: 0,
            skip: None,
            err: None,
        }
    }

    /// Bytes `[pos, pos+n)` of the stream went by.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if let Some((start, end)) = self.skip {
                if self.pos >= start && self.pos < end {
                    let n = ((end - self.pos) as usize).min(bytes.len());
                    self.pos += n as u64;
                    bytes = &bytes[n..];
                    if self.pos >= end {
                        self.skip = None;
                    }
                    continue;
                }
                if self.pos < start {
                    let n = ((start - self.pos) as usize).min(bytes.len());
                    self.raw(&bytes[..n]);
                    bytes = &bytes[n..];
                    continue;
                }
                self.skip = None;
            }
            self.raw(bytes);
            return;
        }
    }

    fn raw(&mut self, mut bytes: &[u8]) {
        self.pos += bytes.len() as u64;
        while !bytes.is_empty() {
            let n = (RAW_CHUNK - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.pending.len() >= RAW_CHUNK {
                self.flush_raw();
            }
        }
    }

    fn emit(&mut self, parts: &[&[u8]]) {
        if self.err.is_some() {
            return;
        }
        for p in parts {
            if let Err(e) = self.out.write_all(p) {
                self.err = Some(e);
                return;
            }
        }
    }

    fn flush_raw(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        self.emit(&[b"R", &(pending.len() as u64).to_le_bytes(), &pending]);
        self.pending = pending;
        self.pending.clear();
    }

    /// The content of the file `path` occupies `[start, start+size)` of the stream. Must be
    /// called before those bytes are observed (the tar parser reads the header first).
    pub fn file(&mut self, path: &str, start: u64, size: u64) {
        if size == 0 {
            return;
        }
        self.flush_raw();
        self.emit(&[
            b"F",
            &size.to_le_bytes(),
            &(path.len() as u64).to_le_bytes(),
            path.as_bytes(),
        ]);
        self.skip = Some((start, start + size));
    }

    /// Write out the rest. A memory recorder gives its record; a file recorder flushes and
    /// syncs its file and gives nothing.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        self.flush_raw();
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        match self.out.finish()? {
            Sink::Mem(v) => Ok(v),
            Sink::File(f) => {
                let f = f.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                Ok(Vec::new())
            }
        }
    }
}

/// Encode `segments` the way a [`Recorder`] does.
pub fn encode(segments: &[Segment]) -> io::Result<Vec<u8>> {
    let mut r = Recorder::new();
    for s in segments {
        match s {
            Segment::Raw(b) => {
                for c in b.chunks(RAW_CHUNK) {
                    r.emit(&[b"R", &(c.len() as u64).to_le_bytes(), c]);
                }
            }
            Segment::File { path, size } => r.emit(&[
                b"F",
                &size.to_le_bytes(),
                &(path.len() as u64).to_le_bytes(),
                path.as_bytes(),
            ]),
        }
    }
    r.finish()
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "corrupt tar-split data")
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut a = [0u8; 8];
    r.read_exact(&mut a).map_err(|_| corrupt())?;
    Ok(u64::from_le_bytes(a))
}

/// One record's head: a tag and what follows it, or `None` at the end.
enum Head {
    Raw(u64),
    File { path: String, size: u64 },
}

fn read_head(r: &mut impl Read) -> io::Result<Option<Head>> {
    let mut tag = [0u8; 1];
    loop {
        match r.read(&mut tag) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    match tag[0] {
        b'R' => Ok(Some(Head::Raw(read_u64(r)?))),
        b'F' => {
            let size = read_u64(r)?;
            let n = read_u64(r)?;
            if n > MAX_PATH {
                return Err(corrupt());
            }
            let mut b = vec![0u8; n as usize];
            r.read_exact(&mut b).map_err(|_| corrupt())?;
            let path = String::from_utf8(b).map_err(|_| corrupt())?;
            Ok(Some(Head::File { path, size }))
        }
        _ => Err(corrupt()),
    }
}

/// Decode a whole record into memory (tests and small records; reassembly streams instead).
pub fn decode(data: &[u8]) -> io::Result<Vec<Segment>> {
    let mut r = GzDecoder::new(data);
    let mut out = Vec::new();
    while let Some(h) = read_head(&mut r)? {
        match h {
            Head::Raw(n) => {
                let mut b = Vec::new();
                (&mut r).take(n).read_to_end(&mut b)?;
                if b.len() as u64 != n {
                    return Err(corrupt());
                }
                out.push(Segment::Raw(b));
            }
            Head::File { path, size } => out.push(Segment::File { path, size }),
        }
    }
    Ok(out)
}

/// A reader that tells a [`Recorder`] every byte it passes on.
pub struct TeeReader<'a, R> {
    inner: R,
    recorder: &'a std::cell::RefCell<Recorder>,
}

impl<'a, R: Read> TeeReader<'a, R> {
    pub fn new(inner: R, recorder: &'a std::cell::RefCell<Recorder>) -> Self {
        TeeReader { inner, recorder }
    }
}

impl<R: Read> Read for TeeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.recorder.borrow_mut().observe(&buf[..n]);
        Ok(n)
    }
}

/// Rebuild the tar stream of the layer extracted at `root` from its record, read as it goes:
/// memory stays bounded by a read buffer, whatever the size of the record.
pub struct Assembler {
    root: PathBuf,
    record: Box<dyn Read + Send>,
    /// Kept bytes of the current record still to copy.
    raw_left: u64,
    current: Option<ExactReader<io::Take<std::fs::File>>>,
}

/// Rebuild a layer's tar stream from `root` and its segments (held in memory).
pub fn assemble(root: &Path, segments: Vec<Segment>) -> Assembler {
    let record: Box<dyn Read + Send> = match encode(&segments) {
        Ok(v) => Box::new(io::Cursor::new(v)),
        Err(e) => Box::new(FailingReader(Some(e))),
    };
    assemble_from(root, record)
}

/// Rebuild a layer's tar stream from `root` and its stored record (as [`Recorder`] wrote it),
/// streamed from `record`.
pub fn assemble_from(root: &Path, record: impl Read + Send + 'static) -> Assembler {
    Assembler {
        root: root.to_path_buf(),
        record: Box::new(GzDecoder::new(io::BufReader::new(record))),
        raw_left: 0,
        current: None,
    }
}

struct FailingReader(Option<io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self.0.take().unwrap_or_else(corrupt))
    }
}

impl Read for Assembler {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.raw_left > 0 {
                let want = (self.raw_left.min(buf.len() as u64)) as usize;
                let n = self.record.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(corrupt());
                }
                self.raw_left -= n as u64;
                return Ok(n);
            }
            if let Some(cur) = self.current.as_mut() {
                let n = cur.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.current = None;
            }
            match read_head(&mut self.record)? {
                None => return Ok(0),
                Some(Head::Raw(n)) => self.raw_left = n,
                Some(Head::File { path, size }) => {
                    let full = self.root.join(path.trim_start_matches('/'));
                    // Resolved inside the layer: a symlink in the layer cannot lead a save
                    // out to host files.
                    let f = crate::util::fs::open_in_root(&self.root, &path).map_err(|e| {
                        io::Error::new(e.kind(), format!("open {}: {e}", full.display()))
                    })?;
                    self.current = Some(ExactReader {
                        inner: f.take(size),
                        left: size,
                        path: full,
                    });
                }
            }
        }
    }
}

/// Reads exactly `left` bytes or fails: a file that shrank cannot reproduce the layer.
struct ExactReader<R> {
    inner: R,
    left: u64,
    path: PathBuf,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than the layer recorded", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// `sha256:<hex>` of everything `r` yields.
pub fn digest_of<R: Read>(mut r: R) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), total))
}

/// A layer's SHA-256 and length so far, checked at its end against its DiffID and size: a
/// layer that cannot be reproduced exactly fails instead of being sent wrong.
#[derive(Default)]
pub struct LayerCheck {
    hash: Sha256,
    len: u64,
}

impl LayerCheck {
    pub fn update(&mut self, data: &[u8]) {
        self.hash.update(data);
        self.len += data.len() as u64;
    }

    /// Whether what passed through is the layer `want` of `want_len` bytes.
    pub fn verify(&self, want: &str, want_len: u64) -> io::Result<()> {
        let got = format!("sha256:{}", hex::encode(self.hash.clone().finalize()));
        if got != want || self.len != want_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "layer {want} cannot be reproduced exactly (got {got}, {} bytes)",
                    self.len
                ),
            ));
        }
        Ok(())
    }
}

/// Checks, at the end of the stream, that what passed through is the expected layer
/// ([`LayerCheck`]).
pub struct Verified<R> {
    inner: R,
    check: LayerCheck,
    want: String,
    want_len: u64,
}

impl<R: Read> Verified<R> {
    pub fn new(inner: R, want: &str, want_len: u64) -> Self {
        Verified {
            inner,
            check: LayerCheck::default(),
            want: want.to_string(),
            want_len,
        }
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.check.verify(&self.want, self.want_len)?;
            return Ok(0);
        }
        self.check.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_reassembles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"hello world").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/b"), vec![7u8; 3000]).unwrap();
        // Build a tar of the same content.
        let mut b = tar::Builder::new(Vec::new());
        b.append_path_with_name(dir.path().join("a"), "a").unwrap();
        b.append_dir("d", dir.path().join("d")).unwrap();
        b.append_path_with_name(dir.path().join("d/b"), "d/b")
            .unwrap();
        let bytes = b.into_inner().unwrap();

        // Record it the way extraction does: parse through a tee.
        let rec = std::cell::RefCell::new(Recorder::new());
        {
            let mut ar = tar::Archive::new(TeeReader::new(&bytes[..], &rec));
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                if e.header().entry_type().is_file() {
                    let path = e.path().unwrap().to_string_lossy().into_owned();
                    rec.borrow_mut()
                        .file(&path, e.raw_file_position(), e.size());
                }
                std::io::copy(&mut e, &mut std::io::sink()).unwrap();
            }
            let mut rest = ar.into_inner();
            std::io::copy(&mut rest, &mut std::io::sink()).unwrap();
        }
        let encoded = rec.into_inner().finish().unwrap();
        let segs = decode(&encoded).unwrap();
        let files = segs
            .iter()
            .filter(|s| matches!(s, Segment::File { .. }))
            .count();
        assert_eq!(files, 2);
        assert!(encoded.len() < bytes.len());
        assert_eq!(decode(&encode(&segs).unwrap()).unwrap(), segs);
        let mut out = Vec::new();
        assemble(dir.path(), segs).read_to_end(&mut out).unwrap();
        assert_eq!(out, bytes);
        // Streamed from a file as the store does.
        let split = dir.path().join("split");
        std::fs::write(&split, &encoded).unwrap();
        let mut out = Vec::new();
        assemble_from(dir.path(), std::fs::File::open(&split).unwrap())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, bytes);
        assert_eq!(digest_of(&out[..]).unwrap(), digest_of(&bytes[..]).unwrap());
    }

    #[test]
    fn a_changed_file_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"short").unwrap();
        let segs = vec![Segment::File {
            path: "a".into(),
            size: 100,
        }];
        let mut out = Vec::new();
        assert!(assemble(dir.path(), segs).read_to_end(&mut out).is_err());
        assert!(decode(b"garbage").is_err());
    }

    #[test]
    fn kept_bytes_are_written_out_in_bounded_records() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("split")).unwrap();
        let mut rec = Recorder::to_file(f);
        // A 1 MiB PAX header's worth of kept bytes, fed in odd pieces.
        let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        for c in big.chunks(7777) {
            rec.observe(c);
            assert!(rec.pending.len() <= RAW_CHUNK);
        }
        assert!(rec.finish().unwrap().is_empty());
        let data = std::fs::read(dir.path().join("split")).unwrap();
        let segs = decode(&data).unwrap();
        assert!(segs.len() >= 16);
        assert!(segs
            .iter()
            .all(|s| matches!(s, Segment::Raw(b) if b.len() <= RAW_CHUNK)));
        let mut out = Vec::new();
        assemble_from(
            dir.path(),
            std::fs::File::open(dir.path().join("split")).unwrap(),
        )
        .read_to_end(&mut out)
        .unwrap();
        assert_eq!(out, big);
    }
}
