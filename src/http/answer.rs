//! One request sent and its answer read: classified for `retry` (a failure
//! by what it calls for, `Retry-After` capped by `max_pause_secs`), a 2xx
//! body read within its limits and decoded, the route's `response_rules`
//! applied, every secret masked in what a failure says.

use super::agent::certificate_error;
use super::auth::ResolvedAuth;
use super::body;
use super::failure::{snippet, transport_message, Failure};
use super::headers;
use super::mask::Masker;
use super::request::Call;
use crate::charset::{body_charset, Charset};
use crate::config::{Method, Route, SecretValue};
use crate::rules::{self, Then};
use chrono::Utc;
use std::time::Duration;

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
