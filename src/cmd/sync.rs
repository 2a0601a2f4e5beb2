//! `atlas sync`: the command a scheduler runs every day (SPEC §2). It finds
//! the last day fully loaded for (client, route) in the slice ledger and
//! creates and runs a scrap from the day after it, minus the lookback, to
//! `--until` (default: yesterday in the route's time zone).
//!
//! One sync per (client, route) at a time: a session advisory lock on the
//! pair's registry id (`atlas.sync_pairs`, so no two pairs share a lock) is
//! held for the whole sync; a second sync finds it taken and exits 0 saying
//! so. Flags, settings and secrets are resolved before anything is written.

use super::{day_flag, scrap, Context};
use crate::cli::SyncArgs;
use crate::config::Settings;
use crate::dates;
use crate::db;
use crate::exit::{usage, Exit};
use crate::ident;
use crate::ledger;
use crate::report::{Feed, Summary, Watch};
use anyhow::Result;
use chrono::{Duration, NaiveDate};
use crossbeam::channel::Sender;
use postgres::types::{ToSql, Type};
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

/// The period a sync loads, or `None` when there is nothing new.
pub fn period(
    last_loaded: Option<NaiveDate>,
    from: Option<NaiveDate>,
    start_date: Option<NaiveDate>,
    until: NaiveDate,
    lookback: u32,
) -> Result<Option<(NaiveDate, NaiveDate)>> {
    let start = match last_loaded {
        // Nothing new: the lookback alone is not a reason to run.
        Some(last) if last >= until => return Ok(None),
        Some(last) => last + Duration::days(1) - Duration::days(i64::from(lookback)),
        None => from.or(start_date).ok_or_else(|| {
            usage("nothing was loaded yet for this client and route: give --from YYYY-MM-DD (or set the route's start_date)")
        })?,
    };
    // With history, never reach back before an explicit --from.
    let start = match (last_loaded, from) {
        (Some(_), Some(f)) => start.max(f),
        _ => start,
    };
    Ok((start <= until).then_some((start, until)))
}

/// How a sync ended.
pub enum Synced {
    /// A scrap was created and run.
    Ran { exit: Exit, summary: Box<Summary> },
    /// Nothing ran (another sync holds the pair, or nothing is new): the
    /// notice, and the `--json` fields that say why.
    Nothing {
        emoji: &'static str,
        notice: String,
        fields: Value,
        table: String,
    },
}

pub fn run(ctx: &Context<'_>, a: &SyncArgs) -> Result<Exit> {
    if a.all {
        return super::fleet::run(ctx, a);
    }
    match execute(ctx, a, None)? {
        Synced::Ran { exit, summary } => {
            scrap::emit(&summary, ctx.style, a.json);
            let object = serde_json::to_value(&*summary)?;
            super::alert::after_run(ctx, &object, std::slice::from_ref(&object));
            Ok(exit)
        }
        Synced::Nothing {
            emoji,
            notice,
            fields,
            table,
        } => Ok(nothing_to_do(
            ctx,
            one_pair(a)?,
            a.json,
            &table,
            ctx.settings()?,
            emoji,
            &notice,
            fields,
        )),
    }
}

