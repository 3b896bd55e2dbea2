//! Attaching to a container (moby's `daemon/attach.go` and `container/stream`): the API layer
//! hands over the client's connection (hijacked, a websocket, or a response body to fill) and
//! everything else happens here: the replayed log, the copy loops between the client and the
//! container's stdio, stdin framing, the detach keys, noticing a client that hung up, TTY
//! resizes and the attach/detach events. Exec streams use the same pump.

use std::future::Future;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::WebSocketStream;

use super::logs::LogsOptions;
use super::manager::{lock, ContainerManager, WaitCondition};
use super::ContainerError;
use crate::logger::Stream;
use crate::runtime::{Output, StdioConn};
use crate::util::io::ByteReceiver;
use crate::util::stdcopy;

/// Any stream a client's connection can be.
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// A client's connection, taken over from HTTP.
pub struct ClientConn {
    pub io: Box<dyn ClientIo>,
    /// What the HTTP server had read past the request: early stdin.
    pub early: Bytes,
    /// A Unix-socket client's descriptor, to notice a client that went away while the
    /// container writes nothing (over TCP that shows at the next write).
    pub fd: Option<RawFd>,
}

/// `POST /containers/{id}/attach` options.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The live stream.
    pub stream: bool,
    /// Replay the log first.
    pub logs: bool,
    /// moby's notation, e.g. `ctrl-p,ctrl-q`; `None` for the default.
    pub detach_keys: Option<String>,
    /// A websocket attach: raw output whatever the TTY, no detach keys.
    pub websocket: bool,
}

/// The container's stdio once it runs (`None` if it ends or goes first).
type LiveStdio = oneshot::Receiver<Option<StdioConn>>;

/// An attach ready to serve a client.
pub struct AttachSession {
    manager: Arc<ContainerManager>,
    container: String,
    tty: bool,
    stdin: bool,
    stdin_once: bool,
    detach_keys: Vec<u8>,
    preamble: Vec<u8>,
    live: Option<LiveStdio>,
}

impl ContainerManager {
    /// Prepare an attach: the replayed log and, with `stream`, the container's stdio (at once
    /// for a running container, at its start for a created one).
    pub async fn attach(
        self: &Arc<Self>,
        name: &str,
        opts: AttachOptions,
    ) -> Result<AttachSession, ContainerError> {
        let detach_keys = match opts.detach_keys.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => parse_detach_keys(k)?,
            None => DEFAULT_DETACH_KEYS.to_vec(),
        };
        let c = self.get(name)?;
        let (tty, stdin_once) = c.with_record(|r| {
            (
                r.config.tty.unwrap_or(false),
                r.config.stdin_once.unwrap_or(false),
            )
        });
        let raw = tty || opts.websocket;
        let preamble = if opts.logs {
            self.logged_output(name, opts.stdout, opts.stderr, !raw)
                .await
        } else {
            Vec::new()
        };
        let live = if opts.stream {
            Some(
                self.attach_stdio(name, opts.stdin, opts.stdout, opts.stderr)
                    .await?,
            )
        } else {
            None
        };
        Ok(AttachSession {
            manager: self.clone(),
            container: name.to_string(),
            tty,
            stdin: opts.stdin,
            stdin_once,
            detach_keys,
            preamble,
            live,
        })
    }

    /// Start a created container with its output attached first (nothing is missed), as
    /// dockerd's builder runs a step (`ContainerAttachRaw`, then start). The stream carries
    /// stdout and stderr frames and ends with the process.
    pub async fn start_attached(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<crate::runtime::StdioConn, ContainerError> {
        let rx = self.attach_stdio(name, false, true, true).await?;
        self.start(name).await?;
        match rx.await {
            Ok(Some(s)) => Ok(s),
            _ => Err(ContainerError::internal(format!(
                "container {name} ended before its output was attached"
            ))),
        }
    }

    /// The container's stdio for an attach: at once for a running container, at start for
    /// a created one. Resolves to `None` if the container ends or goes first.
    async fn attach_stdio(
        self: &Arc<Self>,
        name: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<LiveStdio, ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        let (tx, rx) = oneshot::channel();
        // Register under the op lock so that a concurrent start either sees us or has
        // already made the supervisor reachable.
        {
            let _op = c.op.lock().await;
            self.publish(&r, "attach");
            if !c.status().is_running() {
                lock(&c.pending_attach).push((stdin, stdout, stderr, tx));
                return Ok(rx);
            }
        }
        // Running: connect outside the lock (a supervisor that went meanwhile just ends
        // the stream).
        let s = self.runtime.attach(&c.id, stdin, stdout, stderr).await.ok();
        let _ = tx.send(s);
        Ok(rx)
    }

    /// The container's logged output, framed as an attach stream delivers it (`logs=1`).
    async fn logged_output(
        self: &Arc<Self>,
        name: &str,
        stdout: bool,
        stderr: bool,
        multiplexed: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        if !stdout && !stderr {
            return out;
        }
        let opts = LogsOptions {
            stdout,
            stderr,
            ..Default::default()
        };
        let Ok((_, mut entries)) = self.log_entries(name, opts).await else {
            return out;
        };
        while let Some(e) = entries.recv().await {
            if multiplexed {
                stdcopy::put_frame(&mut out, stream_number(e.stream), &e.line);
            } else {
                out.extend_from_slice(&e.line);
            }
        }
        out
    }

    /// Wait (a few seconds at most) until the container's exit is recorded, so that a client
    /// whose stream ended sees it stopped.
    async fn settled(self: &Arc<Self>, name: &str) {
        if let Ok(done) = self.wait(name, WaitCondition::NotRunning) {
            let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
        }
    }

    /// A client detached with the detach keys.
    fn detached(&self, name: &str) {
        if let Ok(c) = self.get(name) {
            self.publish(&c.record(), "detach");
        }
    }

    /// `POST /containers/{id}/resize`: the TTY's new size.
    pub async fn resize(&self, name: &str, height: u16, width: u16) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        if !c.status().is_running() {
            return Err(ContainerError::not_running(&c.id));
        }
        self.runtime.resize(&c.id, height, width, None).await?;
        self.events.publish(
            self.event(&c.record(), "resize")
                .attribute("height", height.to_string())
                .attribute("width", width.to_string()),
        );
        Ok(())
    }
}

