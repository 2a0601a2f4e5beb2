//! A database across the network: PostgreSQL behind `atlas-latency-proxy`
//! (5 ms each way), a load, a kill -9 and its rerun, and the connection cap;
//! the table must hold exactly the API's records.

use crate::util::{self, spec_hash, Api, Atlas, Bg, TestDb};
use serde_json::json;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TABLE: &str = "dados_raw_cliente_2151_pedidos";
const DAYS: [&str; 4] = ["2025-05-01", "2025-05-02", "2025-05-03", "2025-05-04"];
const DELAY_MS: &str = "5";

/// `atlas-latency-proxy` in front of the test server, killed on drop.
struct Proxy {
    child: Child,
    /// `127.0.0.1:PORT`
    addr: String,
}

impl Proxy {
    fn start(upstream: &str, delay_ms: &str) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_atlas-latency-proxy"))
            .args(["127.0.0.1:0", upstream, delay_ms])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start atlas-latency-proxy");
        let addr = util::listen_line(&mut child);
        Proxy { child, addr }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A load whose database is 5 ms away: the API, the test database, the
/// proxy, and atlas configured to reach the database through it.
struct Far {
    api: Api,
    db: TestDb,
    atlas: Atlas,
    _proxy: Proxy,
}

impl Far {
    fn new(tag: &str, api_latency_ms: &str) -> Far {
        let api = Api::start(&["--per-day", "400", "--latency-ms", api_latency_ms]);
        let db = TestDb::new(tag);
        let url = url::Url::parse(&db.url).expect("test database URL");
        let upstream = format!(
            "{}:{}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5432)
        );
        let proxy = Proxy::start(&upstream, DELAY_MS);
        let cfg = Atlas::config(
            &format!("{}/page", api.url),
            json!({ "pedidos": util::page_route() }),
        );
        let mut atlas = Atlas::new(&db, &cfg);
        let (host, port) = proxy.addr.rsplit_once(':').expect("host:port");
        let mut far = url;
        far.set_host(Some(host)).expect("host");
        far.set_port(Some(port.parse().expect("port")))
            .expect("port");
        atlas.db_url = far.to_string();
        atlas.env.push(("ATLAS_LEASE_SECS".into(), "2".into()));
        Far {
            api,
            db,
            atlas,
            _proxy: proxy,
        }
    }

    fn create(&self) -> String {
        self.atlas.create("pedidos", DAYS[0], DAYS[DAYS.len() - 1])
    }

    /// The hashes of every record the API holds for the days (SPEC §4).
    fn truth(&self) -> BTreeSet<String> {
        let mut all = BTreeSet::new();
        for day in DAYS {
            let body = self.api.get(&format!(
                "/page/pedidos?data_inicial={day}&data_final={day}&page=1&por_pagina=10000"
            ));
            let records = body["data"].as_array().expect("data array");
            assert_eq!(records.len() as i64, self.api.expected(day, day));
            all.extend(
                records
                    .iter()
                    .map(|r| spec_hash(&serde_json::to_string(r).unwrap())),
            );
        }
        all
    }

    fn rows(&self) -> i64 {
        self.db.i64(&format!("SELECT count(*) FROM {TABLE}"))
    }

