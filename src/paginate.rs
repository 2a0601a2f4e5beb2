//! Pagination kinds (SPEC §3) as one state machine per slice, with the
//! guards that turn an endless or lying API into a clear slice error.
//!
//! Pure: it sees bodies and headers, builds URLs, and never does I/O.

use crate::config::{Pagination, Paging};
use crate::json::Json;
use std::collections::HashSet;
use url::Url;

/// Where the pager stands: what the placeholders `{page}`, `{page_size}`,
/// `{offset}`, `{cursor}` and the body's pagination pointers are filled with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Position {
    pub page: Option<i64>,
    pub page_size: Option<u64>,
    pub offset: Option<u64>,
    /// `None` on the first page.
    pub cursor: Option<String>,
}

impl Position {
    /// Page one of a slice under `paging`.
    pub fn first(paging: &Paging) -> Position {
        match &paging.kind {
            Pagination::Page { start, size, .. } => Position {
                page: Some(*start),
                page_size: *size,
                ..Position::default()
            },
            Pagination::Offset { limit, .. } => Position {
                offset: Some(0),
                page_size: Some(*limit),
                ..Position::default()
            },
            _ => Position::default(),
        }
    }

    /// The pagination params that are JSON pointers into the body, with
    /// their values at this position (a cursor only once there is one).
    pub fn body_params<'p>(&self, paging: &'p Paging) -> Vec<(&'p str, serde_json::Value)> {
        let mut out: Vec<(&str, serde_json::Value)> = Vec::new();
        match &paging.kind {
            Pagination::Page {
                param, size_param, ..
            } => {
                out.extend(self.page.map(|n| (param.as_str(), n.into())));
                if let (Some(sp), Some(sz)) = (size_param, self.page_size) {
                    out.push((sp, sz.into()));
                }
            }
            Pagination::Offset {
                offset_param,
                limit_param,
                ..
            } => {
                out.extend(self.offset.map(|n| (offset_param.as_str(), n.into())));
                out.extend(self.page_size.map(|n| (limit_param.as_str(), n.into())));
            }
            Pagination::Cursor { param, .. } => {
                out.extend(self.cursor.clone().map(|c| (param.as_str(), c.into())));
            }
            _ => {}
        }
        out.retain(|(p, _)| p.starts_with('/'));
        out
    }
}

/// Walks the pages of one slice.
pub struct Pager {
    kind: Pagination,
    max_pages: u64,
    /// Route URL with fixed query, date params and auth param: page 1.
    base: Url,
    current: Url,
    /// Pages fetched so far.
    fetched: u64,
    /// `page` kind: the number of the current page.
    page_no: i64,
    /// `offset` kind: records consumed so far.
    offset: u64,
    /// `cursor` kind: the cursor the current URL carries.
    cursor: Option<String>,
    seen: HashSet<String>,
    /// The previous page's body, compared byte for byte (cheaper than a digest).
    last_body: Option<Vec<u8>>,
    declared: Option<u64>,
}

impl Pager {
    pub fn new(paging: &Paging, base: Url) -> Pager {
        let mut p = Pager {
            kind: paging.kind.clone(),
            max_pages: paging.max_pages,
            current: base.clone(),
            base,
            fetched: 0,
            page_no: 0,
            offset: 0,
            cursor: None,
            seen: HashSet::new(),
            last_body: None,
            declared: None,
        };
        p.current = match &p.kind {
            Pagination::Page { start, .. } => {
                p.page_no = *start;
                p.page_url(*start)
            }
            Pagination::Offset { .. } => p.offset_url(0),
            _ => p.base.clone(),
        };
        p
    }

    /// The URL to fetch now.
    pub fn current(&self) -> &Url {
        &self.current
    }

    /// Where the pager stands, for the request's placeholders and body.
    pub fn position(&self) -> Position {
        let mut at = Position::first(&Paging {
            kind: self.kind.clone(),
            max_pages: self.max_pages,
        });
        match &self.kind {
            Pagination::Page { .. } => at.page = Some(self.page_no),
            Pagination::Offset { .. } => at.offset = Some(self.offset),
            Pagination::Cursor { .. } => at.cursor = self.cursor.clone(),
            _ => {}
        }
        at
    }

    /// 1-based number of the page about to be fetched (for messages).
    pub fn page_number(&self) -> u64 {
        self.fetched + 1
    }

