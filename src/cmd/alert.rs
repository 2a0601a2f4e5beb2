//! What happens after a run (`scrap run`, `sync`, `sync --all`) besides its
//! summary: the metrics file rewritten with its pairs, and the `notify`
//! block's notifiers told, with the run's `--json` object (also of a run
//! that ended in an error before its summary). Neither can change the
//! exit code or the data: trouble is a line on stderr.
//! `atlas check --notify-test` sends a test notification.

use super::Context;
use crate::config::notify::Notify;
use crate::exit::{classify, usage, Exit};
use crate::ledger;
use crate::metrics::{self, PairRun};
use crate::report::fleet::{fleet_line, FleetReport};
use crate::report::{self, snippet};
use anyhow::Result;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// After a run: `object` is its `--json` object, `pairs` the objects of
/// its (client, route) pairs (the object itself for one pair).
pub fn after_run(ctx: &Context<'_>, object: &Value, pairs: &[Value]) {
    write_metrics(ctx, pairs);
    notify(ctx, object);
}

/// After a run command that ended in `e` instead of a summary: the
/// notifiers get the error object (`--json`'s), when the config is there.
pub fn after_error(ctx: &Context<'_>, e: &anyhow::Error) {
    let object = report::error_object(&format!("{e:#}"), classify(e).code());
    notify(ctx, &object);
}

/// `atlas check --notify-test`: a test notification to every notifier,
/// each reported OK or problem. Exit 0 when all were delivered, 3 when one
/// was not, 2 without a `notify` block.
pub fn test(ctx: &Context<'_>) -> Result<Exit> {
    let cfg = ctx.config()?;
    let Some(n) = &cfg.notify else {
        return Err(usage(format!(
            "{} has no notify block: nothing to test",
            cfg.source.display()
        )));
    };
    let object = json!({
        "status": "test",
        "test": true,
        "host": ctx.host,
        "exit_code": 0,
        "version": crate::version::version(),
    });
    let text = format!("🔔 atlas em {}: notificação de teste", ctx.host);
    let delivered = crate::notify::send(n, &object.to_string(), &text, webhook_url(ctx, n));
    let mut exit = Exit::Ok;
    let rows: Vec<Vec<String>> = delivered
        .into_iter()
        .map(|(what, r)| match r {
            Ok(()) => vec![what.to_string(), "OK".into(), String::new()],
            Err(why) => {
                exit = Exit::Environment;
                vec![what.to_string(), "problem".into(), why]
            }
        })
        .collect();
    report::out(&report::table(&["notifier", "test", "detail"], &rows));
    Ok(exit)
}

/// The metrics file rewritten with `pairs`, when one is configured.
fn write_metrics(ctx: &Context<'_>, pairs: &[Value]) {
    if ctx.settings().map_or(true, |s| s.metrics_file.is_none()) {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0);
    let runs: Vec<PairRun> = pairs
        .iter()
        .filter_map(|p| {
            let mut run = PairRun::from_summary(p, now)?;
            // `scrap run` does not say what is loaded: asked here.
            if p.get("loaded_until").is_none() {
                run.loaded_until = loaded_until(ctx, &run.client, &run.route);
            }
            Some(run)
        })
        .collect();
    write_runs(ctx, runs);
}

/// The metrics file rewritten with `runs`, when one is configured.
fn write_runs(ctx: &Context<'_>, runs: Vec<PairRun>) {
    let Some(path) = ctx.settings().ok().and_then(|s| s.metrics_file.clone()) else {
        return;
    };
    if let Err(e) = metrics::write(&path, &runs) {
        ctx.style.note(
            "⚠️",
            &format!("Métricas não gravadas em {}: {e}", path.display()),
        );
    }
}

fn loaded_until(ctx: &Context<'_>, client: &str, route: &str) -> Option<chrono::NaiveDate> {
    let mut c = ctx.database().ok()?.connect().ok()?;
    ledger::last_loaded_day(&mut c, client, route).unwrap_or_else(|e| {
        log::warn!("cannot read what is loaded for {client} / {route}: {e:#}");
        None
    })
}

/// The notifiers told of `object`, if its outcome is one they want.
fn notify(ctx: &Context<'_>, object: &Value) {
    let code = object["exit_code"]
        .as_u64()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1);
    tell(ctx, code, &object.to_string(), || text(object, &ctx.host));
}

/// After `sync --all`: the metrics file rewritten with its pairs' figures,
/// and the notifiers told of its object (`object`, as text).
pub fn after_fleet(ctx: &Context<'_>, report: &FleetReport, object: &str, code: u8) {
    if let Some(runs) = &report.runs {
        write_runs(ctx, runs.clone());
    }
    tell(ctx, code, object, || {
        snippet(report.line(&ctx.host, code), 1000, "...")
    });
}

