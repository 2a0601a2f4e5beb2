//! Fetchers: claim a slice (or wait while other processes hold the rest),
//! page through it, turn each page into rows and send them to the writers
//! as a chunk. Each page is retried per `retry`, under the client's rate limit.
//!
//! Invariants: a page's rows are on their way before a pagination guard
//! stops the slice; a slice whose rows cannot all be sent (the run stops) is
//! released, never marked done; the fetcher lets go of its slice last thing.

use super::budget::{PageRoom, Reserved};
use super::track::{ReleaseOnPanic, SliceTrack};
use super::{add, lock, Abort, Chunk, Lanes, Shared};
use crate::config::Pagination;
use crate::http::{self, Failure};
use crate::json::Json;
use crate::ledger::{self, Claim};
use crate::paginate::{Pager, Seen};
use crate::record::{self, PageRows, Row};
use crate::report::{Notice, Retried};
use crate::retry::{GaveUp, Policy, Stop, Verdict};
use crossbeam::channel::{SendError, Sender};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why one attempt at a page gave no rows.
enum PageError {
    /// The request failed, or its 2xx body could not be used.
    Http(Failure),
    /// The data itself fails the slice (a guard, an undated record under `fail`).
    Data(String),
    /// `quit` rose while waiting for a request slot.
    Quit,
    /// A page asked for with page 1 lies past the pages page 1 declared
    /// (or page 1 wants none): dropped unseen.
    Beyond,
}

impl PageError {
    /// A 2xx body that cannot be used (not JSON, cut short, without the
    /// records): asked for again like a 5xx.
    fn unusable(body: &[u8], message: String) -> PageError {
        PageError::Http(Failure::Retry {
            status: Some(200),
            wait: None,
            message,
            body: http::snippet(body, 300),
        })
    }

    fn verdict(&self) -> Verdict {
        match self {
            PageError::Http(f) => http::classify(f),
            PageError::Data(_) | PageError::Quit | PageError::Beyond => Verdict::Fail,
        }
    }
}

/// How a fetcher's slice ended early.
enum SliceStop {
    /// The slice cannot succeed in this run; the reason is recorded.
    Failed(String),
    /// The run stops: the slice goes back to pending, unfinished.
    Released,
    /// The page was not wanted after all (`PageError::Beyond`): nothing of it counts.
    Beyond,
}

/// A slice whose pages after the first are fetched by any free fetcher
/// (random-access pagination, `parallel_pages`). While it waits in the
/// queue it holds its slice once; the page handed out last inherits that
/// hold. A spread queued before page 1 answered (`speculative_pages`) has
/// as many pages as the slices before it had: they are asked for with page
/// 1, but nothing of theirs is kept before page 1's word; those past the
/// pages it declares are dropped unseen, and the ones missing are queued.
pub(super) struct Spread {
    track: Arc<SliceTrack>,
    /// Page 1's pager (before page 1 when speculative): every other page's
    /// request is derived from it.
    first: Pager,
    /// The last page to hand out (changed under the queue's lock).
    pages: AtomicU64,
    /// The next page to hand out (taken under the queue's lock).
    next: AtomicU64,
    state: Mutex<SpreadState>,
    /// Signalled when page 1's word comes.
    told: Condvar,
}

/// What the pages of a spread slice said so far.
struct SpreadState {
    /// Pages queued or in flight, not yet finished.
    left: u64,
    /// Non-empty bodies seen, by digest: a repeat means the API ignores the page.
    bodies: HashMap<[u8; 32], u64>,
    /// The lowest empty page and the lowest short page.
    empty: Option<u64>,
    short: Option<u64>,
    page1: Page1,
}

/// Page 1's word on the pages after it.
enum Page1 {
    /// Not in yet (a speculative spread): its pages wait before keeping anything.
    Awaited,
    /// The pages the slice declared, and page 1's pager, against whose
    /// total every page is checked.
    Declared(u64, Box<Pager>),
    /// None is wanted: the slice ended at page 1, failed, walks in order,
    /// or the run stops.
    Nothing,
}

impl Spread {
    fn new(track: &Arc<SliceTrack>, first: Pager, pages: u64, page1: Page1) -> Spread {
        Spread {
            track: Arc::clone(track),
            first,
            pages: AtomicU64::new(pages),
            next: AtomicU64::new(2),
            state: Mutex::new(SpreadState {
                left: pages - 1,
                bodies: HashMap::new(),
                empty: None,
                short: None,
                page1,
            }),
            told: Condvar::new(),
        }
    }

