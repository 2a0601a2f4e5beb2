//! Text files as Windows tools write them: UTF-8 with or without a byte-order
//! mark (PowerShell 5.1's `Set-Content -Encoding UTF8`, old Notepad), UTF-16
//! LE or BE when a BOM says so (PowerShell 5.1's `>`), CRLF line ends. Used
//! for the config, secret files, the token key file and `auth seed`'s stdin.
//! Anything else that is not UTF-8 is refused naming the byte offset in the
//! file, never guessed: a Latin-1 secret read as something else would be a
//! wrong secret, silently.

use std::fmt;
use std::path::Path;

const UTF8_BOM: &[u8] = &[0xEF, 0xBB, 0xBF];
const UTF16LE_BOM: &[u8] = &[0xFF, 0xFE];
const UTF16BE_BOM: &[u8] = &[0xFE, 0xFF];

/// Why bytes are not text atlas reads. Offsets count from the file's first
/// byte (the BOM included), lines and columns (characters) from 1.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A byte that does not continue valid UTF-8 (a Latin-1 `é`, say). Its
    /// value is not told: the text may be a secret.
    NotUtf8 {
        offset: usize,
        line: usize,
        column: usize,
    },
    /// A NUL character: never in a config or a secret; what UTF-16 saved
    /// without a BOM looks like.
    Nul {
        offset: usize,
        line: usize,
        column: usize,
    },
    /// UTF-16 (by its BOM) with an odd number of bytes: the last is cut.
    OddUtf16 { len: usize },
    /// UTF-16 with a surrogate that has no partner.
    UnpairedSurrogate { offset: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotUtf8 {
                offset,
                line,
                column,
            } => write!(
                f,
                "byte {offset} (line {line}, column {column}) is not UTF-8: save it as UTF-8"
            ),
            DecodeError::Nul {
                offset,
                line,
                column,
            } => write!(
                f,
                "byte {offset} (line {line}, column {column}) is a NUL character \
                 (UTF-16 without a byte-order mark?): save it as UTF-8"
            ),
            DecodeError::OddUtf16 { len } => write!(
                f,
                "UTF-16 (by its byte-order mark) but {len} bytes long, an odd number: \
                 byte {} is half a character; save it as UTF-8",
                len - 1
            ),
            DecodeError::UnpairedSurrogate { offset } => write!(
                f,
                "byte {offset} is half of a UTF-16 surrogate pair: save it as UTF-8"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a text file could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Decode(DecodeError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => e.fmt(f),
            ReadError::Decode(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {}

/// The file's text, BOM dropped. Line ends are kept as written.
pub fn read(path: &Path) -> Result<String, ReadError> {
    let bytes = std::fs::read(path).map_err(ReadError::Io)?;
    decode(bytes).map_err(ReadError::Decode)
}

/// `bytes` as text: UTF-16 LE/BE when they start with that BOM, else UTF-8
/// (a UTF-8 BOM dropped). UTF-8 without a BOM is not copied.
pub fn decode(mut bytes: Vec<u8>) -> Result<String, DecodeError> {
    if let Some(rest) = bytes.strip_prefix(UTF16LE_BOM) {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = bytes.strip_prefix(UTF16BE_BOM) {
        return utf16(rest, u16::from_be_bytes);
    }
    let skip = if bytes.starts_with(UTF8_BOM) {
        UTF8_BOM.len()
    } else {
        0
    };
    bytes.drain(..skip);
    match String::from_utf8(bytes) {
        Ok(text) => {
            refuse_nul(&text, |i| skip + i)?;
            Ok(text)
        }
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            // The bytes before `valid` are UTF-8 by the error's own word.
            let prefix = std::str::from_utf8(&e.as_bytes()[..valid]).unwrap_or_default();
            // A NUL before the bad byte tells more (UTF-16 without a BOM).
            refuse_nul(prefix, |i| skip + i)?;
            let (line, column) = line_column(prefix);
            Err(DecodeError::NotUtf8 {
                offset: skip + valid,
                line,
                column,
            })
        }
    }
}

/// UTF-16 code units (after the 2-byte BOM) as text.
fn utf16(rest: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, DecodeError> {
    if rest.len() % 2 == 1 {
        return Err(DecodeError::OddUtf16 {
            len: rest.len() + 2,
        });
    }
    let units = rest.chunks_exact(2).map(|p| unit([p[0], p[1]]));
    let mut text = String::with_capacity(rest.len() / 2);
    let mut at = 0; // code units read so far
    for c in char::decode_utf16(units) {
        match c {
            Ok(c) => {
                text.push(c);
                at += c.len_utf16();
            }
            Err(_) => return Err(DecodeError::UnpairedSurrogate { offset: 2 + 2 * at }),
        }
    }
    refuse_nul(&text, |i| 2 + 2 * text[..i].encode_utf16().count())?;
    Ok(text)
}

/// A NUL is refused with its offset in the file (`offset` maps a byte index
/// of `text` to one of the file).
fn refuse_nul(text: &str, offset: impl Fn(usize) -> usize) -> Result<(), DecodeError> {
    match text.find('\0') {
        None => Ok(()),
        Some(i) => {
            let (line, column) = line_column(&text[..i]);
            Err(DecodeError::Nul {
                offset: offset(i),
                line,
                column,
            })
        }
    }
}

/// Line and column (in characters, from 1) of the position after `prefix`.
fn line_column(prefix: &str) -> (usize, usize) {
    let line = 1 + prefix.matches('\n').count();
    let last = prefix.rfind('\n').map_or(prefix, |i| &prefix[i + 1..]);
    (line, 1 + last.chars().count())
}

/// `text` without its trailing line ends (`\n`, `\r\n`, or several): what a
/// secret file holds. A trailing `\r` is never part of a secret.
pub fn trim_line_ends(text: &str) -> &str {
    text.trim_end_matches(['\r', '\n'])
}

/// The first line of `text`, without its `\n` or `\r\n`.
pub fn first_line(text: &str) -> &str {
    trim_line_ends(text.split('\n').next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le(s: &str) -> Vec<u8> {
        let mut b = UTF16LE_BOM.to_vec();
        b.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
        b
    }

    fn be(s: &str) -> Vec<u8> {
        let mut b = UTF16BE_BOM.to_vec();
        b.extend(s.encode_utf16().flat_map(u16::to_be_bytes));
        b
    }

    #[test]
    fn utf8_with_and_without_bom() {
        let text = "{\"a\": \"São Paulo\"}\r\n";
        assert_eq!(decode(text.as_bytes().to_vec()).unwrap(), text);
        let mut bom = UTF8_BOM.to_vec();
        bom.extend_from_slice(text.as_bytes());
        assert_eq!(decode(bom).unwrap(), text);
        assert_eq!(decode(Vec::new()).unwrap(), "");
        assert_eq!(decode(UTF8_BOM.to_vec()).unwrap(), "");
    }

    #[test]
    fn utf16_le_and_be_by_their_bom() {
        // A surrogate pair (U+1F680) and a BMP accent.
        let text = "{\"rota\": \"pedidos 🚀 ção\"}\r\n";
        assert_eq!(decode(le(text)).unwrap(), text);
        assert_eq!(decode(be(text)).unwrap(), text);
        assert_eq!(decode(UTF16LE_BOM.to_vec()).unwrap(), "");
    }

    #[test]
    fn utf16_odd_byte_count_is_refused() {
        let mut b = le("ab");
        b.push(b'c');
        let e = decode(b).unwrap_err();
        assert_eq!(e, DecodeError::OddUtf16 { len: 7 });
        assert!(e.to_string().contains("byte 6"), "{e}");
    }

    #[test]
    fn utf16_unpaired_surrogates_are_refused_at_their_offset() {
        // 'a', then a high surrogate followed by 'b' (not a low one).
        let mut b = UTF16LE_BOM.to_vec();
        for u in [0x0061u16, 0xD83D, 0x0062] {
            b.extend(u.to_le_bytes());
        }
        assert_eq!(
            decode(b).unwrap_err(),
            DecodeError::UnpairedSurrogate { offset: 4 }
        );
        // A lone low surrogate at the start, big-endian.
        let mut b = UTF16BE_BOM.to_vec();
        b.extend(0xDC00u16.to_be_bytes());
        assert_eq!(
            decode(b).unwrap_err(),
            DecodeError::UnpairedSurrogate { offset: 2 }
        );
        // A high surrogate cut by the end of the file.
        let mut b = le("x");
        b.extend(0xD800u16.to_le_bytes());
        assert_eq!(
            decode(b).unwrap_err(),
            DecodeError::UnpairedSurrogate { offset: 4 }
        );
    }

    #[test]
    fn latin1_is_refused_naming_offset_line_and_column() {
        // "{\r\n  \"nome\": \"S\xE3o\"" : the byte 0xE3 of Latin-1's ã.
        let mut b = b"{\r\n  \"nome\": \"S".to_vec();
        let at = b.len();
        b.extend_from_slice(b"\xE3o\"\r\n}");
        let e = decode(b).unwrap_err();
        assert_eq!(
            e,
            DecodeError::NotUtf8 {
                offset: at,
                line: 2,
                column: 13,
            }
        );
        let msg = e.to_string();
        assert!(msg.contains(&format!("byte {at}")), "{msg}");
        assert!(msg.contains("line 2, column 13"), "{msg}");
        assert!(msg.contains("save it as UTF-8"), "{msg}");
    }

    #[test]
    fn invalid_utf8_after_a_bom_counts_the_bom_and_characters() {
        // BOM, "é" (2 bytes, 1 column), then a stray continuation byte.
        let mut b = UTF8_BOM.to_vec();
        b.extend_from_slice("é".as_bytes());
        b.push(0x80);
        assert_eq!(
            decode(b).unwrap_err(),
            DecodeError::NotUtf8 {
                offset: 5,
                line: 1,
                column: 2,
            }
        );
    }

    #[test]
    fn utf16_without_bom_is_refused_as_nul() {
        // "{}" as UTF-16 LE without its BOM: valid UTF-8 with a NUL at byte 1.
        let b: Vec<u8> = "{}".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let e = decode(b).unwrap_err();
        assert_eq!(
            e,
            DecodeError::Nul {
                offset: 1,
                line: 1,
                column: 2
            }
        );
        assert!(e.to_string().contains("UTF-16"), "{e}");
        // Also when an accent (0xE3 0x00: not UTF-8) comes after the first NUL.
        let b: Vec<u8> = "{\"São\"}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(matches!(decode(b), Err(DecodeError::Nul { offset: 1, .. })));
        // A NUL inside UTF-16 is named by its byte in the file.
        assert_eq!(
            decode(le("ab\n\0")).unwrap_err(),
            DecodeError::Nul {
                offset: 8,
                line: 2,
                column: 1
            }
        );
    }

    #[test]
    fn line_ends_are_trimmed_never_inner_text() {
        assert_eq!(trim_line_ends("s3cr3t\r\n"), "s3cr3t");
        assert_eq!(trim_line_ends("s3cr3t\r\n\r\n"), "s3cr3t");
        assert_eq!(trim_line_ends("s3cr3t\n"), "s3cr3t");
        assert_eq!(trim_line_ends("s3cr3t\r"), "s3cr3t");
        assert_eq!(trim_line_ends(" s3 cr3t "), " s3 cr3t ");
        assert_eq!(first_line("tok\r\nsegunda\r\n"), "tok");
        assert_eq!(first_line("tok"), "tok");
        assert_eq!(first_line("\r\n"), "");
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn read_names_io_errors_and_decodes_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read(&dir.path().join("nao.json")).unwrap_err();
        assert!(matches!(missing, ReadError::Io(_)), "{missing}");
        let p = dir.path().join("k.txt");
        std::fs::write(&p, le("chave\r\n")).unwrap();
        assert_eq!(read(&p).unwrap(), "chave\r\n");
    }
}
