//! HTTP: the shared agent, auth, the per-client rate limit, the failure
//! classifier for `retry` (including `Retry-After`), URL redaction, and
//! decoding a body to UTF-8 by its charset (declared, or the route's).
//!
//! Secrets reach the wire only: any URL shown to a person goes through
//! `redact`, and resolved secret values never implement `Display`.

pub mod body;
pub mod headers;
pub mod share;
pub mod trust;
pub mod userinfo;

use crate::charset::{body_charset, Charset};
use crate::config::template::{self, Secrets, Var, Vars};
use crate::config::{Auth, BodyFormat, Client, Method, Route, SecretValue};
use crate::paginate::Position;
use crate::retry::Verdict;
use crate::rules::{self, Then};
use anyhow::Result;
use base64::Engine;
use chrono::{NaiveDate, Utc};
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use url::Url;

/// A query param or header whose name contains one of these (ASCII
/// case-insensitive) has its value masked wherever it is shown.
const SECRET_NAME_PARTS: &[&str] = &[
    "token", "secret", "pass", "pwd", "key", "auth", "sig", "session", "senha", "chave",
];

/// What a masked value is shown as.
pub const MASK: &str = "***";

/// Values of secret-named params and headers shorter than this are masked
/// by name only (in URLs): masking "1" in every text would hide everything.
const MIN_MASKED_VALUE: usize = 3;

/// True for a param or header name whose value is a secret.
pub fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_NAME_PARTS.iter().any(|p| name.contains(p))
}

/// One agent for the whole run: its pool keeps connections alive across
/// threads. Status codes are data (we classify them), not errors. HTTPS
/// trusts the bundled Mozilla roots, the operating system's store and
/// `extra` (a client's `ca_file`); verification is never turned off.
pub fn agent_trusting(
    timeout: Duration,
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig};
    let roots: Vec<Certificate<'static>> = trusted_roots()
        .iter()
        .chain(extra)
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    ureq::Agent::config_builder()
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&roots))
                .build(),
        )
        .http_status_as_error(false)
        .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
        .timeout_global(Some(timeout))
        .max_idle_connections(256)
        .max_idle_connections_per_host(128)
        .user_agent(concat!("atlas/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Reads the trusted roots on a thread of their own, so the first agent
/// does not wait for them (reading the system store takes tens of ms) while
/// the database work that comes first runs.
pub fn read_trust_early() {
    let spawned = std::thread::Builder::new().name("trust".into()).spawn(|| {
        trusted_roots();
    });
    if let Err(e) = spawned {
        log::debug!("roots read on first use instead: {e}");
    }
}

/// The bundled Mozilla roots plus the operating system's store (Windows
/// certificate store, macOS keychain, the Linux bundle or `SSL_CERT_FILE` /
/// `SSL_CERT_DIR`), read once per process. A store that cannot be read
/// leaves the bundled roots.
fn trusted_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots: Vec<_> = webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            log::debug!("system certificate store: {e}");
        }
        roots.extend(native.certs);
        roots
    })
}

/// The certificate problem behind a transport error, if that is what it is
/// (ureq's error has no `source`: its rustls and I/O variants are opened here).
pub fn certificate_error(e: &ureq::Error) -> Option<String> {
    let rustls_error = match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match rustls_error {
        Some(r @ rustls::Error::InvalidCertificate(_)) => Some(r.to_string()),
        _ => None,
    }
}

/// Where OAuth2 access tokens come from (`oauth::Session`). Errors are
/// request failures: a refused grant is `Auth`, a passing trouble `Retry`.
pub trait TokenSource: Send + Sync {
    /// A live access token and its generation (which renewal it came from).
    fn bearer(&self) -> std::result::Result<(SecretValue, i64), Failure>;
    /// A token renewed after the one of `generation` met a 401.
    fn renew_after_401(&self, generation: i64) -> std::result::Result<(SecretValue, i64), Failure>;
    /// Its secret values (client secret, tokens), to mask.
    fn secrets(&self) -> Vec<String>;
    /// Before a run: a live token, or the error that stops the command.
    fn prepare(&self) -> Result<()>;
}

/// Auth with its secret resolved, ready to apply to requests.
#[derive(Clone)]
pub enum ResolvedAuth {
    None,
    Header {
        name: String,
        value: SecretValue,
    },
    Query {
        param: String,
        value: SecretValue,
    },
    /// `Authorization: Bearer` with a token that changes as it is renewed.
    OAuth2(std::sync::Arc<dyn TokenSource>),
}

