//! A borrowed JSON tree for the hot path: a page is parsed once, strings
//! and keys point into the response body (no copy unless escaped), numbers
//! are the body's own text, pointers are looked up on it, and records are
//! written in canonical form from it.
//!
//! Invariants:
//! - Numbers are kept exactly as the API wrote them (`1234.5600`, `1e400`,
//!   30-digit integers): never rounded through `f64`, and written back
//!   verbatim by `canonical` (SPEC §4 as amended: numbers as written).
//! - Nesting is bounded by `MAX_DEPTH`. The parser itself is iterative (no
//!   recursion), so a body nested 100,000 deep is refused with an error, not
//!   a stack overflow; the recursive walks (canonical text, drop) only ever
//!   see trees of at most `MAX_DEPTH` levels, which fit in `THREAD_STACK`.
//! - `canonical` writes keys sorted by code point (last duplicate wins), no
//!   whitespace, strings as UTF-8 with serde_json's (and Python's) escapes,
//!   and U+0000 as U+FFFD, because PostgreSQL's JSONB cannot hold U+0000.

use std::borrow::Cow;
use std::fmt;

/// Deepest nesting of arrays and objects a body may have. Real payloads stay
/// far below (tens of levels); the bound keeps the recursive walks of a
/// record (canonical text, drop) within `THREAD_STACK`.
pub const MAX_DEPTH: usize = 1024;

/// Stack for a thread that parses bodies and canonicalises their records:
/// walking and dropping a `MAX_DEPTH` tree needs between 0.75 and 1 MiB in a
/// debug build (measured), less optimised; 4 MiB keeps a margin of 2 or more
/// (`max_depth_fits_in_thread_stack` runs it on half of this).
pub const THREAD_STACK: usize = 4 * 1024 * 1024;

/// A JSON value borrowing from its source text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Num(Num<'a>),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    /// Members in source order (duplicates kept; lookups take the last).
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

/// A JSON number as written in the body (numbers have no escapes, so this
/// always borrows). Equality is textual: `10.5` and `10.50` differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Num<'a>(&'a str);

impl<'a> Num<'a> {
    /// The value when it is written as an integer that fits a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }

    /// The value when it is written as an integer that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.0.parse().ok()
    }

    /// The nearest `f64`, when finite (for date heuristics, never for storage).
    pub fn as_f64(&self) -> Option<f64> {
        self.0.parse::<f64>().ok().filter(|f| f.is_finite())
    }
}

impl fmt::Display for Num<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Why a body is not a JSON value atlas accepts, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    line: usize,
    column: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrorKind {
    Syntax(&'static str),
    Utf8(u8),
    TooDeep,
}

impl Error {
    /// The body nests deeper than `MAX_DEPTH`: the same on every attempt.
    pub fn is_too_deep(&self) -> bool {
        self.kind == ErrorKind::TooDeep
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (l, c) = (self.line, self.column);
        match self.kind {
            ErrorKind::Syntax(m) => write!(f, "{m} at line {l} column {c}"),
            ErrorKind::Utf8(b) => write!(
                f,
                "invalid UTF-8 (byte 0x{b:02X}) at line {l} column {c}; if the API sends another charset, set the route's \"charset\""
            ),
            ErrorKind::TooDeep => write!(
                f,
                "arrays and objects nested deeper than {MAX_DEPTH} levels at line {l} column {c} (atlas's bound on nesting)"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl<'a> Json<'a> {
    /// Parses a UTF-8 body; strings without escapes and all numbers borrow
    /// from it.
    pub fn parse(bytes: &'a [u8]) -> Result<Json<'a>, Error> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let at = e.valid_up_to();
            error_at(bytes, at + 1, ErrorKind::Utf8(bytes[at]))
        })?;
        Parser { text, pos: 0 }.document()
    }

    /// RFC 6901 JSON pointer lookup (`""` is the whole value).
    pub fn pointer(&self, ptr: &str) -> Option<&Json<'a>> {
        if ptr.is_empty() {
            return Some(self);
        }
        let mut cur = self;
        for raw in ptr.strip_prefix('/')?.split('/') {
            let token: Cow<str> = if raw.contains('~') {
                Cow::Owned(raw.replace("~1", "/").replace("~0", "~"))
            } else {
                Cow::Borrowed(raw)
            };
            cur = match cur {
                Json::Obj(members) => members
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == token)
                    .map(|(_, v)| v)?,
                Json::Arr(items) => {
                    if token.len() > 1 && token.starts_with('0') {
                        return None;
                    }
                    items.get(token.parse::<usize>().ok()?)?
                }
                _ => return None,
            };
        }
        Some(cur)
    }

    /// A member of an object by key (the last one when repeated).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Obj(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Num(_) => "a number",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
        }
    }
}

