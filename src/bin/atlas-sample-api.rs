//! `atlas-sample-api`: a deterministic fake "pedidos" HTTP API (many pagination shapes, auth
//! styles and switchable faults) that integration tests, demos and benchmarks point the ETL at.
//!
//! Every calendar day has exactly `--per-day` records; record (day, index) depends only on
//! (seed, day, index), so tests can recompute what was served. See `Args` for the flags.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use argh::FromArgs;
use chrono::{
    DateTime, Days, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone,
};
use serde::{Serialize, Serializer};
use serde_json::{json, Value};
use url::form_urlencoded;

const JSON: &str = "application/json; charset=utf-8";
const MAX_PAGE_SIZE: u64 = 10_000;
/// `numero` is `day * 100_000 + index`, so more per day would collide.
const MAX_PER_DAY: u64 = 100_000;
/// `none` answers the whole range in one body; beyond this it would eat the machine.
const MAX_UNPAGED: u64 = 1_000_000;
const CURSOR_KEY: u64 = 0x5EED_A71A_5C0F_FEE5;
const LAST_MS_OF_DAY: u64 = 86_399_999;
/// rfc3339 offsets, cycled by record index.
const OFFSETS: [i32; 4] = [-3 * 3600, 0, 5 * 3600 + 1800, -10 * 3600];

/// Deterministic sample "pedidos" API for testing and benchmarking the Atlas ETL.
#[derive(FromArgs, Debug)]
struct Args {
    /// address to bind (default 127.0.0.1)
    #[argh(option, default = "String::from(\"127.0.0.1\")")]
    host: String,
    /// port to bind, 0 picks a free one (default 8080)
    #[argh(option, default = "8080")]
    port: u16,
    /// accepted for compatibility and ignored: every connection gets its own thread, with no
    /// limit (default 8)
    #[argh(option, default = "8")]
    threads: usize,
    /// records per calendar day (default 50, max 100000)
    #[argh(option, default = "50")]
    per_day: u64,
    /// default page size (default 100, max 10000)
    #[argh(option, default = "100")]
    page_size: u64,
    /// data seed (default 1)
    #[argh(option, default = "1")]
    seed: u64,
    /// fixed delay before answering each data request, in ms (default 0)
    #[argh(option, default = "0")]
    latency_ms: u64,
    /// name of the range start parameter (default data_inicial)
    #[argh(option, default = "String::from(\"data_inicial\")")]
    start_param: String,
    /// name of the range end parameter (default data_final)
    #[argh(option, default = "String::from(\"data_final\")")]
    end_param: String,
    /// chrono format of both range parameters (default %Y-%m-%d)
    #[argh(option, default = "String::from(\"%Y-%m-%d\")")]
    param_format: String,
    /// how the end parameter is read: inclusive, exclusive or end_of_day (default inclusive)
    #[argh(option, default = "EndStyle::Inclusive")]
    end_style: EndStyle,
    /// format of data_pedido: iso, br, rfc3339, naive, epoch or epoch_ms (default iso)
    #[argh(option, default = "RecordDate::Iso")]
    record_date: RecordDate,
    /// widen every requested range by one day on each side
    #[argh(switch)]
    neighbours: bool,
    /// none, bearer:TOKEN, header:NAME:VALUE, query:PARAM:VALUE or basic:USER:PASS (default none)
    #[argh(option, default = "Auth::None")]
    auth: Auth,
    /// probability (0.0-1.0) that a data request fails (default 0)
    #[argh(option, default = "0.0")]
    fault_rate: f64,
    /// seed of the fault PRNG (default 7)
    #[argh(option, default = "7")]
    fault_seed: u64,
    /// the first K requests of every distinct URL fail (default 0)
    #[argh(option, default = "0")]
    fail_first: u64,
    /// comma list of 500,503,429,slow,drop,truncate,html (default all)
    #[argh(option, default = "FaultKinds::all()")]
    fault_kinds: FaultKinds,
    /// seconds in the Retry-After header of 429 faults (default 1)
    #[argh(option, default = "1")]
    retry_after: u64,
    /// delay of the `slow` fault, in ms (default 3000)
    #[argh(option, default = "3000")]
    slow_ms: u64,
    /// loop-guard misbehaviour: repeat_cursor, repeat_page, endless or lying_total
    #[argh(option)]
    misbehave: Option<Misbehave>,
    /// next_url links are absolute (http://host:port/...) instead of path-relative
    #[argh(switch)]
    absolute_next: bool,
}

/// A plain enum read from fixed CLI words; `WORDS` also serves as the list of all variants.
macro_rules! cli_enum {
    ($name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum $name {
            $($variant),+
        }
        impl $name {
            const WORDS: &'static [(&'static str, $name)] = &[$(($word, $name::$variant)),+];
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let found = Self::WORDS.iter().find(|(word, _)| *word == s).map(|w| w.1);
                let words: Vec<&str> = Self::WORDS.iter().map(|w| w.0).collect();
                found.ok_or_else(|| format!("unknown {s:?}, expected one of {}", words.join(", ")))
            }
        }
    };
}

cli_enum!(EndStyle { Inclusive = "inclusive", Exclusive = "exclusive", EndOfDay = "end_of_day" });
cli_enum!(RecordDate {
    Iso = "iso",
    Br = "br",
    Rfc3339 = "rfc3339",
    Naive = "naive",
    Epoch = "epoch",
    EpochMs = "epoch_ms",
});
cli_enum!(FaultKind {
    E500 = "500",
    E503 = "503",
    E429 = "429",
    Slow = "slow",
    Drop = "drop",
    Truncate = "truncate",
    Html = "html",
});
cli_enum!(Misbehave {
    RepeatCursor = "repeat_cursor",
    RepeatPage = "repeat_page",
    Endless = "endless",
    LyingTotal = "lying_total",
});

#[derive(Clone, Debug)]
struct FaultKinds(Vec<FaultKind>);

impl FaultKinds {
    fn all() -> Self {
        Self(FaultKind::WORDS.iter().map(|w| w.1).collect())
    }
}

impl FromStr for FaultKinds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let kinds = s.split(',').map(|k| k.trim().parse());
        Ok(Self(kinds.collect::<Result<_, _>>()?))
    }
}

/// Expected credential: bearer and basic are just an exact `Authorization` header value.
#[derive(Clone, Debug, PartialEq)]
enum Auth {
    None,
    Header { name: String, value: String },
    Query { param: String, value: String },
}

