//! The scheduler-facing commands (SPEC §2): `atlas sync` (incremental load
//! from the slice ledger, lookback, nothing new, first-sync start, one sync
//! per client and route at a time, failed days picked up again), `atlas
//! check` (config, secrets, database, one probe per route), every command's
//! `--help`, and the exit codes a scheduler acts on.

use crate::util::{
    self, assert_exact, dead_db_args, sized_route, sync_args, Api, Atlas, Run, TestDb,
};
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::time::Duration;

const TABLE: &str = "dados_raw_cliente_2151_pedidos";
/// Records per day and per page of the standard API here: 2 pages a day.
const PER_DAY: i64 = 10;
const PAGES_PER_DAY: i64 = 2;

// ---------------------------------------------------------------- helpers

/// Client 2151 at `{api}/page` with route `pedidos`.
fn config(api_url: &str, route: Value) -> Value {
    Atlas::config(&format!("{api_url}/page"), json!({ "pedidos": route }))
}

fn standard_api() -> Api {
    Api::start(&["--per-day", &PER_DAY.to_string(), "--page-size", "5"])
}

/// `Atlas::new` with one fetcher thread and a 5 s HTTP timeout.
///
/// The sample API (tiny_http 0.12) can leave a freshly accepted connection
/// unserved when two connections arrive at once while a single pool thread
/// is idle: the request then sits unread (Recv-Q > 0) until another
/// connection closes, and the client hits its timeout (30 s by default).
/// One fetcher thread never opens two connections at once; the short
/// timeout bounds the cost should it happen anyway.
fn new_atlas(db: &TestDb, cfg: &Value) -> Atlas {
    let mut atlas = Atlas::new(db, cfg);
    atlas.env.push(("ATLAS_THREADS".into(), "1".into()));
    atlas.env.push(("ATLAS_TIMEOUT_SECS".into(), "5".into()));
    atlas
}

fn rewrite_config(atlas: &Atlas, cfg: &Value) {
    std::fs::write(
        atlas.path("atlas.json"),
        serde_json::to_vec_pretty(cfg).expect("json"),
    )
    .expect("rewrite atlas.json");
}

fn show(r: &Run) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    )
}

/// Advisory locks held in the atlas database right now.
fn advisory_locks(db_url: &str) -> i64 {
    let mut c = postgres::Client::connect(db_url, postgres::NoTls).expect("connect");
    c.query_one(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[],
    )
    .expect("pg_locks")
    .get(0)
}

/// Runs a sync once the previous one's advisory lock is gone (see
/// `back_to_back_syncs_never_report_busy` for why that wait is needed).
fn sync(atlas: &Atlas, extra: &[&str], code: i32) -> Run {
    util::wait_for(
        "the previous sync's advisory lock released",
        Duration::from_secs(10),
        || advisory_locks(&atlas.db_url) == 0,
    );
    atlas.expect(&sync_args(extra), code)
}

/// The scraps' periods, oldest first, as `from..to`.
fn scraps(db: &TestDb) -> Vec<String> {
    db.strings("SELECT period_from::text || '..' || period_to::text FROM atlas.scraps ORDER BY id")
}

fn table_exists(db: &TestDb) -> bool {
    !db.strings(&format!(
        "SELECT coalesce(to_regclass('{TABLE}')::text, '')"
    ))[0]
        .is_empty()
}

/// A test database, the standard API, `atlas init`, and the first sync of
/// 2025-01-01..2025-01-05 (its `--json` summary returned).
fn first_sync(tag: &str) -> (TestDb, Api, Atlas, Value) {
    let db = TestDb::new(tag);
    let api = standard_api();
    let atlas = new_atlas(&db, &config(&api.url, sized_route(5)));
    atlas.ok(&["init"]);
    let r = sync(
        &atlas,
        &["--from", "2025-01-01", "--until", "2025-01-05", "--json"],
        0,
    );
    let j = r.json();
    (db, api, atlas, j)
}

