//! ERP APIs as they really are (issue 13): each config of
//! `tests/fixtures/configs/` loaded exactly from the sample API's `/erp/`
//! shapes (POST JSON body with a fault-500 empty page, errors inside HTTP
//! 200, a form body, one parameter carrying both dates with header keys),
//! secrets from `{env:}` never shown, unknown placeholders refused, and
//! the rate-limit headers and a 503's `Retry-After` obeyed.

use crate::util::{
    assert_exact, database_text, inside_retry_after, request_log, Api, Atlas, Run, TestDb,
};
use serde_json::{json, Value};
use std::path::Path;

/// A fixture config, pointed at `api` (the fixture names port 8080).
fn fixture(name: &str, api: &Api) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/configs")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text.replace("http://127.0.0.1:8080", &api.url)).expect("fixture JSON")
}

fn show(r: &Run) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    )
}

/// Loads `from..to` with the fixture's config and checks the table is
/// exactly what the API holds.
fn load_exactly(atlas: &Atlas, api: &Api, db: &TestDb, from: &str, to: &str) -> Value {
    let id = atlas.create("pedidos", from, to);
    let r = atlas.run(&["scrap", "run", &id, "--json"]);
    let log = std::fs::read_to_string(atlas.path("erros_scraps.log")).unwrap_or_default();
    assert_eq!(r.code, 0, "{}\nerror log:\n{log}", show(&r));
    let j = r.json();
    assert_eq!(j["slices_failed"], 0, "{j}");
    assert_exact(db, api.expected(from, to), "every record once");
    j
}

const OMIE_KEY: &str = "chave-omie-1234";
const OMIE_SECRET: &str = "S3GREDO-omie-9f2c";

fn omie_api(log: &Path) -> Api {
    Api::start(&[
        "--per-day",
        "45",
        "--erp-key",
        OMIE_KEY,
        "--erp-secret",
        OMIE_SECRET,
        "--request-log",
        log.to_str().expect("utf-8"),
    ])
}

/// POST with a JSON body carrying keys, page (a JSON pointer param) and
/// dates; the page after the last is an HTTP 500 fault, read as empty.
#[test]
fn omie_post_body_with_a_fault_500_as_the_empty_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let api = omie_api(&log);
    let db = TestDb::new("erp_omie");
    let mut atlas = Atlas::new(&db, &fixture("omie.json", &api));
    atlas.env.push(("OMIE_APP_KEY".into(), OMIE_KEY.into()));
    atlas
        .env
        .push(("OMIE_APP_SECRET".into(), OMIE_SECRET.into()));
    let j = load_exactly(&atlas, &api, &db, "2025-03-01", "2025-03-03");
    // 45 a day in pages of 20: 3 pages, then the fault page, per day.
    assert_eq!(j["pages"], 12, "{j}");
    let seen = request_log(&log);
    assert_eq!(seen.len(), 12, "one request per page");
    assert_eq!(seen.iter().filter(|s| s.status == 500).count(), 3);
    assert!(
        seen.iter().any(|s| s.url.contains("\"pagina\":3")
            && s.url.contains("\"filtrar_por_data_de\":\"02/03/2025\"")),
        "the page and the dates travel in the body"
    );
}

