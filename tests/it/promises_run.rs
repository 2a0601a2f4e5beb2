//! Every documented promise true (issue 11), runs: exit 2 changes nothing, the
//! summary says how a run ended, killed runs are closed as aborted, dead
//! workers' slices are taken over before waiting, counters equal the table,
//! `--json` always carries its keys, the sync lock cannot collide, and the
//! smaller findings (strict dates, zero-record warning, `check --date`,
//! which signal stopped a run, the `scrap list` column).

use crate::util::{self, sized_route, Api, Atlas, Bg, Run, TestDb};
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) const TABLE: &str = "dados_raw_cliente_2151_pedidos";
pub(crate) const FROM: &str = "2025-03-01";
pub(crate) const TO: &str = "2025-03-06";

/// Keys the README promises in every `scrap run` / `sync` `--json` object.
pub(crate) const JSON_KEYS: &[&str] = &[
    "scrap_id",
    "run_id",
    "client",
    "route",
    "table",
    "from",
    "to",
    "status",
    "records_fetched",
    "inserted",
    "duplicates",
    "out_of_period",
    "undated",
    "pages",
    "slices_done",
    "slices_failed",
    "slices_total",
    "retries",
    "elapsed_secs",
    "records_per_sec",
    "exit_code",
    "settings",
];

pub(crate) fn config(api_url: &str) -> Value {
    Atlas::config(
        &format!("{api_url}/page"),
        json!({ "pedidos": sized_route(5) }),
    )
}

pub(crate) fn new_atlas(db: &TestDb, cfg: &Value) -> Atlas {
    let mut atlas = Atlas::new(db, cfg);
    atlas.env.push(("ATLAS_TIMEOUT_SECS".into(), "5".into()));
    atlas
}

pub(crate) fn set_env(atlas: &mut Atlas, k: &str, v: &str) {
    atlas.env.retain(|(key, _)| key != k);
    atlas.env.push((k.into(), v.into()));
}

pub(crate) fn show(r: &Run) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.stdout, r.stderr
    )
}

pub(crate) fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
}

pub(crate) fn table_exists(db: &TestDb) -> bool {
    db.i64(&format!(
        "SELECT count(*) FROM pg_tables WHERE tablename = '{TABLE}'"
    )) > 0
}

/// A slow API (40 ms a request, 6 pages a day of 5 records) and 2 fetchers
/// with 2 s leases: a run lasts a few seconds, long enough to hit it.
pub(crate) fn slow(tag: &str) -> (Api, TestDb, Atlas, String) {
    let api = Api::start(&["--per-day", "30", "--page-size", "10", "--latency-ms", "40"]);
    let db = TestDb::new(tag);
    let mut atlas = new_atlas(&db, &config(&api.url));
    set_env(&mut atlas, "ATLAS_THREADS", "2");
    set_env(&mut atlas, "ATLAS_LEASE_SECS", "2");
    let id = atlas.create("pedidos", FROM, TO);
    (api, db, atlas, id)
}

pub(crate) fn rows(db: &TestDb) -> i64 {
    db.i64(&format!("SELECT count(*) FROM {TABLE}"))
}

pub(crate) fn wait_rows(db: &TestDb, bg: &mut Bg, n: i64) {
    util::wait_for("rows committed", Duration::from_secs(20), || {
        assert!(bg.running(), "the run ended first\n{}", bg.stderr());
        rows(db) > n
    });
}

/// Waits until no backend of the killed process is left.
pub(crate) fn backends_gone(db: &TestDb) {
    let mut c = db.client();
    util::wait_for("killed backends gone", Duration::from_secs(10), || {
        c.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'atlas'",
            &[&db.name],
        )
        .map(|r| r.get::<_, i64>(0) == 0)
        .unwrap_or(false)
    });
}

