//! Client fan-out: the connections on the control socket, the container's and the execs'
//! output delivered to the attached clients (and the log), their input fed to the process,
//! back-pressure and dropping a client that stalled.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Instant, SystemTime};

use super::stdio::{nonblocking, ReadBuf};
use super::{Src, Supervisor, HIGH_WATER, STALL_LIMIT};
use crate::logger::Stream;
use crate::runtime::proto::{self, Event, Reply};

/// What a client connected for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Kind {
    /// Has not sent its request line yet.
    Pending,
    Watch,
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Attached to the exec process with this index in `Supervisor::execs`' ids.
    Exec {
        id: u64,
        stdin: bool,
    },
}

impl Kind {
    /// The process whose output this client reads, if any.
    pub(super) fn source(self) -> Option<Src> {
        match self {
            Kind::Attach { .. } => Some(Src::Init),
            Kind::Exec { id, .. } => Some(Src::Exec(id)),
            _ => None,
        }
    }
}

pub(super) struct Client {
    pub(super) sock: UnixStream,
    pub(super) rbuf: Vec<u8>,
    pub(super) wbuf: Vec<u8>,
    /// How much of `wbuf` was already sent (compacted lazily, so sending stays linear).
    pub(super) wpos: usize,
    pub(super) kind: Kind,
    /// Close once `wbuf` is flushed.
    pub(super) closing: bool,
    pub(super) gone: bool,
    /// Since when the client has been too far behind (output is held back meanwhile).
    pub(super) stalled_since: Option<Instant>,
}

impl Client {
    pub(super) fn queue_reply(&mut self, reply: &Reply) {
        if let Ok(line) = serde_json::to_vec(reply) {
            self.wbuf.extend_from_slice(&line);
            self.wbuf.push(b'\n');
        }
    }

