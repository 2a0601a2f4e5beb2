//! `atlas-sample-api`: a deterministic fake "pedidos" HTTP API (many pagination shapes, auth
//! styles and switchable faults) that integration tests, demos and benchmarks point the ETL at.
//!
//! Every calendar day has exactly `--per-day` records; record (day, index) depends only on
//! (seed, day, index), so tests can recompute what was served. See `cli::Args` for the flags.
//! This file only parses, validates, binds, announces the port and hands over to the server.

mod auth;
mod charset;
mod cli;
mod data;
mod erp;
mod faults;
mod http;
mod limit;
mod range;
mod request_log;
mod routes;
mod server;
mod shapes;
mod state;
#[cfg(test)]
mod test_client;

use std::io::Write;

use crate::cli::Args;
use crate::state::State;

fn main() {
    env_logger::init();
    let args: Args = argh::from_env();
    if let Err(msg) = cli::validate(&args) {
        eprintln!("atlas-sample-api: {msg}");
        std::process::exit(2);
    }
    let (listener, local) = match server::bind(&args.host, args.port) {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!(
                "atlas-sample-api: cannot bind {}:{}: {e}",
                args.host, args.port
            );
            std::process::exit(1);
        }
    };
    let state = match State::new(args, local) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("atlas-sample-api: cannot open the request log: {e}");
            std::process::exit(1);
        }
    };
    // Parents wait for this exact line to learn the port, so flush it at once. No println!:
    // a parent that already closed our stdout must not make us panic.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on http://{local}").and_then(|()| stdout.flush());
    drop(stdout);

    server::serve(&listener, &state);
}
