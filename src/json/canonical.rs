//! Canonical JSON text of a record (SPEC §4): keys sorted by code point,
//! no whitespace, numbers as written, U+0000 as U+FFFD; plus the checks made
//! on the way (NUL paths, numbers PostgreSQL cannot hold).

use super::Json;
use std::fmt;

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
    canonical_sized(v, 512)
}

/// As `canonical_checked`, the text allocated at `capacity` bytes (a size
/// known beforehand, such as the stored payload's, saves regrowing).
pub fn canonical_sized(v: &Json<'_>, capacity: usize) -> (String, Findings) {
    let mut out = String::with_capacity(capacity);
    let found = canonical_into(v, &mut out);
    (out, found)
}

/// As `canonical_checked`, written into `out` (cleared first): a page's
/// records reuse one buffer, and each row takes an exact-size copy, instead
/// of a guessed allocation shrunk afterwards (a split chunk per record).
pub fn canonical_into(v: &Json<'_>, out: &mut String) -> Findings {
    out.clear();
    let mut found = Findings::default();
    write_canonical(v, out, &mut found);
    found
}

/// serde_json's (and Python's) escapes: `\"`, `\\`, `\b \f \n \r \t`, other
/// controls as `\u00XX`; `0` marks U+0000 (written as U+FFFD); nothing else.
pub(super) static ESCAPE: [u8; 256] = {
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

/// The first eight bytes of a key as a big-endian number (zero-padded):
/// keys whose prefixes differ compare as their prefixes do, so the sort
/// reads the key bytes only on a tie.
pub(super) fn prefix(k: &str) -> u64 {
    let b = k.as_bytes();
    let mut p = [0u8; 8];
    let n = b.len().min(8);
    p[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(p)
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
            // Small objects (nearly all) sort their index on the stack.
            // Each entry is (key prefix, member index).
            let mut small = [(0u64, 0usize); 16];
            let mut large = Vec::new();
            let order: &mut [(u64, usize)] = if members.len() <= small.len() {
                &mut small[..members.len()]
            } else {
                large.resize(members.len(), (0, 0));
                &mut large
            };
            for (i, o) in order.iter_mut().enumerate() {
                *o = (prefix(&members[i].0), i);
            }
            let key = |i: usize| members[i].0.as_bytes();
            order.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| key(a.1).cmp(key(b.1))));
            out.push('{');
            let mut first = true;
            for (pos, &(p, i)) in order.iter().enumerate() {
                if order
                    .get(pos + 1)
                    .is_some_and(|&(np, n)| np == p && key(n) == key(i))
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
pub(super) fn pg_numeric_fits(n: &str) -> bool {
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
