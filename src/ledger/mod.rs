//! The slice ledger in the `atlas` schema: scraps and their slices here;
//! runs (`runs`), claims and leases (`claims`), statuses (`status`) and the
//! identity of workers (`worker`) in their own files.
//! Claims use `FOR UPDATE SKIP LOCKED`, so any number of processes on any
//! machines can work one scrap, each slice by one at a time.

use crate::db;
use crate::exit::usage;
use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use postgres::types::Type;
use postgres::{Client, GenericClient};
use std::time::Duration;

pub mod decide;
mod ends;
pub mod loaded;
pub mod pairs;
pub mod rates;
mod status;
pub mod wave;

pub use ends::{retried_elsewhere, scrap_end, unsettled};
use status::status_of;
pub use status::{RunStatus, SliceStatus, STATUSES};
mod claims;
mod runs;
mod worker;

pub use claims::*;
pub use runs::*;
pub use worker::*;

#[derive(Debug, Clone)]
pub struct Scrap {
    pub id: i64,
    pub client: String,
    pub route: String,
    pub raw_table: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub slice_days: i32,
    pub created_at: DateTime<Utc>,
}

/// A scrap with its progress, for `scrap list` and the manager.
#[derive(Debug, Clone)]
pub struct ScrapStatus {
    pub scrap: Scrap,
    pub status: SliceStatus,
    pub slices: i64,
    pub done: i64,
    pub failed: i64,
    /// Rows its slices put in the raw table, over all their attempts.
    pub inserted: i64,
    /// Records its slices' last attempts found already in the table.
    pub duplicates: i64,
    pub last_run: Option<(DateTime<Utc>, RunStatus)>,
}

/// Which scraps [`list`] reads, and in what order.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter<'a> {
    pub client: Option<&'a str>,
    /// One of [`STATUSES`].
    pub status: Option<&'a str>,
    /// Only the newest this many, newest first; else all, oldest first.
    /// `status` filters what the limit kept.
    pub newest: Option<i64>,
    /// The worker listing (`worker_id`): runs of dead processes are closed
    /// (`abort_dead_runs`) before the scraps are read, so none is listed running.
    pub me: Option<&'a str>,
    /// Only this scrap ([`status_of_scrap`]).
    pub scrap: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct SliceInfo {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub status: SliceStatus,
    pub pages: i64,
    pub records: i64,
    pub inserted: i64,
    pub duplicates: i64,
    pub out_of_period: i64,
    pub undated: i64,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub worker: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: i64,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub records: i64,
    pub inserted: i64,
    pub duplicates: i64,
    pub slices_done: i32,
    pub slices_failed: i32,
}

/// A slice this worker holds.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub id: i64,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

const SCRAP_COLS: &str =
    "id, client, route, raw_table, period_from, period_to, slice_days, created_at";

fn scrap_of(r: &postgres::Row) -> Scrap {
    Scrap {
        id: r.get(0),
        client: r.get(1),
        route: r.get(2),
        raw_table: r.get(3),
        from: r.get(4),
        to: r.get(5),
        slice_days: r.get(6),
        created_at: r.get(7),
    }
}

/// When a missing raw table is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewTable {
    /// With the scrap.
    Now,
    /// By the run, after the scrap (`sync --all` fetches the first pages
    /// meanwhile).
    Later,
}

/// Creates the scrap and its slices (`plan`: the whole period cut in
/// `slice_days`, or a sync's slices of the days it needs), and the raw table when missing and
/// `Now` (an existing one is checked), in one transaction: a failure
/// leaves nothing behind. The scrap's id, and whether its table exists.
pub fn create_scrap(
    client: &mut Client,
    client_id: &str,
    route: &str,
    (table, new_table): (&str, NewTable),
    (from, to): (NaiveDate, NaiveDate),
    slice_days: u32,
    plan: &[(NaiveDate, NaiveDate)],
) -> Result<(i64, bool)> {
    let mut tx = client.transaction()?;
    let exists = db::ensure_raw_table(&mut tx, table, new_table == NewTable::Now)?;
    let froms: Vec<NaiveDate> = plan.iter().map(|p| p.0).collect();
    let tos: Vec<NaiveDate> = plan.iter().map(|p| p.1).collect();
    // The scrap and its slices in one statement (one round trip).
    let id: i64 = tx
        .query_typed_one(
            "WITH s AS (
                 INSERT INTO atlas.scraps (client, route, raw_table, period_from, period_to, slice_days)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id),
             sl AS (
                 INSERT INTO atlas.slices (scrap_id, slice_from, slice_to)
                 SELECT s.id, u.f, u.t
                 FROM s, unnest($7::date[], $8::date[]) WITH ORDINALITY AS u(f, t, n) ORDER BY u.n)
             SELECT id FROM s",
            &[
                (&client_id, Type::TEXT),
                (&route, Type::TEXT),
                (&table, Type::TEXT),
                (&from, Type::DATE),
                (&to, Type::DATE),
                (&(slice_days as i32), Type::INT4),
                (&froms, Type::DATE_ARRAY),
                (&tos, Type::DATE_ARRAY),
            ],
        )?
        .get(0);
    tx.commit()?;
    Ok((id, exists))
}

