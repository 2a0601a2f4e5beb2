//! `--hostile SEED`: data answers drawn from a catalogue of bad answers (`CATALOGUE`, listed
//! by `--hostile-list`), mixed with good pages. Which answer is bad, and how, depends only
//! on (SEED, URL, attempt): the attempt is the count of earlier requests for the same URL
//! (path and query without the auth parameter, as `--fail-first` counts them), so a rerun of
//! the same requests meets the same answers. `--hostile-rate` is the share of bad answers
//! (default 0.5), `--hostile-kinds` restricts the kinds (a word names a kind, or every kind
//! whose name starts with the word and `_`). Only data requests of `/{kind}/{route}` whose
//! good answer is a 200 are touched: the client's own mistakes (400, 401) stay visible.
//!
//! What a test may rely on, "no row the API did not send": every bad answer is either
//! *detectably bad* (not HTTP, not a 2xx, not JSON, not the envelope, a framing or encoding
//! error, a pause asked for) or *equivalent* to the good answer: the same records under JSON
//! semantics, where the last of a repeated key wins (RFC 8259 leaves it open; PostgreSQL's
//! JSONB, serde_json and atlas all keep the last). No bad answer holds a record the good one
//! lacks, nor lacks one without being detectably bad: no empty 200, no 204, no total smaller
//! than the truth, no charset label that would decode the body into other text. So:
//! - `dup_keys` and `big_numbers` put their junk *before* the real members: a shadow copy of
//!   the envelope (records array with a junk record, totals of 1) and shadow members in each
//!   record (an out-of-period date, 1e400, a 10,000-digit number, 1e999999). A client that
//!   keeps the first of a repeated key stores rows the API did not send or misses records.
//! - `not_objects` puts scalars and arrays among the records. They are what the API sent,
//!   yet no record the good answer has: a test that checks rows against the good records
//!   must have such elements refused or skipped (e.g. `undated: skip`, as they carry no date).
//! - `gzip_bomb` inflates to `--hostile-bomb-mb` MiB of spaces and then the good body: valid
//!   JSON with exactly the good records, harmful only to a client without a limit.
//! - Redirects lead to the same URL on another host name (the same server), a closed port,
//!   or a loop between two URLs that never ends.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::net::TcpStream;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cli::Args;
use crate::gzip_bomb::bomb;
use crate::http::{reason_phrase, Reply, JSON};
use crate::state::lock;

/// The longest a `drip` answer drips before the connection is closed: a client that neither
/// times out nor hangs up does not keep a server thread forever.
const DRIP_LIMIT: Duration = Duration::from_secs(120);
/// The query parameter that marks the two URLs of a `redirect_loop`.
const LOOP_PARAM: &str = "_hostile_loop";
/// Digits of the long numbers of `big_numbers` and `total_odd`.
const LONG_DIGITS: usize = 10_000;
/// Levels of `deep_nesting`.
const DEEP: usize = 10_000;
/// Largest `--hostile-bomb-mb`: its deflate blocks (a thousandth) stay in memory.
pub const MAX_BOMB_MB: u64 = 65_536;

/// An extreme value of a number header (`Retry-After`, rate-limit headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Odd {
    Huge,
    Float,
    Negative,
    Nan,
    Empty,
    NonAscii,
    Repeated,
    Long,
    FarDate,
}

impl Odd {
    /// The header's value, twice with two values for `Repeated`.
    fn values(self) -> Vec<Vec<u8>> {
        let one = |s: &str| vec![s.as_bytes().to_vec()];
        match self {
            Odd::Huge => one("99999999999999999999"),
            Odd::Float => one("1e30"),
            Odd::Negative => one("-5"),
            Odd::Nan => one("NaN"),
            Odd::Empty => one(""),
            Odd::NonAscii => one("３０ segundos"),
            Odd::Repeated => vec![b"1".to_vec(), b"99999999999999999999".to_vec()],
            Odd::Long => vec![vec![b'9'; 64 * 1024]],
            Odd::FarDate => one("Fri, 31 Dec 9999 23:59:59 GMT"),
        }
    }
}

/// One kind of bad answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    RetryAfter(Odd),
    XRateLimit(Odd),
    RateLimit(Odd),
    LinkMalformed,
    ContentType,
    HeaderNonAscii,
    HeaderLong,
    HeaderMany,
    LengthLarger,
    LengthSmaller,
    LengthMissing,
    LengthConflict,
    LengthInvalid,
    ChunkedBad,
    Truncated,
    Drip,
    GzipBomb,
    GzipBad,
    EncodingUnknown,
    InvalidUtf8,
    NotJson,
    DeepNesting,
    DupKeys,
    BigNumbers,
    TotalOdd,
    NotObjects,
    DataNotArray,
    RedirectLoop,
    RedirectCrossHost,
    RedirectClosedPort,
    RedirectNoLocation,
    RedirectBadLocation,
    Status1xx,
    Status5xx,
    StatusOdd,
    StatusLineGarbage,
}

/// A catalogue entry: the kind's word and what it answers.
pub struct Entry {
    pub word: &'static str,
    pub kind: Kind,
    pub what: &'static str,
}

const fn e(word: &'static str, kind: Kind, what: &'static str) -> Entry {
    Entry { word, kind, what }
}

const RA: &str = "429 or 503 with this Retry-After";
const XR: &str =
    "the good page (or a 429) with X-RateLimit-Remaining: 0 and this X-RateLimit-Reset";
const IR: &str = "the good page (or a 429) with RateLimit-Remaining: 0 and this RateLimit-Reset";

