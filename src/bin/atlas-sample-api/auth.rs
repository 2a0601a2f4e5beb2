//! The credential the server expects (`--auth`) and the check of one request against it.

use std::str::FromStr;

use base64::Engine;

use crate::http::{param, Query};
use crate::server::Request;

/// Expected credential: bearer and basic are just an exact `Authorization` header value.
#[derive(Clone, Debug, PartialEq)]
pub enum Auth {
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
            "basic" if pair().is_some() => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(rest);
                Ok(header("Authorization", format!("Basic {encoded}")))
            }
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

impl Auth {
    /// True when `request` (with its full `query`, auth parameter included) carries the
    /// expected credential.
    pub fn allows(&self, request: &Request, query: &Query) -> bool {
        match self {
            Auth::None => true,
            Auth::Header { name, value } => request.headers_named(name).any(|v| v == value),
            Auth::Query { param: p, value } => param(query, p) == Some(value.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_specs() {
        let basic = Auth::from_str("basic:Aladdin:open sesame");
        assert_eq!(
            basic,
            Ok(Auth::Header {
                name: "Authorization".into(),
                value: "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into()
            })
        );
        let padded = Auth::from_str("basic:a:bc");
        assert!(matches!(padded, Ok(Auth::Header { value, .. }) if value == "Basic YTpiYw=="));
        let query = Auth::from_str("query:api_key:a:b");
        assert!(
            matches!(query, Ok(Auth::Query { param, value }) if param == "api_key" && value == "a:b")
        );
        assert!(Auth::from_str("bearer:").is_err());
        assert!(Auth::from_str("header:X-Key").is_err());
    }
}
