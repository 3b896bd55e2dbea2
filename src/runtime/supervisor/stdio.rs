//! A process's stdio as the supervisor holds it (the init's and each exec's): output pipes or
//! the pty master, and stdin with what is queued for it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::lc;
use crate::logger::Stream;

/// The stdio of a process: output pipes (or the pty master as stdout) and stdin.
pub(super) struct Io {
    pub(super) outputs: Vec<(Stream, File)>,
    pub(super) pty: Option<File>,
    pub(super) stdin: Option<File>,
    pub(super) stdin_buf: Vec<u8>,
    /// Close stdin once `stdin_buf` is written.
    pub(super) stdin_close: bool,
    /// Whether a client's stdin EOF closes the process's stdin.
    pub(super) stdin_once: bool,
}

impl Io {
    /// No stdio yet; `stdin_once` as the process was configured.
    pub(super) fn new(stdin_once: bool) -> Io {
        Io {
            outputs: Vec::new(),
            pty: None,
            stdin: None,
            stdin_buf: Vec::new(),
            stdin_close: false,
            stdin_once,
        }
    }

    /// Pipes for stdout and stderr, and for stdin if it is open (else `/dev/null`): this side
    /// is kept, the process's side is returned.
    pub(super) fn pipes(&mut self, open_stdin: bool) -> Result<lc::Stdio, String> {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let in_r = if open_stdin {
            let (in_r, in_w) = pipe()?;
            self.stdin = Some(File::from(in_w));
            in_r
        } else {
            OwnedFd::from(File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?)
        };
        // Read in reverse order: stdout first.
        self.outputs.push((Stream::Stderr, File::from(err_r)));
        self.outputs.push((Stream::Stdout, File::from(out_r)));
        Ok(lc::Stdio::Pipes {
            stdin: in_r,
            stdout: out_w,
            stderr: err_w,
        })
    }

    /// The pty master received from the console socket (resized to `size` if given) as
    /// stdout, stdin and pty.
    pub(super) fn attach_console(
        &mut self,
        fd: OwnedFd,
        size: Option<[u16; 2]>,
    ) -> Result<(), String> {
        if let Some([h, w]) = size {
            let _ = lc::resize(fd.as_raw_fd(), h, w);
        }
        let f = File::from(fd);
        let dup = |f: &File| f.try_clone().map_err(|e| format!("duplicate pty: {e}"));
        self.outputs.push((Stream::Stdout, dup(&f)?));
        self.stdin = Some(dup(&f)?);
        self.pty = Some(f);
        Ok(())
    }

    /// All of it non-blocking: the poll loop never waits on one process.
    pub(super) fn set_nonblocking(&self) {
        for (_, f) in &self.outputs {
            nonblocking(f);
        }
        if let Some(s) = &self.stdin {
            nonblocking(s);
        }
        if let Some(p) = &self.pty {
            nonblocking(p);
        }
    }

    pub(super) fn write_stdin(&mut self) {
        let Some(s) = &mut self.stdin else {
            self.stdin_buf.clear();
            return;
        };
        while !self.stdin_buf.is_empty() {
            match s.write(&self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // The process closed its stdin.
                    self.stdin_buf.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
        if self.stdin_close {
            self.close_stdin();
        }
    }

    fn close_stdin(&mut self) {
        self.stdin_close = false;
        self.stdin = None;
    }

    /// A client's stdin reached EOF. With a TTY nothing happens (as dockerd: a terminal is
    /// never closed by one client going); otherwise `StdinOnce` closes the process's stdin
    /// once what was sent is written.
    pub(super) fn on_stdin_eof(&mut self) {
        if self.pty.is_some() || !self.stdin_once {
            return;
        }
        if self.stdin_buf.is_empty() {
            self.close_stdin();
        } else {
            self.stdin_close = true;
        }
    }

    /// Queue input for the process (with a TTY, `stdin` is the pty master) and write what
    /// it takes now; the rest goes when the poll loop sees it writable.
    pub(super) fn push_stdin(&mut self, data: &[u8]) {
        if self.stdin.is_some() {
            self.stdin_buf.extend_from_slice(data);
            self.write_stdin();
        }
    }

    /// Read one chunk of output `i` into `buf`: `Some((stream, n))`, or `None` (nothing now,
    /// or the output ended and was dropped).
    pub(super) fn read(&mut self, i: usize, buf: &mut [u8]) -> Option<(Stream, usize)> {
        let (stream, f) = &mut self.outputs[i];
        let stream = *stream;
        match f.read(buf) {
            Ok(0) => {
                self.outputs.remove(i);
                None
            }
            Ok(n) => Some((stream, n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            // EIO on a pty master once the last slave fd is closed.
            Err(_) => {
                self.outputs.remove(i);
                None
            }
        }
    }
}

pub(super) fn nonblocking(fd: &impl AsRawFd) {
    if let Ok(flags) = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL) {
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags));
    }
}

/// A fresh console socket at `path`, on which libcontainer sends the pty master.
pub(super) fn console_socket(path: &Path) -> Result<UnixListener, String> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|e| format!("bind console socket: {e}"))
}

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("create pipe: {e}"))
}

/// The supervisor's read buffer, for process output and client requests: 64 KiB of
/// anonymous memory of which only the pages a read fills become resident. As an array on the
/// stack it was touched whole at every read (the stack probes of a large frame) and kept
/// 64 KiB of stack resident for the container's life; a zeroed `Vec` would touch it whole on
/// the heap instead.
pub(super) struct ReadBuf(Mem);

enum Mem {
    Mapped(std::ptr::NonNull<u8>),
    /// When the mapping could not be made.
    Heap(Vec<u8>),
}

impl ReadBuf {
    pub(super) const LEN: usize = 64 * 1024;

    pub(super) fn new() -> ReadBuf {
        // SAFETY: a new private anonymous mapping, owned by the returned value and unmapped in
        // its `Drop`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        match std::ptr::NonNull::new(ptr as *mut u8) {
            Some(p) if ptr != libc::MAP_FAILED => ReadBuf(Mem::Mapped(p)),
            _ => ReadBuf(Mem::Heap(vec![0; Self::LEN])),
        }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.0 {
            // SAFETY: the mapping is LEN bytes, readable and writable (zero-filled when
            // first touched), and lives as long as `self`, which this borrow cannot outlive.
            Mem::Mapped(p) => unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), Self::LEN) },
            Mem::Heap(v) => v,
        }
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if let Mem::Mapped(p) = self.0 {
            // SAFETY: the mapping made in `new`, no longer borrowed.
            unsafe {
                libc::munmap(p.as_ptr() as *mut libc::c_void, Self::LEN);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_buffer_is_zeroed_writable_and_whole() {
        let mut b = ReadBuf::new();
        let s = b.as_mut_slice();
        assert_eq!(s.len(), ReadBuf::LEN);
        assert!(s.iter().all(|&x| x == 0));
        s[0] = 1;
        s[ReadBuf::LEN - 1] = 2;
        assert_eq!((s[0], s[ReadBuf::LEN - 1]), (1, 2));
    }
}
