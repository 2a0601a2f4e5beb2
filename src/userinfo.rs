//! The user info of URLs (`https://id:secret@host/`) masked wherever a URL
//! may be shown: in a parsed URL ([`url`]) and inside free text such as an
//! error from the HTTP library or a next link quoted by a guard ([`text`]).

/// What a masked value is shown as.
pub const MASK: &str = "***";
use std::borrow::Cow;
use url::Url;

/// `url` without its user info: `https://***@host/…` when it had some.
pub fn url(url: &Url) -> Cow<'_, Url> {
    if url.username().is_empty() && url.password().is_none() {
        return Cow::Borrowed(url);
    }
    let mut u = url.clone();
    // Both fail only for URLs that cannot have user info (`data:`): none here.
    let _ = u.set_password(None);
    let _ = u.set_username(MASK);
    Cow::Owned(u)
}

/// True when `url` holds a user name or password.
pub fn has(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// `text` with the user info of every `scheme://user:pass@host` in it
/// replaced by `***`. The authority ends where a URL's does (`/`, `?`, `#`)
/// or at a space or quote; the last `@` in it ends the user info.
pub fn text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '\\' | '"' | '\'' | '<' | '>' | '`')
                    || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(sign) => {
                out.push_str(MASK);
                rest = &tail[sign..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_masked_in_urls_and_text() {
        let u = Url::parse("https://id:s3cr3t@erp.example/api?x=1").unwrap();
        assert!(has(&u));
        assert_eq!(url(&u).as_str(), "https://***@erp.example/api?x=1");
        let plain = Url::parse("https://erp.example/api").unwrap();
        assert!(!has(&plain));
        assert_eq!(url(&plain).as_str(), "https://erp.example/api");
        for (given, shown) in [
            (
                "token endpoint https://id:s3cr3t@a.example/token: refused",
                "token endpoint https://***@a.example/token: refused",
            ),
            (
                "next URL 'http://u:p@w@h:81/p?q=a@b' then \"ftp://x@y\"",
                "next URL 'http://***@h:81/p?q=a@b' then \"ftp://***@y\"",
            ),
            ("mail a@b.c at http://h/x@y", "mail a@b.c at http://h/x@y"),
            ("http://only@", "http://***@"),
            ("no url here", "no url here"),
        ] {
            assert_eq!(text(given), shown, "{given}");
        }
    }
}
