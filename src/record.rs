//! Record -> stored row: reference date, canonical payload, content hash.
//!
//! The canonical form (SPEC §4): keys sorted by code point at every depth,
//! no whitespace, non-ASCII kept as UTF-8, numbers exactly as the API wrote
//! them, U+0000 replaced by U+FFFD (JSONB cannot hold it; such a record is
//! counted as sanitised). The stored payload is that text and the hash is its
//! lowercase hex SHA-256, so the hash is of what is stored and does not
//! depend on the key order the API sent.

use crate::config::{Pagination, Route, Undated};
use crate::dates;
use crate::json::{self, Element, Findings, Json, Record};
use chrono::NaiveDate;
use sha2::{Digest, Sha256};

/// One row for a raw table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub data_referencia: NaiveDate,
    pub payload: String,
    pub hash: Hash,
}

/// A `hash_conteudo`: the lowercase hex SHA-256 of a payload, held inline
/// (a row costs no allocation for it). Ordered as its text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hash([u8; 64]);

impl Hash {
    /// The hash of some bytes.
    pub fn of(bytes: &[u8]) -> Hash {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = Sha256::digest(bytes);
        let mut hex = [0u8; 64];
        for (pair, b) in hex.chunks_exact_mut(2).zip(digest) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        Hash(hex)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Hash::of(bytes).as_str().to_owned()
}

/// What one page's records became.
#[derive(Debug, Default)]
pub struct PageRows {
    pub rows: Vec<Row>,
    /// Records on the page (before any filtering).
    pub fetched: u64,
    pub out_of_period: u64,
    pub undated: u64,
    /// The first reason a record had no date, for the error log.
    pub undated_reason: Option<String>,
    /// One line per stored record whose U+0000 became U+FFFD (for the error
    /// log); its length is the page's `sanitised` count.
    pub sanitised: Vec<String>,
}

impl PageRows {
    /// Heap bytes the rows take: what their page holds from the memory
    /// budget until a writer has committed them.
    pub fn bytes(&self) -> usize {
        self.rows.capacity() * size_of::<Row>()
            + self
                .rows
                .iter()
                .map(|r| r.payload.capacity())
                .sum::<usize>()
    }
}

/// The records array of a body, per the route's `records` pointer.
pub fn records_of<'b, 'a>(body: &'b Json<'a>, pointer: &str) -> Result<&'b [Json<'a>], String> {
    match body.pointer(pointer) {
        Some(Json::Arr(a)) => Ok(a),
        other => Err(not_records(other, pointer)),
    }
}

/// As `records_of`, for `page_rows` to drop each record once it is a row.
pub fn records_of_mut<'b, 'a>(
    body: &'b mut Json<'a>,
    pointer: &str,
) -> Result<&'b mut [Json<'a>], String> {
    match body.pointer_mut(pointer) {
        Some(Json::Arr(a)) => Ok(a),
        other => Err(not_records(other.as_deref(), pointer)),
    }
}

fn not_records(found: Option<&Json<'_>>, pointer: &str) -> String {
    match found {
        Some(other) => format!(
            "the value at records pointer '{pointer}' is not an array but {}",
            other.kind()
        ),
        None => format!("the body has no records at pointer '{pointer}'"),
    }
}

