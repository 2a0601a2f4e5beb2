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
mod gzip_bomb;
mod hostile;
mod http;
mod limit;
mod oauth;
mod range;
mod request_log;
mod routes;
mod server;
mod shapes;
mod state;
#[cfg(test)]
mod test_client;
mod tls;

use std::io::Write;

use crate::cli::Args;
use crate::state::State;

fn main() {
    env_logger::init();
    let args: Args = argh::from_env();
    if args.hostile_list {
        let _ = std::io::stdout().write_all(hostile::catalogue_text().as_bytes());
        return;
    }
    if let Err(msg) = cli::validate(&args) {
        eprintln!("atlas-sample-api: {msg}");
        std::process::exit(2);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match tls::config(cert, key) {
            Ok(config) => Some(config),
            Err(msg) => {
                eprintln!("atlas-sample-api: {msg}");
                std::process::exit(2);
            }
        },
        _ => None,
    };
    // With TLS the plain server listens on a private loopback port behind the TLS front.
    let (host, port) = match tls {
        Some(_) => ("127.0.0.1", 0),
        None => (args.host.as_str(), args.port),
    };
    let (listener, local) = match server::bind(host, port) {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!(
                "atlas-sample-api: cannot bind {}:{}: {e}",
                args.host, args.port
            );
            std::process::exit(1);
        }
    };
    let public = match &tls {
        Some(config) => match server::bind(&args.host, args.port) {
            Ok((front, addr)) => {
                let config = config.clone();
                std::thread::spawn(move || tls::front(&front, local, &config));
                Some(addr)
            }
            Err(e) => {
                eprintln!(
                    "atlas-sample-api: cannot bind {}:{}: {e}",
                    args.host, args.port
                );
                std::process::exit(1);
            }
        },
        None => None,
    };
    let state = match State::new(args, public.unwrap_or(local)) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("atlas-sample-api: cannot open a log: {e}");
            std::process::exit(1);
        }
    };
    // Parents wait for this exact line to learn the port, so flush it at once. No println!:
    // a parent that already closed our stdout must not make us panic.
    let mut stdout = std::io::stdout().lock();
    let announced = match public {
        Some(addr) => format!("https://{addr}"),
        None => format!("http://{local}"),
    };
    let _ = writeln!(stdout, "listening on {announced}").and_then(|()| stdout.flush());
    drop(stdout);

    server::serve(&listener, &state);
}
