//! How a run ended: the reason it stopped early (an [`Abort`]), what went
//! wrong with the crew's own threads, and the merge of both with the slices'
//! results into one [`Outcome`] (exit code and message) per run.

use crate::exit::Exit;
use crate::ledger::RunTotals;

/// How the run went, for the summary and the exit code.
pub struct Outcome {
    pub totals: RunTotals,
    pub exit: Exit,
    pub error: Option<String>,
    /// The API refused the client's credentials (exit 3, `auth_refused`).
    pub auth_refused: bool,
    /// The database stayed unreachable through every retry.
    pub database_lost: bool,
}

/// Why the run stopped before working every slice it could.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Abort {
    /// The API refused the client's credentials: no slice can succeed.
    Auth(String),
    /// The database stayed unreachable through every retry.
    Database(String),
    /// Another environment failure that no slice can get past (an untrusted
    /// TLS certificate): the message says what.
    Environment(String),
}

/// What went wrong with the run's own threads.
#[derive(Debug, Default)]
pub(super) struct Trouble {
    /// A worker thread panicked.
    pub(super) panicked: bool,
    /// A thread could not be started (the system refused it): why.
    pub(super) not_started: Option<String>,
}

/// How the run ended: an abort says most, then a panic, then a stop signal
/// (named), then
/// whether any slice failed.
pub(super) fn outcome(
    totals: RunTotals,
    abort: Option<Abort>,
    trouble: Trouble,
    ctrl_c: bool,
) -> Outcome {
    let Trouble {
        panicked,
        not_started,
    } = trouble;
    let auth_refused = matches!(abort, Some(Abort::Auth(_)));
    let database_lost = matches!(abort, Some(Abort::Database(_)));
    let (exit, error) = match abort {
        Some(Abort::Auth(m)) | Some(Abort::Environment(m)) => (Exit::Environment, Some(m)),
        Some(Abort::Database(m)) => (
            Exit::Environment,
            Some(format!("database unavailable: {m}")),
        ),
        None if panicked => (
            Exit::Failed,
            Some("internal error: a worker thread panicked".into()),
        ),
        None if not_started.is_some() => (
            Exit::Failed,
            Some(format!(
                "could not start a worker thread: {}",
                not_started.unwrap_or_default()
            )),
        ),
        None if ctrl_c => (
            Exit::Interrupted,
            Some(crate::signal::interruption(crate::signal::received())),
        ),
        None if totals.slices_failed > 0 => (Exit::Failed, None),
        None => (Exit::Ok, None),
    };
    Outcome {
        totals,
        exit,
        error,
        auth_refused,
        database_lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_slices(n: i32) -> RunTotals {
        RunTotals {
            slices_failed: n,
            ..Default::default()
        }
    }

    fn merged(
        abort: Option<Abort>,
        panicked: bool,
        ctrl_c: bool,
        failed: i32,
    ) -> (Exit, Option<String>) {
        let trouble = Trouble {
            panicked,
            not_started: None,
        };
        let o = outcome(failed_slices(failed), abort, trouble, ctrl_c);
        (o.exit, o.error)
    }

    #[test]
    fn a_clean_run_is_ok_and_a_failed_slice_fails_it() {
        assert_eq!(merged(None, false, false, 0), (Exit::Ok, None));
        assert_eq!(merged(None, false, false, 2), (Exit::Failed, None));
    }

    #[test]
    fn an_abort_says_why_and_wins_over_everything() {
        let auth = Abort::Auth("credentials refused".into());
        assert_eq!(
            merged(Some(auth.clone()), true, true, 3),
            (Exit::Environment, Some("credentials refused".into()))
        );
        assert_eq!(
            merged(Some(Abort::Database("gone".into())), false, true, 0),
            (Exit::Environment, Some("database unavailable: gone".into()))
        );
    }

    #[test]
    fn a_panic_wins_over_ctrl_c_and_ctrl_c_over_failed_slices() {
        assert_eq!(
            merged(None, true, true, 1),
            (
                Exit::Failed,
                Some("internal error: a worker thread panicked".into())
            )
        );
        assert_eq!(
            merged(None, false, true, 1),
            (Exit::Interrupted, Some("interrompido".into()))
        );
    }

    #[test]
    fn a_thread_that_did_not_start_is_not_called_a_panic() {
        let trouble = Trouble {
            panicked: false,
            not_started: Some("Resource temporarily unavailable".into()),
        };
        let o = outcome(failed_slices(0), None, trouble, false);
        assert_eq!(o.exit, Exit::Failed);
        assert_eq!(
            o.error.as_deref(),
            Some("could not start a worker thread: Resource temporarily unavailable")
        );
    }

    #[test]
    fn outcome_keeps_the_totals() {
        let t = RunTotals {
            pages: 7,
            inserted: 40,
            ..Default::default()
        };
        let o = outcome(t, None, Trouble::default(), false);
        assert_eq!((o.totals.pages, o.totals.inserted), (7, 40));
    }
}
