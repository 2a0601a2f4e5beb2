//! Runs of scraps: the thread scope, the channel between fetchers and
//! writers, the main thread's ticker (progress and workers' notices), and the
//! merge of how the workers ended into one [`Outcome`] per run.
//!
//! Fetchers (`fetch`) claim slices and send each page's rows as a [`Chunk`]
//! through a bounded channel to writers (`write`) that commit batches;
//! `track` knows when a slice is finished and keeps the leases alive.
//! Workers never print: they send [`Notice`]s that the main thread shows.
//! One crew of fetchers and writers can work several runs at once (`sync
//! --all`): each run is a lane with its own ledger state, and the runs of
//! one client share its rate limit, its HTTP agent and a fair share of the
//! fetchers.
//!
//! Invariants: a send blocks when the channel is full (backpressure, never a
//! drop); a slice is marked done only after every row it sent is committed
//! (see `track`); a batch and its slice counters commit in one transaction,
//! so nothing is counted twice.

mod budget;
mod fetch;
pub mod gate;
mod share;
mod track;
mod write;

use crate::config::{Client, Route, Settings};
use crate::db::{self, Pool};
use crate::exit::Exit;
use crate::http::{self, Limiter, ResolvedAuth};
use crate::ledger::{Claim, RunTotals, Scrap};
use crate::record::{PageRows, Row};
use crate::report::{ErrorContext, ErrorLog, Notice, Snapshot, Style, Watch};
use crate::retry::{Backoff, Policy, Verdict};
use anyhow::Result;
use crossbeam::channel::{self, Receiver, Sender};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Instant;
use track::SliceTrack;

/// Everything a run needs, validated and resolved.
pub struct Job<'a> {
    pub scrap: &'a Scrap,
    pub client: &'a Client,
    pub route: &'a Route,
    pub settings: &'a Settings,
    pub pool: Pool,
    pub worker: String,
    pub run_id: i64,
    pub auth: ResolvedAuth,
    /// The secrets the route's templates name, read once.
    pub secrets: crate::config::template::Secrets,
    pub backoff: Backoff,
    pub errlog: &'a ErrorLog,
    pub style: Style,
    /// Raised by a stop signal or by an abort: stop fetching, flush, release.
    pub quit: &'a AtomicBool,
    /// Raised by a stop signal (SIGINT, SIGTERM, SIGHUP) only.
    pub interrupted: &'a AtomicBool,
    /// Where progress goes, and the scrap's slices as the run began.
    pub progress: ProgressFeed,
    /// Some slice was running when the run was prepared: a dead local
    /// process may hold it, so the first claim looks for one.
    pub held_at_start: bool,
    /// Pages of the pair's last slice done (0: none known): how many pages
    /// a slice's page 1 is asked for with (`speculative_pages`).
    pub pages_hint: u64,
    /// Passed by the writers before their first batch: the raw table exists.
    pub table: &'a gate::TableGate,
    /// The route's first day still open when the run began: a slice loaded
    /// whole that reaches it is recorded `open`, not `done`.
    pub open_from: chrono::NaiveDate,
}

/// The ticker's audience: stderr lines (the CLI) or a watcher (the manager),
/// which then also gets the workers' notices instead of stderr.
#[derive(Default)]
pub struct ProgressFeed {
    pub sink: Option<Sender<Watch>>,
    /// The scrap's slices in all.
    pub slices_total: u64,
    /// Its slices already done when the run began.
    pub slices_done_before: u64,
}

/// How often a watcher gets figures: a screen wants them fresher than a log.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// How the run went, for the summary and the exit code.
pub struct Outcome {
    pub totals: RunTotals,
    pub exit: Exit,
    pub error: Option<String>,
    /// The API refused the client's credentials (exit 3, `auth_refused`).
    pub auth_refused: bool,
    /// The database stayed unreachable through every retry.
    pub database_lost: bool,
}

