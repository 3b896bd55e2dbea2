//! Bridges between async byte channels (what the API layer hands managers) and blocking
//! `Read`/`Write` (what tar extraction and archive writing use).

use std::cell::Cell;
use std::io::{self, Read, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

/// A stream of bytes as a manager hands it to the API layer (a response body): chunks, or the
/// error that ended it.
pub type ByteReceiver = mpsc::Receiver<Result<Bytes, io::Error>>;

/// A piece of a request body as the API layer hands it to a manager.
#[derive(Debug)]
pub enum BodyPart {
    /// The client's frames, in order, gathered without copying them.
    Data(Vec<Bytes>),
    /// The body ended here. A channel that closes without it was cut off (the request was
    /// cancelled), which a reader reports as an error rather than as the end of the data.
    End,
}

/// A request body as the API layer hands it over: parts, or the error that ended it.
pub type BodyReceiver = mpsc::Receiver<Result<BodyPart, io::Error>>;

/// A request body of `data` (in tests and for bodies already in memory): the parts a client
/// would send, then the end.
pub fn body_of(data: Vec<Bytes>) -> BodyReceiver {
    let (tx, rx) = mpsc::channel(2);
    // The channel has room for both: the sends cannot fail or wait.
    let _ = tx.try_send(Ok(BodyPart::Data(data)));
    let _ = tx.try_send(Ok(BodyPart::End));
    rx
}

thread_local! {
    /// The buffer (start address, length) registered by [`Discarding`] on this thread.
    static DISCARD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// While it lives, a [`ChannelReader`] read on this thread whose destination lies inside the
/// registered buffer only advances past the bytes instead of copying them: the caller drops
/// what it reads there (an extraction reading past the content of a file it reuses).
///
/// A reader stacked on the channel reader that reads into a buffer of its own (a decompressor,
/// a `BufReader` refilling) is not affected: only reads passed straight through into this
/// buffer are. So a layer between the two may count the bytes but must not look at them (no
/// hashing, no recording): whoever registers the buffer knows the stack it reads through.
pub struct Discarding {
    previous: (usize, usize),
}

impl Discarding {
    pub fn new(buf: &mut [u8]) -> Discarding {
        let previous = DISCARD.with(|d| d.replace((buf.as_ptr() as usize, buf.len())));
        Discarding { previous }
    }
}

impl Drop for Discarding {
    fn drop(&mut self) {
        DISCARD.with(|d| d.set(self.previous));
    }
}

/// Whether `buf` lies inside the buffer a [`Discarding`] registered on this thread.
fn discarded(buf: &[u8]) -> bool {
    let (start, len) = DISCARD.with(Cell::get);
    let at = buf.as_ptr() as usize;
    len != 0 && at >= start && at + buf.len() <= start + len
}

/// Blocking reader over a [`BodyReceiver`]. Use it only inside `spawn_blocking`.
pub struct ChannelReader {
    rx: BodyReceiver,
    /// The frames not read yet, the first one partly read, in reverse order (the next is last).
    frames: Vec<Bytes>,
    ended: bool,
}

impl ChannelReader {
    pub fn new(rx: BodyReceiver) -> Self {
        ChannelReader {
            rx,
            frames: Vec::new(),
            ended: false,
        }
    }

    /// The next unread bytes, waiting for them; `None` at the body's end.
    fn current(&mut self) -> io::Result<Option<&mut Bytes>> {
        while self.frames.last().is_none_or(Bytes::is_empty) {
            if self.frames.pop().is_some() {
                continue;
            }
            if self.ended {
                return Ok(None);
            }
            match self.rx.blocking_recv() {
                Some(Ok(BodyPart::Data(mut frames))) => {
                    frames.reverse();
                    self.frames = frames;
                }
                Some(Ok(BodyPart::End)) => self.ended = true,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the request body was cut off",
                    ))
                }
            }
        }
        Ok(self.frames.last_mut())
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let Some(cur) = self.current()? else {
            return Ok(0);
        };
        let n = buf.len().min(cur.len());
        if !discarded(buf) {
            buf[..n].copy_from_slice(&cur[..n]);
        }
        let _ = cur.split_to(n);
        Ok(n)
    }
}

/// Blocking writer into a channel of chunks (a response body). Fails with `BrokenPipe` once
/// the client is gone. Use it only inside `spawn_blocking`.
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl ChannelWriter {
    pub fn new(tx: mpsc::Sender<Result<Bytes, io::Error>>) -> Self {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.deliver(chunk)
    }

    fn deliver(&self, chunk: Bytes) -> io::Result<()> {
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

/// A writer that can take a chunk it may keep, without copying it.
pub trait WriteChunk: Write {
    /// Write all of `chunk` (the default copies it like `write_all`).
    fn write_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        self.write_all(&chunk)
    }
}

impl<W: WriteChunk + ?Sized> WriteChunk for &mut W {
    fn write_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        (**self).write_chunk(chunk)
    }
}

