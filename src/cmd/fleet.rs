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

use super::pair::{self, idle_summary, lookback_days, SyncLock};
use super::{day_flag, scrap_run, Context};
use crate::cli::SyncArgs;
use crate::config::{Client, Config, Route};
use crate::db;
use crate::exit::{classify, usage, Exit};
use crate::ident;
use crate::ledger::{self, NewTable};
use crate::pipeline;
use crate::pipeline::gate::Settling;
use crate::report;
use crate::report::fleet::FleetReport;
use crate::report::{Snapshot, Summary, Watch};
use anyhow::Result;
use chrono::NaiveDate;
use crossbeam::channel::{self, Receiver, Sender};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

/// Pairs decided and handed to the crew in one wave: a wave's runs, plans
/// and objects are dropped when it ends (only its report stays), so a
/// fleet's memory does not grow with its number of pairs.
const WAVE: usize = 256;

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
    let lookback = lookback_days(a.lookback_days)?;
    let cfg = ctx.config()?;
    let pairs = select(cfg, &a.client, &a.route)?;
    // A last day that has not begun for some pair refuses the whole fleet.
    if let Some(u) = until {
        for (_, route) in &pairs {
            super::not_after_today(u, route, "--until")?;
        }
    }
    let settings = ctx.settings()?;
    let db = ctx.database()?;
    // A database that refuses says so at once, as every other command does
    // (a pool would wait for its timeout and lose the cause).
    drop(db.connect()?);
    // Deciding and finishing pairs is round trips to the database, which
    // shares the machine's cores with the crew: more at once than there are
    // cores only slows the first runs' start (measured: 8 deciders against
    // 2 cores start the fleet ~0.1 s later than 2).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let deciders = settings.threads.min(cores).max(1);
    // One pool for the whole fleet: deciding, the crew, the summaries.
    // Deciding pairs goes on while the crew works.
    let pool = db.pool((settings.threads + deciders + settings.writers + 2) as u32)?;
    db::require_schema(&mut *pool.get()?)?;
    let worker = ledger::worker_id(&ctx.host, &ledger::Locality::current(), std::process::id());

    let style = ctx.style;
    let started = Instant::now();
    let n = pairs.len();
    let plan = Plan {
        from,
        until,
        lookback,
    };
    // Each pair's own stop (its client refused the credentials); a stop
    // signal or a lost database stops them all.
    let quits: Vec<AtomicBool> = (0..n).map(|_| AtomicBool::new(false)).collect();
    let mut turns: Vec<Option<Turn>> = (0..n).map(|_| None).collect();
    let mut ran: Vec<Vec<(Value, Exit)>> = (0..n).map(|_| Vec::new()).collect();
    // Days each pair's new scrap skipped as loaded already (its summary says so).
    let skipped: Vec<Mutex<Option<i64>>> = (0..n).map(|_| Mutex::new(None)).collect();
    // What each pair came to, told in the report as its wave ends.
    let mut report = FleetReport::with_metrics(settings.metrics_file.is_some());
    let mut ends: Vec<End> = Vec::with_capacity(n);
    let (news, news_rx) = channel::unbounded::<Watch>();
    let board = Board::default();
    std::thread::scope(|scope| {
        let printer = scope.spawn(|| watch(&news_rx, style, settings.progress, n, &board, started));
        let begun = AtomicUsize::new(0);
        let order: Vec<usize> = (0..n).collect();
        for wave in order.chunks(WAVE) {
            // The pairs to work this round: the wave's, then those that joined
            // a scrap of another process and must now decide their own period.
            let mut todo: Vec<usize> = wave.to_vec();
            for _round in 0..2 {
                if todo.is_empty() {
                    break;
                }
                // Pairs are decided and their runs started on `threads` threads
                // while the crew already works the runs handed over.
                let readies: Vec<OnceLock<Box<scrap_run::Ready>>> =
                    todo.iter().map(|_| OnceLock::new()).collect();
                let jobs: Vec<OnceLock<pipeline::Job>> =
                    todo.iter().map(|_| OnceLock::new()).collect();
                let (handed, handed_rx) = channel::unbounded::<usize>();
                // Runs over while the crew works others are closed right away.
                let (over, over_rx) = channel::unbounded::<(usize, pipeline::Outcome)>();
                let closed: Vec<OnceLock<(Exit, Summary)>> =
                    todo.iter().map(|_| OnceLock::new()).collect();
                let ran_at = Instant::now();
                let (starts, outcomes) = std::thread::scope(|s| {
                    let ks: Vec<usize> = (0..todo.len()).collect();
                    let (todo, readies, jobs, ran, begun, news, quits) =
                        (&todo, &readies, &jobs, &ran, &begun, &news, &quits);
                    let (board, pool, worker, plan, pairs) =
                        (&board, &pool, &worker, &plan, &pairs);
                    let skipped = &skipped;
                    let closed = &closed;
                    let preparing = s.spawn(move || {
                        let starts = in_parallel(deciders, &ks, |k| {
                            let i = todo[k];
                            let (client, route) = pairs[i];
                            if ctx.quit.load(Ordering::SeqCst) {
                                return Start::Over(Turn::Skipped(Exit::Interrupted));
                            }
                            if ran[i].is_empty() {
                                let c = begun.fetch_add(1, Ordering::SeqCst) + 1;
                                drop(news.send(Watch::note(
                                    style,
                                    "🧩",
                                    &format!("pares {c}/{n}: {} / {}", client.id, route.name),
                                )));
                            }
                            // One connection decides the pair, starts its run
                            // and makes its table sure.
                            let mut conn = match pool.get() {
                                Ok(c) => c,
                                Err(e) => {
                                    let e = anyhow::Error::from(e);
                                    let why = format!("{e:#}");
                                    return Start::Over(Turn::NotStarted(why, classify(&e)));
                                }
                            };
                            match start_pair(ctx, &mut conn, worker, client, route, plan, news) {
                                Start::Ready(r, joined, table_exists, days) => {
                                    if let Some(d) = days {
                                        *lock(&skipped[i]) = Some(d);
                                    }
                                    let r = readies[k].get_or_init(|| r);
                                    // Writers never wait for a gate left pending.
                                    let _settling = Settling(r.table_gate());
                                    if table_exists {
                                        r.table_gate().settle(Ok(()));
                                    }
                                    let job = r.job(ctx, pool.clone(), &quits[i], Some(news));
                                    board.runs(job.run_id, i);
                                    log::debug!(
                                        "handed run {} ({} / {})",
                                        job.run_id,
                                        client.id,
                                        route.name
                                    );
                                    drop(jobs[k].set(job));
                                    // The crew reads until the channel closes.
                                    let _ = handed.send(k);
                                    // The table is created while the first pages are fetched.
                                    if !table_exists {
                                        r.make_table_sure(&mut conn);
                                    }
                                    Start::Handed(joined)
                                }
                                other => other,
                            }
                        });
                        drop(handed);
                        starts
                    });
                    let closing = s.spawn(move || {
                        for (k, outcome) in over_rx {
                            // Without a connection now, the run is closed with the others.
                            let (Some(r), Ok(mut c)) = (readies[k].get(), pool.get()) else {
                                continue;
                            };
                            let end = scrap_run::finish(
                                ctx,
                                &mut c,
                                r,
                                &outcome,
                                ran_at.elapsed(),
                                true,
                                Some(news),
                            );
                            drop(closed[k].set(end));
                        }
                    });
                    let outcomes = pipeline::run_many(
                        settings,
                        style,
                        Some(news),
                        jobs,
                        &handed_rx,
                        ctx.quit,
                        Some(&over),
                    );
                    drop(over);
                    drop(closing.join());
                    (preparing.join().unwrap_or_default(), outcomes)
                });
                let elapsed = ran_at.elapsed();
                drop(jobs);
                log::debug!("runs ended after {:?}", started.elapsed());
                let mut finishing = Vec::new();
                let mut ends = Vec::new();
                // Pairs whose joined scrap is over: their own period next round.
                let mut again = Vec::new();
                for ((k, start), (ready, outcome)) in starts
                    .into_iter()
                    .enumerate()
                    .zip(readies.into_iter().map(OnceLock::into_inner).zip(outcomes))
                {
                    let i = todo[k];
                    match (start, ready, outcome) {
                        (Start::Handed(joined), Some(r), Some(o)) => match closed[k].get() {
                            // Closed while the crew worked the others: it did not stop early.
                            Some(end) => ends.push((i, joined, Ok((end.clone(), None)))),
                            None => finishing.push((i, r, joined, o)),
                        },
                        (Start::Over(turn), _, _) => {
                            let (client, route) = pairs[i];
                            let ended = if ran[i].is_empty() {
                                turn
                            } else {
                                // Nothing more after a joined scrap: the runs stand.
                                match turn {
                                    Turn::UpToDate(_) | Turn::Busy | Turn::Skipped(_) => {
                                        merged(std::mem::take(&mut ran[i]))
                                    }
                                    other => other,
                                }
                            };
                            tell(&ended, client, route, |emoji, text| {
                                drop(news.send(Watch::note(style, emoji, &text)))
                            });
                            turns[i] = Some(ended);
                            board.settle(i);
                        }
                        (Start::Nothing(v, e, joined), _, _) => {
                            ran[i].push((v, e));
                            if joined && e == Exit::Ok {
                                again.push(i);
                            } else {
                                turns[i] = Some(merged(std::mem::take(&mut ran[i])));
                                board.settle(i);
                            }
                        }
                        _ => {
                            turns[i] = Some(Turn::Skipped(Exit::Interrupted));
                            board.settle(i);
                        }
                    }
                }
                // With the database lost, a pooled connection would only time out.
                let lost = finishing.iter().any(|(_, _, _, o)| o.database_lost);
                let idx: Vec<usize> = (0..finishing.len()).collect();
                let slots: Vec<Mutex<Option<_>>> =
                    finishing.into_iter().map(|w| Mutex::new(Some(w))).collect();
                ends.extend(in_parallel(deciders, &idx, |k| {
                    let (i, r, joined, outcome) =
                        lock(&slots[k]).take().expect("each run ends once");
                    let pooled = if lost { None } else { pool.get().ok() };
                    let summary = match pooled {
                        Some(mut c) => {
                            scrap_run::finish(ctx, &mut c, &r, &outcome, elapsed, true, Some(&news))
                        }
                        None => match db.connect() {
                            Ok(mut c) => scrap_run::finish(
                                ctx,
                                &mut c,
                                &r,
                                &outcome,
                                elapsed,
                                true,
                                Some(&news),
                            ),
                            Err(e) => {
                                let why = format!("{e:#}");
                                return (i, joined, Err(why));
                            }
                        },
                    };
                    (i, joined, Ok((summary, outcome.error)))
                }));
                todo = again;
                for (i, joined, end) in ends {
                    match end {
                        Ok(((e, summary), error)) => {
                            let mut v = serde_json::to_value(&summary).unwrap_or(Value::Null);
                            if let Some(o) = v.as_object_mut() {
                                // Why the run stopped early, if it did.
                                o.insert("error".into(), json!(error));
                                o.insert(
                                    "days_skipped".into(),
                                    json!(lock(&skipped[i]).unwrap_or(0)),
                                );
                            }
                            ran[i].push((v, e));
                            if joined && e == Exit::Ok && !ctx.quit.load(Ordering::SeqCst) {
                                todo.push(i);
                            } else {
                                turns[i] = Some(merged(std::mem::take(&mut ran[i])));
                                board.settle(i);
                            }
                        }
                        Err(why) => {
                            turns[i] = Some(Turn::NotStarted(why, Exit::Environment));
                            board.settle(i);
                        }
                    }
                }
                todo.sort_unstable();
            }
            log::debug!("summaries done after {:?}", started.elapsed());
            // Joined twice (another process's scraps both times): the runs stand.
            for i in todo {
                turns[i] = Some(merged(std::mem::take(&mut ran[i])));
            }
            // The wave's pairs are over: only their report is kept.
            for &i in wave {
                let (client, route) = pairs[i];
                let turn = turns[i].take().unwrap_or(Turn::Skipped(Exit::Interrupted));
                ends.push(end_of(turn, client, route, settings, &mut report));
            }
        }
        drop(news);
        drop(printer.join());
    });
    // The database itself is gone (not one API's trouble): the fleet stopped.
    let env_trouble = ends.iter().any(|e| e.env_trouble);
    let stopped = env_trouble && db.connect().is_err();
    let mut exit = Exit::Ok;
    for e in &ends {
        // Trouble with one API (credentials refused, certificate, token
        // endpoint) fails that pair only; a lost database stopped the fleet
        // and is exit 3.
        let pair_exit = match e.exit {
            Exit::Environment if !stopped => Exit::Failed,
            other => other,
        };
        exit = exit.merge(fleet_exit(pair_exit));
    }
    if ctx.interrupted.load(Ordering::SeqCst) {
        exit = exit.merge(Exit::Interrupted);
    }
    let elapsed = started.elapsed();
    if !a.json {
        crate::outp!("{}", report.render(style, elapsed));
    }
    let object = report.json(exit.code(), elapsed);
    if a.json {
        crate::outln!("{object}");
    }
    super::alert::after_fleet(ctx, &report, &object, exit.code());
    Ok(exit)
}