/// An owned copy of a `serde_json::Value`, for tests written with `json!`.
#[cfg(test)]
pub fn from_value(v: &serde_json::Value) -> Json<'static> {
    use serde_json::Value;
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => Json::Num(Num(Box::leak(n.to_string().into_boxed_str()))),
        Value::String(s) => Json::Str(Cow::Owned(s.clone())),
        Value::Array(a) => Json::Arr(a.iter().map(from_value).collect()),
        Value::Object(o) => Json::Obj(
            o.iter()
                .map(|(k, v)| (Cow::Owned(k.clone()), from_value(v)))
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------- parsing

fn error_at(bytes: &[u8], pos: usize, kind: ErrorKind) -> Error {
    let before = &bytes[..pos.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
    Error { kind, line, column }
}

/// A container being filled; the parser keeps them on its own stack.
enum Open<'a> {
    Arr(Vec<Json<'a>>),
    /// Members so far and the key whose value comes next.
    Obj(Vec<(Cow<'a, str>, Json<'a>)>, Cow<'a, str>),
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn err(&self, kind: ErrorKind) -> Error {
        // serde_json's convention: the column of the last byte read.
        error_at(self.bytes(), self.pos + 1, kind)
    }

    fn syntax(&self, msg: &'static str) -> Error {
        self.err(ErrorKind::Syntax(msg))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// The whole body: one value, then only whitespace.
    fn document(&mut self) -> Result<Json<'a>, Error> {
        let mut stack: Vec<Open<'a>> = Vec::new();
        'value: loop {
            self.skip_ws();
            let mut v = match self.peek() {
                None => return Err(self.syntax("EOF while parsing a value")),
                Some(b'{') => {
                    self.open(stack.len())?;
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        Json::Obj(Vec::new())
                    } else {
                        let key = self.key()?;
                        stack.push(Open::Obj(Vec::with_capacity(8), key));
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.open(stack.len())?;
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        Json::Arr(Vec::new())
                    } else {
                        stack.push(Open::Arr(Vec::new()));
                        continue 'value;
                    }
                }
                Some(b'"') => Json::Str(self.string()?),
                Some(b'-' | b'0'..=b'9') => Json::Num(self.number()?),
                Some(b't') => self.literal("true", Json::Bool(true))?,
                Some(b'f') => self.literal("false", Json::Bool(false))?,
                Some(b'n') => self.literal("null", Json::Null)?,
                Some(_) => return Err(self.syntax("expected value")),
            };
            // A value is complete: it goes into the open container, which may
            // complete in turn.
            loop {
                self.skip_ws();
                match stack.last_mut() {
                    None => {
                        if self.pos < self.text.len() {
                            return Err(self.syntax("trailing characters"));
                        }
                        return Ok(v);
                    }
                    Some(Open::Arr(items)) => {
                        items.push(v);
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                continue 'value;
                            }
                            Some(b']') => {
                                self.pos += 1;
                                v = Json::Arr(std::mem::take(items));
                                stack.pop();
                            }
                            None => return Err(self.syntax("EOF while parsing a list")),
                            Some(_) => return Err(self.syntax("expected `,` or `]`")),
                        }
                    }
                    Some(Open::Obj(members, key)) => {
                        members.push((std::mem::take(key), v));
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                self.skip_ws();
                                *key = self.key()?;
                                continue 'value;
                            }
                            Some(b'}') => {
                                self.pos += 1;
                                v = Json::Obj(std::mem::take(members));
                                stack.pop();
                            }
                            None => return Err(self.syntax("EOF while parsing an object")),
                            Some(_) => return Err(self.syntax("expected `,` or `}`")),
                        }
                    }
                }
            }
        }
    }

    /// Steps over `{` or `[` when one more level is allowed.
    fn open(&mut self, depth: usize) -> Result<(), Error> {
        if depth >= MAX_DEPTH {
            return Err(self.err(ErrorKind::TooDeep));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    /// `"key"` then `:`.
    fn key(&mut self) -> Result<Cow<'a, str>, Error> {
        match self.peek() {
            Some(b'"') => {}
            None => return Err(self.syntax("EOF while parsing an object")),
            Some(_) => return Err(self.syntax("key must be a string")),
        }
        let k = self.string()?;
        self.skip_ws();
        match self.peek() {
            Some(b':') => {
                self.pos += 1;
                Ok(k)
            }
            None => Err(self.syntax("EOF while parsing an object")),
            Some(_) => Err(self.syntax("expected `:`")),
        }
    }

    fn literal(&mut self, word: &'static str, v: Json<'a>) -> Result<Json<'a>, Error> {
        if self.bytes()[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.syntax("expected ident"))
        }
    }

    /// RFC 8259 number grammar; the text is kept as written.
    fn number(&mut self) -> Result<Num<'a>, Error> {
        let b = self.bytes();
        let start = self.pos;
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = start;
        if b[i] == b'-' {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i + 1),
            _ => {
                self.pos = i;
                return Err(self.syntax("invalid number"));
            }
        }
        if b.get(i) == Some(&b'.') {
            if !b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                self.pos = i + 1;
                return Err(self.syntax("invalid number"));
            }
            i = digits(i + 1);
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                self.pos = i;
                return Err(self.syntax("invalid number"));
            }
            i = digits(i);
        }
        self.pos = i;
        Ok(Num(&self.text[start..i]))
    }

    /// A string at `"`: borrowed when it has no escape.
    fn string(&mut self) -> Result<Cow<'a, str>, Error> {
        let b = self.bytes();
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match b.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Cow::Borrowed(&self.text[start..i]));
                }
                Some(b'\\') => break,
                Some(&c) if c < 0x20 => {
                    self.pos = i;
                    return Err(self.syntax(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
                Some(_) => i += 1,
                None => {
                    self.pos = i;
                    return Err(self.syntax("EOF while parsing a string"));
                }
            }
        }
        let mut s = String::with_capacity(i - start + 16);
        s.push_str(&self.text[start..i]);
        loop {
            match b.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Cow::Owned(s));
                }
                Some(b'\\') => {
                    self.pos = i + 1;
                    let c = match b.get(i + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let (c, len) = self.unicode_escape(i)?;
                            s.push(c);
                            i += len;
                            continue;
                        }
                        None => return Err(self.syntax("EOF while parsing a string")),
                        Some(_) => return Err(self.syntax("invalid escape")),
                    };
                    s.push(c);
                    i += 2;
                }
                Some(&c) if c < 0x20 => {
                    self.pos = i;
                    return Err(self.syntax(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
                Some(_) => {
                    let run = i;
                    while b
                        .get(i)
                        .is_some_and(|&c| c != b'"' && c != b'\\' && c >= 0x20)
                    {
                        i += 1;
                    }
                    // Runs end at ASCII bytes or the end: char boundaries.
                    s.push_str(&self.text[run..i]);
                }
                None => {
                    self.pos = i;
                    return Err(self.syntax("EOF while parsing a string"));
                }
            }
        }
    }

    /// `\uXXXX` (a surrogate pair takes two) at `i`: the char and the bytes
    /// read. Lone surrogates are errors, as in serde_json.
    fn unicode_escape(&mut self, i: usize) -> Result<(char, usize), Error> {
        let hex4 = |p: &mut Self, at: usize| -> Result<u32, Error> {
            let mut n = 0u32;
            for k in 0..4 {
                let d = p
                    .bytes()
                    .get(at + k)
                    .and_then(|&c| (c as char).to_digit(16));
                match d {
                    Some(d) => n = n * 16 + d,
                    None => {
                        p.pos = at + k;
                        return Err(if at + k >= p.text.len() {
                            p.syntax("EOF while parsing a string")
                        } else {
                            p.syntax("invalid escape")
                        });
                    }
                }
            }
            Ok(n)
        };
        let hi = hex4(self, i + 2)?;
        match hi {
            0xD800..=0xDBFF => {
                let b = self.bytes();
                if b.get(i + 6) != Some(&b'\\') || b.get(i + 7) != Some(&b'u') {
                    self.pos = i + 6;
                    return Err(self.syntax("lone leading surrogate in hex escape"));
                }
                let lo = hex4(self, i + 8)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    self.pos = i + 11;
                    return Err(self.syntax("lone leading surrogate in hex escape"));
                }
                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                Ok((char::from_u32(c).unwrap_or('\u{FFFD}'), 12))
            }
            0xDC00..=0xDFFF => {
                self.pos = i + 5;
                Err(self.syntax("lone trailing surrogate in hex escape"))
            }
            _ => Ok((char::from_u32(hi).unwrap_or('\u{FFFD}'), 6)),
        }
    }
}

