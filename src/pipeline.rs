//! One run of a scrap: fetcher threads claim slices and page through them,
//! records cross a bounded channel to writer threads that commit batches,
//! and the main thread prints progress from a ticker.
//!
//! Invariants: a send blocks when the channel is full (backpressure, never a
//! drop); a slice is marked done only after every row it sent is committed
//! (`SliceTrack::outstanding` reaches zero with no failure); a batch and its
//! slice counters commit in one transaction, so nothing is counted twice.

use crate::config::{Client, Route, RunSettings};
use crate::db::{self, Inserter, Pool};
use crate::exit::Exit;
use crate::http::{self, Backoff, Failure, Limiter, ResolvedAuth};
use crate::json::Json;
use crate::ledger::{self, Claim, RunTotals, Scrap, SliceCounts, SliceEnd};
use crate::paginate::Pager;
use crate::record::{self, Row};
use crate::report::{ErrorContext, ErrorLog, Style};
use anyhow::Result;
use crossbeam::channel::{self, Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything a run needs, validated and resolved.
pub struct Job<'a> {
    pub scrap: &'a Scrap,
    pub client: &'a Client,
    pub route: &'a Route,
    pub settings: &'a RunSettings,
    pub pool: Pool,
    pub worker: String,
    pub run_id: i64,
    pub auth: ResolvedAuth,
    pub backoff: Backoff,
    pub errlog: &'a ErrorLog,
    pub style: Style,
    /// Raised by Ctrl-C or by a fatal error: stop fetching, flush, release.
    pub quit: &'a AtomicBool,
    /// Raised by Ctrl-C only.
    pub interrupted: &'a AtomicBool,
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
    slices_failed: AtomicU64,
}

/// Why the run stopped early.
#[derive(Debug, Clone)]
enum Fatal {
    Auth(String),
    Database(String),
}

/// One slice in flight.
struct SliceTrack {
    claim: Claim,
    /// Chunks sent and not yet committed, plus one while the fetcher works.
    outstanding: AtomicUsize,
    failed: Mutex<Option<String>>,
    /// Unfinished (quit, or a batch of it could not be committed): back to pending.
    released: AtomicBool,
    counts: Mutex<SliceCounts>,
}

/// A page's rows on their way to a writer.
struct Chunk {
    slice: Arc<SliceTrack>,
    rows: Vec<Row>,
}

/// What a 2xx body calls for when it cannot be used.
enum BodyError {
    /// Not JSON, cut short, or without the records: ask again.
    Retry(String),
    /// The data itself fails the slice (a guard, an undated record under `fail`).
    Fatal(String),
}

/// How a fetcher's slice ended early.
enum SliceStop {
    Failed(String),
    Interrupted,
}

/// Pages a writer may have queued ahead: bounds memory to a few pages per
/// fetcher while keeping writers busy.
fn channel_capacity(s: &RunSettings) -> usize {
    s.channel_capacity.unwrap_or(2 * s.threads.max(s.writers))
}

pub struct Outcome {
    pub totals: RunTotals,
    pub exit: Exit,
    pub error: Option<String>,
}

struct Shared<'j, 'a> {
    job: &'j Job<'a>,
    counters: Counters,
    limiter: Limiter,
    agent: ureq::Agent,
    fatal: Mutex<Option<Fatal>>,
    /// The "waiting for other workers" line is printed once.
    waiting_said: AtomicBool,
}

impl Shared<'_, '_> {
    fn stop(&self, f: Fatal) {
        let mut g = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            *g = Some(f);
        }
        self.job.quit.store(true, Ordering::SeqCst);
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

