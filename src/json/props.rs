//! Property tests (proptest) of the parser and the canonical writer against serde_json, on
//! generated JSON texts (nesting, every escape, surrogate pairs, numbers of every form and
//! size, repeated keys, whitespace anywhere) and on mutations of them (bytes flipped,
//! inserted, deleted, duplicated, the text cut):
//! 1. atlas accepts exactly what serde_json accepts;
//! 2. the canonical text is serde_json's compact serialisation with sorted keys (its
//!    `BTreeMap`: the last of a repeated key wins), numbers as written;
//! 3. the text path (`Json::parse_records`) writes what the tree path writes.
//!
//! The oracle is serde_json without `arbitrary_precision`: a dev-dependency's feature is
//! unified into the whole `cargo test` build, atlas binary included, and that one changes
//! what atlas does with the config's numbers (a request `body`'s `1E2` would be sent as
//! `1e+2`, not `100.0`; a response rule's `"equals": 10.5` would no longer match `10.50`:
//! its numbers compare as text), so the integration tests would test another program.
//! `raw_value` changes nothing atlas uses: serde_json reads the document once as a
//! `RawValue` (its own grammar, numbers scanned without conversion, so `1e400` passes as it
//! does with `arbitrary_precision`), then each container again, members as `RawValue`s,
//! strings and keys as `String` (escapes and surrogates checked), numbers kept as their
//! text. `arbitrary_precision` would write that text with its exponent respelled (`1E2` as
//! `1e+2`): atlas's text must equal the oracle's exactly, and, respelled, what
//! `arbitrary_precision` writes.
//!
//! Deliberate differences, each asserted: atlas refuses nesting past `MAX_DEPTH` (the
//! oracle has no bound; serde_json's default one is 128 levels), and writes U+0000 as
//! U+FFFD (JSONB cannot hold it), after sorting by the key as sent.
//!
//! Cases: a few thousand in all by default; `PROPTEST_CASES=N` runs N per property (e.g.
//! `PROPTEST_CASES=100000 cargo test --bin atlas json::props`). Nothing is written to disk
//! on a failure: proptest prints the minimal case, which becomes a test of its own.

use super::{canonical_checked, Element, Json, MAX_DEPTH};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// serde_json's reading of a JSON text, numbers as written.
#[derive(Debug)]
enum Oracle {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Oracle>),
    Obj(BTreeMap<String, Oracle>),
}

fn oracle(bytes: &[u8]) -> Result<Oracle, serde_json::Error> {
    let raw: Box<RawValue> = serde_json::from_slice(bytes)?;
    from_raw(raw.get())
}

/// One value already checked by serde_json's grammar, read again piece by piece.
fn from_raw(text: &str) -> Result<Oracle, serde_json::Error> {
    Ok(match text.as_bytes().first() {
        Some(b'{') => {
            // Every member is read, a repeated key's too (as serde_json reads a `Value`),
            // then the last of each key is kept.
            let Members(members) = serde_json::from_str(text)?;
            let mut out = BTreeMap::new();
            for (k, v) in members {
                out.insert(k, from_raw(v.get())?);
            }
            Oracle::Obj(out)
        }
        Some(b'[') => {
            let items: Vec<Box<RawValue>> = serde_json::from_str(text)?;
            let items: Result<Vec<Oracle>, _> = items.iter().map(|v| from_raw(v.get())).collect();
            Oracle::Arr(items?)
        }
        Some(b'"') => Oracle::Str(serde_json::from_str(text)?),
        Some(b'n') => Oracle::Null,
        Some(b't') => Oracle::Bool(true),
        Some(b'f') => Oracle::Bool(false),
        _ => Oracle::Num(text.to_string()),
    })
}

/// An object's members in the order written, repeated keys included.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

