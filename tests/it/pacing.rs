//! Pacing against a rate-limited server (issue 11, items 3 and 4): a 429
//! pauses every fetcher of the client, a client without a configured rate
//! learns the server's, and `rate_limit_per_sec: N` never starts more than
//! N requests in any rolling second. Counted from the sample API's request
//! log (`<unix_ms> <status> <path?query>`, one line per data request).

use crate::util::{
    assert_exact, database_text, inside_retry_after, page_route, request_log, Api, Atlas, Run,
    Seen, TestDb,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The most requests the server admitted (not 429) in any rolling second.
fn most_admitted_in_a_second(seen: &[Seen]) -> usize {
    let ok: Vec<u64> = seen
        .iter()
        .filter(|s| s.status != 429)
        .map(|s| s.ms)
        .collect();
    ok.iter()
        .map(|&t| ok.iter().filter(|&&o| o <= t && t - o < 1000).count())
        .max()
        .unwrap_or(0)
}

/// Attempts of the URL asked most often.
fn most_attempts(seen: &[Seen]) -> (usize, String) {
    let mut by_url: HashMap<&str, usize> = HashMap::new();
    for s in seen {
        *by_url.entry(&s.url).or_default() += 1;
    }
    by_url
        .into_iter()
        .map(|(u, n)| (n, u.to_string()))
        .max()
        .unwrap_or_default()
}

fn show(r: &Run) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    )
}

/// Client 2151 on `/page`, 5-record pages, `rate` as its configured limit.
fn config(api: &Api, rate: Option<u32>) -> Value {
    let mut route = page_route();
    route["pagination"]["size"] = json!(5);
    let mut config = Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route }));
    if let Some(r) = rate {
        config["clients"]["2151"]["rate_limit_per_sec"] = json!(r);
    }
    config
}

/// Item 3. A server that admits 3 requests in any rolling second and
/// answers the rest 429 + `Retry-After: 1`; atlas at its defaults (no
/// configured rate) with 8 fetchers, 46 pages. The first burst draws 429s; from then on the 429 pauses every fetcher and the
/// client's rate drops to what the server let through, creeping back up by
/// 10% a second, so only the occasional probe above 3/s is refused.
#[test]
fn one_429_paces_every_fetcher_of_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let log_arg = log.to_str().expect("utf-8 path");
    let api = Api::start(&[
        "--per-day",
        "10",
        "--rate-limit",
        "3",
        "--retry-after",
        "1",
        "--request-log",
        log_arg,
    ]);
    let db = TestDb::new("pacing_429");
    let atlas = Atlas::new(&db, &config(&api, None));
    // 23 one-day slices of 2 pages: 46 pages.
    let id = atlas.create("pedidos", "2025-12-01", "2025-12-23");
    let t0 = Instant::now();
    let r = atlas.run(&["scrap", "run", &id, "--threads", "8", "--json"]);
    let elapsed = t0.elapsed();
    assert_eq!(r.code, 0, "{}", show(&r));
    let j = r.json();
    assert_eq!(j["pages"], 46, "{j}");
    assert_eq!(j["slices_failed"], 0, "{j}");
    assert_exact(&db, 230, "every page of a 3/s server");

    let seen = request_log(&log);
    let first = seen.iter().map(|s| s.ms).min().expect("requests");
    let refused: Vec<&Seen> = seen.iter().filter(|s| s.status == 429).collect();
    let burst = refused.iter().filter(|s| s.ms < first + 1000).count();
    let later = refused.len() - burst;
    let (attempts, url) = most_attempts(&seen);
    eprintln!(
        "3/s server, 8 fetchers: {} requests, {} x 429 ({burst} in the first burst, {later} after), \
         at most {attempts} attempts per page, {elapsed:?}",
        seen.len(),
        refused.len()
    );
    assert_eq!(
        seen.len() - refused.len(),
        46,
        "each page admitted exactly once"
    );
    // Fetchers start as they claim slices, and the first three admitted may
    // ask for their next page before the first 429 is back: at most one
    // refusal per fetcher before the pause.
    assert!(
        burst <= 8,
        "8 fetchers against 3/s: at most 8 refused in the first burst, got {burst}"
    );
    assert!(
        later * 10 <= seen.len(),
        "{later} x 429 after the first burst in {} requests (> 10%)",
        seen.len()
    );
    // A page refused in the first burst is retried first after the pause,
    // and may meet one of the occasional probes above 3/s refused after it
    // (the rate creeps back up by 10% a second): 3 attempts at most.
    assert!(
        attempts <= 3,
        "{url} needed {attempts} attempts (at most 3)"
    );
    // Every fetcher honours the pause: nothing reaches the server within the
    // Retry-After of a 429 (a little slack for the server's clock).
    for no in &refused {
        let early = inside_retry_after(&seen, no);
        assert!(
            early.is_empty(),
            "{} request(s) during the pause of the 429 at {}: first {} {}",
            early.len(),
            no.ms - first,
            early[0].ms - first,
            early[0].url
        );
    }
}