/// What a pair came to, for the fleet's exit code.
struct End {
    exit: Exit,
    /// The pair met trouble with the environment that may be the database
    /// itself (not the API's credentials): the fleet checks whether it stopped.
    env_trouble: bool,
}

/// A pair's turn told in the report; what the fleet's exit needs of it.
fn end_of(
    turn: Turn,
    client: &Client,
    route: &Route,
    settings: &crate::config::Settings,
    report: &mut FleetReport,
) -> End {
    let table = ident::raw_table(&client.id, &route.name).unwrap_or_default();
    let pair = (client.id.as_str(), route.name.as_str());
    let idle = |fields: Value| idle_summary(pair, &table, settings, fields);
    let (object, exit, env_trouble) = match turn {
        Turn::Ran(v, e) => {
            let trouble = e == Exit::Environment && v["status"] != report::AUTH_REFUSED;
            (v, e, trouble)
        }
        Turn::UpToDate(last) => (
            idle(json!({"status": "up_to_date", "loaded_until": last, "error": null})),
            Exit::Ok,
            false,
        ),
        Turn::Busy => (
            idle(json!({"status": "busy", "error": null})),
            Exit::Ok,
            false,
        ),
        Turn::NotStarted(why, e) => (
            idle(json!({"status": "not_started", "error": why, "exit_code": e.code()})),
            e,
            e == Exit::Environment,
        ),
        Turn::Skipped(why) => (
            idle(
                json!({"status": "skipped", "error": "a sincronização parou antes deste par", "exit_code": why.code()}),
            ),
            why,
            false,
        ),
    };
    report.push(&object, unix_now());
    End { exit, env_trouble }
}