/// Why the run stopped before working every slice it could.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Abort {
    /// The API refused the client's credentials: no slice can succeed.
    Auth(String),
    /// The database stayed unreachable through every retry.
    Database(String),
    /// Another environment failure that no slice can get past (an untrusted
    /// TLS certificate): the message says what.
    Environment(String),
}

/// Live counters, read by the ticker.
#[derive(Default)]
struct Counters {
    pages: AtomicU64,
    records: AtomicU64,
    inserted: AtomicU64,
    duplicates: AtomicU64,
    out_of_period: AtomicU64,
    undated: AtomicU64,
    sanitised: AtomicU64,
    retries: AtomicU64,
    slices_done: AtomicU64,
    /// Of `slices_done`, those recorded `open`.
    slices_open: AtomicU64,
    slices_failed: AtomicU64,
    /// Requests sent, by the class of their answer.
    http: crate::requests::Counts,
}

/// Adds `n` to a live counter.
fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// A page fetched, with what its records became.
    fn count_page(&self, rows: &PageRows) {
        add(&self.pages, 1);
        add(&self.records, rows.fetched);
        add(&self.out_of_period, rows.out_of_period);
        add(&self.undated, rows.undated);
        add(&self.sanitised, rows.sanitised.len() as u64);
    }

    /// A request sent, by its answer's status (none: no answer came).
    fn count_request(&self, got: &Result<crate::http::Fetched, crate::http::Failure>) {
        let status = match got {
            Ok(f) => Some(f.status),
            Err(f) => f.status(),
        };
        self.http.count(status);
    }

    fn totals(&self) -> RunTotals {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        RunTotals {
            pages: g(&self.pages),
            records: g(&self.records),
            inserted: g(&self.inserted),
            duplicates: g(&self.duplicates),
            out_of_period: g(&self.out_of_period),
            undated: g(&self.undated),
            sanitised: g(&self.sanitised),
            retries: g(&self.retries),
            slices_done: g(&self.slices_done) as i32,
            slices_open: g(&self.slices_open) as i32,
            slices_failed: g(&self.slices_failed) as i32,
            http: self.http.totals(),
        }
    }
}

/// A page's rows on their way to a writer; it holds its slice until
/// committed, and the bytes its rows take from the memory budget until dropped.
struct Chunk {
    /// The run (lane) the rows belong to.
    lane: usize,
    slice: Arc<SliceTrack>,
    rows: Vec<Row>,
    _held: Option<budget::Reserved>,
}

/// Pages a writer may have queued ahead: bounds memory to a few pages per
/// fetcher while keeping writers busy.
fn channel_capacity(s: &Settings) -> usize {
    s.channel_capacity.unwrap_or(2 * s.threads.max(s.writers))
}

/// A lock that survives a panicked holder: the data stays usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wakes fetchers with nothing to do when pages are queued, a page 1 that
/// may spread is done, or a run stops. A waiter reads the generation before
/// it looks for work, so a wake-up between the two is not lost.
#[derive(Default)]
struct Wake {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Wake {
    fn generation(&self) -> u64 {
        *lock(&self.generation)
    }

    fn notify(&self) {
        *lock(&self.generation) += 1;
        self.cv.notify_all();
    }