impl FromStr for Auth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        // NAME/USER stop at the first ':'; the value/password may contain more.
        let pair = || rest.split_once(':').filter(|(a, _)| !a.is_empty());
        let header = |name: &str, value: String| Self::Header {
            name: name.to_string(),
            value,
        };
        match kind {
            "none" if rest.is_empty() => Ok(Self::None),
            "bearer" if !rest.is_empty() => Ok(header("Authorization", format!("Bearer {rest}"))),
            "basic" if pair().is_some() => Ok(header(
                "Authorization",
                format!("Basic {}", base64(rest.as_bytes())),
            )),
            "header" => pair()
                .map(|(n, v)| header(n, v.to_string()))
                .ok_or_else(|| "expected header:NAME:VALUE".to_string()),
            "query" => pair()
                .map(|(p, v)| Self::Query {
                    param: p.to_string(),
                    value: v.to_string(),
                })
                .ok_or_else(|| "expected query:PARAM:VALUE".to_string()),
            _ => Err(format!("bad auth spec {s:?}")),
        }
    }
}

/// Standard base64 with padding; only used to precompute the expected Basic header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// Field order is deliberately not alphabetical: clients must canonicalise before hashing.
#[derive(Serialize, Debug, Clone, PartialEq)]
struct Pedido {
    numero: i64,
    id: String,
    data_pedido: Value,
    situacao: &'static str,
    cliente: Cliente,
    valor_total: f64,
    itens: Vec<Item>,
    observacao: &'static str,
    atualizado_em: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct Cliente {
    nome: String,
    documento: String,
    email: String,
    cidade: &'static str,
    uf: &'static str,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
struct Item {
    sku: String,
    descricao: &'static str,
    quantidade: u64,
    preco: f64,
}

// Data tables, with accents on purpose: the ETL must keep UTF-8 intact.
#[rustfmt::skip]
const SITUACOES: [&str; 7] = [
    "aberto", "em separação", "faturado", "enviado", "entregue", "cancelado",
    "aguardando pagamento",
];
#[rustfmt::skip]
const NOMES: [&str; 10] = [
    "João", "Maria", "José", "Ana", "Luíza", "Antônio", "Conceição", "Paulo", "Fernanda", "Márcio",
];
#[rustfmt::skip]
const SOBRENOMES: [&str; 8] = [
    "Silva", "Gonçalves", "Araújo", "Souza", "Sá", "Pereira", "Magalhães", "Müller",
];
#[rustfmt::skip]
const CIDADES: [(&str, &str); 8] = [
    ("São Paulo", "SP"), ("Belém", "PA"), ("Florianópolis", "SC"), ("Goiânia", "GO"),
    ("Rio de Janeiro", "RJ"), ("Maringá", "PR"), ("Ribeirão Preto", "SP"), ("Porto Alegre", "RS"),
];
#[rustfmt::skip]
const PRODUTOS: [&str; 8] = [
    "Café torrado 500g", "Pão de queijo congelado 1kg", "Açúcar cristal 1kg", "Feijão carioca 1kg",
    "Guaraná 2L", "Farinha de mandioca 500g", "Doce de leite 400g", "Erva-mate chimarrão 1kg",
];
/// A few carry a quote, a newline or a backslash to exercise JSON escaping end to end.
const OBSERVACOES: [&str; 10] = [
    "",
    "Entregar em horário comercial, de segunda a sexta-feira.",
    "Cliente pediu \"urgente\" na etiqueta da embalagem.",
    "Portaria 2\nfalar com o zelador antes de subir.",
    "Nota fiscal em nome da empresa; CNPJ já consta no cadastro.",
    "Arquivo do pedido em C:\\pedidos\\entrada, conferir anexo.",
    "Presente — não incluir o preço na nota nem no pacote.",
    "Reagendado após tentativa de entrega sem sucesso.",
    "Retirar na loja; cliente avisado por telefone.",
    "Embalar os itens frágeis separadamente, com plástico-bolha.",
];

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Tiny deterministic stream seeded by (seed, day, index): never wall clock, never shared.
struct Mix(u64);

impl Mix {
    fn new(seed: u64, day: i64, index: u64) -> Self {
        Self(splitmix64(
            seed ^ splitmix64(day as u64 ^ splitmix64(index)),
        ))
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 = splitmix64(self.0);
        self.0 % n
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn epoch_2000() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default()
}

/// Milliseconds into the day: index 0 at 00:00:00.000, index 1 at 23:59:59.999, the rest in
/// between, so date filters at both day edges get exercised.
fn millis_of_day(index: u64, per_day: u64) -> u64 {
    match index {
        0 => 0,
        1 => LAST_MS_OF_DAY,
        i => (i - 1) * LAST_MS_OF_DAY / (per_day.max(3) - 1),
    }
}

fn record_date(style: RecordDate, day: NaiveDate, index: u64, per_day: u64) -> Value {
    let ms = millis_of_day(index, per_day);
    let local = day.and_time(NaiveTime::MIN) + Duration::from_millis(ms);
    match style {
        RecordDate::Iso => Value::from(day.format("%Y-%m-%d").to_string()),
        RecordDate::Br => Value::from(day.format("%d/%m/%Y").to_string()),
        RecordDate::Naive => Value::from(local.format("%Y-%m-%d %H:%M:%S").to_string()),
        RecordDate::Rfc3339 => {
            let offset = OFFSETS[(index % OFFSETS.len() as u64) as usize];
            let text = FixedOffset::east_opt(offset)
                .and_then(|tz| tz.from_local_datetime(&local).single())
                .map(|dt| dt.to_rfc3339_opts(SecondsFormat::AutoSi, false))
                .unwrap_or_default();
            Value::from(text)
        }
        RecordDate::Epoch => Value::from(local.and_utc().timestamp()),
        RecordDate::EpochMs => Value::from(local.and_utc().timestamp_millis()),
    }
}

fn make_record(args: &Args, day: NaiveDate, index: u64) -> Pedido {
    let day_no = (day - epoch_2000()).num_days();
    let mut mix = Mix::new(args.seed, day_no, index);
    let itens: Vec<Item> = (0..1 + mix.below(4))
        .map(|_| {
            let cents = 100 + mix.below(99_900);
            Item {
                sku: format!("SKU-{:05}", mix.below(100_000)),
                descricao: mix.pick(&PRODUTOS),
                quantidade: 1 + mix.below(12),
                preco: cents as f64 / 100.0,
            }
        })
        .collect();
    // Sum in cents so valor_total never grows more than 2 decimals.
    let total_cents: u64 = itens
        .iter()
        .map(|i| i.quantidade * (i.preco * 100.0).round() as u64)
        .sum();
    let (cidade, uf) = mix.pick(&CIDADES);
    let doc = mix.below(100_000_000_000);
    let updated_after = (mix.below(3) != 0).then(|| (1 + mix.below(5), mix.below(86_400)));
    let atualizado_em = updated_after.and_then(|(days, secs)| {
        let when = day.checked_add_days(Days::new(days))?;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        Some(format!(
            "{}T{h:02}:{m:02}:{s:02}-03:00",
            when.format("%Y-%m-%d")
        ))
    });
    Pedido {
        numero: day_no * MAX_PER_DAY as i64 + index as i64,
        id: format!("{}-{index}", day.format("%Y%m%d")),
        data_pedido: record_date(args.record_date, day, index, args.per_day),
        situacao: mix.pick(&SITUACOES),
        cliente: Cliente {
            nome: format!("{} {}", mix.pick(&NOMES), mix.pick(&SOBRENOMES)),
            documento: format!(
                "{:03}.{:03}.{:03}-{:02}",
                doc / 100_000_000 % 1000,
                doc / 100_000 % 1000,
                doc / 100 % 1000,
                doc % 100
            ),
            email: format!("cliente{:05}@exemplo.com.br", mix.below(100_000)),
            cidade,
            uf,
        },
        valor_total: total_cents as f64 / 100.0,
        itens,
        observacao: mix.pick(&OBSERVACOES),
        atualizado_em,
    }
}

/// A resolved request range: `days` consecutive days starting at `first`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    first: NaiveDate,
    days: u64,
}

impl Span {
    fn total(&self, per_day: u64) -> u64 {
        self.days.saturating_mul(per_day)
    }
}

/// Record at `pos` of the range ordered by (day, index); positions past the range simply
/// continue into later days (used by `endless`).
fn record_at(args: &Args, first: NaiveDate, pos: u64) -> Option<Pedido> {
    if args.per_day == 0 {
        return None;
    }
    let day = first.checked_add_days(Days::new(pos / args.per_day))?;
    Some(make_record(args, day, pos % args.per_day))
}

/// Positions `from..to` generated lazily while serialising, so a page costs only its size.
struct Records<'a> {
    args: &'a Args,
    first: NaiveDate,
    from: u64,
    to: u64,
    wrapped: bool,
}

#[derive(Serialize)]
struct WrappedPedido {
    pedido: Pedido,
}

impl Serialize for Records<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let iter = (self.from..self.to).filter_map(|p| record_at(self.args, self.first, p));
        if self.wrapped {
            s.collect_seq(iter.map(|pedido| WrappedPedido { pedido }))
        } else {
            s.collect_seq(iter)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Range parameters
// ---------------------------------------------------------------------------------------------

/// Date, then naive datetime, then datetime with offset (its naive local time).
fn parse_param(raw: &str, fmt: &str) -> Option<NaiveDateTime> {
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

fn resolve_range(
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

// ---------------------------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------------------------

type Query = Vec<(String, String)>;

fn param<'a>(query: &'a Query, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

/// `query` re-encoded with `name` moved to the end and set to `value`.
fn query_with(query: &Query, name: &str, value: &str) -> String {
    let kept = query.iter().filter(|(k, _)| k != name);
    encode_query(
        kept.map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([(name, value)]),
    )
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply::raw(status, JSON, body),
            Err(e) => Reply::raw(500, "text/plain; charset=utf-8", e.to_string().into_bytes()),
        }
    }
    fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &json!({ "erro": message }))
    }
    fn raw(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }
}

