//! Closing a fleet's runs: those over while the crew works others, as
//! they come (`close_over`), and those left once it is done (`finish`);
//! the runs at hand closed together, in two statements whatever their
//! number (`scrap_run::finish_many`).

use super::board::{in_parallel, lock};
use super::{Closed, Finishing, Fleet};
use crate::cmd::scrap_run;
use crate::exit::Exit;
use crate::pipeline::Outcome;
use crate::report::{Summary, Watch};
use crossbeam::channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Runs closed together at the most: a wave's worth.
const CLOSE_BATCH: usize = 256;

/// How long the closer waits for more runs to end after the first: runs
/// end one by one, and a close of one costs about what a close of many does.
const LINGER: Duration = Duration::from_millis(20);

/// The items of `rx` that come within `linger` after `first`, up to
/// `CLOSE_BATCH` in all; no waiting once `more_may_come(items in hand)`
/// says none can (the fleet's last runs are closed at once).
fn at_hand<T>(
    first: T,
    rx: &Receiver<T>,
    linger: Duration,
    more_may_come: impl Fn(usize) -> bool,
) -> Vec<T> {
    let until = Instant::now() + linger;
    let mut batch = vec![first];
    while batch.len() < CLOSE_BATCH {
        let next = if more_may_come(batch.len()) {
            rx.recv_deadline(until).ok()
        } else {
            rx.try_recv().ok()
        };
        match next {
            Some(x) => batch.push(x),
            None => break,
        }
    }
    batch
}

/// Runs handed to the crew so far, and whether every one has been: the
/// closer lingers only while more runs may still end.
#[derive(Default)]
pub(super) struct Handing {
    pub(super) handed: AtomicUsize,
    pub(super) done: AtomicBool,
}

impl Handing {
    /// Whether a run beyond `closing` closed or in hand may still end.
    fn more_than(&self, closing: usize) -> bool {
        !self.done.load(Ordering::SeqCst) || self.handed.load(Ordering::SeqCst) > closing
    }
}

impl<'a> Fleet<'a> {
    /// Closes the runs told over on `over` (their index among `readies`)
    /// while the crew works the others, those at hand together; their ends
    /// go to `closed`. Without a connection now, they are closed with the
    /// others once the crew is done.
    pub(super) fn close_over(
        &self,
        over: &Receiver<(usize, Outcome)>,
        readies: &[OnceLock<Box<scrap_run::Ready<'a>>>],
        closed: &[OnceLock<(Exit, Summary)>],
        ran_at: Instant,
        news: &Sender<Watch>,
        handing: &Handing,
    ) {
        while let Ok(first) = over.recv() {
            let batch = at_hand(first, over, LINGER, |n| {
                handing.more_than(closed.iter().filter(|c| c.get().is_some()).count() + n)
            });
            let Ok(mut c) = self.pool.get() else {
                continue;
            };
            let runs: Vec<(usize, &scrap_run::Ready<'a>, &Outcome)> = batch
                .iter()
                .filter_map(|(k, o)| readies[*k].get().map(|r| (*k, &**r, o)))
                .collect();
            let asked: Vec<_> = runs.iter().map(|(_, r, o)| (*r, *o)).collect();
            let ends =
                scrap_run::finish_many(self.ctx, &mut c, &asked, ran_at.elapsed(), Some(news));
            for ((k, _, _), end) in runs.iter().zip(ends) {
                drop(closed[*k].set(end));
            }
        }
    }

    /// The runs left to close once the crew is done, closed together on
    /// `deciders` threads: with the database lost, each alone on a
    /// connection of its own (a pooled one would only time out).
    pub(super) fn finish(
        &self,
        finishing: Vec<Finishing<'a>>,
        elapsed: Duration,
        news: &Sender<Watch>,
    ) -> Vec<(usize, bool, Closed)> {
        let ctx = self.ctx;
        let lost = finishing.iter().any(|(_, _, _, o)| o.database_lost);
        let size = if lost {
            1
        } else {
            finishing
                .len()
                .div_ceil(self.deciders.max(1))
                .clamp(1, CLOSE_BATCH)
        };
        let mut chunks: Vec<Mutex<Vec<Finishing<'a>>>> = Vec::new();
        let mut left = finishing.into_iter().peekable();
        while left.peek().is_some() {
            chunks.push(Mutex::new(left.by_ref().take(size).collect()));
        }
        let idx: Vec<usize> = (0..chunks.len()).collect();
        in_parallel(self.deciders, &idx, |k| {
            let chunk = std::mem::take(&mut *lock(&chunks[k]));
            let pooled = if lost { None } else { self.pool.get().ok() };
            let mut conn = match pooled {
                Some(c) => Conn::Pooled(c),
                None => match self.db.connect() {
                    Ok(c) => Conn::Own(c),
                    Err(e) => {
                        let why = format!("{e:#}");
                        return chunk
                            .into_iter()
                            .map(|(i, _, joined, _)| (i, joined, Err(why.clone())))
                            .collect();
                    }
                },
            };
            let runs: Vec<_> = chunk.iter().map(|(_, r, _, o)| (&**r, o)).collect();
            let ends = scrap_run::finish_many(ctx, conn.client(), &runs, elapsed, Some(news));
            chunk
                .into_iter()
                .zip(ends)
                .map(|((i, _, joined, outcome), end)| (i, joined, Ok((end, outcome.error))))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect()
    }
}

/// A connection from the pool, or one of its own.
enum Conn {
    Pooled(crate::db::PooledConn),
    Own(postgres::Client),
}

impl Conn {
    fn client(&mut self) -> &mut postgres::Client {
        match self {
            Conn::Pooled(c) => c,
            Conn::Own(c) => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runs_at_hand_are_closed_together_up_to_a_batch() {
        let (tx, rx) = crossbeam::channel::unbounded();
        for i in 1..=3 {
            tx.send(i).unwrap();
        }
        let no = Duration::ZERO;
        let more = |_| true;
        assert_eq!(at_hand(0, &rx, no, more), [0, 1, 2, 3]);
        assert_eq!(at_hand(9, &rx, no, more), [9], "nothing more at hand");
        let (tx2, rx2) = crossbeam::channel::unbounded();
        let later = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx2.send(2).unwrap();
        });
        assert_eq!(
            at_hand(1, &rx2, Duration::from_secs(5), more),
            [1, 2],
            "one that ends meanwhile (then no more can come)"
        );
        later.join().unwrap();
        for i in 0..CLOSE_BATCH + 5 {
            tx.send(i).unwrap();
        }
        assert_eq!(at_hand(0, &rx, no, more).len(), CLOSE_BATCH);
        assert_eq!(rx.len(), 6, "the rest for the next close");
    }

    #[test]
    fn the_last_runs_are_closed_without_lingering() {
        let (tx, rx) = crossbeam::channel::unbounded();
        tx.send(2).unwrap();
        let t = Instant::now();
        // Whatever is queued is taken; nothing more is waited for.
        assert_eq!(at_hand(1, &rx, Duration::from_secs(5), |_| false), [1, 2]);
        assert!(t.elapsed() < Duration::from_secs(1));
        let h = Handing::default();
        assert!(h.more_than(0), "still handing");
        h.handed.store(3, Ordering::SeqCst);
        h.done.store(true, Ordering::SeqCst);
        assert!(h.more_than(2));
        assert!(!h.more_than(3), "all three closed or in hand");
    }
}
