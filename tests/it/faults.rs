//! Fault tolerance (SPEC §2 exit codes, §5 running a scrap, §6 what the user
//! sees): HTTP faults of every kind, exhausted retries and resume, `kill -9`
//! at several points, PostgreSQL backends terminated mid-run, concurrent
//! workers on one scrap, refused credentials, secret masking, and Ctrl-C.
//!
//! Every test ends by comparing the raw table with a fault-free load of the
//! same period into another database (the sorted list of content hashes),
//! plus `count(*) = count(DISTINCT hash) = the API's own count`.

use crate::util::{self, sized_route, Api, Atlas, Bg, Run, TestDb};
use postgres::Client;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const TABLE: &str = "dados_raw_cliente_2151_pedidos";
const PER_DAY: &str = "30";
/// The standard period of this module: 20 one-day slices, 600 records.
const FROM: &str = "2025-01-01";
const TO: &str = "2025-01-20";
const SLICES: i64 = 20;

// ---------------------------------------------------------------- helpers

/// Client 2151 at `{api}/page`, route `pedidos`, optional auth.
fn config(api_url: &str, page_size: u64, auth: Option<Value>) -> Value {
    let mut c = Atlas::config(
        &format!("{api_url}/page"),
        json!({ "pedidos": sized_route(page_size) }),
    );
    if let Some(a) = auth {
        c["clients"]["2151"]["auth"] = a;
    }
    c
}

/// An Atlas whose HTTP timeout is short enough that a stalled connection
/// costs seconds, not the default 30 s.
fn new_atlas(db: &TestDb, cfg: &Value) -> Atlas {
    let mut a = Atlas::new(db, cfg);
    set_env(&mut a, "ATLAS_TIMEOUT_SECS", "5");
    a
}

fn set_env(atlas: &mut Atlas, k: &str, v: &str) {
    atlas.env.retain(|(key, _)| key != k);
    atlas.env.push((k.into(), v.into()));
}

fn rewrite_config(atlas: &Atlas, cfg: &Value) {
    std::fs::write(
        atlas.path("atlas.json"),
        serde_json::to_vec_pretty(cfg).expect("json"),
    )
    .expect("rewrite atlas.json");
}

fn one(c: &mut Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

fn rows(c: &mut Client) -> i64 {
    one(c, &format!("SELECT count(*) FROM {TABLE}"))
}

fn sorted_hashes(db: &TestDb) -> Vec<String> {
    db.strings(&format!(
        "SELECT hash_conteudo FROM {TABLE} WHERE hash_conteudo IS NOT NULL ORDER BY hash_conteudo"
    ))
}

/// The fault-free load of a period (sorted hashes, and the API's own count),
/// computed once per period by the real binary against a fault-free API,
/// into a database of its own.
fn reference(from: &str, to: &str) -> (Vec<String>, i64) {
    type Cache = Mutex<HashMap<(String, String), (Vec<String>, i64)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(v) = cache.get(&(from.to_string(), to.to_string())) {
        return v.clone();
    }
    let api = Api::start(&["--per-day", PER_DAY, "--page-size", "10"]);
    let db = TestDb::new("faults_ref");
    let atlas = new_atlas(&db, &config(&api.url, 10, None));
    let id = atlas.create("pedidos", from, to);
    let r = atlas.ok(&["scrap", "run", &id, "--json"]);
    assert_eq!(
        http_retries(&r.json(), &error_log(&atlas)),
        0,
        "the reference load is fault-free"
    );
    let expected = api.expected(from, to);
    let hashes = sorted_hashes(&db);
    assert_eq!(
        hashes.len() as i64,
        expected,
        "reference load of {from}..{to}: rows vs the API's count"
    );
    let v = (hashes, expected);
    cache.insert((from.to_string(), to.to_string()), v.clone());
    v
}

/// The raw table is exactly the fault-free load: same hash set, no
/// duplicates, every slice done, and each committed row counted once in
/// the slices' `inserted`. Returns the row count.
fn assert_exact(db: &TestDb, from: &str, to: &str, what: &str) -> i64 {
    let (want, expected) = reference(from, to);
    let mut c = db.client();
    let n = rows(&mut c);
    let distinct = one(
        &mut c,
        &format!("SELECT count(DISTINCT hash_conteudo) FROM {TABLE}"),
    );
    assert_eq!(
        (n, distinct),
        (expected, expected),
        "{what}: count(*) and count(DISTINCT hash_conteudo) must equal the API's {expected} records"
    );
    let got = sorted_hashes(db);
    if got != want {
        let g: BTreeSet<&String> = got.iter().collect();
        let w: BTreeSet<&String> = want.iter().collect();
        panic!(
            "{what}: the hash set differs from the fault-free load: {} missing, {} unexpected",
            w.difference(&g).count(),
            g.difference(&w).count()
        );
    }
    let not_done = db.strings(
        "SELECT slice_from::text || ' ' || status FROM atlas.slices WHERE status <> 'done' ORDER BY slice_from",
    );
    assert!(not_done.is_empty(), "{what}: slices not done: {not_done:?}");
    let counted = one(
        &mut c,
        "SELECT coalesce(sum(inserted), 0)::bigint FROM atlas.slices",
    );
    assert_eq!(counted, n, "{what}: the slices' `inserted` must add up to the rows committed (a batch is never half-counted)");
    n
}

/// Retries of HTTP requests: the run's `retries` minus the batch retries
/// (each logged as a `gravação falhou` block), so that these counts do not
/// depend on the writers' deadlocks (see `parallel_writers_never_deadlock`).
fn http_retries(j: &Value, log: &str) -> i64 {
    j["retries"].as_i64().expect("retries") - log.matches("| gravação falhou").count() as i64
}

fn error_log(atlas: &Atlas) -> String {
    std::fs::read_to_string(atlas.path("erros_scraps.log")).unwrap_or_default()
}

fn show(r: &Run) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    )
}