fn bad(message: impl Into<String>) -> Reply {
    Reply::error(400, &message.into())
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 server: one thread per connection, keep-alive, request heads parsed by httparse
// ---------------------------------------------------------------------------------------------

/// Longest request head (request line and headers) accepted; longer is a 431.
const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in a head; more is a 431.
const MAX_HEADERS: usize = 100;
/// Read and write timeout of every connection: an idle keep-alive connection is closed after
/// this, and so is one whose client stops reading.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const TEXT: &str = "text/plain; charset=utf-8";

/// One request head; its body, if any, has already been read and discarded.
struct Request {
    method: String,
    /// The request target as sent: path and query.
    target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    version: u8,
    /// Names as sent, values trimmed; non-UTF-8 bytes replaced.
    headers: Vec<(String, String)>,
}

impl Request {
    fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// The declared body length, 0 without `Content-Length`; `None` if it is not a number or
    /// repeated with another value.
    fn content_length(&self) -> Option<u64> {
        let mut lengths = self
            .headers_named("Content-Length")
            .map(|v| v.parse::<u64>().ok());
        let first = lengths.next().unwrap_or(Some(0))?;
        lengths.all(|l| l == Some(first)).then_some(first)
    }

    /// HTTP/1.1 keeps the connection unless the client says `close`; HTTP/1.0 closes it
    /// unless the client asks for `keep-alive`.
    fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.headers_named("Connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        !has("close") && (self.version >= 1 || has("keep-alive"))
    }
}

/// What the connection reads next.
enum Next {
    Request(Request),
    /// Answer this and close: the head was malformed, too large or unframeable.
    Reject(Reply),
    /// EOF, timeout or an I/O error: just close.
    Close,
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// One accepted connection and the bytes read from it but not consumed yet (pipelining).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads until the blank line that ends a head (CRLF CRLF, or a bare LF LF, which
    /// httparse also accepts), parses it and skips any `Content-Length` body.
    fn next_request(&mut self) -> Next {
        let mut scanned = 0usize;
        loop {
            // Search only bytes not searched before, backing up over a split terminator.
            let tail = &self.buf[scanned.saturating_sub(2)..];
            let ended =
                tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n");
            scanned = self.buf.len();
            if ended {
                match self.parse_head() {
                    Ok(Some(request)) => return self.skip_body(request),
                    Ok(None) => {} // only empty lines so far: keep reading
                    Err(reply) => return Next::Reject(reply),
                }
            }
            if self.buf.len() >= MAX_HEAD {
                return Next::Reject(Reply::error(431, "cabeçalho grande demais"));
            }
            let mut chunk = [0u8; 8192];
            let room = (MAX_HEAD - self.buf.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => return Next::Close,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("read failed: {e}");
                    return Next::Close;
                }
            }
        }
    }

    /// Parses the head at the start of `buf` and removes it from there; `None` while it is
    /// still incomplete.
    fn parse_head(&mut self) -> Result<Option<Request>, Reply> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Reply::error(431, "cabeçalhos demais"))
            }
            Err(e) => return Err(bad(format!("requisição malformada: {e}"))),
        };
        let (Some(method), Some(target), Some(version)) =
            (parsed.method, parsed.path, parsed.version)
        else {
            return Err(bad("requisição malformada"));
        };
        let request = Request {
            method: method.to_string(),
            target: target.to_string(),
            version,
            headers: parsed
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value);
                    (h.name.to_string(), value.trim().to_string())
                })
                .collect(),
        };
        self.buf.drain(..len);
        Ok(Some(request))
    }

    /// Reads and throws away a `Content-Length` body (this API has no use for bodies).
    fn skip_body(&mut self, request: Request) -> Next {
        if request.header("Transfer-Encoding").is_some() {
            // Only chunked could be framed, and no client of this API sends a body at all.
            return Next::Reject(Reply::error(501, "Transfer-Encoding não suportado"));
        }
        let Some(len) = request.content_length() else {
            return Next::Reject(bad("Content-Length inválido"));
        };
        if len == 0 {
            return Next::Request(request);
        }
        let expects = request.header("Expect");
        if expects.is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) && request.version >= 1 {
            let line = b"HTTP/1.1 100 Continue\r\n\r\n";
            if self.stream.write_all(line).is_err() {
                return Next::Close;
            }
        }
        let buffered = usize::try_from(len).map_or(self.buf.len(), |l| l.min(self.buf.len()));
        self.buf.drain(..buffered);
        let rest = len - buffered as u64;
        match io::copy(&mut (&self.stream).take(rest), &mut io::sink()) {
            Ok(n) if n == rest => Next::Request(request),
            _ => Next::Close,
        }
    }

    /// Status line, headers announcing the whole body, then `body_len` bytes of the body (all
    /// of it except for the `drop` fault); HEAD gets the headers only.
    fn write_reply(
        &mut self,
        reply: &Reply,
        head_only: bool,
        keep_alive: bool,
        body_len: usize,
    ) -> io::Result<()> {
        use std::fmt::Write as _;
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            reply.status,
            reason_phrase(reply.status),
            chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
            reply.content_type,
            reply.body.len(),
        );
        for (name, value) in &reply.headers {
            if value.contains(['\r', '\n']) {
                log::warn!("dropping invalid header {name}: {value:?}");
            } else {
                let _ = write!(head, "{name}: {value}\r\n");
            }
        }
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let _ = write!(head, "Connection: {connection}\r\n\r\n");
        let body = match head_only {
            true => &[][..],
            false => &reply.body[..body_len.min(reply.body.len())],
        };
        // One write, so a small reply goes out as one segment.
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body);
        self.stream.write_all(&out)?;
        self.stream.flush()
    }

    /// Sends FIN, then drains what the client still sends for a moment, so that unread
    /// request bytes do not turn the close into a reset that could destroy the reply.
    fn close_gracefully(self) {
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(500)));
        let _ = io::copy(&mut (&self.stream).take(1 << 20), &mut io::sink());
    }
}

