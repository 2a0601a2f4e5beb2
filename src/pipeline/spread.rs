//! Slices spread over the fetchers (random-access pagination,
//! `parallel_pages`): once page 1 declared the pages, the others are queued
//! and any free fetcher takes the next one; the last page in checks the
//! guards that need every page (a repeat, an empty page inside the total).

use super::page::{rows_key, SliceStop};
use super::track::{ReleaseOnPanic, SliceTrack};
use super::{lock, Chunk, Shared};
use crate::paginate::{Pager, Seen};
use crossbeam::channel::Sender;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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

/// What the pages of a spread slice said so far (`P`: page 1's pager, left
/// out in tests).
pub(super) struct SpreadState<P = Box<Pager>> {
    /// Pages queued or in flight, not yet finished.
    pub(super) left: u64,
    /// Non-empty bodies seen, by digest: a repeat means the API ignores the page.
    pub(super) bodies: HashMap<[u8; 32], u64>,
    /// The lowest empty page and the lowest short page.
    empty: Option<u64>,
    short: Option<u64>,
    pub(super) page1: Page1<P>,
}

/// Page 1's word on the pages after it (`P`: its pager).
pub(super) enum Page1<P = Box<Pager>> {
    /// Not in yet (a speculative spread): its pages wait before keeping anything.
    Awaited,
    /// The pages the slice declared, and page 1's pager, against whose
    /// total every page is checked.
    Declared(u64, P),
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
            match st.page1.wants(k, wait, quit.load(Ordering::SeqCst)) {
                Wanted::Yes => return true,
                Wanted::No => return false,
                Wanted::Released => {
                    self.track.release();
                    return false;
                }
                Wanted::Wait => {
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

/// Whether a page of a spread slice is wanted, on page 1's word so far.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    Yes,
    No,
    /// The run stops before page 1's word came: not wanted, and the slice
    /// goes back to pending.
    Released,
    /// Page 1's word is to be waited for.
    Wait,
}

impl<P> Page1<P> {
    /// The pages page 1 declared, once it has.
    pub(super) fn declared(&self) -> Option<u64> {
        match self {
            Page1::Declared(t, _) => Some(*t),
            _ => None,
        }
    }

    /// Whether page `k` is wanted: not past the pages declared. Before the
    /// word it is, unless `wait` (what it brought is about to count): then
    /// the word is waited for, unless the run stops (`quit`).
    fn wants(&self, k: u64, wait: bool, quit: bool) -> Wanted {
        match self {
            Page1::Declared(t, _) if k <= *t => Wanted::Yes,
            Page1::Declared(..) | Page1::Nothing => Wanted::No,
            Page1::Awaited if !wait => Wanted::Yes,
            Page1::Awaited if quit => Wanted::Released,
            Page1::Awaited => Wanted::Wait,
        }
    }
}

impl<P> SpreadState<P> {
    /// Page `page` came back with rows (`seen` says how many) whose digest
    /// is `body` (`None`: no rows): the lowest empty and short pages are
    /// kept, and a page serving another page's records again fails the
    /// slice (the API ignores the page).
    fn page_in(&mut self, page: u64, seen: Seen, body: Option<[u8; 32]>) -> Result<(), String> {
        match seen {
            Seen::Empty => self.empty = Some(self.empty.map_or(page, |e| e.min(page))),
            Seen::Short => self.short = Some(self.short.map_or(page, |s| s.min(page))),
            Seen::Rows => {}
        }
        match body.and_then(|d| self.bodies.insert(d, page)) {
            Some(other) => Err(format!(
                "page {page}: guard: page {page} repeats the records of page {other}"
            )),
            None => Ok(()),
        }
    }

    /// Once every page is in: an empty page inside the declared total,
    /// unless a short page before it ended the data, contradicts the total.
    /// That page and the total.
    fn contradicted(&self) -> Option<(u64, u64)> {
        match (self.left, self.empty, self.page1.declared()) {
            (0, Some(e), Some(t)) if self.short.is_none_or(|s| s > e) => Some((e, t)),
            _ => None,
        }
    }
}

/// Refuses a slice that declares more than `max` pages (`max_pages`).
fn within_max_pages(pages: u64, max: u64) -> Result<(), String> {
    if pages > max {
        return Err(format!(
            "page 2: guard: more than max_pages ({max}) pages in one slice (the API declared {pages})"
        ));
    }
    Ok(())
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
            Ok(Some((seen, body))) => st.page_in(page, seen, body).map_err(SliceStop::Failed),
            Err(e) => Err(e),
        };
        let lie = st.contradicted();
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
        within_max_pages(pages, self.job.route.pagination.max_pages).map_err(SliceStop::Failed)
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
        match self.queue(&Arc::new(spread)) {
            true => Ok(()),
            false => Err(SliceStop::Released),
        }
    }

