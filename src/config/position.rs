//! Where a key sits in the config text, for validation errors found after
//! parsing: a `Key` is a path of segments (a client id or a route name may
//! hold dots, so a segment is never split), shown joined by dots.

use std::fmt;

/// The path of a key in the file, e.g. `routes` / `v1.pedidos` / `slice_days`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(Vec<String>);

impl Key {
    /// A key at the top of the file.
    pub fn top(name: &str) -> Key {
        Key(vec![name.to_string()])
    }

    /// The key `name` inside this one, taken whole (a client id, a route name).
    pub fn named(&self, name: &str) -> Key {
        let mut k = self.clone();
        k.0.push(name.to_string());
        k
    }

    /// The keys of a dotted path of fixed field names below this one
    /// (`date_params.format`).
    pub fn dotted(&self, path: &str) -> Key {
        let mut k = self.clone();
        k.0.extend(path.split('.').map(str::to_string));
        k
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// What an open bracket is, while walking the text.
enum Open {
    /// An object, with the key being read or last read in it.
    Object(Option<String>),
    /// Arrays are not keyed: their elements hide keys from the path.
    Array,
}

/// Line and column (1-based) of the key at `key`. The text already parsed as
/// JSON, so a structural walk (strings, nesting, keys) is enough.
pub fn key_position(text: &str, key: &Key) -> Option<(usize, usize)> {
    let mut stack: Vec<Open> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut pending: Option<(String, usize)> = None;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                pending = Some((text.get(start + 1..i.min(text.len()))?.to_string(), start));
            }
            b':' => {
                if let (Some((name, at)), Some(Open::Object(top))) =
                    (pending.take(), stack.last_mut())
                {
                    *top = Some(name);
                    if is_at(&stack, key) {
                        let line = text[..at].matches('\n').count() + 1;
                        let col = text[..at].rfind('\n').map(|n| at - n).unwrap_or(at + 1);
                        return Some((line, col));
                    }
                }
            }
            b'{' => stack.push(Open::Object(None)),
            b'[' => stack.push(Open::Array),
            b'}' | b']' => {
                stack.pop();
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether the keys of the open objects, outermost first, are `key`.
fn is_at(stack: &[Open], key: &Key) -> bool {
    stack.len() == key.0.len()
        && stack.iter().zip(&key.0).all(|(open, want)| match open {
            Open::Object(Some(k)) => k == want,
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &[&str]) -> Key {
        let mut k = Key::top(path[0]);
        for p in &path[1..] {
            k = k.named(p);
        }
        k
    }

    #[test]
    fn finds_the_key_at_its_path() {
        assert_eq!(
            key_position("{\n  \"a\": {\"b\": 1}}", &Key::top("a").dotted("b")),
            Some((2, 9))
        );
        assert_eq!(key_position("{\"a\": 1}", &Key::top("x")), None);
        // A key of the same name elsewhere (in an array, in another object) is not it.
        assert_eq!(
            key_position("{\"c\": {\"b\": [{\"a\": 1}]}, \"a\": 2}", &Key::top("a")),
            Some((1, 26))
        );
        assert_eq!(
            key_position("{\"x\": \"a:\\\"\", \"a\": 2}", &Key::top("a")),
            Some((1, 15))
        );
    }

    #[test]
    fn names_with_dots_are_one_key() {
        let text = "{\"routes\": {\n  \"v1\": {\"pedidos\": {\"slice_days\": 1}},\n  \"v1.pedidos\": {\"slice_days\": 0}}}";
        let key = Key::top("routes").named("v1.pedidos").dotted("slice_days");
        assert_eq!(key.to_string(), "routes.v1.pedidos.slice_days");
        assert_eq!(key_position(text, &key), Some((3, 18)));
        // The nested route of the same dotted spelling is found as such.
        assert_eq!(
            key_position(text, &at(&["routes", "v1", "pedidos", "slice_days"])),
            Some((2, 22))
        );
    }

    #[test]
    fn a_key_named_like_an_array_is_still_a_key() {
        let text = "{\"[]\": {\"a\": 1}, \"l\": [{\"a\": 2}]}";
        assert_eq!(key_position(text, &at(&["[]", "a"])), Some((1, 9)));
    }
}
