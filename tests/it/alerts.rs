//! Issue 31 points 2 and 3: the metrics textfile (`metrics_file`) and the
//! notifiers (`notify`): the file parses as Prometheus text, holds every
//! pair after partial runs and is never seen half-written; the command and
//! the webhook get the run's `--json` object (the webhook with a `text`
//! line), secrets never; a hanging notifier is cut and changes no exit code.

use crate::util::{dead_db_args, route_at, sync_args, Api, Atlas, Bg, TestDb};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FROM: &str = "2025-03-01";
const UNTIL: &str = "2025-03-04";

/// The down client's API key: it must never reach a notifier or the file.
const KEY: &str = "chave-secreta-9931";

/// The metric families the file must hold for every pair.
const FAMILIES: [&str; 11] = [
    "atlas_last_run_timestamp_seconds",
    "atlas_last_success_timestamp_seconds",
    "atlas_last_run_exit_code",
    "atlas_records_inserted",
    "atlas_records_duplicated",
    "atlas_slices_failed",
    "atlas_http_requests",
    "atlas_http_429",
    "atlas_retries",
    "atlas_run_duration_seconds",
    "atlas_loaded_until_timestamp_seconds",
];

/// Client 2151 (the API) with routes pedidos and notas, and client 3000
/// whose API is down (nothing listens), with a secret API key.
fn fleet(api: &Api) -> Value {
    json!({
        "clients": {
            "2151": { "base_url": format!("{}/page", api.url) },
            "3000": {
                "base_url": "http://127.0.0.1:9/page",
                "auth": { "type": "query", "param": "api_key", "value_env": "ATLAS_KEY_3000" },
                "routes": ["pedidos"]
            }
        },
        "routes": { "pedidos": route_at("/pedidos"), "notas": route_at("/notas") }
    })
}

fn atlas(db: &TestDb, cfg: &Value) -> Atlas {
    let mut a = Atlas::new(db, cfg);
    a.env.extend([
        ("ATLAS_KEY_3000".into(), KEY.into()),
        ("ATLAS_RETRY_MAX".into(), "2".into()),
    ]);
    a
}

/// One sample of the metrics text.
#[derive(Debug)]
struct Sample {
    metric: String,
    client: String,
    route: String,
    class: Option<String>,
    value: f64,
}

/// The metrics text read with a Prometheus text-format parser, held to
/// the format: every line read (none ignored), each family with HELP and
/// TYPE gauge, every pair in every family, the whole text ending in a
/// newline (a file cut short would not). Panics naming what is wrong.
fn parse_metrics(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "cut short:\n{text}");
    for line in text.lines() {
        let info = prometheus_parse::LineInfo::parse(line);
        assert!(
            !matches!(info, prometheus_parse::LineInfo::Ignored),
            "line not in the format: {line:?}"
        );
        if let prometheus_parse::LineInfo::Sample { value, .. } = info {
            assert!(value.parse::<f64>().is_ok(), "value of {line:?}");
        }
    }
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus text");
    let mut pairs = BTreeSet::new();
    let samples: Vec<Sample> = scrape
        .samples
        .iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                ref other => panic!("{} is not a gauge: {other:?}", s.metric),
            };
            let label = |k: &str| s.labels.get(k).map(str::to_string);
            let (client, route) = (
                label("client").expect("client"),
                label("route").expect("route"),
            );
            pairs.insert((client.clone(), route.clone()));
            Sample {
                metric: s.metric.clone(),
                client,
                route,
                class: label("class"),
                value,
            }
        })
        .collect();
    for f in FAMILIES {
        assert!(scrape.docs.contains_key(f), "no HELP for {f}");
        assert_eq!(
            text.matches(&format!("# TYPE {f} gauge\n")).count(),
            1,
            "{f}"
        );
        for (c, r) in &pairs {
            // A pair that never succeeded (never loaded) has no last
            // success (no loaded-until) yet.
            if f == "atlas_last_success_timestamp_seconds"
                || f == "atlas_loaded_until_timestamp_seconds"
            {
                continue;
            }
            assert!(
                samples
                    .iter()
                    .any(|s| s.metric == f && &s.client == c && &s.route == r),
                "{f} lacks {c}/{r}:\n{text}"
            );
        }
    }
    samples
}

fn value(samples: &[Sample], metric: &str, pair: (&str, &str)) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.metric == metric && s.client == pair.0 && s.route == pair.1)
        .map(|s| s.value)
}

