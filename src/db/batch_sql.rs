//! The ledger's part of a batch as SQL text: the check that its slices are
//! still this worker's and their counts, written into the message that
//! commits the batch (`insert`, `one_trip`).

use std::fmt::Write;

/// The SQLSTATE the ledger statement raises when a slice of the batch is no
/// longer this worker's (its lease expired and another worker took it).
pub(super) const TAKEN_OVER: &str = "AT001";

/// Whether `e` is the ledger's `TAKEN_OVER` (the batch was rolled back and
/// is redone for the slices still held), logged as such.
pub(super) fn taken_over(e: &postgres::Error) -> bool {
    let taken = e.code().map(postgres::error::SqlState::code) == Some(TAKEN_OVER);
    if taken {
        log::debug!(
            "a slice of the batch was taken over: rolled back, redone for the slices still held"
        );
    }
    taken
}

/// A string literal that reads the same whatever
/// `standard_conforming_strings` is: `E'…'`, backslashes and quotes doubled.
pub(super) fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The end of a slice whose last rows are in the batch, recorded by the
/// batch's commit (no transaction of its own): its status (`done` or
/// `open`) and fetch counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndRow {
    pub slice: i64,
    pub status: &'static str,
    pub pages: i64,
    pub records: i64,
    pub out_of_period: i64,
    pub undated: i64,
}

/// The end of a batch's transaction as one simple query (one round trip):
/// with `check`, lock those slices in id order (two writers sharing slices
/// must not deadlock) and raise `TAKEN_OVER` unless each is still running
/// under `worker`; add each `(slice, inserted, duplicates)` of `counts` and
/// their sum to the run; record `ends` (each only if still `worker`'s);
/// commit without waiting for the WAL flush.
///
/// The commit need not wait for its flush: a slice's end is committed with
/// its last rows or after them, and the run is closed by a synchronous
/// commit later in the same WAL, which flushes them all; a crash of the
/// server before that loses a tail of commits whole (rows with their counts
/// and ends), whose slices the rerun finds unfinished and fetches again.
/// Only integers and quoted text are written into the text.
pub(super) fn ledger_sql(
    run: i64,
    worker: &str,
    check: Option<&[i64]>,
    counts: &[(i64, i64, i64)],
    ends: &[EndRow],
) -> String {
    let mut sql = String::from(ASYNC_COMMIT);
    if let Some(slices) = check {
        sql.push_str(&check_sql(worker, slices));
    }
    let (inserted, total) = counts
        .iter()
        .fold((0, 0), |(i, t), (_, ins, dup)| (i + ins, t + ins + dup));
    if total > 0 {
        let values: Vec<String> = counts
            .iter()
            .map(|(s, i, d)| format!("({s}::bigint, {i}::bigint, {d}::bigint)"))
            .collect();
        let _ = write!(
            sql,
            "UPDATE atlas.slices AS s SET inserted = s.inserted + v.i, duplicates = s.duplicates + v.d
  FROM (VALUES {}) AS v(id, i, d) WHERE s.id = v.id;
UPDATE atlas.runs SET inserted = inserted + {inserted}, duplicates = duplicates + {dup} WHERE id = {run};\n",
            values.join(", "),
            dup = total - inserted,
        );
    }
    sql.push_str(&ends_sql(worker, ends));
    sql.push_str("COMMIT");
    sql
}

/// Opens a batch's transaction text: its commit does not wait for the WAL
/// flush (see [`ledger_sql`]).
pub(super) const ASYNC_COMMIT: &str = "SET LOCAL synchronous_commit = off;\n";

/// Locks `slices` in id order (two writers sharing slices must not
/// deadlock) and raises `TAKEN_OVER` unless each is still running under
/// `worker`.
pub(super) fn check_sql(worker: &str, slices: &[i64]) -> String {
    let ids: Vec<String> = slices.iter().map(i64::to_string).collect();
    format!(
        "SELECT set_config('atlas.batch_worker', {w}, true);
DO $$BEGIN
  IF (SELECT count(*) FROM (SELECT id FROM atlas.slices
        WHERE id = ANY ('{{{ids}}}'::bigint[]) AND worker = current_setting('atlas.batch_worker')
          AND status = 'running' ORDER BY id FOR UPDATE) h) <> {n} THEN
    RAISE EXCEPTION 'a slice of this batch was taken over' USING ERRCODE = '{TAKEN_OVER}';
  END IF;
END$$;\n",
        w = literal(worker),
        ids = ids.join(","),
        n = slices.len(),
    )
}

