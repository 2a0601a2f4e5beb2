//! Thin entry: parse flags, run the command, print one error with its
//! context chain, map it to an exit code (SPEC §2).

mod charset;
mod cli;
mod cmd;
mod config;
mod console;
mod coverage;
mod dates;
mod db;
mod exit;
mod health;
mod http;
mod ident;
mod json;
mod ledger;
mod manager;
mod metrics;
mod notify;
mod oauth;
mod paginate;
mod pipeline;
mod record;
mod report;
mod requests;
mod retry;
mod rules;
mod scrap_rows;
mod seal;
mod signal;
mod slice;
mod textfile;
mod tls;
mod userinfo;
mod version;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// argh's own `from_env` exits 1 on a usage error; SPEC §2 says 2. With
/// `--json` among the arguments a usage error is the JSON error object on
/// stdout (its text on stderr as without).
fn parse_args(strings: &[String], json: bool) -> Result<cli::Args, ExitCode> {
    let cmd = strings
        .first()
        .map(|s| s.rsplit(['/', '\\']).next().unwrap_or(s))
        .unwrap_or("atlas");
    let rest: Vec<&str> = strings.iter().skip(1).map(String::as_str).collect();
    <cli::Args as argh::FromArgs>::from_args(&[cmd], &rest).map_err(|early| match early.status {
        Ok(()) => {
            crate::outln!("{}", early.output);
            ExitCode::SUCCESS
        }
        Err(()) => {
            // An argument quoted back may be a URL with a password in it.
            let text = userinfo::text(early.output.trim_end()).into_owned();
            eprintln!("{text}");
            eprintln!("Run {cmd} --help for more information.");
            let code = exit::Exit::Usage.code();
            if json {
                crate::outln!("{}", report::error_object(&text, code));
            }
            ExitCode::from(code)
        }
    })
}
/// glibc gives each thread its own malloc arena and raises its mmap
/// threshold after the first large free, so page-sized buffers (a few
/// hundred KB) freed by one thread and reallocated by another pile up as
/// resident memory: measured 60 MiB at 8 fetchers instead of 48. Two arenas
/// and a fixed 128 KiB threshold keep memory flat at no measured cost.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    const M_MMAP_THRESHOLD: i32 = -3;
    const M_ARENA_MAX: i32 = -8;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // SAFETY: mallopt only changes allocator parameters; it is called once,
    // before any other thread exists, with documented parameter values.
    unsafe {
        mallopt(M_ARENA_MAX, 2);
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let strings: Vec<String> = std::env::args().collect();
    let json = cli::wants_json(&strings[1..]);
    if cli::wants_version(&strings[1..]) {
        print_version(json);
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(&strings, json) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.version {
        print_version(json);
        return ExitCode::SUCCESS;
    }
    let quit = Arc::new(AtomicBool::new(false));
    let interrupted = Arc::new(AtomicBool::new(false));
    // SIGINT, SIGTERM, SIGHUP: stop fetching, flush what is in flight, release slices.
    signal::install(&quit, &interrupted);
    let env = |k: &str| std::env::var(k).ok();
    match cmd::run(&args, &env, &quit, &interrupted) {
        Ok(code) => ExitCode::from(code.code()),
        Err(e) => {
            let code = exit::classify(&e).code();
            let style = report::Style::for_console(args.plain);
            let text = format!("{e:#}");
            eprintln!("{}", style.line("❌", &format!("Erro: {text}")));
            // The command printed nothing on stdout: a script reading its
            // `--json` still gets one object.
            if args.json() {
                crate::outln!("{}", report::error_object(&text, code));
            }
            ExitCode::from(code)
        }
    }
}

/// `atlas --version`: `atlas X.Y.Z (commit, date)`, or with `--json` the
/// same facts as one object.
fn print_version(json: bool) {
    if json {
        crate::outln!(
            "{}",
            serde_json::json!({
                "version": version::version(),
                "release": version::RELEASE,
                "commit": version::COMMIT,
                "build_date": version::BUILD_DATE,
            })
        );
    } else {
        crate::outln!("{}", version::line());
    }
}
