//! How a (client, route) pair stands, for `atlas status` (pure): from its
//! last run and the days its slices cover, what is loaded without a gap,
//! how far behind yesterday that is, the gaps, the open days, and whether
//! the pair is well.
//!
//! Days come as islands: the ledger's done slices merged into runs of
//! consecutive days, and the same for done and open slices together
//! (`covered`), each sorted and disjoint (`ledger::pairs::islands`).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

/// A span of days, both ends included.
pub type Span = (NaiveDate, NaiveDate);

/// The pair's last run (on any machine).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastRun {
    pub id: i64,
    pub scrap_id: i64,
    /// When it ended, or began if it has not.
    pub at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The machine (the worker id's host).
    pub host: String,
    pub worker: String,
    /// How it ended (`atlas.runs.status`; a `running` run whose lease ran
    /// out is `aborted`: its process is gone).
    pub status: String,
    pub inserted: i64,
    pub slices_failed: i32,
    pub error: Option<String>,
    /// The atlas build that ran it (`null` before migration 007).
    pub version: Option<String>,
}

impl LastRun {
    /// It ended well (`done`), or is still running under a live lease.
    pub fn well(&self) -> bool {
        matches!(self.status.as_str(), "done" | "running")
    }
}

/// Why a pair is not well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// No run of the pair is recorded.
    NeverRun,
    /// Its last run did not end `done`.
    LastRunFailed,
    /// Nothing is loaded, or what is lags yesterday by more than allowed.
    Lagging,
}

impl Problem {
    /// In the tool's language, for the status line.
    pub fn words(self) -> &'static str {
        match self {
            Problem::NeverRun => "nunca executado",
            Problem::LastRunFailed => "falhou",
            Problem::Lagging => "atrasado",
        }
    }
}

/// How a pair stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// The end of the first run of done days (from the earliest one).
    pub loaded_until: Option<NaiveDate>,
    /// Yesterday in the route's time zone.
    pub yesterday: NaiveDate,
    /// Days from `loaded_until` to yesterday (0 when up to it); `None`
    /// when nothing is loaded.
    pub days_behind: Option<i64>,
    /// Days no done or open slice covers, between the first and last
    /// covered day.
    pub gaps: Vec<Span>,
    pub gap_days: i64,
    /// Days only open slices cover (loaded before they had ended).
    pub open: Vec<Span>,
    pub open_days: i64,
    /// Empty when the pair is well.
    pub problems: Vec<Problem>,
}

/// The pair's health from its last run, its done and covered islands, and
/// yesterday in its zone; lagging means more than `max_lag_days` behind.
pub fn assess(
    last: Option<&LastRun>,
    done: &[Span],
    covered: &[Span],
    yesterday: NaiveDate,
    max_lag_days: u32,
) -> Health {
    let loaded_until = done.first().map(|d| d.1);
    let days_behind = loaded_until.map(|u| (yesterday - u).num_days().max(0));
    let gaps: Vec<Span> = covered
        .windows(2)
        .filter_map(|w| Some((w[0].1.succ_opt()?, w[1].0.pred_opt()?)))
        .filter(|(f, t)| f <= t)
        .collect();
    let open: Vec<Span> = covered.iter().flat_map(|c| minus(*c, done)).collect();
    let mut problems = Vec::new();
    match last {
        None => problems.push(Problem::NeverRun),
        Some(r) if !r.well() => problems.push(Problem::LastRunFailed),
        Some(_) => {}
    }
    if last.is_some() && days_behind.is_none_or(|d| d > i64::from(max_lag_days)) {
        problems.push(Problem::Lagging);
    }
    Health {
        loaded_until,
        yesterday,
        days_behind,
        gap_days: days(&gaps),
        gaps,
        open_days: days(&open),
        open,
        problems,
    }
}

/// Days in the spans.
fn days(spans: &[Span]) -> i64 {
    spans.iter().map(|(f, t)| (*t - *f).num_days() + 1).sum()
}

