//! Parallel pages inside a slice (`parallel_pages`): the exact set of
//! records, the guards that still fail a lying slice, the switch that turns
//! it off, a kill -9 in the middle, and the COPY path's exact counts on a
//! rerun.

use crate::util::{
    kill9_when, paged_route, request_log, sized_route, spec_hash, Api, Atlas, Case, TestDb,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const TABLE: &str = "dados_raw_cliente_2151_pedidos";

fn offsets_of(limit: u64) -> Value {
    json!({ "type": "offset", "offset_param": "offset", "limit_param": "limit",
            "limit": limit, "total": "/total" })
}

impl Case {
    /// The hashes of every record the API holds for `day`, read in one page
    /// and hashed independently of the binary: the ground truth.
    fn truth(&self, day: &str) -> BTreeSet<String> {
        let body = self.api.get(&format!(
            "/page/pedidos?data_inicial={day}&data_final={day}&page=1&por_pagina=10000"
        ));
        let records = body["data"].as_array().expect("data array");
        assert_eq!(
            records.len() as i64,
            self.api.expected(day, day),
            "one page holds the whole day"
        );
        records
            .iter()
            .map(|r| spec_hash(&serde_json::to_string(r).unwrap()))
            .collect()
    }

    fn stored(&self) -> BTreeSet<String> {
        self.db
            .strings(&format!("SELECT hash_conteudo FROM {TABLE}"))
            .into_iter()
            .collect()
    }

    fn rows(&self) -> i64 {
        self.db.i64(&format!("SELECT count(*) FROM {TABLE}"))
    }

    /// Runs scrap `id` with 4 fetchers and kills it with SIGKILL once it
    /// has committed more than `rows` rows.
    fn kill9_when_rows(&self, id: &str, rows: i64) {
        let args = ["scrap", "run", id, "--threads", "4"];
        let what = format!("more than {rows} committed rows");
        kill9_when(&self.atlas, &args, &what, Duration::from_secs(60), || {
            self.rows() > rows
        });
    }

    fn slice_states(&self, id: &str) -> Vec<(String, String)> {
        let sql = format!(
            "SELECT status, coalesce(last_error, '') FROM atlas.slices \
             WHERE scrap_id = {id} ORDER BY slice_from"
        );
        self.db
            .client()
            .query(&sql, &[])
            .expect(&sql)
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

/// Runs the scrap with `--json` and returns the summary.
fn run(c: &Case, id: &str, code: i32) -> Value {
    c.atlas
        .expect(&["scrap", "run", id, "--json", "--threads", "6"], code)
        .json()
}

#[test]
fn parallel_pages_load_a_one_day_slice_exactly() {
    // 1,000 records in 20 pages of 50: page 1 declares 20, pages 2..20 go to the pool.
    let c = Case::new(
        "perf_par",
        &["--per-day", "1000", "--latency-ms", "20"],
        "page",
        sized_route(50),
    );
    let id = c.create("2025-03-04", "2025-03-04");
    let s = run(&c, &id, 0);
    assert_eq!(s["pages"].as_i64(), Some(20), "{s}");
    assert_eq!(s["records_fetched"].as_i64(), Some(1000), "{s}");
    assert_eq!(s["inserted"].as_i64(), Some(1000), "{s}");
    assert_eq!(s["duplicates"].as_i64(), Some(0), "{s}");
    assert_eq!(c.rows(), 1000);
    assert_eq!(c.stored(), c.truth("2025-03-04"), "the API's exact records");
    assert_eq!(c.slice_states(&id), [("done".to_string(), String::new())]);
    assert_eq!(
        c.db.i64("SELECT sum(pages)::bigint FROM atlas.slices"),
        20,
        "the slice counts every page"
    );

    // The same period again: every record a duplicate, counted exactly.
    let again = c.create("2025-03-04", "2025-03-04");
    let s = run(&c, &again, 0);
    assert_eq!(s["inserted"].as_i64(), Some(0), "{s}");
    assert_eq!(s["duplicates"].as_i64(), Some(1000), "{s}");
    assert_eq!(c.rows(), 1000);
}

#[test]
fn parallel_offsets_load_several_days_exactly() {
    // 3 days of 230 records, limit 40: 6 pages a day, the last one short.
    let c = Case::new(
        "perf_off",
        &["--per-day", "230", "--latency-ms", "10"],
        "offset",
        paged_route(offsets_of(40)),
    );
    let id = c.create("2025-03-04", "2025-03-06");
    let s = run(&c, &id, 0);
    assert_eq!(s["pages"].as_i64(), Some(18), "{s}");
    assert_eq!(s["inserted"].as_i64(), Some(690), "{s}");
    let truth: BTreeSet<String> = ["2025-03-04", "2025-03-05", "2025-03-06"]
        .iter()
        .flat_map(|d| c.truth(d))
        .collect();
    assert_eq!(c.stored(), truth);
}

#[test]
fn a_lying_total_fails_the_slice_with_parallel_pages() {
    // 10 real pages of 50, page 1 declares 11: page 11 comes back empty.
    let c = Case::new(
        "perf_lie",
        &[
            "--per-day",
            "500",
            "--latency-ms",
            "10",
            "--misbehave",
            "lying_total",
        ],
        "page",
        sized_route(50),
    );
    let id = c.create("2025-03-04", "2025-03-04");
    let s = run(&c, &id, 1);
    assert_eq!(s["slices_failed"].as_i64(), Some(1), "{s}");
    assert_eq!(s["slices_done"].as_i64(), Some(0), "{s}");
    let states = c.slice_states(&id);
    assert_eq!(states[0].0, "failed", "{states:?}");
    assert!(
        states[0].1.contains("guard")
            && states[0]
                .1
                .contains("declared 11 pages but page 11 is empty"),
        "names the guard and the page: {states:?}"
    );
    // The real pages' rows were all committed before the slice failed.
    assert_eq!(c.stored(), c.truth("2025-03-04"));
}

#[test]
fn a_short_page_before_the_lie_ends_the_slice_with_stop_on_short_page() {
    // 120 records in pages of 50 (50, 50, 20), 4 declared: page 4 is empty,
    // but page 3 was short, so the data ended there, as in the in-order walk.
    let mut r = sized_route(50);
    r["pagination"]["stop_on_short_page"] = json!(true);
    let c = Case::new(
        "perf_short",
        &["--per-day", "120", "--misbehave", "lying_total"],
        "page",
        r,
    );
    let id = c.create("2025-03-04", "2025-03-04");
    let s = run(&c, &id, 0);
    assert_eq!(s["slices_done"].as_i64(), Some(1), "{s}");
    assert_eq!(c.stored(), c.truth("2025-03-04"));
}

#[test]
fn parallel_pages_false_fetches_in_order_and_is_exact() {
    let mut r = sized_route(50);
    r["parallel_pages"] = json!(false);
    let c = Case::new(
        "perf_seq",
        &["--per-day", "600", "--latency-ms", "5"],
        "page",
        r,
    );
    let id = c.create("2025-03-04", "2025-03-04");
    let s = run(&c, &id, 0);
    assert_eq!(s["pages"].as_i64(), Some(12), "{s}");
    assert_eq!(s["inserted"].as_i64(), Some(600), "{s}");
    assert_eq!(c.stored(), c.truth("2025-03-04"));
}

#[test]
fn parallel_pages_must_be_a_boolean() {
    let mut r = sized_route(50);
    r["parallel_pages"] = json!("yes");
    let c = Case::new("perf_bad", &[], "page", r);
    let out = c.atlas.expect(&["init"], 2);
    assert!(
        out.stderr.contains("parallel_pages"),
        "the error names the key: {}",
        out.stderr
    );
}

#[test]
fn kill_during_parallel_pages_then_rerun_is_exact() {
    // 40 pages of 50 at 100 ms each with 4 fetchers: killed while pages are in flight.
    let c = Case::new(
        "perf_kill",
        &["--per-day", "2000", "--latency-ms", "100"],
        "page",
        sized_route(50),
    );
    let id = c.create("2025-03-04", "2025-03-04");
    c.kill9_when_rows(&id, 0);
    assert!(c.rows() < 2000, "killed before the end: {}", c.rows());
    let s = run(&c, &id, 0);
    assert_eq!(s["slices_done"].as_i64(), Some(1), "{s}");
    assert_eq!(c.rows(), 2000);
    assert_eq!(c.stored(), c.truth("2025-03-04"), "exact after the rerun");
}

#[test]
fn copy_meets_stored_rows_falls_back_and_counts_exactly() {
    // Day 4 is loaded first; then one 2-day slice (days 4 and 5) whose
    // batches mix stored rows and new ones: COPY meets a unique violation,
    // the batch goes in by INSERT … ON CONFLICT, and the counts are exact.
    let mut r = sized_route(50);
    r["slice_days"] = json!(2);
    let c = Case::new("perf_copy", &["--per-day", "300"], "page", r);
    let first = c.create("2025-03-04", "2025-03-04");
    let s = run(&c, &first, 0);
    assert_eq!(s["inserted"].as_i64(), Some(300), "{s}");
    let both = c.create("2025-03-04", "2025-03-05");
    let s = c
        .atlas
        .expect(
            &["scrap", "run", &both, "--json", "--batch-export", "1000"],
            0,
        )
        .json();
    assert_eq!(s["records_fetched"].as_i64(), Some(600), "{s}");
    assert_eq!(s["inserted"].as_i64(), Some(300), "{s}");
    assert_eq!(s["duplicates"].as_i64(), Some(300), "{s}");
    let truth: BTreeSet<String> = c
        .truth("2025-03-04")
        .into_iter()
        .chain(c.truth("2025-03-05"))
        .collect();
    assert_eq!(c.stored(), truth);
    assert_eq!(
        c.db.i64(&format!(
            "SELECT inserted * 1000 + duplicates FROM atlas.slices WHERE scrap_id = {both}"
        )),
        300 * 1000 + 300,
        "the slice's own counts"
    );
    // A third run of both days: all duplicates, nothing inserted.
    let again = c.create("2025-03-04", "2025-03-05");
    let s = run(&c, &again, 0);
    assert_eq!(
        (s["inserted"].as_i64(), s["duplicates"].as_i64()),
        (Some(0), Some(600)),
        "{s}"
    );
}

#[test]
fn a_memory_budget_smaller_than_a_page_still_loads_exactly() {
    // Pages of 1,000 records (a 0.55 MiB body, over 1 MiB once parsed into
    // rows) under a 1 MiB budget: each page passes alone, and the load is
    // exact. (A body itself past the budget is refused: limits.rs.)
    let mut c = Case::new(
        "perf_mem",
        &["--per-day", "4000", "--page-size", "1000"],
        "page",
        sized_route(1000),
    );
    c.atlas.env.push(("ATLAS_MEMORY_MB".into(), "1".into()));
    let id = c.create("2025-03-04", "2025-03-05");
    let s = run(&c, &id, 0);
    assert_eq!(s["inserted"].as_i64(), Some(8000), "{s}");
    let truth: BTreeSet<String> = c
        .truth("2025-03-04")
        .into_iter()
        .chain(c.truth("2025-03-05"))
        .collect();
    assert_eq!(c.stored(), truth);
}

#[test]
fn a_memory_budget_of_zero_is_a_usage_error() {
    let mut c = Case::new("perf_mem0", &[], "page", sized_route(50));
    let id = c.create("2025-03-04", "2025-03-04");
    c.atlas.env.push(("ATLAS_MEMORY_MB".into(), "0".into()));
    let out = c.atlas.expect(&["scrap", "run", &id], 2);
    assert!(out.stderr.contains("memory_mb"), "{}", out.stderr);
    assert_eq!(c.rows(), 0, "nothing ran");

    // The same in the config file.
    let mut r = sized_route(50);
    r["parallel_pages"] = json!(true);
    let api = Api::start(&[]);
    let db = TestDb::new("perf_mem0f");
    let mut cfg = Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": r }));
    cfg["memory_mb"] = json!(0);
    let out = Atlas::new(&db, &cfg).expect(&["init"], 2);
    assert!(out.stderr.contains("memory_mb"), "{}", out.stderr);
}

// Speculative pages (`speculative_pages`): where the pair's slices before
// had several pages, page 1 is asked for together with its likely followers.

/// The ground truth of `day` as `api` holds it (see `Case::truth`).
fn truth_of(api: &Api, day: &str) -> BTreeSet<String> {
    let body = api.get(&format!(
        "/page/pedidos?data_inicial={day}&data_final={day}&page=1&por_pagina=10000"
    ));
    body["data"]
        .as_array()
        .expect("data array")
        .iter()
        .map(|r| spec_hash(&serde_json::to_string(r).unwrap()))
        .collect()
}

/// A second API over the same database: the same client and route, so the
/// pair's history (the pages its slices had) carries over to it.
fn next_night(c: &Case, api_args: &[&str], route: Value) -> (Api, Atlas) {
    let api = Api::start(api_args);
    let cfg = Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route }));
    let atlas = Atlas::new(&c.db, &cfg);
    (api, atlas)
}

