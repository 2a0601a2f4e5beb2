//! Limits against what an API sends and what a config says: a server-asked
//! pause longer than `max_pause_secs` fails its slice (the next run resumes
//! it), a body past `max_body_mb` (or the memory budget) fails its slice and
//! the run goes on, and every numeric key is held to its range (exit 2,
//! nothing changed).

use crate::util::{self, create_args, sync_args, Api, Atlas, TestDb};
use serde_json::{json, Value};

const TABLE: &str = "dados_raw_cliente_2151_pedidos";

fn config(api: &Api, page_size: u64) -> Value {
    let mut route = util::page_route();
    route["pagination"]["size"] = json!(page_size);
    Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route }))
}

/// Slices of the scrap by status and last error.
fn slices(db: &TestDb) -> Vec<(String, String)> {
    let mut c = db.client();
    c.query(
        "SELECT status::text, coalesce(last_error, '') FROM atlas.slices ORDER BY slice_from",
        &[],
    )
    .expect("slices")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn no_panic(run: &util::Run) {
    for out in [&run.stdout, &run.stderr] {
        assert!(!out.contains("panicked"), "a thread panicked:\n{out}");
    }
}

#[test]
fn a_retry_after_past_max_pause_secs_fails_the_slice_and_the_next_run_resumes_it() {
    // Every URL's first request: 429 asking for 3,170 years.
    let api = Api::start(&[
        "--per-day",
        "20",
        "--fault-kinds",
        "429",
        "--fail-first",
        "1",
        "--retry-after",
        "99999999999",
    ]);
    let db = TestDb::new("limits_pause");
    let atlas = Atlas::new(&db, &config(&api, 50));
    let id = atlas.create("pedidos", "2025-01-01", "2025-01-03");
    let run = atlas.expect(&["scrap", "run", &id, "--json"], 1);
    no_panic(&run);
    let j = run.json();
    assert_eq!(j["status"], "failed");
    assert_eq!(j["slices_failed"], 3);
    for (status, error) in slices(&db) {
        assert_eq!(status, "failed");
        assert_eq!(
            error,
            "page 1: HTTP 429: the API asked to wait 99999999999 s (more than max_pause_secs, 900 s)"
        );
    }
    // Not retried: one request per slice, no pause obeyed.
    assert_eq!(api.requests(), 3);
    // The next run resumes what failed, against an API that now answers.
    atlas.ok(&["scrap", "run", &id]);
    util::assert_exact(&db, api.expected("2025-01-01", "2025-01-03"), "resumed");
}

#[test]
fn max_pause_secs_of_a_client_or_route_caps_a_503_s_retry_after() {
    let api = Api::start(&[
        "--per-day",
        "10",
        "--fault-kinds",
        "503",
        "--fail-first",
        "1",
        "--unavailable-retry-after",
        "5",
    ]);
    let db = TestDb::new("limits_pause_client");
    let mut cfg = config(&api, 50);
    cfg["clients"]["2151"]["max_pause_secs"] = json!(2);
    let atlas = Atlas::new(&db, &cfg);
    let id = atlas.create("pedidos", "2025-01-01", "2025-01-01");
    let run = atlas.expect(&["scrap", "run", &id], 1);
    no_panic(&run);
    assert_eq!(
        slices(&db)[0].1,
        "page 1: HTTP 503: the API asked to wait 5 s (more than max_pause_secs, 2 s)"
    );
    // The route's own key wins over the client's: 10 s allows the 5 s wait.
    cfg["routes"]["pedidos"]["max_pause_secs"] = json!(10);
    std::fs::write(atlas.path("atlas.json"), cfg.to_string()).expect("config");
    let api2 = Api::start(&[
        "--per-day",
        "10",
        "--fault-kinds",
        "503",
        "--fail-first",
        "1",
        "--unavailable-retry-after",
        "1",
    ]);
    cfg["clients"]["2151"]["base_url"] = json!(format!("{}/page", api2.url));
    std::fs::write(atlas.path("atlas.json"), cfg.to_string()).expect("config");
    atlas.ok(&["scrap", "run", &id]);
    util::assert_exact(&db, api2.expected("2025-01-01", "2025-01-01"), "obeyed");
}

#[test]
fn a_body_past_max_body_mb_fails_its_slice_and_the_run_goes_on() {
    // 4,000 records on one page: about 1.3 MB of JSON.
    let api = Api::start(&["--per-day", "4000", "--page-size", "10000"]);
    let db = TestDb::new("limits_body");
    let mut atlas = Atlas::new(&db, &config(&api, 5000));
    atlas.env.push(("ATLAS_MAX_BODY_MB".into(), "1".into()));
    let id = atlas.create("pedidos", "2025-01-01", "2025-01-02");
    let run = atlas.expect(&["scrap", "run", &id, "--json"], 1);
    no_panic(&run);
    assert_eq!(run.json()["slices_failed"], 2);
    for (status, error) in slices(&db) {
        assert_eq!(status, "failed");
        assert_eq!(
            error,
            "page 1: body larger than 1 MiB after decompression (max_body_mb)"
        );
    }
    assert_eq!(db.i64(&format!("SELECT count(*) FROM {TABLE}")), 0);
    // The memory budget bounds the body too: 256 MiB asked, 1 MiB budget.
    atlas.env.retain(|(k, _)| k != "ATLAS_MAX_BODY_MB");
    atlas.env.push(("ATLAS_MEMORY_MB".into(), "1".into()));
    let run = atlas.expect(&["scrap", "run", &id], 1);
    assert!(
        run.stdout.contains("com falha: 2"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    // Room enough: the same pages load whole.
    atlas.env.retain(|(k, _)| k != "ATLAS_MEMORY_MB");
    atlas.env.push(("ATLAS_MAX_BODY_MB".into(), "4".into()));
    atlas.ok(&["scrap", "run", &id]);
    util::assert_exact(&db, 8000, "loaded once the limit allows");
}

#[test]
fn numbers_out_of_range_are_refused_naming_the_key_and_its_range() {
    let api = Api::start(&[]);
    let db = TestDb::new("limits_ranges");
    let good = config(&api, 50);
    let atlas = Atlas::new(&db, &good);
    atlas.ok(&["init"]);
    let create = create_args("2151", "pedidos", "2025-01-01", "2025-01-01");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "progress_secs": 1e300 }),
            "key 'progress_secs': must be between 0.1 and 3600",
        ),
        (
            json!({ "memory_mb": 100000 }),
            "key 'memory_mb': must be between 1 and 65536",
        ),
        (
            json!({ "max_body_mb": 0 }),
            "key 'max_body_mb': must be between 1 and 65536",
        ),
        (
            json!({ "retry_max": 1000 }),
            "key 'retry_max': must be between 1 and 100",
        ),
        (
            json!({ "clients": { "2151": { "rate_limit_per_sec": 1e-30 } } }),
            "key 'clients.2151.rate_limit_per_sec': must be between 0.001 and 100000",
        ),
        (
            json!({ "clients": { "2151": { "max_pause_secs": 0 } } }),
            "key 'clients.2151.max_pause_secs': must be between 1 and 86400",
        ),
        (
            json!({ "routes": { "pedidos": { "max_pause_secs": 100000 } } }),
            "key 'routes.pedidos.max_pause_secs': must be between 1 and 86400",
        ),
        (
            json!({ "routes": { "pedidos": { "pagination": { "max_pages": 0 } } } }),
            "key 'routes.pedidos.pagination.max_pages': must be between 1 and 10000000",
        ),
        (
            json!({ "routes": { "pedidos": { "pagination": { "size": 2000000 } } } }),
            "key 'routes.pedidos.pagination.size': must be between 1 and 1000000",
        ),
    ];
    for (patch, message) in cases {
        let mut cfg = good.clone();
        merge(&mut cfg, &patch);
        std::fs::write(atlas.path("atlas.json"), cfg.to_string()).expect("config");
        let run = atlas.expect(&create, 2);
        assert!(
            run.stderr.contains(message),
            "{patch}: expected '{message}' in:\n{}",
            run.stderr
        );
    }
    std::fs::write(atlas.path("atlas.json"), good.to_string()).expect("config");
    for (env, message) in [
        (
            "ATLAS_PROGRESS_SECS",
            "progress_secs: must be between 0.1 and 3600",
        ),
        (
            "ATLAS_TIMEOUT_SECS",
            "timeout_secs: must be between 1 and 3600",
        ),
        (
            "ATLAS_MAX_BODY_MB",
            "max_body_mb: must be between 1 and 65536",
        ),
        (
            "ATLAS_BACKOFF_MS",
            "ATLAS_BACKOFF_MS: must be between 1 and 3600000",
        ),
    ] {
        let mut a = atlas.command(&["scrap", "run", "1"]);
        a.env(env, "100000000");
        let out = a.output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env}: {err}");
        assert!(err.contains(message), "{env}: {err}");
    }
    let run = atlas.expect(&sync_args(&["--lookback-days", "4000000000"]), 2);
    assert!(
        run.stderr
            .contains("--lookback-days: must be between 0 and 3650"),
        "{}",
        run.stderr
    );
    let run = atlas.expect(&["scrap", "run", "1", "--threads", "100000"], 2);
    assert!(
        run.stderr.contains("threads: must be between 1 and 512"),
        "{}",
        run.stderr
    );
    // Nothing was changed by any of them.
    assert_eq!(db.i64("SELECT count(*) FROM atlas.scraps"), 0);
    assert_eq!(db.i64("SELECT count(*) FROM atlas.runs"), 0);
}

/// `over` merged into `base` key by key.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}