impl Oracle {
    fn depth(&self) -> usize {
        match self {
            Oracle::Arr(items) => 1 + items.iter().map(Oracle::depth).max().unwrap_or(0),
            Oracle::Obj(m) => 1 + m.values().map(Oracle::depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// serde_json's compact text, numbers as written (or respelled as `arbitrary_precision`
    /// writes them), U+0000 as U+FFFD.
    fn text(&self, respell: bool) -> String {
        serde_json::to_string(&Written(self, respell)).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// `1E2` as `arbitrary_precision` writes it: `1e+2` (its scanner writes `e` and a sign).
fn respelled(number: &str) -> String {
    match number.find(['e', 'E']) {
        None => number.to_string(),
        Some(at) => {
            let (mantissa, rest) = (&number[..at], &number[at + 1..]);
            let sign = if rest.starts_with(['+', '-']) {
                ""
            } else {
                "+"
            };
            format!("{mantissa}e{sign}{rest}")
        }
    }
}

/// A canonical text with every number's exponent respelled (an `e` or `E` after a digit,
/// outside strings, is a number's).
fn respell_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped, mut prev) = (false, false, ' ');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            in_str = escaped || c != '"';
            escaped = !escaped && c == '\\';
            out.push(c);
        } else if (c == 'e' || c == 'E') && prev.is_ascii_digit() {
            out.push('e');
            if !matches!(chars.peek(), Some('+' | '-')) {
                out.push('+');
            }
        } else {
            in_str = c == '"';
            out.push(c);
        }
        prev = c;
    }
    out
}

struct Written<'o>(&'o Oracle, bool);

impl Serialize for Written<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let nul = |t: &str| t.replace('\0', "\u{FFFD}");
        match self.0 {
            Oracle::Null => s.serialize_unit(),
            Oracle::Bool(b) => s.serialize_bool(*b),
            Oracle::Num(n) => {
                let text = if self.1 { respelled(n) } else { n.clone() };
                RawValue::from_string(text)
                    .map_err(serde::ser::Error::custom)?
                    .serialize(s)
            }
            Oracle::Str(t) => s.serialize_str(&nul(t)),
            Oracle::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Written(item, self.1))?;
                }
                seq.end()
            }
            Oracle::Obj(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(&nul(k), &Written(v, self.1))?;
                }
                map.end()
            }
        }
    }
}

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    Config {
        cases: cases.unwrap_or(default_cases),
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- generators

fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just(""),
        1 => prop::sample::select(vec![" ", "\n", "\t", "\r\n  ", " \t "]),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,6})?",
        1 => prop::sample::select(vec![
            "1e400", "-0", "-0.0", "1E+2", "1e999999", "0e-999999", "10.50", "1234.5600",
            "18446744073709551616", "-9223372036854775809", "2.2250738585072014e-308",
        ])
        .prop_map(str::to_string),
        1 => (1usize..2_000).prop_map(|n| format!("9{}", "7".repeat(n))),
        1 => Just(format!("-1.{}e-3", "3".repeat(10_000))),
    ]
}

/// A piece of string text: plain characters, short escapes, `\u` escapes of any
/// character (a pair for one beyond the BMP, upper or lower hex) and, rarely, a lone
/// surrogate or a raw control character (which make the text invalid).
fn string_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => any::<char>()
            .prop_filter("plain", |c| *c >= ' ' && *c != '"' && *c != '\\')
            .prop_map(String::from),
        4 => "[a-zA-Z0-9 éã~]{1,9}",
        4 => prop::sample::select(vec!["\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"])
            .prop_map(str::to_string),
        4 => (any::<char>(), any::<bool>()).prop_map(|(c, upper)| {
            c.encode_utf16(&mut [0; 2])
                .iter()
                .map(|u| match upper {
                    true => format!("\\u{u:04X}"),
                    false => format!("\\u{u:04x}"),
                })
                .collect()
        }),
        2 => prop::sample::select(vec!["\\u0000", "\\u001f", "\\u007f", "\\u2028", "\\ud83d\\ude00"])
            .prop_map(str::to_string),
        1 => prop::sample::select(vec!["\\ud800", "\\udfff", "\\ud800\\u0041", "\u{1}", "\t"])
            .prop_map(str::to_string),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop::collection::vec(string_piece(), 0..6).prop_map(|p| format!("\"{}\"", p.concat()))
}