/// The output of a background `atlas` process.
fn spawn(atlas: &Atlas, args: &[&str]) -> Child {
    atlas
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn atlas")
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().expect("wait for atlas");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------- sync

/// Item 1: The first sync loads its --from..--until period exactly.
#[test]
fn first_sync_loads_the_given_period() {
    let (db, api, _atlas, j) = first_sync("sync_first");
    let expected = api.expected("2025-01-01", "2025-01-05");
    assert_eq!(expected, 5 * PER_DAY);
    assert_exact(&db, expected, "first sync");
    assert_eq!(j["status"], "done", "{j}");
    assert_eq!(j["inserted"], expected, "{j}");
    assert_eq!(j["duplicates"], 0, "{j}");
    assert_eq!(j["from"], "2025-01-01", "{j}");
    assert_eq!(j["to"], "2025-01-05", "{j}");
    assert_eq!(j["slices_done"], 5, "{j}");
    assert_eq!(j["exit_code"], 0, "{j}");
    assert_eq!(scraps(&db), ["2025-01-01..2025-01-05"]);
}

/// Item 2: The next sync starts at the last loaded day (lookback 1) and fetches
/// only those days: the lookback day comes back as duplicates.
#[test]
fn second_sync_loads_only_new_days_plus_the_lookback_day() {
    let (db, api, atlas, _) = first_sync("sync_second");
    let before = api.requests();
    let r = sync(&atlas, &["--until", "2025-01-08", "--json"], 0);
    let requests = api.requests() - before;
    let j = r.json();
    assert_eq!(
        scraps(&db),
        ["2025-01-01..2025-01-05", "2025-01-05..2025-01-08"]
    );
    assert_eq!(j["from"], "2025-01-05", "{j}");
    assert_eq!(j["to"], "2025-01-08", "{j}");
    assert_eq!(j["duplicates"], PER_DAY, "the lookback day: {j}");
    assert_eq!(j["inserted"], 3 * PER_DAY, "{j}");
    assert_eq!(j["records_fetched"], 4 * PER_DAY, "{j}");
    assert_eq!(j["pages"], 4 * PAGES_PER_DAY, "{j}");
    assert_eq!(
        requests,
        4 * PAGES_PER_DAY,
        "only the pages of 2025-01-05..08 are requested"
    );
    assert!(
        r.stderr.contains("2025-01-05 até 2025-01-08"),
        "{}",
        r.stderr
    );
    assert_exact(
        &db,
        api.expected("2025-01-01", "2025-01-08"),
        "after the second sync",
    );
}

/// Item 3: `--lookback-days 0` starts the day after the last loaded day; a
/// larger lookback reaches further back.
#[test]
fn lookback_days_moves_the_start() {
    let (db, api, atlas, _) = first_sync("sync_lookback");
    let before = api.requests();
    let j = sync(
        &atlas,
        &["--until", "2025-01-08", "--lookback-days", "0", "--json"],
        0,
    )
    .json();
    assert_eq!(api.requests() - before, 3 * PAGES_PER_DAY);
    assert_eq!(scraps(&db)[1], "2025-01-06..2025-01-08");
    assert_eq!(j["duplicates"], 0, "{j}");
    assert_eq!(j["inserted"], 3 * PER_DAY, "{j}");

    let j = sync(
        &atlas,
        &["--until", "2025-01-10", "--lookback-days", "3", "--json"],
        0,
    )
    .json();
    assert_eq!(
        scraps(&db)[2],
        "2025-01-06..2025-01-10",
        "last loaded 01-08, lookback 3"
    );
    assert_eq!(j["duplicates"], 3 * PER_DAY, "{j}");
    assert_eq!(j["inserted"], 2 * PER_DAY, "{j}");
    assert_exact(
        &db,
        api.expected("2025-01-01", "2025-01-10"),
        "after the lookback syncs",
    );
}

/// Item 4: Nothing new: exit 0, says so, creates no scrap and sends no request.
#[test]
fn nothing_new_exits_0_without_a_scrap_or_a_request() {
    let (db, api, atlas, _) = first_sync("sync_nothing_new");
    sync(&atlas, &["--until", "2025-01-08"], 0);
    assert_eq!(scraps(&db).len(), 2);
    let rows = db.i64(&format!("SELECT count(*) FROM {TABLE}"));
    let before = api.requests();

    let r = sync(&atlas, &["--until", "2025-01-08"], 0);
    assert!(r.stderr.contains("Nada novo"), "{}", show(&r));
    assert!(
        r.stderr.contains("2025-01-08"),
        "says how far it is loaded: {}",
        r.stderr
    );
    let j = sync(&atlas, &["--until", "2025-01-08", "--json"], 0).json();
    assert_eq!(j["status"], "up_to_date", "{j}");
    assert_eq!(j["loaded_until"], "2025-01-08", "{j}");
    assert_eq!(j["exit_code"], 0, "{j}");
    // An earlier --until, or a lookback alone, is nothing new either.
    let r = sync(
        &atlas,
        &["--until", "2025-01-06", "--lookback-days", "3"],
        0,
    );
    assert!(r.stderr.contains("Nada novo"), "{}", show(&r));
    let r = sync(
        &atlas,
        &["--until", "2025-01-08", "--lookback-days", "5"],
        0,
    );
    assert!(r.stderr.contains("Nada novo"), "{}", show(&r));

    assert_eq!(scraps(&db).len(), 2, "no scrap created");
    assert_eq!(api.requests(), before, "no API request");
    assert_eq!(db.i64(&format!("SELECT count(*) FROM {TABLE}")), rows);
}

/// Item 5: Before `init`, and on a first sync with no start: exit 2, nothing
/// created. A route `start_date` stands in for --from.
#[test]
fn first_sync_needs_init_and_a_start() {
    let db = TestDb::new("sync_start");
    let api = standard_api();
    let atlas = new_atlas(&db, &config(&api.url, sized_route(5)));

    let r = sync(
        &atlas,
        &["--from", "2025-01-01", "--until", "2025-01-03"],
        2,
    );
    assert!(r.stderr.contains("atlas init"), "{}", show(&r));
    assert_eq!(
        db.i64("SELECT count(*) FROM pg_namespace WHERE nspname = 'atlas'"),
        0,
        "sync does not create the schema"
    );
    assert!(!table_exists(&db));

    atlas.ok(&["init"]);
    let before = api.requests();
    let r = sync(&atlas, &["--until", "2025-01-03"], 2);
    assert!(r.stderr.contains("--from"), "{}", show(&r));
    assert!(r.stderr.contains("start_date"), "{}", show(&r));
    assert!(scraps(&db).is_empty(), "no scrap created");
    assert!(!table_exists(&db), "no raw table created");
    assert_eq!(api.requests(), before);

    let mut r2 = sized_route(5);
    r2["start_date"] = json!("2025-01-03");
    rewrite_config(&atlas, &config(&api.url, r2));
    let j = sync(&atlas, &["--until", "2025-01-05", "--json"], 0).json();
    assert_eq!(scraps(&db), ["2025-01-03..2025-01-05"]);
    assert_eq!(j["inserted"], 3 * PER_DAY, "{j}");
    assert_exact(
        &db,
        api.expected("2025-01-03", "2025-01-05"),
        "start_date sync",
    );

    // With history, start_date no longer matters: the next sync follows the ledger.
    sync(&atlas, &["--until", "2025-01-07"], 0);
    assert_eq!(scraps(&db)[1], "2025-01-05..2025-01-07");
}

/// An explicit --from bounds the lookback once there is history.
#[test]
fn explicit_from_bounds_the_lookback() {
    let (db, api, atlas, _) = first_sync("sync_from_bound");
    let j = sync(
        &atlas,
        &[
            "--from",
            "2025-01-06",
            "--until",
            "2025-01-07",
            "--lookback-days",
            "3",
            "--json",
        ],
        0,
    )
    .json();
    assert_eq!(scraps(&db)[1], "2025-01-06..2025-01-07");
    assert_eq!(j["duplicates"], 0, "{j}");
    assert_exact(
        &db,
        api.expected("2025-01-01", "2025-01-07"),
        "bounded lookback",
    );
}

/// Without --until, a sync loads up to yesterday (local time: no route time zone).
#[test]
fn until_defaults_to_yesterday() {
    let db = TestDb::new("sync_yesterday");
    let api = standard_api();
    let atlas = new_atlas(&db, &config(&api.url, sized_route(5)));
    atlas.ok(&["init"]);
    let yesterday = || (chrono::Local::now().date_naive() - chrono::Duration::days(1)).to_string();
    let y0 = yesterday();
    let from = (chrono::Local::now().date_naive() - chrono::Duration::days(3)).to_string();
    let j = sync(&atlas, &["--from", &from, "--json"], 0).json();
    let y1 = yesterday();
    let to = j["to"].as_str().expect("to").to_string();
    assert!(
        to == y0 || to == y1,
        "--until defaults to yesterday ({y0}), got {to}: {j}"
    );
    assert_exact(&db, api.expected(&from, &to), "up to yesterday");
    // The next day's scheduler call (same day here) has nothing new.
    let r = sync(&atlas, &[], 0);
    assert!(r.stderr.contains("Nada novo"), "{}", show(&r));
}

/// Item 6: Two syncs of one (client, route) at once: the second sees the first's
/// advisory lock, says so and exits 0 without touching anything.
#[test]
fn a_concurrent_sync_exits_0_saying_another_is_running() {
    let db = TestDb::new("sync_concurrent");
    // 4 pages a day at 50 ms each, one fetcher thread: the first sync of
    // 10 days lasts about 2 s.
    let api = Api::start(&["--per-day", "20", "--page-size", "5", "--latency-ms", "50"]);
    let atlas = new_atlas(&db, &config(&api.url, sized_route(5)));
    atlas.ok(&["init"]);
    let first = spawn(
        &atlas,
        &sync_args(&[
            "--from",
            "2025-02-01",
            "--until",
            "2025-02-10",
            "--threads",
            "1",
            "--json",
        ]),
    );
    let mut first = Some(first);
    // The scrap is created after the lock is taken: from then on the lock is held.
    util::wait_for("the first sync's scrap", Duration::from_secs(30), || {
        if let Ok(Some(_)) = first.as_mut().unwrap().try_wait() {
            let r = finish(first.take().unwrap());
            panic!(
                "the first sync ended before its scrap was seen: {}",
                show(&r)
            );
        }
        db.i64("SELECT count(*) FROM atlas.scraps") == 1
    });
    let mut first = first.unwrap();
    let second = atlas.run(&sync_args(&["--until", "2025-02-10", "--json"]));
    let first_still_running = matches!(first.try_wait(), Ok(None));
    let r1 = finish(first);
    assert!(
        first_still_running,
        "the API was not slow enough for an overlap: {}",
        show(&r1)
    );
    assert_eq!(second.code, 0, "second: {}", show(&second));
    assert!(
        second.stderr.contains("em andamento"),
        "second: {}",
        show(&second)
    );
    let j = second.json();
    assert_eq!(j["status"], "busy", "{j}");
    assert_eq!(j["exit_code"], 0, "{j}");

    assert_eq!(r1.code, 0, "first: {}", show(&r1));
    assert_eq!(
        api.requests(),
        10 * 4,
        "only the first sync's pages were requested"
    );
    let j1 = r1.json();
    let expected = api.expected("2025-02-01", "2025-02-10");
    assert_eq!(j1["inserted"], expected, "{j1}");
    assert_eq!(
        scraps(&db),
        ["2025-02-01..2025-02-10"],
        "the second sync created no scrap"
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.runs"),
        1,
        "the second sync ran nothing"
    );
    assert_exact(&db, expected, "after two concurrent syncs");

    // Once the first is over, the lock is free again.
    let r = sync(&atlas, &["--until", "2025-02-10"], 0);
    assert!(r.stderr.contains("Nada novo"), "{}", show(&r));
}

/// 7a. A first sync whose every slice fails exits 1 and leaves nothing
/// loaded: the next sync starts again at the first day and loads it all.
#[test]
fn a_failed_first_sync_is_loaded_from_its_first_day_by_the_next() {
    let db = TestDb::new("sync_failed_first");
    let faulty = Api::start(&[
        "--per-day",
        &PER_DAY.to_string(),
        "--page-size",
        "5",
        "--fail-first",
        "3",
        "--fault-kinds",
        "500,503",
    ]);
    let atlas = new_atlas(&db, &config(&faulty.url, sized_route(5)));
    atlas.ok(&["init"]);
    let r = sync(
        &atlas,
        &[
            "--from",
            "2025-01-01",
            "--until",
            "2025-01-03",
            "--retry-max",
            "1",
            "--json",
        ],
        1,
    );
    let j = r.json();
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["slices_failed"], 3, "{j}");
    assert_eq!(j["exit_code"], 1, "{j}");
    assert_eq!(db.i64(&format!("SELECT count(*) FROM {TABLE}")), 0);

    let clean = standard_api();
    rewrite_config(&atlas, &config(&clean.url, sized_route(5)));
    let j = sync(
        &atlas,
        &["--from", "2025-01-01", "--until", "2025-01-03", "--json"],
        0,
    )
    .json();
    // The failed scrap is resumed: no second scrap for the same days.
    assert_eq!(scraps(&db), ["2025-01-01..2025-01-03"]);
    assert_eq!(j["scrap_id"], 1, "{j}");
    assert_eq!(j["inserted"], 3 * PER_DAY, "{j}");
    assert_eq!(clean.requests(), 3 * PAGES_PER_DAY);
    assert_exact(
        &db,
        clean.expected("2025-01-01", "2025-01-03"),
        "after the second sync",
    );
}

