//! The HTTP requests a run sent, counted by the class of their answer's
//! status (`2xx` … `5xx`, `other` for no answer: connection refused, reset,
//! timed out, TLS), and the 429s apart: the run's `--json` `http_requests`
//! and `http_429`, and the metrics `atlas_http_requests` and `atlas_http_429`.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// The classes, in the order of `Requests`'s fields and of the metrics.
pub const CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "other"];

/// Live counts, shared by a run's fetchers.
#[derive(Debug, Default)]
pub struct Counts {
    by_class: [AtomicU64; 5],
    too_many: AtomicU64,
}

impl Counts {
    /// One request answered with `status`, or not answered (`None`).
    pub fn count(&self, status: Option<u16>) {
        self.by_class[class(status)].fetch_add(1, Ordering::Relaxed);
        if status == Some(429) {
            self.too_many.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn totals(&self) -> Requests {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        let [c2, c3, c4, c5, other] = &self.by_class;
        Requests {
            c2xx: g(c2),
            c3xx: g(c3),
            c4xx: g(c4),
            c5xx: g(c5),
            other: g(other),
            too_many: g(&self.too_many),
        }
    }
}

/// A run's requests by class (`--json` `http_requests`); the 429s
/// (`http_429`, also counted in `4xx`) are kept apart from the object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    #[serde(rename = "2xx")]
    pub c2xx: i64,
    #[serde(rename = "3xx")]
    pub c3xx: i64,
    #[serde(rename = "4xx")]
    pub c4xx: i64,
    #[serde(rename = "5xx")]
    pub c5xx: i64,
    pub other: i64,
    #[serde(skip)]
    pub too_many: i64,
}

/// The index in `CLASSES` of a status.
fn class(status: Option<u16>) -> usize {
    match status {
        Some(200..=299) => 0,
        Some(300..=399) => 1,
        Some(400..=499) => 2,
        Some(500..=599) => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_go_to_their_class_and_429s_apart() {
        let c = Counts::default();
        for s in [
            Some(200),
            Some(204),
            Some(304),
            Some(404),
            Some(429),
            Some(429),
        ] {
            c.count(s);
        }
        for s in [Some(500), Some(503), None, Some(99), Some(600)] {
            c.count(s);
        }
        let t = c.totals();
        assert_eq!((t.c2xx, t.c3xx, t.c4xx, t.c5xx, t.other), (2, 1, 3, 2, 3));
        assert_eq!(t.too_many, 2);
        assert_eq!(
            serde_json::to_value(t).unwrap(),
            serde_json::json!({"2xx": 2, "3xx": 1, "4xx": 3, "5xx": 2, "other": 3})
        );
    }
}
