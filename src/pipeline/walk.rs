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
}