/// 7b. A day that failed in the middle of a sync is loaded by the next
/// sync, which resumes that scrap: only the failed day is asked for again,
/// and the table ends exact.
#[test]
fn a_failed_day_is_picked_up_by_the_next_sync() {
    let faulty = Api::start(&[
        "--per-day",
        &PER_DAY.to_string(),
        "--page-size",
        "5",
        "--fail-first",
        "3",
        "--fault-kinds",
        "500,503",
    ]);
    // Warm-up elsewhere: use up the fail-first budget of every URL but 2025-01-03's.
    {
        let warm_db = TestDb::new("sync_failed_warm");
        let warm = new_atlas(&warm_db, &config(&faulty.url, sized_route(5)));
        for (from, to) in [("2025-01-01", "2025-01-02"), ("2025-01-04", "2025-01-05")] {
            let id = warm.create("pedidos", from, to);
            let w = warm.run(&["scrap", "run", &id, "--retry-max", "5"]);
            assert_eq!(w.code, 0, "warm-up: {}", show(&w));
        }
    }
    let db = TestDb::new("sync_failed_mid");
    let atlas = new_atlas(&db, &config(&faulty.url, sized_route(5)));
    atlas.ok(&["init"]);
    let r = sync(
        &atlas,
        &[
            "--from",
            "2025-01-01",
            "--until",
            "2025-01-05",
            "--retry-max",
            "1",
            "--json",
        ],
        1,
    );
    let j = r.json();
    let slices = db.strings("SELECT slice_from::text || ' ' || status || ' ' || coalesce(last_error, '') FROM atlas.slices ORDER BY slice_from");
    assert_eq!(j["slices_done"], 4, "{j}\n{slices:#?}\n{}", r.stderr);
    assert_eq!(j["slices_failed"], 1, "{j}");
    assert_eq!(
        db.strings("SELECT slice_from::text FROM atlas.slices WHERE status = 'failed'"),
        ["2025-01-03"]
    );
    assert_eq!(
        db.i64(&format!("SELECT count(*) FROM {TABLE}")),
        4 * PER_DAY
    );

    let clean = standard_api();
    rewrite_config(&atlas, &config(&clean.url, sized_route(5)));
    let j = sync(&atlas, &["--until", "2025-01-05", "--json"], 0).json();
    // The scrap with the failed day is resumed; then every day is loaded:
    // no new scrap, and no request but the failed day's.
    assert_eq!(scraps(&db), ["2025-01-01..2025-01-05"]);
    assert_eq!(j["inserted"], PER_DAY, "only 2025-01-03 is new: {j}");
    assert_eq!(j["duplicates"], 0, "{j}");
    assert_eq!(clean.requests(), PAGES_PER_DAY);
    assert_exact(
        &db,
        clean.expected("2025-01-01", "2025-01-05"),
        "after the failed day's reload",
    );
    let r = sync(&atlas, &["--until", "2025-01-05"], 0);
    assert!(r.stderr.contains("Nada novo"), "{}", show(&r));
}