    /// Bytes queued and not yet sent.
    pub(super) fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    pub(super) fn flush(&mut self) {
        while self.wpos < self.wbuf.len() {
            match nix::sys::socket::send(
                self.sock.as_raw_fd(),
                &self.wbuf[self.wpos..],
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => self.wpos += n,
                Err(nix::errno::Errno::EAGAIN) => {
                    if self.wpos > self.wbuf.len() / 2 {
                        self.wbuf.drain(..self.wpos);
                        self.wpos = 0;
                    }
                    return;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    self.gone = true;
                    self.wbuf.clear();
                    self.wpos = 0;
                    return;
                }
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        if self.closing {
            self.gone = true;
        }
    }
}

pub(super) fn push_event(c: &mut Client, event: &Event) {
    if let Ok(b) = serde_json::to_vec(event) {
        proto::put_frame(&mut c.wbuf, proto::EVENT, &b);
    }
}

impl Supervisor {
    /// A reader that stays full holds back the others reading the same process: after
    /// STALL_LIMIT it is dropped. The only reader of a process is never dropped; the
    /// process waits for it, as with dockerd (`docker exec c cat big | less`).
    pub(super) fn drop_stalled_clients(&mut self) {
        let readers: Vec<(Option<Src>, bool)> = self
            .clients
            .iter()
            .map(|c| (c.kind.source(), c.pending() > HIGH_WATER))
            .collect();
        for c in &mut self.clients {
            if c.pending() > HIGH_WATER {
                let since = *c.stalled_since.get_or_insert_with(Instant::now);
                let src = c.kind.source();
                let others_waiting = readers.iter().any(|(s, full)| *s == src && !*full);
                if since.elapsed() > STALL_LIMIT && others_waiting {
                    tracing::warn!("dropping a client that stopped reading");
                    c.gone = true;
                }
            } else {
                c.stalled_since = None;
            }
        }
    }

    /// Whether a client attached to process `src` is too far behind to read more output.
    pub(super) fn backpressured(&self, src: Src) -> bool {
        self.clients
            .iter()
            .any(|c| c.pending() > HIGH_WATER && c.kind.source() == Some(src))
    }

    /// Send what the clients take now, noting progress.
    pub(super) fn flush_clients(&mut self) {
        for c in &mut self.clients {
            let before = c.pending();
            c.flush();
            if c.pending() < before {
                self.last_progress = Instant::now();
            }
        }
    }

    pub(super) fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    nonblocking(&sock);
                    self.clients.push(Client {
                        sock,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        wpos: 0,
                        kind: Kind::Pending,
                        closing: false,
                        gone: false,
                        stalled_since: None,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    /// Read one chunk of output `i` of `src` and deliver it; false when nothing was read.
    pub(super) fn read_output(&mut self, src: Src, i: usize) -> bool {
        let mut buf = self.readbuf.take().unwrap_or_else(ReadBuf::new);
        let got = match self.io_mut(src) {
            Some(io) if i < io.outputs.len() => io.read(i, buf.as_mut_slice()),
            _ => None,
        };
        let read = match got {
            Some((stream, n)) => {
                self.deliver(src, stream, &buf.as_mut_slice()[..n]);
                true
            }
            None => false,
        };
        self.readbuf = Some(buf);
        read
    }

    fn deliver(&mut self, src: Src, stream: Stream, data: &[u8]) {
        if src == Src::Init {
            if let Some(log) = &mut self.log {
                if let Err(e) = log.write(stream, data, SystemTime::now()) {
                    tracing::error!("write log: {e}");
                }
            }
        }
        let kind = match stream {
            Stream::Stdout => proto::STDOUT,
            Stream::Stderr => proto::STDERR,
        };
        for c in &mut self.clients {
            if c.closing {
                continue;
            }
            let wanted = match (src, c.kind) {
                (Src::Init, Kind::Attach { stdout, stderr, .. }) => match stream {
                    Stream::Stdout => stdout,
                    Stream::Stderr => stderr,
                },
                (Src::Exec(id), Kind::Exec { id: e, .. }) => id == e,
                _ => false,
            };
            if wanted {
                proto::put_frame(&mut c.wbuf, kind, data);
            }
        }
    }

    /// Read what client `i` sent and act on it: its request line first, then (attached) the
    /// frames for the process's stdin.
    pub(super) fn service_client(&mut self, i: usize) {
        if !self.read_client(i) {
            return;
        }
        loop {
            match self.clients[i].kind {
                Kind::Pending => {
                    if !self.take_request(i) {
                        return;
                    }
                }
                Kind::Watch => {
                    self.clients[i].rbuf.clear();
                    return;
                }
                Kind::Attach { stdin, .. } | Kind::Exec { stdin, .. } => {
                    self.feed_stdin(i, stdin);
                    return;
                }
            }
        }
    }

    /// Read from client `i` into its buffer; false when nothing was read (an EOF or error
    /// marks it gone, and EOF on an attached stdin counts as the stdin's end).
    fn read_client(&mut self, i: usize) -> bool {
        let mut buf = self.readbuf.take().unwrap_or_else(ReadBuf::new);
        let read = self.read_client_into(i, buf.as_mut_slice());
        self.readbuf = Some(buf);
        read
    }

    fn read_client_into(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let n = match self.clients[i].sock.read(buf) {
            Ok(0) => {
                match self.clients[i].kind {
                    Kind::Attach { stdin: true, .. } => self.io.on_stdin_eof(),
                    Kind::Exec { id, stdin: true } => {
                        if let Some(io) = self.io_mut(Src::Exec(id)) {
                            io.on_stdin_eof();
                        }
                    }
                    _ => {}
                }
                self.clients[i].gone = true;
                return false;
            }
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return false
            }
            Err(_) => {
                self.clients[i].gone = true;
                return false;
            }
        };
        self.clients[i].rbuf.extend_from_slice(&buf[..n]);
        true
    }

    /// Pass the complete stdin frames of attached client `i` to its process (if it may write
    /// to its stdin), keeping an incomplete one for later.
    fn feed_stdin(&mut self, i: usize, stdin: bool) {
        // Walk the complete frames in place, then drop them in one go.
        let rbuf = std::mem::take(&mut self.clients[i].rbuf);
        let src = match self.clients[i].kind {
            Kind::Exec { id, .. } => Src::Exec(id),
            _ => Src::Init,
        };
        let mut off = 0;
        while let Some((kind, len)) = proto::frame_len(&rbuf[off..]) {
            let payload = &rbuf[off + proto::HEADER..off + proto::HEADER + len];
            off += proto::HEADER + len;
            if !stdin {
                continue;
            }
            if let Some(io) = self.io_mut(src) {
                match kind {
                    proto::STDIN => io.push_stdin(payload),
                    proto::STDIN_CLOSE => io.on_stdin_eof(),
                    _ => {}
                }
            }
        }
        let mut rest = rbuf;
        rest.drain(..off);
        self.clients[i].rbuf = rest;
    }
}
