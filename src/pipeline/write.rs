//! Writers: take chunks off the channel, cut them into batches of at most
//! `batch_export` rows (and `batch_bytes`), and commit each batch with its
//! slices' counters in one transaction, retried while the database may come
//! back. With the database across the network, each writer sizes its
//! batches by its commit times (`tune`).
//!
//! Invariant: a chunk lets go of its slice only once every row of it is
//! committed, or its slice is marked released (rows not committed) and, if
//! the database refused them, failed.

use super::fold::{self, Flush};
use super::track::{ReleaseOnPanic, SliceTrack};
use super::{add, tune, Abort, Chunk, Lanes, Shared};
use crate::db::{self, Inserter};
use crate::ledger::SliceEnd;
use crate::record::Row;
use crate::report::{Notice, Retried};
use crate::retry::Verdict;
use crossbeam::channel::Receiver;
use std::sync::Arc;
use std::time::Instant;

/// A writer's inserter, and the run (lane) it is prepared for.
type Prepared = Option<(usize, Inserter)>;

/// Where a writer cuts its batches: at `rows` rows or once they hold
/// `bytes` bytes of payload, whichever comes first.
#[derive(Clone, Copy)]
struct Limit {
    rows: usize,
    bytes: usize,
    /// The database is across the network: small batches in one message.
    far: bool,
}

/// Commits chunks until every fetcher is gone and the channel is empty:
/// what is queued is taken at once, up to a batch, and committed per run.
pub(super) fn writer(lanes: &Lanes, rx: &Receiver<Chunk>) {
    let settings = lanes.settings;
    let mut limit = Limit {
        rows: settings.batch_export,
        bytes: settings.batch_bytes.unwrap_or(usize::MAX),
        far: settings.db_round_trip.is_some(),
    };
    let mut ins: Prepared = None;
    let mut pending: Vec<Chunk> = Vec::new();
    while let Ok(c) = rx.recv() {
        pending.push(c);
        let mut n: usize = pending.iter().map(|c| c.rows.len()).sum();
        // Take what is already queued, up to a batch: no waiting for more.
        while n < limit.rows {
            match rx.try_recv() {
                Ok(c) => {
                    n += c.rows.len();
                    pending.push(c);
                }
                Err(_) => break,
            }
        }
        // One run's rows go to one table: committed run by run, the
        // inserter's run first (no statements prepared again).
        let current = ins.as_ref().map(|(l, _)| *l);
        pending.sort_by_key(|c| (Some(c.lane) != current, c.lane));
        while !pending.is_empty() {
            let lane = pending[0].lane;
            let k = pending
                .iter()
                .position(|c| c.lane != lane)
                .unwrap_or(pending.len());
            let mut run: Vec<Chunk> = pending.drain(..k).collect();
            let rows: usize = run.iter().map(|c| c.rows.len()).sum();
            let t = Instant::now();
            let per = lanes.lane(lane).flush(&mut ins, &mut run, limit);
            // A full batch's commit time says how big the next ones should be.
            if let (Some(rtt), true) = (settings.db_round_trip, rows >= limit.rows) {
                let per_batch = t.elapsed() / rows.div_ceil(per) as u32;
                limit.rows = tune::next_batch_rows(settings.batch_export, per, per_batch, rtt);
            }
        }
    }
}

impl Shared<'_, '_> {
    /// Commits the pending chunks in batches within `limit`; returns the
    /// rows per batch it cut them into.
    fn flush(&self, ins: &mut Prepared, pending: &mut Vec<Chunk>, limit: Limit) -> usize {
        let chunks = std::mem::take(pending);
        // A panic below must not leave these slices running: released instead.
        let mut guard = ReleaseOnPanic {
            held: chunks.iter().map(|c| Arc::clone(&c.slice)).collect(),
            let_go: |t: &SliceTrack| self.let_go(t),
        };
        // Rows are cut into batches; each batch lists (chunk index, row).
        let n = chunks.iter().map(|c| c.rows.len()).sum();
        let per = batch_rows(n, limit.rows);
        let mut fold = Flush::of(&chunks);
        let mut batch: Vec<(usize, &Row)> = Vec::with_capacity(per.min(1 << 16));
        let mut bytes = 0;
        for (ci, chunk) in chunks.iter().enumerate() {
            for row in &chunk.rows {
                batch.push((ci, row));
                bytes += row.payload.len();
                if batch.len() == per || bytes >= limit.bytes {
                    self.commit(ins, &chunks, &mut batch, &mut fold, limit.far);
                    bytes = 0;
                }
            }
        }
        if !batch.is_empty() {
            self.commit(ins, &chunks, &mut batch, &mut fold, limit.far);
        }
        // Each chunk is fully committed (or its slice marked) now.
        while let Some(t) = guard.held.pop() {
            self.let_go(&t);
        }
        per
    }

