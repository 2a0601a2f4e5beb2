//! What `sync` and `sync --all` share for one (client, route) pair: the
//! pair's lock, the checks that must pass before anything is written, and
//! the decision under the lock (join the pair's unfinished scrap, else
//! create one holding only the days the pair needs, `coverage::need`).

use super::{day_flag, scrap, Context};
use crate::cli::SyncArgs;
use crate::config::{Client, Route, Settings};
use crate::coverage;
use crate::dates;
use crate::exit::{env_error, usage};
use crate::ledger::{self, NewTable, Scrap};
use anyhow::Result;
use chrono::NaiveDate;
use postgres::types::Type;
use serde_json::{json, Value};
use std::ops::DerefMut;

/// Days loaded again by default: APIs change recent records, and the hash
/// makes the overlap free.
pub const DEFAULT_LOOKBACK_DAYS: u32 = 1;

/// `--lookback-days`, or its default, within its range.
pub fn lookback_days(flag: Option<u32>) -> Result<u32> {
    crate::config::ranges::check(
        "--lookback-days",
        crate::config::ranges::LOOKBACK_DAYS,
        flag,
    )
    .map_err(|(k, why)| usage(format!("{k}: {why}")))?;
    Ok(flag.unwrap_or(DEFAULT_LOOKBACK_DAYS))
}

/// `--from` and `--until` as days, each when given.
pub fn period_flags(a: &SyncArgs) -> Result<(Option<NaiveDate>, Option<NaiveDate>)> {
    let from = a
        .from
        .as_deref()
        .map(|s| day_flag(s, "--from"))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| day_flag(s, "--until"))
        .transpose()?;
    Ok((from, until))
}

/// The last day a sync loads: `--until`, else yesterday in the route's zone.
pub fn until_of(flag: Option<NaiveDate>, route: &Route) -> Result<NaiveDate> {
    match flag {
        Some(d) => {
            super::not_after_today(d, route, "--until")?;
            Ok(d)
        }
        None => Ok(dates::today_in(route.timezone.as_ref()) - chrono::Duration::days(1)),
    }
}

/// What can refuse a run of the pair, checked before anything of it is
/// written: the client's credentials (an OAuth2 grant is asked for now).
/// The API's certificate and the raw table's structure are checked once
/// there is something to load, before the scrap is written
/// (`decide_locked`).
pub fn check_before_writes(ctx: &Context<'_>, client: &Client) -> Result<()> {
    ctx.auth(client)?.prepare()
}

/// The API's TLS certificate is trusted (or the API is not HTTPS): else
/// exit 3 with the reason, before a scrap or run of it is written.
pub fn trusted(ctx: &Context<'_>, client: &Client) -> Result<()> {
    if client.base_url.scheme() != "https" {
        return Ok(());
    }
    let agent = crate::http::agent_trusting(ctx.settings()?.timeout, &client.ca_certs);
    match crate::http::trust::refused(&agent, &client.base_url) {
        Some(why) => Err(env_error(why)),
        None => Ok(()),
    }
}

/// What the decision under the pair's lock came to.
pub enum Step {
    /// Run the scrap `id`; `joined`: its run is resumed (another sync
    /// created it); whether its raw table is known to exist; the days the
    /// range skipped as already loaded (a new scrap only); a new scrap and
    /// its number of slices, all pending (nothing of it to read back); the
    /// lookback's days fetched again (`coverage::Need::refetch`).
    Run {
        id: i64,
        joined: bool,
        table_exists: bool,
        skipped: Option<i64>,
        fresh: Option<(Scrap, u64)>,
        refetch: Option<(NaiveDate, NaiveDate)>,
    },
    /// Every day is loaded: up to the day given.
    UpToDate(Option<NaiveDate>),
}

/// How a sync loads the pair: its bounds and the lookback.
pub struct Plan {
    pub from: Option<NaiveDate>,
    pub until: NaiveDate,
    pub lookback: u32,
}

/// Under the pair's lock: its unfinished scrap (pending, running or failed
/// slices) if there is one, else a scrap of the days it needs (every scrap
/// of the pair counted), created and recorded; or nothing to do. With
/// `NewTable::Later` the scrap is one statement and its table is made by
/// the run; with `Now`, the table is made with the scrap.
pub fn decide_locked<C: DerefMut<Target = postgres::Client>>(
    ctx: &Context<'_>,
    lock: &mut SyncLock<C>,
    client: &Client,
    route: &Route,
    plan: &Plan,
    new_table: NewTable,
) -> Result<Step> {
    let cfg = ctx.config()?;
    let table = raw_table(client, route)?;
    let state = ledger::decide::pair_state(&mut *lock.conn, &client.id, &route.name, &table)?;
    let need = match judge(ctx, client, route, plan, &state)? {
        Judged::Step(step) => return Ok(step),
        Judged::New(need) => need,
    };
    let (id, table_exists, fresh) = match new_table {
        NewTable::Now => {
            let created = scrap::create_scrap_with(
                &mut lock.conn,
                cfg,
                &client.id,
                &route.name,
                (need.from, need.to),
                &need.slices,
                new_table,
            )?;
            lock.record_scrap(created.id, state.known())?;
            (created.id, created.table_exists, None)
        }
        NewTable::Later => {
            // Read with the pair's state: judged now there is something to load.
            let table_exists = state.table.verdict(&table)?;
            let scrap = ledger::decide::create_sync_scrap(
                &mut *lock.conn,
                lock.pair,
                (&client.id, &route.name, &table),
                (need.from, need.to),
                route.slice_days,
                &need.slices,
                state.known(),
            )?;
            let n = need.slices.len() as u64;
            (scrap.id, table_exists, Some((scrap, n)))
        }
    };
    Ok(Step::Run {
        id,
        joined: false,
        table_exists,
        skipped: Some(need.skipped),
        fresh,
        refetch: need.refetch,
    })
}

