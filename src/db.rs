//! PostgreSQL access: connections and pool, the control-schema migrations
//! from `sql/`, raw tables, and the batch insert of the load path.

use crate::exit::{env_error, usage};
use crate::ident::{date_index, quote, unique_constraint};
use crate::record::Row;
use crate::retry::Backoff;
use anyhow::{Context, Result};
use bytes::BytesMut;
use chrono::NaiveDate;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::{Client, GenericClient, Statement, Transaction};
use r2d2_postgres::PostgresConnectionManager;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

pub type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;
pub type PooledConn = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// The control-schema migrations, in order. A unit test checks this list
/// against the files in `sql/`, so a new file cannot be forgotten.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("001_control.sql", include_str!("../sql/001_control.sql")),
    (
        "002_sync_pairs.sql",
        include_str!("../sql/002_sync_pairs.sql"),
    ),
    (
        "003_run_lease.sql",
        include_str!("../sql/003_run_lease.sql"),
    ),
    (
        "004_oauth_tokens.sql",
        include_str!("../sql/004_oauth_tokens.sql"),
    ),
    ("005_fleet.sql", include_str!("../sql/005_fleet.sql")),
    (
        "006_rate_shares.sql",
        include_str!("../sql/006_rate_shares.sql"),
    ),
    (
        "007_run_version.sql",
        include_str!("../sql/007_run_version.sql"),
    ),
];

/// Key of the advisory lock that serialises `atlas init` across processes.
const INIT_LOCK: i64 = 0x6174_6c61_7300_0001;

/// A database URL, parsed once; `Display` shows no password.
#[derive(Clone)]
pub struct Db {
    config: postgres::Config,
    tls: MakeRustlsConnect,
}

impl std::fmt::Display for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = match self.config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres");
        write!(f, "{host}:{port}/{db}")
    }
}

impl Db {
    pub fn parse(url: &str) -> Result<Db> {
        let (pg_url, tls) =
            crate::tls::split(url).map_err(|e| usage(format!("invalid database URL: {e}")))?;
        let tls = crate::tls::connector(&tls).map_err(|e| usage(format!("database TLS: {e}")))?;
        let mut config = postgres::Config::from_str(&pg_url).map_err(|e| {
            usage(format!(
                "invalid database URL: {}",
                redact_pg_error(&with_causes(&e), url)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("atlas");
        Ok(Db { config, tls })
    }

    /// One connection, for commands that need no pool.
    pub fn connect(&self) -> Result<Client> {
        self.config.connect(self.tls.clone()).map_err(|e| {
            env_error(format!(
                "cannot connect to PostgreSQL at {self}: {}",
                with_causes(&e)
            ))
        })
    }

    /// A pool of `size` connections. Connections are opened lazily by r2d2's
    /// own threads; the first `get` says whether the server is reachable.
    pub fn pool(&self, size: u32) -> Result<Pool> {
        let manager = PostgresConnectionManager::new(self.config.clone(), self.tls.clone());
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(0))
            .connection_timeout(Duration::from_secs(10))
            // No probe round trip per checkout (it cost one per ledger call,
            // ten per pair of a fleet, 10 ms each with the database 10 ms
            // away): a connection found broken by its statement is dropped
            // on return, and the statement retried on another.
            .test_on_check_out(false)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        pool.get().map_err(|e| {
            env_error(format!(
                "cannot connect to PostgreSQL at {self}: {}",
                with_causes(&e)
            ))
        })?;
        Ok(pool)
    }
}

/// An error and its causes on one line (postgres' `Display` omits them,
/// and a TLS failure says why only in its source).
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

// Error texts may echo parts of the URL: never its password.
fn redact_pg_error(msg: &str, url: &str) -> String {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    {
        Some(p) if !p.is_empty() => msg.replace(&p, "***"),
        _ => msg.to_string(),
    }
}

/// Applies the pending migrations, each in its own transaction, under an
/// advisory lock so concurrent `atlas init` runs apply each file once.
/// Returns the names applied now.
pub fn migrate(client: &mut Client) -> Result<Vec<&'static str>> {
    client.execute("SELECT pg_advisory_lock($1)", &[&INIT_LOCK])?;
    let result = apply_migrations(client);
    // Unlock even when a migration failed; the session ends soon anyway.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&INIT_LOCK]);
    result
}

fn apply_migrations(client: &mut Client) -> Result<Vec<&'static str>> {
    client.batch_execute(
        "SET client_min_messages = warning;
         CREATE SCHEMA IF NOT EXISTS atlas;
         CREATE TABLE IF NOT EXISTS atlas.migrations (
             name TEXT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );",
    )?;
    let mut applied = Vec::new();
    for (name, sql) in MIGRATIONS {
        let mut tx = client.transaction()?;
        let done = tx
            .query_opt("SELECT 1 FROM atlas.migrations WHERE name = $1", &[name])?
            .is_some();
        if !done {
            tx.batch_execute(sql)
                .with_context(|| format!("migration {name}"))?;
            tx.execute("INSERT INTO atlas.migrations (name) VALUES ($1)", &[name])?;
            applied.push(*name);
        }
        tx.commit()?;
    }
    Ok(applied)
}

/// Refuses to work on a database where `atlas init` has not run (or is behind).
pub fn require_schema(client: &mut impl GenericClient) -> Result<()> {
    let exists: bool = client
        .query_one("SELECT to_regclass('atlas.migrations') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Err(usage(
            "the control schema is missing: run `atlas init` on this database first",
        ));
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM atlas.migrations", &[])?
        .get(0);
    if (n as usize) < MIGRATIONS.len() {
        return Err(usage(
            "the control schema is older than this atlas: run `atlas init` to upgrade it",
        ));
    }
    Ok(())
}

