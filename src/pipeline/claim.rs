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

/// Slices one claim statement takes at the most (docs/architecture.md, "How a run
/// works"): one per fetcher up to this, the rest claimed as they are needed.
const MAX_BATCH: usize = 16;

/// How many claims' worth one statement takes with the database across
/// the network (`db_round_trip` measured far): a fetcher that finds the
/// queue empty waits a whole round trip, so four pages' worth each are
/// claimed at once (a backfill's slices are one small page each).
const FAR_AHEAD: usize = 4;

/// Slices one claim statement takes for a crew of `threads` fetchers, the
/// database `far` or not.
fn claim_batch(threads: usize, far: bool) -> i64 {
    let n = threads.clamp(1, MAX_BATCH);
    (if far { n * FAR_AHEAD } else { n }) as i64
}

/// How often a run whose last slices other workers hold looks at them
/// again: often, so that the run ends (and its exit is told) soon after
/// they do; a quarter of a `lease`, within 0.2 to 0.5 s.
fn poll_every(lease: Duration) -> Duration {
    (lease / 4).clamp(Duration::from_millis(200), Duration::from_millis(500))
}

/// How long a run that waits for other workers' slices still waits at
/// `now`, when it is to look again at `next_poll`; `None`: look now.
fn poll_left(next_poll: Option<Instant>, now: Instant) -> Option<Duration> {
    next_poll.and_then(|at| at.checked_duration_since(now))
}

/// Whether a run has claimed every slice it can in this process: it began
/// with no slice held elsewhere (`held_at_start`), and its `claimed` slices
/// are as many as were left undone (`total` less `done_before`).
fn all_claimed(held_at_start: bool, claimed: u64, total: u64, done_before: u64) -> bool {
    !held_at_start && claimed >= total.saturating_sub(done_before)
}

impl<'j, 'a> Shared<'j, 'a> {
    /// Counts `n` slices claimed. Once a run that began with no slice held
    /// elsewhere has claimed as many as were left undone, every one of them
    /// went through it: nothing more can be free, or held by another
    /// worker, for this run, and no more claims are tried (each would be two
    /// statements on a fetcher's way to its next page).
    pub(super) fn count_claims(&self, n: usize) {
        let job = self.job;
        let total = self.claimed_total.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        let p = &job.progress;
        if all_claimed(
            job.held_at_start,
            total,
            p.slices_total,
            p.slices_done_before,
        ) {
            self.exhausted.store(true, Ordering::SeqCst);
        }
    }

    /// A slice claimed ahead, counted as `starting` before the queue is
    /// let go: an idle fetcher never sees it neither queued nor started.
    pub(super) fn take_claimed(&self) -> Option<Claim> {
        let mut claimed = lock(&self.claimed);
        let claim = claimed.pop_front()?;
        self.starting.fetch_add(1, Ordering::SeqCst);
        Some(claim)
    }

    /// The next slice of this run to work, claimed with others ahead (up to
    /// one per fetcher in one statement). While other workers hold the
    /// rest, says when to look again. Slices held by processes of this
    /// machine that are gone are taken over before the run's first claim,
    /// and again before waiting.
    pub(super) fn claim_now(&self) -> Claimed {
        let job = self.job;
        let poll = poll_every(job.settings.lease);
        let batch = claim_batch(job.settings.threads, job.settings.db_round_trip.is_some());
        loop {
            if job.quit.load(Ordering::SeqCst) || self.exhausted.load(Ordering::SeqCst) {
                return Claimed::Exhausted;
            }
            if let Some(left) = poll_left(*lock(&self.next_poll), Instant::now()) {
                return Claimed::Wait(left);
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
            if let Some(claim) = self.take_claimed() {
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
                lock(&self.claimed).extend(claims);
                self.take_claimed()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_claim_takes_one_slice_per_fetcher_up_to_the_cap() {
        assert_eq!(claim_batch(0, false), 1, "at least one");
        assert_eq!(claim_batch(1, false), 1);
        assert_eq!(claim_batch(8, false), 8);
        assert_eq!(claim_batch(16, false), 16);
        assert_eq!(claim_batch(64, false), 16);
        // Across the network: four each, a round trip saved per four pages.
        assert_eq!(claim_batch(8, true), 32);
        assert_eq!(claim_batch(64, true), 64);
    }

    #[test]
    fn slices_held_elsewhere_are_looked_at_again_within_half_a_second() {
        assert_eq!(
            poll_every(Duration::from_secs(1)),
            ms(250),
            "a quarter of the lease"
        );
        assert_eq!(poll_every(Duration::from_secs(60)), ms(500));
        assert_eq!(poll_every(ms(100)), ms(200));
    }

    #[test]
    fn a_waiting_run_waits_until_its_next_look() {
        let now = Instant::now();
        assert_eq!(poll_left(None, now), None, "never waited: look now");
        assert_eq!(poll_left(Some(now + ms(300)), now), Some(ms(300)));
        assert_eq!(poll_left(Some(now), now + ms(1)), None, "past: look now");
    }

    #[test]
    fn a_run_is_all_claimed_once_it_claimed_every_slice_left_undone() {
        assert!(!all_claimed(false, 3, 10, 6));
        assert!(all_claimed(false, 4, 10, 6));
        assert!(
            all_claimed(false, 5, 10, 6),
            "a slice released, then claimed again"
        );
        assert!(all_claimed(false, 0, 4, 4), "nothing left undone");
        assert!(all_claimed(false, 1, 1, 0), "a one-slice scrap");
        assert!(all_claimed(false, 0, 0, 0), "no slice");
    }

    #[test]
    fn a_run_that_began_with_slices_held_elsewhere_is_never_all_claimed_by_count() {
        assert!(!all_claimed(true, 10, 10, 0));
        assert!(!all_claimed(true, 0, 0, 0));
    }
}