// ---------------------------------------------------------------- canonical

impl fmt::Display for Json<'_> {
    /// Canonical JSON (for messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&canonical(self))
    }
}

/// What writing the canonical text of a value found on its way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Findings {
    /// A string or key held U+0000, written as U+FFFD.
    pub nul: bool,
    /// A number PostgreSQL's `numeric` (hence JSONB) cannot hold.
    pub out_of_range: bool,
}

/// The canonical JSON text of a value (SPEC §4).
pub fn canonical(v: &Json<'_>) -> String {
    canonical_checked(v).0
}

/// The canonical text and what it had to notice (see `Findings`).
pub fn canonical_checked(v: &Json<'_>) -> (String, Findings) {
    let mut out = String::with_capacity(512);
    let mut found = Findings::default();
    write_canonical(v, &mut out, &mut found);
    (out, found)
}

/// serde_json's (and Python's) escapes: `\"`, `\\`, `\b \f \n \r \t`, other
/// controls as `\u00XX`; `0` marks U+0000 (written as U+FFFD); nothing else.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 1;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0] = b'0';
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

fn write_str(s: &str, out: &mut String, found: &mut Findings) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[usize::from(b)];
        if esc == 0 {
            continue;
        }
        // Every escaped byte is ASCII: `start` and `i` are char boundaries.
        out.push_str(&s[start..i]);
        start = i + 1;
        match esc {
            b'0' => {
                found.nul = true;
                out.push('\u{FFFD}');
            }
            b'u' => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            c => {
                out.push('\\');
                out.push(char::from(c));
            }
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_canonical(v: &Json<'_>, out: &mut String, found: &mut Findings) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Num(n) => {
            if !pg_numeric_fits(n.0) {
                found.out_of_range = true;
            }
            out.push_str(n.0);
        }
        Json::Str(s) => write_str(s, out, found),
        Json::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out, found);
            }
            out.push(']');
        }
        Json::Obj(members) => {
            // Sort by key bytes (UTF-8 byte order is code point order); a
            // stable sort keeps repeated keys in source order, the last wins.
            let mut order: Vec<usize> = (0..members.len()).collect();
            order.sort_by(|a, b| members[*a].0.as_bytes().cmp(members[*b].0.as_bytes()));
            out.push('{');
            let mut first = true;
            for (pos, &i) in order.iter().enumerate() {
                if order
                    .get(pos + 1)
                    .is_some_and(|&n| members[n].0 == members[i].0)
                {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                write_str(&members[i].0, out, found);
                out.push(':');
                write_canonical(&members[i].1, out, found);
            }
            out.push('}');
        }
    }
}

