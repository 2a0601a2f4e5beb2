//! `atlas manager`: checks what every action needs (config, settings,
//! database and schema) before the screen opens, then runs the terminal UI
//! with the command layer's own create, run and sync behind it. A run or
//! sync goes on a scoped thread; leaving the scope waits for it.

use super::{scrap, scrap_run, sync, Context};
use crate::cli::SyncArgs;
use crate::db;
use crate::exit::Exit;
use crate::ledger;
use crate::manager::{self, Backend, ClientChoice, Finished, NewScrap, Start};
use crate::report::{Style, Watch};
use anyhow::Result;
use chrono::NaiveDate;
use crossbeam::channel::Sender;
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::thread::Scope;

pub fn run(ctx: &Context<'_>, plain: bool) -> Result<Exit> {
    let style = Style {
        plain: plain || ctx.style.plain,
    };
    let cfg = ctx.config()?;
    ctx.settings()?;
    let mut conn = ctx.database()?.connect()?;
    db::require_schema(&mut conn)?;
    drop(conn);
    let clients = cfg
        .clients
        .values()
        .map(|c| ClientChoice {
            id: c.id.clone(),
            name: c.name.clone(),
            routes: c.routes.keys().cloned().collect(),
        })
        .collect();
    // Log lines would be drawn over the screen; erros_scraps.log still gets
    // every error block.
    let level = log::max_level();
    log::set_max_level(log::LevelFilter::Off);
    let ended = std::thread::scope(|s| {
        let mut backend = Work {
            ctx,
            style,
            scope: s,
            stopped: Cell::new(false),
        };
        manager::run(&mut backend, style, clients)
    });
    log::set_max_level(level);
    ended
}

/// The command layer behind the manager's keys.
struct Work<'scope, 'env, 'c> {
    ctx: &'env Context<'c>,
    style: Style,
    scope: &'scope Scope<'scope, 'env>,
    /// The user stopped the run (`q`, `y`): the raised flags are ours.
    stopped: Cell<bool>,
}

impl Backend for Work<'_, '_, '_> {
    fn connect(&self) -> Result<postgres::Client> {
        self.ctx.database()?.connect()
    }

    fn worker(&self) -> String {
        ledger::worker_id(
            &self.ctx.host,
            &ledger::Locality::current(),
            std::process::id(),
        )
    }

    fn create(
        &self,
        client: &str,
        route: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<NewScrap> {
        let cfg = self.ctx.config()?;
        let c = scrap::create_scrap(self.ctx, cfg, client, route, from, to)?;
        Ok(NewScrap {
            id: c.id,
            table: c.table,
            slices: c.slices,
        })
    }

    fn start(&mut self, what: Start, watch: Sender<Watch>, done: Sender<Finished>) {
        let (ctx, style) = (self.ctx, self.style);
        let failed = done.clone();
        let work = move || {
            let end = match what {
                Start::Run(id) => scrap_run::execute(ctx, id, false, Some(&watch), None)
                    .map(|(exit, summary)| summary_of(exit, &summary, style)),
                Start::Sync {
                    client,
                    route,
                    from,
                } => {
                    let args = SyncArgs {
                        client: vec![client],
                        route: vec![route],
                        all: false,
                        from: Some(from.to_string()),
                        until: None,
                        lookback_days: None,
                        threads: None,
                        writers: None,
                        batch_export: None,
                        retry_max: None,
                        max_db_connections: None,
                        json: false,
                    };
                    sync::execute(ctx, &args, Some(&watch)).map(|s| match s {
                        sync::Synced::Ran { exit, summary } => summary_of(exit, &summary, style),
                        sync::Synced::Nothing { emoji, notice, .. } => {
                            Finished::Nothing(style.line(emoji, &notice))
                        }
                    })
                }
            };
            let end = end.unwrap_or_else(|e| Finished::Error(format!("{e:#}")));
            // The screen may be gone (it left on an error): nobody to tell.
            let _ = done.send(end);
        };
        if let Err(e) = std::thread::Builder::new()
            .name("manager-run".into())
            .spawn_scoped(self.scope, work)
        {
            let _ = failed.send(Finished::Error(format!("cannot start the run thread: {e}")));
        }
    }

    fn stop(&self) {
        self.stopped.set(true);
        self.ctx.interrupted.store(true, Ordering::SeqCst);
        self.ctx.quit.store(true, Ordering::SeqCst);
    }

    fn signalled(&self) -> bool {
        !self.stopped.get() && self.ctx.quit.load(Ordering::SeqCst)
    }
}

fn summary_of(exit: Exit, summary: &crate::report::Summary, style: Style) -> Finished {
    Finished::Summary {
        exit: exit.code(),
        text: summary.render(style),
    }
}
