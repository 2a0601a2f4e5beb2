//! A client's `auth` and `ca_file` validated: secret references (never
//! inline), OAuth2 URLs and the login keys.

use super::{nonempty, FieldError, NO_USERINFO};
use crate::config::position::Key;
use crate::config::raw::{RawAuth, RawOAuth2};
use crate::config::{Auth, Grant, Login, OAuth2, Secret};
use crate::userinfo;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The certificates of a client's `ca_file` (PEM): at least one, all parsed.
pub(super) fn ca_certs(
    path: &Path,
) -> std::result::Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// A client's `auth`. `key` (where it was written) names each secret
/// reference in later messages; error keys are relative to it.
pub(super) fn auth(a: Option<RawAuth>, key: &Key) -> std::result::Result<Auth, FieldError> {
    // A secret written inline is refused, its value never echoed.
    let refuse = |inline: Option<Value>, field: &str| match inline {
        Some(_) => Err((
            field.to_string(),
            format!("secrets are never written in the config: use {field}_env or {field}_file"),
        )),
        None => Ok(()),
    };
    let secret = |env: Option<String>,
                  file: Option<PathBuf>,
                  field: &str|
     -> std::result::Result<Secret, FieldError> {
        match (env, file) {
            (Some(var), None) if !var.trim().is_empty() => Ok(Secret::Env {
                var,
                key: format!("{key}.{field}_env"),
            }),
            (None, Some(path)) => Ok(Secret::File {
                path,
                key: format!("{key}.{field}_file"),
            }),
            (Some(_), Some(_)) => Err((
                field.to_string(),
                format!("give {field}_env or {field}_file, not both"),
            )),
            _ => Err((
                field.to_string(),
                format!("missing: give {field}_env (a variable name) or {field}_file (a path)"),
            )),
        }
    };
    Ok(match a {
        None | Some(RawAuth::None) => Auth::None,
        Some(RawAuth::Bearer {
            token_env,
            token_file,
            token,
        }) => {
            refuse(token, "token")?;
            Auth::Bearer(secret(token_env, token_file, "token")?)
        }
        Some(RawAuth::Header {
            name,
            value_env,
            value_file,
            value,
        }) => {
            refuse(value, "value")?;
            Auth::Header {
                name: nonempty("name", &name)?,
                value: secret(value_env, value_file, "value")?,
            }
        }
        Some(RawAuth::Query {
            param,
            value_env,
            value_file,
            value,
        }) => {
            refuse(value, "value")?;
            Auth::Query {
                param: nonempty("param", &param)?,
                value: secret(value_env, value_file, "value")?,
            }
        }
        Some(RawAuth::Basic {
            user,
            password_env,
            password_file,
            password,
        }) => {
            refuse(password, "password")?;
            Auth::Basic {
                user,
                password: secret(password_env, password_file, "password")?,
            }
        }
        Some(RawAuth::Oauth2(o)) => {
            let RawOAuth2 {
                token_url,
                grant,
                client_id_env,
                client_id_file,
                client_secret_env,
                client_secret_file,
                client_secret,
                refresh_token_env,
                refresh_token_file,
                refresh_token,
                scope,
                client_auth,
                authorize_url,
                redirect_uri,
                pkce,
            } = *o;
            refuse(client_secret, "client_secret")?;
            refuse(refresh_token, "refresh_token")?;
            let token_url = web_url("token_url", &token_url)?;
            let client_secret = match (&client_secret_env, &client_secret_file) {
                (None, None) => None,
                _ => Some(secret(
                    client_secret_env,
                    client_secret_file,
                    "client_secret",
                )?),
            };
            let refresh_token = match (grant, &refresh_token_env, &refresh_token_file) {
                (Grant::ClientCredentials, None, None) => None,
                (Grant::ClientCredentials, _, _) => {
                    return Err((
                        "refresh_token_env".to_string(),
                        "a refresh token is for grant \"refresh_token\" only".into(),
                    ))
                }
                // Optional: `atlas auth seed` may store the first one instead.
                (Grant::RefreshToken, None, None) => None,
                (Grant::RefreshToken, _, _) => Some(secret(
                    refresh_token_env,
                    refresh_token_file,
                    "refresh_token",
                )?),
            };
            if client_secret.is_none() && grant == Grant::ClientCredentials {
                return Err((
                    "client_secret".to_string(),
                    "missing: grant \"client_credentials\" needs client_secret_env or client_secret_file".into(),
                ));
            }
            let login = login(authorize_url, redirect_uri, pkce)?;
            if login.is_some() && grant != Grant::RefreshToken {
                return Err((
                    "authorize_url".to_string(),
                    "atlas auth login stores a refresh token: it needs grant \"refresh_token\""
                        .into(),
                ));
            }
            Auth::OAuth2(Box::new(OAuth2 {
                token_url,
                grant,
                client_id: secret(client_id_env, client_id_file, "client_id")?,
                client_secret,
                refresh_token,
                scope: scope.filter(|s| !s.trim().is_empty()),
                client_auth: client_auth.unwrap_or_default(),
                login,
            }))
        }
    })
}

