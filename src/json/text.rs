//! A record's canonical text written straight from the body's bytes, with
//! no tree: the fast path for a page's records (`Json::parse_records`).
//! Where it does not apply (a key with an escape, a syntax error, nesting
//! past `MAX_DEPTH`) it gives up and the parser builds that record's tree,
//! which writes the same text or reports the error where it is.

use super::canonical::{pg_numeric_fits, prefix, Findings, ESCAPE};
use super::scan::{plain_run, Parser};
use super::{Json, MAX_DEPTH};
use std::borrow::Cow;

/// A record of a page as canonical text (SPEC §4), with what the row
/// builder may need of its source.
pub struct Record<'r, 'a> {
    /// The record as the body has it (a complete JSON value).
    pub source: &'a str,
    /// Its canonical text.
    pub text: &'r str,
    pub found: Findings,
    /// Whether it is an object; its members, `(key, value's source)`, in
    /// source order, are in `members`.
    pub object: bool,
    members: &'r [(&'a str, &'a str)],
}

impl<'a> Record<'_, 'a> {
    /// As `only`, with the member a pointer starts at: what a lookup of
    /// the pointer sees of the record. `None` for `""` (the whole record)
    /// or a text that is not a pointer.
    pub fn at_pointer(&self, ptr: &str) -> Option<Json<'a>> {
        let first = super::pointer_tokens(ptr)?.next()?;
        self.only(&[&first])
    }

    /// An object holding only the record's members named in `keys` (the
    /// last of each, as a lookup on the whole record finds it), parsed:
    /// what a date lookup by those keys sees of the record. `None` if the
    /// record is not an object.
    pub fn only(&self, keys: &[&str]) -> Option<Json<'a>> {
        if !self.object {
            return None;
        }
        let mut out = Vec::new();
        for key in keys {
            if let Some(&(k, v)) = self.members.iter().rev().find(|(k, _)| k == key) {
                // The body was checked as UTF-8 and this value's grammar as
                // it was written: parsed again, not validated again.
                let mut p = Parser {
                    text: v,
                    pos: 0,
                    heap: 0,
                };
                out.push((Cow::Borrowed(k), p.document(None).ok()?));
            }
        }
        Some(Json::Obj(out))
    }
}

/// Why the text path gave up on a record: the tree path takes it.
struct GiveUp;

/// A member of an open object, by its offsets in the text written: from
/// its key's opening quote, to after the key's closing quote, to after its
/// value.
struct Member {
    /// The key's first eight bytes (see `canonical::prefix`): most keys
    /// compare by it alone.
    prefix: u64,
    start: usize,
    key_end: usize,
    end: usize,
}

enum Frame<'a> {
    /// Items so far.
    Arr(usize),
    /// Where its `{` was written, where its members start (in `members`),
    /// whether their keys came in strictly increasing order, and (for the
    /// record's own members) the key being read and where its value starts.
    Obj {
        base: usize,
        first: usize,
        sorted: bool,
        key: &'a str,
        value_at: usize,
    },
}

/// Buffers reused from record to record of a page.
#[derive(Default)]
pub(super) struct Writer<'a> {
    out: String,
    tmp: String,
    frames: Vec<Frame<'a>>,
    members: Vec<Member>,
    top: Vec<(&'a str, &'a str)>,
}

impl Writer<'_> {
    /// Heap bytes its buffers hold.
    pub(super) fn heap(&self) -> usize {
        self.out.capacity()
            + self.tmp.capacity()
            + self.frames.capacity() * size_of::<Frame<'_>>()
            + self.members.capacity() * size_of::<Member>()
            + self.top.capacity() * size_of::<(&str, &str)>()
    }
}