/// A TCP proxy to PostgreSQL that forwards everything at once but holds a
/// client's goodbye (its Terminate message, or its end of stream) for
/// `hold`: the session, and any lock it still has, then outlives the client
/// process by that long, as behind a slow network or a busy server.
fn slow_goodbye_proxy(hold: Duration) -> u16 {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let upstream = {
        let u = url::Url::parse(&util::server_url()).expect("server URL");
        format!(
            "{}:{}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().unwrap_or(5432)
        )
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let (mut from_server, mut to_client) =
                    (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Both);
                });
                let (mut from_client, mut to_server) = (client, server);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match from_client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    // Terminate: 'X' and the length 4.
                    if buf[..n].ends_with(b"X\0\0\0\x04") {
                        std::thread::sleep(hold);
                    }
                    if to_server.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                std::thread::sleep(hold);
                let _ = to_server.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

/// The (client, route) lock is released when a sync ends, whatever way it
/// ends: a sync started right after another one has finished must not find
/// it taken. The first sync of each pair talks to PostgreSQL through
/// `slow_goodbye_proxy`, so its session lasts 3 s after its process ends.
// Regression: the lock used to be released only after running a scrap, so
// a sync right after a "Nada novo" or refused one could find it held.
#[test]
fn the_sync_lock_is_released_when_a_sync_ends() {
    let db = TestDb::new("sync_lock_release");
    let api = standard_api();
    let atlas = new_atlas(
        &db,
        &Atlas::config(
            &format!("{}/page", api.url),
            json!({ "pedidos": sized_route(5), "itens": sized_route(5) }),
        ),
    );
    atlas.ok(&["init"]);
    let mut slow = url::Url::parse(&db.url).expect("db url");
    slow.set_port(Some(slow_goodbye_proxy(Duration::from_secs(3))))
        .expect("port");
    let slow = slow.to_string();
    let via_proxy = |route: &str, extra: &[&str]| {
        let mut args = vec![
            "--database-url",
            slow.as_str(),
            "sync",
            "--client",
            "2151",
            "--route",
            route,
        ];
        args.extend_from_slice(extra);
        atlas.run(&args)
    };
    let direct = |route: &str, extra: &[&str]| {
        let mut args = vec!["sync", "--client", "2151", "--route", route];
        args.extend_from_slice(extra);
        atlas.run(&args)
    };

    // Control: after a sync that ran a scrap, the lock is free at once.
    let r = via_proxy(
        "pedidos",
        &["--from", "2025-01-01", "--until", "2025-01-03"],
    );
    assert_eq!(r.code, 0, "{}", show(&r));
    let r = direct("pedidos", &["--until", "2025-01-03"]);
    assert!(r.stderr.contains("Nada novo"), "after a run: {}", show(&r));

    // After "nothing new".
    let r = via_proxy("pedidos", &["--until", "2025-01-03"]);
    assert!(r.stderr.contains("Nada novo"), "{}", show(&r));
    let r = direct("pedidos", &["--until", "2025-01-04", "--json"]);
    assert!(
        !r.stderr.contains("em andamento"),
        "the sync right after a 'nothing new' sync found the lock still taken: {}",
        show(&r)
    );
    assert_eq!(r.code, 0, "{}", show(&r));
    assert_eq!(r.json()["inserted"], PER_DAY, "{}", show(&r));

    // After bad input (a first sync without --from).
    let r = via_proxy("itens", &["--until", "2025-01-03"]);
    assert_eq!(r.code, 2, "{}", show(&r));
    let r = direct(
        "itens",
        &["--from", "2025-01-01", "--until", "2025-01-03", "--json"],
    );
    assert!(
        !r.stderr.contains("em andamento"),
        "the sync right after a refused sync found the lock still taken: {}",
        show(&r)
    );
    assert_eq!(r.code, 0, "{}", show(&r));
    assert_eq!(r.json()["inserted"], 3 * PER_DAY, "{}", show(&r));
}