/// A secret given through `{env:}` in a body, echoed back by the API in a
/// fault: never in stdout, stderr, the error log, `--json` or the database,
/// on a good run and on a refused one (exit 3 by an `auth` rule).
#[test]
fn secrets_from_env_in_a_body_are_never_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = omie_api(&dir.path().join("requests.log"));
    let db = TestDb::new("erp_secret");
    let mut atlas = Atlas::new(&db, &fixture("omie.json", &api));
    atlas.env.push(("OMIE_APP_KEY".into(), OMIE_KEY.into()));
    atlas
        .env
        .push(("OMIE_APP_SECRET".into(), OMIE_SECRET.into()));
    let id = atlas.create("pedidos", "2025-03-01", "2025-03-01");
    let good = atlas.ok(&["scrap", "run", &id, "--json"]);
    // A wrong secret the API echoes back in its fault.
    const WRONG: &str = "ERRADO-omie-77aa";
    atlas.env.retain(|(k, _)| k != "OMIE_APP_SECRET");
    atlas.env.push(("OMIE_APP_SECRET".into(), WRONG.into()));
    let id2 = atlas.create("pedidos", "2025-03-02", "2025-03-02");
    let bad = atlas.run(&["scrap", "run", &id2, "--json"]);
    assert_eq!(bad.code, 3, "an auth rule refuses: {}", show(&bad));
    let show_json = atlas.ok(&["scrap", "show", &id2]);
    let log = std::fs::read_to_string(atlas.path("erros_scraps.log")).expect("error log");
    assert!(
        log.contains("app_secret '***'"),
        "the echo is masked: {log}"
    );
    let db_text = database_text(&db);
    for secret in [OMIE_SECRET, WRONG] {
        for (place, text) in [
            ("stdout", &good.stdout),
            ("stderr", &good.stderr),
            ("stdout (refused)", &bad.stdout),
            ("stderr (refused)", &bad.stderr),
            ("scrap show", &show_json.stdout),
            ("error log", &log),
            ("database", &db_text),
        ] {
            assert!(!text.contains(secret), "{secret} in the {place}:\n{text}");
        }
    }
}

const TINY_TOKEN: &str = "tok-tiny-5150";

fn tiny_api(log: &Path, blocked_first: &str) -> Api {
    Api::start(&[
        "--per-day",
        "25",
        "--page-size",
        "10",
        "--erp-secret",
        TINY_TOKEN,
        "--blocked-first",
        blocked_first,
        "--request-log",
        log.to_str().expect("utf-8"),
    ])
}

/// Errors inside HTTP 200: `codigo_erro` 6 (blocked) is retried, 20 (no
/// records) ends the slice; the token sits in a client-wide query template.
#[test]
fn tiny_errors_inside_200_retry_and_end_the_slice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let api = tiny_api(&log, "1");
    let db = TestDb::new("erp_tiny");
    let mut atlas = Atlas::new(&db, &fixture("tiny.json", &api));
    atlas.env.push(("TINY_TOKEN".into(), TINY_TOKEN.into()));
    let j = load_exactly(&atlas, &api, &db, "2025-03-01", "2025-03-02");
    // 25 a day in pages of 10: 3 pages and the "no records" page, a day.
    assert_eq!(j["pages"], 8, "{j}");
    assert!(
        j["retries"].as_i64().unwrap_or(0) >= 8,
        "each blocked once: {j}"
    );
    let seen = request_log(&log);
    assert_eq!(seen.len(), 16, "each request blocked once, then answered");
    assert!(seen.iter().all(|s| !s.url.contains(TINY_TOKEN)));

    // A token the API refuses (codigo_erro 2) is an `auth` rule: exit 3.
    atlas.env.retain(|(k, _)| k != "TINY_TOKEN");
    atlas.env.push(("TINY_TOKEN".into(), "outro-token".into()));
    let id = atlas.create("pedidos", "2025-03-05", "2025-03-05");
    let r = atlas.run(&["scrap", "run", &id]);
    assert_eq!(r.code, 3, "{}", show(&r));

    // Any other error inside a 200 (here dates in a format it refuses,
    // codigo_erro 31) meets the last rule, `fail`: the slice fails with the
    // matched text, at once.
    let mut config = fixture("tiny.json", &api);
    config["routes"]["pedidos"]["date_params"]["format"] = json!("%Y-%m-%d");
    let db = TestDb::new("erp_tiny_fail");
    let mut atlas = Atlas::new(&db, &config);
    atlas.env.push(("TINY_TOKEN".into(), TINY_TOKEN.into()));
    let id = atlas.create("pedidos", "2025-03-06", "2025-03-06");
    let r = atlas.run(&["scrap", "run", &id, "--json"]);
    assert_eq!(r.code, 1, "{}", show(&r));
    // One retry for the API's block (--blocked-first 1), none for the fail.
    assert_eq!(r.json()["retries"], 1, "a fail rule is not retried");
    let log = std::fs::read_to_string(atlas.path("erros_scraps.log")).expect("error log");
    assert!(
        log.contains("response rule 4 (fail): /retorno/status = Erro"),
        "{log}"
    );
    assert!(log.contains("\"codigo_erro\":\"31\""), "{log}");
}

