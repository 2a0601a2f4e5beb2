//! Request ranges: reading the start/end parameters and turning them into a span of whole
//! days, by the configured end style.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use crate::cli::cli_enum;

cli_enum!(EndStyle { Inclusive = "inclusive", Exclusive = "exclusive", EndOfDay = "end_of_day" });

/// A resolved request range: `days` consecutive days starting at `first`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub first: NaiveDate,
    pub days: u64,
}

impl Span {
    /// Records in the span at `per_day` records a day.
    pub fn total(&self, per_day: u64) -> u64 {
        self.days.saturating_mul(per_day)
    }
}

/// Date, then naive datetime, then datetime with offset (its naive local time).
pub fn parse_param(raw: &str, fmt: &str) -> Option<NaiveDateTime> {
    if let Ok(d) = NaiveDate::parse_from_str(raw, fmt) {
        return Some(d.and_time(NaiveTime::MIN));
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(raw, fmt) {
        return Some(dt);
    }
    DateTime::parse_from_str(raw, fmt)
        .ok()
        .map(|dt| dt.naive_local())
}

pub fn resolve_range(
    start: NaiveDateTime,
    end: NaiveDateTime,
    style: EndStyle,
    neighbours: bool,
) -> Result<Span, String> {
    if end < start {
        return Err("data final anterior à data inicial".into());
    }
    let out_of_range = || "data fora do intervalo suportado".to_string();
    let mut first = start.date();
    let mut last = match style {
        EndStyle::Inclusive | EndStyle::EndOfDay => end.date(),
        // The end names the day after the last one; end == start is an empty range.
        EndStyle::Exclusive => end.date().pred_opt().ok_or_else(out_of_range)?,
    };
    if neighbours {
        first = first.pred_opt().ok_or_else(out_of_range)?;
        last = last.succ_opt().ok_or_else(out_of_range)?;
    }
    let days = ((last - first).num_days() + 1).max(0) as u64;
    Ok(Span { first, days })
}

#[cfg(test)]
pub fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: &str, end: &str, fmt: &str, style: EndStyle) -> Result<Span, String> {
        let start = parse_param(start, fmt).ok_or("start")?;
        let end = parse_param(end, fmt).ok_or("end")?;
        resolve_range(start, end, style, false)
    }

    #[test]
    fn end_styles() {
        let jan = |days| Span {
            first: date("2025-01-01"),
            days,
        };
        let ymd = "%Y-%m-%d";
        assert_eq!(
            span("2025-01-01", "2025-01-31", ymd, EndStyle::Inclusive),
            Ok(jan(31))
        );
        assert_eq!(
            span("2025-01-01", "2025-02-01", ymd, EndStyle::Exclusive),
            Ok(jan(31))
        );
        assert_eq!(
            span("2025-01-01", "2025-01-01", ymd, EndStyle::Exclusive),
            Ok(jan(0))
        );
        let dt = "%Y-%m-%dT%H:%M:%S";
        let eod = span(
            "2025-01-01T00:00:00",
            "2025-01-31T23:59:59",
            dt,
            EndStyle::EndOfDay,
        );
        assert_eq!(eod, Ok(jan(31)));
        let tz = "%Y-%m-%dT%H:%M:%S%:z";
        let eod = span(
            "2025-01-01T00:00:00-03:00",
            "2025-01-31T23:59:59-03:00",
            tz,
            EndStyle::EndOfDay,
        );
        assert_eq!(eod, Ok(jan(31)));
        let br = "%d/%m/%Y";
        assert_eq!(
            span("01/01/2025", "31/01/2025", br, EndStyle::Inclusive),
            Ok(jan(31))
        );
        assert!(span("2025-01-02", "2025-01-01", ymd, EndStyle::Inclusive).is_err());
        assert!(parse_param("2025-13-01", ymd).is_none());
        assert!(parse_param("", ymd).is_none());
        let wide = resolve_range(
            date("2025-01-01").and_time(NaiveTime::MIN),
            date("2025-01-31").and_time(NaiveTime::MIN),
            EndStyle::Inclusive,
            true,
        );
        let wide_jan = Span {
            first: date("2024-12-31"),
            days: 33,
        };
        assert_eq!(wide, Ok(wide_jan));
    }
}
