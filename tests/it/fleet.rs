//! `atlas sync --all`: every configured pair in one command, pairs that
//! cannot start reported without stopping the others, the fleet shared by
//! processes through PostgreSQL (each slice fetched once), and a process
//! killed mid-fleet covered by the other.

use crate::util::{request_log, route_at, two_at_once, Api, Atlas, Bg, TestDb};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

const FROM: &str = "2025-03-01";
const UNTIL: &str = "2025-03-03";
const ROUTES: [&str; 3] = ["pedidos", "notas", "itens"];

fn routes(names: &[&str]) -> Value {
    Value::Object(
        names
            .iter()
            .map(|n| (n.to_string(), route_at(&format!("/{n}"))))
            .collect(),
    )
}

fn table(client: &str, route: &str) -> String {
    format!("dados_raw_cliente_{client}_{route}")
}

fn count(db: &TestDb, t: &str) -> i64 {
    db.i64(&format!("SELECT count(*) FROM {t}"))
}

fn distinct(db: &TestDb, t: &str) -> i64 {
    db.i64(&format!("SELECT count(DISTINCT hash_conteudo) FROM {t}"))
}

/// The pairs of a `--json` fleet report, by "client/route".
fn by_pair(report: &Value) -> HashMap<String, Value> {
    report["pairs"]
        .as_array()
        .unwrap_or_else(|| panic!("no pairs in {report}"))
        .iter()
        .map(|p| {
            (
                format!(
                    "{}/{}",
                    p["client"].as_str().unwrap(),
                    p["route"].as_str().unwrap()
                ),
                p.clone(),
            )
        })
        .collect()
}