/// Bad input to sync changes nothing (exit 2); an unreachable database is exit 3.
#[test]
fn sync_bad_input_exits_2_and_a_dead_database_3() {
    let db = TestDb::new("sync_bad_input");
    let api = standard_api();
    let atlas = new_atlas(&db, &config(&api.url, sized_route(5)));
    atlas.ok(&["init"]);
    for extra in [
        &["--from", "2025-01-01", "--until", "2025-02-30"][..],
        &["--from", "01/01/2025", "--until", "2025-01-02"],
        &[
            "--from",
            "2025-01-01",
            "--until",
            "2025-01-02",
            "--threads",
            "0",
        ],
    ] {
        sync(&atlas, extra, 2);
    }
    let r = atlas.expect(
        &[
            "sync",
            "--client",
            "9999",
            "--route",
            "pedidos",
            "--from",
            "2025-01-01",
            "--until",
            "2025-01-02",
        ],
        2,
    );
    assert!(r.stderr.contains("9999"), "{}", show(&r));
    let r = atlas.expect(
        &[
            "sync",
            "--client",
            "2151",
            "--route",
            "nada",
            "--from",
            "2025-01-01",
            "--until",
            "2025-01-02",
        ],
        2,
    );
    assert!(r.stderr.contains("nada"), "{}", show(&r));
    assert!(scraps(&db).is_empty());
    assert_eq!(api.requests(), 0);

    let sync = sync_args(&["--from", "2025-01-01", "--until", "2025-01-02"]);
    let r = atlas.expect(&dead_db_args(&sync), 3);
    assert!(r.stderr.contains("Erro"), "{}", show(&r));
}

