//! `atlas verify`: adopting a raw table another tool filled (hashes of
//! another serialisation, true duplicates, wrong dates), with and without
//! `--fix`, and a `--fix` killed half-way then run again.

use crate::util::{self, assert_exact, spec_hash, Api, Atlas, TestDb};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;

const TABLE: &str = "dados_raw_cliente_2151_pedidos";

fn verify(atlas: &Atlas, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["verify", "--client", "2151", "--route", "pedidos", "--json"];
    args.extend_from_slice(extra);
    atlas.expect(&args, code).json()
}

/// Every row's hash is the canonical hash of its payload, computed here
/// independently (serde_json, sorted keys, no whitespace).
fn assert_hashes_canonical(db: &TestDb) {
    let rows = db
        .client()
        .query(
            &format!("SELECT payload::text, hash_conteudo FROM {TABLE}"),
            &[],
        )
        .expect("rows");
    for r in rows {
        let (payload, hash): (String, String) = (r.get(0), r.get(1));
        assert_eq!(hash, spec_hash(&payload), "hash of {payload}");
    }
}

/// Rows as the old tool left them: hashed over PostgreSQL's own JSON text
/// (`{"a": 1, "b": 2}`: another serialisation), some records twice with a
/// newer `data_coleta`, some dates off by one. Returns the duplicates, the
/// rows whose date is off, and how many of those are originals.
fn make_legacy(db: &TestDb) -> (i64, i64, i64) {
    let mut c = db.client();
    let off = c
        .execute(
            &format!("UPDATE {TABLE} SET data_referencia = data_referencia - 1 WHERE id % 11 = 0"),
            &[],
        )
        .expect("dates off") as i64;
    c.batch_execute(&format!(
        "UPDATE {TABLE} SET hash_conteudo = encode(sha256(convert_to(payload::text, 'UTF8')), 'hex');
         INSERT INTO {TABLE} (data_coleta, data_referencia, payload, hash_conteudo)
         SELECT data_coleta + interval '1 hour', data_referencia, payload, 'legado-' || id
         FROM {TABLE} WHERE id % 7 = 0;"
    ))
    .expect("legacy rows");
    let dups = db.i64(&format!(
        "SELECT count(*) FROM {TABLE} WHERE hash_conteudo LIKE 'legado-%'"
    ));
    // Copies of a row whose date is off are off too.
    let off_copies = db.i64(&format!(
        "SELECT count(*) FROM {TABLE} WHERE id % 7 = 0 AND id % 11 = 0 AND hash_conteudo NOT LIKE 'legado-%'"
    ));
    (dups, off + off_copies, off)
}

#[test]
fn verify_reports_then_fix_makes_the_table_what_atlas_loads() {
    let api = Api::start(&["--per-day", "40", "--page-size", "20"]);
    let db = TestDb::new("verify");
    let route = util::page_route();
    let atlas = Atlas::new(
        &db,
        &Atlas::config(&format!("{}/page", api.url), json!({ "pedidos": route })),
    );
    let id = atlas.create("pedidos", "2025-03-01", "2025-03-05");
    atlas.ok(&["scrap", "run", &id]);
    let n = api.expected("2025-03-01", "2025-03-05");
    assert_exact(&db, n, "first load");

    // A table atlas loaded itself is consistent.
    let clean = verify(&atlas, &[], 0);
    assert_eq!(clean["rows"], n);
    for k in ["hash_differs", "duplicates", "date_differs", "unreadable"] {
        assert_eq!(clean[k], 0, "{k}: {clean}");
    }

    let max_id = db.i64(&format!("SELECT max(id) FROM {TABLE}"));
    let (dups, off, off_kept) = make_legacy(&db);
    assert!(dups > 0 && off > 0, "the legacy table has work in it");
    let before: Vec<String> = db.strings(&format!("SELECT hash_conteudo FROM {TABLE} ORDER BY id"));
    let report = verify(&atlas, &[], 1);
    assert_eq!(report["table"], TABLE);
    assert_eq!(report["rows"], n + dups);
    assert_eq!(report["hash_differs"], n + dups, "{report}");
    assert_eq!(report["duplicates"], dups, "{report}");
    assert_eq!(report["date_differs"], off, "{report}");
    assert_eq!(report["deleted_duplicates"], 0);
    assert_eq!(report["exit_code"], 1);
    // Without --fix nothing changes.
    assert_eq!(
        db.strings(&format!("SELECT hash_conteudo FROM {TABLE} ORDER BY id")),
        before
    );

    // The plain report says what to do.
    let plain = atlas.expect(
        &[
            "--plain", "verify", "--client", "2151", "--route", "pedidos",
        ],
        1,
    );
    assert!(plain.stdout.contains("--fix"), "{}", plain.stdout);

    let fixed = verify(&atlas, &["--fix", "--threads", "2"], 0);
    assert_eq!(fixed["deleted_duplicates"], dups, "{fixed}");
    assert_eq!(fixed["fixed_hashes"], n, "{fixed}");
    assert_eq!(fixed["fixed_dates"], off_kept, "{fixed}");
    // The oldest copy of each record was kept.
    assert_eq!(
        db.i64(&format!("SELECT count(*) FROM {TABLE} WHERE id > {max_id}")),
        0
    );
    assert_exact(&db, n, "after --fix");
    assert_hashes_canonical(&db);
    let again = verify(&atlas, &[], 0);
    assert_eq!(again["hash_differs"], 0, "{again}");
    assert_eq!(again["duplicates"], 0, "{again}");
    assert_eq!(again["date_differs"], 0, "{again}");

    // atlas now finds every record already there.
    let id = atlas.create("pedidos", "2025-03-01", "2025-03-05");
    let run = atlas.ok(&["scrap", "run", &id, "--json"]).json();
    assert_eq!(run["inserted"], 0, "{run}");
    assert_eq!(run["duplicates"], n, "{run}");
    assert_exact(&db, n, "after a load over the fixed table");
}