/// An `http://` or `https://` URL without user info. The text is never
/// echoed: it may hold the very credentials refused.
fn web_url(key: &str, text: &str) -> std::result::Result<url::Url, FieldError> {
    let u = url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            (
                key.to_string(),
                "not an http:// or https:// URL".to_string(),
            )
        })?;
    if userinfo::has(&u) {
        return Err((key.to_string(), NO_USERINFO.into()));
    }
    Ok(u)
}

/// The keys of `atlas auth login`: `authorize_url` and `redirect_uri`
/// together, the redirect on the loopback where atlas can listen for it.
fn login(
    authorize_url: Option<String>,
    redirect_uri: Option<String>,
    pkce: Option<bool>,
) -> std::result::Result<Option<Login>, FieldError> {
    let (authorize_url, redirect_uri) = match (authorize_url, redirect_uri) {
        (None, None) => {
            return match pkce {
                Some(true) => Err((
                    "pkce".into(),
                    "is for atlas auth login: give authorize_url and redirect_uri too".into(),
                )),
                _ => Ok(None),
            }
        }
        (Some(a), Some(r)) => (a, r),
        (Some(_), None) => {
            return Err((
                "redirect_uri".into(),
                "missing: authorize_url needs a redirect_uri (http://127.0.0.1:PORT/callback)"
                    .into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                "authorize_url".into(),
                "missing: redirect_uri needs the authorization endpoint's authorize_url".into(),
            ))
        }
    };
    let authorize_url = web_url("authorize_url", &authorize_url)?;
    let bad = |m: &str| Err(("redirect_uri".to_string(), m.to_string()));
    let Ok(redirect) = url::Url::parse(&redirect_uri) else {
        return bad("not a URL: give http://127.0.0.1:PORT/callback");
    };
    if userinfo::has(&redirect) {
        return Err(("redirect_uri".into(), NO_USERINFO.into()));
    }
    let loopback = match redirect.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    };
    if redirect.scheme() != "http" || !loopback {
        return bad(
            "must be http:// on 127.0.0.1, localhost or [::1] (atlas listens there for the \
             browser's redirect): http://127.0.0.1:PORT/callback",
        );
    }
    if !matches!(redirect.port(), Some(p) if p != 0) {
        return bad(
            "needs an explicit port other than 0 and 80, as registered with the provider: \
             http://127.0.0.1:PORT/callback",
        );
    }
    if redirect.fragment().is_some() {
        return bad("must not have a #fragment (RFC 6749 §3.1.2)");
    }
    Ok(Some(Login {
        authorize_url,
        redirect_uri: redirect,
        pkce: pkce.unwrap_or(false),
    }))
}