    fn with(&self, pairs: &[(&str, String)]) -> Url {
        // A param written as a JSON pointer goes in the body, not the query.
        let pairs: Vec<&(&str, String)> =
            pairs.iter().filter(|(k, _)| !k.starts_with('/')).collect();
        let mut u = self.base.clone();
        let keep: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| !pairs.iter().any(|(p, _)| p == k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut q = u.query_pairs_mut();
            q.clear().extend_pairs(keep);
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
        }
        u
    }

    fn page_url(&self, n: i64) -> Url {
        match &self.kind {
            Pagination::Page {
                param,
                size_param,
                size,
                ..
            } => {
                let mut pairs = vec![(param.as_str(), n.to_string())];
                if let (Some(sp), Some(sz)) = (size_param, size) {
                    pairs.push((sp.as_str(), sz.to_string()));
                }
                self.with(&pairs)
            }
            _ => self.base.clone(),
        }
    }

    fn offset_url(&self, off: u64) -> Url {
        match &self.kind {
            Pagination::Offset {
                offset_param,
                limit_param,
                limit,
                ..
            } => self.with(&[
                (offset_param.as_str(), off.to_string()),
                (limit_param.as_str(), limit.to_string()),
            ]),
            _ => self.base.clone(),
        }
    }

    /// A next/link URL from the API: resolved against the request, and given
    /// any base param it lacks (date params, fixed query, auth param).
    fn followed(&self, target: &str) -> Result<Url, String> {
        let mut u = self
            .current
            .join(target)
            .map_err(|e| format!("next URL '{target}' is not a URL ({e})"))?;
        let have: HashSet<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let missing: Vec<(String, String)> = self
            .base
            .query_pairs()
            .filter(|(k, _)| !have.contains(k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if !missing.is_empty() {
            u.query_pairs_mut().extend_pairs(missing);
        }
        Ok(u)
    }

    /// After a page with `n` records: `Ok(true)` = fetch `current()` next,
    /// `Ok(false)` = the slice is complete, `Err` = a guard stopped it.
    pub fn advance(
        &mut self,
        raw: &[u8],
        body: &Json<'_>,
        link: Option<&str>,
        n: usize,
    ) -> Result<bool, String> {
        self.fetched += 1;
        let page = self.fetched;
        if n > 0 && self.last_body.as_deref() == Some(raw) {
            return Err(format!(
                "guard: page {page} repeats the previous page's body"
            ));
        }

        let next = match self.kind.clone() {
            Pagination::None => None,
            Pagination::Page {
                total_pages,
                stop_on_short_page,
                size,
                ..
            } => {
                let total = self.declared_total(body, total_pages.as_deref(), "total_pages")?;
                if n == 0 {
                    if let Some(t) = total {
                        if page <= t {
                            return Err(format!(
                                "guard: the API declared {t} pages but page {page} is empty (declared total contradicted)"
                            ));
                        }
                    }
                    None
                } else if total.is_some_and(|t| page >= t)
                    || (stop_on_short_page && size.is_some_and(|s| (n as u64) < s))
                {
                    None
                } else {
                    self.page_no += 1;
                    Some(self.page_url(self.page_no))
                }
            }
            Pagination::Offset { total, .. } => {
                let total = self.declared_total(body, total.as_deref(), "total")?;
                if n == 0 {
                    if let Some(t) = total {
                        if self.offset < t {
                            return Err(format!(
                                "guard: the API declared {t} records but returned an empty page at offset {} (declared total contradicted)",
                                self.offset
                            ));
                        }
                    }
                    None
                } else {
                    self.offset += n as u64;
                    if total.is_some_and(|t| self.offset >= t) {
                        None
                    } else {
                        Some(self.offset_url(self.offset))
                    }
                }
            }
            Pagination::Cursor { param, cursor_path } => match token(body.pointer(&cursor_path)) {
                Some(tok) if n > 0 => {
                    if !self.seen.insert(tok.clone()) {
                        return Err(format!("guard: cursor '{tok}' repeats (page {page})"));
                    }
                    self.cursor = Some(tok.clone());
                    Some(self.with(&[(param.as_str(), tok)]))
                }
                _ => None,
            },
            Pagination::NextUrl { next_path } => match token(body.pointer(&next_path)) {
                Some(target) if n > 0 => Some(self.follow_once(&target, page)?),
                _ => None,
            },
            Pagination::LinkHeader => match link.and_then(next_link) {
                Some(target) if n > 0 => Some(self.follow_once(&target, page)?),
                _ => None,
            },
        };
        match next {
            None => Ok(false),
            Some(url) => {
                if self.fetched >= self.max_pages {
                    return Err(format!(
                        "guard: more than max_pages ({}) pages in one slice",
                        self.max_pages
                    ));
                }
                self.current = url;
                // Kept only when a next page comes to compare with it.
                let last = self.last_body.get_or_insert_with(Vec::new);
                last.clear();
                last.extend_from_slice(raw);
                Ok(true)
            }
        }
    }

    fn follow_once(&mut self, target: &str, page: u64) -> Result<Url, String> {
        let url = self.followed(target)?;
        if !self.seen.insert(url.to_string()) || url == self.current {
            return Err(format!("guard: next URL repeats (page {page})"));
        }
        Ok(url)
    }

    /// A total the API declares: kept from earlier pages when later ones omit
    /// it; a different value is a contradiction.
    fn declared_total(
        &mut self,
        body: &Json<'_>,
        ptr: Option<&str>,
        what: &str,
    ) -> Result<Option<u64>, String> {
        let Some(ptr) = ptr else { return Ok(None) };
        let now = read_total(body, ptr);
        match (self.declared, now) {
            (Some(a), Some(b)) if a != b => Err(format!(
                "guard: {what} changed from {a} to {b} between pages (declared total contradicted)"
            )),
            (None, Some(b)) => {
                self.declared = Some(b);
                Ok(Some(b))
            }
            (d, _) => Ok(d),
        }
    }
}

/// What a page fetched out of order (see [`Pager::at`]) says about the slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Records, as many as expected.
    Rows,
    /// Fewer records than the page size, with `stop_on_short_page`: pages
    /// after it may be empty.
    Short,
    /// No records: inside the declared total this fails the slice unless
    /// an earlier page was short.
    Empty,
}

// Random access (parallel pages): the additions below leave the in-order walk untouched.
impl Pager {
    /// After page 1, the pages the slice declares it has, when they can be
    /// fetched in any order: `page` with a `total_pages` pointer; `offset`
    /// with a `total` pointer whose page 1 came back full (a short one may
    /// mean the API caps the limit: then only the in-order walk is exact).
    pub fn pages_declared(&self) -> Option<u64> {
        if self.fetched != 1 {
            return None;
        }
        match &self.kind {
            Pagination::Page {
                total_pages: Some(_),
                ..
            } => self.declared,
            Pagination::Offset {
                limit,
                total: Some(_),
                ..
            } if self.offset == *limit => self.declared.map(|t| t.div_ceil(*limit)),
            _ => None,
        }
    }

