//! The byte budget of pages in flight (`ATLAS_MEMORY_MB`): a fetcher reserves
//! what a page will take before asking for it, keeps what its rows take
//! until a writer has committed them, and gives the rest back; a page larger
//! than the whole budget still passes, alone.
//!
//! Invariant: every reservation is given back when dropped, so nothing leaks
//! on an error path; a wait gives up when the run stops. Until a first body
//! is seen its size is unknown, so the run's first page reserves the whole
//! budget: the others send their requests and wait for it before reading
//! their bodies. An attempt of it that fails gives back all but a share per
//! fetcher, which is what pages then reserve until a size is known, so a
//! first page retrying against an API that is down holds nobody back.
//! After that a page reserves what pages were measured to take at their
//! peak (body, parsed tree and rows together), not a guessed multiple of
//! the body.

use super::lock;
use crate::http::body::Room;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a body that outgrew its reservation waits for more room before
/// it is given up (and asked for again): two bodies growing into the last
/// of the budget must not wait for each other for ever.
const GROW_WAIT: Duration = Duration::from_secs(2);

/// How long a request already sent waits for its deferred room before its
/// body is read without it (see `Reserved::settle`).
const SETTLE_WAIT: Duration = Duration::from_secs(10);

/// The next reservation after a page that took `cost` bytes at its peak,
/// the estimate being `old`: the larger of the two, except that the old one
/// loses a quarter per page, so one short last page of a slice does not let
/// the next full page in under-reserved, and smaller pages are soon
/// reserved at their own size.
fn next_estimate(old: usize, cost: usize) -> usize {
    cost.max(old - old / 4).max(1)
}

pub(super) struct Budget {
    cap: usize,
    used: Mutex<Used>,
    freed: Condvar,
    /// What recent pages took at their peak (`next_estimate`): the next
    /// reservation. Zero until a page was seen: then the first one reserves
    /// the whole budget.
    estimate: AtomicUsize,
}

/// Bytes held, and fetchers waiting for some to be given back (a wake-up
/// costs a system call: none is made when nobody waits).
#[derive(Default)]
struct Used {
    bytes: usize,
    waiting: usize,
    /// A body is growing past its reservation (`Reserved::grow`): one at a
    /// time, so bodies larger than anyone expected (a decompression bomb,
    /// a first big page) never take the whole budget together.
    growing: bool,
}

/// Bytes held from the budget, given back on drop.
pub(super) struct Reserved {
    budget: Arc<Budget>,
    bytes: usize,
    /// Nothing taken yet: `settle` takes it before the body is read.
    deferred: bool,
    /// This page's body holds the budget's one growth (`Used::growing`),
    /// until the page is resized to its rows or given back.
    growing: bool,
}

impl Budget {
    pub(super) fn new(mb: u64) -> Budget {
        Budget {
            cap: usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            used: Mutex::new(Used::default()),
            freed: Condvar::new(),
            estimate: AtomicUsize::new(0),
        }
    }

    /// Reserves room for the next page, waiting while the budget is full
    /// (unless nothing is held: a page larger than the budget passes alone);
    /// `None` when `quit` rose while waiting. While the run's first page,
    /// of unknown size, holds the whole budget, the reservation is deferred
    /// to `settle`, called once the answer's headers are in: the request is
    /// not held back, only the reading of its body.
    ///
    /// `paced`: the client's requests wait for places in a rate window. Then
    /// no page takes the whole budget before it is sent: it would wait for a
    /// place that fetchers waiting for its budget hold (a deadlock), so
    /// while no size is known every page is deferred.
    pub(super) fn for_page(self: &Arc<Self>, quit: &AtomicBool, paced: bool) -> Option<Reserved> {
        let used = lock(&self.used);
        let unknown = self.estimate.load(Ordering::Relaxed) == 0;
        let (bytes, deferred) = if unknown && (used.bytes > 0 || paced) {
            drop(used);
            (0, true)
        } else {
            (self.take(used, quit, None)?, false)
        };
        Some(Reserved {
            budget: Arc::clone(self),
            bytes,
            deferred,
            growing: false,
        })
    }