    /// Commits one batch, retried, with the ends of the slices it completes;
    /// on giving up, marks the batch's slices.
    fn commit(
        &self,
        ins: &mut Prepared,
        chunks: &[Chunk],
        batch: &mut Vec<(usize, &Row)>,
        fold: &mut Flush,
        far: bool,
    ) {
        let job = self.job;
        if let Err(no) = job.table.wait() {
            // Nowhere to write: the run stops, these slices stay pending.
            for (ci, _) in batch.iter() {
                chunks[*ci].slice.release();
            }
            job.errlog
                .write("gravação desistiu", &self.ctx(None), &no.message);
            self.abort(if no.database_lost {
                Abort::Database(no.message)
            } else {
                Abort::Environment(no.message)
            });
            batch.clear();
            return;
        }
        let (slices, mut tagged) = by_slice(chunks, batch);
        // A day fetched again holds stored rows: no COPY to meet them.
        // Judged per slice of the batch, not per row.
        let stored = job.refetch.is_some_and(|(a, b)| {
            chunks.iter().any(|c| {
                let claim = &c.slice.claim;
                slices.contains(&claim.id) && claim.from <= b && a <= claim.to
            })
        });
        let last = fold.cut(&slices, &tagged);
        let ends = || fold::ends(&last, |t| self.end_of(&t.claim, SliceEnd::Done));
        let committed = self.policy().run(
            |_| {
                if self.aborted() {
                    return Err(anyhow::anyhow!("run stopping: batch not written"));
                }
                let r = match ins {
                    Some((lane, i)) if *lane == self.lane => {
                        i.commit_batch(&mut tagged, &slices, &ends, stored)
                    }
                    _ => {
                        // Another run's inserter keeps its connection and statements.
                        let (table, worker, run) = (&job.scrap.raw_table, &job.worker, job.run_id);
                        let next = match ins.take() {
                            Some((_, i)) => Ok(i.retarget(table, worker, run)),
                            None => job
                                .pool
                                .get()
                                .map_err(anyhow::Error::from)
                                .and_then(|c| Inserter::on(c, table, worker, run))
                                .map(|i| i.far(far)),
                        };
                        next.and_then(|i| {
                            let (_, i) = ins.insert((self.lane, i));
                            i.commit_batch(&mut tagged, &slices, &ends, stored)
                        })
                    }
                };
                if matches!(&r, Err(e) if db::retryable(e)) {
                    *ins = None; // the connection may be broken: take a fresh one
                }
                r
            },
            |e| Verdict::retry_if(db::retryable(e)),
            |e, r| {
                add(&self.counters.retries, 1);
                self.notify(Notice::Retrying {
                    attempt: r.attempt,
                    attempts: r.attempts,
                    wait: r.wait,
                    of: Retried::Batch,
                });
                job.errlog
                    .write("gravação falhou", &self.ctx(None), &format!("{e:#}"));
            },
        );
        match committed {
            Ok(db::Committed { per_slice, ended }) => {
                for id in ended {
                    if let Some(t) = fold.track(id) {
                        t.end_was_recorded();
                    }
                }
                let mut total = 0u64;
                for (ci, _) in batch.iter() {
                    let id = chunks[*ci].slice.claim.id;
                    match slices.iter().position(|s| *s == id).map(|g| per_slice[g]) {
                        Some(Some(_)) => total += 1,
                        // Taken over by another worker: its rows were not
                        // written here; the new holder fetches and counts them.
                        _ => chunks[*ci].slice.release(),
                    }
                }
                let inserted = per_slice.iter().flatten().sum::<i64>() as u64;
                add(&self.counters.inserted, inserted);
                add(&self.counters.duplicates, total - inserted);
            }
            Err(g) => {
                let msg = format!("{:#}", g.error);
                // Those rows are not committed: their slices must not be marked done.
                for (ci, _) in batch.iter() {
                    chunks[*ci].slice.release();
                }
                if db::retryable(&g.error) {
                    job.errlog.write("gravação desistiu", &self.ctx(None), &msg);
                    self.abort(Abort::Database(msg));
                } else {
                    // A verdict on the data (e.g. a value PostgreSQL refuses): fail those slices.
                    job.errlog
                        .write("lote recusado pelo banco", &self.ctx(None), &msg);
                    for (ci, _) in batch.iter() {
                        chunks[*ci]
                            .slice
                            .batch_refused(format!("the database refused a batch: {msg}"));
                    }
                }
            }
        }
        batch.clear();
    }
}