fn status_counts(db: &TestDb) -> Vec<String> {
    db.strings("SELECT status || '=' || count(*) FROM atlas.slices GROUP BY status ORDER BY status")
}

/// A slow API (each data request waits `latency_ms`) and a scrap of the
/// standard period with 5-record pages (6 pages a day, 120 in all), run by
/// 2 fetcher threads: a run lasts a few seconds, long enough to hit it.
fn slow_setup(tag: &str, latency_ms: &str) -> (Api, TestDb, Atlas, String) {
    let api = Api::start(&[
        "--per-day",
        PER_DAY,
        "--page-size",
        "10",
        "--latency-ms",
        latency_ms,
    ]);
    let db = TestDb::new(tag);
    let mut atlas = new_atlas(&db, &config(&api.url, 5, None));
    set_env(&mut atlas, "ATLAS_THREADS", "2");
    set_env(&mut atlas, "ATLAS_LEASE_SECS", "2");
    let id = atlas.create("pedidos", FROM, TO);
    (api, db, atlas, id)
}

fn wait_rows_over(db: &TestDb, bg: &mut Bg, n: i64, what: &str) {
    let mut c = db.client();
    util::wait_for(what, Duration::from_secs(15), || {
        if !bg.running() {
            panic!("{what}: the run ended first\nstderr:\n{}", bg.stderr());
        }
        rows(&mut c) > n
    });
}

// ---------------------------------------------------------------- 1. HTTP faults