/// Every counter of the ledger agrees with the raw table.
pub(crate) fn assert_counters_true(db: &TestDb, what: &str) {
    let n = rows(db);
    assert_eq!(
        db.i64("SELECT coalesce(sum(inserted), 0)::bigint FROM atlas.slices"),
        n,
        "{what}: slices' inserted must add up to the table's rows"
    );
    assert_eq!(
        db.i64("SELECT coalesce(sum(inserted), 0)::bigint FROM atlas.runs"),
        n,
        "{what}: runs' inserted must add up to the table's rows"
    );
}

// ------------------------------------------------------------ 6, 9, 17: killed runs

#[test]
pub(crate) fn a_killed_run_is_closed_as_aborted_and_its_slices_taken_over_at_once() {
    let (_api, db, atlas, id) = slow("prom_abort");
    let mut bg = Bg::spawn(&atlas, &["scrap", "run", &id], "killed");
    wait_rows(&db, &mut bg, 0);
    bg.kill9();
    backends_gone(&db);
    let killed_run = db.i64("SELECT max(id) FROM atlas.runs");

    // Before any rerun, `scrap show` must not call a dead process's run running.
    let s = atlas.ok(&["scrap", "show", &id]);
    let run_line = s
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{killed_run} ")))
        .unwrap_or_else(|| panic!("run {killed_run} in scrap show:\n{}", s.stdout))
        .to_string();
    assert!(
        run_line.contains("aborted") && !run_line.contains("running"),
        "scrap show: {run_line}"
    );

    let r = atlas.ok(&["scrap", "run", &id, "--json"]);
    assert!(
        !r.stderr.contains("Aguardando"),
        "a dead worker's slices are not waited for: {}",
        show(&r)
    );
    assert!(
        r.stderr.contains("retomada"),
        "the rerun says it took slices over: {}",
        show(&r)
    );
    assert_eq!(
        db.strings(&format!(
            "SELECT status || ':' || (finished_at IS NOT NULL) FROM atlas.runs WHERE id = {killed_run}"
        )),
        vec!["aborted:true".to_string()]
    );
    assert_eq!(
        db.i64("SELECT count(*) FROM atlas.runs WHERE status = 'running'"),
        0
    );
    assert_counters_true(&db, "after kill -9 and rerun");
}

#[test]
pub(crate) fn repeated_kills_do_not_pile_up_running_slices() {
    let (_api, db, atlas, id) = slow("prom_pile");
    for round in 0..3 {
        let mut bg = Bg::spawn(&atlas, &["scrap", "run", &id], &format!("k{round}"));
        let before = rows(&db);
        wait_rows(&db, &mut bg, before);
        bg.kill9();
        backends_gone(&db);
        let running = db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'running'");
        assert!(
            running <= 2,
            "round {round}: {running} slices left running (2 fetchers): dead workers' slices must be taken over first"
        );
    }
    let r = atlas.ok(&["scrap", "run", &id, "--json"]);
    assert_eq!(r.json()["slices_failed"], 0);
    assert_counters_true(&db, "after three kills");
}

// ------------------------------------------------------------ 8: the summary says how a run ended

#[test]
pub(crate) fn a_failed_run_says_so_in_its_first_line() {
    let api = Api::start(&[
        "--per-day",
        "10",
        "--page-size",
        "5",
        "--fail-first",
        "100",
        "--fault-kinds",
        "500",
    ]);
    let db = TestDb::new("prom_failsum");
    let mut atlas = new_atlas(&db, &config(&api.url));
    set_env(&mut atlas, "ATLAS_RETRY_MAX", "2");
    let id = atlas.create("pedidos", FROM, "2025-03-02");
    let r = atlas.expect(&["scrap", "run", &id], 1);
    assert_eq!(
        first_line(&r.stdout),
        format!("❌ Scrap {id} terminou com falhas"),
        "{}",
        show(&r)
    );
    assert!(
        r.stdout.contains("com falha: 2"),
        "true failed count: {}",
        show(&r)
    );
    assert!(!r.stdout.contains("✅"), "{}", show(&r));
}

