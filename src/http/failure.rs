//! What a failed request calls for (`Failure`: retry, refused, credentials,
//! certificate), as `retry` classifies it, and how a transport error and
//! the start of a body are shown.

use crate::retry::Verdict;
use std::time::Duration;

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

/// Start of a body for messages, valid UTF-8, one line.
pub fn snippet(body: &[u8], max: usize) -> String {
    crate::report::snippet(body, max, "")
}

/// A transport error as a failure says it.
pub(super) fn transport_message(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timeout ({t})"),
        other => other.to_string(),
    }
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
    fn snippet_is_one_line_and_bounded() {
        assert_eq!(snippet(b"a\nb\r\nc", 10), "a b  c");
        assert_eq!(snippet("ção".repeat(100).as_bytes(), 4), "ção\u{e7}");
    }
}
