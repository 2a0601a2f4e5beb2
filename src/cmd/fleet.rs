//! `atlas sync --all`: every configured (client, route) pair, filtered by
//! `--client` and `--route`, each under `sync`'s rules, with one report.
//!
//! A pair's period is decided once, under the pair's sync lock, and the
//! scrap created for it is recorded in `atlas.sync_pairs`; any other
//! `sync --all` process (on any machine) that meets the pair while that
//! scrap has slices left joins it: the slice leases share the work, so
//! each slice is fetched by one process. A pair that cannot start (missing
//! secret, no start point, refused credentials) is reported and the others
//! go on.

use super::sync::{idle_summary, period, SyncLock, DEFAULT_LOOKBACK_DAYS};
use super::{day_flag, scrap, Context};
use crate::cli::SyncArgs;
use crate::config::{Client, Config, Route};
use crate::dates;
use crate::db;
use crate::exit::{classify, usage, Exit};
use crate::ident;
use crate::ledger::{self, SliceStatus};
use crate::report::{self, thousands};
use crate::report::{Snapshot, Watch};
use anyhow::Result;
use chrono::{Duration, NaiveDate};
use crossbeam::channel::{self, Receiver, Select, Sender};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// How long a process waits for another one deciding a pair's period (it
/// holds the lock for a moment) before it calls the pair busy.
const DECIDING_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What a pair's turn came to.
enum Turn {
    /// Loaded (or tried to): the summary of its run.
    Ran(Value, Exit),
    /// Nothing new: loaded up to the day given.
    UpToDate(Option<NaiveDate>),
    /// Another sync holds the pair and has no scrap to join.
    Busy,
    /// Could not start: why.
    NotStarted(String, Exit),
    /// Not reached: the fleet was stopped first (by a signal, or by the
    /// database lost), with that exit.
    Skipped(Exit),
}