/// The stdcopy stream number of a log entry's stream.
pub(super) fn stream_number(s: Stream) -> u8 {
    match s {
        Stream::Stdout => stdcopy::STDOUT,
        Stream::Stderr => stdcopy::STDERR,
    }
}

impl AttachSession {
    /// Whether the container has a TTY (then the stream is raw, not multiplexed).
    pub fn tty(&self) -> bool {
        self.tty
    }

    /// Serve a hijacked connection: the replayed log, then stdin and output until the
    /// process ends, the client detaches or goes.
    pub async fn serve(self, mut client: ClientConn) {
        let AttachSession {
            manager,
            container,
            tty,
            stdin,
            stdin_once,
            detach_keys,
            preamble,
            live,
        } = self;
        if !preamble.is_empty() && client.io.write_all(&preamble).await.is_err() {
            return;
        }
        let Some(live) = live else {
            let _ = client.io.shutdown().await;
            return;
        };
        let Ok(Some(stdio)) = live.await else {
            let _ = client.io.shutdown().await;
            return;
        };
        // The stream ends when the process does; the client then sees it stopped.
        let settle = {
            let manager = manager.clone();
            let container = container.clone();
            async move { manager.settled(&container).await }
        };
        let stdin = StdinMode {
            forward: stdin,
            tty,
            close_with_client: stdin_once,
            detach_keys,
        };
        let end = pump(client, stdio, tty, stdin, settle).await;
        tracing::debug!("attach to {container} ended: {end:?}");
        if end == PumpEnd::Detached {
            manager.detached(&container);
        }
    }

    /// Output only, as a response body: the replayed log, then the live output; the body ends
    /// once the container's exit is recorded.
    pub fn into_body(self) -> ByteReceiver {
        let manager = self.manager.clone();
        let container = self.container.clone();
        let settle = async move { manager.settled(&container).await };
        output_body(self.preamble, self.live, self.tty, settle)
    }

