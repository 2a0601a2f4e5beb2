//! Slices spread over the fetchers (random-access pagination,
//! `parallel_pages`): once page 1 declared the pages, the others are queued
//! and any free fetcher takes the next one; the last page in checks the
//! guards that need every page (a repeat, an empty page inside the total).

use super::page::{rows_key, SliceStop};
use super::track::{ReleaseOnPanic, SliceTrack};
use super::{lock, Chunk, Shared};
use crate::paginate::{Pager, Seen};
use crossbeam::channel::Sender;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A slice whose pages after the first are fetched by any free fetcher
/// (random-access pagination, `parallel_pages`). While it waits in the
/// queue it holds its slice once; the page handed out last inherits that
/// hold. A spread queued before page 1 answered (`speculative_pages`) has
/// as many pages as the slices before it had: they are asked for with page
/// 1, but nothing of theirs is kept before page 1's word; those past the
/// pages it declares are dropped unseen, and the ones missing are queued.
pub(super) struct Spread {
    pub(super) track: Arc<SliceTrack>,
    /// Page 1's pager (before page 1 when speculative): every other page's
    /// request is derived from it.
    first: Pager,
    /// The last page to hand out (changed under the queue's lock).
    pub(super) pages: AtomicU64,
    /// The next page to hand out (taken under the queue's lock).
    pub(super) next: AtomicU64,
    pub(super) state: Mutex<SpreadState>,
    /// Signalled when page 1's word comes.
    pub(super) told: Condvar,
}

/// What the pages of a spread slice said so far.
pub(super) struct SpreadState {
    /// Pages queued or in flight, not yet finished.
    pub(super) left: u64,
    /// Non-empty bodies seen, by digest: a repeat means the API ignores the page.
    pub(super) bodies: HashMap<[u8; 32], u64>,
    /// The lowest empty page and the lowest short page.
    empty: Option<u64>,
    short: Option<u64>,
    pub(super) page1: Page1,
}

/// Page 1's word on the pages after it.
pub(super) enum Page1 {
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
    pub(super) fn new(track: &Arc<SliceTrack>, first: Pager, pages: u64, page1: Page1) -> Spread {
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
pub(super) struct Spreading<'s, 'j, 'a>(pub(super) &'s Shared<'j, 'a>);

impl Drop for Spreading<'_, '_, '_> {
    fn drop(&mut self) {
        self.0.spreading.fetch_sub(1, Ordering::SeqCst);
        self.0.wake.notify();
    }
}

impl<'j, 'a> Shared<'j, 'a> {
    /// The next page of a spread slice, if any waits.
    pub(super) fn take_page(&self) -> Option<PageTask> {
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
    pub(super) fn work_page(&self, task: PageTask, tx: &Sender<Chunk>) {
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

    /// Refuses a slice that declares more than `max_pages` pages.
    pub(super) fn within_max_pages(&self, pages: u64) -> Result<(), SliceStop> {
        let max = self.job.route.pagination.max_pages;
        if pages > max {
            return Err(SliceStop::Failed(format!(
                "page 2: guard: more than max_pages ({max}) pages in one slice (the API declared {pages})"
            )));
        }
        Ok(())
    }

    /// Queues pages `2..=pages` of the slice for the pool.
    pub(super) fn spread(
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
}
