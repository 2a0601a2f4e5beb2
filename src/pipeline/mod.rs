//! Runs of scraps: the thread scope, the channel between fetchers and
//! writers, the main thread's ticker (progress and workers' notices), and the
//! merge of how the workers ended into one [`Outcome`] per run.
//!
//! Fetchers (`fetch`) claim slices (`claim`), walk their pages (`walk`,
//! one page in `page`; pages spread over the fetchers in `spread`, asked
//! for ahead of page 1's answer in `speculate`) and send each page's rows
//! as a [`Chunk`] through a bounded channel to writers (`write`) that
//! commit batches; `track` knows when a slice is finished and keeps the
//! leases alive. What a run's workers share is a [`Shared`] (methods in
//! `lane`, figures in `counters`); how a run ended is merged in `outcome`.
//! Workers never print: they send [`Notice`]s that the main thread shows
//! (`board`).
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
mod fold;
pub mod gate;
mod share;
mod track;
pub mod tune;
mod write;

mod board;
mod claim;
mod counters;
mod crew;
mod lane;
mod outcome;
mod page;
mod speculate;
mod spread;
mod walk;

use crate::config::{Client, Route, Settings};
use crate::db::Pool;
use crate::http::{self, Limiter, ResolvedAuth};
use crate::ledger::{Claim, Scrap};
use crate::record::Row;
use crate::report::{ErrorLog, Notice, Style, Watch};
use crate::retry::Backoff;
use crossbeam::channel::{self, Receiver, Sender};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;
use track::SliceTrack;

use board::NoticeBoard;
use counters::{add, Counters};
use crew::Crew;
pub use outcome::Outcome;
use outcome::{outcome, Abort, Trouble};

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
    /// Slices claimed for the run as it started (a fleet's wave claims
    /// them with the runs): worked before any claim is tried.
    pub claimed: Vec<Claim>,
    /// Pages of the pair's last slice done (0: none known): how many pages
    /// a slice's page 1 is asked for with (`speculative_pages`).
    pub pages_hint: u64,
    /// Passed by the writers before their first batch: the raw table exists.
    pub table: &'a gate::TableGate,
    /// The route's first day still open when the run began: a slice loaded
    /// whole that reaches it is recorded `open`, not `done`.
    pub open_from: chrono::NaiveDate,
    /// Days loaded already that the run fetches again (a sync's lookback):
    /// a batch holding one skips the COPY that would meet stored rows.
    pub refetch: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
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
    ahead: Mutex<VecDeque<Arc<spread::Spread>>>,
    /// Fetchers on a page 1 that may spread: idle ones wait for it.
    spreading: AtomicUsize,
    /// Slices taken from `claimed` whose fetcher has not yet said whether
    /// they may spread: idle ones wait for them too, or they could end
    /// between the take and page 1 and leave its pages unasked.
    starting: AtomicUsize,
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
            starting: AtomicUsize::new(0),
            pages_hint: AtomicU64::new(job.pages_hint),
            claimed: Mutex::new(job.claimed.iter().copied().collect()),
            claiming: Mutex::new(()),
            claimed_total: AtomicU64::new(0),
            ends_recorded: AtomicU64::new(0),
            over: AtomicBool::new(false),
            over_tx: over.cloned(),
            crew_started: started,
            ends: Mutex::new(track::Ends::default()),
            budget: Arc::clone(&budget),
        }));
        if let Some(lane) = lanes.slots[lane].get() {
            lane.count_claims(job.claimed.len());
        }
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