    /// The table holds exactly the API's records: as many rows as
    /// distinct hashes, and those hashes are the API's.
    fn assert_exactly_the_api(&self, what: &str) {
        let truth = self.truth();
        util::assert_exact(&self.db, truth.len() as i64, what);
        let stored: BTreeSet<String> = self
            .db
            .strings(&format!("SELECT hash_conteudo FROM {TABLE}"))
            .into_iter()
            .collect();
        assert!(stored == truth, "{what}: the stored hashes are the API's");
        let counted = self.db.i64(
            "SELECT coalesce(sum(inserted), 0)::bigint FROM atlas.slices WHERE status = 'done'",
        );
        assert_eq!(
            counted,
            truth.len() as i64,
            "{what}: the slices' own counts"
        );
    }
}

#[test]
fn a_load_with_the_database_across_the_network_is_exact_and_adapts() {
    let far = Far::new("slow_db_load", "0");
    let id = far.create();
    let s = far.atlas.ok(&["scrap", "run", &id, "--json"]).json();
    assert_eq!(s["slices_done"].as_i64(), Some(DAYS.len() as i64), "{s}");
    assert_eq!(s["duplicates"].as_i64(), Some(0), "{s}");
    far.assert_exactly_the_api("load through the proxy");
    // 10 ms per round trip: bigger batches and more writers than the defaults.
    assert!(s["settings"]["batch_export"].as_i64() > Some(2000), "{s}");
    assert!(s["settings"]["writers"].as_i64() > Some(2), "{s}");
    // A rerun of the same period through the proxy: every row a duplicate.
    let again = far.create();
    let s = far.atlas.ok(&["scrap", "run", &again, "--json"]).json();
    assert_eq!(
        (s["inserted"].as_i64(), s["duplicates"].as_i64()),
        (Some(0), Some(1600)),
        "{s}"
    );
}

#[test]
fn a_kill9_with_the_database_across_the_network_then_a_rerun_is_exact() {
    // 32 pages of 50 at 100 ms each with 2 fetchers: killed mid-run.
    let far = Far::new("slow_db_kill", "100");
    let id = far.create();
    let mut bg = Bg::spawn(
        &far.atlas,
        &["scrap", "run", &id, "--json", "--threads", "2"],
        "killed",
    );
    util::wait_for("some committed rows", Duration::from_secs(60), || {
        assert!(bg.running(), "the run ended first: {}", bg.stderr());
        far.rows() > 0
    });
    bg.kill9();
    let killed_with = far.rows();
    assert!(killed_with < 1600, "killed before the end: {killed_with}");
    let s = far.atlas.ok(&["scrap", "run", &id, "--json"]).json();
    assert_eq!(s["slices_done"].as_i64(), Some(DAYS.len() as i64), "{s}");
    far.assert_exactly_the_api("kill -9 and rerun through the proxy");
}

#[test]
fn max_db_connections_caps_the_writers_and_is_range_checked() {
    let far = Far::new("slow_db_cap", "0");
    let id = far.create();
    let s = far
        .atlas
        .ok(&["scrap", "run", &id, "--json", "--max-db-connections", "4"])
        .json();
    assert_eq!(s["settings"]["writers"].as_i64(), Some(2), "{s}");
    far.assert_exactly_the_api("a pool of 4");
    let r = far
        .atlas
        .expect(&["scrap", "run", &id, "--max-db-connections", "3"], 2);
    assert!(
        r.stderr
            .contains("max_db_connections: must be between 4 and 1000"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_worker_stopped_past_its_lease_leaves_its_slices_to_the_next_and_nothing_doubles() {
    // A is stopped (SIGSTOP) mid-load until its 2 s leases expire; B takes
    // its slices over; A resumes, and its batches of slices no longer its
    // own are rolled back, not written nor counted.
    let far = Far::new("slow_db_stop", "50");
    let id = far.create();
    let mut a = Bg::spawn(
        &far.atlas,
        &["scrap", "run", &id, "--json", "--threads", "2"],
        "a",
    );
    util::wait_for("some committed rows", Duration::from_secs(60), || {
        assert!(a.running(), "A ended first: {}", a.stderr());
        far.rows() > 0
    });
    a.signal("STOP");
    let mut b = Bg::spawn(&far.atlas, &["scrap", "run", &id, "--json"], "b");
    util::wait_for("B took a slice over", Duration::from_secs(60), || {
        far.db
            .i64("SELECT count(*) FROM atlas.slices WHERE attempts >= 2")
            > 0
    });
    a.signal("CONT");
    let ra = a.finish(Duration::from_secs(120));
    let rb = b.finish(Duration::from_secs(120));
    assert!(
        ra.code != 101 && rb.code != 101,
        "no panic: {}\n{}",
        ra.stderr,
        rb.stderr
    );
    // Whatever either left (a slice A released after B's end), a last run
    // finishes; then the table and the slices' counts are exact.
    far.atlas.ok(&["scrap", "run", &id, "--json"]);
    far.assert_exactly_the_api("a stopped worker's slices taken over");
}
