//! Thin entry: parse flags, run the command, print one error with its
//! context chain, map it to an exit code (SPEC §2).

mod app;
mod check;
mod cli;
mod config;
mod dates;
mod db;
mod exit;
mod http;
mod ident;
mod ledger;
mod paginate;
mod pipeline;
mod record;
mod report;
mod slice;
mod sync;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: cli::Args = argh::from_env();
    let style = report::Style { plain: args.plain };
    let quit = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (q, i) = (Arc::clone(&quit), Arc::clone(&interrupted));
        // Ctrl-C: stop fetching, flush what is in flight, release slices.
        if let Err(e) = ctrlc::set_handler(move || {
            i.store(true, Ordering::SeqCst);
            q.store(true, Ordering::SeqCst);
        }) {
            log::warn!("cannot install the Ctrl-C handler: {e}");
        }
    }
    let env = app::Env {
        args: &args,
        style,
        quit: &quit,
        interrupted: &interrupted,
    };
    match app::run(&env) {
        Ok(code) => ExitCode::from(code.code()),
        Err(e) => {
            let code = exit::classify(&e);
            eprintln!("{}", style.line("❌", &format!("Erro: {e:#}")));
            ExitCode::from(code.code())
        }
    }
}
