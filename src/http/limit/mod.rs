//! The per-client rate limit: a rolling window of request starts (the
//! configured rate, or one learnt from 429s), and the client-wide pause a
//! server asks for; `share` splits a rate among processes.

pub mod share;

use super::headers::{self, RATE_WINDOW};
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// An adaptive rate that grew past this many requests per second is dropped
/// again: the client is back to unlimited.
const ADAPTIVE_CEILING: f64 = 10_000.0;

/// Growth of an adaptive rate per window without a 429 (+10%).
const ADAPTIVE_GROWTH: f64 = 1.1;

/// After a 429, how long an adaptive rate stays below the count the server
/// refused before it tries that count again (doubling per refused probe, up
/// to `PROBE_HOLDOFF_MAX`): each probe costs a 429 and its pause.
const PROBE_HOLDOFF: Duration = Duration::from_secs(5);
const PROBE_HOLDOFF_MAX: Duration = Duration::from_secs(300);

/// Requests started this close after a refused one count as sent with it.
const BURST_SLACK: Duration = Duration::from_millis(20);

/// Longest a waiting fetcher sleeps before it looks at `quit` again.
const QUIT_POLL: Duration = Duration::from_millis(100);

/// How many requests may start in how long, for a rate of `r` per second:
/// at most ⌊r⌋ in any [`RATE_WINDOW`]; below 1/s, one per 1/r seconds.
fn pacing(r: f64) -> (usize, Duration) {
    if r >= 1.0 {
        (r.floor() as usize, RATE_WINDOW)
    } else {
        // The config's range keeps r at 0.001 or more; NaN falls back to that too.
        (1, Duration::from_secs_f64(1.0 / r.max(0.001)))
    }
}

/// One request in the window: it holds its place from its start until
/// `width` after its response arrived.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    start: Instant,
    /// `None` while in flight.
    end: Option<Instant>,
    /// The server answered 429.
    refused: bool,
}

/// The limiter's state, pure (every method takes `now`) so it is tested on
/// timestamps.
///
/// Invariants: with a rate in force, a request starts only while fewer than
/// its count of requests hold a place, so no window of its width (measured
/// at request start, and also at any moment between a request's start and
/// its response) holds more starts than the count; nothing starts before
/// `paused_until`, which only ever moves later.
#[derive(Debug)]
pub struct Window {
    /// The client's `rate_limit_per_sec`, for all the processes working it.
    total: Option<f64>,
    /// This process's part of `total` (`share`): never exceeded.
    configured: Option<f64>,
    /// Nothing starts before this unless the processes sharing the
    /// client's rate were looked at first (`Window::share`).
    joining: Option<Instant>,
    /// When a fetcher last asked to start a request (or was still waiting
    /// to): whether this process still wants its part of a shared rate.
    last_asked: Option<Instant>,
    /// The rate in force: the configured one, or one learnt from 429s
    /// (never above the configured one); `None` is unlimited.
    rate: Option<f64>,
    /// When `rate` last changed (a 429 or a step up).
    since: Instant,
    /// No request starts before this (a 429 asked everyone to wait).
    paused_until: Option<Instant>,
    /// After a 429: the request count per window the server refused, and
    /// when the rate may grow to it again (a probe).
    ceiling: Option<(usize, Instant)>,
    /// How long the rate stays below `ceiling`: doubles each time a probe
    /// at the same count is refused.
    holdoff: Duration,
    /// Start of the request last answered 429: the server refused it for
    /// what it had admitted in the window before it.
    last_refused_start: Option<Instant>,
    next_id: u64,
    /// Requests by start, oldest first.
    entries: VecDeque<Entry>,
}

/// What a fetcher asking to start a request is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Go: this request's id, to pass to `finish`.
    Go(u64),
    /// Ask again at this time (or when a request finishes).
    WaitUntil(Instant),
    /// Every place is held by a request still in flight: ask again when one ends.
    WaitForAnEnd,
}

impl Window {
    pub fn new(per_sec: Option<f64>, now: Instant) -> Window {
        Window {
            total: per_sec,
            joining: None,
            last_asked: None,
            configured: per_sec,
            rate: per_sec,
            since: now,
            paused_until: None,
            ceiling: None,
            holdoff: PROBE_HOLDOFF,
            last_refused_start: None,
            next_id: 0,
            entries: VecDeque::new(),
        }
    }