/// Answers requests on one connection until either side closes it, a timeout expires or a
/// fault ends it.
fn serve_connection(state: &State, stream: TcpStream) {
    let timeouts = stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .and_then(|()| stream.set_nodelay(true));
    if let Err(e) = timeouts {
        log::warn!("cannot set up connection: {e}");
        return;
    }
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        let request = match conn.next_request() {
            Next::Request(request) => request,
            Next::Reject(reply) => {
                let len = reply.body.len();
                if conn.write_reply(&reply, false, false, len).is_ok() {
                    conn.close_gracefully();
                }
                return;
            }
            Next::Close => return,
        };
        let head_only = request.method == "HEAD";
        let mut keep_alive = request.keep_alive();
        let run = std::panic::AssertUnwindSafe(|| handle(state, &request));
        let (reply, fault) = std::panic::catch_unwind(run).unwrap_or_else(|_| {
            log::error!("handler panicked");
            keep_alive = false;
            (Reply::raw(500, TEXT, b"erro interno".to_vec()), None)
        });
        let len = reply.body.len();
        let sent = match fault {
            Some(FaultKind::Drop) => {
                // Headers announce the whole body, half of it goes out, then the connection
                // is shut down: the client sees a genuine mid-body transfer error.
                if let Err(e) = conn.write_reply(&reply, head_only, keep_alive, len / 2) {
                    log::debug!("drop fault write failed: {e}");
                }
                let _ = conn.stream.shutdown(Shutdown::Both);
                return;
            }
            Some(FaultKind::Slow) => {
                std::thread::sleep(Duration::from_millis(state.args.slow_ms));
                conn.write_reply(&reply, head_only, keep_alive, len)
            }
            _ => conn.write_reply(&reply, head_only, keep_alive, len),
        };
        match sent {
            Err(e) => {
                log::debug!("write failed: {e}");
                return;
            }
            Ok(()) if !keep_alive => {
                conn.close_gracefully();
                return;
            }
            Ok(()) => {}
        }
    }
}

fn bind(host: &str, port: u16) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind((host, port))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Accept loop: every connection gets its own named thread for its whole life, so no
/// connection ever waits for another one to close.
fn serve(listener: &TcpListener, state: &Arc<State>) {
    let mut accepted: u64 = 0;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                accepted += 1;
                let state = Arc::clone(state);
                let spawned = std::thread::Builder::new()
                    .name(format!("conn-{accepted}-{peer}"))
                    .spawn(move || serve_connection(&state, stream));
                if let Err(e) = spawned {
                    log::error!("cannot start a thread for {peer}: {e}");
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server state, auth and faults
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    requests: u64,
    faults: u64,
    by_status: BTreeMap<String, u64>,
}

struct State {
    args: Args,
    local: SocketAddr,
    stats: Mutex<Stats>,
    fault_rng: Mutex<fastrand::Rng>,
    /// Requests seen per distinct URL, for `--fail-first`.
    attempts: Mutex<HashMap<String, u64>>,
}

/// A panicking worker must not wedge the others, so poisoned locks are simply reused.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn record_status(&self, status: u16) {
        *lock(&self.stats)
            .by_status
            .entry(status.to_string())
            .or_default() += 1;
    }

    fn authorized(&self, request: &Request, query: &Query) -> bool {
        match &self.args.auth {
            Auth::None => true,
            Auth::Header { name, value } => request.headers_named(name).any(|v| v == value),
            Auth::Query { param: p, value } => param(query, p) == Some(value.as_str()),
        }
    }

    /// `--fail-first` wins (kind by attempt number, so it is per-URL deterministic); otherwise
    /// the shared seeded PRNG rolls `--fault-rate` and picks the kind.
    fn decide_fault(&self, url_key: &str) -> Option<FaultKind> {
        let kinds = &self.args.fault_kinds.0;
        if kinds.is_empty() {
            return None;
        }
        let mut fault = None;
        if self.args.fail_first > 0 {
            let mut attempts = lock(&self.attempts);
            let n = attempts.entry(url_key.to_string()).or_default();
            if *n < self.args.fail_first {
                fault = Some(kinds[(*n % kinds.len() as u64) as usize]);
                *n += 1;
            }
        }
        if fault.is_none() && self.args.fault_rate > 0.0 {
            let mut rng = lock(&self.fault_rng);
            if rng.f64() < self.args.fault_rate {
                fault = Some(kinds[rng.usize(..kinds.len())]);
            }
        }
        if fault.is_some() {
            lock(&self.stats).faults += 1;
        }
        fault
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

// The pagination shape is the first path segment; `none` is one unpaged body.
cli_enum!(Kind {
    Page = "page",
    Offset = "offset",
    Cursor = "cursor",
    NextUrl = "next_url",
    LinkHeader = "link_header",
    Unpaged = "none",
    Wrapped = "wrapped",
});

enum Route {
    Stats,
    Expected,
    Data(Kind),
    NotFound,
}

/// `/_stats`, `/_expected` or `/{kind}/{route}` (any route name).
fn route_of(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["_stats"] => Route::Stats,
        ["_expected"] => Route::Expected,
        [kind, route] if !route.is_empty() => kind.parse().map_or(Route::NotFound, Route::Data),
        _ => Route::NotFound,
    }
}

