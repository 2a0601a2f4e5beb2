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
    /// How many pages a slice's page 1 is asked for with: as many as the
    /// run's last slice of known size had (the pair's last one done, at
    /// first), at most one per fetcher and `max_pages`; below 2, page 1 goes alone.
    pub(super) fn guess(&self, pager: &Pager) -> u64 {
        let route = self.job.route;
        if !route.speculative_pages || !pager.may_declare() {
            return 0;
        }
        self.pages_hint
            .load(Ordering::Relaxed)
            .min(self.job.settings.threads as u64)
            .min(route.pagination.max_pages)
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
}
