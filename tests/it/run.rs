//! `atlas scrap run`: the load path end to end (issue: run a scrap).

use crate::util::*;
use serde_json::json;

const TABLE: &str = "dados_raw_cliente_2151_pedidos";

/// API and route agree on the page size given as `--page-size`.
fn setup(api_args: &[&str]) -> (TestDb, Api, Atlas) {
    let db = TestDb::new("run");
    let api = Api::start(api_args);
    let mut route = page_route();
    if let Some(i) = api_args.iter().position(|a| *a == "--page-size") {
        route["pagination"]["size"] = json!(api_args[i + 1].parse::<u64>().unwrap());
    }
    let atlas = Atlas::new(
        &db,
        &Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route })),
    );
    (db, api, atlas)
}

#[test]
fn multi_day_scrap_loads_exactly_the_api_records_with_spec_hashes() {
    let (db, api, atlas) = setup(&["--per-day", "37", "--page-size", "10"]);
    let id = atlas.create("pedidos", "2025-01-30", "2025-02-03");
    let r = atlas.ok(&["scrap", "run", &id, "--json"]);
    let expected = api.expected("2025-01-30", "2025-02-03");
    assert_eq!(expected, 5 * 37);
    assert_exact(&db, expected, "load");
    // Every stored hash is the SPEC §4 hash of its payload, recomputed here.
    let mut client = db.client();
    let rows = client
        .query(
            &format!("SELECT payload::text, hash_conteudo FROM {TABLE}"),
            &[],
        )
        .unwrap();
    for row in &rows {
        let (payload, hash): (String, String) = (row.get(0), row.get(1));
        assert_eq!(spec_hash(&payload), hash, "hash of {payload}");
    }
    // --json counters equal the table's counts.
    let s = r.json();
    assert_eq!(s["records_fetched"], expected);
    assert_eq!(s["inserted"], expected);
    assert_eq!(s["duplicates"], 0);
    assert_eq!(s["out_of_period"], 0);
    assert_eq!(s["slices_done"], 5);
    assert_eq!(s["slices_failed"], 0);
    assert_eq!(s["status"], "done");
    assert_eq!(s["table"], TABLE);
    assert_eq!(s["pages"], 5 * 4, "4 pages of 10 per day of 37");
    for key in [
        "scrap_id",
        "client",
        "route",
        "from",
        "to",
        "undated",
        "retries",
        "elapsed_secs",
        "records_per_sec",
    ] {
        assert!(s.get(key).is_some(), "--json lacks {key}");
    }
    assert_eq!(s["settings"]["retry_max"], 5);
    // Bookkeeping: every slice done with its counts, the run recorded.
    assert_eq!(db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'done' AND records = 37 AND inserted = 37 AND pages = 4"), 5);
    assert_eq!(db.i64("SELECT count(*) FROM atlas.runs WHERE status = 'done' AND inserted = 185 AND finished_at IS NOT NULL"), 1);
}

#[test]
fn a_second_scrap_of_the_same_period_inserts_nothing() {
    let (db, api, atlas) = setup(&["--per-day", "20", "--page-size", "7"]);
    let first = atlas.create("pedidos", "2025-03-01", "2025-03-03");
    atlas.ok(&["scrap", "run", &first]);
    let second = atlas.create("pedidos", "2025-03-01", "2025-03-03");
    let s = atlas.ok(&["scrap", "run", &second, "--json"]).json();
    let expected = api.expected("2025-03-01", "2025-03-03");
    assert_eq!(s["inserted"], 0);
    assert_eq!(s["duplicates"], expected);
    assert_eq!(s["records_fetched"], expected);
    assert_exact(&db, expected, "load");
}

#[test]
fn rerun_of_a_finished_scrap_does_nothing_and_says_so() {
    let (_db, api, atlas) = setup(&["--per-day", "5", "--page-size", "5"]);
    let id = atlas.create("pedidos", "2025-01-01", "2025-01-02");
    atlas.ok(&["scrap", "run", &id]);
    let before = api.requests();
    let r = atlas.ok(&["scrap", "run", &id]);
    assert!(r.stderr.contains("já concluído"), "{}", r.stderr);
    assert_eq!(api.requests(), before, "no request for a finished scrap");
}

#[test]
fn backpressure_with_tiny_batches_and_channel_loses_nothing() {
    let (db, api, mut atlas) = setup(&["--per-day", "60", "--page-size", "6"]);
    atlas
        .env
        .push(("ATLAS_CHANNEL_CAPACITY".into(), "1".into()));
    let id = atlas.create("pedidos", "2025-05-01", "2025-05-04");
    let s = atlas
        .ok(&[
            "scrap",
            "run",
            &id,
            "--batch-export",
            "1",
            "--writers",
            "1",
            "--threads",
            "6",
            "--json",
        ])
        .json();
    let expected = api.expected("2025-05-01", "2025-05-04");
    assert_exact(&db, expected, "load");
    assert_eq!(s["inserted"], expected);
    assert_eq!(s["settings"]["batch_export"], 1);
    assert_eq!(s["settings"]["writers"], 1);
}

#[test]
fn out_of_period_records_are_counted_not_stored() {
    let (db, api, atlas) = setup(&["--per-day", "9", "--page-size", "4", "--neighbours"]);
    let id = atlas.create("pedidos", "2025-04-10", "2025-04-12");
    let s = atlas.ok(&["scrap", "run", &id, "--json"]).json();
    let expected = api.expected("2025-04-10", "2025-04-12");
    assert_exact(&db, expected, "load");
    // The day before the period and the day after it.
    assert_eq!(s["out_of_period"], 2 * 9);
    assert_eq!(
        db.i64("SELECT sum(out_of_period)::bigint FROM atlas.slices"),
        18
    );
    assert_eq!(
        db.i64(&format!("SELECT count(*) FROM {TABLE} WHERE data_referencia NOT BETWEEN '2025-04-10' AND '2025-04-12'")),
        0
    );
}

#[test]
fn summary_block_progress_lines_and_plain_mode() {
    let (_db, _api, mut atlas) =
        setup(&["--per-day", "30", "--page-size", "5", "--latency-ms", "40"]);
    atlas.env.push(("ATLAS_PROGRESS_SECS".into(), "0.2".into()));
    let id = atlas.create("pedidos", "2025-06-01", "2025-06-02");
    let r = atlas.ok(&["scrap", "run", &id, "--threads", "2"]);
    for line in [
        "✅ Total de registros coletados: 60",
        "📊 Tabela: dados_raw_cliente_2151_pedidos",
        "📅 Período: 2025-06-01 até 2025-06-02",
        "📄 Páginas processadas: 12",
        "🧵 Multithreading: Ativo",
        "⚙️ Configurações aplicadas: Retry=5, Batch=",
        "Inseridos: 60",
    ] {
        assert!(
            r.stdout.contains(line),
            "summary lacks '{line}':\n{}",
            r.stdout
        );
    }
    assert!(
        r.stderr
            .contains("🚀 Iniciando ETL do cliente 2151 - Rota: pedidos"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("📄 Página "),
        "no progress line:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains(" reg/s"), "{}", r.stderr);
    assert!(
        !r.stdout.contains('\u{1b}') && !r.stderr.contains('\u{1b}'),
        "no terminal control codes"
    );

    let id2 = atlas.create("pedidos", "2025-06-03", "2025-06-03");
    let p = atlas.ok(&["--plain", "scrap", "run", &id2]);
    assert!(
        p.stdout.contains("Total de registros coletados: 30"),
        "{}",
        p.stdout
    );
    let has_emoji = |s: &str| s.chars().any(|c| (c as u32) >= 0x2600);
    assert!(
        !has_emoji(&p.stdout),
        "plain stdout has emoji:\n{}",
        p.stdout
    );
    assert!(
        !has_emoji(&p.stderr),
        "plain stderr has emoji:\n{}",
        p.stderr
    );
}

#[test]
fn list_and_show_reflect_the_run() {
    let (_db, _api, atlas) = setup(&["--per-day", "12", "--page-size", "5"]);
    let id = atlas.create("pedidos", "2025-07-01", "2025-07-03");
    let before = atlas.ok(&["scrap", "list"]).stdout;
    assert!(
        before.lines().any(|l| l.starts_with(&format!("{id} "))
            && l.contains("pending")
            && l.contains("0/3")),
        "{before}"
    );
    atlas.ok(&["scrap", "run", &id]);
    let after = atlas.ok(&["scrap", "list", "--status", "done"]).stdout;
    let line = after
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("{after}"));
    assert!(
        line.contains("done") && line.contains("3/3") && line.contains(" 36 "),
        "{line}"
    );
    let show = atlas.ok(&["scrap", "show", &id]).stdout;
    assert!(show.contains("status: done"), "{show}");
    let slice_lines: Vec<&str> = show
        .lines()
        .filter(|l| l.starts_with("2025-07-0"))
        .collect();
    assert_eq!(slice_lines.len(), 3, "{show}");
    for l in slice_lines {
        let cols: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(&cols[1..5], &["done", "3", "12", "12"], "{l}");
    }
}

#[test]
fn undated_records_follow_the_documented_rule() {
    // The route points date_field at a key the records lack: every record is undated.
    let db = TestDb::new("undated");
    let api = Api::start(&["--per-day", "4", "--page-size", "4"]);
    let mut route = page_route();
    route["date_field"] = json!("/sem_data");
    let atlas = Atlas::new(
        &db,
        &Atlas::config(
            &format!("{}/page", api.url),
            json!({ "pedidos": route.clone() }),
        ),
    );
    let id = atlas.create("pedidos", "2025-08-01", "2025-08-02");
    // Default rule `slice_start`: stored, dated by the slice's first day, counted.
    let s = atlas.ok(&["scrap", "run", &id, "--json"]).json();
    assert_eq!(s["undated"], 8);
    assert_eq!(s["inserted"], 8);
    assert_eq!(
        db.i64(&format!(
            "SELECT count(*) FROM {TABLE} WHERE data_referencia::text = payload->>'data_pedido'"
        )),
        8
    );
    let log = std::fs::read_to_string(atlas.path("erros_scraps.log")).expect("error log");
    assert!(log.contains("/sem_data"), "{log}");

    // `fail`: the slices fail with a clear message, exit 1.
    route["undated"] = json!("fail");
    let db2 = TestDb::new("undated_fail");
    let atlas2 = Atlas::new(
        &db2,
        &Atlas::config(
            &format!("{}/page", api.url),
            json!({ "pedidos": route.clone() }),
        ),
    );
    let id2 = atlas2.create("pedidos", "2025-08-01", "2025-08-02");
    let r = atlas2.expect(&["scrap", "run", &id2, "--json"], 1);
    assert_eq!(r.json()["slices_failed"], 2);
    assert!(db2
        .strings("SELECT last_error FROM atlas.slices")
        .iter()
        .all(|e| e.contains("no date")));

    // `skip`: counted, not stored.
    route["undated"] = json!("skip");
    let db3 = TestDb::new("undated_skip");
    let atlas3 = Atlas::new(
        &db3,
        &Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route })),
    );
    let id3 = atlas3.create("pedidos", "2025-08-01", "2025-08-02");
    let s = atlas3.ok(&["scrap", "run", &id3, "--json"]).json();
    assert_eq!(s["undated"], 8);
    assert_eq!(db3.i64(&format!("SELECT count(*) FROM {TABLE}")), 0);
}

