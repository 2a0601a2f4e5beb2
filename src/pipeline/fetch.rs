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

/// How long a fetcher with nothing to do waits before it looks again when
/// work may still come (a page 1 that may spread, jobs not all handed
/// over); any wake-up cuts it short.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// The fetchers a client gets while others have work too: an equal share
/// of the crew between the clients whose runs still have slices to claim
/// or pages queued (at least one each).
fn fair_share(lanes: &[&Shared], threads: usize) -> usize {
    let with_work = lanes
        .iter()
        .filter(|l| {
            !l.exhausted.load(Ordering::SeqCst)
                || !lock(&l.ahead).is_empty()
                || !lock(&l.claimed).is_empty()
        })
        .map(|l| l.job.client.id.as_str());
    share_of(with_work, threads)
}

/// `threads` shared equally between the clients named in `with_work` (a
/// client named by several runs counts once), rounded up, at least one.
fn share_of<'c>(with_work: impl IntoIterator<Item = &'c str>, threads: usize) -> usize {
    let mut clients: Vec<&str> = with_work.into_iter().collect();
    clients.sort_unstable();
    clients.dedup();
    threads.div_ceil(clients.len().max(1)).max(1)
}

/// Whether a client with `busy` fetchers is served in this round: the
/// fair round serves the clients under their `share`, the other round the
/// rest.
fn in_round(busy: usize, share: usize, fair: bool) -> bool {
    (busy < share) == fair
}

/// The first of `lanes`, going round from `start`, that is `in_round` and
/// for which `take` finds work; `take` is asked of no other lane.
fn pick<L: Copy, T>(
    lanes: &[L],
    start: usize,
    in_round: impl Fn(L) -> bool,
    mut take: impl FnMut(L) -> Option<T>,
) -> Option<(L, T)> {
    let n = lanes.len();
    (0..n)
        .map(|k| lanes[(start + k) % n])
        .filter(|l| in_round(*l))
        .find_map(|l| take(l).map(|t| (l, t)))
}

/// What a fetcher that found no work does.
#[derive(Debug, PartialEq, Eq)]
enum Idle {
    /// Nothing is left and nothing can come: the fetcher ends.
    End,
    /// Waits this long (or until woken), then looks again.
    Wait(Duration),
}

/// `retry`: the soonest a run whose last slices others hold is to be
/// looked at again; `spreading`: a page 1 that may spread is being fetched
/// (its pages may come); `complete`: every job has been handed over.
fn idle(retry: Option<Duration>, spreading: bool, complete: bool) -> Idle {
    match (retry, spreading || !complete) {
        (None, false) => Idle::End,
        (Some(d), _) => Idle::Wait(d),
        (None, true) => Idle::Wait(IDLE_WAIT),
    }
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
            let round = |l: &Shared| in_round(l.busy.load(Ordering::SeqCst), share, fair);
            if let Some((lane, task)) = pick(&lanes, start, round, Shared::take_page) {
                let _busy = Busy::new(&lane.busy);
                lane.work_page(task, tx);
                continue 'work;
            }
            let ahead = pick(&lanes, start, round, Shared::take_claimed);
            let claimed = ahead.or_else(|| {
                pick(&lanes, start, round, |l| match l.claim_now() {
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
        // A page 1 that may spread is being fetched (or a slice taken is
        // about to be): its pages may come.
        let spreading = lanes.iter().any(|l| {
            l.spreading.load(Ordering::SeqCst) + l.starting.load(Ordering::SeqCst) > 0
                && !l.job.quit.load(Ordering::SeqCst)
        });
        match idle(wait, spreading, complete) {
            Idle::End => return,
            Idle::Wait(d) => wake.wait(seen, d),
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
    fn the_crew_is_shared_equally_between_the_clients_with_work() {
        assert_eq!(share_of([], 4), 4, "no client has work: all of it");
        assert_eq!(share_of(["a"], 4), 4);
        assert_eq!(
            share_of(["a", "a", "b", "a"], 4),
            2,
            "a client's runs count once"
        );
        assert_eq!(share_of(["a", "b", "c"], 4), 2, "rounded up");
        assert_eq!(share_of(["a", "b", "c", "d", "e"], 4), 1, "at least one");
        assert_eq!(share_of(["a"], 0), 1);
    }

    #[test]
    fn the_fair_round_serves_clients_under_their_share_and_the_other_the_rest() {
        assert!(in_round(1, 2, true));
        assert!(!in_round(2, 2, true), "at its share: not in the fair round");
        assert!(in_round(2, 2, false));
        assert!(in_round(3, 2, false));
        assert!(!in_round(0, 2, false));
    }

    #[test]
    fn a_lane_is_picked_going_round_from_the_start() {
        let lanes = [0, 1, 2, 3];
        let mut asked = Vec::new();
        let got = pick(
            &lanes,
            2,
            |_| true,
            |l| {
                asked.push(l);
                (l == 1).then_some("work")
            },
        );
        assert_eq!(got, Some((1, "work")));
        assert_eq!(asked, [2, 3, 0, 1], "round from the start, no further");
    }

    #[test]
    fn a_lane_out_of_the_round_is_not_asked_and_no_work_picks_nothing() {
        let lanes = [0, 1, 2];
        let mut asked = Vec::new();
        let got = pick(
            &lanes,
            0,
            |l| l != 1,
            |l| {
                asked.push(l);
                None::<()>
            },
        );
        assert_eq!(got, None);
        assert_eq!(asked, [0, 2]);
        assert_eq!(pick(&[] as &[u8], 5, |_| true, |_| Some(())), None);
    }

    #[test]
    fn a_fetcher_ends_only_when_nothing_can_come() {
        assert_eq!(idle(None, false, true), Idle::End);
        assert_eq!(
            idle(None, true, true),
            Idle::Wait(IDLE_WAIT),
            "pages may come"
        );
        assert_eq!(
            idle(None, false, false),
            Idle::Wait(IDLE_WAIT),
            "jobs may come"
        );
        assert_eq!(idle(Some(ms(300)), false, true), Idle::Wait(ms(300)));
        assert_eq!(
            idle(Some(ms(50)), true, false),
            Idle::Wait(ms(50)),
            "the run to look at again says how long"
        );
    }
}