// ---------------------------------------------------------------- check

/// Lines of the probe table: (client, route, probe).
fn probe_rows(stdout: &str) -> Vec<(String, String, String)> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("client "));
    assert!(lines.next().is_some(), "no probe table in:\n{stdout}");
    lines
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            assert!(c.len() >= 3, "probe row '{l}'");
            (c[0].to_string(), c[1].to_string(), c[2].to_string())
        })
        .collect()
}

/// 8a. A good config, init done, a reachable API: exit 0, one OK row per route.
#[test]
fn check_passes_and_probes_every_route_once() {
    let db = TestDb::new("check_ok");
    let api = standard_api();
    let atlas = new_atlas(
        &db,
        &Atlas::config(
            &format!("{}/page", api.url),
            json!({ "pedidos": sized_route(5), "itens": sized_route(5) }),
        ),
    );
    // Before init: the database is reached but the schema is missing, which
    // `atlas init` fixes: exit 2 (issue 11, item 7).
    let r = atlas.expect(&["check", "--no-probe"], 2);
    assert!(r.stdout.contains("atlas init"), "{}", show(&r));

    atlas.ok(&["init"]);
    let before = api.requests();
    let r = atlas.ok(&["check"]);
    assert_eq!(api.requests() - before, 2, "one request per route");
    assert!(r.stdout.contains("Configuração válida"), "{}", show(&r));
    assert!(r.stdout.contains("Banco de dados"), "{}", show(&r));
    let header = r
        .stdout
        .lines()
        .find(|l| l.starts_with("client "))
        .unwrap_or_else(|| panic!("{}", show(&r)));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["client", "route", "probe", "detail"]
    );
    let mut rows = probe_rows(&r.stdout);
    rows.sort();
    assert_eq!(
        rows,
        [
            ("2151".to_string(), "itens".to_string(), "OK".to_string()),
            ("2151".to_string(), "pedidos".to_string(), "OK".to_string())
        ],
        "{}",
        r.stdout
    );

    let before = api.requests();
    let r = atlas.ok(&["check", "--no-probe"]);
    assert_eq!(api.requests(), before, "--no-probe sends nothing");
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("client ")),
        "no probe table: {}",
        show(&r)
    );
}

/// 8b. A secret's environment variable missing: exit 2, named, and no
/// secret value is ever printed.
#[test]
fn check_names_a_missing_secret_and_never_a_value() {
    let db = TestDb::new("check_secret");
    let token = "s3cr3t-token-8f2a";
    let api = Api::bearer(token);
    let missing = format!("ATLAS_T_MISSING_{}", std::process::id());
    let cfg = json!({
        "clients": {
            "2151": { "name": "Com token", "base_url": format!("{}/page", api.url),
                      "auth": { "type": "bearer", "token_env": "ATLAS_T_SET" } },
            "3000": { "name": "Sem token", "base_url": format!("{}/page", api.url),
                      "auth": { "type": "bearer", "token_env": missing } }
        },
        "routes": { "pedidos": sized_route(5) }
    });
    let mut atlas = new_atlas(&db, &cfg);
    atlas.env.push(("ATLAS_T_SET".into(), token.into()));
    atlas.ok(&["init"]);

    let r = atlas.run(&["check", "--no-probe"]);
    assert_eq!(r.code, 2, "{}", show(&r));
    assert!(
        r.stdout.contains(&missing) || r.stderr.contains(&missing),
        "{}",
        show(&r)
    );

    // Regression (found by this test, fixed in 97342b0): with the probe on,
    // the client without its secret got a "secret unavailable" probe row
    // merged as Exit::Environment, so check exited 3 instead of 2.
    let r = atlas.run(&["check"]);
    assert!(
        r.stdout.contains(&missing) || r.stderr.contains(&missing),
        "{}",
        show(&r)
    );
    assert!(
        !r.stdout.contains(token) && !r.stderr.contains(token),
        "a secret value was printed: {}",
        show(&r)
    );
    let rows = probe_rows(&r.stdout);
    assert!(
        rows.contains(&("2151".into(), "pedidos".into(), "OK".into())),
        "the set token works: {}",
        r.stdout
    );
    assert!(
        rows.contains(&("3000".into(), "pedidos".into(), "problem".into())),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.code,
        2,
        "a missing secret is a config problem (exit 2): {}",
        show(&r)
    );
}