/// The request log's `(ms, page)` of the data requests for `day`.
fn pages_asked(log: &std::path::Path, day: &str) -> Vec<(u64, u64)> {
    let mut seen: Vec<(u64, u64)> = request_log(log)
        .iter()
        // The tests' own ground-truth reads ask for one page of 10,000.
        .filter(|s| s.url.contains(&format!("data_inicial={day}")) && !s.url.contains("=10000"))
        .map(|s| {
            let page = s
                .url
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("page="))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no page in {}", s.url));
            (s.ms, page)
        })
        .collect();
    seen.sort_by_key(|&(ms, page)| (page, ms));
    seen
}

fn day_rows(c: &Case, day: &str) -> BTreeSet<String> {
    c.db.strings(&format!(
        "SELECT hash_conteudo FROM {TABLE} WHERE payload->>'data_pedido' LIKE '{day}%'"
    ))
    .into_iter()
    .collect()
}

/// Runs one night (`day`) and returns its request log's pages.
fn night(c: &Case, speculative: Option<bool>, day: &str) -> (Value, Vec<(u64, u64)>) {
    let log = c.atlas.path("requests.log");
    let mut r = sized_route(50);
    if let Some(s) = speculative {
        r["speculative_pages"] = json!(s);
    }
    let log_arg = log.to_str().unwrap().to_string();
    let (api, atlas) = next_night(
        c,
        &[
            "--per-day",
            "600",
            "--latency-ms",
            "300",
            "--request-log",
            &log_arg,
        ],
        r,
    );
    let id = atlas.create("pedidos", day, day);
    let s = atlas
        .expect(&["scrap", "run", &id, "--json", "--threads", "6"], 0)
        .json();
    assert_eq!(s["pages"].as_i64(), Some(12), "{s}");
    assert_eq!(s["inserted"].as_i64(), Some(600), "{s}");
    assert_eq!(
        day_rows(c, day),
        truth_of(&api, day),
        "the day's exact records"
    );
    (s, pages_asked(&log, day))
}