/// Everything a data endpoint needs: the request path, its data query (auth param removed)
/// and the `http://host:port` the client used, for absolute links.
struct Ctx<'a> {
    state: &'a State,
    path: &'a str,
    query: Query,
    origin: String,
}

/// Every JSON envelope; kinds fill only their fields and `None` ones are skipped. A struct
/// rather than `json!` keeps the records' declared (non-alphabetical) field order.
#[derive(Serialize)]
struct Envelope<'a> {
    data: Records<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagina: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_paginas: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_registros: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    /// `Some(None)` is written as `null`: the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<Links>,
}

#[derive(Serialize)]
struct Links {
    next: Option<String>,
}

#[derive(Serialize)]
struct WrappedBody<'a> {
    retorno: Retorno<'a>,
}

#[derive(Serialize)]
struct Retorno<'a> {
    pagina: u64,
    total_paginas: u64,
    pedidos: Records<'a>,
}

impl<'a> Envelope<'a> {
    fn new(data: Records<'a>) -> Self {
        Self {
            data,
            pagina: None,
            total_paginas: None,
            total_registros: None,
            total: None,
            next_cursor: None,
            links: None,
        }
    }
}

impl Ctx<'_> {
    fn args(&self) -> &Args {
        &self.state.args
    }

    fn span(&self) -> Result<Span, Reply> {
        let args = self.args();
        let get = |name: &str| {
            let raw =
                param(&self.query, name).ok_or_else(|| bad(format!("parâmetro {name} ausente")))?;
            parse_param(raw, &args.param_format)
                .ok_or_else(|| bad(format!("parâmetro {name} inválido: {raw:?}")))
        };
        let start = get(&args.start_param)?;
        let end = get(&args.end_param)?;
        resolve_range(start, end, args.end_style, args.neighbours).map_err(bad)
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, Reply> {
        match param(&self.query, name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .map_err(|_| bad(format!("parâmetro {name} inválido: {raw:?}"))),
        }
    }

    /// 1-based page number; 0, negative or garbage is a 400.
    fn page(&self, name: &str) -> Result<u64, Reply> {
        match self.number(name, 1)? {
            0 => Err(bad(format!("parâmetro {name} deve ser maior que zero"))),
            n => Ok(n),
        }
    }

    fn size(&self, name: &str) -> Result<u64, Reply> {
        match self.number(name, self.args().page_size)? {
            0 => Err(bad(format!("parâmetro {name} deve ser maior que zero"))),
            n => Ok(n.min(MAX_PAGE_SIZE)),
        }
    }

    fn records(&self, span: Span, from: u64, to: u64) -> Records<'_> {
        Records {
            args: self.args(),
            first: span.first,
            from,
            to,
            wrapped: false,
        }
    }

    /// Clamped window of a 1-based page, plus the total and the page count.
    fn window(&self, span: Span, page: u64, size: u64) -> (u64, u64, u64, u64) {
        let total = span.total(self.args().per_day);
        let from = (page - 1).saturating_mul(size).min(total);
        let to = from.saturating_add(size).min(total);
        (from, to, total, total.div_ceil(size))
    }

    fn link(&self, page: u64, page_param: &str) -> String {
        format!(
            "{}?{}",
            self.path,
            query_with(&self.query, page_param, &page.to_string())
        )
    }

    fn serve(&self, kind: Kind) -> Result<Reply, Reply> {
        let span = self.span()?;
        let total = span.total(self.args().per_day);
        let body = match kind {
            Kind::Page => return self.serve_page(span),
            Kind::Cursor => return self.serve_cursor(span),
            Kind::LinkHeader => return self.serve_link_header(span),
            Kind::Offset => {
                let offset = self.number("offset", 0)?;
                let to = offset.saturating_add(self.size("limit")?).min(total);
                Envelope {
                    total: Some(total),
                    ..Envelope::new(self.records(span, offset.min(total), to))
                }
            }
            Kind::NextUrl => {
                let page = self.page("page")?;
                let (from, to, _, pages) = self.window(span, page, self.size("por_pagina")?);
                let next = (page < pages).then(|| {
                    let link = self.link(page + 1, "page");
                    match self.args().absolute_next {
                        true => format!("{}{link}", self.origin),
                        false => link,
                    }
                });
                Envelope {
                    links: Some(Links { next }),
                    ..Envelope::new(self.records(span, from, to))
                }
            }
            Kind::Unpaged if total > MAX_UNPAGED => {
                return Err(bad(format!("intervalo grande demais: {total} registros")));
            }
            Kind::Unpaged => Envelope::new(self.records(span, 0, total)),
            Kind::Wrapped => {
                let page = self.page("pagina")?;
                let (from, to, _, pages) = self.window(span, page, self.size("por_pagina")?);
                let pedidos = Records {
                    wrapped: true,
                    ..self.records(span, from, to)
                };
                let retorno = Retorno {
                    pagina: page,
                    total_paginas: pages,
                    pedidos,
                };
                return Ok(Reply::json(200, &WrappedBody { retorno }));
            }
        };
        Ok(Reply::json(200, &body))
    }

    fn serve_page(&self, span: Span) -> Result<Reply, Reply> {
        let page = self.page("page")?;
        let size = self.size("por_pagina")?;
        let misbehave = self.args().misbehave;
        // repeat_page: every page is page 1's exact body, with no totals to stop on.
        let served = match misbehave {
            Some(Misbehave::RepeatPage) => 1,
            _ => page,
        };
        let (from, to, total, pages) = self.window(span, served, size);
        let mut body = Envelope {
            pagina: Some(served),
            total_paginas: Some(pages),
            total_registros: Some(total),
            ..Envelope::new(self.records(span, from, to))
        };
        match misbehave {
            Some(Misbehave::RepeatPage) => {
                (body.total_paginas, body.total_registros) = (None, None)
            }
            Some(Misbehave::Endless) => {
                // Positions past the range run on into later days: fresh, never empty.
                let from = (page - 1).saturating_mul(size);
                body.data = self.records(span, from, from.saturating_add(size));
                (body.total_paginas, body.total_registros) = (None, None);
            }
            // Claims one page more than exists; that page is naturally empty.
            Some(Misbehave::LyingTotal) => body.total_paginas = Some(pages.saturating_add(1)),
            _ => {}
        }
        Ok(Reply::json(200, &body))
    }

    fn serve_cursor(&self, span: Span) -> Result<Reply, Reply> {
        let offset = match param(&self.query, "cursor") {
            None | Some("") => 0,
            Some(raw) => u64::from_str_radix(raw, 16)
                .map(|c| c ^ CURSOR_KEY)
                .map_err(|_| bad(format!("cursor inválido: {raw:?}")))?,
        };
        let size = self.size("limit")?;
        let total = span.total(self.args().per_day);
        let to = offset.saturating_add(size).min(total);
        let encode = |pos: u64| format!("{:016x}", pos ^ CURSOR_KEY);
        let next = if self.args().misbehave == Some(Misbehave::RepeatCursor) && offset >= size {
            // From page 2 on the cursor is stuck on page 3, even past the end.
            Some(encode(size.saturating_mul(2)))
        } else {
            (to < total).then(|| encode(to))
        };
        let body = Envelope {
            next_cursor: Some(next),
            ..Envelope::new(self.records(span, offset.min(total), to))
        };
        Ok(Reply::json(200, &body))
    }

    fn serve_link_header(&self, span: Span) -> Result<Reply, Reply> {
        let page = self.page("page")?;
        let (from, to, _, pages) = self.window(span, page, self.size("per_page")?);
        // A deliberate mix of reference forms: path-absolute, query-only and full URL, and an
        // unquoted rel, as real servers send.
        let mut links = Vec::new();
        if page < pages {
            links.push(format!("<{}>; rel=\"next\"", self.link(page + 1, "page")));
        }
        let last = query_with(&self.query, "page", &pages.max(1).to_string());
        links.push(format!("<?{last}>; rel=last"));
        links.push(format!(
            "<{}{}>; rel=\"first\"",
            self.origin,
            self.link(1, "page")
        ));
        let mut reply = Reply::json(200, &self.records(span, from, to));
        reply.headers.push(("Link", links.join(", ")));
        Ok(reply)
    }
}