    /// Serve a websocket: raw output as messages (binary, or text before API 1.42), messages
    /// from the client as stdin.
    pub async fn serve_websocket<S>(self, ws: WebSocketStream<S>, binary: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        use futures_util::{SinkExt, StreamExt};
        let message = move |data: Vec<u8>| {
            if binary {
                Message::Binary(data.into())
            } else {
                Message::Text(String::from_utf8_lossy(&data).into_owned().into())
            }
        };
        let (mut sink, mut incoming) = ws.split();
        if !self.preamble.is_empty() && sink.send(message(self.preamble)).await.is_err() {
            return;
        }
        let Some(live) = self.live else {
            let _ = sink.close().await;
            return;
        };
        let Ok(Some(stdio)) = live.await else {
            let _ = sink.close().await;
            return;
        };
        let stdin = self.stdin;
        let (mut output, mut sup_stdin) = stdio.split();
        let input = async move {
            while let Some(Ok(m)) = incoming.next().await {
                let data: Vec<u8> = match m {
                    Message::Text(t) => t.as_bytes().to_vec(),
                    Message::Binary(b) => b.to_vec(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if !stdin || data.is_empty() {
                    continue;
                }
                if sup_stdin.write(&data).await.is_err() {
                    return;
                }
            }
        };
        let output = async move {
            // Websocket attach is always raw: frame headers are stripped.
            while let Some(out) = output.next(true).await {
                if sink.send(message(out)).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        };
        tokio::select! {
            _ = output => {}
            _ = input => {}
        }
    }
}

/// A response body fed from a container's or an exec's stdio (no hijacking); `after` runs once
/// the output ended, before the body does.
pub(super) fn output_body<F>(
    preamble: Vec<u8>,
    live: Option<LiveStdio>,
    tty: bool,
    after: F,
) -> ByteReceiver
where
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        if !preamble.is_empty() && tx.send(Ok(Bytes::from(preamble))).await.is_err() {
            return;
        }
        let Some(live) = live else {
            return;
        };
        let Ok(Some(stdio)) = live.await else {
            return;
        };
        let (mut output, _stdin) = stdio.split();
        loop {
            let out = tokio::select! {
                o = output.next(tty) => match o {
                    Some(o) => o,
                    None => break,
                },
                _ = tx.closed() => return,
            };
            if tx.send(Ok(Bytes::from(out))).await.is_err() {
                return;
            }
        }
        after.await;
    });
    rx
}

/// moby's `term.ToBytes`: `ctrl-p,ctrl-q` and the like into the bytes they type. Each
/// comma-separated key is one character, `DEL`, or `ctrl-` with one of `@`, `a`…`z`, `[`,
/// `\\`, `]`, `^`, `_` (lower case only, no spaces, as moby's table).
pub fn parse_detach_keys(keys: &str) -> Result<Vec<u8>, ContainerError> {
    let bad = || ContainerError::invalid(format!("Invalid detach keys ({keys}) provided"));
    let mut out = Vec::new();
    for k in keys.split(',') {
        if k.len() == 1 {
            out.push(k.as_bytes()[0]);
            continue;
        }
        if k == "DEL" {
            out.push(127);
            continue;
        }
        let b = match k.strip_prefix("ctrl-").map(str::as_bytes) {
            Some([x]) if x.is_ascii_lowercase() => x - b'a' + 1,
            Some([b'@']) => 0,
            Some([b'[']) => 27,
            Some([b'\\']) => 28,
            Some([b']']) => 29,
            Some([b'^']) => 30,
            Some([b'_']) => 31,
            _ => return Err(bad()),
        };
        out.push(b);
    }
    Ok(out)
}

/// The default detach sequence, ctrl-p ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[16, 17];

/// Passes stdin through, holding back a partial detach sequence; `true` once the whole
/// sequence was typed.
struct DetachFilter {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachFilter {
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(data);
            return false;
        }
        for &b in data {
            if !self.keys.is_empty() && b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return true;
                }
                continue;
            }
            // A mismatch: the held-back prefix was ordinary input after all, and so is this
            // byte (moby's escape proxy does not start a new match on it).
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            out.push(b);
        }
        false
    }
}

/// How a pumped stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The process's output ended (it exited).
    Output,
    /// The client typed the detach keys.
    Detached,
    /// The client or the supervisor went away.
    Gone,
}

/// What happens to a client's stdin.
pub(super) struct StdinMode {
    /// Forward it at all (`stdin=1`).
    pub(super) forward: bool,
    /// The process has a TTY: detach keys apply and the client's EOF ends the attach.
    pub(super) tty: bool,
    /// The client's EOF closes the process's stdin (`StdinOnce`, and every exec) rather than
    /// ending the attach; ignored with a TTY.
    pub(super) close_with_client: bool,
    /// Applied with a TTY only, as dockerd does: binary stdin passes untouched.
    pub(super) detach_keys: Vec<u8>,
}

/// Copy between a client's connection and a process's stdio (its output `raw`, or stdcopy
/// frames); `before_close` runs after the output ended and before the client's stream is
/// closed.
pub(super) async fn pump<F>(
    client: ClientConn,
    stdio: StdioConn,
    raw: bool,
    stdin: StdinMode,
    before_close: F,
) -> PumpEnd
where
    F: Future<Output = ()> + Send,
{
    let ClientConn { io, early, fd } = client;
    let (client_r, mut client_w) = tokio::io::split(io);
    let (output, sup_stdin) = stdio.split();
    let input = forward_stdin(client_r, early, fd, sup_stdin, stdin);
    let output = async move {
        let end = copy_output(output, &mut client_w, raw).await;
        if end == PumpEnd::Output {
            let _ = client_w.flush().await;
            before_close.await;
            let _ = client_w.shutdown().await;
        }
        end
    };
    tokio::select! {
        end = output => end,
        end = input => end,
    }
}

