//! The batch insert of the load path: one writer's connection puts a batch
//! of rows into the raw table and adds its slices' and run's counts in one
//! transaction, in as few round trips as the protocol allows (a database
//! across the network pays each one).
//!
//! Round trips per committed batch, statements prepared: binary COPY (the
//! first load) 4: `BEGIN; SAVEPOINT copy`, the COPY's start and its end,
//! then the ledger and `COMMIT` sent together as one simple query;
//! `INSERT … ON CONFLICT` (a rerun) 3: `BEGIN`, the insert, the ledger with
//! `COMMIT`, taken at once by a batch holding a day its sync fetches again
//! (the lookback). Before this module they were 7 and 6, plus one per
//! slice of the batch. With the database across the network a small batch (at most
//! `one_trip::MAX_BYTES` of payload: a fleet's pair, a few days of a
//! backfill) takes 1: everything in one message (`one_trip`).

use super::batch_sql::{ledger_sql, taken_over, EndRow};
use super::{one_trip, PooledConn};
use crate::ident::quote;
use crate::record::Row;
use anyhow::Result;
use bytes::BytesMut;
use chrono::NaiveDate;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, SimpleQueryMessage, Statement};

/// One writer's connection with its statements prepared once: the insert of
/// the load path (arrays unnested server-side, duplicates skipped by the
/// unique hash) and the slice and run bookkeeping, committed together per
/// batch.
pub struct Inserter {
    conn: PooledConn,
    worker: String,
    run: i64,
    /// The held slices locked first (the retry of a batch that found one
    /// taken over), prepared when first needed.
    held: Option<Statement>,
    /// The raw table, quoted.
    table: String,
    /// The table's insert statements, prepared when a batch first needs them.
    count: Option<Statement>,
    by_slice: Option<Statement>,
    /// `COPY … FROM STDIN BINARY` into the raw table, and that statement
    /// prepared when a batch first needs it.
    copy: String,
    copy_stmt: Option<Statement>,
    /// Whether a small batch goes in one message (`one_trip`): with the
    /// database across the network, where its round trips are the cost;
    /// next door binary COPY costs the server less.
    one_trip: bool,
    /// Whether the next batch tries COPY first: off after a batch met a
    /// duplicate (a rerun: every COPY would fail), on again once a batch
    /// inserted every row.
    try_copy: bool,
}

/// What a committed batch did: rows inserted per slice (`None` for a slice
/// no longer held, whose rows were not written) and the slices whose ends
/// its commit recorded.
#[derive(Debug)]
pub struct Committed {
    pub per_slice: Vec<Option<i64>>,
    pub ended: Vec<i64>,
}

/// A JSONB value sent in binary form: version 1, then the canonical text.
#[derive(Debug)]
struct Jsonb<'a>(&'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

/// Whether the error is a unique violation (a row already stored).
fn unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// An open transaction on a writer's connection, rolled back when dropped
/// before `commit` (an error on the way): the connection goes back to the
/// pool clean. `BEGIN` and `COMMIT` travel with other statements, so this
/// is not postgres' `Transaction`.
struct Open<'c> {
    conn: &'c mut Client,
    open: bool,
}

