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

/// Collects the segments of a tar stream as it passes by.
#[derive(Debug, Default)]
pub struct Recorder {
    segments: Vec<Segment>,
    /// Stream offset of the next byte.
    pos: u64,
    /// The content range being skipped: `[start, end)`.
    skip: Option<(u64, u64)>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
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

    fn raw(&mut self, bytes: &[u8]) {
        self.pos += bytes.len() as u64;
        if let Some(Segment::Raw(v)) = self.segments.last_mut() {
            v.extend_from_slice(bytes);
        } else {
            self.segments.push(Segment::Raw(bytes.to_vec()));
        }
    }

    /// The content of the file `path` occupies `[start, start+size)` of the stream. Must be
    /// called before those bytes are observed (the tar parser reads the header first).
    pub fn file(&mut self, path: &str, start: u64, size: u64) {
        if size == 0 {
            return;
        }
        self.segments.push(Segment::File {
            path: path.to_string(),
            size,
        });
        self.skip = Some((start, start + size));
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Serialise (gzip-compressed) for storage next to the layer.
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for s in &self.segments {
            match s {
                Segment::Raw(b) => {
                    enc.write_all(b"R")?;
                    enc.write_all(&(b.len() as u64).to_le_bytes())?;
                    enc.write_all(b)?;
                }
                Segment::File { path, size } => {
                    enc.write_all(b"F")?;
                    enc.write_all(&size.to_le_bytes())?;
                    enc.write_all(&(path.len() as u64).to_le_bytes())?;
                    enc.write_all(path.as_bytes())?;
                }
            }
        }
        enc.finish()
    }
}

/// Decode what [`Recorder::encode`] wrote.
pub fn decode(data: &[u8]) -> io::Result<Vec<Segment>> {
    let mut raw = Vec::new();
    GzDecoder::new(data).read_to_end(&mut raw)?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "corrupt tar-split data");
    let mut out = Vec::new();
    let mut i = 0usize;
    let take_u64 = |i: &mut usize| -> io::Result<u64> {
        let b = raw.get(*i..*i + 8).ok_or_else(bad)?;
        *i += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    };
    while i < raw.len() {
        let tag = raw[i];
        i += 1;
        match tag {
            b'R' => {
                let n = take_u64(&mut i)? as usize;
                let b = raw
                    .get(i..i.checked_add(n).ok_or_else(bad)?)
                    .ok_or_else(bad)?;
                out.push(Segment::Raw(b.to_vec()));
                i += n;
            }
            b'F' => {
                let size = take_u64(&mut i)?;
                let n = take_u64(&mut i)? as usize;
                let b = raw
                    .get(i..i.checked_add(n).ok_or_else(bad)?)
                    .ok_or_else(bad)?;
                let path = String::from_utf8(b.to_vec()).map_err(|_| bad())?;
                out.push(Segment::File { path, size });
                i += n;
            }
            _ => return Err(bad()),
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

/// Rebuild the tar stream of the layer extracted at `root` from its segments.
pub struct Assembler {
    root: PathBuf,
    segments: std::vec::IntoIter<Segment>,
    current: Option<Box<dyn Read + Send>>,
}

/// Rebuild a layer's tar stream from `root` and its segments.
pub fn assemble(root: &Path, segments: Vec<Segment>) -> Assembler {
    Assembler {
        root: root.to_path_buf(),
        segments: segments.into_iter(),
        current: None,
    }
}

impl Read for Assembler {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(cur) = self.current.as_mut() {
                let n = cur.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.current = None;
            }
            match self.segments.next() {
                None => return Ok(0),
                Some(Segment::Raw(b)) => self.current = Some(Box::new(io::Cursor::new(b))),
                Some(Segment::File { path, size }) => {
                    let full = self.root.join(path.trim_start_matches('/'));
                    // Resolved inside the layer: a symlink in the layer cannot lead a save
                    // out to host files.
                    let f = crate::util::fs::open_in_root(&self.root, &path).map_err(|e| {
                        io::Error::new(e.kind(), format!("open {}: {e}", full.display()))
                    })?;
                    self.current = Some(Box::new(ExactReader {
                        inner: f.take(size),
                        left: size,
                        path: full,
                    }));
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

/// Checks, at the end of the stream, that what passed through has the expected digest and
/// length: a layer that cannot be reproduced exactly fails instead of being sent wrong.
pub struct Verified<R> {
    inner: R,
    hash: Sha256,
    len: u64,
    want: String,
    want_len: u64,
}

impl<R: Read> Verified<R> {
    pub fn new(inner: R, want: &str, want_len: u64) -> Self {
        Verified {
            inner,
            hash: Sha256::new(),
            len: 0,
            want: want.to_string(),
            want_len,
        }
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            let got = format!("sha256:{}", hex::encode(self.hash.clone().finalize()));
            if got != self.want || self.len != self.want_len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "layer {} cannot be reproduced exactly (got {got}, {} bytes)",
                        self.want, self.len
                    ),
                ));
            }
            return Ok(0);
        }
        self.hash.update(&buf[..n]);
        self.len += n as u64;
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
        let rec = rec.into_inner();
        let files = rec
            .segments()
            .iter()
            .filter(|s| matches!(s, Segment::File { .. }))
            .count();
        assert_eq!(files, 2);
        let encoded = rec.encode().unwrap();
        assert!(encoded.len() < bytes.len());
        let segs = decode(&encoded).unwrap();
        assert_eq!(segs, rec.segments());
        let mut out = Vec::new();
        assemble(dir.path(), segs).read_to_end(&mut out).unwrap();
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
}
