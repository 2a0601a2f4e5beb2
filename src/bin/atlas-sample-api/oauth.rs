//! `--oauth ID:SECRET`: an OAuth2 token endpoint (`POST /oauth/token`, grants
//! `client_credentials` and `refresh_token`) whose refresh tokens rotate: each refresh
//! returns a new refresh token and invalidates the one used, and using one again is
//! answered `invalid_grant` (and logged as `reused`). Access tokens expire after
//! `--oauth-ttl-secs`; data requests then need `Authorization: Bearer <live token>`.
//!
//! `POST /_oauth/revoke` kills every access token at once (a test's early revocation).
//!
//! `--oauth-log FILE` gets one line per token request, written through at once:
//! `<unix_ms> <grant_type> <refresh token used, or -> <outcome>`, the outcome one of `ok`,
//! `reused`, `unknown`, `invalid_client`, `unsupported`. A test reads it to check that no
//! refresh token was used twice.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use serde_json::json;
use url::form_urlencoded;

use crate::http::Reply;
use crate::server::Request;
use crate::state::lock;

/// The token endpoint's state.
pub struct OAuthServer {
    client_id: String,
    client_secret: String,
    ttl: Duration,
    tokens: Mutex<Tokens>,
    log: Option<Mutex<File>>,
}

#[derive(Default)]
struct Tokens {
    issued: u64,
    /// Refresh tokens that may still be used, once.
    live: HashSet<String>,
    /// Refresh tokens used (and so invalidated by their rotation).
    spent: HashSet<String>,
    /// Access tokens and when they expire.
    access: HashMap<String, Instant>,
}

impl Tokens {
    fn mint(&mut self, kind: &str) -> String {
        self.issued += 1;
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{kind}-{}-{nanos:08x}", self.issued)
    }
}

impl OAuthServer {
    /// `spec` is `CLIENT_ID:CLIENT_SECRET`; `refresh` the refresh token valid at start.
    pub fn new(
        spec: &str,
        refresh: Option<&str>,
        ttl_secs: u64,
        log: Option<&Path>,
    ) -> Result<OAuthServer, String> {
        let (id, secret) = spec
            .split_once(':')
            .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
            .ok_or("--oauth expects CLIENT_ID:CLIENT_SECRET")?;
        let log = match log {
            None => None,
            Some(path) => Some(Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("--oauth-log {}: {e}", path.display()))?,
            )),
        };
        let mut tokens = Tokens::default();
        tokens.live.extend(refresh.map(str::to_string));
        Ok(OAuthServer {
            client_id: id.to_string(),
            client_secret: secret.to_string(),
            ttl: Duration::from_secs(ttl_secs),
            tokens: Mutex::new(tokens),
            log,
        })
    }

    fn log(&self, grant: &str, refresh: Option<&str>, outcome: &str) {
        let Some(file) = &self.log else { return };
        let unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let grant = if grant.is_empty() { "-" } else { grant };
        let line = format!("{unix_ms} {grant} {} {outcome}\n", refresh.unwrap_or("-"));
        if let Err(e) = lock(file).write_all(line.as_bytes()) {
            log::warn!("cannot write the oauth log: {e}");
        }
    }

    /// `POST /_oauth/revoke`: every access token dies at once (refresh tokens live on), as
    /// when a provider revokes sessions; clients then meet a 401 with a token they hold live.
    pub fn revoke_access(&self) -> Reply {
        let mut tokens = lock(&self.tokens);
        let n = tokens.access.len();
        tokens.access.clear();
        Reply::json(200, &json!({ "revoked": n }))
    }

    /// True when `request` carries a live access token.
    pub fn allows(&self, request: &Request) -> bool {
        let Some(token) = request
            .header("Authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let tokens = lock(&self.tokens);
        tokens
            .access
            .get(token.trim())
            .is_some_and(|until| Instant::now() < *until)
    }

    /// `POST /oauth/token` with a form body; the client authenticates in the body or with
    /// HTTP Basic.
    pub fn token(&self, request: &Request) -> Reply {
        let form: HashMap<String, String> =
            form_urlencoded::parse(&request.body).into_owned().collect();
        let get = |k: &str| form.get(k).map(String::as_str);
        let grant = get("grant_type").unwrap_or("");
        let refresh = get("refresh_token");
        let basic = request
            .header("Authorization")
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let (id, secret) = match &basic {
            Some(pair) => pair.split_once(':').unwrap_or((pair, "")),
            None => (
                get("client_id").unwrap_or(""),
                get("client_secret").unwrap_or(""),
            ),
        };
        if id != self.client_id || secret != self.client_secret {
            self.log(grant, refresh, "invalid_client");
            return oauth_error(401, "invalid_client");
        }
        let mut tokens = lock(&self.tokens);
        let rotated = match (grant, refresh) {
            ("client_credentials", _) => None,
            ("refresh_token", Some(r)) if tokens.live.remove(r) => {
                tokens.spent.insert(r.to_string());
                let next = tokens.mint("rt");
                tokens.live.insert(next.clone());
                Some(next)
            }
            ("refresh_token", r) => {
                let outcome = if r.is_some_and(|r| tokens.spent.contains(r)) {
                    "reused"
                } else {
                    "unknown"
                };
                drop(tokens);
                self.log(grant, refresh, outcome);
                return oauth_error(400, "invalid_grant");
            }
            _ => {
                drop(tokens);
                self.log(grant, refresh, "unsupported");
                return oauth_error(400, "unsupported_grant_type");
            }
        };
        let access = tokens.mint("at");
        let until = Instant::now() + self.ttl;
        tokens.access.insert(access.clone(), until);
        drop(tokens);
        self.log(grant, refresh, "ok");
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.ttl.as_secs(),
        });
        if let Some(r) = rotated {
            body["refresh_token"] = r.into();
        }
        Reply::json(200, &body)
    }
}