#[test]
fn the_metrics_file_holds_every_pair_after_partial_runs_and_is_never_half_written() {
    let api = Api::start(&["--per-day", "12", "--page-size", "5", "--latency-ms", "20"]);
    let db = TestDb::new("metrics");
    let mut cfg = fleet(&api);
    cfg["metrics_file"] = json!("atlas.prom");
    let atlas = atlas(&db, &cfg);
    atlas.ok(&["init"]);
    let prom = atlas.path("atlas.prom");

    // A reader polling the file all along, as node_exporter would.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Mutex::new(0usize));
    let poller = {
        let (stop, reads, prom) = (stop.clone(), reads.clone(), prom.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(text) = std::fs::read_to_string(&prom) {
                    parse_metrics(&text);
                    *reads.lock().unwrap() += 1;
                }
            }
        })
    };

    // First run: the pedidos pairs (3000's API is down: exit 1).
    let r = atlas.expect(
        &[
            "sync", "--all", "--route", "pedidos", "--from", FROM, "--until", UNTIL, "--json",
        ],
        1,
    );
    let fleet_json = r.json();
    let first = parse_metrics(&std::fs::read_to_string(&prom).expect("metrics file"));
    let ok = ("2151", "pedidos");
    let down = ("3000", "pedidos");
    assert_eq!(value(&first, "atlas_last_run_exit_code", ok), Some(0.0));
    assert_eq!(value(&first, "atlas_last_run_exit_code", down), Some(1.0));
    assert!(value(&first, "atlas_last_success_timestamp_seconds", down).is_none());
    let inserted = fleet_json["pairs"][0]["inserted"]
        .as_f64()
        .expect("inserted");
    assert_eq!(value(&first, "atlas_records_inserted", ok), Some(inserted));
    assert_eq!(
        value(&first, "atlas_records_inserted", ok),
        Some(api.expected(FROM, UNTIL) as f64)
    );
    // 2025-03-04 00:00 UTC.
    assert_eq!(
        value(&first, "atlas_loaded_until_timestamp_seconds", ok),
        Some(1_741_046_400.0)
    );
    let class = |s: &[Sample], pair: (&str, &str), c: &str| {
        s.iter()
            .find(|x| {
                x.metric == "atlas_http_requests"
                    && (x.client.as_str(), x.route.as_str()) == pair
                    && x.class.as_deref() == Some(c)
            })
            .map(|x| x.value)
    };
    assert!(
        class(&first, ok, "2xx").unwrap_or(0.0) >= 4.0,
        "one page a day at least"
    );
    assert_eq!(class(&first, ok, "5xx"), Some(0.0));
    // The down API: every attempt without an answer.
    assert!(class(&first, down, "other").unwrap_or(0.0) >= 2.0);
    assert_eq!(class(&first, down, "2xx"), Some(0.0));
    let pair = &fleet_json["pairs"][0];
    assert_eq!(
        pair["http_requests"]["2xx"].as_f64(),
        class(&first, ok, "2xx"),
        "{pair}"
    );
    assert_eq!(pair["http_429"], 0, "{pair}");

    // Second run: the notas pair alone, in the background while polling.
    let mut bg = Bg::spawn(
        &atlas,
        &[
            "sync", "--client", "2151", "--route", "notas", "--from", FROM, "--until", UNTIL,
        ],
        "notas",
    );
    let second_run = bg.finish(Duration::from_secs(60));
    assert_eq!(second_run.code, 0, "{}", second_run.stderr);
    // And a scrap run of pedidos, again: its loaded-until asked of the ledger.
    let id = atlas
        .ok(&[
            "scrap", "create", "--client", "2151", "--route", "pedidos", "--from", FROM, "--to",
            FROM,
        ])
        .stdout;
    atlas.ok(&["scrap", "run", id.trim()]);
    stop.store(true, Ordering::SeqCst);
    poller.join().expect("every read parsed");
    assert!(*reads.lock().unwrap() > 0, "the poller read the file");

    let last = parse_metrics(&std::fs::read_to_string(&prom).expect("metrics file"));
    let pairs: BTreeSet<(String, String)> = last
        .iter()
        .map(|s| (s.client.clone(), s.route.clone()))
        .collect();
    let want: BTreeSet<(String, String)> =
        [("2151", "notas"), ("2151", "pedidos"), ("3000", "pedidos")]
            .iter()
            .map(|(c, r)| (c.to_string(), r.to_string()))
            .collect();
    assert_eq!(pairs, want, "every pair of the config");
    // 3000's samples are the first run's, kept.
    assert_eq!(value(&last, "atlas_last_run_exit_code", down), Some(1.0));
    assert_eq!(
        value(&last, "atlas_last_run_timestamp_seconds", down),
        value(&first, "atlas_last_run_timestamp_seconds", down)
    );
    // The scrap run found its day loaded already: nothing inserted, loaded until the same.
    assert_eq!(value(&last, "atlas_records_inserted", ok), Some(0.0));
    assert_eq!(
        value(&last, "atlas_loaded_until_timestamp_seconds", ok),
        Some(1_741_046_400.0)
    );
    assert!(
        value(&last, "atlas_last_run_timestamp_seconds", ok)
            > value(&first, "atlas_last_run_timestamp_seconds", ok)
    );
    let text = std::fs::read_to_string(&prom).expect("metrics file");
    assert!(!text.contains(KEY));
    // Nothing left beside it but its lock (no temporary files).
    let mut names: Vec<String> = std::fs::read_dir(atlas.dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("atlas.prom"))
        .collect();
    names.sort();
    assert_eq!(names, ["atlas.prom", "atlas.prom.lock"]);
}

