//! Stop signals: SIGINT (Ctrl-C), SIGTERM and SIGHUP raise `quit` and
//! `interrupted` so a run stops in order (flush, release, exit 130), and
//! which one came is kept so the run can name it.
//!
//! Invariant: the handlers only store into atomics (async-signal-safe).
//! On unix `signal-hook` registers them (ctrlc cannot tell signals apart);
//! elsewhere ctrlc does, and the signal is reported as Ctrl-C.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The number of the last stop signal received (0: none). Process-wide by
/// nature: a signal reaches the process, not one run.
static RECEIVED: OnceLock<Arc<AtomicUsize>> = OnceLock::new();

/// The stop signals this process handles, with the names it reports.
#[cfg(unix)]
const STOP_SIGNALS: &[(i32, &str)] = &[
    (signal_hook::consts::SIGINT, "SIGINT"),
    (signal_hook::consts::SIGTERM, "SIGTERM"),
    (signal_hook::consts::SIGHUP, "SIGHUP"),
];

/// The name reported for signal number `n`, if it is a stop signal.
#[cfg(unix)]
fn name_of(n: usize) -> Option<&'static str> {
    STOP_SIGNALS
        .iter()
        .find(|(s, _)| *s as usize == n)
        .map(|(_, name)| *name)
}

/// The name reported for signal number `n` (ctrlc: every stop is Ctrl-C).
#[cfg(not(unix))]
fn name_of(n: usize) -> Option<&'static str> {
    (n != 0).then_some("Ctrl-C")
}

/// Installs the handlers; a failure is logged and the run goes on without.
pub fn install(quit: &Arc<AtomicBool>, interrupted: &Arc<AtomicBool>) {
    let received = Arc::clone(RECEIVED.get_or_init(|| Arc::new(AtomicUsize::new(0))));
    if let Err(e) = register(received, quit, interrupted) {
        log::warn!("cannot install the stop-signal handlers: {e}");
    }
}

#[cfg(unix)]
fn register(
    received: Arc<AtomicUsize>,
    quit: &Arc<AtomicBool>,
    interrupted: &Arc<AtomicBool>,
) -> std::io::Result<()> {
    use signal_hook::flag;
    for (sig, _) in STOP_SIGNALS {
        // In registration order: the signal's number is stored before the
        // flags that make the run look at it.
        flag::register_usize(*sig, Arc::clone(&received), *sig as usize)?;
        flag::register(*sig, Arc::clone(interrupted))?;
        flag::register(*sig, Arc::clone(quit))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn register(
    received: Arc<AtomicUsize>,
    quit: &Arc<AtomicBool>,
    interrupted: &Arc<AtomicBool>,
) -> Result<(), ctrlc::Error> {
    let (q, i) = (Arc::clone(quit), Arc::clone(interrupted));
    ctrlc::set_handler(move || {
        received.store(2, Ordering::SeqCst);
        i.store(true, Ordering::SeqCst);
        q.store(true, Ordering::SeqCst);
    })
}

/// The stop signal received so far, by name (`SIGINT`, `SIGTERM`, `SIGHUP`;
/// `Ctrl-C` where signals cannot be told apart).
pub fn received() -> Option<&'static str> {
    RECEIVED
        .get()
        .and_then(|r| name_of(r.load(Ordering::SeqCst)))
}

/// How an interruption by `signal` is reported.
pub fn interruption(signal: Option<&str>) -> String {
    match signal {
        Some("SIGINT") => "interrompido por SIGINT (Ctrl-C)".into(),
        Some(name) => format!("interrompido por {name}"),
        None => "interrompido".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interruptions_name_their_signal() {
        assert_eq!(
            interruption(Some("SIGINT")),
            "interrompido por SIGINT (Ctrl-C)"
        );
        assert_eq!(interruption(Some("SIGTERM")), "interrompido por SIGTERM");
        assert!(!interruption(Some("SIGTERM")).contains("Ctrl-C"));
        assert_eq!(interruption(None), "interrompido");
    }

    #[cfg(unix)]
    #[test]
    fn stop_signals_are_named() {
        assert_eq!(
            name_of(signal_hook::consts::SIGTERM as usize),
            Some("SIGTERM")
        );
        assert_eq!(
            name_of(signal_hook::consts::SIGINT as usize),
            Some("SIGINT")
        );
        assert_eq!(
            name_of(signal_hook::consts::SIGHUP as usize),
            Some("SIGHUP")
        );
        assert_eq!(name_of(0), None);
    }
}
