//! What an answer's headers ask of the client, read totally: `Retry-After`
//! and the rate-limit headers never panic whatever bytes they hold. A value
//! out of range is clamped (a huge wait becomes `FAR`, a date in the past
//! no wait) or ignored (negative, not a number, not text), and each such
//! reading is logged with its reason. Whether a wait is obeyed is the
//! caller's decision (`max_pause_secs`).

use chrono::{DateTime, NaiveDateTime, Utc};
use std::time::Duration;
use ureq::http::HeaderMap;

/// Width of the rolling window a rate is counted in (and the pause rate-limit
/// headers at 0 ask for when they give no reset).
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// The longest wait a header is read as (10^12 s, some 31,700 years):
/// anything longer, however it is written, is this, which no
/// `max_pause_secs` allows and every clock can still add.
pub const FAR: Duration = Duration::from_secs(1_000_000_000_000);

/// A reset value above this is a Unix time, below it a number of seconds.
const EPOCH_RESET: f64 = 1_000_000_000.0;

/// How much of a bad header value a log line shows.
const SHOWN: usize = 40;

/// A header value as a log line may show it: printable ASCII, at most `SHOWN` characters.
pub fn shown(value: &[u8]) -> String {
    let mut s: String = value
        .iter()
        .take(SHOWN)
        .map(|&b| match b {
            0x20..=0x7e => char::from(b),
            _ => '?',
        })
        .collect();
    if value.len() > SHOWN {
        s.push_str(&format!("… ({} bytes)", value.len()));
    }
    s
}

/// A number of seconds as a wait: negative, NaN or infinite is no wait at
/// all (`Err` says why), more than `FAR` is `FAR`.
fn seconds(secs: f64) -> Result<Duration, &'static str> {
    if secs.is_nan() {
        Err("not a number")
    } else if secs < 0.0 {
        Err("negative")
    } else if secs >= FAR.as_secs_f64() {
        Ok(FAR)
    } else {
        Ok(Duration::from_secs_f64(secs))
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): whole seconds, a decimal number of
/// seconds (some servers send one), or an HTTP date in any of its three
/// forms, relative to `now`. `Err` says why the value is ignored.
pub fn retry_after(value: &[u8], now: DateTime<Utc>) -> Result<Duration, String> {
    let Ok(v) = std::str::from_utf8(value) else {
        return Err("not ASCII text".into());
    };
    let v = v.trim();
    if v.is_empty() {
        return Err("empty".into());
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: too many for a u64 is still just "very long".
        return Ok(v.parse::<u64>().map_or(FAR, Duration::from_secs).min(FAR));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return seconds(secs).map_err(String::from);
    }
    http_date(v)
        .map(|at| (at - now).to_std().unwrap_or(Duration::ZERO).min(FAR))
        .ok_or_else(|| "neither seconds nor an HTTP date".into())
}

/// An HTTP date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), or the
/// obsolete RFC 850 and asctime forms recipients must still accept.
fn http_date(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc2822(v) {
        return Some(at.with_timezone(&Utc));
    }
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
        .map(|t| t.and_utc())
}

/// The first number of a header value (`0`, `0, 100;w=60`), if it is one.
fn first_number(value: &[u8]) -> Option<f64> {
    let v = std::str::from_utf8(value).ok()?;
    v.split([',', ';'])
        .next()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| !n.is_nan())
}

/// The pause rate-limit headers ask for: when `X-RateLimit-Remaining` or
/// `RateLimit-Remaining` is 0 (or below), until the matching `*-Reset`
/// (seconds, or a Unix time), one window when no usable reset is given.
/// Values that are not numbers are ignored, with the reason logged.
pub fn limit_pause(h: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    for (remaining, reset) in [
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("ratelimit-remaining", "ratelimit-reset"),
    ] {
        let Some(left) = h.get(remaining) else {
            continue;
        };
        let Some(left) = first_number(left.as_bytes()) else {
            log::warn!(
                "{remaining}: '{}' is not a number: ignored",
                shown(left.as_bytes())
            );
            continue;
        };
        if left > 0.0 {
            continue;
        }
        let Some(value) = h.get(reset) else {
            return Some(RATE_WINDOW);
        };
        let wait = match first_number(value.as_bytes()) {
            Some(s) if s > EPOCH_RESET => seconds(s - now.timestamp_millis() as f64 / 1000.0)
                .or(Ok::<_, &str>(Duration::ZERO)),
            Some(s) => seconds(s),
            None => Err("not a number"),
        };
        return Some(wait.unwrap_or_else(|why| {
            log::warn!(
                "{reset}: '{}' is {why}: one window ({} s) is waited instead",
                shown(value.as_bytes()),
                RATE_WINDOW.as_secs()
            );
            RATE_WINDOW
        }));
    }
    None
}

