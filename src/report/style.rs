//! The line style (emoji, or plain for consoles that cannot show them) and
//! the formats every line shares: numbers like the seed's, tables, snippets.

use super::out;
use std::time::Duration;

/// Line style: with emoji, or plain for consoles that cannot show them.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub plain: bool,
}

impl Style {
    /// The style for this process's console: plain with `--plain`, and on a
    /// Windows console that cannot show emoji.
    pub fn for_console(plain_flag: bool) -> Style {
        Style {
            plain: plain_flag || crate::console::cannot_show_emoji(),
        }
    }

    /// `emoji text`, or just `text` when plain.
    pub fn line(&self, emoji: &str, text: &str) -> String {
        if self.plain {
            text.to_string()
        } else {
            format!("{emoji} {text}")
        }
    }

    /// `line` on stdout, as a result (`atlas check`, `atlas init`).
    pub fn say(&self, emoji: &str, text: &str) {
        out(&(self.line(emoji, text) + "\n"));
    }

    /// `line` on stderr: notices for the person watching (stdout carries
    /// results: ids, tables, the summary).
    pub fn note(&self, emoji: &str, text: &str) {
        eprintln!("{}", self.line(emoji, text));
    }

    /// `emoji ` before a figure, or nothing when plain.
    pub(super) fn tag(&self, emoji: &str) -> String {
        if self.plain {
            String::new()
        } else {
            format!("{emoji} ")
        }
    }
}

/// `45s`, `2m05s`, `1h02m`: an ETA, rounded to what a person reads.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}
pub fn rate(n: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// `1234567` -> `1,234,567` (the seed's format).
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1500.04` -> `1,500.0`.
pub fn decimal(x: f64) -> String {
    let x = if x.is_finite() && x >= 0.0 { x } else { 0.0 };
    let tenths = (x * 10.0).round() as u64;
    format!("{}.{}", thousands(tenths / 10), tenths % 10)
}

/// Left-aligned columns separated by two spaces, widths by character count;
/// each line ends with its last cell (no trailing blanks).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = table_line(header.iter().copied(), &widths);
    for row in rows {
        out.push_str(&table_line(row.iter().map(String::as_str), &widths));
    }
    out
}

fn table_line<'a>(cells: impl Iterator<Item = &'a str>, widths: &[usize]) -> String {
    let mut s = String::new();
    for (cell, w) in cells.zip(widths) {
        s.push_str(cell);
        s.push_str(&" ".repeat(w - cell.chars().count() + 2));
    }
    s.truncate(s.trim_end().len());
    s + "\n"
}

/// The start of a text for a message: one line (line breaks become spaces)
/// of at most `max` characters; a longer text is cut to fit and ends in
/// `mark` (`"..."`, or `""` for a plain cut). Bytes are read as lossy UTF-8.
pub fn snippet(text: impl AsRef<[u8]>, max: usize, mark: &str) -> String {
    let bytes = text.as_ref();
    // A character is at most 4 bytes: this prefix holds more than `max` of
    // them whenever the whole text does.
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min((max + 1) * 4)]);
    let one = head.replace(['\n', '\r'], " ");
    if one.chars().count() <= max {
        return one;
    }
    let keep = max.saturating_sub(mark.chars().count());
    one.chars().take(keep).collect::<String>() + mark
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_the_seed() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_250), "1,250");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(decimal(1500.04), "1,500.0");
        assert_eq!(decimal(27.77), "27.8");
        assert_eq!(decimal(f64::NAN), "0.0");
    }

    #[test]
    fn table_aligns_by_characters() {
        let t = table(
            &["a", "bb"],
            &[
                vec!["ção".into(), "x".into()],
                vec!["1".into(), "yy".into()],
            ],
        );
        assert_eq!(t, "a    bb\nção  x\n1    yy\n");
        // An empty last cell leaves no trailing blanks.
        assert_eq!(
            table(&["a", "b"], &[vec!["x".into(), "".into()]]),
            "a  b\nx\n"
        );
    }

    #[test]
    fn snippet_is_one_line_and_bounded() {
        assert_eq!(snippet(b"a\nb\r\nc", 10, ""), "a b  c");
        assert_eq!(snippet("ção".repeat(100), 4, ""), "ção\u{e7}");
        // Cut to `max` characters in all, the mark included.
        assert_eq!(snippet("x".repeat(120), 120, "..."), "x".repeat(120));
        assert_eq!(
            snippet("x".repeat(121), 120, "..."),
            "x".repeat(117) + "..."
        );
        // Four-byte characters: the cut is still by characters.
        assert_eq!(snippet("😀".repeat(6), 5, "..."), "😀😀...");
        assert_eq!(snippet(b"ok\xff", 10, "..."), "ok\u{fffd}");
    }
}
