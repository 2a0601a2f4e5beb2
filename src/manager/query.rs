//! What the manager reads from PostgreSQL: the scraps table (newest first,
//! with slice counts and last run), the day strip of one scrap, and the
//! details `scrap show` prints. Read-only but for closing dead runs, as
//! `scrap show` does; every call is one short query, made once a second.

use crate::ledger::{self, RunInfo, Scrap, SliceInfo, SliceStatus};
use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use postgres::Client;

/// At most this many scraps are listed: the newest are the ones watched.
const LIST_LIMIT: i64 = 500;

/// One line of the Scraps table.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapRow {
    pub id: i64,
    pub client: String,
    pub route: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub status: SliceStatus,
    pub done: i64,
    pub failed: i64,
    pub total: i64,
    /// Rows the scrap's runs put in its raw table.
    pub rows: i64,
    /// Start and status of its last run.
    pub last_run: Option<(DateTime<Utc>, String)>,
}

/// A scrap's status from its slice counts, in `scrap list`'s words: a
/// slice whose lease has expired is not running any more.
pub fn status_of(total: i64, done: i64, failed: i64, running: i64) -> SliceStatus {
    if total > 0 && done == total {
        SliceStatus::Done
    } else if running > 0 {
        SliceStatus::Running
    } else if failed > 0 {
        SliceStatus::Failed
    } else {
        SliceStatus::Pending
    }
}

/// The scraps, newest first.
pub fn scraps(c: &mut Client) -> Result<Vec<ScrapRow>> {
    let rows = c.query(
        "SELECT s.id, s.client, s.route, s.period_from, s.period_to,
                count(sl.id),
                count(sl.id) FILTER (WHERE sl.status = $1),
                count(sl.id) FILTER (WHERE sl.status = $2),
                count(sl.id) FILTER (WHERE sl.status = $3 AND sl.lease_until > now()),
                coalesce(sum(sl.inserted), 0)::bigint,
                r.started_at, r.status
         FROM atlas.scraps s
         LEFT JOIN atlas.slices sl ON sl.scrap_id = s.id
         LEFT JOIN LATERAL (SELECT started_at, status FROM atlas.runs
                            WHERE scrap_id = s.id ORDER BY id DESC LIMIT 1) r ON true
         GROUP BY s.id, r.started_at, r.status
         ORDER BY s.id DESC
         LIMIT $4",
        &[
            &SliceStatus::Done.as_str(),
            &SliceStatus::Failed.as_str(),
            &SliceStatus::Running.as_str(),
            &LIST_LIMIT,
        ],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let (total, done, failed, running): (i64, i64, i64, i64) =
                (r.get(5), r.get(6), r.get(7), r.get(8));
            let started: Option<DateTime<Utc>> = r.get(10);
            ScrapRow {
                id: r.get(0),
                client: r.get(1),
                route: r.get(2),
                from: r.get(3),
                to: r.get(4),
                status: status_of(total, done, failed, running),
                done,
                failed,
                total,
                rows: r.get(9),
                last_run: started.map(|t| (t, r.get(11))),
            }
        })
        .collect())
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
    ledger::abort_dead_runs(c, id, me)?;
    let slices = ledger::slices(c, id)?;
    let running = days(c, id)?
        .iter()
        .filter(|d| d.status == SliceStatus::Running)
        .count() as i64;
    let count = |st| slices.iter().filter(|s| s.status == st).count() as i64;
    let status = status_of(
        slices.len() as i64,
        count(SliceStatus::Done),
        count(SliceStatus::Failed),
        running,
    );
    Ok(Details {
        runs: ledger::runs(c, id)?,
        scrap,
        status,
        slices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_like_scrap_list() {
        assert_eq!(status_of(3, 3, 0, 0), SliceStatus::Done);
        assert_eq!(status_of(3, 1, 1, 1), SliceStatus::Running);
        assert_eq!(status_of(3, 1, 1, 0), SliceStatus::Failed);
        assert_eq!(status_of(3, 0, 0, 0), SliceStatus::Pending);
        assert_eq!(status_of(0, 0, 0, 0), SliceStatus::Pending);
    }
}
