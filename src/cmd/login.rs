//! `atlas auth login --client C`: the first tokens of an oauth2 client
//! without curl. Prints the authorization URL (stdout, one line), waits for
//! the browser's redirect on the loopback `redirect_uri` (or, with
//! `--paste`, for the redirected URL on stdin), then stores the tokens the
//! code buys, sealed. Nothing is stored unless every step went through.

use super::Context;
use crate::cli::LoginArgs;
use crate::config::{Auth, Grant};
use crate::db;
use crate::exit::{env_error, usage, Exit};
use crate::oauth::loopback::{self, Waited};
use crate::outln;
use anyhow::Result;
use std::io::BufRead;
use std::time::{Duration, Instant};

/// The longest `--timeout-secs` (a day).
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// The flags alone, before the config is read.
pub fn check_flags(a: &LoginArgs) -> Result<()> {
    if !(1..=MAX_TIMEOUT_SECS).contains(&a.timeout_secs) {
        return Err(usage(format!(
            "--timeout-secs must be 1 to {MAX_TIMEOUT_SECS}, got {}",
            a.timeout_secs
        )));
    }
    Ok(())
}

pub fn run(ctx: &Context<'_>, a: &LoginArgs) -> Result<Exit> {
    let client = ctx.config()?.client(&a.client)?;
    let cfg = match &client.auth {
        Auth::OAuth2(o) => o,
        other => {
            return Err(usage(format!(
                "client {} has auth type {}: atlas auth login is for oauth2 clients",
                client.id,
                other.kind()
            )))
        }
    };
    let Some(login) = &cfg.login else {
        return Err(usage(format!(
            "client {} has no authorization endpoint: give its auth an authorize_url and a \
             redirect_uri (http://127.0.0.1:PORT/callback, as registered with the provider)",
            client.id
        )));
    };
    // The config refuses a login without grant refresh_token; kept as a guard.
    if cfg.grant != Grant::RefreshToken {
        return Err(usage(format!(
            "client {} uses grant client_credentials: it needs no login",
            client.id
        )));
    }
    let session = ctx.oauth_session(client, cfg)?;
    // The store is checked before the user is sent to the browser.
    db::require_schema(&mut ctx.database()?.connect()?)?;

    let pending = session.begin(login);
    let deadline = Instant::now() + Duration::from_secs(a.timeout_secs);
    let listener = if a.paste {
        None
    } else {
        Some(loopback::listen(&login.redirect_uri)?)
    };
    outln!("{}", pending.url);
    let secs = a.timeout_secs;
    let code = match &listener {
        None => {
            ctx.style.note(
                "🔑",
                &format!(
                    "Abra o endereço acima no navegador, autorize o acesso e cole aqui o \
                     endereço para onde ele foi redirecionado (ou só o code), até {secs} s:"
                ),
            );
            let line = match loopback::wait(&read_line(), deadline, ctx.quit) {
                Waited::Got(line) => line?,
                Waited::TimedOut => return Err(timed_out(secs, "nothing was pasted")),
                Waited::Stopped => return Ok(stopped(ctx)),
            };
            pending.pasted(&line)?
        }
        Some(lb) => {
            ctx.style.note(
                "🔑",
                &format!(
                    "Abra o endereço acima no navegador e autorize o acesso; aguardando o \
                     retorno em {} (até {secs} s)",
                    login.redirect_uri
                ),
            );
            let cb = match lb.wait(deadline, ctx.quit) {
                Waited::Got(cb) => cb,
                Waited::TimedOut => {
                    return Err(timed_out(secs, "the browser was not redirected back"))
                }
                Waited::Stopped => return Ok(stopped(ctx)),
            };
            let code = match pending.code(&cb.pairs) {
                Ok(code) => code,
                Err(why) => {
                    cb.failed("o provedor não deu um code válido para este pedido");
                    return Err(env_error(why));
                }
            };
            let stored = session
                .exchange(&pending, &code, &login.redirect_uri)
                .and_then(|t| session.store(t));
            return match stored {
                Ok(()) => {
                    cb.done();
                    Ok(done(ctx, &client.id))
                }
                Err(e) => {
                    cb.failed("os tokens não puderam ser obtidos ou gravados");
                    Err(e)
                }
            };
        }
    };
    let tokens = session.exchange(&pending, &code, &login.redirect_uri)?;
    session.store(tokens)?;
    Ok(done(ctx, &client.id))
}

/// The first line of stdin, read on its own thread so the wait can time out.
fn read_line() -> std::sync::mpsc::Receiver<Result<String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map(|_| line)
            .map_err(|e| usage(format!("cannot read the redirected URL from stdin: {e}")));
        let _ = tx.send(read);
    });
    rx
}

fn timed_out(secs: u64, what: &str) -> anyhow::Error {
    env_error(format!(
        "no redirect within {secs} s ({what}): nothing was stored; run atlas auth login again \
         (--timeout-secs gives more time)"
    ))
}

fn stopped(ctx: &Context<'_>) -> Exit {
    let by = crate::signal::received().unwrap_or("Ctrl-C");
    ctx.style.note(
        "⏹️",
        &format!("Login interrompido por {by}: nada foi gravado"),
    );
    Exit::Interrupted
}

fn done(ctx: &Context<'_>, client: &str) -> Exit {
    ctx.style.say(
        "✅",
        &format!("Tokens do cliente {client} gravados (cifrados) em atlas.oauth_tokens"),
    );
    Exit::Ok
}