fn sync_all(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["sync", "--all", "--json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn twelve_pairs_load_exactly_and_a_pair_that_cannot_start_is_reported() {
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let slow = Api::start(&["--per-day", "10", "--page-size", "5", "--rate-limit", "4"]);
    let db = TestDb::new("fleet12");
    let cfg = json!({
        "clients": {
            "101": { "name": "A", "base_url": format!("{}/page", api.url) },
            "102": { "name": "B", "base_url": format!("{}/page", api.url) },
            "103": { "name": "Limitado", "base_url": format!("{}/page", slow.url) },
            "104": { "name": "Sem segredo", "base_url": format!("{}/page", api.url),
                     "auth": { "type": "bearer", "token_env": "ATLAS_TOKEN_FLEET_104" } }
        },
        "routes": routes(&ROUTES)
    });
    let atlas = Atlas::new(&db, &cfg);
    atlas.ok(&["init"]);
    let expected = api.expected(FROM, UNTIL);
    assert!(expected > 0);

    let run = atlas.expect(&args(&sync_all(&["--from", FROM, "--until", UNTIL])), 1);
    let report = run.json();
    let pairs = by_pair(&report);
    assert_eq!(pairs.len(), 12, "{report}");
    assert_eq!(report["exit_code"], 1);
    for c in ["101", "102", "103"] {
        for r in ROUTES {
            let p = &pairs[&format!("{c}/{r}")];
            assert_eq!(p["status"], "done", "{c}/{r}: {p}");
            assert_eq!(p["inserted"], expected, "{c}/{r}: {p}");
            assert_eq!(p["exit_code"], 0);
            assert_eq!(p["loaded_until"], UNTIL, "{p}");
            assert!(p["error"].is_null());
            assert_eq!(count(&db, &table(c, r)), expected, "{c}/{r}");
            assert_eq!(distinct(&db, &table(c, r)), expected, "{c}/{r}");
        }
    }
    for r in ROUTES {
        let p = &pairs[&format!("104/{r}")];
        assert_eq!(p["status"], "not_started", "{p}");
        assert_eq!(p["exit_code"], 2);
        assert!(
            p["error"]
                .as_str()
                .unwrap()
                .contains("ATLAS_TOKEN_FLEET_104"),
            "{p}"
        );
        assert!(p["scrap_id"].is_null());
    }
    assert_eq!(report["totals"]["pairs"], 12);
    assert_eq!(report["totals"]["pairs_ok"], 9);
    assert_eq!(report["totals"]["pairs_failed"], 3);
    assert_eq!(report["totals"]["inserted"], 9 * expected);
    // The client that could not start left nothing behind.
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.scraps WHERE client = '104'"),
        0
    );
    assert!(
        run.stderr.contains("Par 104 / notas não iniciado"),
        "{}",
        run.stderr
    );
    // Each pair starts with its count; the fleet's progress lines count
    // finished pairs and every lane's records, never more than were loaded.
    assert!(run.stderr.contains("🧩 pares 1/12: "), "{}", run.stderr);
    let progress: Vec<u64> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("🧩 pares ") && l.contains("/12 | "))
        .map(|l| {
            let r = l.split(" | ").find(|p| p.ends_with(" registros")).expect(l);
            r.trim_start_matches("📊 ")
                .trim_end_matches(" registros")
                .replace(',', "")
                .parse()
                .expect(l)
        })
        .collect();
    assert!(
        !progress.is_empty(),
        "no fleet progress line:\n{}",
        run.stderr
    );
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(
        *progress.last().unwrap() <= (9 * expected) as u64,
        "{progress:?}"
    );

    // Same night again: nothing new anywhere.
    let same = atlas
        .expect(&args(&sync_all(&["--until", UNTIL])), 1)
        .json();
    for (k, p) in by_pair(&same) {
        if !k.starts_with("104/") {
            assert_eq!(p["status"], "up_to_date", "{k}: {p}");
        }
    }
    // Next night: the new day, and the lookback day again as duplicates.
    let next = "2025-03-04";
    let per_day = api.expected(UNTIL, UNTIL);
    let again = atlas.expect(&args(&sync_all(&["--until", next])), 1).json();
    for (k, p) in by_pair(&again) {
        if k.starts_with("104/") {
            assert_eq!(p["status"], "not_started");
            continue;
        }
        assert_eq!(p["inserted"], api.expected(next, next), "{k}: {p}");
        assert_eq!(p["duplicates"], per_day, "{k}: {p}");
    }

    // The text report: one row per pair and the totals.
    let text = atlas.expect(
        &[
            "--plain", "sync", "--all", "--until", next, "--client", "101",
        ],
        0,
    );
    for r in ROUTES {
        assert!(
            text.stdout
                .lines()
                .any(|l| l.starts_with("101") && l.contains(r)),
            "{}",
            text.stdout
        );
    }
    assert!(text.stdout.contains("Total: 3 pares"), "{}", text.stdout);
}

#[test]
fn filters_choose_pairs_and_bad_ones_change_nothing() {
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let db = TestDb::new("fleetfilter");
    let cfg = json!({
        "clients": {
            "101": { "name": "A", "base_url": format!("{}/page", api.url) },
            "102": { "name": "B", "base_url": format!("{}/page", api.url), "routes": ["pedidos"] }
        },
        "routes": routes(&["pedidos", "notas"])
    });
    let atlas = Atlas::new(&db, &cfg);
    atlas.ok(&["init"]);
    let r = atlas.expect(
        &args(&sync_all(&[
            "--client", "999", "--from", FROM, "--until", UNTIL,
        ])),
        2,
    );
    assert!(r.stderr.contains("999"), "{}", r.stderr);
    let r = atlas.expect(
        &args(&sync_all(&[
            "--route", "nada", "--from", FROM, "--until", UNTIL,
        ])),
        2,
    );
    assert!(r.stderr.contains("nada"), "{}", r.stderr);
    let r = atlas.expect(&args(&sync_all(&["--from", UNTIL, "--until", FROM])), 2);
    assert!(r.stderr.contains("is after"), "{}", r.stderr);
    // Without --all, sync still needs exactly one pair.
    let r = atlas.expect(&["sync", "--client", "101"], 2);
    assert!(r.stderr.contains("--all"), "{}", r.stderr);
    assert_eq!(db.i64("SELECT count(*) FROM atlas.scraps"), 0);
    assert_eq!(requests_so_far(&api), 0);

    // Client 102 has only pedidos; the filter takes notas of 101 alone.
    let report = atlas
        .ok(&args(&sync_all(&[
            "--route", "notas", "--from", FROM, "--until", UNTIL,
        ])))
        .json();
    let pairs = by_pair(&report);
    assert_eq!(
        pairs.keys().collect::<Vec<_>>(),
        vec!["101/notas"],
        "{report}"
    );
    let report = atlas
        .ok(&args(&sync_all(&[
            "--client", "102", "--from", FROM, "--until", UNTIL,
        ])))
        .json();
    assert_eq!(
        by_pair(&report).keys().collect::<Vec<_>>(),
        vec!["102/pedidos"]
    );
}

