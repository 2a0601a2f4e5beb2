//! Slice claims and leases: slices taken in batches by a run, their leases
//! renewed and ended (a dead worker's at once), and each attempt's end
//! recorded if its worker still holds it.

use super::Claim;
use super::{secs, SliceStatus};
use anyhow::Result;
use postgres::types::Type;
use postgres::GenericClient;
use std::time::Duration;

/// Takes up to `n` slices nobody holds (pending, failed in a run that
/// started before this one, or running under an expired lease: its worker
/// died), in date order, in one statement (one commit for all: many small
/// slices are claimed at a lower cost). A failed slice goes only to later
/// runs, so two runs working one scrap never hand a failing slice back and
/// forth.
pub fn claim_many(
    c: &mut impl GenericClient,
    scrap: i64,
    run: i64,
    worker: &str,
    lease: Duration,
    n: i64,
) -> Result<Vec<Claim>> {
    let rows = c.query_typed(
        "WITH c AS (
             SELECT id FROM atlas.slices
             WHERE scrap_id = $1
               AND ((status = $5 AND last_run_id IS DISTINCT FROM $2)
                    OR (status = $6 AND (last_run_id IS NULL OR last_run_id < $2))
                    OR (status = $7 AND lease_until < now()))
             ORDER BY slice_from
             LIMIT $8
             FOR UPDATE SKIP LOCKED)
         UPDATE atlas.slices s
         SET status = $7, worker = $3, lease_until = now() + make_interval(secs => $4),
             attempts = s.attempts + 1, last_run_id = $2, duplicates = 0
         FROM c WHERE s.id = c.id
         RETURNING s.id, s.slice_from, s.slice_to",
        &[
            (&scrap, Type::INT8),
            (&run, Type::INT8),
            (&worker, Type::TEXT),
            (&secs(lease), Type::FLOAT8),
            (&SliceStatus::Pending.as_str(), Type::TEXT),
            (&SliceStatus::Failed.as_str(), Type::TEXT),
            (&SliceStatus::Running.as_str(), Type::TEXT),
            (&n, Type::INT8),
        ],
    )?;
    let mut claims: Vec<Claim> = rows
        .iter()
        .map(|r| Claim {
            id: r.get(0),
            from: r.get(1),
            to: r.get(2),
        })
        .collect();
    claims.sort_by_key(|c| (c.from, c.id));
    Ok(claims)
}

/// Workers holding live leases on this scrap, other than `worker`.
pub fn other_holders(c: &mut impl GenericClient, scrap: i64, worker: &str) -> Result<Vec<String>> {
    let rows = c.query(
        "SELECT DISTINCT worker FROM atlas.slices
         WHERE scrap_id = $1 AND status = $3 AND lease_until >= now() AND worker IS DISTINCT FROM $2",
        &[&scrap, &worker, &SliceStatus::Running.as_str()],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect())
}

/// Ends the leases of a worker known to be dead, so its slices are taken now.
pub fn expire_worker(c: &mut impl GenericClient, worker: &str) -> Result<u64> {
    Ok(c.execute(
        "UPDATE atlas.slices SET lease_until = now() - interval '1 second'
         WHERE worker = $1 AND status = $2",
        &[&worker, &SliceStatus::Running.as_str()],
    )?)
}

/// Extends the leases of every slice this worker holds.
pub fn heartbeat(c: &mut impl GenericClient, worker: &str, lease: Duration) -> Result<u64> {
    Ok(c.execute(
        "UPDATE atlas.slices SET lease_until = now() + make_interval(secs => $2)
         WHERE worker = $1 AND status = $3",
        &[&worker, &secs(lease), &SliceStatus::Running.as_str()],
    )?)
}

/// How a slice attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceEnd {
    Done,
    /// Done, but a day of it had not ended (or settled) yet: recorded
    /// `open`, fetched again by the next sync.
    Open,
    Failed,
    /// Given back unfinished (Ctrl-C, or the run aborted): pending again.
    Released,
}

impl SliceEnd {
    /// Every row of the slice is committed.
    pub fn loaded(self) -> bool {
        matches!(self, SliceEnd::Done | SliceEnd::Open)
    }

    /// The status a slice ending this way is left in.
    pub fn status(self) -> SliceStatus {
        match self {
            SliceEnd::Done => SliceStatus::Done,
            SliceEnd::Open => SliceStatus::Open,
            SliceEnd::Failed => SliceStatus::Failed,
            SliceEnd::Released => SliceStatus::Pending,
        }
    }
}

/// Fetch-side counters of one slice attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceCounts {
    pub pages: i64,
    pub records: i64,
    pub out_of_period: i64,
    pub undated: i64,
}

/// The end of one slice attempt, for [`finish_slices`].
#[derive(Debug, Clone)]
pub struct SliceFinish<'a> {
    pub slice: i64,
    pub end: SliceEnd,
    pub counts: &'a SliceCounts,
    pub error: Option<&'a str>,
}

/// Records the ends of slice attempts in one statement (one commit: many
/// small slices end at a lower cost), each only if this worker still holds
/// it (running under `worker`). Returns, per entry, whether it was
/// recorded.
pub fn finish_slices(
    c: &mut impl GenericClient,
    worker: &str,
    ends: &[SliceFinish<'_>],
) -> Result<Vec<bool>> {
    let col = |f: &dyn Fn(&SliceFinish<'_>) -> i64| ends.iter().map(f).collect::<Vec<i64>>();
    let ids = col(&|e| e.slice);
    let status: Vec<&str> = ends.iter().map(|e| e.end.status().as_str()).collect();
    let done: Vec<bool> = ends.iter().map(|e| e.end.loaded()).collect();
    let errors: Vec<Option<&str>> = ends.iter().map(|e| e.error).collect();
    let rows = c.query_typed(
        &format!(
            "UPDATE atlas.slices s SET {}
         FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $7::text[], $8::bool[])
              AS u(id, status, pages, records, oop, undated, err, done)
         WHERE s.id = u.id AND s.worker = $9 AND s.status = $10
         RETURNING s.id",
            crate::db::END_SET
        ),
        &[
            (&ids, Type::INT8_ARRAY),
            (&status, Type::TEXT_ARRAY),
            (&col(&|e| e.counts.pages), Type::INT8_ARRAY),
            (&col(&|e| e.counts.records), Type::INT8_ARRAY),
            (&col(&|e| e.counts.out_of_period), Type::INT8_ARRAY),
            (&col(&|e| e.counts.undated), Type::INT8_ARRAY),
            (&errors, Type::TEXT_ARRAY),
            (&done, Type::BOOL_ARRAY),
            (&worker, Type::TEXT),
            (&SliceStatus::Running.as_str(), Type::TEXT),
        ],
    )?;
    let changed: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    Ok(ids.iter().map(|id| changed.contains(id)).collect())
}