/// Item 4. `rate_limit_per_sec: 20` against a server that admits 20 in any
/// rolling second: 8 fetchers, 60 pages, not one 429, and the server never
/// sees more than 20 starts in a second.
#[test]
fn a_configured_rate_never_draws_a_429_from_a_server_at_that_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let log_arg = log.to_str().expect("utf-8 path");
    let api = Api::start(&[
        "--per-day",
        "10",
        "--rate-limit",
        "20",
        "--request-log",
        log_arg,
    ]);
    let db = TestDb::new("pacing_20");
    let atlas = Atlas::new(&db, &config(&api, Some(20)));
    // 30 one-day slices of 2 pages: 60 pages, 3 windows of 20.
    let id = atlas.create("pedidos", "2025-11-01", "2025-11-30");
    let t0 = Instant::now();
    let r = atlas.run(&["scrap", "run", &id, "--threads", "8", "--json"]);
    let elapsed = t0.elapsed();
    assert_eq!(r.code, 0, "{}", show(&r));
    assert_eq!(r.json()["pages"], 60, "{}", r.stdout);
    assert_exact(&db, 300, "every page at 20/s");
    let seen = request_log(&log);
    let refused = seen.iter().filter(|s| s.status == 429).count();
    let most = most_admitted_in_a_second(&seen);
    eprintln!(
        "20/s server, rate_limit_per_sec 20: {} requests, {refused} x 429, at most {most} in a second, {elapsed:?}",
        seen.len()
    );
    assert_eq!(refused, 0, "no 429 from a server at the configured rate");
    assert_eq!(seen.len(), 60, "one request per page");
    assert!(most <= 20, "{most} requests in one second");
    assert!(
        elapsed >= Duration::from_secs(2),
        "60 requests at 20/s take at least 2 s: {elapsed:?}"
    );
}

/// Item 5. Query params and a header named like secrets, and a secret read
/// from `value_env` (the query auth param, also repeated under a plain
/// name): with every request failing, the error log, stdout, stderr and
/// the database never show one of their values.
#[test]
fn secrets_are_masked_in_the_error_log_and_everywhere_else() {
    const TOKEN: &str = "TOK-999xyz";
    let api = Api::start(&[
        "--per-day",
        "10",
        "--auth",
        &format!("query:code:{TOKEN}"),
        "--fail-first",
        "100",
        "--fault-kinds",
        "500",
    ]);
    let db = TestDb::new("pacing_mask");
    let secrets = [
        ("client_password", "CPW-111"),
        ("client_secret", "CSE-222"),
        ("my_password", "MPW-333"),
        ("passwd", "PWD-444"),
        ("pwd", "PWD-555"),
        ("signature", "SIG-666"),
        ("sessionid", "SES-777"),
    ];
    let mut route = page_route();
    let mut query: serde_json::Map<String, Value> = secrets
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    // The env secret again under a name that says nothing.
    query.insert("ref".into(), json!(TOKEN));
    route["query"] = Value::Object(query);
    route["headers"] = json!({ "x-api-key": "KEY-888" });
    let mut config = Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route }));
    config["clients"]["2151"]["auth"] =
        json!({ "type": "query", "param": "code", "value_env": "PACING_TOKEN" });
    let mut atlas = Atlas::new(&db, &config);
    atlas.env.push(("PACING_TOKEN".into(), TOKEN.into()));
    let id = atlas.create("pedidos", "2025-12-01", "2025-12-01");
    let r = atlas.run(&["scrap", "run", &id, "--retry-max", "2"]);
    assert_eq!(r.code, 1, "the slice fails: {}", show(&r));
    let json = atlas.run(&["scrap", "show", &id, "--json"]);
    let log = std::fs::read_to_string(atlas.path("erros_scraps.log")).expect("error log");
    assert!(log.contains("http: 500"), "{log}");
    assert!(log.contains("client_password=***"), "{log}");
    assert!(log.contains("code=***") && log.contains("ref=***"), "{log}");
    let db_text = database_text(&db);
    let all = secrets.iter().map(|s| s.1).chain(["KEY-888", TOKEN]);
    for value in all {
        for (place, text) in [
            ("error log", &log),
            ("stdout", &r.stdout),
            ("stderr", &r.stderr),
            ("scrap show", &json.stdout),
            ("database", &db_text),
        ] {
            assert!(!text.contains(value), "{value} in the {place}:\n{text}");
        }
    }
}
