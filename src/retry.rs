//! One retry loop for everything that may fail for a while: HTTP pages,
//! batch commits and the pipeline's ledger calls. The caller's classifier
//! says what a failure calls for ([`Verdict`]); the wait is exponential with
//! full jitter under a cap, unless the failure names its own (`Retry-After`).
//!
//! Invariants: an operation is attempted at least once and at most
//! `Policy::attempts` times; the wait after attempt `n` lies in
//! `[0, min(cap, base * 2^(n-1))]`; a wait that honours `quit` ends the loop
//! as soon as it rises, one that does not is never cut short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Retry schedule: exponential with full jitter, capped.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// Wait after failed attempt `attempt` (1-based), for a uniform `jitter` in [0, 1).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        exp.min(self.cap).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// What a failed attempt calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It may work next time: wait per the backoff, then try again.
    Retry,
    /// The other side said how long to wait (`Retry-After`): that long, then try again.
    RetryAfter(Duration),
    /// It would fail the same way again: give up now.
    Fail,
    /// Credentials were refused: give up now, nothing else can succeed with them.
    Auth,
}

impl Verdict {
    /// `Retry` for an error that may go away, `Fail` for any other.
    pub fn retry_if(transient: bool) -> Verdict {
        if transient {
            Verdict::Retry
        } else {
            Verdict::Fail
        }
    }
}

/// Why a retried operation ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The classifier said [`Verdict::Fail`].
    Fail,
    /// The classifier said [`Verdict::Auth`].
    Auth,
    /// The last attempt allowed failed with an error worth retrying.
    Exhausted,
    /// `quit` rose while waiting to try again.
    Quit,
}

/// The failure that ended a retried operation, and why it was the end.
#[derive(Debug)]
pub struct GaveUp<E> {
    pub error: E,
    /// The attempt that failed last (1-based).
    pub attempt: u32,
    pub stop: Stop,
}

/// A failed attempt that will be tried again, for the caller to count and report.
#[derive(Debug, Clone, Copy)]
pub struct Retrying {
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// The most attempts there will be.
    pub attempts: u32,
    /// How long until the next attempt.
    pub wait: Duration,
}

/// How many attempts, how far apart, and whether waiting yields to `quit`.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'q> {
    /// Attempts in all, the first included (0 counts as 1).
    pub attempts: u32,
    pub backoff: Backoff,
    /// When set, a wait ends early as soon as it rises ([`Stop::Quit`]). Work
    /// that must finish even while the run stops (committing what is in
    /// flight, recording how a slice ended) leaves it unset.
    pub quit: Option<&'q AtomicBool>,
}

impl Policy<'_> {
    /// What follows failed attempt `attempt` judged `verdict`: the wait
    /// before the next attempt, or why to stop. `jitter` is uniform in [0, 1).
    pub fn next(&self, attempt: u32, verdict: Verdict, jitter: f64) -> Result<Duration, Stop> {
        match verdict {
            Verdict::Fail => Err(Stop::Fail),
            Verdict::Auth => Err(Stop::Auth),
            _ if attempt >= self.attempts => Err(Stop::Exhausted),
            Verdict::RetryAfter(wait) => Ok(wait),
            Verdict::Retry => Ok(self.backoff.delay(attempt, jitter)),
        }
    }

    /// Runs `op` (given the attempt number, 1-based) until it succeeds or
    /// `classify` and the attempt limit say stop. `on_retry` sees every
    /// failure that will be tried again, before the wait.
    pub fn run<T, E>(
        &self,
        mut op: impl FnMut(u32) -> Result<T, E>,
        classify: impl Fn(&E) -> Verdict,
        mut on_retry: impl FnMut(&E, Retrying),
    ) -> Result<T, GaveUp<E>> {
        let mut attempt = 1;
        loop {
            let error = match op(attempt) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let stop = match self.next(attempt, classify(&error), fastrand::f64()) {
                Ok(wait) => {
                    // A wait no clock can reach is as good as for ever: quit ends it.
                    let now = Instant::now();
                    let until = now
                        .checked_add(wait)
                        .unwrap_or(now + Duration::from_secs(1 << 32));
                    let retrying = Retrying {
                        attempt,
                        attempts: self.attempts,
                        wait,
                    };
                    on_retry(&error, retrying);
                    if self.wait_until(until) {
                        attempt += 1;
                        continue;
                    }
                    Stop::Quit
                }
                Err(stop) => stop,
            };
            return Err(GaveUp {
                error,
                attempt,
                stop,
            });
        }
    }

    /// Waits until `until`; false if `quit` rose first.
    fn wait_until(&self, until: Instant) -> bool {
        match self.quit {
            Some(quit) => sleep_until(until, quit),
            None => {
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
                true
            }
        }
    }
}

