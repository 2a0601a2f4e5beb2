//! OAuth2 access tokens for `auth.type = oauth2` clients (grants
//! `client_credentials` and `refresh_token`, refresh tokens that rotate),
//! kept sealed in `atlas.oauth_tokens` and shared by every process and
//! machine that loads the client.
//!
//! One refresh at a time everywhere: a renewal takes the client's row
//! `FOR UPDATE`, looks again (another process may have renewed meanwhile),
//! asks the token endpoint only if the stored access token is due, and
//! commits the rotated refresh token with the new access token before that
//! token is used. Within a process a mutex keeps threads from queueing on
//! the row. Access tokens are renewed ahead of expiry (a quarter of their
//! life, at most 60 s early); a 401 on a live token renews once.
//!
//! The client authenticates at the token endpoint by HTTP Basic or in the
//! form body (`client_auth`); `login` runs the authorization-code grant of
//! `atlas auth login`.

mod client_auth;
pub mod login;
pub mod loopback;

use crate::config::{Client, ClientAuth, Grant, OAuth2, Secret, SecretValue};
use crate::db::{with_causes, Db};
use crate::exit::{env_error, usage};
use crate::http::{certificate_error, redact, snippet, Failure, TokenSource};
use crate::retry::{Backoff, Policy, Retrying, Verdict};
use crate::seal::TokenKey;
use crate::userinfo;
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Longest a token is renewed ahead of its expiry.
const MAX_EARLY: Duration = Duration::from_secs(60);

/// Life assumed for an access token whose answer has no `expires_in`.
const DEFAULT_LIFE: Duration = Duration::from_secs(3600);

/// The longest life an `expires_in` is read as (a year): a server's
/// `1e30` must not overflow the expiry's date.
const MAX_LIFE: f64 = 365.0 * 86_400.0;

/// Attempts of `prepare` at a token endpoint or database that fails transiently.
const PREPARE_ATTEMPTS: u32 = 3;
/// Between those attempts: up to half a second, then up to one.
const PREPARE_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(500),
    cap: Duration::from_secs(1),
};

/// An access token in hand.
#[derive(Clone)]
struct Token {
    access: SecretValue,
    renew_at: DateTime<Utc>,
    /// The row's generation it belongs to (counts renewals).
    generation: i64,
}

/// Why no token could be had.
enum TokenError {
    /// The token endpoint refused the grant or the client, or the TLS
    /// certificate: exit 3 (the message says what to do).
    Refused(String),
    /// The stored tokens cannot be used with this key or config: exit 2.
    Config(String),
    /// Network, 5xx, database: may work on a later attempt.
    Transient(String),
}

/// What the token endpoint gave.
struct Answer {
    access: String,
    refresh: Option<String>,
    life: Duration,
}

/// What a token request asks for.
#[derive(Clone, Copy)]
enum Ask<'a> {
    ClientCredentials,
    /// The refresh token to trade.
    Refresh(&'a str),
    /// `atlas auth login`: the code the browser brought back, the
    /// redirect_uri it was sent to, and the PKCE verifier when one was used.
    Code {
        code: &'a str,
        redirect_uri: &'a str,
        verifier: Option<&'a str>,
    },
}

impl Ask<'_> {
    fn grant_type(&self) -> &'static str {
        match self {
            Ask::ClientCredentials => "client_credentials",
            Ask::Refresh(_) => "refresh_token",
            Ask::Code { .. } => "authorization_code",
        }
    }

    /// The secrets the request carries, to mask in what is shown.
    fn secrets(&self) -> Vec<&str> {
        match *self {
            Ask::ClientCredentials => vec![],
            Ask::Refresh(r) => vec![r],
            Ask::Code { code, verifier, .. } => {
                [Some(code), verifier].into_iter().flatten().collect()
            }
        }
    }
}