impl<'c> Open<'c> {
    /// Sends `begin` (a `BEGIN` and what may go with it): one round trip.
    fn begin(conn: &'c mut Client, begin: &str) -> Result<Open<'c>> {
        conn.batch_execute(begin)?;
        Ok(Open { conn, open: true })
    }

    /// Sends `sql`, which ends with `COMMIT`: one round trip. `Ok(false)`
    /// when the ledger found a slice taken over (rolled back).
    fn commit(mut self, sql: &str) -> Result<bool> {
        match self.conn.batch_execute(sql) {
            Ok(()) => {
                self.open = false;
                Ok(true)
            }
            Err(e) if taken_over(&e) => {
                self.open = false;
                self.conn.batch_execute("ROLLBACK")?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.open {
            // A broken connection fails here too, and is dropped by the pool.
            let _ = self.conn.batch_execute("ROLLBACK");
        }
    }
}

impl Inserter {
    /// A writer of `worker`'s run `run` into `table`, on a pooled
    /// connection. No round trip: statements are prepared when first used.
    pub fn on(conn: PooledConn, table: &str, worker: &str, run: i64) -> Result<Inserter> {
        Ok(Inserter {
            conn,
            worker: String::new(),
            run: 0,
            held: None,
            table: String::new(),
            count: None,
            by_slice: None,
            copy: String::new(),
            copy_stmt: None,
            try_copy: true,
            one_trip: false,
        }
        .retarget(table, worker, run))
    }

    /// This writer sends small batches in one message (`one_trip`): the
    /// database is across the network.
    pub fn far(mut self, far: bool) -> Inserter {
        self.one_trip = far;
        self
    }

    /// The same connection, writing `worker`'s run `run` into `table`
    /// (`sync --all`: one writer serves every pair). No round trip: the
    /// table's statements are prepared when first used.
    pub fn retarget(mut self, table: &str, worker: &str, run: i64) -> Inserter {
        self.worker = worker.to_string();
        self.run = run;
        self.table = quote(table);
        self.count = None;
        self.by_slice = None;
        self.copy_stmt = None;
        self.copy = format!(
            "COPY {} (data_referencia, payload, hash_conteudo) FROM STDIN BINARY",
            self.table
        );
        self.try_copy = true;
        self
    }

    /// The table's `INSERT … ON CONFLICT DO NOTHING` of a batch, and the
    /// same counting each slice's new rows.
    fn insert_sql(table: &str) -> (String, String) {
        let insert = format!(
            "INSERT INTO {table} (data_referencia, payload, hash_conteudo)
             SELECT d, p::jsonb, h FROM unnest($1::date[], $2::text[], $3::text[]) AS u(d, p, h)
             ON CONFLICT (hash_conteudo) DO NOTHING"
        );
        // Several slices share the batch: the server counts each one's new
        // rows by joining what went in with the slice index of each hash (a
        // hash twice in the batch went in once: it counts for one slice).
        let by_slice = format!(
            "WITH ins AS ({insert} RETURNING hash_conteudo)
             SELECT g, count(*) FROM ins
             JOIN (SELECT h, min(g) AS g FROM unnest($3::text[], $4::int[]) AS t(h, g) GROUP BY h) t
               ON t.h = ins.hash_conteudo
             GROUP BY g"
        );
        (insert, by_slice)
    }

    /// Inserts `rows` (each tagged with an index into `slices`) and adds each
    /// slice's and the run's inserted/duplicate counts, in one transaction.
    /// Only slices this worker still holds count: rows of a slice taken over
    /// by another worker (its lease expired) are not written, since the new
    /// holder fetches them again and counts them there. Rows are sorted by
    /// hash so concurrent writers lock unique-index entries in one order.
    /// Returns rows inserted per slice, `None` for a slice no longer held.
    ///
    /// The rows go in by binary COPY when none is stored yet (a successful
    /// COPY inserted every row: the counts are exact); a COPY that meets a
    /// unique violation is rolled back to its savepoint and the batch goes in
    /// by `INSERT … ON CONFLICT DO NOTHING`, which counts what was new.
    ///
    /// The slices' rows are locked last, with the count updates and in the
    /// commit's round trip, after the rows went in: two writers whose
    /// batches share a slice (parallel pages) then write at the same time
    /// and only queue for the short count update and the commit. If a slice
    /// turns out taken over meanwhile, the transaction is rolled back and
    /// the batch done again with the slices locked first.
    ///
    /// `stored`: the batch holds a day fetched again (a sync's lookback),
    /// whose rows are mostly stored: it goes by `INSERT … ON CONFLICT` at
    /// once, not by a COPY that would meet them and be rolled back.
    ///
    /// `ends` is asked, as late as possible before the commit is sent, for
    /// the ends of slices whose last rows are in the batch: the commit
    /// records them (those still held), in place of a transaction each.
    pub fn commit_batch(
        &mut self,
        rows: &mut [(usize, &Row)],
        slices: &[i64],
        ends: &dyn Fn() -> Vec<EndRow>,
        stored: bool,
    ) -> Result<Committed> {
        rows.sort_by_key(|r| r.1.hash);
        if let Some(done) = self.commit_once(rows, slices, ends, false, stored)? {
            return Ok(done);
        }
        Ok(self
            .commit_once(rows, slices, ends, true, stored)?
            .unwrap_or_else(|| Committed {
                per_slice: vec![None; slices.len()],
                ended: Vec::new(),
            }))
    }

    /// One attempt of `commit_batch`: with `lock_first`, the held slices are
    /// locked before writing and only their rows written; without, every row
    /// is written and `None` returned (rolled back) if any slice is not held.
    fn commit_once(
        &mut self,
        rows: &[(usize, &Row)],
        slices: &[i64],
        ends: &dyn Fn() -> Vec<EndRow>,
        lock_first: bool,
        stored: bool,
    ) -> Result<Option<Committed>> {
        if self.one_trip && !lock_first {
            let all: Vec<&(usize, &Row)> = rows.iter().collect();
            if one_trip::fits(&all) {
                return self.commit_in_one(&all, slices, &ends());
            }
        }
        let try_copy = self.try_copy && !stored && !rows.is_empty();
        // The savepoint a COPY may roll back to comes after the slice locks
        // of `lock_first` (rolling back to it must not release them); without
        // them it is set in BEGIN's round trip, and released by the commit.
        let early_savepoint = try_copy && !lock_first;
        let held_stmt = match (&self.held, lock_first) {
            (Some(st), true) => Some(st.clone()),
            (None, true) => Some(self.held.insert(self.conn.prepare(
                "SELECT id FROM atlas.slices WHERE id = ANY($1) AND worker = $2 AND status = 'running'
                 ORDER BY id FOR UPDATE",
            )?).clone()),
            _ => None,
        };
        let tx = Open::begin(
            &mut self.conn,
            if early_savepoint {
                "BEGIN; SAVEPOINT copy"
            } else {
                "BEGIN"
            },
        )?;
        let held: Vec<i64> = match &held_stmt {
            Some(st) => tx
                .conn
                .query(st, &[&slices, &self.worker])?
                .iter()
                .map(|r| r.get(0))
                .collect(),
            None => slices.to_vec(),
        };
        let is_held: Vec<bool> = slices.iter().map(|s| held.contains(s)).collect();
        let kept: Vec<&(usize, &Row)> = rows.iter().filter(|(g, _)| is_held[*g]).collect();
        let mut per_slice = vec![0i64; slices.len()];
        let mut totals = vec![0i64; slices.len()];
        for (g, _) in &kept {
            totals[*g] += 1;
        }
        let copied = !kept.is_empty() && try_copy && {
            if !early_savepoint {
                tx.conn.batch_execute("SAVEPOINT copy")?;
            }
            let copy = match &self.copy_stmt {
                Some(st) => st.clone(),
                None => self.copy_stmt.insert(tx.conn.prepare(&self.copy)?).clone(),
            };
            match copy_rows(tx.conn, &copy, &kept) {
                Ok(()) => true,
                // Back to the savepoint: nothing of the COPY stays.
                Err(e) if unique_violation(&e) => {
                    tx.conn.batch_execute("ROLLBACK TO SAVEPOINT copy")?;
                    self.try_copy = false;
                    false
                }
                Err(e) => return Err(e.into()),
            }
        };
        if copied {
            per_slice.copy_from_slice(&totals);
        } else if !kept.is_empty() {
            let dates: Vec<NaiveDate> = kept.iter().map(|r| r.1.data_referencia).collect();
            let payloads: Vec<&str> = kept.iter().map(|r| r.1.payload.as_str()).collect();
            let hashes: Vec<&str> = kept.iter().map(|r| r.1.hash.as_str()).collect();
            let (insert, by_slice) = Inserter::insert_sql(&self.table);
            if held.len() == 1 {
                let count = match &self.count {
                    Some(st) => st.clone(),
                    None => self.count.insert(tx.conn.prepare(&insert)?).clone(),
                };
                let n = tx.conn.execute(&count, &[&dates, &payloads, &hashes])? as i64;
                if let Some(g) = is_held.iter().position(|h| *h) {
                    per_slice[g] = n;
                }
            } else {
                let groups: Vec<i32> = kept.iter().map(|r| r.0 as i32).collect();
                let by_slice = match &self.by_slice {
                    Some(st) => st.clone(),
                    None => self.by_slice.insert(tx.conn.prepare(&by_slice)?).clone(),
                };
                for r in tx
                    .conn
                    .query(&by_slice, &[&dates, &payloads, &hashes, &groups])?
                {
                    let g: i32 = r.get(0);
                    per_slice[g as usize] = r.get(1);
                }
            }
            // Every row was new: the next batch may try COPY again.
            self.try_copy = per_slice == totals;
        }
        let counts: Vec<(i64, i64, i64)> = (0..slices.len())
            .filter(|g| is_held[*g])
            .map(|g| (slices[g], per_slice[g], totals[g] - per_slice[g]))
            .collect();
        // Without `lock_first` the ledger statement locks the slices and
        // checks they are all still this worker's.
        let check = (!lock_first).then_some(slices);
        let mut ends = ends();
        ends.retain(|e| held.contains(&e.slice));
        if !tx.commit(&ledger_sql(self.run, &self.worker, check, &counts, &ends))? {
            return Ok(None);
        }
        Ok(Some(Committed {
            per_slice: per_slice
                .into_iter()
                .zip(is_held)
                .map(|(n, h)| h.then_some(n))
                .collect(),
            ended: ends.iter().map(|e| e.slice).collect(),
        }))
    }
}

impl Inserter {
    /// `commit_once` of a small batch without `lock_first`, in one round
    /// trip (`one_trip`): `None` (rolled back) if a slice was taken over.
    fn commit_in_one(
        &mut self,
        rows: &[&(usize, &Row)],
        slices: &[i64],
        ends: &[EndRow],
    ) -> Result<Option<Committed>> {
        let (sql, totals) = one_trip::sql(&self.table, self.run, &self.worker, slices, rows, ends);
        let answer = match self.conn.simple_query(&sql) {
            Ok(a) => a,
            Err(e) => {
                // The message stopped at the error inside its transaction:
                // rolled back here (a broken connection fails here too, and
                // the pool drops it).
                let _ = self.conn.batch_execute("ROLLBACK");
                if taken_over(&e) {
                    return Ok(None);
                }
                return Err(e.into());
            }
        };
        let mut per_slice = vec![Some(0i64); slices.len()];
        for m in &answer {
            // The check's set_config answers a row of one column.
            if let SimpleQueryMessage::Row(r) = m {
                if r.len() != 2 {
                    continue;
                }
                let g: Option<usize> = r.get(0).and_then(|v| v.parse().ok());
                let n: Option<i64> = r.get(1).and_then(|v| v.parse().ok());
                if let (Some(g), Some(n)) = (g, n) {
                    if let Some(slot) = per_slice.get_mut(g) {
                        *slot = Some(n);
                    }
                }
            }
        }
        // Every row new: the next (bigger) batch may try COPY again.
        self.try_copy = per_slice.iter().zip(&totals).all(|(n, t)| *n == Some(*t));
        Ok(Some(Committed {
            per_slice,
            ended: ends.iter().map(|e| e.slice).collect(),
        }))
    }
}

/// The rows by binary COPY, in the order given.
fn copy_rows(
    conn: &mut Client,
    copy: &Statement,
    rows: &[&(usize, &Row)],
) -> std::result::Result<(), postgres::Error> {
    let sink = conn.copy_in(copy)?;
    let mut w = BinaryCopyInWriter::new(sink, &[Type::DATE, Type::JSONB, Type::TEXT]);
    for (_, row) in rows {
        w.write(&[
            &row.data_referencia,
            &Jsonb(&row.payload),
            &row.hash.as_str(),
        ])?;
    }
    w.finish()?;
    Ok(())
}
