//! `atlas verify`: adopts a raw table filled by another tool. It checks the
//! table's structure, recomputes every row's canonical hash and reference
//! date (in parallel, with rayon, over rows read in chunks), and reports the
//! rows whose `hash_conteudo` or `data_referencia` is not what atlas would
//! write and the rows that hold the same record twice. `--fix` makes the
//! table what atlas would have loaded, in batches that each commit whole.
//!
//! Exit: 0 consistent (or made consistent by `--fix`), 1 differences found
//! (or rows that cannot be read), 2 bad input, 3 database.

use super::Context;
use crate::cli::VerifyArgs;
use crate::config::Route;
use crate::dates;
use crate::db;
use crate::exit::{usage, Exit};
use crate::ident::{self, quote};
use crate::json::{self, Json};
use crate::record::sha256_hex;
use crate::report::{decimal, rate, thousands};
use anyhow::{Context as _, Result};
use chrono::NaiveDate;
use postgres::Client;
use rayon::prelude::*;
use serde::Serialize;
use std::io::Write;
use std::time::Instant;

/// Rows read and recomputed at a time: enough to keep every rayon thread
/// busy, small enough that memory stays a few MiB whatever the table.
const CHUNK: i64 = 10_000;
/// Rows changed per committed transaction by `--fix`.
const FIX_BATCH: i64 = 5_000;

/// What one row turned out to be.
struct Checked {
    id: i64,
    /// The canonical hash, or `None` when the payload cannot be read.
    hash: Option<String>,
    hash_differs: bool,
    /// The recomputed date where it differs from `data_referencia`.
    new_date: Option<NaiveDate>,
    /// The record has no date under the route's `date_field`.
    undated: bool,
}

/// The report, as printed and as `--json`.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub table: String,
    pub rows: u64,
    pub hash_differs: u64,
    pub duplicates: u64,
    pub date_differs: u64,
    pub undated: u64,
    pub unreadable: u64,
    pub fixed_hashes: u64,
    pub fixed_dates: u64,
    pub deleted_duplicates: u64,
    pub seconds: f64,
    pub rows_per_sec: f64,
    pub exit_code: u8,
    /// The build that ran (`crate::version::version`).
    pub version: String,
}

pub fn run(ctx: &Context<'_>, a: &VerifyArgs) -> Result<Exit> {
    if a.threads == Some(0) {
        return Err(usage("--threads must be at least 1"));
    }
    let cfg = ctx.config()?;
    let (client, route) = cfg.route(&a.client, &a.route)?;
    let table = ident::raw_table(&client.id, &route.name).map_err(usage)?;
    let mut conn = ctx.database()?.connect()?;
    let exists: bool = conn
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quote(&table)])?
        .get(0);
    if !exists {
        return Err(usage(format!(
            "table {table} does not exist: nothing to verify for client '{}' route '{}'",
            client.id, route.name
        )));
    }
    db::check_raw_table(&mut conn, &table)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.unwrap_or(0))
        .thread_name(|i| format!("verify-{i}"))
        .build()
        .context("cannot start the verify threads")?;

    let style = ctx.style;
    if !a.json {
        style.note("🔎", &format!("Verificando {table}"));
    }
    let started = Instant::now();
    let mut report = Report {
        table: table.clone(),
        version: crate::version::version(),
        ..Report::default()
    };
    scan(&mut conn, &table, route, &pool, &mut report)?;
    report.duplicates = mark_duplicates(&mut conn, &table)?;
    if a.fix {
        fix(&mut conn, &table, &mut report)?;
    }
    let elapsed = started.elapsed();
    report.seconds = (elapsed.as_secs_f64() * 1000.0).round() / 1000.0;
    report.rows_per_sec = (rate(report.rows, elapsed) * 10.0).round() / 10.0;
    // `--fix` goes through every row it found; what it cannot read it leaves.
    let differs = report.hash_differs + report.duplicates + report.date_differs;
    let exit = if (differs > 0 && !a.fix) || report.unreadable > 0 {
        Exit::Failed
    } else {
        Exit::Ok
    };
    report.exit_code = exit.code();
    if a.json {
        crate::outln!("{}", serde_json::to_string(&report)?);
    } else {
        print(&report, a.fix, style);
    }
    Ok(exit)
}

