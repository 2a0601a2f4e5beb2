//! The character set of JSON bodies (`--charset`): UTF-8 as serialised, or ISO-8859-1 as old
//! ERPs send it, labelled in `Content-Type` either way. Characters Latin-1 lacks (such as
//! the em dash in some `observacao` texts) are written as JSON `\uXXXX` escapes, so a client
//! that decodes by the declared charset reads the very same JSON value.

use crate::cli::cli_enum;
use crate::http::{Reply, JSON};

pub const JSON_LATIN1: &str = "application/json; charset=ISO-8859-1";

cli_enum!(Charset { Utf8 = "utf8", Latin1 = "latin1" });

impl Charset {
    /// `reply` with a UTF-8 JSON body re-encoded in this charset; any other reply unchanged.
    /// A body cut inside a character (the `truncate` fault) loses that partial character.
    pub fn encode(self, mut reply: Reply) -> Reply {
        if self == Charset::Utf8 || reply.content_type != JSON {
            return reply;
        }
        let text = match std::str::from_utf8(&reply.body) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&reply.body[..e.valid_up_to()]).unwrap_or_default(),
        };
        reply.body = latin1(text);
        reply.content_type = JSON_LATIN1;
        reply
    }
}

/// ISO-8859-1 bytes of a JSON text: U+0000..=U+00FF as one byte each, any other character as
/// a `\uXXXX` escape (two for a character beyond the BMP). Only valid for JSON, where such
/// characters can stand only inside strings.
pub fn latin1(json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    for c in json.chars() {
        match u8::try_from(c) {
            Ok(byte) => out.push(byte),
            Err(_) => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_client::{start, Client, RANGE};
    use serde_json::Value;

    /// What a client decoding by the declared charset reads.
    fn from_latin1(bytes: &[u8]) -> String {
        bytes.iter().map(|&b| char::from(b)).collect()
    }

    #[test]
    fn latin1_bytes_and_escapes() {
        assert_eq!(latin1("São Paulo"), b"S\xe3o Paulo");
        assert_eq!(latin1("Ação ÿ"), b"A\xe7\xe3o \xff");
        assert_eq!(latin1("a — b"), b"a \\u2014 b");
        assert_eq!(latin1("€😀"), b"\\u20ac\\ud83d\\ude00");
        let json = r#"{"cidade":"Goiânia","obs":"Presente — não 😀","n":1.5}"#;
        let decoded: Value = serde_json::from_str(&from_latin1(&latin1(json))).expect("json");
        assert_eq!(decoded, serde_json::from_str::<Value>(json).expect("json"));
    }

    #[test]
    fn encode_touches_only_utf8_json() {
        let text = Reply::raw(500, crate::http::TEXT, "ação".into());
        assert_eq!(Charset::Latin1.encode(text).body, "ação".as_bytes());
        let json = Charset::Latin1.encode(Reply::error(401, "não autorizado"));
        assert_eq!(json.content_type, JSON_LATIN1);
        assert_eq!(json.body, b"{\"erro\":\"n\xe3o autorizado\"}");
        let cut = Reply::raw(200, JSON, "[\"ão".as_bytes()[..3].to_vec());
        assert_eq!(Charset::Latin1.encode(cut).body, b"[\"");
        let utf8 = Charset::Utf8.encode(Reply::error(401, "não"));
        assert_eq!(
            (utf8.content_type, &utf8.body[..]),
            (JSON, "{\"erro\":\"não\"}".as_bytes())
        );
    }

    #[test]
    fn a_latin1_page_holds_the_same_records() {
        let target = format!("/page/pedidos?{RANGE}&por_pagina=40");
        let utf8 = Client::connect(start(&["--per-day", "20"])).get(&target);
        let latin =
            Client::connect(start(&["--per-day", "20", "--charset", "latin1"])).get(&target);
        assert_eq!(latin.header("Content-Type"), Some(JSON_LATIN1));
        assert!(latin.body.contains(&0xE3), "an ã somewhere in 40 records");
        assert!(std::str::from_utf8(&latin.body).is_err(), "not UTF-8");
        let read = |text: &str| serde_json::from_str::<Value>(text).expect("json");
        let utf8_text = String::from_utf8(utf8.body).expect("utf-8");
        assert_eq!(read(&from_latin1(&latin.body)), read(&utf8_text));
    }
}
