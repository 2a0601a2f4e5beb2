//! Dates at the edges: slice bounds formatted for the API's date params, and
//! the reference date found in a record (configured pointer or detection).
//!
//! A timestamp is dated in its own offset (`23:30-03:00` stays on its local
//! day) unless the route sets `timezone`; epoch numbers need a zone and use
//! the route's, or UTC.

use crate::json::Json;
use chrono::format::{Item, StrftimeItems};
use chrono::{
    DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use serde::Deserialize;
use std::fmt::Write as _;

/// How the last day of a slice is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndStyle {
    /// The last day itself (at 00:00 with a datetime format).
    Inclusive,
    /// The day after the last day, for APIs that compare `< end`.
    Exclusive,
    /// The last instant of the last day (needs a format with a time).
    EndOfDay,
}

/// A route's time zone: a fixed offset or an IANA name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl Zone {
    pub fn parse(s: &str) -> Result<Zone, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" {
            return Ok(Zone::Fixed(Utc.fix()));
        }
        if t.starts_with('+') || t.starts_with('-') {
            let probe = format!("2000-01-01T00:00:00{t}");
            return DateTime::parse_from_str(&probe, "%Y-%m-%dT%H:%M:%S%:z")
                .or_else(|_| DateTime::parse_from_str(&probe, "%Y-%m-%dT%H:%M:%S%z"))
                .map(|d| Zone::Fixed(*d.offset()))
                .map_err(|_| format!("'{s}' is not an offset like -03:00"));
        }
        t.parse::<chrono_tz::Tz>()
            .map(Zone::Named)
            .map_err(|_| format!("'{s}' is not a time zone (use an IANA name such as America/Sao_Paulo, or an offset like -03:00)"))
    }

    /// The offset in force at noon of `day` (noon avoids DST gaps at midnight).
    pub fn offset_on(&self, day: NaiveDate) -> FixedOffset {
        match self {
            Zone::Fixed(o) => *o,
            Zone::Named(tz) => tz
                .offset_from_utc_datetime(
                    &day.and_time(NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default()),
                )
                .fix(),
        }
    }

    /// The local date of an instant in this zone.
    pub fn date_of(&self, t: DateTime<FixedOffset>) -> NaiveDate {
        match self {
            Zone::Fixed(o) => t.with_timezone(o).date_naive(),
            Zone::Named(tz) => t.with_timezone(tz).date_naive(),
        }
    }

    /// Today in this zone.
    pub fn today(&self) -> NaiveDate {
        self.date_of(Utc::now().fixed_offset())
    }
}

