//! Bridges between async byte channels (what the API layer hands managers) and blocking
//! `Read`/`Write` (what tar extraction and archive writing use).

use std::io::{self, Read, Write};

use bytes::Bytes;
use tokio::sync::mpsc;

/// A request body as the API layer hands it over: chunks, or the error that ended it.
pub type ByteReceiver = mpsc::Receiver<Result<Bytes, io::Error>>;

/// Blocking reader over a [`ByteReceiver`]. Use it only inside `spawn_blocking`.
pub struct ChannelReader {
    rx: ByteReceiver,
    cur: Bytes,
}

impl ChannelReader {
    pub fn new(rx: ByteReceiver) -> Self {
        ChannelReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
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
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
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