/// Checks that an existing raw table fits; creates a missing one (exactly
/// the old tool's columns and constraint, and its `data_referencia` index)
/// when `create`, else leaves it missing. Whether it exists now.
pub fn ensure_raw_table(tx: &mut Transaction<'_>, table: &str, create: bool) -> Result<bool> {
    // Two creates of the same table at once would race on the catalog.
    tx.execute_typed(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[(&table, Type::TEXT)],
    )?;
    if raw_table_present(tx, table)? {
        return Ok(true);
    }
    if !create {
        return Ok(false);
    }
    let t = quote(table);
    tx.batch_execute(&format!(
        "CREATE TABLE {t} (
    id BIGSERIAL PRIMARY KEY,
    data_coleta TIMESTAMP DEFAULT NOW() NOT NULL,
    data_referencia DATE NOT NULL,
    payload JSONB NOT NULL,
    hash_conteudo TEXT,
    CONSTRAINT {c} UNIQUE (hash_conteudo)
);
CREATE INDEX {i} ON {t} (data_referencia);",
        c = quote(&unique_constraint(table)),
        i = quote(&date_index(table)),
    ))?;
    Ok(true)
}

/// Whether a relation of that name is on the search path.
fn table_exists(c: &mut impl GenericClient, table: &str) -> Result<bool> {
    let row = c.query_typed_one(
        "SELECT to_regclass($1) IS NOT NULL",
        &[(&quote(table), Type::TEXT)],
    )?;
    Ok(row.get(0))
}

/// Creates the raw table if it is missing, in a transaction of its own: a
/// scrap's table is created after the scrap by `sync --all`, which may
/// have been stopped in between.
pub fn create_raw_table_if_missing(conn: &mut Client, table: &str) -> Result<()> {
    if table_exists(conn, table)? {
        return Ok(());
    }
    let mut create = || -> Result<()> {
        let mut tx = conn.transaction()?;
        ensure_raw_table(&mut tx, table, true)?;
        Ok(tx.commit()?)
    };
    match create() {
        // Another process created it while this one waited for the lock
        // (this session's catalog cache still said it was missing): a new
        // transaction sees it, and checks it.
        Err(e) if sql_state(&e) == Some(&SqlState::DUPLICATE_TABLE) => create(),
        other => other,
    }
}

