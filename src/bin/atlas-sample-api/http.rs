//! HTTP vocabulary shared by the server and the endpoints: the reply value, content types,
//! reason phrases and query-string helpers.

use serde::Serialize;
use serde_json::json;
use url::form_urlencoded;

pub const JSON: &str = "application/json; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

/// Decoded query pairs in the order sent.
pub type Query = Vec<(String, String)>;

/// First value of `name` in `query`.
pub fn param<'a>(query: &'a Query, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

pub fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

/// `query` re-encoded with `name` moved to the end and set to `value`.
pub fn query_with(query: &Query, name: &str, value: &str) -> String {
    let kept = query.iter().filter(|(k, _)| k != name);
    encode_query(
        kept.map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([(name, value)]),
    )
}

/// One answer: the body always complete here; faults decide later how much of it is sent.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Extra headers, after the framing ones.
    pub headers: Vec<(&'static str, String)>,
    /// `--hostile`: the bytes sent instead of this reply (`status` is then theirs).
    pub wire: Option<Box<crate::hostile::Wire>>,
}

impl Reply {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply::raw(status, JSON, body),
            Err(e) => Reply::raw(500, TEXT, e.to_string().into_bytes()),
        }
    }

    /// A 429 that asks the client to wait `retry_after` seconds.
    pub fn too_many(retry_after: u64) -> Reply {
        let mut reply = Reply::error(429, "muitas requisições");
        reply.headers.push(("Retry-After", retry_after.to_string()));
        reply
    }

    /// `{"erro": message}`.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &json!({ "erro": message }))
    }

    pub fn raw(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            body,
            headers: Vec::new(),
            wire: None,
        }
    }
}

/// A 400 with `message`.
pub fn bad(message: impl Into<String>) -> Reply {
    Reply::error(400, &message.into())
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}