/// A webhook on loopback: records each POST's path and body, answers 200,
/// or never answers (`hang`).
struct Hook {
    url: String,
    got: Arc<Mutex<Vec<(String, Value)>>>,
    stop: Arc<AtomicBool>,
}

impl Hook {
    fn start(hang: bool) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                if hang {
                    held.push(conn);
                    continue;
                }
                if let Some(req) = read_request(&mut conn) {
                    g.lock().unwrap().push(req);
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                );
            }
        });
        Hook {
            // The path is the secret part of a Slack-style webhook URL.
            url: format!("http://127.0.0.1:{port}/services/T0/B0/segredo-do-webhook-4471"),
            got,
            stop,
        }
    }

    fn posts(&self) -> Vec<(String, Value)> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop.
        if let Some(addr) = self.url.split('/').nth(2) {
            let _ = TcpStream::connect(addr);
        }
    }
}

/// One HTTP request: its path and JSON body.
fn read_request(conn: &mut TcpStream) -> Option<(String, Value)> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split(' ').nth(1)?.to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, serde_json::from_slice(&body).ok()?))
}

/// The notify block: a command writing its stdin to `notified.json`, the
/// webhook from ATLAS_TEST_HOOK.
fn with_notify(cfg: &mut Value, on: &[&str], command: Value, timeout: u64) {
    cfg["notify"] = json!({
        "on": on,
        "command": command,
        "webhook_url_env": "ATLAS_TEST_HOOK",
        "timeout_secs": timeout
    });
}

