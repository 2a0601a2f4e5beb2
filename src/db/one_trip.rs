//! A small batch in one round trip: its rows, the ledger's check and counts
//! and `COMMIT` written into one simple query. Across the network a batch of
//! a few slices (a fleet's pairs, a backfill's days) otherwise pays four to
//! eight round trips (BEGIN, prepares, COPY, a COPY that met a stored row and
//! its rollback, the insert, the commit) for little work.

use super::batch_sql::{check_sql, ends_sql, literal, EndRow, ASYNC_COMMIT};
use crate::record::Row;
use std::fmt::Write;

/// Payload bytes at most for a batch sent in one message: past this a
/// binary COPY (no quoting, no SQL text to parse) is cheaper than the round
/// trips it costs.
pub const MAX_BYTES: usize = 256 * 1024;

/// Whether `rows` go in one message.
pub fn fits(rows: &[&(usize, &Row)]) -> bool {
    let mut bytes = 0;
    for (_, r) in rows {
        bytes += r.payload.len() + 80;
        if bytes > MAX_BYTES {
            return false;
        }
    }
    !rows.is_empty()
}

/// The whole batch as one simple query: `BEGIN`; the ledger's check that
/// `slices` are still `worker`'s (raises `TAKEN_OVER`, before any row goes
/// in); the insert, which skips stored hashes and counts each slice's new
/// rows (a hash twice in the batch counts for its first slice), adding them
/// to the slices and the run; the `ends` of slices whose last rows these
/// are; `COMMIT`. Its one result row per slice is
/// `(index into slices, rows inserted)`. `rows` are tagged with their
/// slice's index, sorted by hash (unique-index entries locked in one order).
/// Only dates, hashes, integers and quoted text are written into the SQL.
/// Also returns each slice's rows in the batch.
pub fn sql(
    table: &str,
    run: i64,
    worker: &str,
    slices: &[i64],
    rows: &[&(usize, &Row)],
    ends: &[EndRow],
) -> (String, Vec<i64>) {
    let mut totals = vec![0i64; slices.len()];
    for (g, _) in rows {
        totals[*g] += 1;
    }
    let bytes: usize = rows.iter().map(|(_, r)| r.payload.len() + 80).sum();
    let mut s = String::with_capacity(bytes + 1024);
    // The check alone: counts come from the insert below.
    s.push_str("BEGIN;\n");
    s.push_str(ASYNC_COMMIT);
    s.push_str(&check_sql(worker, slices));
    s.push_str("WITH b(d, p, h, g) AS (SELECT * FROM unnest('{");
    join(&mut s, rows, |s, (_, r)| {
        let _ = write!(s, "{}", r.data_referencia);
    });
    s.push_str("}'::date[], ARRAY[");
    join(&mut s, rows, |s, (_, r)| s.push_str(&literal(&r.payload)));
    s.push_str("]::text[], '{");
    join(&mut s, rows, |s, (_, r)| s.push_str(r.hash.as_str()));
    s.push_str("}'::text[], '{");
    join(&mut s, rows, |s, (g, _)| {
        let _ = write!(s, "{g}");
    });
    let _ = write!(
        s,
        "}}'::int[])),
ins AS (INSERT INTO {table} (data_referencia, payload, hash_conteudo)
  SELECT d, p::jsonb, h FROM b ON CONFLICT (hash_conteudo) DO NOTHING RETURNING hash_conteudo),
per AS (SELECT f.g, count(*) AS n FROM ins
  JOIN (SELECT h, min(g) AS g FROM b GROUP BY h) f ON f.h = ins.hash_conteudo GROUP BY f.g),
tot(g, id, total) AS (VALUES "
    );
    for (g, (id, total)) in slices.iter().zip(&totals).enumerate() {
        let sep = if g == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}({g}, {id}::bigint, {total}::bigint)");
    }
    let all: i64 = totals.iter().sum();
    let _ = write!(
        s,
        "),
sl AS (UPDATE atlas.slices AS s
  SET inserted = s.inserted + coalesce(per.n, 0), duplicates = s.duplicates + t.total - coalesce(per.n, 0)
  FROM tot t LEFT JOIN per ON per.g = t.g WHERE s.id = t.id RETURNING t.g, coalesce(per.n, 0) AS n),
ru AS (UPDATE atlas.runs SET inserted = inserted + (SELECT coalesce(sum(n), 0) FROM per),
  duplicates = duplicates + {all} - (SELECT coalesce(sum(n), 0) FROM per) WHERE id = {run})
SELECT g, n FROM sl;\n"
    );
    s.push_str(&ends_sql(worker, ends));
    s.push_str("COMMIT");
    (s, totals)
}

/// Writes `each` of `rows` into `s`, comma-separated.
fn join<'a, 'r>(
    s: &mut String,
    rows: &'a [&'a (usize, &'r Row)],
    mut each: impl FnMut(&mut String, &'a (usize, &'r Row)),
) {
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        each(s, r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn row(p: &str) -> Row {
        Row {
            data_referencia: NaiveDate::from_ymd_opt(2025, 3, 1).unwrap(),
            payload: p.into(),
            hash: crate::record::Hash::of(p.as_bytes()),
        }
    }

    #[test]
    fn one_text_checks_inserts_counts_and_commits() {
        let (a, b) = (row(r#"{"a":"it's"}"#), row(r#"{"b":"\\n"}"#));
        let tagged = [(0usize, &a), (1usize, &b)];
        let rows: Vec<&(usize, &Row)> = tagged.iter().collect();
        let (sql, totals) = sql("\"t\"", 7, "w", &[11, 12], &rows, &[]);
        assert_eq!(totals, [1, 1]);
        assert!(sql.starts_with("BEGIN;\nSET LOCAL synchronous_commit = off;"));
        assert!(sql.contains("ERRCODE = 'AT001'"));
        assert!(sql.contains("'{2025-03-01,2025-03-01}'::date[]"));
        assert!(sql.contains(r#"ARRAY[E'{"a":"it''s"}',E'{"b":"\\\\n"}']::text[]"#));
        assert!(sql.contains(&format!(
            "'{{{},{}}}'::text[]",
            a.hash.as_str(),
            b.hash.as_str()
        )));
        assert!(sql.contains("'{0,1}'::int[]"));
        assert!(sql.contains("(0, 11::bigint, 1::bigint), (1, 12::bigint, 1::bigint)"));
        assert!(sql.contains("duplicates = duplicates + 2 - (SELECT"));
        assert!(sql.contains("WHERE id = 7)"));
        assert!(sql.ends_with("SELECT g, n FROM sl;\nCOMMIT"));
        assert_eq!(sql.matches("COMMIT").count(), 1);
        let end = EndRow {
            slice: 12,
            status: "done",
            pages: 1,
            records: 1,
            out_of_period: 0,
            undated: 0,
        };
        let (ended, _) = super::sql("\"t\"", 7, "w", &[11, 12], &rows, &[end]);
        let upd = ended.find("SET status = u.status").unwrap();
        assert!(ended.find("SELECT g, n FROM sl;").unwrap() < upd);
        assert!(ended.ends_with("'running';\nCOMMIT"));
    }

    #[test]
    fn only_small_batches_go_in_one_message() {
        let small = row("{}");
        let big = row(&format!("{{\"x\":\"{}\"}}", "y".repeat(MAX_BYTES)));
        let (s, b) = ((0usize, &small), (0usize, &big));
        assert!(fits(&[&s, &s]));
        assert!(!fits(&[&s, &b]));
        assert!(!fits(&[]));
    }
}
