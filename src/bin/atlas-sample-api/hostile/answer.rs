//! The bad answers of `--hostile`, each made from the good one (see the parent module for
//! what they may and may not hold): the bytes of the head, built by hand so that any header
//! value or status line can be written, and the body, changed as the kind says.

use super::{Kind, LOOP_PARAM};
use crate::gzip_bomb::bomb;
use crate::http::{reason_phrase, JSON};

/// Digits of the long numbers of `big_numbers` and `total_odd`.
const LONG_DIGITS: usize = 10_000;
/// Levels of `deep_nesting`.
pub const DEEP: usize = 10_000;

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

pub(super) fn long_number() -> String {
    let mut n = String::with_capacity(LONG_DIGITS);
    n.push('9');
    n.extend(std::iter::repeat_n('8', LONG_DIGITS - 1));
    n
}

/// The bad answer of `kind`, variant `v`, made from the good one.
pub fn answer(kind: Kind, v: u64, g: &Good<'_>, bomb_bytes: u64) -> Wire {
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
            let gz = bomb(bomb_bytes, &body);
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
