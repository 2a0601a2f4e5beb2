//! The slice ledger: scraps, runs, and slice claims with leases, all in the
//! `atlas` schema; their statuses (`status`) and the identity of workers.
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
pub mod pairs;
pub mod rates;
mod status;

pub use ends::{retried_elsewhere, unsettled};
use status::status_of;
pub use status::{RunStatus, SliceStatus, STATUSES};

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
    let id: i64 = tx
        .query_typed_one(
            "INSERT INTO atlas.scraps (client, route, raw_table, period_from, period_to, slice_days)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                (&client_id, Type::TEXT),
                (&route, Type::TEXT),
                (&table, Type::TEXT),
                (&from, Type::DATE),
                (&to, Type::DATE),
                (&(slice_days as i32), Type::INT4),
            ],
        )?
        .get(0);
    let froms: Vec<NaiveDate> = plan.iter().map(|p| p.0).collect();
    let tos: Vec<NaiveDate> = plan.iter().map(|p| p.1).collect();
    tx.execute_typed(
        "INSERT INTO atlas.slices (scrap_id, slice_from, slice_to)
         SELECT $1, f, t FROM unnest($2::date[], $3::date[]) AS u(f, t)",
        &[
            (&id, Type::INT8),
            (&froms, Type::DATE_ARRAY),
            (&tos, Type::DATE_ARRAY),
        ],
    )?;
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
         WHERE ($1::text IS NULL OR s.client = $1)
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
        "SELECT id, slice_from, slice_to, status, pages, records, inserted, duplicates, out_of_period,
                undated, attempts, last_error, worker
         FROM atlas.slices WHERE scrap_id = $1 ORDER BY slice_from",
        &[(&scrap, Type::INT8)],
    )?;
    rows.iter()
        .map(|r| {
            Ok(SliceInfo {
                from: r.get(1),
                to: r.get(2),
                status: status_of(r, 3)?,
                pages: r.get(4),
                records: r.get(5),
                inserted: r.get(6),
                duplicates: r.get(7),
                out_of_period: r.get(8),
                undated: r.get(9),
                attempts: r.get(10),
                last_error: r.get(11),
                worker: r.get(12),
            })
        })
        .collect()
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

/// Records a run started by `worker` (and the build it runs), under a
/// lease of its own that the run's heartbeat renews ([`renew_run`]). Also returns how many pages the
/// pair's most recently done slice had (of its last three scraps with the
/// same `slice_days`; 0 when none): the run's first guess of a slice's size.
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
                     SELECT o.id FROM atlas.scraps o JOIN atlas.scraps me
                       ON me.id = $1 AND o.client = me.client AND o.route = me.route
                          AND o.slice_days = me.slice_days
                     ORDER BY o.id DESC LIMIT 3)
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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

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

/// This machine's name, for worker ids: `HOSTNAME`, `COMPUTERNAME` (Windows),
/// `/etc/hostname`, else `host`. `env` looks up environment variables.
pub fn host_name(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("HOSTNAME")
        .or_else(|| env("COMPUTERNAME"))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Where a process lives, beyond its host name: the kernel boot and the PID
/// namespace. Two containers may share a host name while their PIDs mean
/// different things; a PID is only checked where both match ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    /// The boot id, dashes removed, first 12 hex digits; `-` when unknown.
    pub boot: String,
    /// The PID namespace's inode; `-` when unknown.
    pub pidns: String,
}

impl Locality {
    /// This process's locality (Linux `/proc`; `-` elsewhere).
    pub fn current() -> Locality {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .and_then(|s| parse_boot_id(&s));
        let pidns = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|p| parse_pid_ns(&p.to_string_lossy()));
        Locality {
            boot: boot.unwrap_or_else(|| "-".into()),
            pidns: pidns.unwrap_or_else(|| "-".into()),
        }
    }

    /// Whether both parts are known.
    fn known(&self) -> bool {
        self.boot != "-" && self.pidns != "-"
    }
}

/// The first 12 hex digits of a boot id (`/proc/sys/kernel/random/boot_id`).
pub fn parse_boot_id(s: &str) -> Option<String> {
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    (hex.len() >= 12 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex[..12].to_ascii_lowercase())
}

/// The inode of a PID namespace link (`pid:[4026531836]`).
pub fn parse_pid_ns(link: &str) -> Option<String> {
    let inode = link.trim().strip_prefix("pid:[")?.strip_suffix(']')?;
    (!inode.is_empty() && inode.chars().all(|c| c.is_ascii_digit())).then(|| inode.to_string())
}

/// A worker id: `host:boot:pidns:pid:nonce`.
pub fn worker_id(host: &str, here: &Locality, pid: u32) -> String {
    format!(
        "{host}:{}:{}:{pid}:{:04x}",
        here.boot,
        here.pidns,
        fastrand::u16(..)
    )
}

/// A worker id taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct WorkerParts<'a> {
    pub host: &'a str,
    pub here: Locality,
    pub pid: u32,
}

