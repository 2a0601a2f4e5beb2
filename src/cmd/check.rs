//! `atlas check`: validates the config, resolves every secret (never
//! printing one), reaches PostgreSQL and says whether `atlas init` is
//! needed, and probes each (client, route) with one request for one day
//! (yesterday in the route's zone, or `--date`).
//! Exit: 0 all good, 2 config, secrets or a control schema that needs
//! `atlas init`, 3 database or a route's probe.

use super::{day_flag, Context};
use crate::cli::CheckArgs;
use crate::config::{Client, Route};
use crate::dates;
use crate::db;
use crate::exit::{classify, Exit};
use crate::http::{self, ResolvedAuth};
use crate::json::Json;
use crate::paginate::Pager;
use crate::record;
use crate::report;
use anyhow::Result;
use chrono::{Duration, NaiveDate};

pub fn run(ctx: &Context<'_>, a: &CheckArgs) -> Result<Exit> {
    let date = a
        .date
        .as_deref()
        .map(|s| day_flag(s, "--date"))
        .transpose()?;
    let cfg = ctx.config()?;
    let style = ctx.style;
    style.say(
        "✅",
        &format!("Configuração válida: {}", cfg.source.display()),
    );
    if a.notify_test {
        return super::alert::test(ctx);
    }
    // Config problems (exit 2) outrank environment problems (exit 3): fix the config first.
    let mut exit = Exit::Ok;
    let mut env_problem = false;

    // Secrets: each reference resolved, reported by name only.
    let mut auths = Vec::new();
    for c in cfg.clients.values() {
        match ctx.auth(c) {
            Ok(r) => auths.push(Some(r)),
            Err(e) => {
                style.say(
                    "❌",
                    &format!("Cliente {}: segredo indisponível: {e:#}", c.id),
                );
                exit = Exit::Usage;
                auths.push(None);
            }
        }
    }

    match ctx.database().and_then(|db| {
        let mut c = db.connect()?;
        Ok((db.to_string(), db::require_schema(&mut c)))
    }) {
        Ok((db, Ok(()))) => style.say(
            "✅",
            &format!("Banco de dados: {db} (esquema atlas atualizado)"),
        ),
        Ok((db, Err(e))) => {
            style.say("⚠️", &format!("Banco de dados: {db}: {e:#}"));
            // A missing or older control schema is fixed by `atlas init`
            // (exit 2, as `scrap create` says); anything else is the server.
            match classify(&e) {
                Exit::Usage => exit = Exit::Usage,
                _ => env_problem = true,
            }
        }
        Err(e) => {
            style.say("❌", &format!("Banco de dados: {e:#}"));
            match classify(&e) {
                Exit::Usage => exit = Exit::Usage,
                _ => env_problem = true,
            }
        }
    }

    let verdict = |exit: Exit, env_problem: bool| {
        if exit == Exit::Usage {
            Exit::Usage
        } else if env_problem {
            Exit::Environment
        } else {
            exit
        }
    };
    if a.no_probe {
        return Ok(verdict(exit, env_problem));
    }
    let settings = ctx.settings()?;
    let (timeout, max_body) = (settings.timeout, settings.max_body());
    let mut rows = Vec::new();
    for (c, auth) in cfg.clients.values().zip(&auths) {
        for r in c.routes.values() {
            let day =
                date.unwrap_or_else(|| dates::today_in(r.timezone.as_ref()) - Duration::days(1));
            let verdict = match auth {
                // Already reported as a config problem (exit 2), not probed.
                None => Err("not probed: secret unavailable".to_string()),
                Some(auth) => {
                    let agent = http::agent_trusting(timeout, &c.ca_certs);
                    let secrets = ctx.secrets(r).map_err(|e| {
                        // A secret the route's templates name: a config problem, like auth's.
                        exit = Exit::Usage;
                        format!("not probed: secret unavailable: {e:#}")
                    });
                    let v = match secrets {
                        Ok(s) => probe(&agent, c, r, auth, s, day, max_body),
                        Err(m) => Err(m),
                    };
                    if v.is_err() {
                        env_problem = true;
                    }
                    v
                }
            };
            let (status, detail) = match verdict {
                Ok(d) => ("OK".to_string(), d),
                Err(d) => ("problem".to_string(), d),
            };
            rows.push(vec![c.id.clone(), r.name.clone(), status, detail]);
        }
    }
    report::out(&report::table(
        &["client", "route", "probe", "detail"],
        &rows,
    ));
    Ok(verdict(exit, env_problem))
}

/// One request for page 1 of `day`: how many records it holds, or what
/// went wrong (URL redacted).
fn probe(
    agent: &ureq::Agent,
    c: &Client,
    r: &Route,
    auth: &ResolvedAuth,
    secrets: crate::config::template::Secrets,
    day: NaiveDate,
    max_body: usize,
) -> Result<String, String> {
    let request =
        http::SliceRequest::new(c, r, auth, &secrets, day, day).map_err(|e| format!("{e:#}"))?;
    let pager = Pager::new(&r.pagination, request.first_url());
    let call = request.call(pager.current(), &pager.position());
    let shown = call.masker(auth).url(&call.url);
    match http::send(agent, &call, auth, r, &mut http::body::Unmetered(max_body)) {
        Ok(f) => {
            let v =
                Json::parse(&f.body).map_err(|e| format!("{shown}: the body is not JSON ({e})"))?;
            let n = record::records_of(&v, &r.records)
                .map_err(|m| format!("{shown}: {m}"))?
                .len();
            Ok(format!("{n} records on page 1 for {day}"))
        }
        Err(http::Failure::Auth { status, .. }) => {
            Err(format!("{shown}: HTTP {status}: credentials refused"))
        }
        Err(http::Failure::Retry { message, .. })
        | Err(http::Failure::Refused { message, .. })
        | Err(http::Failure::Tls { message }) => Err(format!("{shown}: {message}")),
    }
}
