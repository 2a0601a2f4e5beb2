//! The commands: each turns validated input into database work and output.
//! Input is checked before anything is written, so bad input changes nothing.

use crate::cli::{self, Args, Command, ScrapCommand};
use crate::config::{self, Config, RunFlags, RunSettings};
use crate::db::{self, Db};
use crate::exit::{usage, Exit};
use crate::http::{Backoff, ResolvedAuth};
use crate::ident;
use crate::ledger;
use crate::pipeline::{self, Job};
use crate::report::{self, ErrorLog, SettingsOut, Style, Summary};
use anyhow::Result;
use chrono::NaiveDate;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Process-wide inputs every command may need, resolved once.
pub struct Env<'a> {
    pub args: &'a Args,
    pub style: Style,
    /// Raised by Ctrl-C or a fatal error.
    pub quit: &'a AtomicBool,
    /// Raised by Ctrl-C only.
    pub interrupted: &'a AtomicBool,
}

fn getenv(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

impl Env<'_> {
    /// The config file; required unless `optional` (then absent = `None`).
    fn config(&self, optional: bool) -> Result<Option<Config>> {
        let (path, explicit) = config::config_path(self.args.config.as_deref(), &getenv);
        if !explicit && !path.exists() {
            if optional {
                return Ok(None);
            }
            return Err(usage(format!(
                "no config file: {} does not exist (give --config FILE or set ATLAS_CONFIG)",
                path.display()
            )));
        }
        config::load(&path).map(Some)
    }

    /// The config file, which this command cannot do without.
    pub fn require_config(&self) -> Result<Config> {
        self.config(false)?.ok_or_else(|| usage("no config file"))
    }

    /// The database, from flag, environment or config.
    pub fn database(&self, cfg: Option<&Config>) -> Result<Db> {
        Db::parse(&config::database_url(
            self.args.database_url.as_deref(),
            &getenv,
            cfg,
        )?)
    }

    fn error_log(&self, cfg: Option<&Config>) -> PathBuf {
        config::error_log(self.args.error_log.as_deref(), &getenv, cfg)
    }
}

pub fn run(env: &Env<'_>) -> Result<Exit> {
    match &env.args.command {
        Command::Init(_) => init(env),
        Command::Clients(_) => clients(env),
        Command::Scrap(s) => match &s.command {
            ScrapCommand::Create(a) => create(env, a),
            ScrapCommand::List(a) => list(env, a),
            ScrapCommand::Show(a) => show(env, a),
            ScrapCommand::Run(a) => {
                let flags = RunFlags {
                    threads: a.threads,
                    writers: a.writers,
                    batch_export: a.batch_export,
                    retry_max: a.retry_max,
                };
                run_scrap(env, ledger::parse_id(&a.id)?, &flags, a.json)
            }
        },
        Command::Sync(a) => crate::sync::sync(env, a),
        Command::Check(a) => crate::check::check(env, a),
    }
}

fn init(env: &Env<'_>) -> Result<Exit> {
    let cfg = env.config(true)?;
    let db = env.database(cfg.as_ref())?;
    let mut c = db.connect()?;
    let applied = db::migrate(&mut c)?;
    if applied.is_empty() {
        crate::outln!(
            "{}",
            env.style
                .line("✅", &format!("Esquema atlas já atualizado em {db}"))
        );
    } else {
        crate::outln!(
            "{}",
            env.style.line(
                "✅",
                &format!(
                    "Esquema atlas pronto em {db} (aplicadas: {})",
                    applied.join(", ")
                )
            )
        );
    }
    Ok(Exit::Ok)
}

/// Left-aligned columns, widths by character count.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

fn clients(env: &Env<'_>) -> Result<Exit> {
    let cfg = env.require_config()?;
    let mut rows = Vec::new();
    for c in cfg.clients.values() {
        let routes: Vec<&str> = c.routes.keys().map(String::as_str).collect();
        rows.push(vec![
            c.id.clone(),
            c.name.clone(),
            c.base_url.to_string(),
            c.auth.kind().to_string(),
            routes.join(", "),
        ]);
    }
    crate::outp!(
        "{}",
        table(&["client", "name", "base_url", "auth", "routes"], &rows)
    );
    Ok(Exit::Ok)
}

pub fn parse_day(s: &str, flag: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
        usage(format!(
            "{flag} '{s}' is not a real date in the form YYYY-MM-DD"
        ))
    })
}