/// Every fault kind, deterministically on every page: the first 7 requests
/// of each URL answer 500, 503, 429 (Retry-After: 1), slow (1.5 s against a
/// 1 s timeout), a dropped connection, a truncated body, an HTML page; the
/// 8th succeeds. With retry_max 10 the run loads everything.
#[test]
fn every_fault_kind_on_every_page_is_retried_to_the_exact_set() {
    let (from, to) = ("2025-01-01", "2025-01-03");
    let api = Api::start(&[
        "--per-day",
        PER_DAY,
        "--page-size",
        "10",
        "--fail-first",
        "7",
        "--fault-kinds",
        "500,503,429,slow,drop,truncate,html",
        "--retry-after",
        "1",
        "--slow-ms",
        "1500",
    ]);
    let db = TestDb::new("faults_kinds");
    // 15-record pages: 2 pages a day, 6 URLs, each failing 7 times.
    let mut atlas = new_atlas(&db, &config(&api.url, 15, None));
    set_env(&mut atlas, "ATLAS_TIMEOUT_SECS", "1");
    let id = atlas.create("pedidos", from, to);
    let t0 = Instant::now();
    let r = atlas.run(&["scrap", "run", &id, "--retry-max", "10", "--json"]);
    let elapsed = t0.elapsed();
    assert_eq!(r.code, 0, "{}", show(&r));
    let j = r.json();
    assert_eq!(j["status"], "done", "{j}");
    assert_eq!(j["slices_done"], 3, "{j}");
    assert_eq!(j["slices_failed"], 0, "{j}");
    let pages = j["pages"].as_i64().expect("pages");
    assert_eq!(pages, 6, "{j}");
    let log = error_log(&atlas);
    // Each page failed exactly 7 times before it succeeded.
    assert_eq!(
        http_retries(&j, &log),
        7 * pages,
        "retries: {j}\nstderr:\n{}",
        r.stderr
    );
    for n in 1..=7 {
        let line = format!("Tentativa {n}/10 falhou, aguardando");
        assert!(
            r.stderr.contains(&line),
            "stderr lacks '{line}':\n{}",
            r.stderr
        );
    }
    assert!(
        !r.stderr.contains("Tentativa 8/10"),
        "no page needed an 8th attempt:\n{}",
        r.stderr
    );
    // The 429's Retry-After (1 s) is honoured: the backoff cap is 0.2 s here,
    // so only the server's header can make the wait 1.0 s.
    assert_eq!(
        r.stderr
            .matches("Tentativa 3/10 falhou, aguardando 1.0s")
            .count(),
        6,
        "each 429 waits its Retry-After:\n{}",
        r.stderr
    );
    assert_eq!(
        log.matches("| tentativa falhou").count(),
        42,
        "one error-log block per failed attempt:\n{log}"
    );
    for needle in [
        "http: 500",
        "http: 503",
        "http: 429",
        "timeout",
        "not valid JSON",
        "http: 200",
    ] {
        assert!(log.contains(needle), "error log lacks '{needle}':\n{log}");
    }
    let stats = api.get("/_stats");
    assert_eq!(stats["faults"], 42, "{stats}");
    assert_exact(&db, from, to, "after every fault kind");
    eprintln!("every_fault_kind: {elapsed:?}");
}

/// Random faults of every kind on 30% of the requests.
#[test]
fn random_faults_at_30_percent_load_the_exact_set() {
    let api = Api::start(&[
        "--per-day",
        PER_DAY,
        "--page-size",
        "10",
        "--fault-rate",
        "0.3",
        "--fault-seed",
        "2025",
        "--retry-after",
        "0",
        "--slow-ms",
        "1500",
    ]);
    let db = TestDb::new("faults_random");
    let mut atlas = new_atlas(&db, &config(&api.url, 10, None));
    set_env(&mut atlas, "ATLAS_TIMEOUT_SECS", "1");
    let id = atlas.create("pedidos", FROM, TO);
    let r = atlas.run(&["scrap", "run", &id, "--retry-max", "10", "--json"]);
    assert_eq!(r.code, 0, "{}", show(&r));
    let j = r.json();
    assert_eq!(j["slices_done"], SLICES, "{j}");
    assert_eq!(j["slices_failed"], 0, "{j}");
    let retries = j["retries"].as_i64().expect("retries");
    assert!(retries > 0, "30% faults must cause retries: {j}");
    let faults = api.get("/_stats")["faults"].as_i64().expect("faults");
    assert!(faults > 0, "the API injected no fault");
    assert!(
        retries >= faults,
        "every injected fault is a failed attempt: {retries} retries < {faults} faults"
    );
    assert!(
        r.stderr.contains("Tentativa 1/10 falhou, aguardando"),
        "{}",
        r.stderr
    );
    assert_exact(&db, FROM, TO, "after 30% random faults");
    // Idempotent: running the done scrap again changes nothing.
    let again = atlas.ok(&["scrap", "run", &id, "--json"]);
    assert_eq!(again.json()["inserted"], 0, "{}", again.stdout);
    assert_exact(&db, FROM, TO, "after a second run");
}

// ---------------------------------------------------------------- 2. fail-first