/// Whether PostgreSQL's `numeric` (the type of a JSONB number) holds this
/// JSON number exactly: at most 131072 digits before the decimal point and
/// 16383 after, an exponent below 2^30. Short numbers without an exponent
/// (all real ones) answer at once.
fn pg_numeric_fits(n: &str) -> bool {
    const MAX_SCALE: i64 = 16383;
    const MAX_INT_DIGITS: i64 = 131072;
    const MAX_EXPONENT: i64 = (i32::MAX / 2) as i64;
    let b = n.as_bytes();
    let e_at = b.iter().position(|&c| c | 0x20 == b'e');
    if e_at.is_none() && b.len() as i64 <= MAX_SCALE {
        return true;
    }
    let (mantissa, exp) = match e_at {
        None => (b, 0i64),
        Some(at) => {
            let (neg, digits) = match &b[at + 1..] {
                [b'-', rest @ ..] => (true, rest),
                [b'+', rest @ ..] => (false, rest),
                rest => (false, rest),
            };
            let mut e: i64 = 0;
            for &d in digits {
                e = (e * 10 + i64::from(d - b'0')).min(MAX_EXPONENT);
            }
            (&b[..at], if neg { -e } else { e })
        }
    };
    if exp.abs() >= MAX_EXPONENT {
        return false;
    }
    let mantissa = mantissa.strip_prefix(b"-").unwrap_or(mantissa);
    let (int, frac) = match mantissa.iter().position(|&c| c == b'.') {
        Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
        None => (mantissa, &mantissa[..0]),
    };
    // Digits after the point: PostgreSQL keeps the written scale, even of a zero.
    if (frac.len() as i64 - exp).max(0) > MAX_SCALE {
        return false;
    }
    let int_zeros = int.iter().take_while(|&&c| c == b'0').count();
    let frac_zeros = frac.iter().take_while(|&&c| c == b'0').count();
    if int_zeros == int.len() && frac_zeros == frac.len() {
        return true; // zero: no digits before the point
    }
    // Position of the first significant digit relative to the point.
    let lead = if int_zeros < int.len() {
        (int.len() - int_zeros) as i64
    } else {
        -(frac_zeros as i64)
    };
    lead + exp <= MAX_INT_DIGITS
}

