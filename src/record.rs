//! Record -> stored row: reference date, canonical payload, content hash.
//!
//! The canonical form (SPEC §4) is serde_json's compact output of a `Value`
//! whose maps are `BTreeMap`s: keys sorted by code point at every depth, no
//! whitespace, non-ASCII kept as UTF-8. The hash is its lowercase hex SHA-256,
//! so it does not depend on the key order the API sent.

use crate::config::{Route, Undated};
use crate::dates;
use crate::json::{self, Json};
use chrono::NaiveDate;
use sha2::{Digest, Sha256};

/// One row for a raw table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub data_referencia: NaiveDate,
    pub payload: String,
    pub hash: String,
}

/// The canonical JSON text of a record.
pub fn canonical(v: &Json<'_>) -> String {
    json::canonical(v)
}

/// Lowercase hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
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
}

/// The records array of a body, per the route's `records` pointer.
pub fn records_of<'b, 'a>(body: &'b Json<'a>, pointer: &str) -> Result<&'b [Json<'a>], String> {
    match body.pointer(pointer) {
        Some(Json::Arr(a)) => Ok(a),
        Some(other) => Err(format!(
            "the value at records pointer '{pointer}' is not an array but {}",
            other.kind()
        )),
        None => Err(format!("the body has no records at pointer '{pointer}'")),
    }
}

/// Turns a page's records into rows for the scrap period `period`.
/// `slice_from` dates undated records under the `slice_start` rule.
pub fn page_rows(
    records: &[Json<'_>],
    route: &Route,
    period: (NaiveDate, NaiveDate),
    slice_from: NaiveDate,
) -> Result<PageRows, String> {
    let mut out = PageRows {
        rows: Vec::with_capacity(records.len()),
        fetched: records.len() as u64,
        ..Default::default()
    };
    for (i, raw) in records.iter().enumerate() {
        let rec = match &route.records_unwrap {
            None => raw,
            Some(p) => raw
                .pointer(p)
                .ok_or_else(|| format!("record {i} has nothing at records_unwrap '{p}'"))?,
        };
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
                    Undated::SliceStart => slice_from,
                    Undated::Skip => continue,
                    Undated::Fail => {
                        return Err(format!("record {i} has no date ({why}); set the route's date_field or its undated rule"))
                    }
                }
            }
        };
        if date < period.0 || date > period.1 {
            out.out_of_period += 1;
            continue;
        }
        let payload = canonical(rec);
        let hash = sha256_hex(payload.as_bytes());
        out.rows.push(Row {
            data_referencia: date,
            payload,
            hash,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SPEC §4 test vector: independent of key order, UTF-8 kept raw,
    /// nested keys sorted. Computed independently with Python's
    /// `json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.
    #[test]
    fn pinned_hash_vector() {
        let a = Json::parse(
            r#"{"numero": 7, "cliente": {"nome": "José", "cidade": "São Paulo"}, "valor": 10.5, "itens": [{"sku": "A", "qtd": 2}], "obs": "linha\n\"aspas\"", "nulo": null}"#
                .as_bytes(),
        )
        .unwrap();
        let b = Json::parse(
            r#"{"obs":"linha\n\"aspas\"","nulo":null,"itens":[{"qtd":2,"sku":"A"}],"valor":10.50,"cliente":{"cidade":"São Paulo","nome":"José"},"numero":7}"#
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
        let arr = Json::parse(b"[1, 2]").unwrap();
        assert_eq!(records_of(&arr, "").unwrap().len(), 2);
    }
}
