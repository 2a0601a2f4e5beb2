//! `atlas auth login`: the authorization-code grant (RFC 6749 §4.1), with a
//! PKCE S256 challenge (RFC 7636) when the client asks for one. The URL the
//! user opens, the redirect read back (state checked), the code traded at
//! the token endpoint, and the tokens stored sealed as `auth seed` does.
//!
//! The state and the verifier come from the operating system's RNG; the
//! code, the verifier and the tokens are never shown.

use super::{Answer, Ask, Session, TokenError};
use crate::config::{Login, SecretValue};
use crate::db::with_causes;
use crate::exit::{env_error, usage};
use anyhow::Result;
use base64::Engine;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use sha2::{Digest, Sha256};
use url::Url;

/// Random bytes of the `state` (22 characters) and of the PKCE verifier (43
/// characters, RFC 7636's shortest: 256 bits).
const STATE_BYTES: usize = 16;
const VERIFIER_BYTES: usize = 32;

/// Longest part of a server's `error_description` repeated in a message.
const MAX_DESCRIPTION: usize = 200;

/// One login under way: the URL to open and what the redirect must match.
pub struct Pending {
    pub url: Url,
    state: String,
    verifier: Option<SecretValue>,
}

/// Base64url (no padding) of `n` bytes from the operating system's RNG.
fn random(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 code challenge of `verifier`: BASE64URL(SHA256(verifier)).
fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A new login: a fresh state (and verifier), and the authorization URL
/// with them (the `authorize_url`'s own query parameters kept).
pub fn begin(login: &Login, client_id: &str, scope: Option<&str>) -> Pending {
    let state = random(STATE_BYTES);
    let verifier = login.pkce.then(|| SecretValue::new(random(VERIFIER_BYTES)));
    let mut url = login.authorize_url.clone();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", login.redirect_uri.as_str())
            .append_pair("state", &state);
        if let Some(s) = scope {
            q.append_pair("scope", s);
        }
        if let Some(v) = &verifier {
            q.append_pair("code_challenge", &challenge(v.expose()))
                .append_pair("code_challenge_method", "S256");
        }
    }
    Pending {
        url,
        state,
        verifier,
    }
}

/// Printable text of a server's error fields, cut short.
fn shown(v: &str) -> String {
    v.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DESCRIPTION)
        .collect()
}

impl Pending {
    /// The code of a redirect's query `pairs`; `Err` says why there is none
    /// (an `error=` answer, a state that is not ours, no code).
    pub fn code(&self, pairs: &[(String, String)]) -> std::result::Result<SecretValue, String> {
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let Some(error) = get("error") {
            let mut m = format!(
                "the authorization server answered error={} instead of a code",
                shown(error)
            );
            if let Some(d) = get("error_description").filter(|d| !d.trim().is_empty()) {
                m.push_str(&format!(" ({})", shown(d)));
            }
            return Err(m);
        }
        if get("state") != Some(self.state.as_str()) {
            return Err(
                "the redirect's state is not the one atlas sent: it may come from another \
                 login or another site; nothing was stored (run atlas auth login again)"
                    .into(),
            );
        }
        match get("code").map(str::trim) {
            Some(c) if !c.is_empty() => Ok(SecretValue::new(c.to_string())),
            _ => Err("the redirect carries no code".into()),
        }
    }

    /// The code from what the user pasted: the whole redirected URL (its
    /// state checked), its query, or the bare code. `Err(usage)` when the
    /// text is none of these, `Err(env)` when the redirect refuses.
    pub fn pasted(&self, text: &str) -> Result<SecretValue> {
        let t = text.trim_start_matches('\u{feff}').trim();
        if t.is_empty() {
            return Err(usage(
                "no redirect URL or code on stdin: paste the address the browser was sent to",
            ));
        }
        let query =
            if t.contains("://") || t.starts_with('/') || t.starts_with('?') {
                match t.split_once('?') {
                    Some((_, q)) => q.split('#').next().unwrap_or(""),
                    None => return Err(usage(
                        "the pasted URL has no query (?code=…&state=…): paste the whole address \
                         the browser was sent to",
                    )),
                }
            } else if t.contains('=') {
                t
            } else if t.contains(char::is_whitespace) {
                return Err(usage(
                    "the pasted code holds spaces: paste the redirected URL, or the code alone",
                ));
            } else {
                return Ok(SecretValue::new(t.to_string()));
            };
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        self.code(&pairs).map_err(env_error)
    }
}

/// What the token endpoint gave for a code.
pub struct Tokens(Answer);

impl Session {
    /// A new login of this client (its client id and scope in the URL).
    pub fn begin(&self, login: &Login) -> Pending {
        begin(login, self.client_id.expose(), self.scope.as_deref())
    }

    /// Trades `code` at the token endpoint (exit 3 when refused or
    /// unreachable). A grant without a refresh token is refused too: the
    /// client's runs need one once the access token expires.
    pub fn exchange(
        &self,
        pending: &Pending,
        code: &SecretValue,
        redirect_uri: &Url,
    ) -> Result<Tokens> {
        let answer = self
            .ask(Ask::Code {
                code: code.expose(),
                redirect_uri: redirect_uri.as_str(),
                verifier: pending.verifier.as_ref().map(SecretValue::expose),
            })
            .map_err(|e| match e {
                TokenError::Config(m) => usage(m),
                TokenError::Refused(m) => env_error(m),
                TokenError::Transient(m) => env_error(format!(
                    "no tokens for client {}: {m} (run atlas auth login again)",
                    self.client
                )),
            })?;
        if answer.refresh.is_none() {
            return Err(env_error(format!(
                "the token endpoint gave client {} an access token but no refresh token, so \
                 later runs could not renew it; nothing was stored (some providers give one \
                 only for a scope such as offline_access)",
                self.client
            )));
        }
        Ok(Tokens(answer))
    }