/// A calendar day written `YYYY-MM-DD` (flags, `start_date`); `None` when
/// the text is not a real day in that form.
pub fn parse_day(s: &str) -> Option<NaiveDate> {
    // Every record of a date-only API comes through here: its one strict
    // form is read directly (chrono would walk the format text each time);
    // chrono's reading of that form is the same, and it keeps all others.
    if let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = *s.as_bytes() {
        let digits = [y0, y1, y2, y3, m0, m1, d0, d1];
        if digits.iter().all(u8::is_ascii_digit) {
            let n = |ds: &[u8]| ds.iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
            let year = i32::try_from(n(&digits[..4])).ok()?;
            return NaiveDate::from_ymd_opt(year, n(&digits[4..6]), n(&digits[6..]));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Today in a route's zone, or in this machine's when the route sets none.
pub fn today_in(zone: Option<&Zone>) -> NaiveDate {
    zone.map_or_else(|| Local::now().date_naive(), Zone::today)
}

/// The first day that is still open at `now`: it has not ended in the
/// route's zone, or ended less than `settle_hours` ago (an API that posts
/// late). A day before it is complete. Day D is complete once D+1 has
/// begun `settle_hours` ago, so the first open day is the date of
/// `now - settle_hours`.
pub fn first_open_day_at(zone: Option<&Zone>, settle_hours: u32, now: DateTime<Utc>) -> NaiveDate {
    let then = now - chrono::Duration::hours(i64::from(settle_hours));
    match zone {
        Some(z) => z.date_of(then.fixed_offset()),
        None => then.with_timezone(&Local).date_naive(),
    }
}

/// `first_open_day_at` now.
pub fn first_open_day(zone: Option<&Zone>, settle_hours: u32) -> NaiveDate {
    first_open_day_at(zone, settle_hours, Utc::now())
}

/// The name of a route's zone for messages (`America/Sao_Paulo`, `-03:00`),
/// or `local` for the machine's.
pub fn zone_name(zone: Option<&Zone>) -> String {
    match zone {
        Some(Zone::Named(tz)) => tz.name().to_string(),
        Some(Zone::Fixed(o)) => o.to_string(),
        None => "local time".to_string(),
    }
}

fn render(fmt: &str, t: DateTime<FixedOffset>) -> Result<String, String> {
    let items: Vec<Item> = StrftimeItems::new(fmt).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!("'{fmt}' is not a valid chrono format"));
    }
    let mut out = String::new();
    write!(out, "{}", t.format_with_items(items.iter()))
        .map_err(|_| format!("'{fmt}' cannot format a date"))?;
    Ok(out)
}

fn at(
    day: NaiveDate,
    h: u32,
    m: u32,
    s: u32,
    nano: u32,
    zone: Option<&Zone>,
) -> DateTime<FixedOffset> {
    let off = zone.map(|z| z.offset_on(day)).unwrap_or_else(|| Utc.fix());
    let naive = day.and_time(NaiveTime::from_hms_nano_opt(h, m, s, nano).unwrap_or_default());
    // A fixed offset maps every local time to exactly one instant.
    off.from_local_datetime(&naive)
        .single()
        .unwrap_or_else(|| off.from_utc_datetime(&naive))
}

/// Checks a date-param format at config load, so a run never fails on it.
pub fn check_format(fmt: &str, style: EndStyle) -> Result<(), String> {
    let d1 = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default();
    let d2 = NaiveDate::from_ymd_opt(2025, 1, 2).unwrap_or_default();
    let a = render(fmt, at(d1, 0, 0, 0, 0, None))?;
    if a == render(fmt, at(d2, 0, 0, 0, 0, None))? {
        return Err(format!("'{fmt}' does not tell one day from the next"));
    }
    if style == EndStyle::EndOfDay && a == render(fmt, at(d1, 23, 59, 59, 999_999_999, None))? {
        return Err(format!(
            "end_style end_of_day needs a format with a time, and '{fmt}' has none"
        ));
    }
    Ok(())
}

/// The (start, end) param values for a slice `from..=to`.
pub fn bounds(
    from: NaiveDate,
    to: NaiveDate,
    fmt: &str,
    style: EndStyle,
    zone: Option<&Zone>,
) -> (String, String) {
    let end = match style {
        EndStyle::Inclusive => at(to, 0, 0, 0, 0, zone),
        EndStyle::Exclusive => at(to.succ_opt().unwrap_or(to), 0, 0, 0, 0, zone),
        EndStyle::EndOfDay => at(to, 23, 59, 59, 999_999_999, zone),
    };
    // check_format ran at load: rendering cannot fail here.
    let s = render(fmt, at(from, 0, 0, 0, 0, zone)).unwrap_or_default();
    let e = render(fmt, end).unwrap_or_default();
    (s, e)
}

/// Field names tried, in order, when a route sets no `date_field`.
pub const DATE_KEYS: &[&str] = &[
    "data",
    "data_pedido",
    "dataPedido",
    "data_emissao",
    "dataEmissao",
    "data_venda",
    "dataVenda",
    "data_criacao",
    "dataCriacao",
    "data_cadastro",
    "dataCadastro",
    "data_movimento",
    "date",
    "created_at",
    "createdAt",
    "created",
    "timestamp",
];

/// The record's reference date, or why none was found.
pub fn record_date(
    record: &Json<'_>,
    field: Option<&str>,
    zone: Option<&Zone>,
) -> Result<NaiveDate, String> {
    match field {
        Some(ptr) => match record.pointer(ptr) {
            None | Some(Json::Null) => Err(format!("no value at {ptr}")),
            Some(v) => value_date(v, zone)
                .ok_or_else(|| format!("value at {ptr} is not a date: {}", snippet(v))),
        },
        None => {
            if !matches!(record, Json::Obj(_)) {
                return Err("record is not an object".into());
            }
            for key in DATE_KEYS {
                if let Some(v) = record.get(key) {
                    if let Some(d) = value_date(v, zone) {
                        return Ok(d);
                    }
                }
            }
            Err(format!(
                "no date field found (tried {})",
                DATE_KEYS.join(", ")
            ))
        }
    }
}

fn snippet(v: &Json<'_>) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}...", &s[..s.floor_char_boundary(60)])
    } else {
        s
    }
}

/// A date from a JSON value: strings in the formats of SPEC §3, numbers as epoch.
pub fn value_date(v: &Json<'_>, zone: Option<&Zone>) -> Option<NaiveDate> {
    match v {
        Json::Str(s) => str_date(s.trim(), zone),
        Json::Num(n) => {
            let x = n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?;
            // Past 1e11 seconds is year 5138: such numbers are milliseconds.
            let t = if x.unsigned_abs() >= 100_000_000_000 {
                DateTime::from_timestamp_millis(x)?
            } else {
                DateTime::from_timestamp(x, 0)?
            };
            Some(
                zone.unwrap_or(&Zone::Fixed(Utc.fix()))
                    .date_of(t.fixed_offset()),
            )
        }
        _ => None,
    }
}