/// The same API through a POST form body: `{file:}` secret, `{page}` in
/// the body and a pointer param, a declared page count.
#[test]
fn tiny_form_body_with_a_file_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = tiny_api(&dir.path().join("requests.log"), "0");
    let db = TestDb::new("erp_tiny_form");
    let atlas = Atlas::new(&db, &fixture("tiny_form.json", &api));
    std::fs::write(atlas.path("tiny_token.txt"), format!("{TINY_TOKEN}\n")).expect("token file");
    let j = load_exactly(&atlas, &api, &db, "2025-03-01", "2025-03-03");
    assert_eq!(
        j["pages"], 9,
        "3 pages a day, stopped by the declared count: {j}"
    );
}

/// Both dates in one parameter (`creationDate:[… TO …]`), key and token
/// headers from `{env:}` in the client's headers.
#[test]
fn vtex_one_parameter_range_and_header_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let api = Api::start(&[
        "--per-day",
        "40",
        "--erp-key",
        "vtexappkey-loja",
        "--erp-secret",
        "VTEX-TOKEN-abcdef",
        "--request-log",
        log.to_str().expect("utf-8"),
    ]);
    let db = TestDb::new("erp_vtex");
    let mut atlas = Atlas::new(&db, &fixture("vtex.json", &api));
    atlas
        .env
        .push(("VTEX_APP_KEY".into(), "vtexappkey-loja".into()));
    atlas
        .env
        .push(("VTEX_APP_TOKEN".into(), "VTEX-TOKEN-abcdef".into()));
    let j = load_exactly(&atlas, &api, &db, "2025-03-01", "2025-03-04");
    assert_eq!(j["pages"], 8, "{j}");
    let seen = request_log(&log);
    assert!(
        seen[0]
            .url
            .contains("f_creationDate=creationDate%3A%5B2025-03-0")
            && seen[0].url.contains("T23%3A59%3A59.999Z%5D"),
        "{}",
        seen[0].url
    );
}

/// An unknown placeholder is a config error: exit 2, with its line and column.
#[test]
fn an_unknown_placeholder_is_a_config_error() {
    let api = Api::start(&[]);
    let db = TestDb::new("erp_placeholder");
    let mut config = fixture("omie.json", &api);
    config["routes"]["pedidos"]["body"]["param"][0]["pagina"] = json!("{pagina}");
    let atlas = Atlas::new(&db, &config);
    let r = atlas.expect(&["check", "--no-probe"], 2);
    let text = format!("{}{}", r.stdout, r.stderr);
    assert!(text.contains("unknown placeholder '{pagina}'"), "{text}");
    let line = std::fs::read_to_string(atlas.path("atlas.json"))
        .expect("config")
        .lines()
        .position(|l| l.contains("\"body\""))
        .expect("body line")
        + 1;
    assert!(
        text.contains(&format!("line {line}, column")),
        "line {line}: {text}"
    );
}

/// `X-RateLimit-Remaining: 0` / `RateLimit-Remaining: 0` pause the client
/// until the reset: against a quota of 10 per wall-clock second, one
/// fetcher never draws a 429 (it waits for the reset the 10th answer
/// names), and 8 fetchers load everything, sending nothing in a second
/// after its 10th request was answered but what was already in flight.
#[test]
fn rate_limit_headers_pause_the_client_until_the_reset() {
    for (style, threads) in [("x", "1"), ("ietf", "1"), ("x", "8")] {
        let what = format!("{style} headers, {threads} fetcher(s)");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("requests.log");
        let api = Api::start(&[
            "--per-day",
            "20",
            "--quota",
            "10",
            "--limit-headers",
            style,
            "--request-log",
            log.to_str().expect("utf-8"),
        ]);
        let db = TestDb::new("erp_quota");
        let atlas = Atlas::new(&db, &fixture("ratelimit_headers.json", &api));
        let id = atlas.create("pedidos", "2025-03-01", "2025-03-15");
        let r = atlas.run(&["scrap", "run", &id, "--threads", threads, "--json"]);
        assert_eq!(r.code, 0, "{what}: {}", show(&r));
        assert_exact(&db, 300, "every page under a quota");
        let seen = request_log(&log);
        let refused = seen.iter().filter(|s| s.status == 429).count();
        eprintln!("{what}: {} requests, {refused} x 429", seen.len());
        assert_eq!(seen.len() - refused, 30, "{what}: each page admitted once");
        if threads == "1" {
            assert_eq!(refused, 0, "{what}: the reset is waited for");
        }
        let mut by_second: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for s in &seen {
            by_second.entry(s.ms / 1000).or_default().push(s.ms);
        }
        for (second, mut times) in by_second {
            times.sort();
            if let Some(&last_allowed) = times.get(9) {
                let late = times.iter().filter(|&&t| t > last_allowed + 100).count();
                assert_eq!(
                    late, 0,
                    "{what}: {late} request(s) in second {second} after its quota was used up: {times:?}"
                );
            }
        }
    }
}