    /// Waits up to `timeout` unless something happened since `seen`.
    fn wait(&self, seen: u64, timeout: std::time::Duration) {
        let g = lock(&self.generation);
        if *g == seen {
            drop(self.cv.wait_timeout(g, timeout));
        }
    }
}

/// What the runs of one client share in a crew.
#[derive(Clone)]
struct ClientShare {
    limiter: Arc<Limiter>,
    agent: ureq::Agent,
    /// Fetchers working for the client right now (the fair share).
    busy: Arc<AtomicUsize>,
}

/// What every worker thread shares about one run (a lane of the crew).
struct Shared<'j, 'a> {
    job: &'j Job<'a>,
    /// This run's index among the crew's runs.
    lane: usize,
    counters: Counters,
    limiter: Arc<Limiter>,
    agent: ureq::Agent,
    busy: Arc<AtomicUsize>,
    wake: Arc<Wake>,
    /// Nothing left to claim for this run in this process.
    exhausted: AtomicBool,
    /// While other workers hold the run's last slices: when to look again.
    next_poll: Mutex<Option<Instant>>,
    /// Slices of a dead local process are taken over before the run's
    /// first claim decides what is free and what to wait for.
    first_claim: std::sync::Once,
    /// The first reason the run stopped early.
    abort: Mutex<Option<Abort>>,
    /// To the main thread, which shows them: workers never print.
    notices: Sender<Notice>,
    /// Slices whose pages any fetcher may take (`parallel_pages`).
    ahead: Mutex<VecDeque<Arc<fetch::Spread>>>,
    /// Fetchers on a page 1 that may spread: idle ones wait for it.
    spreading: AtomicUsize,
    /// Pages the run's last slice with a known count had (the pair's last
    /// slice done before the run, at first): the next slice's guess.
    pages_hint: AtomicU64,
    /// Slices claimed in one statement, not yet started by a fetcher.
    claimed: Mutex<VecDeque<Claim>>,
    /// Held while one fetcher claims for this run, so that the others
    /// wait for its batch instead of claiming their own; `claimed` itself
    /// is only locked for a moment, never across a round trip.
    claiming: Mutex<()>,
    /// Slices this run has claimed so far.
    claimed_total: AtomicU64,
    /// Of those, the ones whose end is recorded (or found taken over).
    ends_recorded: AtomicU64,
    /// Told over (see `tell_if_over`): its outcome is out already.
    over: AtomicBool,
    /// Where a run's outcome goes as soon as it is over, if anywhere.
    over_tx: Option<Sender<(usize, Outcome)>>,
    /// When the crew started (the elapsed time of its snapshots).
    crew_started: Instant,
    /// Slice ends waiting to be recorded, several in one statement.
    ends: Mutex<track::Ends>,
    /// Bytes of pages in flight (`ATLAS_MEMORY_MB`).
    budget: Arc<budget::Budget>,
}

impl<'a> Shared<'_, 'a> {
    /// The figures of the run so far, for the ticker.
    fn snapshot(&self, elapsed: std::time::Duration) -> Snapshot {
        let k = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let p = &self.job.progress;
        Snapshot {
            run_id: self.job.run_id,
            pages: g(&k.pages),
            records: g(&k.records),
            inserted: g(&k.inserted),
            duplicates: g(&k.duplicates),
            retries: g(&k.retries),
            elapsed,
            slices_done: p.slices_done_before + g(&k.slices_done),
            slices_failed: g(&k.slices_failed),
            slices_total: p.slices_total,
            slices_todo: p.slices_total.saturating_sub(p.slices_done_before),
        }
    }

    /// Stops the run: the first reason given is the one reported.
    fn abort(&self, why: Abort) {
        lock(&self.abort).get_or_insert(why);
        self.job.quit.store(true, Ordering::SeqCst);
        self.wake.notify();
    }

    fn aborted(&self) -> bool {
        lock(&self.abort).is_some()
    }

    /// Once nothing is left for the run in this process (every slice it
    /// claimed has its end recorded, and no more can be claimed), its
    /// outcome is told at once, while the crew works the other runs: the
    /// fleet closes it then. A run stopping (signal, abort) is told at the
    /// end, with the crew's verdict.
    fn tell_if_over(&self) {
        let Some(tx) = &self.over_tx else { return };
        let claimed = self.claimed_total.load(Ordering::SeqCst);
        if self.job.quit.load(Ordering::SeqCst)
            || !self.exhausted.load(Ordering::SeqCst)
            || self.ends_recorded.load(Ordering::SeqCst) != claimed
            || !lock(&self.claimed).is_empty()
            || !lock(&self.ahead).is_empty()
            || self.over.swap(true, Ordering::SeqCst)
        {
            return;
        }
        if let Some(sink) = &self.job.progress.sink {
            drop(sink.send(Watch::Progress(self.snapshot(self.crew_started.elapsed()))));
        }
        let done = outcome(self.counters.totals(), None, Trouble::default(), false);
        drop(tx.send((self.lane, done)));
    }

