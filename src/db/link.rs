//! The link to the database: the pool a run draws on, its first
//! connections opened while the run gets ready, and the measured round trip
//! the writers and the fleet fit themselves to.

use super::{Db, Pool};
use anyhow::Result;
use postgres::GenericClient;
use r2d2_postgres::PostgresConnectionManager;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Pings at most; the probe ends sooner on a database next door.
const PINGS: usize = 5;
/// Pings enough for a database clearly far (both at least twice `near`):
/// the faster is its round trip, each ping costing a round trip before the
/// run starts.
const FAR_PINGS: usize = 2;
/// How long a warming connection waits for the others before it goes back.
const WARM_HOLD: Duration = Duration::from_secs(2);

impl Db {
    /// A pool of `size` connections, at most `max_db_connections`, opened
    /// lazily by r2d2's own threads; `warm` of them are opened at once in
    /// the background (each costs several round trips: TCP, TLS, startup),
    /// while the caller checks the schema and times the link on its own
    /// connection. The caller has connected already, so a refusing server
    /// has said why; a pool that cannot connect later says so on `get`.
    pub fn pool(&self, size: u32, warm: usize) -> Pool {
        let manager = PostgresConnectionManager::new(self.config.clone(), self.tls.clone());
        let pool = r2d2::Pool::builder()
            .max_size(size.clamp(1, self.max_connections))
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(10))
            // No probe round trip per checkout (it cost one per ledger call,
            // ten per pair of a fleet, 10 ms each with the database 10 ms
            // away): a connection found broken by its statement is dropped
            // on return, and the statement retried on another.
            .test_on_check_out(false)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .connection_customizer(Box::new(NoJit))
            .build_unchecked(manager);
        warm_up(&pool, warm.min(pool.max_size() as usize));
        pool
    }
}

/// Turns JIT compilation off for each pooled session. A fleet's ledger
/// statements cover a wave of pairs and every day each has loaded, so once
/// the ledger holds months of nights the planner costs them past
/// `jit_above_cost`, and compiling one took longer (~145 ms) than running
/// it; atlas's other statements are small. A server without JIT (before
/// PostgreSQL 11) has no such setting, and nothing is set.
#[derive(Debug)]
struct NoJit;

impl r2d2::CustomizeConnection<postgres::Client, postgres::Error> for NoJit {
    fn on_acquire(&self, c: &mut postgres::Client) -> Result<(), postgres::Error> {
        // Only a hint: a session that refuses it works as well, slower.
        if let Err(e) = c.batch_execute(
            "SELECT set_config('jit', 'off', false) FROM pg_settings WHERE name = 'jit'",
        ) {
            log::debug!("JIT left as the server has it: {e}");
        }
        Ok(())
    }
}

/// Opens `n` connections of `pool` in the background: `n` threads each take
/// one and hold it until all are taken (or `WARM_HOLD` passed), so r2d2
/// opens `n` rather than handing the first one round.
fn warm_up(pool: &Pool, n: usize) {
    let taken = Arc::new((Mutex::new(0usize), Condvar::new()));
    for _ in 0..n {
        let (pool, taken) = (pool.clone(), Arc::clone(&taken));
        std::thread::spawn(move || {
            let Ok(conn) = pool.get_timeout(WARM_HOLD) else {
                return;
            };
            let (count, all) = &*taken;
            let mut k = count.lock().unwrap_or_else(|p| p.into_inner());
            *k += 1;
            all.notify_all();
            let deadline = Instant::now() + WARM_HOLD;
            while *k < n {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                k = all
                    .wait_timeout(k, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            drop(k);
            drop(conn);
        });
    }
}

/// The database's round trip: the fastest of a few trivial queries (the
/// others were slowed by chance; on a busy machine a database next door
/// must not pass for a far one). A ping under `near` ends the probe: the
/// database is next door. One clearly far (at least twice `near`) is
/// timed by the fastest of `FAR_PINGS`; in between, of all `PINGS`.
/// `seen`: a round trip the caller timed already on `conn` (the schema
/// check), counted as the first ping.
pub fn round_trip(
    conn: &mut impl GenericClient,
    near: Duration,
    seen: Duration,
) -> Result<Duration> {
    let mut best = seen;
    for pings in 1..PINGS {
        if best < near || pings >= FAR_PINGS && best >= near * 2 {
            break;
        }
        let t = Instant::now();
        conn.batch_execute("SELECT 1")?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}