#[test]
fn unknown_scrap_id_is_bad_input() {
    let (_db, _api, atlas) = setup(&[]);
    atlas.ok(&["init"]);
    let r = atlas.expect(&["scrap", "run", "424242"], 2);
    assert!(r.stderr.contains("424242"), "{}", r.stderr);
    atlas.expect(&["scrap", "run", "abc"], 2);
    atlas.expect(&["scrap", "run", "1", "--threads", "0"], 2);
}

#[test]
fn proxy_from_the_environment_is_honoured() {
    // A proxy on a closed port: every request fails, so the proxy is in use.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (db, api, mut atlas) = setup(&["--per-day", "3", "--page-size", "3"]);
    let id = atlas.create("pedidos", "2025-09-01", "2025-09-01");
    atlas
        .env
        .push(("HTTP_PROXY".into(), format!("http://{closed}")));
    let r = atlas.expect(&["scrap", "run", &id, "--retry-max", "1"], 1);
    assert_eq!(
        api.requests(),
        0,
        "nothing reached the API directly:\n{}",
        r.stderr
    );
    assert_eq!(db.i64(&format!("SELECT count(*) FROM {TABLE}")), 0);
    // NO_PROXY exempts the API's host: the same run now goes direct and loads.
    atlas.env.push(("NO_PROXY".into(), "127.0.0.1".into()));
    atlas.ok(&["scrap", "run", &id]);
    assert_exact(&db, 3, "load");
}

