//! `atlas scrap create | list | show`. A scrap is one client, route and
//! period, cut into slices in the ledger; `scrap run` is in `scrap_run`.

use super::{day_flag, Context};
use crate::cli::{CreateArgs, ListArgs};
use crate::config::{Client, Config, Route};
use crate::db;
use crate::exit::{usage, Exit};
use crate::ident;
use crate::ledger::{self, NewTable};
use crate::report;
use crate::scrap_rows;
use anyhow::Result;
use chrono::NaiveDate;

/// A scrap just created.
pub struct Created {
    pub id: i64,
    pub table: String,
    pub slices: usize,
    /// The raw table exists (always, unless created with `NewTable::Later`).
    pub table_exists: bool,
}

/// Checks the period and the table name, then creates the scrap, its raw
/// table and its slices.
pub fn create_scrap(
    ctx: &Context<'_>,
    cfg: &Config,
    client: &str,
    route: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Created> {
    // Bad input is refused (exit 2) before the database is asked anything.
    planned(cfg, client, route, from, to)?;
    let mut conn = ctx.database()?.connect()?;
    db::require_schema(&mut conn)?;
    create_scrap_on(&mut conn, cfg, client, route, (from, to), NewTable::Now)
}

/// A scrap of the pair over the whole period created on `conn` (the
/// schema known to be there).
pub fn create_scrap_on(
    conn: &mut postgres::Client,
    cfg: &Config,
    client: &str,
    route: &str,
    (from, to): (NaiveDate, NaiveDate),
    new_table: NewTable,
) -> Result<Created> {
    let (_, r, _) = planned(cfg, client, route, from, to)?;
    let plan = crate::slice::plan(from, to, r.slice_days);
    create_scrap_with(conn, cfg, client, route, (from, to), &plan, new_table)
}

/// A scrap of the pair over `(from, to)` holding only the slices of `plan`
/// (a sync's: the days it needs).
pub fn create_scrap_with(
    conn: &mut postgres::Client,
    cfg: &Config,
    client: &str,
    route: &str,
    (from, to): (NaiveDate, NaiveDate),
    plan: &[(NaiveDate, NaiveDate)],
    new_table: NewTable,
) -> Result<Created> {
    let (c, r, table) = planned(cfg, client, route, from, to)?;
    let (id, table_exists) = ledger::create_scrap(
        conn,
        &c.id,
        &r.name,
        (&table, new_table),
        (from, to),
        r.slice_days,
        plan,
    )?;
    Ok(Created {
        id,
        table,
        slices: plan.len(),
        table_exists,
    })
}

/// The pair and its raw table's name, or why a scrap of it over the period
/// cannot be made (a usage error).
fn planned<'c>(
    cfg: &'c Config,
    client: &str,
    route: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<(&'c Client, &'c Route, String)> {
    let (c, r) = cfg.route(client, route)?;
    if from > to {
        return Err(usage(format!("--from {from} is after --to {to}")));
    }
    super::not_after_today(to, r, "--to")?;
    let table = ident::raw_table(
        &ident::sanitize(&c.id).map_err(usage)?,
        &ident::sanitize(&r.name).map_err(usage)?,
    )
    .map_err(usage)?;
    Ok((c, r, table))
}

/// `scrap create`: the new id alone on stdout, the details on stderr.
pub fn create(ctx: &Context<'_>, a: &CreateArgs) -> Result<Exit> {
    let cfg = ctx.config()?;
    let from = day_flag(&a.from, "--from")?;
    let to = day_flag(&a.to, "--to")?;
    let Created {
        id, table, slices, ..
    } = create_scrap(ctx, cfg, &a.client, &a.route, from, to)?;
    crate::outln!("{id}");
    ctx.style.note(
            "💾",
            &format!(
                "Scrap {id} criado: cliente {} - rota {}, {from} até {to}, {slices} fatia(s); tabela {table}",
                a.client, a.route
            )
        );
    Ok(Exit::Ok)
}

/// `--status` of `scrap list`: one of the ledger's statuses.
pub fn check_status(status: Option<&str>) -> Result<()> {
    match status {
        Some(s) if !ledger::STATUSES.contains(&s) => Err(usage(format!(
            "--status '{s}' is not one of {}",
            ledger::STATUSES.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// `scrap list`: one line per scrap, its status, the rows its runs inserted
/// into the raw table (`inserted`) and its last run.
pub fn list(ctx: &Context<'_>, a: &ListArgs) -> Result<Exit> {
    let mut c = ctx.database()?.connect()?;
    db::require_schema(&mut c)?;
    let me = ledger::worker_id(&ctx.host, &ledger::Locality::current(), std::process::id());
    let rows: Vec<Vec<String>> = ledger::list(
        &mut c,
        ledger::ListFilter {
            client: a.client.as_deref(),
            status: a.status.as_deref(),
            newest: None,
            me: Some(&me),
            scrap: None,
        },
    )?
    .iter()
    .map(|s| scrap_rows::scrap_cells(s, scrap_rows::Listing::Cli))
    .collect();
    report::out(&report::table(&scrap_rows::SCRAP_HEADERS, &rows));
    Ok(Exit::Ok)
}

/// `scrap show`: the scrap, then its runs and its slices as tables.
pub fn show(ctx: &Context<'_>, id: i64) -> Result<Exit> {
    let mut c = ctx.database()?.connect()?;
    db::require_schema(&mut c)?;
    let s = ledger::get_scrap(&mut c, id)?;
    // A run whose process is known to be gone is shown (and stored) as aborted.
    let me = ledger::worker_id(&ctx.host, &ledger::Locality::current(), std::process::id());
    ledger::abort_dead_runs(&mut c, Some(id), &me)?;
    let status = ledger::status_of_scrap(&mut c, id)?;
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
    let runs: Vec<_> = ledger::runs(&mut c, id)?
        .iter()
        .map(scrap_rows::run_cells)
        .collect();
    report::out(&scrap_rows::table(&scrap_rows::RUN_HEADERS, &runs));
    crate::outln!();
    crate::outln!("slices:");
    let slices: Vec<_> = ledger::slices(&mut c, id)?
        .iter()
        .map(scrap_rows::slice_cells)
        .collect();
    report::out(&scrap_rows::table(&scrap_rows::SLICE_HEADERS, &slices));
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filter_is_one_of_the_ledger_statuses() {
        assert!(check_status(None).is_ok());
        assert!(check_status(Some("done")).is_ok());
        let e = check_status(Some("feito")).unwrap_err();
        assert!(
            format!("{e}").starts_with("--status 'feito' is not one of pending"),
            "{e}"
        );
    }
}
