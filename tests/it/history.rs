//! A pair's history read without reading it all: a sync records the span
//! of days it found loaded (`atlas.sync_pairs.loaded_from`/`loaded_to`)
//! and the next reads the slices of the scraps reaching outside it only.
//! The days decided are the same as from every slice: gaps and scraps
//! before or past the span still count, and the span grows night by night.

use crate::util::{self, sync_json as sync, Api, Atlas, TestDb};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The sample API (5 records a day, its requests logged), a database and
/// atlas configured with `routes`; the log's directory lives as long as
/// the test holds it.
fn setup(tag: &str, routes: Value) -> (tempfile::TempDir, PathBuf, Api, TestDb, Atlas) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let api = Api::start(&[
        "--per-day",
        "5",
        "--request-log",
        log.to_str().expect("path"),
    ]);
    let db = TestDb::new(tag);
    let cfg = Atlas::config(&format!("{}/page", api.url), routes);
    let mut atlas = Atlas::new(&db, &cfg);
    atlas.env.push(("ATLAS_THREADS".into(), "2".into()));
    atlas.ok(&["init"]);
    (dir, log, api, db, atlas)
}

/// The days the API was asked for on `path`.
fn asked(log: &Path, path: &str) -> Vec<String> {
    util::asked_days(log, path)
}

fn clear(log: &Path) {
    std::fs::write(log, "").expect("truncate the log");
}

/// The span recorded for the pair, as `from..to`, or "none".
fn span(db: &TestDb, route: &str) -> String {
    db.strings(&format!(
        "SELECT coalesce(loaded_from::text || '..' || loaded_to::text, 'none')
         FROM atlas.sync_pairs WHERE client = '2151' AND route = '{route}'"
    ))
    .join(",")
}

fn days(from: &str, to: &str) -> Vec<String> {
    let (a, b) = (day(from), day(to));
    a.iter_days()
        .take_while(|d| *d <= b)
        .map(|d| d.to_string())
        .collect()
}

fn day(s: &str) -> chrono::NaiveDate {
    s.parse().expect("date")
}

#[test]
fn a_sync_decides_from_the_span_it_knows_and_the_scraps_outside_it() {
    let (_dir, log, api, db, atlas) =
        setup("history_one", json!({ "pedidos": util::page_route() }));
    atlas.ok(&sync(&["--from", "2024-01-01", "--until", "2024-01-10"]));
    assert_eq!(
        span(&db, "pedidos"),
        "none",
        "nothing was loaded when it decided"
    );
    atlas.ok(&sync(&["--until", "2024-01-12"]));
    assert_eq!(span(&db, "pedidos"), "2024-01-01..2024-01-10");

    // A backfill past the span (a scrap of its own), leaving a gap.
    let id = atlas.create("pedidos", "2024-03-01", "2024-03-05");
    atlas.ok(&["scrap", "run", &id]);
    clear(&log);
    let j = atlas.ok(&sync(&["--until", "2024-03-07"])).json();
    // The gap, the lookback (March 5) and the new days; January 1-12 and
    // March 1-4 skipped, as every slice says.
    let mut want = days("2024-01-13", "2024-02-29");
    want.extend(days("2024-03-05", "2024-03-07"));
    assert_eq!(asked(&log, "/pedidos"), want);
    assert_eq!(j["days_skipped"], 12 + 4, "{j}");
    assert_eq!(j["loaded_until"], "2024-03-07", "{j}");
    assert_eq!(span(&db, "pedidos"), "2024-01-01..2024-01-12");

    // A sync reaching before the span: its days are read the next night.
    clear(&log);
    atlas.ok(&sync(&["--from", "2023-12-28", "--until", "2024-03-08"]));
    let mut want = days("2023-12-28", "2023-12-31");
    want.extend(days("2024-03-07", "2024-03-08"));
    assert_eq!(asked(&log, "/pedidos"), want);
    clear(&log);
    let j = atlas.ok(&sync(&["--until", "2024-03-09"])).json();
    assert_eq!(asked(&log, "/pedidos"), days("2024-03-08", "2024-03-09"));
    assert_eq!(j["days_skipped"], 4 + 31 + 29 + 7, "{j}");
    assert_eq!(span(&db, "pedidos"), "2023-12-28..2024-03-08");
    util::assert_exact(&db, api.expected("2023-12-28", "2024-03-09"), "all days");

    // The span is what the sync reads inside it: days it claims are not
    // asked for again (here written by hand: March 10-20 were never loaded).
    db.client()
        .batch_execute("UPDATE atlas.sync_pairs SET loaded_to = '2024-03-20'")
        .expect("widen the span");
    clear(&log);
    let j = atlas.ok(&sync(&["--until", "2024-03-22"])).json();
    assert_eq!(asked(&log, "/pedidos"), days("2024-03-20", "2024-03-22"));
    assert_eq!(j["loaded_until"], "2024-03-22", "{j}");
    // `status` reads the same days: no gap where the span says loaded.
    let j = atlas.run(&["status", "--json"]).json();
    let p = &j["pairs"][0];
    assert_eq!(p["loaded_until"], "2024-03-22", "{p}");
    assert_eq!(p["gaps"], json!([]), "{p}");
    // Nothing new: the sync says so, loaded up to the same day.
    let j = atlas.ok(&sync(&["--until", "2024-03-22"])).json();
    let said = (j["status"].as_str(), j["loaded_until"].as_str());
    assert_eq!(said, (Some("up_to_date"), Some("2024-03-22")), "{j}");
}

#[test]
fn a_fleet_decides_and_closes_from_the_spans_it_knows() {
    let routes =
        json!({ "pedidos": util::route_at("/pedidos"), "notas": util::route_at("/notas") });
    let (_dir, log, _api, db, atlas) = setup("history_fleet", routes);
    let all = |until: &'static str| {
        let j = atlas
            .ok(&[
                "sync",
                "--all",
                "--json",
                "--from",
                "2024-01-01",
                "--until",
                until,
            ])
            .json();
        assert_eq!(j["exit_code"], 0, "{j}");
        j
    };
    all("2024-01-05");
    let next = |until: &str| {
        let j = atlas
            .ok(&["sync", "--all", "--json", "--until", until])
            .json();
        assert_eq!(j["exit_code"], 0, "{j}");
        j
    };
    next("2024-01-06");
    assert_eq!(span(&db, "pedidos"), "2024-01-01..2024-01-05");
    assert_eq!(span(&db, "notas"), "2024-01-01..2024-01-05");
    next("2024-01-07");
    assert_eq!(span(&db, "notas"), "2024-01-01..2024-01-06");

    // One pair's span claims days never loaded: the fleet reads it (and
    // so skips them, and counts them loaded); the other pair is unchanged.
    db.client()
        .batch_execute("UPDATE atlas.sync_pairs SET loaded_to = '2024-01-15' WHERE route = 'notas'")
        .expect("widen the span");
    clear(&log);
    let j = next("2024-01-16");
    assert_eq!(asked(&log, "/notas"), days("2024-01-15", "2024-01-16"));
    assert_eq!(asked(&log, "/pedidos"), days("2024-01-07", "2024-01-16"));
    let pairs = j["pairs"].as_array().expect("pairs");
    for p in pairs {
        assert_eq!(p["loaded_until"], "2024-01-16", "{p}");
    }
    assert_eq!(span(&db, "pedidos"), "2024-01-01..2024-01-07");
}
