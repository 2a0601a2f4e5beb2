//! Slices in flight: who still holds each one (its fetcher, and every chunk
//! not yet committed), how it ends, recording that end in the ledger, and
//! the leases: renewed while slices are worked, taken over from workers of
//! this machine whose process is gone.
//!
//! Invariants: a slice ends once, when its last holder lets go. It ends done
//! only if nothing failed and none of its rows was left uncommitted; a
//! failure is final (chunks committed after it do not make the slice done);
//! a slice with uncommitted rows and no failure goes back to pending.

use super::{add, lock, Abort, Lanes, Shared};
use crate::ledger::{self, Claim, SliceCounts, SliceEnd};
use crate::record::PageRows;
use crate::report::Notice;
use crossbeam::channel::{Receiver, RecvTimeoutError};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One slice in flight.
pub(super) struct SliceTrack {
    pub(super) claim: Claim,
    /// The fetcher while it works, plus every chunk sent and not yet committed.
    holders: AtomicUsize,
    /// Why the slice failed, if it did.
    failed: Mutex<Option<String>>,
    /// Some of its rows will not be committed (the run stops): back to pending.
    released: AtomicBool,
    counts: Mutex<SliceCounts>,
    /// The first undated record's reason was written to the error log.
    undated_logged: AtomicBool,
    /// A batch's commit recorded the slice's end with its last rows.
    end_recorded: AtomicBool,
}

/// How a slice ended, handed to its last holder to record.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Ending {
    pub(super) end: SliceEnd,
    pub(super) counts: SliceCounts,
    pub(super) error: Option<String>,
}

impl SliceTrack {
    /// A slice just claimed, held by its fetcher.
    pub(super) fn new(claim: Claim) -> Arc<SliceTrack> {
        Arc::new(SliceTrack {
            claim,
            holders: AtomicUsize::new(1),
            failed: Mutex::new(None),
            released: AtomicBool::new(false),
            counts: Mutex::new(SliceCounts::default()),
            undated_logged: AtomicBool::new(false),
            end_recorded: AtomicBool::new(false),
        })
    }

    /// A chunk of its rows is on its way to a writer: one more holder.
    pub(super) fn hold(&self) {
        self.holders.fetch_add(1, Ordering::SeqCst);
    }

    /// The fetcher gave up on the slice: its reason, which names the page,
    /// is the one recorded.
    pub(super) fn fetch_failed(&self, why: String) {
        *lock(&self.failed) = Some(why);
    }

    /// The database refused a batch with rows of the slice: the reason is
    /// recorded unless the slice failed already.
    pub(super) fn batch_refused(&self, why: String) {
        lock(&self.failed).get_or_insert(why);
    }

    /// Some of its rows will not be committed: unless it failed, the slice
    /// goes back to pending when it ends.
    pub(super) fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
    }

    /// Adds a fetched page to the slice's counters.
    pub(super) fn count_page(&self, rows: &PageRows) {
        let mut c = lock(&self.counts);
        c.pages += 1;
        c.records += rows.fetched as i64;
        c.out_of_period += rows.out_of_period as i64;
        c.undated += rows.undated as i64;
    }

    /// Whether the slice failed already (its other pages need not be fetched).
    pub(super) fn has_failed(&self) -> bool {
        lock(&self.failed).is_some()
    }

    /// True once per slice: the first undated record is logged, not each.
    pub(super) fn first_undated(&self) -> bool {
        !self.undated_logged.swap(true, Ordering::SeqCst)
    }

    /// The slice's counters when it ends whole as soon as `here` holders let
    /// go: they are all it has (its fetcher is gone, no other writer holds
    /// rows of it), nothing failed and nothing was released. Only those
    /// holders could change that, so it stays true: a writer holding them
    /// records the end with the commit of its last rows.
    pub(super) fn settled_with(&self, here: usize) -> Option<SliceCounts> {
        if self.holders.load(Ordering::SeqCst) != here
            || self.released.load(Ordering::SeqCst)
            || lock(&self.failed).is_some()
        {
            return None;
        }
        Some(lock(&self.counts).clone())
    }

    /// A batch's commit recorded the slice's end.
    pub(super) fn end_was_recorded(&self) {
        self.end_recorded.store(true, Ordering::SeqCst);
    }

    /// A holder lets go; the last one gets how the slice ended.
    pub(super) fn let_go(&self) -> Option<Ending> {
        if self.holders.fetch_sub(1, Ordering::SeqCst) != 1 {
            return None;
        }
        let error = lock(&self.failed).clone();
        let end = if error.is_some() {
            SliceEnd::Failed
        } else if self.released.load(Ordering::SeqCst) {
            SliceEnd::Released
        } else {
            SliceEnd::Done
        };
        Some(Ending {
            end,
            counts: lock(&self.counts).clone(),
            error,
        })
    }
}