    /// Whether page 1 may declare how many pages the slice has (see
    /// `pages_declared`): `page` with `total_pages`, `offset` with `total`.
    pub fn may_declare(&self) -> bool {
        matches!(
            &self.kind,
            Pagination::Page {
                total_pages: Some(_),
                ..
            } | Pagination::Offset { total: Some(_), .. }
        )
    }

    /// A pager standing at page `k` (1-based) of the slice, as if pages
    /// `1..k` had been walked; `current()` is that page's request.
    pub fn at(&self, k: u64) -> Pager {
        // Built field by field: the walk's history (bodies, cursors) is not copied.
        let mut p = Pager {
            kind: self.kind.clone(),
            max_pages: self.max_pages,
            base: self.base.clone(),
            current: self.current.clone(),
            fetched: k - 1,
            page_no: self.page_no,
            offset: self.offset,
            cursor: None,
            seen: HashSet::new(),
            last_body: None,
            declared: self.declared,
        };
        p.current = match &self.kind {
            Pagination::Page { start, .. } => {
                p.page_no = start + (k as i64 - 1);
                p.page_url(p.page_no)
            }
            Pagination::Offset { limit, .. } => {
                p.offset = (k - 1) * limit;
                p.offset_url(p.offset)
            }
            _ => p.current.clone(),
        };
        p
    }