/// The SQLSTATE of a database error, if that is what `e` is.
fn sql_state(e: &anyhow::Error) -> Option<&SqlState> {
    e.chain()
        .find_map(|c| c.downcast_ref::<postgres::Error>())
        .and_then(postgres::Error::code)
}

/// Checks the raw table when it exists (a missing one is created later):
/// a table of that name that is not a raw table is refused before a scrap
/// or a run of it is written.
pub fn check_raw_table_if_present(conn: &mut Client, table: &str) -> Result<()> {
    raw_table_present(conn, table).map(|_| ())
}

/// Checks that an existing table has the raw table's columns and unique hash.
pub fn check_raw_table(tx: &mut impl GenericClient, table: &str) -> Result<()> {
    if !raw_table_present(tx, table)? {
        return Err(usage(format!("table {table} does not exist")));
    }
    Ok(())
}

/// Whether `table` exists, checked to be a raw table when it does (its
/// columns and unique hash, exit 2 otherwise): one round trip.
pub fn raw_table_present(c: &mut impl GenericClient, table: &str) -> Result<bool> {
    let row = c.query_typed_one(
        "SELECT to_regclass($1) IS NOT NULL,
                coalesce((SELECT array_agg(a.attname::text || ' ' || format_type(a.atttypid, a.atttypmod))
                          FROM pg_attribute a
                          WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped),
                         '{}'),
                EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a
                            ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                        WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnatts = 1
                          AND a.attname = 'hash_conteudo')",
        &[(&quote(table), Type::TEXT)],
    )?;
    if !row.get::<_, bool>(0) {
        return Ok(false);
    }
    let cols: Vec<String> = row.get(1);
    for (name, ty) in [
        ("data_referencia", "date"),
        ("payload", "jsonb"),
        ("hash_conteudo", "text"),
    ] {
        if !cols.iter().any(|c| *c == format!("{name} {ty}")) {
            return Err(usage(format!(
                "table {table} exists but has no column {name} {ty}: it is not an atlas raw table"
            )));
        }
    }
    if !row.get::<_, bool>(2) {
        return Err(usage(format!(
            "table {table} exists but hash_conteudo is not UNIQUE: loads would not be idempotent"
        )));
    }
    Ok(true)
}

/// One writer's connection with its statements prepared once: the insert of
/// the load path (arrays unnested server-side, duplicates skipped by the
/// unique hash) and the slice and run bookkeeping, committed together per
/// batch.
pub struct Inserter {
    conn: PooledConn,
    worker: String,
    run: i64,
    held: Statement,
    /// The raw table, quoted.
    table: String,
    /// The table's insert statements, prepared when a batch first needs them.
    count: Option<Statement>,
    by_slice: Option<Statement>,
    counts: Statement,
    run_counts: Statement,
    /// `COPY … FROM STDIN BINARY` into the raw table, and that statement
    /// prepared when a batch first needs it.
    copy: String,
    copy_stmt: Option<Statement>,
    /// Whether the next batch tries COPY first: off after a batch met a
    /// duplicate (a rerun: every COPY would fail), on again once a batch
    /// inserted every row.
    try_copy: bool,
}

/// A JSONB value sent in binary form: version 1, then the canonical text.
#[derive(Debug)]
struct Jsonb<'a>(&'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

/// Whether the error is a unique violation (a row already stored).
fn unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

