//! `--oauth ID:SECRET`: an OAuth2 token endpoint (`POST /oauth/token`, grants
//! `client_credentials` and `refresh_token`) whose refresh tokens rotate: each refresh
//! returns a new refresh token and invalidates the one used, and using one again is
//! answered `invalid_grant` (and logged as `reused`). Access tokens expire after
//! `--oauth-ttl-secs`; data requests then need `Authorization: Bearer <live token>`.
//!
//! `POST /_oauth/revoke` kills every access token at once (a test's early revocation).
//!
//! The client authenticates by HTTP Basic (id and secret form-urlencoded, RFC 6749 §2.3.1)
//! or in the form body: `--oauth-client-auth` accepts either (`any`, the default) or only one.
//!
//! `GET /oauth/authorize` is the authorization endpoint of the authorization-code grant
//! (RFC 6749 §4.1): it answers a 302 to the `redirect_uri` with a one-time `code` and the
//! `state` (`--oauth-consent deny`: `error=access_denied`; `wrong_state`: a state that is not
//! the one sent). The token endpoint then trades the code (grant `authorization_code`) for an
//! access and a refresh token, checking the `redirect_uri` and, when a `code_challenge` was
//! given, the PKCE S256 `code_verifier` (RFC 7636).
//!
//! `--oauth-log FILE` gets one line per token or authorization request, written through at
//! once: `<unix_ms> <grant_type, or authorize> <refresh token used, or -> <outcome>`, the
//! outcome one of `ok`, `reused`, `unknown`, `invalid_client`, `unsupported`, `bad_code`,
//! `bad_redirect`, `bad_verifier` (token requests), `ok`, `denied`, `wrong_state` (authorize).
//! A test reads it to check that no refresh token was used twice.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use url::form_urlencoded;

use crate::cli::{ClientAuth, Consent};
use crate::http::{param, Query, Reply};
use crate::server::Request;
use crate::state::lock;

/// The token endpoint's state.
pub struct OAuthServer {
    client_id: String,
    client_secret: String,
    client_auth: ClientAuth,
    consent: Consent,
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
    /// Authorization codes not yet traded.
    codes: HashMap<String, Issued>,
}

/// What an authorization code was issued for.
struct Issued {
    redirect_uri: String,
    /// The PKCE S256 challenge, when one was sent.
    challenge: Option<String>,
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
        (client_auth, consent): (ClientAuth, Consent),
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
            client_auth,
            consent,
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