    fn notify(&self, n: Notice) {
        // The receiver lives until every worker has ended: a send cannot fail
        // while anyone listens, and after that there is nobody to tell.
        let _ = self.notices.send(n);
    }

    fn ctx(&self, claim: Option<&Claim>) -> ErrorContext {
        ErrorContext {
            scrap: Some(self.job.scrap.id),
            client: self.job.client.id.clone(),
            route: self.job.route.name.clone(),
            slice: claim.map(|c| (c.from, c.to)),
            ..Default::default()
        }
    }

    /// The run's retry policy; its waits do not yield to `quit`.
    fn policy(&self) -> Policy<'a> {
        Policy {
            attempts: self.job.settings.retry_max,
            backoff: self.job.backoff,
            quit: None,
        }
    }

    /// One ledger call on a pooled connection, not retried.
    fn db_once<T>(&self, f: impl FnOnce(&mut postgres::Client) -> Result<T>) -> Result<T> {
        let mut conn = self.job.pool.get()?;
        f(&mut conn)
    }

    /// A ledger call, retried while the database may come back.
    fn with_db<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut postgres::Client) -> Result<T>,
    ) -> Result<T> {
        self.policy()
            .run(
                |_| self.db_once(&mut f),
                |e| Verdict::retry_if(db::retryable(e)),
                |e, r| {
                    log::warn!("{what}: {e:#}; retrying in {:.1}s", r.wait.as_secs_f64());
                    add(&self.counters.retries, 1);
                },
            )
            .map_err(|g| g.error.context(what.to_string()))
    }
}

/// Raises `quit` if the thread holding it unwinds, so the others stop in order.
struct PanicGuard<'a>(&'a AtomicBool);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// The worker threads of a run, started in a scope. A panic in one raises
/// `quit`; each holds a clone of `done` until it ends, so the receiver
/// disconnects when the last worker has ended.
struct Crew<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    quit: &'scope AtomicBool,
    done: Sender<()>,
    handles: Vec<std::io::Result<ScopedJoinHandle<'scope, ()>>>,
}

impl<'scope> Crew<'scope, '_> {
    fn spawn(&mut self, name: String, work: impl FnOnce() + Send + 'scope) {
        let (quit, done) = (self.quit, self.done.clone());
        let handle = std::thread::Builder::new()
            .name(name)
            // Fetchers parse and canonicalise bodies nested up to json::MAX_DEPTH.
            .stack_size(crate::json::THREAD_STACK)
            .spawn_scoped(self.scope, move || {
                let _guard = PanicGuard(quit);
                work();
                drop(done);
            });
        self.handles.push(handle);
    }

    /// Every worker is started: the handles to join.
    fn started(self) -> Vec<std::io::Result<ScopedJoinHandle<'scope, ()>>> {
        self.handles
    }
}

/// Shows workers' notices on stderr, the waiting line once per run.
struct NoticeBoard {
    style: Style,
    waiting_shown: bool,
}

impl NoticeBoard {
    /// The line to show for `n`, if it is to be shown.
    fn line(&mut self, n: &Notice) -> Option<String> {
        let repeat =
            matches!(n, Notice::Waiting { .. }) && std::mem::replace(&mut self.waiting_shown, true);
        (!repeat).then(|| self.style.notice(n))
    }

    /// On stderr, or to the watcher when there is one.
    fn show(&mut self, n: &Notice, sink: Option<&Sender<Watch>>) {
        if let Some(line) = self.line(n) {
            match sink {
                // A watcher that went away has nobody left to tell.
                Some(tx) => drop(tx.send(Watch::Notice(n.clone()))),
                None => eprintln!("{line}"),
            }
        }
    }
}

