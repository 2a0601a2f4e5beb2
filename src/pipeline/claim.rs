//! Claiming a run's slices: several in one statement (up to one per
//! fetcher), handed out one at a time; while other workers hold the last
//! slices, when to look again; slices of dead local workers taken over first.

use super::{lock, Abort, Shared};
use crate::ledger::{self, Claim};
use crate::report::Notice;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a run has to claim right now.
pub(super) enum Claimed {
    Slice(Claim),
    /// Other workers hold its last slices: look again later.
    Wait(Duration),
    /// Nothing more for this process (or the run stops).
    Exhausted,
}

impl<'j, 'a> Shared<'j, 'a> {
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
    pub(super) fn claim_now(&self) -> Claimed {
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
}