#[test]
fn a_second_night_asks_for_page_one_with_its_followers() {
    // Night 1: 12 pages, walked after page 1 as usual. Night 2 knows the
    // pair's slices have 12 pages: page 1 goes out with pages 2..6 (one per fetcher).
    let c = Case::new("perf_spec", &["--per-day", "600"], "page", sized_route(50));
    let first = c.create("2025-03-04", "2025-03-04");
    assert_eq!(run(&c, &first, 0)["pages"].as_i64(), Some(12));
    let (_, asked) = night(&c, None, "2025-03-05");
    let pages: Vec<u64> = asked.iter().map(|&(_, p)| p).collect();
    assert_eq!(
        pages,
        (1..=12).collect::<Vec<_>>(),
        "each page asked for once"
    );
    let page1 = asked[0].0;
    for &(ms, page) in &asked[1..6] {
        assert!(
            ms < page1 + 250,
            "page {page} asked for with page 1 (300 ms API), {} ms after it",
            ms - page1.min(ms)
        );
    }
}

#[test]
fn speculative_pages_false_waits_for_page_one() {
    let c = Case::new(
        "perf_nospec",
        &["--per-day", "600"],
        "page",
        sized_route(50),
    );
    let first = c.create("2025-03-04", "2025-03-04");
    run(&c, &first, 0);
    let (_, asked) = night(&c, Some(false), "2025-03-05");
    let page1 = asked[0].0;
    for &(ms, page) in &asked[1..] {
        assert!(
            ms >= page1 + 250,
            "page {page} waits for page 1's answer (300 ms): {} ms after it",
            ms.saturating_sub(page1)
        );
    }
}