fn requests_so_far(api: &Api) -> i64 {
    api.requests()
}

/// Two clients (each on its own sample API, logging its requests) × two
/// routes, six days of two pages, `latency` ms per request.
fn shared_fleet(tag: &str, dir: &std::path::Path, latency: &str) -> (Vec<Api>, TestDb, Atlas) {
    let apis: Vec<Api> = ["201", "202"]
        .iter()
        .map(|c| {
            let log = dir.join(format!("{c}.log"));
            Api::start(&[
                "--per-day",
                "10",
                "--page-size",
                "5",
                "--latency-ms",
                latency,
                "--request-log",
                log.to_str().unwrap(),
            ])
        })
        .collect();
    let db = TestDb::new(tag);
    let cfg = json!({
        "clients": {
            "201": { "name": "A", "base_url": format!("{}/page", apis[0].url) },
            "202": { "name": "B", "base_url": format!("{}/page", apis[1].url) }
        },
        "routes": routes(&["pedidos", "notas"])
    });
    let mut atlas = Atlas::new(&db, &cfg);
    atlas.env.push(("ATLAS_THREADS".into(), "2".into()));
    atlas.env.push(("ATLAS_LEASE_SECS".into(), "3".into()));
    atlas.ok(&["init"]);
    (apis, db, atlas)
}

const SHARED_UNTIL: &str = "2025-03-06";

fn assert_fleet_exact(db: &TestDb, expected: i64) {
    for c in ["201", "202"] {
        for r in ["pedidos", "notas"] {
            assert_eq!(count(db, &table(c, r)), expected, "{c}/{r}");
            assert_eq!(distinct(db, &table(c, r)), expected, "{c}/{r}");
        }
    }
}

#[test]
fn two_processes_share_the_fleet_and_fetch_each_slice_once() {
    let dir = tempfile::tempdir().unwrap();
    let (apis, db, atlas) = shared_fleet("fleettwo", dir.path(), "40");
    let expected = apis[0].expected(FROM, SHARED_UNTIL);
    let cmd = sync_all(&["--from", FROM, "--until", SHARED_UNTIL]);
    let (ra, rb) = two_at_once(&atlas, &args(&cmd), Duration::from_secs(120));
    assert_fleet_exact(&db, expected);
    let inserted: i64 = [ra.json(), rb.json()]
        .iter()
        .map(|r| r["totals"]["inserted"].as_i64().unwrap())
        .sum();
    assert_eq!(
        inserted,
        4 * expected,
        "each record inserted by one process"
    );
    // Each slice fetched by one process: no page asked for twice.
    for c in ["201", "202"] {
        let mut seen = std::collections::HashSet::new();
        for r in request_log(&dir.path().join(format!("{c}.log"))) {
            assert!(
                seen.insert(r.url.clone()),
                "client {c} asked twice: {}",
                r.url
            );
        }
        assert_eq!(
            seen.len(),
            2 * 6 * 2,
            "client {c}: 2 routes × 6 days × 2 pages"
        );
    }
    // One scrap per pair: the period was decided once.
    assert_eq!(db.i64("SELECT count(*) FROM atlas.scraps"), 4);
}