/// One client's OAuth2 tokens.
pub struct Session {
    client: String,
    grant: Grant,
    token_url: url::Url,
    scope: Option<String>,
    client_auth: ClientAuth,
    /// The client has `authorize_url`: `atlas auth login` can get new tokens.
    can_login: bool,
    client_id: SecretValue,
    client_secret: Option<SecretValue>,
    /// The configured first refresh token, or why it cannot be read (needed
    /// only while no refresh token is stored).
    first_refresh: Option<std::result::Result<SecretValue, String>>,
    key: TokenKey,
    db: Db,
    agent: ureq::Agent,
    /// Recorded as `updated_by`.
    who: String,
    cache: Mutex<Option<Token>>,
    /// One renewal at a time in this process.
    renewing: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    /// Reads the client's secrets (errors name the variable or file); no
    /// request and no database access yet.
    pub fn new(
        client: &Client,
        cfg: &OAuth2,
        env: &dyn Fn(&str) -> Option<String>,
        key: TokenKey,
        db: Db,
        agent: ureq::Agent,
        who: String,
    ) -> Result<Session> {
        let resolve = |s: &Secret| s.resolve(env);
        Ok(Session {
            client: client.id.clone(),
            grant: cfg.grant,
            token_url: cfg.token_url.clone(),
            scope: cfg.scope.clone(),
            client_auth: cfg.client_auth,
            can_login: cfg.login.is_some(),
            client_id: resolve(&cfg.client_id)?,
            client_secret: cfg.client_secret.as_ref().map(resolve).transpose()?,
            first_refresh: cfg
                .refresh_token
                .as_ref()
                .map(|s| resolve(s).map_err(|e| format!("{e:#}"))),
            key,
            db,
            agent,
            who,
            cache: Mutex::new(None),
            renewing: Mutex::new(()),
        })
    }

    /// A live token from this process's cache, else renewed.
    fn token(&self) -> std::result::Result<Token, TokenError> {
        if let Some(t) = lock(&self.cache).as_ref() {
            if Utc::now() < t.renew_at {
                return Ok(t.clone());
            }
        }
        self.renew(None)
    }

    /// A token that is not of generation `stale` (the one a 401 refused),
    /// or due for renewal: from this process, the database, or the token
    /// endpoint, in that order.
    fn renew(&self, stale: Option<i64>) -> std::result::Result<Token, TokenError> {
        let _one = lock(&self.renewing);
        if let Some(t) = lock(&self.cache).as_ref() {
            if Some(t.generation) != stale && Utc::now() < t.renew_at {
                return Ok(t.clone());
            }
        }
        let mut conn = self
            .db
            .connect()
            .map_err(|e| TokenError::Transient(format!("{e:#}")))?;
        let token = self.renew_locked(&mut conn, stale)?;
        *lock(&self.cache) = Some(token.clone());
        Ok(token)
    }