/// The parts of a worker id; `None` for other formats (older ids included).
pub fn worker_parts(worker: &str) -> Option<WorkerParts<'_>> {
    let mut parts = worker.rsplitn(5, ':');
    let nonce = parts.next()?;
    if nonce.len() != 4 || !nonce.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let pid = parts.next()?.parse().ok()?;
    let pidns = parts.next()?.to_string();
    let boot = parts.next()?.to_string();
    let host = parts.next()?;
    Some(WorkerParts {
        host,
        here: Locality { boot, pidns },
        pid,
    })
}

/// Whether `other` is known to be gone: a worker of the same host, boot and
/// PID namespace as `me` whose process no longer exists. Only where liveness
/// can be known (Linux `/proc`, locality known); elsewhere the lease decides.
pub fn worker_gone(me: &str, other: &str) -> bool {
    match (worker_parts(me), worker_parts(other)) {
        (Some(a), Some(b)) => {
            a.host == b.host
                && a.here == b.here
                && a.here.known()
                && process_alive(b.pid) == Some(false)
        }
        _ => false,
    }
}

/// Whether a process of this machine is alive, when that can be known.
fn process_alive(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") {
        Some(std::path::Path::new(&format!("/proc/{pid}")).exists())
    } else {
        None
    }
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

/// Records the end of a slice attempt, if this worker still holds it.
pub fn finish_slice(
    c: &mut impl GenericClient,
    slice: i64,
    worker: &str,
    end: SliceEnd,
    n: &SliceCounts,
    error: Option<&str>,
) -> Result<bool> {
    let done = end.loaded();
    let changed = c.execute_typed(
        "UPDATE atlas.slices SET status = $3, pages = $4, records = $5, out_of_period = $6, undated = $7,
                last_error = CASE WHEN $9 THEN NULL ELSE coalesce($8, last_error) END,
                worker = NULL, lease_until = NULL,
                done_at = CASE WHEN $9 THEN now() ELSE NULL END
         WHERE id = $1 AND worker = $2 AND status = $10",
        &[
            (&slice, Type::INT8),
            (&worker, Type::TEXT),
            (&end.status().as_str(), Type::TEXT),
            (&n.pages, Type::INT8),
            (&n.records, Type::INT8),
            (&n.out_of_period, Type::INT8),
            (&n.undated, Type::INT8),
            (&error, Type::TEXT),
            (&done, Type::BOOL),
            (&SliceStatus::Running.as_str(), Type::TEXT),
        ],
    )?;
    Ok(changed == 1)
}

/// The end of one slice attempt, for [`finish_slices`].
#[derive(Debug, Clone)]
pub struct SliceFinish<'a> {
    pub slice: i64,
    pub end: SliceEnd,
    pub counts: &'a SliceCounts,
    pub error: Option<&'a str>,
}

/// Records the ends of several slice attempts in one statement (one commit:
/// many small slices end at a lower cost), each only if this worker still
/// holds it, as [`finish_slice`] does. Returns, per entry, whether it was
/// recorded.
pub fn finish_slices(
    c: &mut impl GenericClient,
    worker: &str,
    ends: &[SliceFinish<'_>],
) -> Result<Vec<bool>> {
    if let [one] = ends {
        return Ok(vec![finish_slice(
            c, one.slice, worker, one.end, one.counts, one.error,
        )?]);
    }
    let col = |f: &dyn Fn(&SliceFinish<'_>) -> i64| ends.iter().map(f).collect::<Vec<i64>>();
    let ids = col(&|e| e.slice);
    let status: Vec<&str> = ends.iter().map(|e| e.end.status().as_str()).collect();
    let done: Vec<bool> = ends.iter().map(|e| e.end.loaded()).collect();
    let errors: Vec<Option<&str>> = ends.iter().map(|e| e.error).collect();
    let rows = c.query_typed(
        "UPDATE atlas.slices s SET status = u.status, pages = u.pages, records = u.records,
                out_of_period = u.oop, undated = u.undated,
                last_error = CASE WHEN u.done THEN NULL ELSE coalesce(u.err, s.last_error) END,
                worker = NULL, lease_until = NULL,
                done_at = CASE WHEN u.done THEN now() ELSE NULL END
         FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $7::text[], $8::bool[])
              AS u(id, status, pages, records, oop, undated, err, done)
         WHERE s.id = u.id AND s.worker = $9 AND s.status = $10
         RETURNING s.id",
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

/// Days fully loaded for (client, route): the last day before which every
/// slice of every scrap is done, scanning from the earliest done day.
pub fn last_loaded_day(
    c: &mut impl GenericClient,
    client: &str,
    route: &str,
) -> Result<Option<NaiveDate>> {
    let rows = c.query_typed(
        "SELECT sl.slice_from, sl.slice_to, sl.status = $3
         FROM atlas.slices sl JOIN atlas.scraps s ON s.id = sl.scrap_id
         WHERE s.client = $1 AND s.route = $2
         ORDER BY sl.slice_from, sl.slice_to",
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