    /// Whether page `k` is still wanted: not past the pages page 1
    /// declared. Before page 1's word it is, unless `wait`: then the word is
    /// waited for. When the run stops meanwhile the page is not wanted and
    /// the slice goes back to pending.
    fn wanted(&self, k: u64, wait: bool, quit: &AtomicBool) -> bool {
        let mut st = lock(&self.state);
        loop {
            match &st.page1 {
                Page1::Declared(t, _) => return k <= *t,
                Page1::Nothing => return false,
                Page1::Awaited if !wait => return true,
                Page1::Awaited if quit.load(Ordering::SeqCst) => {
                    self.track.release();
                    return false;
                }
                Page1::Awaited => {
                    st = self
                        .told
                        .wait_timeout(st, Duration::from_millis(100))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            }
        }
    }

    /// The pager that checks page `k` against page 1's declared total.
    fn checker(&self, k: u64) -> Pager {
        match &lock(&self.state).page1 {
            Page1::Declared(_, first) => first.at(k),
            _ => self.first.at(k),
        }
    }
}

/// One page of a spread slice, handed to a fetcher.
pub(super) struct PageTask {
    spread: Arc<Spread>,
    pager: Pager,
}

/// While a fetcher is on page 1 of a slice that may spread, idle fetchers
/// wait for its pages instead of ending; dropping this lets them go.
struct Spreading<'s, 'j, 'a>(&'s Shared<'j, 'a>);

impl Drop for Spreading<'_, '_, '_> {
    fn drop(&mut self) {
        self.0.spreading.fetch_sub(1, Ordering::SeqCst);
        self.0.wake.notify();
    }
}

/// A spread queued before its page 1 answered, until page 1's word is
/// told; dropped untold (page 1 failed, the slice ended or walks in order,
/// a panic), it tells that no page after page 1 is wanted.
struct Told<'s, 'j, 'a> {
    lane: &'s Shared<'j, 'a>,
    spread: Option<Arc<Spread>>,
}

impl Told<'_, '_, '_> {
    /// Page 1 declared `pages`, at `first`, its rows' digest `page1`.
    fn declared(
        mut self,
        pages: u64,
        first: &Pager,
        page1: Option<[u8; 32]>,
    ) -> Result<(), SliceStop> {
        let Some(spread) = self.spread.take() else {
            return Ok(());
        };
        let within = self.lane.within_max_pages(pages);
        let word = match within {
            Ok(()) => Page1::Declared(pages, Box::new(first.at(1))),
            Err(_) => Page1::Nothing,
        };
        self.lane.tell(&spread, word, page1);
        within
    }
}

impl Drop for Told<'_, '_, '_> {
    fn drop(&mut self) {
        if let Some(spread) = self.spread.take() {
            self.lane.tell(&spread, Page1::Nothing, None);
        }
    }
}

/// What a run has to claim right now.
enum Claimed {
    Slice(Claim),
    /// Other workers hold its last slices: look again later.
    Wait(Duration),
    /// Nothing more for this process (or the run stops).
    Exhausted,
}

/// A fetcher at work for a client: counted in the client's fair share.
struct Busy<'b>(&'b AtomicUsize);

