//! What the manager reads from PostgreSQL: the scraps (the ledger's
//! `scrap list`, newest first), the day strip of one scrap, and the
//! details `scrap show` prints. Read-only but for closing dead runs, as
//! `scrap show` does; every call is one short query, made once a second.

use crate::ledger::{self, ListFilter, RunInfo, Scrap, ScrapStatus, SliceInfo, SliceStatus};
use anyhow::Result;
use chrono::NaiveDate;
use postgres::Client;

/// At most this many scraps are listed: the newest are the ones watched.
const LIST_LIMIT: i64 = 500;

/// The scraps, newest first, as `scrap list` reads them.
pub fn scraps(c: &mut Client, me: &str) -> Result<Vec<ScrapStatus>> {
    ledger::list(
        c,
        ListFilter {
            newest: Some(LIST_LIMIT),
            me: Some(me),
            ..Default::default()
        },
    )
}

/// One slice of the day strip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DaySpan {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub status: SliceStatus,
}

/// The scrap's slices as the strip draws them; a running slice whose lease
/// has expired is pending again (the next run takes it over).
pub fn days(c: &mut Client, scrap: i64) -> Result<Vec<DaySpan>> {
    let rows = c.query(
        "SELECT slice_from, slice_to, status, status = $2 AND (lease_until IS NULL OR lease_until <= now())
         FROM atlas.slices WHERE scrap_id = $1 ORDER BY slice_from",
        &[&scrap, &SliceStatus::Running.as_str()],
    )?;
    rows.iter()
        .map(|r| {
            let stale: bool = r.get(3);
            let status = if stale {
                SliceStatus::Pending
            } else {
                r.get::<_, String>(2).parse()?
            };
            Ok(DaySpan {
                from: r.get(0),
                to: r.get(1),
                status,
            })
        })
        .collect()
}

/// What `scrap show` prints about one scrap.
#[derive(Debug, Clone)]
pub struct Details {
    pub scrap: Scrap,
    pub status: SliceStatus,
    pub runs: Vec<RunInfo>,
    pub slices: Vec<SliceInfo>,
}

/// The scrap, its runs and its slices; runs of processes known to be gone
/// are closed as aborted first, as `scrap show` does.
pub fn details(c: &mut Client, id: i64, me: &str) -> Result<Details> {
    let scrap = ledger::get_scrap(c, id)?;
    ledger::abort_dead_runs(c, Some(id), me)?;
    Ok(Details {
        status: ledger::status_of_scrap(c, id)?,
        runs: ledger::runs(c, id)?,
        slices: ledger::slices(c, id)?,
        scrap,
    })
}