/// A scrap id from the command line: a positive integer that exists.
pub fn parse_id(s: &str) -> Result<i64> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| usage(format!("'{s}' is not a scrap id (a positive number)")))
}

pub fn get_scrap(c: &mut impl GenericClient, id: i64) -> Result<Scrap> {
    let row = c.query_typed_opt(
        &format!("SELECT {SCRAP_COLS} FROM atlas.scraps WHERE id = $1"),
        &[(&id, Type::INT8)],
    )?;
    row.map(|r| scrap_of(&r)).ok_or_else(|| {
        usage(format!(
            "scrap {id} does not exist (see `atlas scrap list`)"
        ))
    })
}

/// A scrap's status from its slice counts (`running` counts only slices
/// under a live lease: one whose lease expired is not running any more).
/// `done` counts the slices loaded whole, `open` ones included: a scrap
/// whose slices are all loaded is `open` while one of them is.
pub fn scrap_status(total: i64, done: i64, open: i64, failed: i64, running: i64) -> SliceStatus {
    if total > 0 && done == total {
        if open > 0 {
            SliceStatus::Open
        } else {
            SliceStatus::Done
        }
    } else if running > 0 {
        SliceStatus::Running
    } else if failed > 0 {
        SliceStatus::Failed
    } else {
        SliceStatus::Pending
    }
}

/// One scrap's status as `scrap list` shows it (`scrap show`, the
/// manager's Details): the same query, of that scrap only; `pending` for
/// a scrap that is not there.
pub fn status_of_scrap(c: &mut Client, id: i64) -> Result<SliceStatus> {
    let one = ListFilter {
        scrap: Some(id),
        ..Default::default()
    };
    Ok(list(c, one)?
        .first()
        .map_or(SliceStatus::Pending, |s| s.status))
}

/// The scraps with their progress, as `scrap list` shows them.
pub fn list(c: &mut Client, filter: ListFilter<'_>) -> Result<Vec<ScrapStatus>> {
    if let Some(me) = filter.me {
        abort_dead_runs(c, None, me)?;
    }
    // Two fixed orders; LIMIT NULL is no limit.
    let order = if filter.newest.is_some() {
        "s.id DESC"
    } else {
        "s.id"
    };
    let rows = c.query(
        &format!(
            "SELECT s.id, s.client, s.route, s.raw_table, s.period_from, s.period_to, s.slice_days, s.created_at,
                count(sl.id),
                count(sl.id) FILTER (WHERE sl.status IN ($2, $6)),
                count(sl.id) FILTER (WHERE sl.status = $3),
                count(sl.id) FILTER (WHERE sl.status = $4 AND sl.lease_until > now()),
                coalesce(sum(sl.inserted), 0)::bigint,
                coalesce(sum(sl.duplicates), 0)::bigint,
                r.started_at, r.status,
                count(sl.id) FILTER (WHERE sl.status = $6)
         FROM atlas.scraps s
         LEFT JOIN atlas.slices sl ON sl.scrap_id = s.id
         LEFT JOIN LATERAL (SELECT started_at, status FROM atlas.runs
                            WHERE scrap_id = s.id ORDER BY id DESC LIMIT 1) r ON true
         WHERE ($1::text IS NULL OR s.client = $1) AND ($7::bigint IS NULL OR s.id = $7)
         GROUP BY s.id, r.started_at, r.status
         ORDER BY {order}
         LIMIT $5"
        ),
        &[
            &filter.client,
            &SliceStatus::Done.as_str(),
            &SliceStatus::Failed.as_str(),
            &SliceStatus::Running.as_str(),
            &filter.newest,
            &SliceStatus::Open.as_str(),
            &filter.scrap,
        ],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let (slices, done, failed, running, open): (i64, i64, i64, i64, i64) =
            (r.get(8), r.get(9), r.get(10), r.get(11), r.get(16));
        let st = scrap_status(slices, done, open, failed, running);
        if filter.status.is_some_and(|s| s != st.as_str()) {
            continue;
        }
        let last_run = match r.get::<_, Option<DateTime<Utc>>>(14) {
            Some(t) => Some((t, status_of(&r, 15)?)),
            None => None,
        };
        out.push(ScrapStatus {
            scrap: scrap_of(&r),
            status: st,
            slices,
            done,
            failed,
            inserted: r.get(12),
            duplicates: r.get(13),
            last_run,
        });
    }
    Ok(out)
}