#[test]
fn a_shrunken_night_drops_the_pages_asked_for_ahead() {
    // Night 1 had 12 pages; night 2's day has 2: pages 3..6, asked for with
    // page 1, are dropped unseen, and the slice is done with exactly its rows.
    let c = Case::new(
        "perf_shrink",
        &["--per-day", "600"],
        "page",
        sized_route(50),
    );
    let first = c.create("2025-03-04", "2025-03-04");
    run(&c, &first, 0);
    let log = c.atlas.path("requests.log");
    let log_arg = log.to_str().unwrap().to_string();
    let (api, atlas) = next_night(
        &c,
        &[
            "--per-day",
            "100",
            "--latency-ms",
            "100",
            "--request-log",
            &log_arg,
        ],
        sized_route(50),
    );
    let id = atlas.create("pedidos", "2025-03-05", "2025-03-05");
    let s = atlas
        .expect(&["scrap", "run", &id, "--json", "--threads", "6"], 0)
        .json();
    assert_eq!(
        s["pages"].as_i64(),
        Some(2),
        "pages past the total count for nothing: {s}"
    );
    assert_eq!(s["records_fetched"].as_i64(), Some(100), "{s}");
    assert_eq!(s["inserted"].as_i64(), Some(100), "{s}");
    assert_eq!(s["slices_failed"].as_i64(), Some(0), "{s}");
    assert_eq!(c.slice_states(&id), [("done".to_string(), String::new())]);
    assert_eq!(day_rows(&c, "2025-03-05"), truth_of(&api, "2025-03-05"));
    let asked: Vec<u64> = pages_asked(&log, "2025-03-05")
        .iter()
        .map(|&(_, p)| p)
        .collect();
    assert!(
        asked.contains(&6) && asked.len() <= 6,
        "pages up to 6 were asked for ahead, and none again: {asked:?}"
    );
    // The hint now says 2: the next night asks for pages 1 and 2 only.
    let id = atlas.create("pedidos", "2025-03-06", "2025-03-06");
    atlas.ok(&["scrap", "run", &id, "--threads", "6"]);
    let asked: Vec<u64> = pages_asked(&log, "2025-03-06")
        .iter()
        .map(|&(_, p)| p)
        .collect();
    assert_eq!(asked, [1, 2], "the guess follows the last slice");
}

