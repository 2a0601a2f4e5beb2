//! The statements a fleet decides, starts and closes a wave of pairs with,
//! each one round trip for the whole wave whatever its number of pairs:
//! the pairs' rows and locks, their states, their new scraps, the unlock,
//! their runs started, and their runs' ends read and recorded. Each is the
//! per-pair statement of `decide`, `runs` or `ends` over arrays (one
//! parse and plan, one commit for up to a wave of pairs).

use super::decide::{PairState, SYNC_LOCK_CLASS};
use super::{contiguous_done, secs, slice_info, status_of, RunStatus, RunTotals, SliceInfo};
use super::{Claim, Scrap, SliceStatus};
use crate::db;
use anyhow::Result;
use chrono::NaiveDate;
use postgres::types::Type;
use postgres::GenericClient;
use std::time::Duration;

/// Each pair's id in `atlas.sync_pairs` (its row made when missing) and
/// whether its session lock was taken, in the order of `pairs`; `None`
/// when another process made the row at the same instant (look again, as
/// `decide::take_pair`). Rows are made in (client, route) order, so two
/// fleets making the same rows wait for each other, never deadlock.
pub fn take_pairs(
    c: &mut impl GenericClient,
    pairs: &[(&str, &str)],
) -> Result<Vec<Option<(i32, bool)>>> {
    let (clients, routes): (Vec<&str>, Vec<&str>) = pairs.iter().copied().unzip();
    let rows = c.query_typed(
        "WITH w AS (SELECT * FROM unnest($1::text[], $2::text[]) WITH ORDINALITY
                    AS w(client, route, k)),
         ins AS (
             INSERT INTO atlas.sync_pairs (client, route)
             SELECT client, route FROM w ORDER BY client, route
             ON CONFLICT (client, route) DO NOTHING RETURNING id, client, route),
         p AS (SELECT w.k, coalesce(i.id, s.id) AS id FROM w
               LEFT JOIN ins i ON i.client = w.client AND i.route = w.route
               LEFT JOIN atlas.sync_pairs s ON s.client = w.client AND s.route = w.route)
         SELECT k, id, CASE WHEN id IS NOT NULL THEN pg_try_advisory_lock($3, id) END
         FROM p ORDER BY k",
        &[
            (&clients, Type::TEXT_ARRAY),
            (&routes, Type::TEXT_ARRAY),
            (&SYNC_LOCK_CLASS, Type::INT4),
        ],
    )?;
    let mut out = vec![None; pairs.len()];
    for r in rows {
        let k: i64 = r.get(0);
        if let (Some(id), Some(locked)) = (r.get::<_, Option<i32>>(1), r.get(2)) {
            out[(k - 1) as usize] = Some((id, locked));
        }
    }
    Ok(out)
}

/// Releases the sync locks of the pairs `ids` (`atlas.sync_pairs` ids)
/// this session holds.
pub fn unlock_pairs(c: &mut impl GenericClient, ids: &[i32]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    c.query_typed(
        "SELECT pg_advisory_unlock($1, id) FROM unnest($2::int[]) AS id",
        &[(&SYNC_LOCK_CLASS, Type::INT4), (&ids, Type::INT4_ARRAY)],
    )?;
    Ok(())
}