impl WriteChunk for ChannelWriter {
    /// What is buffered goes first, then `chunk` as it is.
    fn write_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        self.send()?;
        self.deliver(chunk)
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl ChannelWriter {
    /// End the stream with an error: the response is aborted, not completed.
    pub fn fail(mut self, e: io::Error) {
        self.buf.clear();
        let _ = self.tx.blocking_send(Err(e));
    }
}

/// Wait, `limit` at most, until the peer of a Unix stream socket has read everything sent
/// to it (the send queue, `SIOCOUTQ`, is empty). A hijacked stream starts with this: clients
/// that parse the `101` with a buffered reader and then read the raw socket (docker-py's
/// `attach` and `exec_start`, dockerpty) lose whatever arrived with the head. dockerd's
/// streams happen to start a little later; berth's would otherwise follow the head at once.
pub async fn unix_peer_caught_up(fd: std::os::fd::RawFd, limit: std::time::Duration) {
    let start = std::time::Instant::now();
    let mut spins = 0;
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (the same request number as TIOCOUTQ) writes one int through the
        // pointer, which points at `queued`; a descriptor that is gone gives -1.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
        if rc != 0 || queued == 0 || start.elapsed() >= limit {
            return;
        }
        // The peer usually reads within microseconds: yield a few times before sleeping.
        if spins < 32 {
            spins += 1;
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_parts_in_order_then_ends() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(BodyPart::Data(vec![
            Bytes::from_static(b"ab"),
            Bytes::new(),
            Bytes::from_static(b"cde"),
        ])))
        .unwrap();
        tx.try_send(Ok(BodyPart::Data(vec![Bytes::from_static(b"f")])))
            .unwrap();
        tx.try_send(Ok(BodyPart::End)).unwrap();
        drop(tx);
        let mut r = ChannelReader::new(rx);
        let mut small = [0u8; 2];
        assert_eq!(r.read(&mut small).unwrap(), 2);
        assert_eq!(&small, b"ab");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"cdef");
        assert_eq!(r.read(&mut small).unwrap(), 0);
    }

    #[test]
    fn reads_into_a_discarding_buffer_advance_without_copying() {
        let mut r = ChannelReader::new(body_of(vec![
            Bytes::from_static(b"abcdef"),
            Bytes::from_static(b"ghij"),
        ]));
        let mut skip = [b'.'; 4];
        {
            let _d = Discarding::new(&mut skip);
            assert_eq!(r.read(&mut skip).unwrap(), 4);
            // Another buffer is still copied into while the first is registered.
            let mut other = [0u8; 1];
            assert_eq!(r.read(&mut other).unwrap(), 1);
            assert_eq!(&other, b"e");
            assert_eq!(r.read(&mut skip[1..3]).unwrap(), 1);
        }
        assert_eq!(&skip, b"....");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"ghij");
        assert_eq!(r.read(&mut skip).unwrap(), 0);
    }

    #[test]
    fn a_body_cut_off_is_an_error_not_an_end() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(BodyPart::Data(vec![Bytes::from_static(b"ab")])))
            .unwrap();
        drop(tx);
        let mut out = Vec::new();
        let e = ChannelReader::new(rx).read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(out, b"ab");
        let mut all = Vec::new();
        ChannelReader::new(body_of(vec![Bytes::from_static(b"xyz")]))
            .read_to_end(&mut all)
            .unwrap();
        assert_eq!(all, b"xyz");
    }

    #[tokio::test]
    async fn waits_until_the_peer_has_read() {
        use std::os::fd::AsRawFd;
        use std::time::{Duration, Instant};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut a, mut b) = tokio::net::UnixStream::pair().unwrap();
        a.write_all(b"HTTP/1.1 101\r\n\r\n").await.unwrap();
        // Unread: the wait runs to its limit.
        let t = Instant::now();
        unix_peer_caught_up(a.as_raw_fd(), Duration::from_millis(30)).await;
        assert!(t.elapsed() >= Duration::from_millis(30));
        // Read: it returns at once.
        let mut buf = [0u8; 64];
        let n = b.read(&mut buf).await.unwrap();
        assert_eq!(n, 16);
        let t = Instant::now();
        unix_peer_caught_up(a.as_raw_fd(), Duration::from_secs(5)).await;
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