/// RFC 6901 pointers (at most `limit`) to where U+0000 is in a value: a
/// string, or a key (the pointer to its member, marked ` (key)`).
pub fn nul_paths(v: &Json<'_>, limit: usize) -> Vec<String> {
    fn walk(v: &Json<'_>, path: &mut String, out: &mut Vec<String>, limit: usize) {
        if out.len() >= limit {
            return;
        }
        match v {
            Json::Str(s) if s.contains('\0') => out.push(shown(path)),
            Json::Arr(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&i.to_string());
                    walk(item, path, out, limit);
                    path.truncate(len);
                }
            }
            Json::Obj(members) => {
                for (k, item) in members {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    if k.contains('\0') && out.len() < limit {
                        out.push(format!("{} (key)", shown(path)));
                    }
                    walk(item, path, out, limit);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    fn shown(path: &str) -> String {
        if path.is_empty() {
            "the record itself".into()
        } else {
            path.replace('\0', "\\u0000")
        }
    }
    let mut out = Vec::new();
    walk(v, &mut String::new(), &mut out, limit);
    out
}

/// The first number PostgreSQL cannot hold, with its RFC 6901 pointer.
pub fn out_of_range_number<'a>(v: &Json<'a>) -> Option<(String, &'a str)> {
    fn walk<'a>(v: &Json<'a>, path: &mut String) -> Option<&'a str> {
        match v {
            Json::Num(n) if !pg_numeric_fits(n.0) => Some(n.0),
            Json::Arr(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                let hit = walk(item, path);
                if hit.is_none() {
                    path.truncate(len);
                }
                hit
            }),
            Json::Obj(members) => members.iter().find_map(|(k, item)| {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                let hit = walk(item, path);
                if hit.is_none() {
                    path.truncate(len);
                }
                hit
            }),
            _ => None,
        }
    }
    let mut path = String::new();
    walk(v, &mut path).map(|n| (path, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// For texts whose numbers serde_json writes back unchanged, the
    /// canonical text is serde_json's compact output of a `Value`.
    fn same_as_value(text: &str) {
        let v: Value = serde_json::from_str(text).unwrap();
        let j = Json::parse(text.as_bytes()).unwrap();
        assert_eq!(canonical(&j), v.to_string(), "for {text}");
    }

    #[test]
    fn canonical_equals_serde_json_value_output() {
        for t in [
            r#"{"b":1,"a":[true,false,null],"c":{"z":"\u00e9\n\"x\"","y":-0.0}}"#,
            r#"{"n":10.5,"m":1000.0,"big":18446744073709551615,"neg":-9223372036854775808,"f":0.1,"e":1.5e-7}"#,
            r#"{"dup":1,"a":2,"dup":3}"#,
            r#"{"😀":1,"ﬁ":2,"Z":3,"a":4,"":5}"#,
            r#"["\u0001\u001f\u007f","\ud83d\ude00","tab\there","slash\/","\b\f\r\\"]"#,
            r#"{"nested":{"k":{"j":{"i":[{"b":1,"a":2}]}}}}"#,
            " \r\n\t{ \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : [ ] } \n",
            r#"12"#,
            r#""s""#,
            r#"{}"#,
            r#"[]"#,
        ] {
            same_as_value(t);
        }
    }

    #[test]
    fn numbers_are_kept_as_written() {
        let text = r#"{"big":123456789012345678901234567890,"pi":0.1000000000000000055511151231257827,"money":1234.5600,"huge":1e400,"e":1E+2,"z":-0,"f":10.50}"#;
        let j = Json::parse(text.as_bytes()).unwrap();
        assert_eq!(
            canonical(&j),
            r#"{"big":123456789012345678901234567890,"e":1E+2,"f":10.50,"huge":1e400,"money":1234.5600,"pi":0.1000000000000000055511151231257827,"z":-0}"#
        );
        assert_eq!(j.get("money"), Some(&Json::Num(Num("1234.5600"))));
        let n = |k: &str| match j.get(k) {
            Some(Json::Num(n)) => *n,
            other => panic!("{other:?}"),
        };
        assert_eq!(n("big").as_u64(), None, "does not fit: no rounding");
        assert_eq!(n("e").as_u64(), None, "written as a float");
        assert_eq!(n("e").as_f64(), Some(100.0));
        assert_eq!(n("huge").as_f64(), None, "not finite");
        assert_eq!(n("z").as_i64(), Some(0));
        assert_eq!(n("big").to_string(), "123456789012345678901234567890");
    }

    #[test]
    fn nul_becomes_replacement_char_and_is_reported() {
        let j = Json::parse(br#"{"a":"x\u0000y","k\u0000":[1,"\u0000"],"ok":"fine"}"#).unwrap();
        let (text, found) = canonical_checked(&j);
        assert_eq!(
            text,
            "{\"a\":\"x\u{FFFD}y\",\"k\u{FFFD}\":[1,\"\u{FFFD}\"],\"ok\":\"fine\"}"
        );
        assert!(found.nul && !found.out_of_range);
        assert_eq!(
            nul_paths(&j, 10),
            vec!["/a", "/k\\u0000 (key)", "/k\\u0000/1"]
        );
        assert_eq!(nul_paths(&j, 1), vec!["/a"]);
        let clean = Json::parse(br#"{"a":"x\u0001"}"#).unwrap();
        assert_eq!(canonical_checked(&clean).1, Findings::default());
    }

    #[test]
    fn postgres_numeric_range() {
        // Each verdict as PostgreSQL 15 gives it for `'[n]'::jsonb`.
        for (n, fits) in [
            ("1e400", true),
            ("0e999999", true),
            ("0.0e131072", true),
            ("1e131071", true),
            ("9.9e131071", true),
            ("10e131071", false),
            ("1e131072", false),
            ("1e-16383", true),
            ("1.5e-16382", true),
            ("1.55e-16382", false),
            ("0.00e-16382", false),
            ("0e-999999", false),
            ("123e-16383", true),
            ("-0.001e131074", true),
            ("0.001e131075", false),
            ("1e2147483647", false),
            ("0e999999999999", false),
            ("123456789012345678901234567890", true),
        ] {
            assert_eq!(pg_numeric_fits(n), fits, "{n}");
        }
        let long_frac = format!("0.{}", "1".repeat(16384));
        assert!(!pg_numeric_fits(&long_frac));
        assert!(pg_numeric_fits(&long_frac[..16385]));
        let j = Json::parse(br#"{"a":[1,{"b/c":1e999999}]}"#).unwrap();
        assert!(canonical_checked(&j).1.out_of_range);
        assert_eq!(
            out_of_range_number(&j),
            Some(("/a/1/b~1c".to_string(), "1e999999"))
        );
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let text = br#"{"a":"plain","b":"esc\"aped"}"#;
        let j = Json::parse(text).unwrap();
        assert!(matches!(
            j.get("a"),
            Some(Json::Str(Cow::Borrowed("plain")))
        ));
        assert!(matches!(j.get("b"), Some(Json::Str(Cow::Owned(_)))));
    }

    #[test]
    fn invalid_texts_are_refused_like_serde_json() {
        for t in [
            "",
            " ",
            "{",
            "[",
            "[1,]",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{1:2}",
            "01",
            "1.",
            "-",
            "1e",
            ".5",
            "+1",
            "NaN",
            "tru",
            "nul",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\tb\"",
            "1 2",
            "[]]",
            "{\"a\":1}}",
            "\"\\",
        ] {
            assert!(
                serde_json::from_str::<Value>(t).is_err(),
                "serde_json accepts {t:?}"
            );
            assert!(Json::parse(t.as_bytes()).is_err(), "accepted {t:?}");
        }
        let e = Json::parse(b"{\n  \"a\": tru\n}").unwrap_err();
        assert!(e.to_string().ends_with("at line 2 column 8"), "{e}");
        let e = Json::parse(b"[\"Jos\xe9\"]").unwrap_err();
        assert!(
            e.to_string()
                .contains("invalid UTF-8 (byte 0xE9) at line 1 column 6"),
            "{e}"
        );
        assert!(e.to_string().contains("charset"), "{e}");
    }

    #[test]
    fn nesting_is_bounded_without_recursion() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(Json::parse(nest(MAX_DEPTH).as_bytes()).is_ok());
        let e = Json::parse(nest(MAX_DEPTH + 1).as_bytes()).unwrap_err();
        assert!(e.is_too_deep(), "{e}");
        assert!(e.to_string().contains("deeper than 1024 levels"), "{e}");
        // Far deeper than any stack could recurse: an error, not a crash.
        let e = Json::parse(nest(1_000_000).as_bytes()).unwrap_err();
        assert!(e.is_too_deep());
        let objs = format!(
            "{}1{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(Json::parse(objs.as_bytes()).unwrap_err().is_too_deep());
    }

    #[test]
    fn max_depth_fits_in_thread_stack() {
        // Parse, canonicalise, look up and drop the deepest accepted trees on
        // a thread with half of THREAD_STACK: the bound has margin.
        std::thread::Builder::new()
            .stack_size(THREAD_STACK / 2)
            .spawn(|| {
                let d = MAX_DEPTH - 1;
                let arrays = format!("{}\"x\"{}", "[".repeat(d), "]".repeat(d));
                let objects = format!("{}{{}}{}", "{\"k\":".repeat(d), "}".repeat(d));
                let mixed = format!("{}1{}", "[{\"a\":".repeat(d / 2), "}]".repeat(d / 2));
                for text in [arrays, objects, mixed] {
                    let j = Json::parse(text.as_bytes()).unwrap();
                    let (c, _) = canonical_checked(&j);
                    assert_eq!(c, text);
                    let _ = nul_paths(&j, 5);
                    let _ = out_of_range_number(&j);
                    drop(j);
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let j = Json::parse(br#"{"a/b":{"m~n":[10,{"x":"y"}]},"d":1,"d":2}"#).unwrap();
        assert_eq!(
            j.pointer("/a~1b/m~0n/1/x"),
            Some(&Json::Str(Cow::Borrowed("y")))
        );
        assert_eq!(j.pointer("/a~1b/m~0n/0"), Some(&Json::Num(Num("10"))));
        assert_eq!(j.pointer("/a~1b/m~0n/01"), None);
        assert_eq!(j.pointer("/a~1b/m~0n/9"), None);
        assert_eq!(
            j.pointer("/d"),
            Some(&Json::Num(Num("2"))),
            "last duplicate wins"
        );
        assert_eq!(j.pointer("nope"), None);
        assert_eq!(j.pointer(""), Some(&j));
    }
}