    /// The client id and secret of a token request, as `--oauth-client-auth` accepts them:
    /// HTTP Basic (each part form-urlencoded) or the form body; `None` when sent the other way.
    fn credentials(&self, request: &Request, form: &Query) -> Option<(String, String)> {
        let basic = request
            .header("Authorization")
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .map(|pair| {
                let (id, secret) = pair.split_once(':').unwrap_or((&pair, ""));
                let decode = |v: &str| -> String {
                    form_urlencoded::parse(format!("v={v}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                (decode(id), decode(secret))
            });
        let body = param(form, "client_id").map(|id| {
            (
                id.to_string(),
                param(form, "client_secret").unwrap_or("").to_string(),
            )
        });
        match self.client_auth {
            ClientAuth::Basic => basic,
            ClientAuth::Body => body,
            ClientAuth::Any => basic.or(body),
        }
    }

    /// `GET /oauth/authorize`: a 302 to the `redirect_uri` with a code and the state (or what
    /// `--oauth-consent` says). A bad client or redirect_uri is a 400 here, never a redirect.
    pub fn authorize(&self, query: &Query) -> Reply {
        let get = |k: &str| param(query, k);
        if get("client_id") != Some(self.client_id.as_str()) {
            return Reply::error(400, "client_id desconhecido");
        }
        let Some(mut target) = get("redirect_uri").and_then(|r| url::Url::parse(r).ok()) else {
            return Reply::error(400, "redirect_uri ausente ou inválido");
        };
        let state = get("state").unwrap_or("");
        let challenge = get("code_challenge").map(str::to_string);
        let method_ok = challenge.is_none() || get("code_challenge_method") == Some("S256");
        let outcome = match (get("response_type"), method_ok, self.consent) {
            (Some("code"), true, Consent::Allow) => "ok",
            (Some("code"), true, Consent::WrongState) => "wrong_state",
            (Some("code"), true, Consent::Deny) => "denied",
            (Some("code"), false, _) => "invalid_request",
            _ => "unsupported_response_type",
        };
        self.log("authorize", None, outcome);
        {
            let mut pairs = target.query_pairs_mut();
            if matches!(outcome, "ok" | "wrong_state") {
                let mut tokens = lock(&self.tokens);
                let code = tokens.mint("ac");
                tokens.codes.insert(
                    code.clone(),
                    Issued {
                        redirect_uri: get("redirect_uri").unwrap_or("").to_string(),
                        challenge,
                    },
                );
                pairs.append_pair("code", &code);
            } else {
                let error = if outcome == "denied" {
                    "access_denied"
                } else {
                    outcome
                };
                pairs
                    .append_pair("error", error)
                    .append_pair("error_description", "o usuário negou o acesso");
            }
            let state = if outcome == "wrong_state" {
                format!("{state}-outro")
            } else {
                state.to_string()
            };
            pairs.append_pair("state", &state);
        }
        let mut reply = Reply::raw(302, crate::http::TEXT, Vec::new());
        reply.headers.push(("Location", target.to_string()));
        reply
    }

    /// `POST /oauth/token` with a form body; the client authenticates by HTTP Basic or in the
    /// body, as `--oauth-client-auth` accepts.
    pub fn token(&self, request: &Request) -> Reply {
        let form: Query = form_urlencoded::parse(&request.body).into_owned().collect();
        let get = |k: &str| param(&form, k);
        let grant = get("grant_type").unwrap_or("");
        let refresh = get("refresh_token");
        let (id, secret) = self.credentials(request, &form).unwrap_or_default();
        if id != self.client_id || secret != self.client_secret {
            self.log(grant, refresh, "invalid_client");
            return oauth_error(401, "invalid_client");
        }
        if grant == "authorization_code" {
            return self.trade_code(&form);
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

impl OAuthServer {
    /// Grant `authorization_code`: the code once, for the redirect_uri it was issued to and,
    /// when it was issued with a challenge, the verifier that hashes to it.
    fn trade_code(&self, form: &Query) -> Reply {
        let get = |k: &str| param(form, k);
        let grant = "authorization_code";
        let mut tokens = lock(&self.tokens);
        let issued = get("code").and_then(|c| tokens.codes.remove(c));
        let outcome = match &issued {
            None => "bad_code",
            Some(i) if get("redirect_uri") != Some(i.redirect_uri.as_str()) => "bad_redirect",
            Some(Issued {
                challenge: Some(c), ..
            }) if get("code_verifier").map(|v| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v))
            }) != Some(c.clone()) =>
            {
                "bad_verifier"
            }
            Some(_) => "ok",
        };
        if outcome != "ok" {
            drop(tokens);
            self.log(grant, None, outcome);
            return oauth_error(400, "invalid_grant");
        }
        let refresh = tokens.mint("rt");
        tokens.live.insert(refresh.clone());
        let access = tokens.mint("at");
        tokens
            .access
            .insert(access.clone(), Instant::now() + self.ttl);
        drop(tokens);
        self.log(grant, None, "ok");
        Reply::json(
            200,
            &json!({
                "access_token": access,
                "refresh_token": refresh,
                "token_type": "Bearer",
                "expires_in": self.ttl.as_secs(),
            }),
        )
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

    fn post_basic(c: &mut Client, basic: &str, form: &str) -> (u16, serde_json::Value) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(basic);
        c.send(
            format!(
                "POST /oauth/token HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {b64}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            )
            .as_bytes(),
        );
        let r = c.response(false);
        (r.status, serde_json::from_slice(&r.body).expect("json"))
    }

    /// The code and state of an authorization redirect to `http://127.0.0.1:9/cb`.
    fn authorize(c: &mut Client, extra: &str) -> (String, String) {
        let r = c.get(&format!(
            "/oauth/authorize?response_type=code&client_id=app&redirect_uri=\
             http%3A%2F%2F127.0.0.1%3A9%2Fcb&state=s1{extra}"
        ));
        assert_eq!(r.status, 302);
        let to = url::Url::parse(r.header("Location").expect("Location")).expect("URL");
        assert_eq!(to.path(), "/cb");
        let get = |k: &str| {
            to.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        (get("code"), get("state"))
    }

    /// `--oauth-client-auth basic` takes HTTP Basic (each part form-urlencoded) and refuses the
    /// body; a code is traded once, for its redirect_uri and PKCE verifier.
    #[test]
    fn basic_only_clients_and_authorization_codes() {
        let addr = start(&["--oauth", "app:s3:cr+t é", "--oauth-client-auth", "basic"]);
        let mut c = Client::connect(addr);
        let cc = "grant_type=client_credentials";
        let (status, _) = post(
            &mut c,
            &format!("{cc}&client_id=app&client_secret=s3%3Acr%2Bt+%C3%A9"),
        );
        assert_eq!(status, 401, "the body is refused");
        let creds = "app:s3%3Acr%2Bt+%C3%A9";
        let (status, body) = post_basic(&mut c, creds, cc);
        assert_eq!(status, 200, "{body}");

        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let pkce = "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
                    &code_challenge_method=S256";
        let trade = |code: &str, redirect: &str, verifier: &str| {
            format!(
                "grant_type=authorization_code&code={code}&redirect_uri={redirect}\
                 &code_verifier={verifier}"
            )
        };
        let cb = "http%3A%2F%2F127.0.0.1%3A9%2Fcb";
        let (code, state) = authorize(&mut c, pkce);
        assert_eq!(state, "s1");
        let (status, e) = post_basic(&mut c, creds, &trade(&code, cb, "wrong"));
        assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
        let (status, _) = post_basic(&mut c, creds, &trade(&code, cb, verifier));
        assert_eq!(status, 400, "a code is used once, even after a refusal");
        let (code, _) = authorize(&mut c, pkce);
        let (status, _) = post_basic(&mut c, creds, &trade(&code, "http%3A%2F%2Fx%2F", verifier));
        assert_eq!(status, 400, "another redirect_uri");
        let (code, _) = authorize(&mut c, pkce);
        let (status, tokens) = post_basic(&mut c, creds, &trade(&code, cb, verifier));
        assert_eq!(status, 200, "{tokens}");
        let refresh = tokens["refresh_token"].as_str().expect("refresh token");
        let (status, _) = post_basic(
            &mut c,
            creds,
            &format!("grant_type=refresh_token&refresh_token={refresh}"),
        );
        assert_eq!(status, 200, "the refresh token works");
        let (code, _) = authorize(&mut c, "");
        let (status, _) = post_basic(&mut c, creds, &trade(&code, cb, "ignored"));
        assert_eq!(status, 200, "no challenge, no verifier checked");
    }

    #[test]
    fn consent_can_be_refused_or_answered_with_another_state() {
        let addr = start(&["--oauth", "app:s", "--oauth-consent", "deny"]);
        let mut c = Client::connect(addr);
        let (code, state) = authorize(&mut c, "");
        assert_eq!((code.as_str(), state.as_str()), ("", "s1"));
        let addr = start(&["--oauth", "app:s", "--oauth-consent", "wrong_state"]);
        let mut c = Client::connect(addr);
        let (code, state) = authorize(&mut c, "");
        assert!(!code.is_empty());
        assert_ne!(state, "s1");
        let r = c.get("/oauth/authorize?response_type=code&client_id=other&redirect_uri=x");
        assert_eq!(r.status, 400, "an unknown client is not redirected");
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