/// Every kind of bad answer. Header values: huge 99999999999999999999, float 1e30,
/// negative -5, nan NaN, empty, non_ascii "３０ segundos", repeated (1, then huge), long
/// (65,536 nines), far_date Fri, 31 Dec 9999 23:59:59 GMT.
#[rustfmt::skip]
pub const CATALOGUE: &[Entry] = &[
    e("retry_after_huge", Kind::RetryAfter(Odd::Huge), RA),
    e("retry_after_float", Kind::RetryAfter(Odd::Float), RA),
    e("retry_after_negative", Kind::RetryAfter(Odd::Negative), RA),
    e("retry_after_nan", Kind::RetryAfter(Odd::Nan), RA),
    e("retry_after_empty", Kind::RetryAfter(Odd::Empty), RA),
    e("retry_after_non_ascii", Kind::RetryAfter(Odd::NonAscii), RA),
    e("retry_after_repeated", Kind::RetryAfter(Odd::Repeated), RA),
    e("retry_after_long", Kind::RetryAfter(Odd::Long), RA),
    e("retry_after_far_date", Kind::RetryAfter(Odd::FarDate), RA),
    e("x_ratelimit_huge", Kind::XRateLimit(Odd::Huge), XR),
    e("x_ratelimit_float", Kind::XRateLimit(Odd::Float), XR),
    e("x_ratelimit_negative", Kind::XRateLimit(Odd::Negative), XR),
    e("x_ratelimit_nan", Kind::XRateLimit(Odd::Nan), XR),
    e("x_ratelimit_empty", Kind::XRateLimit(Odd::Empty), XR),
    e("x_ratelimit_non_ascii", Kind::XRateLimit(Odd::NonAscii), XR),
    e("x_ratelimit_repeated", Kind::XRateLimit(Odd::Repeated), XR),
    e("x_ratelimit_long", Kind::XRateLimit(Odd::Long), XR),
    e("x_ratelimit_far_date", Kind::XRateLimit(Odd::FarDate), XR),
    e("ratelimit_huge", Kind::RateLimit(Odd::Huge), IR),
    e("ratelimit_float", Kind::RateLimit(Odd::Float), IR),
    e("ratelimit_negative", Kind::RateLimit(Odd::Negative), IR),
    e("ratelimit_nan", Kind::RateLimit(Odd::Nan), IR),
    e("ratelimit_empty", Kind::RateLimit(Odd::Empty), IR),
    e("ratelimit_non_ascii", Kind::RateLimit(Odd::NonAscii), IR),
    e("ratelimit_repeated", Kind::RateLimit(Odd::Repeated), IR),
    e("ratelimit_long", Kind::RateLimit(Odd::Long), IR),
    e("ratelimit_far_date", Kind::RateLimit(Odd::FarDate), IR),
    e("link_malformed", Kind::LinkMalformed, "the good page with malformed Link entries before its own"),
    e("content_type", Kind::ContentType, "the good page labelled UTF-16, an unknown or empty charset, quoted, repeated, non-ASCII, text/html or nothing"),
    e("header_non_ascii", Kind::HeaderNonAscii, "the good page with a header whose value is UTF-8 or Latin-1 bytes, or whose name is not a token"),
    e("header_long", Kind::HeaderLong, "the good page with one 64 KiB header"),
    e("header_many", Kind::HeaderMany, "the good page with 10,000 headers"),
    e("length_larger", Kind::LengthLarger, "Content-Length larger than the body, the connection kept open"),
    e("length_smaller", Kind::LengthSmaller, "Content-Length half the body, all of it sent (the rest poisons the connection)"),
    e("length_missing", Kind::LengthMissing, "no Content-Length: the body ends when the connection closes"),
    e("length_conflict", Kind::LengthConflict, "two different Content-Length headers"),
    e("length_invalid", Kind::LengthInvalid, "Content-Length -1, abc, 1e3, 99999999999999999999, \"12 34\" or empty"),
    e("chunked_bad", Kind::ChunkedBad, "chunked framing with a bad size, a short chunk, no last chunk, or both chunked and Content-Length"),
    e("truncated", Kind::Truncated, "a well-framed body that is the first half of the good one"),
    e("drip", Kind::Drip, "the good page, one body byte per second (for at most 120 s, then closed)"),
    e("gzip_bomb", Kind::GzipBomb, "Content-Encoding: gzip inflating to --hostile-bomb-mb MiB of spaces, then the good page"),
    e("gzip_bad", Kind::GzipBad, "Content-Encoding: gzip over a plain body, a cut stream or a wrong CRC"),
    e("encoding_unknown", Kind::EncodingUnknown, "the good page, plain, labelled Content-Encoding br, zstd or x-hostil"),
    e("invalid_utf8", Kind::InvalidUtf8, "the good page with invalid UTF-8 (bad bytes, overlong, a surrogate) outside the records"),
    e("not_json", Kind::NotJson, "HTML, plain text, nothing, binary, JSONP, a BOM, trailing garbage, single quotes or a comment"),
    e("deep_nesting", Kind::DeepNesting, "10,000 levels of arrays or objects beside (or around) the records"),
    e("dup_keys", Kind::DupKeys, "repeated keys: a shadow envelope (a junk record, totals of 1) and shadow members in each record, all before the real ones"),
    e("big_numbers", Kind::BigNumbers, "1e400, 10,000-digit, -0 and 1e999999 numbers in the envelope and as shadow members of each record"),
    e("total_odd", Kind::TotalOdd, "the page's totals as 1e400, 99999999999999999999, 4294967296, -1, 1.5, 10,000 digits or a string"),
    e("not_objects", Kind::NotObjects, "numbers, strings, null, booleans and arrays among the records"),
    e("data_not_array", Kind::DataNotArray, "the records array as a string, a number or an object of the records"),
    e("redirect_loop", Kind::RedirectLoop, "302 to a URL that redirects back to another one, forever"),
    e("redirect_cross_host", Kind::RedirectCrossHost, "301/302/307/308 to the same URL under another host name (localhost or 127.0.0.1)"),
    e("redirect_closed_port", Kind::RedirectClosedPort, "302 to the same URL on 127.0.0.1 port 1"),
    e("redirect_no_location", Kind::RedirectNoLocation, "301/302/303/307/308 without Location"),
    e("redirect_bad_location", Kind::RedirectBadLocation, "302 to an invalid, empty, javascript: or ftp: Location"),
    e("status_1xx", Kind::Status1xx, "100, 102 and 103 interim answers before the good one"),
    e("status_5xx", Kind::Status5xx, "500, 502, 503 or 504 with an HTML, JSON, empty or the good page's body"),
    e("status_odd", Kind::StatusOdd, "418, 451, 599 or 999 with an error body; 206 or 299 with the good page"),
    e("status_line_garbage", Kind::StatusLineGarbage, "a status line that is not HTTP/1.1 NNN, or none"),
];

impl Kind {
    pub fn word(self) -> &'static str {
        CATALOGUE
            .iter()
            .find(|e| e.kind == self)
            .map_or("?", |e| e.word)
    }
}

/// `--hostile-kinds`: the kinds a bad answer is drawn from.
#[derive(Clone, Debug)]
pub struct HostileKinds(pub Vec<Kind>);

impl HostileKinds {
    pub fn all() -> Self {
        Self(CATALOGUE.iter().map(|e| e.kind).collect())
    }
}

impl FromStr for HostileKinds {
    type Err = String;
    /// Each word names a kind, or every kind whose name starts with the word and `_`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut kinds = Vec::new();
        for word in s.split(',').map(str::trim) {
            let found: Vec<Kind> = CATALOGUE
                .iter()
                .filter(|e| {
                    e.word == word
                        || (!word.is_empty()
                            && e.word
                                .strip_prefix(word)
                                .is_some_and(|r| r.starts_with('_')))
                })
                .map(|e| e.kind)
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "unknown hostile kind {word:?} (see --hostile-list)"
                ));
            }
            for k in found {
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
        }
        Ok(Self(kinds))
    }
}

/// The catalogue as `--hostile-list` prints it.
pub fn catalogue_text() -> String {
    let mut out = String::from(
        "hostile kinds (--hostile-kinds takes names or prefixes such as retry_after, length, redirect):\n",
    );
    for e in CATALOGUE {
        out.push_str(&format!("  {:<24} {}\n", e.word, e.what));
    }
    out.push_str(
        "header values: huge 99999999999999999999, float 1e30, negative -5, nan NaN, empty, \
         non_ascii \"３０ segundos\", repeated (1 then huge), long (65,536 nines), \
         far_date Fri, 31 Dec 9999 23:59:59 GMT\n",
    );
    out
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a: a URL's hash that does not change between builds (unlike `DefaultHasher`'s).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// The draw for one request: `None` for a good answer, else the kind and a number that
/// picks among the kind's variants. Pure: the same inputs always draw the same.
pub fn draw(seed: u64, rate: f64, kinds: &[Kind], url: &str, attempt: u64) -> Option<(Kind, u64)> {
    if kinds.is_empty() {
        return None;
    }
    let h = splitmix64(seed ^ splitmix64(fnv1a(url) ^ splitmix64(attempt)));
    let unit = (h >> 11) as f64 / (1u64 << 53) as f64;
    if unit >= rate {
        return None;
    }
    let k = splitmix64(h);
    Some((kinds[(k % kinds.len() as u64) as usize], splitmix64(k)))
}