/// A 503 with `Retry-After: 1` (30% of the requests, seeded) pauses every
/// fetcher of the client, not only the one that met it.
#[test]
fn retry_after_on_a_503_pauses_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.log");
    let api = Api::start(&[
        "--per-day",
        "10",
        "--fault-rate",
        "0.3",
        "--fault-kinds",
        "503",
        "--unavailable-retry-after",
        "1",
        "--request-log",
        log.to_str().expect("utf-8"),
    ]);
    let db = TestDb::new("erp_503");
    let atlas = Atlas::new(&db, &fixture("ratelimit_headers.json", &api));
    let id = atlas.create("pedidos", "2025-03-01", "2025-03-12");
    let r = atlas.run(&["scrap", "run", &id, "--threads", "4", "--json"]);
    assert_eq!(r.code, 0, "{}", show(&r));
    assert_exact(&db, 120, "every page after its 503s");
    let seen = request_log(&log);
    assert!(
        seen.iter().any(|s| s.status == 503),
        "some 503s were served"
    );
    for no in seen.iter().filter(|s| s.status == 503) {
        let early = inside_retry_after(&seen, no);
        assert!(
            early.is_empty(),
            "{} request(s) inside the Retry-After of the 503 at {}: {}",
            early.len(),
            no.ms,
            early[0].url
        );
    }
}

/// Every pagination kind with `POST`: the dates in a JSON body from
/// placeholders, and the kind's params as JSON pointers into it where it
/// has them (the sample API reads a POST's body members as parameters).
#[test]
fn every_pagination_kind_works_with_post() {
    let api = Api::start(&["--per-day", "23"]);
    let dates = json!({ "data_inicial": "{start}", "data_final": "{end}" });
    let with = |extra: Value| {
        let mut b = dates.clone();
        b.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        b
    };
    let kinds = [
        (
            "page",
            "/data",
            with(json!({ "page": 1, "por_pagina": 0 })),
            json!({ "type": "page", "param": "/page", "size_param": "/por_pagina", "size": 7, "total_pages": "/total_paginas" }),
        ),
        (
            "offset",
            "/data",
            with(json!({ "offset": 0, "limit": 0 })),
            json!({ "type": "offset", "offset_param": "/offset", "limit_param": "/limit", "limit": 7, "total": "/total" }),
        ),
        (
            "cursor",
            "/data",
            with(json!({ "limit": 7, "cursor": "" })),
            json!({ "type": "cursor", "param": "/cursor", "cursor_path": "/next_cursor" }),
        ),
        (
            "next_url",
            "/data",
            with(json!({ "por_pagina": 7 })),
            json!({ "type": "next_url", "next_path": "/links/next" }),
        ),
        (
            "link_header",
            "",
            with(json!({ "per_page": 7 })),
            json!({ "type": "link_header" }),
        ),
    ];
    for (kind, records, body, pagination) in kinds {
        let db = TestDb::new("erp_post_kinds");
        let route = json!({
            "path": "/pedidos",
            "method": "POST",
            "body": body,
            "records": records,
            "pagination": pagination,
            "date_field": "/data_pedido"
        });
        let config = Atlas::config(&format!("{}/{kind}", api.url), json!({ "pedidos": route }));
        let atlas = Atlas::new(&db, &config);
        let j = load_exactly(&atlas, &api, &db, "2025-03-01", "2025-03-02");
        // 23 a day in pages of 7: 4 pages a day, each kind stopping on what
        // the API says (a total, a null cursor, no next link).
        assert_eq!(j["pages"], 8, "{kind}: {j}");
    }
}
