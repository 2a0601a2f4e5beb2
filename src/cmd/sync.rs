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
use anyhow::Result;
use chrono::{Duration, NaiveDate};
use serde_json::{json, Value};

/// Days loaded again by default: APIs change recent records, and the hash
/// makes the overlap free.
pub const DEFAULT_LOOKBACK_DAYS: u32 = 1;

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

pub fn run(ctx: &Context<'_>, a: &SyncArgs) -> Result<Exit> {
    // Everything that can be refused is resolved before anything is
    // written: exit 2 leaves no scrap, slice, run or table behind.
    let cfg = ctx.config()?;
    let (client, route) = cfg.route(&a.client, &a.route)?;
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
    let lookback = a.lookback_days.unwrap_or(DEFAULT_LOOKBACK_DAYS);
    let settings = ctx.settings()?;
    ctx.auth(client)?;
    ctx.secrets(route)?;

    let mut conn = ctx.database()?.connect()?;
    db::require_schema(&mut conn)?;
    let Some(mut lock) = SyncLock::try_take(conn, &a.client, &a.route)? else {
        let notice = format!(
            "Outra sincronização de {} / {} está em andamento: nada a fazer",
            a.client, a.route
        );
        let fields = json!({"status": "busy", "loaded_until": null});
        return Ok(nothing_to_do(
            ctx, a, &table, settings, "⏳", &notice, fields,
        ));
    };
    let last = ledger::last_loaded_day(&mut lock.conn, &a.client, &a.route)?;
    let Some((start, end)) = period(last, from, route.start_date, until, lookback)? else {
        let notice = format!(
            "Nada novo para {} / {}: carregado até {}",
            a.client,
            a.route,
            last.map(|d| d.to_string())
                .unwrap_or_else(|| "(nada)".into())
        );
        let fields = json!({"status": "up_to_date", "loaded_until": last});
        return Ok(nothing_to_do(
            ctx, a, &table, settings, "✅", &notice, fields,
        ));
    };
    let id = scrap::create_scrap(ctx, cfg, &a.client, &a.route, start, end)?.id;
    ctx.style.note(
        "🔄",
        &format!(
            "Sincronizando {} / {}: scrap {id}, {start} até {end}",
            a.client, a.route
        ),
    );
    scrap::run(ctx, id, a.json, true)
}

/// Ends a sync that runs nothing: the notice, and with `--json` one object
/// with every key of the summary (null or 0 where nothing ran), `fields`
/// (status, loaded_until) over them, exit code 0.
fn nothing_to_do(
    ctx: &Context<'_>,
    a: &SyncArgs,
    table: &str,
    settings: &Settings,
    emoji: &str,
    notice: &str,
    fields: Value,
) -> Exit {
    ctx.style.note(emoji, notice);
    if a.json {
        let mut out = json!({
            "scrap_id": null,
            "run_id": null,
            "client": a.client,
            "route": a.route,
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
            "elapsed_secs": 0.0,
            "records_per_sec": 0.0,
            "exit_code": 0,
            "settings": settings,
            "loaded_until": null,
        });
        if let (Some(o), Some(f)) = (out.as_object_mut(), fields.as_object()) {
            for (k, v) in f {
                o.insert(k.clone(), v.clone());
            }
        }
        crate::outln!("{out}");
    }
    Exit::Ok
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
struct SyncLock {
    conn: postgres::Client,
    pair: i32,
}

impl SyncLock {
    fn try_take(mut conn: postgres::Client, client: &str, route: &str) -> Result<Option<SyncLock>> {
        conn.execute(
            "INSERT INTO atlas.sync_pairs (client, route) VALUES ($1, $2)
             ON CONFLICT (client, route) DO NOTHING",
            &[&client, &route],
        )?;
        let pair: i32 = conn
            .query_one(
                "SELECT id FROM atlas.sync_pairs WHERE client = $1 AND route = $2",
                &[&client, &route],
            )?
            .get(0);
        let got: bool = conn
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&SYNC_LOCK_CLASS, &pair],
            )?
            .get(0);
        Ok(got.then_some(SyncLock { conn, pair }))
    }
}

impl Drop for SyncLock {
    fn drop(&mut self) {
        let _ = self.conn.execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&SYNC_LOCK_CLASS, &self.pair],
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