    /// Stores the tokens sealed, replacing the client's, under the row lock
    /// (a renewal in flight finishes first).
    pub fn store(&self, tokens: Tokens) -> Result<()> {
        let Tokens(answer) = tokens;
        let refresh = answer.refresh.as_deref().unwrap_or_default();
        let fail = |e: postgres::Error| {
            env_error(format!(
                "the tokens of client {} could not be stored ({}): run atlas auth login again",
                self.client,
                with_causes(&e)
            ))
        };
        let mut conn = self.db.connect()?;
        let mut tx = conn.transaction().map_err(fail)?;
        tx.execute(
            "INSERT INTO atlas.oauth_tokens (client) VALUES ($1) ON CONFLICT (client) DO NOTHING",
            &[&self.client],
        )
        .map_err(fail)?;
        tx.execute(
            "SELECT 1 FROM atlas.oauth_tokens WHERE client = $1 FOR UPDATE",
            &[&self.client],
        )
        .map_err(fail)?;
        self.write_tokens(&mut tx, &answer, Some(refresh))
            .map_err(fail)?;
        tx.commit().map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(pkce: bool) -> Login {
        Login {
            authorize_url: Url::parse("https://erp.example/oauth/authorize?app=7").unwrap(),
            redirect_uri: Url::parse("http://127.0.0.1:8765/callback").unwrap(),
            pkce,
        }
    }

    fn pairs(p: &Pending) -> Vec<(String, String)> {
        p.url.query_pairs().into_owned().collect()
    }

    fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
        pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_url_carries_the_request_and_a_fresh_state() {
        let p = begin(&login(true), "app-1", Some("pedidos.read"));
        let q = pairs(&p);
        assert_eq!(
            get(&q, "app"),
            Some("7"),
            "the authorize_url's own query kept"
        );
        assert_eq!(get(&q, "response_type"), Some("code"));
        assert_eq!(get(&q, "client_id"), Some("app-1"));
        assert_eq!(
            get(&q, "redirect_uri"),
            Some("http://127.0.0.1:8765/callback")
        );
        assert_eq!(get(&q, "scope"), Some("pedidos.read"));
        assert_eq!(get(&q, "code_challenge_method"), Some("S256"));
        let verifier = p.verifier.as_ref().unwrap().expose();
        assert_eq!(verifier.len(), 43);
        assert_eq!(
            get(&q, "code_challenge"),
            Some(challenge(verifier).as_str())
        );
        assert!(
            !p.url.as_str().contains(verifier),
            "the verifier stays here"
        );
        let state = get(&q, "state").unwrap();
        assert_eq!(state.len(), 22);
        assert_ne!(begin(&login(true), "app-1", None).state, state);
        let plain = begin(&login(false), "app-1", None);
        assert!(plain.verifier.is_none());
        assert!(get(&pairs(&plain), "code_challenge").is_none());
        assert!(get(&pairs(&plain), "scope").is_none());
    }

    #[test]
    fn rfc_7636_appendix_b_challenge() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn redirects_give_the_code_or_say_why_not() {
        let p = begin(&login(false), "app", None);
        let s = p.state.clone();
        let q = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let ok = p.code(&q(&[("code", "c-1"), ("state", &s)])).unwrap();
        assert_eq!(ok.expose(), "c-1");
        let e = p
            .code(&q(&[("code", "c-1"), ("state", "other")]))
            .unwrap_err();
        assert!(e.contains("state"), "{e}");
        let e = p.code(&q(&[("code", "c-1")])).unwrap_err();
        assert!(e.contains("state"), "{e}");
        let e = p
            .code(&q(&[
                ("error", "access_denied"),
                ("error_description", "o usuário negou\n"),
                ("state", &s),
            ]))
            .unwrap_err();
        assert!(
            e.contains("error=access_denied") && e.contains("negou"),
            "{e}"
        );
        assert!(p.code(&q(&[("state", &s)])).is_err());

        let url = format!("\u{feff}http://127.0.0.1:8765/callback?code=c%2F2&state={s}\r\n");
        assert_eq!(p.pasted(&url).unwrap().expose(), "c/2");
        assert_eq!(
            p.pasted(&format!("code=c3&state={s}")).unwrap().expose(),
            "c3"
        );
        assert_eq!(p.pasted(" bare-code-4 \n").unwrap().expose(), "bare-code-4");
        for bad in ["", "\n", "http://127.0.0.1:8765/callback", "two words"] {
            let e = p.pasted(bad).unwrap_err();
            assert_eq!(
                crate::exit::classify(&e),
                crate::exit::Exit::Usage,
                "{bad:?}"
            );
        }
        let e = p.pasted("http://h/cb?code=c&state=nope").unwrap_err();
        assert_eq!(crate::exit::classify(&e), crate::exit::Exit::Environment);
    }
}