fn serve_expected(state: &State, query: &Query) -> Reply {
    let get = |name: &str| {
        param(query, name)
            .and_then(|raw| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
            .map(|d| d.and_time(NaiveTime::MIN))
            .ok_or_else(|| bad(format!("parâmetro {name} ausente ou inválido (AAAA-MM-DD)")))
    };
    let span = get("data_inicial").and_then(|start| {
        let end = get("data_final")?;
        resolve_range(start, end, EndStyle::Inclusive, false).map_err(bad)
    });
    match span {
        Ok(span) => Reply::json(200, &json!({ "count": span.total(state.args.per_day) })),
        Err(reply) => reply,
    }
}

fn serve_stats(state: &State) -> Reply {
    let stats = lock(&state.stats);
    Reply::json(
        200,
        &json!({
            "requests": stats.requests,
            "faults": stats.faults,
            "by_status": stats.by_status,
        }),
    )
}

/// Auth, fault decision and the data answer of `/{kind}/{route}`.
fn serve_data(
    state: &State,
    request: &Request,
    kind: Kind,
    path: &str,
    mut query: Query,
) -> (Reply, Option<FaultKind>) {
    if state.args.latency_ms > 0 {
        std::thread::sleep(Duration::from_millis(state.args.latency_ms));
    }
    let authorized = state.authorized(request, &query);
    // The auth parameter is not part of the data query: not in links, not in --fail-first keys.
    if let Auth::Query { param: p, .. } = &state.args.auth {
        query.retain(|(k, _)| k != p);
    }
    if !authorized {
        return (Reply::error(401, "não autorizado"), None);
    }
    let pairs = query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let fault = state.decide_fault(&format!("{path}?{}", encode_query(pairs)));
    let origin = request
        .header("Host")
        .map_or_else(|| state.local.to_string(), str::to_string);
    let ctx = Ctx {
        state,
        path,
        query,
        origin: format!("http://{origin}"),
    };
    (ctx.serve(kind).unwrap_or_else(|e| e), fault)
}

/// What a faulty request answers instead; `slow` and `drop` keep the real reply and act when
/// sending.
fn fault_reply(state: &State, kind: FaultKind, reply: Reply) -> Reply {
    let text = "text/plain; charset=utf-8";
    match kind {
        FaultKind::E500 => Reply::raw(500, text, b"erro interno".to_vec()),
        FaultKind::E503 => Reply::raw(503, text, b"servico indisponivel".to_vec()),
        FaultKind::E429 => {
            let mut r = Reply::error(429, "muitas requisições");
            let retry_after = state.args.retry_after.to_string();
            r.headers.push(("Retry-After", retry_after));
            r
        }
        FaultKind::Truncate => {
            let mut body = reply.body;
            body.truncate(body.len() / 2);
            Reply::raw(200, JSON, body)
        }
        FaultKind::Html => {
            let body = b"<html><body>Erro interno</body></html>".to_vec();
            Reply::raw(200, "text/html; charset=utf-8", body)
        }
        FaultKind::Slow | FaultKind::Drop => reply,
    }
}

/// The reply to one request and the fault it carries; `slow` and `drop` are acted out by the
/// connection when sending.
fn handle(state: &State, request: &Request) -> (Reply, Option<FaultKind>) {
    let started = Instant::now();
    let url = request.target.as_str();
    let (path, raw_query) = url.split_once('?').unwrap_or((url, ""));
    let query: Query = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let route = route_of(path);
    if matches!(route, Route::Stats) {
        return (serve_stats(state), None);
    }
    lock(&state.stats).requests += 1;

    let (reply, fault) = match route {
        _ if !matches!(request.method.as_str(), "GET" | "HEAD") => {
            let mut reply = Reply::error(405, "método não permitido");
            reply.headers.push(("Allow", "GET, HEAD".to_string()));
            (reply, None)
        }
        Route::Stats | Route::NotFound => (Reply::error(404, "rota não encontrada"), None),
        Route::Expected => (serve_expected(state, &query), None),
        Route::Data(kind) => serve_data(state, request, kind, path, query),
    };
    let reply = match fault {
        Some(kind) => fault_reply(state, kind, reply),
        None => reply,
    };
    // Counted before any slow/drop action so /_stats is current while the client waits.
    state.record_status(reply.status);
    let elapsed = started.elapsed();
    log::debug!(
        "{} {url} -> {} {fault:?} in {elapsed:?}",
        request.method,
        reply.status
    );
    (reply, fault)
}

fn validate(args: &Args) -> Result<(), String> {
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if args.page_size == 0 || args.page_size > MAX_PAGE_SIZE {
        return Err(format!("--page-size must be 1..={MAX_PAGE_SIZE}"));
    }
    if args.per_day > MAX_PER_DAY {
        return Err(format!("--per-day must be at most {MAX_PER_DAY}"));
    }
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err("--fault-rate must be between 0.0 and 1.0".into());
    }
    Ok(())
}