impl<'a> Parser<'a> {
    /// The record whose value starts at `pos`, `depth` containers deep, as
    /// canonical text; `None`, with `pos` unchanged, where its tree must be
    /// built instead.
    pub(super) fn record_text<'w>(
        &mut self,
        depth: usize,
        w: &'w mut Writer<'a>,
    ) -> Option<Record<'w, 'a>> {
        let start = self.pos;
        match self.write_value(depth, w) {
            Ok((found, object, tree)) => {
                // Charged as if the tree were built: the memory budget's
                // measure of a page stays what was measured to bound it.
                self.heap += tree;
                Some(Record {
                    source: &self.text[start..self.pos],
                    text: &w.out,
                    found,
                    object,
                    members: &w.top,
                })
            }
            Err(GiveUp) => {
                self.pos = start;
                None
            }
        }
    }

    /// Writes the value at `pos`: what it found, whether it is an object,
    /// and the heap its tree would have taken.
    fn write_value(
        &mut self,
        depth: usize,
        w: &mut Writer<'a>,
    ) -> Result<(Findings, bool, usize), GiveUp> {
        w.out.clear();
        w.frames.clear();
        w.members.clear();
        w.top.clear();
        let mut found = Findings::default();
        let mut tree = 0;
        let object = self.peek() == Some(b'{');
        'value: loop {
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    if depth + w.frames.len() >= MAX_DEPTH {
                        return Err(GiveUp);
                    }
                    self.pos += 1;
                    self.skip_ws();
                    let (close, empty) = if open == b'{' {
                        (b'}', "{}")
                    } else {
                        (b']', "[]")
                    };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        w.out.push_str(empty);
                    } else {
                        w.out.push(char::from(open));
                        if open == b'[' {
                            w.frames.push(Frame::Arr(0));
                        } else {
                            w.frames.push(Frame::Obj {
                                base: w.out.len() - 1,
                                first: w.members.len(),
                                sorted: true,
                                key: "",
                                value_at: 0,
                            });
                            self.write_key(w)?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => tree += self.write_string(&mut w.out, &mut found)?,
                Some(b'-' | b'0'..=b'9') => {
                    let n = self.number().map_err(|_| GiveUp)?;
                    if !pg_numeric_fits(n.0) {
                        found.out_of_range = true;
                    }
                    w.out.push_str(n.0);
                }
                Some(c @ (b't' | b'f' | b'n')) => {
                    let word = match c {
                        b't' => "true",
                        b'f' => "false",
                        _ => "null",
                    };
                    if !self.text.as_bytes()[self.pos..].starts_with(word.as_bytes()) {
                        return Err(GiveUp);
                    }
                    self.pos += word.len();
                    w.out.push_str(word);
                }
                _ => return Err(GiveUp),
            }
            // A value is complete: it goes into the open container, which may
            // complete in turn.
            loop {
                let value_end = self.pos;
                self.skip_ws();
                let top = w.frames.len() == 1;
                match w.frames.last_mut() {
                    None => return Ok((found, object, tree)),
                    Some(Frame::Arr(items)) => {
                        *items += 1;
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                self.skip_ws();
                                w.out.push(',');
                                continue 'value;
                            }
                            Some(b']') => {
                                self.pos += 1;
                                w.out.push(']');
                                tree += *items * size_of::<Json<'_>>();
                                w.frames.pop();
                            }
                            _ => return Err(GiveUp),
                        }
                    }
                    Some(&mut Frame::Obj {
                        base,
                        first,
                        sorted,
                        key,
                        value_at,
                    }) => {
                        if let Some(m) = w.members.last_mut() {
                            m.end = w.out.len();
                        }
                        if top {
                            w.top.push((key, &self.text[value_at..value_end]));
                        }
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                self.skip_ws();
                                w.out.push(',');
                                self.write_key(w)?;
                                continue 'value;
                            }
                            Some(b'}') => {
                                self.pos += 1;
                                tree += (w.members.len() - first)
                                    * size_of::<(Cow<'_, str>, Json<'_>)>();
                                if sorted {
                                    w.out.push('}');
                                } else if close_unsorted(w, base, first)
                                    && found != Findings::default()
                                {
                                    // What a dropped member found may not be
                                    // in the text: the tree path says.
                                    return Err(GiveUp);
                                }
                                w.members.truncate(first);
                                w.frames.pop();
                            }
                            _ => return Err(GiveUp),
                        }
                    }
                }
            }
        }
    }

    /// `"key":` of the innermost open object, whitespace after it skipped;
    /// a key with an escape gives up (its escaped text would not sort as
    /// its characters do).
    fn write_key(&mut self, w: &mut Writer<'a>) -> Result<(), GiveUp> {
        let b = self.text.as_bytes();
        if b.get(self.pos) != Some(&b'"') {
            return Err(GiveUp);
        }
        let end = plain_run(b, self.pos + 1);
        if b.get(end) != Some(&b'"') {
            return Err(GiveUp);
        }
        let open = self.pos;
        let key = &self.text[open + 1..end];
        self.pos = end + 1;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(GiveUp);
        }
        self.pos += 1;
        self.skip_ws();
        let Some(Frame::Obj {
            first,
            sorted,
            key: current,
            value_at,
            ..
        }) = w.frames.last_mut()
        else {
            return Err(GiveUp);
        };
        let prefix = prefix(key);
        if w.members.len() > *first {
            let prev = &w.members[w.members.len() - 1];
            let before = (
                prev.prefix,
                &w.out.as_bytes()[prev.start + 1..prev.key_end - 1],
            );
            if (prefix, key.as_bytes()) <= before {
                *sorted = false;
            }
        }
        *current = key;
        *value_at = self.pos;
        let start = w.out.len();
        w.out.push_str(&self.text[open..=end]);
        w.out.push(':');
        w.members.push(Member {
            prefix,
            start,
            key_end: start + key.len() + 2,
            end: 0,
        });
        Ok(())
    }

    /// A string value at `"`, in canonical form: a run without escapes is
    /// copied as it is; escapes are written as the tree path writes their
    /// characters (`\/` as `/`, `\u00e9` as `é`, U+0000 as U+FFFD).
    fn write_string(&mut self, out: &mut String, found: &mut Findings) -> Result<usize, GiveUp> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let b = self.text.as_bytes();
        let open = self.pos;
        let mut i = plain_run(b, open + 1);
        if b.get(i) == Some(&b'"') {
            out.push_str(&self.text[open..=i]);
            self.pos = i + 1;
            return Ok(0);
        }
        let plain = i - open - 1;
        out.push_str(&self.text[open..i]);
        loop {
            match b.get(i) {
                Some(b'"') => {
                    out.push('"');
                    self.pos = i + 1;
                    // What the tree's unescaped copy would take.
                    return Ok((plain + 16).max(i - open - 1));
                }
                Some(b'\\') => match b.get(i + 1) {
                    // Already in the canonical escape form.
                    Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => {
                        out.push_str(&self.text[i..i + 2]);
                        i += 2;
                    }
                    Some(b'/') => {
                        out.push('/');
                        i += 2;
                    }
                    Some(b'u') => {
                        let (c, len) = self.unicode_escape(i).map_err(|_| GiveUp)?;
                        match c {
                            '\0' => {
                                found.nul = true;
                                out.push('\u{FFFD}');
                            }
                            '\u{1}'..='\u{1f}' | '"' | '\\' => {
                                let code = c as usize;
                                match ESCAPE[code] {
                                    b'u' => {
                                        out.push_str("\\u00");
                                        out.push(char::from(HEX[code >> 4]));
                                        out.push(char::from(HEX[code & 0xf]));
                                    }
                                    e => {
                                        out.push('\\');
                                        out.push(char::from(e));
                                    }
                                }
                            }
                            c => out.push(c),
                        }
                        i += len;
                    }
                    _ => return Err(GiveUp),
                },
                Some(&c) if c >= 0x20 => {
                    let run = i;
                    i = plain_run(b, i);
                    // Runs end at ASCII bytes or the end: char boundaries.
                    out.push_str(&self.text[run..i]);
                }
                _ => return Err(GiveUp),
            }
        }
    }
}