/// The days of `span` that none of `holes` (sorted, disjoint) covers.
fn minus(span: Span, holes: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut from = Some(span.0);
    for &(hf, ht) in holes {
        let Some(f) = from else { break };
        if ht < f || hf > span.1 {
            continue;
        }
        if hf > f {
            out.push((f, hf.pred_opt().unwrap_or(hf).min(span.1)));
        }
        from = ht.succ_opt().filter(|n| *n <= span.1);
    }
    if let Some(f) = from {
        out.push((f, span.1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn span(a: &str, b: &str) -> Span {
        (d(a), d(b))
    }

    fn run(status: &str) -> LastRun {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        LastRun {
            id: 1,
            scrap_id: 1,
            at: t,
            started_at: t,
            finished_at: Some(t),
            host: "etl-01".into(),
            worker: "etl-01:x".into(),
            status: status.into(),
            inserted: 10,
            slices_failed: 0,
            error: None,
            version: None,
        }
    }

    #[test]
    fn a_pair_loaded_up_to_yesterday_after_a_good_run_is_well() {
        let done = [span("2025-03-01", "2025-03-09")];
        let h = assess(Some(&run("done")), &done, &done, d("2025-03-09"), 1);
        assert_eq!(h.loaded_until, Some(d("2025-03-09")));
        assert_eq!(h.days_behind, Some(0));
        assert!(h.problems.is_empty());
        assert!(h.gaps.is_empty() && h.open.is_empty());
        // One day behind is allowed by default; two are not.
        let h = assess(Some(&run("done")), &done, &done, d("2025-03-10"), 1);
        assert_eq!((h.days_behind, h.problems.clone()), (Some(1), vec![]));
        let h = assess(Some(&run("done")), &done, &done, d("2025-03-11"), 1);
        assert_eq!(h.problems, vec![Problem::Lagging]);
        // Loaded past yesterday (a later --until) is not negative.
        let h = assess(Some(&run("done")), &done, &done, d("2025-03-05"), 0);
        assert_eq!(h.days_behind, Some(0));
    }

    #[test]
    fn a_failed_or_lost_last_run_and_a_never_run_pair_are_problems() {
        let done = [span("2025-03-01", "2025-03-09")];
        for status in ["failed", "aborted", "interrupted"] {
            let h = assess(Some(&run(status)), &done, &done, d("2025-03-09"), 1);
            assert_eq!(h.problems, vec![Problem::LastRunFailed], "{status}");
        }
        let h = assess(Some(&run("running")), &done, &done, d("2025-03-09"), 1);
        assert!(h.problems.is_empty());
        let h = assess(None, &[], &[], d("2025-03-09"), 1);
        assert_eq!(h.problems, vec![Problem::NeverRun]);
        assert_eq!((h.loaded_until, h.days_behind), (None, None));
        // Runs but nothing loaded: lagging without a number.
        let h = assess(Some(&run("failed")), &[], &[], d("2025-03-09"), 1);
        assert_eq!(h.problems, vec![Problem::LastRunFailed, Problem::Lagging]);
    }

    #[test]
    fn gaps_are_between_covered_days_and_open_days_are_covered_but_not_done() {
        // Done 1-3 and 6-8, open 9-10 (today's load), nothing on 4-5.
        let done = [
            span("2025-03-01", "2025-03-03"),
            span("2025-03-06", "2025-03-08"),
        ];
        let covered = [
            span("2025-03-01", "2025-03-03"),
            span("2025-03-06", "2025-03-10"),
        ];
        let h = assess(Some(&run("done")), &done, &covered, d("2025-03-09"), 1);
        assert_eq!(h.loaded_until, Some(d("2025-03-03")));
        assert_eq!(h.days_behind, Some(6));
        assert_eq!(h.gaps, vec![span("2025-03-04", "2025-03-05")]);
        assert_eq!(h.gap_days, 2);
        assert_eq!(h.open, vec![span("2025-03-09", "2025-03-10")]);
        assert_eq!(h.open_days, 2);
        assert_eq!(h.problems, vec![Problem::Lagging]);
    }

    #[test]
    fn open_days_are_what_done_islands_leave_of_a_covered_one() {
        let c = span("2025-03-01", "2025-03-10");
        assert_eq!(minus(c, &[]), vec![c]);
        assert_eq!(minus(c, &[c]), vec![]);
        assert_eq!(
            minus(
                c,
                &[
                    span("2025-03-02", "2025-03-03"),
                    span("2025-03-07", "2025-03-10")
                ]
            ),
            vec![
                span("2025-03-01", "2025-03-01"),
                span("2025-03-04", "2025-03-06")
            ]
        );
        assert_eq!(
            minus(c, &[span("2025-02-01", "2025-03-04")]),
            vec![span("2025-03-05", "2025-03-10")]
        );
        assert_eq!(minus(c, &[span("2025-04-01", "2025-04-02")]), vec![c]);
    }
}
