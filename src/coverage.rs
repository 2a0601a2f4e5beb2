//! Which days a sync loads, from what every scrap of the pair has loaded
//! (pure; the ledger gives the spans): the days never loaded between the
//! start and `until` (gaps, new days, open days), plus the lookback window
//! before the last loaded day when there is anything new — nothing else.
//! A day loaded by any scrap is not fetched again (save the lookback).

use chrono::{Duration, NaiveDate};

/// What a sync should load: the scrap's period and the slices of it to
/// create (only those holding a day to fetch), and how many days of the
/// range were skipped as already loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub slices: Vec<(NaiveDate, NaiveDate)>,
    pub skipped: i64,
    /// The lookback's days, loaded already and fetched again: their rows
    /// are mostly stored (the writers insert them skipping stored hashes
    /// at once, rather than trying a COPY that would meet them).
    pub refetch: Option<(NaiveDate, NaiveDate)>,
}

/// The days to load for a pair whose loaded (`done`) spans are `done` (in
/// any order, overlapping or not): from `from` (else the first loaded day,
/// else `start_date`) to `until`, cut in slices of `slice_days` from the
/// first day to fetch. `None` when every day is loaded (the lookback alone
/// is not a reason to run). An error when nothing was loaded and no start
/// is known.
pub fn need(
    done: &[(NaiveDate, NaiveDate)],
    from: Option<NaiveDate>,
    start_date: Option<NaiveDate>,
    until: NaiveDate,
    lookback: u32,
    slice_days: u32,
) -> Result<Option<Need>, String> {
    let spans = merged(done);
    let first_loaded = spans.first().map(|s| s.0);
    let lo = from.or(first_loaded).or(start_date).ok_or_else(|| {
        "nothing was loaded yet for this client and route: give --from YYYY-MM-DD (or set the route's start_date)"
            .to_string()
    })?;
    if lo > until {
        return Ok(None);
    }
    let is_done = |d: NaiveDate| spans.iter().any(|&(a, b)| a <= d && d <= b);
    let days = (until - lo).num_days() + 1;
    let mut fetch: Vec<bool> = (0..days)
        .map(|i| !is_done(lo + Duration::days(i)))
        .collect();
    if !fetch.iter().any(|f| *f) {
        return Ok(None);
    }
    // The lookback: the last days loaded before now are fetched again (APIs
    // change recent records; the hash makes the overlap free).
    let mut refetch = None;
    if let Some(last) = spans.iter().map(|s| s.1).filter(|d| *d <= until).max() {
        for back in 0..i64::from(lookback) {
            let d = last - Duration::days(back);
            if d >= lo {
                fetch[(d - lo).num_days() as usize] = true;
                refetch = Some((d, last));
            }
        }
    }
    let (Some(a), Some(b)) = (
        fetch.iter().position(|f| *f),
        fetch.iter().rposition(|f| *f),
    ) else {
        return Ok(None);
    };
    let step = slice_days.max(1) as usize;
    let mut slices = Vec::new();
    let mut fetched = 0i64;
    let mut i = a;
    while i <= b {
        let j = (i + step - 1).min(b);
        if fetch[i..=j].iter().any(|f| *f) {
            slices.push((lo + Duration::days(i as i64), lo + Duration::days(j as i64)));
            fetched += (j - i + 1) as i64;
        }
        i = j + 1;
    }
    Ok(Some(Need {
        from: lo + Duration::days(a as i64),
        to: lo + Duration::days(b as i64),
        slices,
        skipped: days - fetched,
        refetch,
    }))
}