    /// The rate in force (requests per second), `None` when unlimited.
    #[cfg(test)]
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Forgets requests that no longer matter: ended more than a window
    /// ago, or (without a rate) started more than a window ago.
    fn prune(&mut self, now: Instant) {
        let width = self
            .rate
            .map_or(RATE_WINDOW, |r| pacing(r).1.max(RATE_WINDOW));
        let limited = self.rate.is_some();
        while let Some(e) = self.entries.front() {
            let gone = match e.end {
                Some(end) => now.saturating_duration_since(end) >= width,
                None => !limited && now.saturating_duration_since(e.start) >= width,
            };
            if !gone {
                break;
            }
            self.entries.pop_front();
        }
    }

    /// An adaptive rate steps up by 10% per window without a 429, to the
    /// configured rate at most; past `ADAPTIVE_CEILING` it is dropped.
    ///
    /// Below a count the server refused, the rate waits for the probe time
    /// (`ceiling`); a window at that count without a 429 clears it.
    fn creep(&mut self, now: Instant) {
        while let Some(rate) = self.rate {
            if self.configured == Some(rate) || now < self.since + pacing(rate).1 {
                return;
            }
            self.since += pacing(rate).1;
            let mut up = rate * ADAPTIVE_GROWTH;
            if let Some((count, probe_at)) = self.ceiling {
                if pacing(rate).0 >= count {
                    // A whole window at the refused count went through.
                    self.ceiling = None;
                    self.holdoff = PROBE_HOLDOFF;
                } else if self.since < probe_at {
                    up = up.min(count as f64 - 0.001).max(rate);
                }
            }
            self.rate = match self.configured {
                Some(c) => Some(up.min(c)),
                None if up > ADAPTIVE_CEILING => None,
                None => Some(up),
            };
        }
    }

    /// May a request start at `now`? On `Go` its place is taken.
    #[cfg(test)]
    pub fn try_start(&mut self, now: Instant) -> Slot {
        self.try_start_as(now, false)
    }

