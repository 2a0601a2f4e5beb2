//! What the user sees (SPEC §6): the seed's Portuguese lines with emoji
//! (dropped by `--plain`), the `--json` summary, and `erros_scraps.log`.
//!
//! One file a concern: `style` (the line style and the number, table and
//! text formats), `watch` (what a run tells whoever watches it, and its
//! progress and notice lines), `summary` (a run's `--json` summary and its
//! statistics block), `errlog` (`erros_scraps.log`), `fleet` (the report of
//! `sync --all`).

mod errlog;
pub mod fleet;
mod style;
mod summary;
mod watch;

pub use errlog::{ErrorContext, ErrorLog};
pub use style::{decimal, rate, short_duration, snippet, table, thousands, Style};
pub use summary::{busy_line, error_object, syncing_line, up_to_date_line, Summary, AUTH_REFUSED};
pub use watch::{Feed, Kind, Notice, Retried, Snapshot, Watch};

use std::io::Write;

/// Writes to stdout; a reader that went away (`atlas scrap list | head -1`)
/// ends the output quietly instead of a panic. Other write errors are logged.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            log::warn!("cannot write to stdout: {e}");
        }
    }
}

/// `println!` through `out`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::report::out("\n")
    };
    ($($arg:tt)*) => {
        $crate::report::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through `out`.
#[macro_export]
macro_rules! outp {
    ($($arg:tt)*) => {
        $crate::report::out(&format!($($arg)*))
    };
}
