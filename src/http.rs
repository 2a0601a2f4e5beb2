//! HTTP: the shared agent, auth, the per-client rate limit, the failure
//! classifier for `retry` (including `Retry-After`), URL redaction, and
//! decoding a body to UTF-8 by its charset (declared, or the route's).
//!
//! Secrets reach the wire only: any URL shown to a person goes through
//! `redact`, and resolved secret values never implement `Display`.

use crate::charset::{body_charset, decode, Charset};
use crate::config::{Auth, Client, Route, SecretValue};
use crate::retry::{self, Verdict};
use anyhow::Result;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use url::Url;

/// Largest body accepted for one page (a guard against runaway responses).
const MAX_BODY_BYTES: u64 = 512 * 1024 * 1024;

/// Query parameter names masked in logs even when they are not the auth param.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "password",
    "senha",
    "chave",
    "auth",
];

/// One agent for the whole run: its pool keeps connections alive across
/// threads. Status codes are data (we classify them), not errors.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
        .timeout_global(Some(timeout))
        .max_idle_connections(256)
        .max_idle_connections_per_host(128)
        .user_agent(concat!("atlas/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Auth with its secret resolved, ready to apply to requests.
#[derive(Clone)]
pub enum ResolvedAuth {
    None,
    Header { name: String, value: SecretValue },
    Query { param: String, value: SecretValue },
}

impl ResolvedAuth {
    /// Reads the secret of `auth`; `env` looks up environment variables.
    pub fn resolve(auth: &Auth, env: &dyn Fn(&str) -> Option<String>) -> Result<ResolvedAuth> {
        Ok(match auth {
            Auth::None => ResolvedAuth::None,
            Auth::Bearer(s) => ResolvedAuth::Header {
                name: "Authorization".into(),
                value: SecretValue::new(format!("Bearer {}", s.resolve(env)?.expose())),
            },
            Auth::Header { name, value } => ResolvedAuth::Header {
                name: name.clone(),
                value: value.resolve(env)?,
            },
            Auth::Query { param, value } => ResolvedAuth::Query {
                param: param.clone(),
                value: value.resolve(env)?,
            },
            Auth::Basic { user, password } => {
                let raw = format!("{user}:{}", password.resolve(env)?.expose());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                ResolvedAuth::Header {
                    name: "Authorization".into(),
                    value: SecretValue::new(format!("Basic {enc}")),
                }
            }
        })
    }

    /// The query param that carries a secret, if any (to mask and to re-add).
    pub fn query_param(&self) -> Option<&str> {
        match self {
            ResolvedAuth::Query { param, .. } => Some(param),
            _ => None,
        }
    }
}

/// A URL fit for logs: userinfo and secret-looking query values masked.
pub fn redact(url: &Url, auth_param: Option<&str>) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("***");
        let _ = u.set_password(None);
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let secret = Some(k.as_ref()) == auth_param
                    || SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (
                    k.into_owned(),
                    if secret {
                        "***".to_string()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Requests per second shared by every fetcher of a client, plus a common
/// pause that a 429 imposes on all of them.
pub struct Limiter {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Limiter {
    pub fn new(per_sec: Option<f64>) -> Limiter {
        Limiter {
            interval: per_sec.map(|r| Duration::from_secs_f64(1.0 / r)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this thread's slot; returns early (false) when `quit` rises.
    pub fn acquire(&self, quit: &AtomicBool) -> bool {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval.unwrap_or_default();
            slot
        };
        retry::sleep_until(slot, quit)
    }

    /// Everyone waits at least until `until` (a server asked us to slow down).
    pub fn pause_until(&self, until: Instant) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        if *next < until {
            *next = until;
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// A failed request, by what it calls for.
#[derive(Debug)]
pub enum Failure {
    /// Try again (after `wait` if the server said how long).
    Retry {
        status: Option<u16>,
        wait: Option<Duration>,
        message: String,
        body: String,
    },
    /// The server refused this request (another 4xx): asking again would
    /// get the same answer.
    Refused {
        status: Option<u16>,
        message: String,
        body: String,
    },
    /// Credentials refused: no request of this client can succeed.
    Auth { status: u16, body: String },
}

impl Failure {
    /// The HTTP status, if a response came.
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Retry { status, .. } | Failure::Refused { status, .. } => *status,
            Failure::Auth { status, .. } => Some(*status),
        }
    }
}

/// What a failed request calls for; a `Retry-After` replaces the backoff.
pub fn classify(f: &Failure) -> Verdict {
    match f {
        Failure::Retry {
            wait: Some(wait), ..
        } => Verdict::RetryAfter(*wait),
        Failure::Retry { wait: None, .. } => Verdict::Retry,
        Failure::Refused { .. } => Verdict::Fail,
        Failure::Auth { .. } => Verdict::Auth,
    }
}

/// A successful response, body already read and in UTF-8.
pub struct Fetched {
    pub body: Vec<u8>,
    pub link: Option<String>,
}

/// Start of a body for messages, valid UTF-8, one line.
pub fn snippet(body: &[u8], max: usize) -> String {
    crate::report::snippet(body, max, "")
}

/// One GET, classified, a 2xx body decoded to UTF-8 (`charset`: the
/// route's override of the declared charset). Never panics on anything the
/// network does.
pub fn get(
    agent: &ureq::Agent,
    url: &Url,
    headers: &[(String, String)],
    auth: &ResolvedAuth,
    charset: Option<Charset>,
) -> std::result::Result<Fetched, Failure> {
    let mut req = agent.get(url.as_str()).header("Accept", "application/json");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let ResolvedAuth::Header { name, value } = auth {
        req = req.header(name.as_str(), value.expose());
    }
    let mut resp = match req.call() {
        Ok(r) => r,
        Err(e) => {
            return Err(Failure::Retry {
                status: None,
                wait: None,
                message: transport_message(&e),
                body: String::new(),
            })
        }
    };
    let status = resp.status().as_u16();
    let wait = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, Utc::now()));
    let link = resp
        .headers()
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let charset = body_charset(
        charset,
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
    );
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec();
    let body = match body {
        Ok(b) => b,
        Err(e) if (200..300).contains(&status) => {
            return Err(Failure::Retry {
                status: Some(status),
                wait,
                message: format!("body cut short: {}", transport_message(&e)),
                body: String::new(),
            })
        }
        Err(_) => Vec::new(),
    };
    match status {
        200..=299 => match charset {
            Ok(c) => Ok(Fetched {
                body: decode(body, c),
                link: (!link.is_empty()).then_some(link),
            }),
            // The same on every attempt: the slice fails at once.
            Err(message) => Err(Failure::Refused {
                status: Some(status),
                message,
                body: snippet(&body, 300),
            }),
        },
        401 | 403 => Err(Failure::Auth {
            status,
            body: snippet(&body, 300),
        }),
        408 | 425 | 429 | 500..=599 => Err(Failure::Retry {
            status: Some(status),
            wait,
            message: format!("HTTP {status}"),
            body: snippet(&body, 300),
        }),
        _ => Err(Failure::Refused {
            status: Some(status),
            message: format!("HTTP {status}"),
            body: snippet(&body, 300),
        }),
    }
}

fn transport_message(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timeout ({t})"),
        other => other.to_string(),
    }
}

/// Page one of a slice: base + path, fixed query, date params, auth param.
pub fn slice_url(
    client: &Client,
    route: &Route,
    auth: &ResolvedAuth,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Url> {
    let mut url = route_url(client, &route.path)?;
    let p = &route.date_params;
    let (start, end) =
        crate::dates::bounds(from, to, &p.format, p.end_style, route.timezone.as_ref());
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in &route.query {
            q.append_pair(k, v);
        }
        q.append_pair(&p.start, &start);
        q.append_pair(&p.end, &end);
        if let ResolvedAuth::Query { param, value } = auth {
            q.append_pair(param, value.expose());
        }
    }
    Ok(url)
}

/// The first request URL of a route for a client: base + path.
pub fn route_url(client: &Client, path: &str) -> Result<Url> {
    let base = client.base_url.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}{path}"))
        .map_err(|e| crate::exit::usage(format!("bad URL {base}{path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_classify_for_retry() {
        let retry = |wait| Failure::Retry {
            status: Some(503),
            wait,
            message: "HTTP 503".into(),
            body: String::new(),
        };
        assert_eq!(classify(&retry(None)), Verdict::Retry);
        assert_eq!(
            classify(&retry(Some(Duration::from_secs(7)))),
            Verdict::RetryAfter(Duration::from_secs(7)),
            "Retry-After wins over the backoff"
        );
        let refused = Failure::Refused {
            status: Some(404),
            message: "HTTP 404".into(),
            body: String::new(),
        };
        assert_eq!(classify(&refused), Verdict::Fail);
        assert_eq!(refused.status(), Some(404));
        let auth = Failure::Auth {
            status: 401,
            body: String::new(),
        };
        assert_eq!(classify(&auth), Verdict::Auth);
        assert_eq!(auth.status(), Some(401));
        let transport = Failure::Retry {
            status: None,
            wait: None,
            message: "timeout".into(),
            body: String::new(),
        };
        assert_eq!(transport.status(), None);
        assert_eq!(classify(&transport), Verdict::Retry);
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 2 ", now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("1.5", now), Some(Duration::from_millis(1500)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "past date"
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-3", now), None);
    }

    #[test]
    fn redaction_masks_auth_and_secret_looking_params() {
        let u =
            Url::parse("https://user:pw@api.test/x?page=2&apikey=SEGREDO&chave_api=abc&token=t0k")
                .unwrap();
        let r = redact(&u, Some("chave_api"));
        assert!(
            !r.contains("SEGREDO") && !r.contains("abc") && !r.contains("t0k") && !r.contains("pw"),
            "{r}"
        );
        assert!(r.contains("page=2"), "{r}");
    }

    #[test]
    fn limiter_spaces_requests_and_pauses_everyone() {
        use std::sync::atomic::Ordering;
        let quit = AtomicBool::new(false);
        let l = Limiter::new(Some(50.0));
        let t0 = Instant::now();
        for _ in 0..6 {
            assert!(l.acquire(&quit));
        }
        assert!(
            t0.elapsed() >= Duration::from_millis(100),
            "5 intervals of 20 ms"
        );
        l.pause_until(Instant::now() + Duration::from_millis(50));
        let t1 = Instant::now();
        assert!(l.acquire(&quit));
        assert!(t1.elapsed() >= Duration::from_millis(45));
        quit.store(true, Ordering::Relaxed);
        l.pause_until(Instant::now() + Duration::from_secs(60));
        assert!(!l.acquire(&quit), "quit interrupts the wait");
    }

    #[test]
    fn snippet_is_one_line_and_bounded() {
        assert_eq!(snippet(b"a\nb\r\nc", 10), "a b  c");
        assert_eq!(snippet("ção".repeat(100).as_bytes(), 4), "ção\u{e7}");
    }
}