impl Inserter {
    /// A writer of `worker`'s run `run` into `table`, on a pooled connection.
    pub fn on(mut conn: PooledConn, table: &str, worker: &str, run: i64) -> Result<Inserter> {
        // Slice rows are locked in id order: two writers whose batches share
        // slices would otherwise deadlock on them.
        let held = conn.prepare(
            "SELECT id FROM atlas.slices WHERE id = ANY($1) AND worker = $2 AND status = 'running'
             ORDER BY id FOR UPDATE",
        )?;
        let counts = conn.prepare(
            "UPDATE atlas.slices SET inserted = inserted + $2, duplicates = duplicates + $3 WHERE id = $1",
        )?;
        let run_counts = conn.prepare(
            "UPDATE atlas.runs SET inserted = inserted + $2, duplicates = duplicates + $3 WHERE id = $1",
        )?;
        Ok(Inserter {
            conn,
            worker: String::new(),
            run: 0,
            held,
            table: String::new(),
            count: None,
            by_slice: None,
            counts,
            run_counts,
            copy: String::new(),
            copy_stmt: None,
            try_copy: true,
        }
        .retarget(table, worker, run))
    }

    /// The same connection and ledger statements, writing `worker`'s run
    /// `run` into `table` (`sync --all`: one writer serves every pair).
    /// No round trip: the table's statements are prepared when first used.
    pub fn retarget(mut self, table: &str, worker: &str, run: i64) -> Inserter {
        self.worker = worker.to_string();
        self.run = run;
        self.table = quote(table);
        self.count = None;
        self.by_slice = None;
        self.copy_stmt = None;
        self.copy = format!(
            "COPY {} (data_referencia, payload, hash_conteudo) FROM STDIN BINARY",
            self.table
        );
        self.try_copy = true;
        self
    }

    /// The table's `INSERT … ON CONFLICT DO NOTHING` of a batch, and the
    /// same counting each slice's new rows.
    fn insert_sql(table: &str) -> (String, String) {
        let insert = format!(
            "INSERT INTO {table} (data_referencia, payload, hash_conteudo)
             SELECT d, p::jsonb, h FROM unnest($1::date[], $2::text[], $3::text[]) AS u(d, p, h)
             ON CONFLICT (hash_conteudo) DO NOTHING"
        );
        // Several slices share the batch: the server counts each one's new
        // rows by joining what went in with the slice index of each hash (a
        // hash twice in the batch went in once: it counts for one slice).
        let by_slice = format!(
            "WITH ins AS ({insert} RETURNING hash_conteudo)
             SELECT g, count(*) FROM ins
             JOIN (SELECT h, min(g) AS g FROM unnest($3::text[], $4::int[]) AS t(h, g) GROUP BY h) t
               ON t.h = ins.hash_conteudo
             GROUP BY g"
        );
        (insert, by_slice)
    }

    /// Inserts `rows` (each tagged with an index into `slices`) and adds each
    /// slice's and the run's inserted/duplicate counts, in one transaction.
    /// Only slices this worker still holds count: rows of a slice taken over
    /// by another worker (its lease expired) are not written, since the new
    /// holder fetches them again and counts them there. Rows are sorted by
    /// hash so concurrent writers lock unique-index entries in one order.
    /// Returns rows inserted per slice, `None` for a slice no longer held.
    ///
    /// The rows go in by binary COPY when none is stored yet (a successful
    /// COPY inserted every row: the counts are exact); a COPY that meets a
    /// unique violation is rolled back to its savepoint and the batch goes in
    /// by `INSERT … ON CONFLICT DO NOTHING`, which counts what was new.
    ///
    /// The slices' rows are locked last, after the rows went in: two writers
    /// whose batches share a slice (parallel pages) then write at the same
    /// time and only queue for the short count update and the commit. If a
    /// slice turns out taken over meanwhile, the transaction is rolled back
    /// and the batch done again with the slices locked first.
    pub fn commit_batch(
        &mut self,
        rows: &mut [(usize, &Row)],
        slices: &[i64],
    ) -> Result<Vec<Option<i64>>> {
        rows.sort_by_key(|r| r.1.hash);
        if let Some(done) = self.commit_once(rows, slices, false)? {
            return Ok(done);
        }
        Ok(self
            .commit_once(rows, slices, true)?
            .unwrap_or_else(|| vec![None; slices.len()]))
    }