impl<'b> Busy<'b> {
    fn new(n: &'b AtomicUsize) -> Busy<'b> {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The fetchers a client gets while others have work too: an equal share
/// of the crew between the clients whose runs still have slices to claim
/// or pages queued (at least one each).
fn fair_share(lanes: &[&Shared], threads: usize) -> usize {
    let mut clients: Vec<&str> = lanes
        .iter()
        .filter(|l| {
            !l.exhausted.load(Ordering::SeqCst)
                || !lock(&l.ahead).is_empty()
                || !lock(&l.claimed).is_empty()
        })
        .map(|l| l.job.client.id.as_str())
        .collect();
    clients.sort_unstable();
    clients.dedup();
    threads.div_ceil(clients.len().max(1)).max(1)
}

/// The first lane, from `start` round the crew, whose client is under its
/// fair share (`fair`) or at it or over (`!fair`), for which `take` finds
/// work.
fn pick<'l, 'j, 'a, T>(
    lanes: &[&'l Shared<'j, 'a>],
    start: usize,
    share: usize,
    fair: bool,
    mut take: impl FnMut(&Shared<'j, 'a>) -> Option<T>,
) -> Option<(&'l Shared<'j, 'a>, T)> {
    let n = lanes.len();
    (0..n)
        .map(|k| lanes[(start + k) % n])
        .filter(|l| (l.busy.load(Ordering::SeqCst) < share) == fair)
        .find_map(|l| take(l).map(|t| (l, t)))
}

/// A fetcher of the crew. Clients under their fair share are served first,
/// then the others, so that a slow or throttled client never holds the
/// others back; within each, pages of spread slices come first (they finish
/// slices already started), then slices claimed ahead, then new claims,
/// each time starting from the next lane. Ends when no lane has anything
/// left to claim or to wait for.
pub(super) fn fetcher(crew: &Lanes, tx: &Sender<Chunk>, turn: &AtomicUsize) {
    let wake = &crew.wake;
    let threads = crew.settings.threads;
    'work: loop {
        let seen = wake.generation();
        // Read before the lanes: a job handed over after this is seen next time.
        let complete = crew.complete.load(Ordering::SeqCst);
        let lanes = crew.active();
        let start = turn.fetch_add(1, Ordering::Relaxed) % lanes.len().max(1);
        let share = fair_share(&lanes, threads);
        let mut wait: Option<Duration> = None;
        for fair in [true, false] {
            if let Some((lane, task)) = pick(&lanes, start, share, fair, Shared::take_page) {
                let _busy = Busy::new(&lane.busy);
                lane.work_page(task, tx);
                continue 'work;
            }
            let ahead = pick(&lanes, start, share, fair, |l| lock(&l.claimed).pop_front());
            let claimed = ahead.or_else(|| {
                pick(&lanes, start, share, fair, |l| match l.claim_now() {
                    Claimed::Slice(c) => Some(c),
                    Claimed::Wait(d) => {
                        wait = Some(wait.map_or(d, |w| w.min(d)));
                        None
                    }
                    Claimed::Exhausted => None,
                })
            });
            if let Some((lane, claim)) = claimed {
                let _busy = Busy::new(&lane.busy);
                lane.work_slice(claim, tx);
                continue 'work;
            }
        }
        // A page 1 that may spread is being fetched: its pages may come.
        let spreading = lanes
            .iter()
            .any(|l| l.spreading.load(Ordering::SeqCst) > 0 && !l.job.quit.load(Ordering::SeqCst));
        match (wait, spreading || !complete) {
            (None, false) => return,
            (Some(d), _) => wake.wait(seen, d),
            (None, true) => wake.wait(seen, Duration::from_millis(200)),
        }
    }
}

/// A digest of a page's stored rows (their hashes, in order), for the repeat
/// guard across pages: a page serving another page's records again means
/// the API ignores the page. Hashing the row hashes costs a tenth of
/// hashing the body. `None` for a page without rows.
fn rows_key(rows: &[Row]) -> Option<[u8; 32]> {
    if rows.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    for r in rows {
        h.update(r.hash.as_bytes());
    }
    Some(h.finalize().into())
}

impl<'j, 'a> Shared<'j, 'a> {
    fn work_slice(&self, claim: Claim, tx: &Sender<Chunk>) {
        let track = SliceTrack::new(claim);
        // A panic while fetching releases the slice instead of leaving it running.
        let mut guard = ReleaseOnPanic {
            held: vec![Arc::clone(&track)],
            let_go: |t: &SliceTrack| self.let_go(t),
        };
        match self.fetch_slice(&track, tx) {
            Ok(()) => {}
            Err((page, SliceStop::Failed(msg))) => self.slice_failed(&track, page, msg),
            // Page 1 is always wanted: `Beyond` cannot come from it; were it
            // to, the slice goes back to pending rather than ending done.
            Err((_, SliceStop::Released | SliceStop::Beyond)) => track.release(),
        }
        guard.held.clear();
        self.let_go(&track);
    }

    /// The next page of a spread slice, if any waits.
    fn take_page(&self) -> Option<PageTask> {
        let mut q = lock(&self.ahead);
        let spread = Arc::clone(q.front()?);
        let k = spread.next.fetch_add(1, Ordering::Relaxed);
        // Queued means a page is left to hand out: `next <= pages`.
        if k >= spread.pages.load(Ordering::Relaxed) {
            // The last page: it inherits the queue's hold.
            q.pop_front();
        } else {
            spread.track.hold();
        }
        drop(q);
        Some(PageTask {
            pager: spread.first.at(k),
            spread,
        })
    }

    /// Lets go of the slices whose pages are still queued, unfinished.
    pub(super) fn release_queued_pages(&self) {
        let left: Vec<Arc<Spread>> = lock(&self.ahead).drain(..).collect();
        for spread in left {
            spread.track.release();
            self.let_go(&spread.track);
        }
    }

    /// One page of a spread slice; the last one to finish checks the
    /// guards that need every page.
    fn work_page(&self, task: PageTask, tx: &Sender<Chunk>) {
        let PageTask { spread, pager } = task;
        let track = &spread.track;
        let mut guard = ReleaseOnPanic {
            held: vec![Arc::clone(track)],
            let_go: |t: &SliceTrack| self.let_go(t),
        };
        let page = pager.page_number();
        let quit = self.job.quit;
        let keep = |wait: bool| spread.wanted(page, wait, quit);
        let got = if track.has_failed() {
            Ok(None) // another page failed it: nothing more to fetch
        } else if quit.load(Ordering::SeqCst) {
            Err(SliceStop::Released)
        } else {
            match self.slice_request(&track.claim) {
                Err(e) => Err(SliceStop::Failed(format!("{e:#}"))),
                Ok(request) => {
                    let call = request.call(pager.current(), &pager.position());
                    self.fetch_page(
                        track,
                        &call,
                        page,
                        tx,
                        None,
                        Some(&keep),
                        |_, body, _, n, rows| {
                            let seen = spread.checker(page).check_at(body, n)?;
                            Ok((seen, rows_key(&rows.rows)))
                        },
                    )
                    .map(Some)
                }
            }
        };
        let mut st = lock(&spread.state);
        st.left = st.left.saturating_sub(1);
        let verdict = match got {
            Ok(None) | Err(SliceStop::Beyond) => Ok(()),
            Ok(Some((seen, body))) => {
                match seen {
                    Seen::Empty => st.empty = Some(st.empty.map_or(page, |e| e.min(page))),
                    Seen::Short => st.short = Some(st.short.map_or(page, |s| s.min(page))),
                    Seen::Rows => {}
                }
                match body.and_then(|d| st.bodies.insert(d, page)) {
                    Some(other) => Err(SliceStop::Failed(format!(
                        "page {page}: guard: page {page} repeats the records of page {other}"
                    ))),
                    None => Ok(()),
                }
            }
            Err(e) => Err(e),
        };
        // Every page is in: an empty page inside the total fails the slice
        // unless a short page before it ended the data.
        let lie = match (st.left, st.empty, &st.page1) {
            (0, Some(e), Page1::Declared(t, _)) if st.short.is_none_or(|s| s > e) => Some((e, *t)),
            _ => None,
        };
        drop(st);
        match verdict {
            Err(SliceStop::Failed(msg)) => self.slice_failed(track, page, msg),
            Err(SliceStop::Released) => track.release(),
            Err(SliceStop::Beyond) | Ok(()) => {}
        }
        if let Some((e, t)) = lie.filter(|_| !track.has_failed()) {
            self.slice_failed(
                track,
                e,
                format!(
                    "page {e}: guard: the API declared {t} pages but page {e} is empty (declared total contradicted)"
                ),
            );
        }
        guard.held.clear();
        self.let_go(track);
    }

    /// Counts `n` slices claimed. Once a run that began with no slice held
    /// elsewhere has claimed as many as were left undone, every one of them
    /// went through it: nothing more can be free, or held by another
    /// worker, for this run, and no more claims are tried (each would be two
    /// statements on a fetcher's way to its next page).
    fn count_claims(&self, n: usize) {
        let job = self.job;
        let total = self.claimed_total.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        let left = (job.progress.slices_total).saturating_sub(job.progress.slices_done_before);
        if !job.held_at_start && total >= left {
            self.exhausted.store(true, Ordering::SeqCst);
        }
    }

    /// The next slice of this run to work, claimed with others ahead (up to
    /// one per fetcher in one statement). While other workers hold the
    /// rest, says when to look again. Slices held by processes of this
    /// machine that are gone are taken over before the run's first claim,
    /// and again before waiting.
    fn claim_now(&self) -> Claimed {
        let job = self.job;
        // Slices others hold are looked at again often: the run ends (and
        // its exit is told) soon after they do.
        let poll =
            (job.settings.lease / 4).clamp(Duration::from_millis(200), Duration::from_millis(500));
        let batch = job.settings.threads.clamp(1, 16) as i64;
        loop {
            if job.quit.load(Ordering::SeqCst) || self.exhausted.load(Ordering::SeqCst) {
                return Claimed::Exhausted;
            }
            if let Some(at) = *lock(&self.next_poll) {
                if let Some(left) = at.checked_duration_since(Instant::now()) {
                    return Claimed::Wait(left);
                }
            }
            // Slices of dead local workers first: a rerun after a kill must
            // not leave them running behind the free ones.
            self.first_claim.call_once(|| {
                if job.held_at_start {
                    self.take_over_dead_local_workers();
                }
            });
            // One batch of a run at a time: a fetcher that waited here takes
            // from the batch just claimed.
            let claiming = lock(&self.claiming);
            if let Some(claim) = lock(&self.claimed).pop_front() {
                return Claimed::Slice(claim);
            }
            // The claim this fetcher waited behind may have taken the last
            // slices: no statement is sent for nothing.
            if self.exhausted.load(Ordering::SeqCst) {
                return Claimed::Exhausted;
            }
            let free = self.with_db("claiming a slice", |c| {
                ledger::claim_many(
                    c,
                    job.scrap.id,
                    job.run_id,
                    &job.worker,
                    job.settings.lease,
                    batch,
                )
            });
            let free = free.map(|claims| {
                self.count_claims(claims.len());
                let mut claimed = lock(&self.claimed);
                claimed.extend(claims);
                claimed.pop_front()
            });
            drop(claiming);
            let held = match free {
                Ok(Some(claim)) => return Claimed::Slice(claim),
                Ok(None) => self.with_db("checking other workers", |c| {
                    ledger::unsettled(c, job.scrap.id, job.run_id, &job.worker)
                }),
                Err(e) => Err(e),
            };
            return match held {
                Ok(0) => {
                    self.exhausted.store(true, Ordering::SeqCst);
                    self.tell_if_over();
                    Claimed::Exhausted
                }
                // Dead workers' slices are taken over before anything is waited for.
                Ok(_) if self.take_over_dead_local_workers() > 0 => continue,
                Ok(slices) => {
                    self.notify(Notice::Waiting {
                        slices,
                        lease: job.settings.lease,
                    });
                    *lock(&self.next_poll) = Some(Instant::now() + poll);
                    Claimed::Wait(poll)
                }
                Err(e) => {
                    self.abort(Abort::Database(format!("{e:#}")));
                    Claimed::Exhausted
                }
            };
        }
    }

    /// The requests of a slice: the route's method, query, headers and body
    /// with the slice's bounds (each page's position filled in per call).
    fn slice_request(&self, claim: &Claim) -> anyhow::Result<http::SliceRequest<'_>> {
        let job = self.job;
        http::SliceRequest::new(
            job.client,
            job.route,
            &job.auth,
            &job.secrets,
            claim.from,
            claim.to,
        )
    }

    /// Masks the client's secrets in anything shown or recorded.
    fn masker(&self) -> http::Masker {
        let job = self.job;
        http::Masker::new(&job.auth, &job.route.headers, &job.route.query)
            .with_secrets(&job.secrets)
    }

    /// Records why the slice failed; `page` is the page that failed it.
    fn slice_failed(&self, track: &SliceTrack, page: u64, msg: String) {
        // Shown on stderr, written to the error log and to the ledger.
        let msg = self.masker().text(&msg);
        let claim = track.claim;
        let mut ctx = self.ctx(Some(&claim));
        ctx.page = Some(page);
        self.job.errlog.write("fatia falhou", &ctx, &msg);
        self.notify(Notice::SliceFailed {
            from: claim.from,
            to: claim.to,
            error: msg.clone(),
        });
        track.fetch_failed(msg);
    }

    /// Fetches page 1, then either walks the rest in order or, when the
    /// slice may spread and page 1 declared its pages, queues them for the
    /// pool. Where the slices before had several pages, as many (at most one
    /// per fetcher) are queued before page 1 is asked for, so they go out
    /// with it (`speculative_pages`). An error names the page it stopped at.
    fn fetch_slice(
        &self,
        track: &Arc<SliceTrack>,
        tx: &Sender<Chunk>,
    ) -> Result<(), (u64, SliceStop)> {
        let job = self.job;
        let claim = track.claim;
        let request = self
            .slice_request(&claim)
            .map_err(|e| (1, SliceStop::Failed(format!("{e:#}"))))?;
        let mut pager = Pager::new(&job.route.pagination, request.first_url());
        let may_spread = job.route.parallel_pages
            && matches!(
                job.route.pagination.kind,
                Pagination::Page { .. } | Pagination::Offset { .. }
            );
        let mut spreading = may_spread.then(|| {
            self.spreading.fetch_add(1, Ordering::SeqCst);
            Spreading(self)
        });
        let mut held = None;
        let mut ahead = None;
        let guess = self.guess(&pager);
        if may_spread && guess > 1 {
            let Some(room) = self.budget.for_page(job.quit, self.limiter.paced()) else {
                return Err((1, SliceStop::Released));
            };
            // Its followers wait for page 1 holding their room: page 1 must
            // hold its own already, or it could wait for theirs.
            if !room.is_deferred() {
                ahead = self.speculate(track, &pager, guess);
            }
            held = Some(room);
        }
        loop {
            let page_no = pager.page_number();
            if job.quit.load(Ordering::SeqCst) {
                return Err((page_no, SliceStop::Released));
            }
            let call = request.call(pager.current(), &pager.position());
            let (more, first) = self
                .fetch_page(
                    track,
                    &call,
                    page_no,
                    tx,
                    held.take(),
                    None,
                    |raw, body, link, n, rows| {
                        let first = spreading.as_ref().and_then(|_| rows_key(&rows.rows));
                        let more = pager
                            .advance(raw, body, link, n)
                            .map_err(|guard| format!("page {page_no}: {guard}"));
                        Ok((more, first))
                    },
                )
                .map_err(|e| (page_no, e))?;
            // A guard stops the slice only after the page's rows are on their way.
            if !more.map_err(|m| (page_no, SliceStop::Failed(m)))? {
                self.pages_hint.store(page_no, Ordering::Relaxed);
                return Ok(());
            }
            if let Some(spreading) = spreading.take() {
                if let Some(pages) = pager.pages_declared().filter(|p| *p > 1) {
                    self.pages_hint.store(pages, Ordering::Relaxed);
                    match ahead.take() {
                        Some(told) => told.declared(pages, &pager, first),
                        None => self.spread(track, &pager, pages, first),
                    }
                    .map_err(|e| (page_no + 1, e))?;
                    drop(spreading);
                    return Ok(());
                }
                // Walked in order from here: pages asked for ahead are dropped.
                drop(ahead.take());
            }
        }
    }

    /// How many pages a slice's page 1 is asked for with: as many as the
    /// run's last slice of known size had (the pair's last one done, at
    /// first), at most one per fetcher and `max_pages`; below 2, page 1 goes alone.
    fn guess(&self, pager: &Pager) -> u64 {
        let route = self.job.route;
        if !route.speculative_pages || !pager.may_declare() {
            return 0;
        }
        self.pages_hint
            .load(Ordering::Relaxed)
            .min(self.job.settings.threads as u64)
            .min(route.pagination.max_pages)
    }

    /// Refuses a slice that declares more than `max_pages` pages.
    fn within_max_pages(&self, pages: u64) -> Result<(), SliceStop> {
        let max = self.job.route.pagination.max_pages;
        if pages > max {
            return Err(SliceStop::Failed(format!(
                "page 2: guard: more than max_pages ({max}) pages in one slice (the API declared {pages})"
            )));
        }
        Ok(())
    }

    /// Queues pages `2..=pages` of the slice for the pool.
    fn spread(
        &self,
        track: &Arc<SliceTrack>,
        first: &Pager,
        pages: u64,
        page1: Option<[u8; 32]>,
    ) -> Result<(), SliceStop> {
        self.within_max_pages(pages)?;
        let spread = Spread::new(
            track,
            first.at(1),
            pages,
            Page1::Declared(pages, Box::new(first.at(1))),
        );
        lock(&spread.state).bodies.extend(page1.map(|d| (d, 1)));
        let mut q = lock(&self.ahead);
        if self.job.quit.load(Ordering::SeqCst) {
            return Err(SliceStop::Released);
        }
        track.hold();
        q.push_back(Arc::new(spread));
        drop(q);
        self.wake.notify();
        Ok(())
    }

    /// Queues pages `2..=guess` of a slice whose page 1 is about to be
    /// asked for; what they bring waits for page 1's word (`tell`).
    fn speculate<'s>(
        &'s self,
        track: &Arc<SliceTrack>,
        first: &Pager,
        guess: u64,
    ) -> Option<Told<'s, 'j, 'a>> {
        let spread = Arc::new(Spread::new(track, first.at(1), guess, Page1::Awaited));
        let mut q = lock(&self.ahead);
        if self.job.quit.load(Ordering::SeqCst) {
            return None;
        }
        track.hold();
        q.push_back(Arc::clone(&spread));
        drop(q);
        self.wake.notify();
        Some(Told {
            lane: self,
            spread: Some(spread),
        })
    }

    /// Page 1's word to a spread queued before it came: the pages past the
    /// ones it declares are no longer handed out (those out are dropped as
    /// they come back), the ones missing are queued. When the run stops,
    /// none is handed out any more and the slice goes back to pending.
    fn tell(&self, spread: &Arc<Spread>, word: Page1, page1: Option<[u8; 32]>) {
        let declared = match &word {
            Page1::Declared(t, _) => *t,
            _ => 1,
        };
        let mut q = lock(&self.ahead);
        let handed = spread.next.load(Ordering::Relaxed) - 1;
        let last = if self.job.quit.load(Ordering::SeqCst) {
            if declared > handed {
                spread.track.release();
            }
            declared.min(handed)
        } else {
            declared
        };
        let old = spread.pages.swap(last, Ordering::Relaxed);
        {
            let mut st = lock(&spread.state);
            st.left =
                (st.left + last.saturating_sub(handed)).saturating_sub(old.saturating_sub(handed));
            st.bodies.extend(page1.map(|d| (d, 1)));
            st.page1 = word;
        }
        spread.told.notify_all();
        let queued = q.iter().position(|s| Arc::ptr_eq(s, spread));
        match (queued, last > handed) {
            (Some(at), false) => {
                q.remove(at);
                drop(q);
                // The queue's hold.
                self.let_go(&spread.track);
            }
            (None, true) => {
                spread.track.hold();
                q.push_back(Arc::clone(spread));
                drop(q);
                self.wake.notify();
            }
            _ => {}
        }
    }

    /// Fetches one page: its body parsed once, its records turned into rows
    /// and sent to the writers, counted in the slice; `check` sees the body
    /// inside the retry loop and says what the page means for the slice.
    /// `room` is the page's room in the memory budget if taken already;
    /// `keep` says whether the page is still wanted (see `Spread::wanted`).
    #[allow(clippy::too_many_arguments)]
    fn fetch_page<T>(
        &self,
        track: &Arc<SliceTrack>,
        call: &http::Call<'_>,
        page_no: u64,
        tx: &Sender<Chunk>,
        room: Option<Reserved>,
        keep: Option<&dyn Fn(bool) -> bool>,
        mut check: impl FnMut(&[u8], &Json<'_>, Option<&str>, usize, &PageRows) -> Result<T, String>,
    ) -> Result<T, SliceStop> {
        let job = self.job;
        let claim = track.claim;
        // Room for the page in the memory budget, before it is asked for.
        let Some(mut held) = room.or_else(|| self.budget.for_page(job.quit, self.limiter.paced()))
        else {
            return Err(SliceStop::Released);
        };
        // What the page is charged: body, tree and rows. The rows mostly
        // reuse the room of records dropped as they are built; the overlap is
        // the margin for what the allocator keeps (docs/performance.md).
        let mut cost = 0;
        // The body is parsed once, borrowed, inside the retry loop: a body
        // that is not JSON or lacks the records is retried like a 5xx; one
        // nested past json::MAX_DEPTH fails the slice at once.
        let got = self.get_page(call, &claim, page_no, &mut held, keep, |raw, link| {
            let not_json = |e: crate::json::Error| {
                if e.is_too_deep() {
                    PageError::Data(format!("page {page_no}: {e}"))
                } else {
                    PageError::unusable(raw, format!("the body is not valid JSON ({e})"))
                }
            };
            let period = (job.scrap.from, job.scrap.to);
            // Records become rows as the body is parsed, written as
            // canonical text without a tree (json/text.rs) or, where that
            // path gives a record up, from a tree freed before the next
            // record is read. Where the pagination reads inside
            // the records the whole tree is built first; where a repeated
            // key put several arrays at the records' path, the body is
            // parsed again whole (the pointer names the last array).
            let mut streamed = None;
            let (mut body, tree) = if record::streams(job.route) {
                let mut rows = record::Rows::new(job.route, period, claim.from, 0);
                let (body, tree, found) =
                    Json::parse_records(raw, &job.route.records, &mut |i, el| rows.take(i, el))
                        .map_err(not_json)?;
                match found {
                    0 => (body, tree),
                    1 => {
                        streamed = Some(rows);
                        (body, tree)
                    }
                    _ => {
                        drop(body);
                        Json::parse_sized(raw).map_err(not_json)?
                    }
                }
            } else {
                Json::parse_sized(raw).map_err(not_json)?
            };
            let records = record::records_of_mut(&mut body, &job.route.records)
                .map_err(|m| PageError::unusable(raw, m))?;
            let n = records.len();
            let rows = match streamed {
                Some(rows) => rows.finish(n),
                None => record::page_rows(records, job.route, period, claim.from),
            }
            .map_err(|m| PageError::Data(format!("page {page_no}: {m}")))?;
            cost = raw.len() + tree + rows.bytes();
            let checked = check(raw, &body, link, n, &rows);
            Ok((rows, checked))
        });
        let (rows, checked) = got?;
        if let Some(why) = &rows.undated_reason {
            if track.first_undated() {
                let mut ctx = self.ctx(Some(&claim));
                ctx.page = Some(page_no);
                job.errlog.write("registro sem data", &ctx, why);
            }
        }
        for note in &rows.sanitised {
            let mut ctx = self.ctx(Some(&claim));
            ctx.page = Some(page_no);
            job.errlog.write("registro saneado", &ctx, note);
        }
        track.count_page(&rows);
        self.counters.count_page(&rows);
        // The body and its tree are gone: the page holds what its rows take.
        self.budget.saw_page(cost);
        held.resize(rows.bytes());
        if !rows.rows.is_empty() {
            track.hold();
            // Blocks while the channel is full: backpressure, never a drop.
            if let Err(SendError(chunk)) = tx.send(Chunk {
                lane: self.lane,
                slice: Arc::clone(track),
                rows: rows.rows,
                _held: Some(held),
            }) {
                // Every writer is gone (the run aborted): the slice stays unfinished.
                chunk.slice.release();
                self.let_go(&chunk.slice);
                return Err(SliceStop::Released);
            }
        }
        // A guard stops the slice only after the page's rows are on their way.
        checked.map_err(|m| SliceStop::Failed(format!("page {page_no}: {m}")))
    }

    /// One page with retries; `on_body` turns a 2xx body into `T`, or says
    /// why the body cannot be used.
    fn get_page<T>(
        &self,
        call: &http::Call<'_>,
        claim: &Claim,
        page_no: u64,
        held: &mut Reserved,
        keep: Option<&dyn Fn(bool) -> bool>,
        mut on_body: impl FnMut(&[u8], Option<&str>) -> Result<T, PageError>,
    ) -> Result<T, SliceStop> {
        let job = self.job;
        let policy = Policy {
            quit: Some(job.quit),
            ..self.policy()
        };
        let fetched = policy.run(
            |attempt| {
                // A page found unwanted is neither asked for again nor looked at.
                if keep.is_some_and(|k| !k(false)) {
                    return Err(PageError::Beyond);
                }
                // The pause and the rate are checked in one step, right before sending.
                let Some(permit) = self.limiter.acquire_as(job.quit, attempt > 1) else {
                    return Err(PageError::Quit);
                };
                let mut room = PageRoom {
                    held: &mut *held,
                    quit: job.quit,
                    limit: job.settings.max_body(),
                };
                let got = http::send(&self.agent, call, &job.auth, job.route, &mut room);
                self.counters.count_request(&got);
                // Rate-limit headers at 0, or a Retry-After on a 503: every
                // fetcher of the client waits, the rate stays.
                if let Some(wait) = http::pause_of(&got) {
                    self.limiter.pause(wait);
                }
                let got = match got {
                    // The server throttles the client, not this thread: every
                    // fetcher pauses for its Retry-After, else the backoff
                    // delay, and this one retries after the same wait.
                    Err(Failure::Retry {
                        status: Some(429),
                        wait,
                        message,
                        body,
                    }) => {
                        let wait =
                            wait.unwrap_or_else(|| policy.backoff.delay(attempt, fastrand::f64()));
                        permit.finish(Some(wait));
                        Err(Failure::Retry {
                            status: Some(429),
                            wait: Some(wait),
                            message,
                            body,
                        })
                    }
                    other => {
                        permit.finish(None);
                        other
                    }
                };
                // A page asked for with page 1 waits for its word before
                // anything of it (rows, errors) counts.
                if keep.is_some_and(|k| !k(true)) {
                    return Err(PageError::Beyond);
                }
                let page = got
                    .map_err(PageError::Http)
                    .and_then(|f| on_body(&f.body, f.link.as_deref()));
                if page.is_err() {
                    // No size learnt: a first page that fails does not keep
                    // the whole budget through its backoff and retries.
                    held.gave_no_body(job.settings.threads);
                }
                if let Err(PageError::Http(f)) = &page {
                    self.log_request_failure(
                        f,
                        &call.url,
                        claim,
                        page_no,
                        (attempt, policy.attempts),
                    );
                }
                page
            },
            PageError::verdict,
            |_, r| {
                add(&self.counters.retries, 1);
                self.notify(Notice::Retrying {
                    attempt: r.attempt,
                    attempts: r.attempts,
                    wait: r.wait,
                    of: Retried::Page,
                });
            },
        );
        fetched.map_err(|g| self.page_gave_up(g, page_no))
    }

    /// Writes a failed request to the error log, under the heading its kind calls for.
    fn log_request_failure(
        &self,
        f: &Failure,
        url: &url::Url,
        claim: &Claim,
        page_no: u64,
        attempt: (u32, u32),
    ) {
        let mut ctx = self.ctx(Some(claim));
        ctx.page = Some(page_no);
        // Masked only when something is logged: not on the success path.
        let masker = self.masker();
        ctx.url = Some(masker.url(url));
        ctx.attempt = Some(attempt);
        ctx.status = f.status();
        let (what, message, body) = match f {
            Failure::Auth { status, body } => {
                ("autenticação recusada", self.auth_refused(*status), body)
            }
            Failure::Refused { message, body, .. } => {
                ("requisição recusada", message.clone(), body)
            }
            Failure::Retry { message, body, .. } => ("tentativa falhou", message.clone(), body),
            Failure::Tls { message } => ("certificado recusado", message.clone(), &String::new()),
        };
        ctx.body = Some(masker.text(body));
        self.job.errlog.write(what, &ctx, &masker.text(&message));
    }

    fn auth_refused(&self, status: u16) -> String {
        format!(
            "the API refused the credentials of client {} on route {} (HTTP {status})",
            self.job.client.id, self.job.route.name
        )
    }

    /// What the end of a page's retries means for its slice.
    fn page_gave_up(&self, g: GaveUp<PageError>, page_no: u64) -> SliceStop {
        match (g.error, g.stop) {
            (_, Stop::Quit) | (PageError::Quit, _) => SliceStop::Released,
            (PageError::Beyond, _) => SliceStop::Beyond,
            (PageError::Http(Failure::Auth { status, .. }), _) => {
                // The slice that met the refusal fails (the summary counts
                // it); the others stop unworked and stay pending.
                let why = self.auth_refused(status);
                self.abort(Abort::Auth(why.clone()));
                SliceStop::Failed(format!("page {page_no}: {why}"))
            }
            (PageError::Http(Failure::Tls { message }), _) => {
                // Untrusted certificate: every request of the client would fail the same.
                self.abort(Abort::Environment(message.clone()));
                SliceStop::Failed(format!("page {page_no}: {message}"))
            }
            (PageError::Http(Failure::Refused { message, body, .. }), _) if body.is_empty() => {
                SliceStop::Failed(format!("page {page_no}: {message}"))
            }
            (PageError::Http(Failure::Refused { message, body, .. }), _) => {
                SliceStop::Failed(format!("page {page_no}: {message}: {body}"))
            }
            (PageError::Http(Failure::Retry { message, .. }), _) => SliceStop::Failed(format!(
                "page {page_no}: {message} (after {} attempts)",
                g.attempt
            )),
            (PageError::Data(m), _) => SliceStop::Failed(m),
        }
    }
}