/// Now in Unix seconds (a pair's end, for its metrics).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
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
pub(super) fn select<'c>(
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

/// The period rules of the fleet's flags, the same for every pair.
struct Plan {
    from: Option<NaiveDate>,
    until: Option<NaiveDate>,
    lookback: u32,
}

/// How a pair's round begins.
enum Start<'c> {
    /// Its turn is over without a run (or before one): up to date, busy,
    /// not started, skipped.
    Over(Turn),
    /// Its scrap had nothing left to run: the summary, and whether it was
    /// another process's scrap (joined).
    Nothing(Value, Exit, bool),
    /// A run ready for the crew, whether it joins another process's scrap,
    /// and whether its raw table is known to exist (else it is made sure
    /// of once the run is handed over).
    Ready(Box<scrap_run::Ready<'c>>, bool, bool, Option<i64>),
    /// Such a run, handed over to the crew.
    Handed(bool),
}

/// A pair's scrap in progress joined, or its period decided and a scrap
/// created; then its run started in the ledger.
#[allow(clippy::too_many_arguments)]
fn start_pair<'c>(
    ctx: &'c Context<'_>,
    conn: &mut postgres::Client,
    worker: &str,
    client: &Client,
    route: &Route,
    plan: &Plan,
    news: &Sender<Watch>,
) -> Start<'c> {
    let not_started =
        |e: anyhow::Error| Start::Over(Turn::NotStarted(format!("{e:#}"), classify(&e)));
    let until = match pair::until_of(plan.until, route) {
        Ok(u) => u,
        Err(e) => return not_started(e),
    };
    if let Some(f) = plan.from.filter(|f| *f > until) {
        return Start::Over(Turn::NotStarted(
            format!("--from {f} is after --until {until}"),
            Exit::Usage,
        ));
    }
    // Everything that can refuse the pair, before anything of it is written.
    let checked = ctx
        .secrets(route)
        .and_then(|_| pair::check_before_writes(ctx, client));
    if let Err(e) = checked {
        return not_started(e);
    }
    let pair_plan = pair::Plan {
        from: plan.from,
        until,
        lookback: plan.lookback,
    };
    let (id, joined, table_exists, days, fresh) = match decide(ctx, conn, client, route, &pair_plan)
    {
        Ok(Decided::Step(pair::Step::Run {
            id,
            joined,
            table_exists,
            skipped,
            fresh,
        })) => (id, joined, table_exists, skipped, fresh),
        Ok(Decided::Step(pair::Step::UpToDate(last))) => return Start::Over(Turn::UpToDate(last)),
        Ok(Decided::Busy) => return Start::Over(Turn::Busy),
        Err(e) => return not_started(e),
    };
    drop(news.send(Watch::note(
        ctx.style,
        "🔄",
        &format!(
            "Sincronizando {} / {}: scrap {id}{}",
            client.id,
            route.name,
            if joined { " (em andamento, junto)" } else { "" }
        ),
    )));
    let prepared = match fresh {
        Some((scrap, slices)) => {
            scrap_run::prepare_fresh(ctx, conn, scrap, slices, Some(news), worker)
        }
        None => scrap_run::prepare(ctx, conn, id, true, Some(news), worker),
    };
    match prepared {
        Ok(scrap_run::Prepared::Ready(r)) => Start::Ready(r, joined, table_exists, days),
        Ok(scrap_run::Prepared::Nothing(e, summary)) => {
            let mut v = serde_json::to_value(&*summary).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("error".into(), Value::Null);
            }
            Start::Nothing(v, e, joined)
        }
        Err(e) => not_started(e),
    }
}