/// The bytes that go on the wire instead of a good reply.
pub struct Wire {
    pub kind: Kind,
    /// The status logged and counted (the final one, after any 1xx).
    pub status: u16,
    /// Interim answers, status line, headers and the blank line.
    pub head: Vec<u8>,
    pub body: Vec<u8>,
    /// The body goes one byte per second.
    pub drip: bool,
    /// The connection is closed after it (else kept for the next request).
    pub close: bool,
}

/// A head under construction; header values are bytes, so they can be anything.
struct Head(Vec<u8>);

impl Head {
    fn line(status_line: &str) -> Head {
        let mut h = Head(format!("{status_line}\r\n").into_bytes());
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
        h = h.h("Date", date.to_string());
        h
    }

    fn status(status: u16) -> Head {
        Head::line(&format!("HTTP/1.1 {status} {}", reason_phrase(status)))
    }

    fn h(mut self, name: &str, value: impl AsRef<[u8]>) -> Head {
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b": ");
        self.0.extend_from_slice(value.as_ref());
        self.0.extend_from_slice(b"\r\n");
        self
    }

    fn json(self) -> Head {
        self.h("Content-Type", JSON)
    }

    fn len(self, n: usize) -> Head {
        self.h("Content-Length", n.to_string())
    }

    fn done(mut self) -> Vec<u8> {
        self.0.extend_from_slice(b"\r\n");
        self.0
    }
}

/// The good answer the bad one is made from, and where the request came from.
pub struct Good<'a> {
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// The good reply's extra headers (`Link`, quota headers).
    pub headers: &'a [(&'static str, String)],
    /// The request target as sent (path and query).
    pub target: &'a str,
    /// `host:port` the client asked for.
    pub host: &'a str,
    /// The port the server listens on.
    pub port: u16,
}

impl Good<'_> {
    /// The good status line and headers, without framing.
    fn head(&self, status_line: &str) -> Head {
        let mut h = Head::line(status_line).h("Content-Type", self.content_type);
        for (name, value) in self.headers {
            h = h.h(name, value);
        }
        h
    }
}

fn wire(kind: Kind, status: u16, head: Vec<u8>, body: Vec<u8>) -> Wire {
    Wire {
        kind,
        status,
        head,
        body,
        drip: false,
        close: false,
    }
}

fn pick<T: Copy>(v: u64, items: &[T]) -> T {
    items[(v % items.len() as u64) as usize]
}

fn error_body(message: &str) -> Vec<u8> {
    serde_json::json!({ "erro": message })
        .to_string()
        .into_bytes()
}

