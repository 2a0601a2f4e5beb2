//! The JSON parser: iterative (its own stack of open containers, no
//! recursion), borrowing strings without escapes and every number's text
//! from the body, refusing nesting past `MAX_DEPTH`; it can hand the
//! elements of one array (a page's records) to a sink as they complete.

use super::scan::{plain_run, Parser};
use super::text::Writer;
use super::{Element, Error, ErrorKind, Json, Num, MAX_DEPTH};
use std::borrow::Cow;

/// A container being filled; the parser keeps them on its own stack. Their
/// values wait on two shared stacks (from the index held here) and are moved
/// into a vector of the exact size when the container closes: grown by
/// doubling, a page's tree took nearly twice the bytes (a record of 9 fields
/// in room for 16).
enum Open<'a> {
    Arr(usize),
    /// Where its members start, and the key whose value comes next.
    Obj(usize, Cow<'a, str>),
}

/// Where a page's records are handed over as they complete: the pointer's
/// tokens, and what takes each record (its index, and its canonical text
/// or, where the text path gave up, its tree).
pub(super) struct Sink<'s, 'a> {
    pub(super) tokens: &'s [Cow<'s, str>],
    pub(super) take: &'s mut dyn FnMut(usize, Element<'_, 'a>),
    /// Arrays found at the pointer's path (more than one: repeated keys).
    pub(super) matched: u32,
}

impl<'a> Parser<'a> {
    /// The whole body: one value, then only whitespace. With a sink, each
    /// element of an array at the sink's path goes to it as soon as it is
    /// complete and leaves `null` in its place (its tree is gone before the
    /// next one is built: small allocations reused while still in cache).
    pub(super) fn document(
        &mut self,
        mut sink: Option<&mut Sink<'_, 'a>>,
    ) -> Result<Json<'a>, Error> {
        let mut stack: Vec<Open<'a>> = Vec::new();
        let mut items: Vec<Json<'a>> = Vec::new();
        let mut members: Vec<(Cow<'a, str>, Json<'a>)> = Vec::new();
        // How many open containers, from the outermost, follow the sink's
        // path; and the depth of the records array while it is open.
        let mut on_path = 0;
        let mut records_at = None;
        let mut writer = Writer::default();
        // Whether the value just completed is a record already handed over.
        let mut taken = false;
        // Whether a container opened now lies on the sink's path: every open
        // one does, and it is the value of the path's next key.
        let follows = |stack: &[Open<'a>], on_path: usize, tokens: &[Cow<'_, str>]| {
            let d = stack.len();
            on_path == d
                && (d == 0
                    || matches!(stack.last(), Some(Open::Obj(_, k)) if tokens.get(d - 1).is_some_and(|t| t == k)))
        };
        'value: loop {
            self.skip_ws();
            if let Some(s) = sink.as_deref_mut() {
                if records_at == Some(stack.len()) {
                    if let Some(rec) = self.record_text(stack.len(), &mut writer) {
                        let at = match stack.last() {
                            Some(&Open::Arr(start)) => items.len() - start,
                            _ => 0,
                        };
                        (s.take)(at, Element::Text(rec));
                        taken = true;
                    }
                }
            }
            let mut v = if taken {
                Json::Null
            } else {
                match self.peek() {
                    None => return Err(self.syntax("EOF while parsing a value")),
                    Some(b'{') => {
                        self.open(stack.len())?;
                        if self.peek() == Some(b'}') {
                            self.pos += 1;
                            Json::Obj(Vec::new())
                        } else {
                            if let Some(s) = sink.as_deref() {
                                if follows(&stack, on_path, s.tokens)
                                    && stack.len() < s.tokens.len()
                                {
                                    on_path += 1;
                                }
                            }
                            let key = self.key()?;
                            stack.push(Open::Obj(members.len(), key));
                            continue 'value;
                        }
                    }
                    Some(b'[') => {
                        self.open(stack.len())?;
                        let records = match sink.as_deref_mut() {
                            Some(s)
                                if follows(&stack, on_path, s.tokens)
                                    && stack.len() == s.tokens.len() =>
                            {
                                s.matched += 1;
                                true
                            }
                            _ => false,
                        };
                        if self.peek() == Some(b']') {
                            self.pos += 1;
                            Json::Arr(Vec::new())
                        } else {
                            if records {
                                on_path += 1;
                                records_at = Some(stack.len() + 1);
                            }
                            stack.push(Open::Arr(items.len()));
                            continue 'value;
                        }
                    }
                    Some(b'"') => Json::Str(self.string()?),
                    Some(b'-' | b'0'..=b'9') => Json::Num(self.number()?),
                    Some(b't') => self.literal("true", Json::Bool(true))?,
                    Some(b'f') => self.literal("false", Json::Bool(false))?,
                    Some(b'n') => self.literal("null", Json::Null)?,
                    Some(_) => return Err(self.syntax("expected value")),
                }
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
                        self.heap += writer.heap();
                        return Ok(v);
                    }
                    Some(&mut Open::Arr(start)) => {
                        match sink.as_deref_mut() {
                            Some(_) if taken => {
                                taken = false;
                                items.push(Json::Null);
                            }
                            Some(s) if records_at == Some(stack.len()) => {
                                // The record's tree stays counted in `heap`:
                                // the memory budget charges a page as if its
                                // tree were whole (what the allocator keeps
                                // of freed trees is not returned at once).
                                (s.take)(items.len() - start, Element::Tree(v));
                                items.push(Json::Null);
                            }
                            _ => items.push(v),
                        }
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                continue 'value;
                            }
                            Some(b']') => {
                                self.pos += 1;
                                let a: Vec<_> = items.drain(start..).collect();
                                self.heap += a.capacity() * size_of::<Json<'a>>();
                                v = Json::Arr(a);
                                if on_path == stack.len() {
                                    on_path -= 1;
                                    if records_at == Some(stack.len()) {
                                        records_at = None;
                                    }
                                }
                                stack.pop();
                            }
                            None => return Err(self.syntax("EOF while parsing a list")),
                            Some(_) => return Err(self.syntax("expected `,` or `]`")),
                        }
                    }
                    Some(Open::Obj(start, key)) => {
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
                                let m: Vec<_> = members.drain(*start..).collect();
                                self.heap += m.capacity() * size_of::<(Cow<'a, str>, Json<'a>)>();
                                v = Json::Obj(m);
                                if on_path == stack.len() {
                                    on_path -= 1;
                                }
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
    pub(super) fn number(&mut self) -> Result<Num<'a>, Error> {
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
        let mut i = plain_run(b, start);
        match b.get(i) {
            Some(b'"') => {
                self.pos = i + 1;
                return Ok(Cow::Borrowed(&self.text[start..i]));
            }
            Some(b'\\') => {}
            Some(_) => {
                self.pos = i;
                return Err(
                    self.syntax("control character (\\u0000-\\u001F) found while parsing a string")
                );
            }
            None => {
                self.pos = i;
                return Err(self.syntax("EOF while parsing a string"));
            }
        }
        let mut s = String::with_capacity(i - start + 16);
        s.push_str(&self.text[start..i]);
        loop {
            match b.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    self.heap += s.capacity();
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
                    i = plain_run(b, i);
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
    pub(super) fn unicode_escape(&mut self, i: usize) -> Result<(char, usize), Error> {
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