/// Closes an object whose keys came out of order (or repeated): its members
/// are rewritten sorted by key bytes (code point order), the last of a
/// repeated key kept, as the tree path writes them. Says whether a member
/// was dropped so.
fn close_unsorted(w: &mut Writer<'_>, base: usize, first: usize) -> bool {
    let Writer {
        out, tmp, members, ..
    } = w;
    let key = |m: &Member| (m.prefix, &out.as_bytes()[m.start + 1..m.key_end - 1]);
    let ms = &mut members[first..];
    // Stable: a repeated key's members stay in source order.
    ms.sort_by(|a, b| key(a).cmp(&key(b)));
    tmp.clear();
    tmp.push('{');
    let mut dropped = false;
    for (n, m) in ms.iter().enumerate() {
        if ms.get(n + 1).is_some_and(|next| key(next) == key(m)) {
            dropped = true;
            continue;
        }
        if tmp.len() > 1 {
            tmp.push(',');
        }
        tmp.push_str(&out[m.start..m.end]);
    }
    tmp.push('}');
    out.truncate(base);
    out.push_str(tmp);
    dropped
}

#[cfg(test)]
mod tests {
    use super::super::{canonical_checked, Element, Json};

    /// What `parse_records` hands over for the records at `/d`: per record,
    /// the text and findings, and whether the text path wrote them.
    fn handed(body: &str) -> Vec<(String, super::Findings, bool)> {
        let body: &'static [u8] = Box::leak(body.as_bytes().to_vec().into_boxed_slice());
        let mut got = Vec::new();
        Json::parse_records(body, "/d", &mut |_, el| {
            got.push(match el {
                Element::Text(r) => (r.text.to_string(), r.found, true),
                Element::Tree(t) => {
                    let (text, found) = canonical_checked(&t);
                    (text, found, false)
                }
            })
        })
        .unwrap();
        got
    }