    /// Waits for room for one page and takes it; `None` when `quit` rose
    /// (or `until` passed).
    fn take(
        &self,
        mut used: MutexGuard<'_, Used>,
        quit: &AtomicBool,
        until: Option<Instant>,
    ) -> Option<usize> {
        // Read again after each wait: the first page's size, once seen,
        // lets the fetchers that waited behind it go together.
        let want = || match self.estimate.load(Ordering::Relaxed) {
            0 => self.cap,
            n => n.min(self.cap),
        };
        while used.bytes > 0 && used.bytes + want() > self.cap {
            if quit.load(Ordering::SeqCst) || until.is_some_and(|u| Instant::now() >= u) {
                return None;
            }
            used.waiting += 1;
            used = self
                .freed
                .wait_timeout(used, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            used.waiting -= 1;
        }
        let want = want();
        used.bytes += want;
        Some(want)
    }

    /// A page took `cost` bytes at its peak (its body, tree and rows): the
    /// next reservation follows it. Fetchers race here; a lost update only
    /// costs one page's smoothing.
    pub(super) fn saw_page(&self, cost: usize) {
        let old = self.estimate.load(Ordering::Relaxed);
        self.estimate
            .store(next_estimate(old, cost), Ordering::Relaxed);
    }

    /// A page gave no body: while no size is known, pages reserve a share of
    /// `1/fetchers` of the budget each rather than all of it, so a failing
    /// first page does not make every page wait for the one before.
    pub(super) fn saw_no_body(&self, fetchers: usize) {
        let share = (self.cap / fetchers.max(1)).max(1);
        let _ = self
            .estimate
            .compare_exchange(0, share, Ordering::Relaxed, Ordering::Relaxed);
    }
}

impl Reserved {
    /// The page's attempt gave no usable body: while no size is known, the
    /// budget falls back to a share per fetcher (`saw_no_body`), and this
    /// reservation keeps no more than that share, so the fetchers waiting
    /// behind a failing first page go while it backs off and retries.
    pub(super) fn gave_no_body(&mut self, fetchers: usize) {
        self.budget.saw_no_body(fetchers);
        let share = self.budget.estimate.load(Ordering::Relaxed);
        // Also ends a growing body's turn: the next body may grow meanwhile.
        self.resize(self.bytes.min(share));
    }

    /// Nothing is taken yet: the room is waited for before the body is read.
    pub(super) fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// Takes a deferred reservation, waiting for room as `for_page` would;
    /// when `quit` rose meanwhile the body is read without it (the run is
    /// ending: the page is not kept). The wait is bounded (`SETTLE_WAIT`):
    /// this request holds a place in its client's rate window meanwhile,
    /// and the page holding the budget may be waiting for that place.
    pub(super) fn settle(&mut self, quit: &AtomicBool) {
        if std::mem::take(&mut self.deferred) {
            let used = lock(&self.budget.used);
            let until = Instant::now() + SETTLE_WAIT;
            self.bytes = self.budget.take(used, quit, Some(until)).unwrap_or_else(|| {
                log::debug!("no room in the memory budget after {SETTLE_WAIT:?}: the body is read without it");
                0
            });
        }
    }

    /// Holds `bytes` from now on (what the page's rows take), giving back
    /// the rest or taking more without waiting (the memory is in use).
    /// A growing body's turn ends here.
    pub(super) fn resize(&mut self, bytes: usize) {
        let mut used = lock(&self.budget.used);
        let freed = bytes < self.bytes || self.growing;
        used.bytes = (used.bytes + bytes).saturating_sub(self.bytes);
        self.bytes = bytes;
        if std::mem::take(&mut self.growing) {
            used.growing = false;
        }
        let wake = freed && used.waiting > 0;
        drop(used);
        if wake {
            self.budget.freed.notify_all();
        }
    }
}

impl Reserved {
    /// Holds `total` bytes for a body that is being read and outgrew the
    /// reservation: taken at once when nothing else is held (a page larger
    /// than the budget passes alone), or when the budget has room and no
    /// other body is growing (one at a time), else waited for up to
    /// `GROW_WAIT`. `false` when none came (or `quit` rose): the body is
    /// given up, and the next reservation is at least `total`.
    pub(super) fn grow(&mut self, total: usize, quit: &AtomicBool) -> bool {
        if total <= self.bytes {
            return true;
        }
        let extra = total - self.bytes;
        let deadline = Instant::now() + GROW_WAIT;
        let mut used = lock(&self.budget.used);
        loop {
            let alone = used.bytes == self.bytes;
            let turn = self.growing || !used.growing;
            if alone || (turn && used.bytes + extra <= self.budget.cap) {
                used.bytes += extra;
                self.bytes = total;
                if !self.growing {
                    used.growing = true;
                    self.growing = true;
                }
                return true;
            }
            let now = Instant::now();
            if quit.load(Ordering::SeqCst) || now >= deadline {
                drop(used);
                self.budget.saw_page(total);
                return false;
            }
            used.waiting += 1;
            used = self
                .budget
                .freed
                .wait_timeout(used, (deadline - now).min(Duration::from_millis(100)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            used.waiting -= 1;
        }
    }
}

/// A page's reservation as the room its body is read in: what is held
/// sizes the buffer, growth past it is taken from the budget as the bytes
/// arrive, and no body passes `limit` (`max_body_mb`).
pub(super) struct PageRoom<'a> {
    pub held: &'a mut Reserved,
    pub quit: &'a AtomicBool,
    pub limit: usize,
}

impl Room for PageRoom<'_> {
    fn limit(&self) -> usize {
        self.limit
    }
    fn held(&self) -> usize {
        self.held.bytes
    }
    fn settle(&mut self) {
        self.held.settle(self.quit);
    }
    fn grow(&mut self, total: usize) -> bool {
        self.held.grow(total, self.quit)
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.resize(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits, up to `within`, until `done` says so; whether it did.
    fn eventually(within: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + within;
        while !done() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// What `waiting.settle` takes from `b`: it must be found waiting for
    /// room, and go once `release` has run (a waiter still stuck after 2 s
    /// gives up: 0).
    fn settles_after(
        b: &Budget,
        waiting: &mut Reserved,
        quit: &AtomicBool,
        release: impl FnOnce(),
    ) -> usize {
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                waiting.settle(quit);
                waiting.bytes
            });
            assert!(
                eventually(Duration::from_secs(10), || lock(&b.used).waiting > 0),
                "the waiter never waited for room"
            );
            assert!(!waiter.is_finished(), "the whole budget is held");
            release();
            eventually(Duration::from_secs(2), || waiter.is_finished());
            quit.store(true, Ordering::SeqCst);
            waiter.join().unwrap()
        })
    }

