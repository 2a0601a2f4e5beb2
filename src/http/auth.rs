//! A client's auth with its secret resolved, ready for requests; OAuth2
//! tokens come from a `TokenSource`.

use super::failure::Failure;
use crate::config::{Auth, SecretValue};
use anyhow::Result;
use base64::Engine;

/// Where OAuth2 access tokens come from (`oauth::Session`). Errors are
/// request failures: a refused grant is `Auth`, a passing trouble `Retry`.
pub trait TokenSource: Send + Sync {
    /// A live access token and its generation (which renewal it came from).
    fn bearer(&self) -> std::result::Result<(SecretValue, i64), Failure>;
    /// A token renewed after the one of `generation` met a 401.
    fn renew_after_401(&self, generation: i64) -> std::result::Result<(SecretValue, i64), Failure>;
    /// Its secret values (client secret, tokens), to mask.
    fn secrets(&self) -> Vec<String>;
    /// Before a run: a live token, or the error that stops the command.
    fn prepare(&self) -> Result<()>;
}

/// Auth with its secret resolved, ready to apply to requests.
#[derive(Clone)]
pub enum ResolvedAuth {
    None,
    Header {
        name: String,
        value: SecretValue,
    },
    Query {
        param: String,
        value: SecretValue,
    },
    /// `Authorization: Bearer` with a token that changes as it is renewed.
    OAuth2(std::sync::Arc<dyn TokenSource>),
}

impl ResolvedAuth {
    /// Reads the secret of `auth`; `env` looks up environment variables.
    pub fn resolve(auth: &Auth, env: &dyn Fn(&str) -> Option<String>) -> Result<ResolvedAuth> {
        Ok(match auth {
            Auth::None => ResolvedAuth::None,
            // Needs the token store: built by the command layer (`oauth`).
            Auth::OAuth2(_) => anyhow::bail!("internal: oauth2 is resolved with its token store"),
            Auth::Bearer(s) => ResolvedAuth::Header {
                name: "Authorization".into(),
                value: SecretValue::new(format!("Bearer {}", s.resolve(env)?.expose())),
            },
            Auth::Header { name, value } => ResolvedAuth::Header {
                name: name.clone(),
                value: value.resolve(env)?,
            },
            Auth::Query { param, value } => ResolvedAuth::Query {
                param: param.clone(),
                value: value.resolve(env)?,
            },
            Auth::Basic { user, password } => {
                let raw = format!("{user}:{}", password.resolve(env)?.expose());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                ResolvedAuth::Header {
                    name: "Authorization".into(),
                    value: SecretValue::new(format!("Basic {enc}")),
                }
            }
        })
    }

    /// Before a run: an OAuth2 client gets its first token now, so a
    /// refused grant stops the command before anything starts.
    pub fn prepare(&self) -> Result<()> {
        match self {
            ResolvedAuth::OAuth2(source) => source.prepare(),
            _ => Ok(()),
        }
    }

    /// The query param that carries a secret, if any (to mask and to re-add).
    pub fn query_param(&self) -> Option<&str> {
        match self {
            ResolvedAuth::Query { param, .. } => Some(param),
            _ => None,
        }
    }
}