/// Rows per batch for `n` rows in hand with batches of `limit` rows: a
/// tail of at most half a batch rides with the others (those rows are in
/// memory already), since a batch of its own would cost as many round
/// trips as a full one; otherwise the rows are cut into equal batches.
fn batch_rows(n: usize, limit: usize) -> usize {
    let limit = limit.max(1);
    let mut k = n.div_ceil(limit).max(1);
    if k > 1 && n - (k - 1) * limit <= limit / 2 {
        k -= 1;
    }
    n.div_ceil(k).max(1)
}

/// The slice ids of a batch, in order of appearance, and its rows tagged
/// with their slice's index in that list: the counts of each slice are
/// updated with the rows.
fn by_slice<'r>(chunks: &[Chunk], batch: &[(usize, &'r Row)]) -> (Vec<i64>, Vec<(usize, &'r Row)>) {
    let mut slices: Vec<i64> = Vec::new();
    let mut tagged = Vec::with_capacity(batch.len());
    for (ci, row) in batch {
        let id = chunks[*ci].slice.claim.id;
        let g = match slices.iter().position(|s| *s == id) {
            Some(g) => g,
            None => {
                slices.push(id);
                slices.len() - 1
            }
        };
        tagged.push((g, *row));
    }
    (slices, tagged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Claim;
    use crate::pipeline::track::SliceTrack;
    use chrono::NaiveDate;

    fn chunk(slice_id: i64, hashes: &[&str]) -> Chunk {
        let day = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        Chunk {
            lane: 0,
            slice: SliceTrack::new(Claim {
                id: slice_id,
                from: day,
                to: day,
            }),
            rows: hashes
                .iter()
                .map(|h| Row {
                    data_referencia: day,
                    payload: "{}".into(),
                    hash: crate::record::Hash::of(h.as_bytes()),
                })
                .collect(),
            _held: None,
        }
    }

    #[test]
    fn a_small_tail_rides_with_the_batches_before_it() {
        assert_eq!(batch_rows(2_000, 2_000), 2_000);
        assert_eq!(batch_rows(500, 2_000), 500);
        // One page past the limit: one batch, not a second of 132 rows.
        assert_eq!(batch_rows(3_500, 3_368), 3_500);
        assert_eq!(batch_rows(5_000, 3_368), 5_000);
        // More than half a batch left: equal batches.
        assert_eq!(batch_rows(5_100, 3_368), 2_550);
        assert_eq!(batch_rows(10_000, 2_000), 2_000);
        assert_eq!(batch_rows(10_900, 2_000), 2_180);
        assert_eq!(batch_rows(0, 2_000), 1);
    }

    #[test]
    fn a_batch_is_tagged_by_slice_in_order_of_appearance() {
        let chunks = [chunk(9, &["a", "b"]), chunk(4, &["c"]), chunk(9, &["d"])];
        let batch: Vec<(usize, &Row)> = chunks
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| c.rows.iter().map(move |r| (ci, r)))
            .collect();
        let (slices, tagged) = by_slice(&chunks, &batch);
        assert_eq!(slices, [9, 4]);
        let tags: Vec<(usize, &str)> = tagged.iter().map(|(g, r)| (*g, r.hash.as_str())).collect();
        let of = |h: &str| crate::record::sha256_hex(h.as_bytes());
        let (a, b, c, d) = (of("a"), of("b"), of("c"), of("d"));
        assert_eq!(
            tags,
            [
                (0, a.as_str()),
                (0, b.as_str()),
                (1, c.as_str()),
                (0, d.as_str())
            ]
        );
    }
}