/// 8c. Broken JSON: exit 2 with the line and column.
#[test]
fn check_reports_broken_json_with_line_and_column() {
    let db = TestDb::new("check_json");
    let atlas = new_atlas(&db, &json!({}));
    std::fs::write(
        atlas.path("atlas.json"),
        "{\n  \"clients\": {\n    \"2151\": { \"name\": \"x\", \"base_url\": \"http://127.0.0.1:1\", }\n  }\n}\n",
    )
    .unwrap();
    let r = atlas.expect(&["check"], 2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("atlas.json"), "{}", show(&r));
    assert!(all.contains("line 3"), "{}", show(&r));
    assert!(all.contains("column"), "{}", show(&r));
    assert!(!all.contains("Configuração válida"), "{}", show(&r));
}

/// 8d. An unreachable database: exit 3.
#[test]
fn check_with_an_unreachable_database_exits_3() {
    let db = TestDb::new("check_nodb");
    let api = standard_api();
    let atlas = new_atlas(&db, &config(&api.url, sized_route(5)));
    for extra in [&["check"][..], &["check", "--no-probe"]] {
        let r = atlas.expect(&dead_db_args(extra), 3);
        assert!(r.stdout.contains("Configuração válida"), "{}", show(&r));
        assert!(r.stdout.contains("Banco de dados"), "{}", show(&r));
    }
}

/// 8e. One route's probe fails (its client's API is down): exit 3, that row
/// says problem (with the URL, its query secret masked), the other client's
/// row says OK.
#[test]
fn check_flags_the_route_whose_probe_fails() {
    let db = TestDb::new("check_probe");
    let api = standard_api();
    let cfg = json!({
        "clients": {
            "2151": { "name": "No ar", "base_url": format!("{}/page", api.url) },
            "4000": { "name": "Fora do ar", "base_url": format!("http://127.0.0.1:{}/page", closed_port()),
                      "auth": { "type": "query", "param": "chave", "value_env": "ATLAS_T_KEY" } }
        },
        "routes": { "pedidos": sized_route(5) }
    });
    let key = "k3y-valor-77";
    let mut atlas = new_atlas(&db, &cfg);
    atlas.env.push(("ATLAS_T_KEY".into(), key.into()));
    atlas.ok(&["init"]);
    let r = atlas.expect(&["check"], 3);
    let mut rows = probe_rows(&r.stdout);
    rows.sort();
    assert_eq!(
        rows,
        [
            ("2151".to_string(), "pedidos".to_string(), "OK".to_string()),
            (
                "4000".to_string(),
                "pedidos".to_string(),
                "problem".to_string()
            )
        ],
        "{}",
        r.stdout
    );
    let bad = r.stdout.lines().find(|l| l.starts_with("4000 ")).unwrap();
    assert!(
        bad.contains("127.0.0.1"),
        "the detail says which URL failed: {bad}"
    );
    assert!(
        !r.stdout.contains(key) && !r.stderr.contains(key),
        "the query secret was printed: {}",
        show(&r)
    );
}

// ---------------------------------------------------------------- help and exit codes

/// The entries (name, description) of one section of argh's help.
fn help_section(help: &str, section: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = help.lines().collect();
    let Some(start) = lines.iter().position(|l| *l == section) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut i = start + 1;
    while i < lines.len() && lines[i].starts_with("  ") {
        let l = &lines[i][2..];
        if !l.starts_with(' ') {
            let (name, desc) = match l.find("  ") {
                Some(k) => (l[..k].trim(), l[k..].trim()),
                None => (l.trim(), lines.get(i + 1).map(|n| n.trim()).unwrap_or("")),
            };
            out.push((name.to_string(), desc.to_string()));
        }
        i += 1;
    }
    out
}

