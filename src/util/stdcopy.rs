//! Docker's stream framing ("stdcopy"): a multiplexed stream is a sequence of frames, each an
//! 8-byte header (the stream's number, three zero bytes, the payload's length as a big-endian
//! `u32`) and the payload. `docker logs`, attach and exec send it to clients without a TTY;
//! berth's supervisor protocol uses the same layout with kinds of its own.

/// The header's length.
pub const HEADER: usize = 8;

/// Stream numbers.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// Append one frame to `out`.
pub fn put_frame(out: &mut Vec<u8>, stream: u8, payload: &[u8]) {
    out.reserve(HEADER + payload.len());
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// One frame of `payload` on `stream`.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_frame(&mut out, stream, payload);
    out
}

/// The frame at the front of `buf`: `(stream, payload length)` once the whole frame is there.
pub fn frame_len(buf: &[u8]) -> Option<(u8, usize)> {
    if buf.len() < HEADER {
        return None;
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    (buf.len() >= HEADER + len).then_some((buf[0], len))
}

/// Take the complete stdout and stderr frames off the front of `pending`, as a client gets
/// them: unchanged when multiplexed, bare payloads when `raw` (a TTY). Frames of other kinds
/// are dropped; a partial frame stays in `pending`.
pub fn take_output(pending: &mut Vec<u8>, raw: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut used = 0;
    while let Some((kind, len)) = frame_len(&pending[used..]) {
        let frame = &pending[used..used + HEADER + len];
        if kind == STDOUT || kind == STDERR {
            if raw {
                out.extend_from_slice(&frame[HEADER..]);
            } else {
                out.extend_from_slice(frame);
            }
        }
        used += HEADER + len;
    }
    pending.drain(..used);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut b = Vec::new();
        put_frame(&mut b, STDOUT, b"hello");
        put_frame(&mut b, 16, b"{}");
        assert_eq!(&b[..8], &[1, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(frame_len(&b), Some((STDOUT, 5)));
        assert_eq!(frame_len(&b[..10]), None);
        assert_eq!(frame_len(&b[13..]), Some((16, 2)));
        assert_eq!(frame(STDERR, b"x"), vec![2, 0, 0, 0, 0, 0, 0, 1, b'x']);
    }

    #[test]
    fn output_frames_pass_or_strip() {
        let mut p = Vec::new();
        put_frame(&mut p, STDOUT, b"ab");
        put_frame(&mut p, STDERR, b"c");
        put_frame(&mut p, 16, b"event");
        p.extend_from_slice(&[1, 0, 0]);
        let mut q = p.clone();
        let out = take_output(&mut p, false);
        assert_eq!(out.len(), 8 + 2 + 8 + 1);
        assert_eq!(p, vec![1, 0, 0]);
        assert_eq!(take_output(&mut q, true), b"abc");
    }
}
