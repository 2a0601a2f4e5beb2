//! Runs: started with their lease and build, renewed, closed with their
//! counters, and those of dead processes closed as `aborted`.

use super::worker::worker_gone;
use super::{secs, RunStatus, SliceStatus};
use anyhow::Result;
use postgres::types::Type;
use postgres::GenericClient;
use std::time::Duration;

/// Records a run started by `worker` (and the build it runs), under a
/// lease of its own that the run's heartbeat renews ([`renew_run`]). Also returns how many pages the
/// pair's most recently done slice had (of its three scraps with the same
/// `slice_days` reaching the latest days, one index range whatever the
/// pair's history; 0 when none): the run's first guess of a slice's size.
pub fn start_run(
    c: &mut impl GenericClient,
    scrap: i64,
    worker: &str,
    settings: &serde_json::Value,
    lease: Duration,
) -> Result<(i64, u64)> {
    let row = c.query_typed_one(
        "WITH r AS (
             INSERT INTO atlas.runs (scrap_id, worker, settings, lease_until, version)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4), $6) RETURNING id)
         SELECT r.id,
                (SELECT s.pages FROM atlas.slices s
                 WHERE s.status = $5 AND s.scrap_id IN (
                     SELECT o.id FROM atlas.scraps me CROSS JOIN LATERAL (
                         SELECT o.id FROM atlas.scraps o
                         WHERE o.client = me.client AND o.route = me.route
                           AND o.slice_days = me.slice_days
                         ORDER BY o.period_to DESC LIMIT 3) o
                     WHERE me.id = $1)
                 ORDER BY s.done_at DESC NULLS LAST LIMIT 1)
         FROM r",
        &[
            (&scrap, Type::INT8),
            (&worker, Type::TEXT),
            (settings, Type::JSONB),
            (&secs(lease), Type::FLOAT8),
            (&SliceStatus::Done.as_str(), Type::TEXT),
            (&crate::version::version(), Type::TEXT),
        ],
    )?;
    let pages: Option<i64> = row.get(1);
    Ok((row.get(0), pages.unwrap_or(0).max(0) as u64))
}

/// Extends a running run's lease: it stays `running` while its process lives.
pub fn renew_run(c: &mut impl GenericClient, run: i64, lease: Duration) -> Result<u64> {
    Ok(c.execute(
        "UPDATE atlas.runs SET lease_until = now() + make_interval(secs => $2)
         WHERE id = $1 AND status = $3",
        &[&run, &secs(lease), &RunStatus::Running.as_str()],
    )?)
}

/// Final counters of a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunTotals {
    pub pages: i64,
    pub records: i64,
    pub inserted: i64,
    pub duplicates: i64,
    pub out_of_period: i64,
    pub undated: i64,
    /// Records stored with U+0000 replaced by U+FFFD (not kept in `atlas.runs`).
    pub sanitised: i64,
    pub retries: i64,
    pub slices_done: i32,
    /// Of `slices_done`, those recorded `open` (not kept in `atlas.runs`).
    pub slices_open: i32,
    pub slices_failed: i32,
    /// Requests by status class (not kept in `atlas.runs`).
    pub http: crate::requests::Requests,
}

/// Records the end of a run. Its `inserted` and `duplicates` are not set
/// here: each batch adds them in its own transaction (`db::Inserter`), so
/// they stay true even when the process is killed.
pub fn finish_run(
    c: &mut impl GenericClient,
    run: i64,
    status: RunStatus,
    t: &RunTotals,
    error: Option<&str>,
) -> Result<()> {
    c.execute_typed(
        "UPDATE atlas.runs SET finished_at = now(), status = $2, pages = $3, records = $4,
                out_of_period = $5, undated = $6, retries = $7, slices_done = $8,
                slices_failed = $9, error = $10
         WHERE id = $1",
        &[
            (&run, Type::INT8),
            (&status.as_str(), Type::TEXT),
            (&t.pages, Type::INT8),
            (&t.records, Type::INT8),
            (&t.out_of_period, Type::INT8),
            (&t.undated, Type::INT8),
            (&t.retries, Type::INT8),
            (&t.slices_done, Type::INT4),
            (&t.slices_failed, Type::INT4),
            (&error, Type::TEXT),
        ],
    )?;
    Ok(())
}

/// Closes as `aborted` (with a finish time) every run of the scrap still
/// marked running whose worker is known to be gone (same machine, no
/// process) or whose own lease has expired (any machine). Returns how many.
pub fn abort_dead_runs(c: &mut impl GenericClient, scrap: Option<i64>, me: &str) -> Result<u64> {
    let rows = c.query_typed(
        "SELECT id, worker, coalesce(lease_until < now(), false)
         FROM atlas.runs WHERE ($1::bigint IS NULL OR scrap_id = $1) AND status = $2",
        &[
            (&scrap, Type::INT8),
            (&RunStatus::Running.as_str(), Type::TEXT),
        ],
    )?;
    let mut n = 0;
    for r in rows {
        let (id, worker, expired): (i64, String, bool) = (r.get(0), r.get(1), r.get(2));
        if expired || worker_gone(me, &worker) {
            n += c.execute(
                "UPDATE atlas.runs SET status = $2, finished_at = now(),
                        error = coalesce(error, 'its process ended without closing the run')
                 WHERE id = $1 AND status = $3",
                &[
                    &id,
                    &RunStatus::Aborted.as_str(),
                    &RunStatus::Running.as_str(),
                ],
            )?;
        }
    }
    Ok(n)
}
