//! The fleet's report (`sync --all`), built as its pairs end: each pair's
//! `--json` object is kept as its text, its row of the table, its share of
//! the totals and (with a metrics file) its figures, so that a fleet of
//! thousands of pairs holds no tree of their objects.

use super::{table, thousands, Style};
use crate::metrics::PairRun;
use serde_json::{json, Value};
use std::time::Duration;

/// Pairs with a problem named in a notification's line before "e mais N".
const PAIRS_NAMED: usize = 5;

/// What the fleet tells once every pair has ended.
#[derive(Default)]
pub struct FleetReport {
    /// Each pair's `--json` object, as text, in config order.
    objects: Vec<String>,
    rows: Vec<Vec<String>>,
    totals: Totals,
    /// "client / route (status)" of the pairs whose exit is not 0.
    problems: Vec<String>,
    /// The pairs' figures for the metrics file, when one is written.
    pub runs: Option<Vec<PairRun>>,
}

#[derive(Default)]
struct Totals {
    pairs: u64,
    ok: u64,
    records_fetched: i64,
    inserted: i64,
    duplicates: i64,
    slices_done: i64,
    slices_failed: i64,
}

impl FleetReport {
    /// A report that also keeps each pair's figures for the metrics file.
    pub fn with_metrics(metrics: bool) -> FleetReport {
        FleetReport {
            runs: metrics.then(Vec::new),
            ..FleetReport::default()
        }
    }