#[test]
pub(crate) fn refused_credentials_say_so_with_true_counters() {
    let api = Api::bearer("right");
    let db = TestDb::new("prom_authsum");
    let mut cfg = config(&api.url);
    cfg["clients"]["2151"]["auth"] = json!({ "type": "bearer", "token_env": "ATLAS_T_TOKEN" });
    let mut atlas = new_atlas(&db, &cfg);
    set_env(&mut atlas, "ATLAS_T_TOKEN", "wrong");
    let id = atlas.create("pedidos", FROM, "2025-03-02");
    let r = atlas.expect(&["scrap", "run", &id], 3);
    assert!(
        first_line(&r.stdout).starts_with("⛔ Credenciais recusadas"),
        "{}",
        show(&r)
    );
    let failed = db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'failed'");
    assert!(failed >= 1, "the refused slice is failed");
    assert!(
        r.stdout.contains(&format!("com falha: {failed}")),
        "summary counts {failed} failed slices: {}",
        show(&r)
    );
    let j = atlas.expect(&["scrap", "run", &id, "--json"], 3).json();
    assert_eq!(j["status"], "auth_refused", "{j}");
}

#[test]
pub(crate) fn an_interrupted_run_says_which_signal_stopped_it() {
    for (sig, name) in [("INT", "SIGINT"), ("TERM", "SIGTERM")] {
        let (_api, db, atlas, id) = slow(&format!("prom_sig{}", sig.to_lowercase()));
        let mut bg = Bg::spawn(&atlas, &["scrap", "run", &id], "sig");
        wait_rows(&db, &mut bg, 0);
        bg.signal(sig);
        let r = bg.finish(Duration::from_secs(20));
        assert_eq!(r.code, 130, "{sig}: {}", show(&r));
        assert!(
            first_line(&r.stdout).starts_with("⏹️ Interrompido"),
            "{sig}: {}",
            show(&r)
        );
        assert!(r.stderr.contains(name), "{sig} named: {}", show(&r));
        if sig == "TERM" {
            assert!(
                !r.stderr.contains("Ctrl-C"),
                "SIGTERM is not Ctrl-C: {}",
                show(&r)
            );
        }
        assert_eq!(
            db.i64("SELECT count(*) FROM atlas.slices WHERE status = 'running'"),
            0,
            "{sig}: slices released"
        );
        assert_counters_true(&db, sig);
    }
}

#[test]
pub(crate) fn a_run_whose_lease_expired_on_another_machine_is_shown_aborted() {
    let api = Api::start(&["--per-day", "10", "--page-size", "5"]);
    let db = TestDb::new("prom_remote");
    let atlas = new_atlas(&db, &config(&api.url));
    let id = atlas.create("pedidos", FROM, "2025-03-02");
    let mut c = db.client();
    let insert = |c: &mut postgres::Client, worker: &str, lease: &str| -> i64 {
        c.query_one(
            &format!(
                "INSERT INTO atlas.runs (scrap_id, worker, lease_until)
                 VALUES ({id}, $1, now() + interval '{lease}') RETURNING id"
            ),
            &[&worker],
        )
        .expect("insert run")
        .get(0)
    };
    let expired = insert(
        &mut c,
        "outra-maquina:0123456789ab:4026531836:4242:00ab",
        "-5 seconds",
    );
    let live = insert(
        &mut c,
        "outra-maquina:0123456789ab:4026531836:4243:00ac",
        "1 hour",
    );
    atlas.ok(&["scrap", "show", &id]);
    assert_eq!(
        db.strings(&format!(
            "SELECT status || ':' || (finished_at IS NOT NULL) FROM atlas.runs WHERE id IN ({expired}, {live}) ORDER BY id"
        )),
        vec!["aborted:true".to_string(), "running:false".to_string()],
        "only the run whose own lease expired is closed"
    );
}
