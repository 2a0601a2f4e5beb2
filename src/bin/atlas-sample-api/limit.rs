//! The server-side rate limit (`--rate-limit N`): a rolling window over the start times of
//! the data requests it admitted. A request is admitted only if fewer than N admitted
//! requests started in the `WINDOW` before it, so no window of that width ever holds more
//! than N starts; refused requests are not counted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Width of the rolling window: `--rate-limit` is a number of requests per second.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Start times of the admitted requests still inside the window, oldest first.
pub struct RollingWindow {
    limit: usize,
    width: Duration,
    starts: VecDeque<Instant>,
}

impl RollingWindow {
    pub fn new(limit: usize, width: Duration) -> Self {
        Self {
            limit,
            width,
            starts: VecDeque::with_capacity(limit),
        }
    }

    /// Admits (and records) a request starting at `now` if fewer than `limit` admitted
    /// requests started in `(now - width, now]`. A start exactly `width` ago has left the
    /// window. `now` must not go backwards between calls.
    pub fn admit(&mut self, now: Instant) -> bool {
        while let Some(&oldest) = self.starts.front() {
            if now.duration_since(oldest) < self.width {
                break;
            }
            self.starts.pop_front();
        }
        let room = self.starts.len() < self.limit;
        if room {
            self.starts.push_back(now);
        }
        room
    }
}

/// `--quota N`: a fixed window per wall-clock second, as APIs that send rate-limit headers
/// count; refused requests count too, as those APIs do.
pub struct Quota {
    limit: u64,
    second: u64,
    used: u64,
}

/// What a request is told by the quota.
pub struct QuotaAnswer {
    pub admitted: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Unix time (seconds) at which the window resets.
    pub reset_at: u64,
    /// Seconds until then, rounded up.
    pub reset_in: u64,
}

impl Quota {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            second: 0,
            used: 0,
        }
    }

    /// Counts a request at `unix_ms`.
    pub fn take(&mut self, unix_ms: u64) -> QuotaAnswer {
        let second = unix_ms / 1000;
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        self.used += 1;
        QuotaAnswer {
            admitted: self.used <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(self.used),
            reset_at: second + 1,
            reset_in: ((second + 1) * 1000 - unix_ms).div_ceil(1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of the requests starting at these milliseconds a window of `limit` admits.
    fn admitted(limit: usize, starts_ms: &[u64]) -> Vec<bool> {
        let t0 = Instant::now();
        let mut window = RollingWindow::new(limit, WINDOW);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        starts_ms.iter().map(|&ms| window.admit(at(ms))).collect()
    }

    /// The start times, in milliseconds, that a window of `limit` admits.
    fn kept(limit: usize, starts_ms: &[u64]) -> Vec<u64> {
        let admits = admitted(limit, starts_ms);
        let pairs = starts_ms.iter().zip(admits);
        pairs
            .filter(|(_, admit)| *admit)
            .map(|(&ms, _)| ms)
            .collect()
    }

    #[test]
    fn a_burst_is_cut_at_the_limit_and_the_window_rolls() {
        let got = admitted(3, &[0, 0, 0, 0, 999, 1000, 1000, 1000, 1000]);
        let want = [true, true, true, false, false, true, true, true, false];
        assert_eq!(got, want);
    }

    #[test]
    fn refused_requests_do_not_hold_the_window() {
        // A client hammering every 100 ms gets in exactly when the oldest start leaves.
        let starts: Vec<u64> = (0..25).map(|i| i * 100).collect();
        assert_eq!(kept(2, &starts), [0, 100, 1000, 1100, 2000, 2100]);
    }

    #[test]
    fn a_steady_rate_at_the_limit_is_never_refused() {
        let starts: Vec<u64> = (0..40).map(|i| i * 250).collect();
        assert!(admitted(4, &starts).iter().all(|&a| a));
    }

    #[test]
    fn no_window_ever_holds_more_than_the_limit() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut t = 0;
        let starts: Vec<u64> = (0..2000)
            .map(|_| {
                t += rng.u64(0..40);
                t
            })
            .collect();
        let kept = kept(5, &starts);
        for (i, &start) in kept.iter().enumerate() {
            let in_window = kept[..=i].iter().filter(|&&s| start - s < 1000).count();
            assert!(
                in_window <= 5,
                "{in_window} starts in the second before {start} ms"
            );
        }
        assert!(kept.len() > 100, "the window still admits: {}", kept.len());
    }

    /// `--quota 2`: a fixed window per wall-clock second, its reset as a Unix time and as
    /// seconds rounded up; the third request of a second is refused and a new second starts
    /// afresh.
    #[test]
    fn quota_counts_a_fixed_window_per_second() {
        let mut q = Quota::new(2);
        let a = q.take(5_000_100);
        assert!(a.admitted);
        assert_eq!((a.remaining, a.reset_at, a.reset_in), (1, 5_001, 1));
        let b = q.take(5_000_900);
        assert!(b.admitted);
        assert_eq!(b.remaining, 0);
        let c = q.take(5_000_950);
        assert!(!c.admitted);
        assert_eq!(c.remaining, 0);
        let d = q.take(5_001_000);
        assert!(d.admitted);
        assert_eq!((d.remaining, d.reset_at), (1, 5_002));
    }
}
