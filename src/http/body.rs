//! Reading a body within limits: at most `Room::limit` bytes as decoded
//! (after gzip, deflate or brotli, and after a charset's decoding), and only
//! as much memory as the caller's `Room` grants as the bytes arrive. A body
//! past the limit is refused, whatever its `Content-Length` said; a body the
//! room cannot hold now is given up, to be asked for again.
//!
//! The buffer grows by steps the room has granted (never by doubling), so a
//! decompression bomb costs at most the limit, and the memory held is what
//! the budget was told.

use crate::charset::{self, Charset};
use std::io::Read;

/// Bytes read at least per growth of the buffer.
const STEP: usize = 256 * 1024;

/// Most of an error answer's body that is read (its start is all that is
/// shown, and response rules look at small fault bodies).
pub const ERROR_BODY_LIMIT: usize = 1024 * 1024;

/// Where a body's bytes are accounted for.
pub trait Room {
    /// Bytes a body may have once decoded; more is refused.
    fn limit(&self) -> usize;
    /// Bytes already held for the body: a `Content-Length` up to this much
    /// sizes the buffer at once.
    fn held(&self) -> usize;
    /// Called once a 2xx answer's headers are in, before its body is read.
    fn settle(&mut self);
    /// Holds `total` bytes for the body (waiting a bounded time for them);
    /// `false` when there is no room now.
    fn grow(&mut self, total: usize) -> bool;
}

/// A room that only limits: a probe, or a token endpoint's answer.
pub struct Unmetered(pub usize);

impl Room for Unmetered {
    fn limit(&self) -> usize {
        self.0
    }
    fn held(&self) -> usize {
        self.0
    }
    fn settle(&mut self) {}
    fn grow(&mut self, _: usize) -> bool {
        true
    }
}

/// Why a body was not read whole.
#[derive(Debug)]
pub enum Cut {
    /// More than `limit` bytes once decoded.
    TooLarge { limit: usize },
    /// The room refused more than `read` bytes for now.
    NoRoom { read: usize },
    /// The connection failed or the stream was not what it claimed.
    Transport(ureq::Error),
}

impl Cut {
    /// The failure's message, naming the limit in MiB.
    pub fn message(&self) -> String {
        match self {
            Cut::TooLarge { limit } => format!(
                "body larger than {} after decompression (max_body_mb)",
                mib(*limit)
            ),
            Cut::NoRoom { read } => format!(
                "the memory budget (memory_mb) had no room for this body past {} now",
                mib(*read)
            ),
            Cut::Transport(e) => super::failure::transport_message(e),
        }
    }
}

/// `64 MiB`, or `0.5 MiB` below one.
fn mib(bytes: usize) -> String {
    let m = bytes as f64 / (1 << 20) as f64;
    if m >= 1.0 && m.fract() == 0.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

/// Reads a body through `room`: its bytes as decoded by its content coding.
pub fn read(body: &mut ureq::Body, room: &mut dyn Room) -> Result<Vec<u8>, Cut> {
    let hint = body
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    // ureq's own limit is lifted: this function counts, to name the limit.
    let mut reader = body.with_config().limit(u64::MAX).reader();
    read_from(&mut reader, hint, room)
}

/// Reads at most `limit` bytes of an error answer's body; the rest is left
/// (the connection is then closed by ureq). A failed read keeps what came.
pub fn read_prefix(body: &mut ureq::Body, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let reader = body.with_config().limit(u64::MAX).reader();
    let _ = reader.take(limit as u64).read_to_end(&mut buf);
    buf
}

/// The loop of `read`, over any reader (unit-tested without a socket).
/// `hint` is the declared length, trusted only to size the buffer within
/// what the room already holds.
fn read_from(reader: &mut dyn Read, hint: usize, room: &mut dyn Room) -> Result<Vec<u8>, Cut> {
    let limit = room.limit();
    // One byte more than the limit is room to see that the body goes past it;
    // one more than the hint, to see its end without growing.
    let most = limit.saturating_add(1);
    let first = hint.saturating_add(1).min(most).min(room.held().max(1));
    let mut buf: Vec<u8> = Vec::new();
    buf.reserve_exact(first);
    buf.resize(first, 0);
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if filled > limit {
                return Err(Cut::TooLarge { limit });
            }
            let next = (filled + (filled / 2).max(STEP)).min(most);
            if !room.grow(next) {
                return Err(Cut::NoRoom { read: filled });
            }
            buf.reserve_exact(next - filled);
            buf.resize(next, 0);
        }
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Cut::Transport(ureq::Error::Io(e))),
        }
    }
    if filled > limit {
        return Err(Cut::TooLarge { limit });
    }
    buf.truncate(filled);
    // A body that came in below its reservation gives the slack back.
    if buf.capacity() - buf.len() > buf.len() / 16 {
        buf.shrink_to_fit();
    }
    Ok(buf)
}