#[test]
fn a_rerun_takes_over_the_slices_of_a_killed_run_on_the_same_machine_at_once() {
    let (db, api, mut atlas) =
        setup(&["--per-day", "40", "--page-size", "5", "--latency-ms", "30"]);
    // A lease far longer than the test: only the dead-process check can free the slices.
    atlas.env.push(("ATLAS_LEASE_SECS".into(), "600".into()));
    let id = atlas.create("pedidos", "2025-10-01", "2025-10-06");
    let mut child = atlas
        .command(&["scrap", "run", &id, "--threads", "3"])
        .spawn()
        .unwrap();
    wait_for(
        "rows from the first run",
        std::time::Duration::from_secs(30),
        || db.i64(&format!("SELECT count(*) FROM {TABLE}")) > 0,
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'running'") > 0,
        "the killed run held slices"
    );
    let mut rerun = atlas
        .command(&["scrap", "run", &id])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_for(
        "the rerun to finish",
        std::time::Duration::from_secs(60),
        || {
            status = rerun.try_wait().unwrap();
            status.is_some()
        },
    );
    assert_eq!(status.unwrap().code(), Some(0));
    assert_exact(&db, api.expected("2025-10-01", "2025-10-06"), "load");
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.slices WHERE status <> 'done'"),
        0
    );
}

