//! The statements a sync decides a pair with, each one round trip: the
//! pair's registry row and its lock taken together, the pair's state read
//! at once (its unfinished scrap, its days: `loaded`), and a
//! new scrap created with its slices and recorded for the pair.

use super::{Scrap, SliceStatus};
use crate::db;
use anyhow::Result;
use chrono::NaiveDate;
use postgres::types::{ToSql, Type};
use postgres::GenericClient;

/// The scrap a sync recorded for the pair (`$1`, `$2`), while it has
/// slices pending, running or failed (`$3` to `$5`, [`pair_params`]): the
/// next sync of the pair resumes it. One text for both statements using it.
macro_rules! in_progress_sql {
    () => {
        "SELECT p.scrap_id FROM atlas.sync_pairs p
         WHERE p.client = $1 AND p.route = $2 AND p.scrap_id IS NOT NULL
           AND EXISTS (SELECT 1 FROM atlas.slices x
                       WHERE x.scrap_id = p.scrap_id AND x.status IN ($3, $4, $5))"
    };
}

/// The statuses of a slice not done yet, bound as `$3` to `$5`.
static UNFINISHED: [&str; 3] = [
    SliceStatus::Pending.as_str(),
    SliceStatus::Running.as_str(),
    SliceStatus::Failed.as_str(),
];

/// The parameters of [`in_progress_sql`]: the pair, then [`UNFINISHED`].
fn pair_params<'a>(client: &'a &'a str, route: &'a &'a str) -> [(&'a (dyn ToSql + Sync), Type); 5] {
    [
        (client, Type::TEXT),
        (route, Type::TEXT),
        (&UNFINISHED[0], Type::TEXT),
        (&UNFINISHED[1], Type::TEXT),
        (&UNFINISHED[2], Type::TEXT),
    ]
}

/// The pair's scrap in progress ([`in_progress_sql`]), if any.
pub fn in_progress(c: &mut impl GenericClient, client: &str, route: &str) -> Result<Option<i64>> {
    let row = c.query_typed_opt(in_progress_sql!(), &pair_params(&client, &route))?;
    Ok(row.map(|r| r.get(0)))
}

/// First key of the two-key advisory lock of a pair's sync (the second is
/// the pair's id in `atlas.sync_pairs`): a class of its own, so no other
/// advisory lock (`atlas init` takes the one-key form) can meet it.
pub const SYNC_LOCK_CLASS: i32 = 0x6174_6c73; // "atls"

/// The pair's id in `atlas.sync_pairs` (its row made when missing) and
/// whether its session lock was taken; `None` when another process made
/// the row at the same instant (look again).
pub fn take_pair(
    c: &mut impl GenericClient,
    client: &str,
    route: &str,
) -> Result<Option<(i32, bool)>> {
    let row = c.query_typed_opt(
        "WITH ins AS (
             INSERT INTO atlas.sync_pairs (client, route) VALUES ($1, $2)
             ON CONFLICT (client, route) DO NOTHING RETURNING id),
         p AS (SELECT id FROM ins
               UNION ALL
               SELECT id FROM atlas.sync_pairs WHERE client = $1 AND route = $2)
         SELECT id, pg_try_advisory_lock($3, id) FROM p LIMIT 1",
        &[
            (&client, Type::TEXT),
            (&route, Type::TEXT),
            (&SYNC_LOCK_CLASS, Type::INT4),
        ],
    )?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// A pair as the ledger holds it.
#[derive(Debug, Clone, Default)]
pub struct PairState {
    /// The scrap its last sync recorded, while it has slices pending,
    /// running or failed.
    pub in_progress: Option<i64>,
    /// The pair's days (`pair_days_sql!`): first day, last day, status of
    /// its known span and of the slices of the scraps reaching outside it.
    pub slices: Vec<(NaiveDate, NaiveDate, SliceStatus)>,
    /// Its raw table as it stands (judged only when there is something to load).
    pub table: db::Shape,
}

impl PairState {
    /// The spans of its `done` slices.
    pub fn done(&self) -> Vec<(NaiveDate, NaiveDate)> {
        self.slices
            .iter()
            .filter(|s| s.2 == SliceStatus::Done)
            .map(|s| (s.0, s.1))
            .collect()
    }

    /// The span to record as known loaded (`loaded::known_span`).
    pub fn known(&self) -> Option<(NaiveDate, NaiveDate)> {
        super::loaded::known_span(&self.done())
    }

