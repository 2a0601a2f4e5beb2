//! Writers fitted to a database across the network: from its measured
//! round trip (and then each batch's commit time), how many writers, how
//! big their batches and how long the channel, so the link stays busy
//! within the memory budget and the pool's cap (`max_db_connections`).
//! Pure functions; `scrap run` measures and applies them.

use crate::config::ranges;
use crate::config::Settings;
use std::time::Duration;

/// Round trips a committed batch costs (`db::Inserter`, binary COPY).
pub const ROUND_TRIPS_PER_BATCH: u32 = 4;
/// Writers at most (the range of `writers`).
pub const MAX_WRITERS: usize = ranges::WRITERS.max as usize;
/// A round trip below this is a database next door: the settings stand.
pub const NEAR: Duration = Duration::from_millis(2);
/// Rows one writer commits per second when the database is near, the
/// service time assumed before a batch is measured (docs/performance.md:
/// about 40,000 per writer on the load benchmark).
const ROWS_PER_SEC_NEAR: f64 = 40_000.0;
/// Batches grow until the link's waits are at most this share of the
/// server's work on them (0.5 left the server idle a third of the time at
/// 10 ms: 0.55x two COPY streams, against 0.8x at 0.25, docs/performance.md).
const WAIT_SHARE: f64 = 0.25;
const MIB: usize = 1 << 20;

/// The crew's figures for a database `round_trip` away, the pool holding
/// `pool` connections. A near database keeps the settings (writers within
/// the pool). A far one gets batches big enough that a batch's round trips
/// cost at most `WAIT_SHARE` of its server time, as many writers as keep
/// the configured number's worth of work on the server while each waits on
/// the link, a channel long enough to fill those batches, and a byte cap
/// per batch so all writers' batches hold at most half the memory budget.
pub fn plan(s: &Settings, round_trip: Duration, pool: u32) -> Settings {
    let room = writer_room(pool);
    let mut t = s.clone();
    t.writers = s.writers.min(room);
    if round_trip < NEAR {
        return t;
    }
    let wait = link_wait(round_trip);
    let rows = (wait / WAIT_SHARE * ROWS_PER_SEC_NEAR).ceil() as usize;
    t.batch_export = rows.clamp(s.batch_export, max_rows());
    let service = t.batch_export as f64 / ROWS_PER_SEC_NEAR;
    let writers = (s.writers as f64 * (wait + service) / service).ceil() as usize;
    t.writers = writers.clamp(s.writers, MAX_WRITERS).min(room);
    let grown = t.batch_export.div_ceil(s.batch_export.max(1));
    let channel = 2 * s.threads.max(t.writers) * grown;
    t.channel_capacity = s
        .channel_capacity
        .or(Some(channel.min(ranges::CHANNEL_CAPACITY.max as usize)));
    let budget = usize::try_from(s.memory_mb).unwrap_or(usize::MAX / MIB) * MIB;
    t.batch_bytes = Some((budget / 2 / t.writers).max(MIB));
    t.db_round_trip = Some(round_trip);
    t
}

/// Writers a pool of `pool` connections leaves room for: a quarter (at
/// least two) stays for the fetchers' ledger calls, heartbeats and slice
/// ends, which hold a connection only for a statement.
pub fn writer_room(pool: u32) -> usize {
    let pool = pool as usize;
    pool.saturating_sub((pool / 4).max(2)).max(1)
}

/// The next batch's row limit, from a full batch of `rows` rows whose
/// commit took `took` with the database `round_trip` away: the server's
/// time per row is what the commit took beyond its round trips, and the
/// batch is sized so those round trips are `WAIT_SHARE` of its server
/// time; never below `floor` (the configured `batch_export`).
pub fn next_batch_rows(floor: usize, rows: usize, took: Duration, round_trip: Duration) -> usize {
    let wait = link_wait(round_trip);
    let service = (took.as_secs_f64() - wait).max(1e-3);
    let per_row = service / rows.max(1) as f64;
    let target = (wait / WAIT_SHARE / per_row).ceil();
    (target.min(max_rows() as f64) as usize).max(floor)
}

/// Seconds a batch spends on the link: its round trips.
fn link_wait(round_trip: Duration) -> f64 {
    f64::from(ROUND_TRIPS_PER_BATCH) * round_trip.as_secs_f64()
}

fn max_rows() -> usize {
    ranges::BATCH_EXPORT.max as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Layer;

    fn settings() -> Settings {
        Settings::resolve(Layer::default(), &|_| None, &Layer::default()).unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_near_database_keeps_the_settings() {
        let s = settings();
        let t = plan(&s, Duration::from_micros(200), 16);
        assert_eq!(t, s);
    }

    #[test]
    fn a_far_database_gets_bigger_batches_and_more_writers() {
        let s = settings();
        let t = plan(&s, ms(20), 16);
        // 4 round trips of 20 ms = 80 ms: batches of 320 ms of work.
        assert_eq!(t.batch_export, 12_800);
        assert_eq!(t.writers, 3);
        assert_eq!(t.channel_capacity, Some(2 * 8 * 7));
        assert_eq!(t.batch_bytes, Some(64 * MIB / 2 / 3));
        assert_eq!(t.db_round_trip, Some(ms(20)));
        let far = plan(&s, ms(100), 64);
        assert!(far.batch_export > t.batch_export);
        assert!(far.writers >= t.writers);
    }

    #[test]
    fn writers_stay_within_the_pool() {
        let mut s = settings();
        s.writers = 10;
        assert_eq!(plan(&s, ms(20), 16).writers, 12);
        assert_eq!(plan(&s, ms(20), 4).writers, 2);
        assert_eq!(plan(&s, ms(0), 4).writers, 2);
        assert_eq!(writer_room(1000), 750);
    }

    #[test]
    fn batches_hold_at_most_half_the_budget_together() {
        let mut s = settings();
        s.memory_mb = 8;
        let t = plan(&s, ms(50), 16);
        assert!(t.batch_bytes.unwrap() * t.writers <= 8 * MIB / 2 + MIB);
    }

    #[test]
    fn a_given_channel_capacity_stands() {
        let mut s = settings();
        s.channel_capacity = Some(5);
        assert_eq!(plan(&s, ms(20), 16).channel_capacity, Some(5));
    }

    #[test]
    fn batches_follow_the_measured_commit_time() {
        // 2,000 rows took 80 ms of round trips + 20 ms of work: 10 µs a
        // row, so 320 ms of work is 32,000 rows.
        assert_eq!(next_batch_rows(2_000, 2_000, ms(100), ms(20)), 32_000);
        // A slow server: the floor stands.
        assert_eq!(next_batch_rows(2_000, 2_000, ms(10_000), ms(20)), 2_000);
        // A commit no longer than its round trips: the largest batch.
        assert_eq!(next_batch_rows(2_000, 2_000, ms(50), ms(20)), max_rows());
    }
}