/// Item 9: `--help` of every command exits 0 and describes every flag, positional
/// argument and subcommand it has.
#[test]
fn every_command_help_lists_and_describes_every_flag() {
    let db = TestDb::new("help");
    let atlas = new_atlas(&db, &json!({}));
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        // (command, flags and positionals, subcommands)
        (
            &[],
            &[
                "--config",
                "--database-url",
                "--plain",
                "--error-log",
                "--metrics-file",
                "-V, --version",
            ],
            &[
                "init", "check", "clients", "scrap", "sync", "manager", "verify", "auth", "status",
            ],
        ),
        (
            &["status"],
            &["--client", "--route", "--max-lag-days", "--json"],
            &[],
        ),
        (&["manager"], &["--plain"], &[]),
        (
            &["verify"],
            &["--client", "--route", "--fix", "--threads", "--json"],
            &[],
        ),
        (&["init"], &[], &[]),
        (&["auth"], &[], &["seed", "login"]),
        (&["auth", "seed"], &["--client"], &[]),
        (
            &["auth", "login"],
            &["--client", "--paste", "--timeout-secs"],
            &[],
        ),
        (&["check"], &["--no-probe", "--date", "--notify-test"], &[]),
        (&["clients"], &[], &[]),
        (&["scrap"], &[], &["create", "list", "show", "run"]),
        (
            &["scrap", "create"],
            &["--client", "--route", "--from", "--to"],
            &[],
        ),
        (&["scrap", "list"], &["--client", "--status"], &[]),
        (&["scrap", "show"], &["id"], &[]),
        (
            &["scrap", "run"],
            &[
                "id",
                "--threads",
                "--writers",
                "--batch-export",
                "--retry-max",
                "--max-db-connections",
                "--json",
            ],
            &[],
        ),
        (
            &["sync"],
            &[
                "--client",
                "--route",
                "--all",
                "--from",
                "--until",
                "--lookback-days",
                "--threads",
                "--writers",
                "--batch-export",
                "--retry-max",
                "--max-db-connections",
                "--json",
            ],
            &[],
        ),
    ];
    for (cmd, flags, subs) in cases {
        let mut args = cmd.to_vec();
        args.push("--help");
        let r = atlas.expect(&args, 0);
        let help = &r.stdout;
        assert!(help.starts_with("Usage: atlas"), "{args:?}: {help}");
        let mut entries = help_section(help, "Options:");
        entries.extend(help_section(help, "Positional Arguments:"));
        let commands = help_section(help, "Commands:");
        for (name, desc) in entries.iter().chain(commands.iter()) {
            assert!(
                !desc.is_empty(),
                "{args:?}: '{name}' has no description:\n{help}"
            );
        }
        let names: Vec<String> = entries.iter().map(|(n, _)| n.clone()).collect();
        let mut want: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        want.push("--help, help".into());
        let (mut got_sorted, mut want_sorted) = (names.clone(), want.clone());
        got_sorted.sort();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{args:?}: flags listed:\n{help}");
        // Every flag of the usage line is described.
        let usage = help.lines().next().unwrap();
        for tok in usage.split(|c: char| c.is_whitespace() || "[]<>".contains(c)) {
            if tok.starts_with("--") && tok.len() > 2 {
                assert!(
                    names.iter().any(|n| n == tok),
                    "{args:?}: {tok} in the usage line is not described:\n{help}"
                );
            }
        }
        let cmd_names: Vec<&str> = commands.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&cmd_names[..], &subs[..], "{args:?}: subcommands:\n{help}");
    }
}

/// Item 10: An unknown subcommand is refused with a pointer to the usage.
#[test]
fn unknown_subcommand_is_refused_with_usage() {
    let db = TestDb::new("unknown_cmd");
    let atlas = new_atlas(&db, &json!({}));
    let r = atlas.run(&["frobnicate"]);
    assert_ne!(r.code, 0, "{}", show(&r));
    assert!(r.stderr.contains("frobnicate"), "{}", show(&r));
    assert!(
        r.stderr.contains("--help") || r.stderr.contains("Usage"),
        "{}",
        show(&r)
    );
    let r = atlas.run(&["scrap", "frobnicate"]);
    assert_ne!(r.code, 0, "{}", show(&r));
    assert!(r.stderr.contains("frobnicate"), "{}", show(&r));
}

/// SPEC §2: bad usage exits 2 (exit 1 means "failed slices, a rerun resumes",
/// which a scheduler would retry).
// Regression (found by this test, fixed in 97342b0): `argh::from_env()`
// exits 1 on any parse error (unknown subcommand or flag, missing required
// option, non-numeric value); main.rs now maps those to 2, keeping 0 for --help.
#[test]
fn command_line_usage_errors_exit_2() {
    let db = TestDb::new("usage_exit");
    let atlas = new_atlas(&db, &json!({}));
    for args in [
        &["frobnicate"][..],
        &["sync", "--route", "pedidos"],
        &sync_args(&["--threads", "muitos"]),
        &["scrap", "run"],
        &["check", "--bogus"],
    ] {
        let r = atlas.run(args);
        assert_eq!(r.code, 2, "atlas {args:?}: {}", show(&r));
    }
}