/// `member` inserted as the first member of an object body; `None` when the body is not
/// an object (a bare records array).
fn first_member(body: &[u8], member: &[u8]) -> Option<Vec<u8>> {
    let rest = body.strip_prefix(b"{")?;
    let mut out = Vec::with_capacity(body.len() + member.len() + 2);
    out.push(b'{');
    out.extend_from_slice(member);
    if rest.first() != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// `with` inserted before each occurrence of `at` (the start of each record's members).
fn before_each(body: &[u8], at: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() * 2);
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(at) {
            out.extend_from_slice(with);
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

/// Where the records' members start: every record of the sample API opens with `numero`.
const RECORD_START: &[u8] = b"\"numero\":";

fn long_number() -> String {
    let mut n = String::with_capacity(LONG_DIGITS);
    n.push('9');
    n.extend(std::iter::repeat_n('8', LONG_DIGITS - 1));
    n
}

/// The settings of `--hostile` and the attempts seen per URL.
pub struct Hostile {
    seed: u64,
    rate: f64,
    kinds: Vec<Kind>,
    bomb_bytes: u64,
    attempts: Mutex<HashMap<String, u64>>,
    /// Bad answers served, by kind, for `/_stats`.
    served: Mutex<BTreeMap<&'static str, u64>>,
}

impl Hostile {
    pub fn new(args: &Args) -> Option<Hostile> {
        Some(Hostile {
            seed: args.hostile?,
            rate: args.hostile_rate,
            kinds: args.hostile_kinds.0.clone(),
            bomb_bytes: args.hostile_bomb_mb * 1024 * 1024,
            attempts: Mutex::new(HashMap::new()),
            served: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn served(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.served).clone()
    }

    /// `reply` (a data request's, for URL `key`) turned bad when the draw says so.
    pub fn apply(&self, mut reply: Reply, key: &str, good: GoodSource<'_>) -> Reply {
        if reply.status != 200 {
            return reply;
        }
        let looping = good.target.contains(&format!("{LOOP_PARAM}="));
        let drawn = if looping {
            Some((Kind::RedirectLoop, 0))
        } else {
            let attempt = {
                let mut attempts = lock(&self.attempts);
                let n = attempts.entry(key.to_string()).or_default();
                *n += 1;
                *n - 1
            };
            draw(self.seed, self.rate, &self.kinds, key, attempt)
        };
        let Some((kind, v)) = drawn else {
            return reply;
        };
        let g = Good {
            content_type: reply.content_type,
            body: &reply.body,
            headers: &reply.headers,
            target: good.target,
            host: good.host,
            port: good.port,
        };
        let w = self.answer(kind, v, &g);
        *lock(&self.served).entry(kind.word()).or_default() += 1;
        reply.status = w.status;
        reply.wire = Some(Box::new(w));
        reply
    }

    /// The bad answer of `kind`, variant `v`, made from the good one.
    pub fn answer(&self, kind: Kind, v: u64, g: &Good<'_>) -> Wire {
        let body = g.body.to_vec();
        match kind {
            Kind::RetryAfter(odd) => {
                let status = pick(v, &[429, 503]);
                let b = error_body("muitas requisições");
                let mut h = Head::status(status).json().len(b.len());
                for value in odd.values() {
                    h = h.h("Retry-After", value);
                }
                wire(kind, status, h.done(), b)
            }
            Kind::XRateLimit(odd) | Kind::RateLimit(odd) => {
                let prefix = match kind {
                    Kind::XRateLimit(_) => "X-RateLimit",
                    _ => "RateLimit",
                };
                let refused = !v.is_multiple_of(2);
                let (status, b, mut h) = if refused {
                    let b = error_body("cota de requisições esgotada");
                    let h = Head::status(429).json().len(b.len());
                    (429, b, h)
                } else {
                    (200, body.clone(), g.head("HTTP/1.1 200 OK").len(body.len()))
                };
                h = h.h(&format!("{prefix}-Limit"), "100");
                h = h.h(&format!("{prefix}-Remaining"), "0");
                for value in odd.values() {
                    h = h.h(&format!("{prefix}-Reset"), value);
                }
                wire(kind, status, h.done(), b)
            }
            Kind::LinkMalformed => {
                let garbage: &[&str] = &[
                    "<http://[::1>; rel=\"next\"",
                    "<>; rel=\"prev\"",
                    "<sem-fim; rel=\"last\"",
                    ";;;, ,",
                    "rel=next",
                    "<javascript:alert(1)>; rel=\"first\"",
                ];
                let h = Head::status(200).h("Content-Type", g.content_type);
                let h = h.h("Link", pick(v, garbage)).h("Link", garbage.join(", "));
                let mut h = h.len(body.len());
                for (name, value) in g.headers {
                    h = h.h(name, value);
                }
                wire(kind, 200, h.done(), body)
            }
            Kind::ContentType => {
                let labels: &[&[&[u8]]] = &[
                    &[b"application/json; charset=UTF-16"],
                    &[b"application/json; charset=x-klingon"],
                    &[b"application/json; charset="],
                    &[b"application/json; charset=\"utf-8\""],
                    &[b"text/html; charset=utf-8"],
                    &[],
                    &[b"application/json; charset=utf-8; charset=utf-8"],
                    &["application/json; charset=utf\u{2011}8".as_bytes()],
                    &[b"application/json", b"text/plain"],
                ];
                let mut h = Head::status(200);
                for label in pick(v, labels) {
                    h = h.h("Content-Type", label);
                }
                for (name, value) in g.headers {
                    h = h.h(name, value);
                }
                wire(kind, 200, h.len(body.len()).done(), body)
            }
            Kind::HeaderNonAscii => {
                let odd: &[(&[u8], &[u8])] = &[
                    (b"X-Hostil", "ação ✓".as_bytes()),
                    (b"X-Hostil", b"a\xE7\xE3o"),
                    ("X-Hostíl".as_bytes(), b"1"),
                    (b"X-Hostil", b"a\x00b"),
                ];
                let (name, value) = pick(v, odd);
                let mut h = g.head("HTTP/1.1 200 OK").len(body.len());
                h.0.extend_from_slice(name);
                h.0.extend_from_slice(b": ");
                h.0.extend_from_slice(value);
                h.0.extend_from_slice(b"\r\n");
                wire(kind, 200, h.done(), body)
            }
            Kind::HeaderLong => {
                let h = g.head("HTTP/1.1 200 OK").len(body.len());
                let h = h.h("X-Hostil-Padding", vec![b'a'; 65_536]);
                wire(kind, 200, h.done(), body)
            }
            Kind::HeaderMany => {
                let mut h = g.head("HTTP/1.1 200 OK").len(body.len());
                for i in 0..10_000 {
                    h = h.h(&format!("X-Hostil-{i}"), i.to_string());
                }
                wire(kind, 200, h.done(), body)
            }
            Kind::LengthLarger => {
                let extra = 1000 + (v % 1000) as usize;
                let h = g.head("HTTP/1.1 200 OK").len(body.len() + extra);
                wire(kind, 200, h.done(), body)
            }
            Kind::LengthSmaller => {
                let h = g.head("HTTP/1.1 200 OK").len(body.len() / 2);
                wire(kind, 200, h.done(), body)
            }
            Kind::LengthMissing => {
                let mut h = g.head("HTTP/1.1 200 OK");
                if v.is_multiple_of(2) {
                    h = h.h("Connection", "close");
                }
                Wire {
                    close: true,
                    ..wire(kind, 200, h.done(), body)
                }
            }
            Kind::LengthConflict => {
                let (a, b) = (body.len(), body.len() + 7);
                let (first, second) = if v.is_multiple_of(2) { (a, b) } else { (b, a) };
                let h = g.head("HTTP/1.1 200 OK").len(first).len(second);
                Wire {
                    close: true,
                    ..wire(kind, 200, h.done(), body)
                }
            }
            Kind::LengthInvalid => {
                let value = pick(
                    v,
                    &["-1", "abc", "1e3", "99999999999999999999", "12 34", ""],
                );
                let h = g.head("HTTP/1.1 200 OK").h("Content-Length", value);
                Wire {
                    close: true,
                    ..wire(kind, 200, h.done(), body)
                }
            }
            Kind::ChunkedBad => {
                let chunk = |size: &str, data: &[u8]| {
                    let mut c = format!("{size}\r\n").into_bytes();
                    c.extend_from_slice(data);
                    c.extend_from_slice(b"\r\n");
                    c
                };
                let hex = format!("{:x}", body.len());
                let h = g.head("HTTP/1.1 200 OK").h("Transfer-Encoding", "chunked");
                let (h, b) = match v % 4 {
                    0 => (h, chunk("zz", &body)),
                    1 => (h, chunk(&format!("{:x}", body.len() + 100), &body)),
                    2 => (h, chunk(&hex, &body)), // no last chunk
                    _ => (h.len(body.len()), {
                        let mut b = chunk(&hex, &body);
                        b.extend_from_slice(b"0\r\n\r\n");
                        b
                    }),
                };
                Wire {
                    close: true,
                    ..wire(kind, 200, h.done(), b)
                }
            }
            Kind::Truncated => {
                let cut = body[..body.len() / 2].to_vec();
                let h = g.head("HTTP/1.1 200 OK").len(cut.len());
                wire(kind, 200, h.done(), cut)
            }
            Kind::Drip => {
                let h = g.head("HTTP/1.1 200 OK").len(body.len());
                Wire {
                    drip: true,
                    close: true,
                    ..wire(kind, 200, h.done(), body)
                }
            }
            Kind::GzipBomb => {
                let gz = bomb(self.bomb_bytes, &body);
                let h = g.head("HTTP/1.1 200 OK").h("Content-Encoding", "gzip");
                wire(kind, 200, h.len(gz.len()).done(), gz)
            }
            Kind::GzipBad => {
                let gz = bomb(1, &body);
                let b = match v % 3 {
                    0 => body,
                    1 => gz[..gz.len() / 2].to_vec(),
                    _ => {
                        let mut bad = gz;
                        let crc_at = bad.len() - 8;
                        bad[crc_at] ^= 0xFF;
                        bad
                    }
                };
                let h = g.head("HTTP/1.1 200 OK").h("Content-Encoding", "gzip");
                wire(kind, 200, h.len(b.len()).done(), b)
            }
            Kind::EncodingUnknown => {
                let coding = pick(v, &["br", "zstd", "x-hostil"]);
                let h = g.head("HTTP/1.1 200 OK").h("Content-Encoding", coding);
                wire(kind, 200, h.len(body.len()).done(), body)
            }
            Kind::InvalidUtf8 => {
                let bad: &[u8] = pick(
                    v,
                    &[&b"\xFF\xFE"[..], b"\xC0\xAF", b"\xED\xA0\x80", b"\xC3("],
                );
                let mut member = b"\"lixo\":\"".to_vec();
                member.extend_from_slice(bad);
                member.push(b'"');
                let b = first_member(&body, &member).unwrap_or_else(|| {
                    let mut b = body.clone();
                    b.extend_from_slice(bad);
                    b
                });
                let h = g.head("HTTP/1.1 200 OK").len(b.len());
                wire(kind, 200, h.done(), b)
            }
            Kind::NotJson => {
                let b = match v % 9 {
                    0 => b"<html><body><h1>Erro</h1></body></html>".to_vec(),
                    1 => b"OK".to_vec(),
                    2 => Vec::new(),
                    3 => (0..=255u8).collect(),
                    4 => [&b"callback("[..], &body, b");"].concat(),
                    5 => [&b"\xEF\xBB\xBF"[..], &body].concat(),
                    6 => [&body[..], b" lixo"].concat(),
                    7 => b"{'data': []}".to_vec(),
                    _ => [&b"// comentario\n"[..], &body].concat(),
                };
                let h = g.head("HTTP/1.1 200 OK").len(b.len());
                wire(kind, 200, h.done(), b)
            }
            Kind::DeepNesting => {
                let (open, close) = match v % 2 {
                    0 => ("[", "]"),
                    _ => ("{\"a\":", "}"),
                };
                let mut deep = open.repeat(DEEP).into_bytes();
                deep.extend_from_slice(b"0");
                deep.extend_from_slice(close.repeat(DEEP).as_bytes());
                let member = [&b"\"lixo\":"[..], &deep].concat();
                let b = first_member(&body, &member).unwrap_or_else(|| {
                    [
                        open.repeat(DEEP).as_bytes(),
                        &body,
                        close.repeat(DEEP).as_bytes(),
                    ]
                    .concat()
                });
                let h = g.head("HTTP/1.1 200 OK").len(b.len());
                wire(kind, 200, h.done(), b)
            }
            Kind::DupKeys | Kind::BigNumbers => {
                let long = long_number();
                let (envelope, record) = if kind == Kind::DupKeys {
                    (
                        shadow_envelope(&body),
                        "\"data_pedido\":\"1999-12-31\",\"numero\":-1,\"valor_total\":\"lixo\",\"itens\":null,\"cliente\":[],".to_string(),
                    )
                } else {
                    (
                        format!("\"hostil_grande\":1e400,\"hostil_longo\":{long},\"hostil_zero\":-0,\"hostil_fora\":1e999999,\"hostil_fracao\":0.{long}"),
                        format!("\"valor_total\":1e400,\"numero\":{long},\"itens\":-0,\"observacao\":1e999999,\"situacao\":-{long}.5e-99999,"),
                    )
                };
                let b = before_each(&body, RECORD_START, record.as_bytes());
                let b = match envelope.is_empty() {
                    true => b,
                    false => first_member(&b, envelope.as_bytes()).unwrap_or(b),
                };
                let h = g.head("HTTP/1.1 200 OK").len(b.len());
                wire(kind, 200, h.done(), b)
            }
            Kind::TotalOdd => {
                let long = long_number();
                let value = pick(
                    v,
                    &[
                        "1e400",
                        "99999999999999999999",
                        "4294967296",
                        "-1",
                        "1.5",
                        &long,
                        "\"\"",
                    ],
                );
                let b = odd_totals(&body, value);
                let h = g.head("HTTP/1.1 200 OK").len(b.len());
                wire(kind, 200, h.done(), b)
            }
            Kind::NotObjects => {
                let junk = pick(
                    v,
                    &[
                        "1,",
                        "\"texto\",",
                        "null,",
                        "true,",
                        "[],",
                        "-0.5,",
                        "1,\"texto\",null,false,[{}],",
                    ],
                );
                let b = insert_after_records_open(&body, junk.as_bytes());
                let h = g.head("HTTP/1.1 200 OK").len(b.len());
                wire(kind, 200, h.done(), b)
            }
            Kind::DataNotArray => {
                let b = data_not_array(&body, v);
                let h = g.head("HTTP/1.1 200 OK").len(b.len());
                wire(kind, 200, h.done(), b)
            }
            Kind::RedirectLoop => {
                let (path, query) = g.target.split_once('?').unwrap_or((g.target, ""));
                let mut next = 0;
                let mut kept: Vec<&str> = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    match pair
                        .strip_prefix(LOOP_PARAM)
                        .and_then(|r| r.strip_prefix('='))
                    {
                        Some(n) => next = u8::from(n != "1"),
                        None => kept.push(pair),
                    }
                }
                kept.push(if next == 1 {
                    "_hostile_loop=1"
                } else {
                    "_hostile_loop=0"
                });
                let location = format!("{path}?{}", kept.join("&"));
                redirect(kind, 302, Some(location.as_bytes()))
            }
            Kind::RedirectCrossHost => {
                let other = if g.host.starts_with("127.0.0.1") {
                    "localhost"
                } else {
                    "127.0.0.1"
                };
                let location = format!("http://{other}:{}{}", g.port, g.target);
                let status = pick(v, &[301, 302, 307, 308]);
                redirect(kind, status, Some(location.as_bytes()))
            }
            Kind::RedirectClosedPort => {
                let location = format!("http://127.0.0.1:1{}", g.target);
                redirect(kind, 302, Some(location.as_bytes()))
            }
            Kind::RedirectNoLocation => redirect(kind, pick(v, &[301, 302, 303, 307, 308]), None),
            Kind::RedirectBadLocation => {
                let location = pick(
                    v,
                    &[
                        "http://[::1",
                        "javascript:alert(1)",
                        "ftp://127.0.0.1/x",
                        "",
                        "http://127.0.0.1:99999/x",
                        "http:///",
                    ],
                );
                redirect(kind, 302, Some(location.as_bytes()))
            }
            Kind::Status1xx => {
                let interim: &[&str] = pick(
                    v,
                    &[
                        &["HTTP/1.1 100 Continue\r\n\r\n"][..],
                        &["HTTP/1.1 102 Processing\r\n\r\n"],
                        &["HTTP/1.1 103 Early Hints\r\nLink: </estilo.css>; rel=preload\r\n\r\n"],
                        &[
                            "HTTP/1.1 100 Continue\r\n\r\n",
                            "HTTP/1.1 100 Continue\r\n\r\n",
                            "HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n",
                        ],
                    ],
                );
                let mut head: Vec<u8> = interim.concat().into_bytes();
                head.extend_from_slice(&g.head("HTTP/1.1 200 OK").len(body.len()).done());
                wire(kind, 200, head, body)
            }
            Kind::Status5xx => {
                let status = pick(v, &[500, 502, 503, 504]);
                let b = match (v / 4) % 4 {
                    0 => b"<html><body>Bad Gateway</body></html>".to_vec(),
                    1 => error_body("erro interno"),
                    2 => Vec::new(),
                    _ => body,
                };
                let h = Head::status(status).json().len(b.len());
                wire(kind, status, h.done(), b)
            }
            Kind::StatusOdd => {
                let status = pick(v, &[418, 451, 599, 999, 206, 299]);
                let b = match status {
                    206 | 299 => body,
                    _ => error_body("status estranho"),
                };
                let line = format!("HTTP/1.1 {status} Estranho");
                let h = Head::line(&line).json().len(b.len());
                wire(kind, status, h.done(), b)
            }
            Kind::StatusLineGarbage => {
                let line = pick(
                    v,
                    &[
                        "HTTP/1.1 2OO OK",
                        "HTTP/1.1 20 OK",
                        "HTTP/1.1 2000 OK",
                        "HTTP/2 200 OK",
                        "ICY 200 OK",
                        "LIXO\r\nHTTP/1.1 200 OK",
                        "",
                    ],
                );
                let mut h = if line.is_empty() {
                    Head(Vec::new()).h("Content-Type", g.content_type)
                } else {
                    g.head(line)
                };
                h = h.len(body.len());
                Wire {
                    close: true,
                    ..wire(kind, 200, h.done(), body)
                }
            }
        }
    }
}

/// Where the good answer came from: the request's target and host, the server's port.
pub struct GoodSource<'a> {
    pub target: &'a str,
    pub host: &'a str,
    pub port: u16,
}

fn redirect(kind: Kind, status: u16, location: Option<&[u8]>) -> Wire {
    let b = error_body("movido");
    let mut h = Head::status(status).json().len(b.len());
    if let Some(l) = location {
        h = h.h("Location", l);
    }
    wire(kind, status, h.done(), b)
}

/// A shadow copy of the envelope's keys, written before the real ones: a records array
/// with a junk record and a scalar, and totals of 1 (a client keeping the first of a
/// repeated key would stop after page 1). Empty for a bare array body.
fn shadow_envelope(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let junk = "[{\"numero\":-1,\"hostil\":\"registro sombreado\"},1]";
    let mut members = Vec::new();
    for (key, shadow) in [
        ("data", junk),
        (
            "retorno",
            "{\"pedidos\":[{\"numero\":-1}],\"total_paginas\":1}",
        ),
        ("pagina", "\"lixo\""),
        ("total_paginas", "1"),
        ("total_registros", "1"),
        ("total", "1"),
        ("next_cursor", "null"),
        ("links", "{\"next\":null}"),
    ] {
        if text.contains(&format!("\"{key}\":")) {
            members.push(format!("\"{key}\":{shadow}"));
        }
    }
    match body.first() {
        Some(b'{') => members.join(","),
        _ => String::new(),
    }
}

/// The body with the value of each top-level total (`total_paginas`, `total_registros`,
/// `total`) written as `value`. The sample API writes totals as plain integers after the
/// records, and records have no such keys.
fn odd_totals(body: &[u8], value: &str) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for key in ["\"total_paginas\":", "\"total_registros\":", "\"total\":"] {
        if let Some(at) = text.find(key) {
            let from = at + key.len();
            let digits = text[from..].bytes().take_while(u8::is_ascii_digit).count();
            let real = text[from..from + digits].to_string();
            let v = if value == "\"\"" {
                format!("\"{real}\"")
            } else {
                value.to_string()
            };
            text.replace_range(from..from + digits, &v);
        }
    }
    text.into_bytes()
}

/// `junk` inserted as the first elements of the records array (the first array whose
/// first element is a record).
fn insert_after_records_open(body: &[u8], junk: &[u8]) -> Vec<u8> {
    for open in [&b"[{\"numero\":"[..], b"[{\"pedido\":"] {
        if let Some(at) = body.windows(open.len()).position(|w| w == open) {
            return [&body[..=at], junk, &body[at + 1..]].concat();
        }
    }
    body.to_vec()
}

/// The records array as something else: a string, a number, or an object holding the
/// records under their indices; a bare array body becomes an object holding it.
fn data_not_array(body: &[u8], v: u64) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return body.to_vec();
    };
    let odd = |records: serde_json::Value| match v % 3 {
        0 => serde_json::Value::from("[]"),
        1 => serde_json::Value::from(42),
        _ => {
            let items = records.as_array().cloned().unwrap_or_default();
            let object: serde_json::Map<String, serde_json::Value> = items
                .into_iter()
                .enumerate()
                .map(|(i, r)| (i.to_string(), r))
                .collect();
            serde_json::Value::Object(object)
        }
    };
    if value.is_array() {
        value = serde_json::json!({ "data": value });
    } else {
        for ptr in ["/data", "/retorno/pedidos"] {
            if let Some(slot) = value.pointer_mut(ptr) {
                *slot = odd(slot.take());
            }
        }
    }
    value.to_string().into_bytes()
}

