//! Slice ends folded into batch commits: which slices of a writer's flush
//! have their last rows in the batch being committed, so that commit can
//! record their ends (no transaction of their own: a fleet's one-day pair
//! used to pay one per slice).

use super::track::SliceTrack;
use super::Chunk;
use crate::db::EndRow;
use crate::ledger::SliceEnd;
use std::collections::HashMap;
use std::sync::Arc;

/// A writer's flush: each slice's rows not yet in a batch, and how many of
/// the flush's chunks hold it.
pub(super) struct Flush {
    left: HashMap<i64, (usize, usize)>,
}

impl Flush {
    pub(super) fn of(chunks: &[Chunk]) -> Flush {
        let mut left: HashMap<i64, (usize, usize)> = HashMap::new();
        for c in chunks {
            let e = left.entry(c.slice.claim.id).or_default();
            e.0 += c.rows.len();
            e.1 += 1;
        }
        Flush { left }
    }

    /// A batch with `rows` rows of each of `slices` is cut: the slices whose
    /// last rows of the flush it holds, each with its number of chunks here.
    pub(super) fn cut(&mut self, slices: &[(i64, usize)]) -> Vec<(i64, usize)> {
        let mut last = Vec::new();
        for (id, rows) in slices {
            if let Some(e) = self.left.get_mut(id) {
                e.0 = e.0.saturating_sub(*rows);
                if e.0 == 0 {
                    last.push((*id, e.1));
                }
            }
        }
        last
    }
}

/// The ends to record with a batch: of the slices whose last rows it holds
/// (`last`, with their chunks in the flush), those that end whole once these
/// chunks let go; `end_of` turns `Done` into `Open` where a day is open.
pub(super) fn ends(
    last: &[(Arc<SliceTrack>, usize)],
    end_of: impl Fn(&SliceTrack) -> SliceEnd,
) -> Vec<EndRow> {
    last.iter()
        .filter_map(|(t, here)| {
            let n = t.settled_with(*here)?;
            Some(EndRow {
                slice: t.claim.id,
                status: end_of(t).status().as_str(),
                pages: n.pages,
                records: n.records,
                out_of_period: n.out_of_period,
                undated: n.undated,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Claim;
    use chrono::NaiveDate;

    fn track(id: i64) -> Arc<SliceTrack> {
        let day = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        SliceTrack::new(Claim {
            id,
            from: day,
            to: day,
        })
    }

    #[test]
    fn a_slice_is_last_in_the_batch_that_takes_its_last_rows() {
        let mut f = Flush {
            left: HashMap::from([(1, (5, 2)), (2, (3, 1))]),
        };
        assert_eq!(f.cut(&[(1, 4), (2, 3)]), [(2, 1)]);
        assert_eq!(f.cut(&[(1, 1)]), [(1, 2)]);
        // A slice the flush does not know is never taken as ended.
        assert_eq!(f.cut(&[(9, 1)]), []);
    }

    #[test]
    fn only_a_slice_held_by_the_flush_alone_ends_with_the_batch() {
        let t = track(7);
        t.count_page(&crate::record::PageRows::default());
        let done = |_: &SliceTrack| SliceEnd::Done;
        // Its fetcher still holds it: not ended here.
        t.hold();
        assert!(ends(&[(Arc::clone(&t), 1)], done).is_empty());
        // The fetcher let go: the chunk here is all that holds it.
        assert!(t.let_go().is_none());
        let e = ends(&[(Arc::clone(&t), 1)], done);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].slice, e[0].status, e[0].pages), (7, "done", 1));
        let open = ends(&[(Arc::clone(&t), 1)], |_| SliceEnd::Open);
        assert_eq!(open[0].status, "open");
        // Released or failed: left to the ordinary path.
        t.release();
        assert!(ends(&[(Arc::clone(&t), 1)], done).is_empty());
        let f = track(8);
        f.fetch_failed("page 1: HTTP 500".into());
        assert!(ends(&[(f, 1)], done).is_empty());
    }
}