/// Reads the table in chunks of ids, recomputes each chunk in parallel and
/// keeps every row's canonical hash in a temporary table for the
/// duplicate search and the fix.
fn scan(
    conn: &mut Client,
    table: &str,
    route: &Route,
    pool: &rayon::ThreadPool,
    report: &mut Report,
) -> Result<()> {
    conn.batch_execute(
        "CREATE TEMP TABLE atlas_verify (
             id BIGINT PRIMARY KEY,
             hash TEXT,
             hash_differs BOOLEAN NOT NULL,
             new_date DATE,
             duplicate BOOLEAN NOT NULL DEFAULT false
         ) ON COMMIT PRESERVE ROWS",
    )?;
    let read = conn.prepare(&format!(
        "SELECT id, data_referencia, payload::text, hash_conteudo FROM {}
         WHERE id > $1 ORDER BY id LIMIT $2",
        quote(table)
    ))?;
    let mut after = 0i64;
    loop {
        let rows = conn.query(&read, &[&after, &CHUNK])?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        let input: Vec<(i64, NaiveDate, String, Option<String>)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let checked: Vec<Checked> = pool.install(|| {
            input
                .par_iter()
                .with_min_len(256)
                .map(|(id, date, payload, stored)| check(*id, *date, payload, stored, route))
                .collect()
        });
        let mut copy =
            conn.copy_in("COPY atlas_verify (id, hash, hash_differs, new_date) FROM STDIN")?;
        let mut buf = Vec::with_capacity(checked.len() * 96);
        for c in &checked {
            report.rows += 1;
            report.hash_differs += u64::from(c.hash_differs);
            report.date_differs += u64::from(c.new_date.is_some());
            report.undated += u64::from(c.undated);
            report.unreadable += u64::from(c.hash.is_none());
            writeln!(
                buf,
                "{}\t{}\t{}\t{}",
                c.id,
                c.hash.as_deref().unwrap_or("\\N"),
                if c.hash_differs { 't' } else { 'f' },
                c.new_date.map_or("\\N".to_string(), |d| d.to_string()),
            )?;
        }
        copy.write_all(&buf)?;
        copy.finish()?;
    }
    Ok(())
}

/// One row against what atlas would have stored for its payload.
fn check(
    id: i64,
    date: NaiveDate,
    payload: &str,
    stored: &Option<String>,
    route: &Route,
) -> Checked {
    let Ok(rec) = Json::parse(payload.as_bytes()) else {
        return Checked {
            id,
            hash: None,
            hash_differs: false,
            new_date: None,
            undated: false,
        };
    };
    let hash = sha256_hex(json::canonical_sized(&rec, payload.len()).0.as_bytes());
    let (new_date, undated) =
        match dates::record_date(&rec, route.date_field.as_deref(), route.timezone.as_ref()) {
            Ok(d) => ((d != date).then_some(d), false),
            // Dated by its slice when loaded: nothing to recompute from.
            Err(_) => (None, true),
        };
    Checked {
        id,
        hash_differs: stored.as_deref() != Some(hash.as_str()),
        hash: Some(hash),
        new_date,
        undated,
    }
}

/// Marks every row that holds a record already held by an older row
/// (oldest `data_coleta`, then lowest id, is kept) and counts them.
fn mark_duplicates(conn: &mut Client, table: &str) -> Result<u64> {
    let n = conn.execute(
        &format!(
            "UPDATE atlas_verify v SET duplicate = true
             FROM (SELECT v.id, row_number() OVER (
                       PARTITION BY v.hash ORDER BY r.data_coleta, r.id) AS n
                   FROM atlas_verify v JOIN {} r ON r.id = v.id
                   WHERE v.hash IS NOT NULL) d
             WHERE d.id = v.id AND d.n > 1",
            quote(table)
        ),
        &[],
    )?;
    Ok(n)
}