pub fn run(ctx: &Context<'_>, a: &SyncArgs) -> Result<Exit> {
    let from = a
        .from
        .as_deref()
        .map(|s| day_flag(s, "--from"))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| day_flag(s, "--until"))
        .transpose()?;
    if let (Some(f), Some(u)) = (from, until) {
        if f > u {
            return Err(usage(format!("--from {f} is after --until {u}")));
        }
    }
    let cfg = ctx.config()?;
    let pairs = select(cfg, &a.client, &a.route)?;
    let settings = ctx.settings()?;
    let mut conn = ctx.database()?.connect()?;
    db::require_schema(&mut conn)?;
    drop(conn);

    let style = ctx.style;
    let started = Instant::now();
    let n = pairs.len();
    let clients = by_client(&pairs);
    let lanes = clients.len().min(settings.threads.max(1)).max(1);
    let crew = (
        (settings.threads / lanes).max(1),
        (settings.writers / lanes).max(1),
    );
    // Each lane takes the next client's pairs when it is free.
    let queue = Mutex::new(clients.into_iter().collect::<VecDeque<_>>());
    let turns: Mutex<Vec<Option<Turn>>> = Mutex::new((0..n).map(|_| None).collect());
    let begun = AtomicUsize::new(0);
    let lost = AtomicBool::new(false);
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..lanes).map(|_| channel::unbounded::<Watch>()).unzip();
    std::thread::scope(|scope| {
        for news in senders {
            let lane_ctx = ctx.with_crew(crew.0, crew.1, lanes);
            let (pairs, turns, begun, lost, queue) = (&pairs, &turns, &begun, &lost, &queue);
            scope.spawn(move || {
                let next = || lock(queue).pop_front();
                for i in std::iter::from_fn(next).flatten() {
                    let (client, route) = pairs[i];
                    let turn = if lost.load(Ordering::SeqCst) {
                        Turn::Skipped(Exit::Environment)
                    } else if ctx.quit.load(Ordering::SeqCst) {
                        Turn::Skipped(Exit::Interrupted)
                    } else {
                        let k = begun.fetch_add(1, Ordering::SeqCst) + 1;
                        let say = |emoji: &str, text: String| {
                            drop(news.send(Watch::Note(style.line(emoji, &text))))
                        };
                        say("🧩", format!("pares {k}/{n}: {} / {}", client.id, route.name));
                        let turn = pair_turn(&lane_ctx, cfg, client, route, from, until, a.lookback_days, &news);
                        tell(&turn, client, route, say);
                        turn
                    };
                    // The database itself is gone: the other pairs would meet
                    // it too. (An API's refusal, a token endpoint's
                    // `invalid_grant` or an untrusted certificate is exit 3
                    // as well, but that pair's alone.)
                    let env_trouble = matches!(&turn, Turn::NotStarted(_, Exit::Environment))
                        || matches!(&turn, Turn::Ran(v, Exit::Environment) if v["status"] != report::AUTH_REFUSED);
                    if env_trouble && ctx.database().and_then(|d| d.connect()).is_err() {
                        lost.store(true, Ordering::SeqCst);
                    }
                    lock(turns)[i] = Some(turn);
                }
            });
        }
        watch(&receivers, style, settings.progress, n, &turns, started);
    });
    let stopped = lost.load(Ordering::SeqCst).then_some(Exit::Environment);
    let results: Vec<(&Client, &Route, String, Turn)> = pairs
        .iter()
        .zip(lock(&turns).drain(..))
        .map(|(&(client, route), turn)| {
            let table = ident::raw_table(&client.id, &route.name).unwrap_or_default();
            (
                client,
                route,
                table,
                turn.unwrap_or(Turn::Skipped(Exit::Interrupted)),
            )
        })
        .collect();

    let mut exit = Exit::Ok;
    let mut objects = Vec::with_capacity(results.len());
    for (client, route, table, turn) in &results {
        let pair = (client.id.as_str(), route.name.as_str());
        let (object, pair_exit) = match turn {
            // Trouble with one API (credentials refused, certificate,
            // token endpoint) fails that pair only; a lost database stopped
            // the fleet and is exit 3.
            Turn::Ran(v, Exit::Environment) if stopped.is_none() => (v.clone(), Exit::Failed),
            Turn::Ran(v, e) => (v.clone(), *e),
            Turn::UpToDate(last) => (
                idle_summary(
                    pair,
                    table,
                    settings,
                    json!({"status": "up_to_date", "loaded_until": last, "error": null}),
                ),
                Exit::Ok,
            ),
            Turn::Busy => (
                idle_summary(
                    pair,
                    table,
                    settings,
                    json!({"status": "busy", "error": null}),
                ),
                Exit::Ok,
            ),
            Turn::NotStarted(why, e) if *e == Exit::Environment && stopped.is_none() => (
                idle_summary(
                    pair,
                    table,
                    settings,
                    json!({"status": "not_started", "error": why, "exit_code": e.code()}),
                ),
                Exit::Failed,
            ),
            Turn::NotStarted(why, e) => (
                idle_summary(
                    pair,
                    table,
                    settings,
                    json!({"status": "not_started", "error": why, "exit_code": e.code()}),
                ),
                *e,
            ),
            Turn::Skipped(why) => (
                idle_summary(
                    pair,
                    table,
                    settings,
                    json!({"status": "skipped", "error": "a sincronização parou antes deste par", "exit_code": why.code()}),
                ),
                *why,
            ),
        };
        exit = exit.merge(fleet_exit(pair_exit));
        objects.push(object);
    }
    if ctx.interrupted.load(Ordering::SeqCst) {
        exit = exit.merge(Exit::Interrupted);
    }
    let totals = totals(&objects, started.elapsed());
    if a.json {
        crate::outln!(
            "{}",
            json!({"pairs": objects, "totals": totals, "exit_code": exit.code()})
        );
    } else {
        crate::outp!("{}", render(&objects, &totals, style));
    }
    Ok(exit)
}

/// A pair's exit as the fleet's: a pair refused before it started (missing
/// secret, no start point) is that pair's failure (1), not bad usage of the
/// fleet; a lost database stays 3.
fn fleet_exit(e: Exit) -> Exit {
    match e {
        Exit::Usage => Exit::Failed,
        other => other,
    }
}

