//! No day lost, none fetched twice (issue 29): a last day after today is
//! refused, today is loaded as `open` and fetched again by the next sync,
//! a sync fetches only the days no scrap of the pair loaded (plus the
//! lookback), a killed sync is resumed by the next one, a refused grant
//! writes nothing, and `sync --all` against a refused database fails fast.

use crate::util::{self, create_args, sync_args, Api, Atlas, Bg, TestDb};
use chrono::{Duration as Days, NaiveDate, Utc};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The route of these tests: one page a day, dated in UTC so the test
/// knows what "today" is for it.
fn route() -> Value {
    let mut r = util::page_route();
    r["timezone"] = json!("UTC");
    r
}

fn setup(tag: &str, api_args: &[&str]) -> (Api, TestDb, Atlas) {
    let api = Api::start(api_args);
    let db = TestDb::new(tag);
    let cfg = Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route() }));
    let mut atlas = Atlas::new(&db, &cfg);
    atlas.env.push(("ATLAS_THREADS".into(), "2".into()));
    atlas.ok(&["init"]);
    (api, db, atlas)
}

fn sync<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    util::sync_json(extra)
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// The days the API was asked for (`data_inicial` of each data request).
fn asked_days(log: &std::path::Path) -> Vec<String> {
    util::asked_days(log, "")
}

#[test]
fn a_last_day_after_today_is_refused_and_nothing_changes() {
    let (_api, db, atlas) = setup("days_future", &[]);
    let tomorrow = (today() + Days::days(1)).to_string();
    let run = atlas.expect(&sync(&["--from", "2025-01-01", "--until", &tomorrow]), 2);
    let said = format!("--until {tomorrow} is after today ({} in +00:00", today());
    assert!(run.stderr.contains(&said), "{}", run.stderr);
    let run = atlas.expect(&create_args("2151", "pedidos", "2025-01-01", &tomorrow), 2);
    assert!(run.stderr.contains("is after today"), "{}", run.stderr);
    let run = atlas.expect(&["sync", "--all", "--until", &tomorrow], 2);
    assert!(run.stderr.contains("is after today"), "{}", run.stderr);
    for t in [
        "atlas.scraps",
        "atlas.slices",
        "atlas.runs",
        "atlas.sync_pairs",
    ] {
        assert_eq!(db.i64(&format!("SELECT count(*) FROM {t}")), 0, "{t}");
    }
}

#[test]
fn today_is_loaded_open_and_fetched_again_by_the_next_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let (api, db, atlas) = setup(
        "days_open",
        &[
            "--per-day",
            "10",
            "--request-log",
            log.to_str().expect("path"),
        ],
    );
    let from = (today() - Days::days(2)).to_string();
    let t = today().to_string();
    let j = atlas.ok(&sync(&["--from", &from, "--until", &t])).json();
    assert_eq!(j["status"], "done", "{j}");
    assert_eq!(j["slices_done"], 3, "{j}");
    assert_eq!(j["slices_open"], 1, "today's slice: {j}");
    assert_eq!(
        db.strings("SELECT status FROM atlas.slices ORDER BY slice_from"),
        ["done", "done", "open"]
    );
    assert_eq!(
        j["loaded_until"],
        json!((today() - Days::days(1)).to_string()),
        "an open day is not loaded for good: {j}"
    );
    // The next sync fetches today again (and the lookback day), nothing older.
    std::fs::write(&log, "").expect("truncate the log");
    let j = atlas.ok(&sync(&["--until", &t])).json();
    assert_eq!(j["status"], "done", "{j}");
    assert_eq!(
        asked_days(&log),
        [(today() - Days::days(1)).to_string(), t.clone()]
    );
    util::assert_exact(&db, api.expected(&from, &t), "today twice, once stored");
}

#[test]
fn a_sync_fetches_only_what_no_scrap_of_the_pair_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let (api, db, atlas) = setup(
        "days_cover",
        &[
            "--per-day",
            "5",
            "--request-log",
            log.to_str().expect("path"),
        ],
    );
    // January by sync, then a separate backfill of March: February is a gap.
    atlas.ok(&sync(&["--from", "2024-01-01", "--until", "2024-01-31"]));
    let id = atlas.create("pedidos", "2024-03-01", "2024-03-31");
    atlas.ok(&["scrap", "run", &id]);
    std::fs::write(&log, "").expect("truncate the log");
    let j = atlas.ok(&sync(&["--until", "2024-04-05"])).json();
    // February (the gap), April 1-5 (new), March 31 (the lookback).
    let mut want: Vec<String> = (1..=29).map(|d| format!("2024-02-{d:02}")).collect();
    want.push("2024-03-31".into());
    want.extend((1..=5).map(|d| format!("2024-04-{d:02}")));
    assert_eq!(asked_days(&log), want);
    assert_eq!(j["days_skipped"], 31 + 30, "January and March 1-30: {j}");
    util::assert_exact(&db, api.expected("2024-01-01", "2024-04-05"), "covered");
    // Everything loaded: nothing is asked for, the lookback alone does not run.
    std::fs::write(&log, "").expect("truncate the log");
    let j = atlas.ok(&sync(&["--until", "2024-04-05"])).json();
    assert_eq!(j["status"], "up_to_date", "{j}");
    assert!(asked_days(&log).is_empty());
}

