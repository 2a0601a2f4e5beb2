//! API shapes end to end (SPEC §3): every pagination kind against the sample
//! API's matching endpoint, wrapped records, every auth kind, date-param and
//! record-date formats, the loop guards, out-of-period records, fixed query and
//! headers, client overrides, and a wrong records pointer.
//!
//! Every successful load is checked against the exact set the sample API
//! serves: row count = `/_expected` = distinct hashes, the `numero` of every
//! stored record (which encodes its day and index) equals the expected list,
//! `data_referencia` is the record's own day, and `hash_conteudo` is the SPEC §4
//! hash of the stored payload.

use crate::util::{create_args, paged_route, sized_route, spec_hash, Case, Run};
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TABLE: &str = "dados_raw_cliente_2151_pedidos";
/// `numero` = days since 2000-01-01 * 100_000 + index (atlas-sample-api).
const NUMERO_DAY: i64 = 100_000;

// ------------------------------------------------------------------ helpers

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
}

fn days(from: &str, to: &str) -> Vec<NaiveDate> {
    let (mut d, to) = (day(from), day(to));
    let mut out = Vec::new();
    while d <= to {
        out.push(d);
        d = d.succ_opt().expect("next day");
    }
    out
}

/// The `numero`s the sample API serves for an inclusive day range, sorted.
fn numeros(from: &str, to: &str, per_day: i64) -> Vec<i64> {
    let epoch = day("2000-01-01");
    days(from, to)
        .into_iter()
        .flat_map(|d| {
            let base = (d - epoch).num_days() * NUMERO_DAY;
            (0..per_day).map(move |i| base + i)
        })
        .collect()
}

impl Case {
    /// A scrap of another client's `pedidos` (after `init`); its id.
    fn create_for(&self, client: &str, from: &str, to: &str) -> String {
        let r = self.atlas.ok(&create_args(client, "pedidos", from, to));
        r.stdout.trim().to_string()
    }

    fn run(&self, id: &str, extra: &[&str]) -> Run {
        let mut args = vec!["scrap", "run", id, "--json"];
        args.extend_from_slice(extra);
        self.atlas.run(&args)
    }

    /// create + run, expecting exit 0; the --json summary.
    fn load(&self, from: &str, to: &str) -> Value {
        let id = self.create(from, to);
        self.atlas
            .expect(&["scrap", "run", &id, "--json"], 0)
            .json()
    }

    fn count(&self, table: &str) -> i64 {
        self.db.i64(&format!("SELECT count(*) FROM {table}"))
    }

    fn slices(&self, id: &str) -> Vec<(String, String, String, String)> {
        let sql = format!(
            "SELECT slice_from::text, slice_to::text, status, coalesce(last_error, '') \
             FROM atlas.slices WHERE scrap_id = {id} ORDER BY slice_from"
        );
        self.db
            .client()
            .query(&sql, &[])
            .expect(&sql)
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    }

