//! Issue 31 point 1: `atlas status` over a fleet with a failing pair (API
//! down) and a lagging one: exit 1 naming both, one `--json` entry per
//! pair; all well: exit 0; the database refused: exit 3 within a second;
//! gaps and open days read from the ledger.

use crate::util::{create_args, route_at, sync_args, Api, Atlas, Run, TestDb};
use chrono::{Duration, Local, NaiveDate};
use serde_json::{json, Value};
use std::time::Instant;

/// `n` days before yesterday, in this machine's zone (the routes set none).
fn day(n: i64) -> String {
    let yesterday: NaiveDate = Local::now().date_naive() - Duration::days(1);
    (yesterday - Duration::days(n)).to_string()
}

/// The pairs of a `status --json` object, by "client/route".
fn pair<'a>(j: &'a Value, name: &str) -> &'a Value {
    j["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .find(|p| {
            format!(
                "{}/{}",
                p["client"].as_str().unwrap(),
                p["route"].as_str().unwrap()
            ) == name
        })
        .unwrap_or_else(|| panic!("{name} not in {j}"))
}

fn first_line(r: &Run) -> &str {
    r.stdout.lines().next().unwrap_or("")
}

#[test]
fn status_names_the_failing_and_the_lagging_pair_and_exits_0_when_all_are_well() {
    let api = Api::start(&["--per-day", "4", "--page-size", "5"]);
    let db = TestDb::new("status");
    let cfg = json!({
        "clients": {
            "2151": { "base_url": format!("{}/page", api.url) },
            "3000": { "base_url": "http://127.0.0.1:9/page", "routes": ["pedidos"] }
        },
        "routes": { "pedidos": route_at("/pedidos"), "notas": route_at("/notas") }
    });
    let mut atlas = Atlas::new(&db, &cfg);
    atlas.env.push(("ATLAS_RETRY_MAX".into(), "1".into()));
    atlas.ok(&["init"]);

    // Before any run: every pair never ran.
    let r = atlas.expect(&["status"], 1);
    assert!(
        first_line(&r).starts_with("ATLAS WARNING - 3 de 3 par(es) com problema"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("nunca executado"), "{}", r.stdout);

    let from = day(5);
    atlas.ok(&sync_args(&["--from", &from]));
    atlas.ok(&[
        "sync",
        "--client",
        "2151",
        "--route",
        "notas",
        "--from",
        &from,
        "--until",
        &day(3),
    ]);
    atlas.expect(
        &[
            "sync", "--client", "3000", "--route", "pedidos", "--from", &from,
        ],
        1,
    );

    let r = atlas.expect(&["status"], 1);
    let head = first_line(&r);
    assert!(
        head.starts_with("ATLAS WARNING - 2 de 3 par(es) com problema: "),
        "{}",
        r.stdout
    );
    assert!(head.contains("2151 / notas (atrasado 3 dia(s))"), "{head}");
    assert!(head.contains("3000 / pedidos (falhou: failed"), "{head}");
    assert!(head.ends_with("| pairs=3 problems=2"), "{head}");
    assert!(!head.contains("2151 / pedidos"), "{head}");
    assert_eq!(
        r.stdout.lines().count(),
        5,
        "verdict, header, one line per pair:\n{}",
        r.stdout
    );

    let j = atlas.expect(&["status", "--json"], 1).json();
    assert_eq!(j["pairs"].as_array().map(Vec::len), Some(3), "{j}");
    assert_eq!(
        (j["status"].as_str(), j["exit_code"].as_i64()),
        (Some("problem"), Some(1))
    );
    let ok = pair(&j, "2151/pedidos");
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["loaded_until"], day(0));
    assert_eq!(ok["days_behind"], 0);
    assert_eq!(ok["last_run"]["status"], "done");
    assert_eq!(ok["last_run"]["inserted"], api.expected(&from, &day(0)));
    let host = ok["last_run"]["host"].as_str().expect("host");
    assert!(!host.is_empty() && !host.contains(':'), "{host}");
    assert!(ok["last_run"]["version"]
        .as_str()
        .is_some_and(|v| v.starts_with(env!("CARGO_PKG_VERSION"))));
    let lag = pair(&j, "2151/notas");
    assert_eq!(lag["problems"], json!(["lagging"]), "{lag}");
    assert_eq!(lag["days_behind"], 3);
    let down = pair(&j, "3000/pedidos");
    assert_eq!(
        down["problems"],
        json!(["last_run_failed", "lagging"]),
        "{down}"
    );
    assert_eq!(down["last_run"]["status"], "failed");
    assert!(
        down["last_run"]["slices_failed"].as_i64() > Some(0),
        "{down}"
    );
    assert!(down["loaded_until"].is_null());

    // A wider lag allowed: the lagging pair is well.
    let r = atlas.expect(&["status", "--max-lag-days", "3"], 1);
    assert!(
        first_line(&r).starts_with("ATLAS WARNING - 1 de 3"),
        "{}",
        r.stdout
    );
    // All well: the lagging pair caught up, the down client left out.
    atlas.ok(&["sync", "--client", "2151", "--route", "notas"]);
    let r = atlas.ok(&["status", "--client", "2151"]);
    assert_eq!(
        first_line(&r),
        "ATLAS OK - 2 par(es) em dia | pairs=2 problems=0",
        "{}",
        r.stdout
    );
    let j = atlas.ok(&["status", "--client", "2151", "--json"]).json();
    assert_eq!(
        (j["status"].as_str(), j["totals"]["ok"].as_i64()),
        (Some("ok"), Some(2))
    );
    // Filters name configured things only.
    atlas.expect(&["status", "--client", "9999"], 2);
    atlas.expect(&["status", "--max-lag-days", "-1"], 2);
}

