//! A gzip stream hand-assembled from deflate blocks (RFC 1951/1952), for `--hostile`'s
//! `gzip_bomb`: `size` bytes of spaces followed by a page's own body. The spaces cost about
//! one byte per thousand on the wire and nothing to build: one dynamic-Huffman block whose
//! every symbol is "repeat the last 258 bytes" (two bits each) is written once and repeated,
//! byte-aligned by an empty stored block after it (zlib's sync flush), and the trailer's
//! CRC-32 is combined arithmetically (zlib's `crc32_combine`) instead of read over the
//! inflated bytes. Leading whitespace is valid JSON, so the inflated text holds exactly the
//! page's records: only a client without a limit on inflated bodies is hurt.

use std::sync::OnceLock;

/// Matches of 258 bytes in one repeated block: 16 KiB of block inflating to 16.1 MiB.
const MATCHES: u64 = 65_536;
/// The longest match deflate has.
const MATCH: u64 = 258;

/// Deflate's bit order: fields least significant bit first, Huffman codes most first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    /// `count` bits of `value`, least significant first.
    fn put(&mut self, value: u64, count: u32) {
        for i in 0..count {
            self.acc |= ((value >> i) & 1) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                (self.acc, self.n) = (0, 0);
            }
        }
    }

    /// A Huffman code of `len` bits, most significant first.
    fn code(&mut self, code: u64, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }

    /// An empty stored block (not final): the stream is byte-aligned after it.
    fn sync(&mut self) {
        self.put(0, 3);
        if self.n > 0 {
            self.put(0, 8 - self.n);
        }
        self.out.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    }

    fn fixed_space(&mut self) {
        // Fixed code of literals 0..=143: 0x30 + literal, 8 bits.
        self.code(0x30 + u64::from(b' '), 8);
    }

    fn fixed_match_258(&mut self) {
        // Length 258 is symbol 285 (8 bits: 0xC0 + 5), distance 1 is code 0 (5 bits).
        self.code(0xC0 + 5, 8);
        self.code(0, 5);
    }
}

/// The one block repeated: dynamic Huffman codes where length 258 (symbol 285) and
/// end-of-block (256) take one bit each, and distance 1 (code 0) one bit.
fn repeated_block() -> Vec<u8> {
    let mut b = Bits::default();
    b.put(0, 1); // not final
    b.put(2, 2); // dynamic Huffman
    b.put(29, 5); // HLIT: 286 literal/length codes
    b.put(1, 5); // HDIST: 2 distance codes (a complete code of two 1-bit codes)
    b.put(14, 4); // HCLEN: 18 code-length codes, up to the one for length 1
                  // Code-length code lengths in their transmission order 16,17,18,0,8,7,9,6,10,5,11,4,
                  // 12,3,13,2,14,1: only 18 (a run of zeros) and 1 are used, one bit each.
    for i in 0..18 {
        b.put(u64::from(i == 2 || i == 17), 3);
    }
    // Canonical codes: length 1 is `0`, the run of zeros (18) is `1`, 7 extra bits of 11..138.
    let zeros = |b: &mut Bits, n: u64| {
        b.code(1, 1);
        b.put(n - 11, 7);
    };
    zeros(&mut b, 138);
    zeros(&mut b, 118); // literals 0..=255: no code
    b.code(0, 1); // 256 (end of block): 1 bit
    zeros(&mut b, 28); // 257..=284: no code
    b.code(0, 1); // 285 (length 258): 1 bit
    b.code(0, 1); // distance code 0: 1 bit
    b.code(0, 1); // distance code 1: 1 bit (unused)
                  // Canonical codes of the block: 256 is `0`, 285 is `1`; distance 0 is `0`.
    for _ in 0..MATCHES {
        b.code(1, 1);
        b.code(0, 1);
    }
    b.code(0, 1); // end of block
    b.sync();
    b.out
}

static TABLE: OnceLock<[u32; 256]> = OnceLock::new();