/// The sync itself: its lines on stderr, or to `sink` (the manager); the
/// summary is returned, not printed.
pub fn execute(ctx: &Context<'_>, a: &SyncArgs, sink: Option<&Sender<Watch>>) -> Result<Synced> {
    let (client_id, route_name) = one_pair(a)?;
    // Everything that can be refused is resolved before anything is
    // written: exit 2 leaves no scrap, slice, run or table behind.
    let cfg = ctx.config()?;
    let (client, route) = cfg.route(client_id, route_name)?;
    let from = a
        .from
        .as_deref()
        .map(|s| day_flag(s, "--from"))
        .transpose()?;
    let until = match a.until.as_deref() {
        Some(s) => day_flag(s, "--until")?,
        None => dates::today_in(route.timezone.as_ref()) - Duration::days(1),
    };
    if let Some(f) = from.filter(|f| *f > until) {
        return Err(usage(format!("--from {f} is after --until {until}")));
    }
    let table = ident::raw_table(
        &ident::sanitize(&client.id).map_err(usage)?,
        &ident::sanitize(&route.name).map_err(usage)?,
    )
    .map_err(usage)?;
    let lookback = lookback_days(a.lookback_days)?;
    ctx.settings()?;
    ctx.auth(client)?;
    ctx.secrets(route)?;

    let mut conn = ctx.database()?.connect()?;
    db::require_schema(&mut conn)?;
    let Some(mut lock) = SyncLock::try_take(Box::new(conn), client_id, route_name)? else {
        let notice = format!(
            "Outra sincronização de {client_id} / {route_name} está em andamento: nada a fazer"
        );
        let fields = json!({"status": "busy", "loaded_until": null});
        return Ok(Synced::Nothing {
            emoji: "⏳",
            notice,
            fields,
            table,
        });
    };
    let last = ledger::last_loaded_day(&mut *lock.conn, client_id, route_name)?;
    let Some((start, end)) = period(last, from, route.start_date, until, lookback)? else {
        let notice = format!(
            "Nada novo para {client_id} / {route_name}: carregado até {}",
            last.map(|d| d.to_string())
                .unwrap_or_else(|| "(nada)".into())
        );
        let fields = json!({"status": "up_to_date", "loaded_until": last});
        return Ok(Synced::Nothing {
            emoji: "✅",
            notice,
            fields,
            table,
        });
    };
    let id = scrap::create_scrap(ctx, cfg, client_id, route_name, start, end)?.id;
    // `sync --all` processes join the scrap instead of deciding another.
    lock.record_scrap(id)?;
    let feed = Feed {
        style: ctx.style,
        sink,
    };
    feed.note(
        "🔄",
        &format!("Sincronizando {client_id} / {route_name}: scrap {id}, {start} até {end}"),
    );
    let (exit, summary) = scrap::execute(ctx, id, true, sink)?;
    Ok(Synced::Ran {
        exit,
        summary: Box::new(summary),
    })
}

/// Ends a sync that runs nothing: the notice, and with `--json` one object
/// with every key of the summary (null or 0 where nothing ran), `fields`
/// (status, loaded_until) over them, exit code 0.
#[allow(clippy::too_many_arguments)]
fn nothing_to_do(
    ctx: &Context<'_>,
    pair: (&str, &str),
    json: bool,
    table: &str,
    settings: &Settings,
    emoji: &str,
    notice: &str,
    fields: Value,
) -> Exit {
    ctx.style.note(emoji, notice);
    let object = idle_summary(pair, table, settings, fields);
    if json {
        crate::outln!("{object}");
    }
    super::alert::after_run(ctx, &object, std::slice::from_ref(&object));
    Exit::Ok
}

/// The one (client, route) of a sync without `--all`.
fn one_pair(a: &SyncArgs) -> Result<(&str, &str)> {
    match (a.client.as_slice(), a.route.as_slice()) {
        ([c], [r]) => Ok((c.as_str(), r.as_str())),
        _ => Err(usage(
            "sync needs one --client C and one --route R, or --all (with any --client and --route filters)",
        )),
    }
}

/// The `--json` object of a sync that ran nothing: every key of the
/// summary (null or 0 where nothing ran), `fields` over them.
pub(super) fn idle_summary(
    (client, route): (&str, &str),
    table: &str,
    settings: &Settings,
    fields: Value,
) -> Value {
    {
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
            "retries": 0,
            "http_requests": crate::requests::Requests::default(),
            "http_429": 0,
            "elapsed_secs": 0.0,
            "records_per_sec": 0.0,
            "exit_code": 0,
            "version": crate::version::version(),
            "settings": settings,
            "loaded_until": null,
        });
        if let (Some(o), Some(f)) = (out.as_object_mut(), fields.as_object()) {
            for (k, v) in f {
                o.insert(k.clone(), v.clone());
            }
        }
        out
    }
}

/// First key of the two-key advisory lock of `atlas sync` (the second is
/// the pair's id in `atlas.sync_pairs`): a class of its own, so no other
/// advisory lock (`atlas init` takes the one-key form) can meet it.
const SYNC_LOCK_CLASS: i32 = 0x6174_6c73; // "atls"