#[test]
fn verify_refuses_what_it_cannot_check() {
    let db = TestDb::new("verifybad");
    let atlas = Atlas::new(
        &db,
        &Atlas::config(
            "http://127.0.0.1:9/page",
            json!({ "pedidos": util::page_route() }),
        ),
    );
    let r = atlas.expect(&["verify", "--client", "2151", "--route", "pedidos"], 2);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    let r = atlas.expect(&["verify", "--client", "2151", "--route", "nada"], 2);
    assert!(r.stderr.contains("no route 'nada'"), "{}", r.stderr);
    db.client()
        .batch_execute(&format!(
            "CREATE TABLE {TABLE} (id BIGSERIAL PRIMARY KEY, payload JSONB, hash_conteudo TEXT)"
        ))
        .expect("odd table");
    let r = atlas.expect(&["verify", "--client", "2151", "--route", "pedidos"], 2);
    assert!(r.stderr.contains("not an atlas raw table"), "{}", r.stderr);
    let r = atlas.expect(
        &[
            "verify",
            "--client",
            "2151",
            "--route",
            "pedidos",
            "--threads",
            "0",
        ],
        2,
    );
    assert!(r.stderr.contains("--threads"), "{}", r.stderr);
}

#[test]
fn a_fix_killed_half_way_is_finished_by_the_next_one() {
    let db = TestDb::new("verifykill");
    let route = util::page_route();
    let atlas = Atlas::new(
        &db,
        &Atlas::config("http://127.0.0.1:9/page", json!({ "pedidos": route })),
    );
    // The seed's DDL, filled the way the old tool did: 120k records, every
    // 5th twice, hashed over another serialisation.
    let n = 120_000i64;
    db.client()
        .batch_execute(&format!(
            "CREATE TABLE {TABLE} (
                 id BIGSERIAL PRIMARY KEY,
                 data_coleta TIMESTAMP DEFAULT NOW() NOT NULL,
                 data_referencia DATE NOT NULL,
                 payload JSONB NOT NULL,
                 hash_conteudo TEXT,
                 CONSTRAINT uq_{TABLE}_hash UNIQUE (hash_conteudo));
             INSERT INTO {TABLE} (data_coleta, data_referencia, payload, hash_conteudo)
             SELECT timestamp '2025-01-01' + g * interval '1 second',
                    date '2025-01-01' + (g % 60),
                    jsonb_build_object('id', g, 'data_pedido', to_char(date '2025-01-01' + (g % 60), 'YYYY-MM-DD'),
                                       'valor', g * 1.5, 'cliente', 'Cliente ' || g, 'itens', jsonb_build_array(g, g + 1)),
                    NULL
             FROM generate_series(1, {n}) g;
             UPDATE {TABLE} SET hash_conteudo = encode(sha256(convert_to(payload::text, 'UTF8')), 'hex');
             INSERT INTO {TABLE} (data_coleta, data_referencia, payload, hash_conteudo)
             SELECT data_coleta + interval '1 day', data_referencia, payload, 'legado-' || id
             FROM {TABLE} WHERE id % 5 = 0;"
        ))
        .expect("legacy table");
    let dups = n / 5;
    let mut child = atlas
        .command(&["verify", "--client", "2151", "--route", "pedidos", "--fix"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start verify --fix");
    // Killed once the fix has started changing rows (or at once if it
    // already ended: the rerun must then find nothing to do).
    util::wait_for("the fix to start", Duration::from_secs(120), || {
        child.try_wait().expect("wait").is_some()
            || db.i64(&format!("SELECT count(*) FROM {TABLE}")) < n + dups
    });
    let ended_alone = child.try_wait().expect("wait").is_some();
    let _ = child.kill();
    let _ = child.wait();
    assert!(!ended_alone, "the fix ended before it could be killed");
    // Killed half-way, between batches or inside one: whole batches only.
    let left = db.i64(&format!("SELECT count(*) FROM {TABLE}"));
    let legacy = db.i64(&format!(
        "SELECT count(*) FROM {TABLE} WHERE hash_conteudo = encode(sha256(convert_to(payload::text, 'UTF8')), 'hex')"
    ));
    assert!(
        left > n || legacy > 0,
        "killed half-way: {left} rows, {legacy} legacy hashes"
    );
    assert!(
        left == n || (n + dups - left) % 5_000 == 0,
        "deletes commit by whole batches"
    );
    assert_eq!(legacy % 5_000, 0, "hash rewrites commit by whole batches");
    let r = verify(&atlas, &["--fix"], 0);
    assert_eq!(
        r["rows"].as_i64().unwrap() - r["deleted_duplicates"].as_i64().unwrap(),
        n,
        "{r}"
    );
    assert_exact(&db, n, "after the second --fix");
    // The oldest copies were kept: the originals, ids 1..=n.
    assert_eq!(
        db.i64(&format!("SELECT count(*) FROM {TABLE} WHERE id > {n}")),
        0
    );
    assert_hashes_canonical(&db);
    let again = verify(&atlas, &[], 0);
    assert_eq!(again["rows"], n);
}