fn crc32(mut crc: u32, bytes: &[u8]) -> u32 {
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    crc = !crc;
    for &b in bytes {
        crc = table[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

fn gf2_times(mat: &[u32; 32], mut vec: u32) -> u32 {
    let mut sum = 0;
    let mut i = 0;
    while vec != 0 {
        if vec & 1 == 1 {
            sum ^= mat[i];
        }
        vec >>= 1;
        i += 1;
    }
    sum
}

fn gf2_square(mat: &[u32; 32]) -> [u32; 32] {
    let mut sq = [0u32; 32];
    for (n, s) in sq.iter_mut().enumerate() {
        *s = gf2_times(mat, mat[n]);
    }
    sq
}

/// The CRC-32 of A followed by B from the CRCs of both and B's length (zlib's method).
fn crc32_combine(crc1: u32, crc2: u32, mut len2: u64) -> u32 {
    if len2 == 0 {
        return crc1;
    }
    // The operator for one zero bit, then two, then four.
    let mut odd = [0u32; 32];
    odd[0] = 0xEDB8_8320;
    for (n, o) in odd.iter_mut().enumerate().skip(1) {
        *o = 1 << (n - 1);
    }
    let mut even = gf2_square(&odd);
    odd = gf2_square(&even);
    let mut crc1 = crc1;
    loop {
        even = gf2_square(&odd);
        if len2 & 1 == 1 {
            crc1 = gf2_times(&even, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
        odd = gf2_square(&even);
        if len2 & 1 == 1 {
            crc1 = gf2_times(&odd, crc1);
        }
        len2 >>= 1;
        if len2 == 0 {
            break;
        }
    }
    crc1 ^ crc2
}

/// The CRC-32 of `n` spaces, by doubling.
fn crc_of_spaces(n: u64) -> u32 {
    let (mut crc, mut power, mut len) = (0u32, crc32(0, b" "), 1u64);
    let mut left = n;
    while left > 0 {
        if left & 1 == 1 {
            crc = crc32_combine(crc, power, len);
        }
        power = crc32_combine(power, power, len);
        len *= 2;
        left >>= 1;
    }
    crc
}

/// The deflate blocks of `size` spaces (at least one), byte-aligned, and their CRC-32.
struct Spaces {
    deflate: Vec<u8>,
    crc: u32,
    size: u64,
}

fn spaces(size: u64) -> Spaces {
    let size = size.max(1);
    let mut b = Bits::default();
    // The first space as a literal: the matches after it copy it.
    b.put(0, 1);
    b.put(1, 2); // fixed Huffman
    b.fixed_space();
    b.code(0, 7); // end of block
    b.sync();
    let per_block = MATCHES * MATCH;
    let blocks = (size - 1) / per_block;
    let rest = (size - 1) % per_block;
    let block = repeated_block();
    let mut deflate = b.out;
    deflate.reserve(block.len() * blocks as usize + (rest / MATCH) as usize * 2 + 64);
    for _ in 0..blocks {
        deflate.extend_from_slice(&block);
    }
    let mut b = Bits {
        out: deflate,
        ..Bits::default()
    };
    if rest > 0 {
        b.put(0, 1);
        b.put(1, 2);
        for _ in 0..rest / MATCH {
            b.fixed_match_258();
        }
        for _ in 0..rest % MATCH {
            b.fixed_space();
        }
        b.code(0, 7);
        b.sync();
    }
    Spaces {
        deflate: b.out,
        crc: crc_of_spaces(size),
        size,
    }
}

/// A gzip member inflating to `size` spaces (at least one) followed by `tail`. The spaces'
/// blocks are built once per size and kept.
pub fn bomb(size: u64, tail: &[u8]) -> Vec<u8> {
    static CACHE: OnceLock<std::sync::Mutex<Option<std::sync::Arc<Spaces>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let sp = {
        let mut slot = crate::state::lock(cache);
        match &*slot {
            Some(s) if s.size == size.max(1) => std::sync::Arc::clone(s),
            _ => {
                let s = std::sync::Arc::new(spaces(size));
                *slot = Some(std::sync::Arc::clone(&s));
                s
            }
        }
    };
    let mut out = Vec::with_capacity(sp.deflate.len() + tail.len() + 64);
    // ID1 ID2, deflate, no flags, no mtime, no extra flags, unknown OS.
    out.extend_from_slice(&[0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF]);
    out.extend_from_slice(&sp.deflate);
    // The tail in stored blocks of at most 65,535 bytes, the last one final.
    let mut chunks = tail.chunks(0xFFFF).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[0x03, 0x00]); // a final fixed block with only end-of-block
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none())); // BFINAL, stored, aligned
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let crc = crc32_combine(sp.crc, crc32(0, tail), tail.len() as u64);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&((sp.size + tail.len() as u64) as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_combine_matches_the_direct_crc() {
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
        let (a, b) = (b"hello, ".as_slice(), b"world".as_slice());
        let whole = crc32(0, b"hello, world");
        assert_eq!(crc32_combine(crc32(0, a), crc32(0, b), 5), whole);
        for n in [1u64, 2, 3, 255, 258, 1000, 70_001] {
            let direct = crc32(0, &vec![b' '; n as usize]);
            assert_eq!(crc_of_spaces(n), direct, "{n}");
        }
    }

    /// What a client decodes: ureq inflates `Content-Encoding: gzip` and checks the CRC and
    /// the size in the trailer (a wrong one is a read error).
    #[test]
    fn the_bomb_inflates_to_spaces_then_the_tail() {
        use std::io::Read;
        // Two whole repeated blocks, a remainder with matches and literals, a tail of
        // two stored blocks.
        let size = 2 * MATCHES * MATCH + 5 * MATCH + 7;
        let tail: Vec<u8> = (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let gz = bomb(size, &tail);
        assert!(gz.len() < 60_000 + tail.len(), "{} bytes", gz.len());
        let mut d = flate_reader(&gz);
        let mut out = Vec::new();
        d.read_to_end(&mut out).expect("a valid gzip stream");
        assert_eq!(out.len() as u64, size + tail.len() as u64);
        assert!(out[..size as usize].iter().all(|&c| c == b' '));
        assert_eq!(&out[size as usize..], &tail[..]);
        // The smallest: one space, an empty tail.
        let mut out = Vec::new();
        flate_reader(&bomb(1, b""))
            .read_to_end(&mut out)
            .expect("gzip");
        assert_eq!(out, b" ");
    }

    /// A reader inflating `gz` through ureq's own gzip support (the client atlas uses), by
    /// serving it once on a loopback socket.
    fn flate_reader(gz: &[u8]) -> impl std::io::Read {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let gz = gz.to_vec();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut s, &mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    gz.len()
                );
                let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(&gz));
            }
        });
        let response = ureq::get(&format!("http://{addr}/")).call().expect("GET");
        response
            .into_body()
            .into_with_config()
            .limit(u64::MAX)
            .reader()
    }
}
