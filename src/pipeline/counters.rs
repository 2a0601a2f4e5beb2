//! A run's live counters (pages, records, rows, retries, slices, requests):
//! added to by every worker, read by the ticker and summed into the run's totals.

use crate::ledger::RunTotals;
use crate::record::PageRows;
use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, read by the ticker.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) pages: AtomicU64,
    pub(super) records: AtomicU64,
    pub(super) inserted: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) out_of_period: AtomicU64,
    pub(super) undated: AtomicU64,
    pub(super) sanitised: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) slices_done: AtomicU64,
    /// Of `slices_done`, those recorded `open`.
    pub(super) slices_open: AtomicU64,
    pub(super) slices_failed: AtomicU64,
    /// Requests sent, by the class of their answer.
    pub(super) http: crate::requests::Counts,
}

/// Adds `n` to a live counter.
pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// A page fetched, with what its records became.
    pub(super) fn count_page(&self, rows: &PageRows) {
        add(&self.pages, 1);
        add(&self.records, rows.fetched);
        add(&self.out_of_period, rows.out_of_period);
        add(&self.undated, rows.undated);
        add(&self.sanitised, rows.sanitised.len() as u64);
    }

    /// A request sent, by its answer's status (none: no answer came).
    pub(super) fn count_request(&self, got: &Result<crate::http::Fetched, crate::http::Failure>) {
        let status = match got {
            Ok(f) => Some(f.status),
            Err(f) => f.status(),
        };
        self.http.count(status);
    }

    pub(super) fn totals(&self) -> RunTotals {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        RunTotals {
            pages: g(&self.pages),
            records: g(&self.records),
            inserted: g(&self.inserted),
            duplicates: g(&self.duplicates),
            out_of_period: g(&self.out_of_period),
            undated: g(&self.undated),
            sanitised: g(&self.sanitised),
            retries: g(&self.retries),
            slices_done: g(&self.slices_done) as i32,
            slices_open: g(&self.slices_open) as i32,
            slices_failed: g(&self.slices_failed) as i32,
            http: self.http.totals(),
        }
    }
}