    /// A ledger call, retried like HTTP on a lost connection.
    fn with_db<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut db::PooledConn) -> Result<T>,
    ) -> Result<T> {
        let max = self.job.settings.retry_max;
        let mut attempt = 1;
        loop {
            let r = self
                .job
                .pool
                .get()
                .map_err(anyhow::Error::from)
                .and_then(|mut c| f(&mut c));
            match r {
                Ok(v) => return Ok(v),
                Err(e) if attempt < max && db::retryable(&e) => {
                    let wait = self.job.backoff.delay(attempt, fastrand::f64());
                    log::warn!("{what}: {e:#}; retrying in {:.1}s", wait.as_secs_f64());
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(e) => return Err(e.context(what.to_string())),
            }
        }
    }

    // ------------------------------------------------------------ slices

    /// Called when a tracker's outstanding count reaches zero: records how
    /// the slice ended.
    fn finalize(&self, t: &SliceTrack) {
        let failed = t.failed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let end = if failed.is_some() {
            SliceEnd::Failed
        } else if t.released.load(Ordering::SeqCst) {
            SliceEnd::Released
        } else {
            SliceEnd::Done
        };
        let counts = t.counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let worker = &self.job.worker;
        let res = self.with_db("recording the end of a slice", |c| {
            ledger::finish_slice(
                &mut **c,
                t.claim.id,
                worker,
                end,
                &counts,
                failed.as_deref(),
            )
        });
        match res {
            Ok(true) => match end {
                SliceEnd::Done => {
                    self.counters.slices_done.fetch_add(1, Ordering::Relaxed);
                }
                SliceEnd::Failed => {
                    self.counters.slices_failed.fetch_add(1, Ordering::Relaxed);
                }
                SliceEnd::Released => {}
            },
            Ok(false) => log::warn!(
                "slice {}..{} was taken over by another worker (lease expired); its rows are committed and deduplicated",
                t.claim.from,
                t.claim.to
            ),
            Err(e) => {
                // The lease will expire and a rerun takes the slice again: nothing is lost.
                log::error!("{e:#}");
                self.stop(Fatal::Database(format!("{e:#}")));
            }
        }
    }

    fn release_one(&self, t: &SliceTrack) {
        if t.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.finalize(t);
        }
    }

    // ------------------------------------------------------------ fetchers

    /// A worker of this machine whose process is gone (killed, crashed) keeps
    /// its leases until they expire; ending them now lets a rerun go on at
    /// once. Only where liveness can be known (Linux `/proc`); elsewhere the
    /// lease expiry does the same later.
    fn take_over_dead_local_workers(&self) {
        let job = self.job;
        let Some((host, _)) = ledger::worker_host_pid(&job.worker) else {
            return;
        };
        let holders = match job
            .pool
            .get()
            .map_err(anyhow::Error::from)
            .and_then(|mut c| ledger::other_holders(&mut *c, job.scrap.id, &job.worker))
        {
            Ok(h) => h,
            Err(_) => return,
        };
        for w in holders {
            let dead = matches!(ledger::worker_host_pid(&w), Some((h, pid)) if h == host && process_alive(pid) == Some(false));
            if dead {
                if let Ok(n) = job
                    .pool
                    .get()
                    .map_err(anyhow::Error::from)
                    .and_then(|mut c| ledger::expire_worker(&mut *c, &w))
                {
                    log::info!("worker {w} is gone: took over its {n} slice(s)");
                }
            }
        }
    }

    fn fetcher(&self, tx: &Sender<Chunk>) {
        let job = self.job;
        let poll =
            (job.settings.lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(2));
        while !job.quit.load(Ordering::SeqCst) {
            let claim = match self.with_db("claiming a slice", |c| {
                ledger::claim(
                    &mut **c,
                    job.scrap.id,
                    job.run_id,
                    &job.worker,
                    job.settings.lease,
                )
            }) {
                Ok(c) => c,
                Err(e) => {
                    self.stop(Fatal::Database(format!("{e:#}")));
                    return;
                }
            };
            let Some(claim) = claim else {
                // Nothing free: wait while other workers hold slices (they may die).
                match self.with_db("checking other workers", |c| {
                    ledger::held_by_others(&mut **c, job.scrap.id, &job.worker)
                }) {
                    Ok(0) => return,
                    Ok(n) => {
                        self.take_over_dead_local_workers();
                        if !self.waiting_said.swap(true, Ordering::SeqCst) {
                            eprintln!(
                                "{}",
                                job.style.line(
                                    "⏳",
                                    &format!(
                                        "Aguardando {n} fatia(s) em uso por outro processo (lease de {}s)",
                                        job.settings.lease.as_secs()
                                    )
                                )
                            );
                        }
                        http::sleep_until(Instant::now() + poll, job.quit);
                        continue;
                    }
                    Err(e) => {
                        self.stop(Fatal::Database(format!("{e:#}")));
                        return;
                    }
                }
            };
            let track = Arc::new(SliceTrack {
                claim,
                outstanding: AtomicUsize::new(1),
                failed: Mutex::new(None),
                released: AtomicBool::new(false),
                counts: Mutex::new(SliceCounts::default()),
            });
            match self.fetch_slice(&track, tx) {
                Ok(()) => {}
                Err(SliceStop::Failed(msg)) => {
                    let mut ctx = self.ctx(Some(&claim));
                    ctx.page = Some(
                        track.counts.lock().unwrap_or_else(|p| p.into_inner()).pages as u64 + 1,
                    );
                    job.errlog.write("fatia falhou", &ctx, &msg);
                    eprintln!(
                        "{}",
                        job.style.line(
                            "❌",
                            &format!("Fatia {} até {} falhou: {msg}", claim.from, claim.to)
                        )
                    );
                    *track.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
                }
                Err(SliceStop::Interrupted) => track.released.store(true, Ordering::SeqCst),
            }
            self.release_one(&track);
        }
    }

    fn fetch_slice(&self, track: &Arc<SliceTrack>, tx: &Sender<Chunk>) -> Result<(), SliceStop> {
        let job = self.job;
        let claim = track.claim;
        let base = http::slice_url(job.client, job.route, &job.auth, claim.from, claim.to)
            .map_err(|e| SliceStop::Failed(format!("{e:#}")))?;
        let mut pager = Pager::new(&job.route.pagination, base);
        let mut undated_logged = false;
        loop {
            if job.quit.load(Ordering::SeqCst) {
                return Err(SliceStop::Interrupted);
            }
            let page_no = pager.page_number();
            let url = pager.current().clone();
            // The body is parsed once, borrowed, inside the retry loop: a body
            // that is not JSON or lacks the records is retried like a 5xx; one
            // nested past json::MAX_DEPTH fails the slice at once.
            let (rows, more) = self.get_page(&url, &claim, page_no, |raw, link| {
                let body = Json::parse(raw).map_err(|e| {
                    if e.is_too_deep() {
                        BodyError::Fatal(format!("page {page_no}: {e}"))
                    } else {
                        BodyError::Retry(format!("the body is not valid JSON ({e})"))
                    }
                })?;
                let records =
                    record::records_of(&body, &job.route.records).map_err(BodyError::Retry)?;
                let n = records.len();
                let rows = record::page_rows(
                    records,
                    job.route,
                    (job.scrap.from, job.scrap.to),
                    claim.from,
                )
                .map_err(|m| BodyError::Fatal(format!("page {page_no}: {m}")))?;
                let more = pager
                    .advance(raw, &body, link, n)
                    .map_err(|guard| BodyError::Fatal(format!("page {page_no}: {guard}")));
                Ok((rows, more))
            })?;
            if let (Some(why), false) = (&rows.undated_reason, undated_logged) {
                undated_logged = true;
                let mut ctx = self.ctx(Some(&claim));
                ctx.page = Some(page_no);
                job.errlog.write("registro sem data", &ctx, why);
            }
            for note in &rows.sanitised {
                let mut ctx = self.ctx(Some(&claim));
                ctx.page = Some(page_no);
                job.errlog.write("registro saneado", &ctx, note);
            }
            {
                let mut c = track.counts.lock().unwrap_or_else(|p| p.into_inner());
                c.pages += 1;
                c.records += rows.fetched as i64;
                c.out_of_period += rows.out_of_period as i64;
                c.undated += rows.undated as i64;
            }
            let k = &self.counters;
            k.pages.fetch_add(1, Ordering::Relaxed);
            k.records.fetch_add(rows.fetched, Ordering::Relaxed);
            k.out_of_period
                .fetch_add(rows.out_of_period, Ordering::Relaxed);
            k.undated.fetch_add(rows.undated, Ordering::Relaxed);
            k.sanitised
                .fetch_add(rows.sanitised.len() as u64, Ordering::Relaxed);
            if !rows.rows.is_empty() {
                track.outstanding.fetch_add(1, Ordering::SeqCst);
                // Blocks while the channel is full: backpressure, never a drop.
                if let Err(channel::SendError(chunk)) = tx.send(Chunk {
                    slice: Arc::clone(track),
                    rows: rows.rows,
                }) {
                    // Every writer is gone (fatal error): the slice stays unfinished.
                    chunk.slice.released.store(true, Ordering::SeqCst);
                    self.release_one(&chunk.slice);
                    return Err(SliceStop::Interrupted);
                }
            }
            match more {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                // A guard stops the slice only after the page's rows are on their way.
                Err(BodyError::Fatal(m)) | Err(BodyError::Retry(m)) => {
                    return Err(SliceStop::Failed(m))
                }
            }
        }
    }

    /// One page with retries; `on_body` turns a 2xx body into `T`, or says
    /// the body calls for a retry or fails the slice.
    fn get_page<T>(
        &self,
        url: &url::Url,
        claim: &Claim,
        page_no: u64,
        mut on_body: impl FnMut(&[u8], Option<&str>) -> Result<T, BodyError>,
    ) -> Result<T, SliceStop> {
        let job = self.job;
        let max = job.settings.retry_max;
        for attempt in 1..=max {
            if !self.limiter.acquire(job.quit) {
                return Err(SliceStop::Interrupted);
            }
            let failure = match http::get(
                &self.agent,
                url,
                &job.route.headers,
                &job.auth,
                job.route.charset,
            ) {
                Ok(f) => match on_body(&f.body, f.link.as_deref()) {
                    Ok(t) => return Ok(t),
                    Err(BodyError::Retry(m)) => Failure::Retry {
                        status: Some(200),
                        wait: None,
                        message: m,
                        body: http::snippet(&f.body, 300),
                    },
                    Err(BodyError::Fatal(m)) => return Err(SliceStop::Failed(m)),
                },
                Err(f) => f,
            };
            let mut ctx = self.ctx(Some(claim));
            ctx.page = Some(page_no);
            // Redacted only when something is logged: not on the success path.
            ctx.url = Some(http::redact(url, job.auth.query_param()));
            ctx.attempt = Some((attempt, max));
            match failure {
                Failure::Auth { status, body } => {
                    ctx.status = Some(status);
                    ctx.body = Some(body);
                    let msg = format!(
                        "the API refused the credentials of client {} on route {} (HTTP {status})",
                        job.client.id, job.route.name
                    );
                    job.errlog.write("autenticação recusada", &ctx, &msg);
                    self.stop(Fatal::Auth(msg));
                    return Err(SliceStop::Interrupted);
                }
                Failure::Fatal {
                    status,
                    message,
                    body,
                } => {
                    ctx.status = status;
                    ctx.body = Some(body.clone());
                    job.errlog.write("requisição recusada", &ctx, &message);
                    return Err(SliceStop::Failed(format!(
                        "page {page_no}: {message}: {body}"
                    )));
                }
                Failure::Retry {
                    status,
                    wait,
                    message,
                    body,
                } => {
                    ctx.status = status;
                    ctx.body = Some(body);
                    job.errlog.write("tentativa falhou", &ctx, &message);
                    if attempt == max {
                        return Err(SliceStop::Failed(format!(
                            "page {page_no}: {message} (after {max} attempts)"
                        )));
                    }
                    let delay = wait.unwrap_or_else(|| job.backoff.delay(attempt, fastrand::f64()));
                    let until = Instant::now() + delay;
                    if status == Some(429) {
                        // The server throttles the client, not this thread: everyone waits.
                        self.limiter.pause_until(until);
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "{}",
                        job.style.line(
                            "⚠️",
                            &format!(
                                "Tentativa {attempt}/{max} falhou, aguardando {:.1}s...",
                                delay.as_secs_f64()
                            )
                        )
                    );
                    if !http::sleep_until(until, job.quit) {
                        return Err(SliceStop::Interrupted);
                    }
                }
            }
        }
        Err(SliceStop::Failed(format!(
            "page {page_no}: no attempt made (retry_max = 0)"
        )))
    }

    // ------------------------------------------------------------ writers

    fn writer(&self, rx: &Receiver<Chunk>) {
        let job = self.job;
        let limit = job.settings.batch_export;
        let mut ins: Option<Inserter> = None;
        let mut pending: Vec<Chunk> = Vec::new();
        while let Ok(first) = rx.recv() {
            pending.push(first);
            let mut n: usize = pending.iter().map(|c| c.rows.len()).sum();
            // Take what is already queued, up to a batch: no waiting for more.
            while n < limit {
                match rx.try_recv() {
                    Ok(c) => {
                        n += c.rows.len();
                        pending.push(c);
                    }
                    Err(_) => break,
                }
            }
            self.flush(&mut ins, &mut pending, limit);
        }
    }

    /// Commits the pending chunks in batches of at most `limit` rows.
    fn flush(&self, ins: &mut Option<Inserter>, pending: &mut Vec<Chunk>, limit: usize) {
        let chunks = std::mem::take(pending);
        // Rows are cut into batches; each batch lists (chunk index, row).
        let mut batch: Vec<(usize, &Row)> = Vec::with_capacity(limit);
        for (ci, chunk) in chunks.iter().enumerate() {
            for row in &chunk.rows {
                batch.push((ci, row));
                if batch.len() == limit {
                    self.commit(ins, &chunks, &mut batch);
                }
            }
        }
        if !batch.is_empty() {
            self.commit(ins, &chunks, &mut batch);
        }
        // Each chunk is fully committed (or marked lost) now.
        for chunk in &chunks {
            self.release_one(&chunk.slice);
        }
    }

    fn commit(&self, ins: &mut Option<Inserter>, chunks: &[Chunk], batch: &mut Vec<(usize, &Row)>) {
        let job = self.job;
        // Group by slice: the counts of each slice are updated with the rows.
        let mut slices: Vec<i64> = Vec::new();
        let mut tagged: Vec<(usize, &Row)> = Vec::with_capacity(batch.len());
        for (ci, row) in batch.iter() {
            let id = chunks[*ci].slice.claim.id;
            let g = match slices.iter().position(|s| *s == id) {
                Some(g) => g,
                None => {
                    slices.push(id);
                    slices.len() - 1
                }
            };
            tagged.push((g, row));
        }
        let max = job.settings.retry_max;
        let mut attempt = 1;
        let result = loop {
            if self
                .fatal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
            {
                break Err(anyhow::anyhow!("run stopping: batch not written"));
            }
            let r = match ins {
                Some(i) => i.commit_batch(&mut tagged, &slices),
                None => Inserter::new(&job.pool, &job.scrap.raw_table).and_then(|i| {
                    let i = ins.insert(i);
                    i.commit_batch(&mut tagged, &slices)
                }),
            };
            match r {
                Ok(per) => break Ok(per),
                Err(e) if attempt < max && db::retryable(&e) => {
                    *ins = None; // the connection may be broken: take a fresh one
                    let wait = job.backoff.delay(attempt, fastrand::f64());
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "{}",
                        job.style.line(
                            "⚠️",
                            &format!(
                                "Tentativa {attempt}/{max} falhou (banco de dados), aguardando {:.1}s...",
                                wait.as_secs_f64()
                            )
                        )
                    );
                    job.errlog
                        .write("gravação falhou", &self.ctx(None), &format!("{e:#}"));
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(per) => {
                let total = batch.len() as i64;
                let inserted: i64 = per.iter().sum();
                self.counters
                    .inserted
                    .fetch_add(inserted as u64, Ordering::Relaxed);
                self.counters
                    .duplicates
                    .fetch_add((total - inserted) as u64, Ordering::Relaxed);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                // Those rows are not committed: their slices must not be marked done.
                for (ci, _) in batch.iter() {
                    chunks[*ci].slice.released.store(true, Ordering::SeqCst);
                }
                if db::retryable(&e) {
                    job.errlog.write("gravação desistiu", &self.ctx(None), &msg);
                    self.stop(Fatal::Database(msg));
                } else {
                    // A verdict on the data (e.g. a value PostgreSQL refuses): fail those slices.
                    job.errlog
                        .write("lote recusado pelo banco", &self.ctx(None), &msg);
                    for (ci, _) in batch.iter() {
                        let mut f = chunks[*ci]
                            .slice
                            .failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        if f.is_none() {
                            *f = Some(format!("the database refused a batch: {msg}"));
                        }
                    }
                }
            }
        }
        batch.clear();
    }

    fn totals(&self) -> RunTotals {
        let k = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        RunTotals {
            pages: g(&k.pages),
            records: g(&k.records),
            inserted: g(&k.inserted),
            duplicates: g(&k.duplicates),
            out_of_period: g(&k.out_of_period),
            undated: g(&k.undated),
            sanitised: g(&k.sanitised),
            retries: g(&k.retries),
            slices_done: g(&k.slices_done) as i32,
            slices_failed: g(&k.slices_failed) as i32,
        }
    }
}