#[test]
fn a_lying_total_fails_the_slice_when_speculating() {
    // Night 1: 10 pages. Night 2's page 1 declares 11 of which page 11 is
    // empty: pages 2..6 went out with page 1, 7..11 after it, and the slice
    // fails naming the guard, with every real page's rows committed.
    let c = Case::new(
        "perf_spec_lie",
        &["--per-day", "500"],
        "page",
        sized_route(50),
    );
    let first = c.create("2025-03-04", "2025-03-04");
    run(&c, &first, 0);
    let (api, atlas) = next_night(
        &c,
        &[
            "--per-day",
            "500",
            "--latency-ms",
            "50",
            "--misbehave",
            "lying_total",
        ],
        sized_route(50),
    );
    let id = atlas.create("pedidos", "2025-03-05", "2025-03-05");
    let s = atlas
        .expect(&["scrap", "run", &id, "--json", "--threads", "6"], 1)
        .json();
    assert_eq!(s["slices_failed"].as_i64(), Some(1), "{s}");
    let states = c.slice_states(&id);
    assert!(
        states[0].0 == "failed"
            && states[0].1.contains("guard")
            && states[0]
                .1
                .contains("declared 11 pages but page 11 is empty"),
        "names the guard and the page: {states:?}"
    );
    assert_eq!(day_rows(&c, "2025-03-05"), truth_of(&api, "2025-03-05"));
}

#[test]
fn kill_during_speculative_pages_then_rerun_is_exact() {
    let c = Case::new(
        "perf_spec_kill",
        &["--per-day", "2000", "--latency-ms", "100"],
        "page",
        sized_route(50),
    );
    let first = c.create("2025-03-04", "2025-03-04");
    run(&c, &first, 0);
    let id = c.create("2025-03-05", "2025-03-06");
    c.kill9_when_rows(&id, 2000);
    assert!(c.rows() < 6000, "killed before the end: {}", c.rows());
    let s = run(&c, &id, 0);
    assert_eq!(s["slices_failed"].as_i64(), Some(0), "{s}");
    assert_eq!(c.rows(), 6000);
    let truth: BTreeSet<String> = ["2025-03-04", "2025-03-05", "2025-03-06"]
        .iter()
        .flat_map(|d| c.truth(d))
        .collect();
    assert_eq!(c.stored(), truth, "exact after the rerun");
}

#[test]
fn speculative_pages_must_be_a_boolean() {
    let mut r = sized_route(50);
    r["speculative_pages"] = json!(1);
    let c = Case::new("perf_spec_bad", &[], "page", r);
    let out = c.atlas.expect(&["init"], 2);
    assert!(
        out.stderr.contains("speculative_pages"),
        "the error names the key: {}",
        out.stderr
    );
}