    #[test]
    fn a_full_budget_waits_and_a_big_page_passes_alone() {
        let b = Arc::new(Budget::new(1));
        let quit = AtomicBool::new(false);
        // Nothing seen yet: the first page takes the whole budget.
        let mut first = b.for_page(&quit, false).unwrap();
        assert_eq!(lock(&b.used).bytes, 1 << 20);
        b.saw_page(400_000);
        first.resize(200_000);
        let second = b.for_page(&quit, false).unwrap();
        assert_eq!(lock(&b.used).bytes, 600_000);
        let third = b.for_page(&quit, false).unwrap();
        assert_eq!(lock(&b.used).bytes, 1_000_000);
        // 1,400,000 bytes would not fit in 1 MiB: a fourth page waits, here
        // until quit rises.
        quit.store(true, Ordering::SeqCst);
        assert!(b.for_page(&quit, false).is_none());
        quit.store(false, Ordering::SeqCst);
        drop((first, second, third));
        assert_eq!(lock(&b.used).bytes, 0, "every reservation given back");
        // A page bigger than the budget passes when nothing else is held.
        b.saw_page(40 << 20);
        let big = b.for_page(&quit, false).unwrap();
        assert_eq!(lock(&b.used).bytes, 1 << 20, "capped at the budget");
        drop(big);
        assert_eq!(lock(&b.used).bytes, 0);

        // A first page that fails leaves a share per fetcher, not the whole budget.
        let b = Arc::new(Budget::new(1));
        b.saw_no_body(4);
        let one = b.for_page(&quit, false).unwrap();
        assert_eq!(lock(&b.used).bytes, 1 << 18);
        drop(one);
    }

    #[test]
    fn the_estimate_follows_measured_pages_and_decays_slowly() {
        let b = Arc::new(Budget::new(64));
        let quit = AtomicBool::new(false);
        b.saw_page(30 << 20);
        let big = b.for_page(&quit, false).unwrap();
        assert_eq!(big.bytes, 30 << 20, "what the page was measured to take");
        // A short last page of a slice: the next reservation stays near the
        // full page's, falling by a quarter per page.
        b.saw_page(1 << 20);
        assert_eq!(b.for_page(&quit, false).unwrap().bytes, (30 << 20) * 3 / 4);
        for _ in 0..40 {
            b.saw_page(1 << 20);
        }
        assert_eq!(b.for_page(&quit, false).unwrap().bytes, 1 << 20);
        // A larger page is followed at once.
        b.saw_page(50 << 20);
        drop(big);
        assert_eq!(b.for_page(&quit, false).unwrap().bytes, 50 << 20);
        assert_eq!(next_estimate(0, 0), 1, "never zero: zero means none seen");
    }

    #[test]
    fn fetchers_waiting_behind_the_first_page_go_once_its_size_is_known() {
        let b = Arc::new(Budget::new(1));
        let quit = AtomicBool::new(false);
        let mut first = b.for_page(&quit, false).unwrap();
        // The first page's size is unknown: the next request is not held
        // back, only the reading of its body (`settle`).
        let mut second = b.for_page(&quit, false).unwrap();
        assert_eq!(lock(&b.used).bytes, 1 << 20, "nothing more taken yet");
        let took = settles_after(&b, &mut second, &quit, || {
            b.saw_page(4_000);
            // The first page's rows are still held (not yet committed).
            first.resize(10_000);
        });
        assert_eq!(took, 4_000);
        assert_eq!(lock(&b.used).bytes, 14_000);
        // Once a size is known, nothing is deferred.
        quit.store(false, Ordering::SeqCst);
        let third = b.for_page(&quit, false).unwrap();
        assert_eq!((third.bytes, third.deferred), (4_000, false));
        drop((first, second, third));
        assert_eq!(lock(&b.used).bytes, 0, "every reservation given back");
    }