/// Runs the job to the end and reports what happened.
pub fn run(job: Job<'_>) -> Outcome {
    let (settings, style, quit) = (job.settings, job.style, job.quit);
    let sink = job.progress.sink.clone();
    let jobs = [OnceLock::from(job)];
    let (handed, handed_rx) = channel::bounded(1);
    let _ = handed.send(0); // the receiver is right here
    drop(handed);
    let mut outcomes = run_many(
        settings,
        style,
        sink.as_ref(),
        &jobs,
        &handed_rx,
        quit,
        None,
    );
    outcomes.pop().flatten().expect("the job was handed over")
}

/// The crew's runs: a slot per job, filled as each job is handed over.
struct Lanes<'j, 'a> {
    slots: Vec<OnceLock<Shared<'j, 'a>>>,
    /// Every job that will come has been handed over.
    complete: AtomicBool,
    /// The crew's figures (threads, writers, lease, batch).
    settings: &'j Settings,
    wake: Arc<Wake>,
}

impl<'j, 'a> Lanes<'j, 'a> {
    /// The runs handed over so far.
    fn active(&self) -> Vec<&Shared<'j, 'a>> {
        self.slots.iter().filter_map(OnceLock::get).collect()
    }

    /// The run of a chunk (handed over, since a fetcher sent it).
    fn lane(&self, i: usize) -> &Shared<'j, 'a> {
        self.slots[i].get().expect("a chunk's run was handed over")
    }
}