/// The configured pairs, in config order, narrowed by the filters. A
/// filter that names nothing configured is refused (exit 2).
fn select<'c>(
    cfg: &'c Config,
    clients: &[String],
    routes: &[String],
) -> Result<Vec<(&'c Client, &'c Route)>> {
    for c in clients {
        cfg.client(c)?;
    }
    let chosen: Vec<&Client> = cfg
        .clients
        .values()
        .filter(|c| clients.is_empty() || clients.contains(&c.id))
        .collect();
    for r in routes {
        if !chosen.iter().any(|c| c.routes.contains_key(r)) {
            return Err(usage(format!(
                "--route '{r}' is not a route of any selected client"
            )));
        }
    }
    let pairs: Vec<(&Client, &Route)> = chosen
        .into_iter()
        .flat_map(|c| c.routes.values().map(move |r| (c, r)))
        .filter(|(_, r)| routes.is_empty() || routes.contains(&r.name))
        .collect();
    if pairs.is_empty() {
        return Err(usage(
            "no (client, route) pair to sync: the config has no routes",
        ));
    }
    Ok(pairs)
}

/// One pair: joins the scrap another process is loading for it, or decides
/// its period under the lock and loads it. After a joined scrap ends well,
/// the period is decided again: the joined one may be an older night's.
/// Its lines and progress go to `news`.
#[allow(clippy::too_many_arguments)]
fn pair_turn(
    ctx: &Context<'_>,
    cfg: &Config,
    client: &Client,
    route: &Route,
    from: Option<NaiveDate>,
    until: Option<NaiveDate>,
    lookback: Option<u32>,
    news: &Sender<Watch>,
) -> Turn {
    if let Err(e) = ctx.auth(client) {
        return Turn::NotStarted(format!("{e:#}"), Exit::Usage);
    }
    let until =
        until.unwrap_or_else(|| dates::today_in(route.timezone.as_ref()) - Duration::days(1));
    if let Some(f) = from.filter(|f| *f > until) {
        return Turn::NotStarted(format!("--from {f} is after --until {until}"), Exit::Usage);
    }
    let lookback = lookback.unwrap_or(DEFAULT_LOOKBACK_DAYS);
    let mut runs: Vec<(Value, Exit)> = Vec::new();
    // A joined scrap, then at most one decided: two turns at most.
    for _ in 0..2 {
        let step = match decide(ctx, cfg, client, route, from, until, lookback) {
            Ok(s) => s,
            Err(e) => return Turn::NotStarted(format!("{e:#}"), classify(&e)),
        };
        let (id, joined) = match step {
            Step::Run { id, joined } => (id, joined),
            Step::UpToDate(last) if runs.is_empty() => return Turn::UpToDate(last),
            Step::Busy if runs.is_empty() => return Turn::Busy,
            Step::UpToDate(_) | Step::Busy => break,
        };
        let line = ctx.style.line(
            "🔄",
            &format!(
                "Sincronizando {} / {}: scrap {id}{}",
                client.id,
                route.name,
                if joined { " (em andamento, junto)" } else { "" }
            ),
        );
        drop(news.send(Watch::Note(line)));
        match scrap::execute(ctx, id, true, Some(news)) {
            Ok((e, summary)) => {
                let mut v = serde_json::to_value(&summary).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("error".into(), Value::Null);
                }
                let go_on = e == Exit::Ok && joined && !ctx.quit.load(Ordering::SeqCst);
                runs.push((v, e));
                if !go_on {
                    break;
                }
            }
            Err(e) => {
                let why = format!("{e:#}");
                return Turn::NotStarted(why, classify(&e));
            }
        }
    }
    let (mut last, mut exit) = runs.pop().expect("a pair that ran has a run");
    // Counters of an earlier (joined) run are the pair's too.
    for (v, e) in runs {
        exit = exit.merge(e);
        for k in [
            "records_fetched",
            "inserted",
            "duplicates",
            "out_of_period",
            "undated",
            "sanitised",
            "pages",
            "retries",
        ] {
            let sum = last[k].as_i64().unwrap_or(0) + v[k].as_i64().unwrap_or(0);
            last[k] = json!(sum);
        }
    }
    Turn::Ran(last, exit)
}