/// Each pair's state (`decide::pair_state`): its unfinished scrap, its
/// days (`pair_days_sql!`), and its raw table's shape; `pairs` are
/// (client, route, raw table), answered in their order.
pub fn pair_states(
    c: &mut impl GenericClient,
    pairs: &[(&str, &str, &str)],
) -> Result<Vec<PairState>> {
    let clients: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let routes: Vec<&str> = pairs.iter().map(|p| p.1).collect();
    let tables: Vec<String> = pairs.iter().map(|p| crate::ident::quote(p.2)).collect();
    let rows = c.query_typed(
        concat!(
            "WITH w AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                        AS w(client, route, tbl, k))
             SELECT w.k,
                    (SELECT p.scrap_id FROM atlas.sync_pairs p
                     WHERE p.client = w.client AND p.route = w.route AND p.scrap_id IS NOT NULL
                       AND EXISTS (SELECT 1 FROM atlas.slices x
                                   WHERE x.scrap_id = p.scrap_id AND x.status IN ($4, $5, $6))),
                    t.present, t.cols, t.uniq, sl.froms, sl.tos, sl.statuses
             FROM w
             CROSS JOIN LATERAL (SELECT ",
            crate::raw_shape_sql!("w.tbl"),
            ") t(present, cols, uniq)
             CROSS JOIN LATERAL (
                 SELECT array_agg(x.slice_from) AS froms, array_agg(x.slice_to) AS tos,
                        array_agg(x.status) AS statuses
                 FROM (",
            crate::pair_days_sql!("w.client", "w.route"),
            ") x) sl
             ORDER BY w.k"
        ),
        &[
            (&clients, Type::TEXT_ARRAY),
            (&routes, Type::TEXT_ARRAY),
            (&tables, Type::TEXT_ARRAY),
            (&SliceStatus::Pending.as_str(), Type::TEXT),
            (&SliceStatus::Running.as_str(), Type::TEXT),
            (&SliceStatus::Failed.as_str(), Type::TEXT),
        ],
    )?;
    let mut out = vec![PairState::default(); pairs.len()];
    for r in rows {
        let k: i64 = r.get(0);
        let state = &mut out[(k - 1) as usize];
        state.in_progress = r.get(1);
        state.table = db::Shape::at(&r, 2);
        let froms: Option<Vec<NaiveDate>> = r.get(5);
        let tos: Option<Vec<NaiveDate>> = r.get(6);
        let statuses: Option<Vec<String>> = r.get(7);
        for ((f, t), s) in froms
            .unwrap_or_default()
            .into_iter()
            .zip(tos.unwrap_or_default())
            .zip(statuses.unwrap_or_default())
        {
            state.slices.push((f, t, s.parse()?));
        }
    }
    Ok(out)
}

/// A scrap a sync decided for a pair, to create with [`create_sync_scraps`].
pub struct NewScrap<'a> {
    /// Its pair's id in `atlas.sync_pairs`.
    pub pair: i32,
    pub client: &'a str,
    pub route: &'a str,
    pub table: &'a str,
    pub period: (NaiveDate, NaiveDate),
    pub slice_days: u32,
    pub slices: &'a [(NaiveDate, NaiveDate)],
    /// The span to record as known loaded (`PairState::known`).
    pub known: Option<(NaiveDate, NaiveDate)>,
}

/// New scraps with their slices, each recorded as its pair's scrap, in one
/// statement (atomic: all or nothing), as `decide::create_sync_scrap` does
/// for one. Their raw tables are not made here.
pub fn create_sync_scraps(c: &mut impl GenericClient, new: &[NewScrap<'_>]) -> Result<Vec<Scrap>> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let clients: Vec<&str> = new.iter().map(|n| n.client).collect();
    let routes: Vec<&str> = new.iter().map(|n| n.route).collect();
    let tables: Vec<&str> = new.iter().map(|n| n.table).collect();
    let froms: Vec<NaiveDate> = new.iter().map(|n| n.period.0).collect();
    let tos: Vec<NaiveDate> = new.iter().map(|n| n.period.1).collect();
    let days: Vec<i32> = new.iter().map(|n| n.slice_days as i32).collect();
    let pairs: Vec<i32> = new.iter().map(|n| n.pair).collect();
    let known_from: Vec<Option<NaiveDate>> = new.iter().map(|n| n.known.map(|k| k.0)).collect();
    let known_to: Vec<Option<NaiveDate>> = new.iter().map(|n| n.known.map(|k| k.1)).collect();
    let mut of: Vec<i64> = Vec::new();
    let (mut sf, mut st) = (Vec::new(), Vec::new());
    for (k, n) in new.iter().enumerate() {
        for s in n.slices {
            of.push(k as i64 + 1);
            sf.push(s.0);
            st.push(s.1);
        }
    }
    let rows = c.query_typed(
        "WITH w AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[],
                                         $5::date[], $6::int[], $7::int[], $11::date[],
                                         $12::date[]) WITH ORDINALITY
                    AS w(client, route, tbl, f, t, days, pair, lf, lt, k)),
         s AS (
             INSERT INTO atlas.scraps (client, route, raw_table, period_from, period_to, slice_days)
             SELECT client, route, tbl, f, t, days FROM w ORDER BY k
             RETURNING id, created_at, client, route),
         ws AS (SELECT w.k, w.pair, w.lf, w.lt, s.id, s.created_at FROM w
                JOIN s ON s.client = w.client AND s.route = w.route),
         sl AS (
             INSERT INTO atlas.slices (scrap_id, slice_from, slice_to)
             SELECT ws.id, u.f, u.t
             FROM unnest($8::bigint[], $9::date[], $10::date[]) WITH ORDINALITY AS u(k, f, t, n)
             JOIN ws ON ws.k = u.k ORDER BY u.n),
         p AS (UPDATE atlas.sync_pairs sp
               SET scrap_id = ws.id, loaded_from = coalesce(ws.lf, sp.loaded_from),
                   loaded_to = coalesce(ws.lt, sp.loaded_to)
               FROM ws WHERE sp.id = ws.pair)
         SELECT k, id, created_at FROM ws ORDER BY k",
        &[
            (&clients, Type::TEXT_ARRAY),
            (&routes, Type::TEXT_ARRAY),
            (&tables, Type::TEXT_ARRAY),
            (&froms, Type::DATE_ARRAY),
            (&tos, Type::DATE_ARRAY),
            (&days, Type::INT4_ARRAY),
            (&pairs, Type::INT4_ARRAY),
            (&of, Type::INT8_ARRAY),
            (&sf, Type::DATE_ARRAY),
            (&st, Type::DATE_ARRAY),
            (&known_from, Type::DATE_ARRAY),
            (&known_to, Type::DATE_ARRAY),
        ],
    )?;
    anyhow::ensure!(
        rows.len() == new.len(),
        "{} scraps made of {}",
        rows.len(),
        new.len()
    );
    Ok(rows
        .iter()
        .zip(new)
        .map(|(r, n)| Scrap {
            id: r.get(1),
            client: n.client.to_string(),
            route: n.route.to_string(),
            raw_table: n.table.to_string(),
            from: n.period.0,
            to: n.period.1,
            slice_days: n.slice_days as i32,
            created_at: r.get(2),
        })
        .collect())
}

/// A run started by [`start_runs`]: its id, its first guess of a slice's
/// pages, and the slices it claimed.
pub struct Started {
    pub run: i64,
    pub pages_hint: u64,
    pub claims: Vec<Claim>,
}

/// Runs of the new scraps `scraps` started by `worker`, as
/// `runs::start_run` starts one, each with every slice of its scrap still
/// pending claimed (as `claims::claim_many` claims them: a process that
/// joined the scrap meanwhile keeps those it took). In the order of `scraps`.
pub fn start_runs(
    c: &mut impl GenericClient,
    scraps: &[i64],
    worker: &str,
    settings: &serde_json::Value,
    lease: Duration,
) -> Result<Vec<Started>> {
    if scraps.is_empty() {
        return Ok(Vec::new());
    }
    let rows = c.query_typed(
        "WITH w AS (SELECT * FROM unnest($1::bigint[]) WITH ORDINALITY AS w(scrap, k)),
         r AS (
             INSERT INTO atlas.runs (scrap_id, worker, settings, lease_until, version)
             SELECT scrap, $2, $3, now() + make_interval(secs => $4), $6 FROM w ORDER BY k
             RETURNING id, scrap_id),
         c AS (
             UPDATE atlas.slices s
             SET status = $7, worker = $2, lease_until = now() + make_interval(secs => $4),
                 attempts = s.attempts + 1, last_run_id = r.id, duplicates = 0
             FROM r WHERE s.scrap_id = r.scrap_id AND s.status = $8
             RETURNING s.scrap_id, s.id, s.slice_from, s.slice_to)
         SELECT w.k, r.id,
                (SELECT s.pages FROM atlas.slices s
                 WHERE s.status = $5 AND s.scrap_id IN (
                     SELECT o.id FROM atlas.scraps me CROSS JOIN LATERAL (
                         SELECT o.id FROM atlas.scraps o
                         WHERE o.client = me.client AND o.route = me.route
                           AND o.slice_days = me.slice_days
                         ORDER BY o.period_to DESC LIMIT 3) o
                     WHERE me.id = r.scrap_id)
                 ORDER BY s.done_at DESC NULLS LAST LIMIT 1),
                cl.ids, cl.froms, cl.tos
         FROM r JOIN w ON w.scrap = r.scrap_id
         CROSS JOIN LATERAL (
             SELECT array_agg(c.id ORDER BY c.slice_from, c.id) AS ids,
                    array_agg(c.slice_from ORDER BY c.slice_from, c.id) AS froms,
                    array_agg(c.slice_to ORDER BY c.slice_from, c.id) AS tos
             FROM c WHERE c.scrap_id = r.scrap_id) cl
         ORDER BY w.k",
        &[
            (&scraps, Type::INT8_ARRAY),
            (&worker, Type::TEXT),
            (settings, Type::JSONB),
            (&secs(lease), Type::FLOAT8),
            (&SliceStatus::Done.as_str(), Type::TEXT),
            (&crate::version::version(), Type::TEXT),
            (&SliceStatus::Running.as_str(), Type::TEXT),
            (&SliceStatus::Pending.as_str(), Type::TEXT),
        ],
    )?;
    anyhow::ensure!(
        rows.len() == scraps.len(),
        "{} runs started of {}",
        rows.len(),
        scraps.len()
    );
    Ok(rows
        .iter()
        .map(|r| {
            let pages: Option<i64> = r.get(2);
            let ids: Option<Vec<i64>> = r.get(3);
            let froms: Option<Vec<NaiveDate>> = r.get(4);
            let tos: Option<Vec<NaiveDate>> = r.get(5);
            let claims = ids
                .unwrap_or_default()
                .into_iter()
                .zip(froms.unwrap_or_default())
                .zip(tos.unwrap_or_default())
                .map(|((id, from), to)| Claim { id, from, to })
                .collect();
            Started {
                run: r.get(1),
                pages_hint: pages.unwrap_or(0).max(0) as u64,
                claims,
            }
        })
        .collect())
}

/// What runs' ends read (`ends::scrap_end` for each of `scraps`: the
/// scrap and its pair), in their order: the scrap's slices and the end of
/// the pair's first contiguous run of done days.
pub fn scrap_ends(
    c: &mut impl GenericClient,
    scraps: &[(i64, &str, &str)],
) -> Result<Vec<(Vec<SliceInfo>, Option<NaiveDate>)>> {
    let ids: Vec<i64> = scraps.iter().map(|s| s.0).collect();
    let clients: Vec<&str> = scraps.iter().map(|s| s.1).collect();
    let routes: Vec<&str> = scraps.iter().map(|s| s.2).collect();
    // The scraps' slices are found by their ids (`= ANY`), by index
    // whatever the planner guesses of the join.
    let rows = c.query_typed(
        concat!(
            "WITH w AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY
                    AS w(scrap, client, route, k))
         SELECT w.k, false, x.id, x.slice_from, x.slice_to, x.status, x.pages, x.records,
                x.inserted, x.duplicates, x.out_of_period, x.undated, x.attempts, x.last_error,
                x.worker
         FROM w JOIN atlas.slices x ON x.scrap_id = w.scrap WHERE x.scrap_id = ANY ($1)
         UNION ALL
         SELECT w.k, true, NULL, sl.slice_from, sl.slice_to, sl.status, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, NULL, NULL
         FROM w CROSS JOIN LATERAL (",
            crate::pair_days_sql!("w.client", "w.route"),
            ") sl
         ORDER BY 1, 2, 4, 5"
        ),
        &[
            (&ids, Type::INT8_ARRAY),
            (&clients, Type::TEXT_ARRAY),
            (&routes, Type::TEXT_ARRAY),
        ],
    )?;
    let mut slices: Vec<Vec<SliceInfo>> = scraps.iter().map(|_| Vec::new()).collect();
    let mut spans: Vec<Vec<(NaiveDate, NaiveDate, bool)>> =
        scraps.iter().map(|_| Vec::new()).collect();
    for r in &rows {
        let k = (r.get::<_, i64>(0) - 1) as usize;
        if r.get::<_, bool>(1) {
            let status: SliceStatus = status_of(r, 5)?;
            spans[k].push((r.get(3), r.get(4), status == SliceStatus::Done));
        } else {
            slices[k].push(slice_info(r, 2)?);
        }
    }
    Ok(slices
        .into_iter()
        .zip(spans)
        .map(|(s, sp)| (s, contiguous_done(&sp)))
        .collect())
}

/// The end of a run, for [`finish_runs`].
pub struct RunEnd<'a> {
    pub run: i64,
    pub status: RunStatus,
    pub totals: &'a RunTotals,
    pub error: Option<&'a str>,
}

