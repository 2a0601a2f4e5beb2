//! Speculative pages (`speculative_pages`): a slice's pages after the first
//! queued before page 1 is asked for, as many as the slices before had, so
//! that they go out with it; page 1's word then drops those past the pages
//! it declares and queues the ones missing.

use super::page::SliceStop;
use super::spread::{Page1, Spread};
use super::track::SliceTrack;
use super::{lock, Shared};
use crate::paginate::Pager;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a slice's page 1 speculates from.
struct Hint {
    /// The slice may spread over the fetchers (`parallel_pages`, with a
    /// pagination by page number or offset).
    may_spread: bool,
    /// The route asks for pages ahead (`speculative_pages`).
    speculative: bool,
    /// The pagination can declare how many pages there are.
    may_declare: bool,
    /// Pages the run's last slice of known size had (the pair's last one
    /// done, at first); 0 where none is known.
    last_pages: u64,
    /// Fetchers in the crew.
    threads: usize,
    /// `max_pages` of the route.
    max_pages: u64,
}

/// How many pages a slice's page 1 is asked for with: as many as the last
/// slice of known size had, at most one per fetcher and `max_pages`; 0
/// where the slice cannot spread or speculate. Below 2, page 1 goes alone.
fn guess(h: &Hint) -> u64 {
    if !h.may_spread || !h.speculative || !h.may_declare {
        return 0;
    }
    h.last_pages.min(h.threads as u64).min(h.max_pages)
}

/// A speculative spread when page 1's word comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Untold {
    /// Pages handed out so far, page 1 counted.
    handed: u64,
    /// The last page to hand out (the guess).
    pages: u64,
    /// Pages queued or in flight, not yet finished.
    left: u64,
    /// It is still in the queue (some guessed page is not handed out).
    queued: bool,
}

/// What page 1's word makes of a speculative spread.
#[derive(Debug, PartialEq, Eq)]
struct Retold {
    /// The last page to hand out from now on.
    pages: u64,
    /// Pages queued or in flight, not yet finished.
    left: u64,
    /// The run stops before every declared page was handed out: the slice
    /// goes back to pending.
    release: bool,
    queue: Requeue,
}

/// What becomes of a spread in the queue.
#[derive(Debug, PartialEq, Eq)]
enum Requeue {
    Keep,
    /// Every page it is to have is handed out: it leaves the queue.
    Remove,
    /// Out of the queue, but pages are missing: it goes back in.
    Add,
}

/// Page 1 declared `declared` pages (1: none wanted after it) to a spread
/// that was `untold`: it now ends there, or, when the run stops (`quit`),
/// at the pages handed out already.
fn retell(declared: u64, quit: bool, untold: Untold) -> Retold {
    let Untold {
        handed,
        pages,
        left,
        queued,
    } = untold;
    let last = if quit { declared.min(handed) } else { declared };
    let queue = match (queued, last > handed) {
        (true, false) => Requeue::Remove,
        (false, true) => Requeue::Add,
        _ => Requeue::Keep,
    };
    Retold {
        pages: last,
        left: (left + last.saturating_sub(handed)).saturating_sub(pages.saturating_sub(handed)),
        release: quit && declared > handed,
        queue,
    }
}

/// A spread queued before its page 1 answered, until page 1's word is
/// told; dropped untold (page 1 failed, the slice ended or walks in order,
/// a panic), it tells that no page after page 1 is wanted.
pub(super) struct Told<'s, 'j, 'a> {
    lane: &'s Shared<'j, 'a>,
    spread: Option<Arc<Spread>>,
}