/// Whether the route's pagination reads a pointer inside the records (a
/// cursor taken from the last record, say): the body must then stay whole
/// until the page is checked.
fn paging_reads_records(route: &Route) -> bool {
    let ptr = match &route.pagination.kind {
        Pagination::Page { total_pages: p, .. } | Pagination::Offset { total: p, .. } => {
            p.as_deref()
        }
        Pagination::Cursor { cursor_path: p, .. } | Pagination::NextUrl { next_path: p } => {
            Some(p.as_str())
        }
        Pagination::None | Pagination::LinkHeader => None,
    };
    ptr.is_some_and(|p| {
        p.strip_prefix(route.records.as_str())
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Whether a route's records can be turned into rows while the body is
/// parsed (`Json::parse_records`): not when its pagination reads inside
/// the records (a cursor taken from the last record, say).
pub fn streams(route: &Route) -> bool {
    !paging_reads_records(route)
}

/// Turns a page's records into rows for the scrap period `period`.
/// `slice_from` dates undated records under the `slice_start` rule.
///
/// Each record's tree is dropped (left `null`) once its row is built, unless
/// the route's pagination reads inside the records: the tree is the largest
/// part of a page in memory (~3× the body), and freed record by record its
/// room takes the rows, so a page peaks at its body and tree, not at those
/// and all its rows.
pub fn page_rows(
    records: &mut [Json<'_>],
    route: &Route,
    period: (NaiveDate, NaiveDate),
    slice_from: NaiveDate,
) -> Result<PageRows, String> {
    let mut rows = Rows::new(route, period, slice_from, records.len());
    let drop_used = streams(route);
    for (i, slot) in records.iter_mut().enumerate() {
        if drop_used {
            let owned = std::mem::replace(slot, Json::Null);
            rows.push(i, &owned);
        } else {
            rows.push(i, slot);
        }
        if rows.failed.is_some() {
            break;
        }
    }
    rows.finish(records.len())
}

/// A page's rows, built record by record (from a page's tree, or as the
/// body is parsed).
pub struct Rows<'r> {
    route: &'r Route,
    period: (NaiveDate, NaiveDate),
    slice_from: NaiveDate,
    out: PageRows,
    /// The canonical text of one record, reused: each row copies it out at
    /// its exact size.
    scratch: String,
    /// The first record that cannot be stored: the page fails with it.
    failed: Option<String>,
}

impl<'r> Rows<'r> {
    pub fn new(
        route: &'r Route,
        period: (NaiveDate, NaiveDate),
        slice_from: NaiveDate,
        capacity: usize,
    ) -> Rows<'r> {
        Rows {
            route,
            period,
            slice_from,
            out: PageRows {
                rows: Vec::with_capacity(capacity),
                ..Default::default()
            },
            scratch: String::with_capacity(1024),
            failed: None,
        }
    }

    /// Record `i` of the page; once one record failed, the rest are not
    /// looked at.
    pub fn push(&mut self, i: usize, raw: &Json<'_>) {
        self.keep(|rows| rows.row(i, raw));
    }

    /// Record `i` of the page as `Json::parse_records` hands it over.
    pub fn take(&mut self, i: usize, el: Element<'_, '_>) {
        match el {
            Element::Tree(raw) => self.push(i, &raw),
            Element::Text(rec) => self.keep(|rows| rows.row_text(i, &rec)),
        }
    }

    /// Builds a row unless a record already failed the page; the first
    /// failure is the page's.
    fn keep(&mut self, row: impl FnOnce(&mut Self) -> Result<(), String>) {
        if self.failed.is_none() {
            if let Err(why) = row(self) {
                self.failed = Some(why);
            }
        }
    }

    /// The rows of a page of `fetched` records, or why the page fails.
    pub fn finish(mut self, fetched: usize) -> Result<PageRows, String> {
        if let Some(why) = self.failed {
            return Err(why);
        }
        self.out.rows.shrink_to_fit();
        self.out.fetched = fetched as u64;
        Ok(self.out)
    }

    /// Record `i` written as canonical text by the parser. The members a
    /// date is looked up in are parsed alone; a record the text path does
    /// not cover (unwrapped, not an object, to sanitise or to refuse: their
    /// messages name where) is parsed whole and takes the tree path.
    fn row_text(&mut self, i: usize, rec: &Record<'_, '_>) -> Result<(), String> {
        let route = self.route;
        let plain = route.records_unwrap.is_none() && rec.found == Findings::default();
        let dated_by = match route.date_field.as_deref() {
            _ if !plain => None,
            Some(ptr) => rec.at_pointer(ptr),
            None => rec.only(dates::DATE_KEYS),
        };
        let Some(dated_by) = dated_by else {
            let tree =
                Json::parse(rec.source.as_bytes()).map_err(|e| format!("record {i}: {e}"))?;
            return self.row(i, &tree);
        };
        let Some(date) = self.date(i, &dated_by)? else {
            return Ok(());
        };
        let payload = rec.text.to_owned();
        let hash = Hash::of(payload.as_bytes());
        self.out.rows.push(Row {
            data_referencia: date,
            payload,
            hash,
        });
        Ok(())
    }

    /// The date a record is stored under, or `None` where it is not stored
    /// (undated and skipped, or outside the period).
    fn date(&mut self, i: usize, rec: &Json<'_>) -> Result<Option<NaiveDate>, String> {
        let route = self.route;
        let out = &mut self.out;
        let date = match dates::record_date(
            rec,
            route.date_field.as_deref(),
            route.timezone.as_ref(),
        ) {
            Ok(d) => d,
            Err(why) => {
                out.undated += 1;
                if out.undated_reason.is_none() {
                    out.undated_reason = Some(format!("record {i}: {why}"));
                }
                match route.undated {
                    Undated::SliceStart => self.slice_from,
                    Undated::Skip => return Ok(None),
                    Undated::Fail => {
                        return Err(format!("record {i} has no date ({why}); set the route's date_field or its undated rule"))
                    }
                }
            }
        };
        if date < self.period.0 || date > self.period.1 {
            out.out_of_period += 1;
            return Ok(None);
        }
        Ok(Some(date))
    }

    fn row(&mut self, i: usize, raw: &Json<'_>) -> Result<(), String> {
        let route = self.route;
        let rec = match &route.records_unwrap {
            None => raw,
            Some(p) => raw
                .pointer(p)
                .ok_or_else(|| format!("record {i} has nothing at records_unwrap '{p}'"))?,
        };
        let Some(date) = self.date(i, rec)? else {
            return Ok(());
        };
        let out = &mut self.out;
        let scratch = &mut self.scratch;
        let found = json::canonical_into(rec, scratch);
        // Rows outlive the page (queued to writers, under the budget): each
        // holds its text at its exact size.
        let payload = scratch.as_str().to_owned();
        if found.out_of_range {
            let (at, n) = json::out_of_range_number(rec).unwrap_or_default();
            let n = if n.len() > 40 {
                format!("{}... ({} characters)", &n[..40], n.len())
            } else {
                n.to_string()
            };
            return Err(format!(
                "record {i}: the number {n} at {at} is outside PostgreSQL's numeric range (131072 digits before the point, 16383 after): it cannot be stored exactly"
            ));
        }
        let hash = Hash::of(payload.as_bytes());
        if found.nul {
            out.sanitised.push(format!(
                "record {i}: U+0000 replaced by U+FFFD at {}; stored with hash_conteudo {hash}",
                json::nul_paths(rec, 5).join(", ")
            ));
        }
        out.rows.push(Row {
            data_referencia: date,
            payload,
            hash,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::canonical;

    /// The SPEC §4 test vector: independent of key order, UTF-8 kept raw,
    /// nested keys sorted. Computed independently with Python's
    /// `json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
    /// (its numbers are written the same way by the API and by Python).
    #[test]
    fn pinned_hash_vector() {
        let a = Json::parse(
            r#"{"numero": 7, "cliente": {"nome": "José", "cidade": "São Paulo"}, "valor": 10.5, "itens": [{"sku": "A", "qtd": 2}], "obs": "linha\n\"aspas\"", "nulo": null}"#
                .as_bytes(),
        )
        .unwrap();
        let b = Json::parse(
            r#"{"obs":"linha\n\"aspas\"","nulo":null,"itens":[{"qtd":2,"sku":"A"}],"valor":10.5,"cliente":{"cidade":"São Paulo","nome":"José"},"numero":7}"#
                .as_bytes(),
        )
        .unwrap();
        let expected_text = r#"{"cliente":{"cidade":"São Paulo","nome":"José"},"itens":[{"qtd":2,"sku":"A"}],"nulo":null,"numero":7,"obs":"linha\n\"aspas\"","valor":10.5}"#;
        assert_eq!(canonical(&a), expected_text);
        assert_eq!(canonical(&b), expected_text);
        assert_eq!(
            sha256_hex(expected_text.as_bytes()),
            "44d60dd18fbdbb9c274fe14e56c1ab0aa1482e14857fdddcdd5e9b43727afdf0"
        );
    }

    /// Numbers are canonicalised as the API wrote them (no float rounding,
    /// trailing zeros and exponents kept) and U+0000 is stored as U+FFFD.
    /// The hash is of the expected text, computed independently with
    /// Python's `hashlib.sha256(text.encode()).hexdigest()`.
    #[test]
    fn pinned_hash_vector_numbers_as_written_and_nul() {
        let rec = Json::parse(
            br#"{"valor": 1234.5600, "pi": 0.1000000000000000055511151231257827, "huge": 1e400, "big": 123456789012345678901234567890, "obs": "a\u0000b", "cliente": "Jos\u00e9"}"#,
        )
        .unwrap();
        let expected_text = "{\"big\":123456789012345678901234567890,\"cliente\":\"Jos\u{e9}\",\"huge\":1e400,\"obs\":\"a\u{FFFD}b\",\"pi\":0.1000000000000000055511151231257827,\"valor\":1234.5600}";
        assert_eq!(canonical(&rec), expected_text);
        assert_eq!(
            sha256_hex(expected_text.as_bytes()),
            "99e32748bb356f92fcb9cc7fd3731f1df16f6a5f230391f8d9e60a00d0be93b7"
        );
        // `10.50` is not `10.5`: a different text, a different hash.
        let a = Json::parse(br#"{"valor":10.50}"#).unwrap();
        let b = Json::parse(br#"{"valor":10.5}"#).unwrap();
        assert_ne!(canonical(&a), canonical(&b));
    }

    fn route(undated: &str) -> Route {
        let cfg = crate::config::parse(
            &format!(
                r#"{{"clients": {{"1": {{"base_url": "http://x"}}}},
                    "routes": {{"r": {{"path": "/r", "records": "", "date_field": "/d", "undated": "{undated}",
                                      "date_params": {{"start": "a", "end": "b"}}}}}}}}"#
            ),
            std::path::Path::new("atlas.json"),
        )
        .unwrap();
        cfg.clients["1"].routes["r"].clone()
    }

    #[test]
    fn page_rows_sanitise_nul_and_refuse_numbers_postgres_cannot_hold() {
        let day = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let mut body = Json::parse(
            br#"[{"d":"2025-01-01","s":"ok"},{"d":"2025-01-01","s":"C\u0000string"},{"d":"2025-01-01","n":1e400}]"#,
        )
        .unwrap();
        let recs = records_of_mut(&mut body, "").unwrap();
        let page = page_rows(recs, &route("skip"), (day, day), day).unwrap();
        assert_eq!(page.rows.len(), 3);
        assert_eq!(
            page.rows[1].payload,
            "{\"d\":\"2025-01-01\",\"s\":\"C\u{FFFD}string\"}"
        );
        assert_eq!(
            page.rows[1].hash.as_str(),
            sha256_hex(page.rows[1].payload.as_bytes())
        );
        assert_eq!(page.rows[2].payload, r#"{"d":"2025-01-01","n":1e400}"#);
        assert_eq!(page.sanitised.len(), 1);
        assert!(
            page.sanitised[0].starts_with("record 1: U+0000 replaced by U+FFFD at /s;"),
            "{}",
            page.sanitised[0]
        );
        assert!(page.sanitised[0].contains(page.rows[1].hash.as_str()));

        let mut bad = Json::parse(br#"[{"d":"2025-01-01","x":{"n":1e999999}}]"#).unwrap();
        let e = page_rows(
            records_of_mut(&mut bad, "").unwrap(),
            &route("skip"),
            (day, day),
            day,
        )
        .unwrap_err();
        assert!(
            e.contains(
                "record 0: the number 1e999999 at /x/n is outside PostgreSQL's numeric range"
            ),
            "{e}"
        );
    }

    /// Records are dropped from the tree as their rows are built, unless the
    /// pagination reads inside them (a cursor in the last record): then the
    /// page must be checked on the whole body.
    #[test]
    fn page_rows_drop_records_unless_paging_reads_them() {
        let day = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let text = br#"{"data":[{"d":"2025-01-01","n":1},{"d":"2025-01-01","n":2}],"next":"x"}"#;
        let mut r = route("skip");
        r.records = "/data".into();
        let cursor = |at: &str| Pagination::Cursor {
            param: "c".into(),
            cursor_path: at.into(),
        };
        for (at, kept) in [("/next", false), ("/data/1/n", true), ("/database", false)] {
            r.pagination.kind = cursor(at);
            let mut body = Json::parse(text).unwrap();
            let recs = records_of_mut(&mut body, "/data").unwrap();
            let page = page_rows(recs, &r, (day, day), day).unwrap();
            assert_eq!(page.rows.len(), 2);
            assert_eq!(page.rows[1].payload, r#"{"d":"2025-01-01","n":2}"#);
            let n = body.pointer("/data/1/n");
            assert_eq!(n.is_some(), kept, "cursor at {at}");
            assert_eq!(body.pointer("/next"), Some(&Json::Str("x".into())));
        }
        r.pagination.kind = Pagination::None;
        let mut body = Json::parse(text).unwrap();
        page_rows(
            records_of_mut(&mut body, "/data").unwrap(),
            &r,
            (day, day),
            day,
        )
        .unwrap();
        assert_eq!(body.pointer("/data/0"), Some(&Json::Null));
        // Rows hold no spare room: they outlive the page under the budget.
        assert!(page_rows(
            records_of_mut(&mut Json::parse(text).unwrap(), "/data").unwrap(),
            &r,
            (day, day),
            day
        )
        .unwrap()
        .rows
        .iter()
        .all(|row| row.payload.capacity() == row.payload.len()));
    }

    #[test]
    fn sha256_of_empty_is_the_standard_value() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn code_point_order_not_utf16() {
        // U+FB01 sorts after U+1F600 in UTF-16 but before it by code point.
        let text = "{\"\u{1F600}\": 1, \"\u{FB01}\": 2, \"Z\": 3, \"a\": 4}";
        let v = Json::parse(text.as_bytes()).unwrap();
        assert_eq!(
            canonical(&v),
            "{\"Z\":3,\"a\":4,\"\u{FB01}\":2,\"\u{1F600}\":1}"
        );
    }

    #[test]
    fn records_pointer_errors_are_clear() {
        let body = Json::parse(br#"{"data": {"x": 1}}"#).unwrap();
        assert!(records_of(&body, "/data")
            .unwrap_err()
            .contains("not an array"));
        assert!(records_of(&body, "/dados").unwrap_err().contains("/dados"));
        let mut arr = Json::parse(b"[1, 2]").unwrap();
        assert_eq!(records_of_mut(&mut arr, "").unwrap().len(), 2);
    }

    /// A page's rows through the text path (`parse_records` and `take`)
    /// and through the tree (`page_rows`), as `(rows, counts, notes)`, or
    /// the page's error.
    type Outcome = Result<(Vec<Row>, [u64; 3], Vec<String>, Option<String>), String>;

    fn both_paths(body: &str, r: &Route, day: NaiveDate) -> (Outcome, Outcome) {
        let period = (day, day + chrono::Days::new(1));
        let shown = |p: Result<PageRows, String>| {
            p.map(|p| {
                (
                    p.rows,
                    [p.fetched, p.out_of_period, p.undated],
                    p.sanitised,
                    p.undated_reason,
                )
            })
        };
        let mut rows = Rows::new(r, period, day, 0);
        let (mut tree, _, found) =
            Json::parse_records(body.as_bytes(), &r.records, &mut |i, el| rows.take(i, el))
                .unwrap();
        assert_eq!(found, 1);
        let n = records_of(&tree, &r.records).unwrap().len();
        let _ = records_of_mut(&mut tree, &r.records).unwrap();
        let text = shown(rows.finish(n));
        let mut whole = Json::parse(body.as_bytes()).unwrap();
        let recs = records_of_mut(&mut whole, &r.records).unwrap();
        (text, shown(page_rows(recs, r, period, day)))
    }

    /// Rows built from the parser's text equal the rows built from the
    /// tree: dates by pointer, nested or by the usual keys, undated rules,
    /// the period, U+0000, unwrapped records, repeated keys, and the error
    /// of a number PostgreSQL cannot hold.
    #[test]
    fn text_and_tree_paths_build_the_same_rows() {
        let day = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let body = r#"{"data":[
            {"n":1,"d":"2025-01-01","z":{"b":[1,{"y":2,"x":"\u00e9"}],"a":null}},
            {"d":"2025-01-02T10:00:00Z","n":2},
            {"d":"2024-12-31","n":3},
            {"n":4},
            {"d":null,"n":5},
            {"d":"2025-01-01","s":"a\u0000b","n":6},
            {"d":"2025-01-01","d":"2030-01-01","n":7},
            {"d":1735732800,"n":8},
            {"data_pedido":"2025-01-01","created_at":"2025-01-02","n":9},
            {"w":{"d":"2025-01-01"},"n":10},
            ["not an object"],
            "text",
            {"k\u00e9":1,"d":"2025-01-01","n":11}
        ]}"#;
        for (field, undated, unwrap) in [
            (Some("/d"), "skip", None),
            (Some("/d"), "slice_start", None),
            (Some("/w/d"), "slice_start", None),
            (None, "slice_start", None),
            (Some("/d"), "fail", None),
            (Some("/d"), "skip", Some("/w")),
            (Some(""), "slice_start", None),
        ] {
            let mut r = route(undated);
            r.records = "/data".into();
            r.date_field = field.map(Into::into);
            r.records_unwrap = unwrap.map(Into::into);
            let (text, tree) = both_paths(body, &r, day);
            assert_eq!(text, tree, "{field:?} {undated} {unwrap:?}");
            if undated == "fail" {
                assert!(text.is_err());
            } else if unwrap.is_none() {
                assert!(text.as_ref().unwrap().0.len() > 3);
            }
        }
        let mut r = route("skip");
        r.records = "/data".into();
        let bad = r#"{"data":[{"d":"2025-01-01","n":1},{"d":"2025-01-01","x":{"n":1e999999}}]}"#;
        let (text, tree) = both_paths(bad, &r, day);
        assert_eq!(text, tree);
        assert!(text
            .unwrap_err()
            .contains("record 1: the number 1e999999 at /x/n"));
    }
}