    /// The renewal under the row lock.
    fn renew_locked(
        &self,
        conn: &mut postgres::Client,
        stale: Option<i64>,
    ) -> std::result::Result<Token, TokenError> {
        let db_err =
            |e: postgres::Error| TokenError::Transient(format!("token store: {}", with_causes(&e)));
        let mut tx = conn.transaction().map_err(db_err)?;
        tx.execute(
            "INSERT INTO atlas.oauth_tokens (client) VALUES ($1) ON CONFLICT (client) DO NOTHING",
            &[&self.client],
        )
        .map_err(db_err)?;
        let row = tx
            .query_one(
                "SELECT access_token, access_renew_at, refresh_token, generation
                   FROM atlas.oauth_tokens WHERE client = $1 FOR UPDATE",
                &[&self.client],
            )
            .map_err(db_err)?;
        let access: Option<Vec<u8>> = row.get(0);
        let renew_at: Option<DateTime<Utc>> = row.get(1);
        let refresh: Option<Vec<u8>> = row.get(2);
        let generation: i64 = row.get(3);
        if let (Some(sealed), Some(renew_at)) = (&access, renew_at) {
            if Some(generation) != stale && Utc::now() < renew_at {
                let access = SecretValue::new(self.open(sealed, "access")?);
                tx.commit().map_err(db_err)?;
                return Ok(Token {
                    access,
                    renew_at,
                    generation,
                });
            }
        }
        let used = match self.grant {
            Grant::ClientCredentials => None,
            Grant::RefreshToken => Some(match &refresh {
                Some(sealed) => self.open(sealed, "refresh")?,
                None => self.first_refresh()?,
            }),
        };
        let answer = self.ask(match used.as_deref() {
            Some(r) => Ask::Refresh(r),
            None => Ask::ClientCredentials,
        })?;
        // A server that does not rotate keeps the refresh token it has.
        let keep = answer.refresh.as_deref().or(used.as_deref());
        let renew_at = self.write_tokens(&mut tx, &answer, keep).map_err(db_err)?;
        // The rotated refresh token is stored before the access token is used.
        tx.commit().map_err(|e| {
            TokenError::Refused(format!(
                "the token endpoint rotated the refresh token of client {} but it could not be \
                 stored ({}): {}",
                self.client,
                with_causes(&e),
                self.new_refresh_hint()
            ))
        })?;
        Ok(Token {
            access: SecretValue::new(answer.access),
            renew_at,
            generation: generation + 1,
        })
    }

    /// Writes `answer`'s access token and `refresh` sealed into the client's
    /// row (locked by `tx`); returns when the access token is to be renewed.
    fn write_tokens(
        &self,
        tx: &mut postgres::Transaction<'_>,
        answer: &Answer,
        refresh: Option<&str>,
    ) -> std::result::Result<DateTime<Utc>, postgres::Error> {
        let now = Utc::now();
        let early = (answer.life / 4).min(MAX_EARLY);
        let renew_at = now + (answer.life - early);
        tx.execute(
            "UPDATE atlas.oauth_tokens
                SET access_token = $2, access_expires_at = $3, access_renew_at = $4,
                    refresh_token = $5, generation = generation + 1,
                    updated_at = now(), updated_by = $6
              WHERE client = $1",
            &[
                &self.client,
                &self.key.seal(&answer.access, &self.client, "access"),
                &(now + answer.life),
                &renew_at,
                &refresh.map(|r| self.key.seal(r, &self.client, "refresh")),
                &self.who,
            ],
        )?;
        Ok(renew_at)
    }

    /// How to give the client a new refresh token: `auth seed`, and `auth
    /// login` when the client has an authorization endpoint.
    fn new_refresh_hint(&self) -> String {
        self.refresh_hint("a new one")
    }

    /// `store <one> with …`: the ways to give the client a refresh token.
    fn refresh_hint(&self, one: &str) -> String {
        let c = &self.client;
        let mut hint =
            format!("store {one} with `atlas auth seed --client {c}` (the refresh token on stdin)");
        if self.can_login {
            hint.push_str(&format!(" or `atlas auth login --client {c}`"));
        }
        hint
    }

    /// The configured first refresh token, when none is stored yet.
    fn first_refresh(&self) -> std::result::Result<String, TokenError> {
        match &self.first_refresh {
            Some(Ok(v)) => Ok(v.expose().to_string()),
            Some(Err(why)) => Err(TokenError::Config(format!(
                "no refresh token stored for client {} and the configured one cannot be read \
                 ({why}): set it, or {}",
                self.client,
                self.refresh_hint("one")
            ))),
            None => Err(TokenError::Config(format!(
                "no refresh token stored for client {}: {}, or set auth.refresh_token_env / \
                 refresh_token_file",
                self.client,
                self.refresh_hint("one")
            ))),
        }
    }

    fn open(&self, sealed: &[u8], field: &str) -> std::result::Result<String, TokenError> {
        self.key.open(sealed, &self.client, field).ok_or_else(|| {
            TokenError::Config(format!(
                "the stored OAuth2 {field} token of client {} cannot be decrypted with this \
                 ATLAS_TOKEN_KEY (it was stored with another key): use that key, or {}",
                self.client,
                self.new_refresh_hint()
            ))
        })
    }