/// The pairs grouped by client, in config order. Lanes work side by side,
/// each taking the next client when it is free: a client's routes stay in
/// one lane, one after another, so this process never asks a client twice
/// at once (each run keeps the client's rate limit).
fn by_client(pairs: &[(&Client, &Route)]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, (c, _)) in pairs.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if pairs[g[0]].0.id == c.id => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

/// The line that says how a pair's turn ended without a run.
fn tell(turn: &Turn, client: &Client, route: &Route, say: impl Fn(&str, String)) {
    let (c, r) = (&client.id, &route.name);
    match turn {
        Turn::NotStarted(why, _) => say("❌", format!("Par {c} / {r} não iniciado: {why}")),
        Turn::UpToDate(last) => say(
            "✅",
            format!(
                "Nada novo para {c} / {r}: carregado até {}",
                last.map(|d| d.to_string())
                    .unwrap_or_else(|| "(nada)".into())
            ),
        ),
        Turn::Busy => say(
            "⏳",
            format!("Outra sincronização de {c} / {r} está em andamento: nada a fazer"),
        ),
        _ => {}
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The main thread while the lanes work: their lines and notices as they
/// come, and every `every` one fleet progress line with the pair count.
fn watch(
    lanes: &[Receiver<Watch>],
    style: report::Style,
    every: std::time::Duration,
    n: usize,
    turns: &Mutex<Vec<Option<Turn>>>,
    started: Instant,
) {
    // Per lane: the latest figures of its run in progress. Finished pairs
    // count by their summaries (a run shorter than a tick sends none).
    let mut current: Vec<Option<Snapshot>> = vec![None; lanes.len()];
    let mut open = lanes.len();
    let ticker = channel::tick(every.max(std::time::Duration::from_millis(100)));
    let mut sel = Select::new();
    for rx in lanes {
        sel.recv(rx);
    }
    let tick = sel.recv(&ticker);
    let mut gone = vec![false; lanes.len()];
    while open > 0 {
        let op = sel.select();
        let i = op.index();
        if i == tick {
            let _ = op.recv(&ticker);
            let (finished, done_runs, mut pages, mut records) = {
                let turns = lock(turns);
                let mut done_runs = Vec::new();
                let (mut pages, mut records, mut finished) = (0u64, 0u64, 0usize);
                for t in turns.iter().flatten() {
                    finished += 1;
                    if let Turn::Ran(v, _) = t {
                        pages += v["pages"].as_u64().unwrap_or(0);
                        records += v["records_fetched"].as_u64().unwrap_or(0);
                        done_runs.extend(v["run_id"].as_i64());
                    }
                }
                (finished, done_runs, pages, records)
            };
            for s in current.iter().flatten() {
                if !done_runs.contains(&s.run_id) {
                    pages += s.pages;
                    records += s.records;
                }
            }
            eprintln!(
                "{}",
                style.line(
                    "🧩",
                    &format!(
                        "pares {finished}/{n} | {}",
                        style.fleet_progress(pages, records, started.elapsed())
                    )
                )
            );
            continue;
        }
        match op.recv(&lanes[i]) {
            Ok(Watch::Progress(s)) => current[i] = Some(s),
            Ok(Watch::Notice(n)) => eprintln!("{}", style.notice(&n)),
            Ok(Watch::Note(line)) => eprintln!("{line}"),
            Err(_) => {
                if !gone[i] {
                    gone[i] = true;
                    open -= 1;
                    sel.remove(i);
                }
            }
        }
    }
}

/// What to do for a pair now.
enum Step {
    Run { id: i64, joined: bool },
    UpToDate(Option<NaiveDate>),
    Busy,
}

/// The pair's scrap in progress if there is one, else its period decided
/// under the pair's lock and a scrap created and recorded for it.
fn decide(
    ctx: &Context<'_>,
    cfg: &Config,
    client: &Client,
    route: &Route,
    from: Option<NaiveDate>,
    until: NaiveDate,
    lookback: u32,
) -> Result<Step> {
    let db = ctx.database()?;
    let waited = Instant::now();
    loop {
        let conn = db.connect()?;
        match SyncLock::try_take(conn, &client.id, &route.name)? {
            Some(mut lock) => {
                if let Some(id) = in_progress(&mut lock.conn, &client.id, &route.name)? {
                    return Ok(Step::Run { id, joined: true });
                }
                let last = ledger::last_loaded_day(&mut lock.conn, &client.id, &route.name)?;
                let Some((start, end)) = period(last, from, route.start_date, until, lookback)?
                else {
                    return Ok(Step::UpToDate(last));
                };
                let id = scrap::create_scrap(ctx, cfg, &client.id, &route.name, start, end)?.id;
                lock.record_scrap(id)?;
                return Ok(Step::Run { id, joined: false });
            }
            None => {
                let mut conn = db.connect()?;
                if let Some(id) = in_progress(&mut conn, &client.id, &route.name)? {
                    return Ok(Step::Run { id, joined: true });
                }
                if waited.elapsed() > DECIDING_WAIT || ctx.quit.load(Ordering::SeqCst) {
                    return Ok(Step::Busy);
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }
}

/// The scrap a sync recorded for the pair, while it has slices not yet
/// done or failed.
fn in_progress(c: &mut postgres::Client, client: &str, route: &str) -> Result<Option<i64>> {
    let row = c.query_opt(
        "SELECT p.scrap_id FROM atlas.sync_pairs p
         WHERE p.client = $1 AND p.route = $2 AND p.scrap_id IS NOT NULL
           AND EXISTS (SELECT 1 FROM atlas.slices s
                       WHERE s.scrap_id = p.scrap_id AND s.status IN ($3, $4))",
        &[
            &client,
            &route,
            &SliceStatus::Pending.as_str(),
            &SliceStatus::Running.as_str(),
        ],
    )?;
    Ok(row.map(|r| r.get(0)))
}

/// The fleet's totals over the pairs' objects.
fn totals(pairs: &[Value], elapsed: std::time::Duration) -> Value {
    let sum = |k: &str| -> i64 { pairs.iter().map(|p| p[k].as_i64().unwrap_or(0)).sum() };
    let count = |f: &dyn Fn(&Value) -> bool| pairs.iter().filter(|p| f(p)).count();
    json!({
        "pairs": pairs.len(),
        "pairs_ok": count(&|p| p["exit_code"] == 0),
        "pairs_failed": count(&|p| p["exit_code"] != 0),
        "records_fetched": sum("records_fetched"),
        "inserted": sum("inserted"),
        "duplicates": sum("duplicates"),
        "slices_done": sum("slices_done"),
        "slices_failed": sum("slices_failed"),
        "elapsed_secs": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
    })
}

/// The text report: one table row per pair, then the totals.
fn render(pairs: &[Value], totals: &Value, style: report::Style) -> String {
    let text = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let num = |v: &Value| thousands(v.as_i64().unwrap_or(0).max(0) as u64);
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|p| {
            let period = match (p["from"].as_str(), p["to"].as_str()) {
                (Some(f), Some(t)) => format!("{f} a {t}"),
                _ => "-".into(),
            };
            vec![
                text(&p["client"]),
                text(&p["route"]),
                period,
                num(&p["inserted"]),
                num(&p["duplicates"]),
                num(&p["slices_failed"]),
                text(&p["status"]),
            ]
        })
        .collect();
    let mut out = report::table(
        &[
            "cliente",
            "rota",
            "período",
            "inseridos",
            "duplicados",
            "fatias com falha",
            "status",
        ],
        &rows,
    );
    out.push_str(&style.line(
        "📥",
        &format!(
            "Total: {} pares ({} ok, {} com problema) | inseridos {} | duplicados {} | fatias com falha {} | {}s\n",
            totals["pairs"],
            totals["pairs_ok"],
            totals["pairs_failed"],
            num(&totals["inserted"]),
            num(&totals["duplicates"]),
            num(&totals["slices_failed"]),
            totals["elapsed_secs"],
        ),
    ));
    out
}