    /// A pair's object, ended at `ended` (Unix seconds).
    pub fn push(&mut self, p: &Value, ended: f64) {
        let n = |k: &str| p[k].as_i64().unwrap_or(0);
        let t = &mut self.totals;
        t.pairs += 1;
        if p["exit_code"] == 0 {
            t.ok += 1;
        } else {
            self.problems.push(format!(
                "{} / {} ({})",
                p["client"].as_str().unwrap_or("?"),
                p["route"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or("?")
            ));
        }
        t.records_fetched += n("records_fetched");
        t.inserted += n("inserted");
        t.duplicates += n("duplicates");
        t.slices_done += n("slices_done");
        t.slices_failed += n("slices_failed");
        let text = |v: &Value| match v {
            Value::Null => "-".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let period = match (p["from"].as_str(), p["to"].as_str()) {
            (Some(f), Some(t)) => format!("{f} a {t}"),
            _ => "-".into(),
        };
        self.rows.push(vec![
            text(&p["client"]),
            text(&p["route"]),
            period,
            thousands(n("inserted").max(0) as u64),
            thousands(n("duplicates").max(0) as u64),
            thousands(n("slices_failed").max(0) as u64),
            text(&p["status"]),
        ]);
        if let Some(runs) = &mut self.runs {
            runs.extend(PairRun::from_summary(p, ended));
        }
        self.objects.push(p.to_string());
    }

    /// The `totals` object.
    pub fn totals(&self, elapsed: Duration) -> Value {
        let t = &self.totals;
        json!({
            "pairs": t.pairs,
            "pairs_ok": t.ok,
            "pairs_failed": t.pairs - t.ok,
            "records_fetched": t.records_fetched,
            "inserted": t.inserted,
            "duplicates": t.duplicates,
            "slices_done": t.slices_done,
            "slices_failed": t.slices_failed,
            "elapsed_secs": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        })
    }

    /// The whole `--json` object, as text: `pairs`, `totals`, `exit_code`,
    /// `version`.
    pub fn json(&self, exit_code: u8, elapsed: Duration) -> String {
        format!(
            "{{\"pairs\":[{}],\"totals\":{},\"exit_code\":{exit_code},\"version\":{}}}",
            self.objects.join(","),
            self.totals(elapsed),
            Value::from(crate::version::version())
        )
    }

    /// The text report: one table row per pair, then the totals.
    pub fn render(&self, style: Style, elapsed: Duration) -> String {
        let t = &self.totals;
        let mut out = table(
            &[
                "cliente",
                "rota",
                "período",
                "inseridos",
                "duplicados",
                "fatias com falha",
                "status",
            ],
            &self.rows,
        );
        out.push_str(&style.line(
            "📥",
            &format!(
                "Total: {} pares ({} ok, {} com problema) | inseridos {} | duplicados {} | fatias com falha {} | {}s\n",
                t.pairs,
                t.ok,
                t.pairs - t.ok,
                thousands(t.inserted.max(0) as u64),
                thousands(t.duplicates.max(0) as u64),
                thousands(t.slices_failed.max(0) as u64),
                (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            ),
        ));
        out
    }

    /// The notification's one line for the fleet (`alert`).
    pub fn line(&self, host: &str, code: u8) -> String {
        fleet_line(
            host,
            code,
            self.totals.pairs,
            &self.problems,
            self.totals.inserted,
        )
    }
}

/// A fleet's notification line: how it ended, where, and the pairs with a
/// problem (the first `PAIRS_NAMED`, then how many more).
pub fn fleet_line(host: &str, code: u8, pairs: u64, problems: &[String], inserted: i64) -> String {
    let mark = if code == 0 { "✅" } else { "❌" };
    let mut named = problems
        .iter()
        .take(PAIRS_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if problems.len() > PAIRS_NAMED {
        named.push_str(&format!(" e mais {}", problems.len() - PAIRS_NAMED));
    }
    let problems = if problems.is_empty() {
        "todos ok".to_string()
    } else {
        format!("{} com problema: {named}", problems.len())
    };
    format!(
        "{mark} atlas sync --all em {host}: {pairs} par(es), {problems} | inseridos {} | exit {code}",
        thousands(inserted.max(0) as u64)
    )
}

/// `🧩 pares 3/12 | 📄 Páginas 120 | …`: the fleet's progress line, pairs
/// finished of all, then the figures of every run.
pub fn progress_line(
    style: Style,
    (finished, pairs): (usize, usize),
    pages: u64,
    records: u64,
    elapsed: Duration,
) -> String {
    style.line(
        "🧩",
        &format!(
            "pares {finished}/{pairs} | {}",
            style.fleet_progress(pages, records, elapsed)
        ),
    )
}

/// `pares 3/12: client / route`: the third pair's turn begins.
pub fn pair_begins((begun, pairs): (usize, usize), client: &str, route: &str) -> String {
    format!("pares {begun}/{pairs}: {client} / {route}")
}

/// A pair that could not start, and why.
pub fn not_started_line(client: &str, route: &str, why: &str) -> String {
    format!("Par {client} / {route} não iniciado: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_built_pair_by_pair() {
        let mut r = FleetReport::with_metrics(true);
        for (i, exit) in [(0, 0), (1, 1), (2, 0)] {
            r.push(
                &json!({"client": format!("c{i}"), "route": "r", "status": if exit == 0 {"done"} else {"failed"},
                        "exit_code": exit, "inserted": 10, "duplicates": 1, "slices_done": 2,
                        "slices_failed": exit, "records_fetched": 11, "from": "2025-01-01", "to": "2025-01-02"}),
                1.0,
            );
        }
        let t = r.totals(Duration::from_millis(1500));
        assert_eq!(t["pairs"], 3);
        assert_eq!(t["pairs_failed"], 1);
        assert_eq!(t["inserted"], 30);
        let j: Value = serde_json::from_str(&r.json(1, Duration::from_secs(1))).unwrap();
        assert_eq!(j["pairs"].as_array().map(Vec::len), Some(3));
        assert_eq!(j["pairs"][1]["client"], "c1");
        assert_eq!(j["exit_code"], 1);
        assert_eq!(r.runs.as_ref().map(Vec::len), Some(3));
        let text = r.render(Style { plain: true }, Duration::from_secs(2));
        assert!(
            text.contains("c1") && text.contains("2025-01-01 a 2025-01-02"),
            "{text}"
        );
        assert!(
            text.contains("Total: 3 pares (2 ok, 1 com problema) | inseridos 30"),
            "{text}"
        );
        assert_eq!(
            progress_line(
                Style { plain: true },
                (2, 3),
                120,
                6000,
                Duration::from_secs(4)
            ),
            "pares 2/3 | Páginas 120 | 4s | 6,000 registros | 1,500.0 reg/s"
        );
        assert_eq!(pair_begins((1, 3), "c", "r"), "pares 1/3: c / r");
        assert_eq!(
            not_started_line("c", "r", "no secret"),
            "Par c / r não iniciado: no secret"
        );
        assert_eq!(
            r.line("h", 1),
            "❌ atlas sync --all em h: 3 par(es), 1 com problema: c1 / r (failed) | inseridos 30 | exit 1"
        );
    }
}