pub fn slices(c: &mut impl GenericClient, scrap: i64) -> Result<Vec<SliceInfo>> {
    let rows = c.query_typed(
        concat!(
            "SELECT ",
            slice_columns!(),
            " FROM atlas.slices WHERE scrap_id = $1 ORDER BY slice_from"
        ),
        &[(&scrap, Type::INT8)],
    )?;
    rows.iter().map(|r| slice_info(r, 0)).collect()
}

/// The columns [`slice_info`] reads.
macro_rules! slice_columns {
    () => {
        "id, slice_from, slice_to, status, pages, records, inserted, duplicates, out_of_period,
         undated, attempts, last_error, worker"
    };
}
use slice_columns;

/// A slice read as [`slice_columns`], from column `at` of `r`.
fn slice_info(r: &postgres::Row, at: usize) -> Result<SliceInfo> {
    Ok(SliceInfo {
        from: r.get(at + 1),
        to: r.get(at + 2),
        status: status_of(r, at + 3)?,
        pages: r.get(at + 4),
        records: r.get(at + 5),
        inserted: r.get(at + 6),
        duplicates: r.get(at + 7),
        out_of_period: r.get(at + 8),
        undated: r.get(at + 9),
        attempts: r.get(at + 10),
        last_error: r.get(at + 11),
        worker: r.get(at + 12),
    })
}

pub fn runs(c: &mut impl GenericClient, scrap: i64) -> Result<Vec<RunInfo>> {
    let rows = c.query(
        "SELECT id, worker, started_at, finished_at, status, records, inserted, duplicates, slices_done, slices_failed
         FROM atlas.runs WHERE scrap_id = $1 ORDER BY id",
        &[&scrap],
    )?;
    rows.iter()
        .map(|r| {
            Ok(RunInfo {
                id: r.get(0),
                worker: r.get(1),
                started_at: r.get(2),
                finished_at: r.get(3),
                status: status_of(r, 4)?,
                records: r.get(5),
                inserted: r.get(6),
                duplicates: r.get(7),
                slices_done: r.get(8),
                slices_failed: r.get(9),
            })
        })
        .collect()
}

