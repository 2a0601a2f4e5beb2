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
mod close;
mod decide;
mod pace;
mod tables;
mod turn;
mod wave;

pub(super) use decide::select;

use super::pair::{self, lookback_days};
use super::{scrap_run, Context};
use crate::cli::SyncArgs;
use crate::config::{Client, Route, Settings};
use crate::db::{self, Db};
use crate::exit::{classify, usage, Exit};
use crate::ledger;
use crate::pipeline::{self, tune, Outcome};
use crate::report::fleet::FleetReport;
use crate::report::{self, Summary, Watch};
use anyhow::Result;
use board::{in_parallel, lock, watch, Board};
use crossbeam::channel::{self, Sender};
use decide::{start_pair, Plan};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use turn::{after_rounds, end_of, fleet_exit, goes_again, merged, told, End, Start, Turn};
use wave::Pre;

/// Pairs decided and handed to the crew in one wave: a wave's runs, plans
/// and objects are dropped when it ends (only its report stays), so a
/// fleet's memory does not grow with its number of pairs.
const WAVE: usize = 256;

/// Threads closing runs as they end: one, so that the runs ending while
/// it closes others are closed together.
const CLOSERS: usize = 1;

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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One pool for the whole fleet: deciding, the crew, the summaries, with
    // room for the most deciders and writers a far database may get
    // (opened lazily, capped by `max_db_connections`), its first
    // connections opened while the schema and the link are checked.
    // Deciding pairs goes on while the crew works.
    let most = settings.threads + settings.threads.max(cores) + tune::MAX_WRITERS + 2;
    let pool = db.pool(most as u32, settings.threads.min(cores.max(4)));
    // A database that refuses says so at once, as every other command does
    // (a pool would wait for its timeout and lose the cause).
    let mut conn = db.connect()?;
    let t = Instant::now();
    db::require_schema(&mut conn)?;
    let seen = t.elapsed();
    // Across the network, more threads wait on the ledger's round trips and
    // the writers fit the link as `scrap run`'s do.
    let round_trip = db::round_trip(&mut conn, tune::NEAR, seen)?;
    drop(conn);
    let mut crew = tune::plan(settings, round_trip, pool.max_size());
    let pace = pace::pace(
        settings.threads,
        cores,
        crew.writers,
        pool.max_size() as usize,
        round_trip,
    );
    crew.writers = pace.writers;
    let (settings, deciders) = (&crew, pace.deciders);
    let worker = ledger::worker_id(&ctx.host, &ledger::Locality::current(), std::process::id());

    let style = ctx.style;
    let started = Instant::now();
    let n = pairs.len();
    let fleet = Fleet {
        ctx,
        settings,
        db,
        pool,
        worker,
        plan: Plan {
            from,
            until,
            lookback,
        },
        deciders,
        started,
        quits: (0..n).map(|_| AtomicBool::new(false)).collect(),
        skipped: (0..n).map(|_| Mutex::new(None)).collect(),
        board: Board::default(),
        begun: AtomicUsize::new(0),
        ahead: Mutex::new(Vec::new()),
        making_tables: AtomicBool::new(false),
        pairs,
    };
    let mut turns = Turns {
        turns: (0..n).map(|_| None).collect(),
        ran: (0..n).map(|_| Vec::new()).collect(),
    };
    // What each pair came to, told in the report as its wave ends.
    let mut report = FleetReport::with_metrics(settings.metrics_file.is_some());
    let mut ends: Vec<End> = Vec::with_capacity(n);
    let (news, news_rx) = channel::unbounded::<Watch>();
    std::thread::scope(|scope| {
        let board = &fleet.board;
        let printer = scope.spawn(|| watch(&news_rx, style, settings.progress, n, board, started));
        let order: Vec<usize> = (0..n).collect();
        let waves: Vec<&[usize]> = order.chunks(WAVE).collect();
        for (w, &wave) in waves.iter().enumerate() {
            // The next wave's tables may be made while this one loads.
            *lock(&fleet.ahead) = waves.get(w + 1).map_or_else(Vec::new, |n| n.to_vec());
            fleet.wave(wave, &news, &mut turns);
            // The wave's pairs are over: only their report is kept.
            for &i in wave {
                let (client, route) = fleet.pairs[i];
                let turn = turns.turns[i]
                    .take()
                    .unwrap_or(Turn::Skipped(Exit::Interrupted));
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

/// What every round of the fleet works with: its settings and connections,
/// the pairs, and what their threads share.
struct Fleet<'a> {
    ctx: &'a Context<'a>,
    settings: &'a Settings,
    db: &'a Db,
    pool: db::Pool,
    worker: String,
    pairs: Vec<(&'a Client, &'a Route)>,
    plan: Plan,
    /// Threads that decide pairs and close their runs.
    deciders: usize,
    started: Instant,
    /// Each pair's own stop (its client refused the credentials); a stop
    /// signal or a lost database stops them all.
    quits: Vec<AtomicBool>,
    /// Days each pair's new scrap skipped as loaded already (its summary says so).
    skipped: Vec<Mutex<Option<i64>>>,
    board: Board,
    /// Pairs begun so far, for the line of each.
    begun: AtomicUsize,
    /// The next wave's pairs, taken by the wave's first round: whose
    /// missing tables it makes once its own are made (`make_tables_ahead`).
    ahead: Mutex<Vec<usize>>,
    /// Some wave had tables to make: from then on each makes the next's.
    making_tables: AtomicBool,
}

/// Where each pair stands across rounds: its turn once over, and the
/// summaries of its runs so far (of joined scraps, then its own).
struct Turns {
    turns: Vec<Option<Turn>>,
    ran: Vec<Vec<(Value, Exit)>>,
}

/// A run to close once the crew is done: its pair, its run, whether it
/// joined another process's scrap, and how it went.
type Finishing<'a> = (usize, Box<scrap_run::Ready<'a>>, bool, Outcome);

/// A pair's run closed: its summary and why it stopped early, or why it
/// could not be closed.
type Closed = Result<((Exit, Summary), Option<String>), String>;

impl<'a> Fleet<'a> {
    /// The pairs of a wave, in up to two rounds: the wave's, then those that
    /// joined a scrap of another process and must now decide their own period.
    fn wave(&self, wave: &[usize], news: &Sender<Watch>, turns: &mut Turns) {
        let mut todo: Vec<usize> = wave.to_vec();
        for _round in 0..2 {
            if todo.is_empty() {
                break;
            }
            todo = self.round(&todo, news, turns);
            todo.sort_unstable();
        }
        log::debug!("summaries done after {:?}", self.started.elapsed());
        // Joined twice (another process's scraps both times): the runs stand.
        for i in todo {
            turns.turns[i] = Some(merged(std::mem::take(&mut turns.ran[i])));
        }
    }

    /// One round of the pairs `todo`: decided, run, closed. The pairs whose
    /// joined scrap is over, to go again.
    fn round(&self, todo: &[usize], news: &Sender<Watch>, turns: &mut Turns) -> Vec<usize> {
        let readies: Vec<OnceLock<Box<scrap_run::Ready>>> =
            todo.iter().map(|_| OnceLock::new()).collect();
        let closed: Vec<OnceLock<(Exit, Summary)>> = todo.iter().map(|_| OnceLock::new()).collect();
        let ran_at = Instant::now();
        let (starts, outcomes) = self.work(todo, &readies, &closed, &turns.ran, news, ran_at);
        let elapsed = ran_at.elapsed();
        log::debug!("runs ended after {:?}", self.started.elapsed());
        let style = self.ctx.style;
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
                    let (client, route) = self.pairs[i];
                    // Nothing more after a joined scrap: the runs stand.
                    let ended = after_rounds(turn, std::mem::take(&mut turns.ran[i]));
                    if let Some((emoji, text)) = told(&ended, &client.id, &route.name) {
                        drop(news.send(Watch::note(style, emoji, &text)));
                    }
                    turns.turns[i] = Some(ended);
                    self.board.settle(i);
                }
                (Start::Nothing(v, e, joined), _, _) => {
                    turns.ran[i].push((v, e));
                    if goes_again(joined, e, false) {
                        again.push(i);
                    } else {
                        turns.turns[i] = Some(merged(std::mem::take(&mut turns.ran[i])));
                        self.board.settle(i);
                    }
                }
                _ => {
                    turns.turns[i] = Some(Turn::Skipped(Exit::Interrupted));
                    self.board.settle(i);
                }
            }
        }
        ends.extend(self.finish(finishing, elapsed, news));
        for (i, joined, end) in ends {
            match end {
                Ok(((e, summary), error)) => {
                    let mut v = serde_json::to_value(&summary).unwrap_or(Value::Null);
                    if let Some(o) = v.as_object_mut() {
                        // Why the run stopped early, if it did.
                        o.insert("error".into(), json!(error));
                        o.insert(
                            "days_skipped".into(),
                            json!(lock(&self.skipped[i]).unwrap_or(0)),
                        );
                    }
                    turns.ran[i].push((v, e));
                    if goes_again(joined, e, self.ctx.quit.load(Ordering::SeqCst)) {
                        again.push(i);
                    } else {
                        turns.turns[i] = Some(merged(std::mem::take(&mut turns.ran[i])));
                        self.board.settle(i);
                    }
                }
                Err(why) => {
                    turns.turns[i] = Some(Turn::NotStarted(why, Exit::Environment));
                    self.board.settle(i);
                }
            }
        }
        again
    }

    /// The pairs `todo` decided and their runs started on `deciders`
    /// threads while the crew already works the runs handed over; runs over
    /// while the crew works others are closed right away (`closed`). How
    /// each pair began, and each run's outcome.
    fn work<'r>(
        &'r self,
        todo: &'r [usize],
        readies: &'r [OnceLock<Box<scrap_run::Ready<'a>>>],
        closed: &'r [OnceLock<(Exit, Summary)>],
        ran: &'r [Vec<(Value, Exit)>],
        news: &'r Sender<Watch>,
        ran_at: Instant,
    ) -> (Vec<Start<'a>>, Vec<Option<Outcome>>) {
        let (ctx, style, n) = (self.ctx, self.ctx.style, self.pairs.len());
        let jobs: Vec<OnceLock<pipeline::Job>> = todo.iter().map(|_| OnceLock::new()).collect();
        let (handed, handed_rx) = channel::unbounded::<usize>();
        let (over, over_rx) = channel::unbounded::<(usize, Outcome)>();
        let handing = close::Handing::default();
        std::thread::scope(|s| {
            let handing = &handing;
            let ks: Vec<usize> = (0..todo.len()).collect();
            let jobs = &jobs;
            let preparing = s.spawn(move || {
                // Writers never wait for a gate left pending.
                let missing = tables::Pending::new(readies);
                // Each pair's first line, in order; a stop skips the rest.
                let mut live = Vec::new();
                let mut pre: Vec<Mutex<Option<Pre>>> = Vec::with_capacity(ks.len());
                for &k in &ks {
                    let i = todo[k];
                    let (client, route) = self.pairs[i];
                    if ctx.quit.load(Ordering::SeqCst) {
                        let over = Start::Over(Turn::Skipped(Exit::Interrupted));
                        pre.push(Mutex::new(Some(Pre::Decided(over))));
                        continue;
                    }
                    if ran[i].is_empty() {
                        let c = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
                        drop(news.send(Watch::note(
                            style,
                            "🧩",
                            &report::fleet::pair_begins((c, n), &client.id, &route.name),
                        )));
                    }
                    live.push(k);
                    pre.push(Mutex::new(Some(Pre::Alone)));
                }
                // The pairs decided and their runs started together.
                if let Ok(mut conn) = self.pool.get() {
                    let pairs: Vec<_> = live.iter().map(|&k| self.pairs[todo[k]]).collect();
                    let decided = wave::decide(
                        ctx,
                        &mut conn,
                        &self.worker,
                        &pairs,
                        &self.plan,
                        self.deciders,
                        news,
                    );
                    for (&k, d) in live.iter().zip(decided) {
                        *lock(&pre[k]) = Some(d);
                    }
                }
                let starts = in_parallel(self.deciders, &ks, |k| {
                    let i = todo[k];
                    let (client, route) = self.pairs[i];
                    let mut conn = None;
                    let start = match lock(&pre[k]).take() {
                        Some(Pre::Decided(start)) => start,
                        _ if ctx.quit.load(Ordering::SeqCst) => {
                            return Start::Over(Turn::Skipped(Exit::Interrupted));
                        }
                        _ => {
                            // One connection decides the pair, starts its run
                            // and makes its table sure.
                            let c = match self.pool.get() {
                                Ok(c) => conn.insert(c),
                                Err(e) => {
                                    let e = anyhow::Error::from(e);
                                    let why = format!("{e:#}");
                                    return Start::Over(Turn::NotStarted(why, classify(&e)));
                                }
                            };
                            let worker = &self.worker;
                            start_pair(ctx, c, worker, client, route, &self.plan, news)
                        }
                    };
                    match start {
                        Start::Ready(r, joined, table_exists, days) => {
                            if let Some(d) = days {
                                *lock(&self.skipped[i]) = Some(d);
                            }
                            let r = readies[k].get_or_init(|| r);
                            if table_exists {
                                r.table_gate().settle(Ok(()));
                            } else {
                                // Created with the wave's other missing tables, below.
                                missing.push(k);
                            }
                            let job = r.job(ctx, self.pool.clone(), &self.quits[i], Some(news));
                            self.board.runs(job.run_id, i);
                            log::debug!(
                                "handed run {} ({} / {})",
                                job.run_id,
                                client.id,
                                route.name
                            );
                            drop(jobs[k].set(job));
                            // The crew reads until the channel closes.
                            handing.handed.fetch_add(1, Ordering::SeqCst);
                            let _ = handed.send(k);
                            Start::Handed(joined)
                        }
                        other => other,
                    }
                });
                // The missing tables are created while the first pages are fetched.
                let created = missing.readies();
                self.make_tables_sure(&created);
                drop(handed);
                handing.done.store(true, Ordering::SeqCst);
                // A wave that made tables (a first night): the next wave's
                // are made now, while this one loads, not before it can start.
                let next = std::mem::take(&mut *lock(&self.ahead));
                if !created.is_empty() {
                    self.making_tables.store(true, Ordering::SeqCst);
                }
                if self.making_tables.load(Ordering::SeqCst) {
                    self.make_tables_ahead(&next);
                }
                starts
            });
            // Runs over while the crew works others are closed by one
            // thread: those over while it closes others are closed together
            // next, in two statements whatever their number.
            let closers: Vec<_> = (0..CLOSERS)
                .map(|_| {
                    let over_rx = over_rx.clone();
                    s.spawn(move || {
                        self.close_over(&over_rx, readies, closed, ran_at, news, handing)
                    })
                })
                .collect();
            drop(over_rx);
            let outcomes = pipeline::run_many(
                self.settings,
                style,
                Some(news),
                jobs,
                &handed_rx,
                ctx.quit,
                Some(&over),
            );
            drop(over);
            for c in closers {
                drop(c.join());
            }
            (preparing.join().unwrap_or_default(), outcomes)
        })
    }
}