fn oauth_error(status: u16, error: &str) -> Reply {
    Reply::json(status, &json!({ "error": error }))
}

#[cfg(test)]
mod tests {
    use crate::test_client::{start, Client, RANGE};

    fn post(c: &mut Client, form: &str) -> (u16, serde_json::Value) {
        c.send(
            format!(
                "POST /oauth/token HTTP/1.1\r\nHost: t\r\nContent-Type: \
                 application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            )
            .as_bytes(),
        );
        let r = c.response(false);
        (r.status, serde_json::from_slice(&r.body).expect("json"))
    }

    fn get_with(c: &mut Client, token: &str) -> u16 {
        c.send(
            format!(
                "GET /page/pedidos?{RANGE} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        );
        c.response(false).status
    }

    /// Each refresh rotates: the old refresh token is refused as invalid_grant and logged
    /// `reused`; access tokens open the data endpoints; bad client credentials are refused.
    #[test]
    fn refresh_tokens_rotate_and_reuse_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("tokens.log");
        let addr = start(&[
            "--oauth",
            "app:s3cr3t",
            "--oauth-refresh-token",
            "rt-0",
            "--oauth-log",
            log.to_str().expect("utf-8"),
        ]);
        let mut c = Client::connect(addr);
        let creds = "client_id=app&client_secret=s3cr3t";
        let (status, first) = post(
            &mut c,
            &format!("grant_type=refresh_token&refresh_token=rt-0&{creds}"),
        );
        assert_eq!(status, 200, "{first}");
        let next = first["refresh_token"]
            .as_str()
            .expect("rotated")
            .to_string();
        assert_ne!(next, "rt-0");
        let access = first["access_token"].as_str().expect("access").to_string();
        assert_eq!(get_with(&mut c, &access), 200);
        assert_eq!(get_with(&mut c, "forged"), 401);
        let (status, again) = post(
            &mut c,
            &format!("grant_type=refresh_token&refresh_token=rt-0&{creds}"),
        );
        assert_eq!(
            (status, again["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        let (status, _) = post(
            &mut c,
            &format!("grant_type=refresh_token&refresh_token={next}&{creds}"),
        );
        assert_eq!(status, 200);
        let (status, bad) = post(
            &mut c,
            "grant_type=client_credentials&client_id=app&client_secret=x",
        );
        assert_eq!(
            (status, bad["error"].as_str()),
            (401, Some("invalid_client"))
        );
        let (status, cc) = post(&mut c, &format!("grant_type=client_credentials&{creds}"));
        assert_eq!(status, 200);
        assert!(cc.get("refresh_token").is_none());
        let outcomes: Vec<String> = std::fs::read_to_string(&log)
            .expect("log")
            .lines()
            .map(|l| l.split(' ').skip(1).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            outcomes,
            [
                "refresh_token rt-0 ok".to_string(),
                "refresh_token rt-0 reused".into(),
                format!("refresh_token {next} ok"),
                "client_credentials - invalid_client".into(),
                "client_credentials - ok".into(),
            ]
        );
    }
}
