//! A client's rate split among the processes that work it (on any machine):
//! each takes its part of `rate_limit_per_sec` by its place among the live
//! members the control schema lists (`ledger::rates`), so together they
//! never pass the limit; a pause a server asked of one is obeyed by all;
//! a process joining a client starts at the rate the others learnt.
//!
//! The split is whole requests per second where the rate allows: 10 among
//! 3 is 4, 3 and 3, never 3.33 each (a window counts whole requests).

use super::{Limiter, Window};
use std::time::{Duration, Instant};

/// Longest a client with a configured rate waits for its first look at the
/// other processes: past it, it goes on alone (the look failed or is slow).
const JOIN_WAIT: Duration = Duration::from_secs(3);

/// This process's part of a rate of `total` per second shared by `members`
/// processes, it being the `rank`-th of them: whole requests per second
/// (the first `total mod members` take one more) while there is at least
/// one each, else an equal fraction.
pub fn part_of(total: f64, members: u64, rank: u64) -> f64 {
    let members = members.max(1);
    let whole = total.floor();
    if whole < members as f64 {
        return total / members as f64;
    }
    let whole = whole as u64;
    let extra = u64::from(rank.min(members - 1) < whole % members);
    (whole / members + extra) as f64
}

impl Window {
    /// The processes working the client were looked at: this one's part
    /// of the configured rate is `part_of(total, members, rank)`, and
    /// without a rate of its own it starts at what the others learnt.
    pub fn share(&mut self, now: Instant, members: u64, rank: u64, others_learnt: Option<f64>) {
        self.joining = None;
        if let Some(total) = self.total {
            let part = part_of(total, members, rank);
            let was = self.configured.replace(part);
            // Held at the old part (not lowered by a 429): follows the new one.
            if self.rate.is_none() || self.rate == was || self.rate.is_some_and(|r| r > part) {
                self.rate = Some(part);
                self.since = now;
            }
        } else if self.rate.is_none() {
            if let Some(r) = others_learnt.filter(|r| *r > 0.0 && r.is_finite()) {
                self.rate = Some(r);
                self.since = now;
            }
        }
    }

    /// What this process's pacing learnt from 429s, if it runs below the
    /// configured part (or with none configured) because of them.
    pub fn learnt(&self) -> Option<f64> {
        self.rate.filter(|r| Some(*r) != self.configured)
    }

    /// With a configured rate, nothing starts until `share` has been told
    /// the members, or for `JOIN_WAIT` at most.
    /// It counts as wanted from now (see `wanted`): the share is looked at
    /// at once rather than once a fetcher asks.
    pub fn hold(&mut self, now: Instant) {
        if self.total.is_some() {
            self.joining = Some(now + JOIN_WAIT);
        }
        self.last_asked = Some(now);
    }

    /// A fetcher asked for a place within `idle`: this process wants its part.
    pub fn wanted(&self, now: Instant, idle: Duration) -> bool {
        self.last_asked
            .is_some_and(|t| now.saturating_duration_since(t) < idle)
    }

    /// The part in force (requests and window).
    #[cfg(test)]
    pub fn part(&self) -> Option<(usize, Duration)> {
        self.configured.map(super::pacing)
    }
}

impl Limiter {
    /// See [`Window::hold`]: a client with a configured rate waits for its
    /// first look at the other processes before it sends anything.
    pub fn hold(&self) {
        self.lock().hold(Instant::now());
    }

    /// See [`Window::share`].
    pub fn share(&self, members: u64, rank: u64, others_learnt: Option<f64>) {
        self.lock()
            .share(Instant::now(), members, rank, others_learnt);
        self.changed.notify_all();
    }

    /// See [`Window::wanted`].
    pub fn wanted(&self, idle: Duration) -> bool {
        self.lock().wanted(Instant::now(), idle)
    }

    /// Its requests wait for places in a window (a rate is in force, or
    /// the client is joining the processes that share one).
    pub fn paced(&self) -> bool {
        let w = self.lock();
        w.rate.is_some() || w.joining.is_some()
    }

