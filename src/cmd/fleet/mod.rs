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

mod board;
mod decide;
mod turn;

pub(super) use decide::select;

use super::pair::{self, lookback_days};
use super::{scrap_run, Context};
use crate::cli::SyncArgs;
use crate::db;
use crate::exit::{classify, usage, Exit};
use crate::ledger;
use crate::pipeline;
use crate::pipeline::gate::Settling;
use crate::report::fleet::FleetReport;
use crate::report::{self, Summary, Watch};
use anyhow::Result;
use board::{in_parallel, lock, watch, Board};
use crossbeam::channel;
use decide::{start_pair, Plan};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use turn::{after_rounds, end_of, fleet_exit, goes_again, merged, told, End, Start, Turn};

/// Pairs decided and handed to the crew in one wave: a wave's runs, plans
/// and objects are dropped when it ends (only its report stays), so a
/// fleet's memory does not grow with its number of pairs.
const WAVE: usize = 256;

pub fn run(ctx: &Context<'_>, a: &SyncArgs) -> Result<Exit> {
    let (from, until) = pair::period_flags(a)?;
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
                                    &report::fleet::pair_begins((c, n), &client.id, &route.name),
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
                            // Nothing more after a joined scrap: the runs stand.
                            let ended = after_rounds(turn, std::mem::take(&mut ran[i]));
                            if let Some((emoji, text)) = told(&ended, &client.id, &route.name) {
                                drop(news.send(Watch::note(style, emoji, &text)));
                            }
                            turns[i] = Some(ended);
                            board.settle(i);
                        }
                        (Start::Nothing(v, e, joined), _, _) => {
                            ran[i].push((v, e));
                            if goes_again(joined, e, false) {
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
                            if goes_again(joined, e, ctx.quit.load(Ordering::SeqCst)) {
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
    let stopped = ends.iter().any(|e| e.env_trouble) && db.connect().is_err();
    let exit = fleet_exit(&ends, stopped, ctx.interrupted.load(Ordering::SeqCst));
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