    /// Every secret value of this session, to mask.
    fn secret_values(&self, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if let Some(s) = &self.client_secret {
            v.push(s.expose().to_string());
            v.push(client_auth::basic(self.client_id.expose(), s.expose()));
        }
        if let Some(Ok(r)) = &self.first_refresh {
            v.push(r.expose().to_string());
        }
        if let Some(t) = lock(&self.cache).as_ref() {
            v.push(t.access.expose().to_string());
        }
        v.retain(|s| s.len() >= 3);
        v
    }

    fn mask(&self, text: &str, extra: &[&str]) -> String {
        let mut out = userinfo::text(text).into_owned();
        for s in self.secret_values(extra) {
            out = out.replace(&s, crate::http::MASK);
        }
        out
    }

    /// One token request. The client authenticates as `client_auth` says.
    fn ask(&self, what: Ask<'_>) -> std::result::Result<Answer, TokenError> {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", what.grant_type())];
        match what {
            Ask::ClientCredentials => {}
            Ask::Refresh(r) => form.push(("refresh_token", r)),
            Ask::Code {
                code,
                redirect_uri,
                verifier,
            } => {
                form.extend([("code", code), ("redirect_uri", redirect_uri)]);
                form.extend(verifier.map(|v| ("code_verifier", v)));
            }
        }
        let authorization = client_auth::apply(
            self.client_auth,
            self.client_id.expose(),
            self.client_secret.as_ref().map(SecretValue::expose),
            &mut form,
        );
        if let Some(s) = &self.scope {
            if !matches!(what, Ask::Code { .. }) {
                form.push(("scope", s));
            }
        }
        let extra = what.secrets();
        // Shown masked; sent as configured.
        let url = redact(&self.token_url, None);
        let mut req = self
            .agent
            .post(self.token_url.as_str())
            .header("Accept", "application/json");
        if let Some(a) = &authorization {
            req = req.header("Authorization", a.as_str());
        }
        let mut resp = match req.send_form(form) {
            Ok(r) => r,
            Err(e) => {
                return Err(match certificate_error(&e) {
                    Some(c) => TokenError::Refused(format!(
                        "TLS: the certificate of the token endpoint {url} is not trusted ({c}): \
                         add its CA to the system's certificate store or give the client a ca_file"
                    )),
                    None => TokenError::Transient(format!(
                        "token endpoint {url}: {}",
                        self.mask(&e.to_string(), &extra)
                    )),
                })
            }
        };
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_vec()
            .unwrap_or_default();
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let field = |k: &str| {
            json.as_ref()
                .and_then(|j| j.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        if (200..300).contains(&status) {
            let Some(access) = field("access_token").filter(|a| !a.is_empty()) else {
                return Err(TokenError::Refused(format!(
                    "token endpoint {url} answered HTTP {status} without an access_token: {}",
                    self.mask(&snippet(&body, 200), &extra)
                )));
            };
            let life = json
                .as_ref()
                .and_then(|j| j.get("expires_in"))
                .and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok()))
                .filter(|s| *s > 0.0)
                .map(|s| Duration::from_secs_f64(s.min(MAX_LIFE)))
                .unwrap_or(DEFAULT_LIFE);
            return Ok(Answer {
                access,
                refresh: field("refresh_token").filter(|r| !r.is_empty()),
                life,
            });
        }
        let error = field("error").unwrap_or_default();
        let c = &self.client;
        Err(match (status, error.as_str(), what) {
            (408 | 425 | 429 | 500..=599, _, _) => {
                TokenError::Transient(format!("token endpoint {url} answered HTTP {status}"))
            }
            (_, "invalid_grant", Ask::Refresh(_)) => TokenError::Refused(format!(
                "the token endpoint refused the refresh token of client {c} (invalid_grant: \
                 revoked, expired or already used): {}",
                self.new_refresh_hint()
            )),
            (_, "invalid_grant", Ask::Code { .. }) => TokenError::Refused(format!(
                "the token endpoint refused the authorization code of client {c} (invalid_grant: \
                 expired, already used, or issued for another redirect_uri or PKCE verifier): \
                 run `atlas auth login --client {c}` again"
            )),
            (_, "invalid_client" | "unauthorized_client", _) => TokenError::Refused(format!(
                "the token endpoint refused the client credentials of client {c} ({error}): \
                 check auth.client_id_env and client_secret_env, and auth.client_auth ({}: {})",
                client_auth::word(self.client_auth),
                client_auth::how(self.client_auth, self.client_secret.is_some()),
            )),
            _ => TokenError::Refused(format!(
                "the token endpoint {url} refused the {} grant of client {c} (HTTP {status}): {}",
                what.grant_type(),
                self.mask(&snippet(&body, 200), &extra)
            )),
        })
    }
}

