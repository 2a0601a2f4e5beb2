//! Every documented promise true (issue 11), scheduler commands: exit 2
//! changes nothing, `--json` always carries its keys, the sync lock cannot
//! collide, strict dates, the zero-record warning, `check --date` and the
//! `scrap list` column. Shared helpers live in `promises_run`.

use crate::promises_run::{
    config, first_line, new_atlas, rows, set_env, show, table_exists, FROM, JSON_KEYS, TO,
};
use crate::util::{self, sized_route, sync_args, Api, Bg, TestDb};
use serde_json::json;
use std::time::Duration;

// ------------------------------------------------------------ 1, 2: sync refuses before writing

#[test]
fn sync_with_a_missing_secret_exits_2_and_changes_nothing() {
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let db = TestDb::new("prom_secret");
    let mut cfg = config(&api.url);
    cfg["clients"]["2151"]["auth"] =
        json!({ "type": "bearer", "token_env": "ATLAS_TEST_UNSET_TOKEN" });
    let atlas = new_atlas(&db, &cfg);
    atlas.ok(&["init"]);
    for attempt in 1..=2 {
        let r = atlas.run(&sync_args(&["--from", FROM, "--until", TO]));
        assert_eq!(r.code, 2, "attempt {attempt}: {}", show(&r));
        assert!(
            r.stderr.contains("ATLAS_TEST_UNSET_TOKEN"),
            "the error names the variable: {}",
            show(&r)
        );
    }
    assert_eq!(db.i64("SELECT count(*) FROM atlas.scraps"), 0, "no scrap");
    assert_eq!(db.i64("SELECT count(*) FROM atlas.slices"), 0, "no slice");
    assert_eq!(db.i64("SELECT count(*) FROM atlas.runs"), 0, "no run");
    assert!(!table_exists(&db), "no raw table");
    assert_eq!(api.requests(), 0, "no request");
}

#[test]
fn sync_from_after_until_is_refused_with_exit_2() {
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let db = TestDb::new("prom_order");
    let atlas = new_atlas(&db, &config(&api.url));
    atlas.ok(&["init"]);
    let r = atlas.run(&sync_args(&[
        "--from",
        "2025-03-10",
        "--until",
        "2025-03-05",
        "--json",
    ]));
    assert_eq!(r.code, 2, "{}", show(&r));
    assert!(
        r.stderr.contains("--from") && r.stderr.contains("--until"),
        "the error names both flags: {}",
        show(&r)
    );
    assert_eq!(db.i64("SELECT count(*) FROM atlas.scraps"), 0);
}

#[test]
fn dates_must_be_written_in_full() {
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let db = TestDb::new("prom_daysfmt");
    let atlas = new_atlas(&db, &config(&api.url));
    atlas.ok(&["init"]);
    for args in [
        vec![
            "scrap", "create", "--client", "2151", "--route", "pedidos", "--from", "2025-3-1",
            "--to", TO,
        ],
        sync_args(&["--from", "2025-03-01", "--until", "2025-3-5"]),
    ] {
        let r = atlas.run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", show(&r));
        assert!(r.stderr.contains("YYYY-MM-DD"), "{}", show(&r));
    }
    assert_eq!(db.i64("SELECT count(*) FROM atlas.scraps"), 0);
}

// ------------------------------------------------------------ 7, 10, 11: check and --json

#[test]
fn check_without_the_control_schema_exits_2() {
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let db = TestDb::new("prom_checkschema");
    let atlas = new_atlas(&db, &config(&api.url));
    let r = atlas.run(&["check", "--no-probe"]);
    assert_eq!(r.code, 2, "{}", show(&r));
    assert!(r.stdout.contains("atlas init"), "{}", show(&r));
}

#[test]
fn check_date_probes_the_chosen_day() {
    let api = Api::start(&["--per-day", "7", "--page-size", "50"]);
    let db = TestDb::new("prom_checkdate");
    let atlas = new_atlas(&db, &config(&api.url));
    atlas.ok(&["init"]);
    let r = atlas.ok(&["check", "--date", "2025-03-02"]);
    assert!(
        r.stdout.contains("5 records on page 1 for 2025-03-02"),
        "page size 5 of 7 records: {}",
        show(&r)
    );
    assert_eq!(atlas.run(&["check", "--date", "2025-3-2"]).code, 2);
}

