//! A wave's missing raw tables, made sure of together: a few dozen per
//! transaction on the deciders' threads, each run's gate settled with its
//! table's verdict; on a first night, the next wave's made ahead while
//! this one loads.

use super::board::{in_parallel, lock};
use super::decide::pair_checks;
use super::{pair, scrap_run, Fleet};
use crate::db;
use crate::pipeline::gate::{NoTable, Settling};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};

/// Tables per transaction: enough that a wave's round trips are few, few
/// enough that the deciders share a wave's tables.
const PER_TRANSACTION: usize = 32;

/// The runs of a wave whose table is missing. Any gate still pending when
/// this is dropped (the preparing thread returned early or panicked) is
/// settled shut: writers never wait forever.
pub(super) struct Pending<'r, 'a> {
    readies: &'r [OnceLock<Box<scrap_run::Ready<'a>>>],
    ks: Mutex<Vec<usize>>,
}

impl<'r, 'a> Pending<'r, 'a> {
    pub(super) fn new(readies: &'r [OnceLock<Box<scrap_run::Ready<'a>>>]) -> Self {
        Pending {
            readies,
            ks: Mutex::new(Vec::new()),
        }
    }

    /// Run `k`'s table is missing.
    pub(super) fn push(&self, k: usize) {
        lock(&self.ks).push(k);
    }

    /// The runs whose table is missing.
    pub(super) fn readies(&self) -> Vec<&'r scrap_run::Ready<'a>> {
        let ks = lock(&self.ks).clone();
        ks.iter()
            .filter_map(|&k| self.readies[k].get().map(|r| &**r))
            .collect()
    }
}

impl Drop for Pending<'_, '_> {
    fn drop(&mut self) {
        for r in self.readies() {
            drop(Settling(r.table_gate()));
        }
    }
}

impl Fleet<'_> {
    /// Creates the tables of `runs` that are missing, `PER_TRANSACTION` at
    /// a time on the deciders' threads, and settles each run's gate.
    pub(super) fn make_tables_sure(&self, runs: &[&scrap_run::Ready<'_>]) {
        let chunks: Vec<&[&scrap_run::Ready<'_>]> = runs.chunks(PER_TRANSACTION).collect();
        let ks: Vec<usize> = (0..chunks.len()).collect();
        in_parallel(self.deciders, &ks, |c| {
            let chunk = chunks[c];
            let mut conn = match self.pool.get() {
                Ok(c) => c,
                Err(e) => {
                    for r in chunk {
                        r.table_gate().settle(Err(NoTable {
                            message: format!("{e:#}"),
                            database_lost: true,
                        }));
                    }
                    return;
                }
            };
            let tables: Vec<&str> = chunk.iter().map(|r| r.raw_table()).collect();
            let results = db::create_raw_tables_if_missing(&mut conn, &tables);
            for (r, result) in chunk.iter().zip(results) {
                r.settle_table(result);
            }
        });
    }

    /// Makes the missing raw tables of the pairs `next` (the next wave's)
    /// while the current wave loads: on a first night each wave otherwise
    /// waits for its tables before its first rows go in. Only pairs that
    /// pass every check made before anything of a pair is written (its
    /// dates, secrets, credentials and the API's certificate) and that have
    /// a first day to load get one. Errors are left to the wave itself,
    /// which makes sure of each table it needs and reports its verdict.
    pub(super) fn make_tables_ahead(&self, next: &[usize]) {
        let chunks: Vec<&[usize]> = next.chunks(PER_TRANSACTION).collect();
        let ks: Vec<usize> = (0..chunks.len()).collect();
        in_parallel(self.deciders, &ks, |c| {
            let tables: Vec<String> = chunks[c]
                .iter()
                .filter(|_| !self.ctx.quit.load(Ordering::SeqCst))
                .filter_map(|&i| {
                    let (client, route) = self.pairs[i];
                    let plan = pair_checks(self.ctx, client, route, &self.plan).ok()?;
                    let first = plan.from.or(route.start_date)?;
                    (first <= plan.until && pair::trusted(self.ctx, client).is_ok())
                        .then(|| pair::raw_table(client, route).ok())
                        .flatten()
                })
                .collect();
            if tables.is_empty() {
                return;
            }
            let Ok(mut conn) = self.pool.get() else {
                return;
            };
            let names: Vec<&str> = tables.iter().map(String::as_str).collect();
            for (t, r) in names
                .iter()
                .zip(db::create_raw_tables_if_missing(&mut conn, &names))
            {
                if let Err(e) = r {
                    log::debug!("table {t} not made ahead: {e:#}");
                }
            }
        });
    }
}
