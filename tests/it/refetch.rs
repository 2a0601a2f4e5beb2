//! The lookback's days, fetched again, go in by `INSERT … ON CONFLICT` at
//! once: no COPY meets their stored rows and is rolled back. Such a COPY
//! inserts rows before it fails; PostgreSQL counts them in the raw table's
//! `n_tup_ins` (and leaves them dead), so the count tells.

use crate::util::{self, sync_json as sync, Api, Atlas, TestDb};
use serde_json::json;
use std::time::{Duration, Instant};

/// Rows ever inserted into the raw table, committed or rolled back, once
/// every other session of the database has ended (a session's counts
/// reach the statistics when it ends).
fn ever_inserted(db: &TestDb) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.i64(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    ) > 0
    {
        assert!(Instant::now() < deadline, "atlas's sessions did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    db.i64(
        "SELECT n_tup_ins FROM pg_stat_user_tables
         WHERE relname = 'dados_raw_cliente_2151_pedidos'",
    )
}

#[test]
fn a_lookback_day_goes_in_without_a_copy_meeting_its_rows() {
    let api = Api::start(&["--per-day", "5"]);
    let db = TestDb::new("refetch");
    let cfg = Atlas::config(
        &format!("{}/page", api.url),
        json!({ "pedidos": util::page_route() }),
    );
    let mut atlas = Atlas::new(&db, &cfg);
    atlas.env.push(("ATLAS_THREADS".into(), "2".into()));
    atlas.ok(&["init"]);
    atlas.ok(&sync(&["--from", "2024-01-01", "--until", "2024-01-03"]));
    assert_eq!(ever_inserted(&db), 15);
    // January 3 again (the lookback) and January 4: only the new day's
    // rows were ever inserted.
    let j = atlas.ok(&sync(&["--until", "2024-01-04"])).json();
    assert_eq!(
        (j["inserted"].as_i64(), j["duplicates"].as_i64()),
        (Some(5), Some(5)),
        "{j}"
    );
    assert_eq!(ever_inserted(&db), 20);
    // The same in a fleet.
    let j = atlas
        .ok(&["sync", "--all", "--json", "--until", "2024-01-05"])
        .json();
    assert_eq!(j["totals"]["inserted"], 5, "{j}");
    assert_eq!(ever_inserted(&db), 25);
    util::assert_exact(&db, api.expected("2024-01-01", "2024-01-05"), "loaded");
}
