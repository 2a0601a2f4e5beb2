//! PostgreSQL access: connections and pool, the control-schema migrations
//! from `sql/`, raw tables, and (in `insert`) the batch insert of the load
//! path.

mod batch_sql;
mod insert;
mod link;
mod one_trip;
mod shape;
mod tables;
pub use batch_sql::{EndRow, END_SET};
pub use insert::{Committed, Inserter};
pub use link::round_trip;
pub use shape::Shape;
pub use tables::create_raw_tables_if_missing;

use crate::exit::{env_error, usage};
use crate::ident::{date_index, quote, unique_constraint};
use crate::retry::{Backoff, Policy, Verdict};
use anyhow::Result;
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{Client, GenericClient, Transaction};
use r2d2_postgres::PostgresConnectionManager;
use std::fmt::Write;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;

pub type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;
pub type PooledConn = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// The control-schema migrations, in order. A unit test checks this list
/// against the files in `sql/`, so a new file cannot be forgotten.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("001_control.sql", include_str!("../../sql/001_control.sql")),
    (
        "002_sync_pairs.sql",
        include_str!("../../sql/002_sync_pairs.sql"),
    ),
    (
        "003_run_lease.sql",
        include_str!("../../sql/003_run_lease.sql"),
    ),
    (
        "004_oauth_tokens.sql",
        include_str!("../../sql/004_oauth_tokens.sql"),
    ),
    ("005_fleet.sql", include_str!("../../sql/005_fleet.sql")),
    (
        "006_rate_shares.sql",
        include_str!("../../sql/006_rate_shares.sql"),
    ),
    (
        "007_run_version.sql",
        include_str!("../../sql/007_run_version.sql"),
    ),
    (
        "008_pair_loaded.sql",
        include_str!("../../sql/008_pair_loaded.sql"),
    ),
];

/// Key of the advisory lock that serialises `atlas init` across processes.
const INIT_LOCK: i64 = 0x6174_6c61_7300_0001;

/// A database URL, parsed once; `Display` shows no password.
#[derive(Clone)]
pub struct Db {
    config: postgres::Config,
    tls: MakeRustlsConnect,
    /// A pool's cap (`max_db_connections`): it opens no more than that.
    max_connections: u32,
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
        Ok(Db {
            config,
            tls,
            max_connections: crate::config::settings::DEFAULT_MAX_DB_CONNECTIONS,
        })
    }

    /// The same database, its pools capped at `n` connections.
    pub fn with_max_connections(mut self, n: u32) -> Db {
        self.max_connections = n;
        self
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
/// Returns the names applied now. Three round trips whatever the number of
/// migrations (a database across the network paid about seven each): the
/// lock with the migrations table made sure of; the names applied; the
/// pending ones, each `BEGIN … COMMIT` with its record, and the unlock.
pub fn migrate(client: &mut Client) -> Result<Vec<&'static str>> {
    client.batch_execute(&format!(
        "SELECT pg_advisory_lock({INIT_LOCK});
         SET client_min_messages = warning;
         CREATE SCHEMA IF NOT EXISTS atlas;
         CREATE TABLE IF NOT EXISTS atlas.migrations (
             name TEXT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );"
    ))?;
    let result = apply_migrations(client);
    if result.is_err() {
        // Unlock even when a migration failed; the session ends soon anyway.
        let _ = client.batch_execute(&format!("SELECT pg_advisory_unlock({INIT_LOCK})"));
    }
    result
}

/// The names of the migrations recorded as applied.
fn applied(client: &mut Client) -> Result<Vec<String>> {
    Ok(client
        .simple_query("SELECT name FROM atlas.migrations")?
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect())
}

fn apply_migrations(client: &mut Client) -> Result<Vec<&'static str>> {
    let done = applied(client)?;
    let pending: Vec<&(&str, &str)> = MIGRATIONS
        .iter()
        .filter(|(name, _)| !done.iter().any(|d| d == name))
        .collect();
    let mut sql = String::new();
    for (name, body) in &pending {
        let _ = write!(
            sql,
            "BEGIN;\n{body}\n;INSERT INTO atlas.migrations (name) VALUES ({});\nCOMMIT;\n",
            batch_sql::literal(name)
        );
    }
    let _ = write!(sql, "SELECT pg_advisory_unlock({INIT_LOCK});");
    if let Err(e) = client.batch_execute(&sql) {
        // The migrations before the failed one are committed: it is the
        // first one still pending.
        let _ = client.batch_execute("ROLLBACK");
        let now = applied(client).unwrap_or_default();
        let failed = pending
            .iter()
            .find(|(name, _)| !now.iter().any(|d| d == name))
            .map_or("?", |(name, _)| name);
        return Err(anyhow::Error::from(e).context(format!("migration {failed}")));
    }
    Ok(pending.iter().map(|(name, _)| *name).collect())
}

/// Refuses to work on a database where `atlas init` has not run (or is
/// behind). One round trip: a missing table answers `undefined_table`.
pub fn require_schema(client: &mut impl GenericClient) -> Result<()> {
    let n = match client.simple_query("SELECT count(*) FROM atlas.migrations") {
        Ok(msgs) => msgs.iter().find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse::<usize>().ok()),
            _ => None,
        }),
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {
            return Err(usage(
                "the control schema is missing: run `atlas init` on this database first",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    if n.unwrap_or(0) < MIGRATIONS.len() {
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
    tx.batch_execute(&raw_table_ddl(table))?;
    Ok(true)
}

/// The raw table's `CREATE TABLE` and its date index: exactly the old
/// tool's columns, constraint and index.
fn raw_table_ddl(table: &str) -> String {
    let t = quote(table);
    format!(
        "CREATE TABLE {t} (
    id BIGSERIAL PRIMARY KEY,
    data_coleta TIMESTAMP DEFAULT NOW() NOT NULL,
    data_referencia DATE NOT NULL,
    payload JSONB NOT NULL,
    hash_conteudo TEXT,
    CONSTRAINT {c} UNIQUE (hash_conteudo)
);
CREATE INDEX {i} ON {t} (data_referencia);\n",
        c = quote(&unique_constraint(table)),
        i = quote(&date_index(table)),
    )
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
        concat!("SELECT ", crate::raw_shape_sql!("$1")),
        &[(&quote(table), Type::TEXT)],
    )?;
    Shape::at(&row, 0).verdict(table)
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
    let policy = Policy {
        attempts,
        backoff,
        quit: None,
    };
    policy
        .run(
            |attempt| {
                // A failed connect keeps the old one: the next try says why.
                if attempt > 1 {
                    if let Ok(c) = db.connect() {
                        *conn = c;
                    }
                }
                f(conn)
            },
            |e| Verdict::retry_if(retryable(e)),
            |_, _| {},
        )
        .map_err(|gave_up| gave_up.error)
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