/// The per-(client, route) sync lock: a session advisory lock on
/// (`SYNC_LOCK_CLASS`, pair id), collision-free since ids are unique,
/// released explicitly on every way out (a closed session releases it too,
/// but only once the server notices, which may be after the next sync has
/// started).
/// The lock holds its connection: a boxed client of its own (`sync`), or
/// one from the fleet's pool, given back unlocked.
pub(super) struct SyncLock<C: DerefMut<Target = postgres::Client>> {
    pub(super) conn: C,
    pair: i32,
}

impl<C: DerefMut<Target = postgres::Client>> SyncLock<C> {
    pub(super) fn try_take(mut conn: C, client: &str, route: &str) -> Result<Option<SyncLock<C>>> {
        let names: [(&(dyn ToSql + Sync), Type); 2] = [(&client, Type::TEXT), (&route, Type::TEXT)];
        conn.execute_typed(
            "INSERT INTO atlas.sync_pairs (client, route) VALUES ($1, $2)
             ON CONFLICT (client, route) DO NOTHING",
            &names,
        )?;
        let pair: i32 = conn
            .query_typed_one(
                "SELECT id FROM atlas.sync_pairs WHERE client = $1 AND route = $2",
                &names,
            )?
            .get(0);
        let got: bool = conn
            .query_typed_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[(&SYNC_LOCK_CLASS, Type::INT4), (&pair, Type::INT4)],
            )?
            .get(0);
        Ok(got.then_some(SyncLock { conn, pair }))
    }

    /// Records the scrap this pair's sync is loading, for `sync --all`
    /// processes to join.
    pub(super) fn record_scrap(&mut self, scrap: i64) -> Result<()> {
        self.conn.execute_typed(
            "UPDATE atlas.sync_pairs SET scrap_id = $1 WHERE id = $2",
            &[(&scrap, Type::INT8), (&self.pair, Type::INT4)],
        )?;
        Ok(())
    }
}

impl<C: DerefMut<Target = postgres::Client>> Drop for SyncLock<C> {
    fn drop(&mut self) {
        let _ = self.conn.execute_typed(
            "SELECT pg_advisory_unlock($1, $2)",
            &[(&SYNC_LOCK_CLASS, Type::INT4), (&self.pair, Type::INT4)],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn first_sync_needs_a_start() {
        assert!(period(None, None, None, d("2025-01-10"), 1).is_err());
        assert_eq!(
            period(None, Some(d("2025-01-01")), None, d("2025-01-10"), 1).unwrap(),
            Some((d("2025-01-01"), d("2025-01-10")))
        );
        assert_eq!(
            period(None, None, Some(d("2025-01-05")), d("2025-01-10"), 1).unwrap(),
            Some((d("2025-01-05"), d("2025-01-10")))
        );
    }

    #[test]
    fn later_syncs_start_after_the_last_day_minus_lookback() {
        let last = Some(d("2025-01-10"));
        assert_eq!(
            period(last, None, None, d("2025-01-15"), 1).unwrap(),
            Some((d("2025-01-10"), d("2025-01-15")))
        );
        assert_eq!(
            period(last, None, None, d("2025-01-15"), 0).unwrap(),
            Some((d("2025-01-11"), d("2025-01-15")))
        );
        assert_eq!(
            period(last, None, None, d("2025-01-15"), 3).unwrap(),
            Some((d("2025-01-08"), d("2025-01-15")))
        );
        // Nothing new: the last day is loaded; the lookback alone does not run.
        assert_eq!(period(last, None, None, d("2025-01-10"), 0).unwrap(), None);
        assert_eq!(period(last, None, None, d("2025-01-10"), 2).unwrap(), None);
        assert_eq!(period(last, None, None, d("2025-01-09"), 2).unwrap(), None);
        // --from bounds the lookback.
        assert_eq!(
            period(last, Some(d("2025-01-10")), None, d("2025-01-15"), 5).unwrap(),
            Some((d("2025-01-10"), d("2025-01-15")))
        );
    }
}