#[test]
fn gaps_and_open_days_are_read_from_every_scrap_of_the_pair() {
    let api = Api::start(&["--per-day", "3", "--page-size", "5"]);
    let db = TestDb::new("status_gaps");
    let cfg = json!({
        "clients": { "2151": { "base_url": format!("{}/page", api.url) } },
        "routes": { "pedidos": route_at("/pedidos") }
    });
    let atlas = Atlas::new(&db, &cfg);
    atlas.ok(&["init"]);
    // Days 12..10 before yesterday in one scrap, 5..0 in another: 9..6 never loaded.
    let id = atlas
        .ok(&create_args("2151", "pedidos", &day(12), &day(10)))
        .stdout;
    atlas.ok(&["scrap", "run", id.trim()]);
    atlas.ok(&sync_args(&["--from", &day(5)]));
    // Yesterday's slice loaded before the day had ended (as sync marks it).
    let changed = db
        .client()
        .execute(
            "UPDATE atlas.slices SET status = 'open' WHERE slice_from = $1::text::date",
            &[&day(0)],
        )
        .expect("mark open");
    assert_eq!(changed, 1);
    let j = atlas.expect(&["status", "--json"], 1).json();
    let p = pair(&j, "2151/pedidos");
    assert_eq!(p["loaded_until"], day(10), "{p}");
    assert_eq!(p["days_behind"], 10);
    assert_eq!(p["gap_days"], 4);
    assert_eq!(p["gaps"], json!([{"from": day(9), "to": day(6)}]));
    assert_eq!(p["open_days"], 1);
    assert_eq!(p["open"], json!([{"from": day(0), "to": day(0)}]));
    let r = atlas.expect(&["status"], 1);
    let line = r.stdout.lines().nth(2).expect("the pair's line");
    let cells: Vec<&str> = line
        .split("  ")
        .filter(|c| !c.trim().is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(cells[cells.len() - 3..], ["10", "4", "1"], "{line}");
}

#[test]
fn status_exits_3_at_once_when_the_database_is_refused() {
    let db = TestDb::new("status_nodb");
    let cfg = json!({
        "clients": { "2151": { "base_url": "http://127.0.0.1:9/x" } },
        "routes": { "pedidos": route_at("/pedidos") }
    });
    let atlas = Atlas::new(&db, &cfg);
    let dead = "postgres://postgres:senha-do-banco@127.0.0.1:1/x";
    let started = Instant::now();
    let r = atlas.expect(&["--database-url", dead, "status"], 3);
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    assert!(
        first_line(&r).starts_with("ATLAS UNKNOWN - cannot connect to PostgreSQL at 127.0.0.1:1/x"),
        "{}",
        r.stdout
    );
    let r = atlas.expect(&["--database-url", dead, "status", "--json"], 3);
    assert_eq!(r.json()["exit_code"], 3);
    for t in [&r.stdout, &r.stderr] {
        assert!(!t.contains("senha-do-banco"), "{t}");
    }
    // A schema never initialised: exit 2, saying what to do.
    let r = atlas.expect(&["status"], 2);
    assert!(
        first_line(&r).starts_with("ATLAS CRITICAL - the control schema is missing"),
        "{}",
        r.stdout
    );
}