    /// `try_start` for a request that is a new attempt (`retried`): while a
    /// count the server refused is being probed again, a retried request
    /// never takes the place that makes the probe (the last place of the
    /// window at that count): a page already refused once is not the one
    /// risked again.
    pub fn try_start_as(&mut self, now: Instant, retried: bool) -> Slot {
        if let Some(until) = self.joining.filter(|&u| u > now) {
            return Slot::WaitUntil(until);
        }
        if let Some(until) = self.paused_until.filter(|&u| u > now) {
            return Slot::WaitUntil(until);
        }
        self.creep(now);
        self.prune(now);
        if let Some(rate) = self.rate {
            let (count, width) = pacing(rate);
            let count = match self.ceiling {
                Some((refused, _)) if retried => count.min(refused.saturating_sub(1).max(1)),
                _ => count,
            };
            let held: Vec<&Entry> = self
                .entries
                .iter()
                .filter(|e| {
                    e.end
                        .is_none_or(|end| now.saturating_duration_since(end) < width)
                })
                .collect();
            if held.len() >= count {
                // The place that frees first: `width` after the earliest end
                // among the requests that must leave for one to start.
                let mut ends: Vec<Instant> = held.iter().filter_map(|e| e.end).collect();
                ends.sort();
                let must_leave = held.len() + 1 - count;
                return match ends.get(must_leave - 1) {
                    Some(&end) => Slot::WaitUntil(end + width),
                    None => Slot::WaitForAnEnd,
                };
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push_back(Entry {
            id,
            start: now,
            end: None,
            refused: false,
        });
        Slot::Go(id)
    }

    /// Request `id`'s response arrived at `now` (`refused`: a 429).
    pub fn finish(&mut self, id: u64, now: Instant, refused: bool) {
        if refused {
            if let Ok(i) = self.entries.binary_search_by_key(&id, |e| e.id) {
                self.last_refused_start = Some(self.entries[i].start);
            }
        }
        // Ids grow with each start: the entries are sorted by id.
        if let Ok(i) = self.entries.binary_search_by_key(&id, |e| e.id) {
            self.entries[i].end = Some(now);
            self.entries[i].refused = refused;
        }
    }

    /// Nobody starts before `now + wait` (a later pause extends it, never
    /// shortens it).
    pub fn pause(&mut self, now: Instant, wait: Duration) {
        let until = now + wait.min(headers::FAR);
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
    }

    /// A 429 arrived at `now` asking for `wait`: nobody starts before
    /// `now + wait` (a later pause extends it, never shortens it), and the
    /// rate drops to what the server let through in the last window: the
    /// requests that started in it and were not refused (at least 1, never
    /// above the configured rate).
    ///
    /// A 429 that asks for no wait (`Retry-After: 0`) changes nothing: the
    /// server says asking again at once is fine, so it is not a rate signal.
    pub fn refused(&mut self, now: Instant, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        let until = now + wait.min(headers::FAR);
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
        // What the server had admitted in the window before the refused
        // request arrived (its reason to refuse it). Requests sent in the
        // same instant (a burst) count as before it: the server saw them in
        // some order, and each of the burst's refusals counts the ones not
        // refused so far, so the smallest count, kept below, is the burst's
        // admitted number.
        let at = self.last_refused_start.take().unwrap_or(now);
        let admitted = self
            .entries
            .iter()
            .filter(|e| {
                e.start <= at + BURST_SLACK
                    && at.saturating_duration_since(e.start) < RATE_WINDOW
                    && !e.refused
            })
            .count()
            .max(1);
        // The count refused is probed again only after the holdoff, which
        // doubles each time such a probe is refused.
        let count = admitted + 1;
        match self.ceiling {
            Some((c, probe_at)) if c == count && now >= probe_at => {
                self.holdoff = (self.holdoff * 2).min(PROBE_HOLDOFF_MAX)
            }
            Some((c, _)) if c == count => {}
            _ => self.holdoff = PROBE_HOLDOFF,
        }
        self.ceiling = Some((count, until + self.holdoff));
        let admitted = admitted as f64;
        let admitted = match self.configured {
            Some(c) => admitted.min(c),
            None => admitted,
        };
        if self.rate.is_none_or(|r| admitted < r) {
            self.rate = Some(admitted);
        }
        // A new window without a 429 starts once the pause is over.
        self.since = until;
    }
}

/// The rate limit shared by every fetcher of a client (see [`Window`]),
/// with the client-wide pause a 429 imposes.
pub struct Limiter {
    window: Mutex<Window>,
    /// Signalled when a request ends or a pause changes.
    changed: Condvar,
    /// The latest pause a server asked for here, not yet passed on to the
    /// other processes working the client (`share`).
    to_publish: Mutex<Option<Instant>>,
}

/// A request's place in the window; give it back with [`Limiter::finish`]
/// when the response arrives (dropping it counts as a response now).
pub struct Permit<'l> {
    limiter: &'l Limiter,
    id: u64,
    done: bool,
}

impl Permit<'_> {
    /// The response arrived; `refused` when it was a 429 asking to wait `wait`.
    pub fn finish(mut self, refused: Option<Duration>) {
        self.done = true;
        self.limiter.finish(self.id, refused);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.limiter.finish(self.id, None);
        }
    }
}

