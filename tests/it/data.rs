//! API data that PostgreSQL or a JSON parser dislikes (issue 11, items 12 to
//! 15): exact numbers, Latin-1 bodies and the route `charset`, deep nesting,
//! U+0000 in strings and keys. The bodies must be byte-exact, so they come
//! from a tiny loopback server written here, not from the sample API.

use crate::util::{Atlas, TestDb};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TABLE: &str = "dados_raw_cliente_2151_pedidos";

/// What the server sends for one request: content type and body bytes.
type Answer = (&'static str, Vec<u8>);

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with
/// `answer(path, day)` (`day` = the `de` query param), `Connection: close`.
struct Fixed {
    url: String,
    /// Request targets, in arrival order.
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Fixed {
    fn start(answer: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> Fixed {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let answer = Arc::new(answer);
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (answer, seen) = (Arc::clone(&answer), Arc::clone(&seen2));
                conns.push(std::thread::spawn(move || serve(stream, &*answer, &seen)));
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Fixed {
            url,
            seen,
            stop,
            accept: Some(accept),
        }
    }

    fn requests_to(&self, needle: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|t| t.contains(needle)).count()
    }
}

impl Drop for Fixed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve(mut stream: TcpStream, answer: &dyn Fn(&str, &str) -> Answer, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
    seen.lock().unwrap().push(target.clone());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let day = query
        .split('&')
        .find_map(|p| p.strip_prefix("de="))
        .unwrap_or("");
    let (content_type, body) = answer(path, day);
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    let _ = stream.write_all(&out);
}

/// A route of one page per day at `path`, records at `/data`.
fn route(path: &str) -> serde_json::Value {
    json!({
        "path": path,
        "records": "/data",
        "date_params": { "start": "de", "end": "ate" },
        "date_field": "/data_pedido"
    })
}

fn setup(server: &Fixed, routes: serde_json::Value) -> (TestDb, Atlas) {
    let db = TestDb::new("data");
    let atlas = Atlas::new(&db, &Atlas::config(&server.url, routes));
    (db, atlas)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn one(db: &TestDb, sql: &str) -> String {
    let v = db.strings(sql);
    assert_eq!(v.len(), 1, "{sql}: {v:?}");
    v.into_iter().next().unwrap_or_default()
}

/// Issue 11 item 13: big integers, long decimals, trailing zeros and huge
/// exponents reach the table unchanged in value, and the hash is of the
/// canonical text with the numbers as the API wrote them.
#[test]
fn numbers_are_stored_exactly_as_the_api_wrote_them() {
    let server = Fixed::start(|_, day| {
        let body = format!(
            r#"{{"data": [{{"id": 1, "data_pedido": "{day}", "big": 123456789012345678901234567890, "pi": 0.1000000000000000055511151231257827, "money": 1234.5600, "huge": 1e400, "neg": -0.0, "e": 2.5E-3}}]}}"#
        );
        ("application/json", body.into_bytes())
    });
    let (db, atlas) = setup(&server, json!({ "pedidos": route("/n") }));
    let id = atlas.create("pedidos", "2025-01-01", "2025-01-01");
    atlas.ok(&["scrap", "run", &id]);
    let field = |k: &str| one(&db, &format!("SELECT payload->>'{k}' FROM {TABLE}"));
    assert_eq!(field("big"), "123456789012345678901234567890");
    assert_eq!(field("pi"), "0.1000000000000000055511151231257827");
    assert_eq!(field("money"), "1234.5600");
    // PostgreSQL's numeric writes 1e400 out in full: the same value, no rounding.
    assert_eq!(field("huge"), format!("1{}", "0".repeat(400)));
    assert_eq!(field("e"), "0.0025");
    assert_eq!(
        one(
            &db,
            &format!("SELECT (payload->'huge' = '1e400'::jsonb)::text FROM {TABLE}")
        ),
        "true"
    );
    let canonical = r#"{"big":123456789012345678901234567890,"data_pedido":"2025-01-01","e":2.5E-3,"huge":1e400,"id":1,"money":1234.5600,"neg":-0.0,"pi":0.1000000000000000055511151231257827}"#;
    assert_eq!(
        one(&db, &format!("SELECT hash_conteudo FROM {TABLE}")),
        sha256_hex(canonical),
        "the hash is of the numbers as written"
    );
}

/// A number PostgreSQL's numeric cannot hold fails only its own slice, with
/// the record and where the number is; the other slice loads.
#[test]
fn a_number_postgres_cannot_hold_fails_only_its_slice() {
    let server = Fixed::start(|_, day| {
        let n = if day == "2025-01-01" { "1e999999" } else { "7" };
        let body = format!(r#"{{"data": [{{"data_pedido": "{day}", "v": {{"n": {n}}}}}]}}"#);
        ("application/json", body.into_bytes())
    });
    let (db, atlas) = setup(&server, json!({ "pedidos": route("/n") }));
    let id = atlas.create("pedidos", "2025-01-01", "2025-01-02");
    let r = atlas.expect(&["scrap", "run", &id, "--threads", "1"], 1);
    assert!(
        r.stderr.contains(
            "record 0: the number 1e999999 at /v/n is outside PostgreSQL's numeric range"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(db.i64(&format!("SELECT count(*) FROM {TABLE}")), 1);
    assert_eq!(
        db.i64(
            "SELECT count(*) FROM atlas.slices WHERE status = 'done' AND slice_from = '2025-01-02'"
        ),
        1
    );
}

/// Issue 11 item 14: a body declared ISO-8859-1 (or Windows-1252) is decoded
/// by that charset; the table holds correct UTF-8 text.
#[test]
fn latin1_and_windows_1252_bodies_are_decoded_by_their_declared_charset() {
    let server = Fixed::start(|_, day| {
        if day == "2025-01-01" {
            let mut b =
                format!(r#"{{"data": [{{"data_pedido": "{day}", "nome": "Jos"#).into_bytes();
            b.extend_from_slice(b"\xe9 S\xe3o \xc7\xe1\xea \xaa\xba\"}]}");
            ("application/json; charset=ISO-8859-1", b)
        } else {
            let mut b =
                format!(r#"{{"data": [{{"data_pedido": "{day}", "nome": "Pre"#).into_bytes();
            b.extend_from_slice(b"\xe7o \x80 10 \x96 \x93ok\x94\"}]}");
            ("application/json;charset=windows-1252", b)
        }
    });
    let (db, atlas) = setup(&server, json!({ "pedidos": route("/latin") }));
    let id = atlas.create("pedidos", "2025-01-01", "2025-01-02");
    atlas.ok(&["scrap", "run", &id]);
    let names = db.strings(&format!(
        "SELECT payload->>'nome' FROM {TABLE} ORDER BY data_referencia"
    ));
    assert_eq!(names, ["José São Çáê ªº", "Preço € 10 – “ok”"]);
}

/// The route `charset` wins over a wrong declaration, both ways; an unknown
/// charset is a config error (exit 2) naming the line, column and key.
#[test]
fn route_charset_overrides_a_wrong_declaration() {
    let server = Fixed::start(|path, day| {
        if path == "/says-utf8" {
            // Latin-1 bytes declared as UTF-8.
            let mut b = format!(r#"{{"data": [{{"data_pedido": "{day}", "nome": "Jo"#).into_bytes();
            b.extend_from_slice(b"\xe3o\"}]}");
            ("application/json; charset=utf-8", b)
        } else {
            // UTF-8 bytes declared as Latin-1.
            let b = format!(r#"{{"data": [{{"data_pedido": "{day}", "nome": "Conceição"}}]}}"#);
            ("application/json; charset=iso-8859-1", b.into_bytes())
        }
    });
    let mut says_utf8 = route("/says-utf8");
    says_utf8["charset"] = json!("iso-8859-1");
    let mut says_latin1 = route("/says-latin1");
    says_latin1["charset"] = json!("utf-8");
    let (db, atlas) = setup(
        &server,
        json!({ "pedidos": says_utf8, "notas": says_latin1 }),
    );
    let a = atlas.create("pedidos", "2025-01-01", "2025-01-01");
    atlas.ok(&["scrap", "run", &a]);
    assert_eq!(
        one(&db, &format!("SELECT payload->>'nome' FROM {TABLE}")),
        "João"
    );
    let b = atlas.create("notas", "2025-01-01", "2025-01-01");
    atlas.ok(&["scrap", "run", &b]);
    assert_eq!(
        one(
            &db,
            "SELECT payload->>'nome' FROM dados_raw_cliente_2151_notas"
        ),
        "Conceição"
    );

    let mut bad = route("/says-utf8");
    bad["charset"] = json!("klingon-8");
    let atlas = Atlas::new(&db, &Atlas::config(&server.url, json!({ "pedidos": bad })));
    let text = std::fs::read_to_string(atlas.path("atlas.json")).unwrap();
    let line = text.lines().position(|l| l.contains("klingon-8")).unwrap() + 1;
    let r = atlas.expect(&["check"], 2);
    assert!(
        r.stderr.contains(&format!("line {line}, column"))
            && r.stderr.contains("routes.pedidos.charset")
            && r.stderr
                .contains("'klingon-8' is not a charset atlas decodes"),
        "{}",
        r.stderr
    );
}

/// Issue 11 item 15: 1000 levels of nesting load; 100,000 fail their slice
/// at once with a clear message, no crash, and the other slice loads.
#[test]
fn deep_nesting_loads_to_the_bound_and_fails_clearly_past_it() {
    let server = Fixed::start(|_, day| {
        let depth = if day == "2025-01-01" { 1000 } else { 100_000 };
        let body = format!(
            r#"{{"data": [{{"data_pedido": "{day}", "deep": {}{}}}]}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        ("application/json", body.into_bytes())
    });
    let (db, atlas) = setup(&server, json!({ "pedidos": route("/deep") }));
    let id = atlas.create("pedidos", "2025-01-01", "2025-01-02");
    let r = atlas.expect(&["scrap", "run", &id, "--threads", "2"], 1);
    assert!(
        r.stderr.contains("nested deeper than 1024 levels"),
        "{}",
        r.stderr
    );
    assert_eq!(
        one(&db, &format!("SELECT (payload->'deep')::text FROM {TABLE}")),
        format!("{}{}", "[".repeat(1000), "]".repeat(1000)),
        "1000 levels stored as sent"
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.slices WHERE slice_from = '2025-01-02' AND status = 'failed' AND last_error LIKE '%deeper than 1024 levels%'"),
        1
    );
    assert_eq!(
        server.requests_to("de=2025-01-02"),
        1,
        "the same on every attempt: not retried"
    );
}

/// Issue 11 item 12: U+0000 in a string or a key is stored as U+FFFD, the
/// record is counted as sanitised (summary line, `--json`, one error-log block
/// per record with its slice and page), and every other record loads: of its
/// slice and of the other slice, which may share its batch.
#[test]
fn a_record_with_nul_is_sanitised_and_nothing_else_is_blocked() {
    let server = Fixed::start(|_, day| {
        let mut recs: Vec<String> = (0..5)
            .map(|i| format!(r#"{{"id": {i}, "data_pedido": "{day}", "obs": "ok {i}"}}"#))
            .collect();
        if day == "2025-01-01" {
            recs[2] = format!(r#"{{"id": 2, "data_pedido": "{day}", "obs": "C\u0000string"}}"#);
            recs[4] = format!(
                r#"{{"id": 4, "data_pedido": "{day}", "k\u0000": "x", "n": {{"m": ["\u0000"]}}}}"#
            );
        }
        let body = format!(r#"{{"data": [{}]}}"#, recs.join(", "));
        ("application/json", body.into_bytes())
    });
    let (db, atlas) = setup(&server, json!({ "pedidos": route("/nul") }));
    let id = atlas.create("pedidos", "2025-01-01", "2025-01-02");
    let s = atlas
        .ok(&[
            "scrap",
            "run",
            &id,
            "--threads",
            "2",
            "--writers",
            "1",
            "--batch-export",
            "100",
            "--json",
        ])
        .json();
    assert_eq!(s["inserted"], 10);
    assert_eq!(s["sanitised"], 2);
    assert_eq!(s["slices_done"], 2);
    assert_eq!(db.i64(&format!("SELECT count(*) FROM {TABLE}")), 10);
    assert_eq!(
        one(
            &db,
            &format!("SELECT payload->>'obs' FROM {TABLE} WHERE payload->>'id' = '2' AND data_referencia = '2025-01-01'")
        ),
        "C\u{FFFD}string"
    );
    assert_eq!(
        one(
            &db,
            &format!("SELECT hash_conteudo FROM {TABLE} WHERE payload->>'id' = '2' AND data_referencia = '2025-01-01'")
        ),
        sha256_hex("{\"data_pedido\":\"2025-01-01\",\"id\":2,\"obs\":\"C\u{FFFD}string\"}"),
        "the hash is of the stored text"
    );
    assert_eq!(
        one(&db, &format!("SELECT (payload->'n'->'m'->>0) || (payload ? 'k\u{FFFD}')::text FROM {TABLE} WHERE payload->>'id' = '4' AND data_referencia = '2025-01-01'")),
        "\u{FFFD}true"
    );
    let log = std::fs::read_to_string(atlas.path("erros_scraps.log")).expect("error log");
    let blocks: Vec<&str> = log
        .split("==== ")
        .filter(|b| b.contains("| registro saneado"))
        .collect();
    assert_eq!(blocks.len(), 2, "one block per record:\n{log}");
    assert!(
        blocks
            .iter()
            .all(|b| b.contains("fatia: 2025-01-01 até 2025-01-01")
                && b.contains("página: 1")
                && b.contains("cliente: 2151 | rota: pedidos")),
        "{log}"
    );
    assert!(
        log.contains("record 2: U+0000 replaced by U+FFFD at /obs; stored with hash_conteudo ")
            && log.contains("record 4: U+0000 replaced by U+FFFD at /k\\u0000 (key), /n/m/0;"),
        "{log}"
    );

    // Again, in a second scrap: the same hashes (all duplicates), and the
    // plain summary has its line.
    let id2 = atlas.create("pedidos", "2025-01-01", "2025-01-02");
    let r = atlas.ok(&["--plain", "scrap", "run", &id2]);
    assert!(
        r.stdout.contains("Saneados (U+0000 → U+FFFD): 2")
            && r.stdout.contains("Duplicados ignorados: 10"),
        "{}",
        r.stdout
    );
}