impl ResolvedAuth {
    /// Reads the secret of `auth`; `env` looks up environment variables.
    pub fn resolve(auth: &Auth, env: &dyn Fn(&str) -> Option<String>) -> Result<ResolvedAuth> {
        Ok(match auth {
            Auth::None => ResolvedAuth::None,
            // Needs the token store: built by the command layer (`oauth`).
            Auth::OAuth2(_) => anyhow::bail!("internal: oauth2 is resolved with its token store"),
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

    /// Before a run: an OAuth2 client gets its first token now, so a
    /// refused grant stops the command before anything starts.
    pub fn prepare(&self) -> Result<()> {
        match self {
            ResolvedAuth::OAuth2(source) => source.prepare(),
            _ => Ok(()),
        }
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
    let mut u = userinfo::url(url).into_owned();
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let secret = Some(k.as_ref()) == auth_param || secret_name(&k);
                (
                    k.into_owned(),
                    if secret {
                        MASK.to_string()
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

/// Masks secrets in anything shown to a person (error log, stderr, the
/// ledger's error texts): the user info of any URL in it, every value of
/// the client's resolved secret (from a `*_env` or `*_file`, wherever it
/// appears, also percent-encoded), and the values of headers and query
/// params named like secrets ([`secret_name`]).
#[derive(Default)]
pub struct Masker {
    auth_param: Option<String>,
    /// Longest first, so a value that contains another is masked whole.
    values: Vec<String>,
}

impl Masker {
    /// The secrets of `auth`, and of `headers` and `query` (name, value) pairs.
    pub fn new(
        auth: &ResolvedAuth,
        headers: &[(String, String)],
        query: &[(String, String)],
    ) -> Masker {
        let mut values: Vec<String> = Vec::new();
        match auth {
            ResolvedAuth::None => {}
            ResolvedAuth::OAuth2(source) => values.extend(source.secrets()),
            ResolvedAuth::Header { value, .. } | ResolvedAuth::Query { value, .. } => {
                let v = value.expose();
                values.push(v.to_string());
                // The token of "Bearer T", the credentials of "Basic B64".
                if let Some((scheme, rest)) = v.split_once(' ') {
                    values.push(rest.to_string());
                    if scheme.eq_ignore_ascii_case("basic") {
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(rest.trim())
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok());
                        if let Some((_, password)) =
                            decoded.as_deref().and_then(|d| d.split_once(':'))
                        {
                            values.push(password.to_string());
                        }
                    }
                }
            }
        }
        values.retain(|v| !v.is_empty());
        for (name, value) in headers.iter().chain(query) {
            if secret_name(name) && value.chars().count() >= MIN_MASKED_VALUE {
                values.push(value.clone());
            }
        }
        let encoded: Vec<String> = values
            .iter()
            .map(|v| url::form_urlencoded::byte_serialize(v.as_bytes()).collect())
            .collect();
        values.extend(encoded);
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Masker {
            auth_param: auth.query_param().map(str::to_string),
            values,
        }
    }

    /// Also masks every secret a route's templates read (`{env:}`, `{file:}`).
    pub fn with_secrets(mut self, secrets: &Secrets) -> Masker {
        for v in secrets.values() {
            let v = v.expose();
            if v.is_empty() {
                continue;
            }
            self.values.push(v.to_string());
            self.values
                .push(url::form_urlencoded::byte_serialize(v.as_bytes()).collect());
            // As it appears inside a JSON string (an echoed body).
            let json = serde_json::Value::from(v).to_string();
            self.values.push(json[1..json.len() - 1].to_string());
        }
        self.values.retain(|v| !v.is_empty());
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        self.values.dedup();
        self
    }

    /// `text` with every secret value replaced by `***`.
    pub fn text(&self, text: &str) -> String {
        let mut out = userinfo::text(text).into_owned();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// A URL fit for logs: [`redact`], then every secret value masked.
    pub fn url(&self, url: &Url) -> String {
        let secrets: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, v)| secret_name(k) && v.chars().count() >= MIN_MASKED_VALUE)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let redacted = redact(url, self.auth_param.as_deref());
        let mut out = self.text(&redacted);
        for (_, v) in secrets {
            out = out.replace(&v, MASK);
        }
        out
    }
}

/// Width of the rolling window a rate is counted in.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// An adaptive rate that grew past this many requests per second is dropped
/// again: the client is back to unlimited.
const ADAPTIVE_CEILING: f64 = 10_000.0;

/// Growth of an adaptive rate per window without a 429 (+10%).
const ADAPTIVE_GROWTH: f64 = 1.1;

/// After a 429, how long an adaptive rate stays below the count the server
/// refused before it tries that count again (doubling per refused probe, up
/// to `PROBE_HOLDOFF_MAX`): each probe costs a 429 and its pause.
const PROBE_HOLDOFF: Duration = Duration::from_secs(5);
const PROBE_HOLDOFF_MAX: Duration = Duration::from_secs(300);

/// Requests started this close after a refused one count as sent with it.
const BURST_SLACK: Duration = Duration::from_millis(20);

/// Longest a waiting fetcher sleeps before it looks at `quit` again.
const QUIT_POLL: Duration = Duration::from_millis(100);

/// How many requests may start in how long, for a rate of `r` per second:
/// at most ⌊r⌋ in any [`RATE_WINDOW`]; below 1/s, one per 1/r seconds.
fn pacing(r: f64) -> (usize, Duration) {
    if r >= 1.0 {
        (r.floor() as usize, RATE_WINDOW)
    } else {
        // The config's range keeps r at 0.001 or more; NaN falls back to that too.
        (1, Duration::from_secs_f64(1.0 / r.max(0.001)))
    }
}

/// One request in the window: it holds its place from its start until
/// `width` after its response arrived.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    start: Instant,
    /// `None` while in flight.
    end: Option<Instant>,
    /// The server answered 429.
    refused: bool,
}

/// The limiter's state, pure (every method takes `now`) so it is tested on
/// timestamps.
///
/// Invariants: with a rate in force, a request starts only while fewer than
/// its count of requests hold a place, so no window of its width (measured
/// at request start, and also at any moment between a request's start and
/// its response) holds more starts than the count; nothing starts before
/// `paused_until`, which only ever moves later.
#[derive(Debug)]
pub struct Window {
    /// The client's `rate_limit_per_sec`, for all the processes working it.
    total: Option<f64>,
    /// This process's part of `total` (`share`): never exceeded.
    configured: Option<f64>,
    /// Nothing starts before this unless the processes sharing the
    /// client's rate were looked at first (`Window::share`).
    joining: Option<Instant>,
    /// When a fetcher last asked to start a request (or was still waiting
    /// to): whether this process still wants its part of a shared rate.
    last_asked: Option<Instant>,
    /// The rate in force: the configured one, or one learnt from 429s
    /// (never above the configured one); `None` is unlimited.
    rate: Option<f64>,
    /// When `rate` last changed (a 429 or a step up).
    since: Instant,
    /// No request starts before this (a 429 asked everyone to wait).
    paused_until: Option<Instant>,
    /// After a 429: the request count per window the server refused, and
    /// when the rate may grow to it again (a probe).
    ceiling: Option<(usize, Instant)>,
    /// How long the rate stays below `ceiling`: doubles each time a probe
    /// at the same count is refused.
    holdoff: Duration,
    /// Start of the request last answered 429: the server refused it for
    /// what it had admitted in the window before it.
    last_refused_start: Option<Instant>,
    next_id: u64,
    /// Requests by start, oldest first.
    entries: VecDeque<Entry>,
}

/// What a fetcher asking to start a request is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Go: this request's id, to pass to `finish`.
    Go(u64),
    /// Ask again at this time (or when a request finishes).
    WaitUntil(Instant),
    /// Every place is held by a request still in flight: ask again when one ends.
    WaitForAnEnd,
}

impl Window {
    pub fn new(per_sec: Option<f64>, now: Instant) -> Window {
        Window {
            total: per_sec,
            joining: None,
            last_asked: None,
            configured: per_sec,
            rate: per_sec,
            since: now,
            paused_until: None,
            ceiling: None,
            holdoff: PROBE_HOLDOFF,
            last_refused_start: None,
            next_id: 0,
            entries: VecDeque::new(),
        }
    }

    /// The rate in force (requests per second), `None` when unlimited.
    #[cfg(test)]
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Forgets requests that no longer matter: ended more than a window
    /// ago, or (without a rate) started more than a window ago.
    fn prune(&mut self, now: Instant) {
        let width = self
            .rate
            .map_or(RATE_WINDOW, |r| pacing(r).1.max(RATE_WINDOW));
        let limited = self.rate.is_some();
        while let Some(e) = self.entries.front() {
            let gone = match e.end {
                Some(end) => now.saturating_duration_since(end) >= width,
                None => !limited && now.saturating_duration_since(e.start) >= width,
            };
            if !gone {
                break;
            }
            self.entries.pop_front();
        }
    }

    /// An adaptive rate steps up by 10% per window without a 429, to the
    /// configured rate at most; past `ADAPTIVE_CEILING` it is dropped.
    ///
    /// Below a count the server refused, the rate waits for the probe time
    /// (`ceiling`); a window at that count without a 429 clears it.
    fn creep(&mut self, now: Instant) {
        while let Some(rate) = self.rate {
            if self.configured == Some(rate) || now < self.since + pacing(rate).1 {
                return;
            }
            self.since += pacing(rate).1;
            let mut up = rate * ADAPTIVE_GROWTH;
            if let Some((count, probe_at)) = self.ceiling {
                if pacing(rate).0 >= count {
                    // A whole window at the refused count went through.
                    self.ceiling = None;
                    self.holdoff = PROBE_HOLDOFF;
                } else if self.since < probe_at {
                    up = up.min(count as f64 - 0.001).max(rate);
                }
            }
            self.rate = match self.configured {
                Some(c) => Some(up.min(c)),
                None if up > ADAPTIVE_CEILING => None,
                None => Some(up),
            };
        }
    }

    /// May a request start at `now`? On `Go` its place is taken.
    #[cfg(test)]
    pub fn try_start(&mut self, now: Instant) -> Slot {
        self.try_start_as(now, false)
    }

    /// `try_start` for a request that is a new attempt (`retried`): while a
    /// count the server refused is being probed again, a retried request
    /// never takes the place that makes the probe (the last place of the
    /// window at that count): a page already refused once is not the one
    /// risked again.
    pub fn try_start_as(&mut self, now: Instant, retried: bool) -> Slot {
        if let Some(until) = self.joining.filter(|&u| u > now) {
            return Slot::WaitUntil(until);
        }
        if let Some(until) = self.paused_until.filter(|&u| u > now) {
            return Slot::WaitUntil(until);
        }
        self.creep(now);
        self.prune(now);
        if let Some(rate) = self.rate {
            let (count, width) = pacing(rate);
            let count = match self.ceiling {
                Some((refused, _)) if retried => count.min(refused.saturating_sub(1).max(1)),
                _ => count,
            };
            let held: Vec<&Entry> = self
                .entries
                .iter()
                .filter(|e| {
                    e.end
                        .is_none_or(|end| now.saturating_duration_since(end) < width)
                })
                .collect();
            if held.len() >= count {
                // The place that frees first: `width` after the earliest end
                // among the requests that must leave for one to start.
                let mut ends: Vec<Instant> = held.iter().filter_map(|e| e.end).collect();
                ends.sort();
                let must_leave = held.len() + 1 - count;
                return match ends.get(must_leave - 1) {
                    Some(&end) => Slot::WaitUntil(end + width),
                    None => Slot::WaitForAnEnd,
                };
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push_back(Entry {
            id,
            start: now,
            end: None,
            refused: false,
        });
        Slot::Go(id)
    }

    /// Request `id`'s response arrived at `now` (`refused`: a 429).
    pub fn finish(&mut self, id: u64, now: Instant, refused: bool) {
        if refused {
            if let Ok(i) = self.entries.binary_search_by_key(&id, |e| e.id) {
                self.last_refused_start = Some(self.entries[i].start);
            }
        }
        // Ids grow with each start: the entries are sorted by id.
        if let Ok(i) = self.entries.binary_search_by_key(&id, |e| e.id) {
            self.entries[i].end = Some(now);
            self.entries[i].refused = refused;
        }
    }

    /// Nobody starts before `now + wait` (a later pause extends it, never
    /// shortens it).
    pub fn pause(&mut self, now: Instant, wait: Duration) {
        let until = now + wait.min(headers::FAR);
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
    }

    /// A 429 arrived at `now` asking for `wait`: nobody starts before
    /// `now + wait` (a later pause extends it, never shortens it), and the
    /// rate drops to what the server let through in the last window: the
    /// requests that started in it and were not refused (at least 1, never
    /// above the configured rate).
    ///
    /// A 429 that asks for no wait (`Retry-After: 0`) changes nothing: the
    /// server says asking again at once is fine, so it is not a rate signal.
    pub fn refused(&mut self, now: Instant, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        let until = now + wait.min(headers::FAR);
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
        // What the server had admitted in the window before the refused
        // request arrived (its reason to refuse it). Requests sent in the
        // same instant (a burst) count as before it: the server saw them in
        // some order, and each of the burst's refusals counts the ones not
        // refused so far, so the smallest count, kept below, is the burst's
        // admitted number.
        let at = self.last_refused_start.take().unwrap_or(now);
        let admitted = self
            .entries
            .iter()
            .filter(|e| {
                e.start <= at + BURST_SLACK
                    && at.saturating_duration_since(e.start) < RATE_WINDOW
                    && !e.refused
            })
            .count()
            .max(1);
        // The count refused is probed again only after the holdoff, which
        // doubles each time such a probe is refused.
        let count = admitted + 1;
        match self.ceiling {
            Some((c, probe_at)) if c == count && now >= probe_at => {
                self.holdoff = (self.holdoff * 2).min(PROBE_HOLDOFF_MAX)
            }
            Some((c, _)) if c == count => {}
            _ => self.holdoff = PROBE_HOLDOFF,
        }
        self.ceiling = Some((count, until + self.holdoff));
        let admitted = admitted as f64;
        let admitted = match self.configured {
            Some(c) => admitted.min(c),
            None => admitted,
        };
        if self.rate.is_none_or(|r| admitted < r) {
            self.rate = Some(admitted);
        }
        // A new window without a 429 starts once the pause is over.
        self.since = until;
    }
}

/// The rate limit shared by every fetcher of a client (see [`Window`]),
/// with the client-wide pause a 429 imposes.
pub struct Limiter {
    window: Mutex<Window>,
    /// Signalled when a request ends or a pause changes.
    changed: Condvar,
    /// The latest pause a server asked for here, not yet passed on to the
    /// other processes working the client (`share`).
    to_publish: Mutex<Option<Instant>>,
}

/// A request's place in the window; give it back with [`Limiter::finish`]
/// when the response arrives (dropping it counts as a response now).
pub struct Permit<'l> {
    limiter: &'l Limiter,
    id: u64,
    done: bool,
}

impl Permit<'_> {
    /// The response arrived; `refused` when it was a 429 asking to wait `wait`.
    pub fn finish(mut self, refused: Option<Duration>) {
        self.done = true;
        self.limiter.finish(self.id, refused);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.limiter.finish(self.id, None);
        }
    }
}

impl Limiter {
    pub fn new(per_sec: Option<f64>) -> Limiter {
        Limiter {
            window: Mutex::new(Window::new(per_sec, Instant::now())),
            changed: Condvar::new(),
            to_publish: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request may start (no pause in force, a place free in
    /// the window) and takes the place; `None` as soon as `quit` rises. The
    /// pause is checked in the same step as the place is taken, right
    /// before the caller sends. `retried`: this is a new attempt of a
    /// request (see [`Window::try_start_as`]).
    pub fn acquire_as(&self, quit: &AtomicBool, retried: bool) -> Option<Permit<'_>> {
        let mut w = self.lock();
        loop {
            if quit.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            let now = Instant::now();
            w.last_asked = Some(now);
            let wait = match w.try_start_as(now, retried) {
                Slot::Go(id) => {
                    return Some(Permit {
                        limiter: self,
                        id,
                        done: false,
                    })
                }
                Slot::WaitUntil(t) => t.saturating_duration_since(now).min(QUIT_POLL),
                Slot::WaitForAnEnd => QUIT_POLL,
            };
            w = self
                .changed
                .wait_timeout(w, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// The server asked the whole client to wait `wait` (its rate-limit
    /// window is used up, or a `Retry-After` on a 503): nobody starts
    /// before then; the rate is left as it is.
    pub fn pause(&self, wait: Duration) {
        let mut w = self.lock();
        w.pause(Instant::now(), wait);
        drop(w);
        self.publish(wait);
        self.changed.notify_all();
    }

    fn finish(&self, id: u64, refused: Option<Duration>) {
        let mut w = self.lock();
        let now = Instant::now();
        w.finish(id, now, refused.is_some());
        if let Some(wait) = refused {
            w.refused(now, wait);
        }
        drop(w);
        if let Some(wait) = refused.filter(|w| !w.is_zero()) {
            self.publish(wait);
        }
        self.changed.notify_all();
    }

    /// Keeps a pause for the other processes working the client.
    fn publish(&self, wait: Duration) {
        let until = Instant::now() + wait.min(headers::FAR);
        let mut p = self.to_publish.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }
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
    /// The server's TLS certificate is not trusted: no request can succeed
    /// until the trust changes (system store or `ca_file`).
    Tls { message: String },
}

impl Failure {
    /// The HTTP status, if a response came.
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Retry { status, .. } | Failure::Refused { status, .. } => *status,
            Failure::Auth { status, .. } => Some(*status),
            Failure::Tls { .. } => None,
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
        Failure::Auth { .. } | Failure::Tls { .. } => Verdict::Auth,
    }
}

/// A successful response, body already read and in UTF-8.
pub struct Fetched {
    /// The answer's HTTP status (a `response_rules` `empty` keeps its own).
    pub status: u16,
    pub body: Vec<u8>,
    pub link: Option<String>,
    /// The server's rate-limit headers say its window is used up: nobody
    /// of this client sends before this much time passed.
    pub pause: Option<Duration>,
}

/// Start of a body for messages, valid UTF-8, one line.
pub fn snippet(body: &[u8], max: usize) -> String {
    crate::report::snippet(body, max, "")
}

/// One request, classified, a 2xx body decoded to UTF-8 (the route's
/// `charset` overrides the declared one), the route's `response_rules`
/// applied first. Never panics on anything the network does. A 2xx body is
/// read through `room` (its limit, and the memory budget as it arrives).
pub fn send(
    agent: &ureq::Agent,
    call: &Call<'_>,
    auth: &ResolvedAuth,
    route: &Route,
    room: &mut dyn body::Room,
) -> std::result::Result<Fetched, Failure> {
    let result = match auth {
        // A 401 on a token that was live renews it once and sends once more.
        ResolvedAuth::OAuth2(source) => {
            let bearer = |t: &SecretValue| format!("Bearer {}", t.expose());
            match source.bearer() {
                Err(f) => Err(f),
                Ok((token, generation)) => {
                    let first = fetch(
                        dispatch(agent, call, Some(("Authorization", &bearer(&token)))),
                        route,
                        room,
                    );
                    match first {
                        Err(Failure::Auth { status: 401, .. }) => {
                            match source.renew_after_401(generation) {
                                Ok((token, _)) => fetch(
                                    dispatch(agent, call, Some(("Authorization", &bearer(&token)))),
                                    route,
                                    room,
                                ),
                                Err(f) => Err(f),
                            }
                        }
                        other => other,
                    }
                }
            }
        }
        ResolvedAuth::Header { name, value } => fetch(
            dispatch(agent, call, Some((name.as_str(), value.expose()))),
            route,
            room,
        ),
        ResolvedAuth::None | ResolvedAuth::Query { .. } => {
            fetch(dispatch(agent, call, None), route, room)
        }
    };
    result.map_err(|f| mask_failure(f, &call.masker(auth)))
}

/// Sends `call` with the auth header given, if any.
fn dispatch(
    agent: &ureq::Agent,
    call: &Call<'_>,
    auth_header: Option<(&str, &str)>,
) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let url = &call.url;
    match (call.method, &call.body) {
        (Method::Post, body) => {
            let mut req = agent
                .post(url.as_str())
                .header("Accept", "application/json");
            for (k, v) in &call.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if let Some((name, value)) = auth_header {
                req = req.header(name, value);
            }
            match body {
                Some((bytes, kind)) => req.header("Content-Type", *kind).send(&bytes[..]),
                None => req.send_empty(),
            }
        }
        (Method::Get, _) => {
            let mut req = agent.get(url.as_str()).header("Accept", "application/json");
            for (k, v) in &call.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if let Some((name, value)) = auth_header {
                req = req.header(name, value);
            }
            req.call()
        }
    }
}

impl Call<'_> {
    /// Masks the secrets this request carries (auth, templates, secret-named
    /// headers and params) in anything shown.
    pub fn masker(&self, auth: &ResolvedAuth) -> Masker {
        let query: Vec<(String, String)> = self
            .url
            .query_pairs()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Masker::new(auth, &self.headers, &query).with_secrets(self.secrets)
    }
}

/// What the server asks of the whole client after this answer: a pause
/// until its rate-limit window resets, or its `Retry-After` on a 503 (or
/// any retryable answer but 429, which the caller handles with the rate).
pub fn pause_of(r: &std::result::Result<Fetched, Failure>) -> Option<Duration> {
    match r {
        Ok(f) => f.pause,
        Err(Failure::Retry {
            status: Some(s),
            wait,
            ..
        }) if *s != 429 => *wait,
        Err(_) => None,
    }
}

/// `f` with every secret masked in its message and body.
fn mask_failure(f: Failure, m: &Masker) -> Failure {
    match f {
        Failure::Retry {
            status,
            wait,
            message,
            body,
        } => Failure::Retry {
            status,
            wait,
            message: m.text(&message),
            body: m.text(&body),
        },
        Failure::Refused {
            status,
            message,
            body,
        } => Failure::Refused {
            status,
            message: m.text(&message),
            body: m.text(&body),
        },
        Failure::Auth { status, body } => Failure::Auth {
            status,
            body: m.text(&body),
        },
        Failure::Tls { message } => Failure::Tls {
            message: m.text(&message),
        },
    }
}

/// Reads the answer of a sent request, classified.
fn fetch(
    sent: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    route: &Route,
    room: &mut dyn body::Room,
) -> std::result::Result<Fetched, Failure> {
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) if certificate_error(&e).is_some() => {
            return Err(Failure::Tls {
                message: format!(
                    "TLS: the API's certificate is not trusted ({}): add its CA to the \
                     system's certificate store or give the client a ca_file",
                    certificate_error(&e).unwrap_or_default()
                ),
            })
        }
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
    let ok = (200..300).contains(&status);
    let now = Utc::now();
    let pause = headers::limit_pause(resp.headers(), now);
    let wait = headers::retry_after_of(resp.headers(), now).or(pause);
    // A 2xx page is kept whatever its headers say; a pause longer than the
    // route allows is not obeyed (the next answer says if the server meant it).
    let pause = pause.filter(|p| {
        let within = *p <= route.max_pause;
        if !within {
            log::warn!(
                "the API's rate-limit headers ask to wait {} s, more than max_pause_secs ({} s): not obeyed",
                headers::said(*p),
                route.max_pause.as_secs()
            );
        }
        within
    });
    let link = resp
        .headers()
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let charset = body_charset(
        route.charset,
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
    );
    let body = if ok {
        room.settle();
        match body::read(resp.body_mut(), room) {
            Ok(b) => b,
            Err(cut @ body::Cut::TooLarge { .. }) => {
                return Err(Failure::Refused {
                    status: Some(status),
                    message: cut.message(),
                    body: String::new(),
                })
            }
            Err(cut @ body::Cut::NoRoom { .. }) => {
                return Err(Failure::Retry {
                    status: Some(status),
                    wait: None,
                    message: cut.message(),
                    body: String::new(),
                })
            }
            Err(cut @ body::Cut::Transport(_)) => {
                return Err(Failure::Retry {
                    status: Some(status),
                    wait,
                    message: format!("body cut short: {}", cut.message()),
                    body: String::new(),
                })
            }
        }
    } else {
        body::read_prefix(resp.body_mut(), body::ERROR_BODY_LIMIT)
    };
    if !route.response_rules.is_empty() {
        let text = match charset {
            Ok(c @ Charset::Windows1252) => {
                String::from_utf8_lossy(&crate::charset::decode(body.clone(), c)).into_owned()
            }
            _ => String::from_utf8_lossy(&body).into_owned(),
        };
        if let Some((n, then, said)) = rules::first_match(&route.response_rules, status, &text) {
            let body = snippet(text.as_bytes(), 300);
            return match then {
                Then::Empty => Ok(Fetched {
                    status,
                    body: rules::empty_body(&route.records),
                    link: None,
                    pause,
                }),
                Then::Retry => {
                    too_long(wait, route, status)?;
                    Err(Failure::Retry {
                        status: Some(status),
                        wait,
                        message: format!("response rule {n} (retry): {said}"),
                        body,
                    })
                }
                Then::Fail => Err(Failure::Refused {
                    status: Some(status),
                    message: format!("response rule {n} (fail): {said}"),
                    body,
                }),
                Then::Auth => Err(Failure::Auth { status, body }),
            };
        }
    }
    match status {
        200..=299 => match charset {
            Ok(c) => match body::decode(body, c, room) {
                Ok(body) => Ok(Fetched {
                    status,
                    body,
                    link: (!link.is_empty()).then_some(link),
                    pause,
                }),
                Err(cut) => Err(Failure::Refused {
                    status: Some(status),
                    message: cut.message(),
                    body: String::new(),
                }),
            },
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
        408 | 425 | 429 | 500..=599 => {
            too_long(wait, route, status)?;
            Err(Failure::Retry {
                status: Some(status),
                wait,
                message: format!("HTTP {status}"),
                body: snippet(&body, 300),
            })
        }
        _ => Err(Failure::Refused {
            status: Some(status),
            message: format!("HTTP {status}"),
            body: snippet(&body, 300),
        }),
    }
}

/// A retryable answer whose server asks for a longer wait than the route
/// allows (`max_pause_secs`) fails its slice at once: the next run resumes it.
fn too_long(
    wait: Option<Duration>,
    route: &Route,
    status: u16,
) -> std::result::Result<(), Failure> {
    match wait {
        Some(w) if w > route.max_pause => Err(Failure::Refused {
            status: Some(status),
            message: format!(
                "HTTP {status}: the API asked to wait {} s (more than max_pause_secs, {} s)",
                headers::said(w),
                route.max_pause.as_secs()
            ),
            body: String::new(),
        }),
        _ => Ok(()),
    }
}

fn transport_message(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timeout ({t})"),
        other => other.to_string(),
    }
}

/// One slice's requests: the route's templates filled with the slice's
/// bounds and secrets, and per page with the pager's position.
pub struct SliceRequest<'a> {
    route: &'a Route,
    secrets: &'a Secrets,
    start: String,
    end: String,
    first: Url,
}

/// What one request sends.
pub struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    /// The encoded body and its content type.
    pub body: Option<(Vec<u8>, &'static str)>,
    secrets: &'a Secrets,
}

impl<'a> SliceRequest<'a> {
    /// Page one: base + path, fixed query (placeholders filled), date
    /// params, auth param.
    pub fn new(
        client: &Client,
        route: &'a Route,
        auth: &ResolvedAuth,
        secrets: &'a Secrets,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<SliceRequest<'a>> {
        let mut url = route_url(client, &route.path)?;
        let p = &route.date_params;
        let (start, end) =
            crate::dates::bounds(from, to, &p.format, p.end_style, route.timezone.as_ref());
        let mut req = SliceRequest {
            route,
            secrets,
            start,
            end,
            first: url.clone(),
        };
        let at = Position::first(&route.pagination);
        {
            let vars = req.vars(&at);
            let mut q = url.query_pairs_mut();
            for (k, v) in &route.query {
                q.append_pair(k, &vars.render(v));
            }
            if let Some(name) = &p.start {
                q.append_pair(name, &req.start);
            }
            if let Some(name) = &p.end {
                q.append_pair(name, &req.end);
            }
            if let ResolvedAuth::Query { param, value } = auth {
                q.append_pair(param, value.expose());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        req.first = url;
        Ok(req)
    }

    /// The URL of page one, where the pager starts.
    pub fn first_url(&self) -> Url {
        self.first.clone()
    }

    fn vars<'v>(&'v self, at: &'v Position) -> Vars<'v> {
        Vars {
            start: &self.start,
            end: &self.end,
            page: at.page,
            page_size: at.page_size,
            offset: at.offset,
            cursor: at.cursor.as_deref(),
            secrets: self.secrets,
        }
    }

    /// The request for the pager's `url` at position `at`: query values that
    /// follow the page re-filled, headers and body filled, pagination
    /// params that are JSON pointers set in the body.
    pub fn call(&self, url: &Url, at: &Position) -> Call<'a> {
        let vars = self.vars(at);
        let route = self.route;
        let mut url = url.clone();
        let paged: Vec<(&String, String)> = route
            .query
            .iter()
            .filter(|(_, t)| {
                template::vars(t)
                    .iter()
                    .any(|v| matches!(v, Var::Page | Var::PageSize | Var::Offset | Var::Cursor))
            })
            .map(|(k, t)| (k, vars.render(t)))
            .collect();
        if !paged.is_empty() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = match paged.iter().find(|(p, _)| **p == k) {
                        Some((_, filled)) => filled.clone(),
                        None => v.into_owned(),
                    };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let headers = route
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), vars.render(v)))
            .collect();
        let body = route.body.as_ref().map(|b| {
            let mut b = vars.render_value(b);
            for (ptr, value) in at.body_params(&route.pagination) {
                template::set_pointer(&mut b, ptr, value);
            }
            encode_body(&b, route.body_format)
        });
        Call {
            method: route.method,
            url,
            headers,
            body,
            secrets: self.secrets,
        }
    }
}

/// A body as bytes with its content type; a form body is a flat object.
fn encode_body(b: &serde_json::Value, format: BodyFormat) -> (Vec<u8>, &'static str) {
    match format {
        BodyFormat::Json => (b.to_string().into_bytes(), "application/json"),
        BodyFormat::Form => {
            let mut f = url::form_urlencoded::Serializer::new(String::new());
            if let Some(o) = b.as_object() {
                for (k, v) in o {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    f.append_pair(k, &v);
                }
            }
            (f.finish().into_bytes(), "application/x-www-form-urlencoded")
        }
    }
}

/// The first request URL of a route for a client: base + path.
pub fn route_url(client: &Client, path: &str) -> Result<Url> {
    let base = client.base_url.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}{path}")).map_err(|e| {
        let shown = userinfo::text(&format!("{base}{path}")).into_owned();
        crate::exit::usage(format!("bad URL {shown}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `n` requests at `t`, each of which must be let go.
    fn go(w: &mut Window, n: usize, t: Instant) -> Vec<u64> {
        (0..n)
            .map(|_| match w.try_start(t) {
                Slot::Go(id) => id,
                s => panic!("{s:?}"),
            })
            .collect()
    }

    /// While the refused count is probed again, a retried request stays
    /// below it: the probe is a fresh request's, never a page refused once.
    #[test]
    fn a_retried_request_is_never_the_probe() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut w = Window::new(None, t0);
        let ids: Vec<u64> = go(&mut w, 8, t0);
        for &id in &ids[3..] {
            w.finish(id, at(2), true);
            w.refused(at(2), Duration::from_secs(1));
        }
        for &id in &ids[..3] {
            w.finish(id, at(20), false);
        }
        // Past the probe time the rate reaches the refused count (4).
        let probe = at(6050);
        for _ in 0..3 {
            assert!(matches!(w.try_start_as(probe, true), Slot::Go(_)));
        }
        assert!(w.rate().is_some_and(|r| r >= 4.0), "{:?}", w.rate());
        assert!(!matches!(w.try_start_as(probe, true), Slot::Go(_)));
        assert!(matches!(w.try_start_as(probe, false), Slot::Go(_)));
    }

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
    fn names_containing_a_secret_word_are_secret() {
        for n in [
            "client_password",
            "client_secret",
            "my_password",
            "passwd",
            "PWD",
            "x-api-key",
            "Signature",
            "sessionid",
            "SENHA_app",
            "chave",
            "Authorization",
            "access_token",
        ] {
            assert!(secret_name(n), "{n}");
        }
        for n in ["page", "data_inicial", "por_pagina", "cursor", "limit"] {
            assert!(!secret_name(n), "{n}");
        }
        let u = Url::parse(
            "https://api.test/x?page=2&client_password=a1&client_secret=b2&my_password=c3\
             &passwd=d4&pwd=e5&signature=f6&sessionid=g7",
        )
        .unwrap();
        let r = redact(&u, None);
        assert_eq!(
            r,
            "https://api.test/x?page=2&client_password=***&client_secret=***&my_password=***\
             &passwd=***&pwd=***&signature=***&sessionid=***"
        );
    }

    #[test]
    fn the_masker_hides_secret_values_wherever_they_appear() {
        let auth = ResolvedAuth::Query {
            param: "code".into(),
            value: SecretValue::new("s3cr3t/+v".into()),
        };
        let headers = vec![
            ("x-api-key".to_string(), "HEADERKEY".to_string()),
            ("Accept-Language".to_string(), "pt-BR".to_string()),
            ("x-sig".to_string(), "1".to_string()),
        ];
        let query = vec![("client_secret".to_string(), "QSECRET".to_string())];
        let m = Masker::new(&auth, &headers, &query);
        let body = "bad code s3cr3t/+v for HEADERKEY and QSECRET in pt-BR, 1 try";
        assert_eq!(
            m.text(body),
            "bad code *** for *** and *** in pt-BR, 1 try",
            "short values are masked by name only"
        );
        let u = Url::parse(
            "https://api.test/p/s3cr3t%2F%2Bv?code=s3cr3t%2F%2Bv&echo=s3cr3t%2F%2Bv&pwd=zz",
        )
        .unwrap();
        let shown = m.url(&u);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("zz"), "{shown}");
        // Bearer and Basic: the token and the password alone are secrets too.
        let bearer = ResolvedAuth::Header {
            name: "Authorization".into(),
            value: SecretValue::new("Bearer tok-123".into()),
        };
        assert_eq!(
            Masker::new(&bearer, &[], &[]).text("got tok-123"),
            "got ***"
        );
        let basic = ResolvedAuth::resolve(
            &Auth::Basic {
                user: "u".into(),
                password: crate::config::Secret::Env {
                    var: "P".into(),
                    key: "password_env".into(),
                },
            },
            &|_| Some("hunter22".into()),
        )
        .unwrap();
        assert_eq!(
            Masker::new(&basic, &[], &[]).text("password hunter22 refused"),
            "password *** refused"
        );
    }