fn writes_stdin_to(file: &str) -> Value {
    json!(["sh", "-c", format!("cat > {file}")])
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn the_notifiers_get_the_fleets_json_with_the_failing_pair_and_no_secret() {
    let api = Api::start(&["--per-day", "5", "--page-size", "5"]);
    let hook = Hook::start(false);
    let db = TestDb::new("notify");
    let mut cfg = fleet(&api);
    with_notify(&mut cfg, &["failure"], writes_stdin_to("notified.json"), 10);
    let mut atlas = atlas(&db, &cfg);
    atlas.env.push(("ATLAS_TEST_HOOK".into(), hook.url.clone()));
    atlas.ok(&["init"]);
    let r = atlas.expect(
        &["sync", "--all", "--from", FROM, "--until", UNTIL, "--json"],
        1,
    );
    let printed = r.json();
    let got = read_json(&atlas.path("notified.json"));
    assert_eq!(got, printed, "the command got the run's --json object");
    let failing: Vec<String> = got["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .filter(|p| p["exit_code"] != 0)
        .map(|p| {
            format!(
                "{}/{}",
                p["client"].as_str().unwrap(),
                p["route"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(failing, ["3000/pedidos"]);
    let posts = hook.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let (path, body) = &posts[0];
    assert_eq!(path, "/services/T0/B0/segredo-do-webhook-4471");
    assert_eq!(body["atlas"], printed);
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("3000 / pedidos") && text.contains("1 com problema") && !text.contains('\n'),
        "{text}"
    );
    assert!(
        r.stderr.contains("Notificação enviada: command, webhook"),
        "{}",
        r.stderr
    );
    for shown in [&r.stdout, &r.stderr, &body.to_string(), &got.to_string()] {
        assert!(!shown.contains(KEY), "the API key reached:\n{shown}");
        assert!(
            !shown.contains("segredo-do-webhook"),
            "the webhook URL reached:\n{shown}"
        );
    }

    // A good run is not notified (on: failure only).
    std::fs::remove_file(atlas.path("notified.json")).expect("rm");
    atlas.ok(&[
        "sync", "--client", "2151", "--route", "notas", "--from", FROM, "--until", UNTIL,
    ]);
    assert!(!atlas.path("notified.json").exists());
    assert_eq!(hook.posts().len(), 1);

    // An error before the run (the database gone) is a failure told too.
    let r = atlas.expect(&dead_db_args(&sync_args(&["--from", FROM])), 3);
    let got = read_json(&atlas.path("notified.json"));
    assert_eq!(got["exit_code"], 3, "{got}");
    assert_eq!(got["status"], "error", "{got}");
    assert!(
        got["error"].as_str().unwrap_or("").contains("127.0.0.1:1"),
        "{got}"
    );
    assert_eq!(hook.posts().len(), 2, "{}", r.stderr);
}

#[test]
fn a_hanging_notifier_is_cut_at_its_timeout_and_the_exit_code_stands() {
    let api = Api::start(&["--per-day", "5", "--page-size", "5"]);
    let hook = Hook::start(true);
    let db = TestDb::new("notify_hang");
    let mut cfg = json!({
        "clients": { "2151": { "base_url": format!("{}/page", api.url) } },
        "routes": { "pedidos": route_at("/pedidos") }
    });
    with_notify(
        &mut cfg,
        &["failure", "success"],
        json!(["sh", "-c", "sleep 60"]),
        1,
    );
    let mut atlas = atlas(&db, &cfg);
    atlas.env.push(("ATLAS_TEST_HOOK".into(), hook.url.clone()));
    atlas.ok(&["init"]);
    let started = Instant::now();
    let r = atlas.ok(&sync_args(&["--from", FROM, "--until", UNTIL, "--json"]));
    let took = started.elapsed();
    assert_eq!(r.json()["exit_code"], 0);
    assert!(
        took < Duration::from_secs(15),
        "the notifiers held the run {took:?}"
    );
    assert!(
        r.stderr
            .contains("Notificação (command) falhou: sh did not end within 1s"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("Notificação (webhook) falhou"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("segredo-do-webhook"), "{}", r.stderr);
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.slices WHERE status <> 'done'"),
        0
    );
}

#[test]
fn check_notify_test_reports_each_notifier() {
    let hook = Hook::start(false);
    let db = TestDb::new("notify_check");
    let mut cfg = json!({
        "clients": { "2151": { "base_url": "http://127.0.0.1:9/x" } },
        "routes": { "pedidos": route_at("/pedidos") }
    });
    with_notify(&mut cfg, &["failure"], writes_stdin_to("teste.json"), 5);
    let mut atlas = atlas(&db, &cfg);
    // The variable not set: the webhook is a problem, exit 3.
    let r = atlas.expect(&["check", "--notify-test"], 3);
    assert!(
        r.stdout.contains("ATLAS_TEST_HOOK is not set"),
        "{}",
        r.stdout
    );
    atlas.env.push(("ATLAS_TEST_HOOK".into(), hook.url.clone()));
    let r = atlas.ok(&["check", "--notify-test"]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("command") && l.contains("OK")),
        "{}",
        r.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("webhook") && l.contains("OK")),
        "{}",
        r.stdout
    );
    assert_eq!(read_json(&atlas.path("teste.json"))["status"], "test");
    assert_eq!(hook.posts()[0].1["atlas"]["test"], true);
    assert!(hook.posts()[0].1["text"]
        .as_str()
        .unwrap_or("")
        .contains("teste"));
    // A failing command: exit 3, naming it.
    cfg["notify"]["command"] = json!(["sh", "-c", "echo 'sem servidor de e-mail' >&2; exit 7"]);
    std::fs::write(atlas.path("atlas.json"), cfg.to_string()).expect("write");
    let r = atlas.expect(&["check", "--notify-test"], 3);
    assert!(r.stdout.contains("sem servidor de e-mail"), "{}", r.stdout);
    // No block: nothing to test, exit 2.
    cfg.as_object_mut().expect("object").remove("notify");
    std::fs::write(atlas.path("atlas.json"), cfg.to_string()).expect("write");
    let r = atlas.expect(&["check", "--notify-test"], 2);
    assert!(r.stderr.contains("no notify block"), "{}", r.stderr);
    // A bad block is a config error naming its key.
    cfg["notify"] = json!({"on": ["sempre"], "command": ["true"]});
    std::fs::write(atlas.path("atlas.json"), cfg.to_string()).expect("write");
    let r = atlas.expect(&["check", "--no-probe"], 2);
    assert!(r.stderr.contains("notify.on"), "{}", r.stderr);
}