/// A pair's runs as one turn: the last one's summary, with the counters of
/// an earlier (joined) run added.
fn merged(mut runs: Vec<(Value, Exit)>) -> Turn {
    let Some((mut last, mut exit)) = runs.pop() else {
        return Turn::Skipped(Exit::Interrupted);
    };
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

/// `f` over `items` on up to `threads` threads (database round trips of
/// many pairs at once); results in the order of `items`.
fn in_parallel<T: Send>(threads: usize, items: &[usize], f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let out: Vec<Mutex<Option<T>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = items.get(k) else { break };
                *lock(&out[k]) = Some(f(i));
            });
        }
    });
    out.into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .expect("every item is done")
        })
        .collect()
}

/// What the progress lines count: pairs settled, and which pair each run
/// is (a run whose slices have all ended counts its pair as finished).
#[derive(Default)]
struct Board {
    settled: Mutex<std::collections::HashSet<usize>>,
    runs: Mutex<std::collections::HashMap<i64, usize>>,
}

impl Board {
    fn settle(&self, pair: usize) {
        lock(&self.settled).insert(pair);
    }

    fn runs(&self, run: i64, pair: usize) {
        lock(&self.runs).insert(run, pair);
    }
}

/// Prints the fleet's lines and notices as they come, and every `every`
/// one progress line: pairs finished, and pages and records of every run.
fn watch(
    rx: &Receiver<Watch>,
    style: report::Style,
    every: std::time::Duration,
    n: usize,
    board: &Board,
    started: Instant,
) {
    let mut current: std::collections::HashMap<i64, Snapshot> = Default::default();
    let ticker = channel::tick(every.max(std::time::Duration::from_millis(100)));
    loop {
        channel::select! {
            recv(ticker) -> _ => {
                let mut finished = lock(&board.settled).clone();
                let runs = lock(&board.runs);
                let (mut pages, mut records) = (0u64, 0u64);
                for s in current.values() {
                    pages += s.pages;
                    records += s.records;
                    if s.slices_done + s.slices_failed >= s.slices_total {
                        finished.extend(runs.get(&s.run_id));
                    }
                }
                drop(runs);
                eprintln!(
                    "{}",
                    style.line(
                        "🧩",
                        &format!(
                            "pares {}/{n} | {}",
                            finished.len(),
                            style.fleet_progress(pages, records, started.elapsed())
                        )
                    )
                );
            }
            recv(rx) -> w => match w {
                Ok(Watch::Progress(s)) => {
                    current.insert(s.run_id, s);
                }
                Ok(Watch::Notice(n)) => eprintln!("{}", style.notice(&n)),
                Ok(Watch::Note(_, line)) => eprintln!("{line}"),
                Err(_) => return,
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What deciding a pair came to: a step under its lock, or busy (another
/// sync held the lock all along without a scrap to join).
enum Decided {
    Step(pair::Step),
    Busy,
}

/// The pair's scrap in progress if there is one, else the days it needs
/// decided under the pair's lock and a scrap created and recorded for them.
fn decide(
    ctx: &Context<'_>,
    conn: &mut postgres::Client,
    client: &Client,
    route: &Route,
    plan: &pair::Plan,
) -> Result<Decided> {
    let waited = Instant::now();
    loop {
        if let Some(mut lock) = SyncLock::try_take(&mut *conn, &client.id, &route.name)? {
            // A missing table is created after the run is handed over.
            return pair::decide_locked(ctx, &mut lock, client, route, plan, NewTable::Later)
                .map(Decided::Step);
        }
        // Another sync holds the pair: join its scrap once recorded.
        if let Some(id) = pair::in_progress(conn, &client.id, &route.name)? {
            return Ok(Decided::Step(pair::Step::Run {
                id,
                joined: true,
                table_exists: false,
                skipped: None,
                fresh: None,
            }));
        }
        if waited.elapsed() > DECIDING_WAIT || ctx.quit.load(Ordering::SeqCst) {
            return Ok(Decided::Busy);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