#[test]
fn sync_json_always_carries_every_documented_key() {
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let db = TestDb::new("prom_json");
    let atlas = new_atlas(&db, &config(&api.url));
    atlas.ok(&["init"]);
    let args = [
        "sync", "--client", "2151", "--route", "pedidos", "--from", FROM, "--until", TO, "--json",
    ];
    let first = atlas.ok(&args).json();
    // Nothing new: --until before what is loaded, lookback 0.
    let none = atlas
        .ok(&sync_args(&[
            "--until",
            TO,
            "--lookback-days",
            "0",
            "--json",
        ]))
        .json();
    for (what, j) in [("first", &first), ("nothing new", &none)] {
        for k in JSON_KEYS.iter().chain(["loaded_until"].iter()) {
            assert!(j.get(*k).is_some(), "{what}: key {k} missing: {j}");
        }
    }
    assert_eq!(none["status"], "up_to_date");
    assert_eq!(none["loaded_until"], TO);
    assert_eq!(none["inserted"], 0);
    assert!(none["scrap_id"].is_null(), "{none}");
    assert_eq!(first["loaded_until"], TO, "{first}");
}

#[test]
fn a_scrap_that_fetched_nothing_anywhere_warns() {
    // The API reads the end param as exclusive; the route sends it inclusive.
    let api = Api::start(&[
        "--per-day",
        "10",
        "--page-size",
        "5",
        "--end-style",
        "exclusive",
    ]);
    let db = TestDb::new("prom_zero");
    let atlas = new_atlas(&db, &config(&api.url));
    let id = atlas.create("pedidos", FROM, FROM);
    let r = atlas.ok(&["scrap", "run", &id]);
    assert_eq!(rows(&db), 0);
    assert!(
        r.stderr.contains("Nenhum registro"),
        "a zero-record scrap warns: {}",
        show(&r)
    );
    // A scrap that loads records does not warn (an API that reads the end
    // as inclusive: against the exclusive one every one-day slice is empty).
    let api2 = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let atlas2 = new_atlas(&db, &config(&api2.url));
    let id2 = atlas2.create("pedidos", "2025-03-02", "2025-03-03");
    let r2 = atlas2.ok(&["scrap", "run", &id2]);
    assert!(rows(&db) > 0);
    assert!(!r2.stderr.contains("Nenhum registro"), "{}", show(&r2));
}

#[test]
fn scrap_list_names_its_inserted_column() {
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let db = TestDb::new("prom_list");
    let atlas = new_atlas(&db, &config(&api.url));
    let id = atlas.create("pedidos", FROM, "2025-03-02");
    atlas.ok(&["scrap", "run", &id]);
    let r = atlas.ok(&["scrap", "list"]);
    let header: Vec<&str> = first_line(&r.stdout).split_whitespace().collect();
    assert!(header.contains(&"inserted"), "{}", r.stdout);
    assert!(!header.contains(&"rows"), "{}", r.stdout);
    let row: Vec<&str> = r
        .stdout
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    let col = header
        .iter()
        .position(|h| *h == "inserted")
        .expect("column");
    // The period column holds three words ("A até B").
    assert_eq!(row[col + 2], "20", "{}", r.stdout);
}

// ------------------------------------------------------------ 18: the sync lock cannot collide

#[test]
fn syncs_of_pairs_whose_old_lock_keys_collide_run_side_by_side() {
    let api = Api::start(&["--per-day", "30", "--page-size", "10", "--latency-ms", "60"]);
    let db = TestDb::new("prom_lock");
    // Two route names whose `hashtext('atlas-sync:2151:<route>')` collide
    // (grouped, not self-joined: with LIMIT 1 the planner picks a nested loop
    // over 300k x 300k rows that runs for minutes).
    let pair = db.strings(
        "WITH n AS (SELECT 'r' || i AS r, hashtext('atlas-sync:2151:r' || i) AS h
                    FROM generate_series(1, 300000) i)
         SELECT min(r) || ' ' || max(r) FROM n GROUP BY h HAVING count(*) > 1 LIMIT 1",
    );
    let pair: Vec<&str> = pair.first().expect("a colliding pair").split(' ').collect();
    let (a, b) = (pair[0], pair[1]);
    let mut cfg = config(&api.url);
    cfg["routes"] = json!({ a: sized_route(5), b: sized_route(5) });
    let mut atlas = new_atlas(&db, &cfg);
    set_env(&mut atlas, "ATLAS_THREADS", "1");
    atlas.ok(&["init"]);
    let mut first = Bg::spawn(
        &atlas,
        &[
            "sync", "--client", "2151", "--route", a, "--from", FROM, "--until", TO,
        ],
        "a",
    );
    util::wait_for("the first sync running", Duration::from_secs(20), || {
        db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'running'") > 0
    });
    let r = atlas.run(&[
        "sync",
        "--client",
        "2151",
        "--route",
        b,
        "--from",
        FROM,
        "--until",
        "2025-03-01",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", show(&r));
    assert!(
        !r.stderr.contains("em andamento"),
        "an unrelated pair is not busy: {}",
        show(&r)
    );
    assert_eq!(r.json()["status"], "done", "{}", show(&r));
    assert_eq!(first.finish(Duration::from_secs(60)).code, 0);
}