/// Keys from a small pool (so they repeat), sharing prefixes, or any string.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "\"a\"", "\"b\"", "\"id\"", "\"\"", "\"é\"", "\"😀\"", "\"Z\"", "\"abcdefgh\"",
            "\"abcdefghi\"", "\"abcdefgg\"", "\"a\\u0000\"", "\"a\u{FFFD}\"", "\"\\u0061\"",
        ])
        .prop_map(str::to_string),
        1 => string(),
    ]
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        1 => prop::sample::select(vec!["null", "true", "false"]).prop_map(str::to_string),
        3 => number(),
        3 => string(),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec((ws(), inner.clone(), ws()), 0..6).prop_map(|items| {
                let items: Vec<String> = items
                    .into_iter()
                    .map(|(a, v, b)| format!("{a}{v}{b}"))
                    .collect();
                format!("[{}]", items.join(","))
            }),
            prop::collection::vec((ws(), key(), ws(), inner, ws()), 0..7).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(a, k, b, v, c)| format!("{a}{k}{b}:{v}{c}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// A value now and then wrapped in up to 60 more levels of arrays and objects (the bits of
/// `shape` choosing each), with members beside it.
fn nested() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => value(),
        1 => (value(), 1usize..60, any::<u64>()).prop_map(|(v, levels, shape)| {
            let (mut open, mut close) = (String::new(), String::new());
            for l in 0..levels {
                if shape >> (l % 64) & 1 == 1 {
                    open.push_str("[0,");
                    close.insert(0, ']');
                } else {
                    open.push_str("{\"z\":1,\"k\":");
                    close.insert(0, '}');
                }
            }
            format!("{open}{v}{close}")
        }),
    ]
}

fn document() -> impl Strategy<Value = Vec<u8>> {
    (ws(), nested(), ws()).prop_map(|(a, v, b)| format!("{a}{v}{b}").into_bytes())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Cut(prop::sample::Index),
    Repeat(prop::sample::Index, prop::sample::Index),
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(b"{}[]\",:\\ 0123456789eE.-+untrfals/\x00\x1f\x7f".to_vec()),
        1 => any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    use prop::sample::Index;
    prop_oneof![
        (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Cut),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Repeat(a, b)),
    ]
}

fn mutate(mut doc: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = doc.len();
        if n == 0 {
            doc.push(b'0');
            continue;
        }
        match m {
            Mutation::Flip(i, b) => doc[i.index(n)] = *b,
            Mutation::Insert(i, b) => doc.insert(i.index(n + 1), *b),
            Mutation::Delete(i) => {
                doc.remove(i.index(n));
            }
            Mutation::Cut(i) => doc.truncate(i.index(n)),
            Mutation::Repeat(a, b) => {
                let (a, b) = (a.index(n), b.index(n));
                let piece = doc[a.min(b)..=a.max(b)].to_vec();
                let at = a.max(b) + 1;
                doc.splice(at..at, piece);
            }
        }
    }
    doc
}

// ---------------------------------------------------------------- properties

/// Properties 1 and 2 for one text.
fn same_as_serde_json(bytes: &[u8]) -> Result<(), TestCaseError> {
    let ours = Json::parse(bytes);
    let theirs = oracle(bytes);
    let shown = String::from_utf8_lossy(bytes);
    match (&ours, &theirs) {
        (Ok(j), Ok(o)) => {
            prop_assert!(o.depth() <= MAX_DEPTH);
            let (text, _) = canonical_checked(j);
            prop_assert_eq!(&text, &o.text(false), "canonical text of {}", shown);
            prop_assert_eq!(respell_text(&text), o.text(true), "respelled, of {}", shown);
        }
        (Err(_), Err(_)) => {}
        (Err(e), Ok(o)) => {
            prop_assert!(
                e.is_too_deep() && o.depth() > MAX_DEPTH,
                "atlas refuses ({}) what serde_json accepts: {}",
                e,
                shown
            );
        }
        (Ok(_), Err(e)) => {
            prop_assert!(
                false,
                "atlas accepts what serde_json refuses ({}): {}",
                e,
                shown
            )
        }
    }
    Ok(())
}

/// Property 3 for one body holding `records` at `/d`: the body is refused by the text
/// path exactly when (and where) the tree path refuses it; accepted, each record is handed
/// over with the text and findings its tree gives.
fn text_path_is_tree_path(body: &[u8]) -> Result<(), TestCaseError> {
    let mut handed = Vec::new();
    let by_records = Json::parse_records(body, "/d", &mut |i, el| {
        handed.push(match el {
            Element::Text(r) => (i, r.text.to_string(), r.found),
            Element::Tree(t) => {
                let (text, found) = canonical_checked(&t);
                (i, text, found)
            }
        })
    });
    let whole = Json::parse(body);
    let shown = String::from_utf8_lossy(body);
    match (by_records, whole) {
        (Ok((_, _, matched)), Ok(tree)) => {
            if matched == 1 {
                let Some(Json::Arr(records)) = tree.pointer("/d") else {
                    return Err(TestCaseError::fail(format!("no records at /d: {shown}")));
                };
                let want: Vec<_> = records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let (text, found) = canonical_checked(r);
                        (i, text, found)
                    })
                    .collect();
                prop_assert_eq!(handed, want, "records of {}", shown);
            }
        }
        (Err(a), Err(b)) => prop_assert_eq!(a, b, "the error of {}", shown),
        (a, b) => prop_assert!(
            false,
            "text path {:?}, tree path {:?}: {}",
            a.map(|_| ()),
            b.map(|_| ()),
            shown
        ),
    }
    Ok(())
}