/// What the pair's state (read under its lock) says to do.
pub enum Judged {
    /// Join its unfinished scrap, or nothing to do.
    Step(Step),
    /// A new scrap of these days.
    New(coverage::Need),
}

/// The decision under the pair's lock from its state (`decide_locked`,
/// and the fleet's waves): its unfinished scrap joined, nothing to do, or
/// the days it needs, once the API's certificate is trusted.
pub fn judge(
    ctx: &Context<'_>,
    client: &Client,
    route: &Route,
    plan: &Plan,
    state: &ledger::decide::PairState,
) -> Result<Judged> {
    if let Some(id) = state.in_progress {
        return Ok(Judged::Step(Step::Run {
            id,
            joined: true,
            table_exists: false,
            skipped: None,
            fresh: None,
            refetch: None,
        }));
    }
    let need = coverage::need(
        &state.done(),
        plan.from,
        route.start_date,
        plan.until,
        plan.lookback,
        route.slice_days,
    )
    .map_err(usage)?;
    let Some(need) = need else {
        return Ok(Judged::Step(Step::UpToDate(state.loaded_until())));
    };
    trusted(ctx, client)?;
    Ok(Judged::New(need))
}

/// The pair's raw table name (a usage error if it cannot be made).
pub fn raw_table(client: &Client, route: &Route) -> Result<String> {
    crate::ident::raw_table(
        &crate::ident::sanitize(&client.id).map_err(usage)?,
        &crate::ident::sanitize(&route.name).map_err(usage)?,
    )
    .map_err(usage)
}

/// The `--json` object of a sync that ran nothing: every key of the
/// summary (null or 0 where nothing ran), `fields` over them.
pub fn idle_summary(
    (client, route): (&str, &str),
    table: &str,
    settings: &Settings,
    fields: Value,
) -> Value {
    let mut out = json!({
        "scrap_id": null,
        "run_id": null,
        "client": client,
        "route": route,
        "table": table,
        "from": null,
        "to": null,
        "status": null,
        "records_fetched": 0,
        "inserted": 0,
        "duplicates": 0,
        "out_of_period": 0,
        "undated": 0,
        "sanitised": 0,
        "pages": 0,
        "slices_done": 0,
        "slices_failed": 0,
        "slices_total": 0,
        "slices_open": 0,
        "slices_done_by_run": 0,
        "slices_done_elsewhere": 0,
        "retries": 0,
        "http_requests": crate::requests::Requests::default(),
        "http_429": 0,
        "elapsed_secs": 0.0,
        "records_per_sec": 0.0,
        "exit_code": 0,
        "version": crate::version::version(),
        "settings": settings,
        "loaded_until": null,
        "days_skipped": 0,
    });
    if let (Some(o), Some(f)) = (out.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}

/// The per-(client, route) sync lock: a session advisory lock on
/// (`ledger::decide::SYNC_LOCK_CLASS`, pair id), collision-free since ids
/// are unique, released explicitly on every way out (a closed session
/// releases it too, but only once the server notices, which may be after
/// the next sync has started).
/// The lock holds its connection: a boxed client of its own (`sync`), or
/// one from the fleet's pool, given back unlocked.
pub struct SyncLock<C: DerefMut<Target = postgres::Client>> {
    pub conn: C,
    pair: i32,
}

impl<C: DerefMut<Target = postgres::Client>> SyncLock<C> {
    /// The pair's lock, taken with its registry row in one round trip; `None`
    /// when another process holds it.
    pub fn try_take(mut conn: C, client: &str, route: &str) -> Result<Option<SyncLock<C>>> {
        Ok(
            match ledger::decide::take_pair(&mut *conn, client, route)? {
                Some((pair, true)) => Some(SyncLock { conn, pair }),
                _ => None,
            },
        )
    }

    /// Records the scrap this pair's sync is loading, for other syncs to join.
    pub fn record_scrap(
        &mut self,
        scrap: i64,
        known: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<()> {
        self.conn.execute_typed(
            "UPDATE atlas.sync_pairs SET scrap_id = $1, loaded_from = coalesce($3, loaded_from),
                    loaded_to = coalesce($4, loaded_to)
             WHERE id = $2",
            &[
                (&scrap, Type::INT8),
                (&self.pair, Type::INT4),
                (&known.map(|k| k.0), Type::DATE),
                (&known.map(|k| k.1), Type::DATE),
            ],
        )?;
        Ok(())
    }
}

impl<C: DerefMut<Target = postgres::Client>> Drop for SyncLock<C> {
    fn drop(&mut self) {
        let _ = self.conn.execute_typed(
            "SELECT pg_advisory_unlock($1, $2)",
            &[
                (&ledger::decide::SYNC_LOCK_CLASS, Type::INT4),
                (&self.pair, Type::INT4),
            ],
        );
    }
}