impl TokenError {
    fn failure(self) -> Failure {
        match self {
            TokenError::Transient(message) => Failure::Retry {
                status: None,
                wait: None,
                message,
                body: String::new(),
            },
            TokenError::Refused(body) | TokenError::Config(body) => {
                Failure::Auth { status: 401, body }
            }
        }
    }
}

impl TokenSource for Session {
    fn bearer(&self) -> std::result::Result<(SecretValue, i64), Failure> {
        self.token()
            .map(|t| (t.access, t.generation))
            .map_err(TokenError::failure)
    }

    fn renew_after_401(&self, generation: i64) -> std::result::Result<(SecretValue, i64), Failure> {
        self.renew(Some(generation))
            .map(|t| (t.access, t.generation))
            .map_err(TokenError::failure)
    }

    fn secrets(&self) -> Vec<String> {
        self.secret_values(&[])
    }

    fn prepare(&self) -> Result<()> {
        let policy = Policy {
            attempts: PREPARE_ATTEMPTS,
            backoff: PREPARE_BACKOFF,
            quit: None,
        };
        let classify = |e: &TokenError| Verdict::retry_if(matches!(e, TokenError::Transient(_)));
        let warn = |e: &TokenError, _: Retrying| {
            if let TokenError::Transient(m) = e {
                log::warn!("OAuth2 token for client {}: {m}", self.client);
            }
        };
        match policy.run(|_| self.token(), classify, warn) {
            Ok(_) => Ok(()),
            Err(gave_up) => Err(match gave_up.error {
                TokenError::Config(m) => usage(m),
                TokenError::Refused(m) => env_error(m),
                TokenError::Transient(m) => env_error(format!(
                    "no OAuth2 access token for client {}: {m}",
                    self.client
                )),
            }),
        }
    }
}

/// `atlas auth seed`: stores `refresh` as the client's refresh token (sealed)
/// and drops its access token, under the row lock so no renewal is lost.
pub fn seed(
    conn: &mut postgres::Client,
    client: &str,
    key: &TokenKey,
    refresh: &SecretValue,
    who: &str,
) -> Result<()> {
    let mut tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO atlas.oauth_tokens (client) VALUES ($1) ON CONFLICT (client) DO NOTHING",
        &[&client],
    )?;
    tx.execute(
        "SELECT 1 FROM atlas.oauth_tokens WHERE client = $1 FOR UPDATE",
        &[&client],
    )?;
    tx.execute(
        "UPDATE atlas.oauth_tokens
            SET refresh_token = $2, access_token = NULL, access_expires_at = NULL,
                access_renew_at = NULL, generation = generation + 1,
                updated_at = now(), updated_by = $3
          WHERE client = $1",
        &[
            &client,
            &key.seal(refresh.expose(), client, "refresh"),
            &who,
        ],
    )?;
    tx.commit()?;
    Ok(())
}
