//! A reader that watches a tar stream's headers go by and stops the stream at a special
//! member (PAX header, GNU long name or long link) larger than Go's `archive/tar` accepts.
//!
//! The `tar` crate reads such members whole into memory before the entry they describe, so a
//! stream declaring a 10 GiB PAX header would be held in memory. Go's reader (dockerd's) refuses
//! them above `maxSpecialFileSize` (1 MiB) with `archive/tar: header field too long`; this
//! guard does the same before the `tar` crate sees the header.

use std::io::{self, Read};

/// Go's `maxSpecialFileSize`.
pub const MAX_SPECIAL_FILE_SIZE: u64 = 1 << 20;

/// Go's `archive/tar.ErrFieldTooLong`.
pub const FIELD_TOO_LONG: &str = "archive/tar: header field too long";

const BLOCK: usize = 512;

/// Passes a tar stream through unchanged, checking every header block.
pub struct HeaderGuard<R> {
    inner: R,
    /// Bytes of member content (and padding) before the next header block.
    skip: u64,
    /// The header block being collected.
    block: Box<[u8; BLOCK]>,
    fill: usize,
    /// GNU sparse extension blocks follow.
    extended: bool,
    /// Stopped watching (a header the guard cannot read: the tar parser reports it).
    off: bool,
    /// The content of the PAX header being read (at most [`MAX_SPECIAL_FILE_SIZE`]): its
    /// `size` record overrides the next member's size, as the `tar` crate applies it.
    pax: Option<Vec<u8>>,
    /// Bytes of the PAX header's content still to collect.
    pax_left: u64,
    /// The size a PAX header gave the next member.
    next_size: Option<u64>,
}

impl<R: Read> HeaderGuard<R> {
    pub fn new(inner: R) -> Self {
        HeaderGuard {
            inner,
            skip: 0,
            block: Box::new([0u8; BLOCK]),
            fill: 0,
            extended: false,
            off: false,
            pax: None,
            pax_left: 0,
            next_size: None,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn scan(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() && !self.off {
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                if let Some(pax) = self.pax.as_mut() {
                    let k = (self.pax_left.min(n as u64)) as usize;
                    pax.extend_from_slice(&bytes[..k]);
                    self.pax_left -= k as u64;
                }
                self.skip -= n as u64;
                bytes = &bytes[n..];
                if self.skip == 0 {
                    if let Some(pax) = self.pax.take() {
                        self.next_size = pax_size(&pax);
                    }
                }
                continue;
            }
            let n = (BLOCK - self.fill).min(bytes.len());
            self.block[self.fill..self.fill + n].copy_from_slice(&bytes[..n]);
            self.fill += n;
            bytes = &bytes[n..];
            if self.fill == BLOCK {
                self.fill = 0;
                self.header()?;
            }
        }
        Ok(())
    }

    fn header(&mut self) -> io::Result<()> {
        let b = &self.block;
        if self.extended {
            // A GNU sparse extension block: more follow while its last flag is set.
            self.extended = b[504] != 0;
            return Ok(());
        }
        if b.iter().all(|&x| x == 0) {
            // The end of the archive for the tar crate: what follows is not parsed.
            self.off = true;
            return Ok(());
        }
        let Some(size) = parse_size(&b[124..136]) else {
            self.off = true;
            return Ok(());
        };
        let typ = b[156];
        // The size of this member's data: a preceding PAX `size` record wins (the `tar`
        // crate reads it so).
        let pax_given = self.next_size.take();
        if matches!(typ, b'x' | b'g' | b'X' | b'L' | b'K') && size > MAX_SPECIAL_FILE_SIZE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, FIELD_TOO_LONG));
        }
        // Old GNU sparse headers may continue in extension blocks.
        self.extended = typ == b'S' && b[482] != 0;
        let data = match typ {
            b'x' | b'g' | b'X' | b'L' | b'K' => size,
            _ => pax_given.unwrap_or(size),
        };
        if typ == b'x' && size > 0 {
            self.pax = Some(Vec::with_capacity(size as usize));
            self.pax_left = size;
        } else if typ == b'x' {
            self.next_size = None;
        }
        self.skip = data.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(())
    }
}