    /// Checks a page fetched out of order, with `n` records: the declared
    /// total must not change; an `offset` page must hold every record due
    /// at its offset (a short one would leave records unfetched).
    pub fn check_at(&self, body: &Json<'_>, n: usize) -> Result<Seen, String> {
        let page = self.fetched + 1;
        let (ptr, what) = match &self.kind {
            Pagination::Page { total_pages, .. } => (total_pages.as_deref(), "total_pages"),
            Pagination::Offset { total, .. } => (total.as_deref(), "total"),
            _ => (None, ""),
        };
        if let (Some(a), Some(b)) = (self.declared, ptr.and_then(|p| read_total(body, p))) {
            if a != b {
                return Err(format!(
                    "guard: {what} changed from {a} to {b} between pages (page {page}; declared total contradicted)"
                ));
            }
        }
        match &self.kind {
            Pagination::Offset { limit, .. } => {
                let t = self.declared.unwrap_or(0);
                let due = (*limit).min(t.saturating_sub(self.offset));
                if (n as u64) < due {
                    return Err(if n == 0 {
                        format!(
                            "guard: the API declared {t} records but returned an empty page at offset {} (declared total contradicted)",
                            self.offset
                        )
                    } else {
                        format!(
                            "guard: the API declared {t} records but returned {n} at offset {} where {due} were due (declared total contradicted)",
                            self.offset
                        )
                    });
                }
                Ok(Seen::Rows)
            }
            Pagination::Page {
                size,
                stop_on_short_page,
                ..
            } => Ok(if n == 0 {
                Seen::Empty
            } else if *stop_on_short_page && size.is_some_and(|s| (n as u64) < s) {
                Seen::Short
            } else {
                Seen::Rows
            }),
            _ => Ok(Seen::Rows),
        }
    }
}

/// A total at `ptr` in the body: a whole number, or a string holding one.
/// Anything else there (negative, fractional, past 64 bits, not a number)
/// is no total, with the reason logged: the pages are walked in order.
fn read_total(body: &Json<'_>, ptr: &str) -> Option<u64> {
    let (read, shown) = match body.pointer(ptr) {
        None | Some(Json::Null) => return None,
        Some(Json::Num(x)) => (x.as_u64(), x.to_string()),
        Some(Json::Str(s)) => (s.trim().parse().ok(), format!("\"{s}\"")),
        Some(other) => (None, other.kind().to_string()),
    };
    if read.is_none() {
        let shown: String = shown.chars().take(40).collect();
        log::warn!("the total at {ptr} ({shown}) is not a whole number of 64 bits: ignored");
    }
    read
}

/// A cursor or URL value: strings and numbers; null, absent or empty = none.
fn token(v: Option<&Json<'_>>) -> Option<String> {
    match v {
        Some(Json::Str(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Json::Num(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The `rel="next"` target of an RFC 8288 `Link` header (several links,
/// quoted or unquoted rel, several rel values).
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>')? + open;
        let target = &rest[open + 1..close];
        let params_end = rest[close..]
            .find('<')
            .map(|i| i + close)
            .unwrap_or(rest.len());
        let params = &rest[close + 1..params_end];
        for p in params.split(';') {
            let mut kv = p.splitn(2, '=');
            let k = kv.next().unwrap_or("").trim();
            let v = kv.next().unwrap_or("").trim();
            let v = v.trim_end_matches(',').trim().trim_matches('"');
            if k.eq_ignore_ascii_case("rel")
                && v.split_whitespace().any(|r| r.eq_ignore_ascii_case("next"))
            {
                return Some(target.trim().to_string());
            }
        }
        rest = &rest[params_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Paging;
    use serde_json::json;

    fn base() -> Url {
        Url::parse(
            "http://api.test/v1/pedidos?data_inicial=2025-01-01&data_final=2025-01-01&apikey=K",
        )
        .unwrap()
    }

    fn page_kind(total: Option<&str>) -> Paging {
        Paging {
            kind: Pagination::Page {
                param: "page".into(),
                start: 1,
                size_param: Some("por_pagina".into()),
                size: Some(2),
                total_pages: total.map(String::from),
                stop_on_short_page: false,
            },
            max_pages: 10,
        }
    }

    fn body(n: usize, extra: serde_json::Value) -> (Vec<u8>, Json<'static>) {
        let mut v = extra;
        v["data"] = serde_json::Value::Array(
            (0..n)
                .map(|i| json!({ "i": i, "r": fastrand::u64(..) }))
                .collect(),
        );
        (serde_json::to_vec(&v).unwrap(), crate::json::from_value(&v))
    }

    fn q(u: &Url, k: &str) -> Option<String> {
        u.query_pairs()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.into_owned())
    }

    #[test]
    fn page_kind_follows_total_and_stops() {
        let mut p = Pager::new(&page_kind(Some("/total_paginas")), base());
        assert_eq!(q(p.current(), "page").as_deref(), Some("1"));
        assert_eq!(q(p.current(), "por_pagina").as_deref(), Some("2"));
        let (r, b) = body(2, json!({"total_paginas": 2}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        assert_eq!(q(p.current(), "page").as_deref(), Some("2"));
        assert_eq!(
            q(p.current(), "data_inicial").as_deref(),
            Some("2025-01-01")
        );
        let (r, b) = body(1, json!({}));
        assert_eq!(
            p.advance(&r, &b, None, 1),
            Ok(false),
            "missing total later is tolerated"
        );
    }

    #[test]
    fn page_kind_without_total_stops_on_empty() {
        let mut p = Pager::new(&page_kind(None), base());
        for _ in 0..3 {
            let (r, b) = body(2, json!({}));
            assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        }
        let (r, b) = body(0, json!({}));
        assert_eq!(p.advance(&r, &b, None, 0), Ok(false));
    }

    #[test]
    fn guards_repeat_max_pages_and_lies() {
        let mut p = Pager::new(&page_kind(None), base());
        let (r, b) = body(2, json!({}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        assert!(p.advance(&r, &b, None, 2).unwrap_err().contains("repeats"));

        let mut p = Pager::new(&page_kind(None), base());
        let mut last = Ok(true);
        for _ in 0..10 {
            let (r, b) = body(2, json!({}));
            last = p.advance(&r, &b, None, 2);
            if last.is_err() {
                break;
            }
        }
        assert!(last.unwrap_err().contains("max_pages"));

        let mut p = Pager::new(&page_kind(Some("/t")), base());
        let (r, b) = body(2, json!({"t": 3}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        let (r, b) = body(0, json!({"t": 3}));
        assert!(p
            .advance(&r, &b, None, 0)
            .unwrap_err()
            .contains("contradicted"));

        let mut p = Pager::new(&page_kind(Some("/t")), base());
        let (r, b) = body(2, json!({"t": 3}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        let (r, b) = body(2, json!({"t": 4}));
        assert!(p.advance(&r, &b, None, 2).unwrap_err().contains("changed"));
    }

    #[test]
    fn offset_kind() {
        let paging = Paging {
            kind: Pagination::Offset {
                offset_param: "offset".into(),
                limit_param: "limit".into(),
                limit: 2,
                total: Some("/total".into()),
            },
            max_pages: 100,
        };
        let mut p = Pager::new(&paging, base());
        assert_eq!(q(p.current(), "offset").as_deref(), Some("0"));
        let (r, b) = body(2, json!({"total": 3}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        assert_eq!(q(p.current(), "offset").as_deref(), Some("2"));
        let (r, b) = body(1, json!({"total": 3}));
        assert_eq!(p.advance(&r, &b, None, 1), Ok(false));
    }

    #[test]
    fn cursor_kind_stops_on_null_and_guards_repeats() {
        let paging = Paging {
            kind: Pagination::Cursor {
                param: "cursor".into(),
                cursor_path: "/next".into(),
            },
            max_pages: 100,
        };
        let mut p = Pager::new(&paging, base());
        assert_eq!(q(p.current(), "cursor"), None);
        let (r, b) = body(2, json!({"next": "abc"}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        assert_eq!(q(p.current(), "cursor").as_deref(), Some("abc"));
        let (r, b) = body(2, json!({"next": "def"}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        let (r, b) = body(2, json!({"next": "abc"}));
        assert!(p.advance(&r, &b, None, 2).unwrap_err().contains("cursor"));
        let mut p = Pager::new(&paging, base());
        for end in [json!({"next": null}), json!({}), json!({"next": ""})] {
            let (r, b) = body(1, end);
            assert_eq!(p.advance(&r, &b, None, 1), Ok(false));
            p = Pager::new(&paging, base());
        }
    }

    #[test]
    fn next_url_relative_gets_missing_params() {
        let paging = Paging {
            kind: Pagination::NextUrl {
                next_path: "/links/next".into(),
            },
            max_pages: 100,
        };
        let mut p = Pager::new(&paging, base());
        let (r, b) = body(2, json!({"links": {"next": "/v1/pedidos?page=2"}}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        let u = p.current().clone();
        assert_eq!(u.path(), "/v1/pedidos");
        assert_eq!(q(&u, "page").as_deref(), Some("2"));
        assert_eq!(q(&u, "data_inicial").as_deref(), Some("2025-01-01"));
        assert_eq!(q(&u, "apikey").as_deref(), Some("K"));
        let (r, b) = body(2, json!({"links": {"next": "/v1/pedidos?page=2"}}));
        assert!(p.advance(&r, &b, None, 2).unwrap_err().contains("repeats"));
    }

    #[test]
    fn a_total_that_is_not_a_whole_u64_is_no_total() {
        let read = |text: &str| {
            let j = Json::parse(text.as_bytes()).unwrap();
            read_total(&j, "/t")
        };
        assert_eq!(read(r#"{"t":12}"#), Some(12));
        assert_eq!(read(r#"{"t":" 7 "}"#), Some(7));
        for bad in [
            r#"{"t":-5}"#,
            r#"{"t":1.5}"#,
            r#"{"t":1e400}"#,
            r#"{"t":99999999999999999999999}"#,
            r#"{"t":"muitos"}"#,
            r#"{"t":[1]}"#,
            r#"{"t":null}"#,
            r#"{}"#,
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
    }

    #[test]
    fn link_header_parsing() {
        let h = r#"<https://api.test/p?page=1>; rel="first", </v1/pedidos?page=3>; rel="next", <?page=9>; rel=last"#;
        assert_eq!(next_link(h).as_deref(), Some("/v1/pedidos?page=3"));
        assert_eq!(
            next_link(r#"<a>; rel=last, <b>; rel=next"#).as_deref(),
            Some("b")
        );
        assert_eq!(
            next_link(r#"<a>; title="x"; rel="prev next""#).as_deref(),
            Some("a")
        );
        assert_eq!(next_link(r#"<a>; rel="last""#), None);
        assert_eq!(next_link(""), None);
        let paging = Paging {
            kind: Pagination::LinkHeader,
            max_pages: 100,
        };
        let mut p = Pager::new(&paging, base());
        let (r, b) = body(2, json!({}));
        assert_eq!(p.advance(&r, &b, Some(h), 2), Ok(true));
        assert_eq!(q(p.current(), "page").as_deref(), Some("3"));
    }
    #[test]
    fn random_access_positions_and_checks_pages() {
        let mut p = Pager::new(&page_kind(Some("/t")), base());
        let (r, b) = body(2, json!({"t": 4}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        assert_eq!(p.pages_declared(), Some(4));
        let p3 = p.at(3);
        assert_eq!(p3.page_number(), 3);
        assert_eq!(q(p3.current(), "page").as_deref(), Some("3"));
        assert_eq!(
            q(p3.current(), "data_inicial").as_deref(),
            Some("2025-01-01")
        );
        let (_, b) = body(2, json!({"t": 4}));
        assert_eq!(p3.check_at(&b, 2), Ok(Seen::Rows));
        let (_, b) = body(0, json!({}));
        assert_eq!(p3.check_at(&b, 0), Ok(Seen::Empty));
        let (_, b) = body(2, json!({"t": 5}));
        assert!(p3
            .check_at(&b, 2)
            .unwrap_err()
            .contains("changed from 4 to 5"));

        let offset = |limit| Paging {
            kind: Pagination::Offset {
                offset_param: "offset".into(),
                limit_param: "limit".into(),
                limit,
                total: Some("/total".into()),
            },
            max_pages: 100,
        };
        let mut p = Pager::new(&offset(2), base());
        let (r, b) = body(2, json!({"total": 5}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        assert_eq!(p.pages_declared(), Some(3));
        let p3 = p.at(3);
        assert_eq!(q(p3.current(), "offset").as_deref(), Some("4"));
        let (_, b) = body(1, json!({"total": 5}));
        assert_eq!(p3.check_at(&b, 1), Ok(Seen::Rows), "the last record");
        let (_, b) = body(0, json!({"total": 5}));
        assert!(p3
            .check_at(&b, 0)
            .unwrap_err()
            .contains("empty page at offset 4"));
        let (_, b) = body(1, json!({"total": 5}));
        assert!(p.at(2).check_at(&b, 1).unwrap_err().contains("2 were due"));

        // Page 1 shorter than the limit: the API may cap it; in order only.
        let mut p = Pager::new(&offset(3), base());
        let (r, b) = body(2, json!({"total": 5}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        assert_eq!(p.pages_declared(), None);
        // Without a total pointer nothing is declared.
        let mut p = Pager::new(&page_kind(None), base());
        let (r, b) = body(2, json!({}));
        assert_eq!(p.advance(&r, &b, None, 2), Ok(true));
        assert_eq!(p.pages_declared(), None);
    }
}