#[test]
fn fail_first_below_retry_max_succeeds_in_one_run() {
    let api = Api::start(&[
        "--per-day",
        PER_DAY,
        "--page-size",
        "10",
        "--fail-first",
        "3",
        "--fault-kinds",
        "500,503,429",
        "--retry-after",
        "0",
    ]);
    let db = TestDb::new("faults_ff_ok");
    let atlas = new_atlas(&db, &config(&api.url, 10, None));
    let id = atlas.create("pedidos", FROM, TO);
    let r = atlas.run(&["scrap", "run", &id, "--retry-max", "5", "--json"]);
    assert_eq!(r.code, 0, "{}", show(&r));
    let j = r.json();
    assert_eq!(j["slices_done"], SLICES, "{j}");
    let pages = j["pages"].as_i64().expect("pages");
    assert_eq!(pages, 3 * SLICES, "{j}");
    assert_eq!(
        http_retries(&j, &error_log(&atlas)),
        3 * pages,
        "3 failed attempts per page: {j}"
    );
    assert!(
        r.stderr.contains("Tentativa 3/5 falhou, aguardando"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Tentativa 4/5"), "{}", r.stderr);
    assert_exact(&db, FROM, TO, "fail-first 3 with retry_max 5");
}

/// fail-first 4 > retry_max 2: the slices whose URLs still fail end failed
/// (exit 1, `scrap show` gives their last error, the error log one block
/// per attempt); a rerun against a fault-free API fetches only those slices.
#[test]
fn exhausted_retries_fail_slices_and_the_rerun_resumes_only_them() {
    let faulty = Api::start(&[
        "--per-day",
        PER_DAY,
        "--page-size",
        "10",
        "--fail-first",
        "4",
        "--fault-kinds",
        "500,503",
    ]);
    // Warm-up: a separate load of the first 5 days uses up the fail-first
    // budget of their URLs (same route, same slices, so the same URLs).
    {
        let warm_db = TestDb::new("faults_ff_warm");
        let warm = new_atlas(&warm_db, &config(&faulty.url, 10, None));
        let wid = warm.create("pedidos", "2025-01-01", "2025-01-05");
        let w = warm.run(&["scrap", "run", &wid, "--retry-max", "5", "--json"]);
        assert_eq!(w.code, 0, "warm-up: {}", show(&w));
        assert_eq!(
            http_retries(&w.json(), &error_log(&warm)),
            4 * 15,
            "warm-up: {}",
            w.stdout
        );
    }
    let db = TestDb::new("faults_ff_fail");
    let atlas = new_atlas(&db, &config(&faulty.url, 10, None));
    let id = atlas.create("pedidos", FROM, TO);
    let r = atlas.run(&["scrap", "run", &id, "--retry-max", "2", "--json"]);
    assert_eq!(r.code, 1, "failed slices exit 1: {}", show(&r));
    let j = r.json();
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["slices_done"], 5, "{j}");
    assert_eq!(j["slices_failed"], 15, "{j}");
    assert!(
        r.stderr.contains("Tentativa 1/2 falhou, aguardando"),
        "{}",
        r.stderr
    );
    assert_eq!(
        db.i64(&format!("SELECT count(*) FROM {TABLE}")),
        5 * 30,
        "what was loaded stays committed"
    );

    let shown = atlas.ok(&["scrap", "show", &id]);
    let failed: Vec<&str> = shown
        .stdout
        .lines()
        .filter(|l| l.starts_with("2025-") && l.contains(" failed "))
        .collect();
    assert_eq!(
        failed.len(),
        15,
        "scrap show lists 15 failed slices:\n{}",
        shown.stdout
    );
    for l in &failed {
        assert!(
            l.contains("HTTP 503") && l.contains("after 2 attempts"),
            "failed slice shown without its last error: {l}\n{}",
            shown.stdout
        );
    }
    let errs = db
        .strings("SELECT coalesce(last_error, '<none>') FROM atlas.slices WHERE status = 'failed'");
    assert_eq!(errs.len(), 15);
    assert!(errs.iter().all(|e| e.contains("HTTP 503")), "{errs:?}");

    let log = error_log(&atlas);
    let blocks = log.matches("\n==== ").count() + usize::from(log.starts_with("==== "));
    assert_eq!(
        blocks - log.matches("| gravação falhou").count(),
        15 * 2 + 15,
        "blocks: 2 attempts + 1 slice failure per failed slice:\n{log}"
    );
    assert_eq!(log.matches("| fatia falhou").count(), 15, "{log}");
    assert_eq!(log.matches("| tentativa falhou").count(), 30, "{log}");
    for needle in [
        "cliente: 2151 | rota: pedidos",
        "fatia: 2025-01-06 até 2025-01-06",
        "página: 1",
        "http: 500",
        "http: 503",
        "url: http://127.0.0.1:",
    ] {
        assert!(log.contains(needle), "error log lacks '{needle}':\n{log}");
    }

    // Rerun against a fault-free API: only the 15 failed slices are fetched.
    let clean = Api::start(&["--per-day", PER_DAY, "--page-size", "10"]);
    rewrite_config(&atlas, &config(&clean.url, 10, None));
    let r2 = atlas.run(&["scrap", "run", &id, "--json"]);
    assert_eq!(r2.code, 0, "{}", show(&r2));
    let requests = clean.requests();
    let j2 = r2.json();
    assert_eq!(j2["slices_done"], SLICES, "{j2}");
    assert_eq!(j2["inserted"], 15 * 30, "{j2}");
    assert_eq!(
        j2["duplicates"], 0,
        "nothing already loaded is fetched again: {j2}"
    );
    let resumed_pages = db.i64(
        "SELECT coalesce(sum(pages), 0)::bigint FROM atlas.slices WHERE slice_from >= '2025-01-06'",
    );
    assert_eq!(resumed_pages, 15 * 3);
    assert_eq!(
        requests,
        resumed_pages,
        "the rerun requests only the failed slices' pages (the whole period is {} pages)",
        3 * SLICES
    );
    assert_exact(&db, FROM, TO, "after the resume");
}

// ---------------------------------------------------------------- 3. kill -9

/// Kills the run at a point, then reruns with 2 s leases: the rerun waits
/// for the dead worker's leases to expire, takes its slices and completes.
fn kill_then_rerun(tag: &str, wait: impl FnOnce(&TestDb, &mut Bg)) {
    let (_api, db, atlas, id) = slow_setup(tag, "40");
    let mut bg = Bg::spawn(&atlas, &["scrap", "run", &id, "--json"], "killed");
    wait(&db, &mut bg);
    bg.kill9();
    let mut c = db.client();
    // The dead process's backends go away (an in-flight COMMIT completes or rolls back).
    util::wait_for(
        "the killed run's backends gone",
        Duration::from_secs(10),
        || {
            c.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'atlas'",
            &[&db.name],
        )
        .map(|r| r.get::<_, i64>(0) == 0)
        .unwrap_or(false)
        },
    );
    let before = rows(&mut c);
    let held_ids = db.strings(
        "SELECT id::text FROM atlas.slices WHERE status = 'running' AND worker IS NOT NULL ORDER BY id",
    );
    let held = held_ids.len();
    assert!(
        held > 0,
        "the killed run held slices: {:?}",
        status_counts(&db)
    );
    let done_before = one(
        &mut c,
        "SELECT count(*) FROM atlas.slices WHERE status = 'done'",
    );
    let t0 = Instant::now();
    let r = atlas.run(&["scrap", "run", &id, "--json"]);
    assert_eq!(r.code, 0, "rerun after kill -9: {}", show(&r));
    let j = r.json();
    assert_eq!(j["slices_done"], SLICES, "{j}");
    assert_eq!(j["slices_failed"], 0, "{j}");
    let n = assert_exact(&db, FROM, TO, tag);
    assert_eq!(
        j["inserted"].as_i64(),
        Some(n - before),
        "the rerun inserts exactly what the killed run had not committed: {j}"
    );
    // The dead worker's slices were taken over once their lease expired:
    // claimed twice, by the dead run and by the rerun.
    let retaken = db.strings(&format!(
        "SELECT id || ':' || attempts || ':' || (last_run_id = (SELECT max(id) FROM atlas.runs)) FROM atlas.slices
         WHERE id IN ({}) ORDER BY id",
        held_ids.join(",")
    ));
    assert!(
        retaken.iter().all(|x| x.ends_with(":2:true")),
        "slices held by the killed run (id:attempts:claimed by the rerun): {retaken:?}"
    );
    eprintln!(
        "{tag}: killed with {before} rows, {done_before} slices done, {held} held; rerun {:?}",
        t0.elapsed()
    );
}