/// What a slice's end sets, from a row `u(status, pages, records, oop,
/// undated, err, done)`: shared by the ledger's own statement
/// (`ledger::finish_slices`) and the ends a batch's commit records.
pub const END_SET: &str = "status = u.status, pages = u.pages, records = u.records,
    out_of_period = u.oop, undated = u.undated,
    last_error = CASE WHEN u.done THEN NULL ELSE coalesce(u.err, s.last_error) END,
    worker = NULL, lease_until = NULL,
    done_at = CASE WHEN u.done THEN now() ELSE NULL END";

/// The update recording `ends`, each only if the slice is still running
/// under `worker` (empty when there is none).
pub(super) fn ends_sql(worker: &str, ends: &[EndRow]) -> String {
    if ends.is_empty() {
        return String::new();
    }
    let values: Vec<String> = ends
        .iter()
        .map(|e| {
            format!(
                "({}::bigint, {}, {}::bigint, {}::bigint, {}::bigint, {}::bigint, NULL::text, true)",
                e.slice,
                literal(e.status),
                e.pages,
                e.records,
                e.out_of_period,
                e.undated
            )
        })
        .collect();
    format!(
        "UPDATE atlas.slices AS s SET {END_SET}
  FROM (VALUES {}) AS u(id, status, pages, records, oop, undated, err, done)
  WHERE s.id = u.id AND s.worker = {} AND s.status = 'running';\n",
        values.join(", "),
        literal(worker)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_survive_quotes_and_backslashes() {
        assert_eq!(literal("host:1"), "E'host:1'");
        assert_eq!(literal(r"a'b\c"), r"E'a''b\\c'");
    }

    #[test]
    fn the_ledger_checks_counts_and_commits_in_one_text() {
        let sql = ledger_sql(7, "w'1", Some(&[3, 5]), &[(3, 10, 2), (5, 0, 4)], &[]);
        assert!(sql.starts_with("SET LOCAL synchronous_commit = off;"));
        assert!(sql.contains("set_config('atlas.batch_worker', E'w''1', true)"));
        assert!(sql.contains("'{3,5}'::bigint[]"));
        assert!(sql.contains(") h) <> 2 THEN"));
        assert!(sql.contains(&format!("ERRCODE = '{TAKEN_OVER}'")));
        assert!(
            sql.contains("(3::bigint, 10::bigint, 2::bigint), (5::bigint, 0::bigint, 4::bigint)")
        );
        assert!(sql.contains("inserted = inserted + 10, duplicates = duplicates + 6 WHERE id = 7"));
        assert!(sql.ends_with("COMMIT"));
    }

    #[test]
    fn a_batch_of_slices_locked_first_or_empty_only_commits() {
        let sql = ledger_sql(7, "w", None, &[], &[]);
        assert_eq!(sql, "SET LOCAL synchronous_commit = off;\nCOMMIT");
        let sql = ledger_sql(7, "w", None, &[(3, 1, 0)], &[]);
        assert!(!sql.contains("DO $$"));
        assert!(sql.contains("UPDATE atlas.runs"));
    }

    #[test]
    fn slice_ends_ride_with_the_commit_for_this_worker_only() {
        let end = EndRow {
            slice: 9,
            status: "open",
            pages: 2,
            records: 70,
            out_of_period: 1,
            undated: 3,
        };
        let sql = ledger_sql(7, "w'1", None, &[(9, 70, 0)], &[end]);
        let upd = sql.find("SET status = u.status").unwrap();
        assert!(upd > sql.find("UPDATE atlas.runs").unwrap());
        assert!(upd < sql.find("COMMIT").unwrap());
        assert!(sql.contains(
            "(9::bigint, E'open', 2::bigint, 70::bigint, 1::bigint, 3::bigint, NULL::text, true)"
        ));
        assert!(sql.contains("s.worker = E'w''1' AND s.status = 'running'"));
        assert_eq!(ends_sql("w", &[]), "");
    }
}
