//! `atlas auth seed --client C`: stores a new OAuth2 refresh token for an
//! `oauth2` client with grant `refresh_token`, read from stdin (never from
//! the command line, where `ps` and shell history would show it), sealed
//! with the token key.

use super::Context;
use crate::cli::SeedArgs;
use crate::config::{Auth, Grant, SecretValue};
use crate::db;
use crate::exit::{usage, Exit};
use crate::oauth;
use crate::textfile;
use anyhow::Result;
use std::io::{BufRead, IsTerminal, Read};

pub fn seed(ctx: &Context<'_>, a: &SeedArgs) -> Result<Exit> {
    let client = ctx.config()?.client(&a.client)?;
    match &client.auth {
        Auth::OAuth2(o) if o.grant == Grant::RefreshToken => {}
        Auth::OAuth2(_) => {
            return Err(usage(format!(
                "client {} uses grant client_credentials: it has no refresh token to seed",
                client.id
            )))
        }
        other => {
            return Err(usage(format!(
                "client {} has auth type {}: only oauth2 clients have tokens to seed",
                client.id,
                other.kind()
            )))
        }
    }
    let key = ctx.token_key()?;
    let db = ctx.database()?;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!(
            "Cole o refresh token do cliente {} e tecle Enter:",
            client.id
        );
    }
    let text = read_stdin(stdin)?;
    let token = textfile::first_line(&text).trim();
    if token.is_empty() {
        return Err(usage(
            "no refresh token on stdin: pipe it in (`atlas auth seed --client C < token.txt`)",
        ));
    }
    if token.contains(char::is_whitespace) {
        return Err(usage(
            "the refresh token on stdin holds spaces: give the token alone on one line",
        ));
    }
    let token = SecretValue::new(token.to_string());
    let mut conn = db.connect()?;
    db::require_schema(&mut conn)?;
    let who = format!("{}:{}", ctx.host, std::process::id());
    oauth::seed(&mut conn, &client.id, &key, &token, &who)?;
    ctx.style.say(
        "✅",
        &format!(
            "Refresh token do cliente {} gravado (cifrado) em atlas.oauth_tokens",
            client.id
        ),
    );
    Ok(Exit::Ok)
}

/// Most of stdin `auth seed` reads from a pipe or file: a token is a few
/// hundred bytes, only the first line counts.
const STDIN_MAX: u64 = 1 << 20;

/// Stdin as text. A terminal's line is read as typed (the console hands
/// over Unicode); a pipe or file is read whole and decoded as a text file is
/// (UTF-8 with or without a BOM, UTF-16 with one: what `type token.txt |`
/// or `< token.txt` gives on Windows).
fn read_stdin(stdin: std::io::Stdin) -> Result<String> {
    let cannot =
        |e: &dyn std::fmt::Display| usage(format!("cannot read the refresh token from stdin: {e}"));
    if stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| cannot(&e))?;
        return Ok(line);
    }
    let mut bytes = Vec::new();
    stdin
        .lock()
        .take(STDIN_MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(&e))?;
    textfile::decode(bytes).map_err(|e| cannot(&e))
}
