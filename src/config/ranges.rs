//! The range of every numeric setting, key and flag, in one table: a value
//! outside it is refused with the key and the range (exit 2) wherever it is
//! given (file, flag or environment), before it can reach a conversion that
//! would overflow (a `Duration` from `1e300` seconds, a pause of `1/1e-30` s).

/// The inclusive bounds of one numeric key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

pub const RETRY_MAX: Range = whole(1, 100);
pub const BATCH_EXPORT: Range = whole(1, 100_000);
pub const THREADS: Range = whole(1, 512);
pub const WRITERS: Range = whole(1, 64);
pub const MAX_DB_CONNECTIONS: Range = whole(4, 1_000);
pub const LEASE_SECS: Range = whole(1, 86_400);
pub const TIMEOUT_SECS: Range = whole(1, 3_600);
pub const PROGRESS_SECS: Range = Range {
    min: 0.1,
    max: 3_600.0,
};
pub const MEMORY_MB: Range = whole(1, 65_536);
pub const MAX_BODY_MB: Range = whole(1, 65_536);
pub const RATE_LIMIT_PER_SEC: Range = Range {
    min: 0.001,
    max: 100_000.0,
};
pub const MAX_PAUSE_SECS: Range = whole(1, 86_400);
pub const SLICE_DAYS: Range = whole(1, 366);
pub const SETTLE_HOURS: Range = whole(0, 168);
pub const PAGE_START: Range = whole(0, 1_000_000);
pub const PAGE_SIZE: Range = whole(1, 1_000_000);
pub const MAX_PAGES: Range = whole(1, 10_000_000);
pub const LOOKBACK_DAYS: Range = whole(0, 3_650);
pub const BACKOFF_MS: Range = whole(1, 3_600_000);
pub const CHANNEL_CAPACITY: Range = whole(1, 10_000);
pub const NOTIFY_TIMEOUT_SECS: Range = whole(1, 3_600);
pub const MAX_LAG_DAYS: Range = whole(0, 3_650);

/// Every numeric key by the name users write (file key, flag or variable),
/// for the docs' table of ranges, which a test holds to this one.
#[cfg(test)]
pub const RANGES: &[(&str, Range)] = &[
    ("retry_max", RETRY_MAX),
    ("batch_export", BATCH_EXPORT),
    ("threads", THREADS),
    ("writers", WRITERS),
    ("max_db_connections", MAX_DB_CONNECTIONS),
    ("lease_secs", LEASE_SECS),
    ("timeout_secs", TIMEOUT_SECS),
    ("progress_secs", PROGRESS_SECS),
    ("memory_mb", MEMORY_MB),
    ("max_body_mb", MAX_BODY_MB),
    ("rate_limit_per_sec", RATE_LIMIT_PER_SEC),
    ("max_pause_secs", MAX_PAUSE_SECS),
    ("slice_days", SLICE_DAYS),
    ("settle_hours", SETTLE_HOURS),
    ("pagination.start", PAGE_START),
    ("pagination.size", PAGE_SIZE),
    ("pagination.limit", PAGE_SIZE),
    ("pagination.max_pages", MAX_PAGES),
    ("--lookback-days", LOOKBACK_DAYS),
    ("ATLAS_BACKOFF_MS", BACKOFF_MS),
    ("ATLAS_BACKOFF_CAP_MS", BACKOFF_MS),
    ("ATLAS_CHANNEL_CAPACITY", CHANNEL_CAPACITY),
    ("notify.timeout_secs", NOTIFY_TIMEOUT_SECS),
    ("--max-lag-days", MAX_LAG_DAYS),
];

const fn whole(min: u64, max: u64) -> Range {
    Range {
        min: min as f64,
        max: max as f64,
    }
}

impl Range {
    /// `Err` with "must be between A and B" when `v` is outside (or NaN).
    pub fn check(&self, v: f64) -> Result<(), String> {
        if v >= self.min && v <= self.max {
            Ok(())
        } else {
            Err(format!("must be between {} and {}", self.min, self.max))
        }
    }
}

/// Checks `v` (when given) against `range`, as (key, why).
pub fn check<T: Into<f64>>(
    key: &'static str,
    range: Range,
    v: Option<T>,
) -> Result<(), (&'static str, String)> {
    match v {
        Some(v) => range.check(v.into()).map_err(|m| (key, m)),
        None => Ok(()),
    }
}

/// `check` for counts held as `usize` or `u64`: one too large for a `u32`
/// is past every range, and is checked as `u32::MAX`.
pub fn check_count<T: TryInto<u32>>(
    key: &'static str,
    range: Range,
    v: Option<T>,
) -> Result<(), (&'static str, String)> {
    check(key, range, v.map(|n| n.try_into().unwrap_or(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_their_range_are_refused_with_it() {
        assert_eq!(check("threads", THREADS, Some(8u32)), Ok(()));
        assert_eq!(
            check("threads", THREADS, Some(0u32)),
            Err(("threads", "must be between 1 and 512".into()))
        );
        assert_eq!(
            check("progress_secs", PROGRESS_SECS, Some(1e300)),
            Err(("progress_secs", "must be between 0.1 and 3600".into()))
        );
        assert!(check("progress_secs", PROGRESS_SECS, Some(f64::NAN)).is_err());
        assert!(check("progress_secs", PROGRESS_SECS, Some(f64::INFINITY)).is_err());
        assert_eq!(
            check("rate_limit_per_sec", RATE_LIMIT_PER_SEC, Some(1e-30)),
            Err((
                "rate_limit_per_sec",
                "must be between 0.001 and 100000".into()
            ))
        );
        assert_eq!(
            check("rate_limit_per_sec", RATE_LIMIT_PER_SEC, Some(2.5)),
            Ok(())
        );
        assert!(check_count("batch_export", BATCH_EXPORT, Some(usize::MAX)).is_err());
        assert!(check_count("memory_mb", MEMORY_MB, Some(u64::MAX)).is_err());
        assert_eq!(check_count("memory_mb", MEMORY_MB, Some(64u64)), Ok(()));
        assert_eq!(check::<f64>("threads", THREADS, None), Ok(()));
    }

    /// The docs' table of ranges (README.md or docs/*.md) says what this one does.
    #[test]
    fn the_docs_give_every_range() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut docs = std::fs::read_to_string(root.join("README.md")).unwrap_or_default();
        if let Ok(dir) = std::fs::read_dir(root.join("docs")) {
            for f in dir.flatten() {
                docs += &std::fs::read_to_string(f.path()).unwrap_or_default();
            }
        }
        for (key, r) in RANGES {
            let row = format!("| `{key}` | {} to {} |", r.min, r.max);
            assert!(docs.contains(&row), "the docs lack the row: {row}");
        }
    }

    #[test]
    fn every_range_converts_to_durations_without_overflow() {
        for (key, r) in RANGES {
            assert!(r.min <= r.max, "{key}");
            assert!(r.max.is_finite() && r.max < 1e9, "{key}");
        }
        // The largest values still make durations (no panic).
        let _ = std::time::Duration::from_secs_f64(PROGRESS_SECS.max);
        let _ = std::time::Duration::from_secs_f64(1.0 / RATE_LIMIT_PER_SEC.min);
    }
}
