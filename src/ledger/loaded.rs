//! The days a pair has loaded, read without its whole history: the span
//! its `atlas.sync_pairs` row knows loaded (`loaded_from`..`loaded_to`,
//! migration `008_pair_loaded.sql`) and the slices of the scraps reaching
//! outside it.
//!
//! A done slice stays done and scraps are never deleted, so a span whose
//! every day some done slice covered stays true: the slices inside it say
//! nothing more. Without it, deciding a pair and closing its run read every
//! slice of every night the pair ever ran (a fleet of 2,000 pairs with 300
//! nights behind it went from 700 to 295 slices/s).

use chrono::NaiveDate;

/// The pair's days (client and route: SQL expressions, `$1` or `w.client`)
/// as rows `(slice_from, slice_to, status)`: the slices of its scraps
/// reaching past or before its known span (all of them when it has none),
/// and the span itself as one `done` row. Each side is one index range
/// (`scraps_pair_to`, `scraps_pair_from`).
#[macro_export]
macro_rules! pair_days_sql {
    ($client:literal, $route:literal) => {
        concat!(
            "SELECT d.slice_from, d.slice_to, d.status FROM atlas.slices d
             WHERE d.scrap_id IN (
                 SELECT o.id FROM atlas.scraps o
                 WHERE o.client = ",
            $client,
            " AND o.route = ",
            $route,
            "
                   AND o.period_to > coalesce((SELECT k.loaded_to FROM atlas.sync_pairs k
                                               WHERE k.client = ",
            $client,
            " AND k.route = ",
            $route,
            "),
                                              '-infinity')
                 UNION ALL
                 SELECT o.id FROM atlas.scraps o
                 WHERE o.client = ",
            $client,
            " AND o.route = ",
            $route,
            "
                   AND o.period_from < (SELECT k.loaded_from FROM atlas.sync_pairs k
                                        WHERE k.client = ",
            $client,
            " AND k.route = ",
            $route,
            "))
             UNION ALL
             SELECT k.loaded_from, k.loaded_to, 'done' FROM atlas.sync_pairs k
             WHERE k.client = ",
            $client,
            " AND k.route = ",
            $route,
            " AND k.loaded_from IS NOT NULL"
        )
    };
}

/// The span a sync records as known loaded from the done spans it read
/// (`done`, in any order): the longest run of consecutive loaded days, the
/// latest of equals. It holds the span read, if any (that span is one of
/// `done`), so what is recorded never shrinks.
pub fn known_span(done: &[(NaiveDate, NaiveDate)]) -> Option<(NaiveDate, NaiveDate)> {
    crate::coverage::merged(done)
        .into_iter()
        .max_by_key(|(a, b)| ((*b - *a).num_days(), *b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_longest_run_of_loaded_days_is_kept() {
        let done = [
            (d("2025-01-01"), d("2025-01-02")),
            (d("2025-01-10"), d("2025-01-10")),
            (d("2025-01-11"), d("2025-01-20")),
            (d("2025-01-05"), d("2025-01-06")),
        ];
        assert_eq!(known_span(&done), Some((d("2025-01-10"), d("2025-01-20"))));
        assert_eq!(known_span(&[]), None);
        // Equals: the latest, where the next nights add their days.
        let two = [
            (d("2025-01-01"), d("2025-01-02")),
            (d("2025-01-05"), d("2025-01-06")),
        ];
        assert_eq!(known_span(&two), Some((d("2025-01-05"), d("2025-01-06"))));
    }

    #[test]
    fn the_span_read_is_never_shrunk() {
        // The span known (Jan 1-20) and a later island: the span stays.
        let done = [
            (d("2025-01-01"), d("2025-01-20")),
            (d("2025-01-25"), d("2025-01-26")),
        ];
        assert_eq!(known_span(&done), Some((d("2025-01-01"), d("2025-01-20"))));
        // A new night touching it extends it.
        let next = [
            (d("2025-01-01"), d("2025-01-20")),
            (d("2025-01-21"), d("2025-01-21")),
        ];
        assert_eq!(known_span(&next), Some((d("2025-01-01"), d("2025-01-21"))));
    }
}