impl Told<'_, '_, '_> {
    /// Page 1 declared `pages`, at `first`, its rows' digest `page1`.
    pub(super) fn declared(
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

impl<'j, 'a> Shared<'j, 'a> {
    /// How many pages a slice's page 1 is asked for with (see [`guess`]).
    pub(super) fn guess(&self, pager: &Pager, may_spread: bool) -> u64 {
        let route = self.job.route;
        guess(&Hint {
            may_spread,
            speculative: route.speculative_pages,
            may_declare: pager.may_declare(),
            last_pages: self.pages_hint.load(Ordering::Relaxed),
            threads: self.job.settings.threads,
            max_pages: route.pagination.max_pages,
        })
    }

    /// Queues pages `2..=guess` of a slice whose page 1 is about to be
    /// asked for; what they bring waits for page 1's word (`tell`).
    pub(super) fn speculate<'s>(
        &'s self,
        track: &Arc<SliceTrack>,
        first: &Pager,
        guess: u64,
    ) -> Option<Told<'s, 'j, 'a>> {
        let spread = Arc::new(Spread::new(track, first.at(1), guess, Page1::Awaited));
        if !self.queue(&spread) {
            return None;
        }
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
        let q = lock(&self.ahead);
        let queued = q.iter().position(|s| Arc::ptr_eq(s, spread));
        let retold = {
            let mut st = lock(&spread.state);
            let retold = retell(
                word.declared().unwrap_or(1),
                self.job.quit.load(Ordering::SeqCst),
                Untold {
                    handed: spread.next.load(Ordering::Relaxed) - 1,
                    pages: spread.pages.load(Ordering::Relaxed),
                    left: st.left,
                    queued: queued.is_some(),
                },
            );
            if retold.release {
                spread.track.release();
            }
            spread.pages.store(retold.pages, Ordering::Relaxed);
            st.left = retold.left;
            st.bodies.extend(page1.map(|d| (d, 1)));
            st.page1 = word;
            retold
        };
        spread.told.notify_all();
        match (retold.queue, queued) {
            (Requeue::Remove, Some(at)) => {
                let mut q = q;
                q.remove(at);
                drop(q);
                // The queue's hold.
                self.let_go(&spread.track);
            }
            (Requeue::Add, _) => self.push(q, spread),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route speculating, with a crew of 4 fetchers, whose last slice had 3 pages.
    fn hint() -> Hint {
        Hint {
            may_spread: true,
            speculative: true,
            may_declare: true,
            last_pages: 3,
            threads: 4,
            max_pages: 1000,
        }
    }

    #[test]
    fn page_1_goes_out_with_as_many_pages_as_the_last_slice_had() {
        assert_eq!(guess(&hint()), 3);
        let many = Hint {
            last_pages: 50,
            ..hint()
        };
        assert_eq!(guess(&many), 4, "at most one per fetcher");
        assert_eq!(
            guess(&Hint {
                max_pages: 2,
                ..many
            }),
            2,
            "at most max_pages"
        );
    }

    #[test]
    fn page_1_goes_alone_without_a_hint_or_where_nothing_may_spread() {
        assert_eq!(
            guess(&Hint {
                last_pages: 0,
                ..hint()
            }),
            0,
            "no slice known yet"
        );
        assert_eq!(
            guess(&Hint {
                last_pages: 1,
                ..hint()
            }),
            1,
            "one page: alone"
        );
        assert_eq!(
            guess(&Hint {
                threads: 1,
                ..hint()
            }),
            1,
            "one fetcher: alone"
        );
        assert_eq!(
            guess(&Hint {
                may_spread: false,
                ..hint()
            }),
            0
        );
        assert_eq!(
            guess(&Hint {
                speculative: false,
                ..hint()
            }),
            0
        );
        assert_eq!(
            guess(&Hint {
                may_declare: false,
                ..hint()
            }),
            0,
            "no total to check"
        );
    }

    /// Four pages guessed, `handed` of them out (page 1 counted), none finished.
    fn guessed_4(handed: u64) -> Untold {
        Untold {
            handed,
            pages: 4,
            left: 3,
            queued: handed < 4,
        }
    }

    #[test]
    fn a_right_guess_changes_nothing() {
        let r = retell(4, false, guessed_4(4));
        let want = Retold {
            pages: 4,
            left: 3,
            release: false,
            queue: Requeue::Keep,
        };
        assert_eq!(r, want);
        assert_eq!(
            retell(4, false, guessed_4(2)).queue,
            Requeue::Keep,
            "page 4 still to go"
        );
    }

    #[test]
    fn pages_guessed_past_the_total_are_not_handed_out() {
        // Pages 2 and 3 out, 4 queued; page 1 says 2: page 3 comes back unwanted.
        let r = retell(2, false, guessed_4(3));
        assert_eq!((r.pages, r.left, r.queue), (2, 2, Requeue::Remove));
        // All out: page 4 will come back unwanted, still counted as left.
        let r = retell(3, false, guessed_4(4));
        assert_eq!((r.pages, r.left, r.queue), (3, 3, Requeue::Keep));
    }

    #[test]
    fn pages_missing_from_the_guess_are_queued() {
        let r = retell(6, false, guessed_4(4));
        assert_eq!((r.pages, r.left, r.queue), (6, 5, Requeue::Add));
        let r = retell(6, false, guessed_4(2));
        assert_eq!(
            (r.pages, r.left, r.queue),
            (6, 5, Requeue::Keep),
            "still queued"
        );
    }

    #[test]
    fn page_1_wanting_none_after_it_stops_the_handing_out() {
        let r = retell(1, false, guessed_4(2));
        assert_eq!(r.pages, 1);
        assert_eq!(r.left, 1, "page 2 is out: it comes back unwanted");
        assert_eq!(r.queue, Requeue::Remove);
        assert!(!r.release);
    }

    #[test]
    fn when_the_run_stops_no_page_is_handed_out_and_a_slice_short_of_pages_is_released() {
        let r = retell(6, true, guessed_4(2));
        assert_eq!((r.pages, r.left, r.release), (2, 1, true));
        assert_eq!(r.queue, Requeue::Remove);
        let r = retell(2, true, guessed_4(3));
        assert!(!r.release, "every page wanted is out already");
        assert_eq!(r.pages, 2);
    }
}