    /// What this process's pacing learnt, to publish.
    pub fn learnt(&self) -> Option<f64> {
        self.lock().learnt()
    }

    /// A pause another process was asked for: obeyed here, not passed on again.
    pub fn obey(&self, wait: Duration) {
        self.lock().pause(Instant::now(), wait);
        self.changed.notify_all();
    }

    /// The latest pause asked here since the last call, to publish.
    pub fn take_pause(&self) -> Option<Instant> {
        self.to_publish
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_split_in_whole_requests_that_add_up_to_it() {
        assert_eq!(part_of(3.0, 3, 0), 1.0);
        let parts: Vec<f64> = (0..3).map(|r| part_of(10.0, 3, r)).collect();
        assert_eq!(parts, [4.0, 3.0, 3.0]);
        assert_eq!(parts.iter().sum::<f64>(), 10.0);
        assert_eq!(part_of(3.0, 2, 0) + part_of(3.0, 2, 1), 3.0);
        assert_eq!(part_of(2.5, 1, 0), 2.0, "a fraction rounds down, as alone");
        assert_eq!(part_of(1.0, 4, 3), 0.25, "fewer than one each: a fraction");
        assert_eq!(part_of(5.0, 0, 0), 5.0, "no member listed: alone");
        assert_eq!(
            part_of(5.0, 2, 9),
            2.0,
            "a rank past the list takes no extra"
        );
    }

    #[test]
    fn the_part_follows_the_members_and_a_lowered_rate_stays_lowered() {
        let t0 = Instant::now();
        let mut w = Window::new(Some(6.0), t0);
        w.hold(t0);
        assert_eq!(
            w.try_start(t0),
            super::super::Slot::WaitUntil(t0 + JOIN_WAIT),
            "held until the members are known"
        );
        let mut late = Window::new(Some(6.0), t0);
        late.hold(t0);
        assert!(
            matches!(late.try_start(t0 + JOIN_WAIT), super::super::Slot::Go(_)),
            "never told: alone after JOIN_WAIT"
        );
        w.share(t0, 3, 0, None);
        assert_eq!(w.part(), Some((2, super::super::RATE_WINDOW)));
        assert_eq!(w.rate, Some(2.0));
        assert!(matches!(w.try_start(t0), super::super::Slot::Go(_)));
        // A member leaves: the part grows.
        w.share(t0, 2, 0, None);
        assert_eq!(w.rate, Some(3.0));
        // A 429 lowered the rate below the part: a new split keeps it.
        w.rate = Some(1.0);
        w.share(t0, 2, 1, None);
        assert_eq!(w.rate, Some(1.0));
        assert_eq!(w.learnt(), Some(1.0));
        // More members than the lowered rate allows: the part caps it.
        w.share(t0, 6, 5, None);
        assert_eq!(w.rate, Some(1.0));
        w.share(t0, 12, 0, None);
        assert_eq!(w.rate, Some(0.5));
    }

    #[test]
    fn without_a_configured_rate_a_joiner_starts_at_what_the_others_learnt() {
        let t0 = Instant::now();
        let mut w = Window::new(None, t0);
        w.share(t0, 3, 1, Some(2.0));
        assert_eq!(w.rate, Some(2.0));
        assert_eq!(w.learnt(), Some(2.0));
        // Its own rate, once it has one, is its own.
        w.rate = Some(1.5);
        w.share(t0, 3, 1, Some(4.0));
        assert_eq!(w.rate, Some(1.5));
        let mut alone = Window::new(None, t0);
        alone.share(t0, 1, 0, None);
        assert_eq!(alone.rate, None, "nothing learnt anywhere: unlimited");
    }

    #[test]
    fn a_pause_asked_here_is_kept_for_the_others_once() {
        let l = Limiter::new(Some(5.0));
        assert!(l.take_pause().is_none());
        l.pause(Duration::from_secs(3));
        let first = l.take_pause().expect("published");
        assert!(first > Instant::now() + Duration::from_secs(2));
        assert!(l.take_pause().is_none(), "taken once");
    }
}