/// Slices a worker thread holds while it works them: if the thread unwinds
/// (a panic), each is released (back to pending, its uncommitted rows not
/// counted) and let go, so it does not stay running under a lease that this
/// live process keeps renewing. Normal paths take the slices out first.
pub(super) struct ReleaseOnPanic<F: FnMut(&SliceTrack)> {
    pub(super) held: Vec<Arc<SliceTrack>>,
    pub(super) let_go: F,
}

impl<F: FnMut(&SliceTrack)> Drop for ReleaseOnPanic<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for t in self.held.drain(..) {
                t.release();
                (self.let_go)(&t);
            }
        }
    }
}

/// Slice ends waiting to be recorded: the first holder to find none being
/// recorded records all that wait, in one statement, and again while more
/// came meanwhile (a group commit: one WAL flush for many small slices).
#[derive(Default)]
pub(super) struct Ends {
    queue: Vec<(Claim, Ending)>,
    recording: bool,
}

impl Shared<'_, '_> {
    /// Lets go of a slice; the last holder records how it ended, or leaves
    /// it to the holder recording ends right now. Every slice is recorded
    /// before the run's threads are joined: a recorder takes the queue until
    /// it finds it empty.
    pub(super) fn let_go(&self, t: &SliceTrack) {
        let Some(ending) = t.let_go() else { return };
        if t.end_recorded.load(Ordering::SeqCst) {
            self.count_end(&t.claim, &ending, true);
            self.ends_counted(1);
            return;
        }
        lock(&self.ends).queue.push((t.claim, ending));
        self.record_ends();
    }

