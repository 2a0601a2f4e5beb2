//! A period cut into slices of `slice_days` (pure): the unit of claim,
//! retry and resume.

use chrono::{Duration, NaiveDate};

/// Consecutive, non-overlapping `(from, to)` pieces covering `from..=to`;
/// the last one is shorter when the period does not divide evenly.
pub fn plan(from: NaiveDate, to: NaiveDate, slice_days: u32) -> Vec<(NaiveDate, NaiveDate)> {
    let step = i64::from(slice_days.max(1));
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = (start + Duration::days(step - 1)).min(to);
        out.push((start, end));
        match end.succ_opt() {
            Some(next) => start = next,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn one_day_slices() {
        let p = plan(d("2025-01-30"), d("2025-02-02"), 1);
        assert_eq!(p.len(), 4);
        assert_eq!(p[0], (d("2025-01-30"), d("2025-01-30")));
        assert_eq!(p[3], (d("2025-02-02"), d("2025-02-02")));
    }

    #[test]
    fn uneven_last_slice_and_single_day() {
        let p = plan(d("2025-01-01"), d("2025-01-10"), 7);
        assert_eq!(
            p,
            vec![
                (d("2025-01-01"), d("2025-01-07")),
                (d("2025-01-08"), d("2025-01-10"))
            ]
        );
        assert_eq!(
            plan(d("2025-01-01"), d("2025-01-01"), 30),
            vec![(d("2025-01-01"), d("2025-01-01"))]
        );
    }

    #[test]
    fn slices_cover_the_period_exactly_across_leap_day() {
        let (a, b) = (d("2024-02-01"), d("2024-03-31"));
        for n in [1, 2, 3, 7, 31, 366] {
            let p = plan(a, b, n);
            assert_eq!(p[0].0, a);
            assert_eq!(p.last().unwrap().1, b);
            for w in p.windows(2) {
                assert_eq!(
                    w[0].1.succ_opt().unwrap(),
                    w[1].0,
                    "gap or overlap with {n}"
                );
            }
            let days: i64 = p.iter().map(|(f, t)| (*t - *f).num_days() + 1).sum();
            assert_eq!(days, 60, "29 days of February 2024 + 31 of March");
        }
    }

    #[test]
    fn empty_when_reversed() {
        assert!(plan(d("2025-01-02"), d("2025-01-01"), 1).is_empty());
    }
}