    /// Queues a spread for the pool unless the run stops (`false`).
    pub(super) fn queue(&self, spread: &Arc<Spread>) -> bool {
        let q = lock(&self.ahead);
        if self.job.quit.load(Ordering::SeqCst) {
            return false;
        }
        self.push(q, spread);
        true
    }

    /// Puts a spread at the end of the queue `q` (the run's, locked), which
    /// holds its slice while it waits, and wakes the idle fetchers.
    pub(super) fn push(&self, mut q: MutexGuard<'_, VecDeque<Arc<Spread>>>, spread: &Arc<Spread>) {
        spread.track.hold();
        q.push_back(Arc::clone(spread));
        drop(q);
        self.wake.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(left: u64, page1: Page1<()>) -> SpreadState<()> {
        SpreadState {
            left,
            bodies: HashMap::new(),
            empty: None,
            short: None,
            page1,
        }
    }

    #[test]
    fn a_page_is_wanted_up_to_the_declared_total() {
        let word: Page1<()> = Page1::Declared(3, ());
        assert_eq!(word.wants(3, true, false), Wanted::Yes, "the last page");
        assert_eq!(word.wants(4, false, false), Wanted::No, "past the total");
        assert_eq!(word.wants(4, true, true), Wanted::No);
        assert_eq!(Page1::<()>::Nothing.wants(2, false, false), Wanted::No);
        assert_eq!(word.declared(), Some(3));
        assert_eq!(Page1::<()>::Nothing.declared(), None);
    }

    #[test]
    fn before_page_1_answers_a_page_goes_out_but_waits_to_count() {
        let awaited: Page1<()> = Page1::Awaited;
        assert_eq!(awaited.wants(9, false, false), Wanted::Yes, "asked for");
        assert_eq!(
            awaited.wants(9, true, false),
            Wanted::Wait,
            "kept only on the word"
        );
        assert_eq!(
            awaited.wants(9, true, true),
            Wanted::Released,
            "the run stops: back to pending"
        );
        assert_eq!(
            awaited.wants(9, false, true),
            Wanted::Yes,
            "quit is seen when it counts"
        );
        assert_eq!(awaited.declared(), None);
    }

    #[test]
    fn an_empty_page_inside_the_total_contradicts_it_once_every_page_is_in() {
        let mut st = state(0, Page1::Declared(5, ()));
        assert_eq!(st.page_in(4, Seen::Empty, None), Ok(()));
        assert_eq!(st.page_in(3, Seen::Empty, None), Ok(()));
        assert_eq!(st.contradicted(), Some((3, 5)), "the lowest empty page");
        st.left = 1;
        assert_eq!(st.contradicted(), None, "a page is still out");
    }

    #[test]
    fn a_short_page_before_the_empty_one_ended_the_data() {
        let mut st = state(0, Page1::Declared(5, ()));
        st.page_in(4, Seen::Empty, None).unwrap();
        st.page_in(3, Seen::Short, Some([3; 32])).unwrap();
        assert_eq!(st.contradicted(), None);
        let mut st = state(0, Page1::Declared(5, ()));
        st.page_in(2, Seen::Empty, None).unwrap();
        st.page_in(3, Seen::Short, Some([3; 32])).unwrap();
        assert_eq!(st.contradicted(), Some((2, 5)), "the short page came after");
    }

    #[test]
    fn without_a_declared_total_nothing_is_contradicted() {
        let mut st = state(0, Page1::Nothing);
        st.page_in(2, Seen::Empty, None).unwrap();
        assert_eq!(st.contradicted(), None);
        let mut st = state(0, Page1::Awaited);
        st.page_in(2, Seen::Empty, None).unwrap();
        assert_eq!(st.contradicted(), None);
        assert_eq!(
            state(0, Page1::Declared(5, ())).contradicted(),
            None,
            "no empty page"
        );
    }

    #[test]
    fn a_page_repeating_another_pages_records_fails_the_slice() {
        let mut st = state(3, Page1::Declared(4, ()));
        st.bodies.insert([1; 32], 1);
        assert_eq!(st.page_in(2, Seen::Rows, Some([2; 32])), Ok(()));
        assert_eq!(
            st.page_in(3, Seen::Rows, None),
            Ok(()),
            "no rows: no digest"
        );
        assert_eq!(st.page_in(4, Seen::Rows, None), Ok(()));
        assert_eq!(
            st.page_in(4, Seen::Rows, Some([1; 32])),
            Err("page 4: guard: page 4 repeats the records of page 1".into())
        );
    }

    #[test]
    fn a_slice_declaring_more_than_max_pages_is_refused() {
        assert_eq!(within_max_pages(10, 10), Ok(()));
        assert_eq!(within_max_pages(0, 10), Ok(()));
        assert_eq!(
            within_max_pages(11, 10),
            Err(
                "page 2: guard: more than max_pages (10) pages in one slice (the API declared 11)"
                    .into()
            )
        );
    }
}