#[test]
fn kill9_right_after_start_then_rerun_takes_over_the_leases() {
    kill_then_rerun("faults_kill_start", |db, bg| {
        let mut c = db.client();
        util::wait_for("a slice claimed", Duration::from_secs(15), || {
            one(
                &mut c,
                "SELECT count(*) FROM atlas.slices WHERE status = 'running'",
            ) > 0
        });
        bg.assert_running("kill right after start");
    });
}

#[test]
fn kill9_after_rows_are_committed_then_rerun_completes() {
    kill_then_rerun("faults_kill_rows", |db, bg| {
        wait_rows_over(db, bg, 100, "over 100 rows committed")
    });
}

#[test]
fn kill9_after_a_slice_is_done_then_rerun_completes() {
    kill_then_rerun("faults_kill_done", |db, bg| {
        let mut c = db.client();
        util::wait_for("a slice done", Duration::from_secs(15), || {
            assert!(
                bg.running(),
                "the run ended first\nstderr:\n{}",
                bg.stderr()
            );
            one(
                &mut c,
                "SELECT count(*) FROM atlas.slices WHERE status = 'done'",
            ) >= 1
        });
    });
}

// ---------------------------------------------------------------- 4. PostgreSQL backends killed

#[test]
fn postgres_backends_terminated_mid_run() {
    let (_api, db, atlas, id) = slow_setup("faults_pgterm", "40");
    let mut bg = Bg::spawn(&atlas, &["scrap", "run", &id, "--json"], "pgterm");
    let mut c = db.client();
    let terminate = |c: &mut Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND application_name = 'atlas' AND pid <> pg_backend_pid()) t",
            &[&db.name],
        )
        .expect("pg_terminate_backend")
        .get(0)
    };
    wait_rows_over(&db, &mut bg, 60, "over 60 rows committed");
    let first = terminate(&mut c);
    assert!(first > 0, "atlas had backends to terminate");
    wait_rows_over(
        &db,
        &mut bg,
        250,
        "over 250 rows after the first termination",
    );
    bg.assert_running("second termination");
    let second = terminate(&mut c);
    let r = bg.finish(Duration::from_secs(30));
    eprintln!(
        "postgres_backends_terminated_mid_run: terminated {first} then {second} backends; exit {}\nstderr:\n{}",
        r.code, r.stderr
    );
    let runs = db.strings(
        "SELECT id || ':' || status || ':' || coalesce(error, '') FROM atlas.runs ORDER BY id",
    );
    let slices = status_counts(&db);
    if r.code == 0 {
        assert_eq!(r.json()["slices_done"], SLICES, "{}", r.stdout);
    } else {
        let again = atlas.run(&["scrap", "run", &id, "--json"]);
        assert_eq!(
            again.code,
            0,
            "rerun after exit {}: {}",
            r.code,
            show(&again)
        );
    }
    assert_exact(&db, FROM, TO, "after terminated backends");
    // The run's own connection (for its `atlas.runs` row) is terminated too:
    // before f1d89ed this run exited 1 with every slice done, `slices_done: 0`
    // in --json, and its run row left 'running' for ever.
    assert!(
        r.code == 0 || r.code == 3,
        "a lost connection is retried (SPEC §5): expected exit 0 (or 3 then a rerun); \
         runs {runs:?}, slices {slices:?}\n{}",
        show(&r)
    );
    // The run row records how the run ended (not left 'running').
    let stuck = db
        .strings("SELECT id::text FROM atlas.runs WHERE status = 'running' OR finished_at IS NULL");
    assert!(
        stuck.is_empty(),
        "runs left without an end: {stuck:?} ({runs:?})"
    );
}