/// The spans sorted and merged where they overlap or touch.
pub fn merged(spans: &[(NaiveDate, NaiveDate)]) -> Vec<(NaiveDate, NaiveDate)> {
    let mut v: Vec<(NaiveDate, NaiveDate)> =
        spans.iter().copied().filter(|(a, b)| a <= b).collect();
    v.sort();
    let mut out: Vec<(NaiveDate, NaiveDate)> = Vec::new();
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 + Duration::days(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
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

    fn days(v: &[(&str, &str)]) -> Vec<(NaiveDate, NaiveDate)> {
        v.iter().map(|(a, b)| (d(a), d(b))).collect()
    }

    #[test]
    fn the_lookback_days_are_told_as_fetched_again() {
        let done = days(&[("2025-01-01", "2025-01-10")]);
        let refetch = |lookback| {
            need(&done, None, None, d("2025-01-12"), lookback, 1)
                .unwrap()
                .unwrap()
                .refetch
        };
        assert_eq!(refetch(1), Some((d("2025-01-10"), d("2025-01-10"))));
        assert_eq!(refetch(3), Some((d("2025-01-08"), d("2025-01-10"))));
        assert_eq!(refetch(0), None);
        // Nothing loaded: nothing fetched again.
        let first = need(&[], Some(d("2025-01-01")), None, d("2025-01-02"), 1, 1);
        assert_eq!(first.unwrap().unwrap().refetch, None);
    }

    #[test]
    fn a_first_sync_loads_from_its_start() {
        assert!(need(&[], None, None, d("2025-01-10"), 1, 1).is_err());
        let n = need(&[], Some(d("2025-01-01")), None, d("2025-01-10"), 1, 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            (n.from, n.to, n.slices.len(), n.skipped),
            (d("2025-01-01"), d("2025-01-10"), 10, 0)
        );
        let n = need(&[], None, Some(d("2025-01-05")), d("2025-01-10"), 1, 7)
            .unwrap()
            .unwrap();
        assert_eq!(n.slices, days(&[("2025-01-05", "2025-01-10")]));
    }

    #[test]
    fn later_syncs_load_the_new_days_and_the_lookback() {
        let done = days(&[("2025-01-01", "2025-01-10")]);
        let n = need(&done, None, None, d("2025-01-15"), 1, 1)
            .unwrap()
            .unwrap();
        assert_eq!((n.from, n.to), (d("2025-01-10"), d("2025-01-15")));
        assert_eq!(n.skipped, 9, "the 1st to the 9th were loaded");
        let n = need(&done, None, None, d("2025-01-15"), 0, 1)
            .unwrap()
            .unwrap();
        assert_eq!(n.from, d("2025-01-11"));
        let n = need(&done, None, None, d("2025-01-15"), 3, 1)
            .unwrap()
            .unwrap();
        assert_eq!(n.from, d("2025-01-08"));
        // Nothing new: the lookback alone does not run.
        assert_eq!(
            need(&done, None, None, d("2025-01-10"), 2, 1).unwrap(),
            None
        );
        assert_eq!(
            need(&done, None, None, d("2025-01-09"), 2, 1).unwrap(),
            None
        );
        // --from bounds the lookback.
        let n = need(&done, Some(d("2025-01-10")), None, d("2025-01-15"), 5, 1)
            .unwrap()
            .unwrap();
        assert_eq!(n.from, d("2025-01-10"));
    }

    #[test]
    fn days_loaded_by_any_scrap_are_skipped_and_gaps_are_filled() {
        // A backfill of the quarter, then a sync from the year's start: only
        // the days before the quarter, after it, and its lookback day.
        let done = days(&[("2024-01-01", "2024-01-31"), ("2024-02-10", "2024-03-31")]);
        let n = need(&done, None, None, d("2024-04-03"), 1, 1)
            .unwrap()
            .unwrap();
        let fetched: Vec<NaiveDate> = n.slices.iter().map(|s| s.0).collect();
        let mut want = vec![];
        for i in 1..=9 {
            want.push(d(&format!("2024-02-{i:02}")));
        }
        want.extend([
            d("2024-03-31"),
            d("2024-04-01"),
            d("2024-04-02"),
            d("2024-04-03"),
        ]);
        assert_eq!(fetched, want);
        assert_eq!(n.skipped, 31 + 20 + 30, "loaded days not fetched again");
        // Overlapping and touching spans count once; an open day (not in
        // `done`) is fetched again.
        let done = days(&[
            ("2025-01-01", "2025-01-05"),
            ("2025-01-03", "2025-01-08"),
            ("2025-01-09", "2025-01-09"),
        ]);
        let n = need(&done, None, None, d("2025-01-10"), 0, 1)
            .unwrap()
            .unwrap();
        assert_eq!(n.slices, days(&[("2025-01-10", "2025-01-10")]));
    }

    #[test]
    fn multi_day_slices_are_kept_only_where_they_hold_a_day_to_fetch() {
        let done = days(&[("2025-01-03", "2025-01-12")]);
        let n = need(&done, Some(d("2025-01-01")), None, d("2025-01-20"), 0, 5)
            .unwrap()
            .unwrap();
        // From the 1st: [1-5] holds the 1st and 2nd, [6-10] nothing, [11-15]
        // the 13th to 15th, [16-20] all.
        assert_eq!(
            n.slices,
            days(&[
                ("2025-01-01", "2025-01-05"),
                ("2025-01-11", "2025-01-15"),
                ("2025-01-16", "2025-01-20")
            ])
        );
        assert_eq!(n.skipped, 5);
    }
}