    /// Starts at each millisecond offset, each request answered `lat_ms`
    /// later (never refused); the offsets at which requests really started.
    fn starts(w: &mut Window, t0: Instant, asks: &[u64], lat_ms: u64) -> Vec<u64> {
        let ms = |t: Instant| t.duration_since(t0).as_millis() as u64;
        let mut started = Vec::new();
        let mut pending: Vec<(u64, Instant)> = Vec::new();
        let mut queue: VecDeque<u64> = asks.iter().copied().collect();
        let mut now = t0;
        while let Some(&ask) = queue.front() {
            now = now.max(t0 + Duration::from_millis(ask));
            pending.retain(|&(id, end)| {
                let over = end <= now;
                if over {
                    w.finish(id, end, false);
                }
                !over
            });
            match w.try_start(now) {
                Slot::Go(id) => {
                    queue.pop_front();
                    started.push(ms(now));
                    pending.push((id, now + Duration::from_millis(lat_ms)));
                }
                Slot::WaitUntil(t) => now = t,
                Slot::WaitForAnEnd => {
                    now = pending
                        .iter()
                        .map(|p| p.1)
                        .min()
                        .expect("something in flight")
                }
            }
        }
        started
    }

    /// The most starts in any window of `width_ms` (a start exactly
    /// `width_ms` after another is in the next window).
    fn most_in_window(starts: &[u64], width_ms: u64) -> usize {
        starts
            .iter()
            .map(|&s| {
                starts
                    .iter()
                    .filter(|&&o| o <= s && s - o < width_ms)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn the_limit_is_n_starts_in_any_rolling_second() {
        let t0 = Instant::now();
        let mut w = Window::new(Some(20.0), t0);
        // 100 requests asked for at once, answered in 5 ms.
        let s = starts(&mut w, t0, &[0; 100], 5);
        assert_eq!(most_in_window(&s, 1000), 20, "{s:?}");
        // A burst of 20 at once is within the definition; the 21st waits
        // for a second after the first answer.
        assert_eq!(&s[..20], &[0; 20]);
        assert_eq!(s[20], 1005);
        // Held until a second after the response: even a server that
        // counts arrivals up to 5 ms late sees no 21st.
        assert_eq!(most_in_window(&s, 1005), 20, "{s:?}");
        // Spread asks never wait.
        let mut w = Window::new(Some(4.0), t0);
        let asks: Vec<u64> = (0..20).map(|i| i * 300).collect();
        assert_eq!(starts(&mut w, t0, &asks, 10), asks);
    }

    #[test]
    fn fractional_rates_round_down_and_slow_rates_space_out() {
        assert_eq!(pacing(20.0), (20, RATE_WINDOW));
        assert_eq!(pacing(2.5), (2, RATE_WINDOW));
        assert_eq!(pacing(0.5), (1, Duration::from_secs(2)));
        let t0 = Instant::now();
        let mut w = Window::new(Some(0.5), t0);
        assert_eq!(starts(&mut w, t0, &[0, 0, 0], 0), [0, 2000, 4000]);
        let mut w = Window::new(None, t0);
        assert_eq!(starts(&mut w, t0, &[0; 50], 0), [0; 50], "unlimited");
    }

    #[test]
    fn a_request_in_flight_holds_its_place() {
        let t0 = Instant::now();
        let mut w = Window::new(Some(1.0), t0);
        let Slot::Go(id) = w.try_start(t0) else {
            panic!("first")
        };
        let late = t0 + Duration::from_secs(5);
        assert_eq!(w.try_start(late), Slot::WaitForAnEnd);
        w.finish(id, late, false);
        assert_eq!(w.try_start(late), Slot::WaitUntil(late + RATE_WINDOW));
        assert!(matches!(w.try_start(late + RATE_WINDOW), Slot::Go(_)));
    }

    #[test]
    fn a_429_pauses_everyone_and_later_ones_extend_it() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut w = Window::new(Some(100.0), t0);
        let ids: Vec<u64> = go(&mut w, 4, t0);
        w.finish(ids[0], at(10), true);
        w.refused(at(10), Duration::from_millis(1000));
        assert_eq!(w.try_start(at(500)), Slot::WaitUntil(at(1010)));
        // A shorter pause from a later 429 does not shorten it...
        w.finish(ids[1], at(20), true);
        w.refused(at(20), Duration::from_millis(100));
        assert_eq!(w.try_start(at(500)), Slot::WaitUntil(at(1010)));
        // ...a longer one extends it.
        w.finish(ids[2], at(30), true);
        w.refused(at(30), Duration::from_millis(2000));
        w.finish(ids[3], at(40), false);
        assert_eq!(w.try_start(at(1500)), Slot::WaitUntil(at(2030)));
        assert!(matches!(w.try_start(at(2030)), Slot::Go(_)));
    }

    #[test]
    fn without_a_limit_a_429_sets_the_rate_the_server_let_through() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut w = Window::new(None, t0);
        // 8 at once: the server admits 3 and refuses 5, the refusals first.
        let ids: Vec<u64> = go(&mut w, 8, t0);
        for (i, &id) in ids[3..].iter().enumerate() {
            w.finish(id, at(2 + i as u64), true);
            w.refused(at(2 + i as u64), Duration::from_secs(1));
        }
        for &id in &ids[..3] {
            w.finish(id, at(20), false);
        }
        assert_eq!(w.rate(), Some(3.0));
        // After the pause, 3 per second.
        let s = starts(&mut w, t0, &[1006; 9], 5);
        assert_eq!(most_in_window(&s, 1000), 3, "{s:?}");
        // Each second without a 429 after the pause adds 10% (3 x 1.1^2 at
        // the last start)...
        assert!(
            w.rate().is_some_and(|r| r > 3.6 && r < 3.7),
            "{:?}",
            w.rate()
        );
        // ...but stays below the refused count (4) until the probe time,
        // 5 s after the pause (at 6006 ms)...
        let _ = w.try_start(at(5006));
        assert!(w.rate().is_some_and(|r| r < 4.0), "{:?}", w.rate());
        // ...then tries it.
        let _ = w.try_start(at(7006));
        assert!(w.rate().is_some_and(|r| r >= 4.0), "{:?}", w.rate());
        let mut w = Window::new(None, t0);
        let Slot::Go(id) = w.try_start(t0) else {
            panic!()
        };
        w.finish(id, at(1), true);
        w.refused(at(1), Duration::from_millis(1));
        assert_eq!(w.rate(), Some(1.0), "never below 1/s");
        // Creeps back to unlimited in the end.
        assert!(matches!(w.try_start(at(200_000)), Slot::Go(_)));
        assert_eq!(w.rate(), None);
    }

    #[test]
    fn a_refused_probe_doubles_the_holdoff_and_a_passed_one_clears_it() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut w = Window::new(None, t0);
        // The server admits 3 in a second and refuses the 4th.
        let refuse_4th = |w: &mut Window, from: u64| {
            let ids: Vec<u64> = (0..4)
                .map(|i| match w.try_start(at(from + i)) {
                    Slot::Go(id) => id,
                    s => panic!("{s:?}"),
                })
                .collect();
            for &id in &ids[..3] {
                w.finish(id, at(from + 10), false);
            }
            w.finish(ids[3], at(from + 10), true);
            w.refused(at(from + 10), Duration::from_secs(1));
        };
        refuse_4th(&mut w, 0);
        assert_eq!(w.rate(), Some(3.0));
        assert_eq!(w.ceiling, Some((4, at(1010) + PROBE_HOLDOFF)));
        // The probe at 4, once allowed, is refused: twice the holdoff.
        w.creep(at(6500));
        assert!(w.rate().is_some_and(|r| r >= 4.0), "{:?}", w.rate());
        refuse_4th(&mut w, 6500);
        assert_eq!(w.ceiling, Some((4, at(7510) + 2 * PROBE_HOLDOFF)));
        assert_eq!(w.rate(), Some(3.0));
        // A probe that goes through a whole window clears the ceiling.
        w.creep(at(30_000));
        assert!(w.rate().is_some_and(|r| r >= 4.0), "{:?}", w.rate());
        w.creep(at(32_000));
        assert_eq!(w.ceiling, None);
        assert_eq!(w.holdoff, PROBE_HOLDOFF);
    }