// ---------------------------------------------------------------- 5. concurrent workers

#[test]
fn three_concurrent_runs_share_the_scrap_without_duplicates() {
    let (_api, db, mut atlas, id) = slow_setup("faults_conc", "20");
    set_env(&mut atlas, "ATLAS_LEASE_SECS", "60");
    let mut runs: Vec<Bg> = (0..3)
        .map(|i| {
            Bg::spawn(
                &atlas,
                &["scrap", "run", &id, "--json"],
                &format!("conc{i}"),
            )
        })
        .collect();
    let results: Vec<Run> = runs
        .iter_mut()
        .map(|b| b.finish(Duration::from_secs(30)))
        .collect();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.code, 0, "worker {i}: {}", show(r));
        assert_eq!(
            r.json()["slices_done"],
            SLICES,
            "worker {i} sees the whole scrap done: {}",
            r.stdout
        );
    }
    let n = assert_exact(&db, FROM, TO, "three concurrent runs");
    let mut c = db.client();
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM atlas.slices WHERE status <> 'done'"
        ),
        0
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT coalesce(sum(attempts), 0)::bigint FROM atlas.slices"
        ),
        SLICES,
        "each slice claimed exactly once"
    );
    assert_eq!(one(&mut c, "SELECT count(*) FROM atlas.runs"), 3);
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM atlas.runs WHERE status = 'done'"
        ),
        3
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT coalesce(sum(inserted), 0)::bigint FROM atlas.runs"
        ),
        n,
        "the runs' inserted add up to the rows: each row inserted once"
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT coalesce(sum(duplicates), 0)::bigint FROM atlas.runs"
        ),
        0,
        "no record fetched twice"
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT coalesce(sum(slices_done), 0)::bigint FROM atlas.runs"
        ),
        SLICES
    );
    let sharing = one(
        &mut c,
        "SELECT count(*) FROM atlas.runs WHERE slices_done > 0",
    );
    assert!(
        sharing >= 2,
        "the work was shared by the processes ({sharing} worked)"
    );
    let json_inserted: i64 = results
        .iter()
        .map(|r| r.json()["inserted"].as_i64().unwrap_or(-1))
        .sum();
    assert_eq!(
        json_inserted, n,
        "the --json summaries' inserted add up to the rows"
    );
}