/// Validates and creates a scrap; returns its id.
pub fn create_scrap(
    env: &Env<'_>,
    cfg: &Config,
    client: &str,
    route: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(i64, String, usize)> {
    let (c, r) = cfg.route(client, route)?;
    if from > to {
        return Err(usage(format!("--from {from} is after --to {to}")));
    }
    let table = ident::raw_table(
        &ident::sanitize(&c.id).map_err(usage)?,
        &ident::sanitize(&r.name).map_err(usage)?,
    )
    .map_err(usage)?;
    let db = env.database(Some(cfg))?;
    let mut conn = db.connect()?;
    db::require_schema(&mut conn)?;
    let id = ledger::create_scrap(&mut conn, &c.id, &r.name, &table, from, to, r.slice_days)?;
    Ok((id, table, crate::slice::plan(from, to, r.slice_days).len()))
}

fn create(env: &Env<'_>, a: &cli::CreateArgs) -> Result<Exit> {
    let cfg = env.require_config()?;
    let from = parse_day(&a.from, "--from")?;
    let to = parse_day(&a.to, "--to")?;
    let (id, table, slices) = create_scrap(env, &cfg, &a.client, &a.route, from, to)?;
    crate::outln!("{id}");
    eprintln!(
        "{}",
        env.style.line(
            "💾",
            &format!(
                "Scrap {id} criado: cliente {} - rota {}, {from} até {to}, {slices} fatia(s); tabela {table}",
                a.client, a.route
            )
        )
    );
    Ok(Exit::Ok)
}

fn list(env: &Env<'_>, a: &cli::ListArgs) -> Result<Exit> {
    if let Some(s) = &a.status {
        if !ledger::STATUSES.contains(&s.as_str()) {
            return Err(usage(format!(
                "--status '{s}' is not one of {}",
                ledger::STATUSES.join(", ")
            )));
        }
    }
    let cfg = env.config(true)?;
    let db = env.database(cfg.as_ref())?;
    let mut c = db.connect()?;
    db::require_schema(&mut c)?;
    let rows: Vec<Vec<String>> = ledger::list(&mut c, a.client.as_deref(), a.status.as_deref())?
        .into_iter()
        .map(|s| {
            vec![
                s.scrap.id.to_string(),
                s.scrap.client,
                s.scrap.route,
                format!("{} até {}", s.scrap.from, s.scrap.to),
                s.status.to_string(),
                format!("{}/{}", s.done, s.slices),
                report::thousands(s.rows.max(0) as u64),
                s.last_run
                    .map(|(t, st)| format!("{} ({st})", t.format("%Y-%m-%d %H:%M:%S")))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    crate::outp!(
        "{}",
        table(
            &["id", "client", "route", "period", "status", "slices", "rows", "last_run"],
            &rows
        )
    );
    Ok(Exit::Ok)
}

fn show(env: &Env<'_>, a: &cli::ShowArgs) -> Result<Exit> {
    let id = ledger::parse_id(&a.id)?;
    let cfg = env.config(true)?;
    let db = env.database(cfg.as_ref())?;
    let mut c = db.connect()?;
    db::require_schema(&mut c)?;
    let s = ledger::get_scrap(&mut c, id)?;
    let status = ledger::list(&mut c, Some(&s.client), None)?
        .into_iter()
        .find(|x| x.scrap.id == id)
        .map(|x| x.status)
        .unwrap_or("pending");
    crate::outln!("scrap {}: client {} route {}", s.id, s.client, s.route);
    crate::outln!(
        "period: {} até {} (slice_days {})",
        s.from,
        s.to,
        s.slice_days
    );
    crate::outln!("table: {}", s.raw_table);
    crate::outln!("status: {status}");
    crate::outln!("created: {}", s.created_at.format("%Y-%m-%d %H:%M:%S UTC"));
    crate::outln!();
    crate::outln!("runs:");
    let runs: Vec<Vec<String>> = ledger::runs(&mut c, id)?
        .into_iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                r.finished_at
                    .map(|t| t.format("%H:%M:%S").to_string())
                    .unwrap_or_else(|| "-".into()),
                r.status,
                report::thousands(r.records.max(0) as u64),
                report::thousands(r.inserted.max(0) as u64),
                report::thousands(r.duplicates.max(0) as u64),
                format!("{}/{}", r.slices_done, r.slices_failed),
                r.worker,
            ]
        })
        .collect();
    crate::outp!(
        "{}",
        table(
            &[
                "run",
                "started",
                "finished",
                "status",
                "records",
                "inserted",
                "duplicates",
                "done/failed",
                "worker"
            ],
            &runs
        )
    );
    crate::outln!();
    crate::outln!("slices:");
    let slices: Vec<Vec<String>> = ledger::slices(&mut c, id)?
        .into_iter()
        .map(|x| {
            vec![
                if x.from == x.to {
                    x.from.to_string()
                } else {
                    format!("{} até {}", x.from, x.to)
                },
                x.status,
                x.pages.to_string(),
                report::thousands(x.records.max(0) as u64),
                report::thousands(x.inserted.max(0) as u64),
                report::thousands(x.duplicates.max(0) as u64),
                x.out_of_period.to_string(),
                x.undated.to_string(),
                x.attempts.to_string(),
                x.worker.unwrap_or_else(|| "-".into()),
                x.last_error.map(|e| report_snip(&e)).unwrap_or_default(),
            ]
        })
        .collect();
    crate::outp!(
        "{}",
        table(
            &[
                "slice",
                "status",
                "pages",
                "records",
                "inserted",
                "duplicates",
                "out_of_period",
                "undated",
                "attempts",
                "worker",
                "last_error"
            ],
            &slices
        )
    );
    Ok(Exit::Ok)
}

fn report_snip(s: &str) -> String {
    let one = s.replace(['\n', '\r'], " ");
    if one.chars().count() > 120 {
        one.chars().take(117).collect::<String>() + "..."
    } else {
        one
    }
}

/// This machine's name, for worker ids.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Runs a scrap and prints its summary. Shared by `scrap run` and `sync`.
pub fn run_scrap(env: &Env<'_>, id: i64, flags: &RunFlags, json: bool) -> Result<Exit> {
    let cfg = env.require_config()?;
    let settings = RunSettings::resolve(flags, &getenv, &cfg.file_settings)?;
    let db = env.database(Some(&cfg))?;
    let mut conn = db.connect()?;
    db::require_schema(&mut conn)?;
    let scrap = ledger::get_scrap(&mut conn, id)?;
    let (client, route) = cfg.route(&scrap.client, &scrap.route)?;
    let auth = ResolvedAuth::resolve(&client.auth)?;
    let errlog = ErrorLog::new(&env.error_log(Some(&cfg)));
    let style = env.style;
    let out_settings = SettingsOut {
        retry_max: settings.retry_max,
        batch_export: settings.batch_export,
        threads: settings.threads,
        writers: settings.writers,
    };
    let slices = ledger::slices(&mut conn, id)?;
    let total_slices = slices.len() as i64;
    let mut summary = Summary {
        scrap_id: id,
        run_id: None,
        client: scrap.client.clone(),
        route: scrap.route.clone(),
        table: scrap.raw_table.clone(),
        from: scrap.from,
        to: scrap.to,
        status: "done".into(),
        records_fetched: 0,
        inserted: 0,
        duplicates: 0,
        out_of_period: 0,
        undated: 0,
        sanitised: 0,
        pages: 0,
        slices_done: 0,
        slices_failed: 0,
        slices_total: total_slices,
        retries: 0,
        elapsed_secs: 0.0,
        records_per_sec: 0.0,
        exit_code: 0,
        settings: out_settings.clone(),
    };
    if slices.iter().all(|s| s.status == "done") {
        summary.slices_done = total_slices as i32;
        eprintln!(
            "{}",
            style.line("✅", &format!("Scrap {id} já concluído: nada a fazer"))
        );
        emit(&summary, style, json);
        return Ok(Exit::Ok);
    }

    eprintln!(
        "{}",
        style.line(
            "🚀",
            &format!(
                "Iniciando ETL do cliente {} - Rota: {}",
                scrap.client, scrap.route
            )
        )
    );
    eprintln!(
        "{}",
        style.line("📅", &format!("Período: {} até {}", scrap.from, scrap.to))
    );
    eprintln!(
        "{}",
        style.line(
            "⚙️",
            &format!(
                "Configurações: Retry={}, Batch={}",
                settings.retry_max, settings.batch_export
            )
        )
    );
    let worker = ledger::worker_id(&host_name(), std::process::id());
    let run_id = ledger::start_run(
        &mut conn,
        id,
        &worker,
        &serde_json::to_value(&out_settings)?,
    )?;
    summary.run_id = Some(run_id);
    // Claims and batches use the pool; this connection is for the run row only.
    let pool = db.pool((settings.threads + settings.writers + 2) as u32)?;
    let job = Job {
        scrap: &scrap,
        client,
        route,
        settings: &settings,
        pool,
        worker,
        run_id,
        auth,
        backoff: Backoff {
            base: settings.backoff_base,
            cap: settings.backoff_cap,
        },
        errlog: &errlog,
        style,
        quit: env.quit,
        interrupted: env.interrupted,
    };
    let started = Instant::now();
    let outcome = pipeline::run(&job);
    let elapsed = started.elapsed();

    // The scrap as a whole (other workers may have worked some slices). The
    // run's connection may have been lost meanwhile: retried on a fresh one.
    let retry = Backoff {
        base: settings.backoff_base,
        cap: settings.backoff_cap,
    };
    let mut exit = outcome.exit;
    let after = match with_fresh_connection(&db, &mut conn, settings.retry_max, retry, |c| {
        ledger::slices(c, id)
    }) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}", style.line("❌", &format!("Erro: {e:#}")));
            exit = exit.merge(Exit::Environment);
            Vec::new()
        }
    };
    let all_done = !after.is_empty() && after.iter().all(|s| s.status == "done");
    if exit == Exit::Ok && !all_done {
        exit = Exit::Failed;
    }
    let status = match exit {
        Exit::Ok => "done",
        Exit::Interrupted => "interrupted",
        Exit::Environment => "aborted",
        _ => "failed",
    };
    let t = &outcome.totals;
    if let Err(e) = with_fresh_connection(&db, &mut conn, settings.retry_max, retry, |c| {
        ledger::finish_run(c, run_id, status, t, outcome.error.as_deref())
    }) {
        log::warn!("cannot record the end of run {run_id}: {e:#}");
    }
    summary.status = status.into();
    summary.records_fetched = t.records;
    summary.inserted = t.inserted;
    summary.duplicates = t.duplicates;
    summary.out_of_period = t.out_of_period;
    summary.undated = t.undated;
    summary.sanitised = t.sanitised;
    summary.pages = t.pages;
    summary.slices_done = after.iter().filter(|s| s.status == "done").count() as i32;
    summary.slices_failed = after.iter().filter(|s| s.status == "failed").count() as i32;
    summary.retries = t.retries;
    summary.elapsed_secs = (elapsed.as_secs_f64() * 1000.0).round() / 1000.0;
    summary.records_per_sec =
        (report::rate(t.records.max(0) as u64, elapsed) * 10.0).round() / 10.0;
    summary.exit_code = exit.code();
    if let Some(e) = &outcome.error {
        eprintln!("{}", style.line("❌", e));
    }
    if summary.slices_failed > 0 {
        eprintln!(
            "{}",
            style.line(
                "⚠️",
                &format!(
                    "{} fatia(s) com falha: veja `atlas scrap show {id}` e {}; rode de novo para retomar",
                    summary.slices_failed,
                    errlog.path().display()
                )
            )
        );
    }
    emit(&summary, style, json);
    Ok(exit)
}