/// Writes a bad answer; `Ok(true)` when the connection may serve the next request. HEAD
/// gets the head only.
pub fn send(stream: &mut TcpStream, w: &Wire, head_only: bool) -> io::Result<bool> {
    if w.drip && !head_only {
        stream.write_all(&w.head)?;
        stream.flush()?;
        let started = Instant::now();
        for &b in &w.body {
            if started.elapsed() >= DRIP_LIMIT {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            stream.write_all(&[b])?;
            stream.flush()?;
        }
        return Ok(false);
    }
    let mut out = Vec::with_capacity(w.head.len() + w.body.len());
    out.extend_from_slice(&w.head);
    if !head_only {
        out.extend_from_slice(&w.body);
    }
    stream.write_all(&out)?;
    stream.flush()?;
    Ok(!w.close)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::test_args;
    use crate::test_client::{start, Client, RANGE};
    use serde_json::value::RawValue;
    use std::io::Read;

    #[test]
    fn draws_are_deterministic_and_near_the_rate() {
        let kinds = HostileKinds::all().0;
        let url = "/page/pedidos?data_inicial=2025-01-01&data_final=2025-01-01&page=2";
        for attempt in 0..50 {
            assert_eq!(
                draw(7, 0.5, &kinds, url, attempt),
                draw(7, 0.5, &kinds, url, attempt)
            );
        }
        let runs = |seed| -> Vec<_> { (0..64).map(|a| draw(seed, 0.5, &kinds, url, a)).collect() };
        assert_ne!(runs(7), runs(8), "the seed changes the draws");
        let mut bad = 0;
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            if let Some((kind, _)) = draw(1, 0.5, &kinds, &format!("/p?page={i}"), 0) {
                bad += 1;
                seen.insert(kind);
            }
        }
        assert!((9_500..10_500).contains(&bad), "{bad} bad of 20,000");
        assert_eq!(seen.len(), CATALOGUE.len(), "every kind is drawn");
        assert!((0..100).all(|a| draw(1, 0.0, &kinds, url, a).is_none()));
        assert!((0..100).all(|a| draw(1, 1.0, &kinds, url, a).is_some()));
        assert_eq!(draw(1, 1.0, &[], url, 0), None);
    }

    #[test]
    fn kinds_parse_names_and_prefixes() {
        let parse = |s: &str| HostileKinds::from_str(s).map(|k| k.0);
        assert_eq!(parse("retry_after").map(|k| k.len()), Ok(9));
        assert_eq!(parse("length").map(|k| k.len()), Ok(5));
        assert_eq!(
            parse("ratelimit").map(|k| k.len()),
            Ok(9),
            "not x_ratelimit"
        );
        assert_eq!(
            parse("drip, gzip_bomb,drip"),
            Ok(vec![Kind::Drip, Kind::GzipBomb])
        );
        assert!(parse("nope").is_err());
        assert!(parse("").is_err());
        assert!(parse("retr").is_err(), "a prefix ends at an underscore");
        let words: std::collections::HashSet<&str> = CATALOGUE.iter().map(|e| e.word).collect();
        assert_eq!(words.len(), CATALOGUE.len(), "words are unique");
        assert!(catalogue_text().contains("gzip_bomb"));
    }

    /// A JSON text's value where the last of a repeated key wins, in canonical text (keys
    /// sorted, numbers as written): what atlas and JSONB make of it. `None` if not JSON.
    fn last_wins(text: &str) -> Option<String> {
        let raw: Box<RawValue> = serde_json::from_str(text).ok()?;
        let t = raw.get();
        Some(match t.as_bytes()[0] {
            b'{' => {
                let m: BTreeMap<String, Box<RawValue>> = serde_json::from_str(t).ok()?;
                let members: Option<Vec<String>> = m
                    .iter()
                    .map(|(k, v)| {
                        Some(format!(
                            "{}:{}",
                            serde_json::to_string(k).ok()?,
                            last_wins(v.get())?
                        ))
                    })
                    .collect();
                format!("{{{}}}", members?.join(","))
            }
            b'[' => {
                let items: Vec<Box<RawValue>> = serde_json::from_str(t).ok()?;
                let items: Option<Vec<String>> = items.iter().map(|v| last_wins(v.get())).collect();
                format!("[{}]", items?.join(","))
            }
            _ => t.to_string(),
        })
    }

    /// One answer off the wire: the interim heads, the final status and headers, the body.
    struct Parsed {
        interim: usize,
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    }

    impl Parsed {
        fn all(&self, name: &str) -> Vec<&[u8]> {
            let named = self
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name));
            named.map(|(_, v)| v.as_slice()).collect()
        }
        fn one(&self, name: &str) -> Option<String> {
            self.all(name)
                .first()
                .map(|v| String::from_utf8_lossy(v).into_owned())
        }
    }

    fn parse(w: &Wire) -> Option<Parsed> {
        let mut at = 0;
        let mut interim = 0;
        loop {
            let mut slots = vec![httparse::EMPTY_HEADER; 10_100];
            let mut r = httparse::Response::new(&mut slots);
            let len = match r.parse(&w.head[at..]).ok()? {
                httparse::Status::Complete(len) => len,
                httparse::Status::Partial => return None,
            };
            let status = r.code?;
            if status < 200 {
                interim += 1;
                at += len;
                continue;
            }
            assert_eq!(
                at + len,
                w.head.len(),
                "the head ends where the body starts"
            );
            let headers = r
                .headers
                .iter()
                .map(|h| (h.name.to_string(), h.value.to_vec()));
            return Some(Parsed {
                interim,
                status,
                headers: headers.collect(),
                body: w.body.clone(),
            });
        }
    }

    fn good_page() -> (Vec<u8>, String) {
        let addr = start(&["--per-day", "7"]);
        let target = format!("/page/pedidos?{RANGE}&por_pagina=5");
        let r = Client::connect(addr).get(&target);
        assert_eq!(r.status, 200);
        (r.body, target)
    }

    /// Every kind, in each of its variants, answers what the catalogue says, and never a
    /// record the good answer lacks.
    #[test]
    fn every_kind_answers_what_it_claims() {
        let (good_body, target) = good_page();
        let good_text = std::str::from_utf8(&good_body).expect("utf-8");
        let good_list = last_wins(good_text)
            .and_then(|c| data_records(&c))
            .expect("the good page is JSON with records");
        assert_eq!(good_list.len(), 5);
        let h =
            Hostile::new(&test_args(&["--hostile", "1", "--hostile-bomb-mb", "2"])).expect("on");
        let no_headers = Vec::new();
        let g = Good {
            content_type: JSON,
            body: &good_body,
            headers: &no_headers,
            target: &target,
            host: "127.0.0.1:9",
            port: 9,
        };
        for entry in CATALOGUE {
            for v in 0..18 {
                let w = h.answer(entry.kind, v, &g);
                let what = format!("{} variant {v}", entry.word);
                assert_eq!(w.kind, entry.kind);
                if entry.kind == Kind::StatusLineGarbage {
                    assert!(parse(&w).is_none(), "{what}: parsed as HTTP/1.1");
                    assert!(w.close);
                    continue;
                }
                if entry.kind == Kind::HeaderNonAscii && parse(&w).is_none() {
                    // A name that is not a token, or a NUL: not HTTP any more.
                    let odd = w.head.windows(2).any(|p| p == "í".as_bytes() || p[0] == 0);
                    assert!(odd, "{what}");
                    continue;
                }
                let p = parse(&w).unwrap_or_else(|| panic!("{what}: not an HTTP answer"));
                assert_eq!(p.status, w.status, "{what}");
                let length = p.one("Content-Length");
                let framed = length.as_deref() == Some(&p.body.len().to_string());
                let same_body = p.body == good_body;
                check_kind(entry.kind, v, &p, framed, same_body, &what);
                // The invariant: a 2xx whose body parses holds exactly the good records
                // (`not_objects` adds non-objects, nothing else).
                // (`deep_nesting` is valid JSON too, with the good records beside the deep
                // member, but too deep for this recursive check.)
                let encoded =
                    p.one("Content-Encoding").is_some() || entry.kind == Kind::DeepNesting;
                let parsed = match encoded {
                    true => None,
                    false => std::str::from_utf8(&p.body).ok().and_then(last_wins),
                };
                if let (true, Some(c)) = ((200..300).contains(&p.status), parsed) {
                    if let Some(found) = data_records(&c) {
                        let objects: Vec<String> =
                            found.into_iter().filter(|r| r.starts_with('{')).collect();
                        assert_eq!(objects, good_list, "{what}: the records differ");
                    }
                }
            }
        }
    }

    /// The elements of the array at `/data` of a canonical text, as their texts.
    fn data_records(canonical: &str) -> Option<Vec<String>> {
        let m: BTreeMap<String, Box<RawValue>> = serde_json::from_str(canonical).ok()?;
        let items: Vec<Box<RawValue>> = serde_json::from_str(m.get("data")?.get()).ok()?;
        Some(items.iter().map(|r| r.get().to_string()).collect())
    }

    fn check_kind(kind: Kind, v: u64, p: &Parsed, framed: bool, same: bool, what: &str) {
        let body = String::from_utf8_lossy(&p.body);
        let total = |key: &str| {
            let at = body.find(key).map(|i| i + key.len())?;
            Some(body[at..].split([',', '}']).next()?.to_string())
        };
        match kind {
            Kind::RetryAfter(odd) => {
                assert!([429, 503].contains(&p.status), "{what}");
                assert_eq!(p.all("Retry-After"), odd.values(), "{what}");
            }
            Kind::XRateLimit(odd) | Kind::RateLimit(odd) => {
                let prefix = if matches!(kind, Kind::XRateLimit(_)) {
                    "X-RateLimit"
                } else {
                    "RateLimit"
                };
                assert_eq!(
                    p.one(&format!("{prefix}-Remaining")).as_deref(),
                    Some("0"),
                    "{what}"
                );
                assert_eq!(p.all(&format!("{prefix}-Reset")), odd.values(), "{what}");
                assert!(p.status == 429 || same, "{what}");
            }
            Kind::LinkMalformed => assert!(same && p.all("Link").len() >= 2, "{what}"),
            Kind::ContentType => {
                let labels = p.all("Content-Type");
                assert!(same && framed, "{what}");
                assert!(
                    labels.iter().all(|l| *l != JSON.as_bytes()),
                    "{what}: {labels:?}"
                );
            }
            Kind::HeaderNonAscii => {
                let odd = p
                    .headers
                    .iter()
                    .any(|(n, v)| !n.is_ascii() || v.iter().any(|&b| b >= 0x80 || b == 0));
                // httparse refuses a name that is not a token: then the head did not parse.
                assert!(same && odd, "{what}");
            }
            Kind::HeaderLong => assert!(
                same && p.one("X-Hostil-Padding").is_some_and(|v| v.len() == 65_536),
                "{what}"
            ),
            Kind::HeaderMany => assert!(same && p.headers.len() > 10_000, "{what}"),
            Kind::LengthLarger => {
                let n: usize = p
                    .one("Content-Length")
                    .and_then(|l| l.parse().ok())
                    .expect("length");
                assert!(same && n > p.body.len(), "{what}");
            }
            Kind::LengthSmaller => {
                assert!(
                    same && p.one("Content-Length") == Some((p.body.len() / 2).to_string()),
                    "{what}"
                );
            }
            Kind::LengthMissing => {
                assert!(same && p.one("Content-Length").is_none(), "{what}");
            }
            Kind::LengthConflict => {
                let lengths = p.all("Content-Length");
                assert!(
                    same && lengths.len() == 2 && lengths[0] != lengths[1],
                    "{what}"
                );
            }
            Kind::LengthInvalid => {
                let l = p.one("Content-Length").expect("a Content-Length");
                assert!(same && l.parse::<u32>().is_err(), "{what}: {l}");
            }
            Kind::ChunkedBad => assert_eq!(
                p.one("Transfer-Encoding").as_deref(),
                Some("chunked"),
                "{what}"
            ),
            Kind::Truncated => assert!(framed && !same && !p.body.is_empty(), "{what}"),
            Kind::Drip | Kind::Status1xx => {
                assert!(same && framed, "{what}");
                assert_eq!(p.interim > 0, kind == Kind::Status1xx, "{what}");
            }
            Kind::GzipBomb => {
                assert_eq!(p.one("Content-Encoding").as_deref(), Some("gzip"), "{what}");
                // 2 MiB of spaces (the test's --hostile-bomb-mb) in under 1% of that.
                assert!(
                    framed && p.body.len() < 21_000,
                    "{what}: {} bytes",
                    p.body.len()
                );
            }
            Kind::GzipBad => {
                assert_eq!(p.one("Content-Encoding").as_deref(), Some("gzip"), "{what}")
            }
            Kind::EncodingUnknown => assert!(same && p.one("Content-Encoding").is_some(), "{what}"),
            Kind::InvalidUtf8 => assert!(framed && std::str::from_utf8(&p.body).is_err(), "{what}"),
            Kind::NotJson => {
                let ignored = serde_json::from_slice::<serde::de::IgnoredAny>(&p.body);
                assert!(framed && ignored.is_err(), "{what}");
            }
            Kind::DeepNesting => {
                let depth = body
                    .matches('[')
                    .count()
                    .max(body.matches("{\"a\":").count());
                assert!(framed && depth >= DEEP, "{what}");
                assert!(
                    serde_json::from_slice::<serde_json::Value>(&p.body).is_err(),
                    "{what}"
                );
            }
            Kind::DupKeys => assert!(
                framed && body.matches("\"numero\":").count() > 10 && body.contains("1999-12-31"),
                "{what}"
            ),
            Kind::BigNumbers => {
                assert!(
                    framed && body.contains(":1e400") && body.contains(":1e999999"),
                    "{what}"
                );
                assert!(body.contains(&long_number()), "{what}");
            }
            Kind::TotalOdd => {
                let t = total("\"total_paginas\":").expect("a total");
                assert!(framed && t.parse::<u16>().is_err(), "{what}: {t}");
            }
            Kind::NotObjects => {
                let v: serde_json::Value = serde_json::from_slice(&p.body).expect("json");
                assert!(
                    v["data"].as_array().is_some_and(|a| !a[0].is_object()),
                    "{what}"
                );
            }
            Kind::DataNotArray => {
                let v: serde_json::Value = serde_json::from_slice(&p.body).expect("json");
                assert!(!v["data"].is_array(), "{what}");
            }
            Kind::RedirectLoop => {
                assert_eq!(p.status, 302);
                assert!(
                    p.one("Location")
                        .is_some_and(|l| l.ends_with("&_hostile_loop=0")),
                    "{what}"
                );
            }
            Kind::RedirectCrossHost => {
                assert!([301, 302, 307, 308].contains(&p.status), "{what}");
                assert!(
                    p.one("Location")
                        .is_some_and(|l| l.starts_with("http://localhost:9/page/pedidos?")),
                    "{what}"
                );
            }
            Kind::RedirectClosedPort => {
                assert!(
                    p.one("Location")
                        .is_some_and(|l| l.starts_with("http://127.0.0.1:1/page/")),
                    "{what}"
                );
            }
            Kind::RedirectNoLocation => {
                assert!(
                    (300..400).contains(&p.status) && p.one("Location").is_none(),
                    "{what}"
                );
            }
            Kind::RedirectBadLocation => {
                let l = p.one("Location").expect("a Location");
                assert!(
                    url::Url::parse(&l).map_or(true, |u| u.scheme() != "http"),
                    "{what}: {l}"
                );
            }
            Kind::Status5xx => assert!((500..600).contains(&p.status), "{what}"),
            Kind::StatusOdd => {
                assert!([418, 451, 599, 999, 206, 299].contains(&p.status), "{what}");
                assert_eq!(same, [206, 299].contains(&p.status), "{what}");
            }
            Kind::StatusLineGarbage => unreachable!(),
        }
        let _ = v;
    }

    /// Sends `raw` on a new connection and reads until the server closes it.
    fn exchange(addr: std::net::SocketAddr, target: &str) -> Vec<u8> {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).expect("send");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    /// On the wire: the same seed draws the same answers on another server; a loop never
    /// ends; a drip sends its head at once and the body a byte a second; `/_stats` counts.
    #[test]
    fn hostile_answers_on_the_wire() {
        let args = [
            "--per-day",
            "4",
            "--hostile",
            "5",
            "--hostile-kinds",
            "status,truncated,not_json",
        ];
        let (a, b) = (start(&args), start(&args));
        let strip_date = |r: Vec<u8>| -> Vec<u8> {
            let text = String::from_utf8_lossy(&r).into_owned();
            text.lines()
                .filter(|l| !l.starts_with("Date:"))
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        };
        for page in 1..=6 {
            let target = format!("/page/pedidos?{RANGE}&por_pagina=2&page={page}");
            for _attempt in 0..3 {
                assert_eq!(
                    strip_date(exchange(a, &target)),
                    strip_date(exchange(b, &target))
                );
            }
        }
        let stats = Client::connect(a).get("/_stats");
        let stats: serde_json::Value = serde_json::from_slice(&stats.body).expect("json");
        let served: u64 = stats["hostile"]
            .as_object()
            .expect("counts")
            .values()
            .filter_map(|v| v.as_u64())
            .sum();
        assert!((4..=14).contains(&served), "{stats}");

        let looping = start(&[
            "--per-day",
            "4",
            "--hostile",
            "1",
            "--hostile-rate",
            "1",
            "--hostile-kinds",
            "redirect_loop",
        ]);
        let mut target = format!("/page/pedidos?{RANGE}");
        let mut seen = Vec::new();
        for _ in 0..5 {
            let r = String::from_utf8_lossy(&exchange(looping, &target)).into_owned();
            assert!(r.starts_with("HTTP/1.1 302 "), "{r}");
            let location = r
                .lines()
                .find_map(|l| l.strip_prefix("Location: "))
                .expect("Location");
            target = location.to_string();
            seen.push(target.clone());
        }
        assert_eq!(
            seen[1..4]
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
            2
        );
        assert_ne!(seen[1], seen[2]);
        assert_eq!(seen[1], seen[3]);

        let drip = start(&[
            "--per-day",
            "4",
            "--hostile",
            "1",
            "--hostile-rate",
            "1",
            "--hostile-kinds",
            "drip",
        ]);
        let mut s = TcpStream::connect(drip).expect("connect");
        let req = format!("GET /page/pedidos?{RANGE} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(req.as_bytes()).expect("send");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).expect("head");
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let head_at = started.elapsed();
        let body_before =
            got.len() - got.windows(4).position(|w| w == b"\r\n\r\n").expect("end") - 4;
        let n = s.read(&mut buf).expect("a body byte");
        assert!(head_at < Duration::from_millis(900), "{head_at:?}");
        assert_eq!((body_before, n), (0, 1), "one byte after the head");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    }
}
