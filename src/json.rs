//! A borrowed JSON tree for the hot path: a page is parsed once, strings
//! and keys point into the response body (no copy unless escaped), pointers
//! are looked up on it, and records are written in canonical form from it.
//!
//! `canonical` writes exactly what serde_json writes for a `Value` (keys
//! sorted by code point, last duplicate key wins, numbers as serde_json
//! formats them, the same string escaping), without building a `Value`.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use std::borrow::Cow;
use std::fmt;

/// A JSON value borrowing from its source text.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Num(Number),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    /// Members in source order (duplicates kept; lookups take the last).
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses a body; strings without escapes borrow from it.
    pub fn parse(bytes: &'a [u8]) -> serde_json::Result<Json<'a>> {
        serde_json::from_slice(bytes)
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
        Value::Number(n) => Json::Num(n.clone()),
        Value::String(s) => Json::Str(Cow::Owned(s.clone())),
        Value::Array(a) => Json::Arr(a.iter().map(from_value).collect()),
        Value::Object(o) => Json::Obj(
            o.iter()
                .map(|(k, v)| (Cow::Owned(k.clone()), from_value(v)))
                .collect(),
        ),
    }
}

impl fmt::Display for Json<'_> {
    /// Canonical JSON (for messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&canonical(self))
    }
}

/// The canonical JSON text of a value (SPEC §4).
pub fn canonical(v: &Json<'_>) -> String {
    let mut out = Vec::with_capacity(512);
    write_canonical(v, &mut out);
    // Only valid UTF-8 is ever written: JSON text and serde_json's escapes.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping, so the text equals `Value::to_string`.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn write_canonical(v: &Json<'_>, out: &mut Vec<u8>) {
    match v {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Num(n) => {
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Json::Str(s) => write_str(s, out),
        Json::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Json::Obj(members) => {
            // Sort by key bytes (UTF-8 byte order is code point order); a
            // stable sort keeps repeated keys in source order, the last wins.
            let mut order: Vec<usize> = (0..members.len()).collect();
            order.sort_by(|a, b| members[*a].0.as_bytes().cmp(members[*b].0.as_bytes()));
            out.push(b'{');
            let mut first = true;
            for (pos, &i) in order.iter().enumerate() {
                if order
                    .get(pos + 1)
                    .is_some_and(|&n| members[n].0 == members[i].0)
                {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_str(&members[i].0, out);
                out.push(b':');
                write_canonical(&members[i].1, out);
            }
            out.push(b'}');
        }
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json<'de>, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json<'de>, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
                Ok(Json::Num(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
                Ok(Json::Num(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json<'de>, E> {
                Number::from_f64(v)
                    .map(Json::Num)
                    .ok_or_else(|| E::custom("a number that is not finite"))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(k)) = map.next_key()? {
                    members.push((k, map.next_value()?));
                }
                Ok(Json::Obj(members))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn same_as_value(text: &str) {
        let v: Value = serde_json::from_str(text).unwrap();
        let j = Json::parse(text.as_bytes()).unwrap();
        assert_eq!(canonical(&j), v.to_string(), "for {text}");
    }

    #[test]
    fn canonical_equals_serde_json_value_output() {
        for t in [
            r#"{"b":1,"a":[true,false,null],"c":{"z":"\u00e9\n\"x\"","y":-0.0}}"#,
            r#"{"n":10.50,"m":1e3,"big":18446744073709551615,"neg":-9223372036854775808,"f":0.1,"e":1.5e-7}"#,
            r#"{"dup":1,"a":2,"dup":3}"#,
            r#"{"😀":1,"ﬁ":2,"Z":3,"a":4,"":5}"#,
            r#"["\u0001\u001f\u007f","\ud83d\ude00","tab\there","slash\/"]"#,
            r#"{"nested":{"k":{"j":{"i":[{"b":1,"a":2}]}}}}"#,
            r#"12"#,
            r#""s""#,
            r#"{}"#,
            r#"[]"#,
        ] {
            same_as_value(t);
        }
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
    fn pointers_follow_rfc_6901() {
        let j = Json::parse(br#"{"a/b":{"m~n":[10,{"x":"y"}]},"d":1,"d":2}"#).unwrap();
        assert_eq!(
            j.pointer("/a~1b/m~0n/1/x"),
            Some(&Json::Str(Cow::Borrowed("y")))
        );
        assert_eq!(j.pointer("/a~1b/m~0n/0"), Some(&Json::Num(10.into())));
        assert_eq!(j.pointer("/a~1b/m~0n/01"), None);
        assert_eq!(j.pointer("/a~1b/m~0n/9"), None);
        assert_eq!(
            j.pointer("/d"),
            Some(&Json::Num(2.into())),
            "last duplicate wins"
        );
        assert_eq!(j.pointer("nope"), None);
        assert_eq!(j.pointer(""), Some(&j));
    }
}