// ---------------------------------------------------------------- writers vs writers

/// Writers must not deadlock each other. Each batch transaction inserts its
/// rows and then updates the counters of every slice it holds rows of; two
/// writers whose batches hold rows of the same slices must take those row
/// locks in one order.
///
/// Regression: slices used to be updated in the order a batch met them,
/// and fault-free loads hit `deadlock detected` (then retried). Five loads here.
#[test]
fn parallel_writers_never_deadlock() {
    let (from, to) = ("2025-02-01", "2025-03-12");
    let api = Api::start(&["--per-day", PER_DAY, "--page-size", "10"]);
    let mut retries = Vec::new();
    let mut logs = String::new();
    for i in 0..5 {
        // A fresh database each time: inserts of new rows hold their
        // transactions longer than conflicts on rows already there.
        let db = TestDb::new("faults_deadlock");
        let mut atlas = new_atlas(&db, &config(&api.url, 10, None));
        set_env(&mut atlas, "ATLAS_WRITERS", "4");
        let id = atlas.create("pedidos", from, to);
        let r = atlas.ok(&["scrap", "run", &id, "--json"]);
        retries.push(r.json()["retries"].as_i64().unwrap_or(-1));
        logs.push_str(&error_log(&atlas));
        if i == 0 {
            assert_exact(&db, from, to, "a load with 4 writers");
        }
    }
    assert_eq!(
        logs.matches("deadlock detected").count(),
        0,
        "writers deadlocked (retries per run: {retries:?}):\n{logs}"
    );
    assert_eq!(retries, vec![0; 5], "a fault-free load needs no retry");
}

// ---------------------------------------------------------------- 6. 401

#[test]
fn refused_bearer_token_exits_3_and_never_leaks_a_secret() {
    let api = Api::start(&[
        "--per-day",
        PER_DAY,
        "--page-size",
        "10",
        "--auth",
        "bearer:s3cr3t-T0KEN",
    ]);
    let db = TestDb::new("faults_401");
    let auth = json!({ "type": "bearer", "token_env": "ATLAS_TOKEN_T" });
    let mut atlas = new_atlas(&db, &config(&api.url, 10, Some(auth)));
    set_env(&mut atlas, "ATLAS_TOKEN_T", "wrong-token-VALUE");
    let id = atlas.create("pedidos", FROM, TO);
    let r = atlas.run(&["scrap", "run", &id, "--json"]);
    assert_eq!(
        r.code,
        3,
        "credentials refused = environment failure: {}",
        show(&r)
    );
    assert!(
        r.stderr.contains("2151") && r.stderr.contains("pedidos"),
        "stderr names client and route:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("401"),
        "stderr gives the status:\n{}",
        r.stderr
    );
    assert_eq!(db.i64(&format!("SELECT count(*) FROM {TABLE}")), 0);
    let stuck = db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'running'");
    assert_eq!(
        stuck,
        0,
        "no slice left running after the abort: {:?}",
        status_counts(&db)
    );
    let log = error_log(&atlas);
    assert!(
        log.contains("http: 401"),
        "error log records the refusal:\n{log}"
    );
    let db_text = db.strings(
        "SELECT coalesce((SELECT string_agg(coalesce(last_error, '') || coalesce(worker, ''), '|') FROM atlas.slices), '')
             || coalesce((SELECT string_agg(coalesce(error, '') || settings::text || worker, '|') FROM atlas.runs), '')",
    )[0]
        .clone();
    for secret in ["wrong-token-VALUE", "s3cr3t"] {
        for (place, text) in [
            ("stdout", &r.stdout),
            ("stderr", &r.stderr),
            ("error log", &log),
            ("atlas schema", &db_text),
        ] {
            assert!(
                !text.contains(secret),
                "'{secret}' leaked into {place}:\n{text}"
            );
        }
    }

    set_env(&mut atlas, "ATLAS_TOKEN_T", "s3cr3t-T0KEN");
    let ok = atlas.run(&["scrap", "run", &id, "--json"]);
    assert_eq!(ok.code, 0, "{}", show(&ok));
    assert!(
        !ok.stdout.contains("s3cr3t") && !ok.stderr.contains("s3cr3t"),
        "{}",
        show(&ok)
    );
    assert!(!error_log(&atlas).contains("s3cr3t"));
    assert_exact(&db, FROM, TO, "with the right token");
}