fn records_body() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec((ws(), value(), ws()), 0..6), ws()).prop_map(|(records, w)| {
        let records: Vec<String> = records
            .into_iter()
            .map(|(a, r, b)| format!("{a}{r}{b}"))
            .collect();
        format!("{{\"total\":1,{w}\"d\":[{}]}}", records.join(",")).into_bytes()
    })
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn generated_texts_read_as_serde_json_reads_them(doc in document()) {
        same_as_serde_json(&doc)?;
    }

    #[test]
    fn mutated_texts_read_as_serde_json_reads_them(
        doc in document(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        same_as_serde_json(&mutate(doc, &mutations))?;
    }
}

proptest! {
    #![proptest_config(config(800))]

    #[test]
    fn the_text_path_writes_what_the_tree_path_writes(body in records_body()) {
        text_path_is_tree_path(&body)?;
    }

    #[test]
    fn the_text_path_refuses_what_the_tree_path_refuses(
        body in records_body(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let body = mutate(body, &mutations);
        text_path_is_tree_path(&body)?;
        same_as_serde_json(&body)?;
    }
}

/// Nesting around `MAX_DEPTH`: serde_json (unbounded here) reads every depth; atlas reads
/// up to the bound and refuses past it. On a thread with a large stack: the oracle recurses.
#[test]
fn nesting_up_to_the_bound_reads_as_serde_json_reads_it() {
    std::thread::Builder::new()
        .stack_size(256 * 1024 * 1024)
        .spawn(|| {
            for depth in [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 2 * MAX_DEPTH] {
                for (open, close) in [("[", "]"), ("{\"k\":", "}"), ("[{\"a\":", "}]")] {
                    let levels = open.matches(['[', '{']).count();
                    let n = depth / levels;
                    let text = format!("{}1{}", open.repeat(n), close.repeat(n));
                    let o = oracle(text.as_bytes()).expect("serde_json reads any depth");
                    assert_eq!(o.depth(), n * levels);
                    match Json::parse(text.as_bytes()) {
                        Ok(j) => {
                            assert!(o.depth() <= MAX_DEPTH);
                            assert_eq!(canonical_checked(&j).0, o.text(false));
                        }
                        Err(e) => assert!(e.is_too_deep() && o.depth() > MAX_DEPTH, "{e}"),
                    }
                }
            }
        })
        .expect("thread")
        .join()
        .expect("no panic");
}

/// The oracle itself: serde_json's grammar, numbers as written, the last repeated key.
#[test]
fn the_oracle_reads_as_serde_json_does() {
    let o = oracle(br#" {"b":1E2,"a":[1e400,-0,"\u00e9\ud83d\ude00"],"b":10.50} "#).expect("json");
    assert_eq!(o.text(false), r#"{"a":[1e400,-0,"é😀"],"b":10.50}"#);
    assert_eq!(o.text(true), r#"{"a":[1e+400,-0,"é😀"],"b":10.50}"#);
    for bad in [
        "[1,]",
        "\"\\ud800\"",
        "{\"a\":\"\\ud800\",\"a\":1}",
        "01",
        "[\"a\u{1}\"]",
        "{\"a\":1}x",
        "1.",
        "\"\\ud800\\u0041\"",
    ] {
        assert!(oracle(bad.as_bytes()).is_err(), "{bad}");
    }
    assert!(oracle(b"[\"\xff\"]").is_err(), "invalid UTF-8");
    assert_eq!(
        respell_text(r#"[1E2,true,"1e2",2e-3,false,"\"e"]"#),
        r#"[1e+2,true,"1e2",2e-3,false,"\"e"]"#
    );
}
