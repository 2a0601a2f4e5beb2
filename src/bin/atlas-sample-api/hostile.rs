//! `--hostile SEED`: data answers drawn from a catalogue of bad answers (`CATALOGUE`, listed
//! by `--hostile-list`), mixed with good pages. Which answer is bad, and how, depends only
//! on (SEED, URL, attempt): the attempt is the count of earlier requests for the same URL
//! (path and query without the auth parameter, as `--fail-first` counts them), so a rerun of
//! the same requests meets the same answers. `--hostile-rate` is the share of bad answers
//! (default 0.5), `--hostile-kinds` restricts the kinds (a word names a kind, or every kind
//! whose name starts with the word and `_`); the header kinds are drawn as three families. Only data requests of `/{kind}/{route}` whose
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
use crate::http::Reply;
use crate::state::lock;

mod answer;
pub use answer::{answer, Good, Wire};

/// The longest a `drip` answer drips before the connection is closed: a client that neither
/// times out nor hangs up does not keep a server thread forever.
const DRIP_LIMIT: Duration = Duration::from_secs(120);
/// The query parameter that marks the two URLs of a `redirect_loop`.
const LOOP_PARAM: &str = "_hostile_loop";
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
/// picks among the kind's variants. Pure: the same inputs always draw the same. A family
/// is drawn first, then a kind of it: the header kinds of one header (`retry_after_*`,
/// `x_ratelimit_*`, `ratelimit_*`) make one family each, every other kind its own, so the
/// 27 header values weigh as 3 kinds (each of their answers pauses or refuses the client).
pub fn draw(seed: u64, rate: f64, kinds: &[Kind], url: &str, attempt: u64) -> Option<(Kind, u64)> {
    let h = splitmix64(seed ^ splitmix64(fnv1a(url) ^ splitmix64(attempt)));
    let unit = (h >> 11) as f64 / (1u64 << 53) as f64;
    if kinds.is_empty() || unit >= rate {
        return None;
    }
    let mut families: Vec<Vec<Kind>> = Vec::new();
    for &kind in kinds {
        let same =
            |f: &&mut Vec<Kind>| std::mem::discriminant(&f[0]) == std::mem::discriminant(&kind);
        match families.iter_mut().find(same) {
            Some(family) => family.push(kind),
            None => families.push(vec![kind]),
        }
    }
    let k = splitmix64(h);
    let n = families.len() as u64;
    let family = &families[(k % n) as usize];
    let kind = family[((k / n) % family.len() as u64) as usize];
    Some((kind, splitmix64(k)))
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
        let w = answer(kind, v, &g, self.bomb_bytes);
        *lock(&self.served).entry(kind.word()).or_default() += 1;
        reply.status = w.status;
        reply.wire = Some(Box::new(w));
        reply
    }
}

/// Where the good answer came from: the request's target and host, the server's port.
pub struct GoodSource<'a> {
    pub target: &'a str,
    pub host: &'a str,
    pub port: u16,
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
mod tests;
