//! A connection to a container's (or an exec's) stdio through its supervisor: output frames
//! in, stdin frames out. Callers see Docker's stream format, never the supervisor protocol.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::proto;
use crate::util::stdcopy;

/// An attach or exec connection to a supervisor.
#[derive(Debug)]
pub struct StdioConn {
    stream: UnixStream,
}

impl StdioConn {
    pub(super) fn new(stream: UnixStream) -> StdioConn {
        StdioConn { stream }
    }

    /// The output and stdin halves, to drive from two tasks.
    pub fn split(self) -> (Output, Stdin) {
        let (r, w) = self.stream.into_split();
        (
            Output {
                r,
                buf: vec![0; 64 * 1024],
                pending: Vec::new(),
            },
            Stdin { w },
        )
    }
}

/// The output side.
#[derive(Debug)]
pub struct Output {
    r: OwnedReadHalf,
    buf: Vec<u8>,
    pending: Vec<u8>,
}

impl Output {
    /// The next output for a client: complete stdcopy frames, or with `raw` (a TTY) their
    /// bare payloads; `None` at the end. Cancel-safe: what was read stays buffered.
    pub async fn next(&mut self, raw: bool) -> Option<Vec<u8>> {
        loop {
            let n = match self.r.read(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            self.pending.extend_from_slice(&self.buf[..n]);
            let out = stdcopy::take_output(&mut self.pending, raw);
            if !out.is_empty() {
                return Some(out);
            }
        }
    }
}

/// The stdin side.
#[derive(Debug)]
pub struct Stdin {
    w: OwnedWriteHalf,
}

impl Stdin {
    /// Forward stdin bytes.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut frame = Vec::with_capacity(data.len() + proto::HEADER);
        proto::put_frame(&mut frame, proto::STDIN, data);
        self.w.write_all(&frame).await
    }

    /// Close the process's stdin (its reader sees EOF); the connection stays open.
    pub async fn close(&mut self) -> io::Result<()> {
        let mut frame = Vec::new();
        proto::put_frame(&mut frame, proto::STDIN_CLOSE, &[]);
        self.w.write_all(&frame).await
    }
}
