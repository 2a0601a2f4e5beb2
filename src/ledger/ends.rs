//! When a run may end, read from the ledger: no slice is left that another
//! live worker holds or that this run could still claim, and no later live
//! run of the scrap may still take a slice this run failed. So a run's exit
//! code and summary say what the scrap came to, not what one process saw
//! while others were still working it. And what its end reads back.

use super::{
    contiguous_done, slice_columns, slice_info, status_of, RunStatus, SliceInfo, SliceStatus,
};
use anyhow::Result;
use chrono::NaiveDate;
use postgres::types::Type;
use postgres::GenericClient;

/// Slices of the scrap that keep run `run` (of `worker`) from ending: held
/// by another worker under a live lease, or free for this run to claim (a
/// claim skips rows another transaction has locked: a worker claiming at
/// the same instant, or a writer committing).
pub fn unsettled(c: &mut impl GenericClient, scrap: i64, run: i64, worker: &str) -> Result<i64> {
    Ok(c.query_typed_one(
        "SELECT count(*) FROM atlas.slices
         WHERE scrap_id = $1
           AND ((status = $4 AND lease_until >= now() AND worker IS DISTINCT FROM $3)
                OR (status = $5 AND last_run_id IS DISTINCT FROM $2)
                OR (status = $6 AND (last_run_id IS NULL OR last_run_id < $2)))",
        &[
            (&scrap, Type::INT8),
            (&run, Type::INT8),
            (&worker, Type::TEXT),
            (&SliceStatus::Running.as_str(), Type::TEXT),
            (&SliceStatus::Pending.as_str(), Type::TEXT),
            (&SliceStatus::Failed.as_str(), Type::TEXT),
        ],
    )?
    .get(0))
}

/// Slices run `run` failed that a later run of the scrap, still live, may
/// take (a run takes the failed slices of the runs before it): the run's
/// end waits for them to be settled by that run.
pub fn retried_elsewhere(c: &mut impl GenericClient, scrap: i64, run: i64) -> Result<i64> {
    Ok(c.query_typed_one(
        "SELECT count(*) FROM atlas.slices s
         WHERE s.scrap_id = $1 AND s.status = $3 AND s.last_run_id = $2
           AND EXISTS (SELECT 1 FROM atlas.runs r
                        WHERE r.scrap_id = $1 AND r.id > $2 AND r.status = $4
                          AND r.lease_until >= now())",
        &[
            (&scrap, Type::INT8),
            (&run, Type::INT8),
            (&SliceStatus::Failed.as_str(), Type::TEXT),
            (&RunStatus::Running.as_str(), Type::TEXT),
        ],
    )?
    .get(0))
}

/// What a run's end reads in one round trip: the scrap's slices and, for
/// a sync (`pair`: its client and route), the end of the pair's first
/// contiguous run of done days (`last_loaded_day`), else `None`.
pub fn scrap_end(
    c: &mut impl GenericClient,
    scrap: i64,
    pair: Option<(&str, &str)>,
) -> Result<(Vec<SliceInfo>, Option<Option<NaiveDate>>)> {
    let (client, route) = pair.unwrap_or_default();
    let rows = c.query_typed(
        concat!(
            "SELECT false, ",
            slice_columns!(),
            " FROM atlas.slices WHERE scrap_id = $1
             UNION ALL
             SELECT true, NULL, sl.slice_from, sl.slice_to, sl.status, NULL, NULL, NULL, NULL,
                    NULL, NULL, NULL, NULL, NULL
             FROM (",
            crate::pair_days_sql!("$3", "$4"),
            ") sl
             WHERE $2
             ORDER BY 1, 3, 4"
        ),
        &[
            (&scrap, Type::INT8),
            (&pair.is_some(), Type::BOOL),
            (&client, Type::TEXT),
            (&route, Type::TEXT),
        ],
    )?;
    let mut slices = Vec::new();
    let mut spans = Vec::new();
    for r in &rows {
        if r.get::<_, bool>(0) {
            let status: SliceStatus = status_of(r, 4)?;
            spans.push((r.get(2), r.get(3), status == SliceStatus::Done));
        } else {
            slices.push(slice_info(r, 1)?);
        }
    }
    Ok((slices, pair.map(|_| contiguous_done(&spans))))
}