/// Runs `atlas args` and kills it with SIGKILL once a slice is done.
fn kill9_after_a_slice(db: &TestDb, atlas: &Atlas, args: &[&str]) {
    let done = || db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'done'") > 0;
    util::kill9_when(atlas, args, "a slice done", Duration::from_secs(30), done);
}

#[test]
fn a_killed_sync_is_resumed_by_the_next_one() {
    let (api, db, atlas) = setup("days_resume", &["--per-day", "10", "--latency-ms", "150"]);
    let args = sync(&["--from", "2024-05-01", "--until", "2024-05-20"]);
    kill9_after_a_slice(&db, &atlas, &args);
    assert_eq!(db.i64("SELECT count(*) FROM atlas.scraps"), 1);
    let j = atlas.ok(&sync(&["--until", "2024-05-20"])).json();
    assert_eq!(j["status"], "done", "{j}");
    assert_eq!(j["scrap_id"], 1, "the same scrap, resumed: {j}");
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.scraps"),
        1,
        "no new scrap"
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.runs WHERE status = 'running'"),
        0,
        "the killed run is closed"
    );
    util::assert_exact(&db, api.expected("2024-05-01", "2024-05-20"), "resumed");
}

#[test]
fn scrap_list_closes_the_runs_of_dead_processes() {
    let (_api, db, atlas) = setup("days_list", &["--per-day", "10", "--latency-ms", "150"]);
    let id = atlas.create("pedidos", "2024-06-01", "2024-06-20");
    kill9_after_a_slice(&db, &atlas, &["scrap", "run", &id]);
    let list = atlas.ok(&["scrap", "list"]);
    assert!(!list.stdout.contains("(running)"), "{}", list.stdout);
    assert_eq!(
        db.strings("SELECT status FROM atlas.runs"),
        ["aborted"],
        "closed by scrap list"
    );
}

#[test]
fn sync_all_against_a_refused_database_fails_at_once_with_the_cause() {
    let (_api, _db, mut atlas) = setup("days_refused", &[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    atlas.db_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let started = Instant::now();
    let run = atlas.expect(&["sync", "--all", "--json"], 3);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(run.stderr.contains("refused"), "{}", run.stderr);
}

#[test]
fn a_refused_grant_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = crate::oauth::api(&dir.path().join("tokens.log"), "60", &[]);
    let db = TestDb::new("days_grant");
    let mut atlas = crate::oauth::atlas_with(&db, &api, "client_credentials", |_| {});
    atlas.env.retain(|(k, _)| k != "ATLAS_OAUTH_SECRET_2151");
    atlas
        .env
        .push(("ATLAS_OAUTH_SECRET_2151".into(), "not-the-secret".into()));
    atlas.ok(&["init"]);
    let before = util::database_text(&db);
    let tables = |db: &TestDb| db.i64("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'");
    for args in [
        sync_args(&["--from", "2025-01-01", "--until", "2025-01-02"]),
        vec![
            "sync",
            "--all",
            "--from",
            "2025-01-01",
            "--until",
            "2025-01-02",
        ],
    ] {
        let run = atlas.run(&args);
        assert_ne!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("invalid_client"),
            "{args:?}: {}",
            run.stderr
        );
        assert_eq!(
            util::database_text(&db),
            before,
            "{args:?} changed the database"
        );
        assert_eq!(tables(&db), 0, "{args:?} created a raw table");
    }
}

#[test]
fn two_fleets_started_together_both_exit_0_every_time() {
    let api = Api::start(&["--per-day", "4", "--page-size", "2"]);
    let db = TestDb::new("days_fleets");
    let cfg = json!({
        "clients": {
            "501": { "name": "A", "base_url": format!("{}/page", api.url) },
            "502": { "name": "B", "base_url": format!("{}/page", api.url) }
        },
        "routes": { "pedidos": route(), "notas": route() }
    });
    let mut atlas = Atlas::new(&db, &cfg);
    atlas.env.push(("ATLAS_THREADS".into(), "2".into()));
    atlas.ok(&["init"]);
    let rounds: u32 = std::env::var("ATLAS_FLEET_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let day = NaiveDate::from_ymd_opt(2023, 1, 1).expect("a day");
    for round in 0..rounds {
        // Each round loads two new days of the four pairs, from two processes.
        let until = (day + Days::days(2 * i64::from(round) + 1)).to_string();
        let from = day.to_string();
        let args = [
            "sync", "--all", "--json", "--from", &from, "--until", &until,
        ];
        let mut a = Bg::spawn(&atlas, &args, &format!("a{round}"));
        let mut b = Bg::spawn(&atlas, &args, &format!("b{round}"));
        for (name, run) in [
            ("a", a.finish(Duration::from_secs(60))),
            ("b", b.finish(Duration::from_secs(60))),
        ] {
            let j = run.json();
            assert_eq!(run.code, 0, "round {round}, {name}: {j}\n{}", run.stderr);
            for p in j["pairs"].as_array().expect("pairs") {
                assert!(
                    p["error"].is_null() || p["exit_code"] == 0,
                    "round {round}, {name}: a pair failed without cause: {p}"
                );
            }
        }
    }
    for c in ["501", "502"] {
        for r in ["pedidos", "notas"] {
            let t = format!("dados_raw_cliente_{c}_{r}");
            let n = db.i64(&format!("SELECT count(*) FROM {t}"));
            assert_eq!(n, 4 * (2 * i64::from(rounds)), "{t}");
        }
    }
}