/// A 2xx body in UTF-8 by its charset, still within the limit and the room
/// (a Windows-1252 body grows when decoded, and both are held meanwhile).
pub fn decode(body: Vec<u8>, charset: Charset, room: &mut dyn Room) -> Result<Vec<u8>, Cut> {
    let decoded = charset::decoded_len(&body, charset);
    if decoded == body.len() {
        return Ok(charset::decode(body, charset));
    }
    if decoded > room.limit() {
        return Err(Cut::TooLarge {
            limit: room.limit(),
        });
    }
    if !room.grow(body.len() + decoded) {
        return Err(Cut::NoRoom { read: body.len() });
    }
    Ok(charset::decode(body, charset))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A room of `cap` bytes that records what it was asked for.
    struct Capped {
        limit: usize,
        cap: usize,
        held: usize,
        asked: Vec<usize>,
    }

    impl Room for Capped {
        fn limit(&self) -> usize {
            self.limit
        }
        fn held(&self) -> usize {
            self.held
        }
        fn settle(&mut self) {}
        fn grow(&mut self, total: usize) -> bool {
            self.asked.push(total);
            if total <= self.cap {
                self.held = self.held.max(total);
                true
            } else {
                false
            }
        }
    }

    fn room(limit: usize, cap: usize, held: usize) -> Capped {
        Capped {
            limit,
            cap,
            held,
            asked: Vec::new(),
        }
    }

    /// A reader of `n` bytes handed out a few at a time.
    struct Drip(usize);
    impl Read for Drip {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.min(buf.len()).min(7000);
            buf[..n].fill(b' ');
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_body_within_the_limit_is_read_whole() {
        let mut r = room(10 << 20, 10 << 20, 0);
        let body = read_from(&mut Drip(3_000_000), 0, &mut r).unwrap();
        assert_eq!(body.len(), 3_000_000);
        assert!(
            r.asked
                .iter()
                .all(|&a| a <= 3_000_000 + 3_000_000 / 2 + STEP),
            "grown by steps, never far past the body: {:?}",
            r.asked
        );
    }

    #[test]
    fn a_declared_length_within_the_room_sizes_the_buffer_once() {
        let mut r = room(10 << 20, 10 << 20, 1 << 20);
        let body = read_from(&mut Drip(500_000), 500_000, &mut r).unwrap();
        assert_eq!(body.len(), 500_000);
        assert!(r.asked.is_empty(), "no growth needed: {:?}", r.asked);
        // A lying Content-Length is trusted only as far as the room holds.
        let mut r = room(10 << 20, 10 << 20, 4096);
        let body = read_from(&mut Drip(10), 1 << 40, &mut r).unwrap();
        assert_eq!(body.len(), 10);
        assert!(body.capacity() < 1 << 20);
    }

    #[test]
    fn past_the_limit_the_body_is_refused_without_holding_more() {
        let mut r = room(1 << 20, 64 << 20, 0);
        let cut = read_from(&mut Drip(1 << 30), 0, &mut r).unwrap_err();
        assert!(matches!(cut, Cut::TooLarge { limit } if limit == 1 << 20));
        assert_eq!(
            cut.message(),
            "body larger than 1 MiB after decompression (max_body_mb)"
        );
        assert!(r.asked.iter().all(|&a| a <= (1 << 20) + 1), "{:?}", r.asked);
        // Exactly at the limit is accepted.
        let mut r = room(1 << 20, 64 << 20, 0);
        assert_eq!(
            read_from(&mut Drip(1 << 20), 0, &mut r).unwrap().len(),
            1 << 20
        );
    }

    #[test]
    fn a_room_that_is_full_cuts_the_body() {
        let mut r = room(64 << 20, 1 << 20, 0);
        let cut = read_from(&mut Drip(5 << 20), 0, &mut r).unwrap_err();
        match cut {
            Cut::NoRoom { read } => assert!(read <= 1 << 20),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failing_stream_is_a_transport_cut() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("reset by peer"))
            }
        }
        let mut r = room(1 << 20, 1 << 20, 0);
        assert!(matches!(
            read_from(&mut Broken, 0, &mut r),
            Err(Cut::Transport(_))
        ));
    }

    #[test]
    fn a_decoded_body_counts_against_the_limit() {
        let latin1 = vec![0xe9u8; 1000];
        let mut r = room(1500, 1 << 20, 0);
        assert!(matches!(
            decode(latin1.clone(), Charset::Windows1252, &mut r),
            Err(Cut::TooLarge { limit: 1500 })
        ));
        let mut r = room(4000, 1 << 20, 0);
        let text = decode(latin1, Charset::Windows1252, &mut r).unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), "é".repeat(1000));
        assert_eq!(r.asked, vec![3000]);
    }
}