// ---------------------------------------------------------------- 7. query-string secret

#[test]
fn query_auth_secret_is_masked_in_the_error_log() {
    let api = Api::start(&[
        "--per-day",
        PER_DAY,
        "--page-size",
        "10",
        "--auth",
        "query:apikey:K3Y-S3CRET",
        "--fail-first",
        "1",
        "--fault-kinds",
        "500",
    ]);
    let db = TestDb::new("faults_qauth");
    let auth = json!({ "type": "query", "param": "apikey", "value_env": "ATLAS_KEY" });
    let mut atlas = new_atlas(&db, &config(&api.url, 10, Some(auth)));
    set_env(&mut atlas, "ATLAS_KEY", "K3Y-S3CRET");
    let (from, to) = ("2025-01-01", "2025-01-05");
    let id = atlas.create("pedidos", from, to);
    let r = atlas.run(&["scrap", "run", &id, "--json"]);
    assert_eq!(r.code, 0, "{}", show(&r));
    let log = error_log(&atlas);
    assert_eq!(
        http_retries(&r.json(), &log),
        15,
        "one retry per page: {}",
        r.stdout
    );
    assert_eq!(log.matches("| tentativa falhou").count(), 15, "{log}");
    assert!(
        log.contains("apikey=***"),
        "the auth param is masked in the logged URL:\n{log}"
    );
    let db_text = db.strings(
        "SELECT coalesce((SELECT string_agg(coalesce(last_error, ''), '|') FROM atlas.slices), '')
             || coalesce((SELECT string_agg(coalesce(error, '') || settings::text, '|') FROM atlas.runs), '')",
    )[0]
        .clone();
    for (place, text) in [
        ("error log", &log),
        ("stdout", &r.stdout),
        ("stderr", &r.stderr),
        ("atlas schema", &db_text),
    ] {
        assert!(
            !text.contains("K3Y-S3CRET"),
            "the query secret leaked into {place}:\n{text}"
        );
    }
    assert_exact(&db, from, to, "query auth with one failure per page");
}

// ---------------------------------------------------------------- 8. Ctrl-C

#[test]
fn ctrl_c_exits_130_releases_slices_and_the_rerun_completes() {
    let (_api, db, atlas, id) = slow_setup("faults_sigint", "40");
    let mut bg = Bg::spawn(&atlas, &["scrap", "run", &id, "--json"], "sigint");
    wait_rows_over(&db, &mut bg, 100, "over 100 rows committed");
    bg.assert_running("SIGINT");
    let st = Command::new("kill")
        .args(["-INT", &bg.pid().to_string()])
        .status()
        .expect("kill -INT");
    assert!(st.success());
    let r = bg.finish(Duration::from_secs(15));
    assert_eq!(r.code, 130, "Ctrl-C exits 130: {}", show(&r));
    let j = r.json();
    assert_eq!(j["status"], "interrupted", "{j}");
    let mut c = db.client();
    let running = one(
        &mut c,
        "SELECT count(*) FROM atlas.slices WHERE status = 'running' OR worker IS NOT NULL",
    );
    assert_eq!(
        running,
        0,
        "Ctrl-C releases the slices it held: {:?}",
        status_counts(&db)
    );
    assert_eq!(
        one(
            &mut c,
            "SELECT count(*) FROM atlas.slices WHERE status = 'failed'"
        ),
        0,
        "{:?}",
        status_counts(&db)
    );
    let pending = one(
        &mut c,
        "SELECT count(*) FROM atlas.slices WHERE status = 'pending'",
    );
    assert!(
        pending > 0,
        "the interrupted run left work to do: {:?}",
        status_counts(&db)
    );
    assert_eq!(
        db.strings("SELECT status FROM atlas.runs"),
        vec!["interrupted".to_string()]
    );
    let before = rows(&mut c);
    // No lease to wait for: the rerun starts at once and completes.
    let t0 = Instant::now();
    let r2 = atlas.run(&["scrap", "run", &id, "--json"]);
    assert_eq!(r2.code, 0, "{}", show(&r2));
    let n = assert_exact(&db, FROM, TO, "after Ctrl-C and rerun");
    assert_eq!(
        r2.json()["inserted"].as_i64(),
        Some(n - before),
        "{}",
        r2.stdout
    );
    eprintln!(
        "ctrl_c: {before} rows at interrupt, rerun {:?}",
        t0.elapsed()
    );
}