/// Runs `f` on `conn`, replacing the connection and retrying with backoff
/// when the error says the server may come back.
fn with_fresh_connection<T>(
    db: &Db,
    conn: &mut postgres::Client,
    attempts: u32,
    backoff: Backoff,
    mut f: impl FnMut(&mut postgres::Client) -> Result<T>,
) -> Result<T> {
    let mut attempt = 1;
    loop {
        match f(conn) {
            Ok(v) => return Ok(v),
            Err(e) if attempt < attempts && db::retryable(&e) => {
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

fn emit(summary: &Summary, style: Style, json: bool) {
    if json {
        match serde_json::to_string(summary) {
            Ok(s) => crate::outln!("{s}"),
            Err(e) => log::error!("cannot serialise the summary: {e}"),
        }
    } else {
        crate::outp!("{}", summary.render(style));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_by_characters() {
        let t = table(
            &["a", "bb"],
            &[
                vec!["ção".into(), "x".into()],
                vec!["1".into(), "yy".into()],
            ],
        );
        assert_eq!(t, "a    bb\nção  x\n1    yy\n");
    }

    #[test]
    fn days_must_be_real() {
        assert!(parse_day("2025-02-28", "--from").is_ok());
        assert!(parse_day("2025-02-30", "--from").is_err());
        assert!(parse_day("28/02/2025", "--to").is_err());
    }
}