/// The `size` record of PAX header content (`"<len> size=<n>\n"` records).
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut rest = data;
    let mut found = None;
    while !rest.is_empty() {
        let sp = rest.iter().position(|c| *c == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return found;
        }
        let rec = &rest[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
        if let Some(v) = rec.strip_prefix(b"size=") {
            found = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

/// A tar size field: octal digits (space or NUL terminated), or GNU base-256.
fn parse_size(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        if f[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = (f[0] & 0x3f) as u64;
        for &x in &f[1..] {
            v = v.checked_mul(256)?.checked_add(x as u64)?;
        }
        return Some(v);
    }
    let s = f
        .iter()
        .copied()
        .skip_while(|c| *c == b' ' || *c == 0)
        .take_while(|c| *c != b' ' && *c != 0)
        .collect::<Vec<u8>>();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

impl<R: Read> Read for HeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, typ: tar::EntryType, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(typ);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        let mut v = h.as_bytes().to_vec();
        v.extend_from_slice(data);
        v.resize(v.len().div_ceil(512) * 512, 0);
        v
    }

    #[test]
    fn passes_ordinary_streams_and_stops_huge_special_members() {
        let mut ok = member("a", tar::EntryType::Regular, &[7u8; 1000]);
        ok.extend(member("pax", tar::EntryType::XHeader, b"11 a=bcdef\n"));
        ok.extend(member("b", tar::EntryType::Regular, b"x"));
        ok.extend([0u8; 1024]);
        // Trailing data after the end blocks is not looked at.
        ok.extend(member("late", tar::EntryType::XHeader, &[]));
        let at = ok.len() - 512;
        ok[at + 124..at + 136].copy_from_slice(b"77777777777\0");
        let mut out = Vec::new();
        HeaderGuard::new(&ok[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, ok);

        // A PAX header declaring 2 MiB: refused at its header, before its content is read.
        let mut h = tar::Header::new_ustar();
        h.set_path("pax").unwrap();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(2 << 20);
        h.set_cksum();
        let mut bad = member("a", tar::EntryType::Regular, b"hello");
        bad.extend_from_slice(h.as_bytes());
        let e = HeaderGuard::new(io::Cursor::new(bad).chain(io::repeat(b'a')))
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(e.to_string(), FIELD_TOO_LONG);
        // The same for a GNU long name, read in one-byte pieces.
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(1 << 30);
        h.set_cksum();
        let mut g = HeaderGuard::new(io::Cursor::new(h.as_bytes().to_vec()));
        let mut byte = [0u8; 1];
        let mut err = None;
        for _ in 0..512 {
            if let Err(e) = g.read(&mut byte) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err.unwrap().to_string(), FIELD_TOO_LONG);
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        assert_eq!(pax_size(b"11 a=bcdef\n12 size=300\n"), Some(300));

        // A PAX `size` record that shrinks the next member to nothing cannot hide a huge
        // special member inside the size its header declares.
        let mut h = tar::Header::new_ustar();
        h.set_path("pax").unwrap();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(2 << 20);
        h.set_cksum();
        let mut hidden = member("x", tar::EntryType::XHeader, b"10 size=0\n");
        let mut big = tar::Header::new_ustar();
        big.set_path("f").unwrap();
        big.set_size(1 << 30);
        big.set_cksum();
        hidden.extend_from_slice(big.as_bytes());
        hidden.extend_from_slice(h.as_bytes());
        let e = HeaderGuard::new(io::Cursor::new(hidden).chain(io::repeat(b'a')))
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(e.to_string(), FIELD_TOO_LONG);
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 5;
        assert_eq!(parse_size(&b256), Some(5));
    }
}
