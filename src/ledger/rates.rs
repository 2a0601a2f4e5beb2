//! A client's request rate shared through the control schema: the members
//! working each client (`atlas.rate_members`, one leased row per process)
//! and the pauses servers asked for (`atlas.client_pauses`). One statement
//! renews this process's memberships, publishes its pauses and reads back
//! what every client's members add up to.

use anyhow::Result;
use chrono::{DateTime, Utc};
use postgres::types::Type;
use postgres::GenericClient;
use std::time::Duration;

/// What this process says of one client in a poll.
#[derive(Debug, Clone)]
pub struct Mine {
    pub client: String,
    /// The rate its pacing learnt from 429s (requests per second), if any.
    pub learnt: Option<f64>,
    /// A pause a server asked of the client here, to pass on.
    pub pause_until: Option<DateTime<Utc>>,
}

/// What the members of one client add up to, as a poll reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub client: String,
    /// Live members, this process included.
    pub members: u64,
    /// This process's place among them (live members whose worker id sorts
    /// before its own): who takes the remainder of an uneven split.
    pub rank: u64,
    /// The rates the other live members learnt, averaged.
    pub others_learnt: Option<f64>,
    /// The pause in force for the client, if it is still ahead.
    pub paused_until: Option<DateTime<Utc>>,
}

/// Renews `worker`'s membership of each client of `mine` for `lease`,
/// ends it for the clients of `left` (nothing more to send there),
/// publishes its pauses (a later one wins), forgets members gone for a
/// minute, and reads every client of `mine` back.
pub fn poll(
    c: &mut impl GenericClient,
    worker: &str,
    lease: Duration,
    mine: &[Mine],
    left: &[String],
) -> Result<Vec<Seen>> {
    let clients: Vec<&str> = mine.iter().map(|m| m.client.as_str()).collect();
    let learnt: Vec<Option<f64>> = mine.iter().map(|m| m.learnt).collect();
    let pauses: Vec<Option<DateTime<Utc>>> = mine.iter().map(|m| m.pause_until).collect();
    // The reading below sees the tables as they were before this
    // statement's own writes: this process is counted apart (+ 1), and its
    // new pause is joined in from the insert's RETURNING.
    let rows = c.query_typed(
        "WITH me AS (
             SELECT * FROM unnest($2::text[], $3::float8[], $4::timestamptz[])
                 AS m(client, learnt, pause)),
         up AS (
             INSERT INTO atlas.rate_members (client, worker, lease_until, learnt_per_sec)
             SELECT client, $1, now() + make_interval(secs => $5), learnt FROM me
             ON CONFLICT (client, worker) DO UPDATE
                 SET lease_until = EXCLUDED.lease_until, learnt_per_sec = EXCLUDED.learnt_per_sec
             RETURNING client),
         gone AS (
             DELETE FROM atlas.rate_members r
              WHERE (r.client = ANY($2) AND r.lease_until < now() - interval '1 minute')
                 OR (r.client = ANY($6) AND r.worker = $1)
             RETURNING r.client),
         paused AS (
             INSERT INTO atlas.client_pauses (client, paused_until)
             SELECT client, pause FROM me WHERE pause IS NOT NULL
             ON CONFLICT (client) DO UPDATE
                 SET paused_until = greatest(atlas.client_pauses.paused_until,
                                             EXCLUDED.paused_until)
             RETURNING client, paused_until)
         SELECT me.client,
                1 + (SELECT count(*) FROM atlas.rate_members r
                      WHERE r.client = me.client AND r.worker <> $1 AND r.lease_until >= now()),
                (SELECT count(*) FROM atlas.rate_members r
                  WHERE r.client = me.client AND r.worker < $1 AND r.lease_until >= now()),
                (SELECT avg(r.learnt_per_sec) FROM atlas.rate_members r
                  WHERE r.client = me.client AND r.worker <> $1 AND r.lease_until >= now()),
                (SELECT max(t) FROM (
                     SELECT p.paused_until FROM atlas.client_pauses p WHERE p.client = me.client
                     UNION ALL
                     SELECT n.paused_until FROM paused n WHERE n.client = me.client) AS x(t)
                  WHERE t > now())
           FROM me",
        &[
            (&worker, Type::TEXT),
            (&clients, Type::TEXT_ARRAY),
            (&learnt, Type::FLOAT8_ARRAY),
            (&pauses, Type::TIMESTAMPTZ_ARRAY),
            (&lease.as_secs_f64(), Type::FLOAT8),
            (&left, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(rows
        .iter()
        .map(|r| Seen {
            client: r.get(0),
            members: r.get::<_, i64>(1).max(1) as u64,
            rank: r.get::<_, i64>(2).max(0) as u64,
            others_learnt: r.get(3),
            paused_until: r.get(4),
        })
        .collect())
}

/// `worker` leaves every client: its part goes back to the others at once.
pub fn leave(c: &mut impl GenericClient, worker: &str) -> Result<u64> {
    Ok(c.execute_typed(
        "DELETE FROM atlas.rate_members WHERE worker = $1",
        &[(&worker, Type::TEXT)],
    )?)
}
