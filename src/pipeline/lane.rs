//! What a run's workers do through its shared state ([`Shared`]): its
//! figures for the ticker, stopping it, telling its outcome once nothing is
//! left for it, notices, error contexts, and ledger calls with retries.

use super::counters::add;
use super::outcome::{outcome, Abort, Trouble};
use super::{lock, Shared};
use crate::db;
use crate::ledger::Claim;
use crate::report::{ErrorContext, Notice, Retried, Snapshot, Watch};
use crate::retry::{Policy, Retrying, Verdict};
use anyhow::Result;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether a run may be over in this process (its queues are looked at
/// next): it is not stopping (`quit`), nothing is left to claim
/// (`exhausted`), and every slice it `claimed` has its end `recorded`.
fn settled(quit: bool, exhausted: bool, claimed: u64, recorded: u64) -> bool {
    !quit && exhausted && recorded == claimed
}

impl<'a> Shared<'_, 'a> {
    /// The figures of the run so far, for the ticker.
    pub(super) fn snapshot(&self, elapsed: std::time::Duration) -> Snapshot {
        let k = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let p = &self.job.progress;
        Snapshot {
            run_id: self.job.run_id,
            pages: g(&k.pages),
            records: g(&k.records),
            inserted: g(&k.inserted),
            duplicates: g(&k.duplicates),
            retries: g(&k.retries),
            elapsed,
            slices_done: p.slices_done_before + g(&k.slices_done),
            slices_failed: g(&k.slices_failed),
            slices_total: p.slices_total,
            slices_todo: p.slices_total.saturating_sub(p.slices_done_before),
        }
    }

    /// Stops the run: the first reason given is the one reported.
    pub(super) fn abort(&self, why: Abort) {
        lock(&self.abort).get_or_insert(why);
        self.job.quit.store(true, Ordering::SeqCst);
        self.wake.notify();
    }

    pub(super) fn aborted(&self) -> bool {
        lock(&self.abort).is_some()
    }

    /// Once nothing is left for the run in this process (every slice it
    /// claimed has its end recorded, and no more can be claimed), its
    /// outcome is told at once, while the crew works the other runs: the
    /// fleet closes it then. A run stopping (signal, abort) is told at the
    /// end, with the crew's verdict.
    pub(super) fn tell_if_over(&self) {
        let Some(tx) = &self.over_tx else { return };
        let claimed = self.claimed_total.load(Ordering::SeqCst);
        let quit = self.job.quit.load(Ordering::SeqCst);
        let exhausted = self.exhausted.load(Ordering::SeqCst);
        let recorded = self.ends_recorded.load(Ordering::SeqCst);
        if !settled(quit, exhausted, claimed, recorded)
            || !lock(&self.claimed).is_empty()
            || !lock(&self.ahead).is_empty()
            || self.over.swap(true, Ordering::SeqCst)
        {
            return;
        }
        if let Some(sink) = &self.job.progress.sink {
            drop(sink.send(Watch::Progress(self.snapshot(self.crew_started.elapsed()))));
        }
        let done = outcome(self.counters.totals(), None, Trouble::default(), false);
        drop(tx.send((self.lane, done)));
    }

    /// A page or a batch is tried again: counted, and told.
    pub(super) fn retrying(&self, r: Retrying, of: Retried) {
        add(&self.counters.retries, 1);
        self.notify(Notice::Retrying {
            attempt: r.attempt,
            attempts: r.attempts,
            wait: r.wait,
            of,
        });
    }

    pub(super) fn notify(&self, n: Notice) {
        // The receiver lives until every worker has ended: a send cannot fail
        // while anyone listens, and after that there is nobody to tell.
        let _ = self.notices.send(n);
    }

    pub(super) fn ctx(&self, claim: Option<&Claim>) -> ErrorContext {
        ErrorContext {
            scrap: Some(self.job.scrap.id),
            client: self.job.client.id.clone(),
            route: self.job.route.name.clone(),
            slice: claim.map(|c| (c.from, c.to)),
            ..Default::default()
        }
    }

    /// The run's retry policy; its waits do not yield to `quit`.
    pub(super) fn policy(&self) -> Policy<'a> {
        Policy {
            attempts: self.job.settings.retry_max,
            backoff: self.job.backoff,
            quit: None,
        }
    }

    /// One ledger call on a pooled connection, not retried.
    pub(super) fn db_once<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.job.pool.get()?;
        f(&mut conn)
    }

    /// A ledger call, retried while the database may come back.
    pub(super) fn with_db<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut postgres::Client) -> Result<T>,
    ) -> Result<T> {
        self.policy()
            .run(
                |_| self.db_once(&mut f),
                |e| Verdict::retry_if(db::retryable(e)),
                |e, r| {
                    log::warn!("{what}: {e:#}; retrying in {:.1}s", r.wait.as_secs_f64());
                    add(&self.counters.retries, 1);
                },
            )
            .map_err(|g| g.error.context(what.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_settled_once_every_claimed_slice_has_its_end_recorded() {
        assert!(settled(false, true, 3, 3));
        assert!(
            settled(false, true, 0, 0),
            "no slice claimed in this process"
        );
        assert!(
            !settled(false, true, 3, 2),
            "a slice's end is not recorded yet"
        );
        assert!(!settled(false, false, 3, 3), "more may be claimed");
        assert!(
            !settled(true, true, 3, 3),
            "a stopping run is told at the end"
        );
    }
}