fn str_date(s: &str, zone: Option<&Zone>) -> Option<NaiveDate> {
    if s.len() == 10 {
        return parse_day(s).or_else(|| NaiveDate::parse_from_str(s, "%d/%m/%Y").ok());
    }
    if s.len() < 10 {
        return None;
    }
    let with_offset = DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%z"))
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f %z"));
    if let Ok(t) = with_offset {
        return Some(match zone {
            Some(z) => z.date_of(t),
            None => t.date_naive(),
        });
    }
    // Local timestamps (no offset) are already on their day.
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%d/%m/%Y %H:%M:%S",
        "%d/%m/%Y %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.date());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_open_until_it_ended_and_settled() {
        let z = Zone::parse("-03:00").unwrap();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        let d = |s: &str| parse_day(s).unwrap();
        // 02:00 UTC on the 8th is 23:00 on the 7th at -03:00: the 7th is open.
        assert_eq!(
            first_open_day_at(Some(&z), 0, at("2026-12-08T02:00:00Z")),
            d("2026-12-07")
        );
        assert_eq!(
            first_open_day_at(Some(&z), 0, at("2026-12-08T03:00:00Z")),
            d("2026-12-08")
        );
        // With 6 settle hours the 7th stays open until 06:00 of the 8th.
        assert_eq!(
            first_open_day_at(Some(&z), 6, at("2026-12-08T08:59:00Z")),
            d("2026-12-07")
        );
        assert_eq!(
            first_open_day_at(Some(&z), 6, at("2026-12-08T09:00:00Z")),
            d("2026-12-08")
        );
        assert_eq!(zone_name(Some(&z)), "-03:00");
        assert_eq!(
            zone_name(Some(&Zone::parse("America/Sao_Paulo").unwrap())),
            "America/Sao_Paulo"
        );
    }
    use crate::json::from_value;
    use serde_json::json;

    fn vd(v: serde_json::Value, zone: Option<&Zone>) -> Option<NaiveDate> {
        value_date(&from_value(&v), zone)
    }

    fn rd(v: serde_json::Value, field: Option<&str>) -> Result<NaiveDate, String> {
        record_date(&from_value(&v), field, None)
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn days_must_be_real() {
        assert_eq!(parse_day("2025-02-28"), Some(d("2025-02-28")));
        assert_eq!(parse_day("2025-02-30"), None);
        assert_eq!(parse_day("28/02/2025"), None);
        assert_eq!(parse_day("2025-02-28T00:00"), None);
        // The direct reading agrees with chrono's on every strict form.
        for t in [
            "2024-02-29",
            "2023-02-29",
            "0000-01-01",
            "9999-12-31",
            "2025-00-10",
            "2025-13-01",
            "2025-04-31",
            "2025-04-00",
            "2025-12-31",
        ] {
            assert_eq!(
                parse_day(t),
                NaiveDate::parse_from_str(t, "%Y-%m-%d").ok(),
                "{t}"
            );
        }
    }

    #[test]
    fn today_in_a_zone() {
        // 26 hours apart: one or two calendar days, whatever the time now.
        let ahead = today_in(Some(&Zone::parse("+14:00").unwrap()));
        let behind = today_in(Some(&Zone::parse("-12:00").unwrap()));
        assert!((1..=2).contains(&(ahead - behind).num_days()));
        // Without a zone, this machine's day: within those two.
        let local = today_in(None);
        assert!(behind <= local && local <= ahead);
    }

    #[test]
    fn plain_and_brazilian_dates() {
        assert_eq!(vd(json!("2025-01-31"), None), Some(d("2025-01-31")));
        assert_eq!(vd(json!("31/01/2025"), None), Some(d("2025-01-31")));
        assert_eq!(
            vd(json!("31/01/2025 23:59:59"), None),
            Some(d("2025-01-31"))
        );
        assert_eq!(vd(json!("2025-02-30"), None), None);
        assert_eq!(vd(json!("ontem"), None), None);
        assert_eq!(vd(json!(true), None), None);
    }

    #[test]
    fn timestamps_keep_their_own_local_day() {
        assert_eq!(
            vd(json!("2025-01-01T23:30:00-03:00"), None),
            Some(d("2025-01-01"))
        );
        assert_eq!(
            vd(json!("2025-01-01T23:30:00.123-0300"), None),
            Some(d("2025-01-01"))
        );
        assert_eq!(
            vd(json!("2025-01-02T00:00:00+05:30"), None),
            Some(d("2025-01-02"))
        );
        assert_eq!(
            vd(json!("2025-01-01T23:59:59.999Z"), None),
            Some(d("2025-01-01"))
        );
        assert_eq!(
            vd(json!("2025-01-01 10:00:00"), None),
            Some(d("2025-01-01"))
        );
        assert_eq!(
            vd(json!("2025-01-01T10:00:00.5"), None),
            Some(d("2025-01-01"))
        );
    }

    #[test]
    fn a_route_timezone_redates_timestamps() {
        let sp = Zone::parse("America/Sao_Paulo").unwrap();
        // 23:30 at -03:00 is 02:30 UTC next day; in UTC that is the 2nd.
        let utc = Zone::parse("UTC").unwrap();
        assert_eq!(
            vd(json!("2025-01-01T23:30:00-03:00"), Some(&utc)),
            Some(d("2025-01-02"))
        );
        assert_eq!(
            vd(json!("2025-01-02T01:00:00Z"), Some(&sp)),
            Some(d("2025-01-01"))
        );
        let fixed = Zone::parse("+05:30").unwrap();
        assert_eq!(
            vd(json!("2025-01-01T20:00:00Z"), Some(&fixed)),
            Some(d("2025-01-02"))
        );
        assert!(Zone::parse("Nowhere/City").is_err());
        assert!(Zone::parse("+99:99").is_err());
    }

    #[test]
    fn epoch_seconds_and_millis() {
        // 2025-01-01T00:00:00Z
        assert_eq!(vd(json!(1_735_689_600), None), Some(d("2025-01-01")));
        assert_eq!(
            vd(json!(1_735_689_600_000_i64), None),
            Some(d("2025-01-01"))
        );
        assert_eq!(
            vd(json!(1_735_775_999_999_i64), None),
            Some(d("2025-01-01"))
        );
        let sp = Zone::parse("-03:00").unwrap();
        assert_eq!(vd(json!(1_735_689_600), Some(&sp)), Some(d("2024-12-31")));
    }

    #[test]
    fn configured_pointer_and_detection() {
        let r = json!({"pedido": {"datas": {"emissao": "05/03/2025"}}, "data": "x"});
        assert_eq!(
            rd(r.clone(), Some("/pedido/datas/emissao")),
            Ok(d("2025-03-05"))
        );
        let e = rd(r.clone(), Some("/pedido/nada")).unwrap_err();
        assert!(e.contains("/pedido/nada"));
        let e = rd(r.clone(), Some("/data")).unwrap_err();
        assert!(e.contains("not a date"));
        // detection skips a `data` that is not a date and finds the next key
        let r = json!({"data": "n/a", "dataEmissao": "2025-03-05T10:00:00-03:00"});
        assert_eq!(rd(r.clone(), None), Ok(d("2025-03-05")));
        assert!(rd(json!({"valor": 1}).clone(), None).is_err());
        assert!(rd(json!([1]).clone(), None).is_err());
    }

    #[test]
    fn bounds_by_style() {
        let (a, b) = (d("2025-01-01"), d("2025-01-07"));
        assert_eq!(
            bounds(a, b, "%Y-%m-%d", EndStyle::Inclusive, None),
            ("2025-01-01".into(), "2025-01-07".into())
        );
        assert_eq!(
            bounds(a, b, "%d/%m/%Y", EndStyle::Exclusive, None),
            ("01/01/2025".into(), "08/01/2025".into())
        );
        assert_eq!(
            bounds(a, b, "%Y-%m-%dT%H:%M:%S", EndStyle::EndOfDay, None),
            ("2025-01-01T00:00:00".into(), "2025-01-07T23:59:59".into())
        );
        let sp = Zone::parse("America/Sao_Paulo").unwrap();
        assert_eq!(
            bounds(a, a, "%Y-%m-%dT%H:%M:%S%:z", EndStyle::EndOfDay, Some(&sp)),
            (
                "2025-01-01T00:00:00-03:00".into(),
                "2025-01-01T23:59:59-03:00".into()
            )
        );
    }

    #[test]
    fn formats_are_checked() {
        assert!(check_format("%Y-%m-%d", EndStyle::Inclusive).is_ok());
        assert!(check_format("%Q", EndStyle::Inclusive).is_err());
        assert!(check_format("%H:%M", EndStyle::Inclusive).is_err());
        assert!(check_format("%Y-%m-%d", EndStyle::EndOfDay).is_err());
        assert!(check_format("%Y-%m-%dT%H:%M:%S%z", EndStyle::EndOfDay).is_ok());
    }
}