/// Records the ends of runs in one statement, as `runs::finish_run` does
/// for one.
pub fn finish_runs(c: &mut impl GenericClient, ends: &[RunEnd<'_>]) -> Result<()> {
    if ends.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&RunTotals) -> i64| ends.iter().map(|e| f(e.totals)).collect::<Vec<_>>();
    let ids: Vec<i64> = ends.iter().map(|e| e.run).collect();
    let status: Vec<&str> = ends.iter().map(|e| e.status.as_str()).collect();
    let done: Vec<i32> = ends.iter().map(|e| e.totals.slices_done).collect();
    let failed: Vec<i32> = ends.iter().map(|e| e.totals.slices_failed).collect();
    let errors: Vec<Option<&str>> = ends.iter().map(|e| e.error).collect();
    c.execute_typed(
        "UPDATE atlas.runs r SET finished_at = now(), status = u.status, pages = u.pages,
                records = u.records, out_of_period = u.oop, undated = u.undated,
                retries = u.retries, slices_done = u.done, slices_failed = u.failed,
                error = u.err
         FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $7::bigint[], $8::int[], $9::int[], $10::text[])
              AS u(id, status, pages, records, oop, undated, retries, done, failed, err)
         WHERE r.id = u.id",
        &[
            (&ids, Type::INT8_ARRAY),
            (&status, Type::TEXT_ARRAY),
            (&col(&|t| t.pages), Type::INT8_ARRAY),
            (&col(&|t| t.records), Type::INT8_ARRAY),
            (&col(&|t| t.out_of_period), Type::INT8_ARRAY),
            (&col(&|t| t.undated), Type::INT8_ARRAY),
            (&col(&|t| t.retries), Type::INT8_ARRAY),
            (&done, Type::INT4_ARRAY),
            (&failed, Type::INT4_ARRAY),
            (&errors, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(())
}