/// Seconds of a lease, as PostgreSQL intervals take them.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Days fully loaded for (client, route): the last day before which every
/// slice of every scrap is done, scanning from the earliest done day (the
/// pair's days read around its known span, `pair_days_sql!`).
pub fn last_loaded_day(
    c: &mut impl GenericClient,
    client: &str,
    route: &str,
) -> Result<Option<NaiveDate>> {
    let rows = c.query_typed(
        concat!(
            "SELECT sl.slice_from, sl.slice_to, sl.status = $3 FROM (",
            crate::pair_days_sql!("$1", "$2"),
            ") sl ORDER BY 1, 2"
        ),
        &[
            (&client, Type::TEXT),
            (&route, Type::TEXT),
            (&SliceStatus::Done.as_str(), Type::TEXT),
        ],
    )?;
    let spans: Vec<(NaiveDate, NaiveDate, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    Ok(contiguous_done(&spans))
}

/// The end of the first contiguous run of done days (from the earliest done
/// day), where a day counts as done if any done slice covers it.
pub fn contiguous_done(spans: &[(NaiveDate, NaiveDate, bool)]) -> Option<NaiveDate> {
    let mut done: Vec<(NaiveDate, NaiveDate)> =
        spans.iter().filter(|s| s.2).map(|s| (s.0, s.1)).collect();
    done.sort();
    let mut end: Option<NaiveDate> = None;
    for (f, t) in done {
        match end {
            None => end = Some(t),
            Some(e) if f <= e.succ_opt().unwrap_or(e) => end = Some(e.max(t)),
            Some(_) => break,
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn contiguous_done_days() {
        let s = [
            (d("2025-01-01"), d("2025-01-01"), true),
            (d("2025-01-02"), d("2025-01-03"), true),
            (d("2025-01-04"), d("2025-01-04"), false),
            (d("2025-01-05"), d("2025-01-05"), true),
        ];
        assert_eq!(contiguous_done(&s), Some(d("2025-01-03")));
        assert_eq!(contiguous_done(&[]), None);
        // an overlapping later scrap that covers the gap extends the run
        let mut s2 = s.to_vec();
        s2.push((d("2025-01-03"), d("2025-01-06"), true));
        assert_eq!(contiguous_done(&s2), Some(d("2025-01-06")));
    }

    #[test]
    fn host_name_from_the_environment_first() {
        let env = |k: &str| match k {
            "HOSTNAME" => Some("box".to_string()),
            "COMPUTERNAME" => Some("PC".to_string()),
            _ => None,
        };
        assert_eq!(host_name(&env), "box");
        let windows = |k: &str| (k == "COMPUTERNAME").then(|| "PC".to_string());
        assert_eq!(host_name(&windows), "PC");
        assert!(!host_name(&|_| None).is_empty());
    }

    fn here() -> Locality {
        Locality {
            boot: "0123456789ab".into(),
            pidns: "4026531836".into(),
        }
    }

    #[test]
    fn worker_ids_carry_host_locality_and_pid() {
        let w = worker_id("maquina-01", &here(), 4242);
        let p = worker_parts(&w).unwrap();
        assert_eq!((p.host, p.pid, p.here), ("maquina-01", 4242, here()));
        assert_eq!(worker_parts("h:b:n:x:0001"), None);
        assert_eq!(worker_parts("h:4242:00ab"), None, "old format");
        assert_eq!(worker_parts("garbage"), None);
    }

    #[test]
    fn boot_id_and_pid_namespace_are_parsed() {
        assert_eq!(
            parse_boot_id("6f1c1c1e-9a0b-4c1d-8e2f-0123456789ab\n").as_deref(),
            Some("6f1c1c1e9a0b")
        );
        assert_eq!(parse_boot_id("short"), None);
        assert_eq!(
            parse_pid_ns("pid:[4026531836]").as_deref(),
            Some("4026531836")
        );
        assert_eq!(parse_pid_ns("net:[4026531836]"), None);
        assert_eq!(parse_pid_ns("pid:[]"), None);
        if cfg!(target_os = "linux") {
            assert!(Locality::current().known());
        }
    }

    #[test]
    fn only_a_local_worker_without_a_process_is_gone() {
        let h = here();
        let me = worker_id("maquina-01", &h, std::process::id());
        assert!(!worker_gone(&me, &me), "this process is alive");
        // u32::MAX is beyond any pid_max: never a live process.
        let dead = worker_id("maquina-01", &h, u32::MAX);
        assert_eq!(worker_gone(&me, &dead), cfg!(target_os = "linux"));
        assert!(
            !worker_gone(&me, &worker_id("outra", &h, u32::MAX)),
            "another machine"
        );
        let other_ns = Locality {
            pidns: "4026532000".into(),
            ..here()
        };
        assert!(
            !worker_gone(&me, &worker_id("maquina-01", &other_ns, u32::MAX)),
            "another PID namespace: its PIDs mean something else"
        );
        let other_boot = Locality {
            boot: "ffffffffffff".into(),
            ..here()
        };
        assert!(
            !worker_gone(&me, &worker_id("maquina-01", &other_boot, u32::MAX)),
            "another boot"
        );
        let unknown = Locality {
            boot: "-".into(),
            pidns: "-".into(),
        };
        let me_unknown = worker_id("maquina-01", &unknown, std::process::id());
        assert!(!worker_gone(
            &me_unknown,
            &worker_id("maquina-01", &unknown, u32::MAX)
        ));
        assert!(!worker_gone(&me, "garbage"));
    }

    #[test]
    fn slice_ends_leave_their_status() {
        assert_eq!(SliceEnd::Released.status(), SliceStatus::Pending);
        assert_eq!(SliceEnd::Done.status(), SliceStatus::Done);
        assert_eq!(SliceEnd::Failed.status(), SliceStatus::Failed);
    }

    #[test]
    fn a_scrap_status_adds_up_its_slices() {
        assert_eq!(scrap_status(3, 3, 0, 0, 0), SliceStatus::Done);
        assert_eq!(scrap_status(3, 3, 1, 0, 0), SliceStatus::Open);
        assert_eq!(scrap_status(3, 1, 0, 1, 1), SliceStatus::Running);
        assert_eq!(scrap_status(3, 1, 0, 1, 0), SliceStatus::Failed);
        assert_eq!(scrap_status(3, 0, 0, 0, 0), SliceStatus::Pending);
        assert_eq!(scrap_status(0, 0, 0, 0, 0), SliceStatus::Pending);
    }

    #[test]
    fn ids_are_positive_numbers() {
        assert_eq!(parse_id(" 12 ").unwrap(), 12);
        assert!(parse_id("0").is_err());
        assert!(parse_id("abc").is_err());
        assert!(parse_id("-3").is_err());
    }
}
