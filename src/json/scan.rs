//! The lexing core the parser and the text writer share: the parser's
//! position in a body, its first checks (UTF-8, whitespace), where an error
//! is (line and column), and the scan of a string's plain run. The tree
//! (`parse`) and the canonical text (`text`) each build on it.

use super::{Error, ErrorKind};

pub(super) fn error_at(bytes: &[u8], pos: usize, kind: ErrorKind) -> Error {
    let before = &bytes[..pos.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
    Error { kind, line, column }
}

/// Where the first byte that ends a plain run of string text is, from `i`:
/// `"`, `\` or a control character (below 0x20), or `b.len()`: the bytes a
/// string's scan must stop at.
/// Eight bytes at a time: for each test the lowest flagged byte is exact
/// (borrows only spill upwards), so the lowest of the three is too.
pub(super) fn plain_run(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let q = w ^ (LO * u64::from(b'"'));
        let bs = w ^ (LO * u64::from(b'\\'));
        let found = (q.wrapping_sub(LO) & !q)
            | (bs.wrapping_sub(LO) & !bs)
            | (w.wrapping_sub(LO * 0x20) & !w);
        let found = found & HI;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

pub(super) struct Parser<'a> {
    pub(super) text: &'a str,
    pub(super) pos: usize,
    /// Heap bytes of the tree built so far (vectors and unescaped strings).
    pub(super) heap: usize,
}

impl<'a> Parser<'a> {
    /// A parser at the start of a body, which must be UTF-8.
    pub(super) fn of(bytes: &'a [u8]) -> Result<Parser<'a>, Error> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let at = e.valid_up_to();
            error_at(bytes, at + 1, ErrorKind::Utf8(bytes[at]))
        })?;
        Ok(Parser {
            text,
            pos: 0,
            heap: 0,
        })
    }

    pub(super) fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    pub(super) fn err(&self, kind: ErrorKind) -> Error {
        // serde_json's convention: the column of the last byte read.
        error_at(self.bytes(), self.pos + 1, kind)
    }

    pub(super) fn syntax(&self, msg: &'static str) -> Error {
        self.err(ErrorKind::Syntax(msg))
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    pub(super) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }
}
