//! `atlas status`: whether last night was good, for a person or a
//! monitoring check. For each configured (client, route), narrowed by
//! `--client` and `--route`: its last run on any machine and what its
//! slices loaded (`health`), read for all pairs in two statements. The
//! first line is the verdict, as Nagios-style plugins print it; the exit
//! code says it too (0 well, 1 a pair failing, lagging or never run, 3 the
//! database unreachable).

use super::Context;
use crate::cli::StatusArgs;
use crate::config::ranges;
use crate::db;
use crate::exit::{classify, usage, Exit};
use crate::health::{self, Health, LastRun, Problem, Span};
use crate::ledger::pairs::{self, Pair};
use crate::{dates, report};
use anyhow::Result;
use chrono::Duration;
use serde_json::{json, Value};

/// `--max-lag-days` when not given: yesterday's load may be missing only
/// until the next night's.
pub const DEFAULT_MAX_LAG_DAYS: u32 = 1;

/// Pairs named in the verdict line before "e mais N".
const PAIRS_NAMED: usize = 5;

/// The flags that stand alone, checked before anything else.
pub fn check_flags(a: &StatusArgs) -> Result<()> {
    ranges::check("--max-lag-days", ranges::MAX_LAG_DAYS, a.max_lag_days)
        .map_err(|(k, why)| usage(format!("{k}: {why}")))
}

/// One pair's report.
struct Row {
    client: String,
    route: String,
    last: Option<LastRun>,
    health: Health,
}

pub fn run(ctx: &Context<'_>, a: &StatusArgs) -> Result<Exit> {
    let max_lag = a.max_lag_days.unwrap_or(DEFAULT_MAX_LAG_DAYS);
    let cfg = ctx.config()?;
    let selected = super::fleet::select(cfg, &a.client, &a.route)?;
    let db = ctx.database()?;
    let keys: Vec<Pair> = selected
        .iter()
        .map(|(c, r)| (c.id.clone(), r.name.clone()))
        .collect();
    let read = (|| {
        let mut c = db.connect()?;
        db::require_schema(&mut c)?;
        Ok::<_, anyhow::Error>((
            pairs::last_runs(&mut c, &keys)?,
            pairs::islands(&mut c, &keys)?,
        ))
    })();
    let (mut runs, mut days) = match read {
        Ok(r) => r,
        Err(e) => {
            // A monitoring check reads the first line: it says why too.
            if !a.json {
                let word = match classify(&e) {
                    Exit::Usage => "CRITICAL",
                    _ => "UNKNOWN",
                };
                crate::outln!(
                    "ATLAS {word} - {}",
                    report::snippet(format!("{e:#}"), 300, "...")
                );
            }
            return Err(e);
        }
    };
    let rows: Vec<Row> = selected
        .iter()
        .zip(keys)
        .map(|((_, route), key)| {
            let yesterday = dates::today_in(route.timezone.as_ref()) - Duration::days(1);
            let last = runs.remove(&key);
            let islands = days.remove(&key).unwrap_or_default();
            let health = health::assess(
                last.as_ref(),
                &islands.done,
                &islands.covered,
                yesterday,
                max_lag,
            );
            Row {
                client: key.0,
                route: key.1,
                last,
                health,
            }
        })
        .collect();
    let problems = rows
        .iter()
        .filter(|r| !r.health.problems.is_empty())
        .count();
    let exit = if problems == 0 {
        Exit::Ok
    } else {
        Exit::Failed
    };
    if a.json {
        crate::outln!("{}", object(&rows, max_lag, exit));
    } else {
        crate::outln!("{}", verdict(&rows, problems));
        report::out(&table(&rows));
    }
    Ok(exit)
}

/// `ATLAS OK - …` or `ATLAS WARNING - …`, with performance data after `|`.
fn verdict(rows: &[Row], problems: usize) -> String {
    let n = rows.len();
    let perf = format!("pairs={n} problems={problems}");
    if problems == 0 {
        return format!("ATLAS OK - {n} par(es) em dia | {perf}");
    }
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| !r.health.problems.is_empty())
        .map(|r| format!("{} / {} ({})", r.client, r.route, situation(r)))
        .collect();
    let mut named = bad[..bad.len().min(PAIRS_NAMED)].join(", ");
    if bad.len() > PAIRS_NAMED {
        named.push_str(&format!(" e mais {}", bad.len() - PAIRS_NAMED));
    }
    format!("ATLAS WARNING - {problems} de {n} par(es) com problema: {named} | {perf}")
}

/// `ok`, or the pair's problems in words.
fn situation(r: &Row) -> String {
    if r.health.problems.is_empty() {
        return "ok".into();
    }
    r.health
        .problems
        .iter()
        .map(|p| match (p, r.health.days_behind) {
            (Problem::Lagging, Some(d)) => format!("atrasado {d} dia(s)"),
            (Problem::Lagging, None) => "nada carregado".into(),
            (Problem::LastRunFailed, _) => format!(
                "falhou: {}",
                r.last.as_ref().map_or("?", |l| l.status.as_str())
            ),
            (p, _) => p.words().into(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn table(rows: &[Row]) -> String {
    let date = |d: Option<chrono::NaiveDate>| d.map_or_else(|| "-".into(), |d| d.to_string());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let h = &r.health;
            let last = r.last.as_ref();
            vec![
                r.client.clone(),
                r.route.clone(),
                situation(r),
                last.map_or_else(
                    || "-".into(),
                    |l| l.at.format("%Y-%m-%d %H:%M UTC").to_string(),
                ),
                last.map_or_else(|| "-".into(), |l| l.host.clone()),
                last.map_or_else(|| "-".into(), |l| l.status.clone()),
                last.map_or_else(
                    || "-".into(),
                    |l| report::thousands(l.inserted.max(0) as u64),
                ),
                last.map_or_else(|| "-".into(), |l| l.slices_failed.to_string()),
                date(h.loaded_until),
                h.days_behind.map_or_else(|| "-".into(), |d| d.to_string()),
                h.gap_days.to_string(),
                h.open_days.to_string(),
            ]
        })
        .collect();
    report::table(
        &[
            "cliente",
            "rota",
            "situação",
            "última execução",
            "máquina",
            "fim",
            "inseridos",
            "fatias com falha",
            "carregado até",
            "atraso (dias)",
            "lacunas (dias)",
            "em aberto (dias)",
        ],
        &cells,
    )
}

/// The `--json` object.
fn object(rows: &[Row], max_lag: u32, exit: Exit) -> Value {
    let spans =
        |s: &[Span]| -> Value { s.iter().map(|(f, t)| json!({"from": f, "to": t})).collect() };
    let pairs: Vec<Value> = rows
        .iter()
        .map(|r| {
            let h = &r.health;
            json!({
                "client": r.client,
                "route": r.route,
                "ok": h.problems.is_empty(),
                "problems": h.problems,
                "last_run": r.last,
                "loaded_until": h.loaded_until,
                "yesterday": h.yesterday,
                "days_behind": h.days_behind,
                "gap_days": h.gap_days,
                "gaps": spans(&h.gaps),
                "open_days": h.open_days,
                "open": spans(&h.open),
            })
        })
        .collect();
    let well = rows.iter().filter(|r| r.health.problems.is_empty()).count();
    json!({
        "status": if exit == Exit::Ok { "ok" } else { "problem" },
        "pairs": pairs,
        "totals": {"pairs": rows.len(), "ok": well, "problems": rows.len() - well},
        "max_lag_days": max_lag,
        "exit_code": exit.code(),
        "version": crate::version::version(),
    })
}
