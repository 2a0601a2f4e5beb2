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

mod canonical;
mod parse;
#[cfg(test)]
mod props;
mod scan;
mod text;

#[cfg(test)]
pub use canonical::canonical;
#[cfg(test)]
pub use canonical::canonical_checked;
pub use canonical::{canonical_into, canonical_sized, nul_paths, out_of_range_number, Findings};
use parse::Sink;
use scan::Parser;
pub use text::Record;

/// Deepest nesting of arrays and objects a body may have. Real payloads stay
/// far below (tens of levels); the bound keeps the recursive walks of a
/// record (canonical text, drop) within `THREAD_STACK`.
pub const MAX_DEPTH: usize = 1024;

/// Stack for a thread that parses bodies and canonicalises their records:
/// walking and dropping a `MAX_DEPTH` tree needs between 0.75 and 1 MiB in a
/// debug build (measured), less optimised; 4 MiB keeps a margin of 2 or more
/// (`max_depth_fits_in_thread_stack` runs it on half of this).
pub const THREAD_STACK: usize = 4 * 1024 * 1024;

/// A record handed over by `Json::parse_records`: its canonical text where
/// the text path took it, else its tree.
pub enum Element<'r, 'a> {
    Text(Record<'r, 'a>),
    Tree(Json<'a>),
}

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
        Json::parse_sized(bytes).map(|(v, _)| v)
    }

    /// As `parse`, with the heap bytes the tree takes (beyond the body's):
    /// what the memory budget charges for it.
    pub fn parse_sized(bytes: &'a [u8]) -> Result<(Json<'a>, usize), Error> {
        let mut p = Parser::of(bytes)?;
        let v = p.document(None)?;
        Ok((v, p.heap))
    }

    /// As `parse_sized`, handing each element of the array at `pointer` to
    /// `take` as soon as it is parsed (its index, and its canonical text
    /// written straight from the body, or its tree where that path gives
    /// up) and leaving `null` in its place; the heap bytes count the trees
    /// built (of the rest of the body, and of elements taken as trees) and
    /// the buffers the texts were written in.
    /// Also says how many arrays were found at that path: the elements
    /// taken are the records only when it is exactly one (keys repeated on
    /// the path can hold several, of which `pointer` sees the last) and
    /// `pointer` finds an array in the tree. Arrays on the way to the
    /// pointer (numeric tokens) are not followed: nothing is taken.
    pub fn parse_records(
        bytes: &'a [u8],
        pointer: &str,
        take: &mut dyn FnMut(usize, Element<'_, 'a>),
    ) -> Result<(Json<'a>, usize, u32), Error> {
        let mut p = Parser::of(bytes)?;
        let Some(tokens) = pointer_tokens(pointer) else {
            let v = p.document(None)?;
            return Ok((v, p.heap, 0));
        };
        let tokens: Vec<Cow<'_, str>> = tokens.collect();
        let mut sink = Sink {
            tokens: &tokens,
            take,
            matched: 0,
        };
        let v = p.document(Some(&mut sink))?;
        Ok((v, p.heap, sink.matched))
    }

    /// RFC 6901 JSON pointer lookup (`""` is the whole value).
    pub fn pointer(&self, ptr: &str) -> Option<&Json<'a>> {
        let mut cur = self;
        for token in pointer_tokens(ptr)? {
            cur = match cur {
                Json::Obj(members) => members
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == token)
                    .map(|(_, v)| v)?,
                Json::Arr(items) => items.get(array_index(&token)?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// As `pointer`, for a value to change in place.
    pub fn pointer_mut(&mut self, ptr: &str) -> Option<&mut Json<'a>> {
        let mut cur = self;
        for token in pointer_tokens(ptr)? {
            cur = match cur {
                Json::Obj(members) => members
                    .iter_mut()
                    .rev()
                    .find(|(k, _)| *k == token)
                    .map(|(_, v)| v)?,
                Json::Arr(items) => items.get_mut(array_index(&token)?)?,
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

/// The reference tokens of an RFC 6901 pointer, unescaped (`~1` is `/`,
/// `~0` is `~`); none for `""` (the whole value), `None` if it is not a pointer.
fn pointer_tokens(ptr: &str) -> Option<impl Iterator<Item = Cow<'_, str>>> {
    // No allocation: pointers are looked up on every record.
    let rest = match ptr {
        "" => None,
        p => Some(p.strip_prefix('/')?),
    };
    Some(rest.into_iter().flat_map(|r| r.split('/')).map(|raw| {
        if raw.contains('~') {
            Cow::Owned(raw.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(raw)
        }
    }))
}

/// A token as an array index: digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.len() > 1 && token.starts_with('0') {
        return None;
    }
    token.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::canonical::{pg_numeric_fits, Findings};
    use super::*;
    use serde_json::Value;

    /// The tree holds no spare capacity, and `parse_sized` counts exactly
    /// the heap it takes: vectors of the exact size, escaped strings.
    #[test]
    fn tree_vectors_are_exact_and_counted() {
        let text = br#"{"a":[1,2,3],"b":{"c":"x\ny","d":[]},"e":[{"f":1}]}"#;
        let (v, heap) = Json::parse_sized(text).unwrap();
        fn walk(v: &Json<'_>, sum: &mut usize) {
            match v {
                Json::Arr(a) => {
                    assert_eq!(a.capacity(), a.len());
                    *sum += a.capacity() * size_of::<Json<'_>>();
                    a.iter().for_each(|x| walk(x, sum));
                }
                Json::Obj(m) => {
                    assert_eq!(m.capacity(), m.len());
                    *sum += m.capacity() * size_of::<(Cow<'_, str>, Json<'_>)>();
                    for (k, x) in m {
                        if let Cow::Owned(k) = k {
                            *sum += k.capacity();
                        }
                        walk(x, sum);
                    }
                }
                Json::Str(Cow::Owned(s)) => *sum += s.capacity(),
                _ => {}
            }
        }
        let mut sum = 0;
        walk(&v, &mut sum);
        assert_eq!(heap, sum);
        // 3 members, 3 + 1 items, 2 + 1 members and "x\ny" unescaped.
        assert!(heap > 9 * 32, "{heap}");
        assert_eq!(v.pointer("/b/c"), Some(&Json::Str("x\ny".into())));
    }

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
    fn keys_sharing_long_prefixes_sort_by_all_their_bytes() {
        // The sort compares 8-byte prefixes first: keys equal in them, or
        // shorter than them, must still sort by every byte.
        same_as_value(
            r#"{"abcdefghi":1,"abcdefgh":2,"abcdefgg":3,"abcdefgh\u0001":4,"abcdefgha":5,"aaaaaaa":6,"":7,"abcdefghi":8,"é":9,"abcdefgh":10}"#,
        );
        let members: Vec<String> = (0..40)
            .map(|i| format!(r#""prefixed_key_{:02}":{i}"#, (i * 17) % 40))
            .collect();
        same_as_value(&format!("{{{}}}", members.join(",")));
        let j = Json::parse(br#"{"aaaaaaaa\u0000":1,"aaaaaaaa":2,"aaaaaaaa\u0000":3}"#).unwrap();
        assert_eq!(canonical(&j), "{\"aaaaaaaa\":2,\"aaaaaaaa\u{FFFD}\":3}");
    }

    #[test]
    fn plain_run_stops_where_a_byte_scan_does() {
        let scan = |b: &[u8], i: usize| {
            (i..b.len())
                .find(|&k| b[k] == b'"' || b[k] == b'\\' || b[k] < 0x20)
                .unwrap_or(b.len())
        };
        for len in 0..20 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[at] = byte;
                    for from in 0..=len {
                        assert_eq!(
                            scan::plain_run(&b, from),
                            scan(&b, from),
                            "{b:?} from {from}"
                        );
                    }
                }
            }
        }
        // Several stops in one word: the first one counts.
        let b = b"ab\"c\\d\x01e\"\"\"\"\"\"\"\"";
        for from in 0..=b.len() {
            assert_eq!(scan::plain_run(b, from), scan(b, from));
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

    type Parsed = Result<(Json<'static>, usize, u32), Error>;

    /// What `parse_records` takes, by index, in canonical text.
    fn taken(text: &str, ptr: &str) -> (Parsed, Vec<(usize, String)>) {
        let text: &'static [u8] = Box::leak(text.as_bytes().to_vec().into_boxed_slice());
        let mut got = Vec::new();
        let r = Json::parse_records(text, ptr, &mut |i, el| {
            got.push((
                i,
                match el {
                    Element::Text(r) => r.text.to_string(),
                    Element::Tree(t) => canonical(&t),
                },
            ))
        });
        (r, got)
    }

    /// Elements of the array at the pointer are handed over in order as they
    /// are parsed, `null` is left in their place, and the rest of the tree
    /// is whole.
    #[test]
    fn parse_records_hands_over_the_records_and_keeps_the_rest() {
        let text = r#"{"items":[1],"result":{"x":{"items":[2]},"items":[{"b":1,"a":[{"c":"\u00e9"}]},"s",[3],{}],"total":4},"n":2}"#;
        let (r, got) = taken(text, "/result/items");
        let (v, heap, found) = r.unwrap();
        assert_eq!(found, 1);
        assert_eq!(
            got,
            [
                (0, r#"{"a":[{"c":"é"}],"b":1}"#.to_string()),
                (1, r#""s""#.to_string()),
                (2, "[3]".to_string()),
                (3, "{}".to_string()),
            ]
        );
        assert_eq!(
            canonical(&v),
            r#"{"items":[1],"n":2,"result":{"items":[null,null,null,null],"total":4,"x":{"items":[2]}}}"#
        );
        let whole = Json::parse(text.as_bytes()).unwrap();
        let (mut nulled, _) = Json::parse_sized(text.as_bytes()).unwrap();
        if let Some(Json::Arr(a)) = nulled.pointer_mut("/result/items") {
            a.iter_mut().for_each(|x| *x = Json::Null);
        }
        assert_eq!(v, nulled);
        assert_ne!(v, whole);
        // The records went as text: the heap counts the whole tree, as if
        // built, and the buffers the texts were written in.
        let (_, whole_heap) = Json::parse_sized(text.as_bytes()).unwrap();
        assert!(
            heap > whole_heap && heap < whole_heap + 4096,
            "{heap} vs {whole_heap}"
        );
    }

    #[test]
    fn parse_records_counts_arrays_at_the_path_and_follows_no_arrays() {
        // A repeated key: two arrays at the path (the pointer sees the last).
        let (r, got) = taken(r#"{"d":[1,2],"d":[],"d":[3]}"#, "/d");
        assert_eq!(r.unwrap().2, 3);
        assert_eq!(got.len(), 3);
        // The root array, and an escaped token.
        let (r, got) = taken(r#"[{"a":1},2]"#, "");
        assert_eq!(r.unwrap().2, 1);
        assert_eq!(got, [(0, r#"{"a":1}"#.to_string()), (1, "2".to_string())]);
        let (r, got) = taken(r#"{"a/b":{"~":[true]}}"#, "/a~1b/~0");
        assert_eq!(r.unwrap().2, 1);
        assert_eq!(got, [(0, "true".to_string())]);
        // Through an array, at a path that is not an array, or not a pointer:
        // nothing is taken and the tree is whole.
        for (text, ptr) in [
            (r#"[{"d":[1]}]"#, "/0/d"),
            (r#"{"d":{"e":[1]}}"#, "/d"),
            (r#"{"d":[1]}"#, "d"),
            (r#"{"e":[1]}"#, "/d"),
        ] {
            let (r, got) = taken(text, ptr);
            let (v, _, found) = r.unwrap();
            assert_eq!((found, got.len()), (0, 0), "{text} {ptr}");
            assert_eq!(v, Json::parse(text.as_bytes()).unwrap());
        }
        // A body that is not JSON after its records is still refused.
        let (r, got) = taken(r#"{"d":[1,2],"x":tru}"#, "/d");
        assert!(r.is_err());
        assert_eq!(got.len(), 2);
    }
}