/// `Retry-After` of an answer, or `None` (a value that cannot be read is
/// logged and ignored: the backoff applies).
pub fn retry_after_of(h: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = h.get("retry-after")?;
    retry_after(value.as_bytes(), now)
        .map_err(|why| {
            log::warn!(
                "Retry-After: '{}' is {why}: ignored (the backoff applies)",
                shown(value.as_bytes())
            )
        })
        .ok()
}

/// A wait in whole seconds, for messages (`1000000000000+` when clamped).
pub fn said(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if d >= FAR {
        format!("{secs}+")
    } else {
        secs.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::http::HeaderValue;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn map(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        m
    }

    #[test]
    fn retry_after_seconds_and_http_dates() {
        let ok = |v: &str| retry_after(v.as_bytes(), now());
        assert_eq!(ok("120"), Ok(Duration::from_secs(120)));
        assert_eq!(ok(" 2 "), Ok(Duration::from_secs(2)));
        assert_eq!(ok("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(
            ok("Wed, 21 Oct 2015 07:28:30 GMT"),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            ok("Wednesday, 21-Oct-15 07:28:40 GMT"),
            Ok(Duration::from_secs(40)),
            "RFC 850"
        );
        assert_eq!(
            ok("Wed Oct 21 07:28:50 2015"),
            Ok(Duration::from_secs(50)),
            "asctime"
        );
        assert_eq!(
            ok("Wed, 21 Oct 2015 07:27:00 GMT"),
            Ok(Duration::ZERO),
            "past date"
        );
    }

    #[test]
    fn retry_after_out_of_range_is_clamped_or_ignored() {
        let r = |v: &[u8]| retry_after(v, now());
        assert_eq!(r(b"99999999999999999999"), Ok(FAR), "beyond u64");
        assert_eq!(r(b"18446744073709551615"), Ok(FAR), "u64::MAX");
        assert_eq!(r(b"1e30"), Ok(FAR));
        assert_eq!(r(b"1e400"), Ok(FAR), "infinite as f64");
        assert!(r(b"Fri, 31 Dec 9999 23:59:59 GMT")
            .is_ok_and(|d| d > Duration::from_secs(250_000_000_000)));
        assert!(r(b"-5").is_err());
        assert!(r(b"-1e400").is_err());
        assert!(r(b"NaN").is_err());
        assert!(r(b"nan").is_err());
        assert!(r(b"inf").is_ok_and(|d| d == FAR));
        assert!(r(b"").is_err());
        assert!(r(b"   ").is_err());
        assert!(r(b"soon").is_err());
        assert!(r("três".as_bytes()).is_err());
        assert!(r(&[0xff, 0xfe, b'1']).is_err());
        assert!(r(&vec![b'9'; 65536]).is_ok_and(|d| d == FAR));
        assert!(r(&vec![b'x'; 65536]).is_err());
    }

    #[test]
    fn rate_limit_headers_at_zero_ask_for_a_pause() {
        let now = DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let epoch = (now.timestamp() + 3).to_string();
        let pause = |pairs: &[(&'static str, &[u8])]| limit_pause(&map(pairs), now);
        assert_eq!(
            pause(&[
                ("X-RateLimit-Remaining", b"0"),
                ("X-RateLimit-Reset", epoch.as_bytes())
            ]),
            Some(Duration::from_secs(3)),
            "a Unix time"
        );
        assert_eq!(
            pause(&[("RateLimit-Remaining", b"0"), ("RateLimit-Reset", b"2")]),
            Some(Duration::from_secs(2)),
            "seconds"
        );
        assert_eq!(
            pause(&[("RateLimit-Remaining", b"0")]),
            Some(RATE_WINDOW),
            "no reset: one window"
        );
        assert_eq!(
            pause(&[("X-RateLimit-Remaining", b"4"), ("X-RateLimit-Reset", b"9")]),
            None
        );
        assert_eq!(pause(&[]), None);
    }

    #[test]
    fn rate_limit_headers_out_of_range_are_clamped_or_ignored() {
        let now = DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let pause = |pairs: &[(&'static str, &[u8])]| limit_pause(&map(pairs), now);
        let zero = ("X-RateLimit-Remaining", b"0".as_slice());
        let reset = |v: &'static [u8]| ("X-RateLimit-Reset", v);
        assert_eq!(pause(&[zero, reset(b"1e30")]), Some(FAR), "huge: clamped");
        assert_eq!(
            pause(&[zero, reset(b"99999999999999999999")]),
            Some(FAR),
            "a Unix time far ahead"
        );
        assert_eq!(
            pause(&[zero, reset(b"1000000001")]),
            Some(Duration::ZERO),
            "a Unix time in the past"
        );
        for bad in [&b"-5"[..], b"NaN", b"", b"soon", &[0xc3, 0x28]] {
            assert_eq!(
                limit_pause(&map(&[zero, ("X-RateLimit-Reset", bad)]), now),
                Some(RATE_WINDOW),
                "{bad:?}: one window"
            );
        }
        assert_eq!(
            pause(&[("X-RateLimit-Remaining", b"-3")]),
            Some(RATE_WINDOW),
            "below zero is used up"
        );
        for bad in [&b"NaN"[..], b"many", b"", &[0xff]] {
            assert_eq!(
                limit_pause(&map(&[("X-RateLimit-Remaining", bad)]), now),
                None,
                "{bad:?}: ignored"
            );
        }
        // Repeated headers: the first is read.
        assert_eq!(
            pause(&[
                ("RateLimit-Remaining", b"0"),
                ("RateLimit-Remaining", b"7"),
                ("RateLimit-Reset", b"4"),
                ("RateLimit-Reset", b"1e9"),
            ]),
            Some(Duration::from_secs(4))
        );
    }

    #[test]
    fn waits_are_said_in_whole_seconds() {
        assert_eq!(said(Duration::from_millis(1500)), "2");
        assert_eq!(said(Duration::from_secs(99_999_999_999)), "99999999999");
        assert_eq!(said(FAR), "1000000000000+");
    }

    #[test]
    fn shown_values_are_short_and_printable() {
        assert_eq!(shown(b"12"), "12");
        assert_eq!(shown(&[0xff, b'a', b'\n']), "?a?");
        let long = shown(&vec![b'9'; 65536]);
        assert!(long.len() < 80 && long.ends_with("(65536 bytes)"), "{long}");
    }

    /// A header value of any bytes never panics any reading of it: as
    /// `Retry-After`, as each rate-limit header, repeated or alone (the
    /// property test of issue 28; `PROPTEST_CASES` runs more).
    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        /// Bytes a header may carry (a `HeaderValue` refuses only CR, LF and NUL),
        /// biased towards numbers, signs, exponents and dates.
        fn value() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"9".repeat(25)),
                Just(b"-".to_vec()),
                Just(b"1e".to_vec()),
                Just(b".".to_vec()),
                Just(b"NaN".to_vec()),
                Just(b"inf".to_vec()),
                Just(b", ".to_vec()),
                Just(b"Wed, 21 Oct 2015 07:28:00 GMT".to_vec()),
                Just(b"Fri, 31 Dec 9999 23:59:59 GMT".to_vec()),
                prop::collection::vec(b'0'..=b'9', 0..30),
                prop::collection::vec(
                    any::<u8>().prop_filter("no CR, LF, NUL", |b| !matches!(b, 0 | 10 | 13)),
                    0..40
                ),
            ];
            prop::collection::vec(piece, 0..5).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            #[test]
            fn any_bytes_in_any_header(a in value(), b in value(), c in value()) {
                let now = DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc);
                let _ = retry_after(&a, now);
                let _ = shown(&a);
                for (remaining, reset) in [
                    ("x-ratelimit-remaining", "x-ratelimit-reset"),
                    ("ratelimit-remaining", "ratelimit-reset"),
                ] {
                    let mut m = HeaderMap::new();
                    let (Ok(va), Ok(vb), Ok(vc)) = (
                        HeaderValue::from_bytes(&a),
                        HeaderValue::from_bytes(&b),
                        HeaderValue::from_bytes(&c),
                    ) else {
                        continue;
                    };
                    m.append(remaining, va.clone());
                    m.append(reset, vb);
                    m.append("retry-after", vc);
                    m.append(reset, va);
                    if let Some(p) = limit_pause(&m, now) {
                        prop_assert!(p <= FAR);
                    }
                    if let Some(w) = retry_after_of(&m, now) {
                        prop_assert!(w <= FAR);
                        let _ = said(w);
                    }
                }
            }
        }
    }
}