/// Runs several jobs with one crew: `settings.threads` fetchers take slices
/// and pages from every job (fairly between clients), `settings.writers`
/// writers commit every job's rows, one ticker reports each job's progress
/// to its feed (or stderr). Jobs are handed over as they are ready: each
/// index received on `handed` is a filled slot of `jobs`, and the crew
/// ends once `handed` is closed and every handed job is worked. `stop` (a
/// stop signal) stops every job; a job's own `quit` stops it alone (its
/// client refused the credentials), and a database given up on by one job
/// stops them all. One outcome per slot (`None`: never handed over); a
/// run over before the others is also told on `over` right then.
pub fn run_many<'j, 'a>(
    settings: &'j Settings,
    style: Style,
    sink: Option<&Sender<Watch>>,
    jobs: &'j [OnceLock<Job<'a>>],
    handed: &Receiver<usize>,
    stop: &AtomicBool,
    over: Option<&Sender<(usize, Outcome)>>,
) -> Vec<Option<Outcome>> {
    let started = Instant::now();
    // Unbounded: notices are few (a retry, a failed slice), and a worker
    // must never wait on the screen.
    let (notices, notices_rx) = channel::unbounded::<Notice>();
    let budget = Arc::new(budget::Budget::new(settings.memory_mb));
    let lanes = Lanes {
        slots: jobs.iter().map(|_| OnceLock::new()).collect(),
        complete: AtomicBool::new(false),
        settings,
        wake: Arc::new(Wake::default()),
    };
    let mut clients: std::collections::HashMap<&str, ClientShare> = Default::default();
    // One agent per set of trusted roots, shared by the clients that trust
    // the same (most: no `ca_file`): an agent holds a copy of every root
    // (~0.5 MB), which per client made a fleet's memory grow with its size.
    let mut agents: Vec<(&[rustls::pki_types::CertificateDer<'static>], ureq::Agent)> = Vec::new();
    let mut hand_over = |lane: usize| {
        let Some(job) = jobs.get(lane).and_then(OnceLock::get) else {
            return;
        };
        let trust = job.client.ca_certs.as_slice();
        let agent = match agents.iter().find(|(t, _)| *t == trust) {
            Some((_, a)) => a.clone(),
            None => {
                let a = http::agent_trusting(job.settings.timeout, trust);
                agents.push((trust, a.clone()));
                a
            }
        };
        let share = clients
            .entry(job.client.id.as_str())
            .or_insert_with(|| ClientShare {
                limiter: {
                    let limiter = Limiter::new(job.client.rate_limit_per_sec);
                    // A configured rate is split among the processes
                    // working the client: none is sent before its part is known.
                    limiter.hold();
                    Arc::new(limiter)
                },
                agent,
                busy: Arc::new(AtomicUsize::new(0)),
            })
            .clone();
        if stop.load(Ordering::SeqCst) {
            job.quit.store(true, Ordering::SeqCst);
        }
        drop(lanes.slots[lane].set(Shared {
            job,
            lane,
            counters: Counters::default(),
            limiter: share.limiter,
            agent: share.agent,
            busy: share.busy,
            wake: Arc::clone(&lanes.wake),
            exhausted: AtomicBool::new(false),
            next_poll: Mutex::new(None),
            first_claim: std::sync::Once::new(),
            abort: Mutex::new(None),
            notices: notices.clone(),
            ahead: Mutex::new(VecDeque::new()),
            spreading: AtomicUsize::new(0),
            pages_hint: AtomicU64::new(job.pages_hint),
            claimed: Mutex::new(VecDeque::new()),
            claiming: Mutex::new(()),
            claimed_total: AtomicU64::new(0),
            ends_recorded: AtomicU64::new(0),
            over: AtomicBool::new(false),
            over_tx: over.cloned(),
            crew_started: started,
            ends: Mutex::new(track::Ends::default()),
            budget: Arc::clone(&budget),
        }));
        lanes.wake.notify();
    };
    // Jobs handed over before the crew starts are there from its first claim.
    let mut handing = true;
    loop {
        match handed.try_recv() {
            Ok(i) => hand_over(i),
            Err(channel::TryRecvError::Empty) => break,
            Err(channel::TryRecvError::Disconnected) => {
                handing = false;
                break;
            }
        }
    }
    lanes.complete.store(!handing, Ordering::SeqCst);
    let mut board = NoticeBoard {
        style,
        waiting_shown: false,
    };
    let (tx, rx) = channel::bounded::<Chunk>(channel_capacity(settings));
    let (done_tx, done_rx) = channel::bounded::<()>(0);
    let mut panicked = false;
    // Why a worker thread could not be started (not a panic).
    let mut not_started: Option<String> = None;
    let turn = AtomicUsize::new(0);
    let never = channel::never::<usize>();
    std::thread::scope(|s| {
        let (lanes, turn) = (&lanes, &turn);
        let mut crew = Crew {
            scope: s,
            quit: stop,
            done: done_tx,
            handles: Vec::new(),
        };
        for i in 0..settings.writers {
            let rx = rx.clone();
            crew.spawn(format!("writer-{i}"), move || write::writer(lanes, &rx));
        }
        drop(rx);
        for i in 0..settings.threads {
            let tx = tx.clone();
            crew.spawn(format!("fetcher-{i}"), move || {
                fetch::fetcher(lanes, &tx, turn)
            });
        }
        drop(tx);
        let handles = crew.started();
        // Keeps our leases alive while slices are worked, until told to stop.
        let (leases_stop, leases_stop_rx) = channel::bounded::<()>(0);
        let leases = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn_scoped(s, move || track::renew_leases(lanes, &leases_stop_rx));
        // Shares the clients' rates with the other processes working them.
        let (rates_stop, rates_stop_rx) = channel::bounded::<()>(0);
        let rates = std::thread::Builder::new()
            .name("rates".into())
            .spawn_scoped(s, move || share::share_rates(lanes, &rates_stop_rx));
        // Progress from a ticker, notices as they come, jobs as they are
        // handed over, until every worker has ended; a stop is passed on to
        // every job within a tenth of a second.
        let ticker = channel::tick(match sink {
            Some(_) => WATCH_INTERVAL,
            None => settings.progress,
        });
        let watchdog = channel::tick(std::time::Duration::from_millis(100));
        loop {
            let handed = if handing { handed } else { &never };
            channel::select! {
                recv(handed) -> i => match i {
                    Ok(i) => hand_over(i),
                    Err(_) => {
                        handing = false;
                        lanes.complete.store(true, Ordering::SeqCst);
                        lanes.wake.notify();
                    }
                },
                recv(ticker) -> _ => {
                    for lane in lanes.active() {
                        let snap = lane.snapshot(started.elapsed());
                        match &lane.job.progress.sink {
                            Some(tx) => drop(tx.send(Watch::Progress(snap))),
                            None => eprintln!("{}", lane.job.style.progress(&snap)),
                        }
                    }
                }
                recv(watchdog) -> _ => pass_stops(&lanes.active(), stop),
                recv(notices_rx) -> n => {
                    if let Ok(n) = n {
                        board.show(&n, sink);
                    }
                }
                recv(done_rx) -> _ => break,
            }
        }
        for h in handles {
            match h {
                Ok(h) => panicked |= h.join().is_err(),
                Err(e) => {
                    log::error!("cannot start a worker thread: {e}");
                    not_started.get_or_insert_with(|| format!("{e}"));
                }
            }
        }
        drop((leases_stop, rates_stop));
        for (h, what) in [(leases, "lease heartbeat"), (rates, "rate sharing")] {
            match h {
                Ok(h) => panicked |= h.join().is_err(),
                Err(e) => {
                    log::error!("cannot start the {what} thread: {e}");
                    not_started.get_or_insert_with(|| format!("{e}"));
                }
            }
        }
    });
    drop(notices);
    for lane in lanes.active() {
        // Told now, with the crew's verdict (a panic, a stop).
        lane.over.store(true, Ordering::SeqCst);
        // Pages left queued (every fetcher ended early, e.g. by a panic):
        // their slices go back to pending.
        lane.release_queued_pages();
        lane.release_unstarted_claims();
    }
    for n in notices_rx.try_iter() {
        board.show(&n, sink);
    }
    lanes
        .slots
        .iter()
        .map(|slot| {
            let lane = slot.get()?;
            let job = lane.job;
            if let Some(tx) = &job.progress.sink {
                drop(tx.send(Watch::Progress(lane.snapshot(started.elapsed()))));
            }
            let abort = lock(&lane.abort).clone();
            Some(outcome(
                lane.counters.totals(),
                abort,
                Trouble {
                    panicked,
                    not_started: not_started.clone(),
                },
                job.interrupted.load(Ordering::SeqCst),
            ))
        })
        .collect()
}

/// A stop signal stops every job; so does a database that one job gave up
/// on (the others would meet it too). A job stopped by its own trouble
/// (credentials refused) stops alone.
fn pass_stops(lanes: &[&Shared], stop: &AtomicBool) {
    let lost = lanes
        .iter()
        .any(|l| matches!(*lock(&l.abort), Some(Abort::Database(_))));
    if stop.load(Ordering::SeqCst) || lost {
        let mut woke = false;
        for l in lanes {
            woke |= !l.job.quit.swap(true, Ordering::SeqCst);
        }
        if woke {
            if let Some(l) = lanes.first() {
                l.wake.notify();
            }
        }
    }
}

/// What went wrong with the run's own threads.
#[derive(Debug, Default)]
struct Trouble {
    /// A worker thread panicked.
    panicked: bool,
    /// A thread could not be started (the system refused it): why.
    not_started: Option<String>,
}

/// How the run ended: an abort says most, then a panic, then a stop signal
/// (named), then
/// whether any slice failed.
fn outcome(totals: RunTotals, abort: Option<Abort>, trouble: Trouble, ctrl_c: bool) -> Outcome {
    let Trouble {
        panicked,
        not_started,
    } = trouble;
    let auth_refused = matches!(abort, Some(Abort::Auth(_)));
    let database_lost = matches!(abort, Some(Abort::Database(_)));
    let (exit, error) = match abort {
        Some(Abort::Auth(m)) | Some(Abort::Environment(m)) => (Exit::Environment, Some(m)),
        Some(Abort::Database(m)) => (
            Exit::Environment,
            Some(format!("database unavailable: {m}")),
        ),
        None if panicked => (
            Exit::Failed,
            Some("internal error: a worker thread panicked".into()),
        ),
        None if not_started.is_some() => (
            Exit::Failed,
            Some(format!(
                "could not start a worker thread: {}",
                not_started.unwrap_or_default()
            )),
        ),
        None if ctrl_c => (
            Exit::Interrupted,
            Some(crate::signal::interruption(crate::signal::received())),
        ),
        None if totals.slices_failed > 0 => (Exit::Failed, None),
        None => (Exit::Ok, None),
    };
    Outcome {
        totals,
        exit,
        error,
        auth_refused,
        database_lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Retried;
    use std::time::Duration;

    fn failed_slices(n: i32) -> RunTotals {
        RunTotals {
            slices_failed: n,
            ..Default::default()
        }
    }

    fn merged(
        abort: Option<Abort>,
        panicked: bool,
        ctrl_c: bool,
        failed: i32,
    ) -> (Exit, Option<String>) {
        let trouble = Trouble {
            panicked,
            not_started: None,
        };
        let o = outcome(failed_slices(failed), abort, trouble, ctrl_c);
        (o.exit, o.error)
    }

    #[test]
    fn a_clean_run_is_ok_and_a_failed_slice_fails_it() {
        assert_eq!(merged(None, false, false, 0), (Exit::Ok, None));
        assert_eq!(merged(None, false, false, 2), (Exit::Failed, None));
    }

    #[test]
    fn an_abort_says_why_and_wins_over_everything() {
        let auth = Abort::Auth("credentials refused".into());
        assert_eq!(
            merged(Some(auth.clone()), true, true, 3),
            (Exit::Environment, Some("credentials refused".into()))
        );
        assert_eq!(
            merged(Some(Abort::Database("gone".into())), false, true, 0),
            (Exit::Environment, Some("database unavailable: gone".into()))
        );
    }

    #[test]
    fn a_panic_wins_over_ctrl_c_and_ctrl_c_over_failed_slices() {
        assert_eq!(
            merged(None, true, true, 1),
            (
                Exit::Failed,
                Some("internal error: a worker thread panicked".into())
            )
        );
        assert_eq!(
            merged(None, false, true, 1),
            (Exit::Interrupted, Some("interrompido".into()))
        );
    }

    #[test]
    fn a_thread_that_did_not_start_is_not_called_a_panic() {
        let trouble = Trouble {
            panicked: false,
            not_started: Some("Resource temporarily unavailable".into()),
        };
        let o = outcome(failed_slices(0), None, trouble, false);
        assert_eq!(o.exit, Exit::Failed);
        assert_eq!(
            o.error.as_deref(),
            Some("could not start a worker thread: Resource temporarily unavailable")
        );
    }

    #[test]
    fn outcome_keeps_the_totals() {
        let t = RunTotals {
            pages: 7,
            inserted: 40,
            ..Default::default()
        };
        let o = outcome(t, None, Trouble::default(), false);
        assert_eq!((o.totals.pages, o.totals.inserted), (7, 40));
    }

    #[test]
    fn the_waiting_notice_is_shown_once() {
        let mut board = NoticeBoard {
            style: Style { plain: true },
            waiting_shown: false,
        };
        let waiting = Notice::Waiting {
            slices: 1,
            lease: Duration::from_secs(30),
        };
        let retrying = Notice::Retrying {
            attempt: 1,
            attempts: 3,
            wait: Duration::from_secs(1),
            of: Retried::Page,
        };
        assert!(board.line(&retrying).is_some());
        assert_eq!(
            board.line(&waiting).as_deref(),
            Some("Aguardando 1 fatia(s) em uso por outro processo (lease de 30s)")
        );
        assert_eq!(board.line(&waiting), None);
        assert!(board.line(&retrying).is_some(), "other notices every time");
    }
}
