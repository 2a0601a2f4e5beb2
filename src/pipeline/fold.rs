//! Slice ends folded into batch commits: which slices of a writer's flush
//! have their last rows in the batch being committed, so that commit can
//! record their ends (no transaction of their own: a fleet's one-day pair
//! used to pay one per slice).

use super::track::SliceTrack;
use super::Chunk;
use crate::db::EndRow;
use crate::ledger::SliceEnd;
use crate::record::Row;
use std::collections::HashMap;
use std::sync::Arc;

/// A writer's flush: each slice's rows not yet in a batch, how many of the
/// flush's chunks hold it, and its track.
pub(super) struct Flush {
    left: HashMap<i64, Left>,
}

struct Left {
    rows: usize,
    chunks: usize,
    track: Arc<SliceTrack>,
}

impl Flush {
    pub(super) fn of(chunks: &[Chunk]) -> Flush {
        let mut left: HashMap<i64, Left> = HashMap::new();
        for c in chunks {
            let e = left.entry(c.slice.claim.id).or_insert_with(|| Left {
                rows: 0,
                chunks: 0,
                track: Arc::clone(&c.slice),
            });
            e.rows += c.rows.len();
            e.chunks += 1;
        }
        Flush { left }
    }

    /// A batch of `rows`, each tagged with its slice's index in `slices`, is
    /// cut: the slices whose last rows of the flush it holds, each with its
    /// number of chunks here.
    pub(super) fn cut(
        &mut self,
        slices: &[i64],
        rows: &[(usize, &Row)],
    ) -> Vec<(Arc<SliceTrack>, usize)> {
        let mut n = vec![0usize; slices.len()];
        for (g, _) in rows {
            n[*g] += 1;
        }
        let mut last = Vec::new();
        for (id, rows) in slices.iter().zip(n) {
            if let Some(e) = self.left.get_mut(id) {
                e.rows = e.rows.saturating_sub(rows);
                if e.rows == 0 {
                    last.push((Arc::clone(&e.track), e.chunks));
                }
            }
        }
        last
    }

    /// The track of slice `id`, if the flush holds rows of it.
    pub(super) fn track(&self, id: i64) -> Option<&SliceTrack> {
        self.left.get(&id).map(|e| &*e.track)
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
        let (one, two) = (track(1), track(2));
        let mut f = Flush {
            left: HashMap::from([
                (
                    1,
                    Left {
                        rows: 5,
                        chunks: 2,
                        track: Arc::clone(&one),
                    },
                ),
                (
                    2,
                    Left {
                        rows: 3,
                        chunks: 1,
                        track: Arc::clone(&two),
                    },
                ),
            ]),
        };
        let row = Row {
            data_referencia: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
            payload: "{}".into(),
            hash: crate::record::Hash::of(b"x"),
        };
        let ids = |last: Vec<(Arc<SliceTrack>, usize)>| -> Vec<(i64, usize)> {
            last.iter().map(|(t, n)| (t.claim.id, *n)).collect()
        };
        let batch: Vec<(usize, &Row)> = [0, 0, 0, 0, 1, 1, 1].iter().map(|g| (*g, &row)).collect();
        assert_eq!(ids(f.cut(&[1, 2], &batch)), [(2, 1)]);
        assert_eq!(ids(f.cut(&[1], &[(0, &row)])), [(1, 2)]);
        // A slice the flush does not know is never taken as ended.
        assert!(f.cut(&[9], &[(0, &row)]).is_empty());
        assert!(f.track(9).is_none());
        assert_eq!(f.track(2).map(|t| t.claim.id), Some(2));
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
