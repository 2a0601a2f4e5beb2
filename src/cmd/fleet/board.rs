//! What a fleet shows while it works: the pairs settled and the runs of
//! each pair (`Board`), the printer of its lines and progress line
//! (`watch`), and the helper that spreads database round trips of many
//! pairs over threads (`in_parallel`).

use crate::report::{self, Snapshot, Watch};
use crossbeam::channel::{self, Receiver};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What the progress lines count: pairs settled, and which pair each run
/// is (a run whose slices have all ended counts its pair as finished).
#[derive(Default)]
pub(super) struct Board {
    settled: Mutex<HashSet<usize>>,
    runs: Mutex<HashMap<i64, usize>>,
}

impl Board {
    pub(super) fn settle(&self, pair: usize) {
        lock(&self.settled).insert(pair);
    }

    pub(super) fn runs(&self, run: i64, pair: usize) {
        lock(&self.runs).insert(run, pair);
    }

    /// Pairs finished: settled, or whose run has ended all its slices.
    fn finished<'s>(&self, current: impl Iterator<Item = &'s Snapshot>) -> usize {
        let mut finished = lock(&self.settled).clone();
        let runs = lock(&self.runs);
        for s in current {
            if s.slices_done + s.slices_failed >= s.slices_total {
                finished.extend(runs.get(&s.run_id));
            }
        }
        finished.len()
    }
}

/// Prints the fleet's lines and notices as they come, and every `every`
/// one progress line: pairs finished, and pages and records of every run.
pub(super) fn watch(
    rx: &Receiver<Watch>,
    style: report::Style,
    every: Duration,
    n: usize,
    board: &Board,
    started: Instant,
) {
    let mut current: HashMap<i64, Snapshot> = Default::default();
    let ticker = channel::tick(every.max(Duration::from_millis(100)));
    loop {
        channel::select! {
            recv(ticker) -> _ => {
                let finished = board.finished(current.values());
                let pages = current.values().map(|s| s.pages).sum();
                let records = current.values().map(|s| s.records).sum();
                let line = report::fleet::progress_line(
                    style,
                    (finished, n),
                    pages,
                    records,
                    started.elapsed(),
                );
                eprintln!("{line}");
            }
            recv(rx) -> w => match w {
                Ok(Watch::Progress(s)) => {
                    current.insert(s.run_id, s);
                }
                Ok(Watch::Notice(n)) => eprintln!("{}", style.notice(&n)),
                Ok(Watch::Note(_, line)) => eprintln!("{line}"),
                Err(_) => return,
            },
        }
    }
}

/// `f` over `items` on up to `threads` threads (database round trips of
/// many pairs at once); results in the order of `items`.
pub(super) fn in_parallel<T: Send>(
    threads: usize,
    items: &[usize],
    f: impl Fn(usize) -> T + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let out: Vec<Mutex<Option<T>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = items.get(k) else { break };
                *lock(&out[k]) = Some(f(i));
            });
        }
    });
    out.into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .expect("every item is done")
        })
        .collect()
}

/// The mutex's value, even if a thread panicked holding it.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_finished_when_settled_or_its_run_ended_every_slice() {
        let board = Board::default();
        board.settle(0);
        board.runs(10, 1);
        board.runs(11, 2);
        let snap = |run_id, done, total| Snapshot {
            run_id,
            slices_done: done,
            slices_total: total,
            ..Default::default()
        };
        let current = [snap(10, 3, 3), snap(11, 1, 3)];
        assert_eq!(board.finished(current.iter()), 2);
        board.settle(1);
        assert_eq!(board.finished(current.iter()), 2, "each pair once");
    }

    #[test]
    fn in_parallel_keeps_the_order_of_its_items() {
        let items: Vec<usize> = (0..50).collect();
        assert_eq!(
            in_parallel(4, &items, |i| i * 2),
            (0..100).step_by(2).collect::<Vec<_>>()
        );
        assert!(in_parallel(4, &[], |i| i).is_empty());
    }
}