async fn copy_output<W: AsyncWrite + Unpin>(
    mut output: Output,
    client: &mut W,
    tty: bool,
) -> PumpEnd {
    while let Some(out) = output.next(tty).await {
        if let Err(e) = client.write_all(&out).await {
            tracing::debug!("attach: write to the client: {e}");
            return PumpEnd::Gone;
        }
    }
    PumpEnd::Output
}

/// The stdin side of [`pump`].
async fn forward_stdin<R: AsyncRead + Unpin>(
    mut client: R,
    early: Bytes,
    fd: Option<RawFd>,
    mut sup: crate::runtime::Stdin,
    mode: StdinMode,
) -> PumpEnd {
    let tty = mode.tty;
    if !mode.forward {
        // Nothing to forward: wait for the output side to end, or the client to go.
        hung_up(fd).await;
        return PumpEnd::Gone;
    }
    // moby's `copyEscapable`: with a TTY, no keys means the default sequence.
    let keys = match mode.detach_keys {
        k if k.is_empty() => DEFAULT_DETACH_KEYS.to_vec(),
        k => k,
    };
    let mut filter = DetachFilter {
        keys: if tty { keys } else { Vec::new() },
        matched: 0,
    };
    let mut buf = vec![0u8; 32 * 1024];
    let mut data = Vec::with_capacity(buf.len());
    let mut early = Some(early);
    loop {
        let read = match early.take().filter(|e| !e.is_empty()) {
            Some(e) => {
                let n = e.len().min(buf.len());
                buf[..n].copy_from_slice(&e[..n]);
                if n < e.len() {
                    early = Some(e.slice(n..));
                }
                Ok(n)
            }
            None => client.read(&mut buf).await,
        };
        match read {
            Ok(0) | Err(_) => {
                // As dockerd: unless the process's stdin closes with this client's (no TTY,
                // StdinOnce), the client's EOF ends its attach.
                if tty || !mode.close_with_client {
                    return PumpEnd::Gone;
                }
                let _ = sup.close().await;
                // Keep the write half open: closing it would end the attach; the output
                // goes on until the process ends (a client's CloseWrite) or the client is
                // gone altogether.
                hung_up(fd).await;
                return PumpEnd::Gone;
            }
            Ok(n) => {
                data.clear();
                let detached = filter.feed(&buf[..n], &mut data);
                if let Err(e) = sup.write(&data).await {
                    tracing::debug!("attach: write to the supervisor: {e}");
                    return PumpEnd::Gone;
                }
                if detached {
                    return PumpEnd::Detached;
                }
            }
        }
    }
}

/// Resolves once the peer of `fd` has closed both directions (a client that went away, not
/// one that only closed its stdin). Never resolves without an fd.
async fn hung_up(fd: Option<RawFd>) {
    let Some(fd) = fd else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut p = [libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        }];
        // SAFETY: a zero-timeout poll of one fd that the caller keeps open meanwhile.
        let n = unsafe { libc::poll(p.as_mut_ptr(), 1, 0) };
        if n > 0 && p[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_and_filter() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("ctrl-a,z").unwrap(), vec![1, b'z']);
        assert!(parse_detach_keys("ctrl-").is_err());
        assert!(parse_detach_keys("abc").is_err());
        assert_eq!(parse_detach_keys("ctrl-p").unwrap(), vec![16]);
        assert_eq!(
            parse_detach_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,DEL").unwrap(),
            vec![0, 27, 28, 29, 30, 31, 127]
        );
        // moby's table: lower case only, no spaces, no empty keys.
        assert!(parse_detach_keys("ctrl-P").is_err());
        assert!(parse_detach_keys("ctrl-p, ctrl-q").is_err());
        assert!(parse_detach_keys("a,,b").is_err());
        assert!(parse_detach_keys(",").is_err());
        let mut f = DetachFilter {
            keys: vec![16, 17],
            matched: 0,
        };
        let mut out = Vec::new();
        assert!(!f.feed(b"ab\x10", &mut out));
        assert_eq!(out, b"ab");
        out.clear();
        assert!(!f.feed(b"x\x10", &mut out));
        assert_eq!(out, b"\x10x");
        out.clear();
        assert!(f.feed(b"\x11", &mut out));
        assert!(out.is_empty());
        // As moby's proxy: ctrl-p ctrl-p ctrl-q is input, the second ctrl-p starts nothing.
        let mut f = DetachFilter {
            keys: vec![16, 17],
            matched: 0,
        };
        out.clear();
        assert!(!f.feed(b"\x10\x10\x11", &mut out));
        assert_eq!(out, b"\x10\x10\x11");
    }
}