/// Deletes the duplicates first (so a kept row can take the hash a
/// duplicate held), then rewrites hashes and dates. Every batch is one
/// transaction: a kill leaves whole batches done, and a rerun recomputes
/// from what is there.
fn fix(conn: &mut Client, table: &str, report: &mut Report) -> Result<()> {
    let t = quote(table);
    let mut after = 0i64;
    loop {
        let rows = conn.query(
            &format!(
                "WITH b AS (SELECT id FROM atlas_verify WHERE duplicate AND id > $1
                            ORDER BY id LIMIT $2)
                 DELETE FROM {t} r USING b WHERE r.id = b.id RETURNING r.id"
            ),
            &[&after, &FIX_BATCH],
        )?;
        if rows.is_empty() {
            break;
        }
        report.deleted_duplicates += rows.len() as u64;
        after = rows
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .max()
            .unwrap_or(after);
    }
    let mut after = 0i64;
    loop {
        let mut tx = conn.transaction()?;
        // The ids of this batch, fixed before anything changes.
        let batch: Vec<i64> = tx
            .query(
                "SELECT id FROM atlas_verify
                 WHERE NOT duplicate AND hash IS NOT NULL
                   AND (hash_differs OR new_date IS NOT NULL) AND id > $1
                 ORDER BY id LIMIT $2",
                &[&after, &FIX_BATCH],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let Some(&last) = batch.last() else { break };
        // A row loaded since the scan may already hold a kept row's hash:
        // it is the same record, newer, and goes.
        let late = tx.execute(
            &format!(
                "DELETE FROM {t} o USING atlas_verify v, {t} k
                 WHERE v.id = ANY($1) AND v.hash_differs AND k.id = v.id
                   AND o.hash_conteudo = v.hash AND o.id <> k.id AND o.payload = k.payload"
            ),
            &[&batch],
        )?;
        let hashes = tx.execute(
            &format!(
                "UPDATE {t} r SET hash_conteudo = v.hash FROM atlas_verify v
                 WHERE v.id = ANY($1) AND v.hash_differs AND r.id = v.id"
            ),
            &[&batch],
        )?;
        let dates = tx.execute(
            &format!(
                "UPDATE {t} r SET data_referencia = v.new_date FROM atlas_verify v
                 WHERE v.id = ANY($1) AND v.new_date IS NOT NULL AND r.id = v.id"
            ),
            &[&batch],
        )?;
        tx.commit()?;
        report.deleted_duplicates += late;
        report.fixed_hashes += hashes;
        report.fixed_dates += dates;
        after = last;
    }
    Ok(())
}

fn print(r: &Report, fixed: bool, style: crate::report::Style) {
    style.say(
        "📊",
        &format!(
            "Linhas: {} | hash diferente: {} | duplicadas: {} | data diferente: {} | sem data: {} | ilegíveis: {}",
            thousands(r.rows),
            thousands(r.hash_differs),
            thousands(r.duplicates),
            thousands(r.date_differs),
            thousands(r.undated),
            thousands(r.unreadable),
        ),
    );
    if fixed {
        style.say(
            "🔧",
            &format!(
                "Corrigido: {} hashes reescritos | {} duplicadas removidas | {} datas corrigidas",
                thousands(r.fixed_hashes),
                thousands(r.deleted_duplicates),
                thousands(r.fixed_dates),
            ),
        );
    }
    style.say(
        "⏱️",
        &format!(
            "{}s | {} linhas/s",
            decimal(r.seconds),
            decimal(r.rows_per_sec)
        ),
    );
    if r.exit_code == 0 {
        style.say("✅", &format!("Tabela {} consistente", r.table));
    } else if fixed {
        style.say(
            "⚠️",
            &format!("Tabela {}: linhas ilegíveis não foram alteradas", r.table),
        );
    } else {
        style.say(
            "⚠️",
            &format!(
                "Tabela {} difere do que o atlas gravaria: rode com --fix para corrigir",
                r.table
            ),
        );
    }
}