    /// One attempt of `commit_batch`: with `lock_first`, the held slices are
    /// locked before writing and only their rows written; without, every row
    /// is written and `None` returned (rolled back) if any slice is not held.
    fn commit_once(
        &mut self,
        rows: &[(usize, &Row)],
        slices: &[i64],
        lock_first: bool,
    ) -> Result<Option<Vec<Option<i64>>>> {
        let mut tx = self.conn.transaction()?;
        let try_copy = self.try_copy && !rows.is_empty();
        // The savepoint a COPY may roll back to comes after the slice locks
        // of `lock_first` (rolling back to it must not release them); without
        // them it is set in the same round trip, and released by the commit.
        let early_savepoint = try_copy && !lock_first;
        // A batch commit need not wait for its WAL flush: the commit that
        // marks the slice done (synchronous, later in the same WAL) flushes
        // it too, so a slice recorded done always has its rows on disk; a
        // crash before that loses only batches of unfinished slices, which
        // the rerun fetches again.
        tx.batch_execute(if early_savepoint {
            "SET LOCAL synchronous_commit = off; SAVEPOINT copy"
        } else {
            "SET LOCAL synchronous_commit = off"
        })?;
        let held: Vec<i64> = if lock_first {
            tx.query(&self.held, &[&slices, &self.worker])?
                .iter()
                .map(|r| r.get(0))
                .collect()
        } else {
            slices.to_vec()
        };
        let is_held: Vec<bool> = slices.iter().map(|s| held.contains(s)).collect();
        let kept: Vec<&(usize, &Row)> = rows.iter().filter(|(g, _)| is_held[*g]).collect();
        let mut per_slice = vec![0i64; slices.len()];
        let mut totals = vec![0i64; slices.len()];
        for (g, _) in &kept {
            totals[*g] += 1;
        }
        let copied = !kept.is_empty() && try_copy && {
            if !early_savepoint {
                tx.batch_execute("SAVEPOINT copy")?;
            }
            let copy = match &self.copy_stmt {
                Some(st) => st.clone(),
                None => self.copy_stmt.insert(tx.prepare(&self.copy)?).clone(),
            };
            match copy_rows(&mut tx, &copy, &kept) {
                Ok(()) => true,
                // Back to the savepoint: nothing of the COPY stays.
                Err(e) if unique_violation(&e) => {
                    tx.batch_execute("ROLLBACK TO SAVEPOINT copy")?;
                    self.try_copy = false;
                    false
                }
                Err(e) => return Err(e.into()),
            }
        };
        if copied {
            per_slice.copy_from_slice(&totals);
        } else if !kept.is_empty() {
            let dates: Vec<NaiveDate> = kept.iter().map(|r| r.1.data_referencia).collect();
            let payloads: Vec<&str> = kept.iter().map(|r| r.1.payload.as_str()).collect();
            let hashes: Vec<&str> = kept.iter().map(|r| r.1.hash.as_str()).collect();
            let (insert, by_slice) = Inserter::insert_sql(&self.table);
            if held.len() == 1 {
                let count = match &self.count {
                    Some(st) => st.clone(),
                    None => self.count.insert(tx.prepare(&insert)?).clone(),
                };
                let n = tx.execute(&count, &[&dates, &payloads, &hashes])? as i64;
                if let Some(g) = is_held.iter().position(|h| *h) {
                    per_slice[g] = n;
                }
            } else {
                let groups: Vec<i32> = kept.iter().map(|r| r.0 as i32).collect();
                let by_slice = match &self.by_slice {
                    Some(st) => st.clone(),
                    None => self.by_slice.insert(tx.prepare(&by_slice)?).clone(),
                };
                for r in tx.query(&by_slice, &[&dates, &payloads, &hashes, &groups])? {
                    let g: i32 = r.get(0);
                    per_slice[g as usize] = r.get(1);
                }
            }
            // Every row was new: the next batch may try COPY again.
            self.try_copy = per_slice == totals;
        }
        if !lock_first {
            let locked = tx.query(&self.held, &[&slices, &self.worker])?.len();
            if locked != slices.len() {
                // A slice was taken over: nothing of this attempt stays.
                tx.rollback()?;
                return Ok(None);
            }
        }
        let mut order: Vec<usize> = (0..slices.len()).filter(|g| is_held[*g]).collect();
        order.sort_by_key(|&g| slices[g]);
        for g in order {
            tx.execute(
                &self.counts,
                &[&slices[g], &per_slice[g], &(totals[g] - per_slice[g])],
            )?;
        }
        let inserted: i64 = per_slice.iter().sum();
        let total: i64 = totals.iter().sum();
        if total > 0 {
            tx.execute(
                &self.run_counts,
                &[&self.run, &inserted, &(total - inserted)],
            )?;
        }
        tx.commit()?;
        Ok(Some(
            per_slice
                .into_iter()
                .zip(is_held)
                .map(|(n, h)| h.then_some(n))
                .collect(),
        ))
    }
}

