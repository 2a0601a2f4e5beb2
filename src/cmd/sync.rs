//! `atlas sync`: the command a scheduler runs every day (SPEC §2). It
//! resumes the pair's unfinished scrap if one is left (a killed or failed
//! sync), then loads the days the pair needs, counted over every scrap of
//! it (`coverage::need`): the days never loaded up to `--until` (default:
//! yesterday in the route's time zone), open days, and the lookback.
//!
//! One sync per (client, route) at a time: a session advisory lock on the
//! pair's registry id (`atlas.sync_pairs`, so no two pairs share a lock) is
//! held for the whole sync; a second sync finds it taken and exits 0 saying
//! so. Everything that can refuse the sync (flags, settings, secrets, the
//! OAuth2 grant, the API's certificate, the raw table) is checked before
//! anything is written.

use super::pair::{self, Plan, Step, SyncLock};
use super::{scrap_run, Context};
use crate::cli::SyncArgs;
use crate::config::Settings;
use crate::db;
use crate::exit::{usage, Exit};
use crate::ledger::{self, NewTable};
use crate::report::{self, Feed, Summary, Watch};
use anyhow::Result;
use crossbeam::channel::Sender;
use serde_json::{json, Value};

/// How a sync ended.
pub enum Synced {
    /// A scrap was created and run.
    Ran { exit: Exit, summary: Box<Summary> },
    /// Nothing ran (another sync holds the pair, or nothing is new): the
    /// notice, and the `--json` fields that say why.
    Nothing {
        emoji: &'static str,
        notice: String,
        fields: Value,
        table: String,
    },
}

pub fn run(ctx: &Context<'_>, a: &SyncArgs) -> Result<Exit> {
    if a.all {
        return super::fleet::run(ctx, a);
    }
    match execute(ctx, a, None)? {
        Synced::Ran { exit, summary } => {
            scrap_run::emit(&summary, ctx.style, a.json);
            let object = serde_json::to_value(&*summary)?;
            super::alert::after_run(ctx, &object, std::slice::from_ref(&object));
            Ok(exit)
        }
        Synced::Nothing {
            emoji,
            notice,
            fields,
            table,
        } => Ok(nothing_to_do(
            ctx,
            one_pair(a)?,
            a.json,
            &table,
            ctx.settings()?,
            emoji,
            &notice,
            fields,
        )),
    }
}

/// The sync itself: its lines on stderr, or to `sink` (the manager); the
/// summary is returned, not printed.
pub fn execute(ctx: &Context<'_>, a: &SyncArgs, sink: Option<&Sender<Watch>>) -> Result<Synced> {
    let (client_id, route_name) = one_pair(a)?;
    // Everything that can be refused is resolved before anything is
    // written: exit 2 leaves no scrap, slice, run or table behind.
    let cfg = ctx.config()?;
    let (client, route) = cfg.route(client_id, route_name)?;
    let (from, until) = pair::period_flags(a)?;
    let until = pair::until_of(until, route)?;
    if let Some(f) = from.filter(|f| *f > until) {
        return Err(usage(format!("--from {f} is after --until {until}")));
    }
    let table = pair::raw_table(client, route)?;
    let plan = Plan {
        from,
        until,
        lookback: pair::lookback_days(a.lookback_days)?,
    };
    ctx.settings()?;
    ctx.secrets(route)?;
    let mut conn = ctx.database()?.connect()?;
    db::require_schema(&mut conn)?;
    pair::check_before_writes(ctx, client)?;

    let Some(mut lock) = SyncLock::try_take(Box::new(conn), client_id, route_name)? else {
        let notice = report::busy_line(client_id, route_name);
        let fields = json!({"status": "busy", "loaded_until": null});
        return Ok(Synced::Nothing {
            emoji: "⏳",
            notice,
            fields,
            table,
        });
    };
    let feed = Feed {
        style: ctx.style,
        sink,
    };
    // A resumed scrap first; then, decided again, the days still needed.
    let mut ran: Option<(Exit, Summary)> = None;
    for _ in 0..2 {
        let step = pair::decide_locked(ctx, &mut lock, client, route, &plan, NewTable::Now)?;
        let (id, joined, skipped, refetch) = match step {
            Step::Run {
                id,
                joined,
                skipped,
                refetch,
                ..
            } => (id, joined, skipped, refetch),
            Step::UpToDate(_) => break,
        };
        let how = if joined {
            " (retomado)".to_string()
        } else {
            match skipped {
                Some(n) if n > 0 => format!(" ({n} dia(s) já carregado(s) não buscado(s) de novo)"),
                _ => String::new(),
            }
        };
        feed.note("🔄", &report::syncing_line(client_id, route_name, id, &how));
        let (exit, mut summary) = scrap_run::execute(ctx, id, true, sink, refetch)?;
        summary.days_skipped = Some(skipped.unwrap_or(0));
        let stop = exit != Exit::Ok || !joined;
        ran = Some(match ran.take() {
            None => (exit, summary),
            Some((first_exit, first)) => {
                summary.absorb(&first);
                (first_exit.merge(exit), summary)
            }
        });
        if stop {
            break;
        }
    }
    match ran {
        Some((exit, summary)) => Ok(Synced::Ran {
            exit,
            summary: Box::new(summary),
        }),
        None => {
            let last = ledger::last_loaded_day(&mut *lock.conn, client_id, route_name)?;
            let notice = report::up_to_date_line(client_id, route_name, last);
            let fields = json!({"status": "up_to_date", "loaded_until": last});
            Ok(Synced::Nothing {
                emoji: "✅",
                notice,
                fields,
                table,
            })
        }
    }
}

/// Ends a sync that runs nothing: the notice, and with `--json` one object
/// with every key of the summary (null or 0 where nothing ran), `fields`
/// (status, loaded_until) over them, exit code 0.
#[allow(clippy::too_many_arguments)]
fn nothing_to_do(
    ctx: &Context<'_>,
    pair: (&str, &str),
    json: bool,
    table: &str,
    settings: &Settings,
    emoji: &str,
    notice: &str,
    fields: Value,
) -> Exit {
    ctx.style.note(emoji, notice);
    let object = pair::idle_summary(pair, table, settings, fields);
    if json {
        crate::outln!("{object}");
    }
    super::alert::after_run(ctx, &object, std::slice::from_ref(&object));
    Exit::Ok
}

/// The one (client, route) of a sync without `--all`.
fn one_pair(a: &SyncArgs) -> Result<(&str, &str)> {
    match (a.client.as_slice(), a.route.as_slice()) {
        ([c], [r]) => Ok((c.as_str(), r.as_str())),
        _ => Err(usage(
            "sync needs one --client C and one --route R, or --all (with any --client and --route filters)",
        )),
    }
}