#[test]
fn a_fleet_process_killed_mid_run_is_covered_by_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (apis, db, atlas) = shared_fleet("fleetkill", dir.path(), "40");
    let expected = apis[0].expected(FROM, SHARED_UNTIL);
    let cmd = sync_all(&["--from", FROM, "--until", SHARED_UNTIL]);
    let mut a = Bg::spawn(&atlas, &args(&cmd), "a");
    let mut b = Bg::spawn(&atlas, &args(&cmd), "b");
    crate::util::wait_for("rows in the first table", Duration::from_secs(60), || {
        db.client()
            .query_one(
                "SELECT CASE WHEN to_regclass('dados_raw_cliente_201_notas') IS NULL THEN 0
                 ELSE (SELECT count(*) FROM dados_raw_cliente_201_notas) END",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) > 0)
            .unwrap_or(false)
    });
    a.kill9();
    let rb = b.finish(Duration::from_secs(120));
    assert_eq!(rb.code, 0, "b: {}", rb.stderr);
    assert_fleet_exact(&db, expected);
}

/// The sample API with a request log, and the log's path.
fn logged_api(dir: &std::path::Path, tag: &str, extra: &[&str]) -> (Api, std::path::PathBuf) {
    let log = dir.join(format!("{tag}.log"));
    let log_arg = log.to_str().unwrap().to_string();
    let mut a = vec![
        "--per-day",
        "10",
        "--page-size",
        "5",
        "--request-log",
        &log_arg,
    ];
    a.extend_from_slice(extra);
    (Api::start(&a), log)
}

/// Clients in config order: `first` (id, name, its API), then `others` on
/// the `other` API, each named after its id.
fn first_then_others(first: (&str, &str, &Api), others: &[&str], other: &Api) -> Value {
    let (id, name, api) = first;
    let mut clients = serde_json::Map::new();
    clients.insert(
        id.into(),
        json!({ "name": name, "base_url": format!("{}/page", api.url) }),
    );
    for c in others {
        clients.insert(
            (*c).into(),
            json!({ "name": c, "base_url": format!("{}/page", other.url) }),
        );
    }
    Value::Object(clients)
}

#[test]
fn a_slow_client_does_not_hold_the_other_clients_back() {
    let dir = tempfile::tempdir().unwrap();
    let (slow, slow_log) = logged_api(dir.path(), "slow", &["--latency-ms", "1200"]);
    let (fast, fast_log) = logged_api(dir.path(), "fast", &[]);
    let db = TestDb::new("fleetslow");
    // The slow client first: a crew taking pairs in order would start there.
    let clients = first_then_others(("301", "Lento", &slow), &["302", "303", "304"], &fast);
    let cfg = json!({ "clients": clients, "routes": routes(&["pedidos", "notas"]) });
    let atlas = Atlas::new(&db, &cfg);
    atlas.ok(&["init"]);
    let until = "2025-03-04";
    let run = atlas.ok(&args(&sync_all(&[
        "--from",
        FROM,
        "--until",
        until,
        "--threads",
        "2",
    ])));
    let report = run.json();
    let expected = fast.expected(FROM, until);
    for (k, p) in by_pair(&report) {
        assert_eq!(p["status"], "done", "{k}: {p}");
        assert_eq!(p["inserted"], expected, "{k}: {p}");
    }
    for c in ["301", "302", "303", "304"] {
        for r in ["pedidos", "notas"] {
            assert_eq!(count(&db, &table(c, r)), expected, "{c}/{r}");
        }
    }
    // 2 routes x 4 days x 2 pages at 1.2 s each take the slow client
    // seconds; the three others' 48 requests are all answered before its
    // last one, though it comes first and the crew has two fetchers.
    let slow_seen = request_log(&slow_log);
    let fast_seen = request_log(&fast_log);
    assert_eq!(slow_seen.len(), 16, "one request per page");
    assert_eq!(fast_seen.len(), 48, "one request per page");
    let slow_last = slow_seen.iter().map(|s| s.ms).max().unwrap();
    let fast_last = fast_seen.iter().map(|s| s.ms).max().unwrap();
    assert!(
        fast_last < slow_last,
        "the fast clients' last request ({fast_last}) came after the slow one's ({slow_last})"
    );
    // Each pair's run is closed as soon as it is over, while the crew works
    // the others: the fast clients' runs before the slow one's last request.
    let fast_closed = db.i64(
        "SELECT (extract(epoch FROM max(r.finished_at)) * 1000)::bigint
         FROM atlas.runs r JOIN atlas.scraps s ON s.id = r.scrap_id
         WHERE s.client <> '301' AND r.status = 'done'",
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.runs WHERE status = 'done'"),
        8,
        "every run closed done"
    );
    assert!(
        (fast_closed as u64) < slow_last,
        "the fast clients' runs were closed ({fast_closed}) only after the slow one's last request ({slow_last})"
    );
}

