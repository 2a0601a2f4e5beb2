//! The ledger read by (client, route) pair for `atlas status`: each pair's
//! last run and the islands of days its slices cover, for any number of
//! pairs in one statement each (a fleet may have thousands).

use super::{RunStatus, SliceStatus};
use crate::health::{LastRun, Span};
use anyhow::Result;
use chrono::NaiveDate;
use postgres::types::Type;
use postgres::GenericClient;
use std::collections::HashMap;

/// A pair: (client, route).
pub type Pair = (String, String);

/// The islands of one pair's days: done slices merged, and done and open
/// slices merged (`covered`), each sorted.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Islands {
    pub done: Vec<Span>,
    pub covered: Vec<Span>,
}

/// The arrays of clients and routes the statements take.
fn arrays(pairs: &[Pair]) -> (Vec<&str>, Vec<&str>) {
    pairs.iter().map(|(c, r)| (c.as_str(), r.as_str())).unzip()
}

/// Each pair's last run (the latest started, on any machine), if any. A
/// run still `running` whose lease has run out is reported `aborted`.
pub fn last_runs(c: &mut impl GenericClient, pairs: &[Pair]) -> Result<HashMap<Pair, LastRun>> {
    let (clients, routes) = arrays(pairs);
    let rows = c.query_typed(
        "SELECT DISTINCT ON (s.client, s.route)
                s.client, s.route, r.id, r.scrap_id, r.worker, r.started_at, r.finished_at,
                CASE WHEN r.status = $3 AND r.lease_until < now() THEN $4 ELSE r.status END,
                r.inserted, r.slices_failed, r.error, r.version
         FROM unnest($1::text[], $2::text[]) AS p(client, route)
         JOIN atlas.scraps s ON s.client = p.client AND s.route = p.route
         JOIN atlas.runs r ON r.scrap_id = s.id
         ORDER BY s.client, s.route, r.started_at DESC, r.id DESC",
        &[
            (&clients, Type::TEXT_ARRAY),
            (&routes, Type::TEXT_ARRAY),
            (&RunStatus::Running.as_str(), Type::TEXT),
            (&RunStatus::Aborted.as_str(), Type::TEXT),
        ],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let worker: String = r.get(4);
            let host = super::worker_parts(&worker)
                .map(|p| p.host.to_string())
                .unwrap_or_else(|| worker.clone());
            let started_at = r.get(5);
            let finished_at: Option<_> = r.get(6);
            let run = LastRun {
                id: r.get(2),
                scrap_id: r.get(3),
                at: finished_at.unwrap_or(started_at),
                started_at,
                finished_at,
                host,
                worker,
                status: r.get(7),
                inserted: r.get(8),
                slices_failed: r.get(9),
                error: r.get(10),
                version: r.get(11),
            };
            ((r.get(0), r.get(1)), run)
        })
        .collect())
}

/// Each pair's islands of days, from the done and open slices of all its
/// scraps (read around the span it is known to have loaded,
/// `pair_days_sql!`, which gives the same islands): a slice starts a new
/// island when it begins past the day after the furthest day of the
/// slices before it (of done slices only, for the done islands). One sort
/// of the slices serves both kinds.
pub fn islands(c: &mut impl GenericClient, pairs: &[Pair]) -> Result<HashMap<Pair, Islands>> {
    let (clients, routes) = arrays(pairs);
    let rows = c.query_typed(
        concat!(
            "WITH sl AS (
             SELECT p.client, p.route, x.slice_from AS f, x.slice_to AS t, x.status = $3 AS done
             FROM unnest($1::text[], $2::text[]) AS p(client, route)
             CROSS JOIN LATERAL (",
            crate::pair_days_sql!("p.client", "p.route"),
            ") x
             WHERE x.status IN ($3, $4)),
         m AS (
             SELECT *, max(t) OVER w AS reach, max(t) FILTER (WHERE done) OVER w AS reach_done
             FROM sl
             WINDOW w AS (PARTITION BY client, route ORDER BY f, t
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)),
         g AS (
             SELECT *,
                    sum(CASE WHEN reach IS NULL OR f > reach + 1 THEN 1 ELSE 0 END)
                        OVER w AS island,
                    sum(CASE WHEN done AND (reach_done IS NULL OR f > reach_done + 1)
                             THEN 1 ELSE 0 END) OVER w AS island_done
             FROM m
             WINDOW w AS (PARTITION BY client, route ORDER BY f, t ROWS UNBOUNDED PRECEDING))
         SELECT client, route, false, min(f), max(t) FROM g GROUP BY client, route, island
         UNION ALL
         SELECT client, route, true, min(f), max(t) FROM g WHERE done
         GROUP BY client, route, island_done
         ORDER BY 1, 2, 3, 4"
        ),
        &[
            (&clients, Type::TEXT_ARRAY),
            (&routes, Type::TEXT_ARRAY),
            (&SliceStatus::Done.as_str(), Type::TEXT),
            (&SliceStatus::Open.as_str(), Type::TEXT),
        ],
    )?;
    let mut out: HashMap<Pair, Islands> = HashMap::new();
    for r in &rows {
        let span: (NaiveDate, NaiveDate) = (r.get(3), r.get(4));
        let i = out.entry((r.get(0), r.get(1))).or_default();
        if r.get::<_, bool>(2) {
            i.done.push(span);
        } else {
            i.covered.push(span);
        }
    }
    Ok(out)
}
