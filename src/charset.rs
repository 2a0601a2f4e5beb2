//! Body charsets: which charset a 2xx body is read in (the route's, else the
//! declared one, else UTF-8) and decoding Windows-1252/Latin-1 to UTF-8 by a
//! small table, without a copy for UTF-8 or all-ASCII bodies.

/// How a body's bytes become text. Labels follow the WHATWG Encoding
/// standard, as browsers read them: `iso-8859-1`, `latin1` and `us-ascii`
/// are decoded as Windows-1252, which differs from ISO-8859-1 only in 0x80 to
/// 0x9F (printable `€ ‚ ƒ „ … † ‡ ˆ ‰ Š ‹ Œ Ž ‘ ’ “ ” • – — ˜ ™ š › œ ž Ÿ`
/// where ISO-8859-1 has unused C1 control codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Utf8,
    Windows1252,
}

impl Charset {
    /// The charset a label names (case-insensitive), `None` when atlas does
    /// not decode it.
    pub fn from_label(label: &str) -> Option<Charset> {
        const UTF8: &[&str] = &[
            "utf-8",
            "utf8",
            "unicode-1-1-utf-8",
            "unicode11utf8",
            "unicode20utf8",
            "x-unicode20utf8",
        ];
        const WINDOWS_1252: &[&str] = &[
            "windows-1252",
            "cp1252",
            "x-cp1252",
            "iso-8859-1",
            "iso8859-1",
            "iso88591",
            "iso_8859-1",
            "iso_8859-1:1987",
            "iso-ir-100",
            "latin1",
            "l1",
            "csisolatin1",
            "ibm819",
            "cp819",
            "us-ascii",
            "ascii",
            "ansi_x3.4-1968",
        ];
        let l = label.trim().trim_matches('"');
        if UTF8.iter().any(|n| n.eq_ignore_ascii_case(l)) {
            Some(Charset::Utf8)
        } else if WINDOWS_1252.iter().any(|n| n.eq_ignore_ascii_case(l)) {
            Some(Charset::Windows1252)
        } else {
            None
        }
    }
}

/// The `charset` parameter of a `Content-Type` value, if any.
pub fn content_type_charset(value: &str) -> Option<&str> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Windows-1252 0x80..=0x9F (WHATWG index; its five holes map to the C1
/// code points of the same value). The other bytes are their own code point.
const CP1252_80_9F: [char; 32] = [
    '\u{20AC}', '\u{81}', '\u{201A}', '\u{192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{2C6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8D}', '\u{17D}', '\u{8F}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{2DC}', '\u{2122}', '\u{161}', '\u{203A}', '\u{153}', '\u{9D}', '\u{17E}', '\u{178}',
];

/// The body as UTF-8. A UTF-8 body, or any body that is all ASCII, is
/// returned as is (no copy); only Windows-1252 text with non-ASCII bytes is
/// decoded, into a new buffer.
pub fn decode(body: Vec<u8>, charset: Charset) -> Vec<u8> {
    if charset == Charset::Utf8 || body.is_ascii() {
        return body;
    }
    let mut out = String::with_capacity(decoded_len(&body, charset));
    for &b in &body {
        out.push(match b {
            0x80..=0x9F => CP1252_80_9F[usize::from(b - 0x80)],
            _ => char::from(b),
        });
    }
    out.into_bytes()
}

/// The length `decode` gives `body`, without decoding it.
pub fn decoded_len(body: &[u8], charset: Charset) -> usize {
    if charset == Charset::Utf8 {
        return body.len();
    }
    body.iter()
        .map(|&b| match b {
            0x80..=0x9F => CP1252_80_9F[usize::from(b - 0x80)].len_utf8(),
            0xA0..=0xFF => 2,
            _ => 1,
        })
        .sum()
}

/// The charset a 2xx body is read in: the route's, else the declared one,
/// else UTF-8 (RFC 8259). An undecodable declared charset is an error naming it.
pub fn body_charset(route: Option<Charset>, content_type: Option<&str>) -> Result<Charset, String> {
    if let Some(c) = route {
        return Ok(c);
    }
    match content_type.and_then(content_type_charset) {
        None => Ok(Charset::Utf8),
        Some(label) => Charset::from_label(label).ok_or_else(|| {
            // A label is the server's text: shown cut, whatever its length.
            let label: String = label.chars().take(40).collect();
            format!(
                "the response declares charset \"{label}\", which atlas does not decode; set the route's \"charset\" (utf-8, iso-8859-1 or windows-1252) to the one the API really sends"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_len_is_the_length_decode_gives() {
        let every: Vec<u8> = (0..=255).collect();
        for c in [Charset::Utf8, Charset::Windows1252] {
            assert_eq!(decoded_len(&every, c), decode(every.clone(), c).len());
        }
    }

    #[test]
    fn charset_labels_and_content_type() {
        assert_eq!(Charset::from_label("UTF-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_label("utf8"), Some(Charset::Utf8));
        for l in [
            "ISO-8859-1",
            "latin1",
            "Windows-1252",
            "cp1252",
            "\"iso-8859-1\"",
        ] {
            assert_eq!(Charset::from_label(l), Some(Charset::Windows1252), "{l}");
        }
        assert_eq!(Charset::from_label("shift_jis"), None);
        assert_eq!(
            content_type_charset("application/json; charset=ISO-8859-1"),
            Some("ISO-8859-1")
        );
        assert_eq!(
            content_type_charset("application/json;Charset=\"windows-1252\"; x=y"),
            Some("windows-1252")
        );
        assert_eq!(content_type_charset("application/json"), None);
        assert_eq!(body_charset(None, None), Ok(Charset::Utf8));
        assert_eq!(
            body_charset(None, Some("application/json; charset=latin1")),
            Ok(Charset::Windows1252)
        );
        assert_eq!(
            body_charset(
                Some(Charset::Utf8),
                Some("application/json; charset=latin1")
            ),
            Ok(Charset::Utf8),
            "the route wins"
        );
        let e = body_charset(None, Some("application/json; charset=UTF-16")).unwrap_err();
        assert!(
            e.contains("\"UTF-16\"") && e.contains("route's \"charset\""),
            "{e}"
        );
    }

    #[test]
    fn windows_1252_decodes_to_utf8() {
        let body = b"{\"nome\":\"Jos\xe9 S\xe3o \xc7\xe0 \x80 \x93x\x94 \x81\xff\"}".to_vec();
        let text = String::from_utf8(decode(body, Charset::Windows1252)).unwrap();
        assert_eq!(
            text,
            "{\"nome\":\"Jos\u{e9} S\u{e3}o \u{c7}\u{e0} \u{20ac} \u{201c}x\u{201d} \u{81}\u{ff}\"}"
        );
        // ASCII and UTF-8 bodies are returned untouched (same buffer).
        let ascii = b"[1,2]".to_vec();
        let ptr = ascii.as_ptr();
        let same = decode(ascii, Charset::Windows1252);
        assert_eq!(same.as_ptr(), ptr);
        let utf8 = "ção".as_bytes().to_vec();
        assert_eq!(decode(utf8, Charset::Utf8), "ção".as_bytes());
    }
}