/// One client's API down all night: its pairs fail after their retries,
/// the others load exactly meanwhile (not after), exit 1.
#[test]
fn a_client_whose_api_is_down_does_not_hold_the_other_clients_back() {
    let dir = tempfile::tempdir().unwrap();
    // Every data request of the down client is a 503, retried 4 times with
    // backoff (full jitter from 1.5 s): each of its slices takes seconds to
    // fail.
    let (down, down_log) = logged_api(
        dir.path(),
        "down",
        &["--fault-rate", "1", "--fault-kinds", "503"],
    );
    let (fast, fast_log) = logged_api(dir.path(), "fast", &[]);
    let db = TestDb::new("fleetdown");
    // The down client first: its first page may be the crew's first, which
    // holds the whole memory budget until a page's size is known.
    let clients = first_then_others(("311", "Fora", &down), &["312", "313", "314"], &fast);
    let cfg = json!({ "clients": clients, "routes": routes(&["pedidos"]) });
    let mut atlas = Atlas::new(&db, &cfg);
    atlas.env.push(("ATLAS_BACKOFF_MS".into(), "1500".into()));
    atlas.ok(&["init"]);
    let until = "2025-03-02";
    let run = atlas.run(&args(&sync_all(&[
        "--from",
        FROM,
        "--until",
        until,
        "--threads",
        "4",
        "--retry-max",
        "4",
    ])));
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.json();
    let pairs = by_pair(&report);
    let expected = fast.expected(FROM, until);
    for c in ["312", "313", "314"] {
        let p = &pairs[&format!("{c}/pedidos")];
        assert_eq!(p["status"], "done", "{c}: {p}");
        assert_eq!(p["inserted"], expected, "{c}: {p}");
        assert_eq!(count(&db, &table(c, "pedidos")), expected, "{c}");
    }
    let p = &pairs["311/pedidos"];
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["slices_failed"], 2, "{p}");
    // 2 days x 4 attempts for the down client; 3 clients x 2 days x 2
    // pages for the others, all sent before the down client's last attempt
    // (its slices' retries take seconds).
    let down_seen = request_log(&down_log);
    let fast_seen = request_log(&fast_log);
    assert_eq!(down_seen.len(), 8, "4 attempts per slice");
    assert_eq!(fast_seen.len(), 12, "one request per page");
    let down_last = down_seen.iter().map(|s| s.ms).max().unwrap();
    let fast_last = fast_seen.iter().map(|s| s.ms).max().unwrap();
    assert!(
        fast_last < down_last,
        "the other clients' last request ({fast_last}) came after the down one's last attempt ({down_last})"
    );
}