    fn record_ends(&self) {
        loop {
            let batch = {
                let mut e = lock(&self.ends);
                if e.recording || e.queue.is_empty() {
                    return;
                }
                e.recording = true;
                std::mem::take(&mut e.queue)
            };
            // Reset even if recording unwinds, so later ends are not stranded.
            struct Recording<'e>(&'e Mutex<Ends>);
            impl Drop for Recording<'_> {
                fn drop(&mut self) {
                    lock(self.0).recording = false;
                }
            }
            let _recording = Recording(&self.ends);
            self.record_batch(&batch);
        }
    }

    fn record_batch(&self, batch: &[(Claim, Ending)]) {
        let worker = &self.job.worker;
        let finishes: Vec<ledger::SliceFinish<'_>> = batch
            .iter()
            .map(|(claim, e)| ledger::SliceFinish {
                slice: claim.id,
                end: self.end_of(claim, e.end),
                counts: &e.counts,
                error: e.error.as_deref(),
            })
            .collect();
        let recorded = self.with_db("recording the end of a slice", |c| {
            ledger::finish_slices(c, worker, &finishes)
        });
        match recorded {
            Ok(flags) => {
                for ((claim, e), ok) in batch.iter().zip(flags) {
                    self.count_end(claim, e, ok);
                }
                self.ends_counted(batch.len() as u64);
            }
            Err(err) => {
                // The lease will expire and a rerun takes the slices again: nothing is lost.
                log::error!("{err:#}");
                self.abort(Abort::Database(format!("{err:#}")));
            }
        }
    }

    /// `n` more ends recorded: the run may be over.
    fn ends_counted(&self, n: u64) {
        self.ends_recorded.fetch_add(n, Ordering::SeqCst);
        self.tell_if_over();
    }

    fn count_end(&self, claim: &Claim, e: &Ending, recorded: bool) {
        if !recorded {
            log::warn!(
                "slice {}..{} was taken over by another worker (lease expired); rows committed before stand (counted there), later ones are left to its new holder",
                claim.from,
                claim.to
            );
            return;
        }
        match self.end_of(claim, e.end) {
            SliceEnd::Done => add(&self.counters.slices_done, 1),
            SliceEnd::Open => {
                add(&self.counters.slices_done, 1);
                add(&self.counters.slices_open, 1);
            }
            SliceEnd::Failed => add(&self.counters.slices_failed, 1),
            SliceEnd::Released => {}
        }
    }

    /// A slice loaded whole is `open` when it holds a day that had not
    /// ended (and settled) when the run started.
    pub(super) fn end_of(&self, claim: &Claim, end: SliceEnd) -> SliceEnd {
        match end {
            SliceEnd::Done if claim.to >= self.job.open_from => SliceEnd::Open,
            other => other,
        }
    }

    /// Gives back the slices claimed in advance that no fetcher started
    /// (the run stopped first): pending again.
    pub(super) fn release_unstarted_claims(&self) {
        let left: Vec<Claim> = lock(&self.claimed).drain(..).collect();
        for claim in left {
            let t = SliceTrack::new(claim);
            t.release();
            self.let_go(&t);
        }
    }

    /// A worker of this machine whose process is gone (killed, crashed) keeps
    /// its leases until they expire; ending them now lets a rerun go on at
    /// once, and its runs still marked running are closed as aborted. Where
    /// liveness cannot be known, the lease expiry does it later. Returns the
    /// slices whose leases were ended; a database error is logged and
    /// written to the error log (the lease expiry still frees them later).
    pub(super) fn take_over_dead_local_workers(&self) -> u64 {
        let job = self.job;
        let report = |what: &str, e: &anyhow::Error| {
            log::warn!("{what}: {e:#}");
            job.errlog.write(
                "retomada falhou",
                &self.ctx(None),
                &format!("{what}: {e:#}"),
            );
        };
        let holders = match self.db_once(|c| ledger::other_holders(c, job.scrap.id, &job.worker)) {
            Ok(h) => h,
            Err(e) => {
                report("cannot list the workers holding slices", &e);
                return 0;
            }
        };
        let mut taken = 0;
        for w in holders
            .iter()
            .filter(|w| ledger::worker_gone(&job.worker, w))
        {
            match self.db_once(|c| ledger::expire_worker(c, w)) {
                Ok(n) => {
                    log::info!("worker {w} is gone: took over its {n} slice(s)");
                    taken += n;
                }
                Err(e) => report(&format!("cannot take over dead worker {w}"), &e),
            }
        }
        if let Err(e) =
            self.db_once(|c| ledger::abort_dead_runs(c, Some(job.scrap.id), &job.worker))
        {
            report("cannot close the runs of dead workers", &e);
        }
        if taken > 0 {
            self.notify(Notice::TookOver { slices: taken });
        }
        taken
    }
}