/// The notifiers told of a run that ended with `code`, if they want it:
/// `object` is its `--json` object as text, `line` makes the webhook's line.
fn tell(ctx: &Context<'_>, code: u8, object: &str, line: impl FnOnce() -> String) {
    let Some(n) = ctx.config().ok().and_then(|c| c.notify.as_ref()) else {
        return;
    };
    if !n.wants(code) {
        return;
    }
    let text = line();
    let delivered = crate::notify::send(n, object, &text, webhook_url(ctx, n));
    let mut told = Vec::new();
    for (what, r) in delivered {
        match r {
            Ok(()) => told.push(what),
            Err(why) => ctx
                .style
                .note("⚠️", &format!("Notificação ({what}) falhou: {why}")),
        }
    }
    if !told.is_empty() {
        ctx.style
            .note("🔔", &format!("Notificação enviada: {}", told.join(", ")));
    }
}

/// The webhook's URL from the variable `webhook_url_env` names, if the
/// block has a webhook.
fn webhook_url(ctx: &Context<'_>, n: &Notify) -> Option<Result<String, String>> {
    let var = n.webhook_url_env.as_ref()?;
    Some(
        (ctx.env)(var)
            .filter(|u| !u.trim().is_empty())
            .map(|u| u.trim().to_string())
            .ok_or_else(|| format!("webhook_url_env: {var} is not set")),
    )
}

/// The notification's one line, in Portuguese: how the run ended, where,
/// and for a fleet the pairs with a problem.
fn text(o: &Value, host: &str) -> String {
    let code = o["exit_code"].as_u64().unwrap_or(1);
    let mark = if code == 0 { "✅" } else { "❌" };
    let n = |v: &Value| v.as_i64().unwrap_or(0).max(0) as u64;
    let line = if let Some(pairs) = o["pairs"].as_array() {
        let bad: Vec<String> = pairs
            .iter()
            .filter(|p| p["exit_code"] != 0)
            .map(|p| {
                format!(
                    "{} / {} ({})",
                    p["client"].as_str().unwrap_or("?"),
                    p["route"].as_str().unwrap_or("?"),
                    p["status"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let code = u8::try_from(code).unwrap_or(1);
        fleet_line(
            host,
            code,
            pairs.len() as u64,
            &bad,
            o["totals"]["inserted"].as_i64().unwrap_or(0),
        )
    } else if let Some(e) = o["error"].as_str().filter(|_| o["status"] == "error") {
        format!("{mark} atlas em {host}: erro (exit {code}): {e}")
    } else {
        let how = match (code, o["status"].as_str().unwrap_or("")) {
            (0, "up_to_date") => "nada novo".to_string(),
            (0, _) => "concluído".to_string(),
            (3, report::AUTH_REFUSED) => "credenciais recusadas pela API".to_string(),
            (3, _) => "parou: banco de dados ou ambiente indisponível".to_string(),
            (130, _) => "interrompido".to_string(),
            (_, s) => format!("terminou com falhas ({s})"),
        };
        let scrap = o["scrap_id"]
            .as_i64()
            .map(|id| format!("scrap {id}, "))
            .unwrap_or_default();
        format!(
            "{mark} atlas em {host}: {} / {} {how} ({scrap}inseridos {}, fatias com falha {}) | exit {code}",
            o["client"].as_str().unwrap_or("?"),
            o["route"].as_str().unwrap_or("?"),
            report::thousands(n(&o["inserted"])),
            n(&o["slices_failed"]),
        )
    };
    snippet(line, 1000, "...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_says_how_the_run_ended_in_one_line() {
        let run = json!({"scrap_id": 7, "client": "2151", "route": "pedidos", "status": "failed",
                         "exit_code": 1, "inserted": 1200, "slices_failed": 2});
        assert_eq!(
            text(&run, "etl-01"),
            "❌ atlas em etl-01: 2151 / pedidos terminou com falhas (failed) (scrap 7, inseridos 1,200, fatias com falha 2) | exit 1"
        );
        let ok = json!({"scrap_id": null, "client": "2151", "route": "pedidos", "status": "up_to_date",
                        "exit_code": 0, "inserted": 0, "slices_failed": 0});
        assert!(text(&ok, "h").starts_with("✅ atlas em h: 2151 / pedidos nada novo (inseridos 0"));
        let err = report::error_object("cannot connect to PostgreSQL at db:5432/x:\nrefused", 3);
        assert_eq!(
            text(&err, "h"),
            "❌ atlas em h: erro (exit 3): cannot connect to PostgreSQL at db:5432/x: refused"
        );
        let pairs: Vec<Value> = (0..8)
            .map(|i| json!({"client": format!("c{i}"), "route": "r", "status": "failed", "exit_code": u8::from(i > 0)}))
            .collect();
        let fleet = json!({"pairs": pairs, "totals": {"inserted": 5}, "exit_code": 1});
        let t = text(&fleet, "h");
        assert!(
            t.starts_with("❌ atlas sync --all em h: 8 par(es), 7 com problema: c1 / r (failed), c2 / r (failed)"),
            "{t}"
        );
        assert!(
            t.ends_with("c5 / r (failed) e mais 2 | inseridos 5 | exit 1"),
            "{t}"
        );
        assert!(!t.contains('\n'));
    }
}