#[test]
fn routes_of_one_client_share_its_rate_limit_in_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let (api, log) = logged_api(dir.path(), "limited", &[]);
    let db = TestDb::new("fleetrate");
    let cfg = json!({
        "clients": { "401": { "name": "Limitado", "base_url": format!("{}/page", api.url),
                              "rate_limit_per_sec": 4 } },
        "routes": routes(&ROUTES)
    });
    let atlas = Atlas::new(&db, &cfg);
    atlas.ok(&["init"]);
    let run = atlas.ok(&args(&sync_all(&[
        "--from",
        FROM,
        "--until",
        UNTIL,
        "--threads",
        "6",
    ])));
    let expected = api.expected(FROM, UNTIL);
    for (k, p) in by_pair(&run.json()) {
        assert_eq!(p["inserted"], expected, "{k}: {p}");
    }
    // 3 routes x 3 days x 2 pages = 18 requests from one crew of six
    // fetchers: never more than 4 in any second, whichever route asked
    // (50 ms left for the server's own clock of each request).
    let mut ms: Vec<u64> = request_log(&log).iter().map(|s| s.ms).collect();
    ms.sort_unstable();
    assert_eq!(ms.len(), 18);
    for (i, t) in ms.iter().enumerate() {
        let in_window = ms[i..].iter().take_while(|u| **u < t + 950).count();
        assert!(
            in_window <= 4,
            "{in_window} requests within 1 s from {t}: {ms:?}"
        );
    }
}

/// The fleet creates a missing raw table after handing its run to the crew:
/// one that cannot be created (an enum type of the same name is in the way:
/// not a relation, so not seen as an existing table) stops
/// that pair only, its slices left pending; the next night joins the scrap
/// left in progress, creates the table and loads it exactly.
#[test]
fn a_raw_table_that_cannot_be_created_fails_its_pair_only_and_the_next_night_loads_it() {
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let db = TestDb::new("fleettable");
    let cfg = json!({
        "clients": {
            "501": { "name": "A", "base_url": format!("{}/page", api.url) },
            "502": { "name": "B", "base_url": format!("{}/page", api.url) }
        },
        "routes": routes(&["pedidos", "notas"])
    });
    let atlas = Atlas::new(&db, &cfg);
    atlas.ok(&["init"]);
    let blocked = table("501", "notas");
    db.client()
        .batch_execute(&format!("CREATE TYPE {blocked} AS ENUM ('a')"))
        .unwrap();
    let expected = api.expected(FROM, UNTIL);

    let run = atlas.expect(&args(&sync_all(&["--from", FROM, "--until", UNTIL])), 1);
    let report = run.json();
    let pairs = by_pair(&report);
    let p = &pairs["501/notas"];
    assert_eq!(p["status"], "aborted", "{p}");
    assert_eq!(p["inserted"], 0, "{p}");
    let why = p["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {p}"));
    assert!(
        why.contains(&format!("cannot create the raw table {blocked}")) && why.contains("exists"),
        "{why}"
    );
    for k in ["501/pedidos", "502/pedidos", "502/notas"] {
        assert_eq!(pairs[k]["status"], "done", "{k}: {report}");
        assert_eq!(pairs[k]["inserted"], expected, "{k}");
        assert!(pairs[k]["error"].is_null(), "{k}");
    }
    assert_eq!(
        db.i64(
            "SELECT count(*) FROM atlas.slices sl JOIN atlas.scraps s ON s.id = sl.scrap_id
             WHERE s.client = '501' AND s.route = 'notas' AND sl.status = 'pending'"
        ),
        3,
        "the pair's slices wait for the next night"
    );

    db.client()
        .batch_execute(&format!("DROP TYPE {blocked}"))
        .unwrap();
    let next = atlas.ok(&args(&sync_all(&["--until", UNTIL])));
    let pairs = by_pair(&next.json());
    assert_eq!(pairs["501/notas"]["status"], "done", "{}", next.stdout);
    assert_eq!(pairs["501/notas"]["inserted"], expected);
    for c in ["501", "502"] {
        for r in ["pedidos", "notas"] {
            assert_eq!(count(&db, &table(c, r)), expected, "{c}/{r}");
            assert_eq!(distinct(&db, &table(c, r)), expected, "{c}/{r}");
        }
    }
    // `scrap run` of a scrap whose table is gone creates it too.
    let gone = table("502", "notas");
    let id = db.i64("SELECT min(id) FROM atlas.scraps WHERE client = '502' AND route = 'notas'");
    db.client()
        .batch_execute(&format!(
            "DROP TABLE {gone}; UPDATE atlas.slices SET status = 'pending' WHERE scrap_id = {id}"
        ))
        .unwrap();
    atlas.ok(&["scrap", "run", &id.to_string()]);
    assert_eq!(count(&db, &gone), expected);
}