/// The rows by binary COPY, in the order given.
fn copy_rows(
    tx: &mut Transaction<'_>,
    copy: &Statement,
    rows: &[&(usize, &Row)],
) -> std::result::Result<(), postgres::Error> {
    let sink = tx.copy_in(copy)?;
    let mut w = BinaryCopyInWriter::new(sink, &[Type::DATE, Type::JSONB, Type::TEXT]);
    for (_, row) in rows {
        w.write(&[
            &row.data_referencia,
            &Jsonb(&row.payload),
            &row.hash.as_str(),
        ])?;
    }
    w.finish()?;
    Ok(())
}

/// Whether a database error may go away on retry (connection lost, server
/// restarting, deadlock, serialisation failure, pool timeout).
pub fn retryable(err: &anyhow::Error) -> bool {
    for cause in err.chain() {
        if cause.is::<r2d2::Error>() {
            return true;
        }
        if let Some(e) = cause.downcast_ref::<postgres::Error>() {
            if e.is_closed() {
                return true;
            }
            return match e.code() {
                None => true, // I/O, not a server verdict
                Some(c) => {
                    let c = c.code();
                    c.starts_with("08")
                        || matches!(c, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
                }
            };
        }
    }
    false
}

/// Runs `f` on `conn`; when the error says the server may come back, waits
/// (`backoff`), replaces the connection with a fresh one and tries again, up
/// to `attempts` tries in all.
pub fn with_fresh_connection<T>(
    db: &Db,
    conn: &mut Client,
    attempts: u32,
    backoff: Backoff,
    mut f: impl FnMut(&mut Client) -> Result<T>,
) -> Result<T> {
    let mut attempt = 1;
    loop {
        match f(conn) {
            Ok(v) => return Ok(v),
            Err(e) if attempt < attempts && retryable(&e) => {
                std::thread::sleep(backoff.delay(attempt, fastrand::f64()));
                attempt += 1;
                if let Ok(c) = db.connect() {
                    *conn = c;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_list_matches_sql_dir() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(files, listed);
        for n in &files {
            assert!(
                n[..3].chars().all(|c| c.is_ascii_digit()),
                "{n} is not numbered"
            );
        }
    }

    #[test]
    fn display_hides_password() {
        let db = Db::parse("postgres://u:s3cret@h:6543/base").unwrap();
        assert_eq!(db.to_string(), "h:6543/base");
        let e = Db::parse("postgres://u:s3cret@h:notaport/base")
            .err()
            .unwrap();
        assert!(!format!("{e:#}").contains("s3cret"));
    }
}