fn new_state(args: Args, local: SocketAddr) -> Arc<State> {
    Arc::new(State {
        fault_rng: Mutex::new(fastrand::Rng::with_seed(args.fault_seed)),
        args,
        local,
        stats: Mutex::new(Stats::default()),
        attempts: Mutex::new(HashMap::new()),
    })
}

fn main() {
    env_logger::init();
    let args: Args = argh::from_env();
    if let Err(msg) = validate(&args) {
        eprintln!("atlas-sample-api: {msg}");
        std::process::exit(2);
    }
    let (listener, local) = match bind(&args.host, args.port) {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!(
                "atlas-sample-api: cannot bind {}:{}: {e}",
                args.host, args.port
            );
            std::process::exit(1);
        }
    };
    // Parents wait for this exact line to learn the port, so flush it at once. No println!:
    // a parent that already closed our stdout must not make us panic.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on http://{local}").and_then(|()| stdout.flush());
    drop(stdout);

    serve(&listener, &new_state(args, local));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        Args::from_args(&["atlas-sample-api"], extra).expect("valid test args")
    }

    /// The server on a free loopback port, serving from a background thread.
    fn start(extra: &[&str]) -> SocketAddr {
        let a = args(&[&["--port", "0"], extra].concat());
        let (listener, local) = bind(&a.host, a.port).expect("bind a free port");
        let state = new_state(a, local);
        std::thread::spawn(move || serve(&listener, &state));
        local
    }

    struct Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        /// The body was shorter than `Content-Length` when the connection ended.
        cut: bool,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            let found = self
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name));
            found.map(|(_, v)| v.as_str())
        }
    }

    /// A raw keep-alive client on one connection, so reuse is certain.
    struct Client {
        stream: TcpStream,
        buf: Vec<u8>,
    }

    impl Client {
        fn connect(addr: SocketAddr) -> Client {
            let stream = TcpStream::connect(addr).expect("connect");
            let timeout = Some(Duration::from_secs(5));
            stream.set_read_timeout(timeout).expect("read timeout");
            Client {
                stream,
                buf: Vec::new(),
            }
        }

        fn fill(&mut self) -> usize {
            let mut chunk = [0u8; 16384];
            let n = self.stream.read(&mut chunk).expect("read a response");
            self.buf.extend_from_slice(&chunk[..n]);
            n
        }

        fn send(&mut self, raw: &[u8]) {
            self.stream.write_all(raw).expect("write a request");
        }

        fn response(&mut self, head_only: bool) -> Response {
            let (len, status, headers) = loop {
                let mut slots = [httparse::EMPTY_HEADER; 32];
                let mut parsed = httparse::Response::new(&mut slots);
                if let httparse::Status::Complete(len) = parsed.parse(&self.buf).expect("head") {
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| (h.name.into(), String::from_utf8_lossy(h.value).into()))
                        .collect();
                    break (len, parsed.code.expect("status"), headers);
                }
                assert!(self.fill() > 0, "connection closed before a response head");
            };
            self.buf.drain(..len);
            let mut response = Response {
                status,
                headers,
                body: Vec::new(),
                cut: false,
            };
            let length = match head_only {
                true => 0,
                false => response
                    .header("Content-Length")
                    .and_then(|v| v.parse().ok())
                    .expect("Content-Length"),
            };
            while self.buf.len() < length {
                if self.fill() == 0 {
                    response.cut = true;
                    break;
                }
            }
            response.body = self.buf.drain(..length.min(self.buf.len())).collect();
            response
        }

        fn get(&mut self, target: &str) -> Response {
            self.send(format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
            self.response(false)
        }

        /// True once the server has closed its side.
        fn closed(&mut self) -> bool {
            self.buf.is_empty() && self.fill() == 0
        }
    }

    const RANGE: &str = "data_inicial=2025-01-01&data_final=2025-01-03";

    /// tiny_http's pool left some of a burst of keep-alive connections unread until another
    /// one closed. Here all 16 must get their first answer while every connection is still
    /// open (the old server failed this about two runs in three), then finish 20 requests.
    #[test]
    fn burst_of_keep_alive_connections() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let addr = start(&["--per-day", "50", "--threads", "2"]);
        let clients = 16;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        let barrier = Arc::new(std::sync::Barrier::new(clients));
        let answered = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (barrier, answered) = (Arc::clone(&barrier), Arc::clone(&answered));
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut client = Client::connect(addr);
                    for page in 1..=20 {
                        let r = client.get(&format!("/page/pedidos?{RANGE}&page={page}"));
                        assert_eq!(r.status, 200);
                        assert_eq!(r.header("Connection"), Some("keep-alive"));
                        let body: Value = serde_json::from_slice(&r.body).expect("json");
                        assert_eq!(body["pagina"], page);
                        if page == 1 {
                            answered.fetch_add(1, Ordering::SeqCst);
                            while answered.load(Ordering::SeqCst) < clients {
                                assert!(Instant::now() < deadline, "a connection was starved");
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("client thread");
        }
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
        let stats = Client::connect(addr).get("/_stats");
        let stats: Value = serde_json::from_slice(&stats.body).expect("json");
        assert_eq!(stats["requests"], 16 * 20);
    }

    #[test]
    fn framing_and_connection_handling() {
        let addr = start(&["--per-day", "10"]);
        let mut c = Client::connect(addr);
        // HEAD: the GET headers, no body, connection kept.
        c.send(b"HEAD /_stats HTTP/1.1\r\nHost: x\r\n\r\n");
        let head = c.response(true);
        assert_eq!(head.status, 200);
        assert!(head.header("Content-Length").is_some_and(|l| l != "0"));
        // A body is skipped; pipelined requests are answered in order.
        c.send(b"POST /page/x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /x HTTP/1.1\r\n\r\n");
        let post = c.response(false);
        assert_eq!(
            (post.status, post.header("Allow")),
            (405, Some("GET, HEAD"))
        );
        assert_eq!(c.response(false).status, 404);
        // `Connection: close` is honoured.
        c.send(b"GET /_stats HTTP/1.1\r\nConnection: close\r\n\r\n");
        let last = c.response(false);
        assert_eq!(
            (last.status, last.header("Connection")),
            (200, Some("close"))
        );
        assert!(c.closed());
        // HTTP/1.0 closes unless asked to keep alive.
        let mut c = Client::connect(addr);
        c.send(b"GET /_stats HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.response(false).header("Connection"), Some("keep-alive"));
        c.send(b"GET /_stats HTTP/1.0\r\n\r\n");
        assert_eq!(c.response(false).header("Connection"), Some("close"));
        assert!(c.closed());
        // A malformed head is a 400, an oversized one a 431; both close.
        let mut c = Client::connect(addr);
        c.send(b"GET\x01 / HTTP/1.1\r\n\r\n");
        assert_eq!(c.response(false).status, 400);
        assert!(c.closed());
        let mut c = Client::connect(addr);
        c.send(format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(70_000)).as_bytes());
        assert_eq!(c.response(false).status, 431);
        assert!(c.closed());
    }

    #[test]
    fn drop_fault_cuts_the_body() {
        let addr = start(&[
            "--per-day",
            "10",
            "--fail-first",
            "1",
            "--fault-kinds",
            "drop",
        ]);
        let target = format!("/offset/pedidos?{RANGE}");
        let mut c = Client::connect(addr);
        let dropped = c.get(&target);
        assert_eq!(dropped.status, 200);
        assert!(dropped.cut && !dropped.body.is_empty());
        assert!(c.closed());
        let mut c = Client::connect(addr);
        let whole = c.get(&target);
        assert!(!whole.cut);
        assert_eq!(whole.body.len() / 2, dropped.body.len());
        assert!(serde_json::from_slice::<Value>(&whole.body).is_ok());
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
    }

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

    #[test]
    fn page_spanning_two_days() {
        let a = args(&["--per-day", "50"]);
        let range = Span {
            first: date("2025-01-31"),
            days: 2,
        };
        let records = Records {
            args: &a,
            first: range.first,
            from: 30,
            to: 60,
            wrapped: false,
        };
        let value = serde_json::to_value(&records).expect("serialises");
        let ids: Vec<&str> = value
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(ids.len(), 30);
        assert_eq!(ids[0], "20250131-30");
        assert_eq!(ids[19], "20250131-49");
        assert_eq!(ids[20], "20250201-0");
        assert_eq!(ids[29], "20250201-9");
        assert_eq!(range.total(a.per_day), 100);
        assert_eq!(100u64.div_ceil(30), 4);
    }

    #[test]
    fn records_are_deterministic() {
        let a = args(&[]);
        let one = make_record(&a, date("2025-03-04"), 7);
        let two = make_record(&a, date("2025-03-04"), 7);
        assert_eq!(one, two);
        let text = |p: &Pedido| serde_json::to_string(p).expect("serialises");
        assert_eq!(text(&one), text(&two));
        assert_ne!(one, make_record(&a, date("2025-03-04"), 8));
        assert_ne!(
            one,
            make_record(&args(&["--seed", "2"]), date("2025-03-04"), 7)
        );
        assert_eq!(one.numero, 9194 * 100_000 + 7);
        assert!(text(&one).starts_with("{\"numero\":"));
        let sizes: Vec<usize> = (0..200)
            .map(|i| text(&make_record(&a, date("2025-03-04"), i)).len())
            .collect();
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((450..=750).contains(&mean), "mean record size {mean}");
    }

    #[test]
    fn rfc3339_and_epoch_edges() {
        let day = date("2025-01-02");
        let rfc = |i| record_date(RecordDate::Rfc3339, day, i, 50);
        assert_eq!(rfc(0), "2025-01-02T00:00:00-03:00");
        assert_eq!(rfc(1), "2025-01-02T23:59:59.999+00:00");
        assert!(rfc(2).as_str().is_some_and(|s| s.ends_with("+05:30")));
        assert!(rfc(3).as_str().is_some_and(|s| s.ends_with("-10:00")));
        assert!(rfc(49)
            .as_str()
            .is_some_and(|s| s.starts_with("2025-01-02T23:")));
        let at = |style, i| record_date(style, day, i, 50);
        assert_eq!(at(RecordDate::Epoch, 0), 1_735_776_000);
        assert_eq!(at(RecordDate::Epoch, 1), 1_735_862_399);
        assert_eq!(at(RecordDate::EpochMs, 1), 1_735_862_399_999i64);
        assert_eq!(at(RecordDate::Naive, 1), "2025-01-02 23:59:59");
        assert_eq!(at(RecordDate::Br, 5), "02/01/2025");
        assert_eq!(at(RecordDate::Iso, 5), "2025-01-02");
        let mid: Vec<u64> = (0..50).map(|i| millis_of_day(i, 50)).collect();
        assert!(mid[2..]
            .windows(2)
            .all(|w| w[0] < w[1] && w[1] < LAST_MS_OF_DAY));
    }

    #[test]
    fn auth_specs_and_base64() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        let basic = Auth::from_str("basic:Aladdin:open sesame");
        assert_eq!(
            basic,
            Ok(Auth::Header {
                name: "Authorization".into(),
                value: "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into()
            })
        );
        let query = Auth::from_str("query:api_key:a:b");
        assert!(
            matches!(query, Ok(Auth::Query { param, value }) if param == "api_key" && value == "a:b")
        );
        assert!(Auth::from_str("bearer:").is_err());
        assert!(Auth::from_str("header:X-Key").is_err());
        assert!(FaultKinds::from_str("500,boom").is_err());
    }
}