/// Whether a process of this machine is alive, when that can be known.
fn process_alive(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") {
        Some(std::path::Path::new(&format!("/proc/{pid}")).exists())
    } else {
        None
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

/// Runs the job to the end and reports what happened.
pub fn run(job: &Job<'_>) -> Outcome {
    let shared = Shared {
        job,
        counters: Counters::default(),
        limiter: Limiter::new(job.client.rate_limit_per_sec),
        agent: http::agent(job.settings.timeout),
        fatal: Mutex::new(None),
        waiting_said: AtomicBool::new(false),
    };
    let started = Instant::now();
    let (tx, rx) = channel::bounded::<Chunk>(channel_capacity(job.settings));
    let (done_tx, done_rx) = channel::bounded::<()>(0);
    let mut panicked = false;
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..job.settings.writers {
            let rx = rx.clone();
            let done = done_tx.clone();
            let sh = &shared;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("writer-{i}"))
                    .spawn_scoped(s, move || {
                        let _guard = PanicGuard(sh.job.quit);
                        sh.writer(&rx);
                        drop(done);
                    }),
            );
        }
        drop(rx);
        for i in 0..job.settings.threads {
            let tx = tx.clone();
            let done = done_tx.clone();
            let sh = &shared;
            handles.push(
                std::thread::Builder::new()
                    .name(format!("fetcher-{i}"))
                    // Parsing and canonicalising bodies nested up to json::MAX_DEPTH.
                    .stack_size(crate::json::THREAD_STACK)
                    .spawn_scoped(s, move || {
                        let _guard = PanicGuard(sh.job.quit);
                        sh.fetcher(&tx);
                        drop(done);
                    }),
            );
        }
        drop(tx);
        drop(done_tx);
        // Heartbeat: keeps our leases alive while slices are worked.
        let (hb_stop_tx, hb_stop_rx) = channel::bounded::<()>(0);
        let sh = &shared;
        let hb = std::thread::Builder::new().name("heartbeat".into()).spawn_scoped(s, move || {
            let every = (sh.job.settings.lease / 3).max(Duration::from_millis(200));
            loop {
                channel::select! {
                    recv(hb_stop_rx) -> _ => return,
                    default(every) => {
                        if let Err(e) = sh.job.pool.get().map_err(anyhow::Error::from).and_then(|mut c| ledger::heartbeat(&mut *c, &sh.job.worker, sh.job.settings.lease)) {
                            log::warn!("lease heartbeat failed: {e:#}");
                        }
                    }
                }
            }
        });
        // Progress from a ticker until every worker thread has finished.
        let ticker = channel::tick(job.settings.progress);
        loop {
            channel::select! {
                recv(ticker) -> _ => {
                    let k = &shared.counters;
                    eprintln!("{}", job.style.progress(
                        k.pages.load(Ordering::Relaxed),
                        started.elapsed(),
                        k.records.load(Ordering::Relaxed),
                    ));
                }
                recv(done_rx) -> _ => break,
            }
        }
        for h in handles {
            match h {
                Ok(h) => panicked |= h.join().is_err(),
                Err(e) => {
                    log::error!("cannot start a thread: {e}");
                    panicked = true;
                }
            }
        }
        drop(hb_stop_tx);
        if let Ok(h) = hb {
            panicked |= h.join().is_err();
        }
    });
    let totals = shared.totals();
    let fatal = shared
        .fatal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (exit, error) = match fatal {
        Some(Fatal::Auth(m)) => (Exit::Environment, Some(m)),
        Some(Fatal::Database(m)) => (
            Exit::Environment,
            Some(format!("database unavailable: {m}")),
        ),
        None if panicked => (
            Exit::Failed,
            Some("internal error: a worker thread panicked".into()),
        ),
        None if job.interrupted.load(Ordering::SeqCst) => (
            Exit::Interrupted,
            Some("interrompido pelo usuário (Ctrl-C)".into()),
        ),
        None if totals.slices_failed > 0 => (Exit::Failed, None),
        None => (Exit::Ok, None),
    };
    Outcome {
        totals,
        exit,
        error,
    }
}