    #[test]
    fn a_configured_limit_is_never_exceeded_while_adapting() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut w = Window::new(Some(5.0), t0);
        let ids: Vec<u64> = go(&mut w, 5, t0);
        w.finish(ids[4], at(1), true);
        w.refused(at(1), Duration::ZERO);
        assert_eq!(w.rate(), Some(5.0), "Retry-After: 0 is no rate signal");
        w.refused(at(1), Duration::from_millis(1));
        assert_eq!(w.rate(), Some(4.0), "what the server let through");
        let _ = w.try_start(at(60_000));
        assert_eq!(
            w.rate(),
            Some(5.0),
            "back up to the configured rate, no further"
        );
    }

    #[test]
    fn acquire_honours_quit_and_the_pause() {
        use std::sync::atomic::Ordering;
        let quit = AtomicBool::new(false);
        let l = Limiter::new(None);
        let p = l.acquire_as(&quit, false).expect("unlimited");
        let t1 = Instant::now();
        p.finish(Some(Duration::from_millis(50)));
        drop(l.acquire_as(&quit, false).expect("after the pause"));
        assert!(t1.elapsed() >= Duration::from_millis(45));
        let p = l.acquire_as(&quit, false).expect("again");
        p.finish(Some(Duration::from_secs(60)));
        quit.store(true, Ordering::Relaxed);
        let t2 = Instant::now();
        assert!(
            l.acquire_as(&quit, false).is_none(),
            "quit interrupts the wait"
        );
        assert!(t2.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_post_body_gets_its_placeholders_and_the_page_pointer() {
        let cfg = crate::config::parse(
            r#"{"clients": {"1": {"base_url": "http://api.test/x", "query": {"t": "{env:TOK}"}}},
                "routes": {"r": {"path": "/p", "records": "", "method": "POST",
                  "query": {"n": "{page}"},
                  "body": {"k": "{env:TOK}", "param": [{"pagina": 1, "de": "{start}", "ate": "{end}"}]},
                  "date_params": {"format": "%d/%m/%Y"},
                  "pagination": {"type": "page", "param": "/param/0/pagina"}}}}"#,
            std::path::Path::new("atlas.json"),
        )
        .unwrap();
        let (client, route) = cfg.route("1", "r").unwrap();
        let secrets =
            Secrets::resolve([("{env:TOK}", "k".to_string())], &|_| Some("tk".into())).unwrap();
        let day = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();
        let req =
            SliceRequest::new(client, route, &ResolvedAuth::None, &secrets, day, day).unwrap();
        let pager = crate::paginate::Pager::new(&route.pagination, req.first_url());
        let mut pos = pager.position();
        assert_eq!(pos.page, Some(1));
        pos.page = Some(2);
        let call = req.call(pager.current(), &pos);
        assert_eq!(call.url.as_str(), "http://api.test/x/p?t=tk&n=2");
        let (body, kind) = call.body.as_ref().unwrap();
        assert_eq!(*kind, "application/json");
        let body: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"k": "tk", "param": [{"pagina": 2, "de": "01/03/2025", "ate": "01/03/2025"}]})
        );
        assert_eq!(call.masker(&ResolvedAuth::None).text("eco tk"), "eco ***");
    }

    #[test]
    fn snippet_is_one_line_and_bounded() {
        assert_eq!(snippet(b"a\nb\r\nc", 10), "a b  c");
        assert_eq!(snippet("ção".repeat(100).as_bytes(), 4), "ção\u{e7}");
    }
}