    #[test]
    fn a_body_grows_into_free_room_alone_past_the_budget_and_else_gives_up() {
        let b = Arc::new(Budget::new(1));
        let quit = AtomicBool::new(false);
        b.saw_page(100_000);
        let mut one = b.for_page(&quit, false).unwrap();
        let mut two = b.for_page(&quit, false).unwrap();
        assert!(one.grow(600_000, &quit), "free room is taken at once");
        assert_eq!(lock(&b.used).bytes, 700_000);
        // No room left for two's growth while one holds its bytes: after
        // GROW_WAIT it gives up, and the next reservation covers its size.
        let t = Instant::now();
        assert!(!two.grow(900_000, &quit));
        assert!(t.elapsed() >= GROW_WAIT);
        assert_eq!(two.bytes, 100_000, "nothing more held");
        assert_eq!(b.estimate.load(Ordering::Relaxed), 900_000);
        // Once one is given back, two grows, even past the budget: alone.
        drop(one);
        assert!(two.grow(3 << 20, &quit));
        assert_eq!(lock(&b.used).bytes, 3 << 20);
        drop(two);
        assert_eq!(lock(&b.used).bytes, 0, "every byte given back");
    }

    #[test]
    fn one_body_at_a_time_grows_past_its_reservation() {
        let b = Arc::new(Budget::new(64));
        let quit = AtomicBool::new(false);
        b.saw_page(10_000);
        let mut one = b.for_page(&quit, false).unwrap();
        let mut two = b.for_page(&quit, false).unwrap();
        let mut three = b.for_page(&quit, false).unwrap();
        assert!(one.grow(8 << 20, &quit));
        assert!(one.grow(16 << 20, &quit), "the grower goes on growing");
        // Room enough, but one body is growing already: the other waits,
        // then gives up (a bomb each would take the budget together).
        let t = Instant::now();
        assert!(!two.grow(1 << 20, &quit));
        assert!(t.elapsed() >= GROW_WAIT);
        // Once the first page is down to its rows, the next may grow.
        one.resize(20_000);
        assert!(two.grow(1 << 20, &quit));
        drop(two);
        assert!(
            three.grow(2 << 20, &quit),
            "a dropped grower's turn is over"
        );
        drop((one, three));
        assert_eq!(lock(&b.used).bytes, 0);
        assert!(!lock(&b.used).growing);
    }

    #[test]
    fn a_growing_body_goes_as_soon_as_room_is_given_back() {
        let b = Arc::new(Budget::new(1));
        let quit = AtomicBool::new(false);
        b.saw_page(500_000);
        let mut one = b.for_page(&quit, false).unwrap();
        let mut two = b.for_page(&quit, false).unwrap();
        std::thread::scope(|s| {
            let grower = s.spawn(|| two.grow(800_000, &quit));
            // The writer commits one's rows: its room comes back.
            one.resize(0);
            assert!(grower.join().unwrap());
        });
        assert_eq!(lock(&b.used).bytes, 800_000);
    }

    #[test]
    fn a_paced_client_sends_nothing_holding_the_whole_budget() {
        let b = Arc::new(Budget::new(1));
        let quit = AtomicBool::new(false);
        // Unpaced, the first page holds the whole budget before it is sent.
        let first = b.for_page(&quit, false).unwrap();
        assert_eq!((first.bytes, first.deferred), (1 << 20, false));
        drop(first);
        // Paced, it would wait for a rate place with the budget held: every
        // page is deferred until a size is known, the first to settle takes all.
        let mut one = b.for_page(&quit, true).unwrap();
        let mut two = b.for_page(&quit, true).unwrap();
        assert!(one.deferred && two.deferred);
        assert_eq!(lock(&b.used).bytes, 0);
        one.settle(&quit);
        assert_eq!(one.bytes, 1 << 20);
        let took = settles_after(&b, &mut two, &quit, || {
            b.saw_page(5_000);
            one.resize(5_000);
        });
        assert_eq!(took, 5_000);
    }

    #[test]
    fn a_failing_first_page_lets_the_waiting_fetchers_go() {
        let b = Arc::new(Budget::new(1));
        let quit = AtomicBool::new(false);
        let mut first = b.for_page(&quit, false).unwrap();
        let mut second = b.for_page(&quit, false).unwrap();
        // The first page's attempt failed: it backs off holding a share only.
        let took = settles_after(&b, &mut second, &quit, || first.gave_no_body(4));
        assert_eq!(first.bytes, 1 << 18);
        assert_eq!(took, 1 << 18);
        drop((first, second));
        assert_eq!(lock(&b.used).bytes, 0);
    }
}