/// Extends the crew's leases (every worker's slices, every run) every third
/// of a lease until `stop` is dropped. A failed renewal is only logged: the
/// next one may work, and a lease that expires costs a slice fetched twice,
/// never a row.
pub(super) fn renew_leases(crew: &Lanes, stop: &Receiver<()>) {
    let lease = crew.settings.lease;
    let every = (lease / 3).max(Duration::from_millis(200));
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        let lanes = crew.active();
        let Some(first) = lanes.first() else { continue };
        let mut workers: Vec<&str> = lanes.iter().map(|l| l.job.worker.as_str()).collect();
        workers.sort_unstable();
        workers.dedup();
        for w in &workers {
            if let Err(e) = first.db_once(|c| ledger::heartbeat(c, w, lease)) {
                log::warn!("lease heartbeat failed: {e:#}");
            }
        }
        for l in lanes.iter().filter(|l| !l.over.load(Ordering::SeqCst)) {
            if let Err(e) = l.db_once(|c| ledger::renew_run(c, l.job.run_id, lease)) {
                log::warn!("run lease heartbeat failed: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn track() -> Arc<SliceTrack> {
        let day = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        SliceTrack::new(Claim {
            id: 1,
            from: day,
            to: day,
        })
    }

    fn end_of(e: Option<Ending>) -> Option<(SliceEnd, Option<String>)> {
        e.map(|e| (e.end, e.error))
    }

    #[test]
    fn a_slice_is_done_only_when_its_last_chunk_commits() {
        let t = track();
        t.hold();
        t.hold();
        assert_eq!(t.let_go(), None, "the fetcher is done, two chunks are not");
        assert_eq!(t.let_go(), None, "one chunk still uncommitted");
        assert_eq!(end_of(t.let_go()), Some((SliceEnd::Done, None)));
    }

    #[test]
    fn a_slice_without_rows_is_done_when_its_fetcher_ends() {
        assert_eq!(end_of(track().let_go()), Some((SliceEnd::Done, None)));
    }

    #[test]
    fn a_refused_chunk_fails_the_slice_and_later_commits_do_not_resurrect_it() {
        let t = track();
        t.hold();
        t.hold();
        t.batch_refused("the database refused a batch: bad value".into());
        assert_eq!(t.let_go(), None, "the refused chunk lets go");
        assert_eq!(t.let_go(), None, "the next chunk commits fine");
        assert_eq!(
            end_of(t.let_go()),
            Some((
                SliceEnd::Failed,
                Some("the database refused a batch: bad value".into())
            ))
        );
    }

    #[test]
    fn a_failed_fetch_fails_the_slice_even_if_every_chunk_commits() {
        let t = track();
        t.hold();
        t.fetch_failed("page 3: HTTP 404".into());
        assert_eq!(t.let_go(), None, "the fetcher gave up");
        assert_eq!(
            end_of(t.let_go()),
            Some((SliceEnd::Failed, Some("page 3: HTTP 404".into())))
        );
    }

    #[test]
    fn the_fetchers_reason_replaces_a_refused_batch_but_not_the_reverse() {
        let t = track();
        t.batch_refused("refused 1".into());
        t.batch_refused("refused 2".into());
        assert_eq!(lock(&t.failed).as_deref(), Some("refused 1"));
        t.fetch_failed("page 2: guard".into());
        t.batch_refused("refused 3".into());
        assert_eq!(lock(&t.failed).as_deref(), Some("page 2: guard"));
    }

    #[test]
    fn uncommitted_rows_send_the_slice_back_unless_it_failed() {
        let t = track();
        t.hold();
        t.release();
        assert_eq!(t.let_go(), None);
        assert_eq!(end_of(t.let_go()), Some((SliceEnd::Released, None)));

        let t = track();
        t.release();
        t.fetch_failed("page 1: HTTP 400".into());
        assert_eq!(
            end_of(t.let_go()),
            Some((SliceEnd::Failed, Some("page 1: HTTP 400".into())))
        );
    }

    #[test]
    fn pages_add_up_in_the_slice_counts() {
        let t = track();
        let page = |fetched, out_of_period, undated| PageRows {
            rows: Vec::new(),
            fetched,
            out_of_period,
            undated,
            undated_reason: None,
            sanitised: Vec::new(),
        };
        t.count_page(&page(100, 3, 1));
        t.count_page(&page(40, 0, 2));
        let e = t.let_go().unwrap();
        assert_eq!(
            e.counts,
            SliceCounts {
                pages: 2,
                records: 140,
                out_of_period: 3,
                undated: 3,
            }
        );
    }

    #[test]
    fn a_panicking_holder_releases_its_slices() {
        let t = track();
        t.hold();
        let ended = Mutex::new(Vec::new());
        let panicked = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = ReleaseOnPanic {
                    held: vec![Arc::clone(&t)],
                    let_go: |t: &SliceTrack| {
                        if let Some(e) = t.let_go() {
                            lock(&ended).push(e.end);
                        }
                    },
                };
                panic!("a writer bug");
            })
            .join()
            .is_err()
        });
        assert!(panicked);
        assert!(lock(&ended).is_empty(), "the fetcher still holds it");
        assert_eq!(end_of(t.let_go()), Some((SliceEnd::Released, None)));

        let t = track();
        {
            let _guard = ReleaseOnPanic {
                held: vec![Arc::clone(&t)],
                let_go: |_: &SliceTrack| panic!("not on a normal path"),
            };
        }
        assert_eq!(end_of(t.let_go()), Some((SliceEnd::Done, None)));
    }

    #[test]
    fn exactly_one_holder_ends_the_slice_across_threads() {
        let t = track();
        let chunks = 64;
        for _ in 0..chunks {
            t.hold();
        }
        let endings: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..=chunks)
                .map(|_| s.spawn(|| usize::from(t.let_go().is_some())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(endings, 1);
    }
}
