//! Scraps, a scrap's runs and its slices as the cells of a text table: one
//! formatter for `atlas scrap list | show` (English headers, as scripts
//! read them) and the manager's Scraps and Details (Portuguese headers).
//! Array lengths tie each row to its headers.

use crate::ledger::{RunInfo, ScrapStatus, SliceInfo};
use crate::report::{self, thousands};

/// `scrap show`'s run columns.
pub const RUN_HEADERS: [&str; 9] = [
    "run",
    "started",
    "finished",
    "status",
    "records",
    "inserted",
    "duplicates",
    "done/failed",
    "worker",
];

/// The same run columns in the manager's words.
pub const RUN_HEADERS_PT: [&str; 9] = [
    "execução",
    "início",
    "fim",
    "status",
    "registros",
    "inseridos",
    "duplicados",
    "fatias ok/falha",
    "processo",
];

/// `scrap show`'s slice columns.
pub const SLICE_HEADERS: [&str; 11] = [
    "slice",
    "status",
    "pages",
    "records",
    "inserted",
    "duplicates",
    "out_of_period",
    "undated",
    "attempts",
    "worker",
    "last_error",
];

/// The same slice columns in the manager's words.
pub const SLICE_HEADERS_PT: [&str; 11] = [
    "fatia",
    "status",
    "páginas",
    "registros",
    "inseridos",
    "duplicados",
    "fora do período",
    "sem data",
    "tentativas",
    "processo",
    "último erro",
];

/// A count for a cell: `1,234` (negatives, which cannot happen, as 0).
fn count(n: i64) -> String {
    thousands(n.max(0) as u64)
}

/// `scrap list`'s columns.
pub const SCRAP_HEADERS: [&str; 8] = [
    "id", "client", "route", "period", "status", "slices", "inserted", "last_run",
];

/// The manager's Scraps columns: the slices failed too, and the duplicates.
pub const SCRAP_HEADERS_PT: [&str; 9] = [
    "id",
    "cliente",
    "rota",
    "período",
    "status",
    "fatias\nok/falha/total",
    "inseridos",
    "duplicados",
    "última execução",
];

/// Which list of scraps a row is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `scrap list`: [`SCRAP_HEADERS`], the last run to the second.
    Cli,
    /// The manager's Scraps: [`SCRAP_HEADERS_PT`], the last run to the minute.
    Manager,
}

/// One scrap's cells, in the order of its listing's headers.
pub fn scrap_cells(s: &ScrapStatus, listing: Listing) -> Vec<String> {
    let (slices, when) = match listing {
        Listing::Cli => (format!("{}/{}", s.done, s.slices), "%Y-%m-%d %H:%M:%S"),
        Listing::Manager => (
            format!("{}/{}/{}", s.done, s.failed, s.slices),
            "%Y-%m-%d %H:%M",
        ),
    };
    let mut cells = vec![
        s.scrap.id.to_string(),
        s.scrap.client.clone(),
        s.scrap.route.clone(),
        format!("{} até {}", s.scrap.from, s.scrap.to),
        s.status.to_string(),
        slices,
        count(s.inserted),
    ];
    if listing == Listing::Manager {
        cells.push(count(s.duplicates));
    }
    cells.push(
        s.last_run
            .as_ref()
            .map(|(t, st)| format!("{} ({st})", t.format(when)))
            .unwrap_or_else(|| "-".into()),
    );
    cells
}

/// One run's cells, in [`RUN_HEADERS`]' order.
pub fn run_cells(r: &RunInfo) -> [String; 9] {
    [
        r.id.to_string(),
        r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        r.finished_at
            .map(|t| t.format("%H:%M:%S").to_string())
            .unwrap_or_else(|| "-".into()),
        r.status.to_string(),
        count(r.records),
        count(r.inserted),
        count(r.duplicates),
        format!("{}/{}", r.slices_done, r.slices_failed),
        r.worker.clone(),
    ]
}

/// One slice's cells, in [`SLICE_HEADERS`]' order; the last error is cut
/// to one line of 120 characters.
pub fn slice_cells(x: &SliceInfo) -> [String; 11] {
    [
        if x.from == x.to {
            x.from.to_string()
        } else {
            format!("{} até {}", x.from, x.to)
        },
        x.status.to_string(),
        x.pages.to_string(),
        count(x.records),
        count(x.inserted),
        count(x.duplicates),
        x.out_of_period.to_string(),
        x.undated.to_string(),
        x.attempts.to_string(),
        x.worker.clone().unwrap_or_else(|| "-".into()),
        x.last_error
            .as_ref()
            .map(|e| report::snippet(e, 120, "..."))
            .unwrap_or_default(),
    ]
}

/// `rows` as [`report::table`] lines under `headers`.
pub fn table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.to_vec()).collect();
    report::table(headers, &rows)
}