#[test]
fn a_4xx_fails_the_slice_at_once_with_status_and_body() {
    let db = TestDb::new("http404");
    let api = Api::start(&["--per-day", "3", "--page-size", "3"]);
    // No such endpoint kind on the sample API: every request gets a 404.
    let atlas = Atlas::new(
        &db,
        &Atlas::config(
            &format!("{}/nao-existe", api.url),
            json!({ "pedidos": page_route() }),
        ),
    );
    let id = atlas.create("pedidos", "2025-11-01", "2025-11-02");
    let r = atlas.expect(&["scrap", "run", &id, "--json", "--retry-max", "5"], 1);
    assert_eq!(r.json()["slices_failed"], 2);
    assert_eq!(r.json()["retries"], 0, "a 404 is not retried");
    assert_eq!(api.requests(), 2, "one request per slice");
    for e in db.strings("SELECT last_error FROM atlas.slices") {
        assert!(
            e.contains("HTTP 404") && e.contains("erro"),
            "status and start of the body: {e}"
        );
    }
}

#[test]
fn a_closed_stdout_ends_output_quietly() {
    // `atlas … | head -1`: the reader goes away before atlas writes.
    let (_db, _api, atlas) = setup(&[]);
    atlas.ok(&["init"]);
    for args in [&["--help"][..], &["scrap", "list"][..], &["clients"][..]] {
        let mut child = atlas
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn the_client_rate_limit_is_shared_by_all_fetchers() {
    let db = TestDb::new("ratelimit");
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let mut route = page_route();
    route["pagination"]["size"] = json!(5);
    let mut config = Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route }));
    config["clients"]["2151"]["rate_limit_per_sec"] = json!(20);
    let atlas = Atlas::new(&db, &config);
    let id = atlas.create("pedidos", "2025-12-01", "2025-12-15");
    let started = std::time::Instant::now();
    atlas.ok(&["scrap", "run", &id, "--threads", "8"]);
    let elapsed = started.elapsed();
    // 15 slices x 2 pages = 30 requests at 20/s across 8 threads: at most
    // 20 start in any second (a burst of 20 is allowed), so the 21st waits
    // a second after the first answer.
    assert_eq!(api.requests(), 30);
    assert!(
        elapsed >= std::time::Duration::from_secs(1),
        "30 requests in {elapsed:?} break 20/s"
    );
    assert_exact(&db, 150, "load");
}
