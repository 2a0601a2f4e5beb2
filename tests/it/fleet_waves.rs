//! `atlas sync --all` over more pairs than a wave (decided, started and
//! closed a wave at a time, in one statement each for the wave): every
//! table loaded exactly, two fleets at once over the same pairs each
//! loading a pair's slices once, and the next night only the new days.

use crate::util::{request_log, route_at, two_at_once, Api, Atlas, TestDb};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

/// Clients of the fleet, two routes each: 300 pairs, more than a wave (256).
const CLIENTS: usize = 150;

/// `n` clients numbered from `first` on the sample API, two routes each.
fn config(api: &Api, first: usize, n: usize) -> Value {
    let clients: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            (
                format!("{}", first + i),
                json!({ "name": format!("C{i}"), "base_url": format!("{}/page", api.url) }),
            )
        })
        .collect();
    json!({
        "clients": clients,
        "routes": { "pedidos": route_at("/pedidos"), "notas": route_at("/notas") }
    })
}

fn tables(db: &TestDb) -> Vec<String> {
    db.strings(
        "SELECT tablename::text FROM pg_tables
         WHERE tablename LIKE 'dados_raw_cliente_%' ORDER BY 1",
    )
}

/// Every raw table holds `expected` rows, all distinct.
fn assert_all_exact(db: &TestDb, expected: i64) {
    let all = tables(db);
    assert_eq!(all.len(), 2 * CLIENTS, "one table per pair");
    let counts = all
        .iter()
        .map(|t| {
            format!("SELECT '{t}' AS t, count(*) AS n, count(DISTINCT hash_conteudo) AS d FROM {t}")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let wrong = db.strings(&format!(
        "SELECT t || ': ' || n || ' rows, ' || d || ' distinct' FROM ({counts}) c
         WHERE n <> {expected} OR d <> {expected}"
    ));
    assert!(wrong.is_empty(), "tables not loaded exactly: {wrong:?}");
}

#[test]
fn two_fleets_of_more_pairs_than_a_wave_load_each_pair_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("api.log");
    let api = Api::start(&[
        "--per-day",
        "4",
        "--page-size",
        "5",
        "--latency-ms",
        "2",
        "--request-log",
        log.to_str().unwrap(),
    ]);
    let db = TestDb::new("fleetwaves");
    let mut atlas = Atlas::new(&db, &config(&api, 3000, CLIENTS));
    atlas.env.push(("ATLAS_THREADS".into(), "4".into()));
    atlas.ok(&["init"]);
    let (from, until) = ("2025-03-01", "2025-03-02");
    let per_pair = api.expected(from, until);
    let cmd = ["sync", "--all", "--json", "--from", from, "--until", until];
    let (ra, rb) = two_at_once(&atlas, &cmd, Duration::from_secs(300));
    assert_all_exact(&db, per_pair);
    let (ja, jb) = (ra.json(), rb.json());
    for j in [&ja, &jb] {
        assert_eq!(j["pairs"].as_array().map(Vec::len), Some(2 * CLIENTS));
    }
    let inserted =
        ja["totals"]["inserted"].as_i64().unwrap() + jb["totals"]["inserted"].as_i64().unwrap();
    assert_eq!(
        inserted,
        2 * CLIENTS as i64 * per_pair,
        "each record inserted by one process"
    );
    // Each slice fetched by one process: every client asks the same
    // pages (one API), each page once per client.
    let mut asked: std::collections::HashMap<String, usize> = Default::default();
    for r in request_log(&log) {
        *asked.entry(r.url).or_default() += 1;
    }
    assert_eq!(asked.len(), 2 * 2, "2 routes × 2 days, one page each");
    for (url, n) in &asked {
        assert_eq!(*n, CLIENTS, "{url} asked {n} times");
    }
    // One scrap per pair: its period was decided once, under its lock.
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.scraps"),
        2 * CLIENTS as i64
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.slices WHERE status <> 'done'"),
        0
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.runs WHERE status <> 'done' OR finished_at IS NULL"),
        0,
        "every run closed done"
    );
    // Every pair told once by each process, each on its own line.
    for r in [&ra, &rb] {
        let begun = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("🧩 pares ") && !l.contains(" | "))
            .count();
        assert_eq!(begun, 2 * CLIENTS, "{}", r.stderr);
    }

    // The next night: the new day and the lookback day, by one fleet.
    let next = "2025-03-03";
    let r = atlas.ok(&["sync", "--all", "--json", "--until", next]);
    let j = r.json();
    assert_eq!(j["exit_code"], 0);
    let pairs = j["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2 * CLIENTS);
    for p in pairs {
        assert_eq!(p["status"], "done", "{p}");
        assert_eq!(p["slices_total"], 2, "{p}");
        assert_eq!(p["slices_done_by_run"], 2, "{p}");
        assert_eq!(p["loaded_until"], next, "{p}");
        assert_eq!(p["days_skipped"], 1, "{p}");
    }
    assert_all_exact(&db, api.expected(from, next));
    // Nothing left to do a third time: every pair up to date.
    let j = atlas
        .ok(&["sync", "--all", "--json", "--until", next])
        .json();
    let statuses: HashSet<String> = j["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, HashSet::from(["up_to_date".to_string()]));
}

/// A wave's missing tables are created together; one that cannot be made
/// (a relation already holds its index's name) fails its own pair only:
/// the others of its transaction are made one by one and load exactly.
#[test]
fn a_table_that_cannot_be_made_fails_its_pair_alone() {
    let api = Api::start(&["--per-day", "4", "--page-size", "5"]);
    let db = TestDb::new("fleettables");
    let atlas = Atlas::new(&db, &config(&api, 5000, 20));
    atlas.ok(&["init"]);
    db.client()
        .batch_execute("CREATE TABLE idx_dados_raw_cliente_5007_notas_data_referencia (x int)")
        .unwrap();
    let (from, until) = ("2025-03-01", "2025-03-02");
    let r = atlas.run(&["sync", "--all", "--json", "--from", from, "--until", until]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    let pairs = j["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 40);
    for p in pairs {
        let bad = p["client"] == "5007" && p["route"] == "notas";
        if bad {
            assert_ne!(p["status"], "done", "{p}");
            assert!(p.to_string().contains("cannot create the raw table"), "{p}");
        } else {
            assert_eq!(p["status"], "done", "{p}");
        }
    }
    let made = tables(&db);
    assert_eq!(made.len(), 39, "{made:?}");
    let per_pair = api.expected(from, until);
    for t in made {
        assert_eq!(
            db.i64(&format!("SELECT count(DISTINCT hash_conteudo) FROM {t}")),
            per_pair
        );
        assert_eq!(db.i64(&format!("SELECT count(*) FROM {t}")), per_pair);
    }
}

/// On a first night each wave's missing tables are made while the wave
/// before it loads: the second wave's tables are committed before its
/// scraps are created (the first wave's, after). A table that cannot be made ahead is
/// left to its wave, which fails its pair alone.
#[test]
fn the_next_waves_tables_are_made_while_a_wave_loads() {
    let api = Api::start(&["--per-day", "2", "--page-size", "5"]);
    let db = TestDb::new("fleetahead");
    // Client 6130 (pairs 260 and 261) lacks its secret: refused before
    // anything of it is written, so no table is made for it ahead either.
    let mut cfg = config(&api, 6000, CLIENTS);
    cfg["clients"]["6130"]["auth"] =
        json!({ "type": "bearer", "token_env": "ATLAS_TOKEN_AHEAD_UNSET" });
    let mut atlas = Atlas::new(&db, &cfg);
    atlas.env.push(("ATLAS_THREADS".into(), "4".into()));
    atlas.ok(&["init"]);
    // Pair 280 of 300 (client 6140, notas): in the second wave.
    db.client()
        .batch_execute("CREATE TABLE idx_dados_raw_cliente_6140_notas_data_referencia (x int)")
        .unwrap();
    let (from, until) = ("2025-03-01", "2025-03-01");
    let r = atlas.run(&["sync", "--all", "--json", "--from", from, "--until", until]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    let j = r.json();
    let pairs = j["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2 * CLIENTS);
    for p in pairs {
        if p["client"] == "6140" && p["route"] == "notas" {
            assert!(p.to_string().contains("cannot create the raw table"), "{p}");
        } else if p["client"] == "6130" {
            assert!(p.to_string().contains("ATLAS_TOKEN_AHEAD_UNSET"), "{p}");
        } else {
            assert_eq!(p["status"], "done", "{p}");
        }
    }
    let made = tables(&db);
    assert_eq!(made.len(), 2 * CLIENTS - 3, "{made:?}");
    assert!(!made.iter().any(|t| t.contains("6130")), "{made:?}");
    let per_pair = api.expected(from, until);
    let wrong: Vec<String> = made
        .iter()
        .filter(|t| db.i64(&format!("SELECT count(DISTINCT hash_conteudo) FROM {t}")) != per_pair)
        .cloned()
        .collect();
    assert!(wrong.is_empty(), "not loaded exactly: {wrong:?}");
    // Each scrap's table made before (ahead) or after (by its wave) the
    // scrap (never updated), by the order of their transactions.
    let ahead = |order: &str| {
        db.strings(&format!(
            "SELECT (c.xmin::text::bigint < s.xmin::text::bigint)::text
             FROM atlas.scraps s
             JOIN pg_class c ON c.relname = s.raw_table AND c.relkind = 'r'
             ORDER BY s.id {order} LIMIT 40"
        ))
    };
    let first = ahead("ASC");
    assert_eq!(first.len(), 40);
    assert!(first.iter().all(|a| a == "false"), "first wave: {first:?}");
    let second = ahead("DESC");
    assert_eq!(second.len(), 40);
    assert!(
        second.iter().all(|a| a == "true"),
        "second wave: {second:?}"
    );
}