    /// A small deterministic generator of JSON texts as APIs write them:
    /// keys out of order, repeated, sharing long prefixes or non-ASCII;
    /// strings with every kind of escape; numbers of every form; nesting;
    /// whitespace anywhere.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }

        fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
            from[self.next(from.len() as u64) as usize]
        }

        fn ws(&mut self, out: &mut String) {
            if self.next(4) == 0 {
                out.push_str(self.pick(&[" ", "\n", "\t ", "\r\n  "]));
            }
        }

        fn string(&mut self, out: &mut String) {
            const PIECES: &[&str] = &[
                "a",
                "Z",
                "abcdefgh",
                "abcdefghi",
                "é",
                "😀",
                "São Paulo",
                "\\\"",
                "\\\\",
                "\\/",
                "\\n",
                "\\t",
                "\\b",
                "\\f",
                "\\r",
                "\\u00e9",
                "\\u00E9",
                "\\u0000",
                "\\u001f",
                "\\u001F",
                "\\u0008",
                "\\u0022",
                "\\u005c",
                "\\u007f",
                "\\ud83d\\ude00",
                "\\u2028",
                " ",
                "~",
                "",
            ];
            out.push('"');
            for _ in 0..self.next(4) {
                out.push_str(self.pick(PIECES));
            }
            out.push('"');
        }

        fn key(&mut self, out: &mut String) {
            const KEYS: &[&str] = &[
                "id",
                "data_pedido",
                "cliente",
                "abcdefgh",
                "abcdefghi",
                "abcdefgg",
                "a",
                "",
                "é",
                "😀",
                "Z",
                "itens",
                "valor_total",
                "prefixed_key_01",
                "prefixed_key_10",
            ];
            // Now and then an escaped key: the text path gives it up.
            if self.next(40) == 0 {
                out.push_str(self.pick(&["\"k\\u00e9\"", "\"a\\\"b\"", "\"x\\u0000\""]));
            } else {
                out.push('"');
                out.push_str(self.pick(KEYS));
                out.push('"');
            }
        }

        fn value(&mut self, depth: u32, out: &mut String) {
            const NUMBERS: &[&str] = &[
                "0",
                "-0",
                "7",
                "10.50",
                "1234.5600",
                "1e400",
                "1E+2",
                "-1.5e-7",
                "123456789012345678901234567890",
                "1e999999999",
                "0.1",
            ];
            match self.next(if depth > 4 { 5 } else { 7 }) {
                0 => out.push_str(self.pick(&["true", "false", "null"])),
                1 | 2 => out.push_str(self.pick(NUMBERS)),
                3 | 4 => self.string(out),
                5 => {
                    out.push('[');
                    for i in 0..self.next(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        self.ws(out);
                        self.value(depth + 1, out);
                        self.ws(out);
                    }
                    out.push(']');
                }
                _ => self.object(depth, out),
            }
        }

        fn object(&mut self, depth: u32, out: &mut String) {
            out.push('{');
            for i in 0..self.next(7) {
                if i > 0 {
                    out.push(',');
                }
                self.ws(out);
                self.key(out);
                self.ws(out);
                out.push(':');
                self.ws(out);
                self.value(depth + 1, out);
                self.ws(out);
            }
            out.push('}');
        }
    }

    /// The text path writes what the tree path writes, with the same
    /// findings, for every record it does not give up.
    #[test]
    fn text_path_writes_what_the_tree_path_writes() {
        let mut g = Gen(12);
        let (mut by_text, mut total) = (0, 0);
        for _ in 0..3000 {
            let mut body = String::from("{\"total\":1, \"d\" : [");
            let mut records = Vec::new();
            for i in 0..g.next(5) {
                if i > 0 {
                    body.push(',');
                }
                g.ws(&mut body);
                let mut rec = String::new();
                if g.next(8) == 0 {
                    g.value(0, &mut rec);
                } else {
                    g.object(0, &mut rec);
                }
                body.push_str(&rec);
                records.push(rec);
                g.ws(&mut body);
            }
            body.push_str("]}");
            let got = handed(&body);
            assert_eq!(got.len(), records.len(), "{body}");
            for (rec, (text, found, text_path)) in records.iter().zip(got) {
                let tree = Json::parse(rec.as_bytes()).unwrap();
                assert_eq!((text, found), canonical_checked(&tree), "{rec}");
                by_text += usize::from(text_path);
                total += 1;
            }
        }
        // Most records take the text path (only escaped keys give up).
        assert!(by_text * 10 > total * 7, "{by_text} of {total}");
    }

    #[test]
    fn escaped_keys_and_bad_records_take_the_tree_path() {
        let got = handed(r#"{"d":[{"b":1,"a":2},{"k\u00e9":1},{"a\"b":1},{"x":"\u00e9\/"}]}"#);
        let paths: Vec<bool> = got.iter().map(|g| g.2).collect();
        assert_eq!(paths, [true, false, false, true]);
        assert_eq!(got[0].0, r#"{"a":2,"b":1}"#);
        assert_eq!(got[1].0, r#"{"ké":1}"#);
        assert_eq!(got[2].0, r#"{"a\"b":1}"#);
        assert_eq!(got[3].0, r#"{"x":"é/"}"#);
        // A record that is not JSON fails the body with the tree path's
        // error, at the same place.
        for bad in [
            r#"{"d":[{"a":1},{"a":tru}]}"#,
            r#"{"d":[{"a":"x
y"}]}"#,
            r#"{"d":[{"a":"\ud800"}]}"#,
            r#"{"d":[{"a":1,}]}"#,
            r#"{"d":[{"a" 1}]}"#,
            r#"{"d":[[1 2]]}"#,
            r#"{"d":[01]}"#,
            r#"{"d":[{"a":"\q"}]}"#,
        ] {
            let mut n = 0;
            let e = Json::parse_records(bad.as_bytes(), "/d", &mut |_, _| n += 1).unwrap_err();
            assert_eq!(e, Json::parse(bad.as_bytes()).unwrap_err(), "{bad}");
        }
        // Nesting past MAX_DEPTH inside a record: refused as before.
        let depth = super::MAX_DEPTH;
        let deep = format!("{{\"d\":[{}{}]}}", "[".repeat(depth), "]".repeat(depth));
        let e = Json::parse_records(deep.as_bytes(), "/d", &mut |_, _| {}).unwrap_err();
        assert!(e.is_too_deep(), "{e}");
        let fits = format!(
            "{{\"d\":[{}{}]}}",
            "[".repeat(depth - 2),
            "]".repeat(depth - 2)
        );
        assert_eq!(handed(&fits).len(), 1);
    }

    /// A record written as text is charged the heap its tree would take:
    /// exactly, without escaped strings (whose copies the tree grows as it
    /// unescapes them); about it, with them.
    #[test]
    fn a_record_is_charged_what_its_tree_would_take() {
        use super::super::scan::Parser;
        for (rec, exact) in [
            (
                r#"{"b":1,"a":[{"c":"x"},[],{},[1,[2,3]]],"z":{"y":null}}"#,
                true,
            ),
            (r#"[1,"two",{"k":[true]}]"#, true),
            (r#""plain""#, true),
            (
                r#"{"s":"linha\n\"aspas\" \u00e9 e mais texto depois do escape"}"#,
                false,
            ),
        ] {
            let (_, tree) = Json::parse_sized(rec.as_bytes()).unwrap();
            let mut p = Parser::of(rec.as_bytes()).unwrap();
            let mut w = super::Writer::default();
            assert!(p.record_text(0, &mut w).is_some(), "{rec}");
            if exact {
                assert_eq!(p.heap, tree, "{rec}");
            } else {
                assert!(
                    p.heap * 2 >= tree && p.heap <= tree * 2,
                    "{rec}: {} vs {tree}",
                    p.heap
                );
            }
        }
    }

    /// The members a date is looked up in are the ones a lookup on the
    /// whole record finds: the last of a repeated key.
    #[test]
    fn only_the_members_asked_for_as_a_lookup_finds_them() {
        let body = br#"{"d":[{"dt":"2024-01-01","x":{"when":5},"dt":"2024-02-02"},[1]]}"#;
        let mut seen = Vec::new();
        Json::parse_records(body, "/d", &mut |_, el| {
            if let Element::Text(r) = el {
                seen.push((
                    r.only(&["dt", "nope"]),
                    r.at_pointer("/x/when"),
                    r.at_pointer(""),
                    r.source.to_string(),
                ));
            }
        })
        .unwrap();
        let whole =
            Json::parse(br#"{"dt":"2024-01-01","x":{"when":5},"dt":"2024-02-02"}"#).unwrap();
        let (dt, x, all, source) = &seen[0];
        assert_eq!(dt.as_ref().unwrap().get("dt"), whole.get("dt"));
        assert_eq!(dt.as_ref().unwrap().get("nope"), None);
        assert_eq!(
            x.as_ref().unwrap().pointer("/x/when"),
            whole.pointer("/x/when")
        );
        assert_eq!(*all, None);
        assert_eq!(
            source,
            r#"{"dt":"2024-01-01","x":{"when":5},"dt":"2024-02-02"}"#
        );
        // A record that is not an object has no members to look in.
        assert_eq!(seen[1].0, None);
    }
}
