//! How many threads a fleet gives its ledger work (deciding pairs,
//! starting and closing their runs) and how many writers its crew has, for
//! the database's measured round trip. Pure.

use std::time::Duration;

/// A round trip below this is a database next door: deciding pairs is
/// work for the cores the crew and the server share, not waiting.
const NEAR: Duration = Duration::from_millis(2);

/// Connections of the pool kept for the fetchers' statements (claims,
/// heartbeats, slice ends), which hold one only for a statement.
const FETCHERS_ROOM: usize = 2;

/// The fleet's threads on the ledger and its writers.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Pace {
    /// Threads that decide pairs and start their runs, and as many that close them.
    pub(super) deciders: usize,
    pub(super) writers: usize,
}

/// The pace of a fleet of `threads` fetchers on `cores` cores, whose
/// writers `scrap run` would size to `planned` (`tune::plan`), its pool
/// holding `pool` connections, the database `round_trip` away.
///
/// Near the database, no more deciders than cores (measured: 8 against 2
/// cores start the fleet ~0.1 s later than 2) and the planned writers.
/// Across the network each pair is a handful of sequential round trips
/// spent waiting, and a fleet's batches are small (a table's rows of a
/// page or two) so each is mostly its commit's round trips: as many
/// deciders and writers as fetchers, sharing the pool's connections but
/// for the fetchers' room.
pub(super) fn pace(
    threads: usize,
    cores: usize,
    planned: usize,
    pool: usize,
    round_trip: Duration,
) -> Pace {
    if round_trip < NEAR {
        return Pace {
            deciders: threads.min(cores).max(1),
            writers: planned,
        };
    }
    let share = pool.saturating_sub(FETCHERS_ROOM).max(2);
    let writers = threads
        .max(planned)
        .min(share / 2)
        .max(planned.min(share - 1));
    let deciders = threads.min(share - writers).max(1);
    Pace { deciders, writers }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn p(deciders: usize, writers: usize) -> Pace {
        Pace { deciders, writers }
    }

    #[test]
    fn near_the_database_deciders_stay_within_the_cores() {
        assert_eq!(pace(8, 2, 2, 16, MS(0)), p(2, 2));
        assert_eq!(pace(1, 2, 3, 16, MS(1)), p(1, 3));
        assert_eq!(pace(0, 0, 2, 16, MS(0)), p(1, 2), "at least one");
    }

    #[test]
    fn across_the_network_deciders_and_writers_share_the_pool() {
        assert_eq!(pace(8, 2, 3, 40, MS(10)), p(8, 8));
        assert_eq!(pace(8, 2, 3, 16, MS(10)), p(7, 7), "16 connections");
        assert_eq!(
            pace(8, 2, 12, 40, MS(10)),
            p(8, 12),
            "planned writers stand"
        );
        assert_eq!(pace(8, 2, 12, 16, MS(10)), p(2, 12));
    }

    #[test]
    fn a_tiny_pool_keeps_one_decider_and_one_writer() {
        assert_eq!(pace(8, 2, 2, 4, MS(10)), p(1, 1));
        assert_eq!(pace(8, 2, 1, 1, MS(10)), p(1, 1));
    }
}
