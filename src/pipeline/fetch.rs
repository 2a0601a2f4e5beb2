//! Fetchers: the loop each fetcher thread runs. It picks the next work of
//! the crew's runs (pages of spread slices first, then slices claimed ahead,
//! then new claims), serving the clients under their fair share of the
//! fetchers first, and waits, or ends, when there is none.
//!
//! Each piece of work is done elsewhere: a slice in `walk`, a spread page
//! in `spread`, a claim in `claim`.

use super::claim::Claimed;
use super::{lock, Chunk, Lanes, Shared};
use crossbeam::channel::Sender;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A fetcher at work for a client: counted in the client's fair share.
struct Busy<'b>(&'b AtomicUsize);

impl<'b> Busy<'b> {
    fn new(n: &'b AtomicUsize) -> Busy<'b> {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The fetchers a client gets while others have work too: an equal share
/// of the crew between the clients whose runs still have slices to claim
/// or pages queued (at least one each).
fn fair_share(lanes: &[&Shared], threads: usize) -> usize {
    let mut clients: Vec<&str> = lanes
        .iter()
        .filter(|l| {
            !l.exhausted.load(Ordering::SeqCst)
                || !lock(&l.ahead).is_empty()
                || !lock(&l.claimed).is_empty()
        })
        .map(|l| l.job.client.id.as_str())
        .collect();
    clients.sort_unstable();
    clients.dedup();
    threads.div_ceil(clients.len().max(1)).max(1)
}

/// The first lane, from `start` round the crew, whose client is under its
/// fair share (`fair`) or at it or over (`!fair`), for which `take` finds
/// work.
fn pick<'l, 'j, 'a, T>(
    lanes: &[&'l Shared<'j, 'a>],
    start: usize,
    share: usize,
    fair: bool,
    mut take: impl FnMut(&Shared<'j, 'a>) -> Option<T>,
) -> Option<(&'l Shared<'j, 'a>, T)> {
    let n = lanes.len();
    (0..n)
        .map(|k| lanes[(start + k) % n])
        .filter(|l| (l.busy.load(Ordering::SeqCst) < share) == fair)
        .find_map(|l| take(l).map(|t| (l, t)))
}

/// A fetcher of the crew. Clients under their fair share are served first,
/// then the others, so that a slow or throttled client never holds the
/// others back; within each, pages of spread slices come first (they finish
/// slices already started), then slices claimed ahead, then new claims,
/// each time starting from the next lane. Ends when no lane has anything
/// left to claim or to wait for.
pub(super) fn fetcher(crew: &Lanes, tx: &Sender<Chunk>, turn: &AtomicUsize) {
    let wake = &crew.wake;
    let threads = crew.settings.threads;
    'work: loop {
        let seen = wake.generation();
        // Read before the lanes: a job handed over after this is seen next time.
        let complete = crew.complete.load(Ordering::SeqCst);
        let lanes = crew.active();
        let start = turn.fetch_add(1, Ordering::Relaxed) % lanes.len().max(1);
        let share = fair_share(&lanes, threads);
        let mut wait: Option<Duration> = None;
        for fair in [true, false] {
            if let Some((lane, task)) = pick(&lanes, start, share, fair, Shared::take_page) {
                let _busy = Busy::new(&lane.busy);
                lane.work_page(task, tx);
                continue 'work;
            }
            let ahead = pick(&lanes, start, share, fair, |l| lock(&l.claimed).pop_front());
            let claimed = ahead.or_else(|| {
                pick(&lanes, start, share, fair, |l| match l.claim_now() {
                    Claimed::Slice(c) => Some(c),
                    Claimed::Wait(d) => {
                        wait = Some(wait.map_or(d, |w| w.min(d)));
                        None
                    }
                    Claimed::Exhausted => None,
                })
            });
            if let Some((lane, claim)) = claimed {
                let _busy = Busy::new(&lane.busy);
                lane.work_slice(claim, tx);
                continue 'work;
            }
        }
        // A page 1 that may spread is being fetched: its pages may come.
        let spreading = lanes
            .iter()
            .any(|l| l.spreading.load(Ordering::SeqCst) > 0 && !l.job.quit.load(Ordering::SeqCst));
        match (wait, spreading || !complete) {
            (None, false) => return,
            (Some(d), _) => wake.wait(seen, d),
            (None, true) => wake.wait(seen, Duration::from_millis(200)),
        }
    }
}