    fn stored_numeros(&self, filter: &str) -> Vec<i64> {
        let sql =
            format!("SELECT (payload->>'numero')::bigint FROM {TABLE} WHERE {filter} ORDER BY 1");
        self.db
            .client()
            .query(&sql, &[])
            .expect(&sql)
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The raw table holds exactly the API's records of `from..=to`, each
    /// dated on its own day; `date_sql` (over `payload`) is the day the
    /// record's own date field names.
    fn assert_exact(&self, from: &str, to: &str, per_day: i64, date_sql: &str) {
        let expected = self.api.expected(from, to);
        assert_eq!(
            expected,
            days(from, to).len() as i64 * per_day,
            "sample API /_expected"
        );
        let count = self.count(TABLE);
        let distinct = self.db.i64(&format!(
            "SELECT count(DISTINCT hash_conteudo) FROM {TABLE}"
        ));
        assert_eq!(
            count, expected,
            "rows stored vs records the API holds for {from}..{to}"
        );
        assert_eq!(distinct, count, "distinct hash_conteudo vs rows");
        assert_eq!(
            self.stored_numeros("true"),
            numeros(from, to, per_day),
            "the exact set of records (by numero)"
        );
        // data_referencia is the record's own day, by its date field...
        let bad = self.db.strings(&format!(
            "SELECT data_referencia::text || ' <- ' || (payload->>'data_pedido') FROM {TABLE} \
             WHERE data_referencia IS DISTINCT FROM ({date_sql}) LIMIT 5"
        ));
        assert!(
            bad.is_empty(),
            "data_referencia differs from the record's date ({date_sql}): {bad:?}"
        );
        // ...and by the day the sample API generated it for (encoded in numero).
        let bad = self.db.strings(&format!(
            "SELECT data_referencia::text || ' <- numero ' || (payload->>'numero') FROM {TABLE} \
             WHERE data_referencia <> DATE '2000-01-01' + ((payload->>'numero')::bigint / {NUMERO_DAY})::int LIMIT 5"
        ));
        assert!(
            bad.is_empty(),
            "data_referencia is not the record's generation day: {bad:?}"
        );
        // hash_conteudo = SPEC §4 hash of the stored payload.
        for r in self
            .db
            .client()
            .query(
                &format!("SELECT payload::text, hash_conteudo FROM {TABLE}"),
                &[],
            )
            .expect("rows")
        {
            let (payload, hash): (String, String) = (r.get(0), r.get(1));
            assert_eq!(spec_hash(&payload), hash, "hash of {payload}");
        }
    }
}

/// The --json summary of a clean load: everything fetched was inserted once.
fn assert_clean(s: &Value, expected: i64, pages: i64, slices: i64) {
    let n = |k: &str| {
        s[k].as_i64()
            .unwrap_or_else(|| panic!("summary lacks {k}: {s}"))
    };
    assert_eq!(n("records_fetched"), expected, "records_fetched in {s}");
    assert_eq!(n("inserted"), expected, "inserted in {s}");
    assert_eq!(n("duplicates"), 0, "duplicates in {s}");
    assert_eq!(n("out_of_period"), 0, "out_of_period in {s}");
    assert_eq!(n("undated"), 0, "undated in {s}");
    assert_eq!(n("pages"), pages, "pages in {s}");
    assert_eq!(n("slices_done"), slices, "slices_done in {s}");
    assert_eq!(n("slices_failed"), 0, "slices_failed in {s}");
    assert_eq!(n("retries"), 0, "retries in {s}");
}

const ISO: &str = "(payload->>'data_pedido')::date";

/// A plain HTTP server that records each request head and answers `body`:
/// shows what atlas actually sends (the sample API cannot tell some of it).
struct Capture {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Capture {
    fn start(body: &'static str) -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind capture");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes());
            }
        });
        Capture { url, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// The decoded query of a captured request head.
fn query_of(head: &str) -> Vec<(String, String)> {
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let u = url::Url::parse(&format!("http://capture{target}")).expect("request target");
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn get<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// A second client `77` of the same routes at `base` (the capture server).
fn add_capture_client(cfg: &mut Value, base: &str) {
    cfg["clients"]["77"] = json!({ "name": "Captura", "base_url": base });
}

// ------------------------------------------------------------------ 1. pagination kinds

#[test]
fn page_with_total_pages() {
    let c = Case::new(
        "sh_page_total",
        &["--per-day", "10"],
        "page",
        sized_route(4),
    );
    let s = c.load("2025-03-01", "2025-03-03");
    // ceil(10/4) = 3 pages a day, stopping on the declared total (no empty page).
    assert_clean(&s, 30, 9, 3);
    c.assert_exact("2025-03-01", "2025-03-03", 10, ISO);
}

#[test]
fn page_without_total_stops_on_the_empty_page() {
    let p = json!({ "type": "page", "param": "page", "size_param": "por_pagina", "size": 4 });
    let c = Case::new("sh_page_empty", &["--per-day", "8"], "page", paged_route(p));
    let s = c.load("2025-03-01", "2025-03-03");
    // 2 full pages then the empty one, each day.
    assert_clean(&s, 24, 9, 3);
    c.assert_exact("2025-03-01", "2025-03-03", 8, ISO);
}

#[test]
fn page_stop_on_short_page() {
    let p = json!({ "type": "page", "param": "page", "size_param": "por_pagina", "size": 4,
                    "stop_on_short_page": true });
    let c = Case::new(
        "sh_page_short",
        &["--per-day", "10"],
        "page",
        paged_route(p),
    );
    let s = c.load("2025-03-01", "2025-03-03");
    // 4 + 4 + 2: the short page ends the slice, no empty page is asked for.
    assert_clean(&s, 30, 9, 3);
    c.assert_exact("2025-03-01", "2025-03-03", 10, ISO);
}

#[test]
fn offset_with_total() {
    let p = json!({ "type": "offset", "offset_param": "offset", "limit_param": "limit", "limit": 4,
                    "total": "/total" });
    let c = Case::new(
        "sh_offset_total",
        &["--per-day", "10"],
        "offset",
        paged_route(p),
    );
    let s = c.load("2025-03-01", "2025-03-02");
    // offsets 0, 4, 8 then the total is reached.
    assert_clean(&s, 20, 6, 2);
    c.assert_exact("2025-03-01", "2025-03-02", 10, ISO);
}

#[test]
fn offset_without_total_stops_on_the_empty_page() {
    let p = json!({ "type": "offset", "limit": 4 });
    let c = Case::new(
        "sh_offset_empty",
        &["--per-day", "10"],
        "offset",
        paged_route(p),
    );
    let s = c.load("2025-03-01", "2025-03-02");
    // offsets 0, 4, 8, 10 (empty).
    assert_clean(&s, 20, 8, 2);
    c.assert_exact("2025-03-01", "2025-03-02", 10, ISO);
}

#[test]
fn cursor_pagination() {
    let p = json!({ "type": "cursor", "param": "cursor", "cursor_path": "/next_cursor" });
    let c = Case::new(
        "sh_cursor",
        &["--per-day", "9", "--page-size", "4"],
        "cursor",
        paged_route(p),
    );
    let s = c.load("2025-03-01", "2025-03-02");
    // 4 + 4 + 1, the last page's next_cursor is null.
    assert_clean(&s, 18, 6, 2);
    c.assert_exact("2025-03-01", "2025-03-02", 9, ISO);
}

#[test]
fn next_url_relative() {
    let p = json!({ "type": "next_url", "next_path": "/links/next" });
    let c = Case::new(
        "sh_next_rel",
        &["--per-day", "7", "--page-size", "3"],
        "next_url",
        paged_route(p),
    );
    let s = c.load("2025-03-01", "2025-03-03");
    assert_clean(&s, 21, 9, 3);
    c.assert_exact("2025-03-01", "2025-03-03", 7, ISO);
}

#[test]
fn next_url_absolute() {
    let p = json!({ "type": "next_url", "next_path": "/links/next" });
    let c = Case::new(
        "sh_next_abs",
        &["--per-day", "7", "--page-size", "3", "--absolute-next"],
        "next_url",
        paged_route(p),
    );
    let s = c.load("2025-03-01", "2025-03-03");
    assert_clean(&s, 21, 9, 3);
    c.assert_exact("2025-03-01", "2025-03-03", 7, ISO);
}

#[test]
fn link_header_with_bare_array_body() {
    let mut r = paged_route(json!({ "type": "link_header" }));
    r["records"] = json!("");
    let c = Case::new(
        "sh_link",
        &["--per-day", "12", "--page-size", "5"],
        "link_header",
        r,
    );
    let s = c.load("2025-03-01", "2025-03-02");
    // 5 + 5 + 2; the last page has no rel="next" (only last/first).
    assert_clean(&s, 24, 6, 2);
    c.assert_exact("2025-03-01", "2025-03-02", 12, ISO);
}

#[test]
fn none_pagination_with_date_detection() {
    let mut r = paged_route(json!({ "type": "none" }));
    // No date_field: the date is detected (data_pedido is a common name).
    r.as_object_mut().unwrap().remove("date_field");
    let c = Case::new("sh_none", &["--per-day", "25"], "none", r);
    let s = c.load("2025-03-01", "2025-03-03");
    assert_clean(&s, 75, 3, 3);
    c.assert_exact("2025-03-01", "2025-03-03", 25, ISO);
}

// ------------------------------------------------------------------ 2. wrapped records

#[test]
fn wrapped_records_are_unwrapped() {
    let mut r = paged_route(
        json!({ "type": "page", "param": "pagina", "size_param": "por_pagina", "size": 4,
                              "total_pages": "/retorno/total_paginas" }),
    );
    r["records"] = json!("/retorno/pedidos");
    r["records_unwrap"] = json!("/pedido");
    let c = Case::new("sh_wrapped", &["--per-day", "10"], "wrapped", r);
    let s = c.load("2025-03-01", "2025-03-03");
    assert_clean(&s, 30, 9, 3);
    c.assert_exact("2025-03-01", "2025-03-03", 10, ISO);
    assert_eq!(
        c.db.i64(&format!(
            "SELECT count(*) FROM {TABLE} WHERE NOT (payload ? 'numero')"
        )),
        0,
        "every payload is the inner record"
    );
    assert_eq!(
        c.db.i64(&format!(
            "SELECT count(*) FROM {TABLE} WHERE payload ? 'pedido'"
        )),
        0,
        "no payload keeps the wrapper"
    );
}

// ------------------------------------------------------------------ 3. auth kinds

/// A clean load through `api_auth` with `auth` in the config and `env` set.
fn auth_load(tag: &str, api_auth: &str, auth: Value, env: &[(&str, &str)]) -> Case {
    let mut c = Case::with(
        tag,
        &["--per-day", "7", "--page-size", "4", "--auth", api_auth],
        "page",
        sized_route(4),
        |cfg| cfg["clients"]["2151"]["auth"] = auth,
    );
    for (k, v) in env {
        c.atlas.env.push((k.to_string(), v.to_string()));
    }
    let s = c.load("2025-03-01", "2025-03-02");
    assert_clean(&s, 14, 4, 2);
    c.assert_exact("2025-03-01", "2025-03-02", 7, ISO);
    c
}

#[test]
fn auth_bearer_from_env() {
    auth_load(
        "sh_auth_bearer",
        "bearer:tok-bearer-123",
        json!({ "type": "bearer", "token_env": "SHAPES_BEARER_TOKEN" }),
        &[("SHAPES_BEARER_TOKEN", "tok-bearer-123")],
    );
}

#[test]
fn auth_header_from_env() {
    auth_load(
        "sh_auth_header",
        "header:X-Api-Key:chave-456",
        json!({ "type": "header", "name": "X-Api-Key", "value_env": "SHAPES_API_KEY" }),
        &[("SHAPES_API_KEY", "chave-456")],
    );
}

#[test]
fn auth_query_from_env() {
    let c = auth_load(
        "sh_auth_query",
        "query:apikey:segredo-789",
        json!({ "type": "query", "param": "apikey", "value_env": "SHAPES_QUERY_KEY" }),
        &[("SHAPES_QUERY_KEY", "segredo-789")],
    );
    let leaked = c.db.i64(&format!(
        "SELECT count(*) FROM {TABLE} WHERE payload::text LIKE '%segredo-789%'"
    ));
    assert_eq!(leaked, 0, "the query secret reached the raw table");
}

#[test]
fn auth_basic_from_env() {
    // The password carries a ':' on purpose.
    auth_load(
        "sh_auth_basic",
        "basic:usuario:se:nha",
        json!({ "type": "basic", "user": "usuario", "password_env": "SHAPES_BASIC_PASSWORD" }),
        &[("SHAPES_BASIC_PASSWORD", "se:nha")],
    );
}

#[test]
fn auth_bearer_from_token_file() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let file = secrets.path().join("token.txt");
    std::fs::write(&file, "tok-arquivo-321\n").expect("write token file");
    auth_load(
        "sh_auth_file",
        "bearer:tok-arquivo-321",
        json!({ "type": "bearer", "token_file": file.to_str().expect("utf-8 path") }),
        &[],
    );
}

#[test]
fn auth_wrong_secret_exits_3_and_stores_nothing() {
    let mut c = Case::with(
        "sh_auth_wrong",
        &[
            "--per-day",
            "7",
            "--page-size",
            "4",
            "--auth",
            "query:apikey:certo-111",
        ],
        "page",
        sized_route(4),
        |cfg| {
            cfg["clients"]["2151"]["auth"] =
                json!({ "type": "query", "param": "apikey", "value_env": "SHAPES_QUERY_KEY" })
        },
    );
    c.atlas
        .env
        .push(("SHAPES_QUERY_KEY".into(), "errado-999".into()));
    let id = c.create("2025-03-01", "2025-03-02");
    let r = c.run(&id, &[]);
    assert_eq!(
        r.code, 3,
        "401 is an environment failure\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains("401"),
        "the refusal names the status: {}",
        r.stderr
    );
    assert_eq!(c.count(TABLE), 0, "nothing stored");
    assert!(
        !r.stderr.contains("errado-999") && !r.stdout.contains("errado-999"),
        "secret echoed: {}",
        r.stderr
    );
    let log = std::fs::read_to_string(c.atlas.path("erros_scraps.log")).unwrap_or_default();
    assert!(
        !log.contains("errado-999"),
        "secret in the error log:\n{log}"
    );
}

#[test]
fn auth_missing_env_var_exits_2_naming_it() {
    let c = Case::with(
        "sh_auth_noenv",
        &["--per-day", "7", "--auth", "bearer:x"],
        "page",
        sized_route(4),
        |cfg| {
            cfg["clients"]["2151"]["auth"] =
                json!({ "type": "bearer", "token_env": "SHAPES_TOKEN_NOT_SET_ANYWHERE" })
        },
    );
    let id = c.create("2025-03-01", "2025-03-02");
    let r = c.run(&id, &[]);
    assert_eq!(
        r.code, 2,
        "a missing secret is bad config\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains("SHAPES_TOKEN_NOT_SET_ANYWHERE"),
        "the message names the variable: {}",
        r.stderr
    );
    assert_eq!(c.api.requests(), 0, "no request was made");
    assert_eq!(
        c.db.i64("SELECT count(*) FROM atlas.runs"),
        0,
        "nothing was changed (no run recorded)"
    );
    assert_eq!(c.count(TABLE), 0);
}

// ------------------------------------------------------------------ 4. date formats

#[test]
fn date_params_br_format() {
    let mut r = sized_route(5);
    r["date_params"]["format"] = json!("%d/%m/%Y");
    let c = Case::new(
        "sh_param_br",
        &["--per-day", "8", "--param-format", "%d/%m/%Y"],
        "page",
        r,
    );
    let s = c.load("2025-03-30", "2025-04-01");
    assert_clean(&s, 24, 6, 3);
    c.assert_exact("2025-03-30", "2025-04-01", 8, ISO);
}

#[test]
fn date_params_datetime_end_of_day() {
    let fmt = "%Y-%m-%dT%H:%M:%S";
    let mut r = sized_route(5);
    r["date_params"]["format"] = json!(fmt);
    r["date_params"]["end_style"] = json!("end_of_day");
    let cap = Capture::start(r#"{"data":[]}"#);
    let c = Case::with(
        "sh_param_eod",
        &[
            "--per-day",
            "8",
            "--param-format",
            fmt,
            "--end-style",
            "end_of_day",
        ],
        "page",
        r,
        |cfg| add_capture_client(cfg, &format!("{}/x", cap.url)),
    );
    let s = c.load("2025-03-01", "2025-03-03");
    assert_clean(&s, 24, 6, 3);
    c.assert_exact("2025-03-01", "2025-03-03", 8, ISO);
    // The sample API reads only the date part of the end: check the bounds sent.
    let id = c
        .atlas
        .ok(&create_args("77", "pedidos", "2025-03-01", "2025-03-02"));
    c.atlas.ok(&["scrap", "run", id.stdout.trim(), "--json"]);
    let mut sent: Vec<(String, String)> = cap
        .heads()
        .iter()
        .map(|h| {
            let q = query_of(h);
            (
                get(&q, "data_inicial").unwrap_or("-").to_string(),
                get(&q, "data_final").unwrap_or("-").to_string(),
            )
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            (
                "2025-03-01T00:00:00".to_string(),
                "2025-03-01T23:59:59".to_string()
            ),
            (
                "2025-03-02T00:00:00".to_string(),
                "2025-03-02T23:59:59".to_string()
            ),
        ],
        "one request per 1-day slice, ending at the last instant of the day"
    );
}

#[test]
fn date_params_exclusive_end() {
    let mut r = sized_route(5);
    r["date_params"]["end_style"] = json!("exclusive");
    // The API reads data_final as the day after the last one: an inclusive
    // end would make every 1-day slice an empty range.
    let c = Case::new(
        "sh_param_excl",
        &["--per-day", "8", "--end-style", "exclusive"],
        "page",
        r,
    );
    let s = c.load("2025-02-27", "2025-03-01");
    assert_clean(&s, 24, 6, 3);
    c.assert_exact("2025-02-27", "2025-03-01", 8, ISO);
}

fn record_date_case(tag: &str, style: &str, date_sql: &str) -> Case {
    let c = Case::new(
        tag,
        &["--per-day", "8", "--page-size", "5", "--record-date", style],
        "page",
        sized_route(5),
    );
    let s = c.load("2025-03-01", "2025-03-03");
    assert_clean(&s, 24, 6, 3);
    c.assert_exact("2025-03-01", "2025-03-03", 8, date_sql);
    c
}

#[test]
fn record_dates_br() {
    record_date_case(
        "sh_rec_br",
        "br",
        "to_date(payload->>'data_pedido', 'DD/MM/YYYY')",
    );
}

#[test]
fn record_dates_rfc3339_keep_their_local_day() {
    let c = record_date_case(
        "sh_rec_rfc",
        "rfc3339",
        "left(payload->>'data_pedido', 10)::date",
    );
    let per_day: Vec<(String, i64)> = c
        .db
        .client()
        .query(
            &format!("SELECT data_referencia::text, count(*) FROM {TABLE} GROUP BY 1 ORDER BY 1"),
            &[],
        )
        .expect("per day")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want: Vec<(String, i64)> = ["2025-03-01", "2025-03-02", "2025-03-03"]
        .iter()
        .map(|d| (d.to_string(), 8))
        .collect();
    assert_eq!(per_day, want, "rows per data_referencia");
    // The day edges: 00:00:00 and 23:59:59.999 local land on their own day.
    let edges = c.db.strings(&format!(
        "SELECT (payload->>'data_pedido') || ' -> ' || data_referencia::text FROM {TABLE} \
         WHERE (payload->>'numero')::bigint % {NUMERO_DAY} IN (0, 1) ORDER BY (payload->>'numero')::bigint"
    ));
    assert_eq!(edges.len(), 6, "{edges:?}");
    for e in &edges {
        let (ts, d) = e.split_once(" -> ").unwrap();
        assert_eq!(&ts[..10], d, "edge record {e}");
    }
    assert!(
        edges.iter().any(|e| e.contains("T00:00:00-03:00")),
        "{edges:?}"
    );
    assert!(
        edges.iter().any(|e| e.contains("T23:59:59.999")),
        "{edges:?}"
    );
    // The data can tell local from UTC dating: some records' UTC day differs.
    let differs = c.db.i64(&format!(
        "SELECT count(*) FROM {TABLE} WHERE (((payload->>'data_pedido')::timestamptz) AT TIME ZONE 'UTC')::date <> data_referencia"
    ));
    assert!(
        differs > 0,
        "no record's UTC day differs from its local day: the check would not discriminate"
    );
    let offsets = c.db.i64(&format!(
        "SELECT count(DISTINCT right(payload->>'data_pedido', 6)) FROM {TABLE}"
    ));
    assert!(
        offsets >= 4,
        "records with -03:00, +00:00, +05:30, -10:00 ({offsets} distinct offsets)"
    );
}

#[test]
fn record_dates_epoch_in_utc() {
    record_date_case(
        "sh_rec_epoch",
        "epoch",
        "(to_timestamp((payload->>'data_pedido')::bigint) AT TIME ZONE 'UTC')::date",
    );
}

#[test]
fn record_dates_epoch_ms_in_utc() {
    record_date_case(
        "sh_rec_epochms",
        "epoch_ms",
        "(to_timestamp((payload->>'data_pedido')::bigint / 1000.0) AT TIME ZONE 'UTC')::date",
    );
}

#[test]
fn record_dates_naive() {
    record_date_case(
        "sh_rec_naive",
        "naive",
        "left(payload->>'data_pedido', 10)::date",
    );
}

// ------------------------------------------------------------------ 5. guards

type Slices = Vec<(String, String, String, String)>;

/// A guarded run: exit 1, summary counts, last_error names the guard.
/// Returns the scrap id and its slices (from, to, status, last_error).
fn guarded(
    c: &Case,
    from: &str,
    to: &str,
    done: i64,
    failed: i64,
    needle: &str,
) -> (String, Slices) {
    let id = c.create(from, to);
    let r = c.run(&id, &[]);
    assert_eq!(
        r.code, 1,
        "a guard fails its slice\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    let s = r.json();
    assert_eq!(s["slices_done"].as_i64(), Some(done), "{s}");
    assert_eq!(s["slices_failed"].as_i64(), Some(failed), "{s}");
    let slices = c.slices(&id);
    for (f, t, status, err) in &slices {
        if status == "failed" {
            assert!(
                err.contains("guard") && err.contains(needle),
                "slice {f}..{t}: last_error '{err}' should name the guard ({needle})"
            );
        } else {
            assert_eq!(status, "done", "slice {f}..{t}");
        }
    }
    // Whatever was committed is real, unique and in the period.
    let count = c.count(TABLE);
    assert_eq!(
        c.db.i64(&format!(
            "SELECT count(DISTINCT hash_conteudo) FROM {TABLE}"
        )),
        count
    );
    let outside = c.db.i64(&format!(
        "SELECT count(*) FROM {TABLE} WHERE data_referencia NOT BETWEEN DATE '{from}' AND DATE '{to}'"
    ));
    assert_eq!(outside, 0, "rows outside the period");
    (id, slices)
}

/// `scrap show` names the guard (checked last: the other checks run first).
// BUG: with the current working tree `scrap show` panics (exit 101, "index out
// of bounds: the len is 10 but the index is 10" in app::table): show() added a
// `worker` cell to each slice row but not a "worker" header, so every scrap
// that has slices cannot be shown.
fn assert_show_names_guard(c: &Case, id: &str) {
    let show = c.atlas.ok(&["scrap", "show", id]);
    assert!(
        show.stdout.contains("guard"),
        "scrap show names the guard:\n{}",
        show.stdout
    );
}

/// The 1-day slice `d` that the misbehaviour spares is loaded exactly.
fn assert_day_loaded(c: &Case, d: &str, per_day: i64) {
    assert_eq!(
        c.stored_numeros(&format!("data_referencia = DATE '{d}'")),
        numeros(d, d, per_day),
        "the unaffected slice {d} is loaded exactly"
    );
}

#[test]
fn guard_repeat_cursor() {
    // Cursor stuck from page 2 on: a slice with more than 2 pages (the 2-day one)
    // repeats it; the 1-day slice (5 records, pages of 3) ends on an empty page.
    let mut r =
        paged_route(json!({ "type": "cursor", "param": "cursor", "cursor_path": "/next_cursor" }));
    r["slice_days"] = json!(2);
    let c = Case::new(
        "sh_guard_cursor",
        &[
            "--per-day",
            "5",
            "--page-size",
            "3",
            "--misbehave",
            "repeat_cursor",
        ],
        "cursor",
        r,
    );
    let (id, slices) = guarded(&c, "2025-03-01", "2025-03-03", 1, 1, "cursor");
    assert_eq!(slices[0].2, "failed", "{slices:?}");
    assert_eq!(slices[1].2, "done", "{slices:?}");
    assert_day_loaded(&c, "2025-03-03", 5);
    assert_show_names_guard(&c, &id);
}

#[test]
fn guard_repeat_page() {
    // Every page is page 1 again, no totals. The 1-day slice (6 records, pages
    // of 10) ends on its short first page; the 2-day one repeats a full page.
    let mut r = paged_route(
        json!({ "type": "page", "param": "page", "size_param": "por_pagina", "size": 10,
                              "stop_on_short_page": true }),
    );
    r["slice_days"] = json!(2);
    let c = Case::new(
        "sh_guard_page",
        &["--per-day", "6", "--misbehave", "repeat_page"],
        "page",
        r,
    );
    let (id, slices) = guarded(&c, "2025-03-01", "2025-03-03", 1, 1, "repeats");
    assert_eq!(slices[0].2, "failed", "{slices:?}");
    assert_day_loaded(&c, "2025-03-03", 6);
    assert_show_names_guard(&c, &id);
}

#[test]
fn guard_repeat_page_without_short_page_stop() {
    // The plain page kind (no total, no short-page stop): every slice repeats.
    let p = json!({ "type": "page", "param": "page", "size_param": "por_pagina", "size": 5 });
    let c = Case::new(
        "sh_guard_page2",
        &["--per-day", "7", "--misbehave", "repeat_page"],
        "page",
        paged_route(p),
    );
    let (id, _) = guarded(&c, "2025-03-01", "2025-03-02", 0, 2, "repeats");
    assert_show_names_guard(&c, &id);
}

#[test]
fn guard_endless_max_pages() {
    // Never an empty page, no totals: every slice passes max_pages.
    let p = json!({ "type": "page", "param": "page", "size_param": "por_pagina", "size": 5, "max_pages": 5 });
    let c = Case::new(
        "sh_guard_endless",
        &["--per-day", "7", "--misbehave", "endless"],
        "page",
        paged_route(p),
    );
    let (id, slices) = guarded(&c, "2025-03-01", "2025-03-02", 0, 2, "max_pages");
    assert_eq!(slices.len(), 2);
    // Exactly max_pages pages were read per slice, not more.
    let pages = c.db.i64("SELECT sum(pages)::bigint FROM atlas.slices");
    assert_eq!(pages, 10, "pages read per slice = max_pages (5)");
    assert_show_names_guard(&c, &id);
}

#[test]
fn guard_lying_total() {
    // One page more is declared than exists. The 1-day slice (6 records,
    // pages of 4) ends on its short page before the lie; the 2-day one (12
    // records, 3 full pages) meets the empty "page 4 of 4".
    let mut r = paged_route(
        json!({ "type": "page", "param": "page", "size_param": "por_pagina", "size": 4,
                              "total_pages": "/total_paginas", "stop_on_short_page": true }),
    );
    r["slice_days"] = json!(2);
    let c = Case::new(
        "sh_guard_lying",
        &["--per-day", "6", "--misbehave", "lying_total"],
        "page",
        r,
    );
    let (id, slices) = guarded(&c, "2025-03-01", "2025-03-03", 1, 1, "declared");
    assert_eq!(slices[0].2, "failed", "{slices:?}");
    assert_day_loaded(&c, "2025-03-03", 6);
    // The records before the lie were all committed.
    assert_eq!(
        c.stored_numeros("data_referencia < DATE '2025-03-03'"),
        numeros("2025-03-01", "2025-03-02", 6),
        "the failed slice's pages before the guard stay committed"
    );
    assert_show_names_guard(&c, &id);
}

#[test]
fn guard_lying_total_plain() {
    // total_pages only: every slice meets the lie.
    let c = Case::new(
        "sh_guard_lying2",
        &["--per-day", "7", "--misbehave", "lying_total"],
        "page",
        sized_route(4),
    );
    let (id, _) = guarded(&c, "2025-03-01", "2025-03-02", 0, 2, "declared");
    assert_show_names_guard(&c, &id);
}

// ------------------------------------------------------------------ 6. out of period

#[test]
fn neighbours_are_out_of_period_or_duplicates() {
    let c = Case::new(
        "sh_neighbours",
        &["--per-day", "7", "--neighbours"],
        "page",
        sized_route(5),
    );
    let s = c.load("2025-03-01", "2025-03-03");
    let n = |k: &str| {
        s[k].as_i64()
            .unwrap_or_else(|| panic!("summary lacks {k}: {s}"))
    };
    // Each 1-day slice gets 3 days: 9 days of records for 3 in the period.
    assert_eq!(n("records_fetched"), 9 * 7, "{s}");
    assert_eq!(
        n("out_of_period"),
        2 * 7,
        "the day before the first and after the last: {s}"
    );
    assert_eq!(n("inserted"), 3 * 7, "{s}");
    assert!(
        n("duplicates") > 0,
        "neighbours inside the period repeat: {s}"
    );
    assert_eq!(n("duplicates"), 4 * 7, "{s}");
    assert_eq!(n("slices_failed"), 0, "{s}");
    c.assert_exact("2025-03-01", "2025-03-03", 7, ISO);
}

// ------------------------------------------------------------------ 7. query, headers, overrides

#[test]
fn fixed_query_and_headers_per_route_and_client() {
    let mut r = sized_route(5);
    r["query"] = json!({ "situacao": "todas" });
    r["headers"] = json!({ "X-Origem": "atlas-testes" });
    let cap = Capture::start(r#"{"data":[]}"#);
    let fixed = |c: &mut Value| {
        c["headers"] = json!({ "X-Loja": "42" });
        c["query"] = json!({ "loja": "42" });
    };
    // The API accepts only requests carrying the client's header.
    let c = Case::with(
        "sh_fixed",
        &["--per-day", "7", "--auth", "header:X-Loja:42"],
        "page",
        r,
        |cfg| {
            fixed(&mut cfg["clients"]["2151"]);
            add_capture_client(cfg, &format!("{}/x", cap.url));
            fixed(&mut cfg["clients"]["77"]);
        },
    );
    let s = c.load("2025-03-01", "2025-03-02");
    assert_clean(&s, 14, 4, 2);
    c.assert_exact("2025-03-01", "2025-03-02", 7, ISO);
    // What was actually sent, seen by the capture server.
    let id = c.create_for("77", "2025-03-01", "2025-03-01");
    c.atlas.ok(&["scrap", "run", &id, "--json"]);
    let heads = cap.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let q = query_of(&heads[0]);
    assert_eq!(get(&q, "situacao"), Some("todas"), "route query: {q:?}");
    assert_eq!(get(&q, "loja"), Some("42"), "client query: {q:?}");
    assert_eq!(get(&q, "data_inicial"), Some("2025-03-01"), "{q:?}");
    let lower = heads[0].to_ascii_lowercase();
    assert!(
        lower.contains("\r\nx-origem: atlas-testes\r\n"),
        "route header:\n{}",
        heads[0]
    );
    assert!(
        lower.contains("\r\nx-loja: 42\r\n"),
        "client header:\n{}",
        heads[0]
    );
}

#[test]
fn client_override_slice_days() {
    let c = Case::with(
        "sh_override",
        &["--per-day", "7"],
        "page",
        sized_route(5),
        |cfg| {
            cfg["clients"]["2151"]["route_overrides"] = json!({ "pedidos": { "slice_days": 2 } });
        },
    );
    let id = c.create("2025-03-01", "2025-03-04");
    let s = c.atlas.expect(&["scrap", "run", &id, "--json"], 0).json();
    let slices: Vec<(String, String)> = c
        .slices(&id)
        .into_iter()
        .map(|(f, t, _, _)| (f, t))
        .collect();
    assert_eq!(
        slices,
        vec![
            ("2025-03-01".to_string(), "2025-03-02".to_string()),
            ("2025-03-03".to_string(), "2025-03-04".to_string()),
        ],
        "slices of 2 days"
    );
    // 14 records a slice, pages of 5: 3 pages each.
    assert_clean(&s, 28, 6, 2);
    c.assert_exact("2025-03-01", "2025-03-04", 7, ISO);
}

// ------------------------------------------------------------------ 8. bad bodies

#[test]
fn wrong_records_pointer_fails_the_slice() {
    let mut r = sized_route(5);
    r["records"] = json!("/dados");
    let c = Case::new("sh_bad_ptr", &["--per-day", "7"], "page", r);
    let id = c.create("2025-03-01", "2025-03-02");
    let r = c.run(&id, &["--retry-max", "2"]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let s = r.json();
    assert_eq!(s["slices_failed"].as_i64(), Some(2), "{s}");
    assert_eq!(s["slices_done"].as_i64(), Some(0), "{s}");
    assert_eq!(
        s["retries"].as_i64(),
        Some(2),
        "one retry per slice with --retry-max 2: {s}"
    );
    for (f, _, status, err) in c.slices(&id) {
        assert_eq!(status, "failed", "slice {f}");
        assert!(
            err.contains("/dados"),
            "slice {f}: last_error names the pointer: '{err}'"
        );
        assert!(
            err.contains("2 attempts"),
            "slice {f}: failed after the retries: '{err}'"
        );
    }
    assert_eq!(c.count(TABLE), 0, "nothing stored");
}

/// Records become rows as a body is parsed; a body whose records key is
/// repeated still loads the last array only (what the pointer names), and
/// one whose last records key holds no array fails, storing nothing.
#[test]
fn a_repeated_records_key_loads_what_the_pointer_names() {
    const LAST_WINS: &str = r#"{"data":[{"numero":1,"data_pedido":"2025-03-01"}],"meta":{"data":[{"numero":9,"data_pedido":"2025-03-01"}]},"data":[{"numero":2,"data_pedido":"2025-03-01"},{"numero":3,"data_pedido":"2025-03-01"}]}"#;
    const NO_ARRAY: &str = r#"{"data":[{"numero":4,"data_pedido":"2025-03-01"}],"data":5}"#;
    let last = Capture::start(LAST_WINS);
    let none = Capture::start(NO_ARRAY);
    let c = Case::with(
        "sh_repeated_key",
        &["--per-day", "2"],
        "none",
        paged_route(json!({ "type": "none" })),
        |cfg| {
            add_capture_client(cfg, &format!("{}/x", last.url));
            cfg["clients"]["78"] =
                json!({ "name": "Sem lista", "base_url": format!("{}/x", none.url) });
        },
    );
    c.atlas.ok(&["init"]);
    let scrap = |client: &str| c.create_for(client, "2025-03-01", "2025-03-01");
    let id = scrap("77");
    let s = c.atlas.expect(&["scrap", "run", &id, "--json"], 0).json();
    assert_eq!(s["inserted"], 2, "{s}");
    let numeros = |t: &str| {
        c.db.i64(&format!(
            "SELECT coalesce(sum((payload->>'numero')::int * 10 ^ (payload->>'numero')::int), 0)::bigint FROM {t}"
        ))
    };
    assert_eq!(numeros("dados_raw_cliente_77_pedidos"), 2 * 100 + 3 * 1000);
    let id = scrap("78");
    let r = c
        .atlas
        .run(&["scrap", "run", &id, "--json", "--retry-max", "1"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["inserted"], 0, "{}", r.stdout);
    assert_eq!(c.count("dados_raw_cliente_78_pedidos"), 0);
}