/// Sleeps in short steps so Ctrl-C is honoured; false if `quit` rose first.
pub fn sleep_until(t: Instant, quit: &AtomicBool) -> bool {
    loop {
        if quit.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= t {
            return true;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(5),
        }
    }

    /// A policy whose waits are all zero, so loops run at once.
    fn instant(attempts: u32) -> Policy<'static> {
        Policy {
            attempts,
            backoff: Backoff {
                base: Duration::ZERO,
                cap: Duration::ZERO,
            },
            quit: None,
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = backoff();
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(500));
        assert_eq!(b.delay(2, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(4, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(5, 1.0), Duration::from_secs(5), "capped");
        assert_eq!(b.delay(60, 1.0), Duration::from_secs(5), "no overflow");
        assert_eq!(b.delay(3, 0.5), Duration::from_secs(1));
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_capped_exponential() {
        let p = Policy {
            attempts: 10,
            backoff: backoff(),
            quit: None,
        };
        for attempt in 1..10 {
            let ceiling = Duration::from_millis(500 * (1 << (attempt - 1))).min(backoff().cap);
            for _ in 0..200 {
                let wait = p.next(attempt, Verdict::Retry, fastrand::f64());
                assert!(matches!(wait, Ok(w) if w <= ceiling), "{attempt}: {wait:?}");
            }
            assert_eq!(p.next(attempt, Verdict::Retry, 0.0), Ok(Duration::ZERO));
            // Out-of-range jitter is clamped, never beyond the ceiling.
            assert_eq!(p.next(attempt, Verdict::Retry, 7.0), Ok(ceiling));
        }
    }

    #[test]
    fn retry_after_overrides_the_backoff_but_not_the_attempt_limit() {
        let p = Policy {
            attempts: 3,
            backoff: backoff(),
            quit: None,
        };
        let server = Verdict::RetryAfter(Duration::from_secs(120));
        assert_eq!(p.next(1, server, 0.0), Ok(Duration::from_secs(120)));
        assert_eq!(
            p.next(2, server, 0.9),
            Ok(Duration::from_secs(120)),
            "above the cap too"
        );
        assert_eq!(p.next(3, server, 0.5), Err(Stop::Exhausted));
    }

    #[test]
    fn final_verdicts_stop_at_once() {
        let p = instant(5);
        assert_eq!(p.next(1, Verdict::Fail, 0.5), Err(Stop::Fail));
        assert_eq!(p.next(1, Verdict::Auth, 0.5), Err(Stop::Auth));
        assert_eq!(Verdict::retry_if(true), Verdict::Retry);
        assert_eq!(Verdict::retry_if(false), Verdict::Fail);
    }

    #[test]
    fn attempts_run_out_after_the_limit() {
        let calls = Cell::new(0);
        let mut seen = Vec::new();
        let r: Result<(), _> = instant(4).run(
            |n| {
                calls.set(calls.get() + 1);
                Err(n)
            },
            |_| Verdict::Retry,
            |e, r| seen.push((*e, r.attempt, r.attempts)),
        );
        let g = r.unwrap_err();
        assert_eq!((g.error, g.attempt, g.stop), (4, 4, Stop::Exhausted));
        assert_eq!(calls.get(), 4);
        assert_eq!(seen, [(1, 1, 4), (2, 2, 4), (3, 3, 4)]);
    }

    #[test]
    fn zero_attempts_still_tries_once() {
        let r: Result<(), GaveUp<()>> = instant(0).run(|_| Err(()), |_| Verdict::Retry, |_, _| {});
        let g = r.unwrap_err();
        assert_eq!((g.attempt, g.stop), (1, Stop::Exhausted));
    }

    #[test]
    fn success_after_failures_returns_the_value() {
        let mut retries = 0;
        let r: Result<u32, GaveUp<&str>> = instant(5).run(
            |n| if n < 3 { Err("busy") } else { Ok(n) },
            |_| Verdict::Retry,
            |_, _| retries += 1,
        );
        assert_eq!(r.unwrap(), 3);
        assert_eq!(retries, 2);
    }

    #[test]
    fn a_final_error_is_not_retried() {
        let mut retries = 0;
        let r: Result<(), GaveUp<&str>> = instant(5).run(
            |n| Err(if n == 1 { "busy" } else { "refused" }),
            |e| Verdict::retry_if(*e == "busy"),
            |_, _| retries += 1,
        );
        let g = r.unwrap_err();
        assert_eq!((g.error, g.attempt, g.stop), ("refused", 2, Stop::Fail));
        assert_eq!(retries, 1);
    }

    #[test]
    fn quit_ends_the_wait() {
        let quit = AtomicBool::new(true);
        let p = Policy {
            attempts: 5,
            backoff: backoff(),
            quit: Some(&quit),
        };
        let started = Instant::now();
        let r: Result<(), GaveUp<()>> = p.run(
            |_| Err(()),
            |_| Verdict::RetryAfter(Duration::from_secs(60)),
            |_, r| assert_eq!(r.wait, Duration::from_secs(60)),
        );
        let g = r.unwrap_err();
        assert_eq!((g.attempt, g.stop), (1, Stop::Quit));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
