//! One rate per API account, shared by every process working the client
//! (`atlas.rate_members`): three processes on one scrap against a server
//! that admits 3 requests per second, with `rate_limit_per_sec: 3`, stay
//! under it together; when one is killed, the others take its part.

use crate::util::{self, Api, Atlas, Bg, TestDb};
use serde_json::json;
use std::time::{Duration, Instant};

/// 15 days x 2 pages: 30 pages, 10 s at 3 requests per second.
const FROM: &str = "2025-04-01";
const TO: &str = "2025-04-15";
const PAGES: f64 = 30.0;

fn setup(tag: &str, log: &std::path::Path) -> (Api, TestDb, Atlas, String) {
    let api = Api::start(&[
        "--per-day",
        "20",
        "--rate-limit",
        "3",
        "--request-log",
        log.to_str().expect("utf-8 path"),
    ]);
    let db = TestDb::new(tag);
    let mut route = util::page_route();
    route["pagination"]["size"] = json!(10);
    let mut cfg = Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route }));
    cfg["clients"]["2151"]["rate_limit_per_sec"] = json!(3);
    let mut atlas = Atlas::new(&db, &cfg);
    atlas.env.push(("ATLAS_THREADS".into(), "4".into()));
    let id = atlas.create("pedidos", FROM, TO);
    (api, db, atlas, id)
}

fn refused_share(log: &std::path::Path) -> (usize, usize) {
    let seen = util::request_log(log);
    let refused = seen.iter().filter(|s| s.status == 429).count();
    (refused, seen.len())
}

#[test]
fn three_processes_share_one_rate_and_stay_under_it_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let (api, db, atlas, id) = setup("rates_three", &log);
    let started = Instant::now();
    let mut runs: Vec<Bg> = (0..3)
        .map(|i| Bg::spawn(&atlas, &["scrap", "run", &id, "--json"], &format!("p{i}")))
        .collect();
    for (i, bg) in runs.iter_mut().enumerate() {
        let r = bg.finish(Duration::from_secs(120));
        assert_eq!(r.code, 0, "process {i}: {}\n{}", r.stdout, r.stderr);
        assert_eq!(r.json()["status"], "done", "process {i}");
    }
    let wall = started.elapsed().as_secs_f64();
    util::assert_exact(&db, api.expected(FROM, TO), "three processes");
    let (refused, requests) = refused_share(&log);
    assert!(
        refused * 10 <= requests,
        "{refused} of {requests} requests answered 429 (more than 10%)"
    );
    assert!(
        wall <= 1.3 * PAGES / 3.0,
        "{wall:.1} s for {PAGES} pages at 3/s (more than 1.3 x the floor)"
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.rate_members"),
        0,
        "every process gave its part back"
    );
}

#[test]
fn a_killed_process_gives_its_part_back_within_its_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let (api, db, atlas, id) = setup("rates_kill", &log);
    let mut runs: Vec<Bg> = (0..3)
        .map(|i| Bg::spawn(&atlas, &["scrap", "run", &id], &format!("p{i}")))
        .collect();
    util::wait_for("a third of the pages", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) >= 10
    });
    runs[0].kill9();
    let killed = util::request_log(&log)
        .last()
        .map(|s| s.ms)
        .expect("requests");
    for bg in &mut runs[1..] {
        let r = bg.finish(Duration::from_secs(120));
        assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    }
    util::assert_exact(&db, api.expected(FROM, TO), "after the kill");
    let seen = util::request_log(&log);
    let (refused, requests) = refused_share(&log);
    assert!(
        refused * 10 <= requests,
        "{refused} of {requests} requests answered 429"
    );
    // Once its membership lease (2 s) has run out, the two others send at
    // the whole rate: 3 in every second, where two parts of three would be
    // 2. The limiters send in bursts at the turn of each second, so the
    // requests are counted per second after the kill, from the third (the
    // lease and a poll have passed) to the last but one (the last is where
    // the work runs out), and the typical second (the median) must hold 3.
    let secs: Vec<u64> = seen
        .iter()
        .filter(|s| s.ms >= killed && s.status != 429)
        .map(|s| (s.ms - killed) / 1000)
        .collect();
    let last = secs.iter().copied().max().unwrap_or(0);
    let mut per_second: Vec<usize> = (3..last)
        .map(|k| secs.iter().filter(|s| **s == k).count())
        .collect();
    assert!(
        per_second.len() >= 3,
        "too few seconds after the kill to measure: {secs:?}"
    );
    per_second.sort_unstable();
    let median = per_second[per_second.len() / 2];
    assert!(
        median >= 3,
        "{median} requests in a typical second after the kill (per second: {per_second:?}): the dead process's part was not given back"
    );
}