    /// The end of the first contiguous run of done days (`loaded_until`).
    pub fn loaded_until(&self) -> Option<NaiveDate> {
        let mut spans: Vec<(NaiveDate, NaiveDate, bool)> = self
            .slices
            .iter()
            .map(|s| (s.0, s.1, s.2 == SliceStatus::Done))
            .collect();
        spans.sort();
        super::contiguous_done(&spans)
    }
}

/// The pair's unfinished scrap, its days (`pair_days_sql!`) and its raw
/// table `table`'s shape, in one round trip (the shape on the first row
/// only).
pub fn pair_state(
    c: &mut impl GenericClient,
    client: &str,
    route: &str,
    table: &str,
) -> Result<PairState> {
    let quoted = crate::ident::quote(table);
    let [p1, p2, p3, p4, p5] = pair_params(&client, &route);
    let rows = c.query_typed(
        concat!(
            "SELECT (",
            in_progress_sql!(),
            "), sl.slice_from, sl.slice_to, sl.status,
                    CASE WHEN row_number() OVER () = 1 THEN t.present END,
                    CASE WHEN row_number() OVER () = 1 THEN t.cols END,
                    CASE WHEN row_number() OVER () = 1 THEN t.uniq END
             FROM (SELECT ",
            crate::raw_shape_sql!("$6"),
            ") t(present, cols, uniq)
             LEFT JOIN (",
            crate::pair_days_sql!("$1", "$2"),
            ") sl ON true"
        ),
        &[p1, p2, p3, p4, p5, (&quoted, Type::TEXT)],
    )?;
    let mut state = PairState::default();
    for r in rows {
        state.in_progress = r.get(0);
        if r.get::<_, Option<bool>>(4).is_some() {
            state.table = db::Shape::at(&r, 4);
        }
        if let (Some(from), Some(to), Some(status)) = (
            r.get::<_, Option<NaiveDate>>(1),
            r.get::<_, Option<NaiveDate>>(2),
            r.get::<_, Option<&str>>(3),
        ) {
            state.slices.push((from, to, status.parse()?));
        }
    }
    Ok(state)
}

/// A new scrap of the pair `pair` (its `atlas.sync_pairs` id) over
/// `period` with the slices of `plan`, recorded as the pair's scrap with the
/// span `known` loaded (`PairState::known`), in one statement (atomic: all
/// or nothing). Its raw table is not made here.
pub fn create_sync_scrap(
    c: &mut impl GenericClient,
    pair: i32,
    (client, route, table): (&str, &str, &str),
    (from, to): (NaiveDate, NaiveDate),
    slice_days: u32,
    plan: &[(NaiveDate, NaiveDate)],
    known: Option<(NaiveDate, NaiveDate)>,
) -> Result<Scrap> {
    let froms: Vec<NaiveDate> = plan.iter().map(|p| p.0).collect();
    let tos: Vec<NaiveDate> = plan.iter().map(|p| p.1).collect();
    let row = c.query_typed_one(
        "WITH s AS (
             INSERT INTO atlas.scraps (client, route, raw_table, period_from, period_to, slice_days)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at),
         sl AS (
             INSERT INTO atlas.slices (scrap_id, slice_from, slice_to)
             SELECT s.id, f, t FROM s, unnest($7::date[], $8::date[]) AS u(f, t)),
         p AS (UPDATE atlas.sync_pairs
               SET scrap_id = (SELECT id FROM s), loaded_from = coalesce($10, loaded_from),
                   loaded_to = coalesce($11, loaded_to)
               WHERE id = $9)
         SELECT id, created_at FROM s",
        &[
            (&client, Type::TEXT),
            (&route, Type::TEXT),
            (&table, Type::TEXT),
            (&from, Type::DATE),
            (&to, Type::DATE),
            (&(slice_days as i32), Type::INT4),
            (&froms, Type::DATE_ARRAY),
            (&tos, Type::DATE_ARRAY),
            (&pair, Type::INT4),
            (&known.map(|k| k.0), Type::DATE),
            (&known.map(|k| k.1), Type::DATE),
        ],
    )?;
    Ok(Scrap {
        id: row.get(0),
        client: client.to_string(),
        route: route.to_string(),
        raw_table: table.to_string(),
        from,
        to,
        slice_days: slice_days as i32,
        created_at: row.get(1),
    })
}