impl Limiter {
    pub fn new(per_sec: Option<f64>) -> Limiter {
        Limiter {
            window: Mutex::new(Window::new(per_sec, Instant::now())),
            changed: Condvar::new(),
            to_publish: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request may start (no pause in force, a place free in
    /// the window) and takes the place; `None` as soon as `quit` rises. The
    /// pause is checked in the same step as the place is taken, right
    /// before the caller sends. `retried`: this is a new attempt of a
    /// request (see [`Window::try_start_as`]).
    pub fn acquire_as(&self, quit: &AtomicBool, retried: bool) -> Option<Permit<'_>> {
        let mut w = self.lock();
        loop {
            if quit.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            let now = Instant::now();
            w.last_asked = Some(now);
            let wait = match w.try_start_as(now, retried) {
                Slot::Go(id) => {
                    return Some(Permit {
                        limiter: self,
                        id,
                        done: false,
                    })
                }
                Slot::WaitUntil(t) => t.saturating_duration_since(now).min(QUIT_POLL),
                Slot::WaitForAnEnd => QUIT_POLL,
            };
            w = self
                .changed
                .wait_timeout(w, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// The server asked the whole client to wait `wait` (its rate-limit
    /// window is used up, or a `Retry-After` on a 503): nobody starts
    /// before then; the rate is left as it is.
    pub fn pause(&self, wait: Duration) {
        let mut w = self.lock();
        w.pause(Instant::now(), wait);
        drop(w);
        self.publish(wait);
        self.changed.notify_all();
    }

    fn finish(&self, id: u64, refused: Option<Duration>) {
        let mut w = self.lock();
        let now = Instant::now();
        w.finish(id, now, refused.is_some());
        if let Some(wait) = refused {
            w.refused(now, wait);
        }
        drop(w);
        if let Some(wait) = refused.filter(|w| !w.is_zero()) {
            self.publish(wait);
        }
        self.changed.notify_all();
    }

    /// Keeps a pause for the other processes working the client.
    fn publish(&self, wait: Duration) {
        let until = Instant::now() + wait.min(headers::FAR);
        let mut p = self.to_publish.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `n` requests at `t`, each of which must be let go.
    fn go(w: &mut Window, n: usize, t: Instant) -> Vec<u64> {
        (0..n)
            .map(|_| match w.try_start(t) {
                Slot::Go(id) => id,
                s => panic!("{s:?}"),
            })
            .collect()
    }

    /// While the refused count is probed again, a retried request stays
    /// below it: the probe is a fresh request's, never a page refused once.
    #[test]
    fn a_retried_request_is_never_the_probe() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut w = Window::new(None, t0);
        let ids: Vec<u64> = go(&mut w, 8, t0);
        for &id in &ids[3..] {
            w.finish(id, at(2), true);
            w.refused(at(2), Duration::from_secs(1));
        }
        for &id in &ids[..3] {
            w.finish(id, at(20), false);
        }
        // Past the probe time the rate reaches the refused count (4).
        let probe = at(6050);
        for _ in 0..3 {
            assert!(matches!(w.try_start_as(probe, true), Slot::Go(_)));
        }
        assert!(w.rate().is_some_and(|r| r >= 4.0), "{:?}", w.rate());
        assert!(!matches!(w.try_start_as(probe, true), Slot::Go(_)));
        assert!(matches!(w.try_start_as(probe, false), Slot::Go(_)));
    }

    /// Starts at each millisecond offset, each request answered `lat_ms`
    /// later (never refused); the offsets at which requests really started.
    fn starts(w: &mut Window, t0: Instant, asks: &[u64], lat_ms: u64) -> Vec<u64> {
        let ms = |t: Instant| t.duration_since(t0).as_millis() as u64;
        let mut started = Vec::new();
        let mut pending: Vec<(u64, Instant)> = Vec::new();
        let mut queue: VecDeque<u64> = asks.iter().copied().collect();
        let mut now = t0;
        while let Some(&ask) = queue.front() {
            now = now.max(t0 + Duration::from_millis(ask));
            pending.retain(|&(id, end)| {
                let over = end <= now;
                if over {
                    w.finish(id, end, false);
                }
                !over
            });
            match w.try_start(now) {
                Slot::Go(id) => {
                    queue.pop_front();
                    started.push(ms(now));
                    pending.push((id, now + Duration::from_millis(lat_ms)));
                }
                Slot::WaitUntil(t) => now = t,
                Slot::WaitForAnEnd => {
                    now = pending
                        .iter()
                        .map(|p| p.1)
                        .min()
                        .expect("something in flight")
                }
            }
        }
        started
    }

    /// The most starts in any window of `width_ms` (a start exactly
    /// `width_ms` after another is in the next window).
    fn most_in_window(starts: &[u64], width_ms: u64) -> usize {
        starts
            .iter()
            .map(|&s| {
                starts
                    .iter()
                    .filter(|&&o| o <= s && s - o < width_ms)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn the_limit_is_n_starts_in_any_rolling_second() {
        let t0 = Instant::now();
        let mut w = Window::new(Some(20.0), t0);
        // 100 requests asked for at once, answered in 5 ms.
        let s = starts(&mut w, t0, &[0; 100], 5);
        assert_eq!(most_in_window(&s, 1000), 20, "{s:?}");
        // A burst of 20 at once is within the definition; the 21st waits
        // for a second after the first answer.
        assert_eq!(&s[..20], &[0; 20]);
        assert_eq!(s[20], 1005);
        // Held until a second after the response: even a server that
        // counts arrivals up to 5 ms late sees no 21st.
        assert_eq!(most_in_window(&s, 1005), 20, "{s:?}");
        // Spread asks never wait.
        let mut w = Window::new(Some(4.0), t0);
        let asks: Vec<u64> = (0..20).map(|i| i * 300).collect();
        assert_eq!(starts(&mut w, t0, &asks, 10), asks);
    }

    #[test]
    fn fractional_rates_round_down_and_slow_rates_space_out() {
        assert_eq!(pacing(20.0), (20, RATE_WINDOW));
        assert_eq!(pacing(2.5), (2, RATE_WINDOW));
        assert_eq!(pacing(0.5), (1, Duration::from_secs(2)));
        let t0 = Instant::now();
        let mut w = Window::new(Some(0.5), t0);
        assert_eq!(starts(&mut w, t0, &[0, 0, 0], 0), [0, 2000, 4000]);
        let mut w = Window::new(None, t0);
        assert_eq!(starts(&mut w, t0, &[0; 50], 0), [0; 50], "unlimited");
    }

    #[test]
    fn a_request_in_flight_holds_its_place() {
        let t0 = Instant::now();
        let mut w = Window::new(Some(1.0), t0);
        let Slot::Go(id) = w.try_start(t0) else {
            panic!("first")
        };
        let late = t0 + Duration::from_secs(5);
        assert_eq!(w.try_start(late), Slot::WaitForAnEnd);
        w.finish(id, late, false);
        assert_eq!(w.try_start(late), Slot::WaitUntil(late + RATE_WINDOW));
        assert!(matches!(w.try_start(late + RATE_WINDOW), Slot::Go(_)));
    }

    #[test]
    fn a_429_pauses_everyone_and_later_ones_extend_it() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut w = Window::new(Some(100.0), t0);
        let ids: Vec<u64> = go(&mut w, 4, t0);
        w.finish(ids[0], at(10), true);
        w.refused(at(10), Duration::from_millis(1000));
        assert_eq!(w.try_start(at(500)), Slot::WaitUntil(at(1010)));
        // A shorter pause from a later 429 does not shorten it...
        w.finish(ids[1], at(20), true);
        w.refused(at(20), Duration::from_millis(100));
        assert_eq!(w.try_start(at(500)), Slot::WaitUntil(at(1010)));
        // ...a longer one extends it.
        w.finish(ids[2], at(30), true);
        w.refused(at(30), Duration::from_millis(2000));
        w.finish(ids[3], at(40), false);
        assert_eq!(w.try_start(at(1500)), Slot::WaitUntil(at(2030)));
        assert!(matches!(w.try_start(at(2030)), Slot::Go(_)));
    }

    #[test]
    fn without_a_limit_a_429_sets_the_rate_the_server_let_through() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut w = Window::new(None, t0);
        // 8 at once: the server admits 3 and refuses 5, the refusals first.
        let ids: Vec<u64> = go(&mut w, 8, t0);
        for (i, &id) in ids[3..].iter().enumerate() {
            w.finish(id, at(2 + i as u64), true);
            w.refused(at(2 + i as u64), Duration::from_secs(1));
        }
        for &id in &ids[..3] {
            w.finish(id, at(20), false);
        }
        assert_eq!(w.rate(), Some(3.0));
        // After the pause, 3 per second.
        let s = starts(&mut w, t0, &[1006; 9], 5);
        assert_eq!(most_in_window(&s, 1000), 3, "{s:?}");
        // Each second without a 429 after the pause adds 10% (3 x 1.1^2 at
        // the last start)...
        assert!(
            w.rate().is_some_and(|r| r > 3.6 && r < 3.7),
            "{:?}",
            w.rate()
        );
        // ...but stays below the refused count (4) until the probe time,
        // 5 s after the pause (at 6006 ms)...
        let _ = w.try_start(at(5006));
        assert!(w.rate().is_some_and(|r| r < 4.0), "{:?}", w.rate());
        // ...then tries it.
        let _ = w.try_start(at(7006));
        assert!(w.rate().is_some_and(|r| r >= 4.0), "{:?}", w.rate());
        let mut w = Window::new(None, t0);
        let Slot::Go(id) = w.try_start(t0) else {
            panic!()
        };
        w.finish(id, at(1), true);
        w.refused(at(1), Duration::from_millis(1));
        assert_eq!(w.rate(), Some(1.0), "never below 1/s");
        // Creeps back to unlimited in the end.
        assert!(matches!(w.try_start(at(200_000)), Slot::Go(_)));
        assert_eq!(w.rate(), None);
    }

    #[test]
    fn a_refused_probe_doubles_the_holdoff_and_a_passed_one_clears_it() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut w = Window::new(None, t0);
        // The server admits 3 in a second and refuses the 4th.
        let refuse_4th = |w: &mut Window, from: u64| {
            let ids: Vec<u64> = (0..4)
                .map(|i| match w.try_start(at(from + i)) {
                    Slot::Go(id) => id,
                    s => panic!("{s:?}"),
                })
                .collect();
            for &id in &ids[..3] {
                w.finish(id, at(from + 10), false);
            }
            w.finish(ids[3], at(from + 10), true);
            w.refused(at(from + 10), Duration::from_secs(1));
        };
        refuse_4th(&mut w, 0);
        assert_eq!(w.rate(), Some(3.0));
        assert_eq!(w.ceiling, Some((4, at(1010) + PROBE_HOLDOFF)));
        // The probe at 4, once allowed, is refused: twice the holdoff.
        w.creep(at(6500));
        assert!(w.rate().is_some_and(|r| r >= 4.0), "{:?}", w.rate());
        refuse_4th(&mut w, 6500);
        assert_eq!(w.ceiling, Some((4, at(7510) + 2 * PROBE_HOLDOFF)));
        assert_eq!(w.rate(), Some(3.0));
        // A probe that goes through a whole window clears the ceiling.
        w.creep(at(30_000));
        assert!(w.rate().is_some_and(|r| r >= 4.0), "{:?}", w.rate());
        w.creep(at(32_000));
        assert_eq!(w.ceiling, None);
        assert_eq!(w.holdoff, PROBE_HOLDOFF);
    }

    #[test]
    fn a_configured_limit_is_never_exceeded_while_adapting() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut w = Window::new(Some(5.0), t0);
        let ids: Vec<u64> = go(&mut w, 5, t0);
        w.finish(ids[4], at(1), true);
        w.refused(at(1), Duration::ZERO);
        assert_eq!(w.rate(), Some(5.0), "Retry-After: 0 is no rate signal");
        w.refused(at(1), Duration::from_millis(1));
        assert_eq!(w.rate(), Some(4.0), "what the server let through");
        let _ = w.try_start(at(60_000));
        assert_eq!(
            w.rate(),
            Some(5.0),
            "back up to the configured rate, no further"
        );
    }

    #[test]
    fn acquire_honours_quit_and_the_pause() {
        use std::sync::atomic::Ordering;
        let quit = AtomicBool::new(false);
        let l = Limiter::new(None);
        let p = l.acquire_as(&quit, false).expect("unlimited");
        let t1 = Instant::now();
        p.finish(Some(Duration::from_millis(50)));
        drop(l.acquire_as(&quit, false).expect("after the pause"));
        assert!(t1.elapsed() >= Duration::from_millis(45));
        let p = l.acquire_as(&quit, false).expect("again");
        p.finish(Some(Duration::from_secs(60)));
        quit.store(true, Ordering::Relaxed);
        let t2 = Instant::now();
        assert!(
            l.acquire_as(&quit, false).is_none(),
            "quit interrupts the wait"
        );
        assert!(t2.elapsed() < Duration::from_secs(1));
    }
}
