//! A fetcher's slice: page 1, then the rest walked in order, or, when the
//! slice may spread and page 1 declared its pages, queued for the pool.
//!
//! Invariant: a slice whose rows cannot all be sent (the run stops) is
//! released, never marked done; the fetcher lets go of its slice last thing.

use super::page::{rows_key, SliceStop};
use super::spread::Spreading;
use super::track::{ReleaseOnPanic, SliceTrack};
use super::{Chunk, Shared};
use crate::config::Pagination;
use crate::ledger::Claim;
use crate::paginate::Pager;
use crossbeam::channel::Sender;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Whether a slice's pages after the first may be fetched by any fetcher:
/// `parallel_pages`, with a pagination whose pages can be asked for out of
/// order (by page number or offset).
fn may_spread(parallel_pages: bool, kind: &Pagination) -> bool {
    parallel_pages && matches!(kind, Pagination::Page { .. } | Pagination::Offset { .. })
}

/// What the page loop does after a page.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// The slice ended at this page, its `pages`th.
    Done { pages: u64 },
    /// Page 1 of a slice that may spread declared `pages` pages: the rest
    /// go to the pool.
    Spread { pages: u64 },
    /// The next page, walked in order.
    Walk,
}

/// After page `page_no` (`more`: the pagination goes on): a slice that may
/// spread spreads from page 1 (`first_of_spread`) when it declared more
/// than one page; otherwise it is walked in order to its end.
fn after_page(page_no: u64, more: bool, first_of_spread: bool, declared: Option<u64>) -> Next {
    match declared.filter(|p| *p > 1) {
        _ if !more => Next::Done { pages: page_no },
        Some(pages) if first_of_spread => Next::Spread { pages },
        _ => Next::Walk,
    }
}

impl<'j, 'a> Shared<'j, 'a> {
    /// Works a claimed slice to its end: fetched whole, failed (recorded)
    /// or released, then let go.
    pub(super) fn work_slice(&self, claim: Claim, tx: &Sender<Chunk>) {
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
        let may_spread = may_spread(job.route.parallel_pages, &job.route.pagination.kind);
        let mut spreading = may_spread.then(|| {
            self.spreading.fetch_add(1, Ordering::SeqCst);
            Spreading(self)
        });
        // Counted as spreading (or not to spread) from here on.
        self.starting.fetch_sub(1, Ordering::SeqCst);
        if !may_spread {
            self.wake.notify();
        }
        let request = self
            .slice_request(&claim)
            .map_err(|e| (1, SliceStop::Failed(format!("{e:#}"))))?;
        let mut pager = Pager::new(&job.route.pagination, request.first_url());
        let mut held = None;
        let mut ahead = None;
        let guess = self.guess(&pager, may_spread);
        if guess > 1 {
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
            let more = more.map_err(|m| (page_no, SliceStop::Failed(m)))?;
            let declared = spreading.as_ref().and_then(|_| pager.pages_declared());
            match after_page(page_no, more, spreading.is_some(), declared) {
                Next::Done { pages } => {
                    self.pages_hint.store(pages, Ordering::Relaxed);
                    return Ok(());
                }
                Next::Spread { pages } => {
                    self.pages_hint.store(pages, Ordering::Relaxed);
                    match ahead.take() {
                        Some(told) => told.declared(pages, &pager, first),
                        None => self.spread(track, &pager, pages, first),
                    }
                    .map_err(|e| (page_no + 1, e))?;
                    drop(spreading.take());
                    return Ok(());
                }
                Next::Walk => {
                    // Walked in order from here: pages asked for ahead are
                    // dropped, and idle fetchers wait for no page of it.
                    drop(ahead.take());
                    drop(spreading.take());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_ends_at_the_page_where_the_pagination_stops() {
        assert_eq!(after_page(1, false, true, Some(4)), Next::Done { pages: 1 });
        assert_eq!(after_page(1, false, false, None), Next::Done { pages: 1 });
        assert_eq!(after_page(7, false, false, None), Next::Done { pages: 7 });
    }

    #[test]
    fn page_1_spreads_only_when_it_declared_more_than_one_page() {
        assert_eq!(
            after_page(1, true, true, Some(4)),
            Next::Spread { pages: 4 }
        );
        assert_eq!(
            after_page(1, true, true, Some(1)),
            Next::Walk,
            "one page: nothing to spread"
        );
        assert_eq!(after_page(1, true, true, None), Next::Walk, "total unknown");
        assert_eq!(
            after_page(1, true, false, Some(4)),
            Next::Walk,
            "may not spread"
        );
        assert_eq!(after_page(2, true, false, None), Next::Walk);
    }

    #[test]
    fn only_paginations_asked_for_out_of_order_spread() {
        let page = Pagination::Page {
            param: "page".into(),
            start: 1,
            size_param: None,
            size: None,
            total_pages: Some("total".into()),
            stop_on_short_page: false,
        };
        let offset = Pagination::Offset {
            offset_param: "offset".into(),
            limit_param: "limit".into(),
            limit: 100,
            total: None,
        };
        assert!(may_spread(true, &page));
        assert!(may_spread(true, &offset));
        assert!(!may_spread(false, &page), "parallel_pages off");
        assert!(!may_spread(true, &Pagination::LinkHeader));
        assert!(!may_spread(true, &Pagination::None));
        let cursor = Pagination::Cursor {
            param: "c".into(),
            cursor_path: "next".into(),
        };
        assert!(!may_spread(true, &cursor));
    }
}