#[test]
fn ctrl_c_stops_the_whole_fleet_and_the_next_night_finishes_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (apis, db, atlas) = shared_fleet("fleetint", dir.path(), "150");
    let expected = apis[0].expected(FROM, SHARED_UNTIL);
    let cmd = sync_all(&["--from", FROM, "--until", SHARED_UNTIL]);
    let mut a = Bg::spawn(&atlas, &args(&cmd), "a");
    crate::util::wait_for("rows in a table", Duration::from_secs(60), || {
        db.client()
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'dados_raw_cliente_20%'",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) == 4)
            .unwrap_or(false)
            && db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'done'") > 0
    });
    a.signal("INT");
    let ra = a.finish(Duration::from_secs(60));
    assert_eq!(ra.code, 130, "{}", ra.stderr);
    let report = ra.json();
    assert_eq!(report["exit_code"], 130);
    let stopped = by_pair(&report)
        .values()
        .filter(|p| p["status"] == "interrupted" || p["status"] == "skipped")
        .count();
    assert!(stopped > 0, "no pair was stopped: {report}");
    // Nothing counted that is not stored, and no slice left running.
    for (k, p) in by_pair(&report) {
        if let Some(t) = p["table"].as_str().filter(|_| !p["run_id"].is_null()) {
            assert!(count(&db, t) >= p["inserted"].as_i64().unwrap(), "{k}: {p}");
        }
    }
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'running'"),
        0
    );
    let rb = atlas.ok(&args(&cmd));
    assert_eq!(rb.json()["exit_code"], 0, "{}", rb.stderr);
    assert_fleet_exact(&db, expected);
}

#[test]
fn refused_credentials_stop_that_client_only() {
    let good = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let guarded = Api::bearer("right-token");
    let db = TestDb::new("fleetauth");
    let cfg = json!({
        "clients": {
            "501": { "name": "Recusado", "base_url": format!("{}/page", guarded.url),
                     "auth": { "type": "bearer", "token_env": "ATLAS_T_501" } },
            "502": { "name": "Bom", "base_url": format!("{}/page", good.url) }
        },
        "routes": routes(&["pedidos", "notas"])
    });
    let mut atlas = Atlas::new(&db, &cfg);
    atlas.env.push(("ATLAS_T_501".into(), "wrong-token".into()));
    atlas.ok(&["init"]);
    let run = atlas.expect(&args(&sync_all(&["--from", FROM, "--until", UNTIL])), 1);
    let report = run.json();
    let pairs = by_pair(&report);
    let expected = good.expected(FROM, UNTIL);
    for r in ["pedidos", "notas"] {
        let p = &pairs[&format!("501/{r}")];
        assert_eq!(p["status"], "auth_refused", "{p}");
        assert_eq!(p["exit_code"], 3, "{p}");
        assert_eq!(count(&db, &table("501", r)), 0);
        let p = &pairs[&format!("502/{r}")];
        assert_eq!(p["status"], "done", "{p}");
        assert_eq!(p["inserted"], expected, "{p}");
        assert_eq!(count(&db, &table("502", r)), expected);
    }
    assert_eq!(report["exit_code"], 1);
    assert!(!run.stdout.contains("wrong-token") && !run.stderr.contains("wrong-token"));
}
